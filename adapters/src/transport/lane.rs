//! The outbound queue of one link: a `VecDeque` under a mutex and an
//! event to wait on. It holds nothing while empty, where an unbounded
//! `async_channel` keeps a block of 31 entries (over 1 KB) for every
//! connection for its whole life: with 20,000 idle connections, 25 MB.
//!
//! Its semantics are the channel's it replaces: senders are counted (the
//! queue ends, once drained, when the last is dropped or one closes it),
//! and a dropped receiver closes it for the senders.

use event_listener::Event;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// What the halves share.
#[derive(Debug)]
struct Shared<T> {
    state: Mutex<State<T>>,
    /// Rung when an item arrives or the queue closes.
    ready: Event,
    /// The receiving half was dropped. Outside the lock: a WebSocket reader
    /// asks at every message it reads, pings included, whether its writer
    /// ended, and a lock there cost as much as moving the link's timer.
    receiver_gone: AtomicBool,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    senders: usize,
    closed: bool,
}

impl<T> Shared<T> {
    fn state(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock leaves a queue that is still whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sending half; clones count as senders.
#[derive(Debug)]
pub(crate) struct Lane<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving half (one per queue).
#[derive(Debug)]
pub(crate) struct LaneOut<T> {
    shared: Arc<Shared<T>>,
}

/// A new, empty queue.
pub(crate) fn lane<T>() -> (Lane<T>, LaneOut<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            senders: 1,
            closed: false,
        }),
        ready: Event::new(),
        receiver_gone: AtomicBool::new(false),
    });
    (
        Lane {
            shared: shared.clone(),
        },
        LaneOut { shared },
    )
}

impl<T> Clone for Lane<T> {
    fn clone(&self) -> Self {
        self.shared.state().senders += 1;
        Lane {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Lane<T> {
    fn drop(&mut self) {
        let last = {
            let mut s = self.shared.state();
            s.senders = s.senders.saturating_sub(1);
            s.senders == 0
        };
        if last {
            self.shared.ready.notify(usize::MAX);
        }
    }
}

impl<T> Lane<T> {
    /// Queues `item`; gives it back when the queue is closed.
    pub(crate) fn try_send(&self, item: T) -> Result<(), T> {
        {
            let mut s = self.shared.state();
            // Set under the lock (below), so read under it too: nothing
            // is queued after the receiver emptied the queue for good.
            if s.closed || self.shared.receiver_gone.load(Ordering::Acquire) {
                return Err(item);
            }
            s.items.push_back(item);
        }
        // One more waiter for each item, as async-channel does: an HTTP
        // session may have two requests waiting on one link.
        self.shared.ready.notify_additional(1);
        Ok(())
    }

    /// Takes no more items; what is queued is still received.
    pub(crate) fn close(&self) {
        self.shared.state().closed = true;
        self.shared.ready.notify(usize::MAX);
    }

    /// Whether the receiving half was dropped.
    pub(crate) fn receiver_gone(&self) -> bool {
        self.shared.receiver_gone.load(Ordering::Acquire)
    }
}

impl<T> LaneOut<T> {
    /// `Some(Some(item))`, `Some(None)` once closed and drained, `None` while empty and open.
    fn take(&self) -> Option<Option<T>> {
        let mut s = self.shared.state();
        if let Some(item) = s.items.pop_front() {
            // A burst leaves a large buffer behind: give it back once drained.
            if s.items.is_empty() && s.items.capacity() > 64 {
                s.items = VecDeque::new();
            }
            return Some(Some(item));
        }
        (s.closed || s.senders == 0).then_some(None)
    }

    /// The next item; `None` once the queue is closed (or every sender
    /// went) and drained.
    pub(crate) async fn recv(&self) -> Option<T> {
        loop {
            if let Some(next) = self.take() {
                return next;
            }
            let listener = self.shared.ready.listen();
            // Looked at again after listening: an item queued in between
            // rang before we listened.
            if let Some(next) = self.take() {
                return next;
            }
            listener.await;
        }
    }

    /// The next item if one is queued now.
    pub(crate) fn try_recv(&self) -> Option<T> {
        self.take().flatten()
    }

    /// Closes the queue for the senders.
    pub(crate) fn close(&self) {
        self.shared.state().closed = true;
    }
}

impl<T> Drop for LaneOut<T> {
    fn drop(&mut self) {
        let mut s = self.shared.state();
        self.shared.receiver_gone.store(true, Ordering::Release);
        // Nobody will write these: their memory goes now.
        s.items = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::lane;

    #[test]
    fn a_lane_delivers_in_order_and_ends_when_its_senders_go() {
        smol::block_on(async {
            let (tx, rx) = lane::<u32>();
            let tx2 = tx.clone();
            assert!(tx.try_send(1).is_ok() && tx2.try_send(2).is_ok());
            assert_eq!(rx.recv().await, Some(1));
            assert_eq!(rx.try_recv(), Some(2));
            assert_eq!(rx.try_recv(), None);
            let waiter = smol::spawn(async move { rx.recv().await });
            smol::Timer::after(std::time::Duration::from_millis(20)).await;
            assert!(tx.try_send(3).is_ok());
            assert_eq!(waiter.await, Some(3), "a waiting receiver is woken");
            drop(tx);
            drop(tx2);
        });
    }

    #[test]
    fn a_closed_lane_is_drained_then_ends_and_a_dropped_receiver_refuses_more() {
        smol::block_on(async {
            let (tx, rx) = lane::<u32>();
            assert!(tx.try_send(1).is_ok());
            tx.close();
            assert_eq!(tx.try_send(2), Err(2));
            assert_eq!(rx.recv().await, Some(1));
            assert_eq!(rx.recv().await, None);
            let (tx, rx) = lane::<u32>();
            let other = tx.clone();
            drop(tx);
            assert!(!other.receiver_gone());
            let waiter = smol::spawn(async move { rx.recv().await });
            smol::Timer::after(std::time::Duration::from_millis(20)).await;
            drop(other);
            assert_eq!(waiter.await, None, "the last sender's drop ends the wait");
            let (tx, rx) = lane::<u32>();
            drop(rx);
            assert!(tx.receiver_gone());
            assert_eq!(tx.try_send(5), Err(5));
        });
    }
}
