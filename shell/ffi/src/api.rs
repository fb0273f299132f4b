//! The C functions (declared in `docweave.h`). Each checks its pointers,
//! runs under a panic guard, and reports failures by code and message.

use crate::error::{
    fail, guard, last, ok, DW_ERR_INVALID, DW_ERR_NULL, DW_ERR_PANIC, DW_ERR_STORE, DW_OK,
};
use crate::host::{Host, HostConfig, HostOutput};
use docweave_core::{ChannelId, DocId, RemoteAddr};
use docweave_shell::Input;
use std::ffi::{c_char, CStr, CString};

/// A node driven by the host. Opaque to C.
pub struct DwNode {
    host: Host,
    /// A call on it panicked (a bug) and may have left it half-changed:
    /// every later call fails with `DW_ERR_PANIC` instead of going on
    /// with a node in an unknown state.
    failed: bool,
}

/// `dw_output.kind`: write `bytes` to the connection of `channel`.
pub const DW_OUT_TRANSMIT: i32 = 1;
/// `dw_output.kind`: close the connection of `channel` (`text`: why).
pub const DW_OUT_CLOSE: i32 = 2;
/// `dw_output.kind`: connect to the remote named `text`, then call `dw_channel_opened`.
pub const DW_OUT_DIAL: i32 = 3;
/// `dw_output.kind`: an event for the application, as JSON in `text`.
pub const DW_OUT_EVENT: i32 = 4;

/// One thing the node wants done; its pointers stay valid until the next
/// `dw_poll` or `dw_node_free`.
#[repr(C)]
pub struct DwOutput {
    /// `DW_OUT_*`.
    pub kind: i32,
    /// The channel (transmit, close).
    pub channel: u64,
    /// The frame (transmit), else NULL.
    pub bytes: *const u8,
    /// Its length.
    pub len: usize,
    /// The reason (close), the remote (dial) or the event's JSON (event), else NULL.
    pub text: *const c_char,
}

/// Bytes the library allocated for the caller; free with `dw_bytes_free`.
#[repr(C)]
pub struct DwBytes {
    /// The bytes.
    pub ptr: *mut u8,
    /// How many.
    pub len: usize,
}

fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, i32> {
    if p.is_null() {
        return Err(fail(DW_ERR_NULL, format!("{what} is NULL")));
    }
    // SAFETY: the caller passes a NUL-terminated string valid for the call.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| fail(DW_ERR_INVALID, format!("{what} is not UTF-8")))
}

fn doc_id(p: *const c_char) -> Result<DocId, i32> {
    let s = text(p, "doc")?;
    DocId::parse(s).map_err(|e| fail(DW_ERR_INVALID, format!("{s:?}: {e}")))
}

fn with_node(node: *mut DwNode, f: impl FnOnce(&mut Host) -> Result<(), i32>) -> i32 {
    guard(|| {
        if node.is_null() {
            return fail(DW_ERR_NULL, "node is NULL");
        }
        // SAFETY: a non-NULL node comes from `dw_node_new` and is not freed
        // (the header's contract); calls on one node are not concurrent.
        let node = unsafe { &mut *node };
        if node.failed {
            return fail(
                DW_ERR_PANIC,
                "docweave failed inside an earlier call on this node; free it and make another",
            );
        }
        // Marked before the call and cleared after: a panic leaves it set.
        node.failed = true;
        let code = match f(&mut node.host) {
            Ok(()) => ok(),
            Err(code) => code,
        };
        node.failed = false;
        code
    })
}

/// Why the last call on this thread failed ("" after a success).
#[no_mangle]
pub extern "C" fn dw_last_error() -> *const c_char {
    last()
}

