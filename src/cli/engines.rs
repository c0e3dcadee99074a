//! `exliar runtime list|configure`: container engines and CDI. The work is
//! in [`crate::runtime`]; plans are applied like `exliar hooks install`.

use std::path::Path;

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use super::{boot, exit, term};
use crate::host::HostRoot;
use crate::runtime::configure::{self, Configured, DEFAULT_DIRS, Outcome};
use crate::runtime::{self, Engine, EngineKind};

#[derive(Debug, Args)]
pub struct RuntimeCmd {
    #[command(subcommand)]
    pub command: RuntimeSub,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum RuntimeSub {
    /// The container engines found under the root (dpkg, pacman; `--version` on the live root): version, where from, whether it can do CDI and the newest cdiVersion it loads, and whether its configuration turns CDI on now
    List(ListArgs),
    /// Turn CDI on in an engine's own configuration, as a transaction (diff, confirm, `exliar rollback` undoes it): Docker's /etc/docker/daemon.json (features.cdi, cdi-spec-dirs), containerd's /etc/containerd/config.toml (enable_cdi, cdi_spec_dirs); Podman ≥ 4.1 needs nothing (a check of the directories it reads). The engine is not restarted: restart it afterwards
    Configure(ConfigureArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print the versioned JSON document (exliar.runtimes/1)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EngineArg {
    Podman,
    Docker,
    Containerd,
}

impl From<EngineArg> for EngineKind {
    fn from(e: EngineArg) -> Self {
        match e {
            EngineArg::Podman => EngineKind::Podman,
            EngineArg::Docker => EngineKind::Docker,
            EngineArg::Containerd => EngineKind::Containerd,
        }
    }
}

#[derive(Debug, Args)]
pub struct ConfigureArgs {
    /// The engine to configure
    pub engine: EngineArg,
    /// Apply without asking
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print the versioned JSON document (exliar.runtime-configure/1)
    #[arg(long)]
    pub json: bool,
    /// Directories the engine should read CDI specs from (absolute; default /etc/cdi and /var/run/cdi); directories it reads already are kept
    #[arg(long = "spec-dir", value_name = "DIR", num_args = 1..)]
    pub spec_dirs: Vec<String>,
    /// The engine's version, when exliar cannot find it under the root (an rpm-based target root)
    #[arg(long, value_name = "VERSION")]
    pub assume_version: Option<String>,
}

pub fn run(root: &Path, a: &RuntimeCmd) -> anyhow::Result<u8> {
    match &a.command {
        RuntimeSub::List(l) => list(root, l),
        RuntimeSub::Configure(c) => configure_cmd(root, c),
    }
}

#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    engine: &'a Engine,
    configured: Configured,
}

fn print(v: &serde_json::Value) -> anyhow::Result<()> {
    term::out(&format!("{}\n", serde_json::to_string_pretty(v)?))?;
    Ok(())
}

fn cdi_line(e: &Engine) -> String {
    match &e.cdi {
        runtime::CdiSupport::Supported {
            max_cdi_version,
            basis,
        } => format!("specs up to cdiVersion {max_cdi_version}; {basis}"),
        runtime::CdiSupport::Unsupported { reason } => format!("no: {reason}"),
    }
}

fn list(root: &Path, a: &ListArgs) -> anyhow::Result<u8> {
    let host = HostRoot::new(root);
    let engines = runtime::engines(&host);
    let listed: Vec<Listed<'_>> = engines
        .iter()
        .map(|e| Listed {
            engine: e,
            configured: configure::configured(&host, e),
        })
        .collect();
    if a.json {
        print(&serde_json::json!({
            "schema": "exliar.runtimes/1",
            "root": root.display().to_string(),
            "engines": listed,
        }))?;
        return Ok(exit::OK);
    }
    let mut out = String::new();
    if listed.is_empty() {
        out.push_str(&format!(
            "No container engine (Podman, Docker, containerd) was found under {}.\n",
            root.display()
        ));
    }
    for l in &listed {
        let e = l.engine;
        out.push_str(&format!("{} {} ({})\n", e.name, e.version, e.source));
        out.push_str(&format!("  CDI: {}\n", cdi_line(e)));
        let c = &l.configured;
        out.push_str(&format!(
            "  configured: {}: {}\n",
            if c.configured { "yes" } else { "no" },
            c.detail
        ));
        if !c.spec_dirs.is_empty() {
            out.push_str(&format!("  spec dirs: {}\n", c.spec_dirs.join(", ")));
        }
        if !c.configured && e.cdi.max_cdi_version().is_some() && e.name != EngineKind::Podman {
            out.push_str(&format!(
                "  `exliar runtime configure {}` turns it on\n",
                e.name
            ));
        }
    }
    term::out(&term::safe(&out))?;
    Ok(exit::OK)
}

/// An absolute directory without control characters.
fn check_dir(d: &str) -> anyhow::Result<()> {
    if !d.starts_with('/') || d.chars().any(char::is_control) {
        anyhow::bail!("--spec-dir {d:?}: give an absolute directory");
    }
    Ok(())
}

fn configure_cmd(root: &Path, a: &ConfigureArgs) -> anyhow::Result<u8> {
    let kind = EngineKind::from(a.engine);
    let dirs: Vec<String> = if a.spec_dirs.is_empty() {
        DEFAULT_DIRS.map(String::from).to_vec()
    } else {
        for d in &a.spec_dirs {
            check_dir(d)?;
        }
        let mut v: Vec<String> = Vec::new();
        for d in &a.spec_dirs {
            let d = if d.len() > 1 {
                d.trim_end_matches('/')
            } else {
                d
            };
            if !v.iter().any(|x| x == d) {
                v.push(d.to_string());
            }
        }
        v
    };
    let host = HostRoot::new(root);
    let engine = match &a.assume_version {
        Some(v) => {
            if runtime::parse_version(v).is_none() {
                anyhow::bail!("--assume-version {v:?}: not a version (like 26.1.5)");
            }
            Some(Engine {
                name: kind,
                version: v.clone(),
                source: "--assume-version".into(),
                cdi_library: None,
                cdi: runtime::max_cdi_version(kind, v),
            })
        }
        None => runtime::engines(&host).into_iter().find(|e| e.name == kind),
    };
    let doc = |outcome: &str, extra: serde_json::Value| {
        let mut d = serde_json::json!({
            "schema": "exliar.runtime-configure/1",
            "engine": engine,
            "outcome": outcome,
            "spec_dirs": dirs,
        });
        if let (Some(m), serde_json::Value::Object(x)) = (d.as_object_mut(), extra) {
            m.extend(x);
        }
        d
    };
    match configure::plan(&host, kind, engine.as_ref(), &dirs) {
        Outcome::Refused(reason) => {
            if a.json {
                print(&doc("refused", serde_json::json!({ "reason": reason })))?;
            } else {
                term::err(&format!(
                    "exliar: runtime configure {kind} refused: {}; nothing was changed\n",
                    term::safe(&reason)
                ));
            }
            Ok(exit::FINDINGS)
        }
        Outcome::Check {
            dirs: read,
            missing,
        } => {
            let version = engine.as_ref().map(|e| e.version.as_str()).unwrap_or("");
            if a.json {
                print(&doc(
                    if missing.is_empty() {
                        "nothing-to-do"
                    } else {
                        "not-read"
                    },
                    serde_json::json!({
                        "reads": read.dirs,
                        "reads_from": read.from,
                        "missing": missing,
                        "problems": read.problems,
                    }),
                ))?;
            } else {
                let mut out = format!(
                    "Podman {version} reads CDI specs with no setting to turn on: nothing to write.\n  spec dirs: {} ({})\n",
                    read.dirs.join(", "),
                    read.from
                        .as_deref()
                        .map_or("Podman's defaults".to_string(), |f| format!(
                            "cdi_spec_dirs in {f}"
                        ))
                );
                if !missing.is_empty() {
                    out.push_str(&format!(
                        "  not read by Podman: {}: add them to cdi_spec_dirs in the [engine] table of /etc/containers/containers.conf\n",
                        missing.join(", ")
                    ));
                }
                term::out(&term::safe(&out))?;
                for p in &read.problems {
                    term::err(&format!("exliar: warning: {}\n", term::safe(p)));
                }
            }
            Ok(if missing.is_empty() {
                exit::OK
            } else {
                exit::FINDINGS
            })
        }
        Outcome::Plan(plan) if plan.is_empty() => {
            if a.json {
                print(&doc(
                    "nothing-to-do",
                    serde_json::json!({ "plan": boot::plan_json(&plan) }),
                ))?;
            } else {
                term::out(&format!(
                    "{kind} is configured for CDI already (specs from {}); nothing to do.\n",
                    term::safe(&dirs.join(", "))
                ))?;
            }
            Ok(exit::OK)
        }
        Outcome::Plan(plan) => {
            let store = boot::open_store(root)?;
            match boot::apply_built(&store, &plan, a.yes, false, a.json)? {
                boot::Applied::Done { code, doc: applied } => {
                    if a.json {
                        let outcome = if code == exit::OK {
                            "applied"
                        } else {
                            "not-confirmed"
                        };
                        print(&doc(outcome, serde_json::json!({ "apply": applied })))?;
                    }
                    Ok(code)
                }
                boot::Applied::Failed { doc: failed, error } => {
                    if a.json {
                        print(&doc("failed", serde_json::json!({ "apply": failed })))?;
                    }
                    Err(error)
                }
            }
        }
    }
}
