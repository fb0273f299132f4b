//! Readable one-line descriptions of messages, inputs and commands: the
//! protocol traces of the snapshot tests and of `docweave trace`.

use crate::{StoreOp, StoreResult};
use docweave_core::{
    Cmd, Event, ImportOutcome, Message, Msg, Outgoing, Reply, StateRecord, SyncState,
};

fn filter_text(f: &docweave_core::Filter) -> String {
    if f.is_empty() {
        "*".into()
    } else {
        let mut parts: Vec<String> = f.docs.iter().map(|d| d.to_string()).collect();
        parts.extend(f.types.iter().map(|t| format!("type:{t}")));
        parts.extend(f.scopes.iter().map(|t| format!("scope:{t}")));
        parts.extend(f.branches.iter().map(|t| format!("branch:{t}")));
        parts.join(",")
    }
}

fn revisions_text(revisions: &[docweave_core::Revision]) -> String {
    let list: Vec<String> = revisions
        .iter()
        .map(|r| format!("{}{} {:?}", r.doc, r.version, r.status))
        .collect();
    list.join(" ")
}

/// One protocol message.
pub fn message(m: &Message) -> String {
    let name = m.name();
    match m {
        Message::Hello(h) => format!(
            "{name} peer={} protocol={} token={} clock={}",
            h.peer,
            h.protocol,
            if h.token.is_some() { "given" } else { "none" },
            h.clock.0
        ),
        Message::Welcome(w) => format!(
            "{name} peer={} protocol={} clock={}",
            w.peer, w.protocol, w.clock.0
        ),
        Message::SyncRequest {
            doc,
            version,
            bidirectional,
        } => {
            format!(
                "{name} doc={doc} have={version}{}",
                if *bidirectional { " bidirectional" } else { "" }
            )
        }
        Message::SyncResponse {
            doc,
            batch,
            reply,
            version,
        } => {
            let r = match reply {
                Reply::UpToDate => "up-to-date".to_string(),
                Reply::Snapshot(d) => format!("snapshot {}B batch={}", d.len(), batch.0),
                Reply::Delta(d) => format!("delta {}B batch={}", d.len(), batch.0),
                Reply::Unavailable => "unavailable".to_string(),
            };
            format!("{name} doc={doc} {r} version={version}")
        }
        Message::Update {
            doc,
            batch,
            data,
            version,
        } => {
            format!(
                "{name} doc={doc} {}B batch={} version={version}",
                data.len(),
                batch.0
            )
        }
        Message::Ack {
            batch,
            status,
            clock,
        } => format!(
            "{name} batch={} {status:?}{}",
            batch.0,
            clock.map(|c| format!(" clock={}", c.0)).unwrap_or_default()
        ),
        Message::Subscribe { filter }
        | Message::Unsubscribe { filter }
        | Message::DirectoryRequest { filter } => {
            format!("{name} filter={}", filter_text(filter))
        }
        Message::ChangesSince { clock, filter } => {
            format!("{name} clock={} filter={}", clock.0, filter_text(filter))
        }
        Message::Changes { docs, up_to, more } => {
            let list: Vec<String> = docs
                .iter()
                .map(|d| format!("{}@{}{}", d.doc, d.clock.0, d.version))
                .collect();
            format!(
                "{name} [{}] up_to={}{}",
                list.join(" "),
                up_to.0,
                if *more { " more" } else { "" }
            )
        }
        Message::DirectoryResponse { docs } | Message::NewDocs { docs } => {
            let list: Vec<String> = docs.iter().map(|d| d.doc.to_string()).collect();
            format!("{name} [{}]", list.join(" "))
        }
        Message::Delete { doc } => format!("{name} doc={doc}"),
        Message::DeleteResult { doc, outcome } => format!("{name} doc={doc} {outcome:?}"),
        Message::Ephemeral(e) => format!(
            "{name} doc={} ns={} origin={} hops={} ttl={} {}B",
            e.doc,
            e.namespace,
            e.origin,
            e.hops,
            e.ttl_ms,
            e.data.len()
        ),
        Message::Error { code, message } => format!("{name} {code:?}: {message}"),
        Message::ListenerRegister { filter, id } => {
            format!(
                "{name} filter={} id={}",
                filter_text(filter),
                id.map(|i| i.0.to_string()).unwrap_or("new".into())
            )
        }
        Message::ListenerRegistered { id } => format!("{name} id={}", id.0),
        Message::ListenerPull { id, limit } => format!("{name} id={} limit={limit}", id.0),
        Message::Strands { id, strands, more } => {
            let list: Vec<String> = strands
                .iter()
                .map(|s| format!("{}{}->{} {}B", s.doc, s.since, s.version, s.data.len()))
                .collect();
            format!(
                "{name} id={} [{}]{}",
                id.0,
                list.join(" "),
                if *more { " more" } else { "" }
            )
        }
        Message::ListenerAck { id, revisions } => {
            format!("{name} id={} [{}]", id.0, revisions_text(revisions))
        }
        Message::PushResult { revisions } => format!("{name} [{}]", revisions_text(revisions)),
        Message::ListenerAcked { id, accepted } => {
            format!("{name} id={} accepted={accepted}", id.0)
        }
        Message::ListDocs { filter, after } => format!(
            "{name} filter={} after={}",
            filter_text(filter),
            after
                .as_ref()
                .map(|d| d.to_string())
                .unwrap_or("start".into())
        ),
        Message::Reauth { .. } => format!("{name} token=given"),
        Message::GoingAway {
            reason,
            retry_after_ms,
        } => format!("{name} {reason:?} retry-after={retry_after_ms}ms"),
        Message::DocList { docs, more } => {
            let list: Vec<String> = docs
                .iter()
                .map(|d| format!("{}@{}{}", d.doc, d.clock.0, d.version))
                .collect();
            format!(
                "{name} [{}]{}",
                list.join(" "),
                if *more { " more" } else { "" }
            )
        }
        Message::Push { strands } => {
            let list: Vec<String> = strands
                .iter()
                .map(|s| format!("{}->{} {}B", s.doc, s.version, s.data.len()))
                .collect();
            format!("{name} [{}]", list.join(" "))
        }
    }
}

