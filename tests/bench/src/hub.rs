//! The hub workload of the core: 1,000 peers, 1,000 active documents
//! spread over any total, handshakes and sync-requests, then live updates
//! fanned out with the store's and the peers' acknowledgements fed back.

use docweave_core::{
    update_in_place, AckStatus, ChannelId, ChannelKind, Clock, Cmd, Config, DocId, DocMeta, Hello,
    ImportOutcome, LoadOutcome, Message, Model, Msg, Outgoing, Payload, PeerId, PeerKind,
    StoredDoc, VersionVector, PROTOCOL_VERSION,
};
use std::hint::black_box;

/// Peers on the hub.
pub const PEERS: u64 = 1_000;
const SUBSCRIPTIONS: u64 = 3;
const STORE: ChannelId = ChannelId(0);

/// Documents peers work on.
const ACTIVE: u64 = 1_000;

/// Which of the documents peers work on peer `peer`'s `k`th is.
fn active_of(peer: u64, k: u64) -> usize {
    ((peer * 7 + k * 331) % ACTIVE) as usize
}

/// The documents peers work on: 1,000 of them, spread evenly over all the
/// documents, so the fan-out is the same whatever the total. Named once:
/// an update arrives with its id decoded, so the bench does not time
/// formatting one (that was about 1.5% of a live update's instructions).
fn active_docs(docs: u64) -> Vec<DocId> {
    (0..ACTIVE)
        .map(|active| DocId::new(&format!("doc-{}", active * (docs / ACTIVE))))
        .collect()
}

/// A hub model fed a workload, counting what it was fed.
pub struct Hub {
    model: Model,
    /// Messages fed to `update` so far.
    pub fed: u64,
    active: Vec<DocId>,
    counters: Vec<u64>,
    data: Payload,
}

impl Hub {
    fn feed(&mut self, msg: Msg) -> Vec<Cmd> {
        self.fed += 1;
        // No timer is ever due here: the time can stand still.
        update_in_place(&mut self.model, 0, msg)
    }

    /// Answers what the hub sent: acks from the store and from peers for every data item.
    fn answer(&mut self, cmds: Vec<Cmd>) {
        let mut acks = Vec::new();
        for c in cmds {
            if let Cmd::Send { channel, items } = c {
                for item in items {
                    if let (STORE, Outgoing::Message(Message::SyncRequest { doc, .. })) =
                        (channel, &item)
                    {
                        acks.push(self.stored(doc.clone()));
                    }
                    if let Outgoing::Data { batch, .. } = item {
                        let clock = Some(Clock(self.fed));
                        acks.push(Msg::Received {
                            channel,
                            message: Message::Ack {
                                batch,
                                status: AckStatus::Ok,
                                clock,
                            },
                        });
                    }
                }
            }
        }
        for a in acks {
            let cmds = self.feed(a);
            black_box(cmds);
        }
    }

    /// The store's answer to a load of `doc` (one of `active_docs`).
    fn stored(&self, doc: DocId) -> Msg {
        let index: u64 = doc
            .as_str()
            .strip_prefix("doc-")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Msg::StoreLoaded {
            store: STORE,
            doc,
            outcome: LoadOutcome::Found {
                version: VersionVector::new(),
                stored: VersionVector::new(),
                unreadable: 0,
                clock: Clock(index + 1),
                bytes: 64,
                meta: None,
            },
        }
    }

    /// A hub over a store of `docs` documents that holds in memory only
    /// those asked for, reading each from the store when first asked for,
    /// as `docweave serve` does by default.
    pub fn on_demand(docs: u64) -> Self {
        Self::build(docs, true)
    }

    /// A hub holding all `docs` documents' metadata in memory (restored
    /// from a store's, as an embedding host does by default).
    pub fn new(docs: u64) -> Self {
        Self::build(docs, false)
    }

    fn build(docs: u64, on_demand: bool) -> Self {
        let stored: Vec<StoredDoc> = (0..if on_demand { 0 } else { docs })
            .map(|i| StoredDoc {
                doc: DocId::new(&format!("doc-{i}")),
                meta: DocMeta::default(),
                version: VersionVector::new(),
                clock: Clock(i + 1),
            })
            .collect();
        let mut config = Config::new("hub");
        config.kind = PeerKind::Service;
        if on_demand {
            config.bounds.idle_metadata = 20_000;
        }
        let mut hub = Hub {
            model: Model::new(config),
            fed: 0,
            active: active_docs(docs),
            counters: vec![0; PEERS as usize],
            data: Payload::new(vec![7u8; 64]),
        };
        hub.feed(Msg::ChannelAdded {
            channel: STORE,
            kind: ChannelKind::Storage,
            remote: None,
        });
        hub.feed(Msg::Restored {
            store: STORE,
            clock: Clock(docs),
            // On demand: every document is below the floor, in the store.
            floor: Clock(if on_demand { docs } else { 0 }),
            docs: stored,
            records: Vec::new(),
        });
        hub
    }

    /// Documents whose metadata the core holds in memory.
    pub fn documents_in_memory(&self) -> usize {
        self.model.gauges().documents
    }

    /// Every peer connects, says hello and asks for its documents.
    pub fn connect_all(&mut self) {
        for p in 0..PEERS {
            let channel = ChannelId(p + 1);
            self.feed(Msg::ChannelAdded {
                channel,
                kind: ChannelKind::Network,
                remote: None,
            });
            let hello = Hello {
                peer: PeerId::new(&format!("peer-{p}")),
                name: String::new(),
                kind: PeerKind::User,
                protocol: PROTOCOL_VERSION,
                token: None,
                clock: Clock(0),
            };
            self.feed(Msg::Received {
                channel,
                message: Message::Hello(hello),
            });
            for k in 0..SUBSCRIPTIONS {
                let doc = self.active[active_of(p, k)].clone();
                let cmds = self.feed(Msg::Received {
                    channel,
                    message: Message::SyncRequest {
                        doc,
                        version: VersionVector::new(),
                        bidirectional: false,
                    },
                });
                self.answer(cmds);
            }
        }
    }

    /// One live update from peer `p`: received, imported, persisted, fanned out, acknowledged.
    /// One live update from peer `i % PEERS`.
    pub fn live_update(&mut self, i: u64) {
        let p = i % PEERS;
        let channel = ChannelId(p + 1);
        let doc = self.active[active_of(p, i % SUBSCRIPTIONS)].clone();
        self.counters[p as usize] += 1;
        let version = VersionVector::from_entries([(p + 1, self.counters[p as usize])]);
        let cmds = self.feed(Msg::Received {
            channel,
            message: Message::Update {
                doc,
                batch: docweave_core::BatchId(i + 1),
                data: self.data.clone(),
                version: version.clone(),
            },
        });
        let import = cmds.iter().find_map(|c| match c {
            Cmd::Import { id, .. } => Some(*id),
            _ => None,
        });
        if let Some(id) = import {
            let cmds = self.feed(Msg::Imported {
                id,
                outcome: ImportOutcome::Applied { version },
            });
            self.answer(cmds);
        }
    }
}
