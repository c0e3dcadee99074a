//! `exliar check` on fixture hosts: golden output, the JSON schema, the
//! distinct real setups, snapshots, `--only`, and bad input.

mod common;

use common::*;
use exliar::analyze::bootenv::{self, CmdlineSource, Loader, OsFamily};
use exliar::check::{self, Content, Evidence, Listing, Status};
use serde_json::Value;

fn check_json(root: &std::path::Path, extra: &[&str]) -> (Value, i32) {
    let out = exliar()
        .arg("check")
        .args(extra)
        .arg("--json")
        .arg("--root")
        .arg(root)
        .output()
        .expect("run exliar");
    let code = out.status.code().unwrap_or(-1);
    (json(&out), code)
}

fn item<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no check {id} in {doc}"))
}

fn status(doc: &Value, id: &str) -> String {
    item(doc, id)["status"].as_str().unwrap_or("").to_string()
}

fn text(doc: &Value, id: &str) -> String {
    let c = item(doc, id);
    format!("{} | {} | {}", c["summary"], c["remedy"], c["evidence"])
}

/// Every fixture host: human and JSON golden output; the JSON matches the
/// documented schema; the exit code follows `ready`.
#[test]
fn fixture_hosts_golden_and_schema() {
    let schema = schema("check-1.schema.json");
    // The hwNN and drv-* trees hold PCI and driver facts only (no
    // /proc/cmdline, /etc, /boot): every check would skip; they are covered
    // by the schema test below.
    for h in fixture_hosts() {
        let name = h
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("hw") || name.starts_with("drv-") {
            let out = exliar()
                .args(["check", "--json", "--root"])
                .arg(&h)
                .output()
                .expect("run");
            assert_valid(&schema, &json(&out), &format!("{name}: check --json"));
            continue;
        }
        let out = exliar()
            .args(["check", "--json", "--root"])
            .arg(&h)
            .output()
            .expect("run");
        let doc = json(&out);
        assert_valid(&schema, &doc, &format!("{name}: check --json"));
        let ready = doc["ready"].as_bool().expect("ready");
        assert_eq!(
            out.status.code(),
            Some(if ready { 0 } else { 1 }),
            "{name}: exit code vs ready"
        );
        assert_eq!(
            doc["checks"].as_array().map(Vec::len),
            Some(check::CHECKS.len()),
            "{name}"
        );
        insta::assert_snapshot!(format!("check-json-{name}"), redact(&stdout(&out), &h));

        let out = exliar()
            .args(["check", "--root"])
            .arg(&h)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(if ready { 0 } else { 1 }));
        insta::assert_snapshot!(format!("check-{name}"), redact(&stdout(&out), &h));
    }
}

