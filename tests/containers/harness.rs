//! What every engine of the containers tier shares (see tests/containers/README.md):
//! skipping, the cache under `target/containers/`, the private namespace each engine
//! runs in, the busybox images, the fixture hosts the tests copy (device nodes made by
//! mknod) and exliar's own CDI specs for them.

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

/// Run in the namespace by [`Namespace::overlay_dev`]: `$1` the copied host's root, `$2`
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

/// Run in the namespace by [`Namespace::overlay_files`]: for each folder argument,
/// `FOLDER|NEAREST|REAL`: the folder itself or its nearest parent that exists there,
/// and where that one really is (links resolved).
const NEAREST_DIRS: &str = r#"for d; do
  a=$d
  while [ "$a" != / ] && [ ! -d "$a" ]; do a=${a%/*}; a=${a:-/}; done
  printf '%s|%s|%s\n' "$d" "$a" "$(readlink -f "$a")"
done
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

    /// Makes the copied host's device nodes (`root/dev/...`) appear at their real paths
    /// inside the namespace: `/dev` there becomes a tmpfs holding the host's entries
    /// (bind mounts) except those the copied host has, and a copy of `root/dev`. For a spec
    /// whose nodes name `/dev/dri/card0` with no `hostPath` (what a generator writes
    /// for the host it runs on): engines in the namespace then stat the copied node.
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

    /// Makes the files and folders `paths` (absolute, as on the host copied under
    /// `root`: NVIDIA's `/usr/lib/x86_64-linux-gnu/libcuda.so.1`, `/usr/bin/nvidia-smi`,
    /// `/lib/firmware/nvidia/550.54.14`) visible at those paths inside the namespace
    /// only, so an engine there bind-mounts `root`'s copies. For each path's folder, its
    /// nearest folder that exists in the namespace (`/usr/share` for a missing
    /// `/usr/share/vulkan/icd.d`; `/lib/firmware` is `/usr/lib/firmware` on a merged-/usr
    /// host) gets a read-only overlayfs whose lower layers are `root`'s copy of it above
    /// the folder itself: `root`'s files win and the host's stay visible (the engines'
    /// binaries live in `/usr/bin` too). Nothing is created on the host's filesystem;
    /// the mounts go with the namespace. Outer folders are mounted first. Returns the
    /// mounts made (`TARGET <- LOWER:…`).
    pub fn overlay_files(&self, root: &Path, paths: &[PathBuf]) -> Result<Vec<String>, String> {
        let mut dirs: Vec<PathBuf> = paths
            .iter()
            .filter(|p| p.is_absolute() && !p.starts_with(root))
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        if dirs.is_empty() {
            return Ok(Vec::new());
        }
        let o = run_ok(
            self.command("sh")
                .args(["-c", NEAREST_DIRS, "nearest-dirs"])
                .args(&dirs),
        )?;
        let mut layers: std::collections::BTreeMap<PathBuf, Vec<PathBuf>> = Default::default();
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            let mut f = line.split('|');
            let (Some(_), Some(near), Some(real)) = (f.next(), f.next(), f.next()) else {
                return Err(format!("nearest-dirs: {line:?}"));
            };
            let real = PathBuf::from(real);
            if real.parent().is_none() {
                return Err(format!("{line}: will not overlay /"));
            }
            let lower = super::check::in_root(root, Path::new(near))?;
            if !lower.is_dir() {
                return Err(format!("{}: not a folder under the root", lower.display()));
            }
            let l = layers.entry(real).or_default();
            if !l.contains(&lower) {
                l.push(lower);
            }
        }
        let mut targets: Vec<(PathBuf, Vec<PathBuf>)> = layers.into_iter().collect();
        targets.sort_by_key(|(t, _)| t.components().count());
        let mut made = Vec::new();
        for (target, lowers) in targets {
            let all: Vec<&Path> = lowers
                .iter()
                .map(PathBuf::as_path)
                .chain([target.as_path()])
                .collect();
            for p in &all {
                let s = p.to_string_lossy();
                if s.contains([':', ',', '\n']) {
                    return Err(format!("{s}: cannot be an overlayfs layer"));
                }
            }
            let lowerdir = all
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":");
            run_ok(
                self.command("mount")
                    .args(["-t", "overlay", "exliar-files", "-o"])
                    .arg(format!("ro,lowerdir={lowerdir}"))
                    .arg(&target),
            )?;
            made.push(format!("{} <- {lowerdir}", target.display()));
        }
        Ok(made)
    }

    /// A copy of fixture host `fixture` at `dir()/<fixture>` ([`fixture_host`]) and
    /// exliar's specs for it in the engine's spec directory ([`spec_for_test`]).
    /// Returns the copy's root. The engine sees nothing of it at the described host's
    /// paths before [`Namespace::show_host`].
    pub fn fixture_with_spec(&self, fixture: &str) -> Result<PathBuf, String> {
        let root = self.dir().join(fixture);
        fixture_host(fixture, &root)?;
        let specs = spec_for_test(&root, &self.spec_dir())?;
        eprintln!(
            "{fixture}: exliar cdi generate wrote {:?}",
            specs
                .iter()
                .filter_map(|p| p.file_name())
                .collect::<Vec<_>>()
        );
        Ok(root)
    }

    /// Shows the host copied under `root` to the engine at the paths its specs name:
    /// its `/dev` ([`Namespace::overlay_dev`]) and the `hostPath` of every mount in the
    /// spec directory ([`Namespace::overlay_files`]).
    pub fn show_host(&self, root: &Path) -> Result<(), String> {
        self.overlay_dev(root)?;
        let sources = super::check::mount_sources(&self.spec_dir())?;
        for m in self.overlay_files(root, &sources)? {
            eprintln!("overlay: {m}");
        }
        Ok(())
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
// Described hosts and their specs

/// The fixture hosts the injection tests describe (tests/fixtures/hosts/).
/// hw17: i915 0000:00:02.0 (gpu 0, renderD128), amdgpu 0000:03:00.0 (gpu 1, renderD129
/// and /dev/kfd), an RX 550 on vfio-pci 0000:04:00.0 (vfio 0, /dev/vfio/23).
pub const HW17: &str = "hw17-alderlake-asus-rx6700xt-rx550-vfio";
/// NVIDIA's open driver 550.54.14 on an RTX 3060 at 0000:2d:00.0, with its libraries,
/// nvidia-smi, GSP firmware folder and Vulkan ICD as placeholder files.
pub const NVIDIA: &str = "drv-nvidia-open-rtx3060";

/// The repository: exliar's manifest directory, or its parent when this harness is
/// included by path from the workspace member `device-plugin/` (its tests/cri.rs).
pub fn repo_dir() -> PathBuf {
    let m = Path::new(env!("CARGO_MANIFEST_DIR"));
    if m.join("tests/containers").is_dir() {
        m.to_path_buf()
    } else {
        m.parent().unwrap_or(m).to_path_buf()
    }
}

/// The exliar binary: cargo's for this package's tests; from a workspace member
/// (which has no `CARGO_BIN_EXE_exliar`) `target/<profile>/exliar` beside the test's
/// own directory (`cargo test --workspace` builds it), or `EXLIAR_BIN`.
pub fn exliar_bin() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_exliar") {
        return p.into();
    }
    if let Some(p) = std::env::var_os("EXLIAR_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    profile.join("exliar")
}

/// Where the fixture hosts are.
pub fn fixtures_dir() -> PathBuf {
    repo_dir().join("tests/fixtures/hosts")
}

/// One line of a fixture's `exliar-nodes.txt`: `path type major:minor mode uid gid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureNode {
    /// Relative to the host's root (`dev/dri/renderD128`).
    pub rel: String,
    pub kind: char,
    pub major: u32,
    pub minor: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The device nodes a fixture host had (its `exliar-nodes.txt`; none without one).
pub fn fixture_nodes(fixture: &str) -> Result<Vec<FixtureNode>, String> {
    let path = fixtures_dir().join(fixture).join("exliar-nodes.txt");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = fs_err::read_to_string(&path).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || format!("{}: bad line {line:?}", path.display());
        let f: Vec<&str> = line.split_whitespace().collect();
        let [rel, kind, numbers, mode, uid, gid] = f[..] else {
            return Err(bad());
        };
        let (major, minor) = numbers.split_once(':').ok_or_else(bad)?;
        let kind = match kind {
            "c" => 'c',
            "b" => 'b',
            _ => return Err(bad()),
        };
        let num = |s: &str| s.parse::<u32>().map_err(|_| bad());
        out.push(FixtureNode {
            rel: rel.trim_start_matches('/').to_string(),
            kind,
            major: num(major)?,
            minor: num(minor)?,
            mode: u32::from_str_radix(mode, 8).map_err(|_| bad())?,
            uid: num(uid)?,
            gid: num(gid)?,
        });
    }
    Ok(out)
}

/// Folders of a fixture whose empty files are placeholders for user-space files
/// (libraries, binaries, firmware); `sys/` and `proc/` are never touched.
const PLACEHOLDER_DIRS: &[&str] = &["usr", "lib", "lib64", "opt"];

/// A real copy of fixture host `fixture` at `dest` (which must not exist): `cp -a`
/// (links kept), then every node of its `exliar-nodes.txt` made by `mknod` under `dest`
/// (a placeholder file there is removed first) with that mode, uid and gid. Empty
/// placeholder files under `usr/`, `lib/`, `lib64/`, `opt/` get a line naming them, so
/// each has its own content and a bind mount of the wrong file is caught by its sha256
/// (exliar's scan lists such files by name and never reads them).
pub fn fixture_host(fixture: &str, dest: &Path) -> Result<(), String> {
    let src = fixtures_dir().join(fixture);
    if !src.is_dir() {
        return Err(format!("no fixture host {}", src.display()));
    }
    if dest.exists() {
        return Err(format!("{}: exists", dest.display()));
    }
    run_ok(Command::new("cp").arg("-a").arg(&src).arg(dest))?;
    for n in fixture_nodes(fixture)? {
        let path = dest.join(&n.rel);
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        if std::fs::symlink_metadata(&path).is_ok() {
            fs_err::remove_file(&path).map_err(|e| e.to_string())?;
        }
        run_ok(
            Command::new("mknod")
                .arg("-m")
                .arg(format!("{:o}", n.mode))
                .arg(&path)
                .arg(n.kind.to_string())
                .arg(n.major.to_string())
                .arg(n.minor.to_string()),
        )
        .map_err(|e| format!("{fixture}: mknod {}: {e}", n.rel))?;
        std::os::unix::fs::chown(&path, Some(n.uid), Some(n.gid))
            .map_err(|e| format!("chown {}: {e}", path.display()))?;
        // chown clears set-id bits: the mode last.
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(n.mode))
            .map_err(|e| e.to_string())?;
        let m = fs_err::symlink_metadata(&path).map_err(|e| e.to_string())?;
        let want = (n.major, n.minor, n.mode, n.uid, n.gid);
        let got = (
            rustix::fs::major(m.rdev()),
            rustix::fs::minor(m.rdev()),
            m.mode() & 0o7777,
            m.uid(),
            m.gid(),
        );
        if got != want {
            return Err(format!("{}: made {got:?}, want {want:?}", path.display()));
        }
    }
    for d in PLACEHOLDER_DIRS {
        fill_placeholders(dest, &dest.join(d))?;
    }
    Ok(())
}

fn fill_placeholders(root: &Path, dir: &Path) -> Result<(), String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in rd {
        let e = e.map_err(|e| e.to_string())?;
        let t = e.file_type().map_err(|e| e.to_string())?;
        let path = e.path();
        if t.is_dir() {
            fill_placeholders(root, &path)?;
        } else if t.is_file() && e.metadata().map_err(|e| e.to_string())?.len() == 0 {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            fs_err::write(
                &path,
                format!("exliar test placeholder /{}\n", rel.display()),
            )
            .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// The folder `exliar cdi generate --output` is given: the path on the described
/// host, written under its root.
pub const CDI_OUTPUT: &str = "/var/run/cdi";

/// exliar's own specs for the host copied at `root`: runs this package's binary
/// `exliar --root ROOT cdi generate --output /var/run/cdi --yes`, which must exit 0,
/// and copies every `ROOT/var/run/cdi/*.json` byte for byte into `spec_dir` (the
/// engine's). Returns the copies, sorted. Errors when it writes none.
pub fn spec_for_test(root: &Path, spec_dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut cmd = Command::new(exliar_bin());
    cmd.arg("--root")
        .arg(root)
        .args(["cdi", "generate", "--output", CDI_OUTPUT, "--yes"]);
    let o = run_ok(&mut cmd).map_err(|e| format!("exliar cdi generate: {e}"))?;
    let written = super::check::in_root(root, Path::new(CDI_OUTPUT))?;
    let mut files: Vec<PathBuf> = fs_err::read_dir(&written)
        .map_err(|e| format!("{e}\n{}", text(&o)))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "exliar cdi generate wrote no spec in {}:\n{}",
            written.display(),
            text(&o)
        ));
    }
    fs_err::create_dir_all(spec_dir).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for f in files {
        let to = spec_dir.join(f.file_name().unwrap_or_default());
        fs_err::copy(&f, &to).map_err(|e| e.to_string())?;
        out.push(to);
    }
    Ok(out)
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
