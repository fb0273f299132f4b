//! Checking a hello's token outside the core. A signed token's signature,
//! key files and clock skew are the shell's business; the core only gets
//! the verdict ([`docweave_core::Msg::Authenticated`]), which a recording
//! keeps, so a replay decides exactly as the live node did.

use docweave_core::Credential;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

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
    /// knows (then the node's static tokens decide, as without a checker),
    /// or when it can only be had by asking elsewhere ([`Self::ask`]).
    fn check(&self, token: &str) -> Option<Checked>;

    /// For a token [`Self::check`] has no verdict on, a question to ask
    /// elsewhere (the app's backend), whose answer must come within a
    /// bounded time. The node holds the message and what its connection
    /// sends after it until the answer is in; other connections go on.
    /// `None` (the default): there is nobody to ask.
    fn ask(&self, token: &str) -> Option<RemoteCheck> {
        let _ = token;
        None
    }
}

/// A verdict being fetched (see [`Authenticator::ask`]): a driver takes the
/// future, runs it aside and feeds its answer back as
/// [`crate::Input::Checked`].
#[derive(Clone)]
pub struct RemoteCheck(Arc<Mutex<Option<Question>>>);

/// The future a [`RemoteCheck`] holds.
pub type Question = Pin<Box<dyn Future<Output = Checked> + Send>>;

impl RemoteCheck {
    /// A question whose answer `future` gives.
    pub fn new(future: impl Future<Output = Checked> + Send + 'static) -> Self {
        Self(Arc::new(Mutex::new(Some(Box::pin(future)))))
    }

    /// The future, once (a clone taken later gets `None`).
    pub fn take(&self) -> Option<Question> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl std::fmt::Debug for RemoteCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteCheck")
    }
}

impl PartialEq for RemoteCheck {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for RemoteCheck {}
