//! Fuzz the `/etc/kernel/cmdline` editor.
#![no_main]

use exliar::plan::boot::bls;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let add = vec!["iommu=pt".to_string(), "vfio-pci.ids=10de:1b81".to_string()];
    if let Ok(e) = bls::edit_kernel_cmdline(text, &add, &[]) {
        let again = bls::edit_kernel_cmdline(&e.text, &add, &[]).expect("edited text parses");
        assert_eq!(again.text, e.text);
        let back = bls::edit_kernel_cmdline(&e.text, &[], &e.added).expect("edited text parses");
        assert_eq!(back.text, text, "remove(edit(x)) != x");
    }
});
