//! Command-line front end: flags become requests; output is rendered here.
//! Nothing below this module sees clap types.

pub(crate) mod boot;
mod cdi;
mod cdigen;
mod engines;
mod fleet;
mod hooks;
mod metrics;
mod plugin;
mod render;
mod runtime;
pub(crate) mod term;
mod usb;
mod vbios;
mod vm;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::analyze::{self, Analysis};
use crate::check;
use crate::host::{self, HostRoot};
use crate::listing::{self, ListingFile};
use crate::model::Inventory;
use crate::report::{InventoryReport, IommuReport};

/// Exit codes, as documented in `docs/cli.md`.
pub mod exit {
    /// Success; for reports: the report was produced.
    pub const OK: u8 = 0;
    /// Findings: the host is not ready (check) or a request was refused.
    pub const FINDINGS: u8 = 1;
    /// Error: nothing usable could be read, bad arguments, I/O failure.
    pub const ERROR: u8 = 2;
}

/// `exliar --version`: the version, the git commit, the target and the
/// profile (see build.rs).
pub const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("EXLIAR_BUILD"), ")");

#[derive(Debug, Parser)]
#[command(
    name = "exliar",
    version = LONG_VERSION,
    about = "Give a GPU to a VM (or a container), safely, on any mainstream Linux distribution",
    long_about = "exliar inspects a Linux host (PCI devices, GPUs, IOMMU groups), recommends which GPU \
to pass through, isolates it at boot (plan/apply, undone by rollback) and moves devices between \
host drivers and vfio-pci at runtime (bind/unbind).\n\nDetection is read-only and needs no root. \
Every command reads the host through --root (default /), so it works on snapshots and mounted target roots too.",
    after_help = "Exit status: 0 ok, 1 findings (not ready / refused), 2 error."
)]
pub struct Cli {
    /// Read the host from this directory instead of / (a snapshot, a mounted target root)
    #[arg(
        long,
        global = true,
        env = "EXLIAR_ROOT",
        value_name = "DIR",
        default_value = "/"
    )]
    pub root: PathBuf,

    /// More log output on stderr (-v info, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// GPU-first report of this host: GPUs, their groups and functions, quirks, a recommendation, then every PCI device
    Scan(ReportArgs),
    /// IOMMU groups with their members and a verdict per group (like ls-iommu)
    Iommu(ReportArgs),
    /// Host readiness for GPU passthrough: CPU, KVM, IOMMU, kernel, boot loader, initramfs, VM stack, the GPU, hugepages
    Check(CheckArgs),
    /// Capture exactly the files exliar reads into a folder or a .tar, readable back with --root
    Snapshot(SnapshotArgs),
    /// Analyze pasted text: IOMMU-group listings and lspci output (several files of one machine merge)
    Analyze(AnalyzeArgs),
    /// Move devices to vfio-pci now, until `exliar unbind` or a reboot (the card's functions, or --group): verified, undone on failure; needs root
    Bind(BindArgs),
    /// Give devices back to the drivers they had before `exliar bind`; needs root
    Unbind(UnbindArgs),
    /// What exliar manages on this host now: devices it holds on vfio-pci and the boot-time isolation it applied
    Status(ReportArgs),
    /// Show what boot-time isolation of a GPU would change (diffs, commands, kernel parameters a boot entry would still lack); changes nothing
    Plan(boot::PlanCmd),
    /// Apply the plan as one journaled transaction (asks first unless --yes); needs root
    Apply(boot::ApplyCmd),
    /// Undo an applied transaction, byte for byte, and regenerate; needs root
    Rollback(boot::TxnCmd),
    /// The transactions exliar has made on this root (reads only)
    History(boot::TargetCmd),
    /// Finish what a crash or failure left: revert an interrupted apply (every file back to its original), finish an interrupted rollback; needs root
    Recover(boot::TargetCmd),
    /// VMs with the GPU: create a libvirt domain from this host's facts (a plan, applied as a transaction), list, show, start, stop, destroy, edit, delete
    Vm(vm::VmCmd),
    /// A GPU's option ROM (VBIOS): dump it from sysfs, check a ROM file (legacy and UEFI GOP images, ids, damage), strip a dump tool's header
    Vbios(vbios::VbiosCmd),
    /// USB devices and their PCI controllers (what a controller holds that the host needs), and the evdev keyboards and mice; reads only
    Usb(usb::UsbCmd),
    /// exliar's libvirt QEMU hook: install (a transaction), remove, status
    Hooks(hooks::HooksCmd),
    /// Run by libvirt through exliar's hook for every domain (`exliar hook qemu DOMAIN OP SUB-OP EXTRA`, the domain XML on stdin); acts only on domains exliar created
    Hook(hooks::HookArgs),
    /// Give the host its display back after a single-GPU handover that did not finish (a crash, a failed start): undoes the recorded steps newest first; run by the watchdog and at boot too; needs root
    RecoverDisplay(hooks::RecoverDisplayArgs),
    /// Container Device Interface specs: generate (a transaction), validate, list
    Cdi(cdi::CdiCmd),
    /// Node labels for node-feature-discovery: write exliar's features.d file (a transaction), --check it, print a NodeFeatureRule (`nfd rule`), lint feature files (`nfd lint`)
    Nfd(fleet::NfdCmd),
    /// KubeVirt: the permittedHostDevices for the cards the node (or several nodes' snapshots) isolates (`kubevirt config`), an example VirtualMachine (`kubevirt vm`)
    Kubevirt(fleet::KubevirtCmd),
    /// Container engines and CDI: list Podman, Docker and containerd with the newest cdiVersion each loads; configure one to read CDI specs (a transaction)
    Runtime(engines::RuntimeCmd),
    /// Plugins: list (and why one is refused), show one's description, run one with an event, print a new one's skeleton (docs/plugins.md)
    Plugin(plugin::PluginCmd),
    /// Print shell completions (bash, zsh, fish, elvish, powershell) for exliar to standard output
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Terminal UI: the host, the checks, isolating a GPU (plan, diff, apply), runtime binding, history and rollback, VMs; `?` lists the keys
    Tui(TuiArgs),
    /// Prometheus metrics: the GPUs (driver, vfio-pci, IOMMU group, temperature, power, busy), exliar's VMs (state, CPU, memory, disk and network bytes) and exliar's own state (checks, transactions, bindings, hook runs); printed once, or served with --listen
    Metrics(metrics::MetricsArgs),
}

