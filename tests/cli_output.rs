//! What the command line prints, whatever the host holds: no terminal
//! control from host strings, each error cause once, no colour codes where
//! stderr is not a terminal, and the small promises of each command's last
//! words.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const HW01: &str = "hw01-asrock-z170-skylake-gtx960";
const TITLE: &str = "\x1b]0;pwned\x07";

/// No byte a terminal would act on: C0 but newline and tab, DEL, and C1
/// (U+0080..U+009F, two bytes in UTF-8).
fn assert_no_control(text: &str, what: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|c| c.is_control() && *c != '\n' && *c != '\t')
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: raw control characters {bad:?} in:\n{text}"
    );
}

/// hw01 with terminal escapes in a pci.ids device name, a driver name and
/// the root folder's own name.
fn hostile_host() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().join(format!("host{TITLE}"));
    copy_tree(&host(HW01), &root);
    let ids = root.join("usr/share/misc/pci.ids");
    let text = std::fs::read_to_string(&ids).expect("pci.ids");
    let text = text.replacen(
        "GM206 [GeForce GTX 960]",
        &format!("GM206 [GeForce{TITLE} GTX\u{9b}2J 960\x7f]"),
        1,
    );
    std::fs::write(&ids, text).expect("write pci.ids");
    let drivers = root.join("sys/bus/pci/drivers");
    let name = format!("nvid{TITLE}ia\x1b[2J");
    std::fs::create_dir_all(drivers.join(&name)).expect("driver folder");
    let dev = std::fs::read_link(root.join("sys/bus/pci/devices/0000:01:00.0")).expect("link");
    let dev = root.join("sys/bus/pci/devices").join(dev);
    std::os::unix::fs::symlink(
        Path::new("../../../bus/pci/drivers").join(&name),
        dev.join("driver"),
    )
    .expect("driver link");
    (t, root)
}

