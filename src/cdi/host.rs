//! What `exliar cdi generate` writes for a host: from the analysis's GPUs
//! and what [`crate::host::stacks`] found (drivers, device nodes, user-space
//! files), the [`Input`] of each spec file. Pure: the caller reads the host.
//!
//! Two kinds, two files:
//! - [`GPU_KIND`] (`exliar-gpu.json`): every card a GPU driver holds. NVIDIA
//!   (`nvidia`): `/dev/nvidiaN`, the card's DRM nodes, the driver's shared
//!   nodes (`nvidiactl`, `nvidia-uvm`, `nvidia-uvm-tools`,
//!   `nvidia-modeset`), its user-space libraries, tools, firmware and ICD
//!   manifests as read-only bind mounts, and an ld-cache hook when the
//!   host has NVIDIA's hook program; AMD (`amdgpu`): the render node and
//!   `/dev/kfd`; any other DRM driver (i915, xe, nouveau, radeon, …): the
//!   render node. `drm_card` adds `/dev/dri/cardN` where it is not there
//!   already.
//! - [`VFIO_KIND`] (`exliar-vfio.json`): every card on vfio-pci:
//!   `/dev/vfio/vfio` and its group's `/dev/vfio/N`.
//!
//! Every edit is per device, none spec-wide: one kind holds every vendor's
//! cards, and asking for the AMD card must not bring NVIDIA's libraries.
//!
//! Names: each card is named by its index among the cards of its kind
//! (PCI-address order, counted before any filter and over cards that are
//! skipped, so a name keeps its card), by its PCI address, and by NVIDIA's
//! `GPU-…` UUID where the driver gives one; `all` is every device written.

use std::collections::BTreeMap;

use serde::Serialize;

use super::generate::{GPU_KIND, Hook, Input, InputDevice, Mount, Node, VFIO_KIND};
use crate::analyze::Gpu;
use crate::host::stacks::{DevNode, GpuStack, Stacks};
use crate::model::PciAddress;

/// The spec file of each kind, inside the output directory.
pub const GPU_FILE: &str = "exliar-gpu.json";
pub const VFIO_FILE: &str = "exliar-vfio.json";

/// The options `generate` has for a host.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// PCI vendors to keep (`nvidia`, `amd`, `intel`); empty: all.
    pub vendors: Vec<String>,
    /// Cards to keep; empty: all.
    pub gpus: Vec<PciAddress>,
    /// Kinds to write (`gpu`, `vfio`); empty: both.
    pub kinds: Vec<String>,
    /// Also give `/dev/dri/cardN` (display, KMS) to non-NVIDIA cards.
    pub drm_card: bool,
    /// The ld-cache hook program found under the root, when hooks are
    /// wanted.
    pub hook: Option<HookProgram>,
}

/// NVIDIA's OCI hook program that updates a container's ld cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookProgram {
    /// Host path (`/usr/bin/nvidia-cdi-hook`).
    pub path: String,
    /// The argv before `--folder …`: `nvidia-cdi-hook update-ldcache` or
    /// `nvidia-ctk hook update-ldcache`.
    pub args: Vec<String>,
}

impl HookProgram {
    /// The hook program from the file names present under the root
    /// (`nvidia-cdi-hook` preferred, as nvidia-ctk ≥ 1.15 writes).
    pub fn find(exists: impl Fn(&str) -> bool) -> Option<HookProgram> {
        for dir in ["/usr/bin", "/usr/local/bin"] {
            let p = format!("{dir}/nvidia-cdi-hook");
            if exists(&p) {
                return Some(HookProgram {
                    path: p,
                    args: vec!["nvidia-cdi-hook".into(), "update-ldcache".into()],
                });
            }
        }
        for dir in ["/usr/bin", "/usr/local/bin"] {
            let p = format!("{dir}/nvidia-ctk");
            if exists(&p) {
                return Some(HookProgram {
                    path: p,
                    args: vec!["nvidia-ctk".into(), "hook".into(), "update-ldcache".into()],
                });
            }
        }
        None
    }
}

/// One spec file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecInput {
    /// `exliar-gpu.json`.
    pub file: &'static str,
    pub input: Input,
}

/// A card left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub address: PciAddress,
    pub reason: String,
}

/// What to write for a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSpecs {
    pub specs: Vec<SpecInput>,
    pub skipped: Vec<Skipped>,
    /// Facts the user should know (no `/dev/kfd`, no hook program, …).
    pub notes: Vec<String>,
}

/// The PCI vendor word of `--vendor`.
pub fn vendor_word(vendor_id: Option<u16>) -> &'static str {
    match vendor_id {
        Some(0x10de) => "nvidia",
        Some(0x1002) => "amd",
        Some(0x8086) => "intel",
        _ => "other",
    }
}

const RO: [&str; 4] = ["ro", "nosuid", "nodev", "bind"];

