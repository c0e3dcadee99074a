//! The `pci.ids` / `usb.ids` format, searched lazily: both files list
//! vendors (`vvvv  Vendor`) with their devices or products indented by one
//! tab (two tabs: subsystems or interfaces), then other sections (`C 03
//! Display controller`, …) whose lines are never taken for vendors.
//!
//! The text is read once but not parsed: a lookup scans for the vendor's
//! line at the start of a line, then the item line inside that vendor's
//! block. Results are cached, so a host with 4096 functions of three
//! vendors scans the file a handful of times.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// A lazily-searched ids text.
#[derive(Debug, Default)]
pub struct IdsDb {
    /// The file's name, for the header of [`IdsDb::trimmed`].
    name: &'static str,
    text: String,
    /// Where the vendor list ends (the first line of another section).
    vendor_end: Cell<Option<usize>>,
    vendors: RefCell<HashMap<u16, Option<(usize, usize)>>>,
    items: RefCell<HashMap<(u16, u16), Option<String>>>,
}

/// Whether `line` is a vendor line: four hex digits, two spaces.
fn is_vendor_line(line: &[u8]) -> bool {
    line.len() >= 6 && line[..4].iter().all(u8::is_ascii_hexdigit) && &line[4..6] == b"  "
}

impl IdsDb {
    pub fn new(name: &'static str, text: String) -> Self {
        Self {
            name,
            text,
            ..Self::default()
        }
    }

    #[cfg(test)]
    pub(super) fn text(&self) -> &str {
        &self.text
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The end of the vendor list: the start of the first line that is not
    /// a vendor line, an indented line, a comment or empty.
    pub(super) fn vendor_end(&self) -> usize {
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

    /// A copy holding only the vendor and item lines looked up so
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
        let items = self.items.borrow();
        let mut out = format!(
            "# {} entries used by exliar when this snapshot was taken\n",
            self.name
        );
        for v in vendors {
            // A vendor line without a name still holds its items.
            let vn = self.vendor(v).unwrap_or_default();
            out.push_str(&format!("{v:04x}  {vn}\n"));
            let mut ps: Vec<(u16, &String)> = items
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

    pub fn item(&self, vendor: u16, product: u16) -> Option<String> {
        if let Some(v) = self.items.borrow().get(&(vendor, product)) {
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
        self.items
            .borrow_mut()
            .insert((vendor, product), name.clone());
        name
    }
}
