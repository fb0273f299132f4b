//! Updates for a client, at most one message per room a few milliseconds.
//!
//! A room that changes a thousand times a second would otherwise cost each
//! member a thousand WebSocket messages and a thousand imports. The first
//! update after a quiet spell goes at once (a typing user's edit is not
//! delayed); one that follows within the window waits until the window has
//! passed, and updates meanwhile travel with it. Anything else for the
//! client first sends what was gathered, so the order holds.
//!
//! The node's acknowledgements of what was gathered wait with it: the node
//! sends a member one live update per room at a time, so while a message
//! waits, the room's later changes wait at the node and then come as one
//! update, which a reader imports far faster than many small ones.

use super::codec::{Body, LoroMessage};
use docweave_core::BatchId;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Gathers consecutive `DocUpdate`s of one room.
pub(crate) struct Coalescer {
    pending: Option<LoroMessage>,
    /// Node updates carried by `pending`.
    pending_acks: Vec<BatchId>,
    /// Node updates sent, acknowledged when the window after their message
    /// has passed (in order of that time): the node's next update for the
    /// room then arrives just as it may go.
    held: VecDeque<(Instant, BatchId)>,
    /// Node updates to acknowledge now.
    released: Vec<BatchId>,
    bytes: usize,
    due: Option<Instant>,
    /// When the last update message left.
    last_sent: Option<Instant>,
    window: Duration,
    max_bytes: usize,
}

fn size(m: &LoroMessage) -> usize {
    match &m.body {
        Body::DocUpdate { updates, .. } => updates.iter().map(Vec::len).sum(),
        _ => 0,
    }
}

impl Coalescer {
    /// Gathers for at most `window`, and at most `max_bytes` per message.
    pub fn new(window: Duration, max_bytes: usize) -> Self {
        Self {
            pending: None,
            pending_acks: Vec::new(),
            held: VecDeque::new(),
            released: Vec::new(),
            bytes: 0,
            due: None,
            last_sent: None,
            window,
            max_bytes,
        }
    }

    /// Takes a message for the client; returns what to send now, in order.
    pub fn push(&mut self, mut m: LoroMessage, now: Instant) -> Vec<LoroMessage> {
        let n = size(&m);
        if let (Body::DocUpdate { updates: more, .. }, Some(p)) = (&mut m.body, &mut self.pending) {
            let same_room = p.crdt == m.crdt && p.room == m.room;
            if let (true, Body::DocUpdate { updates, .. }) = (same_room, &mut p.body) {
                if self.bytes + n <= self.max_bytes {
                    // Moved, not copied: this runs for every update to every member.
                    updates.append(more);
                    self.bytes += n;
                    return Vec::new();
                }
            }
        }
        let mut out: Vec<LoroMessage> = self.flush(now).into_iter().collect();
        if !matches!(m.body, Body::DocUpdate { .. }) || n >= self.max_bytes {
            out.push(m);
            return out;
        }
        let free = self.last_sent.map_or(now, |t| t + self.window);
        if out.is_empty() && free <= now {
            self.last_sent = Some(now);
            out.push(m);
        } else {
            self.pending = Some(m);
            self.bytes = n;
            self.due = Some(free.max(now));
        }
        out
    }

    /// What was gathered, if its time has come; acknowledgements whose
    /// time has come move to [`Coalescer::released`].
    pub fn due(&mut self, now: Instant) -> Option<LoroMessage> {
        let m = match self.due {
            Some(at) if at <= now => self.flush(now),
            _ => None,
        };
        while let Some(&(at, batch)) = self.held.front() {
            if at > now {
                break;
            }
            self.held.pop_front();
            self.released.push(batch);
        }
        m
    }

