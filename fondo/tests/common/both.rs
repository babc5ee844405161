//! `on_both!`: a test written once, run as two tests — on a process pool and on a
//! thread pool built by the same `fondo::Builder` — each under a watchdog, with the
//! pool terminated (not joined) if the test fails.

/// Which backend an [`on_both!`] test is running on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Processes,
    Threads,
}

/// How long one `on_both!` test may take before its watchdog aborts the binary.
pub const BOTH_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// One module per test, with a `processes` and a `threads` test: `$pool` is a pool
/// built by `$builder` (a `fondo::Builder`) on each backend; `$which`, when named,
/// says which ([`Which`]).
#[allow(unused_macros)]
macro_rules! on_both {
    ($(#[$attr:meta])* fn $name:ident($pool:ident = $builder:expr) $body:block) => {
        on_both! { $(#[$attr])* fn $name($pool = $builder, _which) $body }
    };
    ($(#[$attr:meta])* fn $name:ident($pool:ident = $builder:expr, $which:ident) $body:block) => {
        mod $name {
            use super::*;

            on_both! { @one $(#[$attr])* fn processes(Processes, $name, $pool = $builder, $which) $body }
            on_both! { @one $(#[$attr])* fn threads(Threads, $name, $pool = $builder, $which) $body }
        }
    };
    // One backend's test: `$backend` names the test and the builder method.
    (@one $(#[$attr:meta])* fn $backend:ident($variant:ident, $name:ident, $pool:ident = $builder:expr, $which:ident) $body:block) => {
        #[test]
        $(#[$attr])*
        fn $backend() {
            let $which = $crate::common::both::Which::$variant;
            let _wd = $crate::common::Deadline::arm(
                concat!(stringify!($name), " on ", stringify!($backend)),
                $crate::common::both::BOTH_LIMIT,
            );
            let $pool = $crate::common::TerminateOnPanic(
                $builder.$backend().expect(concat!("start a pool on ", stringify!($backend))),
            );
            $body
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both;
