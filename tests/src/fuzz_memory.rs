//! The body of the `decode_memory` fuzz target: whatever bytes arrive, what
//! decoding them holds in memory at once stays within a constant times
//! their size (native frames, Loro protocol messages, the listener API's
//! JSON). Needs [`crate::alloc_meter::Meter`] as the global allocator (the
//! fuzz target and the corpus replay install it).

use crate::alloc_meter;
use docweave_core::{decode_frame, Filter, Limits, FRAME_VERSION};

/// Most bytes held per byte decoded, and beyond it whatever the size.
pub const RATIO: usize = 24;
/// See [`RATIO`].
pub const SLACK: usize = 64 * 1024;

/// The first byte chooses the decoder; the rest is its input (for native
/// frames, the payload of a frame whose header is made to fit, so that
/// mutations reach the messages).
pub fn decode_memory(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let (_, peak) = alloc_meter::peak_of(|| match kind % 3 {
        0 => {
            let mut frame = vec![FRAME_VERSION, 0];
            frame.extend_from_slice(&(rest.len() as u32).to_le_bytes());
            frame.extend_from_slice(rest);
            let limits = Limits {
                max_frame: usize::MAX / 2,
                ..Limits::default()
            };
            // Refused or taken: only the memory matters here.
            let _ = decode_frame(&frame, &limits);
        }
        1 => {
            let _ = docweave_adapters::loro_protocol::decode(rest);
        }
        _ => {
            let _ = docweave_core::budget::within(rest.len(), || {
                serde_json::from_slice::<Filter>(rest)
            });
        }
    });
    assert!(
        peak <= RATIO * data.len() + SLACK,
        "decoding {} bytes held {peak} bytes at once",
        data.len()
    );
}