/// The distinct real setups each give their own, true report.
#[test]
fn distinct_setups() {
    // Debian 12 + GRUB + initramfs-tools: VT-d on, intel_iommu=on missing.
    let (d, code) = check_json(&host("debian12-grub-intel"), &[]);
    assert_eq!(code, 1);
    assert_eq!(d["first_blocker"]["id"], "iommu.cmdline");
    assert!(text(&d, "iommu.cmdline").contains("GRUB_CMDLINE_LINUX_DEFAULT"));
    assert!(text(&d, "iommu.cmdline").contains("sudo update-grub"));
    assert_eq!(status(&d, "iommu.firmware"), "ok");
    assert!(text(&d, "boot.initramfs").contains("initramfs-tools"));
    assert!(
        text(&d, "kernel.vfio-modules").contains("vfio_virqfd"),
        "6.1 < 6.2 needs vfio_virqfd"
    );

    // Arch + systemd-boot + mkinitcpio, GRUB left over: the conflict is
    // reported, and since `exliar plan` refuses it without --bootloader,
    // the host is not ready until told which.
    let (a, code) = check_json(&host("arch-systemd-boot"), &[]);
    assert_eq!(code, 1, "{a}");
    assert_eq!(status(&a, "boot.loader"), "fail");
    assert_eq!(a["first_blocker"]["id"], "boot.loader");
    assert!(text(&a, "boot.loader").contains("--bootloader NAME"), "{a}");
    let o = exliar()
        .args(["plan", "--root"])
        .arg(host("arch-systemd-boot"))
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1), "plan refuses too");
    let l = text(&a, "boot.loader");
    assert!(
        l.contains("systemd-boot")
            && l.contains("GRUB configuration is present")
            && l.contains("LoaderInfo"),
        "{l}"
    );
    assert!(l.contains("/boot/loader/entries/arch.conf"), "{l}");
    assert!(text(&a, "boot.initramfs").contains("mkinitcpio -P"));
    assert_eq!(status(&a, "gpu.driver"), "ok");
    assert!(
        !text(&a, "kernel.vfio-modules").contains("vfio_virqfd:"),
        "not needed on 6.10"
    );

    // Fedora + BLS/grubby + dracut on AMD: amd_iommu=on is flagged.
    let (f, _) = check_json(&host("fedora40-bls-amd"), &[]);
    assert_eq!(status(&f, "iommu.cmdline"), "warn");
    let c = text(&f, "iommu.cmdline");
    assert!(
        c.contains("amd_iommu=on") && c.contains("not a valid value"),
        "{c}"
    );
    assert!(
        c.contains("grubby --update-kernel=ALL --remove-args=\\\"amd_iommu=on\\\""),
        "{c}"
    );
    assert!(text(&f, "boot.initramfs").contains("dracut"));
    assert_eq!(
        status(&f, "gpu.reset"),
        "warn",
        "Vega 64 has the AMD reset bug"
    );
    assert!(text(&f, "gpu.reset").contains("vendor-reset"));
    assert!(text(&f, "virt.ovmf").contains("/usr/share/edk2/ovmf/OVMF_CODE.fd"));

    // Pop!_OS: kernelstub.
    let (p, _) = check_json(&host("popos-kernelstub"), &[]);
    assert!(text(&p, "iommu.cmdline").contains("sudo kernelstub -a \\\"intel_iommu=on\\\""));
    assert!(text(&p, "boot.loader").contains("kernelstub"));

    // NixOS: flagged, declarative remedies, stage-1 initrd.
    let (n, _) = check_json(&host("nixos-amd"), &[]);
    assert_eq!(status(&n, "os.immutable"), "warn");
    assert!(text(&n, "boot.initramfs").contains("NixOS"));
    assert!(text(&n, "iommu.passthrough").contains("iommu=pt"));
    assert!(text(&n, "kernel.vfio-modules").contains("run/booted-system"));
    assert_eq!(status(&n, "cpu.vendor"), "ok");
    assert!(text(&n, "cpu.virt").contains("svm"));

    // No IOMMU: the enabling parameter without groups is contradictory.
    let (x, code) = check_json(&host("proxmox-no-iommu"), &[]);
    assert_eq!(code, 1);
    assert_eq!(x["first_blocker"]["id"], "iommu.firmware");
    let act = text(&x, "iommu.active");
    assert!(
        act.contains("contradictory") && act.contains("intel_iommu=on"),
        "{act}"
    );
    assert!(text(&x, "hugepages.config").contains("proxmox-boot-tool refresh"));

    // Secure Boot on, Limine, one GPU held by the EFI framebuffer.
    let (s, _) = check_json(&host("cachyos-limine-secureboot"), &[]);
    assert_eq!(status(&s, "boot.secure-boot"), "warn");
    assert!(text(&s, "boot.secure-boot").contains("Secure Boot is on"));
    assert!(text(&s, "boot.loader").contains("Limine"));
    assert_eq!(status(&s, "gpu.framebuffer"), "warn");
    assert!(text(&s, "gpu.framebuffer").contains("video=efifb:off"));
    assert!(text(&s, "gpu.framebuffer").contains("/etc/default/limine"));
    assert_eq!(
        status(&s, "gpu.target"),
        "fail",
        "a single GPU is not for boot-time passthrough"
    );
}

