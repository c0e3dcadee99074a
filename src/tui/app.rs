//! The TUI's state and what keys do to it: key event in → [`Action`] out →
//! [`App::perform`]. Nothing here draws.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{
    Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEventKind,
};

use super::Options;
use super::data::{self, CheckData, HistoryData, HostData, VmRow};
use super::jobs::{self, Done, Job, Msg, StreamingRunner};
use crate::cli::term;
use crate::model::PciAddress;
use crate::plan::Plan;
use crate::plan::isolate::{BootloaderChoice, PlanError};

/// The pages, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Host,
    Check,
    Isolate,
    Runtime,
    History,
    Vms,
}

impl Page {
    pub const ALL: [Page; 6] = [
        Page::Host,
        Page::Check,
        Page::Isolate,
        Page::Runtime,
        Page::History,
        Page::Vms,
    ];
    pub fn title(self) -> &'static str {
        match self {
            Page::Host => "Host",
            Page::Check => "Check",
            Page::Isolate => "Isolate",
            Page::Runtime => "Runtime",
            Page::History => "History",
            Page::Vms => "VMs",
        }
    }
    fn index(self) -> usize {
        Page::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
}

/// What a key asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Quit,
    Goto(Page),
    NextPage,
    PrevPage,
    Up,
    Down,
    PageUp,
    PageDown,
    Help,
    CloseOverlay,
    /// Host: edit the device filter.
    FilterStart,
    FilterChar(char),
    FilterBackspace,
    FilterDone,
    FilterClear,
    /// Host, History: move the focus between the list and the detail pane.
    Focus,
    /// Check: run the checks again; VMs: list the domains again.
    Refresh,
    /// Isolate options.
    ToggleByAddress,
    ToggleIommuPt,
    ToggleForce,
    ToggleRunCommands,
    CycleBootloader,
    /// Isolate: apply; History: roll back; VMs: force off / create (each asks first).
    Ask(Ask),
    PromptChar(char),
    PromptBackspace,
    PromptSubmit,
    Bind,
    Unbind,
    VmStart,
    VmStop,
    /// VMs: open the create form.
    VmForm,
    FormNext,
    FormPrev,
    FormChar(char),
    FormBackspace,
    FormToggle,
    FormPreview,
}

/// An action that needs a typed confirmation first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    Apply,
    Rollback,
    ForceOff,
    VmCreate,
}

/// A confirmation prompt: the answer must be typed (`yes`, or the VM's name).
#[derive(Debug, Clone)]
pub struct Prompt {
    pub ask: Ask,
    pub question: String,
    pub expect: String,
    pub input: String,
}

/// A message on the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Default)]
pub struct HostPage {
    pub sel: usize,
    pub filter: String,
    pub editing: bool,
    /// Focus on the IOMMU tree (else the GPU list).
    pub tree_focus: bool,
    pub tree_scroll: usize,
}

#[derive(Debug, Default)]
pub struct CheckPage {
    pub data: Option<CheckData>,
    pub sel: usize,
}

#[derive(Debug, Default)]
pub struct IsolatePage {
    /// Index into the analysis' GPUs.
    pub gpu: usize,
    pub by_address: bool,
    pub iommu_pt: bool,
    pub force: bool,
    pub bootloader: Option<BootloaderChoice>,
    /// The plan for the choice above (or why there is none).
    pub plan: Option<Result<Plan, PlanError>>,
    pub plan_error: Option<String>,
    pub scroll: usize,
    /// The regeneration commands' output while applying, then the result.
    pub output: Vec<String>,
    pub result: Option<(Level, String)>,
}

#[derive(Debug, Default)]
pub struct RuntimePage {
    pub sel: usize,
    pub outcome: Option<crate::bind::Outcome>,
    pub error: Option<String>,
    /// Devices exliar holds on vfio-pci now (its state file).
    pub held: Vec<PciAddress>,
}

#[derive(Debug, Default)]
pub struct HistoryPage {
    pub data: HistoryData,
    pub sel: usize,
    pub scroll: usize,
    pub force: bool,
    pub detail_focus: bool,
    pub output: Vec<String>,
    pub result: Option<(Level, String)>,
}

/// The VM create form's fields, in order.
pub const FORM_FIELDS: [&str; 7] = [
    "Name",
    "Profile",
    "Memory",
    "CPUs",
    "Disk",
    "ISO",
    "Looking Glass",
];

#[derive(Debug, Clone)]
pub struct VmForm {
    /// name, profile, memory, cpus, disk, iso (Looking Glass is a switch).
    pub values: [String; 6],
    pub looking_glass: bool,
    pub field: usize,
    /// A preview ran for exactly these values.
    pub previewed: Option<Vec<String>>,
}

impl Default for VmForm {
    fn default() -> Self {
        VmForm {
            values: [
                "win11".into(),
                "windows11".into(),
                "16G".into(),
                String::new(),
                "128G".into(),
                String::new(),
            ],
            looking_glass: false,
            field: 0,
            previewed: None,
        }
    }
}

