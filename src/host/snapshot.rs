//! `exliar snapshot`: copy exactly the files exliar read into a folder or a
//! tar archive, laid out so that `--root` reads them back.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::pciids::{PCI_IDS_PATHS, PciIds};
use super::root::{HostRoot, NODES_FILE, Touched};

/// The manifest written at the top of every snapshot.
pub const MANIFEST: &str = "exliar-snapshot.json";

/// An empty file put into folders that hold nothing else, so that a
/// snapshot kept in git (which stores no empty folders) reads back the same.
/// [`HostRoot::list_dir`] never shows it.
pub const KEEP: &str = ".exliar-keep";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: already exists and is not an empty folder")]
    NotEmpty { path: String },
    #[error("{path}: already exists; --force replaces it")]
    Exists { path: String },
    #[error("{path}: is a symbolic link; exliar does not write through links")]
    Link { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One entry of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir(PathBuf),
    File(PathBuf, Vec<u8>),
    Link(PathBuf, PathBuf),
}

/// What a snapshot holds, in a writable order (parents before children).
/// `pci.ids` is cut down to the entries the report used.
pub fn collect(host: &HostRoot, ids: &PciIds) -> Vec<Entry> {
    let mut out = Vec::new();
    // Device nodes cannot be stored as nodes: their facts go into one text
    // file that `HostRoot::stat_node` reads back.
    let mut nodes = String::new();
    for (rel, what) in host.touched() {
        if rel.as_os_str().is_empty() || rel == Path::new(NODES_FILE) {
            continue;
        }
        if PCI_IDS_PATHS.iter().any(|p| Path::new(p) == rel) {
            if !ids.is_empty() {
                out.push(Entry::File(rel, ids.trimmed().into_bytes()));
            }
            continue;
        }
        match what {
            Touched::Link(target) => out.push(Entry::Link(rel, target)),
            Touched::Dir => out.push(Entry::Dir(rel)),
            Touched::Present => out.push(Entry::File(rel, Vec::new())),
            Touched::Trimmed(bytes) => out.push(Entry::File(rel, bytes)),
            Touched::Node(st) => {
                nodes.push_str(&st.line(&rel));
                nodes.push('\n');
                // An empty placeholder, so that listing its folder
                // (`dev/nvidia-caps`) reads back the same.
                out.push(Entry::File(rel, Vec::new()));
            }
            Touched::File => {
                let full = host.path().join(&rel);
                match std::fs::symlink_metadata(&full) {
                    Ok(md) if md.is_dir() => out.push(Entry::Dir(rel)),
                    Ok(md) if md.is_file() => {
                        let limit = super::readfile::limit_for(&rel);
                        if let Ok(bytes) = super::readfile::read_regular(&full, limit) {
                            out.push(Entry::File(rel, bytes));
                        }
                    }
                    // Device nodes and sockets (`/dev/kvm`, libvirt's
                    // socket): only their presence was used.
                    Ok(_) => out.push(Entry::File(rel, Vec::new())),
                    Err(_) => {}
                }
            }
        }
    }
    if !nodes.is_empty() {
        let text = format!(
            "# exliar device nodes (stat facts; a snapshot cannot hold nodes): path type major:minor mode uid gid\n{nodes}"
        );
        out.push(Entry::File(PathBuf::from(NODES_FILE), text.into_bytes()));
    }
    keep_empty_dirs(out)
}

/// Add a [`KEEP`] file to every folder entry that nothing else lies in.
/// Entries come sorted by path, so a folder's contents follow it directly.
fn keep_empty_dirs(entries: Vec<Entry>) -> Vec<Entry> {
    let path = |e: &Entry| match e {
        Entry::Dir(p) | Entry::File(p, _) | Entry::Link(p, _) => p.clone(),
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        out.push(e.clone());
        if let Entry::Dir(d) = e {
            let has_child = entries.get(i + 1).is_some_and(|x| path(x).starts_with(d));
            if !has_child {
                out.push(Entry::File(d.join(KEEP), Vec::new()));
            }
        }
    }
    out
}

fn manifest(host: &HostRoot, entries: &[Entry]) -> Vec<u8> {
    let v = serde_json::json!({
        "schema": "exliar.snapshot/1",
        "exliar_version": env!("CARGO_PKG_VERSION"),
        "captured_root": host.path().display().to_string(),
        "entries": entries.len(),
        "read_back_with": "exliar scan --root <this folder>; exliar check --root <this folder>",
    });
    let mut s = serde_json::to_vec_pretty(&v).unwrap_or_default();
    s.push(b'\n');
    s
}

/// Write a snapshot: a `.tar` file when `out` ends in `.tar`, a folder
/// otherwise. `out` is never a symbolic link; an existing `.tar` is replaced
/// only with `force` (a folder must be new or empty).
pub fn write(
    host: &HostRoot,
    ids: &PciIds,
    out: &Path,
    force: bool,
) -> Result<usize, SnapshotError> {
    match std::fs::symlink_metadata(out) {
        Ok(md) if md.file_type().is_symlink() => {
            return Err(SnapshotError::Link {
                path: out.display().to_string(),
            });
        }
        _ => {}
    }
    let entries = collect(host, ids);
    let man = manifest(host, &entries);
    if out.extension().is_some_and(|e| e == "tar") {
        write_tar(out, &entries, &man, force)?;
    } else {
        write_dir(out, &entries, &man)?;
    }
    Ok(entries.len())
}

