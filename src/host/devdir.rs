//! Reading one PCI device directory, two ways:
//!
//! * [`FdDir`]: the fast path for reports. The directory is opened once with
//!   `openat2(RESOLVE_IN_ROOT)`, so the kernel itself keeps every link inside
//!   the host root, and attributes are read relative to that descriptor.
//! * [`RootDir`]: through [`HostRoot`]'s lexical resolution, which records
//!   every path it reads (snapshots), and works where `openat2` does not.
//!
//! Both feed the same parser ([`super::sysfs::parse_device`]); a test checks
//! that they agree.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use super::root::HostRoot;

/// Attribute names the parser looks for, as a compact set (links among
/// them: `driver`, `iommu_group`, `physfn`).
pub const KNOWN: &[&str] = &[
    "class",
    "vendor",
    "device",
    "subsystem_vendor",
    "subsystem_device",
    "revision",
    "uevent",
    "driver_override",
    "boot_vga",
    "reset_method",
    "numa_node",
    "current_link_speed",
    "current_link_width",
    "max_link_speed",
    "max_link_width",
    "sriov_totalvfs",
    "sriov_numvfs",
    "driver",
    "iommu_group",
    "physfn",
    "rom",
    "config",
];

/// The entries of a device directory that matter: the known attribute
/// names (a bit set) and the variable ones (`virtfnN`, device links).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Entries {
    known: u32,
    /// The known entries the listing says are regular files (`d_type`).
    regular: u32,
    /// `virtfn*`, `consumer:*`, `supplier:*`, sorted by `finish`.
    pub extra: Vec<String>,
}

impl Entries {
    pub fn add(&mut self, name: &[u8]) {
        self.add_typed(name, false);
    }

    /// Add an entry the listing says is (or is not) a regular file.
    pub fn add_typed(&mut self, name: &[u8], regular: bool) {
        if let Some(i) = KNOWN.iter().position(|k| k.as_bytes() == name) {
            self.known |= 1 << i;
            if regular {
                self.regular |= 1 << i;
            }
        } else if name.starts_with(b"virtfn")
            || name.starts_with(b"consumer:")
            || name.starts_with(b"supplier:")
        {
            self.extra.push(String::from_utf8_lossy(name).into_owned());
        }
    }

    pub fn finish(mut self) -> Self {
        self.extra.sort();
        self
    }

    /// A known entry listed as a regular file.
    pub fn is_regular(&self, name: &str) -> bool {
        KNOWN
            .iter()
            .position(|k| *k == name)
            .is_some_and(|i| self.regular & (1 << i) != 0)
    }

    pub fn contains(&self, name: &str) -> bool {
        match KNOWN.iter().position(|k| *k == name) {
            Some(i) => self.known & (1 << i) != 0,
            None => self.extra.iter().any(|e| e == name),
        }
    }
}

/// What the device parser needs from a device directory.
pub trait DevDir {
    /// The entries that matter.
    fn entries(&mut self) -> io::Result<Entries>;
    /// A file's bytes; `Ok(None)` when it does not exist.
    fn read(&mut self, name: &str) -> io::Result<Option<Vec<u8>>>;
    /// At most `buf.len()` bytes from the start of a file, in one read
    /// (`config`); `Ok(None)` where this reader does not read that way,
    /// and the caller uses the attribute files instead.
    fn read_head(&mut self, _name: &str, _buf: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(None)
    }
    /// The last component of a link's target; `Ok(None)` when absent.
    fn link(&mut self, name: &str) -> io::Result<Option<String>>;
    /// How to name an entry in a warning.
    fn display(&self, name: &str) -> String;
    /// The parser relied on this entry's existence (snapshots keep it).
    fn used(&mut self, _name: &str) {}
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

/// A device directory read through [`HostRoot`].
pub struct RootDir<'a> {
    pub host: &'a HostRoot,
    /// The directory's path inside the root as the user knows it
    /// (`sys/bus/pci/devices/ADDR`).
    pub shown: PathBuf,
    /// The resolved directory inside the root.
    pub dir: PathBuf,
}

impl DevDir for RootDir<'_> {
    fn entries(&mut self) -> io::Result<Entries> {
        let names = self.host.list_dir(&self.dir).map_err(|e| e.source)?;
        let mut e = Entries::default();
        for n in &names {
            e.add(n.as_bytes());
        }
        Ok(e.finish())
    }
    fn read(&mut self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match self.host.read_bytes(self.dir.join(name)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.source),
        }
    }
    fn link(&mut self, name: &str) -> io::Result<Option<String>> {
        self.host
            .link_name(self.dir.join(name))
            .map_err(|e| e.source)
    }
    fn display(&self, name: &str) -> String {
        self.host.display(&self.shown.join(name))
    }
    fn used(&mut self, name: &str) {
        self.host.mark_present(self.dir.join(name));
    }
}

