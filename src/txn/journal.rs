//! The journal of one transaction (`var/lib/exliar/txn/<id>/journal.json`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::PciAddress;
use crate::plan::{Plan, Step, Subject};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Started and not finished: `exliar recover` is needed.
    Applying,
    Applied,
    /// Being undone (a rollback, the revert of a failed apply, or a
    /// recover): `revert` says which; unfinished, `exliar recover` ends it.
    RollingBack,
    /// Applying failed; the files were restored.
    Failed,
    RolledBack,
    /// An interrupted transaction whose files were restored.
    Recovered,
}

impl Status {
    /// Applying or rolling back: something `exliar recover` must finish.
    pub fn unfinished(self) -> bool {
        matches!(self, Status::Applying | Status::RollingBack)
    }
    /// What an unfinished transaction is, in words.
    pub fn unfinished_what(self) -> &'static str {
        match self {
            Status::Applying => "an interrupted apply",
            Status::RollingBack => "a rollback (or revert) that did not finish",
            _ => "finished",
        }
    }
}

/// Why a transaction is being undone, so that `recover` ends it in the
/// state that was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Revert {
    /// `exliar rollback`: ends `rolled-back`.
    Rollback,
    /// A step of the apply failed: ends `failed`.
    ApplyFailed,
    /// `exliar recover` of an interrupted apply: ends `recovered`.
    Recover,
}

impl Revert {
    pub fn end(self) -> Status {
        match self {
            Revert::Rollback => Status::RolledBack,
            Revert::ApplyFailed => Status::Failed,
            Revert::Recover => Status::Recovered,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Applying => "applying (interrupted)",
            Status::Applied => "applied",
            Status::RollingBack => "rolling back (unfinished)",
            Status::Failed => "failed (restored)",
            Status::RolledBack => "rolled back",
            Status::Recovered => "recovered",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileState {
    Pending,
    /// The original is saved; the file may or may not be written yet.
    BackedUp,
    Written,
    /// Back to its original (while rolling back).
    Restored,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: PathBuf,
    pub existed: bool,
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub before_sha256: Option<String>,
    pub after_sha256: String,
    pub state: FileState,
    /// Folders writing the file created (outermost first), recorded before
    /// the write; restoring removes those that are empty again.
    #[serde(default)]
    pub created_dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    Pending,
    /// Started; a crash may have stopped it part-way.
    Running,
    Done,
    Failed,
}

/// What a journaled command is, which says how it is undone.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// Regenerates from files (initramfs, boot loader): run again (or its
    /// `undo`) once the files are back.
    #[default]
    Regenerate,
    /// Creates a disk image at `path` (relative to the root): removed on
    /// undo unless written to since (see [`CommandRecord::created`]).
    CreateImage { path: PathBuf },
    /// Defines a new libvirt domain: undone by `virsh undefine --nvram`
    /// when the domain exists.
    Define { connect: String, name: String },
}

impl Action {
    fn is_regenerate(&self) -> bool {
        *self == Action::Regenerate
    }
}

/// A file as it was right after exliar created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub size: u64,
    /// Nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Empty for an image too large to hash (size and time decide).
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    #[serde(default, skip_serializing_if = "Action::is_regenerate")]
    pub action: Action,
    /// A created image as it was right after creation (recorded after the
    /// command ran; absent if a crash came first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<Fingerprint>,
    /// Why the undo left something in place (an image written to since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<String>,
    pub argv: Vec<String>,
    /// Run instead of `argv` on rollback (see `Step::Run`).
    #[serde(default)]
    pub undo: Option<Vec<String>>,
    pub state: RunState,
    pub output: Option<String>,
    /// While rolling back: the state of the run that regenerates from the
    /// originals (`undo`, else `argv` again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_state: Option<RunState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_output: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub schema: String,
    pub id: String,
    pub created_unix: u64,
    pub target: String,
    pub gpu: Option<PciAddress>,
    pub functions: Vec<PciAddress>,
    /// The VM of a VM transaction (`vm create` / `vm edit`); absent for a
    /// GPU isolation (`gpu` and `functions` say which).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    pub status: Status,
    pub files: Vec<FileRecord>,
    pub commands: Vec<CommandRecord>,
    pub kernel_params_add: Vec<String>,
    pub kernel_params_remove: Vec<String>,
    /// Set when the transaction is being (or was) undone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert: Option<Revert>,
}

impl Journal {
    pub fn new(
        root: &Path,
        plan: &Plan,
        files: Vec<FileRecord>,
        commands: Vec<CommandRecord>,
    ) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut add = Vec::new();
        let mut remove = Vec::new();
        for s in &plan.steps {
            if let Step::KernelParams {
                add: a, remove: r, ..
            } = s
            {
                add.extend(a.iter().cloned());
                remove.extend(r.iter().cloned());
            }
        }
        Self {
            schema: "exliar.journal/1".to_string(),
            id: new_id(root, now),
            created_unix: now,
            target: root.display().to_string(),
            gpu: plan.subject.gpu(),
            functions: plan.subject.functions().to_vec(),
            subject: match &plan.subject {
                s @ (Subject::Vm { .. }
                | Subject::Hooks
                | Subject::Runtime { .. }
                | Subject::Cdi { .. }
                | Subject::Nfd { .. }) => Some(s.clone()),
                Subject::GpuIsolation { .. } => None,
            },
            status: Status::Applying,
            files,
            commands,
            kernel_params_add: add,
            kernel_params_remove: remove,
            revert: None,
        }
    }
}

