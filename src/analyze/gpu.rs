//! GPU classification: kind, vendor, integrated or discrete, boot display,
//! the card's functions, group peers, isolation, identical ids, quirks.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::model::{Device, Inventory, PciAddress, hex16};

use super::db::{GpuDb, QuirkSubject};
use super::groups::{Addrs, is_group_infrastructure};
use smallvec::SmallVec;

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

/// Other GPUs with the same ids as one GPU: the first
/// [`MAX_TWINS_LISTED`] of them. Every GPU of those ids shares one list (of
/// one more, since each leaves itself out), so that thousands of identical
/// GPUs cost one list, not thousands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Twins {
    shared: Option<Arc<[PciAddress]>>,
    this: Option<PciAddress>,
}

impl Twins {
    /// `this` GPU's twins among `shared` (the first `MAX_TWINS_LISTED + 1`
    /// GPUs of its ids, in address order).
    pub fn new(shared: Arc<[PciAddress]>, this: PciAddress) -> Self {
        Self {
            shared: Some(shared),
            this: Some(this),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &PciAddress> + '_ {
        self.shared
            .iter()
            .flat_map(|s| s.iter())
            .filter(|a| Some(**a) != self.this)
            .take(MAX_TWINS_LISTED)
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    pub fn first(&self) -> Option<&PciAddress> {
        self.iter().next()
    }

    pub fn contains(&self, a: &PciAddress) -> bool {
        self.iter().any(|t| t == a)
    }

    pub fn to_vec(&self) -> Vec<PciAddress> {
        self.iter().copied().collect()
    }
}

impl<'a> IntoIterator for &'a Twins {
    type Item = &'a PciAddress;
    type IntoIter = Box<dyn Iterator<Item = &'a PciAddress> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl Serialize for Twins {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// One GPU and everything exliar concluded about it. Serialized (by hand,
/// below) with its [`Gpu::verdict`] last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    pub address: PciAddress,
    pub vendor_id: Option<u16>,
    pub device_id: Option<u16>,
    /// [`vendor_short`]: shared, not copied per GPU.
    pub vendor: Arc<str>,
    /// The device's [`Device::display_name`]: GPUs of one name share it.
    pub name: Arc<str>,
    pub kind: GpuKind,
    pub integrated: bool,
    pub bmc: bool,
    pub boot_display: bool,
    pub boot_display_evidence: Option<BootEvidence>,
    pub driver: Option<String>,
    pub iommu_group: Option<u32>,
    /// Every function of the card, the GPU itself included.
    pub functions: Addrs,
    /// IOMMU groups of the card's functions.
    pub groups: SmallVec<[u32; 1]>,
    pub isolation: Isolation,
    /// Other GPUs with the same ids: at most [`MAX_TWINS_LISTED`] of them
    /// (a pasted listing can hold thousands of identical lines).
    pub identical_ids_with: Twins,
    /// How many other GPUs have the same ids (`identical_ids_with` lists
    /// the first ones).
    pub identical_ids_count: usize,
    /// What most GPUs lack (of a pasted listing, all of it), boxed: a
    /// listing of many GPUs holds one pointer each for it.
    pub rare: Option<Box<GpuRare>>,
}

/// The parts of a [`Gpu`] that are usually empty; read them through the
/// [`Gpu`] methods of the same names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuRare {
    /// Other non-bridge devices in the GPU's groups.
    pub group_peers: Vec<PciAddress>,
    /// For a shared group: its other members, described (`0000:00:1f.3
    /// (audio device)`), as [`Gpu::verdict`] names them.
    pub group_peer_words: Option<Box<str>>,
    /// Set when this function is an SR-IOV virtual function.
    pub virtual_function_of: Option<PciAddress>,
    pub reset_methods: Option<Vec<String>>,
    pub quirks: Vec<String>,
    pub quirk_details: Vec<QuirkHit>,
}

impl GpuRare {
    fn is_empty(&self) -> bool {
        *self == GpuRare::default()
    }
}

/// [`Gpu::verdict`]: written out when shown, never kept (a listing of many
/// GPUs would hold one sentence per GPU).
pub struct Verdict<'a>(&'a Gpu);

