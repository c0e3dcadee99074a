//! `exliar check`: is this host ready for boot-time GPU passthrough?
//!
//! [`gather`] reads the host into an [`Evidence`] value; [`run_checks`] is a
//! pure function of that evidence and the GPU [`Analysis`]. Every check has
//! a stable id (documented in `docs/checks.md`), a status, a one-line
//! summary, the evidence it used (file and value) and, when not ok, a
//! remedy for this distribution and boot loader.

pub mod gather;
pub mod parse;
pub mod remedy;
mod rules;

use serde::Serialize;

use crate::analyze::Analysis;
use crate::model::Fact;

pub use gather::{Content, Evidence, Listing, gather, trim_for_snapshot};

pub const CHECK_SCHEMA: &str = "exliar.check/1";

/// The outcome of one check. Only `fail` blocks readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Info,
    Warn,
    Fail,
    /// Could not be judged (unreadable input, nothing to check); the
    /// summary says why.
    Skip,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Info => "info",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

/// The sections of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    Cpu,
    Iommu,
    Kernel,
    Boot,
    Virt,
    Gpu,
    Hugepages,
}

impl Group {
    pub fn label(self) -> &'static str {
        match self {
            Group::Cpu => "CPU and KVM",
            Group::Iommu => "IOMMU",
            Group::Kernel => "Kernel and modules",
            Group::Boot => "Boot environment",
            Group::Virt => "Virtualization stack",
            Group::Gpu => "GPU to pass through",
            Group::Hugepages => "Hugepages",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub group: Group,
    pub status: Status,
    pub summary: String,
    pub evidence: Vec<Fact>,
    pub remedy: Option<String>,
}

impl Check {
    fn new(id: &'static str, status: Status, summary: impl Into<String>) -> Self {
        Self {
            id,
            group: group_of(id),
            status,
            summary: summary.into(),
            evidence: Vec::new(),
            remedy: None,
        }
    }
    fn ev(mut self, rel: &str, value: impl Into<String>) -> Self {
        self.evidence.push(Fact::new(rel, value));
        self
    }
    fn facts(mut self, f: impl IntoIterator<Item = Fact>) -> Self {
        self.evidence.extend(f);
        self
    }
    fn fix(mut self, r: impl Into<String>) -> Self {
        self.remedy = Some(r.into());
        self
    }
}

/// Every check id, in report order, with what it looks at.
pub const CHECKS: &[(&str, &str)] = &[
    ("cpu.vendor", "CPU vendor and model (/proc/cpuinfo)"),
    (
        "cpu.virt",
        "hardware virtualization: vmx (Intel VT-x) or svm (AMD-V) in /proc/cpuinfo flags",
    ),
    (
        "kvm.device",
        "/dev/kvm present and usable (read/write) by the current user",
    ),
    (
        "kvm.modules",
        "kvm and kvm_intel / kvm_amd loaded, built in or available",
    ),
    (
        "iommu.firmware",
        "DMAR (Intel) / IVRS (AMD) ACPI table in /sys/firmware/acpi/tables",
    ),
    (
        "iommu.cmdline",
        "kernel parameters versus what this kernel needs (intel_iommu=on, invalid amd_iommu=on, iommu=off)",
    ),
    (
        "iommu.active",
        "kernel IOMMU active: /sys/class/iommu units and /sys/kernel/iommu_groups",
    ),
    ("iommu.passthrough", "iommu=pt (informational)"),
    (
        "iommu.irq-remap",
        "interrupt remapping (IR- chips in /proc/interrupts, allow_unsafe_interrupts)",
    ),
    (
        "kernel.version",
        "running kernel release (/proc/sys/kernel/osrelease)",
    ),
    (
        "kernel.vfio-modules",
        "vfio, vfio_pci, vfio_iommu_type1 (and vfio_virqfd before 6.2) as modules or built in",
    ),
    ("boot.firmware", "UEFI or BIOS (/sys/firmware/efi)"),
    (
        "boot.secure-boot",
        "Secure Boot state (SecureBoot / SetupMode EFI variables)",
    ),
    (
        "boot.loader",
        "the boot loader that boots this system and where its kernel command line lives",
    ),
    ("boot.initramfs", "the initramfs generator in use"),
    ("boot.init", "the init system (PID 1)"),
    ("os.distribution", "distribution from os-release"),
    ("os.immutable", "immutable / atomic systems (NixOS, ostree)"),
    ("virt.qemu", "qemu-system-x86_64 (or qemu-kvm)"),
    ("virt.libvirt", "virsh, the libvirt daemon and its socket"),
    ("virt.ovmf", "OVMF / edk2 UEFI firmware for guests"),
    ("virt.swtpm", "swtpm (a TPM for the guest)"),
    (
        "virt.libvirt-access",
        "whether the current user may use the system libvirt",
    ),
    (
        "gpu.target",
        "the recommended passthrough GPU (as `exliar scan`)",
    ),
    (
        "gpu.framebuffer",
        "a boot framebuffer (efifb, simpledrm, vesafb) holding that GPU",
    ),
    (
        "gpu.reset",
        "reset: vendor-reset when a quirk needs it, and reset_method",
    ),
    ("gpu.driver", "the driver bound to that GPU now"),
    (
        "gpu.vfio-ids",
        "an existing vfio-pci `ids=` (modprobe.d, kernel command line, initramfs-tools modules), evaluated as the boot applies it: does it claim every function of that GPU and none of another GPU?",
    ),
    ("gpu.kvmfr", "kvmfr (Looking Glass) module (informational)"),
    ("hugepages.config", "hugepages reserved and free per size"),
    ("hugepages.1g", "1 GiB page support (pdpe1gb)"),
];

fn group_of(id: &str) -> Group {
    match id.split('.').next().unwrap_or("") {
        "cpu" | "kvm" => Group::Cpu,
        "iommu" => Group::Iommu,
        "kernel" => Group::Kernel,
        "boot" | "os" => Group::Boot,
        "virt" => Group::Virt,
        "gpu" => Group::Gpu,
        _ => Group::Hugepages,
    }
}

/// An `--only` selector that matches no check.
#[derive(Debug, thiserror::Error)]
#[error("unknown check id {0:?}; known ids: {known}", known = CHECKS.iter().map(|c| c.0).collect::<Vec<_>>().join(", "))]
pub struct UnknownCheck(pub String);

/// Resolve `--only` selectors: a check id, or a prefix such as `iommu`
/// (every `iommu.*` check).
pub fn select(only: &[String]) -> Result<Vec<&'static str>, UnknownCheck> {
    if only.is_empty() {
        return Ok(CHECKS.iter().map(|c| c.0).collect());
    }
    let mut out = Vec::new();
    for sel in only {
        let s = sel.trim();
        let hits: Vec<&'static str> = CHECKS
            .iter()
            .map(|c| c.0)
            .filter(|id| *id == s || id.strip_prefix(s).is_some_and(|r| r.starts_with('.')))
            .collect();
        if hits.is_empty() {
            return Err(UnknownCheck(s.to_string()));
        }
        for h in hits {
            if !out.contains(&h) {
                out.push(h);
            }
        }
    }
    // Report order, whatever the order asked.
    out.sort_by_key(|id| CHECKS.iter().position(|c| c.0 == *id));
    Ok(out)
}

