//! Driver and accelerator-stack detection (`src/host/stacks.rs`) on the
//! fixture hosts that carry driver facts, on bad input, and on real device
//! nodes made under a temporary root.

mod common;

use std::path::Path;

use common::*;
use exliar::host::HostRoot;
use exliar::host::stacks::{self, GpuStack, Stacks};
use exliar::host::sysfs::{load_pci_ids, read_inventory};

fn read(root: &Path) -> Stacks {
    let host = HostRoot::new(root);
    let inv = read_inventory(&host, &load_pci_ids(&host)).expect("inventory");
    let a = exliar::analyze::analyze(&inv);
    stacks::read(&host, &a.gpus)
}

fn gpu<'a>(s: &'a Stacks, addr: &str) -> &'a GpuStack {
    s.gpu(&addr.parse().expect("address"))
        .unwrap_or_else(|| panic!("no GPU {addr}"))
}

fn node<'a>(g: &'a GpuStack, role: &str) -> &'a stacks::DevNode {
    g.nodes
        .iter()
        .find(|n| n.role == role)
        .unwrap_or_else(|| panic!("no {role} node in {:?}", g.nodes))
}

#[test]
fn nvidia_proprietary_and_vfio() {
    let s = read(&host("hw28-truenas-dual-t400-nvidia-vfio"));
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    let g = gpu(&s, "0000:65:00.0");
    let d = g.driver.as_ref().expect("driver");
    assert_eq!(d.name, "nvidia");
    // Debian's module name, behind the PCI driver `nvidia`.
    assert_eq!(d.module.as_deref(), Some("nvidia_current"));
    assert_eq!(d.flavour.as_deref(), Some("proprietary"));
    assert_eq!(d.version.as_deref(), Some("535.216.01"));
    let nv = g.nvidia.as_ref().expect("nvidia facts");
    assert_eq!(nv.minor, Some(0));
    assert!(nv.uuid.as_deref().is_some_and(|u| u.starts_with("GPU-")));
    let n = node(g, "nvidia-gpu");
    assert_eq!(
        (n.path.as_str(), n.major, n.minor),
        ("/dev/nvidia0", Some(195), Some(0))
    );
    assert!(n.present);
    let r = node(g, "drm-render");
    assert_eq!(r.path, "/dev/dri/renderD128");
    assert_eq!((r.mode.as_deref(), r.gid), (Some("0660"), Some(105)));
    assert_eq!(g.best.stack, "cuda");
    let roles: Vec<&str> = s.shared_nodes.iter().map(|n| n.role.as_str()).collect();
    for want in [
        "nvidiactl",
        "nvidia-uvm",
        "nvidia-uvm-tools",
        "nvidia-modeset",
        "nvidia-cap",
        "vfio-container",
    ] {
        assert!(roles.contains(&want), "{want} missing from {roles:?}");
    }
    let u = &s.userspace.nvidia;
    assert_eq!(u.cuda_driver_version.as_deref(), Some("535.216.01"));
    assert!(
        u.libraries
            .iter()
            .any(|l| l.ends_with("/libnvidia-ml.so.535.216.01"))
    );
    assert_eq!(u.binaries, vec!["/usr/bin/nvidia-smi".to_string()]);
    assert_eq!(
        u.firmware,
        vec!["/lib/firmware/nvidia/535.216.01".to_string()]
    );
    assert_eq!(
        u.icds,
        vec!["/usr/share/vulkan/icd.d/nvidia_icd.json".to_string()]
    );

    // The twin on vfio-pci: no group in this dump, so no /dev/vfio/N.
    let v = gpu(&s, "0000:17:00.0");
    assert_eq!(v.driver.as_ref().map(|d| d.name.as_str()), Some("vfio-pci"));
    assert_eq!(v.best.stack, "cpu");
    assert!(v.nodes.is_empty());
    // The BMC's ast: a card node, no render node, no stack.
    let a = gpu(&s, "0000:03:00.0");
    assert_eq!(node(a, "drm-card").path, "/dev/dri/card0");
    assert_eq!(a.best.stack, "cpu");
}

#[test]
fn nvidia_open_modules() {
    let s = read(&host("drv-nvidia-open-rtx3060"));
    let g = gpu(&s, "0000:2d:00.0");
    let d = g.driver.as_ref().expect("driver");
    assert_eq!(d.flavour.as_deref(), Some("open"));
    assert_eq!(d.version.as_deref(), Some("550.54.14"));
    assert_eq!(d.license.as_deref(), Some("Dual MIT/GPL"));
    assert_eq!(g.best.stack, "cuda");
    assert!(g.best.reason.contains("open"), "{}", g.best.reason);
}

