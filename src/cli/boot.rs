//! `exliar plan`, `apply`, `rollback`, `history`, `recover`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use serde::Serialize;

use super::{exit, read_host, term};
use crate::analyze::{self, Analysis};
use crate::host::HostRoot;
use crate::host::critical::{self, Critical};
use crate::model::Inventory;
use crate::plan::isolate::{self, BootloaderChoice, IsolateRequest, PlanError, TargetFacts};
use crate::plan::{self, Plan, facts};
use crate::txn::{
    CommandRunner, Journal, NOT_RUN, NoRunner, RunState, Status, Store, SystemRunner,
};

// Flags shared by `plan` and `apply`. (Not a doc comment: it would be
// the subcommands' about text once clap builds them, deferred.)
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The GPU to isolate (`0000:01:00.0`), or `auto` for the recommendation
    #[arg(long, default_value = "auto", value_name = "ADDR|auto")]
    pub gpu: String,
    /// Write into this root instead of the running system's (an installer's
    /// mounted target); hardware is still read from --root
    #[arg(long, value_name = "DIR")]
    pub target: Option<std::path::PathBuf>,
    /// Go on despite overridable refusals (boot display of a single-GPU
    /// host, a shared IOMMU group, no IOMMU yet)
    #[arg(long)]
    pub force: bool,
    /// Also add `iommu=pt` (host devices skip IOMMU translation)
    #[arg(long)]
    pub iommu_pt: bool,
    /// Bind the card by PCI address at early boot, not by vendor:device id,
    /// even when no other device has its ids (a card with the same ids added
    /// later stays the host's)
    #[arg(long)]
    pub by_address: bool,
    /// Where to put the kernel parameters, instead of the detected boot
    /// loader; needed when the evidence conflicts. One of: grub,
    /// systemd-boot, kernel-cmdline, grubby, kernelstub, refind, limine,
    /// limine-default, proxmox
    #[arg(long, value_name = "NAME", env = "EXLIAR_BOOTLOADER")]
    pub bootloader: Option<BootloaderChoice>,
    /// Print the versioned JSON document
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct PlanCmd {
    #[command(flatten)]
    pub common: PlanArgs,
    /// `text` (diffs), `json`, or `nix` (a NixOS module to import, for
    /// NixOS; not with --json, an error)
    #[arg(long, default_value = "text", value_parser = ["text", "json", "nix"])]
    pub format: String,
}

