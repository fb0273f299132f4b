//! Updates for a client, gathered for a few milliseconds into one message.
//!
//! A room that changes a thousand times a second would otherwise cost each
//! member a thousand WebSocket messages and a thousand imports; a reader
//! gets them as one `DocUpdate` carrying several updates (imported as one
//! batch by the client) at the price of a few milliseconds. Anything else
//! for the client first sends what was gathered, so the order holds.

use super::codec::{Body, LoroMessage};
use std::time::{Duration, Instant};

/// Gathers consecutive `DocUpdate`s of one room.
pub(crate) struct Coalescer {
    pending: Option<LoroMessage>,
    bytes: usize,
    due: Option<Instant>,
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
            bytes: 0,
            due: None,
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
        let mut out: Vec<LoroMessage> = self.flush().into_iter().collect();
        if matches!(m.body, Body::DocUpdate { .. }) && n < self.max_bytes {
            self.pending = Some(m);
            self.bytes = n;
            self.due = Some(now + self.window);
        } else {
            out.push(m);
        }
        out
    }

    /// What was gathered, if its time has come.
    pub fn due(&mut self, now: Instant) -> Option<LoroMessage> {
        match self.due {
            Some(at) if at <= now => self.flush(),
            _ => None,
        }
    }

    /// When what was gathered must go.
    pub fn deadline(&self) -> Option<Instant> {
        self.due
    }

    /// What was gathered, now.
    pub fn flush(&mut self) -> Option<LoroMessage> {
        self.due = None;
        self.bytes = 0;
        self.pending.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loro_protocol::codec::{AckStatus, Crdt};

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

    #[test]
    fn updates_of_one_room_travel_together_and_anything_else_keeps_its_place() {
        let now = Instant::now();
        let mut c = Coalescer::new(Duration::from_millis(5), 100);
        assert!(c.push(update("a", vec![1], 1), now).is_empty());
        assert!(c.push(update("a", vec![2], 2), now).is_empty());
        assert!(c.due(now + Duration::from_millis(1)).is_none());
        // Another room: the gathered message goes first.
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
                status: AckStatus::Ok,
            },
        };
        let out = c.push(ack.clone(), now);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], ack);
        // Its window passes.
        c.push(update("a", vec![4], 4), now);
        assert!(c.due(now + Duration::from_millis(5)).is_some());
        assert!(c.deadline().is_none());
        // Too big to gather: straight through.
        assert_eq!(c.push(update("a", vec![0; 200], 5), now).len(), 1);
    }
}