#[test]
fn host_strings_reach_the_terminal_escaped() {
    let (_t, root) = hostile_host();
    for cmd in [&["scan"][..], &["iommu"], &["check"], &["status"]] {
        let o = exliar()
            .args(cmd)
            .arg("--root")
            .arg(&root)
            .output()
            .expect("run");
        let out = String::from_utf8_lossy(&o.stdout);
        let err = stderr(&o);
        assert_no_control(&out, &format!("{cmd:?} stdout"));
        assert_no_control(&err, &format!("{cmd:?} stderr"));
        if cmd == ["scan"] {
            assert!(
                out.contains("\\u{1b}]0;pwned\\u{7}"),
                "scan shows the escape, escaped:\n{out}"
            );
        }
    }
    // JSON keeps the exact strings (serde escapes them).
    let o = exliar()
        .args(["scan", "--json", "--root"])
        .arg(&root)
        .output()
        .expect("run");
    assert_success(&o, "scan --json");
    let doc = json(&o);
    let gpu = doc["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .find(|d| d["address"] == "0000:01:00.0")
        .expect("the GPU");
    assert_eq!(gpu["driver"], format!("nvid{TITLE}ia\x1b[2J"));
}

#[test]
fn pasted_listing_escapes_are_escaped() {
    let t = tempfile::tempdir().expect("tempdir");
    let f = t.path().join(format!("paste{TITLE}.txt"));
    std::fs::write(
        &f,
        format!(
            "IOMMU group 1\n  00:01.0 PCI bridge [0604]: Intel Corporation PCIe Controller [8086:1901] (rev 07)\n  \
             01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GM206 [GeForce{TITLE} GTX 960] [10de:1401] (rev a1)\n  \
             01:00.1 Audio device [0403]: NVIDIA\x1b[31m Corporation Device [10de:0fba] (rev a1)\n\
             IOMMU group 2\n  00:02.0 VGA compatible controller [0300]: Intel Corporation HD Graphics 530 [8086:1912] (rev 06)\n\
             garbage line {TITLE}\n"
        ),
    )
    .expect("write");
    for extra in [&[][..], &["--iommu"]] {
        let o = exliar()
            .arg("analyze")
            .args(extra)
            .arg(&f)
            .output()
            .expect("run");
        assert_success(&o, "analyze");
        assert_no_control(&String::from_utf8_lossy(&o.stdout), "analyze stdout");
        assert_no_control(&stderr(&o), "analyze stderr");
    }
    // An error naming the file: escaped too.
    let o = exliar()
        .arg("analyze")
        .arg(t.path().join(format!("missing{TITLE}")))
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert_no_control(&stderr(&o), "analyze error");
}

/// Runs exliar; returns (exit code, stderr).
fn stderr_of(args: &[&str]) -> (Option<i32>, String) {
    let o = exliar().args(args).output().expect("run");
    (o.status.code(), stderr(&o))
}

#[test]
fn error_causes_are_printed_once() {
    let t = tempfile::tempdir().expect("tempdir");
    let tar = t.path().join("no/such/folder/x.tar");
    let tar = tar.to_str().expect("utf-8 path");
    let hw = host(HW01);
    let hw = hw.to_str().expect("utf-8 path");
    for (args, path) in [
        (&["analyze", "/nonexistent"][..], "/nonexistent"),
        (
            &["--root", "/nonexistent", "scan"],
            "/nonexistent/sys/bus/pci/devices",
        ),
        (
            &["--root", "/nonexistent", "status"],
            "/nonexistent/sys/bus/pci/devices",
        ),
        (&["--root", hw, "snapshot", tar], tar),
    ] {
        let (code, err) = stderr_of(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert_eq!(err.matches("os error 2").count(), 1, "{args:?}: {err}");
        assert!(err.contains("No such file or directory"), "{args:?}: {err}");
        assert_eq!(err.matches(path).count(), 1, "{args:?}: path once: {err}");
    }
}

/// Warnings on a stderr that is not a terminal carry no colour codes.
#[test]
fn warnings_are_not_coloured_off_a_terminal() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().join("host");
    copy_tree(&host(HW01), &root);
    let dev = std::fs::read_link(root.join("sys/bus/pci/devices/0000:00:14.0")).expect("link");
    let dev = root.join("sys/bus/pci/devices").join(dev);
    std::fs::write(dev.join("class"), "garbage\n").expect("write class");
    let o = exliar()
        .env_remove("NO_COLOR")
        .args(["scan", "--root"])
        .arg(&root)
        .output()
        .expect("run");
    assert_success(&o, "scan");
    let err = stderr(&o);
    assert!(err.contains("garbled value"), "the warning: {err}");
    assert!(!err.contains('\x1b'), "colour codes on a pipe: {err:?}");
}

/// `--no-run` leaves the boot image as it was: the last words name the
/// commands to run before rebooting, for apply and for rollback.
#[test]
fn no_run_names_the_commands_to_run_before_rebooting() {
    let (_t, dir) = target("debian12-grub-intel");
    let o = on_target(&["apply", "--yes", "--no-run"], HW_IDENTICAL, &dir)
        .output()
        .expect("run");
    assert_success(&o, "apply --no-run");
    let out = stdout(&o);
    let last = out.lines().rev().take(3).collect::<Vec<_>>();
    assert!(
        out.contains("not run (--no-run)")
            && out.contains("  update-initramfs -u -k all\nthen reboot"),
        "apply --no-run names the command before the reboot:\n{out}"
    );
    assert!(!out.contains("Applied. Reboot"), "{last:?}");
    let o = txn_cmd(&["rollback", "--no-run"], &dir)
        .output()
        .expect("run");
    assert_success(&o, "rollback --no-run");
    let out = stdout(&o);
    assert!(
        out.contains("  update-initramfs -u -k all\nthen reboot to boot without the isolation"),
        "rollback --no-run names the command before the reboot:\n{out}"
    );
    assert!(!out.contains("before; reboot"), "{out}");
}

/// Answering no at the prompt changes nothing and says so (exit 1).
#[test]
fn declined_apply_says_nothing_changed() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: script(1) is absent (needed for a terminal)");
        return;
    }
    let (_t, dir) = target("debian12-grub-intel");
    let before = std::fs::read(dir.join("etc/initramfs-tools/modules")).expect("read");
    let cmd = format!(
        "'{}' --root '{}' apply --no-run --target '{}'",
        env!("CARGO_BIN_EXE_exliar"),
        host(HW_IDENTICAL).display(),
        dir.display()
    );
    let o = assert_cmd::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .write_stdin("n\n")
        .output()
        .expect("run script");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("Apply this plan? [y/N]"), "{out}");
    assert!(out.contains("Nothing was changed."), "{out}");
    assert_eq!(
        std::fs::read(dir.join("etc/initramfs-tools/modules")).expect("read"),
        before
    );
}

/// `unbind --json` with nothing held prints a document; `plan --json
/// --format nix` is an error; an address naming no device is an error
/// (exit 2), with the bind document still naming it.
#[test]
fn json_and_exit_status_promises() {
    let hw = host(HW01);
    for extra in [&["--dry-run"][..], &[]] {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().join("host");
        copy_tree(&hw, &root);
        let o = exliar()
            .args(["unbind", "--json"])
            .args(extra)
            .arg("--root")
            .arg(&root)
            .output()
            .expect("run");
        assert_success(&o, "unbind --json");
        let doc = json(&o);
        assert_valid(&schema("bind-1.schema.json"), &doc, "unbind --json");
        assert_eq!(doc["action"], "unbind");
        assert_eq!(doc["ok"], true);
        assert_eq!(doc["devices"], serde_json::json!([]));
    }

    let o = exliar()
        .args(["plan", "--json", "--format", "nix", "--root"])
        .arg(host("nixos-amd"))
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    assert!(stderr(&o).contains("--format nix"));

    for args in [
        &["bind", "0a:00.0", "--dry-run"][..],
        &["bind", "0a:00.0", "--dry-run", "--json"],
        &["unbind", "0a:00.0", "--dry-run", "--json"],
    ] {
        let o = exliar()
            .args(args)
            .arg("--root")
            .arg(&hw)
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert!(all.contains("no such PCI device"), "{args:?}: {all}");
    }
}

