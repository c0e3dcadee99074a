//! Devices the host cannot lose: the controller of the root file system's
//! disk and the network adapter with the default route.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::model::PciAddress;

use super::root::HostRoot;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Critical {
    pub address: PciAddress,
    /// Why: "root file system on /dev/nvme0n1p2", "default route via enp5s0".
    pub why: String,
}

/// The PCI function closest to the device in a sysfs device path
/// (`sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1`).
pub fn pci_function_in_path(path: &Path) -> Option<PciAddress> {
    path.components()
        .filter_map(|c| c.as_os_str().to_str())
        .filter_map(|s| PciAddress::parse(s).ok())
        .next_back()
}

/// The source device of the `/` mount in `/proc/self/mountinfo`
/// (the field after ` - fstype `).
pub fn root_mount_source(mountinfo: &str) -> Option<String> {
    root_mount(mountinfo).map(|m| m.source)
}

/// The `/` mount of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootMount {
    /// `major:minor` of the mounted device (`254:1`; an anonymous `0:N`
    /// for btrfs and network file systems).
    pub dev: String,
    /// The mount source (`/dev/mapper/vg-root`, `/dev/nvme0n1p2`).
    pub source: String,
}

/// The last `/` mount in `mountinfo` (the one on top).
pub fn root_mount(mountinfo: &str) -> Option<RootMount> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let mut fields = l.split(' ');
            let dev = fields.nth(2)?;
            let mount_point = fields.nth(1)?;
            if mount_point != "/" {
                return None;
            }
            let (_, after) = l.split_once(" - ")?;
            let mut rest = after.split(' ');
            let _fstype = rest.next()?;
            Some(RootMount {
                dev: dev.to_string(),
                source: rest.next()?.to_string(),
            })
        })
        .next_back()
}

/// How deep a block-device stack is followed (LUKS on LVM on MD is 3).
const MAX_STACK: usize = 16;

/// The sysfs folder (resolved, root-relative) of the block device mounted
/// at `/`: by name (`/dev/nvme0n1p2` → `sys/class/block/nvme0n1p2`; a
/// `/dev/mapper/NAME` is the `dm-N` whose `dm/name` is NAME), else by its
/// `major:minor` (`sys/dev/block/254:1`).
fn root_block_device(host: &HostRoot, m: &RootMount) -> Option<PathBuf> {
    let src = Path::new(&m.source);
    let name = src.file_name()?.to_str()?;
    if src.parent() == Some(Path::new("/dev/mapper")) {
        for e in host.list_dir(CLASS_BLOCK).unwrap_or_default() {
            if e.starts_with("dm-")
                && let Ok(Some(n)) = host.read_optional(format!("{CLASS_BLOCK}/{e}/dm/name"))
                && n.trim() == name
            {
                return host.resolve(&Path::new(CLASS_BLOCK).join(e)).ok();
            }
        }
    } else if src.starts_with("/dev") {
        let by_name = Path::new(CLASS_BLOCK).join(name);
        if host.exists(&by_name) {
            return host.resolve(&by_name).ok();
        }
    }
    let by_number = Path::new("sys/dev/block").join(&m.dev);
    if !m.dev.starts_with("0:") && host.exists(&by_number) {
        return host.resolve(&by_number).ok();
    }
    None
}

const CLASS_BLOCK: &str = "sys/class/block";

/// The PCI functions under a block device: its own controller, or, for a
/// device-mapper (LVM, LUKS) or MD device, the controllers of every device
/// it is stacked on (`slaves/`, followed down; a partition of such a device
/// through its parent disk). Each with the chain of device names that led
/// there (`dm-1`, `dm-0`, `nvme0n1p3`).
fn controllers_below(host: &HostRoot, dev: &Path) -> Vec<(PciAddress, Vec<String>)> {
    fn walk(
        host: &HostRoot,
        dev: &Path,
        chain: &mut Vec<String>,
        seen: &mut Vec<PathBuf>,
        out: &mut Vec<(PciAddress, Vec<String>)>,
    ) {
        if seen.iter().any(|s| s == dev) || chain.len() > MAX_STACK {
            return;
        }
        seen.push(dev.to_path_buf());
        let name = dev
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        chain.push(name);
        if let Some(a) = pci_function_in_path(dev) {
            out.push((a, chain.clone()));
        } else {
            // A partition (`md0p1`) is stacked on what its disk is.
            let disk = if host.exists(dev.join("partition")) {
                dev.parent().unwrap_or(dev)
            } else {
                dev
            };
            let slaves = disk.join("slaves");
            for s in host.list_dir(&slaves).unwrap_or_default() {
                if let Ok(p) = host.resolve(&slaves.join(&s)) {
                    walk(host, &p, chain, seen, out);
                }
            }
        }
        chain.pop();
    }
    let mut out = Vec::new();
    walk(host, dev, &mut Vec::new(), &mut Vec::new(), &mut out);
    out
}

