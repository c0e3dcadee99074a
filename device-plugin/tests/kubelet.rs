//! The plugin binary against a fake kubelet: this harness serves
//! `Registration` on a temporary `kubelet.sock`, starts
//! `exliar-device-plugin` on a copy of a fixture host (hw17: i915,
//! amdgpu, and an RX 550 on vfio-pci) and talks to each plugin socket as
//! the kubelet does. The CDI specs are written by the real `exliar`
//! binary: `target/<profile>/exliar`, next to this test's own directory
//! (`cargo test --workspace` builds it; `EXLIAR_BIN` overrides it).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    ALL, AMD, FIXTURE, INTEL, Plugin, VFIO, VFIO_AUDIO, WAIT, channel, fixture_copy, next,
    registrations, serve_kubelet, sockets,
};
use exliar_device_plugin::api::device_plugin_client::DevicePluginClient;
use exliar_device_plugin::api::{
    AllocateRequest, ContainerAllocateRequest, ContainerPreferredAllocationRequest, Empty,
    PreferredAllocationRequest,
};
use std::collections::BTreeSet;
use tokio::sync::mpsc;
use tonic::Code;

/// The CDI spec file of `file` under the root, and its device names.
fn spec_names(root: &Path, file: &str) -> Vec<String> {
    let p = root.join("var/run/cdi").join(file);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let spec: serde_json::Value = serde_json::from_str(&text).unwrap();
    spec["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plays_the_kubelet() {
    let tmp = tempfile::tempdir().unwrap();
    let root = fixture_copy(FIXTURE, tmp.path());
    let dev = |a: &str| std::fs::canonicalize(root.join("sys/bus/pci/devices").join(a)).unwrap();
    // NUMA: the captured host has none; give the AMD card node 0 and the
    // Intel one -1 (sysfs' "no node").
    std::fs::write(dev("0000:03:00.0").join("numa_node"), "0\n").unwrap();
    std::fs::write(dev("0000:00:02.0").join("numa_node"), "-1\n").unwrap();
    let dir = tmp.path().join("dp");
    std::fs::create_dir(&dir).unwrap();
    let kubelet_sock = dir.join("kubelet.sock");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let kubelet = serve_kubelet(&kubelet_sock, tx.clone());
    let mut plugin = Plugin::start(&root, &dir, tmp.path().join("plugin.log"));

    // One registration per resource.
    let regs = registrations(&mut rx, ALL.len()).await;
    let names: Vec<&str> = regs.iter().map(|r| r.resource_name.as_str()).collect();
    assert_eq!(names, ALL);
    for r in &regs {
        assert_eq!(r.version, "v1beta1");
        assert!(!r.endpoint.contains('/'), "{}", r.endpoint);
        assert!(dir.join(&r.endpoint).exists(), "{}", r.endpoint);
        assert!(
            r.options
                .as_ref()
                .unwrap()
                .get_preferred_allocation_available
        );
    }
    let endpoint = |res: &str| {
        dir.join(
            &regs
                .iter()
                .find(|r| r.resource_name == res)
                .unwrap()
                .endpoint,
        )
    };

    // Each plugin: options, its devices.
    let mut amd = DevicePluginClient::new(channel(endpoint(AMD)).await);
    let mut intel = DevicePluginClient::new(channel(endpoint(INTEL)).await);
    let mut vfio = DevicePluginClient::new(channel(endpoint(VFIO)).await);
    let opts = amd
        .get_device_plugin_options(Empty {})
        .await
        .unwrap()
        .into_inner();
    assert!(opts.get_preferred_allocation_available && !opts.pre_start_required);
    let mut amd_stream = amd.list_and_watch(Empty {}).await.unwrap().into_inner();
    let h = || "Healthy".to_string();
    assert_eq!(
        next(&mut amd_stream).await,
        [("0000:03:00.0".into(), h(), vec![0])]
    );
    let mut s = intel.list_and_watch(Empty {}).await.unwrap().into_inner();
    assert_eq!(next(&mut s).await, [("0000:00:02.0".into(), h(), vec![])]);
    let mut s = vfio.list_and_watch(Empty {}).await.unwrap().into_inner();
    assert_eq!(next(&mut s).await, [("0000:04:00.0".into(), h(), vec![])]);

    // Allocate: CDI names and the annotation; the specs exist.
    let alloc = |ids: &[&str]| AllocateRequest {
        container_requests: vec![ContainerAllocateRequest {
            devices_ids: ids.iter().map(|s| s.to_string()).collect(),
        }],
    };
    let r = amd
        .allocate(alloc(&["0000:03:00.0"]))
        .await
        .unwrap()
        .into_inner();
    let c = &r.container_responses[0];
    let cdi: Vec<&str> = c.cdi_devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(cdi, ["exliar.dev/gpu=0000:03:00.0"]);
    assert_eq!(
        c.annotations
            .get("cdi.k8s.io/exliar-device-plugin_gpu-amd")
            .map(String::as_str),
        Some("exliar.dev/gpu=0000:03:00.0")
    );
    let r = vfio
        .allocate(alloc(&["0000:04:00.0"]))
        .await
        .unwrap()
        .into_inner();
    let c = &r.container_responses[0];
    let cdi: Vec<&str> = c.cdi_devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(cdi, ["exliar.dev/vfio=0000:04:00.0"]);
    assert_eq!(
        c.annotations
            .get("cdi.k8s.io/exliar-device-plugin_vfio-1002-67ff")
            .map(String::as_str),
        Some("exliar.dev/vfio=0000:04:00.0")
    );
    assert_eq!(
        c.envs
            .get("PCI_RESOURCE_EXLIAR_DEV_VFIO-1002-67FF")
            .map(String::as_str),
        Some("0000:04:00.0"),
        "KubeVirt's variable"
    );
    // The card's audio function: its own resource, the card's CDI device
    // (the group's node).
    let mut audio = DevicePluginClient::new(channel(endpoint(VFIO_AUDIO)).await);
    let mut s = audio.list_and_watch(Empty {}).await.unwrap().into_inner();
    assert_eq!(next(&mut s).await, [("0000:04:00.1".into(), h(), vec![])]);
    let r = audio
        .allocate(alloc(&["0000:04:00.1"]))
        .await
        .unwrap()
        .into_inner();
    let c = &r.container_responses[0];
    let cdi: Vec<&str> = c.cdi_devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(cdi, ["exliar.dev/vfio=0000:04:00.0"]);
    assert_eq!(
        c.envs
            .get("PCI_RESOURCE_EXLIAR_DEV_VFIO-1002-AAE0")
            .map(String::as_str),
        Some("0000:04:00.1")
    );
    assert!(spec_names(&root, "exliar-gpu.json").contains(&"0000:03:00.0".to_string()));
    assert!(spec_names(&root, "exliar-vfio.json").contains(&"0000:04:00.0".to_string()));

    // GetPreferredAllocation: what it must have first.
    let r = amd
        .get_preferred_allocation(PreferredAllocationRequest {
            container_requests: vec![ContainerPreferredAllocationRequest {
                available_device_i_ds: vec!["0000:03:00.0".into()],
                must_include_device_i_ds: vec![],
                allocation_size: 1,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.container_responses[0].device_i_ds, ["0000:03:00.0"]);

    // An unknown device: an error, and the plugin still serves.
    let e = amd.allocate(alloc(&["0000:99:00.0"])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    amd.get_device_plugin_options(Empty {}).await.unwrap();

    // Health: the driver let go of the card → Unhealthy; back → Healthy.
    let link = dev("0000:03:00.0").join("driver");
    let target = std::fs::read_link(&link).unwrap();
    std::fs::remove_file(&link).unwrap();
    assert_eq!(
        next(&mut amd_stream).await,
        [("0000:03:00.0".into(), "Unhealthy".into(), vec![0])]
    );
    let e = amd.allocate(alloc(&["0000:03:00.0"])).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert_eq!(
        next(&mut amd_stream).await,
        [("0000:03:00.0".into(), h(), vec![0])]
    );
    amd.allocate(alloc(&["0000:03:00.0"])).await.unwrap();

    // The kubelet restarts: it removes the plugin's socket → served anew
    // and registered again.
    std::fs::remove_file(endpoint(AMD)).unwrap();
    let regs = registrations(&mut rx, 1).await;
    assert_eq!(regs[0].resource_name, AMD);
    let mut amd = DevicePluginClient::new(channel(endpoint(AMD)).await);
    let mut s = amd.list_and_watch(Empty {}).await.unwrap().into_inner();
    assert_eq!(next(&mut s).await, [("0000:03:00.0".into(), h(), vec![0])]);

    // The kubelet's socket goes away mid-stream: the plugin keeps
    // serving, and registers every resource again when it is back.
    let _ = kubelet.send(());
    std::fs::remove_file(&kubelet_sock).unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    amd.get_device_plugin_options(Empty {}).await.unwrap();
    let mut vfio = DevicePluginClient::new(channel(endpoint(VFIO)).await);
    vfio.allocate(alloc(&["0000:04:00.0"])).await.unwrap();
    assert!(rx.try_recv().is_err(), "no registration without a kubelet");
    let _kubelet = serve_kubelet(&kubelet_sock, tx);
    let regs = registrations(&mut rx, ALL.len()).await;
    let names: Vec<&str> = regs.iter().map(|r| r.resource_name.as_str()).collect();
    assert_eq!(names, ALL);

    // SIGTERM: exit 0, its sockets removed.
    let mut child = plugin.child.take().unwrap();
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}\n{}", plugin.log());
    assert_eq!(sockets(&dir), BTreeSet::from(["kubelet.sock".to_string()]));
    let log = plugin.log();
    assert!(log.contains("CDI specs:"), "{log}");
}

/// A kubelet that takes the connection and never answers: SIGTERM still
/// ends the plugin at once (not after the registration's timeout) and
/// removes its sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_kubelet_hangs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = fixture_copy(FIXTURE, tmp.path());
    let dir = tmp.path().join("dp");
    std::fs::create_dir(&dir).unwrap();
    let _hung = std::os::unix::net::UnixListener::bind(dir.join("kubelet.sock")).unwrap();
    let mut plugin = Plugin::start(&root, &dir, tmp.path().join("plugin.log"));
    // Serving, and stuck registering.
    let deadline = std::time::Instant::now() + WAIT;
    while sockets(&dir).len() < 1 + ALL.len() {
        assert!(std::time::Instant::now() < deadline, "no sockets");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut child = plugin.child.take().unwrap();
    let t = std::time::Instant::now();
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < WAIT, "still running after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}\n{}", plugin.log());
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?} to stop\n{}",
        t.elapsed(),
        plugin.log()
    );
    assert_eq!(sockets(&dir), BTreeSet::from(["kubelet.sock".to_string()]));
}

/// exliar cannot be run: the plugin says so, serves anyway, and tries
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_when_exliar_cannot_run() {
    let tmp = tempfile::tempdir().unwrap();
    let root = fixture_copy(FIXTURE, tmp.path());
    let dir = tmp.path().join("dp");
    std::fs::create_dir(&dir).unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _kubelet = serve_kubelet(&dir.join("kubelet.sock"), tx);
    let missing = tmp.path().join("no-exliar");
    let plugin = Plugin::start_with(&root, &dir, tmp.path().join("plugin.log"), &missing);
    let regs = registrations(&mut rx, ALL.len()).await;
    let amd = dir.join(
        &regs
            .iter()
            .find(|r| r.resource_name == AMD)
            .unwrap()
            .endpoint,
    );
    let mut amd = DevicePluginClient::new(channel(amd).await);
    let r = amd
        .allocate(AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: vec!["0000:03:00.0".into()],
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.container_responses[0].cdi_devices.len(), 1);
    // 15 polls of 200 ms: a full read, and exliar tried again.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let log = plugin.log();
        if log.contains("cannot run") && log.contains("the last try failed") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!root.join("var/run/cdi").exists());
}
