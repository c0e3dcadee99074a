//! USB devices and input devices of the host, read from sysfs.
//!
//! The kernel lists every USB device and interface in `/sys/bus/usb/devices`
//! (links into `/sys/devices`): root hubs are `usbN`, devices `N-P.P…` (bus,
//! then the port on each hub from the root), interfaces `N-P…:C.I`
//! (configuration, interface number; a root hub's are `N-0:1.0`). The link
//! target of a device names the PCI host controller it hangs from
//! (`…/pci0000:00/0000:00:14.0/usb1/1-2`).
//!
//! Attributes read, as the kernel names them: `idVendor`, `idProduct`,
//! `manufacturer`, `product`, `serial`, `busnum`, `devnum`, `speed`,
//! `bDeviceClass`, `bDeviceSubClass`, `bDeviceProtocol`, `removable`; on
//! interfaces `bInterfaceClass`, `bInterfaceSubClass`, `bInterfaceProtocol`,
//! `bInterfaceNumber` and the `driver` link.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

use super::root::HostRoot;
use super::usbids::UsbIds;
use crate::model::PciAddress;

/// The kernel's list of USB devices and interfaces.
pub const USB_DEVICES: &str = "sys/bus/usb/devices";
/// udev's stable names of input devices.
pub const INPUT_BY_ID: &str = "dev/input/by-id";

/// What a USB device is, from its class codes and its interfaces'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UsbKind {
    /// An interface of HID class, boot subclass, keyboard protocol (03/01/01).
    Keyboard,
    /// HID boot mouse (03/01/02).
    Mouse,
    /// Other HID (game pads, tablets, consumer keys): class 03 with no boot
    /// keyboard or mouse interface.
    Hid,
    /// Mass storage (class 08).
    Storage,
    /// Audio (class 01).
    Audio,
    /// Video (class 0e).
    Video,
    /// A hub (class 09).
    Hub,
    /// A Bluetooth radio (e0/01/01).
    Bluetooth,
    /// Printer (class 07).
    Printer,
    /// Communications (CDC: class 02 or 0a): modems, network adapters, serial.
    Communications,
    /// Smart card reader (class 0b).
    SmartCard,
    /// Only vendor-specific interfaces (class ff): fingerprint readers, …
    VendorSpecific,
}

impl UsbKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            UsbKind::Keyboard => "keyboard",
            UsbKind::Mouse => "mouse",
            UsbKind::Hid => "hid",
            UsbKind::Storage => "storage",
            UsbKind::Audio => "audio",
            UsbKind::Video => "video",
            UsbKind::Hub => "hub",
            UsbKind::Bluetooth => "bluetooth",
            UsbKind::Printer => "printer",
            UsbKind::Communications => "communications",
            UsbKind::SmartCard => "smart-card",
            UsbKind::VendorSpecific => "vendor-specific",
        }
    }
}

/// Where a name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NameSource {
    /// The device's own string descriptor (`manufacturer`, `product` in sysfs).
    #[serde(rename = "sysfs")]
    Sysfs,
    /// The `usb.ids` database.
    #[serde(rename = "usb.ids")]
    UsbIds,
}

/// One interface of the device's active configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsbInterface {
    /// The sysfs name (`1-2:1.0`).
    pub id: String,
    /// `bInterfaceNumber`.
    pub number: Option<u8>,
    #[serde(serialize_with = "hex2")]
    pub class: u8,
    #[serde(serialize_with = "hex2")]
    pub subclass: u8,
    #[serde(serialize_with = "hex2")]
    pub protocol: u8,
    /// The driver bound to it (`usbhid`, `btusb`), from the `driver` link.
    pub driver: Option<String>,
}

