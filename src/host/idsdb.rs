//! The `pci.ids` / `usb.ids` format, searched lazily: both files list
//! vendors (`vvvv  Vendor`) with their devices or products indented by one
//! tab (two tabs: subsystems or interfaces), then other sections (`C 03
//! Display controller`, …) whose lines are never taken for vendors.
//!
//! The file is not read into memory. A vendor's line is found by a binary
//! search over the vendor list, which both files keep sorted: a dozen
//! probes reading outwards from a point until a vendor line (a few hundred
//! bytes each, more inside a large block such as Intel's). The block is
//! then streamed through a small buffer to its end, indexing where each
//! item's line lies, and a name is read with one `pread` of its line when
//! it is first asked for. Where the search misses (a vendor that is not
//! listed, or a list out of order), one pass over the whole file indexes
//! every vendor's block, and that index answers from then on. Results are
//! cached, so a host with 4096 functions of three vendors streams three
//! blocks. Reading the whole 1.3 MB `pci.ids` into fresh memory cost about
//! 1.2 ms per run (page faults and a cold copy). The names of the
//! 60-function bench host (two vendors, ten devices) took 1.0–1.1 ms when
//! the whole file was streamed to index every vendor, and take 0.5–0.7 ms
//! with the search (Intel's 372 KB block and NVIDIA's 100 KB are most of
//! the 714 KB read).
//!
//! A text given in memory ([`IdsDb::new`]: tests, a pasted `pci.ids`) is
//! read by the same passes.

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
        self.len() == 0
    }

    /// The text's length (a file's: its size when it was opened).
    fn len(&self) -> u64 {
        match self {
            Self::Text(t) => t.len() as u64,
            Self::File { len, .. } => *len,
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

/// One vendor's block, indexed: its name, and where each item's line lies.
#[derive(Debug)]
struct Block {
    name: Option<String>,
    /// Where the block starts in the text.
    start: u64,
    /// Each item's first line (one tab, four lower-case digits, two spaces:
    /// the first line of that id), sorted by id: (id, where its name starts,
    /// counted from `start`, and how far its name may reach: to the end of
    /// the subsystem lines under it). Indexed
    /// once, so that a vendor with dozens of devices on the host is streamed
    /// once, not once per device.
    items: Vec<(u16, u32, u32)>,
}

/// Four lower-case hex digits (as lookups spell ids), read as a number.
fn lower_hex_id(digits: &[u8]) -> Option<u16> {
    let digits: &[u8; 4] = digits.try_into().ok()?;
    let mut id = 0u16;
    for &b in digits {
        let n = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        id = id << 4 | u16::from(n);
    }
    Some(id)
}

/// Each line of `src` from `from` up to `to` (or the text's end), read
/// `buf.len()` bytes at a time: `f(start, head, end)` with where the line
/// starts, its first `HEAD` bytes (fewer when it is shorter) and where it
/// ends (its newline, or the end of what is read). A line starting with
/// `fold` (when not empty) is folded into the line before it, which then
/// ends where the last line folded into it ends: the index pass skips the
/// indented lines, 95% of `pci.ids`, and a vendor's block its subsystem
/// lines, without a call for each. A line may still reach `f` unfolded
/// where a read ends right after its newline.
/// A line that `f` answers false to ends the pass, which returns that
/// line's start; otherwise the end of what was read.
fn for_each_line<const HEAD: usize>(
    src: &Source,
    from: u64,
    to: u64,
    buf: &mut [u8],
    fold: &[u8],
    mut f: impl FnMut(u64, &[u8], u64) -> bool,
) -> io::Result<u64> {
    let mut start = from;
    let mut head = [0u8; HEAD];
    let mut head_len = 0;
    let mut offset = from;
    loop {
        let want = usize::try_from(to.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = if want == 0 {
            0
        } else {
            src.read_at(&mut buf[..want], offset)?
        };
        if n == 0 {
            // The last line, when the text does not end with a newline.
            if offset > start && !f(start, &head[..head_len], offset) {
                return Ok(start);
            }
            return Ok(offset);
        }
        let data = &buf[..n];
        let mut at = 0;
        let mut stopped = false;
        line_ends(data, fold, |nl| {
            let take = nl.saturating_sub(at).min(HEAD - head_len);
            head[head_len..head_len + take].copy_from_slice(&data[at..at + take]);
            head_len += take;
            if !f(start, &head[..head_len], offset + nl as u64) {
                stopped = true;
                return false;
            }
            at = nl + 1;
            start = offset + at as u64;
            head_len = 0;
            true
        });
        if stopped {
            return Ok(start);
        }
        let take = (n - at).min(HEAD - head_len);
        head[head_len..head_len + take].copy_from_slice(&data[at..at + take]);
        head_len += take;
        offset += n as u64;
    }
}

/// `f` of each newline in `data`, in order, except those followed by
/// `fold` when it is not empty (a newline whose following bytes are not
/// all in `data` is always given); stops when `f` answers false. Sixteen
/// bytes at a time: `pci.ids` has 40 000 lines of 34 bytes on average, and
/// a search call per line (`memchr_iter`) cost more in its set-up than in
/// its search (4.9 M instructions of a 21 M scan; 8-byte SWAR words still
/// 3.5 M).
fn line_ends(data: &[u8], fold: &[u8], mut f: impl FnMut(usize) -> bool) {
    let mut i = 0;
    // Whole blocks with the bytes after them (for `fold`) inside `data`.
    while i + 16 + fold.len() <= data.len() {
        // The folded newlines are taken out before the only branch on the
        // data: half of the 16-byte blocks of `pci.ids` hold a newline, so a
        // branch on that was mispredicted about every other block, while
        // one in 35 holds a line that is not folded (a vendor's).
        let mut m = eq16(&data[i..], b'\n');
        if !fold.is_empty() {
            let mut folded = u32::MAX;
            for (j, &c) in fold.iter().enumerate() {
                folded &= eq16(&data[i + 1 + j..], c);
            }
            m &= !folded;
        }
        while m != 0 {
            let nl = i + m.trailing_zeros() as usize;
            m &= m - 1;
            if !f(nl) {
                return;
            }
        }
        i += 16;
    }
    for nl in i..data.len() {
        let folded = !fold.is_empty() && data.get(nl + 1..nl + 1 + fold.len()) == Some(fold);
        if data[nl] == b'\n' && !folded && !f(nl) {
            return;
        }
    }
}

/// Bit k set where the (k+1)th of the first 16 bytes of `data` is `b` (no
/// bits when `data` is shorter).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn eq16(data: &[u8], b: u8) -> u32 {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    let Some(block) = data.first_chunk::<16>() else {
        return 0;
    };
    // SAFETY: SSE2 is part of the x86_64 baseline, so every x86_64 CPU has
    // these instructions; the unaligned load reads the 16 bytes of `block`.
    let mask = unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast());
        _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8)))
    };
    mask as u32 & 0xffff
}

