//! Plugins (`exliar.plugin/1`, docs/plugins.md): executables in root-owned
//! folders under the root, spoken to with one JSON request on stdin and
//! one JSON answer on stdout per run, with a timeout, a cleared
//! environment, an unprivileged user (when exliar runs as root) and a
//! working folder of their own.
//!
//! They are told about events (fire-and-forget: a failing plugin is
//! reported, never breaks the operation) and may **propose** plan steps —
//! files inside the target and commands — that the plan shows under the
//! plugin's name and the transaction engine applies and rolls back like
//! exliar's own. A plugin never writes to the host itself through exliar.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::host::HostRoot;
use crate::plan::{Plan, Step};

pub const SCHEMA: &str = "exliar.plugin/1";

/// Where plugins are found, under the root.
pub const DIRS: [&str; 2] = ["usr/lib/exliar/plugins", "etc/exliar/plugins"];

/// The plugin settings file, under the root.
pub const CONFIG: &str = "etc/exliar/plugins.toml";

/// The events a plugin may ask for.
pub const EVENTS: [&str; 10] = [
    "inventory",
    "check-finished",
    "vm-started",
    "vm-stopped",
    "vm-failed",
    "gpu-bound",
    "gpu-unbound",
    "txn-applied",
    "txn-rolled-back",
    "test",
];

/// What a plugin's answer may hold at most.
const OUTPUT_LIMIT: u64 = 1 << 20;

/// `etc/exliar/plugins.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The user plugins run as when exliar runs as root (default `nobody`;
    /// `root` keeps root).
    #[serde(default = "default_user")]
    pub user: String,
    /// Seconds a plugin may take to answer (default 10).
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// Plugins not to run.
    #[serde(default)]
    pub disabled: Vec<String>,
}

fn default_user() -> String {
    "nobody".into()
}
fn default_timeout() -> f64 {
    10.0
}

impl Default for Config {
    fn default() -> Self {
        Config {
            user: default_user(),
            timeout_s: default_timeout(),
            disabled: Vec::new(),
        }
    }
}

impl Config {
    /// The root's settings; defaults when there is no file. A file that
    /// does not parse is an error (naming it).
    pub fn read(root: &Path) -> Result<Config, String> {
        let host = HostRoot::new(root);
        match host.read_string(CONFIG) {
            Ok(text) => toml::from_str(&text).map_err(|e| format!("/{CONFIG}: {e}")),
            Err(e) if e.is_not_found() => Ok(Config::default()),
            Err(e) => Err(format!("/{CONFIG}: {e}")),
        }
    }
    fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_s.clamp(0.1, 600.0))
    }
}

/// A plugin found in one of [`DIRS`].
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub name: String,
    /// As the root names it (`/usr/lib/exliar/plugins/NAME`).
    pub path: String,
    /// Why it is not run (ownership, permissions, not executable,
    /// disabled, shadowed); empty when it may run.
    pub refused: Vec<String>,
    #[serde(skip)]
    full: PathBuf,
}

impl Found {
    pub fn usable(&self) -> bool {
        self.refused.is_empty()
    }
}

/// Why a file or folder may not hold a plugin: not owned by root, or
/// writable by group or others.
fn ownership_problems(what: &str, md: &std::fs::Metadata) -> Vec<String> {
    let mut p = Vec::new();
    if md.uid() != 0 {
        p.push(format!("{what} is owned by uid {}, not root", md.uid()));
    }
    if md.mode() & 0o022 != 0 {
        p.push(format!(
            "{what} is writable by {} (mode {:04o})",
            if md.mode() & 0o002 != 0 {
                "others"
            } else {
                "its group"
            },
            md.mode() & 0o7777
        ));
    }
    p
}

