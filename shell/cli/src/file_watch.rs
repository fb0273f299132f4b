//! Files `serve` keeps reading while it runs (`--revoked-file`, `--rules`):
//! each is looked at twice a second and read again when its text changed,
//! or at once on SIGHUP. A file that cannot be read or parsed later leaves
//! what was read last in force, and the server says so once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often a file is looked at.
const POLL: Duration = Duration::from_millis(500);

/// Counts SIGHUPs: each watcher applies its file again when it moved.
static HANGUPS: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_hangup(_: libc::c_int) {
    HANGUPS.fetch_add(1, Ordering::Relaxed);
}

/// Makes SIGHUP a request to read the watched files again (instead of the
/// stop the signal handler installed before would make of it).
pub fn take_hangups() -> Result<(), String> {
    // SAFETY: the handler only adds to an atomic, which is
    // async-signal-safe.
    let previous =
        unsafe { libc::signal(libc::SIGHUP, on_hangup as *const () as libc::sighandler_t) };
    if previous == libc::SIG_ERR {
        return Err("cannot handle SIGHUP".into());
    }
    Ok(())
}

/// Watches `path` on a thread of its own: each new text that `parse`
/// accepts goes to `apply`, which says whether to go on (false: the server
/// is stopping). `first` is the text read at start (already applied).
pub fn watch<T: Send + 'static>(
    what: &'static str,
    path: PathBuf,
    first: String,
    parse: impl Fn(&str) -> Result<T, String> + Send + 'static,
    apply: impl Fn(T) -> bool + Send + 'static,
) -> Result<(), String> {
    std::thread::Builder::new()
        .name(format!("docweave-{what}"))
        .spawn(move || {
            // `None`: apply whatever is read next (SIGHUP asks for that).
            let mut last = Some(first);
            let mut hangups = HANGUPS.load(Ordering::Relaxed);
            let mut failing = false;
            loop {
                std::thread::sleep(POLL);
                let now = HANGUPS.load(Ordering::Relaxed);
                if now != hangups {
                    hangups = now;
                    tracing::info!("SIGHUP: reading {} again", path.display());
                    last = None;
                }
                let read = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))
                    .and_then(|text| {
                        if last.as_ref() == Some(&text) {
                            return Ok(None);
                        }
                        let parsed =
                            parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                        Ok(Some((text, parsed)))
                    });
                match read {
                    Ok(None) => failing = false,
                    Ok(Some((text, parsed))) => {
                        failing = false;
                        tracing::info!("{what} read again from {}", path.display());
                        if !apply(parsed) {
                            return;
                        }
                        last = Some(text);
                    }
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!("{e}; the {what} read last stay in force");
                    }
                    Err(_) => {}
                }
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot watch {what}: {e}"))
}
