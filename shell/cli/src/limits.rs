//! How many connections the process can hold: its file-descriptor limit,
//! raised to the hard limit at start-up, shared by every endpoint.

/// File descriptors kept for the store, logs and the rest of the process.
const RESERVED_FDS: u64 = 64;

/// Raises the soft limit on open files to the hard one and returns it.
fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    Some(lim.rlim_cur)
}

/// Connections the descriptors allow, on all endpoints (WebSocket, TCP,
/// HTTP) together: one endpoint may use what the others leave, so a server
/// of WebSocket clients holds as many as the process can.
pub fn connections_allowed() -> usize {
    let fds = raise_fd_limit().unwrap_or(1024);
    let all = fds.saturating_sub(RESERVED_FDS);
    usize::try_from(all.clamp(16, 1 << 20)).unwrap_or(1024)
}
