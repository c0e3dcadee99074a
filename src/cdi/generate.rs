//! Build a CDI spec from a plain description of devices.
//!
//! The input says nothing about where it came from (detection fills it in);
//! the output is a validated [`Spec`] that declares the lowest `cdiVersion`
//! its content needs, unless a version is pinned.
//!
//! Device names: every name of an [`InputDevice`] becomes one CDI device
//! with the same edits (`0`, `0000:01:00.0`, `GPU-…`). A PCI address is used
//! verbatim in its full lowercase form: `:` and `.` are legal inside a CDI
//! device name (a letter or digit must start and end it), and Podman 4.3.1's
//! old library accepts them too (the containers probe ran `0:1`). A name
//! starting with a digit needs cdiVersion 0.5.0, which every CDI-capable
//! engine accepts. `all` is added: the union of every device's edits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::spec::{
    self, ContainerEdits, Device, DeviceNode, Spec, Version, check_device_name, check_kind,
};

/// The kind exliar writes GPUs under (`nvidia.com/gpu` belongs to
/// nvidia-ctk; both can be installed side by side).
pub const GPU_KIND: &str = "exliar.dev/gpu";
/// The kind exliar writes cards held by vfio-pci under.
pub const VFIO_KIND: &str = "exliar.dev/vfio";
/// The vendor prefix every exliar kind has.
pub const VENDOR: &str = "exliar.dev";

/// What to write: one kind and its devices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// `exliar.dev/gpu`, `exliar.dev/vfio`, … (must be under `exliar.dev/`).
    pub vendor_kind: String,
    pub devices: Vec<InputDevice>,
    /// Edits every request of any of these devices gets (libraries, hooks).
    pub common: Edits,
    /// Spec-level annotations (need cdiVersion 0.6.0).
    pub annotations: BTreeMap<String, String>,
}

/// One physical device and the names it is requested by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputDevice {
    /// Index, PCI address, UUID: each becomes a CDI device.
    pub names: Vec<String>,
    pub nodes: Vec<Node>,
    /// Environment for this device; in `all`, values of one variable that
    /// differ between devices are joined with `,` in device order (what
    /// `*_VISIBLE_DEVICES`-style variables expect).
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub hooks: Vec<Hook>,
    /// Device-level annotations (need cdiVersion 0.6.0).
    pub annotations: BTreeMap<String, String>,
}

/// Edits shared by all devices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edits {
    pub nodes: Vec<Node>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub hooks: Vec<Hook>,
}

/// A device node as found on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub host_path: String,
    /// Where it appears in the container; usually the same as `host_path`
    /// (a different one needs cdiVersion 0.5.0).
    pub container_path: String,
    /// `'c'` or `'b'`.
    pub kind: char,
    pub major: u32,
    pub minor: u32,
    /// The host node's permission bits (`0o660`): written as `fileMode`,
    /// since engines otherwise create the node 0666.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A bind mount of a host file or directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub host_path: String,
    pub container_path: String,
    /// e.g. `["ro", "nosuid", "nodev", "bind"]`.
    pub options: Vec<String>,
}

/// An OCI hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    /// `createContainer`, …
    pub hook_name: String,
    pub path: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
}

fn node(n: &Node) -> DeviceNode {
    DeviceNode {
        path: n.container_path.clone(),
        host_path: (n.host_path != n.container_path).then(|| n.host_path.clone()),
        kind: Some(n.kind.to_string()),
        major: Some(i64::from(n.major)),
        minor: Some(i64::from(n.minor)),
        file_mode: Some(n.mode & 0o7777),
        permissions: None,
        uid: Some(n.uid),
        gid: Some(n.gid),
    }
}

fn mount(m: &Mount) -> spec::Mount {
    spec::Mount {
        host_path: m.host_path.clone(),
        container_path: m.container_path.clone(),
        kind: None,
        options: m.options.clone(),
    }
}

fn hook(h: &Hook) -> spec::Hook {
    spec::Hook {
        hook_name: h.hook_name.clone(),
        path: h.path.clone(),
        args: h.args.clone(),
        env: h.env.clone(),
        timeout: None,
    }
}

/// Edits in a deterministic order: nodes and mounts by container path
/// (duplicates dropped), env by name, hooks in the given order (order
/// matters to hooks) without repeats.
fn edits(
    nodes: &[&Node],
    env: &[(String, String)],
    mounts: &[&Mount],
    hooks: &[&Hook],
) -> Result<ContainerEdits, String> {
    let mut by_path: BTreeMap<&str, &Node> = BTreeMap::new();
    for n in nodes {
        if let Some(old) = by_path.insert(&n.container_path, n)
            && old != *n
        {
            return Err(format!(
                "two different device nodes for {} ({} and {})",
                n.container_path, old.host_path, n.host_path
            ));
        }
    }
    let mut mounts_by: BTreeMap<&str, &Mount> = BTreeMap::new();
    for m in mounts {
        if let Some(old) = mounts_by.insert(&m.container_path, m)
            && old != *m
        {
            return Err(format!(
                "two different mounts on {} ({} and {})",
                m.container_path, old.host_path, m.host_path
            ));
        }
    }
    let mut hs: Vec<spec::Hook> = Vec::new();
    for h in hooks {
        let h = hook(h);
        if !hs.contains(&h) {
            hs.push(h);
        }
    }
    let mut env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.sort();
    env.dedup();
    Ok(ContainerEdits {
        env,
        device_nodes: by_path.values().map(|n| node(n)).collect(),
        hooks: hs,
        mounts: mounts_by.values().map(|m| mount(m)).collect(),
        ..ContainerEdits::default()
    })
}