impl fmt::Display for Verdict<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.0;
        if g.bmc {
            f.write_str(
                "Board management (BMC) display: it runs the host console and is never passed through.",
            )?;
        } else if let Some(pf) = g.virtual_function_of() {
            write!(
                f,
                "SR-IOV virtual function of {pf}; pass it as a VF, not as a whole card."
            )?;
        } else {
            match g.isolation {
                Isolation::NoIommu => f.write_str(
                    "Cannot be passed through until the IOMMU is enabled (firmware VT-d/AMD-Vi and kernel).",
                )?,
                Isolation::Unknown => f.write_str(
                    "IOMMU group not known from this source; isolation cannot be judged.",
                )?,
                Isolation::Shared => write!(
                    f,
                    "Not isolated: its IOMMU group also holds {}; passing it through would take those too.",
                    g.group_peer_words()
                )?,
                Isolation::Isolated => {
                    let several = g.groups.len() > 1;
                    write!(f, "Isolated: IOMMU group{} ", if several { "s" } else { "" })?;
                    for (i, n) in g.groups.iter().enumerate() {
                        if i > 0 {
                            f.write_str(", ")?;
                        }
                        write!(f, "{n}")?;
                    }
                    write!(f, " hold{} ", if several { "" } else { "s" })?;
                    if g.functions.len() == 1 {
                        f.write_str("only this function")?;
                    } else {
                        write!(f, "only the card's {} functions", g.functions.len())?;
                    }
                    f.write_str("; it can be passed through.")?;
                }
            }
        }
        if let Some(words) = g.boot_display_phrase() {
            write!(f, " It is {words}.")?;
        }
        if g.integrated {
            f.write_str(" Integrated graphics.")?;
        }
        if !g.identical_ids_with.is_empty() {
            write!(
                f,
                " Same vendor:device ids as {}: bind by address, not by id.",
                named_list(&g.identical_ids_with, g.identical_ids_count)
            )?;
        }
        Ok(())
    }
}

impl Serialize for Verdict<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A `u16` as [`hex16`] writes it.
struct Hex16(Option<u16>);

impl Serialize for Hex16 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        hex16::serialize(&self.0, s)
    }
}

impl Serialize for Gpu {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Gpu", 21)?;
        st.serialize_field("address", &self.address)?;
        st.serialize_field("vendor_id", &Hex16(self.vendor_id))?;
        st.serialize_field("device_id", &Hex16(self.device_id))?;
        st.serialize_field("vendor", &*self.vendor)?;
        st.serialize_field("name", &*self.name)?;
        st.serialize_field("kind", &self.kind)?;
        st.serialize_field("integrated", &self.integrated)?;
        st.serialize_field("bmc", &self.bmc)?;
        st.serialize_field("boot_display", &self.boot_display)?;
        st.serialize_field("boot_display_evidence", &self.boot_display_evidence)?;
        st.serialize_field("driver", &self.driver)?;
        st.serialize_field("iommu_group", &self.iommu_group)?;
        st.serialize_field("functions", &self.functions)?;
        st.serialize_field("groups", &self.groups)?;
        st.serialize_field("group_peers", self.group_peers())?;
        st.serialize_field("isolation", &self.isolation)?;
        st.serialize_field("identical_ids_with", &self.identical_ids_with)?;
        st.serialize_field("virtual_function_of", &self.virtual_function_of())?;
        st.serialize_field("reset_methods", &self.reset_methods())?;
        st.serialize_field("quirks", self.quirks())?;
        st.serialize_field("verdict", &self.verdict())?;
        st.end()
    }
}

impl Gpu {
    /// Other non-bridge devices in the GPU's groups.
    pub fn group_peers(&self) -> &[PciAddress] {
        self.rare.as_ref().map_or(&[], |r| &r.group_peers)
    }

    /// Set when this function is an SR-IOV virtual function.
    pub fn virtual_function_of(&self) -> Option<PciAddress> {
        self.rare.as_ref().and_then(|r| r.virtual_function_of)
    }

    pub fn reset_methods(&self) -> Option<&[String]> {
        self.rare.as_ref().and_then(|r| r.reset_methods.as_deref())
    }

    /// The ids of the quirks that apply.
    pub fn quirks(&self) -> &[String] {
        self.rare.as_ref().map_or(&[], |r| &r.quirks)
    }

    pub fn quirk_details(&self) -> &[QuirkHit] {
        self.rare.as_ref().map_or(&[], |r| &r.quirk_details)
    }

    fn group_peer_words(&self) -> &str {
        self.rare
            .as_ref()
            .and_then(|r| r.group_peer_words.as_deref())
            .unwrap_or("")
    }

