//! Node labels for node-feature-discovery (NFD): what a node offers for
//! passthrough and compute, as a local feature file
//! (`/etc/kubernetes/node-feature-discovery/features.d/exliar`), and a
//! `NodeFeatureRule` that derives the same labels from NFD's own PCI
//! source where it can. Pure.
//!
//! The file's rules are NFD's (`source/local/local.go`,
//! `pkg/apis/nfd/validate`): lines `KEY[=VALUE]` (value `true` when
//! absent), `#` comments, `# +expiry-time=RFC3339`, `# +no-label`,
//! `# +no-feature`; a file over 65536 bytes or whose name starts with a dot
//! is ignored; a label's key is a qualified name with a DNS-subdomain
//! prefix (`kubernetes.io` namespaces denied but NFD's own), its value at
//! most 63 characters of `[A-Za-z0-9_.-]` starting and ending with an
//! alphanumeric. [`check_file`] applies them; every label exliar makes
//! passes [`check_label`] or is not written.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analyze::{Analysis, Gpu, Isolation};
use crate::host::stacks::Stacks;
use crate::model::Inventory;

/// exliar's label namespace.
pub const PREFIX: &str = "exliar.dev/";
/// NFD's local feature directory.
pub const FEATURES_DIR: &str = "/etc/kubernetes/node-feature-discovery/features.d";
/// exliar's file in it.
pub const FILE_NAME: &str = "exliar";
/// NFD ignores larger files (`MaxFeatureFileSize`).
pub const MAX_FILE: usize = 65536;
/// Per-card labels (isolation by address) stop after this many cards, so
/// that the file stays far below [`MAX_FILE`].
pub const MAX_CARDS: usize = 64;

/// The PCI vendor word of a GPU.
fn vendor(g: &Gpu) -> &'static str {
    crate::cdi::host::vendor_word(g.vendor_id)
}

/// `10de-2504`.
pub fn ids(g: &Gpu) -> Option<String> {
    Some(format!("{:04x}-{:04x}", g.vendor_id?, g.device_id?))
}

/// A PCI address as a label value or name part: `0000-01-00.0`.
pub fn address_value(a: &crate::model::PciAddress) -> String {
    a.to_string().replace(':', "-")
}

/// Text made a valid label value: characters outside `[A-Za-z0-9_.-]`
/// become `-` (runs collapsed), at most 63, alphanumeric at both ends;
/// `None` when nothing is left.
pub fn sanitize_value(s: &str) -> Option<String> {
    let mut out = String::new();
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
            c
        } else {
            '-'
        };
        if c == '-' && out.ends_with('-') {
            continue;
        }
        out.push(c);
    }
    let mut v: String = out.chars().take(63).collect();
    while v.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        v.pop();
    }
    let v = v.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    (!v.is_empty()).then(|| v.to_string())
}

/// The model part of a GPU's name: the bracketed marketing name when the
/// database gives one (`GeForce RTX 3060 Lite Hash Rate`), else the name
/// without the vendor's company name.
pub fn model(g: &Gpu) -> Option<String> {
    let n: &str = &g.name;
    let inner = match (n.rfind('['), n.rfind(']')) {
        (Some(a), Some(b)) if b > a + 1 => &n[a + 1..b],
        _ => n
            .split_once(" Corporation ")
            .or_else(|| n.split_once(", Inc. "))
            .map_or(n, |(_, r)| r),
    };
    sanitize_value(inner)
}

/// The kind of IOMMU from the units the kernel registered.
pub fn iommu_kind(units: &[String]) -> Option<&'static str> {
    let u = units.first()?;
    Some(if u.starts_with("dmar") {
        "intel-vt-d"
    } else if u.starts_with("ivhd") {
        "amd-vi"
    } else if u.contains("smmu") {
        "arm-smmu"
    } else if u.contains("virtio") {
        "virtio-iommu"
    } else {
        "other"
    })
}