/// Interfaces carrying a default route in `/proc/net/route`.
pub fn default_route_interfaces(route: &str) -> Vec<String> {
    route
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[1] == "00000000").then(|| f[0].to_string())
        })
        .collect()
}

/// Find the host-critical PCI functions. Anything that cannot be read is
/// skipped: this only adds refusals, it never removes one.
pub fn find(host: &HostRoot) -> Vec<Critical> {
    let mut out = Vec::new();
    if let Ok(Some(mi)) = host.read_optional("proc/self/mountinfo")
        && let Some(m) = root_mount(&mi)
        && let Some(dev) = root_block_device(host, &m)
    {
        for (a, chain) in controllers_below(host, &dev) {
            // The mounted device itself is named by the source already.
            let below = &chain[1.min(chain.len())..];
            let why = if below.is_empty() {
                format!("root file system on {}", m.source)
            } else {
                format!(
                    "root file system on {} (on {})",
                    m.source,
                    below.join(" on ")
                )
            };
            out.push(Critical { address: a, why });
        }
    }
    if let Ok(Some(route)) = host.read_optional("proc/net/route") {
        for iface in default_route_interfaces(&route) {
            if let Ok(p) = host.resolve(&Path::new("sys/class/net").join(&iface))
                && let Some(a) = pci_function_in_path(&p)
            {
                out.push(Critical {
                    address: a,
                    why: format!("default route via {iface}"),
                });
            }
        }
    }
    out.sort_by_key(|c| c.address);
    out.dedup_by(|a, b| a.address == b.address);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_source_and_routes() {
        let mi = "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n\
                  23 22 0:5 / /dev rw - devtmpfs udev rw\n";
        assert_eq!(root_mount_source(mi).as_deref(), Some("/dev/vda1"));
        let route = "Iface\tDestination\tGateway\tFlags\nenp5s0\t00000000\t0101A8C0\t0003\nenp5s0\t0001A8C0\t00000000\t0001\n";
        assert_eq!(default_route_interfaces(route), ["enp5s0"]);
        let p = Path::new(
            "sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1/nvme0n1p2",
        );
        assert_eq!(
            pci_function_in_path(p),
            PciAddress::parse("0000:3d:00.0").ok()
        );
        assert_eq!(
            pci_function_in_path(Path::new("sys/devices/virtual/net/lo")),
            None
        );
    }

    /// A tree shaped like real sysfs: an NVMe disk on 0000:01:00.0 and two
    /// SATA disks on an AHCI controller at 0000:00:17.0 and 0000:05:00.0.
    fn stacked_tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tempdir");
        let r = t.path();
        let dir = |p: &str| std::fs::create_dir_all(r.join(p)).expect("mkdir");
        let file = |p: &str, text: &str| {
            std::fs::create_dir_all(r.join(p).parent().expect("parent")).expect("mkdir");
            std::fs::write(r.join(p), text).expect("write");
        };
        let link = |target: &str, p: &str| {
            std::fs::create_dir_all(r.join(p).parent().expect("parent")).expect("mkdir");
            std::os::unix::fs::symlink(target, r.join(p)).expect("symlink");
        };
        let nvme = "devices/pci0000:00/0000:00:01.1/0000:01:00.0/nvme/nvme0/nvme0n1";
        let sda = "devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda";
        let sdb =
            "devices/pci0000:00/0000:00:1c.0/0000:05:00.0/ata3/host2/target2:0:0/2:0:0:0/block/sdb";
        for (disk, part) in [(nvme, "nvme0n1p3"), (sda, "sda2"), (sdb, "sdb2")] {
            dir(&format!("sys/{disk}/{part}"));
            file(&format!("sys/{disk}/{part}/partition"), "2\n");
            link(
                &format!("../../{disk}/{part}"),
                &format!("sys/class/block/{part}"),
            );
        }
        // dm-0: LUKS on nvme0n1p3; dm-1: LVM on dm-0.
        let virt = "devices/virtual/block";
        dir(&format!("sys/{virt}/dm-0/slaves"));
        file(&format!("sys/{virt}/dm-0/dm/name"), "luks-0b5e\n");
        link(
            &format!("../../../../{nvme}/nvme0n1p3").replace("devices/", ""),
            &format!("sys/{virt}/dm-0/slaves/nvme0n1p3"),
        );
        dir(&format!("sys/{virt}/dm-1/slaves"));
        file(&format!("sys/{virt}/dm-1/dm/name"), "vg0-root\n");
        link("../../dm-0", &format!("sys/{virt}/dm-1/slaves/dm-0"));
        // md0: RAID1 of sda2 and sdb2, partitioned (md0p1).
        dir(&format!("sys/{virt}/md0/slaves"));
        link(
            &format!("../../../../{sda}/sda2").replace("devices/", ""),
            &format!("sys/{virt}/md0/slaves/sda2"),
        );
        link(
            &format!("../../../../{sdb}/sdb2").replace("devices/", ""),
            &format!("sys/{virt}/md0/slaves/sdb2"),
        );
        file(&format!("sys/{virt}/md0/md0p1/partition"), "1\n");
        for d in ["dm-0", "dm-1", "md0", "md0/md0p1"] {
            let name = d.rsplit('/').next().expect("name");
            link(
                &format!("../../{virt}/{d}"),
                &format!("sys/class/block/{name}"),
            );
        }
        link(&format!("../../{virt}/dm-1"), "sys/dev/block/254:1");
        t
    }

    fn with_root(t: &tempfile::TempDir, dev: &str, source: &str) -> Vec<Critical> {
        std::fs::create_dir_all(t.path().join("proc/self")).expect("mkdir");
        std::fs::write(
            t.path().join("proc/self/mountinfo"),
            format!("22 1 {dev} / / rw,relatime shared:1 - ext4 {source} rw\n"),
        )
        .expect("write");
        find(&HostRoot::new(t.path()))
    }

    fn addrs(c: &[Critical]) -> Vec<String> {
        c.iter().map(|c| c.address.to_string()).collect()
    }

    #[test]
    fn root_on_lvm_on_luks_is_followed_to_the_nvme_controller() {
        let t = stacked_tree();
        let c = with_root(&t, "254:1", "/dev/mapper/vg0-root");
        assert_eq!(addrs(&c), ["0000:01:00.0"]);
        assert_eq!(
            c[0].why,
            "root file system on /dev/mapper/vg0-root (on dm-0 on nvme0n1p3)"
        );
        // Named by its dm-N node, or only by its number.
        assert_eq!(
            addrs(&with_root(&t, "254:1", "/dev/dm-1")),
            ["0000:01:00.0"]
        );
        assert_eq!(addrs(&with_root(&t, "254:1", "rootfs")), ["0000:01:00.0"]);
        assert_eq!(
            addrs(&with_root(&t, "254:0", "/dev/mapper/luks-0b5e")),
            ["0000:01:00.0"]
        );
    }

    #[test]
    fn root_on_md_raid_names_every_member_controller() {
        let t = stacked_tree();
        let c = with_root(&t, "9:1", "/dev/md0p1");
        assert_eq!(addrs(&c), ["0000:00:17.0", "0000:05:00.0"]);
        assert!(c[0].why.contains("(on sda2)"), "{}", c[0].why);
        assert_eq!(
            addrs(&with_root(&t, "9:0", "/dev/md0")),
            ["0000:00:17.0", "0000:05:00.0"]
        );
    }

    #[test]
    fn a_plain_partition_and_a_loop_in_the_stack() {
        let t = stacked_tree();
        let c = with_root(&t, "259:3", "/dev/nvme0n1p3");
        assert_eq!(addrs(&c), ["0000:01:00.0"]);
        assert_eq!(c[0].why, "root file system on /dev/nvme0n1p3");
        // A stack that loops (garbled tree) ends.
        std::os::unix::fs::symlink(
            "../../dm-1",
            t.path().join("sys/devices/virtual/block/dm-0/slaves/dm-1"),
        )
        .expect("symlink");
        assert_eq!(
            addrs(&with_root(&t, "254:1", "/dev/dm-1")),
            ["0000:01:00.0"]
        );
        // btrfs reports an anonymous device number; an unknown source is
        // no refusal rather than a wrong one.
        assert!(with_root(&t, "0:31", "/dev/nosuch").is_empty());
    }
}
