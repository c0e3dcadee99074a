//! The plugin process: one server per resource, registration with the
//! kubelet, polling the host for health, the kubelet's restarts and the
//! CDI specs.

use std::collections::BTreeMap;
use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Endpoint, Server, Uri};

use crate::api;
use crate::discover::{Found, State, device_set, discover, fingerprint, merge};
use crate::plugin::{HEALTHY, Plugin, UNHEALTHY, options};

/// The API version registered with the kubelet.
pub const VERSION: &str = "v1beta1";
/// The longest wait between two registration tries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Polls between two full reads of the host when its PCI devices and
/// their drivers look the same (device nodes, NUMA, user space).
const FULL_READ_EVERY: u32 = 15;
/// Full reads after a change: udev makes device nodes a moment after the
/// driver binds.
const SETTLE_READS: u32 = 2;

/// What the process is told.
#[derive(Debug, Clone)]
pub struct Config {
    /// The host root (`/`).
    pub root: PathBuf,
    /// The kubelet's device-plugin directory.
    pub socket_dir: PathBuf,
    /// The kubelet's socket's file name in `socket_dir`.
    pub kubelet_socket: String,
    /// The exliar program.
    pub exliar: PathBuf,
    /// The CDI spec directory as the host names it (`/var/run/cdi`).
    pub cdi_dir: String,
    /// How often the host and the sockets are looked at.
    pub poll: Duration,
}

/// The socket file name of a resource: `exliar-gpu-amd.sock`.
pub fn socket_name(resource: &str) -> String {
    let short = resource.rsplit('/').next().unwrap_or(resource);
    format!("exliar-{short}.sock")
}

/// (device, inode) of a file, `None` when it is not there.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// A resource's running server.
struct Served {
    resource: String,
    socket: PathBuf,
    id: Option<(u64, u64)>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    registered: bool,
    next_try: Instant,
    backoff: Duration,
}

impl Served {
    fn start(dir: &Path, resource: &str, state: &watch::Receiver<State>) -> anyhow::Result<Self> {
        let socket = dir.join(socket_name(resource));
        // A socket left by an earlier run: nobody serves it.
        if file_id(&socket).is_some() {
            std::fs::remove_file(&socket)?;
        }
        let listener = UnixListener::bind(&socket)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", socket.display()))?;
        let id = file_id(&socket);
        let (stop, stop_rx) = watch::channel(false);
        let svc = api::device_plugin_server::DevicePluginServer::new(Plugin {
            resource: resource.to_string(),
            state: state.clone(),
            stop: stop_rx.clone(),
        });
        let name = resource.to_string();
        let mut down = stop_rx;
        let task = tokio::spawn(async move {
            let r = Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                    let _ = down.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = r {
                tracing::error!("{name}: server failed: {e}");
            }
        });
        tracing::info!("{resource}: serving on {}", socket.display());
        Ok(Served {
            resource: resource.to_string(),
            socket,
            id,
            stop,
            task,
            registered: false,
            next_try: Instant::now(),
            backoff: FIRST_BACKOFF,
        })
    }

    /// Stop serving; remove the socket when it is still ours.
    async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            tracing::warn!("{}: server did not stop in 5 s; aborted", self.resource);
            task.abort();
        }
        if self.id.is_some()
            && file_id(&self.socket) == self.id
            && let Err(e) = std::fs::remove_file(&self.socket)
        {
            tracing::warn!("cannot remove {}: {e}", self.socket.display());
        }
    }

    fn socket_gone(&self) -> bool {
        file_id(&self.socket) != self.id
    }
}

/// Register `resource` (served at `endpoint` in the socket directory)
/// with the kubelet listening on `kubelet`.
pub async fn register(kubelet: &Path, endpoint: &str, resource: &str) -> anyhow::Result<()> {
    let path = kubelet.to_path_buf();
    let connect = async move {
        let channel = Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let p = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(p).await?)) }
            }))
            .await?;
        let mut client = api::registration_client::RegistrationClient::new(channel);
        client
            .register(api::RegisterRequest {
                version: VERSION.into(),
                endpoint: endpoint.into(),
                resource_name: resource.into(),
                options: Some(options()),
            })
            .await?;
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| anyhow::anyhow!("no answer in 5 s"))?
}

