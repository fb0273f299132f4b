//! `update` on a hub workload: 1,000 peers and 1,000 or 100,000 documents.
//! Handshakes and sync-requests, then live updates fanned out to the other
//! subscribers, with the store's and the peers' acknowledgements fed back.
//! Throughput is in messages fed to `update` per second.
//!
//! Run: `cargo bench -p docweave-core --bench hub`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use docweave_core::{
    update, AckStatus, ChannelId, ChannelKind, Clock, Cmd, Config, DocId, DocMeta, Hello,
    ImportOutcome, Message, Model, Msg, Outgoing, Payload, PeerId, PeerKind, StoredDoc,
    VersionVector, PROTOCOL_VERSION,
};
use std::hint::black_box;

const PEERS: u64 = 1_000;
const SUBSCRIPTIONS: u64 = 3;
const STORE: ChannelId = ChannelId(0);

/// The documents peers work on: 1,000 of them, spread evenly over all the
/// documents, so the fan-out is the same whatever the total.
fn doc_of(peer: u64, k: u64, docs: u64) -> DocId {
    let active = (peer * 7 + k * 331) % 1_000;
    DocId::new(&format!("doc-{}", active * (docs / 1_000)))
}

struct Hub {
    model: Option<Model>,
    fed: u64,
    docs: u64,
    counters: Vec<u64>,
    data: Payload,
}

impl Hub {
    fn feed(&mut self, msg: Msg) -> Vec<Cmd> {
        let Some(model) = self.model.take() else {
            return Vec::new();
        };
        let (model, cmds) = update(model, msg);
        self.model = Some(model);
        self.fed += 1;
        cmds
    }

    /// Answers what the hub sent: acks from the store and from peers for every data item.
    fn answer(&mut self, cmds: Vec<Cmd>) {
        let mut acks = Vec::new();
        for c in cmds {
            if let Cmd::Send { channel, items } = c {
                for item in items {
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

    fn new(docs: u64) -> Self {
        let stored: Vec<StoredDoc> = (0..docs)
            .map(|i| StoredDoc {
                doc: DocId::new(&format!("doc-{i}")),
                meta: DocMeta::default(),
                version: VersionVector::new(),
                clock: Clock(i + 1),
            })
            .collect();
        let mut config = Config::new("hub");
        config.kind = PeerKind::Service;
        let mut hub = Hub {
            model: Some(Model::new(config)),
            fed: 0,
            docs,
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
            docs: stored,
            records: Vec::new(),
        });
        hub
    }

    /// Every peer connects, says hello and asks for its documents.
    fn connect_all(&mut self) {
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
                let doc = doc_of(p, k, self.docs);
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
    fn live_update(&mut self, i: u64) {
        let p = i % PEERS;
        let channel = ChannelId(p + 1);
        let doc = doc_of(p, i % SUBSCRIPTIONS, self.docs);
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

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("hub");
    group.sample_size(10);
    group.measurement_time(std::time::Duration::from_secs(4));
    for docs in [1_000u64, 100_000] {
        // Connect: a fresh hub each time; messages counted from a dry run.
        let mut dry = Hub::new(docs);
        let before = dry.fed;
        dry.connect_all();
        group.throughput(Throughput::Elements(dry.fed - before));
        group.bench_with_input(
            BenchmarkId::new("connect_and_subscribe", docs),
            &docs,
            |b, &docs| {
                b.iter_batched(
                    || Hub::new(docs),
                    |mut hub| {
                        hub.connect_all();
                        hub
                    },
                    criterion::BatchSize::LargeInput,
                )
            },
        );

        // Live updates on a connected hub.
        let mut hub = Hub::new(docs);
        hub.connect_all();
        let per_round = {
            let before = hub.fed;
            for i in 0..PEERS {
                hub.live_update(i);
            }
            (hub.fed - before) / PEERS
        };
        group.throughput(Throughput::Elements(per_round * PEERS));
        let mut i = PEERS;
        group.bench_with_input(
            BenchmarkId::new("live_updates_x1000", docs),
            &docs,
            |b, _| {
                b.iter(|| {
                    for _ in 0..PEERS {
                        hub.live_update(i);
                        i += 1;
                    }
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
