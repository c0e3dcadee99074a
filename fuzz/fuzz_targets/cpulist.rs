//! Fuzz the kernel cpulist parser (`0-3,8,10-11`): never panic, and what it
//! accepts is sorted and free of duplicates.
#![no_main]

use exliar::vm::topology::parse_cpulist;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(v) = parse_cpulist(&text) {
        assert!(v.windows(2).all(|w| w[0] < w[1]));
    }
});
