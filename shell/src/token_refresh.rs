//! Tokens kept fresh: an app hands [`crate::Repo::keep_token_fresh`] a
//! provider (a callback that returns a new token, from its backend say),
//! and the repository asks it again before the token in use expires and
//! presents the new one on the live connection (`reauth`). A signed token
//! (JWT) is replaced when 80% of its lifetime has passed, read from its
//! `exp` claim (unverified: verifying is the server's business); any other
//! token every five minutes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A provider that failed is asked again after this long.
pub(crate) const RETRY: Duration = Duration::from_secs(5);
/// A token whose expiry cannot be read is replaced this often.
pub(crate) const UNKNOWN_LIFETIME: Duration = Duration::from_secs(300);
/// How often a waiting refresher looks whether its repository is gone.
pub(crate) const LOOK: Duration = Duration::from_secs(1);

/// Milliseconds since the Unix epoch, by this machine's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The `exp` claim of a signed token (a JWT), if it is one: read, not
/// verified.
pub fn token_expiry(token: &str) -> Option<u64> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_u64()
}

/// How long until `token` should be replaced, at `now_ms`: when 80% of
/// what is left of its lifetime has passed (at least a second: a provider
/// that hands out tokens already expired is not asked in a loop), or
/// `UNKNOWN_LIFETIME` (five minutes) for a token that does not say when it expires.
pub fn refresh_in(token: &str, now_ms: u64) -> Duration {
    match token_expiry(token) {
        Some(exp) => {
            let left = exp.saturating_mul(1000).saturating_sub(now_ms);
            Duration::from_millis(left / 5 * 4).max(Duration::from_secs(1))
        }
        None => UNKNOWN_LIFETIME,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn jwt(claims: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b64(r#"{"alg":"HS256"}"#), b64(claims))
    }

    #[test]
    fn a_signed_token_is_replaced_when_four_fifths_of_its_life_have_passed() {
        let token = jwt(r#"{"sub":"alice","exp":1100}"#);
        assert_eq!(token_expiry(&token), Some(1100));
        assert_eq!(refresh_in(&token, 1_000_000), Duration::from_secs(80));
        assert_eq!(refresh_in(&token, 1_095_000), Duration::from_secs(4));
        assert_eq!(
            refresh_in(&token, 2_000_000),
            Duration::from_secs(1),
            "expired"
        );
        assert_eq!(refresh_in("static-secret", 1_000_000), UNKNOWN_LIFETIME);
        assert_eq!(
            refresh_in(&jwt(r#"{"sub":"a"}"#), 1_000_000),
            UNKNOWN_LIFETIME
        );
    }
}
