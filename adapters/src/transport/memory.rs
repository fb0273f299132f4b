//! In-memory links, with seeded fault injection for tests.

use super::{outbound, Link, LinkOut, Outbound, DEFAULT_BACKLOG};

/// Faults injected on a memory link, per frame, from a seeded generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Seed of the generator: the same seed, the same faults.
    pub seed: u64,
    /// Per mille of frames dropped.
    pub drop: u32,
    /// Per mille of frames delivered twice.
    pub duplicate: u32,
    /// Per mille of frames held back and delivered after the next one.
    pub reorder: u32,
    /// Most milliseconds a frame may be delayed.
    pub max_delay_ms: u64,
    /// Disconnect after this many frames (0: never).
    pub disconnect_after: u64,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.next() % 1000 < u64::from(per_mille)
    }
}

/// One end of a link that is read only when asked (an HTTP polling
/// session): frames from the other end wait in its queue, shared and
/// charged to its backlog, until taken with [`LinkOut::recv`] (and released
/// with [`LinkOut::written`]), rather than being copied ahead into a buffer
/// for a client that may never poll.
pub struct PolledLink {
    /// Frames to the other end.
    pub tx: super::LinkTx,
    /// Frames from the other end, taken when asked for.
    pub rx: std::sync::Arc<LinkOut>,
}

impl PolledLink {
    /// Closes the connection with a reason.
    pub fn close(&self, reason: &str) {
        self.tx.close(reason);
    }
}

/// A polled end and an ordinary end, connected.
pub fn polled_pair() -> (PolledLink, Link) {
    let (polled_out, polled_out_rx) = outbound(DEFAULT_BACKLOG);
    let (node_out, node_out_rx) = outbound(DEFAULT_BACKLOG);
    let (node_in_tx, node_in) = async_channel::bounded::<Vec<u8>>(256);
    smol::spawn(forward(polled_out_rx, node_in_tx, Faults::default(), 1)).detach();
    (
        PolledLink {
            tx: polled_out,
            rx: std::sync::Arc::new(node_out_rx),
        },
        Link {
            tx: node_out,
            rx: node_in,
        },
    )
}

/// Two connected ends with no faults.
pub fn memory_pair() -> (Link, Link) {
    memory_pair_with_faults(Faults::default())
}

/// Two connected ends; frames in both directions suffer `faults`.
pub fn memory_pair_with_faults(faults: Faults) -> (Link, Link) {
    let (a_out, a_out_rx) = outbound(DEFAULT_BACKLOG);
    let (b_out, b_out_rx) = outbound(DEFAULT_BACKLOG);
    // Bounded: a side that does not read holds back the other's writer,
    // whose backlog then fills and closes the link.
    let (a_in_tx, a_in) = async_channel::bounded::<Vec<u8>>(256);
    let (b_in_tx, b_in) = async_channel::bounded::<Vec<u8>>(256);
    smol::spawn(forward(a_out_rx, b_in_tx, faults, 1)).detach();
    smol::spawn(forward(b_out_rx, a_in_tx, faults, 2)).detach();
    (
        Link {
            tx: a_out,
            rx: a_in,
        },
        Link {
            tx: b_out,
            rx: b_in,
        },
    )
}

async fn forward(from: LinkOut, to: async_channel::Sender<Vec<u8>>, faults: Faults, lane: u64) {
    let mut rng = Rng(faults.seed ^ lane.wrapping_mul(0xa076_1d64_78bd_642f));
    let mut held: Option<Vec<u8>> = None;
    let mut count = 0u64;
    while let Some(item) = from.recv().await {
        let Outbound::Frame(frame) = item else { break };
        from.written(&frame);
        count += 1;
        if faults.disconnect_after > 0 && count > faults.disconnect_after {
            break;
        }
        if rng.chance(faults.drop) {
            continue;
        }
        if faults.max_delay_ms > 0 {
            let ms = rng.next() % (faults.max_delay_ms + 1);
            smol::Timer::after(std::time::Duration::from_millis(ms)).await;
        }
        if held.is_none() && rng.chance(faults.reorder) {
            held = Some(frame);
            continue;
        }
        let twice = rng.chance(faults.duplicate);
        if to.send(frame.clone()).await.is_err() {
            break;
        }
        if twice && to.send(frame).await.is_err() {
            break;
        }
        if let Some(h) = held.take() {
            if to.send(h).await.is_err() {
                break;
            }
        }
    }
    // Closing our sender ends the other side's `rx`: the connection is gone.
    to.close();
    from.close();
}
