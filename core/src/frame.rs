//! The frame around protocol messages:
//! `[version u8][flags u8][length u32 LE][count varint]([length varint][postcard message])*`.
//!
//! Each message is length-prefixed, so a message of a kind this build does
//! not know (a newer peer's) is skipped and reported, not fatal to the frame.
//! Decoding is bounded: the frame size is checked before anything is read,
//! postcard cannot read past a message, what a message allocates beyond its
//! bytes is charged while it is read ([`crate::budget`]), and after decoding
//! every count and string is checked against [`Limits`]. Every failure is an
//! error, never a panic.

use crate::ids::DocId;
use crate::protocol::{Filter, Message, Strand};

/// The frame format version this build writes and reads (1 was a plain
/// postcard list of messages, which could not skip an unknown kind).
pub const FRAME_VERSION: u8 = 2;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 6;

/// Flag of a frame that carries one chunk of a larger frame: its payload is
/// `[id u32][index u32][count u32][total u64][bytes]`, all little endian.
pub const FLAG_CHUNK: u8 = 1;

/// Bytes of a chunk's own header, inside the frame's payload.
pub const CHUNK_HEADER: usize = 20;

/// One chunk of a larger frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// Names the frame the chunk belongs to (per sender and channel).
    pub id: u32,
    /// Its place, from 0.
    pub index: u32,
    /// How many chunks the frame has.
    pub count: u32,
    /// The whole frame's size in bytes.
    pub total: u64,
    /// This chunk's bytes of it.
    pub bytes: &'a [u8],
}

/// Splits an encoded frame into chunk frames carrying at most `size` of its
/// bytes each (each chunk frame is itself a frame within the limits).
pub fn chunk_frames(frame: &[u8], size: usize, id: u32) -> Vec<Vec<u8>> {
    let size = size.max(1);
    let count = frame.len().div_ceil(size) as u32;
    frame
        .chunks(size)
        .enumerate()
        .map(|(index, bytes)| {
            let mut out = chunk_head(id, index as u32, count, frame.len() as u64, bytes.len());
            out.extend_from_slice(bytes);
            out
        })
        .collect()
}

/// The header of one chunk frame carrying `len` bytes, in a buffer with room
/// for them.
pub(crate) fn chunk_head(id: u32, index: u32, count: u32, total: u64, len: usize) -> Vec<u8> {
    let payload = CHUNK_HEADER + len;
    let mut out = Vec::with_capacity(HEADER_LEN + payload);
    out.push(FRAME_VERSION);
    out.push(FLAG_CHUNK);
    out.extend_from_slice(&(payload as u32).to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out
}

/// Reads a chunk frame (`None`: not a chunk frame, or a malformed one).
pub fn parse_chunk(frame: &[u8]) -> Option<Chunk<'_>> {
    if frame.len() < HEADER_LEN + CHUNK_HEADER || frame[1] != FLAG_CHUNK {
        return None;
    }
    let p = &frame[HEADER_LEN..];
    let u32_at = |i: usize| u32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    let mut total = [0u8; 8];
    total.copy_from_slice(&p[12..20]);
    let chunk = Chunk {
        id: u32_at(0),
        index: u32_at(4),
        count: u32_at(8),
        total: u64::from_le_bytes(total),
        bytes: &p[CHUNK_HEADER..],
    };
    (chunk.count > 0 && chunk.index < chunk.count).then_some(chunk)
}

