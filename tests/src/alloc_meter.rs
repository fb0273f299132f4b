//! A global allocator that counts, per thread, the bytes held and the most
//! held since the last [`reset`], so a test or fuzz target can check what
//! decoding some bytes cost in memory. Install it with
//! `#[global_allocator] static A: docweave_tests::alloc_meter::Meter = Meter;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static HELD: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator, counting.
pub struct Meter;

// SAFETY: every call is passed to the system allocator unchanged; the
// counters are thread-local `Cell`s of plain integers (no allocation, no
// destructor), so counting cannot re-enter the allocator.
unsafe impl GlobalAlloc for Meter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        p
    }
}

fn grew(n: usize) {
    // `try_with`: a thread being torn down still allocates.
    let _ = HELD.try_with(|h| {
        let now = h.get().saturating_add(n);
        h.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

fn shrank(n: usize) {
    let _ = HELD.try_with(|h| h.set(h.get().saturating_sub(n)));
}

/// Starts a measurement on this thread.
pub fn reset() {
    let held = HELD.with(Cell::get);
    PEAK.with(|p| p.set(held));
}

/// The most bytes this thread held beyond what it held at [`reset`].
pub fn peak_since_reset(at_reset: usize) -> usize {
    PEAK.with(Cell::get).saturating_sub(at_reset)
}

/// Bytes this thread holds now.
pub fn held() -> usize {
    HELD.with(Cell::get)
}

/// The most bytes `f` held at once on this thread, beyond what was held
/// before it ran.
pub fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = held();
    reset();
    let out = f();
    (out, peak_since_reset(before))
}
