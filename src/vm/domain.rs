//! The libvirt domain exliar defines: a typed [`DomainSpec`], its XML
//! ([`to_xml`], pure; every value escaped by quick-xml), and what later
//! commands read back from a domain's XML ([`read_meta`],
//! [`read_summary`]).

use std::path::PathBuf;

use quick_xml::events::Event;
use serde::{Deserialize, Serialize};

use super::Pinning;
use crate::model::PciAddress;
use crate::xmlout::{El, el};

/// exliar's metadata namespace.
pub const NS: &str = "https://exliar.dev/xmlns/vm/1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Firmware {
    Bios,
    Efi {
        code: PathBuf,
        vars: PathBuf,
        secure_boot: bool,
    },
}

impl From<super::firmware::Firmware> for Firmware {
    fn from(f: super::firmware::Firmware) -> Self {
        Firmware::Efi {
            code: f.code,
            vars: f.vars,
            secure_boot: f.secure_boot,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum DiskSource {
    File { path: PathBuf, format: String },
    Block { path: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disk {
    pub source: DiskSource,
    pub virtio: bool,
}

impl Disk {
    pub fn file(path: PathBuf, format: &str, virtio: bool) -> Self {
        Disk {
            source: DiskSource::File {
                path,
                format: format.to_string(),
            },
            virtio,
        }
    }
    pub fn block(path: PathBuf, virtio: bool) -> Self {
        Disk {
            source: DiskSource::Block { path },
            virtio,
        }
    }
}

/// exliar's metadata in the domain (`<metadata><exliar:vm>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmMeta {
    pub profile: String,
    pub gpu: Option<PciAddress>,
    pub functions: Vec<PciAddress>,
    /// The create options, as JSON (`vm edit` starts from them).
    pub options: String,
    pub version: String,
}

/// Everything the domain says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainSpec {
    pub name: String,
    /// Kept across `vm edit` (libvirt matches a redefinition by it).
    pub uuid: Option<String>,
    pub kvm: bool,
    pub memory_mib: u64,
    pub hugepages_kib: Option<u64>,
    pub vcpus: u32,
    pub pinning: Option<Pinning>,
    pub amd: bool,
    pub firmware: Firmware,
    pub tpm: bool,
    pub hyperv: bool,
    pub localtime: bool,
    pub stealth: bool,
    /// The card's functions; all on one guest slot, function numbers kept.
    pub hostdevs: Vec<PciAddress>,
    /// libvirt moves the card to vfio-pci and back (`managed='yes'`); not
    /// with handover `dynamic`, where exliar's hook does.
    pub managed: bool,
    pub disks: Vec<Disk>,
    pub cdroms: Vec<PathBuf>,
    pub network: super::request::NetworkArg,
    pub nic_virtio: bool,
    /// Kept across `vm edit`.
    pub mac: Option<String>,
    pub meta: VmMeta,
    /// Looking Glass, USB, input, the card's ROM (the VM-extras options).
    pub extras: Extras,
}

/// A USB device by its ids (`VENDOR:PRODUCT`, hex; so in JSON too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UsbId {
    pub vendor: u16,
    pub product: u16,
}

impl std::fmt::Display for UsbId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vendor, self.product)
    }
}

impl Serialize for UsbId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for UsbId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for UsbId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?}: give a USB device as VENDOR:PRODUCT in hex, e.g. 046d:c52b (`exliar usb list`)"
            )
        };
        let (v, p) = s.trim().split_once(':').ok_or_else(bad)?;
        let hex = |x: &str| {
            if x.is_empty() || x.len() > 4 {
                return Err(bad());
            }
            u16::from_str_radix(x, 16).map_err(|_| bad())
        };
        Ok(UsbId {
            vendor: hex(v)?,
            product: hex(p)?,
        })
    }
}

/// An evdev input device given to the VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evdev {
    /// `/dev/input/by-id/…-event-kbd|mouse`.
    pub path: PathBuf,
    /// The keyboard: grabs all devices, both Ctrl keys switch host/guest.
    pub keyboard: bool,
}

/// The VM-extras parts of a domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Extras {
    pub looking_glass: Option<super::looking_glass::LgDevice>,
    /// SPICE for input and audio (Looking Glass' client uses it), with
    /// virtio keyboard and mouse.
    pub spice: bool,
    pub usb: Vec<UsbId>,
    /// Whole PCI USB controllers, each on its own root port.
    pub usb_controllers: Vec<PciAddress>,
    pub evdev: Vec<Evdev>,
    /// The card's ROM (`<rom file=…>` on function 0), checked.
    pub rom: Option<PathBuf>,
}

