//! One PCI function as exliar knows it. Every field but the address may be
//! unknown (`None`): sysfs attributes can be missing or garbled, and a pasted
//! listing says only part of the story.

use serde::{Deserialize, Serialize};

use super::PciAddress;

/// The 24-bit PCI class code: class, subclass, programming interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClassCode(pub u32);

impl ClassCode {
    pub fn class(self) -> u8 {
        (self.0 >> 16) as u8
    }
    pub fn subclass(self) -> u8 {
        (self.0 >> 8) as u8
    }
    pub fn prog_if(self) -> u8 {
        self.0 as u8
    }
    /// Class and subclass as one 16-bit number, as lspci shows it (`0300`).
    pub fn class_subclass(self) -> u16 {
        (self.0 >> 8) as u16
    }
    pub fn is_display(self) -> bool {
        self.class() == 0x03
    }
    /// PCI-to-PCI bridges (0604), semi-transparent bridges (0609) and host
    /// bridges (0600): plumbing, not endpoints a guest would be given.
    pub fn is_bridge(self) -> bool {
        matches!(self.class_subclass(), 0x0600 | 0x0604 | 0x0609)
    }
    /// A short English name for the class, for human output.
    pub fn describe(self) -> &'static str {
        describe_class(self.class_subclass())
    }
}

/// English name of a class/subclass pair (the `lspci` wording).
pub fn describe_class(cs: u16) -> &'static str {
    match cs {
        0x0100 => "SCSI storage controller",
        0x0101 => "IDE interface",
        0x0104 => "RAID bus controller",
        0x0106 => "SATA controller",
        0x0107 => "Serial Attached SCSI controller",
        0x0108 => "Non-Volatile memory controller",
        0x0180 => "Mass storage controller",
        0x0200 => "Ethernet controller",
        0x0280 => "Network controller",
        0x0300 => "VGA compatible controller",
        0x0301 => "XGA compatible controller",
        0x0302 => "3D controller",
        0x0380 => "Display controller",
        0x0400 => "Multimedia video controller",
        0x0401 => "Multimedia audio controller",
        0x0403 => "Audio device",
        0x0480 => "Multimedia controller",
        0x0500 => "RAM memory",
        0x0580 => "Memory controller",
        0x0600 => "Host bridge",
        0x0601 => "ISA bridge",
        0x0604 => "PCI bridge",
        0x0609 => "PCI bridge",
        0x0680 => "Bridge",
        0x0700 => "Serial controller",
        0x0780 => "Communication controller",
        0x0806 => "IOMMU",
        0x0880 => "System peripheral",
        0x0c03 => "USB controller",
        0x0c05 => "SMBus",
        0x0c80 => "Serial bus controller",
        0x0d80 => "Wireless controller",
        0x1080 => "Encryption controller",
        0x1101 => "Performance counters",
        0x1180 => "Signal processing controller",
        0x1200 => "Processing accelerators",
        0x1300 => "Non-Essential Instrumentation",
        _ => "Unclassified device",
    }
}

