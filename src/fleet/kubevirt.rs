//! KubeVirt: the `permittedHostDevices` a cluster needs for the cards its
//! nodes isolate, from one host or from snapshots of several (merged), and
//! an example `VirtualMachine` asking for one. Pure.
//!
//! A card is offered when it is on vfio-pci, or when it is the card exliar
//! recommends passing through (which `exliar apply` isolates at boot); its
//! other functions (HDMI audio, USB) go with it, each as its own
//! vendor:device entry. The resource name is `exliar.dev/vfio-VVVV-DDDD`,
//! the name exliar's device plugin advertises; with KubeVirt's own plugin
//! (`externalResourceProvider: false`) KubeVirt advertises that same name.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analyze::Analysis;
use crate::model::{Inventory, PciAddress};

/// Who advertises the devices to the kubelet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// KubeVirt's own device plugin (virt-handler).
    Kubevirt,
    /// exliar's device plugin (`exliar-device-plugin`).
    Exliar,
}

/// One node's facts.
pub struct Node<'a> {
    pub name: String,
    pub inv: &'a Inventory,
    pub analysis: &'a Analysis,
}

/// One vendor:device permitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Permitted {
    /// `10DE:2504` (KubeVirt's selector form).
    pub selector: String,
    pub resource_name: String,
    /// What it is (`GPU`, `audio`).
    pub what: String,
    /// node → the addresses offered there.
    pub nodes: BTreeMap<String, Vec<PciAddress>>,
}

/// The resource name of a vendor:device.
pub fn resource_name(vendor: u16, device: u16) -> String {
    format!("exliar.dev/vfio-{vendor:04x}-{device:04x}")
}

/// A card the host keeps: node, address, driver.
type Kept = (String, PciAddress, String);

/// The cards each node offers and what is inconsistent between nodes.
pub fn permitted(nodes: &[Node<'_>]) -> (Vec<Permitted>, Vec<String>) {
    let mut by_sel: BTreeMap<(u16, u16), Permitted> = BTreeMap::new();
    // ids kept by the host somewhere: (ids) -> [(node, address, driver)]
    let mut kept: BTreeMap<(u16, u16), Vec<Kept>> = BTreeMap::new();
    for n in nodes {
        let rec = n.analysis.recommendation.passthrough;
        for g in &n.analysis.gpus {
            let offered = g.driver.as_deref() == Some("vfio-pci") || rec == Some(g.address);
            for f in &g.functions {
                let Some(d) = n.inv.device(f) else { continue };
                let (Some(v), Some(dv)) = (d.vendor_id, d.device_id) else {
                    continue;
                };
                if !offered {
                    if f == &g.address {
                        kept.entry((v, dv)).or_default().push((
                            n.name.clone(),
                            *f,
                            g.driver.clone().unwrap_or_else(|| "no driver".into()),
                        ));
                    }
                    continue;
                }
                let what = if f == &g.address {
                    "GPU".to_string()
                } else {
                    match d.class.map(|c| c.class_subclass()) {
                        Some(0x0403) => "audio".into(),
                        Some(0x0c03) => "USB controller".into(),
                        Some(0x0c80) => "serial bus (USB-C UCSI)".into(),
                        _ => "function".into(),
                    }
                };
                let p = by_sel.entry((v, dv)).or_insert_with(|| Permitted {
                    selector: format!("{v:04X}:{dv:04X}"),
                    resource_name: resource_name(v, dv),
                    what,
                    nodes: BTreeMap::new(),
                });
                let addrs = p.nodes.entry(n.name.clone()).or_default();
                if !addrs.contains(f) {
                    addrs.push(*f);
                }
            }
        }
    }
    let mut problems = Vec::new();
    for ((v, d), p) in &by_sel {
        if let Some(k) = kept.get(&(*v, *d)) {
            for (node, addr, driver) in k.iter().filter(|(n, _, _)| !p.nodes.contains_key(n)) {
                problems.push(format!(
                    "{} is passed through on {} but {node} keeps {addr} with the same ids for the host ({driver}): KubeVirt offers only cards on vfio-pci, so {node} offers none of them",
                    p.selector,
                    p.nodes.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    (by_sel.into_values().collect(), problems)
}

/// The `KubeVirt` resource with `permittedHostDevices` (for `kubectl
/// patch --type merge` or to merge into the operator's CR).
pub fn kubevirt_cr(devices: &[Permitted], provider: Provider) -> serde_json::Value {
    let pci: Vec<serde_json::Value> = devices
        .iter()
        .map(|p| {
            serde_json::json!({
                "pciVendorSelector": p.selector,
                "resourceName": p.resource_name,
                "externalResourceProvider": provider == Provider::Exliar,
            })
        })
        .collect();
    serde_json::json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "KubeVirt",
        "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
        "spec": {
            "configuration": {
                "permittedHostDevices": {"pciHostDevices": pci}
            }
        }
    })
}

/// An example `VirtualMachine` asking for the GPU (and its other
/// functions) of `devices`' first GPU.
pub fn example_vm(devices: &[Permitted]) -> Option<serde_json::Value> {
    let gpu = devices.iter().find(|p| p.what == "GPU")?;
    let node = gpu.nodes.keys().next()?;
    let mut host_devices = vec![serde_json::json!({
        "name": "gpu0",
        "deviceName": gpu.resource_name,
    })];
    // Its companions on the same node and slot.
    let slot = gpu.nodes.get(node)?.first()?;
    for (i, p) in devices
        .iter()
        .filter(|p| p.what != "GPU")
        .filter(|p| {
            p.nodes.get(node).is_some_and(|a| {
                a.iter().any(|x| {
                    x.domain == slot.domain && x.bus == slot.bus && x.device == slot.device
                })
            })
        })
        .enumerate()
    {
        host_devices.push(serde_json::json!({
            "name": format!("gpu0-fn{}", i + 1),
            "deviceName": p.resource_name,
        }));
    }
    Some(serde_json::json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "gpu-vm"},
        "spec": {
            "runStrategy": "Halted",
            "template": {
                "metadata": {"labels": {"kubevirt.io/vm": "gpu-vm"}},
                "spec": {
                    "nodeSelector": {"exliar.dev/passthrough.ready": "true"},
                    "domain": {
                        "cpu": {"cores": 4},
                        "memory": {"guest": "8Gi"},
                        "firmware": {"bootloader": {"efi": {"secureBoot": false}}},
                        "devices": {
                            "hostDevices": host_devices,
                            "disks": [{"name": "root", "disk": {"bus": "virtio"}}]
                        }
                    },
                    "volumes": [{
                        "name": "root",
                        "containerDisk": {"image": "quay.io/containerdisks/fedora:latest"}
                    }]
                }
            }
        }
    }))
}
