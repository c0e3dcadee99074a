//! What every engine of the containers tier shares (see tests/containers/README.md):
//! skipping, the cache under `target/containers/`, the private namespace each engine
//! runs in, the busybox images, and the fake device nodes and the CDI spec the tests use.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Why this host cannot run the tier (not root, a package missing, no network for the
/// first download). Tests print SKIP and pass, except under CI, where it is a failure.
#[derive(Debug, Clone)]
pub struct Unavailable(pub String);

pub const PACKAGES_FILE: &str = "tests/containers/apt-packages.txt";

/// How long a daemon gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// SKIP (and pass) on a developer's machine, fail under CI.
pub fn skip(test: &str, why: &Unavailable) {
    let msg = format!(
        "containers test `{test}` cannot run here: {}. Install the packages in {PACKAGES_FILE} \
         and run as root (see tests/containers/README.md).",
        why.0
    );
    assert!(!in_ci(), "{msg} (CI is set, so this is a failure)");
    eprintln!("SKIP: {msg}");
}

/// The engines and their containers are CPU-bound and the machines have 2 cores: the
/// tests of the tier run one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `target/containers/`: downloads, extracted .debs, the image tars, the CRI stubs.
pub fn cache_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("containers")
}

pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Root and the host tools every engine needs (the engines themselves are checked by
/// their own start functions).
pub fn host_ready() -> Result<(), Unavailable> {
    if effective_uid() != Some(0) {
        return Err(Unavailable("not root".into()));
    }
    for tool in ["unshare", "nsenter", "busybox", "runc"] {
        if find_tool(tool).is_none() {
            return Err(Unavailable(format!("`{tool}` not found")));
        }
    }
    Ok(())
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `cmd`, Err with its output unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> Result<Output, String> {
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if o.status.success() {
        Ok(o)
    } else {
        Err(format!("{cmd:?}: {}", text(&o)))
    }
}

pub fn secs(t: Instant) -> String {
    format!("{:.2} s", t.elapsed().as_secs_f64())
}

/// The namespace's first process: a private mount and network namespace in which
/// `/run` (so `/var/run`) and `/var/lib` are empty tmpfs, `/var/run/cdi` is the test's
/// spec directory and `/etc/cdi` (when the host has one) an empty directory. Engines
/// started in it find no host state and leave none: runc's and the shims' state under
/// /run, podman's blob cache under /var/lib/containers, every overlay mount they make.
/// It waits for its stdin to close (Drop, or the test process dying), then kills
/// whatever is left in its network namespace, unmounts what is left under the
/// directory and removes it.
const INIT: &str = r#"set -eu
T=$1
mount -t tmpfs -o mode=755 exliar-run /run
mkdir -p /run/cdi
mount --bind "$T/cdi" /run/cdi
mount -t tmpfs -o mode=755 exliar-varlib /var/lib
if [ -d /etc/cdi ]; then mount --bind "$T/empty" /etc/cdi; fi
busybox ip link set lo up
echo ready
while read -r _; do :; done
set +e
me=$(readlink /proc/$$/ns/net)
for p in /proc/[0-9]*; do
  p=${p#/proc/}; [ "$p" = $$ ] && continue
  [ "$(readlink "/proc/$p/ns/net" 2>/dev/null)" = "$me" ] && kill -KILL "$p"
done
sleep 0.2
# Mounts the engines left under the directory (overlays of killed containers): deepest
# first, then the directory, never crossing into a mount.
awk -v t="$T/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
  while read -r m; do umount -l "$m"; done
rm -rf --one-file-system "$T"
"#;

/// Run in the namespace by [`Namespace::overlay_dev`]: `$1` the fake host's root, `$2`
/// the namespace's directory.
const OVERLAY_DEV: &str = r#"set -eu
R=$1 T=$2
mkdir -p "$T/hostdev"
mount --rbind /dev "$T/hostdev"
mount -t tmpfs -o mode=755,nosuid exliar-dev /dev
for e in "$T/hostdev"/*; do
  n=${e##*/}
  if [ -e "$R/dev/$n" ] || [ -L "$R/dev/$n" ]; then continue; fi
  if [ -L "$e" ]; then cp -P "$e" "/dev/$n"
  elif [ -d "$e" ]; then mkdir "/dev/$n"; mount --rbind "$e" "/dev/$n"
  else touch "/dev/$n"; mount --bind "$e" "/dev/$n"; fi
done
cp -a "$R/dev/." /dev/
"#;

/// A private mount + network namespace with its directory (`dir()`), stopped on drop:
/// daemons by PID (SIGTERM, then SIGKILL after 5 s), then every process left in the
/// network namespace, then the directory is removed.
pub struct Namespace {
    dir: Option<tempfile::TempDir>,
    init: Child,
    keepalive: Option<ChildStdin>,
    net_ns: String,
    daemons: Vec<(String, Child)>,
    label: String,
}

impl Namespace {
    pub fn start(label: &str) -> Result<Namespace, String> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("exliar-{label}-"))
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        for d in ["cdi", "empty", "dev", "logs"] {
            fs_err::create_dir_all(dir.path().join(d)).map_err(|e| e.to_string())?;
        }
        let mut init = Command::new("unshare")
            .args([
                "--mount",
                "--net",
                "--propagation",
                "private",
                "sh",
                "-c",
                INIT,
                "init",
            ])
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("unshare: {e}"))?;
        let mut line = String::new();
        if let Some(out) = init.stdout.take() {
            use std::io::BufRead as _;
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        if line.trim() != "ready" {
            let _ = init.kill();
            let _ = init.wait();
            return Err(format!("the {label} namespace did not come up ({line:?})"));
        }
        let net_ns = std::fs::read_link(format!("/proc/{}/ns/net", init.id()))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let keepalive = init.stdin.take();
        Ok(Namespace {
            dir: Some(dir),
            init,
            keepalive,
            net_ns,
            daemons: Vec::new(),
            label: label.into(),
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// The private CDI spec directory: `/var/run/cdi` inside, and the directory every
    /// engine is configured with.
    pub fn spec_dir(&self) -> PathBuf {
        self.dir().join("cdi")
    }

    /// `program` run inside the namespace (nsenter into its mount and network
    /// namespaces).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.init.id().to_string())
            .args(["-m", "-n", "--"])
            .arg(program);
        c
    }

    /// Makes the fake host's device nodes (`root/dev/...`) appear at their real paths
    /// inside the namespace: `/dev` there becomes a tmpfs holding the host's entries
    /// (bind mounts) except those the fake host has, and a copy of `root/dev`. For a spec
    /// whose nodes name `/dev/dri/card0` with no `hostPath` (what a generator writes
    /// for the host it runs on): engines in the namespace then stat the fake node.
    /// Use [`super::check::expect_rooted`] for the expectation.
    pub fn overlay_dev(&self, root: &Path) -> Result<(), String> {
        run_ok(
            self.command("sh")
                .args(["-c", OVERLAY_DEV, "overlay-dev"])
                .arg(root)
                .arg(self.dir()),
        )
        .map(|_| ())
    }

    /// Starts a daemon inside the namespace, its output to `<dir>/<name>.log`; it is
    /// stopped by PID on drop.
    pub fn spawn_daemon(&mut self, name: &str, mut cmd: Command) -> Result<(), String> {
        let path = self.log_path(name);
        let log = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .map_err(|e| format!("{name}: {e}"))?;
        self.daemons.push((name.into(), child));
        Ok(())
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir().join(format!("{name}.log"))
    }

    /// The last `n` lines of a daemon's log.
    pub fn log_tail(&self, name: &str, n: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Whether a daemon started by [`spawn_daemon`] is still running.
    pub fn daemon_alive(&mut self, name: &str) -> bool {
        self.daemons
            .iter_mut()
            .find(|(n, _)| n == name)
            .is_some_and(|(_, c)| matches!(c.try_wait(), Ok(None)))
    }

    /// Live processes (PID, argv) in the namespace, its first process excluded.
    pub fn processes(&self) -> Vec<(u32, String)> {
        let init = self.init.id();
        processes_in_net_ns(&self.net_ns)
            .into_iter()
            .filter(|(p, _)| *p != init)
            .collect()
    }

    /// Waits up to `deadline` for `path` (a socket) to appear while the daemon lives.
    pub fn wait_for(
        &mut self,
        daemon: &str,
        path: &Path,
        deadline: Duration,
    ) -> Result<(), String> {
        let until = Instant::now() + deadline;
        while Instant::now() < until {
            if path.exists() {
                return Ok(());
            }
            if !self.daemon_alive(daemon) {
                return Err(format!(
                    "{daemon} exited before {} appeared:\n{}",
                    path.display(),
                    self.log_tail(daemon, 30)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "{daemon}: no {} after {deadline:?}:\n{}",
            path.display(),
            self.log_tail(daemon, 30)
        ))
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let t0 = Instant::now();
        for (_, child) in self.daemons.iter_mut().rev() {
            signal("TERM", &[child.id()]);
            let until = Instant::now() + STOP_GRACE;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let left: Vec<u32> = self.processes().into_iter().map(|(p, _)| p).collect();
        signal("KILL", &left);
        drop(self.keepalive.take());
        let until = Instant::now() + STOP_GRACE;
        while matches!(self.init.try_wait(), Ok(None)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(self.init.try_wait(), Ok(None)) {
            let _ = self.init.kill();
            let _ = self.init.wait();
        }
        let left = self.processes();
        if !left.is_empty() {
            eprintln!(
                "{}: processes left in {}: {left:?}",
                self.label, self.net_ns
            );
        }
        drop(self.dir.take());
        eprintln!(
            "{}: stopped in {:.2} s",
            self.label,
            t0.elapsed().as_secs_f64()
        );
    }
}

pub fn processes_in_net_ns(ns: &str) -> Vec<(u32, String)> {
    if ns.is_empty() {
        return Vec::new();
    }
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_link(format!("/proc/{p}/ns/net")).is_ok_and(|l| l.to_string_lossy() == ns)
        })
        .map(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .replace('\0', " ")
                        .trim()
                        .to_string()
                })
                .unwrap_or_default();
            (p, cmd)
        })
        .collect()
}

/// Live processes (PID, argv) whose command line contains `needle`, this one excluded.
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| *p != me)
        .filter_map(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(needle).then(|| (p, cmd.trim().to_string()))
        })
        .collect()
}

