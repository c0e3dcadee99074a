//! `exliar vm …`: libvirt domains with the GPU.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Args)]
pub struct VmCmd {
    #[command(subcommand)]
    pub command: VmSub,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum VmSub {
    /// Build a libvirt domain from this host's facts (the card and all its functions, pinning from the CPU topology, firmware, TPM), show it as a plan, and define it as one transaction (`exliar rollback` undoes it)
    Create(Box<CreateArgs>),
    /// Change a VM exliar created (same options as create): a plan with the domain XML diff, applied as a transaction
    Edit(Box<CreateArgs>),
    /// The VMs on the connection, and which exliar manages
    List(VmListArgs),
    /// A VM's state, its card and whether it can start now, pinning, memory
    Show(VmNameArgs),
    /// Start a VM; refuses, with the reason and the fix, when its card cannot be handed over
    Start(VmStartArgs),
    /// Ask the guest to shut down (ACPI) and wait for it
    Stop(VmStopArgs),
    /// Stop a VM at once (power off)
    Destroy(VmNameArgs),
    /// Remove a VM exliar created: rolls back the transactions that created and edited it
    Delete(VmDeleteArgs),
    /// Plug a host USB device into a running VM, or take it out (`virsh attach-device --live`)
    Usb(VmUsbCmd),
}

#[derive(Debug, Args)]
pub struct VmUsbCmd {
    #[command(subcommand)]
    pub action: VmUsbSub,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum VmUsbSub {
    /// Give a host USB device to the running VM now (until it stops)
    Attach(VmUsbArgs),
    /// Take a USB device back from the running VM
    Detach(VmUsbArgs),
}

#[derive(Debug, Args)]
pub struct VmUsbArgs {
    pub name: String,
    /// The device (`exliar usb list` shows them)
    #[arg(value_name = "VENDOR:PRODUCT")]
    pub device: String,
    #[command(flatten)]
    pub connect: Connect,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct Connect {
    /// libvirt connection URI
    #[arg(long, short = 'c', value_name = "URI", env = "LIBVIRT_DEFAULT_URI", default_value = crate::vm::virsh::DEFAULT_URI)]
    pub connect: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FirmwareArg {
    /// The profile's choice
    Auto,
    /// SeaBIOS (legacy boot)
    Bios,
    /// OVMF without Secure Boot
    Efi,
    /// OVMF with Secure Boot and Microsoft's keys enrolled
    EfiSecure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VirtType {
    /// KVM: hardware virtualization (what passthrough needs)
    Kvm,
    /// QEMU's software emulation (TCG): slow, for tests and hosts without KVM
    Qemu,
}

#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// The VM's name (letters, digits, `.`, `_`, `+`, `-`)
    pub name: String,
    /// The card to give the VM: a PCI address (every function of the card goes with it), `auto` (the recommended one) or `none`
    #[arg(long, value_name = "ADDR|auto|none")]
    pub gpu: Option<String>,
    /// windows11 (the default: OVMF Secure Boot + TPM 2.0 + Hyper-V), windows10, linux; TOML files, overridable in /etc/exliar/profiles/NAME.toml
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Guest memory (`8G`, `4096M`; plain numbers are MiB); default: the profile's
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// vCPUs: pinned to whole physical cores (SMT siblings together), preferring the card's NUMA node and one L3 cache group, never core 0
    #[arg(long, value_name = "N")]
    pub cpus: Option<u32>,
    /// Back guest memory with hugepages (2M by default; 1G reserves them on the kernel command line, which needs a reboot)
    #[arg(long, value_name = "SIZE", num_args = 0..=1, default_missing_value = "2M")]
    pub hugepages: Option<String>,
    /// `SIZE` (a new qcow2 in libvirt's images pool), `PATH` (an existing image), `/dev/…` (a whole block device, refused when in use) or `none`
    #[arg(long, value_name = "SIZE|PATH|none")]
    pub disk: Option<String>,
    /// An installer ISO to attach
    #[arg(long, value_name = "PATH")]
    pub iso: Option<PathBuf>,
    /// `default` (libvirt's NAT network), `bridge=BR`, `macvtap=IF`, `user` or `none`
    #[arg(long, value_name = "KIND")]
    pub network: Option<String>,
    /// Hide the hypervisor from the guest: KVM signature hidden, a Hyper-V vendor id, no `hypervisor` CPUID bit. For NVIDIA drivers before 465 (Code 43) and anti-cheat that refuses VMs; costs some performance (Hyper-V enlightenments stay, the guest cannot see it is a VM)
    #[arg(long)]
    pub stealth: bool,
    /// Firmware
    #[arg(long, value_enum, default_value = "auto")]
    pub firmware: FirmwareArg,
    /// Looking Glass: see the VM's screen in a window on the host, without a second cable. Shared memory sized for WIDTHxHEIGHT (default: the largest mode of the host's connected monitors, else 1920x1080) by Looking Glass' formula; SPICE for input; `off` removes it (vm edit)
    #[arg(long, value_name = "WIDTHxHEIGHT", num_args = 0..=1, require_equals = true, default_missing_value = "auto")]
    pub looking_glass: Option<String>,
    /// With --looking-glass: size for HDR (8 bytes per pixel)
    #[arg(long)]
    pub hdr: bool,
    /// With --looking-glass: use the kvmfr kernel module's /dev/kvmfr0 (DMA transfers; the module is built from Looking Glass' sources) instead of /dev/shm: plans its module options, udev rule, qemu.conf device list and AppArmor rule
    #[arg(long)]
    pub kvmfr: bool,
    /// With --looking-glass: the user who runs looking-glass-client (default: the user who ran sudo)
    #[arg(long, value_name = "USER", env = "SUDO_USER")]
    pub looking_glass_user: Option<String>,
    /// Give these host USB devices to the VM (`exliar usb list` shows them); `none` removes them (vm edit)
    #[arg(long, value_name = "VENDOR:PRODUCT", num_args = 1..)]
    pub usb: Vec<String>,
    /// Give a whole PCI USB controller (every port on it) to the VM; refused when its IOMMU group is shared, or when it holds the host's keyboard or boot disk (unless --force); `none` removes them (vm edit)
    #[arg(long, value_name = "ADDR", num_args = 1..)]
    pub usb_controller: Vec<String>,
    /// Give a USB controller even though it holds the host's keyboard or boot disk
    #[arg(long)]
    pub force: bool,
    /// Pass the host's keyboard and mouse through evdev (/dev/input/by-id); both Ctrl keys together switch them between host and VM; `--evdev=off` removes them (vm edit)
    #[arg(long, value_name = "on|off", num_args = 0..=1, require_equals = true, default_missing_value = "on")]
    pub evdev: Option<String>,
    /// Windows profiles: install Windows unattended with a local administrator USER (an Autounattend.xml on a small ISO; locale and keyboard from this host). The password is asked for, or read from --password-file; never on the command line. `none` removes it (vm edit)
    #[arg(long, value_name = "USER")]
    pub unattend: Option<String>,
    /// With --unattend: read the password from the first line of FILE (mode 0600)
    #[arg(long, value_name = "FILE", requires = "unattend")]
    pub password_file: Option<PathBuf>,
    /// Who moves the card: `boot` (isolated at boot; libvirt's managed hostdevs), `dynamic` (the host keeps the card until the VM starts: exliar's libvirt hook binds it to vfio-pci then, refusing while the host uses it, and gives it back at stop; installs the hook), `single-gpu` (the host's only GPU: the hook also stops the display manager, unbinds the console and framebuffer and unloads the card's drivers while the VM runs, and brings them back after; refused without a network login unless --force). Default: single-gpu when the card is the host's only GPU, else boot
    #[arg(long, value_name = "MODE")]
    pub handover: Option<String>,
    /// The card's ROM file for the VM (`exliar vbios check` must pass it: signature, the card's ids, a UEFI image); `none` removes it (vm edit)
    #[arg(long, value_name = "FILE")]
    pub vbios: Option<PathBuf>,
    /// Hypervisor type (default kvm)
    #[arg(long, value_enum)]
    pub virt_type: Option<VirtType>,
    #[command(flatten)]
    pub connect: Connect,
    /// Print only the domain XML and exit
    #[arg(long, conflicts_with = "json")]
    pub print_xml: bool,
    /// Apply without asking
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print the versioned JSON result
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VmListArgs {
    #[command(flatten)]
    pub connect: Connect,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VmNameArgs {
    pub name: String,
    #[command(flatten)]
    pub connect: Connect,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VmStartArgs {
    pub name: String,
    /// Start with the CPUs paused (`virsh start --paused`)
    #[arg(long)]
    pub paused: bool,
    #[command(flatten)]
    pub connect: Connect,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VmStopArgs {
    pub name: String,
    /// Seconds to wait for the guest to power off
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    #[command(flatten)]
    pub connect: Connect,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VmDeleteArgs {
    pub name: String,
    /// Also remove disk images exliar created for it that were written to since
    #[arg(long)]
    pub delete_disks: bool,
    /// Do it without asking
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub connect: Connect,
    #[arg(long)]
    pub json: bool,
}

pub fn run(root: &Path, cmd: &VmCmd) -> anyhow::Result<u8> {
    match &cmd.command {
        VmSub::Create(a) => lifecycle::create(root, a, false),
        VmSub::Edit(a) => lifecycle::create(root, a, true),
        VmSub::List(a) => lifecycle::list(a),
        VmSub::Show(a) => lifecycle::show(root, a),
        VmSub::Start(a) => lifecycle::start(root, a),
        VmSub::Stop(a) => lifecycle::stop(a),
        VmSub::Destroy(a) => lifecycle::destroy(a),
        VmSub::Delete(a) => lifecycle::delete(root, a),
        VmSub::Usb(u) => match &u.action {
            VmUsbSub::Attach(a) => lifecycle::usb(a, true),
            VmUsbSub::Detach(a) => lifecycle::usb(a, false),
        },
    }
}

mod create;
mod lifecycle;
