//! Writing files inside a root without ever following a link out of it.
//!
//! Every change is durable when a function returns: a file is written to a
//! temporary file beside it (`.NAME.exliar-tmp`, a name `recover` knows),
//! fsynced, renamed into place, and its folder fsynced; created and removed
//! folders and files have their parent folder fsynced. A temporary file is
//! removed when the write fails.
//!
//! Debug builds have a fault-injection seam for tests:
//! `EXLIAR_TEST_FAIL_WRITE=N:ERRNO` fails the N-th write operation of the
//! process (a create, write, fsync, rename, mkdir, unlink or rmdir) with
//! `ERRNO` (`ENOSPC`, `EROFS`, `EACCES`, `EIO`); `N+:ERRNO` fails it and
//! every later one. `EXLIAR_TEST_WRITE_DELAY_US=N` sleeps N µs before
//! each write operation, so that a kill test's random kills land between
//! any two of them.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path, PathBuf};

/// The suffix of exliar's temporary files.
pub const TMP_SUFFIX: &str = ".exliar-tmp";

/// The temporary file [`atomic_write`] uses for a file named `name`.
pub fn tmp_name(name: &OsStr) -> OsString {
    let mut s = OsString::from(".");
    s.push(name);
    s.push(TMP_SUFFIX);
    s
}

/// Whether `name` is one of exliar's temporary files.
pub fn is_tmp_name(name: &OsStr) -> bool {
    let b = name.as_encoded_bytes();
    b.starts_with(b".") && b.ends_with(TMP_SUFFIX.as_bytes())
}

#[cfg(debug_assertions)]
mod seam {
    use std::io;
    use std::path::Path;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Fault {
        at: usize,
        sticky: bool,
        errno: i32,
        name: String,
    }

    static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
    static COUNT: AtomicUsize = AtomicUsize::new(0);

    fn parse(v: &str) -> Option<Fault> {
        let (n, name) = v.split_once(':')?;
        let (n, sticky) = match n.strip_suffix('+') {
            Some(n) => (n, true),
            None => (n, false),
        };
        let errno = match name {
            "ENOSPC" => rustix::io::Errno::NOSPC,
            "EROFS" => rustix::io::Errno::ROFS,
            "EACCES" => rustix::io::Errno::ACCESS,
            "EIO" => rustix::io::Errno::IO,
            _ => return None,
        };
        Some(Fault {
            at: n.parse().ok()?,
            sticky,
            errno: errno.raw_os_error(),
            name: name.to_string(),
        })
    }

    static DELAY: OnceLock<Option<std::time::Duration>> = OnceLock::new();

    pub fn check(op: &str, path: &Path) -> io::Result<()> {
        let delay = DELAY.get_or_init(|| {
            std::env::var("EXLIAR_TEST_WRITE_DELAY_US")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(std::time::Duration::from_micros)
        });
        if let Some(d) = delay {
            std::thread::sleep(*d);
        }
        let f = FAULT.get_or_init(|| {
            std::env::var("EXLIAR_TEST_FAIL_WRITE")
                .ok()
                .and_then(|v| parse(&v))
        });
        let Some(f) = f else {
            return Ok(());
        };
        let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
        if n == f.at || (f.sticky && n > f.at) {
            eprintln!(
                "exliar: test fault: write operation {n} ({op} {}) fails with {}",
                path.display(),
                f.name
            );
            return Err(io::Error::from_raw_os_error(f.errno));
        }
        Ok(())
    }
}

/// The fault-injection seam: every write operation passes here first.
#[inline]
fn fault(op: &str, path: &Path) -> io::Result<()> {
    #[cfg(debug_assertions)]
    {
        seam::check(op, path)
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = (op, path);
        Ok(())
    }
}

/// An error that names the path it is about (once).
fn at(p: &Path) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", p.display()))
}

/// fsync a folder, so that the names created, renamed or removed in it last.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    fault("fsync-dir", dir)
        .and_then(|()| std::fs::File::open(dir)?.sync_all())
        .map_err(at(dir))
}

