//! The `pci.ids` / `usb.ids` format, searched lazily: both files list
//! vendors (`vvvv  Vendor`) with their devices or products indented by one
//! tab (two tabs: subsystems or interfaces), then other sections (`C 03
//! Display controller`, …) whose lines are never taken for vendors.
//!
//! The file is not read whole. The first lookup streams it once through a
//! small buffer (one pass over the line ends, stopping where the vendor list
//! ends) to index where each vendor's block starts and ends; a lookup then
//! reads that vendor's block alone (one `pread`) and searches the item line
//! inside it. Blocks and results are cached, so a host with 4096 functions
//! of three vendors reads three blocks. Reading the whole 1.3 MB `pci.ids`
//! into fresh memory cost about 1.2 ms per run (page faults and a cold
//! copy); the stream through a 64 KiB buffer that stays in cache costs about
//! 0.5 ms, and the vendor blocks a host needs a few dozen KiB.
//!
//! A text given in memory ([`IdsDb::new`]: tests, a pasted `pci.ids`) is
//! indexed by the same pass.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Where the text comes from.
#[derive(Debug)]
enum Source {
    Text(String),
    /// An open regular file of `len` bytes (its size when opened).
    File {
        file: File,
        len: u64,
    },
}

impl Default for Source {
    fn default() -> Self {
        Self::Text(String::new())
    }
}

impl Source {
    /// Up to `buf.len()` bytes at `offset` (fewer only at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match self {
            Self::Text(t) => {
                let bytes = t.as_bytes();
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                let n = buf.len().min(bytes.len() - start);
                buf[..n].copy_from_slice(&bytes[start..start + n]);
                Ok(n)
            }
            Self::File { file, .. } => {
                let mut done = 0;
                while done < buf.len() {
                    match file.read_at(&mut buf[done..], offset + done as u64) {
                        Ok(0) => break,
                        Ok(n) => done += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(done)
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Self::Text(t) => t.is_empty(),
            Self::File { len, .. } => *len == 0,
        }
    }
}

/// A lazily-searched ids text.
#[derive(Debug, Default)]
pub struct IdsDb {
    /// The file's name, for the header of [`IdsDb::trimmed`].
    name: &'static str,
    source: Source,
    /// The vendor list's index, made by the first lookup.
    index: OnceCell<Index>,
    /// The vendors looked up so far, each one's block read.
    vendors: RefCell<HashMap<u16, Option<Block>>>,
    items: RefCell<HashMap<(u16, u16), Option<String>>>,
}

/// One vendor's block: its vendor line and the indented lines under it.
#[derive(Debug)]
struct Block {
    text: String,
    /// Where each item's name lies in `text` (one tab, four lower-case
    /// digits, two spaces: the first line of that id), indexed when the
    /// block is read, so that a vendor with dozens of devices on the host
    /// is searched once, not once per device.
    items: HashMap<u16, (usize, usize)>,
}

impl Block {
    fn new(text: String) -> Self {
        let mut items = HashMap::new();
        let bytes = text.as_bytes();
        for nl in memchr::memchr_iter(b'\n', bytes) {
            let line = &bytes[nl + 1..];
            if line.len() < 7 || line[0] != b'\t' || &line[5..7] != b"  " {
                continue;
            }
            let digits = &line[1..5];
            if !digits
                .iter()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                continue;
            }
            let Some(id) = std::str::from_utf8(digits)
                .ok()
                .and_then(|h| u16::from_str_radix(h, 16).ok())
            else {
                continue;
            };
            let start = nl + 8;
            let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i);
            items.entry(id).or_insert((start, end));
        }
        Self { text, items }
    }
}

/// The buffer the index pass streams the text through.
const CHUNK: usize = 64 << 10;

/// Where each vendor's block lies.
#[derive(Debug, Default, PartialEq, Eq)]
struct Index {
    /// Each vendor line written with lower-case digits (as lookups spell
    /// it), the first one where an id appears twice: (start of the line,
    /// start of the next top-level line or `vendor_end`).
    blocks: HashMap<u16, (u64, u64)>,
    /// The end of the vendor list: the start of the first line that is not
    /// a vendor line, an indented line, a comment or empty (another
    /// section), or the text's end.
    vendor_end: u64,
}

impl Index {
    /// One pass over the lines of `src`, read `chunk` bytes at a time. Of
    /// each line only its first six bytes are looked at. A read error ends
    /// the pass with an empty index: no names rather than wrong ones.
    fn scan(src: &Source, chunk: usize) -> Self {
        Self::try_scan(src, chunk).unwrap_or_default()
    }

