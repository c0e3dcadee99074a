//! Fuzz the CDI spec parser and validator: never panic; a spec that parses
//! serializes back to one that parses equal; one that validates clean
//! declares at least its minimum version and resolves in a directory
//! without conflicts.
#![no_main]

use exliar::cdi::spec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(s) = spec::parse(text) else {
        return;
    };
    let problems = spec::validate(&s);
    let min = spec::minimum_version(&s);
    assert!(min >= spec::BASE_VERSION && min <= spec::LATEST_VERSION);
    let back = spec::parse(&spec::to_json(&s)).expect("own output parses");
    assert_eq!(back, s);
    let _ = spec::missing_host_paths(&s, |p| p.len() % 2 == 0);
    if problems.is_empty() {
        let declared = spec::Version::parse(&s.cdi_version).expect("valid version");
        assert!(declared >= min);
        let (visible, conflicts) = spec::resolve_dirs(&[vec![("f".into(), s.clone())]]);
        assert!(conflicts.is_empty());
        assert_eq!(visible.len(), s.devices.len());
    }
});
