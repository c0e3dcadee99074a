//! `bind`, `unbind` and handover read only the part of the host they need
//! (`host::sysfs::read_inventory_near`: the card, its slot, its IOMMU groups and
//! the host's display controllers). On every fixture host, for every device and
//! scope, their decisions from that partial read equal those from the whole
//! inventory: the same targets, refusals, warnings, kernel writes and groups.

mod common;

use std::path::Path;

use exliar::bind::{self, Binding, MemoryState, Request, Scope};
use exliar::host::HostRoot;
use exliar::host::kernel::SysfsKernel;
use exliar::host::sysfs::{
    ClassCache, load_pci_ids, read_inventory, read_inventory_for_unbinding, read_inventory_near,
    read_inventory_near_cached, read_inventory_to_move,
};
use exliar::model::{Inventory, PciAddress};

fn outcome_json(o: &bind::Outcome) -> serde_json::Value {
    serde_json::to_value(o).expect("an outcome serializes")
}

fn bind_doc(
    host: &HostRoot,
    inv: &Inventory,
    a: PciAddress,
    scope: Scope,
    force: bool,
) -> serde_json::Value {
    let kernel = SysfsKernel::new(host.path());
    let req = Request {
        addresses: vec![a],
        scope,
        force,
        dry_run: true,
    };
    let mut store = MemoryState(Vec::new());
    outcome_json(&bind::bind_request(host, &kernel, &mut store, inv, &req))
}

fn unbind_doc(
    host: &HostRoot,
    inv: &Inventory,
    held: &[Binding],
    a: Option<PciAddress>,
    scope: Scope,
) -> serde_json::Value {
    let kernel = SysfsKernel::new(host.path());
    let req = Request {
        addresses: a.into_iter().collect(),
        scope,
        force: false,
        dry_run: true,
    };
    let mut store = MemoryState(held.to_vec());
    outcome_json(&bind::unbind_request(host, &kernel, &mut store, inv, &req))
}

#[test]
fn partial_reads_decide_as_the_whole_inventory_on_every_fixture_host() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hosts");
    let mut hosts = 0;
    let mut compared = 0;
    // devices whose give-back read fewer functions than their bind
    let mut fewer = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixture hosts")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("sys/bus/pci/devices").is_dir())
        .collect();
    entries.sort();
    for root in entries {
        let host = HostRoot::new(&root);
        // One class cache per host, kept from one device's read to the next,
        // as from one bind to the next.
        let mut cache = ClassCache::default();
        let ids = load_pci_ids(&host);
        let full = read_inventory(&host, &ids).expect("the fixture reads");
        hosts += 1;
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for d in &full.devices {
            let a = d.address;
            // as `exliar bind` reads it: no PCI names
            let near = read_inventory_near(&host, &exliar::host::PciIds::empty(), &[a])
                .expect("the fixture reads");
            // The classes from the cache (made by the reads of the devices
            // before) give the same read.
            let cached =
                read_inventory_near_cached(&host, &exliar::host::PciIds::empty(), &[a], &mut cache)
                    .expect("the fixture reads");
            assert_eq!(
                serde_json::to_value(&cached.devices).unwrap_or_default(),
                serde_json::to_value(&near.devices).unwrap_or_default(),
                "{name}: {a} read from the class cache"
            );
            // Every device the partial read holds is read as in the full one,
            // but for what it leaves out: the PCIe link, the NUMA node, the
            // revision, names.
            let decided = |d: &exliar::model::Device| {
                let mut v = serde_json::to_value(d).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    for k in [
                        "link",
                        "numa_node",
                        "revision",
                        "vendor_name",
                        "device_name",
                    ] {
                        o.remove(k);
                    }
                }
                v
            };
            // as `exliar unbind` and a handover's give-back read it: the
            // card's slots and groups, not the other display controllers
            let giving_back = read_inventory_for_unbinding(&host, &[a]).expect("the fixture reads");
            // the handover's give-back: the same read, and a class cache
            // neither read nor changed (so never saved)
            let (moved, kept) =
                read_inventory_to_move(&host, &[a], false).expect("the fixture reads");
            assert_eq!(
                serde_json::to_value(&moved.devices).unwrap_or_default(),
                serde_json::to_value(&giving_back.devices).unwrap_or_default(),
                "{name}: {a} given back by a handover"
            );
            assert!(
                !kept.changed(),
                "{name}: giving {a} back changed the class cache"
            );
            // a near read leaves the revision out
            assert!(
                near.devices
                    .iter()
                    .chain(&giving_back.devices)
                    .all(|d| d.revision.is_none()),
                "{name}: {a}: a near read read a revision"
            );
            for n in near.devices.iter().chain(&giving_back.devices) {
                let f = full.device(&n.address).expect("a device of the host");
                assert_eq!(
                    decided(n),
                    decided(f),
                    "{name}: {} read differently",
                    n.address
                );
            }
            // ... and nothing else: `a`'s slot, and what shares a group with it
            let slot = |x: &PciAddress| (x.domain, x.bus, x.device);
            let groups: Vec<u32> = full
                .devices
                .iter()
                .filter(|x| slot(&x.address) == slot(&a))
                .filter_map(|x| x.iommu_group)
                .collect();
            for g in &giving_back.devices {
                assert!(
                    slot(&g.address) == slot(&a)
                        || g.iommu_group.is_some_and(|n| groups.contains(&n)),
                    "{name}: giving {a} back read {}, outside its slot and groups",
                    g.address
                );
            }
            if giving_back.devices.len() < near.devices.len() {
                fewer += 1;
            }
            let scopes: &[Scope] = if d.class.is_some_and(|c| c.0 >> 16 == 0x03) {
                &[Scope::Card, Scope::Group, Scope::Exact]
            } else {
                &[Scope::Card]
            };
            for &scope in scopes {
                for force in [false, true] {
                    assert_eq!(
                        bind_doc(&host, &near, a, scope, force),
                        bind_doc(&host, &full, a, scope, force),
                        "{name}: bind {a} {scope:?} force={force}"
                    );
                    compared += 1;
                }
            }
            // unbind of a device exliar holds, by address and by "all it holds"
            let held = vec![Binding {
                address: a,
                original_driver: d.driver.clone(),
                original_override: None,
                group: d.iommu_group,
                original_reset_method: None,
            }];
            for scope in [Scope::Card, Scope::Group] {
                assert_eq!(
                    unbind_doc(&host, &giving_back, &held, Some(a), scope),
                    unbind_doc(&host, &full, &held, Some(a), scope),
                    "{name}: unbind {a} {scope:?}"
                );
                compared += 1;
            }
            assert_eq!(
                unbind_doc(&host, &giving_back, &held, None, Scope::Card),
                unbind_doc(&host, &full, &held, None, Scope::Card),
                "{name}: unbind (all held: {a})"
            );
            compared += 1;
        }
        // an address that names no device
        let none = PciAddress::parse("0000:fe:1f.7").expect("address");
        let near = read_inventory_near(&host, &exliar::host::PciIds::empty(), &[none])
            .expect("the fixture reads");
        assert_eq!(
            bind_doc(&host, &near, none, Scope::Card, false),
            bind_doc(&host, &full, none, Scope::Card, false),
            "{name}: no such device"
        );
    }
    assert!(hosts >= 20, "the fixture hosts are there ({hosts})");
    // the hosts with a second display controller: a bind reads it, a
    // give-back does not
    assert!(fewer > 0, "no give-back read less than a bind");
    eprintln!(
        "{hosts} fixture hosts, {compared} decisions compared; {fewer} give-backs read less than their bind"
    );
}

