//! The host root: every read of the host goes through here.
//!
//! Paths are given relative to the root (`sys/bus/pci/devices`). Symbolic
//! links are resolved lexically, inside the root, so a tree captured from
//! another machine (a snapshot, a fixture, a mounted installer target) reads
//! exactly like the live host and never leads outside itself.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Component, Path, PathBuf};

/// What a read touched, for `exliar snapshot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touched {
    File,
    Dir,
    /// Only the entry's existence was used (`rom`, device-link names): a
    /// snapshot holds an empty file there.
    Present,
    /// A symbolic link and its target text as stored on disk.
    Link(PathBuf),
    /// The file was read, but a snapshot stores only this part of it (the
    /// lines that were used), so that it reads back the same.
    Trimmed(Vec<u8>),
    /// A device node was stat'ed: a snapshot cannot hold the node itself,
    /// so it records these facts in [`NODES_FILE`].
    Node(NodeStat),
}

/// The file at the top of a snapshot or fixture tree that records device
/// nodes (`dev/dri/card0 c 226:0 0660 0 44`): a tar or git tree cannot
/// hold the nodes themselves. [`HostRoot::stat_node`] reads it on any root
/// but the live one, for a path that is absent or a plain placeholder.
pub const NODES_FILE: &str = "exliar-nodes.txt";

/// A device node's facts, as `stat(2)` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeStat {
    /// `'c'` (character) or `'b'` (block).
    pub kind: char,
    pub major: u32,
    pub minor: u32,
    /// Permission bits (`0o660`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl NodeStat {
    /// One line of [`NODES_FILE`] for `rel`.
    pub fn line(&self, rel: &Path) -> String {
        format!(
            "{} {} {}:{} {:04o} {} {}",
            rel.display(),
            self.kind,
            self.major,
            self.minor,
            self.mode,
            self.uid,
            self.gid
        )
    }

    /// Parse [`NODES_FILE`]: `(path, facts)` for each good line; comments,
    /// blank and malformed lines are skipped.
    pub fn parse_table(text: &str) -> Vec<(PathBuf, NodeStat)> {
        let mut out = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            let [path, kind, dev, mode, uid, gid] = f.as_slice() else {
                continue;
            };
            let kind = match *kind {
                "c" => 'c',
                "b" => 'b',
                _ => continue,
            };
            let Some((major, minor)) = dev.split_once(':') else {
                continue;
            };
            let (Ok(major), Ok(minor), Ok(mode), Ok(uid), Ok(gid)) = (
                major.parse(),
                minor.parse(),
                u32::from_str_radix(mode, 8),
                uid.parse(),
                gid.parse(),
            ) else {
                continue;
            };
            // a node names a file below the root: not the root itself, no
            // `..`, and not one whose line would read back as a comment
            let rel = path.trim_start_matches('/');
            if rel.is_empty() || rel.starts_with('#') {
                continue;
            }
            let path = PathBuf::from(rel);
            if path
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
            {
                continue;
            }
            out.push((
                path,
                NodeStat {
                    kind,
                    major,
                    minor,
                    mode: mode & 0o7777,
                    uid,
                    gid,
                },
            ));
        }
        out
    }
}

/// What the live host says about a device node or socket (only on the live
/// root: another tree's nodes are placeholders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// `char device`, `socket`, `file`, …
    pub kind: &'static str,
    /// Permission bits (`0o660`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Read access to one host tree.
#[derive(Debug)]
pub struct HostRoot {
    root: PathBuf,
    record: Option<RefCell<BTreeMap<PathBuf, Touched>>>,
    /// Resolved directories, so that reading 20 attributes of one device
    /// resolves its directory once.
    dirs: RefCell<HashMap<PathBuf, PathBuf>>,
    /// Resolved paths found to be directories (not links) by the walk of
    /// [`HostRoot::resolve`]: a later walk through them takes them as they
    /// are, without an `lstat` each. Under `--root` the probes of
    /// accelerator stacks walked `usr`, `sys`, `sys/bus`, … again for each
    /// path (about 100 of a 60-function scan's 250 `lstat`s).
    real_dirs: RefCell<std::collections::HashSet<PathBuf>>,
    /// For a root that nothing will be written under
    /// ([`HostRoot::read_only`]): resolved paths found missing. A path
    /// under one is missing too, without a syscall (111 of the 181 failed
    /// lookups of a 60-function scan under `--root` were under a missing
    /// folder: `dev`, `usr/lib/x86_64-linux-gnu`, `proc/driver/nvidia`, …).
    missing: Option<RefCell<std::collections::HashSet<PathBuf>>>,
    /// [`NODES_FILE`], read once.
    nodes: std::cell::OnceCell<BTreeMap<PathBuf, NodeStat>>,
}

