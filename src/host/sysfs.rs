//! Build an [`Inventory`] from a sysfs/procfs tree under a host root.

use std::path::{Path, PathBuf};

use crate::model::{
    ClassCode, Device, HostFacts, Inventory, IommuState, PciAddress, Source, Warning,
};

use super::devdir::{DevDir, Entries, FdDir, FdRoot, RootDir};
use super::pciids::{PCI_IDS_PATHS, PciIds};
use super::root::HostRoot;

const PCI_DEVICES: &str = "sys/bus/pci/devices";
const IOMMU_GROUPS: &str = "sys/kernel/iommu_groups";
const IOMMU_CLASS: &str = "sys/class/iommu";

/// Nothing usable could be read. With a `source` (which names the path
/// itself) the path is not repeated.
#[derive(Debug, thiserror::Error)]
#[error("no PCI devices could be read{}", if source.is_some() { String::new() } else { format!(" from {path}") })]
pub struct NothingRead {
    pub path: String,
    #[source]
    pub source: Option<super::root::ReadError>,
}

/// Open `pci.ids` in the host root (read as lookups need it: the vendor
/// index streamed once, then one block per vendor looked up), or an empty
/// database.
pub fn load_pci_ids(host: &HostRoot) -> PciIds {
    for p in PCI_IDS_PATHS {
        if let Ok(Some((file, len))) = host.open_optional(p) {
            return PciIds::from_file(file, len);
        }
    }
    PciIds::empty()
}

/// How each device directory is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Take vendor, device, class, revision and (header type 0) subsystem
    /// ids from one read of the first 64 bytes of `config`, as lspci does,
    /// instead of `uevent` and the attribute files. A missing, short or
    /// unreadable `config`, or one reading vendor 0xffff (a function that
    /// does not answer), falls back to the attribute files.
    ///
    /// Off by default, and so off for every command: reading `config` is
    /// not free on a live host. The kernel resumes the function's parent
    /// bridge for it and powers up a function in D3cold
    /// (`pci_config_pm_runtime_get` in drivers/pci/pci-sysfs.c), so a scan
    /// every few minutes (labels, metrics) would keep waking a laptop's
    /// sleeping discrete GPU, as lspci does; and `config` holds the class
    /// as the hardware says, not as the kernel's class fixups corrected it.
    /// The attribute files are cached in the kernel and wake nothing. It
    /// saved about 2 of 20 syscalls per function (docs/performance.md);
    /// `tests/scan.rs` keeps both paths equal.
    pub config_space: bool,
    /// Read the PCIe link (speed and width, current and maximum) and the
    /// NUMA node. The link attributes are not cached: each read is a config
    /// space access to the hardware. Runtime binding and handover decide
    /// nothing from them and leave them out (`read_inventory_near`).
    pub links: bool,
    /// Read the revision. Runtime binding and handover decide nothing from
    /// it and show none (`read_inventory_near` leaves it out: 3 syscalls a
    /// function).
    pub revision: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            config_space: false,
            links: true,
            revision: true,
        }
    }
}

/// Read the whole inventory. Missing or garbled attributes become warnings;
/// only an unreadable (or absent) PCI device directory is an error.
pub fn read_inventory(host: &HostRoot, ids: &PciIds) -> Result<Inventory, NothingRead> {
    read_inventory_with(host, ids, ReadOptions::default())
}

/// [`read_inventory`], read as `opts` says.
pub fn read_inventory_with(
    host: &HostRoot,
    ids: &PciIds,
    opts: ReadOptions,
) -> Result<Inventory, NothingRead> {
    let mut warnings = Vec::new();
    let addresses = list_addresses(host, &mut warnings)?;
    let devices = read_devices(host, &addresses, opts, &mut warnings);
    Ok(finish_inventory(host, ids, devices, warnings, Facts::Host))
}

/// The inventory that runtime binding and handover need about `wanted`,
/// read in time proportional to the card and its groups rather than to the
/// host: the devices `wanted` names, the other functions of their slots,
/// the other members of their IOMMU groups, and every display controller
/// (with the functions of its slot), each read as [`read_inventory`] reads
/// it but for the PCIe link, NUMA node and revision (see
/// [`ReadOptions::links`], [`ReadOptions::revision`]); of every other
/// device only `class` is read, to find the display controllers. The
/// result is the full inventory's answer for those devices
/// (`tests/bind_near.rs` compares both on every fixture host).
pub fn read_inventory_near(
    host: &HostRoot,
    ids: &PciIds,
    wanted: &[PciAddress],
) -> Result<Inventory, NothingRead> {
    read_inventory_near_cached(host, ids, wanted, &mut ClassCache::default())
}

/// Where the classes of the last near read are kept (see [`ClassCache`]).
pub const CLASS_CACHE: &str = "run/exliar/pci-classes";

/// The kernel's id of this boot: kernfs inode numbers are unique only
/// within one.
const BOOT_ID: &str = "proc/sys/kernel/random/boot_id";

