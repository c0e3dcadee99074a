//! The boot-time isolation planner: hardware analysis + the target's
//! configuration in, a [`Plan`] out. Pure: [`TargetFacts`] carries every
//! file the planner may read (gathered by `facts::read`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::analyze::bootenv::{BootEnv, CmdlineSource, Initramfs};
use crate::analyze::{Analysis, Isolation};
use crate::host::critical::Critical;
use crate::model::{Inventory, PciAddress};

use super::Subject;
use super::boot::params::{CpuVendor, Framebuffer, params_for_host};
use super::boot::{bls, grub, kernelstub, limine, nix, refind};
use super::editors::{GuestFunction, IsolationRequest, binding, plan_isolation};
use super::initramfs::{Generator, vfio_modules};
use super::modalias::{PciAliases, pci_modalias};
use super::modprobe::{PciId, ids_option_line, merged_softdeps};
use super::{Plan, Step, rawtext};

/// The target's configuration, as read.
#[derive(Debug, Clone, Default)]
pub struct TargetFacts {
    pub root: String,
    pub boot: Option<BootEnv>,
    /// Kernel release of the target (`6.1.0-26-amd64`), and the installed
    /// kernels `(release, image path)`.
    pub kernel_release: Option<String>,
    pub kernels: Vec<(String, String)>,
    pub vfio_pci_builtin: bool,
    pub intel_iommu_default_on: bool,
    /// Relevant files: path (relative to the target root) → content.
    pub files: BTreeMap<String, Option<String>>,
    /// Files that exist but could not be read (a FIFO, a device node, too
    /// large, no permission): path → the error, naming the file. They are
    /// absent from `files`' contents; a plan that would write one refuses.
    pub unreadable: BTreeMap<String, String>,
    /// modprobe.d files in kmod's order, `(path, text)`.
    pub modprobe_d: Vec<(String, String)>,
    /// Tools present in the target (`update-grub`, `grubby`, …).
    pub tools: Vec<String>,
    pub proc_cmdline: Option<String>,
    /// systemd-boot entries (`boot/loader/entries/arch.conf`, relative to
    /// the target root, every ESP mount point); their text is in `files`,
    /// with the `loader.conf` files beside them.
    pub loader_entries: Vec<String>,
    /// The `pci:` aliases of the target kernel's `modules.alias` (empty when
    /// the tree has no modules).
    pub pci_aliases: PciAliases,
}

impl TargetFacts {
    pub fn file(&self, rel: &str) -> Option<&str> {
        self.files.get(rel).and_then(|o| o.as_deref())
    }
    pub fn has_tool(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t == name)
    }
}

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct IsolateRequest {
    /// `None`: the recommendation.
    pub gpu: Option<PciAddress>,
    pub force: bool,
    pub iommu_pt: bool,
    /// Bind every function by address (the early-bind step), even ids only
    /// the guest card has: another card with those ids stays the host's.
    pub by_address: bool,
    /// `--bootloader`: where to put the kernel parameters, overriding
    /// detection (and settling its conflicts).
    pub bootloader: Option<BootloaderChoice>,
}

/// The boot loaders (kernel command-line sources) `--bootloader` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootloaderChoice {
    Grub,
    SystemdBoot,
    KernelCmdline,
    Grubby,
    Kernelstub,
    Refind,
    Limine,
    LimineDefault,
    Proxmox,
}

impl BootloaderChoice {
    pub const ALL: &'static [BootloaderChoice] = &[
        BootloaderChoice::Grub,
        BootloaderChoice::SystemdBoot,
        BootloaderChoice::KernelCmdline,
        BootloaderChoice::Grubby,
        BootloaderChoice::Kernelstub,
        BootloaderChoice::Refind,
        BootloaderChoice::Limine,
        BootloaderChoice::LimineDefault,
        BootloaderChoice::Proxmox,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BootloaderChoice::Grub => "grub",
            BootloaderChoice::SystemdBoot => "systemd-boot",
            BootloaderChoice::KernelCmdline => "kernel-cmdline",
            BootloaderChoice::Grubby => "grubby",
            BootloaderChoice::Kernelstub => "kernelstub",
            BootloaderChoice::Refind => "refind",
            BootloaderChoice::Limine => "limine",
            BootloaderChoice::LimineDefault => "limine-default",
            BootloaderChoice::Proxmox => "proxmox",
        }
    }

    /// What each name edits, for messages and `--help`.
    pub fn describe(self) -> &'static str {
        match self {
            BootloaderChoice::Grub => "/etc/default/grub, then update-grub or grub-mkconfig",
            BootloaderChoice::SystemdBoot => {
                "the default systemd-boot entry (loader.conf `default`, else the only non-fallback entry)"
            }
            BootloaderChoice::KernelCmdline => "/etc/kernel/cmdline, then kernel-install",
            BootloaderChoice::Grubby => "grubby --update-kernel=ALL (BLS entries)",
            BootloaderChoice::Kernelstub => "kernelstub (Pop!_OS)",
            BootloaderChoice::Refind => "/boot/refind_linux.conf",
            BootloaderChoice::Limine => "limine.conf",
            BootloaderChoice::LimineDefault => "/etc/default/limine, then limine-update",
            BootloaderChoice::Proxmox => "/etc/kernel/cmdline, then proxmox-boot-tool refresh",
        }
    }

    /// The accepted names, comma-separated.
    pub fn names() -> String {
        Self::ALL
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::str::FromStr for BootloaderChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown boot loader `{s}`; one of: {}",
                    BootloaderChoice::names()
                )
            })
    }
}

impl std::fmt::Display for BootloaderChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why there is no plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("refused: {}", reasons.join("; "))]
    Refused {
        reasons: Vec<String>,
        /// `--force` would go on.
        overridable: bool,
    },
    /// The boot-loader evidence disagrees: `--bootloader NAME` must say
    /// which one to edit.
    #[error(
        "the boot-loader evidence conflicts: {}; say which boot loader to edit with --bootloader NAME (one of: {})",
        evidence.join("; "),
        BootloaderChoice::names()
    )]
    AmbiguousBootloader { evidence: Vec<String> },
    #[error("{0}")]
    Unsupported(String),
    #[error("{file}: {message}")]
    Edit { file: String, message: String },
}

