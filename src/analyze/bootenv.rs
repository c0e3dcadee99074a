//! Which boot loader boots this system, how its kernel command line is
//! kept, and which initramfs generator builds its initramfs. Pure: the
//! files come in through [`BootFiles`]; the paths it looks at are listed in
//! [`READ`], [`PRESENCE`] and [`LISTED`] so that a gatherer reads exactly
//! those.
//!
//! The running loader is told by EFI variables where one set them
//! (systemd-boot's `LoaderInfo`, `StubInfo` of a UKI); configuration files
//! only tell what is installed. Disagreements are reported as conflicts.

use serde::Serialize;

use crate::check::parse::{self, Cmdline};
use crate::model::Fact;

/// systemd's boot loader interface vendor GUID (`LoaderInfo`, `StubInfo`).
pub const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
/// EFI global variable GUID (`SecureBoot`, `SetupMode`).
pub const GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
pub const EFIVARS: &str = "sys/firmware/efi/efivars";
pub const EFI_DIR: &str = "sys/firmware/efi";

/// The root-relative path of an EFI variable file.
pub fn efivar_path(name: &str, guid: &str) -> String {
    format!("{EFIVARS}/{name}-{guid}")
}

/// EFI variables this module uses: (name, guid).
pub const EFIVARS_READ: &[(&str, &str)] = &[
    ("SecureBoot", GLOBAL_GUID),
    ("SetupMode", GLOBAL_GUID),
    ("LoaderInfo", LOADER_GUID),
    ("LoaderEntrySelected", LOADER_GUID),
    ("StubInfo", LOADER_GUID),
];

/// Where the ESP (or XBOOTLDR) is usually mounted.
pub const ESP_MOUNTS: &[&str] = &["boot/efi", "efi", "boot"];

/// Files read whole.
pub const READ: &[&str] = &[
    "etc/default/grub",
    "etc/kernel/cmdline",
    "etc/kernelstub/configuration",
    "boot/refind_linux.conf",
    "boot/limine.conf",
    "boot/limine/limine.conf",
    "boot/EFI/limine/limine.conf",
    "boot/efi/limine.conf",
    "boot/efi/EFI/limine/limine.conf",
    "efi/limine.conf",
    "boot/limine.cfg",
    "etc/default/limine",
    "boot/loader/loader.conf",
    "boot/efi/loader/loader.conf",
    "efi/loader/loader.conf",
];

/// Paths whose existence is used.
pub const PRESENCE: &[&str] = &[
    "boot/grub/grub.cfg",
    "boot/grub2/grub.cfg",
    "boot/efi/EFI/refind/refind.conf",
    "boot/EFI/refind/refind.conf",
    "efi/EFI/refind/refind.conf",
    "usr/bin/grubby",
    "usr/sbin/grubby",
    "usr/bin/kernelstub",
    "usr/sbin/proxmox-boot-tool",
    "etc/kernel/proxmox-boot-uuids",
    "etc/kernel/uki.conf",
    "etc/NIXOS",
    "run/ostree-booted",
    "usr/bin/rpm-ostree",
    "etc/mkinitcpio.conf",
    "usr/bin/mkinitcpio",
    "etc/dracut.conf",
    "etc/dracut.conf.d",
    "usr/bin/dracut",
    "usr/lib/dracut/dracut.conf.d/01-dist.conf",
    "etc/initramfs-tools/initramfs.conf",
    "etc/initramfs-tools/modules",
    "usr/sbin/mkinitramfs",
    "etc/booster.yaml",
    "usr/bin/booster",
];

/// Directories listed: with `Some(suffix)` the matching entries are read,
/// with `None` only names (filtered by [`relevant_entry`]) are used.
pub const LISTED: &[(&str, Option<&str>)] = &[
    ("boot/loader/entries", Some(".conf")),
    ("boot/efi/loader/entries", Some(".conf")),
    ("efi/loader/entries", Some(".conf")),
    ("etc/default/grub.d", Some(".cfg")),
    ("etc/mkinitcpio.d", Some(".preset")),
    ("boot/EFI/Linux", None),
    ("boot/efi/EFI/Linux", None),
    ("efi/EFI/Linux", None),
    ("boot", None),
];