/// A present host node as a CDI node; `None` when it is absent or its
/// numbers are unknown.
fn cdi_node(n: &DevNode) -> Option<Node> {
    if !n.present {
        return None;
    }
    Some(Node {
        host_path: n.path.clone(),
        container_path: n.path.clone(),
        kind: 'c',
        major: n.major?,
        minor: n.minor?,
        mode: n
            .mode
            .as_deref()
            .and_then(|m| u32::from_str_radix(m, 8).ok())?,
        uid: n.uid?,
        gid: n.gid?,
    })
}

fn role<'a>(nodes: &'a [DevNode], r: &str) -> impl Iterator<Item = &'a DevNode> {
    nodes.iter().filter(move |n| n.role == r)
}

/// The nodes of one card for its driver, or why it cannot be written.
fn gpu_nodes(
    stack: &GpuStack,
    shared: &[DevNode],
    drm_card: bool,
    notes: &mut Vec<String>,
) -> Result<Vec<Node>, String> {
    let driver = stack.driver.as_ref().map(|d| d.name.as_str()).unwrap_or("");
    let present = |r: &str| {
        role(&stack.nodes, r)
            .filter_map(cdi_node)
            .collect::<Vec<_>>()
    };
    let mut nodes = Vec::new();
    match driver {
        "nvidia" => {
            let gpu = present("nvidia-gpu");
            if gpu.is_empty() {
                return Err(match stack.nvidia.as_ref().and_then(|n| n.minor) {
                    Some(m) => format!("/dev/nvidia{m} does not exist on the host"),
                    None => "its /dev/nvidiaN is unknown: the driver's information file for it was not readable".into(),
                });
            }
            let ctl: Vec<Node> = role(shared, "nvidiactl").filter_map(cdi_node).collect();
            if ctl.is_empty() {
                return Err("/dev/nvidiactl does not exist on the host".into());
            }
            nodes.extend(gpu);
            nodes.extend(present("drm-card"));
            nodes.extend(present("drm-render"));
            nodes.extend(ctl);
            for r in ["nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset"] {
                nodes.extend(role(shared, r).filter_map(cdi_node));
            }
        }
        _ => {
            let render = present("drm-render");
            let card = present("drm-card");
            if render.is_empty() && (!drm_card || card.is_empty()) {
                return Err(format!(
                    "{driver} has made no render node for it{}",
                    if card.is_empty() {
                        ""
                    } else {
                        " (it has a card node: --drm-card gives that)"
                    }
                ));
            }
            nodes.extend(render);
            if drm_card {
                nodes.extend(card);
            }
            if driver == "amdgpu" {
                let kfd: Vec<Node> = role(shared, "kfd").filter_map(cdi_node).collect();
                if kfd.is_empty() {
                    notes.push(format!(
                        "{}: no /dev/kfd on the host: containers get graphics, not ROCm compute",
                        stack.address
                    ));
                }
                nodes.extend(kfd);
            }
        }
    }
    Ok(nodes)
}

/// The NVIDIA driver's user-space files as read-only mounts.
fn nvidia_mounts(stacks: &Stacks) -> Vec<Mount> {
    let u = &stacks.userspace.nvidia;
    u.libraries
        .iter()
        .chain(&u.binaries)
        .chain(&u.firmware)
        .chain(&u.icds)
        .map(|p| Mount {
            host_path: p.clone(),
            container_path: p.clone(),
            options: RO.iter().map(|s| s.to_string()).collect(),
        })
        .collect()
}

/// The ld-cache hook for the folders NVIDIA's libraries are in.
fn nvidia_hook(stacks: &Stacks, program: &HookProgram) -> Option<Hook> {
    let mut folders: Vec<&str> = stacks
        .userspace
        .nvidia
        .libraries
        .iter()
        .filter_map(|l| l.rsplit_once('/').map(|(d, _)| d))
        .filter(|d| !d.is_empty())
        .collect();
    folders.sort();
    folders.dedup();
    if folders.is_empty() {
        return None;
    }
    let mut args = program.args.clone();
    for f in folders {
        args.push("--folder".into());
        args.push(f.to_string());
    }
    Some(Hook {
        hook_name: "createContainer".into(),
        path: program.path.clone(),
        args,
        env: Vec::new(),
    })
}

/// Which kind a card goes to by its driver: `None` when no driver holds it.
fn kind_of(stack: &GpuStack) -> Option<&'static str> {
    match stack.driver.as_ref().map(|d| d.name.as_str()) {
        None => None,
        Some("vfio-pci") => Some("vfio"),
        Some(_) => Some("gpu"),
    }
}

