//! A small harness: feed messages to one model and look at what came out.

use crate::{
    update, ChannelId, ChannelKind, Clock, Cmd, Config, DocId, Event, Filter, Hello, LoadOutcome,
    Message, Model, Msg, Outgoing, PeerId, PeerKind, RemoteAddr, VersionVector, Welcome,
    PROTOCOL_VERSION,
};

pub struct Kit {
    pub model: Model,
    /// The time every input arrives at.
    pub now: crate::Millis,
}

pub fn vv(e: &[(u64, u64)]) -> VersionVector {
    VersionVector::from_entries(e.iter().copied())
}

pub fn doc(s: &str) -> DocId {
    DocId::new(s)
}

pub fn hello(peer: &str) -> Message {
    Message::Hello(Hello {
        peer: PeerId::new(peer),
        name: peer.into(),
        kind: PeerKind::User,
        protocol: PROTOCOL_VERSION,
        token: None,
        clock: Clock(0),
    })
}

impl Kit {
    pub fn new(config: Config) -> Self {
        Kit {
            model: Model::new(config),
            now: 0,
        }
    }

    pub fn hub() -> Self {
        Self::new(Config::new("hub"))
    }

    pub fn feed(&mut self, msg: Msg) -> Vec<Cmd> {
        let model = std::mem::replace(&mut self.model, Model::new(Config::new("x")));
        let (model, cmds) = update(model, self.now, msg);
        self.model = model;
        cmds
    }

    /// Runs one handler alone, at `now`: what it did, and the follow-ups it
    /// recorded for other handlers (returned, not run).
    pub(crate) fn handle(
        &mut self,
        handler: impl FnOnce(&mut Model, &mut crate::effects::Effects),
    ) -> (Vec<Cmd>, Vec<crate::effects::FollowUp>) {
        let mut out = crate::effects::Effects::default();
        self.model.now = self.model.now.max(self.now);
        handler(&mut self.model, &mut out);
        let mut follow_ups = Vec::new();
        while let Some(f) = out.next_follow_up() {
            follow_ups.push(f);
        }
        (out.finish(), follow_ups)
    }

    /// Time passes to `now` and due timers fire.
    pub fn tick(&mut self, now: crate::Millis) -> Vec<Cmd> {
        self.now = now;
        self.feed(Msg::Tick)
    }

    /// The application creates a document (asking `stores`, which have none).
    pub fn create(&mut self, stores: &[u64], d: &str) -> Vec<Cmd> {
        let mut cmds = self.feed(Msg::OpenDoc {
            doc: doc(d),
            meta: Default::default(),
        });
        for s in stores {
            cmds.extend(self.missing(*s, d));
        }
        cmds
    }

    /// A store answers that it has no such document.
    pub fn missing(&mut self, store: u64, d: &str) -> Vec<Cmd> {
        self.feed(Msg::StoreLoaded {
            store: ChannelId(store),
            doc: doc(d),
            outcome: LoadOutcome::Missing,
        })
    }

    /// A store held the document at `version`; the shell imported it.
    pub fn found(&mut self, store: u64, d: &str, version: VersionVector) -> Vec<Cmd> {
        self.feed(Msg::StoreLoaded {
            store: ChannelId(store),
            doc: doc(d),
            outcome: LoadOutcome::Found {
                version: version.clone(),
                stored: version,
                unreadable: 0,
                clock: Clock(1),
                bytes: 0,
                meta: None,
            },
        })
    }

    pub fn recv(&mut self, ch: u64, message: Message) -> Vec<Cmd> {
        self.feed(Msg::Received {
            channel: ChannelId(ch),
            message,
        })
    }

    pub fn store(&mut self, ch: u64) {
        self.feed(Msg::ChannelAdded {
            channel: ChannelId(ch),
            kind: ChannelKind::Storage,
            remote: None,
        });
    }