#[derive(Debug, clap::Args)]
pub struct ApplyCmd {
    #[command(flatten)]
    pub common: PlanArgs,
    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Write the files but do not run the regeneration commands (run them yourself)
    #[arg(long)]
    pub no_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct TxnCmd {
    /// A transaction id from `exliar history`, or `last`
    #[arg(default_value = "last")]
    pub txn: String,
    /// The root whose transactions to use (default: --root)
    #[arg(long, value_name = "DIR")]
    pub target: Option<std::path::PathBuf>,
    /// Restore the originals even if someone changed the files since
    #[arg(long)]
    pub force: bool,
    /// Do not run the regeneration commands
    #[arg(long)]
    pub no_run: bool,
    /// Also remove disk images the transaction created that were written to since (a VM's installed system); without it they are kept and named
    #[arg(long)]
    pub delete_disks: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct TargetCmd {
    /// The root whose transactions to use (default: --root)
    #[arg(long, value_name = "DIR")]
    pub target: Option<std::path::PathBuf>,
    /// Do not run the regeneration commands
    #[arg(long)]
    pub no_run: bool,
    #[arg(long)]
    pub json: bool,
}

fn print_json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// What a plan is made from besides the hardware: the target's files and the request.
struct Inputs {
    analysis: Analysis,
    critical: Vec<Critical>,
    facts: TargetFacts,
    req: IsolateRequest,
}

/// The rest of a plan's inputs, for the hardware `inv` read from `root`.
fn inputs(root: &Path, inv: &Inventory, a: &PlanArgs) -> anyhow::Result<Inputs> {
    let critical = critical::find(&HostRoot::new(root));
    let target_root = a.target.clone().unwrap_or_else(|| root.to_path_buf());
    let live = a.target.is_none() && root == Path::new("/");
    let facts = facts::read(&HostRoot::new(&target_root), live);
    let gpu = if a.gpu == "auto" {
        None
    } else {
        Some(crate::model::PciAddress::parse(&a.gpu)?)
    };
    Ok(Inputs {
        analysis: analyze::analyze(inv),
        critical,
        facts,
        req: IsolateRequest {
            gpu,
            force: a.force,
            iommu_pt: a.iommu_pt,
            by_address: a.by_address,
            bootloader: a.bootloader,
        },
    })
}

fn build(root: &Path, a: &PlanArgs) -> anyhow::Result<Result<Plan, PlanError>> {
    build_for(root, &read_host(&HostRoot::new(root))?, a)
}

/// [`build`] for hardware already read from `root`.
pub(crate) fn build_for(
    root: &Path,
    inv: &Inventory,
    a: &PlanArgs,
) -> anyhow::Result<Result<Plan, PlanError>> {
    let i = inputs(root, inv, a)?;
    let mut r = isolate::plan(inv, &i.analysis, &i.critical, &i.facts, &i.req);
    if let (Ok(p), Some(w)) = (&mut r, cpu_warning(inv)) {
        p.warnings.push(w);
    }
    if let Ok(p) = &mut r {
        // Steps the plugins propose, shown and applied with exliar's own.
        let target = a.target.clone().unwrap_or_else(|| root.to_path_buf());
        crate::plugin::extend_plan(root, &target, p);
    }
    Ok(r)
}

/// The planner adds `intel_iommu=on` for Intel CPUs only (AMD's IOMMU is on
/// by default): on a CPU of another or unknown vendor the plan has no IOMMU
/// parameter, which must be said, not silently left out.
fn cpu_warning(inv: &Inventory) -> Option<String> {
    let vendor = inv.host.cpu_vendor.as_deref();
    if matches!(
        vendor,
        Some("GenuineIntel" | "AuthenticAMD" | "HygonGenuine")
    ) {
        return None;
    }
    Some(format!(
        "the CPU vendor is {}: exliar adds `intel_iommu=on` only for Intel CPUs (AMD's IOMMU is on by default), so this plan adds no IOMMU parameter; if this CPU's IOMMU is off by default, add the parameter it needs to the kernel command line yourself",
        vendor.map_or_else(
            || "unknown (no vendor_id in /proc/cpuinfo)".to_string(),
            |v| format!("`{v}`")
        )
    ))
}

/// `bind --persist`: the plan that isolates the card of `gpu` at boot, by
/// address, on this root.
pub(super) fn persist_plan(
    root: &Path,
    inv: &Inventory,
    gpu: crate::model::PciAddress,
    force: bool,
) -> anyhow::Result<Result<Plan, PlanError>> {
    let bootloader = match std::env::var("EXLIAR_BOOTLOADER") {
        Ok(s) if !s.is_empty() => Some(
            s.parse()
                .map_err(|e| anyhow::anyhow!("EXLIAR_BOOTLOADER: {e}"))?,
        ),
        _ => None,
    };
    build_for(
        root,
        inv,
        &PlanArgs {
            gpu: gpu.to_string(),
            target: None,
            force,
            iommu_pt: false,
            by_address: true,
            bootloader,
            json: false,
        },
    )
}

/// `bind --persist`: what became of the persistent part; the caller prints
/// the document in JSON mode.
pub(super) struct Persisted {
    pub code: u8,
    pub doc: serde_json::Value,
    pub error: Option<anyhow::Error>,
}

/// `bind --persist` after the runtime bind: without a store (`--dry-run`)
/// only shows the plan (an `exliar.plan/1` document); else applies it (an
/// `exliar.apply/1` document).
pub(super) fn persist_apply(
    store: Option<&Store>,
    p: &Plan,
    yes: bool,
    json: bool,
) -> anyhow::Result<Persisted> {
    let shown = |doc: serde_json::Value| Persisted {
        code: exit::OK,
        doc,
        error: None,
    };
    if p.is_empty() {
        if !json {
            term::out(
                "Boot-time isolation: nothing to change, the card is bound at boot already.\n",
            )?;
            term::out(&plan::render_unplaced(&p.unplaced_params))?;
        }
        return Ok(shown(not_applied("nothing-to-change", p)));
    }
    let Some(store) = store else {
        // --dry-run
        if !json {
            term::out(&plan::render(p))?;
            term::out("\nDry run: the boot configuration was not changed.\n")?;
        }
        return Ok(shown(serde_json::to_value(plan_doc(p))?));
    };
    Ok(match apply_built(store, p, yes, false, json)? {
        Applied::Done { code, doc } => Persisted {
            code,
            doc,
            error: None,
        },
        Applied::Failed { doc, error } => Persisted {
            code: exit::ERROR,
            doc,
            error: Some(error),
        },
    })
}

/// The transaction store of `root`, locked, refusing over an interrupted
/// transaction: its half-written files would make a new plan look done
/// (`apply`, `bind --persist`).
pub(crate) fn open_store(root: &Path) -> anyhow::Result<Store> {
    let store = Store::open(root)?;
    let unfinished = store.unfinished()?;
    warn_skipped(&store.skipped());
    if let Some(j) = unfinished {
        return Err(crate::txn::TxnError::Unfinished { id: j.id }.into());
    }
    Ok(store)
}

/// Warn about transaction folders that could not be read (they are skipped).
pub(super) fn warn_skipped(skipped: &[crate::txn::Skipped]) {
    for s in skipped {
        term::err(&format!("exliar: warning: transaction folder {s}\n"));
    }
}

/// Prints a plan refusal (`bind --persist`); returns the exit code.
pub(super) fn persist_refused(e: &PlanError, json: bool) -> anyhow::Result<u8> {
    refused(e, json, APPLY_SCHEMA)
}

#[derive(Serialize)]
struct PlanDoc<'a> {
    #[serde(flatten)]
    plan: &'a Plan,
    exliar_version: &'static str,
    /// Unified diffs, in step order (file steps only).
    diffs: Vec<String>,
}

/// The `exliar.plan/1` document of `p`.
pub(crate) fn plan_json(p: &Plan) -> serde_json::Value {
    serde_json::to_value(plan_doc(p)).unwrap_or_default()
}

fn plan_doc(p: &Plan) -> PlanDoc<'_> {
    PlanDoc {
        plan: p,
        exliar_version: env!("CARGO_PKG_VERSION"),
        diffs: p
            .steps
            .iter()
            .filter_map(|s| match s {
                plan::Step::WriteFile {
                    path,
                    before,
                    after,
                    ..
                } => Some(plan::unified_diff(path, before.as_deref(), after)),
                _ => None,
            })
            .collect(),
    }
}