/// The class of every PCI function, as a near read found it, each with the
/// inode number of its `sys/bus/pci/devices/ADDR` entry and the boot's id.
/// The listing gives each entry's inode number with its name, and kernfs
/// numbers entries cyclically (`idr_alloc_cyclic`, with a generation above
/// the low 32 bits where inode numbers are 64-bit), so a new entry does not
/// get the number of a removed one, and an entry whose
/// number and boot match is the same device, with the class the kernel set
/// when it added it (the attribute cannot be written). With it, a bind
/// reads the class of no other function when nothing was added since the
/// last bind: 22 reads, 4.5–6.5 ms of a bind under TCG. Binding, and a
/// handover taking a card, load it, and save it when it changed and they
/// moved devices (not after a dry run, a refusal or a failure); giving a
/// card back needs no other function's class
/// ([`read_inventory_for_unbinding`]). A missing or garbled file is an
/// empty cache.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClassCache {
    boot: String,
    entries: std::collections::BTreeMap<PciAddress, (u64, u32)>,
    /// Whether this run changed it (and so it should be saved).
    changed: bool,
}

impl ClassCache {
    /// The cache under `host`, for this boot (empty when the file is
    /// missing, garbled, or of another boot).
    pub fn load(host: &HostRoot) -> Self {
        let boot = host
            .read_optional(BOOT_ID)
            .ok()
            .flatten()
            .map(|b| b.trim().to_string())
            .unwrap_or_default();
        let text = host.read_optional(CLASS_CACHE).ok().flatten();
        Self::from_text(text.as_deref().unwrap_or(""), &boot)
    }

    /// The cache that a file's `text` holds for `boot`: empty when the
    /// text is garbled or of another boot.
    pub fn from_text(text: &str, boot: &str) -> Self {
        Self {
            boot: boot.to_string(),
            entries: Self::parse(text, boot).unwrap_or_default(),
            changed: false,
        }
    }

    fn parse(text: &str, boot: &str) -> Option<std::collections::BTreeMap<PciAddress, (u64, u32)>> {
        let mut lines = text.lines();
        if lines.next()? != "exliar pci classes 1" || lines.next()?.strip_prefix("boot ")? != boot {
            return None;
        }
        lines
            .map(|l| {
                let mut f = l.split(' ');
                let a = PciAddress::parse(f.next()?).ok()?;
                let ino = f.next()?.parse().ok()?;
                let class = u32::from_str_radix(f.next()?, 16).ok()?;
                f.next().is_none().then_some((a, (ino, class)))
            })
            .collect()
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = format!("exliar pci classes 1\nboot {}\n", self.boot);
        for (a, (ino, class)) in &self.entries {
            out.push_str(&format!("{a} {ino} {class:06x}\n"));
        }
        out
    }

    /// Whether the last near read changed it.
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// Write it under `root` (atomically), when it changed.
    pub fn save(&self, root: &Path) -> std::io::Result<()> {
        if !self.changed {
            return Ok(());
        }
        super::write::atomic_write(
            root,
            Path::new(CLASS_CACHE),
            self.render().as_bytes(),
            0o600,
        )
    }
}

/// What binding `wanted` needs, without PCI names, with the class cache
/// under `host` ([`ClassCache::load`]): the inventory, and the cache for the
/// caller to save once it moved devices (`bind::save_classes`).
pub fn read_inventory_for_binding(
    host: &HostRoot,
    wanted: &[PciAddress],
) -> Result<(Inventory, ClassCache), NothingRead> {
    let mut cache = ClassCache::load(host);
    let inv = read_inventory_near_cached(host, &PciIds::empty(), wanted, &mut cache)?;
    Ok((inv, cache))
}

/// What giving `wanted` back to the host needs, without PCI names: the
/// devices `wanted` names, the other functions of their slots and the other
/// members of their IOMMU groups, read as [`read_inventory_near`] reads
/// them, but not the host's other display controllers. Those decide only
/// bind's refusals (the boot display, the host's last GPU): giving a device
/// back takes no display from the host. So no other function's class is
/// read, and the class cache is neither read nor changed. An unbind decides
/// from it as from the whole inventory (`tests/bind_near.rs`).
pub fn read_inventory_for_unbinding(
    host: &HostRoot,
    wanted: &[PciAddress],
) -> Result<Inventory, NothingRead> {
    read_near(host, &PciIds::empty(), wanted, None)
}

/// What moving `wanted` needs: to take it, [`read_inventory_for_binding`];
/// to give it back, [`read_inventory_for_unbinding`], with an unchanged
/// (empty) cache, which `bind::save_classes` leaves alone.
pub fn read_inventory_to_move(
    host: &HostRoot,
    wanted: &[PciAddress],
    take: bool,
) -> Result<(Inventory, ClassCache), NothingRead> {
    if take {
        read_inventory_for_binding(host, wanted)
    } else {
        read_inventory_for_unbinding(host, wanted).map(|inv| (inv, ClassCache::default()))
    }
}

