//! `exliar vbios dump|check`: a GPU's option ROM, read from sysfs or a file,
//! and whether a VM can use it. The work is in [`crate::vbios`].

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::{exit, term};
use crate::host::HostRoot;
use crate::host::kernel::SysfsKernel;
use crate::model::PciAddress;
use crate::vbios::{self, RomReport};

#[derive(Debug, Args)]
pub struct VbiosCmd {
    #[command(subcommand)]
    pub command: VbiosSub,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum VbiosSub {
    /// Read a card's option ROM from sysfs into FILE (enabled for the read, disabled again), then check it; needs root
    Dump(DumpArgs),
    /// Check a ROM file: its images (legacy BIOS, UEFI GOP), their ids, the chain; exit 1 when a VM cannot use it as it is
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The card's PCI address (`0000:01:00.0` or `01:00.0`)
    #[arg(value_name = "ADDR")]
    pub address: String,
    /// Where to write the ROM (a new file; never through a symbolic link)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Replace FILE when it exists (a regular file only)
    #[arg(long)]
    pub force: bool,
    /// Print the check as the versioned JSON document (exliar.vbios/1)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The ROM file (at most 16 MiB)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The card the ROM is for: a PCI address on this host (its ids are read from sysfs) or `VENDOR:DEVICE` (`10de:1b80`)
    #[arg(long = "for", value_name = "ADDR|VENDOR:DEVICE")]
    pub for_card: Option<String>,
    /// Write a copy without the header some dump tools (nvflash) put before the first image to OUT, and check that copy
    #[arg(long, value_name = "OUT")]
    pub strip: Option<PathBuf>,
    /// With --strip: replace OUT when it exists (a regular file only)
    #[arg(long, requires = "strip")]
    pub force: bool,
    /// Print the versioned JSON document (exliar.vbios/1)
    #[arg(long)]
    pub json: bool,
}

pub fn run(root: &Path, cmd: &VbiosCmd) -> anyhow::Result<u8> {
    match &cmd.command {
        VbiosSub::Dump(a) => dump(root, a),
        VbiosSub::Check(a) => check(root, a),
    }
}

/// `VENDOR:DEVICE` as two 4-digit hex numbers.
fn parse_ids(s: &str) -> Option<(u16, u16)> {
    let (v, d) = s.split_once(':')?;
    let hex = |t: &str| {
        (t.len() == 4 && t.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| u16::from_str_radix(t, 16).ok())
            .flatten()
    };
    Some((hex(v)?, hex(d)?))
}

/// A device's vendor and device ids from sysfs.
fn device_ids(host: &HostRoot, addr: PciAddress) -> anyhow::Result<(u16, u16)> {
    let dir = Path::new("sys/bus/pci/devices").join(addr.to_string());
    let read = |name: &str| -> anyhow::Result<u16> {
        let text = host.read_string(dir.join(name)).map_err(|e| {
            if e.is_not_found() {
                anyhow::anyhow!("no PCI device {addr} ({e})")
            } else {
                anyhow::Error::from(e)
            }
        })?;
        let t = text.trim();
        u16::from_str_radix(t.trim_start_matches("0x"), 16)
            .with_context(|| format!("{}: not a hex id: {t:?}", host.display(&dir.join(name))))
    };
    Ok((read("vendor")?, read("device")?))
}

fn expected_ids(root: &Path, spec: &str) -> anyhow::Result<(u16, u16)> {
    if let Some(ids) = parse_ids(spec) {
        return Ok(ids);
    }
    let addr = PciAddress::parse(spec).with_context(|| {
        format!("--for {spec:?}: neither a PCI address nor VENDOR:DEVICE (10de:1b80)")
    })?;
    device_ids(&HostRoot::new(root), addr)
}

/// Refuse a symbolic link, and anything existing unless `force` (then
/// only a regular file).
fn check_target(out: &Path, force: bool) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(out) {
        Ok(md) if md.file_type().is_symlink() => {
            bail!("{}: is a symbolic link; not written through", out.display())
        }
        Ok(md) if !md.is_file() => bail!("{}: exists and is not a file", out.display()),
        Ok(_) if !force => bail!("{}: exists; --force replaces it", out.display()),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::Error::from(e).context(out.display().to_string())),
    }
}

