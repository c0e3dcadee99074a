//! Runtime binding: move devices between their host drivers and vfio-pci,
//! verified, and undone on failure.
//!
//! Binding is by address (`driver_override`), never by `new_id`, which would
//! take every card with the same ids. Every kernel write goes through the
//! [`Kernel`] interface; every read through a [`HostRoot`]. Each binding is
//! recorded in a [`BindingState`] before the kernel is touched, so a crash
//! never loses the driver a device came from.
//!
//! The entry points are [`bind_request`], [`unbind_request`] and [`status`].

pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::analyze::{self, Analysis, is_group_infrastructure};
use crate::host::HostRoot;
use crate::host::critical::{self, Critical};
use crate::host::kernel::{Kernel, KernelOp};
use crate::model::{Inventory, PciAddress};

pub use state::{Binding, BindingState, MemoryState, STATE_FILE, StateFile, StateLock};

pub const VFIO: &str = "vfio-pci";

/// Drivers that leave an IOMMU group usable by vfio (besides no driver).
const VIABLE_DRIVERS: &[&str] = &[VFIO, "pci-stub"];

/// Which devices a request covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// The card's functions (GPU + audio/USB/UCSI), or the device itself.
    Card,
    /// Every endpoint of the IOMMU group(s).
    Group,
    /// Exactly the addresses given (may leave a group non-viable).
    Exact,
}

#[derive(Debug, Clone)]
pub struct Request {
    /// For unbind, empty means every device exliar holds.
    pub addresses: Vec<PciAddress>,
    pub scope: Scope,
    pub force: bool,
    pub dry_run: bool,
}

/// Why a request is refused before anything is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub address: PciAddress,
    pub reason: String,
    /// `--force` may override it (boot display, last GPU, host-critical);
    /// it may not for what cannot work (no IOMMU, bridges, no group).
    pub overridable: bool,
}

/// A step that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The device it was for; `None` for module loading and group checks.
    pub device: Option<PciAddress>,
    /// The kernel write as listed in `steps`, or the check
    /// (`verify driver`, `verify /dev/vfio/N`, `verify group N viable`).
    pub step: String,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(a) = &self.device {
            write!(f, "{a}: ")?;
        }
        write!(f, "{}: {}", self.step, self.message)
    }
}

