//! Assertions comparing exliar's JSON with the kernel's truth.
//!
//! Each check collects every mismatch before failing, so one run shows them all.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::process::Command;

use serde_json::Value;

use super::harness::{self, GuestRun};
use super::truth::{PciFunction, Truth};

/// `exliar scan --json` schema this tier is written against.
pub const INVENTORY_SCHEMA: &str = "exliar.inventory/1";
/// `exliar iommu --json` schema.
pub const IOMMU_SCHEMA: &str = "exliar.iommu/1";

/// Mismatches found by the checks, by section; `assert_none` fails with all of them,
/// so one run shows every disagreement.
#[derive(Debug, Default)]
pub struct Findings(Vec<(String, Vec<String>)>);

impl Findings {
    pub fn add(&mut self, section: impl Into<String>, problems: Vec<String>) {
        if !problems.is_empty() {
            self.0.push((section.into(), problems));
        }
    }

    /// Panics listing every finding, with where to look.
    pub fn assert_none(&self, run: &GuestRun) {
        if self.0.is_empty() {
            return;
        }
        let mut msg = format!(
            "scenario `{}`: exliar disagrees with the kernel\n",
            run.name
        );
        for (section, problems) in &self.0 {
            let _ = writeln!(msg, "{section}:");
            for p in problems {
                let _ = writeln!(msg, "  {p}");
            }
        }
        let _ = writeln!(
            msg,
            "guest files: {} (scan.json, iommu.json, truth.txt, dmesg.txt); console: {}",
            run.out.display(),
            run.serial_log.display()
        );
        let truth = fs::read_to_string(run.out.join("truth.txt")).unwrap_or_default();
        let _ = write!(msg, "--- truth.txt ---\n{truth}");
        panic!("{msg}");
    }
}

/// `v[key]` as a string, or `None` for null/absent.
pub fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// `v[key]` as a list of strings (empty when absent).
pub fn str_list(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The `gpus[]` entry for `address`.
pub fn gpu<'a>(scan: &'a Value, address: &str) -> &'a Value {
    array(scan, "gpus")
        .iter()
        .find(|g| str_field(g, "address") == Some(address))
        .unwrap_or_else(|| {
            panic!(
                "no gpus[] entry for {address} in\n{}",
                serde_json::to_string_pretty(scan).unwrap_or_default()
            )
        })
}

/// Addresses in `scan.gpus[]`.
pub fn gpu_addresses(scan: &Value) -> BTreeSet<String> {
    array(scan, "gpus")
        .iter()
        .filter_map(|g| str_field(g, "address").map(str::to_owned))
        .collect()
}

/// Every PCI function in the truth appears in `devices[]` with the same class, ids,
/// subsystem ids, driver, IOMMU group, `boot_vga` and `rom`; and `devices[]` has nothing
/// else.
pub fn devices_match_truth(run: &GuestRun, scan: &Value, findings: &mut Findings) {
    let truth = &run.truth;
    let mut problems = Vec::new();
    let devices = array(scan, "devices");
    let mut seen = BTreeSet::new();
    for d in devices {
        let Some(addr) = str_field(d, "address") else {
            problems.push(format!("devices[] entry without address: {d}"));
            continue;
        };
        seen.insert(addr.to_owned());
        match truth.devices.get(addr) {
            Some(t) => compare_device(t, d, &mut problems),
            None => problems.push(format!("{addr} is in devices[] but not in sysfs")),
        }
    }
    for addr in truth.devices.keys().filter(|a| !seen.contains(*a)) {
        problems.push(format!("{addr} is in sysfs but missing from devices[]"));
    }
    findings.add("devices[] vs sysfs", problems);
}

fn compare_device(t: &PciFunction, d: &Value, problems: &mut Vec<String>) {
    let a = &t.address;
    let mut eq = |field: &str, got: Option<String>, want: Option<String>| {
        if got != want {
            problems.push(format!("{a}: {field} is {got:?}, kernel says {want:?}"));
        }
    };
    let s = |k: &str| str_field(d, k).map(str::to_owned);
    eq("class", s("class"), Some(t.class.clone()));
    eq("vendor_id", s("vendor_id"), Some(t.vendor.clone()));
    eq("device_id", s("device_id"), Some(t.device.clone()));
    eq(
        "subsystem_vendor_id",
        s("subsystem_vendor_id"),
        Some(t.subvendor.clone()),
    );
    eq(
        "subsystem_device_id",
        s("subsystem_device_id"),
        Some(t.subdevice.clone()),
    );
    eq("driver", s("driver"), t.driver.clone());
    let text = |k: &str, f: fn(&Value) -> Option<String>| d.get(k).and_then(f);
    eq(
        "iommu_group",
        text("iommu_group", |v| v.as_u64().map(|g| g.to_string())),
        t.group.map(|g| g.to_string()),
    );
    eq(
        "boot_vga",
        text("boot_vga", |v| v.as_bool().map(|b| b.to_string())),
        t.boot_vga.map(|b| b.to_string()),
    );
    eq(
        "rom",
        text("rom", |v| v.as_bool().map(|b| b.to_string())),
        Some(t.rom.to_string()),
    );
}