/// What to write for the host. `Err` when the host's facts contradict each
/// other (two cards claiming one device node): nothing should be written.
pub fn host_specs(gpus: &[Gpu], stacks: &Stacks, opts: &Options) -> Result<HostSpecs, String> {
    let mut out = HostSpecs::default();
    // Cards in address order with their stack.
    let mut cards: Vec<(&Gpu, &GpuStack)> = gpus
        .iter()
        .filter_map(|g| stacks.gpu(&g.address).map(|s| (g, s)))
        .collect();
    cards.sort_by_key(|(g, _)| g.address);
    // Two cards must not claim one node.
    let mut owner: BTreeMap<&str, (&PciAddress, &str)> = BTreeMap::new();
    for (g, s) in &cards {
        let driver = s
            .driver
            .as_ref()
            .map(|d| d.name.as_str())
            .unwrap_or("no driver");
        for n in &s.nodes {
            if let Some((a, d)) = owner.insert(&n.path, (&g.address, driver))
                && *a != g.address
            {
                return Err(format!(
                    "{} is claimed by {a} ({d}) and by {} ({driver}): the host's sysfs contradicts itself; no spec is written",
                    n.path, g.address
                ));
            }
        }
    }
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut devices: BTreeMap<&str, Vec<InputDevice>> = BTreeMap::new();
    let want_kind = |k: &str| opts.kinds.is_empty() || opts.kinds.iter().any(|x| x == k);
    for (g, s) in &cards {
        let Some(kind) = kind_of(s) else {
            if opts.gpus.contains(&g.address) {
                out.skipped.push(Skipped {
                    address: g.address,
                    reason: "no driver holds it".into(),
                });
            }
            continue;
        };
        let i = {
            let e = index.entry(kind).or_insert(0);
            *e += 1;
            *e - 1
        };
        let vendor = vendor_word(g.vendor_id);
        if !want_kind(kind)
            || (!opts.vendors.is_empty() && !opts.vendors.iter().any(|v| v == vendor))
            || (!opts.gpus.is_empty() && !opts.gpus.contains(&g.address))
        {
            continue;
        }
        let address = g.address.to_string();
        let mut names = vec![i.to_string(), address.clone()];
        let mut dev = InputDevice::default();
        if kind == "vfio" {
            let group: Vec<Node> = role(&s.nodes, "vfio-group").filter_map(cdi_node).collect();
            let container: Vec<Node> = role(&stacks.shared_nodes, "vfio-container")
                .filter_map(cdi_node)
                .collect();
            let missing = match (group.is_empty(), container.is_empty()) {
                (true, _) => Some(match g.iommu_group {
                    Some(n) => format!("/dev/vfio/{n} does not exist on the host"),
                    None => "its IOMMU group is unknown (the IOMMU is off?)".to_string(),
                }),
                (false, true) => Some("/dev/vfio/vfio does not exist on the host".to_string()),
                (false, false) => None,
            };
            if let Some(reason) = missing {
                out.skipped.push(Skipped {
                    address: g.address,
                    reason,
                });
                continue;
            }
            dev.nodes = container.into_iter().chain(group).collect();
            dev.env.push(("EXLIAR_VFIO_PCI".into(), address));
        } else {
            match gpu_nodes(s, &stacks.shared_nodes, opts.drm_card, &mut out.notes) {
                Ok(n) => dev.nodes = n,
                Err(reason) => {
                    out.skipped.push(Skipped {
                        address: g.address,
                        reason,
                    });
                    continue;
                }
            }
            dev.env.push(("EXLIAR_GPU_PCI".into(), address));
            if s.driver.as_ref().is_some_and(|d| d.name == "nvidia") {
                if let Some(u) = s.nvidia.as_ref().and_then(|n| n.uuid.clone()) {
                    names.push(u);
                }
                // nvidia-container-runtime's own hook (legacy mode) must
                // not add every GPU to a CUDA image on top of this one.
                dev.env
                    .push(("NVIDIA_VISIBLE_DEVICES".into(), "void".into()));
                dev.mounts = nvidia_mounts(stacks);
                if dev.mounts.is_empty() {
                    out.notes.push(format!(
                        "{}: no NVIDIA user-space driver files under the root: the image must bring libcuda matching driver {}",
                        g.address,
                        s.driver
                            .as_ref()
                            .and_then(|d| d.version.as_deref())
                            .unwrap_or("(version unknown)")
                    ));
                }
                match &opts.hook {
                    Some(p) => dev.hooks.extend(nvidia_hook(stacks, p)),
                    None if !dev.mounts.is_empty() => {
                        let note = "no NVIDIA hook program (nvidia-cdi-hook, nvidia-ctk) under the root, or --no-hooks: the ld cache of a container is not updated; images find the libraries only where their loader already looks (Debian and Ubuntu: /usr/lib/x86_64-linux-gnu)".to_string();
                        if !out.notes.contains(&note) {
                            out.notes.push(note);
                        }
                    }
                    None => {}
                }
            }
        }
        dev.names = names;
        devices.entry(kind).or_default().push(dev);
    }
    for (kind, file, vendor_kind) in [("gpu", GPU_FILE, GPU_KIND), ("vfio", VFIO_FILE, VFIO_KIND)] {
        if let Some(d) = devices.remove(kind) {
            out.specs.push(SpecInput {
                file,
                input: Input {
                    vendor_kind: vendor_kind.into(),
                    devices: d,
                    ..Input::default()
                },
            });
        }
    }
    for a in &opts.gpus {
        if !cards.iter().any(|(g, _)| g.address == *a) {
            return Err(format!("{a}: no GPU at this address"));
        }
    }
    Ok(out)
}
