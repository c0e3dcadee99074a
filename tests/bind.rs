//! Runtime binding (`exliar bind`, `unbind`, `status`) through the simulated
//! kernel (`exliar::host::sim`), which makes the kernel's effects on a host
//! tree in a temp dir; and the CLI on such trees, where the real kernel
//! interface is used (refusals, dry runs, JSON shape, undo of a failed write).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use exliar::bind::{self, Binding, BindingState, Outcome, Request, STATE_FILE, Scope, StateFile};
use exliar::host::HostRoot;
use exliar::host::kernel::KernelOp;
use exliar::host::sim::{SimDevice, SimKernel, SimTree, tree_contents};
use exliar::host::sysfs::read_inventory;
use exliar::model::{Inventory, PciAddress};

fn a(s: &str) -> PciAddress {
    PciAddress::parse(s).expect("test address")
}

const HOST_BRIDGE: &str = "0000:00:00.0";
const BOOT_GPU: &str = "0000:00:01.0";
const GPU: &str = "0000:01:00.0";
const GPU_AUDIO: &str = "0000:01:00.1";
const NIC: &str = "0000:02:00.0";
const NVME: &str = "0000:03:00.0";
const AMD: &str = "0000:04:00.0";
const AMD_AUDIO: &str = "0000:04:00.1";
const SHARED_GPU: &str = "0000:05:00.0";
const SHARED_USB: &str = "0000:05:01.0";

/// A desktop: virtio boot display; an NVIDIA card (VGA + HDMI audio, one
/// group); a NIC; the NVMe disk with `/`; an RX 580 (AMD reset bug) with its
/// audio; a VGA sharing its group with a USB controller.
fn desktop() -> SimTree {
    SimTree::new()
        .device(SimDevice::new(a(HOST_BRIDGE), 0x060000, 0x8086, 0x29c0).group(0))
        .device(
            SimDevice::new(a(BOOT_GPU), 0x030000, 0x1af4, 0x1050)
                .driver("virtio-pci")
                .group(1)
                .boot_vga(),
        )
        .device(
            SimDevice::new(a(GPU), 0x030000, 0x10de, 0x1c82)
                .driver("nouveau")
                .group(2)
                .reset_method("flr bus"),
        )
        .device(
            SimDevice::new(a(GPU_AUDIO), 0x040300, 0x10de, 0x0fb9)
                .driver("snd_hda_intel")
                .group(2),
        )
        .device(
            SimDevice::new(a(NIC), 0x020000, 0x8086, 0x10d3)
                .driver("e1000e")
                .group(3),
        )
        .device(
            SimDevice::new(a(NVME), 0x010802, 0x144d, 0xa808)
                .driver("nvme")
                .group(4),
        )
        .device(
            SimDevice::new(a(AMD), 0x030000, 0x1002, 0x67df)
                .driver("amdgpu")
                .group(5)
                .reset_method("bus"),
        )
        .device(
            SimDevice::new(a(AMD_AUDIO), 0x040300, 0x1002, 0xaaf0)
                .driver("snd_hda_intel")
                .group(5),
        )
        .device(
            SimDevice::new(a(SHARED_GPU), 0x030000, 0x1234, 0x1111)
                .driver("bochs-drm")
                .group(6),
        )
        .device(
            SimDevice::new(a(SHARED_USB), 0x0c0330, 0x1b36, 0x000d)
                .driver("xhci_hcd")
                .group(6),
        )
        .root_disk(a(NVME), "nvme0n1")
        .default_route(a(NIC), "enp2s0")
}

/// A host tree in a temp dir with the simulated kernel on it.
struct Host {
    dir: tempfile::TempDir,
    sim: SimKernel,
}

impl Host {
    fn new(tree: &SimTree) -> Host {
        let dir = tempfile::tempdir().expect("temp dir");
        tree.build(dir.path()).expect("building the tree");
        let sim = SimKernel::new(dir.path()).expect("sim");
        Host { dir, sim }
    }
    fn root(&self) -> &Path {
        self.dir.path()
    }
    fn inv(&self) -> Inventory {
        read_inventory(&HostRoot::new(self.root()), &Default::default()).expect("inventory")
    }
    fn state(&self) -> StateFile {
        StateFile::load(self.root()).expect("state file")
    }
    fn bind(&self, req: &Request) -> Outcome {
        let mut st = self.state();
        self.bind_with(req, &mut st)
    }
    fn bind_with(&self, req: &Request, st: &mut dyn BindingState) -> Outcome {
        let host = HostRoot::new(self.root());
        bind::bind_request(&host, &self.sim, st, &self.inv(), req)
    }
    fn unbind(&self, req: &Request) -> Outcome {
        let host = HostRoot::new(self.root());
        let mut st = self.state();
        bind::unbind_request(&host, &self.sim, &mut st, &self.inv(), req)
    }
    fn driver(&self, s: &str) -> Option<String> {
        self.sim.driver(&a(s))
    }
    fn drivers(&self) -> Vec<(PciAddress, Option<String>, Option<String>)> {
        self.inv()
            .devices
            .iter()
            .map(|d| {
                (
                    d.address,
                    self.sim.driver(&d.address),
                    self.sim.driver_override(&d.address),
                )
            })
            .collect()
    }
    /// The tree without what loading vfio-pci adds (the module, its driver
    /// folder, `/dev/vfio/vfio`) and without exliar's own files.
    fn kernel_tree(&self) -> BTreeMap<PathBuf, String> {
        tree_contents(self.root())
            .expect("tree")
            .into_iter()
            .filter(|(p, _)| {
                !p.starts_with("sys/module")
                    && !p.starts_with("sys/bus/pci/drivers/vfio-pci")
                    && !p.starts_with("dev")
                    && !p.starts_with("run")
            })
            .collect()
    }
}

