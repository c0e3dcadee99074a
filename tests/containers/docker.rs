//! Docker Engine 26 (trixie's docker.io, unpacked) started by the test in a private
//! namespace, with a private daemon.json (`features.cdi`, `cdi-spec-dirs`), data root,
//! exec root and socket, and its own managed containerd (trixie's). Driven by trixie's
//! docker CLI with a private `DOCKER_CONFIG`.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::harness::{self, IMAGE, Namespace, Unavailable, run_ok, secs};
use super::trixie;

pub struct Docker {
    pub ns: Namespace,
    root: PathBuf,
    pub version: String,
}

impl Docker {
    pub fn start() -> Result<Docker, Unavailable> {
        harness::host_ready()?;
        let root = trixie::root()?;
        let t0 = Instant::now();
        let mut ns = Namespace::start("docker").map_err(Unavailable)?;
        let dir = ns.dir().to_path_buf();
        let conf = serde_json::json!({
            "features": {"cdi": true},
            "cdi-spec-dirs": [ns.spec_dir()],
        });
        harness::write_json(&dir.join("daemon.json"), &conf).map_err(Unavailable)?;
        fs_err::create_dir_all(dir.join("docker-config"))
            .map_err(|e| Unavailable(e.to_string()))?;
        let mut c = ns.command(root.join("usr/sbin/dockerd"));
        c.env("PATH", trixie::path_env(&root))
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("docker-data"))
            .arg("--exec-root")
            .arg(dir.join("docker-exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"]);
        ns.spawn_daemon("dockerd", c).map_err(Unavailable)?;
        let mut d = Docker {
            ns,
            root,
            version: String::new(),
        };
        let sock = dir.join("docker.sock");
        d.ns.wait_for("dockerd", &sock, Duration::from_secs(60))
            .map_err(Unavailable)?;
        // The socket exists slightly before the API answers.
        let until = Instant::now() + Duration::from_secs(30);
        let version = loop {
            let o = d
                .cli()
                .args(["version", "--format", "{{.Server.Version}}"])
                .output();
            if let Ok(o) = &o
                && o.status.success()
            {
                break String::from_utf8_lossy(&o.stdout).trim().to_string();
            }
            if Instant::now() > until {
                return Err(Unavailable(format!(
                    "dockerd does not answer: {o:?}\n{}",
                    d.ns.log_tail("dockerd", 30)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let tar = harness::rootfs_tar().map_err(Unavailable)?;
        run_ok(
            d.cli()
                .args(["import", "-c", "CMD [\"/bin/sh\"]", "-c", "ENV PATH=/bin"])
                .arg(&tar)
                .arg(IMAGE),
        )
        .map_err(Unavailable)?;
        eprintln!("docker {version}: ready in {}", secs(t0));
        d.version = version;
        Ok(d)
    }

    /// Trixie's docker CLI pointed at this daemon (run outside the namespace: the
    /// socket is in the test's directory).
    pub fn cli(&self) -> Command {
        let dir = self.ns.dir();
        let mut c = Command::new(self.root.join("usr/bin/docker"));
        c.env(
            "DOCKER_HOST",
            format!("unix://{}", dir.join("docker.sock").display()),
        )
        .env("DOCKER_CONFIG", dir.join("docker-config"));
        c
    }

    /// `docker run --rm --network none --device D… IMAGE sh -c SCRIPT`.
    pub fn run(&self, devices: &[&str], script: &str) -> Output {
        let mut c = self.cli();
        c.args(["run", "--rm", "--network", "none"]);
        for d in devices {
            c.arg("--device").arg(d);
        }
        c.args([IMAGE, "sh", "-c", script]);
        c.output().unwrap_or_else(|e| panic!("docker: {e}"))
    }

    /// dockerd's log (CDI spec errors are only there).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.ns.log_path("dockerd")).unwrap_or_default()
    }
}
