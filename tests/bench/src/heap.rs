//! Bytes a piece of work leaves allocated on the heap, counted by an
//! allocator the benchmark program installs (`main.rs`): what a structure
//! costs, measured by what it keeps allocated, where the resident set of a
//! process that already freed more would not move. Without the allocator
//! installed (in tests) every count is 0.
//!
//! The allocator counts only while [`kept_by`] runs: one atomic add shared
//! by every thread on each allocation and free would slow the other
//! scenarios (S1's client spent about 6% of its time in it). Counting the
//! window alone gives the same figure, allocations less frees within it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

/// Set while a measure is taken.
static COUNTING: AtomicBool = AtomicBool::new(false);
/// Bytes allocated less bytes freed while counting.
static NET: AtomicIsize = AtomicIsize::new(0);

/// The system allocator, counting the bytes it hands out and takes back
/// while a measure is taken.
pub struct Counting;

fn count(bytes: usize, allocated: bool) {
    if COUNTING.load(Ordering::Relaxed) {
        let bytes = isize::try_from(bytes).unwrap_or(isize::MAX);
        NET.fetch_add(if allocated { bytes } else { -bytes }, Ordering::Relaxed);
    }
}

// SAFETY: every call goes to the system allocator unchanged; the count is
// only a number beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size(), true);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(layout.size(), false);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(layout.size(), false);
            count(new_size, true);
        }
        p
    }
}

/// Runs `work` and says how many bytes what it returns keeps on the heap
/// (allocated and not freed while it ran; 0 without [`Counting`]
/// installed). Measures taken at once on several threads would mix.
pub fn kept_by<R>(work: impl FnOnce() -> R) -> (R, usize) {
    let before = NET.load(Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let kept = work();
    COUNTING.store(false, Ordering::Relaxed);
    let net = NET.load(Ordering::Relaxed).saturating_sub(before);
    (kept, usize::try_from(net).unwrap_or(0))
}