/// The plugins under `root`, in [`DIRS`] order then by name (a name in a
/// later folder that an earlier one has is shadowed).
pub fn find(root: &Path, cfg: &Config) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    for dir in DIRS {
        let full_dir = root.join(dir);
        let Ok(dmd) = std::fs::symlink_metadata(&full_dir) else {
            continue;
        };
        let dir_problems = if dmd.file_type().is_symlink() {
            vec![format!("/{dir} is a symbolic link")]
        } else {
            ownership_problems(&format!("the folder /{dir}"), &dmd)
        };
        let Ok(rd) = std::fs::read_dir(&full_dir) else {
            continue;
        };
        let mut names: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        for name in names {
            let full = full_dir.join(&name);
            let mut refused = dir_problems.clone();
            match std::fs::symlink_metadata(&full) {
                Ok(md) if md.file_type().is_symlink() => {
                    refused.push("a symbolic link (install the file itself)".into())
                }
                Ok(md) if !md.is_file() => refused.push("not a regular file".into()),
                Ok(md) => {
                    refused.extend(ownership_problems("the file", &md));
                    if md.mode() & 0o111 == 0 {
                        refused.push("not executable".into());
                    }
                }
                Err(e) => refused.push(e.to_string()),
            }
            if !valid_name(&name) {
                refused.push("its name is not [a-z0-9_-]+".into());
            }
            if cfg.disabled.contains(&name) {
                refused.push(format!("disabled in /{CONFIG}"));
            }
            if out.iter().any(|f| f.name == name) {
                refused.push("shadowed by a plugin of the same name found first".into());
            }
            out.push(Found {
                path: format!("/{dir}/{name}"),
                name,
                refused,
                full,
            });
        }
    }
    out
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Why a plugin run gave nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("plugin {name}: refused: {}", reasons.join("; "))]
    Refused { name: String, reasons: Vec<String> },
    #[error("plugin {name}: cannot start {path}: {err}")]
    Spawn {
        name: String,
        path: String,
        err: std::io::Error,
    },
    #[error("plugin {name}: no answer within {secs} s (killed)")]
    Timeout { name: String, secs: f64 },
    #[error("plugin {name}: exit status {status}{}", stderr_tail(.stderr))]
    Failed {
        name: String,
        status: String,
        stderr: String,
    },
    #[error("plugin {name}: its answer is not {SCHEMA} JSON: {why}")]
    Garbage { name: String, why: String },
    #[error("plugin {0}: no such plugin (exliar plugin list shows them)")]
    NoSuch(String),
}

fn stderr_tail(s: &str) -> String {
    let t = s.trim();
    if t.is_empty() {
        String::new()
    } else {
        let tail: String = t
            .chars()
            .rev()
            .take(300)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!(": {}", crate::cli::term::safe(&tail))
    }
}

/// The uid and gid of `user` in the running system's `/etc/passwd`
/// (`nobody`: 65534 when absent).
fn lookup_user(user: &str) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[0] == user {
            return Some((f[2].parse().ok()?, f[3].parse().ok()?));
        }
    }
    (user == "nobody").then_some((65534, 65534))
}

