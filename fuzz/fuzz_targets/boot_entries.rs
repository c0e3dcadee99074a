//! Fuzz the readers of what boot entries pass (the effective command
//! line): Limine entries, BLS entry command lines, grubenv. An entry the
//! editors changed reads back with the parameter.
#![no_main]

use exliar::plan::boot::{bls, limine};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let add = vec!["iommu=pt".to_string()];
    let _ = bls::grubenv_var(text, "kernelopts");
    if let Ok(entries) = limine::limine_entries(text) {
        for e in &entries {
            let _ = (e.is_linux(), e.is_uki());
        }
    }
    if let Ok(e) = bls::entry_cmdline(text) {
        let _ = bls::expand_kernelopts(&e.options.unwrap_or_default(), Some(text));
    }
    if let Ok(e) = bls::edit_loader_entry("e.conf", text, &add, &[])
        && e.kind == bls::EntryKind::Linux
        && !e.fallback
    {
        let back = bls::entry_cmdline(&e.edited.text).expect("edited entry reads back");
        let opts = back.options.unwrap_or_default();
        assert!(
            opts.iter().any(|t| exliar::plan::boot::params::identity(t) == "iommu"),
            "{opts:?}"
        );
    }
});
