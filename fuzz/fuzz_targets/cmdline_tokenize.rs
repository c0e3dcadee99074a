//! Fuzz the kernel command-line tokenizer: any text tokenizes or is
//! refused; spans are ordered, in bounds, and hold no unquoted blank.
#![no_main]

use exliar::plan::boot::params;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(spans) = params::tokenize(text) {
        let mut last = 0;
        for s in &spans {
            assert!(s.start >= last && s.end > s.start && s.end <= text.len());
            last = s.end;
            let tok = &text[s.start..s.end];
            assert!(params::is_single_param(tok), "{tok:?}");
        }
    }
});
