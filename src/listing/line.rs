//! One device line → its fields. Two shapes:
//!
//! - lspci's: `ADDR CLASS[ [cccc]]: VENDOR DEVICE[ [vvvv:dddd]][ (rev xx)][ (prog-if xx [name])]`
//!   (plain, `-nn`, `-k`, `-v`, and every IOMMU-group script that calls lspci);
//! - columns (r15ch13/ls-iommu): `ADDR  CLASS  DEVICE`, the ids given before
//!   the address by the caller.

use crate::model::{ClassCode, PciAddress, class_from_name};

use super::vendors;

/// What one device line says. Every field but the address may be unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFields {
    pub address: PciAddress,
    pub class: Option<ClassCode>,
    pub vendor_id: Option<u16>,
    pub device_id: Option<u16>,
    pub revision: Option<u8>,
    pub vendor_name: Option<String>,
    pub device_name: Option<String>,
    /// Why the line looks truncated or garbled; what could be read is kept.
    pub damage: Option<String>,
}

impl LineFields {
    fn new(address: PciAddress) -> Self {
        Self {
            address,
            class: None,
            vendor_id: None,
            device_id: None,
            revision: None,
            vendor_name: None,
            device_name: None,
            damage: None,
        }
    }
}

/// The outcome of reading a line as a device line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Device(LineFields),
    /// Not a device line at all.
    NotDevice,
    /// It starts like a device line, but no address could be read.
    Garbled(String),
}

