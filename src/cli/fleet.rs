//! `exliar nfd` (node labels for node-feature-discovery, written as a
//! transaction; `nfd rule`, `nfd lint`) and `exliar kubevirt config|vm`.
//! The work is in [`crate::fleet`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use super::{boot, exit, read_host, term};
use crate::analyze::{self, Analysis};
use crate::fleet::{kubevirt, nfd};
use crate::host::{self, HostRoot};
use crate::model::Inventory;
use crate::plan::{Plan, Step, Subject};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct NfdCmd {
    #[command(subcommand)]
    pub command: Option<NfdSub>,
    #[command(flatten)]
    pub write: NfdWriteArgs,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum NfdSub {
    /// Print a NodeFeatureRule (JSON) that derives, from NFD's own pci.device source, the labels it can: GPU vendors and models present, IOMMU on; for this host's GPUs or those of snapshots of several nodes
    Rule(RuleArgs),
    /// Check feature files (or a features.d folder) as NFD reads them: dot files and files over 64 KiB ignored, labels NFD would reject, bad directives; exit 1 on any
    Lint(LintArgs),
}

#[derive(Debug, Args)]
pub struct NfdWriteArgs {
    /// The feature file inside the root
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/kubernetes/node-feature-discovery/features.d/exliar"
    )]
    pub output: String,
    /// Print the file's content and write nothing
    #[arg(long, conflicts_with_all = ["check", "dry_run"])]
    pub print: bool,
    /// Write nothing: exit 0 when the file matches the host, 1 when it is stale or missing
    #[arg(long, conflicts_with = "dry_run")]
    pub check: bool,
    /// Show the plan (a diff) and write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Apply without asking
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print the versioned JSON document (exliar.nfd/1)
    #[arg(long)]
    pub json: bool,
    /// Keep running: rewrite the file whenever it is stale, checking every SECONDS (for a DaemonSet; needs --yes)
    #[arg(long, value_name = "SECONDS", requires = "yes", conflicts_with_all = ["print", "check", "dry_run"])]
    pub every: Option<u64>,
}