/// A new empty folder (0700) in the temporary folder, removed when dropped.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> std::io::Result<WorkDir> {
        use std::os::unix::fs::DirBuilderExt;
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("exliar-plugin-{}-{n}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(WorkDir(dir))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run `p` with one request; its answer.
pub fn run(
    root: &Path,
    cfg: &Config,
    p: &Found,
    request: &serde_json::Value,
) -> Result<serde_json::Value, RunError> {
    if !p.usable() {
        return Err(RunError::Refused {
            name: p.name.clone(),
            reasons: p.refused.clone(),
        });
    }
    let name = p.name.clone();
    // A working folder of its own, outside the target.
    let cwd = WorkDir::new().map_err(|err| RunError::Spawn {
        name: name.clone(),
        path: p.path.clone(),
        err,
    })?;
    let mut cmd = Command::new(&p.full);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8")
        .env("EXLIAR_PLUGIN", "1")
        .env("EXLIAR_ROOT", root)
        .current_dir(cwd.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if rustix::process::geteuid().is_root() && cfg.user != "root" {
        // Never root by accident: a user that is not there refuses the run.
        let Some((uid, gid)) = lookup_user(&cfg.user) else {
            return Err(RunError::Refused {
                name,
                reasons: vec![format!(
                    "user `{}` (/{CONFIG}) is not in /etc/passwd",
                    cfg.user
                )],
            });
        };
        // The folder is the plugin's to use; std drops the supplementary
        // groups when it sets the uid.
        let _ = std::os::unix::fs::chown(cwd.path(), Some(uid), Some(gid));
        cmd.uid(uid).gid(gid);
    }
    let mut child = cmd.spawn().map_err(|err| RunError::Spawn {
        name: name.clone(),
        path: p.path.clone(),
        err,
    })?;
    let body = serde_json::to_vec(request).unwrap_or_default();
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that does not read its request still runs.
        let _ = stdin.write_all(&body);
    }
    let read_all = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(r) = r {
                let _ = r.take(OUTPUT_LIMIT).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = read_all(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = read_all(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + cfg.timeout();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Timeout {
                    name,
                    secs: cfg.timeout_s,
                });
            }
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    if !status.success() {
        return Err(RunError::Failed {
            name,
            status: status.to_string(),
            stderr,
        });
    }
    let v: serde_json::Value = serde_json::from_slice(&stdout).map_err(|e| RunError::Garbage {
        name: name.clone(),
        why: e.to_string(),
    })?;
    if v.get("schema").and_then(|s| s.as_str()) != Some(SCHEMA) {
        return Err(RunError::Garbage {
            name,
            why: format!("`schema` is not \"{SCHEMA}\""),
        });
    }
    Ok(v)
}

/// What `describe` answers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Description {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub options: Vec<serde_json::Value>,
    #[serde(default)]
    pub propose: bool,
}

pub fn describe(root: &Path, cfg: &Config, p: &Found) -> Result<Description, RunError> {
    let v = run(
        root,
        cfg,
        p,
        &serde_json::json!({"schema": SCHEMA, "request": "describe"}),
    )?;
    serde_json::from_value(v).map_err(|e| RunError::Garbage {
        name: p.name.clone(),
        why: e.to_string(),
    })
}

/// An event for the plugins: `kind` and its fields.
pub fn event(kind: &str, fields: serde_json::Value) -> serde_json::Value {
    let mut e = serde_json::json!({
        "kind": kind,
        "time_unix": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        "host": hostname(),
    });
    if let (Some(obj), serde_json::Value::Object(f)) = (e.as_object_mut(), fields) {
        obj.extend(f);
    }
    e
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Tell every plugin under `root` that asked for this event. Never fails:
/// what went wrong is returned (and logged as a warning) for the caller to
/// ignore or show.
///
/// The event is made (`ev`: the host name read, the time taken) only when a
/// plugin is installed: a bind or handover with none pays two `lstat`s.
pub fn emit(root: &Path, ev: impl FnOnce() -> serde_json::Value) -> Vec<String> {
    let found = find(root, &Config::default());
    if found.is_empty() {
        return Vec::new();
    }
    let ev = &ev();
    let cfg = match Config::read(root) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("plugins not told: {e}");
            return vec![e];
        }
    };
    let kind = ev.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    let mut problems = Vec::new();
    for p in find(root, &cfg).iter().filter(|p| p.usable()) {
        let r = describe(root, &cfg, p).and_then(|d| {
            if d.events.iter().any(|e| e == kind) {
                let req = serde_json::json!({"schema": SCHEMA, "request": "event", "event": ev});
                run(root, &cfg, p, &req).map(Some)
            } else {
                Ok(None)
            }
        });
        let msg = match r {
            Ok(Some(ans)) if ans.get("ok").and_then(|o| o.as_bool()) == Some(false) => {
                Some(format!(
                    "plugin {}: {kind}: {}",
                    p.name,
                    ans.get("error")
                        .and_then(|e| e.as_str())
                        .unwrap_or("not ok")
                ))
            }
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        };
        if let Some(m) = msg {
            tracing::warn!("{}", crate::cli::term::safe(&m));
            problems.push(m);
        }
    }
    problems
}

