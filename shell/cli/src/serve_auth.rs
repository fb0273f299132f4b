//! Who may connect to `serve`, in one place: its static tokens and grants,
//! its rules and its signed-token keys, turned into what each entry point
//! needs (the node's token checker, the Loro bridge's join checks, the
//! status page's viewer). The same token means the same identity and rights
//! at every entry point.

use crate::jwt::{looks_like_jwt, now_s, JwtConfig, JwtVerifier};
use docweave_adapters::loro_protocol::{AccessCheck, Identity, TokenCheck};
use docweave_adapters::transport::PeerOfToken;
use docweave_core::{Access, Credential, DocId, Grant, Pattern, PeerId, Revocations, Rules};
use docweave_shell::{Authenticator, Checked, RemoteCheck};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// Options of `serve` for signed tokens (JWTs).
#[derive(clap::Args)]
pub struct JwtArgs {
    /// A file holding the HMAC secret of HS256 tokens (at least 32 bytes;
    /// a final newline is ignored). Or the secret itself in
    /// `DOCWEAVE_JWT_SECRET`. Never on the command line, where `ps` shows it.
    #[arg(long, env = "DOCWEAVE_JWT_SECRET_FILE")]
    jwt_secret_file: Option<PathBuf>,
    /// A PEM public key of RS256/ES256/EdDSA tokens, as `PATH` or `KID=PATH`
    /// (then only tokens naming that `kid` use it). Repeatable, so keys can
    /// rotate.
    #[arg(long = "jwt-public-key")]
    jwt_public_keys: Vec<String>,
    /// A JWKS file (`{"keys": [...]}`) of public keys, picked by `kid`.
    #[arg(long, env = "DOCWEAVE_JWKS_FILE")]
    jwks_file: Option<PathBuf>,
    /// The audience (`aud`) a token must name.
    #[arg(long, env = "DOCWEAVE_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// The issuer (`iss`) a token must name.
    #[arg(long, env = "DOCWEAVE_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Seconds of clock skew allowed when checking `exp` and `nbf`.
    #[arg(long, default_value_t = 30)]
    jwt_leeway_s: u64,
}

impl JwtArgs {
    /// The verifier these options describe, if any key is given.
    fn verifier(&self) -> Result<Option<JwtVerifier>, String> {
        let secret = match (&self.jwt_secret_file, std::env::var("DOCWEAVE_JWT_SECRET")) {
            (Some(path), _) => {
                let mut bytes = std::fs::read(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
                    bytes.pop();
                }
                Some(bytes)
            }
            (None, Ok(s)) if !s.is_empty() => Some(s.into_bytes()),
            _ => None,
        };
        let config = JwtConfig {
            secret,
            public_keys: self.jwt_public_keys.clone(),
            jwks: self.jwks_file.clone(),
            audience: self.jwt_audience.clone(),
            issuer: self.jwt_issuer.clone(),
            leeway_s: self.jwt_leeway_s,
        };
        if !config.has_keys() {
            return Ok(None);
        }
        JwtVerifier::load(config).map(Some)
    }
}

/// The static tokens (`--token`, `--tokens-file`): each grants any peer
/// id, or (a grant) some.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Statics {
    /// Tokens that grant any peer id.
    pub tokens: Vec<String>,
    /// Tokens that grant some peer ids.
    pub grants: Vec<Grant>,
}

impl Statics {
    /// Parses `--token` values (`SECRET`, `PEER=SECRET`, `PREFIX*=SECRET`).
    pub fn parse<'a>(given: impl IntoIterator<Item = &'a str>) -> Self {
        let mut statics = Self::default();
        for t in given.into_iter().filter(|t| !t.is_empty()) {
            match t.split_once('=') {
                Some((peer, token)) if !peer.is_empty() && !token.is_empty() => {
                    let peers = match peer.strip_suffix('*') {
                        Some(prefix) => docweave_core::Pattern::Prefix(prefix.to_string()),
                        None => docweave_core::Pattern::Exact(peer.to_string()),
                    };
                    statics.grants.push(Grant {
                        token: token.to_string(),
                        peers,
                    });
                }
                _ => statics.tokens.push(t.to_string()),
            }
        }
        statics
    }

    /// A `--tokens-file`: one `--token` value per line, `#` starts a
    /// comment. An empty file is refused: it is most likely being written
    /// (a list that lets nobody in says so in a comment).
    pub fn parse_file(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err(
                "the file is empty (being written?); to let nobody in, write a comment".into(),
            );
        }
        Ok(Self::parse(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or("").trim()),
        ))
    }

    /// These and `more`.
    pub fn and(mut self, more: &Statics) -> Self {
        self.tokens.extend(more.tokens.iter().cloned());
        self.grants.extend(more.grants.iter().cloned());
        self
    }

    fn holds(&self, token: &str) -> bool {
        self.tokens.iter().any(|t| t == token) || self.grants.iter().any(|g| g.token == token)
    }
}

