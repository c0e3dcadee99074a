//! `exliar cdi validate|list`: check CDI spec files strictly, and show the
//! device names container engines will see.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{exit, term};
use crate::cdi::spec::{self, Conflict, Problem, Spec, Visible};
use crate::host::{self, HostRoot};

#[derive(Debug, Args)]
pub struct CdiCmd {
    #[command(subcommand)]
    pub command: CdiSub,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum CdiSub {
    /// Write CDI specs for every GPU the host's drivers hold, as a transaction (diff, confirm, `exliar rollback` undoes it): exliar.dev/gpu (NVIDIA: /dev/nvidiaN, its DRM nodes, the driver's shared nodes and user-space files read-only; AMD: render node + /dev/kfd; Intel and others: render node) and exliar.dev/vfio (cards on vfio-pci: /dev/vfio/vfio + the group's node), each named by index, PCI address and NVIDIA UUID, plus `all`; refused when an engine under the root would reject them; --check says whether the written ones still match
    Generate(super::cdigen::GenerateArgs),
    /// Check CDI spec files strictly (unknown fields, name rules, versions and the minimum version, devices defined twice in one directory, host paths missing under --root); a directory checks its *.json files as engines load them
    Validate(ValidateArgs),
    /// The CDI device names engines will see (`exliar.dev/gpu=0`, …) from the spec directories under --root: /etc/cdi, then /var/run/cdi, which overrides it for the same device
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Spec files or directories
    #[arg(required = true, value_name = "FILE|DIR")]
    pub paths: Vec<PathBuf>,
    /// Do not check that host paths exist under --root (a spec for another
    /// machine)
    #[arg(long)]
    pub no_host_paths: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Spec directories inside the root, lowest priority first (default:
    /// /etc/cdi /var/run/cdi)
    #[arg(long = "dir", value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// The directories engines read by default, lowest priority first.
pub const DEFAULT_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];

pub fn run(root: &Path, cmd: &CdiCmd) -> anyhow::Result<u8> {
    match &cmd.command {
        CdiSub::Generate(a) => super::cdigen::generate(root, a),
        CdiSub::Validate(a) => validate(root, a),
        CdiSub::List(a) => list(root, a),
    }
}

#[derive(Debug, Serialize)]
struct FileReport {
    file: String,
    cdi_version: Option<String>,
    minimum_version: Option<String>,
    kind: Option<String>,
    devices: Vec<String>,
    problems: Vec<Problem>,
}

#[derive(Debug, Serialize)]
struct Skipped {
    file: String,
    reason: String,
}

#[derive(Debug, Serialize)]
struct ValidateReport {
    schema: &'static str,
    root: String,
    ok: bool,
    files: Vec<FileReport>,
    conflicts: Vec<Conflict>,
    skipped: Vec<Skipped>,
}

/// A spec file by its extension: `Some(true)` JSON, `Some(false)` YAML
/// (engines load it; exliar reads JSON only), `None` not a spec.
fn spec_ext(name: &str) -> Option<bool> {
    if name.ends_with(".json") {
        Some(true)
    } else if name.ends_with(".yaml") || name.ends_with(".yml") {
        Some(false)
    } else {
        None
    }
}

const YAML_SKIP: &str = "a YAML spec: engines load it, exliar checks JSON only";

/// The report of one file from its spec (when it parsed) and problems.
fn file_report(file: &str, spec: Option<&Spec>, problems: Vec<Problem>) -> FileReport {
    FileReport {
        file: file.to_string(),
        cdi_version: spec.map(|s| s.cdi_version.clone()),
        minimum_version: spec.map(|s| spec::minimum_version(s).to_string()),
        kind: spec.map(|s| s.kind.clone()),
        devices: spec
            .map(|s| {
                s.devices
                    .iter()
                    .map(|d| spec::qualified_name(&s.kind, &d.name))
                    .collect()
            })
            .unwrap_or_default(),
        problems,
    }
}

fn read_file(p: &Path) -> Result<String, String> {
    host::readfile::read_input(p, host::readfile::CONFIG_LIMIT)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| e.to_string())
}

fn validate(root: &Path, a: &ValidateArgs) -> anyhow::Result<u8> {
    let host = HostRoot::new(root);
    let mut rep = ValidateReport {
        schema: "exliar.cdi-validate/1",
        root: root.display().to_string(),
        ok: true,
        files: Vec::new(),
        conflicts: Vec::new(),
        skipped: Vec::new(),
    };
    let exists = |p: &str| host.exists(p.trim_start_matches('/'));
    let exists: Option<&dyn Fn(&str) -> bool> = if a.no_host_paths { None } else { Some(&exists) };
    for p in &a.paths {
        let shown = p.display().to_string();
        if p.is_dir() {
            let mut names: Vec<String> = std::fs::read_dir(p)
                .map_err(|e| anyhow::anyhow!("{shown}: {e}"))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            let mut texts = Vec::new();
            let mut unreadable = BTreeMap::new();
            for n in names {
                let file = p.join(&n).display().to_string();
                match spec_ext(&n) {
                    None => {}
                    Some(false) => rep.skipped.push(Skipped {
                        file,
                        reason: YAML_SKIP.into(),
                    }),
                    Some(true) => match read_file(&p.join(&n)) {
                        Ok(text) => texts.push((file, text)),
                        Err(e) => {
                            unreadable.insert(file.clone(), read_failure(&file, e));
                        }
                    },
                }
            }
            let checked = spec::validate_dir(&texts, exists);
            let mut reports: Vec<FileReport> = checked
                .files
                .into_iter()
                .map(|f| file_report(&f.file, f.spec.as_ref(), f.problems))
                .chain(unreadable.into_values())
                .collect();
            reports.sort_by(|x, y| x.file.cmp(&y.file));
            rep.files.extend(reports);
            rep.conflicts.extend(checked.conflicts);
        } else {
            rep.files.push(match read_file(p) {
                Ok(text) => {
                    let (s, problems) = spec::check_text(&text, exists);
                    file_report(&shown, s.as_ref(), problems)
                }
                Err(e) => read_failure(&shown, e),
            });
        }
    }
    rep.ok = rep.files.iter().all(|f| f.problems.is_empty()) && rep.conflicts.is_empty();
    let code = if rep.ok { exit::OK } else { exit::FINDINGS };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if a.json {
        serde_json::to_writer_pretty(&mut out, &rep)?;
        writeln!(out)?;
    } else {
        out.write_all(term::safe(&render_validate(&rep)).as_bytes())?;
    }
    out.flush()?;
    Ok(code)
}

fn read_failure(file: &str, e: String) -> FileReport {
    file_report(
        file,
        None,
        vec![Problem {
            code: "read",
            at: String::new(),
            message: format!("cannot read it: {e}"),
        }],
    )
}

fn render_validate(rep: &ValidateReport) -> String {
    let mut s = String::new();
    for f in &rep.files {
        let ver = match (&f.cdi_version, &f.minimum_version) {
            (Some(v), Some(m)) => format!("cdiVersion {v}, needs {m}, "),
            _ => String::new(),
        };
        if f.problems.is_empty() {
            s.push_str(&format!(
                "{}: ok ({ver}{} device{})\n",
                f.file,
                f.devices.len(),
                if f.devices.len() == 1 { "" } else { "s" }
            ));
        } else {
            s.push_str(&format!(
                "{}: {} problem{}\n",
                f.file,
                f.problems.len(),
                if f.problems.len() == 1 { "" } else { "s" }
            ));
            for p in &f.problems {
                s.push_str(&format!("  {p}\n"));
            }
        }
    }
    for c in &rep.conflicts {
        s.push_str(&format!(
            "conflict: {} is defined by {}: engines drop it from all of them\n",
            c.device,
            c.files.join(" and ")
        ));
    }
    for k in &rep.skipped {
        s.push_str(&format!("{}: not checked ({})\n", k.file, k.reason));
    }
    s
}

#[derive(Debug, Serialize)]
struct DirReport {
    path: String,
    exists: bool,
    files: Vec<String>,
}

#[derive(Debug, Serialize)]
struct SkippedSpec {
    file: String,
    problems: Vec<Problem>,
}

#[derive(Debug, Serialize)]
struct ListReport {
    schema: &'static str,
    root: String,
    dirs: Vec<DirReport>,
    devices: Vec<Visible>,
    skipped: Vec<SkippedSpec>,
    conflicts: Vec<Conflict>,
}

fn list(root: &Path, a: &ListArgs) -> anyhow::Result<u8> {
    let host = HostRoot::new(root);
    let dirs: Vec<String> = if a.dirs.is_empty() {
        DEFAULT_DIRS.iter().map(|d| d.to_string()).collect()
    } else {
        a.dirs
            .iter()
            .map(|d| format!("/{}", d.display().to_string().trim_start_matches('/')))
            .collect()
    };
    let mut rep = ListReport {
        schema: "exliar.cdi-list/1",
        root: root.display().to_string(),
        dirs: Vec::new(),
        devices: Vec::new(),
        skipped: Vec::new(),
        conflicts: Vec::new(),
    };
    let mut loaded: Vec<Vec<(String, Spec)>> = Vec::new();
    for d in &dirs {
        let rel = d.trim_start_matches('/');
        let mut dr = DirReport {
            path: d.clone(),
            exists: false,
            files: Vec::new(),
        };
        let mut specs = Vec::new();
        match host.list_dir(rel) {
            Err(e) if e.is_not_found() => {}
            Err(e) => anyhow::bail!(e),
            Ok(names) => {
                dr.exists = true;
                for n in names {
                    let file = format!("{}/{n}", d.trim_end_matches('/'));
                    let problems = match spec_ext(&n) {
                        None => continue,
                        Some(false) => vec![Problem {
                            code: "yaml",
                            at: String::new(),
                            message: YAML_SKIP.into(),
                        }],
                        Some(true) => match host.read_string(format!("{rel}/{n}")) {
                            Err(e) => vec![Problem {
                                code: "read",
                                at: String::new(),
                                message: format!("cannot read it: {}", e.source),
                            }],
                            Ok(text) => match spec::parse(&text) {
                                Err(p) => vec![p],
                                Ok(s) => {
                                    let p = spec::validate(&s);
                                    if p.is_empty() {
                                        specs.push((file.clone(), s));
                                    }
                                    p
                                }
                            },
                        },
                    };
                    dr.files.push(file.clone());
                    if !problems.is_empty() {
                        rep.skipped.push(SkippedSpec { file, problems });
                    }
                }
            }
        }
        rep.dirs.push(dr);
        loaded.push(specs);
    }
    let (visible, conflicts) = spec::resolve_dirs(&loaded);
    rep.devices = visible;
    rep.conflicts = conflicts;
    let findings = !rep.skipped.is_empty() || !rep.conflicts.is_empty();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if a.json {
        serde_json::to_writer_pretty(&mut out, &rep)?;
        writeln!(out)?;
    } else {
        out.write_all(term::safe(&render_list(&rep)).as_bytes())?;
        out.flush()?;
        for k in &rep.skipped {
            let first = k.problems.first();
            if first.is_some_and(|p| p.code == "yaml") {
                term::err(&format!(
                    "exliar: warning: {}: not read ({YAML_SKIP}); its devices are not listed\n",
                    k.file
                ));
            } else {
                let first = first.map(|p| p.to_string()).unwrap_or_default();
                term::err(&format!(
                    "exliar: warning: {}: invalid, engines skip it: {first}\n",
                    k.file
                ));
            }
        }
        for c in &rep.conflicts {
            term::err(&format!(
                "exliar: warning: {} is defined by {}: engines drop it\n",
                c.device,
                c.files.join(" and ")
            ));
        }
    }
    out.flush()?;
    Ok(if findings { exit::FINDINGS } else { exit::OK })
}

fn render_list(rep: &ListReport) -> String {
    if rep.devices.is_empty() {
        let dirs: Vec<&str> = rep.dirs.iter().map(|d| d.path.as_str()).collect();
        return format!("no CDI devices in {}\n", dirs.join(", "));
    }
    let width = rep
        .devices
        .iter()
        .map(|v| v.device.len())
        .max()
        .unwrap_or(0);
    let mut s = String::new();
    for v in &rep.devices {
        s.push_str(&format!("{:width$}  {}\n", v.device, v.file));
    }
    s
}