/// [`read_inventory_near`], taking the other functions' classes from
/// `cache` where their entries are unchanged, and leaving in it the class
/// of every function listed now.
pub fn read_inventory_near_cached(
    host: &HostRoot,
    ids: &PciIds,
    wanted: &[PciAddress],
    cache: &mut ClassCache,
) -> Result<Inventory, NothingRead> {
    read_near(host, ids, wanted, Some(cache))
}

/// The near read: with a class cache, every display controller's slot
/// too ([`read_inventory_near_cached`]); without, only the slots of
/// `wanted` and their groups ([`read_inventory_for_unbinding`]).
fn read_near(
    host: &HostRoot,
    ids: &PciIds,
    wanted: &[PciAddress],
    cache: Option<&mut ClassCache>,
) -> Result<Inventory, NothingRead> {
    use std::collections::BTreeSet;
    let t = std::time::Instant::now();
    let lap = |what: &str| {
        tracing::debug!(
            "near read: {what} at {:.2} ms",
            t.elapsed().as_secs_f64() * 1e3
        )
    };
    let mut warnings = Vec::new();
    let listed_ino = list_addresses_with_ino(host, &mut warnings)?;
    lap("listed");
    let mut slots: BTreeSet<(u32, u8, u8)> = wanted.iter().map(slot).collect();
    let fast = open_fast(host);
    if let Some(cache) = cache {
        find_displays(host, fast.as_ref(), &listed_ino, &mut slots, cache);
    }
    lap("classes read");
    let chosen: Vec<PciAddress> = listed_ino
        .iter()
        .map(|(a, _)| *a)
        .filter(|a| slots.contains(&slot(a)))
        .collect();
    let opts = ReadOptions {
        links: false,
        revision: false,
        ..ReadOptions::default()
    };
    let mut devices = read_devices_at(host, fast.as_ref(), &chosen, opts, &mut warnings);
    lap("devices read");
    // The other members of their groups (not those members' slots).
    let groups: BTreeSet<u32> = devices.iter().filter_map(|d| d.iommu_group).collect();
    let mut more: BTreeSet<PciAddress> = BTreeSet::new();
    for g in groups {
        let dir = format!("{IOMMU_GROUPS}/{g}/devices");
        let members = match &fast {
            Some(f) => f.names(&dir).unwrap_or_default(),
            None => host.list_dir(&dir).unwrap_or_default(),
        };
        for m in members {
            if let Ok(m) = PciAddress::parse(&m)
                && !chosen.contains(&m)
            {
                more.insert(m);
            }
        }
    }
    if !more.is_empty() {
        let extra: Vec<PciAddress> = more.into_iter().collect();
        devices.extend(read_devices_at(
            host,
            fast.as_ref(),
            &extra,
            opts,
            &mut warnings,
        ));
    }
    lap("groups read");
    let inv = finish_inventory(host, ids, devices, warnings, Facts::Near);
    lap("finished");
    Ok(inv)
}

/// The slot of a function.
fn slot(a: &PciAddress) -> (u32, u8, u8) {
    (a.domain, a.bus, a.device)
}

