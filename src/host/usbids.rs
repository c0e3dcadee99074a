//! Names from the system's `usb.ids`, looked up lazily (like
//! [`super::PciIds`] does for `pci.ids`).
//!
//! The file (about 700 KB) holds the vendor list first (`vvvv  Vendor`,
//! then `\tpppp  Product` lines, and sometimes `\t\tii  Interface` lines),
//! then other sections (`C 03  Human Interface Device`, `AT`, `HID`, `R`,
//! `BIAS`, `PHY`, `HUT`, `L`, `HCC`, `VT`) whose lines are never taken for
//! vendors: lookups search only the vendor list. Results are cached.

use super::idsdb::IdsDb;

/// Where distributions install `usb.ids`, relative to the host root: Debian
/// (`usb.ids` package: `/usr/share/misc`, and `/var/lib/usbutils` that
/// `update-usbids` refreshes), Fedora and Arch (`hwdata`), older layouts.
pub const USB_IDS_PATHS: &[&str] = &[
    "usr/share/misc/usb.ids",
    "usr/share/hwdata/usb.ids",
    "var/lib/usbutils/usb.ids",
    "usr/share/usb.ids",
];

/// A lazily-searched `usb.ids` text (see [`super::idsdb`]).
#[derive(Debug, Default)]
pub struct UsbIds(IdsDb);

impl UsbIds {
    pub fn new(text: String) -> Self {
        Self(IdsDb::new("usb.ids", text))
    }

    /// Names from the open `usb.ids` file of `len` bytes, read as lookups
    /// need it (see [`super::idsdb`]).
    pub fn from_file(file: std::fs::File, len: u64) -> Self {
        Self(IdsDb::from_file("usb.ids", file, len))
    }

    /// An empty database: every lookup gives `None`.
    pub fn empty() -> Self {
        Self::new(String::new())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A `usb.ids` holding only the lines looked up so far: what a snapshot
    /// needs to reproduce the same names.
    pub fn trimmed(&self) -> String {
        self.0.trimmed()
    }

    pub fn vendor(&self, vendor: u16) -> Option<String> {
        self.0.vendor(vendor)
    }

    /// A product of `vendor` (interface lines are not products).
    pub fn product(&self, vendor: u16, product: u16) -> Option<String> {
        self.0.item(vendor, product)
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
        assert!(ids.0.vendor_end() < ids.0.text().len());
        assert!(ids.0.text()[ids.0.vendor_end()..].starts_with("C 00"));
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