fn refuse(reasons: Vec<String>, overridable: bool) -> PlanError {
    PlanError::Refused {
        reasons,
        overridable,
    }
}

fn generator(i: Initramfs) -> Option<Generator> {
    match i {
        Initramfs::Mkinitcpio => Some(Generator::Mkinitcpio),
        Initramfs::Dracut => Some(Generator::Dracut),
        Initramfs::InitramfsTools => Some(Generator::InitramfsTools),
        Initramfs::Booster => Some(Generator::Booster),
        Initramfs::Nixos => None,
    }
}

fn kernel_mm(release: Option<&str>) -> (u32, u32) {
    let r = release.unwrap_or("");
    let mut it = r
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    let major = it.next().and_then(|s| s.parse().ok()).unwrap_or(6);
    let minor = it.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    (major, minor)
}

/// Build the isolation plan.
pub fn plan(
    inv: &Inventory,
    analysis: &Analysis,
    critical: &[Critical],
    facts: &TargetFacts,
    req: &IsolateRequest,
) -> Result<Plan, PlanError> {
    let mut plan = Plan::new(facts.root.clone());
    let boot = facts.boot.as_ref().ok_or_else(|| {
        PlanError::Unsupported("the target's boot environment could not be read".to_string())
    })?;
    if boot.immutable.is_some() || boot.initramfs == Some(Initramfs::Nixos) {
        return Err(PlanError::Unsupported(
            "this is an immutable system (NixOS or ostree): exliar does not edit its files; use `exliar plan --format nix` (NixOS) and add the module to your configuration".to_string(),
        ));
    }

    let Selected {
        gpu,
        functions,
        warnings,
        guest,
        host_ids,
        kernel_drivers,
    } = select(inv, analysis, critical, facts, req)?;
    plan.warnings.extend(warnings);
    plan.subject = Subject::GpuIsolation {
        gpu: Some(gpu),
        functions,
    };

    let generator = boot.initramfs.and_then(generator).ok_or_else(|| {
        PlanError::Unsupported(
            "no initramfs generator found in the target (mkinitcpio, dracut, initramfs-tools or booster); see `exliar check --only boot.initramfs`".to_string(),
        )
    })?;
    let source = match req.bootloader {
        Some(choice) => Some(chosen_source(choice, facts)?),
        None => boot.cmdline_source.clone(),
    };
    let cmdline_now = cmdline_before(source.as_ref(), facts);
    let guest_addresses: Vec<PciAddress> = guest.iter().map(|g| g.address).collect();
    let iso = plan_isolation(&IsolationRequest {
        generator,
        kernel: kernel_mm(facts.kernel_release.as_deref()),
        vfio_pci_builtin: facts.vfio_pci_builtin,
        guest,
        host_ids,
        modprobe_d: facts.modprobe_d.clone(),
        kernel_drivers,
        by_address: req.by_address,
        cmdline: cmdline_now.clone(),
        initramfs_modules: facts
            .file(super::initramfs::tools::MODULES_FILE.trim_start_matches('/'))
            .map(str::to_string),
    });
    plan.fixed.extend(iso.fixed.iter().cloned());
    for f in &iso.findings {
        plan.warnings.push(if f.line > 0 {
            format!("{}:{}: {}", f.file, f.line, f.message)
        } else {
            format!("{}: {}", f.file, f.message)
        });
    }

    let mut changed = false;
    for nf in &iso.create {
        let rel = nf.path.trim_start_matches('/').to_string();
        let before = facts.file(&rel).map(str::to_string);
        if before.as_deref() == Some(nf.content.as_str()) {
            continue;
        }
        changed = true;
        plan.steps.push(Step::WriteFile {
            path: PathBuf::from(&rel),
            before: before.as_deref().map(rawtext::encode),
            after: rawtext::encode(&nf.content),
            mode: nf.mode,
            why: "exliar's own file for vfio-pci at boot".to_string(),
        });
    }
    for fe in &iso.edit {
        let rel = fe.path.trim_start_matches('/').to_string();
        let before = facts.file(&rel).map(str::to_string);
        let base = match (&before, fe.create_if_missing) {
            (Some(t), _) => t.clone(),
            (None, true) => String::new(),
            (None, false) => {
                return Err(PlanError::Unsupported(format!(
                    "/{rel} is missing; {} needs it",
                    generator.name()
                )));
            }
        };
        let after = fe.edit.apply(&base).map_err(|e| PlanError::Edit {
            file: format!("/{rel}"),
            message: e.to_string(),
        })?;
        if before.as_deref() == Some(after.as_str()) {
            continue;
        }
        changed = true;
        plan.steps.push(Step::WriteFile {
            path: PathBuf::from(&rel),
            before: before.as_deref().map(rawtext::encode),
            after: rawtext::encode(&after),
            mode: 0o644,
            why: format!("vfio modules and configuration for {}", generator.name()),
        });
    }

    // Kernel parameters.
    let cpu = cpu_of(inv);
    let ids: Vec<String> = iso.ids.iter().map(|i| i.to_string()).collect();
    let mut params = params_for_host(
        cpu,
        facts.intel_iommu_default_on,
        facts.vfio_pci_builtin,
        &ids,
        generator == Generator::Dracut,
        Framebuffer::None,
        req.iommu_pt,
    );
    for p in &iso.kernel_params {
        if !params.contains(p) {
            params.push(p.clone());
        }
    }
    if req.bootloader.is_none()
        && !boot.conflicts.is_empty()
        && (!params.is_empty() || !iso.remove_params.is_empty())
    {
        return Err(PlanError::AmbiguousBootloader {
            evidence: boot.conflicts.clone(),
        });
    }
    let boot_changed = kernel_params(
        &mut plan,
        source.as_ref(),
        facts,
        &params,
        &iso.remove_params,
        "kernel parameters for the IOMMU and vfio-pci",
    )?;

    if changed || boot_changed.initramfs {
        plan.steps.push(Step::Run {
            argv: iso.regenerate.clone(),
            undo: None,
            why: format!(
                "rebuild the initramfs of every installed kernel ({})",
                generator.name()
            ),
        });
    }
    for (argv, undo, why) in boot_changed.commands {
        plan.steps.push(Step::Run { argv, undo, why });
    }
    let keep: Vec<PciAddress> = inv
        .devices
        .iter()
        .filter(|d| !guest_addresses.contains(&d.address))
        .filter(|d| d.driver.as_deref() != Some("vfio-pci"))
        .map(|d| d.address)
        .collect();
    let problems = evaluate_after(
        &plan,
        inv,
        facts,
        source.as_ref(),
        generator,
        &cmdline_now,
        &params,
        &iso.remove_params,
        &guest_addresses,
        &keep,
        &iso.bind_by_address,
    );
    if !problems.is_empty() {
        return Err(refuse(problems, false));
    }
    // What each boot entry will pass once this plan is applied.
    plan.unplaced_params =
        super::boot::effective::evaluate(source.as_ref(), facts, &plan.steps, &params);
    unreadable_files(&mut plan, facts)?;
    Ok(plan)
}

