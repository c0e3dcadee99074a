//! Names from the system's `usb.ids`, looked up lazily (like
//! [`super::PciIds`] does for `pci.ids`).
//!
//! The file (about 700 KB) holds the vendor list first (`vvvv  Vendor`,
//! then `\tpppp  Product` lines, and sometimes `\t\tii  Interface` lines),
//! then other sections (`C 03  Human Interface Device`, `AT`, `HID`, `R`,
//! `BIAS`, `PHY`, `HUT`, `L`, `HCC`, `VT`) whose lines are never taken for
//! vendors: lookups search only the vendor list. Results are cached.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// Where distributions install `usb.ids`, relative to the host root: Debian
/// (`usb.ids` package: `/usr/share/misc`, and `/var/lib/usbutils` that
/// `update-usbids` refreshes), Fedora and Arch (`hwdata`), older layouts.
pub const USB_IDS_PATHS: &[&str] = &[
    "usr/share/misc/usb.ids",
    "usr/share/hwdata/usb.ids",
    "var/lib/usbutils/usb.ids",
    "usr/share/usb.ids",
];

/// A lazily-searched `usb.ids` text.
#[derive(Debug, Default)]
pub struct UsbIds {
    text: String,
    /// Where the vendor list ends (the first line of another section).
    vendor_end: Cell<Option<usize>>,
    vendors: RefCell<HashMap<u16, Option<(usize, usize)>>>,
    products: RefCell<HashMap<(u16, u16), Option<String>>>,
}

/// Whether `line` is a vendor line: four hex digits, two spaces.
fn is_vendor_line(line: &[u8]) -> bool {
    line.len() >= 6 && line[..4].iter().all(u8::is_ascii_hexdigit) && &line[4..6] == b"  "
}

impl UsbIds {
    pub fn new(text: String) -> Self {
        Self {
            text,
            ..Self::default()
        }
    }

    /// An empty database: every lookup gives `None`.
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The end of the vendor list: the start of the first line that is not
    /// a vendor line, an indented line, a comment or empty.
    fn vendor_end(&self) -> usize {
        if let Some(e) = self.vendor_end.get() {
            return e;
        }
        let bytes = self.text.as_bytes();
        let mut pos = 0;
        let mut end = bytes.len();
        while pos < bytes.len() {
            let line_end = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
            let line = &bytes[pos..line_end];
            let ok = match line.first() {
                None | Some(b'\t' | b'#' | b'\r') => true,
                Some(_) => is_vendor_line(line),
            };
            if !ok {
                end = pos;
                break;
            }
            pos = line_end + 1;
        }
        self.vendor_end.set(Some(end));
        end
    }

    /// A `usb.ids` holding only the vendor and product lines looked up so
    /// far: what a snapshot needs to reproduce the same names.
    pub fn trimmed(&self) -> String {
        let mut vendors: Vec<u16> = self
            .vendors
            .borrow()
            .iter()
            .filter(|(_, b)| b.is_some())
            .map(|(v, _)| *v)
            .collect();
        vendors.sort_unstable();
        let products = self.products.borrow();
        let mut out =
            String::from("# usb.ids entries used by exliar when this snapshot was taken\n");
        for v in vendors {
            // A vendor line without a name still holds its products.
            let vn = self.vendor(v).unwrap_or_default();
            out.push_str(&format!("{v:04x}  {vn}\n"));
            let mut ps: Vec<(u16, &String)> = products
                .iter()
                .filter(|((pv, _), n)| *pv == v && n.is_some())
                .filter_map(|((_, p), n)| n.as_ref().map(|n| (*p, n)))
                .collect();
            ps.sort();
            for (p, n) in ps {
                out.push_str(&format!("\t{p:04x}  {n}\n"));
            }
        }
        out
    }

