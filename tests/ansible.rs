//! The Ansible collection in `contrib/ansible` (`exliar.passthrough`)
//! driven by a real `ansible-playbook` (Debian 12's ansible-core 2.14;
//! `tests/ansible/apt-packages.txt`) against `localhost` over the local
//! connection: the modules run this build of exliar on a fixture machine's
//! hardware and a temporary copy of a distribution's tree, with `no_run`.
//!
//! Results are read from a notification callback
//! (`tests/ansible/callback_plugins/exliar_results.py`) that writes every
//! task result and the stats as JSON, beside the default stdout callback
//! whose human output (the `--diff` display) is checked too.
//!
//! Without ansible-playbook, ansible-doc or ansible-galaxy the tests print `SKIP: …` and pass,
//! unless `CI` is set (and not `0`/`false`): then they fail.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

const HW: &str = HW_IDENTICAL;
const DISTRO: &str = "debian12-grub-intel";
const PACKAGES_FILE: &str = "tests/ansible/apt-packages.txt";
/// The files exliar's plan for `HW` writes into `DISTRO`.
const PLANNED: [&str; 4] = [
    "etc/modprobe.d/00-exliar-vfio.conf",
    "usr/lib/exliar/vfio-early-bind",
    "etc/initramfs-tools/hooks/exliar-vfio",
    "etc/initramfs-tools/modules",
];

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Whether `prog` is an executable file in PATH.
fn in_path(prog: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            std::fs::metadata(d.join(prog))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Ansible is here, else SKIP (and pass) or, under CI, fail.
fn ansible_available(test: &str) -> bool {
    let missing: Vec<&str> = ["ansible-playbook", "ansible-doc", "ansible-galaxy"]
        .into_iter()
        .filter(|p| !in_path(p))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "ansible test `{test}` cannot run here: {} not found. Install the packages in {PACKAGES_FILE}.",
        missing.join(" and ")
    );
    if in_ci() {
        panic!("{msg} (CI is set)");
    }
    eprintln!("SKIP: {msg}");
    false
}

fn collections() -> PathBuf {
    manifest_dir().join("contrib/ansible")
}

/// A quoted YAML scalar (JSON strings are YAML).
fn q(s: impl AsRef<str>) -> String {
    serde_json::to_string(s.as_ref()).unwrap()
}

fn qp(p: &Path) -> String {
    q(p.to_str().unwrap())
}

/// One ansible-playbook run: its output and the callback's document.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// `tasks[]`: `task`, `host`, `status` (`ok`, `failed`, …), `result`;
    /// `stats.localhost`: `ok`, `changed`, `failures`, `ignored`, …
    doc: Value,
}

impl Run {
    fn task(&self, name: &str) -> &Value {
        self.doc["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["task"] == name)
            .unwrap_or_else(|| panic!("no result for task `{name}`:\n{}", self.show()))
    }

    fn result(&self, name: &str) -> &Value {
        &self.task(name)["result"]
    }

    fn stat(&self, key: &str) -> i64 {
        self.doc["stats"]["localhost"][key].as_i64().unwrap()
    }

    fn show(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}\n--- results\n{:#}",
            self.code, self.stdout, self.stderr, self.doc
        )
    }

    #[track_caller]
    fn assert_ok(&self) -> &Self {
        assert!(
            self.code == Some(0) && self.stat("failures") == 0,
            "playbook failed:\n{}",
            self.show()
        );
        self
    }
}

/// A sandbox: ANSIBLE_HOME and temporary folders, an inventory of
/// `localhost` over the local connection, and the target (a copy of
/// `DISTRO`).
struct Sandbox {
    dir: tempfile::TempDir,
    target: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        copy_tree(&host(DISTRO), &target);
        for d in ["home", "tmp-local", "tmp-remote"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(
            dir.path().join("inventory"),
            "localhost ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\"\n",
        )
        .unwrap();
        Sandbox { dir, target }
    }

