//! The body of the `decode_memory` fuzz target: whatever bytes arrive, what
//! decoding them holds in memory at once stays within a constant times
//! their size (native frames, Loro protocol messages, the listener API's
//! JSON). Needs [`crate::alloc_meter::Meter`] as the global allocator (the
//! fuzz target and the corpus replay install it).

use crate::alloc_meter;
use docweave_core::{decode_frame, Filter, Limits, FRAME_VERSION};

/// Most bytes held per byte decoded, and beyond it whatever the size.
pub const RATIO: usize = 24;
/// See [`RATIO`]: a fixed allowance, plus the messages of one frame at
/// their size in memory (a frame holds at most `Limits::max_messages`, and
/// an acknowledgement is five bytes on the wire, the size of a `Message`
/// in memory; the fuzzer found 2,000 of them at 48 times their bytes).
pub fn slack() -> usize {
    64 * 1024
        + docweave_core::Limits::default().max_messages
            * std::mem::size_of::<docweave_core::Message>()
}

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
        peak <= RATIO * data.len() + slack(),
        "decoding {} bytes held {peak} bytes at once",
        data.len()
    );
}
