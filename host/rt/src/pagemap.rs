//! `PAGEMAP_SCAN` (Linux 6.7 and later): which pages of a range hold a private copy.
//!
//! A snapshot maps its image `MAP_PRIVATE` from a memfd over the guest memory. A page the guest
//! only read stays a page of the file (or the shared zero page); a page anyone wrote becomes an
//! anonymous private page. One `ioctl` on `/proc/self/pagemap` lists those private pages, which
//! are exactly the pages a reset has to copy back: no write protection, no faults, no TLB
//! shootdowns on the way.

use std::fs::File;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

/// `struct page_region` from `linux/fs.h`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// `struct pm_scan_arg` from `linux/fs.h`.
#[repr(C)]
#[derive(Debug, Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `_IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: libc::c_ulong = (3 << 30)
    | ((std::mem::size_of::<PmScanArg>() as libc::c_ulong) << 16)
    | ((b'f' as libc::c_ulong) << 8)
    | 16;
const PAGE_IS_FILE: u64 = 1 << 2;
const PAGE_IS_PRESENT: u64 = 1 << 3;
const PAGE_IS_PFNZERO: u64 = 1 << 5;

/// Regions asked for per `ioctl`.
const REGIONS: usize = 32;

/// `/proc/self/pagemap`, if the kernel supports `PAGEMAP_SCAN` on it.
fn pagemap() -> Option<&'static File> {
    static PAGEMAP: OnceLock<Option<File>> = OnceLock::new();
    PAGEMAP
        .get_or_init(|| {
            let file = File::open("/proc/self/pagemap").ok()?;
            // An empty scan: fails with EINVAL/ENOTTY on kernels without PAGEMAP_SCAN.
            let mut arg = PmScanArg {
                size: std::mem::size_of::<PmScanArg>() as u64,
                ..PmScanArg::default()
            };
            // SAFETY: the argument is a valid `pm_scan_arg` for an empty range with no output
            // vector; the kernel writes only `walk_end` inside it.
            let rc = unsafe { libc::ioctl(file.as_raw_fd(), PAGEMAP_SCAN, &mut arg) };
            (rc >= 0).then_some(file)
        })
        .as_ref()
}

/// Whether this kernel can list private pages (and so whether snapshots can reset cheaply).
pub fn supported() -> bool {
    pagemap().is_some()
}

/// The result of one scan.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Byte ranges (relative to the scanned start) of private pages, at most `max_pages` pages.
    pub(crate) private: Vec<Range<usize>>,
    /// Bytes (relative to the start) the scan looked at; less than the length when it stopped
    /// at `max_pages`.
    pub(crate) scanned: usize,
}

/// List the private (written) pages of `base..base + len`, up to `max_pages` of them.
///
/// The range must be page aligned and lie inside one mapping of this process; pages outside any
/// mapping are simply not reported.
pub(crate) fn private_pages(
    base: *const u8,
    len: usize,
    max_pages: usize,
) -> std::io::Result<Scan> {
    let Some(file) = pagemap() else {
        return Err(std::io::Error::from(std::io::ErrorKind::Unsupported));
    };
    let page = crate::host_memory::page_size();
    let end = base as u64 + len as u64;
    let mut scan = Scan::default();
    let mut start = base as u64;
    let mut budget = max_pages;
    let mut regions = [PageRegion::default(); REGIONS];
    while start < end && budget > 0 {
        let mut arg = PmScanArg {
            size: std::mem::size_of::<PmScanArg>() as u64,
            start,
            end,
            vec: regions.as_mut_ptr() as u64,
            vec_len: REGIONS as u64,
            max_pages: budget as u64,
            // Present, and neither the zero page nor a page of the file: a private copy.
            category_inverted: PAGE_IS_PFNZERO | PAGE_IS_FILE,
            category_mask: PAGE_IS_PRESENT | PAGE_IS_PFNZERO | PAGE_IS_FILE,
            return_mask: PAGE_IS_PRESENT,
            ..PmScanArg::default()
        };
        // SAFETY: `arg` is a valid `pm_scan_arg`; `vec` points to `REGIONS` writable
        // `page_region`s that outlive the call; the kernel only reads page tables of
        // `start..end` (it does not touch the memory) and writes `regions` and `arg.walk_end`.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), PAGEMAP_SCAN, &mut arg) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let found = usize::try_from(rc).unwrap_or(0).min(REGIONS);
        for region in &regions[..found] {
            let from = (region.start - base as u64) as usize;
            let to = (region.end - base as u64) as usize;
            budget = budget.saturating_sub((to - from) / page);
            match scan.private.last_mut() {
                Some(last) if last.end == from => last.end = to,
                _ => scan.private.push(from..to),
            }
        }
        if arg.walk_end <= start {
            break;
        }
        start = arg.walk_end;
    }
    scan.scanned = (start.min(end) - base as u64) as usize;
    Ok(scan)
}
