//! Remedies: the exact command or setting, for this distribution and boot
//! loader. Pure text builders.

use crate::analyze::bootenv::{BootEnv, CmdlineSource, OsFamily};

/// Package-manager family of the distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Debian,
    Fedora,
    Arch,
    Suse,
    Nixos,
    Unknown,
}

impl Family {
    pub fn of(os: &OsFamily) -> Self {
        if os.is("nixos") {
            Family::Nixos
        } else if os.is("debian") || os.is("ubuntu") {
            Family::Debian
        } else if os.is("fedora") || os.is("rhel") || os.is("centos") {
            Family::Fedora
        } else if os.is("arch") || os.is("archlinux") {
            Family::Arch
        } else if os.is("suse")
            || os.is("opensuse")
            || os.id.as_deref().is_some_and(|i| i.starts_with("opensuse"))
        {
            Family::Suse
        } else {
            Family::Unknown
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Family::Debian => "apt",
            Family::Fedora => "dnf",
            Family::Arch => "pacman",
            Family::Suse => "zypper",
            Family::Nixos => "nix",
            Family::Unknown => "unknown",
        }
    }
}

/// Something to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Package {
    Qemu,
    Libvirt,
    Ovmf,
    Swtpm,
}

/// The install command (or NixOS option) for a package.
pub fn install(family: Family, what: Package) -> String {
    let pkgs = match (family, what) {
        (Family::Nixos, Package::Qemu | Package::Libvirt) => {
            return "set `virtualisation.libvirtd.enable = true;` in your NixOS configuration, then `sudo nixos-rebuild switch`".to_string();
        }
        (Family::Nixos, Package::Ovmf) => {
            return "set `virtualisation.libvirtd.qemu.ovmf.enable = true;` (NixOS before 25.05; newer releases ship OVMF with QEMU), then `sudo nixos-rebuild switch`".to_string();
        }
        (Family::Nixos, Package::Swtpm) => {
            return "set `virtualisation.libvirtd.qemu.swtpm.enable = true;`, then `sudo nixos-rebuild switch`".to_string();
        }
        (Family::Debian, Package::Qemu) => "qemu-system-x86",
        (Family::Debian, Package::Libvirt) => "libvirt-daemon-system libvirt-clients",
        (Family::Debian, Package::Ovmf) => "ovmf",
        (Family::Debian | Family::Fedora, Package::Swtpm) => "swtpm swtpm-tools",
        (Family::Fedora, Package::Qemu) => "qemu-kvm",
        (Family::Fedora, Package::Libvirt) => "libvirt",
        (Family::Fedora, Package::Ovmf) => "edk2-ovmf",
        (Family::Arch, Package::Qemu) => "qemu-desktop",
        (Family::Arch, Package::Libvirt) => "libvirt",
        (Family::Arch, Package::Ovmf) => "edk2-ovmf",
        (Family::Arch | Family::Suse, Package::Swtpm) => "swtpm",
        (Family::Suse, Package::Qemu) => "qemu-x86",
        (Family::Suse, Package::Libvirt) => "libvirt",
        (Family::Suse, Package::Ovmf) => "qemu-ovmf-x86_64",
        (Family::Unknown, Package::Qemu) => "QEMU (qemu-system-x86_64)",
        (Family::Unknown, Package::Libvirt) => "libvirt",
        (Family::Unknown, Package::Ovmf) => "OVMF (edk2 x86_64 UEFI firmware)",
        (Family::Unknown, Package::Swtpm) => "swtpm",
    };
    match family {
        Family::Debian => format!("sudo apt install {pkgs}"),
        Family::Fedora => format!("sudo dnf install {pkgs}"),
        Family::Arch => format!("sudo pacman -S --needed {pkgs}"),
        Family::Suse => format!("sudo zypper install {pkgs}"),
        Family::Nixos | Family::Unknown => format!("install {pkgs} with your package manager"),
    }
}

