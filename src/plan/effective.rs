//! What the kernel will really use: the effective vfio-pci configuration of
//! a target, evaluated the way the boot applies it, and which PCI functions
//! vfio-pci would claim with it. Pure: the caller hands in the texts.
//!
//! Order, as kmod and the kernel apply it (each later `ids=` replaces an
//! earlier one; the other options accumulate):
//! 1. modprobe.d files (`/etc`, `/run`, `/usr/lib`, `/lib`), in the order of
//!    their names, a name in `/etc` hiding the same name further down; all
//!    `options` lines of a module in file order (only the first `softdep`
//!    and the first `install` line of a module count);
//! 2. the kernel command line's `vfio-pci.ids=` / `vfio_pci.ids=` (kmod reads
//!    `/proc/cmdline` after the files; a built-in vfio-pci sees only these);
//! 3. the arguments on a `vfio_pci` line of initramfs-tools'
//!    `/etc/initramfs-tools/modules` (passed to modprobe at load, after
//!    every configured option).

use std::fmt;

use serde::Serialize;

use super::boot::params::key_value;
use super::initramfs::normalize_module;
use super::modprobe::{self, PciId};
use crate::model::PciAddress;

/// Where a setting comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Origin {
    /// A modprobe.d file and its 1-based line.
    Modprobe { file: String, line: usize },
    /// A parameter of the kernel command line.
    Cmdline { param: String },
    /// A line of `/etc/initramfs-tools/modules`.
    InitramfsModules { line: usize },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Modprobe { file, line } => write!(f, "{file}:{line}"),
            Origin::Cmdline { param } => write!(f, "`{param}` on the kernel command line"),
            Origin::InitramfsModules { line } => {
                write!(f, "{}:{line}", super::initramfs::tools::MODULES_FILE)
            }
        }
    }
}

/// One `ids=` given to vfio-pci.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdsFrom {
    pub origin: Origin,
    pub ids: Vec<String>,
}

/// What a target configures for vfio-pci.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// modprobe.d files `(path, text)`, `/etc` before `/run`, `/usr/lib`, `/lib`.
    pub modprobe_d: &'a [(String, String)],
    /// The kernel command line, as parameters.
    pub cmdline: &'a [String],
    /// `/etc/initramfs-tools/modules` when initramfs-tools builds the image.
    pub initramfs_modules: Option<&'a str>,
    /// vfio-pci is built into the kernel: only the command line reaches it.
    pub builtin: bool,
}

/// The effective vfio-pci configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Effective {
    /// Every `ids=` in the order it is applied; the last one is in effect.
    pub settings: Vec<IdsFrom>,
    /// The `install vfio_pci` line kmod runs (the first one), if any.
    pub install: Option<(Origin, String)>,
}

impl Effective {
    /// The `ids=` vfio-pci ends up with.
    pub fn ids(&self) -> Option<&IdsFrom> {
        self.settings.last()
    }
}

/// The ids of an `ids=` value: lower-case, blanks and quotes dropped.
fn id_list(v: &str) -> Vec<String> {
    v.trim_matches('"')
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The `vfio-pci.ids=` parameters of a command line: `(index, ids)`.
pub fn cmdline_ids(cmdline: &[String]) -> Vec<(usize, Vec<String>)> {
    cmdline
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let (k, v) = key_value(p);
            (k == "vfio_pci.ids").then(|| (i, id_list(&v.unwrap_or_default())))
        })
        .collect()
}

/// One module line of an initramfs-tools `modules` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleLine {
    /// 1-based line.
    pub line: usize,
    /// The first word, `-`/`_` normalized.
    pub module: String,
    pub args: Vec<String>,
}

/// modprobe.d commands: as the first word of a `modules` line they are
/// loaded as module names (and fail), never read as configuration.
pub const MODPROBE_COMMANDS: &[&str] = &[
    "options",
    "softdep",
    "install",
    "remove",
    "blacklist",
    "alias",
];

/// The module lines of an initramfs-tools `modules` file (`name [args]`,
/// `#` comments and blank lines skipped).
pub fn parse_modules_file(text: &str) -> Vec<ModuleLine> {
    text.split('\n')
        .enumerate()
        .filter_map(|(n, l)| {
            let t = l.trim();
            if t.is_empty() || t.starts_with('#') {
                return None;
            }
            let mut words = t.split_whitespace();
            let module = normalize_module(words.next()?);
            Some(ModuleLine {
                line: n + 1,
                module,
                args: words.map(str::to_string).collect(),
            })
        })
        .collect()
}

/// Evaluate the vfio-pci configuration.
pub fn evaluate(inputs: &Inputs<'_>) -> Effective {
    let mut out = Effective::default();
    if !inputs.builtin {
        let files: Vec<(&str, &str)> = inputs
            .modprobe_d
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        for s in modprobe::existing_vfio_ids(&files).settings {
            out.settings.push(IdsFrom {
                origin: Origin::Modprobe {
                    file: s.file,
                    line: s.line,
                },
                ids: s.ids,
            });
        }
        out.install = modprobe::first_install(&files, "vfio_pci")
            .map(|(file, line, cmd)| (Origin::Modprobe { file, line }, cmd));
    }
    for (i, ids) in cmdline_ids(inputs.cmdline) {
        out.settings.push(IdsFrom {
            origin: Origin::Cmdline {
                param: inputs.cmdline[i].clone(),
            },
            ids,
        });
    }
    if !inputs.builtin
        && let Some(text) = inputs.initramfs_modules
    {
        for m in parse_modules_file(text) {
            if m.module != "vfio_pci" {
                continue;
            }
            for a in &m.args {
                if let Some((k, v)) = a.split_once('=')
                    && k.replace('-', "_") == "ids"
                {
                    out.settings.push(IdsFrom {
                        origin: Origin::InitramfsModules { line: m.line },
                        ids: id_list(v),
                    });
                }
            }
        }
    }
    out
}

