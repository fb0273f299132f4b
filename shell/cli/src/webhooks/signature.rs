//! How a webhook request is signed, so its receiver can tell it came from
//! this server and was not replayed later:
//!
//! ```text
//! X-Docweave-Signature: t=1767225600,v1=5f2c...e9
//! v1 = hex(HMAC-SHA256(secret, "1767225600." + body))
//! ```
//!
//! `t` is the Unix time (seconds) of the attempt; a receiver checks `v1`
//! in constant time and refuses a `t` far from its own clock. Each retry
//! is signed anew with its own time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const HEADER: &str = "x-docweave-signature";

/// The signature header's value for `body` sent at `unix_s` under
/// `secret` (`None` only if the MAC refused the key, which HMAC never does).
pub fn sign(secret: &[u8], unix_s: u64, body: &[u8]) -> Option<String> {
    Some(format!(
        "t={unix_s},v1={}",
        hex(&mac(secret, unix_s, body)?)
    ))
}

fn mac(secret: &[u8], unix_s: u64, body: &[u8]) -> Option<Vec<u8>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(unix_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac.finalize().into_bytes().to_vec())
}

/// Whether `header` is a valid signature of `body` under `secret`, made
/// within `tolerance_s` of `now_s`: what a receiver does (the tests' own
/// receiver; the README shows it in Python).
#[cfg(test)]
pub fn verify(secret: &[u8], header: &str, body: &[u8], now_s: u64, tolerance_s: u64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => v1 = Some(v.to_string()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if t.abs_diff(now_s) > tolerance_s {
        return false;
    }
    let Some(expected) = mac(secret, t, body).map(|m| hex(&m)) else {
        return false;
    };
    subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), v1.as_bytes()).into()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_matches_the_published_hmac_sha256_and_nothing_else() {
        // RFC 4231's test case 2 key and data, framed as "t.body".
        let body: &[u8] = b"what do ya want for nothing?";
        let header = sign(b"Jefe", 0, body).unwrap();
        assert!(header.starts_with("t=0,v1="));
        let taken = |key: &[u8], body: &[u8], now: u64| verify(key, &header, body, now, 300);
        assert!(taken(b"Jefe", body, 10));
        assert!(!taken(b"Jefe", b"what do ya want for nothing!", 10));
        assert!(!taken(b"Jeff", body, 10));
        assert!(!taken(b"Jefe", body, 1_000), "too old");
        // The MAC itself, computed independently: HMAC-SHA256("key", "The
        // quick brown fox jumps over the lazy dog") is a published value.
        let mut m = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        m.update(b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            hex(&m.finalize().into_bytes()),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}
