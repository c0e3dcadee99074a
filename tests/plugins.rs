//! Plugins (`exliar.plugin/1`) with real executables written here: POSIX
//! sh scripts and a Rust program compiled with rustc. Ownership and
//! permission refusals, timeout, garbage, the cleared environment and the
//! unprivileged user, events from real commands, and proposals: a file a
//! plugin proposes appears in `exliar plan`, is applied by the transaction
//! and rolled back byte for byte; one outside the target is refused.
//!
//! Plugins must be owned by root: these tests need root (CI runs as root);
//! elsewhere they skip with a message.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{assert_success, copy_tree, exliar, files, host, stdout, tree_diff};

const HW: &str = "hw10-ryzen5000g-cezanne-rx580-rtx3060";
const DISTRO: &str = "debian12-grub-intel";

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn root_or_skip() -> bool {
    if is_root() {
        return true;
    }
    assert!(!common::in_ci(), "plugin tests need root under CI");
    eprintln!("skipping: plugins must be owned by root; run the tests as root");
    false
}

/// A hardware root (a copy of a fixture) with plugin folders, a target, and
/// a folder any user may write (the plugins' log).
struct Setup {
    _t: tempfile::TempDir,
    hw: PathBuf,
    target: PathBuf,
    log: PathBuf,
}

fn setup() -> Setup {
    let t = tempfile::tempdir().expect("tempdir");
    // `nobody` must reach the plugins and the log.
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let hw = t.path().join("hw");
    copy_tree(&host(HW), &hw);
    let target = t.path().join("target");
    copy_tree(&host(DISTRO), &target);
    let log = t.path().join("log");
    std::fs::create_dir(&log).expect("log");
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    for d in ["usr/lib/exliar/plugins", "etc/exliar/plugins"] {
        let p = hw.join(d);
        std::fs::create_dir_all(&p).expect("mkdir");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    Setup {
        _t: t,
        hw,
        target,
        log,
    }
}

fn install(dir: &Path, name: &str, body: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write plugin");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    p
}

/// A sh plugin that logs every request (and its uid and environment) to
/// LOG/NAME.log and answers `describe` with `events` and `propose`.
fn logging_plugin(log: &Path, name: &str, events: &str, propose_steps: &str) -> String {
    let propose = if propose_steps.is_empty() {
        "false"
    } else {
        "true"
    };
    format!(
        r#"#!/bin/sh
req=$(cat)
{{ echo "uid=$(id -u)"; env | sort | sed 's/^/env /'; echo "req=$req"; }} >> '{log}/{name}.log'
case "$req" in
*'"request":"describe"'*) echo '{{"schema":"exliar.plugin/1","name":"{name}","version":"1.0","description":"logs","events":[{events}],"propose":{propose}}}' ;;
*'"request":"propose"'*) echo '{{"schema":"exliar.plugin/1","steps":[{propose_steps}]}}' ;;
*) echo '{{"schema":"exliar.plugin/1","ok":true}}' ;;
esac
"#,
        log = log.display()
    )
}

fn plugins(s: &Setup) -> PathBuf {
    s.hw.join("usr/lib/exliar/plugins")
}

#[test]
fn list_refuses_unsafe_plugins_with_the_reason() {
    if !root_or_skip() {
        return;
    }
    let s = setup();
    let d = plugins(&s);
    install(
        &d,
        "good",
        &logging_plugin(&s.log, "good", "\"test\"", ""),
        0o755,
    );
    install(
        &d,
        "writable",
        &logging_plugin(&s.log, "writable", "", ""),
        0o757,
    );
    install(
        &d,
        "noexec",
        &logging_plugin(&s.log, "noexec", "", ""),
        0o644,
    );
    let theirs = install(
        &d,
        "theirs",
        &logging_plugin(&s.log, "theirs", "", ""),
        0o755,
    );
    std::os::unix::fs::chown(&theirs, Some(1000), Some(1000)).expect("chown");
    std::os::unix::fs::symlink("good", d.join("linked")).expect("symlink");
    // A folder its group may write: everything in it is refused.
    let etc = s.hw.join("etc/exliar/plugins");
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o775)).expect("chmod");
    install(
        &etc,
        "ingroupdir",
        &logging_plugin(&s.log, "ingroupdir", "", ""),
        0o755,
    );

    let out = exliar()
        .args(["plugin", "list", "--root"])
        .arg(&s.hw)
        .output()
        .expect("plugin list");
    assert_success(&out, "plugin list");
    let text = stdout(&out);
    insta::assert_snapshot!("plugin-list", text);

    let out = exliar()
        .args(["plugin", "list", "--json", "--root"])
        .arg(&s.hw)
        .output()
        .expect("plugin list --json");
    let v = common::json(&out);
    assert_eq!(v["schema"], "exliar.plugin-list/1");
    let usable: Vec<&str> = v["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .filter(|p| p["usable"] == true)
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(usable, vec!["good"]);
}

