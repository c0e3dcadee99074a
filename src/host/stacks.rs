//! Driver and accelerator-stack detection: for each GPU its kernel driver
//! (flavour and version), the device nodes a container or a program needs
//! to use it, and the user-space stacks (CUDA, ROCm, oneAPI / Level Zero,
//! Vulkan) present under the root, with the best stack for each GPU.
//!
//! Everything is read through [`HostRoot`]; the text parsers are pure
//! functions ([`parse_nvidia_version`], [`parse_nvidia_information`],
//! [`parse_kfd_properties`], [`ldcache_paths`]). What cannot be read or
//! understood becomes an absent field and a [`Warning`], never an error.
//!
//! The result is what `exliar scan --json` prints as each GPU's `stack`
//! and the top-level `userspace` and `shared_nodes` (docs/json.md), and
//! what CDI spec generation uses: [`GpuStack::nodes`],
//! [`Stacks::shared_nodes`] and [`Userspace::nvidia`] are host paths ready
//! to be injected.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::HostRoot;
use crate::analyze::Gpu;
use crate::model::{PciAddress, Warning};

/// Library folders searched besides the ld cache.
pub const LIB_DIRS: &[&str] = &[
    "usr/lib/x86_64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "usr/lib64",
    "usr/lib",
];

/// Binary folders searched for the NVIDIA tools.
pub const BIN_DIRS: &[&str] = &["usr/bin", "usr/sbin", "bin"];

/// The NVIDIA driver's user-space tools a container may need.
pub const NVIDIA_BINARIES: &[&str] = &[
    "nvidia-smi",
    "nvidia-debugdump",
    "nvidia-persistenced",
    "nvidia-cuda-mps-control",
    "nvidia-cuda-mps-server",
];

/// Vulkan ICD manifest folders.
pub const ICD_DIRS: &[&str] = &["usr/share/vulkan/icd.d", "etc/vulkan/icd.d"];

/// The ld cache.
pub const LD_CACHE: &str = "etc/ld.so.cache";

/// The NVIDIA driver's character-device major (`/dev/nvidiaN`,
/// `/dev/nvidiactl`).
pub const NVIDIA_MAJOR: u32 = 195;

// ---------------------------------------------------------------- model --

/// Everything this module found on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stacks {
    /// One entry per GPU of the analysis, in its order.
    pub gpus: Vec<GpuStack>,
    /// Device nodes that every GPU of a driver shares (`/dev/nvidiactl`,
    /// `/dev/nvidia-uvm`, `/dev/kfd`, `/dev/vfio/vfio`, …), when present.
    pub shared_nodes: Vec<DevNode>,
    pub userspace: Userspace,
    #[serde(skip)]
    pub warnings: Vec<Warning>,
}

impl Stacks {
    pub fn gpu(&self, address: &PciAddress) -> Option<&GpuStack> {
        self.gpus.iter().find(|g| &g.address == address)
    }
}

/// One GPU's driver, nodes and best stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuStack {
    #[serde(skip)]
    pub address: PciAddress,
    /// `None` when no driver holds the card.
    pub driver: Option<KernelDriver>,
    /// The device nodes that give access to this GPU (DRM, NVIDIA, VFIO
    /// group), whether or not they exist on the host (`present`).
    pub nodes: Vec<DevNode>,
    /// NVIDIA driver facts (`/proc/driver/nvidia/gpus/ADDR/information`).
    pub nvidia: Option<NvidiaGpu>,
    /// AMD KFD topology node of this GPU (`/sys/class/kfd/kfd/topology`).
    pub kfd: Option<KfdNode>,
    pub best: BestStack,
}

/// The kernel driver that holds a GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelDriver {
    /// The PCI driver's name (`nvidia`, `amdgpu`, `vfio-pci`).
    pub name: String,
    /// The kernel module providing it (`nvidia`, Debian's `nvidia_current`).
    pub module: Option<String>,
    /// `proprietary` or `open` for NVIDIA's driver; `None` otherwise or
    /// when the version text does not say.
    pub flavour: Option<String>,
    /// The module's version (`550.54.14`), when it declares one.
    pub version: Option<String>,
    /// The module's licence (`NVIDIA`, `Dual MIT/GPL`), when readable.
    pub license: Option<String>,
}

/// A device node: a host path and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DevNode {
    /// What the node is for: `drm-card`, `drm-render`, `nvidia-gpu`,
    /// `nvidiactl`, `nvidia-uvm`, `nvidia-uvm-tools`, `nvidia-modeset`,
    /// `nvidia-cap`, `kfd`, `vfio-group`, `vfio-container`.
    pub role: String,
    /// The host path (`/dev/dri/renderD128`).
    pub path: String,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// Whether the node exists on the host (a stat of it succeeded).
    pub present: bool,
    /// Permission bits as octal text (`"0660"`), when present.
    pub mode: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Facts the NVIDIA driver gives about one GPU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NvidiaGpu {
    pub model: Option<String>,
    /// `GPU-xxxxxxxx-…`.
    pub uuid: Option<String>,
    /// The minor number of `/dev/nvidiaN`.
    pub minor: Option<u32>,
    pub bus_location: Option<String>,
}