impl VmForm {
    /// `vm create` arguments for the form's values.
    pub fn args(&self, connect: &str) -> Vec<String> {
        let [name, profile, memory, cpus, disk, iso] = &self.values;
        let mut a = vec![
            "vm".to_string(),
            "create".to_string(),
            name.trim().to_string(),
        ];
        let mut opt = |flag: &str, v: &String| {
            if !v.trim().is_empty() {
                a.push(flag.to_string());
                a.push(v.trim().to_string());
            }
        };
        opt("--profile", profile);
        opt("--memory", memory);
        opt("--cpus", cpus);
        opt("--disk", disk);
        opt("--iso", iso);
        if self.looking_glass {
            a.push("--looking-glass".into());
        }
        a.push("--connect".into());
        a.push(connect.to_string());
        a
    }
}

#[derive(Debug, Default)]
pub struct VmsPage {
    pub rows: Option<Result<Vec<VmRow>, String>>,
    pub sel: usize,
    pub form: Option<VmForm>,
    pub output: Vec<String>,
    pub scroll: usize,
    pub result: Option<(Level, String)>,
}

/// The whole state of the TUI.
pub struct App {
    pub opts: Options,
    pub page: Page,
    pub quit: bool,
    pub help: bool,
    pub prompt: Option<Prompt>,
    pub status: Option<(Level, String)>,
    pub host: HostData,
    pub host_page: HostPage,
    pub check: CheckPage,
    pub isolate: IsolatePage,
    pub runtime: RuntimePage,
    pub history: HistoryPage,
    pub vms: VmsPage,
    /// The running job, one at a time.
    pub job: Option<Job>,
    pub ticks: u64,
    /// The tab bar's cells (x ranges), as last drawn, for mouse clicks.
    pub tab_cells: std::cell::RefCell<Vec<(u16, u16, Page)>>,
}

impl App {
    /// Read the host (as `scan` does) and prepare every page; the checks
    /// and the VM list are read on worker threads.
    pub fn new(opts: Options) -> App {
        let host = HostData::read(&opts.root);
        let history = HistoryData::read(&opts.target_root());
        let mut app = App {
            opts,
            page: Page::Host,
            quit: false,
            help: false,
            prompt: None,
            status: None,
            host,
            host_page: HostPage::default(),
            check: CheckPage::default(),
            isolate: IsolatePage::default(),
            runtime: RuntimePage::default(),
            history: HistoryPage {
                data: history,
                ..HistoryPage::default()
            },
            vms: VmsPage::default(),
            job: None,
            ticks: 0,
            tab_cells: std::cell::RefCell::new(Vec::new()),
        };
        // The recommended card is preselected; without one, the first that
        // is neither the boot display nor integrated.
        if let Some(a) = &app.host.analysis
            && let Some(i) = a
                .recommendation
                .passthrough
                .and_then(|rec| a.gpus.iter().position(|g| g.address == rec))
                .or_else(|| a.gpus.iter().position(|g| !g.boot_display && !g.integrated))
        {
            app.isolate.gpu = i;
            app.host_page.sel = i;
            app.runtime.sel = i;
        }
        app.check.data = Some(CheckData::read(&app.opts.root));
        app.read_held();
        app.replan();
        app
    }

    /// The GPUs of the analysis (empty when the PCI tree was unreadable).
    pub fn gpus(&self) -> &[crate::analyze::gpu::Gpu] {
        self.host.analysis.as_ref().map_or(&[], |a| &a.gpus)
    }

    /// The card the analysis recommends passing through.
    pub fn recommended(&self) -> Option<PciAddress> {
        self.host
            .analysis
            .as_ref()
            .and_then(|a| a.recommendation.passthrough)
    }

    /// Whether changes to the target can be written by this process.
    pub fn can_write(&self) -> bool {
        data::writable(&self.opts.target_root())
    }

    /// Whether the kernel (sysfs under the root) can be written.
    pub fn can_bind(&self) -> bool {
        data::writable(&self.opts.root.join("sys"))
    }

    /// Why this process cannot make changes, for the pages to say in place.
    pub fn needs_root(&self) -> Option<String> {
        (!self.can_write()).then(|| {
            format!(
                "read-only: changing {} needs root (run `sudo exliar tui`)",
                self.opts.target_root().display()
            )
        })
    }

    fn read_held(&mut self) {
        use crate::bind::state::BindingState;
        self.runtime.held = crate::bind::state::StateFile::load(&self.opts.root)
            .map(|s| s.all().into_iter().map(|b| b.address).collect())
            .unwrap_or_default();
    }

