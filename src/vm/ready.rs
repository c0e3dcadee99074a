//! Whether a VM's PCI devices can be handed over now (`vm start`, `vm
//! show`), and where each goes when the VM stops.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::host::HostRoot;
use crate::model::{Inventory, PciAddress};

/// One host PCI function a VM is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Function {
    pub address: PciAddress,
    /// Its driver now (`null`: none).
    pub driver: Option<String>,
    pub iommu_group: Option<u32>,
    /// libvirt detaches it at start and reattaches it at stop.
    pub managed: bool,
    /// The driver it is on after the VM stops: libvirt gives a managed
    /// device back to the driver it had when the VM started (and leaves
    /// one that was on vfio-pci there).
    pub returns_to: Option<String>,
}

/// Readiness of a VM's devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub functions: Vec<Function>,
    /// Empty when the VM can start; else each reason with its fix.
    pub problems: Vec<String>,
}

/// Check `devices` (address, managed) against the host (`exliar_moves`:
/// the VM's handover is `dynamic` or `single-gpu`, with whether exliar's hook is
/// installed, which then moves unmanaged functions): each must exist,
/// be on vfio-pci or be managed, and its IOMMU group must be viable once
/// the VM has its devices (every other endpoint of the group on vfio-pci
/// or on no driver), and no other process may hold the group's
/// `/dev/vfio/N`. `running`: the VM runs already, so the groups are held
/// by its own QEMU and its devices are on vfio-pci.
pub fn check(
    host: &HostRoot,
    inv: &Inventory,
    devices: &[(PciAddress, bool)],
    running: bool,
    exliar_moves: Option<bool>,
) -> Readiness {
    let mut functions = Vec::new();
    let mut problems = Vec::new();
    let mut groups = BTreeSet::new();
    let ours: Vec<PciAddress> = devices.iter().map(|d| d.0).collect();
    for &(a, managed) in devices {
        let Some(d) = inv.device(&a) else {
            problems.push(format!(
                "{a} is not on this host (was the card moved or removed?); `exliar vm edit` the VM with --gpu"
            ));
            functions.push(Function {
                address: a,
                driver: None,
                iommu_group: None,
                managed,
                returns_to: None,
            });
            continue;
        };
        let on_vfio = d.driver.as_deref() == Some("vfio-pci");
        if !on_vfio && !managed && !running {
            match exliar_moves {
                Some(true) => {}
                Some(false) => problems.push(format!(
                    "{a} is on {}: exliar's hook moves it to vfio-pci when the VM starts (handover `dynamic` or `single-gpu`), but the hook is not installed: `exliar hooks install`",
                    d.driver.as_deref().unwrap_or("no driver")
                )),
                None => problems.push(format!(
                    "{a} is on {} and the VM does not let libvirt detach it (managed='no'): `exliar bind {a}` first",
                    d.driver.as_deref().unwrap_or("no driver")
                )),
            }
        }
        if let Some(g) = d.iommu_group {
            groups.insert(g);
        }
        functions.push(Function {
            address: a,
            driver: d.driver.clone(),
            iommu_group: d.iommu_group,
            managed,
            // managed or not, the function is back where it is now (the
            // VM does not run, so "now" is its host state)
            returns_to: if running { None } else { d.driver.clone() },
        });
    }
    // Viability: the rest of each group must not be on a host driver.
    for g in &groups {
        for d in inv.devices.iter().filter(|d| d.iommu_group == Some(*g)) {
            if ours.contains(&d.address) || is_bridge(d) {
                continue;
            }
            if let Some(drv) = d.driver.as_deref()
                && drv != "vfio-pci"
                && drv != "pci-stub"
            {
                problems.push(format!(
                    "IOMMU group {g} also holds {} on {drv}: the group is not viable; give it to the VM too, or bind it with `exliar bind --group {}`",
                    d.address, d.address
                ));
            }
        }
    }
    if !running {
        for (g, users) in crate::bind::vfio_users(host, &groups) {
            let who: Vec<String> = users
                .iter()
                .map(|(p, c)| format!("{c} (pid {p})"))
                .collect();
            problems.push(format!(
                "/dev/vfio/{g} is held by {}: stop that VM or program first",
                who.join(", ")
            ));
        }
    }
    Readiness {
        functions,
        problems,
    }
}

fn is_bridge(d: &crate::model::Device) -> bool {
    d.class
        .is_some_and(|c| c.class() == 0x06 && c.subclass() == 0x04)
}