/// One USB device (root hubs included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsbDevice {
    /// The sysfs name: `1-2.3`, or `usb1` for a root hub.
    pub id: String,
    /// `busnum`, `devnum` (what lsusb shows as Bus/Device).
    pub bus: u32,
    pub dev: u32,
    #[serde(serialize_with = "hex4")]
    pub vendor: u16,
    #[serde(serialize_with = "hex4")]
    pub product: u16,
    pub vendor_name: Option<String>,
    /// `sysfs` (the device's manufacturer string) or `usb.ids`.
    pub vendor_name_source: Option<NameSource>,
    pub product_name: Option<String>,
    /// `sysfs` (the device's product string) or `usb.ids`.
    pub product_name_source: Option<NameSource>,
    pub serial: Option<String>,
    /// `speed` in Mbit/s as the kernel writes it (`1.5`, `12`, `480`, `5000`).
    pub speed: Option<String>,
    /// `bDeviceClass`, `bDeviceSubClass`, `bDeviceProtocol`.
    #[serde(serialize_with = "hex2")]
    pub class: u8,
    #[serde(serialize_with = "hex2")]
    pub subclass: u8,
    #[serde(serialize_with = "hex2")]
    pub protocol: u8,
    /// `removable`: `removable`, `fixed` or `unknown` (what the hub port says).
    pub removable: Option<String>,
    pub interfaces: Vec<UsbInterface>,
    /// The device is a hub (root hubs too).
    pub hub: bool,
    /// A root hub (`usbN`): the host controller itself.
    pub root_hub: bool,
    /// The hub it is plugged into (`1-2` for `1-2.3`, `usb1` for `1-2`).
    pub parent: Option<String>,
    /// The PCI host controller (nearest PCI device above the root hub);
    /// `None` for controllers that are not PCI devices.
    pub controller: Option<PciAddress>,
    pub kind: Vec<UsbKind>,
    /// Block devices whose sysfs path lies under this device and not under
    /// a device plugged into it: a stick's `sdb`, a card reader's `mmcblk0`.
    pub block_devices: Vec<String>,
}

fn hex4<S: Serializer>(v: &u16, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:04x}"))
}

fn hex2<S: Serializer>(v: &u8, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:02x}"))
}

impl UsbDevice {
    /// `vendor product` names for people: the best of what is known.
    pub fn display_name(&self) -> String {
        match (&self.vendor_name, &self.product_name) {
            (Some(v), Some(p)) => format!("{v} {p}"),
            (Some(v), None) => v.clone(),
            (None, Some(p)) => p.clone(),
            (None, None) => String::new(),
        }
    }

    pub fn is(&self, kind: UsbKind) -> bool {
        self.kind.contains(&kind)
    }
}

/// What the sysfs name says: a root hub, a device, an interface, or
/// something else (`N-P.P:C.I` interfaces and `usbN` root hubs).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    RootHub(u32),
    Device { bus: u32, ports: Vec<u32> },
    Interface { device: String },
}

fn classify(name: &str) -> Option<Entry> {
    if let Some(n) = name.strip_prefix("usb") {
        return n.parse().ok().map(Entry::RootHub);
    }
    if let Some((dev, _cfg)) = name.split_once(':') {
        // A root hub's interfaces are `N-0:1.0`.
        let device = match dev.strip_suffix("-0") {
            Some(bus) if bus.parse::<u32>().is_ok() => format!("usb{bus}"),
            _ => dev.to_string(),
        };
        return matches!(classify(&device)?, Entry::RootHub(_) | Entry::Device { .. })
            .then_some(Entry::Interface { device });
    }
    let (bus, ports) = name.split_once('-')?;
    let bus = bus.parse().ok()?;
    let ports = ports
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<Vec<u32>>>()?;
    Some(Entry::Device { bus, ports })
}

/// The hub a device is plugged into.
fn parent_of(name: &str) -> Option<String> {
    match classify(name)? {
        Entry::RootHub(_) | Entry::Interface { .. } => None,
        Entry::Device { bus, ports } if ports.len() <= 1 => Some(format!("usb{bus}")),
        Entry::Device { .. } => name.rsplit_once('.').map(|(p, _)| p.to_string()),
    }
}

