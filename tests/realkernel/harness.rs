//! Scenario description, one-time setup and the boot of one guest.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::initramfs;
use super::kernel::{Kernel, Tools, Unavailable};
use super::qemu::{self, Ending};
use super::transport;
use super::truth::Truth;

/// The exliar binary under test (also copied into the guest).
pub const EXLIAR: &str = env!("CARGO_BIN_EXE_exliar");

/// Default per-guest deadline; `EXLIAR_REALKERNEL_TIMEOUT` (seconds) overrides it.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The emulated IOMMU of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Iommu {
    /// `-device intel-iommu,intremap=on`, kernel `intel_iommu=on iommu=pt`.
    Intel,
    /// `-device amd-iommu,intremap=on` (takes slot 00:01.0), kernel `iommu=pt`.
    Amd,
    /// No vIOMMU: no groups.
    None,
}

/// One guest configuration: a q35 machine plus the given QEMU device arguments.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub iommu: Iommu,
    /// QEMU arguments adding the scenario's devices, whitespace-separated (no shell
    /// involved: values must not contain spaces).
    pub devices: String,
    /// Appended to the guest kernel's command line.
    pub cmdline: String,
    /// Shell run in the guest (sourced by `/init` in a subshell, so its `run_exliar`
    /// helper is available) after the standard exliar commands and before `/out` is
    /// shipped; its stdout, stderr and status land in `scenario.{stdout,stderr,rc}`.
    pub guest_script: Option<String>,
    /// Deadline for this guest when it needs longer than the default (the
    /// larger of this and `EXLIAR_REALKERNEL_TIMEOUT`/the default applies).
    pub timeout: Option<Duration>,
    /// Boot an installed root instead of the tier's own initramfs (see [`DiskBoot`]).
    pub disk: Option<DiskBoot>,
}

/// Boots the tier's kernel with a given initramfs (a real generator's image) and a
/// raw ext4 disk image of an installed root, on the q35 machine's built-in AHCI
/// (00:1f.2, there in every scenario, so the PCI topology is unchanged): kernel
/// parameters `root=/dev/sda rw init=/exliar-check.sh`. The root must hold
/// `/exliar-check.sh` (see `realtools::boot::install_guest_init`), which does what the
/// tier's `/init` does (drivers, truth, exliar, shipping `/out`).
#[derive(Debug, Clone)]
pub struct DiskBoot {
    pub initrd: PathBuf,
    pub image: PathBuf,
}

impl Scenario {
    pub fn new(name: &'static str, iommu: Iommu, devices: &str) -> Scenario {
        Scenario {
            name,
            iommu,
            devices: devices.to_owned(),
            cmdline: String::new(),
            guest_script: None,
            timeout: None,
            disk: None,
        }
    }

    /// Adds kernel command-line parameters (e.g. `vfio-pci.ids=1234:1111`).
    #[allow(dead_code)] // for scenarios to come
    pub fn with_cmdline(mut self, params: &str) -> Scenario {
        self.cmdline.push(' ');
        self.cmdline.push_str(params);
        self
    }

    /// Gives this guest longer than the default deadline.
    #[allow(dead_code)] // not every test binary uses it
    pub fn with_timeout(mut self, t: Duration) -> Scenario {
        self.timeout = Some(t);
        self
    }

    /// Boots an installed root (see [`DiskBoot`]).
    #[allow(dead_code)] // not every test binary uses it
    pub fn with_disk(mut self, disk: DiskBoot) -> Scenario {
        self.disk = Some(disk);
        self
    }

    /// Sets the scenario's guest script (see `guest_script`).
    #[allow(dead_code)] // for scenarios to come
    pub fn with_guest_script(mut self, script: &str) -> Scenario {
        self.guest_script = Some(script.to_owned());
        self
    }
}

/// What one boot brought back.
#[derive(Debug)]
pub struct GuestRun {
    pub name: &'static str,
    /// `target/realkernel/runs/<name>/`
    pub dir: PathBuf,
    /// The guest's `/out`, unpacked.
    pub out: PathBuf,
    pub serial_log: PathBuf,
    pub truth: Truth,
    pub wall: Duration,
    /// Booted from an installed root ([`DiskBoot`]).
    pub disk: bool,
}

