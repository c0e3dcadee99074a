//! A real, throwaway libvirt daemon for tests, started without touching the host's
//! configuration (see tests/libvirt/README.md).
//!
//! `virtlogd` and `libvirtd` run in a private mount and network namespace made by
//! `unshare`. Inside it, `/etc/libvirt`, `/run/libvirt`, `/var/lib/libvirt` and
//! `/var/log/libvirt` are bind mounts of directories under one temporary directory (and
//! so are `/var/lib/exliar` and `/etc/exliar`, for exliar run in the namespace), and
//! `/var/cache/libvirt` (QEMU capabilities) is a cache under cargo's target directory.
//! So domains and networks defined by tests, the daemon's socket, nvram, swtpm state,
//! QEMU logs and the `default` network's bridge and dnsmasq never reach the host. When
//! `/dev/kvm` exists but libvirt's QEMU user cannot use it (the kvm_pvm device of the
//! development machines: 0600 root), a mode-000 file is bound over it in the namespace,
//! so libvirt sees "no KVM" consistently instead of re-probing QEMU on every lookup.
//!
//! Clients reach the daemon with `qemu:///system?socket=<tmp>/run/libvirt-sock`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Why this host cannot run the libvirt tier (not root, packages missing, no
/// namespaces). Tests print SKIP and pass, except under CI, where it is a failure.
#[derive(Debug, Clone)]
pub struct Unavailable(pub String);

/// Debian 12 packages the tier needs; kept in tests/libvirt/apt-packages.txt.
pub const PACKAGES_FILE: &str = "tests/libvirt/apt-packages.txt";

/// How long the daemon may take to answer `virsh version` (the first QEMU capabilities
/// probe is part of it: ~4 s on a 2-core TCG box with a cold cache).
const READY_DEADLINE: Duration = Duration::from_secs(90);
/// How long a daemon gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The first process in the namespaces: mounts, starts the daemons, then waits for its
/// stdin to close (Drop, or the test process exiting) and kills whatever is left in
/// its network namespace. `$1` is the temporary directory, `$2` is 1 to mask /dev/kvm.
const INIT: &str = r#"set -eu
T=$1 MASK=$2
mkdir -p /run/libvirt
mount --bind "$T/etc" /etc/libvirt
mount --bind "$T/run" /run/libvirt
mount --bind "$T/lib" /var/lib/libvirt
mount --bind "$T/cache" /var/cache/libvirt
mount --bind "$T/log" /var/log/libvirt
# exliar run in the namespace (d.command) keeps its state and VM files here too
mkdir -p /var/lib/exliar /etc/exliar
mount --bind "$T/exliar" /var/lib/exliar
mount --bind "$T/exliar-etc" /etc/exliar
if [ "$MASK" = 1 ]; then mount --bind "$T/nokvm" /dev/kvm; fi
# No D-Bus for this daemon: no firewalld or machined on the host acting for it.
if [ -d /run/dbus ]; then mount -t tmpfs -o mode=755 exliar-no-dbus /run/dbus; fi
if command -v ip >/dev/null; then ip link set lo up || true; fi
LIBVIRT_LOG_OUTPUTS="3:file:$T/virtlogd.log" /usr/sbin/virtlogd --daemon --pid-file "$T/virtlogd.pid" </dev/null
LIBVIRT_LOG_OUTPUTS="3:file:$T/libvirtd.log" /usr/sbin/libvirtd --daemon --pid-file /run/libvirt/libvirtd.pid </dev/null
echo "namespace ready"
while read -r _; do :; done
set +e
# The network namespace: QEMU is in it too when libvirt gives it its own mount namespace.
me=$(readlink /proc/$$/ns/net)
alive() { [ "$(readlink "/proc/$1/ns/net" 2>/dev/null)" = "$me" ]; }
for f in "$T/run/libvirtd.pid" "$T/virtlogd.pid"; do
  if [ -s "$f" ]; then p=$(cat "$f"); alive "$p" && kill -TERM "$p"; fi
