//! ROM images built here from the published layouts (PCI Firmware 3.0's
//! expansion ROM header and PCI Data Structure, the UEFI PCI option ROM
//! header), then checked.

use std::path::Path;

use super::*;
use crate::host::HostRoot;
use crate::host::kernel::{Kernel, KernelOp};
use crate::host::sim::{SimDevice, SimKernel, SimTree};
use crate::model::PciAddress;

use super::synth::{Img, PCIR_AT, good, nvflash_header, rom};

const NV: u16 = 0x10de;
const GTX1080: u16 = 0x1b80;
const OTHER: u16 = 0x1c03;
fn ids(r: &RomReport) -> Vec<&'static str> {
    r.findings.iter().map(|f| f.id).collect()
}

#[test]
fn good_legacy_and_uefi_rom_for_its_card() {
    let mut bytes = good();
    bytes.extend(std::iter::repeat_n(0xFF, 1024)); // padding after the last image
    let r = check(&bytes, Some((NV, GTX1080)));
    assert!(r.signature_ok);
    assert_eq!(r.ids_match, Some(true));
    assert!(r.has_legacy);
    assert!(r.has_uefi_gop);
    assert!(r.usable, "{:?}", r.findings);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.prefix_bytes, 0);
    assert_eq!(r.trailing_bytes, 1024);
    assert_eq!(r.size, 64 * 512 + 32 * 512 + 1024);
    assert_eq!(r.images.len(), 2);
    let (a, b) = (&r.images[0], &r.images[1]);
    assert_eq!(
        (a.offset, a.length, a.code_type),
        (0, 64 * 512, CodeType::X86)
    );
    assert_eq!((a.vendor, a.device, a.class_code), (NV, GTX1080, 0x030000));
    assert_eq!(a.checksum_ok, Some(true));
    assert!(!a.last && b.last);
    assert_eq!((b.offset, b.code_type), (64 * 512, CodeType::Uefi));
    let efi = b.efi.as_ref().expect("EFI header");
    assert!(efi.signature_ok && efi.runs_on_x64() && !efi.compressed);
    assert_eq!(
        (efi.machine, efi.subsystem_name),
        ("x64", "boot-service-driver")
    );
    // Without a card to compare, ids are not judged.
    let r = check(&good(), None);
    assert_eq!(r.ids_match, None);
    assert!(r.usable);
    // JSON: the schema, ids as 4 hex digits, class as 0x…, code types named.
    let v = serde_json::to_value(&r).expect("json");
    assert_eq!(v["schema"], "exliar.vbios/1");
    assert_eq!(v["images"][0]["vendor"], "10de");
    assert_eq!(v["images"][0]["class_code"], "0x030000");
    assert_eq!(v["images"][1]["code_type"], "uefi");
    assert_eq!(v["images"][1]["efi"]["machine_type"], "8664");
}

#[test]
fn bad_signature() {
    for (bytes, says) in [
        (vec![0u8; 4096], "all 4096 bytes are 0x00"),
        (vec![0xFFu8; 512], "all 512 bytes are 0xff"),
        (Vec::new(), "the file is empty"),
        (b"MZ this is a PE file, not a ROM".to_vec(), "no 0x55 0xAA"),
    ] {
        let r = check(&bytes, Some((NV, GTX1080)));
        assert!(!r.signature_ok);
        assert!(!r.usable && !r.has_legacy && !r.has_uefi_gop);
        assert!(r.images.is_empty());
        assert_eq!(r.ids_match, Some(false), "no image is for the card");
        assert_eq!(ids(&r), ["no-signature"]);
        assert!(
            r.findings[0].message.contains(says),
            "{}",
            r.findings[0].message
        );
        assert_eq!(strip(&bytes), None);
    }
}

