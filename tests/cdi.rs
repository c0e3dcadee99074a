//! CDI specs: what exliar generates is accepted by crates.io's
//! `container-device-interface` (read file by file with `read_spec`, its
//! cache hides errors) and declares exactly that crate's minimum version; the
//! upstream JSON schema is a second, weaker check; exliar's validator
//! rejects what the crate rejects; `cdi validate` / `cdi list` goldens.

#![allow(clippy::unwrap_used)] // a failed setup step is a failed test

mod common;

use common::cdi::{oracle_check, upstream_schema};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use exliar::cdi::spec::{self, Version};
use exliar::cdi::{Edits, GPU_KIND, Hook, Input, InputDevice, Mount, Node, VFIO_KIND, generate};
use proptest::prelude::*;

fn node(host: &str, major: u32, minor: u32, mode: u32, gid: u32) -> Node {
    Node {
        host_path: host.into(),
        container_path: host.into(),
        kind: 'c',
        major,
        minor,
        mode,
        uid: 0,
        gid,
    }
}

fn ro(path: &str) -> Mount {
    Mount {
        host_path: path.into(),
        container_path: path.into(),
        options: vec!["ro".into(), "nosuid".into(), "nodev".into(), "bind".into()],
    }
}

/// NVIDIA-like: per-GPU /dev/nvidiaN, shared control nodes, the driver's
/// libraries as read-only mounts and an ldcache hook.
fn nvidia(gpus: usize) -> Input {
    let devices = (0..gpus)
        .map(|i| InputDevice {
            names: vec![
                i.to_string(),
                format!("0000:{:02x}:00.0", i + 1),
                format!("GPU-4e5a0f62-bb1c-7d8e-9a3b-00000000000{i}"),
            ],
            nodes: vec![node(&format!("/dev/nvidia{i}"), 195, i as u32, 0o666, 0)],
            env: vec![("NVIDIA_VISIBLE_DEVICES".into(), i.to_string())],
            ..InputDevice::default()
        })
        .collect();
    Input {
        vendor_kind: GPU_KIND.into(),
        devices,
        common: Edits {
            nodes: vec![
                node("/dev/nvidiactl", 195, 255, 0o666, 0),
                node("/dev/nvidia-uvm", 508, 0, 0o666, 0),
                node("/dev/nvidia-uvm-tools", 508, 1, 0o666, 0),
            ],
            env: vec![],
            mounts: vec![
                ro("/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14"),
                ro("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.14"),
                ro("/usr/bin/nvidia-smi"),
                ro("/lib/firmware/nvidia/550.54.14/gsp_ga10x.bin"),
            ],
            hooks: vec![Hook {
                hook_name: "createContainer".into(),
                path: "/usr/bin/nvidia-cdi-hook".into(),
                args: vec![
                    "nvidia-cdi-hook".into(),
                    "update-ldcache".into(),
                    "--folder".into(),
                    "/usr/lib/x86_64-linux-gnu".into(),
                ],
                env: vec![],
            }],
        },
        annotations: BTreeMap::new(),
    }
}

/// AMD: /dev/kfd shared, each card's render node (gid render = 105, 0660).
fn amd() -> Input {
    Input {
        vendor_kind: GPU_KIND.into(),
        devices: vec![
            InputDevice {
                names: vec!["0".into(), "0000:03:00.0".into()],
                nodes: vec![
                    node("/dev/kfd", 235, 0, 0o660, 105),
                    node("/dev/dri/renderD128", 226, 128, 0o660, 105),
                ],
                env: vec![("ROCR_VISIBLE_DEVICES".into(), "0".into())],
                ..InputDevice::default()
            },
            InputDevice {
                names: vec!["1".into(), "0000:0a:00.0".into()],
                nodes: vec![
                    node("/dev/kfd", 235, 0, 0o660, 105),
                    node("/dev/dri/renderD129", 226, 129, 0o660, 105),
                    node("/dev/dri/card1", 226, 1, 0o660, 44),
                ],
                env: vec![("ROCR_VISIBLE_DEVICES".into(), "1".into())],
                ..InputDevice::default()
            },
        ],
        ..Input::default()
    }
}

