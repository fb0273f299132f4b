//! Messages that arrive split into pieces, put back together: one type for
//! every way docweave splits (the node's chunk frames, WebSocket pieces,
//! Loro `DocUpdateFragment`s).
//!
//! What a connection can make a server hold this way is bounded four ways:
//! the largest message, the messages gathered at once, the bytes held for
//! the connection, and a deadline from a message's first piece that later
//! pieces do not move. A server-wide budget is shared by every connection's
//! reassembly. Bytes are charged as they arrive, never as announced: a
//! client that claims 512 MiB and sends nothing holds nothing.
//!
//! Time is a number of milliseconds the caller supplies, so the node (which
//! is deterministic) and the transports (which read a clock) use it alike.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bounds on what one connection's reassembly holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// The largest message put back together, in bytes.
    pub max_message: usize,
    /// Most messages gathered at once.
    pub max_pending: usize,
    /// Most bytes held for the connection, all its messages together.
    pub max_held: usize,
    /// A message not whole this long after its first piece is dropped.
    pub deadline_ms: u64,
}

/// Bytes every connection's reassembly draws from, shared across a server.
#[derive(Debug, Clone)]
pub struct SharedBudget(Arc<AtomicUsize>);

impl SharedBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        Self(Arc::new(AtomicUsize::new(bytes)))
    }

    fn take(&self, n: usize) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.0.fetch_add(n, Ordering::SeqCst);
    }

    /// Bytes left.
    pub fn left(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Why a piece (and the message it belongs to) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The pieces contradict each other or their announcement.
    #[error("a split message is malformed: {0}")]
    Malformed(&'static str),
    /// The message is larger than allowed.
    #[error("a message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The size announced, or gathered so far.
        size: u64,
        /// The limit it went past.
        limit: u64,
    },
    /// The connection already holds as much as it may.
    #[error("this connection holds {limit} bytes of unfinished messages; finish them first")]
    TooMuchHeld {
        /// The limit.
        limit: u64,
    },
    /// Too many messages are being gathered at once on the connection.
    #[error("at most {0} split messages may be gathered at once")]
    TooMany(usize),
    /// The server holds as much as it may for all its connections.
    #[error("the server is busy putting other messages together; retry")]
    Busy,
}

/// One message being gathered.
struct Gathering {
    count: u32,
    /// The size announced, when the splitting says it.
    total: Option<usize>,
    started_ms: u64,
    /// The pieces from 0 on, joined.
    joined: Vec<u8>,
    /// The index `joined` ends before.
    next: u32,
    /// Pieces that came before their turn.
    early: BTreeMap<u32, Vec<u8>>,
    /// Bytes in `joined` and `early`.
    bytes: usize,
}

/// One connection's split messages, keyed by the splitting's message id.
pub struct Reassembly<K: Ord + Clone> {
    limits: ReassemblyLimits,
    budget: Option<SharedBudget>,
    pending: BTreeMap<K, Gathering>,
    held: usize,
}

impl<K: Ord + Clone> Reassembly<K> {
    /// Nothing gathered yet.
    pub fn new(limits: ReassemblyLimits) -> Self {
        Self {
            limits,
            budget: None,
            pending: BTreeMap::new(),
            held: 0,
        }
    }

