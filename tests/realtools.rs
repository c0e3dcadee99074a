//! Real-tools tier: `exliar apply --target ROOT` on a debootstrapped Debian 12 root
//! with Debian's kernel, exliar running the real generator in it (`update-initramfs`,
//! or `dracut` where initramfs-tools is purged), and the images checked with the
//! generators' own listers. Hardware comes from `exliar snapshot`s taken in the
//! real-kernel tier's `gpu_pair` and `identical` guests (tests/realtools/hosts/), so
//! the addresses are those the QEMU guests have. The `apply_and_rollback` tests then
//! boot the regenerated image (initramfs-tools or dracut) with the real-kernel tier's
//! kernel on those same QEMU machines, after apply and again after rollback. See
//! tests/realtools/README.md.

#[allow(dead_code)] // the tier's modules, partly used here
mod realkernel {
    #[path = "../realkernel/harness.rs"]
    pub mod harness;
    #[path = "../realkernel/initramfs.rs"]
    pub mod initramfs;
    #[path = "../realkernel/kernel.rs"]
    pub mod kernel;
    #[path = "../realkernel/machines.rs"]
    pub mod machines;
    #[path = "../realkernel/qemu.rs"]
    pub mod qemu;
    #[path = "../realkernel/transport.rs"]
    pub mod transport;
    #[path = "../realkernel/truth.rs"]
    pub mod truth;
}
mod realtools {
    #[path = "boot.rs"]
    pub mod boot;
    #[path = "images.rs"]
    pub mod images;
    #[path = "root.rs"]
    pub mod root;
}

use std::path::{Path, PathBuf};

use realkernel::harness::{self, GuestRun, say};
use realkernel::machines::{GPU_PAIR_DEVICES, IDENTICAL_DEVICES};
use realtools::boot;
use realtools::images::{self, has_module, list_image};
use realtools::root::{self, BaseRoot, Flavour};

const EARLY_CONF: &str = "etc/modprobe.d/00-exliar-vfio.conf";
const IDS_CONF: &str = "etc/modprobe.d/zz-exliar-vfio-ids.conf";
const EARLY_BIND: &str = "usr/lib/exliar/vfio-early-bind";
const VFIO_MODULES: &[&str] = &["vfio", "vfio_pci", "vfio_iommu_type1"];

/// The prepared root, or `None` (skip message printed) when this host cannot make it.
fn base(flavour: Flavour, test: &str) -> Option<BaseRoot> {
    let skip = |why: String| {
        let msg = format!(
            "realtools test `{test}` cannot run here: {why}. Install the packages in \
             tests/realtools/apt-packages.txt and run as root (see tests/realtools/README.md)."
        );
        assert!(!harness::in_ci(), "{msg} (CI is set, so this is a failure)");
        say(&format!("SKIP: {msg}"));
    };
    if let Err(u) = root::host_ready() {
        skip(u.0);
        return None;
    }
    let kernel = match harness::kernel() {
        Ok(k) => k,
        Err(why) => {
            skip(why);
            return None;
        }
    };
    match root::prepare(kernel, flavour) {
        Ok(Ok(b)) => Some(b),
        Ok(Err(u)) => {
            skip(u.0);
            None
        }
        Err(e) => panic!("preparing the Debian root: {e:#}"),
    }
}

fn hosts(name: &str, tag: &str) -> PathBuf {
    let tar = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/realtools/hosts")
        .join(format!("{name}.tar"));
    let dir = root::cache_dir().join("runs").join(tag).join("hw");
    images::unpack_snapshot(&tar, &dir);
    dir
}

fn read(target: &Path, rel: &str) -> String {
    std::fs::read_to_string(target.join(rel)).unwrap_or_else(|e| panic!("{rel} in the target: {e}"))
}

