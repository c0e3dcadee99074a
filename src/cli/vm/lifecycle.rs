//! The `vm` subcommands' handlers.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{CreateArgs, VmDeleteArgs, VmListArgs, VmNameArgs, VmStartArgs, VmStopArgs, VmUsbArgs};
use crate::cli::{exit, read_host, term};
use crate::host::HostRoot;
use crate::plan::Subject;
use crate::txn::{Status, Store};
use crate::vm::domain;
use crate::vm::domain::UsbId;
use crate::vm::ready::{self, Readiness};
use crate::vm::virsh::{Virsh, valid_name};

pub const VM_SCHEMA: &str = "exliar.vm/1";
pub const VM_LIST_SCHEMA: &str = "exliar.vm-list/1";
pub const VM_ACTION_SCHEMA: &str = "exliar.vm-action/1";

fn print_json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// The result of start/stop/destroy/delete.
#[derive(Debug, Serialize)]
struct ActionDoc {
    schema: &'static str,
    name: String,
    action: &'static str,
    /// `done`, `refused` or `failed`.
    result: &'static str,
    /// The domain's state afterwards, when it could be read.
    state: Option<String>,
    problems: Vec<String>,
}

fn action(
    json: bool,
    name: &str,
    what: &'static str,
    result: Result<String, Vec<String>>,
    virsh: &Virsh,
) -> anyhow::Result<u8> {
    let state = virsh.domstate(name).ok();
    let (res, problems, code) = match &result {
        Ok(_) => ("done", Vec::new(), exit::OK),
        Err(p) => ("refused", p.clone(), exit::FINDINGS),
    };
    if what == "start"
        && let Err(p) = &result
    {
        crate::cli::notify(
            "vm-failed",
            serde_json::json!({"vm": name, "error": p.join("; ")}),
        );
    }
    if json {
        print_json(&ActionDoc {
            schema: VM_ACTION_SCHEMA,
            name: name.to_string(),
            action: what,
            result: res,
            state,
            problems,
        })?;
    } else {
        match result {
            Ok(msg) => term::out(&format!("{msg}\n"))?,
            Err(p) => {
                term::err(&format!("exliar: {what} {name} refused:\n"));
                for line in p {
                    term::err(&format!("  - {line}\n"));
                }
            }
        }
    }
    Ok(code)
}

fn name_ok(name: &str) -> anyhow::Result<()> {
    valid_name(name).map_err(anyhow::Error::msg)
}

