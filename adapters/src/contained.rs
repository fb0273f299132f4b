//! Work on untrusted document bytes, with a panic in the CRDT library kept
//! to the one call that caused it.
//!
//! Loro parses what clients and servers send (updates, snapshots, presence,
//! version vectors). A bug there must cost the sender an error, never the
//! process: every such call runs through [`contained`], which turns a panic
//! into an [`EnginePanic`] and counts it. Loro itself is patched (see
//! `shell/vendor/README.md`) so that a panic unwinds instead of aborting in
//! a destructor; this is the other half.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};

/// Panics caught by [`contained`] since the process started (for metrics
/// and the status page: process-wide, like the library that panicked).
static CAUGHT: AtomicU64 = AtomicU64::new(0);

/// A panic inside the document library, caught.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the document library failed on {what}: {message}")]
pub struct EnginePanic {
    /// What was being done (`import`, `export`, ...).
    pub what: &'static str,
    /// The panic's message.
    pub message: String,
}

/// Runs `f`, turning a panic into an [`EnginePanic`].
///
/// Whatever `f` touched may be left inconsistent: the caller drops it (a
/// replica is read back from the store) instead of using it again.
pub fn contained<T>(what: &'static str, f: impl FnOnce() -> T) -> Result<T, EnginePanic> {
    // AssertUnwindSafe: the caller promises not to use what `f` touched
    // after a panic (see above), which is what unwind safety asks.
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        CAUGHT.fetch_add(1, Ordering::Relaxed);
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        tracing::error!("the document library panicked on {what}: {message}");
        EnginePanic { what, message }
    })
}

/// How many panics [`contained`] has caught in this process.
pub fn panics_caught() -> u64 {
    CAUGHT.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_and_is_counted() {
        let before = panics_caught();
        let r: Result<(), _> = contained("import", || panic!("bad bytes"));
        let e = r.unwrap_err();
        assert_eq!(e.what, "import");
        assert_eq!(e.message, "bad bytes");
        assert!(panics_caught() > before);
        assert_eq!(contained("export", || 7).unwrap(), 7);
    }
}
