//! The command line each boot entry will really pass (issue #11 §2): the
//! plan is decided from the entries the boot loader reads, and a needed
//! parameter exliar cannot place is said loudly (plan and apply, human and
//! JSON).

mod common;

use common::*;

const FEDORA_ENTRY: &str =
    "boot/loader/entries/6a9857a393724b7a981ebb5b8495b9ea-6.8.5-301.fc40.x86_64.conf";

/// The grubby steps of a plan document.
fn grubby_steps(plan: &serde_json::Value) -> Vec<serde_json::Value> {
    plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["kind"] == "run" && s["argv"][0] == "grubby")
        .cloned()
        .collect()
}

/// grubby already ran (the entry has `iommu=pt`), the host has not rebooted
/// (/proc/cmdline lacks it): the second plan has nothing for grubby, and no
/// undo that would strip the user's parameter.
#[test]
fn grubby_decides_from_the_bls_entries_not_proc_cmdline() {
    let (_t, dir) = target("fedora40-bls-amd");
    let first = plan_json(HW_SPLIT, &dir, &["--iommu-pt"]);
    let g = grubby_steps(&first);
    assert_eq!(g.len(), 1, "{first:#}");
    assert_eq!(g[0]["argv"][2], "--args=iommu=pt");
    assert_eq!(g[0]["undo"][2], "--remove-args=iommu=pt");
    // What grubby --args=iommu=pt does to the entry.
    edit(&dir, FEDORA_ENTRY, |t| {
        t.replace(
            "rd.driver.pre=vfio-pci\n",
            "rd.driver.pre=vfio-pci iommu=pt\n",
        )
    });
    let second = plan_json(HW_SPLIT, &dir, &["--iommu-pt"]);
    assert!(grubby_steps(&second).is_empty(), "{second:#}");

    // The user removed `rd.driver.pre=vfio-pci` from the entries (grubby
    // --remove-args) and has not rebooted: the running kernel still has it,
    // the next boot would not.
    let (_t, dir) = target("fedora40-bls-amd");
    edit(&dir, FEDORA_ENTRY, |t| {
        t.replace(" rd.driver.pre=vfio-pci", "")
    });
    let p = plan_json(HW_SPLIT, &dir, &[]);
    let g = grubby_steps(&p);
    assert_eq!(g.len(), 1, "{p:#}");
    assert_eq!(g[0]["argv"][2], "--args=rd.driver.pre=vfio-pci");
    assert_eq!(g[0]["undo"][2], "--remove-args=rd.driver.pre=vfio-pci");
}

/// Older Fedora/RHEL: `options $kernelopts`, the command line in grubenv.
#[test]
fn grubby_reads_kernelopts_from_grubenv() {
    let (_t, dir) = target("fedora40-bls-amd");
    let entry = std::fs::read_to_string(dir.join(FEDORA_ENTRY)).expect("read");
    let opts = entry
        .lines()
        .find_map(|l| l.strip_prefix("options "))
        .expect("options")
        .to_string();
    edit(&dir, FEDORA_ENTRY, |t| t.replace(&opts, "$kernelopts"));
    // A GRUB environment block as grub2-editenv writes it (1024 bytes).
    let mut env = format!("# GRUB Environment Block\nkernelopts={opts} iommu=pt\n");
    env.push_str(&"#".repeat(1024 - env.len()));
    std::fs::write(dir.join("boot/grub2/grubenv"), env).expect("write");
    let p = plan_json(HW_SPLIT, &dir, &["--iommu-pt"]);
    assert!(grubby_steps(&p).is_empty(), "{p:#}");
}

/// Two entries, only one with the parameter: grubby adds it to the other,
/// rollback leaves it (it was the user's in the first), and a warning says so.
#[test]
fn grubby_param_in_some_entries_only_is_explained() {
    let (_t, dir) = target("fedora40-bls-amd");
    let text = std::fs::read_to_string(dir.join(FEDORA_ENTRY)).expect("read");
    let older = text
        .replace("6.8.5-301", "6.8.4-300")
        .replace("rd.driver.pre=vfio-pci", "rd.driver.pre=vfio-pci iommu=pt");
    std::fs::write(
        dir.join("boot/loader/entries/6a9857a393724b7a981ebb5b8495b9ea-6.8.4-300.fc40.x86_64.conf"),
        older,
    )
    .expect("write");
    let p = plan_json(HW_SPLIT, &dir, &["--iommu-pt"]);
    let g = grubby_steps(&p);
    assert_eq!(g.len(), 1, "{p:#}");
    assert_eq!(g[0]["argv"][2], "--args=iommu=pt");
    assert!(g[0]["undo"].is_null(), "{p:#}");
    let w = p["warnings"].to_string();
    assert!(
        w.contains("`iommu=pt` is already in") && w.contains("rollback leaves it"),
        "{w}"
    );
}

