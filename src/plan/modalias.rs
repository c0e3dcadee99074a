//! Which kernel modules drive a PCI function, from the target kernel's own
//! `modules.alias` (what udev and modprobe use): the planner puts a softdep
//! on each of them, so vfio-pci loads first whatever the vendor. Pure: the
//! caller reads the file.

use std::collections::BTreeSet;

use super::initramfs::normalize_module;

/// The `pci:` lines of one kernel's `modules.alias`: `(pattern, module)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PciAliases {
    entries: Vec<(String, String)>,
}

/// A PCI function's modalias, as the kernel writes it to sysfs
/// (`pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00`). An unknown
/// subsystem (a host read from a pasted listing) is written `sv--------`,
/// which only a pattern taking any subsystem (`sv*sd*`) matches.
pub fn pci_modalias(vendor: u16, device: u16, subsystem: Option<(u16, u16)>, class: u32) -> String {
    let (sv, sd) = match subsystem {
        Some((v, d)) => (format!("{v:08X}"), format!("{d:08X}")),
        None => ("-".repeat(8), "-".repeat(8)),
    };
    format!(
        "pci:v{:08X}d{:08X}sv{sv}sd{sd}bc{:02X}sc{:02X}i{:02X}",
        vendor,
        device,
        (class >> 16) & 0xff,
        (class >> 8) & 0xff,
        class & 0xff
    )
}

impl PciAliases {
    /// Keeps the `alias pci:… module` lines of `modules.alias` text; other
    /// lines (and garbled ones) are skipped.
    pub fn parse(text: &str) -> PciAliases {
        let entries = text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                match (w.next(), w.next(), w.next(), w.next()) {
                    (Some("alias"), Some(pat), Some(module), None) if pat.starts_with("pci:") => {
                        Some((pat.to_string(), normalize_module(module)))
                    }
                    _ => None,
                }
            })
            .collect();
        PciAliases { entries }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The modules whose alias matches `modalias`, sorted, each once.
    pub fn modules_for(&self, modalias: &str) -> Vec<String> {
        let found: BTreeSet<&str> = self
            .entries
            .iter()
            .filter(|(pat, _)| glob(pat.as_bytes(), modalias.as_bytes()))
            .map(|(_, m)| m.as_str())
            .collect();
        found.into_iter().map(str::to_string).collect()
    }
}