/// How many times [`openat2_scoped`] tries a lookup the kernel asked to
/// retry. A scoped lookup (`RESOLVE_IN_ROOT`, `RESOLVE_BENEATH`) that
/// crosses `..` fails with `EAGAIN` when any rename or mount happened
/// anywhere on the system meanwhile; each retry is one lookup, so this
/// only bounds a system renaming without pause.
const SCOPED_TRIES: u32 = 1000;

/// `openat2` with a scoped resolution, retried while the kernel answers
/// `EAGAIN` (a rename or mount elsewhere raced a `..` step; see
/// [`SCOPED_TRIES`]) or `EINTR`. Every `openat2` in exliar goes through it.
pub(crate) fn openat2_scoped<P: rustix::path::Arg + Copy>(
    dir: std::os::fd::BorrowedFd<'_>,
    path: P,
    oflags: OFlags,
    mode: Mode,
    resolve: ResolveFlags,
) -> rustix::io::Result<OwnedFd> {
    let mut tries = 1;
    loop {
        match rustix::fs::openat2(dir, path, oflags, mode, resolve) {
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) if tries < SCOPED_TRIES => {
                tries += 1;
            }
            r => return r,
        }
    }
}

/// The root directory opened for `openat2`.
pub struct FdRoot {
    fd: OwnedFd,
    /// `sys/devices`, for opening device folders by their link target.
    sys_devices: Option<OwnedFd>,
    path: PathBuf,
}

impl FdRoot {
    /// Open `root`; `None` when `openat2(RESOLVE_IN_ROOT)` is not available
    /// (old kernel, seccomp filter), so the caller falls back.
    pub fn open(root: &Path) -> Option<Self> {
        let fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let mut me = Self {
            fd,
            sys_devices: None,
            path: root.to_path_buf(),
        };
        // Probe once.
        me.open_dir(".").ok()?;
        me.sys_devices = me.open_dir("sys/devices").ok();
        Some(me)
    }

    /// Open a device folder from its `sys/bus/pci/devices/ADDR` link target.
    /// The usual target `../../../devices/…` is opened beneath `sys/devices`
    /// (a shorter walk, still confined by the kernel); anything else goes
    /// through [`FdRoot::open_dir`] on the link itself.
    pub fn open_device(&self, link_rel: &str, target: &Path) -> io::Result<OwnedFd> {
        if let (Some(devs), Ok(rest)) = (&self.sys_devices, target.strip_prefix("../../../devices"))
        {
            return openat2_scoped(
                devs.as_fd(),
                rest,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
            )
            .map_err(io::Error::from);
        }
        self.open_dir(link_rel)
    }