/// The PCI controller in a resolved sysfs device path: the nearest PCI
/// address above the `usbN` component.
pub fn controller_in_path(path: &Path) -> Option<PciAddress> {
    let comps: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let root = comps
        .iter()
        .position(|c| matches!(classify(c), Some(Entry::RootHub(_))))?;
    comps[..root]
        .iter()
        .rev()
        .find(|c| c.matches(':').count() == 2)
        .and_then(|c| PciAddress::parse(c).ok())
}

/// The kinds that class codes say (pure).
pub fn kinds(class: (u8, u8, u8), interfaces: &[UsbInterface]) -> Vec<UsbKind> {
    let mut out = BTreeSet::new();
    let mut codes: Vec<(u8, u8, u8)> = vec![class];
    codes.extend(interfaces.iter().map(|i| (i.class, i.subclass, i.protocol)));
    let mut hid = false;
    let mut vendor = false;
    for (c, s, p) in codes {
        match (c, s, p) {
            (0x03, 0x01, 0x01) => {
                out.insert(UsbKind::Keyboard);
            }
            (0x03, 0x01, 0x02) => {
                out.insert(UsbKind::Mouse);
            }
            (0x03, _, _) => hid = true,
            (0x08, _, _) => {
                out.insert(UsbKind::Storage);
            }
            (0x01, _, _) => {
                out.insert(UsbKind::Audio);
            }
            (0x0e, _, _) => {
                out.insert(UsbKind::Video);
            }
            (0x09, _, _) => {
                out.insert(UsbKind::Hub);
            }
            (0xe0, 0x01, 0x01) => {
                out.insert(UsbKind::Bluetooth);
            }
            (0x07, _, _) => {
                out.insert(UsbKind::Printer);
            }
            (0x02 | 0x0a, _, _) => {
                out.insert(UsbKind::Communications);
            }
            (0x0b, _, _) => {
                out.insert(UsbKind::SmartCard);
            }
            (0xff, _, _) => vendor = true,
            _ => {}
        }
    }
    if hid && !out.contains(&UsbKind::Keyboard) && !out.contains(&UsbKind::Mouse) {
        out.insert(UsbKind::Hid);
    }
    if vendor && out.is_empty() && !hid {
        out.insert(UsbKind::VendorSpecific);
    }
    out.into_iter().collect()
}