#[derive(Debug, Args)]
pub struct TuiArgs {
    /// Apply plans to (and read transactions from) this root instead of --root (an installer's mounted target)
    #[arg(long, value_name = "DIR")]
    pub target: Option<PathBuf>,
    /// libvirt connection for the VMs page
    #[arg(long, short = 'c', value_name = "URI", env = "LIBVIRT_DEFAULT_URI", default_value = crate::vm::virsh::DEFAULT_URI)]
    pub connect: String,
    /// Write the files but do not run the regeneration commands (the Isolate page's `n` switches it)
    #[arg(long)]
    pub no_run: bool,
    /// Take mouse clicks (the tab bar) and the wheel (scrolling)
    #[arg(long)]
    pub mouse: bool,
}

#[derive(Debug, Args)]
pub struct BindArgs {
    /// PCI addresses (`0000:01:00.0` or `01:00.0`)
    #[arg(required = true, value_name = "ADDR")]
    pub addresses: Vec<String>,
    /// Take every endpoint of the devices' IOMMU groups
    #[arg(long, conflicts_with = "exact")]
    pub group: bool,
    /// Take exactly the given functions, even if that leaves a group non-viable (reported)
    #[arg(long)]
    pub exact: bool,
    /// Override the safety refusals (boot display, the host's last GPU, host-critical devices)
    #[arg(long)]
    pub force: bool,
    /// Show the kernel writes without making them
    #[arg(long)]
    pub dry_run: bool,
    /// Print the versioned JSON result
    #[arg(long)]
    pub json: bool,
    /// Also bind this card at every boot: after the runtime bind, apply its
    /// boot-time isolation by PCI address (as `exliar apply --gpu ADDR
    /// --by-address`; EXLIAR_BOOTLOADER picks the boot loader where needed),
    /// shown first and confirmed unless --yes. `exliar rollback` removes it
    #[arg(long, conflicts_with_all = ["group", "exact"])]
    pub persist: bool,
    /// With --persist: change the boot configuration without asking
    #[arg(long, short = 'y', requires = "persist")]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct UnbindArgs {
    /// PCI addresses; with none, every device exliar holds
    #[arg(value_name = "ADDR")]
    pub addresses: Vec<String>,
    /// Take every endpoint of the devices' IOMMU groups
    #[arg(long)]
    pub group: bool,
    /// Show the kernel writes without making them
    #[arg(long)]
    pub dry_run: bool,
    /// Print the versioned JSON result
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Print the versioned JSON document instead of the human report
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print the versioned JSON document (exliar.check/1) instead of the human report
    #[arg(long)]
    pub json: bool,
    /// Run only these checks: ids (iommu.cmdline) or prefixes (iommu); see docs/checks.md
    #[arg(long, num_args = 1.., value_delimiter = ',', value_name = "ID")]
    pub only: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Output: a path ending in .tar writes an archive; anything else a new (or empty) folder. Never a symbolic link
    pub out: PathBuf,
    /// Replace an existing .tar file (a folder must still be new or empty)
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Text files to read (or pipes: `<(lspci -nnk)`); `-` reads standard input. At most 16 MiB each
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print the versioned JSON document instead of the human report
    #[arg(long)]
    pub json: bool,
    /// Show only the IOMMU group listing
    #[arg(long)]
    pub iommu: bool,
}