#[test]
fn timeout_garbage_and_failure_are_reported() {
    if !root_or_skip() {
        return;
    }
    let s = setup();
    let d = plugins(&s);
    install(&d, "slow", "#!/bin/sh\nsleep 30\n", 0o755);
    install(
        &d,
        "garbage",
        "#!/bin/sh\ncat >/dev/null\necho hello\n",
        0o755,
    );
    install(
        &d,
        "wrongschema",
        "#!/bin/sh\ncat >/dev/null\necho '{\"ok\":true}'\n",
        0o755,
    );
    install(&d, "fails", "#!/bin/sh\necho broken >&2\nexit 3\n", 0o755);
    std::fs::write(s.hw.join("etc/exliar/plugins.toml"), "timeout_s = 0.5\n").expect("config");

    let t0 = Instant::now();
    let out = exliar()
        .args(["plugin", "run", "slow", "test", "--root"])
        .arg(&s.hw)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        common::stderr(&out).contains("no answer within 0.5 s"),
        "{}",
        common::stderr(&out)
    );
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "not killed: {:?}",
        t0.elapsed()
    );

    for (name, says) in [
        ("garbage", "is not exliar.plugin/1 JSON"),
        ("wrongschema", "`schema` is not"),
        ("fails", "exit status: 3: broken"),
    ] {
        let out = exliar()
            .args(["plugin", "run", name, "test", "--root"])
            .arg(&s.hw)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert!(
            common::stderr(&out).contains(says),
            "{name}: {}",
            common::stderr(&out)
        );
    }
    // A broken plugin never breaks the command that tells it.
    let plain = exliar()
        .args(["check", "--root"])
        .arg(host(HW))
        .output()
        .expect("check");
    let told = exliar()
        .args(["check", "--root"])
        .arg(&s.hw)
        .output()
        .expect("check");
    assert_eq!(told.status.code(), plain.status.code());
}

#[test]
fn events_reach_plugins_as_nobody_with_a_cleared_environment() {
    if !root_or_skip() {
        return;
    }
    let s = setup();
    install(
        &plugins(&s),
        "logger",
        &logging_plugin(
            &s.log,
            "logger",
            "\"check-finished\",\"txn-applied\",\"txn-rolled-back\",\"inventory\"",
            "",
        ),
        0o755,
    );
    let run = |args: &[&str]| {
        exliar()
            .args(args)
            .arg("--root")
            .arg(&s.hw)
            .env("EXLIAR_SECRET_TEST", "must-not-leak")
            .output()
            .expect("exliar")
    };
    run(&["check"]);
    run(&["scan"]);
    let out = run(&[
        "apply",
        "--yes",
        "--no-run",
        "--target",
        &s.target.display().to_string(),
    ]);
    assert_success(&out, "apply");
    let out = run(&[
        "rollback",
        "--no-run",
        "--target",
        &s.target.display().to_string(),
    ]);
    assert_success(&out, "rollback");
    let log = std::fs::read_to_string(s.log.join("logger.log")).expect("log");
    for kind in [
        "check-finished",
        "inventory",
        "txn-applied",
        "txn-rolled-back",
    ] {
        assert!(
            log.contains(&format!("\"kind\":\"{kind}\"")),
            "{kind} not received:\n{log}"
        );
    }
    assert!(log.contains("\"subject\":\"gpu-isolation\""), "{log}");
    assert!(log.contains("uid=65534"), "not run as nobody:\n{log}");
    assert!(!log.contains("uid=0"), "ran as root:\n{log}");
    assert!(
        !log.contains("must-not-leak"),
        "the environment leaked:\n{log}"
    );
    let env: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("env "))
        .filter_map(|l| l.split('=').next())
        .collect();
    for k in &env {
        assert!(
            [
                "PATH",
                "LANG",
                "EXLIAR_PLUGIN",
                "EXLIAR_ROOT",
                "PWD",
                "SHLVL",
                "_",
                "OLDPWD"
            ]
            .contains(k),
            "unexpected variable {k}: {env:?}"
        );
    }
    // Its working folder is its own, not the target.
    assert!(
        !log.contains(&format!("env PWD={}", s.target.display())),
        "{log}"
    );
}