/// The guest bus of the first passed-through USB controller (each on a
/// root port of its own after the card's).
pub const USB_CONTROLLER_BUS: u32 = CARD_BUS + 1;

/// The guest bus exliar's card sits on (a pcie-root-port it declares with
/// this index, so libvirt's own automatic addresses never collide).
pub const CARD_BUS: u32 = 0x10;

/// libvirt's namespace for QEMU pass-through arguments.
pub const QEMU_NS: &str = "http://libvirt.org/schemas/domain/qemu/1.0";

/// Characters libvirt and XML 1.0 cannot carry; refused before any XML is
/// made (`\t`, `\n` and `\r` are allowed in text by XML, not in names).
pub fn check_text(what: &str, v: &str) -> Result<(), String> {
    if v.chars().any(|c| c.is_control()) {
        return Err(format!("{what} {v:?} holds a control character"));
    }
    Ok(())
}

fn cpuset(c: &[u32]) -> String {
    c.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The domain XML.
pub fn to_xml(s: &DomainSpec) -> String {
    let mut d = el("domain").a("type", if s.kvm { "kvm" } else { "qemu" });
    if matches!(
        s.extras.looking_glass,
        Some(super::looking_glass::LgDevice::Kvmfr { .. })
    ) {
        d = d.a("xmlns:qemu", QEMU_NS);
    }
    d = d.k(el("name").t(&s.name));
    if let Some(u) = &s.uuid {
        d = d.k(el("uuid").t(u));
    }
    let meta = el("exliar:vm")
        .a("xmlns:exliar", NS)
        .k(el("exliar:profile").t(&s.meta.profile))
        .k(el("exliar:gpu").t(s.meta.gpu.map(|g| g.to_string()).unwrap_or_default()))
        .k(el("exliar:functions").t(s
            .meta
            .functions
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join(",")))
        .k(el("exliar:options").t(&s.meta.options))
        .k(el("exliar:version").t(&s.meta.version));
    d = d.k(el("metadata").k(meta));
    d = d.k(el("memory").a("unit", "MiB").t(s.memory_mib));
    if let Some(kib) = s.hugepages_kib {
        d = d.k(el("memoryBacking")
            .k(el("hugepages").k(el("page").a("size", kib).a("unit", "KiB")))
            .k(el("locked")));
    }
    d = d.k(el("vcpu").a("placement", "static").t(s.vcpus));
    if let Some(p) = &s.pinning {
        if !p.iothread.is_empty() {
            d = d.k(el("iothreads").t(1));
        }
        let mut ct = el("cputune");
        for (i, c) in p.vcpus.iter().enumerate() {
            ct = ct.k(el("vcpupin").a("vcpu", i).a("cpuset", c));
        }
        ct = ct.k(el("emulatorpin").a("cpuset", cpuset(&p.emulator)));
        if !p.iothread.is_empty() {
            ct = ct.k(el("iothreadpin")
                .a("iothread", 1)
                .a("cpuset", cpuset(&p.iothread)));
        }
        d = d.k(ct);
    }
    // Firmware.
    let mut os = el("os").k(el("type").a("arch", "x86_64").a("machine", "q35").t("hvm"));
    let secure = matches!(
        s.firmware,
        Firmware::Efi {
            secure_boot: true,
            ..
        }
    );
    if let Firmware::Efi {
        code,
        vars,
        secure_boot,
    } = &s.firmware
    {
        os = os
            .k(el("loader")
                .a("readonly", "yes")
                .a("secure", if *secure_boot { "yes" } else { "no" })
                .a("type", "pflash")
                .t(code.display()))
            .k(el("nvram").a("template", vars.display()));
    }
    os = os
        .k(el("boot").a("dev", "hd"))
        .k(el("boot").a("dev", "cdrom"));
    d = d.k(os);
    // Features.
    let mut f = el("features").k(el("acpi")).k(el("apic"));
    if s.hyperv || s.stealth {
        let mut hv = el("hyperv").a("mode", "custom");
        if s.hyperv {
            hv = hv
                .k(el("relaxed").a("state", "on"))
                .k(el("vapic").a("state", "on"))
                .k(el("spinlocks").a("state", "on").a("retries", 8191))
                .k(el("vpindex").a("state", "on"))
                .k(el("runtime").a("state", "on"))
                .k(el("synic").a("state", "on"))
                .k(el("stimer").a("state", "on"))
                .k(el("reset").a("state", "on"))
                .k(el("frequencies").a("state", "on"))
                .k(el("tlbflush").a("state", "on"))
                .k(el("ipi").a("state", "on"));
        }
        if s.stealth {
            hv = hv.k(el("vendor_id").a("state", "on").a("value", "exliarhv0001"));
        }
        f = f.k(hv);
    }
    if s.stealth {
        f = f.k(el("kvm").k(el("hidden").a("state", "on")));
    }
    if secure {
        f = f.k(el("smm").a("state", "on"));
    }
    d = d.k(f);
    // CPU.
    let mut cpu = if s.kvm {
        el("cpu")
            .a("mode", "host-passthrough")
            .a("check", "none")
            .a("migratable", "off")
    } else {
        // TCG cannot pass the host CPU through: QEMU's `max` model
        el("cpu")
            .a("mode", "maximum")
            .a("check", "none")
            .a("migratable", "off")
    };
    let g = s
        .pinning
        .as_ref()
        .map(|p| p.guest)
        .unwrap_or(super::GuestTopology {
            sockets: 1,
            dies: 1,
            cores: s.vcpus,
            threads: 1,
        });
    cpu = cpu.k(el("topology")
        .a("sockets", g.sockets)
        .a("dies", g.dies)
        .a("cores", g.cores)
        .a("threads", g.threads));
    if s.kvm {
        cpu = cpu.k(el("cache").a("mode", "passthrough"));
        if s.amd {
            cpu = cpu.k(el("feature").a("policy", "require").a("name", "topoext"));
        }
    }
    if s.stealth {
        cpu = cpu.k(el("feature").a("policy", "disable").a("name", "hypervisor"));
    }
    d = d.k(cpu);
    // Clock.
    let mut clock = el("clock").a("offset", if s.localtime { "localtime" } else { "utc" });
    clock = clock
        .k(el("timer").a("name", "rtc").a("tickpolicy", "catchup"))
        .k(el("timer").a("name", "pit").a("tickpolicy", "delay"))
        .k(el("timer").a("name", "hpet").a("present", "no"));
    if s.hyperv && s.kvm {
        clock = clock.k(el("timer").a("name", "hypervclock").a("present", "yes"));
    }
    d = d.k(clock);
    d = d
        .k(el("on_poweroff").t("destroy"))
        .k(el("on_reboot").t("restart"))
        .k(el("on_crash").t("destroy"));
    if secure || s.hyperv {
        d = d.k(el("pm")
            .k(el("suspend-to-mem").a("enabled", "no"))
            .k(el("suspend-to-disk").a("enabled", "no")));
    }
    // Devices.
    let mut dev = el("devices");
    let letters = |i: usize| format!("{}", (b'a' + (i % 26) as u8) as char);
    let mut sata = 0usize;
    let mut vd = 0usize;
    for disk in &s.disks {
        let (kind, src) = match &disk.source {
            DiskSource::File { path, .. } => ("file", el("source").a("file", path.display())),
            DiskSource::Block { path } => ("block", el("source").a("dev", path.display())),
        };
        let fmt = match &disk.source {
            DiskSource::File { format, .. } => format.as_str(),
            DiskSource::Block { .. } => "raw",
        };
        let target = if disk.virtio {
            vd += 1;
            el("target")
                .a("dev", format!("vd{}", letters(vd - 1)))
                .a("bus", "virtio")
        } else {
            sata += 1;
            el("target")
                .a("dev", format!("sd{}", letters(sata - 1)))
                .a("bus", "sata")
        };
        let mut drv = el("driver")
            .a("name", "qemu")
            .a("type", fmt)
            .a("cache", "none")
            .a("discard", "unmap");
        if disk.virtio && s.pinning.as_ref().is_some_and(|p| !p.iothread.is_empty()) {
            drv = drv.a("iothread", 1);
        }
        dev = dev.k(el("disk")
            .a("type", kind)
            .a("device", "disk")
            .k(drv)
            .k(src)
            .k(target));
    }
    for iso in &s.cdroms {
        sata += 1;
        dev = dev.k(el("disk")
            .a("type", "file")
            .a("device", "cdrom")
            .k(el("driver").a("name", "qemu").a("type", "raw"))
            .k(el("source").a("file", iso.display()))
            .k(el("target")
                .a("dev", format!("sd{}", letters(sata - 1)))
                .a("bus", "sata"))
            .k(el("readonly")));
    }
    // The card's own root port, then every function on its slot.
    if !s.hostdevs.is_empty() {
        dev = dev.k(el("controller")
            .a("type", "pci")
            .a("index", CARD_BUS)
            .a("model", "pcie-root-port"));
    }
    for (i, h) in s.hostdevs.iter().enumerate() {
        let src = el("address")
            .a("domain", format!("0x{:04x}", h.domain))
            .a("bus", format!("0x{:02x}", h.bus))
            .a("slot", format!("0x{:02x}", h.device))
            .a("function", format!("0x{:x}", h.function));
        let mut guest = el("address")
            .a("type", "pci")
            .a("domain", "0x0000")
            .a("bus", format!("0x{CARD_BUS:02x}"))
            .a("slot", "0x00")
            .a("function", format!("0x{:x}", h.function));
        if i == 0 && s.hostdevs.len() > 1 {
            guest = guest.a("multifunction", "on");
        }
        let mut hd = el("hostdev")
            .a("mode", "subsystem")
            .a("type", "pci")
            .a("managed", if s.managed { "yes" } else { "no" })
            .k(el("source").k(src));
        if i == 0
            && let Some(rom) = &s.extras.rom
        {
            hd = hd.k(el("rom").a("bar", "on").a("file", rom.display()));
        }
        dev = dev.k(hd.k(guest));
    }
    // Whole USB controllers, each on a root port of its own.
    for (i, c) in s.extras.usb_controllers.iter().enumerate() {
        let bus = USB_CONTROLLER_BUS + i as u32;
        dev = dev
            .k(el("controller")
                .a("type", "pci")
                .a("index", bus)
                .a("model", "pcie-root-port"))
            .k(el("hostdev")
                .a("mode", "subsystem")
                .a("type", "pci")
                .a("managed", "yes")
                .k(el("source").k(el("address")
                    .a("domain", format!("0x{:04x}", c.domain))
                    .a("bus", format!("0x{:02x}", c.bus))
                    .a("slot", format!("0x{:02x}", c.device))
                    .a("function", format!("0x{:x}", c.function))))
                .k(el("address")
                    .a("type", "pci")
                    .a("domain", "0x0000")
                    .a("bus", format!("0x{bus:02x}"))
                    .a("slot", "0x00")
                    .a("function", "0x0")));
    }
    if !s.hostdevs.is_empty() || !s.extras.usb.is_empty() || s.extras.spice {
        // USB 3 for what the VM gets at create or hot-plugged later (with a
        // card and no emulated display, libvirt's default would be USB 2)
        dev = dev.k(el("controller")
            .a("type", "usb")
            .a("index", 0)
            .a("model", "qemu-xhci")
            .a("ports", 15));
    }
    for u in &s.extras.usb {
        dev = dev.k(usb_hostdev(*u));
    }
    use super::request::NetworkArg;
    let model = el("model").a("type", if s.nic_virtio { "virtio" } else { "e1000e" });
    let mac = s.mac.as_ref().map(|m| el("mac").a("address", m));
    let iface = match &s.network {
        NetworkArg::None => None,
        NetworkArg::Network(n) => Some(
            el("interface")
                .a("type", "network")
                .k(el("source").a("network", n)),
        ),
        NetworkArg::Bridge(b) => Some(
            el("interface")
                .a("type", "bridge")
                .k(el("source").a("bridge", b)),
        ),
        NetworkArg::Macvtap(i) => Some(
            el("interface")
                .a("type", "direct")
                .k(el("source").a("dev", i).a("mode", "bridge")),
        ),
        NetworkArg::User => Some(el("interface").a("type", "user")),
    };
    if let Some(mut i) = iface {
        if let Some(m) = mac {
            i = i.first(m);
        }
        dev = dev.k(i.k(model));
    }
    if s.tpm {
        dev = dev.k(el("tpm")
            .a("model", "tpm-crb")
            .k(el("backend").a("type", "emulator").a("version", "2.0")));
    }
    for e in &s.extras.evdev {
        let mut src = el("source").a("dev", e.path.display());
        if e.keyboard {
            src = src
                .a("grab", "all")
                .a("grabToggle", "ctrl-ctrl")
                .a("repeat", "on");
        }
        dev = dev.k(el("input").a("type", "evdev").k(src));
    }
    if !s.extras.evdev.is_empty() || s.extras.spice {
        // paravirtual input: what evdev and SPICE feed the guest through
        dev = dev
            .k(el("input").a("type", "mouse").a("bus", "virtio"))
            .k(el("input").a("type", "keyboard").a("bus", "virtio"));
    }
    if let Some(super::looking_glass::LgDevice::Shmem { size_mib }) = &s.extras.looking_glass {
        dev = dev.k(el("shmem")
            .a("name", "looking-glass")
            .k(el("model").a("type", "ivshmem-plain"))
            .k(el("size").a("unit", "M").t(size_mib)));
    }
    if s.extras.spice {
        // Looking Glass' client sends input (and takes audio) over SPICE;
        // the card is the display
        dev = dev
            .k(el("graphics")
                .a("type", "spice")
                .a("autoport", "yes")
                .k(el("listen").a("type", "address").a("address", "127.0.0.1"))
                .k(el("image").a("compression", "off"))
                .k(el("gl").a("enable", "no")))
            .k(el("channel").a("type", "spicevmc").k(el("target")
                .a("type", "virtio")
                .a("name", "com.redhat.spice.0")))
            .k(el("sound").a("model", "ich9").k(el("audio").a("id", 1)))
            .k(el("audio").a("id", 1).a("type", "spice"));
    }
    if s.hostdevs.is_empty() {
        dev = dev
            .k(el("input").a("type", "tablet").a("bus", "usb"))
            .k(el("graphics")
                .a("type", "vnc")
                .a("port", "-1")
                .a("autoport", "yes")
                .k(el("listen").a("type", "address").a("address", "127.0.0.1")))
            .k(el("video").k(el("model").a("type", "virtio").a("heads", 1)));
    } else {
        // the card is the display: no emulated one (the VM-extras issue
        // adds Looking Glass and input)
        dev = dev.k(el("video").k(el("model").a("type", "none")));
    }
    dev = dev.k(el("memballoon").a("model", "none"));
    d = d.k(dev);
    if let Some(super::looking_glass::LgDevice::Kvmfr { size_mib, json }) = &s.extras.looking_glass
    {
        let mut cl = el("qemu:commandline");
        for a in super::looking_glass::kvmfr_args(*size_mib, *json) {
            cl = cl.k(el("qemu:arg").a("value", a));
        }
        d = d.k(cl);
    }
    let mut out = String::new();
    d.render_quoted(0, '\'', &mut out);
    out
}

/// `<hostdev type='usb'>` for a device by its ids (also what `vm usb
/// attach` hot-plugs). `startupPolicy='optional'`: the VM still starts
/// when the device is unplugged.
pub fn usb_hostdev_xml(u: UsbId) -> String {
    let mut out = String::new();
    usb_hostdev(u).render_quoted(0, '\'', &mut out);
    out
}

fn usb_hostdev(u: UsbId) -> El {
    el("hostdev")
        .a("mode", "subsystem")
        .a("type", "usb")
        .a("managed", "yes")
        .k(el("source")
            .a("startupPolicy", "optional")
            .k(el("vendor").a("id", format!("0x{:04x}", u.vendor)))
            .k(el("product").a("id", format!("0x{:04x}", u.product))))
}

#[derive(Debug, thiserror::Error)]
#[error("the domain XML could not be read: {0}")]
pub struct DomainError(String);

fn local(name: &[u8]) -> &[u8] {
    name.rsplit(|b| *b == b':').next().unwrap_or(name)
}

/// Walk the XML: for each element, its path of local names, attributes
/// and text.
/// An element's attributes: (name, value).
type Attrs = Vec<(Vec<u8>, String)>;

fn walk(
    xml: &str,
    mut f: impl FnMut(&[Vec<u8>], &[(Vec<u8>, String)], Option<&str>),
) -> Result<(), DomainError> {
    let mut r = quick_xml::Reader::from_str(xml);
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut stack: Vec<(Attrs, String)> = Vec::new();
    loop {
        match r.read_event().map_err(|e| DomainError(e.to_string()))? {
            Event::Start(e) => {
                let qn = e.name();
                let name: &str = qn.as_ref();
                path.push(local(name.as_bytes()).to_vec());
                let attrs = attrs_of(&e)?;
                f(&path, &attrs, None);
                stack.push((attrs, String::new()));
            }
            Event::Empty(e) => {
                let qn = e.name();
                let name: &str = qn.as_ref();
                path.push(local(name.as_bytes()).to_vec());
                let attrs = attrs_of(&e)?;
                f(&path, &attrs, None);
                path.pop();
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.1.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.1.push_str(&t);
                }
            }
            Event::GeneralRef(g) => {
                let name: &str = &g;
                let c = match name {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    n => n
                        .strip_prefix("#x")
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .or_else(|| n.strip_prefix('#').and_then(|d| d.parse().ok()))
                        .and_then(char::from_u32),
                };
                if let (Some(top), Some(c)) = (stack.last_mut(), c) {
                    top.1.push(c);
                }
            }
            Event::End(_) => {
                if let Some((attrs, text)) = stack.pop() {
                    let t = text.trim();
                    if !t.is_empty() {
                        f(&path, &attrs, Some(t));
                    }
                }
                path.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(())
}

fn attrs_of(e: &quick_xml::events::BytesStart) -> Result<Vec<(Vec<u8>, String)>, DomainError> {
    let mut v = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|e| DomainError(e.to_string()))?;
        let val = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| DomainError(e.to_string()))?
            .into_owned();
        let key: &str = a.key.as_ref();
        v.push((key.as_bytes().to_vec(), val));
    }
    Ok(v)
}

