//! Single-GPU handover: the host lets go of its only GPU while a VM runs
//! and gets its display back when the VM stops.
//!
//! At libvirt's `prepare begin` the hook calls [`take`]: it reads the host
//! ([`gather`]), plans the steps ([`plan`], pure) and carries them out one
//! by one, writing a journal ([`JOURNAL`]) **before** each step and after
//! it:
//!
//! 1. stop the display manager systemd runs (`display-manager.service`);
//! 2. unbind the framebuffer consoles (`/sys/class/vtconsole/*/bind`);
//! 3. unbind the firmware framebuffer still bound (`efi-framebuffer`,
//!    `simple-framebuffer`/simpledrm, `vesa-framebuffer`, `efidrm`,
//!    `vesadrm`: which of them a kernel has, and whether one is still
//!    bound once the GPU's own driver took over, depends on its version,
//!    so the step is planned from what sysfs shows, not from a version
//!    table);
//! 4. move the card's functions to vfio-pci (runtime binding: verified,
//!    undone on failure; it first waits, bounded, for the programs that
//!    hold the card's DRM nodes to go, and names those that stay);
//! 5. unload the GPU's driver stack, holders first (`nvidia_drm`,
//!    `nvidia_modeset`, `nvidia_uvm` before `nvidia`; `amdgpu`; `i915`;
//!    `bochs`…), and the audio driver only when no other device uses it.
//!
//! At `release end` [`give_back`] undoes every step the journal records as
//! started, newest first, and goes on past a step that fails: the display
//! manager is started even when a module does not load. A crash at any
//! point leaves the journal, and [`give_back`] run by `exliar
//! recover-display` (by hand, by the boot unit, or by the watchdog timer
//! armed at `prepare`) finishes from it. Every undo is idempotent: it looks
//! before it acts.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::bind::BindingState;
use crate::hooks::Timed;
use crate::host::HostRoot;
use crate::host::kernel::Kernel;
use crate::model::PciAddress;

#[cfg(test)]
mod tests;

/// The journal of the single-GPU handover in progress (kept on disk: a
/// crash of the machine leaves it for the boot unit to clear).
pub const JOURNAL: &str = "var/lib/exliar/handover/single-gpu.json";
pub const JOURNAL_SCHEMA: &str = "exliar.handover-journal/1";
/// How long the hook waits for the programs using the card to let go of
/// it once the display manager stopped.
pub const DRM_WAIT: Duration = Duration::from_secs(10);
/// systemd's alias for whichever display manager is enabled.
pub const DISPLAY_MANAGER: &str = "display-manager.service";
/// How long an unload waits for a module's users to let go (the sound
/// driver frees its card a moment after its device is unbound).
pub const MODULE_WAIT: Duration = Duration::from_secs(5);

/// The platform drivers of firmware framebuffers across kernel versions.
const FB_DRIVERS: &[&str] = &[
    "efi-framebuffer",
    "simple-framebuffer",
    "vesa-framebuffer",
    "vesafb",
    "efidrm",
    "vesadrm",
    "simpledrm",
];

/// Services, through the service manager (systemd's `systemctl`, by argv).
pub trait Services {
    fn active(&self, unit: &str) -> bool;
    fn stop(&self, unit: &str) -> io::Result<()>;
    fn start(&self, unit: &str) -> io::Result<()>;
}

/// The real service manager: `systemctl`, when systemd runs the host.
#[derive(Debug)]
pub struct Systemd;

fn systemctl(args: &[&str]) -> io::Result<std::process::Output> {
    std::process::Command::new("systemctl").args(args).output()
}

impl Services for Systemd {
    fn active(&self, unit: &str) -> bool {
        systemctl(&["is-active", "--quiet", "--", unit]).is_ok_and(|o| o.status.success())
    }
    fn stop(&self, unit: &str) -> io::Result<()> {
        checked(systemctl(&["stop", "--", unit])?, "systemctl stop", unit)
    }
    fn start(&self, unit: &str) -> io::Result<()> {
        checked(systemctl(&["start", "--", unit])?, "systemctl start", unit)
    }
}

fn checked(o: std::process::Output, what: &str, unit: &str) -> io::Result<()> {
    if o.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{what} {unit} failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )))
    }
}

