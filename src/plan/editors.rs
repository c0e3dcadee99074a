//! The configuration editors behind boot-time GPU isolation, and the one
//! call that assembles them into a plan: [`plan_isolation`].
//!
//! Every editor is a pure function from text to text: the engine reads a
//! file, calls an editor, writes the result (with its own backups). Every
//! in-place editor has the same three entry points:
//!
//! - `apply(text)`: the text with exliar's change. Idempotent:
//!   `apply(apply(x)) == apply(x)`.
//! - `remove(text)`: takes out exactly what exliar added, and nothing else:
//!   `remove(apply(x)) == x` byte for byte for a file exliar never touched.
//! - `is_applied(text)`: `apply(text) == text`, so a second plan is empty.
//!
//! What exliar adds is marked in the file itself, so `remove` needs no
//! state: whole blocks between `# BEGIN exliar <tag>` / `# END exliar <tag>`
//! (drop-ins, modprobe.d, initramfs-tools `modules`), or, where a value is
//! changed in place (mkinitcpio arrays, booster keys), a `# exliar was: `
//! comment line per original line just above the changed statement (or
//! `# exliar added` above a statement exliar wrote).
//!
//! Errors name the 1-based line of the input they are about (0: the file as
//! a whole). No editor panics on any input.

use std::collections::BTreeSet;

use serde::Serialize;

use super::earlybind;
use super::effective;
use super::initramfs::{self, Generator, booster, dracut, mkinitcpio, tools};
use super::modprobe::{self, PciId};
use crate::model::PciAddress;

/// Why an editor refused a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct EditError {
    /// 1-based line of the input; 0 when the problem is the file as a whole.
    pub line: usize,
    pub message: String,
}

impl EditError {
    pub(crate) fn new(line: usize, message: impl Into<String>) -> Self {
        Self {
            line,
            message: message.into(),
        }
    }
}

impl From<super::shell::ShellError> for EditError {
    fn from(e: super::shell::ShellError) -> Self {
        EditError::new(e.line(), e.to_string())
    }
}

/// A file the plan creates from nothing (and owns: rollback deletes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewFile {
    pub path: String,
    pub content: String,
    /// Unix permission bits, e.g. `0o644`, `0o755`.
    pub mode: u32,
}

/// Something an analyzer found in the configuration that is already there:
/// a setting that overrides or shadows exliar's, or one exliar merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The file it is in, as the caller named it.
    pub file: String,
    /// 1-based line; 0 for the file as a whole.
    pub line: usize,
    pub message: String,
}

impl Finding {
    pub(crate) fn new(file: impl Into<String>, line: usize, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line,
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------
// In-place edits, as the engine sees them
// ---------------------------------------------------------------------------

/// One of the in-place editors, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "editor", rename_all = "kebab-case")]
pub enum InPlaceEdit {
    Mkinitcpio(mkinitcpio::MkinitcpioEdit),
    Dracut(dracut::DracutEdit),
    InitramfsToolsModules(tools::ModulesEdit),
    Booster(booster::BoosterEdit),
    Modprobe(modprobe::ModprobeEdit),
}

impl InPlaceEdit {
    pub fn apply(&self, text: &str) -> Result<String, EditError> {
        match self {
            Self::Mkinitcpio(e) => e.apply(text),
            Self::Dracut(e) => e.apply(text),
            Self::InitramfsToolsModules(e) => e.apply(text),
            Self::Booster(e) => e.apply(text),
            Self::Modprobe(e) => e.apply(text),
        }
    }

    pub fn remove(&self, text: &str) -> Result<String, EditError> {
        match self {
            Self::Mkinitcpio(e) => e.remove(text),
            Self::Dracut(e) => e.remove(text),
            Self::InitramfsToolsModules(e) => e.remove(text),
            Self::Booster(e) => e.remove(text),
            Self::Modprobe(e) => e.remove(text),
        }
    }

    pub fn is_applied(&self, text: &str) -> Result<bool, EditError> {
        Ok(self.apply(text)? == text)
    }
}

/// An edit of a file that may already exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEdit {
    pub path: String,
    pub edit: InPlaceEdit,
    /// When the file is absent: `true`, apply the edit to an empty text and
    /// create it (mode 0644); `false`, the plan cannot go on (for example
    /// `/etc/mkinitcpio.conf` missing on a mkinitcpio system).
    pub create_if_missing: bool,
}

// ---------------------------------------------------------------------------
// The plan
// ---------------------------------------------------------------------------

/// One function of the card given to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GuestFunction {
    pub address: PciAddress,
    pub id: PciId,
    /// The 24-bit class code (`0x030000` VGA, `0x040300` HDMI audio, ...).
    pub class: u32,
}

