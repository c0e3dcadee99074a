//! `vm create` / `vm edit` as a plan: the request (typed options), what the
//! host offers (read through the host root by [`gather`]), and the pure
//! decision ([`plan`]) — the domain, the files, the image, the definition.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analyze::{Analysis, Isolation};
use crate::hooks::Handover;
use crate::host::HostRoot;
use crate::host::critical::Critical;
use crate::model::{Inventory, PciAddress};
use crate::plan::{Plan, Step, Subject};

use super::domain::{self, DomainSpec, UsbId};
use super::hostfacts::{self, HugePool, Memory};
use super::looking_glass::{self, LgHost, LgOptions};
use super::profile::Profile;
use super::request::{DiskArg, HugeSize, NetworkArg, image_format, qemu_size};
use super::topology::{self, CpuTopology};

/// Where exliar keeps the domain XML it defines (relative to the root).
pub const VM_DIR: &str = "etc/exliar/vms";

/// Where an answer file is staged just before its ISO is made (a tmpfs:
/// gone at the next boot even if exliar is killed before removing it).
pub const UNATTEND_STAGING: &str = "/run/exliar/unattend";

/// Which card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GpuChoice {
    Auto,
    None,
    Address(PciAddress),
}

/// Firmware asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FirmwareChoice {
    Auto,
    Bios,
    Efi,
    EfiSecure,
}

/// The options of `vm create`, as stored in the domain's metadata (so that
/// `vm edit` changes only what it is given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    pub profile: String,
    pub gpu: GpuChoice,
    pub memory_mib: Option<u64>,
    pub cpus: Option<u32>,
    pub hugepages: Option<HugeSize>,
    pub disk: Option<DiskArg>,
    pub iso: Option<PathBuf>,
    pub network: Option<NetworkArg>,
    pub stealth: bool,
    pub firmware: FirmwareChoice,
    pub kvm: bool,
    /// `--looking-glass[=WxH]`, `--hdr`, `--kvmfr`, `--looking-glass-user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub looking_glass: Option<LgOptions>,
    /// `--usb VENDOR:PRODUCT…`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usb: Vec<UsbId>,
    /// `--usb-controller ADDR…`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usb_controllers: Vec<PciAddress>,
    /// `--force`: give a USB controller that holds the host's keyboard or
    /// boot disk.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// `--evdev`: the host's keyboard and mouse through evdev.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub evdev: bool,
    /// `--unattend USER` (Windows profiles). The password is never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unattend: Option<String>,
    /// `--vbios FILE`: the card's ROM, checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vbios: Option<PathBuf>,
    /// `--handover`: who moves the card when the VM starts and stops.
    #[serde(default, skip_serializing_if = "is_boot")]
    pub handover: Handover,
    /// `--handover` was given: else a host whose only GPU is recommended
    /// for single-GPU handover gets that mode.
    #[serde(skip)]
    pub handover_explicit: bool,
}

fn is_boot(h: &Handover) -> bool {
    *h == Handover::Boot
}