/// Which names of a names-only listing matter (kernels, initramfs images,
/// UKIs); the gatherer keeps only these.
pub fn relevant_entry(dir: &str, name: &str) -> bool {
    if dir.ends_with("EFI/Linux") {
        return name.to_ascii_lowercase().ends_with(".efi");
    }
    name.starts_with("initrd.img-")
        || name.starts_with("initramfs-")
        || name.starts_with("booster-")
        || name.starts_with("vmlinuz")
}

/// Read access to the files named above.
pub trait BootFiles {
    /// A file's text; `None` when missing or unreadable.
    fn text(&self, rel: &str) -> Option<String>;
    /// A file's bytes; `None` when missing or unreadable.
    fn bytes(&self, rel: &str) -> Option<Vec<u8>>;
    /// The read error of a file that exists but could not be read.
    fn unreadable(&self, rel: &str) -> Option<String>;
    fn exists(&self, rel: &str) -> bool;
    /// Listed entries (empty when missing or unreadable).
    fn list(&self, rel: &str) -> Vec<String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Firmware {
    Uefi,
    Bios,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loader {
    Grub,
    SystemdBoot,
    Refind,
    Limine,
    /// A unified kernel image started by the firmware (systemd-stub).
    Uki,
    /// `LoaderInfo` names something else.
    Other,
}

impl Loader {
    pub fn label(self) -> &'static str {
        match self {
            Loader::Grub => "GRUB",
            Loader::SystemdBoot => "systemd-boot",
            Loader::Refind => "rEFInd",
            Loader::Limine => "Limine",
            Loader::Uki => "a unified kernel image (UKI)",
            Loader::Other => "another boot loader",
        }
    }
}

/// Where the persistent kernel command line is kept, and how to change it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CmdlineSource {
    /// `/etc/default/grub`, then a regeneration command.
    GrubDefault {
        file: String,
        regenerate: String,
    },
    /// Fedora/RHEL BLS snippets, changed with grubby.
    Grubby,
    /// A hand-written Boot Loader Specification entry.
    BlsEntry {
        file: String,
    },
    /// `/etc/kernel/cmdline`, applied by kernel-install or a UKI rebuild.
    KernelCmdlineFile {
        regenerate: String,
    },
    /// Pop!_OS kernelstub.
    Kernelstub,
    /// Proxmox VE: `/etc/kernel/cmdline` + `proxmox-boot-tool refresh`.
    ProxmoxBootTool,
    RefindConf {
        file: String,
    },
    LimineConf {
        file: String,
    },
    /// `/etc/default/limine`, read by limine-entry-tool / limine-mkinitcpio-hook.
    LimineDefault,
    /// NixOS: `boot.kernelParams`.
    Nixos,
    /// ostree-based systems: `rpm-ostree kargs`.
    Ostree,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Initramfs {
    Mkinitcpio,
    Dracut,
    InitramfsTools,
    Booster,
    /// NixOS builds its stage-1 initrd itself.
    Nixos,
}

impl Initramfs {
    pub fn label(self) -> &'static str {
        match self {
            Initramfs::Mkinitcpio => "mkinitcpio",
            Initramfs::Dracut => "dracut",
            Initramfs::InitramfsTools => "initramfs-tools",
            Initramfs::Booster => "booster",
            Initramfs::Nixos => "NixOS stage-1 (nixos-rebuild)",
        }
    }
    /// The command that rebuilds every initramfs.
    pub fn regenerate(self) -> &'static str {
        match self {
            Initramfs::Mkinitcpio => "sudo mkinitcpio -P",
            Initramfs::Dracut => "sudo dracut -f --regenerate-all",
            Initramfs::InitramfsTools => "sudo update-initramfs -u -k all",
            Initramfs::Booster => "sudo /usr/lib/booster/regenerate_images",
            Initramfs::Nixos => "sudo nixos-rebuild switch",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Immutable {
    Nixos,
    Ostree,
}

/// What was detected, with the evidence for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootEnv {
    pub firmware: Firmware,
    /// The `SecureBoot` EFI variable (`None`: not UEFI, or not readable).
    pub secure_boot: Option<bool>,
    /// The `LoaderInfo` EFI variable, decoded.
    pub loader_info: Option<String>,
    pub loader: Option<Loader>,
    pub cmdline_source: Option<CmdlineSource>,
    /// The persistent command line as configured there, when exliar can read it.
    pub configured_cmdline: Option<Fact>,
    pub loader_evidence: Vec<Fact>,
    pub initramfs: Option<Initramfs>,
    pub initramfs_evidence: Vec<Fact>,
    pub immutable: Option<Immutable>,
    /// Evidence that disagrees (a configuration for a loader that did not boot).
    pub conflicts: Vec<String>,
    /// Disagreements about the initramfs generator.
    pub initramfs_conflicts: Vec<String>,
    /// Files that exist but could not be read.
    pub unreadable: Vec<Fact>,
}

/// The os-release facts detection needs.
#[derive(Debug, Clone, Default)]
pub struct OsFamily {
    pub id: Option<String>,
    pub id_like: Vec<String>,
}

impl OsFamily {
    /// `ID` and `ID_LIKE` of an os-release text.
    pub fn from_os_release(text: &str) -> Self {
        use crate::host::sysfs::os_release_value;
        Self {
            id: os_release_value(text, "ID"),
            id_like: os_release_value(text, "ID_LIKE")
                .map(|v| v.split_whitespace().map(String::from).collect())
                .unwrap_or_default(),
        }
    }