/// Whether `s` has the form of exliar's transaction ids
/// (`20261204T150000Z`, or `20261204T150000Z-2` for the same second).
pub fn valid_id(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 16 {
        return false;
    }
    let (head, rest) = b.split_at(16);
    let shape = head.iter().enumerate().all(|(i, c)| match i {
        8 => *c == b'T',
        15 => *c == b'Z',
        _ => c.is_ascii_digit(),
    });
    shape
        && (rest.is_empty()
            || (rest.len() >= 2
                && rest[0] == b'-'
                && rest[1..].iter().all(u8::is_ascii_digit)
                && rest[1] != b'0'))
}

/// Where an id sorts among transactions: its time, then its counter
/// (`…Z-10` comes after `…Z-9`, which plain string order gets wrong).
/// `None` for a name that is not an id.
pub fn id_order(id: &str) -> Option<(&str, u64)> {
    if !valid_id(id) {
        return None;
    }
    let (base, n) = id.split_at(16);
    Some((
        base,
        n.strip_prefix('-').map_or(Some(0), |n| n.parse().ok())?,
    ))
}

/// A unique id that sorts after every transaction already there: UTC time
/// plus a counter for the same second. Should the clock read earlier than
/// the newest transaction (set back, or many in one second), the newest
/// one's time is kept with the next counter, so "the last transaction" is
/// always the newest.
fn new_id(root: &Path, now: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(now);
    let base = format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z");
    let dir = root.join(super::STATE_DIR).join("txn");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    next_id(&base, names.iter().map(|n| n.trim_start_matches(".new-")))
}

/// The id for a transaction made at `base` (`YYYYMMDDTHHMMSSZ`) among
/// the `existing` names.
fn next_id<'a>(base: &str, existing: impl Iterator<Item = &'a str>) -> String {
    match existing.filter_map(id_order).max() {
        Some((b, n)) if b >= base => format!("{b}-{}", n + 1),
        _ => base.to_string(),
    }
}

/// Unix seconds to (year, month, day, hour, minute, second), UTC.
fn civil(t: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = t / 86_400;
    let rem = t % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        y as u64,
        m as u64,
        d as u64,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_then_counter_and_new_ones_sort_last() {
        let mut ids = vec![
            "20261204T150000Z-10",
            "20261204T150000Z-9",
            "20261204T150000Z",
            "20261204T145959Z",
            "20261204T150000Z-2",
        ];
        ids.sort_by_key(|i| id_order(i));
        assert_eq!(
            ids,
            [
                "20261204T145959Z",
                "20261204T150000Z",
                "20261204T150000Z-2",
                "20261204T150000Z-9",
                "20261204T150000Z-10"
            ]
        );
        assert_eq!(id_order("../../x"), None);
        let base = "20261204T150000Z";
        assert_eq!(next_id(base, [].into_iter()), base);
        assert_eq!(
            next_id(base, ["20261204T145959Z", "junk"].into_iter()),
            base
        );
        assert_eq!(
            next_id(
                base,
                ["20261204T150000Z-9", "20261204T150000Z-10"].into_iter()
            ),
            "20261204T150000Z-11"
        );
        // the clock went back: still after the newest
        assert_eq!(
            next_id("20251204T150000Z", ["20261204T150000Z"].into_iter()),
            "20261204T150000Z-1"
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(1_795_310_430), (2026, 11, 22, 1, 20, 30));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
    }

    #[test]
    fn ids() {
        for ok in [
            "20261204T150000Z",
            "20261204T150000Z-1",
            "20261204T150000Z-12",
        ] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in [
            "../../x",
            "",
            "last",
            "20261204T150000",
            "20261204T150000Z-",
            "20261204T150000Z-0",
            "20261204T150000Z/..",
            "2026120xT150000Z",
            ".new-20261204T150000Z",
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
