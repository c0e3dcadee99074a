//! Real-kernel tier: boots Debian's stock kernel under QEMU (TCG) with emulated GPUs,
//! IOMMUs and bridges, runs exliar inside the guest and checks its JSON against what
//! the kernel itself says. See tests/realkernel/README.md.
//!
//! Each scenario is one test function: describe the machine, `harness::boot` it, assert.

mod common;

mod realkernel {
    pub mod bench;
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
cp /run/exliar/pci-classes /out/pci-classes
for d in /sys/bus/pci/devices/*; do echo ${d##*/} $(cat $d/class); done > /out/kernel-classes
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
    // The class cache the bind saved: every function but the pair's slot,
    // with the class the kernel gives.
    let cache = std::fs::read_to_string(run.out.join("pci-classes")).unwrap_or_default();
    let kernel: std::collections::BTreeMap<String, u32> =
        std::fs::read_to_string(run.out.join("kernel-classes"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (a, c) = l.split_once(' ')?;
                Some((
                    a.to_string(),
                    u32::from_str_radix(c.trim_start_matches("0x"), 16).ok()?,
                ))
            })
            .collect();
    let entries: Vec<(&str, u32)> = cache
        .lines()
        .skip(2)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Some((*f.first()?, u32::from_str_radix(f.get(2)?, 16).ok()?))
        })
        .collect();
    assert!(cache.starts_with("exliar pci classes 1\nboot "), "{cache}");
    assert_eq!(entries.len(), kernel.len() - 2, "{cache}");
    for (a, c) in entries {
        assert_eq!(kernel.get(a), Some(&c), "{a} in {cache}");
    }
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

// --- GPU handover (issue 14) ------------------------------------------------------------

const SG_GPU: &str = "0000:01:00.0";
const SG_AUDIO: &str = "0000:01:00.1";

