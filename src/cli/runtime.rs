//! `exliar bind`, `unbind` and `status`: flags become a [`Request`]; the
//! work is in [`crate::bind`]; the outcome is rendered here.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::{BindArgs, UnbindArgs, boot, exit, read_for_unbinding, read_host, read_near, term};
use crate::bind::{self, BindingState, Outcome, Request, Scope, StateFile, StateLock};
use crate::host::HostRoot;
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
    let verb = if o.dry_run { "would make" } else { "made" };
    if !o.refusals.is_empty() {
        s.push_str(&format!("Refused to {}:\n", o.action));
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
    if o.refusals.is_empty() {
        for d in &o.devices {
            let before = d.driver_before.as_deref().unwrap_or("no driver");
            let after = if o.dry_run {
                match (&d.expected, o.action, d.recorded) {
                    (Some(e), _, _) => e.as_str(),
                    (None, "unbind", false) => "(the kernel's choice)",
                    (None, _, _) => "no driver",
                }
            } else {
                d.driver_after.as_deref().unwrap_or("no driver")
            };
            s.push_str(&format!("  {}: {before} -> {after}\n", d.address));
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

/// Tell the plugins what a bind or unbind did (not a dry run, not a
/// refusal that moved nothing).
fn told(kind: &str, o: &Outcome) {
    if o.dry_run || o.devices.is_empty() {
        return;
    }
    super::notify(
        kind,
        serde_json::json!({
            "devices": o.devices.iter().map(|d| d.address).collect::<Vec<_>>(),
            "ok": o.ok,
            "error": o.error,
        }),
    );
}

fn finish(o: &Outcome, json: bool) -> anyhow::Result<u8> {
    if json {
        print_json(o)?;
    } else {
        let text = render(o);
        if o.error.is_some() || !o.refusals.is_empty() {
            term::err(&text);
        } else {
            term::out(&text)?;
        }
    }
    Ok(outcome_code(o))
}

fn outcome_code(o: &Outcome) -> u8 {
    if o.error.is_some() {
        exit::ERROR
    } else if !o.ok || !o.refusals.is_empty() {
        exit::FINDINGS
    } else {
        exit::OK
    }
}

fn scope(group: bool, exact: bool) -> Scope {
    if group {
        Scope::Group
    } else if exact {
        Scope::Exact
    } else {
        Scope::Card
    }
}

/// The state file, locked for the run (not for a dry run: that writes
/// nothing, not even the lock).
fn state(root: &Path, dry_run: bool) -> anyhow::Result<(StateFile, Option<StateLock>)> {
    let lock = if dry_run {
        None
    } else {
        Some(StateFile::lock(root).map_err(|e| anyhow::anyhow!(e))?)
    };
    let st = StateFile::load(root).map_err(|e| anyhow::anyhow!(e))?;
    Ok((st, lock))
}

pub fn bind(root: &Path, a: &BindArgs) -> anyhow::Result<u8> {
    let host = HostRoot::new(root);
    let req = Request {
        addresses: parse_addresses(&a.addresses)?,
        scope: scope(a.group, a.exact),
        force: a.force,
        dry_run: a.dry_run,
    };
    // The runtime move needs the card, its groups and the host's GPUs, not
    // the whole host; `--persist` plans boot isolation from all of it.
    let t = std::time::Instant::now();
    let (inv, classes) = if a.persist {
        (read_host(&host)?, None)
    } else {
        let (inv, classes) = read_near(&host, &req.addresses)?;
        (inv, Some(classes))
    };
    tracing::debug!(
        "bind: read {} devices in {:.2} ms",
        inv.devices.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    // --persist: lock the transactions and plan first, so that a refusal
    // changes nothing, not even the runtime binding.
    let persist = if a.persist {
        let [gpu] = req.addresses[..] else {
            anyhow::bail!("--persist takes one card (one address)");
        };
        let store = if a.dry_run {
            None
        } else {
            Some(boot::open_store(root)?)
        };
        match boot::persist_plan(root, &inv, gpu, a.force)? {
            Ok(p) => Some((store, p)),
            Err(e) => return boot::persist_refused(&e, a.json),
        }
    } else {
        None
    };
    let kernel = SysfsKernel::new(root);
    let (mut st, _lock) = state(root, a.dry_run)?;
    let t = std::time::Instant::now();
    let out = bind::bind_request(&host, &kernel, &mut st, &inv, &req);
    tracing::debug!(
        "bind: decided and done in {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    if let Some(classes) = &classes {
        bind::save_classes(root, classes, &out);
    }
    let t = std::time::Instant::now();
    told("gpu-bound", &out);
    tracing::debug!(
        "bind: plugins told in {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    if names_no_device(&inv, &req) {
        return no_device(&out, &inv, &req, a.json);
    }
    let Some((store, p)) = persist else {
        return finish(&out, a.json);
    };
    if outcome_code(&out) != exit::OK {
        // the card is not bound: nothing to make persistent
        return finish(&out, a.json);
    }
    if !a.json {
        finish(&out, false)?;
    }
    let persisted = boot::persist_apply(store.as_ref(), &p, a.yes, a.json)?;
    if a.json {
        let mut doc = serde_json::to_value(&out)?;
        doc["persist"] = persisted.doc;
        print_json(&doc)?;
    }
    match persisted.error {
        Some(e) => Err(e),
        None => Ok(persisted.code),
    }
}

pub fn unbind(root: &Path, a: &UnbindArgs) -> anyhow::Result<u8> {
    let host = HostRoot::new(root);
    let req = Request {
        addresses: parse_addresses(&a.addresses)?,
        scope: scope(a.group, false),
        force: false,
        dry_run: a.dry_run,
    };
    let (mut st, _lock) = state(root, a.dry_run)?;
    if req.addresses.is_empty() && st.all().is_empty() && !a.json {
        eprintln!("exliar: nothing to unbind: exliar holds no device (see `exliar status`)");
        return Ok(exit::OK);
    }
    let wanted: Vec<_> = if req.addresses.is_empty() {
        st.all().iter().map(|b| b.address).collect()
    } else {
        req.addresses.clone()
    };
    // The card's slots and groups: giving devices back takes no display
    // from the host, so the other display controllers are not read.
    let inv = read_for_unbinding(&host, &wanted)?;
    let kernel = SysfsKernel::new(root);
    let out = bind::unbind_request(&host, &kernel, &mut st, &inv, &req);
    told("gpu-unbound", &out);
    if names_no_device(&inv, &req) {
        return no_device(&out, &inv, &req, a.json);
    }
    finish(&out, a.json)
}

/// Exit 2 for an address that names no device: the JSON document (which
/// names it in `refusals`), or an error line.
fn no_device(
    out: &Outcome,
    inv: &crate::model::Inventory,
    req: &Request,
    json: bool,
) -> anyhow::Result<u8> {
    if json {
        print_json(out)?;
    } else {
        for a in req.addresses.iter().filter(|a| inv.device(a).is_none()) {
            term::err(&format!(
                "exliar: error: {a}: no such PCI device on this host\n"
            ));
        }
    }
    Ok(exit::ERROR)
}

/// An address given that is no PCI device of the host: an error (exit 2),
/// not a refusal; the document still says which (`refusals`).
fn names_no_device(inv: &crate::model::Inventory, req: &Request) -> bool {
    req.addresses.iter().any(|a| inv.device(a).is_none())
}

pub fn status(root: &Path, json: bool) -> anyhow::Result<u8> {
    let host = HostRoot::new(root);
    // Status names no device: addresses, drivers and groups only, so the
    // PCI name database (1.3 MB on a real host) is not read.
    let inv = super::read_inventory(&host, &crate::host::PciIds::empty())?;
    let st = StateFile::load(root)
        .map_err(|e| anyhow::anyhow!(e))
        .context("reading the state")?;
    let doc = bind::status(&host, &inv, &st);
    let journals = crate::txn::read_journals(root).unwrap_or_else(|e| {
        eprintln!("exliar: warning: {e}");
        Default::default()
    });
    boot::warn_skipped(&journals.skipped);
    let boot = boot_isolation(&journals);
    let unfinished = journals.unfinished().next().map(|j| UnfinishedTxn {
        transaction: j.id.clone(),
        status: j.status,
    });
    if json {
        let mut v = serde_json::to_value(&doc)?;
        v["boot_isolation"] = serde_json::to_value(&boot)?;
        v["unfinished_transaction"] = serde_json::to_value(&unfinished)?;
        print_json(&v)?;
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
    for g in &doc.groups {
        s.push_str(&format!(
            "IOMMU group {}: {}; /dev/vfio/{} {}\n",
            g.id,
            if g.viable { "viable" } else { "NOT viable" },
            g.id,
            if g.vfio_node { "present" } else { "absent" }
        ));
    }
    match &boot {
        Some(b) => s.push_str(&format!(
            "Boot-time isolation: {} (transaction {}; `exliar rollback` undoes it): {}\n",
            b.gpu.map(|g| g.to_string()).unwrap_or_default(),
            b.transaction,
            b.files.join(", ")
        )),
        None => s.push_str("Boot-time isolation: none applied by exliar\n"),
    }
    if let Some(u) = &unfinished {
        s.push_str(&format!(
            "Transaction {} is unfinished ({}): the boot configuration is partly changed; run `exliar recover`\n",
            u.transaction,
            u.status.unfinished_what()
        ));
    }
    term::out(&s)?;
    Ok(exit::OK)
}

#[derive(Debug, serde::Serialize)]
struct BootIsolation {
    transaction: String,
    gpu: Option<crate::model::PciAddress>,
    functions: Vec<crate::model::PciAddress>,
    files: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
struct UnfinishedTxn {
    transaction: String,
    status: crate::txn::Status,
}

/// The newest applied transaction under the root.
fn boot_isolation(js: &crate::txn::Journals) -> Option<BootIsolation> {
    js.last_applied().map(|j| BootIsolation {
        transaction: j.id.clone(),
        gpu: j.gpu,
        functions: j.functions.clone(),
        files: j
            .files
            .iter()
            .map(|f| format!("/{}", f.path.display()))
            .collect(),
    })
}