/// The class/subclass pair lspci names with `name` (its wording, from
/// pci.ids), case-insensitively: the reverse of [`describe_class`] and more.
/// A name that is both a class and its `80` ("other") subclass, such as
/// `Display controller`, gives the `80` subclass; `PCI bridge` gives `0604`.
/// Class names without a subclass of that name (`Unclassified device`,
/// `Generic system peripheral`) give `None`: lspci prints them with the code.
pub fn class_from_name(name: &str) -> Option<u16> {
    const NAMES: &[(&str, u16)] = &[
        ("Non-VGA unclassified device", 0x0000),
        ("VGA compatible unclassified device", 0x0001),
        ("Image coprocessor", 0x0005),
        ("SCSI storage controller", 0x0100),
        ("IDE interface", 0x0101),
        ("Floppy disk controller", 0x0102),
        ("IPI bus controller", 0x0103),
        ("RAID bus controller", 0x0104),
        ("ATA controller", 0x0105),
        ("SATA controller", 0x0106),
        ("Serial Attached SCSI controller", 0x0107),
        ("Non-Volatile memory controller", 0x0108),
        ("Universal Flash Storage controller", 0x0109),
        ("Mass storage controller", 0x0180),
        ("Ethernet controller", 0x0200),
        ("Token ring network controller", 0x0201),
        ("FDDI network controller", 0x0202),
        ("ATM network controller", 0x0203),
        ("ISDN controller", 0x0204),
        ("WorldFip controller", 0x0205),
        ("PICMG controller", 0x0206),
        ("Infiniband controller", 0x0207),
        ("Fabric controller", 0x0208),
        ("Network controller", 0x0280),
        ("VGA compatible controller", 0x0300),
        ("XGA compatible controller", 0x0301),
        ("3D controller", 0x0302),
        ("Display controller", 0x0380),
        ("Multimedia video controller", 0x0400),
        ("Multimedia audio controller", 0x0401),
        ("Computer telephony device", 0x0402),
        ("Audio device", 0x0403),
        ("Multimedia controller", 0x0480),
        ("RAM memory", 0x0500),
        ("FLASH memory", 0x0501),
        ("CXL", 0x0502),
        ("Memory controller", 0x0580),
        ("Host bridge", 0x0600),
        ("ISA bridge", 0x0601),
        ("EISA bridge", 0x0602),
        ("MicroChannel bridge", 0x0603),
        ("PCI bridge", 0x0604),
        ("PCMCIA bridge", 0x0605),
        ("NuBus bridge", 0x0606),
        ("CardBus bridge", 0x0607),
        ("RACEway bridge", 0x0608),
        ("Semi-transparent PCI-to-PCI bridge", 0x0609),
        ("InfiniBand to PCI host bridge", 0x060a),
        ("Bridge", 0x0680),
        ("Serial controller", 0x0700),
        ("Parallel controller", 0x0701),
        ("Multiport serial controller", 0x0702),
        ("Modem", 0x0703),
        ("GPIB controller", 0x0704),
        ("Smard Card controller", 0x0705),
        ("Communication controller", 0x0780),
        ("PIC", 0x0800),
        ("DMA controller", 0x0801),
        ("Timer", 0x0802),
        ("RTC", 0x0803),
        ("PCI Hot-plug controller", 0x0804),
        ("SD Host controller", 0x0805),
        ("IOMMU", 0x0806),
        ("Root Complex Event Collector", 0x0807),
        ("System peripheral", 0x0880),
        ("Timing Card", 0x0899),
        ("Keyboard controller", 0x0900),
        ("Digitizer Pen", 0x0901),
        ("Mouse controller", 0x0902),
        ("Scanner controller", 0x0903),
        ("Gameport controller", 0x0904),
        ("Input device controller", 0x0980),
        ("Generic Docking Station", 0x0a00),
        ("Docking Station", 0x0a80),
        ("Co-processor", 0x0b40),
        ("I2O", 0x0e00),
        ("FireWire (IEEE 1394)", 0x0c00),
        ("ACCESS Bus", 0x0c01),
        ("SSA", 0x0c02),
        ("USB controller", 0x0c03),
        ("Fibre Channel", 0x0c04),
        ("SMBus", 0x0c05),
        ("InfiniBand", 0x0c06),
        ("IPMI Interface", 0x0c07),
        ("SERCOS interface", 0x0c08),
        ("CANBUS", 0x0c09),
        ("Serial bus controller", 0x0c80),
        ("IRDA controller", 0x0d00),
        ("Consumer IR controller", 0x0d01),
        ("RF controller", 0x0d10),
        ("Bluetooth", 0x0d11),
        ("Broadband", 0x0d12),
        ("802.1a controller", 0x0d20),
        ("802.1b controller", 0x0d21),
        ("Wireless controller", 0x0d80),
        ("Network and computing encryption device", 0x1000),
        ("Entertainment encryption device", 0x1010),
        ("Encryption controller", 0x1080),
        ("DPIO module", 0x1100),
        ("Performance counters", 0x1101),
        ("Communication synchronizer", 0x1110),
        ("Signal processing management", 0x1120),
        ("Signal processing controller", 0x1180),
        ("Processing accelerators", 0x1200),
        ("Non-Essential Instrumentation", 0x1300),
    ];
    let name = name.trim();
    NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, cs)| *cs)
}

impl std::fmt::Display for ClassCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:06x}", self.0)
    }
}

impl Serialize for ClassCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClassCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let hex = s.strip_prefix("0x").unwrap_or(&s);
        u32::from_str_radix(hex, 16)
            .map(ClassCode)
            .map_err(serde::de::Error::custom)
    }
}