/// The result of a bind or unbind, also the `--json` document
/// (`exliar.bind/1`, see docs/json.md).
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub schema: &'static str,
    pub exliar_version: &'static str,
    pub action: &'static str,
    pub scope: Scope,
    pub dry_run: bool,
    /// Done, verified, and every group involved is viable.
    pub ok: bool,
    pub devices: Vec<DeviceOutcome>,
    pub groups: Vec<GroupOutcome>,
    /// Kernel writes made (or, with --dry-run, that would be made), in order;
    /// those of an undo start with `undo: `.
    pub steps: Vec<String>,
    pub refusals: Vec<Refusal>,
    pub warnings: Vec<String>,
    /// What failed, the first failure first (a bind stops at its first).
    pub failures: Vec<Failure>,
    /// One sentence for people, when something failed.
    pub error: Option<String>,
    /// Set when a failed bind was undone completely (every device back on
    /// its driver with its override); a partial undo says what is left in
    /// `warnings`.
    pub rolled_back: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceOutcome {
    pub address: PciAddress,
    pub driver_before: Option<String>,
    /// `None` in a dry run (nothing changed) and when the device has no driver.
    pub driver_after: Option<String>,
    /// The driver the device should be on afterwards: vfio-pci for a bind,
    /// the recorded driver for an unbind; `None` when the device should have
    /// none, or (unbind without a record) when it is the kernel's choice.
    pub expected: Option<String>,
    /// exliar holds a record of this device's original driver: after a bind
    /// (it moved the device, now or before), before an unbind.
    pub recorded: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocker {
    pub address: PciAddress,
    pub driver: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupOutcome {
    pub id: u32,
    /// Every endpoint on vfio-pci (or pci-stub) or driverless.
    pub viable: bool,
    /// Endpoints that keep the group from being viable, with their driver.
    pub blocking: Vec<Blocker>,
    /// `/dev/vfio/N` exists.
    pub vfio_node: bool,
}

impl Outcome {
    fn new(action: &'static str, scope: Scope, dry_run: bool) -> Self {
        Self {
            schema: "exliar.bind/1",
            exliar_version: env!("CARGO_PKG_VERSION"),
            action,
            scope,
            dry_run,
            ok: false,
            devices: Vec::new(),
            groups: Vec::new(),
            steps: Vec::new(),
            refusals: Vec::new(),
            warnings: Vec::new(),
            failures: Vec::new(),
            error: None,
            rolled_back: false,
        }
    }

    fn fail(&mut self, f: Failure) {
        self.failures.push(f);
        self.error = Some(
            self.failures
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        );
    }
}

/// The devices a request covers, in address order. Pure.
pub fn targets(
    inv: &Inventory,
    analysis: &Analysis,
    req: &Request,
) -> Result<Vec<PciAddress>, Refusal> {
    let mut set: BTreeSet<PciAddress> = BTreeSet::new();
    for a in &req.addresses {
        let Some(dev) = inv.device(a) else {
            return Err(Refusal {
                address: *a,
                reason: "no such PCI device".to_string(),
                overridable: false,
            });
        };
        match req.scope {
            Scope::Exact => {
                set.insert(*a);
            }
            Scope::Card => match analysis.gpus.iter().find(|g| g.functions.contains(a)) {
                Some(g) => set.extend(g.functions.iter().copied()),
                None => {
                    set.insert(*a);
                }
            },
            Scope::Group => {
                let Some(gid) = dev.iommu_group else {
                    return Err(Refusal {
                        address: *a,
                        reason: "is in no IOMMU group".to_string(),
                        overridable: false,
                    });
                };
                for m in inv.iommu.groups.get(&gid).into_iter().flatten() {
                    if !inv.device(m).is_some_and(is_group_infrastructure) {
                        set.insert(*m);
                    }
                }
            }
        }
    }
    Ok(set.into_iter().collect())
}

/// Safety refusals for binding `targets`. Pure.
pub fn refusals(
    inv: &Inventory,
    analysis: &Analysis,
    targets: &[PciAddress],
    critical: &[Critical],
) -> Vec<Refusal> {
    let mut out = Vec::new();
    if inv.iommu.enabled == Some(false) {
        for a in targets {
            out.push(Refusal {
                address: *a,
                reason:
                    "the IOMMU is not enabled: vfio-pci cannot take devices (see `exliar check`)"
                        .to_string(),
                overridable: false,
            });
        }
        return out;
    }
    for a in targets {
        let Some(dev) = inv.device(a) else { continue };
        if dev.is_bridge() {
            out.push(Refusal {
                address: *a,
                reason: "is a bridge; bridges stay with the host".to_string(),
                overridable: false,
            });
        }
        if dev.iommu_group.is_none() {
            out.push(Refusal {
                address: *a,
                reason: "is in no IOMMU group".to_string(),
                overridable: false,
            });
        }
        if analysis
            .gpus
            .iter()
            .any(|g| g.address == *a && g.boot_display)
        {
            out.push(Refusal {
                address: *a,
                reason: "is the boot display (the host's console); use --force to take it anyway"
                    .to_string(),
                overridable: true,
            });
        }
        for c in critical.iter().filter(|c| c.address == *a) {
            out.push(Refusal {
                address: *a,
                reason: format!(
                    "is host-critical ({}); use --force to take it anyway",
                    c.why
                ),
                overridable: true,
            });
        }
    }
    // The host's last GPU: every non-BMC GPU not already on vfio-pci taken.
    let host_gpus: Vec<_> = analysis
        .gpus
        .iter()
        .filter(|g| !g.bmc && g.driver.as_deref() != Some(VFIO))
        .collect();
    if !host_gpus.is_empty() && host_gpus.iter().all(|g| targets.contains(&g.address)) {
        for g in host_gpus {
            if !out.iter().any(|r| r.address == g.address) {
                out.push(Refusal {
                    address: g.address,
                    reason: "is the host's last GPU; use --force for single-GPU handover"
                        .to_string(),
                    overridable: true,
                });
            }
        }
    }
    out
}

/// Groups that binding only `targets` would leave non-viable: a member
/// outside `targets` that is on a host driver. Pure.
fn shared_group_refusals(inv: &Inventory, targets: &[PciAddress]) -> Vec<Refusal> {
    let groups: BTreeSet<u32> = targets
        .iter()
        .filter_map(|a| inv.device(a).and_then(|d| d.iommu_group))
        .collect();
    let mut out = Vec::new();
    for g in groups {
        let peers: Vec<String> = inv
            .iommu
            .groups
            .get(&g)
            .into_iter()
            .flatten()
            .filter(|m| !targets.contains(m))
            .filter_map(|m| inv.device(m))
            .filter(|d| !d.is_bridge())
            .filter_map(|d| {
                let drv = d.driver.as_deref()?;
                (!VIABLE_DRIVERS.contains(&drv)).then(|| format!("{} on {drv}", d.address))
            })
            .collect();
        if peers.is_empty() {
            continue;
        }
        let first = targets
            .iter()
            .find(|a| inv.device(a).and_then(|d| d.iommu_group) == Some(g));
        if let Some(a) = first {
            out.push(Refusal {
                address: *a,
                reason: format!(
                    "shares IOMMU group {g} with {}: a VM can only use the whole group; bind it with --group, or take only these functions with --exact (the group stays unusable)",
                    peers.join(", ")
                ),
                overridable: false,
            });
        }
    }
    out
}

/// Cards with the `amd-reset-bug` quirk among `targets`.
fn reset_bug_cards(analysis: &Analysis, targets: &[PciAddress]) -> BTreeSet<PciAddress> {
    analysis
        .gpus
        .iter()
        .filter(|g| targets.contains(&g.address))
        .filter(|g| g.quirks().iter().any(|id| id == "amd-reset-bug"))
        .map(|g| g.address)
        .collect()
}

fn dev_rel(a: &PciAddress, attr: &str) -> PathBuf {
    PathBuf::from(format!("sys/bus/pci/devices/{a}/{attr}"))
}

fn driver_of(host: &HostRoot, a: &PciAddress) -> Option<String> {
    host.link_name(dev_rel(a, "driver")).ok().flatten()
}

fn override_of(host: &HostRoot, a: &PciAddress) -> Option<String> {
    host.read_optional(dev_rel(a, "driver_override"))
        .ok()
        .flatten()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s != "(null)")
}

fn reset_method_of(host: &HostRoot, a: &PciAddress) -> Option<String> {
    host.read_optional(dev_rel(a, "reset_method"))
        .ok()
        .flatten()
        .map(|s| s.trim().to_string())
}

fn shown(o: Option<&str>) -> &str {
    o.unwrap_or("no driver")
}

/// Runs kernel writes (or, in a dry run, only lists them).
struct Runner<'a> {
    host: &'a HostRoot,
    kernel: &'a dyn Kernel,
    dry_run: bool,
    steps: Vec<String>,
    /// Prefix for listed steps (`undo: `).
    prefix: &'static str,
}