/// Add to `slots` the slot of every display controller of `listed` (a
/// function whose class cannot be read counts as one: it is read in full,
/// and its warning comes from there), its class taken from `cache` where
/// the entry is unchanged and read otherwise; `cache` is left holding the
/// class of every listed function.
fn find_displays(
    host: &HostRoot,
    fast: Option<&FdRoot>,
    listed_ino: &[(PciAddress, u64)],
    slots: &mut std::collections::BTreeSet<(u32, u8, u8)>,
    cache: &mut ClassCache,
) {
    let mut classes = std::collections::BTreeMap::new();
    // On the live host the kernel resolves each `ADDR` link from the listed
    // folder itself: a shorter walk for every function than from the root
    // (elsewhere the walk must start at the root, to stay inside it).
    let listed = if host.is_live() && fast.is_some() {
        rustix::fs::open(
            host.path().join(PCI_DEVICES),
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .ok()
    } else {
        None
    };
    for (a, ino) in listed_ino {
        let ino = *ino;
        let cached = cache.entries.get(a).filter(|e| e.0 == ino).map(|e| e.1);
        if slots.contains(&slot(a)) {
            // Read in full below; an entry still right is kept.
            if let Some(c) = cached {
                classes.insert(*a, (ino, c));
            }
            continue;
        }
        if let Some(c) = cached {
            classes.insert(*a, (ino, c));
            if c >> 16 == 0x03 {
                slots.insert(slot(a));
            }
            continue;
        }
        let rel = format!("{PCI_DEVICES}/{a}/class");
        let text = match (&listed, &fast) {
            (Some(dir), _) => super::readfile::open_listed_regular_at(dir, &format!("{a}/class"))
                .and_then(|fd| {
                    super::readfile::read_capped(&fd, 4096, super::readfile::ATTRIBUTE_LIMIT, true)
                })
                .ok(),
            (None, Some(f)) => f.read_attr(&rel).ok().flatten(),
            (None, None) => host
                .read_optional(&rel)
                .ok()
                .flatten()
                .map(String::into_bytes),
        };
        let class = text.and_then(|t| parse_hex(&String::from_utf8_lossy(&t)));
        if let Some(c) = class {
            classes.insert(*a, (ino, c));
        }
        // An unreadable class is read in full (its warning comes from there).
        if class.is_none_or(|c| c >> 16 == 0x03) {
            slots.insert(slot(a));
        }
    }
    if classes != cache.entries {
        cache.entries = classes;
        cache.changed = true;
    }
}

/// [`list_addresses`] with the inode number of each entry.
fn list_addresses_with_ino(
    host: &HostRoot,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<(PciAddress, u64)>, NothingRead> {
    let names = host
        .list_dir_with_ino(PCI_DEVICES)
        .map_err(|e| NothingRead {
            path: host.display(Path::new(PCI_DEVICES)),
            source: Some(e),
        })?;
    let mut addresses = Vec::with_capacity(names.len());
    for (name, ino) in &names {
        match PciAddress::parse(name) {
            Ok(a) => addresses.push((a, *ino)),
            Err(_) => warnings.push(Warning::new(
                host.display(&Path::new(PCI_DEVICES).join(name)),
                "not a PCI address; entry skipped",
            )),
        }
    }
    Ok(addresses)
}

/// The PCI addresses under `sys/bus/pci/devices`; other names are warnings.
fn list_addresses(
    host: &HostRoot,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<PciAddress>, NothingRead> {
    Ok(list_addresses_with_ino(host, warnings)?
        .into_iter()
        .map(|(a, _)| a)
        .collect())
}

/// What [`finish_inventory`] reads beside the devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Facts {
    /// The IOMMU's groups and units, the OS, command line and CPU.
    Host,
    /// What a near read decides from: whether the IOMMU is on. A read
    /// function in a group says it is (the kernel makes groups only then),
    /// and the groups' members come from the functions read; else the
    /// groups folder is listed. The OS, command line and CPU decide
    /// nothing there (and `/proc/cpuinfo` is slow to make), nor do the
    /// IOMMU units, which are left out.
    Near,
}

fn finish_inventory(
    host: &HostRoot,
    ids: &PciIds,
    mut devices: Vec<Device>,
    mut warnings: Vec<Warning>,
    facts: Facts,
) -> Inventory {
    inherit_from_pf(&mut devices);
    let tn = std::time::Instant::now();
    for d in &mut devices {
        if let Some(v) = d.vendor_id {
            d.vendor_name = ids.vendor(v);
            if let Some(dev) = d.device_id {
                d.device_name = ids.device(v, dev);
            }
        }
    }
    tracing::debug!(
        "PCI names looked up in {:.2} ms",
        tn.elapsed().as_secs_f64() * 1e3
    );
    let t = std::time::Instant::now();
    let iommu = if facts == Facts::Near && devices.iter().any(|d| d.iommu_group.is_some()) {
        IommuState {
            enabled: Some(true),
            ..IommuState::default()
        }
    } else {
        read_iommu(host, &mut warnings)
    };
    tracing::debug!(
        "iommu state read in {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let host_facts = match facts {
        Facts::Host => read_host_facts(host),
        Facts::Near => HostFacts::default(),
    };
    tracing::debug!(
        "host facts read in {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
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
    // Groups with no PCI members are kept out of the table: exliar reasons
    // about PCI functions only.
    inv.iommu.groups.retain(|_, m| !m.is_empty());
    inv
}

/// Give SR-IOV virtual functions their physical function's NUMA node.
fn inherit_from_pf(devices: &mut [Device]) {
    let pf_numa: std::collections::HashMap<PciAddress, Option<i32>> = devices
        .iter()
        .filter(|d| !d.sriov.virtfns.is_empty())
        .map(|d| (d.address, d.numa_node))
        .collect();
    for d in devices.iter_mut() {
        if let Some(pf) = d.sriov.physfn
            && d.numa_node.is_none()
        {
            d.numa_node = pf_numa.get(&pf).copied().flatten();
        }
    }
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

/// Parse one device directory. Missing optional attributes are fine; a
/// missing required one (class, vendor, device) or a garbled value is a
/// warning naming the file. The device is always returned.
pub fn parse_device(
    dir: &mut dyn DevDir,
    address: PciAddress,
    opts: ReadOptions,
    warnings: &mut Vec<Warning>,
) -> Device {
    let mut d = Device::new(address);
    let entries: Entries = match dir.entries() {
        Ok(e) => e,
        Err(e) => {
            warnings.push(Warning::new(dir.display(""), e.to_string()));
            return d;
        }
    };
    let mut a = Attrs {
        dir,
        entries: &entries,
        warnings,
    };
    // The first 64 bytes of `config` hold the ids, class and revision (and,
    // for header type 0, the subsystem ids) in one read. Without it (or
    // where it cannot say), `uevent` holds class, ids, subsystem ids and
    // driver in one read, and the single attribute files are the fallback
    // for trees without that.
    let head = if opts.config_space && entries.contains("config") {
        a.config_head()
    } else {
        None
    };
    let subsys = head.and_then(|h| h.subsys);
    let ev = if subsys.is_none() {
        a.uevent()
    } else {
        Uevent::default()
    };
    if let Some(h) = head {
        d.class = Some(ClassCode(h.class));
        d.vendor_id = Some(h.vendor);
        d.device_id = Some(h.device);
    } else {
        d.class = ev
            .class
            .or_else(|| a.hex("class", true, 0xff_ffff))
            .map(ClassCode);
        let (v, dev) = match ev.id {
            Some((v, dev)) => (Some(v), Some(dev)),
            None => (
                a.hex("vendor", true, 0xffff).map(|v| v as u16),
                a.hex("device", true, 0xffff).map(|v| v as u16),
            ),
        };
        d.vendor_id = v;
        d.device_id = dev;
    }
    let (sv, sd) = match subsys.or(ev.subsys) {
        Some((v, dev)) => (Some(v), Some(dev)),
        None => (
            a.hex("subsystem_vendor", false, 0xffff).map(|v| v as u16),
            a.hex("subsystem_device", false, 0xffff).map(|v| v as u16),
        ),
    };
    d.subsystem_vendor_id = sv;
    d.subsystem_device_id = sd;
    d.revision = match head {
        Some(h) => Some(h.revision),
        None if opts.revision => a.hex("revision", false, 0xff).map(|v| v as u8),
        None => None,
    };
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
    // An SR-IOV virtual function has no link of its own (the SR-IOV spec
    // reserves a VF's link registers) and sits on its physical function's
    // NUMA node: those come from the PF (see `inherit_from_pf`), which also
    // keeps scans of VF-heavy servers fast.
    if opts.links && !entries.contains("physfn") {
        d.numa_node = a.dec("numa_node");
        d.link.current_speed = a
            .text("current_link_speed", false)
            .filter(|s| !s.is_empty());
        d.link.current_width = a.dec("current_link_width");
        d.link.max_speed = a.text("max_link_speed", false).filter(|s| !s.is_empty());
        d.link.max_width = a.dec("max_link_width");
    }
    d.sriov.total_vfs = a.dec("sriov_totalvfs");
    d.sriov.num_vfs = a.dec("sriov_numvfs");
    // With the ids from `config`, the driver is the `driver` link; a tree
    // without one (unbound, or captured without links) still says it in
    // `uevent`, as it did before.
    d.driver = if ev.read {
        ev.driver
    } else if entries.contains("driver") || !entries.contains("uevent") {
        a.link("driver")
    } else {
        a.uevent().driver
    };
    d.iommu_group = a.link("iommu_group").and_then(|g| g.parse().ok());
    d.sriov.physfn = a.link("physfn").and_then(|x| PciAddress::parse(&x).ok());
    d.rom = Some(entries.contains("rom"));
    if entries.contains("rom") {
        a.dir.used("rom");
    }
    for e in &entries.extra {
        if e.starts_with("virtfn") {
            if let Some(x) = a.link(e).and_then(|x| PciAddress::parse(&x).ok()) {
                d.sriov.virtfns.push(x);
            }
        } else if let Some(x) = e.strip_prefix("consumer:pci:") {
            d.consumers.extend(PciAddress::parse(x).ok());
            a.dir.used(e);
        } else if let Some(x) = e.strip_prefix("supplier:pci:") {
            d.suppliers.extend(PciAddress::parse(x).ok());
            a.dir.used(e);
        }
    }
    d.sriov.virtfns.sort();
    d
}

/// Attribute reads of one device directory, collecting warnings.
struct Attrs<'a> {
    dir: &'a mut dyn DevDir,
    entries: &'a Entries,
    warnings: &'a mut Vec<Warning>,
}

/// What a device's `uevent` file says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Uevent {
    /// The file was there and read.
    pub read: bool,
    pub class: Option<u32>,
    pub id: Option<(u16, u16)>,
    pub subsys: Option<(u16, u16)>,
    pub driver: Option<String>,
}

/// Parse a PCI device's `uevent` (`PCI_CLASS=30000`, `PCI_ID=10DE:1401`,
/// `PCI_SUBSYS_ID=1458:36BA`, `DRIVER=nvidia`).
pub fn parse_uevent(text: &str) -> Uevent {
    let pair = |v: &str| -> Option<(u16, u16)> {
        let (a, b) = v.split_once(':')?;
        Some((
            u16::from_str_radix(a, 16).ok()?,
            u16::from_str_radix(b, 16).ok()?,
        ))
    };
    let mut u = Uevent {
        read: true,
        ..Uevent::default()
    };
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        match k {
            "PCI_CLASS" => u.class = u32::from_str_radix(v, 16).ok().filter(|c| *c <= 0xff_ffff),
            "PCI_ID" => u.id = pair(v),
            "PCI_SUBSYS_ID" => u.subsys = pair(v),
            "DRIVER" if !v.is_empty() => u.driver = Some(v.to_string()),
            _ => {}
        }
    }
    u
}

/// What the first 64 bytes of a function's configuration space say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigHead {
    pub vendor: u16,
    pub device: u16,
    /// As the `class` attribute: base class, subclass, programming
    /// interface (`0xCCSSPP`).
    pub class: u32,
    pub revision: u8,
    /// Header type 0 only: other header types keep them elsewhere (a
    /// bridge in a capability), so the attribute files say.
    pub subsys: Option<(u16, u16)>,
}