/// The JSON document of a refusal (`schema`: `exliar.plan/1` or
/// `exliar.apply/1`).
fn refusal_doc(e: &PlanError, schema: &str) -> serde_json::Value {
    let mut doc = serde_json::json!({
        "schema": schema,
        "error": e.to_string(),
        "overridable": matches!(e, PlanError::Refused { overridable: true, .. }),
        "reason": match e {
            PlanError::Refused { .. } => "refused",
            PlanError::AmbiguousBootloader { .. } => "bootloader-conflict",
            PlanError::Unsupported(_) => "unsupported",
            PlanError::Edit { .. } => "edit-failed",
        },
        "no_gpu": matches!(e, PlanError::Refused { reasons, .. }
            if reasons.first().is_some_and(|r| r.starts_with("no GPU given and none recommended"))),
    });
    if let PlanError::AmbiguousBootloader { evidence } = e {
        doc["bootloader_evidence"] = serde_json::json!(evidence);
        doc["bootloader_choices"] = serde_json::json!(
            BootloaderChoice::ALL
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
        );
    }
    if schema == APPLY_SCHEMA {
        doc["applied"] = serde_json::json!(false);
    }
    doc
}

const APPLY_SCHEMA: &str = "exliar.apply/1";

/// The `exliar.apply/1` document of a plan not applied (`nothing-to-change`,
/// `not-confirmed`).
fn not_applied(reason: &str, p: &Plan) -> serde_json::Value {
    serde_json::json!({"schema": APPLY_SCHEMA, "applied": false, "reason": reason, "plan": plan_doc(p), "unplaced_params": p.unplaced_params})
}

