//! modprobe.d: `options vfio-pci ids=...` for the ids only the guest card
//! has, `softdep <driver> pre: vfio-pci` so vfio-pci loads before the GPU and
//! HDMI-audio drivers, and the early-bind `install` line.
//!
//! How kmod reads modprobe.d decides the file names. Files from
//! `/etc/modprobe.d`, `/run/modprobe.d`, `/usr/lib/modprobe.d` and
//! `/lib/modprobe.d` are read in the order of their names (`strcmp`), across
//! directories (a name in `/etc` hides the same name further down); only
//! `*.conf` (and `*.alias`) count. Then:
//! - all `options` lines of a module are concatenated, and when a parameter
//!   such as `ids=` repeats, the kernel keeps the last value;
//! - only the first `softdep` line and the first `install` line of a module
//!   count.
//!
//! So exliar writes two files: [`EARLY_CONF`] (`00-`: softdeps and install
//! line, first) and [`IDS_CONF`] (`zz-`: one merged `ids=` list, last).
//! [`existing_vfio_ids`] reports what `ids=` the other files set and which
//! of them are dead already; [`merged_softdeps`] keeps other files' softdeps
//! for the same drivers (exliar's first line would hide them).

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::editors::{EditError, Finding, check_body, insert_block, strip_block};
use super::initramfs::normalize_module;

pub const EARLY_CONF: &str = "/etc/modprobe.d/00-exliar-vfio.conf";
pub const IDS_CONF: &str = "/etc/modprobe.d/zz-exliar-vfio-ids.conf";
const TAG: &str = "vfio";

/// Is this one of exliar's own modprobe.d files (by name)?
pub fn is_exliar_file(path: &str) -> bool {
    let b = basename(path);
    b == basename(EARLY_CONF) || b == basename(IDS_CONF)
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A PCI vendor:device pair, written `10de:1b80`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciId {
    pub vendor: u16,
    pub device: u16,
}

impl PciId {
    pub const fn new(vendor: u16, device: u16) -> Self {
        Self { vendor, device }
    }
}

impl fmt::Display for PciId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vendor, self.device)
    }
}

impl FromStr for PciId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || format!("`{s}` is not a vendor:device id");
        let (v, d) = s.split_once(':').ok_or_else(err)?;
        let hex = |x: &str| {
            if x.len() == 4 {
                u16::from_str_radix(x, 16).ok()
            } else {
                None
            }
        };
        Ok(Self::new(hex(v).ok_or_else(err)?, hex(d).ok_or_else(err)?))
    }
}

impl Serialize for PciId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The drivers that could claim a function of this vendor and 24-bit class
/// before vfio-pci does: each gets a `softdep ... pre: vfio-pci`.
pub fn drivers_for(vendor: u16, class: u32) -> Vec<&'static str> {
    match (class >> 8, vendor) {
        (0x0300..=0x03ff, 0x1002) => vec!["amdgpu", "radeon"],
        (0x0300..=0x03ff, 0x10de) => vec!["nouveau", "nvidia", "nvidia_drm"],
        (0x0300..=0x03ff, 0x8086) => vec!["i915", "xe"],
        (0x0403, _) => vec!["snd_hda_intel"],
        (0x0c03, _) => vec!["xhci_pci"],
        (0x0c80, 0x10de) => vec!["i2c_nvidia_gpu"],
        _ => Vec::new(),
    }
}

/// A block of lines exliar owns in a modprobe.d file. Applied to an empty
/// text it gives exliar's own file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModprobeEdit {
    pub lines: Vec<String>,
}

impl ModprobeEdit {
    pub fn new(lines: Vec<String>) -> Self {
        Self { lines }
    }

    pub fn apply(&self, text: &str) -> Result<String, EditError> {
        check_body(&self.lines)?;
        let clean = self.remove(text)?;
        if self.lines.is_empty() {
            return Ok(clean);
        }
        Ok(insert_block(&clean, None, TAG, &self.lines))
    }

    pub fn remove(&self, text: &str) -> Result<String, EditError> {
        strip_block(text, TAG)
    }

    pub fn is_applied(&self, text: &str) -> Result<bool, EditError> {
        Ok(self.apply(text)? == text)
    }
}

/// `options vfio-pci ids=a,b`.
pub fn ids_option_line(ids: &[String]) -> String {
    format!("options vfio-pci ids={}", ids.join(","))
}

/// The kernel parameter for a built-in vfio-pci: `vfio-pci.ids=a,b`.
pub fn vfio_cmdline_param(ids: &[String]) -> String {
    format!("vfio-pci.ids={}", ids.join(","))
}