/// Run the selected checks (all when `only` is empty). Pure.
pub fn run_checks(ev: &Evidence, analysis: Option<&Analysis>, only: &[&str]) -> Vec<Check> {
    let ctx = rules::Ctx::new(ev, analysis);
    CHECKS
        .iter()
        .map(|c| c.0)
        .filter(|id| only.is_empty() || only.contains(id))
        .map(|id| ctx.run(id))
        .collect()
}

/// The first blocking failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocker {
    pub id: &'static str,
    pub summary: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub ok: usize,
    pub info: usize,
    pub warn: usize,
    pub fail: usize,
    pub skip: usize,
}

/// `exliar check --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub schema: &'static str,
    pub exliar_version: &'static str,
    pub root: String,
    pub live: bool,
    /// The checks that ran, when `--only` narrowed them.
    pub only: Option<Vec<&'static str>>,
    pub checks: Vec<Check>,
    pub counts: Counts,
    /// True when no check failed: ready for boot-time passthrough (as far
    /// as the checks that ran can tell).
    pub ready: bool,
    pub first_blocker: Option<Blocker>,
    /// The GPU the GPU checks are about.
    pub target_gpu: Option<String>,
}

impl CheckReport {
    pub fn new(
        ev: &Evidence,
        analysis: Option<&Analysis>,
        checks: Vec<Check>,
        narrowed: Option<Vec<&'static str>>,
    ) -> Self {
        let mut counts = Counts::default();
        for c in &checks {
            match c.status {
                Status::Ok => counts.ok += 1,
                Status::Info => counts.info += 1,
                Status::Warn => counts.warn += 1,
                Status::Fail => counts.fail += 1,
                Status::Skip => counts.skip += 1,
            }
        }
        let first_blocker = checks
            .iter()
            .find(|c| c.status == Status::Fail)
            .map(|c| Blocker {
                id: c.id,
                summary: c.summary.clone(),
            });
        Self {
            schema: CHECK_SCHEMA,
            exliar_version: env!("CARGO_PKG_VERSION"),
            root: ev.root.clone(),
            live: ev.live,
            only: narrowed,
            ready: first_blocker.is_none(),
            first_blocker,
            counts,
            target_gpu: analysis
                .and_then(rules::target_gpu)
                .map(|g| g.address.to_string()),
            checks,
        }
    }
}