    /// Build the isolation plan for the Isolate page's choice (pure: reads
    /// the target's files, writes nothing).
    pub fn replan(&mut self) {
        self.isolate.scroll = 0;
        self.isolate.output.clear();
        self.isolate.result = None;
        let Some(inv) = &self.host.inv else {
            self.isolate.plan = None;
            self.isolate.plan_error = self.host.error.clone();
            return;
        };
        let Some(gpu) = self.gpus().get(self.isolate.gpu).map(|g| g.address) else {
            self.isolate.plan = None;
            self.isolate.plan_error = Some("this host has no GPU".into());
            return;
        };
        let args = crate::cli::boot::PlanArgs {
            gpu: gpu.to_string(),
            target: self.opts.target.clone(),
            force: self.isolate.force,
            iommu_pt: self.isolate.iommu_pt,
            by_address: self.isolate.by_address,
            bootloader: self.isolate.bootloader,
            json: false,
        };
        match crate::cli::boot::build_for(&self.opts.root, inv, &args) {
            Ok(r) => {
                self.isolate.plan = Some(r);
                self.isolate.plan_error = None;
            }
            Err(e) => {
                self.isolate.plan = None;
                self.isolate.plan_error = Some(super::safe(&term::chain(&e)));
            }
        }
    }

    /// Hand an event to the app.
    pub fn on_event(&mut self, ev: &Event) {
        match ev {
            Event::Key(k) if k.kind != KeyEventKind::Release => {
                if let Some(a) = self.action_for(k) {
                    self.perform(a);
                }
            }
            Event::Mouse(m) => match m.kind {
                MouseEventKind::Down(MouseButton::Left) if m.row == 0 => {
                    let hit = self
                        .tab_cells
                        .borrow()
                        .iter()
                        .find(|(x0, x1, _)| (*x0..*x1).contains(&m.column))
                        .map(|c| c.2);
                    if let Some(p) = hit {
                        self.perform(Action::Goto(p));
                    }
                }
                MouseEventKind::ScrollDown => self.perform(Action::Down),
                MouseEventKind::ScrollUp => self.perform(Action::Up),
                _ => {}
            },
            _ => {}
        }
    }

    /// A key press, for tests and scripts.
    pub fn key(&mut self, code: KeyCode) {
        self.on_event(&Event::Key(KeyEvent::new(code, KeyModifiers::NONE)));
    }

    /// Type `s` key by key.
    pub fn type_str(&mut self, s: &str) {
        for c in s.chars() {
            self.key(KeyCode::Char(c));
        }
    }

    /// The action a key asks for in the current mode and page.
    pub fn action_for(&self, k: &KeyEvent) -> Option<Action> {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(k.code, KeyCode::Char('c' | 'q')) {
            return Some(Action::Quit);
        }
        if self.prompt.is_some() {
            return match k.code {
                KeyCode::Esc => Some(Action::CloseOverlay),
                KeyCode::Enter => Some(Action::PromptSubmit),
                KeyCode::Backspace => Some(Action::PromptBackspace),
                KeyCode::Char(c) => Some(Action::PromptChar(c)),
                _ => None,
            };
        }
        if self.help {
            return match k.code {
                KeyCode::Char('q') => Some(Action::Quit),
                _ => Some(Action::CloseOverlay),
            };
        }
        if self.page == Page::Host && self.host_page.editing {
            return match k.code {
                KeyCode::Esc => Some(Action::FilterClear),
                KeyCode::Enter => Some(Action::FilterDone),
                KeyCode::Backspace => Some(Action::FilterBackspace),
                KeyCode::Char(c) => Some(Action::FilterChar(c)),
                _ => None,
            };
        }
        if self.page == Page::Vms && self.vms.form.is_some() {
            return match k.code {
                KeyCode::Esc => Some(Action::CloseOverlay),
                KeyCode::Tab | KeyCode::Down => Some(Action::FormNext),
                KeyCode::BackTab | KeyCode::Up => Some(Action::FormPrev),
                KeyCode::Enter => Some(Action::FormPreview),
                KeyCode::F(2) => Some(Action::Ask(Ask::VmCreate)),
                KeyCode::Backspace => Some(Action::FormBackspace),
                KeyCode::Char(' ') if self.form_on_switch() => Some(Action::FormToggle),
                KeyCode::Char(c) if !self.form_on_switch() => Some(Action::FormChar(c)),
                KeyCode::PageDown => Some(Action::PageDown),
                KeyCode::PageUp => Some(Action::PageUp),
                _ => None,
            };
        }
        let common = match k.code {
            KeyCode::Char('q') | KeyCode::Esc => Some(Action::Quit),
            KeyCode::Char('?') | KeyCode::F(1) => Some(Action::Help),
            KeyCode::Tab | KeyCode::Right => Some(Action::NextPage),
            KeyCode::BackTab | KeyCode::Left => Some(Action::PrevPage),
            KeyCode::Char(c @ '1'..='6') => {
                Some(Action::Goto(Page::ALL[(c as usize) - ('1' as usize)]))
            }
            KeyCode::Up | KeyCode::Char('k') => Some(Action::Up),
            KeyCode::Down | KeyCode::Char('j') => Some(Action::Down),
            KeyCode::PageUp => Some(Action::PageUp),
            KeyCode::PageDown | KeyCode::Char(' ') => Some(Action::PageDown),
            _ => None,
        };
        if common.is_some() {
            return common;
        }
        let KeyCode::Char(c) = k.code else {
            return match (self.page, k.code) {
                (Page::Host | Page::History, KeyCode::Enter) => Some(Action::Focus),
                _ => None,
            };
        };
        match (self.page, c) {
            (Page::Host, '/') => Some(Action::FilterStart),
            (Page::Host, 'g') => Some(Action::Focus),
            (Page::Check | Page::Vms, 'r') => Some(Action::Refresh),
            (Page::Isolate, 'a') => Some(Action::ToggleByAddress),
            (Page::Isolate, 'p') => Some(Action::ToggleIommuPt),
            (Page::Isolate | Page::History | Page::Runtime, 'f') => Some(Action::ToggleForce),
            (Page::Isolate, 'n') => Some(Action::ToggleRunCommands),
            (Page::Isolate, 'b') => Some(Action::CycleBootloader),
            (Page::Isolate, 'A') => Some(Action::Ask(Ask::Apply)),
            (Page::History, 'R') => Some(Action::Ask(Ask::Rollback)),
            (Page::History, 'd') => Some(Action::Focus),
            (Page::Runtime, 'b') => Some(Action::Bind),
            (Page::Runtime, 'u') => Some(Action::Unbind),
            (Page::Vms, 's') => Some(Action::VmStart),
            (Page::Vms, 't') => Some(Action::VmStop),
            (Page::Vms, 'O') => Some(Action::Ask(Ask::ForceOff)),
            (Page::Vms, 'c') => Some(Action::VmForm),
            _ => None,
        }
    }

