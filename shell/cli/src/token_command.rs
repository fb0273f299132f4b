//! `--token-command CMD`: a long-running client asks the app for its
//! token by running a command (its standard output is the token), and
//! asks again before the token expires, handing the new one to the
//! connection (which presents it at once: `reauth`). A signed token is
//! refreshed when 80% of its lifetime has passed; any other every 5 minutes.

use docweave_shell::Repo;
use std::time::Duration;

/// A failed command is tried again after this long.
const RETRY: Duration = Duration::from_secs(5);
/// A token whose expiry cannot be read is fetched again this often.
const UNKNOWN_LIFETIME: Duration = Duration::from_secs(300);

/// Runs `command` with the shell; its trimmed output is the token.
pub fn fetch(command: &str) -> Result<String, String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run the token command: {e}"))?;
    if !out.status.success() {
        return Err(format!("the token command failed ({})", out.status));
    }
    let token = String::from_utf8(out.stdout)
        .map_err(|_| "the token command printed something that is not UTF-8".to_string())?;
    let token = token.trim();
    if token.is_empty() {
        return Err("the token command printed no token".into());
    }
    Ok(token.to_string())
}

/// How long until `token` should be replaced, at `now_s`.
pub fn refresh_in(token: &str, now_s: u64) -> Duration {
    match crate::jwt::expiry(token) {
        Some(exp) => {
            let left = exp.saturating_sub(now_s);
            Duration::from_millis(left.saturating_mul(800)).max(Duration::from_secs(1))
        }
        None => UNKNOWN_LIFETIME,
    }
}

/// Keeps `remote`'s token fresh for ever, starting from `first`.
pub async fn keep_fresh(repo: &Repo, remote: &str, command: &str, first: String) {
    let mut wait = refresh_in(&first, crate::jwt::now_s());
    loop {
        smol::Timer::after(wait).await;
        let command = command.to_string();
        match smol::unblock(move || fetch(&command)).await {
            Ok(token) => {
                wait = refresh_in(&token, crate::jwt::now_s());
                if let Err(e) = repo.set_token(remote, &token) {
                    tracing::warn!("cannot hand over the new token: {e}");
                    return;
                }
                tracing::info!("token refreshed; the next in {} s", wait.as_secs());
            }
            Err(e) => {
                tracing::warn!("{e}; trying again in {} s", RETRY.as_secs());
                wait = RETRY;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_token_is_refreshed_at_four_fifths_of_its_life() {
        // {"sub":"a","exp":1100}, unsigned: only its claims are read here.
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIiwiZXhwIjoxMTAwfQ.c2ln";
        assert_eq!(refresh_in(token, 1000), Duration::from_secs(80));
        assert_eq!(refresh_in(token, 2000), Duration::from_secs(1));
        assert_eq!(refresh_in("static", 1000), UNKNOWN_LIFETIME);
        assert_eq!(fetch("echo ' tok '").unwrap(), "tok");
        assert!(fetch("exit 3").is_err());
    }
}