fn attr(host: &HostRoot, name: &str, a: &str) -> Option<String> {
    host.read_optional(format!("{USB_DEVICES}/{name}/{a}"))
        .ok()
        .flatten()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn hex_attr<T: TryFrom<u32>>(host: &HostRoot, name: &str, a: &str) -> Option<T> {
    u32::from_str_radix(&attr(host, name, a)?, 16)
        .ok()
        .and_then(|v| T::try_from(v).ok())
}

fn dec_attr(host: &HostRoot, name: &str, a: &str) -> Option<u32> {
    attr(host, name, a)?.parse().ok()
}

fn read_interface(host: &HostRoot, name: &str) -> UsbInterface {
    UsbInterface {
        id: name.to_string(),
        number: hex_attr(host, name, "bInterfaceNumber"),
        class: hex_attr(host, name, "bInterfaceClass").unwrap_or(0),
        subclass: hex_attr(host, name, "bInterfaceSubClass").unwrap_or(0),
        protocol: hex_attr(host, name, "bInterfaceProtocol").unwrap_or(0),
        driver: host
            .link_name(format!("{USB_DEVICES}/{name}/driver"))
            .ok()
            .flatten(),
    }
}

/// Every USB device of the host, root hubs included, in bus and port order.
/// Unreadable attributes are left empty; a host without USB gives none.
pub fn read(host: &HostRoot, ids: Option<&UsbIds>) -> Vec<UsbDevice> {
    let names = match host.list_dir(USB_DEVICES) {
        Ok(n) => n,
        Err(e) => {
            if !e.is_not_found() {
                tracing::warn!("{e}");
            }
            return Vec::new();
        }
    };
    let mut interfaces: BTreeMap<String, Vec<UsbInterface>> = BTreeMap::new();
    let mut devices: Vec<(u32, Vec<u32>, String)> = Vec::new();
    for name in &names {
        match classify(name) {
            Some(Entry::RootHub(bus)) => devices.push((bus, Vec::new(), name.clone())),
            Some(Entry::Device { bus, ports }) => devices.push((bus, ports, name.clone())),
            Some(Entry::Interface { device }) => interfaces
                .entry(device)
                .or_default()
                .push(read_interface(host, name)),
            None => {}
        }
    }
    devices.sort();
    let mut out = Vec::with_capacity(devices.len());
    let mut dirs: Vec<Option<PathBuf>> = Vec::with_capacity(devices.len());
    for (bus_from_name, ports, name) in devices {
        let mut ifaces = interfaces.remove(&name).unwrap_or_default();
        ifaces.sort_by_key(|i| (i.number, i.id.clone()));
        let Some(vendor) = hex_attr::<u16>(host, &name, "idVendor") else {
            // Every USB device has one; an entry without it is not a device.
            tracing::warn!(
                "{}: no readable idVendor; entry skipped",
                host.display(&Path::new(USB_DEVICES).join(&name))
            );
            continue;
        };
        let product: u16 = hex_attr(host, &name, "idProduct").unwrap_or(0);
        let (vendor_name, vendor_name_source) = match attr(host, &name, "manufacturer") {
            Some(s) => (Some(s), Some(NameSource::Sysfs)),
            None => match ids.and_then(|i| i.vendor(vendor)) {
                Some(s) => (Some(s), Some(NameSource::UsbIds)),
                None => (None, None),
            },
        };
        let (product_name, product_name_source) = match attr(host, &name, "product") {
            Some(s) => (Some(s), Some(NameSource::Sysfs)),
            None => match ids.and_then(|i| i.product(vendor, product)) {
                Some(s) => (Some(s), Some(NameSource::UsbIds)),
                None => (None, None),
            },
        };
        let class = (
            hex_attr(host, &name, "bDeviceClass").unwrap_or(0),
            hex_attr(host, &name, "bDeviceSubClass").unwrap_or(0),
            hex_attr(host, &name, "bDeviceProtocol").unwrap_or(0),
        );
        let kind = kinds(class, &ifaces);
        let resolved = host
            .resolve(Path::new(USB_DEVICES).join(&name).as_path())
            .ok();
        let controller = resolved.as_deref().and_then(controller_in_path);
        dirs.push(resolved);
        let root_hub = ports.is_empty();
        out.push(UsbDevice {
            bus: dec_attr(host, &name, "busnum").unwrap_or(bus_from_name),
            dev: dec_attr(host, &name, "devnum").unwrap_or(0),
            vendor,
            product,
            vendor_name,
            vendor_name_source,
            product_name,
            product_name_source,
            serial: attr(host, &name, "serial"),
            speed: attr(host, &name, "speed"),
            class: class.0,
            subclass: class.1,
            protocol: class.2,
            removable: attr(host, &name, "removable"),
            interfaces: ifaces,
            hub: root_hub || class.0 == 0x09 || kind.contains(&UsbKind::Hub),
            root_hub,
            parent: parent_of(&name),
            controller,
            kind,
            block_devices: Vec::new(),
            id: name,
        });
    }
    // Each block device belongs to the deepest USB device above it in
    // sysfs (a stick, or a card reader's medium: not the hubs on the way).
    if out.iter().any(|d| !d.root_hub) {
        for (block, path) in block_links(host) {
            let owner = dirs
                .iter()
                .enumerate()
                .filter_map(|(i, d)| Some((i, d.as_ref()?)))
                .filter(|(_, d)| path.starts_with(d))
                .max_by_key(|(_, d)| d.components().count());
            if let Some((i, _)) = owner {
                out[i].block_devices.push(block);
            }
        }
    }
    out
}

/// Every block device (`sys/block/NAME`) with its resolved sysfs path.
fn block_links(host: &HostRoot) -> Vec<(String, PathBuf)> {
    host.list_dir("sys/block")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| {
            let p = host
                .resolve(Path::new("sys/block").join(&n).as_path())
                .ok()?;
            Some((n, p))
        })
        .collect()
}

