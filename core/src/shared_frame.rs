//! Frames that share the document bytes they carry until they are written.
//!
//! A frame carrying a 200 MB document would otherwise exist three times
//! over: the document's bytes, the encoded frame, and the chunk frames cut
//! from it; and a 900 KB document sent to a thousand readers who do not
//! read would exist a thousand times in their queues. A [`SharedFrame`]
//! keeps the message's own bytes and shares the document bytes it carries
//! ([`Payload`]s are reference counted); the bytes to write are built only
//! when they are about to be written. A frame too large to cross as one is
//! read out as chunk frames, byte for byte those of
//! [`chunk_frames`](crate::chunk_frames) over [`encode`](crate::encode); a
//! frame that fits ([`SharedFrame::whole`]) is read out as one chunk that
//! is byte for byte [`encode`](crate::encode)'s frame.

use crate::frame::{chunk_head, head, put_varint, sizes, FrameError, HEADER_LEN};
use crate::protocol::{Message, Payload, Reply};
use std::sync::Arc;

/// Byte strings at least this long are shared, not copied, when they are a
/// message's payload.
const SHARE_FROM: usize = 64 * 1024;

/// One stretch of a frame's bytes.
#[derive(Clone)]
enum Part {
    /// Bytes of the frame itself (headers, ids, versions).
    Own(Vec<u8>),
    /// A payload's bytes, shared with whoever else holds them.
    Shared(Payload),
}

impl Part {
    fn bytes(&self) -> &[u8] {
        match self {
            Part::Own(b) => b,
            Part::Shared(p) => p.as_bytes(),
        }
    }
}

/// An encoded frame held as parts, read out as chunk frames of at most
/// `chunk` bytes of it each, or whole.
#[derive(Clone)]
pub struct SharedFrame {
    parts: Arc<[Part]>,
    /// Where each part starts in the frame.
    starts: Arc<[usize]>,
    len: usize,
    id: u32,
    /// Bytes of the frame per chunk frame; `None`: the frame goes whole.
    chunk: Option<usize>,
}

impl PartialEq for SharedFrame {
    fn eq(&self, other: &Self) -> bool {
        (self.id, self.chunk, self.len) == (other.id, other.chunk, other.len)
            && self.parts.len() == other.parts.len()
            && self
                .parts
                .iter()
                .zip(other.parts.iter())
                .all(|(a, b)| a.bytes() == b.bytes())
    }
}

impl Eq for SharedFrame {}

impl std::fmt::Debug for SharedFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SharedFrame({} bytes in {} chunks)",
            self.len,
            self.chunk_count()
        )
    }
}

impl SharedFrame {
    /// Encodes `messages` into one frame, to be sent as chunk frames of at
    /// most `chunk` bytes of it each, named `id`.
    pub fn encode(messages: &[Message], chunk: usize, id: u32) -> Result<Self, FrameError> {
        Self::parts(messages, Some(chunk.max(1)), id)
    }

    /// Encodes `messages` into one frame sent as it is (its one "chunk" is
    /// the frame [`encode`](crate::encode) makes), for a frame that fits
    /// but carries document bytes worth sharing (see [`worth_sharing`]).
    pub fn whole(messages: &[Message]) -> Result<Self, FrameError> {
        Self::parts(messages, None, 0)
    }

    fn parts(messages: &[Message], chunk: Option<usize>, id: u32) -> Result<Self, FrameError> {
        let failed = |e: postcard::Error| FrameError::Decode(e.to_string());
        let mut parts = Parts::default();
        let sizes = sizes(messages)?;
        let payload_len = sizes.payload as usize;
        parts.own(&head(messages.len(), sizes.payload, 16));
        for (m, n) in messages.iter().zip(&sizes.each) {
            let mut prefix = Vec::new();
            put_varint(&mut prefix, *n as u64);
            parts.own(&prefix);
            parts.shareable = payloads(m);
            parts = postcard::serialize_with_flavor(m, parts).map_err(failed)?;
        }
        let parts = parts.finish();
        let mut starts = Vec::with_capacity(parts.len());
        let mut at = 0;
        for p in &parts {
            starts.push(at);
            at += p.bytes().len();
        }
        debug_assert_eq!(at, HEADER_LEN + payload_len);
        Ok(Self {
            parts: parts.into(),
            starts: starts.into(),
            len: at,
            id,
            chunk,
        })
    }