/// No service manager (a host without systemd, a test guest): nothing runs.
#[derive(Debug)]
pub struct NoServices;

impl Services for NoServices {
    fn active(&self, _: &str) -> bool {
        false
    }
    fn stop(&self, unit: &str) -> io::Result<()> {
        Err(io::Error::other(format!("{unit}: no service manager")))
    }
    fn start(&self, unit: &str) -> io::Result<()> {
        Err(io::Error::other(format!("{unit}: no service manager")))
    }
}

/// One step of the handover (what it undoes is implied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Stop the display manager (undo: start it).
    StopDisplayManager { unit: String },
    /// Unbind the framebuffer console (undo: bind it).
    UnbindVtconsole { n: u32, name: String },
    /// Unbind a firmware framebuffer (undo: bind it while the device is
    /// still there).
    UnbindFramebuffer { driver: String, device: String },
    /// Move the card's functions to vfio-pci (undo: give them back).
    BindVfio { functions: Vec<PciAddress> },
    /// Unload a module (undo: load it).
    UnloadModule { name: String },
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::StopDisplayManager { unit } => format!("stop the display manager ({unit})"),
            Step::UnbindVtconsole { n, name } => {
                format!("unbind the console from the framebuffer (vtcon{n}: {name})")
            }
            Step::UnbindFramebuffer { driver, device } => {
                format!("unbind the firmware framebuffer {device} from {driver}")
            }
            Step::BindVfio { functions } => format!(
                "bind {} to vfio-pci",
                functions
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Step::UnloadModule { name } => format!("unload {name}"),
        }
    }
    pub fn describe_undo(&self) -> String {
        match self {
            Step::StopDisplayManager { unit } => format!("start the display manager ({unit})"),
            Step::UnbindVtconsole { n, .. } => format!("bind the console again (vtcon{n})"),
            Step::UnbindFramebuffer { driver, device } => {
                format!("bind the firmware framebuffer {device} to {driver}")
            }
            Step::BindVfio { .. } => "give the card's functions back to their drivers".into(),
            Step::UnloadModule { name } => format!("load {name}"),
        }
    }
}

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Planned,
    /// Begun: it may be half done (the journal is written before it).
    Started,
    Done,
    Undone,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(flatten)]
    pub step: Step,
    pub state: State,
}

/// The handover's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Taking,
    Taken,
    GivingBack,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub schema: String,
    pub domain: String,
    pub functions: Vec<PciAddress>,
    pub phase: Phase,
    pub entries: Vec<Entry>,
}

pub fn read_journal(host: &HostRoot) -> Result<Option<Journal>, String> {
    match host.read_optional(JOURNAL) {
        Ok(None) => Ok(None),
        Ok(Some(t)) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| format!("/{JOURNAL}: {e}")),
        Err(e) => Err(e.to_string()),
    }
}

fn save(root: &Path, j: &Journal) -> Result<(), String> {
    let bytes = serde_json::to_vec_pretty(j).map_err(|e| e.to_string())?;
    crate::host::write::atomic_write(root, Path::new(JOURNAL), &bytes, 0o644)
        .map_err(|e| format!("/{JOURNAL}: {e}"))
}

fn remove(root: &Path) -> Result<(), String> {
    match std::fs::remove_file(root.join(JOURNAL)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(format!("/{JOURNAL}: {e}")),
        _ => Ok(()),
    }
}

/// What the handover needs to know about the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The display manager's unit when it is running.
    pub display_manager: Option<String>,
    /// `(n, name, bound)` of every vtconsole.
    pub vtconsoles: Vec<(u32, String, bool)>,
    /// The card shows a console: it is the boot display (`boot_vga`) or
    /// has a framebuffer (`graphics/fb*`), which the framebuffer console
    /// may be on.
    pub card_console: bool,
    /// `(driver, device)` of every firmware framebuffer still bound.
    pub framebuffers: Vec<(String, String)>,
    /// The card's functions and their drivers.
    pub functions: Vec<(PciAddress, Option<String>)>,
    /// Each driver of the functions: its module (`None`: built in), the
    /// modules that hold it (transitively, holders first), and whether a
    /// device outside the card uses it.
    pub stacks: Vec<DriverStack>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverStack {
    pub driver: String,
    pub module: Option<String>,
    /// Holders first, the driver's own module last.
    pub unload_order: Vec<String>,
    /// Other devices on one of these drivers (then nothing is unloaded).
    pub shared_with: Vec<PciAddress>,
}

