//! Fragmentation of large frames into bounded pieces, and reassembly with
//! bounds on size, piece count, pending messages and time.
//!
//! A piece is `[0][frame]` (whole) or `[1][id u32][index u16][count u16][bytes]`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WHOLE: u8 = 0;
const PIECE: u8 = 1;
const PIECE_HEADER: usize = 9;

/// Bounds on reassembly.
#[derive(Debug, Clone, Copy)]
pub struct ReassemblyLimits {
    /// Largest reassembled frame, in bytes.
    pub max_frame: usize,
    /// Most messages being reassembled at once.
    pub max_pending: usize,
    /// A message not complete by then is dropped.
    pub timeout: Duration,
}

/// Splits a frame into pieces of at most `piece` bytes of payload.
pub fn split(frame: &[u8], piece: usize, id: u32) -> Vec<Vec<u8>> {
    let piece = piece.max(1);
    if frame.len() <= piece {
        let mut out = Vec::with_capacity(frame.len() + 1);
        out.push(WHOLE);
        out.extend_from_slice(frame);
        return vec![out];
    }
    let chunks: Vec<&[u8]> = frame.chunks(piece).collect();
    let count = chunks.len().min(u16::MAX as usize) as u16;
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut out = Vec::with_capacity(c.len() + PIECE_HEADER);
            out.push(PIECE);
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&(i as u16).to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
            out.extend_from_slice(c);
            out
        })
        .collect()
}

struct Pending {
    count: u16,
    pieces: BTreeMap<u16, Vec<u8>>,
    bytes: usize,
    started: Instant,
}

/// Puts pieces back together. What it buffers counts against its own
/// limit and, when given one, a budget shared by every connection of a server.
pub struct Reassembler {
    limits: ReassemblyLimits,
    pending: BTreeMap<u32, Pending>,
    /// Bytes buffered in all pending messages.
    held: usize,
    budget: Option<Arc<AtomicUsize>>,
}

/// Why a piece was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PieceError {
    /// Not a piece at all.
    #[error("a message piece is malformed")]
    Malformed,
    /// The message would exceed the size limit.
    #[error("a fragmented message exceeds {0} bytes")]
    TooLarge(usize),
    /// The server is reassembling too much for all its clients right now.
    #[error("the server is busy reassembling other messages; send smaller ones or retry")]
    Busy,
}

impl Reassembler {
    /// An empty reassembler.
    pub fn new(limits: ReassemblyLimits) -> Self {
        Self {
            limits,
            pending: BTreeMap::new(),
            held: 0,
            budget: None,
        }
    }

