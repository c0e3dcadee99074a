//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod cdi;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

pub fn exliar() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(env!("CARGO_BIN_EXE_exliar"));
    c.env_remove("EXLIAR_ROOT").env_remove("EXLIAR_LOG");
    c
}

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fixture host trees committed under tests/fixtures/hosts.
pub fn fixture_hosts() -> Vec<PathBuf> {
    let dir = manifest_dir().join("tests/fixtures/hosts");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn host(name: &str) -> PathBuf {
    manifest_dir().join("tests/fixtures/hosts").join(name)
}

/// `../shared/fixtures` beside the checkout, when present.
pub fn shared_fixtures() -> Option<PathBuf> {
    let p = manifest_dir().join("../shared/fixtures");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("skipping: {} is absent", p.display());
        None
    }
}

/// Whether this runs in CI (`CI` set and not `0` or `false`): a missing
/// tool is then a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The tool at `path`, or `None` after a SKIP message naming the Debian
/// package that has it (a failure in CI).
pub fn tool_or_skip(path: &str, package: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    if p.exists() {
        return Some(p.to_path_buf());
    }
    eprintln!("SKIP: no {path} (package {package})");
    assert!(!in_ci(), "CI needs {path} (package {package})");
    None
}

/// Panics with the command's stderr unless it exited 0; `what` says which one.
#[track_caller]
pub fn assert_success(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: exit {:?}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// Replace a root path in output with `[ROOT]`.
pub fn redact(text: &str, root: &Path) -> String {
    text.replace(&root.display().to_string(), "[ROOT]")
}

pub fn schema(name: &str) -> jsonschema::Validator {
    let p = manifest_dir().join("docs/schema").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    jsonschema::validator_for(&v).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn assert_valid(schema: &jsonschema::Validator, doc: &serde_json::Value, what: &str) {
    let errors: Vec<String> = schema
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match its schema:\n{}",
        errors.join("\n")
    );
}

/// Addresses in a JSON array, as strings.
pub fn addrs(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Hardware trees (under tests/fixtures/hosts) that plans are made for.
pub const HW_IDENTICAL: &str = "hw23-ryzen1-x370-dual-identical-rx580";
/// hw11: the GTX 1080 (10de:1b80) and its HDMI audio (10de:10f0) go to
/// the guest.
pub const HW_SPLIT: &str = "hw11-ryzen-matisse-rx580-gtx1080-unsorted";

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `cp -a FROM TO`.
pub fn copy_tree(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success());
}

/// A copy of the fixture host `name` in a temporary folder, as `<tmp>/FOLDER`.
pub fn fixture_copy(name: &str, folder: &str) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join(folder);
    copy_tree(&host(name), &dir);
    (t, dir)
}

/// A copy of a distribution's fixture tree to apply to, as `<tmp>/target`.
pub fn target(distro: &str) -> (tempfile::TempDir, PathBuf) {
    fixture_copy(distro, "target")
}

/// [`target`] in memory (`/dev/shm`) where there is one: the transaction
/// tests run thousands of transactions, each with tens of fsyncs, which a
/// disk makes slow. A process killed by SIGKILL loses nothing the kernel
/// has (fsync only matters for power loss), so the outcome is the same; the
/// fault seam still fails the fsyncs.
pub fn target_in_memory(distro: &str) -> (tempfile::TempDir, PathBuf) {
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

/// `history --json` of a target: its transactions.
pub fn transactions(dir: &Path) -> Vec<serde_json::Value> {
    let out = txn_cmd(&["history", "--json"], dir)
        .output()
        .expect("history");
    assert_success(&out, "history");
    json(&out)["transactions"]
        .as_array()
        .expect("transactions")
        .clone()
}

/// `history --json` of a target: (id, status) of each transaction.
pub fn history(dir: &Path) -> Vec<(String, String)> {
    transactions(dir)
        .iter()
        .map(|t| {
            (
                t["id"].as_str().expect("id").to_string(),
                t["status"].as_str().expect("status").to_string(),
            )
        })
        .collect()
}

/// A tree's contents by relative path, except exliar's state
/// (`var/lib/exliar`).
pub type Tree = BTreeMap<PathBuf, Vec<u8>>;

/// Every regular file under `root` (except exliar's state), with its bytes,
/// every link with its target, and every folder (as `/`), so that a folder
/// left behind shows.
pub fn files(root: &Path) -> Tree {
    let mut out = BTreeMap::new();
    walk_tree(root, root, true, &mut out);
    out
}

/// Every regular file under `root` (except exliar's state) with its bytes;
/// no folders, no links.
pub fn regular_files(root: &Path) -> Tree {
    let mut out = BTreeMap::new();
    walk_tree(root, root, false, &mut out);
    out
}

fn walk_tree(base: &Path, dir: &Path, everything: bool, out: &mut Tree) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let rel = p.strip_prefix(base).expect("prefix").to_path_buf();
        if rel.starts_with("var/lib/exliar") {
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() => {
                // exliar's state folder stays (history) with its parents
                if everything && rel != Path::new("var") && rel != Path::new("var/lib") {
                    out.insert(rel, b"/".to_vec());
                }
                walk_tree(base, &p, everything, out)
            }
            Ok(t) if t.is_file() => {
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
            Ok(t) if everything && t.is_symlink() => {
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
pub fn tree_diff(a: &Tree, b: &Tree) -> String {
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

/// `exliar plan --json --root <hardware tree> --target DIR EXTRA`, which
/// must succeed: the plan document.
pub fn plan_json(hw: &str, dir: &Path, extra: &[&str]) -> serde_json::Value {
    let out = on_target(&["plan", "--json"], hw, dir)
        .args(extra)
        .output()
        .expect("plan");
    assert_success(&out, "plan");
    json(&out)
}

/// `exliar apply --yes --no-run` of `hw`'s plan on `dir`, stopped by the
/// debug hook at step boundary `k`.
pub fn apply_crashing_at(hw: &str, dir: &Path, k: usize) -> Output {
    on_target(&["apply", "--yes", "--no-run"], hw, dir)
        .env("EXLIAR_TEST_CRASH_AT", k.to_string())
        .output()
        .expect("apply")
}

/// Rewrite the text file `rel` under `dir` with `f`.
pub fn edit(dir: &Path, rel: &str, f: impl Fn(&str) -> String) {
    let p = dir.join(rel);
    let t = std::fs::read_to_string(&p).expect("read");
    std::fs::write(&p, f(&t)).expect("write");
}

/// Write `rel` under `dir`, making its folders.
pub fn put(dir: &Path, rel: &str, contents: impl AsRef<[u8]>) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(&p, contents).expect("write");
}

/// The `write-file` steps of a plan document.
pub fn file_steps(plan: &serde_json::Value) -> Vec<&serde_json::Value> {
    plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["kind"] == "write-file")
        .collect()
}
