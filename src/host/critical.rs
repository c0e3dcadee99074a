//! Devices the host cannot lose: the controller of the root file system's
//! disk and the network adapter with the default route.

use std::path::Path;

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
    mountinfo.lines().find_map(|l| {
        let mut fields = l.split(' ');
        let mount_point = fields.nth(4)?;
        if mount_point != "/" {
            return None;
        }
        let (_, after) = l.split_once(" - ")?;
        let mut rest = after.split(' ');
        let _fstype = rest.next()?;
        rest.next().map(str::to_string)
    })
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
        && let Some(src) = root_mount_source(&mi)
    {
        let name = Path::new(&src)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // A partition's block device sits below its disk; both resolve
        // through the controller.
        if !name.is_empty()
            && let Ok(p) = host.resolve(&Path::new("sys/class/block").join(&name))
            && let Some(a) = pci_function_in_path(&p)
        {
            out.push(Critical {
                address: a,
                why: format!("root file system on {src}"),
            });
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
}
