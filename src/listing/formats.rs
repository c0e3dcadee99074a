//! What kind of line a line is: an IOMMU group header, a device line (with
//! the group it names, if any), a detail line of the device above (lspci
//! `-k`/`-v`), a kernel command line, or anything else.
//!
//! Group listings come in many shapes:
//! - flat: `IOMMU Group 7 00:1c.0 PCI bridge [0604]: …` (any case);
//! - a header (`IOMMU Group 7:`, `IOMMU group 7`, `IOMMU GROUP 7`,
//!   `### Group 7 ###`) and its members below it, indented by tabs or
//!   spaces, or prefixed ` (7) `;
//! - columns (r15ch13/ls-iommu): `Group 7:\t[8086:9d10] [R] 00:1c.0  PCI bridge  name`,
//!   continuation lines `\t\t[vvvv:dddd]     ADDR …`, and `USB:` lines.

use super::line::{self, Parsed, first_word, parse_ids};

/// A detail line below an lspci device line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail<'a> {
    /// `Subsystem: Vendor Name [vvvv:dddd]`: the ids when given.
    Subsystem(Option<(u16, u16)>),
    /// `Kernel driver in use: vfio-pci`.
    Driver(&'a str),
    /// `IOMMU group: 12` (newer `lspci -v`).
    Group(u32),
    /// `IOMMU group: 99999999999`: a number that does not fit (as written).
    GroupTooLarge(&'a str),
    /// `NUMA node: 0`.
    NumaNode(i32),
    /// `Kernel modules:`, `Flags:`, `Memory at …`, `DeviceName:`, …
    Other,
}

/// How a device line was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceLine {
    /// The group the line itself names (flat, columns, ` (N) `).
    pub group: Option<u32>,
    /// The group number the line names when it does not fit in 32 bits (as
    /// written): the device is kept without a group, with a warning.
    pub group_too_large: Option<String>,
    /// A columns (r15ch13) line: it opens a group whose continuation lines
    /// follow.
    pub columns: bool,
    pub parsed: Parsed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind<'a> {
    Blank,
    GroupHeader(u32),
    /// A group header whose number does not fit in 32 bits (as written).
    GroupTooLarge(&'a str),
    Device(DeviceLine),
    Detail(Detail<'a>),
    /// `USB:` lines of r15ch13 listings: part of the group above.
    Usb,
    /// `# …` lines (hand annotations, markdown headings).
    Comment,
    /// A kernel command line (`cat /proc/cmdline`).
    Cmdline(&'a str),
    /// Anything else: prompts, commands, prose, garbage.
    Other,
}

/// A group number: `Err(digits)` when it does not fit in 32 bits.
type GroupNumber<'a> = Result<u32, &'a str>;

fn group_number(digits: &str) -> GroupNumber<'_> {
    digits.parse().map_err(|_| digits)
}

/// `(IOMMU )?Group N:?` at the start of `s` (any case) → N and the rest.
fn group_prefix(s: &str) -> Option<(GroupNumber<'_>, &str)> {
    let s = s.trim_start();
    let lower_starts =
        |s: &str, p: &str| s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    let mut rest = s;
    if lower_starts(rest, "iommu") {
        let after = &rest[5..];
        let trimmed = after.trim_start();
        if trimmed.len() == after.len() {
            return None;
        }
        rest = trimmed;
    }
    if !lower_starts(rest, "group") {
        return None;
    }
    let after = &rest[5..];
    let trimmed = after.trim_start();
    if trimmed.len() == after.len() {
        return None;
    }
    let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let n = group_number(&trimmed[..digits]);
    let mut rest = &trimmed[digits..];
    if let Some(r) = rest.strip_prefix(':') {
        rest = r;
    } else if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    Some((n, rest.trim_start()))
}

/// ` (N) ADDR …` → N and the rest.
fn paren_prefix(s: &str) -> Option<(GroupNumber<'_>, &str)> {
    let inner = s.strip_prefix('(')?;
    let close = inner.find(')')?;
    let digits = &inner[..close];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = group_number(digits);
    let rest = &inner[close + 1..];
    rest.starts_with(char::is_whitespace)
        .then(|| (n, rest.trim_start()))
}

/// `[vvvv:dddd] [R] ADDR …` → the ids and the rest.
fn ids_prefix(s: &str) -> Option<((u16, u16), &str)> {
    let inner = s.strip_prefix('[')?;
    let close = inner.find(']')?;
    let ids = parse_ids(&inner[..close])?;
    let mut rest = inner[close + 1..].trim_start();
    if let Some(r) = rest.strip_prefix("[R]") {
        rest = r.trim_start();
    }
    Some((ids, rest))
}

fn detail(trimmed: &str) -> Option<Detail<'_>> {
    let value = |key: &str| {
        trimmed
            .get(..key.len())
            .filter(|h| h.eq_ignore_ascii_case(key))
            .map(|_| trimmed[key.len()..].trim())
    };
    if let Some(v) = value("Subsystem:") {
        let ids = v
            .strip_suffix(']')
            .and_then(|b| b.rfind('[').and_then(|i| parse_ids(&b[i + 1..])));
        return Some(Detail::Subsystem(ids));
    }
    if let Some(v) = value("Kernel driver in use:") {
        let (d, _) = first_word(v);
        return Some(if d.is_empty() {
            Detail::Other
        } else {
            Detail::Driver(d)
        });
    }
    if let Some(v) = value("IOMMU group:") {
        return Some(if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
            group_number(v).map_or_else(Detail::GroupTooLarge, Detail::Group)
        } else {
            Detail::Other
        });
    }
    if let Some(v) = value("NUMA node:") {
        return Some(v.parse().map_or(Detail::Other, Detail::NumaNode));
    }
    for key in [
        "Kernel modules:",
        "DeviceName:",
        "Flags:",
        "Control:",
        "Status:",
        "Latency:",
        "Interrupt:",
        "Region ",
        "Memory at ",
        "I/O ports at ",
        "Expansion ROM",
        "[virtual]",
        "Capabilities:",
        "Bus:",
        "I/O behind bridge:",
        "Memory behind bridge:",
        "Prefetchable memory behind bridge:",
        "Secondary status:",
        "BridgeCtl:",
        "Physical Slot:",
    ] {
        if value(key).is_some() {
            return Some(Detail::Other);
        }
    }
    None
}

