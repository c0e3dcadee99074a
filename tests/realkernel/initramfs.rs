//! The guest's initramfs: an uncompressed `newc` cpio archive written here in Rust
//! (so the host needs no `cpio`), holding busybox, the guest `/init`, the kernel-module
//! subset and the freshly built exliar binary with the shared libraries it loads.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The guest's `/init`, run by the kernel as PID 1.
const GUEST_INIT: &str = include_str!("guest-init.sh");

/// An in-memory `newc` cpio archive.
#[derive(Default)]
pub struct Cpio {
    buf: Vec<u8>,
    next_ino: u32,
    dirs: BTreeSet<String>,
    files: BTreeSet<String>,
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

impl Cpio {
    fn pad4(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        self.next_ino += 1;
        let name = name.trim_start_matches('/');
        let fields = [
            self.next_ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            u32::try_from(data.len()).expect("initramfs member larger than 4 GiB"),
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            u32::try_from(name.len() + 1).expect("name length"),
            0, // check
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad4();
        self.buf.extend_from_slice(data);
        self.pad4();
    }

    /// Adds `path` and its missing parent directories.
    pub fn dir(&mut self, path: &str) {
        let path = path.trim_matches('/');
        if path.is_empty() {
            return;
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        if self.dirs.insert(path.to_owned()) {
            self.entry(path, S_IFDIR | 0o755, 2, (0, 0), &[]);
        }
    }

    fn parent_of(&mut self, path: &str) {
        if let Some((parent, _)) = path.trim_matches('/').rsplit_once('/') {
            self.dir(parent);
        }
    }

    /// Adds a regular file; a second file at the same path is ignored.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        if !self.files.insert(path.trim_matches('/').to_owned()) {
            return;
        }
        self.parent_of(path);
        self.entry(path, S_IFREG | mode, 1, (0, 0), data);
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.parent_of(path);
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
    }

    pub fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.parent_of(path);
        self.entry(path, S_IFCHR | mode, 1, (major, minor), &[]);
    }

    /// Copies the host file `src` (following symlinks) to `dest` in the archive.
    pub fn host_file(&mut self, dest: &str, src: &Path) -> Result<()> {
        let data = fs::read(src).with_context(|| format!("reading {}", src.display()))?;
        let mode = if is_executable(src)? { 0o755 } else { 0o644 };
        self.file(dest, mode, &data);
        Ok(())
    }

    /// Copies the host tree `src` to `dest` (regular files and directories only).
    pub fn host_tree(&mut self, dest: &str, src: &Path) -> Result<()> {
        self.dir(dest);
        let mut entries: Vec<_> = fs::read_dir(src)
            .with_context(|| format!("listing {}", src.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(fs::DirEntry::file_name);
        for e in entries {
            let name = e.file_name();
            let name = name
                .to_str()
                .with_context(|| format!("non-UTF-8 name in {}", src.display()))?;
            let child = format!("{}/{name}", dest.trim_end_matches('/'));
            if e.file_type()?.is_dir() {
                self.host_tree(&child, &e.path())?;
            } else {
                self.host_file(&child, &e.path())?;
            }
        }
        Ok(())
    }

    /// Copies a dynamically or statically linked host executable to the same path in the
    /// archive, together with every shared library `ldd` lists and the dynamic loader.
    pub fn host_executable(&mut self, dest: &str, src: &Path, ldd: &Path) -> Result<()> {
        self.host_file(dest, src)?;
        for lib in shared_libraries(src, ldd)? {
            let name = lib
                .to_str()
                .with_context(|| format!("non-UTF-8 library path {}", lib.display()))?;
            self.host_file(name, &lib)?;
        }
        Ok(())
    }

    /// Ends the archive and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        // the kernel reads the initramfs in 512-byte blocks; pad like cpio(1) does
        while !self.buf.len().is_multiple_of(512) {
            self.buf.push(0);
        }
        self.buf
    }
}

fn is_executable(p: &Path) -> Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(p).with_context(|| format!("stat {}", p.display()))?;
    Ok(meta.permissions().mode() & 0o111 != 0)
}

/// The absolute library paths (and dynamic loader) `ldd` reports for `bin`; empty for a
/// static executable.
fn shared_libraries(bin: &Path, ldd: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new(ldd)
        .arg(bin)
        .output()
        .with_context(|| format!("running {} {}", ldd.display(), bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stdout.contains("not a dynamic executable")
            || stderr.contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {stdout}{stderr}", bin.display());
    }
    let mut libs = Vec::new();
    for line in stdout.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)" or "linux-vdso.so.1 (0x...)"
        let line = line.trim();
        if line.contains("=> not found") {
            bail!("ldd {}: missing library: {line}", bin.display());
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            let p = PathBuf::from(p);
            if p.components().any(|c| matches!(c, Component::ParentDir)) {
                bail!(
                    "ldd {}: unexpected library path {}",
                    bin.display(),
                    p.display()
                );
            }
            libs.push(p);
        }
    }
    Ok(libs)
}

/// What goes into the guest.
pub struct Contents<'a> {
    pub busybox: &'a Path,
    pub exliar: &'a Path,
    /// Another build, as `bin/exliar-base`, which the benchmark times beside
    /// `bin/exliar` in the same boot (before/after a change).
    pub exliar_base: Option<&'a Path>,
    pub ldd: &'a Path,
    /// A directory holding `lib/modules/<kver>/...` (the depmod'ed module subset).
    pub module_root: &'a Path,
}

/// Builds the initramfs image.
pub fn build(c: &Contents<'_>) -> Result<Vec<u8>> {
    let mut a = Cpio::default();
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "out", "etc", "root",
    ] {
        a.dir(d);
    }
    a.char_dev("dev/console", 0o600, 5, 1);
    a.char_dev("dev/null", 0o666, 1, 3);
    a.file("init", 0o755, GUEST_INIT.as_bytes());
    a.host_executable("bin/busybox", c.busybox, c.ldd)?;
    a.symlink("bin/sh", "busybox");
    let mut bins = vec![("bin/exliar", c.exliar)];
    bins.extend(c.exliar_base.map(|b| ("bin/exliar-base", b)));
    for (at, bin) in bins {
        let stripped = std::env::temp_dir().join(format!("exliar-guest-{}", std::process::id()));
        let use_stripped = strip_debug(bin, &stripped);
        let exe = if use_stripped {
            stripped.as_path()
        } else {
            bin
        };
        let r = a.host_executable(at, exe, c.ldd);
        if use_stripped {
            let _ = fs::remove_file(&stripped);
        }
        r?;
    }
    a.host_tree("lib/modules", &c.module_root.join("lib/modules"))?;
    Ok(a.finish())
}

/// Writes `exe` without its debug info to `dest` (the debug build carries ~60 MB the
/// guest never uses; the guest loads faster without it). `false` when binutils' `strip`
/// is missing or fails: then use `exe` as it is.
pub fn strip_debug(exe: &Path, dest: &Path) -> bool {
    std::process::Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(dest)
        .arg(exe)
        .status()
        .is_ok_and(|st| st.success())
}

/// A cpio archive holding only `/scenario.sh`, to append to the initramfs.
pub fn scenario_overlay(script: &str) -> Vec<u8> {
    let mut a = Cpio::default();
    a.file("scenario.sh", 0o755, script.as_bytes());
    a.finish()
}