#[derive(Debug, Args)]
pub struct RuleArgs {
    /// The rule's metadata.name
    #[arg(long, default_value = "exliar-gpus")]
    pub name: String,
    /// Snapshots (`exliar snapshot`) of the nodes, instead of --root
    #[arg(long, value_name = "DIR")]
    pub snapshot: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// Feature files or folders
    #[arg(required = true, value_name = "FILE|DIR")]
    pub paths: Vec<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KubevirtCmd {
    #[command(subcommand)]
    pub command: KubevirtSub,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum KubevirtSub {
    /// Print the KubeVirt resource (JSON) whose spec.configuration.permittedHostDevices.pciHostDevices permits the cards the nodes isolate (on vfio-pci, or the card exliar recommends), each function's vendor:device with resourceName exliar.dev/vfio-VVVV-DDDD; for `kubectl patch kubevirt kubevirt -n kubevirt --type merge --patch-file`
    Config(KubevirtArgs),
    /// Print an example VirtualMachine (JSON) asking for the first permitted GPU and its other functions
    Vm(KubevirtArgs),
}

#[derive(Debug, Args)]
pub struct KubevirtArgs {
    /// Snapshots (`exliar snapshot`) of several nodes, merged, instead of --root
    #[arg(long, value_name = "DIR")]
    pub snapshot: Vec<PathBuf>,
    /// Who advertises the devices: KubeVirt's own device plugin or exliar's (sets externalResourceProvider)
    #[arg(long, value_enum, default_value = "kubevirt")]
    pub provider: ProviderArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProviderArg {
    Kubevirt,
    Exliar,
}

pub const SCHEMA: &str = "exliar.nfd/1";

fn print_json(v: &impl Serialize) -> anyhow::Result<()> {
    term::out(&format!("{}\n", serde_json::to_string_pretty(v)?))?;
    Ok(())
}

/// Inventory, analysis and stacks of a root, warnings logged.
fn read(root: &Path) -> anyhow::Result<(Inventory, Analysis, host::stacks::Stacks)> {
    let h = HostRoot::new(root);
    let inv = read_host(&h)?;
    let analysis = analyze::analyze(&inv);
    let stacks = host::stacks::read(&h, &analysis.gpus);
    for w in &stacks.warnings {
        tracing::warn!("{}", term::safe(&w.to_string()));
    }
    Ok((inv, analysis, stacks))
}

/// A node's name: the root's /etc/hostname, else the folder's name.
fn node_name(root: &Path) -> String {
    HostRoot::new(root)
        .read_optional("etc/hostname")
        .ok()
        .flatten()
        .and_then(|t| t.lines().next().map(|l| l.trim().to_string()))
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::canonicalize(root)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .unwrap_or_else(|| "node".into())
}

pub fn nfd_run(root: &Path, a: &NfdCmd) -> anyhow::Result<u8> {
    match &a.command {
        Some(NfdSub::Rule(r)) => rule(root, r),
        Some(NfdSub::Lint(l)) => lint(l),
        None => match a.write.every {
            None => write(root, &a.write),
            Some(secs) => loop {
                if let Err(e) = write(root, &a.write) {
                    term::err(&format!("exliar: error: {}\n", term::chain(&e)));
                }
                std::thread::sleep(std::time::Duration::from_secs(secs.max(1)));
            },
        },
    }
}

#[derive(Debug, Serialize)]
struct NfdDoc {
    schema: &'static str,
    root: String,
    file: String,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    labels: BTreeMap<String, String>,
    /// Other files of the folder and what NFD makes of them.
    others: Vec<Other>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    apply: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
struct Other {
    file: String,
    /// Why NFD ignores it, or the lines it drops.
    problems: Vec<String>,
    /// exliar.dev/ labels it sets too: a file read later wins.
    overrides: Vec<String>,
}

fn write(root: &Path, a: &NfdWriteArgs) -> anyhow::Result<u8> {
    let host = HostRoot::new(root);
    let (inv, analysis, stacks) = read(root)?;
    let mut labels = nfd::labels(&inv, &analysis, &stacks);
    // A boot-time isolation applied since the host booted waits for a
    // reboot: a label a reboot coordinator can select on.
    let applied = crate::txn::read_journals(root).ok().and_then(|js| {
        js.list
            .iter()
            .rev()
            .find(|j| j.status == crate::txn::Status::Applied && j.subject.is_none())
            .map(|j| j.created_unix as i64)
    });
    let booted = host
        .read_optional("proc/stat")
        .ok()
        .flatten()
        .and_then(|t| nfd::parse_btime(&t));
    if let Some(r) = nfd::reboot_required(applied, booted) {
        labels.insert(format!("{}reboot-required", nfd::PREFIX), r.to_string());
    }
    let text = nfd::render(&labels);
    let mut doc = NfdDoc {
        schema: SCHEMA,
        root: root.display().to_string(),
        file: a.output.clone(),
        outcome: "refused",
        reason: None,
        labels,
        others: Vec::new(),
        plan: None,
        apply: None,
    };
    if a.print {
        term::out(&term::safe(&text))?;
        return Ok(exit::OK);
    }
    let refuse = |mut doc: NfdDoc, reason: String| -> anyhow::Result<u8> {
        if a.json {
            doc.reason = Some(reason);
            print_json(&doc)?;
        } else {
            term::err(&format!(
                "exliar: nfd refused: {}; nothing was changed\n",
                term::safe(&reason)
            ));
        }
        Ok(exit::FINDINGS)
    };
    if !a.output.starts_with('/') || a.output.ends_with('/') {
        return refuse(
            doc,
            format!("--output {:?}: give an absolute file", a.output),
        );
    }
    let (dir, name) = a.output.rsplit_once('/').unwrap_or(("", &a.output));
    if name.starts_with('.') {
        return refuse(
            doc,
            format!("{name}: NFD ignores files whose name starts with a dot"),
        );
    }
    let out = match crate::cdi::write::out_dir(&host, if dir.is_empty() { "/" } else { dir }) {
        Ok(o) => o,
        Err(e) => return refuse(doc, e),
    };
    if text.len() > nfd::MAX_FILE {
        return refuse(
            doc,
            format!(
                "the file would be {} bytes; NFD ignores files over {}",
                text.len(),
                nfd::MAX_FILE
            ),
        );
    }
    // The folder's other files: what NFD makes of them, and which of ours
    // they override (files are read in name order, later wins).
    if let Ok(names) = host.list_dir(&out.rel) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        for n in names.into_iter().filter(|n| n != name) {
            let rel = out.rel.join(&n);
            let shown = format!("{}/{n}", dir);
            let problems;
            let mut overrides = Vec::new();
            match host.link_target(&rel) {
                Ok(Some(_)) => {
                    problems = vec!["a symbolic link: NFD reads only regular files".to_string()];
                }
                _ => match host.read_bytes(&rel) {
                    Err(e) => problems = vec![format!("cannot read it: {}", e.source)],
                    Ok(b) => {
                        let c = nfd::check_file(&n, &b, now);
                        problems = c.ignored.into_iter().chain(c.problems).collect();
                        if n.as_str() > name {
                            overrides = c
                                .labels
                                .keys()
                                .filter(|k| doc.labels.contains_key(*k))
                                .cloned()
                                .collect();
                        }
                    }
                },
            }
            if !problems.is_empty() || !overrides.is_empty() {
                doc.others.push(Other {
                    file: shown,
                    problems,
                    overrides,
                });
            }
        }
    }
    if !a.json {
        for o in &doc.others {
            for p in &o.problems {
                term::err(&format!(
                    "exliar: warning: {}: {}\n",
                    term::safe(&o.file),
                    term::safe(p)
                ));
            }
            if !o.overrides.is_empty() {
                term::err(&format!(
                    "exliar: warning: {} sets {} too and is read after {name}: its values win\n",
                    term::safe(&o.file),
                    o.overrides.join(", ")
                ));
            }
        }
    }
    let rel = out.rel.join(name);
    if let Ok(Some(t)) = host.link_target(&rel) {
        return refuse(
            doc,
            format!(
                "{}: a symbolic link (to {}); NFD reads only regular files and exliar does not write through links",
                a.output,
                t.display()
            ),
        );
    }
    let before = match host.read_optional(&rel) {
        Ok(b) => b,
        Err(e) => return refuse(doc, format!("{}: {}", e.path, e.source)),
    };
    let mut plan = Plan::new(root.display().to_string());
    plan.subject = Subject::Nfd {
        file: a.output.clone(),
    };
    if before.as_deref() != Some(text.as_str()) {
        plan.steps.push(Step::WriteFile {
            path: rel,
            before: before.clone().map(String::into_bytes),
            after: text.clone().into_bytes(),
            mode: 0o644,
            why: format!(
                "{} node labels for node-feature-discovery",
                doc.labels.len()
            ),
        });
    }
    if a.check {
        let fresh = plan.is_empty();
        doc.outcome = if fresh { "up-to-date" } else { "stale" };
        if a.json {
            print_json(&doc)?;
        } else {
            term::out(&format!(
                "{}: {}\n",
                a.output,
                match (fresh, &before) {
                    (true, _) => "up to date",
                    (false, None) => "missing",
                    (false, Some(_)) => "stale: `exliar nfd` rewrites it",
                }
            ))?;
        }
        return Ok(if fresh { exit::OK } else { exit::FINDINGS });
    }
    if a.dry_run || plan.is_empty() {
        return boot::show_unapplied(
            &plan,
            a.json,
            &mut doc,
            &format!("{} is up to date; nothing to do.", a.output),
        );
    }
    boot::apply_reporting(root, &plan, a.yes, a.json, &mut doc)
}

/// The roots to read: the snapshots, or --root.
fn roots(root: &Path, snapshots: &[PathBuf]) -> Vec<PathBuf> {
    if snapshots.is_empty() {
        vec![root.to_path_buf()]
    } else {
        snapshots.to_vec()
    }
}

fn rule(root: &Path, a: &RuleArgs) -> anyhow::Result<u8> {
    let mut all = Vec::new();
    for r in roots(root, &a.snapshot) {
        let h = HostRoot::new(&r);
        let inv = read_host(&h)?;
        all.push(analyze::analyze(&inv));
    }
    let gpus: Vec<&crate::analyze::Gpu> = all.iter().flat_map(|x| &x.gpus).collect();
    print_json(&nfd::rule(&a.name, &gpus))?;
    Ok(exit::OK)
}

#[derive(Debug, Serialize)]
struct LintFile {
    file: String,
    #[serde(flatten)]
    check: nfd::FileCheck,
}

fn lint(a: &LintArgs) -> anyhow::Result<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut files: Vec<LintFile> = Vec::new();
    let mut one = |p: &Path| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let check = match std::fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => nfd::FileCheck {
                ignored: Some("a symbolic link: NFD reads only regular files".into()),
                ..Default::default()
            },
            Ok(m) if !m.is_file() => nfd::FileCheck {
                ignored: Some("not a regular file".into()),
                ..Default::default()
            },
            _ => match host::readfile::read_input(p, nfd::MAX_FILE as u64 + 1) {
                Ok(b) if b.len() > nfd::MAX_FILE => nfd::FileCheck {
                    ignored: Some(format!("over {} bytes: NFD ignores it", nfd::MAX_FILE)),
                    ..Default::default()
                },
                Ok(b) => nfd::check_file(&name, &b, now),
                Err(e) => nfd::FileCheck {
                    problems: vec![format!("cannot read it: {e}")],
                    ..Default::default()
                },
            },
        };
        files.push(LintFile {
            file: p.display().to_string(),
            check,
        });
    };
    for p in &a.paths {
        let is_dir = std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
        if is_dir {
            let mut names: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            names.sort();
            for n in names {
                one(&n);
            }
        } else {
            one(p);
        }
    }
    let bad = files.iter().any(|f| {
        !f.check.problems.is_empty()
            || (f.check.ignored.is_some()
                && !f
                    .file
                    .rsplit('/')
                    .next()
                    .is_some_and(|n| n.starts_with('.')))
    });
    if a.json {
        print_json(&serde_json::json!({
            "schema": "exliar.nfd-lint/1",
            "ok": !bad,
            "files": files,
        }))?;
    } else {
        let mut s = String::new();
        for f in &files {
            match &f.check.ignored {
                Some(why) => s.push_str(&format!("{}: ignored ({why})\n", f.file)),
                None if f.check.problems.is_empty() => s.push_str(&format!(
                    "{}: ok ({} label{})\n",
                    f.file,
                    f.check.labels.len(),
                    if f.check.labels.len() == 1 { "" } else { "s" }
                )),
                None => {
                    s.push_str(&format!("{}:\n", f.file));
                    for p in &f.check.problems {
                        s.push_str(&format!("  {p}\n"));
                    }
                }
            }
        }
        term::out(&term::safe(&s))?;
    }
    Ok(if bad { exit::FINDINGS } else { exit::OK })
}