done
for p in /proc/[0-9]*; do
  p=${p#/proc/}; [ "$p" = $$ ] && continue; alive "$p" && kill -KILL "$p"
done
rm -rf "$T"
"#;

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The project's convention for a tier that cannot run here: SKIP (and pass) on a
/// developer's machine, fail under CI.
pub fn skip(test: &str, why: &Unavailable) {
    let msg = format!(
        "libvirt test `{test}` cannot run here: {}. Install the packages in {PACKAGES_FILE} \
         and run as root (see tests/libvirt/README.md).",
        why.0
    );
    assert!(!in_ci(), "{msg} (CI is set, so this is a failure)");
    eprintln!("SKIP: {msg}");
}

/// Serialises the tests of a binary that use libvirt: the daemons and the TCG guests
/// they start are CPU-bound, and the development machines have 2 cores.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// One daemon for the whole test binary, started on first use, with the lock of
/// [`serial`] held for as long as the returned value lives. Processes are stopped
/// when the binary exits (the namespace's first process sees its stdin close).
/// `None` (SKIP printed) when the host cannot run it.
pub fn shared(test: &str) -> Option<Shared> {
    static SHARED: OnceLock<Result<Daemon, Unavailable>> = OnceLock::new();
    let guard = serial();
    match SHARED.get_or_init(Daemon::start) {
        Ok(daemon) => Some(Shared {
            daemon,
            _guard: guard,
        }),
        Err(u) => {
            skip(test, u);
            None
        }
    }
}

/// The shared daemon, used under the [`serial`] lock.
pub struct Shared {
    daemon: &'static Daemon,
    _guard: MutexGuard<'static, ()>,
}

impl std::ops::Deref for Shared {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        self.daemon
    }
}

pub struct Daemon {
    /// Holds etc/, run/, lib/, log/, the logs and the pid files. `None` once dropped.
    dir: Option<tempfile::TempDir>,
    /// `unshare` exec'd into the namespace's first process (`sh -c INIT`).
    init: Child,
    /// Closing it tells the first process to clean up.
    keepalive: Option<ChildStdin>,
    /// `net:[inode]` of the private network namespace: what identifies this daemon's
    /// processes (QEMU gets its own mount namespace from libvirt unless `namespaces =
    /// []`, but always stays in the daemon's network namespace).
    net_ns: String,
    uri: String,
    kvm_masked: bool,
    startup: Duration,
}

/// Checks that this host can run the daemon at all.
pub fn host_ready() -> Result<(), Unavailable> {
    if effective_uid() != Some(0) {
        return Err(Unavailable("not running as root".into()));
    }
    let missing: Vec<&str> = [
        "libvirtd",
        "virtlogd",
        "virsh",
        "virt-xml-validate",
        "xmllint",
        "qemu-system-x86_64",
        "unshare",
        "nsenter",
        "mount",
    ]
    .into_iter()
    .filter(|t| find_tool(t).is_none())
    .collect();
    if !missing.is_empty() {
        return Err(Unavailable(format!("missing {}", missing.join(", "))));
    }
    for d in [
        "/etc/libvirt",
        "/var/lib/libvirt",
        "/var/cache/libvirt",
        "/var/log/libvirt",
    ] {
        if !Path::new(d).is_dir() {
            return Err(Unavailable(format!(
                "{d} is absent (libvirt-daemon-system)"
            )));
        }
    }
    Ok(())
}

