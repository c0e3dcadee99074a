//! `virsh`, run with argv (never a shell string), on one connection URI.

use std::process::Command;

/// The default connection: the system instance, where passthrough works.
pub const DEFAULT_URI: &str = "qemu:///system";

/// A failed `virsh` run: the command and what it said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{command}` failed: {message}")]
pub struct VirshError {
    pub command: String,
    pub message: String,
}

/// One libvirt connection.
#[derive(Debug, Clone)]
pub struct Virsh {
    pub uri: String,
}

impl Virsh {
    pub fn new(uri: impl Into<String>) -> Self {
        Self { uri: uri.into() }
    }

    /// The argv of `virsh --connect URI ARGS…`.
    pub fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut v = vec!["virsh".to_string(), "--connect".into(), self.uri.clone()];
        v.extend(args.iter().map(|a| a.to_string()));
        v
    }

    /// Run `virsh --connect URI ARGS…`; stdout on success.
    pub fn run(&self, args: &[&str]) -> Result<String, VirshError> {
        let argv = self.argv(args);
        let command = argv.join(" ");
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .env("LC_ALL", "C")
            .output()
            .map_err(|e| VirshError {
                command: command.clone(),
                message: if e.kind() == std::io::ErrorKind::NotFound {
                    "virsh is not installed (Debian/Ubuntu: libvirt-clients; Fedora: libvirt-client; Arch: libvirt)".into()
                } else {
                    e.to_string()
                },
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            let msg = err
                .trim()
                .trim_start_matches("error: ")
                .replace("\nerror: ", "; ");
            Err(VirshError {
                command,
                message: if msg.is_empty() {
                    format!("exit {}", out.status)
                } else {
                    msg
                },
            })
        }
    }

    /// Every domain, defined or running: (name, state).
    pub fn list(&self) -> Result<Vec<(String, String)>, VirshError> {
        let names = self.run(&["list", "--all", "--name"])?;
        let mut out = Vec::new();
        for n in names.lines().map(str::trim).filter(|n| !n.is_empty()) {
            let state = self.domstate(n).unwrap_or_else(|_| "unknown".into());
            out.push((n.to_string(), state));
        }
        Ok(out)
    }

    pub fn exists(&self, name: &str) -> Result<bool, VirshError> {
        Ok(self
            .run(&["list", "--all", "--name"])?
            .lines()
            .any(|l| l.trim() == name))
    }

    /// `running`, `paused`, `shut off`, …
    pub fn domstate(&self, name: &str) -> Result<String, VirshError> {
        Ok(self.run(&["domstate", name])?.trim().to_string())
    }

    /// The domain's XML (`--inactive`: its definition, not the running one).
    pub fn dumpxml(&self, name: &str, inactive: bool) -> Result<String, VirshError> {
        if inactive {
            self.run(&["dumpxml", "--inactive", name])
        } else {
            self.run(&["dumpxml", name])
        }
    }

    /// The directory of the `default` storage pool, if there is one.
    pub fn default_pool_dir(&self) -> Option<String> {
        let xml = self.run(&["pool-dumpxml", "default"]).ok()?;
        let start = xml.find("<path>")? + "<path>".len();
        let end = xml[start..].find("</path>")? + start;
        Some(xml[start..end].trim().to_string())
    }
}

/// Whether a domain name is one exliar accepts: letters, digits, `.`, `_`,
/// `+`, `-`, at most 64 bytes, not starting with `-` or `.` (it is used as
/// a file name and as a `virsh` argument).
pub fn valid_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'));
    if name.is_empty() || name.len() > 64 || !ok_chars || name.starts_with(['-', '.']) {
        return Err(format!(
            "{:?} is not a VM name exliar accepts: use 1-64 letters, digits, '.', '_', '+' or '-', not starting with '-' or '.'",
            name
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["win11", "a", "my-vm_2.0+x"] {
            assert!(valid_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".x", "a/b", "a b", "é", &"x".repeat(65), "a\nb"] {
            assert!(valid_name(bad).is_err(), "{bad:?}");
        }
    }
}
