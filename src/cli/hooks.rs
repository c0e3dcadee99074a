//! `exliar hooks install|remove|status`, and `exliar hook qemu …`, which
//! libvirt runs (through exliar's dispatcher script) for every domain.

use std::io::{Read as _, Write as _};
use std::path::Path;

use clap::{Args, Subcommand};

use super::{boot, exit, term};
use crate::hooks::{self, Handover, Run};
use crate::host::HostRoot;
use crate::plan::Subject;
use crate::txn::{Status, Store};

#[derive(Debug, Args)]
pub struct HooksCmd {
    #[command(subcommand)]
    pub command: HooksSub,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum HooksSub {
    /// Install exliar's libvirt QEMU hook as a transaction: /etc/libvirt/hooks/qemu.d/10-exliar (libvirt ≥ 6.5; another qemu hook stays and runs first), else a dispatcher as /etc/libvirt/hooks/qemu that runs the hook it replaces first; then the daemon is reloaded (libvirt finds hooks only then)
    Install(HooksInstallArgs),
    /// Take exliar's hook away: rolls back the transactions that installed it (a replaced hook comes back byte for byte), and reloads the daemon
    Remove(HooksRemoveArgs),
    /// Whether the hook is installed, which other hooks libvirt runs, and the hook's last runs with their outcome and step times
    Status(HooksStatusArgs),
}

#[derive(Debug, Args)]
pub struct HooksInstallArgs {
    /// Apply without asking
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connect: super::vm::Connect,
}

#[derive(Debug, Args)]
pub struct HooksRemoveArgs {
    /// Do it without asking
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HooksStatusArgs {
    /// How many of the last runs to show
    #[arg(long, default_value_t = 10)]
    pub last: usize,
    #[arg(long)]
    pub json: bool,
}

// `exliar hook qemu DOMAIN OPERATION SUB-OPERATION EXTRA` (libvirt's argv),
// the domain XML on standard input. (Plain comments: a doc comment would be
// the subcommand's about text once clap builds it, deferred.)
#[derive(Debug, Args)]
pub struct HookArgs {
    /// The hook's kind (`qemu`)
    pub kind: String,
    /// libvirt's arguments: domain, operation, sub-operation, extra
    #[arg(num_args = 0.., allow_hyphen_values = true)]
    pub args: Vec<String>,
}

// `exliar recover-display`.
#[derive(Debug, Args)]
pub struct RecoverDisplayArgs {
    /// Only when it is stuck: do nothing while the VM runs (the watchdog's
    /// form)
    #[arg(long)]
    pub if_stuck: bool,
    /// At boot, before the display manager: restore the kernel side and
    /// clear the record without starting services (systemd starts them)
    #[arg(long)]
    pub boot: bool,
    /// Give the display back even though the VM still runs (it loses the
    /// card)
    #[arg(long)]
    pub force: bool,
    #[arg(long)]
    pub json: bool,
}

/// The transient systemd timer armed at `prepare begin` of a single-GPU
/// VM: when the VM has not reached `started begin` by then (the hook or the
/// daemon died in between), it runs `exliar recover-display --if-stuck`.
pub const WATCHDOG: &str = "exliar-display-watchdog";
/// Seconds from `prepare begin` to the watchdog (QEMU reaches `started
/// begin` in seconds: the guest's boot is not waited for).
pub const WATCHDOG_SECS: u32 = 120;

fn systemd_runs(root: &Path) -> bool {
    root == Path::new("/") && HostRoot::new(root).exists("run/systemd/system")
}

fn disarm_watchdog(root: &Path) {
    if systemd_runs(root) {
        for args in [
            &["stop", "--", "exliar-display-watchdog.timer"][..],
            &[
                "reset-failed",
                "--",
                "exliar-display-watchdog.timer",
                "exliar-display-watchdog.service",
            ][..],
        ] {
            let _ = std::process::Command::new("systemctl")
                .args(args)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn arm_watchdog(root: &Path, steps: &mut Vec<hooks::Timed>) {
    if !systemd_runs(root) {
        return;
    }
    let t = std::time::Instant::now();
    disarm_watchdog(root);
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let ok = std::process::Command::new("systemd-run")
        .arg(format!("--unit={WATCHDOG}"))
        .arg(format!("--on-active={WATCHDOG_SECS}"))
        .arg("--timer-property=AccuracySec=1s")
        .arg("--")
        .arg(exe)
        .args(["recover-display", "--if-stuck"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    steps.push(hooks::Timed {
        what: format!(
            "arm the watchdog ({WATCHDOG}.timer, {WATCHDOG_SECS}s){}",
            if ok { "" } else { ": systemd-run failed" }
        ),
        secs: t.elapsed().as_secs_f64(),
    });
}

fn services_for(root: &Path) -> &'static dyn crate::handover::Services {
    if systemd_runs(root) {
        &crate::handover::Systemd
    } else {
        &crate::handover::NoServices
    }
}

/// The single-GPU handover (or give-back) for the hook.
fn single_gpu(
    root: &Path,
    kernel: &dyn crate::host::kernel::Kernel,
    store: &mut dyn crate::bind::BindingState,
    domain: &str,
    action: &hooks::Action,
    steps: &mut Vec<hooks::Timed>,
) -> Result<(), (bool, String)> {
    use crate::handover::{self as ho, Ended};
    let mut ctx = ho::Ctx {
        root,
        kernel,
        services: services_for(root),
        store,
        drm_wait: ho::DRM_WAIT,
    };
    let ended = match action {
        hooks::Action::HandOver(fs) => {
            let e = ho::take(&mut ctx, domain, fs, &mut ho::never, steps);
            if matches!(e, Ended::Ok | Ended::Failed { left: true, .. }) {
                arm_watchdog(root, steps);
            }
            e
        }
        _ => {
            disarm_watchdog(root);
            ho::give_back(&mut ctx, &mut ho::never, steps)
        }
    };
    match ended {
        Ended::Ok => Ok(()),
        Ended::Failed { message, left } => Err((
            true,
            if left {
                format!("{message}; `exliar recover-display` finishes giving the display back")
            } else {
                message
            },
        )),
        Ended::Killed => Err((true, "stopped".into())),
    }
}

pub fn recover_display(root: &Path, a: &RecoverDisplayArgs) -> anyhow::Result<u8> {
    use crate::handover::{self as ho, Ended};
    let started = std::time::Instant::now();
    let host = HostRoot::new(root);
    let journal = ho::read_journal(&host).map_err(|e| anyhow::anyhow!(e))?;
    let report = |outcome: &str,
                  domain: Option<&str>,
                  message: Option<String>,
                  steps: &[hooks::Timed],
                  code: u8|
     -> anyhow::Result<u8> {
        if a.json {
            let v = serde_json::json!({
                "schema": "exliar.recover-display/1",
                "outcome": outcome,
                "domain": domain,
                "message": message,
                "steps": steps,
                "secs": started.elapsed().as_secs_f64(),
            });
            term::out(&format!("{}\n", serde_json::to_string_pretty(&v)?))?;
        } else {
            let mut out = match outcome {
                "nothing-recorded" => {
                    "No single-GPU handover is recorded: nothing to give back.\n".to_string()
                }
                "vm-running" => String::new(),
                "given-back" => format!(
                    "The display is back (the handover for {} is undone):\n",
                    domain.unwrap_or("?")
                ),
                _ => "Giving the display back did not finish:\n".to_string(),
            };
            for t in steps {
                out.push_str(&format!("  {:.3}s {}\n", t.secs, t.what));
            }
            term::out(&out)?;
            if let Some(m) = &message {
                term::err(&format!("exliar recover-display: {m}\n"));
            }
        }
        Ok(code)
    };
    let Some(j) = journal else {
        return report("nothing-recorded", None, None, &[], exit::OK);
    };
    if !a.boot && !a.force && ho::domain_running(&host, &j.domain) {
        if a.if_stuck {
            return report("vm-running", Some(&j.domain), None, &[], exit::OK);
        }
        return report(
            "vm-running",
            Some(&j.domain),
            Some(format!(
                "{} runs and holds the card: stop it (`exliar vm destroy {}`) and the hook gives the display back; --force takes the card from the running VM",
                j.domain, j.domain
            )),
            &[],
            exit::FINDINGS,
        );
    }
    let kernel = crate::host::kernel::SysfsKernel::new(root);
    let _lock = crate::bind::StateFile::lock(root).map_err(|e| anyhow::anyhow!(e))?;
    let mut st = crate::bind::StateFile::load(root).map_err(|e| anyhow::anyhow!(e))?;
    let services: &dyn ho::Services = if a.boot {
        &ho::NoServices
    } else {
        services_for(root)
    };
    let mut ctx = ho::Ctx {
        root,
        kernel: &kernel,
        services,
        store: &mut st,
        drm_wait: ho::DRM_WAIT,
    };
    let mut steps = Vec::new();
    let ended = if a.boot {
        ho::give_back_at_boot(&mut ctx, &mut steps)
    } else {
        ho::give_back(&mut ctx, &mut ho::never, &mut steps)
    };
    if !a.boot {
        disarm_watchdog(root);
    }
    let (outcome, message, code) = match ended {
        Ended::Ok => ("given-back", None, exit::OK),
        Ended::Failed { message, .. } => ("failed", Some(message), exit::ERROR),
        Ended::Killed => ("failed", Some("stopped".into()), exit::ERROR),
    };
    hooks::log(
        root,
        &Run {
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            domain: j.domain.clone(),
            phase: "recover-display".into(),
            mode: Handover::SingleGpu.name().into(),
            outcome: if code == exit::OK { "ok" } else { "failed" }.into(),
            message: message.clone(),
            steps: steps.clone(),
            secs: started.elapsed().as_secs_f64(),
        },
    );
    report(outcome, Some(&j.domain), message, &steps, code)
}

pub fn run(root: &Path, cmd: &HooksCmd) -> anyhow::Result<u8> {
    match &cmd.command {
        HooksSub::Install(a) => install(root, a),
        HooksSub::Remove(a) => remove(root, a),
        HooksSub::Status(a) => status(root, a),
    }
}

fn install(root: &Path, a: &HooksInstallArgs) -> anyhow::Result<u8> {
    let host = HostRoot::new(root);
    let libvirt = crate::vm::virsh::Virsh::new(&a.connect.connect)
        .run(&["version"])
        .ok()
        .and_then(|v| crate::vm::looking_glass::parse_virsh_version(&v))
        .map(|(l, _)| l);
    let exe =
        std::env::current_exe().map_err(|e| anyhow::anyhow!("finding exliar's own path: {e}"))?;
    let plan = hooks::install_plan(&hooks::gather(&host, libvirt), &exe);
    if plan.steps.is_empty() {
        if a.json {
            print(
                &serde_json::json!({"schema": "exliar.apply/1", "applied": false, "reason": "nothing-to-do", "plan": boot::plan_json(&plan)}),
            )?;
        } else {
            term::out("exliar's hook is installed already; nothing to do.\n")?;
        }
        return Ok(exit::OK);
    }
    let store = boot::open_store(root)?;
    match boot::apply_built(&store, &plan, a.yes, false, a.json)? {
        boot::Applied::Done { code, doc } => {
            if a.json {
                print(&doc)?;
            }
            Ok(code)
        }
        boot::Applied::Failed { doc, error } => {
            if a.json {
                print(&doc)?;
            }
            Err(error)
        }
    }
}

fn print(v: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn remove(root: &Path, a: &HooksRemoveArgs) -> anyhow::Result<u8> {
    let store = Store::open(root)?;
    let ours: Vec<String> = store
        .journals()?
        .into_iter()
        .rev()
        .filter(|j| j.status == Status::Applied && j.subject == Some(Subject::Hooks))
        .map(|j| j.id)
        .collect();
    if ours.is_empty() {
        let msg =
            "no applied transaction installed exliar's hook (`exliar history`); nothing to remove";
        if a.json {
            print(
                &serde_json::json!({"schema": "exliar.hooks-remove/1", "removed": false, "transactions": [], "problems": [msg]}),
            )?;
        } else {
            term::err(&format!("exliar: {msg}\n"));
        }
        return Ok(exit::FINDINGS);
    }
    if !a.yes
        && !boot::confirm_with(&format!(
            "Remove exliar's libvirt hook (roll back {})?",
            ours.join(", ")
        ))?
    {
        return Ok(exit::FINDINGS);
    }
    let mut run = boot::runner(false);
    for id in &ours {
        store.rollback(id, false, run.as_mut())?;
    }
    if a.json {
        print(
            &serde_json::json!({"schema": "exliar.hooks-remove/1", "removed": true, "transactions": ours, "problems": []}),
        )?;
    } else {
        term::out(&format!(
            "Removed exliar's hook (rolled back {}).\n",
            ours.join(", ")
        ))?;
    }
    Ok(exit::OK)
}

fn status(root: &Path, a: &HooksStatusArgs) -> anyhow::Result<u8> {
    let s = hooks::status(&HostRoot::new(root), a.last);
    if a.json {
        print(&serde_json::to_value(&s)?)?;
        return Ok(exit::OK);
    }
    let mut out = match (&s.installed, &s.runs) {
        (Some(p), Some(r)) => format!("exliar's hook: {} (runs {})\n", p, r),
        (Some(p), None) => format!("exliar's hook: {}\n", p),
        _ => "exliar's hook: not installed (`exliar hooks install`)\n".to_string(),
    };
    for c in &s.chained {
        out.push_str(&format!("  also run by libvirt: {}\n", c));
    }
    if let Some(u) = &s.boot_unit {
        out.push_str(&format!("  boot unit: {u} (recover-display --boot)\n"));
    }
    if let Some(d) = &s.handover_in_progress {
        out.push_str(&format!(
            "Single-GPU handover in progress for {d} (`exliar recover-display` gives the display back once the VM is stopped)\n"
        ));
    }
    if s.last_runs.is_empty() {
        out.push_str("No runs for exliar's VMs yet.\n");
    } else {
        out.push_str("Last runs:\n");
        for r in &s.last_runs {
            out.push_str(&format!(
                "  {} {} {} ({}): {} in {:.2}s{}\n",
                r.at,
                &r.domain,
                r.phase,
                r.mode,
                r.outcome,
                r.secs,
                r.message
                    .as_deref()
                    .map(|m| format!(": {}", m))
                    .unwrap_or_default()
            ));
            for t in &r.steps {
                out.push_str(&format!("      {:.3}s {}\n", t.secs, t.what));
            }
        }
    }
    term::out(&out)?;
    Ok(exit::OK)
}

/// What libvirt runs. Exit 0 lets libvirt go on; exit 1 at `prepare` stops
/// the start with what this prints on standard error.
pub fn hook(root: &Path, a: &HookArgs) -> anyhow::Result<u8> {
    let started = std::time::Instant::now();
    if a.kind != "qemu" {
        return Ok(exit::OK);
    }
    let mut xml = Vec::new();
    std::io::stdin()
        .lock()
        .take(16 << 20)
        .read_to_end(&mut xml)?;
    let xml = String::from_utf8_lossy(&xml);
    let domain = hooks::read_domain(&xml);
    let arg = |i: usize| a.args.get(i).map(String::as_str).unwrap_or("");
    let (name, op, sub_op) = (arg(0), arg(1), arg(2));
    let action = hooks::decide(op, sub_op, domain.as_ref());
    let Some((mode, _)) = &domain else {
        return Ok(exit::OK);
    };
    // exliar's VMs: the plugins hear that one started or stopped.
    match (op, sub_op) {
        ("started", "begin") => super::notify("vm-started", serde_json::json!({"vm": name})),
        ("release", "end") => super::notify("vm-stopped", serde_json::json!({"vm": name})),
        _ => {}
    }
    if action == hooks::Action::Nothing {
        return Ok(exit::OK);
    }
    let host = HostRoot::new(root);
    let kernel = crate::host::kernel::SysfsKernel::new(root);
    let mut steps = Vec::new();
    let single = matches!(
        action,
        hooks::Action::HandOver(_) | hooks::Action::DisplayBack
    );
    if *mode == Handover::SingleGpu && op == "started" && sub_op == "begin" {
        // the VM got the card: the watchdog has nothing to watch
        disarm_watchdog(root);
    }
    let moves = single || matches!(action, hooks::Action::Take(_) | hooks::Action::GiveBack(_));
    let result = if moves {
        match crate::bind::StateFile::lock(root) {
            Ok(_lock) => match crate::bind::StateFile::load(root) {
                Ok(mut st) if single => {
                    single_gpu(root, &kernel, &mut st, name, &action, &mut steps)
                }
                Ok(mut st) => hooks::act(&host, &kernel, &mut st, &action, &mut steps),
                Err(e) => Err((true, e)),
            },
            Err(e) => Err((true, e)),
        }
    } else {
        let mut st = crate::bind::MemoryState(Vec::new());
        hooks::act(&host, &kernel, &mut st, &action, &mut steps)
    };
    let (outcome, message, code) = match &result {
        Ok(()) if action == hooks::Action::Log => ("logged", None, exit::OK),
        Ok(()) => ("ok", None, exit::OK),
        Err((false, m)) => ("warned", Some(m.clone()), exit::OK),
        Err((true, m)) if op == "prepare" => {
            super::notify("vm-failed", serde_json::json!({"vm": name, "error": m}));
            ("refused", Some(m.clone()), exit::FINDINGS)
        }
        Err((true, m)) => ("failed", Some(m.clone()), exit::FINDINGS),
    };
    let run = Run {
        at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        domain: name.to_string(),
        phase: format!("{op} {sub_op}"),
        mode: mode.name().to_string(),
        outcome: outcome.to_string(),
        message: message.clone(),
        steps,
        secs: started.elapsed().as_secs_f64(),
    };
    hooks::log(root, &run);
    if let Some(m) = message {
        let what = if code == exit::OK {
            "warning"
        } else {
            "refused"
        };
        term::err(&format!(
            "exliar ({} {name}): {what}: {m}\n",
            Handover::name(*mode)
        ));
    }
    Ok(code)
}