/// Two trees are the same; only the differences are shown when not.
fn same_tree(now: &BTreeMap<PathBuf, String>, then: &BTreeMap<PathBuf, String>, what: &str) {
    let mut diff = Vec::new();
    for (k, v) in now {
        match then.get(k) {
            Some(w) if w == v => {}
            Some(w) => diff.push(format!("changed {}: {w:?} -> {v:?}", k.display())),
            None => diff.push(format!("new {}: {v:?}", k.display())),
        }
    }
    for k in then.keys().filter(|k| !now.contains_key(*k)) {
        diff.push(format!("gone {}", k.display()));
    }
    assert!(
        diff.is_empty(),
        "{what}: the tree differs:\n{}",
        diff.join("\n")
    );
}

fn req(addresses: &[&str], scope: Scope) -> Request {
    Request {
        addresses: addresses.iter().map(|s| a(s)).collect(),
        scope,
        force: false,
        dry_run: false,
    }
}

fn forced(mut r: Request) -> Request {
    r.force = true;
    r
}

fn dry(mut r: Request) -> Request {
    r.dry_run = true;
    r
}

fn to_json(o: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(o).expect("serializable")
}

fn check_schema(o: &Outcome) {
    assert_valid(&schema("bind-1.schema.json"), &to_json(o), "bind outcome");
}

fn op_strings(sim: &SimKernel) -> Vec<String> {
    sim.applied().iter().map(ToString::to_string).collect()
}

#[test]
fn bind_card_then_unbind_restores_everything() {
    let h = Host::new(&desktop());
    let before = h.kernel_tree();
    let out = h.bind(&req(&[GPU], Scope::Card));
    check_schema(&out);
    assert!(out.ok, "{out:#?}");
    assert_eq!(
        out.devices.iter().map(|d| d.address).collect::<Vec<_>>(),
        [a(GPU), a(GPU_AUDIO)],
        "the card's functions"
    );
    assert!(out.devices.iter().all(|d| d.recorded));
    for f in [GPU, GPU_AUDIO] {
        assert_eq!(h.driver(f).as_deref(), Some("vfio-pci"), "{f}");
        assert_eq!(h.sim.driver_override(&a(f)).as_deref(), Some("vfio-pci"));
    }
    assert_eq!(h.sim.vfio_nodes(), [2]);
    assert_eq!(out.groups.len(), 1);
    assert!(out.groups[0].viable && out.groups[0].vfio_node);
    assert_eq!(
        op_strings(&h.sim),
        [
            "modprobe vfio-pci",
            "write \"vfio-pci\" to /sys/bus/pci/devices/0000:01:00.0/driver_override",
            "write \"0000:01:00.0\" to /sys/bus/pci/drivers/nouveau/unbind",
            "write \"0000:01:00.0\" to /sys/bus/pci/drivers_probe",
            "write \"vfio-pci\" to /sys/bus/pci/devices/0000:01:00.1/driver_override",
            "write \"0000:01:00.1\" to /sys/bus/pci/drivers/snd_hda_intel/unbind",
            "write \"0000:01:00.1\" to /sys/bus/pci/drivers_probe",
        ]
    );
    assert_eq!(out.steps, op_strings(&h.sim), "steps are the writes made");
    // the inventory (through uevent) sees it too
    let inv = h.inv();
    assert_eq!(
        inv.device(&a(GPU)).and_then(|d| d.driver.as_deref()),
        Some("vfio-pci")
    );
    // recorded, and shown by status
    let st = h.state();
    assert_eq!(
        st.all(),
        [
            Binding {
                address: a(GPU),
                original_driver: Some("nouveau".into()),
                original_override: None,
                group: Some(2),
                original_reset_method: None,
            },
            Binding {
                address: a(GPU_AUDIO),
                original_driver: Some("snd_hda_intel".into()),
                original_override: None,
                group: Some(2),
                original_reset_method: None,
            }
        ]
    );
    let status = bind::status(&HostRoot::new(h.root()), &inv, &st);
    assert_valid(&schema("status-1.schema.json"), &to_json(&status), "status");
    assert_eq!(status.vfio_devices, [a(GPU), a(GPU_AUDIO)]);
    assert!(status.runtime_bindings.iter().all(|b| b.on_vfio));
    assert!(status.groups.iter().all(|g| g.viable && g.vfio_node));

    // binding again changes nothing and keeps the records
    h.sim.clear_ops();
    let again = h.bind(&req(&[GPU], Scope::Card));
    assert!(again.ok, "{again:#?}");
    assert!(h.sim.ops().is_empty(), "{:?}", h.sim.ops());
    assert_eq!(h.state().all(), st.all());

    h.sim.clear_ops();
    let out = h.unbind(&req(&[GPU], Scope::Card));
    check_schema(&out);
    assert!(out.ok, "{out:#?}");
    assert_eq!(h.driver(GPU).as_deref(), Some("nouveau"));
    assert_eq!(h.driver(GPU_AUDIO).as_deref(), Some("snd_hda_intel"));
    assert!(h.sim.vfio_nodes().is_empty(), "/dev/vfio/2 is gone");
    assert!(out.groups.iter().all(|g| !g.vfio_node));
    assert!(h.state().all().is_empty());
    assert!(
        !h.root().join(STATE_FILE).exists(),
        "an empty state is no file"
    );
    assert_eq!(
        op_strings(&h.sim),
        [
            "write \"\" to /sys/bus/pci/devices/0000:01:00.0/driver_override",
            "write \"0000:01:00.0\" to /sys/bus/pci/drivers/vfio-pci/unbind",
            "write \"0000:01:00.0\" to /sys/bus/pci/drivers_probe",
            "write \"\" to /sys/bus/pci/devices/0000:01:00.1/driver_override",
            "write \"0000:01:00.1\" to /sys/bus/pci/drivers/vfio-pci/unbind",
            "write \"0000:01:00.1\" to /sys/bus/pci/drivers_probe",
        ]
    );
    same_tree(&h.kernel_tree(), &before, "the tree is as it was");
}