impl Runner<'_> {
    fn op(&mut self, device: Option<PciAddress>, op: KernelOp) -> Result<(), Failure> {
        let step = op.to_string();
        self.steps.push(format!("{}{step}", self.prefix));
        if self.dry_run {
            return Ok(());
        }
        let r = match &op {
            KernelOp::Write { path, value } => self.kernel.write_attr(path, value),
            KernelOp::LoadModule { name } => self.kernel.load_module(name),
            KernelOp::UnloadModule { name } => self.kernel.unload_module(name),
        };
        r.map_err(|e| Failure {
            device,
            step,
            message: e.to_string(),
        })
    }

    fn write(&mut self, a: &PciAddress, path: PathBuf, value: &str) -> Result<(), Failure> {
        self.op(
            Some(*a),
            KernelOp::Write {
                path,
                value: value.to_string(),
            },
        )
    }

    /// `driver_override`: a driver name, or `None` to clear it.
    fn set_override(&mut self, a: &PciAddress, value: Option<&str>) -> Result<(), Failure> {
        self.write(
            a,
            dev_rel(a, "driver_override"),
            &format!("{}\n", value.unwrap_or("")),
        )
    }

    fn unbind_from(&mut self, a: &PciAddress, driver: &str) -> Result<(), Failure> {
        self.write(
            a,
            PathBuf::from(format!("sys/bus/pci/drivers/{driver}/unbind")),
            &a.to_string(),
        )
    }

    fn probe(&mut self, a: &PciAddress) -> Result<(), Failure> {
        self.write(
            a,
            PathBuf::from("sys/bus/pci/drivers_probe"),
            &a.to_string(),
        )
    }
}

fn verify(a: &PciAddress, message: String) -> Failure {
    Failure {
        device: Some(*a),
        step: "verify driver".to_string(),
        message,
    }
}

fn group_outcomes(
    host: &HostRoot,
    inv: &Inventory,
    groups: &BTreeSet<u32>,
    known: &BTreeMap<PciAddress, Option<String>>,
) -> Vec<GroupOutcome> {
    groups_read(host, inv, groups, false, known)
        .into_iter()
        .map(|(g, _)| g)
        .collect()
}

/// [`group_outcomes`], each with whether any member (bridges included) is
/// on vfio-pci when `all` is set: every member's driver is read once, but
/// for those in `known` (just checked after a move).
fn groups_read(
    host: &HostRoot,
    inv: &Inventory,
    groups: &BTreeSet<u32>,
    all: bool,
    known: &BTreeMap<PciAddress, Option<String>>,
) -> Vec<(GroupOutcome, bool)> {
    groups
        .iter()
        .map(|g| {
            let mut blocking = Vec::new();
            let mut any_vfio = false;
            for m in inv.iommu.groups.get(g).into_iter().flatten() {
                let bridge = inv.device(m).is_some_and(|d| d.is_bridge());
                if bridge && !all {
                    continue;
                }
                let d = match known.get(m) {
                    Some(d) => d.clone(),
                    None => driver_of(host, m),
                };
                any_vfio |= d.as_deref() == Some(VFIO);
                if let Some(d) = d
                    && !bridge
                    && !VIABLE_DRIVERS.contains(&d.as_str())
                {
                    blocking.push(Blocker {
                        address: *m,
                        driver: d,
                    });
                }
            }
            let out = GroupOutcome {
                id: *g,
                viable: blocking.is_empty(),
                blocking,
                vfio_node: host.exists(format!("dev/vfio/{g}")),
            };
            (out, any_vfio)
        })
        .collect()
}

fn groups_of(inv: &Inventory, targets: &[PciAddress]) -> BTreeSet<u32> {
    targets
        .iter()
        .filter_map(|a| inv.device(a).and_then(|d| d.iommu_group))
        .collect()
}