/// This development machine: no IOMMU, /dev/kvm from kvm_pvm (PVM), no
/// vmx/svm flags. The report must say exactly that.
#[test]
fn devbox_check_is_truthful() {
    let (d, code) = check_json(&host("devbox-check"), &[]);
    assert_eq!(code, 1);
    assert_eq!(d["ready"], false);
    assert_eq!(status(&d, "cpu.virt"), "fail");
    assert!(text(&d, "cpu.virt").contains("hypervisor"));
    assert_eq!(status(&d, "kvm.device"), "warn");
    assert!(text(&d, "kvm.device").contains("kvm_pvm"));
    assert!(
        !text(&d, "kvm.device").contains("usable (read/write)"),
        "not the live host"
    );
    assert_eq!(status(&d, "iommu.firmware"), "fail");
    assert_eq!(status(&d, "iommu.active"), "fail");
    assert!(text(&d, "iommu.cmdline").contains("CONFIG_INTEL_IOMMU is not set"));
    assert_eq!(status(&d, "kernel.vfio-modules"), "fail");
    assert_eq!(status(&d, "boot.firmware"), "info");
    assert_eq!(status(&d, "virt.qemu"), "ok");
    assert_eq!(status(&d, "gpu.target"), "fail");
}

fn without_root(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("root");
    }
    v
}

/// `exliar snapshot` captures everything `check` reads: `check --root
/// <snapshot>` gives the same result, as a folder and as a tar.
#[test]
fn snapshot_round_trips_check() {
    for h in fixture_hosts() {
        let (original, _) = check_json(&h, &[]);
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("snap");
        exliar()
            .args(["snapshot", "--root"])
            .arg(&h)
            .arg(&dir)
            .assert()
            .success();
        let (again, _) = check_json(&dir, &[]);
        assert_eq!(
            without_root(original.clone()),
            without_root(again),
            "folder snapshot of {}",
            h.display()
        );

        let tar = tmp.path().join("snap.tar");
        exliar()
            .args(["snapshot", "--root"])
            .arg(&h)
            .arg(&tar)
            .assert()
            .success();
        let unpacked = tmp.path().join("unpacked");
        std::fs::create_dir(&unpacked).expect("mkdir");
        tar::Archive::new(std::fs::File::open(&tar).expect("open"))
            .unpack(&unpacked)
            .expect("unpack");
        let (again, _) = check_json(&unpacked, &[]);
        assert_eq!(
            without_root(original),
            without_root(again),
            "tar snapshot of {}",
            h.display()
        );
    }
}

/// A snapshot keeps only the used lines of large files.
#[test]
fn snapshot_trims_large_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = tmp.path().join("host");
    std::fs::create_dir_all(r.join("proc/sys/kernel")).expect("mkdir");
    std::fs::create_dir_all(r.join("lib/modules/6.9.0")).expect("mkdir");
    std::fs::create_dir_all(r.join("boot")).expect("mkdir");
    std::fs::create_dir_all(r.join("sys/bus/pci/devices")).expect("mkdir");
    std::fs::write(r.join("proc/sys/kernel/osrelease"), "6.9.0\n").expect("w");
    let mut cfg = String::from("CONFIG_VFIO=m\n# CONFIG_INTEL_IOMMU_DEFAULT_ON is not set\n");
    let mut dep = String::from("kernel/drivers/vfio/vfio.ko.zst:\n");
    for i in 0..2000 {
        cfg.push_str(&format!("CONFIG_UNRELATED_{i}=y\n"));
        dep.push_str(&format!("kernel/drivers/misc/thing{i}.ko.zst:\n"));
    }
    std::fs::write(r.join("boot/config-6.9.0"), &cfg).expect("w");
    std::fs::write(r.join("lib/modules/6.9.0/modules.dep"), &dep).expect("w");
    let snap = tmp.path().join("snap");
    exliar()
        .args(["snapshot", "--root"])
        .arg(&r)
        .arg(&snap)
        .assert()
        .success();
    let c = std::fs::read_to_string(snap.join("boot/config-6.9.0")).expect("config kept");
    assert_eq!(
        c,
        "CONFIG_VFIO=m\n# CONFIG_INTEL_IOMMU_DEFAULT_ON is not set\n"
    );
    let d = std::fs::read_to_string(snap.join("lib/modules/6.9.0/modules.dep")).expect("dep kept");
    assert_eq!(d, "kernel/drivers/vfio/vfio.ko.zst:\n");
}

