//! libvirt's QEMU hook: how exliar hands a card over when a VM starts and
//! takes it back when it stops.
//!
//! [`install_plan`] is a plan like any other (files, then a daemon reload:
//! libvirt finds hooks only when it starts or on SIGHUP); `hooks remove`
//! rolls those transactions back, which restores a chained hook byte for
//! byte and reloads the daemon again. The
//! hook itself is a two-line dispatcher that `exec`s `exliar hook qemu
//! "$@"`; [`run`] is what that runs: it reads the domain XML libvirt passes
//! on stdin, returns at once for a domain without exliar's metadata, and for
//! exliar's own acts by the VM's handover mode, logging every run
//! ([`LOG`]).
//!
//! Who moves the card, per mode (the probe found that with
//! `managed='yes'` libvirt moves functions that start on host drivers to
//! vfio-pci and back, and leaves ones already on vfio-pci alone):
//! - `boot`: the card is isolated at boot; its hostdevs are
//!   `managed='yes'`, so libvirt never has anything to move unless the
//!   isolation is missing; the hook verifies and says so.
//! - `dynamic`: exliar moves it. The hostdevs are `managed='no'`, so libvirt
//!   never touches the binding: at `prepare begin` the hook binds the card's
//!   functions to vfio-pci (verified, undone on failure), refusing while the
//!   host uses the card; at `release end` it gives them back. The two never
//!   fight over a device.
//! - `single-gpu`: exliar moves it, as in `dynamic` (managed='no'), after
//!   the host let go of its display ([`crate::handover`]); at `release end`
//!   the display comes back from the handover's journal.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::host::HostRoot;
use crate::model::PciAddress;
use crate::plan::{Plan, Step, Subject};

/// Where libvirt looks for hooks (compiled in: `SYSCONFDIR/libvirt/hooks`).
pub const HOOKS_DIR: &str = "etc/libvirt/hooks";
/// exliar's hook in the `qemu.d` folder (libvirt ≥ 6.5 runs every
/// executable there, after `qemu`).
pub const DROPIN: &str = "etc/libvirt/hooks/qemu.d/10-exliar";
/// The single-script hook of older libvirt.
pub const MAIN: &str = "etc/libvirt/hooks/qemu";
/// Where a user's own `qemu` hook is kept when exliar's dispatcher takes its
/// place (older libvirt only); the dispatcher runs it first.
pub const CHAINED: &str = "etc/libvirt/hooks/qemu.exliar-chained";
/// The runs of the hook, one JSON object a line.
pub const LOG: &str = "var/lib/exliar/hooks/runs.jsonl";
/// The marker line of exliar's scripts.
const MARK: &str = "# exliar-hook-dispatcher";

/// How a VM gets its card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Handover {
    /// Isolated at boot; the hook verifies.
    #[default]
    Boot,
    /// Bound to vfio-pci when the VM starts, given back when it stops.
    Dynamic,
    /// The host's only GPU, let go of entirely while the VM runs.
    SingleGpu,
}

impl Handover {
    pub fn name(self) -> &'static str {
        match self {
            Handover::Boot => "boot",
            Handover::Dynamic => "dynamic",
            Handover::SingleGpu => "single-gpu",
        }
    }
}

/// Single-quote `s` for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// When the exliar the hook names is gone (uninstalled, moved), the hook
/// lets libvirt go on: a failing hook would stop every domain from starting.
fn gone_guard(exliar: &Path) -> String {
    format!(
        "[ -x {} ] || exit 0\n",
        sh_quote(&exliar.display().to_string())
    )
}

/// The `qemu.d` dispatcher: libvirt's argv and stdin go to exliar as they
/// are.
pub fn dropin_script(exliar: &Path) -> String {
    format!(
        "#!/bin/sh\n{MARK}\n# Installed by `exliar hooks install`; `exliar hooks remove` takes it away.\n# libvirt's argv and the domain XML on stdin go to exliar unchanged; exliar\n# returns at once for domains it did not create.\n{}exec {} hook qemu \"$@\"\n",
        gone_guard(exliar),
        sh_quote(&exliar.display().to_string())
    )
}

