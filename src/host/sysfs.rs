//! Build an [`Inventory`] from a sysfs/procfs tree under a host root.

use std::path::{Path, PathBuf};

use crate::model::{
    ClassCode, Device, HostFacts, Inventory, IommuState, PciAddress, Source, Warning,
};

use super::pciids::{PCI_IDS_PATHS, PciIds};
use super::root::HostRoot;

const PCI_DEVICES: &str = "sys/bus/pci/devices";
const IOMMU_GROUPS: &str = "sys/kernel/iommu_groups";
const IOMMU_CLASS: &str = "sys/class/iommu";

/// Nothing usable could be read.
#[derive(Debug, thiserror::Error)]
#[error("no PCI devices could be read from {path}")]
pub struct NothingRead {
    pub path: String,
    #[source]
    pub source: Option<super::root::ReadError>,
}

/// Load `pci.ids` from the host root, or an empty database.
pub fn load_pci_ids(host: &HostRoot) -> PciIds {
    for p in PCI_IDS_PATHS {
        if let Ok(Some(text)) = host.read_optional(p) {
            return PciIds::new(text);
        }
    }
    PciIds::empty()
}

/// Read the whole inventory. Missing or garbled attributes become warnings;
/// only an unreadable (or absent) PCI device directory is an error.
pub fn read_inventory(host: &HostRoot, ids: &PciIds) -> Result<Inventory, NothingRead> {
    let mut warnings = Vec::new();
    let names = host.list_dir(PCI_DEVICES).map_err(|e| NothingRead {
        path: host.display(Path::new(PCI_DEVICES)),
        source: Some(e),
    })?;
    let mut devices = Vec::with_capacity(names.len());
    for name in &names {
        let Ok(address) = PciAddress::parse(name) else {
            warnings.push(Warning::new(
                host.display(&Path::new(PCI_DEVICES).join(name)),
                "not a PCI address; entry skipped",
            ));
            continue;
        };
        devices.push(read_device(host, ids, address, &mut warnings));
    }
    let iommu = read_iommu(host, &mut warnings);
    let host_facts = read_host_facts(host);
    let mut inv = Inventory {
        source: Source::Sysfs {
            root: host.path().display().to_string(),
        },
        devices,
        iommu,
        host: host_facts,
        warnings,
    };
    inv.normalize();
    Ok(inv)
}

/// Parse a sysfs hex attribute such as `0x10de\n`.
pub fn parse_hex(text: &str) -> Option<u32> {
    let t = text.trim();
    let h = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X"))?;
    if h.is_empty() || h.len() > 8 {
        return None;
    }
    u32::from_str_radix(h, 16).ok()
}

/// Parse a decimal attribute (`numa_node` may be `-1`).
pub fn parse_dec<T: std::str::FromStr>(text: &str) -> Option<T> {
    text.trim().parse().ok()
}

/// The upstream bridges named in a device's sysfs path, nearest first.
/// `../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0` → `[0000:00:01.0]`.
pub fn parents_from_link(target: &Path, me: PciAddress) -> Vec<PciAddress> {
    let mut chain: Vec<PciAddress> = target
        .components()
        .filter_map(|c| c.as_os_str().to_str())
        .filter_map(|s| PciAddress::parse(s).ok())
        .collect();
    chain.retain(|a| *a != me);
    chain.reverse();
    chain
}