#[test]
fn amdgpu_kfd_i915_and_vfio_group() {
    let s = read(&host("hw17-alderlake-asus-rx6700xt-rx550-vfio"));
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    let amd = gpu(&s, "0000:03:00.0");
    let k = amd.kfd.as_ref().expect("kfd node");
    assert_eq!(
        (k.node, k.gpu_id, k.drm_render_minor),
        (1, 48476, Some(129))
    );
    assert_eq!(node(amd, "drm-render").minor, Some(129));
    assert_eq!(amd.best.stack, "rocm");
    assert!(s.shared_nodes.iter().any(|n| n.path == "/dev/kfd"));
    assert_eq!(s.userspace.rocm[0].version.as_deref(), Some("6.1.2-119"));
    let intel = gpu(&s, "0000:00:02.0");
    assert_eq!(intel.best.stack, "vulkan");
    let vfio = gpu(&s, "0000:04:00.0");
    let n = node(vfio, "vfio-group");
    assert_eq!(
        (n.path.as_str(), n.present, n.mode.as_deref()),
        ("/dev/vfio/23", true, Some("0600"))
    );
    assert_eq!(vfio.best.stack, "cpu");
}

#[test]
fn i915_level_zero_and_nouveau() {
    let s = read(&host("hw18-asrock-z370-i5-9400-gt1030-uhd630"));
    let g = gpu(&s, "0000:00:02.0");
    assert_eq!(g.best.stack, "oneapi");
    assert_eq!(
        s.userspace.level_zero.loader.len(),
        2,
        "file and soname link"
    );
    // The GT 1030 has no driver in that dump.
    let nv = gpu(&s, "0000:01:00.0");
    assert!(nv.driver.is_none());
    assert_eq!(nv.best.stack, "cpu");

    let s = read(&host("drv-nouveau-gt1030"));
    let g = gpu(&s, "0000:01:00.0");
    assert_eq!(g.driver.as_ref().map(|d| d.name.as_str()), Some("nouveau"));
    assert!(g.nvidia.is_none());
    assert_eq!(g.best.stack, "vulkan");
}

/// A GPU on `nvidia` whose driver files are garbage or unreadable: fields
/// absent, warnings, and `scan` still succeeds with a valid document.
#[test]
fn bad_driver_files_give_warnings() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = tmp.path();
    let dev = r.join("sys/devices/pci0000:00/0000:01:00.0");
    std::fs::create_dir_all(&dev).expect("mkdir");
    std::fs::create_dir_all(r.join("sys/bus/pci/devices")).expect("mkdir");
    std::os::unix::fs::symlink(
        "../../../devices/pci0000:00/0000:01:00.0",
        r.join("sys/bus/pci/devices/0000:01:00.0"),
    )
    .expect("link");
    std::fs::write(dev.join("class"), "0x030000\n").expect("w");
    std::fs::write(dev.join("vendor"), "0x10de\n").expect("w");
    std::fs::write(dev.join("device"), "0x2487\n").expect("w");
    std::os::unix::fs::symlink("../../../bus/pci/drivers/nvidia", dev.join("driver"))
        .expect("link");
    let w = |rel: &str, bytes: &[u8]| {
        let p = r.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, bytes).expect("w");
    };
    w("proc/driver/nvidia/version", b"\xff\xfe garbage\n");
    // A folder where the file should be: unreadable.
    std::fs::create_dir_all(r.join("proc/driver/nvidia/gpus/0000:01:00.0/information"))
        .expect("mkdir");
    w("sys/module/nvidia/version", b"550\n54\n14\n");
    w(
        "sys/devices/pci0000:00/0000:01:00.0/drm/card0/dev",
        b"x:y\n",
    );
    w(
        "sys/class/kfd/kfd/topology/nodes/1/properties",
        b"gpu_id 5\n",
    );
    w("etc/ld.so.cache", b"\x00\x01\x02/usr/lib/libcuda.so.1\x00");
    w("usr/share/vulkan/icd.d/broken.json", b"{not json");

    let s = read(r);
    let g = gpu(&s, "0000:01:00.0");
    let d = g.driver.as_ref().expect("driver");
    assert_eq!((d.flavour.as_ref(), d.version.as_ref()), (None, None));
    assert!(g.nvidia.is_none());
    let card = node(g, "drm-card");
    assert_eq!((card.major, card.present), (None, false));
    assert_eq!(g.best.stack, "cpu");
    let text: Vec<String> = s.warnings.iter().map(|w| w.to_string()).collect();
    let has = |needle: &str| text.iter().any(|w| w.contains(needle));
    assert!(
        has("proc/driver/nvidia/version: no \"NVRM version:\""),
        "{text:?}"
    );
    assert!(has("information: unreadable"), "{text:?}");
    assert!(has("sys/module/nvidia/version: not a version"), "{text:?}");
    assert!(has("card0/dev: not MAJOR:MINOR"), "{text:?}");
    assert!(has("without a readable location_id"), "{text:?}");
    assert!(has("broken.json: not JSON"), "{text:?}");
    // libcuda.so.1 named by the cache but absent: not listed.
    assert!(s.userspace.nvidia.libraries.is_empty());

    let out = exliar()
        .args(["scan", "--json", "--root"])
        .arg(r)
        .output()
        .expect("scan");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    assert_valid(&schema("inventory-1.schema.json"), &doc, "bad driver files");
    assert!(doc["gpus"][0]["stack"]["driver"]["version"].is_null());
    same_stacks_as_scan(r, &s);
}

