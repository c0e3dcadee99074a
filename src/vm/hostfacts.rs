//! What `vm create` needs to know about the host besides the GPU and the
//! CPUs: memory, hugepages, whether a block device is free to give away,
//! where the virtio-win ISO is. All reads go through the host root.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::host::HostRoot;

/// `MemTotal` / `MemAvailable` of `/proc/meminfo`, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    pub total_kib: Option<u64>,
    pub available_kib: Option<u64>,
}

pub fn memory(host: &HostRoot) -> Memory {
    let text = host
        .read_optional("proc/meminfo")
        .ok()
        .flatten()
        .unwrap_or_default();
    Memory {
        total_kib: meminfo_kib(&text, "MemTotal"),
        available_kib: meminfo_kib(&text, "MemAvailable"),
    }
}

/// A `Key:   123 kB` value of `/proc/meminfo`.
pub fn meminfo_kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.trim() != key {
            return None;
        }
        v.split_whitespace().next()?.parse().ok()
    })
}

/// One hugepage size of the host (`/sys/kernel/mm/hugepages/hugepages-NkB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HugePool {
    pub size_kib: u64,
    pub total: u64,
    pub free: u64,
}

/// The host's hugepage pools, smallest first.
pub fn huge_pools(host: &HostRoot) -> Vec<HugePool> {
    const DIR: &str = "sys/kernel/mm/hugepages";
    let mut out = Vec::new();
    for name in host.list_dir(DIR).unwrap_or_default() {
        let Some(size) = name
            .strip_prefix("hugepages-")
            .and_then(|s| s.strip_suffix("kB"))
            .and_then(|s| s.parse().ok())
        else {
            continue;
        };
        let num = |f: &str| {
            host.read_optional(format!("{DIR}/{name}/{f}"))
                .ok()
                .flatten()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0)
        };
        out.push(HugePool {
            size_kib: size,
            total: num("nr_hugepages"),
            free: num("free_hugepages"),
        });
    }
    out.sort_by_key(|p| p.size_kib);
    out
}

/// Whether hugetlbfs is mounted (libvirt needs it, and reads the mounts
/// when its daemon starts).
pub fn hugetlbfs_mounted(host: &HostRoot) -> bool {
    host.read_optional("proc/self/mountinfo")
        .ok()
        .flatten()
        .is_some_and(|mi| {
            mi.lines().any(|l| {
                l.split(" - ")
                    .nth(1)
                    .is_some_and(|t| t.starts_with("hugetlbfs "))
            })
        })
}

/// Why a block device cannot be given to a VM; `Ok` with its kernel name
/// when it is free.
pub fn block_device_free(host: &HostRoot, dev: &Path) -> Result<String, String> {
    let shown = dev.display().to_string();
    let rel = dev.strip_prefix("/").unwrap_or(dev);
    let real = host
        .resolve(rel)
        .map_err(|e| format!("{shown}: {}", e.source))?;
    let name = real
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{shown}: not a block device"))?
        .to_string();
    let sys = format!("sys/class/block/{name}");
    if !host.exists(&sys) {
        return Err(format!(
            "{shown}: not a block device ({name} is not in /sys/class/block)"
        ));
    }
    let (names, stacked) = block_family(host, &name);
    let mut why: Vec<String> = mounted(host, &names)
        .into_iter()
        .map(|(n, point)| {
            let root = if point == "/" {
                " (the host's root)"
            } else {
                ""
            };
            format!("{n} is mounted on {point}{root}")
        })
        .collect();
    let swaps = host
        .read_optional("proc/swaps")
        .ok()
        .flatten()
        .unwrap_or_default();
    for l in swaps.lines().skip(1) {
        let Some(src) = l.split_whitespace().next() else {
            continue;
        };
        let src_name = Path::new(src)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        if names.iter().any(|n| n == src_name) {
            why.push(format!("{src_name} is in use as swap"));
        }
    }
    why.extend(stacked);
    if why.is_empty() {
        Ok(name)
    } else {
        Err(format!("{shown} is in use: {}", why.join("; ")))
    }
}

/// A block device (kernel name), its partitions and what is stacked on any
/// of them (LVM, LUKS, MD RAID), with one sentence per stacking.
fn block_family(host: &HostRoot, name: &str) -> (Vec<String>, Vec<String>) {
    let sys = format!("sys/class/block/{name}");
    let mut names: Vec<String> = vec![name.to_string()];
    for e in host.list_dir(&sys).unwrap_or_default() {
        if e.starts_with(name) && host.exists(format!("{sys}/{e}/partition")) {
            names.push(e);
        }
    }
    let mut stacked = Vec::new();
    let mut i = 0;
    while i < names.len() {
        let n = names[i].clone();
        for h in host
            .list_dir(format!("sys/class/block/{n}/holders"))
            .unwrap_or_default()
        {
            if !names.contains(&h) {
                stacked.push(format!("{n} is part of {h}{}", holder_kind(host, &h)));
                names.push(h);
            }
        }
        i += 1;
    }
    (names, stacked)
}

/// Which of `names` (kernel block device names) are mounted, and where
/// (`/proc/self/mountinfo`, matched by major:minor), each pair once.
fn mounted(host: &HostRoot, names: &[String]) -> Vec<(String, String)> {
    let devnum = |n: &str| -> Option<String> {
        host.read_optional(format!("sys/class/block/{n}/dev"))
            .ok()
            .flatten()
            .map(|s| s.trim().to_string())
    };
    let nums: Vec<(String, String)> = names
        .iter()
        .filter_map(|n| Some((n.clone(), devnum(n)?)))
        .collect();
    let mountinfo = host
        .read_optional("proc/self/mountinfo")
        .ok()
        .flatten()
        .unwrap_or_default();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for l in mountinfo.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (Some(num), Some(point)) = (f.get(2), f.get(4)) else {
            continue;
        };
        if let Some((n, _)) = nums.iter().find(|(_, d)| d == num)
            && seen.insert((n.clone(), point.to_string()))
        {
            out.push((n.clone(), point.to_string()));
        }
    }
    out
}