/// apply → the regenerated image holds the vfio modules and exliar's files, byte for
/// byte as in the target → rollback → the regenerated image holds none of exliar's files.
/// The root is booted after apply and after rollback (see [`assert_isolated_boot`]
/// and [`assert_released_boot`]).
fn apply_and_rollback(flavour: Flavour, hw: &str, tag: &'static str) {
    let Some(base) = base(flavour, tag) else {
        return;
    };
    let _run = images::RunDir::new(tag);
    let hw_dir = hosts(hw, tag);
    let target = images::work_root(&base, tag);
    boot::install_guest(&target);
    let before = list_image(&base, &target);
    for f in [EARLY_CONF, IDS_CONF, EARLY_BIND] {
        assert!(
            !before.iter().any(|p| p == f),
            "{f} in the image before apply"
        );
    }

    let journal = images::apply(&hw_dir, &target, "0000:02:00.0", tag);
    let ran = images::commands_ran(&journal);
    let expected = match flavour {
        Flavour::InitramfsTools | Flavour::Libvirt => "update-initramfs -u -k all",
        Flavour::Dracut => "dracut -f --regenerate-all",
    };
    assert_eq!(
        ran,
        vec![expected.to_owned()],
        "commands exliar ran: {journal:#}"
    );

    let listing = list_image(&base, &target);
    let mut missing: Vec<String> = VFIO_MODULES
        .iter()
        .filter(|m| !has_module(&listing, m))
        .map(|m| format!("module {m}"))
        .collect();
    let mut want_files = vec![EARLY_CONF];
    match hw {
        // distinct ids: vfio-pci claims them by id
        "gpu_pair" => want_files.push(IDS_CONF),
        // identical cards: by address, from the early-bind script
        "identical" => want_files.push(EARLY_BIND),
        _ => unreachable!(),
    }
    for f in &want_files {
        if target.join(f).exists() {
            if listing.iter().any(|p| p == f) {
                let in_image = images::image_file(&base, &target, f);
                assert_eq!(in_image, read(&target, f), "{f}: image differs from target");
            } else {
                missing.push(f.to_string());
            }
        } else {
            panic!("exliar did not write {f} into the target: {journal:#}");
        }
    }
    // The kernel's modules.alias in the root names bochs for QEMU's VGA (1234:1111), a
    // vendor exliar has no driver list for: it must wait for vfio-pci all the same.
    let early = read(&target, EARLY_CONF);
    assert!(
        early.contains("softdep bochs pre: vfio-pci"),
        "{EARLY_CONF}:\n{early}"
    );
    if hw == "identical" {
        assert!(
            early.contains("install vfio-pci /usr/lib/exliar/vfio-early-bind vfio-pci"),
            "{EARLY_CONF}:\n{early}"
        );
        assert!(
            !target.join(IDS_CONF).exists(),
            "identical cards must not be claimed by id (the twin would go too)"
        );
        let script = read(&target, EARLY_BIND);
        assert!(
            script.contains("0000:02:00.0"),
            "early-bind script names the GPU:\n{script}"
        );
        assert!(
            !script.contains("0000:01:00.0"),
            "early-bind script must not name the twin:\n{script}"
        );
    }
    assert!(
        missing.is_empty(),
        "the {flavour:?} image lacks {missing:?}; it has:\n{}",
        listing
            .iter()
            .filter(|p| p.contains("vfio") || p.contains("exliar") || p.contains("modprobe"))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );

    let machine = Machine::of(hw, &hw_dir);
    let name = leak(format!("{tag}_applied"));
    if let Some(run) = boot::boot(name, machine.devices, &target, &base.kver) {
        assert_isolated_boot(&run, &machine);
    }

    let rolled = images::rollback(&target, tag);
    let ran = images::commands_ran(&rolled);
    assert!(
        ran.iter().any(|c| c == expected),
        "rollback ran {ran:?}, expected {expected}"
    );
    let _ = std::fs::remove_dir_all(target.join("tmp/exliar-unpacked"));
    let after = list_image(&base, &target);
    let left: Vec<&String> = after.iter().filter(|p| p.contains("exliar")).collect();
    assert!(
        left.is_empty(),
        "exliar's files still in the image after rollback: {left:?}"
    );
    for f in [EARLY_CONF, IDS_CONF, EARLY_BIND, "usr/lib/exliar"] {
        assert!(
            !target.join(f).exists(),
            "{f} still in the target after rollback"
        );
    }
    let name = leak(format!("{tag}_rolled_back"));
    if let Some(run) = boot::boot(name, machine.devices, &target, &base.kver) {
        assert_released_boot(&run, &machine);
    }
}

/// Scenario names are `&'static str` (one per test, so leaking is bounded).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The QEMU machine a hardware snapshot came from, and what the test expects of it.
struct Machine {
    devices: &'static str,
    /// The functions exliar isolates (the GPU at 02:00.0 and its audio function).
    guest: Vec<String>,
    /// Each function's driver in the guest the snapshot was taken in (no exliar).
    drivers: std::collections::BTreeMap<String, Option<String>>,
}

impl Machine {
    fn of(hw: &str, hw_dir: &Path) -> Machine {
        let (devices, guest) = match hw {
            "gpu_pair" => (GPU_PAIR_DEVICES, vec!["0000:02:00.0", "0000:02:00.1"]),
            "identical" => (IDENTICAL_DEVICES, vec!["0000:02:00.0"]),
            _ => unreachable!("no machine {hw}"),
        };
        let scan = harness::host_exliar(&[
            "scan".as_ref(),
            "--json".as_ref(),
            "--root".as_ref(),
            hw_dir.as_os_str(),
        ]);
        let scan: serde_json::Value = serde_json::from_str(&scan).expect("scan --json");
        let drivers = scan["devices"]
            .as_array()
            .expect("devices[]")
            .iter()
            .map(|d| {
                (
                    d["address"].as_str().unwrap_or_default().to_owned(),
                    d["driver"].as_str().map(str::to_owned),
                )
            })
            .collect();
        Machine {
            devices,
            guest: guest.into_iter().map(str::to_owned).collect(),
            drivers,
        }
    }
}

fn driver(run: &GuestRun, address: &str) -> Option<String> {
    run.truth.device(address).driver.clone()
}

/// `exliar status --json` in the booted guest (the root's own state directory).
fn guest_status(run: &GuestRun) -> serde_json::Value {
    run.exliar("status", "status --json").json()
}

