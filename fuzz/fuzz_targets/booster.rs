//! Fuzz the booster.yaml line editor: any bytes (as text) must be edited or refused with
//! an error, never panic; what is edited must be idempotent, and removing
//! the edit must give back an untouched input byte for byte.
#![no_main]

use exliar::plan::editors::InPlaceEdit;
use exliar::plan::initramfs::booster;
use libfuzzer_sys::fuzz_target;

#[path = "edit_check.rs"]
mod edit_check;
use edit_check::s;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let edit = InPlaceEdit::Booster(booster::BoosterEdit {
        modules_force_load: s(&["vfio", "vfio_iommu_type1", "vfio_pci"]),
        modules_exclude: s(&["amdgpu", "snd_hda_intel"]),
    });
    edit_check::round_trip(&edit, &text);
});