fn signal(sig: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

// ---------------------------------------------------------------------------------
// Images without a registry

pub const IMAGE: &str = "localhost/exliar-busybox:test";
pub const PAUSE_IMAGE: &str = "localhost/exliar-pause:test";

/// `target/containers/rootfs.tar`: Debian's static busybox with one symlink per applet,
/// `/etc/passwd` and `/etc/group`. Rebuilt when busybox changes.
pub fn rootfs_tar() -> Result<PathBuf, String> {
    let busybox = find_tool("busybox").ok_or("busybox not found (busybox-static)")?;
    let meta = fs_err::metadata(&busybox).map_err(|e| e.to_string())?;
    let key = format!("{} {} {}", busybox.display(), meta.len(), meta.mtime());
    let dir = cache_dir();
    let tar_path = dir.join("rootfs.tar");
    let stamp = dir.join("rootfs.tar.key");
    if tar_path.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&key) {
        return Ok(tar_path);
    }
    fs_err::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let list = run_ok(Command::new(&busybox).arg("--list"))?;
    let applets = String::from_utf8_lossy(&list.stdout).into_owned();
    let tmp = dir.join("rootfs.tar.part");
    let file = fs_err::File::create(&tmp).map_err(|e| e.to_string())?;
    let mut b = tar::Builder::new(file);
    let dirs = [
        "bin",
        "etc",
        "dev",
        "proc",
        "sys",
        "tmp",
        "root",
        "usr",
        "usr/share",
    ];
    let e = |e: std::io::Error| format!("{}: {e}", tmp.display());
    for d in dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(if d == "tmp" { 0o1777 } else { 0o755 });
        h.set_size(0);
        h.set_mtime(0);
        b.append_data(&mut h, format!("{d}/"), std::io::empty())
            .map_err(e)?;
    }
    let bytes = fs_err::read(&busybox).map_err(|e| e.to_string())?;
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(bytes.len() as u64);
    h.set_mtime(0);
    b.append_data(&mut h, "bin/busybox", bytes.as_slice())
        .map_err(e)?;
    for a in applets.split_whitespace().filter(|a| *a != "busybox") {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(0);
        b.append_link(&mut h, format!("bin/{a}"), "busybox")
            .map_err(e)?;
    }
    for (name, body) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", "root:x:0:\nvideo:x:44:\nrender:x:105:\n"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, name, body.as_bytes()).map_err(e)?;
    }
    b.into_inner().map_err(e)?.sync_all().map_err(e)?;
    fs_err::rename(&tmp, &tar_path).map_err(|e| e.to_string())?;
    fs_err::write(&stamp, key).map_err(|e| e.to_string())?;
    Ok(tar_path)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `target/containers/images.tar`: a `docker save`-format archive holding [`IMAGE`]
