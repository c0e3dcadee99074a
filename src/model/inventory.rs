//! Everything exliar read about one host.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Device, PciAddress};

/// Where the inventory came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Source {
    /// A live host or a tree laid out like one (`--root`).
    Sysfs { root: String },
    /// Pasted text (`exliar analyze`).
    Listing { files: Vec<String> },
}

/// Whether the kernel has an active IOMMU, and its groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IommuState {
    /// `Some(true)` when groups exist; `Some(false)` when the group directory
    /// is readable and empty; `None` when the source does not say.
    pub enabled: Option<bool>,
    /// IOMMU hardware units the kernel registered (`/sys/class/iommu`).
    pub units: Vec<String>,
    pub groups: BTreeMap<u32, Vec<PciAddress>>,
}

/// Facts about the host beyond PCI, when the source has them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub os_pretty_name: Option<String>,
    pub os_id: Option<String>,
    pub kernel_cmdline: Option<String>,
    pub cpu_vendor: Option<String>,
    pub cpu_model: Option<String>,
}

/// Something that could not be read or understood. The report is still made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// The file (or `file:line`) concerned.
    pub location: String,
    pub message: String,
}

impl Warning {
    pub fn new(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            location: location.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// The inventory of one host: every PCI function, the IOMMU state, host facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub source: Source,
    /// Sorted by address.
    pub devices: Vec<Device>,
    pub iommu: IommuState,
    pub host: HostFacts,
    pub warnings: Vec<Warning>,
}

impl Inventory {
    /// The functions in `address`'s slot (same domain, bus and device), in
    /// address order: a binary search, not a scan.
    pub fn slot(&self, address: &PciAddress) -> &[Device] {
        let key = |d: &Device| (d.address.domain, d.address.bus, d.address.device);
        let want = (address.domain, address.bus, address.device);
        let start = self.devices.partition_point(|d| key(d) < want);
        let len = self.devices[start..].partition_point(|d| key(d) == want);
        &self.devices[start..start + len]
    }

    pub fn device(&self, address: &PciAddress) -> Option<&Device> {
        self.devices
            .binary_search_by(|d| d.address.cmp(address))
            .ok()
            .map(|i| &self.devices[i])
    }

    /// Sort devices and fill in each device's group from the group table
    /// (and the reverse), so both views agree.
    pub fn normalize(&mut self) {
        self.devices.sort_by_key(|d| d.address);
        self.devices.dedup_by(|a, b| a.address == b.address);
        for (gid, members) in &mut self.iommu.groups {
            members.sort();
            members.dedup();
            for m in members.iter() {
                if let Ok(i) = self.devices.binary_search_by(|d| d.address.cmp(m))
                    && self.devices[i].iommu_group.is_none()
                {
                    self.devices[i].iommu_group = Some(*gid);
                }
            }
        }
        // Devices are sorted, so each group's new members come in order:
        // appended, then merged once (inserting one by one was quadratic in
        // a large group).
        let mut added: BTreeMap<u32, Vec<PciAddress>> = BTreeMap::new();
        for d in &self.devices {
            if let Some(g) = d.iommu_group {
                added.entry(g).or_default().push(d.address);
            }
        }
        for (g, new) in added {
            let members = self.iommu.groups.entry(g).or_default();
            members.extend(new);
            members.sort();
            members.dedup();
        }
        if self.iommu.enabled.is_none() && !self.iommu.groups.is_empty() {
            self.iommu.enabled = Some(true);
        }
    }
}