/// Create the folder `path` (its parent exists) and fsync the parent.
fn mkdir(path: &Path) -> io::Result<()> {
    fault("mkdir", path)
        .and_then(|()| std::fs::create_dir(path))
        .map_err(at(path))?;
    fsync_dir(path.parent().unwrap_or(Path::new("/")))
}

/// Remove the file `path` and fsync its folder (`Ok(false)`: it was absent).
fn unlink(path: &Path) -> io::Result<bool> {
    if std::fs::symlink_metadata(path).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
        return Ok(false);
    }
    match fault("unlink", path).and_then(|()| std::fs::remove_file(path)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        r => r.map_err(at(path))?,
    }
    fsync_dir(path.parent().unwrap_or(Path::new("/")))?;
    Ok(true)
}

/// What is at a folder path inside a root.
pub enum DirLookup {
    Dir(PathBuf),
    /// A component is missing.
    Missing,
    /// A component is a link or not a folder (this one).
    NotADir(PathBuf),
}

/// Walks `rel` (relative to `root`) folder by folder without following
/// links, creating missing folders when `create`.
fn lookup_dir(root: &Path, rel: &Path, create: bool) -> io::Result<DirLookup> {
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        let Component::Normal(name) = c else {
            return Err(io::Error::other(format!(
                "{}: not a plain relative path",
                rel.display()
            )));
        };
        cur.push(name);
        match std::fs::symlink_metadata(&cur) {
            Ok(md) if md.file_type().is_dir() => {}
            Ok(_) => return Ok(DirLookup::NotADir(cur)),
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => mkdir(&cur)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(DirLookup::Missing),
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", cur.display()))),
        }
    }
    Ok(DirLookup::Dir(cur))
}

/// Look `rel` up as a folder inside `root` without creating anything.
pub fn find_dir(root: &Path, rel: &Path) -> io::Result<DirLookup> {
    lookup_dir(root, rel, false)
}

fn not_a_dir(p: &Path) -> io::Error {
    io::Error::other(format!(
        "{}: exists and is not a folder (links are not followed)",
        p.display()
    ))
}

/// Create `rel` (relative to `root`) as a directory, refusing to pass
/// through any symbolic link or non-directory on the way.
pub fn ensure_dir(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    match lookup_dir(root, rel, true)? {
        DirLookup::Dir(d) => Ok(d),
        DirLookup::NotADir(p) => Err(not_a_dir(&p)),
        DirLookup::Missing => Err(io::Error::other(format!("{}: not created", rel.display()))),
    }
}

/// Atomically replace `rel` (relative to `root`) with `bytes`: a temporary
/// file in the same folder, fsync, rename, fsync of the folder. The folder
/// is created if needed. An existing link at the destination is refused.
pub fn atomic_write(root: &Path, rel: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    atomic_write_owned(root, rel, bytes, mode, None)
}

/// [`atomic_write`] that also sets the owner (uid, gid) before the rename.
///
/// Not `atomic-write-file`: its temporary names are random (`.NAME.XXXXXX`),
/// so a crash leaves files nobody can tell from the user's, and its steps
/// cannot be failed one by one by the fault-injection seam.
pub fn atomic_write_owned(
    root: &Path,
    rel: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let dir = ensure_dir(root, parent)?;
    let name = rel
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{}: no file name", rel.display())))?;
    let dest = dir.join(name);
    match std::fs::symlink_metadata(&dest) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(io::Error::other(format!(
                "{}: is a symbolic link; refusing to write through it",
                dest.display()
            )));
        }
        Ok(m) if !m.file_type().is_file() => {
            return Err(io::Error::other(format!(
                "{}: is not a regular file; refusing to replace it",
                dest.display()
            )));
        }
        _ => {}
    }
    let tmp = dir.join(tmp_name(name));
    unlink(&tmp)?;
    let r = write_tmp(&tmp, bytes, mode, owner).and_then(|()| {
        fault("rename", &dest)?;
        std::fs::rename(&tmp, &dest)
    });
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(at(&dest)(e));
    }
    fsync_dir(&dir)
}

