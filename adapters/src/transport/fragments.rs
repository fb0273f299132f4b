//! The WebSocket endpoint's pieces: a frame larger than one WebSocket
//! message crosses as pieces, put back together by [`Reassembler`] (the
//! shared [`Reassembly`], bounded in size, count, bytes held and time).
//!
//! A piece is `[0][frame]` (whole) or `[1][id u32][index u16][count u16][bytes]`.

use crate::reassembly::Reassembly;
pub use crate::reassembly::{ReassemblyLimits, Refused, SharedBudget};

const WHOLE: u8 = 0;
const PIECE: u8 = 1;
const PIECE_HEADER: usize = 9;

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

/// Why a piece was refused (the message it belongs to is dropped).
pub type PieceError = Refused;

/// Puts pieces back together, within [`ReassemblyLimits`] (see
/// [`crate::reassembly`], which every kind of split message shares).
pub struct Reassembler {
    inner: Reassembly<u32>,
}

impl Reassembler {
    /// An empty reassembler.
    pub fn new(limits: ReassemblyLimits) -> Self {
        Self {
            inner: Reassembly::new(limits),
        }
    }

    /// Draws what it holds from a budget shared with other connections.
    pub fn with_budget(self, budget: SharedBudget) -> Self {
        Self {
            inner: self.inner.with_budget(budget),
        }
    }

    /// Takes one WebSocket message (a whole frame, or a piece of one) at
    /// `now_ms` (any clock in milliseconds); returns a frame when one is
    /// complete.
    pub fn take(&mut self, piece: &[u8], now_ms: u64) -> Result<Option<Vec<u8>>, PieceError> {
        self.inner.expire(now_ms);
        match piece.first() {
            Some(&WHOLE) => Ok(Some(piece[1..].to_vec())),
            Some(&PIECE) if piece.len() >= PIECE_HEADER => {
                let id = u32::from_le_bytes([piece[1], piece[2], piece[3], piece[4]]);
                let index = u16::from_le_bytes([piece[5], piece[6]]);
                let count = u16::from_le_bytes([piece[7], piece[8]]);
                if !self.inner.contains(&id) {
                    self.inner.begin(id, u32::from(count), None, now_ms)?;
                }
                self.inner
                    .piece(id, u32::from(index), &piece[PIECE_HEADER..], now_ms)
            }
            _ => Err(Refused::Malformed("not a whole frame or a piece of one")),
        }
    }

    /// Messages being reassembled.
    pub fn pending(&self) -> usize {
        self.inner.pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ReassemblyLimits {
        ReassemblyLimits {
            max_message: 1 << 20,
            max_pending: 2,
            max_held: 1 << 20,
            deadline_ms: 5_000,
        }
    }

    #[test]
    fn out_of_order_pieces_and_an_interleaved_whole_message() {
        let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let mut pieces = split(&big, 16 * 1024, 7);
        pieces.reverse();
        let mut r = Reassembler::new(limits());
        let mut out = None;
        for (i, p) in pieces.iter().enumerate() {
            if i == 3 {
                assert_eq!(
                    r.take(&split(b"small", 1024, 9)[0], 0),
                    Ok(Some(b"small".to_vec()))
                );
            }
            if let Some(f) = r.take(p, 0).unwrap() {
                out = Some(f);
            }
        }
        assert_eq!(out, Some(big));
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn size_count_and_time_are_bounded() {
        let mut r = Reassembler::new(ReassemblyLimits {
            max_message: 10_000,
            ..limits()
        });
        let big = vec![0u8; 50_000];
        let refused = split(&big, 4_000, 1)
            .iter()
            .any(|p| matches!(r.take(p, 0), Err(Refused::TooLarge { .. })));
        assert!(refused);
        // At most two pending; a third is refused.
        assert!(r.take(&split(&[1u8; 100], 10, 10)[0], 0).is_ok());
        assert!(r.take(&split(&[1u8; 100], 10, 11)[0], 0).is_ok());
        assert_eq!(
            r.take(&split(&[1u8; 100], 10, 12)[0], 0),
            Err(Refused::TooMany(2))
        );
        // The deadline drops them.
        let _ = r.take(&split(b"x", 1, 99)[0], 6_000);
        assert_eq!(r.pending(), 0);
        assert!(matches!(r.take(&[7, 1, 2], 0), Err(Refused::Malformed(_))));
    }
}
