//! Reading a device's ROM through sysfs (`/sys/bus/pci/devices/ADDR/rom`).
//!
//! The kernel reads the ROM only while it is enabled: writing anything but
//! `"0\n"` to `rom` enables it, `"0\n"` disables it again (its store
//! function disables only on exactly the two bytes `0` and newline), and a
//! read of a disabled ROM fails with `EINVAL`. [`dump`] enables, reads and
//! disables, the last on every path out.

use std::path::{Path, PathBuf};

use crate::host::HostRoot;
use crate::host::kernel::Kernel;
use crate::model::PciAddress;

/// A ROM read from a device, and what the user should know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    pub rom: Vec<u8>,
    /// One sentence each (the boot display's shadowed ROM, a ROM left enabled).
    pub warnings: Vec<String>,
}

/// Why a ROM could not be read. Each message holds its cause once (the
/// causes are not chained: a hint follows them).
#[derive(Debug, thiserror::Error)]
pub enum VbiosError {
    #[error("no PCI device {addr} ({path} does not exist)")]
    NoDevice { addr: PciAddress, path: String },
    #[error("PCI device {addr} has no option ROM exposed (no {path})")]
    NoRom { addr: PciAddress, path: String },
    /// The kernel interface's error names the file.
    #[error("enabling the ROM of {addr}: {cause}{hint}")]
    Enable {
        addr: PciAddress,
        cause: std::io::Error,
        hint: &'static str,
    },
    #[error("reading the ROM of {addr}: {cause}{hint}{left}")]
    Read {
        addr: PciAddress,
        cause: crate::host::ReadError,
        hint: &'static str,
        /// Said when the ROM could not be disabled again afterwards.
        left: String,
    },
    #[error("the ROM of {addr} read as 0 bytes{left}")]
    Empty { addr: PciAddress, left: String },
}

const NEEDS_ROOT: &str = " (reading a device's ROM needs root: run it with sudo)";

pub(super) fn permission_hint(kind: std::io::ErrorKind) -> &'static str {
    if kind == std::io::ErrorKind::PermissionDenied {
        NEEDS_ROOT
    } else {
        ""
    }
}

/// Enables a device's ROM; disables it again when dropped (or by
/// [`RomEnabled::disable`], which reports the result).
struct RomEnabled<'k> {
    kernel: &'k dyn Kernel,
    rel: PathBuf,
    armed: bool,
}

impl<'k> RomEnabled<'k> {
    fn enable(kernel: &'k dyn Kernel, rel: &Path) -> std::io::Result<Self> {
        kernel.write_attr(rel, "1\n")?;
        Ok(Self {
            kernel,
            rel: rel.to_path_buf(),
            armed: true,
        })
    }

    fn disable(mut self) -> std::io::Result<()> {
        self.armed = false;
        // Exactly "0\n": the kernel disables only on these two bytes.
        self.kernel.write_attr(&self.rel, "0\n")
    }
}

impl Drop for RomEnabled<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.kernel.write_attr(&self.rel, "0\n");
        }
    }
}

/// Read the option ROM of the device at `addr`: enable it through
/// `kernel`, read `rom` through `host`, disable it again (on every path).
/// Needs root on a live host.
pub fn dump(host: &HostRoot, kernel: &dyn Kernel, addr: PciAddress) -> Result<Dump, VbiosError> {
    let dir = Path::new("sys/bus/pci/devices").join(addr.to_string());
    let rel = dir.join("rom");
    if !host.exists(&dir) {
        return Err(VbiosError::NoDevice {
            addr,
            path: host.display(&dir),
        });
    }
    if !host.exists(&rel) {
        return Err(VbiosError::NoRom {
            addr,
            path: host.display(&rel),
        });
    }
    let mut warnings = Vec::new();
    if let Ok(Some(v)) = host.read_optional(dir.join("boot_vga"))
        && v.trim() == "1"
    {
        warnings.push(format!(
            "{addr} is the boot display: its ROM may be the copy the firmware ran and modified (shadowed); dump the ROM from a card that did not initialise the display (a second slot, or this card as a secondary GPU), or take the vendor's file"
        ));
    }
    let shown = host.display(&rel);
    let guard = RomEnabled::enable(kernel, &rel).map_err(|e| VbiosError::Enable {
        addr,
        hint: permission_hint(e.kind()),
        cause: e,
    })?;
    let read = host.read_bytes(&rel);
    let left = match guard.disable() {
        Ok(()) => String::new(),
        Err(e) => {
            format!("; the ROM could not be disabled again ({e}): run `echo 0 > {shown}` as root")
        }
    };
    match read {
        Err(cause) => Err(VbiosError::Read {
            addr,
            hint: permission_hint(cause.source.kind()),
            cause,
            left,
        }),
        Ok(rom) if rom.is_empty() => Err(VbiosError::Empty { addr, left }),
        Ok(rom) => {
            if !left.is_empty() {
                warnings.push(left.trim_start_matches("; ").to_string());
            }
            Ok(Dump { rom, warnings })
        }
    }
}