#[cfg(not(target_arch = "x86_64"))]
fn eq16(data: &[u8], b: u8) -> u32 {
    eq16_portable(data, b)
}

/// [`eq16`] a byte at a time: other architectures, and the check of the
/// SSE2 one.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn eq16_portable(data: &[u8], b: u8) -> u32 {
    data.first_chunk::<16>().map_or(0, |block| {
        block
            .iter()
            .enumerate()
            .filter(|&(_, &x)| x == b)
            .fold(0, |m, (k, _)| m | 1 << k)
    })
}

impl Block {
    /// Stream the block from `start` to `end`, `chunk` bytes at a time.
    /// None when it does not start with the vendor's line (a file rewritten
    /// in place since the index was made gives no name rather than another
    /// vendor's) or cannot be read.
    /// The block ends at `end` at the latest: where the index says it
    /// ends, or the text's end for a block found by [`seek_vendor`]; it
    /// ends before at the next top-level line (the index ends blocks there
    /// too).
    fn read(src: &Source, vendor: u16, start: u64, end: u64, chunk: usize) -> Option<Self> {
        let to = end.min(start.saturating_add(BLOCK_LIMIT + 1));
        let len = to.checked_sub(start)?;
        let want = format!("{vendor:04x}  ");
        let mut name_at = None;
        let mut items = Vec::new();
        let mut buf = vec![0u8; chunk.clamp(1, usize::try_from(len).ok()?.max(1))];
        let block_end = for_each_line::<7>(src, start, to, &mut buf, b"\t\t", |s, head, e| {
            let (Ok(at), Ok(n)) = (u32::try_from(s + 7 - start), u32::try_from(e - s)) else {
                return false;
            };
            if name_at.is_none() {
                if !head.starts_with(want.as_bytes()) {
                    return false;
                }
                name_at = Some((s + 6, e));
                return true;
            }
            if head.first().is_some_and(|&b| is_top_level(b)) {
                return false;
            }
            if head.len() == 7
                && head[0] == b'\t'
                && &head[5..7] == b"  "
                && let Some(id) = lower_hex_id(&head[1..5])
            {
                items.push((id, at, n - 7));
            }
            true
        })
        .ok()?;
        if block_end - start > BLOCK_LIMIT {
            return None;
        }
        let (name_start, name_end) = name_at?;
        // The first line of an id is the one kept.
        items.sort_by_key(|i| i.0);
        items.dedup_by_key(|i| i.0);
        let name = read_line(src, name_start, name_end)?;
        Some(Self {
            name: Some(name.trim().to_string()).filter(|n| !n.is_empty()),
            start,
            items,
        })
    }

