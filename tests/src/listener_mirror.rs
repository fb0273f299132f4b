//! A backend that follows the first hub through a listener (seed 000's pull
//! API) and keeps a mirror of every document, for the random schedules: it
//! pulls a few strands after each step, acknowledges what it imported,
//! reconnects after its hub crashed, and registers again if the hub forgot
//! its listener. After the run settles it pulls until nothing is left, and
//! its mirror must hold what the hub holds.

use crate::sim::{Sim, SimEngine};
use docweave_core::{
    DocId, ErrorCode, Filter, ImportOutcome, ListenerId, Message, Revision, RevisionStatus,
};
use std::collections::{BTreeMap, BTreeSet};

/// The raw endpoint's name.
pub const READER: &str = "reader";

/// The listener and its mirror of the hub's documents.
pub struct Mirror<E: SimEngine> {
    hub: String,
    id: Option<ListenerId>,
    /// The round a registration without an id was last asked for.
    asked: Option<u64>,
    rounds: u64,
    engine: E,
    docs: BTreeMap<DocId, E::Doc>,
}

impl<E: SimEngine> Mirror<E> {
    /// Connects to `hub` and registers a listener for every document.
    pub fn start(sim: &mut Sim<E>, hub: &str) -> Self {
        let mut m = Self {
            hub: hub.to_string(),
            id: None,
            asked: None,
            rounds: 0,
            engine: E::make(),
            docs: BTreeMap::new(),
        };
        sim.raw_connect(READER, hub);
        sim.raw_hello(READER);
        m.round(sim, 3);
        m
    }

    /// One round: what arrived is taken in (registrations, strands, which
    /// are imported and acknowledged), then a pull of at most `limit`
    /// strands is sent (or a registration, while there is no listener).
    /// Answers may come in this round or a later one. Whether anything
    /// came.
    pub fn round(&mut self, sim: &mut Sim<E>, limit: u32) -> bool {
        self.rounds += 1;
        if !sim.raw_connected(READER) {
            // Its hub crashed: connect again and re-register (idempotent
            // for a listener the hub knows, a new one if it forgot it).
            sim.raw_connect(READER, &self.hub);
            sim.raw_hello(READER);
            self.asked = None;
            if let Some(id) = self.id {
                let filter = Filter::all();
                sim.raw_say(
                    READER,
                    Message::ListenerRegister {
                        filter,
                        id: Some(id),
                    },
                );
            }
        }
        let mut progress = self.take_answers(sim);
        match self.id {
            Some(id) => sim.raw_say(READER, Message::ListenerPull { id, limit }),
            None if self.asked.is_none_or(|at| self.rounds >= at + 5) => {
                self.asked = Some(self.rounds);
                let filter = Filter::all();
                sim.raw_say(READER, Message::ListenerRegister { filter, id: None });
            }
            None => {}
        }
        progress |= self.take_answers(sim);
        progress
    }

    fn take_answers(&mut self, sim: &mut Sim<E>) -> bool {
        let mut progress = false;
        for m in sim.raw_inbox.remove(READER).unwrap_or_default() {
            match m {
                Message::ListenerRegistered { id } => {
                    progress |= self.id != Some(id);
                    self.id = Some(id);
                }
                Message::Error {
                    code: ErrorCode::UnknownListener,
                    ..
                } => {
                    // The hub lost the registration (a crash before it was
                    // stored): a new listener pulls everything again.
                    self.id = None;
                    self.asked = None;
                    progress = true;
                }
                Message::Strands { id, strands, more } => {
                    let mut revisions = Vec::new();
                    for st in &strands {
                        if st.version.is_empty() {
                            // The document was deleted: told once, forgotten.
                            self.docs.remove(&st.doc);
                            revisions.push(Revision {
                                doc: st.doc.clone(),
                                version: st.version.clone(),
                                clock: st.clock,
                                status: RevisionStatus::Ok,
                            });
                            continue;
                        }
                        let d = self
                            .docs
                            .entry(st.doc.clone())
                            .or_insert_with(|| self.engine.create(7));
                        let status = match self.engine.import(d, st.data.as_bytes()) {
                            Ok(ImportOutcome::Applied { .. }) => RevisionStatus::Ok,
                            Ok(ImportOutcome::Pending { .. }) => {
                                RevisionStatus::MissingDependencies
                            }
                            _ => RevisionStatus::Invalid,
                        };
                        revisions.push(Revision {
                            doc: st.doc.clone(),
                            version: self.engine.version(d),
                            clock: st.clock,
                            status,
                        });
                    }
                    progress |= !strands.is_empty() || more;
                    sim.raw_say(READER, Message::ListenerAck { id, revisions });
                }
                _ => {}
            }
        }
        progress
    }

    /// Pulls until nothing more comes (bounded).
    pub fn drain(&mut self, sim: &mut Sim<E>) {
        for _ in 0..500 {
            if !self.round(sim, 16) {
                // Once more: an answer may have crossed a reconnection.
                if !self.round(sim, 16) {
                    // And once after the observer gave up on messages that
                    // lost a chunk (see `REASSEMBLY_DEADLINE_MS`): while
                    // those fill its slots, answers cannot be read.
                    sim.advance(crate::sim::REASSEMBLY_DEADLINE_MS + 1);
                    if !self.round(sim, 16) {
                        return;
                    }
                }
            }
        }
    }

    /// Where the mirror differs from the hub, for documents not deleted.
    pub fn differences(&self, sim: &Sim<E>, deleted: &BTreeSet<DocId>) -> Vec<String> {
        let Some(model) = sim.model(&self.hub) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for doc in model.doc_ids() {
            if deleted.contains(doc) {
                continue;
            }
            let theirs = sim.content(&self.hub, doc.as_str()).unwrap_or_default();
            let ours = self.docs.get(doc).map(E::values).unwrap_or_default();
            if ours != theirs {
                out.push(format!(
                    "the listener's mirror of {doc} has {ours:?} but {} has {theirs:?}",
                    self.hub
                ));
            }
        }
        out
    }
}
