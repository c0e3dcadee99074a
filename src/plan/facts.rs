//! Reading a target root for the planner. This is the planner's only I/O,
//! and it goes through [`HostRoot`] like every other read.

use std::path::Path;

use crate::analyze::bootenv::{self, OsFamily};
use crate::check::gather;
use crate::host::HostRoot;

use super::isolate::TargetFacts;
use super::modalias::PciAliases;

/// Files the planner may edit or consult, relative to the target root.
const FILES: &[&str] = &[
    "etc/mkinitcpio.conf",
    "etc/booster.yaml",
    "etc/initramfs-tools/modules",
    "etc/dracut.conf",
    "etc/default/grub",
    "etc/kernel/cmdline",
    "etc/default/limine",
    "etc/kernelstub/configuration",
    "boot/grub/grub.cfg",
    "boot/grub2/grub.cfg",
    "boot/grub2/grubenv",
    "boot/refind_linux.conf",
];

const MODPROBE_DIRS: &[&str] = &[
    "etc/modprobe.d",
    "run/modprobe.d",
    "usr/lib/modprobe.d",
    "lib/modprobe.d",
];

const TOOLS: &[(&str, &[&str])] = &[
    ("update-grub", &["usr/sbin/update-grub", "sbin/update-grub"]),
    (
        "grub-mkconfig",
        &[
            "usr/sbin/grub-mkconfig",
            "sbin/grub-mkconfig",
            "usr/bin/grub-mkconfig",
        ],
    ),
    (
        "grub2-mkconfig",
        &["usr/sbin/grub2-mkconfig", "sbin/grub2-mkconfig"],
    ),
    (
        "grubby",
        &["usr/sbin/grubby", "sbin/grubby", "usr/bin/grubby"],
    ),
    (
        "kernel-install",
        &["usr/bin/kernel-install", "bin/kernel-install"],
    ),
];

/// A file's text, every byte kept (see [`super::rawtext`]): the editors'
/// `before` is then exactly the file's bytes, and bytes that are not UTF-8
/// are written back as they were. `None` when absent or unreadable.
fn text(host: &HostRoot, rel: &str) -> Option<String> {
    host.read_bytes(rel)
        .ok()
        .map(|b| super::rawtext::decode(&b))
}

/// [`text`] for a file the plan may edit or evaluate: a file that exists
/// but cannot be read (a FIFO, a device node, too large) is recorded in
/// `unreadable`, so that the plan does not take it for absent.
fn config_text(host: &HostRoot, rel: &str, f: &mut TargetFacts) -> Option<String> {
    match host.read_bytes(rel) {
        Ok(b) => Some(super::rawtext::decode(&b)),
        Err(e) if e.is_not_found() => None,
        Err(e) => {
            f.unreadable.insert(rel.to_string(), e.to_string());
            None
        }
    }
}

/// Where kernel module trees (`<release>/modules.alias`, …) live: the usual
/// places, then NixOS's (the booted and the current system's kernel).
const MODULE_DIRS: &[&str] = &[
    "lib/modules",
    "usr/lib/modules",
    "run/booted-system/kernel-modules/lib/modules",
    "run/current-system/kernel-modules/lib/modules",
];