/// What to isolate, and on what kind of system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IsolationRequest {
    pub generator: Generator,
    /// Running (or target) kernel `(major, minor)`.
    pub kernel: (u32, u32),
    /// `vfio-pci` is built into the kernel (`modules.builtin` lists it), so
    /// modprobe.d options never reach it: ids go on the command line.
    pub vfio_pci_builtin: bool,
    pub guest: Vec<GuestFunction>,
    /// vendor:device of every function the host keeps (to find identical
    /// cards: an id the host also has cannot go to `ids=`). Leave out
    /// devices already given to VMs (bound to vfio-pci): their ids, when
    /// modprobe.d binds them today, are carried over.
    pub host_ids: Vec<PciId>,
    /// The modprobe.d files present now, `(path, text)`, `/etc` before
    /// `/run` before `/usr/lib` before `/lib`: ids and softdeps already
    /// there are merged and reported. exliar's own files are skipped.
    pub modprobe_d: Vec<(String, String)>,
    /// Modules the target kernel's `modules.alias` matches to the guest's
    /// functions (`bochs`, `snd_hda_intel`, …): each gets a softdep, beside
    /// the known drivers of the functions' vendors and classes.
    pub kernel_drivers: Vec<String>,
    /// Bind every guest function by address, none by id.
    pub by_address: bool,
    /// The kernel command line the target boots with now, as parameters: a
    /// `vfio-pci.ids=` there is read after modprobe.d and replaces exliar's
    /// list, so it is replaced by the merged list.
    pub cmdline: Vec<String>,
    /// `/etc/initramfs-tools/modules` as it is (initramfs-tools only):
    /// arguments on its `vfio_pci` line are passed after every option.
    pub initramfs_modules: Option<String>,
}

/// Everything the engine must do for boot-time isolation, as data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IsolationPlan {
    /// Files to create (exliar owns them; rollback deletes them). Create
    /// them before the edits and before regenerating the initramfs.
    pub create: Vec<NewFile>,
    /// Files to edit in place.
    pub edit: Vec<FileEdit>,
    /// Parameters for the kernel command line (the boot loader editors'
    /// business), e.g. `vfio-pci.ids=10de:1b80,10de:10f0`.
    pub kernel_params: Vec<String>,
    /// The command that rebuilds the initramfs of every installed kernel.
    pub regenerate: Vec<String>,
    /// vendor:device ids bound with `ids=` (only the guest card has them).
    pub ids: Vec<PciId>,
    /// Addresses bound by `driver_override` at early boot (ids the host
    /// shares).
    pub bind_by_address: Vec<PciAddress>,
    /// What the existing configuration does to this plan, for the user.
    pub findings: Vec<Finding>,
    /// The user's kernel parameters to take out (a `vfio-pci.ids=` that
    /// would replace exliar's list; `kernel_params` holds the merged one).
    pub remove_params: Vec<String>,
    /// What the plan changes in the user's own configuration so that
    /// exliar's takes effect, for the user.
    pub fixed: Vec<String>,
}

/// How the guest's functions get to vfio-pci, and what it must load before.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Binding {
    /// vendor:device ids for `ids=` (only the guest card has them).
    pub ids: Vec<PciId>,
    /// Functions bound by address (`driver_override` at early boot): those
    /// whose id the host shares, or all with `by_address`.
    pub by_address: Vec<PciAddress>,
    /// Drivers vfio-pci must load before (softdeps): the known drivers of
    /// the functions' vendors and classes, then `kernel_drivers`; never
    /// vfio-pci's own variant drivers.
    pub drivers: Vec<String>,
}

/// Decide [`Binding`] for the guest's functions. `host_ids`: the ids of every
/// function the host keeps; `kernel_drivers`: what the kernel's
/// `modules.alias` matches to the guest's functions. Shared by
/// [`plan_isolation`] and the NixOS module.
pub fn binding(
    guest: &[GuestFunction],
    host_ids: &[PciId],
    all_by_address: bool,
    kernel_drivers: &[String],
) -> Binding {
    let mut b = Binding::default();
    for f in guest {
        if all_by_address || host_ids.contains(&f.id) {
            b.by_address.push(f.address);
        } else if !b.ids.contains(&f.id) {
            b.ids.push(f.id);
        }
    }
    b.by_address.sort();
    b.by_address.dedup();
    let known = guest
        .iter()
        .flat_map(|f| modprobe::drivers_for(f.id.vendor, f.class));
    for d in known.chain(kernel_drivers.iter().map(String::as_str)) {
        if !d.contains("vfio") && !b.drivers.iter().any(|x| x == d) {
            b.drivers.push(d.to_string());
        }
    }
    b
}

