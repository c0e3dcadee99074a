//! Read everything `exliar check` looks at, through the [`HostRoot`], into
//! an [`Evidence`] value: raw contents, listings and presence, nothing
//! interpreted. The checks themselves are pure functions of it.

use std::collections::BTreeMap;
use std::io::Read as _;

use crate::analyze::bootenv::{self, BootFiles};
use crate::host::{HostRoot, NodeInfo, ReadError};

use super::parse;

/// A file as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Missing,
    Data(Vec<u8>),
    /// It exists but could not be read (the error, naming the file).
    Unreadable(String),
}

/// A directory listing as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    Missing,
    Entries(Vec<String>),
    Unreadable(String),
}

/// Everything `check` read from one host root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// The checked root as shown to users.
    pub root: String,
    /// Whether this is the running host (`/`): only then are access rights
    /// of the current user judged.
    pub live: bool,
    pub files: BTreeMap<String, Content>,
    pub dirs: BTreeMap<String, Listing>,
    pub present: BTreeMap<String, bool>,
    /// Symbolic links: the last component of the target.
    pub links: BTreeMap<String, Option<String>>,
    /// Live host only: `access(2)` for the current user (read+write).
    pub access: BTreeMap<String, Result<bool, String>>,
    /// Live host only: type, mode and owner of device nodes and sockets.
    pub nodes: BTreeMap<String, NodeInfo>,
    /// Where the kernel configuration was found (`boot/config-<release>` or
    /// `proc/config.gz`, whose decompressed text is stored under that key).
    pub kernel_config: Option<String>,
    /// The module directory of the running kernel (`lib/modules/<release>`).
    pub module_dir: Option<String>,
    /// Why the PCI inventory could not be read, if it could not.
    pub pci_error: Option<String>,
    /// Every PCI function's vendor:device (from the inventory, when read).
    pub pci_ids: Vec<(crate::model::PciAddress, crate::plan::modprobe::PciId)>,
}

/// Modules whose availability is looked up.
pub const MODULES: &[&str] = &[
    "kvm",
    "kvm_intel",
    "kvm_amd",
    "kvm_pvm",
    "vfio",
    "vfio_pci",
    "vfio_pci_core",
    "vfio_iommu_type1",
    "vfio_virqfd",
    "vendor_reset",
    "kvmfr",
];

/// Kernel configuration options looked up.
pub const KCONFIG_KEYS: &[&str] = &[
    "CONFIG_MODULES",
    "CONFIG_KVM",
    "CONFIG_KVM_INTEL",
    "CONFIG_KVM_AMD",
    "CONFIG_KVM_PVM",
    "CONFIG_VFIO",
    "CONFIG_VFIO_PCI",
    "CONFIG_VFIO_IOMMU_TYPE1",
    "CONFIG_VFIO_VIRQFD",
    "CONFIG_INTEL_IOMMU",
    "CONFIG_INTEL_IOMMU_DEFAULT_ON",
    "CONFIG_AMD_IOMMU",
    "CONFIG_IRQ_REMAP",
    "CONFIG_IOMMU_DEFAULT_PASSTHROUGH",
    "CONFIG_HUGETLBFS",
    "CONFIG_EFI",
    "CONFIG_FB_EFI",
    "CONFIG_FB_VESA",
    "CONFIG_SYSFB_SIMPLEFB",
    "CONFIG_DRM_SIMPLEDRM",
];

/// Tools looked for, by name, at these paths.
pub const TOOLS: &[(&str, &[&str])] = &[
    (
        "qemu",
        &[
            "usr/bin/qemu-system-x86_64",
            "usr/libexec/qemu-kvm",
            "usr/bin/qemu-kvm",
            "run/current-system/sw/bin/qemu-system-x86_64",
        ],
    ),
    (
        "virsh",
        &["usr/bin/virsh", "run/current-system/sw/bin/virsh"],
    ),
    (
        "libvirtd",
        &[
            "usr/sbin/libvirtd",
            "usr/bin/libvirtd",
            "run/current-system/sw/bin/libvirtd",
        ],
    ),
    (
        "virtqemud",
        &[
            "usr/sbin/virtqemud",
            "usr/bin/virtqemud",
            "run/current-system/sw/bin/virtqemud",
        ],
    ),
    (
        "swtpm",
        &["usr/bin/swtpm", "run/current-system/sw/bin/swtpm"],
    ),
];

/// libvirt's daemon sockets (monolithic, then modular).
pub const LIBVIRT_SOCKETS: &[&str] = &["run/libvirt/libvirt-sock", "run/libvirt/virtqemud-sock"];

