//! What each boot entry will really pass to the kernel once a plan is
//! applied: the plan's file edits are applied in memory, the resulting
//! configuration is read back the way the boot loader reads it, and every
//! parameter exliar needs is looked for on each entry's command line. A
//! parameter that will not be there (a UKI whose command line is built in,
//! a user's conflicting value, no boot-loader configuration recognised, …)
//! is an [`Unplaced`]: the plan and apply output say it loudly. Pure: the
//! target's files come from [`TargetFacts`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::params::{conflicts, identity, same_param, split};
use super::{bls, grub, kernelstub, limine, refind};
use crate::analyze::bootenv::CmdlineSource;
use crate::plan::isolate::TargetFacts;
use crate::plan::{Step, rawtext};

/// Needed kernel parameters one boot entry will not pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unplaced {
    /// What boots: a file, or a file and an entry (`/boot/limine.conf`
    /// entry `Arch Linux (UKI)`), or `the boot loader` when none was
    /// recognised.
    pub entry: String,
    /// The parameters its command line will lack, in the plan's order.
    pub missing: Vec<String>,
    /// Why, and what to do.
    pub reason: String,
}

/// The target's files as they will be after the plan's `write-file` steps
/// (relative paths; text decoded reversibly, as [`TargetFacts::files`]).
pub(crate) fn files_after(facts: &TargetFacts, steps: &[Step]) -> BTreeMap<String, Option<String>> {
    let mut files = facts.files.clone();
    for s in steps {
        if let Step::WriteFile { path, after, .. } = s {
            files.insert(
                path.to_string_lossy().trim_start_matches('/').to_string(),
                Some(rawtext::decode(after)),
            );
        }
    }
    files
}

/// The parameters the plan's commands named `tool` add (`add` flag, as
/// `--args=…` or `-a …`) and take out (`remove` flag), in order: `true`
/// for an added one.
fn run_args(steps: &[Step], tool: &str, add: &str, remove: &str) -> Vec<(bool, String)> {
    let mut v = Vec::new();
    for s in steps {
        if let Step::Run { argv, .. } = s
            && argv.first().map(String::as_str) == Some(tool)
        {
            let mut it = argv.iter().skip(1);
            while let Some(a) = it.next() {
                for (flag, adds) in [(add, true), (remove, false)] {
                    let value = if let Some(x) = a.strip_prefix(&format!("{flag}=")) {
                        Some(x.to_string())
                    } else if a == flag {
                        it.next().cloned()
                    } else {
                        None
                    };
                    if let Some(x) = value {
                        v.extend(split(&x).unwrap_or_default().into_iter().map(|p| (adds, p)));
                    }
                }
            }
        }
    }
    v
}

/// `tokens` once a command has added (replacing a value of the same key)
/// and removed `edits`.
fn run_edited(mut tokens: Vec<String>, edits: &[(bool, String)]) -> Vec<String> {
    for (adds, p) in edits {
        if *adds {
            tokens.retain(|t| identity(t) != identity(p));
            tokens.push(p.clone());
        } else {
            let bare = !p.contains('=');
            tokens.retain(|t| !(same_param(t, p) || (bare && identity(t) == identity(p))));
        }
    }
    tokens
}

/// The needed parameters a command line lacks, and why (a conflicting
/// value on it is named).
fn missing(tokens: &[String], params: &[String]) -> (Vec<String>, Vec<String>) {
    let mut miss = Vec::new();
    let mut why = Vec::new();
    for p in params {
        let conflicting: Vec<&String> = tokens.iter().filter(|t| conflicts(t, p)).collect();
        if !conflicting.is_empty() {
            miss.push(p.clone());
            why.push(format!(
                "`{}` is set instead of `{p}`",
                conflicting
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        } else if !tokens.iter().any(|t| same_param(t, p)) {
            miss.push(p.clone());
        }
    }
    (miss, why)
}

/// What one boot entry will pass to the kernel after the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryCmdline {
    /// What boots: a file, or a file and an entry (`/boot/limine.conf`
    /// entry `Arch Linux (UKI)`), or `the boot loader` when none was
    /// recognised.
    pub entry: String,
    /// Its parameters in order, or why they are not known (a UKI, an EFI
    /// program, a file that cannot be read back, no boot loader
    /// recognised, …) and what to do.
    pub cmdline: Result<Vec<String>, String>,
}

impl EntryCmdline {
    fn known(entry: impl Into<String>, tokens: Vec<String>) -> Self {
        Self {
            entry: entry.into(),
            cmdline: Ok(tokens),
        }
    }

    fn unknown(entry: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            entry: entry.into(),
            cmdline: Err(why.into()),
        }
    }
}

