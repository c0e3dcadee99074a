//! What the kernel will really use (issue #11 §2, the module side): a
//! user's setting that the boot applies after exliar's is fixed in the plan
//! (and the fix is said), or the plan is refused with the reason.

mod common;

use std::path::Path;

use common::*;

fn diffs(doc: &serde_json::Value) -> String {
    doc["diffs"]
        .as_array()
        .expect("diffs")
        .iter()
        .map(|d| d.as_str().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// apply, then the plan is empty, then rollback gives back every byte.
fn apply_replan_rollback(dir: &Path, extra: &[&str]) {
    let original = regular_files(dir);
    let out = on_target(&["apply", "--yes", "--no-run", "--json"], HW_SPLIT, dir)
        .args(extra)
        .output()
        .expect("apply");
    assert_success(&out, "apply");
    let out = on_target(&["plan", "--json"], HW_SPLIT, dir)
        .args(extra)
        .output()
        .expect("plan");
    assert_success(&out, "second plan");
    let doc = json(&out);
    assert_eq!(
        doc["steps"].as_array().map(Vec::len),
        Some(0),
        "a second plan is not empty: {doc}"
    );
    let out = txn_cmd(&["rollback", "--no-run"], dir)
        .output()
        .expect("rollback");
    assert_success(&out, "rollback");
    assert_eq!(
        regular_files(dir),
        original,
        "rollback did not restore every byte"
    );
}

/// A systemd-boot entry (akissu's real `arch.conf`, in the fixture host)
/// with `vfio-pci.ids=` naming another card's VGA function: kmod reads the
/// command line after modprobe.d, so exliar's list was dead. The plan
/// replaces it with the merged list and says so.
#[test]
fn cmdline_vfio_ids_naming_another_card_is_replaced() {
    let (_t, dir) = target("arch-systemd-boot");
    let entry = std::fs::read_to_string(dir.join("boot/loader/entries/arch.conf")).expect("entry");
    assert!(entry.contains("vfio-pci.ids=10de:1b81,10de:10f0,8086:15b6"));
    let out = on_target(
        &["plan", "--json", "--bootloader", "systemd-boot"],
        HW_SPLIT,
        &dir,
    )
    .output()
    .expect("plan");
    assert_success(&out, "plan");
    let doc = json(&out);
    let d = diffs(&doc);
    assert!(
        d.contains("-options\t")
            && d.contains("vfio-pci.ids=10de:1b81,10de:10f0,8086:15b6,10de:1b80"),
        "{d}"
    );
    assert!(
        !d.contains("+options\tcryptdevice=UUID=a403fa05-b3c1-4d3e-864b-f3158ab74abc:root root=/dev/mapper/root intel_iommu=on iommu=pt rd.driver.pre=vfio-pci vfio-pci.ids=10de:1b81,10de:10f0,8086:15b6 "),
        "the user's list is still there: {d}"
    );
    let fixed = doc["fixed"].to_string();
    assert!(fixed.contains("is replaced by `vfio-pci.ids="), "{doc}");
    // Human output says it too.
    let out = on_target(&["plan", "--bootloader", "systemd-boot"], HW_SPLIT, &dir)
        .output()
        .expect("plan");
    assert_success(&out, "plan (human)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\nfixed: the kernel command line's `vfio-pci.ids=10de:1b81"),
        "{text}"
    );

    apply_replan_rollback(&dir, &["--bootloader", "systemd-boot"]);
}

/// initramfs-tools' modules file (Debian's own, in the fixture host) with a
/// user's `vfio-pci ids=` naming only the VGA function (initramfs-tools
/// passes it after modprobe.d: the HDMI audio would stay with
/// snd_hda_intel) and modprobe.d lines that do not belong there.
#[test]
fn initramfs_tools_vfio_arguments_move_and_misplaced_lines_are_commented_out() {
    let (_t, dir) = target("debian12-grub-intel");
    edit(&dir, "etc/initramfs-tools/modules", |t| {
        format!(
            "{t}softdep nouveau pre: vfio-pci\nvfio\nvfio_iommu_type1\nvfio-pci ids=10de:1b80 disable_vga=1\noptions vfio-pci ids=10de:1b80\n"
        )
    });
    let doc = plan_json(HW_SPLIT, &dir, &[]);
    let d = diffs(&doc);
    for want in [
        "+# exliar was: vfio-pci ids=10de:1b80 disable_vga=1\n+vfio-pci\n",
        "+# exliar off: softdep nouveau pre: vfio-pci\n",
        "+# exliar off: options vfio-pci ids=10de:1b80\n",
        "+options vfio-pci ids=10de:1b80,10de:10f0\n",
        "+options vfio-pci disable_vga=1\n",
    ] {
        assert!(d.contains(want), "{want:?} not in:\n{d}");
    }
    let fixed = doc["fixed"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(fixed, 3, "{doc}");
    apply_replan_rollback(&dir, &[]);
}

/// A user's dracut drop-in with a plain `install_items=` that sorts after
/// the usual names (`90-`): it used to sort after exliar's `10-` drop-in and
/// drop exliar's modprobe files from the image; exliar's drop-in now sorts
/// last. One that still sorts later gets a refusal naming it.
#[test]
fn dracut_plain_assignment_after_exliar_is_avoided_or_refused() {
    let (_t, dir) = target("fedora40-bls-amd");
    let conf = dir.join("etc/dracut.conf.d/90-local.conf");
    std::fs::write(&conf, "install_items=\" /usr/bin/foo \"\n").expect("write");
    let doc = plan_json(HW_SPLIT, &dir, &[]);
    let d = diffs(&doc);
    assert!(
        d.contains("+++ /etc/dracut.conf.d/zz-exliar-vfio.conf"),
        "{d}"
    );

    std::fs::remove_file(&conf).expect("rm");
    put(
        &dir,
        "usr/lib/dracut/dracut.conf.d/zzz-local.conf",
        "force_drivers=\"amdgpu\"\n",
    );
    let out = on_target(&["plan", "--json"], HW_SPLIT, &dir)
        .output()
        .expect("plan");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let doc = json(&out);
    let err = doc["error"].to_string();
    assert!(
        err.contains("/usr/lib/dracut/dracut.conf.d/zzz-local.conf:1") && err.contains("vfio_pci"),
        "{err}"
    );
}

/// `vfio_pci.ids=` in `/etc/default/grub` (the key exliar edits) naming the
/// host's RX 580 and only the guest's VGA function: replaced by the merged
/// list without the host's id, and the plan says so.
#[test]
fn grub_cmdline_ids_naming_the_host_card_are_replaced() {
    let (_t, dir) = target("debian12-grub-intel");
    edit(&dir, "etc/default/grub", |t| {
        t.replace(
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"",
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet vfio_pci.ids=1002:67df,10de:1b80\"",
        )
    });
    let doc = plan_json(HW_SPLIT, &dir, &[]);
    let d = diffs(&doc);
    assert!(
        d.contains("+GRUB_CMDLINE_LINUX_DEFAULT=\"quiet vfio-pci.ids=10de:1b80,10de:10f0\""),
        "{d}"
    );
    assert!(
        doc["fixed"]
            .to_string()
            .contains("vfio_pci.ids=1002:67df,10de:1b80"),
        "{doc}"
    );
    assert!(
        doc["warnings"].to_string().contains("leaves out 1002:67df"),
        "{doc}"
    );
    apply_replan_rollback(&dir, &[]);
}

/// What the plan cannot fix is refused with the reason, and nothing is
/// written: an `ids=` on `GRUB_CMDLINE_LINUX` (exliar edits
/// `GRUB_CMDLINE_LINUX_DEFAULT`), a modprobe.d file read after exliar's
/// `zz-` list, another `install vfio_pci` line read before exliar's.
#[test]
fn what_the_plan_cannot_fix_is_refused() {
    let refused = |dir: &Path, extra: &[&str], want: &[&str]| {
        let out = on_target(&["plan"], HW_SPLIT, dir)
            .args(extra)
            .output()
            .expect("plan");
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{err}{}",
            String::from_utf8_lossy(&out.stdout)
        );
        for w in want {
            assert!(err.contains(w), "{w:?} not in: {err}");
        }
        let before = regular_files(dir);
        let out = on_target(&["apply", "--yes", "--no-run"], HW_SPLIT, dir)
            .args(extra)
            .output()
            .expect("apply");
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            regular_files(dir),
            before,
            "a refused apply wrote something"
        );
    };

    let (_t, dir) = target("debian12-grub-intel");
    edit(&dir, "etc/default/grub", |t| {
        t.replace(
            "GRUB_CMDLINE_LINUX=\"\"",
            "GRUB_CMDLINE_LINUX=\"vfio_pci.ids=1002:67df,10de:1b80\"",
        )
    });
    refused(
        &dir,
        &[],
        &[
            "would still not claim 0000:0b:00.1",
            "would also claim 0000:0a:00.0",
            "take it out of the boot loader's configuration",
        ],
    );

    let (_t, dir) = target("debian12-grub-intel");
    put(
        &dir,
        "etc/modprobe.d/zzz-mine.conf",
        "options vfio-pci ids=10de:1b80\n",
    );
    refused(
        &dir,
        &[],
        &[
            "would still not claim 0000:0b:00.1",
            "/etc/modprobe.d/zzz-mine.conf:1",
        ],
    );

    let (_t, dir) = target("debian12-grub-intel");
    put(
        &dir,
        "etc/modprobe.d/0-mine.conf",
        "install vfio_pci /sbin/modprobe --ignore-install vfio_pci\n",
    );
    refused(
        &dir,
        &["--by-address"],
        &["/etc/modprobe.d/0-mine.conf:1", "early-bind step"],
    );
}

