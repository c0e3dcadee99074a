//! Fuzz the dracut drop-in editor and configuration evaluator: any bytes (as text) must be edited or refused with
//! an error, never panic; what is edited must be idempotent, and removing
//! the edit must give back an untouched input byte for byte.
#![no_main]

use exliar::plan::editors::InPlaceEdit;
use exliar::plan::initramfs::dracut;
use libfuzzer_sys::fuzz_target;

#[path = "edit_check.rs"]
mod edit_check;
use edit_check::s;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let edit = InPlaceEdit::Dracut(dracut::DracutEdit {
        force_drivers: s(&["vfio", "vfio_iommu_type1", "vfio_pci"]),
        install_items: s(&["/usr/lib/exliar/vfio-early-bind"]),
    });
    let _ = dracut::evaluate(&[("/etc/dracut.conf", &text), ("/etc/dracut.conf.d/z.conf", &text)]);
    edit_check::round_trip(&edit, &text);
});
