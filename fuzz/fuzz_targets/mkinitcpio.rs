//! Fuzz the mkinitcpio.conf editor (bash arrays) and the preset reader: any bytes (as text) must be edited or refused with
//! an error, never panic; what is edited must be idempotent, and removing
//! the edit must give back an untouched input byte for byte.
#![no_main]

use exliar::plan::editors::InPlaceEdit;
use exliar::plan::initramfs::mkinitcpio;
use libfuzzer_sys::fuzz_target;

#[path = "edit_check.rs"]
mod edit_check;
use edit_check::s;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let edit = InPlaceEdit::Mkinitcpio(mkinitcpio::MkinitcpioEdit {
        modules: s(&["vfio", "vfio_iommu_type1", "vfio_pci"]),
        hooks: s(&["modconf"]),
        files: s(&["/usr/lib/exliar/vfio-early-bind"]),
    });
    let _ = mkinitcpio::preset_info(&text);
    let _ = mkinitcpio::obsolete_modules(&text, (6, 6));
    let _ = mkinitcpio::check_dropins(&text, &[("/etc/mkinitcpio.conf.d/a.conf", &text)], &mkinitcpio::MkinitcpioEdit::default());
    edit_check::round_trip(&edit, &text);
});
