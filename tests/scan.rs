//! `exliar scan`, `exliar iommu` and `exliar snapshot` on fixture host trees.

mod common;

use common::*;
use std::path::{Path, PathBuf};

use exliar::host::HostRoot;
use exliar::host::sysfs::{ConfigHead, load_pci_ids, read_inventory};

/// Every fixture host: human and JSON golden output, JSON valid against the
/// documented schemas.
#[test]
fn fixture_hosts_golden_and_schema() {
    let inv_schema = schema("inventory-1.schema.json");
    let iommu_schema = schema("iommu-1.schema.json");
    let hosts = fixture_hosts();
    assert!(!hosts.is_empty(), "no fixture hosts");
    for h in hosts {
        let name = h
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let out = exliar()
            .args(["scan", "--json", "--root"])
            .arg(&h)
            .output()
            .expect("run exliar");
        assert!(
            out.status.success(),
            "{name}: scan --json failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc = json(&out);
        assert_valid(&inv_schema, &doc, &format!("{name}: scan --json"));
        insta::assert_snapshot!(format!("scan-json-{name}"), redact(&stdout(&out), &h));

        let out = exliar()
            .args(["scan", "--root"])
            .arg(&h)
            .output()
            .expect("run exliar");
        assert!(out.status.success(), "{name}: scan failed");
        insta::assert_snapshot!(format!("scan-{name}"), redact(&stdout(&out), &h));

        let out = exliar()
            .args(["iommu", "--json", "--root"])
            .arg(&h)
            .output()
            .expect("run exliar");
        assert!(out.status.success(), "{name}: iommu --json failed");
        assert_valid(&iommu_schema, &json(&out), &format!("{name}: iommu --json"));
        let out = exliar()
            .args(["iommu", "--root"])
            .arg(&h)
            .output()
            .expect("run exliar");
        insta::assert_snapshot!(format!("iommu-{name}"), redact(&stdout(&out), &h));
    }
}

/// The descriptor-based fast path and the recording path (used by
/// snapshots) read the same inventory.
#[test]
fn fast_and_recording_readers_agree() {
    for h in fixture_hosts() {
        let fast_root = HostRoot::new(&h);
        let fast = read_inventory(&fast_root, &load_pci_ids(&fast_root)).expect("fast read");
        let rec_root = HostRoot::recording(&h);
        let rec = read_inventory(&rec_root, &load_pci_ids(&rec_root)).expect("recording read");
        assert_eq!(fast, rec, "{}", h.display());
    }
}

/// The report without where it was read from: `source`, and the root in
/// warning locations.
fn without_source(mut v: serde_json::Value) -> serde_json::Value {
    let root = v["source"]["root"].as_str().unwrap_or("").to_string();
    if let Some(o) = v.as_object_mut() {
        o.remove("source");
    }
    for w in v["warnings"].as_array_mut().into_iter().flatten() {
        if let Some(loc) = w["location"].as_str() {
            w["location"] = serde_json::Value::from(loc.replacen(&root, "[ROOT]", 1));
        }
    }
    v
}

/// snapshot → --root reproduces the same report, as a folder and as a tar.
#[test]
fn snapshot_round_trips() {
    for h in fixture_hosts() {
        let original = json(
            &exliar()
                .args(["scan", "--json", "--root"])
                .arg(&h)
                .output()
                .expect("scan"),
        );
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("snap");
        exliar()
            .args(["snapshot", "--root"])
            .arg(&h)
            .arg(&dir)
            .assert()
            .success();
        let again = json(
            &exliar()
                .args(["scan", "--json", "--root"])
                .arg(&dir)
                .output()
                .expect("scan"),
        );
        assert_eq!(
            without_source(original.clone()),
            without_source(again),
            "folder snapshot of {}",
            h.display()
        );

        let tar = tmp.path().join("snap.tar");
        exliar()
            .args(["snapshot", "--root"])
            .arg(&h)
            .arg(&tar)
            .assert()
            .success();
        let unpacked = tmp.path().join("unpacked");
        std::fs::create_dir(&unpacked).expect("mkdir");
        let file = std::fs::File::open(&tar).expect("open tar");
        tar::Archive::new(file).unpack(&unpacked).expect("unpack");
        let again = json(
            &exliar()
                .args(["scan", "--json", "--root"])
                .arg(&unpacked)
                .output()
                .expect("scan"),
        );
        assert_eq!(
            without_source(original),
            without_source(again),
            "tar snapshot of {}",
            h.display()
        );
    }
}

/// A snapshot holds only what exliar reads, and refuses a non-empty target.
#[test]
fn snapshot_is_minimal_and_careful() {
    let h = host("devbox-virtio");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("snap");
    exliar()
        .args(["snapshot", "--root"])
        .arg(&h)
        .arg(&dir)
        .assert()
        .success();
    let mut files = Vec::new();
    for e in walk(&dir) {
        let rel = e.strip_prefix(&dir).expect("prefix").display().to_string();
        files.push(rel);
    }
    assert!(files.iter().any(|f| f == "exliar-snapshot.json"));
    assert!(
        files
            .iter()
            .all(|f| !f.contains("modalias") && !f.contains("resource") && !f.contains("config")),
        "{files:?}"
    );
    // Refuses to write into a folder with something in it.
    exliar()
        .args(["snapshot", "--root"])
        .arg(&h)
        .arg(&dir)
        .assert()
        .code(2);
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            out.push(path.clone());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk(&path));
            }
        }
    }
    out
}