/// Decode the standard header: vendor (0x00), device (0x02), revision
/// (0x08), class (0x09 programming interface, 0x0a subclass, 0x0b base
/// class), header type (0x0e, bit 7 is "multi-function") and, for header
/// type 0, subsystem vendor and device (0x2c, 0x2e). `None` for fewer than
/// 64 bytes or a vendor of 0xffff or 0 (a function that does not answer,
/// or a powered-down one): the caller reads the attribute files instead.
pub fn parse_config_head(b: &[u8]) -> Option<ConfigHead> {
    let b: &[u8; 64] = b.get(..64)?.try_into().ok()?;
    let word = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let vendor = word(0x00);
    if vendor == 0xffff || vendor == 0 {
        return None;
    }
    Some(ConfigHead {
        vendor,
        device: word(0x02),
        class: (u32::from(b[0x0b]) << 16) | (u32::from(b[0x0a]) << 8) | u32::from(b[0x09]),
        revision: b[0x08],
        subsys: (b[0x0e] & 0x7f == 0).then(|| (word(0x2c), word(0x2e))),
    })
}

/// The warning for an attribute that does not parse: its value quoted, at
/// most 200 characters of it.
fn garbled(text: &str) -> String {
    format!(
        "garbled value {:?}; left unknown",
        super::readfile::excerpt(text, 200)
    )
}