/// OVMF / edk2 x86_64 firmware code files at the distributions' paths.
pub const OVMF_FILES: &[&str] = &[
    // Debian, Ubuntu (ovmf)
    "usr/share/OVMF/OVMF_CODE_4M.fd",
    "usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
    "usr/share/OVMF/OVMF_CODE.fd",
    // Fedora, RHEL (edk2-ovmf)
    "usr/share/edk2/ovmf/OVMF_CODE.fd",
    "usr/share/edk2/ovmf/OVMF_CODE.secboot.fd",
    // Arch (edk2-ovmf), new and old layout
    "usr/share/edk2/x64/OVMF_CODE.4m.fd",
    "usr/share/edk2/x64/OVMF_CODE.secboot.4m.fd",
    "usr/share/edk2-ovmf/x64/OVMF_CODE.fd",
    // openSUSE (qemu-ovmf-x86_64)
    "usr/share/qemu/ovmf-x86_64-code.bin",
    "usr/share/qemu/ovmf-x86_64-ms-code.bin",
    // QEMU's bundled edk2 (Fedora, Arch, upstream builds)
    "usr/share/qemu/edk2-x86_64-code.fd",
    "usr/share/qemu/edk2-x86_64-secure-code.fd",
    // Proxmox VE (pve-edk2-firmware)
    "usr/share/pve-edk2-firmware/OVMF_CODE_4M.fd",
    // NixOS (virtualisation.libvirtd.qemu.ovmf)
    "run/libvirt/nix-ovmf/OVMF_CODE.fd",
];

/// The firmware descriptors QEMU and libvirt use to find OVMF.
pub const FIRMWARE_DESCRIPTORS: &str = "usr/share/qemu/firmware";

pub const FRAMEBUFFER_DRIVERS: &[&str] = &[
    "sys/bus/platform/drivers/efi-framebuffer",
    "sys/bus/platform/drivers/simple-framebuffer",
    "sys/bus/platform/drivers/vesa-framebuffer",
];

pub const HUGEPAGES: &str = "sys/kernel/mm/hugepages";
pub const ACPI_TABLES: &str = "sys/firmware/acpi/tables";
pub const IOMMU_CLASS: &str = "sys/class/iommu";
pub const IOMMU_GROUPS: &str = "sys/kernel/iommu_groups";
pub const ALLOW_UNSAFE_INTERRUPTS: &str =
    "sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts";

/// modprobe.d folders, in kmod's precedence.
pub const MODPROBE_DIRS: &[&str] = &[
    "etc/modprobe.d",
    "run/modprobe.d",
    "usr/lib/modprobe.d",
    "lib/modprobe.d",
];

/// Plain text files read on every root.
const TEXT_FILES: &[&str] = &[
    "proc/cpuinfo",
    "proc/cmdline",
    "proc/sys/kernel/osrelease",
    "etc/os-release",
    "usr/lib/os-release",
    "proc/interrupts",
    "proc/meminfo",
    "proc/fb",
    "proc/1/comm",
    ALLOW_UNSAFE_INTERRUPTS,
];

/// Where module trees live (NixOS keeps them under the booted system).
const MODULE_ROOTS: &[&str] = &[
    "lib/modules",
    "usr/lib/modules",
    "run/booted-system/kernel-modules/lib/modules",
];

impl Evidence {
    pub fn content(&self, rel: &str) -> &Content {
        static MISSING: Content = Content::Missing;
        self.files.get(rel).unwrap_or(&MISSING)
    }