/// This development machine: a VM with virtio devices, no GPU, no IOMMU.
#[test]
fn devbox_has_no_gpu_and_no_iommu() {
    let doc = json(
        &exliar()
            .args(["scan", "--json", "--root"])
            .arg(host("devbox-virtio"))
            .output()
            .expect("scan"),
    );
    assert_eq!(doc["iommu"]["enabled"], false);
    assert_eq!(doc["gpus"].as_array().map(Vec::len), Some(0));
    assert_eq!(doc["recommendation"]["mode"], "none");
    let devices = doc["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 6);
    assert!(
        devices
            .iter()
            .filter(|d| d["vendor_id"] == "1af4")
            .all(|d| d["driver"] == "virtio-pci")
    );
    assert_eq!(doc["warnings"].as_array().map(Vec::len), Some(0));
}

/// Garbled values, dangling links, binary garbage: warnings naming the
/// file, the rest of the report, exit 0. A root with no PCI tree: exit 2.
#[test]
fn bad_input_gives_warnings_not_panics() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = tmp.path();
    let dev = r.join("sys/devices/pci0000:00/0000:00:02.0");
    std::fs::create_dir_all(&dev).expect("mkdir");
    std::fs::create_dir_all(r.join("sys/bus/pci/devices")).expect("mkdir");
    std::os::unix::fs::symlink(
        "../../../devices/pci0000:00/0000:00:02.0",
        r.join("sys/bus/pci/devices/0000:00:02.0"),
    )
    .expect("link");
    std::fs::write(dev.join("class"), "0x0300zz\n").expect("w");
    std::fs::write(dev.join("vendor"), [0xff, 0xfe, 0x00, 0x01]).expect("w");
    std::fs::write(dev.join("device"), "0x1401\n").expect("w");
    std::os::unix::fs::symlink("../../../nowhere/driver", dev.join("driver")).expect("link");
    std::os::unix::fs::symlink(
        "../../../kernel/iommu_groups/notanumber",
        dev.join("iommu_group"),
    )
    .expect("link");
    // A dangling device link and a non-address entry.
    std::os::unix::fs::symlink(
        "../../../devices/pci0000:00/0000:00:09.0",
        r.join("sys/bus/pci/devices/0000:00:09.0"),
    )
    .expect("link");
    std::fs::write(r.join("sys/bus/pci/devices/garbage"), b"\x00\x01").expect("w");

    let out = exliar()
        .args(["scan", "--json", "--root"])
        .arg(r)
        .output()
        .expect("scan");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    let warnings: Vec<String> = doc["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| {
            format!(
                "{}: {}",
                w["location"].as_str().unwrap_or(""),
                w["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    let has = |needle: &str| warnings.iter().any(|w| w.contains(needle));
    assert!(has("0000:00:02.0/class: garbled"), "{warnings:?}");
    assert!(has("0000:00:02.0/vendor: garbled"), "{warnings:?}");
    assert!(has("0000:00:09.0"), "{warnings:?}");
    assert!(has("garbage: not a PCI address"), "{warnings:?}");
    let devices = doc["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 2, "both addresses listed");
    assert_eq!(devices[0]["device_id"], "1401");
    assert!(devices[0]["class"].is_null() && devices[0]["vendor_id"].is_null());
    // Human output too, and warnings go to stderr.
    let out = exliar()
        .args(["scan", "--root"])
        .arg(r)
        .output()
        .expect("scan");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("garbled"));

    let empty = tempfile::tempdir().expect("tempdir");
    let out = exliar()
        .args(["scan", "--root"])
        .arg(empty.path())
        .output()
        .expect("scan");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sys/bus/pci/devices"), "{err}");
}

/// Each tree built from a real machine's listing gives the same GPU
/// analysis and recommendation through `scan --root` as `analyze` gives on
/// the listing itself (whose expectations are checked in tests/analyze.rs).
#[test]
fn hw_fixture_trees_agree_with_analyze() {
    let Some(shared) = shared_fixtures() else {
        return;
    };
    let dumps = shared.join("hw-dumps");
    let mut checked = 0;
    for h in fixture_hosts() {
        let name = h
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(num) = name.strip_prefix("hw").and_then(|n| n.get(..2)) else {
            continue;
        };
        let mut files: Vec<_> = std::fs::read_dir(&dumps)
            .expect("hw-dumps")
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|f| f.to_string_lossy().starts_with(&format!("{num}-")))
            })
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{name}: no dump {num}-*");
        let scanned = json(
            &exliar()
                .args(["scan", "--json", "--root"])
                .arg(&h)
                .output()
                .expect("scan"),
        );
        let analyzed = json(
            &exliar()
                .args(["analyze", "--json"])
                .args(&files)
                .output()
                .expect("analyze"),
        );
        // Names may differ: a listing can name a device without naming its
        // vendor, which a pci.ids file cannot express. A listing has no
        // driver-stack facts (`stack`, scan only).
        let strip = |v: &serde_json::Value| {
            let mut v = v.clone();
            for g in v.as_array_mut().into_iter().flatten() {
                if let Some(o) = g.as_object_mut() {
                    o.remove("name");
                    o.remove("stack");
                }
            }
            v
        };
        // A dump without IOMMU facts leaves isolation unknown; a sysfs tree has to take
        // a stance (no `iommu_groups`: off). Those two fields are compared only where
        // the dump knows.
        let unknown = |v: &serde_json::Value| {
            let mut v = strip(v);
            let known = strip(&analyzed["gpus"]);
            for (g, a) in v
                .as_array_mut()
                .into_iter()
                .flatten()
                .zip(known.as_array().into_iter().flatten())
            {
                if a["isolation"] == "unknown"
                    && let Some(o) = g.as_object_mut()
                {
                    o.remove("isolation");
                    o.remove("verdict");
                }
            }
            v
        };
        assert_eq!(
            unknown(&scanned["gpus"]),
            unknown(&analyzed["gpus"]),
            "{name}: gpus differ"
        );
        for k in ["mode", "passthrough", "host"] {
            assert_eq!(
                scanned["recommendation"][k], analyzed["recommendation"][k],
                "{name}: recommendation {k} differs"
            );
        }
        assert_eq!(
            scanned["iommu_groups"], analyzed["iommu_groups"],
            "{name}: groups differ"
        );
        assert_eq!(
            scanned["devices"].as_array().map(Vec::len),
            analyzed["devices"].as_array().map(Vec::len),
            "{name}: device count"
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} machine trees checked");
}

/// The identity fields a device directory's `uevent` and attribute files
/// say: vendor, device, class, revision, subsystem vendor and device.
fn attribute_identity(dir: &Path) -> Option<ConfigHead> {
    use exliar::host::sysfs::{parse_hex, parse_uevent};
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).ok();
    let hex = |n: &str| read(n).and_then(|t| parse_hex(&t));
    let ev = read("uevent").map(|t| parse_uevent(&t)).unwrap_or_default();
    let (v, d) = match ev.id {
        Some(x) => x,
        None => (
            u16::try_from(hex("vendor")?).ok()?,
            u16::try_from(hex("device")?).ok()?,
        ),
    };
    let class = ev.class.or_else(|| hex("class"))?;
    let rev = u8::try_from(hex("revision")?).ok()?;
    let subsys = ev.subsys.or_else(|| {
        Some((
            u16::try_from(hex("subsystem_vendor")?).ok()?,
            u16::try_from(hex("subsystem_device")?).ok()?,
        ))
    });
    Some(ConfigHead {
        vendor: v,
        device: d,
        class,
        revision: rev,
        subsys,
    })
}