    /// Counts buffered bytes against a budget shared with other reassemblers.
    pub fn with_budget(mut self, budget: Arc<AtomicUsize>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Takes `n` bytes from the limits; `false` when they do not allow it.
    fn reserve(&mut self, n: usize) -> Result<(), PieceError> {
        if self.held + n > self.limits.max_frame {
            return Err(PieceError::TooLarge(self.limits.max_frame));
        }
        if let Some(b) = &self.budget {
            let took = b.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(n)
            });
            if took.is_err() {
                return Err(PieceError::Busy);
            }
        }
        self.held += n;
        Ok(())
    }

    fn release(&mut self, n: usize) {
        self.held = self.held.saturating_sub(n);
        if let Some(b) = &self.budget {
            b.fetch_add(n, Ordering::SeqCst);
        }
    }

    fn drop_pending(&mut self, id: u32) {
        if let Some(p) = self.pending.remove(&id) {
            self.release(p.bytes);
        }
    }

    /// Takes one piece; returns a frame when one is complete.
    pub fn take(&mut self, piece: &[u8], now: Instant) -> Result<Option<Vec<u8>>, PieceError> {
        self.evict(now);
        match piece.first() {
            Some(&WHOLE) => Ok(Some(piece[1..].to_vec())),
            Some(&PIECE) if piece.len() >= PIECE_HEADER => {
                let id = u32::from_le_bytes([piece[1], piece[2], piece[3], piece[4]]);
                let index = u16::from_le_bytes([piece[5], piece[6]]);
                let count = u16::from_le_bytes([piece[7], piece[8]]);
                let body = &piece[PIECE_HEADER..];
                if count == 0 || index >= count {
                    return Err(PieceError::Malformed);
                }
                if !self.pending.contains_key(&id) && self.pending.len() >= self.limits.max_pending
                {
                    // Evict the oldest rather than grow without bound.
                    if let Some(oldest) = self
                        .pending
                        .iter()
                        .min_by_key(|(_, p)| p.started)
                        .map(|(k, _)| *k)
                    {
                        self.drop_pending(oldest);
                    }
                }
                let p = self.pending.entry(id).or_insert_with(|| Pending {
                    count,
                    pieces: BTreeMap::new(),
                    bytes: 0,
                    started: now,
                });
                if p.count != count {
                    return Err(PieceError::Malformed);
                }
                let fresh = !p.pieces.contains_key(&index);
                if fresh {
                    if let Err(e) = self.reserve(body.len()) {
                        self.drop_pending(id);
                        return Err(e);
                    }
                    if let Some(p) = self.pending.get_mut(&id) {
                        p.bytes += body.len();
                        p.pieces.insert(index, body.to_vec());
                    }
                }
                let complete = self
                    .pending
                    .get(&id)
                    .is_some_and(|p| p.pieces.len() == usize::from(p.count));
                if complete {
                    let done = self.pending.remove(&id).map(|p| {
                        let n = p.bytes;
                        (n, p.pieces.into_values().flatten().collect::<Vec<u8>>())
                    });
                    return Ok(done.map(|(n, frame)| {
                        self.release(n);
                        frame
                    }));
                }
                Ok(None)
            }
            _ => Err(PieceError::Malformed),
        }
    }

    fn evict(&mut self, now: Instant) {
        let timeout = self.limits.timeout;
        let old: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.started) >= timeout)
            .map(|(k, _)| *k)
            .collect();
        for id in old {
            self.drop_pending(id);
        }
    }

    /// Messages being reassembled.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

impl Drop for Reassembler {
    fn drop(&mut self) {
        // What a closed connection held goes back to the server's budget.
        let held = self.held;
        self.release(held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ReassemblyLimits {
        ReassemblyLimits {
            max_frame: 1 << 20,
            max_pending: 2,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn out_of_order_duplicates_and_an_interleaved_whole_message() {
        let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let mut pieces = split(&big, 16 * 1024, 7);
        pieces.reverse();
        pieces.insert(2, pieces[1].clone());
        let mut r = Reassembler::new(limits());
        let now = Instant::now();
        let mut out = None;
        for (i, p) in pieces.iter().enumerate() {
            if i == 3 {
                assert_eq!(
                    r.take(&split(b"small", 1024, 9)[0], now),
                    Ok(Some(b"small".to_vec()))
                );
            }
            if let Some(f) = r.take(p, now).unwrap_or(None) {
                out = Some(f);
            }
        }
        assert_eq!(out, Some(big));
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn size_count_and_time_are_bounded() {
        let mut r = Reassembler::new(ReassemblyLimits {
            max_frame: 10_000,
            ..limits()
        });
        let now = Instant::now();
        let big = vec![0u8; 50_000];
        let mut refused = false;
        for p in split(&big, 4_000, 1) {
            if r.take(&p, now) == Err(PieceError::TooLarge(10_000)) {
                refused = true;
                break;
            }
        }
        assert!(refused);
        // At most two pending; a third evicts the oldest.
        for id in 10..13 {
            let _ = r.take(&split(&[1u8; 100], 10, id)[0], now);
        }
        assert_eq!(r.pending(), 2);
        // Timeout evicts.
        let _ = r.take(&split(b"x", 1, 99)[0], now + Duration::from_secs(6));
        assert_eq!(r.pending(), 0);
        assert_eq!(r.take(&[7, 1, 2], now), Err(PieceError::Malformed));
    }
}
