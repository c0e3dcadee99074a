//! GPU classification: kind, vendor, integrated or discrete, boot display,
//! the card's functions, group peers, isolation, identical ids, quirks.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::model::{Device, Inventory, PciAddress, hex16};

use super::db::{GpuDb, QuirkSubject};
use super::groups::is_group_infrastructure;

/// VGA (0300), 3D (0302) or other display (0380, 0301).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuKind {
    Vga,
    #[serde(rename = "3d")]
    ThreeD,
    Display,
}

impl GpuKind {
    pub fn of(subclass: u8) -> Self {
        match subclass {
            0x00 => GpuKind::Vga,
            0x02 => GpuKind::ThreeD,
            _ => GpuKind::Display,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            GpuKind::Vga => "VGA",
            GpuKind::ThreeD => "3D",
            GpuKind::Display => "display",
        }
    }
}

/// Whether the GPU's IOMMU group(s) hold only its own functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    Isolated,
    Shared,
    NoIommu,
    Unknown,
}

impl Isolation {
    pub fn label(self) -> &'static str {
        match self {
            Isolation::Isolated => "isolated",
            Isolation::Shared => "shared",
            Isolation::NoIommu => "no IOMMU",
            Isolation::Unknown => "unknown",
        }
    }
}

/// How the boot display was determined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootEvidence {
    /// The kernel's `boot_vga` attribute.
    BootVga,
    /// No `boot_vga` said yes; exliar inferred it (BMC, integrated, or the
    /// first VGA-class device).
    Inferred,
}

/// A quirk that applies to a GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuirkHit {
    pub id: String,
    pub title: String,
    pub advice: String,
    pub source: String,
    /// What the quirk asks of a VM (`romfile`: a clean ROM file), or empty.
    pub needs: String,
}

/// One GPU and everything exliar concluded about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gpu {
    pub address: PciAddress,
    #[serde(with = "hex16")]
    pub vendor_id: Option<u16>,
    #[serde(with = "hex16")]
    pub device_id: Option<u16>,
    pub vendor: String,
    pub name: String,
    pub kind: GpuKind,
    pub integrated: bool,
    pub bmc: bool,
    pub boot_display: bool,
    pub boot_display_evidence: Option<BootEvidence>,
    pub driver: Option<String>,
    pub iommu_group: Option<u32>,
    /// Every function of the card, the GPU itself included.
    pub functions: Vec<PciAddress>,
    /// IOMMU groups of the card's functions.
    pub groups: Vec<u32>,
    /// Other non-bridge devices in those groups.
    pub group_peers: Vec<PciAddress>,
    pub isolation: Isolation,
    /// Other GPUs with the same ids: at most [`MAX_TWINS_LISTED`] of them
    /// (a pasted listing can hold thousands of identical lines).
    pub identical_ids_with: Vec<PciAddress>,
    /// How many other GPUs have the same ids (`identical_ids_with` lists
    /// the first ones).
    #[serde(skip)]
    pub identical_ids_count: usize,
    /// Set when this function is an SR-IOV virtual function.
    pub virtual_function_of: Option<PciAddress>,
    pub reset_methods: Option<Vec<String>>,
    pub quirks: Vec<String>,
    #[serde(skip)]
    pub quirk_details: Vec<QuirkHit>,
    pub verdict: String,
}

impl Gpu {
    /// "the boot display", saying so when exliar only inferred it (no
    /// `boot_vga` attribute said yes), and from what: human words that
    /// match `boot_display_evidence`. `None` when it is not the boot display.
    pub fn boot_display_words(&self) -> Option<String> {
        if !self.boot_display {
            return None;
        }
        Some(match self.boot_display_evidence {
            Some(BootEvidence::Inferred) => {
                let why = if self.bmc {
                    "a BMC display"
                } else if self.integrated {
                    "integrated graphics"
                } else {
                    "the first display device"
                };
                format!("the boot display (inferred: {why})")
            }
            _ => "the boot display".to_string(),
        })
    }
}

