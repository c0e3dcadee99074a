//! Shared by the transaction tests (`txn_faults.rs`, `txn_kill.rs`): fixture
//! targets, byte-for-byte tree comparison, exliar's temporary files.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::*;

pub const HW_IDENTICAL: &str = "hw23-ryzen1-x370-dual-identical-rx580";
pub const HW_SPLIT: &str = "hw11-ryzen-matisse-rx580-gtx1080-unsorted";

/// Every regular file under `root` (except exliar's state), with its bytes,
/// every link with its target, and every folder (as `/`).
pub fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).expect("prefix").to_path_buf();
            if rel.starts_with("var/lib/exliar") {
                continue;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => {
                    if rel != Path::new("var") && rel != Path::new("var/lib") {
                        out.insert(rel, b"/".to_vec());
                    }
                    walk(base, &p, out)
                }
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

/// exliar's temporary files and unfinished transaction folders anywhere
/// under `root` (the store included).
pub fn leftovers(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".exliar-tmp") || name.starts_with(".new-") {
                out.push(e.path());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out
}

/// Show the difference between two trees (paths only).
pub fn tree_diff(a: &BTreeMap<PathBuf, Vec<u8>>, b: &BTreeMap<PathBuf, Vec<u8>>) -> String {
    let mut s = String::new();
    for (k, v) in a {
        match b.get(k) {
            None => s.push_str(&format!("- {}\n", k.display())),
            Some(w) if w != v => s.push_str(&format!("~ {}\n", k.display())),
            _ => {}
        }
    }
    for k in b.keys() {
        if !a.contains_key(k) {
            s.push_str(&format!("+ {}\n", k.display()));
        }
    }
    s
}

/// `exliar ARGS --root <hardware tree> --target DIR`.
pub fn on_target(args: &[&str], hw: &str, dir: &Path) -> assert_cmd::Command {
    let mut c = exliar();
    c.args(args)
        .arg("--root")
        .arg(host(hw))
        .arg("--target")
        .arg(dir);
    c
}

/// `exliar ARGS --target DIR` (rollback, recover, history).
pub fn txn_cmd(args: &[&str], dir: &Path) -> assert_cmd::Command {
    let mut c = exliar();
    c.args(args).arg("--target").arg(dir);
    c
}

pub fn copy_tree(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success());
}

/// A copy of a distribution's fixture tree, in memory (`/dev/shm`) where
/// there is one: these tests run thousands of transactions, each with tens
/// of fsyncs, which a disk makes slow. A process killed by SIGKILL loses
/// nothing the kernel has (fsync only matters for power loss), so the
/// outcome is the same; the fault seam still fails the fsyncs.
pub fn target(distro: &str) -> (tempfile::TempDir, PathBuf) {
    let shm = Path::new("/dev/shm");
    let t = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("exliar-txn-")
            .tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("tempdir");
    let dir = t.path().join("target");
    copy_tree(&host(distro), &dir);
    (t, dir)
}

/// `history --json` of a target: (id, status) of each transaction.
pub fn history(dir: &Path) -> Vec<(String, String)> {
    let out = txn_cmd(&["history", "--json"], dir)
        .output()
        .expect("history");
    assert_success(&out, "history");
    json(&out)["transactions"]
        .as_array()
        .expect("transactions")
        .iter()
        .map(|t| {
            (
                t["id"].as_str().expect("id").to_string(),
                t["status"].as_str().expect("status").to_string(),
            )
        })
        .collect()
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