/// Run `exliar --root ROOT cdi generate --output DIR --yes --json` and log
/// its outcome; whether it exited 0.
pub async fn cdi_generate(cfg: &Config) -> bool {
    let mut cmd = tokio::process::Command::new(&cfg.exliar);
    cmd.arg("--root")
        .arg(&cfg.root)
        .args([
            "cdi",
            "generate",
            "--output",
            &cfg.cdi_dir,
            "--yes",
            "--json",
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let shown = format!(
        "{} --root {} cdi generate --output {} --yes --json",
        cfg.exliar.display(),
        cfg.root.display(),
        cfg.cdi_dir
    );
    let out = match tokio::time::timeout(Duration::from_secs(120), cmd.output()).await {
        Err(_) => {
            tracing::error!("{shown}: no end in 120 s; killed");
            return false;
        }
        Ok(Err(e)) => {
            tracing::error!("cannot run {shown}: {e}");
            return false;
        }
        Ok(Ok(o)) => o,
    };
    let doc: Option<serde_json::Value> = serde_json::from_slice(&out.stdout).ok();
    let outcome = doc
        .as_ref()
        .and_then(|d| d.get("outcome"))
        .and_then(|o| o.as_str())
        .unwrap_or("(no JSON outcome)");
    let devices: Vec<&str> = doc
        .as_ref()
        .and_then(|d| d.get("specs"))
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("devices").and_then(|d| d.as_array()))
        .flatten()
        .filter_map(|d| d.as_str())
        .collect();
    if out.status.success() {
        tracing::info!(
            "CDI specs: {shown}: {outcome}; {} device names",
            devices.len()
        );
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String = err
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join(" | ");
        tracing::error!(
            "CDI specs: {shown} failed ({}): {outcome}: {}",
            out.status,
            tail.escape_debug()
        );
    }
    out.status.success()
}

async fn read_host(root: &Path) -> anyhow::Result<Found> {
    let root = root.to_path_buf();
    tokio::task::spawn_blocking(move || discover(&root)).await?
}

fn log_changes(old: &State, new: &State) {
    for (r, devs) in new {
        for (id, d) in devs {
            let was = old.get(r).and_then(|o| o.get(id)).map(|o| o.healthy);
            if was != Some(d.healthy) {
                let h = if d.healthy { HEALTHY } else { UNHEALTHY };
                tracing::info!("{r}: {id} {h}");
            }
        }
    }
}

/// Serve until `shutdown` completes, then stop every server and remove
/// its socket.
pub async fn run(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Shutdown as a flag too, so that a long step (registrations with a
    // kubelet that does not answer) ends early.
    let (stop_tx, mut stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopping = |stop: &watch::Receiver<bool>| *stop.borrow();
    let kubelet = cfg.socket_dir.join(&cfg.kubelet_socket);
    let mut found = match read_host(&cfg.root).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("cannot read the host at {}: {e:#}", cfg.root.display());
            Found::new()
        }
    };
    let mut last_set = device_set(&found);
    let mut last_print = fingerprint(&cfg.root);
    let mut since_full = 0u32;
    let mut settle = 0u32;
    let first = merge(&State::new(), &found);
    log_changes(&State::new(), &first);
    if first.is_empty() {
        tracing::warn!("no GPU to offer yet; polling");
    }
    let (state_tx, state_rx) = watch::channel(first);
    let mut specs_ok = cdi_generate(&cfg).await;
    let mut served: BTreeMap<String, Served> = BTreeMap::new();
    let mut kubelet_id = file_id(&kubelet);
    if kubelet_id.is_none() {
        tracing::warn!(
            "{} is not there (yet): serving, registering when it is",
            kubelet.display()
        );
    }
    let mut tick = tokio::time::interval(cfg.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // The kubelet's socket: a new one is a new kubelet; register again.
        let k = file_id(&kubelet);
        if k != kubelet_id {
            match k {
                Some(_) => tracing::info!("{} appeared: registering again", kubelet.display()),
                None => tracing::warn!(
                    "{} is gone: still serving, registering when it is back",
                    kubelet.display()
                ),
            }
            for s in served.values_mut() {
                s.registered = false;
                s.next_try = Instant::now();
                s.backoff = FIRST_BACKOFF;
            }
            kubelet_id = k;
        }
        // Our sockets: the kubelet wipes the directory when it restarts.
        let resources: Vec<String> = state_tx.borrow().keys().cloned().collect();
        for r in resources {
            if served.get(&r).is_some_and(Served::socket_gone) {
                tracing::warn!(
                    "{r}: socket {} vanished (kubelet restart?): serving anew",
                    served[&r].socket.display()
                );
                if let Some(s) = served.remove(&r) {
                    s.stop().await;
                }
            }
            if !served.contains_key(&r) {
                match Served::start(&cfg.socket_dir, &r, &state_rx) {
                    Ok(s) => {
                        served.insert(r.clone(), s);
                    }
                    Err(e) => tracing::error!("{r}: {e:#}"),
                }
            }
        }
        if kubelet_id.is_some() {
            for s in served.values_mut().filter(|s| !s.registered) {
                if stopping(&stop) {
                    break;
                }
                if Instant::now() < s.next_try {
                    continue;
                }
                let endpoint = socket_name(&s.resource);
                let r = tokio::select! {
                    r = register(&kubelet, &endpoint, &s.resource) => r,
                    _ = stop.wait_for(|s| *s) => break,
                };
                match r {
                    Ok(()) => {
                        tracing::info!(
                            "{}: registered with the kubelet (endpoint {endpoint})",
                            s.resource
                        );
                        s.registered = true;
                        s.backoff = FIRST_BACKOFF;
                    }
                    Err(e) => {
                        tracing::warn!(
                            "{}: registration failed: {e:#}; again in {:?}",
                            s.resource,
                            s.backoff
                        );
                        s.next_try = Instant::now() + s.backoff;
                        s.backoff = (s.backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = tick.tick() => {}
        }
        // A full read only when the cheap look says something changed,
        // shortly after, or every FULL_READ_EVERY polls.
        let print = fingerprint(&cfg.root);
        if print != last_print {
            settle = SETTLE_READS;
            last_print = print;
        } else if settle > 0 {
            settle -= 1;
        } else if since_full + 1 < FULL_READ_EVERY {
            since_full += 1;
            continue;
        }
        since_full = 0;
        match read_host(&cfg.root).await {
            Ok(f) => found = f,
            Err(e) => {
                tracing::warn!(
                    "cannot read the host at {}: {e:#}; keeping the last state",
                    cfg.root.display()
                );
                continue;
            }
        }
        let set = device_set(&found);
        let old = state_tx.borrow().clone();
        let new = merge(&old, &found);
        if new != old {
            log_changes(&old, &new);
            state_tx.send_replace(new);
        }
        if set != last_set {
            tracing::info!("the device set changed: writing the CDI specs again");
            specs_ok = cdi_generate(&cfg).await;
            last_set = set;
        } else if !specs_ok {
            tracing::info!("writing the CDI specs again (the last try failed)");
            specs_ok = cdi_generate(&cfg).await;
        }
    }
    tracing::info!("shutting down");
    for (_, s) in std::mem::take(&mut served) {
        s.stop().await;
    }
    Ok(())
}