fn is(path: &[Vec<u8>], want: &[&str]) -> bool {
    path.len() == want.len() && path.iter().zip(want).all(|(a, b)| a == b.as_bytes())
}

fn attr<'a>(attrs: &'a [(Vec<u8>, String)], k: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(a, _)| a == k.as_bytes())
        .map(|(_, v)| v.as_str())
}

/// exliar's metadata, if the domain has it (matched by namespace URI:
/// libvirt may rewrite the prefix).
pub fn read_meta(xml: &str) -> Result<Option<VmMeta>, DomainError> {
    let mut found = false;
    let mut m = VmMeta {
        profile: String::new(),
        gpu: None,
        functions: Vec::new(),
        options: String::new(),
        version: String::new(),
    };
    walk(xml, |path, attrs, text| {
        if path.len() == 3
            && is(&path[..2], &["domain", "metadata"])
            && path[2] == b"vm"
            && text.is_none()
        {
            found |= attrs
                .iter()
                .any(|(k, v)| k.starts_with(b"xmlns") && v == NS);
        }
        if let (true, Some(t)) = (
            found && path.len() == 4 && is(&path[..3], &["domain", "metadata", "vm"]),
            text,
        ) {
            match path[3].as_slice() {
                b"profile" => m.profile = t.to_string(),
                b"gpu" => m.gpu = PciAddress::parse(t).ok(),
                b"functions" => {
                    m.functions = t
                        .split(',')
                        .filter_map(|a| PciAddress::parse(a).ok())
                        .collect()
                }
                b"options" => m.options = t.to_string(),
                b"version" => m.version = t.to_string(),
                _ => {}
            }
        }
    })?;
    Ok(found.then_some(m))
}

