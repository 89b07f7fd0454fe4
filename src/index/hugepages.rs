//! The large search arrays on transparent huge pages.
//!
//! A search hops between rows of arrays that are tens of MB (the vectors, layer 0 of the graph),
//! so with 4 KiB pages nearly every hop is also a TLB miss, and under virtualisation a TLB miss
//! costs a two-dimensional page walk. Where the kernel gives huge pages only on request (THP
//! `madvise` mode, Debian's default), [`on_huge_pages`] asks for them: it copies the array into
//! fresh capacity advised with `MADV_HUGEPAGE`, after dropping any pages the allocator had
//! already backed that capacity with (big arrays often come from the top of the heap). Measured on the bench
//! machine (2-vCPU VM, 100k × 128): see the commit that added this file. Off Linux, for small
//! arrays, or when the kernel declines, the array simply stays where it is.

/// Size of an x86-64 huge page.
const HUGE_PAGE: usize = 2 << 20;

/// A heap copy of `v`, in memory the kernel may back with huge pages (for arrays of ≥ 4 huge
/// pages; smaller ones are plainly copied).
pub fn on_huge_pages<T: Copy>(v: &[T]) -> Vec<T> {
    let bytes = std::mem::size_of_val(v);
    let mut out: Vec<T> = Vec::with_capacity(v.len());
    if cfg!(target_os = "linux") && bytes >= 4 * HUGE_PAGE {
        advise(out.as_ptr() as usize, bytes);
    }
    out.extend_from_slice(v);
    out
}

#[cfg(target_os = "linux")]
fn advise(start: usize, bytes: usize) {
    let first = (start + HUGE_PAGE - 1) & !(HUGE_PAGE - 1);
    let end = (start + bytes) & !(HUGE_PAGE - 1);
    if end > first {
        let (addr, len) = (first as *mut libc::c_void, end - first);
        // SAFETY: the range lies inside an allocation this process owns and has not written yet
        // (the caller's fresh capacity). MADV_HUGEPAGE only changes how the kernel backs it;
        // MADV_DONTNEED drops pages the allocator may have reused from earlier (so the next
        // touch faults in huge pages), which loses nothing since nothing was written there.
        // Failure of either leaves 4 KiB pages.
        unsafe {
            if libc::madvise(addr, len, libc::MADV_HUGEPAGE) == 0 {
                libc::madvise(addr, len, libc::MADV_DONTNEED);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_start: usize, _bytes: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_survive_the_move() {
        let small: Vec<u32> = (0..10).collect();
        assert_eq!(on_huge_pages(&small), small);
        let big: Vec<f32> = (0..(5 * HUGE_PAGE / 4)).map(|i| i as f32).collect();
        assert_eq!(on_huge_pages(&big), big);
    }
}
