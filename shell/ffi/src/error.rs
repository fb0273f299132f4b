//! Error codes and the last error message of the calling thread.

use std::cell::RefCell;
use std::ffi::CString;

/// Success.
pub const DW_OK: i32 = 0;
/// A pointer argument was NULL.
pub const DW_ERR_NULL: i32 = 1;
/// An argument was not valid (bad UTF-8, bad JSON, unknown channel...).
pub const DW_ERR_INVALID: i32 = 2;
/// The store could not be opened.
pub const DW_ERR_STORE: i32 = 3;
/// docweave failed inside (a bug): every later call on that node fails
/// with this code too; free it and make another.
pub const DW_ERR_PANIC: i32 = 4;

thread_local! {
    static LAST: RefCell<CString> = RefCell::new(CString::default());
}

/// Remembers why a call failed and returns its code.
pub(crate) fn fail(code: i32, why: impl Into<String>) -> i32 {
    let text = why.into().replace('\0', " ");
    LAST.with(|l| *l.borrow_mut() = CString::new(text).unwrap_or_default());
    code
}

/// Clears the last error (a call succeeded).
pub(crate) fn ok() -> i32 {
    LAST.with(|l| *l.borrow_mut() = CString::default());
    DW_OK
}

/// The last error message of this thread.
pub(crate) fn last() -> *const std::ffi::c_char {
    LAST.with(|l| l.borrow().as_ptr())
}

/// Runs `f`, turning a panic into `DW_ERR_PANIC` (a panic must never cross
/// into C).
pub(crate) fn guard(f: impl FnOnce() -> i32) -> i32 {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(code) => code,
        Err(_) => fail(DW_ERR_PANIC, "docweave failed inside this call"),
    }
}
