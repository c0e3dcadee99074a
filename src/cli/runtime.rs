//! `exliar bind`, `unbind` and `status`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::{BindArgs, UnbindArgs, exit, read_host};
use crate::analyze;
use crate::bind::{self, BindingState, MemoryState, Outcome, Request, Scope, StateFile};
use crate::host::HostRoot;
use crate::host::critical;
use crate::host::kernel::SysfsKernel;
use crate::model::PciAddress;

fn parse_addresses(list: &[String]) -> anyhow::Result<Vec<PciAddress>> {
    list.iter()
        .map(|s| PciAddress::parse(s).map_err(anyhow::Error::from))
        .collect()
}

fn print_json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn render(o: &Outcome) -> String {
    let mut s = String::new();
    let verb = if o.dry_run { "would run" } else { "ran" };
    if !o.refusals.is_empty() {
        s.push_str("Refused:\n");
        for r in &o.refusals {
            s.push_str(&format!("  {} {}\n", r.address, r.reason));
        }
    }
    if !o.steps.is_empty() {
        s.push_str(&format!("Kernel writes ({verb}):\n"));
        for st in &o.steps {
            s.push_str(&format!("  {st}\n"));
        }
    }
    for d in &o.devices {
        let before = d.driver_before.as_deref().unwrap_or("no driver");
        match (&d.driver_after, o.dry_run) {
            (_, true) => s.push_str(&format!(
                "  {}: {before} -> {}\n",
                d.address,
                d.expected.as_deref().unwrap_or("(kernel's choice)")
            )),
            (after, false) => s.push_str(&format!(
                "  {}: {before} -> {}\n",
                d.address,
                after.as_deref().unwrap_or("no driver")
            )),
        }
    }
    for g in &o.groups {
        s.push_str(&format!(
            "  IOMMU group {}: {}; /dev/vfio/{} {}\n",
            g.id,
            if g.viable { "viable" } else { "NOT viable" },
            g.id,
            if g.vfio_node { "present" } else { "absent" }
        ));
    }
    for w in &o.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    if let Some(e) = &o.error {
        s.push_str(&format!("error: {e}\n"));
        if o.rolled_back {
            s.push_str("Every device was put back as it was.\n");
        }
    }
    s
}

