//! Reading one file safely: never blocking on a FIFO, never reading a device
//! node, never more than a size that fits the kind of file.
//!
//! Every open is `O_NONBLOCK | O_CLOEXEC` (and `O_NOFOLLOW` where the caller
//! resolved links itself), then `fstat` accepts only a regular file: sysfs
//! attributes and procfs files are regular (procfs ones report size 0), a
//! FIFO or a character device (`/dev/zero`) in their place is refused with
//! the reason instead of hanging or reading until memory runs out. Reads stop
//! one byte past the limit, and a file over it is refused, saying so.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags};

/// A sysfs or procfs attribute (`vendor`, `/proc/cmdline`): the kernel
/// writes at most a page; 64 KiB is generous.
pub const ATTRIBUTE_LIMIT: u64 = 64 << 10;
/// A configuration file (`/etc/default/grub`, a loader entry, os-release).
pub const CONFIG_LIMIT: u64 = 4 << 20;
/// The big ones: `pci.ids`, a kernel's `modules.alias`, `/proc/interrupts`
/// on a machine with hundreds of CPUs, a pasted listing.
pub const LARGE_LIMIT: u64 = 16 << 20;
/// A PCI device's option ROM (`sys/bus/pci/devices/ADDR/rom`).
pub const ROM_LIMIT: u64 = 16 << 20;

/// Every entry of the open directory `dir` but `.` and `..`: its name, inode
/// number and whether the listing says it is a regular file (`d_type`).
/// rustix's `getdents64` reader into one 32 KiB stack buffer: std's
/// `read_dir` (glibc's `opendir`) adds an `fstat` per folder.
pub fn each_dir_entry(dir: impl AsFd, mut f: impl FnMut(&[u8], u64, bool)) -> io::Result<()> {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 32 * 1024];
    let mut it = rustix::fs::RawDir::new(dir, &mut buf);
    while let Some(e) = it.next() {
        let e = e?;
        let name = e.file_name().to_bytes();
        if name != b"." && name != b".." {
            f(name, e.ino(), e.file_type() == FileType::RegularFile);
        }
    }
    Ok(())
}

/// The limit for a file inside a host root (`rel` is root-relative, links
/// resolved).
pub fn limit_for(rel: &Path) -> u64 {
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if rel.starts_with("sys") {
        // A device's option ROM (`sys/devices/.../rom`) is binary and up to
        // 16 MiB (the UEFI limit for an option ROM); every other sysfs
        // file exliar reads is a text attribute.
        if name == "rom" {
            ROM_LIMIT
        } else {
            ATTRIBUTE_LIMIT
        }
    } else if rel.starts_with("proc") {
        // These grow with the number of CPUs, mounts or routes; the
        // compressed kernel configuration is larger than a page.
        match name {
            "cpuinfo" | "interrupts" | "mountinfo" | "route" | "config.gz" => LARGE_LIMIT,
            _ => ATTRIBUTE_LIMIT,
        }
    } else if name == "pci.ids"
        || name == "usb.ids"
        || name.starts_with("modules.")
        || rel == Path::new("var/lib/dpkg/status")
    {
        LARGE_LIMIT
    } else {
        CONFIG_LIMIT
    }
}

/// `64 KiB`, `4 MiB`.
pub fn human_size(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// The error for a file over its limit.
pub fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("larger than {}; not read", human_size(limit)),
    )
}

fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::Fifo => "a FIFO",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Socket => "a socket",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        _ => "not a plain file",
    }
}

/// The error for something that is not a regular file.
fn not_regular(t: FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}, not a regular file; not read", kind_name(t)),
    )
}

