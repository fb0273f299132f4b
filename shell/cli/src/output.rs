//! Lines to standard output. A reader that goes away early
//! (`docweave doc get ... | head`) ends the command quietly, where
//! `println!` would panic with a backtrace.

use std::io::Write;

/// Writes one line to stdout and flushes it.
pub fn line(text: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("docweave: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// `println!` for command output, see [`line()`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