/// [`Cli::parse`], less freeing clap's command tree afterwards: built to
/// parse one command line and not needed again; the process ends soon, and
/// the memory with it. Freeing it took 15% of `exliar --version`'s
/// instructions when every subcommand was built (175 000 of 1.12 million);
/// with only the parsed one built (`defer`) it still takes 35 000 of
/// 571 000, and 59 000 of 853 000 for a `bind` (callgrind).
fn parse_args() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let mut cmd = Cli::command();
    // An error from the parser is formatted already (--help and --version
    // come this way too): printed, and the process exits.
    let mut matches = cmd
        .try_get_matches_from_mut(std::env::args_os())
        .unwrap_or_else(|e| e.exit());
    match Cli::from_arg_matches_mut(&mut matches) {
        Ok(cli) => {
            std::mem::forget(cmd);
            cli
        }
        Err(e) => e.format(&mut cmd).exit(),
    }
}

/// The whole command tree with every subcommand built, for what walks it
/// (completions, man pages). A run builds only the subcommand it parses
/// (`#[command(defer = true)]`). Building the whole tree at once gives its
/// `help` subcommand a copy of the top-level subcommands made before their
/// deferred parts were added (no `exliar help cdi generate` in the
/// completions): so the subcommands built once are put into a fresh top
/// level, and that one is built.
pub fn full_command() -> clap::Command {
    use clap::CommandFactory;
    let mut built = Cli::command();
    built.build();
    let mut cmd = Cli::command();
    for sub in built.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = sub.get_name().to_string();
        let sub = sub.clone();
        cmd = cmd.mut_subcommand(name, move |_| sub);
    }
    cmd.build();
    cmd
}