/// The devices on each PCI USB controller (devices whose controller is not
/// a PCI device are left out).
pub fn controllers(devs: &[UsbDevice]) -> BTreeMap<PciAddress, Vec<&UsbDevice>> {
    let mut out: BTreeMap<PciAddress, Vec<&UsbDevice>> = BTreeMap::new();
    for d in devs {
        if let Some(c) = d.controller {
            out.entry(c).or_default().push(d);
        }
    }
    out
}

/// Mount points that make a disk the host's boot disk.
const BOOT_MOUNTS: &[&str] = &["/", "/boot", "/boot/efi", "/efi", "/usr"];

/// Why handing the USB controller `controller` to a VM would take something
/// the host needs: a keyboard, or the disk holding `/`, `/boot` (or the
/// ESP, `/usr`). Empty: nothing found. One sentence per finding.
pub fn controller_holds_host_input_or_boot(
    host: &HostRoot,
    devs: &[UsbDevice],
    controller: PciAddress,
) -> Vec<String> {
    let on = |d: &UsbDevice| d.controller == Some(controller);
    let label = |d: &UsbDevice| {
        let n = d.display_name();
        if n.is_empty() {
            format!("{} ({:04x}:{:04x})", d.id, d.vendor, d.product)
        } else {
            format!("{} ({n})", d.id)
        }
    };
    let mut why = Vec::new();
    let other_keyboards: Vec<&str> = devs
        .iter()
        .filter(|d| !on(d) && d.is(UsbKind::Keyboard))
        .map(|d| d.id.as_str())
        .collect();
    for d in devs.iter().filter(|d| on(d) && d.is(UsbKind::Keyboard)) {
        let rest = if other_keyboards.is_empty() {
            "the host keeps no other USB keyboard".to_string()
        } else {
            format!(
                "another USB keyboard stays with the host: {}",
                other_keyboards.join(", ")
            )
        };
        why.push(format!(
            "{controller} holds {}, a keyboard ({rest})",
            label(d)
        ));
    }
    for d in devs.iter().filter(|d| on(d) && !d.block_devices.is_empty()) {
        for b in &d.block_devices {
            let mounts: Vec<String> = crate::vm::hostfacts::mount_points(host, b)
                .into_iter()
                .filter(|(_, point)| BOOT_MOUNTS.contains(&point.as_str()))
                .map(|(dev, point)| format!("{dev} on {point}"))
                .collect();
            if !mounts.is_empty() {
                why.push(format!(
                    "{controller} holds {}, the host's boot disk {b} (mounted: {})",
                    label(d),
                    mounts.join(", ")
                ));
            }
        }
    }
    why
}

/// Whether an input device is a keyboard or a mouse (udev's by-id suffix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputKind {
    Keyboard,
    Mouse,
}

/// A keyboard or mouse as udev names it in `/dev/input/by-id`, what QEMU's
/// `input-linux` (libvirt `<input type='evdev'>`) takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvdevInput {
    /// `/dev/input/by-id/NAME`.
    pub path: String,
    pub kind: InputKind,
    /// The event node the link points at (`event3`).
    pub event: Option<String>,
}

/// The keyboards (`*-event-kbd`) and mice (`*-event-mouse`) in
/// `/dev/input/by-id`, by name.
pub fn evdev_inputs(host: &HostRoot) -> Vec<EvdevInput> {
    let mut out = Vec::new();
    for name in host.list_dir(INPUT_BY_ID).unwrap_or_default() {
        let kind = if name.ends_with("-event-kbd") {
            InputKind::Keyboard
        } else if name.ends_with("-event-mouse") {
            InputKind::Mouse
        } else {
            continue;
        };
        let event = host
            .link_name(format!("{INPUT_BY_ID}/{name}"))
            .ok()
            .flatten();
        out.push(EvdevInput {
            path: format!("/{INPUT_BY_ID}/{name}"),
            kind,
            event,
        });
    }
    out
}