/// Intel: the render node only, seen in the container under another path
/// (hostPath, 0.5.0).
fn intel() -> Input {
    let mut n = node("/dev/dri/renderD130", 226, 130, 0o660, 105);
    n.container_path = "/dev/dri/renderD128".into();
    Input {
        vendor_kind: GPU_KIND.into(),
        devices: vec![InputDevice {
            names: vec!["igpu".into()],
            nodes: vec![n],
            ..InputDevice::default()
        }],
        ..Input::default()
    }
}

/// A letter-named device with nothing that needs more than the base.
fn plain() -> Input {
    Input {
        vendor_kind: GPU_KIND.into(),
        devices: vec![InputDevice {
            names: vec!["card".into()],
            nodes: vec![node("/dev/dri/renderD128", 226, 128, 0o660, 105)],
            ..InputDevice::default()
        }],
        ..Input::default()
    }
}

/// VFIO: the container node and the group node per card.
fn vfio() -> Input {
    let devices = [(0, "0000:01:00.0", 14), (1, "0000:21:00.0", 27)]
        .into_iter()
        .map(|(i, addr, group)| InputDevice {
            names: vec![i.to_string(), addr.into()],
            nodes: vec![
                node("/dev/vfio/vfio", 10, 196, 0o666, 0),
                node(&format!("/dev/vfio/{group}"), 511, i, 0o600, 0),
            ],
            ..InputDevice::default()
        })
        .collect();
    Input {
        vendor_kind: VFIO_KIND.into(),
        devices,
        ..Input::default()
    }
}

fn with_annotations(mut i: Input, device_too: bool) -> Input {
    i.annotations
        .insert("exliar.dev/generator".into(), "exliar".into());
    if device_too {
        i.devices[0]
            .annotations
            .insert("exliar.dev/pci".into(), "0000-01-00.0".into());
    }
    i
}

/// (name, input, pin, the version it must declare)
fn matrix() -> Vec<(&'static str, Input, Option<Version>, &'static str)> {
    let v = |s: &str| Version::parse(s);
    vec![
        ("nvidia-1", nvidia(1), None, "0.5.0"),
        ("nvidia-2", nvidia(2), None, "0.5.0"),
        (
            "nvidia-annotated",
            with_annotations(nvidia(2), false),
            None,
            "0.6.0",
        ),
        ("nvidia-pin-0.8", nvidia(2), v("0.8.0"), "0.8.0"),
        ("amd", amd(), None, "0.5.0"),
        (
            "amd-device-annotations",
            with_annotations(amd(), true),
            None,
            "0.6.0",
        ),
        ("amd-pin-0.7", amd(), v("0.7.0"), "0.7.0"),
        ("intel-hostpath", intel(), None, "0.5.0"),
        ("plain", plain(), None, "0.3.0"),
        (
            "plain-annotated",
            with_annotations(plain(), true),
            None,
            "0.6.0",
        ),
        ("plain-pin-1.1", plain(), v("1.1.0"), "1.1.0"),
        ("vfio", vfio(), None, "0.5.0"),
        ("vfio-pin-1.0", vfio(), v("1.0.0"), "1.0.0"),
    ]
}

#[test]
fn generated_specs_are_accepted_by_the_crate_at_its_minimum_version() {
    let dir = tempfile::tempdir().unwrap();
    let schema = upstream_schema();
    if let Some(s) = &schema {
        // The schema is live (its refs resolve): it refuses a device
        // without edits and a spec without devices.
        for bad in [
            serde_json::json!({"cdiVersion": "0.3.0", "kind": "a.com/b", "devices": [{"name": "x"}]}),
            serde_json::json!({"cdiVersion": "0.3.0", "kind": "a.com/b"}),
        ] {
            assert!(!s.is_valid(&bad), "the upstream schema accepts {bad}");
        }
    }
    for (name, input, pin, want) in matrix() {
        let spec = generate(&input, pin).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(spec.cdi_version, want, "{name}: declared version");
        let text = spec::to_json(&spec);
        assert!(text.ends_with("}\n"), "{name}: trailing newline");
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, &text).unwrap();
        let min = oracle_check(&path)
            .unwrap_or_else(|e| panic!("{name}: the crate refuses it: {e}\n{text}"));
        assert_eq!(
            min,
            spec::minimum_version(&spec).to_string(),
            "{name}: minimum version"
        );
        if pin.is_none() {
            assert_eq!(
                min, spec.cdi_version,
                "{name}: declares the crate's minimum"
            );
        }
        assert!(spec::validate(&spec).is_empty(), "{name}");
        if let Some(s) = &schema {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            common::assert_valid(s, &v, name);
        }
    }
}

