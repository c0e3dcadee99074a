//! `exliar analyze` stays linear in its input, checked by counting, not by
//! timing: an allocator that counts allocations and the peak of live heap
//! bytes runs the parse, the analysis and the JSON report of generated
//! listings of N and 2N GPU lines (distinct ids, and one shared id, the
//! case whose twin lists once grew with N²). Doubling the input must no
//! more than double (with a little slack) either count, and the peak per
//! line must stay within the memory budget (64 MiB for 65 536 lines).
//!
//! One test only: the counters are global, and tests of one binary run on
//! several threads.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use exliar::listing::{ListingFile, parse_files};
use exliar::report::InventoryReport;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

struct Counting;

fn grew(by: usize) {
    let live = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(live, Relaxed);
}

// The only unsafe code: a global allocator must be declared unsafe; it
// hands every call to the system allocator unchanged.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        grew(l.size());
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Relaxed);
        // SAFETY: `p` came from `System` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        if new >= l.size() {
            grew(new - l.size());
        } else {
            LIVE.fetch_sub(l.size() - new, Relaxed);
        }
        // SAFETY: `p` came from `System` with layout `l`.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// The lines of `benches/analyze-listing.sh`.
fn listing(n: usize, identical: bool) -> String {
    let mut s = String::with_capacity(n * 140);
    for i in 0..n {
        let (dom, bus, dev, func) = (i >> 16, (i >> 8) & 0xff, (i >> 3) & 0x1f, i & 7);
        let id = if identical { 0x2503 } else { i & 0xffff };
        s.push_str(&format!(
            "IOMMU Group {i} {dom:04x}:{bus:02x}:{dev:02x}.{func} VGA compatible controller [0300]: NVIDIA Corporation GA106 [GeForce RTX 3060] [10de:{id:04x}] (rev a1)\n"
        ));
    }
    s
}

/// (allocations, peak live bytes above what was live before) of analyzing
/// `text` and writing its JSON report.
fn measure(text: String) -> (usize, usize) {
    let files = vec![ListingFile {
        name: "big.txt".into(),
        text,
    }];
    let base = LIVE.load(Relaxed);
    ALLOCS.store(0, Relaxed);
    PEAK.store(base, Relaxed);
    let inv = parse_files(&files).expect("a listing");
    drop(files);
    // As `exliar analyze --json` does: the group reports are made while
    // they are written.
    let analysis = exliar::analyze::analyze_without_groups(&inv);
    let mut out = std::io::BufWriter::new(std::io::sink());
    serde_json::to_writer_pretty(&mut out, &InventoryReport::new(&inv, &analysis, None))
        .expect("written");
    drop(out);
    let allocs = ALLOCS.load(Relaxed);
    let peak = PEAK.load(Relaxed).saturating_sub(base);
    (allocs, peak)
}

#[test]
fn doubling_the_listing_at_most_doubles_allocations_and_peak_memory() {
    const N: usize = 4096;
    // 64 MiB for 65 536 lines.
    const BUDGET_PER_LINE: usize = 1024;
    for identical in [false, true] {
        let (a1, p1) = measure(listing(N, identical));
        let (a2, p2) = measure(listing(2 * N, identical));
        let what = if identical {
            "identical ids"
        } else {
            "distinct ids"
        };
        eprintln!(
            "{what}: {N} lines {a1} allocations, peak {p1} B; {} lines {a2} allocations, peak {p2} B",
            2 * N
        );
        assert!(
            a2 <= a1 * 21 / 10 + 1000,
            "{what}: allocations grew from {a1} to {a2} when the lines doubled"
        );
        assert!(
            p2 <= p1 * 21 / 10 + (64 << 10),
            "{what}: peak memory grew from {p1} to {p2} bytes when the lines doubled"
        );
        assert!(
            p2 <= 2 * N * BUDGET_PER_LINE,
            "{what}: peak {p2} bytes for {} lines is over {BUDGET_PER_LINE} bytes a line",
            2 * N
        );
    }
}
