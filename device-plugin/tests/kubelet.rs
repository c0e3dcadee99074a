//! The plugin binary against a fake kubelet: this harness serves
//! `Registration` on a temporary `kubelet.sock`, starts
//! `exliar-device-plugin` on a copy of a fixture host (hw17: i915,
//! amdgpu, and an RX 550 on vfio-pci) and talks to each plugin socket as
//! the kubelet does. The CDI specs are written by the real `exliar`
//! binary: `target/<profile>/exliar`, next to this test's own directory
//! (`cargo test --workspace` builds it; `EXLIAR_BIN` overrides it).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use exliar_device_plugin::api::device_plugin_client::DevicePluginClient;
use exliar_device_plugin::api::registration_server::{Registration, RegistrationServer};
use exliar_device_plugin::api::{
    AllocateRequest, ContainerAllocateRequest, ContainerPreferredAllocationRequest, Empty,
    ListAndWatchResponse, PreferredAllocationRequest, RegisterRequest,
};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint, Server, Uri};
use tonic::{Code, Request, Response, Status, Streaming};

const FIXTURE: &str = "hw17-alderlake-asus-rx6700xt-rx550-vfio";
const AMD: &str = "exliar.dev/gpu-amd";
const INTEL: &str = "exliar.dev/gpu-intel";
const VFIO: &str = "exliar.dev/vfio-1002-67ff";
const WAIT: Duration = Duration::from_secs(20);

/// The exliar binary the plugin runs to write the CDI specs.
fn exliar_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("EXLIAR_BIN") {
        return p.into();
    }
    // target/<profile>/deps/kubelet-HASH → target/<profile>/exliar
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("exliar");
    assert!(
        p.is_file(),
        "{} is not built: run `cargo build` (or `cargo test --workspace`, which builds it), or set EXLIAR_BIN",
        p.display()
    );
    p
}

struct Kubelet(mpsc::UnboundedSender<RegisterRequest>);

#[tonic::async_trait]
impl Registration for Kubelet {
    async fn register(&self, r: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let _ = self.0.send(r.into_inner());
        Ok(Response::new(Empty {}))
    }
}

/// Serve Registration on `path` until the sender is used or dropped.
fn serve_kubelet(path: &Path, tx: mpsc::UnboundedSender<RegisterRequest>) -> oneshot::Sender<()> {
    let listener = UnixListener::bind(path).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        Server::builder()
            .add_service(RegistrationServer::new(Kubelet(tx)))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    stop
}

async fn channel(path: PathBuf) -> Channel {
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(p).await?)) }
        }))
        .await
        .unwrap()
}

/// The next `n` registrations, by resource name.
async fn registrations(
    rx: &mut mpsc::UnboundedReceiver<RegisterRequest>,
    n: usize,
) -> Vec<RegisterRequest> {
    let mut out = Vec::new();
    while out.len() < n {
        let r = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {n} registrations in {WAIT:?}: {out:?}",
                    out.len()
                )
            })
            .unwrap();
        out.push(r);
    }
    out.sort_by(|a, b| a.resource_name.cmp(&b.resource_name));
    out
}

async fn next(stream: &mut Streaming<ListAndWatchResponse>) -> Vec<(String, String, Vec<i64>)> {
    let r = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("a ListAndWatch response in time")
        .expect("the stream is open")
        .unwrap();
    r.devices
        .into_iter()
        .map(|d| {
            let numa = d
                .topology
                .map(|t| t.nodes.iter().map(|n| n.id).collect())
                .unwrap_or_default();
            (d.id, d.health, numa)
        })
        .collect()
}

/// The plugin process; killed (and its log shown) when a test fails.
struct Plugin {
    child: Option<Child>,
    log: PathBuf,
}

impl Plugin {
    fn start(root: &Path, dir: &Path, log: PathBuf) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_exliar-device-plugin"))
            .arg("--root")
            .arg(root)
            .arg("--socket-dir")
            .arg(dir)
            .arg("--exliar")
            .arg(exliar_bin())
            .args(["--poll-ms", "200"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Plugin {
            child: Some(child),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- exliar-device-plugin's log\n{}", self.log());
        }
    }
}

fn sockets(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

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
    let root = tmp.path().join("root");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/hosts")
        .join(FIXTURE);
    let st = Command::new("cp")
        .arg("-a")
        .arg(&fixture)
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
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
    let regs = registrations(&mut rx, 3).await;
    let names: Vec<&str> = regs.iter().map(|r| r.resource_name.as_str()).collect();
    assert_eq!(names, [AMD, INTEL, VFIO]);
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
    let regs = registrations(&mut rx, 3).await;
    let names: Vec<&str> = regs.iter().map(|r| r.resource_name.as_str()).collect();
    assert_eq!(names, [AMD, INTEL, VFIO]);

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