/// After apply: vfio-pci owns every guest function from the initramfs on (bound before
/// the guest script loaded any driver), every other function is on the driver it had
/// without exliar (in `identical`, the twin keeps bochs-drm), and exliar in the booted
/// host reports the isolation it applied.
fn assert_isolated_boot(run: &GuestRun, m: &Machine) {
    let at_init: std::collections::BTreeMap<String, Option<String>> =
        boot::drivers_at_init(run).into_iter().collect();
    for f in &m.guest {
        assert_eq!(
            at_init.get(f).cloned().flatten().as_deref(),
            Some("vfio-pci"),
            "{f} not on vfio-pci when the initramfs handed over (drivers then: {at_init:?})"
        );
        assert_eq!(
            driver(run, f).as_deref(),
            Some("vfio-pci"),
            "{f} after boot"
        );
    }
    for (addr, original) in &m.drivers {
        if m.guest.contains(addr) {
            continue;
        }
        assert_eq!(
            &driver(run, addr),
            original,
            "{addr}: a function exliar does not isolate keeps its driver"
        );
    }
    let status = guest_status(run);
    assert_eq!(
        status["boot_isolation"]["gpu"].as_str(),
        Some(m.guest[0].as_str()),
        "status in the booted root: {status:#}"
    );
    let on_vfio: Vec<&str> = status["vfio_devices"]
        .as_array()
        .map(|v| v.iter().filter_map(|a| a.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(on_vfio, m.guest, "status vfio_devices: {status:#}");
    say(&format!(
        "realtools: {}: {} on vfio-pci from the initramfs on; every other function on its driver",
        run.name,
        m.guest.join(" + ")
    ));
}

/// After rollback: every function is on the driver it had without exliar, and
/// vfio-pci was never loaded.
fn assert_released_boot(run: &GuestRun, m: &Machine) {
    for (addr, original) in &m.drivers {
        assert_eq!(
            &driver(run, addr),
            original,
            "{addr} after rollback and reboot"
        );
    }
    let modules = std::fs::read_to_string(run.out.join("modules.txt")).unwrap_or_default();
    assert!(
        !modules.lines().any(|l| l == "vfio_pci"),
        "vfio_pci loaded after rollback:\n{modules}"
    );
    let status = guest_status(run);
    assert!(
        status["boot_isolation"].is_null(),
        "status after rollback: {status:#}"
    );
    say(&format!(
        "realtools: {}: every function back on its driver, vfio_pci not loaded",
        run.name
    ));
}

#[test]
fn initramfs_tools_gpu_pair() {
    apply_and_rollback(
        Flavour::InitramfsTools,
        "gpu_pair",
        "initramfs_tools_gpu_pair",
    );
}

#[test]
fn initramfs_tools_identical() {
    apply_and_rollback(
        Flavour::InitramfsTools,
        "identical",
        "initramfs_tools_identical",
    );
}

#[test]
fn dracut_gpu_pair() {
    apply_and_rollback(Flavour::Dracut, "gpu_pair", "dracut_gpu_pair");
}

#[test]
fn dracut_identical() {
    apply_and_rollback(Flavour::Dracut, "identical", "dracut_identical");
}

/// The nested VM's scenario, `/scenario.sh` of [`vm_in_l1`].
const VM_IN_L1: &str = include_str!("realtools/vm-in-l1.sh");

/// The GPU and its audio function on [`GPU_PAIR_DEVICES`] (behind root port rp2).
const L1_GPU: &str = "0000:02:00.0";
const L1_AUDIO: &str = "0000:02:00.1";

/// The L1's USB: an xHCI on a root port of its own (bus 04) with a keyboard and a
/// Wacom tablet (056a:0000, the device hot-plugged into the nested VM; QEMU's
/// keyboard, mouse and tablet all share 0627:0001).
const L1_USB_DEVICES: &str = "\
    -device pcie-root-port,id=rp4,bus=pcie.0,chassis=4,addr=0x5 \
    -device qemu-xhci,id=xhci,bus=rp4 \
    -device usb-kbd,bus=xhci.0 -device usb-wacom-tablet,bus=xhci.0";

fn out_text(run: &GuestRun, name: &str) -> String {
    std::fs::read_to_string(run.out.join(name))
        .unwrap_or_else(|e| panic!("{}: {e}", run.out.join(name).display()))
}

/// `address driver` lines of a `drivers` record of the scenario.
fn drivers_of(run: &GuestRun, tag: &str) -> std::collections::BTreeMap<String, String> {
    out_text(run, &format!("{tag}.drivers"))
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, d)| (a.to_owned(), d.to_owned()))
        .collect()
}

/// One step of the scenario: its exit status, output and wall time, printed.
fn step(run: &GuestRun, tag: &str) -> (i32, String) {
    let rc: i32 = out_text(run, &format!("{tag}.rc"))
        .trim()
        .parse()
        .unwrap_or(-1);
    let stdout = out_text(run, &format!("{tag}.stdout"));
    let secs = out_text(run, &format!("{tag}.secs"));
    say(&format!(
        "realtools: vm_in_l1: step {tag}: rc={rc}, {}s",
        secs.trim()
    ));
    if rc != 0 {
        say(&format!(
            "  stderr: {}",
            std::fs::read_to_string(run.out.join(format!("{tag}.stderr"))).unwrap_or_default()
        ));
    }
    (rc, stdout)
}