/// A plan that only puts `params` on the kernel command line of whatever
/// boots the target (the boot loader `bootloader` names, else the one the
/// target's evidence shows), regenerating what embeds it: `vm create
/// --hugepages 1G` reserves its pages this way. The steps are merged into
/// the caller's plan; `unplaced_params` says which boot entries would
/// still not pass them.
pub fn kernel_param_plan(
    facts: &TargetFacts,
    bootloader: Option<BootloaderChoice>,
    params: &[String],
) -> Result<Plan, PlanError> {
    let mut plan = Plan::new(facts.root.clone());
    let boot = facts.boot.as_ref().ok_or_else(|| {
        PlanError::Unsupported("the target's boot environment could not be read".to_string())
    })?;
    if boot.immutable.is_some() || boot.initramfs == Some(Initramfs::Nixos) {
        return Err(PlanError::Unsupported(format!(
            "this is an immutable system (NixOS or ostree): add `{}` to its kernel parameters in its own configuration",
            params.join(" ")
        )));
    }
    let source = match bootloader {
        Some(choice) => Some(chosen_source(choice, facts)?),
        None => {
            if !boot.conflicts.is_empty() {
                return Err(PlanError::AmbiguousBootloader {
                    evidence: boot.conflicts.clone(),
                });
            }
            boot.cmdline_source.clone()
        }
    };
    let changed = kernel_params(
        &mut plan,
        source.as_ref(),
        facts,
        params,
        &[],
        "kernel parameters reserving hugepages for a VM",
    )?;
    if changed.initramfs
        && let Some(g) = boot.initramfs.and_then(generator)
    {
        plan.steps.push(Step::Run {
            argv: g
                .regenerate_command()
                .iter()
                .map(|a| a.to_string())
                .collect(),
            undo: None,
            why: format!(
                "rebuild the initramfs of every installed kernel ({}): it embeds the command line",
                g.name()
            ),
        });
    }
    for (argv, undo, why) in changed.commands {
        plan.steps.push(Step::Run { argv, undo, why });
    }
    plan.unplaced_params =
        super::boot::effective::evaluate(source.as_ref(), facts, &plan.steps, params);
    unreadable_files(&mut plan, facts)?;
    Ok(plan)
}

/// The kernel command line the target boots with before the plan: the
/// first boot entry's whose command line is known (see
/// [`super::boot::effective::entries_after`]); the running command line
/// where none is, or the source's file does not exist yet.
fn cmdline_before(source: Option<&CmdlineSource>, facts: &TargetFacts) -> Vec<String> {
    let proc = || {
        super::boot::params::split(facts.proc_cmdline.as_deref().unwrap_or("")).unwrap_or_default()
    };
    let own = match source {
        Some(CmdlineSource::GrubDefault { .. }) => Some("etc/default/grub"),
        Some(CmdlineSource::KernelCmdlineFile { .. }) | Some(CmdlineSource::ProxmoxBootTool) => {
            Some("etc/kernel/cmdline")
        }
        Some(CmdlineSource::BlsEntry { file }) => Some(file.trim_start_matches('/')),
        _ => None,
    };
    if own.is_some_and(|rel| facts.file(rel).is_none()) {
        return proc();
    }
    super::boot::effective::entries_after(source, facts, &facts.files, &[])
        .into_iter()
        .find_map(|e| e.cmdline.ok())
        .unwrap_or_else(proc)
}