    /// A file's text when it was read.
    pub fn text_of(&self, rel: &str) -> Option<String> {
        match self.content(rel) {
            Content::Data(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    pub fn is_present(&self, rel: &str) -> bool {
        self.present.get(rel).copied().unwrap_or(false)
            || matches!(self.content(rel), Content::Data(_) | Content::Unreadable(_))
            || matches!(
                self.dirs.get(rel),
                Some(Listing::Entries(_) | Listing::Unreadable(_))
            )
    }

    pub fn listing(&self, rel: &str) -> &Listing {
        static MISSING: Listing = Listing::Missing;
        self.dirs.get(rel).unwrap_or(&MISSING)
    }

    /// The running kernel's release (`6.1.0-27-amd64`).
    pub fn kernel_release(&self) -> Option<String> {
        self.text_of("proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// os-release text (`/etc/os-release`, else `/usr/lib/os-release`) and its path.
    pub fn os_release(&self) -> Option<(&'static str, String)> {
        self.text_of("etc/os-release")
            .map(|t| ("etc/os-release", t))
            .or_else(|| {
                self.text_of("usr/lib/os-release")
                    .map(|t| ("usr/lib/os-release", t))
            })
    }
}

impl BootFiles for Evidence {
    fn text(&self, rel: &str) -> Option<String> {
        self.text_of(rel)
    }
    fn bytes(&self, rel: &str) -> Option<Vec<u8>> {
        match self.content(rel) {
            Content::Data(b) => Some(b.clone()),
            _ => None,
        }
    }
    fn unreadable(&self, rel: &str) -> Option<String> {
        match self.content(rel) {
            Content::Unreadable(e) => Some(e.clone()),
            _ => match self.listing(rel) {
                Listing::Unreadable(e) => Some(e.clone()),
                _ => None,
            },
        }
    }
    fn exists(&self, rel: &str) -> bool {
        self.is_present(rel)
    }
    fn list(&self, rel: &str) -> Vec<String> {
        match self.listing(rel) {
            Listing::Entries(e) => e.clone(),
            _ => Vec::new(),
        }
    }
}

fn read_content(host: &HostRoot, rel: &str) -> Content {
    match host.read_bytes(rel) {
        Ok(b) => Content::Data(b),
        Err(e) => from_err(e),
    }
}

fn from_err(e: ReadError) -> Content {
    if e.is_not_found() {
        Content::Missing
    } else {
        Content::Unreadable(e.to_string())
    }
}

struct Gatherer<'a> {
    host: &'a HostRoot,
    ev: Evidence,
}

impl Gatherer<'_> {
    fn file(&mut self, rel: &str) {
        let c = read_content(self.host, rel);
        self.ev.files.insert(rel.to_string(), c);
    }

    fn presence(&mut self, rel: &str) -> bool {
        let p = self.host.exists(rel);
        self.ev.present.insert(rel.to_string(), p);
        p
    }

    /// List a directory, keep the entries `keep` accepts, and mark them
    /// used (so a snapshot holds them).
    fn list(&mut self, rel: &str, keep: impl Fn(&str) -> bool) -> Vec<String> {
        match self.host.list_dir(rel) {
            Ok(names) => {
                let kept: Vec<String> = names.into_iter().filter(|n| keep(n)).collect();
                for n in &kept {
                    self.host.exists(format!("{rel}/{n}"));
                }
                self.ev
                    .dirs
                    .insert(rel.to_string(), Listing::Entries(kept.clone()));
                kept
            }
            Err(e) if e.is_not_found() => {
                self.ev.dirs.insert(rel.to_string(), Listing::Missing);
                Vec::new()
            }
            Err(e) => {
                self.ev
                    .dirs
                    .insert(rel.to_string(), Listing::Unreadable(e.to_string()));
                Vec::new()
            }
        }
    }
}

/// Read everything the checks use. Never fails: what cannot be read is
/// recorded as such.
pub fn gather(host: &HostRoot) -> Evidence {
    let mut g = Gatherer {
        host,
        ev: Evidence {
            root: host.path().display().to_string(),
            live: host.is_live(),
            ..Evidence::default()
        },
    };
    for f in TEXT_FILES {
        g.file(f);
    }
    let release = g.ev.kernel_release();

    // Kernel configuration: /boot/config-<release>, else /proc/config.gz.
    if let Some(r) = &release {
        let p = format!("boot/config-{r}");
        g.file(&p);
        if matches!(g.ev.content(&p), Content::Data(_)) {
            g.ev.kernel_config = Some(p);
        }
    }
    if g.ev.kernel_config.is_none() {
        let p = "proc/config.gz";
        let c = match host.read_bytes(p) {
            Ok(gz) => {
                // A kernel configuration is a few hundred KiB: a gzip
                // bomb stops at the limit.
                let limit = crate::host::readfile::CONFIG_LIMIT;
                let mut text = Vec::new();
                match flate2::read::GzDecoder::new(gz.as_slice())
                    .take(limit + 1)
                    .read_to_end(&mut text)
                {
                    Ok(_) if text.len() as u64 > limit => Content::Unreadable(format!(
                        "{}: decompressed, {}",
                        host.display(p.as_ref()),
                        crate::host::readfile::too_large(limit)
                    )),
                    Ok(_) => Content::Data(text),
                    Err(e) => Content::Unreadable(format!(
                        "{}: not gzip data: {e}",
                        host.display(p.as_ref())
                    )),
                }
            }
            Err(e) => from_err(e),
        };
        if matches!(c, Content::Data(_)) {
            g.ev.kernel_config = Some(p.to_string());
        }
        g.ev.files.insert(p.to_string(), c);
    }

    // Modules of the running kernel.
    if let Some(r) = &release {
        for m in MODULE_ROOTS {
            let dir = format!("{m}/{r}");
            let dep = format!("{dir}/modules.dep");
            let builtin = format!("{dir}/modules.builtin");
            let dep_c = read_content(host, &dep);
            let builtin_c = read_content(host, &builtin);
            let found =
                !matches!(dep_c, Content::Missing) || !matches!(builtin_c, Content::Missing);
            g.ev.files.insert(dep, dep_c);
            g.ev.files.insert(builtin, builtin_c);
            if found {
                g.ev.module_dir = Some(dir);
                break;
            }
        }
    }
    for m in MODULES {
        g.presence(&format!("sys/module/{m}"));
    }

    // Devices, firmware tables, IOMMU.
    g.presence("dev/kvm");
    g.presence("dev/kvmfr0");
    // Table names (DMAR, SSDT1), not the `data`/`dynamic` folders.
    g.list(ACPI_TABLES, |n| {
        n.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    });
    g.list(IOMMU_CLASS, |_| true);
    g.list(IOMMU_GROUPS, |n| n.parse::<u32>().is_ok());

    // EFI.
    g.presence(bootenv::EFI_DIR);
    for (name, guid) in bootenv::EFIVARS_READ.iter().copied() {
        g.file(&bootenv::efivar_path(name, guid));
    }

    // Boot loader and initramfs files.
    for f in bootenv::READ {
        g.file(f);
    }
    for p in bootenv::PRESENCE {
        g.presence(p);
    }
    for (dir, suffix) in bootenv::LISTED {
        match suffix {
            Some(s) => {
                let names = g.list(dir, |n| n.ends_with(s));
                for n in names {
                    g.file(&format!("{dir}/{n}"));
                }
            }
            None => {
                g.list(dir, |n| bootenv::relevant_entry(dir, n));
            }
        }
    }
    g.link("sbin/init");
    // modprobe.d, for the effective vfio-pci configuration.
    for dir in MODPROBE_DIRS {
        for n in g.list(dir, |n| n.ends_with(".conf")) {
            g.file(&format!("{dir}/{n}"));
        }
    }

    // Virtualization stack.
    for (_, paths) in TOOLS {
        for p in *paths {
            g.presence(p);
        }
    }
    for s in LIBVIRT_SOCKETS {
        g.presence(s);
    }
    for f in OVMF_FILES {
        g.presence(f);
    }
    g.list(FIRMWARE_DESCRIPTORS, |n| n.ends_with(".json"));

    // Framebuffers and hugepages.
    for d in FRAMEBUFFER_DRIVERS {
        g.list(d, |n| n.contains('.') && !n.starts_with("module"));
    }
    for size in g.list(HUGEPAGES, |n| n.starts_with("hugepages-")) {
        g.file(&format!("{HUGEPAGES}/{size}/nr_hugepages"));
        g.file(&format!("{HUGEPAGES}/{size}/free_hugepages"));
    }

    // The current user: only meaningful on the live host, and not kept in
    // snapshots (another machine's reader is not this user).
    if g.ev.live && !host.is_recording() {
        g.file("proc/self/status");
        g.file("etc/group");
        for p in ["dev/kvm"].iter().chain(LIBVIRT_SOCKETS) {
            if g.ev.present.get(*p).copied().unwrap_or(false) {
                if let Some(a) = host.live_access(p, true) {
                    g.ev.access.insert(p.to_string(), a);
                }
                if let Some(n) = host.live_node(p) {
                    g.ev.nodes.insert(p.to_string(), n);
                }
            }
        }
    }
    g.ev
}

impl Gatherer<'_> {
    fn link(&mut self, rel: &str) {
        let v = self.host.link_name(rel).ok().flatten();
        self.ev.links.insert(rel.to_string(), v);
    }
}

/// For a recording root: keep only the used lines of the large files
/// (kernel config, module lists, interrupts, groups), so a snapshot stays
/// small and holds no unrelated user names.
pub fn trim_for_snapshot(host: &HostRoot, ev: &Evidence) {
    if !host.is_recording() {
        return;
    }
    if let Some(p) = &ev.kernel_config
        && let Some(text) = ev.text_of(p)
    {
        let trimmed = parse::trim_kconfig(&text, KCONFIG_KEYS);
        if p.ends_with(".gz") {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            if std::io::Write::write_all(&mut enc, trimmed.as_bytes()).is_ok()
                && let Ok(gz) = enc.finish()
            {
                host.record_trimmed(p, gz);
            }
        } else {
            host.record_trimmed(p, trimmed.into_bytes());
        }
    }
    if let Some(dir) = &ev.module_dir {
        for f in ["modules.dep", "modules.builtin"] {
            let p = format!("{dir}/{f}");
            if let Some(text) = ev.text_of(&p) {
                host.record_trimmed(&p, parse::trim_module_list(&text, MODULES).into_bytes());
            }
        }
    }
    if let Some(text) = ev.text_of("proc/interrupts") {
        host.record_trimmed(
            "proc/interrupts",
            parse::trim_interrupts(&text).into_bytes(),
        );
    }
    if let Some(text) = ev.text_of("etc/group") {
        host.record_trimmed(
            "etc/group",
            parse::trim_groups(&text, &["libvirt", "kvm"]).into_bytes(),
        );
    }
}