fn read_device(
    host: &HostRoot,
    ids: &PciIds,
    address: PciAddress,
    warnings: &mut Vec<Warning>,
) -> Device {
    let mut d = Device::new(address);
    let link = Path::new(PCI_DEVICES).join(address.to_string());
    // Resolve the device directory once; attribute reads then need no links.
    let dir: PathBuf = match host.resolve(&link) {
        Ok(p) => p,
        Err(e) => {
            warnings.push(Warning::new(host.display(&link), e.source.to_string()));
            return d;
        }
    };
    if let Ok(target) = std::fs::read_link(host.path().join(&link)) {
        d.parents = parents_from_link(&target, address);
    }

    let mut a = Attrs {
        host,
        dir: &dir,
        warnings,
    };
    d.class = a.hex("class", true, 0xff_ffff).map(ClassCode);
    d.vendor_id = a.hex("vendor", true, 0xffff).map(|v| v as u16);
    d.device_id = a.hex("device", true, 0xffff).map(|v| v as u16);
    d.subsystem_vendor_id = a.hex("subsystem_vendor", false, 0xffff).map(|v| v as u16);
    d.subsystem_device_id = a.hex("subsystem_device", false, 0xffff).map(|v| v as u16);
    d.revision = a.hex("revision", false, 0xff).map(|v| v as u8);
    d.driver_override = a
        .text("driver_override", false)
        .filter(|s| !s.is_empty() && s != "(null)");
    if d.class.is_some_and(|c| c.class_subclass() == 0x0300) {
        d.boot_vga = a.text("boot_vga", false).and_then(|s| match s.as_str() {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        });
    }
    d.reset_methods = a
        .text("reset_method", false)
        .map(|s| s.split_whitespace().map(String::from).collect());
    d.numa_node = a.dec("numa_node");
    d.link.current_speed = a
        .text("current_link_speed", false)
        .filter(|s| !s.is_empty());
    d.link.current_width = a.dec("current_link_width");
    d.link.max_speed = a.text("max_link_speed", false).filter(|s| !s.is_empty());
    d.link.max_width = a.dec("max_link_width");
    d.sriov.total_vfs = a.dec("sriov_totalvfs");
    d.sriov.num_vfs = a.dec("sriov_numvfs");
    d.driver = a.link("driver");
    d.iommu_group = a.link("iommu_group").and_then(|g| g.parse().ok());
    d.sriov.physfn = a.link("physfn").and_then(|x| PciAddress::parse(&x).ok());

    // One directory listing gives the optional entries: rom, virtfn*, device links.
    match host.list_dir(&dir) {
        Ok(entries) => {
            d.rom = Some(entries.iter().any(|e| e == "rom"));
            for e in &entries {
                if e.starts_with("virtfn") {
                    if let Some(x) = a.link(e).and_then(|x| PciAddress::parse(&x).ok()) {
                        d.sriov.virtfns.push(x);
                    }
                } else if let Some(x) = e.strip_prefix("consumer:pci:") {
                    d.consumers.extend(PciAddress::parse(x).ok());
                } else if let Some(x) = e.strip_prefix("supplier:pci:") {
                    d.suppliers.extend(PciAddress::parse(x).ok());
                }
            }
            d.sriov.virtfns.sort();
        }
        Err(e) => a
            .warnings
            .push(Warning::new(host.display(&dir), e.source.to_string())),
    }

    if let Some(v) = d.vendor_id {
        d.vendor_name = ids.vendor(v);
        if let Some(dev) = d.device_id {
            d.device_name = ids.device(v, dev);
        }
    }
    d
}

/// Attribute reads of one device directory, collecting warnings.
struct Attrs<'a> {
    host: &'a HostRoot,
    dir: &'a Path,
    warnings: &'a mut Vec<Warning>,
}

impl Attrs<'_> {
    fn warn(&mut self, name: &str, msg: String) {
        self.warnings
            .push(Warning::new(self.host.display(&self.dir.join(name)), msg));
    }

    /// Trimmed text of an attribute; a missing required one is a warning.
    fn text(&mut self, name: &str, required: bool) -> Option<String> {
        match self.host.read_string(self.dir.join(name)) {
            Ok(s) => Some(s.trim().to_string()),
            Err(e) if e.is_not_found() && !required => None,
            Err(e) => {
                self.warn(name, e.source.to_string());
                None
            }
        }
    }

    fn hex(&mut self, name: &str, required: bool, max: u32) -> Option<u32> {
        let text = self.text(name, required)?;
        let v = parse_hex(&text).filter(|v| *v <= max);
        if v.is_none() {
            self.warn(name, format!("garbled value {text:?}; left unknown"));
        }
        v
    }

    fn dec<T: std::str::FromStr>(&mut self, name: &str) -> Option<T> {
        let text = self.text(name, false)?;
        let v = parse_dec(&text);
        if v.is_none() && !text.is_empty() {
            self.warn(name, format!("garbled value {text:?}; left unknown"));
        }
        v
    }

    fn link(&mut self, name: &str) -> Option<String> {
        match self.host.link_name(self.dir.join(name)) {
            Ok(n) => n,
            Err(e) => {
                self.warn(name, e.source.to_string());
                None
            }
        }
    }
}

