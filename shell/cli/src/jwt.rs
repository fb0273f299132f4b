//! Signed tokens (JWTs) for `serve`: the keys they may be signed with, and
//! the check of one token, which turns it into a credential for the core
//! (identity, rights per document, lifetime). The signature, the keys and
//! the clock are checked here, outside the pure core.
//!
//! A token's claims: `sub` is the peer id (required), `exp` (required) and
//! `nbf` are checked with a leeway, `aud`/`iss` when configured, `jti`
//! names the token, and `docs` lists rights per document pattern:
//! `[{"doc": "team-7/*", "access": "rw"}]` (`r` read, `w` write, `c`
//! create, `d` delete; `*` at the end of a pattern matches any rest). With
//! no `docs` claim, the server's rules decide.
//!
//! Each key is pinned to its algorithm family (an HMAC secret verifies only
//! HS256/384/512, an RSA key only RS/PS, ...): a token cannot pick a weaker
//! check by naming another algorithm, and `alg: none` is no algorithm at all.

use docweave_core::{Access, Credential, DocRight, Pattern, PeerId};
use docweave_shell::Checked;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
use serde::Deserialize;
use std::path::Path;

/// Longest token looked at (as the frame decoder bounds a hello's); a
/// longer one is refused before it is parsed.
const MAX_TOKEN: usize = 4 * 1024;

/// One key tokens may be signed with.
struct Key {
    /// Its name (`kid`), if it has one.
    id: Option<String>,
    key: DecodingKey,
}

/// What signed tokens `serve` accepts.
pub struct JwtVerifier {
    keys: Vec<Key>,
    audience: Option<String>,
    issuer: Option<String>,
    leeway_s: u64,
    /// Tokens found valid, with the time (s) they are valid until: a token
    /// is checked at a hello and again at each Loro join of the connection,
    /// and a public-key signature costs a third of a millisecond.
    valid: std::sync::Mutex<std::collections::HashMap<String, (Credential, u64)>>,
}

/// Valid tokens remembered at most; past it the memory starts afresh.
const REMEMBERED: usize = 4096;

/// Where the keys come from and what else is checked.
#[derive(Default)]
pub struct JwtConfig {
    /// The HMAC secret (HS256/384/512).
    pub secret: Option<Vec<u8>>,
    /// PEM public keys (RSA, EC or Ed25519), each `[KID=]PATH`.
    pub public_keys: Vec<String>,
    /// A JWKS file (`{"keys": [...]}`), keys picked by `kid`.
    pub jwks: Option<std::path::PathBuf>,
    /// The `aud` a token must carry.
    pub audience: Option<String>,
    /// The `iss` a token must carry.
    pub issuer: Option<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway_s: u64,
}

impl JwtConfig {
    /// Whether any key is given (else signed tokens are off).
    pub fn has_keys(&self) -> bool {
        self.secret.is_some() || !self.public_keys.is_empty() || self.jwks.is_some()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    docs: Option<Vec<DocClaim>>,
}

/// One entry of a `docs` list: a document pattern and letters of `rwcd`.
#[derive(Deserialize)]
pub struct DocClaim {
    /// The pattern: an id, or a prefix ending in `*`.
    pub doc: String,
    /// Letters of `rwcd`.
    pub access: String,
}

impl JwtVerifier {
    /// Reads the keys; a key file that cannot be read or parsed is an
    /// error naming the file (never the key).
    pub fn load(config: JwtConfig) -> Result<Self, String> {
        let mut keys = Vec::new();
        if let Some(secret) = &config.secret {
            if secret.len() < 32 {
                return Err(
                    "the JWT secret is shorter than 32 bytes; use a longer random one".into(),
                );
            }
            let key = DecodingKey::from_secret(secret)
                .map_err(|e| format!("the JWT secret cannot be used: {e}"))?;
            keys.push(Key { id: None, key });
        }
        for given in &config.public_keys {
            let (id, path) = match given.split_once('=') {
                Some((id, path)) if !id.is_empty() && !id.contains('/') => {
                    (Some(id.to_string()), path)
                }
                _ => (None, given.as_str()),
            };
            let pem =
                std::fs::read(path).map_err(|e| format!("cannot read the key {path}: {e}"))?;
            keys.push(Key {
                id,
                key: pem_key(&pem).map_err(|e| format!("{path}: {e}"))?,
            });
        }
        if let Some(path) = &config.jwks {
            keys.extend(jwks(path)?);
        }
        Ok(Self {
            keys,
            audience: config.audience,
            issuer: config.issuer,
            leeway_s: config.leeway_s,
            valid: Default::default(),
        })
    }