#[test]
fn every_name_and_all_and_explicit_modes() {
    let spec = generate(&amd(), None).unwrap();
    let names: Vec<&str> = spec.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["0", "1", "0000:03:00.0", "0000:0a:00.0", "all"]);
    let all = &spec.devices[4].container_edits;
    let paths: Vec<&str> = all.device_nodes.iter().map(|n| n.path.as_str()).collect();
    // kfd once, both render nodes, the card node of device 1.
    assert_eq!(
        paths,
        [
            "/dev/dri/card1",
            "/dev/dri/renderD128",
            "/dev/dri/renderD129",
            "/dev/kfd"
        ]
    );
    assert_eq!(all.env, ["ROCR_VISIBLE_DEVICES=0,1"]);
    for d in &spec.devices {
        for n in &d.container_edits.device_nodes {
            assert!(
                n.file_mode.is_some() && n.gid.is_some() && n.uid.is_some(),
                "{n:?}"
            );
        }
    }
    let kfd = all
        .device_nodes
        .iter()
        .find(|n| n.path == "/dev/kfd")
        .unwrap();
    assert_eq!(
        (kfd.file_mode, kfd.gid, kfd.kind.as_deref()),
        (Some(0o660), Some(105), Some("c"))
    );
    // Deterministic.
    assert_eq!(
        spec::to_json(&spec),
        spec::to_json(&generate(&amd(), None).unwrap())
    );
}

#[test]
fn a_pin_below_the_minimum_is_refused_with_the_reason() {
    let e = generate(&nvidia(1), Version::parse("0.3.0")).unwrap_err();
    assert!(
        e.contains("0.5.0") && e.contains("does not start with a letter"),
        "{e}"
    );
    let e = generate(&with_annotations(plain(), false), Version::parse("0.5.0")).unwrap_err();
    assert!(
        e.contains("needs 0.6.0") && e.contains("annotations"),
        "{e}"
    );
    let e = generate(&plain(), Version::parse("0.9.0")).unwrap_err();
    assert!(e.contains("not a released"), "{e}");
}

#[test]
fn the_generator_refuses_bad_input() {
    let mut i = plain();
    i.vendor_kind = "nvidia.com/gpu".into();
    assert!(generate(&i, None).unwrap_err().contains("exliar.dev"));
    let mut i = plain();
    i.devices[0].names = vec!["all".into()];
    assert!(generate(&i, None).unwrap_err().contains("reserved"));
    let mut i = plain();
    i.devices[0].names = vec!["-x".into()];
    assert!(generate(&i, None).is_err());
    let mut i = amd();
    i.devices[1].names.push("0".into());
    assert!(
        generate(&i, None)
            .unwrap_err()
            .contains("names two devices")
    );
    let mut i = plain();
    i.devices[0].nodes.clear();
    assert!(generate(&i, None).unwrap_err().contains("no edits"));
    let mut i = amd();
    i.devices[1].nodes[0].major = 1;
    assert!(
        generate(&i, None)
            .unwrap_err()
            .contains("two different device nodes")
    );
}

