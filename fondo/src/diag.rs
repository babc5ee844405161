//! fondo's own diagnostics on stderr, one line each, written with a single `write`:
//! `eprintln!` writes a formatted line in pieces, so the lines of several processes
//! sharing one stderr (worker processes, MPI ranks under `mpirun`) could interleave
//! mid-line. A write of up to `PIPE_BUF` (4 KiB) bytes to a pipe is atomic.

use std::io::Write;

/// Writes `args` and a newline to stderr in one call; a failure to write is ignored
/// (there is nowhere else to report it).
pub(crate) fn line(args: std::fmt::Arguments<'_>) {
    let mut text = args.to_string();
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `eprintln!` as one write: see the module docs.
macro_rules! diag {
    ($($arg:tt)*) => {
        $crate::diag::line(format_args!($($arg)*))
    };
}
pub(crate) use diag;
