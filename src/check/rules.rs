//! The checks. Pure functions of the [`Evidence`] and the GPU analysis.

use std::collections::{BTreeMap, BTreeSet};

use crate::analyze::bootenv::{
    self, BootEnv, CmdlineSource, Firmware, Immutable, Loader, OsFamily,
};
use crate::analyze::{Analysis, Gpu, Mode};
use crate::host::sysfs::os_release_value;
use crate::model::Fact;

use super::gather::{self, Content, Evidence, Listing};
use super::parse::{self, Cmdline, Kconfig};
use super::remedy::{self, Family, Package};
use super::{Check, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vendor {
    Intel,
    Amd,
    Other,
    Unknown,
}

/// Where a module comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Avail {
    /// Built into the kernel (the evidence says how it is known).
    Builtin,
    /// A loadable module file.
    Module,
    /// Loaded (or built in with parameters): `/sys/module/<name>`.
    Loaded,
    Absent,
    Unknown,
}

/// Everything the checks share, computed once.
pub(super) struct Ctx<'a> {
    ev: &'a Evidence,
    analysis: Option<&'a Analysis>,
    cpuinfo: Content,
    flags: BTreeSet<String>,
    vendor: Vendor,
    vendor_id: Option<String>,
    cmdline: Option<Cmdline>,
    kconfig: Option<BTreeMap<String, Kconfig>>,
    dep: Option<BTreeMap<String, String>>,
    builtin: Option<BTreeMap<String, String>>,
    release: Option<String>,
    version: Option<(u32, u32, u32)>,
    os: OsFamily,
    family: Family,
    boot: BootEnv,
    groups: Vec<String>,
    units: Vec<String>,
}

/// The GPU the GPU checks are about: the recommended passthrough GPU, or
/// for a single-GPU host the one GPU that would be handed over.
pub(super) fn target_gpu(a: &Analysis) -> Option<&Gpu> {
    let r = &a.recommendation;
    let addr = match r.mode {
        Mode::Split => r.passthrough,
        Mode::SingleGpu => r.host,
        Mode::None => None,
    }?;
    a.gpus.iter().find(|g| g.address == addr)
}

fn entries(l: &Listing) -> Option<&[String]> {
    match l {
        Listing::Entries(e) => Some(e),
        _ => None,
    }
}

fn kconfig_key(module: &str) -> Option<&'static str> {
    Some(match module {
        "kvm" => "CONFIG_KVM",
        "kvm_intel" => "CONFIG_KVM_INTEL",
        "kvm_amd" => "CONFIG_KVM_AMD",
        "kvm_pvm" => "CONFIG_KVM_PVM",
        "vfio" => "CONFIG_VFIO",
        "vfio_pci" => "CONFIG_VFIO_PCI",
        "vfio_iommu_type1" => "CONFIG_VFIO_IOMMU_TYPE1",
        "vfio_virqfd" => "CONFIG_VFIO_VIRQFD",
        _ => return None,
    })
}

impl<'a> Ctx<'a> {
    pub(super) fn new(ev: &'a Evidence, analysis: Option<&'a Analysis>) -> Self {
        let cpuinfo = ev.content("proc/cpuinfo").clone();
        let cpu_text = ev.text_of("proc/cpuinfo").unwrap_or_default();
        let flags = parse::cpu_flags(&cpu_text);
        let vendor_id = crate::host::sysfs::cpuinfo_value(&cpu_text, "vendor_id");
        let vendor = match vendor_id.as_deref() {
            Some("GenuineIntel") => Vendor::Intel,
            Some("AuthenticAMD") | Some("HygonGenuine") => Vendor::Amd,
            Some(_) => Vendor::Other,
            None => Vendor::Unknown,
        };
        let cmdline = ev.text_of("proc/cmdline").map(|t| Cmdline::parse(&t));
        let kconfig = ev
            .kernel_config
            .as_deref()
            .and_then(|p| ev.text_of(p))
            .map(|t| parse::parse_kconfig(&t));
        let (dep, builtin) = match &ev.module_dir {
            Some(d) => (
                ev.text_of(&format!("{d}/modules.dep"))
                    .map(|t| parse::parse_module_list(&t)),
                ev.text_of(&format!("{d}/modules.builtin"))
                    .map(|t| parse::parse_module_list(&t)),
            ),
            None => (None, None),
        };
        let release = ev.kernel_release();
        let version = release.as_deref().and_then(parse::kernel_version);
        let os_text = ev.os_release().map(|(_, t)| t).unwrap_or_default();
        let os = OsFamily::from_os_release(&os_text);
        let family = Family::of(&os);
        let boot = bootenv::detect(ev, &os);
        let groups = entries(ev.listing(gather::IOMMU_GROUPS))
            .map(<[String]>::to_vec)
            .unwrap_or_default();
        let units = entries(ev.listing(gather::IOMMU_CLASS))
            .map(<[String]>::to_vec)
            .unwrap_or_default();
        Self {
            ev,
            analysis,
            cpuinfo,
            flags,
            vendor,
            vendor_id,
            cmdline,
            kconfig,
            dep,
            builtin,
            release,
            version,
            os,
            family,
            boot,
            groups,
            units,
        }
    }

    pub(super) fn run(&self, id: &'static str) -> Check {
        match id {
            "cpu.vendor" => self.cpu_vendor(),
            "cpu.virt" => self.cpu_virt(),
            "kvm.device" => self.kvm_device(),
            "kvm.modules" => self.kvm_modules(),
            "iommu.firmware" => self.iommu_firmware(),
            "iommu.active" => self.iommu_active(),
            "iommu.cmdline" => self.iommu_cmdline(),
            "iommu.passthrough" => self.iommu_passthrough(),
            "iommu.irq-remap" => self.irq_remap(),
            "kernel.version" => self.kernel_version(),
            "kernel.vfio-modules" => self.vfio_modules(),
            "boot.firmware" => self.boot_firmware(),
            "boot.secure-boot" => self.secure_boot(),
            "boot.loader" => self.boot_loader(),
            "boot.initramfs" => self.boot_initramfs(),
            "boot.init" => self.boot_init(),
            "os.distribution" => self.os_distribution(),
            "os.immutable" => self.os_immutable(),
            "virt.qemu" => self.virt_qemu(),
            "virt.libvirt" => self.virt_libvirt(),
            "virt.ovmf" => self.virt_ovmf(),
            "virt.swtpm" => self.virt_swtpm(),
            "virt.libvirt-access" => self.libvirt_access(),
            "gpu.target" => self.gpu_target(),
            "gpu.framebuffer" => self.gpu_framebuffer(),
            "gpu.reset" => self.gpu_reset(),
            "gpu.driver" => self.gpu_driver(),
            "gpu.vfio-ids" => self.gpu_vfio_ids(),
            "gpu.kvmfr" => self.gpu_kvmfr(),
            "hugepages.config" => self.hugepages_config(),
            _ => self.hugepages_1g(),
        }
    }

    // ----- helpers -------------------------------------------------------

    /// A skip for an unreadable or missing required file, or `None`.
    fn unreadable(&self, id: &'static str, rel: &str) -> Option<Check> {
        match self.ev.content(rel) {
            Content::Data(_) => None,
            Content::Missing => Some(
                Check::new(
                    id,
                    Status::Skip,
                    format!("/{rel} is missing, so this cannot be judged"),
                )
                .ev(rel, "missing"),
            ),
            Content::Unreadable(e) => Some(
                Check::new(id, Status::Skip, format!("/{rel} could not be read: {e}"))
                    .ev(rel, format!("unreadable: {e}")),
            ),
        }
    }

    fn present(&self, rel: &str) -> bool {
        self.ev.is_present(rel)
    }

    fn first_present(&self, paths: &[&str]) -> Option<String> {
        paths
            .iter()
            .find(|p| self.present(p))
            .map(|p| p.to_string())
    }

