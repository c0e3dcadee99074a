//! `exliar-device-plugin`: offers the host's GPUs and vfio-pci cards to
//! the kubelet, one resource each, and answers Allocate with CDI names
//! (see README.md).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use exliar_device_plugin::run::{Config, run};

/// Kubernetes device plugin for the host's GPUs and vfio-pci cards.
///
/// Offers `exliar.dev/gpu-nvidia`, `exliar.dev/gpu-amd`,
/// `exliar.dev/gpu-intel` (cards a GPU driver holds) and
/// `exliar.dev/vfio-VVVV-DDDD` (cards on vfio-pci, by vendor:device), one
/// plugin socket per resource, each registered with the kubelet. Device
/// IDs are PCI addresses; Allocate answers with CDI device names
/// (`exliar.dev/gpu=0000:03:00.0`) and a `cdi.k8s.io/` annotation, and
/// the specs they name are written with `exliar cdi generate` at start
/// and whenever the device set changes. A card that is gone or on
/// another driver is reported Unhealthy. SIGTERM or SIGINT: stop, remove
/// the sockets, exit 0. Logs go to stderr (RUST_LOG filters them).
#[derive(Debug, Parser)]
#[command(name = "exliar-device-plugin", version)]
struct Args {
    /// The host root: sysfs and the CDI directory are read and written
    /// under it.
    #[arg(long, default_value = "/", value_name = "DIR")]
    root: PathBuf,
    /// The kubelet's device-plugin directory: the plugin sockets are
    /// made here and the kubelet's socket is found here.
    #[arg(
        long,
        default_value = "/var/lib/kubelet/device-plugins",
        value_name = "DIR"
    )]
    socket_dir: PathBuf,
    /// The kubelet's registration socket, a file name in --socket-dir.
    #[arg(long, default_value = "kubelet.sock", value_name = "NAME")]
    kubelet_socket: String,
    /// The exliar program that writes the CDI specs.
    #[arg(long, default_value = "exliar", value_name = "PATH")]
    exliar: PathBuf,
    /// Where the CDI specs go, as the host names it (inside --root).
    #[arg(long, default_value = "/var/run/cdi", value_name = "DIR")]
    cdi_dir: String,
    /// How often the host (health, new cards) and the sockets (kubelet
    /// restarts) are looked at, in milliseconds.
    #[arg(long, default_value_t = 2000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    poll_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cfg = Config {
        root: args.root,
        socket_dir: args.socket_dir,
        kubelet_socket: args.kubelet_socket,
        exliar: args.exliar,
        cdi_dir: args.cdi_dir,
        poll: Duration::from_millis(args.poll_ms),
    };
    let r = rt.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = int.recv() => tracing::info!("SIGINT"),
            }
        };
        run(cfg, shutdown).await
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
