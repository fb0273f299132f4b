//! One Loro peer per machine, server, document and user for `doc put`, as an
//! app keeps one, so ordinary use does not make every command a new writer
//! of the document (each writer costs every reader a version-vector entry).
//!
//! The peer is kept in the config directory (`$DOCWEAVE_CONFIG_DIR`, else
//! `$XDG_CONFIG_HOME/docweave`, else `~/.config/docweave`), under
//! `writers/<key>.json`. Reusing it is safe only when nothing else writes
//! with it and everything written with it before is on the server (the next
//! command loads the document from there, so Loro continues the peer's
//! counter after it). So:
//! - a command holds the peer alone, through `<key>.lock` (created
//!   exclusively; one left by a process that died is taken over), and a
//!   command that finds it held writes as a fresh peer;
//! - a peer is reused only after a command that ended with its change
//!   acknowledged durable by the server; any other end (a timeout, a
//!   failure, a crash) makes the next command start a fresh peer.
//!
//! Anything that goes wrong here costs only the reuse: the command then
//! writes as a fresh peer, as it always did.

use std::path::{Path, PathBuf};

/// A peer this command may write with, held until dropped.
pub struct WriterLease {
    /// The actor (Loro peer id) to write with.
    pub actor: u64,
    record: PathBuf,
    lock: Option<PathBuf>,
    server: String,
    doc: String,
}

/// The config directory, if one can be named.
fn config_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCWEAVE_CONFIG_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(d).join("docweave"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config").join("docweave"))
}

/// FNV-1a: a hash that stays the same across builds (a file name).
fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn fresh_actor() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: the time and process still make a fresh one.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        return stable_hash(&[&t.to_string(), &std::process::id().to_string()]) >> 12;
    }
    // Loro peer ids are any u64; kept below 2^52 so JavaScript reads them exactly.
    u64::from_le_bytes(b) >> 12
}

/// Whether process `pid` is alive (a lock it left is otherwise stale).
fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Takes `lock` for this process; `false` when another live process has it.
fn take_lock(lock: &Path) -> bool {
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(lock)
        {
            Ok(mut f) => {
                use std::io::Write;
                // The pid only lets a later command see the lock is stale.
                return writeln!(f, "{}", std::process::id()).is_ok();
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(lock)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok());
                match holder {
                    Some(pid) if alive(pid) => return false,
                    // Left by a process that died (or half written): taken over.
                    _ => {
                        if std::fs::remove_file(lock).is_err() {
                            return false;
                        }
                    }
                }
            }
            Err(_) => return false,
        }
    }
    false
}

/// The peer to write `doc` on `server` as `user` with: the kept one when the
/// last command with it ended clean, else a fresh one. `None` when no config
/// directory can be used (the caller writes as a fresh peer).
pub fn acquire(server: &str, doc: &str, user: &str) -> Option<WriterLease> {
    let dir = config_dir()?.join("writers");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::debug!(
            "no writer lease ({}: {e}); writing as a fresh peer",
            dir.display()
        );
        return None;
    }
    let key = format!("{:016x}", stable_hash(&[server, doc, user]));
    let record = dir.join(format!("{key}.json"));
    let lock = dir.join(format!("{key}.lock"));
    if !take_lock(&lock) {
        tracing::debug!("another command writes {doc} as this user; writing as a fresh peer");
        return None;
    }
    let kept = std::fs::read_to_string(&record)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .filter(|v| v["clean"].as_bool() == Some(true))
        .and_then(|v| v["actor"].as_u64());
    let lease = WriterLease {
        actor: kept.unwrap_or_else(fresh_actor),
        record,
        lock: Some(lock),
        server: server.to_string(),
        doc: doc.to_string(),
    };
    // Not clean until this command's change is acknowledged durable.
    lease.save(false);
    Some(lease)
}

impl WriterLease {
    fn save(&self, clean: bool) {
        let v = serde_json::json!({
            "actor": self.actor,
            "clean": clean,
            "server": self.server,
            "doc": self.doc,
        });
        if let Err(e) = std::fs::write(&self.record, v.to_string()) {
            // The next command then does not reuse the peer (unclean or
            // missing record): only the reuse is lost.
            tracing::debug!("writer lease {}: {e}", self.record.display());
        }
    }

    /// Everything written with the peer is durable on the server: the next
    /// command may write with it again.
    pub fn clean(&self) {
        self.save(true);
    }
}

impl Drop for WriterLease {
    fn drop(&mut self) {
        if let Some(lock) = self.lock.take() {
            // A lock left behind is taken over by the next command (its
            // process is gone), so a failed removal costs nothing.
            if let Err(e) = std::fs::remove_file(&lock) {
                tracing::debug!("writer lease lock {}: {e}", lock.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_reused_only_after_a_clean_end_and_never_by_two_commands_at_once() {
        let dir = std::env::temp_dir().join(format!("docweave-lease-{}", std::process::id()));
        // Left by an earlier run, if any; absent is as good.
        let _ = std::fs::remove_dir_all(&dir);
        // SAFETY: the only test of this binary that reads the variable.
        unsafe { std::env::set_var("DOCWEAVE_CONFIG_DIR", &dir) };
        let first = acquire("ws://s/", "d", "u").unwrap();
        let actor = first.actor;
        assert!(
            acquire("ws://s/", "d", "u").is_none(),
            "held by a running command"
        );
        drop(first);
        let second = acquire("ws://s/", "d", "u").unwrap();
        assert_ne!(second.actor, actor, "the last command did not end clean");
        second.clean();
        let actor = second.actor;
        drop(second);
        let third = acquire("ws://s/", "d", "u").unwrap();
        assert_eq!(third.actor, actor, "reused after a clean end");
        assert_ne!(acquire("ws://s/", "other", "u").unwrap().actor, actor);
        drop(third);
        // Tidying only: a leftover directory is removed by the next run.
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_hash_of_a_key_is_the_same_in_every_build() {
        assert_eq!(stable_hash(&["a"]), 0x089b_e207_b544_f1e4);
        assert_ne!(stable_hash(&["ab", "c"]), stable_hash(&["a", "bc"]));
    }
}