#[test]
fn a_failure_at_any_write_is_undone_and_named() {
    // Count the operations of a clean bind, then fail each one in turn.
    let clean = Host::new(&desktop());
    assert!(clean.bind(&req(&[GPU], Scope::Card)).ok);
    let ops = clean.sim.ops();
    assert_eq!(ops.len(), 7);
    for (k, op) in ops.iter().enumerate() {
        let h = Host::new(&desktop());
        let before = h.kernel_tree();
        h.sim.fail_op(k);
        let out = h.bind(&req(&[GPU], Scope::Card));
        check_schema(&out);
        assert!(!out.ok, "op {k} failed");
        assert!(out.rolled_back, "op {k}: {out:#?}");
        let f = &out.failures[0];
        assert_eq!(
            f.step,
            op.op.to_string(),
            "op {k}: the failed step is named"
        );
        let device = match &op.op {
            KernelOp::LoadModule { .. } | KernelOp::UnloadModule { .. } => None,
            KernelOp::Write { path, value } => Some(
                PciAddress::parse(value.trim())
                    .or_else(|_| {
                        PciAddress::parse(path.iter().nth(4).and_then(|s| s.to_str()).unwrap_or(""))
                    })
                    .expect("the write names a device"),
            ),
        };
        assert_eq!(f.device, device, "op {k}: the device is named");
        let error = out.error.as_deref().unwrap_or("");
        assert!(error.contains(&f.step), "op {k}: {error}");
        if let Some(d) = device {
            assert!(error.contains(&d.to_string()), "op {k}: {error}");
        }
        same_tree(
            &h.kernel_tree(),
            &before,
            &format!("op {k}: everything undone"),
        );
        assert!(h.sim.vfio_nodes().is_empty(), "op {k}");
        assert!(h.state().all().is_empty(), "op {k}: no record left");
        assert!(
            out.steps.iter().any(|s| s.starts_with("undo: ")) || k < 2,
            "op {k}: the undo is listed: {:?}",
            out.steps
        );
    }
}

#[test]
fn a_probe_that_does_not_bind_fails_verification_and_is_undone() {
    let h = Host::new(&desktop());
    let before = h.kernel_tree();
    h.sim.probe_fails(a(GPU_AUDIO), "vfio-pci");
    let out = h.bind(&req(&[GPU], Scope::Card));
    check_schema(&out);
    assert!(out.rolled_back);
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].device, Some(a(GPU_AUDIO)));
    assert_eq!(out.failures[0].step, "verify driver");
    assert!(
        out.failures[0]
            .message
            .contains("no driver after drivers_probe"),
        "{}",
        out.failures[0].message
    );
    same_tree(&h.kernel_tree(), &before, "");
    assert_eq!(h.driver(GPU).as_deref(), Some("nouveau"));
}

#[test]
fn a_missing_vfio_module_fails_before_any_device_is_touched() {
    let h = Host::new(&desktop());
    h.sim.missing_module("vfio-pci");
    let out = h.bind(&req(&[GPU], Scope::Card));
    assert_eq!(out.failures[0].step, "modprobe vfio-pci");
    assert_eq!(out.failures[0].device, None);
    assert_eq!(h.sim.applied(), []);
    assert!(h.state().all().is_empty());
}

#[test]
fn a_failed_bind_keeps_the_records_of_devices_bound_before() {
    let h = Host::new(&desktop().module("vendor_reset"));
    assert!(h.bind(&req(&[GPU], Scope::Card)).ok);
    let held = h.state().all();
    h.sim.fail_on(a(AMD_AUDIO), "drivers_probe");
    let out = h.bind(&req(&[GPU, AMD], Scope::Card));
    assert!(out.rolled_back, "{out:#?}");
    assert_eq!(out.failures[0].device, Some(a(AMD_AUDIO)));
    assert_eq!(h.driver(GPU).as_deref(), Some("vfio-pci"), "left as it was");
    assert_eq!(h.driver(AMD).as_deref(), Some("amdgpu"));
    assert_eq!(h.driver(AMD_AUDIO).as_deref(), Some("snd_hda_intel"));
    assert_eq!(
        std::fs::read_to_string(
            h.root()
                .join("sys/devices/pci0000:00")
                .join(AMD)
                .join("reset_method")
        )
        .expect("reset_method"),
        "bus\n",
        "the reset method is undone too"
    );
    assert_eq!(h.state().all(), held, "the earlier records are kept");
    let out = h.unbind(&Request {
        addresses: vec![],
        ..req(&[], Scope::Card)
    });
    assert!(out.ok, "{out:#?}");
    assert_eq!(h.driver(GPU).as_deref(), Some("nouveau"));
}

/// A state file that stops changing once the writing process has "died"
/// (the simulated kernel reached its halt).
struct CrashingState<'a> {
    inner: StateFile,
    sim: &'a SimKernel,
}

impl BindingState for CrashingState<'_> {
    fn all(&self) -> Vec<Binding> {
        self.inner.all()
    }
    fn record(&mut self, b: Binding) -> std::io::Result<()> {
        if self.sim.halted() {
            return Err(std::io::Error::other("dead"));
        }
        self.inner.record(b)
    }
    fn record_all(&mut self, bs: Vec<Binding>) -> std::io::Result<()> {
        if self.sim.halted() {
            return Err(std::io::Error::other("dead"));
        }
        self.inner.record_all(bs)
    }
    fn forget(&mut self, a: &PciAddress) -> std::io::Result<()> {
        if self.sim.halted() {
            return Err(std::io::Error::other("dead"));
        }
        self.inner.forget(a)
    }
}

