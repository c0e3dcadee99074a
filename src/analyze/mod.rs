//! Pure analysis of an [`Inventory`]: GPUs, IOMMU groups, recommendation.
//! No I/O happens here.

pub mod bootenv;
pub mod db;
pub mod gpu;
pub mod groups;
pub mod recommend;

use serde::Serialize;

use crate::model::Inventory;

pub use db::GpuDb;
pub use gpu::{BootEvidence, Gpu, GpuKind, Isolation, QuirkHit};
pub use groups::{GroupReport, GroupVerdict, is_group_infrastructure};
pub use recommend::{Mode, Recommendation};

/// The analysis of one inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Analysis {
    pub gpus: Vec<Gpu>,
    pub groups: Vec<GroupReport>,
    pub recommendation: Recommendation,
}

/// Analyze an inventory with the embedded GPU database.
pub fn analyze(inv: &Inventory) -> Analysis {
    analyze_with(inv, GpuDb::embedded())
}

/// [`analyze`] without the group reports: [`Analysis::groups`] is left
/// empty, for the reports that write [`groups::reports`] as they go (a
/// listing of many groups then holds none of them).
pub fn analyze_without_groups(inv: &Inventory) -> Analysis {
    let db = GpuDb::embedded();
    let gpus = gpu::analyze_gpus(inv, db);
    let recommendation = recommend::recommend(inv, &gpus);
    Analysis {
        gpus,
        groups: Vec::new(),
        recommendation,
    }
}

pub fn analyze_with(inv: &Inventory, db: &GpuDb) -> Analysis {
    let gpus = gpu::analyze_gpus(inv, db);
    let groups = groups::analyze_groups(inv);
    let recommendation = recommend::recommend(inv, &gpus);
    Analysis {
        gpus,
        groups,
        recommendation,
    }
}
