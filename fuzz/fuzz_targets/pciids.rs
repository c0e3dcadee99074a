//! Fuzz the `pci.ids` lookups as `scan` makes them: from an open file,
//! searched and streamed in pieces (`PciIds::from_file`), never read whole.
//! Any bytes give names or nothing, never a panic, and the file answers
//! every lookup as the same text held in memory does, and as the trimmed
//! copy a snapshot keeps does: for the ids of the text's own vendor and
//! device lines and for a few common ones.
#![no_main]

use std::io::Write as _;

use exliar::host::PciIds;
use libfuzzer_sys::fuzz_target;

/// Four hex digits at the start of `s`.
fn hex4(s: &str) -> Option<u16> {
    u16::from_str_radix(s.get(..4)?, 16).ok()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let mut asks: Vec<(u16, u16)> = vec![(0x10de, 0x2204), (0x8086, 0xa36d), (0x1002, 0x73bf)];
    if let [a, b, c, d, ..] = data {
        asks.push((u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])));
    }
    let mut vendor = 0;
    for l in text.lines().take(256) {
        if let Some(item) = l.strip_prefix('\t') {
            if let Some(p) = hex4(item) {
                asks.push((vendor, p));
            }
        } else if let Some(v) = hex4(l) {
            vendor = v;
            asks.push((v, 0));
        }
    }

    let path = std::env::temp_dir().join(format!("exliar-fuzz-pciids-{}", std::process::id()));
    let written = std::fs::File::create(&path).and_then(|mut f| f.write_all(text.as_bytes()));
    let Ok(file) = written.and_then(|()| std::fs::File::open(&path)) else {
        return;
    };
    let from_file = PciIds::from_file(file, text.len() as u64);
    let in_memory = PciIds::new(text.clone());
    for &(v, p) in &asks {
        assert_eq!(from_file.vendor(v), in_memory.vendor(v), "vendor {v:04x}");
        assert_eq!(
            from_file.device(v, p),
            in_memory.device(v, p),
            "device {v:04x}:{p:04x}"
        );
    }
    let trimmed = from_file.trimmed();
    assert_eq!(trimmed, in_memory.trimmed());
    let small = PciIds::new(trimmed);
    for &(v, p) in &asks {
        assert_eq!(
            small.vendor(v),
            in_memory.vendor(v),
            "trimmed, vendor {v:04x}"
        );
        assert_eq!(
            small.device(v, p),
            in_memory.device(v, p),
            "trimmed, device {v:04x}:{p:04x}"
        );
    }
    let _ = std::fs::remove_file(&path);
});