/// The command line every boot entry of `source` will pass once `steps`
/// (the plan) are applied to the target's files (`files`, as
/// [`files_after`] gives them) and its commands run.
pub fn entries_after(
    source: Option<&CmdlineSource>,
    facts: &TargetFacts,
    files: &BTreeMap<String, Option<String>>,
    steps: &[Step],
) -> Vec<EntryCmdline> {
    let mut out = Vec::new();
    let file = |rel: &str| files.get(rel).and_then(|o| o.as_deref());
    let unreadable = |rel: &str, e: &dyn std::fmt::Display| {
        EntryCmdline::unknown(
            format!("/{rel}"),
            format!("it cannot be read back after the plan ({e}): check it by hand"),
        )
    };
    match source {
        None => out.push(EntryCmdline::unknown(
            "the boot loader",
            "no boot-loader configuration was recognised in the target: add them to the kernel command line yourself (or name the boot loader with --bootloader)",
        )),
        Some(CmdlineSource::Nixos) | Some(CmdlineSource::Ostree) => {
            out.push(EntryCmdline::unknown(
                "the boot loader",
                "an immutable system: exliar does not edit its boot configuration",
            ))
        }
        Some(CmdlineSource::GrubDefault { .. }) => {
            let rel = "etc/default/grub";
            // Drop-ins count: sourced by the main file, or after it by
            // Debian's grub-mkconfig (the family that has update-grub).
            let dropins: Vec<(String, String)> = files
                .iter()
                .filter_map(|(p, t)| {
                    let name = p.strip_prefix("etc/default/grub.d/")?;
                    (name.ends_with(".cfg") && !name.contains('/'))
                        .then(|| Some((name.to_string(), t.clone()?)))
                        .flatten()
                })
                .collect();
            let inputs = grub::GrubInputs {
                main: file(rel).unwrap_or(""),
                dropins: &dropins,
                dropins_sourced: facts.has_tool("update-grub"),
            };
            let mut tokens = Vec::new();
            for var in ["GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT"] {
                match grub::grub_variable(&inputs, var) {
                    Ok(v) => tokens.extend(split(v.as_deref().unwrap_or("")).unwrap_or_default()),
                    Err(e) => {
                        out.push(unreadable(rel, &e));
                        return out;
                    }
                }
            }
            let entry = if dropins.is_empty() {
                "/etc/default/grub (GRUB_CMDLINE_LINUX and GRUB_CMDLINE_LINUX_DEFAULT)".to_string()
            } else {
                format!(
                    "/etc/default/grub with /etc/default/grub.d/{{{}}} (GRUB_CMDLINE_LINUX and GRUB_CMDLINE_LINUX_DEFAULT as grub-mkconfig reads them)",
                    dropins
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            };
            out.push(EntryCmdline::known(entry, tokens));
        }
        Some(CmdlineSource::KernelCmdlineFile { .. }) | Some(CmdlineSource::ProxmoxBootTool) => {
            let rel = "etc/kernel/cmdline";
            out.push(match split(file(rel).unwrap_or("")) {
                Ok(t) => EntryCmdline::known(format!("/{rel}"), t),
                Err(e) => unreadable(rel, &e.message),
            });
        }
        Some(CmdlineSource::BlsEntry { file: f }) => {
            let rel = f.trim_start_matches('/');
            out.push(match bls::entry_cmdline(file(rel).unwrap_or("")) {
                Err(e) => unreadable(rel, &e),
                Ok(e) => match e.kind {
                    bls::EntryKind::Linux => {
                        EntryCmdline::known(format!("/{rel}"), e.options.unwrap_or_default())
                    }
                    bls::EntryKind::Uki => EntryCmdline::unknown(
                        format!("/{rel}"),
                        "a `uki` entry: the command line is built into the image; add them to /etc/kernel/cmdline and rebuild the UKI",
                    ),
                    bls::EntryKind::Efi => EntryCmdline::unknown(
                        format!("/{rel}"),
                        "an `efi` entry boots an EFI program, not a Linux kernel: name the Linux entry (loader.conf `default`)",
                    ),
                },
            });
        }
        Some(CmdlineSource::Grubby) => {
            let edits = run_args(steps, "grubby", "--args", "--remove-args");
            let entries = crate::plan::isolate::grubby_entries(facts).0;
            if entries.is_empty() {
                out.push(EntryCmdline::unknown(
                    "/boot/loader/entries",
                    "no BLS entry found for grubby to edit: check `grubby --info=ALL` after applying",
                ));
            }
            for (rel, tokens) in entries {
                // grubby --args replaces a key's value or appends.
                out.push(EntryCmdline::known(
                    format!("/{rel}"),
                    run_edited(tokens, &edits),
                ));
            }
        }
        Some(CmdlineSource::RefindConf { file: f }) => {
            let rel = f.trim_start_matches('/');
            match refind::refind_entries(file(rel).unwrap_or("")) {
                Err(e) => out.push(unreadable(rel, &e)),
                Ok(entries) => out.extend(entries.into_iter().map(|(line, label, t)| {
                    EntryCmdline::known(format!("/{rel} entry \"{label}\" (line {line})"), t)
                })),
            }
        }
        Some(CmdlineSource::LimineDefault) => {
            let rel = "etc/default/limine";
            out.push(
                match limine::default_limine_cmdline(file(rel).unwrap_or("")) {
                    Err(e) => unreadable(rel, &e),
                    Ok(t) => EntryCmdline::known(format!("/{rel} (KERNEL_CMDLINE[default])"), t),
                },
            );
        }
        Some(CmdlineSource::Kernelstub) => {
            let rel = "etc/kernelstub/configuration";
            out.push(match kernelstub::read_config(file(rel).unwrap_or("")) {
                Err(e) => unreadable(rel, &e),
                Ok(c) => EntryCmdline::known(
                    format!("/{rel}"),
                    run_edited(c.kernel_options, &run_args(steps, "kernelstub", "-a", "-d")),
                ),
            });
        }
        Some(CmdlineSource::LimineConf { file: f }) => {
            let rel = f.trim_start_matches('/');
            match limine::limine_entries(file(rel).unwrap_or("")) {
                Err(e) => out.push(unreadable(rel, &e)),
                Ok(entries) => {
                    for e in &entries {
                        let name = format!("/{rel} entry `{}` (line {})", e.title, e.line);
                        if e.is_linux() {
                            let t = split(e.cmdline.as_deref().unwrap_or("")).unwrap_or_default();
                            out.push(EntryCmdline::known(name, t));
                        } else if e.is_uki() {
                            let path = e.path.as_deref().unwrap_or("no path");
                            let image = path.to_ascii_lowercase().ends_with(".efi");
                            out.push(EntryCmdline::unknown(
                                name,
                                if image {
                                    format!(
                                        "boots an EFI image ({path}) that looks like a unified kernel image: its kernel command line is the one built into the image, which exliar does not edit; add them to /etc/kernel/cmdline (or your UKI tool's command line) and rebuild the image"
                                    )
                                } else {
                                    format!(
                                        "starts {path} as an EFI program (`protocol: efi` with a `cmdline:`); exliar edits only `protocol: linux` entries: if it is a kernel, add them to its `cmdline:` by hand"
                                    )
                                },
                            ));
                        }
                    }
                    if out.is_empty() {
                        out.push(EntryCmdline::unknown(
                            format!("/{rel}"),
                            "no Linux entry (`protocol: linux`) in it: nothing boots with them",
                        ));
                    }
                }
            }
        }
    }
    out
}

/// Evaluate the command line every boot entry of `source` will pass after
/// `steps` (the plan), and return the entries that will lack any of
/// `params`. An empty result: every entry has every parameter.
pub fn evaluate(
    source: Option<&CmdlineSource>,
    facts: &TargetFacts,
    steps: &[Step],
    params: &[String],
) -> Vec<Unplaced> {
    if params.is_empty() {
        return Vec::new();
    }
    let files = files_after(facts, steps);
    let mut out = Vec::new();
    for e in entries_after(source, facts, &files, steps) {
        match e.cmdline {
            Err(reason) => out.push(Unplaced {
                entry: e.entry,
                missing: params.to_vec(),
                reason,
            }),
            Ok(tokens) => {
                let (miss, why) = missing(&tokens, params);
                if miss.is_empty() {
                    continue;
                }
                let mut reason = "its command line will not have them after the plan".to_string();
                if !why.is_empty() {
                    reason.push_str(&format!(" ({})", why.join("; ")));
                }
                reason.push_str(": add them there by hand");
                out.push(Unplaced {
                    entry: e.entry,
                    missing: miss,
                    reason,
                });
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn facts(files: &[(&str, &str)]) -> TargetFacts {
        let mut f = TargetFacts::default();
        for (p, t) in files {
            f.files.insert(p.to_string(), Some(t.to_string()));
        }
        f
    }

    #[test]
    fn limine_linux_edited_uki_left() {
        let conf = "/Arch\n  protocol: linux\n  path: boot():/vmlinuz\n  cmdline: root=/x\n/Arch UKI\n  protocol: efi\n  path: boot():/EFI/Linux/arch.efi\n  cmdline: quiet\n/Windows\n  protocol: efi\n  path: boot():/EFI/Microsoft/Boot/bootmgfw.efi\n";
        let f = facts(&[("boot/limine.conf", conf)]);
        let src = CmdlineSource::LimineConf {
            file: "/boot/limine.conf".into(),
        };
        let params = s(&["iommu=pt"]);
        // Before the edit: both Linux ways lack it.
        let u = evaluate(Some(&src), &f, &[], &params);
        assert_eq!(u.len(), 2, "{u:?}");
        // After the editor's change: only the UKI.
        let after = limine::edit_limine_conf(conf, &params, &[]).unwrap().text;
        let steps = vec![Step::WriteFile {
            path: PathBuf::from("boot/limine.conf"),
            before: Some(conf.as_bytes().to_vec()),
            after: after.into_bytes(),
            mode: 0o644,
            why: String::new(),
        }];
        let u = evaluate(Some(&src), &f, &steps, &params);
        assert_eq!(u.len(), 1, "{u:?}");
        assert!(u[0].entry.contains("`Arch UKI`"), "{u:?}");
        assert!(u[0].reason.contains("unified kernel image"));
        assert_eq!(u[0].missing, params);
    }

    #[test]
    fn systemd_boot_uki_and_efi_entries() {
        let params = s(&["iommu=pt"]);
        for (text, says) in [
            ("title A\nuki /EFI/Linux/a.efi\n", "built into the image"),
            ("title W\nefi /shellx64.efi\n", "not a Linux kernel"),
        ] {
            let f = facts(&[("boot/loader/entries/a.conf", text)]);
            let src = CmdlineSource::BlsEntry {
                file: "/boot/loader/entries/a.conf".into(),
            };
            let u = evaluate(Some(&src), &f, &[], &params);
            assert!(u.len() == 1 && u[0].reason.contains(says), "{u:?}");
        }
    }

    #[test]
    fn conflicts_and_grubby_args() {
        let f = facts(&[("etc/kernel/cmdline", "root=/x intel_iommu=off\n")]);
        let src = CmdlineSource::KernelCmdlineFile {
            regenerate: String::new(),
        };
        let u = evaluate(Some(&src), &f, &[], &s(&["intel_iommu=on"]));
        assert!(u[0].reason.contains("`intel_iommu=off` is set"), "{u:?}");

        let mut f = facts(&[(
            "boot/loader/entries/a.conf",
            "linux /v\noptions root=/x iommu=1\n",
        )]);
        f.loader_entries = s(&["boot/loader/entries/a.conf"]);
        let run = |args: &str| Step::Run {
            argv: s(&["grubby", "--update-kernel=ALL", args]),
            undo: None,
            why: String::new(),
        };
        let params = s(&["iommu=pt", "rd.driver.pre=vfio-pci"]);
        let u = evaluate(Some(&CmdlineSource::Grubby), &f, &[], &params);
        assert_eq!(u[0].missing, params);
        let u = evaluate(
            Some(&CmdlineSource::Grubby),
            &f,
            &[run("--args=iommu=pt rd.driver.pre=vfio-pci")],
            &params,
        );
        assert!(u.is_empty(), "{u:?}");
        assert_eq!(
            evaluate(None, &f, &[], &params)[0].entry,
            "the boot loader".to_string()
        );
    }

    #[test]
    fn entry_command_lines_refind_limine_default_and_removals() {
        let f = facts(&[
            (
                "boot/refind_linux.conf",
                "\"Boot\" \"root=/x quiet\"\n# c\n\"Single\" \"root=/x single iommu=pt\"\n",
            ),
            (
                "etc/default/limine",
                "KERNEL_CMDLINE[default]=\"root=/x\"\nKERNEL_CMDLINE[default]+=\" quiet\"\n",
            ),
            (
                "etc/kernelstub/configuration",
                r#"{"user": {"kernel_options": "quiet vfio-pci.ids=1:2", "config_rev": 2}}"#,
            ),
        ]);
        let src = CmdlineSource::RefindConf {
            file: "/boot/refind_linux.conf".into(),
        };
        let e = entries_after(Some(&src), &f, &f.files, &[]);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[1].entry.contains("\"Single\" (line 3)"), "{e:?}");
        assert_eq!(e[1].cmdline, Ok(s(&["root=/x", "single", "iommu=pt"])));
        let u = evaluate(Some(&src), &f, &[], &s(&["iommu=pt"]));
        assert_eq!(u.len(), 1, "{u:?}");
        assert!(u[0].entry.contains("\"Boot\" (line 1)"), "{u:?}");

        let e = entries_after(Some(&CmdlineSource::LimineDefault), &f, &f.files, &[]);
        assert_eq!(e[0].cmdline, Ok(s(&["root=/x", "quiet"])));

        let run = |argv: &[&str]| Step::Run {
            argv: s(argv),
            undo: None,
            why: String::new(),
        };
        let steps = [
            run(&["kernelstub", "-d", "vfio-pci.ids=1:2"]),
            run(&["kernelstub", "-a", "iommu=pt"]),
        ];
        let e = entries_after(Some(&CmdlineSource::Kernelstub), &f, &f.files, &steps);
        assert_eq!(e[0].cmdline, Ok(s(&["quiet", "iommu=pt"])));

        let mut f = facts(&[(
            "boot/loader/entries/a.conf",
            "linux /v\noptions root=/x vfio-pci.ids=1:2 iommu=1\n",
        )]);
        f.loader_entries = s(&["boot/loader/entries/a.conf"]);
        let steps = [run(&[
            "grubby",
            "--update-kernel=ALL",
            "--args=iommu=pt",
            "--remove-args=vfio-pci.ids=1:2",
        ])];
        let e = entries_after(Some(&CmdlineSource::Grubby), &f, &f.files, &steps);
        assert_eq!(e[0].cmdline, Ok(s(&["root=/x", "iommu=pt"])));
    }
}
