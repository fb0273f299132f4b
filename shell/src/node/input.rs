//! What drivers feed the node ([`Input`]): frames put back together and
//! checked, the application's calls, the store's answers, timeouts; and
//! what is held while the store's start-up read is out.

use super::*;

/// What a driver feeds the node, always with the time it happened. New
/// inputs may come with new versions (`Output`, which a host must carry
/// out in full, stays exhaustive).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// One frame arrived on a channel.
    Frame {
        /// The channel, from [`Node::channel_opened`].
        channel: ChannelId,
        /// The frame's bytes.
        bytes: Vec<u8>,
    },
    /// A channel's connection ended.
    ChannelClosed {
        /// The channel.
        channel: ChannelId,
    },
    /// A dial asked for with [`Output::Dial`] failed.
    DialFailed {
        /// Where.
        remote: RemoteAddr,
    },
    /// The answer to an [`Output::Store`] job.
    Store(StoreAnswer),
    /// The time from [`Node::poll_timeout`] has come.
    Timeout,
    /// The application committed edits through a document's handle.
    LocalChange {
        /// The document.
        doc: DocId,
    },
    /// The application made an update with its own CRDT library: import it
    /// as a local change (the document must be open).
    LocalUpdate {
        /// The document.
        doc: DocId,
        /// The update's bytes.
        bytes: Vec<u8>,
    },
    /// The application wants a document: [`Event::DocReady`] (then
    /// [`Node::doc_handle`]) or [`Event::DocUnavailable`] follows.
    Open {
        /// The document.
        doc: DocId,
    },
    /// The application deletes a document.
    Delete {
        /// The document.
        doc: DocId,
    },
    /// The application sets (or clears, with empty data) its presence.
    SetPresence {
        /// The document.
        doc: DocId,
        /// The namespace.
        namespace: Namespace,
        /// The data.
        data: Payload,
    },
    /// The application wants a peer to confirm what it keeps of a
    /// document (the answer updates [`docweave_core::Model::peer_state`]).
    AskPeer {
        /// The document.
        doc: DocId,
        /// The peer.
        peer: docweave_core::PeerId,
    },
    /// The application asks a connected peer which documents it may read
    /// there ([`Event::DocList`] answers).
    ListRemote {
        /// The peer.
        peer: docweave_core::PeerId,
        /// Continue after this document (paging).
        after: Option<DocId>,
    },
    /// The application wants to stay connected to a remote.
    Connect {
        /// Where.
        remote: RemoteAddr,
        /// The token to present.
        token: Option<String>,
        /// Which documents to follow there.
        filter: Filter,
    },
    /// The store, shared with other processes, announced that one of them
    /// wrote ([`Store::watch`](docweave_adapters::Store::watch)): the node
    /// reads its change feed now.
    StoreAnnounced,
    /// The operator's permission rules now, replacing the configured ones.
    Rules(docweave_core::Rules),
    /// See [`docweave_core::Msg::ForgetListener`].
    ForgetListener(docweave_core::ListenerId),
    /// The static tokens (and grants) now, replacing the configured ones.
    Tokens {
        /// Tokens that grant any peer id.
        tokens: Vec<String>,
        /// Tokens that grant some peer ids.
        grants: Vec<docweave_core::Grant>,
    },
    /// A new token for a remote (a refresh before the old one expires):
    /// presented at once on a live connection that speaks protocol 3, and
    /// in every later hello.
    SetToken {
        /// Where.
        remote: RemoteAddr,
        /// The token.
        token: String,
    },
    /// The operator's revocations now (replacing the last): connections of
    /// revoked tokens and identities are closed at once.
    Revoked(docweave_core::Revocations),
    /// The answer to [`Output::Authenticate`] for a channel's token.
    Checked {
        /// The channel whose hello (or reauth) waited for it.
        channel: ChannelId,
        /// What the checker said.
        checked: crate::Checked,
    },
    /// The host stops this node: clients are told to go elsewhere and come
    /// back after `retry_after_ms` (see `docweave_core::Msg::Drain`).
    Drain {
        /// Why, for the clients' logs.
        reason: String,
        /// When they should dial again, in milliseconds.
        retry_after_ms: Millis,
    },
    /// The operator cuts connections off (see `docweave_core::Msg::Disconnect`).
    Disconnect {
        /// Every connection of this identity.
        peer: Option<docweave_core::PeerId>,
        /// This connection.
        channel: Option<ChannelId>,
        /// Why, for the client.
        reason: String,
    },
    /// Another process sharing the store published these bytes (a frame of
    /// presence messages, see [`Store::publish`](docweave_adapters::Store::publish)).
    StorePublished {
        /// The frame.
        bytes: Vec<u8>,
    },
}