/// (CMD sh) and [`PAUSE_IMAGE`] (CMD sleep, the CRI sandbox image), both the rootfs tar
/// as their single layer. `ctr images import` reads it.
pub fn image_archive() -> Result<PathBuf, String> {
    let layer_path = rootfs_tar()?;
    let layer = fs_err::read(&layer_path).map_err(|e| e.to_string())?;
    let diff_id = sha256_hex(&layer);
    let out = cache_dir().join("images.tar");
    let stamp = cache_dir().join("images.tar.key");
    if out.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&diff_id) {
        return Ok(out);
    }
    let config = |cmd: &[&str]| {
        serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "created": "2026-01-01T00:00:00Z",
            "config": {"Cmd": cmd, "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
            "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "exliar tests"}]
        })
        .to_string()
    };
    let main = config(&["/bin/sh"]);
    let pause = config(&["/bin/sleep", "100000"]);
    let (main_id, pause_id) = (sha256_hex(main.as_bytes()), sha256_hex(pause.as_bytes()));
    let manifest = serde_json::json!([
        {"Config": format!("{main_id}.json"), "RepoTags": [IMAGE], "Layers": [format!("{diff_id}/layer.tar")]},
        {"Config": format!("{pause_id}.json"), "RepoTags": [PAUSE_IMAGE], "Layers": [format!("{diff_id}/layer.tar")]}
    ])
    .to_string();
    let tmp = cache_dir().join("images.tar.part");
    let file = fs_err::File::create(&tmp).map_err(|e| e.to_string())?;
    let mut b = tar::Builder::new(file);
    let e = |e: std::io::Error| format!("{}: {e}", tmp.display());
    for (name, body) in [
        (format!("{diff_id}/layer.tar"), layer.as_slice()),
        (format!("{main_id}.json"), main.as_bytes()),
        (format!("{pause_id}.json"), pause.as_bytes()),
        ("manifest.json".to_string(), manifest.as_bytes()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, name, body).map_err(e)?;
    }
    b.into_inner().map_err(e)?.sync_all().map_err(e)?;
    fs_err::rename(&tmp, &out).map_err(|e| e.to_string())?;
    fs_err::write(&stamp, diff_id).map_err(|e| e.to_string())?;
    Ok(out)
}