fn write_tmp(tmp: &Path, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    fault("create", tmp)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(tmp)?;
    fault("write", tmp)?;
    f.write_all(bytes)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
    }
    fault("fsync", tmp)?;
    f.sync_all()
}

/// The folders on the way to `rel` (its ancestors, relative to `root`) that
/// do not exist, outermost first: what writing `rel` would create.
pub fn missing_dirs(root: &Path, rel: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut cur = PathBuf::new();
    let Some(parent) = rel.parent() else {
        return out;
    };
    for c in parent.components() {
        let Component::Normal(name) = c else {
            return Vec::new();
        };
        cur.push(name);
        if !out.is_empty()
            || std::fs::symlink_metadata(root.join(&cur))
                .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
        {
            out.push(cur.clone());
        }
    }
    out
}

/// Why writing `rel` inside `root` would fail, found before anything is
/// written: a link or non-folder on the way or at the end, something other
/// than a regular file at the end, or a folder that cannot be written.
pub fn check_writable(root: &Path, rel: &Path) -> Result<(), String> {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let mut cur = root.to_path_buf();
    let mut deepest = root.to_path_buf();
    let mut missing = false;
    for c in parent.components() {
        let Component::Normal(name) = c else {
            return Err(format!("{}: not a plain relative path", rel.display()));
        };
        cur.push(name);
        match std::fs::symlink_metadata(&cur) {
            Ok(md) if md.file_type().is_symlink() => {
                return Err(format!(
                    "{} is a symbolic link; exliar does not write through links",
                    cur.display()
                ));
            }
            Ok(md) if md.file_type().is_dir() => deepest = cur.clone(),
            Ok(_) => return Err(format!("{} is not a folder", cur.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing = true;
                break;
            }
            Err(e) => return Err(format!("{}: {e}", cur.display())),
        }
    }
    if !missing && let Some(name) = rel.file_name() {
        let dest = deepest.join(name);
        match std::fs::symlink_metadata(&dest) {
            Ok(md) if md.file_type().is_symlink() => {
                return Err(format!(
                    "{} is a symbolic link; exliar does not write through links",
                    dest.display()
                ));
            }
            Ok(md) if !md.file_type().is_file() => {
                return Err(format!("{} is not a regular file", dest.display()));
            }
            _ => {}
        }
    }
    rustix::fs::access(&deepest, rustix::fs::Access::WRITE_OK).map_err(|e| {
        format!(
            "{} cannot be written: {}",
            deepest.display(),
            io::Error::from(e)
        )
    })
}

/// Remove the folder `rel` inside `root` if it is empty; a folder with
/// anything in it, or one that is gone, is left alone. A link on the way
/// (or at the end) is never followed: what is there is not a folder exliar
/// created, and is left alone too.
pub fn remove_empty_dir(root: &Path, rel: &Path) -> io::Result<()> {
    let DirLookup::Dir(dir) = lookup_dir(root, rel, false)? else {
        return Ok(());
    };
    if std::fs::read_dir(&dir).map_err(at(&dir))?.next().is_some() {
        return Ok(());
    }
    match fault("rmdir", &dir).and_then(|()| std::fs::remove_dir(&dir)) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty
            ) =>
        {
            return Ok(());
        }
        r => r.map_err(at(&dir))?,
    }
    fsync_dir(dir.parent().unwrap_or(root))
}

/// Remove `rel` if it is a file inside `root`. A folder on the way that is
/// missing, a link or not a folder means there is nothing exliar wrote
/// there (it never writes through links): nothing is removed.
pub fn remove_file(root: &Path, rel: &Path) -> io::Result<()> {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let DirLookup::Dir(dir) = lookup_dir(root, parent, false)? else {
        return Ok(());
    };
    let Some(name) = rel.file_name() else {
        return Ok(());
    };
    unlink(&dir.join(name)).map(|_| ())
}

