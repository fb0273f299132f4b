//! Peer ids for Loro-protocol connections (`ws://.../loro`), from the token
//! of their first join: a token granted to one peer id speaks as that peer;
//! a token granted to a prefix, any token, or none on an open server gets a
//! fresh id per connection, so two browser tabs never replace each other.

use docweave_adapters::loro_protocol::Identity;
use docweave_core::{Pattern, PeerId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The identity function for `serve`'s grants (`granted`: whom a token
/// grants, as the grants are now).
pub fn identity(granted: impl Fn(&str) -> Option<Pattern> + Send + Sync + 'static) -> Identity {
    // A per-process tag keeps ids from one run apart from a native client
    // that happens to call itself `loro-1`.
    let mut tag = [0u8; 4];
    let _ = getrandom::fill(&mut tag);
    let tag = u32::from_le_bytes(tag);
    let next = AtomicU64::new(1);
    Arc::new(move |token: Option<&str>| {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let fresh = |prefix: &str| PeerId::new(&format!("{prefix}loro-{tag:08x}-{n}"));
        match token.and_then(&granted) {
            Some(Pattern::Exact(peer)) => PeerId::new(&peer),
            Some(Pattern::Prefix(prefix)) => fresh(&prefix),
            Some(Pattern::Any) | None => fresh(""),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use docweave_core::Grant;

    #[test]
    fn a_granted_token_names_its_peer_and_others_get_fresh_ids() {
        let grants = [
            Grant {
                token: "a".into(),
                peers: Pattern::Exact("alice".into()),
            },
            Grant {
                token: "t".into(),
                peers: Pattern::Prefix("team-".into()),
            },
        ];
        let id = identity(move |t| {
            grants
                .iter()
                .find(|g| g.token == t)
                .map(|g| g.peers.clone())
        });
        assert_eq!(id(Some("a")).as_str(), "alice");
        assert!(id(Some("t")).as_str().starts_with("team-loro-"));
        let (x, y) = (id(None), id(None));
        assert_ne!(x, y);
        assert!(x.is_valid() && y.is_valid());
    }
}