#[test]
fn id_mismatch_and_device_lists() {
    let r = check(&good(), Some((NV, OTHER)));
    assert!(r.signature_ok && r.has_uefi_gop);
    assert_eq!(r.ids_match, Some(false));
    assert!(!r.usable);
    assert_eq!(ids(&r), ["id-mismatch", "id-mismatch"]);
    assert!(
        r.findings[0]
            .message
            .contains("10de:1b80, the card is 10de:1c03")
    );
    // Another vendor altogether.
    let r = check(&good(), Some((0x1002, GTX1080)));
    assert_eq!(r.ids_match, Some(false));
    // One image for another model: still a mismatch.
    let mixed = rom(&[Img::legacy(64), Img::uefi(32).ids(NV, OTHER).last()]);
    let r = check(&mixed, Some((NV, GTX1080)));
    assert_eq!(r.ids_match, Some(false));
    assert_eq!(ids(&r), ["id-mismatch"]);
    // A device list (PCIR 3.0) naming the card is a match.
    let mut a = Img::legacy(64);
    a.device_list = vec![0x1b81, OTHER];
    let mut b = Img::uefi(32).last();
    b.device_list = vec![OTHER];
    let listed = rom(&[a, b]);
    let r = check(&listed, Some((NV, OTHER)));
    assert_eq!(r.images[0].device_list, [0x1b81, OTHER]);
    assert_eq!(r.ids_match, Some(true));
    assert!(r.usable, "{:?}", r.findings);
}

#[test]
fn legacy_only_is_not_usable_and_says_why() {
    let bytes = rom(&[Img::legacy(64).last()]);
    let r = check(&bytes, Some((NV, GTX1080)));
    assert!(r.signature_ok && r.has_legacy);
    assert_eq!(r.ids_match, Some(true));
    assert!(!r.has_uefi_gop);
    assert!(!r.usable);
    assert_eq!(ids(&r), ["no-uefi"]);
    let f = &r.findings[0];
    assert_eq!(f.severity, Severity::Error);
    assert!(f.message.contains("OVMF cannot show"));
    assert!(f.remedy.contains("GOP") && f.remedy.contains("legacy BIOS"));
}

#[test]
fn uefi_only_is_usable_with_a_note() {
    let bytes = rom(&[Img::uefi(32).last()]);
    let r = check(&bytes, None);
    assert!(r.usable && !r.has_legacy);
    assert_eq!(ids(&r), ["no-legacy"]);
    assert_eq!(r.findings[0].severity, Severity::Note);
}

#[test]
fn prefixed_dump_is_found_and_stripped() {
    let mut bytes = nvflash_header();
    bytes.extend(good());
    let r = check(&bytes, Some((NV, GTX1080)));
    assert_eq!(r.prefix_bytes, 0x600);
    assert!(!r.signature_ok, "the file does not start with its image");
    assert!(!r.usable);
    assert!(r.has_legacy && r.has_uefi_gop);
    assert_eq!(r.ids_match, Some(true));
    assert_eq!(ids(&r), ["prefix"]);
    assert!(r.findings[0].remedy.contains("--strip"));
    assert_eq!(r.images[0].offset, 0x600);
    assert_eq!(r.images[1].offset, 0x600 + 64 * 512);
    let s = strip(&bytes).expect("a prefix to strip");
    assert_eq!(s, good());
    let r = check(&s, Some((NV, GTX1080)));
    assert!(r.usable && r.signature_ok && r.prefix_bytes == 0);
    assert_eq!(strip(&s), None, "nothing left to strip");
    assert_eq!(strip(&good()), None);
}

#[test]
fn truncated_images() {
    let full = good();
    // Cut inside the UEFI image.
    let cut = &full[..64 * 512 + 1000];
    let r = check(cut, Some((NV, GTX1080)));
    assert!(r.signature_ok && r.has_legacy);
    assert!(!r.has_uefi_gop, "a cut UEFI image is not loadable");
    assert!(!r.usable);
    assert!(r.images[1].truncated);
    assert_eq!(r.images[1].checksum_ok, None);
    assert!(ids(&r).contains(&"truncated"), "{:?}", ids(&r));
    // Cut inside the legacy image: its checksum is not judged.
    let r = check(&full[..4096], None);
    assert_eq!(r.images.len(), 1);
    assert!(r.images[0].truncated);
    assert_eq!(r.images[0].checksum_ok, None);
    assert_eq!(ids(&r)[0], "truncated");
    // Cut inside the second image's header.
    let r = check(&full[..64 * 512 + 0x10], None);
    assert_eq!(r.images.len(), 1);
    assert!(r.findings[0].message.contains("ends inside its header"));
    assert!(!r.usable);
}

