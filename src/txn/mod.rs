//! Transactions: apply a [`Plan`] so that it can always be undone.
//!
//! Under the target's state directory (`var/lib/exliar`) each transaction
//! has a journal and the original bytes of every file it touches. The
//! protocol (every journal write is atomic and durable: file and folder
//! fsynced):
//!
//! 1. The transaction folder is built under a hidden name
//!    (`txn/.new-ID`: backups, exliar's versions, the journal in state
//!    `applying` with every file `pending`) and renamed into place, so a
//!    transaction folder is never visible without its journal.
//! 2. Each file is announced (`backed-up`: it may be written from now on),
//!    written atomically, then recorded `written`; each command is
//!    announced `running`, run, recorded `done` or `failed`.
//! 3. `applied`.
//!
//! Undoing (a rollback, the automatic revert of a failed apply, or
//! `recover` of an interrupted apply) is journaled the same way: state
//! `rolling-back` with `revert` saying why, each file `restored` after it
//! is, each regeneration command announced and recorded. `recover` finishes
//! whatever is unfinished: an interrupted apply is reverted (every file
//! back to its original), an interrupted rollback is finished (what the
//! user asked for). One lock serialises exliar runs; reads (`history`,
//! `status`, `plan`) take no lock and write nothing.

mod journal;

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::host::write::{
    atomic_write_owned, check_writable, ensure_dir, is_tmp_name, missing_dirs, remove_empty_dir,
    remove_file, remove_tmp, remove_tree, rename_durable,
};
use crate::plan::{Plan, Step};

pub use journal::{
    Action, CommandRecord, FileRecord, FileState, Fingerprint, Journal, Revert, RunState, Status,
    id_order, valid_id,
};

/// The state directory, relative to the target root.
pub const STATE_DIR: &str = "var/lib/exliar";

/// What state a failure left the host in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostState {
    /// Refused or failed before any file of the target was touched.
    Unchanged,
    /// Failed part-way and reverted: every file is back to its original.
    Restored,
    /// Failed and could not be reverted (or undone) completely: `exliar
    /// recover` finishes it.
    PartlyChanged,
    /// A rollback restored every file but its regeneration did not finish:
    /// `exliar recover` finishes it.
    RegenerationPending,
}

impl HostState {
    pub fn name(self) -> &'static str {
        match self {
            HostState::Unchanged => "unchanged",
            HostState::Restored => "restored",
            HostState::PartlyChanged => "partly-changed",
            HostState::RegenerationPending => "regeneration-pending",
        }
    }
    /// The one command to run next, if any.
    pub fn next(self) -> Option<&'static str> {
        match self {
            HostState::Unchanged | HostState::Restored => None,
            HostState::PartlyChanged | HostState::RegenerationPending => Some("exliar recover"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    /// An error from `host::write`, which names its path.
    #[error("{0}")]
    Write(io::Error),
    #[error("another exliar run holds the lock {path}")]
    Locked { path: String },
    #[error(
        "transaction {id} is unfinished; run `exliar recover` to finish it first (it returns every file of an interrupted apply to its original, and finishes an interrupted rollback)"
    )]
    Unfinished { id: String },
    #[error("/{path} changed since the plan was made; plan again")]
    ChangedSincePlan { path: String },
    #[error("{0}\nNothing was changed (refused before the transaction started).")]
    Refused(String),
    #[error("no transaction {0}")]
    NoSuchTransaction(String),
    #[error(
        "`{0}` is not a transaction id (ids look like 20261204T150000Z; `exliar history` lists them)"
    )]
    BadId(String),
    #[error("transaction {id} is {status}, not applied")]
    NotApplied { id: String, status: String },
    #[error(
        "files changed since exliar wrote them (use --force to restore the originals anyway):\n{diffs}"
    )]
    ChangedSinceApply { diffs: String },
    #[error("command failed: {command}: {message}")]
    Command { command: String, message: String },
    #[error("journal {path}: {message}")]
    Journal { path: String, message: String },
    /// A transaction failed: the cause, then what state the host is in.
    #[error("{cause}\n{}", describe(*.host, .id, *.phase))]
    Failed {
        id: String,
        host: HostState,
        /// What was being done.
        phase: Phase,
        cause: Box<TxnError>,
    },
}

/// What a failed transaction command was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Open,
    Apply,
    Rollback,
    Recover,
}

fn describe(host: HostState, id: &str, phase: Phase) -> String {
    match (host, phase) {
        (HostState::Unchanged, _) => "Nothing was changed.".to_string(),
        (HostState::Restored, _) => format!(
            "Nothing was changed: every file is back to its original (transaction {id} is recorded as failed)."
        ),
        (HostState::PartlyChanged, Phase::Apply | Phase::Open) => format!(
            "The host is partly changed (transaction {id} is unfinished); run `exliar recover` to return every file to its original."
        ),
        (HostState::PartlyChanged, Phase::Rollback) => format!(
            "The rollback of transaction {id} did not finish; run `exliar recover` to finish it."
        ),
        (HostState::PartlyChanged, Phase::Recover) => {
            format!("Recovering transaction {id} did not finish; run `exliar recover` again.")
        }
        (HostState::RegenerationPending, _) => format!(
            "Every file of transaction {id} is back to its original, but the regeneration did not finish; fix its cause and run `exliar recover` (or `exliar recover --no-run` and run it yourself)."
        ),
    }
}