impl Attrs<'_> {
    /// The standard header from `config`, when it is there and says it;
    /// anything else (absent, short, unreadable, not answering) is `None`
    /// without a warning: the attribute files are read instead.
    fn config_head(&mut self) -> Option<ConfigHead> {
        let mut buf = [0u8; 64];
        match self.dir.read_head("config", &mut buf) {
            Ok(Some(n)) => parse_config_head(buf.get(..n)?),
            _ => None,
        }
    }

    fn uevent(&mut self) -> Uevent {
        match self.text("uevent", false) {
            Some(t) => parse_uevent(&t),
            None => Uevent::default(),
        }
    }

    fn warn(&mut self, name: &str, msg: String) {
        let at = self.dir.display(name);
        self.warnings.push(Warning::new(at, msg));
    }

    /// Trimmed text of an attribute; a missing required one is a warning.
    fn text(&mut self, name: &str, required: bool) -> Option<String> {
        if !self.entries.contains(name) {
            if required {
                self.warn(name, "missing".to_string());
            }
            return None;
        }
        match self.dir.read(name) {
            Ok(Some(b)) => Some(String::from_utf8_lossy(&b).trim().to_string()),
            Ok(None) => {
                if required {
                    self.warn(name, "missing".to_string());
                }
                None
            }
            Err(e) => {
                self.warn(name, e.to_string());
                None
            }
        }
    }

    fn hex(&mut self, name: &str, required: bool, max: u32) -> Option<u32> {
        let text = self.text(name, required)?;
        let v = parse_hex(&text).filter(|v| *v <= max);
        if v.is_none() {
            self.warn(name, garbled(&text));
        }
        v
    }

    fn dec<T: std::str::FromStr>(&mut self, name: &str) -> Option<T> {
        let text = self.text(name, false)?;
        let v = parse_dec(&text);
        if v.is_none() && !text.is_empty() {
            self.warn(name, garbled(&text));
        }
        v
    }

    fn link(&mut self, name: &str) -> Option<String> {
        if !self.entries.contains(name) {
            return None;
        }
        match self.dir.link(name) {
            Ok(n) => n,
            Err(e) => {
                self.warn(name, e.to_string());
                None
            }
        }
    }
}

/// Read every device: in parallel through descriptors when possible, else
/// (and always for recording roots) through the host root.
fn read_devices(
    host: &HostRoot,
    addresses: &[PciAddress],
    opts: ReadOptions,
    warnings: &mut Vec<Warning>,
) -> Vec<Device> {
    read_devices_at(host, open_fast(host).as_ref(), addresses, opts, warnings)
}

/// The root opened for `openat2`, unless the root records what it reads
/// (a snapshot) or the kernel has no `openat2`.
fn open_fast(host: &HostRoot) -> Option<FdRoot> {
    if host.is_recording() {
        None
    } else {
        FdRoot::open(host.path())
    }
}