    fn try_scan(src: &Source, chunk: usize) -> io::Result<Self> {
        let mut blocks = HashMap::new();
        // The vendor whose block is open: id (`None`: an id seen before or
        // written in capitals, whose block is not kept) and start.
        let mut open: Option<(Option<u16>, u64)> = None;
        let close = |blocks: &mut HashMap<u16, (u64, u64)>,
                     open: &mut Option<(Option<u16>, u64)>,
                     end: u64| {
            if let Some((Some(v), start)) = open.take() {
                blocks.entry(v).or_insert((start, end));
            }
        };
        // The line being read: where it starts and its first bytes.
        let mut start: u64 = 0;
        let mut head = [0u8; 6];
        let mut head_len = 0;
        // Decide one whole line (`head` holds its first bytes); false when
        // it ends the vendor list.
        let line = |blocks: &mut HashMap<u16, (u64, u64)>,
                    open: &mut Option<(Option<u16>, u64)>,
                    start: u64,
                    head: &[u8]|
         -> bool {
            match head.first() {
                None | Some(b'\t' | b'#' | b'\n' | b'\r') => return true,
                Some(_) => {}
            }
            if !is_vendor_line(head) {
                return false;
            }
            close(blocks, open, start);
            let id = head[..4]
                .iter()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                .then(|| std::str::from_utf8(&head[..4]).ok())
                .flatten()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            *open = Some((id, start));
            true
        };
        let mut buf = vec![0u8; chunk.max(1)];
        let mut offset: u64 = 0;
        let vendor_end = 'text: loop {
            let n = src.read_at(&mut buf, offset)?;
            if n == 0 {
                // The last line, when the text does not end with a newline.
                if offset > start && !line(&mut blocks, &mut open, start, &head[..head_len]) {
                    break 'text start;
                }
                break 'text offset;
            }
            let data = &buf[..n];
            let mut at = 0;
            for nl in memchr::memchr_iter(b'\n', data) {
                let take = (nl - at).min(head.len() - head_len);
                head[head_len..head_len + take].copy_from_slice(&data[at..at + take]);
                head_len += take;
                if !line(&mut blocks, &mut open, start, &head[..head_len]) {
                    break 'text start;
                }
                at = nl + 1;
                start = offset + at as u64;
                head_len = 0;
            }
            let take = (n - at).min(head.len() - head_len);
            head[head_len..head_len + take].copy_from_slice(&data[at..at + take]);
            head_len += take;
            offset += n as u64;
        };
        close(&mut blocks, &mut open, vendor_end);
        Ok(Self { blocks, vendor_end })
    }
}

/// Whether `line` is a vendor line: four hex digits, two spaces.
fn is_vendor_line(line: &[u8]) -> bool {
    line.len() >= 6 && line[..4].iter().all(u8::is_ascii_hexdigit) && &line[4..6] == b"  "
}

/// The most a vendor block may take (the largest, Intel's in `pci.ids`, is
/// about 150 KiB; a file that grew past the ids files' limit since it was
/// opened is not followed there).
const BLOCK_LIMIT: u64 = super::readfile::LARGE_LIMIT;

impl IdsDb {
    pub fn new(name: &'static str, text: String) -> Self {
        Self {
            name,
            source: Source::Text(text),
            ..Self::default()
        }
    }

    /// Names from an open regular file of `len` bytes, read as lookups need
    /// it (see the module's note).
    pub fn from_file(name: &'static str, file: File, len: u64) -> Self {
        Self {
            name,
            source: Source::File { file, len },
            ..Self::default()
        }
    }

    #[cfg(test)]
    pub(super) fn text(&self) -> &str {
        match &self.source {
            Source::Text(t) => t,
            Source::File { .. } => "",
        }
    }

    pub fn is_empty(&self) -> bool {
        self.source.is_empty()
    }

    /// The end of the vendor list: the start of the first line that is not
    /// a vendor line, an indented line, a comment or empty.
    #[cfg(test)]
    pub(super) fn vendor_end(&self) -> usize {
        usize::try_from(self.index().vendor_end).unwrap_or(usize::MAX)
    }

