//! The `pci.ids` / `usb.ids` format, searched lazily: both files list
//! vendors (`vvvv  Vendor`) with their devices or products indented by one
//! tab (two tabs: subsystems or interfaces), then other sections (`C 03
//! Display controller`, …) whose lines are never taken for vendors.
//!
//! The text is read once but not parsed: the first lookup walks the
//! top-level lines once (one pass over the line ends) to index where each
//! vendor's block starts and ends, and where the vendor list ends; a lookup
//! then searches the item line inside that vendor's block only. Results are
//! cached, so a host with 4096 functions of three vendors searches a few
//! blocks a few times.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;

/// A lazily-searched ids text.
#[derive(Debug, Default)]
pub struct IdsDb {
    /// The file's name, for the header of [`IdsDb::trimmed`].
    name: &'static str,
    text: String,
    /// The vendor list's index, made by the first lookup.
    index: OnceCell<Index>,
    /// The vendors looked up so far (for [`IdsDb::trimmed`]).
    vendors: RefCell<HashMap<u16, Option<(usize, usize)>>>,
    items: RefCell<HashMap<(u16, u16), Option<String>>>,
}

/// Where each vendor's block lies.
#[derive(Debug, Default)]
struct Index {
    /// Each vendor line written with lower-case digits (as lookups spell
    /// it), the first one where an id appears twice: (start of the line,
    /// start of the next top-level line or `vendor_end`).
    blocks: HashMap<u16, (usize, usize)>,
}

impl Index {
    fn new(bytes: &[u8]) -> Self {
        Self::with_vendor_end(bytes).0
    }

    /// The index, and the end of the vendor list: the start of the first
    /// line that is not a vendor line, an indented line, a comment or empty
    /// (another section), or the text's end.
    fn with_vendor_end(bytes: &[u8]) -> (Self, usize) {
        let mut blocks = HashMap::new();
        // The vendor whose block is open: id (`None`: an id seen before or
        // written in capitals, whose block is not kept) and start.
        let mut open: Option<(Option<u16>, usize)> = None;
        let mut close = |open: &mut Option<(Option<u16>, usize)>, end: usize| {
            if let Some((Some(v), start)) = open.take() {
                blocks.entry(v).or_insert((start, end));
            }
        };
        let mut vendor_end = bytes.len();
        let starts = std::iter::once(0).chain(memchr::memchr_iter(b'\n', bytes).map(|i| i + 1));
        for pos in starts {
            match bytes.get(pos) {
                None | Some(b'\t' | b'#' | b'\n' | b'\r') => continue,
                Some(_) => {}
            }
            let line = &bytes[pos..];
            let line = &line[..memchr::memchr(b'\n', line).unwrap_or(line.len())];
            if !is_vendor_line(line) {
                vendor_end = pos;
                break;
            }
            close(&mut open, pos);
            let id = line[..4]
                .iter()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                .then(|| std::str::from_utf8(&line[..4]).ok())
                .flatten()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            open = Some((id, pos));
        }
        close(&mut open, vendor_end);
        (Self { blocks }, vendor_end)
    }
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
    #[cfg(test)]
    pub(super) fn vendor_end(&self) -> usize {
        Index::with_vendor_end(self.text.as_bytes()).1
    }

    fn index(&self) -> &Index {
        self.index.get_or_init(|| Index::new(self.text.as_bytes()))
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
        // The block ends at the next line that is not indented, a comment
        // or empty: the next vendor (or the vendor list's end).
        let block = self.index().blocks.get(&vendor).copied();
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