#[test]
fn pcir_pointer_out_of_range() {
    let mut bytes = rom(&[Img::uefi(2).last()]);
    bytes[0x18..0x1A].copy_from_slice(&0xFFF0u16.to_le_bytes());
    let r = check(&bytes, None);
    assert!(!r.signature_ok && !r.usable);
    assert!(r.images.is_empty());
    assert_eq!(ids(&r)[0], "pcir-out-of-range");
    assert!(r.findings[0].message.contains("0xfff0"));
    // Inside the file, but no "PCIR" there.
    let mut bytes = rom(&[Img::uefi(2).last()]);
    bytes[0x18..0x1A].copy_from_slice(&0x100u16.to_le_bytes());
    let r = check(&bytes, None);
    assert_eq!(ids(&r)[0], "pcir-missing");
    // The first image's pointer is bad, the second is whole: the file
    // starts with a (damaged) image, not with a header to strip.
    let mut bytes = good();
    bytes[0x18..0x1A].copy_from_slice(&0xFFF0u16.to_le_bytes());
    let r = check(&bytes, None);
    assert_eq!((r.prefix_bytes, r.images.len()), (0, 0));
    assert_eq!(ids(&r)[0], "pcir-out-of-range");
    assert_eq!(strip(&bytes), None);
    // The second image's pointer is bad: the first is still reported.
    let mut bytes = good();
    bytes[64 * 512 + 0x18..64 * 512 + 0x1A].copy_from_slice(&0xFFFFu16.to_le_bytes());
    let r = check(&bytes, None);
    assert_eq!(r.images.len(), 1);
    assert!(r.signature_ok && !r.usable);
    assert!(ids(&r).contains(&"pcir-out-of-range"));
}

#[test]
fn chains_always_end() {
    // No image is marked last: the walk ends with the file.
    let bytes = rom(&[Img::legacy(64), Img::uefi(32)]);
    let r = check(&bytes, None);
    assert_eq!(r.images.len(), 2);
    assert_eq!(ids(&r), ["no-last-image"]);
    assert!(r.usable, "a warning only");
    // A length of 0 would loop on the same image forever.
    let mut bytes = rom(&[Img::legacy(64)]);
    bytes[PCIR_AT + 0x10..PCIR_AT + 0x12].copy_from_slice(&0u16.to_le_bytes());
    let r = check(&bytes, None);
    assert_eq!(r.images.len(), 1);
    assert_eq!(ids(&r)[0], "zero-length");
    // Many one-block images, none last: at most 64 are walked.
    let many: Vec<Img> = (0..100).map(|_| Img::uefi(1)).collect();
    let r = check(&rom(&many), None);
    assert_eq!(r.images.len(), 64);
    assert_eq!(ids(&r)[0], "too-many-images");
    // Not marked last and followed by something that is not an image.
    let mut bytes = rom(&[Img::legacy(64), Img::uefi(32)]);
    bytes.extend([0xFFu8; 512]);
    let r = check(&bytes, None);
    assert_eq!(ids(&r)[0], "chain-broken");
    assert!(!r.usable);
}

#[test]
fn checksum_and_efi_warnings() {
    let mut bytes = good();
    bytes[0x100] ^= 0x5A;
    let r = check(&bytes, None);
    assert_eq!(r.images[0].checksum_ok, Some(false));
    assert_eq!(ids(&r), ["checksum"]);
    assert!(r.usable, "OVMF does not check it");
    // A UEFI image for AArch64 only.
    let mut e = Img::uefi(32).last();
    e.machine = 0xAA64;
    let r = check(&rom(&[Img::legacy(64), e]), None);
    assert_eq!(ids(&r), ["efi-machine"]);
    assert_eq!(r.images[1].efi.as_ref().map(|e| e.machine), Some("aarch64"));
    // Code type 3 without the EFI signature: not a GOP.
    let mut bytes = good();
    bytes[64 * 512 + 4] = 0;
    let r = check(&bytes, None);
    assert!(!r.has_uefi_gop && !r.usable);
    assert!(ids(&r).contains(&"efi-signature") && ids(&r).contains(&"no-uefi"));
}