/// The single-script dispatcher of older libvirt: the kept hook first (with
/// the same argv and XML; its failure is libvirt's failure, as before), then
/// exliar.
pub fn main_script(exliar: &Path, chained: bool) -> String {
    let mut s = format!(
        "#!/bin/sh\n{MARK}\n# Installed by `exliar hooks install`; `exliar hooks remove` puts back what was here.\n"
    );
    if chained {
        s.push_str(&format!(
            "xml=$(cat)\nprintf '%s\\n' \"$xml\" | {} \"$@\" || exit $?\n{}printf '%s\\n' \"$xml\" | exec {} hook qemu \"$@\"\n",
            sh_quote(&format!("/{CHAINED}")),
            gone_guard(exliar),
            sh_quote(&exliar.display().to_string())
        ));
    } else {
        s.push_str(&format!(
            "{}exec {} hook qemu \"$@\"\n",
            gone_guard(exliar),
            sh_quote(&exliar.display().to_string())
        ));
    }
    s
}

/// What the hooks plan needs to know about the host.
#[derive(Debug, Clone, Default)]
pub struct HookHost {
    /// The running libvirt's version, when known.
    pub libvirt: Option<(u32, u32)>,
    /// `etc/libvirt/hooks/qemu` now.
    pub main: Option<Vec<u8>>,
    /// `etc/libvirt/hooks/qemu.d/10-exliar` now.
    pub dropin: Option<Vec<u8>>,
    /// `etc/libvirt/hooks/qemu.exliar-chained` now.
    pub chained: Option<Vec<u8>>,
    /// How to make the daemon read its hooks again (`None`: not found).
    pub reload: Option<Vec<String>>,
    /// systemd runs the host: the boot unit of `recover-display` is
    /// installed with the hook.
    pub systemd: bool,
    /// [`UNIT`] and [`UNIT_WANTS`] now.
    pub unit: Option<Vec<u8>>,
    pub unit_wants: Option<Vec<u8>>,
}

/// The boot unit that gives the display back after a single-GPU handover a
/// crash interrupted (it acts only when the handover's journal exists).
pub const UNIT: &str = "etc/systemd/system/exliar-recover-display.service";
/// Pulls [`UNIT`] in at boot: a drop-in (a plain file, restored byte for
/// byte on rollback), not an enable symlink.
pub const UNIT_WANTS: &str =
    "etc/systemd/system/multi-user.target.d/10-exliar-recover-display.conf";

