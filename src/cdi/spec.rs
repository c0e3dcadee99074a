//! The CDI spec model (JSON only), its version rules and a strict validator.
//!
//! The rules follow the CDI specification (cncf-tags/container-device-interface
//! `SPEC.md` and `specs-go/version.go`) and crates.io's
//! `container-device-interface` 1.1.1, which the tests use as an oracle:
//!
//! | version | what first needs it |
//! |---|---|
//! | 0.3.0 | the base: every spec needs at least this |
//! | 0.4.0 | a mount `type` |
//! | 0.5.0 | a device node `hostPath`; a device name that does not start with a letter (`0`) |
//! | 0.6.0 | annotations (spec or device); a dot in the kind's class (`vendor.com/a.b`) |
//! | 0.7.0 | `intelRdt`; `additionalGids` |
//! | 0.8.0, 1.0.0 | nothing new in the file (API changes only) |
//! | 1.1.0 | `netDevices`; `intelRdt.schemata` or `intelRdt.enableMonitoring` (set at all, as the Rust crate counts it); `enableCMT`/`enableMBM` are refused from 1.1.0 on |
//!
//! Versions 0.1.0 and 0.2.0 are known but never needed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// A CDI spec version (`major.minor.patch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Parse `X.Y.Z`, with an optional leading `v` (as upstream accepts).
    /// Any such version parses; [`Version::is_known`] says whether a CDI
    /// library knows it.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.strip_prefix('v').unwrap_or(s);
        let mut it = s.split('.');
        let mut num = || -> Option<u32> {
            let p = it.next()?;
            if p.is_empty()
                || !p.bytes().all(|b| b.is_ascii_digit())
                || (p.len() > 1 && p.starts_with('0'))
            {
                return None;
            }
            p.parse().ok()
        };
        let v = Version::new(num()?, num()?, num()?);
        if it.next().is_some() {
            return None;
        }
        Some(v)
    }

    /// Whether this is a released spec version.
    pub fn is_known(self) -> bool {
        KNOWN_VERSIONS.contains(&self)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Every released spec version, oldest first.
pub const KNOWN_VERSIONS: [Version; 10] = [
    Version::new(0, 1, 0),
    Version::new(0, 2, 0),
    Version::new(0, 3, 0),
    Version::new(0, 4, 0),
    Version::new(0, 5, 0),
    Version::new(0, 6, 0),
    Version::new(0, 7, 0),
    Version::new(0, 8, 0),
    Version::new(1, 0, 0),
    Version::new(1, 1, 0),
];

/// The version every spec needs at least.
pub const BASE_VERSION: Version = Version::new(0, 3, 0);
/// The newest spec version this model knows.
pub const LATEST_VERSION: Version = Version::new(1, 1, 0);

fn nullable<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

fn nullable_map<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default())
}

/// A CDI spec file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(rename = "cdiVersion")]
    pub cdi_version: String,
    pub kind: String,
    #[serde(
        default,
        deserialize_with = "nullable_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    pub devices: Vec<Device>,
    #[serde(
        rename = "containerEdits",
        default,
        skip_serializing_if = "ContainerEdits::is_empty"
    )]
    pub container_edits: ContainerEdits,
}

/// One device of a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub name: String,
    #[serde(
        default,
        deserialize_with = "nullable_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "containerEdits")]
    pub container_edits: ContainerEdits,
}

/// Edits a runtime makes to the container's OCI spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerEdits {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub device_nodes: Vec<DeviceNode>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub hooks: Vec<Hook>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intel_rdt: Option<IntelRdt>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub additional_gids: Vec<u32>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub net_devices: Vec<NetDevice>,
}

impl ContainerEdits {
    /// No edit at all (what a device may not have).
    pub fn is_empty(&self) -> bool {
        self.env.is_empty()
            && self.device_nodes.is_empty()
            && self.hooks.is_empty()
            && self.mounts.is_empty()
            && self.intel_rdt.is_none()
            && self.additional_gids.is_empty()
            && self.net_devices.is_empty()
    }
}

/// A device node to create in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceNode {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

/// An OCI hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Hook {
    pub hook_name: String,
    pub path: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub args: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
}

