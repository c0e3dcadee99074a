//! `exliar plan`/`apply`/`rollback`/`recover` on fixture trees: hardware from
//! a real machine's tree, configuration from a distribution's tree.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;

const HW_IDENTICAL: &str = "hw23-ryzen1-x370-dual-identical-rx580";
const HW_SPLIT: &str = "hw11-ryzen-matisse-rx580-gtx1080-unsorted";

/// Every regular file under `root` (except exliar's state), with its bytes.
fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).expect("prefix").to_path_buf();
            if rel.starts_with("var/lib/exliar") {
                continue;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => walk(base, &p, out),
                Ok(t) if t.is_file() => {
                    out.insert(rel, std::fs::read(&p).expect("read"));
                }
                Ok(t) if t.is_symlink() => {
                    out.insert(
                        rel,
                        std::fs::read_link(&p)
                            .expect("link")
                            .into_os_string()
                            .into_encoded_bytes(),
                    );
                }
                _ => {}
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn copy_tree(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success());
}

fn target(distro: &str) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("target");
    copy_tree(&host(distro), &dir);
    (t, dir)
}

/// apply → plan is empty → rollback restores every byte.
#[test]
fn apply_is_idempotent_and_rollback_restores_bytes() {
    for (hw, distro) in [
        (HW_IDENTICAL, "debian12-grub-intel"),
        (HW_SPLIT, "arch-systemd-boot"),
        (HW_SPLIT, "fedora40-bls-amd"),
        (HW_IDENTICAL, "popos-kernelstub"),
    ] {
        let (_t, dir) = target(distro);
        let original = files(&dir);
        let out = exliar()
            .args(["plan", "--json", "--root"])
            .arg(host(hw))
            .arg("--target")
            .arg(&dir)
            .output()
            .expect("plan");
        assert!(
            out.status.success(),
            "{hw} on {distro}: plan failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let plan = json(&out);
        assert!(
            !plan["steps"].as_array().expect("steps").is_empty(),
            "{hw} on {distro}: empty plan"
        );
        assert_eq!(files(&dir), original, "{distro}: plan wrote something");
        let out = exliar()
            .args(["apply", "--yes", "--no-run", "--root"])
            .arg(host(hw))
            .arg("--target")
            .arg(&dir)
            .output()
            .expect("apply");
        assert!(
            out.status.success(),
            "{hw} on {distro}: apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_ne!(files(&dir), original);
        let again = json(
            &exliar()
                .args(["plan", "--json", "--root"])
                .arg(host(hw))
                .arg("--target")
                .arg(&dir)
                .output()
                .expect("plan"),
        );
        let file_steps: Vec<_> = again["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter(|s| s["kind"] == "write-file")
            .collect();
        assert!(
            file_steps.is_empty(),
            "{hw} on {distro}: second plan not empty: {file_steps:?}"
        );
        exliar()
            .args(["rollback", "--no-run", "--target"])
            .arg(&dir)
            .assert()
            .success();
        assert_eq!(
            files(&dir),
            original,
            "{hw} on {distro}: rollback did not restore every byte"
        );
    }
}

/// Kill apply at every step boundary; `recover` returns byte-identical
/// originals every time. Reports the number of kill points.
#[test]
fn recover_after_a_crash_at_every_step_boundary() {
    let mut kill_points = 0;
    for k in 1..100 {
        let (_t, dir) = target("debian12-grub-intel");
        let original = files(&dir);
        let out = exliar()
            .env("EXLIAR_TEST_CRASH_AT", k.to_string())
            .args(["apply", "--yes", "--no-run", "--root"])
            .arg(host(HW_IDENTICAL))
            .arg("--target")
            .arg(&dir)
            .output()
            .expect("apply");
        if out.status.success() {
            break;
        }
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains(&format!("test crash at step boundary {k}")),
            "boundary {k}: apply failed otherwise: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        kill_points += 1;
        // A new apply refuses until recovered.
        let again = exliar()
            .args(["apply", "--yes", "--no-run", "--root"])
            .arg(host(HW_IDENTICAL))
            .arg("--target")
            .arg(&dir)
            .output()
            .expect("apply");
        assert!(
            !again.status.success(),
            "boundary {k}: apply went on over an interrupted transaction"
        );
        assert!(String::from_utf8_lossy(&again.stderr).contains("exliar recover"));
        exliar()
            .args(["recover", "--no-run", "--target"])
            .arg(&dir)
            .assert()
            .success();
        assert_eq!(
            files(&dir),
            original,
            "boundary {k}: recover did not restore every byte"
        );
    }
    eprintln!("apply: {kill_points} kill points, each recovered byte for byte");
    assert!(kill_points >= 8, "only {kill_points} kill points");
}

/// A managed file changed by someone else: rollback refuses with a diff,
/// --force restores anyway.
#[test]
fn rollback_refuses_foreign_changes() {
    let (_t, dir) = target("debian12-grub-intel");
    exliar()
        .args(["apply", "--yes", "--no-run", "--root"])
        .arg(host(HW_IDENTICAL))
        .arg("--target")
        .arg(&dir)
        .assert()
        .success();
    let f = dir.join("etc/initramfs-tools/modules");
    let mut text = std::fs::read_to_string(&f).expect("read");
    text.push_str("nvme\n");
    std::fs::write(&f, text).expect("write");
    let out = exliar()
        .args(["rollback", "--no-run", "--target"])
        .arg(&dir)
        .output()
        .expect("rollback");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("+nvme"), "{err}");
    exliar()
        .args(["rollback", "--no-run", "--force", "--target"])
        .arg(&dir)
        .assert()
        .success();
}

/// Refusals: a GPU in a group with other devices, and NixOS.
#[test]
fn refusals_are_explained() {
    let (_t, dir) = target("debian12-grub-intel");
    let out = exliar()
        .args(["plan", "--gpu", "0000:01:00.0", "--root"])
        .arg(host("hw21-laptop-kabylake-u-mx150-optimus-dirty-group"))
        .arg("--target")
        .arg(&dir)
        .output()
        .expect("plan");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not isolated"));
    let (_n, nix) = target("nixos-amd");
    let out = exliar()
        .args(["plan", "--root"])
        .arg(host(HW_SPLIT))
        .arg("--target")
        .arg(&nix)
        .output()
        .expect("plan");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--format nix"));
    let out = exliar()
        .args(["plan", "--format", "nix", "--root"])
        .arg(host(HW_SPLIT))
        .output()
        .expect("nix");
    assert!(out.status.success());
    let module = stdout(&out);
    assert!(
        module.contains("boot.kernelParams") || module.contains("kernelParams"),
        "{module}"
    );
    assert!(module.contains("vfio-pci"), "{module}");
}