/// [`read_devices`] through an already opened root (`None`: the slow path).
fn read_devices_at(
    host: &HostRoot,
    fast: Option<&FdRoot>,
    addresses: &[PciAddress],
    opts: ReadOptions,
    warnings: &mut Vec<Warning>,
) -> Vec<Device> {
    let Some(fast) = fast else {
        return addresses
            .iter()
            .map(|&address| read_device_slow(host, address, opts, warnings))
            .collect();
    };
    let cpus = if addresses.len() < PARALLEL_FROM {
        1
    } else {
        cpu_count()
    };
    let threads = cpus.clamp(1, 8).min(addresses.len().div_ceil(16).max(1));
    read_fast_on(fast, addresses, opts, warnings, threads)
}

/// The devices at `addresses`, read through `fast` on `threads` threads
/// (the calling one included), in the order of `addresses`.
fn read_fast_on(
    fast: &FdRoot,
    addresses: &[PciAddress],
    opts: ReadOptions,
    warnings: &mut Vec<Warning>,
    threads: usize,
) -> Vec<Device> {
    let read_part = |part: &[PciAddress]| {
        let mut w = Vec::new();
        let devs = part
            .iter()
            .map(|&address| read_device_fast(fast, address, opts, &mut w))
            .collect::<Vec<_>>();
        (devs, w)
    };
    if threads <= 1 {
        let (devices, w) = read_part(addresses);
        warnings.extend(w);
        return devices;
    }
    let chunk = addresses.len().div_ceil(threads).max(1);
    // The calling thread reads the first part itself.
    let results: Vec<(Vec<Device>, Vec<Warning>)> = std::thread::scope(|s| {
        let mut parts = addresses.chunks(chunk);
        let first = parts.next().unwrap_or_default();
        let handles: Vec<_> = parts
            .map(|part| {
                let h = std::thread::Builder::new().spawn_scoped(s, move || read_part(part));
                (part, h.ok())
            })
            .collect();
        let mut out = vec![read_part(first)];
        for (part, h) in handles {
            // A thread that could not be made, or panicked: its part is
            // read here.
            out.push(match h.map(|h| h.join()) {
                Some(Ok(r)) => r,
                _ => read_part(part),
            });
        }
        out
    });
    let mut devices = Vec::with_capacity(addresses.len());
    for (d, w) in results {
        devices.extend(d);
        warnings.extend(w);
    }
    devices
}

/// Below this many functions a second thread costs more than it saves
/// (spawning it, and its first allocations in a new malloc arena). From
/// it, each thread reads at least 16 functions: at 60 functions, two
/// threads took a scan from 6.3–7.8 ms to 5.2–5.4 ms on two idle cores.
const PARALLEL_FROM: usize = 32;

/// The CPUs this process may run on (one `sched_getaffinity`; std's
/// `available_parallelism` also reads the cgroup's CPU quota).
pub(crate) fn cpu_count() -> usize {
    rustix::thread::sched_getaffinity(None)
        .map(|set| set.count() as usize)
        .unwrap_or(1)
        .max(1)
}

fn read_device_fast(
    fast: &FdRoot,
    address: PciAddress,
    opts: ReadOptions,
    warnings: &mut Vec<Warning>,
) -> Device {
    let rel = format!("{PCI_DEVICES}/{address}");
    let shown = fast.path().join(&rel);
    let target = fast.read_link(&rel).ok();
    let parents = target
        .as_ref()
        .map(|t| parents_from_link(t, address))
        .unwrap_or_default();
    let opened = match &target {
        Some(t) => fast.open_device(&rel, t),
        None => fast.open_dir(&rel),
    };
    let mut d = match opened {
        Ok(fd) => parse_device(&mut FdDir::new(fd, shown), address, opts, warnings),
        Err(e) => {
            warnings.push(Warning::new(shown.display().to_string(), e.to_string()));
            Device::new(address)
        }
    };
    d.parents = parents;
    d
}

