//! The versioned JSON documents exliar prints (`--json`).
//! Documented in `docs/json.md`; schemas in `docs/schema/`.

use serde::Serialize;

use crate::analyze::{Analysis, Gpu, GroupReport, Recommendation};
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

/// `exliar scan --json` / `exliar analyze --json`.
#[derive(Debug, Serialize)]
pub struct InventoryReport<'a> {
    pub schema: &'static str,
    pub exliar_version: &'static str,
    pub source: &'a Source,
    pub host: &'a HostFacts,
    pub iommu: IommuSummary<'a>,
    pub gpus: &'a [Gpu],
    pub recommendation: &'a Recommendation,
    pub iommu_groups: &'a [GroupReport],
    pub devices: &'a [Device],
    pub warnings: &'a [Warning],
}

impl<'a> InventoryReport<'a> {
    pub fn new(inv: &'a Inventory, a: &'a Analysis) -> Self {
        Self {
            schema: INVENTORY_SCHEMA,
            exliar_version: env!("CARGO_PKG_VERSION"),
            source: &inv.source,
            host: &inv.host,
            iommu: IommuSummary::of(&inv.iommu),
            gpus: &a.gpus,
            recommendation: &a.recommendation,
            iommu_groups: &a.groups,
            devices: &inv.devices,
            warnings: &inv.warnings,
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
    pub iommu_groups: &'a [GroupReport],
    pub warnings: &'a [Warning],
}

impl<'a> IommuReport<'a> {
    pub fn new(inv: &'a Inventory, a: &'a Analysis) -> Self {
        Self {
            schema: IOMMU_SCHEMA,
            exliar_version: env!("CARGO_PKG_VERSION"),
            source: &inv.source,
            iommu: IommuSummary::of(&inv.iommu),
            iommu_groups: &a.groups,
            warnings: &inv.warnings,
        }
    }
}
