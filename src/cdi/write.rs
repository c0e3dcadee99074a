//! The plan that writes exliar's spec files into one CDI directory, and
//! the comparison `cdi generate --check` makes. Reads the directory through
//! the [`HostRoot`]; writes nothing (the transaction engine does).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::spec::{self, Spec};
use crate::host::HostRoot;
use crate::plan::{Plan, Step, Subject};

/// exliar's spec files (every kind it writes).
pub const OWN_FILES: [&str; 2] = [super::host::GPU_FILE, super::host::VFIO_FILE];

/// The output directory, as given and as resolved inside the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutDir {
    /// As the root's engines name it (`/var/run/cdi`).
    pub dir: String,
    /// Where the files go, root-relative, links resolved (`run/cdi`).
    #[serde(skip)]
    pub rel: PathBuf,
    /// The resolved directory as an absolute path inside the root, when it
    /// differs from `dir` (`/run/cdi`).
    pub resolved: Option<String>,
}

/// Resolve `dir` (absolute) inside the root: links are followed as the
/// root's programs follow them; one that climbs out of the root is refused.
pub fn out_dir(host: &HostRoot, dir: &str) -> Result<OutDir, String> {
    if !dir.starts_with('/') || dir.chars().any(char::is_control) {
        return Err(format!("--output {dir:?}: give an absolute directory"));
    }
    let dir = if dir.len() > 1 {
        dir.trim_end_matches('/')
    } else {
        dir
    };
    let rel = Path::new(dir.trim_start_matches('/'));
    let resolved = host.resolve_contained(rel).map_err(|e| {
        format!(
            "{}: {}; refusing to write CDI specs there",
            e.path, e.source
        )
    })?;
    let shown = format!("/{}", resolved.display());
    Ok(OutDir {
        dir: dir.to_string(),
        resolved: (shown != dir).then_some(shown),
        rel: resolved,
    })
}

/// One spec file: what exliar would write and what is there now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileState {
    /// `/etc/cdi/exliar-gpu.json`.
    pub file: String,
    /// `up-to-date`, `stale` (differs), `missing`, or `obsolete` (an
    /// exliar file for a kind with nothing to write now).
    pub state: &'static str,
}

/// A spec to write, with its file name.
pub struct Output<'a> {
    pub file: &'a str,
    pub spec: &'a Spec,
}

/// The plan writing `outputs` into `out`, and the state of each of
/// exliar's files there now. A file that cannot be read is an error.
pub fn plan(
    host: &HostRoot,
    out: &OutDir,
    outputs: &[Output<'_>],
) -> Result<(Plan, Vec<FileState>), String> {
    let mut plan = Plan::new(host.path().display().to_string());
    plan.subject = Subject::Cdi {
        dir: out.dir.clone(),
    };
    let mut states = Vec::new();
    for name in OWN_FILES {
        let rel = out.rel.join(name);
        let shown = format!("{}/{name}", out.dir.trim_end_matches('/'));
        let before = host
            .read_optional(&rel)
            .map_err(|e| format!("{}: {}", e.path, e.source))?;
        let Some(o) = outputs.iter().find(|o| o.file == name) else {
            if before.is_some() {
                states.push(FileState {
                    file: shown,
                    state: "obsolete",
                });
            }
            continue;
        };
        let text = spec::to_json(o.spec);
        let state = match &before {
            None => "missing",
            Some(b) if *b == text => "up-to-date",
            Some(_) => "stale",
        };
        states.push(FileState { file: shown, state });
        if state != "up-to-date" {
            plan.steps.push(Step::WriteFile {
                path: rel,
                before: before.map(String::into_bytes),
                after: text.into_bytes(),
                mode: 0o644,
                why: format!(
                    "CDI spec for {} ({} device{}), cdiVersion {}",
                    o.spec.kind,
                    o.spec.devices.len(),
                    if o.spec.devices.len() == 1 { "" } else { "s" },
                    o.spec.cdi_version
                ),
            });
        }
    }
    Ok((plan, states))
}
