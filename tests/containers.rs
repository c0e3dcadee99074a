//! Containers tier: CDI specs proven with real container engines, each started by the
//! test in a private namespace and stopped after (tests/containers/README.md):
//! Debian 12's podman 4.3.1, Docker 26.1 and containerd 1.7 (over CRI, the kubelet's
//! way) from Debian 13's packages unpacked under target/containers/. Each test asserts
//! inside the container that the device nodes (major:minor, mode, gid), env and bind
//! mounts of the requested CDI devices arrived, and which cdiVersion each engine takes.

#[allow(dead_code)] // the harness's API, partly used here
mod containers {
    pub mod check;
    pub mod containerd;
    pub mod docker;
    pub mod harness;
    pub mod podman;
    pub mod trixie;
}

use std::path::Path;
use std::time::Instant;

use containers::check::{self, Expect};
use containers::containerd::{Containerd, CriContainer};
use containers::docker::Docker;
use containers::harness::{self, CDI_VERSIONS, HW17, NVIDIA, Unavailable, secs};
use containers::podman::Podman;

/// The cdiVersion range each engine loads, measured here (the newest also by the probe,
/// ../shared/reference/containers/REPORT.md): it is the CDI library each one vendors.
/// `(engine, engine version prefix the row was measured with, oldest, newest)`.
/// The oldest: CDI libraries from v0.6 on check a spec's minimum version, and no spec
/// may declare less than 0.3.0 ("the spec version must be at least v0.3.0"); podman
/// 4.3.1's older library has no such check.
pub const VERSION_LIMITS: &[(&str, &str, &str, &str)] = &[
    ("podman", "4.3.1", "0.1.0", "0.5.0"),
    ("docker", "26.1.", "0.3.0", "0.7.0"),
    ("containerd", "1.7.", "0.3.0", "0.8.0"),
];

/// The (oldest, newest) cdiVersion `engine` at `version` accepts, from [`VERSION_LIMITS`].
fn limits(engine: &str, version: &str) -> (&'static str, &'static str) {
    let (_, prefix, min, max) = VERSION_LIMITS
        .iter()
        .find(|(e, _, _, _)| *e == engine)
        .expect("engine row");
    assert!(
        version.starts_with(prefix),
        "{engine} {version}: VERSION_LIMITS was measured with {prefix}*; re-measure"
    );
    (min, max)
}

fn in_range(v: &str, (min, max): (&str, &str)) -> bool {
    version_le(min, v) && version_le(v, max)
}

/// The reason an engine's CDI library gives for refusing a spec at `v`.
fn refusal(v: &str, (min, _): (&str, &str)) -> String {
    if !version_le(min, v) {
        format!("the spec version must be at least v{min}")
    } else {
        format!("invalid version \\\"{v}\\\"")
    }
}

fn version_le(a: &str, b: &str) -> bool {
    let p = |v: &str| -> Vec<u32> { v.split('.').map(|x| x.parse().unwrap_or(0)).collect() };
    p(a) <= p(b)
}

/// The node and mount lines of a probe's output (what arrived), for the log.
fn arrived(output: &str) -> String {
    output
        .lines()
        .filter(|l| {
            l.starts_with("node|") || l.starts_with("mount|") || l.starts_with("env|EXLIAR")
        })
        .map(|l| format!("    {l}\n"))
        .collect()
}

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Device names the injection tests request from exliar's specs for [`HW17`] and
/// [`NVIDIA`] (by PCI address, index, UUID and `all`).
const AMD_GPU: &str = "exliar.dev/gpu=0000:03:00.0";
const VFIO_0: &str = "exliar.dev/vfio=0";
const GPU_ALL: &str = "exliar.dev/gpu=all";
const VFIO_PCI: &str = "exliar.dev/vfio=0000:04:00.0";
const NVIDIA_UUID: &str = "exliar.dev/gpu=GPU-9c2b7d14-61f0-4e3a-8b55-3a0e7f6d1c28";
/// No such device in either fixture's gpu kind.
const UNKNOWN: &str = "exliar.dev/gpu=9";

