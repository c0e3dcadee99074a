//! `exliar runtime configure`: the change to an engine's own configuration
//! that turns CDI on, as a [`Plan`] (Docker's daemon.json, containerd's
//! config.toml), or a check (Podman reads specs with no setting).
//!
//! The engine is not restarted: dockerd and containerd read their
//! configuration only when they start, and restarting them stops the
//! containers they run (dockerd without `live-restore`), which is the
//! user's call; the plan says so in a warning instead.

use std::path::Path;

use serde::Serialize;

use super::{CdiSupport, Engine, EngineKind, containerd, docker, podman};
use crate::host::HostRoot;
use crate::plan::{Plan, Step, Subject};

/// The directories CDI specs are read from by default, by every engine:
/// `/etc/cdi` (static specs) and `/var/run/cdi` (generated at run time;
/// these win over `/etc/cdi` for the same device).
pub const DEFAULT_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];

/// Whether an engine's configuration turns CDI on now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Configured {
    pub configured: bool,
    /// The configuration file read (`/etc/docker/daemon.json`).
    pub config_file: Option<String>,
    /// The directories the engine reads specs from (when known).
    pub spec_dirs: Vec<String>,
    /// Why (not): in words.
    pub detail: String,
}

/// What `runtime configure` found to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A plan to apply (empty: configured already).
    Plan(Plan),
    /// Podman: nothing to write; the directories it reads, and those of the
    /// wanted ones it does not.
    Check {
        dirs: podman::PodmanDirs,
        missing: Vec<String>,
    },
    /// Refused, nothing touched: the reason.
    Refused(String),
}

fn config_path(kind: EngineKind) -> Option<&'static str> {
    match kind {
        EngineKind::Docker => Some(docker::DAEMON_JSON),
        EngineKind::Containerd => Some(containerd::CONFIG_TOML),
        EngineKind::Podman => None,
    }
}

/// The config version a new containerd config.toml gets.
fn containerd_new_version(e: &Engine) -> i64 {
    match super::parse_version(&e.version) {
        Some((ma, _, _)) if ma >= 2 => 3,
        _ => 2,
    }
}

