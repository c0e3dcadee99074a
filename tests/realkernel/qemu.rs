//! Running QEMU with a deadline; the process is killed when the guard drops, so no
//! test failure or panic leaves a qemu behind.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A running QEMU; killed (and reaped) on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// How a guest run ended.
#[derive(Debug)]
pub enum Ending {
    /// QEMU exited by itself (the guest powered off, or QEMU failed).
    Exited(ExitStatus),
    /// It ran past the deadline and was killed.
    TimedOut(Duration),
}

/// `-chardev ...,path=<p>`: QEMU option values escape `,` as `,,`.
pub fn opt_path(p: &Path) -> String {
    p.to_string_lossy().replace(',', ",,")
}

/// Runs `cmd` (stdin closed, stdout and stderr to `log`) until it exits or `timeout`.
pub fn run_with_timeout(mut cmd: Command, log: &Path, timeout: Duration) -> Result<Ending> {
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let mut guard = Guard(child);
    let start = Instant::now();
    loop {
        if let Some(status) = guard.0.try_wait()? {
            return Ok(Ending::Exited(status));
        }
        if start.elapsed() > timeout {
            // the guard kills it
            return Ok(Ending::TimedOut(timeout));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