/// One request of an injection test and what exliar's spec must give it for the
/// fixture (the contract of `exliar cdi generate`): exactly these node paths and mount
/// paths, at least these env entries. What arrives in the container is then checked
/// against the spec and the copied host's nodes and files (`check`).
struct Request {
    devices: &'static [&'static str],
    nodes: &'static [&'static str],
    env: &'static [&'static str],
    mounts: &'static [&'static str],
}

/// hw17: the amdgpu card by its address (render node and /dev/kfd), the VFIO card by
/// its index in the vfio kind, and every GPU with the VFIO card by its address.
const HW17_REQUESTS: &[Request] = &[
    Request {
        devices: &[AMD_GPU],
        nodes: &["/dev/dri/renderD129", "/dev/kfd"],
        env: &["EXLIAR_GPU_PCI=0000:03:00.0"],
        mounts: &[],
    },
    Request {
        devices: &[VFIO_0],
        nodes: &["/dev/vfio/vfio", "/dev/vfio/23"],
        env: &["EXLIAR_VFIO_PCI=0000:04:00.0"],
        mounts: &[],
    },
    Request {
        devices: &[GPU_ALL, VFIO_PCI],
        nodes: &[
            "/dev/dri/renderD128",
            "/dev/dri/renderD129",
            "/dev/kfd",
            "/dev/vfio/vfio",
            "/dev/vfio/23",
        ],
        env: &[
            "EXLIAR_GPU_PCI=0000:00:02.0,0000:03:00.0",
            "EXLIAR_VFIO_PCI=0000:04:00.0",
        ],
        mounts: &[],
    },
];

/// The RTX 3060 by its UUID: its nodes, the driver's shared nodes and read-only bind
/// mounts of the driver's user-space files that `exliar scan` lists.
const NVIDIA_REQUEST: Request = Request {
    devices: &[NVIDIA_UUID],
    nodes: &[
        "/dev/nvidia0",
        "/dev/dri/card0",
        "/dev/dri/renderD128",
        "/dev/nvidiactl",
        "/dev/nvidia-uvm",
        "/dev/nvidia-uvm-tools",
        "/dev/nvidia-modeset",
    ],
    env: &["EXLIAR_GPU_PCI=0000:2d:00.0"],
    mounts: &[
        "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
        "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14",
        "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
        "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.14",
        "/usr/bin/nvidia-smi",
        "/lib/firmware/nvidia/550.54.14",
        "/usr/share/vulkan/icd.d/nvidia_icd.json",
    ],
};

/// What `r` must inject, from the specs in `spec_dir` and the host copied at `root`;
/// panics where the spec breaks `r`'s contract.
fn expect_for(spec_dir: &Path, root: &Path, r: &Request) -> Expect {
    let e = check::expect_rooted(spec_dir, r.devices, Some(root))
        .unwrap_or_else(|m| panic!("{:?}: {m}", r.devices));
    let sorted = |v: Vec<&str>| -> Vec<String> {
        let mut v: Vec<String> = v.into_iter().map(String::from).collect();
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(
        sorted(e.nodes.iter().map(|n| n.path.as_str()).collect()),
        sorted(r.nodes.to_vec()),
        "{:?}: device nodes in the spec",
        r.devices
    );
    for v in r.env {
        assert!(
            e.env.iter().any(|x| x == v),
            "{:?}: no {v} in the spec's env {:?}",
            r.devices,
            e.env
        );
    }
    assert_eq!(
        sorted(e.mounts.iter().map(|m| m.container_path.as_str()).collect()),
        sorted(r.mounts.to_vec()),
        "{:?}: mounts in the spec",
        r.devices
    );
    for m in &e.mounts {
        let same = check::in_root(root, Path::new(&m.container_path)).expect("in root");
        assert_eq!(
            m.host_path, same,
            "{:?}: mount {} must come from the same path on the host",
            r.devices, m.container_path
        );
    }
    e
}

/// The probe finds nothing without `--device`: the check can fail.
fn assert_control_fails(e: &Expect, output: &str) {
    assert!(
        check::verify(e, output).is_err(),
        "a container without CDI devices passed the check:\n{output}"
    );
}

fn skip_or<T>(test: &str, r: Result<T, Unavailable>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(why) => {
            harness::skip(test, &why);
            None
        }
    }
}

