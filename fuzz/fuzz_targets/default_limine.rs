//! Fuzz the `/etc/default/limine` (bash) editor.
#![no_main]

use exliar::plan::boot::limine;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let add = vec!["iommu=pt".to_string()];
    if let Ok(e) = limine::edit_default_limine(text, &add, &[]) {
        let again = limine::edit_default_limine(&e.text, &add, &[]).expect("edited text parses");
        assert_eq!(again.text, e.text);
    }
});