/// Hand-written specs for every version rule: exliar's minimum equals the
/// crate's.
#[test]
fn minimum_version_matches_the_crate_for_every_rule() {
    let base = r#""devices":[{"name":"gpu0","containerEdits":{"env":["A=1"]}}]"#;
    let cases: &[(&str, &str)] = &[
        (
            "base",
            &format!(r#"{{"cdiVersion":"1.1.0","kind":"vendor.com/gpu",{base}}}"#),
        ),
        (
            "mount-type",
            r#"{"cdiVersion":"1.1.0","kind":"vendor.com/gpu","devices":[{"name":"gpu0","containerEdits":{"mounts":[{"hostPath":"/a","containerPath":"/a","type":"bind"}]}}]}"#,
        ),
        (
            "hostpath",
            r#"{"cdiVersion":"1.1.0","kind":"vendor.com/gpu","devices":[{"name":"gpu0","containerEdits":{"deviceNodes":[{"path":"/dev/a","hostPath":"/dev/b"}]}}]}"#,
        ),
        (
            "digit",
            r#"{"cdiVersion":"1.1.0","kind":"vendor.com/gpu","devices":[{"name":"7","containerEdits":{"env":["A=1"]}}]}"#,
        ),
        (
            "annotation",
            &format!(
                r#"{{"cdiVersion":"1.1.0","kind":"vendor.com/gpu","annotations":{{"a":"b"}},{base}}}"#
            ),
        ),
        (
            "device-annotation",
            r#"{"cdiVersion":"1.1.0","kind":"vendor.com/gpu","devices":[{"name":"gpu0","annotations":{"x/y":"z"},"containerEdits":{"env":["A=1"]}}]}"#,
        ),
        (
            "dot-class",
            &format!(r#"{{"cdiVersion":"1.1.0","kind":"vendor.com/a.b",{base}}}"#),
        ),
        (
            "gids",
            &format!(
                r#"{{"cdiVersion":"1.1.0","kind":"vendor.com/gpu","containerEdits":{{"additionalGids":[44]}},{base}}}"#
            ),
        ),
        (
            "rdt",
            &format!(
                r#"{{"cdiVersion":"1.0.0","kind":"vendor.com/gpu","containerEdits":{{"intelRdt":{{"closID":"c"}}}},{base}}}"#
            ),
        ),
        (
            "schemata",
            &format!(
                r#"{{"cdiVersion":"1.1.0","kind":"vendor.com/gpu","containerEdits":{{"intelRdt":{{"schemata":["L3:0=f"]}}}},{base}}}"#
            ),
        ),
        (
            "netdev",
            r#"{"cdiVersion":"1.1.0","kind":"vendor.com/gpu","devices":[{"name":"gpu0","containerEdits":{"netDevices":[{"hostInterfaceName":"eth1","name":"net0"}]}}]}"#,
        ),
    ];
    let want = [
        "0.3.0", "0.4.0", "0.5.0", "0.5.0", "0.6.0", "0.6.0", "0.6.0", "0.7.0", "0.7.0", "1.1.0",
        "1.1.0",
    ];
    let dir = tempfile::tempdir().unwrap();
    for ((name, text), want) in cases.iter().zip(want) {
        let s = spec::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, text).unwrap();
        let min = oracle_check(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(spec::minimum_version(&s).to_string(), min, "{name}");
        assert_eq!(min, want, "{name}");
        assert!(
            spec::validate(&s).is_empty(),
            "{name}: {:?}",
            spec::validate(&s)
        );
    }
}

/// exliar's verdict: true when it rejects the text.
fn exliar_rejects(text: &str) -> bool {
    match spec::parse(text) {
        Err(_) => true,
        Ok(s) => !spec::validate(&s).is_empty(),
    }
}

/// Every JSON file of the probe's cases and the upstream testdata: exliar
/// rejects exactly what the crate rejects.
#[test]
fn validator_agrees_with_the_crate_on_the_shared_cases() {
    let mut dirs = Vec::new();
    let cases = common::manifest_dir().join("../shared/reference/containers/cdi-cases");
    if cases.is_dir() {
        dirs.push(cases.clone());
        dirs.push(cases.join("more"));
    } else {
        eprintln!("skipping: {} is absent", cases.display());
    }
    if let Some(f) = common::shared_fixtures() {
        dirs.push(f.join("cdi/testdata/good"));
        dirs.push(f.join("cdi/testdata/bad"));
    }
    let mut n = 0;
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "json"))
        {
            let text = std::fs::read_to_string(f).unwrap();
            let crate_rejects = oracle_check(f).is_err();
            assert_eq!(
                exliar_rejects(&text),
                crate_rejects,
                "{}: crate says {:?}, exliar {:?}",
                f.display(),
                oracle_check(f),
                spec::parse(&text).map(|s| spec::validate(&s))
            );
            n += 1;
        }
    }
    eprintln!("{n} shared cases compared");
}