fn annotated_060(spec_dir: &Path) -> &'static str {
    let spec = serde_json::json!({
        "cdiVersion": "0.6.0",
        "kind": "exliar.dev/annotated",
        "annotations": {"exliar.dev/generator": "containers test"},
        "devices": [{"name": "0", "containerEdits": {"env": ["EXLIAR_ANNOTATED=1"]}}]
    });
    harness::write_json(&spec_dir.join("exliar-annotated.json"), &spec).expect("spec");
    "exliar.dev/annotated=0"
}

#[test]
fn podman_injects_nodes_env_mounts() {
    let _g = harness::serial();
    let t0 = Instant::now();
    let Some(p) = skip_or("podman_injects_nodes_env_mounts", Podman::start()) else {
        return;
    };
    let spec_dir = p.ns.spec_dir();
    let root = p.ns.fixture_with_spec(HW17).expect("hw17 and its spec");
    p.ns.show_host(&root).expect("show hw17");
    for r in HW17_REQUESTS {
        let e = expect_for(&spec_dir, &root, r);
        let t = Instant::now();
        let o = p.run(r.devices, &check::probe_script(&e), false);
        assert!(
            o.status.success(),
            "podman {:?}: {}",
            r.devices,
            harness::text(&o)
        );
        check::verify(&e, &out(&o)).unwrap_or_else(|m| panic!("podman {:?}:\n{m}", r.devices));
        eprintln!(
            "podman {:?}: ok in {}\n{}",
            r.devices,
            secs(t),
            arrived(&out(&o))
        );
    }
    // The device cgroup rule CDI adds lets the container open /dev/kfd: the open
    // reaches the kernel, which has no such driver here (ENXIO), instead of being
    // refused by the cgroup (EPERM).
    let o = p.run(&[AMD_GPU], "cat /dev/kfd 2>&1; true", false);
    assert!(
        out(&o).contains("No such device or address"),
        "{}",
        harness::text(&o)
    );
    let e = expect_for(&spec_dir, &root, &HW17_REQUESTS[0]);
    let o = p.run(&[], &check::probe_script(&e), false);
    assert_control_fails(&e, &out(&o));
    // Without fileMode/gid the engine makes the node 0666 root: the check catches a
    // spec that forgets them (hw17's card0 is 0660 group 44).
    let card0 = root.join("dev/dri/card0");
    let bare = serde_json::json!({
        "cdiVersion": "0.5.0",
        "kind": "exliar.dev/nomode",
        "devices": [{"name": "card0", "containerEdits": {"deviceNodes": [
            {"path": "/dev/dri/card0", "hostPath": card0}
        ]}}]
    });
    harness::write_json(&spec_dir.join("exliar-nomode.json"), &bare).expect("spec");
    let e = check::expect(&spec_dir, &["exliar.dev/nomode=card0"]).expect("expect");
    let o = p.run(
        &["exliar.dev/nomode=card0"],
        &check::probe_script(&e),
        false,
    );
    assert!(o.status.success(), "{}", harness::text(&o));
    let err = check::verify(&e, &out(&o)).expect_err("a node without fileMode/gid passed");
    assert!(
        err.contains("got Some(\"character special file|e2:0|666|0\")"),
        "{err}"
    );
    let o = p.run(&[UNKNOWN], "true", false);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("unresolvable CDI devices {UNKNOWN}")),
        "{}",
        harness::text(&o)
    );
    eprintln!("podman_injects_nodes_env_mounts: {}", secs(t0));
}