    pub fn is(&self, name: &str) -> bool {
        self.id.as_deref() == Some(name) || self.id_like.iter().any(|x| x == name)
    }
}

fn first_existing<'a>(f: &dyn BootFiles, paths: &[&'a str]) -> Option<&'a str> {
    paths.iter().copied().find(|p| f.exists(p))
}

fn loader_entries(f: &dyn BootFiles) -> Vec<String> {
    let mut v = Vec::new();
    for m in ESP_MOUNTS {
        let dir = format!("{m}/loader/entries");
        for e in f.list(&dir) {
            if e.ends_with(".conf") {
                v.push(format!("{dir}/{e}"));
            }
        }
    }
    v
}

/// Where limine.conf may be, in the order Limine looks.
pub const LIMINE_CONFS: &[&str] = &[
    "boot/limine.conf",
    "boot/limine/limine.conf",
    "boot/EFI/limine/limine.conf",
    "boot/efi/limine.conf",
    "boot/efi/EFI/limine/limine.conf",
    "efi/limine.conf",
];
const REFIND_CONFS: &[&str] = &[
    "boot/refind_linux.conf",
    "boot/efi/EFI/refind/refind.conf",
    "boot/EFI/refind/refind.conf",
    "efi/EFI/refind/refind.conf",
];