#[test]
fn a_crash_at_any_point_of_a_bind_is_undone_by_unbind() {
    for (tree, card) in [(desktop(), GPU), (desktop().module("vendor_reset"), AMD)] {
        let clean = Host::new(&tree);
        assert!(clean.bind(&req(&[card], Scope::Card)).ok);
        let n = clean.sim.ops().len();
        for k in 0..=n {
            let h = Host::new(&tree);
            let before = h.kernel_tree();
            let originals = h.drivers();
            h.sim.halt_at(k);
            let mut st = CrashingState {
                inner: h.state(),
                sim: &h.sim,
            };
            let _ = h.bind_with(&req(&[card], Scope::Card), &mut st);
            // The process is gone; the kernel and the state file stay.
            h.sim.resume();
            let recorded: Vec<PciAddress> = h.state().all().iter().map(|b| b.address).collect();
            for op in h.sim.applied() {
                if let KernelOp::Write { path, value } = &op {
                    let dev = PciAddress::parse(value.trim()).ok().or_else(|| {
                        path.iter()
                            .nth(4)
                            .and_then(|s| s.to_str())
                            .and_then(|s| PciAddress::parse(s).ok())
                    });
                    if let Some(d) = dev {
                        assert!(
                            recorded.contains(&d),
                            "{card} crash at op {k}: {d} was written to before it was recorded"
                        );
                    }
                }
            }
            let out = h.unbind(&req(&[], Scope::Card));
            assert!(
                out.ok || recorded.is_empty(),
                "{card} crash at op {k}: {out:#?}"
            );
            assert_eq!(h.drivers(), originals, "{card} crash at op {k}");
            same_tree(
                &h.kernel_tree(),
                &before,
                &format!("{card} crash at op {k}"),
            );
            assert!(h.sim.vfio_nodes().is_empty(), "{card} crash at op {k}");
            assert!(h.state().all().is_empty(), "{card} crash at op {k}");
        }
    }
}

/// Unbind drops its records in one write at the end: a kill anywhere in
/// it leaves records of functions some of which are back on their drivers
/// already. The next unbind finishes the job, and the host ends as it was
/// before the bind.
#[test]
fn a_crash_at_any_point_of_an_unbind_is_finished_by_the_next_unbind() {
    let tree = desktop();
    let clean = Host::new(&tree);
    assert!(clean.bind(&req(&[GPU], Scope::Card)).ok);
    let start = clean.sim.ops().len();
    assert!(clean.unbind(&req(&[], Scope::Card)).ok);
    let n = clean.sim.ops().len() - start;
    assert!(n >= 4, "an unbind of the card writes to the kernel: {n}");
    for k in 0..=n {
        let h = Host::new(&tree);
        let before = h.kernel_tree();
        let originals = h.drivers();
        assert!(h.bind(&req(&[GPU], Scope::Card)).ok);
        h.sim.halt_at(h.sim.ops().len() + k);
        let mut st = CrashingState {
            inner: h.state(),
            sim: &h.sim,
        };
        let host = HostRoot::new(h.root());
        let _ = bind::unbind_request(&host, &h.sim, &mut st, &h.inv(), &req(&[], Scope::Card));
        h.sim.resume();
        let left = h.state().all().len();
        let out = h.unbind(&req(&[], Scope::Card));
        assert!(
            out.ok,
            "crash at unbind op {k} ({left} records left): {out:#?}"
        );
        assert_eq!(h.drivers(), originals, "crash at unbind op {k}");
        same_tree(
            &h.kernel_tree(),
            &before,
            &format!("crash at unbind op {k}"),
        );
        assert!(h.sim.vfio_nodes().is_empty(), "crash at unbind op {k}");
        assert!(h.state().all().is_empty(), "crash at unbind op {k}");
    }
}

#[test]
fn refusals_and_force() {
    let h = Host::new(&desktop());
    let before = h.kernel_tree();
    // the boot display
    let out = h.bind(&req(&[BOOT_GPU], Scope::Card));
    check_schema(&out);
    assert!(!out.ok);
    assert_eq!(out.refusals.len(), 1, "{:?}", out.refusals);
    assert!(out.refusals[0].reason.contains("boot display"));
    assert!(out.refusals[0].overridable);
    // the root file system's disk and the default route's NIC
    for (dev, why) in [
        (NVME, "root file system on /dev/nvme0n1p2"),
        (NIC, "default route via enp2s0"),
    ] {
        let out = h.bind(&req(&[dev], Scope::Card));
        assert_eq!(out.refusals.len(), 1, "{dev}: {:?}", out.refusals);
        assert!(out.refusals[0].reason.contains(why), "{:?}", out.refusals);
        assert!(out.refusals[0].overridable);
    }
    // a bridge, and what is not there
    let out = h.bind(&req(&[HOST_BRIDGE], Scope::Exact));
    assert!(
        out.refusals
            .iter()
            .any(|r| r.reason.contains("bridge") && !r.overridable)
    );
    let out = h.bind(&req(&["0000:09:00.0"], Scope::Card));
    assert_eq!(out.refusals[0].reason, "no such PCI device");
    // a card sharing its group with a device on a host driver
    let out = h.bind(&req(&[SHARED_GPU], Scope::Card));
    assert_eq!(out.refusals.len(), 1);
    assert!(
        out.refusals[0]
            .reason
            .contains("shares IOMMU group 6 with 0000:05:01.0 on xhci_hcd"),
        "{}",
        out.refusals[0].reason
    );
    assert!(!out.refusals[0].overridable);
    let out = h.bind(&forced(req(&[SHARED_GPU], Scope::Card)));
    assert!(
        !out.refusals.is_empty(),
        "--force does not override what cannot work"
    );
    assert!(h.sim.ops().is_empty(), "nothing written for a refusal");
    same_tree(&h.kernel_tree(), &before, "");
    assert!(!h.root().join("run").exists(), "no state written");

    // --force takes the boot display and the root disk's controller
    let out = h.bind(&forced(req(&[BOOT_GPU], Scope::Card)));
    assert!(out.ok, "{out:#?}");
    assert!(
        out.warnings
            .iter()
            .any(|w| w.starts_with("--force: 0000:00:01.0 is the boot display"))
    );
    assert_eq!(h.driver(BOOT_GPU).as_deref(), Some("vfio-pci"));
    let out = h.bind(&forced(req(&[NVME], Scope::Card)));
    assert!(out.ok, "{out:#?}");
    assert_eq!(h.driver(NVME).as_deref(), Some("vfio-pci"));
    assert!(h.unbind(&req(&[], Scope::Card)).ok);
    same_tree(&h.kernel_tree(), &before, "");
}