/// NVIDIA's user-space files (libraries through their links, nvidia-smi, the firmware
/// folder, the Vulkan ICD) are bind-mounted from the described host's paths; before the
/// host is shown to the engine the request fails (no /dev/nvidia0 on this machine).
#[test]
fn podman_injects_nvidia_driver_files() {
    let _g = harness::serial();
    let t0 = Instant::now();
    let Some(p) = skip_or("podman_injects_nvidia_driver_files", Podman::start()) else {
        return;
    };
    let spec_dir = p.ns.spec_dir();
    let root =
        p.ns.fixture_with_spec(NVIDIA)
            .expect("nvidia host and its spec");
    let e = expect_for(&spec_dir, &root, &NVIDIA_REQUEST);
    let script = check::probe_script(&e);
    if !Path::new("/dev/nvidia0").exists() {
        let o = p.run(NVIDIA_REQUEST.devices, &script, false);
        assert!(!o.status.success(), "{}", harness::text(&o));
    }
    p.ns.show_host(&root).expect("show the nvidia host");
    let o = p.run(NVIDIA_REQUEST.devices, &script, false);
    assert!(o.status.success(), "{}", harness::text(&o));
    check::verify(&e, &out(&o)).unwrap_or_else(|m| panic!("podman nvidia:\n{m}"));
    eprintln!(
        "podman {:?}: ok\n{}",
        NVIDIA_REQUEST.devices,
        arrived(&out(&o))
    );
    eprintln!("podman_injects_nvidia_driver_files: {}", secs(t0));
}

#[test]
fn podman_version_limits() {
    let _g = harness::serial();
    let t0 = Instant::now();
    let Some(p) = skip_or("podman_version_limits", Podman::start()) else {
        return;
    };
    let range = limits("podman", &p.version);
    let spec_dir = p.ns.spec_dir();
    for v in CDI_VERSIONS {
        let dev = harness::version_spec(&spec_dir, v).expect("spec");
        let o = p.run(&[&dev], "echo $EXLIAR_OK", !in_range(v, range));
        let accepted = o.status.success() && out(&o).trim() == *v;
        assert_eq!(
            accepted,
            in_range(v, range),
            "podman {} cdiVersion {v}: {}",
            p.version,
            harness::text(&o)
        );
        if !accepted {
            // The terminal says only "unresolvable"; the reason is in the debug log.
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains(&refusal(v, range)), "podman {v}: {err}");
        }
    }
    // A spec that needs 0.6.0 (annotations) is refused, with the reason.
    let dev = annotated_060(&spec_dir);
    let o = p.run(&[dev], "true", true);
    assert!(!o.status.success(), "{}", harness::text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("invalid version \\\"0.6.0\\\""), "{err}");
    eprintln!(
        "podman {}: cdiVersion {}..={} accepted, the others rejected ({})",
        p.version,
        range.0,
        range.1,
        secs(t0)
    );
}

#[test]
fn docker_injects_nodes_env_mounts() {
    let _g = harness::serial();
    let t0 = Instant::now();
    let Some(d) = skip_or("docker_injects_nodes_env_mounts", Docker::start()) else {
        return;
    };
    let spec_dir = d.ns.spec_dir();
    let root = d.ns.fixture_with_spec(HW17).expect("hw17 and its spec");
    d.ns.show_host(&root).expect("show hw17");
    for r in HW17_REQUESTS {
        let e = expect_for(&spec_dir, &root, r);
        let t = Instant::now();
        let o = d.run(r.devices, &check::probe_script(&e));
        assert!(
            o.status.success(),
            "docker {:?}: {}",
            r.devices,
            harness::text(&o)
        );
        check::verify(&e, &out(&o)).unwrap_or_else(|m| panic!("docker {:?}:\n{m}", r.devices));
        eprintln!(
            "docker {:?}: ok in {}\n{}",
            r.devices,
            secs(t),
            arrived(&out(&o))
        );
    }
    let e = expect_for(&spec_dir, &root, &HW17_REQUESTS[0]);
    let o = d.run(&[], &check::probe_script(&e));
    assert_control_fails(&e, &out(&o));
    let o = d.run(&[UNKNOWN], "true");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("unresolvable CDI devices {UNKNOWN}")),
        "{}",
        harness::text(&o)
    );
    eprintln!("docker_injects_nodes_env_mounts: {}", secs(t0));
}