/// An AMD KFD topology node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KfdNode {
    /// The topology node number.
    pub node: u32,
    pub gpu_id: u64,
    /// The render node minor the KFD names for this GPU.
    pub drm_render_minor: Option<u32>,
}

/// The best way to compute on a GPU with what the host has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BestStack {
    /// `cuda`, `rocm`, `oneapi`, `vulkan` or `cpu`.
    pub stack: String,
    pub reason: String,
}

/// User-space stacks found under the root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Userspace {
    pub nvidia: NvidiaUserspace,
    /// ROCm installations (`/opt/rocm*`).
    pub rocm: Vec<RocmInstall>,
    pub level_zero: LevelZero,
    pub vulkan_icds: Vec<VulkanIcd>,
}

/// The NVIDIA driver's user-space files, as host paths.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NvidiaUserspace {
    /// `libcuda.so.VERSION`'s version, from its file name.
    pub cuda_driver_version: Option<String>,
    /// The driver libraries (`libcuda.so.*`, `libnvidia-*.so.*`, …) with
    /// the links to them the ld cache names.
    pub libraries: Vec<String>,
    pub binaries: Vec<String>,
    /// `/lib/firmware/nvidia/VERSION` folders.
    pub firmware: Vec<String>,
    /// Vulkan/EGL/GLX ICD manifests naming an NVIDIA library.
    pub icds: Vec<String>,
}

/// One ROCm installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RocmInstall {
    /// `/opt/rocm-6.1.2`.
    pub path: String,
    /// From `.info/version`, when readable.
    pub version: Option<String>,
}

/// Intel oneAPI and Level Zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LevelZero {
    /// `libze_loader.so.*` files.
    pub loader: Vec<String>,
    /// Intel's GPU back end (`libze_intel_gpu.so.*`).
    pub intel_gpu: Vec<String>,
    /// `/opt/intel/oneapi` when present.
    pub oneapi: Option<String>,
}

/// A Vulkan ICD manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VulkanIcd {
    /// The manifest's host path.
    pub file: String,
    /// Its `ICD.library_path`.
    pub library_path: Option<String>,
    /// Whose driver: `nvidia`, `amd`, `intel`, `nouveau`, `cpu`
    /// (lavapipe, SwiftShader) or `other`, from the names.
    pub vendor: String,
}

// -------------------------------------------------------------- parsers --

/// What `/proc/driver/nvidia/version` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NvidiaVersion {
    /// `open` or `proprietary`.
    pub flavour: Option<&'static str>,
    pub version: Option<String>,
}

/// Parse `/proc/driver/nvidia/version`'s `NVRM version:` line:
/// `NVIDIA UNIX Open Kernel Module for x86_64  550.54.14  Release Build …`
/// (open) or `NVIDIA UNIX x86_64 Kernel Module  535.154.05  Thu Dec 28 …`
/// (proprietary). `None` when there is no such line.
pub fn parse_nvidia_version(text: &str) -> Option<NvidiaVersion> {
    let line = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("NVRM version:"))?;
    let flavour = if line.contains("Open Kernel Module") {
        Some("open")
    } else if line.contains("Kernel Module") {
        Some("proprietary")
    } else {
        None
    };
    // The version is the first word after "Module" (skipping "for ARCH")
    // that looks like one: digits and dots, at least one dot.
    let after = line
        .find("Module")
        .map(|i| &line[i + "Module".len()..])
        .unwrap_or(line);
    let version = after
        .split_whitespace()
        .find(|w| looks_like_version(w))
        .map(str::to_string);
    Some(NvidiaVersion { flavour, version })
}

fn looks_like_version(w: &str) -> bool {
    w.contains('.')
        && w.chars().all(|c| c.is_ascii_digit() || c == '.')
        && w.chars().next().is_some_and(|c| c.is_ascii_digit())
        && !w.ends_with('.')
        && w.len() <= 32
}

/// Parse `/proc/driver/nvidia/gpus/ADDR/information` (`Key: \t value`
/// lines). Fields that are missing or malformed stay `None`.
pub fn parse_nvidia_information(text: &str) -> NvidiaGpu {
    let mut g = NvidiaGpu::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        match k.trim() {
            "Model" => g.model = Some(v.to_string()),
            "GPU UUID"
                if v.starts_with("GPU-")
                    && v.len() <= 64
                    && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') =>
            {
                g.uuid = Some(v.to_string());
            }
            "Device Minor" => g.minor = v.parse().ok(),
            "Bus Location" => g.bus_location = Some(v.to_string()),
            _ => {}
        }
    }
    g
}

/// What a KFD topology node's `properties` says (`name value` lines).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KfdProperties {
    pub gpu_id: Option<u64>,
    /// `bus << 8 | devfn`.
    pub location_id: Option<u32>,
    pub domain: Option<u32>,
    pub drm_render_minor: Option<u32>,
}

impl KfdProperties {
    /// The PCI address this node stands for, when it says.
    pub fn address(&self) -> Option<PciAddress> {
        let loc = self.location_id?;
        if loc > 0xffff {
            return None;
        }
        Some(PciAddress {
            domain: self.domain.unwrap_or(0),
            bus: (loc >> 8) as u8,
            device: ((loc >> 3) & 0x1f) as u8,
            function: (loc & 0x7) as u8,
        })
    }
}

