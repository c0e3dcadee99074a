//! Booting a root that `exliar apply --target` (or `rollback`) regenerated: the
//! real-kernel tier's kernel boots the root's own initramfs, which mounts the root from
//! a raw ext4 disk image and runs the tier's guest script as `init` (it records which
//! drivers the initramfs bound, loads drivers for the rest with kmod's modprobe as udev
//! would, records the kernel's truth, runs exliar and powers off).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::realkernel::harness::{self, DiskBoot, EXLIAR, GuestRun, Iommu, Scenario, say};
use crate::realkernel::initramfs::strip_debug;
use crate::realkernel::kernel::run;

/// The tier's guest script, run as `init=/exliar-check.sh`.
const GUEST_INIT: &str = include_str!("../realkernel/guest-init.sh");

/// Commands the guest script runs after the standard ones (`/scenario.sh`).
const GUEST_SCENARIO: &str = "run_exliar status status --json\n";

/// A disk boot reads a 36 MB initramfs-tools image and runs udev under TCG.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// `vm_in_l1` starts three nested VMs and runs every VM step under TCG:
/// 144 s here (2 shared cores); a CI machine was once 2.6× slower.
pub const VM_IN_L1_TIMEOUT: Duration = Duration::from_secs(600);

/// Puts the guest script, its scenario steps and a copy of exliar (debug info
/// stripped) into `root`. They are the test's, not exliar's: no plan touches them.
pub fn install_guest(root: &Path) {
    install_guest_with(root, GUEST_SCENARIO);
}

/// [`install_guest`] with `scenario` as `/scenario.sh`.
pub fn install_guest_with(root: &Path, scenario: &str) {
    let write = |rel: &str, text: &str| {
        let p = root.join(rel);
        fs::write(&p, text).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
    };
    write("exliar-check.sh", GUEST_INIT);
    write("scenario.sh", scenario);
    let dest = root.join("usr/bin/exliar");
    if !strip_debug(Path::new(EXLIAR), &dest) {
        fs::copy(EXLIAR, &dest).unwrap_or_else(|e| panic!("copying exliar: {e}"));
    }
}

/// Makes a raw ext4 image of `root` (`mke2fs -d`) at `image`, replacing it.
fn disk_image(root: &Path, image: &Path) {
    let _ = fs::remove_file(image);
    let t0 = Instant::now();
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-E", "root_owner=0:0", "-d"])
        .arg(root)
        .arg(image)
        .arg("2G"))
    .unwrap_or_else(|e| panic!("mke2fs -d {}: {e:#}", root.display()));
    say(&format!(
        "realtools: disk image of {} in {:.1}s",
        root.display(),
        t0.elapsed().as_secs_f64()
    ));
}

/// Boots `root` (its `/boot/initrd.img-<kver>`, the tier's kernel) on the QEMU machine
/// `devices` with an Intel IOMMU; `None` when the real-kernel tier cannot run here
/// (skip message printed; a failure under CI).
pub fn boot(name: &'static str, devices: &str, root: &Path, kver: &str) -> Option<GuestRun> {
    boot_with(name, devices, root, kver, BOOT_TIMEOUT)
}

/// [`boot`] with another deadline for the guest.
pub fn boot_with(
    name: &'static str,
    devices: &str,
    root: &Path,
    kver: &str,
    timeout: Duration,
) -> Option<GuestRun> {
    let image = root.parent().unwrap_or(root).join(format!("{name}.img"));
    disk_image(root, &image);
    let initrd = root.join("boot").join(format!("initrd.img-{kver}"));
    let scenario = Scenario::new(name, Iommu::Intel, devices)
        .with_timeout(timeout)
        .with_disk(DiskBoot {
            initrd,
            image: image.clone(),
        });
    let run = harness::boot(&scenario);
    let _ = fs::remove_file(&image);
    run
}

/// `address driver` lines the guest wrote before loading any driver itself: what the
/// initramfs bound.
pub fn drivers_at_init(run: &GuestRun) -> Vec<(String, Option<String>)> {
    let path: PathBuf = run.out.join("drivers-at-init.txt");
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (guest script too old?)", path.display()));
    text.lines()
        .filter_map(|l| {
            let (a, d) = l.split_once(' ')?;
            Some((a.to_owned(), (d != "-").then(|| d.to_owned())))
        })
        .collect()
}