fn read_iommu(host: &HostRoot, warnings: &mut Vec<Warning>) -> IommuState {
    let mut state = IommuState::default();
    match host.list_dir(IOMMU_GROUPS) {
        Ok(groups) => {
            state.enabled = Some(false);
            for g in groups {
                let Ok(id) = g.parse::<u32>() else {
                    warnings.push(Warning::new(
                        host.display(&Path::new(IOMMU_GROUPS).join(&g)),
                        "not a group number; skipped",
                    ));
                    continue;
                };
                let dir = Path::new(IOMMU_GROUPS).join(&g).join("devices");
                let members = match host.list_dir(&dir) {
                    Ok(m) => m,
                    Err(e) => {
                        warnings.push(Warning::new(host.display(&dir), e.source.to_string()));
                        continue;
                    }
                };
                let addrs: Vec<PciAddress> = members
                    .iter()
                    .filter_map(|m| PciAddress::parse(m).ok())
                    .collect();
                // Groups holding only non-PCI devices (platform devices) are
                // still groups; they count towards "enabled".
                state.enabled = Some(true);
                state.groups.insert(id, addrs);
            }
        }
        Err(e) if e.is_not_found() => state.enabled = Some(false),
        Err(e) => warnings.push(Warning::new(
            host.display(Path::new(IOMMU_GROUPS)),
            e.source.to_string(),
        )),
    }
    if let Ok(units) = host.list_dir(IOMMU_CLASS) {
        state.units = units;
    }
    // Groups with no PCI members are kept out of the table: exliar reasons
    // about PCI functions only.
    state.groups.retain(|_, m| !m.is_empty());
    state
}

fn read_host_facts(host: &HostRoot) -> HostFacts {
    let mut f = HostFacts::default();
    if let Ok(Some(os)) = host.read_optional("etc/os-release") {
        f.os_pretty_name = os_release_value(&os, "PRETTY_NAME");
        f.os_id = os_release_value(&os, "ID");
    } else if let Ok(Some(os)) = host.read_optional("usr/lib/os-release") {
        f.os_pretty_name = os_release_value(&os, "PRETTY_NAME");
        f.os_id = os_release_value(&os, "ID");
    }
    if let Ok(Some(c)) = host.read_optional("proc/cmdline") {
        f.kernel_cmdline = Some(c.trim().to_string());
    }
    if let Ok(Some(cpu)) = host.read_optional("proc/cpuinfo") {
        f.cpu_vendor = cpuinfo_value(&cpu, "vendor_id");
        f.cpu_model = cpuinfo_value(&cpu, "model name");
    }
    f
}

/// A value from os-release (shell-like `KEY=value`, optionally quoted).
pub fn os_release_value(text: &str, key: &str) -> Option<String> {
    text.lines().rev().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        if k.trim() != key {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        Some(v.to_string())
    })
}

/// The first value of a `/proc/cpuinfo` key.
pub fn cpuinfo_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hex_attributes() {
        assert_eq!(parse_hex("0x10de\n"), Some(0x10de));
        assert_eq!(parse_hex("0x030000"), Some(0x030000));
        assert_eq!(parse_hex("10de"), None);
        assert_eq!(parse_hex("0x"), None);
        assert_eq!(parse_hex("0xzz"), None);
    }

    #[test]
    fn parents_come_from_the_link_path() {
        let me = PciAddress::new(0, 3, 0, 0);
        let p = parents_from_link(
            Path::new(
                "../../../devices/pci0000:00/0000:00:01.1/0000:01:00.0/0000:02:00.0/0000:03:00.0",
            ),
            me,
        );
        let want: Vec<PciAddress> = ["0000:02:00.0", "0000:01:00.0", "0000:00:01.1"]
            .iter()
            .filter_map(|s| PciAddress::parse(s).ok())
            .collect();
        assert_eq!(p, want);
    }

    #[test]
    fn os_release_quotes() {
        let t = "NAME=\"Debian GNU/Linux\"\nID=debian\nPRETTY_NAME='Debian 12'\n";
        assert_eq!(os_release_value(t, "ID").as_deref(), Some("debian"));
        assert_eq!(
            os_release_value(t, "PRETTY_NAME").as_deref(),
            Some("Debian 12")
        );
        assert_eq!(os_release_value(t, "VERSION"), None);
    }

    proptest! {
        #[test]
        fn attribute_parsers_never_panic(s in "\\PC{0,24}") {
            let _ = parse_hex(&s);
            let _ = parse_dec::<i32>(&s);
            let _ = os_release_value(&s, "ID");
            let _ = cpuinfo_value(&s, "flags");
        }
    }
}