/// Bounds applied while decoding untrusted frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload accepted, in bytes.
    pub max_frame: usize,
    /// Most messages in one frame.
    pub max_messages: usize,
    /// Most elements in any list (strands, docs, revisions, filter entries).
    pub max_elements: usize,
    /// Longest free-text string (names, error messages, tokens), in bytes.
    pub max_text: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame: 16 * 1024 * 1024,
            max_messages: 4096,
            max_elements: 10_000,
            max_text: 4096,
        }
    }
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than a header.
    #[error("the frame is {0} bytes, shorter than its 6-byte header")]
    Truncated(usize),
    /// Another frame format version.
    #[error("frame version {0} is not supported (this build reads version 2)")]
    Version(u8),
    /// Flags this build does not know.
    #[error("unknown frame flags {0:#04x}")]
    Flags(u8),
    /// The header's length disagrees with the bytes present.
    #[error("the header announces {announced} payload bytes but {present} are present")]
    Length {
        /// From the header.
        announced: u64,
        /// Actually present.
        present: usize,
    },
    /// The payload is larger than allowed.
    #[error("a frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Announced size.
        size: u64,
        /// The limit.
        limit: usize,
    },
    /// The payload is not a valid message list.
    #[error("the payload is not a valid message list: {0}")]
    Decode(String),
    /// A count or string exceeded the limits.
    #[error("the frame exceeds a bound: {0}")]
    Bound(String),
    /// A document id was refused.
    #[error("a document id was refused: {0}")]
    DocId(String),
    /// The frame held no message.
    #[error("the frame holds no message")]
    Empty,
}

/// A decoded frame: the messages this build knows, and the kinds (variant
/// numbers) of those it does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Known messages, in order.
    pub messages: Vec<Message>,
    /// Kinds of messages skipped because this build does not know them.
    pub unknown: Vec<u32>,
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Reads a varint at `*at`, moving past it; `None` if malformed or past the end.
fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut n: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

/// The size in bytes of the frame [`encode`] would make of `messages`
/// (cheap: nothing is written).
pub fn encoded_len(messages: &[Message]) -> Result<usize, FrameError> {
    let mut len = HEADER_LEN + varint_len(messages.len() as u64);
    for m in messages {
        let n = postcard::experimental::serialized_size(m)
            .map_err(|e| FrameError::Decode(e.to_string()))?;
        len = len.saturating_add(varint_len(n as u64) + n);
    }
    Ok(len)
}

/// The encoded size of each message, and the frame's payload length.
pub(crate) struct Sizes {
    /// Bytes of each message.
    pub each: Vec<usize>,
    /// Bytes of the payload (count, then each length and message).
    pub payload: u32,
}

/// Sizes first, so a frame is written once into a buffer of its exact
/// size: a message carrying a large document is not copied or regrown.
pub(crate) fn sizes(messages: &[Message]) -> Result<Sizes, FrameError> {
    let each = messages
        .iter()
        .map(postcard::experimental::serialized_size)
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|e| FrameError::Decode(e.to_string()))?;
    let mut payload = varint_len(messages.len() as u64);
    for n in &each {
        payload = payload.saturating_add(varint_len(*n as u64) + n);
    }
    let payload = u32::try_from(payload).map_err(|_| FrameError::TooLarge {
        size: payload as u64,
        limit: u32::MAX as usize,
    })?;
    Ok(Sizes { each, payload })
}

/// A frame's header and message count, before its messages.
pub(crate) fn head(count: usize, payload: u32, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    out.push(FRAME_VERSION);
    out.push(0);
    out.extend_from_slice(&payload.to_le_bytes());
    put_varint(&mut out, count as u64);
    out
}

/// Encodes messages into one frame.
pub fn encode(messages: &[Message]) -> Result<Vec<u8>, FrameError> {
    let sizes = sizes(messages)?;
    let mut out = head(
        messages.len(),
        sizes.payload,
        HEADER_LEN + sizes.payload as usize,
    );
    for (m, n) in messages.iter().zip(&sizes.each) {
        put_varint(&mut out, *n as u64);
        out = postcard::to_extend(m, out).map_err(|e| FrameError::Decode(e.to_string()))?;
    }
    Ok(out)
}