/// A mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mount {
    pub host_path: String,
    pub container_path: String,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub options: Vec<String>,
}

/// Linux resctrl settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntelRdt {
    #[serde(rename = "closID", default, skip_serializing_if = "Option::is_none")]
    pub clos_id: Option<String>,
    #[serde(
        rename = "l3CacheSchema",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub l3_cache_schema: Option<String>,
    #[serde(
        rename = "memBwSchema",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub mem_bw_schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schemata: Option<Vec<String>>,
    #[serde(
        rename = "enableMonitoring",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_monitoring: Option<bool>,
    #[serde(rename = "enableCMT", default, skip_serializing_if = "Option::is_none")]
    pub enable_cmt: Option<bool>,
    #[serde(rename = "enableMBM", default, skip_serializing_if = "Option::is_none")]
    pub enable_mbm: Option<bool>,
}

/// A network device moved into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetDevice {
    pub host_interface_name: String,
    pub name: String,
}

/// One thing wrong with a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// A stable id: `parse`, `version`, `version-too-low`, `version-field`,
    /// `kind`, `annotation`, `no-devices`, `device-name`, `duplicate-device`,
    /// `empty-edits`, `env`, `device-node`, `hook`, `mount`, `intel-rdt`,
    /// `net-device`, `conflict` (one device in two files of a directory),
    /// `host-path` (missing under the root).
    pub code: &'static str,
    /// Where in the file: `devices[1].containerEdits.env[0]`, or
    /// `line L column C` for parse errors; empty for the whole file.
    pub at: String,
    pub message: String,
}

impl Problem {
    fn new(code: &'static str, at: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            code,
            at: at.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.at, self.message)
        }
    }
}

/// Parse a spec from JSON, strictly (unknown fields are errors). The error
/// names the line and column.
pub fn parse(text: &str) -> Result<Spec, Problem> {
    serde_json::from_str(text).map_err(|e| {
        let at = if e.line() > 0 {
            format!("line {} column {}", e.line(), e.column())
        } else {
            String::new()
        };
        // serde_json appends " at line L column C"; keep the message plain.
        let msg = e.to_string();
        let msg = match msg.rfind(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        Problem::new("parse", at, msg)
    })
}

/// The spec as engines want it on disk: pretty JSON with a trailing newline.
pub fn to_json(spec: &Spec) -> String {
    let mut s = serde_json::to_string_pretty(spec).unwrap_or_default();
    s.push('\n');
    s
}

/// Split a kind into vendor and class, as upstream does: exactly one `/`
/// with text on both sides, else no vendor.
pub fn split_kind(kind: &str) -> (&str, &str) {
    match kind.split_once('/') {
        Some((v, c)) if !v.is_empty() && !c.is_empty() && !c.contains('/') => (v, c),
        _ => ("", kind),
    }
}

/// One reason a spec needs a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    pub version: Version,
    pub reason: String,
}

fn all_edits(spec: &Spec) -> impl Iterator<Item = (String, &ContainerEdits)> {
    std::iter::once(("containerEdits".to_string(), &spec.container_edits)).chain(
        spec.devices
            .iter()
            .enumerate()
            .map(|(i, d)| (format!("devices[{i}].containerEdits"), &d.container_edits)),
    )
}

