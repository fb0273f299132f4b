//! One member's presence in one `%EPH` or `%EPS` room, merged.
//!
//! A Loro `EphemeralStore` sends all its keys when it joins and then only
//! the key that changed. The node keeps one entry per member and room, and
//! each message replaces it, so passing the messages on as they come would
//! leave a member who joins later with only the last key each member
//! touched. Applied here to a store of the member's own, every message
//! becomes the member's whole state (its deletions included, as the
//! timestamped tombstones the store keeps), and that is what the node
//! holds and relays.

use super::codec::UpdateStatus;
use loro::awareness::EphemeralStore;

/// The state of one member in one room.
pub struct MemberPresence {
    store: EphemeralStore,
    timeout_ms: i64,
    /// The last state accepted (what the node holds).
    state: Vec<u8>,
}

impl MemberPresence {
    /// A member whose entries live `timeout_ms` after their last change.
    pub fn new(timeout_ms: u32) -> Self {
        let timeout_ms = i64::from(timeout_ms);
        Self {
            store: EphemeralStore::new(timeout_ms),
            timeout_ms,
            state: Vec::new(),
        }
    }

    /// Bytes of the state accepted so far.
    pub fn size(&self) -> usize {
        self.state.len()
    }

    /// Applies a message of the member; its whole state after it, or why it
    /// was refused (the state then stays what it was). `most` bounds the
    /// state's size.
    pub fn apply(&mut self, update: &[u8], most: usize) -> Result<Vec<u8>, UpdateStatus> {
        // The client's bytes: a panic in Loro's decoder refuses them, and
        // the store it may have left half changed is rebuilt.
        let applied = crate::contained("presence", || {
            self.store.apply(update).ok()?;
            Some(self.store.encode_all())
        });
        let state = match applied {
            Ok(Some(state)) => state,
            Ok(None) => return Err(UpdateStatus::InvalidUpdate),
            Err(_) => {
                self.restore();
                return Err(UpdateStatus::InvalidUpdate);
            }
        };
        if state.len() > most {
            self.restore();
            return Err(UpdateStatus::PayloadTooLarge);
        }
        self.state.clone_from(&state);
        Ok(state)
    }

    /// The member's keys, each deleted (timestamped tombstones, as its own
    /// store writes them), for the members still in the room; `None` when
    /// it had none.
    pub fn departure(&mut self) -> Option<Vec<u8>> {
        if self.state.is_empty() {
            return None;
        }
        crate::contained("presence", || {
            for key in self.store.keys() {
                self.store.delete(&key);
            }
            self.store.encode_all()
        })
        .ok()
    }

    /// Back to the state last accepted: a store cannot take a message back.
    fn restore(&mut self) {
        self.store = EphemeralStore::new(self.timeout_ms);
        if !self.state.is_empty() {
            // Encoded by a store from accepted messages: it applies again.
            // Were it to fail, the member would show no presence until its
            // next message, which is what an expiry does too.
            let _ = self.store.apply(&self.state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> EphemeralStore {
        EphemeralStore::new(30_000)
    }

    /// A store that joins later and takes `state`.
    fn joiner(state: &[u8]) -> EphemeralStore {
        let s = store();
        s.apply(state).unwrap();
        s
    }

    /// Entries are last-write-wins by millisecond timestamp: changes in
    /// one millisecond would tie.
    fn later() {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }

    #[test]
    fn each_message_becomes_the_members_whole_state() {
        let client = store();
        let mut member = MemberPresence::new(30_000);
        client.set("layout", "two columns");
        member.apply(&client.encode("layout"), 1024).unwrap();
        later();
        client.set("theme", "dark");
        // The client sends only the key that changed; the state has both.
        let state = member.apply(&client.encode("theme"), 1024).unwrap();
        let joiner = joiner(&state);
        assert_eq!(joiner.get("layout"), Some("two columns".into()));
        assert_eq!(joiner.get("theme"), Some("dark".into()));
        // A deletion travels in the state too.
        later();
        client.delete("theme");
        let state = member.apply(&client.encode("theme"), 1024).unwrap();
        joiner.apply(&state).unwrap();
        assert_eq!(joiner.get("theme"), None);
    }

    #[test]
    fn a_state_past_the_bound_is_refused_and_the_last_one_kept() {
        let client = store();
        let mut member = MemberPresence::new(30_000);
        client.set("name", "alice");
        let kept = member.apply(&client.encode("name"), 100).unwrap();
        later();
        client.set("blob", "x".repeat(500));
        assert_eq!(
            member.apply(&client.encode("blob"), 100),
            Err(UpdateStatus::PayloadTooLarge)
        );
        assert_eq!(member.size(), kept.len());
        later();
        client.set("name", "bob");
        let state = member.apply(&client.encode("name"), 100).unwrap();
        let joiner = joiner(&state);
        assert_eq!(joiner.get("name"), Some("bob".into()));
        assert_eq!(joiner.get("blob"), None);
        assert!(matches!(
            member.apply(&[0xff, 0xff, 0xff], 100),
            Err(UpdateStatus::InvalidUpdate)
        ));
    }
}
