//! Fuzz the modules.alias reader and its fnmatch: any bytes (as text) are read
//! without a panic, and matching any modalias against them never panics. The
//! first line doubles as a modalias: an alias line whose pattern is that exact
//! text (with no glob characters) must match it.
#![no_main]

use exliar::plan::modalias::{PciAliases, pci_modalias};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let aliases = PciAliases::parse(&text);
    let _ = aliases.modules_for(&pci_modalias(0x10de, 0x2504, Some((0x1458, 0x4071)), 0x030000));
    let first = text.lines().next().unwrap_or("");
    let _ = aliases.modules_for(first);
    let literal = format!("pci:{}", first.replace(['*', '?', '[', ' ', '\t'], ""));
    if !literal.contains(char::is_whitespace) {
        let own = PciAliases::parse(&format!("alias {literal} m\n"));
        assert_eq!(own.modules_for(&literal), ["m"]);
    }
});