/// The class cache is used, and only while an entry is the same device: a
/// class file garbled after the cache was made is not read again, until the
/// device's entry is made anew (a new inode number); a cache of another boot
/// is not used; what is saved reads back.
#[test]
fn the_class_cache_skips_unchanged_devices_only() {
    let (_t, root) = common::fixture_copy("hw09-ryzen-x570-rtx3060", "host");
    let boot = root.join("proc/sys/kernel/random");
    std::fs::create_dir_all(&boot).expect("proc");
    std::fs::write(boot.join("boot_id"), "11111111-2222\n").expect("boot id");
    let host = HostRoot::new(&root);
    let full = read_inventory(&host, &load_pci_ids(&host)).expect("reads");
    let gpu = full
        .devices
        .iter()
        .find(|d| d.class.is_some_and(|c| c.0 >> 16 == 0x03))
        .map(|d| d.address)
        .expect("a GPU");
    // a device outside the GPU's slot, not a display controller
    let other = full
        .devices
        .iter()
        .find(|d| d.address.bus != gpu.bus && d.class.is_some_and(|c| c.0 >> 16 != 0x03))
        .map(|d| d.address)
        .expect("another device");
    let empty = exliar::host::PciIds::empty();
    let mut cache = ClassCache::load(&host);
    let first = read_inventory_near_cached(&host, &empty, &[gpu], &mut cache).expect("reads");
    assert!(cache.changed());
    cache.save(&root).expect("saved");
    let link = root.join(format!("sys/bus/pci/devices/{other}"));
    let target = std::fs::read_link(&link).expect("a link");
    let class = root.join("sys/bus/pci/devices").join(&target).join("class");
    std::fs::write(&class, "garbled\n").expect("garble");
    let mut loaded = ClassCache::load(&host);
    let again = read_inventory_near_cached(&host, &empty, &[gpu], &mut loaded).expect("reads");
    assert!(!loaded.changed(), "{}", loaded.render());
    assert_eq!(
        serde_json::to_value(&again).unwrap_or_default(),
        serde_json::to_value(&first).unwrap_or_default(),
        "the garbled class was read although cached"
    );
    // the same entry made anew: its inode number changes, the file is read
    // (made before the old one goes, so that it cannot take its number)
    let made = root.join("sys/bus/pci/devices/new-entry");
    std::os::unix::fs::symlink(&target, &made).expect("relink");
    std::fs::rename(&made, &link).expect("replace");
    let mut loaded = ClassCache::load(&host);
    let fresh = read_inventory_near_cached(&host, &empty, &[gpu], &mut loaded).expect("reads");
    // (a class that cannot be read has its device read in full)
    let holds = |inv: &exliar::model::Inventory| inv.device(&other).is_some();
    assert!(!holds(&again));
    assert!(
        holds(&fresh),
        "the garbled class of a new entry was not read"
    );
    // another boot: the cache is not used
    std::fs::write(&class, "0x0c0330\n").expect("restore");
    loaded.save(&root).expect("saved");
    std::fs::write(boot.join("boot_id"), "33333333-4444\n").expect("boot id");
    std::fs::write(&class, "garbled\n").expect("garble");
    let mut other_boot = ClassCache::load(&host);
    let read = read_inventory_near_cached(&host, &empty, &[gpu], &mut other_boot).expect("reads");
    assert!(holds(&read), "a cache of another boot was used");
}