    /// When something must happen next: a gathered message or a held
    /// acknowledgement.
    pub fn deadline(&self) -> Option<Instant> {
        let ack = self.held.front().map(|(at, _)| *at);
        match (self.due, ack) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// What was gathered, now.
    pub fn flush(&mut self, now: Instant) -> Option<LoroMessage> {
        self.due = None;
        self.bytes = 0;
        let m = self.pending.take();
        if m.is_some() {
            self.last_sent = Some(now);
        }
        let at = now + self.window;
        self.held
            .extend(self.pending_acks.drain(..).map(|batch| (at, batch)));
        m
    }

    /// The node's update `batch` was relayed: it is acknowledged when the
    /// window after the message carrying it has passed.
    pub fn relayed(&mut self, batch: BatchId, now: Instant) {
        if self.pending.is_some() {
            return self.pending_acks.push(batch);
        }
        match self.last_sent.map(|t| t + self.window) {
            Some(at) if at > now => self.held.push_back((at, batch)),
            _ => self.released.push(batch),
        }
    }

    /// Node updates to acknowledge now.
    pub fn released(&mut self) -> Vec<BatchId> {
        std::mem::take(&mut self.released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loro_protocol::codec::{Crdt, UpdateStatus};

    fn update(room: &str, bytes: Vec<u8>, id: u8) -> LoroMessage {
        LoroMessage {
            crdt: Crdt::Loro,
            room: room.into(),
            body: Body::DocUpdate {
                updates: vec![bytes],
                batch: [id; 8],
            },
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_first_update_after_a_quiet_spell_goes_at_once_and_the_next_waits_for_the_window() {
        let now = Instant::now();
        let mut c = Coalescer::new(ms(5), 100);
        assert_eq!(c.push(update("a", vec![1], 1), now).len(), 1);
        // Within the window: gathered until it has passed.
        assert!(c.push(update("a", vec![2], 2), now + ms(1)).is_empty());
        assert!(c.push(update("a", vec![3], 3), now + ms(2)).is_empty());
        assert_eq!(c.deadline(), Some(now + ms(5)));
        assert!(c.due(now + ms(4)).is_none());
        let sent = c.due(now + ms(5)).unwrap();
        assert!(
            matches!(&sent.body, Body::DocUpdate { updates, .. } if updates == &vec![vec![2], vec![3]])
        );
        // Quiet for a window again: at once.
        assert_eq!(c.push(update("a", vec![4], 4), now + ms(20)).len(), 1);
    }

    #[test]
    fn updates_of_one_room_travel_together_and_anything_else_keeps_its_place() {
        let now = Instant::now();
        let mut c = Coalescer::new(ms(5), 100);
        c.push(update("a", vec![0], 0), now);
        assert!(c.push(update("a", vec![1], 1), now).is_empty());
        assert!(c.push(update("a", vec![2], 2), now).is_empty());
        // Another room: the gathered message goes first, and it waits.
        let out = c.push(update("b", vec![3], 3), now);
        assert_eq!(out.len(), 1);
        assert!(
            matches!(&out[0].body, Body::DocUpdate { updates, .. } if updates == &vec![vec![1], vec![2]])
        );
        // Something else: the gathered message, then it.
        let ack = LoroMessage {
            crdt: Crdt::Loro,
            room: "b".into(),
            body: Body::Ack {
                batch: [9; 8],
                status: UpdateStatus::Ok,
            },
        };
        let out = c.push(ack.clone(), now);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], ack);
        // Too big to gather: straight through.
        assert_eq!(c.push(update("a", vec![0; 200], 5), now).len(), 1);
    }

    #[test]
    fn an_acknowledgement_waits_until_the_window_after_its_message_has_passed() {
        let now = Instant::now();
        let mut c = Coalescer::new(ms(5), 100);
        // Nothing sent lately: acknowledged at once.
        c.relayed(BatchId(1), now);
        assert_eq!(c.released(), vec![BatchId(1)]);
        // Sent at once: acknowledged when its window has passed, so the
        // node's next update arrives just as it may go.
        c.push(update("a", vec![1], 1), now);
        c.relayed(BatchId(2), now);
        assert!(c.released().is_empty());
        assert_eq!(c.deadline(), Some(now + ms(5)));
        assert!(c.due(now + ms(4)).is_none());
        assert!(c.released().is_empty());
        assert!(c.due(now + ms(5)).is_none());
        assert_eq!(c.released(), vec![BatchId(2)]);
        // Gathered: acknowledged a window after its message went.
        c.push(update("a", vec![2], 2), now + ms(6));
        c.push(update("b", vec![3], 3), now + ms(7));
        c.relayed(BatchId(3), now + ms(7));
        assert!(c.due(now + ms(11)).is_some());
        assert!(c.released().is_empty());
        c.due(now + ms(16));
        assert_eq!(c.released(), vec![BatchId(3)]);
    }
}
