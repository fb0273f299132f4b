//! Permission rules, as data: a recorded log replays with the same decisions.

use crate::ids::{DocId, PeerId};
use serde::{Deserialize, Serialize};

/// What a peer may do with a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// See the document: receive its data, find it in listings and announcements.
    pub read: bool,
    /// Change it: we import what the peer sends.
    pub write: bool,
    /// Create it by asking for or sending a document we do not have.
    pub create: bool,
    /// Delete it.
    pub delete: bool,
}

impl Access {
    /// Everything allowed.
    pub const ALL: Access = Access {
        read: true,
        write: true,
        create: true,
        delete: true,
    };
    /// Nothing allowed.
    pub const NONE: Access = Access {
        read: false,
        write: false,
        create: false,
        delete: false,
    };
    /// Read only.
    pub const READ: Access = Access {
        read: true,
        write: false,
        create: false,
        delete: false,
    };
}

/// Matches a peer or a document id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pattern {
    /// Anything.
    Any,
    /// Exactly this id.
    Exact(String),
    /// Ids starting with this text.
    Prefix(String),
}

impl Pattern {
    /// Whether an id matches.
    pub fn matches(&self, s: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(x) => s == x,
            Pattern::Prefix(p) => s.starts_with(p.as_str()),
        }
    }
}

/// What a token grants for documents matching a pattern (a signed token's
/// `docs` claim: the first matching entry decides, none matching: nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocRight {
    /// Which documents.
    pub doc: Pattern,
    /// What the holder may do with them.
    pub access: Access,
}

/// What a verified token says, resolved by the shell (signatures, key
/// files and clock skew stay outside the core): who the holder is, what it
/// may do and until when. Recorded as data, so a replay decides the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// The identity the token names (a JWT's `sub`); the hello must speak as it.
    pub peer: PeerId,
    /// Rights per document; `None`: the node's rules decide.
    pub rights: Option<Vec<DocRight>>,
    /// When it stops being valid, on the node's clock (the time `update`
    /// is given); the connection is closed then.
    pub expires: Option<crate::ids::Millis>,
    /// The token's id (a JWT's `jti`), for revocation and logs.
    pub id: Option<String>,
}

impl Credential {
    /// What the holder may do with `doc`, if the credential says.
    pub fn access(&self, doc: &DocId) -> Option<Access> {
        let rights = self.rights.as_ref()?;
        Some(
            rights
                .iter()
                .find(|r| r.doc.matches(doc.as_str()))
                .map_or(Access::NONE, |r| r.access),
        )
    }
}

/// What an operator revoked: signed tokens by id (`jti`) and identities by
/// peer id, whatever token they present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocations {
    /// Token ids.
    pub tokens: std::collections::BTreeSet<String>,
    /// Peer ids.
    pub peers: std::collections::BTreeSet<PeerId>,
}

impl Revocations {
    /// Why a peer presenting `credential` (if a signed token) is refused, if it is.
    pub fn refuses(&self, peer: &PeerId, credential: Option<&Credential>) -> Option<String> {
        if self.peers.contains(peer) {
            return Some(format!("token-revoked: the identity {peer} was revoked"));
        }
        let id = credential.and_then(|c| c.id.as_ref())?;
        self.tokens
            .contains(id)
            .then(|| format!("token-revoked: the token {id:?} was revoked"))
    }
}

/// The shell's verdict on a hello's signed token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The token is genuine and in force.
    Valid(Credential),
    /// It is not: why (a bad signature, expired, another audience, ...).
    Refused(String),
}

/// One rule: for peers and documents matching, this access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Which peers.
    pub peer: Pattern,
    /// Which documents.
    pub doc: Pattern,
    /// What they may do.
    pub access: Access,
}

/// An ordered rule list: the first rule matching both peer and document
/// decides; with none matching, `default` does. Stores are always trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// The rules, first match wins.
    pub rules: Vec<Rule>,
    /// Access when no rule matches.
    pub default: Access,
    /// Quotas that replace the server's own (`docweave serve` fills in
    /// what a rules file leaves out from its flags), read again with the
    /// rules; `None` keeps the quotas in force.
    #[serde(default)]
    pub quotas: Option<Box<crate::Quotas>>,
}

impl Default for Rules {
    fn default() -> Self {
        Self::allow_all()
    }
}

impl Rules {
    /// Every peer may do everything.
    pub fn allow_all() -> Self {
        Self {
            rules: Vec::new(),
            default: Access::ALL,
            quotas: None,
        }
    }

    /// Adds a rule after the existing ones.
    pub fn with(mut self, peer: Pattern, doc: Pattern, access: Access) -> Self {
        self.rules.push(Rule { peer, doc, access });
        self
    }

    /// What `peer` may do with `doc`.
    pub fn access(&self, peer: &PeerId, doc: &DocId) -> Access {
        self.rules
            .iter()
            .find(|r| r.peer.matches(peer.as_str()) && r.doc.matches(doc.as_str()))
            .map(|r| r.access)
            .unwrap_or(self.default)
    }
}

/// A token and the peer ids a client presenting it may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The secret.
    pub token: String,
    /// The peer ids it grants.
    pub peers: Pattern,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_rule_wins_then_default() {
        let rules = Rules {
            rules: vec![
                Rule {
                    peer: Pattern::Exact("eve".into()),
                    doc: Pattern::Any,
                    access: Access::NONE,
                },
                Rule {
                    peer: Pattern::Any,
                    doc: Pattern::Prefix("public/".into()),
                    access: Access::READ,
                },
            ],
            default: Access::ALL,
            quotas: None,
        };
        let eve = PeerId::new("eve");
        let bob = PeerId::new("bob");
        assert_eq!(rules.access(&eve, &DocId::new("public/a")), Access::NONE);
        assert_eq!(rules.access(&bob, &DocId::new("public/a")), Access::READ);
        assert_eq!(rules.access(&bob, &DocId::new("private")), Access::ALL);
    }
}
