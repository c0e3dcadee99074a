//! `exliar plan`/`apply`/`rollback`/`recover` on fixture trees: hardware from
//! a real machine's tree, configuration from a distribution's tree.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// apply → plan is empty → rollback restores every byte.
#[test]
fn apply_is_idempotent_and_rollback_restores_bytes() {
    for (hw, distro, extra) in [
        (HW_IDENTICAL, "debian12-grub-intel", &[][..]),
        // GRUB leftovers beside systemd-boot: a conflict, settled here.
        (
            HW_SPLIT,
            "arch-systemd-boot",
            &["--bootloader", "systemd-boot"][..],
        ),
        (HW_SPLIT, "fedora40-bls-amd", &[][..]),
        (HW_IDENTICAL, "popos-kernelstub", &[][..]),
    ] {
        let (_t, dir) = target(distro);
        let original = files(&dir);
        let out = on_target(&["plan", "--json"], hw, &dir)
            .args(extra)
            .output()
            .expect("plan");
        assert_success(&out, &format!("{hw} on {distro}: plan failed"));
        let plan = json(&out);
        assert!(
            !plan["steps"].as_array().expect("steps").is_empty(),
            "{hw} on {distro}: empty plan"
        );
        assert_eq!(files(&dir), original, "{distro}: plan wrote something");
        let out = on_target(&["apply", "--yes", "--no-run"], hw, &dir)
            .args(extra)
            .output()
            .expect("apply");
        assert_success(&out, &format!("{hw} on {distro}: apply failed"));
        assert_ne!(files(&dir), original);
        let again = json(
            &on_target(&["plan", "--json"], hw, &dir)
                .args(extra)
                .output()
                .expect("plan"),
        );
        let file_steps = file_steps(&again);
        assert!(
            file_steps.is_empty(),
            "{hw} on {distro}: second plan not empty: {file_steps:?}"
        );
        txn_cmd(&["rollback", "--no-run"], &dir).assert().success();
        assert_eq!(
            files(&dir),
            original,
            "{hw} on {distro}: rollback did not restore every byte"
        );
    }
}

/// Kill apply at every step boundary; `recover` returns byte-identical
/// originals every time. Reports the number of kill points.
#[test]
fn recover_after_a_crash_at_every_step_boundary() {
    let mut kill_points = 0;
    for k in 1..100 {
        let (_t, dir) = target("debian12-grub-intel");
        let original = files(&dir);
        let out = apply_crashing_at(HW_IDENTICAL, &dir, k);
        if out.status.success() {
            break;
        }
        assert!(
            stderr(&out).contains(&format!("test crash at step boundary {k}")),
            "boundary {k}: apply failed otherwise: {}",
            stderr(&out)
        );
        kill_points += 1;
        // A new apply refuses until recovered.
        let again = on_target(&["apply", "--yes", "--no-run"], HW_IDENTICAL, &dir)
            .output()
            .expect("apply");
        assert!(
            !again.status.success(),
            "boundary {k}: apply went on over an interrupted transaction"
        );
        assert!(stderr(&again).contains("exliar recover"));
        txn_cmd(&["recover", "--no-run"], &dir).assert().success();
        assert_eq!(
            files(&dir),
            original,
            "boundary {k}: recover did not restore every byte"
        );
    }
    eprintln!("apply: {kill_points} kill points, each recovered byte for byte");
    assert!(kill_points >= 8, "only {kill_points} kill points");
}

/// A managed file changed by someone else: rollback refuses with a diff,
/// --force restores anyway.
#[test]
fn rollback_refuses_foreign_changes() {
    let (_t, dir) = target("debian12-grub-intel");
    on_target(&["apply", "--yes", "--no-run"], HW_IDENTICAL, &dir)
        .assert()
        .success();
    let f = dir.join("etc/initramfs-tools/modules");
    let mut text = std::fs::read_to_string(&f).expect("read");
    text.push_str("nvme\n");
    std::fs::write(&f, text).expect("write");
    let out = txn_cmd(&["rollback", "--no-run"], &dir)
        .output()
        .expect("rollback");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("+nvme"), "{err}");
    txn_cmd(&["rollback", "--no-run", "--force"], &dir)
        .assert()
        .success();
}