fn driver_of(host: &HostRoot, a: &PciAddress) -> Option<String> {
    host.link_name(format!("sys/bus/pci/devices/{a}/driver"))
        .ok()
        .flatten()
}

/// Modules holding `m`, transitively, each before the one it holds.
fn holders_first(host: &HostRoot, m: &str, out: &mut Vec<String>, depth: usize) {
    if depth > 16 || out.iter().any(|x| x == m) {
        return;
    }
    let mut hs = host
        .list_dir(format!("sys/module/{m}/holders"))
        .unwrap_or_default();
    hs.sort();
    for h in hs {
        holders_first(host, &h, out, depth + 1);
    }
    if !out.iter().any(|x| x == m) {
        out.push(m.to_string());
    }
}

/// Read the facts for handing over `functions`.
pub fn gather(host: &HostRoot, services: &dyn Services, functions: &[PciAddress]) -> Facts {
    let mut f = Facts::default();
    if host.exists("run/systemd/system") && services.active(DISPLAY_MANAGER) {
        let unit = host
            .link_name(format!("etc/systemd/system/{DISPLAY_MANAGER}"))
            .ok()
            .flatten()
            .unwrap_or_else(|| DISPLAY_MANAGER.to_string());
        f.display_manager = Some(unit);
    }
    let mut vcs: Vec<(u32, String, bool)> = host
        .list_dir("sys/class/vtconsole")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| {
            let k = n.strip_prefix("vtcon")?.parse().ok()?;
            let name = host
                .read_optional(format!("sys/class/vtconsole/{n}/name"))
                .ok()
                .flatten()?;
            let bind = host
                .read_optional(format!("sys/class/vtconsole/{n}/bind"))
                .ok()
                .flatten()?;
            Some((k, name.trim().to_string(), bind.trim() == "1"))
        })
        .collect();
    vcs.sort();
    f.vtconsoles = vcs;
    for drv in FB_DRIVERS {
        let dir = format!("sys/bus/platform/drivers/{drv}");
        for dev in host.list_dir(&dir).unwrap_or_default() {
            // a bound device is a link named after it (`efi-framebuffer.0`)
            if dev.contains('.')
                && host
                    .link_target(format!("{dir}/{dev}"))
                    .ok()
                    .flatten()
                    .is_some()
            {
                f.framebuffers.push((drv.to_string(), dev));
            }
        }
    }
    f.card_console = functions.iter().any(|a| {
        host.read_optional(format!("sys/bus/pci/devices/{a}/boot_vga"))
            .ok()
            .flatten()
            .is_some_and(|v| v.trim() == "1")
            || host
                .list_dir(format!("sys/bus/pci/devices/{a}/graphics"))
                .unwrap_or_default()
                .iter()
                .any(|n| n.starts_with("fb"))
    });
    f.functions = functions.iter().map(|a| (*a, driver_of(host, a))).collect();
    let mut drivers: Vec<String> = f.functions.iter().filter_map(|(_, d)| d.clone()).collect();
    drivers.sort();
    drivers.dedup();
    for driver in drivers.into_iter().filter(|d| d != "vfio-pci") {
        let module = host
            .link_name(format!("sys/bus/pci/drivers/{driver}/module"))
            .ok()
            .flatten();
        let mut order = Vec::new();
        if let Some(m) = &module {
            holders_first(host, m, &mut order, 0);
        }
        // other devices on the driver (or another driver of its module)
        // keep it loaded
        let module_of = |d: &str| {
            host.link_name(format!("sys/bus/pci/drivers/{d}/module"))
                .ok()
                .flatten()
        };
        let mut shared_with: Vec<PciAddress> = Vec::new();
        for e in host.list_dir("sys/bus/pci/devices").unwrap_or_default() {
            let Ok(a) = PciAddress::parse(&e) else {
                continue;
            };
            if functions.contains(&a) {
                continue;
            }
            if let Some(d) = driver_of(host, &a)
                && (d == driver || (module.is_some() && module_of(&d) == module))
            {
                shared_with.push(a);
            }
        }
        f.stacks.push(DriverStack {
            driver,
            module,
            unload_order: order,
            shared_with,
        });
    }
    f
}

