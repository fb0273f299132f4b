//! Documents behind a trait, so the shell is not tied to one CRDT.

use docweave_adapters::EnginePanic;
use docweave_core::{ImportOutcome, VersionVector};

/// Why an export gave no bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// The library refused (the replica is fine).
    #[error("the document could not be exported: {0}")]
    Refused(String),
    /// The library panicked: the replica is in an unknown state and must go.
    #[error(transparent)]
    Broken(#[from] EnginePanic),
}

/// A run of one writer's changes: counters `start..end` of writer `writer`
/// (a Loro peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// The writer number the changes carry.
    pub writer: u64,
    /// The first counter.
    pub start: u64,
    /// Past the last counter.
    pub end: u64,
}

/// What the shell needs of a document type.
pub trait DocEngine: Clone + Send + Sync + 'static {
    /// One replica of a document, owned by the shell.
    type Doc: Send + 'static;
    /// What the application edits: a reference to the same replica.
    type Handle: Clone + Send + 'static;

    /// A new, empty document that edits as `actor`.
    fn create(&self, actor: u64) -> Self::Doc;

    /// What the document has seen, in the core's terms.
    fn version(&self, doc: &Self::Doc) -> VersionVector;

    /// The changes a holder of `since` lacks; for `None`, or when `since` is
    /// too old for the history this replica kept, the whole document, in the
    /// form it costs least to send, keep and import ([`DocEngine::import`] of
    /// these bytes into an empty replica brings it all back).
    fn export(
        &self,
        doc: &Self::Doc,
        since: Option<&VersionVector>,
    ) -> Result<Vec<u8>, ExportError>;

    /// The whole document as an asleep replica keeps it, where memory after
    /// waking may count for more than the cost of the wake ([`DocEngine::import`]
    /// of these bytes into an empty replica brings it all back).
    /// [`DocEngine::export`] of the whole by default.
    fn export_asleep(&self, doc: &Self::Doc) -> Result<Vec<u8>, ExportError> {
        self.export(doc, None)
    }

    /// Applies bytes from [`DocEngine::export`] (or from anyone: they are
    /// untrusted). `Pending` when some of them wait for changes not present
    /// yet, `Failed` when they are refused and the replica is unchanged.
    /// An [`EnginePanic`] says the library failed mid-way: the replica is in
    /// an unknown state and must be dropped.
    fn import(&self, doc: &mut Self::Doc, bytes: &[u8]) -> Result<ImportOutcome, EnginePanic>;

    /// [`DocEngine::import`] of several byte strings that arrived together,
    /// in order: one outcome each. An engine may apply them as one (Loro
    /// brings its state up to date once, not once per import: a burst of
    /// concurrent updates otherwise costs the square of its length).
    fn import_many(
        &self,
        doc: &mut Self::Doc,
        batch: &[&[u8]],
    ) -> Result<Vec<ImportOutcome>, EnginePanic> {
        batch.iter().map(|bytes| self.import(doc, bytes)).collect()
    }

    /// The runs of changes `bytes` carry, by writer, read without
    /// importing them (the node checks who may write as each writer before
    /// it imports). `Err` when the bytes cannot be read. An engine whose
    /// changes carry no writer numbers has none: its updates are nobody's.
    fn runs(&self, bytes: &[u8]) -> Result<Vec<Run>, String> {
        // Unread: an engine without writer numbers has no runs to report.
        let _ = bytes;
        Ok(Vec::new())
    }

    /// The commit message of the change that holds `writer`'s `counter`,
    /// if its writer set one.
    fn message(&self, doc: &Self::Doc, writer: u64, counter: u64) -> Option<String> {
        // Unread: an engine without commit messages has none to give.
        let _ = (doc, writer, counter);
        None
    }

    /// About how many bytes of memory the replica holds, for eviction by a
    /// memory budget. Cheap: it is asked after every change. The default
    /// is a small document's cost.
    fn resident_estimate(&self, doc: &Self::Doc) -> usize {
        let _ = doc;
        16 * 1024
    }

    /// The application's handle on a replica.
    fn handle(&self, doc: &Self::Doc) -> Self::Handle;

    /// Ends an edit made through a handle (Loro: `commit`).
    fn commit(handle: &Self::Handle) {
        let _ = handle;
    }

    /// Calls `notify` after each local change made through a handle; the
    /// returned guard ends the watch when dropped.
    fn watch_local(
        &self,
        doc: &Self::Doc,
        notify: Box<dyn Fn() + Send + Sync>,
    ) -> Box<dyn std::any::Any + Send>;
}