#[test]
fn only_selects_ids_and_prefixes() {
    let (d, _) = check_json(
        &host("arch-systemd-boot"),
        &["--only", "iommu", "boot.loader"],
    );
    let ids: Vec<&str> = d["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "iommu.firmware",
            "iommu.cmdline",
            "iommu.active",
            "iommu.passthrough",
            "iommu.irq-remap",
            "boot.loader"
        ]
    );
    assert_eq!(d["only"].as_array().map(Vec::len), Some(6));
    // Comma-separated works too; readiness is about the checks that ran.
    let (d, code) = check_json(
        &host("debian12-grub-intel"),
        &["--only", "cpu.virt,virt.qemu"],
    );
    assert_eq!((d["ready"].as_bool(), code), (Some(true), 0));
    // An unknown id is an error (exit 2) naming the known ids.
    let out = exliar()
        .args(["check", "--only", "nope", "--root"])
        .arg(host("arch-systemd-boot"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("iommu.cmdline"));
    // A root that is not a folder: exit 2.
    exliar()
        .args(["check", "--root", "/nonexistent/exliar"])
        .assert()
        .code(2);
}

/// Unreadable files give `skip` with the reason (never a crash); an empty
/// root still gives a report.
#[test]
fn unreadable_input_is_skipped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = tmp.path();
    // A folder where a file belongs (EISDIR) and a link loop (ELOOP): the
    // read errors a non-root user meets as EACCES.
    std::fs::create_dir_all(r.join("proc/cpuinfo")).expect("mkdir");
    std::fs::create_dir_all(r.join("proc/sys/kernel")).expect("mkdir");
    std::os::unix::fs::symlink("cmdline", r.join("proc/cmdline")).expect("link");
    std::fs::write(r.join("proc/sys/kernel/osrelease"), b"\xff\xfe garbage").expect("w");
    std::fs::create_dir_all(r.join("etc/default/grub")).expect("mkdir");
    let (d, code) = check_json(r, &[]);
    assert_eq!(code, 1, "no GPU, no IOMMU: not ready");
    for id in ["cpu.vendor", "cpu.virt", "iommu.cmdline", "hugepages.1g"] {
        assert_eq!(status(&d, id), "skip", "{id}: {}", text(&d, id));
        assert!(
            text(&d, id).contains("could not be read"),
            "{id}: {}",
            text(&d, id)
        );
    }
    assert!(text(&d, "cpu.virt").contains("proc/cpuinfo"));
    assert_eq!(status(&d, "gpu.target"), "skip");
    assert!(text(&d, "gpu.target").contains("no PCI inventory"));
    assert!(
        text(&d, "boot.loader").contains("/etc/default/grub"),
        "{}",
        text(&d, "boot.loader")
    );
    // The human report too.
    exliar().args(["check", "--root"]).arg(r).assert().code(1);
}

/// Permission denied (what a normal user meets on /boot/efi) as evidence:
/// pure checks give `skip` with the error.
#[test]
fn permission_denied_evidence_is_a_skip() {
    let mut ev = Evidence {
        root: "/x".into(),
        ..Evidence::default()
    };
    let denied = "/x/proc/cpuinfo: Permission denied (os error 13)".to_string();
    ev.files
        .insert("proc/cpuinfo".into(), Content::Unreadable(denied.clone()));
    ev.files.insert(
        "proc/cmdline".into(),
        Content::Unreadable("/x/proc/cmdline: Permission denied (os error 13)".into()),
    );
    ev.dirs.insert(
        "sys/firmware/acpi/tables".into(),
        Listing::Unreadable("/x/sys/firmware/acpi/tables: Permission denied (os error 13)".into()),
    );
    let checks = check::run_checks(&ev, None, &[]);
    for id in ["cpu.vendor", "cpu.virt", "iommu.firmware", "iommu.cmdline"] {
        let c = checks.iter().find(|c| c.id == id).expect("check");
        assert_eq!(c.status, Status::Skip, "{id}");
        assert!(
            c.summary.contains("Permission denied"),
            "{id}: {}",
            c.summary
        );
    }
}

// ----- the real configuration files, read in place -------------------------

fn real(name: &str) -> Option<String> {
    let p = shared_fixtures()?.join("configs").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    // Line 1 is the collection's `# source:` header.
    Some(
        text.split_once('\n')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default(),
    )
}

fn efi_evidence() -> Evidence {
    let mut ev = Evidence::default();
    ev.present.insert(bootenv::EFI_DIR.into(), true);
    ev
}

