//! The editors' output read by the real tools, on a test root: Debian's
//! `grub-mkconfig` (grub-common) regenerates grub.cfg from an edited
//! `/etc/default/grub`, systemd's `kernel-install` writes a loader entry from
//! an edited `/etc/kernel/cmdline`, and `bootctl list` (systemd-boot) parses
//! edited loader entries. Each shows the generated result carries the
//! parameters, and that removing them gives the tool's original output.
//!
//! grub-mkconfig reads `/etc/default/grub` and `/boot` at fixed paths and
//! asks `grub-probe` about the root device, so it runs in a private mount
//! namespace (`unshare -m` as root, `unshare -rm` otherwise) with the test
//! files bound over `/etc/default` and `/boot` and a fake `grub-probe`
//! (a plain ext2 root on GPT) bound over the real one: no real device or
//! boot file is read or touched. bootctl needs its ESP and XBOOTLDR to be
//! file-system roots: two tmpfs in the same kind of namespace.
//!
//! The Debian packages are listed in tests/bootloader-tools/apt-packages.txt.
//! Without a tool the test prints why and passes, unless `CI` is set.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use exliar::plan::boot::{bls, grub, params, strip_fixture_header};

fn configs_dir() -> Option<PathBuf> {
    common::shared_fixtures().map(|f| f.join("configs"))
}

/// Skip (print why) or, under CI, fail.
fn unavailable(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{why} (CI is set: install tests/bootloader-tools/apt-packages.txt)");
    }
    eprintln!("skipping: {why}");
}

fn fixture(name: &str) -> Option<String> {
    let dir = configs_dir()?;
    let raw = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    Some(strip_fixture_header(&raw).to_string())
}

fn add() -> Vec<String> {
    [
        "intel_iommu=on",
        "iommu=pt",
        "vfio-pci.ids=10de:1b81,10de:10f0",
        "video=efifb:off",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `unshare` arguments for a private mount namespace, if one can be had.
fn namespace() -> Option<Vec<&'static str>> {
    let args: Vec<&str> = if is_root() { vec!["-m"] } else { vec!["-rm"] };
    let probe = tempfile::tempdir().ok()?;
    let ok = Command::new("unshare")
        .args(&args)
        .args([
            "sh",
            "-c",
            &format!("mount -t tmpfs none {}", sh_quote(probe.path())),
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then_some(args)
}

fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

const FAKE_GRUB_PROBE: &str = r#"#!/bin/sh
# Fake grub-probe: a plain ext2 root on a GPT disk.
target=
for a in "$@"; do case "$a" in --target=*) target="${a#--target=}";; esac; done
case "$target" in
  device) echo /dev/exliar-test1 ;;
  fs) echo ext2 ;;
  fs_uuid) echo 0b8e7c3a-1111-2222-3333-444455556666 ;;
  partuuid) echo 11111111-2222-3333-4444-555555555555 ;;
  partmap) echo gpt ;;
  drive) echo '(hd0,gpt1)' ;;
  compatibility_hint) echo 'hd0,gpt1' ;;
  *) ;;
esac
"#;

/// A grub.cfg's `linux` lines: (recovery entry?, parameters after the
/// kernel path).
fn linux_lines(cfg: &str) -> Vec<(bool, Vec<String>)> {
    let mut out = Vec::new();
    let mut recovery = false;
    for line in cfg.lines() {
        let t = line.trim_start();
        if t.starts_with("menuentry ") {
            recovery = t.contains("recovery mode");
        } else if let Some(rest) = t.strip_prefix("linux") {
            let mut toks = params::split(rest.trim()).unwrap_or_default();
            if !toks.is_empty() {
                toks.remove(0); // the kernel path
            }
            out.push((recovery, toks));
        }
    }
    out
}

struct GrubRoot {
    dir: tempfile::TempDir,
    ns: Vec<&'static str>,
}

impl GrubRoot {
    fn new(ns: Vec<&'static str>) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let d = dir.path();
        for sub in ["default/grub.d", "boot/grub", "out"] {
            std::fs::create_dir_all(d.join(sub)).unwrap_or_else(|e| panic!("{e}"));
        }
        // A kernel and its initrd, as Debian names them.
        std::fs::write(d.join("boot/vmlinuz-6.1.0-99-amd64"), b"kernel")
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(d.join("boot/initrd.img-6.1.0-99-amd64"), b"initrd")
            .unwrap_or_else(|e| panic!("{e}"));
        let probe = d.join("grub-probe");
        std::fs::write(&probe, FAKE_GRUB_PROBE).unwrap_or_else(|e| panic!("{e}"));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        GrubRoot { dir, ns }
    }