/// Write the archive into a new file beside `out`, then move it into place:
/// the new file is created with `O_EXCL` (never through a link), and the
/// rename replaces `out` itself (only with `force`), never what a link
/// points at.
fn write_tar(out: &Path, entries: &[Entry], man: &[u8], force: bool) -> Result<(), SnapshotError> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = out.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.exliar-{}.tmp", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        // The user named `out`; the temporary file beside it is exliar's.
        .map_err(io_err(out))?;
    let done = fill_tar(&file, out, entries, man)
        .and_then(|()| file.sync_all().map_err(io_err(out)))
        .and_then(|()| move_into_place(&tmp, out, force));
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

fn move_into_place(tmp: &Path, out: &Path, force: bool) -> Result<(), SnapshotError> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    let shown = || out.display().to_string();
    if force {
        return match std::fs::symlink_metadata(out) {
            Ok(md) if md.file_type().is_symlink() => Err(SnapshotError::Link { path: shown() }),
            Ok(md) if !md.is_file() => Err(SnapshotError::Io {
                path: shown(),
                source: std::io::Error::other("exists and is not a file; not replaced"),
            }),
            _ => std::fs::rename(tmp, out).map_err(io_err(out)),
        };
    }
    // Fails, leaving `out` alone, when anything (a link too) is there.
    let r = match renameat_with(CWD, tmp, CWD, out, RenameFlags::NOREPLACE) {
        // A file system without RENAME_NOREPLACE: a hard link also fails
        // on anything existing.
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
            std::fs::hard_link(tmp, out).and_then(|()| std::fs::remove_file(tmp))
        }
        r => r.map_err(std::io::Error::from),
    };
    r.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            SnapshotError::Exists { path: shown() }
        } else {
            io_err(out)(e)
        }
    })
}

fn fill_tar(
    file: &std::fs::File,
    out: &Path,
    entries: &[Entry],
    man: &[u8],
) -> Result<(), SnapshotError> {
    let mut b = tar::Builder::new(std::io::BufWriter::new(file));
    b.mode(tar::HeaderMode::Deterministic);
    let mut append = |path: &Path, kind: tar::EntryType, data: &[u8], link: Option<&Path>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        if let Some(l) = link {
            b.append_link(&mut h, path, l)
        } else {
            b.append_data(&mut h, path, data)
        }
    };
    append(Path::new(MANIFEST), tar::EntryType::Regular, man, None).map_err(io_err(out))?;
    for e in entries {
        match e {
            Entry::Dir(p) => append(p, tar::EntryType::Directory, &[], None),
            Entry::File(p, bytes) => append(p, tar::EntryType::Regular, bytes, None),
            Entry::Link(p, t) => append(p, tar::EntryType::Symlink, &[], Some(t)),
        }
        .map_err(io_err(out))?;
    }
    let mut w = b.into_inner().map_err(io_err(out))?;
    w.flush().map_err(io_err(out))
}

fn write_dir(out: &Path, entries: &[Entry], man: &[u8]) -> Result<(), SnapshotError> {
    if std::fs::symlink_metadata(out).is_ok() {
        let empty = std::fs::read_dir(out)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(SnapshotError::NotEmpty {
                path: out.display().to_string(),
            });
        }
    }
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    std::fs::write(out.join(MANIFEST), man).map_err(io_err(out))?;
    for e in entries {
        let (rel, dir_only) = match e {
            Entry::Dir(p) => (p, true),
            Entry::File(p, _) | Entry::Link(p, _) => (p, false),
        };
        // Only plain relative components: never write outside `out`.
        if rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            continue;
        }
        let full = out.join(rel);
        let parent = if dir_only {
            full.as_path()
        } else {
            full.parent().unwrap_or(out)
        };
        create_dirs_no_links(out, parent)?;
        match e {
            Entry::Dir(_) => {}
            Entry::File(_, bytes) => std::fs::write(&full, bytes).map_err(io_err(&full))?,
            Entry::Link(_, target) => {
                if std::fs::symlink_metadata(&full).is_err() {
                    std::os::unix::fs::symlink(target, &full).map_err(io_err(&full))?;
                }
            }
        }
    }
    Ok(())
}

/// Create `dir` below `base`, refusing to pass through a symbolic link.
fn create_dirs_no_links(base: &Path, dir: &Path) -> Result<(), SnapshotError> {
    let rel = dir.strip_prefix(base).unwrap_or(Path::new(""));
    let mut cur = base.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(SnapshotError::Io {
                    path: cur.display().to_string(),
                    source: std::io::Error::other("exists and is not a folder"),
                });
            }
            Err(_) => std::fs::create_dir(&cur).map_err(io_err(&cur))?,
        }
    }
    Ok(())
}
