//! Fuzz the option ROM checker: never panic, at most 64 images walked, a
//! usable ROM starts with its image, and what `strip` returns is a suffix of
//! the input that starts with an image.
#![no_main]

use exliar::vbios::{check, strip};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let expect = (data.len() >= 4).then(|| {
        (
            u16::from_le_bytes([data[0], data[1]]),
            u16::from_le_bytes([data[2], data[3]]),
        )
    });
    let r = check(data, expect);
    assert!(r.images.len() <= 64);
    assert!(!r.usable || (r.signature_ok && r.has_uefi_gop && r.prefix_bytes == 0));
    if let Some(s) = strip(data) {
        assert!(data.ends_with(&s) && s.len() < data.len());
        assert_eq!(check(&s, None).prefix_bytes, 0);
    }
    let _ = serde_json::to_string(&r).expect("serializes");
});