/// Whether a line is a kernel command line as `/proc/cmdline` prints it.
fn cmdline(trimmed: &str) -> bool {
    let ok_token = |t: &str| {
        t.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '_' | '.' | ',' | ':' | '/' | '=' | '+' | '-' | '"' | '@')
        })
    };
    let mut tokens = trimmed.split_whitespace();
    let Some(first) = tokens.next() else {
        return false;
    };
    if first.starts_with("BOOT_IMAGE=") || first.starts_with("initrd=") {
        return true;
    }
    trimmed.split_whitespace().all(ok_token)
        && trimmed.split_whitespace().any(|t| t.starts_with("root="))
}

/// Classify one line (without its line ending).
pub fn classify(raw: &str) -> LineKind<'_> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return LineKind::Blank;
    }
    // Headers, including `### Group N ###`.
    let unhashed = trimmed.trim_start_matches('#').trim_end_matches('#').trim();
    if let Some((n, rest)) = group_prefix(unhashed) {
        if rest.is_empty() {
            return match n {
                Ok(n) => LineKind::GroupHeader(n),
                Err(digits) => LineKind::GroupTooLarge(digits),
            };
        }
        if unhashed.len() == trimmed.len() {
            if let Some(((v, d), after)) = ids_prefix(rest) {
                return LineKind::Device(DeviceLine {
                    group: n.ok(),
                    group_too_large: n.err().map(str::to_string),
                    columns: true,
                    parsed: line::parse_columns(after, Some((v, d))),
                });
            }
            let (tok, _) = first_word(rest);
            if line::looks_like_address(tok) {
                return LineKind::Device(DeviceLine {
                    group: n.ok(),
                    group_too_large: n.err().map(str::to_string),
                    columns: false,
                    parsed: line::parse_lspci(rest),
                });
            }
            if tok.contains(':')
                && tok.contains('.')
                && tok.len() <= 20
                && tok
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'.')
            {
                return LineKind::Device(DeviceLine {
                    group: n.ok(),
                    group_too_large: n.err().map(str::to_string),
                    columns: false,
                    parsed: Parsed::Garbled(format!("`{tok}` is not a PCI address")),
                });
            }
        }
    }
    if trimmed.starts_with('#') {
        return LineKind::Comment;
    }
    if let Some(rest) = trimmed.strip_prefix("USB:")
        && (rest.is_empty() || rest.starts_with(char::is_whitespace))
    {
        return LineKind::Usb;
    }
    if let Some((n, rest)) = paren_prefix(trimmed) {
        let (tok, _) = first_word(rest);
        if line::looks_like_address(tok) {
            return LineKind::Device(DeviceLine {
                group: n.ok(),
                group_too_large: n.err().map(str::to_string),
                columns: false,
                parsed: line::parse_lspci(rest),
            });
        }
    }
    if let Some(((v, d), rest)) = ids_prefix(trimmed) {
        let (tok, _) = first_word(rest);
        if line::looks_like_address(tok) {
            return LineKind::Device(DeviceLine {
                group: None,
                group_too_large: None,
                columns: true,
                parsed: line::parse_columns(rest, Some((v, d))),
            });
        }
    }
    let (tok, _) = first_word(trimmed);
    if line::looks_like_address(tok) {
        return LineKind::Device(DeviceLine {
            group: None,
            group_too_large: None,
            columns: false,
            parsed: line::parse_lspci(trimmed),
        });
    }
    if let Some(d) = detail(trimmed) {
        return LineKind::Detail(d);
    }
    if cmdline(trimmed) {
        return LineKind::Cmdline(trimmed);
    }
    LineKind::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group_of(line: &str) -> Option<u32> {
        match classify(line) {
            LineKind::Device(d) => d.group,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn headers() {
        for (line, n) in [
            ("IOMMU Group 7:", 7),
            ("IOMMU group 12", 12),
            ("IOMMU GROUP 0", 0),
            ("IOMMU Group 3: ", 3),
            ("### Group 17 ###", 17),
            ("Group 4:", 4),
        ] {
            assert_eq!(classify(line), LineKind::GroupHeader(n), "{line}");
        }
        assert_eq!(classify("IOMMU Groups"), LineKind::Other);
        assert_eq!(classify("## PASSTHROUGH! PASSTHROUGH!"), LineKind::Comment);
        assert_eq!(
            classify("IOMMU group: 12"),
            LineKind::Detail(Detail::Group(12))
        );
    }

    #[test]
    fn device_lines_with_groups() {
        assert_eq!(
            group_of(
                "IOMMU Group 20 04:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [GeForce GTX 1070] [10de:1b81] (rev a1)"
            ),
            Some(20)
        );
        assert_eq!(
            group_of(
                "IOMMU group 2 01:00.1 Audio device [0403]: NVIDIA Corporation GP108 High Definition Audio Controller [10de:0fb8] (rev a1)"
            ),
            Some(2)
        );
        assert_eq!(
            group_of(
                " (13) 01:00.1 Audio device [0403]: NVIDIA Corporation GA106 High Definition Audio Controller [10de:228e] (rev a1)"
            ),
            Some(13)
        );
        assert_eq!(
            group_of(
                "Group 12:\t[1002:7480] [R] 03:00.0  VGA compatible controller                Navi 33 [Radeon RX 7700S/7600/7600S/7600M XT/PRO W7600]"
            ),
            Some(12)
        );
        assert_eq!(
            group_of(
                "\t\t[8086:43ef]     00:14.2  RAM memory                               Tiger Lake-H Shared SRAM"
            ),
            None
        );
        assert_eq!(
            group_of("\t00:01.0 PCI bridge [0604]: Intel Corporation Device [8086:460d]"),
            None
        );
    }

    #[test]
    fn details_and_other_lines() {
        assert_eq!(
            classify("\tSubsystem: ASUSTeK Computer Inc. Device [1043:04c4]"),
            LineKind::Detail(Detail::Subsystem(Some((0x1043, 0x04c4))))
        );
        assert_eq!(
            classify("\tSubsystem: Lenovo Device 21f3"),
            LineKind::Detail(Detail::Subsystem(None))
        );
        assert_eq!(
            classify("        Kernel driver in use: vfio-pci"),
            LineKind::Detail(Detail::Driver("vfio-pci"))
        );
        assert_eq!(
            classify("\tCapabilities: [88] Subsystem: Lenovo Device 21f3"),
            LineKind::Detail(Detail::Other)
        );
        assert_eq!(
            classify(
                "USB:\t\t[1d6b:0002]\t\t Bus 001 Device 001                       Linux Foundation 2.0 root hub"
            ),
            LineKind::Usb
        );
        assert!(matches!(
            classify("BOOT_IMAGE=/boot/vmlinuz-6.8.0-49-generic root=UUID=9ff8 ro quiet splash"),
            LineKind::Cmdline(_)
        ));
        assert!(matches!(
            classify("initrd=\\EFI\\arch\\initramfs.img root=/dev/sda2 rw"),
            LineKind::Cmdline(_)
        ));
        assert_eq!(classify("$ ./iommu.sh "), LineKind::Other);
        assert_eq!(classify("--"), LineKind::Other);
        assert_eq!(classify("   \t "), LineKind::Blank);
    }
}