/// A GRUB drop-in (`/etc/default/grub.d/*.cfg`, read after
/// `/etc/default/grub` by Debian's grub-mkconfig) adding `vfio-pci.ids=` of
/// the host's RX 580 to `GRUB_CMDLINE_LINUX_DEFAULT`: the kernel reads it
/// after modprobe.d, so vfio-pci would take the host card and leave the
/// guest's. exliar edits only the main file, so the plan is refused naming
/// the entry whose command line it is (the check used to read the main
/// file alone and let the plan through).
#[test]
fn grub_dropin_ids_of_another_card_are_refused() {
    let (_t, dir) = target("debian12-grub-intel");
    std::fs::create_dir_all(dir.join("etc/default/grub.d")).expect("mkdir");
    std::fs::write(
        dir.join("etc/default/grub.d/60-vfio.cfg"),
        "# vfio for my other VM\nGRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT vfio-pci.ids=1002:67df,1002:aaf0\"\n",
    )
    .expect("write");
    let before = files(&dir);
    for args in [&["plan"][..], &["apply", "--yes", "--no-run"][..]] {
        let out = on_target(args, HW_SPLIT, &dir).output().expect("exliar");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {err}{}",
            String::from_utf8_lossy(&out.stdout)
        );
        for want in [
            "would still not claim 0000:0b:00.0, 0000:0b:00.1",
            "would also claim 0000:0a:00.0",
            "/etc/default/grub.d/{60-vfio.cfg}",
            "take it out of the boot loader's configuration",
        ] {
            assert!(err.contains(want), "{want:?} not in: {err}");
        }
    }
    assert_eq!(files(&dir), before, "a refused apply wrote something");
}

/// Proxmox's `/etc/kernel/cmdline` (AdrianLSY's real file, in the fixture
/// host) with `vfio-pci.ids=` naming only the guest's VGA function: the
/// HDMI audio would stay with snd_hda_intel. Replaced by the full list.
#[test]
fn proxmox_cmdline_ids_of_the_vga_function_only_are_completed() {
    let (_t, dir) = target("proxmox-no-iommu");
    edit(&dir, "etc/kernel/cmdline", |t| {
        format!("{} vfio-pci.ids=10de:1b80\n", t.trim_end())
    });
    let doc = plan_json(HW_SPLIT, &dir, &[]);
    let d = diffs(&doc);
    assert!(
        d.contains("rcu_nocbs=2-7 vfio-pci.ids=10de:1b80,10de:10f0\n"),
        "{d}"
    );
    assert!(doc["fixed"].to_string().contains("is replaced by"), "{doc}");
    apply_replan_rollback(&dir, &[]);
}