    /// The verdict on one token, judged at `now_s` (seconds since 1970).
    pub fn verify(&self, token: &str, now_s: u64) -> Checked {
        let valid = self.valid.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((credential, until_s)) = valid.get(token) {
            if now_s < *until_s {
                return Checked::Valid {
                    credential: credential.clone(),
                    lifetime_ms: Some((until_s - now_s).saturating_mul(1000)),
                };
            }
        }
        drop(valid);
        let checked = self.verify_signature(token, now_s);
        if let Checked::Valid {
            credential,
            lifetime_ms: Some(ms),
        } = &checked
        {
            let mut valid = self.valid.lock().unwrap_or_else(|p| p.into_inner());
            if valid.len() >= REMEMBERED {
                valid.clear();
            }
            valid.insert(token.to_string(), (credential.clone(), now_s + ms / 1000));
        }
        checked
    }

    /// [`JwtVerifier::verify`] without the memory of valid tokens: the
    /// signature and every claim checked.
    pub fn verify_signature(&self, token: &str, now_s: u64) -> Checked {
        match self.credential(token, now_s) {
            Ok(checked) => checked,
            Err(why) => Checked::Refused(why),
        }
    }

    fn credential(&self, token: &str, now_s: u64) -> Result<Checked, String> {
        if token.len() > MAX_TOKEN {
            return Err(format!("the token is longer than {MAX_TOKEN} bytes"));
        }
        // An unknown `alg` (`none` among them) fails here, as a header.
        let header = decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::Json(_) => {
                "the token's header is not JSON naming an algorithm accepted here".to_string()
            }
            other => refusal(other),
        })?;
        let candidates: Vec<&Key> = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| k.id.as_deref() == Some(kid.as_str()))
                .collect(),
            None => self.keys.iter().collect(),
        };
        let fitting: Vec<&Key> = candidates
            .into_iter()
            .filter(|k| k.key.family().algorithms().contains(&header.alg))
            .collect();
        if fitting.is_empty() {
            return Err(match &header.kid {
                Some(kid) => format!(
                    "no key named {:?} verifies {:?} tokens here",
                    shortened(kid),
                    header.alg
                ),
                None => format!("no key here verifies {:?} tokens", header.alg),
            });
        }
        let mut last = String::new();
        for key in fitting {
            let mut v = Validation::new(header.alg);
            v.algorithms = key.key.family().algorithms().to_vec();
            v.leeway = self.leeway_s;
            v.validate_nbf = true;
            v.set_required_spec_claims(&["exp", "sub"]);
            match &self.audience {
                Some(a) => v.set_audience(&[a]),
                None => v.validate_aud = false,
            }
            if let Some(i) = &self.issuer {
                v.set_issuer(&[i]);
                v.required_spec_claims.insert("iss".into());
            }
            match decode::<Claims>(token, &key.key, &v) {
                Ok(data) => return self.checked(data.claims, now_s),
                // Another key of the same family may have signed it.
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {
                    last = refusal(e.kind());
                }
                Err(e) => return Err(refusal(e.kind())),
            }
        }
        Err(last)
    }

    fn checked(&self, claims: Claims, now_s: u64) -> Result<Checked, String> {
        let peer = PeerId::parse(&claims.sub)
            .map_err(|e| format!("the token's sub is not a usable peer id: {e}"))?;
        let rights = match claims.docs {
            Some(docs) => Some(
                docs.iter()
                    .map(right)
                    .collect::<Result<Vec<DocRight>, String>>()?,
            ),
            None => None,
        };
        let until_s = claims.exp.saturating_add(self.leeway_s);
        Ok(Checked::Valid {
            credential: Credential {
                peer,
                rights,
                expires: None,
                id: claims.jti,
            },
            lifetime_ms: Some(until_s.saturating_sub(now_s).saturating_mul(1000)),
        })
    }
}

/// Whether `token` has the shape of a JWT (header.payload.signature).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

/// Seconds since 1970 by the system clock.
pub fn now_s() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// The identity a JWT names (its `sub`), read without checking the
/// signature: for a client choosing its peer id from its own token.
pub fn subject(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Sub {
        sub: String,
    }
    let claims: Sub = jsonwebtoken::dangerous::insecure_decode_claims(token).ok()?;
    Some(claims.sub)
}

