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

use super::params::{conflicts, same_param, split};
use super::{bls, grub, kernelstub, limine, refind};
use crate::analyze::bootenv::CmdlineSource;
use crate::plan::Step;
use crate::plan::isolate::TargetFacts;

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
/// (relative paths, lossy text).
fn files_after(facts: &TargetFacts, steps: &[Step]) -> BTreeMap<String, Option<String>> {
    let mut files = facts.files.clone();
    for s in steps {
        if let Step::WriteFile { path, after, .. } = s {
            files.insert(
                path.to_string_lossy().trim_start_matches('/').to_string(),
                Some(String::from_utf8_lossy(after).into_owned()),
            );
        }
    }
    files
}

/// The parameters of the `--args=` / `-a` of the plan's commands named
/// `tool` (what grubby and kernelstub will add).
fn run_args(steps: &[Step], tool: &str, flag: &str) -> Vec<String> {
    let mut v = Vec::new();
    for s in steps {
        if let Step::Run { argv, .. } = s
            && argv.first().map(String::as_str) == Some(tool)
        {
            let mut it = argv.iter().skip(1);
            while let Some(a) = it.next() {
                let value = if let Some(x) = a.strip_prefix(&format!("{flag}=")) {
                    Some(x.to_string())
                } else if a == flag {
                    it.next().cloned()
                } else {
                    None
                };
                if let Some(x) = value {
                    v.extend(split(&x).unwrap_or_default());
                }
            }
        }
    }
    v
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

fn check(out: &mut Vec<Unplaced>, entry: String, tokens: &[String], params: &[String]) {
    let (miss, why) = missing(tokens, params);
    if miss.is_empty() {
        return;
    }
    let mut reason = "its command line will not have them after the plan".to_string();
    if !why.is_empty() {
        reason.push_str(&format!(" ({})", why.join("; ")));
    }
    reason.push_str(": add them there by hand");
    out.push(Unplaced {
        entry,
        missing: miss,
        reason,
    });
}

fn all(entry: impl Into<String>, params: &[String], reason: impl Into<String>) -> Unplaced {
    Unplaced {
        entry: entry.into(),
        missing: params.to_vec(),
        reason: reason.into(),
    }
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
    let mut out = Vec::new();
    if params.is_empty() {
        return out;
    }
    let files = files_after(facts, steps);
    let file = |rel: &str| files.get(rel).and_then(|o| o.as_deref());
    let unreadable = |rel: &str, e: &dyn std::fmt::Display| {
        all(
            format!("/{rel}"),
            params,
            format!("it cannot be read back after the plan ({e}): check it by hand"),
        )
    };
    match source {
        None => out.push(all(
            "the boot loader",
            params,
            "no boot-loader configuration was recognised in the target: add them to the kernel command line yourself (or name the boot loader with --bootloader)",
        )),
        Some(CmdlineSource::Nixos) | Some(CmdlineSource::Ostree) => out.push(all(
            "the boot loader",
            params,
            "an immutable system: exliar does not edit its boot configuration",
        )),
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
            check(&mut out, entry, &tokens, params);
        }
        Some(CmdlineSource::KernelCmdlineFile { .. }) | Some(CmdlineSource::ProxmoxBootTool) => {
            let rel = "etc/kernel/cmdline";
            match split(file(rel).unwrap_or("")) {
                Ok(t) => check(&mut out, format!("/{rel}"), &t, params),
                Err(e) => out.push(unreadable(rel, &e.message)),
            }
        }
        Some(CmdlineSource::BlsEntry { file: f }) => {
            let rel = f.trim_start_matches('/');
            match bls::entry_cmdline(file(rel).unwrap_or("")) {
                Err(e) => out.push(unreadable(rel, &e)),
                Ok(e) => match e.kind {
                    bls::EntryKind::Linux => check(
                        &mut out,
                        format!("/{rel}"),
                        &e.options.unwrap_or_default(),
                        params,
                    ),
                    bls::EntryKind::Uki => out.push(all(
                        format!("/{rel}"),
                        params,
                        "a `uki` entry: the command line is built into the image; add them to /etc/kernel/cmdline and rebuild the UKI",
                    )),
                    bls::EntryKind::Efi => out.push(all(
                        format!("/{rel}"),
                        params,
                        "an `efi` entry boots an EFI program, not a Linux kernel: name the Linux entry (loader.conf `default`)",
                    )),
                },
            }
        }
        Some(CmdlineSource::Grubby) => {
            let args = run_args(steps, "grubby", "--args");
            match crate::plan::isolate::grubby_entries(facts).0 {
                entries if entries.is_empty() => out.push(all(
                    "/boot/loader/entries",
                    params,
                    "no BLS entry found for grubby to edit: check `grubby --info=ALL` after applying",
                )),
                entries => {
                    for (rel, mut tokens) in entries {
                        // grubby --args replaces a key's value or appends.
                        for a in &args {
                            tokens.retain(|t| {
                                super::params::identity(t) != super::params::identity(a)
                            });
                            tokens.push(a.clone());
                        }
                        check(&mut out, format!("/{rel}"), &tokens, params);
                    }
                }
            }
        }
        Some(CmdlineSource::RefindConf { file: f }) => {
            let rel = f.trim_start_matches('/');
            match refind::edit_refind_linux_conf(file(rel).unwrap_or(""), params, &[]) {
                Err(e) => out.push(unreadable(rel, &e)),
                Ok(e) if !e.added.is_empty() => out.push(all(
                    format!("/{rel}"),
                    &e.added,
                    "its options will not have them after the plan: add them there by hand",
                )),
                Ok(_) => {}
            }
        }
        Some(CmdlineSource::LimineDefault) => {
            let rel = "etc/default/limine";
            match limine::edit_default_limine(file(rel).unwrap_or(""), params, &[]) {
                Err(e) => out.push(unreadable(rel, &e)),
                Ok(e) if !e.added.is_empty() => out.push(all(
                    format!("/{rel}"),
                    &e.added,
                    "KERNEL_CMDLINE[default] will not have them after the plan: add them there by hand",
                )),
                Ok(_) => {}
            }
        }
        Some(CmdlineSource::Kernelstub) => {
            let rel = "etc/kernelstub/configuration";
            match kernelstub::read_config(file(rel).unwrap_or("")) {
                Err(e) => out.push(unreadable(rel, &e)),
                Ok(c) => {
                    let mut tokens = c.kernel_options;
                    tokens.extend(run_args(steps, "kernelstub", "-a"));
                    check(&mut out, format!("/{rel}"), &tokens, params);
                }
            }
        }
        Some(CmdlineSource::LimineConf { file: f }) => {
            let rel = f.trim_start_matches('/');
            match limine::limine_entries(file(rel).unwrap_or("")) {
                Err(e) => out.push(unreadable(rel, &e)),
                Ok(entries) => {
                    let mut linux = 0;
                    for e in &entries {
                        let name = format!("/{rel} entry `{}` (line {})", e.title, e.line);
                        if e.is_linux() {
                            linux += 1;
                            let t = split(e.cmdline.as_deref().unwrap_or("")).unwrap_or_default();
                            check(&mut out, name, &t, params);
                        } else if e.is_uki() {
                            let path = e.path.as_deref().unwrap_or("no path");
                            let image = path.to_ascii_lowercase().ends_with(".efi");
                            out.push(all(
                                name,
                                params,
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
                    if linux == 0 && !out.iter().any(|u| u.entry.starts_with(&format!("/{rel}"))) {
                        out.push(all(
                            format!("/{rel}"),
                            params,
                            "no Linux entry (`protocol: linux`) in it: nothing boots with them",
                        ));
                    }
                }
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
}