/// Parse a KFD topology node's `properties` file.
pub fn parse_kfd_properties(text: &str) -> KfdProperties {
    let mut p = KfdProperties::default();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        let (Some(k), Some(v), None) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        match k {
            "gpu_id" => p.gpu_id = v.parse().ok(),
            "location_id" => p.location_id = v.parse().ok(),
            "domain" => p.domain = v.parse().ok(),
            "drm_render_minor" => p.drm_render_minor = v.parse().ok(),
            _ => {}
        }
    }
    p
}

/// The library paths an `ld.so.cache` names: every NUL-terminated string
/// in it that is an absolute path to a shared object. Format-agnostic (old
/// `ld.so-1.7.0` and new `glibc-ld.so.cache1.1` caches both keep the paths
/// as plain strings), sorted and without duplicates.
pub fn ldcache_paths(bytes: &[u8]) -> Vec<String> {
    ldcache_paths_where(bytes, |_| true)
}

/// [`ldcache_paths`] whose file name `keep` takes; the others are never
/// copied (a cache lists about 1500 libraries).
fn ldcache_paths_where(bytes: &[u8], keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out = BTreeSet::new();
    for chunk in bytes.split(|&b| b == 0) {
        if chunk.first() != Some(&b'/') || chunk.len() > 4096 {
            continue;
        }
        let Ok(s) = std::str::from_utf8(chunk) else {
            continue;
        };
        let name = s.rsplit('/').next().unwrap_or("");
        if name.contains(".so") && keep(name) && s.chars().all(|c| !c.is_control()) {
            out.insert(s.to_string());
        }
    }
    out.into_iter().collect()
}

/// The version in a library's file name: `libcuda.so.550.54.14` →
/// `550.54.14`; `None` for `libcuda.so.1` or `libcuda.so`.
pub fn so_version(name: &str) -> Option<String> {
    let (_, v) = name.split_once(".so.")?;
    looks_like_version(v).then(|| v.to_string())
}

/// Whose driver a Vulkan ICD manifest is, from its file name and library.
pub fn icd_vendor(file_name: &str, library: Option<&str>) -> &'static str {
    let s = format!("{} {}", file_name, library.unwrap_or("")).to_ascii_lowercase();
    if s.contains("nvidia") {
        "nvidia"
    } else if s.contains("nouveau") {
        "nouveau"
    } else if s.contains("radeon") || s.contains("amd") {
        "amd"
    } else if s.contains("intel") {
        "intel"
    } else if s.contains("lvp") || s.contains("swiftshader") {
        "cpu"
    } else {
        "other"
    }
}

// -------------------------------------------------------------- readers --

/// Read the driver, nodes and stacks of every GPU in `gpus`.
pub fn read(host: &HostRoot, gpus: &[Gpu]) -> Stacks {
    read_with(host, gpus, read_host_wide(host))
}

/// What [`read`] finds that does not depend on the GPUs: the user-space
/// libraries, the KFD topology and the NVIDIA driver's version. `scan`
/// reads it on a second thread while the first reads the devices.
#[derive(Debug)]
pub struct HostWide {
    userspace: Userspace,
    kfd: Vec<(u32, KfdProperties)>,
    nvidia_version: Option<NvidiaVersion>,
    warnings: Vec<Warning>,
}

/// The GPU-independent part of [`read`].
pub fn read_host_wide(host: &HostRoot) -> HostWide {
    let mut warnings = Vec::new();
    let mut warn = |loc: String, msg: String| warnings.push(Warning::new(loc, msg));
    let userspace = read_userspace(host, &mut warn);
    let kfd = read_kfd_topology(host, &mut warn);
    let nvidia_version = read_text(host, "proc/driver/nvidia/version", &mut warn).and_then(|t| {
        let v = parse_nvidia_version(&t);
        if v.is_none() {
            warn(
                host.display(Path::new("proc/driver/nvidia/version")),
                "no \"NVRM version:\" line; the NVIDIA driver's flavour is unknown".into(),
            );
        }
        v
    });
    HostWide {
        userspace,
        kfd,
        nvidia_version,
        warnings,
    }
}