/// Every feature of the spec that needs a version above the base, with the
/// version it needs (several per version possible).
pub fn requirements(spec: &Spec) -> Vec<Requirement> {
    let mut out = Vec::new();
    let mut need = |v: Version, reason: String| out.push(Requirement { version: v, reason });
    for (at, e) in all_edits(spec) {
        for (i, m) in e.mounts.iter().enumerate() {
            if m.kind.as_deref().is_some_and(|t| !t.is_empty()) {
                need(
                    Version::new(0, 4, 0),
                    format!("{at}.mounts[{i}] has a type"),
                );
            }
        }
        for (i, n) in e.device_nodes.iter().enumerate() {
            if n.host_path.as_deref().is_some_and(|p| !p.is_empty()) {
                need(
                    Version::new(0, 5, 0),
                    format!("{at}.deviceNodes[{i}] has a hostPath"),
                );
            }
        }
        if e.intel_rdt.is_some() {
            need(Version::new(0, 7, 0), format!("{at} has intelRdt"));
        }
        if !e.additional_gids.is_empty() {
            need(Version::new(0, 7, 0), format!("{at} has additionalGids"));
        }
        if let Some(r) = &e.intel_rdt {
            if r.schemata.is_some() {
                need(Version::new(1, 1, 0), format!("{at}.intelRdt has schemata"));
            }
            if r.enable_monitoring.is_some() {
                need(
                    Version::new(1, 1, 0),
                    format!("{at}.intelRdt has enableMonitoring"),
                );
            }
        }
        if !e.net_devices.is_empty() {
            need(Version::new(1, 1, 0), format!("{at} has netDevices"));
        }
    }
    for (i, d) in spec.devices.iter().enumerate() {
        if !d.name.chars().next().is_some_and(char::is_alphabetic) {
            need(
                Version::new(0, 5, 0),
                format!("device name {:?} does not start with a letter", d.name),
            );
        }
        if !d.annotations.is_empty() {
            need(
                Version::new(0, 6, 0),
                format!("devices[{i}] has annotations"),
            );
        }
    }
    if !spec.annotations.is_empty() {
        need(Version::new(0, 6, 0), "the spec has annotations".into());
    }
    let (vendor, class) = split_kind(&spec.kind);
    if !vendor.is_empty() && class.contains('.') {
        need(
            Version::new(0, 6, 0),
            format!("the kind's class {class:?} has a dot"),
        );
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.version));
    out
}

/// The lowest spec version that can express this spec, exactly as upstream
/// (and the Rust crate's `minimum_required_version`) computes it.
pub fn minimum_version(spec: &Spec) -> Version {
    requirements(spec)
        .iter()
        .map(|r| r.version)
        .max()
        .unwrap_or(BASE_VERSION)
        .max(BASE_VERSION)
}

fn name_chars(
    name: &str,
    first_ok: fn(char) -> bool,
    mid_ok: fn(char) -> bool,
) -> Result<(), String> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err("is empty".into());
    };
    if !first_ok(first) {
        return Err(format!("must not start with {first:?}"));
    }
    if let Some(last) = name.chars().last()
        && !last.is_ascii_alphanumeric()
    {
        return Err("must end with a letter or digit".into());
    }
    let n = name.chars().count();
    if let Some(c) = name
        .chars()
        .skip(1)
        .take(n.saturating_sub(2))
        .find(|&c| !mid_ok(c))
    {
        return Err(format!("has the character {c:?}"));
    }
    Ok(())
}

/// The vendor and class rule: a letter first, a letter or digit last,
/// letters, digits, `-`, `_` and `.` between.
pub fn check_vendor_or_class(name: &str) -> Result<(), String> {
    name_chars(
        name,
        |c| c.is_ascii_alphabetic(),
        |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'),
    )
}

/// The device name rule: a letter or digit first and last, letters,
/// digits, `-`, `_`, `.` and `:` between.
pub fn check_device_name(name: &str) -> Result<(), String> {
    name_chars(
        name,
        |c| c.is_ascii_alphanumeric(),
        |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'),
    )
}

/// A kind (`vendor/class`) is valid.
pub fn check_kind(kind: &str) -> Result<(), String> {
    let (vendor, class) = split_kind(kind);
    if vendor.is_empty() {
        return Err(format!("kind {kind:?} is not VENDOR/CLASS"));
    }
    check_vendor_or_class(vendor).map_err(|e| format!("vendor {vendor:?} {e}"))?;
    check_vendor_or_class(class).map_err(|e| format!("class {class:?} {e}"))
}

fn is_dns_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// A Kubernetes qualified name (what annotation keys must be, lowercased).
fn check_annotation_key(key: &str) -> Result<(), String> {
    let key = key.to_lowercase();
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key.as_str()),
    };
    if let Some(p) = prefix
        && (p.is_empty() || p.len() > 253 || !p.split('.').all(is_dns_label))
    {
        return Err("its prefix must be a lowercase DNS subdomain".into());
    }
    if name.is_empty() || name.len() > 63 {
        return Err("its name part must be 1 to 63 characters".into());
    }
    let ok_end = |c: u8| c.is_ascii_alphanumeric();
    let b = name.as_bytes();
    if !ok_end(b[0])
        || !ok_end(b[b.len() - 1])
        || !b
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        return Err("its name part must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit".into());
    }
    Ok(())
}