/// Entry point used by `main.rs`.
pub fn main() -> ExitCode {
    let started = std::time::Instant::now();
    let cli = parse_args();
    let parsed = started.elapsed();
    init_logging(cli.verbose);
    let done = run(&cli);
    tracing::debug!(
        "exliar: {:.2} ms in main, of which {:.2} ms parsing the arguments",
        started.elapsed().as_secs_f64() * 1e3,
        parsed.as_secs_f64() * 1e3
    );
    match done {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::from(exit::OK);
            }
            term::err(&format!("exliar: error: {}\n", term::chain(&e)));
            ExitCode::from(exit::ERROR)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("EXLIAR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only on a terminal, and never under NO_COLOR (no-color.org:
    // set and not empty).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .try_init();
}

/// [`read_host`], while a second thread, with its own root at `root`,
/// reads the stack probes that do not depend on the GPUs (libraries, KFD
/// topology, NVIDIA version). With one CPU, or a thread that cannot be
/// made or panics, they are read here after.
fn read_host_beside_stack_probes(
    host: &HostRoot,
    root: &std::path::Path,
) -> anyhow::Result<(Inventory, host::stacks::HostWide)> {
    let (inv, wide) = std::thread::scope(|s| {
        let wide = (host::sysfs::cpu_count() > 1)
            .then(std::thread::Builder::new)
            .and_then(|b| {
                b.spawn_scoped(s, || {
                    let t = std::time::Instant::now();
                    let wide = host::stacks::read_host_wide(&HostRoot::new(root).read_only());
                    tracing::debug!(
                        "host-wide stack probes read in {:.2} ms (second thread)",
                        t.elapsed().as_secs_f64() * 1e3
                    );
                    wide
                })
                .ok()
            });
        let inv = read_host(host);
        (inv, wide.and_then(|h| h.join().ok()))
    });
    let inv = inv?;
    let wide = wide.unwrap_or_else(|| host::stacks::read_host_wide(host));
    Ok((inv, wide))
}

/// The root whose plugins hear this run's events (`--root`).
static PLUGIN_ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Tell the plugins (under `--root`) about an event; what goes wrong is a
/// warning, never a failure of the command.
pub(crate) fn notify(kind: &str, fields: serde_json::Value) {
    let root = PLUGIN_ROOT
        .get()
        .map_or(std::path::Path::new("/"), |p| p.as_path());
    let _ = crate::plugin::emit(root, || crate::plugin::event(kind, fields));
}

/// Run a parsed command line; returns the exit code.
pub fn run(cli: &Cli) -> anyhow::Result<u8> {
    let _ = PLUGIN_ROOT.set(cli.root.clone());
    match &cli.command {
        Command::Scan(a) => {
            let host = HostRoot::new(&cli.root).read_only();
            let t = std::time::Instant::now();
            let lap = |what: &str| {
                tracing::debug!("scan: {what} at {:.2} ms", t.elapsed().as_secs_f64() * 1e3)
            };
            let (inv, wide) = read_host_beside_stack_probes(&host, &cli.root)?;
            lap("host read");
            // The group reports are written as they are made.
            let analysis = analyze::analyze_without_groups(&inv);
            lap("analysed");
            let stacks = host::stacks::read_with(&host, &analysis.gpus, wide);
            lap("accelerator stacks read");
            for w in &stacks.warnings {
                tracing::warn!("{}", term::safe(&w.to_string()));
            }
            let code = emit_inventory(&inv, &analysis, Some(&stacks), a.json, false)?;
            lap("written");
            notify(
                "inventory",
                serde_json::json!({
                    "gpus": analysis.gpus.iter().map(|g| serde_json::json!({
                        "address": g.address, "name": &*g.name, "driver": g.driver,
                        "isolation": g.isolation,
                    })).collect::<Vec<_>>(),
                    "recommendation": analysis.recommendation,
                }),
            );
            Ok(code)
        }
        Command::Iommu(a) => {
            let host = HostRoot::new(&cli.root).read_only();
            let inv = read_host(&host)?;
            // The group reports are written as they are made.
            let analysis = analyze::analyze_without_groups(&inv);
            emit_inventory(&inv, &analysis, None, a.json, true)
        }
        Command::Check(a) => check(&cli.root, a),
        Command::Snapshot(a) => snapshot(&cli.root, &a.out, a.force),
        Command::Analyze(a) => {
            // The text is dropped once parsed: the analysis and the report
            // need only the inventory.
            let inv = listing::parse_files(&read_listing_files(&a.files)?)?;
            // The group reports are written as they are made.
            let analysis = analyze::analyze_without_groups(&inv);
            emit_inventory(&inv, &analysis, None, a.json, a.iommu)
        }
        Command::Bind(a) => runtime::bind(&cli.root, a),
        Command::Unbind(a) => runtime::unbind(&cli.root, a),
        Command::Status(a) => runtime::status(&cli.root, a.json),
        Command::Plan(a) => boot::plan_cmd(&cli.root, a),
        Command::Apply(a) => boot::apply(&cli.root, a),
        Command::Rollback(a) => boot::rollback(&cli.root, a),
        Command::History(a) => boot::history(&cli.root, a),
        Command::Recover(a) => boot::recover(&cli.root, a),
        Command::Vm(a) => vm::run(&cli.root, a),
        Command::Vbios(a) => vbios::run(&cli.root, a),
        Command::Usb(a) => usb::run(&cli.root, a),
        Command::Hooks(a) => hooks::run(&cli.root, a),
        Command::Hook(a) => hooks::hook(&cli.root, a),
        Command::RecoverDisplay(a) => hooks::recover_display(&cli.root, a),
        Command::Cdi(a) => cdi::run(&cli.root, a),
        Command::Runtime(a) => engines::run(&cli.root, a),
        Command::Nfd(a) => fleet::nfd_run(&cli.root, a),
        Command::Kubevirt(a) => fleet::kubevirt_run(&cli.root, a),
        Command::Plugin(a) => plugin::run(&cli.root, a),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut full_command(), "exliar", &mut out);
            std::io::stdout().write_all(&out)?;
            Ok(exit::OK)
        }
        Command::Metrics(a) => metrics::run(&cli.root, a),
        Command::Tui(a) => {
            let mut opts = crate::tui::Options::new(&cli.root);
            opts.target = a.target.clone();
            opts.connect = a.connect.clone();
            opts.run_commands = !a.no_run;
            crate::tui::run(opts, a.mouse)?;
            Ok(exit::OK)
        }
    }
}