// ---------------------------------------------------------------------------------
// Fake devices and the spec

/// One fake device node made by the test: `rel` under the fixture root's `dev/`.
pub struct FakeNode {
    pub rel: &'static str,
    pub major: u32,
    pub minor: u32,
    pub mode: u32,
    pub gid: u32,
}

/// The fake host's device nodes. The DRM/KFD nodes carry the numbers of /dev/zero,
/// /dev/null and /dev/full (harmless if opened); the VFIO pair the real numbers of
/// /dev/vfio/vfio (misc 10:196) and a group node (a dynamic major), only stat'ed.
pub const FAKE_NODES: &[FakeNode] = &[
    FakeNode {
        rel: "dri/card0",
        major: 1,
        minor: 5,
        mode: 0o660,
        gid: 44,
    },
    FakeNode {
        rel: "dri/renderD128",
        major: 1,
        minor: 3,
        mode: 0o660,
        gid: 105,
    },
    FakeNode {
        rel: "kfd",
        major: 1,
        minor: 7,
        mode: 0o666,
        gid: 105,
    },
    FakeNode {
        rel: "vfio/vfio",
        major: 10,
        minor: 196,
        mode: 0o666,
        gid: 0,
    },
    FakeNode {
        rel: "vfio/42",
        major: 243,
        minor: 0,
        mode: 0o600,
        gid: 0,
    },
];

/// Makes [`FAKE_NODES`] under `root/dev/` (mknod, chmod, chgrp) and a fake driver
/// file `root/usr/share/exliar-test/driver-version.txt` for a bind mount. Returns
/// nothing; the nodes are at `root/dev/<rel>`.
pub fn make_fake_host(root: &Path) -> Result<(), String> {
    for n in FAKE_NODES {
        let path = root.join("dev").join(n.rel);
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        if !path.exists() {
            run_ok(
                Command::new("mknod")
                    .arg("-m")
                    .arg(format!("{:o}", n.mode))
                    .arg(&path)
                    .arg("c")
                    .arg(n.major.to_string())
                    .arg(n.minor.to_string()),
            )?;
        }
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(n.mode))
            .map_err(|e| e.to_string())?;
        run_ok(Command::new("chgrp").arg(n.gid.to_string()).arg(&path))?;
    }
    let drv = root.join("usr/share/exliar-test");
    fs_err::create_dir_all(&drv).map_err(|e| e.to_string())?;
    fs_err::write(drv.join("driver-version.txt"), "exliar fake driver 1.2.3\n")
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The device names the tests request from the spec [`spec_for_test`] writes.
pub const GPU: &str = "exliar.dev/gpu=0";
pub const GPU_ALL: &str = "exliar.dev/gpu=all";
pub const VFIO: &str = "exliar.dev/vfio=42";

