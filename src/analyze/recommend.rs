//! Which GPU to pass through and which one the host keeps.

use serde::Serialize;

use crate::model::{Inventory, PciAddress};

use super::gpu::{Gpu, Isolation, named_list};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// One GPU for the guest, another for the host.
    Split,
    /// Only one usable GPU: it can only be handed over while the VM runs.
    SingleGpu,
    /// Nothing can be recommended (see reasons).
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recommendation {
    pub mode: Mode,
    pub passthrough: Option<PciAddress>,
    pub host: Option<PciAddress>,
    pub reasons: Vec<String>,
}

fn label(g: &Gpu) -> String {
    format!("{} ({})", g.address, g.name)
}

pub fn recommend(inv: &Inventory, gpus: &[Gpu]) -> Recommendation {
    let mut reasons = Vec::new();
    let usable: Vec<&Gpu> = gpus
        .iter()
        .filter(|g| !g.bmc && g.virtual_function_of().is_none())
        .collect();
    let bmc: Vec<&Gpu> = gpus.iter().filter(|g| g.bmc).collect();
    let boot = gpus.iter().find(|g| g.boot_display);

    if usable.is_empty() {
        reasons.push(if gpus.is_empty() {
            "No GPU (PCI display class 03) was found.".to_string()
        } else {
            "The only display devices are board-management (BMC) displays, which are never passed through."
                .to_string()
        });
        return Recommendation {
            mode: Mode::None,
            passthrough: None,
            host: bmc.first().map(|g| g.address),
            reasons,
        };
    }

    if inv.iommu.enabled == Some(false) {
        reasons.push(
            "The IOMMU is not enabled (no IOMMU groups): enable VT-d/AMD-Vi in the firmware and the kernel, then scan again (see `exliar check`)."
                .to_string(),
        );
        return Recommendation {
            mode: Mode::None,
            passthrough: None,
            host: boot
                .map(|g| g.address)
                .or(usable.first().map(|g| g.address)),
            reasons,
        };
    }

    if usable.len() == 1 && bmc.is_empty() {
        let g = usable[0];
        reasons.push(format!(
            "{} is the only GPU: passing it through leaves the host without a display while the VM runs. Use single-GPU handover (the host releases the card when the VM starts and takes it back when it stops).",
            label(g)
        ));
        if g.driver.as_deref() == Some("vfio-pci") {
            reasons.push(
                "It is already on vfio-pci: the host runs headless (no console on a GPU) and the card is ready for a VM."
                    .to_string(),
            );
        }
        if g.isolation != Isolation::Isolated {
            reasons.push(format!("Its IOMMU isolation is {}.", g.isolation.label()));
        }
        return Recommendation {
            mode: Mode::SingleGpu,
            passthrough: None,
            host: Some(g.address),
            reasons,
        };
    }

    // The host keeps the boot display (or a BMC display, or an integrated GPU).
    let host = boot
        .or_else(|| bmc.first().copied())
        .or_else(|| usable.iter().find(|g| g.integrated).copied())
        .or_else(|| usable.first().copied());

    // GPUs sharing one group cannot be split: one sentence per group
    // (comparing every pair was quadratic).
    // (group, GPU) pairs sorted by group, stably (each group's GPUs stay
    // in order): one list, not one per group.
    let mut pairs: Vec<(u32, PciAddress)> = usable
        .iter()
        .flat_map(|g| g.groups.iter().map(|id| (*id, g.address)))
        .collect();
    pairs.sort_by_key(|p| p.0);
    let mut shared: Vec<Vec<PciAddress>> = pairs
        .chunk_by(|a, b| a.0 == b.0)
        .filter(|run| run.len() > 1)
        .map(|run| run.iter().map(|p| p.1).collect())
        .collect();
    shared.sort();
    shared.dedup();
    for v in shared {
        let who = match v.as_slice() {
            [a, b] => format!("{a} and {b}"),
            _ => named_list(&v, v.len()),
        };
        reasons.push(format!(
            "{who} share an IOMMU group: they cannot be split between host and guest."
        ));
    }

    let mut candidates: Vec<&Gpu> = Vec::new();
    for g in &usable {
        if Some(g.address) == host.map(|h| h.address) {
            continue;
        }
        if let Some(words) = g.boot_display_words() {
            reasons.push(format!(
                "{} is {words} and another GPU can run the host, so it is not recommended; choose another boot display in the firmware to change that.",
                label(g)
            ));
            continue;
        }
        match g.isolation {
            Isolation::Isolated => candidates.push(g),
            Isolation::Shared => reasons.push(format!(
                "{} is not isolated: its IOMMU group also holds {}.",
                label(g),
                g.group_peers()
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Isolation::Unknown => reasons.push(format!(
                "{}: its IOMMU group is not known, so its isolation cannot be judged.",
                label(g)
            )),
            Isolation::NoIommu => {}
        }
    }
    let host_ids = host.map(|h| (h.vendor_id, h.device_id));
    // A card already bound to vfio-pci is the one the user passes through:
    // recommending another would undo a working setup.
    candidates.sort_by_key(|g| {
        (
            g.driver.as_deref() != Some("vfio-pci"),
            g.integrated,
            host_ids.is_some_and(|ids| ids.0.is_some() && ids == (g.vendor_id, g.device_id)),
            g.address,
        )
    });
    let Some(pick) = candidates.first().copied() else {
        reasons.insert(
            0,
            "No GPU can be passed through as things stand.".to_string(),
        );
        return Recommendation {
            mode: Mode::None,
            passthrough: None,
            host: host.map(|h| h.address),
            reasons,
        };
    };
    let mut head = vec![format!("Pass through {}: {}", label(pick), pick.verdict())];
    if let Some(h) = host {
        let why = if let Some(words) = h.boot_display_words() {
            words
        } else if h.bmc {
            "the board-management console".to_string()
        } else if h.integrated {
            "integrated graphics".to_string()
        } else {
            "the remaining GPU".to_string()
        };
        head.push(format!("The host keeps {}, {why}.", label(h)));
    }
    if !pick.identical_ids_with.is_empty() {
        head.push(format!(
            "{} has the same vendor:device ids as {}: binding vfio-pci by id would take both cards, so it must be bound by address.",
            pick.address,
            named_list(&pick.identical_ids_with, pick.identical_ids_count)
        ));
    }
    for q in pick.quirk_details() {
        head.push(format!("Quirk {}: {}", q.id, q.advice));
    }
    if candidates.len() > 1 {
        head.push(format!(
            "Also passable: {}.",
            candidates[1..]
                .iter()
                .map(|g| g.address.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    head.extend(reasons);
    Recommendation {
        mode: Mode::Split,
        passthrough: Some(pick.address),
        host: host.map(|h| h.address),
        reasons: head,
    }
}
