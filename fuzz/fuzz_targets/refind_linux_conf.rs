//! Fuzz the rEFInd `refind_linux.conf` editor.
#![no_main]

use exliar::plan::boot::refind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let add = vec!["iommu=pt".to_string(), "x=\"a b\"".to_string()];
    if let Ok(e) = refind::edit_refind_linux_conf(text, &add, &[]) {
        let again = refind::edit_refind_linux_conf(&e.text, &add, &[]).expect("edited text parses");
        assert_eq!(again.text, e.text);
        let back = refind::edit_refind_linux_conf(&e.text, &[], &e.added).expect("edited text parses");
        assert_eq!(back.text, text, "remove(edit(x)) != x");
    }
});