fn check_annotations(at: &str, a: &BTreeMap<String, String>, out: &mut Vec<Problem>) {
    for k in a.keys() {
        if let Err(e) = check_annotation_key(k) {
            out.push(Problem::new(
                "annotation",
                format!("{at}.{k}"),
                format!("annotation key {k:?}: {e}"),
            ));
        }
    }
    let size: usize = a.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > 256 * 1024 {
        out.push(Problem::new(
            "annotation",
            at,
            format!("annotations are {size} bytes, more than 262144"),
        ));
    }
}

fn check_env(at: &str, env: &[String], out: &mut Vec<Problem>) {
    for (i, e) in env.iter().enumerate() {
        if e.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
            out.push(Problem::new(
                "env",
                format!("{at}[{i}]"),
                format!("{e:?} is not NAME=VALUE"),
            ));
        }
    }
}

/// OCI hook names a CDI library accepts.
pub const HOOK_NAMES: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

fn check_edits(at: &str, e: &ContainerEdits, declared: Option<Version>, out: &mut Vec<Problem>) {
    check_env(&format!("{at}.env"), &e.env, out);
    for (i, n) in e.device_nodes.iter().enumerate() {
        let here = format!("{at}.deviceNodes[{i}]");
        if n.path.is_empty() {
            out.push(Problem::new("device-node", &here, "path is empty"));
        } else if !n.path.starts_with('/') {
            out.push(Problem::new(
                "device-node",
                &here,
                format!("path {:?} is not absolute", n.path),
            ));
        }
        if let Some(h) = &n.host_path
            && !h.is_empty()
            && !h.starts_with('/')
        {
            out.push(Problem::new(
                "device-node",
                &here,
                format!("hostPath {h:?} is not absolute"),
            ));
        }
        if let Some(t) = &n.kind
            && !matches!(t.as_str(), "b" | "c" | "u" | "p" | "")
        {
            out.push(Problem::new(
                "device-node",
                &here,
                format!("type {t:?} is not one of b, c, u, p"),
            ));
        }
        if let Some(p) = &n.permissions
            && !(p.is_empty() || p == "none" || p.chars().all(|c| matches!(c, 'r' | 'w' | 'm')))
        {
            out.push(Problem::new(
                "device-node",
                &here,
                format!("permissions {p:?} are not made of r, w, m (or \"none\")"),
            ));
        }
    }
    for (i, h) in e.hooks.iter().enumerate() {
        let here = format!("{at}.hooks[{i}]");
        if !HOOK_NAMES.contains(&h.hook_name.as_str()) {
            out.push(Problem::new(
                "hook",
                &here,
                format!(
                    "hookName {:?} is not one of {}",
                    h.hook_name,
                    HOOK_NAMES.join(", ")
                ),
            ));
        }
        if h.path.is_empty() {
            out.push(Problem::new("hook", &here, "path is empty"));
        } else if !h.path.starts_with('/') {
            out.push(Problem::new(
                "hook",
                &here,
                format!("path {:?} is not absolute", h.path),
            ));
        }
        if h.timeout.is_some_and(|t| t <= 0) {
            out.push(Problem::new("hook", &here, "timeout must be more than 0"));
        }
        check_env(&format!("{here}.env"), &h.env, out);
    }
    for (i, m) in e.mounts.iter().enumerate() {
        let here = format!("{at}.mounts[{i}]");
        if m.host_path.is_empty() {
            out.push(Problem::new("mount", &here, "hostPath is empty"));
        }
        if m.container_path.is_empty() {
            out.push(Problem::new("mount", &here, "containerPath is empty"));
        } else if !m.container_path.starts_with('/') {
            out.push(Problem::new(
                "mount",
                &here,
                format!(
                    "containerPath {:?} is not absolute (runc refuses it)",
                    m.container_path
                ),
            ));
        }
    }
    if let Some(r) = &e.intel_rdt {
        let here = format!("{at}.intelRdt");
        if let Some(c) = &r.clos_id
            && (c.len() >= 4096 || c == "." || c == ".." || c.contains(['/', '\n']))
        {
            out.push(Problem::new(
                "intel-rdt",
                &here,
                format!("closID {c:?} is not a valid name"),
            ));
        }
        if let Some(v) = declared
            && v >= Version::new(1, 1, 0)
        {
            for (set, field) in [
                (r.enable_cmt.is_some(), "enableCMT"),
                (r.enable_mbm.is_some(), "enableMBM"),
            ] {
                if set {
                    out.push(Problem::new(
                        "version-field",
                        &here,
                        format!("{field} is not valid in cdiVersion {v} (use enableMonitoring)"),
                    ));
                }
            }
        }
    }
    let mut hosts = BTreeSet::new();
    let mut names = BTreeSet::new();
    for (i, n) in e.net_devices.iter().enumerate() {
        let here = format!("{at}.netDevices[{i}]");
        if n.host_interface_name.is_empty() || n.name.is_empty() {
            out.push(Problem::new(
                "net-device",
                &here,
                "hostInterfaceName and name must not be empty",
            ));
        }
        if !hosts.insert(&n.host_interface_name) {
            out.push(Problem::new(
                "net-device",
                &here,
                format!("hostInterfaceName {:?} twice", n.host_interface_name),
            ));
        }
        if !names.insert(&n.name) {
            out.push(Problem::new(
                "net-device",
                &here,
                format!("name {:?} twice", n.name),
            ));
        }
    }
}