/// How to add kernel parameters persistently, for the detected boot setup.
pub fn add_params(boot: &BootEnv, params: &[&str]) -> String {
    let p = params.join(" ");
    match &boot.cmdline_source {
        Some(CmdlineSource::GrubDefault { file, regenerate }) => {
            let var = if regenerate.contains("grub2-mkconfig") {
                "GRUB_CMDLINE_LINUX"
            } else {
                "GRUB_CMDLINE_LINUX_DEFAULT"
            };
            format!("add `{p}` to {var}=\"...\" in {file}, then run `{regenerate}`")
        }
        Some(CmdlineSource::Grubby) => {
            format!("sudo grubby --update-kernel=ALL --args=\"{p}\"")
        }
        Some(CmdlineSource::BlsEntry { file }) => format!(
            "append `{p}` to the `options` line of {file} (systemd-boot reads it at the next boot; nothing to regenerate)"
        ),
        Some(CmdlineSource::KernelCmdlineFile { regenerate }) => {
            format!("add `{p}` to /etc/kernel/cmdline, then {regenerate}")
        }
        Some(CmdlineSource::Kernelstub) => format!("sudo kernelstub -a \"{p}\""),
        Some(CmdlineSource::ProxmoxBootTool) => {
            format!("add `{p}` to /etc/kernel/cmdline, then run `sudo proxmox-boot-tool refresh`")
        }
        Some(CmdlineSource::RefindConf { file }) => format!(
            "add `{p}` to the options (the second quoted field) of every line of {file}; rEFInd reads it at boot"
        ),
        Some(CmdlineSource::LimineConf { file }) => format!(
            "append `{p}` to the `cmdline:` line of the Linux entries in {file}{}",
            if boot_secure(boot) {
                " (Secure Boot: if the config checksum is enrolled with `limine enroll-config`, enroll it again or the system will not boot)"
            } else {
                ""
            }
        ),
        Some(CmdlineSource::LimineDefault) => format!(
            "add `{p}` to KERNEL_CMDLINE[default] in /etc/default/limine (e.g. `KERNEL_CMDLINE[default]+=\" {p}\"`), then regenerate limine.conf with your Limine tool (limine-update or limine-mkinitcpio){}",
            if boot_secure(boot) {
                "; with Secure Boot and an enrolled config checksum, enroll it again"
            } else {
                ""
            }
        ),
        Some(CmdlineSource::Nixos) => {
            let list: Vec<String> = params.iter().map(|x| format!("\"{x}\"")).collect();
            format!(
                "add `boot.kernelParams = [ {} ];` to your NixOS configuration, then `sudo nixos-rebuild switch`",
                list.join(" ")
            )
        }
        Some(CmdlineSource::Ostree) => {
            let args: Vec<String> = params.iter().map(|x| format!("--append={x}")).collect();
            format!("sudo rpm-ostree kargs {}", args.join(" "))
        }
        None => format!(
            "add `{p}` to the kernel command line in your boot loader's configuration (no boot loader was detected)"
        ),
    }
}

/// How to remove a kernel parameter persistently.
pub fn remove_param(boot: &BootEnv, param: &str) -> String {
    match &boot.cmdline_source {
        Some(CmdlineSource::GrubDefault { file, regenerate }) => {
            format!(
                "remove `{param}` from the GRUB_CMDLINE_LINUX* lines of {file}, then run `{regenerate}`"
            )
        }
        Some(CmdlineSource::Grubby) => {
            format!("sudo grubby --update-kernel=ALL --remove-args=\"{param}\"")
        }
        Some(CmdlineSource::BlsEntry { file }) => {
            format!("remove `{param}` from the `options` line of {file}")
        }
        Some(CmdlineSource::KernelCmdlineFile { regenerate }) => {
            format!("remove `{param}` from /etc/kernel/cmdline, then {regenerate}")
        }
        Some(CmdlineSource::Kernelstub) => format!("sudo kernelstub -d \"{param}\""),
        Some(CmdlineSource::ProxmoxBootTool) => {
            format!(
                "remove `{param}` from /etc/kernel/cmdline, then run `sudo proxmox-boot-tool refresh`"
            )
        }
        Some(CmdlineSource::RefindConf { file }) => {
            format!("remove `{param}` from every line of {file}")
        }
        Some(CmdlineSource::LimineConf { file }) => {
            format!("remove `{param}` from the `cmdline:` lines of {file}")
        }
        Some(CmdlineSource::LimineDefault) => format!(
            "remove `{param}` from KERNEL_CMDLINE in /etc/default/limine, then regenerate limine.conf"
        ),
        Some(CmdlineSource::Nixos) => format!(
            "remove \"{param}\" from boot.kernelParams in your NixOS configuration, then `sudo nixos-rebuild switch`"
        ),
        Some(CmdlineSource::Ostree) => format!("sudo rpm-ostree kargs --delete={param}"),
        None => format!(
            "remove `{param}` from the kernel command line in your boot loader's configuration"
        ),
    }
}

fn boot_secure(boot: &BootEnv) -> bool {
    boot.secure_boot == Some(true)
}
