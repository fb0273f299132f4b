//! A panic inside the document library (a Loro bug reached by untrusted
//! bytes) costs the bytes' sender an error and nothing else: the node drops
//! the replica the panic left in an unknown state and reads it back from its
//! store, a stored piece that panics is left out of the replica, and every
//! other document goes on. The engine here panics on purpose on bytes that
//! hold a marker, since the known crashing input no longer crashes.

use docweave_adapters::{Append, EnginePanic, MemoryStore, Store};
use docweave_core::{DocId, Event, ImportOutcome, VersionVector};
use docweave_shell::{DocEngine, ExportError, LoroEngine, Repo};
use std::time::Duration;

const MARKER: &str = "PANIC-IN-THE-LIBRARY";

/// Loro, except that an armed engine panics (inside the library call, as a
/// Loro bug would) when it imports bytes holding [`MARKER`], and refuses to
/// export documents whose id starts with `unexportable`.
#[derive(Clone, Copy)]
struct PanickyEngine {
    armed: bool,
}

impl DocEngine for PanickyEngine {
    type Doc = loro::LoroDoc;
    type Handle = loro::LoroDoc;

    fn create(&self, actor: u64) -> loro::LoroDoc {
        LoroEngine.create(actor)
    }
    fn version(&self, doc: &loro::LoroDoc) -> VersionVector {
        LoroEngine.version(doc)
    }
    fn export(
        &self,
        doc: &loro::LoroDoc,
        since: Option<&VersionVector>,
    ) -> Result<Vec<u8>, ExportError> {
        let flagged = doc.get_map("root").get("unexportable").is_some();
        if self.armed && flagged {
            return Err(ExportError::Refused("refused on purpose".into()));
        }
        LoroEngine.export(doc, since)
    }
    fn import(&self, doc: &mut loro::LoroDoc, bytes: &[u8]) -> Result<ImportOutcome, EnginePanic> {
        let poisoned = self.armed && bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes());
        if poisoned {
            return docweave_adapters::contained("import", || {
                // Half an import, then the bug: the replica is left changed.
                let _ = doc.import(bytes);
                panic!("a bug in the library");
            });
        }
        LoroEngine.import(doc, bytes)
    }
    fn handle(&self, doc: &loro::LoroDoc) -> loro::LoroDoc {
        doc.clone()
    }
    fn commit(handle: &loro::LoroDoc) {
        handle.commit();
    }
    fn watch_local(
        &self,
        doc: &loro::LoroDoc,
        notify: Box<dyn Fn() + Send + Sync>,
    ) -> Box<dyn std::any::Any + Send> {
        LoroEngine.watch_local(doc, notify)
    }
}

fn update(peer: u64, key: &str, value: &str) -> Vec<u8> {
    let d = loro::LoroDoc::new();
    d.set_peer_id(peer).unwrap();
    d.get_map("root").insert(key, value).unwrap();
    d.commit();
    d.export(loro::ExportMode::all_updates()).unwrap()
}

async fn error_about(events: &async_channel::Receiver<Event>, doc: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Ok(Ok(Event::Error {
            doc: Some(d),
            reason,
        })) = smol::future::or(async { Ok(events.recv().await) }, async {
            smol::Timer::after(Duration::from_millis(100)).await;
            Err(())
        })
        .await
        {
            if d.as_str() == doc {
                return reason;
            }
        }
    }
    panic!("no error about {doc}");
}

#[test]
fn an_import_that_panics_fails_for_its_sender_and_the_replica_is_read_back() {
    smol::block_on(async {
        let server = Repo::builder("server")
            .engine(PanickyEngine { armed: true })
            .store(MemoryStore::new())
            .build()
            .unwrap();
        let client = Repo::builder("client")
            .engine(PanickyEngine { armed: false })
            .build()
            .unwrap();
        let events = server.events().await.unwrap();
        client.connect(&server).unwrap();
        client
            .edit("notes", |d| d.get_map("root").insert("k", "good").unwrap())
            .await
            .unwrap();
        assert!(client
            .wait_for_sync("notes", "server", Duration::from_secs(10))
            .await
            .unwrap()
            .is_synced());
        // Bytes that make the server's library panic.
        client
            .edit("notes", |d| {
                d.get_map("root").insert("bad", MARKER).unwrap()
            })
            .await
            .unwrap();
        let reason = error_about(&events, "notes").await;
        assert!(
            reason.contains("panicked") || reason.contains("failed on import"),
            "{reason}"
        );
        // The server read its replica back from the store: what was
        // acknowledged is there, the poison is not.
        let there = server.open("notes").await.unwrap();
        let root = there.get_map("root");
        assert_eq!(
            root.get("k").and_then(|v| v.into_value().ok()),
            Some("good".into())
        );
        assert!(root.get("bad").is_none());
        // Everything else goes on: another document syncs both ways.
        client
            .edit("other", |d| d.get_map("root").insert("x", "1").unwrap())
            .await
            .unwrap();
        assert!(client
            .wait_for_sync("other", "server", Duration::from_secs(10))
            .await
            .unwrap()
            .is_synced());
        client.close().await;
        server.close().await;
    });
}

#[test]
fn a_stored_piece_that_panics_is_left_out_and_the_rest_is_served() {
    smol::block_on(async {
        let mut store = MemoryStore::new();
        let doc = DocId::new("stored");
        let piece = |data: Vec<u8>, peer: u64| Append {
            doc: doc.clone(),
            meta: Default::default(),
            data,
            version: VersionVector::from_entries([(peer, 1)]),
            authors: Vec::new(),
        };
        store
            .append(&[
                piece(update(1, "first", "kept"), 1),
                piece(update(2, "poison", MARKER), 2),
                piece(update(3, "third", "kept"), 3),
            ])
            .unwrap();
        let server = Repo::builder("server")
            .engine(PanickyEngine { armed: true })
            .store(store)
            .build()
            .unwrap();
        let events = server.events().await.unwrap();
        let d = server.open("stored").await.unwrap();
        let root = d.get_map("root");
        assert!(root.get("first").is_some() && root.get("third").is_some());
        assert!(root.get("poison").is_none());
        let reason = error_about(&events, "stored").await;
        assert!(reason.contains("could not be imported"), "{reason}");
        server.close().await;
    });
}

#[test]
fn an_export_that_fails_is_reported_not_swallowed() {
    smol::block_on(async {
        let server = Repo::builder("server")
            .engine(PanickyEngine { armed: true })
            .store(MemoryStore::new())
            .build()
            .unwrap();
        let events = server.events().await.unwrap();
        // The server's own edit makes the document unexportable there.
        server
            .edit("stuck", |d| {
                d.get_map("root").insert("unexportable", true).unwrap()
            })
            .await
            .unwrap();
        let reason = error_about(&events, "stuck").await;
        assert!(reason.contains("could not be exported"), "{reason}");
        server.close().await;
    });
}