#[test]
fn the_last_gpu_and_no_iommu_are_refused() {
    // A server: the BMC's console and one compute GPU.
    let server = SimTree::new()
        .device(
            SimDevice::new(a("0000:02:00.0"), 0x030000, 0x1a03, 0x2000)
                .driver("ast")
                .group(1)
                .boot_vga(),
        )
        .device(
            SimDevice::new(a("0000:41:00.0"), 0x030200, 0x10de, 0x1db4)
                .driver("nvidia")
                .group(2),
        );
    let h = Host::new(&server);
    let out = h.bind(&req(&["0000:41:00.0"], Scope::Card));
    assert_eq!(out.refusals.len(), 1, "{:?}", out.refusals);
    assert!(out.refusals[0].reason.contains("last GPU"));
    let out = h.bind(&forced(req(&["0000:41:00.0"], Scope::Card)));
    assert!(out.ok, "{out:#?}");

    // Two GPUs, both asked for: the boot display, and then the last one.
    let h = Host::new(&desktop());
    let out = h.bind(&req(&[BOOT_GPU, GPU, AMD, SHARED_GPU], Scope::Group));
    let reasons: Vec<(String, &str)> = out
        .refusals
        .iter()
        .map(|r| (r.address.to_string(), r.reason.as_str()))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|(x, r)| x == BOOT_GPU && r.contains("boot display"))
    );
    assert!(
        reasons
            .iter()
            .any(|(x, r)| x == GPU && r.contains("last GPU")),
        "{reasons:?}"
    );

    let h = Host::new(&desktop().no_iommu());
    for force in [false, true] {
        let mut r = req(&[GPU], Scope::Card);
        r.force = force;
        let out = h.bind(&r);
        assert_eq!(out.refusals.len(), 2, "{:?}", out.refusals);
        assert!(
            out.refusals
                .iter()
                .all(|r| !r.overridable && r.reason.contains("IOMMU is not enabled"))
        );
    }
    assert!(h.sim.ops().is_empty());
}

#[test]
fn group_and_exact_scopes() {
    let h = Host::new(&desktop());
    // --exact: only the VGA; the group is not viable, and that is reported
    let out = h.bind(&req(&[SHARED_GPU], Scope::Exact));
    check_schema(&out);
    assert!(out.failures.is_empty(), "{out:#?}");
    assert!(!out.ok, "not usable by a VM");
    assert_eq!(h.driver(SHARED_GPU).as_deref(), Some("vfio-pci"));
    assert_eq!(h.driver(SHARED_USB).as_deref(), Some("xhci_hcd"));
    let g = &out.groups[0];
    assert_eq!((g.id, g.viable, g.vfio_node), (6, false, true));
    assert_eq!(g.blocking.len(), 1);
    assert_eq!(g.blocking[0].address, a(SHARED_USB));
    assert_eq!(g.blocking[0].driver, "xhci_hcd");
    assert!(
        out.warnings
            .iter()
            .any(|w| w.contains("IOMMU group 6 is not viable"))
    );
    // --group: the rest of it
    let out = h.bind(&req(&[SHARED_GPU], Scope::Group));
    assert!(out.ok, "{out:#?}");
    assert_eq!(h.driver(SHARED_USB).as_deref(), Some("vfio-pci"));
    let out = h.unbind(&req(&[SHARED_USB], Scope::Group));
    assert!(out.ok, "{out:#?}");
    assert_eq!(h.driver(SHARED_GPU).as_deref(), Some("bochs-drm"));
    assert_eq!(h.driver(SHARED_USB).as_deref(), Some("xhci_hcd"));
    assert!(h.sim.vfio_nodes().is_empty());
}

#[test]
fn dry_runs_write_nothing_and_list_the_writes() {
    let h = Host::new(&desktop().module("vendor_reset"));
    let before = tree_contents(h.root()).expect("tree");
    let out = h.bind(&dry(req(&[GPU, AMD], Scope::Card)));
    check_schema(&out);
    assert!(out.dry_run && out.failures.is_empty(), "{out:#?}");
    assert!(h.sim.ops().is_empty(), "no kernel write");
    same_tree(&tree_contents(h.root()).expect("tree"), &before, "no file");
    // the listed writes are exactly those a real bind makes
    let real = h.bind(&req(&[GPU, AMD], Scope::Card));
    assert!(real.ok, "{real:#?}");
    assert_eq!(out.steps, op_strings(&h.sim));
    assert!(out.steps.contains(
        &"write \"device_specific\" to /sys/bus/pci/devices/0000:04:00.0/reset_method".to_string()
    ));
    // and for unbind
    let before = tree_contents(h.root()).expect("tree");
    h.sim.clear_ops();
    let out = h.unbind(&dry(req(&[], Scope::Card)));
    check_schema(&out);
    assert_eq!(out.devices.len(), 4);
    assert!(h.sim.ops().is_empty());
    same_tree(&tree_contents(h.root()).expect("tree"), &before, "");
    let real = h.unbind(&req(&[], Scope::Card));
    assert!(real.ok, "{real:#?}");
    assert_eq!(out.steps, op_strings(&h.sim));
}