/// The text of [`UNIT`].
pub fn unit_text(exliar: &Path) -> String {
    // `%` and `$` mean specifiers and variables to systemd
    let exe = exliar
        .display()
        .to_string()
        .replace('%', "%%")
        .replace('$', "$$");
    let exe = if exe
        .chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\\')
    {
        format!("\"{}\"", exe.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        exe
    };
    format!(
        "# Installed by `exliar hooks install`; `exliar hooks remove` takes it away.\n[Unit]\nDescription=exliar: give the display back after an unfinished single-GPU handover\nConditionPathExists=/{}\nAfter=local-fs.target systemd-modules-load.service\nBefore=display-manager.service libvirtd.service virtqemud.service\n\n[Service]\nType=oneshot\nExecStart={exe} recover-display --boot\n",
        crate::handover::JOURNAL
    )
}

fn unit_wants_text() -> String {
    "# Installed by `exliar hooks install`; `exliar hooks remove` takes it away.\n[Unit]\nWants=exliar-recover-display.service\n".into()
}

/// Read the facts: the hook files, and how to reload the daemon (systemd's
/// `try-reload-or-restart` when systemd runs, else SIGHUP to the pid in the
/// daemon's pid file).
pub fn gather(host: &HostRoot, libvirt: Option<(u32, u32)>) -> HookHost {
    let bytes = |rel: &str| host.read_bytes(rel).ok();
    let reload = if host.exists("run/systemd/system") {
        Some(
            [
                "systemctl",
                "try-reload-or-restart",
                "libvirtd.service",
                "virtqemud.service",
            ]
            .map(String::from)
            .to_vec(),
        )
    } else {
        [
            "run/libvirtd.pid",
            "run/libvirt/libvirtd.pid",
            "run/libvirt/virtqemud.pid",
            "run/virtqemud.pid",
        ]
        .iter()
        .filter_map(|p| host.read_optional(p).ok().flatten())
        .filter_map(|t| t.trim().parse::<u32>().ok())
        .find(|pid| host.exists(format!("proc/{pid}")))
        .map(|pid| vec!["kill".into(), "-HUP".into(), pid.to_string()])
    };
    HookHost {
        libvirt,
        main: bytes(MAIN),
        dropin: bytes(DROPIN),
        chained: bytes(CHAINED),
        reload,
        systemd: host.exists("run/systemd/system"),
        unit: bytes(UNIT),
        unit_wants: bytes(UNIT_WANTS),
    }
}

fn is_ours(b: &[u8]) -> bool {
    String::from_utf8_lossy(b).lines().any(|l| l.trim() == MARK)
}

/// Whether libvirt runs `qemu.d/*` (6.5 and later; unknown: assumed, as
/// every distribution of the last years ships such a libvirt).
fn has_dropins(v: Option<(u32, u32)>) -> bool {
    v.is_none_or(|v| v >= (6, 5))
}

fn reload_step(h: &HookHost, plan: &mut Plan, why: &str) {
    match &h.reload {
        Some(argv) => plan.steps.push(Step::Run {
            argv: argv.clone(),
            undo: None,
            why: format!("libvirt reads its hooks only when it starts or reloads: {why}"),
        }),
        None => plan.warnings.push(
            "no running libvirt daemon was found (no systemd, no pid file): it reads the hooks when it next starts".into(),
        ),
    }
}

/// The plan that installs exliar's hook (empty when it is installed).
pub fn install_plan(h: &HookHost, exliar: &Path) -> Plan {
    let mut plan = Plan::new("/");
    plan.subject = Subject::Hooks;
    if has_dropins(h.libvirt) {
        let want = dropin_script(exliar).into_bytes();
        if h.dropin.as_deref() != Some(&want[..]) {
            plan.steps.push(Step::WriteFile {
                path: DROPIN.into(),
                before: h.dropin.clone(),
                after: want,
                mode: 0o755,
                why: "exliar's libvirt QEMU hook (libvirt runs qemu.d/* for every domain)".into(),
            });
        }
        if let Some(m) = &h.main
            && !is_ours(m)
        {
            plan.warnings.push(format!(
                "/{MAIN} (someone else's hook) stays as it is: libvirt runs it first, then exliar's"
            ));
        }
    } else {
        let chain = h.main.as_ref().is_some_and(|m| !is_ours(m));
        if chain {
            plan.steps.push(Step::WriteFile {
                path: CHAINED.into(),
                before: h.chained.clone(),
                after: h.main.clone().unwrap_or_default(),
                mode: 0o755,
                why: format!(
                    "keep the hook that was in /{MAIN}: exliar's dispatcher runs it first, with the same arguments and XML"
                ),
            });
        }
        let chained = chain || h.chained.is_some();
        let want = main_script(exliar, chained).into_bytes();
        if h.main.as_deref() != Some(&want[..]) {
            plan.steps.push(Step::WriteFile {
                path: MAIN.into(),
                before: h.main.clone(),
                after: want,
                mode: 0o755,
                why: format!(
                    "exliar's dispatcher as /{MAIN} (this libvirt runs one qemu hook only){}",
                    if chained {
                        "; it runs the kept hook first"
                    } else {
                        ""
                    }
                ),
            });
        }
    }
    if !plan.steps.is_empty() {
        reload_step(h, &mut plan, "the new hook is used from now on");
    }
    if h.systemd {
        let n = plan.steps.len();
        for (path, before, after, why) in [
            (
                UNIT,
                &h.unit,
                unit_text(exliar),
                "at boot, before the display manager: finish a single-GPU handover a crash interrupted (`exliar recover-display --boot`; it runs only when a handover is recorded)",
            ),
            (
                UNIT_WANTS,
                &h.unit_wants,
                unit_wants_text(),
                "start that unit at every boot",
            ),
        ] {
            if before.as_deref() != Some(after.as_bytes()) {
                plan.steps.push(Step::WriteFile {
                    path: path.into(),
                    before: before.clone(),
                    after: after.into_bytes(),
                    mode: 0o644,
                    why: why.into(),
                });
            }
        }
        if plan.steps.len() > n {
            plan.steps.push(Step::Run {
                argv: ["systemctl", "daemon-reload"].map(String::from).to_vec(),
                undo: None,
                why: "systemd reads the new unit (run again on rollback, after the files are restored)".into(),
            });
        }
    }
    plan
}

/// What `hooks status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub schema: &'static str,
    /// Where exliar's hook is (`/etc/libvirt/hooks/qemu.d/10-exliar` or
    /// `/etc/libvirt/hooks/qemu`), or null.
    pub installed: Option<String>,
    /// The exliar it runs.
    pub runs: Option<String>,
    /// Other hooks libvirt runs besides exliar's.
    pub chained: Vec<String>,
    /// The boot unit of `recover-display` (`/etc/systemd/system/…`), or
    /// null (not installed: no systemd).
    pub boot_unit: Option<String>,
    /// A single-GPU handover recorded now (the domain), not given back yet.
    pub handover_in_progress: Option<String>,
    /// The last runs, newest last.
    pub last_runs: Vec<Run>,
}