proptest::proptest! {
    #[test]
    fn check_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..4096)) {
        let r = check(&bytes, Some((NV, GTX1080)));
        proptest::prop_assert!(!r.usable || r.signature_ok);
        if let Some(s) = strip(&bytes) {
            proptest::prop_assert!(bytes.ends_with(&s) && s.len() < bytes.len());
        }
    }

    #[test]
    fn check_never_panics_on_damaged_roms(
        cut in 0usize..(96 * 512 + 0x700),
        flips in proptest::collection::vec((0usize..(96 * 512 + 0x700), proptest::num::u8::ANY), 0..8),
        prefixed in proptest::bool::ANY,
    ) {
        let mut bytes = if prefixed { nvflash_header() } else { Vec::new() };
        bytes.extend(good());
        for (at, v) in flips {
            if let Some(b) = bytes.get_mut(at) {
                *b = v;
            }
        }
        bytes.truncate(cut);
        let r = check(&bytes, None);
        proptest::prop_assert!(r.images.len() <= 64);
        if let Some(s) = strip(&bytes) {
            proptest::prop_assert!(bytes.ends_with(&s));
            proptest::prop_assert_eq!(check(&s, None).prefix_bytes, 0);
        }
    }
}

// --- dump through the simulated kernel ----------------------------------------

fn addr(s: &str) -> PciAddress {
    PciAddress::parse(s).expect("test address")
}

fn host_with_gpu(boot_vga: bool) -> (tempfile::TempDir, SimKernel, PciAddress) {
    let t = tempfile::tempdir().expect("tempdir");
    let gpu = addr("0000:01:00.0");
    let mut d = SimDevice::new(gpu, 0x030000, NV, GTX1080)
        .driver("nouveau")
        .group(1);
    if boot_vga {
        d = d.boot_vga();
    }
    SimTree::new()
        .device(d)
        .device(SimDevice::new(addr("0000:02:00.0"), 0x020000, 0x8086, 0x10d3).group(2))
        .build(t.path())
        .expect("tree");
    let k = SimKernel::new(t.path()).expect("sim");
    k.set_rom(gpu, good()).expect("rom");
    (t, k, gpu)
}

