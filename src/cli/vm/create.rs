//! `vm create` / `vm edit`.

use std::io::Write as _;
use std::path::Path;

use super::{CreateArgs, FirmwareArg, VirtType};
use crate::cli::{boot, exit, read_host, term};
use crate::host::HostRoot;
use crate::model::PciAddress;
use crate::vm::create::{self, Existing, FirmwareChoice, GpuChoice, Options, Refusal, VM_DIR};
use crate::vm::domain::UsbId;
use crate::vm::looking_glass::{self, LgOptions};
use crate::vm::request::{DiskArg, HugeSize, NetworkArg, parse_size_mib};
use crate::vm::virsh::{Virsh, valid_name};
use crate::vm::{domain, profile, unattend};

fn refused(a: &CreateArgs, edit: bool, problems: &[String]) -> anyhow::Result<u8> {
    let what = if edit { "edit" } else { "create" };
    if a.json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "schema": super::lifecycle::VM_ACTION_SCHEMA,
                "name": a.name,
                "action": what,
                "result": "refused",
                "state": null,
                "problems": problems,
            }),
        )?;
        writeln!(out)?;
    }
    term::err(&format!(
        "exliar: vm {what} {} refused; nothing was changed:\n",
        a.name
    ));
    for p in problems {
        term::err(&format!("  - {p}\n"));
    }
    Ok(exit::FINDINGS)
}

/// The options given, on top of `base` (`vm edit`: the VM's own).
fn options(a: &CreateArgs, base: Option<Options>) -> Result<Options, String> {
    let mut o = base.unwrap_or_default();
    if let Some(p) = &a.profile {
        o.profile = p.clone();
    }
    if let Some(g) = &a.gpu {
        o.gpu = match g.as_str() {
            "auto" => GpuChoice::Auto,
            "none" => GpuChoice::None,
            addr => GpuChoice::Address(
                PciAddress::parse(addr).map_err(|e| format!("--gpu {addr}: {e}"))?,
            ),
        };
    }
    if let Some(m) = &a.memory {
        o.memory_mib = Some(parse_size_mib(m).map_err(|e| format!("--memory: {e}"))?);
    }
    if let Some(c) = a.cpus {
        o.cpus = Some(c);
    }
    if let Some(h) = &a.hugepages {
        o.hugepages = if h == "none" {
            None
        } else {
            Some(HugeSize::parse(h)?)
        };
    }
    if let Some(d) = &a.disk {
        o.disk = Some(DiskArg::parse(d)?);
    }
    if let Some(i) = &a.iso {
        o.iso = Some(i.clone());
    }
    if let Some(n) = &a.network {
        o.network = Some(NetworkArg::parse(n)?);
    }
    o.stealth |= a.stealth;
    match a.firmware {
        FirmwareArg::Auto => {}
        FirmwareArg::Bios => o.firmware = FirmwareChoice::Bios,
        FirmwareArg::Efi => o.firmware = FirmwareChoice::Efi,
        FirmwareArg::EfiSecure => o.firmware = FirmwareChoice::EfiSecure,
    }
    if let Some(v) = a.virt_type {
        o.kvm = v == VirtType::Kvm;
    }
    match a.looking_glass.as_deref() {
        None => {
            if a.hdr || a.kvmfr {
                let lg = o
                    .looking_glass
                    .as_mut()
                    .ok_or("--hdr and --kvmfr go with --looking-glass")?;
                lg.hdr |= a.hdr;
                lg.kvmfr |= a.kvmfr;
            }
        }
        Some("off") => o.looking_glass = None,
        Some(r) => {
            let resolution = if r == "auto" {
                None
            } else {
                Some(
                    looking_glass::parse_resolution(r)
                        .map_err(|e| format!("--looking-glass: {e}"))?,
                )
            };
            let prev = o.looking_glass.take();
            o.looking_glass = Some(LgOptions {
                resolution,
                hdr: a.hdr || prev.as_ref().is_some_and(|p| p.hdr),
                kvmfr: a.kvmfr || prev.as_ref().is_some_and(|p| p.kvmfr),
                user: None,
            });
        }
    }
    if let Some(lg) = o.looking_glass.as_mut()
        && let Some(u) = &a.looking_glass_user
    {
        lg.user = Some(u.clone());
    }
    if !a.usb.is_empty() {
        o.usb = if a.usb.iter().any(|u| u == "none") {
            Vec::new()
        } else {
            a.usb
                .iter()
                .map(|u| u.parse::<UsbId>().map_err(|e| format!("--usb {e}")))
                .collect::<Result<_, _>>()?
        };
    }
    if !a.usb_controller.is_empty() {
        o.usb_controllers = if a.usb_controller.iter().any(|u| u == "none") {
            Vec::new()
        } else {
            a.usb_controller
                .iter()
                .map(|c| PciAddress::parse(c).map_err(|e| format!("--usb-controller {c}: {e}")))
                .collect::<Result<_, _>>()?
        };
    }
    o.force |= a.force;
    match a.evdev.as_deref() {
        None => {}
        Some("on") => o.evdev = true,
        Some("off") => o.evdev = false,
        Some(x) => return Err(format!("--evdev={x}: give on or off")),
    }
    match a.unattend.as_deref() {
        None => {}
        Some("none") => o.unattend = None,
        Some(u) => o.unattend = Some(u.to_string()),
    }
    // given now, or kept from the VM being edited
    o.handover_explicit |= a.handover.is_some();
    match a.handover.as_deref() {
        None => {}
        Some("boot") => o.handover = crate::hooks::Handover::Boot,
        Some("dynamic") => o.handover = crate::hooks::Handover::Dynamic,
        Some("single-gpu") => o.handover = crate::hooks::Handover::SingleGpu,
        Some(x) => return Err(format!("--handover {x}: give boot, dynamic or single-gpu")),
    }
    match &a.vbios {
        None => {}
        Some(p) if p.as_os_str() == "none" => o.vbios = None,
        Some(p) => o.vbios = Some(p.clone()),
    }
    Ok(o)
}

