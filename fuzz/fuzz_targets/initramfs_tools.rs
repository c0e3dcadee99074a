//! Fuzz the initramfs-tools `modules` editor: any bytes (as text) must be edited or refused with
//! an error, never panic; what is edited must be idempotent, and removing
//! the edit must give back an untouched input byte for byte.
#![no_main]

use exliar::plan::editors::InPlaceEdit;
use exliar::plan::initramfs::tools;
use libfuzzer_sys::fuzz_target;

#[path = "edit_check.rs"]
mod edit_check;
use edit_check::s;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let edit = InPlaceEdit::InitramfsToolsModules(tools::ModulesEdit {
        modules: s(&["vfio", "vfio_iommu_type1", "vfio_pci", "vfio_virqfd"]),
        fix_misplaced: data.first().is_some_and(|b| b & 1 == 1),
        move_vfio_args: data.first().is_some_and(|b| b & 2 == 2),
    });
    let _ = exliar::plan::effective::parse_modules_file(&text);
    let _ = tools::obsolete_modules(&text, (6, 6));
    edit_check::round_trip(&edit, &text);
});
