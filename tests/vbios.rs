//! `exliar vbios check|dump` on synthetic ROM files written here (built from
//! the published layouts by `exliar::vbios::synth`): golden human and JSON
//! output, the schema, `--strip`, `--for`, and the refusals.

mod common;

use std::path::Path;

use common::*;
use exliar::host::sim::{SimDevice, SimTree};
use exliar::model::PciAddress;
use exliar::vbios::synth::{self, Img};

/// Runs `exliar vbios ARGS` in `dir`, file names relative to it.
fn vbios(dir: &Path, args: &[&str]) -> std::process::Output {
    exliar()
        .current_dir(dir)
        .arg("vbios")
        .args(args)
        .output()
        .expect("run")
}

/// The good GTX 1080-like ROM, and an nvflash dump of a legacy-only ROM
/// for another model.
fn files() -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    std::fs::write(t.path().join("good.rom"), synth::good()).expect("write");
    let mut bad = synth::nvflash_header();
    bad.extend(synth::rom(&[Img::legacy(64).ids(0x10de, 0x1c03).last()]));
    std::fs::write(t.path().join("nvflash-legacy.rom"), bad).expect("write");
    t
}

#[test]
fn check_golden_human_and_json() {
    let t = files();
    let schema = schema("vbios-1.schema.json");
    for (name, exit) in [("good", 0), ("nvflash-legacy", 1)] {
        let file = format!("{name}.rom");
        let o = vbios(t.path(), &["check", &file, "--for", "10de:1b80"]);
        assert_eq!(o.status.code(), Some(exit), "{}", stderr(&o));
        insta::assert_snapshot!(format!("vbios-check-{name}"), stdout(&o));
        let o = vbios(t.path(), &["check", &file, "--for", "10de:1b80", "--json"]);
        assert_eq!(o.status.code(), Some(exit), "{}", stderr(&o));
        let doc = json(&o);
        assert_valid(&schema, &doc, &file);
        assert_eq!(doc["usable"], exit == 0);
        insta::assert_snapshot!(format!("vbios-check-json-{name}"), stdout(&o));
    }
}

