//! Build a fixture host tree (sysfs + IOMMU groups + pci.ids + cmdline) from
//! pasted listings of a real machine, for `tests/fixtures/hosts/`.
//!
//!     cargo run --example fixture-tree -- OUT LISTING... [--boot-vga ADDR] [--cmdline TEXT]
//!
//! Only facts the listings state are written: a field the text does not give
//! becomes a missing attribute, exactly as exliar would meet it. The device
//! topology is flat (listings do not say which bridge a device sits behind).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use exliar::listing::{ListingFile, parse_files};
use exliar::model::{Inventory, PciAddress};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        bail!("usage: fixture-tree OUT LISTING... [--boot-vga ADDR] [--cmdline TEXT]");
    };
    let mut files = Vec::new();
    let mut boot_vga = None;
    let mut cmdline = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--boot-vga" => boot_vga = args.next().map(|s| PciAddress::parse(&s)).transpose()?,
            "--cmdline" => cmdline = args.next(),
            _ => {
                let text = String::from_utf8_lossy(&std::fs::read(&a).with_context(|| a.clone())?)
                    .into_owned();
                // Name the source by file name only: the tree must not depend
                // on where the listing was read from.
                let name = Path::new(&a)
                    .file_name()
                    .map_or(a.clone(), |n| n.to_string_lossy().into_owned());
                files.push(ListingFile { name, text });
            }
        }
    }
    let inv = parse_files(&files)?;
    if out.exists() {
        bail!("{} exists", out.display());
    }
    write_tree(
        &inv,
        &out,
        boot_vga,
        cmdline.as_deref().or(inv.host.kernel_cmdline.as_deref()),
    )?;
    eprintln!(
        "{}: {} devices, {} groups",
        out.display(),
        inv.devices.len(),
        inv.iommu.groups.len()
    );
    Ok(())
}

fn write(p: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(p, text).with_context(|| p.display().to_string())
}

fn link(target: &str, at: &Path) -> anyhow::Result<()> {
    if let Some(parent) = at.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::os::unix::fs::symlink(target, at).with_context(|| at.display().to_string())
}

fn write_tree(
    inv: &Inventory,
    out: &Path,
    boot_vga: Option<PciAddress>,
    cmdline: Option<&str>,
) -> anyhow::Result<()> {
    let sys = out.join("sys");
    std::fs::create_dir_all(sys.join("bus/pci/devices"))?;
    let mut names: BTreeMap<u16, (Option<String>, BTreeMap<u16, String>)> = BTreeMap::new();
    for d in &inv.devices {
        let a = d.address.to_string();
        let root = format!("pci{:04x}:00", d.address.domain);
        let rel = format!("{root}/{a}");
        let dir = sys.join("devices").join(&rel);
        std::fs::create_dir_all(&dir)?;
        if let Some(c) = d.class {
            write(&dir.join("class"), &format!("0x{:06x}\n", c.0))?;
        }
        if let Some(v) = d.vendor_id {
            write(&dir.join("vendor"), &format!("0x{v:04x}\n"))?;
        }
        if let Some(v) = d.device_id {
            write(&dir.join("device"), &format!("0x{v:04x}\n"))?;
        }
        if let Some(v) = d.subsystem_vendor_id {
            write(&dir.join("subsystem_vendor"), &format!("0x{v:04x}\n"))?;
        }
        if let Some(v) = d.subsystem_device_id {
            write(&dir.join("subsystem_device"), &format!("0x{v:04x}\n"))?;
        }
        if let Some(r) = d.revision {
            write(&dir.join("revision"), &format!("0x{r:02x}\n"))?;
        }
        if d.class.is_some_and(|c| c.class_subclass() == 0x0300)
            && let Some(b) = boot_vga
        {
            write(
                &dir.join("boot_vga"),
                if b == d.address { "1\n" } else { "0\n" },
            )?;
        }
        if let Some(drv) = &d.driver {
            std::fs::create_dir_all(sys.join("bus/pci/drivers").join(drv))?;
            link(
                &format!("../../../bus/pci/drivers/{drv}"),
                &dir.join("driver"),
            )?;
        }
        if let Some(g) = d.iommu_group {
            link(
                &format!("../../../kernel/iommu_groups/{g}"),
                &dir.join("iommu_group"),
            )?;
        }
        link(
            &format!("../../../devices/{rel}"),
            &sys.join("bus/pci/devices").join(&a),
        )?;
        if let Some(v) = d.vendor_id {
            let e = names.entry(v).or_default();
            if e.0.is_none() {
                e.0 = d.vendor_name.clone();
            }
            if let (Some(dev), Some(n)) = (d.device_id, &d.device_name) {
                e.1.entry(dev).or_insert_with(|| n.clone());
            }
        }
    }
    for (g, members) in &inv.iommu.groups {
        let gdir = sys
            .join("kernel/iommu_groups")
            .join(g.to_string())
            .join("devices");
        std::fs::create_dir_all(&gdir)?;
        for m in members {
            let root = format!("pci{:04x}:00", m.domain);
            link(
                &format!("../../../../devices/{root}/{m}"),
                &gdir.join(m.to_string()),
            )?;
        }
    }
    if inv.iommu.enabled == Some(true) && inv.iommu.groups.is_empty() {
        std::fs::create_dir_all(sys.join("kernel/iommu_groups"))?;
    }
    let mut ids = String::from("# pci.ids entries named in the source listings\n");
    for (v, (vn, devs)) in &names {
        let Some(vn) = vn else { continue };
        ids.push_str(&format!("{v:04x}  {vn}\n"));
        for (d, n) in devs {
            ids.push_str(&format!("\t{d:04x}  {n}\n"));
        }
    }
    write(&out.join("usr/share/misc/pci.ids"), &ids)?;
    if let Some(c) = cmdline {
        write(&out.join("proc/cmdline"), &format!("{c}\n"))?;
    }
    Ok(())
}
