//! Debian 12's podman 4.3.1 (+ runc) in a private namespace with its own store and a
//! private `containers.conf` passed through `CONTAINERS_CONF` (nothing written to /etc).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Instant;

use super::harness::{self, IMAGE, Namespace, Unavailable, run_ok, secs};

pub struct Podman {
    pub ns: Namespace,
    pub version: String,
}

/// The private `containers.conf`. This machine kind needs the first three settings
/// (see tests/containers/README.md): podman's default rlimits exceed the hard limits and
/// cannot be raised without CAP_SYS_RESOURCE, and crun 1.8 refuses hybrid cgroups.
/// Podman 4.3.1 has no `cdi_spec_dirs`: it reads /etc/cdi and /var/run/cdi, which the
/// namespace points at the test's spec directory.
fn containers_conf(dir: &std::path::Path) -> String {
    let d = dir.display();
    format!(
        "[containers]\n\
         default_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
         [engine]\n\
         runtime = \"runc\"\n\
         cgroup_manager = \"cgroupfs\"\n\
         events_logger = \"file\"\n\
         events_logfile_path = \"{d}/podman-events.log\"\n\
         tmp_dir = \"{d}/podman-tmp\"\n\
         [network]\n\
         network_config_dir = \"{d}/podman-net\"\n"
    )
}

fn storage_conf(dir: &std::path::Path) -> String {
    let d = dir.display();
    format!(
        "[storage]\ndriver = \"overlay\"\ngraphroot = \"{d}/podman-graph\"\nrunroot = \"{d}/podman-run\"\n"
    )
}

impl Podman {
    /// A podman with an empty store in a fresh namespace, the busybox image imported.
    pub fn start() -> Result<Podman, Unavailable> {
        harness::host_ready()?;
        if harness::find_tool("podman").is_none() {
            return Err(Unavailable("`podman` not found".into()));
        }
        let t0 = Instant::now();
        let ns = Namespace::start("podman").map_err(Unavailable)?;
        let dir = ns.dir().to_path_buf();
        let w = |p: PathBuf, body: String| {
            fs_err::write(p, body).map_err(|e| Unavailable(e.to_string()))
        };
        w(dir.join("containers.conf"), containers_conf(&dir))?;
        w(dir.join("storage.conf"), storage_conf(&dir))?;
        w(dir.join("registries.conf"), String::new())?;
        let p = Podman {
            ns,
            version: String::new(),
        };
        let v = run_ok(p.cmd().args(["version", "--format", "{{.Client.Version}}"]))
            .map_err(Unavailable)?;
        let version = String::from_utf8_lossy(&v.stdout).trim().to_string();
        let tar = harness::rootfs_tar().map_err(Unavailable)?;
        run_ok(
            p.cmd()
                .args(["import", "--quiet", "--change", "CMD [\"/bin/sh\"]"])
                .args(["--change", "ENV PATH=/bin"])
                .arg(&tar)
                .arg(IMAGE),
        )
        .map_err(Unavailable)?;
        eprintln!("podman {version}: ready in {}", secs(t0));
        Ok(Podman { version, ..p })
    }

    /// `podman ARGS` in the namespace with the private configuration.
    pub fn cmd(&self) -> Command {
        let dir = self.ns.dir();
        let mut c = self.ns.command("podman");
        c.env("CONTAINERS_CONF", dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", dir.join("registries.conf"));
        c
    }

    /// `podman [--log-level=debug] run --rm --network none --device D… IMAGE sh -c SCRIPT`.
    pub fn run(&self, devices: &[&str], script: &str, debug: bool) -> Output {
        let mut c = self.cmd();
        if debug {
            c.arg("--log-level=debug");
        }
        c.args(["run", "--rm", "--network", "none"]);
        for d in devices {
            c.arg("--device").arg(d);
        }
        c.args([IMAGE, "sh", "-c", script]);
        c.output().unwrap_or_else(|e| panic!("podman: {e}"))
    }
}