#[test]
fn strip_writes_a_usable_copy_once() {
    let t = files();
    let o = vbios(
        t.path(),
        &["check", "nvflash-legacy.rom", "--strip", "stripped.rom"],
    );
    // The copy is checked: no prefix now, but still no UEFI image.
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("wrote stripped.rom"), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("ROM stripped.rom: 32768 bytes"), "{out}");
    assert!(!out.contains("before the first image"), "{out}");
    let orig = std::fs::read(t.path().join("nvflash-legacy.rom")).expect("read");
    let copy = std::fs::read(t.path().join("stripped.rom")).expect("read");
    assert_eq!(copy, orig[0x600..]);
    // Not again without --force; never through a link.
    let o = vbios(
        t.path(),
        &["check", "nvflash-legacy.rom", "--strip", "stripped.rom"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("stripped.rom: exists; --force replaces it"));
    std::os::unix::fs::symlink("good.rom", t.path().join("link.rom")).expect("link");
    let o = vbios(
        t.path(),
        &[
            "check",
            "nvflash-legacy.rom",
            "--strip",
            "link.rom",
            "--force",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("symbolic link"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(t.path().join("good.rom")).expect("read"),
        synth::good()
    );
    // Nothing to strip: nothing written, the file itself checked.
    let o = vbios(t.path(), &["check", "good.rom", "--strip", "none.rom"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("nothing to strip"));
    assert!(!t.path().join("none.rom").exists());
}

#[test]
fn for_an_address_reads_the_cards_ids() {
    let t = files();
    let root = tempfile::tempdir().expect("tempdir");
    let gpu = PciAddress::parse("0000:01:00.0").expect("address");
    SimTree::new()
        .device(SimDevice::new(gpu, 0x030000, 0x10de, 0x1c03).group(1))
        .build(root.path())
        .expect("tree");
    let r = root.path().to_str().expect("utf-8");
    let o = vbios(
        t.path(),
        &[
            "--root", r, "check", "good.rom", "--for", "01:00.0", "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let doc = json(&o);
    assert_eq!(doc["expected"]["device"], "1c03");
    assert_eq!(doc["ids_match"], false);
    // No such device; a --for that is neither form.
    let o = vbios(
        t.path(),
        &["--root", r, "check", "good.rom", "--for", "02:00.0"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no PCI device 0000:02:00.0"),
        "{}",
        stderr(&o)
    );
    let o = vbios(t.path(), &["check", "good.rom", "--for", "gtx1080"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("neither a PCI address nor VENDOR:DEVICE"));
}

#[test]
fn dump_refusals_touch_nothing() {
    let t = files();
    let root = tempfile::tempdir().expect("tempdir");
    let gpu = PciAddress::parse("0000:01:00.0").expect("address");
    SimTree::new()
        .device(SimDevice::new(gpu, 0x030000, 0x10de, 0x1b80).group(1))
        .build(root.path())
        .expect("tree");
    let r = root.path().to_str().expect("utf-8");
    // The output exists: refused before the device is touched.
    let o = vbios(
        t.path(),
        &["--root", r, "dump", "01:00.0", "-o", "good.rom"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("good.rom: exists; --force replaces it"));
    // The device has no ROM.
    let o = vbios(t.path(), &["--root", r, "dump", "01:00.0", "-o", "new.rom"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("PCI device 0000:01:00.0 has no option ROM exposed"),
        "{}",
        stderr(&o)
    );
    assert!(!t.path().join("new.rom").exists());
}

#[test]
fn file_names_reach_the_terminal_escaped() {
    let t = tempfile::tempdir().expect("tempdir");
    let name = "rom\x1b]0;pwned\x07.bin";
    std::fs::write(t.path().join(name), synth::good()).expect("write");
    let o = vbios(t.path(), &["check", name]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(!out.contains('\x1b'), "{out}");
    assert!(out.contains("\\u{1b}"), "{out}");
}

/// Real option ROMs when this machine has them (Debian's ipxe-qemu and
/// seabios packages; not committed): iPXE's combined ROMs carry a legacy
/// and a UEFI x64 image and a device list, SeaBIOS's VGA BIOS is legacy
/// only, and its ISA VGA BIOS has no PCI data structure at all.
#[test]
fn real_roms_when_installed() {
    let e1000 = Path::new("/usr/lib/ipxe/qemu/efi-e1000.rom");
    let stdvga = Path::new("/usr/share/seabios/vgabios-stdvga.bin");
    let isavga = Path::new("/usr/share/seabios/vgabios-isavga.bin");
    if e1000.exists() {
        let bytes = std::fs::read(e1000).expect("read");
        let r = exliar::vbios::check(&bytes, Some((0x8086, 0x100e)));
        assert!(
            r.usable && r.signature_ok && r.has_legacy && r.has_uefi_gop,
            "{r:?}"
        );
        assert_eq!(r.ids_match, Some(true));
        assert_eq!(r.images.len(), 2);
        assert_eq!(r.images[0].checksum_ok, Some(true));
        let efi = r.images[1].efi.as_ref().expect("EFI header");
        assert!(efi.signature_ok && efi.runs_on_x64());
        assert!(r.images[1].last);
        assert_eq!(
            r.images.iter().map(|i| i.length).sum::<usize>() + r.trailing_bytes,
            bytes.len()
        );
    } else {
        eprintln!("skipping: no {}", e1000.display());
    }
    if stdvga.exists() {
        let bytes = std::fs::read(stdvga).expect("read");
        let r = exliar::vbios::check(&bytes, Some((0x1234, 0x1111)));
        assert!(r.signature_ok && r.has_legacy && !r.has_uefi_gop && !r.usable);
        assert_eq!(r.ids_match, Some(true));
        assert_eq!(r.images[0].checksum_ok, Some(true));
        assert_eq!(
            r.findings.iter().map(|f| f.id).collect::<Vec<_>>(),
            ["no-uefi"]
        );
    } else {
        eprintln!("skipping: no {}", stdvga.display());
    }
    if isavga.exists() {
        let r = exliar::vbios::check(&std::fs::read(isavga).expect("read"), None);
        assert!(!r.signature_ok && r.images.is_empty());
        assert_eq!(r.findings[0].id, "pcir-missing");
    }
}

/// Every shape the report takes (each finding, null and present EFI
/// headers, device lists, no card) matches the schema.
#[test]
fn reports_of_damaged_roms_match_the_schema() {
    let schema = schema("vbios-1.schema.json");
    let good = synth::good();
    let mut prefixed = synth::nvflash_header();
    prefixed.extend(&good);
    let mut listed = Img::legacy(64);
    listed.device_list = vec![0x1b81, 0x1b82];
    let mut arm = Img::uefi(32).last();
    arm.machine = 0xAA64;
    let mut bad_sum = good.clone();
    bad_sum[0x100] ^= 1;
    let mut no_efi_sig = good.clone();
    no_efi_sig[64 * 512 + 4] = 0;
    let mut far = good.clone();
    far[0x18] = 0xF0;
    far[0x19] = 0xFF;
    let mut nowhere = good.clone();
    nowhere[0x18] = 0x00;
    nowhere[0x19] = 0x01;
    let mut zero = synth::rom(&[Img::legacy(64)]);
    zero[synth::PCIR_AT + 0x10] = 0;
    let mut broken = synth::rom(&[Img::legacy(64)]);
    broken.extend([0u8; 512]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("good", good.clone()),
        ("prefixed", prefixed),
        ("empty", Vec::new()),
        ("blank", vec![0xFF; 1024]),
        ("listed", synth::rom(&[listed, arm])),
        ("checksum", bad_sum),
        ("efi-signature", no_efi_sig),
        ("pcir-out-of-range", far),
        ("pcir-missing", nowhere),
        ("zero-length", zero),
        ("chain-broken", broken),
        ("no-last", synth::rom(&[Img::legacy(64), Img::uefi(32)])),
        ("truncated", good[..40000].to_vec()),
        ("many", synth::rom(&vec![Img::uefi(1); 70])),
        ("uefi-only", synth::rom(&[Img::uefi(32).last()])),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (name, bytes) in &cases {
        for expect in [None, Some((0x10de, 0x1b80)), Some((0x1002, 0x67df))] {
            let r = exliar::vbios::check(bytes, expect);
            seen.extend(r.findings.iter().map(|f| f.id));
            let doc = serde_json::to_value(&r).expect("json");
            assert_valid(&schema, &doc, name);
        }
    }
    // Every finding the checker has was produced here.
    assert_eq!(seen.len(), 15, "{seen:?}");
}