/// Everything `serve` knows about who may do what.
#[derive(Clone)]
pub struct ServeAuth {
    /// The static tokens, kept current (`--tokens-file` is read again).
    pub statics: Arc<RwLock<Statics>>,
    /// The rules for peers whose token carries no rights of its own (kept
    /// current when `--rules` is read again).
    pub rules: Arc<RwLock<Rules>>,
    /// Signed tokens, when keys are configured.
    pub jwt: Option<Arc<JwtVerifier>>,
    /// What the operator revoked (`--revoked-file`), kept current.
    pub revoked: Arc<RwLock<Revocations>>,
    /// The app's backend, asked about other tokens (`--auth-url`).
    pub auth_url: Option<Arc<crate::auth_url::AuthUrl>>,
    /// Every connection needs a token, even while the static ones are
    /// none (`--tokens-file` can empty them: then nobody gets in).
    pub tokens_required: bool,
    /// Tokens this process made for its own links into the node (its
    /// webhooks), each with what it grants; never given out.
    pub internal: Arc<Vec<(String, Credential)>>,
}

/// A signed token or the app's backend naming one of the server's own
/// peers (its webhooks') is refused: only the server's own tokens speak as
/// them, so no client can act as a hook.
fn not_our_own(checked: Checked) -> Checked {
    match checked {
        Checked::Valid { credential, .. }
            if credential
                .peer
                .as_str()
                .starts_with(crate::webhooks::PEER_PREFIX) =>
        {
            Checked::Refused(format!(
                "peer ids starting with {:?} are this server's own",
                crate::webhooks::PEER_PREFIX
            ))
        }
        checked => checked,
    }
}

/// The token checker `serve` gives the node: static tokens are the node's
/// business; a token shaped like a JWT goes to the keys (when there are
/// keys); any other to the app's backend (when there is one).
struct ServeAuthenticator(ServeAuth);

impl Authenticator for ServeAuthenticator {
    fn check(&self, token: &str) -> Option<Checked> {
        let auth = &self.0;
        if let Some(credential) = auth.internal_credential(token) {
            return Some(Checked::Valid {
                credential,
                lifetime_ms: None,
            });
        }
        if auth.is_static(token) {
            return None;
        }
        let checked = match (&auth.jwt, &auth.auth_url) {
            (Some(jwt), _) if looks_like_jwt(token) => jwt.verify(token, now_s()),
            (_, Some(backend)) => backend.kept(token)?,
            _ => return None,
        };
        Some(not_our_own(checked))
    }

    fn ask(&self, token: &str) -> Option<RemoteCheck> {
        let auth = &self.0;
        if auth.internal_credential(token).is_some()
            || auth.is_static(token)
            || (auth.jwt.is_some() && looks_like_jwt(token))
        {
            return None;
        }
        auth.auth_url.as_ref().map(|backend| backend.ask(token))
    }
}

impl ServeAuth {
    /// From the parsed static options and the JWT options.
    pub fn new(
        statics: Statics,
        rules: Rules,
        jwt: &JwtArgs,
        auth_url: Option<Arc<crate::auth_url::AuthUrl>>,
    ) -> Result<Self, String> {
        Ok(Self {
            auth_url,
            tokens_required: false,
            statics: Arc::new(RwLock::new(statics)),
            rules: Arc::new(RwLock::new(rules)),
            jwt: jwt.verifier()?.map(Arc::new),
            revoked: Arc::default(),
            internal: Arc::default(),
        })
    }

    /// What one of this process's own tokens grants, if `token` is one
    /// (compared in constant time: it is a secret).
    fn internal_credential(&self, token: &str) -> Option<Credential> {
        use subtle::ConstantTimeEq;
        self.internal
            .iter()
            .find(|(t, _)| bool::from(t.as_bytes().ct_eq(token.as_bytes())))
            .map(|(_, c)| c.clone())
    }

    /// The static tokens now.
    fn statics(&self) -> std::sync::RwLockReadGuard<'_, Statics> {
        self.statics.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a connection presenting `token` (not a signed one) is let
    /// in: on an open server, or with a static token.
    fn admits_unsigned(&self, token: Option<&str>) -> bool {
        let statics = self.statics();
        let open = self.open() && *statics == Statics::default();
        open || token.is_some_and(|t| statics.holds(t))
    }

    /// Whether a client without a token is turned away.
    pub fn requires_token(&self) -> bool {
        !self.admits_unsigned(None)
    }

    /// Whether nothing but the static tokens (if any) guards the server.
    pub fn open(&self) -> bool {
        self.jwt.is_none() && self.auth_url.is_none() && !self.tokens_required
    }

    /// Whether `token` is one of the static ones.
    fn is_static(&self, token: &str) -> bool {
        self.statics().holds(token)
    }

