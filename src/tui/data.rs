//! What the pages show, read through the same library calls as `scan`,
//! `check`, `plan`, `history` and `vm list`.

use std::path::Path;

use crate::analyze::{self, Analysis};
use crate::check::{self, CheckReport};
use crate::host::{self, HostRoot};
use crate::model::Inventory;
use crate::txn::Journal;

/// The host as `exliar scan` reads it.
#[derive(Debug, Default)]
pub struct HostData {
    pub inv: Option<Inventory>,
    pub analysis: Option<Analysis>,
    pub stacks: Option<host::stacks::Stacks>,
    /// Why the PCI tree could not be read.
    pub error: Option<String>,
    pub warnings: Vec<String>,
}

impl HostData {
    pub fn read(root: &Path) -> HostData {
        let host = HostRoot::new(root);
        let ids = host::sysfs::load_pci_ids(&host);
        match host::sysfs::read_inventory(&host, &ids) {
            Ok(inv) => {
                let analysis = analyze::analyze(&inv);
                let stacks = host::stacks::read(&host, &analysis.gpus);
                let mut warnings: Vec<String> = inv
                    .warnings
                    .iter()
                    .map(|w| super::safe(&w.to_string()))
                    .collect();
                warnings.extend(stacks.warnings.iter().map(|w| super::safe(&w.to_string())));
                HostData {
                    inv: Some(inv),
                    analysis: Some(analysis),
                    stacks: Some(stacks),
                    error: None,
                    warnings,
                }
            }
            Err(e) => HostData {
                error: Some(super::safe(&format!("{}: {e}", root.display()))),
                ..HostData::default()
            },
        }
    }
}

/// `exliar check`'s report.
#[derive(Debug)]
pub struct CheckData {
    pub report: CheckReport,
}

impl CheckData {
    pub fn read(root: &Path) -> CheckData {
        let host = HostRoot::new(root);
        let (ev, analysis) = crate::cli::check_evidence(&host);
        let all = check::select(&[]).unwrap_or_default();
        let checks = check::run_checks(&ev, analysis.as_ref(), &all);
        CheckData {
            report: CheckReport::new(&ev, analysis.as_ref(), checks, None),
        }
    }
}

/// The transactions on the target, newest last (as `exliar history`).
#[derive(Debug, Default)]
pub struct HistoryData {
    pub journals: Vec<Journal>,
    pub error: Option<String>,
    pub skipped: Vec<String>,
}

impl HistoryData {
    pub fn read(target: &Path) -> HistoryData {
        match crate::txn::read_journals(target) {
            Ok(all) => HistoryData {
                journals: all.list,
                error: None,
                skipped: all
                    .skipped
                    .iter()
                    .map(|s| super::safe(&s.to_string()))
                    .collect(),
            },
            Err(e) => HistoryData {
                error: Some(super::safe(&e.to_string())),
                ..HistoryData::default()
            },
        }
    }
}

/// A domain on the libvirt connection (`exliar vm list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmRow {
    pub name: String,
    pub state: String,
    /// Created by exliar (its metadata is in the domain).
    pub exliar: bool,
    pub profile: Option<String>,
    pub gpu: Option<String>,
}

/// The domains of `connect`, as `exliar vm list` reads them.
pub fn vm_list(connect: &str) -> Result<Vec<VmRow>, String> {
    let virsh = crate::vm::virsh::Virsh::new(connect);
    let list = virsh.list().map_err(|e| super::safe(&e.to_string()))?;
    Ok(list
        .into_iter()
        .map(|(name, state)| {
            let meta = virsh
                .dumpxml(&name, true)
                .ok()
                .and_then(|x| crate::vm::domain::read_meta(&x).ok().flatten());
            VmRow {
                exliar: meta.is_some(),
                profile: meta.as_ref().map(|m| m.profile.clone()),
                gpu: meta.as_ref().and_then(|m| m.gpu.map(|g| g.to_string())),
                name: super::safe(&name),
                state: super::safe(&state),
            }
        })
        .collect())
}

/// What the transaction changed, file by file: unified diffs from the
/// original (its backup) to exliar's version. A backup is readable by root
/// only (0600): without it the diff says so.
pub fn transaction_diffs(target: &Path, j: &Journal) -> String {
    let dir = target.join(crate::txn::STATE_DIR).join("txn").join(&j.id);
    let mut out = String::new();
    for (i, f) in j.files.iter().enumerate() {
        let after = std::fs::read(dir.join("after").join(i.to_string()));
        let before = if f.existed {
            std::fs::read(dir.join("backup").join(i.to_string())).map(Some)
        } else {
            Ok(None)
        };
        match (before, after) {
            (Ok(b), Ok(a)) => out.push_str(&crate::plan::unified_diff(&f.path, b.as_deref(), &a)),
            (Err(e), _) | (_, Err(e)) => out.push_str(&format!(
                "/{}: the recorded versions cannot be read ({e}){}\n",
                f.path.display(),
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    "; run as root to see the diff"
                } else {
                    ""
                }
            )),
        }
    }
    super::safe(&out)
}

/// What a rollback would restore: for each file, the diff from what is
/// there now to the original.
pub fn rollback_preview(target: &Path, j: &Journal) -> String {
    let dir = target.join(crate::txn::STATE_DIR).join("txn").join(&j.id);
    let mut out = String::new();
    for (i, f) in j.files.iter().enumerate() {
        let now = std::fs::read(target.join(&f.path)).ok();
        let original = if f.existed {
            match std::fs::read(dir.join("backup").join(i.to_string())) {
                Ok(b) => Some(b),
                Err(e) => {
                    out.push_str(&format!(
                        "/{}: the original cannot be read ({e})\n",
                        f.path.display()
                    ));
                    continue;
                }
            }
        } else {
            None
        };
        match (&now, &original) {
            (Some(n), Some(o)) => {
                out.push_str(&crate::plan::unified_diff(&f.path, Some(n), o));
            }
            (Some(_), None) => out.push_str(&format!(
                "/{}: removed (exliar created it)\n",
                f.path.display()
            )),
            (None, Some(o)) => out.push_str(&crate::plan::unified_diff(&f.path, None, o)),
            (None, None) => {}
        }
    }
    super::safe(&out)
}

/// Whether this process can write under `dir`: root, or a folder of the
/// user's own such as a copied target; not a read-only file system, even
/// for root.
pub fn writable(dir: &Path) -> bool {
    rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).is_ok()
}