/// The guest script of [`handover`]: exliar's libvirt hook run as libvirt runs it
/// (`exliar hook qemu NAME OP SUB-OP -`, the domain XML with exliar's metadata on stdin),
/// then the same steps as bare sysfs writes, each timed from the guest's uptime
/// (`/out/times.txt`: `TAG START END`); `show TAG` records what the kernel shows.
const HANDOVER_HELPERS: &str = r#"
gpu=@GPU@; audio=@AUDIO@
domain() { # $1 = name, $2 = handover mode
  printf "<domain type='kvm'><name>%s</name><metadata><exliar:vm xmlns:exliar='https://exliar.dev/xmlns/vm/1'><exliar:profile>windows</exliar:profile><exliar:gpu>%s</exliar:gpu><exliar:functions>%s,%s</exliar:functions><exliar:options>{\"handover\":\"%s\"}</exliar:options><exliar:version>test</exliar:version></exliar:vm></metadata></domain>\n" "$1" "$gpu" "$gpu" "$audio" "$2"
}
domain sg single-gpu > /tmp/sg.xml
domain dyn dynamic > /tmp/dyn.xml
up() { cut -d' ' -f1 /proc/uptime; }
show() {
  {
    for v in /sys/class/vtconsole/vtcon*; do echo "vtcon ${v##*/} $(cat $v/bind) $(cat $v/name)"; done
    for f in /sys/class/graphics/fb*; do [ -e "$f/name" ] && echo "fb ${f##*/} $(cat $f/name)"; done
    for m in bochs snd_hda_intel; do [ -d /sys/module/$m ] && echo "module $m"; done
    for p in $gpu $audio; do
      d=-; [ -e /sys/bus/pci/devices/$p/driver ] && { t=$(readlink /sys/bus/pci/devices/$p/driver); d=${t##*/}; }
      echo "driver $p $d override $(cat /sys/bus/pci/devices/$p/driver_override)"
    done
  } > /out/$1.display
}
hook() { # $1 = tag, $2 = xml, the rest = libvirt's argv
  tag=$1; xml=$2; shift 2
  t0=$(up)
  /bin/exliar hook qemu "$@" - < $xml > /out/$tag.stdout 2> /out/$tag.stderr
  echo $? > /out/$tag.rc
  echo "$tag $t0 $(up)" >> /out/times.txt
}
fbcon() { for v in /sys/class/vtconsole/vtcon*; do grep -q 'frame buffer' $v/name && echo $v; done; }
show before
vt=$(fbcon)
"#;

/// [`HANDOVER_HELPERS`], then single-GPU by the hook, by `recover-display`, and by hand.
const SINGLE_GPU_SCRIPT: &str = r#"
# single-gpu: prepare, started, release
hook sg-prepare /tmp/sg.xml sg prepare begin
show sg-taken
cp /var/lib/exliar/handover/single-gpu.json /out/sg-journal.json 2>/dev/null
hook sg-started /tmp/sg.xml sg started begin
hook sg-release /tmp/sg.xml sg release end
show sg-back
# a handover never given back (the daemon died): recover-display finishes it
hook sg-prepare2 /tmp/sg.xml sg prepare begin
show sg-taken2
t0=$(up); /bin/exliar recover-display --json > /out/recover.json 2> /out/recover.stderr; echo $? > /out/recover.rc
echo "recover $t0 $(up)" >> /out/times.txt
show sg-recovered
/bin/exliar recover-display --json > /out/recover-again.json 2>&1; echo $? > /out/recover-again.rc
# the same steps as bare sysfs writes
t0=$(up)
for v in $vt; do echo 0 > $v/bind; done
echo $gpu > /sys/bus/pci/drivers/bochs-drm/unbind
echo $audio > /sys/bus/pci/drivers/snd_hda_intel/unbind
for p in $gpu $audio; do echo vfio-pci > /sys/bus/pci/devices/$p/driver_override; echo $p > /sys/bus/pci/drivers_probe; done
modprobe -r bochs; modprobe -r snd_hda_intel
echo "bare-sg-take $t0 $(up)" >> /out/times.txt
show bare-taken
t0=$(up)
modprobe snd_hda_intel; modprobe bochs
for p in $gpu $audio; do echo $p > /sys/bus/pci/drivers/vfio-pci/unbind; echo > /sys/bus/pci/devices/$p/driver_override; echo $p > /sys/bus/pci/drivers_probe; done
for v in $(fbcon); do [ "$(cat $v/bind)" = 1 ] || echo 1 > $v/bind; done
echo "bare-sg-back $t0 $(up)" >> /out/times.txt
show bare-back
run_exliar hooks-status hooks status --json
"#;

/// [`HANDOVER_HELPERS`], then dynamic by the hook and by hand: the card moves, the
/// host's own display (virtio-vga) stays.
const DYNAMIC_SCRIPT: &str = r#"
# dynamic: the card moves, the display stays
hook dyn-prepare /tmp/dyn.xml dyn prepare begin
show dyn-taken
hook dyn-release /tmp/dyn.xml dyn release end
show dyn-back
t0=$(up)
echo $gpu > /sys/bus/pci/drivers/bochs-drm/unbind
echo $audio > /sys/bus/pci/drivers/snd_hda_intel/unbind
for p in $gpu $audio; do echo vfio-pci > /sys/bus/pci/devices/$p/driver_override; echo $p > /sys/bus/pci/drivers_probe; done
echo "bare-dyn-take $t0 $(up)" >> /out/times.txt
t0=$(up)
for p in $gpu $audio; do echo $p > /sys/bus/pci/drivers/vfio-pci/unbind; echo > /sys/bus/pci/devices/$p/driver_override; echo $p > /sys/bus/pci/drivers_probe; done
echo "bare-dyn-back $t0 $(up)" >> /out/times.txt
show bare-dyn-back
run_exliar hooks-status hooks status --json
"#;

/// What `show TAG` recorded: lines sorted, the fb names and overrides kept.
fn display(run: &GuestRun, tag: &str) -> String {
    let path = run.out.join(format!("{tag}.display"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn guest_times(run: &GuestRun) -> std::collections::BTreeMap<String, f64> {
    std::fs::read_to_string(run.out.join("times.txt"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (a, b) = (
                f.get(1)?.parse::<f64>().ok()?,
                f.get(2)?.parse::<f64>().ok()?,
            );
            Some((f[0].to_string(), b - a))
        })
        .collect()
}

fn guest_rc(run: &GuestRun, tag: &str) -> String {
    std::fs::read_to_string(run.out.join(format!("{tag}.rc")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn guest_stderr(run: &GuestRun, tag: &str) -> String {
    std::fs::read_to_string(run.out.join(format!("{tag}.stderr"))).unwrap_or_default()
}

/// Whether the framebuffer console is bound, per `show`'s record (`None`: none).
fn fbcon_bound(d: &str) -> Option<bool> {
    d.lines()
        .find(|l| l.starts_with("vtcon") && l.contains("frame buffer"))
        .map(|l| l.split_whitespace().nth(2) == Some("1"))
}

/// The hook's log (`hooks status --json`): `DOMAIN PHASE OUTCOME` of each run, and
/// each run's time and steps reported.
fn hook_runs(run: &GuestRun) -> Vec<String> {
    let status = run.exliar("hooks-status", "hooks status --json").json();
    let runs = status["last_runs"].as_array().cloned().unwrap_or_default();
    for r in &runs {
        let line = format!(
            "{}: hook {} {}: {:.2}s in exliar: {}",
            run.name,
            r["domain"].as_str().unwrap_or(""),
            r["phase"].as_str().unwrap_or(""),
            r["secs"].as_f64().unwrap_or(0.0),
            r["steps"]
                .as_array()
                .map(|s| s
                    .iter()
                    .map(|x| format!(
                        "{} {:.3}s",
                        x["what"].as_str().unwrap_or(""),
                        x["secs"].as_f64().unwrap_or(0.0)
                    ))
                    .collect::<Vec<_>>()
                    .join("; "))
                .unwrap_or_default()
        );
        harness::say(&line);
        harness::record_time(&line);
    }
    runs.iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["domain"].as_str().unwrap_or(""),
                r["phase"].as_str().unwrap_or(""),
                r["outcome"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// The hook's times against the bare sysfs writes of the same steps, reported.
fn compare_times(run: &GuestRun, pairs: &[(&str, &str, &str)]) {
    let t = guest_times(run);
    let get = |k: &str| {
        t.get(k)
            .copied()
            .unwrap_or_else(|| panic!("no time for {k}: {t:?}"))
    };
    for (what, hook, bare) in pairs {
        let (h, b) = (get(hook), get(bare));
        let line = format!(
            "{}: guest wall time of {what}: exliar's hook {h:.2}s, the same steps as bare sysfs writes {b:.2}s (x{:.1})",
            run.name,
            h / b.max(0.01)
        );
        harness::say(&line);
        harness::record_time(&line);
    }
}

/// Issue 14 on the real kernel, single-GPU: a guest whose only display is the emulated
/// VGA with the framebuffer console on it. After `prepare begin` the console is unbound,
/// `bochs` (and `snd_hda_intel`, which no other device uses) unloaded and both functions
/// on vfio-pci; after `release end` all of it is back. A handover never given back is
/// finished by `recover-display`. Then the same steps written to sysfs by hand.
#[test]
fn handover_single_gpu() {
    let script = format!("{HANDOVER_HELPERS}{SINGLE_GPU_SCRIPT}")
        .replace("@GPU@", SG_GPU)
        .replace("@AUDIO@", SG_AUDIO);
    let scenario = Scenario::new(
        "handover_single_gpu",
        Iommu::Intel,
        realkernel::machines::SINGLE_GPU_DEVICES,
    )
    .with_guest_script(&script)
    .with_timeout(Duration::from_secs(300));
    let Some(run) = harness::boot(&scenario) else {
        return;
    };
    let before = display(&run, "before");
    assert_eq!(
        fbcon_bound(&before),
        Some(true),
        "the framebuffer console is on the card before:\n{before}"
    );
    assert!(before.contains("module bochs"), "{before}");
    assert!(
        before.contains(&format!("driver {SG_GPU} bochs-drm override (null)")),
        "{before}"
    );
    assert!(
        before.contains(&format!("driver {SG_AUDIO} snd_hda_intel override (null)")),
        "{before}"
    );
    assert!(before.lines().any(|l| l.starts_with("fb fb0")), "{before}");
    for tag in ["sg-prepare", "sg-started", "sg-release", "sg-prepare2"] {
        assert_eq!(
            guest_rc(&run, tag),
            "0",
            "{tag}: {}",
            guest_stderr(&run, tag)
        );
    }
    let taken = display(&run, "sg-taken");
    assert_ne!(fbcon_bound(&taken), Some(true), "console unbound:\n{taken}");
    assert!(!taken.contains("module bochs"), "bochs unloaded:\n{taken}");
    assert!(
        !taken.contains("module snd_hda_intel"),
        "snd_hda_intel unloaded (no other sound device):\n{taken}"
    );
    assert!(
        !taken.lines().any(|l| l.starts_with("fb ")),
        "no framebuffer:\n{taken}"
    );
    for f in [SG_GPU, SG_AUDIO] {
        assert!(
            taken.contains(&format!("driver {f} vfio-pci override vfio-pci")),
            "{f}:\n{taken}"
        );
    }
    let journal = std::fs::read_to_string(run.out.join("sg-journal.json")).unwrap_or_default();
    let j: serde_json::Value = serde_json::from_str(&journal).unwrap_or_default();
    assert_eq!(j["phase"], "taken", "{journal}");
    let steps: Vec<String> = j["entries"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e["step"].as_str().unwrap_or(""),
                        e["state"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        steps,
        [
            "unbind-vtconsole done",
            "bind-vfio done",
            "unload-module done",
            "unload-module done"
        ],
        "no display manager and no firmware framebuffer in this guest: {journal}"
    );
    for tag in ["sg-back", "sg-recovered", "bare-back"] {
        assert_eq!(display(&run, tag), before, "{tag}: the host as it was");
    }
    assert_eq!(display(&run, "sg-taken2"), taken);
    assert_eq!(
        display(&run, "bare-taken"),
        taken,
        "the bare sysfs writes reach the same state"
    );
    assert_eq!(
        guest_rc(&run, "recover"),
        "0",
        "{}",
        guest_stderr(&run, "recover")
    );
    let rec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.out.join("recover.json")).unwrap_or_default(),
    )
    .unwrap_or_default();
    assert_eq!(rec["schema"], "exliar.recover-display/1");
    assert_eq!(rec["outcome"], "given-back", "{rec}");
    assert_eq!(rec["domain"], "sg", "{rec}");
    let again = std::fs::read_to_string(run.out.join("recover-again.json")).unwrap_or_default();
    assert!(again.contains("nothing-recorded"), "{again}");
    assert_eq!(guest_rc(&run, "recover-again"), "0");
    let phases = hook_runs(&run);
    for want in [
        "sg prepare begin ok",
        "sg started begin logged",
        "sg release end ok",
        "sg recover-display ok",
    ] {
        assert!(phases.iter().any(|p| p == want), "{want} in {phases:?}");
    }
    compare_times(
        &run,
        &[
            ("single-gpu handover", "sg-prepare", "bare-sg-take"),
            ("single-gpu give-back", "sg-release", "bare-sg-back"),
        ],
    );
    let t = guest_times(&run);
    report_time(
        &run,
        "recover-display after an unfinished handover",
        Duration::from_secs_f64(t.get("recover").copied().unwrap_or(0.0)),
    );
}

/// Issue 14 on the real kernel, dynamic: the card (behind rp2; the host's console is on
/// virtio-vga) moves to vfio-pci at `prepare begin` and back at `release end`, its
/// drivers staying loaded; then the same moves written to sysfs by hand.
#[test]
fn handover_dynamic() {
    let script = format!("{HANDOVER_HELPERS}{DYNAMIC_SCRIPT}")
        .replace("@GPU@", GUEST_GPU)
        .replace("@AUDIO@", GUEST_GPU_AUDIO);
    let scenario = Scenario::new("handover_dynamic", Iommu::Intel, GPU_PAIR_DEVICES)
        .with_guest_script(&script)
        .with_timeout(Duration::from_secs(300));
    let Some(run) = harness::boot(&scenario) else {
        return;
    };
    let before = display(&run, "before");
    assert!(
        before.contains(&format!("driver {GUEST_GPU} bochs-drm override (null)")),
        "{before}"
    );
    for tag in ["dyn-prepare", "dyn-release"] {
        assert_eq!(
            guest_rc(&run, tag),
            "0",
            "{tag}: {}",
            guest_stderr(&run, tag)
        );
    }
    // no virtio-gpu driver in this guest: the framebuffer console is on the card, and
    // the kernel moves it to the VGA text console when the card's framebuffer goes
    let taken = display(&run, "dyn-taken");
    assert!(
        !taken.contains("bochs-drmdrmfb"),
        "the card's framebuffer is gone:\n{taken}"
    );
    assert!(
        taken.contains("module bochs"),
        "dynamic unloads nothing:\n{taken}"
    );
    for f in [GUEST_GPU, GUEST_GPU_AUDIO] {
        assert!(
            taken.contains(&format!("driver {f} vfio-pci override vfio-pci")),
            "{f}:\n{taken}"
        );
    }
    assert_eq!(display(&run, "dyn-back"), before);
    assert_eq!(display(&run, "bare-dyn-back"), before);
    let phases = hook_runs(&run);
    for want in ["dyn prepare begin ok", "dyn release end ok"] {
        assert!(phases.iter().any(|p| p == want), "{want} in {phases:?}");
    }
    compare_times(
        &run,
        &[
            ("dynamic handover", "dyn-prepare", "bare-dyn-take"),
            ("dynamic give-back", "dyn-release", "bare-dyn-back"),
        ],
    );
}

// --- benchmark (issue 20) ----------------------------------------------------------------

/// Issue 20's real-kernel benchmark (see `realkernel/bench.rs` and `benches/bind-realkernel.sh`):
/// exliar's bind, unbind and dynamic handover of the gpu_pair card against the bare sysfs
/// writes of the same operations, interleaved in one boot. Reports the ratios; asserts
/// only that every operation worked and the kernel ended as it began.
/// `EXLIAR_BENCH_CYCLES` (default 5) sets the number of cycles.
#[test]
fn bench_bind_handover() {
    let cycles: u32 = std::env::var("EXLIAR_BENCH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let script = realkernel::bench::SCRIPT
        .replace("@GPU@", GUEST_GPU)
        .replace("@AUDIO@", GUEST_GPU_AUDIO)
        .replace("@CYCLES@", &cycles.to_string())
        .replace(
            "@AFTERWORK@",
            if std::env::var_os("EXLIAR_BENCH_AFTER_WORK").is_some() {
                "1"
            } else {
                "0"
            },
        );
    let scenario = bind_scenario("bench_bind_handover", GPU_PAIR_DEVICES, &script)
        .with_timeout(Duration::from_secs(120 + 30 * u64::from(cycles)));
    let Some(run) = harness::boot(&scenario) else {
        return;
    };
    // a program holding the card's DRM node: the take is refused and names it, from
    // DRM's own client list (debugfs)
    let read = |f: &str| std::fs::read_to_string(run.out.join(f)).unwrap_or_default();
    let holder = read("drm-holder.pid").trim().to_string();
    assert!(
        read("drm-clients-busy.txt").contains(&format!(" {holder} ")),
        "DRM lists the holder {holder}: {}",
        read("drm-clients-busy.txt")
    );
    assert_eq!(
        read("busy-prepare.rc").trim(),
        "1",
        "{}",
        read("busy-prepare.stderr")
    );
    assert!(
        read("busy-prepare.stderr")
            .contains(&format!("process {holder} (sleep) holds /dev/dri/card")),
        "{}",
        read("busy-prepare.stderr")
    );
    let samples = realkernel::bench::read(&run.out);
    let stderr = std::fs::read_to_string(run.out.join("bench.stderr")).unwrap_or_default();
    assert_eq!(
        samples.iter().filter(|s| s.tag == "bind").count(),
        cycles as usize,
        "every cycle ran: {samples:?}"
    );
    for s in &samples {
        assert_eq!(s.rc, 0, "{} failed: {stderr}", s.tag);
    }
    assert_eq!(
        KernelState::read(&run.out, "after").bindings(),
        KernelState::read(&run.out, "before").bindings(),
        "every function back on its driver"
    );
    // the hook's own step times of the last prepare and release (exliar's log)
    let status: serde_json::Value = std::fs::read_to_string(run.out.join("hooks-status.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let runs = status["last_runs"].as_array().cloned().unwrap_or_default();
    for r in runs.iter().filter(|r| r["domain"] == "dyn").rev().take(2) {
        let steps: Vec<String> = r["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| {
                format!(
                    "{} {:.1} ms",
                    x["what"].as_str().unwrap_or(""),
                    x["secs"].as_f64().unwrap_or(0.0) * 1e3
                )
            })
            .collect();
        let line = format!(
            "{}: hook {} inside exliar: {:.1} ms: {}",
            run.name,
            r["phase"].as_str().unwrap_or(""),
            r["secs"].as_f64().unwrap_or(0.0) * 1e3,
            steps.join("; ")
        );
        harness::say(&line);
    }
    // exliar's own phase times (-vv) of three binds and unbinds, for the notes
    for l in read("phases.txt").lines() {
        harness::say(&format!("{}: phases: {l}", run.name));
    }
    for line in realkernel::bench::report(&samples) {
        let line = format!("{}: {line}", run.name);
        harness::say(&line);
        harness::record_time(&line);
    }
}
