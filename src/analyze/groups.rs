//! IOMMU group verdicts.

use std::borrow::Cow;
use std::collections::BTreeSet;

use serde::Serialize;
use smallvec::SmallVec;

use crate::model::{Device, Inventory, PciAddress};

/// Bridges and root ports (and driverless host bridges) do not make a group
/// dirty: vfio accepts them in a viable group.
pub fn is_group_infrastructure(d: &Device) -> bool {
    match d.class.map(|c| c.class_subclass()) {
        Some(0x0604) | Some(0x0609) => true,
        // A host bridge with a driver (k10temp, amd64_edac, …) is in use.
        Some(0x0600) => d.driver.is_none(),
        _ => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupVerdict {
    /// All endpoints are functions of one physical device.
    Isolated,
    /// Endpoints of more than one device: they can only move together.
    Shared,
    /// Only bridges.
    BridgesOnly,
}

/// Addresses, the first kept inline: most groups hold one device, and a
/// listing can hold tens of thousands of groups.
pub type Addrs = SmallVec<[PciAddress; 1]>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupReport {
    pub id: u32,
    pub devices: Addrs,
    /// Non-bridge members.
    pub endpoints: Addrs,
    pub gpus: Addrs,
    pub verdict: GroupVerdict,
    pub summary: Cow<'static, str>,
}

pub fn analyze_groups(inv: &Inventory) -> Vec<GroupReport> {
    reports(inv).collect()
}

/// The report of each group, in order, made as it is asked for: a report
/// that writes them one by one holds none of them (a listing can hold tens
/// of thousands of groups).
pub fn reports(inv: &Inventory) -> impl Iterator<Item = GroupReport> + '_ {
    inv.iommu.groups.iter().map(move |(id, members)| {
        let endpoints: Addrs = members
            .iter()
            .filter(|a| !inv.device(a).is_some_and(is_group_infrastructure))
            .copied()
            .collect();
        let slots: BTreeSet<(u32, u8, u8)> = endpoints
            .iter()
            .map(|a| (a.domain, a.bus, a.device))
            .collect();
        let gpus: Addrs = members
            .iter()
            .filter(|a| inv.device(a).is_some_and(Device::is_display))
            .copied()
            .collect();
        let verdict = match slots.len() {
            0 => GroupVerdict::BridgesOnly,
            1 => GroupVerdict::Isolated,
            _ => GroupVerdict::Shared,
        };
        let summary = match verdict {
            GroupVerdict::BridgesOnly => Cow::Borrowed("bridges only"),
            GroupVerdict::Isolated if endpoints.len() == 1 => Cow::Borrowed("one device"),
            GroupVerdict::Isolated => {
                Cow::Owned(format!("one device ({} functions)", endpoints.len()))
            }
            GroupVerdict::Shared => Cow::Owned(format!(
                "shared by {} devices: they can only be passed through together",
                slots.len()
            )),
        };
        GroupReport {
            id: *id,
            devices: Addrs::from_slice(members),
            endpoints,
            gpus,
            verdict,
            summary,
        }
    })
}