fn rom_writes(k: &SimKernel) -> Vec<(String, bool)> {
    k.ops()
        .into_iter()
        .filter_map(|o| match o.op {
            KernelOp::Write { path, value } if path.ends_with("rom") => {
                Some((value, o.error.is_none()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn dump_reads_and_leaves_the_rom_disabled() {
    let (t, k, gpu) = host_with_gpu(false);
    let host = HostRoot::new(t.path());
    let rel = "sys/bus/pci/devices/0000:01:00.0/rom";
    // Disabled: the read fails, as the kernel's EINVAL.
    let e = host.read_bytes(rel).expect_err("a disabled ROM reads");
    assert_eq!(e.source.kind(), std::io::ErrorKind::InvalidInput);
    let d = dump(&host, &k, gpu).expect("dump");
    assert_eq!(d.rom, good());
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!(k.rom_enabled(&gpu), Some(false));
    assert_eq!(
        rom_writes(&k),
        [("1\n".to_string(), true), ("0\n".to_string(), true)]
    );
    assert!(host.read_bytes(rel).is_err(), "disabled again");
    assert!(check(&d.rom, Some((NV, GTX1080))).usable);
}

#[test]
fn dump_disables_the_rom_after_a_failed_read() {
    let (t, k, gpu) = host_with_gpu(false);
    k.rom_read_fails(gpu);
    let host = HostRoot::new(t.path());
    let e = dump(&host, &k, gpu).expect_err("the read fails");
    assert!(matches!(e, VbiosError::Read { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("reading the ROM of 0000:01:00.0: "),
        "{e}"
    );
    assert_eq!(k.rom_enabled(&gpu), Some(false));
    assert_eq!(
        rom_writes(&k),
        [("1\n".to_string(), true), ("0\n".to_string(), true)]
    );
}

#[test]
fn dump_when_enabling_fails_writes_nothing_more() {
    let (t, k, gpu) = host_with_gpu(false);
    k.fail_on(gpu, "rom");
    let host = HostRoot::new(t.path());
    let e = dump(&host, &k, gpu).expect_err("enable fails");
    assert!(matches!(e, VbiosError::Enable { .. }), "{e}");
    // The simulation's error does not name the file; the real kernel
    // interface's does (once: the message adds no path).
    assert_eq!(
        e.to_string(),
        "enabling the ROM of 0000:01:00.0: injected: Input/output error (os error 5)"
    );
    assert!(
        std::error::Error::source(&e).is_none(),
        "the cause is said once"
    );
    assert_eq!(rom_writes(&k), [("1\n".to_string(), false)]);
    assert_eq!(k.rom_enabled(&gpu), Some(false));
}

#[test]
fn dump_says_when_the_rom_stays_enabled() {
    let (t, k, gpu) = host_with_gpu(false);
    k.fail_op(1); // the disable
    let host = HostRoot::new(t.path());
    let d = dump(&host, &k, gpu).expect("the ROM was read");
    assert_eq!(d.rom, good());
    assert_eq!(d.warnings.len(), 1);
    assert!(
        d.warnings[0].contains("could not be disabled again"),
        "{:?}",
        d.warnings
    );
    assert!(d.warnings[0].contains("echo 0 >"));
    assert_eq!(k.rom_enabled(&gpu), Some(true));
}

#[test]
fn dump_warns_about_the_boot_display() {
    let (t, k, gpu) = host_with_gpu(true);
    let host = HostRoot::new(t.path());
    let d = dump(&host, &k, gpu).expect("dump");
    assert_eq!(d.warnings.len(), 1);
    assert!(d.warnings[0].contains("boot display"), "{:?}", d.warnings);
    assert_eq!(k.rom_enabled(&gpu), Some(false));
}

#[test]
fn dump_without_a_rom_or_a_device() {
    let (t, k, _) = host_with_gpu(false);
    let host = HostRoot::new(t.path());
    let nic = addr("0000:02:00.0");
    let e = dump(&host, &k, nic).expect_err("no ROM");
    assert_eq!(
        e.to_string(),
        format!(
            "PCI device 0000:02:00.0 has no option ROM exposed (no {})",
            t.path()
                .join("sys/bus/pci/devices/0000:02:00.0/rom")
                .display()
        )
    );
    let e = dump(&host, &k, addr("0000:09:00.0")).expect_err("no device");
    assert!(
        e.to_string().starts_with("no PCI device 0000:09:00.0"),
        "{e}"
    );
    assert!(k.ops().is_empty(), "nothing was written");
}

#[test]
fn sim_rom_store_follows_the_kernel() {
    let (t, k, gpu) = host_with_gpu(false);
    let rel = Path::new("sys/bus/pci/devices/0000:01:00.0/rom");
    // "0" without a newline enables, as pci_write_rom does.
    k.write_attr(rel, "0").expect("write");
    assert_eq!(k.rom_enabled(&gpu), Some(true));
    assert_eq!(
        HostRoot::new(t.path()).read_bytes(rel).expect("read"),
        good()
    );
    k.write_attr(rel, "0\n").expect("write");
    assert_eq!(k.rom_enabled(&gpu), Some(false));
    // A device without a ROM has no `rom` to write.
    assert!(
        k.write_attr(Path::new("sys/bus/pci/devices/0000:02:00.0/rom"), "1\n")
            .is_err()
    );
}

#[test]
fn a_permission_error_says_root_is_needed() {
    assert_eq!(
        sysfs::permission_hint(std::io::ErrorKind::PermissionDenied),
        " (reading a device's ROM needs root: run it with sudo)"
    );
    assert_eq!(sysfs::permission_hint(std::io::ErrorKind::Other), "");
}