/// Host CPUs of the vCPUs and the emulator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PinSummary {
    pub vcpus: Vec<String>,
    pub emulator: Option<String>,
}

impl PinSummary {
    pub fn describe(&self) -> String {
        format!(
            "vCPUs on host CPUs {}; emulator on {}",
            self.vcpus.join(" "),
            self.emulator.as_deref().unwrap_or("any")
        )
    }
}

/// What `vm show` reports of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainSummary {
    pub uuid: Option<String>,
    pub memory_kib: u64,
    pub vcpus: u32,
    pub pinning: Option<PinSummary>,
    /// PCI hostdevs: (host address, managed).
    pub hostdevs: Vec<(PciAddress, bool)>,
    /// USB hostdevs by ids.
    pub usb: Vec<UsbId>,
    /// Looking Glass' shared memory: the file or device, and its size.
    pub looking_glass: Option<(String, u64)>,
    pub disks: Vec<String>,
    pub macs: Vec<String>,
}

pub fn read_summary(xml: &str) -> Result<DomainSummary, DomainError> {
    let mut s = DomainSummary {
        uuid: None,
        memory_kib: 0,
        vcpus: 0,
        pinning: None,
        hostdevs: Vec::new(),
        usb: Vec::new(),
        looking_glass: None,
        disks: Vec::new(),
        macs: Vec::new(),
    };
    let mut lg_shmem = false;
    let mut usbdev = false;
    let mut usb_vendor: Option<u16> = None;
    let mut unit = String::from("KiB");
    let mut managed = false;
    let mut pcidev = false;
    let mut pins: Vec<String> = Vec::new();
    let mut emu = None;
    walk(xml, |path, attrs, text| {
        if is(path, &["domain", "uuid"])
            && let Some(t) = text
        {
            s.uuid = Some(t.to_string());
        }
        if is(path, &["domain", "memory"]) {
            match text {
                None => unit = attr(attrs, "unit").unwrap_or("KiB").to_string(),
                Some(t) => {
                    let n: u64 = t.parse().unwrap_or(0);
                    s.memory_kib = match unit.as_str() {
                        "b" | "bytes" => n / 1024,
                        "M" | "MiB" => n * 1024,
                        "G" | "GiB" => n * 1024 * 1024,
                        _ => n,
                    };
                }
            }
        }
        if is(path, &["domain", "vcpu"])
            && let Some(t) = text
        {
            s.vcpus = t.parse().unwrap_or(0);
        }
        if is(path, &["domain", "cputune", "vcpupin"]) && text.is_none() {
            pins.push(attr(attrs, "cpuset").unwrap_or("?").to_string());
        }
        if is(path, &["domain", "cputune", "emulatorpin"]) && text.is_none() {
            emu = attr(attrs, "cpuset").map(str::to_string);
        }
        if is(path, &["domain", "devices", "hostdev"]) && text.is_none() {
            pcidev = attr(attrs, "type") == Some("pci");
            usbdev = attr(attrs, "type") == Some("usb");
            usb_vendor = None;
            managed = attr(attrs, "managed") == Some("yes");
        }
        if usbdev && text.is_none() {
            let id = || {
                attr(attrs, "id")
                    .and_then(|v| u16::from_str_radix(v.trim_start_matches("0x"), 16).ok())
            };
            if is(path, &["domain", "devices", "hostdev", "source", "vendor"]) {
                usb_vendor = id();
            }
            if is(path, &["domain", "devices", "hostdev", "source", "product"])
                && let (Some(vendor), Some(product)) = (usb_vendor, id())
            {
                s.usb.push(UsbId { vendor, product });
            }
        }
        if pcidev
            && is(path, &["domain", "devices", "hostdev", "source", "address"])
            && text.is_none()
        {
            let h = |k: &str| {
                attr(attrs, k)
                    .and_then(|v| u32::from_str_radix(v.trim_start_matches("0x"), 16).ok())
            };
            if let (Some(d), Some(b), Some(sl), Some(f)) =
                (h("domain"), h("bus"), h("slot"), h("function"))
            {
                let a = format!("{d:04x}:{b:02x}:{sl:02x}.{f:x}");
                if let Ok(a) = PciAddress::parse(&a) {
                    s.hostdevs.push((a, managed));
                }
            }
        }
        if is(path, &["domain", "devices", "shmem"]) && text.is_none() {
            lg_shmem = attr(attrs, "name") == Some("looking-glass");
        }
        if lg_shmem
            && is(path, &["domain", "devices", "shmem", "size"])
            && let Some(t) = text
        {
            let n: u64 = t.trim().parse().unwrap_or(0);
            let mib = match attr(attrs, "unit").unwrap_or("b") {
                "M" | "MiB" => n,
                "G" | "GiB" => n * 1024,
                "K" | "KiB" | "k" => n / 1024,
                _ => n >> 20,
            };
            s.looking_glass = Some((super::looking_glass::SHM_PATH.to_string(), mib));
        }
        if is(path, &["domain", "commandline", "arg"])
            && text.is_none()
            && let Some(v) = attr(attrs, "value")
            && v.contains(super::looking_glass::KVMFR_DEV)
        {
            // {"qom-type":"memory-backend-file",…,"size":BYTES,…} or size=NM
            let size = serde_json::from_str::<serde_json::Value>(v)
                .ok()
                .and_then(|j| j["size"].as_u64())
                .map(|b| b >> 20)
                .or_else(|| {
                    v.split(',')
                        .find_map(|kv| kv.strip_prefix("size="))
                        .and_then(|m| m.trim_end_matches('M').parse().ok())
                })
                .unwrap_or(0);
            s.looking_glass = Some((super::looking_glass::KVMFR_DEV.to_string(), size));
        }
        if is(path, &["domain", "devices", "disk", "source"])
            && text.is_none()
            && let Some(p) = attr(attrs, "file").or(attr(attrs, "dev"))
        {
            s.disks.push(p.to_string());
        }
        if is(path, &["domain", "devices", "interface", "mac"])
            && text.is_none()
            && let Some(m) = attr(attrs, "address")
        {
            s.macs.push(m.to_string());
        }
    })?;
    if !pins.is_empty() || emu.is_some() {
        s.pinning = Some(PinSummary {
            vcpus: pins,
            emulator: emu,
        });
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::request::NetworkArg;

    fn spec() -> DomainSpec {
        DomainSpec {
            name: "w".into(),
            uuid: None,
            kvm: true,
            memory_mib: 1024,
            hugepages_kib: None,
            vcpus: 2,
            pinning: None,
            amd: false,
            firmware: Firmware::Bios,
            tpm: false,
            hyperv: false,
            localtime: false,
            stealth: false,
            managed: true,
            hostdevs: vec![
                PciAddress::parse("0000:0b:00.0").expect("a"),
                PciAddress::parse("0000:0b:00.1").expect("a"),
                PciAddress::parse("0000:0b:00.3").expect("a"),
            ],
            disks: vec![Disk::file("/srv/it's <a> & b.qcow2".into(), "qcow2", true)],
            cdroms: vec![],
            network: NetworkArg::None,
            nic_virtio: true,
            mac: None,
            meta: VmMeta {
                profile: "linux".into(),
                gpu: PciAddress::parse("0000:0b:00.0").ok(),
                functions: vec![PciAddress::parse("0000:0b:00.0").expect("a")],
                options: "{\"a\":\"<&'>\"}".into(),
                version: "0".into(),
            },
            extras: Extras::default(),
        }
    }

    #[test]
    fn summary_reads_the_extras_back() -> Result<(), DomainError> {
        use crate::vm::looking_glass::{KVMFR_DEV, LgDevice, SHM_PATH};
        let mut s = spec();
        s.extras.looking_glass = Some(LgDevice::Shmem { size_mib: 64 });
        s.extras.usb = vec!["046d:c52b".parse().expect("id")];
        let r = read_summary(&to_xml(&s))?;
        assert_eq!(r.looking_glass, Some((SHM_PATH.to_string(), 64)));
        assert_eq!(r.usb, s.extras.usb);
        for json in [true, false] {
            s.extras.looking_glass = Some(LgDevice::Kvmfr {
                size_mib: 128,
                json,
            });
            let x = to_xml(&s);
            assert!(
                x.contains("xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'"),
                "{x}"
            );
            let r = read_summary(&x)?;
            assert_eq!(r.looking_glass, Some((KVMFR_DEV.to_string(), 128)), "{x}");
        }
        Ok(())
    }

    #[test]
    fn summary_reads_uuid_and_macs() {
        let x = "<domain type='qemu'>\n  <name>a</name>\n  <uuid>fd50b111-8e31-4dab-b5f8-ef8b160b7f93</uuid>\n  <memory unit='KiB'>65536</memory>\n<devices><interface type='user'><mac address='52:54:00:aa:bb:cc'/></interface></devices></domain>";
        let s = read_summary(x).expect("parses");
        assert_eq!(
            s.uuid.as_deref(),
            Some("fd50b111-8e31-4dab-b5f8-ef8b160b7f93")
        );
        assert_eq!(s.memory_kib, 65536);
        assert_eq!(s.macs, vec!["52:54:00:aa:bb:cc".to_string()]);
    }

    #[test]
    fn hostile_paths_are_escaped_and_read_back() {
        let xml = to_xml(&spec());
        let s = read_summary(&xml).expect("parses");
        assert_eq!(s.disks, vec!["/srv/it's <a> & b.qcow2".to_string()]);
        let m = read_meta(&xml).expect("parses").expect("ours");
        assert_eq!(m.options, "{\"a\":\"<&'>\"}");
        assert_eq!(m.profile, "linux");
    }

    #[test]
    fn one_multifunction_slot_with_the_function_numbers_kept() {
        let xml = to_xml(&spec());
        let s = read_summary(&xml).expect("parses");
        assert_eq!(s.hostdevs.len(), 3);
        assert!(s.hostdevs.iter().all(|(_, m)| *m));
        assert_eq!(xml.matches("multifunction='on'").count(), 1);
        for f in ["0x0", "0x1", "0x3"] {
            assert!(
                xml.contains(&format!("bus='0x10' slot='0x00' function='{f}'")),
                "{xml}"
            );
        }
    }

    #[test]
    fn metadata_is_found_by_namespace_not_prefix() {
        let xml = format!(
            "<domain><metadata><x:vm xmlns:x=\"{NS}\"><x:profile>windows11</x:profile><x:gpu>0000:01:00.0</x:gpu></x:vm></metadata></domain>"
        );
        let m = read_meta(&xml).expect("parses").expect("found");
        assert_eq!(m.profile, "windows11");
        assert_eq!(m.gpu, PciAddress::parse("0000:01:00.0").ok());
        let other = "<domain><metadata><x:vm xmlns:x=\"urn:other\"><x:profile>p</x:profile></x:vm></metadata></domain>";
        assert_eq!(read_meta(other).expect("parses"), None);
        assert!(read_meta("<domain><a></b></domain>").is_err());
    }
}