    fn form_on_switch(&self) -> bool {
        self.vms.form.as_ref().is_some_and(|f| f.field == 6)
    }

    fn say(&mut self, level: Level, msg: impl Into<String>) {
        self.status = Some((level, msg.into()));
    }

    /// Do what an action asks.
    pub fn perform(&mut self, a: Action) {
        match a {
            Action::Quit => self.quit = true,
            Action::Goto(p) => self.goto(p),
            Action::NextPage => self.goto(Page::ALL[(self.page.index() + 1) % Page::ALL.len()]),
            Action::PrevPage => {
                self.goto(Page::ALL[(self.page.index() + Page::ALL.len() - 1) % Page::ALL.len()])
            }
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-10),
            Action::PageDown => self.move_by(10),
            Action::Help => self.help = true,
            Action::CloseOverlay => {
                self.help = false;
                if self.prompt.take().is_some() {
                    self.say(Level::Info, "Nothing was changed.");
                } else if self.page == Page::Vms {
                    self.vms.form = None;
                }
            }
            Action::FilterStart => self.host_page.editing = true,
            Action::FilterChar(c) => {
                self.host_page.filter.push(c);
                self.host_page.tree_scroll = 0;
            }
            Action::FilterBackspace => {
                self.host_page.filter.pop();
            }
            Action::FilterDone => self.host_page.editing = false,
            Action::FilterClear => {
                self.host_page.editing = false;
                self.host_page.filter.clear();
            }
            Action::Focus => match self.page {
                Page::Host => self.host_page.tree_focus = !self.host_page.tree_focus,
                Page::History => self.history.detail_focus = !self.history.detail_focus,
                _ => {}
            },
            Action::Refresh => self.refresh(),
            Action::ToggleByAddress => {
                self.isolate.by_address = !self.isolate.by_address;
                self.replan();
            }
            Action::ToggleIommuPt => {
                self.isolate.iommu_pt = !self.isolate.iommu_pt;
                self.replan();
            }
            Action::ToggleForce => match self.page {
                Page::History => self.history.force = !self.history.force,
                _ => {
                    self.isolate.force = !self.isolate.force;
                    self.replan();
                }
            },
            Action::ToggleRunCommands => self.opts.run_commands = !self.opts.run_commands,
            Action::CycleBootloader => {
                let all = BootloaderChoice::ALL;
                self.isolate.bootloader = match self.isolate.bootloader {
                    None => all.first().copied(),
                    Some(b) => all
                        .iter()
                        .position(|x| *x == b)
                        .and_then(|i| all.get(i + 1))
                        .copied(),
                };
                self.replan();
            }
            Action::Ask(ask) => self.ask(ask),
            Action::PromptChar(c) => {
                if let Some(p) = &mut self.prompt {
                    p.input.push(c);
                }
            }
            Action::PromptBackspace => {
                if let Some(p) = &mut self.prompt {
                    p.input.pop();
                }
            }
            Action::PromptSubmit => {
                if let Some(p) = self.prompt.take() {
                    if p.input.trim() == p.expect {
                        self.confirmed(p.ask);
                    } else {
                        self.say(
                            Level::Warn,
                            format!("Not confirmed (typed {:?}): nothing was changed.", p.input),
                        );
                    }
                }
            }
            Action::Bind => self.bind(true),
            Action::Unbind => self.bind(false),
            Action::VmStart => self.vm_action("start"),
            Action::VmStop => self.vm_action("stop"),
            Action::VmForm => {
                self.vms.form = Some(VmForm::default());
                self.vms.output.clear();
                self.vms.result = None;
            }
            Action::FormNext | Action::FormPrev => {
                if let Some(f) = &mut self.vms.form {
                    let n = FORM_FIELDS.len();
                    f.field = if a == Action::FormNext {
                        (f.field + 1) % n
                    } else {
                        (f.field + n - 1) % n
                    };
                }
            }
            Action::FormChar(c) => {
                if let Some(f) = &mut self.vms.form
                    && let Some(v) = f.values.get_mut(f.field)
                {
                    v.push(c);
                }
            }
            Action::FormBackspace => {
                if let Some(f) = &mut self.vms.form
                    && let Some(v) = f.values.get_mut(f.field)
                {
                    v.pop();
                }
            }
            Action::FormToggle => {
                if let Some(f) = &mut self.vms.form {
                    f.looking_glass = !f.looking_glass;
                }
            }
            Action::FormPreview => self.vm_preview(),
        }
    }

    fn goto(&mut self, p: Page) {
        self.page = p;
        if p == Page::Vms && self.vms.rows.is_none() && self.job.is_none() {
            self.refresh();
        }
    }

    fn move_by(&mut self, d: isize) {
        let step = |v: &mut usize, len: usize| {
            let max = len.saturating_sub(1);
            *v = v.saturating_add_signed(d).min(max);
        };
        match self.page {
            Page::Host => {
                if self.host_page.tree_focus {
                    let n = super::pages::host_tree_lines(self).len();
                    step(&mut self.host_page.tree_scroll, n);
                } else {
                    let n = self.gpus().len();
                    step(&mut self.host_page.sel, n);
                }
            }
            Page::Check => {
                let n = self
                    .check
                    .data
                    .as_ref()
                    .map_or(0, |c| c.report.checks.len());
                step(&mut self.check.sel, n);
            }
            Page::Isolate => {
                if d.abs() == 1 && self.isolate.result.is_none() {
                    let n = self.gpus().len();
                    let before = self.isolate.gpu;
                    step(&mut self.isolate.gpu, n);
                    if before != self.isolate.gpu {
                        self.replan();
                    }
                } else {
                    let n = super::pages::isolate_lines(self).len();
                    step(&mut self.isolate.scroll, n);
                }
            }
            Page::Runtime => {
                let n = self.gpus().len();
                step(&mut self.runtime.sel, n);
                self.runtime.outcome = None;
                self.runtime.error = None;
            }
            Page::History => {
                if self.history.detail_focus {
                    let n = super::pages::history_detail(self).lines().count();
                    step(&mut self.history.scroll, n);
                } else {
                    let n = self.history.data.journals.len();
                    step(&mut self.history.sel, n);
                    self.history.scroll = 0;
                }
            }
            Page::Vms => {
                if self.vms.form.is_some() || d.abs() > 1 {
                    let n = self.vms.output.len();
                    step(&mut self.vms.scroll, n);
                } else {
                    let n = self.vm_rows().len();
                    step(&mut self.vms.sel, n);
                }
            }
        }
    }

    /// The domains listed so far.
    pub fn vm_rows(&self) -> &[VmRow] {
        match &self.vms.rows {
            Some(Ok(r)) => r,
            _ => &[],
        }
    }

    fn busy(&mut self) -> bool {
        if let Some(j) = &self.job {
            let t = j.title.clone();
            self.say(Level::Warn, format!("Busy: {t} is still running."));
            true
        } else {
            false
        }
    }

    fn refresh(&mut self) {
        if self.busy() {
            return;
        }
        match self.page {
            Page::Vms => {
                let connect = self.opts.connect.clone();
                self.job = Some(Job::spawn(
                    format!("listing the VMs on {connect}"),
                    move |_| Done::VmList(data::vm_list(&connect)),
                ));
            }
            _ => {
                let root = self.opts.root.clone();
                self.job = Some(Job::spawn("running the checks", move |_| {
                    Done::Check(Box::new(CheckData::read(&root)))
                }));
            }
        }
    }

    fn ask(&mut self, ask: Ask) {
        let (question, expect) = match ask {
            Ask::Apply => {
                if let Some(why) = self.needs_root() {
                    self.isolate.result = None;
                    return self.say(Level::Warn, why);
                }
                match &self.isolate.plan {
                    Some(Ok(p)) if !p.is_empty() => {}
                    Some(Ok(_)) => {
                        return self.say(
                            Level::Info,
                            "Nothing to change: the target is already configured.",
                        );
                    }
                    _ => return self.say(Level::Warn, "No plan to apply (see the refusal)."),
                }
                (
                    format!(
                        "Apply this plan to {}? Type yes and Enter (Esc: cancel)",
                        self.opts.target_root().display()
                    ),
                    "yes".to_string(),
                )
            }
            Ask::Rollback => {
                if let Some(why) = self.needs_root() {
                    return self.say(Level::Warn, why);
                }
                let Some(j) = self.history.data.journals.get(self.history.sel) else {
                    return self.say(Level::Info, "No transaction to roll back.");
                };
                if j.status != crate::txn::Status::Applied {
                    return self.say(
                        Level::Warn,
                        format!("Transaction {} is {}, not applied.", j.id, j.status),
                    );
                }
                self.history.output = data::rollback_preview(&self.opts.target_root(), j)
                    .lines()
                    .map(str::to_string)
                    .collect();
                self.history.result = Some((
                    Level::Info,
                    format!("Rolling back {} restores this (shown below).", j.id),
                ));
                (
                    format!(
                        "Roll back {}{}? Type yes and Enter (Esc: cancel)",
                        j.id,
                        if self.history.force { " (forced)" } else { "" }
                    ),
                    "yes".to_string(),
                )
            }
            Ask::ForceOff => {
                let Some(v) = self.vm_rows().get(self.vms.sel) else {
                    return self.say(Level::Info, "No VM selected.");
                };
                (
                    format!(
                        "Power {} off at once (like pulling the plug)? Type its name and Enter",
                        v.name
                    ),
                    v.name.clone(),
                )
            }
            Ask::VmCreate => {
                let Some(f) = &self.vms.form else { return };
                let args = f.args(&self.opts.connect);
                if f.previewed.as_ref() != Some(&args) {
                    return self.say(
                        Level::Warn,
                        "Preview first (Enter): the plan is shown before anything is done.",
                    );
                }
                if let Some(why) = self.needs_root() {
                    return self.say(Level::Warn, why);
                }
                (
                    format!(
                        "Define VM {} as previewed? Type yes and Enter (Esc: cancel)",
                        f.values[0].trim()
                    ),
                    "yes".to_string(),
                )
            }
        };
        self.prompt = Some(Prompt {
            ask,
            question,
            expect,
            input: String::new(),
        });
    }

    fn confirmed(&mut self, ask: Ask) {
        if self.busy() {
            return;
        }
        match ask {
            Ask::Apply => self.apply(),
            Ask::Rollback => self.rollback(),
            Ask::ForceOff => self.vm_action("destroy"),
            Ask::VmCreate => {
                if let Some(f) = &self.vms.form {
                    let mut args = f.args(&self.opts.connect);
                    args.push("--yes".into());
                    self.vms.output.clear();
                    self.vms.scroll = 0;
                    self.job = Some(jobs::exliar_child(
                        &self.opts.exliar,
                        &self.opts.root,
                        args,
                        format!("vm create {}", f.values[0].trim()),
                    ));
                }
            }
        }
    }

    fn apply(&mut self) {
        let Some(Ok(plan)) = &self.isolate.plan else {
            return;
        };
        let plan = plan.clone();
        let target: PathBuf = self.opts.target_root();
        let run = self.opts.run_commands;
        self.isolate.output.clear();
        self.isolate.result = None;
        self.isolate.scroll = 0;
        self.job = Some(Job::spawn("applying the plan", move |tx| {
            let r = crate::cli::boot::open_store(&target).and_then(|store| {
                let mut runner = StreamingRunner::new(tx.clone(), run);
                store.apply(&plan, &mut runner).map_err(anyhow::Error::from)
            });
            Done::Applied(r.map_err(|e| term::chain(&e)))
        }));
    }

    fn rollback(&mut self) {
        let Some(j) = self.history.data.journals.get(self.history.sel) else {
            return;
        };
        let id = j.id.clone();
        let target = self.opts.target_root();
        let force = self.history.force;
        let run = self.opts.run_commands;
        self.history.output.clear();
        self.history.result = None;
        self.job = Some(Job::spawn(format!("rolling back {id}"), move |tx| {
            let r = crate::txn::Store::open(&target)
                .and_then(|store| {
                    let mut runner = StreamingRunner::new(tx.clone(), run);
                    store.rollback(&id, force, &mut runner)
                })
                .map_err(|e| term::chain(&anyhow::Error::from(e)));
            Done::RolledBack(r)
        }));
    }

    fn bind(&mut self, bind: bool) {
        if self.busy() {
            return;
        }
        if !self.can_bind() {
            return self.say(
                Level::Warn,
                format!(
                    "read-only: {} needs root (writes to {}/sys)",
                    if bind { "bind" } else { "unbind" },
                    self.opts.root.display()
                ),
            );
        }
        let Some(g) = self.gpus().get(self.runtime.sel) else {
            return;
        };
        let address = g.address;
        let root = self.opts.root.clone();
        let force = self.isolate.force;
        let verb = if bind { "binding" } else { "unbinding" };
        let factory = self.opts.kernel.clone();
        self.job = Some(Job::spawn(format!("{verb} {address}"), move |_| {
            let kernel: Box<dyn crate::host::kernel::Kernel> = match &factory {
                Some(f) => match (f.0)(&root) {
                    Ok(k) => k,
                    Err(e) => return Done::Bind(Err(format!("{}: {e}", root.display()))),
                },
                None => Box::new(crate::host::kernel::SysfsKernel::new(&root)),
            };
            Done::Bind(bind_now(&root, kernel.as_ref(), address, bind, force))
        }));
    }

    fn vm_action(&mut self, verb: &str) {
        if self.busy() {
            return;
        }
        let Some(v) = self.vm_rows().get(self.vms.sel) else {
            return self.say(Level::Info, "No VM selected.");
        };
        let name = v.name.clone();
        self.vms.output.clear();
        self.vms.scroll = 0;
        self.vms.result = None;
        self.job = Some(jobs::exliar_child(
            &self.opts.exliar,
            &self.opts.root,
            vec![
                "vm".into(),
                verb.into(),
                name.clone(),
                "--connect".into(),
                self.opts.connect.clone(),
            ],
            format!("vm {verb} {name}"),
        ));
    }

    fn vm_preview(&mut self) {
        if self.busy() {
            return;
        }
        let Some(f) = &mut self.vms.form else { return };
        if f.values[0].trim().is_empty() {
            return self.say(Level::Warn, "The VM needs a name.");
        }
        let args = f.args(&self.opts.connect);
        f.previewed = Some(args.clone());
        let mut shown = args.clone();
        // Without --yes, `vm create` shows the domain and its plan, and
        // (no terminal to confirm on) changes nothing.
        shown.retain(|a| a != "--yes");
        self.vms.output.clear();
        self.vms.scroll = 0;
        self.vms.result = None;
        self.job = Some(jobs::exliar_child(
            &self.opts.exliar,
            &self.opts.root,
            shown,
            "vm create (preview)".into(),
        ));
    }

    /// A tick without input: the spinner moves.
    pub fn tick(&mut self) {
        self.ticks = self.ticks.wrapping_add(1);
    }

    /// Take what the running job sent since the last call.
    pub fn pump(&mut self) {
        let Some(job) = &mut self.job else { return };
        let mut done = None;
        let mut lines = Vec::new();
        loop {
            match job.rx.try_recv() {
                Ok(Msg::Line(l)) => lines.push(super::safe(&l)),
                Ok(Msg::Done(d)) => {
                    done = Some(*d);
                    break;
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    done = Some(Done::Command {
                        what: job.title.clone(),
                        code: None,
                        output: "the worker ended without a result".into(),
                    });
                    break;
                }
            }
        }
        let out = match self.page_of_job() {
            Page::Isolate => &mut self.isolate.output,
            Page::History => &mut self.history.output,
            _ => &mut self.vms.output,
        };
        out.extend(lines);
        if let Some(d) = done {
            if let Some(mut j) = self.job.take() {
                j.join();
            }
            self.finished(d);
        }
    }

    fn page_of_job(&self) -> Page {
        match self.job.as_ref().map(|j| j.title.as_str()) {
            Some("applying the plan") => Page::Isolate,
            Some(t) if t.starts_with("rolling back") => Page::History,
            _ => Page::Vms,
        }
    }

    /// Wait until the running job is done (tests; quitting).
    pub fn wait_idle(&mut self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while self.job.is_some() {
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
            self.pump();
        }
        true
    }

    /// On the way out: let a running transaction finish (it is journaled
    /// either way; `exliar recover` finishes one that a kill stopped).
    pub fn finish_jobs(&mut self) {
        if let Some(j) = &self.job {
            eprintln!("exliar: waiting for {} to finish", j.title);
            self.wait_idle(Duration::from_secs(3600));
        }
    }

    fn finished(&mut self, d: Done) {
        match d {
            Done::Check(c) => {
                self.check.sel = self.check.sel.min(c.report.checks.len().saturating_sub(1));
                self.check.data = Some(*c);
                self.say(Level::Info, "Checks run again.");
            }
            Done::Applied(r) => {
                let msg = match r {
                    Ok(j) => {
                        let gpu = j.gpu.map(|g| g.to_string()).unwrap_or_default();
                        let not_run = j
                            .commands
                            .iter()
                            .any(|c| c.output.as_deref() == Some(crate::txn::NOT_RUN));
                        self.isolate.output.extend(
                            super::safe(&crate::cli::boot::journal_text(&j))
                                .lines()
                                .map(str::to_string),
                        );
                        let unplaced = matches!(&self.isolate.plan, Some(Ok(p)) if !p.unplaced_params.is_empty());
                        let text = if not_run {
                            format!(
                                "Applied transaction {}: the files are written, the regeneration commands were not run (n). Run them, then reboot.",
                                j.id
                            )
                        } else if unplaced {
                            format!(
                                "Applied transaction {}, but INCOMPLETE: some kernel parameters are not on a boot entry (see the plan). Reboot needed.",
                                j.id
                            )
                        } else {
                            format!(
                                "Applied transaction {}. Reboot needed: the next boot gives {gpu} to vfio-pci. History → R undoes it.",
                                j.id
                            )
                        };
                        (Level::Info, text)
                    }
                    Err(e) => (Level::Error, format!("Apply failed: {e}")),
                };
                self.isolate.result = Some(msg.clone());
                self.status = Some(msg);
                self.history.data = HistoryData::read(&self.opts.target_root());
                self.history.sel = self.history.data.journals.len().saturating_sub(1);
                // The plan again: now it has nothing to change.
                let keep = (
                    self.isolate.result.take(),
                    std::mem::take(&mut self.isolate.output),
                );
                self.replan();
                (self.isolate.result, self.isolate.output) = keep;
            }
            Done::RolledBack(r) => {
                let msg = match r {
                    Ok(j) => {
                        self.history.output.extend(
                            super::safe(&crate::cli::boot::journal_text(&j))
                                .lines()
                                .map(str::to_string),
                        );
                        (
                            Level::Info,
                            format!("Rolled back {}: every file is as it was before.", j.id),
                        )
                    }
                    Err(e) => {
                        self.history.output = e.lines().map(str::to_string).collect();
                        let hint = if e.contains("--force") {
                            " Press f to force, then R."
                        } else {
                            ""
                        };
                        (
                            Level::Error,
                            format!("Rollback refused or failed (below).{hint}"),
                        )
                    }
                };
                self.history.result = Some(msg.clone());
                self.status = Some(msg);
                self.history.data = HistoryData::read(&self.opts.target_root());
                self.history.sel = self
                    .history
                    .sel
                    .min(self.history.data.journals.len().saturating_sub(1));
                self.replan();
            }
            Done::Bind(r) => {
                self.read_held();
                match r {
                    Ok(o) => {
                        let ok = o.ok;
                        self.say(
                            if ok { Level::Info } else { Level::Warn },
                            format!(
                                "{}: {}",
                                o.action,
                                if ok {
                                    "done and verified"
                                } else {
                                    "not done (see below)"
                                }
                            ),
                        );
                        self.runtime.outcome = Some(o);
                        self.runtime.error = None;
                    }
                    Err(e) => {
                        self.runtime.outcome = None;
                        self.runtime.error = Some(e.clone());
                        self.say(Level::Error, e);
                    }
                }
                // The drivers changed: read the host again.
                self.host = HostData::read(&self.opts.root);
            }
            Done::VmList(r) => {
                if let Ok(rows) = &r {
                    self.vms.sel = self.vms.sel.min(rows.len().saturating_sub(1));
                }
                self.vms.rows = Some(r);
            }
            Done::Command {
                what,
                code,
                output: _,
            } => {
                let preview = what.ends_with("(preview)");
                let msg = match (code, preview) {
                    (Some(0), _) => (Level::Info, format!("{what}: done.")),
                    (Some(1), true) => (
                        Level::Info,
                        "Preview above (nothing was changed). F2 defines the VM; Esc closes the form.".into(),
                    ),
                    (Some(c), _) => (Level::Error, format!("{what}: refused or failed (exit {c}), see above.")),
                    (None, _) => (Level::Error, format!("{what}: could not run (see above).")),
                };
                self.vms.result = Some(msg.clone());
                self.status = Some(msg);
                if !preview {
                    self.refresh();
                }
            }
        }
    }
}

/// `exliar bind` / `unbind` of the card's functions, as the CLI does it.
fn bind_now(
    root: &std::path::Path,
    kernel: &dyn crate::host::kernel::Kernel,
    address: PciAddress,
    bind: bool,
    force: bool,
) -> Result<crate::bind::Outcome, String> {
    use crate::bind::state::StateFile;
    let host = crate::host::HostRoot::new(root);
    let inv = crate::cli::read_host(&host).map_err(|e| term::chain(&e))?;
    let req = crate::bind::Request {
        addresses: vec![address],
        scope: crate::bind::Scope::Card,
        force,
        dry_run: false,
    };
    let _lock = StateFile::lock(root)?;
    let mut st = StateFile::load(root)?;
    Ok(if bind {
        crate::bind::bind_request(&host, kernel, &mut st, &inv, &req)
    } else {
        crate::bind::unbind_request(&host, kernel, &mut st, &inv, &req)
    })
}