/// A step a plugin proposes.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Proposed {
    /// A file in the target (`path` absolute as the target names it).
    Write {
        path: String,
        content: String,
        /// Octal text (`"0644"`); default 0644.
        #[serde(default)]
        mode: Option<String>,
        #[serde(default)]
        why: Option<String>,
    },
    /// A command run (inside the target) after the files are written;
    /// `undo` on rollback (else it runs again).
    Command {
        argv: Vec<String>,
        #[serde(default)]
        undo: Option<Vec<String>>,
        #[serde(default)]
        why: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
struct ProposeAnswer {
    #[serde(default)]
    steps: Vec<Proposed>,
}

/// `path` (absolute, as the target names it) as a plain relative path:
/// no `..`, no `.`, not exliar's own state.
fn target_rel(path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!("{path}: not an absolute path"));
    }
    let mut rel = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => rel.push(n),
            _ => {
                return Err(format!(
                    "{path}: `.` or `..` in the path (outside the target?)"
                ));
            }
        }
    }
    if rel.as_os_str().is_empty() {
        return Err(format!("{path}: not a file"));
    }
    if rel.starts_with(crate::txn::STATE_DIR) {
        return Err(format!("{path}: exliar's own state"));
    }
    Ok(rel)
}

/// The steps `p` proposes for `plan`, checked: each write inside the
/// target (no `..`, no link out of it, not a file the plan writes already),
/// each command a non-empty argv. One bad step refuses the whole proposal.
fn proposal(
    root: &Path,
    cfg: &Config,
    p: &Found,
    target: &Path,
    plan: &Plan,
) -> Result<Vec<Step>, String> {
    let req = serde_json::json!({
        "schema": SCHEMA,
        "request": "propose",
        "target": target,
        "plan": plan,
    });
    let ans = run(root, cfg, p, &req).map_err(|e| e.to_string())?;
    let ans: ProposeAnswer =
        serde_json::from_value(ans).map_err(|e| format!("plugin {}: its proposal: {e}", p.name))?;
    let host = HostRoot::new(target);
    let mut steps = Vec::new();
    let refuse = |m: String| format!("plugin {}: proposal refused: {m}", p.name);
    for s in ans.steps {
        match s {
            Proposed::Write {
                path,
                content,
                mode,
                why,
            } => {
                let rel = target_rel(&path).map_err(refuse)?;
                let resolved = host
                    .resolve_contained(&rel)
                    .map_err(|e| refuse(format!("{path}: {e}")))?;
                if resolved != rel {
                    return Err(refuse(format!(
                        "{path}: a link on the way leads to /{}",
                        resolved.display()
                    )));
                }
                let writes_already = plan
                    .steps
                    .iter()
                    .chain(steps.iter())
                    .any(|s| matches!(s, Step::WriteFile { path: q, .. } if *q == rel));
                if writes_already {
                    return Err(refuse(format!("{path}: the plan writes it already")));
                }
                let mode = match mode {
                    None => 0o644,
                    Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
                        .ok()
                        .filter(|m| *m <= 0o7777 && m & 0o6000 == 0)
                        .ok_or_else(|| refuse(format!("{path}: mode {m:?}")))?,
                };
                let before = match host.read_bytes(&rel) {
                    Ok(b) => Some(b),
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(refuse(format!("{path}: {e}"))),
                };
                steps.push(Step::WriteFile {
                    path: rel,
                    before,
                    after: content.into_bytes(),
                    mode,
                    why: format!(
                        "plugin {}: {}",
                        p.name,
                        why.unwrap_or_else(|| "a file it proposes".into())
                    ),
                });
            }
            Proposed::Command { argv, undo, why } => {
                if argv.is_empty() || argv[0].is_empty() {
                    return Err(refuse("an empty command".into()));
                }
                if undo.as_ref().is_some_and(|u| u.is_empty()) {
                    return Err(refuse("an empty undo command".into()));
                }
                steps.push(Step::Run {
                    argv,
                    undo,
                    why: format!(
                        "plugin {}: {}",
                        p.name,
                        why.unwrap_or_else(|| "a command it proposes".into())
                    ),
                });
            }
        }
    }
    Ok(steps)
}

