//! Hostile and odd input: bytes that are not UTF-8 in files exliar edits,
//! FIFOs, devices and huge files where attributes and configurations should
//! be, snapshot destinations that are links or exist already.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;

const HW_IDENTICAL: &str = "hw23-ryzen1-x370-dual-identical-rx580";

/// Every regular file under `root` (except exliar's state) with its bytes.
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

/// A copy of a fixture host in a temporary folder.
fn copy_of(name: &str) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("root");
    copy_tree(&host(name), &dir);
    (t, dir)
}

fn on_target(args: &[&str], hw: &str, dir: &Path) -> assert_cmd::Command {
    let mut c = exliar();
    c.args(args)
        .arg("--root")
        .arg(host(hw))
        .arg("--target")
        .arg(dir);
    c
}

fn append(path: &Path, bytes: &[u8]) {
    let mut b = std::fs::read(path).expect("read");
    b.extend_from_slice(bytes);
    std::fs::write(path, b).expect("write");
}

/// A latin-1 comment in `/etc/default/grub` and in
/// `/etc/initramfs-tools/modules`: plan shows a diff, apply succeeds and
/// keeps the latin-1 bytes, a second plan is empty, rollback restores every
/// byte. (A lossy read made apply refuse forever: "changed since the plan
/// was made".)
#[test]
fn latin1_bytes_in_edited_files_survive_apply_and_rollback() {
    let (_t, dir) = copy_of("debian12-grub-intel");
    let grub_comment: &[u8] = b"# Gr\xf6\xdfe des Men\xfcs (latin-1)\n";
    let modules_comment: &[u8] = b"# m\xf3dulos para la \xe9poca\n";
    append(&dir.join("etc/default/grub"), grub_comment);
    append(&dir.join("etc/initramfs-tools/modules"), modules_comment);
    let original = files(&dir);

    // The human plan (with its unified diffs) renders. `--iommu-pt` makes
    // it edit /etc/default/grub.
    let out = on_target(&["plan", "--iommu-pt"], HW_IDENTICAL, &dir)
        .output()
        .expect("plan");
    assert_success(&out, "plan");
    let shown = stdout(&out);
    assert!(shown.contains("/etc/default/grub"), "{shown}");
    assert!(shown.contains("/etc/initramfs-tools/modules"), "{shown}");

    let out = on_target(
        &["apply", "--yes", "--no-run", "--iommu-pt"],
        HW_IDENTICAL,
        &dir,
    )
    .output()
    .expect("apply");
    assert_success(&out, "apply");
    let applied = files(&dir);
    assert_ne!(applied, original, "apply changed nothing");
    for (file, comment) in [
        ("etc/default/grub", grub_comment),
        ("etc/initramfs-tools/modules", modules_comment),
    ] {
        let now = &applied[Path::new(file)];
        assert_ne!(now, &original[Path::new(file)], "{file} not edited");
        assert!(
            now.windows(comment.len()).any(|w| w == comment),
            "{file}: the latin-1 comment is gone:\n{}",
            String::from_utf8_lossy(now)
        );
        assert!(
            !String::from_utf8_lossy(now).contains('\u{F7F6}'),
            "{file}: an escape character was written"
        );
    }

    let again = json(
        &on_target(&["plan", "--json", "--iommu-pt"], HW_IDENTICAL, &dir)
            .output()
            .expect("plan"),
    );
    let file_steps: Vec<_> = again["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["kind"] == "write-file")
        .collect();
    assert!(file_steps.is_empty(), "second plan: {file_steps:?}");

    exliar()
        .args(["rollback", "--no-run", "--target"])
        .arg(&dir)
        .assert()
        .success();
    assert_eq!(files(&dir), original, "rollback did not restore every byte");
}