/// The steps (pure).
pub fn plan(f: &Facts) -> Vec<Step> {
    let mut steps = Vec::new();
    if let Some(unit) = &f.display_manager {
        steps.push(Step::StopDisplayManager { unit: unit.clone() });
    }
    for (n, name, bound) in &f.vtconsoles {
        if f.card_console && *bound && name.contains("frame buffer") {
            steps.push(Step::UnbindVtconsole {
                n: *n,
                name: name.clone(),
            });
        }
    }
    for (driver, device) in &f.framebuffers {
        steps.push(Step::UnbindFramebuffer {
            driver: driver.clone(),
            device: device.clone(),
        });
    }
    steps.push(Step::BindVfio {
        functions: f.functions.iter().map(|(a, _)| *a).collect(),
    });
    let mut seen: Vec<String> = Vec::new();
    // the display driver's stack first, then the audio's
    let mut stacks: Vec<&DriverStack> = f.stacks.iter().collect();
    stacks.sort_by_key(|s| s.driver.starts_with("snd"));
    for s in stacks {
        if !s.shared_with.is_empty() {
            continue;
        }
        for m in &s.unload_order {
            if !seen.contains(m) {
                seen.push(m.clone());
                steps.push(Step::UnloadModule { name: m.clone() });
            }
        }
    }
    steps
}

/// Where a run may be stopped dead, as by SIGKILL (tests only; the binary
/// passes [`never`]): before step `k` is carried out (its journal entry
/// says started), or after it (before the journal says done). Returning
/// `true` stops the run there, leaving the journal as it is.
pub type KillPoint<'a> = &'a mut dyn FnMut(usize, bool) -> bool;

/// The [`KillPoint`] of a real run.
pub fn never(_: usize, _: bool) -> bool {
    false
}

/// Everything the steps act through.
pub struct Ctx<'a> {
    pub root: &'a Path,
    pub kernel: &'a dyn Kernel,
    pub services: &'a dyn Services,
    pub store: &'a mut dyn BindingState,
    /// How long to wait for the card's DRM users to go.
    pub drm_wait: Duration,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// Every step done (take) or undone (give back).
    Ok,
    /// A step failed; what was done is undone (take), or every other undo
    /// was still carried out (give back). `left` says whether the journal
    /// remains for `recover-display`.
    Failed { message: String, left: bool },
    /// Stopped dead at a kill point (tests).
    Killed,
}

fn timed(steps: &mut Vec<Timed>, what: String, t: Instant) {
    steps.push(Timed {
        what,
        secs: t.elapsed().as_secs_f64(),
    });
}

/// Hand the card over for `domain` (the hook at `prepare begin`).
pub fn take(
    ctx: &mut Ctx<'_>,
    domain: &str,
    functions: &[PciAddress],
    kill: KillPoint<'_>,
    steps: &mut Vec<Timed>,
) -> Ended {
    let host = HostRoot::new(ctx.root);
    match read_journal(&host) {
        Ok(Some(j)) => {
            return Ended::Failed {
                message: format!(
                    "a single-GPU handover for {} is still recorded in /{JOURNAL} ({:?}); `exliar recover-display` finishes it",
                    j.domain, j.phase
                ),
                left: true,
            };
        }
        Ok(None) => {}
        Err(e) => {
            return Ended::Failed {
                message: e,
                left: true,
            };
        }
    }
    let t = Instant::now();
    let facts = gather(&host, ctx.services, functions);
    let planned = plan(&facts);
    timed(steps, "read the host and plan the handover".into(), t);
    let mut j = Journal {
        schema: JOURNAL_SCHEMA.into(),
        domain: domain.to_string(),
        functions: functions.to_vec(),
        phase: Phase::Taking,
        entries: planned
            .into_iter()
            .map(|step| Entry {
                step,
                state: State::Planned,
            })
            .collect(),
    };
    if let Err(e) = save(ctx.root, &j) {
        return Ended::Failed {
            message: format!("nothing was changed: {e}"),
            left: false,
        };
    }
    for k in 0..j.entries.len() {
        j.entries[k].state = State::Started;
        if let Err(e) = save(ctx.root, &j) {
            j.entries[k].state = State::Planned;
            return fail_take(ctx, j, e, steps);
        }
        if kill(k, false) {
            return Ended::Killed;
        }
        let t = Instant::now();
        let r = act(ctx, &host, &j.entries[k].step);
        let what = j.entries[k].step.describe();
        timed(
            steps,
            if r.is_ok() {
                what
            } else {
                format!("{what}: failed")
            },
            t,
        );
        if let Err(e) = r {
            let why = format!("{}: {e}", j.entries[k].step.describe());
            return fail_take(ctx, j, why, steps);
        }
        if kill(k, true) {
            return Ended::Killed;
        }
        j.entries[k].state = State::Done;
        if let Err(e) = save(ctx.root, &j) {
            return fail_take(ctx, j, e, steps);
        }
    }
    j.phase = Phase::Taken;
    match save(ctx.root, &j) {
        Ok(()) => Ended::Ok,
        Err(e) => fail_take(ctx, j, e, steps),
    }
}