/// Ask the plugins under `root` that propose steps for `plan` (made for
/// `target`) and add what they propose, marked with their names; a refused
/// or failing proposal becomes a warning of the plan.
pub fn extend_plan(root: &Path, target: &Path, plan: &mut Plan) {
    if find(root, &Config::default()).is_empty() {
        return;
    }
    let cfg = match Config::read(root) {
        Ok(c) => c,
        Err(e) => {
            plan.warnings.push(format!("plugins not asked: {e}"));
            return;
        }
    };
    for p in find(root, &cfg).iter().filter(|p| p.usable()) {
        match describe(root, &cfg, p) {
            Ok(d) if d.propose => match proposal(root, &cfg, p, target, plan) {
                Ok(steps) => {
                    // Files before commands, as in exliar's own plans.
                    for s in steps {
                        let at = match s {
                            Step::WriteFile { .. } => plan
                                .steps
                                .iter()
                                .position(|x| !matches!(x, Step::WriteFile { .. }))
                                .unwrap_or(plan.steps.len()),
                            _ => plan.steps.len(),
                        };
                        plan.steps.insert(at, s);
                    }
                }
                Err(e) => plan.warnings.push(e),
            },
            Ok(_) => {}
            Err(e) => plan.warnings.push(e.to_string()),
        }
    }
}

/// `exliar plugin new NAME`: a minimal plugin in POSIX sh.
pub fn skeleton(name: &str) -> String {
    format!(
        r#"#!/bin/sh
# {name}: an exliar plugin ({SCHEMA}, see docs/plugins.md).
# Install as root: install -o root -g root -m 0755 {name} /etc/exliar/plugins/{name}
# exliar runs it with no arguments, one JSON request on stdin, and reads one
# JSON answer from stdout. Environment: PATH, LANG, EXLIAR_PLUGIN=1,
# EXLIAR_ROOT. It runs as `nobody` (etc/exliar/plugins.toml: user = ...).
set -eu
req=$(cat)
case "$req" in
*'"request":"describe"'*)
  printf '%s\n' '{{"schema":"{SCHEMA}","name":"{name}","version":"0.1.0","description":"what {name} does","events":["vm-started","vm-stopped"],"options":[],"propose":false}}'
  ;;
*'"request":"event"'*)
  # The event is in $req: {{"kind":"vm-started","vm":"win11",...}}
  logger -t exliar-{name} "event: $req" 2>/dev/null || true
  printf '%s\n' '{{"schema":"{SCHEMA}","ok":true}}'
  ;;
*'"request":"propose"'*)
  # Steps to add to the plan: {{"kind":"write","path":"/etc/...","content":"...","mode":"0644"}}
  # or {{"kind":"command","argv":["..."],"undo":["..."]}}.
  printf '%s\n' '{{"schema":"{SCHEMA}","steps":[]}}'
  ;;
*)
  printf '%s\n' '{{"schema":"{SCHEMA}","ok":false,"error":"unknown request"}}'
  ;;
esac
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_paths_stay_inside() {
        assert_eq!(
            target_rel("/etc/x.conf").ok(),
            Some(PathBuf::from("etc/x.conf"))
        );
        assert!(target_rel("etc/x").is_err());
        assert!(target_rel("/etc/../../x").is_err());
        assert!(target_rel("/var/lib/exliar/txn/x").is_err());
        assert!(target_rel("/").is_err());
    }

    #[test]
    fn names() {
        assert!(valid_name("discord"));
        assert!(valid_name("irq-pin_2"));
        assert!(!valid_name("Bad"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(""));
    }

    #[test]
    fn skeleton_answers_are_json() {
        let s = skeleton("demo");
        for line in s
            .lines()
            .filter(|l| l.trim_start().starts_with("printf '%s\\n' '"))
        {
            let json = line
                .trim_start()
                .trim_start_matches("printf '%s\\n' '")
                .trim_end_matches('\'');
            let v: serde_json::Value = serde_json::from_str(json).expect(json);
            assert_eq!(v["schema"], SCHEMA);
        }
    }
}