/// `scan` reads the GPU-independent probes on a second thread: its report
/// holds what `stacks::read` finds, and the stack warnings (host-wide
/// first, then each GPU's) last in the same order.
fn same_stacks_as_scan(root: &Path, s: &Stacks) {
    let out = exliar()
        .args(["scan", "--json", "--root"])
        .arg(root)
        .output()
        .expect("scan");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    let want = |v: serde_json::Result<serde_json::Value>| v.expect("to JSON");
    let shown = root.display();
    assert_eq!(
        doc["userspace"],
        want(serde_json::to_value(&s.userspace)),
        "{shown}"
    );
    assert_eq!(
        doc["shared_nodes"],
        want(serde_json::to_value(&s.shared_nodes)),
        "{shown}"
    );
    let warnings = doc["warnings"].as_array().expect("warnings");
    let tail = &warnings[warnings.len().saturating_sub(s.warnings.len())..];
    assert_eq!(
        serde_json::Value::Array(tail.to_vec()),
        want(serde_json::to_value(&s.warnings)),
        "{shown}"
    );
}

#[test]
fn scan_reports_what_read_finds() {
    for h in [
        "hw28-truenas-dual-t400-nvidia-vfio",
        "drv-nvidia-open-rtx3060",
        "hw17-alderlake-asus-rx6700xt-rx550-vfio",
        "hw18-asrock-z370-i5-9400-gt1030-uhd630",
    ] {
        let root = host(h);
        same_stacks_as_scan(&root, &read(&root));
    }
}

/// A real device node (made with mknod under a temporary root, where the
/// test may) is stat'ed as it is, and a snapshot records it in
/// `exliar-nodes.txt` so that the snapshot reads back the same.
#[test]
fn real_nodes_and_their_snapshot() {
    use rustix::fs::{CWD, FileType, Mode, makedev, mknodat};
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = tmp.path().join("root");
    std::fs::create_dir_all(r.join("dev/dri")).expect("mkdir");
    let path = r.join("dev/dri/renderD128");
    if let Err(e) = mknodat(
        CWD,
        &path,
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o640),
        makedev(226, 128),
    ) {
        eprintln!("skipping: mknod is not allowed here ({e})");
        return;
    }
    // mknod's mode is masked by the umask: set it exactly.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o640))
        .expect("chmod");
    let host = HostRoot::recording(&r);
    let st = host
        .stat_node("dev/dri/renderD128")
        .expect("stat")
        .expect("a node");
    assert_eq!(
        (st.kind, st.major, st.minor, st.mode),
        ('c', 226, 128, 0o640)
    );
    assert_eq!(host.stat_node("dev/dri/renderD129").expect("stat"), None);
    // Only nodes: a plain file on a root with no table is no node.
    std::fs::write(r.join("dev/dri/card0"), b"").expect("w");
    assert_eq!(host.stat_node("dev/dri/card0").expect("stat"), None);

    let ids = exliar::host::PciIds::default();
    let snap = tmp.path().join("snap");
    exliar::host::snapshot::write(&host, &ids, &snap, false).expect("snapshot");
    let table = std::fs::read_to_string(snap.join(exliar::host::NODES_FILE)).expect("table");
    assert!(
        table.contains("dev/dri/renderD128 c 226:128 0640"),
        "{table}"
    );
    let back = HostRoot::new(&snap);
    assert_eq!(
        back.stat_node("dev/dri/renderD128").expect("stat"),
        Some(st)
    );
}
