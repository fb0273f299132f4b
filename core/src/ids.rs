//! Identifiers: documents, peers, channels, clocks, batches, listeners.
//!
//! Every id the core hands out comes from a counter in the model, never from
//! a process-global counter, so a replayed log produces the same ids.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Longest document or peer id we accept, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// Why an id supplied from outside was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id was the empty string.
    #[error("the id is empty; give a non-empty name")]
    Empty,
    /// The id was longer than [`MAX_ID_LEN`] bytes.
    #[error("the id is {0} bytes long; at most 256 bytes are allowed")]
    TooLong(usize),
    /// The id held a control character (NUL, tab, newline, ...).
    #[error("the id {0:?} holds a control character (NUL, tab, newline, ...); any other text is allowed")]
    Control(String),
}

/// Ids are opaque data: any UTF-8 text up to [`MAX_ID_LEN`] bytes but the
/// empty string and control characters (which would break logs, traces
/// and the lines of a recording). Slashes, dots, colons and whole URLs are
/// ids like any other; no store or adapter uses an id as a file name.
fn check_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong(s.len()));
    }
    if s.chars().any(char::is_control) {
        return Err(IdError::Control(s.to_string()));
    }
    Ok(())
}

/// Bytes an id takes on the heap beyond its text (see [`crate::budget`]):
/// the shared allocation's counts and the allocator's own header and
/// rounding. Its 24 bytes inline (prefix and pointer) are its container's,
/// charged with the list or message that holds it.
const ID_OVERHEAD: usize = 40;

/// Bytes of an id's text its prefix holds.
const PREFIX_LEN: usize = 8;

/// The first eight bytes of an id as a big-endian number, zero-padded: two
/// ids whose prefixes differ compare as their prefixes do (a shorter id
/// pads with zeros, which sort first, as the end of a string does), so most
/// comparisons in the model's B-trees decide without reading the text
/// behind the pointer (string comparisons were the core's hottest code).
fn prefix_of(s: &str) -> u64 {
    let mut bytes = [0u8; PREFIX_LEN];
    let n = s.len().min(PREFIX_LEN);
    bytes[..n].copy_from_slice(&s.as_bytes()[..n]);
    u64::from_be_bytes(bytes)
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        ///
        /// Ordered bytewise by its text, as stores order ids.
        #[derive(Clone)]
        pub struct $name {
            /// [`prefix_of`] the text: decides most comparisons.
            prefix: u64,
            text: Arc<str>,
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                // The length sits beside the pointer: an id that fits its
                // prefix is decided without reading its text.
                self.prefix == other.prefix
                    && self.text.len() == other.text.len()
                    && (self.text.len() <= PREFIX_LEN
                        || Arc::ptr_eq(&self.text, &other.text)
                        || self.text == other.text)
            }
        }

        impl Eq for $name {}

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.prefix.cmp(&other.prefix).then_with(|| {
                    let (a, b) = (self.text.len(), other.text.len());
                    if a <= PREFIX_LEN && b <= PREFIX_LEN {
                        // The prefix holds all of both, the shorter padded
                        // with zeros: they order as their lengths do.
                        a.cmp(&b)
                    } else if Arc::ptr_eq(&self.text, &other.text) {
                        std::cmp::Ordering::Equal
                    } else {
                        self.text.as_bytes().cmp(other.text.as_bytes())
                    }
                })
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.text.hash(state)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.text)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                crate::budget::charge::<D::Error>(ID_OVERHEAD)?;
                Ok(Self::from_text(&s))
            }
        }

        impl $name {
            fn from_text(s: &str) -> Self {
                Self {
                    prefix: prefix_of(s),
                    text: Arc::from(s),
                }
            }
            /// Checks an id that came from outside (length, characters).
            pub fn parse(s: &str) -> Result<Self, IdError> {
                check_id(s)?;
                Ok(Self::from_text(s))
            }
            /// Builds an id from a trusted literal; invalid names are still
            /// refused by [`Self::is_valid`] at every entry point.
            pub fn new(s: &str) -> Self {
                Self::from_text(s)
            }
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.text
            }
            /// Whether the id passes the checks of [`Self::parse`].
            pub fn is_valid(&self) -> bool {
                check_id(&self.text).is_ok()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.text)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($label, " {}"), self.text)
            }
        }
    };
}

string_id!(
    /// A document's name. Data, never a file path.
    DocId,
    "doc"
);
string_id!(
    /// A node's identity, as it introduces itself in the handshake.
    PeerId,
    "peer"
);
string_id!(
    /// A presence namespace ("cursor", "selection", ...).
    Namespace,
    "namespace"
);
string_id!(
    /// An address the shell can dial (a URL, a name in a test).
    RemoteAddr,
    "remote"
);

macro_rules! counter_id {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($label, " {}"), self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    };
}

counter_id!(
    /// A connection to a peer or a store, numbered by the shell.
    ChannelId,
    "channel"
);
counter_id!(
    /// A position in a node's change feed. Every durable change gets the next
    /// clock of the store that holds it; "changes since C" finds everything later.
    Clock,
    "clock"
);
counter_id!(
    /// Names one data transmission so the receiver can acknowledge it.
    BatchId,
    "batch"
);
counter_id!(
    /// A registered pull-responder listener.
    ListenerId,
    "listener"
);
counter_id!(
    /// Names an import the core asked the shell to perform.
    ImportId,
    "import"
);
counter_id!(
    /// Names a request from the application, echoed in its answer.
    RequestId,
    "request"
);

/// Milliseconds on the shell's clock. The core never reads a clock: time
/// only arrives in messages.
pub type Millis = u64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_any_text_but_empty_or_control_characters() {
        for bad in ["", "a\0b", "tab\there", "line\n", "\u{7f}del"] {
            assert!(DocId::parse(bad).is_err(), "{bad:?} should be refused");
        }
        for good in [
            "notes",
            "team/notes",
            "a.b",
            "ünïcode",
            "https://example.com/docs/x",
            "notes/",
            "/notes",
            "a/./b",
            "../x",
            "a\\b",
            "with space",
        ] {
            assert!(DocId::parse(good).is_ok(), "{good:?} should be accepted");
        }
        assert_eq!(DocId::parse(&"x".repeat(257)), Err(IdError::TooLong(257)));
    }

    #[test]
    fn ids_order_and_equal_as_their_text_does_bytewise() {
        let texts = [
            "a",
            "ab",
            "ab\0",
            "ab\0\0",
            "abcdefg",
            "abcdefgh",
            "abcdefgh\0",
            "abcdefghi",
            "abcdefgi",
            "abcdefgh\u{ff}",
            "b",
            "doc-9",
            "doc-10",
            "doc-100000",
            "doc-99999",
            "ünïcode",
            "ü",
            "\u{7f}",
            "zzzzzzzzzzzz",
            "zzzzzzzzzzzy",
            "abcdefghijklmnop",
            "abcdefghijklmnop\0",
            "abcdefghijklmnopqrs",
            "abcdefghijklmnopqrt",
            "workspace/12/page/1",
            "workspace/12/page/10",
        ];
        for a in texts {
            for b in texts {
                let (x, y) = (DocId::new(a), DocId::new(b));
                assert_eq!(x.cmp(&y), a.as_bytes().cmp(b.as_bytes()), "{a:?} vs {b:?}");
                assert_eq!(x == y, a == b, "{a:?} == {b:?}");
            }
        }
    }
}