/// `existing` then `ours`, each id once (case-insensitively), in order.
pub fn merge_ids(existing: &[String], ours: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for id in existing.iter().chain(ours) {
        let id = id.trim().to_ascii_lowercase();
        if !id.is_empty() && !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Reading modprobe.d
// ---------------------------------------------------------------------------

/// One directive of a modprobe.d file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    /// 1-based line the directive starts on.
    pub line: usize,
    pub command: String,
    /// The module, `-`/`_` normalized (empty for a bare command).
    pub module: String,
    /// The words after the module.
    pub args: Vec<String>,
}

/// The directive in the joined text of a (possibly continued) line that
/// starts on 0-based line `start`; `None` for a blank one.
fn directive(start: usize, text: &str) -> Option<Directive> {
    let mut it = split_words(text).into_iter();
    let command = it.next()?;
    let module = it.next().map(|m| normalize_module(&m)).unwrap_or_default();
    Some(Directive {
        line: start + 1,
        command,
        module,
        args: it.collect(),
    })
}

/// The directives of one file: `#` comment lines skipped, `\` continuations
/// joined, words split on blanks (double quotes keep blanks inside `options`
/// values). Never fails: kmod itself skips what it cannot read.
pub fn parse_conf(text: &str) -> Vec<Directive> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (n, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let (start, mut acc) = pending.take().unwrap_or((n, String::new()));
        if acc.is_empty() && raw.trim_start().starts_with('#') {
            continue;
        }
        if let Some(body) = raw.strip_suffix('\\') {
            acc.push_str(body);
            acc.push(' ');
            pending = Some((start, acc));
            continue;
        }
        acc.push_str(raw);
        out.extend(directive(start, &acc));
    }
    // a continuation on the last line
    if let Some((start, acc)) = pending {
        out.extend(directive(start, &acc));
    }
    out
}

fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The files in the order kmod reads them: by name, the first of two files
/// with one name kept, `*.conf`/`*.alias` only.
fn kmod_order<'a>(files: &[(&'a str, &'a str)]) -> (Vec<(&'a str, &'a str)>, Vec<&'a str>) {
    let mut kept: Vec<(&str, &str)> = Vec::new();
    let mut ignored = Vec::new();
    for &(name, text) in files {
        let b = basename(name);
        let read = (b.ends_with(".conf") || b.ends_with(".alias")) && !b.starts_with('.');
        if !read || kept.iter().any(|(n, _)| basename(n) == b) {
            ignored.push(name);
        } else {
            kept.push((name, text));
        }
    }
    kept.sort_by(|a, b| basename(a.0).as_bytes().cmp(basename(b.0).as_bytes()));
    (kept, ignored)
}

/// One `ids=` setting for vfio-pci.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdsSetting {
    pub file: String,
    pub line: usize,
    pub ids: Vec<String>,
}

/// Every `ids=` given to vfio-pci by modprobe.d, in kmod's order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VfioIds {
    pub settings: Vec<IdsSetting>,
    /// Files kmod does not read (not `*.conf`, or hidden by a same-named one).
    pub ignored_files: Vec<String>,
}

impl VfioIds {
    /// The setting vfio-pci ends up with: the last one.
    pub fn effective(&self) -> Option<&IdsSetting> {
        self.settings.last()
    }

    pub fn effective_ids(&self) -> &[String] {
        self.effective().map_or(&[], |s| s.ids.as_slice())
    }

    /// Settings a later one replaces: written, but not in effect.
    pub fn overridden(&self) -> &[IdsSetting] {
        match self.settings.len() {
            0 => &[],
            n => &self.settings[..n - 1],
        }
    }

    /// Warnings for the user: dead `ids=` lines, and what exliar keeps.
    pub fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let Some(last) = self.effective() else {
            return out;
        };
        for s in self.overridden() {
            out.push(Finding::new(
                &s.file,
                s.line,
                format!(
                    "`ids={}` is not in effect: the later `ids=` at {}:{} replaces it",
                    s.ids.join(","),
                    last.file,
                    last.line
                ),
            ));
        }
        out.push(Finding::new(
            &last.file,
            last.line,
            format!("vfio-pci gets `ids={}` from here today", last.ids.join(",")),
        ));
        out
    }
}

/// What `ids=` the given modprobe.d files `(path, text)` set for vfio-pci,
/// and which one wins. List `/etc` files before `/run`, `/usr/lib`, `/lib`.
pub fn existing_vfio_ids(files: &[(&str, &str)]) -> VfioIds {
    let (kept, ignored) = kmod_order(files);
    let mut out = VfioIds {
        ignored_files: ignored.into_iter().map(str::to_string).collect(),
        ..Default::default()
    };
    for (name, text) in kept {
        for d in parse_conf(text) {
            if d.command != "options" || d.module != "vfio_pci" {
                continue;
            }
            for a in &d.args {
                let Some((k, v)) = a.split_once('=') else {
                    continue;
                };
                if k.replace('-', "_") != "ids" {
                    continue;
                }
                let v = v.trim_matches('"');
                out.settings.push(IdsSetting {
                    file: name.to_string(),
                    line: d.line,
                    ids: v
                        .split(',')
                        .map(|s| s.trim().to_ascii_lowercase())
                        .filter(|s| !s.is_empty())
                        .collect(),
                });
            }
        }
    }
    out
}