/// An outgoing item before the shell turned it into bytes (for unresolved data).
pub fn outgoing(item: &Outgoing) -> String {
    match item {
        Outgoing::Message(m) => message(m),
        Outgoing::Data {
            doc,
            batch,
            since,
            as_update,
        } => format!(
            "data doc={doc} batch={} since={} as={}",
            batch.0,
            since
                .as_ref()
                .map(|v| v.to_string())
                .unwrap_or("snapshot".into()),
            if *as_update {
                "update"
            } else {
                "sync-response"
            }
        ),
        Outgoing::Strands { id, items, more } => {
            format!("strands id={} items={} more={more}", id.0, items.len())
        }
        Outgoing::Read(read) => format!(
            "read-index job={} {} limit={}",
            read.job,
            read_range(&read.range),
            read.limit
        ),
    }
}

/// An application or shell input (network inputs are traced as messages).
pub fn input(m: &Msg) -> Option<String> {
    Some(match m {
        Msg::Tick => "tick".to_string(),
        Msg::Restored {
            clock,
            docs,
            records,
            ..
        } => {
            format!(
                "restored clock={} docs={} records={}",
                clock.0,
                docs.len(),
                records.len()
            )
        }
        Msg::StoreRead { job, docs, .. } => {
            let list: Vec<String> = docs
                .iter()
                .map(|d| format!("{}@{}", d.doc, d.clock.0))
                .collect();
            format!("store-read job={job} [{}]", list.join(", "))
        }
        Msg::ChannelAdded { .. } | Msg::ChannelRemoved { .. } | Msg::Received { .. } => {
            return None
        }
        Msg::FrameRejected { reason, .. } => format!("frame-rejected: {reason}"),
        Msg::Imported { id, outcome } => match outcome {
            ImportOutcome::Applied { version } => {
                format!("imported {} applied version={version}", id.0)
            }
            ImportOutcome::Pending { version } => {
                format!("imported {} pending version={version}", id.0)
            }
            ImportOutcome::Failed { reason } => format!("imported {} failed: {reason}", id.0),
            ImportOutcome::Refused { reason } => format!("imported {} refused: {reason}", id.0),
            ImportOutcome::Unavailable { reason } => {
                format!("imported {} unavailable: {reason}", id.0)
            }
        },
        Msg::LocalChange { doc, version } => format!("local-change doc={doc} version={version}"),
        Msg::OpenDoc { doc, .. } => format!("open doc={doc}"),
        Msg::DeleteDoc { doc } => format!("delete doc={doc}"),
        Msg::SetPresence {
            doc,
            namespace,
            data,
        } => format!("set-presence doc={doc} ns={namespace} {}B", data.len()),
        Msg::Connect { remote, token, .. } => {
            format!(
                "connect {remote} token={}",
                if token.is_some() { "given" } else { "none" }
            )
        }
        Msg::ConnectFailed { remote } => format!("connect-failed {remote}"),
        Msg::AskPeer { doc, peer } => format!("ask-peer doc={doc} peer={peer}"),
        Msg::Unsupported { kind, .. } => format!("unsupported message kind {kind}"),
        Msg::TooLarge { size, limit, .. } => format!("too large: {size} bytes, limit {limit}"),
        Msg::ChunkBeforeHello { .. } => "a chunk before hello".into(),
        Msg::SetToken { remote, .. } => format!("set-token {remote}"),
        Msg::Rules(r) => format!("rules replaced: {} rules", r.rules.len()),
        Msg::ForgetListener(id) => format!("forget listener {}", id.0),
        Msg::Tokens { tokens, grants } => format!(
            "static tokens replaced: {} tokens, {} grants",
            tokens.len(),
            grants.len()
        ),
        Msg::Drain {
            reason,
            retry_after_ms,
        } => format!("drain {reason:?} retry-after={retry_after_ms}ms"),
        Msg::Disconnect {
            peer,
            channel,
            reason,
        } => match (peer, channel) {
            (Some(p), _) => format!("disconnect {p} {reason:?}"),
            (None, Some(c)) => format!("disconnect {c} {reason:?}"),
            (None, None) => format!("disconnect nobody {reason:?}"),
        },
        Msg::Revoked(r) => format!(
            "revoked {} tokens, {} identities",
            r.tokens.len(),
            r.peers.len()
        ),
        Msg::Authenticated {
            message, verdict, ..
        } => match verdict {
            docweave_core::Verdict::Valid(c) => format!(
                "{} as {} with a signed token: valid, expires {:?}, {}",
                message.name(),
                c.peer,
                c.expires,
                if c.rights.is_some() {
                    "its own rights"
                } else {
                    "the rules' rights"
                }
            ),
            docweave_core::Verdict::Refused(why) => {
                format!("{} with a signed token: refused: {why}", message.name())
            }
        },
        Msg::ListRemote { peer, .. } => format!("list-remote {peer}"),
        // Store answers are traced where they travel (`store_result`).
        Msg::StoreLoaded { .. } | Msg::StoreSaved { .. } | Msg::StoreChanged { .. } => return None,
        Msg::StoreFailed { failure, .. } => format!("store-failed {failure:?}"),
        Msg::StoreAnnounced { .. } => "store-announced".into(),
        Msg::ListenerLoaded { id, record, .. } => format!(
            "listener-loaded {} {}",
            id.0,
            if record.is_some() { "found" } else { "none" }
        ),
    })
}