/// Cases written here: (name, spec, whether the crate rejects it). exliar
/// rejects all of them (it is stricter on paths and hook timeouts).
#[test]
fn validator_rejects_bad_specs() {
    let dev = |edits: &str| {
        format!(
            r#"{{"cdiVersion":"0.5.0","kind":"vendor.com/gpu","devices":[{{"name":"gpu0","containerEdits":{edits}}}]}}"#
        )
    };
    let cases: Vec<(&str, String, bool)> = vec![
        ("perm-x", dev(r#"{"deviceNodes":[{"path":"/dev/a","permissions":"rwx"}]}"#), true),
        ("empty-node-path", dev(r#"{"deviceNodes":[{"path":""}]}"#), true),
        ("hook-env", dev(r#"{"hooks":[{"hookName":"createContainer","path":"/bin/h","env":["X"]}]}"#), true),
        ("hook-empty-path", dev(r#"{"hooks":[{"hookName":"createContainer","path":""}]}"#), true),
        ("mount-empty", dev(r#"{"mounts":[{"hostPath":"","containerPath":"/a"}]}"#), true),
        ("env-empty-name", dev(r#"{"env":["=1"]}"#), true),
        ("bad-vendor", r#"{"cdiVersion":"0.5.0","kind":"-v.com/gpu","devices":[{"name":"g","containerEdits":{"env":["A=1"]}}]}"#.into(), true),
        ("no-class", r#"{"cdiVersion":"0.5.0","kind":"vendor.com","devices":[{"name":"g","containerEdits":{"env":["A=1"]}}]}"#.into(), true),
        ("bad-name", r#"{"cdiVersion":"0.5.0","kind":"vendor.com/gpu","devices":[{"name":"g!","containerEdits":{"env":["A=1"]}}]}"#.into(), true),
        ("name-trailing-dash", r#"{"cdiVersion":"0.5.0","kind":"vendor.com/gpu","devices":[{"name":"g-","containerEdits":{"env":["A=1"]}}]}"#.into(), true),
        ("bad-annotation", r#"{"cdiVersion":"0.6.0","kind":"vendor.com/gpu","annotations":{"in$$valid":"x"},"devices":[{"name":"g","containerEdits":{"env":["A=1"]}}]}"#.into(), true),
        ("cmt-at-1.1", r#"{"cdiVersion":"1.1.0","kind":"vendor.com/gpu","containerEdits":{"intelRdt":{"enableCMT":true}},"devices":[{"name":"g","containerEdits":{"env":["A=1"]}}]}"#.into(), true),
        ("netdev-at-1.0", r#"{"cdiVersion":"1.0.0","kind":"vendor.com/gpu","devices":[{"name":"g","containerEdits":{"netDevices":[{"hostInterfaceName":"eth1","name":"n"}]}}]}"#.into(), true),
        ("netdev-dup", r#"{"cdiVersion":"1.1.0","kind":"vendor.com/gpu","devices":[{"name":"g","containerEdits":{"netDevices":[{"hostInterfaceName":"eth1","name":"n"},{"hostInterfaceName":"eth1","name":"m"}]}}]}"#.into(), true),
        ("gids-at-0.6", r#"{"cdiVersion":"0.6.0","kind":"vendor.com/gpu","devices":[{"name":"g","containerEdits":{"additionalGids":[5]}}]}"#.into(), true),
        ("unknown-top", r#"{"cdiVersion":"0.5.0","kind":"vendor.com/gpu","extra":1,"devices":[{"name":"g","containerEdits":{"env":["A=1"]}}]}"#.into(), true),
        ("unknown-node-field", dev(r#"{"deviceNodes":[{"path":"/dev/a","mode":1}]}"#), true),
        ("relative-container-path", dev(r#"{"mounts":[{"hostPath":"/a","containerPath":"rel"}]}"#), false),
        ("relative-hook", dev(r#"{"hooks":[{"hookName":"createContainer","path":"bin/h"}]}"#), false),
        ("zero-timeout", dev(r#"{"hooks":[{"hookName":"createContainer","path":"/bin/h","timeout":0}]}"#), false),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, text, crate_rejects) in &cases {
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, text).unwrap();
        assert_eq!(
            oracle_check(&path).is_err(),
            *crate_rejects,
            "{name}: crate {:?}",
            oracle_check(&path)
        );
        assert!(exliar_rejects(text), "{name}: exliar accepts it");
    }
    // And the good ones pass both.
    for (name, text) in [
        (
            "colon",
            r#"{"cdiVersion":"0.5.0","kind":"vendor.com/gpu","devices":[{"name":"0000:01:00.0","containerEdits":{"env":["A=1"]}}]}"#,
        ),
        (
            "null-lists",
            r#"{"cdiVersion":"0.3.0","kind":"vendor.com/gpu","devices":[{"name":"g","containerEdits":{"env":["A="],"mounts":null}}]}"#,
        ),
        (
            "v-prefix",
            r#"{"cdiVersion":"v0.6.0","kind":"vendor.com/gpu","devices":[{"name":"g","containerEdits":{"deviceNodes":[{"path":"/dev/a","permissions":"none"}]}}]}"#,
        ),
    ] {
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, text).unwrap();
        assert!(
            oracle_check(&path).is_ok(),
            "{name}: crate {:?}",
            oracle_check(&path)
        );
        assert!(
            !exliar_rejects(text),
            "{name}: {:?}",
            spec::parse(text).map(|s| spec::validate(&s))
        );
    }
}

#[test]
fn parse_errors_name_line_and_column() {
    let e = spec::parse("{\n \"cdiVersion\": \"0.5.0\",\n \"bogus\": 1}").unwrap_err();
    assert_eq!(e.code, "parse");
    assert_eq!(e.at, "line 3 column 8");
    assert!(e.message.contains("unknown field `bogus`"), "{}", e.message);
}

#[test]
fn directories_resolve_as_engines_do() {
    let s = |kind: &str, names: &[&str]| {
        spec::parse(&format!(
            r#"{{"cdiVersion":"0.5.0","kind":"{kind}","devices":[{}]}}"#,
            names
                .iter()
                .map(|n| format!(r#"{{"name":"{n}","containerEdits":{{"env":["A=1"]}}}}"#))
                .collect::<Vec<_>>()
                .join(",")
        ))
        .unwrap()
    };
    let etc = vec![
        (
            "/etc/cdi/a.json".to_string(),
            s("exliar.dev/gpu", &["0", "1"]),
        ),
        (
            "/etc/cdi/b.json".to_string(),
            s("exliar.dev/gpu", &["1", "2"]),
        ),
        ("/etc/cdi/c.json".to_string(), s("exliar.dev/vfio", &["0"])),
    ];
    let run = vec![(
        "/var/run/cdi/a.json".to_string(),
        s("exliar.dev/gpu", &["0", "1"]),
    )];
    let (visible, conflicts) = spec::resolve_dirs(&[etc, run]);
    let v: Vec<(&str, &str)> = visible
        .iter()
        .map(|v| (v.device.as_str(), v.file.as_str()))
        .collect();
    assert_eq!(
        v,
        [
            ("exliar.dev/gpu=0", "/var/run/cdi/a.json"),
            ("exliar.dev/gpu=2", "/etc/cdi/b.json"),
            ("exliar.dev/vfio=0", "/etc/cdi/c.json"),
        ]
    );
    // gpu=1 collides in /etc/cdi: dropped, even though /var/run/cdi has it.
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].device, "exliar.dev/gpu=1");
    assert_eq!(conflicts[0].files, ["/etc/cdi/a.json", "/etc/cdi/b.json"]);
}

// ---- CLI goldens -----------------------------------------------------

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A root with specs in /etc/cdi and /var/run/cdi: AMD and VFIO specs, an
/// override, a conflict, an invalid file, a YAML file, and the host nodes.
fn spec_root() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write(
        r,
        "etc/cdi/exliar-gpu.json",
        &spec::to_json(&generate(&amd(), None).unwrap()),
    );
    write(
        r,
        "etc/cdi/exliar-vfio.json",
        &spec::to_json(&generate(&vfio(), None).unwrap()),
    );
    write(
        r,
        "var/run/cdi/exliar-gpu.json",
        &spec::to_json(&generate(&plain(), None).unwrap()),
    );
    write(
        r,
        "etc/cdi/other-a.json",
        r#"{"cdiVersion":"0.5.0","kind":"example.com/x","devices":[{"name":"d0","containerEdits":{"env":["A=1"]}}]}"#,
    );
    write(
        r,
        "etc/cdi/other-b.json",
        r#"{"cdiVersion":"0.5.0","kind":"example.com/x","devices":[{"name":"d0","containerEdits":{"env":["A=2"]}}]}"#,
    );
    write(
        r,
        "etc/cdi/broken.json",
        r#"{"cdiVersion":"0.5.0","kind":"example.com/y","devices":[{"name":"d0","bogus":1,"containerEdits":{"env":["A=1"]}}]}"#,
    );
    write(r, "etc/cdi/vendor.yaml", "cdiVersion: 0.5.0\n");
    write(r, "etc/cdi/README", "not a spec\n");
    for n in [
        "dev/kfd",
        "dev/dri/renderD128",
        "dev/dri/renderD129",
        "dev/vfio/vfio",
        "dev/vfio/14",
    ] {
        write(r, n, "");
    }
    t
}

fn golden(root: &Path, args: &[&str]) -> (String, i32) {
    let o = common::exliar()
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    let out = common::redact(
        &format!("{}{}", common::stdout(&o), common::stderr(&o)),
        root,
    );
    (out, o.status.code().unwrap_or(-1))
}

#[test]
fn cdi_list_golden() {
    let t = spec_root();
    let (text, code) = golden(t.path(), &["cdi", "list"]);
    assert_eq!(code, 1, "a conflict and a skipped spec are findings");
    insta::assert_snapshot!("cdi_list_txt", text);
    let o = common::exliar()
        .arg("--root")
        .arg(t.path())
        .args(["cdi", "list", "--json"])
        .output()
        .unwrap();
    let v = common::json(&o);
    common::assert_valid(
        &common::schema("cdi-list-1.schema.json"),
        &v,
        "cdi list --json",
    );
    insta::assert_snapshot!(
        "cdi_list_json",
        common::redact(&common::stdout(&o), t.path())
    );
    // Only /var/run/cdi.
    let (text, code) = golden(t.path(), &["cdi", "list", "--dir", "/var/run/cdi"]);
    assert_eq!(code, 0);
    assert_eq!(
        text,
        "exliar.dev/gpu=card  /var/run/cdi/exliar-gpu.json\nexliar.dev/gpu=all   /var/run/cdi/exliar-gpu.json\n"
    );
    let (text, code) = golden(t.path(), &["cdi", "list", "--dir", "/nowhere"]);
    assert_eq!((text.as_str(), code), ("no CDI devices in /nowhere\n", 0));
}

#[test]
fn cdi_validate_golden() {
    let t = spec_root();
    let etc = t.path().join("etc/cdi");
    let (text, code) = golden(t.path(), &["cdi", "validate", etc.to_str().unwrap()]);
    assert_eq!(code, 1);
    insta::assert_snapshot!("cdi_validate_txt", text);
    let o = common::exliar()
        .arg("--root")
        .arg(t.path())
        .args(["cdi", "validate", "--json"])
        .arg(&etc)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let v = common::json(&o);
    common::assert_valid(
        &common::schema("cdi-validate-1.schema.json"),
        &v,
        "cdi validate --json",
    );
    insta::assert_snapshot!(
        "cdi_validate_json",
        common::redact(&common::stdout(&o), t.path())
    );
    // One good file with its host nodes present: exit 0; without the root's
    // nodes, host-path problems unless --no-host-paths.
    let good = t.path().join("var/run/cdi/exliar-gpu.json");
    let (text, code) = golden(t.path(), &["cdi", "validate", good.to_str().unwrap()]);
    assert_eq!(
        (code, text.as_str()),
        (
            0,
            "[ROOT]/var/run/cdi/exliar-gpu.json: ok (cdiVersion 0.3.0, needs 0.3.0, 2 devices)\n"
        )
    );
    let empty = tempfile::tempdir().unwrap();
    let o = common::exliar()
        .arg("--root")
        .arg(empty.path())
        .args(["cdi", "validate"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(common::stdout(&o).contains("/dev/dri/renderD128 does not exist on the host"));
    let o = common::exliar()
        .arg("--root")
        .arg(empty.path())
        .args(["cdi", "validate", "--no-host-paths"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
}

// ---- properties ------------------------------------------------------

fn name_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..64).prop_map(|i| i.to_string()),
        (0u32..0x10000, 0u8..=255, 0u8..32, 0u8..8)
            .prop_map(|(d, b, s, f)| format!("{d:04x}:{b:02x}:{s:02x}.{f}")),
        "[a-z][a-z0-9_.:-]{0,10}[a-z0-9]",
        "GPU-[0-9a-f]{8}-[0-9a-f]{4}",
    ]
}

fn node_strategy() -> impl Strategy<Value = Node> {
    (
        "/dev/[a-z]{1,6}(/[a-z0-9]{1,4})?",
        proptest::option::of("/dev/[a-z]{1,6}"),
        prop_oneof![Just('c'), Just('b')],
        0u32..600,
        0u32..300,
        0u32..0o1000,
        0u32..2000,
        0u32..2000,
    )
        .prop_map(|(host, cpath, kind, major, minor, mode, uid, gid)| Node {
            container_path: cpath.unwrap_or_else(|| host.clone()),
            host_path: host,
            kind,
            major,
            minor,
            mode,
            uid,
            gid,
        })
}

fn device_strategy() -> impl Strategy<Value = InputDevice> {
    (
        proptest::collection::vec(name_strategy(), 1..4),
        proptest::collection::vec(node_strategy(), 0..3),
        proptest::collection::vec(("[A-Z][A-Z_]{0,8}", "[a-z0-9,]{0,6}"), 0..3),
        proptest::collection::vec("/[a-z]{1,8}", 0..2),
        proptest::option::of(("[a-z]{1,5}", "[a-z0-9]{1,5}")),
    )
        .prop_map(|(names, nodes, env, mounts, ann)| InputDevice {
            names,
            nodes,
            env,
            mounts: mounts.iter().map(|p| ro(p)).collect(),
            hooks: vec![],
            annotations: ann
                .into_iter()
                .map(|(k, v)| (format!("exliar.dev/{k}"), v))
                .collect(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Whatever the generator accepts round-trips through serde, validates
    /// clean, declares its minimum, and the crate agrees.
    #[test]
    fn generated_specs_round_trip_and_validate(
        devices in proptest::collection::vec(device_strategy(), 1..4),
        vfio in any::<bool>(),
        pin in proptest::option::of(0usize..10),
    ) {
        let input = Input {
            vendor_kind: if vfio { VFIO_KIND } else { GPU_KIND }.into(),
            devices,
            ..Input::default()
        };
        let pin = pin.map(|i| spec::KNOWN_VERSIONS[i]);
        if let Ok(s) = generate(&input, pin) {
            let text = spec::to_json(&s);
            let back = spec::parse(&text).expect("parses back");
            prop_assert_eq!(&back, &s);
            prop_assert!(spec::validate(&back).is_empty());
            let declared = Version::parse(&s.cdi_version).unwrap();
            prop_assert!(spec::minimum_version(&s) <= declared);
            if pin.is_none() {
                prop_assert_eq!(spec::minimum_version(&s), declared);
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("p.json");
            std::fs::write(&path, &text).unwrap();
            let min = oracle_check(&path);
            prop_assert!(min.is_ok(), "crate refuses: {:?}\n{}", min, text);
            prop_assert_eq!(min.unwrap(), spec::minimum_version(&s).to_string());
        }
    }
}
