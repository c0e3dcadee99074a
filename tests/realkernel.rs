//! Real-kernel tier: boots Debian's stock kernel under QEMU (TCG) with emulated GPUs,
//! IOMMUs and bridges, runs exliar inside the guest and checks its JSON against what
//! the kernel itself says. See tests/realkernel/README.md.
//!
//! Each scenario is one test function: describe the machine, `harness::boot` it, assert.

mod realkernel {
    pub mod checks;
    pub mod harness;
    pub mod initramfs;
    pub mod kernel;
    pub mod qemu;
    pub mod transport;
    pub mod truth;
}

use realkernel::checks;
use realkernel::harness::{self, GuestRun, Iommu, Scenario};

/// A "GPU" (VGA, fn0) with its "HDMI audio" (HDA + codec, fn1) in one slot behind a PCIe
/// root port (bus 02), an e1000e NIC (bus 03), and the host's own display (virtio-vga,
/// bus 01: SeaBIOS initialises it first, so it is the boot VGA device).
const GPU_PAIR_DEVICES: &str = "\
    -device pcie-root-port,id=rp1,bus=pcie.0,chassis=1,addr=0x2 \
    -device pcie-root-port,id=rp2,bus=pcie.0,chassis=2,addr=0x3 \
    -device pcie-root-port,id=rp3,bus=pcie.0,chassis=3,addr=0x4 \
    -device virtio-vga,bus=rp1 \
    -device VGA,bus=rp2,addr=0x0.0,multifunction=on \
    -device ich9-intel-hda,bus=rp2,addr=0x0.1 -device hda-duplex,audiodev=snd0 \
    -device e1000e,bus=rp3,romfile=";

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

/// Two identical display devices (two `-device VGA`, 1234:1111) on separate root ports.
const IDENTICAL_DEVICES: &str = "\
    -device pcie-root-port,id=rp1,bus=pcie.0,chassis=1,addr=0x2 \
    -device pcie-root-port,id=rp2,bus=pcie.0,chassis=2,addr=0x3 \
    -device VGA,bus=rp1 \
    -device VGA,bus=rp2";

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