#[test]
fn docker_injects_nvidia_driver_files() {
    let _g = harness::serial();
    let t0 = Instant::now();
    let Some(d) = skip_or("docker_injects_nvidia_driver_files", Docker::start()) else {
        return;
    };
    let spec_dir = d.ns.spec_dir();
    let root =
        d.ns.fixture_with_spec(NVIDIA)
            .expect("nvidia host and its spec");
    d.ns.show_host(&root).expect("show the nvidia host");
    let e = expect_for(&spec_dir, &root, &NVIDIA_REQUEST);
    let o = d.run(NVIDIA_REQUEST.devices, &check::probe_script(&e));
    assert!(o.status.success(), "{}", harness::text(&o));
    check::verify(&e, &out(&o)).unwrap_or_else(|m| panic!("docker nvidia:\n{m}"));
    eprintln!(
        "docker {:?}: ok\n{}",
        NVIDIA_REQUEST.devices,
        arrived(&out(&o))
    );
    eprintln!("docker_injects_nvidia_driver_files: {}", secs(t0));
}

#[test]
fn docker_version_limits() {
    let _g = harness::serial();
    let t0 = Instant::now();
    let Some(d) = skip_or("docker_version_limits", Docker::start()) else {
        return;
    };
    let range = limits("docker", &d.version);
    let spec_dir = d.ns.spec_dir();
    for v in CDI_VERSIONS {
        let dev = harness::version_spec(&spec_dir, v).expect("spec");
        let o = d.run(&[&dev], "echo $EXLIAR_OK");
        let accepted = o.status.success() && out(&o).trim() == *v;
        assert_eq!(
            accepted,
            in_range(v, range),
            "docker {} cdiVersion {v}: {}\n--- dockerd log\n{}",
            d.version,
            harness::text(&o),
            d.ns.log_tail("dockerd", 10)
        );
        if !accepted {
            let log = d.log();
            assert!(
                log.contains(&refusal(v, range)),
                "dockerd log for {v}:\n{log}"
            );
        }
    }
    // The 0.6.0 spec podman refuses (annotations) is accepted.
    let dev = annotated_060(&spec_dir);
    let o = d.run(&[dev], "echo $EXLIAR_ANNOTATED");
    assert!(
        o.status.success() && out(&o).trim() == "1",
        "{}",
        harness::text(&o)
    );
    eprintln!(
        "docker {}: cdiVersion {}..={} accepted, the others rejected ({})",
        d.version,
        range.0,
        range.1,
        secs(t0)
    );
}