    /// One sentence: whether and how it can be passed through.
    pub fn verdict(&self) -> Verdict<'_> {
        Verdict(self)
    }

    /// "the boot display", saying so when exliar only inferred it (no
    /// `boot_vga` attribute said yes), and from what: human words that
    /// match `boot_display_evidence`. `None` when it is not the boot display.
    pub fn boot_display_words(&self) -> Option<String> {
        self.boot_display_phrase().map(str::to_string)
    }

    fn boot_display_phrase(&self) -> Option<&'static str> {
        if !self.boot_display {
            return None;
        }
        Some(match self.boot_display_evidence {
            Some(BootEvidence::Inferred) if self.bmc => {
                "the boot display (inferred: a BMC display)"
            }
            Some(BootEvidence::Inferred) if self.integrated => {
                "the boot display (inferred: integrated graphics)"
            }
            Some(BootEvidence::Inferred) => "the boot display (inferred: the first display device)",
            _ => "the boot display",
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
pub fn named_list<'a>(shown: impl IntoIterator<Item = &'a PciAddress>, total: usize) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let mut named = 0;
    for a in shown.into_iter().take(MAX_NAMED) {
        if named > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{a}");
        named += 1;
    }
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

    // One string per distinct vendor and name, shared by the GPUs that
    // have it (a listing can repeat one model thousands of times).
    let mut strings: HashSet<Arc<str>> = HashSet::new();
    let mut intern = |s: String| -> Arc<str> {
        match strings.get(s.as_str()) {
            Some(a) => a.clone(),
            None => {
                let a: Arc<str> = Arc::from(s);
                strings.insert(a.clone());
                a
            }
        }
    };
    let mut gpus: Vec<Gpu> = displays
        .iter()
        .map(|d| {
            let integrated = is_integrated(d, db);
            let functions = Addrs::from_vec(card_functions(inv, d, integrated));
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
                    id: q.id.to_string(),
                    title: q.title.to_string(),
                    advice: q.advice.to_string(),
                    needs: q.needs.to_string(),
                    source: q.source.to_string(),
                })
                .collect();
            let rare = GpuRare {
                group_peers: peers.into_iter().collect(),
                group_peer_words: None,
                virtual_function_of: d.sriov.physfn,
                reset_methods: d.reset_methods.clone(),
                quirks: quirk_details.iter().map(|q| q.id.clone()).collect(),
                quirk_details,
            };
            Gpu {
                address: d.address,
                vendor_id: d.vendor_id,
                device_id: d.device_id,
                vendor: intern(vendor_short(d.vendor_id, d.vendor_name.as_deref())),
                name: intern(d.display_name()),
                kind: GpuKind::of(d.class.map_or(0, |c| c.subclass())),
                integrated,
                bmc,
                boot_display,
                boot_display_evidence,
                driver: d.driver.clone(),
                iommu_group: d.iommu_group,
                functions,
                groups: groups.into_iter().collect(),
                isolation,
                identical_ids_with: Twins::default(),
                identical_ids_count: 0,
                rare: (!rare.is_empty()).then(|| Box::new(rare)),
            }
        })
        .collect();

    // Identical vendor:device pairs (or identical names when ids are unknown).
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    enum Key<'a> {
        Ids(u16, u16),
        Names(&'a str, &'a str),
    }
    // Sorted by key once, stably (comparing every pair was quadratic; a map
    // of lists made one list per GPU).
    let mut keyed: Vec<(Key<'_>, usize)> = displays
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match (d.vendor_id, d.device_id) {
            (Some(v), Some(x)) => Some((Key::Ids(v, x), i)),
            _ => d
                .device_name
                .as_deref()
                .map(|n| (Key::Names(d.vendor_name.as_deref().unwrap_or(""), n), i)),
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    for run in keyed.chunk_by(|a, b| a.0 == b.0).filter(|r| r.len() > 1) {
        let same: Vec<usize> = run.iter().map(|(_, i)| *i).collect();
        let same = &same;
        // The first MAX_TWINS_LISTED + 1: each GPU's list is these, less
        // itself, cut to MAX_TWINS_LISTED.
        let shared: Arc<[PciAddress]> = same
            .iter()
            .take(MAX_TWINS_LISTED + 1)
            .map(|&j| gpus[j].address)
            .collect();
        for &i in same {
            gpus[i].identical_ids_with = Twins::new(shared.clone(), gpus[i].address);
            gpus[i].identical_ids_count = same.len() - 1;
        }
    }
    for g in &mut gpus {
        if g.isolation == Isolation::Shared && !g.bmc && g.virtual_function_of().is_none() {
            let peers: Vec<String> = g.group_peers().iter().map(|a| peer_desc(inv, a)).collect();
            g.rare.get_or_insert_default().group_peer_words = Some(peers.join(", ").into());
        }
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