pub const STATUS_SCHEMA: &str = "exliar.hooks/1";

pub fn status(host: &HostRoot, last: usize) -> Status {
    let h = gather(host, None);
    let exe_of = |b: &[u8]| {
        String::from_utf8_lossy(b).lines().rev().find_map(|l| {
            let l = l.trim();
            let r = l.strip_prefix("exec '").or(l.split("| exec '").nth(1))?;
            Some(r.split("' hook qemu").next()?.replace(r"'\''", "'"))
        })
    };
    let mut installed = None;
    let mut runs = None;
    let mut chained = Vec::new();
    if let Some(d) = h.dropin.as_deref().filter(|d| is_ours(d)) {
        installed = Some(format!("/{DROPIN}"));
        runs = exe_of(d);
    }
    match h.main.as_deref() {
        Some(m) if is_ours(m) => {
            installed.get_or_insert(format!("/{MAIN}"));
            if runs.is_none() {
                runs = exe_of(m);
            }
            if h.chained.is_some() {
                chained.push(format!("/{CHAINED}"));
            }
        }
        Some(_) => chained.push(format!("/{MAIN}")),
        None => {}
    }
    for name in host
        .list_dir("etc/libvirt/hooks/qemu.d")
        .unwrap_or_default()
    {
        let rel = format!("etc/libvirt/hooks/qemu.d/{name}");
        if rel != DROPIN {
            chained.push(format!("/{rel}"));
        }
    }
    let log = host.read_optional(LOG).ok().flatten().unwrap_or_default();
    let mut last_runs: Vec<Run> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let skip = last_runs.len().saturating_sub(last);
    last_runs.drain(..skip);
    Status {
        schema: STATUS_SCHEMA,
        installed,
        runs,
        chained,
        boot_unit: h.unit.as_ref().map(|_| format!("/{UNIT}")),
        handover_in_progress: crate::handover::read_journal(host)
            .ok()
            .flatten()
            .map(|j| j.domain),
        last_runs,
    }
}

/// One step of a hook run, timed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Timed {
    pub what: String,
    pub secs: f64,
}

/// One run of the hook for an exliar domain (a line of [`LOG`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Run {
    /// Seconds since the epoch.
    pub at: u64,
    pub domain: String,
    /// libvirt's operation and sub-operation (`prepare begin`, …).
    pub phase: String,
    pub mode: String,
    /// `ok`, `nothing-to-do`, `refused`, `failed`.
    pub outcome: String,
    pub message: Option<String>,
    pub steps: Vec<Timed>,
    pub secs: f64,
}

/// What the hook decides to do for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Not an exliar domain, or a phase exliar does nothing in.
    Nothing,
    /// Only log the phase.
    Log,
    /// `boot`: check the functions are on vfio-pci (or libvirt moves them).
    Verify(Vec<PciAddress>),
    /// `dynamic`: bind the functions to vfio-pci.
    Take(Vec<PciAddress>),
    /// `dynamic`: give them back.
    GiveBack(Vec<PciAddress>),
    /// `single-gpu`: the host lets go of its display and the card
    /// ([`crate::handover::take`]).
    HandOver(Vec<PciAddress>),
    /// `single-gpu`: the display back ([`crate::handover::give_back`]).
    DisplayBack,
}

/// The VM's mode and card from the XML libvirt passes (pure). `None`: not
/// a domain exliar created.
pub fn read_domain(xml: &str) -> Option<(Handover, Vec<PciAddress>)> {
    // the fast path: every domain libvirt starts comes through here
    memchr::memmem::find(xml.as_bytes(), crate::vm::domain::NS.as_bytes())?;
    let meta = crate::vm::domain::read_meta(xml).ok()??;
    let mode = serde_json::from_str::<serde_json::Value>(&meta.options)
        .ok()
        .and_then(|o| serde_json::from_value::<Handover>(o["handover"].clone()).ok())
        .unwrap_or_default();
    Some((mode, meta.functions))
}

