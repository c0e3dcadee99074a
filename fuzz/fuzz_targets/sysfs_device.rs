//! Fuzz the PCI device-directory parser (`parse_device`, with `uevent`,
//! `config`'s first 64 bytes and the attribute values): a directory made
//! of any entries with any contents gives a device and warnings, never a
//! panic. Then what it read is written back the way the kernel writes it,
//! three ways, and each must read back as the same device without a
//! "garbled" warning:
//! - one attribute file per value (`class` `0x030000`, `vendor` `0x10de`, …)
//!   and the `driver` link;
//! - the identity in `uevent` (`PCI_CLASS=30000`, `PCI_ID=10DE:2204`, …),
//!   as the kernel gives it and as `scan` reads it;
//! - the identity in `config`'s standard header, read with
//!   `ReadOptions::config_space` (header type 0 when the subsystem ids are
//!   known, else 1, whose subsystem ids come from the files).
//!
//! The input is records separated by NUL bytes: a record's first byte picks
//! the entry's name (the attributes the parser knows, the links it follows,
//! `virtfnN`, `consumer:pci:` and `supplier:pci:`), the rest is its contents
//! (a link's target; for the device links, the address after the prefix).
//! One more pick makes a `uevent` of well-formed lines from the bytes
//! (`built_uevent`), which free text rarely reaches.
#![no_main]

use std::collections::BTreeMap;
use std::io;

use exliar::host::devdir::{DevDir, Entries, KNOWN};
use exliar::host::sysfs::{ReadOptions, parse_device};
use exliar::model::{ClassCode, Device, PciAddress, Warning};
use libfuzzer_sys::fuzz_target;

/// Links: the target's last component is what the parser reads.
const LINKS: &[&str] = &[
    "driver",
    "iommu_group",
    "physfn",
    "virtfn0",
    "virtfn1",
    "virtfn2",
];

/// Regular attribute files the parser knows: its list less the links.
fn files() -> Vec<&'static str> {
    KNOWN
        .iter()
        .copied()
        .filter(|k| !LINKS.contains(k))
        .collect()
}

#[derive(Clone)]
enum Entry {
    File(Vec<u8>),
    Link(String),
    /// Listed only (device links, whose name carries the address).
    Name,
}

/// A device directory in memory.
#[derive(Clone, Default)]
struct Dir(BTreeMap<String, Entry>);

impl Dir {
    fn file(&mut self, name: &str, text: impl Into<Vec<u8>>) {
        self.0.insert(name.to_string(), Entry::File(text.into()));
    }
    fn link(&mut self, name: &str, target: impl Into<String>) {
        self.0.insert(name.to_string(), Entry::Link(target.into()));
    }
}

impl DevDir for Dir {
    fn entries(&mut self) -> io::Result<Entries> {
        let mut e = Entries::default();
        for (name, entry) in &self.0 {
            e.add_typed(name.as_bytes(), matches!(entry, Entry::File(_)));
        }
        Ok(e.finish())
    }
    fn read(&mut self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match self.0.get(name) {
            Some(Entry::File(b)) => Ok(Some(b.clone())),
            Some(_) => Err(io::Error::other("is a directory")),
            None => Ok(None),
        }
    }
    fn read_head(&mut self, name: &str, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.0.get(name) {
            Some(Entry::File(b)) => {
                let n = b.len().min(buf.len());
                buf[..n].copy_from_slice(&b[..n]);
                Ok(Some(n))
            }
            Some(_) => Err(io::Error::other("is a directory")),
            None => Ok(None),
        }
    }
    fn link(&mut self, name: &str) -> io::Result<Option<String>> {
        match self.0.get(name) {
            Some(Entry::Link(t)) => Ok(Some(t.clone())),
            Some(_) => Err(io::Error::other("not a link")),
            None => Ok(None),
        }
    }
    fn display(&self, name: &str) -> String {
        format!("fuzz/{name}")
    }
}

