//! Fuzz the kernelstub configuration reader and its command builder.
#![no_main]

use exliar::plan::boot::kernelstub;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(c) = kernelstub::read_config(text) {
        let _ = kernelstub::kernelstub_argv(&c.kernel_options, &["iommu=pt".to_string()], &[]);
    }
});