/// fnmatch(3) without flags, as kmod matches aliases: `*`, `?` and `[…]`
/// (with ranges and `!`/`^` negation).
fn glob(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // where to resume after the last `*`: (pattern index after it, text index)
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let step = match pat.get(p) {
            Some(b'*') => {
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => match class(&pat[p..], text[t]) {
                Some((true, len)) => Some(p + len),
                Some((false, _)) => None,
                // an unclosed `[` is a literal
                None => (text[t] == b'[').then_some(p + 1),
            },
            Some(c) => (*c == text[t]).then_some(p + 1),
            None => None,
        };
        match step {
            Some(np) => {
                p = np;
                t += 1;
            }
            None => match star {
                Some((sp, st)) => {
                    p = sp;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the bracket expression at the start of `pat`;
/// `(matched, length of the expression)`, or `None` when it is not closed.
fn class(pat: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pat.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *pat.get(i)?;
        if lo == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pat.get(i + 1) == Some(&b'-') && pat.get(i + 2).is_some_and(|&h| h != b']') {
            let hi = pat[i + 2];
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALIASES: &str = "\
# Aliases extracted from modules themselves.
alias pci:v00001234d00001111sv*sd*bc03sc00i00* bochs
alias pci:v00001B36d00000100sv*sd*bc*sc*i* qxl
alias pci:v00008086d0000293Esv*sd*bc*sc*i* snd_hda_intel
alias pci:v*d*sv*sd*bc04sc03i00* snd_hda_intel
alias pci:v000010DEd*sv*sd*bc03sc*i* nouveau
alias pci:v000010DEd*sv*sd*bc03sc*i* nvidiafb
alias pci:v00001002d000067DFsv*sd*bc*sc*i* amdgpu
alias pci:v*d*sv*sd*bc0Csc03i30* xhci-pci
alias usb:v*p*d*dc*dsc*dp*ic09isc*ip*in* usbcore
alias fs-ext4 ext4
alias pci:broken
";

    #[test]
    fn modalias_is_the_kernels_format() {
        assert_eq!(
            pci_modalias(0x1234, 0x1111, Some((0x1af4, 0x1100)), 0x030000),
            "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00"
        );
        assert_eq!(
            pci_modalias(0x10de, 0x1b80, Some((0x1458, 0x3702)), 0x040300),
            "pci:v000010DEd00001B80sv00001458sd00003702bc04sc03i00"
        );
    }

    #[test]
    fn modules_for_the_guest_functions() {
        let a = PciAliases::parse(ALIASES);
        let vga = pci_modalias(0x1234, 0x1111, Some((0x1af4, 0x1100)), 0x030000);
        assert_eq!(a.modules_for(&vga), ["bochs"]);
        // the class-wide HDA alias and the device's own
        let hda = pci_modalias(0x8086, 0x293e, Some((0x1af4, 0x1100)), 0x040300);
        assert_eq!(a.modules_for(&hda), ["snd_hda_intel"]);
        let nv = pci_modalias(0x10de, 0x1b80, Some((0x1458, 0x3702)), 0x030000);
        assert_eq!(a.modules_for(&nv), ["nouveau", "nvidiafb"]);
        let xhci = pci_modalias(0x10de, 0x1ada, Some((0x1458, 0x3702)), 0x0c0330);
        assert_eq!(a.modules_for(&xhci), ["xhci_pci"]);
        let nothing = pci_modalias(0x8086, 0x29c0, Some((0x1af4, 0x1100)), 0x060000);
        assert!(a.modules_for(&nothing).is_empty());
        assert!(PciAliases::parse("alias fs-ext4 ext4\n").is_empty());
    }

    #[test]
    fn unknown_subsystem_matches_only_any_subsystem() {
        let a = PciAliases::parse(
            "alias pci:v000010DEd*sv*sd*bc03sc*i* nouveau\n\
             alias pci:v000010DEd00001B80sv00001458sd*bc*sc*i* gigabyte_only\n",
        );
        let nv = pci_modalias(0x10de, 0x1b80, None, 0x030000);
        assert_eq!(nv, "pci:v000010DEd00001B80sv--------sd--------bc03sc00i00");
        assert_eq!(a.modules_for(&nv), ["nouveau"]);
    }

    #[test]
    fn glob_like_fnmatch() {
        for (p, t, want) in [
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("*", "", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("bc0[0-3]*", "bc02x", true),
            ("bc0[!0-3]", "bc02", false),
            ("bc0[^0-3]", "bc07", true),
            ("x[]]y", "x]y", true),
            ("x[ab", "x[ab", true),
            ("*d*sv*", "pci:v1d2sv3", true),
            ("*d*sv*x", "pci:v1d2sv3", false),
        ] {
            assert_eq!(glob(p.as_bytes(), t.as_bytes()), want, "{p} vs {t}");
        }
    }

    proptest! {
        /// A pattern made of a text with parts replaced by `*` or `?`
        /// matches that text.
        #[test]
        fn generalised_text_matches(text in "[A-Za-z0-9:]{0,40}", cuts in proptest::collection::vec((0usize..40, 0usize..5, any::<bool>()), 0..4)) {
            let mut pat: Vec<u8> = text.clone().into_bytes();
            let mut cuts = cuts;
            cuts.sort_by_key(|c| std::cmp::Reverse(c.0));
            // right to left, each cut left of the previous one (no overlap)
            let mut limit = pat.len();
            for (at, len, star) in cuts {
                if at + len.max(1) <= limit {
                    if star {
                        pat.splice(at..at + len, [b'*']);
                    } else {
                        pat.splice(at..at + 1, [b'?']);
                    }
                    limit = at;
                }
            }
            prop_assert!(glob(&pat, text.as_bytes()), "{} vs {}", String::from_utf8_lossy(&pat), text);
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,200}") {
            let a = PciAliases::parse(&text);
            let _ = a.modules_for("pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00");
        }
    }
}