/// A `uevent` made from bytes, so that well-formed lines are common: a
/// flags byte (which lines, upper- or lower-case hex), then class (3 bytes),
/// vendor, device, subsystem vendor and device (2 each), then the driver.
fn built_uevent(b: &[u8]) -> Vec<u8> {
    let g = |i: usize| b.get(i).copied().unwrap_or(0);
    let w = |i: usize| u16::from_be_bytes([g(i), g(i + 1)]);
    let flags = g(0);
    let class = u32::from_be_bytes([0, g(1), g(2), g(3)]);
    let hex = |v: u32, width: usize| {
        if flags & 0x10 == 0 {
            format!("{v:0width$X}")
        } else {
            format!("{v:0width$x}")
        }
    };
    let mut t = String::new();
    if flags & 1 != 0 {
        t.push_str(&format!("PCI_CLASS={}\n", hex(class, 0)));
    }
    if flags & 2 != 0 {
        t.push_str(&format!(
            "PCI_ID={}:{}\n",
            hex(w(4).into(), 4),
            hex(w(6).into(), 4)
        ));
    }
    if flags & 4 != 0 {
        t.push_str(&format!(
            "PCI_SUBSYS_ID={}:{}\n",
            hex(w(8).into(), 4),
            hex(w(10).into(), 4)
        ));
    }
    if flags & 8 != 0 {
        t.push_str(&format!(
            "DRIVER={}\n",
            String::from_utf8_lossy(b.get(12..).unwrap_or(&[]))
        ));
    }
    t.push_str("MODALIAS=pci:v\n");
    t.into_bytes()
}

fn decode(data: &[u8]) -> Dir {
    let files = files();
    let mut dir = Dir::default();
    for rec in data.split(|b| *b == 0) {
        let Some((&pick, rest)) = rec.split_first() else {
            continue;
        };
        // the files, the links, then a built uevent and the two device links
        let (f, l) = (files.len(), LINKS.len());
        match usize::from(pick) % (f + l + 3) {
            i if i < f => dir.file(files[i], rest.to_vec()),
            i if i < f + l => dir.link(LINKS[i - f], String::from_utf8_lossy(rest)),
            i if i == f + l => dir.file("uevent", built_uevent(rest)),
            i => {
                let prefix = if i == f + l + 1 {
                    "consumer:pci:"
                } else {
                    "supplier:pci:"
                };
                let name = format!("{prefix}{}", String::from_utf8_lossy(rest));
                dir.0.insert(name, Entry::Name);
            }
        }
    }
    dir
}

fn opts(config_space: bool) -> ReadOptions {
    ReadOptions {
        config_space,
        links: true,
        revision: true,
    }
}

fn parse(dir: &Dir, config_space: bool) -> (Device, Vec<Warning>) {
    let mut dir = dir.clone();
    let mut warnings = Vec::new();
    let d = parse_device(&mut dir, ADDRESS, opts(config_space), &mut warnings);
    (d, warnings)
}

const ADDRESS: PciAddress = PciAddress {
    domain: 0,
    bus: 1,
    device: 0,
    function: 0,
};

/// Every value of `d` but the identity, as the kernel writes it.
fn rest_of(d: &Device) -> Dir {
    let mut dir = Dir::default();
    if let Some(o) = &d.driver_override {
        dir.file("driver_override", format!("{o}\n"));
    }
    if let Some(b) = d.boot_vga {
        dir.file("boot_vga", if b { "1\n" } else { "0\n" });
    }
    if let Some(r) = &d.reset_methods {
        dir.file("reset_method", format!("{}\n", r.join(" ")));
    }
    if let Some(n) = d.numa_node {
        dir.file("numa_node", format!("{n}\n"));
    }
    if let Some(s) = &d.link.current_speed {
        dir.file("current_link_speed", format!("{s}\n"));
    }
    if let Some(w) = d.link.current_width {
        dir.file("current_link_width", format!("{w}\n"));
    }
    if let Some(s) = &d.link.max_speed {
        dir.file("max_link_speed", format!("{s}\n"));
    }
    if let Some(w) = d.link.max_width {
        dir.file("max_link_width", format!("{w}\n"));
    }
    if let Some(t) = d.sriov.total_vfs {
        dir.file("sriov_totalvfs", format!("{t}\n"));
    }
    if let Some(n) = d.sriov.num_vfs {
        dir.file("sriov_numvfs", format!("{n}\n"));
    }
    if let Some(drv) = &d.driver {
        dir.link("driver", drv.clone());
    }
    if let Some(g) = d.iommu_group {
        dir.link("iommu_group", g.to_string());
    }
    if let Some(p) = d.sriov.physfn {
        dir.link("physfn", p.to_string());
    }
    for (i, v) in d.sriov.virtfns.iter().enumerate() {
        dir.link(&format!("virtfn{i}"), v.to_string());
    }
    if d.rom == Some(true) {
        dir.file("rom", Vec::new());
    }
    for c in &d.consumers {
        dir.0.insert(format!("consumer:pci:{c}"), Entry::Name);
    }
    for s in &d.suppliers {
        dir.0.insert(format!("supplier:pci:{s}"), Entry::Name);
    }
    dir
}