    /// Channel `ch`'s peer asks for document `d`, holding nothing: it then
    /// follows the document.
    pub fn follow(&mut self, ch: u64, d: &str) -> Vec<Cmd> {
        self.recv(
            ch,
            Message::SyncRequest {
                doc: doc(d),
                version: VersionVector::new(),
                bidirectional: false,
            },
        )
    }

    /// A network peer that connected to us and said hello.
    pub fn peer(&mut self, ch: u64, name: &str) -> Vec<Cmd> {
        self.greet(ch, hello(name))
    }

    /// A network connection arrives on channel `ch` and says `hello` (any
    /// handshake message, well-formed or not).
    pub fn greet(&mut self, ch: u64, hello: Message) -> Vec<Cmd> {
        self.accept(ch);
        self.recv(ch, hello)
    }

    /// A network connection arrives on channel `ch` (nothing said yet).
    pub fn accept(&mut self, ch: u64) -> Vec<Cmd> {
        self.feed(Msg::ChannelAdded {
            channel: ChannelId(ch),
            kind: ChannelKind::Network,
            remote: None,
        })
    }

    /// We dial `remote` on channel `ch`; it welcomes us as `name`.
    pub fn dial(&mut self, ch: u64, remote: &str, name: &str) -> Vec<Cmd> {
        self.dial_at(ch, remote, name, Clock(0))
    }

    /// [`Kit::dial`], the remote's feed being at `clock`.
    pub fn dial_at(&mut self, ch: u64, remote: &str, name: &str, clock: Clock) -> Vec<Cmd> {
        self.feed(Msg::Connect {
            remote: RemoteAddr::new(remote),
            token: None,
            filter: Filter::all(),
        });
        self.feed(Msg::ChannelAdded {
            channel: ChannelId(ch),
            kind: ChannelKind::Network,
            remote: Some(RemoteAddr::new(remote)),
        });
        self.recv(
            ch,
            Message::Welcome(Welcome {
                peer: PeerId::new(name),
                name: name.into(),
                kind: PeerKind::Service,
                protocol: self.model.config().protocol,
                clock,
            }),
        )
    }
}

/// Items sent on a channel.
pub fn sent(cmds: &[Cmd], ch: u64) -> Vec<Outgoing> {
    cmds.iter()
        .filter_map(|c| match c {
            Cmd::Send { channel, items } if *channel == ChannelId(ch) => Some(items.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Ready messages sent on a channel.
pub fn messages(cmds: &[Cmd], ch: u64) -> Vec<Message> {
    sent(cmds, ch)
        .into_iter()
        .filter_map(|o| match o {
            Outgoing::Message(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// Data items sent on a channel: (batch, since, as_update).
pub fn data(cmds: &[Cmd], ch: u64) -> Vec<(crate::BatchId, Option<VersionVector>, bool)> {
    sent(cmds, ch)
        .into_iter()
        .filter_map(|o| match o {
            Outgoing::Data {
                batch,
                since,
                as_update,
                ..
            } => Some((batch, since, as_update)),
            _ => None,
        })
        .collect()
}

pub fn events(cmds: &[Cmd]) -> Vec<Event> {
    cmds.iter()
        .filter_map(|c| match c {
            Cmd::Emit(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

pub fn imports(cmds: &[Cmd]) -> Vec<crate::ImportId> {
    cmds.iter()
        .filter_map(|c| match c {
            Cmd::Import { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

pub fn closes(cmds: &[Cmd], ch: u64) -> bool {
    cmds.iter()
        .any(|c| matches!(c, Cmd::Close { channel, .. } if *channel == ChannelId(ch)))
}

/// Whether channel `ch` was sent an error with `code`.
pub fn refused_with(cmds: &[Cmd], ch: u64, code: crate::ErrorCode) -> bool {
    messages(cmds, ch)
        .iter()
        .any(|m| matches!(m, Message::Error { code: c, .. } if *c == code))
}