fn loader_info(ev: &mut Evidence, value: &str) {
    let mut v = vec![6, 0, 0, 0];
    for u in value.encode_utf16().chain([0]) {
        v.extend(u.to_le_bytes());
    }
    ev.files.insert(
        bootenv::efivar_path("LoaderInfo", bootenv::LOADER_GUID),
        Content::Data(v),
    );
}

fn put(ev: &mut Evidence, rel: &str, text: &str) {
    ev.files
        .insert(rel.into(), Content::Data(text.as_bytes().to_vec()));
}

#[test]
fn real_systemd_boot_entries() {
    for name in [
        "systemd-boot-entry-arch-vfio.conf.user-akissu",
        "systemd-boot-entry-arch.conf.user-breakingspell",
        "systemd-boot-entry-cachyos.conf.user-ozzyhelix",
        "bls-type1-entry.spec-example.conf",
    ] {
        let Some(entry) = real(name) else { return };
        let mut ev = efi_evidence();
        loader_info(&mut ev, "systemd-boot 256.7-1-arch");
        ev.dirs.insert(
            "boot/loader/entries".into(),
            Listing::Entries(vec!["e.conf".into()]),
        );
        put(&mut ev, "boot/loader/entries/e.conf", &entry);
        let env = bootenv::detect(&ev, &OsFamily::default());
        assert_eq!(env.loader, Some(Loader::SystemdBoot), "{name}");
        let want = check::parse::bls_values(&entry, "options").join(" ");
        assert!(!want.is_empty(), "{name}: an options line");
        assert_eq!(
            env.configured_cmdline.map(|f| f.value),
            Some(want),
            "{name}"
        );
        assert_eq!(
            env.cmdline_source,
            Some(CmdlineSource::BlsEntry {
                file: "/boot/loader/entries/e.conf".into()
            })
        );
    }
}