    /// The whole frame's size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the frame is empty (never, for an encoded frame).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether it crosses as chunk frames (rather than whole).
    pub fn is_chunked(&self) -> bool {
        self.chunk.is_some()
    }

    /// How many chunk frames it crosses as (1 for a whole frame).
    pub fn chunk_count(&self) -> u32 {
        match self.chunk {
            Some(chunk) => self.len.div_ceil(chunk) as u32,
            None => 1,
        }
    }

    /// Bytes of all its chunk frames together (what a link holds for it).
    pub fn wire_len(&self) -> usize {
        match self.chunk {
            Some(_) => self.len + self.chunk_count() as usize * (HEADER_LEN + crate::CHUNK_HEADER),
            None => self.len,
        }
    }

    /// Whether some of its bytes are shared rather than its own.
    pub fn shares_bytes(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Shared(_)))
    }

    /// Chunk frame `index` (from 0), built now; empty past the last. A
    /// whole frame's only chunk is the frame itself.
    pub fn chunk(&self, index: u32) -> Vec<u8> {
        let Some(chunk) = self.chunk else {
            return match index {
                0 => self.bytes(0, self.len, Vec::with_capacity(self.len)),
                _ => Vec::new(),
            };
        };
        let start = (index as usize).saturating_mul(chunk);
        if start >= self.len {
            return Vec::new();
        }
        let end = (start + chunk).min(self.len);
        let out = chunk_head(
            self.id,
            index,
            self.chunk_count(),
            self.len as u64,
            end - start,
        );
        self.bytes(start, end, out)
    }

    /// The frame's bytes from `start` to `end`, after `out`.
    fn bytes(&self, start: usize, end: usize, mut out: Vec<u8>) -> Vec<u8> {
        // The part holding `start`, then on until `end`.
        let mut i = self
            .starts
            .partition_point(|s| *s <= start)
            .saturating_sub(1);
        let mut at = start;
        while at < end && i < self.parts.len() {
            let bytes = self.parts[i].bytes();
            let from = at - self.starts[i];
            let to = (end - self.starts[i]).min(bytes.len());
            out.extend_from_slice(&bytes[from..to]);
            at += to - from;
            i += 1;
        }
        out
    }
}

/// Whether a frame of `messages` carries document bytes long enough to be
/// shared rather than copied into it.
pub fn worth_sharing(messages: &[Message]) -> bool {
    messages
        .iter()
        .any(|m| payloads(m).iter().any(|p| p.len() >= SHARE_FROM))
}

/// The payloads a message carries (the bytes worth sharing).
fn payloads(m: &Message) -> Vec<Payload> {
    match m {
        Message::Update { data, .. } => vec![data.clone()],
        Message::SyncResponse {
            reply: Reply::Snapshot(data) | Reply::Delta(data),
            ..
        } => vec![data.clone()],
        Message::Strands { strands, .. } | Message::Push { strands } => {
            strands.iter().map(|s| s.data.clone()).collect()
        }
        Message::Ephemeral(e) => vec![e.data.clone()],
        _ => Vec::new(),
    }
}

/// A postcard output that collects parts: small writes are copied, a long
/// byte string that is one of the message's payloads is shared.
#[derive(Default)]
struct Parts {
    done: Vec<Part>,
    current: Vec<u8>,
    shareable: Vec<Payload>,
}

impl Parts {
    fn own(&mut self, bytes: &[u8]) {
        self.current.extend_from_slice(bytes);
    }