    /// Open a directory inside the root, links resolved by the kernel as if
    /// the root were `/`.
    pub fn open_dir(&self, rel: &str) -> io::Result<OwnedFd> {
        openat2_scoped(
            self.fd.as_fd(),
            rel,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(io::Error::from)
    }

    /// A small attribute file inside the root (links resolved as by
    /// [`FdRoot::open_dir`]); `None` when it does not exist.
    pub fn read_attr(&self, rel: &str) -> io::Result<Option<Vec<u8>>> {
        let fd = match openat2_scoped(
            self.fd.as_fd(),
            rel,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => fd,
            Err(e) => {
                let e = io::Error::from(e);
                return if not_found(&e) { Ok(None) } else { Err(e) };
            }
        };
        // No fstat: the open neither blocks (O_NONBLOCK) nor leaves the
        // root, and the read is capped, as for listed attributes.
        super::readfile::read_capped(&fd, 4096, super::readfile::ATTRIBUTE_LIMIT, true).map(Some)
    }

    /// The names in a directory inside the root (`.` and `..` left out).
    pub fn names(&self, rel: &str) -> io::Result<Vec<String>> {
        let fd = self.open_dir(rel)?;
        names_of(&fd)
    }

    /// The link targets of every entry of a directory inside the root (a
    /// process's `fd/`): one open, then one `readlinkat` per entry.
    pub fn link_targets(&self, rel: &str) -> io::Result<Vec<PathBuf>> {
        let fd = self.open_dir(rel)?;
        let mut out = Vec::new();
        for n in names_of(&fd)? {
            // a descriptor closed meanwhile is simply gone
            if let Ok(t) = rustix::fs::readlinkat(fd.as_fd(), n.as_str(), Vec::new()) {
                out.push(PathBuf::from(t.to_string_lossy().into_owned()));
            }
        }
        Ok(out)
    }

    /// The target text of a link inside the root (not followed).
    pub fn read_link(&self, rel: &str) -> io::Result<PathBuf> {
        let t = rustix::fs::readlinkat(self.fd.as_fd(), rel, Vec::new())?;
        Ok(PathBuf::from(t.to_string_lossy().into_owned()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn names_of(fd: &OwnedFd) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    super::readfile::each_dir_entry(fd, |n, _, _| {
        names.push(String::from_utf8_lossy(n).into_owned())
    })?;
    Ok(names)
}

/// A device directory held open by descriptor.
pub struct FdDir {
    pub fd: OwnedFd,
    pub shown: PathBuf,
    /// Filled by [`DevDir::entries`] (the known entries only): which of
    /// them the listing says are regular files, so reading them needs no
    /// `fstat`.
    pub listed: Entries,
}

impl FdDir {
    pub fn new(fd: OwnedFd, shown: PathBuf) -> Self {
        Self {
            fd,
            shown,
            listed: Entries::default(),
        }
    }

    /// Open an attribute: without `fstat` when the listing said it is a
    /// regular file, else checked to be one. `Ok(None)`: absent.
    fn open(&self, name: &str) -> io::Result<Option<(OwnedFd, u64)>> {
        let r = if self.listed.is_regular(name) {
            super::readfile::open_listed_regular_at(self.fd.as_fd(), name).map(|fd| (fd, 0))
        } else {
            super::readfile::open_regular_at(self.fd.as_fd(), name, true)
        };
        match r {
            Ok(x) => Ok(Some(x)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl DevDir for FdDir {
    fn entries(&mut self) -> io::Result<Entries> {
        let mut names = Entries::default();
        super::readfile::each_dir_entry(&self.fd, |n, _, regular| names.add_typed(n, regular))?;
        let names = names.finish();
        self.listed = Entries {
            known: names.known,
            regular: names.regular,
            extra: Vec::new(),
        };
        Ok(names)
    }

    fn read(&mut self, name: &str) -> io::Result<Option<Vec<u8>>> {
        // Never blocks on a FIFO nor reads a device node; at most an
        // attribute's size.
        let Some((fd, size)) = self.open(name)? else {
            return Ok(None);
        };
        // A short read means end of file, for sysfs attributes and local
        // files alike, so small files take one read.
        super::readfile::read_capped(&fd, size, super::readfile::ATTRIBUTE_LIMIT, true).map(Some)
    }

    fn read_head(&mut self, name: &str, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let Some((fd, _)) = self.open(name)? else {
            return Ok(None);
        };
        super::readfile::read_head(&fd, buf).map(Some)
    }

    fn link(&mut self, name: &str) -> io::Result<Option<String>> {
        match rustix::fs::readlinkat(self.fd.as_fd(), name, Vec::new()) {
            Ok(t) => {
                let t = PathBuf::from(t.to_string_lossy().into_owned());
                Ok(t.file_name().map(|n| n.to_string_lossy().into_owned()))
            }
            Err(e) => {
                let e = io::Error::from(e);
                if not_found(&e) { Ok(None) } else { Err(e) }
            }
        }
    }

    fn display(&self, name: &str) -> String {
        self.shown.join(name).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A scoped lookup that crosses `..` (every `sys/bus/pci/devices/ADDR`
    /// link does) fails with `EAGAIN` when anything on the system is
    /// renamed meanwhile; the reads must not fail with it. Without the
    /// retry, about one read in ten failed here while another thread
    /// renamed a file elsewhere.
    #[test]
    fn reads_through_links_survive_renames_elsewhere() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        let a = crate::model::PciAddress::parse("0000:00:01.0")?;
        super::super::sim::SimTree::new()
            .device(super::super::sim::SimDevice::new(
                a, 0x030000, 0x1234, 0x1111,
            ))
            .build(root)?;
        let Some(fast) = FdRoot::open(root) else {
            eprintln!("skipped: no openat2 here");
            return Ok(());
        };
        let elsewhere = tempfile::tempdir()?;
        let (a, b) = (elsewhere.path().join("a"), elsewhere.path().join("b"));
        fs_err::write(&a, "")?;
        let stop = AtomicBool::new(false);
        let (failed, renamed) = std::thread::scope(|s| {
            let renamer = s.spawn(|| {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    std::fs::rename(&a, &b)?;
                    std::fs::rename(&b, &a)?;
                    n += 2;
                }
                Ok::<u64, io::Error>(n)
            });
            let mut failed = Vec::new();
            for _ in 0..20_000 {
                match fast.read_attr("sys/bus/pci/devices/0000:00:01.0/class") {
                    Ok(Some(t)) if t == b"0x030000\n" => {}
                    other => failed.push(format!("{other:?}")),
                }
                // The device folder by its link, as a scan opens it.
                if let Err(e) = fast.open_dir("sys/bus/pci/devices/0000:00:01.0") {
                    failed.push(e.to_string());
                }
            }
            stop.store(true, Ordering::Relaxed);
            (failed, renamer.join())
        });
        let renamed = renamed.map_err(|_| "the renaming thread panicked")??;
        assert!(renamed > 0, "nothing was renamed");
        assert!(
            failed.is_empty(),
            "{} of 40000 lookups failed while {renamed} renames ran, first: {}",
            failed.len(),
            failed[0]
        );
        Ok(())
    }
}