impl TxnError {
    /// The state of the host after this error (`Unchanged` for errors
    /// raised before anything was written).
    pub fn host_state(&self) -> HostState {
        match self {
            TxnError::Failed { host, .. } => *host,
            // an earlier transaction is unfinished
            TxnError::Unfinished { .. } => HostState::PartlyChanged,
            _ => HostState::Unchanged,
        }
    }
    /// The transaction the error left on record (none when nothing was
    /// created).
    pub fn transaction(&self) -> Option<&str> {
        match self {
            TxnError::Failed { id, host, .. } if *host != HostState::Unchanged => Some(id),
            TxnError::Unfinished { id } => Some(id),
            _ => None,
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> TxnError + '_ {
    move |source| TxnError::Io {
        path: path.display().to_string(),
        source,
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the plan's commands. The real one runs them (in a chroot for
/// another root); tests record them.
pub trait CommandRunner {
    /// Run `argv` for the target; `Err` with the output on failure.
    fn run(&mut self, target: &Path, argv: &[String]) -> Result<String, String>;
}

/// Runs commands with `std::process::Command`, never through a shell.
#[derive(Debug, Default)]
pub struct SystemRunner;

impl SystemRunner {
    /// The process for `argv` on `target`: run as is for `/`, else under
    /// `chroot TARGET`; `None` for an empty argv.
    pub fn command(target: &Path, argv: &[String]) -> Option<std::process::Command> {
        let (prog, args) = argv.split_first()?;
        Some(if target == Path::new("/") {
            let mut c = std::process::Command::new(prog);
            c.args(args);
            c
        } else {
            let mut c = std::process::Command::new("chroot");
            c.arg(target).arg(prog).args(args);
            c
        })
    }
}

impl CommandRunner for SystemRunner {
    fn run(&mut self, target: &Path, argv: &[String]) -> Result<String, String> {
        let Some(mut cmd) = Self::command(target, argv) else {
            return Ok(String::new());
        };
        let prog = &argv[0];
        let out = cmd.output().map_err(|e| format!("{prog}: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("exit {}: {}", out.status, text.trim()))
        }
    }
}

/// What [`NoRunner`] records as a command's output.
pub const NOT_RUN: &str = "skipped (--no-run)";

/// Skips commands (`--no-run`): the user runs them.
#[derive(Debug, Default)]
pub struct NoRunner;

impl CommandRunner for NoRunner {
    fn run(&mut self, _target: &Path, _argv: &[String]) -> Result<String, String> {
        Ok(NOT_RUN.to_string())
    }
}

/// A test-only runner (debug builds): with
/// `EXLIAR_TEST_RUNNER=sleep:MS[,fail:NAME]`, every command is replaced by
/// a real `sleep` child of MS milliseconds (so that a kill can land inside
/// a regeneration command) and a command whose program is NAME (`*`: any)
/// fails.
#[derive(Debug)]
pub struct TestRunner {
    sleep_ms: u64,
    fail: Option<String>,
}

impl TestRunner {
    pub fn from_env() -> Option<Self> {
        if !cfg!(debug_assertions) {
            return None;
        }
        let v = std::env::var("EXLIAR_TEST_RUNNER").ok()?;
        let mut r = TestRunner {
            sleep_ms: 0,
            fail: None,
        };
        for part in v.split(',') {
            match part.split_once(':') {
                Some(("sleep", ms)) => r.sleep_ms = ms.parse().ok()?,
                Some(("fail", name)) => r.fail = Some(name.to_string()),
                _ => return None,
            }
        }
        Some(r)
    }
}

impl CommandRunner for TestRunner {
    fn run(&mut self, _target: &Path, argv: &[String]) -> Result<String, String> {
        let secs = format!("{}.{:03}", self.sleep_ms / 1000, self.sleep_ms % 1000);
        let st = std::process::Command::new("sleep")
            .arg(secs)
            .status()
            .map_err(|e| format!("sleep: {e}"))?;
        if !st.success() {
            return Err(format!("sleep: {st}"));
        }
        match (&self.fail, argv.first()) {
            (Some(f), Some(a)) if f == a || f == "*" => Err(format!("test runner: {a} fails")),
            _ => Ok(format!("test runner: slept for {}", argv.join(" "))),
        }
    }
}

/// A test-only crash hook: with `EXLIAR_TEST_CRASH_AT=N` in a debug build,
/// the process aborts at the N-th step boundary of an apply.
#[derive(Debug, Default)]
struct Boundaries {
    seen: usize,
    crash_at: Option<usize>,
}

impl Boundaries {
    fn new() -> Self {
        let crash_at = if cfg!(debug_assertions) {
            std::env::var("EXLIAR_TEST_CRASH_AT")
                .ok()
                .and_then(|v| v.parse().ok())
        } else {
            None
        };
        Self { seen: 0, crash_at }
    }
    fn pass(&mut self) {
        self.seen += 1;
        if self.crash_at == Some(self.seen) {
            eprintln!("exliar: test crash at step boundary {}", self.seen);
            std::process::abort();
        }
    }
}

/// A transaction folder that could not be read: reported, then skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The folder.
    pub path: PathBuf,
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}; skipped", self.path.display(), self.reason)
    }
}

/// The journals of a root, oldest first, and the folders skipped.
#[derive(Debug, Default)]
pub struct Journals {
    pub list: Vec<Journal>,
    pub skipped: Vec<Skipped>,
}

impl Journals {
    /// Unfinished transactions (applying or rolling back), newest first.
    pub fn unfinished(&self) -> impl Iterator<Item = &Journal> {
        self.list.iter().rev().filter(|j| j.status.unfinished())
    }
    /// The newest applied transaction.
    pub fn last_applied(&self) -> Option<&Journal> {
        self.list.iter().rev().find(|j| j.status == Status::Applied)
    }
}

/// Every journal under `root`, read without the lock and without writing
/// anything: for `Store` (which holds it) and for read-only commands
/// (`plan`, `status`, `history`). A missing state directory has none;
/// unreadable or partial transaction folders are listed in `skipped`.
pub fn read_journals(root: &Path) -> Result<Journals, TxnError> {
    let dir = root.join(STATE_DIR).join("txn");
    let mut names: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            // `.new-ID`: a transaction being built (or whose build was
            // killed: swept under the lock); `.x.exliar-tmp`: a write.
            .filter(|n| !n.starts_with('.'))
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_at(&dir)(e)),
    };
    // Oldest first, by time then counter (invalid names last: skipped).
    names.sort_by(|a, b| match (id_order(a), id_order(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    });
    let mut out = Journals::default();
    for name in names {
        let path = dir.join(&name);
        if !valid_id(&name) {
            out.skipped.push(Skipped {
                path,
                reason: "not a transaction id".to_string(),
            });
            continue;
        }
        match load_journal(root, &name) {
            Ok(j) if j.id == name => out.list.push(j),
            Ok(j) => out.skipped.push(Skipped {
                path,
                reason: format!("its journal is for transaction {}", j.id),
            }),
            Err(TxnError::NoSuchTransaction(_)) => out.skipped.push(Skipped {
                path,
                reason: "no journal.json (an incomplete transaction folder)".to_string(),
            }),
            Err(e) => out.skipped.push(Skipped {
                path,
                reason: format!("unreadable journal: {e}"),
            }),
        }
    }
    Ok(out)
}

/// Read a target file, a journal or a backup: a regular file only (never
/// blocking on a FIFO), at most the size of a large file.
fn read_capped(path: &Path) -> io::Result<Vec<u8>> {
    crate::host::readfile::read_regular(path, crate::host::readfile::LARGE_LIMIT)
}

fn load_journal(root: &Path, id: &str) -> Result<Journal, TxnError> {
    let path = root
        .join(STATE_DIR)
        .join("txn")
        .join(id)
        .join("journal.json");
    let bytes = read_capped(&path).map_err(|e| {
        if matches!(
            e.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
        ) {
            TxnError::NoSuchTransaction(id.to_string())
        } else {
            io_at(&path)(e)
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| TxnError::Journal {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// A file as it is now: bytes, mode, uid, gid.
type Current = (Vec<u8>, u32, u32, u32);

/// The transaction store of one target root.
pub struct Store {
    root: PathBuf,
    _lock: OwnedFd,
    /// Undo removes disk images it created even when they were written to
    /// since (`rollback --delete-disks`); else those are kept and said.
    pub delete_disks: bool,
    /// The folders skipped when the journals were read.
    skipped: std::cell::RefCell<Vec<Skipped>>,
}

impl Store {
    /// Open the store and take the lock; sweep what killed runs left in it
    /// (a transaction folder never renamed into place, temporary files).
    pub fn open(root: &Path) -> Result<Self, TxnError> {
        Self::open_inner(root).map_err(|e| match e {
            e @ TxnError::Locked { .. } => e,
            cause => TxnError::Failed {
                id: String::new(),
                host: HostState::Unchanged,
                phase: Phase::Open,
                cause: Box::new(cause),
            },
        })
    }

    fn open_inner(root: &Path) -> Result<Self, TxnError> {
        let dir = ensure_dir(root, Path::new(STATE_DIR)).map_err(TxnError::Write)?;
        let lock_path = dir.join("lock");
        let fd = rustix::fs::open(
            &lock_path,
            rustix::fs::OFlags::RDWR
                | rustix::fs::OFlags::CREATE
                | rustix::fs::OFlags::CLOEXEC
                | rustix::fs::OFlags::NOFOLLOW,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .map_err(|e| TxnError::Io {
            path: lock_path.display().to_string(),
            source: e.into(),
        })?;
        rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |_| TxnError::Locked {
                path: lock_path.display().to_string(),
            },
        )?;
        let store = Self {
            root: root.to_path_buf(),
            _lock: fd,
            delete_disks: false,
            skipped: Default::default(),
        };
        store.sweep_store()?;
        Ok(store)
    }

    /// Remove `txn/.new-*` folders (builds that never became transactions:
    /// nothing of the target was touched for them) and exliar's temporary
    /// files in the store.
    fn sweep_store(&self) -> Result<(), TxnError> {
        let state = self.root.join(STATE_DIR);
        let txn = state.join("txn");
        let mut dirs = vec![state.clone(), txn.clone()];
        if let Ok(rd) = std::fs::read_dir(&txn) {
            for e in rd.flatten() {
                let name = e.file_name();
                let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                if name.to_string_lossy().starts_with(".new-") && is_dir {
                    remove_tree(&e.path()).map_err(TxnError::Write)?;
                } else if is_dir {
                    dirs.push(e.path());
                    dirs.push(e.path().join("backup"));
                    dirs.push(e.path().join("after"));
                }
            }
        }
        for d in dirs {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                if is_tmp_name(&e.file_name()) && e.file_type().is_ok_and(|t| t.is_file()) {
                    let rel = e.path();
                    let rel = rel.strip_prefix(&self.root).unwrap_or(&rel);
                    remove_file(&self.root, rel).map_err(TxnError::Write)?;
                }
            }
        }
        Ok(())
    }

    fn txn_dir(&self, id: &str) -> PathBuf {
        Path::new(STATE_DIR).join("txn").join(id)
    }

    /// Every readable journal, oldest first (skipped folders in
    /// [`Store::skipped`]).
    pub fn journals(&self) -> Result<Vec<Journal>, TxnError> {
        let js = read_journals(&self.root)?;
        *self.skipped.borrow_mut() = js.skipped;
        Ok(js.list)
    }

    /// The transaction folders the last read skipped.
    pub fn skipped(&self) -> Vec<Skipped> {
        self.skipped.borrow().clone()
    }

    pub fn load(&self, id: &str) -> Result<Journal, TxnError> {
        if !valid_id(id) {
            return Err(TxnError::BadId(id.to_string()));
        }
        load_journal(&self.root, id)
    }

    fn save(&self, j: &Journal) -> Result<(), TxnError> {
        self.save_at(&self.txn_dir(&j.id), j)
    }

    fn save_at(&self, dir: &Path, j: &Journal) -> Result<(), TxnError> {
        let rel = dir.join("journal.json");
        let mut bytes = serde_json::to_vec_pretty(j).map_err(|e| TxnError::Journal {
            path: rel.display().to_string(),
            message: e.to_string(),
        })?;
        bytes.push(b'\n');
        // readable by all: `history` and `status` work unprivileged (the
        // backups stay 0600)
        atomic_write_owned(&self.root, &rel, &bytes, 0o644, None).map_err(TxnError::Write)
    }

    /// An unfinished transaction (applying or rolling back), if any.
    pub fn unfinished(&self) -> Result<Option<Journal>, TxnError> {
        Ok(self
            .journals()?
            .into_iter()
            .rev()
            .find(|j| j.status.unfinished()))
    }

    fn read_target(&self, rel: &Path) -> Result<Option<Current>, TxnError> {
        use std::os::unix::fs::MetadataExt;
        let full = self.root.join(rel);
        match std::fs::symlink_metadata(&full) {
            Ok(md) if md.file_type().is_symlink() => Err(TxnError::Io {
                path: full.display().to_string(),
                source: io::Error::other("is a symbolic link; exliar does not write through links"),
            }),
            Ok(md) => {
                let bytes = read_capped(&full).map_err(io_at(&full))?;
                Ok(Some((bytes, md.mode() & 0o7777, md.uid(), md.gid())))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(&full)(e)),
        }
    }

    /// Apply a plan. Commands run after every file is written. On any
    /// failure after the first file was announced, the transaction is
    /// reverted (files restored, commands that ran run again from the
    /// originals) and the error says what state the host is in
    /// ([`TxnError::Failed`]).
    pub fn apply(&self, plan: &Plan, runner: &mut dyn CommandRunner) -> Result<Journal, TxnError> {
        if let Some(j) = self.unfinished()? {
            return Err(TxnError::Unfinished { id: j.id });
        }
        let mut b = Boundaries::new();
        // Verify every file is as planned, and can be written, before
        // touching anything.
        let mut files = Vec::new();
        let mut afters: Vec<&[u8]> = Vec::new();
        for s in &plan.steps {
            if let Step::WriteFile {
                path,
                before,
                after,
                mode,
                ..
            } = s
            {
                check_writable(&self.root, path).map_err(TxnError::Refused)?;
                let now = self.read_target(path)?;
                if now.as_ref().map(|n| &n.0) != before.as_ref() {
                    return Err(TxnError::ChangedSincePlan {
                        path: path.display().to_string(),
                    });
                }
                files.push(FileRecord {
                    path: path.clone(),
                    existed: now.is_some(),
                    mode: now.as_ref().map_or(*mode, |n| n.1),
                    uid: now.as_ref().map(|n| n.2),
                    gid: now.as_ref().map(|n| n.3),
                    before_sha256: now.as_ref().map(|n| sha256(&n.0)),
                    after_sha256: sha256(after),
                    state: FileState::Pending,
                    created_dirs: missing_dirs(&self.root, path),
                });
                afters.push(after);
            }
        }
        // Two files of one plan may need the same new folder: the first
        // one creates it.
        for i in 1..files.len() {
            let (done, rest) = files.split_at_mut(i);
            rest[0]
                .created_dirs
                .retain(|d| !done.iter().any(|f| f.created_dirs.contains(d)));
        }
        for s in &plan.steps {
            if let Step::CreateImage { path, .. } | Step::CreateIso { path, .. } = s {
                // a new image never replaces anything
                check_writable(&self.root, path).map_err(TxnError::Refused)?;
                if std::fs::symlink_metadata(self.root.join(path)).is_ok() {
                    return Err(TxnError::ChangedSincePlan {
                        path: path.display().to_string(),
                    });
                }
            }
        }
        let record = |action: Action, argv: Vec<String>, undo: Option<Vec<String>>| CommandRecord {
            action,
            created: None,
            kept: None,
            argv,
            undo,
            state: RunState::Pending,
            output: None,
            revert_state: None,
            revert_output: None,
        };
        let commands: Vec<CommandRecord> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Run { argv, undo, .. } => {
                    Some(record(Action::Regenerate, argv.clone(), undo.clone()))
                }
                Step::CreateImage {
                    path, format, size, ..
                } => Some(record(
                    Action::CreateImage { path: path.clone() },
                    crate::plan::create_image_argv(path, format, size),
                    None,
                )),
                Step::CreateIso {
                    path,
                    staging,
                    volume,
                    ..
                } => Some(record(
                    Action::CreateImage { path: path.clone() },
                    crate::plan::create_iso_argv(path, staging, volume),
                    None,
                )),
                Step::Define {
                    connect, name, xml, ..
                } => Some(record(
                    Action::Define {
                        connect: connect.clone(),
                        name: name.clone(),
                    },
                    crate::plan::define_argv(connect, xml),
                    Some(crate::plan::undefine_argv(connect, name)),
                )),
                Step::WriteFile { .. } | Step::KernelParams { .. } => None,
            })
            .collect();
        let mut j = Journal::new(&self.root, plan, files, commands);
        let created = match self.create(&j, &afters) {
            Ok(()) => Ok(()),
            // renamed into place, not made durable: on record, so reverted
            Err(e) if self.root.join(self.txn_dir(&j.id)).exists() => Err(e),
            Err(cause) => {
                return Err(TxnError::Failed {
                    id: j.id.clone(),
                    host: HostState::Unchanged,
                    phase: Phase::Apply,
                    cause: Box::new(cause),
                });
            }
        };
        b.pass();
        match created.and_then(|()| self.apply_steps(&mut j, &afters, runner, &mut b)) {
            Ok(()) => Ok(j),
            Err(cause) => {
                // Revert what was done; the error says how far that got.
                let host = match self.revert(&mut j, Revert::ApplyFailed, runner) {
                    Ok(()) => HostState::Restored,
                    Err(_) => unfinished_state(&j),
                };
                Err(TxnError::Failed {
                    id: j.id.clone(),
                    host,
                    phase: Phase::Apply,
                    cause: Box::new(cause),
                })
            }
        }
    }

    /// Build the transaction folder under a hidden name (backups, exliar's
    /// versions, the journal) and rename it into place.
    fn create(&self, j: &Journal, afters: &[&[u8]]) -> Result<(), TxnError> {
        let tmp = Path::new(STATE_DIR)
            .join("txn")
            .join(format!(".new-{}", j.id));
        let r = (|| {
            ensure_dir(&self.root, &tmp).map_err(TxnError::Write)?;
            for (i, f) in j.files.iter().enumerate() {
                if f.existed {
                    let original = self.read_target(&f.path)?.map(|n| n.0).unwrap_or_default();
                    if Some(sha256(&original)) != f.before_sha256 {
                        return Err(TxnError::ChangedSincePlan {
                            path: f.path.display().to_string(),
                        });
                    }
                    let backup = tmp.join("backup").join(i.to_string());
                    atomic_write_owned(&self.root, &backup, &original, 0o600, None)
                        .map_err(TxnError::Write)?;
                }
                // Keep exliar's version too, so that a later rollback can
                // show how someone else changed the file since.
                let mine = tmp.join("after").join(i.to_string());
                atomic_write_owned(&self.root, &mine, afters[i], 0o600, None)
                    .map_err(TxnError::Write)?;
            }
            self.save_at(&tmp, j)?;
            rename_durable(&self.root.join(&tmp), &self.root.join(self.txn_dir(&j.id)))
                .map_err(TxnError::Write)
        })();
        if r.is_err() {
            let _ = remove_tree(&self.root.join(&tmp));
        }
        r
    }

    fn apply_steps(
        &self,
        j: &mut Journal,
        afters: &[&[u8]],
        runner: &mut dyn CommandRunner,
        b: &mut Boundaries,
    ) -> Result<(), TxnError> {
        for (i, after) in afters.iter().enumerate() {
            let rec = j.files[i].clone();
            j.files[i].state = FileState::BackedUp;
            self.save(j)?;
            b.pass();
            let owner = rec.uid.zip(rec.gid);
            atomic_write_owned(&self.root, &rec.path, after, rec.mode, owner)
                .map_err(TxnError::Write)?;
            b.pass();
            j.files[i].state = FileState::Written;
            self.save(j)?;
            b.pass();
        }
        for i in 0..j.commands.len() {
            let argv = j.commands[i].argv.clone();
            j.commands[i].state = RunState::Running;
            self.save(j)?;
            match runner.run(&self.root, &argv) {
                Ok(out) => {
                    j.commands[i].state = RunState::Done;
                    j.commands[i].output = Some(tail(&out));
                    if let Action::CreateImage { path } = &j.commands[i].action {
                        j.commands[i].created = fingerprint(&self.root.join(path), None);
                    }
                    self.save(j)?;
                    b.pass();
                }
                Err(msg) => {
                    j.commands[i].state = RunState::Failed;
                    j.commands[i].output = Some(tail(&msg));
                    // best effort: the revert saves the journal again
                    let _ = self.save(j);
                    return Err(TxnError::Command {
                        command: argv.join(" "),
                        message: msg,
                    });
                }
            }
        }
        j.status = Status::Applied;
        self.save(j)
    }

    /// Restore file `i` of `j` to its original (idempotent: a file already
    /// back is not written again) and remove the folders writing it created
    /// when they are empty again; sweep a temporary file left beside it.
    fn restore_file(&self, j: &Journal, i: usize) -> Result<(), TxnError> {
        let f = &j.files[i];
        remove_tmp(&self.root, &f.path).map_err(TxnError::Write)?;
        if f.existed {
            // unreadable now (a link put there since): written over below
            let now = self.read_target(&f.path).unwrap_or_default();
            let back = now
                .as_ref()
                .is_some_and(|n| Some(sha256(&n.0)) == f.before_sha256 && n.1 == f.mode & 0o7777);
            if !back {
                let backup = self
                    .root
                    .join(self.txn_dir(&j.id))
                    .join("backup")
                    .join(i.to_string());
                let bytes = read_capped(&backup).map_err(io_at(&backup))?;
                if Some(sha256(&bytes)) != f.before_sha256 {
                    return Err(TxnError::Journal {
                        path: backup.display().to_string(),
                        message: "backup does not match its recorded sha256".to_string(),
                    });
                }
                atomic_write_owned(&self.root, &f.path, &bytes, f.mode, f.uid.zip(f.gid))
                    .map_err(TxnError::Write)?;
            }
        } else {
            remove_file(&self.root, &f.path).map_err(TxnError::Write)?;
        }
        for d in f.created_dirs.iter().rev() {
            remove_empty_dir(&self.root, d).map_err(TxnError::Write)?;
        }
        Ok(())
    }

    /// Undo `j` from wherever it is: announce `rolling-back` (with `why`,
    /// unless it is already rolling back), restore every touched file (last
    /// first), run again from the originals every command that ran, and end
    /// in the state `why` asks for. Every step is journaled first, so a
    /// crash anywhere leaves a journal `recover` finishes.
    fn revert(
        &self,
        j: &mut Journal,
        why: Revert,
        runner: &mut dyn CommandRunner,
    ) -> Result<(), TxnError> {
        if j.status != Status::RollingBack {
            j.status = Status::RollingBack;
            j.revert = Some(why);
            self.save(j)?;
        }
        for i in (0..j.files.len()).rev() {
            if matches!(j.files[i].state, FileState::Pending | FileState::Restored) {
                continue;
            }
            self.restore_file(j, i)?;
            j.files[i].state = FileState::Restored;
            self.save(j)?;
        }
        for i in 0..j.commands.len() {
            let c = j.commands[i].clone();
            if c.state == RunState::Pending || c.revert_state == Some(RunState::Done) {
                continue;
            }
            match c.action.clone() {
                Action::Regenerate => {}
                Action::CreateImage { path } => {
                    j.commands[i].revert_state = Some(RunState::Running);
                    self.save(j)?;
                    let kept = self.undo_image(&path, c.state, c.created.as_ref())?;
                    j.commands[i].revert_state = Some(RunState::Done);
                    j.commands[i].revert_output = Some(match &kept {
                        Some(why) => why.clone(),
                        None => format!("removed /{}", path.display()),
                    });
                    j.commands[i].kept = kept;
                    self.save(j)?;
                    continue;
                }
                Action::Define { connect, name } => {
                    // a define that failed defined nothing; one a crash
                    // interrupted may or may not have: ask libvirt
                    let exists = c.state != RunState::Failed
                        && runner
                            .run(&self.root, &crate::plan::dominfo_argv(&connect, &name))
                            .is_ok();
                    if !exists {
                        j.commands[i].revert_state = Some(RunState::Done);
                        j.commands[i].revert_output =
                            Some(format!("domain {name} is not defined: nothing to undo"));
                        self.save(j)?;
                        continue;
                    }
                }
            }
            let argv = c.undo.clone().unwrap_or_else(|| c.argv.clone());
            j.commands[i].revert_state = Some(RunState::Running);
            self.save(j)?;
            match runner.run(&self.root, &argv) {
                Ok(out) => {
                    j.commands[i].revert_state = Some(RunState::Done);
                    j.commands[i].revert_output = Some(tail(&out));
                    self.save(j)?;
                }
                Err(msg) => {
                    j.commands[i].revert_state = Some(RunState::Failed);
                    j.commands[i].revert_output = Some(tail(&msg));
                    let _ = self.save(j);
                    return Err(TxnError::Command {
                        command: argv.join(" "),
                        message: msg,
                    });
                }
            }
        }
        j.status = j.revert.unwrap_or(why).end();
        self.save(j)
    }

    /// Undo the creation of the image at `path`: remove it, unless it was
    /// written to since exliar created it (then keep it, and say why,
    /// unless [`Store::delete_disks`]). An image whose creation failed or
    /// was interrupted is exliar's (the plan refused an existing path, and
    /// no VM was defined on it yet): removed.
    fn undo_image(
        &self,
        path: &Path,
        state: RunState,
        created: Option<&Fingerprint>,
    ) -> Result<Option<String>, TxnError> {
        let full = self.root.join(path);
        let now = fingerprint(&full, created);
        let written = state == RunState::Done
            && match (created, &now) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(c), Some(n)) => c != n,
            };
        if now.is_some() && written && !self.delete_disks {
            return Ok(Some(format!(
                "kept /{}: it was written to since exliar created it (remove it yourself, or roll back with --delete-disks)",
                path.display()
            )));
        }
        remove_file(&self.root, path).map_err(TxnError::Write)?;
        Ok(None)
    }

    /// Remove exliar's temporary files beside every file the journals name
    /// (what a write killed before its rename leaves).
    fn sweep_targets(&self, js: &[Journal]) -> Result<(), TxnError> {
        for j in js {
            for f in &j.files {
                remove_tmp(&self.root, &f.path).map_err(|e| TxnError::Failed {
                    id: j.id.clone(),
                    host: HostState::PartlyChanged,
                    phase: Phase::Recover,
                    cause: Box::new(TxnError::Write(e)),
                })?;
            }
        }
        Ok(())
    }

    /// Finish every unfinished transaction: an interrupted apply is
    /// reverted (every file back to its original, commands that ran run
    /// again), an interrupted rollback (or revert) is finished. Returns the
    /// transactions finished, newest first.
    pub fn recover(&self, runner: &mut dyn CommandRunner) -> Result<Vec<Journal>, TxnError> {
        let all = self.journals()?;
        self.sweep_targets(&all)?;
        let mut done = Vec::new();
        for mut j in all.into_iter().rev().filter(|j| j.status.unfinished()) {
            let was_applying = j.status == Status::Applying;
            let why = j.revert.unwrap_or(Revert::Recover);
            if let Err(cause) = self.revert(&mut j, why, runner) {
                return Err(TxnError::Failed {
                    id: j.id.clone(),
                    host: unfinished_state(&j),
                    phase: if was_applying {
                        Phase::Recover
                    } else {
                        Phase::Rollback
                    },
                    cause: Box::new(cause),
                });
            }
            done.push(j);
        }
        Ok(done)
    }

    /// The transaction `which` names: an id, or `last` (the newest applied).
    pub fn find(&self, which: &str) -> Result<Journal, TxnError> {
        if which == "last" {
            return self
                .journals()?
                .into_iter()
                .rev()
                .find(|j| j.status == Status::Applied)
                .ok_or_else(|| {
                    TxnError::NoSuchTransaction("(no applied transaction)".to_string())
                });
        }
        self.load(which)
    }

    /// Undo an applied transaction: byte-identical originals, then the
    /// regeneration commands again, journaled as `rolling-back` step by
    /// step. Refuses when a managed file was changed by someone else since,
    /// unless `force`.
    pub fn rollback(
        &self,
        which: &str,
        force: bool,
        runner: &mut dyn CommandRunner,
    ) -> Result<Journal, TxnError> {
        if which != "last" && !valid_id(which) {
            return Err(TxnError::BadId(which.to_string()));
        }
        if let Some(j) = self.unfinished()? {
            return Err(TxnError::Unfinished { id: j.id });
        }
        let mut j = self.find(which)?;
        if j.status != Status::Applied {
            return Err(TxnError::NotApplied {
                id: j.id.clone(),
                status: j.status.to_string(),
            });
        }
        let mut diffs = String::new();
        for (i, f) in j.files.iter().enumerate() {
            let now = self.read_target(&f.path)?;
            let now_sha = now.as_ref().map(|n| sha256(&n.0));
            if now_sha.as_deref() != Some(f.after_sha256.as_str()) {
                let expected = read_capped(
                    &self
                        .root
                        .join(self.txn_dir(&j.id))
                        .join("after")
                        .join(i.to_string()),
                )
                .ok();
                diffs.push_str(&crate::plan::unified_diff(
                    &f.path,
                    expected.as_deref(),
                    now.as_ref().map_or(&[][..], |n| &n.0),
                ));
                if now.is_none() {
                    diffs.push_str(&format!("/{} was removed\n", f.path.display()));
                }
            }
        }
        if !diffs.is_empty() && !force {
            return Err(TxnError::ChangedSinceApply { diffs });
        }
        // Files the user wrote over since: restore them too (--force).
        for f in &mut j.files {
            f.state = FileState::Written;
        }
        match self.revert(&mut j, Revert::Rollback, runner) {
            Ok(()) => Ok(j),
            Err(cause) => {
                // What the journal says now is what `recover` will see.
                let on_record = self.load(&j.id).map(|d| d.status);
                let host = if matches!(on_record, Ok(Status::Applied)) {
                    // the announcement itself failed: nothing was touched
                    HostState::Unchanged
                } else {
                    unfinished_state(&j)
                };
                Err(TxnError::Failed {
                    id: j.id.clone(),
                    host,
                    phase: Phase::Rollback,
                    cause: Box::new(cause),
                })
            }
        }
    }
}

/// An image's size, modification time and (when small, or when `like`
/// has one and the size is the same) its sha256; `None` when it is not
/// there (or not a regular file).
fn fingerprint(path: &Path, like: Option<&Fingerprint>) -> Option<Fingerprint> {
    const HASHED: u64 = 64 << 20;
    let md = std::fs::symlink_metadata(path).ok()?;
    if !md.file_type().is_file() {
        return None;
    }
    let size = md.len();
    let same_size = like.is_none_or(|l| l.size == size);
    let sha256 = if size <= HASHED && same_size {
        let mut h = Sha256::new();
        let mut f = std::fs::File::open(path).ok()?;
        io::copy(&mut f, &mut h).ok()?;
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    } else {
        String::new()
    };
    use std::os::unix::fs::MetadataExt as _;
    Some(Fingerprint {
        size,
        mtime_ns: md
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(md.mtime_nsec()),
        sha256,
    })
}

/// The state of the host when undoing `j` stopped part-way: its files
/// all back (only the regeneration is left) or not.
fn unfinished_state(j: &Journal) -> HostState {
    if j.files
        .iter()
        .all(|f| matches!(f.state, FileState::Pending | FileState::Restored))
    {
        HostState::RegenerationPending
    } else {
        HostState::PartlyChanged
    }
}

fn tail(s: &str) -> String {
    let t = s.trim();
    if t.len() <= 2000 {
        return t.to_string();
    }
    let mut start = t.len() - 2000;
    while !t.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &t[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Rec {
        ran: Vec<Vec<String>>,
        fail: Option<String>,
        /// Fail only once.
        once: bool,
    }

    impl CommandRunner for Rec {
        fn run(&mut self, _t: &Path, argv: &[String]) -> Result<String, String> {
            self.ran.push(argv.to_vec());
            match &self.fail {
                Some(f) if argv.first() == Some(f) => {
                    if self.once {
                        self.fail = None;
                    }
                    Err("boom".to_string())
                }
                _ => Ok("ok".to_string()),
            }
        }
    }

    fn write_step(path: &str, before: Option<&[u8]>, after: &[u8]) -> Step {
        Step::WriteFile {
            path: PathBuf::from(path),
            before: before.map(<[u8]>::to_vec),
            after: after.to_vec(),
            mode: 0o644,
            why: "test".to_string(),
        }
    }

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(t.path().join("etc/modprobe.d")).expect("mkdir");
        std::fs::write(t.path().join("etc/mkinitcpio.conf"), b"MODULES=(amdgpu)\n").expect("write");
        t
    }

    fn plan(root: &Path) -> Plan {
        let mut p = Plan::new(root.display().to_string());
        p.steps.push(write_step(
            "etc/mkinitcpio.conf",
            Some(b"MODULES=(amdgpu)\n"),
            b"MODULES=(vfio_pci vfio vfio_iommu_type1 amdgpu)\n",
        ));
        p.steps.push(write_step(
            "etc/modprobe.d/exliar-vfio.conf",
            None,
            b"options vfio-pci ids=1002:67df\n",
        ));
        p.steps.push(Step::Run {
            argv: vec!["mkinitcpio".to_string(), "-P".to_string()],
            undo: None,
            why: "regenerate".to_string(),
        });
        p
    }

    #[test]
    fn apply_then_rollback_is_byte_identical() -> Result<(), TxnError> {
        let t = tree();
        let store = Store::open(t.path())?;
        let mut rec = Rec::default();
        let j = store.apply(&plan(t.path()), &mut rec)?;
        assert_eq!(j.status, Status::Applied);
        assert_eq!(
            std::fs::read(t.path().join("etc/mkinitcpio.conf"))
                .ok()
                .as_deref(),
            Some(&b"MODULES=(vfio_pci vfio vfio_iommu_type1 amdgpu)\n"[..])
        );
        assert_eq!(rec.ran.len(), 1);
        let j = store.rollback("last", false, &mut rec)?;
        assert_eq!(j.status, Status::RolledBack);
        assert_eq!(
            std::fs::read(t.path().join("etc/mkinitcpio.conf"))
                .ok()
                .as_deref(),
            Some(&b"MODULES=(amdgpu)\n"[..])
        );
        assert!(!t.path().join("etc/modprobe.d/exliar-vfio.conf").exists());
        assert_eq!(rec.ran.len(), 2, "regeneration re-run on rollback");
        assert!(matches!(
            store.rollback("last", false, &mut rec),
            Err(TxnError::NoSuchTransaction(_))
        ));
        Ok(())
    }

    #[test]
    fn rollback_refuses_foreign_changes_unless_forced() -> Result<(), TxnError> {
        let t = tree();
        let store = Store::open(t.path())?;
        let mut rec = Rec::default();
        store.apply(&plan(t.path()), &mut rec)?;
        std::fs::write(
            t.path().join("etc/modprobe.d/exliar-vfio.conf"),
            b"edited by hand\n",
        )
        .map_err(io_at(t.path()))?;
        match store.rollback("last", false, &mut rec) {
            Err(TxnError::ChangedSinceApply { diffs }) => {
                assert!(diffs.contains("+edited by hand"), "{diffs}");
                assert!(diffs.contains("-options vfio-pci ids=1002:67df"), "{diffs}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        store.rollback("last", true, &mut rec)?;
        assert!(!t.path().join("etc/modprobe.d/exliar-vfio.conf").exists());
        Ok(())
    }

    #[test]
    fn changed_since_plan_is_refused_before_anything_is_written() -> Result<(), TxnError> {
        let t = tree();
        let p = plan(t.path());
        std::fs::write(t.path().join("etc/mkinitcpio.conf"), b"MODULES=(nvidia)\n")
            .map_err(io_at(t.path()))?;
        let store = Store::open(t.path())?;
        assert!(matches!(
            store.apply(&p, &mut Rec::default()),
            Err(TxnError::ChangedSincePlan { .. })
        ));
        assert!(!t.path().join("etc/modprobe.d/exliar-vfio.conf").exists());
        assert!(store.journals()?.is_empty());
        Ok(())
    }

    #[test]
    fn failed_command_restores_files() -> Result<(), TxnError> {
        let t = tree();
        let store = Store::open(t.path())?;
        let mut rec = Rec {
            fail: Some("mkinitcpio".to_string()),
            once: true,
            ..Rec::default()
        };
        match store.apply(&plan(t.path()), &mut rec) {
            Err(TxnError::Failed { host, cause, .. }) => {
                assert_eq!(host, HostState::Restored);
                assert!(matches!(*cause, TxnError::Command { .. }), "{cause}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        assert_eq!(
            std::fs::read(t.path().join("etc/mkinitcpio.conf"))
                .ok()
                .as_deref(),
            Some(&b"MODULES=(amdgpu)\n"[..])
        );
        assert!(!t.path().join("etc/modprobe.d/exliar-vfio.conf").exists());
        assert_eq!(store.journals()?[0].status, Status::Failed);
        assert_eq!(
            rec.ran.len(),
            2,
            "the failed command runs again from the originals"
        );

        // A command failing every time: the files are back, the
        // regeneration is not; the transaction waits for `recover`.
        rec.fail = Some("mkinitcpio".to_string());
        rec.once = false;
        match store.apply(&plan(t.path()), &mut rec) {
            Err(e) => assert_eq!(e.host_state(), HostState::RegenerationPending, "{e}"),
            Ok(j) => panic!("applied: {j:?}"),
        }
        assert_eq!(
            std::fs::read(t.path().join("etc/mkinitcpio.conf"))
                .ok()
                .as_deref(),
            Some(&b"MODULES=(amdgpu)\n"[..])
        );
        assert!(store.unfinished()?.is_some());
        assert!(store.recover(&mut NoRunner)?.len() == 1);
        assert_eq!(store.journals()?[1].status, Status::Failed);
        Ok(())
    }

    #[test]
    fn one_lock_at_a_time() -> Result<(), TxnError> {
        let t = tree();
        let _a = Store::open(t.path())?;
        assert!(matches!(
            Store::open(t.path()),
            Err(TxnError::Locked { .. })
        ));
        Ok(())
    }

    #[test]
    fn keeps_mode_of_existing_files() -> Result<(), TxnError> {
        use std::os::unix::fs::PermissionsExt;
        let t = tree();
        let f = t.path().join("etc/mkinitcpio.conf");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).map_err(io_at(&f))?;
        let store = Store::open(t.path())?;
        store.apply(&plan(t.path()), &mut Rec::default())?;
        let mode = std::fs::metadata(&f)
            .map_err(io_at(&f))?
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o600);
        Ok(())
    }
    /// A rollback whose regeneration fails is journaled `rolling-back` with
    /// every file restored, not left `applied`; recover finishes it.
    #[test]
    fn rollback_with_failing_regeneration_stays_rolling_back() -> Result<(), TxnError> {
        let t = tree();
        let store = Store::open(t.path())?;
        let mut rec = Rec::default();
        store.apply(&plan(t.path()), &mut rec)?;
        rec.fail = Some("mkinitcpio".to_string());
        match store.rollback("last", false, &mut rec) {
            Err(e @ TxnError::Failed { .. }) => {
                assert_eq!(e.host_state(), HostState::RegenerationPending);
                assert!(e.to_string().contains("exliar recover"), "{e}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        let j = &store.journals()?[0];
        assert_eq!(j.status, Status::RollingBack);
        assert!(j.files.iter().all(|f| f.state == FileState::Restored));
        assert_eq!(
            std::fs::read(t.path().join("etc/mkinitcpio.conf"))
                .ok()
                .as_deref(),
            Some(&b"MODULES=(amdgpu)\n"[..])
        );
        rec.fail = None;
        let done = store.recover(&mut rec)?;
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].status, Status::RolledBack);
        assert!(store.recover(&mut rec)?.is_empty());
        Ok(())
    }

    /// Old journals (before `rolling-back`, `running`, `revert`) still read.
    #[test]
    fn reads_journals_without_the_new_fields() {
        let old = r#"{"schema":"exliar.journal/1","id":"20261122T012030Z","created_unix":1795310430,
            "target":"/","gpu":null,"functions":[],"status":"applied",
            "files":[{"path":"etc/x","existed":false,"mode":420,"uid":null,"gid":null,
              "before_sha256":null,"after_sha256":"00","state":"written"}],
            "commands":[{"argv":["true"],"state":"done","output":"ok"}],
            "kernel_params_add":[],"kernel_params_remove":[]}"#;
        let j: Journal = serde_json::from_str(old).expect("old journal");
        assert_eq!(j.revert, None);
        assert_eq!(j.commands[0].revert_state, None);
        assert_eq!(j.files[0].created_dirs, Vec::<PathBuf>::new());
    }

    /// A runner standing in for qemu-img and virsh: `qemu-img create`
    /// writes a small file at its path (inside the test root), `virsh
    /// define` records the domain, `dominfo` answers from that record.
    #[derive(Default)]
    struct Virt {
        root: PathBuf,
        defined: Vec<String>,
        ran: Vec<Vec<String>>,
        fail_define: bool,
    }

    impl CommandRunner for Virt {
        fn run(&mut self, _t: &Path, argv: &[String]) -> Result<String, String> {
            self.ran.push(argv.to_vec());
            let a: Vec<&str> = argv.iter().map(String::as_str).collect();
            match a.as_slice() {
                ["qemu-img", "create", "-q", "-f", _, path, _] => {
                    let p = self.root.join(path.trim_start_matches('/'));
                    std::fs::write(&p, b"QFI\xfb fresh").map_err(|e| e.to_string())?;
                    Ok(String::new())
                }
                ["virsh", "--connect", _, "define", _] if self.fail_define => {
                    Err("error: bad XML".into())
                }
                ["virsh", "--connect", _, "define", _] => {
                    self.defined.push("vm1".into());
                    Ok(String::new())
                }
                ["virsh", "--connect", _, "dominfo", name] => {
                    if self.defined.iter().any(|d| d == name) {
                        Ok(String::new())
                    } else {
                        Err("error: failed to get domain".into())
                    }
                }
                ["virsh", "--connect", _, "undefine", "--nvram", name] => {
                    let n = self.defined.len();
                    self.defined.retain(|d| d != name);
                    if self.defined.len() < n {
                        Ok(String::new())
                    } else {
                        Err("error: failed to get domain".into())
                    }
                }
                _ => Err(format!("unexpected {argv:?}")),
            }
        }
    }

    fn vm_plan(root: &Path) -> Plan {
        let mut p = Plan::new(root.display().to_string());
        p.subject = crate::plan::Subject::Vm {
            name: "vm1".into(),
            connect: "qemu:///system".into(),
        };
        p.steps
            .push(write_step("etc/exliar/vms/vm1.xml", None, b"<domain/>\n"));
        p.steps.push(Step::CreateImage {
            path: PathBuf::from("images/vm1.qcow2"),
            format: "qcow2".into(),
            size: "1G".into(),
            why: "disk".into(),
        });
        p.steps.push(Step::Define {
            connect: "qemu:///system".into(),
            name: "vm1".into(),
            xml: PathBuf::from("etc/exliar/vms/vm1.xml"),
            why: "define".into(),
        });
        p
    }

    fn vm_tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(t.path().join("images")).expect("mkdir");
        t
    }

    #[test]
    fn vm_create_then_rollback_removes_definition_image_and_file() -> Result<(), TxnError> {
        let t = vm_tree();
        let s = Store::open(t.path())?;
        let mut r = Virt {
            root: t.path().to_path_buf(),
            ..Default::default()
        };
        let j = s.apply(&vm_plan(t.path()), &mut r)?;
        assert_eq!(r.defined, ["vm1"]);
        assert!(t.path().join("images/vm1.qcow2").exists());
        assert!(j.commands[0].created.is_some(), "{j:?}");
        assert_eq!(j.subject.as_ref().map(|_| ()), Some(()));
        let back = s.rollback("last", false, &mut r)?;
        assert_eq!(back.status, Status::RolledBack);
        assert!(r.defined.is_empty());
        assert!(!t.path().join("images/vm1.qcow2").exists());
        assert!(!t.path().join("etc/exliar/vms/vm1.xml").exists());
        assert!(
            !t.path().join("etc/exliar").exists(),
            "created folders go too"
        );
        Ok(())
    }

    #[test]
    fn rollback_keeps_an_image_written_to_since_unless_delete_disks() -> Result<(), TxnError> {
        for delete in [false, true] {
            let t = vm_tree();
            let mut s = Store::open(t.path())?;
            let mut r = Virt {
                root: t.path().to_path_buf(),
                ..Default::default()
            };
            s.apply(&vm_plan(t.path()), &mut r)?;
            // the guest wrote to its disk
            std::fs::write(
                t.path().join("images/vm1.qcow2"),
                b"QFI\xfb installed windows",
            )
            .expect("write");
            s.delete_disks = delete;
            let back = s.rollback("last", false, &mut r)?;
            assert_eq!(back.status, Status::RolledBack);
            assert!(r.defined.is_empty());
            assert_eq!(t.path().join("images/vm1.qcow2").exists(), !delete);
            let kept = back.commands[0].kept.as_deref().unwrap_or_default();
            assert_eq!(kept.contains("written to since"), !delete, "{kept}");
        }
        Ok(())
    }

    #[test]
    fn failed_define_reverts_the_image_and_undefines_nothing() -> Result<(), TxnError> {
        let t = vm_tree();
        let s = Store::open(t.path())?;
        let mut r = Virt {
            root: t.path().to_path_buf(),
            fail_define: true,
            ..Default::default()
        };
        let e = s
            .apply(&vm_plan(t.path()), &mut r)
            .expect_err("define fails");
        assert_eq!(e.host_state(), HostState::Restored, "{e}");
        assert!(!t.path().join("images/vm1.qcow2").exists());
        assert!(!t.path().join("etc/exliar/vms/vm1.xml").exists());
        assert!(
            !r.ran.iter().any(|a| a.iter().any(|x| x == "undefine")),
            "{:?}",
            r.ran
        );
        Ok(())
    }

    #[test]
    fn an_existing_image_path_is_refused_before_anything_is_written() -> Result<(), TxnError> {
        let t = vm_tree();
        std::fs::write(t.path().join("images/vm1.qcow2"), b"someone's").expect("write");
        let s = Store::open(t.path())?;
        let mut r = Virt {
            root: t.path().to_path_buf(),
            ..Default::default()
        };
        let e = s.apply(&vm_plan(t.path()), &mut r).expect_err("refused");
        assert!(matches!(e, TxnError::ChangedSincePlan { .. }), "{e}");
        assert!(r.ran.is_empty());
        assert_eq!(
            std::fs::read(t.path().join("images/vm1.qcow2")).expect("read"),
            b"someone's"
        );
        Ok(())
    }

    #[test]
    fn recover_of_an_interrupted_create_undefines_only_what_exists() -> Result<(), TxnError> {
        let t = vm_tree();
        let s = Store::open(t.path())?;
        let mut r = Virt {
            root: t.path().to_path_buf(),
            ..Default::default()
        };
        let mut j = s.apply(&vm_plan(t.path()), &mut r)?;
        // as if killed while `virsh define` ran, before it took effect
        j.status = Status::Applying;
        j.commands[1].state = RunState::Running;
        s.save(&j)?;
        r.defined.clear();
        let done = s.recover(&mut r)?;
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].status, Status::Recovered);
        assert!(!t.path().join("images/vm1.qcow2").exists());
        assert!(
            !r.ran.iter().any(|a| a.iter().any(|x| x == "undefine")),
            "{:?}",
            r.ran
        );
        Ok(())
    }
}
