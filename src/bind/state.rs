//! Runtime bindings exliar made, kept in a small state file so that a crash
//! never loses which driver a device came from. It lives under `/run`: a
//! reboot undoes every runtime binding, and the file goes with it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::PciAddress;

pub const STATE_FILE: &str = "run/exliar/bindings.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub address: PciAddress,
    /// The driver before `exliar bind` (`None`: the device had none).
    pub original_driver: Option<String>,
    /// Its `driver_override` before (`None`: unset).
    pub original_override: Option<String>,
    pub group: Option<u32>,
    /// Its `reset_method` before, when exliar changes it (AMD reset bug).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_reset_method: Option<String>,
}

/// Where bindings are recorded.
pub trait BindingState {
    fn all(&self) -> Vec<Binding>;
    /// Record a binding (before the kernel is touched).
    fn record(&mut self, b: Binding) -> std::io::Result<()>;
    /// Record several at once (one write of the state file).
    fn record_all(&mut self, bs: Vec<Binding>) -> std::io::Result<()> {
        for b in bs {
            self.record(b)?;
        }
        Ok(())
    }
    fn forget(&mut self, a: &PciAddress) -> std::io::Result<()>;
    /// Forget several at once (one write of the state file).
    fn forget_all(&mut self, all: &[PciAddress]) -> std::io::Result<()> {
        for a in all {
            self.forget(a)?;
        }
        Ok(())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct FileDoc {
    schema: String,
    bindings: Vec<Binding>,
}

/// The state file under a root, rewritten atomically on every change.
#[derive(Debug)]
pub struct StateFile {
    root: PathBuf,
    bindings: Vec<Binding>,
}

/// An exclusive lock on the state (`run/exliar/lock`), held while a bind or
/// unbind runs so that two of them never interleave their records. Released
/// when dropped (or when the process ends).
#[derive(Debug)]
pub struct StateLock {
    _fd: std::os::fd::OwnedFd,
}

impl StateFile {
    /// Take the lock, waiting for another exliar that holds it.
    pub fn lock(root: &Path) -> Result<StateLock, String> {
        use rustix::fs::{FlockOperation, Mode, OFlags};
        let rel = Path::new(STATE_FILE).with_file_name("lock");
        let shown = root.join(&rel);
        let dir = rel.parent().unwrap_or(Path::new(""));
        let dir = crate::host::write::ensure_dir(root, dir)
            .map_err(|e| format!("{}: {e}", shown.display()))?;
        let fd = rustix::fs::open(
            dir.join("lock"),
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| format!("{}: {e}", shown.display()))?;
        rustix::fs::flock(&fd, FlockOperation::LockExclusive)
            .map_err(|e| format!("{}: {e}", shown.display()))?;
        Ok(StateLock { _fd: fd })
    }

    /// Load the file (a missing file is an empty state; a garbled one is an
    /// error naming it, so nothing recorded is silently dropped).
    pub fn load(root: &Path) -> Result<Self, String> {
        let path = root.join(STATE_FILE);
        let limit = crate::host::readfile::CONFIG_LIMIT;
        let bindings = match crate::host::readfile::read_regular(&path, limit) {
            Ok(bytes) => {
                serde_json::from_slice::<FileDoc>(&bytes)
                    .map_err(|e| format!("{}: {e}", path.display()))?
                    .bindings
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Ok(Self {
            root: root.to_path_buf(),
            bindings,
        })
    }

    fn save(&self) -> std::io::Result<()> {
        if self.bindings.is_empty() {
            return crate::host::write::remove_file(&self.root, Path::new(STATE_FILE));
        }
        let doc = FileDoc {
            schema: "exliar.bindings/1".to_string(),
            bindings: self.bindings.clone(),
        };
        let mut bytes = serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        crate::host::write::atomic_write(&self.root, Path::new(STATE_FILE), &bytes, 0o644)
    }
}

impl BindingState for StateFile {
    fn all(&self) -> Vec<Binding> {
        self.bindings.clone()
    }
    fn record(&mut self, b: Binding) -> std::io::Result<()> {
        // Keep the first record: a second bind must not overwrite the
        // driver the device really came from.
        if !self.bindings.iter().any(|x| x.address == b.address) {
            self.bindings.push(b);
            self.bindings.sort_by_key(|x| x.address);
        }
        self.save()
    }
    fn record_all(&mut self, bs: Vec<Binding>) -> std::io::Result<()> {
        for b in bs {
            if !self.bindings.iter().any(|x| x.address == b.address) {
                self.bindings.push(b);
            }
        }
        self.bindings.sort_by_key(|x| x.address);
        self.save()
    }
    fn forget(&mut self, a: &PciAddress) -> std::io::Result<()> {
        self.forget_all(std::slice::from_ref(a))
    }
    fn forget_all(&mut self, all: &[PciAddress]) -> std::io::Result<()> {
        let n = self.bindings.len();
        self.bindings.retain(|x| !all.contains(&x.address));
        if n != self.bindings.len() {
            self.save()
        } else {
            Ok(())
        }
    }
}

/// An in-memory state, for dry runs and tests.
#[derive(Debug, Default)]
pub struct MemoryState(pub Vec<Binding>);

impl BindingState for MemoryState {
    fn all(&self) -> Vec<Binding> {
        self.0.clone()
    }
    fn record(&mut self, b: Binding) -> std::io::Result<()> {
        if !self.0.iter().any(|x| x.address == b.address) {
            self.0.push(b);
        }
        Ok(())
    }
    fn forget(&mut self, a: &PciAddress) -> std::io::Result<()> {
        self.0.retain(|x| x.address != *a);
        Ok(())
    }
}