/// The host's `usb.ids` (empty when none is installed).
pub fn load_usb_ids(host: &HostRoot) -> UsbIds {
    load_usb_ids_at(host).0
}

fn load_usb_ids_at(host: &HostRoot) -> (UsbIds, Option<&'static str>) {
    for p in super::usbids::USB_IDS_PATHS {
        if let Ok(Some((file, len))) = host.open_optional(p) {
            return (UsbIds::from_file(file, len), Some(p));
        }
    }
    (UsbIds::empty(), None)
}

/// For a recording root: a snapshot keeps only the `usb.ids` lines looked
/// up so far, at the path it was read from.
fn record_usb_ids(host: &HostRoot, ids: &UsbIds, path: Option<&str>) {
    if let Some(p) = path
        && host.is_recording()
        && !ids.is_empty()
    {
        host.record_trimmed(p, ids.trimmed().into_bytes());
    }
}

/// One PCI USB controller and what the host would lose with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControllerReport {
    pub address: PciAddress,
    /// The ids of the devices on it, root hubs included.
    pub devices: Vec<String>,
    /// [`controller_holds_host_input_or_boot`]: empty when nothing the host
    /// needs hangs from it.
    pub host_needs: Vec<String>,
}

/// `exliar usb list --json` (schema `exliar.usb/1`).
#[derive(Debug, Clone, Serialize)]
pub struct UsbReport {
    pub schema: &'static str,
    pub root: String,
    /// Where the names not from the devices came from (`null`: no usb.ids).
    pub usb_ids: Option<String>,
    pub devices: Vec<UsbDevice>,
    pub controllers: Vec<ControllerReport>,
    pub evdev: Vec<EvdevInput>,
}

