//! Real-tools tier: `exliar apply --target ROOT` on a debootstrapped Debian 12 root
//! with Debian's kernel, exliar running the real generator in it (`update-initramfs`,
//! or `dracut` where initramfs-tools is purged), and the images checked with the
//! generators' own listers. Hardware comes from `exliar snapshot`s taken in the
//! real-kernel tier's `gpu_pair` and `identical` guests (tests/realtools/hosts/), so
//! the addresses are those the QEMU guests have. See tests/realtools/README.md.

#[allow(dead_code)] // the tier's modules, partly used here
mod realkernel {
    #[path = "../realkernel/harness.rs"]
    pub mod harness;
    #[path = "../realkernel/initramfs.rs"]
    pub mod initramfs;
    #[path = "../realkernel/kernel.rs"]
    pub mod kernel;
    #[path = "../realkernel/qemu.rs"]
    pub mod qemu;
    #[path = "../realkernel/transport.rs"]
    pub mod transport;
    #[path = "../realkernel/truth.rs"]
    pub mod truth;
}
mod realtools {
    #[path = "images.rs"]
    pub mod images;
    #[path = "root.rs"]
    pub mod root;
}

use std::path::{Path, PathBuf};

use realkernel::harness::{self, say};
use realtools::images::{self, has_module, list_image};
use realtools::root::{self, BaseRoot, Flavour};

const EARLY_CONF: &str = "etc/modprobe.d/00-exliar-vfio.conf";
const IDS_CONF: &str = "etc/modprobe.d/zz-exliar-vfio-ids.conf";
const EARLY_BIND: &str = "usr/lib/exliar/vfio-early-bind";
const VFIO_MODULES: &[&str] = &["vfio", "vfio_pci", "vfio_iommu_type1"];

/// The prepared root, or `None` (skip message printed) when this host cannot make it.
fn base(flavour: Flavour, test: &str) -> Option<BaseRoot> {
    let skip = |why: String| {
        let msg = format!(
            "realtools test `{test}` cannot run here: {why}. Install the packages in \
             tests/realtools/apt-packages.txt and run as root (see tests/realtools/README.md)."
        );
        assert!(!harness::in_ci(), "{msg} (CI is set, so this is a failure)");
        say(&format!("SKIP: {msg}"));
    };
    if let Err(u) = root::host_ready() {
        skip(u.0);
        return None;
    }
    let kernel = match harness::kernel() {
        Ok(k) => k,
        Err(why) => {
            skip(why);
            return None;
        }
    };
    match root::prepare(kernel, flavour) {
        Ok(Ok(b)) => Some(b),
        Ok(Err(u)) => {
            skip(u.0);
            None
        }
        Err(e) => panic!("preparing the Debian root: {e:#}"),
    }
}

fn hosts(name: &str, tag: &str) -> PathBuf {
    let tar = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/realtools/hosts")
        .join(format!("{name}.tar"));
    let dir = root::cache_dir().join("runs").join(tag).join("hw");
    images::unpack_snapshot(&tar, &dir);
    dir
}

fn read(target: &Path, rel: &str) -> String {
    std::fs::read_to_string(target.join(rel)).unwrap_or_else(|e| panic!("{rel} in the target: {e}"))
}

/// apply → the regenerated image holds the vfio modules and exliar's files, byte for
/// byte as in the target → rollback → the regenerated image holds none of exliar's files.
fn apply_and_rollback(flavour: Flavour, hw: &str, tag: &str) {
    let Some(base) = base(flavour, tag) else {
        return;
    };
    let hw_dir = hosts(hw, tag);
    let target = images::work_root(&base, tag);
    let before = list_image(&base, &target);
    for f in [EARLY_CONF, IDS_CONF, EARLY_BIND] {
        assert!(
            !before.iter().any(|p| p == f),
            "{f} in the image before apply"
        );
    }

    let journal = images::apply(&hw_dir, &target, "0000:02:00.0", tag);
    let ran = images::commands_ran(&journal);
    let expected = match flavour {
        Flavour::InitramfsTools => "update-initramfs -u -k all",
        Flavour::Dracut => "dracut -f --regenerate-all",
    };
    assert_eq!(
        ran,
        vec![expected.to_owned()],
        "commands exliar ran: {journal:#}"
    );

    let listing = list_image(&base, &target);
    let mut missing: Vec<String> = VFIO_MODULES
        .iter()
        .filter(|m| !has_module(&listing, m))
        .map(|m| format!("module {m}"))
        .collect();
    let mut want_files = vec![EARLY_CONF];
    match hw {
        // distinct ids: vfio-pci claims them by id
        "gpu_pair" => want_files.push(IDS_CONF),
        // identical cards: by address, from the early-bind script
        "identical" => want_files.push(EARLY_BIND),
        _ => unreachable!(),
    }
    for f in &want_files {
        if target.join(f).exists() {
            if listing.iter().any(|p| p == f) {
                let in_image = images::image_file(&base, &target, f);
                assert_eq!(in_image, read(&target, f), "{f}: image differs from target");
            } else {
                missing.push(f.to_string());
            }
        } else if *f != EARLY_CONF || hw == "gpu_pair" {
            panic!("exliar did not write {f} into the target: {journal:#}");
        }
    }
    if hw == "identical" {
        assert!(
            !target.join(IDS_CONF).exists(),
            "identical cards must not be claimed by id (the twin would go too)"
        );
        let script = read(&target, EARLY_BIND);
        assert!(
            script.contains("0000:02:00.0"),
            "early-bind script names the GPU:\n{script}"
        );
        assert!(
            !script.contains("0000:01:00.0"),
            "early-bind script must not name the twin:\n{script}"
        );
    }
    assert!(
        missing.is_empty(),
        "the {flavour:?} image lacks {missing:?}; it has:\n{}",
        listing
            .iter()
            .filter(|p| p.contains("vfio") || p.contains("exliar") || p.contains("modprobe"))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );

    let rolled = images::rollback(&target, tag);
    let ran = images::commands_ran(&rolled);
    assert!(
        ran.iter().any(|c| c == expected),
        "rollback ran {ran:?}, expected {expected}"
    );
    let _ = std::fs::remove_dir_all(target.join("tmp/exliar-unpacked"));
    let after = list_image(&base, &target);
    let left: Vec<&String> = after.iter().filter(|p| p.contains("exliar")).collect();
    assert!(
        left.is_empty(),
        "exliar's files still in the image after rollback: {left:?}"
    );
    for f in [EARLY_CONF, IDS_CONF, EARLY_BIND] {
        assert!(
            !target.join(f).exists(),
            "{f} still in the target after rollback"
        );
    }
}

#[test]
fn initramfs_tools_gpu_pair() {
    apply_and_rollback(
        Flavour::InitramfsTools,
        "gpu_pair",
        "initramfs_tools_gpu_pair",
    );
}

#[test]
fn initramfs_tools_identical() {
    apply_and_rollback(
        Flavour::InitramfsTools,
        "identical",
        "initramfs_tools_identical",
    );
}

#[test]
fn dracut_gpu_pair() {
    apply_and_rollback(Flavour::Dracut, "gpu_pair", "dracut_gpu_pair");
}

#[test]
fn dracut_identical() {
    apply_and_rollback(Flavour::Dracut, "identical", "dracut_identical");
}