/// Serialize a 16-bit id as 4 lowercase hex digits.
pub mod hex16 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<u16>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(&format_args!("{v:04x}")),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| u16::from_str_radix(&s, 16).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// PCIe link state of a function.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub current_speed: Option<String>,
    pub current_width: Option<u32>,
    pub max_speed: Option<String>,
    pub max_width: Option<u32>,
}

impl Link {
    pub fn is_empty(&self) -> bool {
        *self == Link::default()
    }
}

/// SR-IOV relations of a function.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sriov {
    /// For a virtual function: its physical function.
    pub physfn: Option<PciAddress>,
    /// For a physical function: its enabled virtual functions.
    pub virtfns: Vec<PciAddress>,
    pub total_vfs: Option<u32>,
    pub num_vfs: Option<u32>,
}

impl Sriov {
    pub fn is_empty(&self) -> bool {
        *self == Sriov::default()
    }
}

/// One PCI function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub address: PciAddress,
    pub class: Option<ClassCode>,
    #[serde(with = "hex16")]
    pub vendor_id: Option<u16>,
    #[serde(with = "hex16")]
    pub device_id: Option<u16>,
    #[serde(with = "hex16")]
    pub subsystem_vendor_id: Option<u16>,
    #[serde(with = "hex16")]
    pub subsystem_device_id: Option<u16>,
    pub revision: Option<u8>,
    pub vendor_name: Option<String>,
    pub device_name: Option<String>,
    pub driver: Option<String>,
    pub driver_override: Option<String>,
    pub iommu_group: Option<u32>,
    pub boot_vga: Option<bool>,
    pub reset_methods: Option<Vec<String>>,
    pub numa_node: Option<i32>,
    pub link: Link,
    /// Upstream bridges, the nearest first.
    pub parents: Vec<PciAddress>,
    pub sriov: Sriov,
    /// Whether the kernel exposes an option ROM (`rom` attribute).
    pub rom: Option<bool>,
    /// Device links (`consumer:pci:…` / `supplier:pci:…` entries).
    pub consumers: Vec<PciAddress>,
    pub suppliers: Vec<PciAddress>,
}

impl Device {
    /// A device with nothing known but its address.
    pub fn new(address: PciAddress) -> Self {
        Self {
            address,
            class: None,
            vendor_id: None,
            device_id: None,
            subsystem_vendor_id: None,
            subsystem_device_id: None,
            revision: None,
            vendor_name: None,
            device_name: None,
            driver: None,
            driver_override: None,
            iommu_group: None,
            boot_vga: None,
            reset_methods: None,
            numa_node: None,
            link: Link::default(),
            parents: Vec::new(),
            sriov: Sriov::default(),
            rom: None,
            consumers: Vec::new(),
            suppliers: Vec::new(),
        }
    }

    pub fn is_bridge(&self) -> bool {
        self.class.is_some_and(ClassCode::is_bridge)
    }

    pub fn is_display(&self) -> bool {
        self.class.is_some_and(ClassCode::is_display)
    }

    /// `vvvv:dddd`, or `?` parts where unknown.
    pub fn ids(&self) -> String {
        let h = |v: Option<u16>| v.map_or_else(|| "????".to_string(), |v| format!("{v:04x}"));
        format!("{}:{}", h(self.vendor_id), h(self.device_id))
    }

    /// A human name: pci.ids names when known, else the class wording.
    pub fn display_name(&self) -> String {
        match (&self.vendor_name, &self.device_name) {
            (Some(v), Some(d)) => format!("{v} {d}"),
            (Some(v), None) => format!("{v} device {}", self.ids()),
            (None, Some(d)) => d.clone(),
            (None, None) => self
                .class
                .map_or("Unknown device", ClassCode::describe)
                .to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_round_trip() {
        for cs in 0u16..=0xffff {
            let name = describe_class(cs);
            if name == "Unclassified device" {
                continue;
            }
            let back = class_from_name(name);
            let want = if cs == 0x0609 { 0x0604 } else { cs };
            assert_eq!(back, Some(want), "{cs:04x} {name}");
        }
        assert_eq!(class_from_name("vga compatible controller"), Some(0x0300));
        assert_eq!(class_from_name("IOMMU"), Some(0x0806));
        assert_eq!(class_from_name("Generic system peripheral"), None);
        assert_eq!(class_from_name("Frobnicator"), None);
    }
}
