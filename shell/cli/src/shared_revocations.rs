//! Revocations shared by the servers on one PostgreSQL database: each
//! server keeps its `--revoked-file` list in the store
//! ([`Store::share_revocations`]), reads every server's list twice a second
//! and puts in force what any of them revoked, so revoking on one server
//! cuts the identity off on all.
//!
//! A server without `--revoked-file` publishes nothing and only follows
//! the others. A server's row stays when it stops (its revocations must
//! not lapse because it restarts); starting it again with an emptied file
//! lifts them. While the store cannot be read, the lists read last stay in
//! force and a change of this server's own file still applies at once.

use crate::revocations::{parse, render, union};
use docweave_adapters::Store;
use docweave_core::Revocations;
use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

/// How often the other servers' lists are read.
const POLL: Duration = Duration::from_millis(500);

/// What the syncing thread keeps between readings.
struct Sharing {
    store: Box<dyn Store>,
    server: String,
    /// This server's own list (`None`: it has no file and publishes nothing).
    own: Option<Revocations>,
    /// The text of our row as last written to the store.
    published: Option<String>,
    /// The other servers' lists as last read, by server.
    others: BTreeMap<String, Revocations>,
    in_force: Option<Revocations>,
    /// Whether the last reading failed (said once, not every poll).
    failing: bool,
    /// Rows that did not parse, by server, with their text (said once).
    unreadable: BTreeMap<String, String>,
    /// Whether another server of our name was seen (said once).
    clash_said: bool,
}

impl Sharing {
    /// Publishes our list if it changed and reads the others'; returns the
    /// union when it differs from the one in force.
    fn sync(&mut self) -> Option<Revocations> {
        let outcome = self.publish().and_then(|()| self.read_others());
        match outcome {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!("the revocations shared through the store are read again");
            }
            Ok(()) => {}
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::warn!(
                    "the revocations shared through the store could not be read or written: {e}; \
                     the lists read last stay in force"
                );
            }
            Err(_) => {}
        }
        let all = union(self.own.iter().chain(self.others.values()));
        if self.in_force.as_ref() == Some(&all) {
            return None;
        }
        self.in_force = Some(all.clone());
        Some(all)
    }

    fn publish(&mut self) -> Result<(), String> {
        let Some(own) = &self.own else {
            return Ok(());
        };
        let text = render(own);
        if self.published.as_ref() == Some(&text) {
            return Ok(());
        }
        self.store
            .share_revocations(&self.server, &text)
            .map_err(|e| e.to_string())?;
        self.published = Some(text);
        Ok(())
    }

    fn read_others(&mut self) -> Result<(), String> {
        let rows = self.store.shared_revocations().map_err(|e| e.to_string())?;
        let mut others = BTreeMap::new();
        for (server, text) in rows {
            // Our own row is what we published; the file is fresher.
            if server == self.server && self.own.is_some() {
                if self.published.as_ref() != Some(&text) && !self.clash_said {
                    self.clash_said = true;
                    tracing::warn!(
                        "another server named {server} keeps its revocations in this store \
                         too, over ours: give each server its own --name"
                    );
                }
                continue;
            }
            match parse(&text) {
                Ok(list) => {
                    self.unreadable.remove(&server);
                    others.insert(server, list);
                }
                Err(e) => {
                    if self.unreadable.get(&server) != Some(&text) {
                        tracing::warn!(
                            "the revocations {server} keeps in the store do not parse ({e}); \
                             its list read last stays in force"
                        );
                        self.unreadable.insert(server.clone(), text);
                    }
                    if let Some(last) = self.others.remove(&server) {
                        others.insert(server, last);
                    }
                }
            }
        }
        self.others = others;
        Ok(())
    }
}

/// Starts sharing: publishes `own` and reads the other servers' lists once
/// before returning (so the first list in force covers them), then keeps at
/// it on a thread of its own. Each new list in force goes to `apply`,
/// which says whether to go on (false: the server is stopping). Send this
/// server's list through the returned sender whenever its file changes.
pub fn start(
    store: Box<dyn Store>,
    server: &str,
    own: Option<Revocations>,
    apply: impl Fn(Revocations) -> bool + Send + 'static,
) -> Result<Sender<Revocations>, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut sharing = Sharing {
        store,
        server: server.to_string(),
        own,
        published: None,
        others: BTreeMap::new(),
        in_force: None,
        failing: false,
        unreadable: BTreeMap::new(),
        clash_said: false,
    };
    if let Some(all) = sharing.sync() {
        if !apply(all) {
            return Err("the node stopped before it started".into());
        }
    }
    std::thread::Builder::new()
        .name("docweave-revocations".into())
        .spawn(move || follow(sharing, rx, apply))
        .map_err(|e| format!("cannot share revocations: {e}"))?;
    Ok(tx)
}

fn follow(mut sharing: Sharing, rx: Receiver<Revocations>, apply: impl Fn(Revocations) -> bool) {
    loop {
        match rx.recv_timeout(POLL) {
            Ok(own) => sharing.own = Some(own),
            Err(RecvTimeoutError::Timeout) => {}
            // The file is no longer watched; the others' lists still count.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(POLL),
        }
        if let Some(all) = sharing.sync() {
            if !apply(all) {
                return;
            }
        }
    }
}