    /// The item's name: its line read again, and checked to be still that
    /// item's line.
    fn item(&self, src: &Source, product: u16) -> Option<String> {
        let i = self.items.binary_search_by_key(&product, |i| i.0).ok()?;
        let (_, at, len) = self.items[i];
        let from = self.start + u64::from(at) - 7;
        let line = read_line(src, from, from + 7 + u64::from(len))?;
        let name = line.strip_prefix(&format!("\t{product:04x}  "))?.trim();
        Some(name.to_string()).filter(|n| !n.is_empty())
    }
}

/// The line starting at `from`, up to its newline or `to` (invalid UTF-8
/// replaced); None when the text ends before. Names in `pci.ids` are
/// under 200 bytes: a first read of 256 bytes finds the newline.
fn read_line(src: &Source, from: u64, to: u64) -> Option<String> {
    let most = usize::try_from(to.checked_sub(from)?).ok()?;
    let mut len = most.min(256);
    loop {
        let mut buf = vec![0u8; len];
        let n = src.read_at(&mut buf, from).ok()?;
        if n < len {
            return None;
        }
        let nl = memchr::memchr(b'\n', &buf);
        if nl.is_some() || len == most {
            buf.truncate(nl.unwrap_or(len));
            return Some(match String::from_utf8(buf) {
                Ok(s) => s,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            });
        }
        len = most;
    }
}

/// The buffer the passes stream the text through.
const CHUNK: usize = 64 << 10;

/// Where each vendor's block lies.
#[derive(Debug, Default, PartialEq, Eq)]
struct Index {
    /// Each vendor line written with lower-case digits (as lookups spell
    /// it), the first one where an id appears twice, sorted by id: (id,
    /// start of the line, start of the next top-level line or
    /// `vendor_end`). A sorted list, not a map: 2300 vendors in 56 KB,
    /// where a growing map rehashed into more memory as it grew.
    blocks: Vec<(u16, u64, u64)>,
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
        let mut blocks = Vec::new();
        // The vendor whose block is open: id (`None`: written in capitals,
        // not kept) and start.
        let mut open: Option<(Option<u16>, u64)> = None;
        let mut buf = vec![0u8; chunk.max(1)];
        let vendor_end =
            for_each_line::<6>(src, 0, u64::MAX, &mut buf, b"\t", |start, head, _| {
                if !head.first().is_some_and(|&b| is_top_level(b)) {
                    return true;
                }
                if !is_vendor_line(head) {
                    return false;
                }
                if let Some((Some(v), s)) = open.take() {
                    blocks.push((v, s, start));
                }
                open = Some((lower_hex_id(&head[..4]), start));
                true
            })?;
        if let Some((Some(v), s)) = open {
            blocks.push((v, s, vendor_end));
        }
        // A stable sort: of an id listed twice, the first block is kept.
        blocks.sort_by_key(|b| b.0);
        blocks.dedup_by_key(|b| b.0);
        Ok(Self { blocks, vendor_end })
    }

    fn block(&self, vendor: u16) -> Option<(u64, u64)> {
        let i = self.blocks.binary_search_by_key(&vendor, |b| b.0).ok()?;
        Some((self.blocks[i].1, self.blocks[i].2))
    }
}