/// Assemble the files and edits that make `vfio-pci` own the guest's
/// functions from early boot. Pure: the caller supplies what the host has.
pub fn plan_isolation(req: &IsolationRequest) -> IsolationPlan {
    let mut plan = IsolationPlan::default();
    if req.guest.is_empty() {
        return plan;
    }
    let host: BTreeSet<PciId> = req.host_ids.iter().copied().collect();
    let Binding {
        ids,
        by_address,
        drivers,
    } = binding(
        &req.guest,
        &req.host_ids,
        req.by_address,
        &req.kernel_drivers,
    );
    plan.ids = ids.clone();
    plan.bind_by_address = by_address.clone();

    let early_bind = !by_address.is_empty();
    let booster = req.generator == Generator::Booster;
    // Booster's init loads modules itself and runs no modprobe `install`
    // command, so the early-bind script cannot run inside a booster image;
    // it runs at the first modprobe of a GPU driver in the real root
    // instead, through a pseudo-module (as with a built-in vfio-pci).
    let pseudo = early_bind && (req.vfio_pci_builtin || booster);
    let existing: Vec<(&str, &str)> = req
        .modprobe_d
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .filter(|(n, _)| !modprobe::is_exliar_file(n))
        .collect();

    // --- vfio-pci's ids (the last `ids=` wins, so its own late file) ---
    let ids_text: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    // The file as the user wrote it (a previous plan's fixes undone): what
    // to fix is decided on that, so a second plan keeps the fixes.
    let tools_original: Option<String> =
        if req.generator == Generator::InitramfsTools && !req.vfio_pci_builtin {
            req.initramfs_modules.as_deref().map(|t| {
                tools::ModulesEdit::default()
                    .remove(t)
                    .unwrap_or_else(|_| t.to_string())
            })
        } else {
            None
        };
    let tools_modules = tools_original.as_deref();
    let existing_owned: Vec<(String, String)> = existing
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    // What vfio-pci gets today, as the boot applies it.
    let today = effective::evaluate(&effective::Inputs {
        modprobe_d: &existing_owned,
        cmdline: &req.cmdline,
        initramfs_modules: tools_modules,
        builtin: req.vfio_pci_builtin,
    });
    if !req.vfio_pci_builtin {
        plan.findings
            .extend(modprobe::existing_vfio_ids(&existing).findings());
    }
    // The user's `vfio-pci.ids=` on the command line, and `vfio_pci` lines
    // with arguments in initramfs-tools' modules file: both are applied
    // after exliar's modprobe.d list and would replace it.
    let user_params: Vec<String> = effective::cmdline_ids(&req.cmdline)
        .into_iter()
        .map(|(i, _)| req.cmdline[i].clone())
        .collect();
    let vfio_lines: Vec<effective::ModuleLine> = tools_modules
        .map(effective::parse_modules_file)
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.module == "vfio_pci" && !m.args.is_empty())
        .collect();
    let overriding = !user_params.is_empty() || !vfio_lines.is_empty();
    // exliar's list replaces the one in effect today: carry that one over,
    // except ids of devices the host keeps.
    let (carried, dropped): (Vec<String>, Vec<String>) = today
        .ids()
        .map(|e| e.ids.clone())
        .unwrap_or_default()
        .into_iter()
        .partition(|id| id.parse::<PciId>().map_or(true, |i| !host.contains(&i)));
    let merged = modprobe::merge_ids(&carried, &ids_text);
    if (!ids_text.is_empty() || overriding)
        && let Some(e) = today.ids()
    {
        let (file, line) = origin_place(&e.origin);
        if !carried.is_empty() {
            plan.findings.push(Finding::new(
                &file,
                line,
                format!(
                    "exliar's `ids=` list (read last) carries over {}",
                    carried.join(",")
                ),
            ));
        }
        for id in &dropped {
            plan.findings.push(Finding::new(
                &file,
                line,
                format!(
                    "exliar's `ids=` list leaves out {id}: the host keeps a device with this id"
                ),
            ));
        }
    }
    if !user_params.is_empty() {
        let want = modprobe::vfio_cmdline_param(&merged);
        let unchanged = user_params.len() == 1
            && !merged.is_empty()
            && super::boot::params::same_param(&user_params[0], &want);
        if !unchanged {
            plan.remove_params = user_params.clone();
            plan.fixed.push(if merged.is_empty() {
                format!(
                    "the kernel command line's `{}` is taken out: the kernel reads it after modprobe.d, and it names only devices the host keeps",
                    user_params.join(" ")
                )
            } else {
                format!(
                    "the kernel command line's `{}` is replaced by `{want}`: the kernel reads it after modprobe.d, so its list is the one vfio-pci gets",
                    user_params.join(" ")
                )
            });
        }
        if !merged.is_empty() {
            plan.kernel_params.push(want);
        }
    } else if req.vfio_pci_builtin && !merged.is_empty() {
        plan.kernel_params
            .push(modprobe::vfio_cmdline_param(&merged));
    }
    if !req.vfio_pci_builtin && (!ids_text.is_empty() || (overriding && !merged.is_empty())) {
        let mut lines = vec![
            "# vfio-pci claims these vendor:device ids (only the guest card has them).".into(),
            "# Kept last (zz-): a later `ids=` would replace this list.".into(),
            modprobe::ids_option_line(&merged),
        ];
        // The other arguments of initramfs-tools' `vfio_pci` lines move here.
        let moved: Vec<String> = vfio_lines
            .iter()
            .flat_map(|m| m.args.iter())
            .filter(|a| {
                a.split_once('=')
                    .is_none_or(|(k, _)| k.replace('-', "_") != "ids")
            })
            // One word each (kmod reads no quoting here but double quotes).
            .filter(|a| !a.contains(['"', '\\']))
            .cloned()
            .collect();
        if !moved.is_empty() {
            lines.push(format!("options vfio-pci {}", moved.join(" ")));
        }
        let edit = modprobe::ModprobeEdit::new(lines);
        push_created(
            &mut plan,
            modprobe::IDS_CONF,
            &InPlaceEdit::Modprobe(edit),
            0o644,
        );
        for m in &vfio_lines {
            plan.fixed.push(format!(
                "{}:{}: the arguments of `{} {}` move to {} (initramfs-tools passes them after modprobe.d, so they would replace exliar's list)",
                tools::MODULES_FILE,
                m.line,
                m.module,
                m.args.join(" "),
                modprobe::IDS_CONF
            ));
        }
    }
    let move_vfio_args =
        !vfio_lines.is_empty() && plan.create.iter().any(|f| f.path == modprobe::IDS_CONF);
    let misplaced: Vec<effective::ModuleLine> = tools_modules
        .map(effective::parse_modules_file)
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            effective::MODPROBE_COMMANDS
                .iter()
                .any(|c| normalize(c) == m.module)
        })
        .collect();
    for m in &misplaced {
        plan.fixed.push(format!(
            "{}:{}: `{} {}` is modprobe.d syntax, not a module: commented out (initramfs-tools would try to load `{}`); put it in /etc/modprobe.d if you need it",
            tools::MODULES_FILE,
            m.line,
            m.module,
            m.args.join(" "),
            m.module
        ));
    }

    // --- modprobe.d: softdeps and the install hook (first match wins) ---
    let pre = if pseudo {
        earlybind::PSEUDO_MODULE
    } else {
        "vfio-pci"
    };
    if pseudo && drivers.is_empty() {
        plan.findings.push(Finding::new(
            modprobe::EARLY_CONF,
            0,
            "no driver is known for the guest card's functions, so nothing loads the early-bind \
             step at boot: run `modprobe exliar_vfio_early_bind` before the GPU driver loads",
        ));
    }
    // Softdeps reach a modular vfio-pci (or the pseudo-module) only.
    let (softdeps, found) = if !req.vfio_pci_builtin || pseudo {
        modprobe::merged_softdeps(&drivers, pre, &existing)
    } else {
        (Vec::new(), Vec::new())
    };
    plan.findings.extend(found);
    // The early-bind `install` line must be there even when no softdep is.
    if !softdeps.is_empty() || early_bind {
        let mut lines: Vec<String> = vec![
            "# vfio-pci (or exliar's early-bind step) loads before these drivers.".into(),
            "# Kept first (00-): kmod uses only the first softdep/install line per module.".into(),
        ];
        if early_bind {
            lines.push(earlybind::install_line(pseudo));
            plan.findings
                .extend(modprobe::install_conflicts(&existing, pseudo));
        }
        lines.extend(softdeps.iter().map(modprobe::Softdep::render));
        let edit = modprobe::ModprobeEdit::new(lines);
        push_created(
            &mut plan,
            modprobe::EARLY_CONF,
            &InPlaceEdit::Modprobe(edit),
            0o644,
        );
    }

    if early_bind {
        plan.create.push(NewFile {
            path: earlybind::SCRIPT_PATH.into(),
            content: earlybind::script(&by_address),
            mode: 0o755,
        });
    }

    // --- the initramfs ---
    let modules: Vec<String> = if req.vfio_pci_builtin || (booster && ids.is_empty()) {
        Vec::new()
    } else {
        initramfs::vfio_modules(req.kernel)
            .iter()
            .map(|m| m.to_string())
            .collect()
    };
    let in_image: Vec<String> = if early_bind && !booster {
        vec![earlybind::SCRIPT_PATH.to_string()]
    } else {
        Vec::new()
    };
    // modconf carries /etc/modprobe.d into a mkinitcpio image.
    let modprobe_files = plan
        .create
        .iter()
        .any(|f| f.path.starts_with("/etc/modprobe.d/"));
    match req.generator {
        Generator::Mkinitcpio => {
            let edit = mkinitcpio::MkinitcpioEdit {
                modules,
                hooks: if modprobe_files {
                    vec!["modconf".into()]
                } else {
                    Vec::new()
                },
                files: in_image,
            };
            if edit != mkinitcpio::MkinitcpioEdit::default() {
                plan.edit.push(FileEdit {
                    path: mkinitcpio::CONF.into(),
                    edit: InPlaceEdit::Mkinitcpio(edit),
                    create_if_missing: false,
                });
            }
        }
        Generator::Dracut => {
            let mut items = in_image;
            // Non-hostonly images carry no /etc/modprobe.d: name ours.
            for f in &plan.create {
                if f.path.starts_with("/etc/modprobe.d/") {
                    items.push(f.path.clone());
                }
            }
            let edit = InPlaceEdit::Dracut(dracut::DracutEdit {
                force_drivers: modules,
                install_items: items,
            });
            if edit != InPlaceEdit::Dracut(dracut::DracutEdit::default()) {
                push_created(&mut plan, dracut::DROPIN, &edit, 0o644);
            }
        }
        Generator::InitramfsTools => {
            if !modules.is_empty() || move_vfio_args || !misplaced.is_empty() {
                plan.edit.push(FileEdit {
                    path: tools::MODULES_FILE.into(),
                    edit: InPlaceEdit::InitramfsToolsModules(tools::ModulesEdit {
                        modules,
                        fix_misplaced: !misplaced.is_empty(),
                        move_vfio_args,
                    }),
                    create_if_missing: true,
                });
            }
            if early_bind {
                plan.create.push(NewFile {
                    path: earlybind::TOOLS_HOOK_PATH.into(),
                    content: earlybind::initramfs_tools_hook(),
                    mode: 0o755,
                });
            }
        }
        Generator::Booster => {
            let exclude: Vec<String> = if early_bind {
                drivers.clone()
            } else {
                Vec::new()
            };
            if early_bind {
                plan.findings.push(Finding::new(
                    booster::CONF,
                    0,
                    "booster runs no modprobe install command at early boot: the guest card's \
                     drivers are kept out of the image and the early-bind step runs when the \
                     real root first loads them",
                ));
            }
            if !modules.is_empty() || !exclude.is_empty() {
                plan.edit.push(FileEdit {
                    path: booster::CONF.into(),
                    edit: InPlaceEdit::Booster(booster::BoosterEdit {
                        modules_force_load: modules,
                        modules_exclude: exclude,
                    }),
                    create_if_missing: true,
                });
            }
        }
    }
    // Only what reaches the initramfs needs it rebuilt.
    if !plan.create.is_empty() || !plan.edit.is_empty() {
        plan.regenerate = req
            .generator
            .regenerate_command()
            .iter()
            .map(|s| s.to_string())
            .collect();
    }
    plan
}

