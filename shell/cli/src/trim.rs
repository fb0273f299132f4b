//! Gives memory freed after a load spike back to the system. glibc's
//! allocator keeps what was freed in its arenas (one per thread that
//! allocated, and the server has several) for reuse, so a server that once
//! held a burst's buffers kept that resident size for good. Every few
//! seconds `malloc_trim` returns the free pages of every arena.

use std::time::Duration;

/// How often the free pages go back: often enough that a spike's memory is
/// returned within seconds, rare enough that the walk over the arenas
/// (milliseconds) costs nothing measurable.
const EVERY: Duration = Duration::from_secs(5);

/// Trims the allocator every [`EVERY`], for as long as the process runs.
pub fn spawn() {
    smol::spawn(async {
        loop {
            smol::Timer::after(EVERY).await;
            trim();
        }
    })
    .detach();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: `malloc_trim` only walks the allocator's own state under its
    // locks; any pad is valid. Its result says whether memory was released,
    // which changes nothing here.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators (musl, macOS) return memory on their own terms.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