/// Whether `line` is a vendor line: four hex digits, two spaces.
fn is_vendor_line(line: &[u8]) -> bool {
    line.len() >= 6 && line[..4].iter().all(u8::is_ascii_hexdigit) && &line[4..6] == b"  "
}

/// Whether a line starting with `first` is a top-level line: a vendor's,
/// or one of another section (not indented, a comment or empty).
fn is_top_level(first: u8) -> bool {
    !matches!(first, b'\t' | b'#' | b'\n' | b'\r')
}

/// Where a top-level line sorts in the vendor list: its id for a vendor
/// line (either case), after every vendor for any other (the sections
/// after the list).
fn top_level_key(head: &[u8]) -> u32 {
    if is_vendor_line(head) {
        head[..4]
            .iter()
            .fold(0, |k, &b| k << 4 | (b as char).to_digit(16).unwrap_or(0))
    } else {
        u32::MAX
    }
}

/// What a probe reads on each side first; each round reads twice as much.
const PROBE: u64 = 512;

/// The top-level line nearest to `mid` among those starting in `[lo,
/// hi)`: its start and [`top_level_key`]. Read outwards from `mid`, a
/// little on each side and then twice as much each round, so that a probe
/// costs about twice the distance to the nearest vendor line (inside
/// Intel's 372 KB block, up to that; elsewhere a few hundred bytes).
fn probe(src: &Source, lo: u64, hi: u64, mid: u64) -> io::Result<Option<(u64, u32)>> {
    // Line starts still to look at: `[lo, left)` and `[right, hi)`.
    let mut left = mid + 1;
    let mut right = mid + 1;
    let mut step = PROBE;
    let mut buf = Vec::new();
    // The line at `p` (read from `data`, which starts at `at`, or again
    // when it does not hold the line's first six bytes): its key when it
    // is a top-level line.
    let key_at = |p: u64, data: &[u8], at: u64| -> io::Result<Option<u32>> {
        let from = usize::try_from(p - at).unwrap_or(usize::MAX);
        let mut head = [0u8; 6];
        let n = match data.get(from..) {
            Some(rest) if rest.len() >= 6 => {
                head.copy_from_slice(&rest[..6]);
                6
            }
            _ => src.read_at(&mut head, p)?,
        };
        Ok(match head[..n].first() {
            Some(&b) if is_top_level(b) => Some(top_level_key(&head[..n])),
            _ => None,
        })
    };
    while left > lo || right < hi {
        if left > lo {
            // The starts in `[from, left)`: each follows a newline in
            // `[from - 1, left - 1)`, or is the text's first byte.
            let from = left.saturating_sub(step).max(lo);
            let at = from.saturating_sub(1);
            buf.resize(usize::try_from(left + 6 - at).unwrap_or(0), 0);
            let n = src.read_at(&mut buf, at)?;
            let data = &buf[..n];
            let end = usize::try_from(left - 1 - at).unwrap_or(0).min(n);
            for nl in memchr::memrchr_iter(b'\n', &data[..end]) {
                let p = at + nl as u64 + 1;
                if p < from {
                    break;
                }
                if let Some(k) = key_at(p, data, at)? {
                    return Ok(Some((p, k)));
                }
            }
            if from == 0
                && let Some(k) = key_at(0, data, at)?
            {
                return Ok(Some((0, k)));
            }
            left = from;
        }
        if right < hi {
            // The starts in `[right, to)`: each follows a newline in
            // `[right - 1, to - 1)`.
            let to = right.saturating_add(step).min(hi);
            let at = right - 1;
            buf.resize(usize::try_from(to + 6 - at).unwrap_or(0), 0);
            let n = src.read_at(&mut buf, at)?;
            let data = &buf[..n];
            let end = usize::try_from(to - 1 - at).unwrap_or(0).min(n);
            for nl in memchr::memchr_iter(b'\n', &data[..end]) {
                let p = at + nl as u64 + 1;
                if let Some(k) = key_at(p, data, at)? {
                    return Ok(Some((p, k)));
                }
            }
            right = to;
        }
        step = step.saturating_mul(2);
    }
    Ok(None)
}