/// A setting's place as a finding names it.
fn origin_place(o: &effective::Origin) -> (String, usize) {
    match o {
        effective::Origin::Modprobe { file, line } => (file.clone(), *line),
        effective::Origin::Cmdline { param } => (format!("the kernel command line (`{param}`)"), 0),
        effective::Origin::InitramfsModules { line } => (tools::MODULES_FILE.to_string(), *line),
    }
}

fn normalize(m: &str) -> String {
    initramfs::normalize_module(m)
}

fn push_created(plan: &mut IsolationPlan, path: &str, edit: &InPlaceEdit, mode: u32) {
    // Applying a block editor to nothing cannot fail; were it to, the file
    // is left out and the reason reported rather than panicking.
    match edit.apply("") {
        Ok(content) => plan.create.push(NewFile {
            path: path.into(),
            content,
            mode,
        }),
        Err(e) => plan.findings.push(Finding::new(path, e.line, e.message)),
    }
}

// ---------------------------------------------------------------------------
// Text machinery shared by the editors
// ---------------------------------------------------------------------------

/// The tokens exliar inserts must be plain words: no quoting is ever needed
/// and nothing can be interpolated.
pub(crate) fn check_token(tok: &str) -> Result<(), EditError> {
    let ok = !tok.is_empty()
        && tok
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(EditError::new(
            0,
            format!("refusing to write `{tok}`: not a plain word"),
        ))
    }
}