/// What the target will really do at boot once the plan is applied: the
/// plan's files written over the target's (in memory), the command line
/// each boot entry will pass, then, for each distinct command line, the
/// merged vfio-pci configuration evaluated; and dracut's combined
/// configuration. Reasons to refuse, if any Linux entry would leave a guest
/// function to another driver or give vfio-pci a device the host keeps, or
/// exliar's dracut lines would be undone.
#[allow(clippy::too_many_arguments)]
fn evaluate_after(
    plan: &Plan,
    inv: &Inventory,
    facts: &TargetFacts,
    source: Option<&CmdlineSource>,
    generator: Generator,
    cmdline_now: &[String],
    params: &[String],
    removed: &[String],
    guest: &[PciAddress],
    keep: &[PciAddress],
    by_address: &[PciAddress],
) -> Vec<String> {
    use super::effective;
    let files = super::boot::effective::files_after(facts, &plan.steps);
    // modprobe.d: the target's files as the plan leaves them, and the new ones.
    let mut modprobe_d: Vec<(String, String)> = facts
        .modprobe_d
        .iter()
        .map(|(p, t)| {
            let rel = p.trim_start_matches('/');
            let text = files
                .get(rel)
                .cloned()
                .flatten()
                .unwrap_or_else(|| t.clone());
            (p.clone(), text)
        })
        .collect();
    for (rel, text) in &files {
        if rel.starts_with("etc/modprobe.d/")
            && let Some(t) = text
            && !modprobe_d
                .iter()
                .any(|(p, _)| p.trim_start_matches('/') == rel)
        {
            // `/etc` first: a new file hides a same-named one further down.
            modprobe_d.insert(0, (format!("/{rel}"), t.clone()));
        }
    }
    // The command line of each Linux entry as the plan leaves it (one
    // evaluation per distinct command line); where none is known, the
    // running one with the plan's changes.
    let mut cmdlines: Vec<(Option<String>, Vec<String>)> = Vec::new();
    for e in super::boot::effective::entries_after(source, facts, &files, &plan.steps) {
        if let Ok(t) = e.cmdline
            && !cmdlines.iter().any(|(_, c)| *c == t)
        {
            cmdlines.push((Some(e.entry), t));
        }
    }
    if cmdlines.is_empty() {
        let mut c: Vec<String> = cmdline_now
            .iter()
            .filter(|p| !removed.contains(p))
            .cloned()
            .collect();
        for p in params {
            if !c.iter().any(|x| super::boot::params::same_param(x, p)) {
                c.push(p.clone());
            }
        }
        cmdlines.push((None, c));
    }
    let tools_modules = (generator == Generator::InitramfsTools)
        .then(|| files.get("etc/initramfs-tools/modules").cloned().flatten())
        .flatten();
    let devices: Vec<(PciAddress, PciId)> = inv
        .devices
        .iter()
        .filter_map(|d| Some((d.address, PciId::new(d.vendor_id?, d.device_id?))))
        .collect();
    // Binding by address needs exliar's `install vfio_pci` line to be the
    // one kmod runs (the first); a built-in vfio-pci or booster uses a
    // pseudo-module of exliar's own instead.
    let pseudo = facts.vfio_pci_builtin || generator == Generator::Booster;
    let mut out: Vec<String> = Vec::new();
    let push = |out: &mut Vec<String>, m: String| {
        if !out.contains(&m) {
            out.push(m);
        }
    };
    for (entry, cmdline) in &cmdlines {
        let eff = effective::evaluate(&effective::Inputs {
            modprobe_d: &modprobe_d,
            cmdline,
            initramfs_modules: tools_modules.as_deref(),
            builtin: facts.vfio_pci_builtin,
        });
        let ids = eff.ids().map(|e| e.ids.clone()).unwrap_or_default();
        let by_address: &[PciAddress] = match &eff.install {
            Some((effective::Origin::Modprobe { file, line }, _))
                if !by_address.is_empty() && !pseudo && !super::modprobe::is_exliar_file(file) =>
            {
                push(
                    &mut out,
                    format!(
                        "the `install vfio_pci` line at {file}:{line} is read before exliar's, so the early-bind step binding {} by address would not run",
                        list(by_address)
                    ),
                );
                &[]
            }
            _ => by_address,
        };
        let claimed = effective::claimed(&ids, &devices, by_address);
        let verdict = effective::Verdict::judge(guest, keep, &claimed);
        let booted = entry
            .as_ref()
            .map(|e| format!(" with the command line of {e}"))
            .unwrap_or_default();
        let from = eff
            .ids()
            .map(|e| {
                let hint = if matches!(e.origin, effective::Origin::Cmdline { .. }) {
                    "; it is set where exliar does not edit: take it out of the boot loader's configuration"
                } else {
                    ""
                };
                format!(
                    " (vfio-pci gets `ids={}` from {}{hint})",
                    e.ids.join(","),
                    e.origin
                )
            })
            .unwrap_or_default();
        if !verdict.missing.is_empty() {
            push(
                &mut out,
                format!(
                    "after this plan vfio-pci would still not claim {} at boot{booted}{from}",
                    list(&verdict.missing)
                ),
            );
        }
        if !verdict.extra.is_empty() {
            push(
                &mut out,
                format!(
                    "after this plan vfio-pci would also claim {}, which the host keeps{}{from}",
                    list(&verdict.extra),
                    if booted.is_empty() {
                        String::new()
                    } else {
                        format!(",{booted}")
                    }
                ),
            );
        }
    }
    if generator == Generator::Dracut {
        out.extend(dracut_problems(&files));
    }
    out
}

fn list(a: &[PciAddress]) -> String {
    a.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// exliar's dracut lines that the combined configuration undoes.
fn dracut_problems(files: &BTreeMap<String, Option<String>>) -> Vec<String> {
    use super::initramfs::dracut;
    let ours_rel = dracut::DROPIN.trim_start_matches('/');
    let Some(Some(ours)) = files.get(ours_rel) else {
        return Vec::new();
    };
    let mut inputs: Vec<(String, String)> = Vec::new();
    for (rel, text) in files {
        let Some(t) = text else { continue };
        let is_conf = rel == "etc/dracut.conf"
            || (rel.starts_with("etc/dracut.conf.d/")
                || rel.starts_with("usr/lib/dracut/dracut.conf.d/"));
        if is_conf {
            inputs.push((format!("/{rel}"), t.clone()));
        }
    }
    // `/etc` before `/usr/lib`: the first of two same-named files wins.
    inputs.sort_by_key(|(p, _)| !p.starts_with("/etc/"));
    let refs: Vec<(&str, &str)> = inputs
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let summary = dracut::evaluate(&refs);
    let want = dracut::evaluate(&[(dracut::DROPIN, ours.as_str())]);
    let mut out = Vec::new();
    let lost = |have: &[String], want: &[String]| -> Vec<String> {
        want.iter().filter(|w| !have.contains(w)).cloned().collect()
    };
    let lost_items = lost(&summary.install_items, &want.install_items);
    let lost_drivers = lost(&summary.force_drivers, &want.force_drivers);
    if !lost_items.is_empty() || !lost_drivers.is_empty() {
        let why: Vec<String> = summary
            .findings
            .iter()
            .filter(|f| f.message.contains("replaces the list"))
            .map(|f| format!("{}:{}", f.file, f.line))
            .collect();
        out.push(format!(
            "dracut's combined configuration drops exliar's {} (a plain assignment read after {}: {}); make it `+=` or rename it to sort before {}",
            lost_items
                .iter()
                .chain(&lost_drivers)
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" "),
            dracut::DROPIN,
            if why.is_empty() { "see the drop-ins".to_string() } else { why.join(", ") },
            dracut::DROPIN
        ));
    }
    out
}