pub fn create(root: &Path, a: &CreateArgs, edit: bool) -> anyhow::Result<u8> {
    if let Err(e) = valid_name(&a.name) {
        return refused(a, edit, &[e]);
    }
    let host = HostRoot::new(root);
    let live = root == Path::new("/");
    let virsh = Virsh::new(&a.connect.connect);
    // What is there already.
    let mut existing = None;
    let mut base = None;
    if edit {
        let xml = match virsh.dumpxml(&a.name, true) {
            Ok(x) => x,
            Err(e) => {
                return refused(
                    a,
                    edit,
                    &[format!("{} on {}: {}", a.name, virsh.uri, e.message)],
                );
            }
        };
        let Some(meta) = domain::read_meta(&xml)? else {
            return refused(
                a,
                edit,
                &[format!(
                    "{} was not created by exliar: change it with `virsh edit`",
                    a.name
                )],
            );
        };
        base = serde_json::from_str::<Options>(&meta.options)
            .ok()
            .map(|mut b| {
                // the VM's mode stays what it is unless --handover is given
                b.handover_explicit = true;
                b
            });
        let s = domain::read_summary(&xml)?;
        let file = host
            .read_optional(format!("{VM_DIR}/{}.xml", a.name))
            .ok()
            .flatten()
            .map(String::into_bytes);
        existing = Some(Existing {
            uuid: s.uuid,
            macs: s.macs,
            file,
        });
    } else if live && !a.print_xml {
        match virsh.exists(&a.name) {
            Ok(true) => {
                return refused(
                    a,
                    edit,
                    &[format!(
                        "a VM named {} exists on {} already: choose another name, or `exliar vm edit {}`",
                        a.name, virsh.uri, a.name
                    )],
                );
            }
            Ok(false) => {}
            Err(e) => return refused(a, edit, &[e.to_string()]),
        }
    }
    let o = match options(a, base) {
        Ok(o) => o,
        Err(e) => return refused(a, edit, &[e]),
    };
    let profile = match profile::load(&host, &o.profile) {
        Ok(p) => p,
        Err(e) => return refused(a, edit, &[e]),
    };
    let inv = read_host(&host)?;
    let pool = if live && !a.print_xml {
        virsh.default_pool_dir().map(Into::into)
    } else {
        None
    };
    let mut view = create::gather(&host, inv, &o, &a.name, pool);
    if live && o.looking_glass.as_ref().is_some_and(|l| l.kvmfr) {
        view.extras.lg.versions = virsh
            .run(&["version"])
            .ok()
            .and_then(|v| looking_glass::parse_virsh_version(&v));
    }
    // the running kernel's random UUID (not printed with --print-xml, so
    // that the XML of a host is always the same)
    let new_uuid = (live && !a.print_xml)
        .then(|| std::fs::read_to_string("/proc/sys/kernel/random/uuid").ok())
        .flatten()
        .map(|u| u.trim().to_string());
    let vp = match create::plan(
        &a.name,
        &virsh.uri,
        &o,
        &profile,
        &view,
        existing.as_ref(),
        new_uuid,
    ) {
        Ok(p) => p,
        Err(Refusal(r)) => return refused(a, edit, &r),
    };
    if a.print_xml {
        // the XML alone on standard output; what to know on standard error
        for w in &vp.plan.warnings {
            term::err(&format!("exliar: warning: {w}\n"));
        }
        term::out(&vp.xml)?;
        return Ok(exit::OK);
    }
    if !a.json {
        let mut s = format!("VM {} ({} profile):\n", a.name, profile.name);
        for r in &vp.reasons {
            s.push_str(&format!("  - {r}\n"));
        }
        term::out(&s)?;
    }
    if !live {
        // the host was read from a snapshot or another root: show only
        if a.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(
                &mut out,
                &serde_json::json!({"schema": "exliar.apply/1", "applied": false, "reason": "not-confirmed", "plan": boot::plan_json(&vp.plan)}),
            )?;
            writeln!(out)?;
        } else {
            term::out(&crate::plan::render(&vp.plan))?;
            term::out(&format!(
                "\nNot applied: the host was read from {} (a VM is defined on the running host; drop --root).\n",
                root.display()
            ))?;
        }
        return Ok(exit::OK);
    }
    // handover dynamic and single-gpu need exliar's hook: installed first, as a
    // transaction of its own (`exliar hooks remove` takes it away later)
    if vp.handover != crate::hooks::Handover::Boot
        && crate::hooks::status(&host, 0).installed.is_none()
    {
        let libvirt = virsh
            .run(&["version"])
            .ok()
            .and_then(|v| looking_glass::parse_virsh_version(&v))
            .map(|(l, _)| l);
        let exe = std::env::current_exe()
            .map_err(|e| anyhow::anyhow!("finding exliar's own path: {e}"))?;
        let hp = crate::hooks::install_plan(&crate::hooks::gather(&host, libvirt), &exe);
        let store = boot::open_store(root)?;
        match boot::apply_built(&store, &hp, a.yes, false, a.json)? {
            boot::Applied::Done { code, .. } if code == exit::OK => {}
            boot::Applied::Done { code, .. } => return Ok(code),
            boot::Applied::Failed { error, .. } => return Err(error),
        }
    }
    // --unattend: the answer file with its password goes into a private
    // staging folder just before applying, and is removed right after
    let staged = match &vp.unattend {
        Some(u) => match stage_answer_file(a, u, &vp.plan) {
            Ok(s) => s,
            Err(e) => return refused(a, edit, &[e]),
        },
        None => None,
    };
    let store = boot::open_store(root)?;
    let applied = boot::apply_built(&store, &vp.plan, a.yes, false, a.json);
    if let Some(dir) = &staged {
        let _ = std::fs::remove_dir_all(dir);
    }
    match applied? {
        boot::Applied::Done { code, doc } => {
            if a.json {
                let mut out = std::io::stdout().lock();
                serde_json::to_writer_pretty(&mut out, &doc)?;
                writeln!(out)?;
            } else if code == exit::OK && !vp.next.is_empty() {
                let mut s = String::from("Next:\n");
                for n in &vp.next {
                    s.push_str(&format!("  - {n}\n"));
                }
                term::out(&s)?;
            }
            Ok(code)
        }
        boot::Applied::Failed { doc, error } => {
            if a.json {
                let mut out = std::io::stdout().lock();
                serde_json::to_writer_pretty(&mut out, &doc)?;
                writeln!(out)?;
            }
            Err(error)
        }
    }
}

/// Put the answer file, with the password from `--password-file` or the
/// terminal, into the plan's staging folder (mode 0700, the file 0600).
/// Returns the folder to remove after applying.
fn stage_answer_file(
    a: &CreateArgs,
    u: &unattend::Unattend,
    plan: &crate::plan::Plan,
) -> Result<Option<std::path::PathBuf>, String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let Some(staging) = plan.steps.iter().find_map(|s| match s {
        crate::plan::Step::CreateIso { staging, .. } => Some(staging.clone()),
        _ => None,
    }) else {
        return Ok(None);
    };
    let password = match &a.password_file {
        Some(f) => unattend::read_password_file(f),
        None => unattend::prompt_password(),
    }
    .map_err(|e| format!("--unattend: {e}"))?;
    let mut u = u.clone();
    u.password = password;
    let xml = unattend::prepare(&u).map_err(|e| format!("--unattend: {e}"))?;
    if let Some(parent) = staging.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    // a leftover of a killed run holds an old answer file: replace it
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| format!("{}: {e}", staging.display()))?;
    let file = staging.join("Autounattend.xml");
    let r = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, xml.as_bytes()));
    if let Err(e) = r {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(format!("{}: {e}", file.display()));
    }
    Ok(Some(staging))
}