impl UsbReport {
    /// Read everything `usb list` shows (a snapshot calls this too, so that
    /// `--root SNAPSHOT usb list` shows the same).
    pub fn read(host: &HostRoot) -> Self {
        let (ids, ids_path) = load_usb_ids_at(host);
        let devices = read(host, Some(&ids));
        record_usb_ids(host, &ids, ids_path);
        let controllers = controllers(&devices)
            .into_iter()
            .map(|(address, devs)| ControllerReport {
                address,
                devices: devs.iter().map(|d| d.id.clone()).collect(),
                host_needs: controller_holds_host_input_or_boot(host, &devices, address),
            })
            .collect();
        UsbReport {
            schema: "exliar.usb/1",
            root: host.path().display().to_string(),
            usb_ids: ids_path.map(|p| format!("/{p}")),
            devices,
            controllers,
            evdev: evdev_inputs(host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(class: u8, subclass: u8, protocol: u8) -> UsbInterface {
        UsbInterface {
            id: "1-1:1.0".into(),
            number: Some(0),
            class,
            subclass,
            protocol,
            driver: None,
        }
    }

    #[test]
    fn names_are_classified() {
        assert_eq!(classify("usb3"), Some(Entry::RootHub(3)));
        assert_eq!(
            classify("1-2.3.4"),
            Some(Entry::Device {
                bus: 1,
                ports: vec![2, 3, 4]
            })
        );
        assert_eq!(
            classify("1-2.3:1.0"),
            Some(Entry::Interface {
                device: "1-2.3".into()
            })
        );
        assert_eq!(
            classify("2-0:1.0"),
            Some(Entry::Interface {
                device: "usb2".into()
            })
        );
        assert_eq!(classify("usbmon"), None);
        assert_eq!(classify("x-1"), None);
        assert_eq!(classify("1-a"), None);
        assert_eq!(parent_of("1-2.3.4").as_deref(), Some("1-2.3"));
        assert_eq!(parent_of("1-2").as_deref(), Some("usb1"));
        assert_eq!(parent_of("usb1"), None);
    }

    #[test]
    fn controller_is_the_pci_device_above_the_root_hub() {
        let p = Path::new("sys/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2.3");
        assert_eq!(controller_in_path(p), Some(PciAddress::new(0, 0, 0x14, 0)));
        // Behind a bridge: the controller, not the bridge.
        let p = Path::new("sys/devices/pci0000:00/0000:00:08.1/0000:0b:00.3/usb3/3-1");
        assert_eq!(controller_in_path(p), Some(PciAddress::new(0, 0x0b, 0, 3)));
        // A platform controller under a PCI one (dwc3 on Intel).
        let p =
            Path::new("sys/devices/pci0000:00/0000:00:14.1/dwc3.0.auto/xhci-hcd.1.auto/usb5/5-1");
        assert_eq!(controller_in_path(p), Some(PciAddress::new(0, 0, 0x14, 1)));
        // No PCI at all.
        let p = Path::new("sys/devices/platform/soc/fe980000.usb/usb1/1-1");
        assert_eq!(controller_in_path(p), None);
        assert_eq!(
            controller_in_path(Path::new("sys/bus/usb/devices/1-1")),
            None
        );
    }

    #[test]
    fn kinds_from_class_codes() {
        // A wireless receiver: keyboard, mouse and a vendor HID interface.
        let k = kinds((0, 0, 0), &[iface(3, 1, 1), iface(3, 1, 2), iface(3, 0, 0)]);
        assert_eq!(k, vec![UsbKind::Keyboard, UsbKind::Mouse]);
        // A game pad: HID without boot protocol is just hid.
        assert_eq!(kinds((0, 0, 0), &[iface(3, 0, 0)]), vec![UsbKind::Hid]);
        // A headset: audio plus HID buttons.
        assert_eq!(
            kinds((0, 0, 0), &[iface(1, 1, 0), iface(1, 2, 0), iface(3, 0, 0)]),
            vec![UsbKind::Hid, UsbKind::Audio]
        );
        assert_eq!(
            kinds((0xe0, 1, 1), &[iface(0xe0, 1, 1), iface(0xe0, 1, 1)]),
            vec![UsbKind::Bluetooth]
        );
        assert_eq!(kinds((9, 0, 3), &[iface(9, 0, 0)]), vec![UsbKind::Hub]);
        assert_eq!(
            kinds((0, 0, 0), &[iface(8, 6, 0x50)]),
            vec![UsbKind::Storage]
        );
        assert_eq!(
            kinds((0xef, 2, 1), &[iface(0x0e, 1, 0)]),
            vec![UsbKind::Video]
        );
        // Vendor-specific only when nothing else is known.
        assert_eq!(
            kinds((0xff, 0x10, 0xff), &[iface(0xff, 0, 0)]),
            vec![UsbKind::VendorSpecific]
        );
        assert_eq!(
            kinds((0, 0, 0), &[iface(0xff, 0, 0), iface(8, 6, 0x50)]),
            vec![UsbKind::Storage]
        );
        // Wireless class but not Bluetooth (e0/02: UWB).
        assert_eq!(kinds((0xe0, 2, 1), &[]), Vec::<UsbKind>::new());
    }

    /// A tree written here: the attribute names and link layout of the kernel.
    #[test]
    fn reads_a_sysfs_tree() -> Result<(), Box<dyn std::error::Error>> {
        let t = tempfile::tempdir()?;
        let r = t.path();
        let dev = r.join("sys/devices/pci0000:00/0000:00:14.0/usb1");
        let put = |rel: &str, text: &str| -> std::io::Result<()> {
            let p = dev.join(rel);
            std::fs::create_dir_all(p.parent().unwrap_or(&dev))?;
            std::fs::write(p, text)
        };
        for (f, v) in [
            ("idVendor", "1d6b\n"),
            ("idProduct", "0002\n"),
            ("busnum", "1\n"),
            ("devnum", "1\n"),
            ("bDeviceClass", "09\n"),
            ("speed", "480\n"),
            ("1-0:1.0/bInterfaceClass", "09\n"),
            ("1-2/idVendor", "046d\n"),
            ("1-2/idProduct", "c52b\n"),
            ("1-2/busnum", "1\n"),
            ("1-2/devnum", "3\n"),
            ("1-2/product", "USB Receiver\n"),
            ("1-2/bDeviceClass", "00\n"),
            ("1-2/speed", "12\n"),
            ("1-2/removable", "removable\n"),
            ("1-2/1-2:1.0/bInterfaceClass", "03\n"),
            ("1-2/1-2:1.0/bInterfaceSubClass", "01\n"),
            ("1-2/1-2:1.0/bInterfaceProtocol", "01\n"),
            ("1-2/1-2:1.0/bInterfaceNumber", "00\n"),
        ] {
            put(f, v)?;
        }
        std::fs::create_dir_all(r.join("sys/bus/usb/drivers/usbhid"))?;
        std::os::unix::fs::symlink(
            "../../../../../../bus/usb/drivers/usbhid",
            dev.join("1-2/1-2:1.0/driver"),
        )?;
        let links = r.join("sys/bus/usb/devices");
        std::fs::create_dir_all(&links)?;
        for (n, t) in [
            ("usb1", "usb1"),
            ("1-0:1.0", "usb1/1-0:1.0"),
            ("1-2", "usb1/1-2"),
            ("1-2:1.0", "usb1/1-2/1-2:1.0"),
        ] {
            std::os::unix::fs::symlink(
                format!("../../../devices/pci0000:00/0000:00:14.0/{t}"),
                links.join(n),
            )?;
        }
        let host = HostRoot::new(r);
        let ids = UsbIds::new("046d  Logitech, Inc.\n\tc52b  Unifying Receiver\n".into());
        let devs = read(&host, Some(&ids));
        assert_eq!(devs.len(), 2);
        let hub = &devs[0];
        assert!(hub.root_hub && hub.hub);
        assert_eq!(hub.id, "usb1");
        assert_eq!(hub.interfaces.len(), 1);
        let rx = &devs[1];
        assert_eq!(
            (rx.bus, rx.dev, rx.vendor, rx.product),
            (1, 3, 0x046d, 0xc52b)
        );
        // No manufacturer string: usb.ids names the vendor; the product
        // string wins over usb.ids.
        assert_eq!(rx.vendor_name.as_deref(), Some("Logitech, Inc."));
        assert_eq!(rx.vendor_name_source, Some(NameSource::UsbIds));
        assert_eq!(rx.product_name.as_deref(), Some("USB Receiver"));
        assert_eq!(rx.product_name_source, Some(NameSource::Sysfs));
        assert_eq!(rx.kind, vec![UsbKind::Keyboard]);
        assert_eq!(rx.interfaces[0].driver.as_deref(), Some("usbhid"));
        assert_eq!(rx.controller, Some(PciAddress::new(0, 0, 0x14, 0)));
        assert_eq!(rx.parent.as_deref(), Some("usb1"));
        let by = controllers(&devs);
        assert_eq!(by.len(), 1);
        assert_eq!(by.values().next().map(Vec::len), Some(2));
        let why = controller_holds_host_input_or_boot(&host, &devs, PciAddress::new(0, 0, 0x14, 0));
        assert_eq!(why.len(), 1, "{why:?}");
        assert!(why[0].contains("a keyboard"), "{why:?}");
        assert!(
            controller_holds_host_input_or_boot(&host, &devs, PciAddress::new(0, 3, 0, 0))
                .is_empty()
        );
        // Without usb.ids: no vendor name at all, never a guess.
        let devs = read(&host, None);
        assert_eq!(devs[1].vendor_name, None);
        assert_eq!(devs[1].vendor_name_source, None);
        Ok(())
    }

    #[test]
    fn no_usb_at_all_is_an_empty_list() {
        let t = tempfile::tempdir().expect("tempdir");
        let host = HostRoot::new(t.path());
        assert!(read(&host, None).is_empty());
        assert!(evdev_inputs(&host).is_empty());
    }
}