/// Where a block device (kernel name: `sdb`) is mounted: the device, its
/// partitions and what is stacked on them (an LVM volume or LUKS mapping
/// on `sdb2` mounted on `/` counts), as (kernel name, mount point) pairs.
pub fn mount_points(host: &HostRoot, name: &str) -> Vec<(String, String)> {
    let (names, _) = block_family(host, name);
    mounted(host, &names)
}

fn holder_kind(host: &HostRoot, h: &str) -> String {
    let uuid = host
        .read_optional(format!("sys/class/block/{h}/dm/uuid"))
        .ok()
        .flatten()
        .unwrap_or_default();
    if uuid.starts_with("LVM-") {
        " (LVM)".into()
    } else if uuid.starts_with("CRYPT-") {
        " (LUKS)".into()
    } else if h.starts_with("md") {
        " (MD RAID)".into()
    } else if h.starts_with("dm-") {
        " (device mapper)".into()
    } else {
        String::new()
    }
}

/// The virtio-win driver ISO at the paths distributions install it to.
pub fn virtio_win_iso(host: &HostRoot) -> Option<PathBuf> {
    const PATHS: &[&str] = &[
        "usr/share/virtio-win/virtio-win.iso", // Fedora/RHEL virtio-win, AUR virtio-win
        "usr/share/virtio-win/virtio-win-latest.iso",
        "var/lib/libvirt/images/virtio-win.iso", // where wiki guides download it
        "var/lib/libvirt/boot/virtio-win.iso",
    ];
    PATHS
        .iter()
        .find(|p| host.exists(p))
        .map(|p| PathBuf::from(format!("/{p}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sdb`: `sdb1` mounted on /srv, `sdb2` under LVM (`dm-0` on /).
    fn tree() -> Result<tempfile::TempDir, Box<dyn std::error::Error>> {
        let t = tempfile::tempdir()?;
        let r = t.path();
        let disk =
            r.join("sys/devices/pci0000:00/0000:00:17.0/ata2/host1/target1:0:0/1:0:0:0/block/sdb");
        let put = |p: std::path::PathBuf, text: &str| -> std::io::Result<()> {
            std::fs::create_dir_all(p.parent().unwrap_or(r))?;
            std::fs::write(p, text)
        };
        put(disk.join("dev"), "8:16\n")?;
        put(disk.join("sdb1/partition"), "1\n")?;
        put(disk.join("sdb1/dev"), "8:17\n")?;
        put(disk.join("sdb2/partition"), "2\n")?;
        put(disk.join("sdb2/dev"), "8:18\n")?;
        put(disk.join("sdb2/holders/dm-0"), "")?;
        put(r.join("sys/devices/virtual/block/dm-0/dev"), "254:0\n")?;
        put(
            r.join("sys/devices/virtual/block/dm-0/dm/uuid"),
            "LVM-abc\n",
        )?;
        std::fs::create_dir_all(r.join("sys/class/block"))?;
        let class = r.join("sys/class/block");
        let rel = "../../devices/pci0000:00/0000:00:17.0/ata2/host1/target1:0:0/1:0:0:0/block/sdb";
        std::os::unix::fs::symlink(rel, class.join("sdb"))?;
        std::os::unix::fs::symlink(format!("{rel}/sdb1"), class.join("sdb1"))?;
        std::os::unix::fs::symlink(format!("{rel}/sdb2"), class.join("sdb2"))?;
        std::os::unix::fs::symlink("../../devices/virtual/block/dm-0", class.join("dm-0"))?;
        put(
            r.join("proc/self/mountinfo"),
            "22 1 254:0 / / rw - ext4 /dev/mapper/vg-root rw\n\
             23 22 8:17 / /srv rw - ext4 /dev/sdb1 rw\n\
             24 22 8:17 /x /srv/x rw - ext4 /dev/sdb1 rw\n",
        )?;
        Ok(t)
    }

    #[test]
    fn mount_points_follow_partitions_and_holders() -> Result<(), Box<dyn std::error::Error>> {
        let t = tree()?;
        let host = HostRoot::new(t.path());
        assert_eq!(
            mount_points(&host, "sdb"),
            vec![
                ("dm-0".to_string(), "/".to_string()),
                ("sdb1".to_string(), "/srv".to_string()),
                ("sdb1".to_string(), "/srv/x".to_string()),
            ]
        );
        assert_eq!(mount_points(&host, "sda"), Vec::<(String, String)>::new());
        Ok(())
    }

    #[test]
    fn block_device_free_names_every_use() -> Result<(), Box<dyn std::error::Error>> {
        let t = tree()?;
        let host = HostRoot::new(t.path());
        assert_eq!(
            block_device_free(&host, Path::new("/dev/sdb")),
            Err(
                "/dev/sdb is in use: dm-0 is mounted on / (the host's root); \
                 sdb1 is mounted on /srv; sdb1 is mounted on /srv/x; sdb2 is part of dm-0 (LVM)"
                    .to_string()
            )
        );
        assert!(block_device_free(&host, Path::new("/dev/sdz")).is_err());
        Ok(())
    }
}
