//! Hostile and odd input: bytes that are not UTF-8 in files exliar edits,
//! FIFOs, devices and huge files where attributes and configurations should
//! be, snapshot destinations that are links or exist already.

mod common;

use std::path::Path;

use common::*;

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
    let (_t, dir) = fixture_copy("debian12-grub-intel", "root");
    let grub_comment: &[u8] = b"# Gr\xf6\xdfe des Men\xfcs (latin-1)\n";
    let modules_comment: &[u8] = b"# m\xf3dulos para la \xe9poca\n";
    append(&dir.join("etc/default/grub"), grub_comment);
    append(&dir.join("etc/initramfs-tools/modules"), modules_comment);
    let original = regular_files(&dir);

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
    let applied = regular_files(&dir);
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
    let file_steps = file_steps(&again);
    assert!(file_steps.is_empty(), "second plan: {file_steps:?}");

    txn_cmd(&["rollback", "--no-run"], &dir).assert().success();
    assert_eq!(
        regular_files(&dir),
        original,
        "rollback did not restore every byte"
    );
}

/// The start of a long output, for a failure message.
fn head(s: &str) -> String {
    s.chars().take(2000).collect()
}

/// How long one command may take on a tiny tree before the test calls it
/// a hang (they take well under a second).
const HANG: std::time::Duration = std::time::Duration::from_secs(30);

fn mkfifo(path: &Path) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("mkdir");
    }
    let _ = std::fs::remove_file(path);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .expect("mkfifo");
}

const ATTR: &str = "sys/devices/pci0000:00/0000:00:01.0/class";

/// Run `exliar ARGS` with a time limit; a hang fails the test.
fn run_bounded(args: &[&str], root: &Path, extra: &[&std::ffi::OsStr]) -> std::process::Output {
    let out = exliar()
        .args(args)
        .arg("--root")
        .arg(root)
        .args(extra)
        .timeout(HANG)
        .output()
        .expect("run");
    assert!(
        out.status.code().is_some(),
        "exliar {args:?} was killed (a hang past {HANG:?})\nstderr: {}",
        head(&stderr(&out))
    );
    out
}

/// FIFOs where a sysfs attribute, `/proc/cmdline`, os-release and pci.ids
/// should be: every command finishes and says which file it did not read
/// (they blocked forever in `open`).
#[test]
fn fifos_in_the_host_root_never_hang() {
    let (t, hw) = fixture_copy(HW_IDENTICAL, "root");
    for f in [
        ATTR,
        "proc/cmdline",
        "etc/os-release",
        "usr/share/misc/pci.ids",
    ] {
        mkfifo(&hw.join(f));
    }
    let fifo_msg = "a FIFO, not a regular file; not read";
    for args in [&["scan"][..], &["iommu"], &["check"]] {
        let out = run_bounded(args, &hw, &[]);
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        if args == ["scan"] {
            assert_success(&out, "scan");
            assert!(
                all.contains(&format!("0000:00:01.0/class: {fifo_msg}")),
                "scan does not name the FIFO: {}",
                head(&all)
            );
        }
    }
    let snap = t.path().join("snap.tar");
    let out = run_bounded(&["snapshot", snap.to_str().expect("utf-8")], &hw, &[]);
    assert_success(&out, "snapshot");

    // A target whose /etc/default/grub is a FIFO: plan refuses, naming it;
    // a FIFO loader entry (read to evaluate the boot setup) is only a warning.
    let (_t2, target) = fixture_copy("debian12-grub-intel", "root");
    mkfifo(&target.join("boot/loader/entries/fifo.conf"));
    let out = run_bounded(
        &["plan", "--json"],
        &host(HW_IDENTICAL),
        &[std::ffi::OsStr::new("--target"), target.as_os_str()],
    );
    assert_success(&out, "plan with a FIFO loader entry");
    let doc = json(&out);
    assert!(
        doc["warnings"].to_string().contains(fifo_msg),
        "no warning: {doc}"
    );
    std::fs::remove_dir_all(target.join("boot/loader")).expect("rm");
    mkfifo(&target.join("etc/default/grub"));
    let out = run_bounded(
        &["plan", "--iommu-pt"],
        &host(HW_IDENTICAL),
        &[std::ffi::OsStr::new("--target"), target.as_os_str()],
    );
    assert_eq!(out.status.code(), Some(2), "plan over a FIFO grub");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("etc/default/grub: {fifo_msg}")),
        "plan does not name the FIFO: {}",
        head(&err)
    );
}

/// A 100 MB attribute (sparse) is refused at its size, never echoed.
#[test]
fn a_huge_attribute_is_refused_not_echoed() {
    let (_t, hw) = fixture_copy(HW_IDENTICAL, "root");
    let f = std::fs::File::create(hw.join(ATTR)).expect("create");
    f.set_len(100_000_000).expect("set_len");
    let out = run_bounded(&["scan"], &hw, &[]);
    assert_success(&out, "scan");
    let err = stderr(&out);
    assert!(
        err.contains("0000:00:01.0/class: larger than 64 KiB; not read"),
        "{}",
        head(&err)
    );
    assert!(err.len() < 10_000, "stderr is {} bytes", err.len());
}

