//! Real-kernel tier: boots Debian's stock kernel under QEMU (TCG) with emulated GPUs,
//! IOMMUs and bridges, runs exliar inside the guest and checks its JSON against what
//! the kernel itself says. See tests/realkernel/README.md.
//!
//! Each scenario is one test function: describe the machine, `harness::boot` it, assert.

mod common;

mod realkernel {
    pub mod bindstate;
    pub mod checks;
    pub mod harness;
    pub mod initramfs;
    pub mod kernel;
    pub mod machines;
    pub mod qemu;
    pub mod transport;
    pub mod truth;
}

use std::time::Duration;

use realkernel::bindstate::{self, GUEST_HELPERS, KernelState};
use realkernel::checks;
use realkernel::harness::{self, GuestRun, Iommu, Scenario};
use realkernel::machines::{GPU_PAIR_DEVICES, IDENTICAL_DEVICES};

const HOST_GPU: &str = "0000:01:00.0";
const GUEST_GPU: &str = "0000:02:00.0";
const GUEST_GPU_AUDIO: &str = "0000:02:00.1";

/// The checks every scenario shares, run on a booted guest: `devices[]` and
/// `iommu_groups[]` against the kernel, `gpus[]` against the topology, `exliar iommu`
/// output, and the host's scan of the guest's snapshot against the guest's scan.
/// Returns the guest's scan.
fn exliar_checks(run: &GuestRun) -> serde_json::Value {
    let scan = run.exliar("scan", "scan --json").json();
    assert_eq!(
        checks::str_field(&scan, "schema"),
        Some(checks::INVENTORY_SCHEMA),
        "scan.json schema"
    );
    let iommu = run.exliar("iommu", "iommu --json").json();
    assert_eq!(
        checks::str_field(&iommu, "schema"),
        Some(checks::IOMMU_SCHEMA),
        "iommu.json schema"
    );
    let mut findings = checks::Findings::default();
    checks::devices_match_truth(run, &scan, &mut findings);
    checks::groups_match_truth(run, &scan, "scan --json", &mut findings);
    checks::groups_match_truth(run, &iommu, "iommu --json", &mut findings);
    checks::gpus_match_truth(run, &scan, &mut findings);
    checks::snapshot_roundtrip(run, &scan, &mut findings);
    findings.assert_none(run);
    scan
}

/// `exliar check` in the guest: the IOMMU is active (with its unit and the
/// firmware table as evidence) or not, as the machine was built.
fn assert_check_iommu(run: &GuestRun, expect: Option<(&str, &str)>) {
    // `check` exits 1 when the host is not ready (this guest has no vmx/svm).
    let out = run.exliar("check", "check --json");
    assert!(
        out.rc == 0 || out.rc == 1,
        "check --json rc {}: {}",
        out.rc,
        out.stderr
    );
    let doc: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("check --json is not JSON ({e}): {}", out.stdout));
    assert_eq!(checks::str_field(&doc, "schema"), Some("exliar.check/1"));
    let find = |id: &str| -> serde_json::Value {
        doc["checks"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("check {id} missing in {doc}"))
    };
    let evidence = |c: &serde_json::Value| c["evidence"].to_string();
    let active = find("iommu.active");
    let firmware = find("iommu.firmware");
    match expect {
        Some((unit, table)) => {
            assert_eq!(active["status"], "ok", "iommu.active: {active}");
            assert!(
                evidence(&active).contains(unit),
                "iommu.active evidence names {unit}: {active}"
            );
            assert_eq!(firmware["status"], "ok", "iommu.firmware: {firmware}");
            assert!(
                evidence(&firmware).contains(table),
                "iommu.firmware evidence names {table}: {firmware}"
            );
        }
        None => {
            assert_eq!(active["status"], "fail", "iommu.active: {active}");
            assert_eq!(firmware["status"], "fail", "iommu.firmware: {firmware}");
            assert!(
                !doc["ready"].as_bool().unwrap_or(true),
                "not ready without an IOMMU"
            );
        }
    }
}

