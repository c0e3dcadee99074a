//! The kernel's truth as recorded by the guest's shell (`/out/truth.txt`), independent of
//! exliar. Format (one record a line, `-` for "none"):
//!
//! ```text
//! dev 0000:01:00.0 class=0x030000 vendor=1234 device=1111 subvendor=1af4 subdevice=1100 driver=bochs-drm group=6 boot_vga=1 rom=1 modalias=pci:...
//! iommu_units dmar0
//! group 6 type=identity members=0000:01:00.0 0000:01:00.1
//! ```

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

/// One PCI function as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciFunction {
    /// Full form, `0000:01:00.0`.
    pub address: String,
    /// As in sysfs, `0x030000`.
    pub class: String,
    /// 4 lowercase hex digits.
    pub vendor: String,
    pub device: String,
    pub subvendor: String,
    pub subdevice: String,
    pub driver: Option<String>,
    pub group: Option<u32>,
    pub boot_vga: Option<bool>,
    /// Whether sysfs has a `rom` attribute (an option ROM BAR).
    pub rom: bool,
    pub modalias: String,
}

impl PciFunction {
    /// The class as a number, e.g. `0x030000`.
    pub fn class_code(&self) -> u32 {
        u32::from_str_radix(self.class.trim_start_matches("0x"), 16).unwrap_or(u32::MAX)
    }

    /// Base class and subclass, e.g. `0x0300`.
    pub fn class_prefix(&self) -> u32 {
        self.class_code() >> 8
    }

    /// A display controller (base class 0x03).
    pub fn is_display(&self) -> bool {
        self.class_code() >> 16 == 0x03
    }

    /// Plumbing that does not keep a group from being passed through: PCI-to-PCI
    /// bridges (root ports included, 0x0604/0x0609) and driverless host bridges (0x0600).
    pub fn is_group_infrastructure(&self) -> bool {
        match self.class_prefix() {
            0x0604 | 0x0609 => true,
            0x0600 => self.driver.is_none(),
            _ => false,
        }
    }

    /// `vendor:device`.
    pub fn ids(&self) -> String {
        format!("{}:{}", self.vendor, self.device)
    }
}

/// One `/sys/kernel/iommu_groups/<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: u32,
    pub kind: Option<String>,
    /// Sorted addresses.
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Truth {
    pub kernel: String,
    pub cmdline: String,
    /// By address (sorted).
    pub devices: BTreeMap<String, PciFunction>,
    /// By id.
    pub groups: BTreeMap<u32, Group>,
    /// `/sys/class/iommu` entries (IOMMU hardware units), sorted.
    pub iommu_units: Vec<String>,
}

fn none_if_dash(v: &str) -> Option<String> {
    (v != "-" && !v.is_empty()).then(|| v.to_owned())
}

impl Truth {
    pub fn parse(text: &str) -> Result<Truth> {
        let mut t = Truth::default();
        for (n, line) in text.lines().enumerate() {
            let ctx = || format!("truth.txt line {}: `{line}`", n + 1);
            let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
            match kind {
                "" | "#" => {}
                "kernel" => t.kernel = rest.to_owned(),
                "cmdline" => t.cmdline = rest.to_owned(),
                "iommu_units" => {
                    t.iommu_units = rest.split_whitespace().map(str::to_owned).collect();
                    t.iommu_units.sort();
                }
                "dev" => {
                    let d = parse_dev(rest).with_context(ctx)?;
                    t.devices.insert(d.address.clone(), d);
                }
                "group" => {
                    let g = parse_group(rest).with_context(ctx)?;
                    t.groups.insert(g.id, g);
                }
                _ => bail!("{}: unknown record", ctx()),
            }
        }
        if t.devices.is_empty() {
            bail!("truth.txt lists no PCI devices");
        }
        Ok(t)
    }

    pub fn device(&self, address: &str) -> &PciFunction {
        self.devices
            .get(address)
            .unwrap_or_else(|| panic!("the guest has no PCI function {address}; truth: {self:#?}"))
    }

    /// The group holding `address`, if any.
    pub fn group_of(&self, address: &str) -> Option<&Group> {
        let id = self.devices.get(address)?.group?;
        self.groups.get(&id)
    }

    pub fn displays(&self) -> impl Iterator<Item = &PciFunction> {
        self.devices.values().filter(|d| d.is_display())
    }
}

fn parse_dev(rest: &str) -> Result<PciFunction> {
    let mut it = rest.split_whitespace();
    let address = it.next().context("no address")?.to_owned();
    let mut kv = BTreeMap::new();
    for tok in it {
        let (k, v) = tok
            .split_once('=')
            .with_context(|| format!("bad field `{tok}`"))?;
        kv.insert(k, v);
    }
    let get = |k: &str| -> Result<String> {
        kv.get(k)
            .map(|v| (*v).to_owned())
            .with_context(|| format!("no `{k}=`"))
    };
    let group = match get("group")?.as_str() {
        "-" => None,
        g => Some(g.parse().with_context(|| format!("group `{g}`"))?),
    };
    let boot_vga = match get("boot_vga")?.as_str() {
        "-" => None,
        v => Some(v == "1"),
    };
    Ok(PciFunction {
        address,
        class: get("class")?,
        vendor: get("vendor")?,
        device: get("device")?,
        subvendor: get("subvendor")?,
        subdevice: get("subdevice")?,
        driver: none_if_dash(&get("driver")?),
        group,
        boot_vga,
        rom: get("rom")? == "1",
        modalias: get("modalias")?,
    })
}

fn parse_group(rest: &str) -> Result<Group> {
    let (id, rest) = rest.split_once(' ').context("no group id")?;
    let id = id.parse().with_context(|| format!("group id `{id}`"))?;
    let (ty, members) = rest.split_once(" members=").context("no `members=`")?;
    let kind = ty.strip_prefix("type=").and_then(none_if_dash);
    let mut members: Vec<String> = members.split_whitespace().map(str::to_owned).collect();
    members.sort();
    Ok(Group { id, kind, members })
}

#[cfg(test)]
mod tests {
    use super::Truth;

    #[test]
    fn parses_guest_records() {
        let t = Truth::parse(
            "# realkernel truth v1\nkernel 6.1.0\ncmdline console=ttyS0 x=1\n\
             dev 0000:01:00.0 class=0x030000 vendor=1234 device=1111 subvendor=1af4 subdevice=1100 driver=bochs-drm group=6 boot_vga=1 rom=1 modalias=pci:v00001234d00001111\n\
             dev 0000:01:00.1 class=0x040300 vendor=8086 device=293e subvendor=1af4 subdevice=1100 driver=- group=- boot_vga=- rom=0 modalias=pci:x\n\
             iommu_units dmar0 \n\
             group 6 type=identity members=0000:01:00.1 0000:01:00.0 \n",
        )
        .expect("parse");
        assert_eq!(t.cmdline, "console=ttyS0 x=1");
        assert_eq!(t.iommu_units, ["dmar0"]);
        let d = t.device("0000:01:00.0");
        assert!(d.is_display());
        assert_eq!(d.driver.as_deref(), Some("bochs-drm"));
        assert_eq!(d.boot_vga, Some(true));
        assert!(d.rom);
        let a = t.device("0000:01:00.1");
        assert_eq!((a.driver.as_ref(), a.group, a.boot_vga), (None, None, None));
        assert_eq!(t.groups[&6].members, ["0000:01:00.0", "0000:01:00.1"]);
        assert_eq!(t.groups[&6].kind.as_deref(), Some("identity"));
        assert_eq!(t.group_of("0000:01:00.0").map(|g| g.id), Some(6));
    }
}
