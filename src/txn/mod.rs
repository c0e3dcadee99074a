//! Transactions: apply a [`Plan`] so that it can always be undone.
//!
//! Under the target's state directory (`var/lib/exliar`) each transaction
//! has a journal and the original bytes of every file it touches. The
//! journal is written (atomically) before and after every step, so an
//! interrupted apply is found by the next run and `recover` returns every
//! file to its original, byte for byte. One lock serialises exliar runs.

mod journal;

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::host::write::{
    atomic_write_owned, ensure_dir, missing_dirs, remove_empty_dir, remove_file,
};
use crate::plan::{Plan, Step};

pub use journal::{CommandRecord, FileRecord, FileState, Journal, RunState, Status};

/// The state directory, relative to the target root.
pub const STATE_DIR: &str = "var/lib/exliar";

#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("another exliar run holds the lock {path}")]
    Locked { path: String },
    #[error(
        "transaction {id} was interrupted; run `exliar recover` to return every file to its original first"
    )]
    Unfinished { id: String },
    #[error("/{path} changed since the plan was made; plan again")]
    ChangedSincePlan { path: String },
    #[error("no transaction {0}")]
    NoSuchTransaction(String),
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

impl CommandRunner for SystemRunner {
    fn run(&mut self, target: &Path, argv: &[String]) -> Result<String, String> {
        let Some((prog, args)) = argv.split_first() else {
            return Ok(String::new());
        };
        let mut cmd = if target == Path::new("/") {
            let mut c = std::process::Command::new(prog);
            c.args(args);
            c
        } else {
            let mut c = std::process::Command::new("chroot");
            c.arg(target).arg(prog).args(args);
            c
        };
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

/// Every journal under `root`, oldest first, read without the lock: for
/// `Store` (which holds it) and for read-only commands (`plan`, `status`).
pub fn read_journals(root: &Path) -> Result<Vec<Journal>, TxnError> {
    let dir = root.join(STATE_DIR).join("txn");
    let mut ids: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_at(&dir)(e)),
    };
    ids.sort();
    ids.iter().map(|id| load_journal(root, id)).collect()
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
        if e.kind() == io::ErrorKind::NotFound {
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

/// The id of an interrupted transaction under `root` (read without the lock).
pub fn unfinished_readonly(root: &Path) -> Option<String> {
    read_journals(root)
        .ok()?
        .into_iter()
        .find(|j| j.status == Status::Applying)
        .map(|j| j.id)
}

/// The newest applied transaction under `root` (read without the lock).
pub fn last_applied_readonly(root: &Path) -> Option<Journal> {
    read_journals(root)
        .ok()?
        .into_iter()
        .rev()
        .find(|j| j.status == Status::Applied)
}

/// A file as it is now: bytes, mode, uid, gid.
type Current = (Vec<u8>, u32, u32, u32);

/// The transaction store of one target root.
pub struct Store {
    root: PathBuf,
    _lock: OwnedFd,
}

impl Store {
    /// Open the store and take the lock.
    pub fn open(root: &Path) -> Result<Self, TxnError> {
        let dir = ensure_dir(root, Path::new(STATE_DIR)).map_err(io_at(&root.join(STATE_DIR)))?;
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
        Ok(Self {
            root: root.to_path_buf(),
            _lock: fd,
        })
    }

    fn txn_dir(&self, id: &str) -> PathBuf {
        Path::new(STATE_DIR).join("txn").join(id)
    }

    /// Every journal, oldest first.
    pub fn journals(&self) -> Result<Vec<Journal>, TxnError> {
        read_journals(&self.root)
    }

    pub fn load(&self, id: &str) -> Result<Journal, TxnError> {
        load_journal(&self.root, id)
    }

    fn save(&self, j: &Journal) -> Result<(), TxnError> {
        let rel = self.txn_dir(&j.id).join("journal.json");
        let mut bytes = serde_json::to_vec_pretty(j).map_err(|e| TxnError::Journal {
            path: rel.display().to_string(),
            message: e.to_string(),
        })?;
        bytes.push(b'\n');
        atomic_write_owned(&self.root, &rel, &bytes, 0o600, None)
            .map_err(io_at(&self.root.join(&rel)))
    }

    /// A transaction left in `applying` by a crash, if any.
    pub fn unfinished(&self) -> Result<Option<Journal>, TxnError> {
        Ok(self
            .journals()?
            .into_iter()
            .find(|j| j.status == Status::Applying))
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

    /// Apply a plan. Commands run after every file is written; if one fails,
    /// the files are restored and the commands run again, then the error is
    /// returned.
    pub fn apply(&self, plan: &Plan, runner: &mut dyn CommandRunner) -> Result<Journal, TxnError> {
        if let Some(j) = self.unfinished()? {
            return Err(TxnError::Unfinished { id: j.id });
        }
        let mut b = Boundaries::new();
        // Verify every file is as planned before touching anything.
        let mut files = Vec::new();
        for s in &plan.steps {
            if let Step::WriteFile {
                path,
                before,
                after,
                mode,
                ..
            } = s
            {
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
                    created_dirs: Vec::new(),
                });
            }
        }
        let commands: Vec<CommandRecord> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Run { argv, undo, .. } => Some(CommandRecord {
                    argv: argv.clone(),
                    undo: undo.clone(),
                    state: RunState::Pending,
                    output: None,
                }),
                _ => None,
            })
            .collect();
        let mut j = Journal::new(&self.root, plan, files, commands);
        self.save(&j)?;
        b.pass();

