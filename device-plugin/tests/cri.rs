//! The containerd leg: what the plugin's Allocate answers, handed to a real
//! containerd 1.7 over CRI as the kubelet hands it — the CDI names in
//! `CDI_devices` (KEP-4009) in one container, the `cdi.k8s.io/` annotation
//! in another — and checked inside each container (device nodes with
//! their major:minor, mode and group, env). Reuses the root package's
//! containers tier (tests/containers/, by path): its private namespace,
//! containerd from Debian 13's package, busybox image and checks. Root
//! and the packages in tests/containers/apt-packages.txt, else SKIP (a
//! failure under CI), as that tier.
#![allow(clippy::unwrap_used)]

mod common;

// The root tier's harness, partly used here; top-level modules so that its
// `super::harness` paths resolve.
#[allow(dead_code, clippy::all)]
#[path = "../../tests/containers/check.rs"]
mod check;
#[allow(dead_code, clippy::all)]
#[path = "../../tests/containers/containerd.rs"]
mod containerd;
#[allow(dead_code, clippy::all)]
#[path = "../../tests/containers/harness.rs"]
mod harness;
#[allow(dead_code, clippy::all)]
#[path = "../../tests/containers/trixie.rs"]
mod trixie;

use std::collections::BTreeMap;
use std::time::Instant;

use common::{ALL, AMD, Plugin, VFIO, channel, registrations, serve_kubelet};
use containerd::{Containerd, CriContainer};
use exliar_device_plugin::api::device_plugin_client::DevicePluginClient;
use exliar_device_plugin::api::{AllocateRequest, ContainerAllocateRequest};
use harness::{HW17, secs};
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_runs_what_the_plugin_allocates() {
    let t0 = Instant::now();
    let c = match Containerd::start() {
        Ok(c) => c,
        Err(why) => return harness::skip("containerd_runs_what_the_plugin_allocates", &why),
    };
    // The host: hw17 copied with its device nodes made; no specs yet.
    let root = c.ns.dir().join(HW17);
    harness::fixture_host(HW17, &root).unwrap();
    // Sockets in a short path (108 bytes at most).
    let sockets = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _kubelet = serve_kubelet(&sockets.path().join("kubelet.sock"), tx);
    let log = c.ns.dir().join("device-plugin.log");
    let plugin = Plugin::start(&root, sockets.path(), log);
    let regs = registrations(&mut rx, ALL.len()).await;
    let endpoint = |res: &str| {
        sockets.path().join(
            &regs
                .iter()
                .find(|r| r.resource_name == res)
                .unwrap()
                .endpoint,
        )
    };
    // The kubelet's Allocate for a pod asking for the AMD GPU and the
    // vfio card.
    let mut cdi = Vec::new();
    let mut annotations = BTreeMap::new();
    for (res, id) in [(AMD, "0000:03:00.0"), (VFIO, "0000:04:00.0")] {
        let mut p = DevicePluginClient::new(channel(endpoint(res)).await);
        let r = p
            .allocate(AllocateRequest {
                container_requests: vec![ContainerAllocateRequest {
                    devices_ids: vec![id.into()],
                }],
            })
            .await
            .unwrap()
            .into_inner();
        let c = &r.container_responses[0];
        eprintln!(
            "Allocate({res}, {id}) -> cdi_devices {:?}, envs {:?}, annotations {:?}",
            c.cdi_devices.iter().map(|d| &d.name).collect::<Vec<_>>(),
            c.envs,
            c.annotations
        );
        cdi.extend(c.cdi_devices.iter().map(|d| d.name.clone()));
        annotations.extend(c.annotations.clone());
    }
    assert_eq!(
        cdi,
        [
            "exliar.dev/gpu=0000:03:00.0",
            "exliar.dev/vfio=0000:04:00.0"
        ]
    );
    drop(plugin);
    // The specs the plugin had exliar write under the root, into the
    // engine's spec directory (/var/run/cdi in its namespace).
    let written = check::in_root(&root, std::path::Path::new(harness::CDI_OUTPUT)).unwrap();
    let spec_dir = c.ns.spec_dir();
    std::fs::create_dir_all(&spec_dir).unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(&written).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            std::fs::copy(&p, spec_dir.join(p.file_name().unwrap())).unwrap();
            n += 1;
        }
    }
    assert!(n > 0, "no spec under {}", written.display());
    c.ns.show_host(&root).unwrap();
    let names: Vec<&str> = cdi.iter().map(String::as_str).collect();
    let e = check::expect_rooted(&spec_dir, &names, Some(&root)).unwrap();
    assert!(
        e.nodes.iter().any(|n| n.path == "/dev/kfd")
            && e.nodes.iter().any(|n| n.path == "/dev/vfio/vfio"),
        "{:?}",
        e.nodes
    );
    let probe = check::probe_script(&e);
    let sh = |name: &str| CriContainer {
        name: name.into(),
        command: vec!["sh".into(), "-c".into(), probe.clone()],
        ..Default::default()
    };
    let mut field = sh("field");
    field.cdi_devices = cdi.clone();
    let mut annotated = sh("annotation");
    annotated.annotations = annotations.into_iter().collect();
    // A container without the devices must fail the same check.
    let control = sh("control");
    let results = c.run_batch(&[field, annotated, control]);
    assert_eq!(results.len(), 3, "{results:?}");
    let (control, results) = results.split_last().unwrap();
    assert_eq!(control.exit_code, Some(0), "{control:?}");
    assert!(
        check::verify(&e, &control.log).is_err(),
        "the check passes without the devices: {control:?}"
    );
    for r in results {
        assert!(r.created && r.exit_code == Some(0), "cri {}: {r:?}", r.name);
        check::verify(&e, &r.log).unwrap_or_else(|m| panic!("cri {}:\n{m}", r.name));
        eprintln!("cri {}: ok", r.name);
        for l in r.log.lines().filter(|l| {
            l.starts_with("node|") || l.starts_with("env|EXLIAR") || l.starts_with("mount|")
        }) {
            eprintln!("    {l}");
        }
    }
    eprintln!("containerd_runs_what_the_plugin_allocates: {}", secs(t0));
}