    fn index(&self) -> &Index {
        self.index.get_or_init(|| Index::scan(&self.source, CHUNK))
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

    /// `f` of the vendor's block (its vendor line and the indented lines
    /// under it, up to the next vendor), read once and kept.
    fn with_block<T>(&self, vendor: u16, f: impl FnOnce(&Block) -> Option<T>) -> Option<T> {
        if let Some(b) = self.vendors.borrow().get(&vendor) {
            return f(b.as_ref()?);
        }
        let block = self
            .index()
            .blocks
            .get(&vendor)
            .and_then(|&(start, end)| self.read_block(vendor, start, end))
            .map(Block::new);
        let mut vendors = self.vendors.borrow_mut();
        let b = vendors.entry(vendor).or_insert(block);
        f(b.as_ref()?)
    }

    /// The text from `start` to `end`, when it still starts with the
    /// vendor's line (a file rewritten in place since the index was made
    /// gives no name rather than another vendor's).
    fn read_block(&self, vendor: u16, start: u64, end: u64) -> Option<String> {
        let len = end.checked_sub(start).filter(|l| *l <= BLOCK_LIMIT)?;
        let mut buf = vec![0u8; usize::try_from(len).ok()?];
        let n = self.source.read_at(&mut buf, start).ok()?;
        buf.truncate(n);
        let text = match String::from_utf8(buf) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        text.starts_with(&format!("{vendor:04x}  ")).then_some(text)
    }

    pub fn vendor(&self, vendor: u16) -> Option<String> {
        self.with_block(vendor, |block| {
            let line = block.text.lines().next()?;
            Some(line.get(6..)?.trim().to_string()).filter(|s| !s.is_empty())
        })
    }

    pub fn item(&self, vendor: u16, product: u16) -> Option<String> {
        if let Some(v) = self.items.borrow().get(&(vendor, product)) {
            return v.clone();
        }
        let name = self.with_block(vendor, |block| {
            let &(start, end) = block.items.get(&product)?;
            let name = String::from_utf8_lossy(&block.text.as_bytes()[start..end])
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The index does not depend on where the stream's reads end: a
        /// line split across reads (down to one byte per read) is indexed
        /// as one read of the whole text indexes it.
        #[test]
        fn the_index_does_not_depend_on_the_chunk_size(
            lines in prop::collection::vec(prop::sample::select(vec![
                "0a0a  Vendor A", "aaaa  ", "0c0a  Vendor C\r", "\t0a0a  Product", "\taaaa  P2 ",
                "\t0c0a  ", "# comment", "", "C 0a  Class", "0a0a", "x", "0000  Zero",
                "00AA  Capitals", "0a0a  Again", "\r",
            ]), 0..24),
            trailing_newline in any::<bool>(),
            chunk in 1usize..16,
        ) {
            let mut text = lines.join("\n");
            if trailing_newline {
                text.push('\n');
            }
            let src = Source::Text(text.clone());
            let whole = Index::scan(&src, text.len().max(1));
            prop_assert_eq!(Index::scan(&src, chunk), whole);
        }
    }

    /// The same answers from a file as from the text in memory, reading
    /// only the blocks looked up.
    #[test]
    fn a_file_answers_like_its_text() -> Result<(), Box<dyn std::error::Error>> {
        let text = "# ids\n1002  AMD\n\t67df  Ellesmere\n10de  NVIDIA Corporation\n\t1401  GM206\nC 03  Display\n";
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("pci.ids");
        std::fs::write(&path, text)?;
        let file = IdsDb::from_file("pci.ids", File::open(&path)?, text.len() as u64);
        let mem = IdsDb::new("pci.ids", text.to_string());
        for (v, p) in [
            (0x10de, 0x1401),
            (0x1002, 0x67df),
            (0x10de, 0x67df),
            (0x1234, 1),
        ] {
            assert_eq!(file.vendor(v), mem.vendor(v));
            assert_eq!(file.item(v, p), mem.item(v, p));
        }
        assert_eq!(file.vendor(0x10de).as_deref(), Some("NVIDIA Corporation"));
        assert_eq!(file.trimmed(), mem.trimmed());
        assert!(!file.is_empty());
        Ok(())
    }

    /// A file rewritten in place after it was indexed gives no name rather
    /// than the name of whatever now lies at the vendor's offset.
    #[test]
    fn a_file_rewritten_in_place_gives_no_wrong_name() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("pci.ids");
        std::fs::write(&path, "1002  AMD\n10de  NVIDIA\n\t1401  GM206\n")?;
        let db = IdsDb::from_file("pci.ids", File::open(&path)?, 36);
        assert_eq!(db.vendor(0x1002).as_deref(), Some("AMD"));
        std::fs::write(&path, "1af4  Red Hat, Inc.\n10de  NVIDIA\n")?;
        assert_eq!(db.vendor(0x10de), None);
        assert_eq!(db.item(0x10de, 0x1401), None);
        Ok(())
    }
}