    /// The vendor block: (start of the vendor line, end of its block).
    fn vendor_block(&self, vendor: u16) -> Option<(usize, usize)> {
        if let Some(v) = self.vendors.borrow().get(&vendor) {
            return *v;
        }
        let limit = self.vendor_end();
        let bytes = &self.text.as_bytes()[..limit];
        let key = format!("{vendor:04x}  ");
        let found = if bytes.starts_with(key.as_bytes()) {
            Some(0)
        } else {
            memchr::memmem::find(bytes, format!("\n{key}").as_bytes()).map(|i| i + 1)
        };
        let block = found.map(|start| {
            // The block ends at the next line that is not indented, a
            // comment or empty: the next vendor.
            let mut end = bytes.len();
            let mut pos = start;
            while let Some(nl) = memchr::memchr(b'\n', &bytes[pos..]) {
                let next = pos + nl + 1;
                match bytes.get(next) {
                    Some(b'\t' | b'#' | b'\n' | b'\r') => pos = next,
                    Some(_) => {
                        end = next;
                        break;
                    }
                    None => break,
                }
            }
            (start, end)
        });
        self.vendors.borrow_mut().insert(vendor, block);
        block
    }

    pub fn vendor(&self, vendor: u16) -> Option<String> {
        let (start, end) = self.vendor_block(vendor)?;
        let line = self.text.get(start..end)?.lines().next()?;
        Some(line.get(6..)?.trim().to_string()).filter(|s| !s.is_empty())
    }

