//! What the device plugin's tests share: a fake kubelet (Registration on a
//! temporary `kubelet.sock`), a client for a plugin socket, and the plugin
//! process.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use exliar_device_plugin::api::registration_server::{Registration, RegistrationServer};
use exliar_device_plugin::api::{Empty, ListAndWatchResponse, RegisterRequest};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint, Server, Uri};
use tonic::{Request, Response, Status, Streaming};

pub const FIXTURE: &str = "hw17-alderlake-asus-rx6700xt-rx550-vfio";
pub const AMD: &str = "exliar.dev/gpu-amd";
pub const INTEL: &str = "exliar.dev/gpu-intel";
pub const VFIO: &str = "exliar.dev/vfio-1002-67ff";
/// The RX 550's HDMI audio, on vfio-pci in the card's group.
pub const VFIO_AUDIO: &str = "exliar.dev/vfio-1002-aae0";
/// Every resource hw17 offers, in name order.
pub const ALL: [&str; 4] = [AMD, INTEL, VFIO, VFIO_AUDIO];
pub const WAIT: Duration = Duration::from_secs(20);

/// The exliar binary the plugin runs to write the CDI specs.
pub fn exliar_bin() -> PathBuf {
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

pub struct Kubelet(mpsc::UnboundedSender<RegisterRequest>);

#[tonic::async_trait]
impl Registration for Kubelet {
    async fn register(&self, r: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let _ = self.0.send(r.into_inner());
        Ok(Response::new(Empty {}))
    }
}

/// Serve Registration on `path` until the sender is used or dropped.
pub fn serve_kubelet(
    path: &Path,
    tx: mpsc::UnboundedSender<RegisterRequest>,
) -> oneshot::Sender<()> {
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

pub async fn channel(path: PathBuf) -> Channel {
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(p).await?)) }
        }))
        .await
        .unwrap()
}

/// The next `n` registrations, by resource name.
pub async fn registrations(
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

pub async fn next(stream: &mut Streaming<ListAndWatchResponse>) -> Vec<(String, String, Vec<i64>)> {
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
pub struct Plugin {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Plugin {
    pub fn start(root: &Path, dir: &Path, log: PathBuf) -> Self {
        Self::start_with(root, dir, log, &exliar_bin())
    }

    /// With another exliar program.
    pub fn start_with(root: &Path, dir: &Path, log: PathBuf, exliar: &Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_exliar-device-plugin"))
            .arg("--root")
            .arg(root)
            .arg("--socket-dir")
            .arg(dir)
            .arg("--exliar")
            .arg(exliar)
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

    pub fn log(&self) -> String {
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

/// A copy (`cp -a`) of the fixture host `name` as `DIR/root`.
pub fn fixture_copy(name: &str, dir: &Path) -> PathBuf {
    let root = dir.join("root");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/hosts")
        .join(name);
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&fixture)
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {}", fixture.display());
    root
}

pub fn sockets(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}