/// A long garbled attribute is quoted in its warning only in part.
#[test]
fn a_garbled_attribute_is_quoted_in_part() {
    let (_t, hw) = fixture_copy(HW_IDENTICAL, "root");
    std::fs::write(hw.join(ATTR), "z".repeat(50_000)).expect("write");
    let out = run_bounded(&["scan"], &hw, &[]);
    assert_success(&out, "scan");
    let err = stderr(&out);
    assert!(err.contains("garbled value"), "{}", head(&err));
    assert!(err.len() < 10_000, "stderr is {} bytes", err.len());
}

/// A character device (`/dev/zero`'s numbers) in place of an attribute and
/// of `/proc/cmdline`: refused, not read until memory runs out. Making the
/// node needs root; without it the test says so and stops.
#[test]
fn a_character_device_in_place_of_an_attribute_is_refused() {
    let (_t, hw) = fixture_copy(HW_IDENTICAL, "root");
    std::fs::create_dir_all(hw.join("proc")).expect("mkdir");
    for f in [ATTR, "proc/cmdline"] {
        let p = hw.join(f);
        let _ = std::fs::remove_file(&p);
        if let Err(e) = rustix::fs::mknodat(
            rustix::fs::CWD,
            &p,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 5),
        ) {
            eprintln!("skipping: cannot make a device node ({e}); needs root");
            return;
        }
    }
    for args in [&["scan"][..], &["iommu"], &["check"]] {
        let out = run_bounded(args, &hw, &[]);
        if args == ["scan"] {
            assert_success(&out, "scan");
            let err = stderr(&out);
            assert!(
                err.contains(
                    "0000:00:01.0/class: a character device, not a regular file; not read"
                ),
                "{}",
                head(&err)
            );
        }
    }
}

/// `analyze FILE`: a device node is refused (it read `/dev/zero` until
/// memory ran out), a pipe is read (`analyze <(lspci -nnk)`), standard
/// input stops at 16 MiB.
#[test]
fn analyze_reads_files_and_pipes_but_not_devices() {
    // `exliar analyze ARGS` with a time limit
    let analyze = |args: &[&str]| {
        let mut c = exliar();
        c.arg("analyze").args(args).timeout(HANG);
        c
    };
    // exit 2, saying `want`
    let refused = |out: &std::process::Output, want: &str| {
        assert_eq!(out.status.code(), Some(2));
        let err = stderr(out);
        assert!(err.contains(want), "{}", head(&err));
    };
    if Path::new("/dev/zero").exists() {
        let out = analyze(&["/dev/zero"]).output().expect("analyze");
        refused(
            &out,
            "/dev/zero: a character device, not a regular file; not read",
        );
    }
    let t = tempfile::tempdir().expect("tempdir");
    let fifo = t.path().join("listing");
    mkfifo(&fifo);
    let listing = "IOMMU Group 1 01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GA106 [GeForce RTX 3060] [10de:2503] (rev a1)\n";
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, listing))
    };
    let out = analyze(&["--json"]).arg(&fifo).output().expect("analyze");
    writer.join().expect("writer").expect("write the FIFO");
    assert_success(&out, "analyze FIFO");
    assert!(stdout(&out).contains("10de"), "{}", stdout(&out));

    let out = analyze(&["-"])
        .write_stdin(vec![b'\n'; (16 << 20) + 1])
        .output()
        .expect("analyze");
    refused(&out, "larger than 16 MiB; not read");
}

/// `snapshot X.tar` never writes through a symbolic link and never
/// replaces an existing file without `--force`; the folder form never
/// follows a link either.
#[test]
fn snapshot_refuses_links_and_existing_files() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = host(HW_IDENTICAL);
    let snap = |out: &Path, force: bool| {
        let mut c = exliar();
        c.arg("snapshot").arg(out).arg("--root").arg(&root);
        if force {
            c.arg("--force");
        }
        c.timeout(HANG).output().expect("snapshot")
    };
    let victim = t.path().join("victim");
    std::fs::write(&victim, b"precious\n").expect("write");

    // An existing file: refused, untouched; --force replaces it.
    let out_tar = t.path().join("old.tar");
    std::fs::write(&out_tar, b"an older snapshot\n").expect("write");
    let out = snap(&out_tar, false);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("old.tar: already exists; --force replaces it"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&out_tar).expect("read"),
        b"an older snapshot\n"
    );
    let out = snap(&out_tar, true);
    assert_success(&out, "snapshot --force");
    assert!(std::fs::read(&out_tar).expect("read").len() > 1024);

    // A link, dangling or not, with or without --force: refused, and the
    // file it points at untouched.
    let link = t.path().join("link.tar");
    std::os::unix::fs::symlink(&victim, &link).expect("symlink");
    let dangling = t.path().join("dangling.tar");
    std::os::unix::fs::symlink(t.path().join("nowhere"), &dangling).expect("symlink");
    for (l, force) in [(&link, false), (&link, true), (&dangling, false)] {
        let out = snap(l, force);
        assert_eq!(out.status.code(), Some(2), "{l:?} force={force}");
        let err = stderr(&out);
        assert!(err.contains("is a symbolic link"), "{err}");
    }
    assert_eq!(std::fs::read(&victim).expect("read"), b"precious\n");
    assert!(
        !t.path().join("nowhere").exists(),
        "written through a dangling link"
    );

    // The folder form: a link to an empty folder is refused too.
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let dir_link = t.path().join("dirlink");
    std::os::unix::fs::symlink(&empty, &dir_link).expect("symlink");
    let out = snap(&dir_link, false);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_dir(&empty).expect("ls").count(), 0);
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(t.path())
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
}