/// Check one spec strictly. An empty answer means every CDI library at the
/// declared version accepts it.
pub fn validate(spec: &Spec) -> Vec<Problem> {
    let mut out = Vec::new();
    let declared = Version::parse(&spec.cdi_version);
    let min = minimum_version(spec);
    match declared {
        None => out.push(Problem::new(
            "version",
            "cdiVersion",
            format!("{:?} is not a version (X.Y.Z)", spec.cdi_version),
        )),
        Some(v) if !v.is_known() => out.push(Problem::new(
            "version",
            "cdiVersion",
            format!(
                "{v} is not a released CDI spec version (known: {})",
                KNOWN_VERSIONS.map(|k| k.to_string()).join(", ")
            ),
        )),
        Some(v) if v < min => {
            let why: Vec<String> = requirements(spec)
                .into_iter()
                .filter(|r| r.version > v)
                .map(|r| format!("{} ({})", r.reason, r.version))
                .collect();
            out.push(Problem::new(
                "version-too-low",
                "cdiVersion",
                format!(
                    "{v} is below the minimum {min} this spec needs: {}",
                    why.join("; ")
                ),
            ));
        }
        Some(_) => {}
    }
    if let Err(e) = check_kind(&spec.kind) {
        out.push(Problem::new("kind", "kind", e));
    }
    check_annotations("annotations", &spec.annotations, &mut out);
    check_edits("containerEdits", &spec.container_edits, declared, &mut out);
    if spec.devices.is_empty() {
        out.push(Problem::new(
            "no-devices",
            "devices",
            "the spec has no devices",
        ));
    }
    let mut seen = BTreeMap::new();
    for (i, d) in spec.devices.iter().enumerate() {
        let at = format!("devices[{i}]");
        if let Err(e) = check_device_name(&d.name) {
            out.push(Problem::new(
                "device-name",
                format!("{at}.name"),
                format!("device name {:?} {e}", d.name),
            ));
        }
        if let Some(first) = seen.insert(d.name.as_str(), i) {
            out.push(Problem::new(
                "duplicate-device",
                &at,
                format!(
                    "device {:?} is also devices[{first}]: engines drop the whole spec",
                    d.name
                ),
            ));
        }
        check_annotations(&format!("{at}.annotations"), &d.annotations, &mut out);
        if d.container_edits.is_empty() {
            out.push(Problem::new(
                "empty-edits",
                format!("{at}.containerEdits"),
                format!("device {:?} has no edits", d.name),
            ));
        }
        check_edits(
            &format!("{at}.containerEdits"),
            &d.container_edits,
            declared,
            &mut out,
        );
    }
    out
}

