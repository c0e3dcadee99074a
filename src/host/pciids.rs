//! Names from the system's `pci.ids`, looked up lazily.
//!
//! The file (about 1.3 MB) is read once, but not parsed: a lookup scans for
//! the vendor's line at the start of a line, then the device line inside that
//! vendor's block. Results are cached, so a host with 4096 functions of three
//! vendors scans the file a handful of times.

use std::cell::RefCell;
use std::collections::HashMap;

/// Where distributions install `pci.ids`, relative to the host root.
pub const PCI_IDS_PATHS: &[&str] = &[
    "usr/share/misc/pci.ids",
    "usr/share/hwdata/pci.ids",
    "usr/share/pci.ids",
];

/// A lazily-searched `pci.ids` text.
#[derive(Debug, Default)]
pub struct PciIds {
    text: String,
    vendors: RefCell<HashMap<u16, Option<(usize, usize)>>>,
    devices: RefCell<HashMap<(u16, u16), Option<String>>>,
}

impl PciIds {
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

    /// A `pci.ids` holding only the vendor and device lines looked up so
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
        let devices = self.devices.borrow();
        let mut out =
            String::from("# pci.ids entries used by exliar when this snapshot was taken\n");
        for v in vendors {
            let Some(vn) = self.vendor(v) else { continue };
            out.push_str(&format!("{v:04x}  {vn}\n"));
            let mut ds: Vec<(u16, &String)> = devices
                .iter()
                .filter(|((dv, _), n)| *dv == v && n.is_some())
                .filter_map(|((_, d), n)| n.as_ref().map(|n| (*d, n)))
                .collect();
            ds.sort();
            for (d, n) in ds {
                out.push_str(&format!("\t{d:04x}  {n}\n"));
            }
        }
        out
    }

    /// The vendor block: (start of the vendor line, end of its block).
    fn vendor_block(&self, vendor: u16) -> Option<(usize, usize)> {
        if let Some(v) = self.vendors.borrow().get(&vendor) {
            return *v;
        }
        let bytes = self.text.as_bytes();
        let key = format!("{vendor:04x}  ");
        // A vendor line starts a line: "\nvvvv  " (or the file itself).
        let found = if bytes.starts_with(key.as_bytes()) {
            Some(0)
        } else {
            memchr::memmem::find(bytes, format!("\n{key}").as_bytes()).map(|i| i + 1)
        };
        let block = found.map(|start| {
            // The block ends at the next line that is not a device line
            // (tab), a comment or empty: the next vendor, or the classes.
            let mut end = bytes.len();
            let mut pos = start;
            while let Some(nl) = memchr::memchr(b'\n', &bytes[pos..]) {
                let next = pos + nl + 1;
                match bytes.get(next) {
                    Some(b'\t' | b'#' | b'\n') => pos = next,
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
        let line = self.text[start..end].lines().next()?;
        Some(line.get(6..)?.trim().to_string()).filter(|s| !s.is_empty())
    }

    pub fn device(&self, vendor: u16, device: u16) -> Option<String> {
        if let Some(v) = self.devices.borrow().get(&(vendor, device)) {
            return v.clone();
        }
        let name = self.vendor_block(vendor).and_then(|(start, end)| {
            let block = &self.text.as_bytes()[start..end];
            let key = format!("\n\t{device:04x}  ");
            let at = memchr::memmem::find(block, key.as_bytes())? + key.len();
            let line_end = memchr::memchr(b'\n', &block[at..]).map_or(block.len(), |i| at + i);
            let name = String::from_utf8_lossy(&block[at..line_end])
                .trim()
                .to_string();
            Some(name).filter(|n| !n.is_empty())
        });
        self.devices
            .borrow_mut()
            .insert((vendor, device), name.clone());
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# comment 10de  fake\n\
1002  Advanced Micro Devices, Inc. [AMD/ATI]\n\
\t67df  Ellesmere [Radeon RX 470/480/570/570X/580/580X/590]\n\
\t\t1002 0b37  Radeon RX 480\n\
\taaf0  Ellesmere HDMI Audio [Radeon RX 470/480 / 570/580/590]\n\
10de  NVIDIA Corporation\n\
\t1401  GM206 [GeForce GTX 960]\n\
# a comment inside\n\
\t0fba  GM206 High Definition Audio Controller\n\
C 03  Display controller\n\
\t00  VGA compatible controller\n";

    #[test]
    fn finds_vendors_and_devices() {
        let ids = PciIds::new(SAMPLE.to_string());
        assert_eq!(ids.vendor(0x10de).as_deref(), Some("NVIDIA Corporation"));
        assert_eq!(
            ids.device(0x10de, 0x0fba).as_deref(),
            Some("GM206 High Definition Audio Controller")
        );
        assert_eq!(
            ids.device(0x1002, 0x67df).as_deref(),
            Some("Ellesmere [Radeon RX 470/480/570/570X/580/580X/590]")
        );
        // Subsystem lines are not device lines.
        assert_eq!(ids.device(0x1002, 0x1002), None);
        assert_eq!(ids.device(0x10de, 0x9999), None);
        assert_eq!(ids.vendor(0x1234), None);
        // Cached answers agree.
        assert_eq!(ids.vendor(0x10de).as_deref(), Some("NVIDIA Corporation"));
    }

    #[test]
    fn trimmed_copy_answers_the_same() {
        let ids = PciIds::new(SAMPLE.to_string());
        let _ = ids.device(0x10de, 0x0fba);
        let _ = ids.device(0x10de, 0x9999);
        let small = PciIds::new(ids.trimmed());
        assert_eq!(small.vendor(0x10de), ids.vendor(0x10de));
        assert_eq!(small.device(0x10de, 0x0fba), ids.device(0x10de, 0x0fba));
        assert_eq!(small.vendor(0x1002), None);
        assert!(ids.trimmed().len() < SAMPLE.len());
    }

    #[test]
    fn empty_database_answers_none() {
        let ids = PciIds::empty();
        assert_eq!(ids.vendor(0x10de), None);
        assert_eq!(ids.device(0x10de, 0x1401), None);
    }
}
