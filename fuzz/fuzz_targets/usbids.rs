//! Fuzz the usb.ids lookups: any bytes (as text) are searched without a
//! panic. The first line doubles as a vendor and product: a usb.ids made of
//! exactly that vendor and product line must name both, and a trimmed copy
//! must answer the same as the original.
#![no_main]

use exliar::host::UsbIds;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let ids = UsbIds::new(text.clone());
    let (v, p) = match data {
        [a, b, c, d, ..] => (u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])),
        _ => (0x046d, 0xc52b),
    };
    let vendor = ids.vendor(v);
    let product = ids.product(v, p);
    let _ = ids.vendor(0x1d6b);
    let _ = ids.product(0x1d6b, 0x0002);
    let small = UsbIds::new(ids.trimmed());
    assert_eq!(small.vendor(v), vendor);
    assert_eq!(small.product(v, p), product);

    let name: String = text
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let name = name.trim();
    if !name.is_empty() {
        let own = UsbIds::new(format!("{v:04x}  {name}\n\t{p:04x}  {name}\n"));
        assert_eq!(own.vendor(v).as_deref(), Some(name));
        assert_eq!(own.product(v, p).as_deref(), Some(name));
    }
});