/// The lines of `text` with their byte ranges. The range excludes the
/// `\n`; `has_nl` says whether one follows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line<'a> {
    pub start: usize,
    pub end: usize,
    pub has_nl: bool,
    pub text: &'a str,
}

impl Line<'_> {
    /// End of the line including its newline.
    pub fn end_nl(&self) -> usize {
        if self.has_nl { self.end + 1 } else { self.end }
    }
}

pub(crate) fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    for piece in text.split_inclusive('\n') {
        let has_nl = piece.ends_with('\n');
        let body = if has_nl {
            &piece[..piece.len() - 1]
        } else {
            piece
        };
        out.push(Line {
            start,
            end: start + body.len(),
            has_nl,
            text: body,
        });
        start += piece.len();
    }
    out
}

/// Replace byte ranges. Ranges are sorted here; an overlapping range (a bug
/// in the caller) is skipped rather than corrupting the text.
pub(crate) fn replace_ranges(text: &str, mut edits: Vec<(usize, usize, String)>) -> String {
    edits.sort_by_key(|(s, e, _)| (*s, *e));
    let mut out = String::with_capacity(text.len() + 64);
    let mut cursor = 0;
    for (s, e, repl) in edits {
        if s < cursor || e < s || e > text.len() {
            debug_assert!(false, "overlapping edit {s}..{e} at {cursor}");
            continue;
        }
        out.push_str(&text[cursor..s]);
        out.push_str(&repl);
        cursor = e;
    }
    out.push_str(&text[cursor..]);
    out
}

/// Append `chunk` (lines without a final newline) at the end of `text`,
/// keeping a missing final newline missing: `remove_appended` undoes it.
pub(crate) fn append_lines(text: &str, chunk: &str) -> String {
    if text.is_empty() || text.ends_with('\n') {
        format!("{text}{chunk}\n")
    } else {
        format!("{text}\n{chunk}")
    }
}

/// The range to delete to take out lines `start..end_nl` that
/// [`append_lines`] (or an insertion) put there: when they end the file
/// without a newline, the newline before them was added too.
pub(crate) fn removal_range(text: &str, start: usize, end_nl: usize) -> (usize, usize) {
    if end_nl == text.len()
        && !text.ends_with('\n')
        && start > 0
        && text.as_bytes()[start - 1] == b'\n'
    {
        (start - 1, end_nl)
    } else {
        (start, end_nl)
    }
}

// --- BEGIN/END blocks -------------------------------------------------------

pub(crate) fn begin_marker(tag: &str) -> String {
    format!("# BEGIN exliar {tag}")
}

pub(crate) fn end_marker(tag: &str) -> String {
    format!("# END exliar {tag}")
}

/// Where exliar's block sits: bytes `start..end` (the END line's newline
/// included when there is one), and its 0-based first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockSpan {
    pub start: usize,
    pub end: usize,
    pub first_line: usize,
    pub last_line: usize,
}