    /// Draws what it holds from a budget shared with other connections.
    pub fn with_budget(mut self, budget: SharedBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Announces a message of `count` pieces (and `total` bytes, when the
    /// splitting says), replacing one gathered under the same key.
    pub fn begin(
        &mut self,
        key: K,
        count: u32,
        total: Option<u64>,
        now_ms: u64,
    ) -> Result<(), Refused> {
        self.forget(&key);
        self.expire(now_ms);
        if count == 0 {
            return Err(Refused::Malformed("a message of no pieces"));
        }
        let total = match total {
            Some(t) => {
                let limit = self.limits.max_message.min(self.limits.max_held);
                if t > limit as u64 {
                    return Err(Refused::TooLarge {
                        size: t,
                        limit: limit as u64,
                    });
                }
                // Every piece but the last holds a byte at least.
                if u64::from(count) > t.max(1) {
                    return Err(Refused::Malformed("more pieces than bytes"));
                }
                Some(t as usize)
            }
            None => None,
        };
        if self.pending.len() >= self.limits.max_pending {
            return Err(Refused::TooMany(self.limits.max_pending));
        }
        self.pending.insert(
            key,
            Gathering {
                count,
                total,
                started_ms: now_ms,
                joined: Vec::new(),
                next: 0,
                early: BTreeMap::new(),
                bytes: 0,
            },
        );
        Ok(())
    }

    /// Takes piece `index` of the message `key` (announced with
    /// [`Reassembly::begin`]). The whole message once its last piece came;
    /// a refusal drops the message. A piece of no message gathered is
    /// refused as malformed (its message timed out, or never began).
    pub fn piece(
        &mut self,
        key: K,
        index: u32,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Option<Vec<u8>>, Refused> {
        self.expire(now_ms);
        let Some(g) = self.pending.get(&key) else {
            return Err(Refused::Malformed("a piece of no message being gathered"));
        };
        let fits_total = g.total.is_none_or(|t| g.bytes + bytes.len() <= t);
        if index >= g.count || index < g.next || g.early.contains_key(&index) || !fits_total {
            self.forget(&key);
            return Err(Refused::Malformed(
                "a piece out of place or past the announced size",
            ));
        }
        let size = g.bytes + bytes.len();
        if size > self.limits.max_message {
            self.forget(&key);
            return Err(Refused::TooLarge {
                size: size as u64,
                limit: self.limits.max_message as u64,
            });
        }
        if self.held + bytes.len() > self.limits.max_held {
            self.forget(&key);
            return Err(Refused::TooMuchHeld {
                limit: self.limits.max_held as u64,
            });
        }
        if let Some(b) = &self.budget {
            if !b.take(bytes.len()) {
                self.forget(&key);
                return Err(Refused::Busy);
            }
        }
        self.held += bytes.len();
        let Some(g) = self.pending.get_mut(&key) else {
            return Err(Refused::Malformed("a piece of no message being gathered"));
        };
        g.bytes += bytes.len();
        if index == g.next {
            g.joined.extend_from_slice(bytes);
            g.next += 1;
            while let Some(more) = g.early.remove(&g.next) {
                g.joined.extend_from_slice(&more);
                g.next += 1;
            }
        } else {
            g.early.insert(index, bytes.to_vec());
        }
        if g.next < g.count {
            return Ok(None);
        }
        let short = g.total.is_some_and(|t| g.bytes != t);
        let Some(g) = self.remove(&key) else {
            return Ok(None);
        };
        if short {
            return Err(Refused::Malformed("fewer bytes than announced"));
        }
        Ok(Some(g.joined))
    }

    /// Drops messages whose deadline passed; their keys, for the caller to
    /// tell the sender.
    pub fn expire(&mut self, now_ms: u64) -> Vec<K> {
        let deadline = self.limits.deadline_ms;
        let late: Vec<K> = self
            .pending
            .iter()
            .filter(|(_, g)| now_ms.saturating_sub(g.started_ms) >= deadline)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &late {
            self.forget(k);
        }
        late
    }

    /// Drops one message being gathered.
    pub fn forget(&mut self, key: &K) {
        self.remove(key);
    }

    /// Drops the messages whose key `which` picks.
    pub fn forget_where(&mut self, which: impl Fn(&K) -> bool) {
        let keys: Vec<K> = self.pending.keys().filter(|k| which(k)).cloned().collect();
        for k in keys {
            self.forget(&k);
        }
    }

    /// Drops every message being gathered.
    pub fn clear(&mut self) {
        let keys: Vec<K> = self.pending.keys().cloned().collect();
        for k in keys {
            self.forget(&k);
        }
    }

    /// Messages being gathered.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Bytes held for unfinished messages.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Whether a message is being gathered under `key`.
    pub fn contains(&self, key: &K) -> bool {
        self.pending.contains_key(key)
    }

    fn remove(&mut self, key: &K) -> Option<Gathering> {
        let g = self.pending.remove(key)?;
        self.held = self.held.saturating_sub(g.bytes);
        if let Some(b) = &self.budget {
            b.give(g.bytes);
        }
        Some(g)
    }
}

impl<K: Ord + Clone> Drop for Reassembly<K> {
    fn drop(&mut self) {
        // What a closed connection held goes back to the server's budget.
        self.clear();
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

    fn pieces(bytes: &[u8], size: usize) -> Vec<&[u8]> {
        bytes.chunks(size).collect()
    }

    #[test]
    fn pieces_in_any_order_make_the_message_and_the_budget_comes_back() {
        let budget = SharedBudget::new(1 << 20);
        let mut r = Reassembly::new(limits()).with_budget(budget.clone());
        let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let ps = pieces(&big, 16 * 1024);
        r.begin(7u32, ps.len() as u32, Some(big.len() as u64), 0)
            .unwrap();
        let mut order: Vec<usize> = (0..ps.len()).collect();
        order.swap(0, 3);
        let mut whole = None;
        for i in order {
            if let Some(w) = r.piece(7, i as u32, ps[i], 10).unwrap() {
                whole = Some(w);
            }
        }
        assert_eq!(whole, Some(big));
        assert_eq!((r.pending(), r.held(), budget.left()), (0, 0, 1 << 20));
    }

    #[test]
    fn an_announcement_holds_nothing_and_a_liar_is_refused() {
        let budget = SharedBudget::new(1000);
        let mut r = Reassembly::new(limits()).with_budget(budget.clone());
        r.begin(1u32, 4, Some(1 << 20), 0).unwrap();
        assert_eq!(budget.left(), 1000, "an announcement reserves nothing");
        assert!(matches!(
            r.begin(2, 4, Some(1 << 30), 0),
            Err(Refused::TooLarge { .. })
        ));
        assert!(matches!(
            r.begin(3, 100, Some(10), 0),
            Err(Refused::Malformed(_))
        ));
        // Past the server's budget.
        assert_eq!(r.piece(1, 0, &[0; 1001], 0), Err(Refused::Busy));
        assert_eq!(r.pending(), 0);
        assert_eq!(budget.left(), 1000);
    }

    #[test]
    fn count_held_bytes_and_the_deadline_are_bounded() {
        let mut r = Reassembly::new(ReassemblyLimits {
            max_held: 100,
            ..limits()
        });
        r.begin(1u32, 3, None, 0).unwrap();
        r.begin(2u32, 3, None, 0).unwrap();
        assert_eq!(r.begin(3u32, 3, None, 0), Err(Refused::TooMany(2)));
        assert_eq!(r.piece(1, 0, &[1; 60], 0), Ok(None));
        assert_eq!(
            r.piece(2, 0, &[1; 60], 0),
            Err(Refused::TooMuchHeld { limit: 100 })
        );
        // Sending more does not move the deadline.
        assert_eq!(r.piece(1, 1, &[1; 10], 4_000), Ok(None));
        assert_eq!(r.expire(5_000), vec![1]);
        assert_eq!((r.pending(), r.held()), (0, 0));
        assert!(matches!(
            r.piece(1, 2, &[1], 5_001),
            Err(Refused::Malformed(_))
        ));
    }

    #[test]
    fn duplicates_and_pieces_out_of_range_drop_the_message() {
        let mut r = Reassembly::new(limits());
        r.begin(1u32, 2, Some(4), 0).unwrap();
        r.piece(1, 0, &[1, 2], 0).unwrap();
        assert!(matches!(
            r.piece(1, 0, &[1, 2], 0),
            Err(Refused::Malformed(_))
        ));
        assert_eq!(r.pending(), 0);
        r.begin(1u32, 2, Some(4), 0).unwrap();
        assert!(matches!(r.piece(1, 5, &[1], 0), Err(Refused::Malformed(_))));
        r.begin(1u32, 2, Some(4), 0).unwrap();
        r.piece(1, 0, &[1], 0).unwrap();
        assert!(
            matches!(r.piece(1, 1, &[1], 0), Err(Refused::Malformed(_))),
            "short of the total"
        );
    }
}
