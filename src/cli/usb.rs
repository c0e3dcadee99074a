//! `exliar usb list`: the host's USB devices, their controllers, and the
//! keyboards and mice udev names in `/dev/input/by-id`.

use std::io::Write;
use std::path::Path;

use clap::{Args, Subcommand};

use super::{exit, term};
use crate::host::HostRoot;
use crate::host::usb::{InputKind, UsbDevice, UsbReport};

#[derive(Debug, Args)]
pub struct UsbCmd {
    #[command(subcommand)]
    pub command: UsbSub,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum UsbSub {
    /// USB devices (bus, ids, names, kind, PCI controller), what each controller holds that the host needs, and the evdev keyboards and mice
    List(UsbListArgs),
}

#[derive(Debug, Args)]
pub struct UsbListArgs {
    /// Print the versioned JSON document (exliar.usb/1) instead of the table
    #[arg(long)]
    pub json: bool,
}

pub fn run(root: &Path, cmd: &UsbCmd) -> anyhow::Result<u8> {
    match &cmd.command {
        UsbSub::List(a) => list(root, a.json),
    }
}

fn list(root: &Path, json: bool) -> anyhow::Result<u8> {
    if !root.is_dir() {
        anyhow::bail!("{}: not a folder", root.display());
    }
    let host = HostRoot::new(root);
    let report = UsbReport::read(&host);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(term::safe(&render(&report)).as_bytes())?;
    }
    out.flush()?;
    Ok(exit::OK)
}

fn kind_text(d: &UsbDevice) -> String {
    let mut k: Vec<&str> = d.kind.iter().map(|k| k.as_str()).collect();
    if d.root_hub {
        k.retain(|k| *k != "hub");
        k.insert(0, "root hub");
    }
    k.join(", ")
}

/// The human table (escaped by the caller).
pub fn render(r: &UsbReport) -> String {
    let mut s = String::new();
    if r.devices.is_empty() {
        s.push_str(&format!(
            "No USB devices under {}.\n",
            Path::new(&r.root).join("sys/bus/usb/devices").display()
        ));
    } else {
        let rows: Vec<[String; 6]> = r
            .devices
            .iter()
            .map(|d| {
                [
                    format!("{:03}:{:03}", d.bus, d.dev),
                    d.id.clone(),
                    format!("{:04x}:{:04x}", d.vendor, d.product),
                    Some(d.display_name())
                        .filter(|n| !n.is_empty())
                        .unwrap_or("-".into()),
                    kind_text(d),
                    d.controller.map(|c| c.to_string()).unwrap_or("-".into()),
                ]
            })
            .collect();
        let head = [
            "BUS:DEV",
            "ID",
            "VENDOR:PRODUCT",
            "NAME",
            "KIND",
            "CONTROLLER",
        ];
        let mut w = head.map(|h| h.chars().count());
        for row in &rows {
            for (i, c) in row.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut l = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    l.push_str(c);
                } else {
                    let pad = w[i] - c.chars().count();
                    l.push_str(c);
                    l.push_str(&" ".repeat(pad + 2));
                }
            }
            l.trim_end().to_string() + "\n"
        };
        s.push_str(&line(&head.map(String::from)));
        for row in &rows {
            s.push_str(&line(row));
        }
        for d in r.devices.iter().filter(|d| !d.block_devices.is_empty()) {
            s.push_str(&format!(
                "  {} holds block device{} {}\n",
                d.id,
                if d.block_devices.len() == 1 { "" } else { "s" },
                d.block_devices.join(", ")
            ));
        }
    }
    if !r.controllers.is_empty() {
        s.push_str("\nControllers:\n");
        for c in &r.controllers {
            let n = c.devices.len();
            if c.host_needs.is_empty() {
                s.push_str(&format!(
                    "  {}: {n} device{} (hubs included); nothing the host needs found on it\n",
                    c.address,
                    if n == 1 { "" } else { "s" }
                ));
            } else {
                s.push_str(&format!(
                    "  {}: {n} device{} (hubs included); the host needs it:\n",
                    c.address,
                    if n == 1 { "" } else { "s" }
                ));
                for why in &c.host_needs {
                    s.push_str(&format!("    - {why}\n"));
                }
            }
        }
    }
    s.push_str("\nInput devices (/dev/input/by-id):\n");
    if r.evdev.is_empty() {
        s.push_str("  none\n");
    }
    for e in &r.evdev {
        let kind = match e.kind {
            InputKind::Keyboard => "keyboard",
            InputKind::Mouse => "mouse",
        };
        s.push_str(&format!(
            "  {kind:<8}  {}{}\n",
            e.path,
            e.event
                .as_ref()
                .map(|ev| format!(" -> {ev}"))
                .unwrap_or_default()
        ));
    }
    if r.usb_ids.is_none() && !r.devices.is_empty() {
        s.push_str("\n(no usb.ids found: names are the devices' own strings only)\n");
    }
    s
}
