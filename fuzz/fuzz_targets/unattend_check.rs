//! Fuzz the answer-file checker (`vm create --unattend` checks the file it
//! makes; a user may check one of their own): any bytes must give findings
//! or none, never panic. A file exliar made, with the fuzz input put into
//! its user name, must stay well-formed and check clean.
#![no_main]

use exliar::vm::unattend::{self, HostLocale, Secret, Unattend};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = unattend::check_answer_file(&text);

    let u = Unattend {
        user: text.chars().take(40).collect(),
        password: Secret::new("fuzz!pass"),
        computer_name: "FUZZ".into(),
        locale: HostLocale::default(),
        virtio_drivers: data.first().is_some_and(|b| b & 1 == 1),
        windows: 11,
        firmware_efi: true,
    };
    let xml = unattend::autounattend_xml(&u);
    let findings = unattend::check_answer_file(&xml);
    assert!(findings.is_empty(), "{findings:?}\n{xml}");
    if !text.contains("fuzz!pass") {
        assert!(!xml.contains("fuzz!pass"));
    }
});