/// Short vendor name: `amd`, `nvidia`, `intel`, … or `vendor-xxxx`.
pub fn vendor_short(vendor_id: Option<u16>, vendor_name: Option<&str>) -> String {
    let by_id = vendor_id.and_then(|v| {
        Some(match v {
            0x1002 | 0x1022 => "amd",
            0x10de => "nvidia",
            0x8086 => "intel",
            0x1a03 => "aspeed",
            0x102b => "matrox",
            0x1234 => "qemu",
            0x1af4 | 0x1b36 => "redhat",
            0x15ad => "vmware",
            0x1414 => "microsoft",
            0x5333 => "s3",
            0x1013 => "cirrus",
            0x18ca => "xgi",
            0x126f => "siliconmotion",
            0x1ed5 => "moorethreads",
            _ => return None,
        })
    });
    if let Some(s) = by_id {
        return s.to_string();
    }
    if let Some(n) = vendor_name {
        let l = n.to_ascii_lowercase();
        for (needle, short) in [
            ("nvidia", "nvidia"),
            ("advanced micro devices", "amd"),
            ("[amd", "amd"),
            ("ati technologies", "amd"),
            ("intel", "intel"),
            ("aspeed", "aspeed"),
            ("matrox", "matrox"),
        ] {
            if l.contains(needle) {
                return short.to_string();
            }
        }
    }
    match vendor_id {
        Some(v) => format!("vendor-{v:04x}"),
        None => "unknown".to_string(),
    }
}

/// Name fragments of AMD APU graphics, for listings that carry no ids.
const AMD_APU_NAMES: &[&str] = &[
    "raven",
    "picasso",
    "renoir",
    "cezanne",
    "lucienne",
    "barcelo",
    "rembrandt",
    "raphael",
    "phoenix",
    "mendocino",
    "granite ridge",
    "strix",
    "van gogh",
    "vega mobile",
];

fn is_integrated(d: &Device, db: &GpuDb) -> bool {
    let vendor = vendor_short(d.vendor_id, d.vendor_name.as_deref());
    if vendor == "intel" && d.address.bus == 0 {
        return true;
    }
    if db.integrated(d.vendor_id, d.device_id).is_some() {
        return true;
    }
    if d.device_id.is_none() && vendor == "amd" {
        let n = d.device_name.as_deref().unwrap_or("").to_ascii_lowercase();
        return AMD_APU_NAMES.iter().any(|a| n.contains(a));
    }
    false
}

fn same_vendor(a: &Device, b: &Device) -> bool {
    match (a.vendor_id, b.vendor_id) {
        (Some(x), Some(y)) => x == y,
        _ => {
            vendor_short(a.vendor_id, a.vendor_name.as_deref())
                == vendor_short(b.vendor_id, b.vendor_name.as_deref())
        }
    }
}

/// At most this many identical-id GPUs are listed per GPU (the full lists
/// grow with the square of their number).
pub const MAX_TWINS_LISTED: usize = 32;

/// At most this many addresses are spelled out in a sentence.
pub const MAX_NAMED: usize = 8;

/// `a, b, c` — or the first [`MAX_NAMED`] of `shown` and `and N more`
/// (`total` counts every one, listed or not).
pub fn named_list(shown: &[PciAddress], total: usize) -> String {
    let mut s = shown
        .iter()
        .take(MAX_NAMED)
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let named = shown.len().min(MAX_NAMED);
    if total > named {
        s.push_str(&format!(" and {} more", total - named));
    }
    s
}

/// Classes of sibling functions that belong to a graphics card.
const CARD_FUNCTION_CLASSES: &[u16] = &[0x0403, 0x0401, 0x0c03, 0x0c80];

/// The card's functions: the GPU, its same-slot audio/USB/UCSI siblings (of
/// the GPU's vendor for integrated graphics), and device-link partners.
pub fn card_functions(inv: &Inventory, gpu: &Device, integrated: bool) -> Vec<PciAddress> {
    let mut f: BTreeSet<PciAddress> = BTreeSet::new();
    f.insert(gpu.address);
    for d in inv.slot(&gpu.address) {
        if d.address == gpu.address {
            continue;
        }
        if d.sriov.physfn.is_some() {
            continue;
        }
        let class_ok = d
            .class
            .is_some_and(|c| CARD_FUNCTION_CLASSES.contains(&c.class_subclass()));
        // A discrete card's slot is one physical device: all its audio/USB/
        // UCSI functions belong to it. An APU's graphics slot also holds
        // chipset USB and audio of the CPU's vendor (1022 beside 1002): only
        // the GPU vendor's functions are the GPU's.
        if class_ok && (!integrated || same_vendor(d, gpu)) {
            f.insert(d.address);
        }
    }
    for a in gpu.consumers.iter().chain(&gpu.suppliers) {
        if inv.device(a).is_some() {
            f.insert(*a);
        }
    }
    f.into_iter().collect()
}