    /// The options every task of `exliar_isolation` gets, then `extra`.
    fn isolation(&self, extra: &[(&str, &str)]) -> String {
        let mut s = format!(
            "      exliar.passthrough.exliar_isolation:\n        root: {}\n        target: {}\n        no_run: true\n        exliar: {}\n",
            qp(&host(HW)),
            qp(&self.target),
            q(env!("CARGO_BIN_EXE_exliar"))
        );
        for (k, v) in extra {
            s.push_str(&format!("        {k}: {v}\n"));
        }
        s
    }

    /// Runs a play of `tasks` (YAML, each `- name: …` indented 4) with
    /// `args` (`--check`, `--diff`).
    fn play(&self, name: &str, tasks: &str, args: &[&str]) -> Run {
        let base = self.dir.path();
        let book = base.join(format!("{name}.yml"));
        let results = base.join(format!("{name}.json"));
        std::fs::write(
            &book,
            format!("- hosts: localhost\n  gather_facts: false\n  tasks:\n{tasks}"),
        )
        .unwrap();
        let t0 = std::time::Instant::now();
        let out = Command::new("ansible-playbook")
            .arg("-i")
            .arg(base.join("inventory"))
            .arg(&book)
            .args(args)
            .current_dir(base)
            .envs(ansible_env(base))
            .env("EXLIAR_ANSIBLE_RESULTS", &results)
            .output()
            .unwrap();
        eprintln!("ansible-playbook {name} {args:?}: {:.1?}", t0.elapsed());
        let text = std::fs::read_to_string(&results).unwrap_or_else(|e| {
            panic!(
                "{name}: no results ({e}):\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            doc: serde_json::from_str(&text).unwrap(),
        }
    }
}

/// Ansible's environment: everything it writes goes under `base` (nothing
/// to ~/.ansible), only this checkout's collections, the results callback,
/// no colour, no retry files, no .pyc files beside the sources.
fn ansible_env(base: &Path) -> Vec<(String, std::ffi::OsString)> {
    let p = |s: &str| base.join(s).into_os_string();
    vec![
        ("ANSIBLE_HOME".into(), p("home")),
        ("ANSIBLE_LOCAL_TEMP".into(), p("tmp-local")),
        ("ANSIBLE_REMOTE_TEMP".into(), p("tmp-remote")),
        ("ANSIBLE_CONFIG".into(), p("no-ansible.cfg")),
        (
            "ANSIBLE_COLLECTIONS_PATH".into(),
            collections().into_os_string(),
        ),
        ("ANSIBLE_COLLECTIONS_SCAN_SYS_PATH".into(), "false".into()),
        (
            "ANSIBLE_CALLBACK_PLUGINS".into(),
            manifest_dir()
                .join("tests/ansible/callback_plugins")
                .into_os_string(),
        ),
        ("ANSIBLE_CALLBACKS_ENABLED".into(), "exliar_results".into()),
        ("ANSIBLE_STDOUT_CALLBACK".into(), "default".into()),
        ("ANSIBLE_NOCOLOR".into(), "1".into()),
        ("ANSIBLE_FORCE_COLOR".into(), "0".into()),
        ("ANSIBLE_RETRY_FILES_ENABLED".into(), "false".into()),
        ("ANSIBLE_LOCALHOST_WARNING".into(), "false".into()),
        ("ANSIBLE_INVENTORY_UNPARSED_WARNING".into(), "false".into()),
        ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
        ("EXLIAR_ROOT".into(), "/nonexistent-exliar-root".into()),
    ]
}

fn strings(v: &Value) -> Vec<String> {
    addrs(v)
}

/// check mode shows the plan and changes nothing; apply changes the
/// target (diff shown); a second run is unchanged; `state: absent` in check
/// mode changes nothing, then restores every byte; a second absent run is
/// unchanged.
#[test]
fn isolation_present_absent_idempotent() {
    if !ansible_available("isolation_present_absent_idempotent") {
        return;
    }
    let t0 = std::time::Instant::now();
    let sb = Sandbox::new();
    let original = files(&sb.target);
    let present = format!("    - name: isolate\n{}", sb.isolation(&[]));

    // (b) --check --diff: the plan, as diffs, and nothing written.
    let run = sb.play("check", &present, &["--check", "--diff"]);
    run.assert_ok();
    let r = run.result("isolate");
    assert_eq!(r["changed"], true, "{}", run.show());
    assert_eq!(r["gpu"], "0000:27:00.0");
    assert_eq!(strings(&r["functions"]), ["0000:27:00.0", "0000:27:00.1"]);
    assert_eq!(r["reboot_required"], true);
    assert!(r.get("transaction").is_none(), "{}", run.show());
    let diff = r["diff"].as_array().unwrap();
    let headers: Vec<&str> = diff
        .iter()
        .map(|d| d["after_header"].as_str().unwrap())
        .collect();
    assert_eq!(headers, PLANNED);
    assert!(
        diff[3]["prepared"]
            .as_str()
            .unwrap()
            .contains("+++ /etc/initramfs-tools/modules\n"),
        "{}",
        run.show()
    );
    // the default callback showed exliar's diffs
    for line in [
        "+++ /etc/modprobe.d/00-exliar-vfio.conf",
        "+++ /etc/initramfs-tools/modules",
        "+vfio_pci",
        "+softdep amdgpu pre: vfio-pci",
    ] {
        assert!(
            run.stdout.contains(line),
            "{line} not shown:\n{}",
            run.show()
        );
    }
    assert_eq!(run.stat("changed"), 1);
    assert_eq!(
        files(&sb.target),
        original,
        "check mode wrote: {}",
        tree_diff(&original, &files(&sb.target))
    );
    assert!(transactions(&sb.target).is_empty());

    // (a) apply with --diff.
    let run = sb.play("apply", &present, &["--diff"]);
    run.assert_ok();
    let r = run.result("isolate");
    assert_eq!(r["changed"], true, "{}", run.show());
    let hist = history(&sb.target);
    assert_eq!(hist.len(), 1, "{hist:?}");
    assert_eq!(r["transaction"], hist[0].0.as_str(), "{}", run.show());
    assert_eq!(hist[0].1, "applied");
    assert_eq!(r["journal"]["id"], hist[0].0.as_str());
    assert_eq!(r["reboot_required"], true);
    assert_eq!(r["regeneration_pending"], true);
    assert_eq!(
        r["commands"],
        serde_json::json!([["update-initramfs", "-u", "-k", "all"]])
    );
    assert!(
        run.stdout.contains("+++ /etc/initramfs-tools/modules") && run.stdout.contains("+vfio_pci"),
        "diff not shown:\n{}",
        run.show()
    );
    let applied = files(&sb.target);
    let written = tree_diff(&original, &applied);
    for f in PLANNED {
        assert!(
            written.lines().any(|l| l[2..] == *f),
            "{f} not written:\n{written}"
        );
    }
    assert!(
        applied[Path::new("etc/initramfs-tools/modules")]
            .windows(9)
            .any(|w| w == b"vfio_pci\n")
    );
    assert!(file_steps(&plan_json(HW, &sb.target, &[])).is_empty());

    // (c) idempotent: a second run (and its check mode) changes nothing.
    let run = sb.play("again", &present, &[]);
    run.assert_ok();
    assert_eq!(run.result("isolate")["changed"], false, "{}", run.show());
    assert_eq!(run.stat("changed"), 0);
    let run = sb.play("again-check", &present, &["--check", "--diff"]);
    run.assert_ok();
    assert_eq!(run.result("isolate")["changed"], false, "{}", run.show());
    assert_eq!(files(&sb.target), applied);
    assert_eq!(history(&sb.target).len(), 1);

    // (d) absent: check mode names the transaction and changes nothing...
    let absent = format!(
        "    - name: remove\n{}",
        sb.isolation(&[("state", "absent")])
    );
    let run = sb.play("absent-check", &absent, &["--check", "--diff"]);
    run.assert_ok();
    let r = run.result("remove");
    assert_eq!(r["changed"], true, "{}", run.show());
    assert_eq!(strings(&r["transactions"]), [hist[0].0.clone()]);
    assert!(
        run.stdout
            .contains(&format!("exliar rollback {}", hist[0].0)),
        "{}",
        run.show()
    );
    assert_eq!(files(&sb.target), applied, "check mode rolled back");
    // ... then rolls it back, byte for byte ...
    let run = sb.play("absent", &absent, &[]);
    run.assert_ok();
    let r = run.result("remove");
    assert_eq!(r["changed"], true, "{}", run.show());
    assert_eq!(strings(&r["transactions"]), [hist[0].0.clone()]);
    assert_eq!(r["journals"][0]["status"], "rolled-back");
    assert_eq!(
        files(&sb.target),
        original,
        "absent did not restore every byte: {}",
        tree_diff(&original, &files(&sb.target))
    );
    assert_eq!(
        history(&sb.target),
        [(hist[0].0.clone(), "rolled-back".to_string())]
    );
    // ... and a second absent run has nothing to do.
    let run = sb.play("absent-again", &absent, &[]);
    run.assert_ok();
    assert_eq!(run.result("remove")["changed"], false, "{}", run.show());
    assert_eq!(files(&sb.target), original);
    eprintln!("isolation_present_absent_idempotent: {:.1?}", t0.elapsed());
}

/// `exliar_facts` sets the scan and check documents as facts (in check
/// mode too); a GPU address that is no GPU, and text that is no address,
/// fail with exliar's reason and change nothing; ansible-doc reads both
/// modules' documentation.
#[test]
fn facts_refusals_and_docs() {
    if !ansible_available("facts_refusals_and_docs") {
        return;
    }
    let t0 = std::time::Instant::now();
    let sb = Sandbox::new();
    let original = files(&sb.target);

    // (e) facts, in check mode; a later task reads them.
    let scan = json(
        &exliar()
            .args(["scan", "--json", "--root"])
            .arg(host(HW))
            .output()
            .unwrap(),
    );
    let tasks = format!(
        "    - name: facts\n      exliar.passthrough.exliar_facts:\n        root: {}\n        exliar: {}\n    - name: use\n      ansible.builtin.debug:\n        msg: \"{{{{ ansible_facts.exliar.scan.recommendation.passthrough }}}} {{{{ ansible_facts.exliar.check.ready }}}}\"\n",
        qp(&host(HW)),
        q(env!("CARGO_BIN_EXE_exliar"))
    );
    let run = sb.play("facts", &tasks, &["--check"]);
    run.assert_ok();
    let r = run.result("facts");
    assert_eq!(r["changed"], false, "{}", run.show());
    let facts = &r["ansible_facts"]["exliar"];
    assert_eq!(facts["scan"]["schema"], "exliar.inventory/1");
    let gpus = |doc: &Value| -> Vec<String> {
        doc["gpus"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["address"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(gpus(&facts["scan"]), gpus(&scan));
    assert_eq!(gpus(&scan), ["0000:26:00.0", "0000:27:00.0"]);
    assert_eq!(facts["scan"], scan);
    assert_eq!(facts["check"]["schema"], "exliar.check/1");
    // the fixture has no /dev/kvm: not ready, which is a fact, not a failure
    assert_eq!(facts["check"]["ready"], false);
    assert_eq!(
        run.result("use")["msg"],
        "0000:27:00.0 False",
        "{}",
        run.show()
    );

    // (f) bad input fails with exliar's reason.
    let tasks = format!(
        "    - name: not a gpu\n{}      ignore_errors: true\n    - name: not an address\n{}      ignore_errors: true\n    - name: absent, not an address\n{}      ignore_errors: true\n",
        sb.isolation(&[("gpu", "\"0000:00:00.0\"")]),
        sb.isolation(&[("gpu", "bogus")]),
        sb.isolation(&[("gpu", "bogus"), ("state", "absent")]),
    );
    let run = sb.play("refusals", &tasks, &[]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    assert_eq!(run.stat("ignored"), 3, "{}", run.show());
    let t = run.task("not a gpu");
    assert_eq!(t["status"], "failed", "{}", run.show());
    assert_eq!(t["result"]["msg"], "refused: 0000:00:00.0 is not a GPU");
    assert_eq!(t["result"]["reason"], "refused");
    assert_eq!(t["result"]["exliar"]["schema"], "exliar.plan/1");
    assert_eq!(t["result"]["rc"], 1);
    let t = run.task("not an address");
    assert_eq!(t["status"], "failed", "{}", run.show());
    let msg = t["result"]["msg"].as_str().unwrap();
    assert!(msg.contains("`bogus` is not a PCI address"), "{msg}");
    assert_eq!(t["result"]["rc"], 2);
    let t = run.task("absent, not an address");
    assert_eq!(t["status"], "failed", "{}", run.show());
    let msg = t["result"]["msg"].as_str().unwrap();
    assert!(msg.contains("`bogus` is not a PCI address"), "{msg}");
    assert_eq!(files(&sb.target), original);
    assert!(transactions(&sb.target).is_empty());

    // ansible-doc: both modules, with the documented options.
    let doc = |args: &[&str]| {
        let out = Command::new("ansible-doc")
            .args(args)
            .current_dir(sb.dir.path())
            .envs(ansible_env(sb.dir.path()))
            .output()
            .unwrap();
        assert_success(&out, &format!("ansible-doc {args:?}"));
        assert!(
            !stderr(&out).contains("WARNING") && !stderr(&out).contains("ERROR"),
            "ansible-doc {args:?}:\n{}",
            stderr(&out)
        );
        out
    };
    for (module, options) in [
        (
            "exliar.passthrough.exliar_isolation",
            &[
                "bootloader",
                "by_address",
                "exliar",
                "force",
                "gpu",
                "iommu_pt",
                "no_run",
                "root",
                "state",
                "target",
            ][..],
        ),
        ("exliar.passthrough.exliar_facts", &["exliar", "root"][..]),
    ] {
        let text = stdout(&doc(&[module]));
        assert!(
            text.contains("EXAMPLES") && text.contains("RETURN VALUES"),
            "{text}"
        );
        let d = json(&doc(&["--json", module]));
        let d = &d[module];
        let mut names: Vec<&str> = d["doc"]["options"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        names.sort();
        assert_eq!(names, options, "{module}");
        assert!(d["examples"].as_str().unwrap().contains(module));
        assert!(d["return"].is_object(), "{module}: no RETURN");
    }
    let list = stdout(&doc(&["--list", "exliar.passthrough"]));
    assert!(
        list.contains("exliar.passthrough.exliar_isolation")
            && list.contains("exliar.passthrough.exliar_facts"),
        "{list}"
    );

    // galaxy.yml builds a collection holding both modules.
    let built = sb.dir.path().join("built");
    let out = Command::new("ansible-galaxy")
        .args(["collection", "build", "--output-path"])
        .arg(&built)
        .arg(collections().join("ansible_collections/exliar/passthrough"))
        .current_dir(sb.dir.path())
        .envs(ansible_env(sb.dir.path()))
        .output()
        .unwrap();
    assert_success(&out, "ansible-galaxy collection build");
    let tarball = built.join("exliar-passthrough-0.1.0.tar.gz");
    let out = Command::new("tar")
        .arg("tzf")
        .arg(&tarball)
        .output()
        .unwrap();
    assert_success(&out, "tar tzf");
    for f in [
        "plugins/modules/exliar_isolation.py",
        "plugins/modules/exliar_facts.py",
        "meta/runtime.yml",
        "README.md",
    ] {
        assert!(
            stdout(&out).lines().any(|l| l == f),
            "{f}:\n{}",
            stdout(&out)
        );
    }
    eprintln!("facts_refusals_and_docs: {:.1?}", t0.elapsed());
}
