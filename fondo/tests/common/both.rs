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

            #[test]
            $(#[$attr])*
            fn processes() {
                let $which = $crate::common::both::Which::Processes;
                let _wd = $crate::common::Deadline::arm(
                    concat!(stringify!($name), " on processes"),
                    $crate::common::both::BOTH_LIMIT,
                );
                let $pool = $crate::common::TerminateOnPanic(
                    $builder.processes().expect("start a process pool"),
                );
                $body
            }

            #[test]
            $(#[$attr])*
            fn threads() {
                let $which = $crate::common::both::Which::Threads;
                let _wd = $crate::common::Deadline::arm(
                    concat!(stringify!($name), " on threads"),
                    $crate::common::both::BOTH_LIMIT,
                );
                let $pool = $crate::common::TerminateOnPanic(
                    $builder.threads().expect("start a thread pool"),
                );
                $body
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both;