impl<E: DocEngine> Node<E> {
    /// A frame from a connection: chunks put together, messages decoded
    /// and handed on; held whole while the connection's token is checked
    /// elsewhere.
    pub(super) fn frame_in(&mut self, channel: ChannelId, bytes: Vec<u8>) {
        if self.checking.contains_key(&channel) {
            return self.hold(channel, checks::Later::Frame(bytes));
        }
        let bytes = match docweave_core::parse_chunk(&bytes) {
            // Nothing is held for a channel before its handshake.
            Some(_) if self.model().channel_peer(channel).is_none() => {
                self.internal.push_back(Msg::ChunkBeforeHello { channel });
                return;
            }
            Some(chunk) => match self.chunks.take(channel, chunk, self.now) {
                chunks::Taken::Pending => return,
                chunks::Taken::Whole(frame) => frame,
                chunks::Taken::TooLarge { size, limit } => {
                    self.internal.push_back(Msg::TooLarge {
                        channel,
                        size,
                        limit,
                    });
                    return;
                }
                chunks::Taken::Refused(e) => {
                    tracing::warn!("{channel}: {e}; the frame is dropped");
                    return;
                }
            },
            None => bytes,
        };
        // A whole (reassembled) frame may be larger than one frame.
        let limits = Limits {
            max_frame: self.options.limits.max_frame.max(self.options.max_message),
            ..self.options.limits
        };
        match decode_frame(&bytes, &limits) {
            Ok(frame) => {
                for message in frame.messages {
                    self.message_in(channel, message);
                }
                for kind in frame.unknown {
                    self.internal.push_back(Msg::Unsupported { channel, kind });
                }
            }
            Err(e) => {
                tracing::warn!("{channel}: bad frame: {e}");
                self.internal.push_back(Msg::FrameRejected {
                    channel,
                    reason: e.to_string(),
                });
            }
        }
    }

    pub(super) fn arrive(&mut self, now: Millis, item: Held) {
        if let (Some((at, pause)), Held::Input(Input::Timeout)) = (self.restore_retry, &item) {
            if now >= at {
                // The store is asked again what it remembers (no other
                // retry while this one is out).
                self.now = self.now.max(now);
                self.restore_retry = Some((Millis::MAX, pause));
                let id = self.job(self.restore_op(), Purpose::Restore);
                self.restoring = Some(id);
                return;
            }
        }
        if let Some(blocker) = self.restoring {
            let unblocks = matches!(&item, Held::Input(Input::Store(a)) if a.id == blocker);
            if !unblocks {
                // One pending timeout is enough.
                let again = matches!(item, Held::Input(Input::Timeout))
                    && self
                        .held
                        .iter()
                        .any(|(_, h)| matches!(h, Held::Input(Input::Timeout)));
                if !again {
                    self.held.push_back((now, item));
                }
                return;
            }
        }
        self.take(now, item);
        self.drain_held();
    }

    /// Inputs that waited for the start-up read, in arrival order, until
    /// the next one blocks (a failed read is tried again).
    pub(super) fn drain_held(&mut self) {
        while self.restoring.is_none() {
            let Some((now, item)) = self.held.pop_front() else {
                break;
            };
            self.take(now, item);
        }
    }

    pub(super) fn take(&mut self, now: Millis, item: Held) {
        // The rest of an input the node stopped in comes before this one.
        if self.work_left() {
            self.may_yield = false;
            self.run();
        }
        self.may_yield = true;
        self.now = self.now.max(now);
        self.replicas.set_now(self.now);
        self.chunks.expire(self.now);
        match item {
            Held::Opened { channel, remote } => self.step(Msg::ChannelAdded {
                channel,
                kind: ChannelKind::Network,
                remote,
            }),
            Held::Input(input) => self.input(input),
        }
        self.run();
    }