fn sh(name: &str, script: &str) -> CriContainer {
    CriContainer {
        name: name.into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

/// Each request twice in one batch: by the KEP-4009 field the kubelet fills from a
/// device plugin's CDIDevices, and by the older `cdi.k8s.io/<key>` annotation.
fn cri_requests(
    spec_dir: &Path,
    root: &Path,
    requests: &[&Request],
) -> (Vec<CriContainer>, Vec<Option<Expect>>) {
    let mut batch = Vec::new();
    let mut expects = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        let e = expect_for(spec_dir, root, r);
        let mut k = sh(&format!("field-{i}"), &check::probe_script(&e));
        k.cdi_devices = r.devices.iter().map(|d| d.to_string()).collect();
        batch.push(k);
        expects.push(Some(e.clone()));
        let mut k = sh(&format!("annotation-{i}"), &check::probe_script(&e));
        k.annotations = vec![("cdi.k8s.io/exliar".into(), r.devices.join(","))];
        batch.push(k);
        expects.push(Some(e));
    }
    (batch, expects)
}

fn assert_cri_injected(name: &str, r: &containers::containerd::CriResult, e: &Expect) {
    assert!(r.created && r.exit_code == Some(0), "cri {name}: {r:?}");
    check::verify(e, &r.log).unwrap_or_else(|m| panic!("cri {name}:\n{m}"));
    eprintln!("cri {name}: ok\n{}", arrived(&r.log));
}

#[test]
fn cri_injects_nodes_env_mounts() {
    let _g = harness::serial();
    let t0 = Instant::now();
    let Some(c) = skip_or("cri_injects_nodes_env_mounts", Containerd::start()) else {
        return;
    };
    let spec_dir = c.ns.spec_dir();
    let root = c.ns.fixture_with_spec(HW17).expect("hw17 and its spec");
    c.ns.show_host(&root).expect("show hw17");
    let requests: Vec<&Request> = HW17_REQUESTS.iter().collect();
    let (mut batch, mut expects) = cri_requests(&spec_dir, &root, &requests);
    let control = expect_for(&spec_dir, &root, &HW17_REQUESTS[0]);
    batch.push(sh("control", &check::probe_script(&control)));
    expects.push(None);
    let mut unknown = sh("unknown", "true");
    unknown.cdi_devices = vec![UNKNOWN.into()];
    batch.push(unknown);
    expects.push(None);
    let t = Instant::now();
    let results = c.run_batch(&batch);
    eprintln!(
        "cri: {} containers in one sandbox in {}",
        batch.len(),
        secs(t)
    );
    assert_eq!(results.len(), batch.len(), "{results:?}");
    for (r, e) in results.iter().zip(&expects) {
        match (r.name.as_str(), e) {
            ("control", _) => {
                assert_eq!(r.exit_code, Some(0), "{r:?}");
                assert_control_fails(&control, &r.log);
            }
            ("unknown", _) => {
                assert!(!r.created, "{r:?}");
                assert!(
                    r.error
                        .contains(&format!("unresolvable CDI devices {UNKNOWN}")),
                    "{r:?}"
                );
            }
            (name, Some(e)) => assert_cri_injected(name, r, e),
            (name, None) => panic!("unexpected result {name}"),
        }
    }
    eprintln!("cri_injects_nodes_env_mounts: {}", secs(t0));
}

#[test]
fn cri_injects_nvidia_driver_files() {
    let _g = harness::serial();
    let t0 = Instant::now();
    let Some(c) = skip_or("cri_injects_nvidia_driver_files", Containerd::start()) else {
        return;
    };
    let spec_dir = c.ns.spec_dir();
    let root =
        c.ns.fixture_with_spec(NVIDIA)
            .expect("nvidia host and its spec");
    c.ns.show_host(&root).expect("show the nvidia host");
    let (batch, expects) = cri_requests(&spec_dir, &root, &[&NVIDIA_REQUEST]);
    let results = c.run_batch(&batch);
    assert_eq!(results.len(), batch.len(), "{results:?}");
    for (r, e) in results.iter().zip(&expects) {
        assert_cri_injected(&r.name, r, e.as_ref().expect("expectation"));
    }
    eprintln!("cri_injects_nvidia_driver_files: {}", secs(t0));
}

#[test]
fn cri_version_limits() {
    let _g = harness::serial();
    let t0 = Instant::now();
    let Some(c) = skip_or("cri_version_limits", Containerd::start()) else {
        return;
    };
    let range = limits("containerd", &c.version);
    let spec_dir = c.ns.spec_dir();
    let mut batch = Vec::new();
    for v in CDI_VERSIONS {
        let mut k = sh(&format!("v{}", v.replace('.', "")), "echo $EXLIAR_OK");
        k.cdi_devices = vec![harness::version_spec(&spec_dir, v).expect("spec")];
        batch.push(k);
    }
    let mut k = sh("annotated", "echo $EXLIAR_ANNOTATED");
    k.cdi_devices = vec![annotated_060(&spec_dir).into()];
    batch.push(k);
    let results = c.run_batch(&batch);
    assert_eq!(results.len(), batch.len(), "{results:?}");
    for (v, r) in CDI_VERSIONS.iter().zip(&results) {
        let accepted = r.created && r.exit_code == Some(0) && r.log.trim() == *v;
        assert_eq!(
            accepted,
            in_range(v, range),
            "containerd {} cdiVersion {v}: {r:?}",
            c.version
        );
        if !accepted {
            assert!(r.error.contains("unresolvable CDI devices"), "{r:?}");
            let log = c.log();
            assert!(
                log.contains(&refusal(v, range)),
                "containerd log for {v}:\n{log}"
            );
        }
    }
    let r = results.last().expect("annotated");
    assert!(r.created && r.log.trim() == "1", "{r:?}");
    eprintln!(
        "containerd {}: cdiVersion {}..={} accepted, the others rejected ({})",
        c.version,
        range.0,
        range.1,
        secs(t0)
    );
}

/// Shows the NVIDIA fixture's /dev and user-space files inside `ns` (as the injection
/// tests do, without a spec), so the clean-up test proves those mounts stay private.
fn show_nvidia_host(ns: &containers::harness::Namespace) {
    let root = ns.dir().join(NVIDIA);
    harness::fixture_host(NVIDIA, &root).expect("nvidia host");
    ns.overlay_dev(&root).expect("overlay /dev");
    let files: Vec<std::path::PathBuf> = NVIDIA_REQUEST.mounts.iter().map(Into::into).collect();
    ns.overlay_files(&root, &files).expect("overlay files");
}

/// The host's mounts (mount point and source), to compare before and after.
fn host_mounts() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut m: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dash = f.iter().position(|x| *x == "-")?;
            Some(format!("{} {}", f.get(4)?, f.get(dash + 2)?))
        })
        .collect();
    m.sort();
    m
}