/// The labels for a host, sorted by key, each valid.
pub fn labels(inv: &Inventory, analysis: &Analysis, stacks: &Stacks) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        l.insert(format!("{PREFIX}{k}"), v);
    };
    let iommu = inv.iommu.enabled;
    if let Some(on) = iommu {
        put("iommu", on.to_string());
    }
    if iommu == Some(true)
        && let Some(k) = iommu_kind(&inv.iommu.units)
    {
        put("iommu.kind", k.into());
    }
    let gpus: Vec<&Gpu> = analysis.gpus.iter().filter(|g| !g.bmc).collect();
    put("gpu.count", gpus.len().to_string());
    let mut by_vendor: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut ready: BTreeMap<&str, usize> = BTreeMap::new();
    let mut vfio: BTreeMap<String, usize> = BTreeMap::new();
    let mut drivers: BTreeMap<String, usize> = BTreeMap::new();
    for g in &gpus {
        *by_vendor.entry(vendor(g)).or_default() += 1;
        if let Some(i) = ids(g) {
            *by_ids.entry(i.clone()).or_default() += 1;
            if g.driver.as_deref() == Some("vfio-pci") {
                *vfio.entry(i).or_default() += 1;
            }
        }
        if iommu == Some(true) && g.isolation == Isolation::Isolated {
            *ready.entry(vendor(g)).or_default() += 1;
        }
        if let Some(d) = &g.driver {
            *drivers.entry(d.clone()).or_default() += 1;
        }
    }
    for (v, n) in &by_vendor {
        put(&format!("gpu.{v}"), "true".into());
        put(&format!("gpu.{v}.count"), n.to_string());
    }
    for i in by_ids.keys() {
        put(&format!("gpu.{i}"), "true".into());
    }
    let rec = &analysis.recommendation;
    let pass = rec
        .passthrough
        .and_then(|a| gpus.iter().find(|g| g.address == a).copied());
    put(
        "passthrough.ready",
        (iommu == Some(true) && pass.is_some()).to_string(),
    );
    if let Some(g) = pass {
        put("passthrough.gpu", address_value(&g.address));
        if let Some(i) = ids(g) {
            put("passthrough.ids", i);
        }
        if let Some(m) = model(g) {
            put("passthrough.model", m);
        }
        put(
            "passthrough.mode",
            match rec.mode {
                crate::analyze::recommend::Mode::Split => "split",
                crate::analyze::recommend::Mode::SingleGpu => "single-gpu",
                crate::analyze::recommend::Mode::None => "none",
            }
            .into(),
        );
    }
    for (v, n) in &ready {
        put(&format!("isolated.{v}"), n.to_string());
    }
    put("vfio.count", vfio.values().sum::<usize>().to_string());
    for (i, n) in &vfio {
        put(&format!("vfio.{i}"), n.to_string());
    }
    for g in gpus.iter().take(MAX_CARDS) {
        put(
            &format!("isolation.{}", address_value(&g.address)),
            match g.isolation {
                Isolation::Isolated => "isolated",
                Isolation::Shared => "shared",
                Isolation::NoIommu => "no-iommu",
                Isolation::Unknown => "unknown",
            }
            .into(),
        );
    }
    for d in drivers.keys() {
        if let Some(d) = sanitize_value(d) {
            put(&format!("driver.{d}"), "true".into());
        }
    }
    if let Some(k) = stacks
        .gpus
        .iter()
        .filter_map(|s| s.driver.as_ref())
        .find(|d| d.name == "nvidia")
    {
        if let Some(f) = &k.flavour {
            put("driver.nvidia.flavour", f.clone());
        }
        if let Some(v) = k.version.as_deref().and_then(sanitize_value) {
            put("driver.nvidia.version", v);
        }
    }
    // The stacks in order of preference; the best is the first any GPU has.
    const ORDER: [&str; 5] = ["cuda", "rocm", "oneapi", "vulkan", "cpu"];
    let has = |st: &str| stacks.gpus.iter().any(|s| s.best.stack == st);
    for st in ORDER.iter().filter(|st| **st != "cpu" && has(st)) {
        put(&format!("stack.{st}"), "true".into());
    }
    let best = ORDER.iter().copied().find(|st| has(st)).unwrap_or("cpu");
    put("stack.best", best.into());
    if let Some(v) = stacks
        .userspace
        .nvidia
        .cuda_driver_version
        .as_deref()
        .and_then(sanitize_value)
    {
        put("cuda.driver-version", v);
    }
    if let Some(v) = stacks
        .userspace
        .rocm
        .iter()
        .find_map(|r| r.version.as_deref())
        .and_then(sanitize_value)
    {
        put("rocm.version", v);
    }
    l.retain(|k, v| check_label(k, v).is_empty());
    l
}