/// A real entry (`shared/fixtures/configs/NAME`) without its `# source:`
/// header; `None` (and a message) when the shared fixtures are absent.
fn shared_config(name: &str) -> Option<String> {
    let p = shared_fixtures()?.join("configs").join(name);
    let t = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    Some(exliar::plan::boot::strip_fixture_header(&t).to_string())
}

/// A systemd-boot entry without `options` (breakingspell's Arch entry with
/// that line taken out): the line exliar adds carries the running kernel's
/// command line (root=…), not only exliar's parameters.
#[test]
fn systemd_boot_entry_without_options_keeps_root() {
    let Some(real) = shared_config("systemd-boot-entry-arch.conf.user-breakingspell") else {
        return;
    };
    let opts = real
        .lines()
        .find_map(|l| l.strip_prefix("options "))
        .expect("options")
        .to_string();
    let without: String = real
        .lines()
        .filter(|l| !l.starts_with("options"))
        .map(|l| format!("{l}\n"))
        .collect();
    let (_t, dir) = target("arch-systemd-boot");
    std::fs::write(dir.join("boot/loader/entries/arch.conf"), &without).expect("write");
    std::fs::write(
        dir.join("proc/cmdline"),
        format!("initrd=\\amd-ucode.img initrd=\\initramfs-linux.img {opts}\n"),
    )
    .expect("write");
    let p = plan_json(
        HW_SPLIT,
        &dir,
        &["--bootloader", "systemd-boot", "--iommu-pt"],
    );
    let diff = p["diffs"]
        .as_array()
        .expect("diffs")
        .iter()
        .filter_map(|d| d.as_str())
        .find(|d| d.contains("arch.conf"))
        .expect("the entry is edited")
        .to_string();
    let added = diff
        .lines()
        .find(|l| l.starts_with("+options"))
        .expect("an options line")
        .to_string();
    assert!(
        added.contains("root=/dev/BlackboxA-lvm/root") && added.contains("cryptdevice="),
        "{diff}"
    );
    assert!(
        !added.contains("initrd=") && !added.contains("BOOT_IMAGE"),
        "{added}"
    );
    assert!(
        p["warnings"].to_string().contains("no `options` line"),
        "{p:#}"
    );

    // Without the running command line: refused, with the reason.
    std::fs::remove_file(dir.join("proc/cmdline")).expect("rm");
    let out = on_target(&["plan"], HW_SPLIT, &dir)
        .args(["--bootloader", "systemd-boot", "--iommu-pt"])
        .output()
        .expect("plan");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("no `options` line") && err.contains("root="),
        "{err}"
    );
}

/// The unplaced parameters of a document, as `(entry, missing)`.
fn unplaced(doc: &serde_json::Value) -> Vec<(String, Vec<String>)> {
    doc["unplaced_params"]
        .as_array()
        .unwrap_or_else(|| panic!("no unplaced_params: {doc:#}"))
        .iter()
        .map(|u| {
            (
                u["entry"].as_str().expect("entry").to_string(),
                u["missing"]
                    .as_array()
                    .expect("missing")
                    .iter()
                    .map(|m| m.as_str().expect("str").to_string())
                    .collect(),
            )
        })
        .collect()
}

/// Limine booting a UKI (`protocol: efi` with `cmdline:`; the shape of
/// Kacper109's real Void entry, booted as a UKI): exliar cannot place
/// `iommu=pt`, and plan and apply say so, human and JSON, naming it.
#[test]
fn limine_uki_entry_is_a_loud_warning() {
    let Some(real) = shared_config("limine.conf.user-void") else {
        return;
    };
    let uki = real
        .replace("protocol: linux", "protocol: efi")
        .replace(
            "path: boot():/vmlinuz-6.16.6_1",
            "path: boot():/EFI/Linux/void-6.16.6_1.efi",
        )
        .lines()
        .filter(|l| !l.trim_start().starts_with("module_path"))
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    let (_t, dir) = target("cachyos-limine-secureboot");
    std::fs::write(dir.join("boot/limine.conf"), &uki).expect("write");
    let extra = ["--bootloader", "limine", "--iommu-pt"];
    let p = plan_json(HW_SPLIT, &dir, &extra);
    let u = unplaced(&p);
    assert_eq!(u.len(), 1, "{p:#}");
    assert!(u[0].0.contains("entry `Void Linux`"), "{u:?}");
    assert_eq!(u[0].1, vec!["iommu=pt".to_string()]);
    assert_valid(&schema("plan-1.schema.json"), &p, "plan");

    let out = on_target(&["plan"], HW_SPLIT, &dir)
        .args(extra)
        .output()
        .expect("plan");
    assert_success(&out, "plan");
    let text = stdout(&out);
    assert!(
        text.contains("WARNING") && text.contains("missing `iommu=pt`"),
        "{text}"
    );

    let out = on_target(&["apply", "--yes", "--no-run", "--json"], HW_SPLIT, &dir)
        .args(extra)
        .output()
        .expect("apply");
    assert_success(&out, "apply");
    let doc = json(&out);
    assert_valid(&schema("apply-1.schema.json"), &doc, "apply");
    assert_eq!(unplaced(&doc), u);
    let err = stderr(&out);
    assert!(err.contains("WARNING") && err.contains("iommu=pt"), "{err}");

    // Applied: a second apply has nothing to change but still says it.
    let out = on_target(&["apply", "--yes", "--no-run"], HW_SPLIT, &dir)
        .args(extra)
        .output()
        .expect("apply");
    assert_success(&out, "apply");
    let text = stdout(&out);
    assert!(
        text.contains("WARNING") && text.contains("missing `iommu=pt`"),
        "{text}"
    );
}