/// Every engine leaves nothing behind: no process mentions its directory, the
/// directory is gone, the host's /etc/cdi, /var/run/cdi and /var/lib/containers are as
/// they were, and so are the host's mounts and the folders the NVIDIA fixture's files
/// were shown at inside each engine's namespace.
#[test]
fn engines_clean_up_after_themselves() {
    let _g = harness::serial();
    let watched = [
        "/etc/cdi",
        "/run/cdi",
        "/var/lib/containers",
        "/run/containerd",
        "/run/runc",
        "/var/lib/docker",
        "/dev/nvidia0",
        "/usr/bin/nvidia-smi",
        "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
        "/usr/lib/firmware/nvidia",
        "/usr/share/vulkan",
    ];
    let before: Vec<bool> = watched.iter().map(|p| Path::new(p).exists()).collect();
    let mounts_before = host_mounts();
    let mut dirs = Vec::new();
    let p = match Podman::start() {
        Ok(p) => p,
        Err(why) => return harness::skip("engines_clean_up_after_themselves", &why),
    };
    show_nvidia_host(&p.ns);
    let o = p.run(&[], "true", false);
    assert!(o.status.success(), "{}", harness::text(&o));
    dirs.push(p.ns.dir().to_path_buf());
    drop(p);
    let d = skip_or("engines_clean_up_after_themselves", Docker::start());
    let Some(d) = d else { return };
    show_nvidia_host(&d.ns);
    let o = d.run(&[], "true");
    assert!(o.status.success(), "{}", harness::text(&o));
    dirs.push(d.ns.dir().to_path_buf());
    drop(d);
    let Some(c) = skip_or("engines_clean_up_after_themselves", Containerd::start()) else {
        return;
    };
    show_nvidia_host(&c.ns);
    let r = c.run_batch(&[sh("true", "true")]);
    assert_eq!(r[0].exit_code, Some(0), "{r:?}");
    dirs.push(c.ns.dir().to_path_buf());
    drop(c);
    for dir in &dirs {
        assert!(!dir.exists(), "{} left behind", dir.display());
        let left = harness::processes_mentioning(&dir.display().to_string());
        assert!(left.is_empty(), "processes left: {left:?}");
    }
    let after: Vec<bool> = watched.iter().map(|p| Path::new(p).exists()).collect();
    assert_eq!(before, after, "host paths {watched:?} changed");
    assert_eq!(mounts_before, host_mounts(), "the host's mounts changed");
}

