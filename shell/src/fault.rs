//! Faults injected on purpose, so tests of the real binary can check what a
//! bug costs: `DOCWEAVE_FAULT=import-panic:MARK` makes importing bytes that
//! hold `MARK` panic inside the document library (where such a bug would
//! be, and where it is contained); `DOCWEAVE_FAULT=loop-panic:MARK` makes it
//! panic outside that containment, in the node's loop (the node stops and
//! `docweave serve` exits non-zero). Read once; unset, nothing changes.

use std::sync::OnceLock;

/// A fault to inject.
pub(crate) enum Fault {
    /// Panic inside the import of bytes holding the mark.
    ImportPanic(Vec<u8>),
    /// Panic in the loop on bytes holding the mark.
    LoopPanic(Vec<u8>),
}

/// The fault `DOCWEAVE_FAULT` asks for, if any.
pub(crate) fn injected() -> Option<&'static Fault> {
    static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
    FAULT
        .get_or_init(|| {
            let spec = std::env::var("DOCWEAVE_FAULT").ok()?;
            let fault = match spec.split_once(':') {
                Some(("import-panic", mark)) if !mark.is_empty() => {
                    Fault::ImportPanic(mark.as_bytes().to_vec())
                }
                Some(("loop-panic", mark)) if !mark.is_empty() => {
                    Fault::LoopPanic(mark.as_bytes().to_vec())
                }
                _ => {
                    tracing::warn!("DOCWEAVE_FAULT={spec:?} is not a fault this build injects");
                    return None;
                }
            };
            tracing::warn!("DOCWEAVE_FAULT={spec:?}: a fault is injected on purpose");
            Some(fault)
        })
        .as_ref()
}

/// Whether `bytes` hold `mark`.
pub(crate) fn holds(bytes: &[u8], mark: &[u8]) -> bool {
    bytes.windows(mark.len()).any(|w| w == mark)
}