/// Asserts the kernel-side facts the gpu_pair layout is built to produce.
fn assert_gpu_pair_truth(run: &GuestRun) {
    let t = &run.truth;
    assert_eq!(
        t.device(HOST_GPU).ids(),
        "1af4:1050",
        "virtio-vga at {HOST_GPU}"
    );
    assert_eq!(
        t.device(HOST_GPU).boot_vga,
        Some(true),
        "host display is the boot VGA"
    );
    assert_eq!(t.device(GUEST_GPU).ids(), "1234:1111", "VGA at {GUEST_GPU}");
    assert_eq!(t.device(GUEST_GPU).boot_vga, Some(false));
    assert_eq!(
        t.device(GUEST_GPU_AUDIO).class,
        "0x040300",
        "HDA at {GUEST_GPU_AUDIO}"
    );
}

#[test]
fn gpu_pair() {
    let scenario = Scenario::new("gpu_pair", Iommu::Intel, GPU_PAIR_DEVICES);
    let Some(run) = harness::boot(&scenario) else {
        return;
    };
    assert_gpu_pair_truth(&run);
    let t = &run.truth;
    assert_eq!(
        t.group_of(GUEST_GPU).map(|g| g.members.clone()),
        Some(vec![GUEST_GPU.to_owned(), GUEST_GPU_AUDIO.to_owned()]),
        "VGA and its audio function form one group"
    );
    assert_eq!(
        t.device(GUEST_GPU_AUDIO).driver.as_deref(),
        Some("snd_hda_intel")
    );
    let scan = exliar_checks(&run);
    assert_check_iommu(&run, Some(("dmar", "DMAR")));
    let gpu = checks::gpu(&scan, GUEST_GPU);
    assert_eq!(checks::str_field(gpu, "isolation"), Some("isolated"));
    assert_eq!(
        checks::str_list(gpu, "functions"),
        [GUEST_GPU, GUEST_GPU_AUDIO],
        "functions of {GUEST_GPU}"
    );
    assert_eq!(
        checks::recommendation(&scan),
        (Some(GUEST_GPU.to_owned()), Some(HOST_GPU.to_owned())),
        "recommendation: pass the VGA through, keep virtio-vga for the host"
    );
}

#[test]
fn identical() {
    let scenario = Scenario::new("identical", Iommu::Intel, IDENTICAL_DEVICES);
    let Some(run) = harness::boot(&scenario) else {
        return;
    };
    let (a, b) = ("0000:01:00.0", "0000:02:00.0");
    assert_eq!(run.truth.device(a).ids(), run.truth.device(b).ids());
    assert_eq!(
        run.truth.device(a).boot_vga,
        Some(true),
        "{a} is the boot VGA"
    );
    let scan = exliar_checks(&run);
    for (gpu, other) in [(a, b), (b, a)] {
        let g = checks::gpu(&scan, gpu);
        assert_eq!(checks::str_list(g, "identical_ids_with"), [other], "{gpu}");
        assert_eq!(checks::str_field(g, "isolation"), Some("isolated"), "{gpu}");
    }
    let (passthrough, _) = checks::recommendation(&scan);
    assert_ne!(
        passthrough.as_deref(),
        Some(a),
        "the boot VGA is not given away"
    );
}

/// The host's display (virtio-vga, root port, bus 01); a "GPU" (VGA) sharing a
/// conventional PCI bridge (no ACS, bus 02) with an unrelated NIC, so both land in the
/// bridge's IOMMU group; and a clean second GPU (bochs-display, class 0x0380 and the same
/// 1234:1111 ids as the VGA) alone on a root port (bus 03).
const DIRTY_DEVICES: &str = "\
    -device pcie-root-port,id=rp1,bus=pcie.0,chassis=1,addr=0x2 \
    -device virtio-vga,bus=rp1 \
    -device pci-bridge,id=br1,bus=pcie.0,chassis_nr=2,addr=0x3 \
    -device VGA,bus=br1,addr=0x1 \
    -device e1000,bus=br1,addr=0x2,romfile= \
    -device pcie-root-port,id=rp3,bus=pcie.0,chassis=3,addr=0x4 \
    -device bochs-display,bus=rp3";

