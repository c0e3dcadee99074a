//! Fuzz the booster.yaml line editor: any bytes (as text) must be edited or refused with
//! an error, never panic; what is edited must be idempotent, and removing
//! the edit must give back an untouched input byte for byte.
#![no_main]

use exliar::plan::editors::InPlaceEdit;
use exliar::plan::initramfs::booster;
use libfuzzer_sys::fuzz_target;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let edit = InPlaceEdit::Booster(booster::BoosterEdit {
        modules_force_load: s(&["vfio", "vfio_iommu_type1", "vfio_pci"]),
        modules_exclude: s(&["amdgpu", "snd_hda_intel"]),
    });
    if let Ok(out) = edit.apply(&text) {
        assert_eq!(edit.apply(&out).ok().as_deref(), Some(out.as_str()));
        assert_eq!(edit.is_applied(&out).ok(), Some(true));
        if edit.remove(&text).ok().as_deref() == Some(text.as_str()) {
            assert_eq!(edit.remove(&out).ok().as_deref(), Some(text.as_str()));
        }
    }
    let _ = edit.remove(&text);
});