/// The GPU inside a VM, on a real kernel (issue 12): an L1 (q35, TCG, Intel IOMMU,
/// the GPU + audio pair) booted from a Debian root with libvirt, in which exliar
/// creates and starts (paused) a VM that gets both functions by vfio-pci, destroys
/// it and rolls the creation back.
#[test]
fn vm_in_l1() {
    let tag = "vm_in_l1";
    let Some(base) = base(Flavour::Libvirt, tag) else {
        return;
    };
    let run_dir = images::RunDir::new(tag);
    let root_dir = run_dir.path().join("root");
    base.copy_to(&root_dir).expect("copying the libvirt root");
    boot::install_guest_with(&root_dir, VM_IN_L1);
    let t0 = std::time::Instant::now();
    let devices = format!("{GPU_PAIR_DEVICES} {L1_USB_DEVICES}");
    let Some(run) = boot::boot_with(tag, &devices, &root_dir, &base.kver, boot::VM_IN_L1_TIMEOUT)
    else {
        return;
    };
    let l1 = t0.elapsed().as_secs_f64();
    say(&format!("realtools: vm_in_l1: L1 wall time {l1:.1}s"));
    harness::record_time(&format!("realtools vm_in_l1 L1 wall time {l1:.1}s"));

    let groups = out_text(&run, "groups.txt");
    let group_of = |a: &str| -> String {
        groups
            .lines()
            .find_map(|l| l.strip_prefix(a).map(|g| g.trim().to_owned()))
            .unwrap_or_else(|| panic!("no IOMMU group of {a} in groups.txt: {groups}"))
    };
    let (g0, g1) = (group_of(L1_GPU), group_of(L1_AUDIO));
    assert_eq!(
        g0, g1,
        "the GPU and its audio share one IOMMU group in the L1"
    );

    let (rc, created) = step(&run, "create");
    assert_eq!(rc, 0, "exliar vm create: {created}");
    let (rc, shown) = step(&run, "show-before");
    assert_eq!(rc, 0, "exliar vm show before start: {shown}");
    let before: serde_json::Value = serde_json::from_str(&shown).expect("vm show --json");
    let returns_to: std::collections::BTreeMap<String, String> = before["functions"]
        .as_array()
        .expect("functions in vm show --json")
        .iter()
        .map(|f| {
            (
                f["address"].as_str().unwrap_or_default().to_owned(),
                f["returns_to"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    let (rc, started) = step(&run, "start");
    assert_eq!(rc, 0, "exliar vm start --paused: {started}");

    // while paused: QEMU has both functions as vfio-pci devices and holds their group
    let argv = out_text(&run, "qemu.argv");
    for host in [L1_GPU, L1_AUDIO] {
        let short = host.trim_start_matches("0000:");
        assert!(
            argv.lines().any(|a| a.contains("vfio-pci")
                && (a.contains(&format!("\"host\":\"{host}\""))
                    || a.contains(&format!("\"host\":\"{short}\"")))),
            "no vfio-pci device for host {host} in the nested QEMU's argv:\n{argv}"
        );
    }
    let fds = out_text(&run, "qemu.vfio-fds");
    assert!(
        fds.lines().any(|l| l.trim() == format!("/dev/vfio/{g0}")),
        "the nested QEMU does not hold /dev/vfio/{g0}: {fds}"
    );
    let paused = drivers_of(&run, "paused");
    for host in [L1_GPU, L1_AUDIO] {
        assert_eq!(
            paused.get(host).map(String::as_str),
            Some("vfio-pci"),
            "{host} while paused"
        );
    }
    let (rc, _) = step(&run, "show-paused");
    assert_eq!(rc, 0, "exliar vm show while paused");

    let (rc, destroyed) = step(&run, "destroy");
    assert_eq!(rc, 0, "exliar vm destroy: {destroyed}");
    let after = drivers_of(&run, "destroyed");
    for host in [L1_GPU, L1_AUDIO] {
        let want = returns_to
            .get(host)
            .unwrap_or_else(|| panic!("{host} not among vm show's functions: {shown}"));
        assert_eq!(
            after.get(host),
            Some(want),
            "{host} after destroy (returns_to)"
        );
    }
    let (rc, rolled) = step(&run, "rollback");
    assert_eq!(rc, 0, "exliar rollback last: {rolled}");
    let list_before = out_text(&run, "list-before.txt");
    let list_after = out_text(&run, "list-after.txt");
    assert_eq!(
        list_after.trim(),
        list_before.trim(),
        "virsh list --all after rollback"
    );
    assert!(list_after.trim().is_empty(), "domains left: {list_after}");
    say(&format!(
        "realtools: vm_in_l1: scenario {}s in the L1",
        out_text(&run, "scenario.secs").trim()
    ));
    vm_extras_in_l1(&run);
}

/// The VM extras (issue 13) on the same L1: the kernel's USB tree as exliar reads
/// it, the emulated VGA's ROM dumped through sysfs and checked, Looking Glass with
/// kvmfr defined and rolled back byte for byte, USB hot-plug into a running VM.
fn vm_extras_in_l1(run: &GuestRun) {
    // USB as the L1's kernel has it: QEMU's keyboard (0627:0001) and the Wacom
    // tablet on the xHCI at 04:00.0, with usbhid bound; the keyboard makes the
    // controller one the host needs
    let (rc, out) = step(run, "usb-list");
    assert_eq!(rc, 0, "exliar usb list: {out}");
    let usb: serde_json::Value = serde_json::from_str(&out).expect("usb list --json");
    let sysfs = out_text(run, "usb-sysfs.txt");
    let devs = usb["devices"].as_array().expect("devices");
    let find = |v: &str, p: &str| {
        devs.iter()
            .find(|d| d["vendor"] == v && d["product"] == p)
            .unwrap_or_else(|| panic!("{v}:{p} not in usb list: {out}\nsysfs: {sysfs}"))
    };
    let kbd = find("0627", "0001");
    let tablet = find("056a", "0000");
    for d in [kbd, tablet] {
        assert_eq!(d["controller"], "0000:04:00.0", "{d}");
        // the kernel's own view: the sysfs entry is there
        let id = d["id"].as_str().expect("id");
        assert!(sysfs.contains(&format!(" {id} -> ")), "{id} not in {sysfs}");
    }
    assert!(
        kbd["kind"]
            .as_array()
            .expect("kind")
            .iter()
            .any(|k| k == "keyboard"),
        "{kbd}"
    );
    assert!(
        kbd["interfaces"][0]["driver"] == "usbhid",
        "usbhid drives the keyboard: {kbd}"
    );
    let ctl = usb["controllers"]
        .as_array()
        .expect("controllers")
        .iter()
        .find(|c| c["address"] == "0000:04:00.0")
        .unwrap_or_else(|| panic!("no controller 0000:04:00.0: {out}"));
    assert!(
        ctl["host_needs"].as_array().is_some_and(|n| !n.is_empty()),
        "the keyboard's controller is one the host needs: {ctl}"
    );

    // VBIOS: QEMU's VGA BIOS read through sysfs: legacy x86, 1234:1111, no UEFI image
    let (rc, out) = step(run, "vbios-dump");
    assert_eq!(
        rc, 1,
        "vbios dump prints the check (not usable: no UEFI image): {out}"
    );
    let rc_after: i32 = out_text(run, "rom-after-dump.rc")
        .trim()
        .parse()
        .unwrap_or(0);
    assert_ne!(
        rc_after,
        0,
        "the rom attribute is disabled again after the dump (reading it must fail): {}",
        out_text(run, "rom-after-dump.err")
    );
    let (rc, out) = step(run, "vbios-check");
    assert_eq!(rc, 1, "vbios check of a legacy-only ROM: {out}");
    let rom: serde_json::Value = serde_json::from_str(&out).expect("vbios check --json");
    say(&format!(
        "realtools: vm_in_l1: vbios check of the emulated VGA's ROM:\n{out}"
    ));
    assert_eq!(rom["signature_ok"], true, "{rom}");
    assert_eq!(rom["ids_match"], true, "{rom}");
    assert_eq!(rom["has_legacy"], true, "{rom}");
    assert_eq!(rom["has_uefi_gop"], false, "{rom}");
    assert_eq!(rom["usable"], false, "{rom}");
    assert_eq!(rom["images"][0]["vendor"], "1234", "{rom}");
    assert_eq!(rom["images"][0]["device"], "1111", "{rom}");
    assert_eq!(rom["images"][0]["checksum_ok"], true, "{rom}");
    let findings: Vec<&str> = rom["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["id"].as_str())
        .collect();
    assert!(findings.contains(&"no-uefi"), "{rom}");
    // byte for byte QEMU's file, when the host has the same one
    let dumped = std::fs::read(run.out.join("vga.rom")).expect("vga.rom");
    if let Ok(vgabios) = std::fs::read("/usr/share/seabios/vgabios-stdvga.bin") {
        assert_eq!(
            &dumped[..vgabios.len().min(dumped.len())],
            &vgabios[..vgabios.len().min(dumped.len())],
            "the dumped ROM starts with QEMU's vgabios-stdvga.bin"
        );
    }

    // Looking Glass (kvmfr): the files it plans, then every one back
    let (rc, out) = step(run, "lg-create");
    assert_eq!(rc, 0, "vm create --looking-glass --kvmfr: {out}");
    let before = out_text(run, "lg-files.before");
    let applied = out_text(run, "lg-files.applied");
    let after = out_text(run, "lg-files.after");
    assert_ne!(before, applied, "the kvmfr plan changed no file");
    for f in [
        "/etc/modprobe.d/exliar-kvmfr.conf",
        "/etc/udev/rules.d/99-exliar-kvmfr.rules",
        "/etc/libvirt/qemu.conf",
    ] {
        let line = |t: &str| t.lines().find(|l| l.ends_with(f)).map(str::to_owned);
        assert_ne!(line(&before), line(&applied), "{f} not written: {applied}");
    }
    let kvmfr = out_text(run, "lg-kvmfr.txt");
    // 2560x1440 SDR: 28.1 MiB of frames + 10 MiB -> 64 MiB
    assert!(kvmfr.contains("options kvmfr static_size_mb=64"), "{kvmfr}");
    assert!(kvmfr.contains("OWNER=\"root\""), "{kvmfr}");
    let xml = out_text(run, "lg.xml");
    assert!(
        xml.contains("/dev/kvmfr0") && xml.contains("qemu:commandline"),
        "libvirt kept the kvmfr arguments: {xml}"
    );
    let (rc, out) = step(run, "lg-show");
    assert_eq!(rc, 0, "vm show lg: {out}");
    let show: serde_json::Value = serde_json::from_str(&out).expect("vm show --json");
    assert_eq!(show["looking_glass"]["path"], "/dev/kvmfr0", "{show}");
    assert_eq!(show["looking_glass"]["size_mib"], 64, "{show}");
    let (rc, out) = step(run, "lg-rollback");
    assert_eq!(rc, 0, "rollback of the Looking Glass VM: {out}");
    assert_eq!(before, after, "the kvmfr plan's files after rollback");

    // USB hot-plug into the running (paused) nested VM
    for tag in ["hp-create", "hp-start", "hp-attach"] {
        let (rc, out) = step(run, tag);
        assert_eq!(rc, 0, "{tag}: {out}");
    }
    let attached = out_text(run, "hp-attached.xml");
    assert!(
        attached.contains("<vendor id='0x056a'/>") && attached.contains("<product id='0x0000'/>"),
        "the tablet is not in the running VM's XML: {attached}"
    );
    let (rc, out) = step(run, "hp-detach");
    assert_eq!(rc, 0, "hp-detach: {out}");
    let detached = out_text(run, "hp-detached.xml");
    assert!(
        !detached.contains("<vendor id='0x056a'/>"),
        "the tablet is still in the VM: {detached}"
    );
    for tag in ["hp-destroy", "hp-rollback"] {
        let (rc, out) = step(run, tag);
        assert_eq!(rc, 0, "{tag}: {out}");
    }
    assert!(
        out_text(run, "list-end.txt").trim().is_empty(),
        "domains left at the end"
    );
    say(&format!(
        "realtools: vm_in_l1: extras {}s in the L1",
        out_text(run, "extras.secs").trim()
    ));
    handover_dynamic_in_l1(run);
}

/// Handover `dynamic` (issue 14) on the same L1: exliar's hook, installed by
/// `hooks install`, moves the pair to vfio-pci when libvirt starts the nested VM and
/// gives it back when it stops; libvirt never moves it (managed='no').
fn handover_dynamic_in_l1(run: &GuestRun) {
    let (rc, out) = step(run, "hooks-install");
    assert_eq!(
        rc,
        0,
        "hooks install: {out}\n{}",
        out_text(run, "hooks-installed.txt")
    );
    let before = drivers_of(run, "dyn-before");
    assert_eq!(
        before.get(L1_GPU).map(String::as_str),
        Some("bochs-drm"),
        "{before:?}"
    );
    assert_eq!(
        before.get(L1_AUDIO).map(String::as_str),
        Some("snd_hda_intel"),
        "{before:?}"
    );
    for tag in ["dyn-create", "dyn-show", "dyn-start"] {
        let (rc, out) = step(run, tag);
        assert_eq!(rc, 0, "{tag}: {out}");
    }
    let paused = drivers_of(run, "dyn-paused");
    for f in [L1_GPU, L1_AUDIO] {
        assert_eq!(
            paused.get(f).map(String::as_str),
            Some("vfio-pci"),
            "{f} while the VM runs: {paused:?}"
        );
    }
    let (rc, out) = step(run, "dyn-destroy");
    assert_eq!(rc, 0, "dyn-destroy: {out}");
    assert_eq!(
        drivers_of(run, "dyn-destroyed"),
        before,
        "every function back on its driver"
    );
    let (rc, out) = step(run, "hooks-status");
    assert_eq!(rc, 0, "hooks status: {out}");
    let st: serde_json::Value = serde_json::from_str(&out).expect("hooks status --json");
    let runs: Vec<&serde_json::Value> = st["last_runs"]
        .as_array()
        .expect("last_runs")
        .iter()
        .filter(|r| r["domain"] == "l4")
        .collect();
    let phase = |p: &str| {
        runs.iter()
            .find(|r| r["phase"] == p)
            .unwrap_or_else(|| panic!("no {p} run of the hook for l4: {out}"))
    };
    let take = phase("prepare begin");
    let give = phase("release end");
    for r in [take, give] {
        assert_eq!(r["outcome"], "ok", "{r}");
        assert_eq!(r["mode"], "dynamic", "{r}");
    }
    let secs = |r: &serde_json::Value, what: &str| {
        r["steps"]
            .as_array()
            .and_then(|s| {
                s.iter()
                    .find(|t| t["what"].as_str().is_some_and(|w| w.contains(what)))
            })
            .and_then(|t| t["secs"].as_f64())
            .unwrap_or_else(|| panic!("no {what} step: {r}"))
    };
    let handover = format!(
        "handover (dynamic): hook at prepare {:.2}s (bind {:.2}s); give-back at release {:.2}s (unbind {:.2}s)",
        take["secs"].as_f64().unwrap_or(0.0),
        secs(take, "bind"),
        give["secs"].as_f64().unwrap_or(0.0),
        secs(give, "give")
    );
    say(&format!("realtools: vm_in_l1: {handover}"));
    harness::record_time(&format!("realtools vm_in_l1 {handover}"));
    let (rc, out) = step(run, "dyn-show-after");
    assert_eq!(rc, 0, "vm show l4: {out}");
    let show: serde_json::Value = serde_json::from_str(&out).expect("vm show --json");
    assert_eq!(show["handover"], "dynamic", "{show}");
    assert_eq!(show["last_handover"][0]["phase"], "prepare begin", "{show}");
    assert_eq!(show["last_handover"][1]["phase"], "release end", "{show}");
    let (rc, out) = step(run, "dyn-delete");
    assert_eq!(rc, 0, "dyn-delete: {out}");
    handover_single_gpu_in_l1(run);
    let (rc, out) = step(run, "hooks-remove");
    assert_eq!(rc, 0, "hooks-remove: {out}");
    assert!(
        out_text(run, "hooks-after.txt").trim().is_empty(),
        "hooks remove leaves /etc/libvirt/hooks as Debian ships it (empty): {}",
        out_text(run, "hooks-after.txt")
    );
    assert!(
        out_text(run, "list-dyn.txt").trim().is_empty(),
        "domains left"
    );
    say(&format!(
        "realtools: vm_in_l1: handover dynamic {}s in the L1",
        out_text(run, "dynamic.secs").trim()
    ));
}

/// Handover `single-gpu` (issue 14) on the same L1 and card, with libvirt running the
/// hook: at `prepare begin` the card's framebuffer console is let go of, the card bound
/// to vfio-pci and `bochs` and `snd_hda_intel` unloaded (journaled); at `release end`
/// all of it comes back.
fn handover_single_gpu_in_l1(run: &GuestRun) {
    let before = drivers_of(run, "sg-before");
    let modules = |tag: &str| out_text(run, &format!("{tag}.modules"));
    let vtcon = |tag: &str| out_text(run, &format!("{tag}.vtcon"));
    assert_eq!(modules("sg-before").trim(), "bochs\nsnd_hda_intel");
    for tag in ["sg-create", "sg-start"] {
        let (rc, out) = step(run, tag);
        assert_eq!(rc, 0, "{tag}: {out}");
    }
    let paused = drivers_of(run, "sg-paused");
    for f in [L1_GPU, L1_AUDIO] {
        assert_eq!(
            paused.get(f).map(String::as_str),
            Some("vfio-pci"),
            "{f} while the VM runs: {paused:?}"
        );
    }
    assert_eq!(
        modules("sg-paused").trim(),
        "",
        "bochs and snd_hda_intel unloaded while the VM runs"
    );
    let journal = out_text(run, "sg-journal.json");
    let j: serde_json::Value = serde_json::from_str(&journal).expect("the handover journal");
    assert_eq!(j["phase"], "taken", "{journal}");
    assert_eq!(j["domain"], "l5", "{journal}");
    let (rc, out) = step(run, "sg-destroy");
    assert_eq!(rc, 0, "sg-destroy: {out}");
    assert_eq!(drivers_of(run, "sg-destroyed"), before, "functions back");
    assert_eq!(
        modules("sg-destroyed"),
        modules("sg-before"),
        "modules back"
    );
    assert_eq!(vtcon("sg-destroyed"), vtcon("sg-before"), "consoles back");
    let (rc, out) = step(run, "sg-show");
    assert_eq!(rc, 0, "vm show l5: {out}");
    let show: serde_json::Value = serde_json::from_str(&out).expect("vm show --json");
    assert_eq!(show["handover"], "single-gpu", "{show}");
    let runs = show["last_handover"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let phase = |p: &str| {
        runs.iter()
            .find(|r| r["phase"] == p)
            .cloned()
            .unwrap_or_else(|| panic!("no {p} run for l5: {show}"))
    };
    let (take, give) = (phase("prepare begin"), phase("release end"));
    for r in [&take, &give] {
        assert_eq!(r["outcome"], "ok", "{r}");
    }
    let steps = |r: &serde_json::Value| {
        r["steps"]
            .as_array()
            .map(|s| {
                s.iter()
                    .map(|t| {
                        format!(
                            "{} {:.2}s",
                            t["what"].as_str().unwrap_or(""),
                            t["secs"].as_f64().unwrap_or(0.0)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    };
    let line = format!(
        "handover (single-gpu): hook at prepare {:.2}s ({}); give-back at release {:.2}s ({})",
        take["secs"].as_f64().unwrap_or(0.0),
        steps(&take),
        give["secs"].as_f64().unwrap_or(0.0),
        steps(&give)
    );
    say(&format!("realtools: vm_in_l1: {line}"));
    harness::record_time(&format!("realtools vm_in_l1 {line}"));
    let (rc, out) = step(run, "sg-delete");
    assert_eq!(rc, 0, "sg-delete: {out}");
    say(&format!(
        "realtools: vm_in_l1: handover single-gpu {}s in the L1",
        out_text(run, "single-gpu.secs").trim()
    ));
}

/// Every path under `root` (relative), but the package manager's own
/// bookkeeping, which an install and a purge change by design.
fn tree_paths(root: &Path) -> std::collections::BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeSet<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap_or(&p).to_path_buf();
            if [
                "var/lib/dpkg",
                "var/lib/apt",
                "var/log",
                "var/cache",
                "tmp",
                "etc/resolv.conf",
            ]
            .iter()
            .any(|x| rel.starts_with(x))
            {
                continue;
            }
            out.insert(rel);
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(root, &p, out);
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(root, root, &mut out);
    out
}

fn chroot(root: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("chroot")
        .arg(root)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .expect("chroot")
}

/// The Debian package (contrib/debian/build-deb.sh, from the release build
/// `.ci/run` makes) passes lintian without an error, installs with `apt-get install ./deb` into
/// the tier's clean debootstrapped root, runs there (`--version`, `check
/// --json`), enables exliar-recover.service, and `apt-get purge
/// --autoremove` removes every file it (and the dependencies it pulled) installed.
#[test]
fn deb_installs_runs_and_purges_in_a_debootstrapped_root() {
    let tag = "deb_round_trip";
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !manifest.join("target/release/exliar").is_file() {
        assert!(
            !harness::in_ci(),
            "no release build: .ci/run builds it first"
        );
        say("SKIP: deb_round_trip needs `cargo build --release` first");
        return;
    }
    let Some(base) = base(Flavour::InitramfsTools, tag) else {
        return;
    };
    let run_dir = images::RunDir::new(tag);
    let root_dir = run_dir.path().join("root");
    base.copy_to(&root_dir).expect("copying the root");
    let out = std::process::Command::new(manifest.join("contrib/debian/build-deb.sh"))
        .arg(run_dir.path().join("deb"))
        .output()
        .expect("build-deb.sh");
    assert!(
        out.status.success(),
        "build-deb.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let size = std::fs::metadata(&deb).expect("deb").len();
    say(&format!(
        "realtools: {} is {} KiB",
        deb.display(),
        size / 1024
    ));
    if std::path::Path::new("/usr/bin/lintian").exists() {
        let l = std::process::Command::new("lintian")
            .args(["--tag-display-limit", "0"])
            .arg(&deb)
            .output()
            .expect("lintian");
        let text = String::from_utf8_lossy(&l.stdout);
        say(&format!("realtools: lintian:\n{text}"));
        assert!(
            !text.lines().any(|l| l.starts_with("E:")),
            "lintian errors:\n{text}"
        );
    } else {
        assert!(
            !harness::in_ci(),
            "CI installs lintian (tests/realtools/apt-packages.txt)"
        );
    }

    let before = tree_paths(&root_dir);
    std::fs::copy(&deb, root_dir.join("tmp/exliar.deb")).expect("copy the deb");
    // apt-get installs the local file with its dependencies (pci.ids) from
    // Debian's archive, as a user would.
    let _ = std::fs::copy("/etc/resolv.conf", root_dir.join("etc/resolv.conf"));
    let o = chroot(&root_dir, &["apt-get", "update", "-qq"]);
    assert!(
        o.status.success(),
        "apt-get update: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = chroot(
        &root_dir,
        &[
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "/tmp/exliar.deb",
        ],
    );
    assert!(
        o.status.success(),
        "apt-get install ./deb: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let o = chroot(&root_dir, &["exliar", "--version"]);
    let v = String::from_utf8_lossy(&o.stdout);
    assert!(
        v.starts_with(&format!("exliar {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    assert!(v.contains("release"), "{v}");
    let o = chroot(&root_dir, &["exliar", "check", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("check --json");
    assert_eq!(doc["schema"], "exliar.check/1");
    let wants = root_dir.join("etc/systemd/system/sysinit.target.wants/exliar-recover.service");
    assert!(
        std::fs::symlink_metadata(&wants).is_ok(),
        "exliar-recover.service is not enabled"
    );
    let o = chroot(&root_dir, &["dpkg", "-L", "exliar"]);
    let listed: Vec<PathBuf> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| PathBuf::from(l.trim_start_matches('/')))
        .filter(|p| !p.as_os_str().is_empty() && p.as_os_str() != ".")
        .collect();
    assert!(
        listed.iter().any(|p| p == Path::new("usr/bin/exliar")),
        "{listed:?}"
    );
    assert!(
        listed.iter().any(|p| p.ends_with("exliar-tui.1.gz")),
        "{listed:?}"
    );
    let o = chroot(
        &root_dir,
        &["apt-get", "purge", "-y", "-qq", "--autoremove", "exliar"],
    );
    assert!(
        o.status.success(),
        "apt-get purge: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let _ = std::fs::remove_file(root_dir.join("tmp/exliar.deb"));
    let left: Vec<&PathBuf> = listed
        .iter()
        .filter(|p| !before.contains(*p))
        .filter(|p| std::fs::symlink_metadata(root_dir.join(p)).is_ok())
        .collect();
    assert!(left.is_empty(), "left after the purge: {left:?}");
    let after = tree_paths(&root_dir);
    let new: Vec<&PathBuf> = after.difference(&before).collect();
    assert!(new.is_empty(), "new paths after install and purge: {new:?}");
    say(&format!(
        "realtools: deb round trip: {} files installed and purged",
        listed.len()
    ));
}