    pub(super) fn input(&mut self, input: Input) {
        match input {
            Input::Frame { channel, bytes } => {
                if !self.channels.contains(&channel) {
                    return;
                }
                self.count_frame_in(bytes.len());
                self.frame_in(channel, bytes);
            }
            Input::ChannelClosed { channel } => {
                self.chunks.drop_channel(channel);
                self.checking.remove(&channel);
                // What waited to be sent on it can no longer go.
                self.waiting.drop_channel(channel);
                if self.channels.remove(&channel) {
                    self.outbox.remove(&channel);
                    self.step(Msg::ChannelRemoved { channel });
                }
            }
            Input::DialFailed { remote } => self.step(Msg::ConnectFailed { remote }),
            Input::Store(answer) => self.store_answer(answer),
            Input::Timeout => self.step(Msg::Tick),
            Input::LocalChange { doc } => self.local_change(doc),
            Input::LocalUpdate { doc, bytes } => {
                let ready = self.model().doc_version(&doc).is_some();
                let engine = self.replicas.engine().clone();
                match self.replicas.touch(&doc) {
                    Some(d) if ready => match engine.import(d, &bytes) {
                        Ok(ImportOutcome::Failed { reason }) => {
                            self.outputs.push_back(Output::Event(Event::Error {
                                doc: Some(doc),
                                reason: format!("the local update does not import: {reason}"),
                            }));
                        }
                        Ok(_) => self.local_change(doc),
                        Err(e) => self.replica_broke(&doc, &e),
                    },
                    _ => self.outputs.push_back(Output::Event(Event::Error {
                        reason: format!("{doc} is not open here; open it before updating it"),
                        doc: Some(doc),
                    })),
                }
            }
            Input::Open { doc } => self.step(Msg::OpenDoc {
                doc,
                meta: Default::default(),
            }),
            Input::Delete { doc } => self.step(Msg::DeleteDoc { doc }),
            Input::StoreAnnounced => {
                if let Some(store) = self.store {
                    self.step(Msg::StoreAnnounced { store });
                }
            }
            Input::StorePublished { bytes } => self.published(&bytes),
            Input::Revoked(r) => self.step(Msg::Revoked(r)),
            Input::Drain {
                reason,
                retry_after_ms,
            } => self.step(Msg::Drain {
                reason,
                retry_after_ms,
            }),
            Input::Disconnect {
                peer,
                channel,
                reason,
            } => self.step(Msg::Disconnect {
                peer,
                channel,
                reason,
            }),
            Input::Checked { channel, checked } => self.checked(channel, checked),
            Input::Rules(r) => self.step(Msg::Rules(r)),
            Input::ForgetListener(id) => self.step(Msg::ForgetListener(id)),
            Input::Tokens { tokens, grants } => self.step(Msg::Tokens { tokens, grants }),
            Input::SetToken { remote, token } => self.step(Msg::SetToken { remote, token }),
            Input::SetPresence {
                doc,
                namespace,
                data,
            } => self.step(Msg::SetPresence {
                doc,
                namespace,
                data,
            }),
            Input::AskPeer { doc, peer } => self.step(Msg::AskPeer { doc, peer }),
            Input::ListRemote { peer, after } => self.step(Msg::ListRemote { peer, after }),
            Input::Connect {
                remote,
                token,
                filter,
            } => self.step(Msg::Connect {
                remote,
                token,
                filter,
            }),
        }
    }

    pub(super) fn local_change(&mut self, doc: DocId) {
        let engine = self.replicas.engine().clone();
        let Some(version) = self.replicas.touch(&doc).map(|d| engine.version(d)) else {
            tracing::info!("a local change to {doc}, which is not in memory; ignored");
            return;
        };
        self.replicas.changed(&doc);
        self.step(Msg::LocalChange {
            doc: doc.clone(),
            version: version.clone(),
        });
        // The core reports remote changes; local ones are told here.
        let me = self.me();
        self.outputs.push_back(Output::Event(Event::DocChanged {
            doc,
            version,
            from: Some(me),
        }));
    }
}
