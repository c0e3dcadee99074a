//! `exliar tui`: the product on one screen (ratatui with its crossterm).
//!
//! Architecture as in gitui: [`App`] is a plain state struct; a key event
//! goes in ([`App::on_event`]), becomes an [`app::Action`], and the action
//! changes the state or starts a [`jobs::Job`] on a worker thread (a plan
//! apply, a rollback, a bind, a VM start), whose messages the loop pumps back
//! into the state. [`view::draw`] only reads the state. The loop
//! ([`run_loop`]) is generic over the ratatui backend, so tests drive the
//! same code with `TestBackend` and a list of keys.
//!
//! Everything shown comes from the library the CLI uses (inventory,
//! analysis, checks, plans, journals); every change goes through the same
//! plan → transaction engine (`txn::Store`), or, for a VM's lifecycle, the
//! same `exliar vm …` command run as a child (argv, never a shell).

pub mod app;
mod data;
pub mod jobs;
mod pages;
pub mod view;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::Backend;
use ratatui::crossterm::event::{self, Event};

pub use app::{App, Page};

/// What `exliar tui` is started with.
#[derive(Debug, Clone)]
pub struct Options {
    /// The host root everything is read from (`--root`).
    pub root: PathBuf,
    /// Where plans are applied and transactions live (`--target`; default:
    /// the root).
    pub target: Option<PathBuf>,
    /// libvirt connection for the VM pages.
    pub connect: String,
    /// Colours (off under `NO_COLOR`).
    pub colour: bool,
    /// The exliar binary the VM page runs (`vm start`, `vm create`, …).
    pub exliar: PathBuf,
    /// Run the regeneration commands after writing the files (off:
    /// `--no-run`, the user runs them).
    pub run_commands: bool,
    /// Running as root (the status line says when not).
    pub privileged: bool,
    /// The kernel-write seam for bind and unbind (default: sysfs under
    /// the root; tests give the simulated kernel).
    pub kernel: Option<KernelFactory>,
}

/// Makes a kernel-write interface for a root.
pub type MakeKernel =
    dyn Fn(&std::path::Path) -> io::Result<Box<dyn crate::host::kernel::Kernel>> + Send + Sync;

/// Makes the [`crate::host::kernel::Kernel`] a bind or unbind writes
/// through, on the worker thread, for a root.
#[derive(Clone)]
pub struct KernelFactory(pub std::sync::Arc<MakeKernel>);

impl std::fmt::Debug for KernelFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KernelFactory")
    }
}

impl Options {
    /// Defaults for `root`: the running binary for VM actions, colours
    /// unless `NO_COLOR` is set and not empty.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Options {
            root: root.into(),
            target: None,
            connect: crate::vm::virsh::DEFAULT_URI.to_string(),
            colour: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            exliar: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("exliar")),
            run_commands: true,
            privileged: rustix::process::geteuid().is_root(),
            kernel: None,
        }
    }

    /// The root plans are applied to and transactions are read from.
    pub fn target_root(&self) -> PathBuf {
        self.target.clone().unwrap_or_else(|| self.root.clone())
    }
}

/// How often the screen is redrawn while nothing happens (spinner, jobs).
pub const TICK: Duration = Duration::from_millis(150);

/// Draw, wait for an event (or a tick), hand it to the app; until the app
/// quits. `next` returns `None` when nothing came within the tick.
pub fn run_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    next: &mut dyn FnMut(Duration) -> io::Result<Option<Event>>,
) -> anyhow::Result<()>
where
    B::Error: std::fmt::Display,
{
    loop {
        app.pump();
        terminal
            .draw(|f| view::draw(f, app))
            .map_err(|e| anyhow::anyhow!("drawing the screen: {e}"))?;
        if app.quit {
            return Ok(());
        }
        match next(TICK)? {
            Some(ev) => app.on_event(&ev),
            None => app.tick(),
        }
    }
}

/// Run the TUI on the real terminal; the terminal is restored on every way
/// out (quit, error, panic).
pub fn run(opts: Options, mouse: bool) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if !io::stdout().is_terminal() || !io::stdin().is_terminal() {
        anyhow::bail!(
            "exliar tui needs a terminal (stdin and stdout); use the other commands from scripts"
        );
    }
    let mut app = App::new(opts);
    // try_init: raw mode, alternate screen, and a panic hook that restores
    // the terminal before the panic message is printed.
    let mut terminal = ratatui::try_init()?;
    if mouse {
        let _ = ratatui::crossterm::execute!(io::stdout(), event::EnableMouseCapture);
    }
    let r = run_loop(&mut terminal, &mut app, &mut |t| {
        if event::poll(t)? {
            event::read().map(Some)
        } else {
            Ok(None)
        }
    });
    if mouse {
        let _ = ratatui::crossterm::execute!(io::stdout(), event::DisableMouseCapture);
    }
    let _ = terminal.show_cursor();
    ratatui::try_restore()?;
    app.finish_jobs();
    r
}

/// Host text made safe for the screen (control characters escaped).
pub(crate) fn safe(s: &str) -> String {
    crate::cli::term::safe(s).into_owned()
}