#[test]
fn amd_reset_bug_sets_reset_method_with_vendor_reset_and_warns_without() {
    let reset_method = |h: &Host| {
        std::fs::read_to_string(
            h.root()
                .join("sys/devices/pci0000:00")
                .join(AMD)
                .join("reset_method"),
        )
        .expect("reset_method")
    };
    let h = Host::new(&desktop().module("vendor_reset"));
    let out = h.bind(&req(&[AMD], Scope::Card));
    assert!(out.ok, "{out:#?}");
    assert_eq!(reset_method(&h), "device_specific\n");
    assert_eq!(
        out.steps[1],
        "write \"device_specific\" to /sys/bus/pci/devices/0000:04:00.0/reset_method"
    );
    let rec = h.state().all();
    assert_eq!(rec[0].original_reset_method.as_deref(), Some("bus"));
    assert!(h.unbind(&req(&[AMD], Scope::Card)).ok);
    assert_eq!(reset_method(&h), "bus\n", "given back on unbind");

    let h = Host::new(&desktop());
    let out = h.bind(&req(&[AMD], Scope::Card));
    assert!(out.ok, "{out:#?}");
    assert_eq!(reset_method(&h), "bus\n");
    assert!(!out.steps.iter().any(|s| s.contains("reset_method")));
    assert!(
        out.warnings.iter().any(|w| w.contains("0000:04:00.0 has the AMD reset bug") && w.contains("vendor-reset")),
        "{:?}",
        out.warnings
    );
    // no warning for a card without the quirk
    let out = h.bind(&req(&[GPU], Scope::Card));
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
}

#[test]
fn unbind_without_a_record_and_of_driverless_functions() {
    // 01:00.0 is on vfio-pci already (bound by someone else); its audio
    // function has no driver.
    let tree = SimTree::new()
        .module("vfio_pci")
        .device(
            SimDevice::new(a(BOOT_GPU), 0x030000, 0x1af4, 0x1050)
                .driver("virtio-pci")
                .group(1)
                .boot_vga(),
        )
        .device(
            SimDevice::new(a(GPU), 0x030000, 0x10de, 0x1c82)
                .driver("vfio-pci")
                .group(2),
        )
        .device(SimDevice::new(a(GPU_AUDIO), 0x040300, 0x10de, 0x0fb9).group(2))
        .device(
            SimDevice::new(a(NIC), 0x020000, 0x8086, 0x10d3)
                .driver("e1000e")
                .group(3),
        );
    let mut h = Host::new(&tree);
    std::fs::create_dir_all(h.root().join("sys/bus/pci/drivers/nouveau")).expect("driver dir");
    std::fs::create_dir_all(h.root().join("dev/vfio")).expect("dev/vfio");
    std::fs::write(h.root().join("dev/vfio/2"), "").expect("node");
    h.sim.set_natural(a(GPU), Some("nouveau"));

    // bind: the GPU is skipped (already there), the audio function recorded
    // as having no driver
    let out = h.bind(&req(&[GPU], Scope::Card));
    assert!(out.ok, "{out:#?}");
    assert_eq!(
        op_strings(&h.sim),
        [
            "write \"vfio-pci\" to /sys/bus/pci/devices/0000:01:00.1/driver_override",
            "write \"0000:01:00.1\" to /sys/bus/pci/drivers_probe",
        ]
    );
    let recorded: Vec<bool> = out.devices.iter().map(|d| d.recorded).collect();
    assert_eq!(
        recorded,
        [false, true],
        "only the device exliar moved is held"
    );
    let st = h.state().all();
    assert_eq!(st.len(), 1);
    assert_eq!(
        (st[0].address, st[0].original_driver.clone()),
        (a(GPU_AUDIO), None)
    );
    let status = bind::status(&HostRoot::new(h.root()), &h.inv(), &h.state());
    assert_eq!(status.runtime_bindings.len(), 1);
    assert_eq!(status.vfio_devices, [a(GPU), a(GPU_AUDIO)]);

    // unbind: the audio function goes back to no driver; the GPU, with no
    // record, to the kernel's choice
    h.sim.clear_ops();
    let out = h.unbind(&req(&[GPU], Scope::Card));
    assert!(out.ok, "{out:#?}");
    assert_eq!(h.driver(GPU).as_deref(), Some("nouveau"));
    assert_eq!(h.driver(GPU_AUDIO), None);
    assert!(
        !op_strings(&h.sim)
            .contains(&"write \"0000:01:00.1\" to /sys/bus/pci/drivers_probe".to_string())
    );
    assert!(h.sim.vfio_nodes().is_empty());
    let gpu = out
        .devices
        .iter()
        .find(|d| d.address == a(GPU))
        .expect("gpu");
    assert!(!gpu.recorded);

    // a device that vfio-pci claims by id comes straight back: reported
    h.sim.set_natural(a(GPU), Some("vfio-pci"));
    assert!(h.bind(&req(&[GPU], Scope::Exact)).ok);
    // forget the record so that nothing says where it came from
    let mut st = h.state();
    st.forget(&a(GPU)).expect("forget");
    let out = h.unbind(&req(&[GPU], Scope::Exact));
    assert!(!out.ok);
    assert!(
        out.error
            .as_deref()
            .unwrap_or("")
            .contains("claims it by id"),
        "{:?}",
        out.error
    );
    // a device on a host driver that exliar never bound is left alone
    let out = h.unbind(&req(&[NIC], Scope::Card));
    assert!(out.ok);
    assert!(out.warnings[0].contains("left alone"));
}

