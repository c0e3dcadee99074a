//! Fuzz the `/etc/default/grub` editor (shell lexer included).
#![no_main]

use exliar::plan::boot::grub;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let add = vec!["intel_iommu=on".to_string(), "x=\"a $b\"".to_string()];
    for key in [grub::GrubKey::LinuxDefault, grub::GrubKey::Linux] {
        if let Ok(e) = grub::edit_default_grub(text, key, &add, &[]) {
            let again = grub::edit_default_grub(&e.text, key, &add, &[]).expect("edited text parses");
            assert_eq!(again.text, e.text, "re-edit is not a no-op");
        }
    }
});