/// What a device had before a bind.
#[derive(Debug, Clone, Default)]
struct Before {
    driver: Option<String>,
    driver_override: Option<String>,
    reset_method: Option<String>,
}

/// What a device should be given back.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Want {
    /// The recorded driver (`None`: no driver).
    Driver(Option<String>),
    /// Nothing recorded: whatever the kernel picks, as long as it is not
    /// vfio-pci.
    KernelChoice,
}

/// Put one device back: override, driver, reset method. Verifies the
/// driver afterwards (not in a dry run) and returns it (`None` in a dry run).
fn restore(
    run: &mut Runner<'_>,
    a: &PciAddress,
    current: &Before,
    want_override: Option<&str>,
    want: &Want,
    want_reset: Option<&str>,
) -> Result<Option<String>, Failure> {
    if current.driver_override.as_deref() != want_override {
        run.set_override(a, want_override)?;
    }
    let cur = current.driver.as_deref();
    let probe = match want {
        Want::Driver(d) if d.as_deref() == cur => false,
        Want::Driver(d) => {
            if let Some(c) = cur {
                run.unbind_from(a, c)?;
            }
            d.is_some()
        }
        Want::KernelChoice => match cur {
            Some(VFIO) => {
                run.unbind_from(a, VFIO)?;
                true
            }
            Some(_) => false,
            None => true,
        },
    };
    if probe {
        run.probe(a)?;
    }
    if let Some(m) = want_reset
        && current.reset_method.as_deref() != Some(m)
    {
        // An empty list is written as a newline: the kernel takes "" as
        // "no reset method", and a zero-length write would not reach it.
        run.write(a, dev_rel(a, "reset_method"), &format!("{m}\n"))?;
    }
    if run.dry_run {
        return Ok(None);
    }
    let now = driver_of(run.host, a);
    match want {
        Want::Driver(d) if now != *d => Err(verify(
            a,
            format!(
                "on {} afterwards, expected {}",
                shown(now.as_deref()),
                shown(d.as_deref())
            ),
        )),
        Want::KernelChoice if now.as_deref() == Some(VFIO) => Err(verify(
            a,
            "still on vfio-pci afterwards: vfio-pci claims it by id (vfio-pci.ids= or new_id), not by exliar's override".to_string(),
        )),
        _ => Ok(now),
    }
}

/// What `a` had when the host was read, moments ago (its driver and
/// override from `inv`, not read again); its reset method, read now, only
/// when `reset` says so. A device `inv` lacks is read now.
fn before_in(host: &HostRoot, inv: &Inventory, a: &PciAddress, reset: bool) -> Before {
    match inv.device(a) {
        Some(d) => Before {
            driver: d.driver.clone(),
            driver_override: d.driver_override.clone(),
            reset_method: if reset {
                reset_method_of(host, a)
            } else {
                None
            },
        },
        None => before_of(host, a, reset),
    }
}

/// What `a` has now; its reset method only when `reset` says so.
fn before_of(host: &HostRoot, a: &PciAddress, reset: bool) -> Before {
    Before {
        driver: driver_of(host, a),
        driver_override: override_of(host, a),
        reset_method: if reset {
            reset_method_of(host, a)
        } else {
            None
        },
    }
}

/// Save the class cache of a near read ([`crate::host::sysfs::ClassCache`])
/// once `out` moved devices: not after a dry run, a refusal or a failure,
/// which write nothing of their own either. Failing is a debug line; the
/// next run reads the classes again.
pub fn save_classes(root: &Path, classes: &crate::host::sysfs::ClassCache, out: &Outcome) {
    if out.dry_run || !out.ok || !out.refusals.is_empty() || out.error.is_some() {
        return;
    }
    if let Err(e) = classes.save(root) {
        tracing::debug!(
            "{}: {e}",
            root.join(crate::host::sysfs::CLASS_CACHE).display()
        );
    }
}

/// A phase's time, at `-vv`.
fn lap(what: &str, since: std::time::Instant) {
    tracing::debug!("{what} in {:.2} ms", since.elapsed().as_secs_f64() * 1e3);
}

