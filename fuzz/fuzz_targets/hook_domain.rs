//! Fuzz what libvirt's QEMU hook reads: the domain XML on stdin (any
//! bytes: libvirt passes whatever the domain holds). It must be read or
//! ignored, never panic, and a domain without exliar's metadata is never
//! acted on.
#![no_main]

use exliar::hooks;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let d = hooks::read_domain(&text);
    if !text.contains(exliar::vm::domain::NS) {
        assert!(d.is_none());
    }
    for (op, sub) in [("prepare", "begin"), ("release", "end"), ("started", "begin")] {
        let a = hooks::decide(op, sub, d.as_ref());
        if d.is_none() {
            assert_eq!(a, hooks::Action::Nothing);
        }
    }
});