/// Analyze every display-class function.
pub fn analyze_gpus(inv: &Inventory, db: &GpuDb) -> Vec<Gpu> {
    let displays: Vec<&Device> = inv.devices.iter().filter(|d| d.is_display()).collect();
    let boot = boot_display(&displays, db);
    let iommu_off = inv.iommu.enabled == Some(false);

    let mut gpus: Vec<Gpu> = displays
        .iter()
        .map(|d| {
            let integrated = is_integrated(d, db);
            let functions = card_functions(inv, d, integrated);
            let mut groups: BTreeSet<u32> = BTreeSet::new();
            let mut any_unknown = false;
            for f in &functions {
                match inv.device(f).and_then(|x| x.iommu_group) {
                    Some(g) => {
                        groups.insert(g);
                    }
                    None => any_unknown = true,
                }
            }
            let mut peers: BTreeSet<PciAddress> = BTreeSet::new();
            for g in &groups {
                for m in inv.iommu.groups.get(g).map(Vec::as_slice).unwrap_or(&[]) {
                    if functions.contains(m) {
                        continue;
                    }
                    if inv.device(m).is_some_and(is_group_infrastructure) {
                        continue;
                    }
                    peers.insert(*m);
                }
            }
            let isolation = if iommu_off {
                Isolation::NoIommu
            } else if d.iommu_group.is_none() || (groups.is_empty() && any_unknown) {
                Isolation::Unknown
            } else if peers.is_empty() {
                Isolation::Isolated
            } else {
                Isolation::Shared
            };
            let bmc = db.bmc(d.vendor_id, d.device_id).is_some()
                || (d.vendor_id.is_none()
                    && vendor_short(None, d.vendor_name.as_deref()) == "aspeed");
            let (boot_display, boot_display_evidence) = match boot {
                Some((a, ev)) if a == d.address => (true, Some(ev)),
                _ => (false, None),
            };
            let card_classes: Vec<u16> = functions
                .iter()
                .filter_map(|a| inv.device(a))
                .filter(|x| same_vendor(x, d))
                .filter_map(|x| x.class.map(|c| c.class_subclass()))
                .collect();
            let quirk_details: Vec<QuirkHit> = db
                .quirks_for(QuirkSubject {
                    vendor_id: d.vendor_id,
                    device_id: d.device_id,
                    boot_display,
                    card_classes: &card_classes,
                })
                .into_iter()
                .map(|q| QuirkHit {
                    id: q.id.clone(),
                    title: q.title.clone(),
                    advice: q.advice.clone(),
                    needs: q.needs.clone(),
                    source: q.source.clone(),
                })
                .collect();
            Gpu {
                address: d.address,
                vendor_id: d.vendor_id,
                device_id: d.device_id,
                vendor: vendor_short(d.vendor_id, d.vendor_name.as_deref()),
                name: d.display_name(),
                kind: GpuKind::of(d.class.map_or(0, |c| c.subclass())),
                integrated,
                bmc,
                boot_display,
                boot_display_evidence,
                driver: d.driver.clone(),
                iommu_group: d.iommu_group,
                functions,
                groups: groups.into_iter().collect(),
                group_peers: peers.into_iter().collect(),
                isolation,
                identical_ids_with: Vec::new(),
                identical_ids_count: 0,
                virtual_function_of: d.sriov.physfn,
                reset_methods: d.reset_methods.clone(),
                quirks: quirk_details.iter().map(|q| q.id.clone()).collect(),
                quirk_details,
                verdict: String::new(),
            }
        })
        .collect();

    // Identical vendor:device pairs (or identical names when ids are unknown).
    let keys: Vec<Option<String>> = displays
        .iter()
        .map(|d| match (d.vendor_id, d.device_id) {
            (Some(v), Some(x)) => Some(format!("{v:04x}:{x:04x}")),
            _ => d
                .device_name
                .as_ref()
                .map(|n| format!("{}|{n}", d.vendor_name.as_deref().unwrap_or(""))),
        })
        .collect();
    // Grouped by key once (comparing every pair was quadratic).
    let mut by_key: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        if let Some(k) = k {
            by_key.entry(k.as_str()).or_default().push(i);
        }
    }
    for same in by_key.values().filter(|v| v.len() > 1) {
        for &i in same {
            let twins: Vec<PciAddress> = same
                .iter()
                .filter(|&&j| j != i)
                .take(MAX_TWINS_LISTED)
                .map(|&j| gpus[j].address)
                .collect();
            gpus[i].identical_ids_with = twins;
            gpus[i].identical_ids_count = same.len() - 1;
        }
    }
    for g in &mut gpus {
        g.verdict = verdict(g, inv);
    }
    gpus
}

