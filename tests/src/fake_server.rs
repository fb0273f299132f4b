//! A malicious server for clients' tests: it speaks the native protocol
//! over plain TCP, answers a client's first sync-request with poison Loro
//! bytes, and once the client refused them sends a good update, so a test
//! sees both that the client reported the poison and that it went on.

use docweave_core::{
    decode, encode, AckStatus, BatchId, Clock, DocId, Limits, Message, Payload, PeerId, PeerKind,
    Reply, VersionVector, Welcome, PROTOCOL_VERSION,
};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// The 173-byte update that aborted Loro 1.17.1 (see `fixtures/poison`).
pub const POISON: &[u8] = include_bytes!("../../fixtures/poison/loro-update-oplog-1571.bin");

/// What the fake server saw of its client.
#[derive(Debug, Default)]
pub struct Seen {
    /// The status the client gave the poison.
    pub poison_ack: Option<AckStatus>,
    /// The status the client gave the good update.
    pub good_ack: Option<AckStatus>,
}

/// A Loro update setting `root.after` to `"poison"`, as a good server sends.
pub fn good_update() -> Vec<u8> {
    let d = loro::LoroDoc::new();
    let _ = d.set_peer_id(77);
    let _ = d.get_map("root").insert("after", "poison");
    d.commit();
    d.export(loro::ExportMode::all_updates())
        .unwrap_or_default()
}

/// Binds a port for [`serve_poison`].
pub fn bind() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    (listener, port)
}

/// Serves one client until it hangs up or `within` passes: welcome, poison
/// for its first sync-request, then a good update once the poison was
/// acknowledged.
pub fn serve_poison(listener: TcpListener, within: Duration) -> Seen {
    let mut seen = Seen::default();
    let Ok((mut s, _)) = listener.accept() else {
        return seen;
    };
    let deadline = Instant::now() + within;
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = Vec::new();
    while Instant::now() < deadline {
        let mut chunk = [0u8; 65536];
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => continue,
        }
        while buf.len() >= 6 {
            let len = u32::from_le_bytes([buf[2], buf[3], buf[4], buf[5]]) as usize;
            if buf.len() < 6 + len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..6 + len).collect();
            for m in decode(&frame, &Limits::default()).unwrap_or_default() {
                answer(&mut s, m, &mut seen);
            }
        }
    }
    seen
}

fn answer(s: &mut TcpStream, m: Message, seen: &mut Seen) {
    let reply = match m {
        Message::Hello(_) => Some(Message::Welcome(Welcome {
            peer: PeerId::new("mallory"),
            name: "mallory".into(),
            kind: PeerKind::Service,
            protocol: PROTOCOL_VERSION,
            clock: Clock(0),
        })),
        Message::SyncRequest { doc, .. } if seen.poison_ack.is_none() => {
            Some(Message::SyncResponse {
                doc,
                batch: BatchId(1),
                reply: Reply::Snapshot(Payload::new(POISON.to_vec())),
                version: VersionVector::from_entries([(42, 12)]),
            })
        }
        Message::Ack {
            batch: BatchId(1),
            status,
            ..
        } => {
            seen.poison_ack = Some(status);
            Some(Message::Update {
                doc: DocId::new("notes"),
                batch: BatchId(2),
                data: Payload::new(good_update()),
                version: VersionVector::from_entries([(77, 1)]),
            })
        }
        Message::Ack {
            batch: BatchId(2),
            status,
            ..
        } => {
            seen.good_ack = Some(status);
            None
        }
        _ => None,
    };
    if let Some(r) = reply {
        if let Ok(frame) = encode(&[r]) {
            // The client's test reports what it missed; nothing to do here.
            let _ = s.write_all(&frame);
        }
    }
}