/// Detect the boot environment.
pub fn detect(f: &dyn BootFiles, os: &OsFamily) -> BootEnv {
    let mut loader_ev = Vec::new();
    let mut conflicts = Vec::new();
    let mut unreadable = Vec::new();
    for p in READ.iter() {
        if let Some(e) = f.unreadable(p) {
            unreadable.push(Fact::new(p, format!("exists but unreadable: {e}")));
        }
    }
    let firmware = if f.exists(EFI_DIR) {
        loader_ev.push(Fact::new(EFI_DIR, "present: booted through UEFI"));
        Firmware::Uefi
    } else {
        loader_ev.push(Fact::new(
            EFI_DIR,
            "absent: legacy BIOS boot (or a kernel started directly)",
        ));
        Firmware::Bios
    };
    let var = |name: &str| {
        let p = efivar_path(name, LOADER_GUID);
        f.bytes(&p)
            .and_then(|b| parse::efivar_utf16(&b))
            .map(|v| (p, v))
    };
    let loader_info = var("LoaderInfo");
    let stub_info = var("StubInfo");
    let entry_selected = var("LoaderEntrySelected");
    if let Some((p, v)) = &loader_info {
        loader_ev.push(Fact::new(p, v.clone()));
    }
    if let Some((p, v)) = &stub_info {
        loader_ev.push(Fact::new(p, v.clone()));
    }
    if let Some((p, v)) = &entry_selected {
        loader_ev.push(Fact::new(p, v.clone()));
    }

    // What is configured on disk.
    let grub_default = f.text("etc/default/grub");
    let grub_cfg = first_existing(f, &["boot/grub/grub.cfg", "boot/grub2/grub.cfg"]);
    let entries = loader_entries(f);
    let sd_conf = first_existing(
        f,
        &[
            "boot/efi/loader/loader.conf",
            "efi/loader/loader.conf",
            "boot/loader/loader.conf",
        ],
    );
    let limine_conf = first_existing(f, LIMINE_CONFS);
    let limine_default = f.exists("etc/default/limine");
    let refind = first_existing(f, REFIND_CONFS);
    let ukis: Vec<String> = ESP_MOUNTS
        .iter()
        .flat_map(|m| {
            let dir = format!("{m}/EFI/Linux");
            f.list(&dir).into_iter().map(move |e| format!("{dir}/{e}"))
        })
        .collect();
    let kernelstub = f.text("etc/kernelstub/configuration");
    let kernel_cmdline = f.text("etc/kernel/cmdline");
    let proxmox =
        f.exists("usr/sbin/proxmox-boot-tool") && f.exists("etc/kernel/proxmox-boot-uuids");
    let nixos = f.exists("etc/NIXOS") || os.is("nixos");
    let ostree = f.exists("run/ostree-booted");
    let bls_grub = grub_default
        .as_deref()
        .and_then(|t| parse::shell_value(t, "GRUB_ENABLE_BLSCFG"))
        .is_some_and(|v| v == "true");

    let mut configured: Vec<(Loader, String)> = Vec::new();
    if let Some(p) = grub_cfg {
        configured.push((Loader::Grub, p.to_string()));
    } else if grub_default.is_some() {
        configured.push((Loader::Grub, "etc/default/grub".to_string()));
    }
    if let Some(p) = sd_conf {
        configured.push((Loader::SystemdBoot, p.to_string()));
    } else if !bls_grub && let Some(e) = entries.first() {
        configured.push((Loader::SystemdBoot, e.clone()));
    }
    if let Some(p) = refind {
        configured.push((Loader::Refind, p.to_string()));
    }
    if let Some(p) = limine_conf {
        configured.push((Loader::Limine, p.to_string()));
    } else if limine_default {
        configured.push((Loader::Limine, "etc/default/limine".to_string()));
    }
    if let Some(u) = ukis.first() {
        configured.push((Loader::Uki, u.clone()));
    }
    for (l, p) in &configured {
        loader_ev.push(Fact::new(p, format!("present ({})", l.label())));
    }

    let from_var = loader_info.as_ref().map(|(_, v)| {
        let l = v.to_ascii_lowercase();
        if l.starts_with("systemd-boot") {
            Loader::SystemdBoot
        } else if l.contains("grub") {
            Loader::Grub
        } else if l.contains("refind") {
            Loader::Refind
        } else if l.contains("limine") {
            Loader::Limine
        } else {
            Loader::Other
        }
    });
    let loader = match from_var {
        Some(l) => {
            for (other, p) in &configured {
                if *other != l && *other != Loader::Uki {
                    conflicts.push(format!(
                        "{} configuration is present (/{p}) but LoaderInfo says {} booted this system: {} is installed but not in use",
                        other.label(),
                        loader_info.as_ref().map(|(_, v)| v.as_str()).unwrap_or(""),
                        other.label()
                    ));
                }
            }
            Some(l)
        }
        None if stub_info.is_some() => Some(Loader::Uki),
        None => {
            // No EFI variable says which loader ran: rank what is configured.
            let order = if firmware == Firmware::Bios {
                &[Loader::Grub, Loader::Limine][..]
            } else {
                &[
                    Loader::Limine,
                    Loader::Refind,
                    Loader::Grub,
                    Loader::Uki,
                    Loader::SystemdBoot,
                ][..]
            };
            let found: Vec<Loader> = order
                .iter()
                .copied()
                .filter(|l| configured.iter().any(|(c, _)| c == l))
                .collect();
            if found.len() > 1 {
                conflicts.push(format!(
                    "several boot loaders are configured ({}) and no EFI variable tells which one booted; assuming {}",
                    found.iter().map(|l| l.label()).collect::<Vec<_>>().join(", "),
                    found[0].label()
                ));
            }
            if found.first() == Some(&Loader::SystemdBoot) && firmware == Firmware::Uefi {
                conflicts.push(
                    "systemd-boot is configured but its LoaderInfo variable is missing: it did not boot this system, or efivars are not readable"
                        .to_string(),
                );
            }
            found.first().copied()
        }
    };

    // The persistent command line.
    let mut configured_cmdline = None;
    let cmdline_source = if nixos {
        Some(CmdlineSource::Nixos)
    } else if ostree {
        Some(CmdlineSource::Ostree)
    } else {
        match loader {
            Some(Loader::SystemdBoot) | Some(Loader::Uki) => {
                if let Some(k) = &kernelstub {
                    configured_cmdline = parse::kernelstub_options(k)
                        .ok()
                        .map(|o| Fact::new("etc/kernelstub/configuration", o.join(" ")));
                    Some(CmdlineSource::Kernelstub)
                } else if proxmox {
                    configured_cmdline = kernel_cmdline
                        .as_ref()
                        .map(|c| Fact::new("etc/kernel/cmdline", c.trim()));
                    Some(CmdlineSource::ProxmoxBootTool)
                } else if stub_info.is_some() || loader == Some(Loader::Uki) {
                    configured_cmdline = kernel_cmdline
                        .as_ref()
                        .map(|c| Fact::new("etc/kernel/cmdline", c.trim()));
                    Some(CmdlineSource::KernelCmdlineFile {
                        regenerate: uki_rebuild(f),
                    })
                } else if let Some(c) = &kernel_cmdline {
                    configured_cmdline = Some(Fact::new("etc/kernel/cmdline", c.trim()));
                    Some(CmdlineSource::KernelCmdlineFile {
                        regenerate: "sudo kernel-install add $(uname -r) /lib/modules/$(uname -r)/vmlinuz (for every installed kernel)".to_string(),
                    })
                } else {
                    let chosen = pick_entry(
                        &entries,
                        entry_selected.as_ref().map(|(_, v)| v.as_str()),
                        f,
                    );
                    chosen.map(|file| {
                        if let Some(t) = f.text(&file) {
                            let opts = parse::bls_values(&t, "options").join(" ");
                            configured_cmdline = Some(Fact::new(&file, opts));
                        }
                        CmdlineSource::BlsEntry {
                            file: format!("/{file}"),
                        }
                    })
                }
            }
            Some(Loader::Grub) => {
                if bls_grub && !entries.is_empty() {
                    if let Some(e) = entries.first()
                        && let Some(t) = f.text(e)
                    {
                        configured_cmdline =
                            Some(Fact::new(e, parse::bls_values(&t, "options").join(" ")));
                    }
                    Some(CmdlineSource::Grubby)
                } else {
                    let regenerate = if os.is("debian") || os.is("ubuntu") {
                        "sudo update-grub".to_string()
                    } else if grub_cfg == Some("boot/grub2/grub.cfg") {
                        "sudo grub2-mkconfig -o /boot/grub2/grub.cfg".to_string()
                    } else {
                        "sudo grub-mkconfig -o /boot/grub/grub.cfg".to_string()
                    };
                    if let Some(t) = &grub_default {
                        configured_cmdline =
                            Some(Fact::new("etc/default/grub", grub_cmdline(t, f)));
                    }
                    Some(CmdlineSource::GrubDefault {
                        file: "/etc/default/grub".to_string(),
                        regenerate,
                    })
                }
            }
            Some(Loader::Refind) => {
                let file = "boot/refind_linux.conf";
                if let Some(t) = f.text(file) {
                    configured_cmdline =
                        parse::refind_default_options(&t).map(|o| Fact::new(file, o));
                }
                Some(CmdlineSource::RefindConf {
                    file: format!("/{file}"),
                })
            }
            Some(Loader::Limine) => {
                if limine_default {
                    if let Some(t) = f.text("etc/default/limine") {
                        configured_cmdline = parse::shell_value(&t, "KERNEL_CMDLINE[default]")
                            .map(|v| Fact::new("etc/default/limine", v));
                    }
                    Some(CmdlineSource::LimineDefault)
                } else {
                    limine_conf.map(|p| {
                        if let Some(t) = f.text(p) {
                            configured_cmdline = parse::limine_cmdlines(&t)
                                .first()
                                .map(|c| Fact::new(p, c.clone()));
                        }
                        CmdlineSource::LimineConf {
                            file: format!("/{p}"),
                        }
                    })
                }
            }
            Some(Loader::Other) | None => None,
        }
    };

    let mut initramfs_conflicts = Vec::new();
    let (initramfs, initramfs_evidence) = detect_initramfs(f, nixos, &mut initramfs_conflicts);
    let immutable = if nixos {
        Some(Immutable::Nixos)
    } else if ostree {
        Some(Immutable::Ostree)
    } else {
        None
    };
    let secure_boot = f
        .bytes(&efivar_path("SecureBoot", GLOBAL_GUID))
        .and_then(|b| parse::efivar_bool(&b));
    BootEnv {
        firmware,
        secure_boot,
        loader_info: loader_info.map(|(_, v)| v),
        loader,
        cmdline_source,
        configured_cmdline,
        loader_evidence: loader_ev,
        initramfs,
        initramfs_evidence,
        immutable,
        conflicts,
        initramfs_conflicts,
        unreadable,
    }
}