fn fail_take(ctx: &mut Ctx<'_>, j: Journal, why: String, steps: &mut Vec<Timed>) -> Ended {
    match undo_all(ctx, j, &mut never, steps, false) {
        Ended::Ok => Ended::Failed {
            message: format!("{why} (undone: the host has its display and card back)"),
            left: false,
        },
        Ended::Failed { message, left } => Ended::Failed {
            message: format!("{why}; undoing it failed too: {message}"),
            left,
        },
        Ended::Killed => Ended::Killed,
    }
}

/// Give the display back from the journal (the hook at `release end`,
/// `exliar recover-display`). Nothing recorded: [`Ended::Ok`].
pub fn give_back(ctx: &mut Ctx<'_>, kill: KillPoint<'_>, steps: &mut Vec<Timed>) -> Ended {
    let host = HostRoot::new(ctx.root);
    match read_journal(&host) {
        Ok(None) => Ended::Ok,
        Ok(Some(j)) => undo_all(ctx, j, kill, steps, false),
        Err(e) => Ended::Failed {
            message: e,
            left: true,
        },
    }
}

/// [`give_back`] at boot, ordered before the display manager: the kernel
/// side (mostly as it was already: a boot binds drivers afresh) and the
/// record, but no service is started (systemd starts the display manager
/// itself; starting it from a unit ordered before it would wait forever).
pub fn give_back_at_boot(ctx: &mut Ctx<'_>, steps: &mut Vec<Timed>) -> Ended {
    let host = HostRoot::new(ctx.root);
    match read_journal(&host) {
        Ok(None) => Ended::Ok,
        Ok(Some(j)) => undo_all(ctx, j, &mut never, steps, true),
        Err(e) => Ended::Failed {
            message: e,
            left: true,
        },
    }
}

fn undo_all(
    ctx: &mut Ctx<'_>,
    mut j: Journal,
    kill: KillPoint<'_>,
    steps: &mut Vec<Timed>,
    at_boot: bool,
) -> Ended {
    let host = HostRoot::new(ctx.root);
    j.phase = Phase::GivingBack;
    let _ = save(ctx.root, &j);
    let mut failed: Vec<String> = Vec::new();
    for k in (0..j.entries.len()).rev() {
        if !matches!(j.entries[k].state, State::Started | State::Done) {
            continue;
        }
        if kill(k, false) {
            return Ended::Killed;
        }
        let t = Instant::now();
        let (r, what) = match &j.entries[k].step {
            Step::StopDisplayManager { unit } if at_boot => (
                Ok(()),
                format!(
                    "leave the display manager ({unit}) to systemd, which starts it after this boot unit"
                ),
            ),
            step => (undo(ctx, &host, step), step.describe_undo()),
        };
        let what = match &r {
            Ok(()) => what,
            Err(_) => format!("{what}: failed"),
        };
        timed(steps, what, t);
        match r {
            Ok(()) => {
                if kill(k, true) {
                    return Ended::Killed;
                }
                j.entries[k].state = State::Undone;
                if let Err(e) = save(ctx.root, &j) {
                    failed.push(e);
                }
            }
            // go on: the display manager comes back even when a module
            // does not load
            Err(e) => failed.push(format!("{}: {e}", j.entries[k].step.describe_undo())),
        }
    }
    if failed.is_empty() {
        match remove(ctx.root) {
            Ok(()) => Ended::Ok,
            Err(e) => Ended::Failed {
                message: e,
                left: true,
            },
        }
    } else {
        Ended::Failed {
            message: failed.join("; "),
            left: true,
        }
    }
}