impl Options {
    /// The defaults of `vm create` (the windows11 profile, the recommended card).
    pub fn new() -> Self {
        Options {
            profile: "windows11".into(),
            gpu: GpuChoice::Auto,
            memory_mib: None,
            cpus: None,
            hugepages: None,
            disk: None,
            iso: None,
            network: None,
            stealth: false,
            firmware: FirmwareChoice::Auto,
            kvm: true,
            looking_glass: None,
            usb: Vec::new(),
            usb_controllers: Vec::new(),
            force: false,
            evdev: false,
            unattend: None,
            vbios: None,
            handover: Handover::Boot,
            handover_explicit: false,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

/// A USB controller asked for, as the host sees it.
#[derive(Debug, Clone)]
pub struct UsbControllerFacts {
    pub address: PciAddress,
    /// A USB host controller (class 0x0c03) on this host.
    pub is_usb_controller: bool,
    /// Why the host needs it (its keyboard, its boot disk), each naming the device.
    pub host_needs: Vec<String>,
    /// Other devices in its IOMMU group (not bridges).
    pub group_peers: Vec<PciAddress>,
}

/// What the VM-extras options found on the host.
#[derive(Debug, Clone)]
pub struct ExtrasView {
    pub lg: LgHost,
    /// USB devices present now: ids and a name.
    pub usb_present: Vec<(UsbId, String)>,
    pub usb_controllers: Vec<UsbControllerFacts>,
    /// `/dev/input/by-id/*-event-kbd|mouse`.
    pub evdev: Vec<domain::Evdev>,
    /// `--vbios FILE`: its bytes (checked against the card by [`plan`]), or
    /// why it could not be read.
    pub vbios: Option<Result<Vec<u8>, String>>,
    /// `--unattend USER`: the user name is valid (else why not).
    pub unattend_user_ok: Result<(), String>,
    /// The host's locale, keyboard and time zone, for the answer file.
    pub unattend_locale: Option<super::unattend::HostLocale>,
    /// The VM's answer-file ISO exists already.
    pub unattend_iso_exists: bool,
    /// exliar's copy of the answer file (password hidden) as it is now.
    pub unattend_shown_before: Option<Vec<u8>>,
    /// A network login enabled at boot (`ssh.service`, …), for
    /// `--handover single-gpu`.
    pub network_login: Option<String>,
}

impl Default for ExtrasView {
    fn default() -> Self {
        ExtrasView {
            lg: LgHost::default(),
            usb_present: Vec::new(),
            usb_controllers: Vec::new(),
            evdev: Vec::new(),
            vbios: None,
            unattend_user_ok: Ok(()),
            unattend_locale: None,
            unattend_iso_exists: false,
            unattend_shown_before: None,
            network_login: None,
        }
    }
}

/// A domain that exists already (`vm edit`).
#[derive(Debug, Clone, Default)]
pub struct Existing {
    pub uuid: Option<String>,
    pub macs: Vec<String>,
    /// exliar's file for it (`/etc/exliar/vms/NAME.xml`) as it is now.
    pub file: Option<Vec<u8>>,
}

/// What the host offers, read through the host root.
pub struct HostView {
    pub inv: Inventory,
    pub analysis: Analysis,
    pub critical: Vec<Critical>,
    pub topology: Result<CpuTopology, String>,
    pub memory: Memory,
    pub huge_pools: Vec<HugePool>,
    pub hugetlbfs: bool,
    pub virtio_win: Option<PathBuf>,
    /// The images pool's folder (absolute).
    pub pool_dir: PathBuf,
    /// The facts of the root for kernel parameters (1G hugepages).
    pub target: crate::plan::isolate::TargetFacts,
    /// Per path given (ISO, image, block device): `Ok(detail)` or why not.
    pub paths: Vec<(PathBuf, Result<String, String>)>,
    /// Whether the new image's path exists already.
    pub image_exists: bool,
    pub firmware: Result<super::firmware::Firmware, String>,
    pub firmware_secure: Result<super::firmware::Firmware, String>,
    pub extras: ExtrasView,
}

/// A refusal: each reason names what and says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub Vec<String>);

/// The outcome: the domain, its XML and the plan that defines it.
#[derive(Debug, Clone)]
pub struct VmPlan {
    pub spec: DomainSpec,
    pub xml: String,
    pub plan: Plan,
    /// Why the CPUs, memory and devices are what they are.
    pub reasons: Vec<String>,
    /// What to run after create (the Looking Glass client).
    pub next: Vec<String>,
    /// `--unattend`: what the answer file is made from, without its
    /// password (the caller adds it just before applying).
    pub unattend: Option<super::unattend::Unattend>,
    /// The handover mode decided (given, or from the recommendation).
    pub handover: Handover,
}

fn computer_name_for_reason(name: &str) -> String {
    super::unattend::computer_name_for(name).unwrap_or_default()
}

/// How many pages of `size` `mib` MiB of guest memory needs.
fn pages(mib: u64, size: HugeSize) -> u64 {
    (mib * 1024).div_ceil(size.kib())
}

/// Decide the VM: pure, from the options, the profile and what the host
/// offers. Every refusal is collected, so one run names all of them.
pub fn plan(
    name: &str,
    connect: &str,
    o: &Options,
    profile: &Profile,
    v: &HostView,
    existing: Option<&Existing>,
    new_uuid: Option<String>,
) -> Result<VmPlan, Refusal> {
    let mut refuse: Vec<String> = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut steps: Vec<Step> = Vec::new();

    // The handover mode: given, or single-GPU where that is what the
    // recommendation says (the host's only GPU, chosen by default)
    let rec = &v.analysis.recommendation;
    let single_by_default = !o.handover_explicit
        && matches!(o.gpu, GpuChoice::Auto)
        && rec.mode == crate::analyze::recommend::Mode::SingleGpu
        && rec.host.is_some();
    let resolved;
    let o = if single_by_default {
        let mut r = o.clone();
        r.handover = Handover::SingleGpu;
        resolved = r;
        reasons.push(
            "handover single-gpu: the recommendation for this host (its only GPU); --handover boot|dynamic chooses otherwise".into(),
        );
        &resolved
    } else {
        o
    };

    // The card.
    let gpu = match o.gpu {
        GpuChoice::None => None,
        GpuChoice::Address(a) => Some(a),
        GpuChoice::Auto => match rec.passthrough {
            Some(a) => Some(a),
            None if o.handover == Handover::SingleGpu && rec.host.is_some() => rec.host,
            None if rec.mode == crate::analyze::recommend::Mode::SingleGpu
                && rec.host.is_some() =>
            {
                refuse.push(format!(
                    "{} is the host's only GPU: with --handover {} the host would have no display while the VM runs; give --handover single-gpu (the host lets go of its display and the card while the VM runs, and gets them back when it stops; the default here), or --gpu none",
                    rec.host.map(|a| a.to_string()).unwrap_or_default(),
                    o.handover.name()
                ));
                None
            }
            None => {
                let mut why = "no GPU to pass through is recommended on this host".to_string();
                if let Some(r) = v.analysis.recommendation.reasons.first() {
                    why.push_str(&format!(" ({r})"));
                }
                refuse.push(format!(
                    "{why}: choose one with --gpu ADDR (`exliar scan` lists them), or --gpu none for a VM without a card"
                ));
                None
            }
        },
    };
    let card = gpu.and_then(|a| {
        v.analysis
            .gpus
            .iter()
            .find(|g| g.address == a || g.functions.contains(&a))
    });
    if let (Some(a), None) = (gpu, card) {
        refuse.push(format!(
            "{a} is not a GPU on this host (`exliar scan` lists the GPUs and their addresses)"
        ));
    }
    let mut functions: Vec<PciAddress> = Vec::new();
    let mut gpu_node = None;
    if let Some(g) = card {
        let others = v
            .analysis
            .gpus
            .iter()
            .filter(|o| o.address != g.address && o.virtual_function_of().is_none())
            .count();
        if g.bmc {
            refuse.push(format!(
                "{} is the board-management (BMC) display; it cannot be given to a VM",
                g.address
            ));
        }
        if others == 0 && o.handover != Handover::SingleGpu {
            refuse.push(format!(
                "{} is the host's only GPU: while the VM ran the host would have no display. Give --handover single-gpu (the host lets go of its display and the card while the VM runs, and gets them back when it stops), use a host with a second GPU (an integrated one counts), or --gpu none",
                g.address
            ));
        }
        for peer in g.group_peers() {
            let what = v
                .inv
                .device(peer)
                .map(|d| {
                    format!(
                        "{} {}",
                        d.vendor_name.as_deref().unwrap_or(""),
                        d.device_name.as_deref().unwrap_or("device")
                    )
                    .trim()
                    .to_string()
                })
                .unwrap_or_else(|| "device".into());
            if let Some(c) = v.critical.iter().find(|c| c.address == *peer) {
                refuse.push(format!(
                    "{}'s IOMMU group also holds {peer} ({what}), which the host needs ({}): the card cannot be given away in this slot",
                    g.address, c.why
                ));
            } else {
                refuse.push(format!(
                    "{}'s IOMMU group is shared with {peer} ({what}): the group is not viable unless that device goes to the VM too; move the card to a slot with its own group (`exliar iommu` shows the groups)",
                    g.address
                ));
            }
        }
        if g.isolation == Isolation::NoIommu {
            refuse.push(
                "the IOMMU is off: no device can be passed through (`exliar check` says how to turn it on)".into(),
            );
        }
        functions = g.functions.to_vec();
        gpu_node = v
            .inv
            .device(&g.address)
            .and_then(|d| d.numa_node)
            .and_then(|n| u32::try_from(n).ok());
        reasons.push(format!(
            "card {} ({} {}): every function goes with it on one guest slot: {}",
            g.address,
            g.vendor,
            g.name,
            functions
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    match o.handover {
        Handover::Boot => {}
        Handover::Dynamic if card.is_none() => {
            refuse.push("--handover dynamic moves the VM's card: the VM needs a card (--gpu)".into());
        }
        Handover::Dynamic => reasons.push(
            "handover dynamic: the card stays with the host until the VM starts; exliar's libvirt hook binds its functions to vfio-pci then (refusing while the host uses it) and gives them back when the VM stops (managed='no': libvirt leaves the binding to exliar)".into(),
        ),
        Handover::SingleGpu if card.is_none() => {
            refuse.push(
                "--handover single-gpu hands the host's GPU to the VM: the VM needs a card (--gpu)"
                    .into(),
            );
        }
        Handover::SingleGpu => {
            reasons.push(
                "handover single-gpu: when the VM starts, exliar's libvirt hook stops the display manager, unbinds the framebuffer console and firmware framebuffer, binds the card to vfio-pci and unloads its drivers, journaling each step; when the VM stops it undoes them in reverse (managed='no': libvirt leaves the binding to exliar)".into(),
            );
            let login = v.extras.network_login.as_deref();
            warnings.push(format!(
                "the host's local display goes away while the VM runs (display manager stopped, console unbound); reach the host over the network meanwhile{}; if a start fails half-way, `exliar recover-display` (also run by a watchdog and at boot) brings the display back",
                login.map_or_else(String::new, |l| format!(" ({l} is enabled)"))
            ));
            let console = card.is_some_and(|c| c.boot_display);
            if console && login.is_none() {
                let msg = "the card holds the host's only console and no network login is enabled at boot (no ssh/sshd service or socket): while the VM runs the host could not be reached; enable one (`systemctl enable --now ssh`)";
                if o.force {
                    warnings.push(format!("{msg} (going on: --force)"));
                } else {
                    refuse.push(format!("{msg}, or give --force"));
                }
            }
        }
    }

    // Memory.
    let memory_mib = o.memory_mib.unwrap_or(profile.memory_mib);
    if let Some(total) = v.memory.total_kib {
        if memory_mib * 1024 > total {
            refuse.push(format!(
                "--memory {memory_mib} MiB is more than this host has ({} MiB)",
                total / 1024
            ));
        } else if v
            .memory
            .available_kib
            .is_some_and(|a| memory_mib * 1024 > a)
        {
            warnings.push(format!(
                "{memory_mib} MiB is more than the host has available now ({} MiB): the VM may not start, or the host may swap",
                v.memory.available_kib.unwrap_or(0) / 1024
            ));
        }
    }

    // CPUs.
    let vcpus = o.cpus.unwrap_or(profile.cpus);
    if vcpus == 0 {
        refuse.push("--cpus must be at least 1".into());
    }
    let mut amd = false;
    let pinning = match &v.topology {
        Ok(t) if vcpus > 0 && t.cores() < 2 => {
            warnings.push(
                "this host has one physical core: the vCPUs are not pinned (nothing is left to keep for the host)".into(),
            );
            None
        }
        Ok(t) if vcpus > 0 => {
            amd = t.vendor == topology::CpuVendor::Amd;
            match topology::choose(t, vcpus, gpu_node) {
                Ok(p) => {
                    reasons.extend(p.reasons.iter().cloned());
                    Some(p)
                }
                Err(e) => {
                    refuse.push(format!("--cpus {vcpus}: {e}"));
                    None
                }
            }
        }
        Ok(_) => None,
        Err(e) => {
            warnings.push(format!(
                "the CPU topology could not be read ({e}): the vCPUs are not pinned"
            ));
            None
        }
    };

    // Hugepages.
    if let Some(size) = o.hugepages {
        let need = pages(memory_mib, size);
        let pool = v.huge_pools.iter().find(|p| p.size_kib == size.kib());
        let free = pool.map_or(0, |p| p.free);
        let total = pool.map_or(0, |p| p.total);
        if pool.is_none() {
            refuse.push(format!(
                "this host's kernel offers no {} hugepages (no /sys/kernel/mm/hugepages/hugepages-{}kB)",
                size.name(),
                size.kib()
            ));
        } else if free >= need {
            reasons.push(format!(
                "memory backed by {need} {} hugepages: {free} are free now",
                size.name()
            ));
        } else {
            let extra = need - free;
            let extra_kib = extra * size.kib();
            match size {
                HugeSize::TwoMiB => {
                    let avail = v.memory.available_kib.unwrap_or(0);
                    if extra_kib > avail {
                        refuse.push(format!(
                            "--hugepages 2M: {extra} more 2M pages ({} MiB) are needed and the host has {} MiB available; free memory, lower --memory, or reserve 1G pages at boot (--hugepages 1G)",
                            extra_kib / 1024,
                            avail / 1024
                        ));
                    } else {
                        let want = total + extra;
                        let rel = PathBuf::from("etc/sysctl.d/80-exliar-hugepages.conf");
                        let before = v
                            .target
                            .file(&rel.to_string_lossy())
                            .map(|t| t.as_bytes().to_vec());
                        steps.push(Step::WriteFile {
                            path: rel.clone(),
                            before,
                            after: format!(
                                "# exliar: 2M hugepages for VM {name} ({need} pages of {memory_mib} MiB)\nvm.nr_hugepages = {want}\n"
                            )
                            .into_bytes(),
                            mode: 0o644,
                            why: format!("reserve {want} 2M hugepages at every boot"),
                        });
                        steps.push(Step::Run {
                            argv: vec![
                                "sysctl".into(),
                                "-w".into(),
                                format!("vm.nr_hugepages={want}"),
                            ],
                            undo: Some(vec![
                                "sysctl".into(),
                                "-w".into(),
                                format!("vm.nr_hugepages={total}"),
                            ]),
                            why: format!("reserve the pages now ({} MiB available)", avail / 1024),
                        });
                        reasons.push(format!(
                            "memory backed by {need} 2M hugepages: {extra} more are reserved now and at boot"
                        ));
                    }
                }
                HugeSize::OneGiB => {
                    let host_total = v.memory.total_kib.unwrap_or(0);
                    let after = (total + extra) * size.kib();
                    if after + (2 << 20) > host_total {
                        refuse.push(format!(
                            "--hugepages 1G: {} GiB of 1G pages would leave the host less than 2 GiB",
                            after >> 20
                        ));
                    } else if v.target.proc_cmdline.as_deref().is_some_and(|c| {
                        c.split_whitespace()
                            .any(|p| p.starts_with("hugepages=") || p.starts_with("hugepagesz="))
                    }) {
                        refuse.push("--hugepages 1G: the kernel command line reserves hugepages already (`hugepages=`/`hugepagesz=`); change that reservation yourself, then create the VM".into());
                    } else {
                        let params = vec![
                            "hugepagesz=1G".to_string(),
                            format!("hugepages={}", total + extra),
                        ];
                        match crate::plan::isolate::kernel_param_plan(&v.target, None, &params) {
                            Ok(p) => {
                                steps.extend(p.steps);
                                warnings.extend(p.warnings);
                                if !p.unplaced_params.is_empty() {
                                    refuse.push(format!(
                                        "--hugepages 1G: a boot entry would not pass `{}` ({}); reserve them yourself",
                                        params.join(" "),
                                        p.unplaced_params[0].reason
                                    ));
                                }
                                warnings.push(format!(
                                    "1G hugepages are reserved at boot: reboot before starting {name}"
                                ));
                                reasons.push(format!(
                                    "memory backed by {need} 1G hugepages, reserved on the kernel command line"
                                ));
                            }
                            Err(e) => refuse.push(format!("--hugepages 1G: {e}")),
                        }
                    }
                }
            }
        }
        if !v.hugetlbfs {
            warnings.push("hugetlbfs is not mounted: libvirt needs it mounted (systemd mounts /dev/hugepages) before its daemon starts".into());
        }
    }

    // Disks and the installer.
    let path_check = |p: &Path| v.paths.iter().find(|(q, _)| q == p).map(|(_, r)| r.clone());
    let mut disks = Vec::new();
    let bus_virtio = profile.virtio && (profile.os != "windows" || v.virtio_win.is_some());
    let disk = o.disk.clone().unwrap_or(DiskArg::New(profile.disk_mib));
    match &disk {
        DiskArg::None => {}
        DiskArg::New(mib) => {
            let path = v.pool_dir.join(format!("{name}.qcow2"));
            if v.image_exists {
                refuse.push(format!(
                    "{} exists already: give it with --disk {} to use it, or remove it",
                    path.display(),
                    path.display()
                ));
            }
            let rel = path.strip_prefix("/").unwrap_or(&path).to_path_buf();
            steps.push(Step::CreateImage {
                path: rel,
                format: "qcow2".into(),
                size: qemu_size(*mib),
                why: format!("a new {} disk for {name}", qemu_size(*mib)),
            });
            disks.push(domain::Disk::file(path, "qcow2", bus_virtio));
        }
        DiskArg::Image(p) => match path_check(p) {
            Some(Ok(format)) => disks.push(domain::Disk::file(p.clone(), &format, bus_virtio)),
            Some(Err(e)) => refuse.push(e),
            None => refuse.push(format!("{}: not checked", p.display())),
        },
        DiskArg::Block(p) => match path_check(p) {
            Some(Ok(_)) => disks.push(domain::Disk::block(p.clone(), bus_virtio)),
            Some(Err(e)) => refuse.push(e),
            None => refuse.push(format!("{}: not checked", p.display())),
        },
    }
    let mut cdroms = Vec::new();
    if let Some(iso) = &o.iso {
        match path_check(iso) {
            Some(Ok(_)) => cdroms.push(iso.clone()),
            Some(Err(e)) => refuse.push(e),
            None => refuse.push(format!("{}: not checked", iso.display())),
        }
    }
    if profile.os == "windows" {
        match &v.virtio_win {
            Some(p) => {
                cdroms.push(p.clone());
                reasons.push(format!(
                    "virtio disk and NIC, with the virtio-win drivers attached ({})",
                    p.display()
                ));
            }
            None => reasons.push(
                "SATA disk and e1000e NIC: Windows has drivers for them; install virtio-win (Fedora: virtio-win; elsewhere the ISO from fedorapeople.org into /var/lib/libvirt/images/virtio-win.iso) for virtio".into(),
            ),
        }
    }

    // Network.
    let network = o
        .network
        .clone()
        .unwrap_or(NetworkArg::Network("default".into()));

    // Firmware.
    let want = match o.firmware {
        FirmwareChoice::Auto => profile.firmware,
        f => f,
    };
    let firmware = match want {
        FirmwareChoice::Bios | FirmwareChoice::Auto => domain::Firmware::Bios,
        FirmwareChoice::Efi => match &v.firmware {
            Ok(f) => domain::Firmware::from(f.clone()),
            Err(e) => {
                refuse.push(e.clone());
                domain::Firmware::Bios
            }
        },
        FirmwareChoice::EfiSecure => match &v.firmware_secure {
            Ok(f) => domain::Firmware::from(f.clone()),
            Err(e) => {
                refuse.push(e.clone());
                domain::Firmware::Bios
            }
        },
    };

    // The VM extras.
    let mut extras = domain::Extras::default();
    let mut next = Vec::new();
    if let Some(lg) = &o.looking_glass {
        if card.is_none() {
            refuse.push(
                "--looking-glass shows the card's output on the host: the VM needs a card (--gpu)"
                    .into(),
            );
        } else {
            match looking_glass::plan(name, lg, &v.extras.lg) {
                Ok(p) => {
                    steps.extend(p.steps);
                    reasons.extend(p.reasons);
                    warnings.extend(p.warnings);
                    next.push(format!(
                        "Looking Glass: install the host application in the guest, then run `{}` (input goes over SPICE on 127.0.0.1)",
                        p.client.join(" ")
                    ));
                    extras.looking_glass = Some(p.device);
                    extras.spice = true;
                }
                Err(r) => refuse.extend(r),
            }
        }
    }
    for u in &o.usb {
        match v.extras.usb_present.iter().find(|(id, _)| id == u) {
            Some((_, n)) => reasons.push(format!("USB device {u} ({n}) given to the VM")),
            None => warnings.push(format!(
                "USB device {u} is not plugged in now (`exliar usb list`): the VM starts without it and gets it when it is there at start"
            )),
        }
        if !extras.usb.contains(u) {
            extras.usb.push(*u);
        }
    }
    for c in &o.usb_controllers {
        let Some(f) = v.extras.usb_controllers.iter().find(|f| f.address == *c) else {
            refuse.push(format!("--usb-controller {c}: not a PCI device on this host (`exliar usb list` shows the controllers)"));
            continue;
        };
        if !f.is_usb_controller {
            refuse.push(format!(
                "--usb-controller {c}: not a USB host controller (PCI class 0c03)"
            ));
            continue;
        }
        if card.is_some_and(|g| g.functions.contains(c)) {
            // the card's own USB-C controller goes with the card already
            reasons.push(format!(
                "USB controller {c} is a function of the card: it goes with it"
            ));
            continue;
        }
        if !f.group_peers.is_empty() {
            refuse.push(format!(
                "--usb-controller {c}: its IOMMU group also holds {} — the group is not viable unless they go too; use a controller in a group of its own (`exliar iommu`)",
                f.group_peers.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
            ));
            continue;
        }
        if !f.host_needs.is_empty() {
            if o.force {
                warnings.push(format!(
                    "--usb-controller {c} holds {} — given to the VM anyway (--force): the host loses them while the VM runs",
                    f.host_needs.join("; ")
                ));
            } else {
                refuse.push(format!(
                    "--usb-controller {c} holds {}: the host would lose them while the VM runs; plug them into another controller, or give --force",
                    f.host_needs.join("; ")
                ));
                continue;
            }
        }
        reasons.push(format!(
            "USB controller {c} given whole to the VM (every port on it)"
        ));
        extras.usb_controllers.push(*c);
    }
    if o.evdev {
        if v.extras.evdev.is_empty() {
            refuse.push(
                "--evdev: no keyboard or mouse in /dev/input/by-id (*-event-kbd, *-event-mouse)"
                    .into(),
            );
        } else {
            let kbd = v.extras.evdev.iter().filter(|e| e.keyboard).count();
            reasons.push(format!(
                "evdev: {} keyboard(s) and {} mouse/mice go to the VM; press both Ctrl keys to switch between host and VM",
                kbd,
                v.extras.evdev.len() - kbd
            ));
            extras.evdev = v.extras.evdev.clone();
        }
    }
    if let Some(g) = card
        && o.vbios.is_none()
    {
        for q in g.quirk_details().iter().filter(|q| q.needs == "romfile") {
            let msg = format!(
                "{}: {} — the VM needs a clean copy of the card's ROM: give it with --vbios FILE (`exliar vbios dump` makes one where the card did not initialise the display; `exliar vbios check FILE --for {}` checks one from the vendor). {}",
                g.address, q.title, g.address, q.advice
            );
            if o.force {
                warnings.push(format!("{msg} (going on without one: --force)"));
            } else {
                refuse.push(format!("{msg} --force creates the VM without one"));
            }
        }
    }
    if let Some(rom) = &o.vbios {
        match (&card, &v.extras.vbios) {
            (None, _) => {
                refuse.push("--vbios is the card's ROM: the VM needs a card (--gpu)".into())
            }
            (Some(g), Some(Ok(bytes))) => {
                let ids = g.vendor_id.zip(g.device_id);
                let report = crate::vbios::check(bytes, ids);
                if report.usable {
                    reasons.push(format!(
                        "the card's ROM from {} (checked: signature, the card's ids, a UEFI image)",
                        rom.display()
                    ));
                    warnings.extend(
                        report
                            .findings
                            .iter()
                            .map(|f| format!("--vbios {}: {}", rom.display(), f.message)),
                    );
                    extras.rom = Some(rom.clone());
                } else {
                    let why: Vec<String> = report
                        .findings
                        .iter()
                        .filter(|f| f.severity == crate::vbios::Severity::Error)
                        .map(|f| format!("{} ({})", f.message, f.remedy))
                        .collect();
                    refuse.push(format!(
                        "--vbios {}: not usable for {}: {}",
                        rom.display(),
                        g.address,
                        if why.is_empty() {
                            "see `exliar vbios check`".to_string()
                        } else {
                            why.join("; ")
                        }
                    ));
                }
            }
            (Some(_), Some(Err(e))) => refuse.push(format!("--vbios {}: {e}", rom.display())),
            (Some(_), None) => refuse.push(format!("--vbios {}: not read", rom.display())),
        }
    }
    let mut unattend = None;
    if let Some(user) = &o.unattend {
        let computer = super::unattend::computer_name_for(name);
        if profile.os != "windows" {
            refuse.push(format!(
                "--unattend writes a Windows Setup answer file: the {} profile is not Windows",
                profile.name
            ));
        } else if let Err(e) = v.extras.unattend_user_ok.clone() {
            refuse.push(format!("--unattend {user}: {e}"));
        } else if computer.is_none() {
            refuse.push(format!(
                "--unattend: the VM's name {name:?} makes no Windows computer name (letters, digits, hyphens; not only digits): choose another name"
            ));
        } else {
            let iso = v.pool_dir.join(format!("{name}-unattend.iso"));
            let rel = iso.strip_prefix("/").unwrap_or(&iso).to_path_buf();
            let kept = existing.is_some() && v.extras.unattend_iso_exists;
            if v.extras.unattend_iso_exists && !kept {
                refuse.push(format!(
                    "{} exists already: remove it, or choose another VM name",
                    iso.display()
                ));
            }
            let locale =
                v.extras
                    .unattend_locale
                    .clone()
                    .unwrap_or_else(|| super::unattend::HostLocale {
                        ui_language: super::unattend::locale::DEFAULT_LANGUAGE.into(),
                        user_locale: super::unattend::locale::DEFAULT_LANGUAGE.into(),
                        input_locale: "0409:00000409".into(),
                        timezone: None,
                        notes: vec!["the host's locale was not read: en-US".into()],
                    });
            let u = super::unattend::Unattend {
                user: user.clone(),
                password: super::unattend::Secret::new(""),
                computer_name: computer.unwrap_or_default(),
                locale: locale.clone(),
                virtio_drivers: bus_virtio,
                windows: if profile.name.contains("10") { 10 } else { 11 },
                firmware_efi: matches!(firmware, domain::Firmware::Efi { .. }),
            };
            if let Err(e) = u.validate_without_password() {
                refuse.push(format!("--unattend: {e}"));
            }
            if !kept {
                // the answer file as it goes into the ISO, its password
                // hidden: shown in the plan, kept beside the domain's XML
                let shown = super::unattend::autounattend_xml(&u).replace(
                    &format!(
                        "<Value>{}</Value>",
                        super::unattend::obfuscate_password(&u.password)
                    ),
                    "<Value>(hidden: set when the ISO is made)</Value>",
                );
                let shown_rel = PathBuf::from(format!("{VM_DIR}/{name}-autounattend.xml"));
                steps.push(Step::WriteFile {
                    path: shown_rel,
                    before: v.extras.unattend_shown_before.clone(),
                    after: shown.into_bytes(),
                    mode: 0o600,
                    why: format!(
                        "the answer file of {name} as its ISO holds it, the password hidden"
                    ),
                });
                steps.push(Step::CreateIso {
                    path: rel,
                    staging: PathBuf::from(format!("{UNATTEND_STAGING}/{name}")),
                    volume: "EXLIAR_UNATTEND".into(),
                    files: vec!["Autounattend.xml".into()],
                    why: format!(
                        "Windows Setup's answer file for {name}: local administrator {user} (the password is never shown or kept)"
                    ),
                });
                unattend = Some(u);
            }
            reasons.push(format!(
                "unattended install: local administrator {user}, computer name {}, language {} (formats {}), keyboard {}, time zone {}; the answer file on {} (a second CD-ROM); Secure Boot and the TPM stay on",
                computer_name_for_reason(name),
                locale.ui_language,
                locale.user_locale,
                locale.input_locale,
                locale.timezone.as_deref().unwrap_or("UTC"),
                iso.display()
            ));
            warnings.extend(locale.notes.iter().map(|n| format!("--unattend: {n}")));
            if o.iso.is_none() {
                warnings.push("--unattend: attach the Windows installer too (--iso PATH), or the VM has nothing to install from".into());
            }
            cdroms.push(iso);
        }
    }

    if !refuse.is_empty() {
        return Err(Refusal(refuse));
    }
    let options = serde_json::to_string(o).unwrap_or_default();
    let spec = DomainSpec {
        name: name.to_string(),
        // a UUID of its own from the start, so that every file exliar
        // keeps of it redefines the same domain (rollback of an edit)
        uuid: existing.and_then(|e| e.uuid.clone()).or(new_uuid),
        kvm: o.kvm,
        memory_mib,
        hugepages_kib: o.hugepages.map(HugeSize::kib),
        vcpus,
        pinning,
        amd,
        firmware,
        tpm: profile.tpm,
        hyperv: profile.hyperv,
        localtime: profile.clock == "localtime",
        stealth: o.stealth,
        hostdevs: functions.clone(),
        // exliar's hook moves the card in both handover modes
        managed: o.handover == Handover::Boot,
        disks,
        cdroms,
        network,
        nic_virtio: bus_virtio,
        mac: existing.and_then(|e| e.macs.first().cloned()),
        meta: domain::VmMeta {
            profile: profile.name.clone(),
            gpu: card.map(|g| g.address),
            functions,
            options,
            version: env!("CARGO_PKG_VERSION").to_string(),
        },
        extras,
    };
    let xml = domain::to_xml(&spec);
    let file = PathBuf::from(format!("{VM_DIR}/{name}.xml"));
    let mut plan = Plan::new("/");
    plan.subject = Subject::Vm {
        name: name.to_string(),
        connect: connect.to_string(),
    };
    plan.warnings = warnings;
    // hugepage reservations first, then the domain's file, the image, the
    // definition
    plan.steps = steps
        .iter()
        .filter(|s| !matches!(s, Step::CreateImage { .. } | Step::CreateIso { .. }))
        .cloned()
        .collect();
    plan.steps.push(Step::WriteFile {
        path: file.clone(),
        before: existing.and_then(|e| e.file.clone()),
        after: xml.clone().into_bytes(),
        mode: 0o644,
        why: format!("the domain XML exliar defines {name} from"),
    });
    plan.steps.extend(
        steps
            .into_iter()
            .filter(|s| matches!(s, Step::CreateImage { .. } | Step::CreateIso { .. })),
    );
    if existing.is_some() {
        plan.steps.push(Step::Run {
            argv: crate::plan::define_argv(connect, &file),
            undo: None,
            why: format!("redefine {name} (rollback defines it again from the previous file)"),
        });
    } else {
        plan.steps.push(Step::Define {
            connect: connect.to_string(),
            name: name.to_string(),
            xml: file,
            why: format!("define {name} in libvirt"),
        });
    }
    Ok(VmPlan {
        spec,
        xml,
        plan,
        reasons,
        next,
        unattend,
        handover: o.handover,
    })
}

/// Read what [`plan`] needs from the host root. `virsh` answers the
/// images pool's folder (absent: libvirt's default).
pub fn gather(
    host: &HostRoot,
    inv: Inventory,
    o: &Options,
    name: &str,
    pool_dir: Option<PathBuf>,
) -> HostView {
    let analysis = crate::analyze::analyze(&inv);
    let extras = gather_extras(host, o, &inv);
    let critical = crate::host::critical::find(host);
    let live = host.path() == Path::new("/");
    let target = crate::plan::facts::read(host, live);
    let pool_dir = pool_dir.unwrap_or_else(|| PathBuf::from("/var/lib/libvirt/images"));
    let rel = |p: &Path| p.strip_prefix("/").unwrap_or(p).to_path_buf();
    let mut paths = Vec::new();
    if let Some(iso) = &o.iso {
        let r = if !iso.is_absolute() {
            Err(format!("--iso {}: give an absolute path", iso.display()))
        } else {
            match std::fs::metadata(host.path().join(rel(iso))) {
                Ok(m) if m.is_file() => Ok("iso".to_string()),
                Ok(_) => Err(format!("--iso {}: not a regular file", iso.display())),
                Err(e) => Err(format!("--iso {}: {e}", iso.display())),
            }
        };
        paths.push((iso.clone(), r));
    }
    match &o.disk {
        Some(DiskArg::Image(p)) => {
            let r = if !p.is_absolute() {
                Err(format!("--disk {}: give an absolute path", p.display()))
            } else {
                match std::fs::metadata(host.path().join(rel(p))) {
                    Ok(m) if m.is_file() => {
                        let mut head = [0u8; 4];
                        let n = std::fs::File::open(host.path().join(rel(p)))
                            .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
                            .unwrap_or(0);
                        Ok(image_format(&head[..n]).to_string())
                    }
                    Ok(_) => Err(format!(
                        "--disk {}: not a regular file (a block device goes as /dev/…)",
                        p.display()
                    )),
                    Err(e) => Err(format!("--disk {}: {e}", p.display())),
                }
            };
            paths.push((p.clone(), r));
        }
        Some(DiskArg::Block(p)) => {
            paths.push((p.clone(), hostfacts::block_device_free(host, p)));
        }
        _ => {}
    }
    let mut extras = extras;
    if let Some(user) = &o.unattend {
        extras.unattend_user_ok = super::unattend::check_user_name(user).map_err(|e| e.to_string());
        extras.unattend_locale = Some(super::unattend::host_locale(host));
        extras.unattend_iso_exists = std::fs::symlink_metadata(
            host.path()
                .join(rel(&pool_dir.join(format!("{name}-unattend.iso")))),
        )
        .is_ok();
        extras.unattend_shown_before = host
            .read_optional(format!("{VM_DIR}/{name}-autounattend.xml"))
            .ok()
            .flatten()
            .map(String::into_bytes);
    }
    let image_exists = std::fs::symlink_metadata(
        host.path()
            .join(rel(&pool_dir.join(format!("{name}.qcow2")))),
    )
    .is_ok();
    HostView {
        inv,
        analysis,
        critical,
        topology: topology::read(host),
        memory: hostfacts::memory(host),
        huge_pools: hostfacts::huge_pools(host),
        hugetlbfs: hostfacts::hugetlbfs_mounted(host),
        virtio_win: hostfacts::virtio_win_iso(host),
        pool_dir,
        target,
        paths,
        image_exists,
        firmware: super::firmware::find(host, false),
        firmware_secure: super::firmware::find(host, true),
        extras,
    }
}

/// The names in a passwd/group file (first field of each line).
fn names(text: Option<String>) -> Vec<String> {
    text.unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(':').next())
        .filter(|n| !n.is_empty() && !n.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The host facts the Looking Glass plan needs.
pub fn gather_looking_glass(host: &HostRoot) -> LgHost {
    let mut connectors = Vec::new();
    for c in host.list_dir("sys/class/drm").unwrap_or_default() {
        // connectors are cardN-NAME; cardN and renderDN are not
        if !c.starts_with("card") || !c.contains('-') {
            continue;
        }
        let base = format!("sys/class/drm/{c}");
        let status = host
            .read_optional(format!("{base}/status"))
            .ok()
            .flatten()
            .unwrap_or_default();
        let modes = host
            .read_optional(format!("{base}/modes"))
            .ok()
            .flatten()
            .unwrap_or_default();
        connectors.push(looking_glass::Connector {
            name: c,
            status,
            modes,
        });
    }
    let qemu_conf = host.read_optional("etc/libvirt/qemu.conf").ok().flatten();
    let groups = names(host.read_optional("etc/group").ok().flatten());
    let qemu_group = looking_glass::qemu_group(qemu_conf.as_deref(), &groups);
    let files = looking_glass::FILES
        .iter()
        .map(|rel| {
            (
                rel.to_string(),
                host.read_optional(rel)
                    .ok()
                    .flatten()
                    .map(String::into_bytes),
            )
        })
        .collect();
    LgHost {
        connectors,
        qemu_conf,
        qemu_group,
        users: names(host.read_optional("etc/passwd").ok().flatten()),
        files,
        apparmor: host.exists("etc/apparmor.d/abstractions/libvirt-qemu"),
        versions: None,
    }
}

/// A PCI device as `--usb-controller` sees it: a USB host controller
/// (class 0x0c03)? the other devices of its IOMMU group (bridges aside).
pub fn usb_controller_facts(inv: &Inventory, address: PciAddress) -> Option<UsbControllerFacts> {
    let d = inv.device(&address)?;
    let is_usb_controller = d.class.is_some_and(|c| c.class_subclass() == 0x0c03);
    let group_peers = match d.iommu_group {
        Some(g) => inv
            .devices
            .iter()
            .filter(|x| x.iommu_group == Some(g) && x.address != address && !x.is_bridge())
            .map(|x| x.address)
            .collect(),
        None => Vec::new(),
    };
    Some(UsbControllerFacts {
        address,
        is_usb_controller,
        host_needs: Vec::new(),
        group_peers,
    })
}

/// What the VM-extras options need from the host.
/// A network login enabled at boot: systemd's ssh/sshd service or socket
/// (Debian, Fedora, Arch, NixOS), OpenRC's or runit's sshd.
pub fn network_login(host: &HostRoot) -> Option<String> {
    [
        "etc/systemd/system/multi-user.target.wants/ssh.service",
        "etc/systemd/system/multi-user.target.wants/sshd.service",
        "etc/systemd/system/sockets.target.wants/ssh.socket",
        "etc/systemd/system/sockets.target.wants/sshd.socket",
        "etc/runlevels/default/sshd",
        "etc/runit/runsvdir/default/sshd",
        "var/service/sshd",
    ]
    .iter()
    .find(|p| host.exists(p))
    .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
}

fn gather_extras(host: &HostRoot, o: &Options, inv: &Inventory) -> ExtrasView {
    use crate::host::usb;
    let want_usb = !o.usb.is_empty() || !o.usb_controllers.is_empty();
    let devices = if want_usb {
        let ids = usb::load_usb_ids(host);
        usb::read(host, Some(&ids))
    } else {
        Vec::new()
    };
    let usb_present = devices
        .iter()
        .filter(|d| !d.hub)
        .map(|d| {
            let name = [d.vendor_name.as_deref(), d.product_name.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            (
                UsbId {
                    vendor: d.vendor,
                    product: d.product,
                },
                if name.is_empty() {
                    "no name".to_string()
                } else {
                    name
                },
            )
        })
        .collect();
    let evdev = if o.evdev {
        usb::evdev_inputs(host)
            .into_iter()
            .map(|e| domain::Evdev {
                path: PathBuf::from(e.path),
                keyboard: e.kind == usb::InputKind::Keyboard,
            })
            .collect()
    } else {
        Vec::new()
    };
    ExtrasView {
        network_login: network_login(host),
        usb_present,
        evdev,
        lg: if o.looking_glass.is_some() {
            gather_looking_glass(host)
        } else {
            LgHost::default()
        },
        usb_controllers: o
            .usb_controllers
            .iter()
            .filter_map(|a| usb_controller_facts(inv, *a))
            .map(|mut f| {
                f.host_needs = usb::controller_holds_host_input_or_boot(host, &devices, f.address);
                f
            })
            .collect(),
        vbios: o.vbios.as_ref().map(|p| {
            if !p.is_absolute() {
                return Err("give an absolute path".to_string());
            }
            let full = host.path().join(p.strip_prefix("/").unwrap_or(p));
            crate::vbios::read_file(&full).map_err(|e| e.to_string())
        }),
        ..ExtrasView::default()
    }
}