/// `GRUB_CMDLINE_LINUX` and `GRUB_CMDLINE_LINUX_DEFAULT` as GRUB joins them,
/// drop-ins in `/etc/default/grub.d/*.cfg` applied after the main file.
fn grub_cmdline(main: &str, f: &dyn BootFiles) -> String {
    let mut linux = parse::shell_value(main, "GRUB_CMDLINE_LINUX").unwrap_or_default();
    let mut default = parse::shell_value(main, "GRUB_CMDLINE_LINUX_DEFAULT").unwrap_or_default();
    for e in f.list("etc/default/grub.d") {
        if !e.ends_with(".cfg") {
            continue;
        }
        if let Some(t) = f.text(&format!("etc/default/grub.d/{e}")) {
            if let Some(v) = parse::shell_value(&t, "GRUB_CMDLINE_LINUX") {
                linux = v;
            }
            if let Some(v) = parse::shell_value(&t, "GRUB_CMDLINE_LINUX_DEFAULT") {
                default = v;
            }
        }
    }
    format!("{linux} {default}").trim().to_string()
}

fn uki_rebuild(f: &dyn BootFiles) -> String {
    if f.exists("usr/bin/mkinitcpio") {
        "sudo mkinitcpio -P (rebuilds the UKI with the new command line)".to_string()
    } else {
        "rebuild the UKI (kernel-install add $(uname -r) /lib/modules/$(uname -r)/vmlinuz, or ukify)".to_string()
    }
}