/// The host paths a spec uses: device node host paths (or paths), mount
/// sources and hook programs, each with where it is used.
pub fn host_paths(spec: &Spec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (at, e) in all_edits(spec) {
        for (i, n) in e.device_nodes.iter().enumerate() {
            let p = n
                .host_path
                .as_deref()
                .filter(|p| !p.is_empty())
                .unwrap_or(&n.path);
            out.push((format!("{at}.deviceNodes[{i}]"), p.to_string()));
        }
        for (i, m) in e.mounts.iter().enumerate() {
            out.push((format!("{at}.mounts[{i}]"), m.host_path.clone()));
        }
        for (i, h) in e.hooks.iter().enumerate() {
            out.push((format!("{at}.hooks[{i}]"), h.path.clone()));
        }
    }
    out
}

/// Host paths of the spec for which `exists` says no (absolute paths only:
/// relative ones are already problems).
pub fn missing_host_paths(spec: &Spec, exists: impl Fn(&str) -> bool) -> Vec<Problem> {
    host_paths(spec)
        .into_iter()
        .filter(|(_, p)| p.starts_with('/') && !exists(p))
        .map(|(at, p)| Problem::new("host-path", at, format!("{p} does not exist on the host")))
        .collect()
}

/// `vendor/class=name`, as engines name a device.
pub fn qualified_name(kind: &str, device: &str) -> String {
    format!("{kind}={device}")
}

/// The order exliar shows device names in: plain indexes by number, other
/// names after them by text, `all` last.
pub fn device_order(name: &str) -> (u8, u64, String) {
    if name == "all" {
        (2, 0, String::new())
    } else if let Ok(n) = name.parse::<u64>() {
        (0, n, name.to_string())
    } else {
        (1, 0, name.to_string())
    }
}

fn qualified_order(q: &str) -> (String, (u8, u64, String)) {
    match q.split_once('=') {
        Some((kind, name)) => (kind.to_string(), device_order(name)),
        None => (q.to_string(), device_order("")),
    }
}

/// What a directory of spec files gives engines: each file's spec (when it
/// parsed) and problems, and the devices defined by several valid files
/// (engines drop those).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirCheck {
    pub files: Vec<FileCheck>,
    pub conflicts: Vec<Conflict>,
}

/// One file of a [`DirCheck`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileCheck {
    pub file: String,
    #[serde(skip)]
    pub spec: Option<Spec>,
    pub problems: Vec<Problem>,
}

/// Check one spec text: its spec when it parsed, and every problem
/// (`exists`, when given, says whether a host path exists).
pub fn check_text(
    text: &str,
    exists: Option<&dyn Fn(&str) -> bool>,
) -> (Option<Spec>, Vec<Problem>) {
    match parse(text) {
        Err(p) => (None, vec![p]),
        Ok(s) => {
            let mut problems = validate(&s);
            if let Some(exists) = exists {
                problems.extend(missing_host_paths(&s, exists));
            }
            (Some(s), problems)
        }
    }
}

/// Check the JSON spec files of one directory, given as `(file, text)`:
/// each strictly, then the devices that several valid ones define (missing
/// host paths do not stop an engine from loading a file).
pub fn validate_dir(files: &[(String, String)], exists: Option<&dyn Fn(&str) -> bool>) -> DirCheck {
    let mut out = Vec::new();
    let mut loaded = Vec::new();
    for (file, text) in files {
        let (spec, problems) = check_text(text, exists);
        if let Some(s) = &spec
            && problems.iter().all(|p| p.code == "host-path")
        {
            loaded.push((file.clone(), s.clone()));
        }
        out.push(FileCheck {
            file: file.clone(),
            spec,
            problems,
        });
    }
    DirCheck {
        files: out,
        conflicts: resolve_dirs(&[loaded]).1,
    }
}

/// One device defined by more than one spec file of one directory: engines
/// drop it from all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub device: String,
    pub files: Vec<String>,
}

