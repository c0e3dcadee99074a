//! Fuzz the readers of libvirt domain XML (`vm list/show/start/edit` read
//! whatever `virsh dumpxml` gives): any bytes must be read or refused,
//! never panic; metadata exliar wrote must read back.
#![no_main]

use exliar::vm::domain;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = domain::read_meta(&text);
    let _ = domain::read_summary(&text);
});