/// An error reading a host file. The path shown is the one inside the root.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct ReadError {
    pub path: String,
    #[source]
    pub source: io::Error,
}

impl ReadError {
    pub fn is_not_found(&self) -> bool {
        self.source.kind() == io::ErrorKind::NotFound
    }
}

impl HostRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            record: None,
            dirs: RefCell::new(HashMap::new()),
            real_dirs: RefCell::default(),
            missing: None,
            nodes: std::cell::OnceCell::new(),
        }
    }

    /// A root that remembers every path it reads (for snapshots).
    pub fn recording(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            record: Some(RefCell::new(BTreeMap::new())),
            dirs: RefCell::new(HashMap::new()),
            real_dirs: RefCell::default(),
            missing: None,
            nodes: std::cell::OnceCell::new(),
        }
    }

    /// This root for a command that writes nothing under it (`scan`,
    /// `iommu`): it also remembers the paths it found missing (see
    /// `missing`). A root that is written under must not: a folder created
    /// after it was looked for would still be missing. A recording root
    /// (snapshots) keeps looking.
    pub fn read_only(mut self) -> Self {
        if self.record.is_none() {
            self.missing = Some(RefCell::default());
        }
        self
    }

    /// Whether the resolved path `at`, or a folder above it, was found
    /// missing (only on a [`HostRoot::read_only`] root).
    fn known_missing(&self, at: &Path) -> bool {
        self.missing.as_ref().is_some_and(|m| {
            let m = m.borrow();
            !m.is_empty() && at.ancestors().any(|a| m.contains(a))
        })
    }

    /// Remember that the resolved path `at` is missing.
    fn note_missing(&self, at: &Path) {
        if let Some(m) = &self.missing {
            m.borrow_mut().insert(at.to_path_buf());
        }
    }

    /// The error a lookup of the missing `at` gives.
    fn missing_err(&self, at: &Path) -> ReadError {
        self.err(
            at,
            io::Error::from_raw_os_error(rustix::io::Errno::NOENT.raw_os_error()),
        )
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn is_recording(&self) -> bool {
        self.record.is_some()
    }

    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// Everything read so far (only for a recording root).
    pub fn touched(&self) -> BTreeMap<PathBuf, Touched> {
        self.record
            .as_ref()
            .map(|r| r.borrow().clone())
            .unwrap_or_default()
    }

    fn note(&self, rel: &Path, what: Touched) {
        if let Some(r) = &self.record {
            let mut r = r.borrow_mut();
            // Never downgrade: a trimmed record stays trimmed when the file
            // is read again, and a read file stays read when only its
            // presence is asked later.
            match (r.get(rel), &what) {
                (Some(Touched::Trimmed(_)), Touched::File | Touched::Present) => return,
                (Some(Touched::File), Touched::Present) => return,
                _ => {}
            }
            r.insert(rel.to_path_buf(), what);
        }
    }

    /// For a recording root: store only `content` for `rel` in a snapshot
    /// (the lines a report used), instead of the whole file.
    pub fn record_trimmed(&self, rel: impl AsRef<Path>, content: Vec<u8>) {
        if self.record.is_some()
            && let Ok(p) = self.resolve(rel.as_ref())
        {
            self.note(&p, Touched::Trimmed(content));
        }
    }

    /// On the live root only: whether the current user may open `rel` for
    /// reading (and writing), as the kernel decides (`access(2)`). `None`
    /// on any other root, where the current user is not the tree's user.
    pub fn live_access(&self, rel: impl AsRef<Path>, write: bool) -> Option<Result<bool, String>> {
        if !self.is_live() {
            return None;
        }
        let full = self.root.join(rel.as_ref());
        let mode = if write {
            rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK
        } else {
            rustix::fs::Access::READ_OK
        };
        Some(match rustix::fs::access(&full, mode) {
            Ok(()) => Ok(true),
            Err(e)
                if e == rustix::io::Errno::ACCESS
                    || e == rustix::io::Errno::PERM
                    || e == rustix::io::Errno::ROFS =>
            {
                Ok(false)
            }
            Err(e) => Err(format!("{}: {}", full.display(), std::io::Error::from(e))),
        })
    }

    /// On the live root only: the type, mode and owner of `rel`.
    pub fn live_node(&self, rel: impl AsRef<Path>) -> Option<NodeInfo> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        if !self.is_live() {
            return None;
        }
        let md = std::fs::metadata(self.root.join(rel.as_ref())).ok()?;
        let ft = md.file_type();
        let kind = if ft.is_char_device() {
            "character device"
        } else if ft.is_block_device() {
            "block device"
        } else if ft.is_socket() {
            "socket"
        } else if ft.is_dir() {
            "directory"
        } else if ft.is_file() {
            "file"
        } else {
            "special file"
        };
        Some(NodeInfo {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
        })
    }

    /// The facts of the device node at `rel` (links resolved inside the
    /// root; the node itself is never opened). `Ok(None)` when there is no
    /// node there. On any root but the live one, a path that is absent or a
    /// plain file (a placeholder) is looked up in [`NODES_FILE`], which
    /// `exliar snapshot` writes; a node made with `mknod` under a test root
    /// is read as it is.
    pub fn stat_node(&self, rel: impl AsRef<Path>) -> Result<Option<NodeStat>, ReadError> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let at = match self.resolve(rel.as_ref()) {
            Ok(p) => p,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let full = self.root.join(&at);
        let found = match std::fs::symlink_metadata(&full) {
            Ok(md) => {
                let ft = md.file_type();
                if ft.is_char_device() || ft.is_block_device() {
                    let rdev = md.rdev();
                    Some(NodeStat {
                        kind: if ft.is_char_device() { 'c' } else { 'b' },
                        major: rustix::fs::major(rdev),
                        minor: rustix::fs::minor(rdev),
                        mode: md.mode() & 0o7777,
                        uid: md.uid(),
                        gid: md.gid(),
                    })
                } else if ft.is_file() && !self.is_live() {
                    self.node_table().get(&at).copied()
                } else {
                    None
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if self.is_live() {
                    None
                } else {
                    self.node_table().get(&at).copied()
                }
            }
            Err(e) => return Err(self.err(&at, e)),
        };
        if let Some(st) = found {
            self.note(&at, Touched::Node(st));
        }
        Ok(found)
    }

    fn node_table(&self) -> &BTreeMap<PathBuf, NodeStat> {
        self.nodes.get_or_init(|| {
            // Read directly, not recorded: a snapshot writes its own table
            // from the nodes it was asked about.
            let full = self.root.join(NODES_FILE);
            match open_nofollow(&full, super::readfile::limit_for(Path::new(NODES_FILE))) {
                Ok(bytes) => NodeStat::parse_table(&String::from_utf8_lossy(&bytes))
                    .into_iter()
                    .collect(),
                Err(_) => BTreeMap::new(),
            }
        })
    }

    /// The name shown to users for a path inside the root: `/sys/...` on the
    /// live host, `ROOT/sys/...` elsewhere.
    pub fn display(&self, rel: &Path) -> String {
        self.root.join(rel).display().to_string()
    }

    fn err(&self, rel: &Path, source: io::Error) -> ReadError {
        ReadError {
            path: self.display(rel),
            source,
        }
    }

    /// Resolve every symbolic link in `rel` lexically, inside the root.
    /// Returns the resolved root-relative path.
    ///
    /// On the live host (not recording) the kernel resolves a path that
    /// exists: one `O_PATH` open and one `readlink` of its descriptor, where
    /// the walk costs an `lstat` per component and a `readlink` per link
    /// (`sys/class/block/X` is eleven components deep). A path that does not
    /// exist, or no `/proc`, takes the walk.
    pub fn resolve(&self, rel: &Path) -> Result<PathBuf, ReadError> {
        if self.record.is_none()
            && self.is_live()
            && let Some(p) = live_real_path(rel)
        {
            return Ok(p);
        }
        self.resolve_links(rel, false)
    }

    /// [`HostRoot::resolve`] for a path exliar will write under: a link
    /// whose target climbs above the root with `..` is an error (it leads
    /// out of the root when followed from outside it), where `resolve`
    /// would stop at the root as a chroot does. An absolute link target is
    /// taken inside the root, as the root's own programs read it.
    pub fn resolve_contained(&self, rel: &Path) -> Result<PathBuf, ReadError> {
        self.resolve_links(rel, true)
    }

    fn resolve_links(&self, rel: &Path, contained: bool) -> Result<PathBuf, ReadError> {
        let mut out = PathBuf::new();
        let mut pending: Vec<PathBuf> = vec![rel.to_path_buf()];
        let mut hops = 0;
        while let Some(p) = pending.pop() {
            let mut comps: Vec<Component<'_>> = p.components().collect();
            comps.reverse();
            while let Some(c) = comps.pop() {
                match c {
                    Component::RootDir | Component::Prefix(_) => out = PathBuf::new(),
                    Component::CurDir => {}
                    Component::ParentDir => {
                        if !out.pop() && contained && hops > 0 {
                            return Err(self.err(
                                rel,
                                io::Error::other(
                                    "a symbolic link on the way leads out of the root",
                                ),
                            ));
                        }
                    }
                    Component::Normal(name) => {
                        let candidate = out.join(name);
                        // A path exliar will write under is walked afresh.
                        if !contained
                            && (self.real_dirs.borrow().contains(&candidate)
                                || self.known_missing(&candidate))
                        {
                            out = candidate;
                            continue;
                        }
                        let full = self.root.join(&candidate);
                        match std::fs::symlink_metadata(&full) {
                            Ok(md) if md.file_type().is_symlink() => {
                                hops += 1;
                                if hops > 40 {
                                    return Err(self.err(
                                        rel,
                                        io::Error::other("too many levels of symbolic links"),
                                    ));
                                }
                                let target = std::fs::read_link(&full)
                                    .map_err(|e| self.err(&candidate, e))?;
                                self.note(&candidate, Touched::Link(target.clone()));
                                // The rest of this path continues after the target.
                                let rest: PathBuf = comps.iter().rev().collect();
                                comps.clear();
                                pending.push(rest);
                                pending.push(target);
                            }
                            Ok(md) if md.is_dir() && !contained => {
                                self.real_dirs.borrow_mut().insert(candidate.clone());
                                out = candidate;
                            }
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                                self.note_missing(&candidate);
                                out = candidate;
                            }
                            _ => out = candidate,
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Read a whole file as text (lossy UTF-8).
    pub fn read_string(&self, rel: impl AsRef<Path>) -> Result<String, ReadError> {
        let bytes = self.read_bytes(rel)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// Resolve a directory path, remembering the answer.
    fn resolve_dir(&self, rel: &Path) -> Result<PathBuf, ReadError> {
        // On the live host nothing lies outside the root: the kernel's own
        // resolution, when the path is opened, is the answer, and costs no
        // lstat per component (a runtime bind reads a few dozen paths, and
        // under a slow CPU every syscall counts). A recording root keeps
        // the lexical walk: it must note each link it passes.
        if self.record.is_none() && self.is_live() {
            return Ok(rel.to_path_buf());
        }
        if let Some(p) = self.dirs.borrow().get(rel) {
            return Ok(p.clone());
        }
        // From the resolved parent (cached too), a last component that is
        // no link costs one lstat, not one per component of the path: the
        // thousands of `sys/bus/pci/devices/ADDR` share their prefix. A link
        // there, `..` anywhere, or a recording root: the full walk.
        if self.record.is_none()
            && let (Some(parent), Some(Component::Normal(name))) =
                (rel.parent(), rel.components().next_back())
            && !parent.as_os_str().is_empty()
            && rel.components().all(|c| matches!(c, Component::Normal(_)))
        {
            let base = self.resolve_dir(parent)?;
            let candidate = base.join(name);
            if let Ok(md) = std::fs::symlink_metadata(self.root.join(&candidate))
                && !md.file_type().is_symlink()
            {
                self.dirs
                    .borrow_mut()
                    .insert(rel.to_path_buf(), candidate.clone());
                return Ok(candidate);
            }
        }
        let p = self.resolve(rel)?;
        self.dirs.borrow_mut().insert(rel.to_path_buf(), p.clone());
        Ok(p)
    }

    /// Split `rel` into its resolved parent and a plain final name; `None`
    /// when the final component is not a plain name (`..`, empty).
    fn split_resolved(&self, rel: &Path) -> Result<Option<PathBuf>, ReadError> {
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return Ok(None);
        };
        if !matches!(rel.components().next_back(), Some(Component::Normal(_))) {
            return Ok(None);
        }
        Ok(Some(self.resolve_dir(parent)?.join(name)))
    }

    /// Open a regular file inside the root for reading: links resolved
    /// inside the root (from the cached parent when the last component is
    /// no link), nothing but a regular file, no more than the size limit for
    /// its kind. The descriptor, the size `fstat` gave, and the resolved
    /// path.
    fn open_file(&self, rel: &Path) -> Result<(std::os::fd::OwnedFd, u64, PathBuf), ReadError> {
        let open = |at: &Path| -> io::Result<(std::os::fd::OwnedFd, u64)> {
            let (fd, size) =
                super::readfile::open_regular_at(rustix::fs::CWD, self.root.join(at), true)?;
            let limit = super::readfile::limit_for(at);
            if size > limit {
                return Err(super::readfile::too_large(limit));
            }
            Ok((fd, size))
        };
        let at = match self.split_resolved(rel)? {
            Some(at) if self.known_missing(&at) => return Err(self.missing_err(&at)),
            // Fast path: the parent is resolved; open the last component
            // without following a link. A link there takes the slow path.
            Some(at) => match open(&at) {
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                    self.resolve(rel)?
                }
                r => {
                    if r.as_ref()
                        .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
                    {
                        self.note_missing(&at);
                    }
                    let (fd, size) = r.map_err(|e| self.err(&at, e))?;
                    self.note(&at, Touched::File);
                    return Ok((fd, size, at));
                }
            },
            None => self.resolve(rel)?,
        };
        // Resolved: no link is left to follow (one there now is refused).
        let (fd, size) = open(&at).map_err(|e| self.err(&at, e))?;
        self.note(&at, Touched::File);
        Ok((fd, size, at))
    }

    /// Read a whole file.
    pub fn read_bytes(&self, rel: impl AsRef<Path>) -> Result<Vec<u8>, ReadError> {
        let (fd, size, at) = self.open_file(rel.as_ref())?;
        super::readfile::read_capped(&fd, size, super::readfile::limit_for(&at), false)
            .map_err(|e| self.err(&at, e))
    }

    /// [`HostRoot::read_bytes`] without the read: the open file and its
    /// size (for a file read in parts, `pci.ids`). `Ok(None)` when it does
    /// not exist.
    pub fn open_optional(
        &self,
        rel: impl AsRef<Path>,
    ) -> Result<Option<(std::fs::File, u64)>, ReadError> {
        match self.open_file(rel.as_ref()) {
            Ok((fd, size, _)) => Ok(Some((std::fs::File::from(fd), size))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Read a file when it exists: `Ok(None)` when it does not.
    pub fn read_optional(&self, rel: impl AsRef<Path>) -> Result<Option<String>, ReadError> {
        match self.read_string(rel) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The last component of a symbolic link's target (`driver` → `vfio-pci`).
    /// `Ok(None)` when the link does not exist.
    pub fn link_name(&self, rel: impl AsRef<Path>) -> Result<Option<String>, ReadError> {
        Ok(self
            .link_target(rel)?
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned())))
    }

    /// Whether a character device node inside the root is held open by
    /// someone, for nodes the kernel lets only one file open at a time (a
    /// VFIO group): `Some(false)` when it opened (it is closed again at
    /// once) or does not exist, `Some(true)` on `EBUSY`, `None` when that
    /// cannot be told (not a character device, no permission).
    pub fn probe_exclusive(&self, rel: impl AsRef<Path>) -> Option<bool> {
        use rustix::fs::{FileType, Mode, OFlags};
        let rel = rel.as_ref();
        // On the live host nothing lies outside the root: the kernel follows
        // the links itself (`stat`, then an open that follows them), where
        // the walk takes an `O_PATH` open and a `readlink` of it first.
        let (path, follow) = if self.is_live() && !self.is_recording() {
            (self.root.join(rel), OFlags::empty())
        } else {
            match self.resolve(rel) {
                Ok(at) => (self.root.join(at), OFlags::NOFOLLOW),
                Err(e) if e.is_not_found() => return Some(false),
                Err(_) => return None,
            }
        };
        let st = if follow.is_empty() {
            rustix::fs::stat(&path)
        } else {
            rustix::fs::lstat(&path)
        };
        match st {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice => {}
            Ok(_) => return None,
            Err(rustix::io::Errno::NOENT) => return Some(false),
            Err(_) => return None,
        }
        match rustix::fs::open(
            &path,
            OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY | follow,
            Mode::empty(),
        ) {
            Ok(_fd) => Some(false),
            Err(rustix::io::Errno::BUSY) => Some(true),
            Err(rustix::io::Errno::NOENT) => Some(false),
            Err(_) => None,
        }
    }

    /// A symbolic link's target as written (not resolved: `/proc/PID/fd/N` →
    /// `/dev/vfio/12`). `Ok(None)` when the link does not exist.
    pub fn link_target(&self, rel: impl AsRef<Path>) -> Result<Option<PathBuf>, ReadError> {
        let rel = rel.as_ref();
        let parent = match rel.parent() {
            Some(p) => self.resolve_dir(p)?,
            None => PathBuf::new(),
        };
        let Some(name) = rel.file_name() else {
            return Ok(None);
        };
        let at = parent.join(name);
        match std::fs::read_link(self.root.join(&at)) {
            Ok(target) => {
                self.note(&at, Touched::Link(target.clone()));
                Ok(Some(target))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(&at, e)),
        }
    }

    /// Whether a path exists (after resolving links inside the root). A
    /// snapshot records only the presence (an empty file, or a folder).
    pub fn exists(&self, rel: impl AsRef<Path>) -> bool {
        if self.record.is_none() && self.is_live() {
            // the kernel resolves the links (see `resolve_dir`)
            return std::fs::metadata(self.root.join(rel)).is_ok();
        }
        let rel = rel.as_ref();
        // From the resolved (cached) parent: one lstat when the last
        // component is no link, instead of one per component. Stack probes
        // ask about dozens of paths under the same few folders.
        if let Ok(Some(at)) = self.split_resolved(rel) {
            if self.known_missing(&at) {
                return false;
            }
            match std::fs::symlink_metadata(self.root.join(&at)) {
                Ok(md) if !md.file_type().is_symlink() => {
                    self.note_present(&at, &md);
                    return true;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.note_missing(&at);
                    return false;
                }
                Err(_) => {}
            }
        }
        match self.resolve(rel) {
            Ok(p) => match std::fs::symlink_metadata(self.root.join(&p)) {
                Ok(md) => {
                    self.note_present(&p, &md);
                    true
                }
                Err(_) => false,
            },
            Err(_) => false,
        }
    }

    /// Record that `rel` exists (a folder, or anything else).
    fn note_present(&self, rel: &Path, md: &std::fs::Metadata) {
        self.note(
            rel,
            if md.is_dir() {
                Touched::Dir
            } else {
                Touched::Present
            },
        );
    }

    /// The entry names of a directory, sorted. Entries are not recorded:
    /// callers read (or [`HostRoot::mark_present`]) the ones they use.
    pub fn list_dir(&self, rel: impl AsRef<Path>) -> Result<Vec<String>, ReadError> {
        Ok(self
            .list_dir_with_ino(rel)?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// [`HostRoot::list_dir`] with each entry's inode number, as the
    /// listing gives it (no syscall per entry).
    pub fn list_dir_with_ino(
        &self,
        rel: impl AsRef<Path>,
    ) -> Result<Vec<(String, u64)>, ReadError> {
        self.list_dir_where(rel, |_| true)
    }

    /// [`HostRoot::list_dir_with_ino`] of the names that `keep` takes,
    /// given as the listing has them: the others are never copied, sorted
    /// or held (a library folder of 1500 names, of which a probe wants a
    /// few).
    pub fn list_dir_where(
        &self,
        rel: impl AsRef<Path>,
        mut keep: impl FnMut(&std::ffi::OsStr) -> bool,
    ) -> Result<Vec<(String, u64)>, ReadError> {
        use std::os::unix::ffi::OsStrExt;
        let rel = self.resolve_dir(rel.as_ref())?;
        if self.known_missing(&rel) {
            return Err(self.missing_err(&rel));
        }
        let full = self.root.join(&rel);
        let fd = rustix::fs::open(
            &full,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| {
            let e = io::Error::from(e);
            if e.kind() == io::ErrorKind::NotFound {
                self.note_missing(&rel);
            }
            self.err(&rel, e)
        })?;
        self.note(&rel, Touched::Dir);
        let mut names = Vec::new();
        super::readfile::each_dir_entry(&fd, |raw, ino, _| {
            let raw = std::ffi::OsStr::from_bytes(raw);
            if keep(raw) && raw != super::snapshot::KEEP {
                names.push((raw.to_string_lossy().into_owned(), ino));
            }
        })
        .map_err(|e| self.err(&rel, e))?;
        names.sort();
        Ok(names)
    }

    /// Record that an entry's existence was used (for snapshots).
    pub fn mark_present(&self, rel: impl AsRef<Path>) {
        if self.record.is_some()
            && let Ok(p) = self.resolve(rel.as_ref())
        {
            let full = self.root.join(&p);
            match std::fs::symlink_metadata(&full) {
                Ok(md) if md.file_type().is_symlink() => {
                    if let Ok(t) = std::fs::read_link(&full) {
                        self.note(&p, Touched::Link(t));
                    }
                }
                Ok(_) => self.note(&p, Touched::Present),
                Err(_) => {}
            }
        }
    }
}

/// Where the kernel resolves `rel` (relative to `/`), as a relative path;
/// `None` when it does not exist or `/proc` cannot say.
fn live_real_path(rel: &Path) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let fd = rustix::fs::openat(
        rustix::fs::CWD,
        Path::new("/").join(rel),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()?;
    let link = format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(&fd));
    let target = rustix::fs::readlink(link.as_str(), Vec::new()).ok()?;
    let t = target.as_bytes();
    // An absolute path, not a removed file's "… (deleted)" nor another
    // namespace's "anon_inode:…".
    let rest = t.strip_prefix(b"/")?;
    if t.ends_with(b" (deleted)") {
        return None;
    }
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(rest)))
}

/// Read a file, refusing to follow a symbolic link in its last component,
/// to block on a FIFO, to read a device node, or to read more than `limit`
/// bytes (see [`super::readfile`]).
fn open_nofollow(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let (fd, size) = super::readfile::open_regular_at(rustix::fs::CWD, path, true)?;
    super::readfile::read_capped(&fd, size, limit, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The node table keeps what a line can say and write back: not the
    /// root itself (a line naming `/`, found by the `host_tables` fuzz
    /// target's round trip), nothing climbing out, nothing that would read
    /// back as a comment.
    #[test]
    fn the_node_table_reads_back_what_it_writes() {
        let text = "# nodes\n/dev/dri/card0 c 226:0 0660 0 44\n/ c 1:3 0666 0 0\n/#x c 1:3 0666 0 0\n\
                    dev/../x b 8:0 0660 0 6\ndev/null c 1:3 100666 0 0\n";
        let nodes = NodeStat::parse_table(text);
        let paths: Vec<_> = nodes.iter().map(|(p, _)| p.display().to_string()).collect();
        assert_eq!(paths, ["dev/dri/card0", "dev/null"]);
        assert_eq!(nodes[1].1.mode, 0o666);
        let table: String = nodes.iter().map(|(p, s)| s.line(p) + "\n").collect();
        assert_eq!(NodeStat::parse_table(&table), nodes);
    }

    #[test]
    fn resolves_links_inside_the_root() -> Result<(), Box<dyn std::error::Error>> {
        let t = tempfile::tempdir()?;
        let r = t.path();
        std::fs::create_dir_all(r.join("sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0"))?;
        std::fs::write(
            r.join("sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/class"),
            "0x030000\n",
        )?;
        std::fs::create_dir_all(r.join("sys/bus/pci/devices"))?;
        std::os::unix::fs::symlink(
            "../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0",
            r.join("sys/bus/pci/devices/0000:01:00.0"),
        )?;
        // An absolute link is taken relative to the root, never the real /.
        std::os::unix::fs::symlink("/sys/devices", r.join("abs"))?;
        // A link climbing above the root stays at the root.
        std::os::unix::fs::symlink("../../../../../../etc", r.join("sys/escape"))?;
        let host = HostRoot::recording(r);
        assert_eq!(
            host.read_string("sys/bus/pci/devices/0000:01:00.0/class")?,
            "0x030000\n"
        );
        assert_eq!(
            host.resolve(Path::new("abs/pci0000:00"))?,
            PathBuf::from("sys/devices/pci0000:00")
        );
        assert_eq!(host.resolve(Path::new("sys/escape"))?, PathBuf::from("etc"));
        let touched = host.touched();
        assert!(touched.contains_key(Path::new(
            "sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/class"
        )));
        assert!(matches!(
            touched.get(Path::new("sys/bus/pci/devices/0000:01:00.0")),
            Some(Touched::Link(_))
        ));
        Ok(())
    }

    /// On the live host a VFIO group's probe (the kernel following the
    /// links) answers as through the walk: nodes, missing paths, files.
    #[test]
    fn live_exclusive_probes_are_the_walks() -> Result<(), Box<dyn std::error::Error>> {
        // `/` taken by the kernel, and `/` walked (a root that names it
        // through a link is not the live root).
        let dir = tempfile::tempdir()?;
        let slash = dir.path().join("slash");
        std::os::unix::fs::symlink("/", &slash)?;
        let live = HostRoot::new("/");
        let walked = HostRoot::new(&slash);
        assert!(live.is_live() && !walked.is_live());
        let mut rels = vec![
            "dev/null".to_string(),
            "dev/no-such-node".to_string(),
            "no/such/dir/node".to_string(),
            "etc/hostname".to_string(),
            "dev".to_string(),
        ];
        rels.extend(
            live.list_dir("dev/vfio")
                .unwrap_or_default()
                .into_iter()
                .map(|g| format!("dev/vfio/{g}")),
        );
        for rel in &rels {
            assert_eq!(
                live.probe_exclusive(rel),
                walked.probe_exclusive(rel),
                "{rel}"
            );
        }
        if Path::new("/dev/null").exists() {
            assert_eq!(live.probe_exclusive("dev/null"), Some(false));
        }
        assert_eq!(live.probe_exclusive("dev/no-such-node"), Some(false));
        Ok(())
    }

    /// On the live host the kernel's answer is the lexical walk's, for
    /// paths through the links a bind resolves (block devices, network
    /// interfaces, PCI devices).
    #[test]
    fn live_resolution_is_the_walks() -> Result<(), Box<dyn std::error::Error>> {
        let host = HostRoot::new("/");
        let mut paths = vec![PathBuf::from("sys/bus/pci"), PathBuf::from("etc")];
        for dir in ["sys/class/block", "sys/class/net", "sys/bus/pci/devices"] {
            if let Ok(names) = host.list_dir(dir) {
                paths.extend(names.iter().take(8).map(|n| Path::new(dir).join(n)));
                if let Some(n) = names.first() {
                    paths.push(Path::new(dir).join(n).join("subsystem/.."));
                }
            }
        }
        let mut compared = 0;
        for p in &paths {
            let Some(kernel) = live_real_path(p) else {
                continue;
            };
            let walk = host.resolve_links(p, false)?;
            assert_eq!(kernel, walk, "{}", p.display());
            assert_eq!(host.resolve(p)?, walk, "{}", p.display());
            compared += 1;
        }
        if compared == 0 {
            eprintln!("skipped: no /proc or /sys here");
            return Ok(());
        }
        assert!(paths.len() > 2, "no links to resolve under /sys");
        // What does not exist still resolves, by the walk.
        assert_eq!(live_real_path(Path::new("no/such/path")), None);
        assert_eq!(
            host.resolve(Path::new("no/such/../path"))?,
            PathBuf::from("no/path")
        );
        Ok(())
    }

    #[test]
    fn link_loops_are_an_error_not_a_hang() -> Result<(), Box<dyn std::error::Error>> {
        let t = tempfile::tempdir()?;
        std::os::unix::fs::symlink("b", t.path().join("a"))?;
        std::os::unix::fs::symlink("a", t.path().join("b"))?;
        let host = HostRoot::new(t.path());
        assert!(host.read_string("a/x").is_err());
        Ok(())
    }

    /// A read-only root answers as a plain one for paths under missing
    /// folders (exists, reads, listings, with the same errors), and then
    /// from what it remembers: a folder made after it was found missing is
    /// still missing to it, which is why only roots nothing is written
    /// under remember.
    #[test]
    fn a_read_only_root_remembers_missing_folders() -> Result<(), Box<dyn std::error::Error>> {
        let t = tempfile::tempdir()?;
        let r = t.path();
        std::fs::create_dir_all(r.join("usr/share/misc"))?;
        std::fs::write(r.join("usr/share/misc/pci.ids"), "")?;
        std::fs::create_dir_all(r.join("real"))?;
        std::os::unix::fs::symlink("real", r.join("link"))?;
        let plain = HostRoot::new(r);
        let remembering = HostRoot::new(r).read_only();
        let paths = [
            "dev/nvidia0",
            "dev/dri/card0",
            "dev",
            "usr/lib/x86_64-linux-gnu/libcuda.so.1",
            "usr/lib/x86_64-linux-gnu",
            "usr/share/misc/pci.ids",
            "usr/share/misc/usb.ids",
            "link/x/y",
            "link",
            "real/x",
            "dev/nvidia0",
        ];
        for _ in 0..2 {
            for p in paths {
                assert_eq!(remembering.exists(p), plain.exists(p), "{p}");
                let (a, b) = (remembering.read_optional(p), plain.read_optional(p));
                assert_eq!(format!("{a:?}"), format!("{b:?}"), "{p}");
                let (a, b) = (remembering.read_bytes(p), plain.read_bytes(p));
                assert_eq!(format!("{a:?}"), format!("{b:?}"), "{p}");
                let (a, b) = (remembering.list_dir(p), plain.list_dir(p));
                assert_eq!(format!("{a:?}"), format!("{b:?}"), "{p}");
            }
        }
        std::fs::create_dir_all(r.join("dev/dri"))?;
        std::fs::write(r.join("dev/dri/card0"), "")?;
        assert!(plain.exists("dev/dri/card0"));
        assert!(!remembering.exists("dev/dri/card0"));
        assert!(HostRoot::new(r).read_only().exists("dev/dri/card0"));
        Ok(())
    }
}
