//! `serve --auth-url URL`: for apps whose users hold session tokens (cookies)
//! rather than JWTs. A token the server knows nothing of is POSTed to the
//! app's backend as `{"token": "..."}`; the backend answers
//!
//! ```text
//! 200 {"sub": "alice", "docs": [{"doc": "team-7/*", "access": "rw"}],
//!      "ttl_s": 300, "exp": 1767225600, "jti": "session-42"}
//! 401 or 403 {"message": "why"}          (refused)
//! ```
//!
//! (`sub` required; `docs` as in a JWT's claim, else the rules decide;
//! `ttl_s` how long the answer may be kept, 60 s by default and an hour at
//! most; `exp` when the connection's credential ends; `jti` names it for
//! revocation.) Answers are kept for their TTL, refusals for 10 s, so a
//! client reconnecting does not ask again. The question runs aside: the
//! connection waits at most `--auth-timeout-ms` for it, others not at
//! all; a backend that is down, slow or answers nonsense gets the client a
//! clear refusal, never a hang.

use crate::jwt::{right, DocClaim};
use docweave_adapters::transport::{request_capped, HttpTarget};
use docweave_core::{Credential, DocRight, PeerId};
use docweave_shell::{Checked, RemoteCheck};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Answers kept at most (past it the one ending soonest goes).
const CACHED: usize = 10_000;
/// Questions out at once; past it a token is refused as "busy".
const IN_FLIGHT: usize = 64;
/// How long a refusal is kept.
const REFUSAL_KEPT: Duration = Duration::from_secs(10);
/// The longest an answer is kept, whatever it says.
const MOST_KEPT: Duration = Duration::from_secs(3600);
/// The largest answer read.
const MOST_ANSWER: usize = 64 * 1024;
/// How long past its TTL an answer still stands for a connection already
/// in, while it is asked again (its rights do not lapse in between).
const STALE_GRACE: Duration = Duration::from_secs(600);

/// The backend's answer to a token it accepts.
#[derive(Deserialize)]
struct Vouched {
    sub: String,
    #[serde(default)]
    docs: Option<Vec<DocClaim>>,
    #[serde(default)]
    ttl_s: Option<u64>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    jti: Option<String>,
}

struct Kept {
    checked: Checked,
    until: Instant,
    /// When the credential ends, seconds since 1970.
    exp: Option<u64>,
}

/// Asks the app's backend about tokens, keeping its answers.
pub struct AuthUrl {
    target: HttpTarget,
    path: String,
    timeout: Duration,
    kept: Mutex<BTreeMap<String, Kept>>,
    in_flight: Arc<Mutex<usize>>,
    /// Tokens asked about again in the background now.
    refreshing: Mutex<std::collections::BTreeSet<String>>,
}

impl AuthUrl {
    /// For `url` (`http://` or `https://`), waiting at most `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Arc<Self>, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("--auth-url {url:?} is not an http:// or https:// URL"))?;
        let (addr, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let target = crate::client::http_target(&format!("{scheme}://{addr}"))?
            .ok_or_else(|| format!("--auth-url {url:?} is not an http:// or https:// URL"))?;
        Ok(Arc::new(Self {
            target,
            path: path.to_string(),
            timeout,
            kept: Mutex::new(BTreeMap::new()),
            in_flight: Arc::new(Mutex::new(0)),
            refreshing: Mutex::new(Default::default()),
        }))
    }

    /// The kept answer on `token`, if it is still good.
    pub fn kept(&self, token: &str) -> Option<Checked> {
        self.kept_at_most(token, Duration::ZERO)
    }

    /// The answer on `token` for a connection asking to be let in: a kept
    /// one still within its TTL, or a refusal as pending while the backend
    /// is asked (so the client's next try finds the answer).
    pub fn admit(self: &Arc<Self>, token: &str) -> Checked {
        self.kept(token).unwrap_or_else(|| {
            self.ask_aside(token);
            Checked::Refused(
                "auth-pending: the app's backend is being asked about this token; try again".into(),
            )
        })
    }

    /// The answer on `token` for a connection already let in: one past its
    /// TTL still stands while the backend is asked again (its rights do not
    /// lapse meanwhile); with none kept, as [`Self::admit`].
    pub fn standing(self: &Arc<Self>, token: &str) -> Checked {
        if let Some(fresh) = self.kept(token) {
            return fresh;
        }
        match self.kept_at_most(token, STALE_GRACE) {
            Some(stale) => {
                self.ask_aside(token);
                stale
            }
            None => self.admit(token),
        }
    }