pub(crate) fn find_block(text: &str, tag: &str) -> Result<Option<BlockSpan>, EditError> {
    let begin = begin_marker(tag);
    let end = end_marker(tag);
    let mut found: Option<BlockSpan> = None;
    let mut open: Option<(usize, usize)> = None;
    for (i, l) in lines(text).iter().enumerate() {
        let t = l.text.trim_end();
        if t == begin {
            if let Some((_, line)) = open {
                return Err(EditError::new(
                    i + 1,
                    format!("second `{begin}` before the `{end}` of line {}", line + 1),
                ));
            }
            if found.is_some() {
                return Err(EditError::new(i + 1, format!("a second `{begin}` block")));
            }
            open = Some((l.start, i));
        } else if t == end {
            let Some((start, first)) = open.take() else {
                return Err(EditError::new(i + 1, format!("`{end}` without `{begin}`")));
            };
            found = Some(BlockSpan {
                start,
                end: l.end_nl(),
                first_line: first,
                last_line: i,
            });
        }
    }
    if let Some((_, line)) = open {
        return Err(EditError::new(
            line + 1,
            format!("`{begin}` without `{end}`"),
        ));
    }
    Ok(found)
}

/// The text without exliar's block (byte-exact inverse of [`insert_block`]).
pub(crate) fn strip_block(text: &str, tag: &str) -> Result<String, EditError> {
    Ok(match find_block(text, tag)? {
        None => text.to_string(),
        Some(b) => {
            let (s, e) = removal_range(text, b.start, b.end);
            format!("{}{}", &text[..s], &text[e..])
        }
    })
}

pub(crate) fn render_block(tag: &str, body: &[String]) -> String {
    let mut out = begin_marker(tag);
    for l in body {
        out.push('\n');
        out.push_str(l);
    }
    out.push('\n');
    out.push_str(&end_marker(tag));
    out
}

/// Insert the block before the line starting at byte `at`, or at the end.
pub(crate) fn insert_block(text: &str, at: Option<usize>, tag: &str, body: &[String]) -> String {
    let block = render_block(tag, body);
    match at {
        Some(at) if at < text.len() => format!("{}{block}\n{}", &text[..at], &text[at..]),
        _ => append_lines(text, &block),
    }
}

/// Body lines must each be one line.
pub(crate) fn check_body(body: &[String]) -> Result<(), EditError> {
    for l in body {
        if l.contains('\n') || l.contains('\r') {
            return Err(EditError::new(
                0,
                format!("a block line holds a line break: {l:?}"),
            ));
        }
        if l.starts_with("# BEGIN exliar") || l.starts_with("# END exliar") {
            return Err(EditError::new(0, "a block line looks like a block marker"));
        }
    }
    Ok(())
}

// --- `# exliar was:` / `# exliar added` marks --------------------------------

pub(crate) const WAS: &str = "# exliar was: ";
pub(crate) const ADDED: &str = "# exliar added";

/// A run of marker lines and the statement below them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mark {
    /// Lines `first..=last` are `# exliar was: ` lines; `saved` is the
    /// original text of the statement that follows (lines joined by `\n`).
    Was {
        first: usize,
        last: usize,
        saved: String,
    },
    /// Line `line` is `# exliar added`: exliar wrote the statement below.
    Added { line: usize },
}

impl Mark {
    pub fn first_line(&self) -> usize {
        match self {
            Mark::Was { first, .. } => *first,
            Mark::Added { line } => *line,
        }
    }
    /// The 0-based line of the statement the mark is about.
    pub fn target(&self) -> usize {
        match self {
            Mark::Was { last, .. } => last + 1,
            Mark::Added { line } => line + 1,
        }
    }
}

/// Take every exliar mark out of `text`, one at a time, last first (each
/// removal re-reads the text), with the editor's own `remove_mark`.
pub(crate) fn remove_all_marks(
    text: &str,
    remove_mark: impl Fn(&str, &Mark) -> Result<String, EditError>,
) -> Result<String, EditError> {
    let mut text = text.to_string();
    while let Some(mark) = find_marks(&text).pop() {
        let next = remove_mark(&text, &mark)?;
        if next.len() >= text.len() {
            // Every step takes marker lines out; anything else is a bug.
            return Err(EditError::new(
                mark.first_line() + 1,
                "cannot take out this exliar mark",
            ));
        }
        text = next;
    }
    Ok(text)
}

