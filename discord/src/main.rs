//! `exliar-discord`: with no arguments, one exliar plugin request on
//! stdin and its answer on stdout; `serve`: Discord's interactions
//! endpoint (see README.md).

use std::io::{IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use exliar_discord::config::Config;
use exliar_discord::plugin::{self, Request};
use exliar_discord::serve::{self, Server};
use exliar_discord::webhook::{self, Outcome};

/// exliar's Discord plugin.
///
/// Run with no arguments (as exliar runs its plugins) it reads one
/// `exliar.plugin/1` request on stdin and answers on stdout: `event`
/// posts a message to the webhook of /etc/exliar/discord.toml (under
/// $EXLIAR_ROOT). `serve` is Discord's interactions endpoint for the
/// slash commands /vm list, /vm start, /vm stop and /status. Secrets
/// come from the config file (root-owned, 0600 or 0640) or the
/// environment (EXLIAR_DISCORD_WEBHOOK_URL, EXLIAR_DISCORD_PUBLIC_KEY),
/// never from the command line. Logs go to stderr (RUST_LOG filters
/// them).
#[derive(Debug, Parser)]
#[command(name = "exliar-discord", version)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve Discord's interactions endpoint (POST /interactions) over
    /// plain HTTP; put a TLS proxy in front of it.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8433.
        #[arg(long, value_name = "ADDR")]
        listen: SocketAddr,
        /// The root the config file is read under and exliar is pointed at.
        #[arg(long, default_value = "/", value_name = "DIR")]
        root: PathBuf,
        /// The config file (default: ROOT/etc/exliar/discord.toml).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// How long one exliar command may run, seconds.
        #[arg(long, default_value_t = 120, value_name = "S",
              value_parser = clap::value_parser!(u64).range(1..=840))]
        command_timeout: u64,
        /// After this long a command is answered "thinking" and its
        /// outcome edited in later (Discord waits 3 s at most).
        #[arg(long, default_value_t = 2500, value_name = "MS", hide = true,
              value_parser = clap::value_parser!(u64).range(1..=2900))]
        defer_after_ms: u64,
    },
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
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
    match args.command {
        None => plugin_main(),
        Some(Cmd::Serve {
            listen,
            root,
            config,
            command_timeout,
            defer_after_ms,
        }) => serve_main(listen, root, config, command_timeout, defer_after_ms),
    }
}

fn emit(v: &serde_json::Value) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{v}").and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("exliar-discord: cannot write the answer: {e}");
            ExitCode::from(2)
        }
    }
}

fn plugin_main() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().take(1 << 20).read_to_string(&mut input) {
        eprintln!("exliar-discord: cannot read the request on stdin: {e}");
        return ExitCode::from(2);
    }
    let req = match plugin::parse(&input) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("exliar-discord: {e}");
            return ExitCode::from(2);
        }
    };
    let answer = match req {
        Request::Describe => plugin::describe(),
        Request::Propose => plugin::propose(),
        Request::Unknown => plugin::failed("unknown request"),
        Request::Event(ev) => event(&ev),
    };
    emit(&answer)
}

fn event(ev: &serde_json::Value) -> serde_json::Value {
    let text = match plugin::message(ev) {
        Ok(t) => t,
        Err(e) => return plugin::failed(&e),
    };
    let root = PathBuf::from(
        env("EXLIAR_ROOT")
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "/".into()),
    );
    let cfg = match Config::load(&root, None, &env) {
        Ok(c) => c,
        Err(e) => return plugin::failed(&format!("{e:#}")),
    };
    let Some(url) = cfg.webhook_url.as_deref() else {
        return plugin::failed(&format!(
            "no webhook_url in {} (nor {})",
            root.join(exliar_discord::config::CONFIG_PATH).display(),
            exliar_discord::config::ENV_WEBHOOK
        ));
    };
    match webhook::send(url, &text, &cfg.rate_limit) {
        Outcome::Sent { .. } => plugin::ok(),
        Outcome::Failed { error, .. } => {
            tracing::warn!("{error}");
            plugin::failed(&error)
        }
    }
}

fn serve_main(
    listen: SocketAddr,
    root: PathBuf,
    config: Option<PathBuf>,
    command_timeout: u64,
    defer_after_ms: u64,
) -> ExitCode {
    let cfg = match Config::load(&root, config.as_deref(), &env) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e:#}");
            return ExitCode::from(2);
        }
    };
    if cfg.public_key.is_none() {
        tracing::error!(
            "no public_key in the config file nor {}: Discord's requests cannot be verified",
            exliar_discord::config::ENV_PUBLIC_KEY
        );
        return ExitCode::from(2);
    }
    if cfg.allowed_users.is_empty() {
        tracing::warn!("allowed_users is empty: every command will be refused");
    }
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
    let server = Arc::new(Server {
        config: cfg,
        root,
        defer_after: Duration::from_millis(defer_after_ms),
        command_timeout: Duration::from_secs(command_timeout),
    });
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!("listening on {listen} (POST /interactions)");
        let shutdown = async {
            let term = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = term => {}
            }
            tracing::info!("stopping");
        };
        match axum::serve(listener, serve::router(server))
            .with_graceful_shutdown(shutdown)
            .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("serving: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