/// Seconds since the epoch when the host booted, from `/proc/stat`'s
/// `btime` line.
pub fn parse_btime(proc_stat: &str) -> Option<i64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether a boot-time isolation applied at `applied_unix` waits for a
/// reboot: it was applied after the host booted.
pub fn reboot_required(applied_unix: Option<i64>, booted_unix: Option<i64>) -> Option<bool> {
    match (applied_unix, booted_unix) {
        (None, _) => Some(false),
        (Some(a), Some(b)) => Some(a > b),
        (Some(_), None) => None,
    }
}

/// The feature file for `labels`.
pub fn render(labels: &BTreeMap<String, String>) -> String {
    let mut s = String::from(
        "# node-feature-discovery labels written by `exliar nfd` (rewritten by it: do not edit)\n",
    );
    for (k, v) in labels {
        s.push_str(&format!("{k}={v}\n"));
    }
    s
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Why NFD would drop the label `key=value` (none: it is kept).
pub fn check_label(key: &str, value: &str) -> Vec<String> {
    let mut e = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let (ns, name) = match parts.as_slice() {
        [name] => ("", *name),
        [ns, name] => (*ns, *name),
        _ => {
            e.push("more than one '/'".to_string());
            return e;
        }
    };
    if parts.len() == 2 && ns.is_empty() {
        e.push("empty prefix".into());
    } else if !ns.is_empty() && !is_dns_subdomain(ns) {
        e.push(format!("prefix {ns:?} is not a DNS-1123 subdomain"));
    }
    if !is_name(name) {
        e.push(format!(
            "name {name:?} is not a qualified name (at most 63 of [A-Za-z0-9_.-], alphanumeric at both ends)"
        ));
    }
    if ns.is_empty() {
        e.push("no namespace (NFD's automatic prefix is deprecated)".into());
    } else if (ns == "kubernetes.io" || ns.ends_with(".kubernetes.io"))
        && !(ns == "feature.node.kubernetes.io"
            || ns == "profile.node.kubernetes.io"
            || ns.ends_with(".feature.node.kubernetes.io")
            || ns.ends_with(".profile.node.kubernetes.io"))
    {
        e.push(format!("namespace {ns:?} is not allowed"));
    }
    if !value.is_empty() && !is_name(value) {
        e.push(format!("value {value:?} is not a valid label value"));
    }
    e
}

/// What NFD makes of a feature file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FileCheck {
    /// Why the whole file is ignored (a dot file, too large).
    pub ignored: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub features: BTreeMap<String, String>,
    /// `line N: …` for each line NFD would drop or reject.
    pub problems: Vec<String>,
}

/// Seconds since the epoch of an RFC 3339 time (`2099-01-01T00:00:00Z`,
/// `…+02:00`, fractions allowed).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.chars()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.chars().take_while(char::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &r[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let t = &rest[1..];
            if t.len() != 5 || t.as_bytes()[2] != b':' {
                return None;
            }
            let oh: i64 = t[..2].parse().ok()?;
            let om: i64 = t[3..].parse().ok()?;
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    // days from civil (Howard Hinnant's algorithm)
    let (yy, m) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + mi * 60 + se - offset)
}

