//! Fuzz the pasted-text parser: any bytes, split into up to four files at
//! NUL bytes (so merging is exercised too), must parse or be refused, never
//! panic; what parses must be analysable and serialisable.
#![no_main]

use exliar::listing::{ListingFile, parse_files};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let files: Vec<ListingFile> = data
        .splitn(4, |&b| b == 0)
        .enumerate()
        .map(|(i, part)| ListingFile {
            name: format!("f{i}.txt"),
            text: String::from_utf8_lossy(part).into_owned(),
        })
        .collect();
    if let Ok(inv) = parse_files(&files) {
        let analysis = exliar::analyze::analyze(&inv);
        let report = exliar::report::InventoryReport::new(&inv, &analysis, None);
        let _ = serde_json::to_string(&report);
    }
});