/// A device as an engine will see it, with the file that defines it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Visible {
    pub device: String,
    pub file: String,
}

/// What engines make of spec directories, given in order of rising
/// priority (`/etc/cdi` then `/var/run/cdi`), each with its valid specs as
/// `(file, spec)`: a device in a later directory overrides the same device
/// in an earlier one; a device defined twice within one directory is a
/// conflict and dropped (even where a later directory defines it too).
/// Devices come back in [`device_order`] within each kind.
pub fn resolve_dirs(dirs: &[Vec<(String, Spec)>]) -> (Vec<Visible>, Vec<Conflict>) {
    // device -> (priority, file) of the definition in force; a device
    // defined twice at one priority is a conflict and, as in upstream's
    // cache, dropped at the end even when a higher directory defines it too.
    let mut table: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut conflicted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (prio, specs) in dirs.iter().enumerate() {
        for (file, spec) in specs {
            let names: BTreeSet<&str> = spec.devices.iter().map(|d| d.name.as_str()).collect();
            for name in names {
                let q = qualified_name(&spec.kind, name);
                if let Some((p, old)) = table.get(&q)
                    && *p == prio
                {
                    let files = conflicted.entry(q.clone()).or_default();
                    for f in [old, file] {
                        if !files.contains(f) {
                            files.push(f.clone());
                        }
                    }
                    continue;
                }
                table.insert(q, (prio, file.clone()));
            }
        }
    }
    let mut visible: Vec<Visible> = table
        .into_iter()
        .filter(|(d, _)| !conflicted.contains_key(d))
        .map(|(device, (_, file))| Visible { device, file })
        .collect();
    visible.sort_by_cached_key(|v| qualified_order(&v.device));
    let conflicts = conflicted
        .into_iter()
        .map(|(device, files)| Conflict { device, files })
        .collect();
    (visible, conflicts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_strictly() {
        assert_eq!(Version::parse("0.5.0"), Some(Version::new(0, 5, 0)));
        assert_eq!(Version::parse("v1.1.0"), Some(Version::new(1, 1, 0)));
        for bad in ["", "0.5", "0.5.0.1", "abc", "0.05.0", "1.-1.0", "0.5.0 "] {
            assert_eq!(Version::parse(bad), None, "{bad:?}");
        }
        assert!(Version::new(1, 0, 0) > Version::new(0, 8, 0));
        assert!(!Version::new(0, 9, 0).is_known());
        assert_eq!(KNOWN_VERSIONS.last(), Some(&LATEST_VERSION));
    }

    #[test]
    fn name_rules() {
        for ok in ["0", "gpu0", "0000:01:00.0", "GPU-4e5a-00", "a_b.c"] {
            assert_eq!(check_device_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-a", "a-", "a b", "a/b", "a=b", ":0"] {
            assert!(check_device_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_kind("exliar.dev/gpu").is_ok());
        assert!(check_kind("exliar.dev/gpu.x").is_ok());
        for bad in [
            "gpu",
            "exliar.dev/",
            "/gpu",
            "a/b/c",
            "1x.dev/gpu",
            "x.dev/gpu-",
        ] {
            assert!(check_kind(bad).is_err(), "{bad:?}");
        }
        assert!(check_annotation_key("cdi.k8s.io/vfio17").is_ok());
        assert!(check_annotation_key("UPPER.ok").is_ok());
        assert!(check_annotation_key("Bad_Prefix/x").is_err());
        assert!(check_annotation_key("a/-x").is_err());
    }

    #[test]
    fn requirements_explain_the_minimum() {
        let s = parse(
            r#"{"cdiVersion":"0.3.0","kind":"v.com/c.d","devices":[{"name":"0","containerEdits":{"additionalGids":[1]}}]}"#,
        )
        .expect("parses");
        assert_eq!(minimum_version(&s), Version::new(0, 7, 0));
        let r = requirements(&s);
        assert_eq!(r[0].version, Version::new(0, 7, 0));
        assert_eq!(r.len(), 3);
        let p = validate(&s);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].code, "version-too-low");
        assert!(
            p[0].message.contains("has a dot (0.6.0)"),
            "{}",
            p[0].message
        );
    }
}