/// A `softdep` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Softdep {
    pub module: String,
    pub pre: Vec<String>,
    pub post: Vec<String>,
}

impl Softdep {
    pub fn render(&self) -> String {
        let mut s = format!("softdep {}", self.module);
        if !self.pre.is_empty() {
            s.push_str(" pre: ");
            s.push_str(&self.pre.join(" "));
        }
        if !self.post.is_empty() {
            s.push_str(" post: ");
            s.push_str(&self.post.join(" "));
        }
        s
    }
}

fn parse_softdep(d: &Directive) -> Softdep {
    let mut sd = Softdep {
        module: d.module.clone(),
        pre: Vec::new(),
        post: Vec::new(),
    };
    let mut post = false;
    for w in &d.args {
        match w.as_str() {
            "pre:" => post = false,
            "post:" => post = true,
            w if post => sd.post.push(w.to_string()),
            w => sd.pre.push(w.to_string()),
        }
    }
    sd
}

/// exliar's `softdep <driver> pre: <pre>` lines, each merged with the
/// softdep another file already gives that driver (kmod would use only the
/// first line, and exliar's comes first), with findings saying so.
pub fn merged_softdeps(
    drivers: &[impl AsRef<str>],
    pre: &str,
    existing: &[(&str, &str)],
) -> (Vec<Softdep>, Vec<Finding>) {
    let (kept, _) = kmod_order(existing);
    let ours = basename(EARLY_CONF);
    let mut out = Vec::new();
    let mut findings = Vec::new();
    for d in drivers {
        let module = normalize_module(d.as_ref());
        let mut sd = Softdep {
            module: module.clone(),
            pre: vec![pre.to_string()],
            post: Vec::new(),
        };
        let theirs = kept.iter().find_map(|(name, text)| {
            parse_conf(text)
                .into_iter()
                .find(|x| x.command == "softdep" && x.module == module)
                .map(|x| (*name, x))
        });
        if let Some((name, x)) = theirs {
            let other = parse_softdep(&x);
            for p in other.pre {
                if normalize_module(&p) != normalize_module(pre) {
                    sd.pre.push(p);
                }
            }
            sd.post = other.post;
            let msg = if basename(name).as_bytes() < ours.as_bytes() {
                format!(
                    "this softdep for {module} is read before exliar's and wins: add `pre: {pre}` to it"
                )
            } else {
                format!("exliar's softdep for {module} comes first and includes this one")
            };
            findings.push(Finding::new(name, x.line, msg));
        }
        out.push(sd);
    }
    (out, findings)
}

/// The `install` line kmod runs for `module` (the first one in kmod's
/// order): `(file, line, command)`.
pub fn first_install(files: &[(&str, &str)], module: &str) -> Option<(String, usize, String)> {
    let (kept, _) = kmod_order(files);
    let module = normalize_module(module);
    kept.iter().find_map(|(name, text)| {
        parse_conf(text)
            .into_iter()
            .find(|d| d.command == "install" && d.module == module)
            .map(|d| (name.to_string(), d.line, d.args.join(" ")))
    })
}