#[test]
fn unbind_with_no_address_takes_only_what_exliar_holds() {
    // The GPU was put on vfio-pci by someone else; exliar binds its card,
    // which moves (and records) only the audio function.
    let tree = SimTree::new()
        .device(
            SimDevice::new(a(BOOT_GPU), 0x030000, 0x1af4, 0x1050)
                .driver("virtio-pci")
                .group(1)
                .boot_vga(),
        )
        .device(
            SimDevice::new(a(GPU), 0x030000, 0x10de, 0x1c82)
                .driver("vfio-pci")
                .group(2),
        )
        .device(
            SimDevice::new(a(GPU_AUDIO), 0x040300, 0x10de, 0x0fb9)
                .driver("snd_hda_intel")
                .group(2),
        );
    let h = Host::new(&tree);
    assert!(h.bind(&req(&[GPU], Scope::Card)).ok);
    assert_eq!(h.driver(GPU_AUDIO).as_deref(), Some("vfio-pci"));
    let out = h.unbind(&req(&[], Scope::Card));
    check_schema(&out);
    assert!(out.ok, "{out:#?}");
    assert_eq!(out.scope, Scope::Exact);
    assert_eq!(
        out.devices.iter().map(|d| d.address).collect::<Vec<_>>(),
        [a(GPU_AUDIO)]
    );
    assert_eq!(h.driver(GPU_AUDIO).as_deref(), Some("snd_hda_intel"));
    assert_eq!(h.driver(GPU).as_deref(), Some("vfio-pci"), "not exliar's");
    assert_eq!(h.sim.vfio_nodes(), [2]);
}

// --- the CLI ---------------------------------------------------------------------

/// `exliar ARGS ROOT` (ARGS end with `--root`), without EXLIAR_BOOTLOADER.
fn run_with_root(args: &[&str], root: &Path) -> std::process::Output {
    exliar()
        .env_remove("EXLIAR_BOOTLOADER")
        .args(args)
        .arg(root)
        .output()
        .expect("run")
}

fn cli_tree(tree: &SimTree) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    tree.build(dir.path()).expect("tree");
    dir
}

#[test]
fn cli_dry_run_refusals_and_json() {
    let t = cli_tree(&desktop().module("vfio_pci"));
    let before = tree_contents(t.path()).expect("tree");
    let bind_schema = schema("bind-1.schema.json");

    let out = run_with_root(&["bind", GPU, "--dry-run", "--json", "--root"], t.path());
    assert_success(&out, "bind --dry-run --json");
    let doc = json(&out);
    assert_valid(&bind_schema, &doc, "bind --dry-run --json");
    assert_eq!(doc["dry_run"], true);
    assert_eq!(
        doc["steps"][1],
        "write \"0000:01:00.0\" to /sys/bus/pci/drivers/nouveau/unbind"
    );
    let text = run_with_root(&["bind", GPU, "--dry-run", "--root"], t.path());
    let text = stdout(&text);
    assert!(text.contains("Kernel writes (would make):"), "{text}");
    assert!(
        text.contains("0000:01:00.1: snd_hda_intel -> vfio-pci"),
        "{text}"
    );

    for (args, code, what) in [
        (vec!["bind", BOOT_GPU, "--json"], 1, "boot display"),
        (
            vec!["bind", NVME, "--json"],
            1,
            "host-critical (root file system on /dev/nvme0n1p2)",
        ),
        (
            // An error, not a refusal: exit 2, the document still says why.
            vec!["bind", "0000:0a:00.0", "--json"],
            2,
            "no such PCI device",
        ),
        (
            vec!["bind", SHARED_GPU, "--json", "--force"],
            1,
            "shares IOMMU group 6",
        ),
    ] {
        let out = run_with_root(&[&args[..], &["--root"]].concat(), t.path());
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let doc = json(&out);
        assert_valid(&bind_schema, &doc, &format!("{args:?}"));
        assert!(
            doc["refusals"][0]["reason"]
                .as_str()
                .unwrap_or("")
                .contains(what),
            "{args:?}: {doc}"
        );
    }
    let out = run_with_root(&["bind", BOOT_GPU, "--root"], t.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Refused to bind:") && err.contains("--force"),
        "{err}"
    );
    // nothing written but the (empty) lock file
    let mut after = tree_contents(t.path()).expect("tree");
    assert_eq!(
        after.remove(Path::new("run/exliar/lock")).as_deref(),
        Some("")
    );
    after.remove(Path::new("run/exliar"));
    after.remove(Path::new("run"));
    same_tree(&after, &before, "nothing written");

    let out = run_with_root(&["status", "--json", "--root"], t.path());
    assert_eq!(out.status.code(), Some(0));
    let doc = json(&out);
    assert_valid(&schema("status-1.schema.json"), &doc, "status --json");
    assert_eq!(doc["runtime_bindings"], serde_json::json!([]));
    let out = run_with_root(&["unbind", "--root"], t.path());
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to unbind"));
}

/// The real kernel interface on a tree that is not sysfs: `driver_override`
/// is a plain file it can write, `drivers/nouveau/unbind` does not exist.
/// The failure is reported with its step and device, and undone.
#[test]
fn cli_undoes_a_failed_write() {
    let t = cli_tree(&desktop().module("vfio_pci"));
    let out = run_with_root(&["bind", GPU, "--json", "--root"], t.path());
    assert_eq!(out.status.code(), Some(2));
    let doc = json(&out);
    assert_valid(&schema("bind-1.schema.json"), &doc, "failed bind");
    assert_eq!(doc["rolled_back"], true, "{doc}");
    assert_eq!(doc["failures"][0]["device"], GPU);
    assert_eq!(
        doc["failures"][0]["step"],
        "write \"0000:01:00.0\" to /sys/bus/pci/drivers/nouveau/unbind"
    );
    assert_eq!(
        doc["steps"].as_array().map(|s| s.last().cloned()),
        Some(Some(serde_json::json!(
            "undo: write \"\" to /sys/bus/pci/devices/0000:01:00.0/driver_override"
        )))
    );
    let ovr = std::fs::read_to_string(
        t.path()
            .join("sys/devices/pci0000:00")
            .join(GPU)
            .join("driver_override"),
    )
    .expect("override");
    assert_eq!(ovr.trim(), "", "the override is cleared again");
    assert!(!t.path().join(STATE_FILE).exists(), "no record left");
    assert!(
        t.path().join("run/exliar/lock").exists(),
        "the lock was taken"
    );

    // without vfio-pci loaded, a tree that is not the live host gets no modprobe
    let t = cli_tree(&desktop());
    let out = run_with_root(&["bind", GPU, "--root"], t.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("modules are loaded only on the live host"),
        "{err}"
    );
}