/// The start of `vendor`'s line, found by a binary search over the vendor
/// list, which `pci.ids` and `usb.ids` keep sorted ("Please keep
/// sorted"): a dozen probes of a few hundred bytes, where the index pass
/// streams the whole 1.3 MB file. None when the search does not find the
/// line; in a file that is not sorted it may miss a vendor that is there,
/// and the caller falls back to the index. Of a vendor listed twice (the
/// index keeps the first), either line may be found.
fn seek_vendor(src: &Source, vendor: u16) -> io::Result<Option<u64>> {
    let want = u32::from(vendor);
    // Every top-level line starting before `lo` sorts before `vendor`, and
    // every one starting at or after `hi` after it.
    let (mut lo, mut hi) = (0, src.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let Some((s, k)) = probe(src, lo, hi, mid)? else {
            return Ok(None);
        };
        // The probe saw no top-level line between `s` and `mid`.
        match (k.cmp(&want), s <= mid) {
            (std::cmp::Ordering::Equal, _) => return Ok(Some(s)),
            (std::cmp::Ordering::Less, true) => lo = mid + 1,
            (std::cmp::Ordering::Less, false) => lo = s + 1,
            (std::cmp::Ordering::Greater, true) => hi = s,
            (std::cmp::Ordering::Greater, false) => hi = mid,
        }
    }
    Ok(None)
}

/// The buffer a block found by [`seek_vendor`] streams through: its end is
/// not known, and most blocks are a few hundred bytes.
const SEEK_CHUNK: usize = 16 << 10;

