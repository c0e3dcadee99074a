//! The answer file's ISO: `Autounattend.xml` alone at the root of a small
//! ISO 9660 image with Joliet names (Windows reads the Joliet tree, so the
//! name keeps its case and length), made by `xorriso` in its `mkisofs`
//! emulation, run with argv.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use super::UnattendError;

/// The file name Windows Setup looks for at the root of every removable
/// drive and CD-ROM.
pub const ANSWER_FILE: &str = "Autounattend.xml";
/// The ISO's volume label (Setup does not look at it).
pub const VOLUME_ID: &str = "EXLIAR_UNATTEND";

fn arg(p: &Path) -> String {
    let s = p.to_string_lossy().into_owned();
    // A path that starts with `-` would read as an option.
    if s.starts_with('-') {
        format!("./{s}")
    } else {
        s
    }
}

/// `xorriso -as mkisofs -o OUT -J -r -V EXLIAR_UNATTEND STAGING`: the ISO
/// holds the staging directory's files at its root (`-J` Joliet names for
/// Windows, `-r` Rock Ridge with plain permissions).
pub fn iso_argv(staging_dir: &Path, out: &Path) -> Vec<String> {
    vec![
        "xorriso".into(),
        "-as".into(),
        "mkisofs".into(),
        "-o".into(),
        arg(out),
        "-J".into(),
        "-r".into(),
        "-V".into(),
        VOLUME_ID.into(),
        arg(staging_dir),
    ]
}

/// A directory only this user can enter, removed with everything in it
/// when dropped (on every path out of [`build_iso`]).
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new() -> Result<Self, UnattendError> {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut last = None;
        for _ in 0..16 {
            let n = COUNT.fetch_add(1, Ordering::Relaxed);
            let p = base.join(format!(
                "exliar-unattend-{}-{nanos:08x}-{n}",
                std::process::id()
            ));
            // `create`, not `create_all`: an existing path is never reused.
            match std::fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => return Ok(Self(p)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => {
                    return Err(UnattendError::Io {
                        what: format!("{}", p.display()),
                        source: e,
                    });
                }
            }
        }
        Err(UnattendError::Io {
            what: format!("{}: no fresh directory", base.display()),
            source: last.unwrap_or_else(|| std::io::Error::other("exhausted")),
        })
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn io_err(p: &Path) -> impl Fn(std::io::Error) -> UnattendError + '_ {
    move |source| UnattendError::Io {
        what: p.display().to_string(),
        source,
    }
}

/// Write `xml` as `Autounattend.xml` into a fresh private directory
/// (`0700`, the file `0600`), make the ISO there with `xorriso`, and move
/// it to `out` (mode `0600`: it carries the password's obfuscated form).
/// The directory is removed on every path.
pub fn build_iso(xml: &str, out: &Path) -> Result<(), UnattendError> {
    let dir = PrivateDir::new()?;
    let staging = dir.0.join("root");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(io_err(&staging))?;
    let file = staging.join(ANSWER_FILE);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .map_err(io_err(&file))?;
        f.write_all(xml.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io_err(&file))?;
    }
    let tmp_iso = dir.0.join("unattend.iso");
    let argv = iso_argv(&staging, &tmp_iso);
    let output = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                UnattendError::XorrisoMissing(e)
            } else {
                io_err(Path::new("xorriso"))(e)
            }
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(UnattendError::Xorriso {
            out: out.to_path_buf(),
            status: output.status.to_string(),
            stderr: tail.join(" / "),
        });
    }
    std::fs::set_permissions(&tmp_iso, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err(&tmp_iso))?;
    match std::fs::rename(&tmp_iso, out) {
        Ok(()) => Ok(()),
        // Another filesystem: copy into a file made 0600 from the start.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
            let mut src = std::fs::File::open(&tmp_iso).map_err(io_err(&tmp_iso))?;
            let mut dst = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(out)
                .map_err(io_err(out))?;
            std::io::copy(&mut src, &mut dst)
                .and_then(|_| dst.sync_all())
                .map_err(io_err(out))?;
            std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o600))
                .map_err(io_err(out))
        }
        Err(e) => Err(io_err(out)(e)),
    }
}