    pub fn product(&self, vendor: u16, product: u16) -> Option<String> {
        if let Some(v) = self.products.borrow().get(&(vendor, product)) {
            return v.clone();
        }
        let name = self.vendor_block(vendor).and_then(|(start, end)| {
            let block = &self.text.as_bytes()[start..end];
            // One tab: a product line (two tabs: an interface line).
            let key = format!("\n\t{product:04x}  ");
            let at = memchr::memmem::find(block, key.as_bytes())? + key.len();
            let line_end = memchr::memchr(b'\n', &block[at..]).map_or(block.len(), |i| at + i);
            let name = String::from_utf8_lossy(&block[at..line_end])
                .trim()
                .to_string();
            Some(name).filter(|n| !n.is_empty())
        });
        self.products
            .borrow_mut()
            .insert((vendor, product), name.clone());
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# usb.ids sample\n\
#\tvendor  vendor_name\n\
0001  Fry's Electronics\n\
\t7778  Counterfeit flash drive [Kingston]\n\
046d  Logitech, Inc.\n\
\tc52b  Unifying Receiver\n\
\t0a01  USB Headset\n\
\t\t00  an interface line\n\
# a comment inside\n\
\tc31c  Keyboard K120\n\
1d6b  Linux Foundation\n\
\t0002  2.0 root hub\n\
\t0003  3.0 root hub\n\
\n\
# List of known device classes, subclasses and protocols\n\
C 03  Human Interface Device\n\
\t01  Boot Interface Subclass\n\
\t\t01  Keyboard\n\
AT 0100  USB Streaming\n\
HID 0a0b  Unlisted\n\
HUT 01  Generic Desktop Controls\n\
\t000  Undefined\n\
L 0409  English (US)\n\
VT 0001  Not a vendor\n\
abcd  Looks like a vendor but lies after the classes\n\
\t0001  Not a product\n";

    #[test]
    fn finds_vendors_and_products() {
        let ids = UsbIds::new(SAMPLE.to_string());
        assert_eq!(ids.vendor(0x046d).as_deref(), Some("Logitech, Inc."));
        assert_eq!(
            ids.product(0x046d, 0xc52b).as_deref(),
            Some("Unifying Receiver")
        );
        assert_eq!(
            ids.product(0x046d, 0xc31c).as_deref(),
            Some("Keyboard K120")
        );
        assert_eq!(ids.vendor(0x0001).as_deref(), Some("Fry's Electronics"));
        assert_eq!(ids.product(0x1d6b, 0x0003).as_deref(), Some("3.0 root hub"));
        // Interface lines are not product lines.
        assert_eq!(ids.product(0x046d, 0x0000), None);
        assert_eq!(ids.product(0x046d, 0x9999), None);
        assert_eq!(ids.vendor(0x1234), None);
        // Cached answers agree.
        assert_eq!(ids.vendor(0x046d).as_deref(), Some("Logitech, Inc."));
    }

    #[test]
    fn sections_after_the_vendor_list_are_ignored() {
        let ids = UsbIds::new(SAMPLE.to_string());
        assert_eq!(ids.vendor(0xabcd), None);
        assert_eq!(ids.product(0xabcd, 0x0001), None);
        // The last vendor's block stops at the classes.
        assert_eq!(ids.product(0x1d6b, 0x0001), None);
        assert_eq!(ids.vendor(0x0001).as_deref(), Some("Fry's Electronics"));
    }

    #[test]
    fn trimmed_copy_answers_the_same() {
        let ids = UsbIds::new(SAMPLE.to_string());
        let _ = ids.product(0x046d, 0xc52b);
        let _ = ids.product(0x046d, 0x9999);
        let small = UsbIds::new(ids.trimmed());
        assert_eq!(small.vendor(0x046d), ids.vendor(0x046d));
        assert_eq!(small.product(0x046d, 0xc52b), ids.product(0x046d, 0xc52b));
        assert_eq!(small.product(0x046d, 0x0a01), None);
        assert_eq!(small.vendor(0x1d6b), None);
    }

    #[test]
    fn a_vendor_without_a_name_keeps_its_products_when_trimmed() {
        let ids = UsbIds::new("1234  \n\t5678  Thing\n".to_string());
        assert_eq!(ids.vendor(0x1234), None);
        assert_eq!(ids.product(0x1234, 0x5678).as_deref(), Some("Thing"));
        let small = UsbIds::new(ids.trimmed());
        assert_eq!(small.product(0x1234, 0x5678).as_deref(), Some("Thing"));
    }

    #[test]
    fn empty_database_answers_none() {
        let ids = UsbIds::empty();
        assert_eq!(ids.vendor(0x046d), None);
        assert_eq!(ids.product(0x046d, 0xc52b), None);
    }

    /// The Debian `usb.ids` package, where it is installed (CI installs it;
    /// there, its absence fails).
    #[test]
    fn system_usb_ids_names_well_known_devices() {
        let text = USB_IDS_PATHS
            .iter()
            .find_map(|p| std::fs::read_to_string(format!("/{p}")).ok());
        let Some(text) = text else {
            assert!(
                std::env::var_os("CI").is_none(),
                "usb.ids is not installed (apt-get install usb.ids)"
            );
            return;
        };
        let ids = UsbIds::new(text);
        assert_eq!(ids.vendor(0x1d6b).as_deref(), Some("Linux Foundation"));
        assert_eq!(ids.product(0x1d6b, 0x0002).as_deref(), Some("2.0 root hub"));
        assert_eq!(ids.vendor(0x046d).as_deref(), Some("Logitech, Inc."));
        assert!(ids.product(0x046d, 0xc52b).is_some());
        // The class section starts after the last vendor; nothing there is
        // a vendor.
        assert!(ids.vendor_end() < ids.text.len());
        assert!(ids.text[ids.vendor_end()..].starts_with("C 00"));
    }

    use proptest::prelude::*;

    proptest! {
        /// Text made of usb.ids' own characters: lookups never panic, and a
        /// trimmed copy answers what the original answered.
        #[test]
        fn trimmed_answers_like_the_original(
            lines in prop::collection::vec(prop::sample::select(vec![
                "0a0a  Vendor A", "aaaa  ", "0c0a  Vendor C\r", "\t0a0a  Product", "\taaaa  P2 ",
                "\t0c0a  ", "\t\t0a  Interface", "# comment", "", "C 0a  Class", "\t0a  Sub",
                "AT 0a0a  Terminal", "0a0a", "\t0a0a", "x", "0000  Zero",
            ]), 0..24),
            v in prop::sample::select(vec![0x0000u16, 0x0a0a, 0xaaaa, 0x0c0a]),
            p in prop::sample::select(vec![0x0000u16, 0x0a0a, 0xaaaa, 0x0c0a]),
        ) {
            let ids = UsbIds::new(lines.join("\n"));
            let vendor = ids.vendor(v);
            let product = ids.product(v, p);
            let small = UsbIds::new(ids.trimmed());
            prop_assert_eq!(small.vendor(v), vendor);
            prop_assert_eq!(small.product(v, p), product);
        }
    }
}
