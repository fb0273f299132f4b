//! Nodes on one shared store, as servers on one PostgreSQL: the store's
//! announcements travel to the other nodes with a delay, can be cut (a lost
//! listening connection) and come back with one announcement, as
//! `PostgresStore::watch` does; the feed poll is the safety net.

use super::{Due, Sim, SimEngine};
use crate::faulty_store::Backing;
use docweave_adapters::{Announcement, SharedMemoryStore, Store};
use docweave_shell::Input;

impl<E: SimEngine> Sim<E> {
    /// Another handle on the store `name` shares (`None` when its store is
    /// its own, or it has none): for a node added next to it.
    pub fn shared_store(&self, name: &str) -> Option<SharedMemoryStore> {
        match self.nodes.get(name)?.store.as_ref().map(|s| &s.inner)? {
            Backing::Shared(s) => Some(s.handle()),
            Backing::Own(_) => None,
        }
    }

    /// As the driver does at start: a node on a shared store that follows
    /// its feed asks it to announce the others' writes, and reads the feed
    /// at once (held, like everything, until its store is restored).
    pub(super) fn watch_shared_store(&mut self, name: &str) {
        let announced = self.announced.clone();
        let target = name.to_string();
        let now = self.now;
        let Some(n) = self.nodes.get_mut(name) else {
            return;
        };
        let (Some(node), Some(store)) = (n.node.as_mut(), n.store.as_mut()) else {
            return;
        };
        if node.model().config().timing.feed_poll_ms == 0
            || !matches!(store.inner, Backing::Shared(_))
        {
            return;
        }
        let watching = store.inner.watch(std::sync::Arc::new(move |what| {
            // A poisoned list only means a panicking test; the run ends.
            if let Ok(mut a) = announced.lock() {
                a.push((target.clone(), what));
            }
        }));
        if watching.unwrap_or(false) {
            node.handle(now, Input::StoreAnnounced);
        }
    }

    /// Carries what the shared stores announced to the nodes they told,
    /// a millisecond later (or nowhere, while announcements are cut).
    pub(super) fn deliver_announcements(&mut self) {
        let taken: Vec<(String, Announcement)> = match self.announced.lock() {
            Ok(mut a) => a.drain(..).collect(),
            Err(_) => return,
        };
        if self.announcements_cut {
            return;
        }
        for (node, what) in taken {
            let t = self.now + 1;
            self.at(t, Due::Announce { node, what });
        }
    }

    pub(super) fn announced_to(&mut self, name: &str, what: Announcement) {
        if self.announcements_cut {
            return;
        }
        let input = match what {
            Announcement::Written => Input::StoreAnnounced,
            Announcement::Published(bytes) => Input::StorePublished { bytes },
        };
        self.feed(name, input);
    }

    /// Cuts (or restores) every shared store's announcements. Restored,
    /// each watching node hears once that it may have missed writes.
    pub fn cut_announcements(&mut self, cut: bool) {
        let was = self.announcements_cut;
        self.announcements_cut = cut;
        if !was || cut {
            return;
        }
        self.log("shared store: announcements restored".into());
        let watching: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| {
                n.node.is_some()
                    && n.store
                        .as_ref()
                        .is_some_and(|s| matches!(s.inner, Backing::Shared(_)))
                    && n.config.timing.feed_poll_ms > 0
            })
            .map(|(k, _)| k.clone())
            .collect();
        for node in watching {
            let t = self.now + 1;
            self.at(
                t,
                Due::Announce {
                    node,
                    what: Announcement::Written,
                },
            );
        }
    }
}
