//! Fuzz the AMD KFD topology `properties` parser and the ld.so.cache path
//! scanner: any bytes give facts or nothing, never a panic; a PCI address
//! derived from `location_id` always reads back the same location.
#![no_main]

use exliar::host::stacks::{ldcache_paths, parse_kfd_properties};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let p = parse_kfd_properties(&text);
    if let (Some(a), Some(loc)) = (p.address(), p.location_id) {
        let back = (u32::from(a.bus) << 8) | (u32::from(a.device) << 3) | u32::from(a.function);
        assert_eq!(back, loc);
    }
    for path in ldcache_paths(data) {
        assert!(path.starts_with('/') && path.contains(".so"));
    }
});