/// Whether a token is shaped like a PCI address, valid or not:
/// `[DDDD:]BB:DD.F` with hex digits (a 4- to 8-digit domain). Timestamps
/// (`12:30:45.123`) and the like are not.
pub fn looks_like_address(tok: &str) -> bool {
    let hex = |s: &str, min: usize, max: usize| {
        (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
    };
    let Some((rest, function)) = tok.rsplit_once('.') else {
        return false;
    };
    if !hex(function, 1, 1) {
        return false;
    }
    let parts: Vec<&str> = rest.split(':').collect();
    match parts.as_slice() {
        [bus, dev] => hex(bus, 2, 2) && hex(dev, 2, 2),
        [domain, bus, dev] => hex(domain, 4, 8) && hex(bus, 2, 2) && hex(dev, 2, 2),
        _ => false,
    }
}

/// The first whitespace-separated word and the rest (trimmed at the start).
pub fn first_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// `hhhh:hhhh` → the two ids.
pub fn parse_ids(s: &str) -> Option<(u16, u16)> {
    let (v, d) = s.split_once(':')?;
    Some((hex4(v)?, hex4(d)?))
}

fn hex4(s: &str) -> Option<u16> {
    if s.len() == 4 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        u16::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

fn hex2(s: &str) -> Option<u8> {
    if s.len() == 2 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        u8::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

/// Read the address at the start of `s`; `Err` when the line is not a
/// device line (`None`) or is one with a bad address (`Some(reason)`).
fn address_and_rest(s: &str) -> Result<(PciAddress, &str), Option<String>> {
    let (tok, rest) = first_word(s);
    if !looks_like_address(tok) {
        return Err(None);
    }
    match PciAddress::parse(tok) {
        Ok(a) => Ok((a, rest)),
        Err(e) => Err(Some(e.to_string())),
    }
}

/// `NAME [cccc]` or `NAME` → the class code (prog-if 0).
fn parse_class(text: &str) -> Option<ClassCode> {
    let text = text.trim();
    if let Some(body) = text.strip_suffix(']')
        && let Some(open) = body.rfind('[')
        && let Some(code) = hex4(&body[open + 1..])
    {
        return Some(ClassCode(u32::from(code) << 8));
    }
    class_from_name(text).map(|cs| ClassCode(u32::from(cs) << 8))
}

/// Parse an lspci-shaped line, starting at its address.
pub fn parse_lspci(s: &str) -> Parsed {
    let (address, rest) = match address_and_rest(s) {
        Ok(x) => x,
        Err(None) => return Parsed::NotDevice,
        Err(Some(why)) => return Parsed::Garbled(why),
    };
    let mut f = LineFields::new(address);
    let rest = rest.trim_end();
    let (class_text, body) = match rest.find(": ") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => match rest.strip_suffix(':') {
            Some(c) => (c, ""),
            None => {
                // `01:00.0 VGA compatible controller [0300]` (cut short) or
                // just an address.
                f.class = parse_class(rest);
                f.damage = Some("no `class: name` after the address".to_string());
                return Parsed::Device(f);
            }
        },
    };
    f.class = parse_class(class_text);
    read_body(&mut f, body, true);
    Parsed::Device(f)
}

/// Parse a columns line (`ADDR  CLASS  DEVICE`), starting at its address.
pub fn parse_columns(s: &str, ids: Option<(u16, u16)>) -> Parsed {
    let (address, rest) = match address_and_rest(s) {
        Ok(x) => x,
        Err(None) => return Parsed::NotDevice,
        Err(Some(why)) => return Parsed::Garbled(why),
    };
    let mut f = LineFields::new(address);
    if let Some((v, d)) = ids {
        f.vendor_id = Some(v);
        f.device_id = Some(d);
    }
    let rest = rest.trim();
    let split = rest
        .find("  ")
        .or_else(|| rest.find('\t'))
        .map(|i| (&rest[..i], rest[i..].trim()));
    match split {
        Some((class_text, name)) => {
            f.class = parse_class(class_text);
            if class_text.contains(": ") || class_text.ends_with(':') {
                // An lspci-shaped line after the ids after all.
                return parse_lspci_with_ids(s, ids);
            }
            read_body(&mut f, name, false);
        }
        None if rest.contains(": ") => return parse_lspci_with_ids(s, ids),
        None => {
            f.class = parse_class(rest);
            if f.class.is_none() {
                f.damage = Some("no class and name after the address".to_string());
            }
        }
    }
    Parsed::Device(f)
}

fn parse_lspci_with_ids(s: &str, ids: Option<(u16, u16)>) -> Parsed {
    match parse_lspci(s) {
        Parsed::Device(mut f) => {
            if let Some((v, d)) = ids {
                f.vendor_id = f.vendor_id.or(Some(v));
                f.device_id = f.device_id.or(Some(d));
            }
            Parsed::Device(f)
        }
        other => other,
    }
}

/// The byte index of the `(` that opens the `)` ending `s`.
fn matching_open_paren(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Read `VENDOR DEVICE [vvvv:dddd] (rev xx) (prog-if xx [..])` into `f`.
/// `with_vendor`: the name starts with the vendor's name (lspci), or is the
/// device's name alone (columns).
fn read_body(f: &mut LineFields, body: &str, with_vendor: bool) {
    let mut s = body.trim();
    let mut prog_if = None;
    for _ in 0..3 {
        if !s.ends_with(')') {
            break;
        }
        let Some(open) = matching_open_paren(s) else {
            break;
        };
        let inner = &s[open + 1..s.len() - 1];
        if let Some(r) = inner.strip_prefix("rev ").and_then(|r| hex2(r.trim())) {
            f.revision = Some(r);
        } else if let Some(p) = inner
            .strip_prefix("prog-if ")
            .and_then(|p| p.get(..2))
            .and_then(hex2)
        {
            prog_if = Some(p);
        } else {
            break;
        }
        s = s[..open].trim_end();
    }
    if let (Some(c), Some(p)) = (f.class, prog_if) {
        f.class = Some(ClassCode((c.0 & !0xff) | u32::from(p)));
    }
    // `[vvvv:dddd]`: the last bracket of the line, after the names (which
    // have brackets of their own: `[AMD/ATI]`, `[GeForce GTX 960]`).
    if let Some(inner) = s.strip_suffix(']')
        && let Some(open) = inner.rfind('[')
        && let Some((v, d)) = parse_ids(&inner[open + 1..])
    {
        f.vendor_id = Some(v);
        f.device_id = Some(d);
        s = s[..open].trim_end();
    }
    let mut damage = Vec::new();
    if f.vendor_id.is_none() {
        // A cut-off id bracket: `… [1002:a...`.
        if let Some(open) = s.rfind('[') {
            let frag = &s[open + 1..];
            if !frag.contains(']')
                && frag
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.' || c == '…')
            {
                damage.push(format!("cut-off ids `{}`", &s[open..]));
                s = s[..open].trim_end();
            }
        }
    }
    if let Some(cut) = s.strip_suffix("...").or_else(|| s.strip_suffix('…')) {
        damage.push("the name ends in `...`".to_string());
        s = cut.trim_end();
    }
    let count = |c: char| s.chars().filter(|&x| x == c).count();
    if count('[') != count(']') || count('(') != count(')') {
        damage.push("unbalanced brackets".to_string());
    }
    if s.is_empty() {
        damage.push("no vendor or device name".to_string());
    }
    if !damage.is_empty() {
        f.damage = Some(damage.join(", "));
    }
    let (vendor, device) = if with_vendor {
        vendors::split_vendor(s)
    } else {
        (None, s)
    };
    if let Some(v) = vendor {
        f.vendor_name = Some(v.to_string());
        if f.vendor_id.is_none() {
            f.vendor_id = vendors::vendor_id_of(v);
        }
    }
    f.device_name = device_name(device, f);
}

/// The device's name, or `None` for lspci's placeholders (`Device`,
/// `Device 57ad`, `Device 1e0f:0001`), whose numbers are ids.
fn device_name(device: &str, f: &mut LineFields) -> Option<String> {
    let device = device.trim();
    if device.is_empty() || device == "Device" {
        return None;
    }
    if let Some(num) = device.strip_prefix("Device ") {
        if let Some(d) = hex4(num) {
            f.device_id = f.device_id.or(Some(d));
            return None;
        }
        if f.vendor_name.is_none()
            && let Some((v, d)) = parse_ids(num)
        {
            f.vendor_id = f.vendor_id.or(Some(v));
            f.device_id = f.device_id.or(Some(d));
            return None;
        }
    }
    Some(device.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(p: Parsed) -> LineFields {
        match p {
            Parsed::Device(f) => f,
            other => panic!("not a device: {other:?}"),
        }
    }

    #[test]
    fn nn_line_with_brackets_in_names() {
        let f = dev(parse_lspci(
            "10:00.0 VGA compatible controller [0300]: Advanced Micro Devices, Inc. [AMD/ATI] Ellesmere [Radeon RX 470/480/570/570X/580/580X] [1002:67df] (rev e7)",
        ));
        assert_eq!(f.address, PciAddress::new(0, 0x10, 0, 0));
        assert_eq!(f.class, Some(ClassCode(0x030000)));
        assert_eq!((f.vendor_id, f.device_id), (Some(0x1002), Some(0x67df)));
        assert_eq!(f.revision, Some(0xe7));
        assert_eq!(
            f.vendor_name.as_deref(),
            Some("Advanced Micro Devices, Inc. [AMD/ATI]")
        );
        assert_eq!(
            f.device_name.as_deref(),
            Some("Ellesmere [Radeon RX 470/480/570/570X/580/580X]")
        );
        assert_eq!(f.damage, None);
    }

    #[test]
    fn plain_and_v_lines_without_ids() {
        let f = dev(parse_lspci(
            "01:00.0 VGA compatible controller: NVIDIA Corporation GP106M [GeForce GTX 1060 Mobile 6GB] (rev a1) (prog-if 00 [VGA controller])",
        ));
        assert_eq!(f.class, Some(ClassCode(0x030000)));
        assert_eq!(f.vendor_id, Some(0x10de), "from the vendor name");
        assert_eq!(f.device_id, None);
        assert_eq!(f.revision, Some(0xa1));
        assert_eq!(
            f.device_name.as_deref(),
            Some("GP106M [GeForce GTX 1060 Mobile 6GB]")
        );
        let f = dev(parse_lspci(
            "00:14.0 USB controller: Intel Corporation Sunrise Point-H USB 3.0 xHCI Controller (rev 31) (prog-if 30 [XHCI])",
        ));
        assert_eq!(f.class, Some(ClassCode(0x0c0330)));
        let f = dev(parse_lspci(
            "2a:00.0 PCI bridge: Advanced Micro Devices, Inc. [AMD] Device 1470 (rev c3)",
        ));
        assert_eq!((f.vendor_id, f.device_id), (Some(0x1022), Some(0x1470)));
        assert_eq!(f.device_name, None);
        let f = dev(parse_lspci(
            "00:00.3 Generic system peripheral [0807]: Advanced Micro Devices, Inc. [AMD] Device 14a6\r",
        ));
        assert_eq!(f.class, Some(ClassCode(0x080700)));
        let f = dev(parse_lspci(
            "01:00.0 Non-Volatile memory controller: Device 1e0f:0001",
        ));
        assert_eq!((f.vendor_id, f.device_id), (Some(0x1e0f), Some(0x0001)));
        assert_eq!((f.vendor_name, f.device_name), (None, None));
    }

    #[test]
    fn names_with_parentheses_keep_them() {
        let f = dev(parse_lspci(
            "00:01.0 PCI bridge [0604]: Intel Corporation 6th-10th Gen Core Processor PCIe Controller (x16) [8086:1901] (rev 07)",
        ));
        assert_eq!(
            f.device_name.as_deref(),
            Some("6th-10th Gen Core Processor PCIe Controller (x16)")
        );
        let f = dev(parse_lspci(
            "00:01.0 PCI bridge: Intel Corporation 6th-10th Gen Core Processor PCIe Controller (x16) (rev 05) (prog-if 00 [Normal decode])",
        ));
        assert_eq!(f.revision, Some(5));
        assert_eq!(
            f.device_name.as_deref(),
            Some("6th-10th Gen Core Processor PCIe Controller (x16)")
        );
    }

    #[test]
    fn truncated_lines_keep_what_they_say() {
        let f = dev(parse_lspci(
            "25:00.1 Audio device [0403]: Advanced Micro Devices, Inc. [AMD/ATI] Caicos HDMI Audio [Radeon HD 6450 / 7450/8450/8490 OEM / R5 230/235/235X OEM] [1002:a...",
        ));
        assert_eq!(f.class, Some(ClassCode(0x040300)));
        assert_eq!(f.vendor_id, Some(0x1002));
        assert_eq!(f.device_id, None);
        assert!(f.damage.is_some());
        assert_eq!(
            f.device_name.as_deref(),
            Some("Caicos HDMI Audio [Radeon HD 6450 / 7450/8450/8490 OEM / R5 230/235/235X OEM]")
        );
        let f = dev(parse_lspci("01:00.0 VGA compatible controller [0300]"));
        assert_eq!(f.class, Some(ClassCode(0x030000)));
        assert!(f.damage.is_some());
        assert!(
            dev(parse_lspci("01:00.0 Audio device [0403]: "))
                .damage
                .is_some()
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_lspci("hello world"), Parsed::NotDevice);
        assert_eq!(
            parse_lspci("12:30:45.123 kernel: usb 1-1: new device"),
            Parsed::NotDevice
        );
        assert!(matches!(
            parse_lspci("01:00.9 VGA compatible controller: X"),
            Parsed::Garbled(_)
        ));
        assert_eq!(parse_lspci(""), Parsed::NotDevice);
        assert!(matches!(
            parse_lspci("01:2f.0 VGA compatible controller: X"),
            Parsed::Garbled(_)
        ));
        let f = dev(parse_lspci(
            "10000:e1:00.0 Non-Volatile memory controller [0108]: Samsung Electronics Co Ltd NVMe SSD Controller PM9A1/PM9A3/980PRO [144d:a80a]",
        ));
        assert_eq!(f.address, PciAddress::new(0x10000, 0xe1, 0, 0));
        assert_eq!(f.vendor_name.as_deref(), Some("Samsung Electronics Co Ltd"));
    }

    #[test]
    fn columns_lines() {
        let f = dev(parse_columns(
            "03:00.0  VGA compatible controller                Navi 33 [Radeon RX 7700S/7600/7600S/7600M XT/PRO W7600]",
            Some((0x1002, 0x7480)),
        ));
        assert_eq!(f.class, Some(ClassCode(0x030000)));
        assert_eq!((f.vendor_id, f.device_id), (Some(0x1002), Some(0x7480)));
        assert_eq!(f.vendor_name, None);
        assert_eq!(
            f.device_name.as_deref(),
            Some("Navi 33 [Radeon RX 7700S/7600/7600S/7600M XT/PRO W7600]")
        );
        let f = dev(parse_columns(
            "00:00.0  Host bridge                              Device 4c53",
            Some((0x8086, 0x4c53)),
        ));
        assert_eq!(f.device_name, None);
        assert_eq!(f.class, Some(ClassCode(0x060000)));
    }
}
