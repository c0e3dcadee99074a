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
use containers::harness::{self, CDI_VERSIONS, GPU, GPU_ALL, Unavailable, VFIO, secs};
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

/// The fake host (nodes made by mknod) and its spec in the engine's spec directory.
fn fixture(spec_dir: &Path, host: &Path) {
    harness::make_fake_host(host).expect("fake host");
    let spec = harness::spec_for_test(host, spec_dir).expect("spec");
    eprintln!("spec: {}", spec.display());
}

/// The requests every engine's injection test makes, with what must arrive.
fn requests(spec_dir: &Path) -> Vec<(Vec<&'static str>, Expect)> {
    [vec![GPU], vec![VFIO], vec![GPU_ALL, VFIO]]
        .into_iter()
        .map(|d| {
            let e = check::expect(spec_dir, &d).expect("expectation");
            (d, e)
        })
        .collect()
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
    let host = p.ns.dir().join("host");
    fixture(&p.ns.spec_dir(), &host);
    for (devices, e) in requests(&p.ns.spec_dir()) {
        let t = Instant::now();
        let o = p.run(&devices, &check::probe_script(&e), false);
        assert!(
            o.status.success(),
            "podman {devices:?}: {}",
            harness::text(&o)
        );
        check::verify(&e, &out(&o)).unwrap_or_else(|m| panic!("podman {devices:?}:\n{m}"));
        eprintln!(
            "podman {devices:?}: ok in {}\n{}",
            secs(t),
            arrived(&out(&o))
        );
    }
    // The injected card0 is the /dev/zero-numbered node: readable through the device
    // cgroup rule CDI adds.
    let o = p.run(&[GPU], "head -c4 /dev/dri/card0 | od -An -tx1", false);
    assert_eq!(
        out(&o).split_whitespace().collect::<Vec<_>>(),
        ["00"; 4],
        "{}",
        harness::text(&o)
    );
    let e = check::expect(&p.ns.spec_dir(), &[GPU]).expect("expect");
    let o = p.run(&[], &check::probe_script(&e), false);
    assert_control_fails(&e, &out(&o));
    // Without fileMode/gid the engine makes the node 0666 root: the check catches a
    // spec that forgets them (the host node is 0660 group 44).
    let card0 = host.join("dev/dri/card0");
    let bare = serde_json::json!({
        "cdiVersion": "0.5.0",
        "kind": "exliar.dev/nomode",
        "devices": [{"name": "card0", "containerEdits": {"deviceNodes": [
            {"path": "/dev/dri/card0", "hostPath": card0}
        ]}}]
    });
    harness::write_json(&p.ns.spec_dir().join("exliar-nomode.json"), &bare).expect("spec");
    let e = check::expect(&p.ns.spec_dir(), &["exliar.dev/nomode=card0"]).expect("expect");
    let o = p.run(
        &["exliar.dev/nomode=card0"],
        &check::probe_script(&e),
        false,
    );
    assert!(o.status.success(), "{}", harness::text(&o));
    let err = check::verify(&e, &out(&o)).expect_err("a node without fileMode/gid passed");
    assert!(
        err.contains("got Some(\"character special file|1:5|666|0\")"),
        "{err}"
    );
    let o = p.run(&["exliar.dev/gpu=9"], "true", false);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unresolvable CDI devices exliar.dev/gpu=9"),
        "{}",
        harness::text(&o)
    );
    eprintln!("podman_injects_nodes_env_mounts: {}", secs(t0));
}