/// Does one entry of vfio-pci's `ids=` (`vendor:device[:subvendor:...]`,
/// hex, `ffffffff` for any) match this id? Subsystem and class fields are
/// not known here and are taken as matching.
pub fn id_matches(entry: &str, id: PciId) -> bool {
    let mut it = entry.split(':');
    let field = |s: Option<&str>| s.and_then(|s| u32::from_str_radix(s.trim(), 16).ok());
    let (Some(v), Some(d)) = (field(it.next()), field(it.next())) else {
        return false;
    };
    (v == 0xffff_ffff || v == u32::from(id.vendor))
        && (d == 0xffff_ffff || d == u32::from(id.device))
}

/// The functions vfio-pci claims at boot: those whose id is in `ids`, and
/// those bound by address (exliar's early-bind step).
pub fn claimed(
    ids: &[String],
    devices: &[(PciAddress, PciId)],
    by_address: &[PciAddress],
) -> Vec<PciAddress> {
    let mut out: Vec<PciAddress> = devices
        .iter()
        .filter(|(a, id)| by_address.contains(a) || ids.iter().any(|e| id_matches(e, *id)))
        .map(|(a, _)| *a)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What is wrong with a set of claimed functions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Functions of the guest card vfio-pci would not claim.
    pub missing: Vec<PciAddress>,
    /// Functions the host keeps that vfio-pci would claim.
    pub extra: Vec<PciAddress>,
}

impl Verdict {
    pub fn judge(guest: &[PciAddress], keep: &[PciAddress], claimed: &[PciAddress]) -> Self {
        Self {
            missing: guest
                .iter()
                .filter(|a| !claimed.contains(a))
                .copied()
                .collect(),
            extra: keep
                .iter()
                .filter(|a| claimed.contains(a))
                .copied()
                .collect(),
        }
    }

    pub fn is_ok(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn order_files_then_cmdline_then_initramfs_args() {
        let files = vec![
            (
                "/etc/modprobe.d/zz-exliar-vfio-ids.conf".to_string(),
                "options vfio-pci ids=10de:1b80,10de:10f0\n".to_string(),
            ),
            (
                "/usr/lib/modprobe.d/a.conf".to_string(),
                "options vfio_pci ids=1002:67df\ninstall vfio_pci /bin/true\n".to_string(),
            ),
        ];
        let cmd = s(&["quiet", "vfio_pci.ids=10DE:1b81"]);
        let e = evaluate(&Inputs {
            modprobe_d: &files,
            cmdline: &cmd,
            initramfs_modules: None,
            builtin: false,
        });
        assert_eq!(e.settings.len(), 3);
        assert_eq!(e.ids().map(|i| i.ids.clone()), Some(s(&["10de:1b81"])));
        assert!(
            matches!(e.install, Some((Origin::Modprobe { ref file, line: 2 }, _)) if file == "/usr/lib/modprobe.d/a.conf")
        );
        let e = evaluate(&Inputs {
            modprobe_d: &files,
            cmdline: &cmd,
            initramfs_modules: Some("vfio\nvfio-pci ids=1002:aaf0 disable_vga=1\n"),
            builtin: false,
        });
        assert_eq!(
            e.ids().map(|i| (i.origin.clone(), i.ids.clone())),
            Some((Origin::InitramfsModules { line: 2 }, s(&["1002:aaf0"])))
        );
        // Built in: the command line only.
        let e = evaluate(&Inputs {
            modprobe_d: &files,
            cmdline: &[],
            initramfs_modules: Some("vfio-pci ids=1002:aaf0\n"),
            builtin: true,
        });
        assert!(e.ids().is_none());
    }

    #[test]
    fn claims_and_verdict() {
        let a = |s: &str| s.parse::<PciAddress>().expect("address");
        let devs = [
            (a("0000:01:00.0"), PciId::new(0x10de, 0x1b80)),
            (a("0000:01:00.1"), PciId::new(0x10de, 0x10f0)),
            (a("0000:02:00.0"), PciId::new(0x10de, 0x1b80)),
        ];
        let c = claimed(&s(&["10de:1b80"]), &devs, &[]);
        assert_eq!(c, [a("0000:01:00.0"), a("0000:02:00.0")]);
        let v = Verdict::judge(
            &[a("0000:01:00.0"), a("0000:01:00.1")],
            &[a("0000:02:00.0")],
            &c,
        );
        assert_eq!(v.missing, [a("0000:01:00.1")]);
        assert_eq!(v.extra, [a("0000:02:00.0")]);
        assert!(id_matches("ffffffff:10f0:ffffffff:ffffffff", devs[1].1));
        assert!(!id_matches("garbage", devs[1].1));
    }
}