    /// Asks the backend about `token` in the background, once at a time.
    fn ask_aside(self: &Arc<Self>, token: &str) {
        let first = self
            .refreshing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.to_string());
        if !first {
            return;
        }
        let (me, token) = (self.clone(), token.to_string());
        smol::spawn(async move {
            // The answer is kept by `fetch`; nobody waits for it here.
            let _answer = me.fetch(token.clone()).await;
            me.refreshing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&token);
        })
        .detach();
    }

    fn kept_at_most(&self, token: &str, past_ttl: Duration) -> Option<Checked> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let k = kept.get(token).filter(|k| k.until + past_ttl > now)?;
        Some(match (&k.checked, k.exp) {
            (Checked::Valid { credential, .. }, Some(exp)) => Checked::Valid {
                credential: credential.clone(),
                lifetime_ms: Some(exp.saturating_sub(crate::jwt::now_s()).saturating_mul(1000)),
            },
            (checked, _) => checked.clone(),
        })
    }

    /// The question about `token`, answered within the timeout.
    pub fn ask(self: &Arc<Self>, token: &str) -> RemoteCheck {
        let (me, token) = (self.clone(), token.to_string());
        RemoteCheck::new(async move { me.fetch(token).await })
    }

    async fn fetch(&self, token: String) -> Checked {
        {
            let mut n = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            if *n >= IN_FLIGHT {
                return Checked::Refused("the app's backend is busy; try again".into());
            }
            *n += 1;
        }
        let asked = self.post(&token);
        let timeout = async {
            smol::Timer::after(self.timeout).await;
            Err(format!("no answer within {} ms", self.timeout.as_millis()))
        };
        let answer = futures_lite::future::or(asked, timeout).await;
        *self.in_flight.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        match answer.and_then(|(status, body)| verdict(status, &body)) {
            Ok((checked, keep, exp)) => {
                self.keep(token, checked.clone(), keep, exp);
                checked
            }
            Err(why) => {
                tracing::warn!("--auth-url: {why}");
                Checked::Refused(
                    "the app's backend could not vouch for the token now; try again".into(),
                )
            }
        }
    }

    async fn post(&self, token: &str) -> Result<(u16, Vec<u8>), String> {
        let body = serde_json::json!({ "token": token })
            .to_string()
            .into_bytes();
        let headers = [("content-type", "application/json")];
        request_capped(
            "POST",
            &self.target,
            &self.path,
            &headers,
            body,
            MOST_ANSWER,
        )
        .await
        .map_err(|e| format!("no answer from {}: {e}", self.target.addr))
    }

    fn keep(&self, token: String, checked: Checked, keep: Duration, exp: Option<u64>) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        kept.retain(|_, k| k.until + STALE_GRACE > now);
        if kept.len() >= CACHED {
            let soonest = kept
                .iter()
                .min_by_key(|(_, k)| k.until)
                .map(|(t, _)| t.clone());
            if let Some(t) = soonest {
                kept.remove(&t);
            }
        }
        let until = now + keep;
        kept.insert(
            token,
            Kept {
                checked,
                until,
                exp,
            },
        );
    }
}

/// The verdict an answer gives, how long to keep it and when the
/// credential ends; an answer that is neither yes nor no is an error.
fn verdict(status: u16, body: &[u8]) -> Result<(Checked, Duration, Option<u64>), String> {
    match status {
        200 => {
            let v: Vouched = serde_json::from_slice(body)
                .map_err(|e| format!("the backend's answer is not the JSON expected: {e}"))?;
            let peer = PeerId::parse(&v.sub)
                .map_err(|e| format!("the backend's sub is not a usable peer id: {e}"))?;
            let rights = match v.docs {
                Some(docs) => Some(
                    docs.iter()
                        .map(right)
                        .collect::<Result<Vec<DocRight>, String>>()?,
                ),
                None => None,
            };
            let now = crate::jwt::now_s();
            if v.exp.is_some_and(|exp| exp <= now) {
                let why = "the app's backend says this session has expired";
                return Ok((Checked::Refused(why.into()), REFUSAL_KEPT, None));
            }
            let mut keep = Duration::from_secs(v.ttl_s.unwrap_or(60)).min(MOST_KEPT);
            if let Some(exp) = v.exp {
                keep = keep.min(Duration::from_secs(exp - now));
            }
            let checked = Checked::Valid {
                credential: Credential {
                    peer,
                    rights,
                    expires: None,
                    id: v.jti,
                },
                lifetime_ms: v.exp.map(|exp| (exp - now).saturating_mul(1000)),
            };
            Ok((checked, keep, v.exp))
        }
        401 | 403 => {
            let said = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["message"].as_str().map(|m| m.chars().take(200).collect()))
                .unwrap_or_else(|| "no reason given".to_string());
            let why = format!("the app's backend refused the token: {said}");
            Ok((Checked::Refused(why), REFUSAL_KEPT, None))
        }
        other => Err(format!("the backend answered {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_verdicts_and_nonsense_is_an_error() {
        let (checked, keep, _) = verdict(
            200,
            br#"{"sub": "alice", "docs": [{"doc": "team/*", "access": "rw"}], "ttl_s": 5}"#,
        )
        .unwrap();
        assert_eq!(keep, Duration::from_secs(5));
        let Checked::Valid { credential, .. } = checked else {
            panic!("refused");
        };
        assert_eq!(credential.peer.as_str(), "alice");
        assert_eq!(credential.rights.map(|r| r.len()), Some(1));
        let (refused, _, _) = verdict(403, br#"{"message": "signed out"}"#).unwrap();
        assert!(matches!(refused, Checked::Refused(why) if why.contains("signed out")));
        assert!(verdict(500, b"").is_err());
        assert!(verdict(200, b"not json").is_err());
        assert!(verdict(200, br#"{"sub": ""}"#).is_err());
    }
}
