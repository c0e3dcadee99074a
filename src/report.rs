//! The versioned JSON documents exliar prints (`--json`).
//! Documented in `docs/json.md`; schemas in `docs/schema/`.

use serde::Serialize;

use crate::analyze::{Analysis, Gpu, Recommendation};
use crate::host::stacks::{DevNode, GpuStack, Stacks, Userspace};
use crate::model::{Device, HostFacts, Inventory, IommuState, Source, Warning};

pub const INVENTORY_SCHEMA: &str = "exliar.inventory/1";
pub const IOMMU_SCHEMA: &str = "exliar.iommu/1";

#[derive(Debug, Serialize)]
pub struct IommuSummary<'a> {
    pub enabled: Option<bool>,
    pub units: &'a [String],
    pub group_count: usize,
}

impl<'a> IommuSummary<'a> {
    fn of(s: &'a IommuState) -> Self {
        Self {
            enabled: s.enabled,
            units: &s.units,
            group_count: s.groups.len(),
        }
    }
}

/// The IOMMU group reports of an inventory ([`crate::analyze::groups::reports`]),
/// made while they are written: none is held.
#[derive(Debug)]
pub struct GroupReports<'a>(pub &'a Inventory);

impl Serialize for GroupReports<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(crate::analyze::groups::reports(self.0))
    }
}

/// One GPU of the inventory report: the analysis, and (for a host root,
/// not a pasted listing) its driver and stack.
#[derive(Debug, Serialize)]
pub struct GpuEntry<'a> {
    #[serde(flatten)]
    pub gpu: &'a Gpu,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<&'a GpuStack>,
}

/// `exliar scan --json` / `exliar analyze --json`.
#[derive(Debug, Serialize)]
pub struct InventoryReport<'a> {
    pub schema: &'static str,
    pub exliar_version: &'static str,
    pub source: &'a Source,
    pub host: &'a HostFacts,
    pub iommu: IommuSummary<'a>,
    pub gpus: Vec<GpuEntry<'a>>,
    pub recommendation: &'a Recommendation,
    pub iommu_groups: GroupReports<'a>,
    pub devices: &'a [Device],
    /// Device nodes shared by the GPUs of a driver (host roots only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_nodes: Option<&'a [DevNode]>,
    /// User-space accelerator stacks (host roots only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userspace: Option<&'a Userspace>,
    pub warnings: Vec<&'a Warning>,
}

impl<'a> InventoryReport<'a> {
    pub fn new(inv: &'a Inventory, a: &'a Analysis, stacks: Option<&'a Stacks>) -> Self {
        Self {
            schema: INVENTORY_SCHEMA,
            exliar_version: env!("CARGO_PKG_VERSION"),
            source: &inv.source,
            host: &inv.host,
            iommu: IommuSummary::of(&inv.iommu),
            gpus: a
                .gpus
                .iter()
                .map(|g| GpuEntry {
                    gpu: g,
                    stack: stacks.and_then(|s| s.gpu(&g.address)),
                })
                .collect(),
            recommendation: &a.recommendation,
            iommu_groups: GroupReports(inv),
            devices: &inv.devices,
            shared_nodes: stacks.map(|s| s.shared_nodes.as_slice()),
            userspace: stacks.map(|s| &s.userspace),
            warnings: inv
                .warnings
                .iter()
                .chain(stacks.into_iter().flat_map(|s| s.warnings.iter()))
                .collect(),
        }
    }
}

/// `exliar iommu --json`.
#[derive(Debug, Serialize)]
pub struct IommuReport<'a> {
    pub schema: &'static str,
    pub exliar_version: &'static str,
    pub source: &'a Source,
    pub iommu: IommuSummary<'a>,
    pub iommu_groups: GroupReports<'a>,
    pub warnings: &'a [Warning],
}

impl<'a> IommuReport<'a> {
    pub fn new(inv: &'a Inventory) -> Self {
        Self {
            schema: IOMMU_SCHEMA,
            exliar_version: env!("CARGO_PKG_VERSION"),
            source: &inv.source,
            iommu: IommuSummary::of(&inv.iommu),
            iommu_groups: GroupReports(inv),
            warnings: &inv.warnings,
        }
    }
}