impl Daemon {
    /// Starts virtlogd and libvirtd in their own namespaces and waits until the daemon
    /// answers. Panics (with the daemon's log) when it is installed but does not come up.
    pub fn start() -> Result<Daemon, Unavailable> {
        host_ready()?;
        let t0 = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("exliar-libvirt-")
            .tempdir()
            .map_err(|e| Unavailable(format!("temporary directory: {e}")))?;
        let root = dir.path().to_path_buf();
        let kvm_masked = kvm_needs_mask();
        prepare_tree(&root, kvm_masked).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
        let cache = cache_dir();
        fs_err::create_dir_all(&cache).expect("capabilities cache");
        std::os::unix::fs::symlink(&cache, root.join("cache")).expect("cache link");

        // unshare's and the mounts' errors too, for `logs()`.
        let init_log = std::fs::File::create(root.join("init.log")).expect("init.log");
        let mut init = Command::new("unshare")
            .args([
                "--mount",
                "--net",
                "--propagation",
                "private",
                "sh",
                "-c",
                INIT,
                "sh",
            ])
            .arg(&root)
            .arg(if kvm_masked { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(init_log.try_clone().expect("init.log"))
            .stderr(init_log)
            .spawn()
            .map_err(|e| Unavailable(format!("unshare: {e}")))?;
        let keepalive = init.stdin.take();
        let uri = format!("qemu:///system?socket={}/run/libvirt-sock", root.display());
        let mut d = Daemon {
            dir: Some(dir),
            init,
            keepalive,
            net_ns: String::new(),
            uri,
            kvm_masked,
            startup: Duration::ZERO,
        };
        let deadline = t0 + READY_DEADLINE;
        loop {
            if let Ok(Some(status)) = d.init.try_wait() {
                let log = d.logs();
                if log.contains("unshare: ") && log.contains("ermission") {
                    return Err(Unavailable(format!("no private namespaces here: {log}")));
                }
                panic!("libvirt namespace exited ({status}) before the daemon answered\n{log}");
            }
            let up = Command::new("virsh")
                .args(["-c", &d.uri, "version"])
                .output()
                .is_ok_and(|o| o.status.success());
            if up && d.pid("virtlogd").is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "libvirtd did not answer `virsh -c {} version` within {READY_DEADLINE:?}\n{}",
                d.uri,
                d.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        for kind in ["mnt", "net"] {
            let theirs = ns_of(d.init.id(), kind).unwrap_or_default();
            assert!(
                theirs.starts_with(kind)
                    && Some(&theirs) != ns_of(std::process::id(), kind).as_ref(),
                "libvirt namespace: the first process's {kind} namespace is {theirs:?}, not a private one"
            );
        }
        d.net_ns = ns_of(d.init.id(), "net").unwrap_or_default();
        d.startup = t0.elapsed();
        eprintln!(
            "libvirt: daemons up in {:.2} s ({}; /dev/kvm {})",
            d.startup.as_secs_f64(),
            d.uri,
            if kvm_masked { "masked" } else { "as is" }
        );
        Ok(d)
    }

    /// `qemu:///system?socket=…` of this daemon.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The temporary directory (etc/, run/, lib/, log/, the logs).
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// A command that runs in the daemon's mount and network namespaces (`nsenter`), so
    /// it sees the daemon's /etc/libvirt, /var/lib/libvirt, /run/libvirt… and the plain
    /// `qemu:///system` URI reaches this daemon. For running exliar as the daemon's host.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, program: S) -> Command {
        let pid = self.init.id();
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount=/proc/{pid}/ns/mnt"))
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .arg("--")
            .arg(program)
            .env_remove("LIBVIRT_DEFAULT_URI");
        c
    }

    /// A directory for the test's disk images and ISOs: the same absolute path inside
    /// and outside the namespace, reachable by libvirt-qemu. Inside the namespace it is
    /// also /var/lib/libvirt/images.
    pub fn images(&self) -> PathBuf {
        self.dir().join("lib/images")
    }

    /// `net:[inode]` of the daemon's network namespace, where all its processes are.
    pub fn net_ns(&self) -> &str {
        &self.net_ns
    }

    /// `mnt:[inode]` of the daemon's mount namespace.
    pub fn mnt_ns(&self) -> String {
        ns_of(self.init.id(), "mnt").unwrap_or_default()
    }

    pub fn kvm_masked(&self) -> bool {
        self.kvm_masked
    }

    /// From spawning `unshare` to the first successful `virsh version`.
    pub fn startup(&self) -> Duration {
        self.startup
    }

    /// `virsh -c URI ARGS…`.
    pub fn virsh<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Output {
        Command::new("virsh")
            .arg("-c")
            .arg(&self.uri)
            .args(args)
            .output()
            .expect("running virsh")
    }

    /// `virsh -c URI ARGS…`, its stdout; panics with stderr and the daemon's log when it fails.
    #[track_caller]
    pub fn virsh_ok<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> String {
        let o = self.virsh(args);
        let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
        assert!(
            o.status.success(),
            "virsh {} failed ({:?}): {}\n{}",
            shown.join(" "),
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).trim(),
            self.log_tail(30)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The oracle's daemon half: `virsh define` of `xml`, then `dumpxml --inactive` and
    /// `undefine --nvram` (always, once defined). Returns the daemon's XML, or the
    /// daemon's error. Also an error: a `<hostdev>` that the input asks to be managed
    /// (any `managed` other than absent or `no`) but the daemon's XML does not have as
    /// `managed='yes'` (libvirt silently turns e.g. `managed='true'` into `no`).
    pub fn define_check(&self, xml: &str) -> Result<String, String> {
        let file = tempfile::Builder::new()
            .prefix("define-")
            .suffix(".xml")
            .tempfile_in(self.dir())
            .map_err(|e| format!("temporary file: {e}"))?;
        fs_err::write(file.path(), xml).map_err(|e| e.to_string())?;
        let o = self.virsh(&[std::ffi::OsStr::new("define"), file.path().as_os_str()]);
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).trim().to_string());
        }
        let said = String::from_utf8_lossy(&o.stdout);
        let name = said
            .split('\'')
            .nth(1)
            .ok_or_else(|| format!("virsh define said {said:?}, no domain name"))?
            .to_string();
        let dumped = self.virsh(&["dumpxml", "--inactive", &name]);
        let undefined = self.virsh(&["undefine", "--nvram", &name]);
        if !dumped.status.success() {
            return Err(format!(
                "dumpxml {name}: {}",
                String::from_utf8_lossy(&dumped.stderr).trim()
            ));
        }
        if !undefined.status.success() {
            return Err(format!(
                "undefine --nvram {name}: {}",
                String::from_utf8_lossy(&undefined.stderr).trim()
            ));
        }
        let out = String::from_utf8_lossy(&dumped.stdout).into_owned();
        managed_kept(xml, &out)?;
        Ok(out)
    }