/// Write `bytes` to `out`: into a new file beside it (`O_EXCL`, so never
/// through a link), then moved into place; an existing `out` is replaced
/// only with `force`, and never a link.
fn write_file(out: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    check_target(out, force)?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = out.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.exliar-{}.tmp", std::process::id()));
    let shown = out.display().to_string();
    let done = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        if force {
            // check_target allowed only a regular file (or nothing) there.
            return std::fs::rename(&tmp, out);
        }
        match renameat_with(CWD, &tmp, CWD, out, RenameFlags::NOREPLACE) {
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
                std::fs::hard_link(&tmp, out).and_then(|()| std::fs::remove_file(&tmp))
            }
            r => r.map_err(std::io::Error::from),
        }
    })();
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            bail!("{shown}: exists; --force replaces it");
        }
        return Err(anyhow::Error::from(e).context(shown));
    }
    Ok(())
}

fn size(n: usize) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{n} bytes ({} KiB)", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The human report of a ROM named `name`.
pub fn render(r: &RomReport, name: &str) -> String {
    let mut s = format!("ROM {name}: {}\n", size(r.size));
    if r.prefix_bytes > 0 {
        s.push_str(&format!(
            "  {} before the first image (a dump tool's header)\n",
            size(r.prefix_bytes)
        ));
    }
    for (i, img) in r.images.iter().enumerate() {
        let mut kind = img.code_type.describe().to_string();
        if let Some(e) = &img.efi {
            kind.push_str(&format!(" {} {}", e.machine, e.subsystem_name));
            if e.compressed {
                kind.push_str(", compressed");
            }
        }
        if img.code_type == vbios::CodeType::Other {
            kind.push_str(&format!(" (code type 0x{:02x})", img.code_type_raw));
        }
        let mut ids = format!("{:04x}:{:04x}", img.vendor, img.device);
        let list: Vec<String> = img
            .device_list
            .iter()
            .filter(|d| **d != img.device)
            .map(|d| format!("{d:04x}"))
            .collect();
        if !list.is_empty() {
            ids.push_str(&format!(" (also {})", list.join(", ")));
        }
        let mut extra = Vec::new();
        match img.checksum_ok {
            Some(true) => extra.push("checksum ok"),
            Some(false) => extra.push("checksum WRONG"),
            None => {}
        }
        if img.truncated {
            extra.push("TRUNCATED");
        }
        if img.last {
            extra.push("last");
        }
        s.push_str(&format!(
            "  image {i} at 0x{:06x}: {kind}, {ids}, class 0x{:06x}, {}{}{}\n",
            img.offset,
            img.class_code,
            size(img.length),
            if extra.is_empty() { "" } else { ", " },
            extra.join(", ")
        ));
    }
    if r.trailing_bytes > 0 {
        s.push_str(&format!(
            "  {} after the last image\n",
            size(r.trailing_bytes)
        ));
    }
    s.push_str(&format!(
        "Starts with its first image: {}\n",
        yes_no(r.signature_ok)
    ));
    s.push_str(&match (r.ids_match, r.expected) {
        (Some(true), Some(e)) => format!("Ids: match {:04x}:{:04x}\n", e.vendor, e.device),
        (Some(false), Some(e)) => format!(
            "Ids: do NOT match the card {:04x}:{:04x}\n",
            e.vendor, e.device
        ),
        _ => "Ids: not checked (--for ADDR compares them with a card)\n".to_string(),
    });
    s.push_str(&format!("Legacy BIOS image: {}\n", yes_no(r.has_legacy)));
    s.push_str(&format!("UEFI (GOP) image: {}\n", yes_no(r.has_uefi_gop)));
    s.push_str(&format!(
        "Usable as a VM's ROM file: {}\n",
        yes_no(r.usable)
    ));
    for w in &r.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    for f in &r.findings {
        s.push_str(&format!(
            "{}: {}\n  fix: {}\n",
            f.severity.as_str(),
            f.message,
            f.remedy
        ));
    }
    s
}

