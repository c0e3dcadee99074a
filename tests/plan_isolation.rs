//! Boot-time isolation plans for real machines: the fixture host trees are
//! scanned and analysed, the recommended guest card becomes a request, and
//! the plan (files, edits, kernel parameters, findings) is snapshotted per
//! generator. Where the shared fixtures hold the machine's own modprobe.d
//! file, it is part of the request, read in place.

mod common;

use std::path::Path;

use exliar::host::HostRoot;
use exliar::model::{Inventory, PciAddress};
use exliar::plan::editors::{GuestFunction, IsolationPlan, IsolationRequest, plan_isolation};
use exliar::plan::initramfs::Generator;
use exliar::plan::modprobe::PciId;

const CONFIGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/configs");

fn inventory(host: &str) -> Inventory {
    exliar::cli::read_host(&HostRoot::new(common::host(host)))
        .unwrap_or_else(|e| panic!("{host}: {e}"))
}

/// The request for giving the card at `guest` (all its functions) away.
fn request(
    host: &str,
    guest: Option<PciAddress>,
    generator: Generator,
    kernel: (u32, u32),
    builtin: bool,
    modprobe_d: Vec<(String, String)>,
) -> IsolationRequest {
    let inv = inventory(host);
    let analysis = exliar::analyze::analyze(&inv);
    let guest = guest.or(analysis.recommendation.passthrough);
    let Some(gpu) = analysis.gpus.iter().find(|g| Some(g.address) == guest) else {
        panic!("{host}: no GPU at {guest:?}");
    };
    let mut functions = Vec::new();
    for a in &gpu.functions {
        let Some(d) = inv.device(a) else { continue };
        let (Some(v), Some(dev), Some(c)) = (d.vendor_id, d.device_id, d.class) else {
            continue;
        };
        functions.push(GuestFunction {
            address: *a,
            id: PciId::new(v, dev),
            class: c.0,
        });
    }
    // The host keeps everything but the guest card and what VMs have.
    let host_ids = inv
        .devices
        .iter()
        .filter(|d| !gpu.functions.contains(&d.address))
        .filter(|d| d.driver.as_deref() != Some("vfio-pci"))
        .filter_map(|d| Some(PciId::new(d.vendor_id?, d.device_id?)))
        .collect();
    IsolationRequest {
        generator,
        kernel,
        vfio_pci_builtin: builtin,
        guest: functions,
        host_ids,
        modprobe_d,
        kernel_drivers: Vec::new(),
        by_address: false,
        cmdline: Vec::new(),
        initramfs_modules: None,
    }
}

/// A shared fixture as it sits on its machine (header line dropped).
fn config(name: &str, path: &str) -> Vec<(String, String)> {
    let p = Path::new(CONFIGS).join(name);
    match std::fs::read_to_string(&p) {
        Ok(t) => {
            let body = t.split_once('\n').map_or("", |(_, b)| b).to_string();
            vec![(path.to_string(), body)]
        }
        Err(_) => {
            eprintln!("skipping {}: absent", p.display());
            Vec::new()
        }
    }
}

/// The plan, readable: files in full, edits as their parameters.
fn render(req: &IsolationRequest, plan: &IsolationPlan) -> String {
    let mut s = format!(
        "generator: {}, kernel {}.{}, vfio-pci {}\n",
        req.generator.name(),
        req.kernel.0,
        req.kernel.1,
        if req.vfio_pci_builtin {
            "built in"
        } else {
            "a module"
        }
    );
    for f in &req.guest {
        s.push_str(&format!(
            "guest: {} {} class {:06x}\n",
            f.address, f.id, f.class
        ));
    }
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(" ")
        }
    };
    s.push_str(&format!(
        "ids: {}\n",
        list(plan.ids.iter().map(|i| i.to_string()).collect())
    ));
    s.push_str(&format!(
        "bind by address: {}\n",
        list(plan.bind_by_address.iter().map(|a| a.to_string()).collect())
    ));
    s.push_str(&format!(
        "kernel params: {}\n",
        list(plan.kernel_params.clone())
    ));
    s.push_str(&format!("regenerate: {}\n", list(plan.regenerate.clone())));
    for f in &plan.findings {
        s.push_str(&format!("finding: {}:{}: {}\n", f.file, f.line, f.message));
    }
    for f in &plan.create {
        s.push_str(&format!(
            "\n== create {} ({:o})\n{}",
            f.path, f.mode, f.content
        ));
    }
    for e in &plan.edit {
        let json = serde_json::to_string_pretty(&e.edit).unwrap_or_default();
        s.push_str(&format!(
            "\n== edit {} (create if missing: {})\n{json}\n",
            e.path, e.create_if_missing
        ));
    }
    s
}