    fn finish(mut self) -> Vec<Part> {
        if !self.current.is_empty() {
            self.done.push(Part::Own(std::mem::take(&mut self.current)));
        }
        self.done
    }
}

impl postcard::ser_flavors::Flavor for Parts {
    type Output = Parts;

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.current.push(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        // The same bytes (by address), not merely equal ones.
        let shared = (data.len() >= SHARE_FROM)
            .then(|| {
                self.shareable
                    .iter()
                    .find(|p| p.as_bytes().as_ptr() == data.as_ptr() && p.len() == data.len())
            })
            .flatten()
            .cloned();
        match shared {
            Some(p) => {
                if !self.current.is_empty() {
                    self.done.push(Part::Own(std::mem::take(&mut self.current)));
                }
                self.done.push(Part::Shared(p));
            }
            None => self.current.extend_from_slice(data),
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Parts> {
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{chunk_frames, encode, BatchId, DocId, VersionVector};

    fn update(bytes: usize) -> Message {
        Message::Update {
            doc: DocId::new("big"),
            batch: BatchId(7),
            data: Payload::new(
                (0..bytes)
                    .map(|i| (i * 31 % 251) as u8)
                    .collect::<Vec<u8>>(),
            ),
            version: VersionVector::from_entries([(1, 9)]),
        }
    }

    #[test]
    fn chunks_are_those_of_the_encoded_frame_cut_in_order() {
        for (messages, chunk) in [
            (vec![update(300_000)], 65_536),
            (vec![update(10), update(200_000), update(70_000)], 100_000),
            (vec![update(1_000)], 333),
            (vec![update(5)], 1 << 20),
        ] {
            let whole = encode(&messages).unwrap();
            let large = SharedFrame::encode(&messages, chunk, 42).unwrap();
            assert_eq!(large.len(), whole.len());
            let expected = chunk_frames(&whole, chunk, 42);
            assert_eq!(large.chunk_count() as usize, expected.len());
            let got: Vec<Vec<u8>> = (0..large.chunk_count()).map(|i| large.chunk(i)).collect();
            assert_eq!(got, expected);
            assert_eq!(
                large.wire_len(),
                expected.iter().map(Vec::len).sum::<usize>()
            );
            assert!(large.chunk(large.chunk_count()).is_empty());
        }
    }

    #[test]
    fn a_large_payload_is_shared_not_copied() {
        let m = update(1_000_000);
        let large = SharedFrame::encode(std::slice::from_ref(&m), 65_536, 1).unwrap();
        let Message::Update { data, .. } = &m else {
            unreachable!()
        };
        assert!(large.parts.iter().any(
            |p| matches!(p, Part::Shared(s) if s.as_bytes().as_ptr() == data.as_bytes().as_ptr())
        ));
    }

    #[test]
    fn a_whole_frame_is_the_encoded_frame_and_shares_what_is_worth_sharing() {
        for messages in [
            vec![update(100_000)],
            vec![update(10), update(70_000), update(300)],
            vec![update(5)],
        ] {
            let frame = SharedFrame::whole(&messages).unwrap();
            assert!(!frame.is_chunked());
            assert_eq!(frame.chunk_count(), 1);
            assert_eq!(frame.chunk(0), encode(&messages).unwrap());
            assert_eq!(frame.wire_len(), frame.len());
            assert!(frame.chunk(1).is_empty());
            assert_eq!(frame.shares_bytes(), worth_sharing(&messages));
        }
        // Two readers' frames of one message hold its bytes once.
        let m = update(200_000);
        let Message::Update { data, .. } = &m else {
            unreachable!()
        };
        for _ in 0..2 {
            let frame = SharedFrame::whole(std::slice::from_ref(&m)).unwrap();
            assert!(frame.parts.iter().any(|p| matches!(p,
                Part::Shared(s) if s.as_bytes().as_ptr() == data.as_bytes().as_ptr())));
        }
    }
}
