//! Writing files inside a root without ever following a link out of it.

use std::io;
use std::path::{Component, Path, PathBuf};

/// Walks `rel` (relative to `root`) folder by folder, refusing to pass
/// through any symbolic link or non-directory on the way. A missing folder
/// is created (`create`), or ends the walk with `Ok(None)`.
fn walk_dirs(root: &Path, rel: &Path, create: bool) -> io::Result<Option<PathBuf>> {
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
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{}: exists and is not a folder (links are not followed)",
                    cur.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => std::fs::create_dir(&cur)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(cur))
}

/// Create `rel` (relative to `root`) as a directory, refusing to pass
/// through any symbolic link or non-directory on the way.
pub fn ensure_dir(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    walk_dirs(root, rel, true)?
        .ok_or_else(|| io::Error::other(format!("{}: not created", rel.display())))
}

/// Atomically replace `rel` (relative to `root`) with `bytes`: a temporary
/// file in the same folder, fsync, rename. The folder is created if needed.
/// An existing link at the destination is refused.
pub fn atomic_write(root: &Path, rel: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    atomic_write_owned(root, rel, bytes, mode, None)
}

/// [`atomic_write`] that also sets the owner (uid, gid) before the rename.
pub fn atomic_write_owned(
    root: &Path,
    rel: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let parent = rel.parent().unwrap_or(Path::new(""));
    let dir = ensure_dir(root, parent)?;
    let name = rel
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{}: no file name", rel.display())))?;
    let dest = dir.join(name);
    if std::fs::symlink_metadata(&dest).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(io::Error::other(format!(
            "{}: is a symbolic link; refusing to write through it",
            dest.display()
        )));
    }
    let mut f = atomic_write_file::AtomicWriteFile::options().open(&dest)?;
    f.write_all(bytes)?;
    f.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(f.as_file(), Some(uid), Some(gid))?;
    }
    f.commit()
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

/// Remove the folder `rel` inside `root` if it is empty; a folder with
/// anything in it, or one that is gone, is left alone. Links on the way
/// (or at the end) are refused.
pub fn remove_empty_dir(root: &Path, rel: &Path) -> io::Result<()> {
    let Some(dir) = walk_dirs(root, rel, false)? else {
        return Ok(());
    };
    match std::fs::remove_dir(&dir) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty
            ) =>
        {
            Ok(())
        }
        r => r,
    }
}

/// Remove `rel` if it is a plain file inside `root`.
pub fn remove_file(root: &Path, rel: &Path) -> io::Result<()> {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let dir = ensure_dir(root, parent)?;
    let Some(name) = rel.file_name() else {
        return Ok(());
    };
    match std::fs::remove_file(dir.join(name)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
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
        assert!(remove_empty_dir(t.path(), Path::new("out/empty")).is_err());
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