pub(crate) fn find_marks(text: &str) -> Vec<Mark> {
    let ls = lines(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < ls.len() {
        if ls[i].text.starts_with(WAS) {
            let first = i;
            let mut saved = Vec::new();
            while i < ls.len() && ls[i].text.starts_with(WAS) {
                saved.push(&ls[i].text[WAS.len()..]);
                i += 1;
            }
            out.push(Mark::Was {
                first,
                last: i - 1,
                saved: saved.join("\n"),
            });
            continue;
        }
        if ls[i].text == ADDED {
            out.push(Mark::Added { line: i });
        }
        i += 1;
    }
    out
}

/// `# exliar was: ` lines for an original statement text.
pub(crate) fn was_lines(original: &str) -> String {
    let mut out = String::new();
    for l in original.split('\n') {
        out.push_str(WAS);
        out.push_str(l);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(generator: Generator, builtin: bool, host: &[(u16, u16)]) -> IsolationRequest {
        IsolationRequest {
            generator,
            kernel: (6, 6),
            vfio_pci_builtin: builtin,
            guest: vec![
                GuestFunction {
                    address: PciAddress::new(0, 0x0b, 0, 0),
                    id: PciId::new(0x10de, 0x2504),
                    class: 0x030000,
                },
                GuestFunction {
                    address: PciAddress::new(0, 0x0b, 0, 1),
                    id: PciId::new(0x10de, 0x228e),
                    class: 0x040300,
                },
            ],
            host_ids: host.iter().map(|&(v, d)| PciId::new(v, d)).collect(),
            modprobe_d: Vec::new(),
            kernel_drivers: Vec::new(),
            by_address: false,
            cmdline: Vec::new(),
            initramfs_modules: None,
        }
    }

    fn paths(plan: &IsolationPlan) -> Vec<&str> {
        plan.create
            .iter()
            .map(|f| f.path.as_str())
            .chain(plan.edit.iter().map(|e| e.path.as_str()))
            .collect()
    }

    #[test]
    fn cmdline_ids_are_replaced_by_the_merged_list() {
        // The guest's VGA function and the host's card (1002:67df).
        let mut r = req(Generator::Mkinitcpio, false, &[(0x1002, 0x67df)]);
        r.cmdline = vec!["quiet".into(), "vfio_pci.ids=1002:67df,10de:2504".into()];
        let p = plan_isolation(&r);
        assert_eq!(p.remove_params, ["vfio_pci.ids=1002:67df,10de:2504"]);
        assert_eq!(p.kernel_params, ["vfio-pci.ids=10de:2504,10de:228e"]);
        assert_eq!(p.fixed.len(), 1, "{:?}", p.fixed);
        assert!(
            p.findings
                .iter()
                .any(|f| f.message.contains("leaves out 1002:67df")),
            "{:?}",
            p.findings
        );
        // Already the merged list: nothing to take out.
        r.cmdline = vec!["vfio-pci.ids=10de:2504,10de:228e".into()];
        let p = plan_isolation(&r);
        assert!(p.remove_params.is_empty() && p.fixed.is_empty());
    }

    #[test]
    fn initramfs_tools_vfio_arguments_move_to_the_ids_file() {
        let mut r = req(Generator::InitramfsTools, false, &[]);
        r.initramfs_modules = Some(
            "vfio\nvfio-pci ids=10de:2504 disable_vga=1\nsoftdep nouveau pre: vfio-pci\n".into(),
        );
        let p = plan_isolation(&r);
        let ids = p
            .create
            .iter()
            .find(|f| f.path == modprobe::IDS_CONF)
            .map(|f| f.content.clone())
            .unwrap_or_default();
        assert!(
            ids.contains("options vfio-pci ids=10de:2504,10de:228e\n"),
            "{ids}"
        );
        assert!(ids.contains("options vfio-pci disable_vga=1\n"), "{ids}");
        let edit = p.edit.iter().find(|e| e.path == tools::MODULES_FILE);
        assert!(
            matches!(edit, Some(FileEdit { edit: InPlaceEdit::InitramfsToolsModules(m), .. }) if m.fix_misplaced && m.move_vfio_args),
            "{edit:?}"
        );
        assert_eq!(p.fixed.len(), 2, "{:?}", p.fixed);
    }

    #[test]
    fn ids_only_per_generator() {
        for g in [
            Generator::Mkinitcpio,
            Generator::Dracut,
            Generator::InitramfsTools,
            Generator::Booster,
        ] {
            let plan = plan_isolation(&req(g, false, &[(0x1002, 0x73bf)]));
            assert_eq!(plan.ids.len(), 2);
            assert!(plan.bind_by_address.is_empty());
            let p = paths(&plan);
            assert!(
                p.contains(&modprobe::IDS_CONF) && p.contains(&modprobe::EARLY_CONF),
                "{p:?}"
            );
            assert!(!p.contains(&earlybind::SCRIPT_PATH));
            assert_eq!(plan.regenerate, g.regenerate_command());
        }
    }

    #[test]
    fn shared_audio_id_goes_by_address_only() {
        // Another card of the host has the same HDMI-audio id.
        let plan = plan_isolation(&req(Generator::Mkinitcpio, false, &[(0x10de, 0x228e)]));
        assert_eq!(plan.ids, [PciId::new(0x10de, 0x2504)]);
        assert_eq!(plan.bind_by_address, [PciAddress::new(0, 0x0b, 0, 1)]);
        let early = plan.create.iter().find(|f| f.path == modprobe::EARLY_CONF);
        assert!(early.is_some_and(|f| f.content.contains(&earlybind::install_line(false))));
    }

    /// QEMU's VGA at 02:00.0 (1234:1111, no driver list in exliar).
    fn qemu_vga() -> Vec<GuestFunction> {
        vec![GuestFunction {
            address: PciAddress::new(0, 2, 0, 0),
            id: PciId::new(0x1234, 0x1111),
            class: 0x030000,
        }]
    }

    fn early_conf(plan: &IsolationPlan) -> String {
        plan.create
            .iter()
            .find(|f| f.path == modprobe::EARLY_CONF)
            .map(|f| f.content.clone())
            .unwrap_or_default()
    }

    /// Identical cards of a vendor with no known driver list (QEMU's VGA,
    /// 1234:1111): the early-bind `install` line is what binds the card, so
    /// it is written even with no softdep to go with it.
    #[test]
    fn identical_cards_without_known_drivers_still_get_the_install_line() {
        let mut r = req(Generator::InitramfsTools, false, &[(0x1234, 0x1111)]);
        r.guest = qemu_vga();
        let plan = plan_isolation(&r);
        assert_eq!(plan.bind_by_address, [PciAddress::new(0, 2, 0, 0)]);
        let early = early_conf(&plan);
        assert!(early.contains(&earlybind::install_line(false)), "{early}");
        assert!(!early.lines().any(|l| l.starts_with("softdep")), "{early}");
        // with the kernel's own driver for it, that driver waits for vfio-pci
        r.kernel_drivers = vec!["bochs".into(), "vfio_pci_variant".into()];
        let plan = plan_isolation(&r);
        let early = early_conf(&plan);
        assert!(early.contains("softdep bochs pre: vfio-pci"), "{early}");
        assert!(!early.contains("vfio_pci_variant"), "{early}");
    }

    /// `--by-address`: unique ids go by address too; no `ids=` file.
    #[test]
    fn by_address_binds_unique_ids_by_address() {
        let mut r = req(Generator::InitramfsTools, false, &[]);
        r.by_address = true;
        let plan = plan_isolation(&r);
        assert!(plan.ids.is_empty());
        assert_eq!(
            plan.bind_by_address,
            [
                PciAddress::new(0, 0x0b, 0, 0),
                PciAddress::new(0, 0x0b, 0, 1)
            ]
        );
        let p = paths(&plan);
        assert!(!p.contains(&modprobe::IDS_CONF), "{p:?}");
        assert!(p.contains(&earlybind::SCRIPT_PATH), "{p:?}");
        assert!(p.contains(&earlybind::TOOLS_HOOK_PATH), "{p:?}");
    }

    /// A built-in vfio-pci with no known driver: nothing would pull the
    /// pseudo-module in, and the plan says so.
    #[test]
    fn pseudo_module_without_drivers_is_reported() {
        let mut r = req(Generator::Dracut, true, &[(0x1234, 0x1111)]);
        r.guest = qemu_vga();
        let plan = plan_isolation(&r);
        assert!(
            plan.findings
                .iter()
                .any(|f| f.message.contains("modprobe exliar_vfio_early_bind")),
            "{:?}",
            plan.findings
        );
    }

    #[test]
    fn builtin_ids_only_touch_nothing_but_the_command_line() {
        for g in [
            Generator::Mkinitcpio,
            Generator::Dracut,
            Generator::InitramfsTools,
            Generator::Booster,
        ] {
            let plan = plan_isolation(&req(g, true, &[]));
            assert_eq!(plan.kernel_params, ["vfio-pci.ids=10de:2504,10de:228e"]);
            assert!(
                plan.create.is_empty() && plan.edit.is_empty() && plan.regenerate.is_empty(),
                "{g:?}"
            );
        }
    }

    #[test]
    fn builtin_identical_uses_the_pseudo_module() {
        let plan = plan_isolation(&req(
            Generator::Dracut,
            true,
            &[(0x10de, 0x2504), (0x10de, 0x228e)],
        ));
        assert!(plan.kernel_params.is_empty());
        let early = plan.create.iter().find(|f| f.path == modprobe::EARLY_CONF);
        assert!(early.is_some_and(|f| {
            f.content
                .contains("softdep nouveau pre: exliar_vfio_early_bind")
                && f.content.contains(&earlybind::install_line(true))
        }));
    }

    #[test]
    fn blocks_round_trip_with_and_without_final_newline() {
        let body = vec!["vfio".to_string(), "vfio_pci".to_string()];
        for text in ["", "a\n", "a", "a\nb", "# c\n\n"] {
            let with = insert_block(text, None, "t", &body);
            assert!(with.contains("# BEGIN exliar t\nvfio\nvfio_pci\n# END exliar t"));
            assert_eq!(
                strip_block(&with, "t").ok().as_deref(),
                Some(text),
                "{text:?}"
            );
        }
        let text = "x\namdgpu\n";
        let with = insert_block(text, Some(2), "t", &body);
        assert_eq!(
            with,
            "x\n# BEGIN exliar t\nvfio\nvfio_pci\n# END exliar t\namdgpu\n"
        );
        assert_eq!(strip_block(&with, "t").ok().as_deref(), Some(text));
    }

    #[test]
    fn broken_blocks_are_errors_with_lines() {
        let e = strip_block("a\n# BEGIN exliar t\nb\n", "t").err();
        assert_eq!(e.map(|e| e.line), Some(2));
        let e = strip_block("# END exliar t\n", "t").err();
        assert_eq!(e.map(|e| e.line), Some(1));
        let two = "# BEGIN exliar t\n# END exliar t\n# BEGIN exliar t\n# END exliar t\n";
        assert_eq!(strip_block(two, "t").err().map(|e| e.line), Some(3));
    }

    #[test]
    fn marks_are_found() {
        let t = "a\n# exliar was: X=(1\n# exliar was: 2)\nX=(0 1\n2)\n# exliar added\nY=()\n";
        let m = find_marks(t);
        assert_eq!(
            m,
            vec![
                Mark::Was {
                    first: 1,
                    last: 2,
                    saved: "X=(1\n2)".into()
                },
                Mark::Added { line: 5 }
            ]
        );
        assert_eq!(m[0].target(), 3);
        assert_eq!(m[1].target(), 6);
    }

    #[test]
    fn tokens_are_checked() {
        assert!(check_token("vfio_pci").is_ok());
        assert!(check_token("/usr/lib/exliar/vfio-early-bind").is_ok());
        assert!(check_token("-amdgpu").is_ok());
        for bad in ["", "a b", "a\"", "$(x)", "a;b", "a\nb", "`x`"] {
            assert!(check_token(bad).is_err(), "{bad:?}");
        }
    }
}