/// Check a feature file named `name` with `bytes`, at `now` (seconds since
/// the epoch), as NFD reads it.
pub fn check_file(name: &str, bytes: &[u8], now: i64) -> FileCheck {
    let mut c = FileCheck::default();
    if name.starts_with('.') {
        c.ignored = Some("a dot file: NFD ignores it".into());
        return c;
    }
    if bytes.len() > MAX_FILE {
        c.ignored = Some(format!(
            "{} bytes: NFD ignores files over {MAX_FILE}",
            bytes.len()
        ));
        return c;
    }
    let text = String::from_utf8_lossy(bytes);
    let mut expiry: Option<i64> = None;
    let (mut no_label, mut no_feature) = (false, false);
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(c0) = line.strip_prefix('#') {
            if let Some(d) = c0.strip_prefix(" +") {
                let (dir, val) = d.split_once('=').unwrap_or((d, ""));
                match dir {
                    "expiry-time" => match parse_rfc3339(val.trim()) {
                        Some(t) => expiry = Some(t),
                        None => c
                            .problems
                            .push(format!("line {n}: expiry-time {val:?} is not RFC 3339")),
                    },
                    "no-label" => no_label = true,
                    "no-feature" => no_feature = true,
                    _ => c
                        .problems
                        .push(format!("line {n}: unknown directive {dir:?}")),
                }
            }
            continue;
        }
        if expiry.is_some_and(|t| t < now) {
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or((line, "true"));
        if !no_feature {
            c.features.insert(k.to_string(), v.to_string());
        }
        if !no_label {
            let errs = check_label(k, v);
            if errs.is_empty() {
                c.labels.insert(k.to_string(), v.to_string());
            }
            for e in errs {
                c.problems.push(format!("line {n}: label {k:?}: {e}"));
            }
        }
        no_label = false;
        no_feature = false;
    }
    c
}