/// Open `path` (relative to `dir`, or absolute) for reading without
/// blocking, accepting only a regular file. With `nofollow`, a symbolic
/// link in the last component fails with `ELOOP`. Returns the descriptor
/// and the size `fstat` reports.
pub fn open_regular_at(
    dir: impl AsFd,
    path: impl rustix::path::Arg,
    nofollow: bool,
) -> io::Result<(OwnedFd, u64)> {
    let mut flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    if nofollow {
        flags |= OFlags::NOFOLLOW;
    }
    let fd = rustix::fs::openat(dir, path, flags, Mode::empty())?;
    let st = rustix::fs::fstat(&fd)?;
    let t = FileType::from_raw_mode(st.st_mode);
    if t != FileType::RegularFile {
        return Err(not_regular(t));
    }
    Ok((fd, u64::try_from(st.st_size).unwrap_or(0)))
}

/// Read an open regular file to its end, refusing more than `limit` bytes.
/// With `short_read_ends`, a read shorter than asked is taken as the end
/// (true of sysfs attributes; not of procfs files, whose reads stop at a
/// record boundary).
pub fn read_capped(
    fd: impl AsFd,
    size: u64,
    limit: u64,
    short_read_ends: bool,
) -> io::Result<Vec<u8>> {
    if size > limit {
        return Err(too_large(limit));
    }
    // sysfs reports 4096 for text attributes, procfs 0: the size is a hint.
    // Reads go straight into the result, one byte more than the hint asked
    // for, so a file of the size `fstat` reported (`pci.ids`) takes one read
    // and the read that finds its end. A size of 0 (procfs; a listed sysfs
    // attribute read without `fstat`) starts at 256 bytes, which holds any
    // attribute, and a file that fills them grows to a page at once
    // (`mountinfo`, `modules`: a few KiB), not by four doublings.
    let hint = usize::try_from(size.clamp(256, limit)).unwrap_or(256);
    let cap = usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX);
    let mut out = vec![0u8; hint.saturating_add(1).min(cap)];
    let mut len = 0;
    loop {
        if len == out.len() {
            if out.len() >= cap {
                return Err(too_large(limit));
            }
            out.resize(out.len().saturating_mul(2).max(4097).min(cap), 0);
        }
        let asked = out.len() - len;
        let n = match rustix::io::read(fd.as_fd(), &mut out[len..]) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        len += n;
        if len as u64 > limit {
            return Err(too_large(limit));
        }
        if n == 0 || (short_read_ends && n < asked) {
            break;
        }
    }
    out.truncate(len);
    Ok(out)
}

/// Open `name` relative to `dir` for reading without blocking and without
/// following a link in its last component, when the caller already knows
/// (from the directory's listing) that it is a regular file: no `fstat`.
/// Should the entry have been replaced since, `O_NONBLOCK` still keeps a
/// FIFO from blocking and [`read_capped`]'s limit bounds a device's data.
pub fn open_listed_regular_at(dir: impl AsFd, name: &str) -> io::Result<OwnedFd> {
    let flags =
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NOFOLLOW;
    Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?)
}