fn emit(r: &RomReport, name: &str, json: bool) -> anyhow::Result<u8> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if json {
        serde_json::to_writer_pretty(&mut out, r)?;
        writeln!(out)?;
    } else {
        out.write_all(term::safe(&render(r, name)).as_bytes())?;
    }
    out.flush()?;
    Ok(if r.usable { exit::OK } else { exit::FINDINGS })
}

fn check(root: &Path, a: &CheckArgs) -> anyhow::Result<u8> {
    let expect = a
        .for_card
        .as_deref()
        .map(|s| expected_ids(root, s))
        .transpose()?;
    let bytes = vbios::read_file(&a.file).with_context(|| a.file.display().to_string())?;
    let name = a.file.display().to_string();
    if let Some(out) = &a.strip {
        match vbios::strip(&bytes) {
            Some(stripped) => {
                write_file(out, &stripped, a.force)?;
                term::err(&format!(
                    "exliar: wrote {} ({}), {name} without the {} before its first image; the report is of that copy\n",
                    out.display(),
                    size(stripped.len()),
                    size(bytes.len() - stripped.len()),
                ));
                let r = vbios::check(&stripped, expect);
                return emit(&r, &out.display().to_string(), a.json);
            }
            None => term::err(&format!(
                "exliar: nothing to strip: {name} has no header before its first image; {} not written\n",
                out.display()
            )),
        }
    }
    emit(&vbios::check(&bytes, expect), &name, a.json)
}

fn dump(root: &Path, a: &DumpArgs) -> anyhow::Result<u8> {
    let addr = PciAddress::parse(&a.address)?;
    // Refuse before touching the device.
    check_target(&a.output, a.force)?;
    let host = HostRoot::new(root);
    let kernel = SysfsKernel::new(root);
    let d = vbios::dump(&host, &kernel, addr)?;
    write_file(&a.output, &d.rom, a.force)?;
    term::err(&format!(
        "exliar: wrote the ROM of {addr} to {} ({})\n",
        a.output.display(),
        size(d.rom.len())
    ));
    let expect = device_ids(&host, addr).ok();
    let mut report = vbios::check(&d.rom, expect);
    report.warnings = d.warnings;
    emit(&report, &a.output.display().to_string(), a.json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_targets() -> anyhow::Result<()> {
        assert_eq!(parse_ids("10de:1B80"), Some((0x10de, 0x1b80)));
        assert_eq!(parse_ids("01:00.0"), None);
        assert_eq!(parse_ids("10de:1b8"), None);
        let t = tempfile::tempdir()?;
        let f = t.path().join("rom.bin");
        write_file(&f, b"one", false)?;
        let e = write_file(&f, b"two", false).expect_err("exists");
        assert!(
            e.to_string().ends_with("exists; --force replaces it"),
            "{e}"
        );
        write_file(&f, b"two", true)?;
        assert_eq!(std::fs::read(&f)?, b"two");
        let target = t.path().join("target");
        std::fs::write(&target, "keep")?;
        let link = t.path().join("link.rom");
        std::os::unix::fs::symlink(&target, &link)?;
        for force in [false, true] {
            let e = write_file(&link, b"x", force).expect_err("a link");
            assert!(e.to_string().contains("symbolic link"), "{e}");
        }
        assert_eq!(std::fs::read(&target)?, b"keep");
        assert_eq!(
            std::fs::read_dir(t.path())?.count(),
            3,
            "no temporary file left"
        );
        Ok(())
    }
}