/// Bytes of `v` as a varint.
pub(crate) fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Reads only the header: the payload length, checked against the limit.
/// Streams use this to refuse a frame that claims 4 GiB before buffering it.
pub fn payload_len(header: &[u8], limits: &Limits) -> Result<usize, FrameError> {
    if header.len() < HEADER_LEN {
        return Err(FrameError::Truncated(header.len()));
    }
    if header[0] != FRAME_VERSION {
        return Err(FrameError::Version(header[0]));
    }
    if header[1] != 0 && header[1] != FLAG_CHUNK {
        return Err(FrameError::Flags(header[1]));
    }
    let len = u32::from_le_bytes([header[2], header[3], header[4], header[5]]) as u64;
    if len > limits.max_frame as u64 {
        return Err(FrameError::TooLarge {
            size: len,
            limit: limits.max_frame,
        });
    }
    Ok(len as usize)
}

/// Decodes one whole frame and checks every bound; messages of kinds this
/// build does not know are skipped (see [`decode_frame`] to learn of them).
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Vec<Message>, FrameError> {
    decode_frame(bytes, limits).map(|d| d.messages)
}

/// Decodes one whole frame and checks every bound.
pub fn decode_frame(bytes: &[u8], limits: &Limits) -> Result<Decoded, FrameError> {
    let len = payload_len(bytes, limits)?;
    if bytes[1] == FLAG_CHUNK {
        return Err(FrameError::Decode(
            "a chunk is decoded once its frame is whole".into(),
        ));
    }
    let present = bytes.len() - HEADER_LEN;
    if present != len {
        return Err(FrameError::Length {
            announced: len as u64,
            present,
        });
    }
    let payload = &bytes[HEADER_LEN..];
    let mut at = 0usize;
    let bad = |what: &str| FrameError::Decode(format!("the frame's {what} is malformed"));
    let count = get_varint(payload, &mut at).ok_or_else(|| bad("message count"))?;
    if count == 0 {
        return Err(FrameError::Empty);
    }
    check_count(
        "messages",
        usize::try_from(count).unwrap_or(usize::MAX),
        limits.max_messages,
    )?;
    let mut out = Decoded::default();
    for _ in 0..count {
        let n = get_varint(payload, &mut at).ok_or_else(|| bad("message length"))?;
        let n = usize::try_from(n).map_err(|_| bad("message length"))?;
        let end = at.checked_add(n).filter(|e| *e <= payload.len());
        let end = end.ok_or_else(|| bad("message length"))?;
        let one = &payload[at..end];
        at = end;
        let mut kind_at = 0usize;
        let kind = get_varint(one, &mut kind_at).ok_or_else(|| bad("message kind"))?;
        if kind >= u64::from(crate::protocol::MESSAGE_KINDS) {
            out.unknown.push(u32::try_from(kind).unwrap_or(u32::MAX));
            continue;
        }
        // Lists, ids and versions are charged while they are read, so a
        // message cannot make us allocate much more than its own bytes.
        let m: Message = match crate::budget::within(one.len(), || postcard::from_bytes(one)) {
            (Ok(m), _) => m,
            (Err(_), true) => return Err(FrameError::Bound(crate::budget::EXCEEDED.into())),
            (Err(e), false) => return Err(FrameError::Decode(e.to_string())),
        };
        validate(&m, limits)?;
        out.messages.push(m);
    }
    if at != payload.len() {
        return Err(bad("end"));
    }
    Ok(out)
}

fn check_count(what: &str, n: usize, max: usize) -> Result<(), FrameError> {
    if n > max {
        return Err(FrameError::Bound(format!("{n} {what}, at most {max}")));
    }
    Ok(())
}

fn check_text(what: &str, s: &str, limits: &Limits) -> Result<(), FrameError> {
    check_count(&format!("bytes of {what}"), s.len(), limits.max_text)
}

fn check_doc(doc: &DocId) -> Result<(), FrameError> {
    if doc.is_valid() {
        return Ok(());
    }
    // Only the failure path builds the error text.
    DocId::parse(doc.as_str())
        .map(|_| ())
        .map_err(|e| FrameError::DocId(e.to_string()))
}

