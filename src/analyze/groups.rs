//! IOMMU group verdicts.

use std::collections::BTreeSet;

use serde::Serialize;

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupReport {
    pub id: u32,
    pub devices: Vec<PciAddress>,
    /// Non-bridge members.
    pub endpoints: Vec<PciAddress>,
    pub gpus: Vec<PciAddress>,
    pub verdict: GroupVerdict,
    pub summary: String,
}

pub fn analyze_groups(inv: &Inventory) -> Vec<GroupReport> {
    inv.iommu
        .groups
        .iter()
        .map(|(id, members)| {
            let endpoints: Vec<PciAddress> = members
                .iter()
                .filter(|a| !inv.device(a).is_some_and(is_group_infrastructure))
                .copied()
                .collect();
            let slots: BTreeSet<(u32, u8, u8)> = endpoints
                .iter()
                .map(|a| (a.domain, a.bus, a.device))
                .collect();
            let gpus: Vec<PciAddress> = members
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
                GroupVerdict::BridgesOnly => "bridges only".to_string(),
                GroupVerdict::Isolated if endpoints.len() == 1 => "one device".to_string(),
                GroupVerdict::Isolated => {
                    format!("one device ({} functions)", endpoints.len())
                }
                GroupVerdict::Shared => format!(
                    "shared by {} devices: they can only be passed through together",
                    slots.len()
                ),
            };
            GroupReport {
                id: *id,
                devices: members.clone(),
                endpoints,
                gpus,
                verdict,
                summary,
            }
        })
        .collect()
}
