//! Fuzz the modprobe.d reader (ids, softdeps, install lines) and block editor: any bytes (as text) must be edited or refused with
//! an error, never panic; what is edited must be idempotent, and removing
//! the edit must give back an untouched input byte for byte.
#![no_main]

use exliar::plan::editors::InPlaceEdit;
use exliar::plan::modprobe;
use libfuzzer_sys::fuzz_target;

#[path = "edit_check.rs"]
mod edit_check;
use edit_check::s;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let edit = InPlaceEdit::Modprobe(modprobe::ModprobeEdit::new(vec![
        "softdep amdgpu pre: vfio-pci".into(),
        modprobe::ids_option_line(&s(&["10de:1b80"])),
    ]));
    let files = [("/etc/modprobe.d/a.conf", text.as_str()), ("/usr/lib/modprobe.d/b.conf", text.as_str())];
    let ids = modprobe::existing_vfio_ids(&files);
    let _ = ids.findings();
    let _ = modprobe::merged_softdeps(&["amdgpu", "snd_hda_intel"], "vfio-pci", &files);
    let _ = modprobe::install_conflicts(&files, false);
    edit_check::round_trip(&edit, &text);
});