/// A plugin in Rust: proposes a file in the target and a command.
const RUST_PLUGIN: &str = r###"
use std::io::Read;
fn main() {
    let mut req = String::new();
    std::io::stdin().read_to_string(&mut req).unwrap();
    let ans = if req.contains("\"request\":\"describe\"") {
        r#"{"schema":"exliar.plugin/1","name":"monitor","version":"0.1","description":"switches the monitor input","events":[],"propose":true}"#.to_string()
    } else if req.contains("\"request\":\"propose\"") {
        let target = if req.contains("gpu-isolation") { "vm" } else { "?" };
        format!(r#"{{"schema":"exliar.plugin/1","steps":[{{"kind":"write","path":"/etc/monitor-switch.conf","content":"input=hdmi2\nfor={target}\n","mode":"0640","why":"input for the guest"}},{{"kind":"command","argv":["ddcutil","setvcp","60","0x12"],"undo":["ddcutil","setvcp","60","0x0f"],"why":"switch now"}}]}}"#)
    } else {
        r#"{"schema":"exliar.plugin/1","ok":true}"#.to_string()
    };
    println!("{ans}");
}
"###;

fn compile_rust_plugin(dir: &Path) -> Option<PathBuf> {
    let src = dir.join("monitor.rs");
    std::fs::write(&src, RUST_PLUGIN).expect("src");
    let out = dir.join("monitor");
    let st = std::process::Command::new("rustc")
        .args(["--edition", "2021", "-O", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .ok()?;
    st.success().then_some(out)
}

#[test]
fn a_rust_plugin_proposes_steps_that_the_transaction_applies_and_rolls_back() {
    if !root_or_skip() {
        return;
    }
    let s = setup();
    let build = tempfile::tempdir().expect("tempdir");
    let Some(bin) = compile_rust_plugin(build.path()) else {
        panic!("rustc could not build the test plugin");
    };
    let dest = plugins(&s).join("monitor");
    std::fs::copy(&bin, &dest).expect("copy");
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let before = files(&s.target);

    let plan = exliar()
        .args(["plan", "--root"])
        .arg(&s.hw)
        .arg("--target")
        .arg(&s.target)
        .output()
        .expect("plan");
    assert_success(&plan, "plan");
    let text = stdout(&plan);
    assert!(
        text.contains("plugin monitor: input for the guest"),
        "{text}"
    );
    assert!(text.contains("+++ /etc/monitor-switch.conf"), "{text}");
    assert!(text.contains("+input=hdmi2"), "{text}");
    assert!(text.contains("ddcutil setvcp 60 0x12"), "{text}");

    let out = exliar()
        .args(["apply", "--yes", "--no-run", "--json", "--root"])
        .arg(&s.hw)
        .arg("--target")
        .arg(&s.target)
        .output()
        .expect("apply");
    assert_success(&out, "apply");
    let conf = s.target.join("etc/monitor-switch.conf");
    assert_eq!(
        std::fs::read_to_string(&conf).expect("the proposed file"),
        "input=hdmi2\nfor=vm\n"
    );
    assert_eq!(
        std::fs::metadata(&conf).expect("md").permissions().mode() & 0o777,
        0o640
    );
    let j = common::json(&out);
    let cmds: Vec<String> = j["journal"]["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .map(|c| {
            c["argv"]
                .as_array()
                .expect("argv")
                .iter()
                .map(|a| a.as_str().unwrap_or("").to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert!(
        cmds.contains(&"ddcutil setvcp 60 0x12".to_string()),
        "{cmds:?}"
    );

    let out = exliar()
        .args(["rollback", "--no-run", "--target"])
        .arg(&s.target)
        .output()
        .expect("rollback");
    assert_success(&out, "rollback");
    assert_eq!(
        tree_diff(&before, &files(&s.target)),
        "",
        "not byte-identical"
    );
}

#[test]
fn a_proposal_outside_the_target_is_refused() {
    if !root_or_skip() {
        return;
    }
    let s = setup();
    // Through `..`, and through a link in the target that leads out of it.
    std::os::unix::fs::symlink("/etc", s.target.join("etc/outside")).expect("symlink");
    for (name, path) in [
        ("dotdot", "/etc/../../escape.conf"),
        ("vialink", "/etc/outside/escape.conf"),
        ("state", "/var/lib/exliar/txn/x"),
    ] {
        let body = format!(
            r#"#!/bin/sh
req=$(cat)
case "$req" in
*'"request":"describe"'*) echo '{{"schema":"exliar.plugin/1","name":"{name}","propose":true}}' ;;
*) echo '{{"schema":"exliar.plugin/1","steps":[{{"kind":"write","path":"{path}","content":"x"}}]}}' ;;
esac
"#
        );
        install(&plugins(&s), name, &body, 0o755);
    }
    let out = exliar()
        .args(["plan", "--json", "--root"])
        .arg(&s.hw)
        .arg("--target")
        .arg(&s.target)
        .output()
        .expect("plan");
    assert_success(&out, "plan");
    let v = common::json(&out);
    let warnings: Vec<&str> = v["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| w.as_str())
        .collect();
    for name in ["dotdot", "vialink", "state"] {
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with(&format!("plugin {name}: proposal refused"))),
            "{name}: {warnings:?}"
        );
    }
    let text = serde_json::to_string(&v["steps"]).expect("steps");
    assert!(!text.contains("escape.conf"), "{text}");
    assert!(!Path::new("/etc/escape.conf").exists());
}

#[test]
fn new_prints_a_skeleton_that_works_as_a_plugin() {
    if !root_or_skip() {
        return;
    }
    let s = setup();
    let out = exliar()
        .args(["plugin", "new", "hello"])
        .output()
        .expect("new");
    assert_success(&out, "plugin new");
    install(&plugins(&s), "hello", &stdout(&out), 0o755);
    let show = exliar()
        .args(["plugin", "show", "hello", "--json", "--root"])
        .arg(&s.hw)
        .output()
        .expect("show");
    assert_success(&show, "plugin show");
    assert_eq!(common::json(&show)["name"], "hello");
    let run = exliar()
        .args([
            "plugin",
            "run",
            "hello",
            "vm-started",
            "--field",
            "vm=win11",
            "--root",
        ])
        .arg(&s.hw)
        .output()
        .expect("run");
    assert_success(&run, "plugin run");
    assert_eq!(common::json(&run)["ok"], true);
}

/// The libvirt hook tells plugins that exliar's VM started and stopped (a
/// foreign domain: nothing).
#[test]
fn the_hook_sends_vm_events_for_exliars_vms_only() {
    if !root_or_skip() {
        return;
    }
    let s = setup();
    install(
        &plugins(&s),
        "logger",
        &logging_plugin(&s.log, "logger", "\"vm-started\",\"vm-stopped\"", ""),
        0o755,
    );
    let xml = exliar()
        .args([
            "vm",
            "create",
            "hooktest",
            "--profile",
            "linux",
            "--firmware",
            "bios",
        ])
        .args(["--disk", "none", "--network", "none", "--print-xml"])
        .args(["--connect", "test:///default", "--root"])
        .arg(host(HW))
        .output()
        .expect("vm create --print-xml");
    assert_success(&xml, "vm create --print-xml");
    let hook = |name: &str, op: &str, sub: &str, xml: &[u8]| {
        // `--root` first: the hook's own arguments take everything after it.
        let out = exliar()
            .arg("--root")
            .arg(&s.hw)
            .args(["hook", "qemu", name, op, sub, "-"])
            .write_stdin(xml.to_vec())
            .output()
            .expect("hook");
        assert_success(&out, "hook");
    };
    hook("hooktest", "started", "begin", &xml.stdout);
    hook("hooktest", "release", "end", &xml.stdout);
    hook(
        "foreign",
        "started",
        "begin",
        b"<domain type='kvm'><name>foreign</name></domain>",
    );
    let log = std::fs::read_to_string(s.log.join("logger.log")).unwrap_or_default();
    assert!(
        log.contains(r#""kind":"vm-started""#) && log.contains(r#""vm":"hooktest""#),
        "{log}"
    );
    assert!(log.contains(r#""kind":"vm-stopped""#), "{log}");
    assert!(!log.contains("foreign"), "{log}");
}