/// One step of a node's core, as trace lines: the input (unless it is a
/// message or a store answer, traced where they travel) and the commands
/// (sends are traced as frames).
pub fn step(node: &str, input_msg: &Msg, cmds: &[Cmd], out: &mut Vec<String>) {
    if let Some(line) = input(input_msg) {
        out.push(format!("{node}: {line}"));
    }
    for c in cmds {
        if let Some(line) = command(c) {
            out.push(format!("{node}: {line}"));
        }
    }
}

/// A store job.
pub fn store_op(op: &StoreOp) -> String {
    match op {
        StoreOp::Restore => "restore".into(),
        StoreOp::RestoreRecent => "restore recent".into(),
        StoreOp::ReadIndex {
            range,
            filter,
            limit,
        } => format!("read-index {} {filter:?} limit={limit}", read_range(range)),
        StoreOp::Append(changes) => {
            let list: Vec<String> = changes
                .iter()
                .map(|a| format!("{} {}B version={}", a.doc, a.data.len(), a.version))
                .collect();
            format!("append [{}]", list.join(", "))
        }
        StoreOp::Load(doc) => format!("load {doc}"),
        StoreOp::LoadSince(doc, after) => format!("load {doc} after {}", after.0),
        StoreOp::Changes { since, .. } => format!("changes-since {}", since.0),
        StoreOp::Save(r) => command(&Cmd::Save(r.clone())).unwrap_or_default(),
        StoreOp::Purge(doc) => format!("purge {doc}"),
        StoreOp::Publish(bytes) => format!("publish {}B", bytes.len()),
        StoreOp::Record(key) => format!("record {key}"),
    }
}

/// A read of the store's index, in words.
pub fn read_range(range: &docweave_core::ReadRange) -> String {
    match range {
        docweave_core::ReadRange::Clocks {
            after,
            up_to,
            newest_first,
        } => format!(
            "clocks ({}, {}]{}",
            after.0,
            up_to.0,
            if *newest_first { " newest first" } else { "" }
        ),
        docweave_core::ReadRange::Ids { after } => match after {
            Some(a) => format!("ids after {a}"),
            None => "ids".into(),
        },
    }
}