#[test]
fn dirty() {
    let scenario = Scenario::new("dirty", Iommu::Intel, DIRTY_DEVICES);
    let Some(run) = harness::boot(&scenario) else {
        return;
    };
    let (gpu, nic, clean) = ("0000:02:01.0", "0000:02:02.0", "0000:03:00.0");
    let t = &run.truth;
    assert_eq!(t.device(gpu).ids(), "1234:1111");
    assert_eq!(t.device(nic).class, "0x020000");
    assert_eq!(t.device(clean).class, "0x038000", "bochs-display");
    assert_eq!(t.device(HOST_GPU).boot_vga, Some(true));
    let group = t.group_of(gpu).expect("the VGA has an IOMMU group");
    assert!(
        group.members.iter().any(|m| m == nic),
        "VGA and NIC behind a conventional bridge share a group: {group:?}"
    );
    let scan = exliar_checks(&run);
    let g = checks::gpu(&scan, gpu);
    assert_eq!(checks::str_field(g, "isolation"), Some("shared"));
    assert_eq!(checks::str_list(g, "group_peers"), [nic]);
    assert_eq!(checks::str_list(g, "identical_ids_with"), [clean]);
    let c = checks::gpu(&scan, clean);
    assert_eq!(checks::str_field(c, "kind"), Some("display"));
    assert_eq!(checks::str_field(c, "isolation"), Some("isolated"));
    assert_eq!(
        checks::recommendation(&scan),
        (Some(clean.to_owned()), Some(HOST_GPU.to_owned())),
        "the isolated bochs-display is recommended, not the shared VGA"
    );
}

#[test]
fn amd_iommu() {
    let scenario = Scenario::new("amd_iommu", Iommu::Amd, GPU_PAIR_DEVICES);
    let Some(run) = harness::boot(&scenario) else {
        return;
    };
    assert_gpu_pair_truth(&run);
    assert!(run.truth.cmdline.contains("iommu=pt"));
    let t = &run.truth;
    assert_eq!(
        t.device("0000:00:01.0").class,
        "0x080600",
        "the AMD IOMMU takes slot 00:01.0"
    );
    assert_eq!(
        t.group_of(GUEST_GPU).map(|g| g.members.clone()),
        Some(vec![GUEST_GPU.to_owned(), GUEST_GPU_AUDIO.to_owned()]),
    );
    // QEMU 7.2's amd-iommu breaks the HDA codec probe at fn1 behind a root port
    // (dmesg: "no codecs initialized"); whether snd_hda_intel stays bound is the kernel's
    // call, and exliar must report whatever it is (devices_match_truth checks that).
    eprintln!(
        "amd_iommu: {GUEST_GPU_AUDIO} driver in the guest: {:?}",
        t.device(GUEST_GPU_AUDIO).driver
    );
    let scan = exliar_checks(&run);
    assert_check_iommu(&run, Some(("ivhd", "IVRS")));
    let gpu = checks::gpu(&scan, GUEST_GPU);
    assert_eq!(checks::str_field(gpu, "isolation"), Some("isolated"));
    assert_eq!(
        checks::recommendation(&scan),
        (Some(GUEST_GPU.to_owned()), Some(HOST_GPU.to_owned())),
    );
}

#[test]
fn no_iommu() {
    let scenario = Scenario::new("no_iommu", Iommu::None, GPU_PAIR_DEVICES);
    let Some(run) = harness::boot(&scenario) else {
        return;
    };
    assert_gpu_pair_truth(&run);
    assert!(run.truth.groups.is_empty(), "no vIOMMU, no groups");
    let scan = exliar_checks(&run);
    assert_check_iommu(&run, None);
    for gpu in [GUEST_GPU, HOST_GPU] {
        let g = checks::gpu(&scan, gpu);
        assert_eq!(checks::str_field(g, "isolation"), Some("no-iommu"), "{gpu}");
    }
    let (passthrough, _) = checks::recommendation(&scan);
    assert_eq!(
        passthrough, None,
        "nothing can be passed through without an IOMMU"
    );
}

// --- runtime binding -------------------------------------------------------------------

/// A scenario whose guest script starts with the bind helpers (`bind_state`, `timed`).
fn bind_scenario(name: &'static str, devices: &str, script: &str) -> Scenario {
    Scenario::new(name, Iommu::Intel, devices)
        .with_guest_script(&format!("{GUEST_HELPERS}\n{script}"))
}

/// `exliar bind`/`unbind --json` output of the guest command `tag`, after its exit
/// code and schema are checked.
fn bind_json(run: &GuestRun, tag: &str, args: &str, rc: i32) -> serde_json::Value {
    let doc = run.exliar(tag, args).json_rc(rc);
    common::assert_valid(&common::schema("bind-1.schema.json"), &doc, args);
    doc
}