/// Refusals: a GPU in a group with other devices, and NixOS.
#[test]
fn refusals_are_explained() {
    let (_t, dir) = target("debian12-grub-intel");
    let out = on_target(
        &["plan", "--gpu", "0000:01:00.0"],
        "hw21-laptop-kabylake-u-mx150-optimus-dirty-group",
        &dir,
    )
    .output()
    .expect("plan");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not isolated"));
    let (_n, nix) = target("nixos-amd");
    let out = on_target(&["plan"], HW_SPLIT, &nix).output().expect("plan");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--format nix"));
    let out = exliar()
        .args(["plan", "--format", "nix", "--root"])
        .arg(host(HW_SPLIT))
        .output()
        .expect("nix");
    assert!(out.status.success());
    let module = stdout(&out);
    assert!(
        module.contains("boot.kernelParams") || module.contains("kernelParams"),
        "{module}"
    );
    assert!(module.contains("vfio-pci"), "{module}");
}

/// `plan --format nix` goes through the same card choice, refusals and
/// binding as every plan: the only GPU is refused (`--force` goes on, with a
/// warning), identical cards are bound by address with no `ids=` line.
#[test]
fn nixos_module_shares_refusals_and_binding() {
    let nix = |hw: &str, extra: &[&str]| {
        exliar()
            .args(["plan", "--format", "nix", "--root"])
            .arg(host(hw))
            .args(extra)
            .output()
            .expect("nix")
    };
    let only = "hw09-ryzen-x570-rtx3060";
    let out = nix(only, &["--gpu", "0000:2d:00.0"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("boot display") && err.contains("--force"),
        "{err}"
    );
    let out = nix(only, &["--gpu", "0000:2d:00.0", "--force"]);
    assert_success(&out, "plan --format nix");
    assert!(
        stdout(&out).contains("options vfio-pci ids=10de:2487,10de:228b"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("warning: --force:"),
        "{}",
        stderr(&out)
    );

    let out = nix("hw23-ryzen1-x370-dual-identical-rx580", &[]);
    assert_success(&out, "plan --format nix");
    let module = stdout(&out);
    assert!(!module.contains("ids="), "{module}");
    assert!(
        module.contains("KERNEL==\"0000:27:00.0\", ATTR{driver_override}=\"vfio-pci\""),
        "{module}"
    );
    assert!(module.contains("softdep amdgpu pre: vfio-pci"), "{module}");
}

/// The NixOS module takes softdeps from the NixOS kernel's `modules.alias`
/// (under `/run/booted-system/kernel-modules`), like any plan.
#[test]
fn nixos_module_reads_the_nixos_kernels_aliases() {
    let (_t, dir) = target("nixos-amd");
    let alias = dir.join("run/booted-system/kernel-modules/lib/modules/6.6.30/modules.alias");
    std::fs::write(
        &alias,
        "# Aliases extracted from modules themselves.\n\
         alias pci:v000010DEd00001B80sv*sd*bc03sc*i* exliar_test_gpu\n\
         alias pci:v00001002d*sv*sd*bc03sc*i* exliar_test_other_vendor\n",
    )
    .expect("write modules.alias");
    let out = on_target(&["plan", "--format", "nix"], HW_SPLIT, &dir)
        .output()
        .expect("nix");
    assert_success(&out, "plan --format nix --target");
    let module = stdout(&out);
    assert!(
        module.contains("softdep exliar_test_gpu pre: vfio-pci"),
        "{module}"
    );
    assert!(!module.contains("exliar_test_other_vendor"), "{module}");
}

/// The Arch tree without `iommu=pt` anywhere, so that `--iommu-pt` needs
/// the kernel command line (the tree has GRUB leftovers beside
/// systemd-boot, which LoaderInfo says booted: a conflict).
fn arch_without_iommu_pt() -> (tempfile::TempDir, PathBuf) {
    let (t, dir) = target("arch-systemd-boot");
    for f in ["boot/loader/entries/arch.conf", "etc/default/grub"] {
        let p = dir.join(f);
        let text = std::fs::read_to_string(&p).expect("read");
        std::fs::write(&p, text.replace(" iommu=pt", "")).expect("write");
    }
    (t, dir)
}

fn plan_on(dir: &Path, extra: &[&str]) -> std::process::Output {
    on_target(&["plan", "--json", "--iommu-pt"], HW_SPLIT, dir)
        .args(extra)
        .output()
        .expect("plan")
}

fn written_paths(plan: &serde_json::Value) -> Vec<String> {
    file_steps(plan)
        .iter()
        .map(|s| s["path"].as_str().expect("path").to_string())
        .collect()
}

/// Conflicting boot-loader evidence: plan and apply refuse, name the
/// evidence and the accepted names; `--bootloader` settles it.
#[test]
fn conflicting_boot_loaders_need_bootloader() {
    let plan_schema = schema("plan-1.schema.json");
    let apply_schema = schema("apply-1.schema.json");
    let (_t, dir) = arch_without_iommu_pt();
    let original = files(&dir);

    let out = plan_on(&dir, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc = json(&out);
    assert_valid(&plan_schema, &doc, "plan refusal");
    assert_eq!(doc["reason"], "bootloader-conflict");
    assert_eq!(doc["no_gpu"], false);
    let evidence = doc["bootloader_evidence"].to_string();
    assert!(evidence.contains("/boot/grub/grub.cfg"), "{evidence}");
    assert!(evidence.contains("LoaderInfo"), "{evidence}");
    let err = stderr(&out);
    assert!(err.contains("--bootloader NAME"), "{err}");
    for name in [
        "grub",
        "systemd-boot",
        "kernel-cmdline",
        "limine-default",
        "proxmox",
    ] {
        assert!(err.contains(name), "{name} not in: {err}");
    }

    let out = exliar()
        .args([
            "apply",
            "--yes",
            "--no-run",
            "--json",
            "--iommu-pt",
            "--root",
        ])
        .arg(host(HW_SPLIT))
        .arg("--target")
        .arg(&dir)
        .output()
        .expect("apply");
    assert_eq!(out.status.code(), Some(1));
    let doc = json(&out);
    assert_valid(&apply_schema, &doc, "apply refusal");
    assert_eq!(doc["applied"], false);
    assert_eq!(doc["reason"], "bootloader-conflict");
    assert_eq!(files(&dir), original, "a refused apply wrote something");

    // systemd-boot: loader.conf's `default arch` names arch.conf.
    let out = plan_on(&dir, &["--bootloader", "systemd-boot"]);
    assert_success(&out, "plan --bootloader systemd-boot");
    let doc = json(&out);
    assert_valid(&plan_schema, &doc, "plan --bootloader systemd-boot");
    let paths = written_paths(&doc);
    assert!(
        paths.contains(&"boot/loader/entries/arch.conf".to_string()),
        "{paths:?}"
    );
    assert!(
        !paths.contains(&"etc/default/grub".to_string()),
        "{paths:?}"
    );
    let diffs = doc["diffs"].to_string();
    assert!(diffs.contains("iommu=pt"), "{diffs}");

    // GRUB, if that is what the user says.
    let doc = json(&plan_on(&dir, &["--bootloader", "grub"]));
    let paths = written_paths(&doc);
    assert!(paths.contains(&"etc/default/grub".to_string()), "{paths:?}");
    assert!(
        !paths.contains(&"boot/loader/entries/arch.conf".to_string()),
        "{paths:?}"
    );

    // A loader whose file the target lacks: refused, clearly.
    for (name, file) in [
        ("refind", "/boot/refind_linux.conf"),
        ("kernel-cmdline", "/etc/kernel/cmdline"),
        ("limine-default", "/etc/default/limine"),
    ] {
        let out = plan_on(&dir, &["--bootloader", name]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = stderr(&out);
        assert!(
            err.contains(file) && err.contains("absent"),
            "{name}: {err}"
        );
        assert_valid(&plan_schema, &json(&out), name);
    }

    // An unknown name: a usage error that lists the accepted ones.
    let out = plan_on(&dir, &["--bootloader", "lilo"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("limine-default"));

    // Apply with the choice, validated against the schema.
    let out = exliar()
        .args(["apply", "--yes", "--no-run", "--json", "--iommu-pt"])
        .args(["--bootloader", "systemd-boot", "--root"])
        .arg(host(HW_SPLIT))
        .arg("--target")
        .arg(&dir)
        .output()
        .expect("apply");
    assert_success(&out, "apply --bootloader systemd-boot");
    let doc = json(&out);
    assert_valid(&apply_schema, &doc, "apply --bootloader systemd-boot");
    assert_eq!(doc["applied"], true);
    assert_eq!(doc["journal"]["status"], "applied");
    let entry = std::fs::read_to_string(dir.join("boot/loader/entries/arch.conf")).expect("entry");
    assert!(entry.contains("iommu=pt"), "{entry}");

    // Applying again: nothing to change, also a valid document.
    let out = exliar()
        .args(["apply", "--yes", "--no-run", "--json", "--iommu-pt"])
        .args(["--bootloader", "systemd-boot", "--root"])
        .arg(host(HW_SPLIT))
        .arg("--target")
        .arg(&dir)
        .output()
        .expect("apply");
    let doc = json(&out);
    assert_valid(&apply_schema, &doc, "apply again");
    assert_eq!(doc["reason"], "nothing-to-change");
}

/// systemd-boot's entry choice: loader.conf's default (a glob), else the
/// only entry that is not a fallback one, else a refusal naming them.
#[test]
fn systemd_boot_default_entry() {
    let (_t, dir) = arch_without_iommu_pt();
    let entries = dir.join("boot/loader/entries");
    let arch = std::fs::read_to_string(entries.join("arch.conf")).expect("entry");
    std::fs::write(entries.join("arch-fallback.conf"), &arch).expect("write");
    std::fs::write(entries.join("other.conf"), &arch).expect("write");
    let conf = dir.join("boot/loader/loader.conf");
    let loader = std::fs::read_to_string(&conf).expect("loader.conf");

    std::fs::write(&conf, loader.replace("default\tarch", "default other*")).expect("write");
    let paths = written_paths(&json(&plan_on(&dir, &["--bootloader", "systemd-boot"])));
    assert!(
        paths.contains(&"boot/loader/entries/other.conf".to_string()),
        "{paths:?}"
    );

    // No default: two regular entries are ambiguous.
    std::fs::write(&conf, loader.replace("default\tarch", "")).expect("write");
    let out = plan_on(&dir, &["--bootloader", "systemd-boot"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("several entries") && err.contains("other.conf"),
        "{err}"
    );

    // One regular entry beside a fallback one: that one.
    std::fs::remove_file(entries.join("other.conf")).expect("rm");
    let paths = written_paths(&json(&plan_on(&dir, &["--bootloader", "systemd-boot"])));
    assert!(
        paths.contains(&"boot/loader/entries/arch.conf".to_string()),
        "{paths:?}"
    );
    assert!(!paths.iter().any(|p| p.contains("fallback")), "{paths:?}");
}

/// The plan documents of every distribution tree match the schema; the
/// definitions apply-1 copies from plan-1 are equal to plan-1's.
#[test]
fn plan_json_matches_schema() {
    let plan_schema = schema("plan-1.schema.json");
    for (hw, distro) in [
        (HW_IDENTICAL, "debian12-grub-intel"),
        (HW_SPLIT, "fedora40-bls-amd"),
        (HW_IDENTICAL, "popos-kernelstub"),
        (HW_SPLIT, "cachyos-limine-secureboot"),
    ] {
        let out = exliar()
            .args(["plan", "--json", "--root"])
            .arg(host(hw))
            .arg("--target")
            .arg(host(distro))
            .output()
            .expect("plan");
        assert_valid(&plan_schema, &json(&out), &format!("{hw} on {distro}"));
    }
    let read = |n: &str| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(manifest_dir().join("docs/schema").join(n)).expect("read"),
        )
        .expect("json")
    };
    let (plan, apply) = (read("plan-1.schema.json"), read("apply-1.schema.json"));
    for def in ["address", "argv", "step", "plan", "refusal"] {
        assert_eq!(
            plan["$defs"][def], apply["$defs"][def],
            "apply-1.schema.json's copy of {def} differs from plan-1's"
        );
    }
}

/// The boot display may be chosen when another GPU can run the host; only a
/// single-GPU host's boot display needs --force.
#[test]
fn boot_display_refused_only_without_another_gpu() {
    let (_t, dir) = target("debian12-grub-intel");
    // hw23: two RX 580; 0000:26:00.0 is the boot display, 27:00.0 can run the host.
    let out = on_target(&["plan", "--gpu", "0000:26:00.0"], HW_IDENTICAL, &dir)
        .output()
        .expect("plan");
    assert_success(&out, "plan");
    // hw09: one RTX 3060, the boot display.
    let out = on_target(
        &["plan", "--gpu", "0000:2d:00.0"],
        "hw09-ryzen-x570-rtx3060",
        &dir,
    )
    .output()
    .expect("plan");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("boot display") && err.contains("--force"),
        "{err}"
    );
}