/// Kernel releases installed in the target, newest last.
fn installed_kernels(host: &HostRoot) -> Vec<String> {
    let mut v: Vec<String> = MODULE_DIRS
        .iter()
        .flat_map(|d| host.list_dir(d).unwrap_or_default())
        .filter(|k| k.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .collect();
    v.sort_by_key(|k| version_key(k));
    v.dedup();
    v
}

fn version_key(release: &str) -> Vec<u64> {
    release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Gather what the planner needs from `target`. `live` says whether the
/// target is the running system (then its running kernel is the one that
/// matters; otherwise the newest installed one).
pub fn read(target: &HostRoot, live: bool) -> TargetFacts {
    let mut f = TargetFacts {
        root: target.path().display().to_string(),
        ..TargetFacts::default()
    };
    let ev = gather::gather(target);
    let os_text = ev.os_release().map(|(_, t)| t).unwrap_or_default();
    let os = OsFamily::from_os_release(&os_text);
    let boot = bootenv::detect(&ev, &os);

    let kernels = installed_kernels(target);
    f.kernel_release = if live {
        text(target, "proc/sys/kernel/osrelease").map(|s| s.trim().to_string())
    } else {
        None
    }
    .or_else(|| kernels.last().cloned());
    f.kernels = kernels
        .iter()
        .map(|k| {
            let in_modules = format!("lib/modules/{k}/vmlinuz");
            let image = if target.exists(&in_modules) {
                format!("/{in_modules}")
            } else {
                format!("/boot/vmlinuz-{k}")
            };
            (k.clone(), image)
        })
        .collect();
    if let Some(k) = &f.kernel_release {
        // The kernel's module tree: the first place that has one.
        if let Some(dir) = MODULE_DIRS
            .iter()
            .map(|base| format!("{base}/{k}"))
            .find(|d| target.exists(d))
        {
            if let Some(b) = text(target, &format!("{dir}/modules.builtin")) {
                f.vfio_pci_builtin = b
                    .lines()
                    .any(|l| l.ends_with("/vfio-pci.ko") || l.ends_with("/vfio_pci.ko"));
            }
            if let Some(a) = text(target, &format!("{dir}/modules.alias")) {
                f.pci_aliases = PciAliases::parse(&a);
            }
        }
        let config = text(target, &format!("boot/config-{k}"));
        f.intel_iommu_default_on = config.as_deref().is_some_and(|c| {
            c.lines()
                .any(|l| l.trim() == "CONFIG_INTEL_IOMMU_DEFAULT_ON=y")
        });
    }

    let mut paths: Vec<String> = FILES.iter().map(|s| s.to_string()).collect();
    // Drop-ins and files the editors and detection point at.
    for d in [
        "etc/dracut.conf.d",
        "usr/lib/dracut/dracut.conf.d",
        "etc/mkinitcpio.conf.d",
        "etc/default/grub.d",
    ] {
        for e in target.list_dir(d).unwrap_or_default() {
            paths.push(format!("{d}/{e}"));
        }
    }
    // `--bootloader` may name any of these.
    paths.extend(bootenv::LIMINE_CONFS.iter().map(|s| s.to_string()));
    for m in bootenv::ESP_MOUNTS {
        paths.push(format!("{m}/loader/loader.conf"));
        let dir = format!("{m}/loader/entries");
        let mut names: Vec<String> = target
            .list_dir(&dir)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.ends_with(".conf"))
            .collect();
        names.sort();
        for e in names {
            let rel = format!("{dir}/{e}");
            if !f.loader_entries.contains(&rel) {
                f.loader_entries.push(rel.clone());
                paths.push(rel);
            }
        }
    }
    if let Some(src) = &boot.cmdline_source {
        use bootenv::CmdlineSource as C;
        match src {
            C::BlsEntry { file } | C::RefindConf { file } | C::LimineConf { file } => {
                paths.push(file.trim_start_matches('/').to_string());
            }
            _ => {}
        }
    }
    for p in paths {
        let content = config_text(target, &p, &mut f);
        f.files.insert(p, content);
    }
    // Files exliar creates: their current content decides whether a step
    // is needed.
    for p in [
        super::earlybind::SCRIPT_PATH,
        super::earlybind::TOOLS_HOOK_PATH,
        super::modprobe::EARLY_CONF,
        super::modprobe::IDS_CONF,
        super::initramfs::dracut::DROPIN,
    ] {
        let rel = p.trim_start_matches('/').to_string();
        let content = config_text(target, &rel, &mut f);
        f.files.insert(rel, content);
    }
    for dir in MODPROBE_DIRS {
        for e in target.list_dir(dir).unwrap_or_default() {
            if !e.ends_with(".conf") {
                continue;
            }
            let rel = format!("{dir}/{e}");
            if let Some(t) = config_text(target, &rel, &mut f) {
                f.files.insert(rel.clone(), Some(t.clone()));
                f.modprobe_d.push((format!("/{rel}"), t));
            }
        }
    }
    for (name, candidates) in TOOLS {
        if candidates.iter().any(|c| target.exists(Path::new(c))) {
            f.tools.push(name.to_string());
        }
    }
    f.proc_cmdline = text(target, "proc/cmdline").map(|s| s.trim().to_string());
    f.boot = Some(boot);
    f
}