/// Give every function of a copied host tree a `config` file made from its
/// attribute files, in every shape the reader meets: the 64 bytes an
/// unprivileged reader gets, 256 and 4096 bytes (root), too short, a
/// function that does not answer (vendor 0xffff), a folder in its place,
/// none. Returns how many hold a usable header.
fn write_config_files(root: &Path) -> usize {
    let devices = root.join("sys/bus/pci/devices");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&devices)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    let mut usable = 0;
    for (i, link) in names.iter().enumerate() {
        let Ok(dir) = std::fs::canonicalize(link) else {
            continue;
        };
        if !dir.starts_with(root) {
            continue;
        }
        let Some(ConfigHead {
            vendor: v,
            device: d,
            class,
            revision: rev,
            subsys,
        }) = attribute_identity(&dir)
        else {
            continue;
        };
        let header: u8 = match class >> 8 {
            0x0604 | 0x0609 => 1,
            0x0607 => 2,
            _ => 0,
        };
        let mut cfg = vec![0u8; 64];
        cfg[0..2].copy_from_slice(&v.to_le_bytes());
        cfg[2..4].copy_from_slice(&d.to_le_bytes());
        cfg[8] = rev;
        cfg[9] = class as u8;
        cfg[10] = (class >> 8) as u8;
        cfg[11] = (class >> 16) as u8;
        // Multi-function bit set on odd functions: it must be ignored.
        cfg[14] = header | if i % 2 == 1 { 0x80 } else { 0 };
        if header == 0 {
            // A type-0 function without subsystem ids in its attribute
            // files would read 0000:0000 here; leave it without config.
            let Some((sv, sd)) = subsys else { continue };
            cfg[0x2c..0x2e].copy_from_slice(&sv.to_le_bytes());
            cfg[0x2e..0x30].copy_from_slice(&sd.to_le_bytes());
        } else {
            // Where a bridge keeps them is not where config says here.
            cfg[0x2c..0x30].copy_from_slice(&[0xaa; 4]);
        }
        let path = dir.join("config");
        let _ = std::fs::remove_file(&path);
        match i % 7 {
            0 | 1 => {
                std::fs::write(&path, &cfg).expect("write config");
                usable += 1;
            }
            2 => {
                cfg.resize(256, 0);
                std::fs::write(&path, &cfg).expect("write config");
                usable += 1;
            }
            3 => {
                cfg.resize(4096, 0xff);
                std::fs::write(&path, &cfg).expect("write config");
                usable += 1;
            }
            4 => std::fs::write(&path, &cfg[..48]).expect("write config"),
            5 => {
                cfg[0..2].copy_from_slice(&[0xff, 0xff]);
                std::fs::write(&path, &cfg).expect("write config");
            }
            _ => std::fs::create_dir(&path).expect("mkdir config"),
        }
    }
    usable
}