/// Creates a node from a JSON configuration:
/// `{"peer": "app-1", "sqlite": "/path/app.db", "token": "SECRET"}`
/// (`sqlite` and `token` optional). Writes the node to `*out`.
///
/// # Safety
/// `config` is a NUL-terminated string; `out` points to writable memory.
#[no_mangle]
pub unsafe extern "C" fn dw_node_new(
    config: *const c_char,
    now_ms: u64,
    out: *mut *mut DwNode,
) -> i32 {
    guard(|| {
        if out.is_null() {
            return fail(DW_ERR_NULL, "out is NULL");
        }
        let json = match text(config, "config") {
            Ok(s) => s,
            Err(code) => return code,
        };
        let c: HostConfig = match serde_json::from_str(json) {
            Ok(c) => c,
            Err(e) => return fail(DW_ERR_INVALID, format!("config: {e}")),
        };
        match Host::new(c, now_ms) {
            Ok(host) => {
                // SAFETY: checked non-NULL above.
                unsafe {
                    *out = Box::into_raw(Box::new(DwNode {
                        host,
                        failed: false,
                    }))
                };
                ok()
            }
            Err(why) => fail(DW_ERR_STORE, why),
        }
    })
}

/// Frees a node (NULL is ignored). Its outputs' pointers die with it.
///
/// # Safety
/// `node` comes from `dw_node_new` and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn dw_node_free(node: *mut DwNode) -> i32 {
    guard(|| {
        if !node.is_null() {
            // SAFETY: the caller gives back what `dw_node_new` made.
            drop(unsafe { Box::from_raw(node) });
        }
        ok()
    })
}

/// Asks the node to stay connected to a remote named `remote` (any name;
/// the host resolves it when a `DW_OUT_DIAL` for it comes out).
///
/// # Safety
/// `node` from `dw_node_new`; `remote` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn dw_connect(node: *mut DwNode, remote: *const c_char, now_ms: u64) -> i32 {
    with_node(node, |h| {
        let name = text(remote, "remote")?;
        let remote = RemoteAddr::parse(name).map_err(|e| fail(DW_ERR_INVALID, e.to_string()))?;
        h.connect(remote, now_ms);
        Ok(())
    })
}

/// A new token for `remote` (a refresh before the old one expires):
/// presented at once on a live connection, and in every hello from now on.
///
/// # Safety
/// `node` from `dw_node_new`; `remote` and `token` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn dw_set_token(
    node: *mut DwNode,
    remote: *const c_char,
    token: *const c_char,
    now_ms: u64,
) -> i32 {
    with_node(node, |h| {
        let name = text(remote, "remote")?;
        let remote = RemoteAddr::parse(name).map_err(|e| fail(DW_ERR_INVALID, e.to_string()))?;
        let token = text(token, "token")?.to_string();
        h.set_token(remote, token, now_ms);
        Ok(())
    })
}

/// The host opened a connection (for a dial of `remote`, or an accepted
/// one with `remote` NULL); writes its channel number to `*channel`.
///
/// # Safety
/// `node` from `dw_node_new`; `remote` NULL or NUL-terminated; `channel` writable.
#[no_mangle]
pub unsafe extern "C" fn dw_channel_opened(
    node: *mut DwNode,
    remote: *const c_char,
    now_ms: u64,
    channel: *mut u64,
) -> i32 {
    with_node(node, |h| {
        if channel.is_null() {
            return Err(fail(DW_ERR_NULL, "channel is NULL"));
        }
        let remote = match remote.is_null() {
            true => None,
            false => {
                let name = text(remote, "remote")?;
                Some(RemoteAddr::parse(name).map_err(|e| fail(DW_ERR_INVALID, e.to_string()))?)
            }
        };
        let c = h.node.channel_opened(now_ms, remote);
        // SAFETY: checked non-NULL above.
        unsafe { *channel = c.0 };
        Ok(())
    })
}

/// A whole frame arrived on `channel` (on TCP, frames come back to back:
/// 6 header bytes, the 4 last of them the payload length, little endian).
///
/// # Safety
/// `node` from `dw_node_new`; `bytes` points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn dw_feed_frame(
    node: *mut DwNode,
    channel: u64,
    bytes: *const u8,
    len: usize,
    now_ms: u64,
) -> i32 {
    with_node(node, |h| {
        if bytes.is_null() && len > 0 {
            return Err(fail(DW_ERR_NULL, "bytes is NULL"));
        }
        let frame = match len {
            0 => Vec::new(),
            // SAFETY: the caller gives `len` readable bytes.
            _ => unsafe { std::slice::from_raw_parts(bytes, len) }.to_vec(),
        };
        h.node.handle(
            now_ms,
            Input::Frame {
                channel: ChannelId(channel),
                bytes: frame,
            },
        );
        Ok(())
    })
}