/// A store job's result.
pub fn store_result(r: &StoreResult) -> String {
    match r {
        StoreResult::Restored {
            clock,
            floor,
            docs,
            records,
        } => format!(
            "restored clock={}{} docs={} records={}",
            clock.0,
            match floor.0 {
                0 => String::new(),
                f => format!(" floor={f}"),
            },
            docs.len(),
            records.len()
        ),
        StoreResult::Index(docs) => {
            let list: Vec<String> = docs
                .iter()
                .map(|d| format!("{}@{}", d.doc, d.clock.0))
                .collect();
            format!("index [{}]", list.join(", "))
        }
        StoreResult::Appended(results) => {
            let list: Vec<String> = results
                .iter()
                .map(|r| match r {
                    Ok(c) => format!("clock={}", c.0),
                    Err(e) => format!("failed: {}", e.reason),
                })
                .collect();
            format!("appended [{}]", list.join(", "))
        }
        StoreResult::Loaded(Some(l)) => format!(
            "loaded version={} {}B in {} piece(s)",
            l.version,
            l.snapshot.as_ref().map_or(0, Vec::len) + l.changes.iter().map(Vec::len).sum::<usize>(),
            usize::from(l.snapshot.is_some()) + l.changes.len()
        ),
        StoreResult::Loaded(None) => "missing".into(),
        StoreResult::Record(r) => match r {
            Some(r) => format!("record {}", r.key()),
            None => "no record".into(),
        },
        StoreResult::Changes { docs, deletions } => {
            let list: Vec<String> = docs
                .iter()
                .map(|d| format!("{}@{}{}", d.doc, d.clock.0, d.version))
                .chain(
                    deletions
                        .iter()
                        .map(|(d, c)| format!("deleted {d}@{}", c.0)),
                )
                .collect();
            format!("changes [{}]", list.join(" "))
        }
        StoreResult::Done => "done".into(),
        StoreResult::Failed(e) => format!("failed: {}", e.reason),
    }
}

/// A command other than a send.
pub fn command(c: &Cmd) -> Option<String> {
    Some(match c {
        Cmd::Send { .. } => return None,
        Cmd::Import { id, doc, data, .. } => {
            format!("import {} doc={doc} {}B", id.0, data.len())
        }
        Cmd::Close { reason, .. } => format!("close ({reason})"),
        Cmd::Dial { remote } => format!("dial {remote}"),
        Cmd::Save(r) => match r {
            StateRecord::Cursor { peer, cursor } => {
                format!(
                    "save cursor {peer} pulled={} pushed={}",
                    cursor.pulled.0, cursor.pushed.0
                )
            }
            StateRecord::Listener(l) => format!(
                "save listener {} floor={} acked={}",
                l.id.0,
                l.floor.0,
                l.acked.len()
            ),
            StateRecord::ListenerRemoved(id) => format!("save listener-removed {}", id.0),
            StateRecord::Tombstone(doc) => format!("save tombstone {doc}"),
        },
        Cmd::Purge { doc } => format!("purge {doc}"),
        Cmd::WakeAt(t) => format!("wake-at {t}"),
        Cmd::Emit(e) => format!("event {}", event(e)),
        Cmd::Log { .. } => return None,
    })
}

/// An application event.
pub fn event(e: &Event) -> String {
    match e {
        Event::DocReady { doc, version } => format!("doc-ready {doc} {version}"),
        Event::DocUnavailable { doc } => format!("doc-unavailable {doc}"),
        Event::DocChanged { doc, version, from } => format!(
            "doc-changed {doc} {version} from={}",
            from.as_ref()
                .map(|p| p.to_string())
                .unwrap_or("store".into())
        ),
        Event::PeerSynced { peer, doc, state } => match state {
            SyncState::Synced(v) => format!("peer-synced {peer} {doc} {v}"),
            SyncState::Absent => format!("peer-synced {peer} {doc} absent"),
        },
        Event::Durable {
            doc,
            version,
            clock,
        } => format!("durable {doc} {version} clock={}", clock.0),
        Event::AckedByRemote { peer, doc, version } => format!("acked-by {peer} {doc} {version}"),
        Event::Presence {
            doc,
            namespace,
            peer,
            data,
        } => match data {
            Some(d) => format!("presence {doc}/{namespace} {peer} {}B", d.len()),
            None => format!("presence {doc}/{namespace} {peer} gone"),
        },
        Event::DocDeleted { doc } => format!("doc-deleted {doc}"),
        Event::PeerConnected { peer } => format!("peer-connected {peer}"),
        Event::PeerDisconnected { peer } => format!("peer-disconnected {peer}"),
        Event::Error { reason, .. } => format!("error: {reason}"),
        Event::DocList { peer, docs, more } => {
            format!(
                "doc-list from {peer}: {} docs{}",
                docs.len(),
                if *more { " more" } else { "" }
            )
        }
        Event::DeleteAnswered { peer, doc, deleted } => {
            format!("delete-answered {peer} {doc} deleted={deleted}")
        }
        // A kind newer than this trace (the enum is non-exhaustive).
        other => format!("{other:?}"),
    }
}