    /// Run grub-mkconfig with these settings; the generated grub.cfg.
    fn mkconfig(&self, main: &str, dropins: &[(String, String)]) -> String {
        let d = self.dir.path();
        std::fs::write(d.join("default/grub"), main).unwrap_or_else(|e| panic!("{e}"));
        let gd = d.join("default/grub.d");
        let _ = std::fs::remove_dir_all(&gd);
        std::fs::create_dir_all(&gd).unwrap_or_else(|e| panic!("{e}"));
        for (n, t) in dropins {
            std::fs::write(gd.join(n), t).unwrap_or_else(|e| panic!("{e}"));
        }
        let out = d.join("out/grub.cfg");
        let script = format!(
            "set -e; mount --bind {def} /etc/default; mount --bind {boot} /boot; mount --bind {probe} /usr/sbin/grub-probe; grub-mkconfig -o {out}",
            def = sh_quote(&d.join("default")),
            boot = sh_quote(&d.join("boot")),
            probe = sh_quote(&d.join("grub-probe")),
            out = sh_quote(&out),
        );
        let o = Command::new("unshare")
            .args(&self.ns)
            .args(["sh", "-c", &script])
            .output()
            .unwrap_or_else(|e| panic!("unshare: {e}"));
        assert!(
            o.status.success(),
            "grub-mkconfig failed: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{e}"))
    }
}

fn grub_available() -> Option<Vec<&'static str>> {
    if !Path::new("/usr/sbin/grub-mkconfig").exists() || !Path::new("/etc/grub.d/10_linux").exists()
    {
        unavailable("grub-mkconfig is not installed (Debian package grub-common)");
        return None;
    }
    match namespace() {
        Some(ns) => Some(ns),
        None => {
            unavailable(
                "cannot make a private mount namespace (unshare -m / -rm) for grub-mkconfig",
            );
            None
        }
    }
}

/// For each real `/etc/default/grub`: grub.cfg of the edited file has the
/// parameters appended on every normal entry (recovery entries untouched,
/// since they went to GRUB_CMDLINE_LINUX_DEFAULT), nothing duplicated; and
/// grub.cfg after removal is byte for byte the original one.
#[test]
fn grub_mkconfig_carries_the_parameters() {
    let Some(ns) = grub_available() else { return };
    let root = GrubRoot::new(ns);
    let mut checked = 0;
    for name in [
        "debian-default-grub",
        "arch-default-grub.user-vfio-acs",
        "garuda-default-grub.user-vfio",
        "proxmox-default-grub.user-vfio",
        "fedora30-default-grub.user-vfio",
    ] {
        let Some(mut x) = fixture(name) else { return };
        // Fedora's GRUB_DISTRIBUTOR runs `sed … /etc/system-release`, a file
        // Debian does not have (grub-mkconfig stops on the failure).
        x = x.replace("/etc/system-release", "/etc/os-release");
        let e = grub::edit_default_grub(&x, grub::GrubKey::LinuxDefault, &add(), &[])
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        let before = root.mkconfig(&x, &[]);
        let after = root.mkconfig(&e.text, &[]);
        let (lb, la) = (linux_lines(&before), linux_lines(&after));
        assert!(
            !lb.is_empty(),
            "{name}: no linux line in grub.cfg:\n{before}"
        );
        assert_eq!(lb.len(), la.len(), "{name}");
        for ((rb, b), (ra, a)) in lb.iter().zip(&la) {
            assert_eq!(rb, ra);
            if *rb {
                assert_eq!(a, b, "{name}: a recovery entry changed");
            } else {
                let want: Vec<String> = b.iter().cloned().chain(e.added.iter().cloned()).collect();
                assert_eq!(a, &want, "{name}: normal entry");
                for p in add() {
                    let n = a.iter().filter(|t| params::same_param(t, &p)).count();
                    assert!(n <= 1, "{name}: `{p}` {n} times in {a:?}");
                }
            }
        }
        let back = grub::edit_default_grub(&e.text, grub::GrubKey::LinuxDefault, &[], &e.added)
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(back.text, x);
        assert_eq!(
            root.mkconfig(&back.text, &[]),
            before,
            "{name}: grub.cfg after removal"
        );
        checked += 1;
    }
    assert_eq!(checked, 5);
}