/// The entry that booted (`LoaderEntrySelected`), else the only entry.
fn pick_entry(entries: &[String], selected: Option<&str>, _f: &dyn BootFiles) -> Option<String> {
    if let Some(sel) = selected {
        let want = if sel.ends_with(".conf") {
            sel.to_string()
        } else {
            format!("{sel}.conf")
        };
        if let Some(e) = entries
            .iter()
            .find(|e| e.rsplit('/').next() == Some(want.as_str()))
        {
            return Some(e.clone());
        }
    }
    let linux: Vec<&String> = entries.iter().collect();
    linux.first().map(|e| (*e).clone())
}

fn detect_initramfs(
    f: &dyn BootFiles,
    nixos: bool,
    conflicts: &mut Vec<String>,
) -> (Option<Initramfs>, Vec<Fact>) {
    let mut ev = Vec::new();
    if nixos {
        ev.push(Fact::new(
            "etc/NIXOS",
            "NixOS builds its initrd from boot.initrd.* options",
        ));
        return (Some(Initramfs::Nixos), ev);
    }
    let tools: [(Initramfs, &[&str], &[&str]); 4] = [
        (
            Initramfs::Mkinitcpio,
            &["etc/mkinitcpio.conf"],
            &["usr/bin/mkinitcpio"],
        ),
        (
            Initramfs::Dracut,
            &[
                "etc/dracut.conf",
                "etc/dracut.conf.d",
                "usr/lib/dracut/dracut.conf.d/01-dist.conf",
            ],
            &["usr/bin/dracut"],
        ),
        (
            Initramfs::InitramfsTools,
            &[
                "etc/initramfs-tools/initramfs.conf",
                "etc/initramfs-tools/modules",
            ],
            &["usr/sbin/mkinitramfs"],
        ),
        (
            Initramfs::Booster,
            &["etc/booster.yaml"],
            &["usr/bin/booster"],
        ),
    ];
    let mut installed = Vec::new();
    for (kind, confs, bins) in tools {
        let conf = confs.iter().find(|p| f.exists(p));
        let bin = bins.iter().find(|p| f.exists(p));
        if let Some(b) = bin {
            ev.push(Fact::new(b, format!("present ({})", kind.label())));
        }
        if let Some(c) = conf {
            ev.push(Fact::new(c, format!("present ({})", kind.label())));
        }
        if bin.is_some() || conf.is_some() {
            installed.push((kind, bin.is_some(), conf.is_some()));
        }
    }
    // Images in /boot name their maker.
    let images: Vec<String> = f
        .list("boot")
        .into_iter()
        .filter(|n| {
            n.starts_with("initrd.img-") || n.starts_with("initramfs-") || n.starts_with("booster-")
        })
        .collect();
    if !images.is_empty() {
        ev.push(Fact::new("boot", format!("images: {}", images.join(", "))));
    }
    let image_says = |k: Initramfs| -> bool {
        images.iter().any(|n| match k {
            Initramfs::Booster => n.starts_with("booster-"),
            Initramfs::Mkinitcpio => n.starts_with("initramfs-linux"),
            Initramfs::Dracut => {
                n.starts_with("initramfs-")
                    && n.ends_with(".img")
                    && !n.starts_with("initramfs-linux")
            }
            Initramfs::InitramfsTools => n.starts_with("initrd.img-"),
            Initramfs::Nixos => false,
        })
    };
    // Prefer a tool whose binary is installed; among several, the one whose
    // image naming is in /boot.
    let with_bin: Vec<Initramfs> = installed.iter().filter(|x| x.1).map(|x| x.0).collect();
    let pool: Vec<Initramfs> = if with_bin.is_empty() {
        installed.iter().map(|x| x.0).collect()
    } else {
        with_bin
    };
    let pick = if pool.len() > 1 {
        let by_image: Vec<Initramfs> = pool.iter().copied().filter(|k| image_says(*k)).collect();
        let chosen = by_image.first().copied().unwrap_or(pool[0]);
        conflicts.push(format!(
            "several initramfs generators are installed ({}); {} is taken as the one in use{}",
            pool.iter()
                .map(|k| k.label())
                .collect::<Vec<_>>()
                .join(", "),
            chosen.label(),
            if by_image.is_empty() {
                " (no image in /boot tells)"
            } else {
                " (the images in /boot carry its naming)"
            }
        ));
        Some(chosen)
    } else {
        pool.first().copied()
    };
    (pick, ev)
}