fn pem_key(pem: &[u8]) -> Result<DecodingKey, String> {
    DecodingKey::from_rsa_pem(pem)
        .or_else(|_| DecodingKey::from_ec_pem(pem))
        .or_else(|_| DecodingKey::from_ed_pem(pem))
        .map_err(|_| "not an RSA, EC or Ed25519 public key in PEM".to_string())
}

fn jwks(path: &Path) -> Result<Vec<Key>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the JWKS {}: {e}", path.display()))?;
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not a JWKS (JSON with a \"keys\" list): {e}",
            path.display()
        )
    })?;
    set.keys
        .iter()
        .map(|jwk| {
            let key = DecodingKey::from_jwk(jwk).map_err(|e| {
                format!(
                    "{}: the key {:?} cannot be used: {e}",
                    path.display(),
                    jwk.common.key_id
                )
            })?;
            Ok(Key {
                id: jwk.common.key_id.clone(),
                key,
            })
        })
        .collect()
}

/// One entry of a `docs` claim.
pub fn right(claim: &DocClaim) -> Result<DocRight, String> {
    let doc = match claim.doc.strip_suffix('*') {
        Some("") => Pattern::Any,
        Some(prefix) => Pattern::Prefix(prefix.to_string()),
        None => Pattern::Exact(claim.doc.clone()),
    };
    let mut access = Access::NONE;
    for c in claim.access.chars() {
        match c {
            'r' => access.read = true,
            'w' => access.write = true,
            'c' => access.create = true,
            'd' => access.delete = true,
            other => {
                return Err(format!(
                    "the docs claim gives {:?} the access {other:?}; use letters of \"rwcd\"",
                    shortened(&claim.doc)
                ))
            }
        }
    }
    Ok(DocRight { doc, access })
}

/// What a client is told about a refused token: the reason, never the token.
fn refusal(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "token-expired: the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
        ErrorKind::InvalidAudience => "the token is for another audience (aud)".into(),
        ErrorKind::InvalidIssuer => "the token is from another issuer (iss)".into(),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "the token's algorithm is not accepted for its key".into()
        }
        ErrorKind::MissingRequiredClaim(c) => format!("the token has no {c} claim"),
        ErrorKind::InvalidClaimFormat(c) => format!("the token's {c} claim is malformed"),
        ErrorKind::Json(_) => "the token's claims are not the JSON expected".into(),
        _ => "the token is not a well-formed JWT".into(),
    }
}

/// A client-given string cut short for a message.
fn shortened(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

    const SECRET: &[u8] = b"unit-test-secret-unit-test-secret-0123";

    fn verifier() -> JwtVerifier {
        JwtVerifier::load(JwtConfig {
            secret: Some(SECRET.to_vec()),
            ..JwtConfig::default()
        })
        .unwrap()
    }

    fn token(claims: serde_json::Value) -> String {
        let key = EncodingKey::from_secret(SECRET).unwrap();
        encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    }

    #[test]
    fn a_remembered_token_keeps_its_expiry_and_rights() {
        let v = verifier();
        let now = now_s();
        let t = token(serde_json::json!({
            "sub": "alice", "exp": now + 100,
            "docs": [{"doc": "team/*", "access": "rw"}, {"doc": "*", "access": ""}],
        }));
        let first = v.verify(&t, now);
        let later = v.verify(&t, now + 40);
        let (
            Checked::Valid {
                credential,
                lifetime_ms: Some(a),
            },
            Checked::Valid {
                lifetime_ms: Some(b),
                ..
            },
        ) = (first, later)
        else {
            panic!("not valid");
        };
        assert_eq!((a, b), (100_000, 60_000));
        let rights = credential.rights.unwrap();
        assert_eq!(rights[0].doc, Pattern::Prefix("team/".into()));
        assert_eq!(rights[1].doc, Pattern::Any);
        assert_eq!(rights[1].access, Access::NONE);
        // Past its expiry it is not remembered as valid.
        assert!(!matches!(
            v.verify(&t, now + 200),
            Checked::Valid { lifetime_ms: Some(ms), .. } if ms > 0
        ));
    }

    #[test]
    fn a_token_without_exp_or_sub_is_refused() {
        let v = verifier();
        for claims in [
            serde_json::json!({ "sub": "alice" }),
            serde_json::json!({ "exp": now_s() + 100 }),
        ] {
            assert!(matches!(
                v.verify(&token(claims), now_s()),
                Checked::Refused(_)
            ));
        }
    }
}
