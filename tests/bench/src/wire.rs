//! Counts frames and bytes crossing a link, both ways.

use docweave_adapters::transport::{outbound, DEFAULT_BACKLOG};
use docweave_adapters::{Link, Outbound};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Frames and bytes seen.
#[derive(Debug, Default)]
pub struct Wire {
    frames: AtomicU64,
    bytes: AtomicU64,
}

impl Wire {
    /// A fresh counter.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    fn add(&self, n: usize) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    /// (frames, bytes) so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.frames.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
    /// Starts counting from zero.
    pub fn reset(&self) {
        self.frames.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
    }
}

/// Wraps a link so every frame in either direction is counted.
pub fn counted(link: Link, wire: Arc<Wire>) -> Link {
    let (out_tx, out_rx) = outbound(DEFAULT_BACKLOG);
    let (in_tx, in_rx) = async_channel::unbounded::<Vec<u8>>();
    let w = wire.clone();
    let inner_tx = link.tx;
    smol::spawn(async move {
        while let Some(item) = out_rx.recv().await {
            match item {
                Outbound::Frame(f) => {
                    w.add(f.len());
                    out_rx.written(&f);
                    if inner_tx.send(f).is_err() {
                        break;
                    }
                }
                Outbound::Close(reason) => {
                    inner_tx.close(&reason);
                    return;
                }
            }
        }
        inner_tx.close("closed");
    })
    .detach();
    let inner_rx = link.rx;
    smol::spawn(async move {
        while let Ok(f) = inner_rx.recv().await {
            wire.add(f.len());
            if in_tx.send(f).await.is_err() {
                break;
            }
        }
        in_tx.close();
    })
    .detach();
    Link {
        tx: out_tx,
        rx: in_rx,
    }
}