/// A drop-in that replaces GRUB_CMDLINE_LINUX_DEFAULT (as Ubuntu cloud
/// images ship): Debian's grub-mkconfig reads it after the main file, so
/// the drop-in is what must be edited, and is.
#[test]
fn grub_mkconfig_with_an_overriding_dropin() {
    let Some(ns) = grub_available() else { return };
    let Some(main) = fixture("debian-default-grub") else {
        return;
    };
    let root = GrubRoot::new(ns);
    let dropins = vec![(
        "50-cloudimg-settings.cfg".to_string(),
        "GRUB_CMDLINE_LINUX_DEFAULT=\"console=tty1 console=ttyS0\"\n".to_string(),
    )];
    let inputs = grub::GrubInputs {
        main: &main,
        dropins: &dropins,
        dropins_sourced: true,
    };
    let (files, setting) = grub::edit_grub(&inputs, grub::GrubKey::LinuxDefault, &add(), &[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        setting.file,
        grub::GrubFile::DropIn("50-cloudimg-settings.cfg".into())
    );
    let mut new_main = main.clone();
    let mut new_dropins = dropins.clone();
    for (f, e) in files {
        match f {
            grub::GrubFile::Main => new_main = e.text,
            grub::GrubFile::DropIn(_) => new_dropins[0].1 = e.text,
        }
    }
    let cfg = root.mkconfig(&new_main, &new_dropins);
    let normal: Vec<Vec<String>> = linux_lines(&cfg)
        .into_iter()
        .filter(|(r, _)| !r)
        .map(|(_, t)| t)
        .collect();
    assert!(!normal.is_empty());
    for toks in normal {
        for p in add().iter().chain(["console=ttyS0".to_string()].iter()) {
            assert!(toks.contains(p), "`{p}` missing from {toks:?}");
        }
        assert!(
            !toks.contains(&"quiet".to_string()),
            "the main file's value should be overridden: {toks:?}"
        );
    }
}

/// kernel-install (systemd) writes a Type #1 entry from the edited
/// `/etc/kernel/cmdline` (KERNEL_INSTALL_CONF_ROOT points at the test
/// copy), run through the argv of [`bls::kernel_cmdline_apply`].
#[test]
fn kernel_install_writes_the_edited_cmdline() {
    if !Path::new("/usr/bin/kernel-install").exists()
        || !Path::new("/usr/lib/kernel/install.d/90-loaderentry.install").exists()
    {
        unavailable("kernel-install is not installed (Debian package systemd)");
        return;
    }
    let Some(x) = fixture("kernel-cmdline.user-proxmox") else {
        return;
    };
    let e = bls::edit_kernel_cmdline(&x, &add(), &[]).unwrap_or_else(|err| panic!("{err}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    for sub in ["conf", "boot/loader/entries"] {
        std::fs::create_dir_all(d.join(sub)).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(d.join("conf/install.conf"), "layout=bls\n").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(d.join("conf/cmdline"), &e.text).unwrap_or_else(|e| panic!("{e}"));
    let image = d.join("vmlinuz-6.1.0-99-amd64");
    std::fs::write(&image, b"kernel").unwrap_or_else(|e| panic!("{e}"));
    let cmds = bls::kernel_cmdline_apply(&bls::CmdlineConsumer::KernelInstall {
        kernels: vec![("6.1.0-99-amd64".into(), image.display().to_string())],
    });
    assert_eq!(cmds.len(), 1);
    let machine_id = "0123456789abcdef0123456789abcdef";
    let o = Command::new(&cmds[0][0])
        .args(&cmds[0][1..])
        .env("KERNEL_INSTALL_CONF_ROOT", d.join("conf"))
        .env("BOOT_ROOT", d.join("boot"))
        .env("MACHINE_ID", machine_id)
        .env(
            "KERNEL_INSTALL_PLUGINS",
            "/usr/lib/kernel/install.d/90-loaderentry.install",
        )
        .output()
        .unwrap_or_else(|e| panic!("kernel-install: {e}"));
    assert!(
        o.status.success(),
        "kernel-install failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let entry = d.join(format!(
        "boot/loader/entries/{machine_id}-6.1.0-99-amd64.conf"
    ));
    let text =
        std::fs::read_to_string(&entry).unwrap_or_else(|e| panic!("{}: {e}", entry.display()));
    let options = text
        .lines()
        .find_map(|l| l.strip_prefix("options"))
        .unwrap_or_else(|| panic!("no options in\n{text}"));
    let got = params::split(options.trim()).unwrap_or_default();
    let mut want = params::split(&e.text).unwrap_or_default();
    want.push(format!("systemd.machine_id={machine_id}"));
    assert_eq!(got, want, "entry:\n{text}");
    for p in &e.added {
        assert!(got.contains(p));
    }
    // And the entry exliar would edit in place reads back the same.
    let again =
        bls::edit_loader_entry("x.conf", &text, &add(), &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        again.edited.text, text,
        "the generated entry already has everything"
    );
}

/// bootctl (systemd-boot) lists the edited real entries with the options
/// systemd's own parser joins: every added parameter is there, comment lines
/// and the user's options intact, and the Windows `efi` entry untouched.
#[test]
fn bootctl_lists_the_edited_entries() {
    if Command::new("bootctl").arg("--version").output().is_err() {
        unavailable("bootctl is not installed (Debian package systemd-boot)");
        return;
    }
    let Some(ns) = namespace() else {
        unavailable("cannot make a private mount namespace for bootctl's tmpfs ESP");
        return;
    };
    let names = [
        "systemd-boot-entry-arch-vfio.conf.user-akissu",
        "systemd-boot-entry-arch.conf.user-breakingspell",
        "systemd-boot-entry-cachyos.conf.user-ozzyhelix",
        "systemd-boot-entry-windows.conf.user-ozzyhelix",
        "bls-type1-entry.spec-example.conf",
    ];
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let (esp, boot, src) = (d.join("esp"), d.join("boot"), d.join("src"));
    for p in [&esp, &boot, &src] {
        std::fs::create_dir_all(p).unwrap_or_else(|e| panic!("{e}"));
    }
    let mut expected: Vec<(String, Vec<String>)> = Vec::new();
    let mut files = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let Some(x) = fixture(name) else { return };
        let file = format!("e{i}.conf");
        let e = bls::edit_loader_entry(&file, &x, &add(), &[])
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        std::fs::write(src.join(&file), &e.edited.text).unwrap_or_else(|e| panic!("{e}"));
        let opts: Vec<String> = e
            .edited
            .text
            .lines()
            .filter_map(|l| l.strip_prefix("options"))
            .flat_map(|v| params::split(v.trim()).unwrap_or_default())
            .collect();
        expected.push((file.clone(), opts));
        files.push(file);
    }
    let script = format!(
        "set -e; mount -t tmpfs none {esp}; mount -t tmpfs none {boot}; mkdir -p {boot}/loader/entries {esp}/loader/entries; cp {src}/*.conf {boot}/loader/entries/; SYSTEMD_RELAX_ESP_CHECKS=1 SYSTEMD_RELAX_XBOOTLDR_CHECKS=1 bootctl --esp-path={esp} --boot-path={boot} list --no-pager",
        esp = sh_quote(&esp),
        boot = sh_quote(&boot),
        src = sh_quote(&src),
    );
    let o = Command::new("unshare")
        .args(&ns)
        .args(["sh", "-c", &script])
        .output()
        .unwrap_or_else(|e| panic!("unshare: {e}"));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "bootctl list failed: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Blocks of `key: value` lines, one per entry.
    let mut listed: Vec<(String, Vec<String>)> = Vec::new();
    for line in out.lines() {
        let t = line.trim_start();
        if let Some(id) = t.strip_prefix("id: ") {
            listed.push((id.trim().to_string(), Vec::new()));
        } else if let Some(v) = t.strip_prefix("options: ")
            && let Some(last) = listed.last_mut()
        {
            last.1 = params::split(v.trim()).unwrap_or_default();
        }
    }
    for (file, want) in &expected {
        let got = listed
            .iter()
            .find(|(id, _)| id == file)
            .unwrap_or_else(|| panic!("bootctl does not list {file}:\n{out}"));
        // e3 is the Windows `efi` entry, left as it was; systemd's parser
        // reads its `FS0:EFI\Microsoft\…` with the backslashes removed.
        if !file.starts_with("e3") {
            assert_eq!(&got.1, want, "{file}");
            for p in add() {
                assert!(
                    got.1
                        .iter()
                        .any(|t| params::identity(t) == params::identity(&p)),
                    "{file}: `{p}` (or the user's own value) missing: {:?}",
                    got.1
                );
            }
        }
    }
}
