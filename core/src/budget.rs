//! What decoding one untrusted message may allocate, checked while it is
//! decoded (not after: by then the memory is spent).
//!
//! Bytes carried as they are (document data, strings) cost what they take on
//! the wire. What costs more than its wire bytes is structure: an empty id is
//! one byte on the wire and about 64 in memory, an entry of a list the size
//! of its element. Every such allocation is charged to a budget set for the
//! message, at most [`RATIO`] times its wire size and never more than
//! [`CEILING`]; past it the message is refused. So a message holds at most
//! its own bytes plus that budget in memory, whatever it claims.
//!
//! The budget lives in a thread-local for the one `decode` call that sets it
//! ([`within`]); outside such a call nothing is charged (trusted data: JSON
//! recordings, traces). It is deterministic: the same bytes are refused the
//! same way everywhere.

use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

/// Most bytes of structure a message may allocate per byte on the wire.
pub const RATIO: usize = 16;

/// Most bytes of structure one message may allocate, whatever its size: a
/// 512 MiB message is large for its document data, never for its lists.
pub const CEILING: usize = 64 * 1024 * 1024;

/// What every message may allocate whatever its size (a small message of
/// many ids is legitimate).
const FLOOR: usize = 4096;

/// Why a message was refused when its budget ran out.
pub const EXCEEDED: &str = "the message would take more than 16 times its size in memory";

thread_local! {
    /// Bytes left to the message being decoded; `None` outside [`within`].
    static LEFT: Cell<Option<usize>> = const { Cell::new(None) };
    /// Whether the message being decoded ran out of budget.
    static OVER: Cell<bool> = const { Cell::new(false) };
}

/// Runs `decode` with the budget of a message of `wire_len` bytes; also
/// says whether the budget ran out (the decode then failed: some formats,
/// postcard among them, drop the reason).
pub fn within<T>(wire_len: usize, decode: impl FnOnce() -> T) -> (T, bool) {
    let budget = wire_len.saturating_mul(RATIO).min(CEILING) + FLOOR;
    let before = LEFT.with(|l| l.replace(Some(budget)));
    let was_over = OVER.with(|o| o.replace(false));
    let out = decode();
    LEFT.with(|l| l.set(before));
    let over = OVER.with(|o| o.replace(was_over));
    (out, over)
}

/// Takes `bytes` from the current budget, or fails the decode.
pub(crate) fn charge<E: serde::de::Error>(bytes: usize) -> Result<(), E> {
    LEFT.with(|l| match l.get() {
        None => Ok(()),
        Some(left) if left >= bytes => {
            l.set(Some(left - bytes));
            Ok(())
        }
        Some(_) => {
            OVER.with(|o| o.set(true));
            Err(E::custom(EXCEEDED))
        }
    })
}

/// Deserializes a list, charging each element's size before it is read
/// (`#[serde(deserialize_with = "crate::budget::vec")]`). No capacity is
/// taken from the length the sender claims.
pub(crate) fn vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ListVisitor<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            loop {
                // Twice the element: a growing `Vec` may hold double.
                charge::<A::Error>(2 * std::mem::size_of::<T>())?;
                match seq.next_element()? {
                    Some(x) => out.push(x),
                    None => return Ok(out),
                }
            }
        }
    }
    d.deserialize_seq(ListVisitor(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, serde::Serialize)]
    struct Ids(#[serde(deserialize_with = "vec")] Vec<String>);

    #[test]
    fn a_list_of_empty_strings_is_refused_past_its_budget() {
        let many = postcard::to_stdvec(&Ids(vec![String::new(); 100_000])).unwrap();
        let (decoded, over) = within(many.len(), || postcard::from_bytes::<Ids>(&many));
        assert!(decoded.is_err() && over, "48 bytes a byte were taken");
        let few = postcard::to_stdvec(&Ids(vec!["notes".into(); 10])).unwrap();
        let (decoded, over) = within(few.len(), || postcard::from_bytes::<Ids>(&few));
        assert_eq!(decoded.unwrap().0.len(), 10);
        assert!(!over);
    }

    #[test]
    fn outside_a_decode_nothing_is_charged() {
        let many = postcard::to_stdvec(&Ids(vec![String::new(); 100_000])).unwrap();
        assert_eq!(postcard::from_bytes::<Ids>(&many).unwrap().0.len(), 100_000);
    }
}
