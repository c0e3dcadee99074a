//! What the host offers: its GPUs by resource, read from sysfs under the
//! host root with exliar's own readers, and the health each poll gives.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use exliar::cdi::host::{Options, host_specs, vendor_word};
use exliar::cdi::{GPU_KIND, VFIO_KIND};
use exliar::host::HostRoot;

/// A card a resource offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// Its device ID: the PCI address (`0000:03:00.0`).
    pub id: String,
    /// The NUMA node sysfs gives it, when it gives one (≥ 0).
    pub numa: Option<i64>,
    /// Its fully qualified CDI name (`exliar.dev/gpu=0000:03:00.0`).
    pub cdi: String,
}

/// resource name → device ID → card.
pub type Found = BTreeMap<String, BTreeMap<String, Card>>;

/// A card and whether it is there as it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevState {
    pub card: Card,
    pub healthy: bool,
}

/// resource name → device ID → state: every card ever offered since the
/// start; those gone or on another driver now are unhealthy.
pub type State = BTreeMap<String, BTreeMap<String, DevState>>;

/// The resource of GPUs a GPU driver holds (`exliar.dev/gpu-amd`).
pub fn gpu_resource(vendor: &str) -> String {
    format!("exliar.dev/gpu-{vendor}")
}

/// Read the host: each card a GPU driver holds (NVIDIA, AMD, Intel) or
/// vfio-pci holds, that `exliar cdi generate` writes a CDI device for,
/// and the functions on vfio-pci of such a card in its IOMMU group (their
/// CDI name is the card's: its device gives the group's node).
/// A card the spec would skip (its device nodes are missing) is not
/// offered: its CDI name would refer to nothing.
pub fn discover(root: &Path) -> anyhow::Result<Found> {
    let host = HostRoot::new(root);
    let ids = exliar::host::sysfs::load_pci_ids(&host);
    let inv = exliar::host::sysfs::read_inventory(&host, &ids)?;
    let analysis = exliar::analyze::analyze(&inv);
    let stacks = exliar::host::stacks::read(&host, &analysis.gpus);
    let specs =
        host_specs(&analysis.gpus, &stacks, &Options::default()).map_err(anyhow::Error::msg)?;
    let written: BTreeSet<String> = specs
        .specs
        .iter()
        .flat_map(|s| {
            s.input.devices.iter().flat_map(|d| {
                d.names
                    .iter()
                    .map(|n| format!("{}={n}", s.input.vendor_kind))
            })
        })
        .collect();
    let mut found = Found::new();
    for g in &analysis.gpus {
        let Some(driver) = stacks
            .gpu(&g.address)
            .and_then(|s| s.driver.as_ref())
            .map(|d| d.name.as_str())
        else {
            continue;
        };
        let (resource, kind) = if driver == "vfio-pci" {
            let (Some(v), Some(d)) = (g.vendor_id, g.device_id) else {
                continue;
            };
            (exliar::fleet::kubevirt::resource_name(v, d), VFIO_KIND)
        } else {
            match vendor_word(g.vendor_id) {
                "other" => continue,
                w => (gpu_resource(w), GPU_KIND),
            }
        };
        let id = g.address.to_string();
        let cdi = format!("{kind}={id}");
        if !written.contains(&cdi) {
            continue;
        }
        let numa = inv
            .device(&g.address)
            .and_then(|d| d.numa_node)
            .filter(|n| *n >= 0)
            .map(i64::from);
        if kind == VFIO_KIND {
            // The card's other functions on vfio-pci (HDMI audio, USB),
            // each under its own vendor:device as `exliar kubevirt config`
            // permits them; the card's CDI device gives their IOMMU group
            // when it is the card's.
            for f in g.functions.iter().filter(|f| **f != g.address) {
                let Some(d) = inv.device(f) else { continue };
                let (Some(v), Some(dv)) = (d.vendor_id, d.device_id) else {
                    continue;
                };
                if d.driver.as_deref() != Some("vfio-pci")
                    || d.iommu_group.is_none()
                    || d.iommu_group != g.iommu_group
                {
                    continue;
                }
                let fid = f.to_string();
                found
                    .entry(exliar::fleet::kubevirt::resource_name(v, dv))
                    .or_default()
                    .insert(
                        fid.clone(),
                        Card {
                            id: fid,
                            numa,
                            cdi: cdi.clone(),
                        },
                    );
            }
        }
        found
            .entry(resource)
            .or_default()
            .insert(id.clone(), Card { id, numa, cdi });
    }
    Ok(found)
}