/// The check itself, without an engine (runs everywhere): each kind of mismatch is
/// reported, and the output of a container that got everything passes.
#[test]
fn check_reports_each_mismatch() {
    use containers::check::{MountExpect, NodeExpect};
    let e = Expect {
        nodes: vec![NodeExpect {
            path: "/dev/dri/renderD128".into(),
            host_path: "/host/dev/dri/renderD128".into(),
            major: 226,
            minor: 128,
            mode: 0o660,
            gid: 105,
        }],
        env: vec!["EXLIAR_GPU=0".into()],
        mounts: vec![MountExpect {
            container_path: "/usr/share/x.txt".into(),
            host_path: "/host/x.txt".into(),
            sha256: Some("ab".repeat(32)),
            listing: Vec::new(),
        }],
    };
    let script = check::probe_script(&e);
    assert!(
        script.contains("stat -c '%F|%t:%T|%a|%g' /dev/dri/renderD128"),
        "{script}"
    );
    let good = format!(
        "env|PATH=/bin\nenv|EXLIAR_GPU=0\nnode|/dev/dri/renderD128|character special file|e2:80|660|105\nmount|/usr/share/x.txt|{}\n",
        "ab".repeat(32)
    );
    check::verify(&e, &good).expect("all arrived");
    for (bad, want) in [
        (good.replace("e2:80", "e2:81"), "node /dev/dri/renderD128"),
        (good.replace("|660|", "|666|"), "node /dev/dri/renderD128"),
        (good.replace("|105\n", "|0\n"), "node /dev/dri/renderD128"),
        (good.replace("env|EXLIAR_GPU=0\n", ""), "env EXLIAR_GPU=0"),
        (
            good.replace(&"ab".repeat(32), "sha256sum: can't open"),
            "mount /usr/share/x.txt",
        ),
        ("env|PATH=/bin\n".to_string(), "node /dev/dri/renderD128"),
    ] {
        let err = check::verify(&e, &bad).expect_err(&bad);
        assert!(err.contains(want), "{want}: {err}");
    }
}

/// A mounted folder is compared by its entries and each regular file's sha256; links
/// of a copied host are followed inside its root (runs everywhere).
#[test]
fn check_compares_folders_and_follows_links_in_root() {
    use containers::check::MountExpect;
    let e = Expect {
        mounts: vec![MountExpect {
            container_path: "/lib/firmware/nvidia/550.54.14".into(),
            host_path: "/host/lib/firmware/nvidia/550.54.14".into(),
            sha256: None,
            listing: vec![format!("gsp.bin={}", "cd".repeat(32)), "sub".into()],
        }],
        ..Default::default()
    };
    let script = check::probe_script(&e);
    assert!(
        script.contains("cd /lib/firmware/nvidia/550.54.14"),
        "{script}"
    );
    let good = format!(
        "mount|/lib/firmware/nvidia/550.54.14|dir|gsp.bin={},sub,\n",
        "cd".repeat(32)
    );
    check::verify(&e, &good).expect("all arrived");
    for bad in [
        good.replace("sub,", ""),
        good.replace(&"cd".repeat(32), &"ce".repeat(32)),
        "mount|/lib/firmware/nvidia/550.54.14|dir|sh: cd: can't cd\n".to_string(),
    ] {
        check::verify(&e, &bad).expect_err(&bad);
    }

    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path();
    fs_err::create_dir_all(root.join("usr/lib")).expect("mkdir");
    fs_err::write(root.join("usr/lib/libcuda.so.550"), "x").expect("write");
    let link =
        |target: &str, at: &str| std::os::unix::fs::symlink(target, root.join(at)).expect(at);
    link("usr/lib", "lib");
    link("libcuda.so.550", "usr/lib/libcuda.so.1");
    link("/usr/lib/libcuda.so.550", "abs");
    link("../../../../usr/lib", "up");
    let want = root.join("usr/lib/libcuda.so.550");
    for p in [
        "/lib/libcuda.so.1",
        "/usr/lib/libcuda.so.1",
        "/abs",
        "/up/libcuda.so.550",
        "/usr/../lib/libcuda.so.550",
    ] {
        assert_eq!(check::in_root(root, Path::new(p)).expect(p), want, "{p}");
    }
    assert_eq!(
        check::in_root(root, Path::new("/lib/missing")).expect("missing"),
        root.join("usr/lib/missing")
    );
}