fn read_both_ways(root: &Path) -> (exliar::model::Inventory, exliar::model::Inventory) {
    use exliar::host::sysfs::{ReadOptions, read_inventory_with};
    let host = HostRoot::new(root);
    let ids = load_pci_ids(&host);
    let config = read_inventory_with(
        &host,
        &ids,
        ReadOptions {
            config_space: true,
            ..ReadOptions::default()
        },
    )
    .expect("read with config");
    let attrs = read_inventory_with(
        &host,
        &ids,
        ReadOptions {
            config_space: false,
            ..ReadOptions::default()
        },
    )
    .expect("read with attribute files");
    (config, attrs)
}

/// Reading the identity fields from `config` gives the same inventory as
/// reading `uevent` and the attribute files, on every fixture host as
/// captured (no `config`) and with `config` files of every shape added,
/// on the benchmarks' synthetic tree, and on this machine's own sysfs.
#[test]
fn config_space_and_attribute_files_agree() {
    let mut usable = 0;
    for h in fixture_hosts() {
        let (config, attrs) = read_both_ways(&h);
        assert_eq!(config, attrs, "{} as captured", h.display());
        let tmp = tempfile::tempdir().expect("tempdir");
        let copy = tmp.path().join("host");
        copy_tree(&h, &copy);
        let copy = std::fs::canonicalize(&copy).expect("canonical");
        usable += write_config_files(&copy);
        let (config, attrs) = read_both_ways(&copy);
        assert_eq!(config, attrs, "{} with config files", h.display());
    }
    assert!(usable > 100, "only {usable} usable config files written");

    let tmp = tempfile::tempdir().expect("tempdir");
    let synth = tmp.path().join("synthetic");
    match std::process::Command::new("python3")
        .arg(manifest_dir().join("benches/gen-tree.py"))
        .arg(&synth)
        .arg("300")
        .output()
    {
        Ok(o) if o.status.success() => {
            let (config, attrs) = read_both_ways(&synth);
            assert_eq!(config.devices.len(), 300);
            assert_eq!(config, attrs, "synthetic tree");
        }
        _ => eprintln!("skipping the synthetic tree: no python3"),
    }

    if std::fs::read_dir("/sys/bus/pci/devices").is_ok_and(|mut d| d.next().is_some()) {
        let (config, attrs) = read_both_ways(Path::new("/"));
        assert_eq!(config.devices, attrs.devices, "this machine's sysfs");
    }
}