/// Remove exliar's temporary file for `rel` (`.NAME.exliar-tmp` beside it),
/// if any: what a write killed before its rename leaves. `Ok(true)` when
/// one was removed.
pub fn remove_tmp(root: &Path, rel: &Path) -> io::Result<bool> {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let DirLookup::Dir(dir) = lookup_dir(root, parent, false)? else {
        return Ok(false);
    };
    let Some(name) = rel.file_name() else {
        return Ok(false);
    };
    let tmp = dir.join(tmp_name(name));
    match std::fs::symlink_metadata(&tmp) {
        Ok(md) if md.file_type().is_file() => unlink(&tmp),
        _ => Ok(false),
    }
}

/// Remove a folder and everything in it (exliar's own, unfinished
/// transaction folders), then fsync its parent.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fault("unlink", path).and_then(|()| std::fs::remove_dir_all(path)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        r => r.map_err(at(path))?,
    }
    fsync_dir(path.parent().unwrap_or(Path::new("/")))
}

/// Rename `from` to `to` (same folder tree) and fsync `to`'s folder.
pub fn rename_durable(from: &Path, to: &Path) -> io::Result<()> {
    fault("rename", to)
        .and_then(|()| std::fs::rename(from, to))
        .map_err(at(to))?;
    fsync_dir(to.parent().unwrap_or(Path::new("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_dirs_and_their_removal() -> io::Result<()> {
        let t = tempfile::tempdir()?;
        std::fs::create_dir(t.path().join("usr"))?;
        let rel = Path::new("usr/lib/exliar/vfio-early-bind");
        let missing = missing_dirs(t.path(), rel);
        assert_eq!(
            missing,
            [PathBuf::from("usr/lib"), PathBuf::from("usr/lib/exliar")]
        );
        atomic_write(t.path(), rel, b"x", 0o755)?;
        assert!(missing_dirs(t.path(), rel).is_empty());
        std::fs::write(t.path().join("usr/lib/other"), b"y")?;
        remove_file(t.path(), rel)?;
        for d in missing.iter().rev() {
            remove_empty_dir(t.path(), d)?;
        }
        // usr/lib holds someone else's file: it stays, usr/lib/exliar goes
        assert!(!t.path().join("usr/lib/exliar").exists());
        assert!(t.path().join("usr/lib/other").exists());
        remove_empty_dir(t.path(), Path::new("usr/lib/exliar"))?;
        // a link is never followed
        let outside = tempfile::tempdir()?;
        std::fs::create_dir(outside.path().join("empty"))?;
        std::os::unix::fs::symlink(outside.path(), t.path().join("out"))?;
        remove_empty_dir(t.path(), Path::new("out/empty"))?;
        assert!(outside.path().join("empty").exists());
        Ok(())
    }

    #[test]
    fn refuses_links_on_the_way_and_at_the_end() -> io::Result<()> {
        let t = tempfile::tempdir()?;
        let outside = tempfile::tempdir()?;
        std::os::unix::fs::symlink(outside.path(), t.path().join("run"))?;
        assert!(atomic_write(t.path(), Path::new("run/exliar/x.json"), b"{}", 0o644).is_err());
        assert!(
            std::fs::read_dir(outside.path())?.next().is_none(),
            "nothing written outside"
        );
        std::fs::create_dir(t.path().join("var"))?;
        std::os::unix::fs::symlink(outside.path().join("f"), t.path().join("var/f"))?;
        assert!(atomic_write(t.path(), Path::new("var/f"), b"x", 0o644).is_err());
        atomic_write(
            t.path(),
            Path::new("var/lib/exliar/state.json"),
            b"{}",
            0o600,
        )?;
        assert_eq!(
            std::fs::read(t.path().join("var/lib/exliar/state.json"))?,
            b"{}"
        );
        Ok(())
    }
}
