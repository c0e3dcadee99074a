//! Runtime binding: move devices between their host drivers and vfio-pci,
//! verified, and undone on failure.
//!
//! Binding is by address (`driver_override`), never by `new_id`, which would
//! take every card with the same ids. Every kernel write goes through the
//! [`Kernel`] interface; every read through a [`HostRoot`].

mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::analyze::{Analysis, is_group_infrastructure};
use crate::host::HostRoot;
use crate::host::critical::Critical;
use crate::host::kernel::{Kernel, KernelOp};
use crate::model::{Inventory, PciAddress};

pub use state::{Binding, BindingState, MemoryState, STATE_FILE, StateFile};

pub const VFIO: &str = "vfio-pci";

/// Which devices a request covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The result of a bind or unbind, also the `--json` document.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub schema: &'static str,
    pub action: &'static str,
    pub dry_run: bool,
    pub ok: bool,
    pub devices: Vec<DeviceOutcome>,
    pub groups: Vec<GroupOutcome>,
    /// Kernel writes made (or, with --dry-run, that would be made).
    pub steps: Vec<String>,
    pub refusals: Vec<Refusal>,
    pub warnings: Vec<String>,
    pub error: Option<String>,
    /// Set when a failure was undone.
    pub rolled_back: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceOutcome {
    pub address: PciAddress,
    pub driver_before: Option<String>,
    pub driver_after: Option<String>,
    pub expected: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupOutcome {
    pub id: u32,
    /// Every endpoint on vfio-pci or driverless.
    pub viable: bool,
    /// Endpoints that keep the group from being viable, with their driver.
    pub blocking: Vec<(PciAddress, String)>,
    /// `/dev/vfio/N` exists.
    pub vfio_node: bool,
}

/// Reset-method changes for cards with the AMD reset bug.
#[derive(Debug, Clone, Default)]
pub struct QuirkOps {
    pub writes: Vec<(PathBuf, String)>,
    pub steps: Vec<String>,
    pub warnings: Vec<String>,
}

/// Cards with the `amd-reset-bug` quirk get `reset_method` =
/// `device_specific` when the vendor-reset module is loaded; a warning when
/// it is not. Pure apart from reading the host.
pub fn reset_quirks(host: &HostRoot, analysis: &Analysis, targets: &[PciAddress]) -> QuirkOps {
    let mut q = QuirkOps::default();
    let loaded = host.exists("sys/module/vendor_reset");
    for g in analysis
        .gpus
        .iter()
        .filter(|g| targets.contains(&g.address))
    {
        if !g.quirks.iter().any(|id| id == "amd-reset-bug") {
            continue;
        }
        if loaded {
            let path = dev_rel(&g.address, "reset_method");
            q.steps.push(
                KernelOp::Write {
                    path: path.clone(),
                    value: "device_specific".to_string(),
                }
                .to_string(),
            );
            q.writes.push((path, "device_specific".to_string()));
        } else {
            q.warnings.push(format!(
                "{} has the AMD reset bug and the vendor-reset module is not loaded: the card may not reset between VM starts (install vendor-reset and `modprobe vendor-reset`)",
                g.address
            ));
        }
    }
    q
}

/// Make the reset-method writes.
pub fn apply_reset_quirks(kernel: &dyn Kernel, q: &QuirkOps) -> Result<(), String> {
    for (path, value) in &q.writes {
        kernel
            .write_attr(path, value)
            .map_err(|e| format!("setting reset_method: {e}"))?;
    }
    Ok(())
}

impl Outcome {
    /// An outcome for a request refused before anything was done.
    pub fn refused(action: &'static str, dry_run: bool) -> Self {
        Self::new(action, dry_run)
    }

    fn new(action: &'static str, dry_run: bool) -> Self {
        Self {
            schema: "exliar.bind/1",
            action,
            dry_run,
            ok: false,
            devices: Vec::new(),
            groups: Vec::new(),
            steps: Vec::new(),
            refusals: Vec::new(),
            warnings: Vec::new(),
            error: None,
            rolled_back: false,
        }
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
                reason: format!("is host-critical ({})", c.why),
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

struct Runner<'a> {
    host: &'a HostRoot,
    kernel: &'a dyn Kernel,
    dry_run: bool,
    steps: Vec<String>,
}

impl Runner<'_> {
    fn op(&mut self, op: KernelOp) -> Result<(), String> {
        self.steps.push(op.to_string());
        if self.dry_run {
            return Ok(());
        }
        let r = match &op {
            KernelOp::Write { path, value } => self.kernel.write_attr(path, value),
            KernelOp::LoadModule { name } => self.kernel.load_module(name),
        };
        r.map_err(|e| format!("{op}: {e}"))
    }

    fn write(&mut self, path: PathBuf, value: &str) -> Result<(), String> {
        self.op(KernelOp::Write {
            path,
            value: value.to_string(),
        })
    }

    /// Move one device to `override_value`'s driver (or, with `None`, clear
    /// the override and let the kernel choose).
    fn rebind(&mut self, a: &PciAddress, override_value: Option<&str>) -> Result<(), String> {
        self.write(
            dev_rel(a, "driver_override"),
            &format!("{}\n", override_value.unwrap_or("")),
        )?;
        let current = if self.dry_run {
            None
        } else {
            driver_of(self.host, a)
        };
        let bound_elsewhere = match (&current, override_value) {
            (Some(c), Some(want)) => c != want,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if bound_elsewhere || self.dry_run {
            let drv = current.unwrap_or_else(|| "<current driver>".to_string());
            self.write(
                PathBuf::from(format!("sys/bus/pci/drivers/{drv}/unbind")),
                &a.to_string(),
            )?;
        }
        self.write(PathBuf::from("sys/bus/pci/drivers_probe"), &a.to_string())
    }
}

fn group_outcomes(host: &HostRoot, inv: &Inventory, groups: &BTreeSet<u32>) -> Vec<GroupOutcome> {
    groups
        .iter()
        .map(|g| {
            let mut blocking = Vec::new();
            for m in inv.iommu.groups.get(g).into_iter().flatten() {
                if inv.device(m).is_some_and(|d| d.is_bridge()) {
                    continue;
                }
                if let Some(d) = driver_of(host, m)
                    && d != VFIO
                    && d != "pci-stub"
                {
                    blocking.push((*m, d));
                }
            }
            GroupOutcome {
                id: *g,
                viable: blocking.is_empty(),
                blocking,
                vfio_node: host.exists(format!("dev/vfio/{g}")),
            }
        })
        .collect()
}

/// Bind `targets` to vfio-pci. On any failure every device already moved
/// is put back. `store` records each binding before it is made.
pub fn bind(
    host: &HostRoot,
    kernel: &dyn Kernel,
    inv: &Inventory,
    targets: &[PciAddress],
    scope: Scope,
    dry_run: bool,
    store: &mut dyn BindingState,
) -> Outcome {
    let mut out = Outcome::new("bind", dry_run);
    let mut run = Runner {
        host,
        kernel,
        dry_run,
        steps: Vec::new(),
    };
    let groups: BTreeSet<u32> = targets
        .iter()
        .filter_map(|a| inv.device(a).and_then(|d| d.iommu_group))
        .collect();
    let before: BTreeMap<PciAddress, (Option<String>, Option<String>)> = targets
        .iter()
        .map(|a| (*a, (driver_of(host, a), override_of(host, a))))
        .collect();

    let result = (|| -> Result<(), String> {
        if !host.exists("sys/bus/pci/drivers/vfio-pci") || dry_run {
            run.op(KernelOp::LoadModule {
                name: VFIO.to_string(),
            })?;
            if !dry_run && !host.exists("sys/bus/pci/drivers/vfio-pci") {
                return Err("vfio-pci did not appear after modprobe".to_string());
            }
        }
        let mut done: Vec<PciAddress> = Vec::new();
        for a in targets {
            let (drv, ovr) = before.get(a).cloned().unwrap_or_default();
            if drv.as_deref() == Some(VFIO) {
                continue;
            }
            if !dry_run {
                store
                    .record(Binding {
                        address: *a,
                        original_driver: drv.clone(),
                        original_override: ovr.clone(),
                        group: inv.device(a).and_then(|d| d.iommu_group),
                    })
                    .map_err(|e| format!("recording the binding of {a}: {e}"))?;
            }
            done.push(*a);
            run.rebind(a, Some(VFIO)).map_err(|e| format!("{a}: {e}"))?;
            if !dry_run {
                let now = driver_of(host, a);
                if now.as_deref() != Some(VFIO) {
                    return Err(format!(
                        "{a}: still on {} after drivers_probe (expected vfio-pci)",
                        now.as_deref().unwrap_or("no driver")
                    ));
                }
            }
        }
        if dry_run {
            return Ok(());
        }
        for g in group_outcomes(host, inv, &groups) {
            if !g.vfio_node {
                return Err(format!("/dev/vfio/{} did not appear", g.id));
            }
            if !g.viable && scope != Scope::Exact {
                let who: Vec<String> = g
                    .blocking
                    .iter()
                    .map(|(a, d)| format!("{a} on {d}"))
                    .collect();
                return Err(format!(
                    "IOMMU group {} is not viable: {}",
                    g.id,
                    who.join(", ")
                ));
            }
        }
        Ok(())
    })();

    if let Err(e) = result {
        out.error = Some(e);
        if !dry_run {
            // Undo in reverse order: every device back to what it had.
            let mut undo = Runner {
                host,
                kernel,
                dry_run: false,
                steps: Vec::new(),
            };
            for a in targets.iter().rev() {
                let (drv, ovr) = before.get(a).cloned().unwrap_or_default();
                if driver_of(host, a) == drv && override_of(host, a) == ovr {
                    let _ = store.forget(a);
                    continue;
                }
                match undo.rebind(a, ovr.as_deref()) {
                    Ok(()) => {
                        let _ = store.forget(a);
                    }
                    Err(e) => out.warnings.push(format!("undo of {a} failed: {e}")),
                }
                if driver_of(host, a) != drv {
                    out.warnings.push(format!(
                        "{a} is on {} after undo (it had {})",
                        driver_of(host, a).as_deref().unwrap_or("no driver"),
                        drv.as_deref().unwrap_or("no driver")
                    ));
                }
            }
            run.steps
                .extend(undo.steps.into_iter().map(|s| format!("undo: {s}")));
            out.rolled_back = true;
        }
    }
    out.steps = run.steps;
    for a in targets {
        let b = before.get(a).and_then(|b| b.0.clone());
        out.devices.push(DeviceOutcome {
            address: *a,
            driver_before: b,
            driver_after: if dry_run { None } else { driver_of(host, a) },
            expected: Some(VFIO.to_string()),
        });
    }
    if !dry_run {
        out.groups = group_outcomes(host, inv, &groups);
        if out.error.is_none() {
            for g in out.groups.iter().filter(|g| !g.viable) {
                let who: Vec<String> = g
                    .blocking
                    .iter()
                    .map(|(a, d)| format!("{a} on {d}"))
                    .collect();
                out.warnings.push(format!(
                    "IOMMU group {} is not viable ({}): a VM cannot use it until those are bound too (exliar bind --group)",
                    g.id,
                    who.join(", ")
                ));
            }
        }
    }
    out.ok = out.error.is_none() && out.groups.iter().all(|g| g.viable);
    out
}

/// Give `targets` back to their recorded drivers (or to whatever the kernel
/// picks when none was recorded).
pub fn unbind(
    host: &HostRoot,
    kernel: &dyn Kernel,
    inv: &Inventory,
    targets: &[PciAddress],
    dry_run: bool,
    store: &mut dyn BindingState,
) -> Outcome {
    let mut out = Outcome::new("unbind", dry_run);
    let mut run = Runner {
        host,
        kernel,
        dry_run,
        steps: Vec::new(),
    };
    let groups: BTreeSet<u32> = targets
        .iter()
        .filter_map(|a| inv.device(a).and_then(|d| d.iommu_group))
        .collect();
    let recorded: BTreeMap<PciAddress, Binding> = store
        .all()
        .into_iter()
        .filter(|b| targets.contains(&b.address))
        .map(|b| (b.address, b))
        .collect();
    let mut errors = Vec::new();
    for a in targets {
        let before = driver_of(host, a);
        let rec = recorded.get(a);
        if before.as_deref() != Some(VFIO) && rec.is_none() {
            out.warnings.push(format!(
                "{a} is not on vfio-pci ({}); left alone",
                before.as_deref().unwrap_or("no driver")
            ));
            out.devices.push(DeviceOutcome {
                address: *a,
                driver_before: before.clone(),
                driver_after: before,
                expected: None,
            });
            continue;
        }
        let ovr = rec.and_then(|r| r.original_override.clone());
        let expected = rec.and_then(|r| r.original_driver.clone());
        match run.rebind(a, ovr.as_deref()) {
            Ok(()) => {}
            Err(e) => {
                errors.push(format!("{a}: {e}"));
                continue;
            }
        }
        let after = if dry_run { None } else { driver_of(host, a) };
        if !dry_run {
            match (&expected, &after) {
                (Some(want), got) if got.as_deref() != Some(want.as_str()) => errors.push(format!(
                    "{a}: on {} after unbind (expected {want})",
                    got.as_deref().unwrap_or("no driver")
                )),
                (None, Some(got)) if got == VFIO => {
                    errors.push(format!("{a}: still on vfio-pci after unbind"));
                }
                _ => {
                    if let Err(e) = store.forget(a) {
                        out.warnings
                            .push(format!("{a}: could not update {STATE_FILE}: {e}"));
                    }
                }
            }
        }
        out.devices.push(DeviceOutcome {
            address: *a,
            driver_before: before,
            driver_after: after,
            expected,
        });
    }
    out.steps = run.steps;
    if !dry_run {
        out.groups = group_outcomes(host, inv, &groups);
        for g in &out.groups {
            let any_vfio = inv
                .iommu
                .groups
                .get(&g.id)
                .into_iter()
                .flatten()
                .any(|m| driver_of(host, m).as_deref() == Some(VFIO));
            if g.vfio_node && !any_vfio {
                errors.push(format!("/dev/vfio/{} is still present", g.id));
            }
        }
    }
    if !errors.is_empty() {
        out.error = Some(errors.join("; "));
    }
    out.ok = out.error.is_none();
    out
}
