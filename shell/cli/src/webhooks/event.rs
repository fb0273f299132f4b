//! One webhook event, as the receiver reads it:
//!
//! ```json
//! {"id": "4f0c...", "type": "document.changed", "doc": "notes",
//!  "before": "1:3,7:2", "after": "1:5,7:2", "peers": ["1"], "clock": 42,
//!  "at": 1767225600123}
//! ```
//!
//! `before` is the version the hook was last told of (empty for a
//! created document), `after` the version now (empty for a deleted one):
//! every change between them is in this one event. `peers` are the Loro
//! peers whose changes lie between them. `id` is the same for every
//! attempt at the same event, so a receiver can drop a repeat.

use super::config::Events;
use super::signature::hex;
use crate::doc_api::version_text;
use docweave_core::{Strand, VersionVector};
use sha2::{Digest, Sha256};

/// What happened to a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Written for the first time (as far as the hook was told).
    Created,
    /// Changed.
    Changed,
    /// Deleted.
    Deleted,
}

impl Kind {
    /// The event's `type`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Created => "document.created",
            Kind::Changed => "document.changed",
            Kind::Deleted => "document.deleted",
        }
    }

    /// What a listener's strand tells.
    pub fn of(strand: &Strand) -> Kind {
        if strand.version.is_empty() {
            Kind::Deleted
        } else if strand.since.is_empty() {
            Kind::Created
        } else {
            Kind::Changed
        }
    }

    /// Whether a hook hearing `events` is told of this kind.
    pub fn wanted(self, events: &Events) -> bool {
        match self {
            Kind::Created => events.created,
            Kind::Changed => events.changed,
            Kind::Deleted => events.deleted,
        }
    }
}

/// An event ready to send.
#[derive(Debug, Clone)]
pub struct Event {
    /// The same for every attempt at it.
    pub id: String,
    /// What happened.
    pub kind: Kind,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// The event a strand tells, made at `at_ms` (Unix milliseconds).
pub fn event(strand: &Strand, at_ms: u64) -> Event {
    let kind = Kind::of(strand);
    let (before, after) = (version_text(&strand.since), version_text(&strand.version));
    let mut h = Sha256::new();
    for part in [kind.name(), strand.doc.as_str(), &before, &after] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let id = hex(&h.finalize()[..16]);
    let body = serde_json::json!({
        "id": id,
        "type": kind.name(),
        "doc": strand.doc.as_str(),
        "before": before,
        "after": after,
        "peers": moved(&strand.since, &strand.version),
        "clock": strand.clock.0,
        "at": at_ms,
    });
    Event {
        id,
        kind,
        body: body.to_string().into_bytes(),
    }
}

/// The peers whose counters moved from `before` to `after`, as text
/// (JSON numbers lose precision past 2^53).
fn moved(before: &VersionVector, after: &VersionVector) -> Vec<String> {
    after
        .iter()
        .filter(|(peer, counter)| *counter > before.get(*peer))
        .map(|(peer, _)| peer.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use docweave_core::{Clock, DocId, DocMeta, Payload};

    fn strand(since: &[(u64, u64)], version: &[(u64, u64)]) -> Strand {
        Strand {
            doc: DocId::new("notes"),
            meta: DocMeta::default(),
            since: VersionVector::from_entries(since.iter().copied()),
            data: Payload::default(),
            version: VersionVector::from_entries(version.iter().copied()),
            clock: Clock(42),
        }
    }

    #[test]
    fn an_event_says_what_happened_between_the_versions_and_keeps_its_id_across_attempts() {
        let changed = event(&strand(&[(1, 3), (7, 2)], &[(1, 5), (7, 2)]), 10);
        let v: serde_json::Value = serde_json::from_slice(&changed.body).unwrap();
        assert_eq!(v["type"], "document.changed");
        assert_eq!(v["doc"], "notes");
        assert_eq!(v["before"], "1:3,7:2");
        assert_eq!(v["after"], "1:5,7:2");
        assert_eq!(v["peers"], serde_json::json!(["1"]));
        assert_eq!(v["clock"], 42);
        let again = event(&strand(&[(1, 3), (7, 2)], &[(1, 5), (7, 2)]), 99);
        assert_eq!(again.id, changed.id, "a retry is the same event");
        let later = event(&strand(&[(1, 3), (7, 2)], &[(1, 6), (7, 2)]), 99);
        assert_ne!(later.id, changed.id, "more changes make another event");
        assert_eq!(event(&strand(&[], &[(1, 1)]), 0).kind, Kind::Created);
        assert_eq!(event(&strand(&[(1, 1)], &[]), 0).kind, Kind::Deleted);
    }
}