/// `iommu_groups[]` of `doc` (the scan or `exliar iommu --json`, named by `label`) equals
/// `/sys/kernel/iommu_groups`: same ids, same `devices`, and `endpoints` = the members
/// that are not bridges; and `iommu` (`enabled`, `units`, `group_count`) matches
/// `/sys/kernel/iommu_groups` and `/sys/class/iommu`.
pub fn groups_match_truth(run: &GuestRun, doc: &Value, label: &str, findings: &mut Findings) {
    let truth = &run.truth;
    let mut problems = Vec::new();
    let mut got = BTreeMap::new();
    for g in array(doc, "iommu_groups") {
        let Some(id) = g.get("id").and_then(Value::as_u64) else {
            problems.push(format!("iommu_groups[] entry without numeric id: {g}"));
            continue;
        };
        if got.insert(id, g).is_some() {
            problems.push(format!("group {id} listed twice"));
        }
    }
    for (id, group) in &truth.groups {
        let Some(g) = got.get(&u64::from(*id)) else {
            problems.push(format!(
                "group {id} {:?} missing from iommu_groups[]",
                group.members
            ));
            continue;
        };
        let members = sorted(str_list(g, "devices"));
        if members != group.members {
            problems.push(format!(
                "group {id}: devices {members:?}, kernel says {:?}",
                group.members
            ));
        }
        let endpoints: Vec<String> = group
            .members
            .iter()
            .filter(|m| {
                truth
                    .devices
                    .get(*m)
                    .is_none_or(|d| !d.is_group_infrastructure())
            })
            .cloned()
            .collect();
        let got_endpoints = sorted(str_list(g, "endpoints"));
        if got_endpoints != endpoints {
            problems.push(format!(
                "group {id}: endpoints {got_endpoints:?}, expected (members less bridges) {endpoints:?}"
            ));
        }
    }
    for id in got
        .keys()
        .filter(|id| u32::try_from(**id).map_or(true, |id| !truth.groups.contains_key(&id)))
    {
        problems.push(format!(
            "group {id} is in iommu_groups[] but not in the kernel"
        ));
    }
    let iommu = doc.get("iommu").unwrap_or(&Value::Null);
    let enabled = iommu.get("enabled").and_then(Value::as_bool);
    if enabled != Some(!truth.groups.is_empty()) {
        problems.push(format!(
            "iommu.enabled is {enabled:?}, the kernel has {} groups",
            truth.groups.len()
        ));
    }
    let units = sorted(str_list(iommu, "units"));
    if units != truth.iommu_units {
        problems.push(format!(
            "iommu.units is {units:?}, /sys/class/iommu has {:?}",
            truth.iommu_units
        ));
    }
    let count = iommu.get("group_count").and_then(Value::as_u64);
    if count != u64::try_from(truth.groups.len()).ok() {
        problems.push(format!(
            "iommu.group_count is {count:?}, the kernel has {}",
            truth.groups.len()
        ));
    }
    findings.add(
        format!("{label}: iommu_groups[]/iommu vs /sys/kernel/iommu_groups"),
        problems,
    );
}

/// Every display controller the kernel lists is in `gpus[]`, with matching ids, driver,
/// group and kind, and its `functions`/`group_peers`/`identical_ids_with` agree with the
/// topology: functions = the display's slot siblings (itself included); group peers = the
/// rest of its group less bridges; identical ids = other displays with the same vendor:device.
pub fn gpus_match_truth(run: &GuestRun, scan: &Value, findings: &mut Findings) {
    let truth = &run.truth;
    let mut problems = Vec::new();
    let want: BTreeSet<String> = truth.displays().map(|d| d.address.clone()).collect();
    let got = gpu_addresses(scan);
    if want != got {
        problems.push(format!(
            "gpus[] lists {got:?}, the kernel's display controllers are {want:?}"
        ));
    }
    for d in truth.displays() {
        let Some(g) = array(scan, "gpus")
            .iter()
            .find(|g| str_field(g, "address") == Some(d.address.as_str()))
        else {
            continue;
        };
        let a = &d.address;
        let mut eq = |field: &str, got: String, want: String| {
            if got != want {
                problems.push(format!("gpu {a}: {field} is {got}, expected {want}"));
            }
        };
        eq(
            "vendor_id",
            format!("{:?}", str_field(g, "vendor_id")),
            format!("{:?}", Some(&d.vendor)),
        );
        eq(
            "device_id",
            format!("{:?}", str_field(g, "device_id")),
            format!("{:?}", Some(&d.device)),
        );
        eq(
            "driver",
            format!("{:?}", str_field(g, "driver")),
            format!("{:?}", d.driver.as_deref()),
        );
        eq(
            "iommu_group",
            format!("{:?}", g.get("iommu_group").and_then(Value::as_u64)),
            format!("{:?}", d.group.map(u64::from)),
        );
        eq(
            "kind",
            format!("{:?}", str_field(g, "kind")),
            format!("{:?}", Some(expected_kind(d))),
        );
        eq(
            "functions",
            format!("{:?}", sorted(str_list(g, "functions"))),
            format!("{:?}", slot_functions(truth, a)),
        );
        eq(
            "group_peers",
            format!("{:?}", sorted(str_list(g, "group_peers"))),
            format!("{:?}", group_peers(truth, a)),
        );
        eq(
            "identical_ids_with",
            format!("{:?}", sorted(str_list(g, "identical_ids_with"))),
            format!("{:?}", identical_ids(truth, d)),
        );
        eq(
            "isolation",
            format!("{:?}", str_field(g, "isolation")),
            format!("{:?}", Some(expected_isolation(truth, a))),
        );
    }
    findings.add("gpus[] vs the topology", problems);
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// `vga` (0x0300), `3d` (0x0302) or `display` (anything else in class 0x03).
pub fn expected_kind(d: &PciFunction) -> &'static str {
    match d.class_prefix() {
        0x0300 => "vga",
        0x0302 => "3d",
        _ => "display",
    }
}