/// Other files' `install` lines for the module exliar's install line is
/// for, and `blacklist vfio_pci`.
pub fn install_conflicts(existing: &[(&str, &str)], pseudo: bool) -> Vec<Finding> {
    let (kept, _) = kmod_order(existing);
    let target = if pseudo {
        normalize_module(super::earlybind::PSEUDO_MODULE)
    } else {
        "vfio_pci".to_string()
    };
    let ours = basename(EARLY_CONF);
    let mut out = Vec::new();
    for (name, text) in kept {
        for d in parse_conf(text) {
            if d.command == "install" && d.module == target {
                let msg = if basename(name).as_bytes() < ours.as_bytes() {
                    "this install line is read before exliar's and wins: the early-bind step will not run"
                } else {
                    "this install line is hidden by exliar's (kmod uses the first)"
                };
                out.push(Finding::new(name, d.line, msg));
            }
            if d.command == "blacklist" && d.module == "vfio_pci" {
                out.push(Finding::new(
                    name,
                    d.line,
                    "vfio-pci is blacklisted (only alias loading is affected; softdeps still load it)",
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASSROCK: &str = "#vega\noptions vfio-pci ids=1002:687f,1002:aaf8 disable_vga=1\n#usb\n\
        options vfio-pci ids=1022:149c\n#wifi/bt\noptions vfio-pci ids=14e4:43a0\n#nvme\n\
        options vfio-pci ids=1987:5012";

    #[test]
    fn last_ids_wins_across_lines_and_files() {
        let r = existing_vfio_ids(&[("/etc/modprobe.d/vfio.conf", BASSROCK)]);
        assert_eq!(r.settings.len(), 4);
        assert_eq!(r.effective_ids(), ["1987:5012"]);
        assert_eq!(r.overridden().len(), 3);
        assert_eq!(r.findings().len(), 4);

        let r = existing_vfio_ids(&[
            ("/etc/modprobe.d/b.conf", "options vfio_pci ids=10de:1b80\n"),
            (
                "/etc/modprobe.d/a.conf",
                "options vfio-pci ids=1002:67DF disable_vga=1\n",
            ),
            (
                "/usr/lib/modprobe.d/b.conf",
                "options vfio-pci ids=ffff:ffff\n",
            ),
            ("/etc/modprobe.d/c.txt", "options vfio-pci ids=eeee:eeee\n"),
        ]);
        assert_eq!(r.effective_ids(), ["10de:1b80"]);
        assert_eq!(r.settings[0].ids, ["1002:67df"]);
        assert_eq!(
            r.ignored_files,
            ["/usr/lib/modprobe.d/b.conf", "/etc/modprobe.d/c.txt"]
        );
    }

    #[test]
    fn continuation_and_comments() {
        let d = parse_conf(
            "# options vfio-pci ids=1:1\noptions vfio-pci \\\n  ids=10de:1b80 \\\n  disable_vga=1\n",
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].line, 2);
        assert_eq!(d[0].args, ["ids=10de:1b80", "disable_vga=1"]);
    }

    #[test]
    fn merge_and_render() {
        let ids = merge_ids(
            &["1987:5012".into()],
            &["10de:1B80".into(), "1987:5012".into()],
        );
        assert_eq!(ids, ["1987:5012", "10de:1b80"]);
        assert_eq!(
            ids_option_line(&ids),
            "options vfio-pci ids=1987:5012,10de:1b80"
        );
        assert_eq!(vfio_cmdline_param(&ids), "vfio-pci.ids=1987:5012,10de:1b80");
    }

    #[test]
    fn softdeps_merge_with_existing() {
        let (sd, found) = merged_softdeps(
            &["amdgpu", "snd_hda_intel"],
            "vfio-pci",
            &[(
                "/usr/lib/modprobe.d/x.conf",
                "softdep amdgpu pre: foo vfio_pci post: bar\n",
            )],
        );
        assert_eq!(sd[0].render(), "softdep amdgpu pre: vfio-pci foo post: bar");
        assert_eq!(sd[1].render(), "softdep snd_hda_intel pre: vfio-pci");
        assert_eq!(found.len(), 1);
        let (_, found) = merged_softdeps(
            &["amdgpu"],
            "vfio-pci",
            &[("/etc/modprobe.d/0.conf", "softdep amdgpu pre: x\n")],
        );
        assert!(found[0].message.contains("wins"));
    }

    #[test]
    fn drivers_by_vendor_and_class() {
        assert_eq!(drivers_for(0x1002, 0x030000), ["amdgpu", "radeon"]);
        assert_eq!(
            drivers_for(0x10de, 0x030200),
            ["nouveau", "nvidia", "nvidia_drm"]
        );
        assert_eq!(drivers_for(0x8086, 0x038000), ["i915", "xe"]);
        assert_eq!(drivers_for(0x10de, 0x040300), ["snd_hda_intel"]);
        assert_eq!(drivers_for(0x10de, 0x0c8000), ["i2c_nvidia_gpu"]);
        assert!(drivers_for(0x1234, 0x030000).is_empty());
    }

    #[test]
    fn ids_parse_and_print() {
        assert_eq!(
            "10de:1B80".parse::<PciId>().ok(),
            Some(PciId::new(0x10de, 0x1b80))
        );
        assert_eq!(PciId::new(0x1002, 0xaaf0).to_string(), "1002:aaf0");
        assert!("10de:1b8".parse::<PciId>().is_err());
    }

    #[test]
    fn block_edit_round_trip() {
        let e = ModprobeEdit::new(vec![ids_option_line(&["10de:1b80".into()])]);
        let out = e.apply(BASSROCK).unwrap_or_default();
        assert!(out.ends_with("options vfio-pci ids=1987:5012\n# BEGIN exliar vfio\noptions vfio-pci ids=10de:1b80\n# END exliar vfio"));
        assert_eq!(e.apply(&out).ok().as_deref(), Some(out.as_str()));
        assert_eq!(e.remove(&out).ok().as_deref(), Some(BASSROCK));
    }
}
