//! Fuzz the Limine `limine.conf` editor and format detection.
#![no_main]

use exliar::plan::boot::limine;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = limine::limine_format(text);
    let _ = limine::config_checksum_enrolled(data);
    let add = vec!["iommu=pt".to_string()];
    if let Ok(e) = limine::edit_limine_conf(text, &add, &[]) {
        let again = limine::edit_limine_conf(&e.text, &add, &[]).expect("edited text parses");
        assert_eq!(again.text, e.text);
    }
});