/// What to do for libvirt's `op sub_op` on a domain (pure).
pub fn decide(op: &str, sub_op: &str, domain: Option<&(Handover, Vec<PciAddress>)>) -> Action {
    let Some((mode, functions)) = domain else {
        return Action::Nothing;
    };
    match (op, sub_op, mode) {
        (_, _, _) if functions.is_empty() => Action::Log,
        ("prepare", "begin", Handover::Boot) => Action::Verify(functions.clone()),
        ("prepare", "begin", Handover::Dynamic) => Action::Take(functions.clone()),
        ("release", "end", Handover::Dynamic) => Action::GiveBack(functions.clone()),
        ("prepare", "begin", Handover::SingleGpu) => Action::HandOver(functions.clone()),
        ("release", "end", Handover::SingleGpu) => Action::DisplayBack,
        ("prepare" | "start" | "started" | "stopped" | "release", _, _) => Action::Log,
        _ => Action::Nothing,
    }
}

/// Processes that hold one of the card's DRM nodes (`/dev/dri/cardN`,
/// `renderDN`): the host is using it.
pub fn drm_users(host: &HostRoot, functions: &[PciAddress]) -> Vec<(u32, String, String)> {
    let mut nodes: Vec<PathBuf> = Vec::new();
    let mut primaries: Vec<(u32, String)> = Vec::new();
    for f in functions {
        for n in host
            .list_dir(format!("sys/bus/pci/devices/{f}/drm"))
            .unwrap_or_default()
        {
            if n.starts_with("card") || n.starts_with("renderD") {
                if let Some(m) = n.strip_prefix("card").and_then(|m| m.parse().ok()) {
                    primaries.push((m, n.clone()));
                }
                nodes.push(PathBuf::from("/dev/dri").join(n));
            }
        }
    }
    if nodes.is_empty() {
        return Vec::new();
    }
    if let Some(users) = drm_clients(host, &primaries) {
        return users;
    }
    crate::bind::fd_holders(host, |t| nodes.iter().find(|n| *n == t).cloned())
        .into_iter()
        .flat_map(|(node, ps)| {
            ps.into_iter()
                .map(move |(pid, comm)| (pid, comm, node.display().to_string()))
        })
        .collect()
}

/// The DRM core's own list of a card's open files, every node of the card
/// together (`/sys/kernel/debug/dri/MINOR/clients`, debugfs, root): one read
/// per card instead of a pass over every process's descriptors. `None` when
/// a card has no primary node or its list cannot be read (debugfs not
/// mounted, not root), so the caller looks in `/proc`.
fn drm_clients(host: &HostRoot, primaries: &[(u32, String)]) -> Option<Vec<(u32, String, String)>> {
    if primaries.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for (minor, node) in primaries {
        let text = host
            .read_optional(format!("sys/kernel/debug/dri/{minor}/clients"))
            .ok()??;
        for (pid, comm) in parse_drm_clients(&text)? {
            out.push((pid, comm, format!("/dev/dri/{node}")));
        }
    }
    out.sort();
    out.dedup();
    Some(out)
}

/// `clients` of DRM's debugfs: a header line starting with `command`, then
/// one line per open file: the command (right-aligned, may hold spaces), the
/// pid (tgid), the minor, then flags and ids. `None` when it does not look so.
pub fn parse_drm_clients(text: &str) -> Option<Vec<(u32, String)>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split_whitespace().collect();
    // `pid` until 6.2, then `tgid`
    if header.first() != Some(&"command") || !matches!(header.get(1), Some(&"pid" | &"tgid")) {
        return None;
    }
    let mut out = Vec::new();
    for l in lines.filter(|l| !l.trim().is_empty()) {
        let t: Vec<&str> = l.split_whitespace().collect();
        // the first number followed by a number (tgid, dev) ends the command
        let i = (1..t.len().saturating_sub(1))
            .find(|&i| t[i].parse::<u32>().is_ok() && t[i + 1].parse::<u32>().is_ok())?;
        let pid = t[i].parse().ok()?;
        out.push((pid, t[..i].join(" ")));
    }
    Some(out)
}

