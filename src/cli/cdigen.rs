//! `exliar cdi generate`: CDI specs for every GPU the host's drivers hold,
//! written as one transaction (plan, diff, `exliar rollback`), refused when
//! an engine found under the root would reject them; `--check` says whether
//! the written specs still match the host.

use std::collections::BTreeMap;
use std::path::Path;

use clap::{Args, ValueEnum};
use serde::Serialize;

use super::{boot, exit, read_host, term};
use crate::analyze;
use crate::cdi::host::{self as cdihost, HookProgram, HostSpecs, Options, Skipped};
use crate::cdi::spec::{self, Spec, Version};
use crate::cdi::write::{self, FileState, OutDir, Output};
use crate::host::{self, HostRoot};
use crate::model::PciAddress;
use crate::runtime::{self, configure};

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The spec directory inside the root (engines read /etc/cdi and /var/run/cdi; the second overrides the first for the same device)
    #[arg(long, value_name = "DIR", default_value = "/etc/cdi")]
    pub output: String,
    /// Only cards of these PCI vendors
    #[arg(long, value_enum, value_name = "VENDOR")]
    pub vendor: Vec<VendorArg>,
    /// Only these cards (PCI addresses)
    #[arg(long, value_name = "ADDR")]
    pub gpu: Vec<String>,
    /// Only these kinds: `gpu` (exliar.dev/gpu, cards a GPU driver holds) or `vfio` (exliar.dev/vfio, cards on vfio-pci)
    #[arg(long, value_enum, value_name = "KIND")]
    pub kind: Vec<KindArg>,
    /// Also give /dev/dri/cardN (display, KMS) with AMD, Intel and other cards (NVIDIA's always has it)
    #[arg(long)]
    pub drm_card: bool,
    /// No ld-cache hook for NVIDIA's libraries, even when nvidia-cdi-hook or nvidia-ctk is installed
    #[arg(long)]
    pub no_hooks: bool,
    /// Declare this cdiVersion instead of the lowest the content needs (refused when it cannot express the content)
    #[arg(long, value_name = "VERSION")]
    pub cdi_version: Option<String>,
    /// A spec annotation KEY=VALUE on every spec (needs cdiVersion 0.6.0)
    #[arg(long, value_name = "KEY=VALUE")]
    pub annotation: Vec<String>,
    /// Write nothing: exit 0 when the specs in the directory match the host, 1 when one is stale, missing or obsolete
    #[arg(long, conflicts_with = "dry_run")]
    pub check: bool,
    /// Show the plan and write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Write even when an engine found under the root would reject the specs
    #[arg(long)]
    pub force: bool,
    /// Apply without asking
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print the versioned JSON document (exliar.cdi-generate/1)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum VendorArg {
    Nvidia,
    Amd,
    Intel,
    Other,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    Gpu,
    Vfio,
}

pub const SCHEMA: &str = "exliar.cdi-generate/1";

#[derive(Debug, Serialize)]
struct SpecDoc {
    file: String,
    kind: String,
    cdi_version: String,
    minimum_version: String,
    devices: Vec<String>,
    spec: Spec,
}

#[derive(Debug, Serialize)]
struct EngineDoc {
    name: String,
    version: String,
    max_cdi_version: Option<String>,
    /// Whether it loads every spec written.
    accepts: bool,
    reason: Option<String>,
    /// Whether its configuration reads the output directory now.
    reads_output: Option<bool>,
}

#[derive(Debug, Serialize)]
struct Doc {
    schema: &'static str,
    root: String,
    output: Option<OutDir>,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    specs: Vec<SpecDoc>,
    skipped: Vec<Skipped>,
    notes: Vec<String>,
    engines: Vec<EngineDoc>,
    files: Vec<FileState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    apply: Option<serde_json::Value>,
}

fn print_doc(d: &Doc) -> anyhow::Result<()> {
    term::out(&format!("{}\n", serde_json::to_string_pretty(d)?))?;
    Ok(())
}

