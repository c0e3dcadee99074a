//! `exliar recover-display` through the binary, on host trees written here:
//! nothing recorded; a journal left by a handover a crash interrupted (the
//! console is bound again, the display manager cannot be started off the
//! live host, so the run fails and keeps the journal; the boot form then
//! finishes); a VM that still runs. Golden human and JSON output, times
//! masked.

mod common;

use std::path::Path;

use common::*;

fn run(root: &Path, args: &[&str]) -> (i32, String, String) {
    let o = exliar()
        .arg("--root")
        .arg(root)
        .arg("recover-display")
        .args(args)
        .output()
        .expect("run");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Step times vary: `0.001s` becomes `N.NNNs`, `"secs": 0.001` `"secs": N`.
fn masked(s: &str) -> String {
    let mut out = String::new();
    for line in s.lines() {
        let mut l = line.to_string();
        if let Some(i) = l.find("\"secs\": ") {
            l = format!(
                "{}\"secs\": N{}",
                &l[..i],
                if l.ends_with(',') { "," } else { "" }
            );
        }
        let t = l.trim_start();
        if let Some(j) = t.find("s ")
            && t[..j].parse::<f64>().is_ok()
        {
            let indent = &l[..l.len() - t.len()];
            l = format!("{indent}N.NNNs {}", &t[j + 2..]);
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

const JOURNAL: &str = "var/lib/exliar/handover/single-gpu.json";

/// A tree a killed hook left: gdm stopped, the framebuffer console unbound,
/// then the run stopped before the card was bound.
fn interrupted(root: &Path) {
    let w = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    w("sys/class/vtconsole/vtcon0/name", "(S) dummy device\n");
    w("sys/class/vtconsole/vtcon0/bind", "1\n");
    w(
        "sys/class/vtconsole/vtcon1/name",
        "(M) frame buffer device\n",
    );
    w("sys/class/vtconsole/vtcon1/bind", "0\n");
    w(
        JOURNAL,
        r#"{
  "schema": "exliar.handover-journal/1",
  "domain": "win11",
  "functions": ["0000:01:00.0", "0000:01:00.1"],
  "phase": "taking",
  "entries": [
    {"step": "stop-display-manager", "unit": "gdm3.service", "state": "done"},
    {"step": "unbind-vtconsole", "n": 1, "name": "(M) frame buffer device", "state": "done"},
    {"step": "bind-vfio", "functions": ["0000:01:00.0", "0000:01:00.1"], "state": "planned"},
    {"step": "unload-module", "name": "bochs", "state": "planned"}
  ]
}
"#,
    );
}

#[test]
fn nothing_recorded_is_ok() {
    let t = tempfile::tempdir().expect("tempdir");
    let (rc, out, err) = run(t.path(), &[]);
    assert_eq!(rc, 0, "{err}");
    insta::assert_snapshot!("recover-display-nothing", out);
    let (rc, out, _) = run(t.path(), &["--json"]);
    assert_eq!(rc, 0);
    insta::assert_snapshot!("recover-display-nothing-json", masked(&out));
}

#[test]
fn an_interrupted_handover_is_undone_past_a_failing_step_then_finished_at_boot() {
    let t = tempfile::tempdir().expect("tempdir");
    interrupted(t.path());
    let vt1 = t.path().join("sys/class/vtconsole/vtcon1/bind");
    // off the live host there is no service manager: starting gdm fails,
    // the console is bound all the same, the journal stays
    let (rc, out, err) = run(t.path(), &[]);
    assert_eq!(rc, 2, "{out}{err}");
    assert_eq!(std::fs::read_to_string(&vt1).expect("bind"), "1");
    assert!(err.contains("gdm3.service"), "{err}");
    insta::assert_snapshot!("recover-display-failed", masked(&out));
    let j = std::fs::read_to_string(t.path().join(JOURNAL)).expect("journal kept");
    assert!(j.contains("\"undone\""), "{j}");
    assert!(j.contains("giving-back"), "{j}");
    // the boot unit's form: no services; the record is cleared
    let (rc, out, err) = run(t.path(), &["--boot", "--json"]);
    assert_eq!(rc, 0, "{out}{err}");
    insta::assert_snapshot!("recover-display-boot-json", masked(&out));
    assert!(!t.path().join(JOURNAL).exists());
}

#[test]
fn a_running_vm_keeps_its_card_unless_forced() {
    let t = tempfile::tempdir().expect("tempdir");
    interrupted(t.path());
    std::fs::create_dir_all(t.path().join("run/libvirt/qemu")).expect("mkdir");
    std::fs::write(t.path().join("run/libvirt/qemu/win11.pid"), "4242\n").expect("pid");
    std::fs::create_dir_all(t.path().join("proc/4242")).expect("proc");
    let (rc, out, err) = run(t.path(), &[]);
    assert_eq!(rc, 1, "{out}{err}");
    assert!(err.contains("win11 runs and holds the card"), "{err}");
    let (rc, out, _) = run(t.path(), &["--if-stuck", "--json"]);
    assert_eq!(rc, 0);
    assert!(out.contains("\"vm-running\""), "{out}");
    assert!(
        t.path().join(JOURNAL).exists(),
        "nothing done while the VM runs"
    );
    // the VM is gone (its pid no longer runs): the watchdog's form acts
    std::fs::remove_dir(t.path().join("proc/4242")).expect("rm");
    let (rc, _, _) = run(t.path(), &["--if-stuck", "--boot"]);
    assert_eq!(rc, 0);
    assert!(!t.path().join(JOURNAL).exists());
}

/// The boot unit `hooks install` writes, checked by systemd itself
/// (`systemd-analyze verify`: syntax, dependencies, and that `ExecStart` names an
/// executable).
#[test]
fn the_boot_unit_passes_systemd_analyze_verify() {
    let Some(tool) = common::tool_or_skip("/usr/bin/systemd-analyze", "systemd") else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let exe = Path::new(env!("CARGO_BIN_EXE_exliar"));
    let unit = t.path().join("exliar-recover-display.service");
    std::fs::write(&unit, exliar::hooks::unit_text(exe)).expect("unit");
    let o = std::process::Command::new(&tool)
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // and it finds a missing binary: the check can fail
    std::fs::write(
        &unit,
        exliar::hooks::unit_text(Path::new("/nonexistent/exliar")),
    )
    .expect("unit");
    let o = std::process::Command::new(&tool)
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    assert!(!o.status.success(), "a unit naming no binary passes");
}
