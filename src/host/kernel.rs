//! The one small interface through which exliar changes the running kernel:
//! sysfs attribute writes and module loading. Everything else exliar does to
//! a host is a file edit planned as data.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// A write to the kernel, as recorded in logs and errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelOp {
    /// Write `value` to the sysfs attribute at `path` (inside the root).
    Write { path: PathBuf, value: String },
    /// `modprobe NAME`.
    LoadModule { name: String },
    /// `modprobe -r NAME`.
    UnloadModule { name: String },
}

impl std::fmt::Display for KernelOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelOp::Write { path, value } => {
                write!(f, "write {:?} to /{}", value.trim_end(), path.display())
            }
            KernelOp::LoadModule { name } => write!(f, "modprobe {name}"),
            KernelOp::UnloadModule { name } => write!(f, "modprobe -r {name}"),
        }
    }
}

/// The kernel-write interface.
pub trait Kernel {
    /// Write a sysfs attribute; `rel` is relative to the host root
    /// (`sys/bus/pci/devices/0000:01:00.0/driver_override`).
    fn write_attr(&self, rel: &Path, value: &str) -> io::Result<()>;
    /// Load a kernel module.
    fn load_module(&self, name: &str) -> io::Result<()>;
    /// Unload a kernel module (`modprobe -r`: it fails while the module is
    /// in use or held by another).
    fn unload_module(&self, name: &str) -> io::Result<()>;
}

/// The real kernel under a root (normally `/`). Paths are opened with
/// `openat2(RESOLVE_IN_ROOT)`, so no link leads a write outside the root.
/// The root is opened at the first write and kept for the others (a bind
/// writes five to eight attributes).
#[derive(Debug)]
pub struct SysfsKernel {
    root: PathBuf,
    root_fd: OnceLock<OwnedFd>,
}

impl SysfsKernel {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            root_fd: OnceLock::new(),
        }
    }

    /// The root, opened once (a failed open is tried again next time).
    fn root_fd(&self) -> io::Result<BorrowedFd<'_>> {
        if let Some(fd) = self.root_fd.get() {
            return Ok(fd.as_fd());
        }
        let fd = rustix::fs::open(
            &self.root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("{}: {e}", self.root.display()),
            )
        })?;
        Ok(self.root_fd.get_or_init(|| fd).as_fd())
    }
}

impl Kernel for SysfsKernel {
    fn write_attr(&self, rel: &Path, value: &str) -> io::Result<()> {
        let root = self.root_fd()?;
        let fd = super::devdir::openat2_scoped(
            root,
            rel,
            // TRUNC, as a shell's `>` does: sysfs ignores it, and a plain
            // file (a tree that is not sysfs) is then rewritten whole.
            OFlags::WRONLY | OFlags::TRUNC | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("/{}: {e}", rel.display()),
            )
        })?;
        // A sysfs store takes the whole value in one write.
        let n = rustix::io::write(&fd, value.as_bytes()).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("/{}: {e}", rel.display()),
            )
        })?;
        if n != value.len() {
            return Err(io::Error::other(format!(
                "/{}: short write ({n} of {} bytes)",
                rel.display(),
                value.len()
            )));
        }
        Ok(())
    }

    fn load_module(&self, name: &str) -> io::Result<()> {
        self.modprobe(&[], name)
    }

    fn unload_module(&self, name: &str) -> io::Result<()> {
        self.modprobe(&["-r"], name)
    }
}

impl SysfsKernel {
    fn modprobe(&self, flags: &[&str], name: &str) -> io::Result<()> {
        let shown = if flags.is_empty() {
            format!("modprobe {name}")
        } else {
            format!("modprobe {} {name}", flags.join(" "))
        };
        // modprobe acts on the running kernel, whatever the root: a tree
        // that is not the live host (a snapshot, a mounted target) must not
        // load or unload modules of this machine.
        if self.root != Path::new("/") {
            return Err(io::Error::other(format!(
                "{shown}: modules are {} only on the live host (--root /), not for {}",
                if flags.is_empty() {
                    "loaded"
                } else {
                    "unloaded"
                },
                self.root.display()
            )));
        }
        // No shell: the module name is one argument.
        let out = std::process::Command::new("modprobe")
            .args(flags)
            .arg("--")
            .arg(name)
            .output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{shown} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}