/// A spec naming the real paths (`/dev/dri/card0`, no `hostPath`), as one generated
/// for the host it runs on reads: the fake nodes are shown at those paths inside the
/// engine's namespace only.
#[test]
fn podman_injects_from_real_dev_paths() {
    let _g = harness::serial();
    let Some(p) = skip_or("podman_injects_from_real_dev_paths", Podman::start()) else {
        return;
    };
    let host = p.ns.dir().join("host");
    harness::make_fake_host(&host).expect("fake host");
    harness::hand_made_spec(&host, &p.ns.spec_dir(), false).expect("spec");
    let spec = std::fs::read_to_string(p.ns.spec_dir().join("exliar-gpu.json")).expect("spec");
    assert!(!spec.contains("host/dev/"), "{spec}");
    let devices = [GPU, VFIO];
    let e = check::expect_rooted(&p.ns.spec_dir(), &devices, Some(&host)).expect("expect");
    // Before the overlay the engine finds no such nodes on this host.
    let o = p.run(&devices, &check::probe_script(&e), false);
    assert!(!o.status.success(), "{}", harness::text(&o));
    p.ns.overlay_dev(&host).expect("overlay /dev");
    let o = p.run(&devices, &check::probe_script(&e), false);
    assert!(o.status.success(), "{}", harness::text(&o));
    check::verify(&e, &out(&o)).unwrap_or_else(|m| panic!("podman {devices:?}:\n{m}"));
    eprintln!(
        "podman {devices:?} from /dev paths: ok\n{}",
        arrived(&out(&o))
    );
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
    let host = d.ns.dir().join("host");
    fixture(&d.ns.spec_dir(), &host);
    for (devices, e) in requests(&d.ns.spec_dir()) {
        let t = Instant::now();
        let o = d.run(&devices, &check::probe_script(&e));
        assert!(
            o.status.success(),
            "docker {devices:?}: {}",
            harness::text(&o)
        );
        check::verify(&e, &out(&o)).unwrap_or_else(|m| panic!("docker {devices:?}:\n{m}"));
        eprintln!(
            "docker {devices:?}: ok in {}\n{}",
            secs(t),
            arrived(&out(&o))
        );
    }
    let e = check::expect(&d.ns.spec_dir(), &[GPU]).expect("expect");
    let o = d.run(&[], &check::probe_script(&e));
    assert_control_fails(&e, &out(&o));
    let o = d.run(&["exliar.dev/gpu=9"], "true");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unresolvable CDI devices exliar.dev/gpu=9"),
        "{}",
        harness::text(&o)
    );
    eprintln!("docker_injects_nodes_env_mounts: {}", secs(t0));
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

#[test]
fn cri_injects_nodes_env_mounts() {
    let _g = harness::serial();
    let t0 = Instant::now();
    let Some(c) = skip_or("cri_injects_nodes_env_mounts", Containerd::start()) else {
        return;
    };
    let host = c.ns.dir().join("host");
    fixture(&c.ns.spec_dir(), &host);
    let spec_dir = c.ns.spec_dir();
    let mut batch = Vec::new();
    let mut expects = Vec::new();
    for (i, (devices, e)) in requests(&spec_dir).into_iter().enumerate() {
        // The KEP-4009 field the kubelet fills from a device plugin's CDIDevices.
        let mut k = sh(&format!("field-{i}"), &check::probe_script(&e));
        k.cdi_devices = devices.iter().map(|d| d.to_string()).collect();
        batch.push(k);
        expects.push(Some(e.clone()));
        // The older annotation route: cdi.k8s.io/<key> = comma-separated names.
        let mut k = sh(&format!("annotation-{i}"), &check::probe_script(&e));
        k.annotations = vec![("cdi.k8s.io/exliar".into(), devices.join(","))];
        batch.push(k);
        expects.push(Some(e));
    }
    let control = check::expect(&spec_dir, &[GPU]).expect("expect");
    batch.push(sh("control", &check::probe_script(&control)));
    expects.push(None);
    let mut unknown = sh("unknown", "true");
    unknown.cdi_devices = vec!["exliar.dev/gpu=9".into()];
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
                        .contains("unresolvable CDI devices exliar.dev/gpu=9"),
                    "{r:?}"
                );
            }
            (name, Some(e)) => {
                assert!(r.created && r.exit_code == Some(0), "cri {name}: {r:?}");
                check::verify(e, &r.log).unwrap_or_else(|m| panic!("cri {name}:\n{m}"));
                eprintln!("cri {name}: ok\n{}", arrived(&r.log));
            }
            (name, None) => panic!("unexpected result {name}"),
        }
    }
    eprintln!("cri_injects_nodes_env_mounts: {}", secs(t0));
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

/// Every engine leaves nothing behind: no process mentions its directory, the
/// directory is gone, the host's /etc/cdi, /var/run/cdi and /var/lib/containers are as
/// they were.
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
    ];
    let before: Vec<bool> = watched.iter().map(|p| Path::new(p).exists()).collect();
    let mut dirs = Vec::new();
    let p = match Podman::start() {
        Ok(p) => p,
        Err(why) => return harness::skip("engines_clean_up_after_themselves", &why),
    };
    let o = p.run(&[], "true", false);
    assert!(o.status.success(), "{}", harness::text(&o));
    dirs.push(p.ns.dir().to_path_buf());
    drop(p);
    let d = skip_or("engines_clean_up_after_themselves", Docker::start());
    let Some(d) = d else { return };
    let o = d.run(&[], "true");
    assert!(o.status.success(), "{}", harness::text(&o));
    dirs.push(d.ns.dir().to_path_buf());
    drop(d);
    let Some(c) = skip_or("engines_clean_up_after_themselves", Containerd::start()) else {
        return;
    };
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