/// Which display device the firmware used: `boot_vga`, else inferred.
fn boot_display(displays: &[&Device], db: &GpuDb) -> Option<(PciAddress, BootEvidence)> {
    if let Some(d) = displays.iter().find(|d| d.boot_vga == Some(true)) {
        return Some((d.address, BootEvidence::BootVga));
    }
    let vga: Vec<&&Device> = displays
        .iter()
        .filter(|d| d.class.is_some_and(|c| c.class_subclass() == 0x0300))
        .collect();
    let pick = vga
        .iter()
        .find(|d| db.bmc(d.vendor_id, d.device_id).is_some())
        .or_else(|| vga.iter().find(|d| is_integrated(d, db)))
        .or_else(|| vga.first())
        .map(|d| d.address)
        .or_else(|| displays.first().map(|d| d.address));
    pick.map(|a| (a, BootEvidence::Inferred))
}

fn peer_desc(inv: &Inventory, a: &PciAddress) -> String {
    match inv.device(a).and_then(|d| d.class) {
        Some(c) => format!("{a} ({})", c.describe()),
        None => a.to_string(),
    }
}

fn verdict(g: &Gpu, inv: &Inventory) -> String {
    let mut s = if g.bmc {
        "Board management (BMC) display: it runs the host console and is never passed through."
            .to_string()
    } else if g.virtual_function_of.is_some() {
        format!(
            "SR-IOV virtual function of {}; pass it as a VF, not as a whole card.",
            g.virtual_function_of
                .map(|a| a.to_string())
                .unwrap_or_default()
        )
    } else {
        match g.isolation {
            Isolation::NoIommu => {
                "Cannot be passed through until the IOMMU is enabled (firmware VT-d/AMD-Vi and kernel)."
                    .to_string()
            }
            Isolation::Unknown => "IOMMU group not known from this source; isolation cannot be judged."
                .to_string(),
            Isolation::Shared => {
                let peers: Vec<String> = g.group_peers.iter().map(|a| peer_desc(inv, a)).collect();
                format!(
                    "Not isolated: its IOMMU group also holds {}; passing it through would take those too.",
                    peers.join(", ")
                )
            }
            Isolation::Isolated => {
                let groups: Vec<String> = g.groups.iter().map(u32::to_string).collect();
                let what = if g.functions.len() == 1 {
                    "only this function".to_string()
                } else {
                    format!("only the card's {} functions", g.functions.len())
                };
                format!(
                    "Isolated: IOMMU group{} {} hold{} {what}; it can be passed through.",
                    if groups.len() > 1 { "s" } else { "" },
                    groups.join(", "),
                    if groups.len() > 1 { "" } else { "s" },
                )
            }
        }
    };
    if let Some(words) = g.boot_display_words() {
        s.push_str(&format!(" It is {words}."));
    }
    if g.integrated {
        s.push_str(" Integrated graphics.");
    }
    if !g.identical_ids_with.is_empty() {
        s.push_str(&format!(
            " Same vendor:device ids as {}: bind by address, not by id.",
            named_list(&g.identical_ids_with, g.identical_ids_count)
        ));
    }
    s
}