/// The identity as one attribute file per value.
fn with_files(d: &Device, dir: &mut Dir) {
    if let Some(c) = d.class {
        dir.file("class", format!("0x{:06x}\n", c.0));
    }
    for (name, v) in [
        ("vendor", d.vendor_id),
        ("device", d.device_id),
        ("subsystem_vendor", d.subsystem_vendor_id),
        ("subsystem_device", d.subsystem_device_id),
    ] {
        if let Some(v) = v {
            dir.file(name, format!("0x{v:04x}\n"));
        }
    }
    if let Some(r) = d.revision {
        dir.file("revision", format!("0x{r:02x}\n"));
    }
}

/// The device links' order does not matter (the listing's is by name),
/// nor two names of one address (`0000:0a:00.0`, `0000:0A:00.0`), which are
/// written back as one entry.
fn same(a: &Device, b: &Device) -> bool {
    let norm = |d: &Device| {
        let mut d = d.clone();
        for v in [&mut d.consumers, &mut d.suppliers] {
            v.sort();
            v.dedup();
        }
        d
    };
    norm(a) == norm(b)
}

fn check(what: &str, want: &Device, dir: &Dir, config_space: bool) {
    let (got, warnings) = parse(dir, config_space);
    assert!(
        same(&got, want),
        "{what}: read back differently\nwant {want:?}\ngot  {got:?}"
    );
    for w in &warnings {
        assert!(
            !w.message.contains("garbled"),
            "{what}: a value written as the kernel writes it is garbled: {w:?}"
        );
    }
}

/// A driver name `uevent` can carry (`DRIVER=name`, one line, trimmed).
fn uevent_safe(s: &str) -> bool {
    !s.is_empty() && !s.contains('\n') && s.trim() == s
}

fuzz_target!(|data: &[u8]| {
    let input = decode(data);
    let (d, _) = parse(&input, false);
    let _ = parse(&input, true);

    // One attribute file per value, the driver as a link.
    let mut files = rest_of(&d);
    with_files(&d, &mut files);
    check("attribute files", &d, &files, false);

    // The identity (and the driver) in uevent, as the kernel writes it.
    if d.driver.as_deref().is_none_or(uevent_safe) {
        let mut dir = files.clone();
        let mut ev = String::new();
        if let Some(c) = d.class {
            ev.push_str(&format!("PCI_CLASS={:X}\n", c.0));
        }
        if let (Some(v), Some(p)) = (d.vendor_id, d.device_id) {
            ev.push_str(&format!("PCI_ID={v:04X}:{p:04X}\n"));
        }
        if let (Some(v), Some(p)) = (d.subsystem_vendor_id, d.subsystem_device_id) {
            ev.push_str(&format!("PCI_SUBSYS_ID={v:04X}:{p:04X}\n"));
        }
        if let Some(drv) = &d.driver {
            ev.push_str(&format!("DRIVER={drv}\n"));
        }
        ev.push_str(&format!("PCI_SLOT_NAME={ADDRESS}\nMODALIAS=pci:v\n"));
        dir.file("uevent", ev);
        check("uevent", &d, &dir, false);
    }

    // The identity in config space's standard header. The header always
    // says device, class and revision: what the files did not say is 0 there,
    // and read back so.
    if let Some(v) = d.vendor_id
        && v != 0
        && v != 0xffff
    {
        let mut want = d.clone();
        let p = *want.device_id.get_or_insert(0);
        let c = want.class.get_or_insert(ClassCode(0)).0;
        let r = *want.revision.get_or_insert(0);
        let mut head = [0u8; 64];
        head[0..2].copy_from_slice(&v.to_le_bytes());
        head[2..4].copy_from_slice(&p.to_le_bytes());
        head[8] = r;
        head[9..12].copy_from_slice(&c.to_le_bytes()[..3]);
        match (d.subsystem_vendor_id, d.subsystem_device_id) {
            (Some(sv), Some(sd)) => {
                head[0x2c..0x2e].copy_from_slice(&sv.to_le_bytes());
                head[0x2e..0x30].copy_from_slice(&sd.to_le_bytes());
            }
            // a bridge: its subsystem ids are not in the header
            _ => head[0x0e] = 0x81,
        }
        let mut dir = files.clone();
        dir.file("config", head.to_vec());
        check("config", &want, &dir, true);
    }
});