/// Stdout, stderr and exit code of one exliar command run in the guest.
#[derive(Debug)]
pub struct ExliarOutput {
    pub args: String,
    pub rc: i32,
    pub stdout: String,
    pub stderr: String,
}

impl GuestRun {
    /// The output of the guest's exliar command recorded under `tag` (`scan`, `iommu`,
    /// `snapshot`).
    pub fn exliar(&self, tag: &str, args: &str) -> ExliarOutput {
        let read = |ext: &str| fs::read_to_string(self.out.join(format!("{tag}.{ext}")));
        ExliarOutput {
            args: args.to_owned(),
            rc: read("rc")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(-1),
            stdout: read("stdout").unwrap_or_default(),
            stderr: read("stderr").unwrap_or_default(),
        }
    }
}

impl ExliarOutput {
    /// Parses stdout as JSON, panicking with the command's output when it is not.
    pub fn json(&self) -> serde_json::Value {
        self.json_rc(0)
    }

    /// Parses stdout as JSON after checking the exit code is `rc`.
    pub fn json_rc(&self, rc: i32) -> serde_json::Value {
        assert_eq!(
            self.rc, rc,
            "`exliar {}` in the guest: rc {}, expected {rc}; stdout:\n{}\nstderr:\n{}",
            self.args, self.rc, self.stdout, self.stderr
        );
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`exliar {}` printed invalid JSON ({e}):\n{}\nstderr:\n{}",
                self.args, self.stdout, self.stderr
            )
        })
    }
}