#[test]
fn real_grub_defaults() {
    for (name, os, expect) in [
        ("debian-default-grub", "debian", "quiet"),
        ("garuda-default-grub.user-vfio", "garuda", "amd_iommu=on"),
        ("arch-default-grub.user-vfio-acs", "arch", ""),
        (
            "proxmox-default-grub.user-vfio",
            "debian",
            "amd_iommu=on video=efifb:off",
        ),
        (
            "fedora30-default-grub.user-vfio",
            "fedora",
            "rd.driver.pre=vfio-pci",
        ),
    ] {
        let Some(grub) = real(name) else { return };
        let mut ev = efi_evidence();
        put(&mut ev, "etc/default/grub", &grub);
        ev.present.insert("boot/grub/grub.cfg".into(), true);
        let env = bootenv::detect(
            &ev,
            &OsFamily {
                id: Some(os.into()),
                id_like: vec![],
            },
        );
        assert_eq!(env.loader, Some(Loader::Grub), "{name}");
        let cmd = env.configured_cmdline.map(|f| f.value).unwrap_or_default();
        assert!(cmd.contains(expect), "{name}: {cmd:?}");
        match env.cmdline_source {
            Some(CmdlineSource::GrubDefault { regenerate, .. }) => {
                assert_eq!(
                    regenerate.contains("update-grub"),
                    os == "debian",
                    "{name}: {regenerate}"
                );
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn real_kernelstub_limine_refind_and_cmdline_files() {
    let Some(ks) = real("popos-kernelstub-configuration.user") else {
        return;
    };
    let mut ev = efi_evidence();
    loader_info(&mut ev, "systemd-boot 251.4");
    put(&mut ev, "etc/kernelstub/configuration", &ks);
    let env = bootenv::detect(&ev, &OsFamily::default());
    assert_eq!(env.cmdline_source, Some(CmdlineSource::Kernelstub));
    assert!(
        env.configured_cmdline
            .map(|f| f.value)
            .unwrap_or_default()
            .contains("systemd.show_status=true")
    );
    // The upstream SAMPLE is not valid JSON: no options, no crash.
    if let Some(sample) = real("popos-kernelstub.SAMPLE.upstream") {
        put(&mut ev, "etc/kernelstub/configuration", &sample);
        let env = bootenv::detect(&ev, &OsFamily::default());
        assert_eq!(env.cmdline_source, Some(CmdlineSource::Kernelstub));
        assert_eq!(env.configured_cmdline, None);
    }

    for name in ["limine.conf.user-void", "limine.conf.upstream-test"] {
        let Some(lim) = real(name) else { return };
        let mut ev = efi_evidence();
        put(&mut ev, "boot/limine.conf", &lim);
        let env = bootenv::detect(&ev, &OsFamily::default());
        assert_eq!(env.loader, Some(Loader::Limine), "{name}");
        assert_eq!(
            env.cmdline_source,
            Some(CmdlineSource::LimineConf {
                file: "/boot/limine.conf".into()
            })
        );
    }
    if let Some(d) = real("cachyos-default-limine.user") {
        let mut ev = efi_evidence();
        put(&mut ev, "etc/default/limine", &d);
        let env = bootenv::detect(&ev, &OsFamily::default());
        assert_eq!(env.cmdline_source, Some(CmdlineSource::LimineDefault));
        assert!(
            env.configured_cmdline
                .map(|f| f.value)
                .unwrap_or_default()
                .contains("nvidia-drm.modeset=1")
        );
    }
    for name in [
        "refind_linux.conf.docs-sample",
        "refind_linux.conf.user-msebastien",
    ] {
        let Some(r) = real(name) else { return };
        let mut ev = efi_evidence();
        put(&mut ev, "boot/refind_linux.conf", &r);
        let env = bootenv::detect(&ev, &OsFamily::default());
        assert_eq!(env.loader, Some(Loader::Refind), "{name}");
        assert!(
            env.configured_cmdline.is_some(),
            "{name}: the default line's options"
        );
    }
    if let Some(c) = real("kernel-cmdline.user-proxmox") {
        let mut ev = efi_evidence();
        loader_info(&mut ev, "systemd-boot 252.31");
        put(&mut ev, "etc/kernel/cmdline", &c);
        ev.present.insert("usr/sbin/proxmox-boot-tool".into(), true);
        ev.present
            .insert("etc/kernel/proxmox-boot-uuids".into(), true);
        let env = bootenv::detect(&ev, &OsFamily::default());
        assert_eq!(env.cmdline_source, Some(CmdlineSource::ProxmoxBootTool));
        assert!(
            env.configured_cmdline
                .map(|f| f.value)
                .unwrap_or_default()
                .contains("intel_iommu=on")
        );
    }
}

#[test]
fn real_initramfs_configs() {
    let cases: [(&str, &str, &str, bootenv::Initramfs); 4] = [
        (
            "arch-mkinitcpio.conf.user-vfio-akissu",
            "etc/mkinitcpio.conf",
            "usr/bin/mkinitcpio",
            bootenv::Initramfs::Mkinitcpio,
        ),
        (
            "fedora-dracut.conf.d-01-dist.conf",
            "usr/lib/dracut/dracut.conf.d/01-dist.conf",
            "usr/bin/dracut",
            bootenv::Initramfs::Dracut,
        ),
        (
            "debian-initramfs.conf",
            "etc/initramfs-tools/initramfs.conf",
            "usr/sbin/mkinitramfs",
            bootenv::Initramfs::InitramfsTools,
        ),
        (
            "booster.yaml.manpage-sample",
            "etc/booster.yaml",
            "usr/bin/booster",
            bootenv::Initramfs::Booster,
        ),
    ];
    for (name, at, bin, want) in cases {
        let Some(t) = real(name) else { return };
        let mut ev = Evidence::default();
        put(&mut ev, at, &t);
        ev.present.insert(at.into(), true);
        ev.present.insert(bin.into(), true);
        let env = bootenv::detect(&ev, &OsFamily::default());
        assert_eq!(env.initramfs, Some(want), "{name}");
        assert!(env.initramfs_conflicts.is_empty(), "{name}");
    }
}

/// docs/checks.md documents every check id.
#[test]
fn docs_list_every_check() {
    let doc =
        std::fs::read_to_string(manifest_dir().join("docs/checks.md")).expect("docs/checks.md");
    for (id, _) in check::CHECKS {
        assert!(
            doc.contains(&format!("| `{id}` |")),
            "docs/checks.md lacks {id}"
        );
    }
}

/// A parameter on the running command line that the boot loader's
/// configuration lacks is lost at the next boot: a warning with the remedy.
#[test]
fn running_but_not_configured_parameter_warns() {
    let mut ev = Evidence::default();
    put(
        &mut ev,
        "proc/cpuinfo",
        "vendor_id\t: GenuineIntel\nflags\t\t: vmx\n",
    );
    put(
        &mut ev,
        "proc/cmdline",
        "BOOT_IMAGE=/vmlinuz ro quiet intel_iommu=on\n",
    );
    put(&mut ev, "etc/os-release", "ID=debian\n");
    put(
        &mut ev,
        "etc/default/grub",
        "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n",
    );
    ev.present.insert("boot/grub/grub.cfg".into(), true);
    let checks = check::run_checks(&ev, None, &["iommu.cmdline"]);
    assert_eq!(checks.len(), 1);
    let c = &checks[0];
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(
        c.summary.contains("will be gone after the next boot"),
        "{}",
        c.summary
    );
    assert!(
        c.remedy
            .as_deref()
            .unwrap_or("")
            .contains("sudo update-grub")
    );
    // Configured too: ok.
    put(
        &mut ev,
        "etc/default/grub",
        "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet intel_iommu=on\"\n",
    );
    let checks = check::run_checks(&ev, None, &["iommu.cmdline"]);
    assert_eq!(checks[0].status, Status::Ok, "{:?}", checks[0]);
    // Old Fedora BLS entries say `$kernelopts`: not judged.
    put(&mut ev, "etc/default/grub", "GRUB_ENABLE_BLSCFG=true\n");
    ev.dirs.insert(
        "boot/loader/entries".into(),
        Listing::Entries(vec!["a.conf".into()]),
    );
    put(
        &mut ev,
        "boot/loader/entries/a.conf",
        "options $kernelopts\n",
    );
    let checks = check::run_checks(&ev, None, &["iommu.cmdline"]);
    assert_eq!(checks[0].status, Status::Ok, "{:?}", checks[0]);
}

/// A manual vfio-pci configuration (danrichardson's real modprobe.d line
/// shape) that names only the guest card's VGA function, or the host's card
/// too: `gpu.vfio-ids` says so, with the file and a remedy.
#[test]
fn manual_vfio_ids_incomplete_or_taking_the_host_card() {
    let (_t, dir) = common::fixture_copy(common::HW_SPLIT, "host");
    let conf = dir.join("etc/modprobe.d/vfio.conf");
    std::fs::create_dir_all(conf.parent().expect("parent")).expect("mkdir");
    let run = |text: &str| -> serde_json::Value {
        std::fs::write(&conf, text).expect("write");
        let out = common::exliar()
            .args(["check", "--json", "--only", "gpu.vfio-ids", "--root"])
            .arg(&dir)
            .output()
            .expect("check");
        common::json(&out)
    };
    // The VGA function only: the HDMI audio stays with snd_hda_intel.
    let doc = run("options vfio-pci ids=10de:1b80\noptions vfio-pci disable_vga=1\n");
    let c = &doc["checks"][0];
    assert_eq!(c["status"], "warn", "{doc}");
    assert!(
        c["summary"].to_string().contains("leaves 0000:0b:00.1"),
        "{doc}"
    );
    assert!(c["remedy"].to_string().contains("10de:10f0"), "{doc}");
    assert!(
        c["evidence"].to_string().contains("line 1: ids=10de:1b80"),
        "{doc}"
    );
    assert!(
        c["evidence"]
            .to_string()
            .contains("/etc/modprobe.d/vfio.conf"),
        "{doc}"
    );
    // The host's RX 580 too (danrichardson's list holds both cards).
    let doc = run("options vfio-pci ids=1002:67df,1002:aaf0,10de:1b80,10de:10f0\n");
    let c = &doc["checks"][0];
    assert_eq!(c["status"], "fail", "{doc}");
    assert!(c["summary"].to_string().contains("another GPU"), "{doc}");
    // A later kernel command line would win; here the complete list is fine.
    let doc = run("options vfio-pci ids=10de:1b80,10de:10f0\n");
    assert_eq!(doc["checks"][0]["status"], "ok", "{doc}");
}