/// Writes the CDI spec(s) for the fake host under `root` into `spec_dir` and returns the
/// file. Today a hand-made spec (cdiVersion 0.5.0, the newest Debian 12's podman reads);
/// the lead replaces the body with `exliar cdi generate --root ROOT --output SPEC_DIR`.
pub fn spec_for_test(root: &Path, spec_dir: &Path) -> Result<PathBuf, String> {
    hand_made_spec(root, spec_dir, true)
}

/// The hand-made spec. `host_paths`: each node names its fake node as `hostPath`
/// (`ROOT/dev/dri/card0`); otherwise only `path` (`/dev/dri/card0`), as a spec for the
/// real host reads, for an engine in a namespace with [`Namespace::overlay_dev`].
pub fn hand_made_spec(root: &Path, spec_dir: &Path, host_paths: bool) -> Result<PathBuf, String> {
    let node = |rel: &str, container: &str| -> Result<serde_json::Value, String> {
        let host = root.join("dev").join(rel);
        let m = fs_err::metadata(&host).map_err(|e| e.to_string())?;
        let mut n = serde_json::json!({
            "path": container,
            "type": "c",
            "permissions": "rw",
            "fileMode": m.mode() & 0o777,
            "gid": m.gid(),
        });
        if host_paths {
            n["hostPath"] = serde_json::json!(host);
        }
        Ok(n)
    };
    let gpu_nodes = vec![
        node("dri/card0", "/dev/dri/card0")?,
        node("dri/renderD128", "/dev/dri/renderD128")?,
        node("kfd", "/dev/kfd")?,
    ];
    let gpu = serde_json::json!({
        "cdiVersion": "0.5.0",
        "kind": "exliar.dev/gpu",
        "containerEdits": {
            "env": ["EXLIAR_CDI=1"],
            "mounts": [{
                "hostPath": root.join("usr/share/exliar-test/driver-version.txt"),
                "containerPath": "/usr/share/exliar-test/driver-version.txt",
                "options": ["ro", "nosuid", "nodev", "bind"]
            }]
        },
        "devices": [
            {"name": "0", "containerEdits": {"env": ["EXLIAR_GPU=0"], "deviceNodes": gpu_nodes}},
            {"name": "all", "containerEdits": {"env": ["EXLIAR_GPU=all"], "deviceNodes": gpu_nodes}}
        ]
    });
    let vfio = serde_json::json!({
        "cdiVersion": "0.5.0",
        "kind": "exliar.dev/vfio",
        "devices": [{"name": "42", "containerEdits": {
            "env": ["EXLIAR_VFIO_GROUP=42"],
            "deviceNodes": [node("vfio/vfio", "/dev/vfio/vfio")?, node("vfio/42", "/dev/vfio/42")?]
        }}]
    });
    fs_err::create_dir_all(spec_dir).map_err(|e| e.to_string())?;
    let gpu_file = spec_dir.join("exliar-gpu.json");
    write_json(&gpu_file, &gpu)?;
    write_json(&spec_dir.join("exliar-vfio.json"), &vfio)?;
    Ok(gpu_file)
}

pub fn write_json(path: &Path, v: &serde_json::Value) -> Result<(), String> {
    let mut f = fs_err::File::create(path).map_err(|e| e.to_string())?;
    let body = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    f.write_all(body.as_bytes()).map_err(|e| e.to_string())
}

/// A minimal spec at `version`: kind `exliar.dev/v<digits>` with one device `gpu0` whose
/// only edit is `EXLIAR_OK=<version>` (nothing that needs a newer version: a name
/// starting with a digit needs 0.5.0 for libraries that check the minimum). Returns the
/// device's qualified name.
pub fn version_spec(spec_dir: &Path, version: &str) -> Result<String, String> {
    let class = format!("v{}", version.replace('.', ""));
    let kind = format!("exliar.dev/{class}");
    let spec = serde_json::json!({
        "cdiVersion": version,
        "kind": kind,
        "devices": [{"name": "gpu0", "containerEdits": {"env": [format!("EXLIAR_OK={version}")]}}]
    });
    write_json(&spec_dir.join(format!("exliar-{class}.json")), &spec)?;
    Ok(format!("{kind}=gpu0"))
}

/// The CDI versions the tests try on every engine, oldest first.
pub const CDI_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0",
];