fn vt_bind(n: u32) -> String {
    format!("sys/class/vtconsole/vtcon{n}/bind")
}

fn act(ctx: &mut Ctx<'_>, host: &HostRoot, step: &Step) -> Result<(), String> {
    match step {
        Step::StopDisplayManager { unit } => ctx.services.stop(unit).map_err(|e| e.to_string()),
        Step::UnbindVtconsole { n, .. } => {
            let rel = vt_bind(*n);
            ctx.kernel
                .write_attr(Path::new(&rel), "0")
                .map_err(|e| e.to_string())?;
            match host.read_optional(&rel) {
                Ok(Some(v)) if v.trim() == "0" => Ok(()),
                other => Err(format!(
                    "/{rel} reads {:?} after writing 0",
                    other.ok().flatten().unwrap_or_default().trim()
                )),
            }
        }
        Step::UnbindFramebuffer { driver, device } => ctx
            .kernel
            .write_attr(
                Path::new(&format!("sys/bus/platform/drivers/{driver}/unbind")),
                device,
            )
            .map_err(|e| e.to_string()),
        Step::BindVfio { functions } => {
            wait_drm_users(host, functions, ctx.drm_wait)?;
            let out = move_card(ctx, host, functions, true)?;
            if out.ok {
                Ok(())
            } else {
                Err(outcome_error(&out))
            }
        }
        Step::UnloadModule { name } => {
            let refs = wait_unused(host, name, MODULE_WAIT);
            let r = ctx.kernel.unload_module(name);
            // judged by the kernel: `modprobe -r` also removes the module's
            // dependencies and (busybox's) fails when one of those is still
            // in use, though the module itself is gone
            if r.is_err() && !host.exists(format!("sys/module/{name}")) {
                return Ok(());
            }
            r.map_err(|e| match refs {
                Some(n) if n > 0 => format!(
                    "{e} (still in use {n} times after {:.0}s)",
                    MODULE_WAIT.as_secs_f64()
                ),
                _ => e.to_string(),
            })
        }
    }
}