/// The parameters a boot entry will not pass, on stderr, one line each
/// (JSON mode: the document has them, a person watching sees them too).
fn warn_unplaced(p: &Plan) {
    for u in &p.unplaced_params {
        eprintln!(
            "exliar: WARNING: {}: missing `{}`: {}",
            u.entry,
            u.missing.join(" "),
            u.reason
        );
    }
}

fn refused(e: &PlanError, json: bool, schema: &str) -> anyhow::Result<u8> {
    if json {
        print_json(&refusal_doc(e, schema))?;
    }
    term::err(&format!("exliar: {e}\n"));
    if let PlanError::AmbiguousBootloader { .. } = e {
        for c in BootloaderChoice::ALL {
            term::err(&format!(
                "exliar:   --bootloader {:<15} {}\n",
                c.name(),
                c.describe()
            ));
        }
    }
    if matches!(
        e,
        PlanError::Refused {
            overridable: true,
            ..
        }
    ) {
        eprintln!("exliar: --force goes on anyway");
    }
    Ok(match e {
        PlanError::Refused { .. } | PlanError::AmbiguousBootloader { .. } => exit::FINDINGS,
        _ => exit::ERROR,
    })
}

pub fn plan_cmd(root: &Path, a: &PlanCmd) -> anyhow::Result<u8> {
    if a.format == "nix" {
        if a.common.json {
            // The module is Nix, not JSON: a JSON reader would choke on it.
            anyhow::bail!(
                "--json and --format nix conflict: the NixOS module is Nix text; drop --json to print it"
            );
        }
        return nix(root, &a.common);
    }
    let p = match build(root, &a.common)? {
        Ok(p) => p,
        Err(e) => return refused(&e, a.common.json || a.format == "json", plan::PLAN_SCHEMA),
    };
    let target_root = a
        .common
        .target
        .clone()
        .unwrap_or_else(|| root.to_path_buf());
    if let Ok(js) = crate::txn::read_journals(&target_root) {
        warn_skipped(&js.skipped);
        if let Some(j) = js.unfinished().next() {
            term::err(&format!(
                "exliar: warning: transaction {} is unfinished ({}); run `exliar recover` before applying anything\n",
                j.id,
                j.status.unfinished_what()
            ));
        }
    }
    if a.common.json || a.format == "json" {
        print_json(&plan_doc(&p))?;
        warn_unplaced(&p);
    } else {
        term::out(&plan::render(&p))?;
        if !p.is_empty() {
            term::out("\nNothing was changed. `exliar apply` (same flags) applies this plan.\n")?;
        }
    }
    Ok(exit::OK)
}

/// `exliar plan --format nix`: a NixOS module for the user to import, made
/// like any plan (same card, refusals and binding), printed instead of applied.
fn nix(root: &Path, a: &PlanArgs) -> anyhow::Result<u8> {
    let inv = read_host(&HostRoot::new(root))?;
    let i = inputs(root, &inv, a)?;
    match isolate::nixos(&inv, &i.analysis, &i.critical, &i.facts, &i.req) {
        Ok(mut n) => {
            n.warnings.extend(cpu_warning(&inv));
            for w in &n.warnings {
                term::err(&format!("exliar: warning: {w}\n"));
            }
            term::out(&n.module)?;
            Ok(exit::OK)
        }
        Err(e) => refused(&e, false, plan::PLAN_SCHEMA),
    }
}

fn confirm() -> anyhow::Result<bool> {
    confirm_with("Apply this plan?")
}

/// Ask `question` on the terminal; `false` (and said) without one.
pub(crate) fn confirm_with(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "exliar: not applied: confirmation needs a terminal; pass --yes to apply from a script"
        );
        return Ok(false);
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

pub(crate) fn runner(no_run: bool) -> Box<dyn CommandRunner> {
    if no_run {
        return Box::new(NoRunner);
    }
    if let Some(t) = crate::txn::TestRunner::from_env() {
        // debug builds only (tests): a sleeping stand-in for the commands
        Box::new(t)
    } else {
        Box::new(SystemRunner)
    }
}