/// Read the inventory of a host root.
pub fn read_host(host: &HostRoot) -> anyhow::Result<Inventory> {
    let t = std::time::Instant::now();
    let ids = host::sysfs::load_pci_ids(host);
    tracing::debug!(
        "PCI names loaded in {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    read_inventory(host, &ids)
}

/// [`host::sysfs::read_inventory_near`]: what binding `wanted` needs. No
/// PCI names: binding decides from ids (names stand in only for the ids a
/// pasted listing lacks) and shows none.
///
/// The other functions' classes come from the class cache where it is
/// still right ([`host::sysfs::ClassCache`]), which is given back for the
/// caller to save once the command has moved a device (a dry run or a
/// refusal writes nothing).
pub fn read_near(
    host: &HostRoot,
    wanted: &[crate::model::PciAddress],
) -> anyhow::Result<(Inventory, host::sysfs::ClassCache)> {
    let (inv, cache) = host::sysfs::read_inventory_for_binding(host, wanted)?;
    Ok((warned(inv), cache))
}

/// [`host::sysfs::read_inventory_for_unbinding`]: what giving `wanted`
/// back needs (no PCI names, no other display controllers).
pub fn read_for_unbinding(
    host: &HostRoot,
    wanted: &[crate::model::PciAddress],
) -> anyhow::Result<Inventory> {
    Ok(warned(host::sysfs::read_inventory_for_unbinding(
        host, wanted,
    )?))
}

fn read_inventory(host: &HostRoot, ids: &host::PciIds) -> anyhow::Result<Inventory> {
    Ok(warned(host::sysfs::read_inventory(host, ids)?))
}

/// `inv`, its read's warnings logged (escaped).
fn warned(inv: Inventory) -> Inventory {
    for w in &inv.warnings {
        tracing::warn!("{}", term::safe(&w.to_string()));
    }
    inv
}

fn emit_inventory(
    inv: &Inventory,
    analysis: &Analysis,
    stacks: Option<&host::stacks::Stacks>,
    json: bool,
    iommu_only: bool,
) -> anyhow::Result<u8> {
    let stdout = std::io::stdout();
    // Stdout's own line buffering splits each 8 KiB piece of a default
    // BufWriter at its last newline: a 4096-function report (4.7 MB) took
    // 1108 writes. 64 KiB pieces (a pipe's buffer) take about 150.
    let mut out = std::io::BufWriter::with_capacity(64 << 10, stdout.lock());
    if json {
        if iommu_only {
            serde_json::to_writer_pretty(&mut out, &IommuReport::new(inv))?;
        } else {
            serde_json::to_writer_pretty(&mut out, &InventoryReport::new(inv, analysis, stacks))?;
        }
        writeln!(out)?;
    } else {
        // Written as it is made, escaped piece by piece (escaping is per
        // character, so pieces escape as the whole would).
        let mut emit = |piece: &str| out.write_all(term::safe(piece).as_bytes());
        if iommu_only {
            render::iommu(&mut emit, inv)?;
        } else {
            render::scan(&mut emit, inv, analysis, stacks)?;
        }
    }
    out.flush()?;
    Ok(exit::OK)
}

/// Everything `exliar check` reads: the check evidence and, when the PCI
/// tree can be read, the GPU analysis.
pub fn check_evidence(host: &HostRoot) -> (check::Evidence, Option<Analysis>) {
    let (analysis, pci_error, pci_ids) = match read_host(host) {
        Ok(inv) => {
            let ids = inv
                .devices
                .iter()
                .filter_map(|d| {
                    Some((
                        d.address,
                        crate::plan::modprobe::PciId::new(d.vendor_id?, d.device_id?),
                    ))
                })
                .collect();
            (Some(analyze::analyze(&inv)), None, ids)
        }
        Err(e) => (None, Some(term::chain(&e)), Vec::new()),
    };
    let mut ev = check::gather(host);
    ev.pci_error = pci_error;
    ev.pci_ids = pci_ids;
    (ev, analysis)
}

fn check(root: &std::path::Path, a: &CheckArgs) -> anyhow::Result<u8> {
    let selected = check::select(&a.only)?;
    if !root.is_dir() {
        anyhow::bail!("{}: not a folder", root.display());
    }
    let host = HostRoot::new(root);
    let (ev, analysis) = check_evidence(&host);
    let checks = check::run_checks(&ev, analysis.as_ref(), &selected);
    let narrowed = (!a.only.is_empty()).then_some(selected);
    let report = check::CheckReport::new(&ev, analysis.as_ref(), checks, narrowed);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if a.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(term::safe(&render::check(&report, &ev)).as_bytes())?;
    }
    out.flush()?;
    notify(
        "check-finished",
        serde_json::json!({
            "ready": report.ready,
            "failing": report.checks.iter()
                .filter(|c| c.status == check::Status::Fail)
                .map(|c| c.id)
                .collect::<Vec<_>>(),
        }),
    );
    Ok(if report.ready {
        exit::OK
    } else {
        exit::FINDINGS
    })
}

