//! PCI addresses (`domain:bus:device.function`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A PCI function address. The domain may be wider than 16 bits: Intel VMD
/// domains are written with 5 hex digits (`10000:e1:00.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    pub domain: u32,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

/// Why a text is not a PCI address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a PCI address (expected DDDD:BB:DD.F or BB:DD.F)")]
pub struct AddressError {
    pub text: String,
}

impl PciAddress {
    pub const fn new(domain: u32, bus: u8, device: u8, function: u8) -> Self {
        Self {
            domain,
            bus,
            device,
            function,
        }
    }

    /// The same slot (domain, bus, device), i.e. another function of the same
    /// physical device.
    pub fn same_slot(&self, other: &PciAddress) -> bool {
        self.domain == other.domain && self.bus == other.bus && self.device == other.device
    }

    /// Parse either the full form (`0000:01:00.0`, `10000:e1:00.0`) or the
    /// short form lspci prints for domain 0 (`01:00.0`).
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let err = || AddressError {
            text: text.to_string(),
        };
        let (rest, function) = text.rsplit_once('.').ok_or_else(err)?;
        let function = parse_hex_exact(function, 1, 1).ok_or_else(err)?;
        if function > 7 {
            return Err(err());
        }
        let mut parts = rest.split(':').collect::<Vec<_>>();
        let domain = match parts.len() {
            2 => 0,
            3 => {
                let d = parts.remove(0);
                if d.len() < 4 || d.len() > 8 {
                    return Err(err());
                }
                u32::from_str_radix(d, 16).map_err(|_| err())?
            }
            _ => return Err(err()),
        };
        let bus = parse_hex_exact(parts[0], 2, 2).ok_or_else(err)?;
        let device = parse_hex_exact(parts[1], 2, 2).ok_or_else(err)?;
        if device > 0x1f {
            return Err(err());
        }
        Ok(Self {
            domain,
            bus: bus as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

fn parse_hex_exact(s: &str, min: usize, max: usize) -> Option<u32> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// `v` in lower-case hex, at least `min` digits, at the end of `buf[..end]`;
/// returns where the digits start.
fn hex_into(buf: &mut [u8], end: usize, mut v: u32, min: usize) -> usize {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut i = end;
    while i > 0 && (v != 0 || end - i < min) {
        i -= 1;
        buf[i] = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
    i
}

impl fmt::Display for PciAddress {
    /// `{:04x}:{:02x}:{:02x}.{:x}`, without the formatting machinery: a
    /// report of many devices writes addresses by the hundred thousand.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // 8 + 1 + 2 + 1 + 2 + 1 + 2 bytes at most.
        let mut buf = [0u8; 17];
        let mut start = hex_into(&mut buf, 17, u32::from(self.function), 1);
        start -= 1;
        buf[start] = b'.';
        start = hex_into(&mut buf, start, u32::from(self.device), 2);
        start -= 1;
        buf[start] = b':';
        start = hex_into(&mut buf, start, u32::from(self.bus), 2);
        start -= 1;
        buf[start] = b':';
        start = hex_into(&mut buf, start, self.domain, 4);
        f.write_str(std::str::from_utf8(&buf[start..]).map_err(|_| fmt::Error)?)
    }
}

impl FromStr for PciAddress {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for PciAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PciAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The hand-written hex equals the formatting machinery's.
        #[test]
        fn display_matches_format(domain: u32, bus: u8, device: u8, function: u8) {
            let a = PciAddress { domain, bus, device, function };
            prop_assert_eq!(
                a.to_string(),
                format!("{domain:04x}:{bus:02x}:{device:02x}.{function:x}")
            );
        }
    }

    #[test]
    fn parses_full_short_and_vmd_forms() {
        assert_eq!(
            PciAddress::parse("0000:01:00.1").ok(),
            Some(PciAddress::new(0, 1, 0, 1))
        );
        assert_eq!(
            PciAddress::parse("0a:1f.7").ok(),
            Some(PciAddress::new(0, 0x0a, 0x1f, 7))
        );
        let vmd = PciAddress::parse("10000:e1:00.0").ok();
        assert_eq!(vmd, Some(PciAddress::new(0x10000, 0xe1, 0, 0)));
        assert_eq!(vmd.map(|a| a.to_string()).as_deref(), Some("10000:e1:00.0"));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "01:00",
            "1:00.0",
            "01:20.0",
            "01:00.8",
            "000:01:00.0",
            "zz:00.0",
            "01:00.0.0",
            "0000:01:00.",
            "+1:00.0",
        ] {
            assert!(PciAddress::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(domain in 0u32..0x20000, bus: u8, device in 0u8..32, function in 0u8..8) {
            let a = PciAddress::new(domain, bus, device, function);
            prop_assert_eq!(PciAddress::parse(&a.to_string()).ok(), Some(a));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,20}") {
            let _ = PciAddress::parse(&s);
        }
    }
}