/// A file the plan would write but could not read refuses the plan (its
/// `before` is unknown); any other unreadable file is a warning.
fn unreadable_files(plan: &mut Plan, facts: &TargetFacts) -> Result<(), PlanError> {
    for (rel, err) in &facts.unreadable {
        let written = plan
            .steps
            .iter()
            .any(|s| matches!(s, Step::WriteFile { path, .. } if path.as_path() == std::path::Path::new(rel)));
        if written {
            return Err(PlanError::Unsupported(format!(
                "{err}; exliar needs to edit it, so it made no plan (nothing was changed)"
            )));
        }
        plan.warnings.push(format!("{err}; ignored"));
    }
    Ok(())
}

/// The card to isolate, after the refusals, and what the binding needs to
/// know about it and the host.
struct Selected {
    gpu: PciAddress,
    functions: Vec<PciAddress>,
    /// Refusals `--force` overrode.
    warnings: Vec<String>,
    guest: Vec<GuestFunction>,
    /// vendor:device of every function the host keeps (not on vfio-pci).
    host_ids: Vec<PciId>,
    /// Modules the target kernel's `modules.alias` gives the guest's functions.
    kernel_drivers: Vec<String>,
}

/// Which GPU (the request's, else the recommendation) and whether it may go:
/// the refusals every way of isolating a card shares.
fn select(
    inv: &Inventory,
    analysis: &Analysis,
    critical: &[Critical],
    facts: &TargetFacts,
    req: &IsolateRequest,
) -> Result<Selected, PlanError> {
    // Which GPU.
    let address = match req.gpu.or(analysis.recommendation.passthrough) {
        Some(a) => a,
        None => {
            let mut reasons = vec!["no GPU given and none recommended".to_string()];
            reasons.extend(analysis.recommendation.reasons.iter().cloned());
            return Err(refuse(reasons, false));
        }
    };
    let Some(gpu) = analysis
        .gpus
        .iter()
        .find(|g| g.address == address || g.functions.contains(&address))
    else {
        return Err(refuse(vec![format!("{address} is not a GPU")], false));
    };

    // Refusals.
    let mut hard = Vec::new();
    let mut soft = Vec::new();
    if inv.iommu.enabled == Some(false) {
        soft.push("the IOMMU is not enabled on the running system (see `exliar check`); the plan adds the kernel parameters, but nothing is isolated until it is on".to_string());
    }
    // Another display device (a BMC console counts) can run the host.
    let others = analysis
        .gpus
        .iter()
        .filter(|g| g.address != gpu.address && g.virtual_function_of().is_none())
        .count();
    if gpu.boot_display && others == 0 {
        soft.push(format!(
            "{} is the boot display and the host has no other GPU: the host would boot headless",
            gpu.address
        ));
    }
    if gpu.bmc {
        hard.push(format!("{} is a board-management display", gpu.address));
    }
    for peer in gpu.group_peers() {
        if let Some(c) = critical.iter().find(|c| c.address == *peer) {
            hard.push(format!(
                "its IOMMU group also holds {peer}, which the host needs ({})",
                c.why
            ));
        } else if analysis.recommendation.host == Some(*peer) {
            hard.push(format!(
                "its IOMMU group also holds {peer}, the GPU the host keeps"
            ));
        }
    }
    if gpu.isolation == Isolation::Shared && hard.is_empty() {
        soft.push(format!(
            "{} is not isolated: its IOMMU group also holds {}",
            gpu.address,
            gpu.group_peers()
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !hard.is_empty() {
        return Err(refuse(hard, false));
    }
    if !soft.is_empty() && !req.force {
        return Err(refuse(soft, true));
    }
    let warnings = soft.into_iter().map(|s| format!("--force: {s}")).collect();

    // The guest's functions and the host's ids.
    let mut guest = Vec::new();
    let mut kernel_drivers: Vec<String> = Vec::new();
    for a in &gpu.functions {
        let d = inv
            .device(a)
            .ok_or_else(|| PlanError::Unsupported(format!("{a}: not in the inventory")))?;
        let (Some(v), Some(dv), Some(c)) = (d.vendor_id, d.device_id, d.class) else {
            return Err(PlanError::Unsupported(format!(
                "{a}: vendor, device or class unknown"
            )));
        };
        guest.push(GuestFunction {
            address: *a,
            id: PciId {
                vendor: v,
                device: dv,
            },
            class: c.0,
        });
        let subsystem = d.subsystem_vendor_id.zip(d.subsystem_device_id);
        let alias = pci_modalias(v, dv, subsystem, c.0);
        for m in facts.pci_aliases.modules_for(&alias) {
            if !kernel_drivers.contains(&m) {
                kernel_drivers.push(m);
            }
        }
    }
    let host_ids: Vec<PciId> = inv
        .devices
        .iter()
        .filter(|d| !gpu.functions.contains(&d.address))
        .filter(|d| d.driver.as_deref() != Some("vfio-pci"))
        .filter_map(|d| {
            Some(PciId {
                vendor: d.vendor_id?,
                device: d.device_id?,
            })
        })
        .collect();
    Ok(Selected {
        gpu: gpu.address,
        functions: gpu.functions.to_vec(),
        warnings,
        guest,
        host_ids,
        kernel_drivers,
    })
}

fn cpu_of(inv: &Inventory) -> CpuVendor {
    match inv.host.cpu_vendor.as_deref() {
        Some("GenuineIntel") => CpuVendor::Intel,
        Some("AuthenticAMD") | Some("HygonGenuine") => CpuVendor::Amd,
        _ => CpuVendor::Other,
    }
}

/// A NixOS module isolating the card (`exliar plan --format nix`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NixosPlan {
    /// Refusals `--force` overrode.
    pub warnings: Vec<String>,
    /// The module's text, for the user to import.
    pub module: String,
}

/// What `plan` does, for a NixOS configuration: the same card, refusals and
/// binding (ids, by address, softdeps), written as a module instead of edits
/// (exliar does not edit `configuration.nix`).
pub fn nixos(
    inv: &Inventory,
    analysis: &Analysis,
    critical: &[Critical],
    facts: &TargetFacts,
    req: &IsolateRequest,
) -> Result<NixosPlan, PlanError> {
    let sel = select(inv, analysis, critical, facts, req)?;
    let b = binding(
        &sel.guest,
        &sel.host_ids,
        req.by_address,
        &sel.kernel_drivers,
    );
    let ids: Vec<String> = b.ids.iter().map(|i| i.to_string()).collect();
    // NixOS kernels do not turn the Intel IOMMU on by default; vfio-pci is
    // a module there.
    let params = params_for_host(
        cpu_of(inv),
        false,
        false,
        &ids,
        false,
        Framebuffer::None,
        req.iommu_pt,
    );
    // An unknown kernel is taken as a current one (no `vfio_virqfd`: naming
    // a module that does not exist would fail the NixOS build).
    let kernel = facts
        .kernel_release
        .as_deref()
        .map_or((6, 6), |r| kernel_mm(Some(r)));
    let modules: Vec<String> = vfio_modules(kernel).iter().map(|m| m.to_string()).collect();
    let mut extra = String::new();
    if !ids.is_empty() {
        extra.push_str(&ids_option_line(&ids));
        extra.push('\n');
    }
    for sd in merged_softdeps(&b.drivers, "vfio-pci", &[]).0 {
        extra.push_str(&sd.render());
        extra.push('\n');
    }
    Ok(NixosPlan {
        warnings: sel.warnings,
        module: nix::nixos_module(&params, &modules, &extra, &b.by_address),
    })
}

fn absent(choice: BootloaderChoice, what: &str) -> PlanError {
    refuse(
        vec![format!(
            "--bootloader {choice}: {what} is absent in the target (name the boot loader the target boots with)"
        )],
        false,
    )
}

/// The command-line source `--bootloader` names, checked against the
/// target's files.
fn chosen_source(
    choice: BootloaderChoice,
    facts: &TargetFacts,
) -> Result<CmdlineSource, PlanError> {
    let need = |rel: &str| {
        if facts.file(rel).is_some() {
            Ok(())
        } else {
            Err(absent(choice, &format!("/{rel}")))
        }
    };
    Ok(match choice {
        BootloaderChoice::Grub => {
            need("etc/default/grub")?;
            CmdlineSource::GrubDefault {
                file: "/etc/default/grub".to_string(),
                regenerate: String::new(),
            }
        }
        BootloaderChoice::SystemdBoot => CmdlineSource::BlsEntry {
            file: format!("/{}", default_sd_entry(facts)?),
        },
        BootloaderChoice::KernelCmdline => {
            need("etc/kernel/cmdline")?;
            CmdlineSource::KernelCmdlineFile {
                regenerate: String::new(),
            }
        }
        BootloaderChoice::Proxmox => {
            need("etc/kernel/cmdline")?;
            CmdlineSource::ProxmoxBootTool
        }
        BootloaderChoice::Grubby => {
            if !facts.has_tool("grubby") {
                return Err(absent(choice, "grubby (/usr/sbin/grubby)"));
            }
            CmdlineSource::Grubby
        }
        BootloaderChoice::Kernelstub => {
            need("etc/kernelstub/configuration")?;
            CmdlineSource::Kernelstub
        }
        BootloaderChoice::Refind => {
            need("boot/refind_linux.conf")?;
            CmdlineSource::RefindConf {
                file: "/boot/refind_linux.conf".to_string(),
            }
        }
        BootloaderChoice::Limine => {
            let file = crate::analyze::bootenv::LIMINE_CONFS
                .iter()
                .find(|p| facts.file(p).is_some())
                .ok_or_else(|| absent(choice, "limine.conf"))?;
            CmdlineSource::LimineConf {
                file: format!("/{file}"),
            }
        }
        BootloaderChoice::LimineDefault => {
            need("etc/default/limine")?;
            CmdlineSource::LimineDefault
        }
    })
}

/// Does a loader.conf `default` pattern (a glob, with or without `.conf`)
/// name this entry file?
fn sd_default_matches(pattern: &str, name: &str) -> bool {
    let stem = name.strip_suffix(".conf").unwrap_or(name);
    glob_match(pattern, name) || glob_match(pattern, stem)
}

/// `*` and `?` globbing, as systemd-boot matches `default`.
fn glob_match(p: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (p.chars().collect(), s.chars().collect());
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The systemd-boot entry to edit: the one `default` in loader.conf names,
/// else the only entry that is not a fallback one.
fn default_sd_entry(facts: &TargetFacts) -> Result<String, PlanError> {
    let choice = BootloaderChoice::SystemdBoot;
    let entries: Vec<&String> = facts
        .loader_entries
        .iter()
        .filter(|e| facts.file(e).is_some())
        .collect();
    if entries.is_empty() {
        return Err(absent(
            choice,
            "a loader entry (/boot/loader/entries/*.conf)",
        ));
    }
    let name = |e: &str| e.rsplit('/').next().unwrap_or(e).to_string();
    let default = crate::analyze::bootenv::ESP_MOUNTS
        .iter()
        .filter_map(|m| facts.file(&format!("{m}/loader/loader.conf")))
        .find_map(|t| {
            t.lines().find_map(|l| {
                let mut it = l.trim().splitn(2, char::is_whitespace);
                (it.next() == Some("default"))
                    .then(|| it.next().map(|v| v.trim().to_string()))
                    .flatten()
            })
        })
        .filter(|d| !d.is_empty() && !d.starts_with('@'));
    if let Some(d) = &default {
        // systemd-boot sorts entries and takes the first match.
        let mut matching: Vec<&&String> = entries
            .iter()
            .filter(|e| sd_default_matches(d, &name(e)))
            .collect();
        matching.sort_by_key(|e| name(e));
        if let Some(e) = matching.first() {
            return Ok((**e).clone());
        }
    }
    let regular: Vec<&&String> = entries
        .iter()
        .filter(|e| !name(e).contains("fallback"))
        .collect();
    match regular.as_slice() {
        [one] => Ok((**one).clone()),
        _ => Err(refuse(
            vec![format!(
                "--bootloader systemd-boot: {} and loader.conf names no default that matches one; entries: {}",
                if regular.is_empty() {
                    "every entry is a fallback one"
                } else {
                    "several entries exist"
                },
                entries
                    .iter()
                    .map(|e| format!("/{e}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )],
            false,
        )),
    }
}

#[derive(Default)]
struct BootChange {
    /// The command line is embedded in the initramfs/UKI: regenerate.
    initramfs: bool,
    commands: Vec<(Vec<String>, Option<Vec<String>>, String)>,
}

fn edit_err(file: &str) -> impl Fn(super::boot::EditError) -> PlanError + '_ {
    move |e| PlanError::Edit {
        file: format!("/{file}"),
        message: e.to_string(),
    }
}

fn write_if_changed(
    plan: &mut Plan,
    rel: &str,
    before: Option<&str>,
    after: String,
    why: &str,
) -> bool {
    if before == Some(after.as_str()) {
        return false;
    }
    plan.steps.push(Step::WriteFile {
        path: PathBuf::from(rel),
        before: before.map(rawtext::encode),
        after: rawtext::encode(&after),
        mode: 0o644,
        why: why.to_string(),
    });
    true
}

/// Where grubby keeps the BLS entries it edits (relative to the target root).
pub(crate) const GRUBBY_ENTRIES: &str = "boot/loader/entries/";

/// The older Fedora/RHEL GRUB environment block holding `kernelopts`.
pub(crate) const GRUBENV: &str = "boot/grub2/grubenv";

/// The BLS entries grubby edits, with the command line each passes
/// (`$kernelopts` expanded from grubenv), and a warning for each entry that
/// cannot be read (left out).
pub(crate) fn grubby_entries(facts: &TargetFacts) -> (Vec<(String, Vec<String>)>, Vec<String>) {
    let kernelopts = facts
        .file(GRUBENV)
        .and_then(|t| bls::grubenv_var(t, "kernelopts"));
    let mut v = Vec::new();
    let mut warnings = Vec::new();
    for rel in facts
        .loader_entries
        .iter()
        .filter(|e| e.starts_with(GRUBBY_ENTRIES))
    {
        let Some(text) = facts.file(rel) else {
            continue;
        };
        let e = match bls::entry_cmdline(text) {
            Ok(e) => e,
            Err(e) => {
                warnings.push(format!(
                    "{}: left out of the grubby decision",
                    e.in_file(format!("/{rel}"))
                ));
                continue;
            }
        };
        if e.kind != bls::EntryKind::Linux {
            continue;
        }
        let opts = e.options.unwrap_or_default();
        v.push((
            rel.clone(),
            bls::expand_kernelopts(&opts, kernelopts.as_deref()),
        ));
    }
    (v, warnings)
}

/// Put `params` on the command line of whatever boots the target.
fn kernel_params(
    plan: &mut Plan,
    source: Option<&CmdlineSource>,
    facts: &TargetFacts,
    params: &[String],
    remove: &[String],
    why: &str,
) -> Result<BootChange, PlanError> {
    let mut out = BootChange::default();
    if params.is_empty() && remove.is_empty() {
        return Ok(out);
    }
    let current: Vec<String> = facts
        .proc_cmdline
        .as_deref()
        .map(|c| c.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    match source {
        Some(CmdlineSource::GrubDefault { .. }) => {
            let rel = "etc/default/grub";
            let text = facts.file(rel).unwrap_or("");
            let inputs = grub::GrubInputs {
                main: text,
                dropins: &[],
                dropins_sourced: false,
            };
            let key = grub::preferred_key(&inputs).map_err(edit_err(rel))?;
            let e = grub::edit_default_grub(text, key, params, remove).map_err(edit_err(rel))?;
            plan.warnings.extend(e.warnings.iter().cloned());
            if write_if_changed(plan, rel, facts.file(rel), e.text.clone(), why) {
                let host = grub::GrubHost {
                    has_update_grub: facts.has_tool("update-grub"),
                    mkconfig: ["grub-mkconfig", "grub2-mkconfig"]
                        .iter()
                        .find(|t| facts.has_tool(t))
                        .map(|t| t.to_string()),
                    grub_cfg: facts
                        .files
                        .get("boot/grub/grub.cfg")
                        .is_some_and(Option::is_some),
                    grub2_cfg: facts
                        .files
                        .get("boot/grub2/grub.cfg")
                        .is_some_and(Option::is_some),
                    blscfg: grub::grub_variable(&inputs, "GRUB_ENABLE_BLSCFG")
                        .ok()
                        .flatten()
                        .as_deref()
                        == Some("true"),
                    mkconfig_update_bls_cmdline: false,
                    has_grubby: facts.has_tool("grubby"),
                };
                let u = grub::grub_update(&host, &e.added, &[], "");
                plan.warnings.extend(u.warnings);
                for c in u.commands {
                    out.commands
                        .push((c, None, "regenerate the GRUB configuration".to_string()));
                }
            }
        }
        Some(CmdlineSource::KernelCmdlineFile { .. }) | Some(CmdlineSource::ProxmoxBootTool) => {
            let rel = "etc/kernel/cmdline";
            let before = facts.file(rel);
            let text = match before {
                Some(t) => {
                    bls::edit_kernel_cmdline(t, params, remove)
                        .map_err(edit_err(rel))?
                        .text
                }
                None => {
                    let proc = facts.proc_cmdline.as_deref().unwrap_or("");
                    if bls::running_params(proc).is_empty() {
                        return Err(refuse(
                            vec![format!(
                                "/{rel} is absent and the running kernel's command line is unknown (no /proc/cmdline in the target): a new /{rel} with only exliar's parameters would boot without `root=`; create /{rel} with the full command line first"
                            )],
                            false,
                        ));
                    }
                    // Without the user's parameters the plan takes out.
                    let kept: Vec<String> = current
                        .iter()
                        .filter(|p| !remove.contains(p))
                        .cloned()
                        .collect();
                    bls::kernel_cmdline_from_proc(&kept.join(" "), params)
                }
            };
            if write_if_changed(plan, rel, before, text, why) {
                let consumer = if matches!(source, Some(CmdlineSource::ProxmoxBootTool)) {
                    bls::CmdlineConsumer::Proxmox
                } else {
                    bls::CmdlineConsumer::KernelInstall {
                        kernels: facts.kernels.clone(),
                    }
                };
                for c in bls::kernel_cmdline_apply(&consumer) {
                    out.commands.push((
                        c,
                        None,
                        "write the boot entries from /etc/kernel/cmdline".to_string(),
                    ));
                }
            }
        }
        Some(CmdlineSource::BlsEntry { file }) => {
            let rel = file.trim_start_matches('/');
            let text = facts
                .file(rel)
                .ok_or_else(|| PlanError::Unsupported(format!("/{rel} could not be read")))?;
            let name = rel.rsplit('/').next().unwrap_or(rel);
            // A Linux entry without `options` passes no command line (no
            // `root=`): the line exliar adds starts with what the running
            // kernel was given, as kernel-install would write it.
            let cmdline = bls::entry_cmdline(text).map_err(edit_err(rel))?;
            let mut with_base: Vec<String> = Vec::new();
            if cmdline.kind == bls::EntryKind::Linux
                && cmdline.options.is_none()
                && !bls::is_fallback_entry(name, text)
            {
                let running = facts
                    .proc_cmdline
                    .as_deref()
                    .map(bls::running_params)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|p| !remove.contains(p))
                    .collect::<Vec<_>>();
                if running.is_empty() {
                    return Err(refuse(
                        vec![format!(
                            "/{rel} has no `options` line and the running kernel's command line is unknown (no /proc/cmdline in the target): an `options` line with only exliar's parameters would boot without `root=`; add the entry's `options` line (root=… and the rest) first"
                        )],
                        false,
                    ));
                }
                plan.warnings.push(format!(
                    "/{rel} has no `options` line: the one added starts with the running kernel's command line ({}); check it is right for this entry",
                    running.join(" ")
                ));
                with_base = running;
                for p in params {
                    if !with_base
                        .iter()
                        .any(|t| super::boot::params::same_param(t, p))
                    {
                        with_base.push(p.clone());
                    }
                }
            }
            let add = if with_base.is_empty() {
                params
            } else {
                with_base.as_slice()
            };
            let e = bls::edit_loader_entry(name, text, add, remove).map_err(edit_err(rel))?;
            plan.warnings.extend(e.edited.warnings.iter().cloned());
            write_if_changed(plan, rel, Some(text), e.edited.text, why);
        }
        Some(CmdlineSource::RefindConf { file }) => {
            let rel = file.trim_start_matches('/');
            let text = facts.file(rel).unwrap_or("");
            let e = refind::edit_refind_linux_conf(text, params, remove).map_err(edit_err(rel))?;
            plan.warnings.extend(e.warnings.iter().cloned());
            write_if_changed(plan, rel, facts.file(rel), e.text, why);
        }
        Some(CmdlineSource::LimineConf { file }) => {
            let rel = file.trim_start_matches('/');
            let text = facts.file(rel).unwrap_or("");
            let e = limine::edit_limine_conf(text, params, remove).map_err(edit_err(rel))?;
            plan.warnings.extend(e.warnings.iter().cloned());
            write_if_changed(plan, rel, facts.file(rel), e.text, why);
        }
        Some(CmdlineSource::LimineDefault) => {
            let rel = "etc/default/limine";
            let text = facts.file(rel).unwrap_or("");
            let e = limine::edit_default_limine(text, params, remove).map_err(edit_err(rel))?;
            plan.warnings.extend(e.warnings.iter().cloned());
            if write_if_changed(plan, rel, facts.file(rel), e.text, why) {
                out.commands.push((
                    limine::default_limine_update_argv(),
                    None,
                    "regenerate limine.conf".to_string(),
                ));
            }
        }
        Some(CmdlineSource::Grubby) => {
            let (entries, unread) = grubby_entries(facts);
            plan.warnings.extend(unread);
            let (argv, undo) = if entries.is_empty() {
                // Nothing to read the entries from: the running command
                // line is the best guess.
                plan.warnings.push(format!(
                    "no BLS entry in /{GRUBBY_ENTRIES}: the parameters are decided from the running kernel's command line"
                ));
                let (argv, d) = bls::grubby_argv(&current, params, remove);
                plan.warnings.extend(d.warnings.iter().cloned());
                let undo = bls::grubby_undo(&d.added, &d.removed);
                (argv, undo)
            } else {
                let g = bls::grubby_plan(&entries, params, remove);
                plan.warnings.extend(g.warnings);
                (g.argv, g.undo)
            };
            if let Some(argv) = argv {
                out.commands.push((
                    argv,
                    undo,
                    "add the parameters to every BLS entry".to_string(),
                ));
            }
        }
        Some(CmdlineSource::Kernelstub) => {
            let existing = facts
                .file("etc/kernelstub/configuration")
                .and_then(|t| kernelstub::read_config(t).ok())
                .map(|c| c.kernel_options)
                .unwrap_or_default();
            let (cmds, d) = kernelstub::kernelstub_argv(&existing, params, remove);
            plan.warnings.extend(d.warnings.iter().cloned());
            for argv in cmds {
                let undo = (!d.added.is_empty()).then(|| {
                    vec![
                        "kernelstub".to_string(),
                        "-d".to_string(),
                        d.added.join(" "),
                    ]
                });
                out.commands
                    .push((argv, undo, "kernelstub: add the parameters".to_string()));
            }
        }
        Some(CmdlineSource::Nixos) | Some(CmdlineSource::Ostree) => {
            return Err(PlanError::Unsupported(
                "immutable system: use `exliar plan --format nix` (NixOS) or `rpm-ostree kargs` (ostree)".to_string(),
            ));
        }
        None => {
            plan.steps.push(Step::KernelParams {
                add: params.to_vec(),
                remove: remove.to_vec(),
                why:
                    "no boot-loader configuration was recognised in the target: add these yourself"
                        .to_string(),
            });
        }
    }
    Ok(out)
}