/// The connection of `channel` is gone.
///
/// # Safety
/// `node` from `dw_node_new`.
#[no_mangle]
pub unsafe extern "C" fn dw_channel_closed(node: *mut DwNode, channel: u64, now_ms: u64) -> i32 {
    with_node(node, |h| {
        h.node.handle(
            now_ms,
            Input::ChannelClosed {
                channel: ChannelId(channel),
            },
        );
        Ok(())
    })
}

/// Time passed: call when the time from `dw_next_timeout` has come (or
/// whenever; it is harmless).
///
/// # Safety
/// `node` from `dw_node_new`.
#[no_mangle]
pub unsafe extern "C" fn dw_timeout(node: *mut DwNode, now_ms: u64) -> i32 {
    with_node(node, |h| {
        h.node.handle(now_ms, Input::Timeout);
        Ok(())
    })
}

/// When the node next needs `dw_timeout`, in the host's milliseconds;
/// `*at` is `UINT64_MAX` when nothing is due.
///
/// # Safety
/// `node` from `dw_node_new`; `at` writable.
#[no_mangle]
pub unsafe extern "C" fn dw_next_timeout(node: *mut DwNode, at: *mut u64) -> i32 {
    with_node(node, |h| {
        if at.is_null() {
            return Err(fail(DW_ERR_NULL, "at is NULL"));
        }
        // SAFETY: checked non-NULL above.
        unsafe { *at = h.node.poll_timeout().unwrap_or(u64::MAX) };
        Ok(())
    })
}

/// Opens (loads or creates) a document; `DocReady` or `DocUnavailable`
/// follows as an event.
///
/// # Safety
/// `node` from `dw_node_new`; `doc` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn dw_open(node: *mut DwNode, doc: *const c_char, now_ms: u64) -> i32 {
    with_node(node, |h| {
        let doc = doc_id(doc)?;
        h.node.handle(now_ms, Input::Open { doc });
        Ok(())
    })
}

/// Applies a Loro update the host made with its own Loro library, as a
/// local change of an open document (it syncs from there).
///
/// # Safety
/// `node` from `dw_node_new`; `doc` NUL-terminated; `bytes` points to `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn dw_apply_update(
    node: *mut DwNode,
    doc: *const c_char,
    bytes: *const u8,
    len: usize,
    now_ms: u64,
) -> i32 {
    with_node(node, |h| {
        let doc = doc_id(doc)?;
        if bytes.is_null() {
            return Err(fail(DW_ERR_NULL, "bytes is NULL"));
        }
        // SAFETY: the caller gives `len` readable bytes.
        let update = unsafe { std::slice::from_raw_parts(bytes, len) }.to_vec();
        h.apply_update(doc, update, now_ms)
            .map_err(|why| fail(DW_ERR_INVALID, why))
    })
}

/// Exports an open document as a Loro snapshot into `*out` (free it with
/// `dw_bytes_free`).
///
/// # Safety
/// `node` from `dw_node_new`; `doc` NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn dw_export(
    node: *mut DwNode,
    doc: *const c_char,
    out: *mut DwBytes,
) -> i32 {
    with_node(node, |h| {
        if out.is_null() {
            return Err(fail(DW_ERR_NULL, "out is NULL"));
        }
        let doc = doc_id(doc)?;
        let bytes = h.export(&doc).map_err(|why| fail(DW_ERR_INVALID, why))?;
        let mut boxed = bytes.into_boxed_slice();
        let len = boxed.len();
        let ptr = boxed.as_mut_ptr();
        std::mem::forget(boxed);
        // SAFETY: checked non-NULL above.
        unsafe { *out = DwBytes { ptr, len } };
        Ok(())
    })
}