pub fn kubevirt_run(root: &Path, a: &KubevirtCmd) -> anyhow::Result<u8> {
    let (args, vm) = match &a.command {
        KubevirtSub::Config(x) => (x, false),
        KubevirtSub::Vm(x) => (x, true),
    };
    let mut facts = Vec::new();
    for r in roots(root, &args.snapshot) {
        let h = HostRoot::new(&r);
        let inv = read_host(&h)?;
        let analysis = analyze::analyze(&inv);
        facts.push((node_name(&r), inv, analysis));
    }
    let nodes: Vec<kubevirt::Node<'_>> = facts
        .iter()
        .map(|(name, inv, analysis)| kubevirt::Node {
            name: name.clone(),
            inv,
            analysis,
        })
        .collect();
    let (devices, problems) = kubevirt::permitted(&nodes);
    for p in &problems {
        term::err(&format!("exliar: warning: {}\n", term::safe(p)));
    }
    if devices.is_empty() {
        term::err(
            "exliar: no node isolates a card (none on vfio-pci, none recommended): nothing to permit\n",
        );
        return Ok(exit::FINDINGS);
    }
    let provider = match args.provider {
        ProviderArg::Kubevirt => kubevirt::Provider::Kubevirt,
        ProviderArg::Exliar => kubevirt::Provider::Exliar,
    };
    if vm {
        match kubevirt::example_vm(&devices) {
            Some(v) => print_json(&v)?,
            None => {
                term::err("exliar: no GPU among the permitted devices\n");
                return Ok(exit::FINDINGS);
            }
        }
    } else {
        print_json(&kubevirt::kubevirt_cr(&devices, provider))?;
        for d in &devices {
            let nodes: Vec<String> = d
                .nodes
                .iter()
                .map(|(n, a)| {
                    format!(
                        "{n} ({})",
                        a.iter()
                            .map(|x| x.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
                .collect();
            term::err(&format!(
                "exliar: {} {} ({}): {}\n",
                d.selector,
                d.resource_name,
                d.what,
                term::safe(&nodes.join("; "))
            ));
        }
        term::err(
            "exliar: note: a merge patch replaces the whole pciHostDevices list: add the devices you already permit; KubeVirt needs the HostDevices feature gate (spec.configuration.developerConfiguration.featureGates)\n",
        );
    }
    Ok(if problems.is_empty() {
        exit::OK
    } else {
        exit::FINDINGS
    })
}

impl boot::ApplyDoc for NfdDoc {
    fn record(&mut self, outcome: &'static str, apply: serde_json::Value) {
        self.outcome = outcome;
        self.apply = Some(apply);
    }
    fn record_plan(&mut self, outcome: &'static str, plan: serde_json::Value) {
        self.outcome = outcome;
        self.plan = Some(plan);
    }
}