    /// PID from `<dir>/<daemon>.pid`, when that process is still in the namespace.
    pub fn pid(&self, daemon: &str) -> Option<u32> {
        let text = fs_err::read_to_string(self.dir().join(format!("{daemon}.pid"))).ok()?;
        text.trim().parse().ok()
    }

    /// Every live process in the daemon's network namespace (PID, argv), the first
    /// process included: libvirtd, virtlogd, QEMU, swtpm, dnsmasq...
    pub fn processes(&self) -> Vec<(u32, String)> {
        processes_in_ns(&self.net_ns)
    }

    /// libvirtd's log, virtlogd's and the first process's output, for error messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["init.log", "virtlogd.log", "libvirtd.log"] {
            let text = fs_err::read_to_string(self.dir().join(f)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            s += &format!("--- {f} (last {} lines)\n{}\n", tail.len(), tail.join("\n"));
        }
        s
    }

    /// The last `n` lines of libvirtd's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = fs_err::read_to_string(self.dir().join("libvirtd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- libvirtd.log (last lines)\n{}",
            lines[lines.len().saturating_sub(n)..].join("\n")
        )
    }

    fn alive_in_ns(&self, pid: u32) -> bool {
        ns_of(pid, "net").as_deref() == Some(self.net_ns.as_str())
    }

    /// SIGTERM, up to [`STOP_GRACE`] for it to go, then SIGKILL.
    fn stop(&self, what: &str, pid: u32) {
        if !self.alive_in_ns(pid) {
            return;
        }
        signal("TERM", &[pid]);
        let until = Instant::now() + STOP_GRACE;
        while self.alive_in_ns(pid) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.alive_in_ns(pid) {
            eprintln!("libvirt: {what} ({pid}) ignored SIGTERM for {STOP_GRACE:?}, SIGKILL");
            signal("KILL", &[pid]);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let t0 = Instant::now();
        if !self.net_ns.is_empty() {
            for d in ["libvirtd", "virtlogd"] {
                if let Some(pid) = self.pid(d) {
                    self.stop(d, pid);
                }
            }
            // QEMU, swtpm, dnsmasq: libvirtd leaves them running when it stops. (And
            // anything a test runs in the namespace with `command`.)
            let init = self.init.id();
            let left: Vec<u32> = self
                .processes()
                .into_iter()
                .map(|(p, _)| p)
                .filter(|p| *p != init)
                .collect();
            signal("KILL", &left);
        }
        // The first process kills anything still there, removes the directory, exits.
        drop(self.keepalive.take());
        let until = Instant::now() + STOP_GRACE;
        while matches!(self.init.try_wait(), Ok(None)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(self.init.try_wait(), Ok(None)) {
            let _ = self.init.kill();
            let _ = self.init.wait();
        }
        let left = if self.net_ns.is_empty() {
            Vec::new()
        } else {
            self.processes()
        };
        if !left.is_empty() {
            eprintln!("libvirt: processes left in {}: {left:?}", self.net_ns);
        }
        drop(self.dir.take());
        eprintln!(
            "libvirt: daemons stopped in {:.2} s",
            t0.elapsed().as_secs_f64()
        );
    }
}

/// The schema half of the oracle: `virt-xml-validate FILE domain` (libvirt-clients;
/// it runs xmllint from libxml2-utils). The error carries the validator's output.
pub fn xml_validate(xml: &str) -> Result<(), String> {
    let mut file = tempfile::Builder::new()
        .prefix("exliar-domain-")
        .suffix(".xml")
        .tempfile()
        .map_err(|e| format!("temporary file: {e}"))?;
    file.write_all(xml.as_bytes())
        .map_err(|e| format!("{}: {e}", file.path().display()))?;
    let o = Command::new("virt-xml-validate")
        .arg(file.path())
        .arg("domain")
        .output()
        .map_err(|e| format!("virt-xml-validate: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "virt-xml-validate exit {:?}: {}{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

/// `xml` with `<domain type='kvm'>` turned into `type='qemu'` (TCG), for defining a
/// generated domain on a daemon whose QEMU has no KVM (libvirt refuses `kvm` there).
pub fn tcg(xml: &str) -> String {
    xml.replacen("<domain type='kvm'", "<domain type='qemu'", 1)
        .replacen("<domain type=\"kvm\"", "<domain type=\"qemu\"", 1)
}

/// Each `<hostdev>` of a domain XML: its `<source><address>` ("dddd:bb:ss.f", or
/// "hostdev #N" for one without a PCI source address) and its
/// `managed` attribute (None when absent). Errors on XML that does not parse.
pub fn hostdevs(xml: &str) -> Result<Vec<(String, Option<String>)>, String> {
    use quick_xml::events::{BytesStart, Event};
    fn attrs(e: &BytesStart) -> BTreeMap<String, String> {
        e.attributes()
            .flatten()
            .map(|a| (a.key.as_ref().to_string(), a.value.to_string()))
            .collect()
    }
    fn num(v: Option<&String>) -> u32 {
        v.and_then(|s| match s.strip_prefix("0x") {
            Some(h) => u32::from_str_radix(h, 16).ok(),
            None => s.parse().ok(),
        })
        .unwrap_or(0)
    }
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut current: Option<(String, Option<String>)> = None;
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| format!("domain XML: {e}"))?;
        let (start, empty) = match &ev {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            Event::End(_) => {
                if path.pop().as_deref() == Some("hostdev") {
                    out.extend(current.take());
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let Some(e) = start else { continue };
        let name = e.name().as_ref().to_string();
        let a = attrs(e);
        if name == "hostdev" {
            // Keyed by the PCI source address when there is one (USB: by position).
            let key = format!("hostdev #{}", out.len() + 1);
            current = Some((key, a.get("managed").cloned()));
        } else if name == "address"
            && path.last().map(String::as_str) == Some("source")
            && path.iter().rev().nth(1).map(String::as_str) == Some("hostdev")
            && let Some(cur) = current.as_mut()
        {
            cur.0 = format!(
                "{:04x}:{:02x}:{:02x}.{:x}",
                num(a.get("domain")),
                num(a.get("bus")),
                num(a.get("slot")),
                num(a.get("function"))
            );
        }
        if empty {
            if name == "hostdev" {
                out.extend(current.take());
            }
        } else {
            path.push(name);
        }
    }
    Ok(out)
}

/// Every `<hostdev>` of `input` meant to be managed (a `managed` attribute other than
/// `no`) is `managed='yes'` in the daemon's `output`, matched by source address.
pub fn managed_kept(input: &str, output: &str) -> Result<(), String> {
    let after: BTreeMap<String, Option<String>> = hostdevs(output)?.into_iter().collect();
    for (addr, managed) in hostdevs(input)? {
        let Some(asked) = managed.filter(|m| m != "no") else {
            continue;
        };
        match after.get(&addr) {
            Some(Some(m)) if m == "yes" => {}
            Some(got) => {
                return Err(format!(
                    "hostdev {addr}: managed='{asked}' was defined as managed={} by libvirt \
                     (only 'yes' and 'no' are valid; libvirt silently downgrades the rest)",
                    got.as_deref()
                        .map_or("(absent)".into(), |g| format!("'{g}'"))
                ));
            }
            None => return Err(format!("hostdev {addr}: missing from the defined domain")),
        }
    }
    Ok(())
}

/// Live processes (PID, argv) in namespace `ns` (`net:[inode]`, `mnt:[inode]`…, as
/// /proc/PID/ns/* links read). Zombies have no namespaces and are not listed.
pub fn processes_in_ns(ns: &str) -> Vec<(u32, String)> {
    let kind = ns.split(':').next().unwrap_or_default();
    all_pids()
        .into_iter()
        .filter(|p| ns_of(*p, kind).as_deref() == Some(ns))
        .map(|p| (p, cmdline(p)))
        .collect()
}

/// Live processes (PID, argv) whose command line contains `needle` (like `pgrep -f`),
/// this test process excluded.
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|p| *p != me)
        .map(|p| (p, cmdline(p)))
        .filter(|(_, c)| c.contains(needle))
        .collect()
}

fn all_pids() -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn ns_of(pid: u32, kind: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
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

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// `/dev/kvm` exists but libvirt's QEMU user (libvirt-qemu, group kvm) cannot open it:
/// libvirt then re-probes QEMU on every capabilities lookup (~4 s each; a `define`
/// took 76 s on the kvm_pvm machines). `EXLIAR_LIBVIRT_MASK_KVM=0|1` overrides.
fn kvm_needs_mask() -> bool {
    match std::env::var("EXLIAR_LIBVIRT_MASK_KVM").as_deref() {
        Ok("1") => return true,
        Ok("0") => return false,
        _ => {}
    }
    let Ok(meta) = std::fs::metadata("/dev/kvm") else {
        return false;
    };
    let mode = meta.mode();
    let kvm_gid = std::fs::read_to_string("/etc/group").ok().and_then(|g| {
        g.lines()
            .find(|l| l.starts_with("kvm:"))
            .and_then(|l| l.split(':').nth(2)?.parse::<u32>().ok())
    });
    let usable = mode & 0o006 == 0o006 || (mode & 0o060 == 0o060 && Some(meta.gid()) == kvm_gid);
    !usable
}

/// Where the QEMU capabilities cache lives: kept between runs under cargo's target
/// directory (libvirt re-probes when QEMU, libvirt, the kernel or KVM changed), so
/// only the first daemon pays the probe.
fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("libvirt-cache")
}

/// etc/ (the host's /etc/libvirt *.conf files, the package's `default` network, no
/// domains, no hooks), empty run/ lib/ log/, and nokvm (a mode-000 file).
fn prepare_tree(root: &Path, mask_kvm: bool) -> std::io::Result<()> {
    // libvirt-qemu must be able to reach images the tests put under the directory.
    fs_err::set_permissions(root, std::fs::Permissions::from_mode(0o711))?;
    for (d, mode) in [
        ("etc", 0o755),
        ("run", 0o755),
        ("lib", 0o755),
        ("lib/images", 0o711),
        ("log", 0o755),
        ("exliar", 0o755),
        ("exliar-etc", 0o755),
        ("etc/qemu/networks", 0o755),
    ] {
        let p = root.join(d);
        fs_err::create_dir_all(&p)?;
        fs_err::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
    }
    for entry in fs_err::read_dir("/etc/libvirt")? {
        let entry = entry?;
        let name = entry.file_name();
        if entry.file_type()?.is_file() && name.to_string_lossy().ends_with(".conf") {
            fs_err::copy(entry.path(), root.join("etc").join(&name))?;
        }
    }
    let net = Path::new("/usr/share/libvirt/networks/default.xml");
    if net.is_file() {
        fs_err::copy(net, root.join("etc/qemu/networks/default.xml"))?;
    }
    if mask_kvm {
        // libvirt's per-domain /dev namespace cannot recreate a /dev/kvm that is a
        // bind-mounted file ("Unable to move … mount to /dev/kvm"): turn it off.
        let conf = root.join("etc/qemu.conf");
        let mut text = fs_err::read_to_string(&conf).unwrap_or_default();
        text.push_str(
            "\n# exliar tests: /dev/kvm is masked in this daemon's namespace\nnamespaces = []\n",
        );
        fs_err::write(&conf, text)?;
        let nokvm = root.join("nokvm");
        fs_err::write(&nokvm, b"")?;
        fs_err::set_permissions(&nokvm, std::fs::Permissions::from_mode(0o000))?;
    }
    Ok(())
}
