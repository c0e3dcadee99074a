//! `vm create` / `vm edit`.

use std::io::Write as _;
use std::path::Path;

use super::{CreateArgs, FirmwareArg, VirtType};
use crate::cli::{boot, exit, read_host, term};
use crate::host::HostRoot;
use crate::model::PciAddress;
use crate::vm::create::{self, Existing, FirmwareChoice, GpuChoice, Options, Refusal, VM_DIR};
use crate::vm::request::{DiskArg, HugeSize, NetworkArg, parse_size_mib};
use crate::vm::virsh::{Virsh, valid_name};
use crate::vm::{domain, profile};

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
    let mut o = base.unwrap_or(Options {
        profile: "windows11".into(),
        gpu: GpuChoice::Auto,
        memory_mib: None,
        cpus: None,
        hugepages: None,
        disk: None,
        iso: None,
        network: None,
        stealth: false,
        firmware: FirmwareChoice::Auto,
        kvm: true,
    });
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
        base = serde_json::from_str::<Options>(&meta.options).ok();
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
    let view = create::gather(&host, inv, &o, &a.name, pool);
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
    let store = boot::open_store(root)?;
    match boot::apply_built(&store, &vp.plan, a.yes, false, a.json)? {
        boot::Applied::Done { code, doc } => {
            if a.json {
                let mut out = std::io::stdout().lock();
                serde_json::to_writer_pretty(&mut out, &doc)?;
                writeln!(out)?;
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