/// Carry out `action` (the kernel writes go through `kernel`, the
/// bindings through `store`). `inv` is read only when needed.
pub fn act(
    host: &HostRoot,
    kernel: &dyn crate::host::kernel::Kernel,
    store: &mut dyn crate::bind::BindingState,
    action: &Action,
    steps: &mut Vec<Timed>,
) -> Result<(), (bool, String)> {
    let timed = |steps: &mut Vec<Timed>, what: &str, t: Instant| {
        steps.push(Timed {
            what: what.to_string(),
            secs: t.elapsed().as_secs_f64(),
        })
    };
    let driver = |f: &PciAddress| {
        host.link_name(format!("sys/bus/pci/devices/{f}/driver"))
            .ok()
            .flatten()
    };
    match action {
        Action::Nothing | Action::Log | Action::HandOver(_) | Action::DisplayBack => Ok(()),
        Action::Verify(fs) => {
            let t = Instant::now();
            let off: Vec<String> = fs
                .iter()
                .filter(|f| driver(f).as_deref() != Some("vfio-pci"))
                .map(|f| format!("{f} ({})", driver(f).unwrap_or_else(|| "no driver".into())))
                .collect();
            timed(steps, "verify the card is on vfio-pci", t);
            if off.is_empty() {
                Ok(())
            } else {
                // managed='yes': libvirt moves them now; the boot isolation
                // is not in effect, which is worth saying, not refusing
                Err((
                    false,
                    format!(
                        "{} not on vfio-pci although the VM's mode is `boot`: the boot isolation is not in effect (`exliar status`; `exliar apply`, then reboot); libvirt moves them for this start",
                        off.join(", ")
                    ),
                ))
            }
        }
        Action::Take(fs) => {
            let t = Instant::now();
            let users = drm_users(host, fs);
            timed(steps, "look for programs using the card", t);
            if !users.is_empty() {
                return Err((
                    true,
                    format!(
                        "the host is using the card: {}; close them (or log out of the session on that display), then start the VM again",
                        users
                            .iter()
                            .map(|(p, c, n)| format!("process {p} ({c}) holds {n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            let out = moved(host, kernel, store, fs, true, steps)?;
            if out.ok {
                return Ok(());
            }
            let why = out.error.clone().unwrap_or_else(|| {
                out.refusals
                    .iter()
                    .map(|r| format!("{}: {}", r.address, r.reason))
                    .collect::<Vec<_>>()
                    .join("; ")
            });
            let undone = if out.rolled_back {
                " (undone: the card is back on its drivers)"
            } else {
                ""
            };
            Err((true, format!("{why}{undone}")))
        }
        Action::GiveBack(fs) => {
            let out = moved(host, kernel, store, fs, false, steps)?;
            if out.ok {
                Ok(())
            } else {
                Err((
                    true,
                    out.error
                        .unwrap_or_else(|| "the card could not be given back".into()),
                ))
            }
        }
    }
}

/// The runtime bind (`take`) or unbind of exactly `fs`, timed into `steps`.
fn moved(
    host: &HostRoot,
    kernel: &dyn crate::host::kernel::Kernel,
    store: &mut dyn crate::bind::BindingState,
    fs: &[PciAddress],
    take: bool,
    steps: &mut Vec<Timed>,
) -> Result<crate::bind::Outcome, (bool, String)> {
    let t = Instant::now();
    // the card, its groups and (to take it) the host's GPUs: not the whole
    // host; giving it back takes no display from the host
    let (inv, classes) = crate::host::sysfs::read_inventory_to_move(host, fs, take)
        .map_err(|e| (true, e.to_string()))?;
    let req = crate::bind::Request {
        addresses: fs.to_vec(),
        scope: crate::bind::Scope::Exact,
        force: false,
        dry_run: false,
    };
    let (out, what) = if take {
        (
            crate::bind::bind_request(host, kernel, store, &inv, &req),
            "bind the card's functions to vfio-pci",
        )
    } else {
        (
            crate::bind::unbind_request(host, kernel, store, &inv, &req),
            "give the card's functions back to their drivers",
        )
    };
    crate::bind::save_classes(host.path(), &classes, &out);
    steps.push(Timed {
        what: what.to_string(),
        secs: t.elapsed().as_secs_f64(),
    });
    Ok(out)
}

/// Append `run` to the log (best effort: a hook never fails for its log).
pub fn log(root: &Path, run: &Run) {
    use std::io::Write as _;
    let path = root.join(LOG);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // keep it small: past 1 MiB, keep the newer half
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > 1 << 20)
        && let Ok(t) = std::fs::read_to_string(&path)
    {
        let lines: Vec<&str> = t.lines().collect();
        let keep = lines[lines.len() / 2..].join("\n");
        // a new file renamed over the old: a kill half-way leaves one of them
        let tmp = path.with_extension("jsonl.exliar-tmp");
        if std::fs::write(&tmp, format!("{keep}\n")).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
    if let Ok(line) = serde_json::to_string(run)
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
    {
        let _ = writeln!(f, "{line}");
    }
}

#[cfg(test)]
mod tests;