fn status_json(run: &GuestRun, tag: &str) -> serde_json::Value {
    let doc = run.exliar(tag, "status --json").json();
    common::assert_valid(
        &common::schema("status-1.schema.json"),
        &doc,
        "status --json",
    );
    doc
}

/// `(address, driver_before, driver_after)` of each device of a bind document.
fn moved(doc: &serde_json::Value) -> Vec<(String, Option<String>, Option<String>)> {
    let s = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    doc["devices"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|d| {
                    (
                        s(&d["address"]).unwrap_or_default(),
                        s(&d["driver_before"]),
                        s(&d["driver_after"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The one group of a bind document, as `(id, viable, vfio_node)`.
fn only_group(doc: &serde_json::Value) -> (u64, bool, bool) {
    let g = doc["groups"]
        .as_array()
        .filter(|g| g.len() == 1)
        .unwrap_or_else(|| panic!("not one group: {doc}"));
    (
        g[0]["id"].as_u64().unwrap_or(u64::MAX),
        g[0]["viable"] == true,
        g[0]["vfio_node"] == true,
    )
}

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

fn report_time(run: &GuestRun, what: &str, d: Duration) {
    let line = format!(
        "{}: guest wall time of {what}: {:.2}s",
        run.name,
        d.as_secs_f64()
    );
    harness::say(&line);
    harness::record_time(&line);
}

/// Bind the gpu_pair card (VGA + HDMI audio, one group), then unbind it; after each step
/// the kernel's drivers, overrides, `/dev/vfio` and the group's viability are read in the
/// guest and compared with exliar's JSON.
#[test]
fn bind_gpu_pair() {
    let scenario = bind_scenario(
        "bind_gpu_pair",
        GPU_PAIR_DEVICES,
        "bind_state before
timed bind bind 0000:02:00.0 --json
bind_state bound
run_exliar status_bound status --json
# a stand-in VM holds the group open: unbind must refuse, not hang in the kernel
g=$(readlink /sys/bus/pci/devices/0000:02:00.0/iommu_group); g=${g##*/}
sleep 600 <> /dev/vfio/$g &
holder=$!
n=0
while [ $n -lt 50 ]; do
  case $(readlink /proc/$holder/fd/0) in /dev/vfio/$g) break;; esac
  sleep 0.1; n=$((n+1))
done
echo $holder > /out/holder.pid
run_exliar unbind_busy unbind 0000:02:00.0 --json
bind_state busy
kill $holder; wait $holder 2>/dev/null
timed unbind unbind 0000:02:00.0 --json
bind_state unbound
run_exliar status_unbound status --json
timed bind_again bind 0000:02:00.0 --json
timed unbind_again unbind 0000:02:00.0 --json
bind_state again
",
    );
    let Some(run) = harness::boot(&scenario) else {
        return;
    };
    let before = KernelState::read(&run.out, "before");
    let g = before.group(GUEST_GPU);
    assert_eq!(before.group(GUEST_GPU_AUDIO), g, "one group");
    assert_eq!(before.driver(GUEST_GPU), Some("bochs-drm"));
    assert_eq!(before.driver(GUEST_GPU_AUDIO), Some("snd_hda_intel"));
    assert!(!before.has_node(g) && !before.viable(g));

    let bind = bind_json(&run, "bind", "bind 0000:02:00.0 --json", 0);
    assert_eq!(bind["ok"], true, "{bind}");
    assert_eq!(
        moved(&bind),
        [
            (GUEST_GPU.to_owned(), some("bochs-drm"), some("vfio-pci")),
            (
                GUEST_GPU_AUDIO.to_owned(),
                some("snd_hda_intel"),
                some("vfio-pci")
            ),
        ]
    );
    assert_eq!(only_group(&bind), (u64::from(g), true, true));
    let bound = KernelState::read(&run.out, "bound");
    for f in [GUEST_GPU, GUEST_GPU_AUDIO] {
        assert_eq!(bound.driver(f), Some("vfio-pci"), "{f}");
        assert_eq!(
            bound.device(f).driver_override.as_deref(),
            Some("vfio-pci"),
            "{f}"
        );
    }
    assert!(bound.has_node(g), "/dev/vfio/{g}: {:?}", bound.vfio);
    assert!(bound.viable(g));
    assert_eq!(
        bound.driver(HOST_GPU),
        before.driver(HOST_GPU),
        "the host's display stays"
    );
    let status = status_json(&run, "status_bound");
    assert_eq!(
        common::addrs(&status["vfio_devices"]),
        [GUEST_GPU, GUEST_GPU_AUDIO]
    );
    let held = status["runtime_bindings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(held.len(), 2, "{status}");
    assert!(held.iter().all(|b| b["on_vfio"] == true), "{status}");
    assert_eq!(held[0]["original_driver"], "bochs-drm");
    assert_eq!(held[1]["original_driver"], "snd_hda_intel");

    // held open by a process: refused, named, nothing moved
    let busy = bind_json(&run, "unbind_busy", "unbind 0000:02:00.0 --json", 1);
    let holder = std::fs::read_to_string(run.out.join("holder.pid")).unwrap_or_default();
    let reason = busy["refusals"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "/dev/vfio/{g} is open in process {} (",
            holder.trim()
        )),
        "{busy}"
    );
    assert_eq!(
        KernelState::read(&run.out, "busy").bindings(),
        bound.bindings(),
        "a refused unbind moves nothing"
    );

    let unbind = bind_json(&run, "unbind", "unbind 0000:02:00.0 --json", 0);
    assert_eq!(unbind["ok"], true, "{unbind}");
    assert_eq!(
        moved(&unbind),
        [
            (GUEST_GPU.to_owned(), some("vfio-pci"), some("bochs-drm")),
            (
                GUEST_GPU_AUDIO.to_owned(),
                some("vfio-pci"),
                some("snd_hda_intel")
            ),
        ]
    );
    assert_eq!(only_group(&unbind), (u64::from(g), false, false));
    let unbound = KernelState::read(&run.out, "unbound");
    assert_eq!(
        unbound.bindings(),
        before.bindings(),
        "every function as before"
    );
    assert!(
        !unbound.has_node(g),
        "/dev/vfio/{g} is gone: {:?}",
        unbound.vfio
    );
    let status = status_json(&run, "status_unbound");
    assert_eq!(status["runtime_bindings"], serde_json::json!([]));
    assert_eq!(status["vfio_devices"], serde_json::json!([]));

    // a second cycle: the first bind also pays for loading vfio-pci and the kernel's
    // first-time work
    assert_eq!(run.exliar("bind_again", "bind").rc, 0);
    assert_eq!(run.exliar("unbind_again", "unbind").rc, 0);
    assert_eq!(
        KernelState::read(&run.out, "again").bindings(),
        before.bindings()
    );
    let times = bindstate::times(&run.out);
    report_time(&run, "the first exliar bind (debug build)", times["bind"]);
    report_time(
        &run,
        "the first exliar unbind (debug build)",
        times["unbind"],
    );
    report_time(
        &run,
        "a second exliar bind (debug build)",
        times["bind_again"],
    );
    report_time(
        &run,
        "a second exliar unbind (debug build)",
        times["unbind_again"],
    );
}

/// Bind only the display function of the gpu_pair group (`--exact`): the group is left
/// non-viable (its audio function stays on snd_hda_intel), and exliar says so.
#[test]
fn bind_exact_not_viable() {
    let scenario = bind_scenario(
        "bind_exact_not_viable",
        GPU_PAIR_DEVICES,
        "bind_state before
run_exliar exact bind 0000:02:00.0 --exact --json
bind_state exact
run_exliar status_exact status --json
run_exliar unbind unbind 0000:02:00.0 --json
bind_state unbound
",
    );
    let Some(run) = harness::boot(&scenario) else {
        return;
    };
    let before = KernelState::read(&run.out, "before");
    let g = before.group(GUEST_GPU);
    let exact = bind_json(&run, "exact", "bind 0000:02:00.0 --exact --json", 1);
    assert_eq!(exact["ok"], false);
    assert_eq!(exact["failures"], serde_json::json!([]), "{exact}");
    assert_eq!(
        moved(&exact),
        [(GUEST_GPU.to_owned(), some("bochs-drm"), some("vfio-pci"))]
    );
    assert_eq!(only_group(&exact), (u64::from(g), false, true));
    assert_eq!(
        exact["groups"][0]["blocking"],
        serde_json::json!([{"address": GUEST_GPU_AUDIO, "driver": "snd_hda_intel"}])
    );
    let warned = exact["warnings"].as_array().cloned().unwrap_or_default();
    assert!(
        warned.iter().any(|w| w
            .as_str()
            .is_some_and(|w| w.contains(&format!("IOMMU group {g} is not viable")))),
        "{exact}"
    );
    let state = KernelState::read(&run.out, "exact");
    assert_eq!(state.driver(GUEST_GPU), Some("vfio-pci"));
    assert_eq!(state.driver(GUEST_GPU_AUDIO), Some("snd_hda_intel"));
    assert!(
        state.has_node(g),
        "vfio-pci creates the group's node even so"
    );
    assert!(!state.viable(g), "the kernel's rule agrees: not viable");
    let status = status_json(&run, "status_exact");
    assert_eq!(status["groups"][0]["viable"], false, "{status}");

    let unbind = bind_json(&run, "unbind", "unbind 0000:02:00.0 --json", 0);
    assert_eq!(unbind["ok"], true, "{unbind}");
    let unbound = KernelState::read(&run.out, "unbound");
    assert_eq!(unbound.bindings(), before.bindings());
    assert!(!unbound.has_node(g));
}

/// Two identical cards (1234:1111): binding one by address leaves the other, with the
/// same ids, on its driver; the boot display is refused; unbind with no address gives
/// back everything exliar holds.
#[test]
fn bind_identical() {
    let (boot, other) = ("0000:01:00.0", "0000:02:00.0");
    let scenario = bind_scenario(
        "bind_identical",
        IDENTICAL_DEVICES,
        "bind_state before
run_exliar bind bind 0000:02:00.0 --json
bind_state bound
run_exliar boot bind 0000:01:00.0 --json
bind_state refused
run_exliar unbind unbind --json
bind_state unbound
",
    );
    let Some(run) = harness::boot(&scenario) else {
        return;
    };
    let before = KernelState::read(&run.out, "before");
    assert_eq!(before.driver(boot), Some("bochs-drm"));
    assert_eq!(before.driver(other), Some("bochs-drm"));
    let (g_boot, g_other) = (before.group(boot), before.group(other));
    let bind = bind_json(&run, "bind", "bind 0000:02:00.0 --json", 0);
    assert_eq!(bind["ok"], true, "{bind}");
    assert_eq!(
        moved(&bind),
        [(other.to_owned(), some("bochs-drm"), some("vfio-pci"))]
    );
    let bound = KernelState::read(&run.out, "bound");
    assert_eq!(bound.driver(other), Some("vfio-pci"));
    assert_eq!(bound.driver(boot), Some("bochs-drm"), "the twin stays");
    assert_eq!(bound.device(boot).driver_override, None);
    assert!(bound.has_node(g_other) && !bound.has_node(g_boot));
    assert!(bound.viable(g_other));

    let refused = bind_json(&run, "boot", "bind 0000:01:00.0 --json", 1);
    assert_eq!(refused["refusals"][0]["address"], boot, "{refused}");
    assert!(
        refused["refusals"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("boot display")),
        "{refused}"
    );
    assert_eq!(refused["steps"], serde_json::json!([]));
    assert_eq!(
        KernelState::read(&run.out, "refused").bindings(),
        bound.bindings(),
        "a refusal writes nothing"
    );

    let unbind = bind_json(&run, "unbind", "unbind --json", 0);
    assert_eq!(unbind["ok"], true, "{unbind}");
    let unbound = KernelState::read(&run.out, "unbound");
    assert_eq!(unbound.bindings(), before.bindings());
    assert!(!unbound.has_node(g_other));
}

/// How many bind/unbind cycles `bind_cycles` runs (the issue asks for 200; with the
/// debug build under TCG one cycle takes about 0.8 s of guest time here, and took
/// 2.6 s on a slower CI machine before the guest ran without ASLR: the deadline
/// below leaves room for that).
const CYCLES: u32 = 200;

/// 200 bind/unbind cycles of the gpu_pair card: after each step the guest checks the
/// drivers and `/dev/vfio/N`; at the end no override is left, no stale node, and every
/// function is on its original driver.
#[test]
fn bind_cycles() {
    let script = format!(
        r#"bind_state before
gpu=0000:02:00.0; audio=0000:02:00.1
drv() {{ t=$(readlink /sys/bus/pci/devices/$1/driver); echo "${{t##*/}}"; }}
g=$(readlink /sys/bus/pci/devices/$gpu/iommu_group); g=${{g##*/}}
gpu0=$(drv $gpu); audio0=$(drv $audio)
: > /out/cycles-anomalies.txt
n=0; failed=0
t0=$(cut -d' ' -f1 /proc/uptime)
while [ $n -lt {CYCLES} ]; do
  n=$((n+1))
  /bin/exliar bind $gpu --json > /tmp/bind.json 2> /tmp/bind.err || {{ failed=$((failed+1)); cp /tmp/bind.json /out/cycle-$n-bind.json; cp /tmp/bind.err /out/cycle-$n-bind.stderr; }}
  [ "$(drv $gpu)" = vfio-pci ] || echo "$n bind: $gpu on $(drv $gpu)" >> /out/cycles-anomalies.txt
  [ "$(drv $audio)" = vfio-pci ] || echo "$n bind: $audio on $(drv $audio)" >> /out/cycles-anomalies.txt
  [ -e /dev/vfio/$g ] || echo "$n bind: no /dev/vfio/$g" >> /out/cycles-anomalies.txt
  /bin/exliar unbind $gpu --json > /tmp/unbind.json 2> /tmp/unbind.err || {{ failed=$((failed+1)); cp /tmp/unbind.json /out/cycle-$n-unbind.json; cp /tmp/unbind.err /out/cycle-$n-unbind.stderr; }}
  [ "$(drv $gpu)" = "$gpu0" ] || echo "$n unbind: $gpu on $(drv $gpu)" >> /out/cycles-anomalies.txt
  [ "$(drv $audio)" = "$audio0" ] || echo "$n unbind: $audio on $(drv $audio)" >> /out/cycles-anomalies.txt
  [ -e /dev/vfio/$g ] && echo "$n unbind: /dev/vfio/$g left" >> /out/cycles-anomalies.txt
  [ $n = 1 ] && cp /tmp/bind.json /out/first-bind.json && cp /tmp/unbind.json /out/first-unbind.json
  [ $((n % 50)) = 0 ] && say "bind_cycles: $n cycles, $failed failed, uptime $(cut -d' ' -f1 /proc/uptime)s" > /dev/console
done
echo "$n $failed $t0 $(cut -d' ' -f1 /proc/uptime)" > /out/cycles.txt
bind_state after
run_exliar status status --json
"#
    );
    let scenario = bind_scenario("bind_cycles", GPU_PAIR_DEVICES, &script)
        .with_timeout(Duration::from_secs(900));
    let Some(run) = harness::boot(&scenario) else {
        return;
    };
    let summary = std::fs::read_to_string(run.out.join("cycles.txt")).unwrap_or_default();
    let f: Vec<&str> = summary.split_whitespace().collect();
    assert_eq!(f.len(), 4, "cycles.txt: {summary:?}");
    assert_eq!(f[0], CYCLES.to_string(), "cycles run");
    assert_eq!(
        f[1], "0",
        "cycles with a failed exliar command (see cycle-*.json)"
    );
    let anomalies =
        std::fs::read_to_string(run.out.join("cycles-anomalies.txt")).unwrap_or_default();
    assert!(anomalies.is_empty(), "the kernel disagreed:\n{anomalies}");
    for (tag, file) in [("bind", "first-bind.json"), ("unbind", "first-unbind.json")] {
        let text = std::fs::read_to_string(run.out.join(file)).unwrap_or_default();
        let doc: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        common::assert_valid(&common::schema("bind-1.schema.json"), &doc, tag);
        assert_eq!(doc["ok"], true, "{doc}");
    }
    let before = KernelState::read(&run.out, "before");
    let after = KernelState::read(&run.out, "after");
    assert_eq!(
        after.bindings(),
        before.bindings(),
        "every function on its original driver"
    );
    assert!(
        after.devices.values().all(|d| d.driver_override.is_none()),
        "no override left: {after:#?}"
    );
    let g = before.group(GUEST_GPU);
    assert!(
        !after.has_node(g),
        "no stale /dev/vfio/{g}: {:?}",
        after.vfio
    );
    let status = status_json(&run, "status");
    assert_eq!(status["runtime_bindings"], serde_json::json!([]));
    let t0: f64 = f[2].parse().unwrap_or(0.0);
    let t1: f64 = f[3].parse().unwrap_or(0.0);
    let total = Duration::from_secs_f64((t1 - t0).max(0.0));
    report_time(
        &run,
        &format!("{CYCLES} bind/unbind cycles (debug build)"),
        total,
    );
    report_time(&run, "one cycle, on average", total / CYCLES);
}