/// The fields of a `txn-applied` / `txn-rolled-back` plugin event.
pub(crate) fn txn_event(j: &Journal) -> serde_json::Value {
    let subject = j
        .subject
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .and_then(|v| v.get("subject").cloned())
        .unwrap_or_else(|| serde_json::json!("gpu-isolation"));
    serde_json::json!({
        "transaction": j.id,
        "subject": subject,
        "gpu": j.gpu,
        "files": j.files.iter().map(|f| format!("/{}", f.path.display())).collect::<Vec<_>>(),
    })
}

pub(crate) fn journal_text(j: &Journal) -> String {
    let mut s = match &j.subject {
        Some(plan::Subject::Vm { name, connect }) => {
            format!(
                "transaction {} (VM {name} on {connect}): {}\n",
                j.id, j.status
            )
        }
        Some(plan::Subject::Hooks) => {
            format!("transaction {} (libvirt hooks): {}\n", j.id, j.status)
        }
        Some(plan::Subject::Runtime { engine }) => {
            format!(
                "transaction {} ({engine} configuration): {}\n",
                j.id, j.status
            )
        }
        Some(plan::Subject::Cdi { dir }) => {
            format!("transaction {} (CDI specs in {dir}): {}\n", j.id, j.status)
        }
        Some(plan::Subject::Nfd { file }) => {
            format!(
                "transaction {} (node labels in {file}): {}\n",
                j.id, j.status
            )
        }
        _ => format!("transaction {}: {}\n", j.id, j.status),
    };
    for f in &j.files {
        s.push_str(&format!(
            "  /{} ({})\n",
            f.path.display(),
            if f.existed { "edited" } else { "created" }
        ));
    }
    for c in &j.commands {
        let what = match (c.state, c.output.as_deref()) {
            (_, Some(NOT_RUN)) => "not run (--no-run)",
            (RunState::Done, _) => "ran",
            (RunState::Failed, _) => "failed",
            (RunState::Running, _) => "interrupted",
            (RunState::Pending, _) => "not run",
        };
        s.push_str(&format!("  {what}: {}\n", c.argv.join(" ")));
        if let Some(r) = c.revert_state {
            let what = match (r, c.revert_output.as_deref()) {
                (_, Some(NOT_RUN)) => "not run (--no-run)",
                (RunState::Done, _) => "ran",
                (RunState::Failed, _) => "failed",
                (RunState::Running, _) => "interrupted",
                (RunState::Pending, _) => "not run",
            };
            match (&c.action, &c.kept) {
                (_, Some(kept)) => s.push_str(&format!("  undoing: {kept}\n")),
                (crate::txn::Action::CreateImage { path }, None) => {
                    s.push_str(&format!("  undoing, {what}: remove /{}\n", path.display()));
                }
                _ => {
                    let argv = c.undo.as_ref().unwrap_or(&c.argv);
                    s.push_str(&format!("  undoing, {what}: {}\n", argv.join(" ")));
                }
            }
        }
    }
    s
}

/// The commands of `j` left for the user (`--no-run`), one indented line
/// each, quoted for a shell; `None` when none was left.
fn commands_not_run(j: &Journal) -> Option<String> {
    let lines: String = j
        .commands
        .iter()
        .filter(|c| c.output.as_deref() == Some(NOT_RUN))
        .map(|c| {
            let words: Vec<String> = c.argv.iter().map(|w| shell_word(w)).collect();
            format!("  {}\n", words.join(" "))
        })
        .collect();
    (!lines.is_empty()).then_some(lines)
}

/// `w` as one shell word: as it is when it holds only safe characters,
/// else in single quotes.
fn shell_word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

pub fn apply(root: &Path, a: &ApplyCmd) -> anyhow::Result<u8> {
    let target_root = a
        .common
        .target
        .clone()
        .unwrap_or_else(|| root.to_path_buf());
    // Take the lock first (before the plan is read).
    let store = match open_store(&target_root) {
        Ok(s) => s,
        Err(e) => {
            if a.common.json {
                print_json(&failed_doc(&e))?;
            }
            return Err(e);
        }
    };
    let p = match build(root, &a.common)? {
        Ok(p) => p,
        Err(e) => return refused(&e, a.common.json, APPLY_SCHEMA),
    };
    if p.is_empty() {
        if a.common.json {
            print_json(&not_applied("nothing-to-change", &p))?;
            warn_unplaced(&p);
        } else if p.unplaced_params.is_empty() {
            term::out("Nothing to change: the target is already configured.\n")?;
        } else {
            term::out("Nothing exliar can change.\n")?;
            term::out(&plan::render_unplaced(&p.unplaced_params))?;
        }
        return Ok(exit::OK);
    }
    match apply_built(&store, &p, a.yes, a.no_run, a.common.json)? {
        Applied::Done { code, doc } => {
            if a.common.json {
                print_json(&doc)?;
            }
            Ok(code)
        }
        Applied::Failed { doc, error } => {
            if a.common.json {
                // Installers read stdout: say what failed there too.
                print_json(&doc)?;
            }
            Err(error)
        }
    }
}