fn finish(o: &Outcome, json: bool) -> anyhow::Result<u8> {
    if json {
        print_json(o)?;
    } else {
        let text = render(o);
        if o.error.is_some() || !o.refusals.is_empty() {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    }
    Ok(if o.error.is_some() {
        exit::ERROR
    } else if !o.ok || !o.refusals.is_empty() {
        exit::FINDINGS
    } else {
        exit::OK
    })
}

fn state(root: &Path) -> anyhow::Result<StateFile> {
    StateFile::load(root).map_err(|e| anyhow::anyhow!(e))
}

pub fn bind(root: &Path, a: &BindArgs) -> anyhow::Result<u8> {
    let host = HostRoot::new(root);
    let inv = read_host(&host)?;
    let analysis = analyze::analyze(&inv);
    let req = Request {
        addresses: parse_addresses(&a.addresses)?,
        scope: if a.group {
            Scope::Group
        } else if a.exact {
            Scope::Exact
        } else {
            Scope::Card
        },
        force: a.force,
        dry_run: a.dry_run,
    };
    let targets = match bind::targets(&inv, &analysis, &req) {
        Ok(t) => t,
        Err(r) => anyhow::bail!("{}: {}", r.address, r.reason),
    };
    let crit = critical::find(&host);
    let refusals = bind::refusals(&inv, &analysis, &targets, &crit);
    let blocking: Vec<_> = refusals
        .iter()
        .filter(|r| !r.overridable || !req.force)
        .cloned()
        .collect();
    let kernel = SysfsKernel::new(root);
    let mut out = if blocking.is_empty() {
        let quirk_ops = bind::reset_quirks(&host, &analysis, &targets);
        if a.dry_run {
            let mut st = MemoryState::default();
            let mut o = bind::bind(&host, &kernel, &inv, &targets, req.scope, true, &mut st);
            o.steps.splice(0..0, quirk_ops.steps);
            o.warnings.extend(quirk_ops.warnings);
            o
        } else {
            let mut st = state(root)?;
            let pre = bind::apply_reset_quirks(&kernel, &quirk_ops);
            let mut o = bind::bind(&host, &kernel, &inv, &targets, req.scope, false, &mut st);
            o.steps.splice(0..0, quirk_ops.steps);
            o.warnings.extend(quirk_ops.warnings);
            if let Err(e) = pre {
                o.warnings.push(e);
            }
            o
        }
    } else {
        let mut o = bind::Outcome::refused("bind", a.dry_run);
        o.refusals = blocking;
        o
    };
    if req.force {
        out.warnings.extend(
            refusals
                .iter()
                .filter(|r| r.overridable)
                .map(|r| format!("--force: {} {}", r.address, r.reason)),
        );
    }
    finish(&out, a.json)
}

pub fn unbind(root: &Path, a: &UnbindArgs) -> anyhow::Result<u8> {
    let host = HostRoot::new(root);
    let inv = read_host(&host)?;
    let analysis = analyze::analyze(&inv);
    let mut st = state(root)?;
    let addresses = if a.addresses.is_empty() {
        st.all().into_iter().map(|b| b.address).collect()
    } else {
        parse_addresses(&a.addresses)?
    };
    if addresses.is_empty() {
        eprintln!("exliar: nothing to unbind: exliar holds no device (see `exliar status`)");
        return Ok(exit::OK);
    }
    let req = Request {
        addresses,
        scope: if a.group { Scope::Group } else { Scope::Card },
        force: false,
        dry_run: a.dry_run,
    };
    let targets = match bind::targets(&inv, &analysis, &req) {
        Ok(t) => t,
        Err(r) => anyhow::bail!("{}: {}", r.address, r.reason),
    };
    let kernel = SysfsKernel::new(root);
    let out = if a.dry_run {
        let mut mem = MemoryState(st.all());
        bind::unbind(&host, &kernel, &inv, &targets, true, &mut mem)
    } else {
        bind::unbind(&host, &kernel, &inv, &targets, false, &mut st)
    };
    finish(&out, a.json)
}

#[derive(Debug, Serialize)]
struct StatusDoc {
    schema: &'static str,
    /// Devices exliar bound at runtime (from its state file).
    runtime_bindings: Vec<StatusBinding>,
    /// Every device on vfio-pci now, whoever bound it.
    vfio_devices: Vec<PciAddress>,
}

#[derive(Debug, Serialize)]
struct StatusBinding {
    address: PciAddress,
    current_driver: Option<String>,
    original_driver: Option<String>,
    group: Option<u32>,
}

pub fn status(root: &Path, json: bool) -> anyhow::Result<u8> {
    let host = HostRoot::new(root);
    let inv = read_host(&host)?;
    let st = StateFile::load(root)
        .map_err(|e| anyhow::anyhow!(e))
        .context("reading state")?;
    let doc = StatusDoc {
        schema: "exliar.status/1",
        runtime_bindings: st
            .all()
            .into_iter()
            .map(|b| StatusBinding {
                address: b.address,
                current_driver: inv.device(&b.address).and_then(|d| d.driver.clone()),
                original_driver: b.original_driver,
                group: b.group,
            })
            .collect(),
        vfio_devices: inv
            .devices
            .iter()
            .filter(|d| d.driver.as_deref() == Some(bind::VFIO))
            .map(|d| d.address)
            .collect(),
    };
    if json {
        print_json(&doc)?;
        return Ok(exit::OK);
    }
    let mut s = String::new();
    if doc.runtime_bindings.is_empty() {
        s.push_str("Runtime bindings: none (exliar holds no device on vfio-pci)\n");
    } else {
        s.push_str("Runtime bindings (exliar bind; a reboot or `exliar unbind` ends them):\n");
        for b in &doc.runtime_bindings {
            s.push_str(&format!(
                "  {}  on {}, was {}{}\n",
                b.address,
                b.current_driver.as_deref().unwrap_or("no driver"),
                b.original_driver.as_deref().unwrap_or("no driver"),
                b.group
                    .map(|g| format!(", IOMMU group {g}"))
                    .unwrap_or_default()
            ));
        }
    }
    let others: Vec<String> = doc
        .vfio_devices
        .iter()
        .filter(|a| !doc.runtime_bindings.iter().any(|b| b.address == **a))
        .map(|a| a.to_string())
        .collect();
    if !others.is_empty() {
        s.push_str(&format!(
            "Also on vfio-pci (not bound by exliar at runtime): {}\n",
            others.join(", ")
        ));
    }
    print!("{s}");
    Ok(exit::OK)
}