/// Env of `all`: per variable, the distinct values in device order joined
/// with `,`.
fn union_env(devices: &[InputDevice]) -> Vec<(String, String)> {
    let mut vals: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for d in devices {
        for (k, v) in &d.env {
            let e = vals.entry(k).or_default();
            if !e.contains(&v.as_str()) {
                e.push(v);
            }
        }
    }
    vals.into_iter()
        .map(|(k, v)| (k.to_string(), v.join(",")))
        .collect()
}

/// Build the spec. `pin` fixes `cdiVersion`: lower than what the content
/// needs is refused with the reason; higher is used as given.
pub fn generate(input: &Input, pin: Option<Version>) -> Result<Spec, String> {
    check_kind(&input.vendor_kind).map_err(|e| format!("kind: {e}"))?;
    if !input
        .vendor_kind
        .strip_prefix(VENDOR)
        .is_some_and(|r| r.starts_with('/'))
    {
        return Err(format!(
            "kind {} is not under exliar's vendor prefix {VENDOR}/ (other vendors' kinds belong to their own tools)",
            input.vendor_kind
        ));
    }
    if input.devices.is_empty() {
        return Err(format!("no devices for {}", input.vendor_kind));
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut devices = Vec::new();
    for (i, d) in input.devices.iter().enumerate() {
        if d.names.is_empty() {
            return Err(format!("device #{i} has no name"));
        }
        if d.nodes.is_empty() && d.env.is_empty() && d.mounts.is_empty() && d.hooks.is_empty() {
            return Err(format!("device {} has no edits", d.names[0]));
        }
        for n in &d.nodes {
            if !matches!(n.kind, 'c' | 'b') {
                return Err(format!(
                    "device node {}: type {:?} is not c or b",
                    n.host_path, n.kind
                ));
            }
        }
        let e = edits(
            &d.nodes.iter().collect::<Vec<_>>(),
            &d.env,
            &d.mounts.iter().collect::<Vec<_>>(),
            &d.hooks.iter().collect::<Vec<_>>(),
        )
        .map_err(|e| format!("device {}: {e}", d.names[0]))?;
        for name in &d.names {
            if name == "all" {
                return Err("\"all\" is reserved for the union of all devices".into());
            }
            check_device_name(name).map_err(|e| format!("device name {name:?} {e}"))?;
            match seen.insert(name, i) {
                Some(j) if j != i => {
                    return Err(format!(
                        "device name {name:?} names two devices (#{j} and #{i})"
                    ));
                }
                Some(_) => continue,
                None => {}
            }
            devices.push(Device {
                name: name.clone(),
                annotations: d.annotations.clone(),
                container_edits: e.clone(),
            });
        }
    }
    let all = edits(
        &input
            .devices
            .iter()
            .flat_map(|d| &d.nodes)
            .collect::<Vec<_>>(),
        &union_env(&input.devices),
        &input
            .devices
            .iter()
            .flat_map(|d| &d.mounts)
            .collect::<Vec<_>>(),
        &input
            .devices
            .iter()
            .flat_map(|d| &d.hooks)
            .collect::<Vec<_>>(),
    )
    .map_err(|e| format!("device all: {e}"))?;
    devices.push(Device {
        name: "all".into(),
        annotations: BTreeMap::new(),
        container_edits: all,
    });
    devices.sort_by_key(|d| spec::device_order(&d.name));
    let c = &input.common;
    let common = edits(
        &c.nodes.iter().collect::<Vec<_>>(),
        &c.env,
        &c.mounts.iter().collect::<Vec<_>>(),
        &c.hooks.iter().collect::<Vec<_>>(),
    )
    .map_err(|e| format!("common edits: {e}"))?;
    let mut spec = Spec {
        cdi_version: String::new(),
        kind: input.vendor_kind.clone(),
        annotations: input.annotations.clone(),
        devices,
        container_edits: common,
    };
    let min = spec::minimum_version(&spec);
    let version = match pin {
        None => min,
        Some(p) if !p.is_known() => {
            return Err(format!("cdiVersion {p} is not a released CDI spec version"));
        }
        Some(p) if p < min => {
            let why: Vec<String> = spec::requirements(&spec)
                .into_iter()
                .filter(|r| r.version > p)
                .map(|r| format!("{} needs {}", r.reason, r.version))
                .collect();
            return Err(format!(
                "cdiVersion {p} cannot express this spec (it needs {min}): {}",
                why.join("; ")
            ));
        }
        Some(p) => p,
    };
    spec.cdi_version = version.to_string();
    let problems = spec::validate(&spec);
    if let Some(p) = problems.first() {
        return Err(format!("the generated spec is invalid: {p}"));
    }
    Ok(spec)
}