/// The state after a poll found `found`: cards found are healthy (and
/// take the facts found), cards known but not found are unhealthy, new
/// cards are added.
pub fn merge(prev: &State, found: &Found) -> State {
    let mut s = prev.clone();
    for (r, devs) in s.iter_mut() {
        for (id, d) in devs.iter_mut() {
            match found.get(r).and_then(|f| f.get(id)) {
                Some(c) => {
                    d.card = c.clone();
                    d.healthy = true;
                }
                None => d.healthy = false,
            }
        }
    }
    for (r, devs) in found {
        let e = s.entry(r.clone()).or_default();
        for (id, c) in devs {
            e.entry(id.clone()).or_insert_with(|| DevState {
                card: c.clone(),
                healthy: true,
            });
        }
    }
    s
}

/// A cheap look at the host between full reads: each PCI device and the
/// driver holding it (`None` when the device list cannot be read). A card
/// gone, new or moved to another driver changes it.
pub fn fingerprint(root: &Path) -> Option<Vec<(String, Option<String>)>> {
    let host = HostRoot::new(root);
    let devs = host.list_dir("sys/bus/pci/devices").ok()?;
    Some(
        devs.into_iter()
            .map(|d| {
                let driver = host
                    .link_name(format!("sys/bus/pci/devices/{d}/driver"))
                    .ok()
                    .flatten();
                (d, driver)
            })
            .collect(),
    )
}

/// The set of (resource, device) a poll found: when it changes the CDI
/// specs are written again.
pub fn device_set(found: &Found) -> BTreeSet<(String, String)> {
    found
        .iter()
        .flat_map(|(r, d)| d.keys().map(move |id| (r.clone(), id.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn card(id: &str) -> Card {
        Card {
            id: id.into(),
            numa: None,
            cdi: format!("exliar.dev/gpu={id}"),
        }
    }

    #[test]
    fn merge_marks_missing_unhealthy_and_keeps_them() {
        let r = "exliar.dev/gpu-amd".to_string();
        let mut f = Found::new();
        f.entry(r.clone())
            .or_default()
            .insert("a".into(), card("a"));
        f.entry(r.clone())
            .or_default()
            .insert("b".into(), card("b"));
        let s = merge(&State::new(), &f);
        assert!(s[&r]["a"].healthy && s[&r]["b"].healthy);
        f.get_mut(&r).map(|m| m.remove("b"));
        let s = merge(&s, &f);
        assert!(s[&r]["a"].healthy && !s[&r]["b"].healthy);
        f.entry(r.clone())
            .or_default()
            .insert("b".into(), card("b"));
        let s = merge(&s, &f);
        assert!(s[&r]["b"].healthy);
    }

    #[test]
    fn fingerprint_sees_a_driver_go() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("sys/devices/pci0000:00/0000:03:00.0");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::create_dir_all(tmp.path().join("sys/bus/pci/devices")).unwrap();
        std::fs::create_dir_all(tmp.path().join("sys/bus/pci/drivers/amdgpu")).unwrap();
        std::os::unix::fs::symlink(
            "../../../devices/pci0000:00/0000:03:00.0",
            tmp.path().join("sys/bus/pci/devices/0000:03:00.0"),
        )
        .unwrap();
        std::os::unix::fs::symlink("../../../bus/pci/drivers/amdgpu", d.join("driver")).unwrap();
        let a = fingerprint(tmp.path()).unwrap();
        assert_eq!(
            a,
            [("0000:03:00.0".to_string(), Some("amdgpu".to_string()))]
        );
        std::fs::remove_file(d.join("driver")).unwrap();
        assert_eq!(
            fingerprint(tmp.path()).unwrap(),
            [("0000:03:00.0".to_string(), None)]
        );
        assert_eq!(fingerprint(&tmp.path().join("nothing")), None);
    }

    #[test]
    fn hw17_offers_both_gpus_and_the_vfio_card() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/hosts/hw17-alderlake-asus-rx6700xt-rx550-vfio");
        let f = discover(&root).expect("fixture reads");
        let names: Vec<(&str, Vec<&str>)> = f
            .iter()
            .map(|(r, d)| (r.as_str(), d.keys().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            names,
            [
                ("exliar.dev/gpu-amd", vec!["0000:03:00.0"]),
                ("exliar.dev/gpu-intel", vec!["0000:00:02.0"]),
                ("exliar.dev/vfio-1002-67ff", vec!["0000:04:00.0"]),
                ("exliar.dev/vfio-1002-aae0", vec!["0000:04:00.1"]),
            ]
        );
        assert_eq!(
            f["exliar.dev/vfio-1002-67ff"]["0000:04:00.0"].cdi,
            "exliar.dev/vfio=0000:04:00.0"
        );
        assert_eq!(
            f["exliar.dev/vfio-1002-aae0"]["0000:04:00.1"].cdi,
            "exliar.dev/vfio=0000:04:00.0"
        );
    }
}