    fn tool(&self, name: &str) -> Option<String> {
        gather::TOOLS
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, paths)| self.first_present(paths))
    }

    fn kconf(&self, key: &str) -> Option<&Kconfig> {
        self.kconfig.as_ref()?.get(key)
    }

    fn kconfig_fact(&self, key: &str) -> Option<Fact> {
        let src = self.ev.kernel_config.as_deref()?;
        let v = match self.kconf(key) {
            Some(Kconfig::NotSet) => format!("# {key} is not set"),
            Some(v) => format!("{key}={}", v.show()),
            None => format!("{key} absent"),
        };
        Some(Fact::new(src, v))
    }

    /// Whether a module is available, and the fact that says so.
    fn module(&self, name: &str) -> (Avail, Fact) {
        let sys = format!("sys/module/{name}");
        let loaded = self.present(&sys);
        if let Some(d) = &self.ev.module_dir {
            if let Some(p) = self.builtin.as_ref().and_then(|m| m.get(name)) {
                return (
                    Avail::Builtin,
                    Fact::new(
                        &format!("{d}/modules.builtin"),
                        format!("{name}: built in ({p})"),
                    ),
                );
            }
            if let Some(p) = self.dep.as_ref().and_then(|m| m.get(name)) {
                return (
                    if loaded { Avail::Loaded } else { Avail::Module },
                    Fact::new(
                        &format!("{d}/modules.dep"),
                        format!("{name}: module {p}{}", if loaded { ", loaded" } else { "" }),
                    ),
                );
            }
        }
        if loaded {
            return (
                Avail::Loaded,
                Fact::new(&sys, format!("{name}: present (loaded or built in)")),
            );
        }
        if let Some(key) = kconfig_key(name)
            && let Some(src) = &self.ev.kernel_config
        {
            match self.kconf(key) {
                Some(Kconfig::Yes) => {
                    return (
                        Avail::Builtin,
                        Fact::new(src, format!("{key}=y (built in)")),
                    );
                }
                Some(Kconfig::Module) => {
                    let state = if self.ev.module_dir.is_some() {
                        Avail::Absent
                    } else {
                        Avail::Unknown
                    };
                    let why = if self.ev.module_dir.is_some() {
                        "but it is not in modules.dep: the module is not installed"
                    } else {
                        "but no module directory was found for this kernel"
                    };
                    return (state, Fact::new(src, format!("{key}=m, {why}")));
                }
                Some(Kconfig::NotSet) | None => {
                    return (
                        Avail::Absent,
                        Fact::new(src, format!("{key} is not set: not in this kernel")),
                    );
                }
                Some(other) => {
                    return (
                        Avail::Unknown,
                        Fact::new(src, format!("{key}={}", other.show())),
                    );
                }
            }
        }
        if self.dep.is_some() || self.builtin.is_some() {
            let d = self.ev.module_dir.as_deref().unwrap_or("lib/modules");
            return (
                Avail::Absent,
                Fact::new(
                    &format!("{d}/modules.dep"),
                    format!("{name}: not listed (nor in modules.builtin)"),
                ),
            );
        }
        (
            Avail::Unknown,
            Fact::new(
                &sys,
                format!(
                    "{name}: absent; no modules.dep, modules.builtin or kernel config could be read"
                ),
            ),
        )
    }

    fn target(&self) -> Result<&'a Gpu, Check> {
        Err(match self.analysis {
            None => Check::new(
                "gpu.target",
                Status::Skip,
                format!(
                    "no PCI inventory: {}",
                    self.ev
                        .pci_error
                        .as_deref()
                        .unwrap_or("it could not be read")
                ),
            ),
            Some(a) => match target_gpu(a) {
                Some(g) => return Ok(g),
                None => Check::new(
                    "gpu.target",
                    Status::Skip,
                    "no GPU to pass through (see gpu.target)",
                ),
            },
        })
    }

    fn gpu_skip(&self, id: &'static str) -> Result<&'a Gpu, Check> {
        self.target().map_err(|mut c| {
            c.id = id;
            c.group = super::Group::Gpu;
            if self.analysis.is_some() {
                c.summary = "no GPU to pass through, nothing to check (see gpu.target)".to_string();
            }
            c
        })
    }

    fn cmdline_fact(&self, keys: &[&str]) -> Fact {
        match &self.cmdline {
            None => Fact::new("proc/cmdline", "not readable"),
            Some(c) => {
                let shown: Vec<String> = keys.iter().flat_map(|k| c.show(k)).collect();
                Fact::new(
                    "proc/cmdline",
                    if shown.is_empty() {
                        format!(
                            "no {}",
                            keys.iter()
                                .map(|k| format!("{k}="))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    } else {
                        shown.join(" ")
                    },
                )
            }
        }
    }

    fn vendor_word(&self) -> &'static str {
        match self.vendor {
            Vendor::Intel => "Intel",
            Vendor::Amd => "AMD",
            _ => "this",
        }
    }

    // ----- CPU and KVM ---------------------------------------------------

    fn cpu_vendor(&self) -> Check {
        if let Some(c) = self.unreadable("cpu.vendor", "proc/cpuinfo") {
            return c;
        }
        let text = self.ev.text_of("proc/cpuinfo").unwrap_or_default();
        let model = crate::host::sysfs::cpuinfo_value(&text, "model name");
        let vid = self
            .vendor_id
            .clone()
            .unwrap_or_else(|| "unknown".to_string());
        let mut c = match self.vendor {
            Vendor::Intel | Vendor::Amd => Check::new(
                "cpu.vendor",
                Status::Ok,
                format!(
                    "{} CPU{}",
                    self.vendor_word(),
                    model.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
                ),
            ),
            Vendor::Other => Check::new(
                "cpu.vendor",
                Status::Warn,
                format!("CPU vendor {vid}: exliar knows Intel and AMD; IOMMU advice may not apply, and exliar plan adds no `intel_iommu=on` (nor any IOMMU parameter) for this CPU"),
            ),
            Vendor::Unknown => Check::new(
                "cpu.vendor",
                Status::Skip,
                "no vendor_id in /proc/cpuinfo (not an x86 CPU?); exliar plan adds no `intel_iommu=on` (nor any IOMMU parameter) for an unknown CPU",
            ),
        }
        .ev("proc/cpuinfo", format!("vendor_id: {vid}"));
        if let Some(m) = model {
            c = c.ev("proc/cpuinfo", format!("model name: {m}"));
        }
        c
    }

    fn cpu_virt(&self) -> Check {
        if let Some(c) = self.unreadable("cpu.virt", "proc/cpuinfo") {
            return c;
        }
        let hv = self.flags.contains("hypervisor");
        let (flag, name) = if self.flags.contains("vmx") {
            (Some("vmx"), "Intel VT-x")
        } else if self.flags.contains("svm") {
            (Some("svm"), "AMD-V")
        } else {
            (None, "")
        };
        let shown = format!(
            "flags: {}{}",
            flag.map_or_else(|| "no vmx, no svm".to_string(), |f| f.to_string()),
            if hv { ", hypervisor" } else { "" }
        );
        match flag {
            Some(f) => Check::new(
                "cpu.virt",
                Status::Ok,
                format!(
                    "hardware virtualization available: {name} ({f}){}",
                    if hv {
                        "; this host itself runs under a hypervisor (nested)"
                    } else {
                        ""
                    }
                ),
            )
            .ev("proc/cpuinfo", shown),
            None => {
                let (summary, fix) = if hv {
                    (
                        "no vmx/svm flag: this system runs under a hypervisor (cpuinfo flag `hypervisor`) that does not pass hardware virtualization through".to_string(),
                        "enable nested virtualization for this VM on its host (e.g. `kvm_intel nested=1` / `kvm_amd nested=1` there, CPU model `host`); GPU passthrough needs a physical host or a VM with a virtual IOMMU".to_string(),
                    )
                } else {
                    (
                        "no vmx/svm flag: hardware virtualization is off in the firmware or not supported".to_string(),
                        match self.vendor {
                            Vendor::Amd => "enable SVM (AMD-V) in the firmware setup".to_string(),
                            _ => "enable Intel Virtualization Technology (VT-x) in the firmware setup".to_string(),
                        },
                    )
                };
                Check::new("cpu.virt", Status::Fail, summary)
                    .ev("proc/cpuinfo", shown)
                    .fix(fix)
            }
        }
    }

    fn hw_virt(&self) -> bool {
        self.flags.contains("vmx") || self.flags.contains("svm")
    }

    fn pvm(&self) -> bool {
        self.present("sys/module/kvm_pvm")
    }

    fn kvm_device(&self) -> Check {
        let id = "kvm.device";
        if !self.present("dev/kvm") {
            let fix = match self.vendor {
                Vendor::Amd => "enable SVM in the firmware, then `sudo modprobe kvm_amd`",
                _ => "enable VT-x in the firmware, then `sudo modprobe kvm_intel`",
            };
            return Check::new(
                id,
                Status::Fail,
                "/dev/kvm is missing: KVM is not available",
            )
            .ev("dev/kvm", "absent")
            .fix(fix);
        }
        let mut c = Check::new(id, Status::Ok, "");
        let mut facts = Vec::new();
        match self.ev.nodes.get("dev/kvm") {
            Some(n) => facts.push(Fact::new(
                "dev/kvm",
                format!("{}, mode {:04o}, owner uid {} gid {}", n.kind, n.mode, n.uid, n.gid),
            )),
            None => facts.push(Fact::new(
                "dev/kvm",
                if self.ev.live {
                    "present".to_string()
                } else {
                    "present (not the live host: whether the current user may open it is judged only on the live host)".to_string()
                },
            )),
        }
        let usable = match self.ev.access.get("dev/kvm") {
            Some(Ok(true)) => {
                facts.push(Fact::new(
                    "dev/kvm",
                    "access(R_OK|W_OK) for the current user: allowed",
                ));
                Some(true)
            }
            Some(Ok(false)) => {
                facts.push(Fact::new(
                    "dev/kvm",
                    "access(R_OK|W_OK) for the current user: denied",
                ));
                Some(false)
            }
            Some(Err(e)) => {
                facts.push(Fact::new("dev/kvm", format!("access check failed: {e}")));
                None
            }
            None => None,
        };
        if self.pvm() {
            facts.push(Fact::new(
                "sys/module/kvm_pvm",
                "present: /dev/kvm is provided by kvm_pvm (PVM)",
            ));
        }
        let hw = self.hw_virt();
        let mut remedies: Vec<&str> = Vec::new();
        c.summary = match usable {
            Some(true) => {
                "/dev/kvm present and usable (read/write) by the current user".to_string()
            }
            Some(false) => {
                c.status = Status::Warn;
                remedies.push("sudo usermod -aG kvm $USER (then log in again; libvirt's system VMs do not need this)");
                "/dev/kvm present, but the current user may not open it read/write".to_string()
            }
            None => "/dev/kvm present".to_string(),
        };
        if self.pvm() && !hw {
            c.status = Status::Warn;
            c.summary.push_str("; it is provided by kvm_pvm (PVM: KVM without hardware virtualization) while cpuinfo shows no vmx/svm: a nested PVM setup, not hardware KVM");
            remedies.push("for device passthrough, run on a host with VT-x/AMD-V (or a VM with nested virtualization and a virtual IOMMU)");
        } else if !hw && matches!(self.cpuinfo, Content::Data(_)) {
            c.status = Status::Warn;
            c.summary.push_str("; yet /proc/cpuinfo shows no vmx/svm: contradictory evidence (a paravirtual or emulated KVM)");
        }
        if !remedies.is_empty() {
            c.remedy = Some(remedies.join("; "));
        }
        c.facts(facts)
    }

    fn kvm_modules(&self) -> Check {
        let id = "kvm.modules";
        let (kvm, kvm_f) = self.module("kvm");
        let vendor_mods: &[&str] = match self.vendor {
            Vendor::Intel => &["kvm_intel"],
            Vendor::Amd => &["kvm_amd"],
            _ => &["kvm_intel", "kvm_amd"],
        };
        let mut facts = vec![kvm_f];
        let mut vendor_ok = None;
        for m in vendor_mods {
            let (a, f) = self.module(m);
            facts.push(f);
            if a != Avail::Absent && a != Avail::Unknown && vendor_ok.is_none() {
                vendor_ok = Some((*m, a));
            }
        }
        let pvm = self.pvm();
        if pvm {
            facts.push(Fact::new("sys/module/kvm_pvm", "kvm_pvm: present (PVM)"));
        }
        let all_unknown = kvm == Avail::Unknown
            && vendor_ok.is_none()
            && facts.iter().all(|f| f.value.contains("no modules.dep"));
        if all_unknown && !self.present("dev/kvm") {
            return Check::new(
                id,
                Status::Skip,
                "no module list, kernel config or /sys/module entry could be read",
            )
            .facts(facts);
        }
        let vm = vendor_mods.join("/");
        match (&kvm, vendor_ok) {
            (Avail::Absent, _) => Check::new(id, Status::Fail, "the kvm module is not in this kernel")
                .facts(facts)
                .fix("use a kernel built with CONFIG_KVM (every mainstream distribution kernel has it)"),
            (_, Some((m, Avail::Module))) => Check::new(
                id,
                Status::Warn,
                format!("{m} is available but not loaded"),
            )
            .facts(facts)
            .fix(format!("sudo modprobe {m} (it loads at boot once VT-x/AMD-V is enabled in the firmware)")),
            (_, Some((m, a))) => Check::new(
                id,
                Status::Ok,
                format!(
                    "kvm and {m} {}",
                    if a == Avail::Builtin { "built in" } else { "loaded" }
                ),
            )
            .facts(facts),
            (_, None) if pvm => Check::new(
                id,
                Status::Warn,
                format!("{vm} is not available; only kvm_pvm (PVM, paravirtual KVM) provides /dev/kvm"),
            )
            .facts(facts)
            .fix("hardware KVM needs a kernel with CONFIG_KVM_INTEL / CONFIG_KVM_AMD on a CPU with VT-x/AMD-V"),
            (_, None) => Check::new(id, Status::Fail, format!("{vm} is not available in this kernel"))
                .facts(facts)
                .fix("use a kernel built with CONFIG_KVM_INTEL / CONFIG_KVM_AMD (the distribution's standard kernel)"),
        }
    }

    // ----- IOMMU ---------------------------------------------------------

    fn iommu_on(&self) -> bool {
        !self.groups.is_empty()
    }

    fn iommu_firmware(&self) -> Check {
        let id = "iommu.firmware";
        let tables = match self.ev.listing(gather::ACPI_TABLES) {
            Listing::Entries(e) => e.clone(),
            Listing::Unreadable(e) => {
                return Check::new(
                    id,
                    Status::Skip,
                    format!("/{} could not be listed: {e}", gather::ACPI_TABLES),
                )
                .ev(gather::ACPI_TABLES, format!("unreadable: {e}"));
            }
            Listing::Missing => {
                return Check::new(
                    id,
                    Status::Skip,
                    "no ACPI tables directory (not an ACPI system, or /sys not mounted)",
                )
                .ev(gather::ACPI_TABLES, "missing");
            }
        };
        let has = |n: &str| {
            tables.iter().any(|t| {
                t == n
                    || t.strip_prefix(n)
                        .is_some_and(|r| r.chars().all(|c| c.is_ascii_digit()))
            })
        };
        let shown = Fact::new(gather::ACPI_TABLES, format!("tables: {}", tables.join(" ")));
        let found: Vec<&str> = ["DMAR", "IVRS", "VIOT"]
            .into_iter()
            .filter(|t| has(t))
            .collect();
        if !found.is_empty() {
            let what = found
                .iter()
                .map(|t| match *t {
                    "DMAR" => "DMAR (Intel VT-d)",
                    "IVRS" => "IVRS (AMD-Vi)",
                    _ => "VIOT (virtio-iommu)",
                })
                .collect::<Vec<_>>()
                .join(", ");
            let mut c = Check::new(
                id,
                Status::Ok,
                format!("the firmware describes an IOMMU: {what}"),
            )
            .facts([shown]);
            let mismatch = match self.vendor {
                Vendor::Intel => !found.contains(&"DMAR") && found.contains(&"IVRS"),
                Vendor::Amd => !found.contains(&"IVRS") && found.contains(&"DMAR"),
                _ => false,
            };
            if mismatch {
                c.status = Status::Warn;
                c.summary = format!(
                    "{} CPU but the IOMMU table is {what}: contradictory evidence",
                    self.vendor_word()
                );
            }
            return c;
        }
        let fix = match self.vendor {
            Vendor::Amd => {
                "enable the IOMMU (often \"IOMMU\" or \"AMD-Vi\", next to SVM) in the firmware setup"
            }
            _ => {
                "enable VT-d (\"Intel Virtualization Technology for Directed I/O\") in the firmware setup"
            }
        };
        let mut c = Check::new(
            id,
            Status::Fail,
            format!(
                "no DMAR or IVRS ACPI table: the firmware does not enable an IOMMU{}",
                if self.flags.contains("hypervisor") { " (this is a VM without a virtual IOMMU)" } else { "" }
            ),
        )
        .facts([shown])
        .fix(if self.flags.contains("hypervisor") {
            "give the VM a virtual IOMMU (QEMU: -device intel-iommu,intremap=on with the q35 machine), or run on the physical host".to_string()
        } else {
            fix.to_string()
        });
        if self.iommu_on() {
            c.status = Status::Warn;
            c.summary = "no DMAR or IVRS table, yet the kernel has IOMMU groups: contradictory evidence (another IOMMU type?)".to_string();
            c.remedy = None;
        }
        c
    }

    /// Enabling parameters present on the command line.
    fn enabling_params(&self) -> Vec<String> {
        let Some(c) = &self.cmdline else {
            return Vec::new();
        };
        let mut v = Vec::new();
        if c.has_option("intel_iommu", "on") {
            v.extend(c.show("intel_iommu"));
        }
        if c.has_option("amd_iommu", "on") || c.has_option("amd_iommu", "force_enable") {
            v.extend(c.show("amd_iommu"));
        }
        if c.has_option("iommu", "force")
            || c.has_option("iommu", "on")
            || c.has_option("iommu", "1")
        {
            v.extend(c.show("iommu"));
        }
        v
    }

    fn iommu_active(&self) -> Check {
        let id = "iommu.active";
        let groups_l = self.ev.listing(gather::IOMMU_GROUPS);
        if let Listing::Unreadable(e) = groups_l {
            return Check::new(
                id,
                Status::Skip,
                format!("/{} could not be listed: {e}", gather::IOMMU_GROUPS),
            )
            .ev(gather::IOMMU_GROUPS, format!("unreadable: {e}"));
        }
        let units = Fact::new(
            gather::IOMMU_CLASS,
            match self.ev.listing(gather::IOMMU_CLASS) {
                Listing::Entries(e) if !e.is_empty() => format!("units: {}", e.join(" ")),
                Listing::Entries(_) | Listing::Missing => {
                    "empty or absent: no IOMMU unit registered".to_string()
                }
                Listing::Unreadable(e) => format!("unreadable: {e}"),
            },
        );
        let groups = Fact::new(
            gather::IOMMU_GROUPS,
            match groups_l {
                Listing::Entries(e) if !e.is_empty() => format!("{} groups", e.len()),
                _ => "empty or absent: no IOMMU groups".to_string(),
            },
        );
        if self.iommu_on() {
            return Check::new(
                id,
                Status::Ok,
                format!(
                    "the kernel's IOMMU is active: {} groups{}",
                    self.groups.len(),
                    if self.units.is_empty() {
                        String::new()
                    } else {
                        format!(" (units: {})", self.units.join(", "))
                    }
                ),
            )
            .facts([units, groups]);
        }
        let enabling = self.enabling_params();
        let mut why = Vec::new();
        if !enabling.is_empty() {
            why.push(format!(
                "contradictory: `{}` is on the kernel command line, yet there are no groups",
                enabling.join(" ")
            ));
        }
        if !self.units.is_empty() {
            why.push(format!(
                "contradictory: IOMMU units ({}) are registered but no groups exist",
                self.units.join(", ")
            ));
        }
        let tables = entries(self.ev.listing(gather::ACPI_TABLES)).unwrap_or(&[]);
        let fw = tables
            .iter()
            .any(|t| t == "DMAR" || t == "IVRS" || t == "VIOT");
        if !fw && entries(self.ev.listing(gather::ACPI_TABLES)).is_some() {
            why.push("the firmware has no DMAR/IVRS table (see iommu.firmware)".to_string());
        } else if self.vendor == Vendor::Intel
            && self.kconf("CONFIG_INTEL_IOMMU") == Some(&Kconfig::NotSet)
            || self.vendor == Vendor::Amd
                && self.kconf("CONFIG_AMD_IOMMU") == Some(&Kconfig::NotSet)
        {
            why.push("the kernel is built without IOMMU support (see iommu.cmdline)".to_string());
        } else if fw {
            why.push("the firmware enables it, so the kernel command line is the likely cause (see iommu.cmdline)".to_string());
        }
        let summary = format!(
            "no IOMMU groups: the kernel's IOMMU is not active{}",
            if why.is_empty() {
                String::new()
            } else {
                format!("; {}", why.join("; "))
            }
        );
        let mut c = Check::new(id, Status::Fail, summary).facts([units, groups]);
        if !enabling.is_empty() {
            c.evidence
                .push(self.cmdline_fact(&["intel_iommu", "amd_iommu", "iommu"]));
        }
        c.fix("fix what iommu.firmware and iommu.cmdline report, reboot, and run `exliar check` again")
    }

    fn iommu_cmdline(&self) -> Check {
        let id = "iommu.cmdline";
        if let Some(c) = self.unreadable(id, "proc/cmdline") {
            return c;
        }
        let Some(cmd) = &self.cmdline else {
            return Check::new(id, Status::Skip, "/proc/cmdline could not be read");
        };
        let mut facts = vec![self.cmdline_fact(&["intel_iommu", "amd_iommu", "iommu"])];
        if let Some(cfg) = &self.boot.configured_cmdline {
            facts.push(Fact::new(
                &cfg.source,
                format!("configured for the next boot: {}", cfg.value),
            ));
        }
        // Hard blockers first.
        if cmd.has_option("iommu", "off") {
            return Check::new(id, Status::Fail, "`iommu=off` disables the IOMMU")
                .facts(facts)
                .fix(remedy::remove_param(&self.boot, "iommu=off"));
        }
        let key_src = self.ev.kernel_config.clone();
        match self.vendor {
            Vendor::Intel => {
                if cmd.has_option("intel_iommu", "off") {
                    return Check::new(
                        id,
                        Status::Fail,
                        "`intel_iommu=off` disables the Intel IOMMU",
                    )
                    .facts(facts)
                    .fix(remedy::remove_param(&self.boot, "intel_iommu=off"));
                }
                facts.extend(self.kconfig_fact("CONFIG_INTEL_IOMMU"));
                if self.kconf("CONFIG_INTEL_IOMMU") == Some(&Kconfig::NotSet) {
                    return Check::new(
                        id,
                        Status::Fail,
                        "this kernel is built without Intel IOMMU support (CONFIG_INTEL_IOMMU is not set)",
                    )
                    .facts(facts)
                    .fix("boot a kernel built with CONFIG_INTEL_IOMMU=y (every mainstream distribution kernel has it)");
                }
                facts.extend(self.kconfig_fact("CONFIG_INTEL_IOMMU_DEFAULT_ON"));
                let on = cmd.has_option("intel_iommu", "on");
                let default_on = self.kconf("CONFIG_INTEL_IOMMU_DEFAULT_ON");
                if on {
                    return self.persisted(
                        Check::new(id, Status::Ok, "`intel_iommu=on` is set").facts(facts),
                        "intel_iommu=on",
                        default_on == Some(&Kconfig::Yes),
                    );
                }
                match default_on {
                    Some(Kconfig::Yes) => Check::new(
                        id,
                        Status::Ok,
                        "no parameter needed: this kernel enables the Intel IOMMU by default (CONFIG_INTEL_IOMMU_DEFAULT_ON=y)",
                    )
                    .facts(facts),
                    Some(_) | None if key_src.is_some() => Check::new(
                        id,
                        Status::Fail,
                        "`intel_iommu=on` is missing, and this kernel does not enable the Intel IOMMU by default (CONFIG_INTEL_IOMMU_DEFAULT_ON is not set)",
                    )
                    .facts(facts)
                    .fix(remedy::add_params(&self.boot, &["intel_iommu=on"])),
                    _ if self.iommu_on() => Check::new(
                        id,
                        Status::Ok,
                        "no `intel_iommu=on`, but the IOMMU is active, so this kernel enables it by default (its config could not be read)",
                    )
                    .facts(facts)
                    .ev("boot/config-*", "kernel config not readable (nor /proc/config.gz)"),
                    _ => Check::new(
                        id,
                        Status::Warn,
                        "`intel_iommu=on` is missing and the kernel config could not be read to tell whether it is needed",
                    )
                    .facts(facts)
                    .ev("boot/config-*", "kernel config not readable (nor /proc/config.gz)")
                    .fix(remedy::add_params(&self.boot, &["intel_iommu=on"])),
                }
            }
            Vendor::Amd => {
                facts.extend(self.kconfig_fact("CONFIG_AMD_IOMMU"));
                if cmd.has_option("amd_iommu", "off") {
                    return Check::new(id, Status::Fail, "`amd_iommu=off` disables the AMD IOMMU")
                        .facts(facts)
                        .fix(remedy::remove_param(&self.boot, "amd_iommu=off"));
                }
                if self.kconf("CONFIG_AMD_IOMMU") == Some(&Kconfig::NotSet) {
                    return Check::new(
                        id,
                        Status::Fail,
                        "this kernel is built without AMD IOMMU support (CONFIG_AMD_IOMMU is not set)",
                    )
                    .facts(facts)
                    .fix("boot a kernel built with CONFIG_AMD_IOMMU=y (every mainstream distribution kernel has it)");
                }
                if cmd.has_option("amd_iommu", "on") {
                    return Check::new(
                        id,
                        Status::Warn,
                        "`amd_iommu=on` is not a valid value (the kernel ignores it; the AMD IOMMU is on by default): remove it",
                    )
                    .facts(facts)
                    .fix(remedy::remove_param(&self.boot, "amd_iommu=on"));
                }
                Check::new(
                    id,
                    Status::Ok,
                    "no parameter needed: the AMD IOMMU is on by default when the firmware enables it",
                )
                .facts(facts)
            }
            _ => Check::new(
                id,
                Status::Skip,
                "CPU vendor unknown: which IOMMU parameter applies cannot be told",
            )
            .facts(facts),
        }
    }

    /// An ok result for a parameter on the running command line that the
    /// configured one (for the next boot) lacks becomes a warning.
    fn persisted(&self, c: Check, param: &str, not_needed: bool) -> Check {
        let Some(next) = bootenv::configured_params(&self.boot) else {
            return c;
        };
        // `$kernelopts` (old Fedora BLS entries) and shell expansions: the
        // configured value is not known.
        if self
            .boot
            .configured_cmdline
            .as_ref()
            .is_some_and(|f| f.value.contains('$') || f.value.contains('`'))
        {
            return c;
        }
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        if next.has_option(k, v) || not_needed {
            return c;
        }
        let src = self
            .boot
            .configured_cmdline
            .as_ref()
            .map(|f| f.source.clone())
            .unwrap_or_default();
        let mut c = c;
        c.status = Status::Warn;
        c.summary = format!(
            "`{param}` is on the running command line but not in {src}: it will be gone after the next boot or kernel update"
        );
        c.fix(remedy::add_params(&self.boot, &[param]))
    }

    fn iommu_passthrough(&self) -> Check {
        let id = "iommu.passthrough";
        let Some(cmd) = &self.cmdline else {
            return self
                .unreadable(id, "proc/cmdline")
                .unwrap_or_else(|| Check::new(id, Status::Skip, "no command line"));
        };
        let mut facts = vec![self.cmdline_fact(&["iommu"])];
        facts.extend(self.kconfig_fact("CONFIG_IOMMU_DEFAULT_PASSTHROUGH"));
        if cmd.has_option("iommu", "pt") {
            Check::new(
                id,
                Status::Info,
                "`iommu=pt` is set: devices the host keeps bypass DMA translation (less overhead); devices given to a VM are still isolated",
            )
            .facts(facts)
        } else if self.kconf("CONFIG_IOMMU_DEFAULT_PASSTHROUGH") == Some(&Kconfig::Yes) {
            Check::new(
                id,
                Status::Info,
                "passthrough mode is this kernel's default (CONFIG_IOMMU_DEFAULT_PASSTHROUGH=y)",
            )
            .facts(facts)
        } else {
            Check::new(
                id,
                Status::Info,
                "`iommu=pt` is not set (optional: it only saves DMA-translation overhead for the host's own devices)",
            )
            .facts(facts)
            .fix(format!("optional: {}", remedy::add_params(&self.boot, &["iommu=pt"])))
        }
    }

    fn irq_remap(&self) -> Check {
        let id = "iommu.irq-remap";
        if !self.iommu_on() {
            return Check::new(
                id,
                Status::Skip,
                "no active IOMMU, so no interrupt remapping to check (see iommu.active)",
            );
        }
        if let Some(c) = self.unreadable(id, "proc/interrupts") {
            return c;
        }
        let text = self.ev.text_of("proc/interrupts").unwrap_or_default();
        let chips = parse::irq_chips(&text);
        let mut facts = vec![Fact::new(
            "proc/interrupts",
            if chips.is_empty() {
                "no MSI or IO-APIC interrupt chips listed".to_string()
            } else {
                format!(
                    "interrupt chips: {}",
                    chips.iter().cloned().collect::<Vec<_>>().join(" ")
                )
            },
        )];
        let unsafe_ok = self
            .ev
            .text_of(gather::ALLOW_UNSAFE_INTERRUPTS)
            .map(|t| t.trim().to_string());
        if let Some(u) = &unsafe_ok {
            facts.push(Fact::new(gather::ALLOW_UNSAFE_INTERRUPTS, u.clone()));
        }
        let cmd_unsafe = self.cmdline.as_ref().is_some_and(|c| {
            c.get("vfio_iommu_type1.allow_unsafe_interrupts")
                .flatten()
                .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("y"))
        });
        if cmd_unsafe {
            facts.push(self.cmdline_fact(&["vfio_iommu_type1.allow_unsafe_interrupts"]));
        }
        if self
            .cmdline
            .as_ref()
            .is_some_and(|c| c.has_option("intremap", "off"))
        {
            facts.push(self.cmdline_fact(&["intremap"]));
            return Check::new(
                id,
                Status::Fail,
                "`intremap=off` disables interrupt remapping",
            )
            .facts(facts)
            .fix(remedy::remove_param(&self.boot, "intremap=off"));
        }
        if chips.iter().any(|c| c.starts_with("IR-")) {
            return Check::new(
                id,
                Status::Ok,
                "interrupt remapping is active (IR- interrupt chips)",
            )
            .facts(facts);
        }
        if chips.is_empty() {
            return Check::new(
                id,
                Status::Skip,
                "/proc/interrupts lists no MSI or IO-APIC interrupts to judge by",
            )
            .facts(facts);
        }
        let allowed = cmd_unsafe || unsafe_ok.as_deref().is_some_and(|v| v == "Y" || v == "1");
        if allowed {
            Check::new(
                id,
                Status::Warn,
                "interrupt remapping is not active; allow_unsafe_interrupts lets VFIO work without it (a guest could inject interrupts)",
            )
            .facts(facts)
        } else {
            Check::new(
                id,
                Status::Fail,
                "interrupt remapping is not active: VFIO refuses to assign devices without it",
            )
            .facts(facts)
            .fix("enable interrupt remapping / x2APIC in the firmware; as a last resort `options vfio_iommu_type1 allow_unsafe_interrupts=1` in /etc/modprobe.d/vfio.conf")
        }
    }

    // ----- kernel --------------------------------------------------------

    fn kernel_version(&self) -> Check {
        let id = "kernel.version";
        if let Some(c) = self.unreadable(id, "proc/sys/kernel/osrelease") {
            return c;
        }
        let r = self.release.clone().unwrap_or_default();
        let mut c = Check::new(id, Status::Info, format!("Linux {r}"))
            .ev("proc/sys/kernel/osrelease", r.clone());
        if let Some(src) = &self.ev.kernel_config {
            c = c.ev(src, "kernel configuration read here");
        }
        if self.version.is_some_and(|v| v < (4, 1, 0)) {
            c.status = Status::Warn;
            c.summary = format!(
                "Linux {r} is older than 4.1: vfio-pci boot-time binding needs a newer kernel"
            );
        }
        c
    }

    fn vfio_modules(&self) -> Check {
        let id = "kernel.vfio-modules";
        let mut want = vec!["vfio", "vfio_pci", "vfio_iommu_type1"];
        let old = self.version.map(|v| v < (6, 2, 0));
        if old == Some(true) {
            want.push("vfio_virqfd");
        }
        let mut facts = Vec::new();
        let mut missing = Vec::new();
        let mut unknown = Vec::new();
        let mut how = BTreeSet::new();
        for m in &want {
            let (a, f) = self.module(m);
            facts.push(f);
            match a {
                Avail::Absent => missing.push(*m),
                Avail::Unknown => unknown.push(*m),
                Avail::Builtin => {
                    how.insert("built in");
                }
                Avail::Module => {
                    how.insert("modules");
                }
                Avail::Loaded => {
                    how.insert("loaded");
                }
            }
        }
        if old == Some(false) {
            facts.push(Fact::new(
                "proc/sys/kernel/osrelease",
                "6.2 or newer: vfio_virqfd is part of vfio, not needed",
            ));
        }
        if let Some(Kconfig::NotSet) = self.kconf("CONFIG_MODULES") {
            facts.extend(self.kconfig_fact("CONFIG_MODULES"));
        }
        if !missing.is_empty() {
            return Check::new(
                id,
                Status::Fail,
                format!("not available in this kernel: {}", missing.join(", ")),
            )
            .facts(facts)
            .fix("boot a kernel built with CONFIG_VFIO, CONFIG_VFIO_PCI and CONFIG_VFIO_IOMMU_TYPE1 (y or m), as distribution kernels are");
        }
        if !unknown.is_empty() && unknown.len() == want.len() {
            return Check::new(id, Status::Skip, "no modules.dep, modules.builtin, kernel config or /sys/module entry tells whether VFIO is available").facts(facts);
        }
        if !unknown.is_empty() {
            return Check::new(
                id,
                Status::Warn,
                format!(
                    "could not tell whether these are available: {}",
                    unknown.join(", ")
                ),
            )
            .facts(facts);
        }
        Check::new(
            id,
            Status::Ok,
            format!(
                "{} available ({})",
                want.join(", "),
                how.into_iter().collect::<Vec<_>>().join(", ")
            ),
        )
        .facts(facts)
    }

    // ----- boot environment ----------------------------------------------

    fn boot_firmware(&self) -> Check {
        let id = "boot.firmware";
        match self.boot.firmware {
            Firmware::Uefi => {
                let mut c = Check::new(id, Status::Ok, "booted through UEFI").ev(bootenv::EFI_DIR, "present");
                if let Some(s) = self.ev.text_of("sys/firmware/efi/fw_platform_size") {
                    c = c.ev("sys/firmware/efi/fw_platform_size", format!("{}-bit", s.trim()));
                }
                c
            }
            Firmware::Bios => Check::new(
                id,
                Status::Info,
                "legacy BIOS boot, or a kernel started directly by a hypervisor (no /sys/firmware/efi)",
            )
            .ev(bootenv::EFI_DIR, "absent"),
        }
    }

    fn secure_boot(&self) -> Check {
        let id = "boot.secure-boot";
        if self.boot.firmware != Firmware::Uefi {
            return Check::new(id, Status::Skip, "not booted through UEFI: no Secure Boot")
                .ev(bootenv::EFI_DIR, "absent");
        }
        let p = bootenv::efivar_path("SecureBoot", bootenv::GLOBAL_GUID);
        match self.ev.content(&p) {
            Content::Unreadable(e) => Check::new(id, Status::Skip, format!("the SecureBoot variable could not be read: {e}")).ev(&p, format!("unreadable: {e}")),
            Content::Missing => Check::new(id, Status::Info, "no SecureBoot EFI variable: the firmware does not support Secure Boot (or efivarfs is not mounted)").ev(&p, "missing"),
            Content::Data(b) => {
                let on = parse::efivar_bool(b);
                let mut c = match on {
                    Some(true) => {
                        let needs_modules = self.analysis.and_then(target_gpu).is_some_and(|g| g.quirks().iter().any(|q| q == "amd-reset-bug"));
                        let limine = self.boot.loader == Some(Loader::Limine);
                        let mut s = "Secure Boot is on: VFIO itself works, but out-of-tree modules (vendor-reset, kvmfr) must be signed with an enrolled key (MOK)".to_string();
                        if limine {
                            s.push_str("; Limine: an enrolled config checksum must be renewed after every limine.conf edit");
                        }
                        let mut c = Check::new(id, if needs_modules || limine { Status::Warn } else { Status::Info }, s).ev(&p, "1 (enabled)");
                        if needs_modules {
                            c = c.fix("sign vendor-reset with your MOK (DKMS does it when a MOK is enrolled: `sudo mokutil --import /var/lib/dkms/mok.pub`)");
                        }
                        c
                    }
                    Some(false) => Check::new(id, Status::Ok, "Secure Boot is off").ev(&p, "0 (disabled)"),
                    None => Check::new(id, Status::Skip, "the SecureBoot variable is malformed").ev(&p, format!("{} bytes", b.len())),
                };
                let sm = bootenv::efivar_path("SetupMode", bootenv::GLOBAL_GUID);
                let setup = match self.ev.content(&sm) {
                    Content::Data(b) => parse::efivar_bool(b),
                    _ => None,
                };
                if let Some(v) = setup {
                    c = c.ev(&sm, if v { "1 (setup mode: no platform key enrolled)" } else { "0 (user mode)" });
                }
                c
            }
        }
    }

    fn boot_loader(&self) -> Check {
        let id = "boot.loader";
        let b = &self.boot;
        let mut facts = b.loader_evidence.clone();
        facts.extend(b.unreadable.iter().cloned());
        if let Some(cfg) = &b.configured_cmdline {
            facts.push(Fact::new(
                &cfg.source,
                format!("kernel parameters configured: {}", cfg.value),
            ));
        }
        let how = b.cmdline_source.as_ref().map(source_label);
        let Some(loader) = b.loader else {
            if b.cmdline_source.is_some() {
                // NixOS / ostree without a detectable loader.
                return Check::new(
                    id,
                    Status::Ok,
                    format!(
                        "kernel parameters are managed by {}",
                        how.unwrap_or_default()
                    ),
                )
                .facts(facts);
            }
            if !b.unreadable.is_empty() {
                return Check::new(
                    id,
                    Status::Skip,
                    format!(
                        "no boot loader identified; some files could not be read ({})",
                        b.unreadable
                            .iter()
                            .map(|f| f.source.clone())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .facts(facts);
            }
            let direct = self.ev.listing("boot") == &Listing::Entries(Vec::new())
                || self.ev.listing("boot") == &Listing::Missing;
            return Check::new(
                id,
                Status::Warn,
                format!(
                    "no boot loader configuration found{}: kernel parameters cannot be changed by exliar",
                    if direct { " and /boot holds no kernel (the kernel is probably started directly by a hypervisor)" } else { "" }
                ),
            )
            .facts(facts)
            .fix("add kernel parameters wherever this machine's kernel command line is set");
        };
        let label = match (&b.loader_info, loader) {
            (Some(li), Loader::SystemdBoot | Loader::Other) => {
                format!("{} (LoaderInfo: {li})", loader.label())
            }
            _ => loader.label().to_string(),
        };
        let mut summary = format!(
            "{label}{}",
            how.map(|h| format!("; kernel parameters: {h}"))
                .unwrap_or_default()
        );
        let status = if b.cmdline_source.is_some() {
            Status::Ok
        } else {
            Status::Warn
        };
        if b.cmdline_source.is_none() {
            summary.push_str("; exliar does not know where its kernel parameters are kept");
        }
        if !b.conflicts.is_empty() {
            // `exliar plan`/`apply` refuse to guess which configuration
            // the kernel parameters go to: not ready until told.
            summary = format!(
                "{summary}; {}; exliar plan/apply will not place kernel parameters until told which boot loader to edit",
                b.conflicts.join("; ")
            );
            return Check::new(id, Status::Fail, summary).facts(facts).fix(format!(
                "pass --bootloader NAME to exliar plan/apply (or set EXLIAR_BOOTLOADER=NAME), NAME the boot loader that really boots this system: {}",
                crate::plan::isolate::BootloaderChoice::names()
            ));
        }
        Check::new(id, status, summary).facts(facts)
    }

    fn boot_initramfs(&self) -> Check {
        let id = "boot.initramfs";
        let b = &self.boot;
        let facts = b.initramfs_evidence.clone();
        match b.initramfs {
            Some(g) => {
                let mut c = Check::new(
                    id,
                    Status::Ok,
                    format!("{} (rebuild with `{}`)", g.label(), g.regenerate()),
                )
                .facts(facts);
                if !b.initramfs_conflicts.is_empty() {
                    c.status = Status::Warn;
                    c.summary = format!("{}; {}", c.summary, b.initramfs_conflicts.join("; "));
                }
                c
            }
            None => Check::new(
                id,
                Status::Warn,
                "no initramfs generator found (mkinitcpio, dracut, initramfs-tools, booster): vfio-pci cannot be loaded early by exliar",
            )
            .facts(facts)
            .ev("etc", "no mkinitcpio.conf, dracut.conf(.d), initramfs-tools/ or booster.yaml; no generator binary")
            .fix("vfio-pci must then be built into the kernel or loaded by whatever builds this machine's initramfs"),
        }
    }

    fn boot_init(&self) -> Check {
        let id = "boot.init";
        if let Some(c) = self.unreadable(id, "proc/1/comm") {
            return c;
        }
        let comm = self
            .ev
            .text_of("proc/1/comm")
            .unwrap_or_default()
            .trim()
            .to_string();
        let mut facts = vec![Fact::new("proc/1/comm", comm.clone())];
        if let Some(Some(t)) = self.ev.links.get("sbin/init") {
            facts.push(Fact::new("sbin/init", format!("link to {t}")));
        }
        let known = match comm.as_str() {
            "systemd" => Some("systemd"),
            "openrc-init" => Some("OpenRC"),
            "runit" | "runit-init" => Some("runit"),
            "s6-svscan" => Some("s6"),
            "dinit" => Some("dinit"),
            "init" => Some("a SysV-style init"),
            _ => None,
        };
        match known {
            Some("systemd") => Check::new(id, Status::Ok, "systemd").facts(facts),
            Some(k) => Check::new(
                id,
                Status::Info,
                format!("{k} (PID 1 is {comm}): libvirt services are started with its own tools"),
            )
            .facts(facts),
            None => {
                let mut s = format!("PID 1 is `{comm}`, not a known init system");
                if let Some(Some(t)) = self.ev.links.get("sbin/init") {
                    s.push_str(&format!(
                        " (though /sbin/init links to {t}): a container or sandbox"
                    ));
                }
                Check::new(id, Status::Info, s).facts(facts)
            }
        }
    }

    fn os_distribution(&self) -> Check {
        let id = "os.distribution";
        let Some((src, text)) = self.ev.os_release() else {
            if let Some(c) = self.unreadable(id, "etc/os-release")
                && matches!(self.ev.content("etc/os-release"), Content::Unreadable(_))
            {
                return c;
            }
            return Check::new(
                id,
                Status::Warn,
                "no os-release file: the distribution is unknown, so remedies are generic",
            )
            .ev("etc/os-release", "missing")
            .ev("usr/lib/os-release", "missing");
        };
        let pretty =
            os_release_value(&text, "PRETTY_NAME").unwrap_or_else(|| "unnamed".to_string());
        let fact = Fact::new(
            src,
            format!(
                "PRETTY_NAME={pretty}, ID={}{}",
                self.os.id.as_deref().unwrap_or("?"),
                if self.os.id_like.is_empty() {
                    String::new()
                } else {
                    format!(", ID_LIKE={}", self.os.id_like.join(" "))
                }
            ),
        );
        if self.family == Family::Unknown {
            Check::new(
                id,
                Status::Info,
                format!("{pretty}: not a distribution family exliar knows; remedies are generic"),
            )
            .facts([fact])
        } else {
            Check::new(
                id,
                Status::Ok,
                format!("{pretty} (package manager: {})", self.family.label()),
            )
            .facts([fact])
        }
    }

    fn os_immutable(&self) -> Check {
        let id = "os.immutable";
        match self.boot.immutable {
            Some(Immutable::Nixos) => Check::new(
                id,
                Status::Warn,
                "NixOS: the system is built from its configuration; kernel parameters, initrd modules and modprobe options go into configuration.nix (boot.kernelParams, boot.initrd.kernelModules, boot.extraModprobeConfig), not into /etc files",
            )
            .ev("etc/NIXOS", "present")
            .fix("put the settings in a NixOS module (e.g. /etc/nixos/vfio.nix, added to `imports`), then `sudo nixos-rebuild switch`"),
            Some(Immutable::Ostree) => Check::new(
                id,
                Status::Warn,
                "an ostree-based (atomic) system: /usr is read-only; kernel parameters go through `rpm-ostree kargs`, initramfs changes through `rpm-ostree initramfs`",
            )
            .ev("run/ostree-booted", "present")
            .fix("sudo rpm-ostree kargs --append=... ; sudo rpm-ostree initramfs --enable --arg=--add-drivers --arg=\"vfio vfio_iommu_type1 vfio_pci\""),
            None => Check::new(id, Status::Ok, "not an immutable or atomic system")
                .ev("etc/NIXOS", "absent")
                .ev("run/ostree-booted", "absent"),
        }
    }

    // ----- virtualization stack -------------------------------------------

    fn virt_qemu(&self) -> Check {
        let id = "virt.qemu";
        match self.tool("qemu") {
            Some(p) => Check::new(id, Status::Ok, format!("QEMU found: /{p}")).ev(&p, "present"),
            None => Check::new(
                id,
                Status::Fail,
                "QEMU (qemu-system-x86_64) is not installed",
            )
            .ev("usr/bin/qemu-system-x86_64", "absent")
            .fix(remedy::install(self.family, Package::Qemu)),
        }
    }

    fn libvirt_installed(&self) -> (Option<String>, Option<String>) {
        let virsh = self.tool("virsh");
        let daemon = self.tool("libvirtd").or_else(|| self.tool("virtqemud"));
        (virsh, daemon)
    }

    fn virt_libvirt(&self) -> Check {
        let id = "virt.libvirt";
        let (virsh, daemon) = self.libvirt_installed();
        let socket = self.first_present(gather::LIBVIRT_SOCKETS);
        let mut facts = vec![
            Fact::new(
                virsh.as_deref().unwrap_or("usr/bin/virsh"),
                if virsh.is_some() { "present" } else { "absent" },
            ),
            Fact::new(
                daemon.as_deref().unwrap_or("usr/sbin/libvirtd"),
                if daemon.is_some() {
                    "present"
                } else {
                    "absent (nor virtqemud)"
                },
            ),
        ];
        facts.push(Fact::new(
            socket.as_deref().unwrap_or(gather::LIBVIRT_SOCKETS[0]),
            if socket.is_some() {
                "present: the daemon (or its socket unit) is running"
            } else {
                "absent: the daemon is not running"
            },
        ));
        match (&virsh, &daemon, &socket) {
            (Some(_), Some(_), Some(_)) => Check::new(id, Status::Ok, "libvirt installed and its daemon socket is up").facts(facts),
            (_, Some(d), None) => {
                let unit = if d.ends_with("virtqemud") { "virtqemud.socket" } else { "libvirtd.socket" };
                let fix = if self.family == Family::Nixos {
                    "set `virtualisation.libvirtd.enable = true;`, then `sudo nixos-rebuild switch`".to_string()
                } else {
                    format!("sudo systemctl enable --now {unit}")
                };
                Check::new(id, Status::Warn, "libvirt is installed but its daemon is not running (no socket)").facts(facts).fix(fix)
            }
            (None, Some(_), Some(_)) => Check::new(id, Status::Warn, "the libvirt daemon runs but virsh is not installed")
                .facts(facts)
                .fix(remedy::install(self.family, Package::Libvirt)),
            _ => Check::new(id, Status::Warn, "libvirt is not installed (optional: plain QEMU works; virt-manager and virsh need libvirt)")
                .facts(facts)
                .fix(remedy::install(self.family, Package::Libvirt)),
        }
    }

    fn virt_ovmf(&self) -> Check {
        let id = "virt.ovmf";
        let found: Vec<&str> = gather::OVMF_FILES
            .iter()
            .copied()
            .filter(|p| self.present(p))
            .collect();
        let descriptors = entries(self.ev.listing(gather::FIRMWARE_DESCRIPTORS))
            .map(<[String]>::to_vec)
            .unwrap_or_default();
        let mut facts: Vec<Fact> = found.iter().map(|p| Fact::new(p, "present")).collect();
        if !descriptors.is_empty() {
            facts.push(Fact::new(
                gather::FIRMWARE_DESCRIPTORS,
                format!("descriptors: {}", descriptors.join(" ")),
            ));
        }
        if !found.is_empty() {
            return Check::new(
                id,
                Status::Ok,
                format!("UEFI guest firmware: /{}", found[0]),
            )
            .facts(facts);
        }
        if !descriptors.is_empty() {
            return Check::new(
                id,
                Status::Ok,
                "UEFI guest firmware is described in /usr/share/qemu/firmware",
            )
            .facts(facts);
        }
        Check::new(
            id,
            Status::Warn,
            "no OVMF/edk2 UEFI firmware for guests (modern GPUs need a UEFI guest)",
        )
        .ev("usr/share/OVMF", "no OVMF_CODE* file at any known path")
        .fix(remedy::install(self.family, Package::Ovmf))
    }

    fn virt_swtpm(&self) -> Check {
        let id = "virt.swtpm";
        match self.tool("swtpm") {
            Some(p) => Check::new(id, Status::Ok, format!("swtpm found: /{p}")).ev(&p, "present"),
            None => Check::new(
                id,
                Status::Info,
                "swtpm is not installed (needed only for a guest TPM, e.g. Windows 11)",
            )
            .ev("usr/bin/swtpm", "absent")
            .fix(remedy::install(self.family, Package::Swtpm)),
        }
    }

    fn libvirt_access(&self) -> Check {
        let id = "virt.libvirt-access";
        let (virsh, daemon) = self.libvirt_installed();
        if virsh.is_none() && daemon.is_none() {
            return Check::new(
                id,
                Status::Skip,
                "libvirt is not installed (see virt.libvirt)",
            );
        }
        if !self.ev.live {
            return Check::new(
                id,
                Status::Skip,
                "not the live host: the current user's access is judged only on the live host",
            );
        }
        let user = self
            .ev
            .text_of("proc/self/status")
            .and_then(|t| parse::proc_status_user(&t));
        let Some(u) = user else {
            return self.unreadable(id, "proc/self/status").unwrap_or_else(|| {
                Check::new(id, Status::Skip, "the current user could not be told")
            });
        };
        let mut facts = vec![Fact::new(
            "proc/self/status",
            format!("uid {}, groups {:?}", u.uid, u.groups),
        )];
        if u.uid == 0 {
            return Check::new(
                id,
                Status::Ok,
                "running as root: the system libvirt is available",
            )
            .facts(facts);
        }
        let group = self
            .ev
            .text_of("etc/group")
            .and_then(|t| parse::group_entry(&t, "libvirt"));
        if let Some((gid, _)) = &group {
            facts.push(Fact::new("etc/group", format!("libvirt: gid {gid}")));
        }
        let in_group = group
            .as_ref()
            .is_some_and(|(gid, _)| u.groups.contains(gid) || u.gid == *gid);
        let sock = gather::LIBVIRT_SOCKETS
            .iter()
            .find_map(|s| self.ev.access.get(*s).map(|a| (*s, a)));
        if let Some((s, a)) = sock {
            facts.push(Fact::new(
                s,
                format!(
                    "access(R_OK|W_OK): {}",
                    match a {
                        Ok(true) => "allowed".to_string(),
                        Ok(false) => "denied".to_string(),
                        Err(e) => e.clone(),
                    }
                ),
            ));
        }
        if in_group {
            Check::new(id, Status::Ok, "the current user is in the libvirt group").facts(facts)
        } else if matches!(sock, Some((_, Ok(true)))) {
            Check::new(id, Status::Ok, "the current user may open the libvirt socket (polkit may still ask for authentication)").facts(facts)
        } else {
            Check::new(id, Status::Warn, "the current user is not in the libvirt group: `virsh -c qemu:///system` will need sudo or a polkit prompt")
                .facts(facts)
                .fix("sudo usermod -aG libvirt $USER (then log in again)")
        }
    }

    // ----- GPU -----------------------------------------------------------

    fn gpu_target(&self) -> Check {
        let id = "gpu.target";
        let a = match self.analysis {
            None => {
                return self
                    .target()
                    .err()
                    .unwrap_or_else(|| Check::new(id, Status::Skip, "no inventory"));
            }
            Some(a) => a,
        };
        let r = &a.recommendation;
        let name = |addr| {
            a.gpus
                .iter()
                .find(|g| g.address == addr)
                .map(|g| format!("{addr} ({})", g.name))
                .unwrap_or_else(|| addr.to_string())
        };
        let facts: Vec<Fact> = r
            .reasons
            .iter()
            .skip(if r.mode == Mode::Split { 0 } else { 1 })
            .take(3)
            .map(|x| Fact::new("exliar scan (recommendation)", x.clone()))
            .collect();
        match (r.mode, r.passthrough, r.host) {
            (Mode::Split, Some(p), host) => Check::new(
                id,
                Status::Ok,
                format!(
                    "{} is recommended for passthrough{}",
                    name(p),
                    host.map(|h| format!("; the host keeps {}", name(h))).unwrap_or_default()
                ),
            )
            .facts(facts),
            (Mode::SingleGpu, _, Some(h)) => Check::new(
                id,
                Status::Fail,
                format!("{} is the only GPU: binding it to vfio-pci at boot would leave the host without a display (the GPU checks below are about this card, for single-GPU handover)", name(h)),
            )
            .facts(facts)
            .fix("use single-GPU handover (the host releases the card while the VM runs), or add a second GPU (or use the integrated one) for the host"),
            _ => Check::new(
                id,
                Status::Fail,
                format!("no GPU can be passed through: {}", r.reasons.first().cloned().unwrap_or_else(|| "see `exliar scan`".to_string())),
            )
            .facts(facts)
            .fix("see `exliar scan` for the GPUs and why none can be passed through"),
        }
    }

    fn gpu_framebuffer(&self) -> Check {
        let id = "gpu.framebuffer";
        let g = match self.gpu_skip(id) {
            Ok(g) => g,
            Err(c) => return c,
        };
        let mut facts = Vec::new();
        let mut active = Vec::new();
        for d in gather::FRAMEBUFFER_DRIVERS {
            if let Listing::Entries(e) = self.ev.listing(d)
                && !e.is_empty()
            {
                facts.push(Fact::new(d, format!("bound: {}", e.join(" "))));
                active.push(d.rsplit('/').next().unwrap_or(d).to_string());
            }
        }
        if let Some(fb) = self.ev.text_of("proc/fb") {
            let lines: Vec<&str> = fb
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            facts.push(Fact::new(
                "proc/fb",
                if lines.is_empty() {
                    "empty".to_string()
                } else {
                    lines.join("; ")
                },
            ));
            for l in &lines {
                let n = l.to_ascii_lowercase();
                let kind = if n.contains("efi vga") || n.contains("efifb") {
                    Some("efifb")
                } else if n.contains("vesa") {
                    Some("vesafb")
                } else if n.contains("simple") {
                    Some("simpledrm/simplefb")
                } else {
                    None
                };
                if let Some(k) = kind
                    && !active.iter().any(|a| a == k)
                {
                    active.push(k.to_string());
                }
            }
        }
        if !g.boot_display {
            return Check::new(
                id,
                Status::Ok,
                format!(
                    "{} is not the boot display, so no firmware framebuffer sits on it",
                    g.address
                ),
            )
            .facts(facts);
        }
        let how = match g.boot_display_evidence {
            Some(crate::analyze::BootEvidence::BootVga) => "boot_vga=1",
            _ => "inferred",
        };
        facts.push(Fact::new(
            &format!("sys/bus/pci/devices/{}/boot_vga", g.address),
            how,
        ));
        if active.is_empty() {
            return Check::new(
                id,
                Status::Ok,
                format!(
                    "{} is the boot display, but no firmware framebuffer driver holds it now",
                    g.address
                ),
            )
            .facts(facts);
        }
        let simple = active.iter().any(|a| a.contains("simple"));
        let params: &[&str] = if simple {
            &["initcall_blacklist=sysfb_init"]
        } else {
            &["video=efifb:off"]
        };
        Check::new(
            id,
            Status::Warn,
            format!(
                "{} is the boot display and a firmware framebuffer ({}) holds its memory: vfio-pci will fail to reserve BAR 0 until it is released",
                g.address,
                active.join(", ")
            ),
        )
        .facts(facts)
        .fix(format!(
            "{} (or make another GPU the boot display in the firmware setup)",
            remedy::add_params(&self.boot, params)
        ))
    }

    fn gpu_reset(&self) -> Check {
        let id = "gpu.reset";
        let g = match self.gpu_skip(id) {
            Ok(g) => g,
            Err(c) => return c,
        };
        let rm = format!("sys/bus/pci/devices/{}/reset_method", g.address);
        let methods = g.reset_methods().map(<[String]>::to_vec);
        let mut facts = vec![Fact::new(
            &rm,
            match &methods {
                Some(m) if m.is_empty() => "empty: no reset method".to_string(),
                Some(m) => m.join(" "),
                None => "not known (no reset_method attribute; kernels before 5.15)".to_string(),
            },
        )];
        let quirk = g.quirks().iter().any(|q| q == "amd-reset-bug");
        if quirk {
            facts.push(Fact::new(
                "exliar GPU database (data/gpu-db.toml)",
                format!(
                    "{} matches quirk amd-reset-bug (needs vendor-reset)",
                    g.address
                ),
            ));
            let (a, f) = self.module("vendor_reset");
            facts.push(f);
            let device_specific = methods
                .as_ref()
                .is_some_and(|m| m.first().is_some_and(|x| x == "device_specific"));
            let set_method = format!(
                "echo device_specific | sudo tee /sys/bus/pci/devices/{}/reset_method (at every boot, e.g. from a udev rule)",
                g.address
            );
            return match a {
                Avail::Loaded | Avail::Builtin if device_specific || methods.is_none() => {
                    Check::new(id, Status::Ok, "vendor-reset is loaded and handles this card's reset").facts(facts)
                }
                Avail::Loaded | Avail::Builtin => Check::new(
                    id,
                    Status::Warn,
                    "vendor-reset is loaded, but the card's reset_method does not start with device_specific, so vendor-reset is not used",
                )
                .facts(facts)
                .fix(set_method),
                Avail::Module => Check::new(id, Status::Warn, "vendor-reset is installed but not loaded")
                    .facts(facts)
                    .fix(format!("echo vendor-reset | sudo tee /etc/modules-load.d/vendor-reset.conf; sudo modprobe vendor-reset; {set_method}")),
                _ => {
                    let install = match self.family {
                        Family::Arch => "install vendor-reset-dkms-git from the AUR".to_string(),
                        Family::Nixos => "add `boot.extraModulePackages = [ config.boot.kernelPackages.vendor-reset ];` and `boot.kernelModules = [ \"vendor-reset\" ];`".to_string(),
                        _ => "build and install vendor-reset with DKMS (https://github.com/gnif/vendor-reset)".to_string(),
                    };
                    let sb = if self.boot.secure_boot == Some(true) { " (Secure Boot is on: the module must be signed with an enrolled MOK)" } else { "" };
                    Check::new(
                        id,
                        Status::Warn,
                        format!("{} has the AMD reset bug and vendor-reset is not installed: the card may work only for the first VM start after each host boot", g.address),
                    )
                    .facts(facts)
                    .fix(format!("{install}{sb}; load it at boot; {set_method}"))
                }
            };
        }
        match methods {
            Some(m) if m.is_empty() => Check::new(
                id,
                Status::Warn,
                format!("{} has no reset method: it cannot be reset between VM runs (reboot the host to reuse it)", g.address),
            )
            .facts(facts),
            Some(m) => Check::new(id, Status::Ok, format!("reset methods: {}", m.join(" "))).facts(facts),
            None => Check::new(id, Status::Info, "the card's reset methods are not known (no reset_method attribute)").facts(facts),
        }
    }

    fn gpu_driver(&self) -> Check {
        let id = "gpu.driver";
        let g = match self.gpu_skip(id) {
            Ok(g) => g,
            Err(c) => return c,
        };
        let f = Fact::new(
            &format!("sys/bus/pci/devices/{}/driver", g.address),
            g.driver.clone().unwrap_or_else(|| "none".to_string()),
        );
        match g.driver.as_deref() {
            Some("vfio-pci") => Check::new(id, Status::Ok, format!("{} is bound to vfio-pci", g.address)).facts([f]),
            None => Check::new(id, Status::Ok, format!("{} has no driver bound: vfio-pci can take it", g.address)).facts([f]),
            Some(d) => Check::new(
                id,
                Status::Info,
                format!("{} is bound to {d} now; for boot-time passthrough vfio-pci must claim it before {d} loads", g.address),
            )
            .facts([f]),
        }
    }

    /// A manual vfio-pci configuration, evaluated as the boot applies it.
    fn gpu_vfio_ids(&self) -> Check {
        use crate::plan::effective;
        let id = "gpu.vfio-ids";
        let g = match self.gpu_skip(id) {
            Ok(g) => g,
            Err(c) => return c,
        };
        let mut modprobe_d: Vec<(String, String)> = Vec::new();
        for dir in gather::MODPROBE_DIRS {
            for n in entries(self.ev.listing(dir)).unwrap_or_default() {
                if let Some(t) = self.ev.text_of(&format!("{dir}/{n}")) {
                    modprobe_d.push((format!("/{dir}/{n}"), t));
                }
            }
        }
        let cmdline: Vec<String> = self
            .ev
            .text_of("proc/cmdline")
            .map(|t| t.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let tools = (self.boot.initramfs == Some(bootenv::Initramfs::InitramfsTools))
            .then(|| self.ev.text_of("etc/initramfs-tools/modules"))
            .flatten();
        let builtin = self
            .builtin
            .as_ref()
            .is_some_and(|b| b.contains_key("vfio_pci") || b.contains_key("vfio-pci"));
        let eff = effective::evaluate(&effective::Inputs {
            modprobe_d: &modprobe_d,
            cmdline: &cmdline,
            initramfs_modules: tools.as_deref(),
            builtin,
        });
        let Some(e) = eff.ids() else {
            return Check::new(
                id,
                Status::Ok,
                "no vfio-pci `ids=` is configured: nothing binds by id at boot",
            );
        };
        let ids_value = format!("ids={}", e.ids.join(","));
        let fact = match &e.origin {
            effective::Origin::Modprobe { file, line } => Fact::new(
                file.trim_start_matches('/'),
                format!("line {line}: {ids_value}"),
            ),
            effective::Origin::Cmdline { param } => Fact::new("proc/cmdline", param.clone()),
            effective::Origin::InitramfsModules { line } => Fact::new(
                "etc/initramfs-tools/modules",
                format!("line {line}: vfio_pci {ids_value}"),
            ),
        };
        let claimed = effective::claimed(&e.ids, &self.ev.pci_ids, &[]);
        let others: Vec<crate::model::PciAddress> = self
            .analysis
            .map(|a| {
                a.gpus
                    .iter()
                    .filter(|o| o.address != g.address)
                    .flat_map(|o| o.functions.iter().copied())
                    .filter(|f| !g.functions.contains(f))
                    .collect()
            })
            .unwrap_or_default();
        let v = effective::Verdict::judge(&g.functions, &others, &claimed);
        let list = |a: &[crate::model::PciAddress]| {
            a.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let id_of = |a: &crate::model::PciAddress| {
            self.ev
                .pci_ids
                .iter()
                .find(|(x, _)| x == a)
                .map(|(_, i)| i.to_string())
                .unwrap_or_else(|| "?".to_string())
        };
        if !v.extra.is_empty() {
            return Check::new(
                id,
                Status::Fail,
                format!(
                    "vfio-pci's `ids={}` (from {}) also claims {} of another GPU at boot: the host would lose it",
                    e.ids.join(","),
                    e.origin,
                    list(&v.extra)
                ),
            )
            .facts([fact])
            .fix(format!(
                "take {} out of that `ids=` and bind {} by address instead (`exliar plan --by-address`)",
                v.extra.iter().map(id_of).collect::<Vec<_>>().join(","),
                g.address
            ));
        }
        if v.missing.len() == g.functions.len() {
            return Check::new(
                id,
                Status::Info,
                format!(
                    "vfio-pci's `ids={}` (from {}) claims none of {}'s functions",
                    e.ids.join(","),
                    e.origin,
                    g.address
                ),
            )
            .facts([fact]);
        }
        if !v.missing.is_empty() {
            return Check::new(
                id,
                Status::Warn,
                format!(
                    "vfio-pci's `ids={}` (from {}) leaves {} of {} to other drivers: the card goes to the guest incomplete",
                    e.ids.join(","),
                    e.origin,
                    list(&v.missing),
                    g.address
                ),
            )
            .facts([fact])
            .fix(format!(
                "add {} to that `ids=` (or run `exliar plan`, which merges it)",
                v.missing.iter().map(id_of).collect::<Vec<_>>().join(",")
            ));
        }
        Check::new(
            id,
            Status::Ok,
            format!(
                "vfio-pci's `ids={}` (from {}) claims every function of {}",
                e.ids.join(","),
                e.origin,
                g.address
            ),
        )
        .facts([fact])
    }

    fn gpu_kvmfr(&self) -> Check {
        let id = "gpu.kvmfr";
        if self.present("sys/module/kvmfr") || self.present("dev/kvmfr0") {
            return Check::new(
                id,
                Status::Info,
                "kvmfr is loaded: Looking Glass can use shared memory through /dev/kvmfr0",
            )
            .ev(
                "sys/module/kvmfr",
                if self.present("sys/module/kvmfr") {
                    "present"
                } else {
                    "absent"
                },
            )
            .ev(
                "dev/kvmfr0",
                if self.present("dev/kvmfr0") {
                    "present"
                } else {
                    "absent"
                },
            );
        }
        let (a, f) = self.module("kvmfr");
        if a == Avail::Module {
            return Check::new(
                id,
                Status::Info,
                "kvmfr is installed but not loaded (Looking Glass, optional)",
            )
            .facts([f])
            .fix("sudo modprobe kvmfr static_size_mb=64");
        }
        Check::new(id, Status::Info, "kvmfr (Looking Glass shared-memory module) is not installed; optional")
            .ev("sys/module/kvmfr", "absent")
            .fix("optional: install Looking Glass's kvmfr module (DKMS) to view the guest's display on the host")
    }

    // ----- hugepages -----------------------------------------------------

    fn hugepages_config(&self) -> Check {
        let id = "hugepages.config";
        let sizes = match self.ev.listing(gather::HUGEPAGES) {
            Listing::Entries(e) => e.clone(),
            Listing::Unreadable(e) => {
                return Check::new(
                    id,
                    Status::Skip,
                    format!("/{} could not be listed: {e}", gather::HUGEPAGES),
                );
            }
            Listing::Missing => {
                let mut c = Check::new(
                    id,
                    Status::Info,
                    "no hugepages support in this kernel (no /sys/kernel/mm/hugepages)",
                )
                .ev(gather::HUGEPAGES, "missing");
                c.evidence.extend(self.kconfig_fact("CONFIG_HUGETLBFS"));
                return c;
            }
        };
        let mut facts = Vec::new();
        let mut any = false;
        let mut parts = Vec::new();
        for s in &sizes {
            let read = |f: &str| -> Result<u64, String> {
                let p = format!("{}/{s}/{f}", gather::HUGEPAGES);
                match self.ev.content(&p) {
                    Content::Data(b) => String::from_utf8_lossy(b)
                        .trim()
                        .parse()
                        .map_err(|_| format!("/{p}: not a number")),
                    Content::Missing => Err(format!("/{p}: missing")),
                    Content::Unreadable(e) => Err(e.clone()),
                }
            };
            let size = s.trim_start_matches("hugepages-");
            match (read("nr_hugepages"), read("free_hugepages")) {
                (Ok(n), Ok(fr)) => {
                    facts.push(Fact::new(
                        &format!("{}/{s}", gather::HUGEPAGES),
                        format!("nr_hugepages {n}, free_hugepages {fr}"),
                    ));
                    if n > 0 {
                        any = true;
                        parts.push(format!("{size}: {n} reserved, {fr} free"));
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    facts.push(Fact::new(
                        &format!("{}/{s}", gather::HUGEPAGES),
                        format!("unreadable: {e}"),
                    ));
                }
            }
        }
        if let Some(c) = &self.cmdline {
            let shown: Vec<String> = ["hugepagesz", "hugepages", "default_hugepagesz"]
                .iter()
                .flat_map(|k| c.show(k))
                .collect();
            if !shown.is_empty() {
                facts.push(Fact::new("proc/cmdline", shown.join(" ")));
            }
        }
        if any {
            Check::new(
                id,
                Status::Ok,
                format!("hugepages reserved: {}", parts.join("; ")),
            )
            .facts(facts)
        } else {
            Check::new(
                id,
                Status::Info,
                "no hugepages reserved (optional: guest memory then uses normal pages)",
            )
            .facts(facts)
            .fix(format!(
                "optional: {}",
                remedy::add_params(
                    &self.boot,
                    &["hugepagesz=1G", "hugepages=<GiB of guest RAM>"]
                )
            ))
        }
    }

    fn hugepages_1g(&self) -> Check {
        let id = "hugepages.1g";
        if let Some(c) = self.unreadable(id, "proc/cpuinfo") {
            return c;
        }
        let dir = entries(self.ev.listing(gather::HUGEPAGES))
            .is_some_and(|e| e.iter().any(|s| s == "hugepages-1048576kB"));
        if self.flags.contains("pdpe1gb") {
            Check::new(
                id,
                Status::Ok,
                format!(
                    "1 GiB pages supported (pdpe1gb){}",
                    if dir {
                        ""
                    } else {
                        "; the kernel offers no 1 GiB pool yet"
                    }
                ),
            )
            .ev("proc/cpuinfo", "flags: pdpe1gb")
            .ev(
                gather::HUGEPAGES,
                if dir {
                    "hugepages-1048576kB present"
                } else {
                    "no hugepages-1048576kB"
                },
            )
        } else {
            Check::new(
                id,
                Status::Info,
                "no 1 GiB page support (no pdpe1gb flag): only 2 MiB hugepages",
            )
            .ev("proc/cpuinfo", "flags: no pdpe1gb")
        }
    }
}

/// How the kernel command line is changed, in words.
fn source_label(s: &CmdlineSource) -> String {
    match s {
        CmdlineSource::GrubDefault { file, regenerate } => format!("{file}, then `{regenerate}`"),
        CmdlineSource::Grubby => "BLS entries, changed with `grubby`".to_string(),
        CmdlineSource::BlsEntry { file } => format!("the `options` line of {file}"),
        CmdlineSource::KernelCmdlineFile { regenerate } => {
            format!("/etc/kernel/cmdline, then {regenerate}")
        }
        CmdlineSource::Kernelstub => "kernelstub (`kernelstub -a`)".to_string(),
        CmdlineSource::ProxmoxBootTool => {
            "/etc/kernel/cmdline, then `proxmox-boot-tool refresh`".to_string()
        }
        CmdlineSource::RefindConf { file } => file.clone(),
        CmdlineSource::LimineConf { file } => format!("the `cmdline:` lines of {file}"),
        CmdlineSource::LimineDefault => {
            "/etc/default/limine (limine-entry-tool regenerates limine.conf)".to_string()
        }
        CmdlineSource::Nixos => "boot.kernelParams in the NixOS configuration".to_string(),
        CmdlineSource::Ostree => "`rpm-ostree kargs`".to_string(),
    }
}