/// The most a vendor block may take (the largest, Intel's in `pci.ids`, is
/// about 370 KiB; a file that grew past the ids files' limit since it was
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

    #[cfg(test)]
    pub(super) fn reads_a_file(&self) -> bool {
        matches!(self.source, Source::File { .. })
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

    /// `f` of the vendor's block, read once and kept.
    fn with_block<T>(&self, vendor: u16, f: impl FnOnce(&Block) -> Option<T>) -> Option<T> {
        if self.source.is_empty() {
            return None;
        }
        if let Some(b) = self.vendors.borrow().get(&vendor) {
            return f(b.as_ref()?);
        }
        let from_index = |index: &Index| {
            index
                .block(vendor)
                .and_then(|(start, end)| Block::read(&self.source, vendor, start, end, CHUNK))
        };
        // Once the index is made (a search missed), it answers; before, the
        // search, and the index where the search finds nothing.
        let block = match self.index.get() {
            Some(index) => from_index(index),
            None => seek_vendor(&self.source, vendor)
                .ok()
                .flatten()
                .and_then(|start| Block::read(&self.source, vendor, start, u64::MAX, SEEK_CHUNK))
                .or_else(|| from_index(self.index())),
        };
        let mut vendors = self.vendors.borrow_mut();
        let b = vendors.entry(vendor).or_insert(block);
        f(b.as_ref()?)
    }

    pub fn vendor(&self, vendor: u16) -> Option<String> {
        self.with_block(vendor, |block| block.name.clone())
    }

    pub fn item(&self, vendor: u16, product: u16) -> Option<String> {
        // No text (a near read for binding has none): no search, no index,
        // no caches. Their first run cost 1.2–1.5 ms of a bind under TCG.
        if self.source.is_empty() {
            return None;
        }
        if let Some(v) = self.items.borrow().get(&(vendor, product)) {
            return v.clone();
        }
        let name = self.with_block(vendor, |block| block.item(&self.source, product));
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

    proptest! {
        /// A vendor's block is indexed as a plain reading of the text
        /// would: every item's name is the rest of its id's first line
        /// (trimmed), for any size of the reads streaming it.
        #[test]
        fn a_block_answers_like_a_plain_search(
            items in prop::collection::vec(prop::sample::select(vec![
                "\t0a0a  Product", "\taaaa  P2 ", "\t0c0a  ", "\t0a0a  Again",
                "\t\t0a0a 0001  Subsystem", "# comment", "", "\t00AA  Capitals",
                "\t0b0b  Name\r", "\t0b0b", "\t0c0c X",
            ]), 0..16),
            chunk in 1usize..16,
        ) {
            let text = format!("0a0a  Vendor\n{}\n0b0b  Next\n", items.join("\n"));
            let src = Source::Text(text.clone());
            let index = Index::scan(&src, 64);
            let (start, end) = index.block(0x0a0a).ok_or_else(|| TestCaseError::fail("no block"))?;
            let block = Block::read(&src, 0x0a0a, start, end, chunk)
                .ok_or_else(|| TestCaseError::fail("block not read"))?;
            prop_assert_eq!(block.name.as_deref(), Some("Vendor"));
            for id in [0x0a0a_u16, 0xaaaa, 0x0c0a, 0x0b0b, 0x00aa, 0x0c0c, 0x0001] {
                let prefix = format!("\t{id:04x}  ");
                let plain = items
                    .iter()
                    .find_map(|l| l.strip_prefix(prefix.as_str()))
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty());
                prop_assert_eq!(block.item(&src, id), plain, "id {:04x}", id);
            }
        }
    }

    proptest! {
        /// The 16-byte comparison agrees with a plain one.
        #[test]
        fn eq16_agrees_with_a_byte_at_a_time(
            data in prop::collection::vec(prop::sample::select(vec![b'\n', b'\t', b'a', 0x8a, 0xff, 0]), 0..20),
            b in prop::sample::select(vec![b'\n', b'\t', 0x8a, 0xff, 0]),
        ) {
            prop_assert_eq!(eq16(&data, b), eq16_portable(&data, b));
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
        // Out of order, so that the search misses 1002 and the index is made.
        std::fs::write(&path, "10de  NVIDIA\n\t1401  GM206\n1002  AMD\n")?;
        let db = IdsDb::from_file("pci.ids", File::open(&path)?, 36);
        assert_eq!(db.vendor(0x1002).as_deref(), Some("AMD"));
        assert!(db.index.get().is_some());
        std::fs::write(&path, "1af4  Red Hat, Inc.\n10de  NVIDIA\n")?;
        assert_eq!(db.vendor(0x10de), None);
        assert_eq!(db.item(0x10de, 0x1401), None);
        Ok(())
    }

    /// No text: every lookup is None, and nothing is searched, indexed or
    /// cached (a near read for binding looks up every device this way).
    #[test]
    fn an_empty_text_answers_without_an_index() {
        let db = IdsDb::new("pci.ids", String::new());
        assert_eq!(db.vendor(0x10de), None);
        assert_eq!(db.item(0x10de, 0x1401), None);
        assert!(db.index.get().is_none());
        assert!(db.vendors.borrow().is_empty() && db.items.borrow().is_empty());
    }

    /// A vendor list with a vendor out of order still names it: the
    /// search misses it and the index finds it.
    #[test]
    fn an_unsorted_list_still_names_every_vendor() {
        let text = "10de  NVIDIA\n\t1401  GM206\n1002  AMD\n\t67df  Ellesmere\n8086  Intel\nC 03  Display\n";
        let db = IdsDb::new("pci.ids", text.to_string());
        assert_eq!(db.item(0x1002, 0x67df).as_deref(), Some("Ellesmere"));
        assert_eq!(db.vendor(0x10de).as_deref(), Some("NVIDIA"));
        assert_eq!(db.item(0x10de, 0x1401).as_deref(), Some("GM206"));
        assert_eq!(db.vendor(0x8086).as_deref(), Some("Intel"));
        assert_eq!(db.vendor(0x0303), None);
    }

    /// Each vendor's block as the index finds it, or None.
    fn indexed_block(src: &Source, vendor: u16) -> Option<Block> {
        Index::scan(src, CHUNK)
            .block(vendor)
            .and_then(|(start, end)| Block::read(src, vendor, start, end, CHUNK))
    }

    /// The block the search finds, or None.
    fn sought_block(src: &Source, vendor: u16) -> Result<Option<Block>, io::Error> {
        Ok(seek_vendor(src, vendor)?
            .and_then(|start| Block::read(src, vendor, start, u64::MAX, SEEK_CHUNK)))
    }

    fn same_block(a: &Option<Block>, b: &Option<Block>) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => a.name == b.name && a.start == b.start && a.items == b.items,
            _ => false,
        }
    }

    proptest! {
        /// In a sorted vendor list, the search finds each vendor's block
        /// where the index does (the same name and items), and no block
        /// for a vendor that is not there: lists with comments and empty
        /// lines between blocks, blocks from one line to many times the
        /// probe's first read, capitals, another section after the list.
        #[test]
        fn the_search_finds_what_the_index_finds(
            vendors in prop::collection::btree_map(
                0u16..48,
                (
                    0usize..4,
                    prop::collection::vec((0u16..8, 0usize..40), 0..4),
                    prop::sample::select(vec!["", "# comment\n", "\n", "#\n\n"]),
                    any::<bool>(),
                ),
                0..24,
            ),
            trailer in prop::sample::select(vec!["", "C 03  Display\n\t00  VGA\n", "C 0c  Serial"]),
        ) {
            let mut text = String::from("# header\n\n");
            for (&v, (name, items, after, capitals)) in &vendors {
                // Spread over the id space; ids next to each other too.
                let id = v * 0x0551;
                let line = format!("{id:04x}  Vendor {name}\n");
                text.push_str(&if *capitals { line.to_uppercase() } else { line });
                for (item, subs) in items {
                    text.push_str(&format!("\t{:04x}  Item {item}\n", item * 0x1111));
                    for k in 0..*subs {
                        text.push_str(&format!("\t\t{:04x} 0001  Subsystem {k}\n", id));
                    }
                }
                text.push_str(after);
            }
            text.push_str(trailer);
            let src = Source::Text(text.clone());
            for v in 0u16..48 {
                for id in [v * 0x0551, v * 0x0551 + 1] {
                    let want = indexed_block(&src, id);
                    let got = sought_block(&src, id)?;
                    prop_assert!(same_block(&want, &got), "vendor {:04x} in {:?}", id, text);
                }
            }
        }
    }

    /// The system's `pci.ids` and `usb.ids` (where installed): the search
    /// finds every vendor's line where the index does.
    #[test]
    fn the_search_finds_every_vendor_of_the_system_files() -> Result<(), Box<dyn std::error::Error>>
    {
        let mut read = 0;
        for path in [
            "/usr/share/misc/pci.ids",
            "/usr/share/hwdata/pci.ids",
            "/usr/share/misc/usb.ids",
            "/var/lib/usbutils/usb.ids",
        ] {
            let Ok(text) = std::fs::read_to_string(path) else {
                continue;
            };
            read += 1;
            let src = Source::Text(text);
            let index = Index::scan(&src, CHUNK);
            assert!(index.blocks.len() > 1000, "{path}");
            for &(vendor, start, _) in &index.blocks {
                assert_eq!(
                    seek_vendor(&src, vendor)?,
                    Some(start),
                    "{path}: vendor {vendor:04x}"
                );
            }
            for absent in [0x0000_u16, 0x0002, 0xfffe] {
                if index.block(absent).is_none() {
                    assert_eq!(seek_vendor(&src, absent)?, None, "{path}: {absent:04x}");
                }
            }
        }
        if read == 0 {
            eprintln!("skipped: no pci.ids or usb.ids installed (pciutils, usbutils)");
        }
        Ok(())
    }
}