fn options(
    a: &GenerateArgs,
    host: &HostRoot,
) -> anyhow::Result<(Options, BTreeMap<String, String>)> {
    let gpus = a
        .gpu
        .iter()
        .map(|s| PciAddress::parse(s).map_err(|e| anyhow::anyhow!("--gpu {s}: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut ann = BTreeMap::new();
    for kv in &a.annotation {
        let Some((k, v)) = kv.split_once('=') else {
            anyhow::bail!("--annotation {kv:?}: give KEY=VALUE");
        };
        ann.insert(k.to_string(), v.to_string());
    }
    let hook = if a.no_hooks {
        None
    } else {
        HookProgram::find(|p| host.exists(p.trim_start_matches('/')))
    };
    let vendors = a
        .vendor
        .iter()
        .map(|v| match v {
            VendorArg::Nvidia => "nvidia",
            VendorArg::Amd => "amd",
            VendorArg::Intel => "intel",
            VendorArg::Other => "other",
        })
        .map(String::from)
        .collect();
    let kinds = a
        .kind
        .iter()
        .map(|k| match k {
            KindArg::Gpu => "gpu",
            KindArg::Vfio => "vfio",
        })
        .map(String::from)
        .collect();
    Ok((
        Options {
            vendors,
            gpus,
            kinds,
            drm_card: a.drm_card,
            hook,
        },
        ann,
    ))
}

pub fn generate(root: &Path, a: &GenerateArgs) -> anyhow::Result<u8> {
    let host = HostRoot::new(root);
    let (opts, annotations) = options(a, &host)?;
    let pin = match &a.cdi_version {
        None => None,
        Some(v) => Some(
            Version::parse(v)
                .ok_or_else(|| anyhow::anyhow!("--cdi-version {v:?}: not a version like 0.5.0"))?,
        ),
    };
    let inv = read_host(&host)?;
    let analysis = analyze::analyze(&inv);
    let stacks = host::stacks::read(&host, &analysis.gpus);
    for w in &stacks.warnings {
        tracing::warn!("{}", term::safe(&w.to_string()));
    }
    let mut doc = Doc {
        schema: SCHEMA,
        root: root.display().to_string(),
        output: None,
        outcome: "refused",
        reason: None,
        specs: Vec::new(),
        skipped: Vec::new(),
        notes: Vec::new(),
        engines: Vec::new(),
        files: Vec::new(),
        plan: None,
        apply: None,
    };
    let out = match write::out_dir(&host, &a.output) {
        Ok(o) => o,
        Err(e) => return refuse(doc, e, a.json),
    };
    doc.output = Some(out.clone());
    let HostSpecs {
        specs: inputs,
        skipped,
        notes,
    } = match cdihost::host_specs(&analysis.gpus, &stacks, &opts) {
        Ok(h) => h,
        Err(e) => return refuse(doc, e, a.json),
    };
    doc.skipped = skipped;
    doc.notes = notes;
    let mut specs: Vec<(&'static str, Spec)> = Vec::new();
    for si in inputs {
        let mut input = si.input;
        input.annotations = annotations.clone();
        match crate::cdi::generate(&input, pin) {
            Ok(s) => specs.push((si.file, s)),
            Err(e) => return refuse(doc, format!("{}: {e}", si.file), a.json),
        }
    }
    doc.specs = specs
        .iter()
        .map(|(file, s)| SpecDoc {
            file: format!("{}/{file}", out.dir.trim_end_matches('/')),
            kind: s.kind.clone(),
            cdi_version: s.cdi_version.clone(),
            minimum_version: spec::minimum_version(s).to_string(),
            devices: s
                .devices
                .iter()
                .map(|d| spec::qualified_name(&s.kind, &d.name))
                .collect(),
            spec: s.clone(),
        })
        .collect();
    // What the engines under the root make of them.
    let mut rejected = Vec::new();
    for e in runtime::engines(&host) {
        let why: Vec<String> = specs
            .iter()
            .filter_map(|(_, s)| e.accepts(&s.cdi_version).err())
            .collect();
        let conf = configure::configured(&host, &e);
        let reads = e.cdi.max_cdi_version().map(|_| {
            conf.configured
                && (conf.spec_dirs.is_empty()
                    || conf.spec_dirs.iter().any(|d| {
                        d.trim_end_matches('/') == out.dir
                            || out.resolved.as_deref() == Some(d.trim_end_matches('/'))
                    }))
        });
        if reads == Some(false) && why.is_empty() {
            doc.notes.push(if conf.configured {
                format!(
                    "{} {} reads CDI specs from {}, not {}",
                    e.name,
                    e.version,
                    conf.spec_dirs.join(", "),
                    out.dir
                )
            } else {
                format!(
                    "{} {} does not read CDI specs now ({}): `exliar runtime configure {}`",
                    e.name, e.version, conf.detail, e.name
                )
            });
        }
        if let Some(w) = why.first() {
            rejected.push(w.clone());
        }
        doc.engines.push(EngineDoc {
            name: e.name.to_string(),
            version: e.version.clone(),
            max_cdi_version: e.cdi.max_cdi_version().map(str::to_string),
            accepts: why.is_empty(),
            reason: why.first().cloned(),
            reads_output: reads,
        });
    }
    // Devices another file of the directory defines too: engines drop both.
    let conflicts = match conflicts(&host, &out, &specs) {
        Ok(c) => c,
        Err(e) => return refuse(doc, e, a.json),
    };
    if !conflicts.is_empty() {
        return refuse(doc, conflicts.join("; "), a.json);
    }
    let outputs: Vec<Output<'_>> = specs
        .iter()
        .map(|(file, spec)| Output { file, spec })
        .collect();
    let (plan, states) = match write::plan(&host, &out, &outputs) {
        Ok(p) => p,
        Err(e) => return refuse(doc, e, a.json),
    };
    doc.files = states;
    if a.check {
        let fresh = doc.files.iter().all(|f| f.state == "up-to-date") && !specs.is_empty();
        let nothing = specs.is_empty() && doc.files.is_empty();
        doc.outcome = if fresh || nothing {
            "up-to-date"
        } else {
            "stale"
        };
        if a.json {
            print_doc(&doc)?;
        } else {
            let mut s = String::new();
            for f in &doc.files {
                s.push_str(&format!("{}: {}\n", f.file, f.state.replace('-', " ")));
            }
            s.push_str(if fresh || nothing {
                "The CDI specs match the host.\n"
            } else {
                "The CDI specs do not match the host: `exliar cdi generate` with the same options writes them.\n"
            });
            term::out(&term::safe(&s))?;
        }
        return Ok(if fresh || nothing {
            exit::OK
        } else {
            exit::FINDINGS
        });
    }
    if specs.is_empty() {
        let why = if doc.skipped.is_empty() {
            "no GPU held by a driver matches: nothing to write".to_string()
        } else {
            "every matching card was skipped: nothing to write".to_string()
        };
        return refuse(doc, why, a.json);
    }
    if !rejected.is_empty() && !a.force {
        return refuse(
            doc,
            format!(
                "{} (--force writes it anyway; a lower --cdi-version or no --annotation may do)",
                rejected.join("; ")
            ),
            a.json,
        );
    }
    if !a.json {
        term::out(&term::safe(&summary(&doc)))?;
        term::err(&term::safe(&notes_text(&doc)));
    }
    if a.dry_run || plan.is_empty() {
        return boot::show_unapplied(
            &plan,
            a.json,
            &mut doc,
            &format!("The specs in {} are up to date; nothing to do.", out.dir),
        );
    }
    boot::apply_reporting(root, &plan, a.yes, a.json, &mut doc)
}

/// Devices of `specs` that another JSON spec in the output directory
/// defines too, in words.
fn conflicts(
    host: &HostRoot,
    out: &OutDir,
    specs: &[(&'static str, Spec)],
) -> Result<Vec<String>, String> {
    let names = match host.list_dir(&out.rel) {
        Ok(n) => n,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(format!("{}: {}", e.path, e.source)),
    };
    let mut files: Vec<(String, String)> = Vec::new();
    for n in names {
        if !n.ends_with(".json") || write::OWN_FILES.contains(&n.as_str()) {
            continue;
        }
        // A file that cannot be read or parsed is the engine's problem, not
        // a conflict (`exliar cdi validate` reports it).
        if let Ok(t) = host.read_string(out.rel.join(&n)) {
            files.push((format!("{}/{n}", out.dir.trim_end_matches('/')), t));
        }
    }
    for (file, s) in specs {
        files.push((
            format!("{}/{file}", out.dir.trim_end_matches('/')),
            spec::to_json(s),
        ));
    }
    files.sort();
    let checked = spec::validate_dir(&files, None);
    Ok(checked
        .conflicts
        .into_iter()
        .filter(|c| {
            c.files
                .iter()
                .any(|f| write::OWN_FILES.iter().any(|o| f.ends_with(o)))
        })
        .map(|c| {
            format!(
                "{} would be defined by {}: engines drop a device two files of one directory define",
                c.device,
                c.files.join(" and ")
            )
        })
        .collect())
}

fn refuse(mut doc: Doc, reason: String, json: bool) -> anyhow::Result<u8> {
    doc.outcome = "refused";
    if json {
        doc.reason = Some(reason);
        print_doc(&doc)?;
    } else {
        term::err(&term::safe(&notes_text(&doc)));
        term::err(&format!(
            "exliar: cdi generate refused: {}; nothing was changed\n",
            term::safe(&reason)
        ));
    }
    Ok(exit::FINDINGS)
}

fn summary(doc: &Doc) -> String {
    let mut s = String::new();
    let dir = doc.output.as_ref().map(|o| o.dir.as_str()).unwrap_or("");
    s.push_str(&format!("CDI specs for {} in {dir}", doc.root));
    if let Some(r) = doc.output.as_ref().and_then(|o| o.resolved.as_deref()) {
        s.push_str(&format!(" (a link: written in {r})"));
    }
    s.push_str(":\n");
    for sp in &doc.specs {
        s.push_str(&format!(
            "  {}: {}, cdiVersion {}{}\n",
            sp.file,
            sp.kind,
            sp.cdi_version,
            if sp.cdi_version == sp.minimum_version {
                " (the lowest its content needs)".to_string()
            } else {
                format!(" (its content needs {})", sp.minimum_version)
            }
        ));
        for d in &sp.spec.devices {
            let nodes: Vec<&str> = d
                .container_edits
                .device_nodes
                .iter()
                .map(|n| n.path.as_str())
                .collect();
            let mounts = d.container_edits.mounts.len();
            s.push_str(&format!(
                "    {}: {}{}\n",
                spec::qualified_name(&sp.kind, &d.name),
                nodes.join(" "),
                if mounts > 0 {
                    format!(
                        " + {mounts} read-only mount{}",
                        if mounts == 1 { "" } else { "s" }
                    )
                } else {
                    String::new()
                }
            ));
        }
    }
    for e in &doc.engines {
        s.push_str(&format!(
            "  {} {}: {}\n",
            e.name,
            e.version,
            match (&e.reason, &e.max_cdi_version) {
                (Some(r), _) => format!("REJECTS them: {r}"),
                (None, Some(m)) => format!("loads them (specs up to cdiVersion {m})"),
                (None, None) => "cannot use CDI".into(),
            }
        ));
    }
    s
}

fn notes_text(doc: &Doc) -> String {
    let mut s = String::new();
    for k in &doc.skipped {
        s.push_str(&format!("exliar: skipped {}: {}\n", k.address, k.reason));
    }
    for n in &doc.notes {
        s.push_str(&format!("exliar: note: {n}\n"));
    }
    s
}

impl boot::ApplyDoc for Doc {
    fn record(&mut self, outcome: &'static str, apply: serde_json::Value) {
        self.outcome = outcome;
        self.apply = Some(apply);
    }
    fn record_plan(&mut self, outcome: &'static str, plan: serde_json::Value) {
        self.outcome = outcome;
        self.plan = Some(plan);
    }
}