/// No boot-loader configuration recognised: the parameters are an
/// unplaced warning, in the plan document and on apply.
#[test]
fn unknown_boot_loader_is_a_loud_warning() {
    let (_t, dir) = target("debian12-grub-intel");
    std::fs::remove_file(dir.join("etc/default/grub")).expect("rm");
    std::fs::remove_dir_all(dir.join("boot/grub")).expect("rm");
    let p = plan_json(HW_SPLIT, &dir, &["--iommu-pt"]);
    let u = unplaced(&p);
    assert_eq!(u.len(), 1, "{p:#}");
    assert_eq!(u[0].0, "the boot loader");
    assert!(u[0].1.contains(&"iommu=pt".to_string()), "{u:?}");
    let out = on_target(
        &["apply", "--yes", "--no-run", "--iommu-pt"],
        HW_SPLIT,
        &dir,
    )
    .output()
    .expect("apply");
    assert_success(&out, "apply");
    let text = stdout(&out);
    assert!(
        text.contains("Applied, but INCOMPLETE") && text.contains("iommu=pt"),
        "{text}"
    );
}

/// Ubuntu cloud images ship `/etc/default/grub.d/50-cloudimg-settings.cfg`
/// setting `GRUB_CMDLINE_LINUX_DEFAULT` outright; Debian's grub-mkconfig
/// reads it after `/etc/default/grub`, so a parameter exliar adds to the
/// main file never reaches the kernel: a loud warning, not success.
#[test]
fn grub_dropin_overriding_the_main_file_is_a_loud_warning() {
    let (_t, dir) = target("debian12-grub-intel");
    std::fs::create_dir_all(dir.join("etc/default/grub.d")).expect("mkdir");
    std::fs::write(
        dir.join("etc/default/grub.d/50-cloudimg-settings.cfg"),
        "# Cloud Image specific Grub settings for Generic Cloud Images\n\
         # CLOUD_IMG: This file was created/modified by the Cloud Image build process\n\n\
         # Set the recordfail timeout\nGRUB_RECORDFAIL_TIMEOUT=0\n\n\
         # Do not wait on grub prompt\nGRUB_TIMEOUT=0\n\n\
         # Set the default commandline\nGRUB_CMDLINE_LINUX_DEFAULT=\"console=tty1 console=ttyS0\"\n\n\
         # Set the grub console type\nGRUB_TERMINAL=console\n",
    )
    .expect("write");
    let p = plan_json(HW_SPLIT, &dir, &["--iommu-pt"]);
    let u = unplaced(&p);
    assert_eq!(u.len(), 1, "{p:#}");
    assert!(u[0].0.contains("50-cloudimg-settings.cfg"), "{u:?}");
    assert!(u[0].1.contains(&"iommu=pt".to_string()), "{u:?}");
    // Without the drop-in the main file's edit is what the kernel gets.
    std::fs::remove_dir_all(dir.join("etc/default/grub.d")).expect("rm");
    let p = plan_json(HW_SPLIT, &dir, &["--iommu-pt"]);
    assert!(unplaced(&p).is_empty(), "{p:#}");
}

/// Proxmox without /etc/kernel/cmdline: the new file is the running
/// command line plus exliar's parameters; without a running command line
/// to copy, refused (a file with only exliar's parameters loses `root=`).
#[test]
fn new_kernel_cmdline_needs_the_running_command_line() {
    let (_t, dir) = target("proxmox-no-iommu");
    std::fs::remove_file(dir.join("etc/kernel/cmdline")).expect("rm");
    let p = plan_json(HW_SPLIT, &dir, &["--iommu-pt"]);
    let running = std::fs::read_to_string(dir.join("proc/cmdline")).expect("read");
    let root = running
        .split_whitespace()
        .find(|t| t.starts_with("root="))
        .expect("root=");
    let diff = p["diffs"].to_string();
    assert!(diff.contains(root), "{p:#}");
    std::fs::remove_file(dir.join("proc/cmdline")).expect("rm");
    let out = on_target(&["plan", "--iommu-pt"], HW_SPLIT, &dir)
        .output()
        .expect("plan");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("root=") && err.contains("/etc/kernel/cmdline"),
        "{err}"
    );
}