/// At most `buf.len()` bytes from the start of an open file, in one read
/// (a PCI device's `config`: the kernel answers 64 bytes to an
/// unprivileged reader and reads the hardware for every byte asked).
pub fn read_head(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::io::pread(fd.as_fd(), &mut *buf, 0) {
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Read a regular file at `path` (links followed), at most `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let (fd, size) = open_regular_at(rustix::fs::CWD, path, false)?;
    read_capped(&fd, size, limit, false)
}

/// Read a file named on the command line (`exliar analyze FILE`): a regular
/// file, or a pipe (`analyze <(lspci -nnk)`, a named FIFO: the user asked
/// for it), read until its writer closes it. A device node or a folder is
/// refused; at most `limit` bytes.
pub fn read_input(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = rustix::fs::openat(rustix::fs::CWD, path, flags, Mode::empty())?;
    let st = rustix::fs::fstat(&fd)?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {
            read_capped(&fd, u64::try_from(st.st_size).unwrap_or(0), limit, false)
        }
        FileType::Fifo => {
            // Opened without waiting for a writer; now wait for its data.
            let fl = rustix::fs::fcntl_getfl(&fd)?;
            rustix::fs::fcntl_setfl(&fd, fl - OFlags::NONBLOCK)?;
            read_capped(&fd, 0, limit, false)
        }
        t => Err(not_regular(t)),
    }
}

/// Read standard input (or any reader) to its end, at most `limit` bytes.
pub fn read_stream(r: impl io::Read, limit: u64) -> io::Result<Vec<u8>> {
    use io::Read as _;
    let mut buf = Vec::new();
    r.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(buf)
}

/// At most `max` characters of `text`, with `…` when cut: for warnings
/// that quote a file's content.
pub fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_without_blocking() -> Result<(), Box<dyn std::error::Error>> {
        let t = tempfile::tempdir()?;
        let p = t.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &p,
            FileType::Fifo,
            Mode::RUSR | Mode::WUSR,
            0,
        )?;
        let e = read_regular(&p, CONFIG_LIMIT).expect_err("a FIFO was read");
        assert_eq!(e.to_string(), "a FIFO, not a regular file; not read");
        Ok(())
    }

    #[test]
    fn dev_zero_is_refused() {
        if !Path::new("/dev/zero").exists() {
            eprintln!("skipping: no /dev/zero");
            return;
        }
        let e = read_regular(Path::new("/dev/zero"), ATTRIBUTE_LIMIT).expect_err("read /dev/zero");
        assert_eq!(
            e.to_string(),
            "a character device, not a regular file; not read"
        );
    }

    #[test]
    fn a_file_over_its_limit_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let t = tempfile::tempdir()?;
        let p = t.path().join("big");
        std::fs::write(&p, vec![b'x'; 1000])?;
        assert_eq!(read_regular(&p, 1000)?.len(), 1000);
        let e = read_regular(&p, 999).expect_err("over the limit");
        assert_eq!(e.to_string(), "larger than 999 bytes; not read");
        // A file whose size the file system does not report (procfs) is
        // cut while reading.
        let (fd, _) = open_regular_at(rustix::fs::CWD, &p, true)?;
        let e = read_capped(&fd, 0, 512, false).expect_err("over the limit");
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        Ok(())
    }

    /// Whatever the size hint (0 for procfs, 4096 for sysfs, the real
    /// size), every file is read whole, across the buffer's growth steps.
    #[test]
    fn files_are_read_whole_whatever_the_hint() -> Result<(), Box<dyn std::error::Error>> {
        let t = tempfile::tempdir()?;
        let p = t.path().join("f");
        for len in [0usize, 1, 255, 256, 257, 4095, 4096, 4097, 9000, 70_000] {
            let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            std::fs::write(&p, &body)?;
            for hint in [0, 4096, len as u64] {
                let (fd, _) = open_regular_at(rustix::fs::CWD, &p, true)?;
                let got = read_capped(&fd, hint, LARGE_LIMIT, false)?;
                assert!(got == body, "{len} bytes, hint {hint}: {} read", got.len());
            }
        }
        Ok(())
    }

    #[test]
    fn limits_fit_the_kind_of_file() {
        assert_eq!(
            limit_for(Path::new("sys/bus/pci/devices/0000:01:00.0/vendor")),
            ATTRIBUTE_LIMIT
        );
        assert_eq!(limit_for(Path::new("proc/cmdline")), ATTRIBUTE_LIMIT);
        assert_eq!(
            limit_for(Path::new(
                "sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/rom"
            )),
            ROM_LIMIT
        );
        assert_eq!(limit_for(Path::new("proc/interrupts")), LARGE_LIMIT);
        assert_eq!(limit_for(Path::new("etc/default/grub")), CONFIG_LIMIT);
        assert_eq!(
            limit_for(Path::new("usr/share/hwdata/pci.ids")),
            LARGE_LIMIT
        );
        assert_eq!(human_size(ATTRIBUTE_LIMIT), "64 KiB");
        assert_eq!(human_size(CONFIG_LIMIT), "4 MiB");
    }

    #[test]
    fn excerpts_are_cut_on_characters() {
        assert_eq!(excerpt("abc", 3), "abc");
        assert_eq!(excerpt("äbcd", 2), "äb…");
    }
}