/// Human `scan` says "boot display" only as the JSON's evidence does: read
/// from `boot_vga`, or "(inferred: ...)".
#[test]
fn scan_boot_display_wording_matches_the_evidence() {
    let mut seen = (0, 0);
    for name in ["hw09-ryzen-x570-rtx3060", "popos-kernelstub", HW01] {
        let h = host(name);
        let o = exliar()
            .args(["scan", "--json", "--root"])
            .arg(&h)
            .output()
            .expect("run");
        assert_success(&o, "scan --json");
        let doc = json(&o);
        let o = exliar()
            .args(["scan", "--root"])
            .arg(&h)
            .output()
            .expect("run");
        assert_success(&o, "scan");
        let text = stdout(&o);
        for g in doc["gpus"].as_array().expect("gpus") {
            let addr = g["address"].as_str().expect("address");
            // the tags line follows the GPU's own line
            let mut lines = text
                .lines()
                .skip_while(|l| !l.starts_with(&format!("  {addr}  ")));
            lines.next();
            let tags = lines.next().expect("tags line");
            match g["boot_display_evidence"].as_str() {
                Some("inferred") => {
                    seen.0 += 1;
                    assert!(
                        tags.contains("boot display (inferred: "),
                        "{name} {addr}: {tags}"
                    );
                }
                Some("boot-vga") => {
                    seen.1 += 1;
                    assert!(tags.ends_with(", boot display"), "{name} {addr}: {tags}");
                }
                _ => assert!(!tags.contains("boot display"), "{name} {addr}: {tags}"),
            }
        }
        // no verdict or reason calls an inferred boot display plainly so
        if doc["gpus"]
            .as_array()
            .expect("gpus")
            .iter()
            .any(|g| g["boot_display_evidence"] == "inferred")
        {
            assert!(!text.contains("the boot display."), "{name}: {text}");
            assert!(!text.contains("the boot display and"), "{name}: {text}");
        }
    }
    assert!(seen.0 > 0 && seen.1 > 0, "both kinds of evidence: {seen:?}");
}

/// A CPU exliar does not know gets no `intel_iommu=on`: plan says so
/// (human and JSON) and check names the parameter; a known vendor does not
/// get the warning.
#[test]
fn unknown_cpu_vendor_is_said_not_silently_dropped() {
    for (vendor, warned) in [("CentaurHauls", true), ("GenuineIntel", false)] {
        let t = tempfile::tempdir().expect("tempdir");
        let hw = t.path().join("hw");
        copy_tree(&host(HW_IDENTICAL), &hw);
        std::fs::create_dir_all(hw.join("proc")).expect("proc");
        std::fs::write(
            hw.join("proc/cpuinfo"),
            format!("processor\t: 0\nvendor_id\t: {vendor}\nmodel name\t: Some CPU\nflags\t\t: fpu vmx\n\n"),
        )
        .expect("cpuinfo");
        let dir = t.path().join("target");
        copy_tree(&host("debian12-grub-intel"), &dir);
        let plan = |json: bool| {
            let mut c = exliar();
            c.arg("plan")
                .arg("--root")
                .arg(&hw)
                .arg("--target")
                .arg(&dir);
            if json {
                c.arg("--json");
            }
            c.output().expect("run")
        };
        let o = plan(true);
        assert_success(&o, "plan --json");
        let doc = json(&o);
        let warnings = doc["warnings"].to_string();
        assert_eq!(
            warnings.contains("adds `intel_iommu=on` only for Intel CPUs"),
            warned,
            "{vendor}: {warnings}"
        );
        if warned {
            assert!(warnings.contains(vendor), "{warnings}");
            let o = plan(false);
            assert_success(&o, "plan");
            assert!(
                stdout(&o).contains("`intel_iommu=on` only for Intel"),
                "{}",
                stdout(&o)
            );
            let o = exliar()
                .args(["check", "--json", "--only", "cpu.vendor", "--root"])
                .arg(&hw)
                .output()
                .expect("run");
            let c = json(&o);
            assert!(
                c["checks"][0]["summary"]
                    .to_string()
                    .contains("intel_iommu=on"),
                "{c}"
            );
        }
    }
}
