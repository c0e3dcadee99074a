//! Fuzz the Boot Loader Specification entry editor (systemd-boot).
#![no_main]

use exliar::plan::boot::bls;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let add = vec!["iommu=pt".to_string()];
    if let Ok(e) = bls::edit_loader_entry("e.conf", text, &add, &[]) {
        let again = bls::edit_loader_entry("e.conf", &e.edited.text, &add, &[]).expect("edited entry parses");
        assert_eq!(again.edited.text, e.edited.text, "re-edit is not a no-op");
    }
    let _ = bls::loader_conf_default(text);
});