/// Bind the devices `req` covers to vfio-pci, after the safety refusals
/// (`--force` overrides those that may be overridden). In a dry run nothing
/// is written: neither the kernel nor `store`.
pub fn bind_request(
    host: &HostRoot,
    kernel: &dyn Kernel,
    store: &mut dyn BindingState,
    inv: &Inventory,
    req: &Request,
) -> Outcome {
    let t = std::time::Instant::now();
    let analysis = analyze::analyze(inv);
    tracing::debug!(
        "bind: analysis in {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let mut out = Outcome::new("bind", req.scope, req.dry_run);
    let targets = match targets(inv, &analysis, req) {
        Ok(t) => t,
        Err(r) => {
            out.refusals.push(r);
            return out;
        }
    };
    let t = std::time::Instant::now();
    let crit = critical::find(host);
    tracing::debug!(
        "bind: host-critical devices in {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let mut all = refusals(inv, &analysis, &targets, &crit);
    if req.scope == Scope::Card {
        all.extend(shared_group_refusals(inv, &targets));
    }
    let (forced, blocking): (Vec<Refusal>, Vec<Refusal>) =
        all.into_iter().partition(|r| r.overridable && req.force);
    if !blocking.is_empty() {
        out.refusals = blocking;
        out.devices = targets
            .iter()
            .map(|a| DeviceOutcome {
                address: *a,
                driver_before: driver_of(host, a),
                driver_after: None,
                expected: Some(VFIO.to_string()),
                recorded: false,
            })
            .collect();
        return out;
    }
    out.warnings.extend(
        forced
            .iter()
            .map(|r| format!("--force: {} {}", r.address, r.reason)),
    );
    let quirky = reset_bug_cards(&analysis, &targets);
    if req.dry_run {
        let mut scratch = MemoryState(store.all());
        bind(host, kernel, &mut scratch, inv, &targets, &quirky, out)
    } else {
        bind(host, kernel, store, inv, &targets, &quirky, out)
    }
}

/// Bind `targets` to vfio-pci. On any failure every device already moved
/// is put back. `store` records each binding before it is made.
fn bind(
    host: &HostRoot,
    kernel: &dyn Kernel,
    store: &mut dyn BindingState,
    inv: &Inventory,
    targets: &[PciAddress],
    reset_bug: &BTreeSet<PciAddress>,
    mut out: Outcome,
) -> Outcome {
    let dry_run = out.dry_run;
    let mut run = Runner {
        host,
        kernel,
        dry_run,
        steps: Vec::new(),
        prefix: "",
    };
    let groups = groups_of(inv, targets);
    let t = std::time::Instant::now();
    let vendor_reset = host.exists("sys/module/vendor_reset");
    // The reset method is changed (and so read) only for a card with the
    // AMD reset bug when vendor-reset is loaded.
    let before: BTreeMap<PciAddress, Before> = targets
        .iter()
        .map(|a| {
            (
                *a,
                before_in(host, inv, a, vendor_reset && reset_bug.contains(a)),
            )
        })
        .collect();
    lap("bind: drivers and overrides read", t);
    for a in reset_bug.iter().filter(|_| !vendor_reset) {
        out.warnings.push(format!(
            "{a} has the AMD reset bug and the vendor-reset module is not loaded: the card may not reset between VM starts (install vendor-reset and `modprobe vendor-reset` before binding)"
        ));
    }

    // The groups as checked after the moves, kept for the outcome when
    // nothing had to be undone.
    let mut checked: Option<Vec<GroupOutcome>> = None;
    let result = (|| -> Result<(), Failure> {
        if !host.exists("sys/bus/pci/drivers/vfio-pci") {
            run.op(
                None,
                KernelOp::LoadModule {
                    name: VFIO.to_string(),
                },
            )?;
            if !dry_run && !host.exists("sys/bus/pci/drivers/vfio-pci") {
                return Err(Failure {
                    device: None,
                    step: "modprobe vfio-pci".to_string(),
                    message: "/sys/bus/pci/drivers/vfio-pci did not appear".to_string(),
                });
            }
        }
        let set_reset = |a: &PciAddress, b: &Before| {
            vendor_reset
                && reset_bug.contains(a)
                && b.reset_method.as_deref() != Some("device_specific")
        };
        // Every binding is recorded (one write) before the first is made: a
        // record of a device not moved yet is undone by doing nothing.
        let records: Vec<Binding> = targets
            .iter()
            .filter_map(|a| {
                let b = before.get(a)?;
                (b.driver.as_deref() != Some(VFIO)).then(|| Binding {
                    address: *a,
                    original_driver: b.driver.clone(),
                    original_override: b.driver_override.clone(),
                    group: inv.device(a).and_then(|d| d.iommu_group),
                    original_reset_method: b.reset_method.clone().filter(|_| set_reset(a, b)),
                })
            })
            .collect();
        if !records.is_empty() {
            let t = std::time::Instant::now();
            let first = records[0].address;
            store.record_all(records).map_err(|e| Failure {
                device: Some(first),
                step: format!("record in /{STATE_FILE}"),
                message: e.to_string(),
            })?;
            lap("bind: recorded", t);
        }
        for a in targets {
            let b = before.get(a).cloned().unwrap_or_default();
            if b.driver.as_deref() == Some(VFIO) {
                continue;
            }
            let t = std::time::Instant::now();
            let set_reset = set_reset(a, &b);
            if set_reset {
                run.write(a, dev_rel(a, "reset_method"), "device_specific")?;
            }
            run.set_override(a, Some(VFIO))?;
            // Its driver as read moments ago: should another program have
            // moved it since, this unbind fails and the bind is undone.
            if let Some(d) = &b.driver {
                run.unbind_from(a, d)?;
            }
            run.probe(a)?;
            if !dry_run {
                let now = driver_of(host, a);
                if now.as_deref() != Some(VFIO) {
                    return Err(verify(
                        a,
                        format!(
                            "on {} after drivers_probe, expected vfio-pci (see dmesg)",
                            shown(now.as_deref())
                        ),
                    ));
                }
            }
            lap(&format!("bind: {a} moved"), t);
        }
        if dry_run {
            return Ok(());
        }
        let t = std::time::Instant::now();
        // The targets were each just seen on vfio-pci.
        let moved: BTreeMap<PciAddress, Option<String>> = targets
            .iter()
            .map(|a| (*a, Some(VFIO.to_string())))
            .collect();
        let groups = checked.insert(group_outcomes(host, inv, &groups, &moved));
        lap("bind: groups read", t);
        for g in groups.iter() {
            if !g.vfio_node {
                return Err(Failure {
                    device: None,
                    step: format!("verify /dev/vfio/{}", g.id),
                    message: format!("/dev/vfio/{} did not appear", g.id),
                });
            }
            if !g.viable && out.scope != Scope::Exact {
                let who: Vec<String> = g
                    .blocking
                    .iter()
                    .map(|b| format!("{} on {}", b.address, b.driver))
                    .collect();
                return Err(Failure {
                    device: None,
                    step: format!("verify group {} viable", g.id),
                    message: format!("IOMMU group {} is not viable: {}", g.id, who.join(", ")),
                });
            }
        }
        Ok(())
    })();

    let mut steps = std::mem::take(&mut run.steps);
    // A bind that went through checked every target on vfio-pci and every
    // group just now: the outcome says so without reading them again.
    let verified = !dry_run && result.is_ok();
    if let Err(f) = result {
        out.fail(f);
        if !dry_run {
            // Undo in reverse order: every device back to what it had.
            let mut undo = Runner {
                host,
                kernel,
                dry_run: false,
                steps: Vec::new(),
                prefix: "undo: ",
            };
            let mut complete = true;
            for a in targets.iter().rev() {
                let b = before.get(a).cloned().unwrap_or_default();
                if b.driver.as_deref() == Some(VFIO) {
                    continue; // not touched; a record it has stays
                }
                let now = before_of(host, a, b.reset_method.is_some());
                let r = restore(
                    &mut undo,
                    a,
                    &now,
                    b.driver_override.as_deref(),
                    &Want::Driver(b.driver.clone()),
                    b.reset_method.as_deref(),
                );
                match r {
                    Ok(_) => {
                        if let Err(e) = store.forget(a) {
                            out.warnings
                                .push(format!("{a}: could not update /{STATE_FILE}: {e}"));
                        }
                    }
                    Err(f) => {
                        complete = false;
                        out.warnings.push(format!(
                            "undo failed, {f}; its original driver stays recorded for `exliar unbind`"
                        ));
                    }
                }
            }
            steps.extend(undo.steps);
            out.rolled_back = complete;
        }
    }
    out.steps = steps;
    let held: BTreeSet<PciAddress> = store.all().iter().map(|b| b.address).collect();
    for a in targets {
        out.devices.push(DeviceOutcome {
            address: *a,
            driver_before: before.get(a).and_then(|b| b.driver.clone()),
            driver_after: if dry_run {
                None
            } else if verified {
                Some(VFIO.to_string())
            } else {
                driver_of(host, a)
            },
            expected: Some(VFIO.to_string()),
            recorded: held.contains(a),
        });
    }
    if !dry_run {
        out.groups = match checked.take().filter(|_| verified) {
            Some(g) => g,
            None => group_outcomes(host, inv, &groups, &BTreeMap::new()),
        };
        if out.failures.is_empty() {
            for g in out.groups.iter().filter(|g| !g.viable) {
                let who: Vec<String> = g
                    .blocking
                    .iter()
                    .map(|b| format!("{} on {}", b.address, b.driver))
                    .collect();
                out.warnings.push(format!(
                    "IOMMU group {} is not viable ({}): a VM cannot use it until those are bound too (exliar bind --group)",
                    g.id,
                    who.join(", ")
                ));
            }
        }
    }
    out.ok = out.failures.is_empty() && out.groups.iter().all(|g| g.viable);
    out
}

/// Give the devices `req` covers back to their recorded drivers (or to
/// whatever the kernel picks when none was recorded). With no addresses:
/// exactly the devices `store` holds. In a dry run nothing is written.
pub fn unbind_request(
    host: &HostRoot,
    kernel: &dyn Kernel,
    store: &mut dyn BindingState,
    inv: &Inventory,
    req: &Request,
) -> Outcome {
    let t = std::time::Instant::now();
    let analysis = analyze::analyze(inv);
    lap("unbind: analysis", t);
    let mut out = Outcome::new("unbind", req.scope, req.dry_run);
    let mut req = req.clone();
    if req.addresses.is_empty() {
        // Exactly what exliar holds: not the rest of those cards or groups,
        // which someone else may have put on vfio-pci.
        req.scope = Scope::Exact;
        out.scope = Scope::Exact;
        for b in store.all() {
            if inv.device(&b.address).is_some() {
                req.addresses.push(b.address);
            } else {
                out.warnings.push(format!(
                    "{} is recorded but no longer present; its record is dropped",
                    b.address
                ));
                if !req.dry_run
                    && let Err(e) = store.forget(&b.address)
                {
                    out.warnings
                        .push(format!("could not update /{STATE_FILE}: {e}"));
                }
            }
        }
    }
    let targets = match targets(inv, &analysis, &req) {
        Ok(t) => t,
        Err(r) => {
            out.refusals.push(r);
            return out;
        }
    };
    // A group a VM (or any program) holds open: the kernel's unbind would
    // wait until it is closed, so exliar would hang in the middle.
    let t = std::time::Instant::now();
    let users = vfio_users(host, &groups_of(inv, &targets));
    lap("unbind: VFIO group users", t);
    for (g, users) in users {
        let who: Vec<String> = users
            .iter()
            .map(|(pid, comm)| format!("process {pid} ({comm})"))
            .collect();
        for a in targets
            .iter()
            .filter(|a| inv.device(a).and_then(|d| d.iommu_group) == Some(g))
        {
            out.refusals.push(Refusal {
                address: *a,
                reason: format!(
                    "IOMMU group {g} is in use: /dev/vfio/{g} is open in {}; stop the VM (or that program) first, the kernel would wait for it to close",
                    who.join(", ")
                ),
                overridable: false,
            });
        }
    }
    if !out.refusals.is_empty() {
        return out;
    }
    if req.dry_run {
        let mut scratch = MemoryState(store.all());
        unbind(host, kernel, &mut scratch, inv, &targets, out)
    } else {
        unbind(host, kernel, store, inv, &targets, out)
    }
}

/// For each of `groups` that some process holds open, those processes (pid,
/// command name). The kernel lets one file at a time open a VFIO group (and
/// none while one of its devices is open through iommufd's cdev), so a
/// group whose node opens is held by nobody: only a busy group (`EBUSY`), or
/// a node exliar cannot probe, costs the pass over `/proc/*/fd` that names
/// the holders (processes this user may not look into are skipped).
pub(crate) fn vfio_users(
    host: &HostRoot,
    groups: &BTreeSet<u32>,
) -> BTreeMap<u32, Vec<(u32, String)>> {
    let busy: BTreeSet<u32> = groups
        .iter()
        .copied()
        .filter(|g| host.probe_exclusive(format!("dev/vfio/{g}")) != Some(false))
        .collect();
    if busy.is_empty() {
        return BTreeMap::new();
    }
    fd_holders(host, |t| {
        t.strip_prefix("/dev/vfio")
            .ok()?
            .to_str()?
            .parse::<u32>()
            .ok()
            .filter(|g| busy.contains(g))
    })
}

/// The processes holding open a file `key` picks out (its key: a group, a
/// device node), each with its command name, from one pass over
/// `/proc/*/fd`; a process is listed once per key, in pid order.
pub(crate) fn fd_holders<K: Ord>(
    host: &HostRoot,
    key: impl Fn(&std::path::Path) -> Option<K>,
) -> BTreeMap<K, Vec<(u32, String)>> {
    // The kernel resolves each `proc/PID/fd` inside the root in one call;
    // the lexical walk (every component checked) is for recording roots and
    // kernels without openat2.
    let fast = if host.is_recording() {
        None
    } else {
        crate::host::devdir::FdRoot::open(host.path())
    };
    let pids = match &fast {
        Some(f) => f.names("proc").unwrap_or_default(),
        None => host.list_dir("proc").unwrap_or_default(),
    };
    let mut users: BTreeMap<K, Vec<(u32, String)>> = BTreeMap::new();
    for pid in pids {
        let Ok(n) = pid.parse::<u32>() else { continue };
        let mut held: BTreeSet<K> = BTreeSet::new();
        let fd_dir = format!("proc/{pid}/fd");
        match &fast {
            Some(f) => {
                for t in f.link_targets(&fd_dir).unwrap_or_default() {
                    held.extend(key(&t));
                }
            }
            None => {
                for fd in host.list_dir(&fd_dir).unwrap_or_default() {
                    if let Ok(Some(t)) = host.link_target(format!("{fd_dir}/{fd}")) {
                        held.extend(key(&t));
                    }
                }
            }
        }
        if held.is_empty() {
            continue;
        }
        let comm = host
            .read_optional(format!("proc/{pid}/comm"))
            .ok()
            .flatten()
            .map(|c| c.trim().to_string())
            .unwrap_or_else(|| "?".into());
        for k in held {
            users.entry(k).or_default().push((n, comm.clone()));
        }
    }
    for u in users.values_mut() {
        u.sort();
    }
    users
}

fn unbind(
    host: &HostRoot,
    kernel: &dyn Kernel,
    store: &mut dyn BindingState,
    inv: &Inventory,
    targets: &[PciAddress],
    mut out: Outcome,
) -> Outcome {
    let dry_run = out.dry_run;
    let mut run = Runner {
        host,
        kernel,
        dry_run,
        steps: Vec::new(),
        prefix: "",
    };
    let groups = groups_of(inv, targets);
    let recorded: BTreeMap<PciAddress, Binding> = store
        .all()
        .into_iter()
        .filter(|b| targets.contains(&b.address))
        .map(|b| (b.address, b))
        .collect();
    // Records of the devices moved back are dropped in one write at the end.
    // A kill before it leaves records of devices already back on their
    // drivers, which the next unbind or `recover` finds there and leaves.
    let mut done: Vec<PciAddress> = Vec::new();
    let mut verified: BTreeMap<PciAddress, Option<String>> = BTreeMap::new();
    for a in targets {
        let rec = recorded.get(a);
        let now = before_in(
            host,
            inv,
            a,
            rec.is_some_and(|r| r.original_reset_method.is_some()),
        );
        let mut dev = DeviceOutcome {
            address: *a,
            driver_before: now.driver.clone(),
            driver_after: now.driver.clone(),
            expected: None,
            recorded: rec.is_some(),
        };
        if now.driver.as_deref() != Some(VFIO) && rec.is_none() {
            out.warnings.push(format!(
                "{a} is not on vfio-pci ({}) and exliar did not bind it; left alone",
                shown(now.driver.as_deref())
            ));
            out.devices.push(dev);
            continue;
        }
        let want = match rec {
            Some(r) => Want::Driver(r.original_driver.clone()),
            None => Want::KernelChoice,
        };
        dev.expected = rec.and_then(|r| r.original_driver.clone());
        let t = std::time::Instant::now();
        let result = restore(
            &mut run,
            a,
            &now,
            rec.and_then(|r| r.original_override.as_deref()),
            &want,
            rec.and_then(|r| r.original_reset_method.as_deref()),
        );
        lap(&format!("unbind: {a} moved"), t);
        match result {
            Ok(after) if !dry_run => {
                // As verified just now.
                verified.insert(*a, after.clone());
                dev.driver_after = after;
                done.push(*a);
            }
            Ok(_) => dev.driver_after = None,
            Err(f) => {
                dev.driver_after = if dry_run { None } else { driver_of(host, a) };
                out.fail(f);
            }
        }
        out.devices.push(dev);
    }
    if !done.is_empty() {
        let t = std::time::Instant::now();
        if let Err(e) = store.forget_all(&done) {
            let shown: Vec<String> = done.iter().map(ToString::to_string).collect();
            out.warnings.push(format!(
                "{}: could not update /{STATE_FILE}: {e}",
                shown.join(", ")
            ));
        }
        lap("unbind: records dropped", t);
    }
    out.steps = run.steps;
    if !dry_run {
        let t = std::time::Instant::now();
        let read = groups_read(host, inv, &groups, true, &verified);
        lap("unbind: groups read", t);
        let mut stale = Vec::new();
        for (g, any_vfio) in &read {
            if g.vfio_node && !any_vfio {
                stale.push(Failure {
                    device: None,
                    step: format!("verify /dev/vfio/{} gone", g.id),
                    message: format!(
                        "/dev/vfio/{} is still present with no member on vfio-pci (is a VM or another program holding the group open?)",
                        g.id
                    ),
                });
            }
        }
        out.groups = read.into_iter().map(|(g, _)| g).collect();
        for f in stale {
            out.fail(f);
        }
    }
    out.ok = out.failures.is_empty();
    out
}

/// `exliar status --json` (`exliar.status/1`).
#[derive(Debug, Clone, Serialize)]
pub struct StatusDoc {
    pub schema: &'static str,
    pub exliar_version: &'static str,
    /// Devices exliar bound at runtime (from its state file).
    pub runtime_bindings: Vec<StatusBinding>,
    /// Every device on vfio-pci now, whoever bound it.
    pub vfio_devices: Vec<PciAddress>,
    /// The IOMMU groups of those devices and of the recorded ones.
    pub groups: Vec<GroupOutcome>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusBinding {
    pub address: PciAddress,
    pub current_driver: Option<String>,
    pub original_driver: Option<String>,
    pub group: Option<u32>,
    /// The device is on vfio-pci now (false: someone else moved it).
    pub on_vfio: bool,
}

/// What exliar holds on this host now.
pub fn status(host: &HostRoot, inv: &Inventory, store: &dyn BindingState) -> StatusDoc {
    let runtime_bindings: Vec<StatusBinding> = store
        .all()
        .into_iter()
        .map(|b| {
            let current = driver_of(host, &b.address);
            StatusBinding {
                address: b.address,
                on_vfio: current.as_deref() == Some(VFIO),
                current_driver: current,
                original_driver: b.original_driver,
                group: b.group,
            }
        })
        .collect();
    let vfio_devices: Vec<PciAddress> = inv
        .devices
        .iter()
        .filter(|d| driver_of(host, &d.address).as_deref() == Some(VFIO))
        .map(|d| d.address)
        .collect();
    let mut groups: BTreeSet<u32> = groups_of(inv, &vfio_devices);
    groups.extend(runtime_bindings.iter().filter_map(|b| b.group));
    StatusDoc {
        schema: "exliar.status/1",
        exliar_version: env!("CARGO_PKG_VERSION"),
        groups: group_outcomes(host, inv, &groups, &BTreeMap::new()),
        runtime_bindings,
        vfio_devices,
    }
}
