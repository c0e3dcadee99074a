//! Fuzz the NVIDIA driver's proc-file parsers (`/proc/driver/nvidia/version`,
//! `/proc/driver/nvidia/gpus/ADDR/information`): any bytes (as text) give
//! facts or nothing, never a panic; what they give is well formed.
#![no_main]

use exliar::host::stacks::{parse_nvidia_information, parse_nvidia_version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(v) = parse_nvidia_version(&text) {
        if let Some(ver) = v.version {
            assert!(ver.contains('.') && ver.chars().all(|c| c.is_ascii_digit() || c == '.'));
        }
    }
    let g = parse_nvidia_information(&text);
    if let Some(u) = g.uuid {
        assert!(u.starts_with("GPU-") && !u.chars().any(char::is_whitespace));
    }
});
