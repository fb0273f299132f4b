//! Checking a hello's token outside the core. A signed token's signature,
//! key files and clock skew are the shell's business; the core only gets
//! the verdict ([`docweave_core::Msg::Authenticated`]), which a recording
//! keeps, so a replay decides exactly as the live node did.

use docweave_core::Credential;

/// What a checker says of one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Genuine and in force: who holds it and what it grants. The
    /// credential's `expires` is left to the node, which sets it from
    /// `lifetime_ms` on its own clock.
    Valid {
        /// Identity and rights.
        credential: Credential,
        /// Milliseconds until it expires, from now; `None`: never.
        lifetime_ms: Option<u64>,
    },
    /// Refused, and why (said to the client, so no secret in it).
    Refused(String),
}

/// Checks the tokens of hellos before the core sees them (see
/// [`crate::RepoBuilder::authenticator`]).
pub trait Authenticator: Send + Sync {
    /// The verdict on `token`, or `None` when it is not a token this checker
    /// knows (then the node's static tokens decide, as without a checker).
    fn check(&self, token: &str) -> Option<Checked>;
}