/// A configuration file's text; `Err` says why it cannot be used (a link,
/// unreadable, not UTF-8).
fn read_config(host: &HostRoot, rel: &str) -> Result<Option<String>, String> {
    let shown = format!("/{rel}");
    match host.resolve(Path::new(rel)) {
        Ok(p) if p == Path::new(rel) => {}
        Ok(p) => {
            return Err(format!(
                "{shown} is a symbolic link or lies under one (it leads to /{}); exliar does not write through links",
                p.display()
            ));
        }
        Err(e) => return Err(e.to_string()),
    }
    match host.read_bytes(rel) {
        Ok(b) => String::from_utf8(b)
            .map(Some)
            .map_err(|_| format!("{shown}: not UTF-8 text")),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether `engine`'s configuration under `host` turns CDI on now.
pub fn configured(host: &HostRoot, engine: &Engine) -> Configured {
    let file = config_path(engine.name).map(|p| format!("/{p}"));
    let no = |detail: String, dirs: Vec<String>| Configured {
        configured: false,
        config_file: file.clone(),
        spec_dirs: dirs,
        detail,
    };
    if let CdiSupport::Unsupported { .. } = &engine.cdi {
        return no("this version cannot do CDI".into(), Vec::new());
    }
    match engine.name {
        EngineKind::Podman => {
            let d = podman::spec_dirs(host);
            Configured {
                configured: true,
                config_file: d.from.clone(),
                detail: match &d.from {
                    Some(f) => {
                        format!("Podman reads CDI specs without a setting (directories from {f})")
                    }
                    None => "Podman reads CDI specs without a setting".into(),
                },
                spec_dirs: d.dirs,
            }
        }
        EngineKind::Docker => {
            let text = match read_config(host, docker::DAEMON_JSON) {
                Ok(t) => t,
                Err(e) => return no(e, Vec::new()),
            };
            match docker::read(text.as_deref().unwrap_or("")) {
                Ok(s) if s.cdi == Some(true) => Configured {
                    configured: true,
                    config_file: file.clone(),
                    spec_dirs: s.effective_dirs(),
                    detail: "features.cdi is true".into(),
                },
                Ok(s) => no(
                    if text.is_none() {
                        "/etc/docker/daemon.json does not exist: CDI is off".into()
                    } else {
                        "features.cdi is not true in /etc/docker/daemon.json".into()
                    },
                    s.effective_dirs(),
                ),
                Err(e) => no(format!("/{}: {e}", docker::DAEMON_JSON), Vec::new()),
            }
        }
        EngineKind::Containerd => {
            let text = match read_config(host, containerd::CONFIG_TOML) {
                Ok(t) => t,
                Err(e) => return no(e, Vec::new()),
            };
            match containerd::read(
                text.as_deref().unwrap_or(""),
                containerd_new_version(engine),
            ) {
                Ok(s) if s.enable_cdi == Some(true) => Configured {
                    configured: true,
                    config_file: file.clone(),
                    spec_dirs: s.effective_dirs(),
                    detail: format!("enable_cdi is true in plugins.\"{}\"", s.table),
                },
                Ok(s) => no(
                    if text.is_none() {
                        "/etc/containerd/config.toml does not exist: CDI is off".into()
                    } else {
                        format!("enable_cdi is not true in plugins.\"{}\"", s.table)
                    },
                    s.effective_dirs(),
                ),
                Err(e) => no(format!("/{}: {e}", containerd::CONFIG_TOML), Vec::new()),
            }
        }
    }
}

/// Plan turning CDI on for `kind`, found as `engine` (`None`: not found
/// under the root: refused), reading specs from `dirs`.
pub fn plan(
    host: &HostRoot,
    kind: EngineKind,
    engine: Option<&Engine>,
    dirs: &[String],
) -> Outcome {
    let Some(engine) = engine else {
        return Outcome::Refused(format!(
            "no {kind} was found under {} (dpkg and pacman records{}); --assume-version VERSION configures it anyway",
            host.path().display(),
            if host.is_live() { ", `--version`" } else { "" }
        ));
    };
    if let CdiSupport::Unsupported { reason } = &engine.cdi {
        return Outcome::Refused(reason.clone());
    }
    let mut plan = Plan::new(host.path().display().to_string());
    plan.subject = Subject::Runtime {
        engine: kind.name().to_string(),
    };
    let (rel, merged, restart) = match kind {
        EngineKind::Podman => {
            let d = podman::spec_dirs(host);
            let missing = dirs
                .iter()
                .filter(|w| !d.dirs.contains(w))
                .cloned()
                .collect();
            return Outcome::Check { dirs: d, missing };
        }
        EngineKind::Docker => {
            let text = match read_config(host, docker::DAEMON_JSON) {
                Ok(t) => t,
                Err(e) => return Outcome::Refused(e),
            };
            (
                docker::DAEMON_JSON,
                docker::merge(text.as_deref(), dirs)
                    .map(|m| (text, m))
                    .map_err(|e| e.to_string()),
                "systemctl restart docker",
            )
        }
        EngineKind::Containerd => {
            let text = match read_config(host, containerd::CONFIG_TOML) {
                Ok(t) => t,
                Err(e) => return Outcome::Refused(e),
            };
            let new_version = containerd_new_version(engine);
            // A config version this containerd cannot read is the user's to
            // migrate (`containerd config migrate`), not exliar's.
            if let Ok(s) = containerd::read(text.as_deref().unwrap_or(""), new_version) {
                let two = new_version == 3;
                if s.config_version == 3 && !two {
                    return Outcome::Refused(format!(
                        "/{}: config version 3 is containerd 2's; containerd {} reads versions 1 and 2",
                        containerd::CONFIG_TOML,
                        engine.version
                    ));
                }
                if s.config_version == 1 && two {
                    return Outcome::Refused(format!(
                        "/{}: config version 1 (no `version` line) with containerd {}: convert it first with `containerd config migrate`",
                        containerd::CONFIG_TOML,
                        engine.version
                    ));
                }
                if s.config_version == 1 {
                    plan.warnings.push(
                        "config version 1 (no `version` line) is deprecated: `containerd config migrate` converts it to version 2".into(),
                    );
                }
            }
            (
                containerd::CONFIG_TOML,
                containerd::merge(text.as_deref(), new_version, dirs)
                    .map(|m| (text, m))
                    .map_err(|e| e.to_string()),
                "systemctl restart containerd",
            )
        }
    };
    match merged {
        Err(e) => Outcome::Refused(format!("/{rel}: {e}")),
        Ok((_, None)) => Outcome::Plan(plan),
        Ok((before, Some(after))) => {
            plan.steps.push(Step::WriteFile {
                path: rel.into(),
                before: before.map(String::into_bytes),
                after: after.into_bytes(),
                mode: 0o644,
                why: format!(
                    "turn CDI on in {kind} {} and read specs from {}",
                    engine.version,
                    dirs.join(", ")
                ),
            });
            plan.warnings.push(format!(
                "{kind} reads this file only when it starts: restart it (`{restart}`){}",
                if kind == EngineKind::Docker {
                    "; running containers stop unless live-restore is on"
                } else {
                    "; running containers keep running"
                }
            ));
            Outcome::Plan(plan)
        }
    }
}
