//! The Calamares job script (`contrib/calamares/exliar/exliar-calamares.sh`)
//! on a fixture target: hardware from a fixture machine (EXLIAR_ROOT), the
//! installed system a copy of a distribution's tree. Only the target may
//! change.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const HW: &str = "hw23-ryzen1-x370-dual-identical-rx580";
const DISTRO: &str = "debian12-grub-intel";

fn script() -> PathBuf {
    manifest_dir().join("contrib/calamares/exliar/exliar-calamares.sh")
}

/// Every path under `root` with its bytes (symlinks as their target).
fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).expect("prefix").to_path_buf();
            match e.file_type() {
                Ok(t) if t.is_dir() => {
                    out.insert(rel, b"/".to_vec());
                    walk(base, &p, out);
                }
                Ok(t) if t.is_symlink() => {
                    let l = std::fs::read_link(&p).expect("link");
                    out.insert(rel, l.into_os_string().into_encoded_bytes());
                }
                Ok(_) => {
                    out.insert(rel, std::fs::read(&p).expect("read"));
                }
                Err(_) => {}
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A sandbox: `<tmp>/<name>` is the target (a copy of `distro`),
/// `<tmp>/tmp` the script's TMPDIR; nothing else may appear.
struct Sandbox {
    _dir: tempfile::TempDir,
    base: PathBuf,
    target: PathBuf,
}

impl Sandbox {
    fn new(distro: &str, name: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_path_buf();
        let target = base.join(name);
        copy_tree(&host(distro), &target);
        std::fs::create_dir(base.join("tmp")).expect("tmp");
        Sandbox {
            _dir: dir,
            base,
            target,
        }
    }

    /// Run the script with ROOT as its argument; `env` on top of a clean
    /// environment.
    fn run(&self, hw: &str, env: &[(&str, &str)]) -> Output {
        let mut c = Command::new("/bin/sh");
        c.arg(script())
            .arg(&self.target)
            .current_dir(&self.base)
            .env_clear()
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
            .env("TMPDIR", self.base.join("tmp"))
            .env("HOME", self.base.join("tmp"))
            .env("EXLIAR", env!("CARGO_BIN_EXE_exliar"))
            .env("EXLIAR_ROOT", host(hw));
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run the script")
    }

    /// Paths outside the target: only the (empty again) TMPDIR.
    fn assert_nothing_outside(&self) {
        let outside: Vec<PathBuf> = tree(&self.base)
            .into_keys()
            .filter(|p| !p.starts_with(self.target.file_name().expect("name")))
            .collect();
        assert_eq!(
            outside,
            vec![PathBuf::from("tmp")],
            "written outside the target"
        );
    }
}

/// The script's log, and the folders made for it.
fn is_log(p: &Path) -> bool {
    p == Path::new("var") || p.starts_with("var/log")
}

/// The whole path: plan, apply (--no-run), the JSON on stdout and in the
/// log, files only inside the target; a second run changes nothing. The
/// target's name holds shell metacharacters: nothing may evaluate it.
#[test]
fn installs_into_the_target_only() {
    let hw_before = tree(&host(HW));
    let sb = Sandbox::new(
        DISTRO,
        "tar get; touch PWNED $(touch PWNED2) `touch PWNED3`",
    );
    let original = tree(&sb.target);
    let out = sb.run(HW, &[("EXLIAR_NO_RUN", "1")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let doc = json(&out);
    assert_valid(&schema("apply-1.schema.json"), &doc, "script stdout");
    assert_eq!(doc["applied"], true, "{doc}");
    assert_eq!(doc["no_run"], true);
    for c in doc["journal"]["commands"].as_array().expect("commands") {
        assert_eq!(c["output"], "skipped (--no-run)", "{c}");
    }

    let after = tree(&sb.target);
    let changed: Vec<String> = after
        .iter()
        .filter(|(p, b)| original.get(*p) != Some(*b))
        .map(|(p, _)| p.display().to_string())
        .collect();
    for want in [
        "etc/modprobe.d/00-exliar-vfio.conf",
        "usr/lib/exliar/vfio-early-bind",
        "etc/initramfs-tools/modules",
        "var/log/exliar-install.log",
    ] {
        assert!(
            changed.iter().any(|c| c == want),
            "{want} not written: {changed:?}"
        );
    }
    assert!(
        original.keys().all(|p| after.contains_key(p)),
        "something was removed from the target"
    );
    let log =
        String::from_utf8_lossy(&after[&PathBuf::from("var/log/exliar-install.log")]).into_owned();
    assert!(log.contains("\"schema\": \"exliar.plan/1\""), "{log}");
    assert!(log.contains("\"schema\": \"exliar.apply/1\""), "{log}");
    sb.assert_nothing_outside();
    assert_eq!(tree(&host(HW)), hw_before, "the hardware tree changed");

    // Again, with ROOT from the environment: nothing to change.
    let mut c = Command::new("/bin/sh");
    let again = c
        .arg(script())
        .current_dir(&sb.base)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("TMPDIR", sb.base.join("tmp"))
        .env("ROOT", &sb.target)
        .env("EXLIAR", env!("CARGO_BIN_EXE_exliar"))
        .env("EXLIAR_ROOT", host(HW))
        .env("EXLIAR_NO_RUN", "1")
        .output()
        .expect("script");
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(json(&again)["reason"], "nothing-to-change");
    let third = tree(&sb.target);
    assert!(
        third
            .iter()
            .all(|(p, b)| is_log(p) || after.get(p) == Some(b)),
        "the second run changed the target"
    );
    sb.assert_nothing_outside();
}

/// No GPU to isolate: the script does nothing (but log it) and succeeds.
#[test]
fn no_gpu_does_nothing() {
    let sb = Sandbox::new(DISTRO, "target");
    let original = tree(&sb.target);
    let out = sb.run("devbox-virtio", &[("EXLIAR_NO_RUN", "1")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no GPU to isolate"),
        "{}",
        stderr(&out)
    );
    let after = tree(&sb.target);
    for (p, b) in &after {
        if !is_log(p) {
            assert_eq!(original.get(p), Some(b), "{} changed", p.display());
        }
    }
    assert!(!after.keys().any(|p| p.starts_with("var/lib/exliar")));
    sb.assert_nothing_outside();
}

/// A refusal (conflicting boot loaders) is logged and not fatal by
/// default, fatal with EXLIAR_REQUIRED=1, and settled by
/// EXLIAR_BOOTLOADER. Hostile values stay values.
#[test]
fn failures_are_fatal_only_when_required() {
    let sb = Sandbox::new("arch-systemd-boot", "target");
    for f in ["boot/loader/entries/arch.conf", "etc/default/grub"] {
        let p = sb.target.join(f);
        let t = std::fs::read_to_string(&p).expect("read");
        std::fs::write(&p, t.replace(" iommu=pt", "")).expect("write");
    }
    let original = tree(&sb.target);
    let hw = "hw11-ryzen-matisse-rx580-gtx1080-unsorted";
    let base = [("EXLIAR_NO_RUN", "1"), ("EXLIAR_IOMMU_PT", "1")];

    let out = sb.run(hw, &base);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("--bootloader NAME") && e.contains("goes on"),
        "{e}"
    );

    let out = sb.run(hw, &[base[0], base[1], ("EXLIAR_REQUIRED", "1")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("failing the installation"));

    // A hostile GPU value: refused by exliar as an address, never run.
    let out = sb.run(
        hw,
        &[
            base[0],
            base[1],
            ("EXLIAR_REQUIRED", "1"),
            ("EXLIAR_GPU", "$(touch PWNED); touch PWNED2"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let after = tree(&sb.target);
    for (p, b) in &after {
        if !is_log(p) {
            assert_eq!(original.get(p), Some(b), "{} changed", p.display());
        }
    }
    sb.assert_nothing_outside();

    let out = sb.run(
        hw,
        &[base[0], base[1], ("EXLIAR_BOOTLOADER", "systemd-boot")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out)["applied"], true);
    let entry =
        std::fs::read_to_string(sb.target.join("boot/loader/entries/arch.conf")).expect("entry");
    assert!(entry.contains("iommu=pt"), "{entry}");
    sb.assert_nothing_outside();
}