/// [`read`], given its GPU-independent part (read from the same host).
pub fn read_with(host: &HostRoot, gpus: &[Gpu], wide: HostWide) -> Stacks {
    let HostWide {
        userspace,
        kfd,
        nvidia_version,
        warnings,
    } = wide;
    let mut st = Stacks {
        warnings,
        ..Stacks::default()
    };
    let mut warn = |loc: String, msg: String| st.warnings.push(Warning::new(loc, msg));
    let mut gpu_stacks = Vec::new();
    let mut drivers = BTreeSet::new();
    for g in gpus {
        let driver = g
            .driver
            .as_deref()
            .map(|d| read_driver(host, d, nvidia_version.as_ref(), &mut warn));
        if let Some(d) = &driver {
            drivers.insert(d.name.clone());
        }
        let mut nodes = read_drm_nodes(host, &g.address, &mut warn);
        let mut nvidia = None;
        if g.driver.as_deref() == Some("nvidia") {
            let rel = format!("proc/driver/nvidia/gpus/{}/information", g.address);
            if let Some(t) = read_text(host, &rel, &mut warn) {
                let info = parse_nvidia_information(&t);
                if info.minor.is_none() {
                    warn(
                        host.display(Path::new(&rel)),
                        "no readable \"Device Minor:\"; /dev/nvidiaN is unknown".into(),
                    );
                }
                if let Some(m) = info.minor {
                    nodes.push(node(
                        host,
                        "nvidia-gpu",
                        format!("dev/nvidia{m}"),
                        Some((NVIDIA_MAJOR, m)),
                        &mut warn,
                    ));
                }
                nvidia = Some(info);
            }
        }
        let kfd_node = kfd
            .iter()
            .find(|(_, p)| p.address() == Some(g.address))
            .and_then(|(n, p)| {
                Some(KfdNode {
                    node: *n,
                    gpu_id: p.gpu_id?,
                    drm_render_minor: p.drm_render_minor,
                })
            });
        if g.driver.as_deref() == Some("vfio-pci")
            && let Some(grp) = g.iommu_group
        {
            nodes.push(node(
                host,
                "vfio-group",
                format!("dev/vfio/{grp}"),
                None,
                &mut warn,
            ));
        }
        gpu_stacks.push(GpuStack {
            address: g.address,
            driver,
            nodes,
            nvidia,
            kfd: kfd_node,
            best: BestStack {
                stack: String::new(),
                reason: String::new(),
            },
        });
    }
    let shared = read_shared_nodes(host, &drivers, &mut warn);
    for (g, s) in gpus.iter().zip(gpu_stacks.iter_mut()) {
        s.best = best_stack(g.vendor_id, s, &shared, &userspace);
    }
    st.gpus = gpu_stacks;
    st.shared_nodes = shared;
    st.userspace = userspace;
    st
}

/// Read a text file that may be absent: `None` and no warning when absent,
/// `None` and a warning when unreadable.
fn read_text(host: &HostRoot, rel: &str, warn: &mut impl FnMut(String, String)) -> Option<String> {
    match host.read_optional(rel) {
        Ok(t) => t,
        Err(e) => {
            warn(e.path.clone(), format!("unreadable: {}", e.source));
            None
        }
    }
}

fn one_line(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty() && !t.contains('\n') && t.len() <= 256).then(|| t.to_string())
}

fn read_driver(
    host: &HostRoot,
    name: &str,
    nvidia: Option<&NvidiaVersion>,
    warn: &mut impl FnMut(String, String),
) -> KernelDriver {
    // The module behind the PCI driver (`nvidia` → Debian's
    // `nvidia_current`); a driver folder without the link is built in or
    // a tree that does not say: the module is named like the driver.
    let module = host
        .link_name(format!("sys/bus/pci/drivers/{name}/module"))
        .ok()
        .flatten()
        .or_else(|| Some(name.replace('-', "_")));
    let mut version = None;
    let mut license = None;
    if let Some(m) = &module {
        version = read_text(host, &format!("sys/module/{m}/version"), warn).and_then(|t| {
            let v = one_line(&t);
            if v.is_none() {
                warn(
                    host.display(Path::new(&format!("sys/module/{m}/version"))),
                    "not a version; ignored".into(),
                );
            }
            v
        });
        // Not a sysfs attribute in every kernel; read where a tree has it.
        license =
            read_text(host, &format!("sys/module/{m}/license"), warn).and_then(|t| one_line(&t));
    }
    let mut flavour = None;
    if name == "nvidia" {
        if let Some(n) = nvidia {
            flavour = n.flavour.map(str::to_string);
            if version.is_none() {
                version = n.version.clone();
            }
        }
        if flavour.is_none()
            && let Some(l) = &license
        {
            // The open modules are "Dual MIT/GPL"; the proprietary ones
            // say "NVIDIA".
            flavour = Some(
                if l.contains("GPL") {
                    "open"
                } else {
                    "proprietary"
                }
                .to_string(),
            );
        }
    }
    KernelDriver {
        name: name.to_string(),
        module,
        flavour,
        version,
        license,
    }
}