/// Wait (bounded, polled) until nothing uses module `name`
/// (`/sys/module/NAME/refcnt` reads 0); its count at the end (`None`:
/// not shown, as for a built-in module).
fn wait_unused(host: &HostRoot, name: &str, limit: Duration) -> Option<u64> {
    let t = Instant::now();
    loop {
        let n = host
            .read_optional(format!("sys/module/{name}/refcnt"))
            .ok()
            .flatten()
            .and_then(|r| r.trim().parse::<u64>().ok());
        if n.is_none_or(|n| n == 0) || t.elapsed() >= limit {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The vtconsole named `name` now (fbcon comes back under a number of its
/// own when the GPU's driver registers a framebuffer again).
fn vtcon_named(host: &HostRoot, name: &str) -> Option<(String, bool)> {
    let mut all = host.list_dir("sys/class/vtconsole").unwrap_or_default();
    all.sort();
    all.into_iter().find_map(|v| {
        let n = host
            .read_optional(format!("sys/class/vtconsole/{v}/name"))
            .ok()
            .flatten()?;
        (n.trim() == name).then_some(())?;
        let b = host
            .read_optional(format!("sys/class/vtconsole/{v}/bind"))
            .ok()
            .flatten()?;
        Some((format!("sys/class/vtconsole/{v}/bind"), b.trim() == "1"))
    })
}

fn undo(ctx: &mut Ctx<'_>, host: &HostRoot, step: &Step) -> Result<(), String> {
    match step {
        Step::StopDisplayManager { unit } => {
            if ctx.services.active(unit) {
                Ok(())
            } else {
                ctx.services.start(unit).map_err(|e| e.to_string())
            }
        }
        Step::UnbindVtconsole { n, name } => {
            // the number it had, else the one of that name: the kernel
            // unregisters the framebuffer console with the last framebuffer
            // and registers it afresh when the driver comes back
            let at_n = vt_bind(*n);
            let here = match host.read_optional(format!("sys/class/vtconsole/vtcon{n}/name")) {
                Ok(Some(x)) if x.trim() == name => host
                    .read_optional(&at_n)
                    .ok()
                    .flatten()
                    .map(|b| (at_n.clone(), b.trim() == "1")),
                _ => vtcon_named(host, name),
            };
            match here {
                Some((_, true)) => Ok(()),
                Some((rel, false)) => ctx
                    .kernel
                    .write_attr(Path::new(&rel), "1")
                    .map_err(|e| e.to_string()),
                None => Err(format!(
                    "no console named {name:?} is registered (/sys/class/vtconsole): the card's driver did not bring its framebuffer back"
                )),
            }
        }
        Step::UnbindFramebuffer { driver, device } => {
            // the GPU's driver may have removed the firmware framebuffer
            // for good when it loaded (then there is nothing to bind)
            if !host.exists(format!("sys/bus/platform/devices/{device}"))
                || host.exists(format!("sys/bus/platform/drivers/{driver}/{device}"))
            {
                return Ok(());
            }
            ctx.kernel
                .write_attr(
                    Path::new(&format!("sys/bus/platform/drivers/{driver}/bind")),
                    device,
                )
                .map_err(|e| e.to_string())
        }
        Step::BindVfio { functions } => {
            let recorded: Vec<PciAddress> = ctx.store.all().iter().map(|b| b.address).collect();
            let held: Vec<PciAddress> = functions
                .iter()
                .filter(|a| {
                    recorded.contains(a) || driver_of(host, a).as_deref() == Some("vfio-pci")
                })
                .copied()
                .collect();
            if held.is_empty() {
                return Ok(());
            }
            let out = move_card(ctx, host, &held, false)?;
            if out.ok {
                Ok(())
            } else {
                Err(outcome_error(&out))
            }
        }
        Step::UnloadModule { name } => {
            if host.exists(format!("sys/module/{name}")) {
                Ok(())
            } else {
                ctx.kernel.load_module(name).map_err(|e| e.to_string())
            }
        }
    }
}

fn outcome_error(out: &crate::bind::Outcome) -> String {
    out.error.clone().unwrap_or_else(|| {
        out.refusals
            .iter()
            .map(|r| format!("{}: {}", r.address, r.reason))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

fn move_card(
    ctx: &mut Ctx<'_>,
    host: &HostRoot,
    fs: &[PciAddress],
    take: bool,
) -> Result<crate::bind::Outcome, String> {
    // the card, its groups and (to take it) the host's GPUs: not the whole
    // host; giving it back takes no display from the host
    let (inv, classes) =
        crate::host::sysfs::read_inventory_to_move(host, fs, take).map_err(|e| e.to_string())?;
    let req = crate::bind::Request {
        addresses: fs.to_vec(),
        scope: crate::bind::Scope::Exact,
        // the boot display and the host's last GPU: that is the point
        force: take,
        dry_run: false,
    };
    let out = if take {
        crate::bind::bind_request(host, ctx.kernel, ctx.store, &inv, &req)
    } else {
        crate::bind::unbind_request(host, ctx.kernel, ctx.store, &inv, &req)
    };
    crate::bind::save_classes(host.path(), &classes, &out);
    Ok(out)
}

/// Wait (bounded, polled) until no process holds the card's DRM nodes.
fn wait_drm_users(host: &HostRoot, fs: &[PciAddress], limit: Duration) -> Result<(), String> {
    let t = Instant::now();
    loop {
        let users = crate::hooks::drm_users(host, fs);
        if users.is_empty() {
            return Ok(());
        }
        if t.elapsed() >= limit {
            return Err(format!(
                "the host still uses the card after {:.0}s: {}; close them (a compositor running without a display manager must be quit by hand)",
                limit.as_secs_f64(),
                users
                    .iter()
                    .map(|(p, c, n)| format!("process {p} ({c}) holds {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether libvirt runs `domain` now (its pid file names a live process).
pub fn domain_running(host: &HostRoot, domain: &str) -> bool {
    if domain.is_empty() || domain.contains('/') {
        return false;
    }
    host.read_optional(format!("run/libvirt/qemu/{domain}.pid"))
        .ok()
        .flatten()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .is_some_and(|pid| host.exists(format!("proc/{pid}")))
}
