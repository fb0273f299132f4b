//! `serve --revoked-file PATH`: tokens (by `jti`) and identities (`sub:NAME`)
//! the operator cut off, one per line (`#` starts a comment). The file is
//! read at start, then again whenever it changes (looked at twice a
//! second) and on SIGHUP; each new list goes to the node, which closes every
//! connection it revokes at once. A file that cannot be read later leaves
//! the last list read in force, and the server says so once.

use docweave_core::{PeerId, Revocations};
use docweave_shell::Repo;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often the file is looked at.
const POLL: Duration = Duration::from_millis(500);

/// Set by SIGHUP: re-read now.
static HANGUP: AtomicBool = AtomicBool::new(false);

/// The list a file's text gives, or the first line that is not one.
pub fn parse(text: &str) -> Result<Revocations, String> {
    let mut r = Revocations::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match line.strip_prefix("sub:") {
            Some(peer) => {
                let peer = PeerId::parse(peer.trim())
                    .map_err(|e| format!("line {}: not a peer id: {e}", n + 1))?;
                r.peers.insert(peer);
            }
            None => {
                r.tokens.insert(line.to_string());
            }
        }
    }
    Ok(r)
}

/// Reads and parses the file.
pub fn read(path: &Path) -> Result<(String, Revocations), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let list = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((text, list))
}

extern "C" fn on_hangup(_: libc::c_int) {
    HANGUP.store(true, Ordering::Relaxed);
}

/// Keeps the node's revocations (and `shared`, which the Loro endpoint
/// reads) in step with the file, on a thread of its own.
pub fn watch(
    path: PathBuf,
    first_text: String,
    repo: Arc<Repo>,
    shared: Arc<RwLock<Revocations>>,
) -> Result<(), String> {
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe; nothing else in the process handles SIGHUP.
    let previous =
        unsafe { libc::signal(libc::SIGHUP, on_hangup as *const () as libc::sighandler_t) };
    if previous == libc::SIG_ERR {
        return Err("cannot handle SIGHUP".into());
    }
    std::thread::Builder::new()
        .name("docweave-revocations".into())
        .spawn(move || {
            // `None`: apply whatever is read next (SIGHUP asks for that).
            let mut last = Some(first_text);
            let mut failing = false;
            loop {
                std::thread::sleep(POLL);
                if HANGUP.swap(false, Ordering::Relaxed) {
                    tracing::info!("SIGHUP: reading {} again", path.display());
                    // Apply it even if unchanged: the operator asked.
                    last = None;
                }
                match read(&path) {
                    Ok((text, _)) if last.as_ref() == Some(&text) => failing = false,
                    Ok((text, list)) => {
                        failing = false;
                        tracing::info!(
                            "revocations from {}: {} tokens, {} identities",
                            path.display(),
                            list.tokens.len(),
                            list.peers.len()
                        );
                        match shared.write() {
                            Ok(mut s) => *s = list.clone(),
                            Err(p) => *p.into_inner() = list.clone(),
                        }
                        if repo.revoke(list).is_err() {
                            // The node is gone: the server is stopping.
                            return;
                        }
                        last = Some(text);
                    }
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!("{e}; the revocations read last stay in force");
                    }
                    Err(_) => {}
                }
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot watch the revocation file: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_tokens_or_identities_and_comments_are_skipped() {
        let r = parse("# cut off\ntok-1\n  sub:mallory  # left the team\n\ntok-2\n").unwrap();
        assert_eq!(
            r.tokens.iter().map(String::as_str).collect::<Vec<_>>(),
            ["tok-1", "tok-2"]
        );
        assert!(r.peers.contains(&PeerId::new("mallory")));
        assert!(parse("sub:").is_err(), "an empty identity was taken");
    }
}