fn check(name: &str, req: &IsolationRequest) -> IsolationPlan {
    let plan = plan_isolation(req);
    // Every file the plan creates is what its editor makes of nothing, and
    // every edit is idempotent on what it produces from nothing.
    for e in &plan.edit {
        if let Ok(out) = e.edit.apply("") {
            assert_eq!(
                e.edit.is_applied(&out).ok(),
                Some(true),
                "{name}: {}",
                e.path
            );
            assert_eq!(
                e.edit.remove(&out).ok().as_deref(),
                Some(""),
                "{name}: {}",
                e.path
            );
        }
    }
    insta::assert_snapshot!(name, render(req, &plan));
    plan
}

#[test]
fn split_by_ids_with_the_machines_own_modprobe_file() {
    // hw11 is the danrichardson machine: its vfio.conf already lists the
    // GTX 1080's ids (and the RX 580's, which the host keeps).
    let existing = config(
        "modprobe.d-vfio.conf.user-danrichardson",
        "/etc/modprobe.d/vfio.conf",
    );
    if existing.is_empty() {
        return;
    }
    let req = request(
        "hw11-ryzen-matisse-rx580-gtx1080-unsorted",
        None,
        Generator::Mkinitcpio,
        (6, 6),
        false,
        existing,
    );
    let plan = check("hw11-mkinitcpio", &req);
    assert!(plan.bind_by_address.is_empty());
    assert_eq!(plan.ids.len(), 2);
    assert!(plan.kernel_params.is_empty());
}

#[test]
fn identical_cards_bind_by_address() {
    let host = "hw23-ryzen1-x370-dual-identical-rx580";
    for (generator, kernel, builtin, name) in [
        (
            Generator::InitramfsTools,
            (6, 1),
            false,
            "hw23-initramfs-tools",
        ),
        (Generator::Mkinitcpio, (6, 12), false, "hw23-mkinitcpio"),
        (Generator::Dracut, (6, 12), true, "hw23-dracut-builtin"),
        (Generator::Booster, (6, 12), false, "hw23-booster"),
    ] {
        let req = request(host, None, generator, kernel, builtin, Vec::new());
        let plan = check(name, &req);
        assert!(plan.ids.is_empty(), "{name}");
        assert_eq!(plan.bind_by_address.len(), 2, "{name}");
        assert!(
            plan.create
                .iter()
                .any(|f| f.path == exliar::plan::earlybind::SCRIPT_PATH && f.mode == 0o755),
            "{name}"
        );
    }
}

#[test]
fn builtin_vfio_pci_takes_ids_on_the_command_line() {
    let req = request(
        "hw11-ryzen-matisse-rx580-gtx1080-unsorted",
        None,
        Generator::InitramfsTools,
        (6, 8),
        true,
        Vec::new(),
    );
    let plan = check("hw11-initramfs-tools-builtin", &req);
    assert_eq!(plan.kernel_params, ["vfio-pci.ids=10de:1b80,10de:10f0"]);
    assert!(plan.create.is_empty() && plan.edit.is_empty() && plan.regenerate.is_empty());
}

#[test]
fn dead_ids_lines_are_reported_and_the_effective_ones_kept() {
    // hw15 is the bassrock Proxmox machine; its vfio.conf has four `ids=`
    // lines of which only the last is in effect.
    let existing = config(
        "modprobe.d-vfio.conf.user-bassrock-multiple-ids-lines",
        "/etc/modprobe.d/vfio.conf",
    );
    if existing.is_empty() {
        return;
    }
    let req = request(
        "hw15-asrock-x570-itx-tb3-vega64-proxmox",
        PciAddress::parse("0000:2c:00.0").ok(),
        Generator::InitramfsTools,
        (6, 8),
        false,
        existing,
    );
    let plan = check("hw15-initramfs-tools", &req);
    let ids = plan
        .create
        .iter()
        .find(|f| f.path == exliar::plan::modprobe::IDS_CONF)
        .map(|f| f.content.clone())
        .unwrap_or_default();
    assert!(
        ids.contains("options vfio-pci ids=1987:5012,1002:687f,1002:aaf8\n"),
        "{ids}"
    );
    assert_eq!(plan.findings.len(), 5);
}

#[test]
fn nothing_to_give_nothing_to_do() {
    let mut req = request(
        "hw11-ryzen-matisse-rx580-gtx1080-unsorted",
        None,
        Generator::Dracut,
        (6, 6),
        false,
        Vec::new(),
    );
    req.guest.clear();
    assert_eq!(plan_isolation(&req), IsolationPlan::default());
}