fn check_filter(f: &Filter, limits: &Limits) -> Result<(), FrameError> {
    check_count("filter entries", f.len(), limits.max_elements)?;
    for s in f.types.iter().chain(&f.scopes).chain(&f.branches) {
        check_text("a filter entry", s, limits)?;
    }
    // `*` is a wildcard, not an id.
    for d in f.docs.iter().filter(|d| d.as_str() != "*") {
        check_doc(d)?;
    }
    Ok(())
}

fn check_strands(strands: &[Strand], limits: &Limits) -> Result<(), FrameError> {
    check_count("strands", strands.len(), limits.max_elements)?;
    for s in strands {
        check_doc(&s.doc)?;
        for t in [&s.meta.doc_type, &s.meta.scope, &s.meta.branch] {
            check_text("document metadata", t, limits)?;
        }
    }
    Ok(())
}

/// Checks one decoded message against the limits.
pub fn validate(m: &Message, limits: &Limits) -> Result<(), FrameError> {
    match m {
        Message::Hello(h) => {
            check_text("a name", &h.name, limits)?;
            check_text("a token", h.token.as_deref().unwrap_or(""), limits)?;
            check_text("a peer id", h.peer.as_str(), limits)
        }
        Message::Welcome(w) => {
            check_text("a name", &w.name, limits)?;
            check_text("a peer id", w.peer.as_str(), limits)
        }
        Message::SyncRequest { doc, .. }
        | Message::SyncResponse { doc, .. }
        | Message::Update { doc, .. } => check_doc(doc),
        Message::Ack { .. } | Message::ListenerRegistered { .. } | Message::ListenerPull { .. } => {
            Ok(())
        }
        Message::ListenerAcked { .. } => Ok(()),
        Message::Subscribe { filter }
        | Message::Unsubscribe { filter }
        | Message::ChangesSince { filter, .. }
        | Message::DirectoryRequest { filter }
        | Message::ListenerRegister { filter, .. } => check_filter(filter, limits),
        Message::Changes { docs, .. } => {
            check_count("changed documents", docs.len(), limits.max_elements)?;
            for d in docs {
                check_doc(&d.doc)?;
            }
            Ok(())
        }
        Message::DirectoryResponse { docs } | Message::NewDocs { docs } => {
            check_count("documents", docs.len(), limits.max_elements)?;
            docs.iter().try_for_each(|d| check_doc(&d.doc))
        }
        Message::Delete { doc } | Message::DeleteResult { doc, .. } => check_doc(doc),
        Message::Ephemeral(e) => {
            check_doc(&e.doc)?;
            check_text("a namespace", e.namespace.as_str(), limits)?;
            check_text("a peer id", e.origin.as_str(), limits)
        }
        Message::Error { message, .. } => check_text("an error message", message, limits),
        Message::Strands { strands, .. } | Message::Push { strands } => {
            check_strands(strands, limits)
        }
        Message::Reauth { token } => check_text("a token", token, limits),
        Message::GoingAway { reason, .. } => check_text("a reason", reason, limits),
        Message::ListDocs { filter, after } => {
            check_filter(filter, limits)?;
            after.as_ref().map_or(Ok(()), check_doc)
        }
        Message::DocList { docs, .. } => {
            check_count("listed documents", docs.len(), limits.max_elements)?;
            for d in docs {
                check_doc(&d.doc)?;
            }
            Ok(())
        }
        Message::ListenerAck { revisions, .. } | Message::PushResult { revisions } => {
            check_count("revisions", revisions.len(), limits.max_elements)?;
            for r in revisions {
                check_doc(&r.doc)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{BatchId, Clock};
    use crate::protocol::{AckStatus, Payload, Reply};
    use crate::version::VersionVector;

    fn sample() -> Vec<Message> {
        vec![
            Message::SyncRequest {
                doc: DocId::new("notes"),
                version: VersionVector::from_entries([(1, 3)]),
                bidirectional: true,
            },
            Message::SyncResponse {
                doc: DocId::new("notes"),
                batch: BatchId(4),
                reply: Reply::Delta(Payload::new(vec![1u8, 2, 200])),
                version: VersionVector::from_entries([(1, 5)]),
            },
            Message::Ack {
                batch: BatchId(4),
                status: AckStatus::Ok,
                clock: Some(Clock(9)),
            },
        ]
    }

    #[test]
    fn roundtrip() {
        let bytes = encode(&sample()).unwrap_or_default();
        assert_eq!(decode(&bytes, &Limits::default()), Ok(sample()));
    }

    #[test]
    fn an_empty_message_list_is_refused() {
        let empty = encode(&[]).unwrap_or_default();
        assert_eq!(decode(&empty, &Limits::default()), Err(FrameError::Empty));
    }

    #[test]
    fn a_frame_claiming_4_gib_is_refused_from_its_header() {
        let header = [FRAME_VERSION, 0, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            payload_len(&header, &Limits::default()),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_truncation_and_bad_headers_are_errors() {
        let good = encode(&sample()).unwrap_or_default();
        let limits = Limits::default();
        assert!(decode(&[], &limits).is_err());
        assert!(decode(&good[..good.len() - 1], &limits).is_err());
        let mut bad_version = good.clone();
        bad_version[0] = 9;
        assert_eq!(decode(&bad_version, &limits), Err(FrameError::Version(9)));
        let mut bad_flags = good.clone();
        bad_flags[1] = 0x80;
        assert_eq!(decode(&bad_flags, &limits), Err(FrameError::Flags(0x80)));
        // Every prefix and every single-byte corruption: an error or a valid frame, never a panic.
        for i in 0..good.len() {
            let _ = decode(&good[..i], &limits);
            let mut c = good.clone();
            c[i] ^= 0xa5;
            let _ = decode(&c, &limits);
        }
    }

    #[test]
    fn bad_doc_ids_and_oversized_lists_are_refused() {
        let bad = encode(&[Message::Delete {
            doc: DocId::new("line\nbreak"),
        }])
        .unwrap_or_default();
        assert!(matches!(
            decode(&bad, &Limits::default()),
            Err(FrameError::DocId(_))
        ));
        let many = encode(&vec![Message::NewDocs { docs: vec![] }; 3]).unwrap_or_default();
        let tight = Limits {
            max_messages: 2,
            ..Limits::default()
        };
        assert!(matches!(decode(&many, &tight), Err(FrameError::Bound(_))));
        let oversized = encode(&sample()).unwrap_or_default();
        let tiny = Limits {
            max_frame: 8,
            ..Limits::default()
        };
        assert!(matches!(
            decode(&oversized, &tiny),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_subscribe_of_empty_ids_is_refused_before_it_fills_memory() {
        use crate::protocol::Filter;
        // 200,000 empty ids: 200 KB on the wire, about 10 MB decoded.
        let m = Message::Subscribe {
            filter: Filter::docs(vec![DocId::new(""); 200_000]),
        };
        let frame = encode(&[m]).unwrap();
        let err = decode(&frame, &Limits::default()).unwrap_err();
        assert!(
            matches!(&err, FrameError::Bound(why) if why.contains("times its size")),
            "{err}"
        );
    }

    #[test]
    fn a_version_with_ten_thousand_writers_decodes() {
        let v = VersionVector::from_entries((0..10_000u64).map(|a| (a * 7919 + 1, 3)));
        let frame = encode(&[Message::SyncRequest {
            doc: DocId::new("busy"),
            version: v.clone(),
            bidirectional: false,
        }])
        .unwrap();
        let got = decode(&frame, &Limits::default()).unwrap();
        assert!(matches!(&got[0], Message::SyncRequest { version, .. } if *version == v));
    }
}