/// The parameters configured for the next boot, when known.
pub fn configured_params(env: &BootEnv) -> Option<Cmdline> {
    env.configured_cmdline
        .as_ref()
        .map(|f| Cmdline::parse(&f.value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Files {
        text: BTreeMap<String, String>,
        bytes: BTreeMap<String, Vec<u8>>,
        present: Vec<String>,
        dirs: BTreeMap<String, Vec<String>>,
    }

    impl BootFiles for Files {
        fn text(&self, rel: &str) -> Option<String> {
            self.text.get(rel).cloned()
        }
        fn bytes(&self, rel: &str) -> Option<Vec<u8>> {
            self.bytes.get(rel).cloned()
        }
        fn unreadable(&self, _rel: &str) -> Option<String> {
            None
        }
        fn exists(&self, rel: &str) -> bool {
            self.text.contains_key(rel)
                || self.bytes.contains_key(rel)
                || self.present.iter().any(|p| p == rel)
                || self.dirs.contains_key(rel)
        }
        fn list(&self, rel: &str) -> Vec<String> {
            self.dirs.get(rel).cloned().unwrap_or_default()
        }
    }

    fn utf16var(s: &str) -> Vec<u8> {
        let mut v = vec![6, 0, 0, 0];
        for u in s.encode_utf16().chain([0]) {
            v.extend(u.to_le_bytes());
        }
        v
    }

    #[test]
    fn loader_info_wins_over_grub_leftovers() {
        let mut f = Files::default();
        f.present.push(EFI_DIR.into());
        f.bytes.insert(
            efivar_path("LoaderInfo", LOADER_GUID),
            utf16var("systemd-boot 256.7-1-arch"),
        );
        f.bytes.insert(
            efivar_path("LoaderEntrySelected", LOADER_GUID),
            utf16var("arch.conf"),
        );
        f.text.insert(
            "etc/default/grub".into(),
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n".into(),
        );
        f.present.push("boot/grub/grub.cfg".into());
        f.text.insert(
            "boot/loader/loader.conf".into(),
            "default arch.conf\n".into(),
        );
        f.dirs
            .insert("boot/loader/entries".into(), vec!["arch.conf".into()]);
        f.text.insert(
            "boot/loader/entries/arch.conf".into(),
            "title Arch\noptions\troot=/dev/x intel_iommu=on\n".into(),
        );
        let env = detect(&f, &OsFamily::default());
        assert_eq!(env.loader, Some(Loader::SystemdBoot));
        assert_eq!(
            env.cmdline_source,
            Some(CmdlineSource::BlsEntry {
                file: "/boot/loader/entries/arch.conf".into()
            })
        );
        assert_eq!(
            env.configured_cmdline.map(|c| c.value),
            Some("root=/dev/x intel_iommu=on".to_string())
        );
        assert!(
            env.conflicts
                .iter()
                .any(|c| c.contains("GRUB configuration is present")),
            "{:?}",
            env.conflicts
        );
    }

    #[test]
    fn fedora_bls_grub_uses_grubby() {
        let mut f = Files::default();
        f.present.push(EFI_DIR.into());
        f.text.insert(
            "etc/default/grub".into(),
            "GRUB_ENABLE_BLSCFG=true\n".into(),
        );
        f.present.push("boot/grub2/grub.cfg".into());
        f.dirs
            .insert("boot/loader/entries".into(), vec!["abc-6.8.5.conf".into()]);
        f.text.insert(
            "boot/loader/entries/abc-6.8.5.conf".into(),
            "options root=x quiet\n".into(),
        );
        f.present.push("usr/bin/dracut".into());
        f.dirs.insert(
            "boot".into(),
            vec!["initramfs-6.8.5-301.fc40.x86_64.img".into()],
        );
        let env = detect(
            &f,
            &OsFamily {
                id: Some("fedora".into()),
                id_like: vec![],
            },
        );
        assert_eq!(env.loader, Some(Loader::Grub));
        assert_eq!(env.cmdline_source, Some(CmdlineSource::Grubby));
        assert_eq!(env.initramfs, Some(Initramfs::Dracut));
        assert!(env.conflicts.is_empty(), "{:?}", env.conflicts);
    }

    #[test]
    fn debian_grub_and_drop_ins() {
        let mut f = Files::default();
        f.text.insert(
            "etc/default/grub".into(),
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"\"\n".into(),
        );
        f.dirs
            .insert("etc/default/grub.d".into(), vec!["cloud.cfg".into()]);
        f.text.insert(
            "etc/default/grub.d/cloud.cfg".into(),
            "GRUB_CMDLINE_LINUX_DEFAULT=\"console=ttyS0\"\n".into(),
        );
        f.present.push("boot/grub/grub.cfg".into());
        f.present.push("usr/sbin/mkinitramfs".into());
        let env = detect(
            &f,
            &OsFamily {
                id: Some("debian".into()),
                id_like: vec![],
            },
        );
        assert_eq!(env.firmware, Firmware::Bios);
        assert_eq!(env.loader, Some(Loader::Grub));
        assert_eq!(
            env.cmdline_source,
            Some(CmdlineSource::GrubDefault {
                file: "/etc/default/grub".into(),
                regenerate: "sudo update-grub".into()
            })
        );
        assert_eq!(
            env.configured_cmdline.map(|c| c.value),
            Some("console=ttyS0".to_string())
        );
        assert_eq!(env.initramfs, Some(Initramfs::InitramfsTools));
    }

    #[test]
    fn nothing_found() {
        let env = detect(&Files::default(), &OsFamily::default());
        assert_eq!(env.loader, None);
        assert_eq!(env.cmdline_source, None);
        assert_eq!(env.initramfs, None);
    }

    #[test]
    fn several_generators_are_a_conflict() {
        let mut f = Files::default();
        f.present.push("usr/bin/mkinitcpio".into());
        f.present.push("usr/bin/booster".into());
        f.dirs
            .insert("boot".into(), vec!["booster-linux.img".into()]);
        let env = detect(&f, &OsFamily::default());
        assert_eq!(env.initramfs, Some(Initramfs::Booster));
        assert_eq!(env.initramfs_conflicts.len(), 1);
    }
}