fn tail(path: &Path, n: usize) -> String {
    let text = fs::read(path).map(|b| String::from_utf8_lossy(&b).replace('\r', ""));
    match text {
        Ok(t) => {
            let lines: Vec<&str> = t.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// `target/realkernel/` (follows `CARGO_TARGET_DIR`).
pub fn cache_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("realkernel")
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Everything a boot needs, made once per test process.
struct Setup {
    tools: Tools,
    kernel: Kernel,
    initramfs: PathBuf,
}

enum SetupState {
    Ready(Box<Setup>),
    Unavailable(String),
    Broken(String),
}

fn setup() -> &'static SetupState {
    static SETUP: OnceLock<SetupState> = OnceLock::new();
    SETUP.get_or_init(|| {
        let t0 = Instant::now();
        let state = match try_setup() {
            Ok(Ok(s)) => SetupState::Ready(Box::new(s)),
            Ok(Err(Unavailable(why))) => SetupState::Unavailable(why),
            Err(e) => SetupState::Broken(format!("{e:#}")),
        };
        say(&format!(
            "realkernel: setup took {:.1}s",
            t0.elapsed().as_secs_f64()
        ));
        state
    })
}

fn try_setup() -> Result<Result<Setup, Unavailable>> {
    let tools = match Tools::find() {
        Ok(t) => t,
        Err(u) => return Ok(Err(u)),
    };
    let cache = cache_dir();
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let kernel = match Kernel::prepare(&tools, &cache)? {
        Ok(k) => k,
        Err(u) => return Ok(Err(u)),
    };
    // EXLIAR_GUEST_BIN: another build of exliar for the guest (`.ci/run`
    // runs scenarios again with the static musl binary, in this same
    // initramfs); the host side keeps this build's.
    let guest_bin = std::env::var_os("EXLIAR_GUEST_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(EXLIAR));
    eprintln!("realkernel: the guest runs {}", guest_bin.display());
    // EXLIAR_GUEST_BASE_BIN: a second build the benchmark times beside the
    // first in the same boot (benches/bind-realkernel.sh --base).
    let base_bin = std::env::var_os("EXLIAR_GUEST_BASE_BIN").map(std::path::PathBuf::from);
    if let Some(b) = &base_bin {
        eprintln!("realkernel: and, as exliar-base, {}", b.display());
    }
    let image = initramfs::build(&initramfs::Contents {
        busybox: &tools.busybox,
        exliar: &guest_bin,
        exliar_base: base_bin.as_deref(),
        ldd: &tools.ldd,
        module_root: &kernel.module_root,
    })?;
    // one file per process: concurrent `cargo test` runs must not overwrite each other's
    let initramfs = cache.join(format!("initramfs-{}.cpio", std::process::id()));
    fs::write(&initramfs, image).with_context(|| format!("writing {}", initramfs.display()))?;
    remove_stale_initramfs(&cache, &initramfs);
    eprintln!(
        "realkernel: kernel {} from {}; initramfs {}",
        kernel.version,
        kernel.deb.display(),
        initramfs.display()
    );
    Ok(Ok(Setup {
        tools,
        kernel,
        initramfs,
    }))
}

/// Deletes the initramfs images of test processes that are gone.
fn remove_stale_initramfs(cache: &Path, keep: &Path) {
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let pid = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("initramfs-")?.strip_suffix(".cpio"))
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && p != keep
            && !Path::new("/proc").join(pid.to_string()).exists()
        {
            let _ = fs::remove_file(&p);
        }
    }
}

/// Writes `line` to the real stderr: the test harness captures `eprintln!` of passing
/// tests, and skips and timings should be seen.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Serialises boots: the guests are CPU-bound (TCG) and the machine may have 2 cores.
fn boot_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Appends `line` to `target/realkernel/times.txt` (truncated by the first write of a
/// test process).
pub fn record_time(line: &str) {
    static FIRST: OnceLock<()> = OnceLock::new();
    let path = cache_dir().join("times.txt");
    let truncate = FIRST.set(()).is_ok();
    let file = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(!truncate)
        .truncate(truncate)
        .open(&path);
    if let Ok(mut f) = file {
        let _ = writeln!(f, "{line}");
    }
}

/// Boots `scenario` and returns what it brought back; `None` when the tier cannot run on
/// this machine and `CI` is unset (a skip message is printed). Panics with the serial log
/// tail when the guest fails.
pub fn boot(scenario: &Scenario) -> Option<GuestRun> {
    let setup = match setup() {
        SetupState::Ready(s) => s,
        SetupState::Unavailable(why) => {
            let msg = format!(
                "realkernel scenario `{}` cannot run here: {why}. Install the packages in \
                 tests/realkernel/apt-packages.txt (see tests/realkernel/README.md).",
                scenario.name
            );
            assert!(!ci(), "{msg} (CI is set, so this is a failure)");
            say(&format!("SKIP: {msg}"));
            return None;
        }
        SetupState::Broken(e) => panic!("realkernel setup failed: {e}"),
    };
    let _lock = boot_lock();
    let t0 = Instant::now();
    let mut result = boot_locked(setup, scenario);
    // A guest whose kernel never reached /init failed before exliar or the
    // scenario ran (seen once under heavy load: the emulator stopped during
    // early boot with nothing logged). Boot it once more, saying so; a
    // second failure is reported as usual.
    if result.is_err() && !reached_init(scenario) {
        say(&format!(
            "realkernel: scenario {}: the guest kernel stopped before /init; booting once more",
            scenario.name
        ));
        result = boot_locked(setup, scenario);
    }
    let wall = t0.elapsed();
    let status = match &result {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("FAILED: {}", format!("{e:#}").lines().next().unwrap_or("")),
    };
    say(&format!(
        "realkernel: scenario {} booted and reported back in {:.1}s ({status})",
        scenario.name,
        wall.as_secs_f64()
    ));
    record_time(&format!(
        "{} {:.1}s {status}",
        scenario.name,
        wall.as_secs_f64()
    ));
    match result {
        Ok(mut run) => {
            run.wall = wall;
            Some(run)
        }
        Err(e) => panic!("realkernel scenario `{}`: {e:#}", scenario.name),
    }
}

/// Whether the last boot of `scenario` got as far as the guest's /init.
fn reached_init(scenario: &Scenario) -> bool {
    let log = cache_dir()
        .join("runs")
        .join(scenario.name)
        .join("serial.log");
    std::fs::read(&log)
        .map(|b| String::from_utf8_lossy(&b).contains("Run /init as init process"))
        .unwrap_or(false)
}

fn timeout() -> Duration {
    std::env::var("EXLIAR_REALKERNEL_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs)
}

fn qemu_command(
    setup: &Setup,
    scenario: &Scenario,
    initrd: &Path,
    serial: &Path,
    xfer: &Path,
) -> Command {
    // no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer
    // check can fail and panic ("timer doesn't work through
    // Interrupt-remapped IO-APIC"); it was seen on a disk boot here.
    // norandmaps: TCG caches translated code by virtual address, so with
    // address-space randomisation every exec of the (debug, PIE) exliar binary
    // is translated afresh; without it a bind/unbind cycle takes half the time
    // (measured 1.7 s -> 0.8 s per cycle). Nothing exliar does depends on ASLR.
    let mut cmdline = String::from("console=ttyS0 panic=-1 loglevel=7 no_timer_check norandmaps");
    let mut cmd = Command::new(&setup.tools.qemu);
    cmd.args([
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-no-user-config",
    ])
    .args([
        "-machine", "q35", "-accel", "tcg", "-m", "1024", "-smp", "1",
    ])
    .args(["-monitor", "none", "-audiodev", "none,id=snd0"]);
    match scenario.iommu {
        Iommu::Intel => {
            // An Intel IOMMU belongs with an Intel CPU: TCG's default CPU
            // (qemu64) says AuthenticAMD, which `exliar check` rightly calls
            // contradictory evidence beside a DMAR table.
            cmd.args(["-cpu", "qemu64,vendor=GenuineIntel"]);
            cmd.args(["-device", "intel-iommu,intremap=on"]);
            cmdline.push_str(" intel_iommu=on iommu=pt");
        }
        Iommu::Amd => {
            cmd.args(["-device", "amd-iommu,intremap=on"]);
            cmdline.push_str(" iommu=pt");
        }
        Iommu::None => {}
    }
    cmdline.push_str(&scenario.cmdline);
    cmd.args(scenario.devices.split_whitespace());
    if let Some(disk) = &scenario.disk {
        cmd.arg("-drive")
            .arg(format!(
                "file={},format=raw,if=none,id=rootdisk",
                qemu::opt_path(&disk.image)
            ))
            .args(["-device", "ide-hd,drive=rootdisk,bus=ide.0"]);
        cmdline.push_str(" root=/dev/sda rw init=/exliar-check.sh");
    }
    cmd.arg("-chardev")
        .arg(format!("file,id=console,path={}", qemu::opt_path(serial)))
        .args(["-serial", "chardev:console"])
        .arg("-chardev")
        .arg(format!("file,id=xfer,path={}", qemu::opt_path(xfer)))
        .args(["-serial", "chardev:xfer"])
        .arg("-kernel")
        .arg(&setup.kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(cmdline);
    cmd
}

fn boot_locked(setup: &Setup, scenario: &Scenario) -> Result<GuestRun> {
    let dir = cache_dir().join("runs").join(scenario.name);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(&dir)?;
    let serial_log = dir.join("serial.log");
    let xfer = dir.join("xfer.txt");
    let qemu_log = dir.join("qemu.log");
    let initrd = match (&scenario.guest_script, &scenario.disk) {
        (None, Some(disk)) => disk.initrd.clone(),
        (Some(_), Some(_)) => {
            bail!("a disk boot takes no guest script: put it into the root")
        }
        (None, None) => setup.initramfs.clone(),
        (Some(script), None) => {
            // the kernel unpacks concatenated cpio archives in order
            let mut image = fs::read(&setup.initramfs)
                .with_context(|| format!("reading {}", setup.initramfs.display()))?;
            image.extend(initramfs::scenario_overlay(script));
            let path = dir.join("initramfs.cpio");
            fs::write(&path, image).with_context(|| format!("writing {}", path.display()))?;
            path
        }
    };
    let cmd = qemu_command(setup, scenario, &initrd, &serial_log, &xfer);
    fs::write(dir.join("qemu-command.txt"), format!("{cmd:?}\n"))?;
    let limit = scenario.timeout.map_or(timeout(), |t| t.max(timeout()));
    let ending = qemu::run_with_timeout(cmd, &qemu_log, limit)?;
    let explain = |what: String| -> anyhow::Error {
        anyhow::anyhow!(
            "{what}\n--- qemu output ({}) ---\n{}\n--- last 60 lines of the guest console ({}) ---\n{}",
            qemu_log.display(),
            tail(&qemu_log, 20),
            serial_log.display(),
            tail(&serial_log, 60)
        )
    };
    match ending {
        Ending::TimedOut(t) => {
            return Err(explain(format!(
                "guest did not power off within {}s and was killed",
                t.as_secs()
            )));
        }
        Ending::Exited(status) if !status.success() => {
            return Err(explain(format!("qemu exited with {status}")));
        }
        Ending::Exited(_) => {}
    }
    let out = dir.join("out");
    transport::receive(&setup.tools, &xfer, &dir.join("out.tgz"), &out)
        .map_err(|e| explain(format!("no usable output from the guest: {e:#}")))?;
    let truth_text = fs::read_to_string(out.join("truth.txt"))
        .map_err(|e| explain(format!("guest sent no truth.txt: {e}")))?;
    let truth = Truth::parse(&truth_text).map_err(|e| explain(format!("{e:#}")))?;
    let run = GuestRun {
        name: scenario.name,
        dir,
        out,
        serial_log: serial_log.clone(),
        truth,
        wall: Duration::ZERO,
        disk: scenario.disk.is_some(),
    };
    check_drivers(setup, &run).map_err(|e| explain(format!("{e:#}")))?;
    Ok(run)
}

/// Fails when a PCI function has no driver although the full kernel has a module for
/// its modalias that the initramfs lacks (the module list needs it), or when a driver
/// module failed to load.
fn check_drivers(setup: &Setup, run: &GuestRun) -> Result<()> {
    let guest = if run.disk {
        // an installed root has every module of the kernel
        setup
            .kernel
            .builtin_modules()?
            .into_iter()
            .chain(all_modules(&setup.kernel)?)
            .collect()
    } else {
        setup.kernel.guest_modules()?
    };
    let builtin = setup.kernel.builtin_modules()?;
    let mut problems = String::new();
    for d in run.truth.devices.values().filter(|d| d.driver.is_none()) {
        let wanted = setup.kernel.resolve_alias(&setup.tools, &d.modalias)?;
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|m| !guest.contains(*m) && !builtin.contains(*m))
            .collect();
        if !missing.is_empty() {
            let _ = writeln!(
                problems,
                "  {} (class {}, {}) has no driver: kernel module(s) {missing:?} for it are not \
                 in the guest; add them to MODULES in tests/realkernel/kernel.rs",
                d.address,
                d.class,
                d.ids()
            );
        }
    }
    let modprobe = fs::read_to_string(run.out.join("modprobe.txt")).unwrap_or_default();
    for line in modprobe.lines().filter(|l| l.starts_with("fail ")) {
        // a modalias no module matches is fine (host bridges, ...); a failed load is not
        if !line.contains("not found") {
            let _ = writeln!(problems, "  guest modprobe failed: {line}");
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!(
            "kernel module problems in scenario `{}`:\n{problems}",
            run.name
        )
    }
}

/// Every module (normalised name) of the full kernel tree.
fn all_modules(kernel: &Kernel) -> Result<std::collections::BTreeSet<String>> {
    let dep = kernel
        .root
        .join("lib/modules")
        .join(&kernel.version)
        .join("modules.dep");
    let text = fs::read_to_string(&dep).with_context(|| format!("reading {}", dep.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split(':').next())
        .map(super::kernel::module_name)
        .collect())
}

/// The tier's kernel, for tiers that install it elsewhere; `Err` with the reason when
/// the tier cannot run here (the caller skips, or fails under CI). Panics when the
/// setup broke.
#[allow(dead_code)] // not every test binary uses it
pub fn kernel() -> Result<&'static Kernel, String> {
    match setup() {
        SetupState::Ready(s) => Ok(&s.kernel),
        SetupState::Unavailable(why) => Err(why.clone()),
        SetupState::Broken(e) => panic!("realkernel setup failed: {e}"),
    }
}

/// Whether `CI` is set (a skip is then a failure).
#[allow(dead_code)]
pub fn in_ci() -> bool {
    ci()
}

/// Runs the host's exliar with `args`; returns stdout, panicking with stderr on failure.
pub fn host_exliar(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(EXLIAR)
        .args(args)
        .output()
        .expect("running the host's exliar");
    assert!(
        out.status.success(),
        "host `exliar {args:?}` failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