        let afters: Vec<&Vec<u8>> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::WriteFile { after, .. } => Some(after),
                _ => None,
            })
            .collect();
        for (i, after) in afters.iter().enumerate() {
            let rec = j.files[i].clone();
            if rec.existed {
                let original = self
                    .read_target(&rec.path)?
                    .map(|n| n.0)
                    .unwrap_or_default();
                let backup = self.txn_dir(&j.id).join("backup").join(i.to_string());
                atomic_write_owned(&self.root, &backup, &original, 0o600, None)
                    .map_err(io_at(&self.root.join(&backup)))?;
            }
            // Keep exliar's version too, so that a later rollback can show
            // how someone else changed the file since.
            let mine = self.txn_dir(&j.id).join("after").join(i.to_string());
            atomic_write_owned(&self.root, &mine, after, 0o600, None)
                .map_err(io_at(&self.root.join(&mine)))?;
            j.files[i].state = FileState::BackedUp;
            j.files[i].created_dirs = missing_dirs(&self.root, &rec.path);
            self.save(&j)?;
            b.pass();
            let owner = rec.uid.zip(rec.gid);
            atomic_write_owned(&self.root, &rec.path, after, rec.mode, owner)
                .map_err(io_at(&self.root.join(&rec.path)))?;
            b.pass();
            j.files[i].state = FileState::Written;
            self.save(&j)?;
            b.pass();
        }
        for i in 0..j.commands.len() {
            let argv = j.commands[i].argv.clone();
            match runner.run(&self.root, &argv) {
                Ok(out) => {
                    j.commands[i].state = RunState::Done;
                    j.commands[i].output = Some(tail(&out));
                    self.save(&j)?;
                    b.pass();
                }
                Err(msg) => {
                    j.commands[i].state = RunState::Failed;
                    j.commands[i].output = Some(tail(&msg));
                    self.save(&j)?;
                    // Put everything back, then regenerate from the originals.
                    self.restore_files(&j, false)?;
                    for c in &j.commands[..i] {
                        let _ = runner.run(&self.root, c.undo.as_ref().unwrap_or(&c.argv));
                    }
                    j.status = Status::Failed;
                    self.save(&j)?;
                    return Err(TxnError::Command {
                        command: argv.join(" "),
                        message: msg,
                    });
                }
            }
        }
        j.status = Status::Applied;
        self.save(&j)?;
        Ok(j)
    }

    /// Restore the files of `j` (with `only_started`, those at or past
    /// `BackedUp`; else all) to their originals, in reverse order.
    fn restore_files(&self, j: &Journal, only_started: bool) -> Result<(), TxnError> {
        for (i, f) in j.files.iter().enumerate().rev() {
            if only_started && f.state == FileState::Pending {
                continue;
            }
            if f.existed {
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
                    .map_err(io_at(&self.root.join(&f.path)))?;
            } else {
                remove_file(&self.root, &f.path).map_err(io_at(&self.root.join(&f.path)))?;
            }
            for d in f.created_dirs.iter().rev() {
                remove_empty_dir(&self.root, d).map_err(io_at(&self.root.join(d)))?;
            }
        }
        Ok(())
    }

    /// Finish an interrupted transaction by returning every file it may have
    /// touched to its original; re-run commands that had run.
    pub fn recover(&self, runner: &mut dyn CommandRunner) -> Result<Option<Journal>, TxnError> {
        let Some(mut j) = self.unfinished()? else {
            return Ok(None);
        };
        self.restore_files(&j, true)?;
        if j.commands.iter().any(|c| c.state != RunState::Pending) {
            for c in &j.commands {
                match (&c.undo, c.state) {
                    // An undoable command that never ran needs no undo.
                    (Some(_), RunState::Pending) => {}
                    (Some(u), _) => {
                        let _ = runner.run(&self.root, u);
                    }
                    (None, _) => {
                        let _ = runner.run(&self.root, &c.argv);
                    }
                }
            }
        }
        j.status = Status::Recovered;
        self.save(&j)?;
        Ok(Some(j))
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
    /// regeneration commands again. Refuses when a managed file was changed
    /// by someone else since, unless `force`.
    pub fn rollback(
        &self,
        which: &str,
        force: bool,
        runner: &mut dyn CommandRunner,
    ) -> Result<Journal, TxnError> {
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
        self.restore_files(&j, false)?;
        for c in &j.commands {
            runner
                .run(&self.root, &c.argv)
                .map_err(|message| TxnError::Command {
                    command: c.argv.join(" "),
                    message,
                })?;
        }
        j.status = Status::RolledBack;
        self.save(&j)?;
        Ok(j)
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
    }

    impl CommandRunner for Rec {
        fn run(&mut self, _t: &Path, argv: &[String]) -> Result<String, String> {
            self.ran.push(argv.to_vec());
            match &self.fail {
                Some(f) if argv.first() == Some(f) => Err("boom".to_string()),
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
            ..Rec::default()
        };
        assert!(matches!(
            store.apply(&plan(t.path()), &mut rec),
            Err(TxnError::Command { .. })
        ));
        assert_eq!(
            std::fs::read(t.path().join("etc/mkinitcpio.conf"))
                .ok()
                .as_deref(),
            Some(&b"MODULES=(amdgpu)\n"[..])
        );
        assert!(!t.path().join("etc/modprobe.d/exliar-vfio.conf").exists());
        assert_eq!(store.journals()?[0].status, Status::Failed);
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
}