fn snapshot(root: &std::path::Path, out: &std::path::Path, force: bool) -> anyhow::Result<u8> {
    let host = HostRoot::recording(root);
    // Read everything the reports read (the reports themselves are not kept).
    let ids = host::sysfs::load_pci_ids(&host);
    let inv = read_inventory(&host, &ids)?;
    let analysis = analyze::analyze(&inv);
    // And the drivers, device nodes and user-space stacks `scan` reports.
    let _ = host::stacks::read(&host, &analysis.gpus);
    // And everything `exliar check` reads, so that `check --root` on the
    // snapshot gives the same result.
    let ev = check::gather(&host);
    check::trim_for_snapshot(&host, &ev);
    // And what `exliar usb list` reads (usb.ids trimmed to the names used).
    let _ = host::usb::UsbReport::read(&host);
    let n = host::snapshot::write(&host, &ids, out, force).context("writing the snapshot")?;
    term::err(&format!(
        "exliar: snapshot of {} written to {} ({n} entries); read it back with: exliar scan --root <unpacked folder> (or exliar check --root ...)\n",
        root.display(),
        out.display()
    ));
    Ok(exit::OK)
}

fn read_listing_files(paths: &[PathBuf]) -> anyhow::Result<Vec<ListingFile>> {
    let mut files = Vec::new();
    for p in paths {
        // A listing is text of a few KiB; 16 MiB is far more than any.
        let limit = host::readfile::LARGE_LIMIT;
        let (name, bytes) = if p.as_os_str() == "-" {
            let buf = host::readfile::read_stream(std::io::stdin().lock(), limit)
                .context("reading standard input")?;
            ("-".to_string(), buf)
        } else {
            let bytes =
                host::readfile::read_input(p, limit).with_context(|| p.display().to_string())?;
            (p.display().to_string(), bytes)
        };
        // Valid UTF-8 (nearly always) is taken as it is, not copied.
        let text = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        files.push(ListingFile { name, text });
    }
    Ok(files)
}

#[cfg(test)]
mod command_tests {
    use super::Cli;
    use clap::CommandFactory;

    /// clap's own checks of the whole command tree (names, defaults,
    /// conflicts), the deferred subcommands built.
    #[test]
    fn the_command_tree_is_valid() {
        Cli::command().debug_assert();
    }

    /// `--help` of the command at `path`, unwrapped.
    fn help(path: &[String]) -> String {
        let args = std::iter::once("exliar")
            .chain(path.iter().map(String::as_str))
            .chain(["--help"]);
        match Cli::command().term_width(10_000).try_get_matches_from(args) {
            Ok(_) => String::new(),
            Err(e) => e.render().to_string(),
        }
    }

    /// Subcommands are built only when they are parsed (`#[command(defer =
    /// true)]`, for start-up). Building one must not change the text its
    /// parent lists for it: a doc comment on its arguments' struct would
    /// replace the variant's once the deferred part runs.
    #[test]
    fn deferred_subcommands_keep_their_about() {
        let mut todo: Vec<Vec<String>> = vec![vec![]];
        let mut checked = 0;
        while let Some(path) = todo.pop() {
            let text = help(&path);
            let Some(listing) = text.split("Commands:\n").nth(1) else {
                continue;
            };
            for line in listing.lines().take_while(|l| l.starts_with("  ")) {
                let line = line.trim_start();
                let (name, about) = line.split_once("  ").unwrap_or((line, ""));
                if name == "help" {
                    continue;
                }
                let mut sub = path.clone();
                sub.push(name.to_string());
                let own = help(&sub);
                let about = about.trim().trim_end_matches('.');
                assert!(
                    own.starts_with(about),
                    "`exliar {}` lists {about:?}, its --help starts {:?}",
                    sub.join(" "),
                    own.lines().next().unwrap_or("")
                );
                checked += 1;
                todo.push(sub);
            }
        }
        assert!(checked > 40, "only {checked} subcommands found");
    }
}