    /// The verdict on a token that is not a static one, for letting its
    /// holder in: a signed token's, or what the app's backend said of it
    /// (`--auth-url`, see `AuthUrl::admit`). `None` when neither applies.
    pub fn signed(&self, token: &str) -> Option<Checked> {
        self.verdict(token, false)
    }

    /// [`Self::signed`] for a connection already in: the backend's answer
    /// stands a while past its TTL while it is asked again.
    fn standing(&self, token: &str) -> Option<Checked> {
        self.verdict(token, true)
    }

    fn verdict(&self, token: &str, already_in: bool) -> Option<Checked> {
        if self.is_static(token) {
            return None;
        }
        let checked = match (&self.jwt, &self.auth_url) {
            (Some(jwt), _) if looks_like_jwt(token) => jwt.verify(token, now_s()),
            (_, Some(backend)) if already_in => backend.standing(token),
            (_, Some(backend)) => backend.admit(token),
            _ => return None,
        };
        Some(match not_our_own(checked) {
            Checked::Valid { credential, .. } if self.revokes(&credential) => {
                Checked::Refused("token-revoked: this token or its holder was revoked".into())
            }
            checked => checked,
        })
    }

    /// Whether the operator revoked this credential or its holder.
    fn revokes(&self, credential: &Credential) -> bool {
        let list = self.revoked.read().unwrap_or_else(|p| p.into_inner());
        list.refuses(&credential.peer, Some(credential)).is_some()
    }

    /// The node's token checker, when signed tokens are on.
    pub fn authenticator(&self) -> Option<Arc<dyn Authenticator>> {
        if self.jwt.is_none() && self.auth_url.is_none() && self.internal.is_empty() {
            return None;
        }
        Some(Arc::new(ServeAuthenticator(self.clone())))
    }

    /// Whether the node would take a Loro join's token, or why not.
    pub fn loro_accepts(&self) -> TokenCheck {
        let auth = self.clone();
        Arc::new(move |token: Option<&str>| match token {
            None if auth.admits_unsigned(None) => Ok(()),
            None => Err("this server requires a token".into()),
            Some(t) => match auth.signed(t) {
                Some(Checked::Valid { .. }) => Ok(()),
                Some(Checked::Refused(why)) => Err(format!("the token was refused: {why}")),
                None if auth.admits_unsigned(Some(t)) => Ok(()),
                None => Err("the token was not accepted".into()),
            },
        })
    }

    /// The peer id an HTTP request (a listener's, the document API's)
    /// speaks as when it names none: a signed token's `sub`, or the one
    /// peer a static token grants (`PEER=SECRET`). The node checks the
    /// token allows it, as for any hello.
    pub fn peer_of_token(&self) -> PeerOfToken {
        let grants = self.statics.clone();
        Arc::new(move |token: &str| {
            if looks_like_jwt(token) {
                return crate::jwt::subject(token);
            }
            let statics = grants.read().unwrap_or_else(|p| p.into_inner());
            statics
                .grants
                .iter()
                .find(|g| g.token == token)
                .and_then(|g| match &g.peers {
                    Pattern::Exact(peer) => Some(peer.clone()),
                    _ => None,
                })
        })
    }

    /// The peer id of a Loro connection: a signed token's `sub`, else what
    /// the static grants say.
    pub fn loro_identity(&self) -> Identity {
        let grants = self.statics.clone();
        let statics = crate::loro_identity::identity(move |token| {
            let statics = grants.read().unwrap_or_else(|p| p.into_inner());
            statics
                .grants
                .iter()
                .find(|g| g.token == token)
                .map(|g| g.peers.clone())
        });
        let auth = self.clone();
        Arc::new(
            move |token: Option<&str>| match token.and_then(|t| auth.signed(t)) {
                Some(Checked::Valid { credential, .. }) => credential.peer,
                _ => statics(token),
            },
        )
    }

    /// What a Loro connection's peer may do with a room's document.
    pub fn loro_access(&self) -> AccessCheck {
        let auth = self.clone();
        Arc::new(move |peer: &PeerId, token: Option<&str>, doc: &DocId| {
            auth.access(peer, token, doc)
        })
    }

    /// What `peer`, connected with `token`, may do with `doc`.
    pub fn access(&self, peer: &PeerId, token: Option<&str>, doc: &DocId) -> Access {
        let rules = || {
            self.rules
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .access(peer, doc)
        };
        match token.and_then(|t| self.standing(t)) {
            Some(Checked::Valid { credential, .. }) => credential.access(doc).unwrap_or_else(rules),
            Some(Checked::Refused(_)) => Access::NONE,
            // A static token withdrawn since (`--tokens-file`) gives nothing.
            None if self.admits_unsigned(token) => rules(),
            None => Access::NONE,
        }
    }
}