/// The `exliar.apply/1` document of a failed apply: the error, the state
/// of the host and the command to run next.
fn failed_doc(e: &anyhow::Error) -> serde_json::Value {
    let (host, txn) = match e.downcast_ref::<crate::txn::TxnError>() {
        Some(t) => (t.host_state(), t.transaction().map(str::to_string)),
        None => (crate::txn::HostState::Unchanged, None),
    };
    serde_json::json!({
        "schema": APPLY_SCHEMA,
        "applied": false,
        "reason": "failed",
        "error": term::chain(e),
        "restored": host.next().is_none(),
        "host": host.name(),
        "transaction": txn,
        "next": host.next(),
    })
}

/// What [`apply_built`] did, with its `exliar.apply/1` document.
pub(crate) enum Applied {
    /// Applied (exit 0), or not confirmed (exit 1).
    Done { code: u8, doc: serde_json::Value },
    /// The transaction failed (its files restored when `restored`).
    Failed {
        doc: serde_json::Value,
        error: anyhow::Error,
    },
}

/// A command's own JSON document that records how applying its plan went.
pub(crate) trait ApplyDoc: serde::Serialize {
    /// `outcome`: `applied`, `not-confirmed` or `failed`; `apply`: the
    /// `exliar.apply/1` document.
    fn record(&mut self, outcome: &'static str, apply: serde_json::Value);
    /// `outcome`: `dry-run` or `nothing-to-do`; `plan`: the
    /// `exliar.plan/1` document.
    fn record_plan(&mut self, outcome: &'static str, plan: serde_json::Value);
}

/// A plan that is not applied (`--dry-run`, or nothing to change): records
/// it in `doc` and prints the document (JSON), `current` (nothing to
/// change) or the plan.
pub(crate) fn show_unapplied(
    p: &Plan,
    json: bool,
    doc: &mut impl ApplyDoc,
    current: &str,
) -> anyhow::Result<u8> {
    let outcome = if p.is_empty() {
        "nothing-to-do"
    } else {
        "dry-run"
    };
    doc.record_plan(outcome, plan_json(p));
    if json {
        print_json(doc)?;
    } else if p.is_empty() {
        term::out(&format!("{}\n", term::safe(current)))?;
    } else {
        term::out(&term::safe(&plan::render(p)))?;
    }
    Ok(exit::OK)
}

/// Applies a built plan for a command with its own JSON document: records
/// the outcome in `doc`, and prints it in JSON mode.
pub(crate) fn apply_reporting(
    root: &Path,
    p: &Plan,
    yes: bool,
    json: bool,
    doc: &mut impl ApplyDoc,
) -> anyhow::Result<u8> {
    let store = open_store(root)?;
    let (code, error) = match apply_built(&store, p, yes, false, json)? {
        Applied::Done { code, doc: applied } => {
            let outcome = if code == exit::OK {
                "applied"
            } else {
                "not-confirmed"
            };
            doc.record(outcome, applied);
            (code, None)
        }
        Applied::Failed { doc: failed, error } => {
            doc.record("failed", failed);
            (exit::ERROR, Some(error))
        }
    };
    if json {
        print_json(doc)?;
    }
    match error {
        Some(e) => Err(e),
        None => Ok(code),
    }
}

/// Shows a built, non-empty plan (text mode), asks unless `yes`, and applies it
/// as one transaction. The caller prints the document in JSON mode.
pub(crate) fn apply_built(
    store: &Store,
    p: &Plan,
    yes: bool,
    no_run: bool,
    json: bool,
) -> anyhow::Result<Applied> {
    if !json {
        term::out(&plan::render(p))?;
    }
    if !yes && !confirm()? {
        eprintln!("Nothing was changed.");
        return Ok(Applied::Done {
            code: exit::FINDINGS,
            doc: not_applied("not-confirmed", p),
        });
    }
    let mut run = runner(no_run);
    let j = match store.apply(p, run.as_mut()) {
        Ok(j) => {
            super::notify("txn-applied", txn_event(&j));
            j
        }
        Err(e) => {
            let e = anyhow::Error::from(e);
            return Ok(Applied::Failed {
                doc: {
                    let mut d = failed_doc(&e);
                    d["unplaced_params"] = serde_json::json!(p.unplaced_params);
                    d
                },
                error: e,
            });
        }
    };
    if !json && let plan::Subject::Vm { name, .. } = &p.subject {
        term::out(&journal_text(&j))?;
        term::out(&format!(
            "Applied. VM {name} is defined: `exliar vm start {name}` starts it; `exliar rollback {}` undoes it.\n",
            j.id
        ))?;
    } else if !json && let plan::Subject::Runtime { engine } = &p.subject {
        term::out(&journal_text(&j))?;
        term::out(&format!(
            "Applied. Restart {engine} for it to read the change; `exliar rollback {}` undoes it.\n",
            j.id
        ))?;
    } else if !json && let plan::Subject::Cdi { .. } = &p.subject {
        term::out(&journal_text(&j))?;
        term::out(&format!(
            "Applied. Engines read the specs when a container asks for a device (no restart); `exliar cdi list` shows the names; `exliar rollback {}` undoes it.\n",
            j.id
        ))?;
    } else if !json && let plan::Subject::Nfd { .. } = &p.subject {
        term::out(&journal_text(&j))?;
        term::out(&format!(
            "Applied. node-feature-discovery reads the file within a minute (it watches the folder); `exliar rollback {}` undoes it.\n",
            j.id
        ))?;
    } else if !json && p.subject == plan::Subject::Hooks {
        term::out(&journal_text(&j))?;
        term::out(&format!(
            "Applied. libvirt runs exliar's hook from now on; `exliar hooks remove` (or `exliar rollback {}`) takes it away.\n",
            j.id
        ))?;
    } else if !json {
        term::out(&journal_text(&j))?;
        let gpu = p.subject.gpu().map(|g| g.to_string()).unwrap_or_default();
        term::out(&plan::render_unplaced(&p.unplaced_params))?;
        let isolated = if p.unplaced_params.is_empty() {
            format!("to boot with {gpu} on vfio-pci; `exliar rollback` undoes it.")
        } else {
            format!(
                "but {gpu} is not isolated at boot until the parameters above are on the kernel command line; `exliar rollback` undoes what was applied."
            )
        };
        let head = if p.unplaced_params.is_empty() {
            "Applied."
        } else {
            "Applied, but INCOMPLETE."
        };
        term::out(&match commands_not_run(&j) {
            None => format!("{head} Reboot {isolated}\n"),
            Some(cmds) => format!(
                "{head} Not yet in the boot image: the regeneration commands were not run (--no-run). Run, in this order:\n{cmds}then reboot {isolated}\n"
            ),
        })?;
    } else {
        warn_unplaced(p);
    }
    Ok(Applied::Done {
        code: exit::OK,
        doc: serde_json::json!({
            "schema": APPLY_SCHEMA,
            "applied": true,
            "no_run": no_run,
            "plan": plan_doc(p),
            "unplaced_params": p.unplaced_params,
            "journal": j,
        }),
    })
}

pub fn rollback(root: &Path, a: &TxnCmd) -> anyhow::Result<u8> {
    let target = a.target.clone().unwrap_or_else(|| root.to_path_buf());
    if a.txn != "last" && !crate::txn::valid_id(&a.txn) {
        return Err(crate::txn::TxnError::BadId(a.txn.clone()).into());
    }
    let mut store = Store::open(&target)?;
    store.delete_disks = a.delete_disks;
    let mut run = runner(a.no_run);
    let r = store.rollback(&a.txn, a.force, run.as_mut());
    warn_skipped(&store.skipped());
    let j = r?;
    super::notify("txn-rolled-back", txn_event(&j));
    if a.json {
        print_json(&j)?;
    } else if let Some(crate::plan::Subject::Vm { name, .. }) = &j.subject {
        term::out(&journal_text(&j))?;
        let kept: Vec<&str> = j
            .commands
            .iter()
            .filter_map(|c| c.kept.as_deref())
            .collect();
        term::out(&if kept.is_empty() {
            format!("Rolled back: VM {name} is as it was before the transaction.\n")
        } else {
            format!(
                "Rolled back VM {name}, but kept what was written to since:\n  {}\n",
                kept.join("\n  ")
            )
        })?;
    } else if let Some(crate::plan::Subject::Nfd { file }) = &j.subject {
        term::out(&journal_text(&j))?;
        term::out(&format!(
            "Rolled back: {file} is as it was before the transaction.\n"
        ))?;
    } else if let Some(crate::plan::Subject::Cdi { dir }) = &j.subject {
        term::out(&journal_text(&j))?;
        term::out(&format!(
            "Rolled back: exliar's CDI specs in {dir} are as they were before the transaction.\n"
        ))?;
    } else if let Some(crate::plan::Subject::Runtime { engine }) = &j.subject {
        term::out(&journal_text(&j))?;
        term::out(&format!(
            "Rolled back: every file is as it was before; restart {engine} for it to read them again.\n"
        ))?;
    } else {
        term::out(&journal_text(&j))?;
        term::out(&match commands_not_run(&j) {
            None => "Rolled back: every file is as it was before; reboot to boot without the isolation.\n".to_string(),
            Some(cmds) => format!(
                "Rolled back: every file is as it was before, but the boot image still isolates the card: the regeneration commands were not run (--no-run). Run, in this order:\n{cmds}then reboot to boot without the isolation.\n"
            ),
        })?;
    }
    Ok(exit::OK)
}

pub fn recover(root: &Path, a: &TargetCmd) -> anyhow::Result<u8> {
    let target = a.target.clone().unwrap_or_else(|| root.to_path_buf());
    let store = Store::open(&target)?;
    let mut run = runner(a.no_run);
    let r = store.recover(run.as_mut());
    warn_skipped(&store.skipped());
    let done = r?;
    match done.first() {
        Some(j) => {
            if a.json {
                print_json(j)?;
            } else {
                for j in &done {
                    term::out(&journal_text(j))?;
                    term::out(&format!("{}\n", recovered_text(j)))?;
                }
            }
        }
        None => {
            if a.json {
                print_json(&serde_json::json!(null))?;
            } else {
                term::out("Nothing to recover: no interrupted transaction.\n")?;
            }
        }
    }
    Ok(exit::OK)
}

#[derive(Serialize)]
struct HistoryDoc {
    schema: &'static str,
    transactions: Vec<Journal>,
}

/// What `recover` says about a transaction it finished.
fn recovered_text(j: &Journal) -> &'static str {
    match j.status {
        Status::RolledBack if j.subject.is_some() => {
            "Rollback finished: the VM's files and definition are as they were before."
        }
        Status::RolledBack => {
            "Rollback finished: every file is as it was before; reboot to boot without the isolation."
        }
        Status::Failed => "The failed apply is undone: every file is back to its original.",
        _ => "Recovered: every file the interrupted transaction touched is back to its original.",
    }
}

/// Read-only: takes no lock and writes nothing (works unprivileged; a
/// target without exliar's state has no transactions).
pub fn history(root: &Path, a: &TargetCmd) -> anyhow::Result<u8> {
    let target = a.target.clone().unwrap_or_else(|| root.to_path_buf());
    let all = crate::txn::read_journals(&target)?;
    warn_skipped(&all.skipped);
    let js = all.list;
    if a.json {
        print_json(&HistoryDoc {
            schema: "exliar.history/1",
            transactions: js,
        })?;
        return Ok(exit::OK);
    }
    if js.is_empty() {
        term::out("No transactions.\n")?;
    }
    for j in &js {
        term::out(&journal_text(j))?;
        if j.status.unfinished() {
            term::out("  (unfinished: run `exliar recover`)\n")?;
        }
    }
    Ok(exit::OK)
}