fn parse_dev(text: &str) -> Option<(u32, u32)> {
    let (a, b) = text.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// A node at `rel` (`dev/...`): stat it, and take its numbers from the stat
/// when present, from `expected` otherwise.
fn node(
    host: &HostRoot,
    role: &str,
    rel: String,
    expected: Option<(u32, u32)>,
    warn: &mut impl FnMut(String, String),
) -> DevNode {
    let st = match host.stat_node(&rel) {
        Ok(s) => s,
        Err(e) => {
            warn(e.path.clone(), format!("cannot stat: {}", e.source));
            None
        }
    };
    if let (Some(s), Some((ma, mi))) = (st, expected)
        && (s.major, s.minor) != (ma, mi)
    {
        warn(
            host.display(Path::new(&rel)),
            format!(
                "is {}:{} but the driver says {ma}:{mi}; a stale node?",
                s.major, s.minor
            ),
        );
    }
    DevNode {
        role: role.to_string(),
        path: format!("/{rel}"),
        major: st.map(|s| s.major).or(expected.map(|e| e.0)),
        minor: st.map(|s| s.minor).or(expected.map(|e| e.1)),
        present: st.is_some(),
        mode: st.map(|s| format!("{:04o}", s.mode)),
        uid: st.map(|s| s.uid),
        gid: st.map(|s| s.gid),
    }
}

fn read_drm_nodes(
    host: &HostRoot,
    addr: &PciAddress,
    warn: &mut impl FnMut(String, String),
) -> Vec<DevNode> {
    let dir = format!("sys/bus/pci/devices/{addr}/drm");
    let Ok(names) = host.list_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for n in names {
        let role = if n.starts_with("card") && n[4..].chars().all(|c| c.is_ascii_digit()) {
            "drm-card"
        } else if n.starts_with("renderD") && n[7..].chars().all(|c| c.is_ascii_digit()) {
            "drm-render"
        } else {
            continue;
        };
        let dev_rel = format!("{dir}/{n}/dev");
        let numbers = read_text(host, &dev_rel, warn).and_then(|t| {
            let d = parse_dev(&t);
            if d.is_none() {
                warn(host.display(Path::new(&dev_rel)), "not MAJOR:MINOR".into());
            }
            d
        });
        out.push(node(host, role, format!("dev/dri/{n}"), numbers, warn));
    }
    out
}

/// The KFD topology: `(node number, properties)` of every GPU node.
fn read_kfd_topology(
    host: &HostRoot,
    warn: &mut impl FnMut(String, String),
) -> Vec<(u32, KfdProperties)> {
    let dir = "sys/class/kfd/kfd/topology/nodes";
    let Ok(names) = host.list_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for n in names {
        let Ok(num) = n.parse::<u32>() else { continue };
        let rel = format!("{dir}/{n}/properties");
        if let Some(t) = read_text(host, &rel, warn) {
            let p = parse_kfd_properties(&t);
            // CPU nodes have gpu_id 0.
            if p.gpu_id.is_some_and(|id| id != 0) {
                if p.address().is_none() {
                    warn(
                        host.display(Path::new(&rel)),
                        "a GPU node without a readable location_id".into(),
                    );
                }
                out.push((num, p));
            }
        }
    }
    out
}

fn read_shared_nodes(
    host: &HostRoot,
    drivers: &BTreeSet<String>,
    warn: &mut impl FnMut(String, String),
) -> Vec<DevNode> {
    let mut out = Vec::new();
    let mut add = |role: &str, rel: String, expected: Option<(u32, u32)>, w: &mut _| {
        let n = node(host, role, rel, expected, w);
        if n.present {
            out.push(n);
        }
    };
    if drivers.contains("nvidia") {
        add(
            "nvidiactl",
            "dev/nvidiactl".into(),
            Some((NVIDIA_MAJOR, 255)),
            warn,
        );
        add(
            "nvidia-modeset",
            "dev/nvidia-modeset".into(),
            Some((NVIDIA_MAJOR, 254)),
            warn,
        );
        add("nvidia-uvm", "dev/nvidia-uvm".into(), None, warn);
        add(
            "nvidia-uvm-tools",
            "dev/nvidia-uvm-tools".into(),
            None,
            warn,
        );
        if let Ok(names) = host.list_dir("dev/nvidia-caps") {
            for n in names {
                add("nvidia-cap", format!("dev/nvidia-caps/{n}"), None, warn);
            }
        }
    }
    if drivers.contains("amdgpu") {
        add("kfd", "dev/kfd".into(), None, warn);
    }
    if drivers.contains("vfio-pci") {
        add("vfio-container", "dev/vfio/vfio".into(), None, warn);
    }
    out
}

/// Candidate library files: those of the stacks reported
/// ([`wanted_library`]) that the ld cache names or the known folders hold,
/// as root-relative paths.
fn library_candidates(host: &HostRoot, warn: &mut impl FnMut(String, String)) -> Vec<String> {
    let mut all = BTreeSet::new();
    match host.read_bytes(LD_CACHE) {
        Ok(b) => {
            let paths = ldcache_paths_where(&b, wanted_library);
            // A snapshot keeps only the paths used, as NUL-terminated
            // strings: `ldcache_paths` reads them back the same.
            let mut trimmed = b"exliar snapshot: the ld.so.cache paths used\0".to_vec();
            for p in &paths {
                trimmed.extend_from_slice(p.as_bytes());
                trimmed.push(0);
                all.insert(p.trim_start_matches('/').to_string());
            }
            host.record_trimmed(LD_CACHE, trimmed);
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => warn(e.path.clone(), format!("unreadable: {}", e.source)),
    }
    // Only the libraries reported are kept: the callers look at no other.
    let wanted = |n: &std::ffi::OsStr| n.to_str().is_some_and(wanted_library);
    for d in LIB_DIRS {
        if let Ok(names) = host.list_dir_where(d, wanted) {
            for (n, _) in names {
                all.insert(format!("{d}/{n}"));
            }
        }
    }
    all.into_iter().collect()
}

fn file_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

fn is_nvidia_lib(name: &str) -> bool {
    [
        "libcuda.so",
        "libcudadebugger.so",
        "libnvidia-",
        "libnvcuvid.so",
        "libnvoptix.so",
        "libGLX_nvidia.so",
        "libEGL_nvidia.so",
        "libGLESv2_nvidia.so",
        "libGLESv1_CM_nvidia.so",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// The libraries this module reports (NVIDIA's, Level Zero's).
fn wanted_library(name: &str) -> bool {
    is_nvidia_lib(name)
        || name.starts_with("libze_loader.so.")
        || name.starts_with("libze_intel_gpu.so.")
}

fn read_userspace(host: &HostRoot, warn: &mut impl FnMut(String, String)) -> Userspace {
    let mut u = Userspace::default();
    let candidates = library_candidates(host, warn);
    let mut nv_libs = BTreeSet::new();
    for rel in &candidates {
        let name = file_name(rel);
        let nv = is_nvidia_lib(name);
        let ze = name.starts_with("libze_loader.so.");
        let ze_gpu = name.starts_with("libze_intel_gpu.so.");
        if !(nv || ze || ze_gpu) {
            continue;
        }
        // Present under the root (through its links, inside the root); a
        // link is listed with the file it leads to, since a container
        // needs both.
        if !host.exists(rel) {
            continue;
        }
        let target = host
            .resolve(Path::new(rel))
            .ok()
            .filter(|t| t.as_path() != Path::new(rel))
            .map(|t| format!("/{}", t.display()));
        let mut shown = vec![format!("/{rel}")];
        shown.extend(target.clone());
        if nv {
            if name.starts_with("libcuda.so.") && u.nvidia.cuda_driver_version.is_none() {
                u.nvidia.cuda_driver_version = so_version(name)
                    .or_else(|| target.as_deref().and_then(|t| so_version(file_name(t))));
            }
            nv_libs.extend(shown);
        } else if ze {
            u.level_zero.loader.extend(shown);
        } else {
            u.level_zero.intel_gpu.extend(shown);
        }
    }
    u.level_zero.loader.sort();
    u.level_zero.loader.dedup();
    u.level_zero.intel_gpu.sort();
    u.level_zero.intel_gpu.dedup();
    u.nvidia.libraries = nv_libs.into_iter().collect();
    for d in BIN_DIRS {
        for b in NVIDIA_BINARIES {
            let rel = format!("{d}/{b}");
            if host.exists(&rel) {
                u.nvidia.binaries.push(format!("/{rel}"));
            }
        }
    }
    for fw in ["lib/firmware/nvidia", "usr/lib/firmware/nvidia"] {
        if let Ok(names) = host.list_dir(fw) {
            for n in names {
                if looks_like_version(&n) {
                    let rel = format!("{fw}/{n}");
                    host.mark_present(&rel);
                    u.nvidia.firmware.push(format!("/{rel}"));
                }
            }
        }
    }
    if let Ok(names) = host.list_dir("opt") {
        for n in names.iter().filter(|n| n.starts_with("rocm")) {
            let rel = format!("opt/{n}/.info/version");
            let version = read_text(host, &rel, warn).and_then(|t| one_line(&t));
            if version.is_some() || host.exists(format!("opt/{n}/lib")) {
                u.rocm.push(RocmInstall {
                    path: format!("/opt/{n}"),
                    version,
                });
            }
        }
    }
    if host.exists("opt/intel/oneapi") {
        u.level_zero.oneapi = Some("/opt/intel/oneapi".into());
    }
    for d in ICD_DIRS {
        let Ok(names) = host.list_dir(d) else {
            continue;
        };
        for n in names.iter().filter(|n| n.ends_with(".json")) {
            let rel = format!("{d}/{n}");
            let Some(text) = read_text(host, &rel, warn) else {
                continue;
            };
            let library_path = match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v) => v["ICD"]["library_path"].as_str().map(str::to_string),
                Err(e) => {
                    warn(host.display(Path::new(&rel)), format!("not JSON: {e}"));
                    None
                }
            };
            let vendor = icd_vendor(n, library_path.as_deref());
            if vendor == "nvidia" {
                u.nvidia.icds.push(format!("/{rel}"));
            }
            u.vulkan_icds.push(VulkanIcd {
                file: format!("/{rel}"),
                library_path,
                vendor: vendor.to_string(),
            });
        }
    }
    // EGL/GLX vendor manifests of the NVIDIA driver (not Vulkan).
    for d in [
        "usr/share/glvnd/egl_vendor.d",
        "usr/share/egl/egl_external_platform.d",
    ] {
        if let Ok(names) = host.list_dir(d) {
            for n in names
                .iter()
                .filter(|n| n.contains("nvidia") && n.ends_with(".json"))
            {
                let rel = format!("{d}/{n}");
                host.mark_present(&rel);
                u.nvidia.icds.push(format!("/{rel}"));
            }
        }
    }
    u
}

/// The Vulkan ICD vendor a GPU's kernel driver serves.
fn vulkan_vendor(driver: &str) -> Option<&'static str> {
    match driver {
        "nvidia" => Some("nvidia"),
        "nouveau" => Some("nouveau"),
        "amdgpu" | "radeon" => Some("amd"),
        "i915" | "xe" => Some("intel"),
        _ => None,
    }
}

/// Choose the best stack for one GPU, saying why.
pub fn best_stack(
    vendor_id: Option<u16>,
    gpu: &GpuStack,
    shared: &[DevNode],
    u: &Userspace,
) -> BestStack {
    let pick = |stack: &str, reason: String| BestStack {
        stack: stack.to_string(),
        reason,
    };
    let Some(d) = &gpu.driver else {
        return pick("cpu", "no kernel driver holds the card".into());
    };
    let name = d.name.as_str();
    if name == "vfio-pci" {
        return pick(
            "cpu",
            "bound to vfio-pci: the card is for a VM or a user-space driver, not for host compute"
                .into(),
        );
    }
    let ver = |v: &Option<String>| v.as_deref().map(|v| format!(" {v}")).unwrap_or_default();
    if name == "nvidia"
        && vendor_id == Some(0x10de)
        && let Some(cuda) = &u.nvidia.cuda_driver_version
    {
        let mut reason = format!(
            "NVIDIA {} kernel driver{} and libcuda {cuda}",
            d.flavour.as_deref().unwrap_or("(flavour unknown)"),
            ver(&d.version)
        );
        if let Some(k) = &d.version
            && k != cuda
        {
            reason.push_str(" (versions differ: CUDA calls will fail until they match)");
        }
        return pick("cuda", reason);
    }
    if name == "amdgpu" && vendor_id == Some(0x1002) {
        let kfd = shared.iter().any(|n| n.role == "kfd");
        if let (Some(k), true, Some(r)) = (&gpu.kfd, kfd, u.rocm.first()) {
            return pick(
                "rocm",
                format!(
                    "amdgpu with KFD node {} (gpu_id {}), /dev/kfd and ROCm{} at {}",
                    k.node,
                    k.gpu_id,
                    ver(&r.version),
                    r.path
                ),
            );
        }
    }
    if (name == "i915" || name == "xe")
        && vendor_id == Some(0x8086)
        && !u.level_zero.loader.is_empty()
        && gpu.nodes.iter().any(|n| n.role == "drm-render")
    {
        return pick(
            "oneapi",
            format!(
                "{name} with a render node and the Level Zero loader{}",
                if u.level_zero.intel_gpu.is_empty() {
                    " (Intel's GPU back end libze_intel_gpu not found)"
                } else {
                    ""
                }
            ),
        );
    }
    let has_drm = gpu
        .nodes
        .iter()
        .any(|n| n.role == "drm-render" || n.role == "drm-card");
    if let Some(v) = vulkan_vendor(name)
        && (has_drm || name == "nvidia")
        && let Some(icd) = u.vulkan_icds.iter().find(|i| i.vendor == v)
    {
        return pick(
            "vulkan",
            format!("{name} with the {v} Vulkan ICD {}", icd.file),
        );
    }
    let missing = match (name, vendor_id) {
        ("nvidia", _) => "no libcuda and no NVIDIA Vulkan ICD under the root",
        ("amdgpu", _) => "no ROCm (with KFD) and no AMD Vulkan ICD under the root",
        ("i915" | "xe", _) => "no Level Zero loader and no Intel Vulkan ICD under the root",
        ("nouveau", _) => "nouveau has no compute stack and no nouveau Vulkan ICD was found",
        _ => "no accelerator stack for this driver",
    };
    pick("cpu", format!("{name}: {missing}"))
}

/// One line per GPU for `exliar scan`.
pub fn summary_line(s: &GpuStack) -> String {
    let mut out = String::new();
    match &s.driver {
        Some(d) => {
            out.push_str(&d.name);
            if let Some(f) = &d.flavour {
                out.push_str(&format!(" ({f})"));
            }
            if let Some(v) = &d.version {
                out.push_str(&format!(" {v}"));
            }
        }
        None => out.push_str("no driver"),
    }
    let present: Vec<&str> = s
        .nodes
        .iter()
        .filter(|n| n.present)
        .map(|n| n.path.as_str())
        .collect();
    if !present.is_empty() {
        out.push_str(&format!("; nodes {}", present.join(" ")));
    }
    out.push_str(&format!(
        "; best stack: {} ({})",
        s.best.stack, s.best.reason
    ));
    out
}

/// Paths in `rel` form for a host path (`/dev/x` → `dev/x`).
pub fn rel_path(host_path: &str) -> PathBuf {
    PathBuf::from(host_path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: &str = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.14  Release Build  (dvs-builder@U16-I3-B03-4-3)  Thu Feb 22 01:25:25 UTC 2024\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n";
    const PROP: &str = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n";

    #[test]
    fn nvidia_version_flavours() {
        let o = parse_nvidia_version(OPEN).expect("test input");
        assert_eq!(o.flavour, Some("open"));
        assert_eq!(o.version.as_deref(), Some("550.54.14"));
        let p = parse_nvidia_version(PROP).expect("test input");
        assert_eq!(p.flavour, Some("proprietary"));
        assert_eq!(p.version.as_deref(), Some("535.183.01"));
        let arm =
            "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  560.35.03  Release Build\n";
        assert_eq!(
            parse_nvidia_version(arm)
                .expect("test input")
                .version
                .as_deref(),
            Some("560.35.03")
        );
    }

    #[test]
    fn nvidia_version_garbage() {
        assert_eq!(parse_nvidia_version(""), None);
        assert_eq!(parse_nvidia_version("\u{0}\u{ff}garbage"), None);
        let v = parse_nvidia_version("NVRM version: something else\n").expect("test input");
        assert_eq!(v, NvidiaVersion::default());
        let v = parse_nvidia_version("NVRM version: NVIDIA UNIX x86_64 Kernel Module 5. x\n")
            .expect("test input");
        assert_eq!(v.flavour, Some("proprietary"));
        assert_eq!(v.version, None);
    }

    #[test]
    fn nvidia_information() {
        let t = "Model: \t\t NVIDIA T400 4GB\nIRQ:   \t\t 130\nGPU UUID: \t GPU-3b5f3c1e-7c2a-4c39-9e0b-2d6f7a8b9c0d\nVideo BIOS: \t 90.17.42.00.0b\nBus Type: \t PCIe\nDMA Size: \t 47 bits\nDMA Mask: \t 0x7fffffffffff\nBus Location: \t 0000:65:00.0\nDevice Minor: \t 1\nGPU Excluded:\t No\n";
        let g = parse_nvidia_information(t);
        assert_eq!(g.model.as_deref(), Some("NVIDIA T400 4GB"));
        assert_eq!(g.minor, Some(1));
        assert_eq!(
            g.uuid.as_deref(),
            Some("GPU-3b5f3c1e-7c2a-4c39-9e0b-2d6f7a8b9c0d")
        );
        assert_eq!(g.bus_location.as_deref(), Some("0000:65:00.0"));
        let bad = parse_nvidia_information("Device Minor: x\nGPU UUID: GPU-a b\n\u{1b}[31m");
        assert_eq!(bad.minor, None);
        assert_eq!(bad.uuid, None);
    }

    #[test]
    fn kfd_properties_map_to_pci() {
        // 0000:03:00.0 → location_id 0x300 = 768.
        let t = "cpu_cores_count 0\nsimd_count 80\ngpu_id 53393\nvendor_id 4098\ndevice_id 29663\nlocation_id 768\ndomain 0\ndrm_render_minor 128\n";
        let p = parse_kfd_properties(t);
        assert_eq!(p.gpu_id, Some(53393));
        assert_eq!(p.drm_render_minor, Some(128));
        assert_eq!(
            p.address(),
            Some("0000:03:00.0".parse().expect("test input"))
        );
        // devfn: device 2 function 1 on bus 0x0a.
        let p = parse_kfd_properties("location_id 2577\ndomain 1\n");
        assert_eq!(
            p.address(),
            Some("0001:0a:02.1".parse().expect("test input"))
        );
        let bad = parse_kfd_properties("gpu_id\nlocation_id 99999999\nx y z\n");
        assert_eq!(bad.gpu_id, None);
        assert_eq!(bad.address(), None);
    }

    #[test]
    fn ldcache_strings() {
        let mut b = b"glibc-ld.so.cache1.1\0\x01\x02".to_vec();
        b.extend_from_slice(b"libcuda.so.1\0/usr/lib/x86_64-linux-gnu/libcuda.so.1\0");
        b.extend_from_slice(b"/etc/passwd\0/usr/lib/libze_loader.so.1\0/x\x01.so\0");
        assert_eq!(
            ldcache_paths(&b),
            vec![
                "/usr/lib/libze_loader.so.1".to_string(),
                "/usr/lib/x86_64-linux-gnu/libcuda.so.1".to_string()
            ]
        );
        assert!(ldcache_paths(&[0xff, 0, b'/', 0xfe, 0]).is_empty());
    }

    #[test]
    fn so_versions_and_icds() {
        assert_eq!(
            so_version("libcuda.so.550.54.14").as_deref(),
            Some("550.54.14")
        );
        assert_eq!(so_version("libcuda.so.1"), None);
        assert_eq!(so_version("libcuda.so"), None);
        assert_eq!(
            icd_vendor("nvidia_icd.json", Some("libGLX_nvidia.so.0")),
            "nvidia"
        );
        assert_eq!(icd_vendor("radeon_icd.x86_64.json", None), "amd");
        assert_eq!(icd_vendor("intel_icd.x86_64.json", None), "intel");
        assert_eq!(icd_vendor("lvp_icd.x86_64.json", None), "cpu");
        assert_eq!(icd_vendor("nouveau_icd.x86_64.json", None), "nouveau");
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC*") {
            let _ = parse_nvidia_version(&s);
            let _ = parse_nvidia_information(&s);
            let _ = parse_kfd_properties(&s).address();
            let _ = ldcache_paths(s.as_bytes());
            let _ = so_version(&s);
        }

        #[test]
        fn kfd_location_round_trips(bus in 0u8.., dev in 0u8..32, func in 0u8..8, dom in 0u32..0x10000) {
            let loc = (u32::from(bus) << 8) | (u32::from(dev) << 3) | u32::from(func);
            let p = parse_kfd_properties(&format!("gpu_id 7\nlocation_id {loc}\ndomain {dom}\n"));
            let a = p.address().expect("test input");
            proptest::prop_assert_eq!((a.domain, a.bus, a.device, a.function), (dom, bus, dev, func));
        }

        #[test]
        fn nvidia_version_is_found(a in 1u32..1000, b in 0u32..1000, c in 0u32..100, open in proptest::bool::ANY) {
            let v = format!("{a}.{b}.{c:02}");
            let kind = if open { "Open Kernel Module for x86_64" } else { "x86_64 Kernel Module" };
            let p = parse_nvidia_version(&format!("NVRM version: NVIDIA UNIX {kind}  {v}  Tue Jan 1\n")).expect("test input");
            proptest::prop_assert_eq!(p.version, Some(v));
            proptest::prop_assert_eq!(p.flavour, Some(if open { "open" } else { "proprietary" }));
        }
    }
}