/// A `NodeFeatureRule` (nfd.k8s-sigs.io/v1alpha1) that sets, from NFD's
/// own `pci.device` source, the labels of [`labels`] it can derive: GPU
/// vendors present, each GPU model (vendor-device ids) present, and the
/// IOMMU on (a device in a DMA-translating IOMMU group). The GPUs are
/// those of `gpus` (one host, or several snapshots merged).
pub fn rule(name: &str, gpus: &[&Gpu]) -> serde_json::Value {
    let classes = ["0300", "0302", "0380"];
    let mut rules = Vec::new();
    let mut vendors: BTreeMap<&str, String> = BTreeMap::new();
    let mut models: BTreeMap<String, (String, String)> = BTreeMap::new();
    for g in gpus.iter().filter(|g| !g.bmc) {
        let (Some(v), Some(d)) = (g.vendor_id, g.device_id) else {
            continue;
        };
        vendors.insert(vendor(g), format!("{v:04x}"));
        models.insert(
            format!("{v:04x}-{d:04x}"),
            (format!("{v:04x}"), format!("{d:04x}")),
        );
    }
    for (w, v) in &vendors {
        if *w == "other" {
            continue;
        }
        rules.push(serde_json::json!({
            "name": format!("exliar gpu {w}"),
            "labels": { format!("{PREFIX}gpu.{w}"): "true" },
            "matchFeatures": [{
                "feature": "pci.device",
                "matchExpressions": {
                    "vendor": {"op": "In", "value": [v]},
                    "class": {"op": "In", "value": classes},
                }
            }]
        }));
    }
    for (key, (v, d)) in &models {
        rules.push(serde_json::json!({
            "name": format!("exliar gpu {key}"),
            "labels": { format!("{PREFIX}gpu.{key}"): "true" },
            "matchFeatures": [{
                "feature": "pci.device",
                "matchExpressions": {
                    "vendor": {"op": "In", "value": [v]},
                    "device": {"op": "In", "value": [d]},
                    "class": {"op": "In", "value": classes},
                }
            }]
        }));
    }
    rules.push(serde_json::json!({
        "name": "exliar iommu",
        "labels": { format!("{PREFIX}iommu"): "true" },
        "matchFeatures": [{
            "feature": "pci.device",
            "matchExpressions": {
                "iommu_group/type": {"op": "In", "value": ["DMA", "DMA-FQ", "identity"]},
            }
        }]
    }));
    serde_json::json!({
        "apiVersion": "nfd.k8s-sigs.io/v1alpha1",
        "kind": "NodeFeatureRule",
        "metadata": { "name": name },
        "spec": { "rules": rules }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_rules_match_nfd() {
        assert!(check_label("exliar.dev/gpu.count", "2").is_empty());
        assert!(check_label("exliar.dev/gpu.nvidia", "true").is_empty());
        assert!(check_label("feature.node.kubernetes.io/x", "1").is_empty());
        assert!(check_label("a.feature.node.kubernetes.io/x", "1").is_empty());
        assert!(!check_label("kubernetes.io/gpu", "1").is_empty());
        assert!(!check_label("x.kubernetes.io/gpu", "1").is_empty());
        assert!(!check_label("gpu.count", "2").is_empty());
        assert!(!check_label("exliar.dev/gpu.model", "Tesla T4").is_empty());
        assert!(!check_label("exliar.dev/Bad_/x", "1").is_empty());
        assert!(!check_label("Exliar.dev/x", "1").is_empty());
        assert!(!check_label("exliar.dev/-x", "1").is_empty());
        assert!(!check_label(&format!("exliar.dev/{}", "a".repeat(64)), "1").is_empty());
        assert!(!check_label("exliar.dev/x", &"a".repeat(64)).is_empty());
        assert!(check_label("exliar.dev/x", &"a".repeat(63)).is_empty());
        assert!(check_label("exliar.dev/x", "").is_empty());
    }

    #[test]
    fn sanitized_values_are_valid() {
        for (s, want) in [
            (
                "GeForce RTX 3060 Lite Hash Rate",
                Some("GeForce-RTX-3060-Lite-Hash-Rate"),
            ),
            (
                "Radeon RX 550 640SP / RX 560/560X",
                Some("Radeon-RX-550-640SP-RX-560-560X"),
            ),
            ("  --  ", None),
            ("(x)", Some("x")),
        ] {
            assert_eq!(sanitize_value(s).as_deref(), want, "{s}");
        }
        let long = sanitize_value(&"ab ".repeat(40)).expect("a value");
        assert!(long.len() <= 63 && check_label("exliar.dev/x", &long).is_empty());
    }

    #[test]
    fn reboot_required_after_an_isolation_applied_since_boot() {
        assert_eq!(
            parse_btime("cpu  1 2 3\nbtime 1764950000\nprocesses 9\n"),
            Some(1764950000)
        );
        assert_eq!(parse_btime("cpu 1\n"), None);
        assert_eq!(reboot_required(None, None), Some(false));
        assert_eq!(reboot_required(Some(20), Some(10)), Some(true));
        assert_eq!(reboot_required(Some(5), Some(10)), Some(false));
        assert_eq!(reboot_required(Some(5), None), None);
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951868800));
        assert_eq!(parse_rfc3339("2000-03-01T02:00:00+02:00"), Some(951868800));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00.123Z"), Some(951868800));
        for bad in [
            "tomorrow",
            "2000-13-01T00:00:00Z",
            "2000-03-01 00:00:00Z",
            "2000-03-01T00:00:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn file_rules() {
        let now = 1_800_000_000;
        let c = check_file(
            "exliar",
            b"# c\n# +expiry-time=2099-01-01T00:00:00Z\na.com/x=1\na.com/y\n# +no-label\na.com/z=Q R\n# +expiry-time=2001-01-01T00:00:00Z\na.com/old=1\n",
            now,
        );
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.labels.len(), 2);
        assert_eq!(c.labels["a.com/y"], "true");
        assert_eq!(c.features["a.com/z"], "Q R");
        assert!(!c.features.contains_key("a.com/old"));
        assert!(check_file(".exliar", b"a.com/x=1\n", now).ignored.is_some());
        let big = vec![b'#'; MAX_FILE + 1];
        assert!(check_file("exliar", &big, now).ignored.is_some());
        let c = check_file(
            "exliar",
            b"# +expiry-time=tomorrow\nkubernetes.io/x=1\n",
            now,
        );
        assert_eq!(c.problems.len(), 2, "{:?}", c.problems);
    }
}