/// The domain's definition, or a refusal naming the VM.
fn definition(virsh: &Virsh, name: &str) -> anyhow::Result<Result<String, Vec<String>>> {
    match virsh.dumpxml(name, true) {
        Ok(x) => Ok(Ok(x)),
        Err(e) if e.message.contains("ailed to get domain") || e.message.contains("not found") => {
            Ok(Err(vec![format!(
                "no VM named {name} on {} (`exliar vm list` lists them)",
                virsh.uri
            )]))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Serialize)]
struct ListEntry {
    name: String,
    state: String,
    /// Created by exliar (its metadata is in the domain).
    exliar: bool,
    profile: Option<String>,
    gpu: Option<String>,
}

pub fn list(a: &VmListArgs) -> anyhow::Result<u8> {
    let virsh = Virsh::new(&a.connect.connect);
    let mut vms = Vec::new();
    for (name, state) in virsh.list()? {
        let meta = virsh
            .dumpxml(&name, true)
            .ok()
            .and_then(|x| domain::read_meta(&x).ok().flatten());
        vms.push(ListEntry {
            exliar: meta.is_some(),
            profile: meta.as_ref().map(|m| m.profile.clone()),
            gpu: meta.as_ref().and_then(|m| m.gpu.map(|g| g.to_string())),
            name,
            state,
        });
    }
    if a.json {
        print_json(&serde_json::json!({
            "schema": VM_LIST_SCHEMA,
            "connect": a.connect.connect,
            "vms": vms,
        }))?;
    } else if vms.is_empty() {
        term::out(&format!("No VMs on {}.\n", a.connect.connect))?;
    } else {
        let mut s = format!("{:<24} {:<12} {:<10} GPU\n", "NAME", "STATE", "PROFILE");
        for v in &vms {
            s.push_str(&format!(
                "{:<24} {:<12} {:<10} {}\n",
                v.name,
                v.state,
                v.profile
                    .as_deref()
                    .unwrap_or(if v.exliar { "-" } else { "(not exliar's)" }),
                v.gpu.as_deref().unwrap_or("-")
            ));
        }
        term::out(&s)?;
    }
    Ok(exit::OK)
}

#[derive(Debug, Serialize)]
struct ShowDoc {
    schema: &'static str,
    name: String,
    state: String,
    exliar: bool,
    profile: Option<String>,
    memory_mib: u64,
    vcpus: u32,
    gpu: Option<String>,
    functions: Vec<ready::Function>,
    /// The VM can start now (its devices can be handed over).
    ready: bool,
    problems: Vec<String>,
    /// Host CPU of each vCPU, and the emulator's.
    pinning: Option<domain::PinSummary>,
    disks: Vec<String>,
    /// Host USB devices given to it (`VENDOR:PRODUCT`).
    usb: Vec<domain::UsbId>,
    /// Looking Glass: the shared memory and the client's command line.
    looking_glass: Option<LookingGlassDoc>,
    /// Who moves the card (`boot`, `dynamic`), for exliar's VMs.
    handover: Option<String>,
    /// The hook's last take (`prepare begin`) and give-back (`release
    /// end`) for this VM, with their step times.
    last_handover: Vec<crate::hooks::Run>,
}

#[derive(Debug, Serialize)]
struct LookingGlassDoc {
    path: String,
    size_mib: u64,
    client: Vec<String>,
}

fn readiness(
    root: &Path,
    xml: &str,
    summary: &domain::DomainSummary,
    running: bool,
) -> anyhow::Result<Readiness> {
    let host = HostRoot::new(root);
    let inv = read_host(&host)?;
    // handover `dynamic` and `single-gpu`: exliar's hook moves the card, if
    // it is installed
    let moves = match crate::hooks::read_domain(xml) {
        Some((crate::hooks::Handover::Dynamic | crate::hooks::Handover::SingleGpu, _)) => {
            Some(crate::hooks::status(&host, 0).installed.is_some())
        }
        _ => None,
    };
    Ok(ready::check(&host, &inv, &summary.hostdevs, running, moves))
}

pub fn show(root: &Path, a: &VmNameArgs) -> anyhow::Result<u8> {
    name_ok(&a.name)?;
    let virsh = Virsh::new(&a.connect.connect);
    let xml = match definition(&virsh, &a.name)? {
        Ok(x) => x,
        Err(p) => return action(a.json, &a.name, "show", Err(p), &virsh),
    };
    let state = virsh.domstate(&a.name)?;
    let summary = domain::read_summary(&xml)?;
    let meta = domain::read_meta(&xml)?;
    let running = state != "shut off";
    let r = readiness(root, &xml, &summary, running)?;
    let doc = ShowDoc {
        schema: VM_SCHEMA,
        name: a.name.clone(),
        exliar: meta.is_some(),
        profile: meta.as_ref().map(|m| m.profile.clone()),
        gpu: meta.as_ref().and_then(|m| m.gpu.map(|g| g.to_string())),
        memory_mib: summary.memory_kib / 1024,
        vcpus: summary.vcpus,
        ready: r.problems.is_empty() && !running,
        problems: r.problems,
        functions: r.functions,
        pinning: summary.pinning.clone(),
        disks: summary.disks.clone(),
        usb: summary.usb.clone(),
        handover: crate::hooks::read_domain(&xml).map(|(m, _)| m.name().to_string()),
        last_handover: {
            let runs = crate::hooks::status(&HostRoot::new(root), usize::MAX).last_runs;
            ["prepare begin", "release end", "recover-display"]
                .iter()
                .filter_map(|p| {
                    runs.iter()
                        .rev()
                        .find(|r| r.domain == a.name && r.phase == *p)
                        .cloned()
                })
                .collect()
        },
        looking_glass: summary
            .looking_glass
            .clone()
            .map(|(path, size_mib)| LookingGlassDoc {
                client: vec!["looking-glass-client".into(), "-f".into(), path.clone()],
                path,
                size_mib,
            }),
        state,
    };
    if a.json {
        print_json(&doc)?;
        return Ok(exit::OK);
    }
    let mut s = format!("VM {} ({})\n", doc.name, doc.state);
    s.push_str(&format!(
        "  profile: {}\n  memory: {} MiB, {} vCPUs\n",
        doc.profile.as_deref().unwrap_or("(not created by exliar)"),
        doc.memory_mib,
        doc.vcpus
    ));
    if let Some(p) = &doc.pinning {
        s.push_str(&format!("  pinning: {}\n", p.describe()));
    }
    for d in &doc.disks {
        s.push_str(&format!("  disk: {d}\n"));
    }
    for u in &doc.usb {
        s.push_str(&format!("  USB device: {u}\n"));
    }
    if let Some(h) = &doc.handover {
        s.push_str(&format!("  handover: {h}\n"));
    }
    for r in &doc.last_handover {
        s.push_str(&format!(
            "  last {}: {} in {:.2}s ({}){}\n",
            r.phase,
            r.outcome,
            r.secs,
            r.steps
                .iter()
                .map(|t| format!("{} {:.2}s", t.what, t.secs))
                .collect::<Vec<_>>()
                .join(", "),
            r.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ));
    }
    if let Some(lg) = &doc.looking_glass {
        s.push_str(&format!(
            "  Looking Glass: {} ({} MiB); on the host run: {}\n",
            lg.path,
            lg.size_mib,
            lg.client.join(" ")
        ));
    }
    for f in &doc.functions {
        s.push_str(&format!(
            "  {} group {}: on {}{}\n",
            f.address,
            f.iommu_group.map_or("?".to_string(), |g| g.to_string()),
            f.driver.as_deref().unwrap_or("no driver"),
            match &f.returns_to {
                Some(r) if f.managed =>
                    format!(", libvirt takes it at start and gives it back to {r} at stop"),
                _ => String::new(),
            }
        ));
    }
    if running {
        s.push_str("  running\n");
    } else if doc.problems.is_empty() {
        s.push_str("  ready to start\n");
    } else {
        s.push_str("  NOT ready to start:\n");
        for p in &doc.problems {
            s.push_str(&format!("    - {p}\n"));
        }
    }
    term::out(&s)?;
    Ok(exit::OK)
}

pub fn start(root: &Path, a: &VmStartArgs) -> anyhow::Result<u8> {
    name_ok(&a.name)?;
    let virsh = Virsh::new(&a.connect.connect);
    let xml = match definition(&virsh, &a.name)? {
        Ok(x) => x,
        Err(p) => return action(a.json, &a.name, "start", Err(p), &virsh),
    };
    let state = virsh.domstate(&a.name)?;
    if state != "shut off" {
        return action(
            a.json,
            &a.name,
            "start",
            Err(vec![format!("{} is {state} already", a.name)]),
            &virsh,
        );
    }
    let summary = domain::read_summary(&xml)?;
    let r = readiness(root, &xml, &summary, false)?;
    if !r.problems.is_empty() {
        return action(a.json, &a.name, "start", Err(r.problems), &virsh);
    }
    let mut args = vec!["start"];
    if a.paused {
        args.push("--paused");
    }
    args.push(&a.name);
    match virsh.run(&args) {
        Ok(_) => {
            let st = virsh.domstate(&a.name).unwrap_or_default();
            action(
                a.json,
                &a.name,
                "start",
                Ok(format!("Started {} ({st}).", a.name)),
                &virsh,
            )
        }
        Err(e) => action(a.json, &a.name, "start", Err(vec![e.message]), &virsh),
    }
}

pub fn stop(a: &VmStopArgs) -> anyhow::Result<u8> {
    name_ok(&a.name)?;
    let virsh = Virsh::new(&a.connect.connect);
    if let Err(p) = definition(&virsh, &a.name)? {
        return action(a.json, &a.name, "stop", Err(p), &virsh);
    }
    if virsh.domstate(&a.name)? == "shut off" {
        return action(
            a.json,
            &a.name,
            "stop",
            Ok(format!("{} is not running.", a.name)),
            &virsh,
        );
    }
    if let Err(e) = virsh.run(&["shutdown", "--mode", "acpi", &a.name]) {
        return action(a.json, &a.name, "stop", Err(vec![e.message]), &virsh);
    }
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    while Instant::now() < deadline {
        if virsh.domstate(&a.name)? == "shut off" {
            return action(
                a.json,
                &a.name,
                "stop",
                Ok(format!("{} shut down.", a.name)),
                &virsh,
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    action(
        a.json,
        &a.name,
        "stop",
        Err(vec![format!(
            "the guest did not power off within {} s (it may ignore ACPI, or still be booting); `exliar vm destroy {}` powers it off at once",
            a.timeout, a.name
        )]),
        &virsh,
    )
}

pub fn destroy(a: &VmNameArgs) -> anyhow::Result<u8> {
    name_ok(&a.name)?;
    let virsh = Virsh::new(&a.connect.connect);
    if let Err(p) = definition(&virsh, &a.name)? {
        return action(a.json, &a.name, "destroy", Err(p), &virsh);
    }
    if virsh.domstate(&a.name)? == "shut off" {
        return action(
            a.json,
            &a.name,
            "destroy",
            Ok(format!("{} is not running.", a.name)),
            &virsh,
        );
    }
    match virsh.run(&["destroy", &a.name]) {
        Ok(_) => action(
            a.json,
            &a.name,
            "destroy",
            Ok(format!("Powered off {}.", a.name)),
            &virsh,
        ),
        Err(e) => action(a.json, &a.name, "destroy", Err(vec![e.message]), &virsh),
    }
}

pub fn delete(root: &Path, a: &VmDeleteArgs) -> anyhow::Result<u8> {
    name_ok(&a.name)?;
    let virsh = Virsh::new(&a.connect.connect);
    if let Ok(state) = virsh.domstate(&a.name)
        && state != "shut off"
    {
        return action(
            a.json,
            &a.name,
            "delete",
            Err(vec![format!(
                "{} is {state}: `exliar vm stop {}` first",
                a.name, a.name
            )]),
            &virsh,
        );
    }
    let mut store = Store::open(root)?;
    store.delete_disks = a.delete_disks;
    let ours: Vec<String> = store
        .journals()?
        .into_iter()
        .rev()
        .filter(|j| j.status == Status::Applied)
        .filter(|j| matches!(&j.subject, Some(Subject::Vm { name, connect }) if *name == a.name && *connect == a.connect.connect))
        .map(|j| j.id)
        .collect();
    if ours.is_empty() {
        return action(
            a.json,
            &a.name,
            "delete",
            Err(vec![format!(
                "no applied exliar transaction created {} on {} (`exliar history`); a VM exliar did not create is removed with `virsh undefine`",
                a.name, a.connect.connect
            )]),
            &virsh,
        );
    }
    if !a.yes
        && !crate::cli::boot::confirm_with(&format!(
            "Delete VM {} (roll back {})?",
            a.name,
            ours.join(", ")
        ))?
    {
        return Ok(exit::FINDINGS);
    }
    let mut run = crate::cli::boot::runner(false);
    let mut kept = Vec::new();
    for id in &ours {
        let j = store.rollback(id, false, run.as_mut())?;
        kept.extend(j.commands.iter().filter_map(|c| c.kept.clone()));
    }
    let mut msg = format!("Deleted {} (rolled back {}).", a.name, ours.join(", "));
    for k in kept {
        msg.push_str(&format!("\n  {k}"));
    }
    action(a.json, &a.name, "delete", Ok(msg), &virsh)
}

pub fn create(root: &Path, a: &CreateArgs, edit: bool) -> anyhow::Result<u8> {
    super::create::create(root, a, edit)
}

/// The USB hostdevs a domain XML holds.
fn usb_in(xml: &str) -> anyhow::Result<Vec<UsbId>> {
    Ok(domain::read_summary(xml)?.usb)
}

/// `vm usb attach|detach NAME VENDOR:PRODUCT`: hot-plug on a running VM,
/// verified in the live XML.
pub fn usb(a: &VmUsbArgs, attach: bool) -> anyhow::Result<u8> {
    name_ok(&a.name)?;
    let what = if attach { "usb-attach" } else { "usb-detach" };
    let virsh = Virsh::new(&a.connect.connect);
    let id: UsbId = match a.device.parse() {
        Ok(id) => id,
        Err(e) => return action(a.json, &a.name, what, Err(vec![e]), &virsh),
    };
    let state = match virsh.domstate(&a.name) {
        Ok(s) => s,
        Err(e) => return action(a.json, &a.name, what, Err(vec![e.message]), &virsh),
    };
    if state != "running" && state != "paused" {
        return action(
            a.json,
            &a.name,
            what,
            Err(vec![format!(
                "{} is {state}: hot-plug needs a running VM (give the device at create with --usb, or `exliar vm edit {} --usb {id}`)",
                a.name, a.name
            )]),
            &virsh,
        );
    }
    let has = usb_in(&virsh.dumpxml(&a.name, false)?)?.contains(&id);
    if has == attach {
        let msg = if attach {
            format!("{id} is in {} already.", a.name)
        } else {
            format!("{id} is not in {}.", a.name)
        };
        return action(a.json, &a.name, what, Ok(msg), &virsh);
    }
    // virsh reads the device from a file: a private one, removed after
    let dir = std::env::temp_dir().join(format!("exliar-usb-{}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let file = dir.join("device.xml");
    let r = std::fs::write(&file, crate::vm::domain::usb_hostdev_xml(id))
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
        .map(|()| {
            let verb = if attach {
                "attach-device"
            } else {
                "detach-device"
            };
            virsh.run(&[verb, &a.name, &file.to_string_lossy(), "--live"])
        });
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = r? {
        return action(a.json, &a.name, what, Err(vec![e.message]), &virsh);
    }
    // verify: what the running VM says now
    let now = usb_in(&virsh.dumpxml(&a.name, false)?)?.contains(&id);
    if now != attach {
        return action(
            a.json,
            &a.name,
            what,
            Err(vec![format!(
                "virsh answered, but the running {}'s XML {} {id}",
                a.name,
                if attach {
                    "does not hold"
                } else {
                    "still holds"
                }
            )]),
            &virsh,
        );
    }
    let msg = if attach {
        format!("{id} is in {} now (until it stops).", a.name)
    } else {
        format!("{id} is back with the host.")
    };
    action(a.json, &a.name, what, Ok(msg), &virsh)
}

#[cfg(test)]
mod usb_tests {
    use super::*;

    #[test]
    fn usb_ids_are_read_from_a_domain() -> anyhow::Result<()> {
        let xml = "<domain><devices><hostdev mode='subsystem' type='pci'><source><address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></source></hostdev>\
<hostdev mode='subsystem' type='usb' managed='yes'><source startupPolicy='optional'><vendor id='0x046d'/><product id='0xc52b'/></source><alias name='hostdev1'/></hostdev>\
<hostdev mode=\"subsystem\" type=\"usb\"><source><vendor id=\"0x1b1c\"/><product id=\"0x1b2e\"/></source></hostdev></devices></domain>";
        assert_eq!(
            usb_in(xml)?,
            [
                UsbId {
                    vendor: 0x046d,
                    product: 0xc52b
                },
                UsbId {
                    vendor: 0x1b1c,
                    product: 0x1b2e
                }
            ]
        );
        assert!(usb_in("<domain/>")?.is_empty());
        // what exliar writes reads back
        let one = UsbId {
            vendor: 0x0627,
            product: 0x0001,
        };
        let x = format!(
            "<domain><devices>{}</devices></domain>",
            domain::usb_hostdev_xml(one)
        );
        assert_eq!(usb_in(&x)?, [one]);
        Ok(())
    }
}