/// The functions sharing `address`'s bus and slot, itself included, sorted.
pub fn slot_functions(truth: &Truth, address: &str) -> Vec<String> {
    let slot = address.rsplit_once('.').map_or(address, |(s, _)| s);
    truth
        .devices
        .keys()
        .filter(|a| a.rsplit_once('.').is_some_and(|(s, _)| s == slot))
        .cloned()
        .collect()
}

/// The members of `address`'s IOMMU group that are neither functions of its slot nor
/// bridges, sorted (empty without a group).
pub fn group_peers(truth: &Truth, address: &str) -> Vec<String> {
    let own = slot_functions(truth, address);
    let Some(group) = truth.group_of(address) else {
        return Vec::new();
    };
    group
        .members
        .iter()
        .filter(|m| !own.contains(*m))
        .filter(|m| {
            truth
                .devices
                .get(*m)
                .is_none_or(|d| !d.is_group_infrastructure())
        })
        .cloned()
        .collect()
}

/// Other display controllers with the same vendor:device, sorted.
pub fn identical_ids(truth: &Truth, d: &PciFunction) -> Vec<String> {
    truth
        .displays()
        .filter(|o| o.address != d.address && o.ids() == d.ids())
        .map(|o| o.address.clone())
        .collect()
}

/// `no-iommu` without groups; `isolated` when the group holds only the display's own
/// slot functions (and bridges); `shared` otherwise.
pub fn expected_isolation(truth: &Truth, address: &str) -> &'static str {
    if truth.groups.is_empty() {
        "no-iommu"
    } else if truth.group_of(address).is_none() {
        "unknown"
    } else if group_peers(truth, address).is_empty() {
        "isolated"
    } else {
        "shared"
    }
}

/// `recommendation.passthrough` and `recommendation.host`.
pub fn recommendation(scan: &Value) -> (Option<String>, Option<String>) {
    let r = scan.get("recommendation").unwrap_or(&Value::Null);
    (
        str_field(r, "passthrough").map(str::to_owned),
        str_field(r, "host").map(str::to_owned),
    )
}

/// Runs the host's exliar on the guest's snapshot and compares with the guest's scan.
pub fn snapshot_roundtrip(run: &GuestRun, scan: &Value, findings: &mut Findings) {
    let snap = run.out.join("snap.tar");
    assert!(
        snap.is_file(),
        "scenario `{}`: the guest wrote no snap.tar; `exliar snapshot` stderr:\n{}",
        run.name,
        run.exliar("snapshot", "snapshot /out/snap.tar").stderr
    );
    let root = run.dir.join("snapshot-root");
    if root.exists() {
        fs::remove_dir_all(&root).expect("removing old snapshot-root");
    }
    fs::create_dir_all(&root).expect("creating snapshot-root");
    let out = Command::new("tar")
        .arg("-xf")
        .arg(&snap)
        .arg("-C")
        .arg(&root)
        .output()
        .expect("running tar");
    assert!(
        out.status.success(),
        "extracting {}: {}",
        snap.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let host = harness::host_exliar(&[
        OsStr::new("scan"),
        OsStr::new("--json"),
        OsStr::new("--root"),
        root.as_os_str(),
    ]);
    let host: Value = serde_json::from_str(&host).expect("host exliar scan --json is JSON");
    let (a, b) = (comparable(scan), comparable(&host));
    if a != b {
        let mut diffs = Vec::new();
        json_diff("", &a, &b, &mut diffs);
        findings.add(
            format!(
                "host `exliar scan --json --root {}` vs the guest's scan (guest value, then host value)",
                root.display()
            ),
            diffs,
        );
    }
}

/// The scan without fields that legitimately differ between a live scan and one of a
/// snapshot (where the data came from).
fn comparable(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("source");
    }
    v
}

/// Paths where `a` and `b` differ (at most 40).
pub fn json_diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if out.len() >= 40 || a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => json_diff(&p, va, vb, out),
                    (va, vb) => out.push(format!("{p}: {va:?} vs {vb:?}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                json_diff(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        _ => out.push(format!("{path}: {a} vs {b}")),
    }
}