/// Frees bytes from `dw_export` (a NULL `ptr` is ignored).
///
/// # Safety
/// `bytes` came from `dw_export` and is freed once.
#[no_mangle]
pub unsafe extern "C" fn dw_bytes_free(bytes: DwBytes) -> i32 {
    guard(|| {
        if !bytes.ptr.is_null() {
            // SAFETY: made by `dw_export` from a boxed slice of this length.
            drop(unsafe {
                Box::from_raw(std::ptr::slice_from_raw_parts_mut(bytes.ptr, bytes.len))
            });
        }
        DW_OK
    })
}

/// The next thing the node wants done: writes it to `*out` and returns
/// `DW_OK`, or returns `DW_NOTHING` (5) when there is nothing to do now.
/// Store jobs run inside this call.
///
/// # Safety
/// `node` from `dw_node_new`; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn dw_poll(node: *mut DwNode, now_ms: u64, out: *mut DwOutput) -> i32 {
    let mut nothing = false;
    let code = with_node(node, |h| {
        if out.is_null() {
            return Err(fail(DW_ERR_NULL, "out is NULL"));
        }
        let Some(next) = h.poll(now_ms) else {
            nothing = true;
            return Ok(());
        };
        let (kind, channel, bytes, text) = match next {
            HostOutput::Transmit { channel, frame } => (DW_OUT_TRANSMIT, channel.0, frame, None),
            HostOutput::Close { channel, reason } => {
                (DW_OUT_CLOSE, channel.0, Vec::new(), Some(reason))
            }
            HostOutput::Dial { remote } => (DW_OUT_DIAL, 0, Vec::new(), Some(remote)),
            HostOutput::Event(e) => {
                let json = serde_json::to_string(&e).unwrap_or_default();
                (DW_OUT_EVENT, 0, Vec::new(), Some(json))
            }
        };
        h.held_bytes = bytes;
        h.held_text = CString::new(text.unwrap_or_default().replace('\0', " ")).unwrap_or_default();
        let has_text = !h.held_text.as_bytes().is_empty();
        // SAFETY: checked non-NULL above; the pointers live in `h` until the next poll.
        unsafe {
            *out = DwOutput {
                kind,
                channel,
                bytes: if h.held_bytes.is_empty() {
                    std::ptr::null()
                } else {
                    h.held_bytes.as_ptr()
                },
                len: h.held_bytes.len(),
                text: if has_text {
                    h.held_text.as_ptr()
                } else {
                    std::ptr::null()
                },
            };
        }
        Ok(())
    });
    if code == DW_OK && nothing {
        DW_NOTHING
    } else {
        code
    }
}

/// `dw_poll`: nothing to do now.
pub const DW_NOTHING: i32 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> *mut DwNode {
        let config = CString::new(r#"{"peer": "app-1"}"#).unwrap();
        let mut node = std::ptr::null_mut();
        // SAFETY: a valid string and a writable pointer.
        assert_eq!(unsafe { dw_node_new(config.as_ptr(), 0, &mut node) }, DW_OK);
        node
    }

    #[test]
    fn a_node_whose_call_panicked_refuses_every_later_call() {
        let n = node();
        assert_eq!(with_node(n, |_| Ok(())), DW_OK);
        assert_eq!(with_node(n, |_| panic!("a bug")), DW_ERR_PANIC);
        let mut out = DwOutput {
            kind: 0,
            channel: 0,
            bytes: std::ptr::null(),
            len: 0,
            text: std::ptr::null(),
        };
        // SAFETY: the node from `dw_node_new`, a writable output.
        assert_eq!(unsafe { dw_poll(n, 1, &mut out) }, DW_ERR_PANIC);
        // SAFETY: `dw_last_error` points to this thread's message.
        let why = unsafe { CStr::from_ptr(dw_last_error()) }.to_string_lossy();
        assert!(why.contains("earlier call"), "{why}");
        // SAFETY: freed once.
        assert_eq!(unsafe { dw_node_free(n) }, DW_OK);
    }
}