/// `--persist` is offered where it works (bind) and documented.
#[test]
fn help_and_readme_describe_persist() {
    let out = exliar().args(["bind", "--help"]).output().expect("run");
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("--persist") && text.contains("--by-address"),
        "{text}"
    );
    for cmd in ["unbind", "status"] {
        let out = exliar().args([cmd, "--help"]).output().expect("run");
        assert!(!stdout(&out).contains("--persist"), "{cmd} --help");
    }
    let readme = std::fs::read_to_string(manifest_dir().join("README.md")).expect("README");
    assert!(readme.contains("`--persist`"));
}

/// `bind --persist`: planned before anything is bound; with `--dry-run` the boot-time
/// plan is shown (by address: the early-bind script names the card's two functions, no
/// `ids=` file) and nothing is written.
#[test]
fn cli_persist_plans_by_address() {
    let t = cli_tree(&desktop().module("vfio_pci"));
    // a Debian system (GRUB, initramfs-tools) on the simulated hardware
    let debian =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hosts/debian12-grub-intel");
    for d in ["etc", "boot", "usr/sbin"] {
        let dest = t.path().join(d);
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        let ok = std::process::Command::new("cp")
            .arg("-a")
            .arg(debian.join(d))
            .arg(&dest)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "copying {d}");
    }
    let before = tree_contents(t.path()).expect("tree");
    let out = run_with_root(
        &["bind", GPU, "--persist", "--dry-run", "--json", "--root"],
        t.path(),
    );
    assert_success(&out, "bind --persist --dry-run --json");
    let doc = json(&out);
    assert_valid(
        &schema("bind-1.schema.json"),
        &doc,
        "bind --persist --dry-run --json",
    );
    let plan = &doc["persist"];
    assert_valid(&schema("plan-1.schema.json"), plan, "persist plan");
    let written: Vec<&str> = plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["path"].as_str())
        .collect();
    assert!(
        written.contains(&"usr/lib/exliar/vfio-early-bind"),
        "{written:?}"
    );
    assert!(
        !written.contains(&"etc/modprobe.d/zz-exliar-vfio-ids.conf"),
        "{written:?}"
    );
    let diffs = plan["diffs"].to_string();
    assert!(
        diffs.contains("0000:01:00.0 0000:01:00.1")
            && diffs.contains("softdep nouveau pre: vfio-pci"),
        "{diffs}"
    );
    same_tree(
        &tree_contents(t.path()).expect("tree"),
        &before,
        "dry run wrote nothing",
    );

    let text = run_with_root(&["bind", GPU, "--persist", "--dry-run", "--root"], t.path());
    let text = stdout(&text);
    assert!(text.contains("Kernel writes (would make):"), "{text}");
    assert!(
        text.contains("create usr/lib/exliar/vfio-early-bind")
            || text.contains("usr/lib/exliar/vfio-early-bind"),
        "{text}"
    );
    assert!(
        text.contains("Dry run: the boot configuration was not changed."),
        "{text}"
    );

    // one card only; --yes belongs to --persist
    for args in [
        vec!["bind", GPU, AMD, "--persist", "--dry-run"],
        vec!["bind", GPU, "--yes", "--dry-run"],
        vec!["bind", GPU, "--persist", "--group", "--dry-run"],
    ] {
        let out = run_with_root(&[&args[..], &["--root"]].concat(), t.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

/// A VM holding `/dev/vfio/N` open: the kernel's unbind would wait for it to close, so
/// exliar refuses (naming the process) and touches nothing; once closed, unbind works.
#[test]
fn unbind_of_a_group_in_use_is_refused() {
    let h = Host::new(&desktop());
    assert!(h.bind(&req(&[GPU], Scope::Card)).ok);
    let ops_before = op_strings(&h.sim).len();
    let proc = h.root().join("proc/4242");
    std::fs::create_dir_all(proc.join("fd")).expect("proc");
    std::fs::write(proc.join("comm"), "qemu-system-x86\n").expect("comm");
    std::os::unix::fs::symlink("/dev/null", proc.join("fd/0")).expect("fd 0");
    std::os::unix::fs::symlink("/dev/vfio/2", proc.join("fd/17")).expect("fd 17");
    // another group's node, and a number that is only a prefix, do not count
    std::fs::create_dir_all(h.root().join("proc/4343/fd")).expect("proc");
    std::os::unix::fs::symlink("/dev/vfio/22", h.root().join("proc/4343/fd/3")).expect("fd");

    let out = h.unbind(&req(&[GPU], Scope::Card));
    check_schema(&out);
    assert!(!out.ok);
    assert_eq!(out.refusals.len(), 2, "{out:#?}");
    for r in &out.refusals {
        assert!(
            r.reason.contains("IOMMU group 2 is in use")
                && r.reason.contains("process 4242 (qemu-system-x86)")
                && !r.reason.contains("4343"),
            "{r:?}"
        );
        assert!(!r.overridable);
    }
    assert_eq!(op_strings(&h.sim).len(), ops_before, "no kernel write");
    assert_eq!(h.driver(GPU).as_deref(), Some("vfio-pci"));

    std::fs::remove_file(proc.join("fd/17")).expect("close");
    let out = h.unbind(&req(&[GPU], Scope::Card));
    assert!(out.ok, "{out:#?}");
    assert_eq!(h.driver(GPU).as_deref(), Some("nouveau"));
}