fn read_device_slow(
    host: &HostRoot,
    address: PciAddress,
    opts: ReadOptions,
    warnings: &mut Vec<Warning>,
) -> Device {
    let shown = Path::new(PCI_DEVICES).join(address.to_string());
    let dir: PathBuf = match host.resolve(&shown) {
        Ok(p) => p,
        Err(e) => {
            warnings.push(Warning::new(host.display(&shown), e.source.to_string()));
            return Device::new(address);
        }
    };
    let parents = std::fs::read_link(host.path().join(&shown))
        .map(|t| parents_from_link(&t, address))
        .unwrap_or_default();
    let mut d = parse_device(&mut RootDir { host, shown, dir }, address, opts, warnings);
    d.parents = parents;
    d
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
                // Members come from each device's `iommu_group` link (already
                // read). A recording root also lists the group's folder, so a
                // snapshot carries the kernel's own group table.
                let mut addrs = Vec::new();
                if host.is_recording() {
                    let dir = Path::new(IOMMU_GROUPS).join(&g).join("devices");
                    match host.list_dir(&dir) {
                        Ok(m) => {
                            addrs = m.iter().filter_map(|m| PciAddress::parse(m).ok()).collect()
                        }
                        Err(e) => {
                            warnings.push(Warning::new(host.display(&dir), e.source.to_string()))
                        }
                    }
                }
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
        for u in &units {
            host.mark_present(Path::new(IOMMU_CLASS).join(u));
        }
        state.units = units;
    }
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

    /// The host's `pci.ids` is kept open and read as lookups need it, not
    /// read whole (1.3 MB of page faults on every scan; see idsdb.rs).
    #[test]
    fn pci_ids_are_read_from_the_open_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(PCI_IDS_PATHS[0]);
        fs_err::create_dir_all(path.parent().ok_or("no parent")?)?;
        fs_err::write(&path, "10de  NVIDIA Corporation\n\t1401  GM206\n")?;
        let ids = load_pci_ids(&HostRoot::new(dir.path()));
        assert!(ids.reads_a_file());
        assert_eq!(ids.device(0x10de, 0x1401).as_deref(), Some("GM206"));
        Ok(())
    }

    /// Read on several threads, a host gives the same devices and
    /// warnings, in the same order, as read on one.
    #[test]
    fn threads_read_what_one_thread_reads() -> Result<(), Box<dyn std::error::Error>> {
        let hosts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hosts");
        let mut seen = 0;
        for entry in fs_err::read_dir(&hosts)? {
            let root = entry?.path();
            let host = HostRoot::new(&root);
            let Some(fast) = open_fast(&host) else {
                eprintln!("skipped: no openat2 here");
                return Ok(());
            };
            let mut w = Vec::new();
            let Ok(addresses) = list_addresses(&host, &mut w) else {
                continue;
            };
            let opts = ReadOptions::default();
            let mut w1 = Vec::new();
            let one = read_fast_on(&fast, &addresses, opts, &mut w1, 1);
            for threads in [2, 3, 8] {
                let mut wn = Vec::new();
                let many = read_fast_on(&fast, &addresses, opts, &mut wn, threads);
                assert_eq!(one, many, "{}: {threads} threads", root.display());
                assert_eq!(w1, wn, "{}: {threads} threads", root.display());
            }
            seen += usize::from(addresses.len() >= PARALLEL_FROM);
        }
        assert!(seen > 0, "no fixture host has {PARALLEL_FROM} functions");
        Ok(())
    }

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
    fn uevent_fields() {
        let u = parse_uevent(
            "DRIVER=nvidia\nPCI_CLASS=30000\nPCI_ID=10DE:1401\nPCI_SUBSYS_ID=1458:36BA\nPCI_SLOT_NAME=0000:01:00.0\nMODALIAS=pci:v000010DEd00001401sv00001458sd000036BAbc03sc00i00\n",
        );
        assert_eq!(u.class, Some(0x030000));
        assert_eq!(u.id, Some((0x10de, 0x1401)));
        assert_eq!(u.subsys, Some((0x1458, 0x36ba)));
        assert_eq!(u.driver.as_deref(), Some("nvidia"));
        let unbound = parse_uevent("PCI_CLASS=60400\nPCI_ID=8086:1901\n");
        assert_eq!(unbound.driver, None);
        assert!(unbound.read);
    }

    #[test]
    fn config_header_fields() {
        let mut c = [0u8; 64];
        c[..4].copy_from_slice(&[0xde, 0x10, 0x01, 0x14]);
        c[8] = 0xa1;
        c[9..12].copy_from_slice(&[0x00, 0x00, 0x03]);
        c[14] = 0x80; // multi-function, header type 0
        c[0x2c..0x30].copy_from_slice(&[0x58, 0x14, 0xba, 0x36]);
        let h = parse_config_head(&c).expect("a header");
        assert_eq!(
            h,
            ConfigHead {
                vendor: 0x10de,
                device: 0x1401,
                class: 0x030000,
                revision: 0xa1,
                subsys: Some((0x1458, 0x36ba)),
            }
        );
        // Class bytes: programming interface, subclass, base class.
        c[9..12].copy_from_slice(&[0x30, 0x03, 0x0c]);
        assert_eq!(parse_config_head(&c).map(|h| h.class), Some(0x0c0330));
        // A bridge keeps its subsystem ids elsewhere.
        c[14] = 0x01;
        assert_eq!(parse_config_head(&c).map(|h| h.subsys), Some(None));
        // Longer is fine (root reads 256 or 4096 bytes); shorter is not.
        let mut long = c.to_vec();
        long.resize(256, 0xff);
        assert_eq!(parse_config_head(&long), parse_config_head(&c));
        assert_eq!(parse_config_head(&c[..63]), None);
        // A function that does not answer.
        c[..2].copy_from_slice(&[0xff, 0xff]);
        assert_eq!(parse_config_head(&c), None);
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
            let _ = parse_uevent(&s);
            let _ = parse_config_head(s.as_bytes());
        }
    }
}
