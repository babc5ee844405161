//! Small pieces both sides use: a polling back-off (a rank blocked inside an MPI
//! probe spins a whole core in Open MPI, so nobody blocks in MPI), non-blocking
//! sends that own their buffer, and the launcher detection.

use mpi::request::{Request, StaticScope};
use mpi::traits::Destination;
use std::time::{Duration, Instant};

/// How long a poller keeps polling (yielding the CPU between polls) after the last
/// message before it sleeps: the next message usually follows within microseconds,
/// and a sleep costs a wake-up.
const YIELD: Duration = Duration::from_micros(250);
/// First sleep once the polling phase is over; doubles up to the poller's cap.
const FIRST_SLEEP: Duration = Duration::from_micros(10);

/// Back-off for a loop that polls MPI: poll and yield the CPU, then sleep for
/// growing intervals up to `max_sleep`.
pub(crate) struct Backoff {
    idle_since: Option<Instant>,
    sleep: Duration,
    max_sleep: Duration,
}

impl Backoff {
    pub(crate) fn new(max_sleep: Duration) -> Self {
        Backoff {
            idle_since: None,
            sleep: FIRST_SLEEP,
            max_sleep,
        }
    }

    /// Something happened: the next pause starts polling hot again.
    pub(crate) fn reset(&mut self) {
        self.idle_since = None;
        self.sleep = FIRST_SLEEP;
    }

    /// A poll found nothing: pause a little; `sleep` is how to sleep (it may be woken early).
    pub(crate) fn pause(&mut self, sleep: impl FnOnce(Duration)) {
        let since = *self.idle_since.get_or_insert_with(Instant::now);
        let idle = since.elapsed();
        if idle < YIELD {
            // Yield rather than spin: the message we wait for may need this CPU (a
            // rank's threads, or more ranks than cores). Measured at 2 ranks on 2
            // cores: a 20 µs pure spin first made a round trip 75 µs instead of 12 µs
            // (Open MPI's own mpi_yield_when_idle=1 has the same effect).
            std::thread::yield_now();
        } else {
            sleep(self.sleep);
            self.sleep = (self.sleep * 2).min(self.max_sleep);
        }
    }
}

/// Lets this thread's short sleeps be short: Linux's default timer slack adds
/// ~50 µs to every sleep, which would dominate a poll interval of 10–500 µs.
pub(crate) fn tighten_timer_slack() {
    const PR_SET_TIMERSLACK: i32 = 29;
    unsafe extern "C" {
        fn prctl(option: i32, ...) -> i32;
    }
    // SAFETY: PR_SET_TIMERSLACK takes one unsigned long (nanoseconds) and only
    // changes this thread's timer slack; a failure leaves the default, which is harmless.
    unsafe {
        prctl(PR_SET_TIMERSLACK, 1000 as std::ffi::c_ulong);
    }
}

/// A non-blocking send that owns its buffer until MPI is done with it.
pub(crate) struct OwnedSend {
    request: Option<Request<'static, [u8], StaticScope>>,
    buf: *mut [u8],
}

impl OwnedSend {
    /// Starts sending `data` to `dest` with `tag` (`MPI_Isend`).
    pub(crate) fn start<D: Destination>(dest: &D, data: Vec<u8>, tag: i32) -> OwnedSend {
        let buf = Box::into_raw(data.into_boxed_slice());
        // SAFETY: `buf` stays allocated and unaliased by any `&mut` until this
        // request completes (`test`), after which it is freed exactly once; an
        // unfinished send is leaked, never freed (see `Drop`).
        let data: &'static [u8] = unsafe { &*buf };
        let request = dest.immediate_send_with_tag(StaticScope, data, tag);
        OwnedSend {
            request: Some(request),
            buf,
        }
    }

    /// True once MPI is done with the buffer (which is then freed).
    pub(crate) fn test(&mut self) -> bool {
        let Some(request) = self.request.take() else {
            return true;
        };
        match request.test() {
            Ok(_) => {
                // SAFETY: the send completed: MPI no longer reads the buffer, which
                // came from `Box::into_raw` in `start` and is freed only here.
                drop(unsafe { Box::from_raw(self.buf) });
                true
            }
            Err(request) => {
                self.request = Some(request);
                false
            }
        }
    }
}

impl Drop for OwnedSend {
    fn drop(&mut self) {
        if let Some(request) = self.request.take() {
            // Only on a path that is giving up on MPI: the library may still read the
            // buffer, so leak both rather than free memory under it.
            std::mem::forget(request);
        }
    }
}

/// Environment variables an MPI launcher sets for the processes it starts:
/// Open MPI's mpirun, PMIx launchers (srun --mpi=pmix, prterun), MPICH/Hydra and
/// Intel MPI, Slurm's PMI2.
const LAUNCHER_VARS: [&str; 5] = [
    "OMPI_COMM_WORLD_SIZE",
    "PMIX_RANK",
    "PMI_RANK",
    "PMI_SIZE",
    "PMI_FD",
];

/// The world size the launcher announced, `Some(None)` if launched but the size is
/// not in the environment, `None` if no launcher started this process.
pub(crate) fn launched_size() -> Option<Option<usize>> {
    if !LAUNCHER_VARS.iter().any(|v| std::env::var_os(v).is_some()) {
        return None;
    }
    let size = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.trim().parse().ok());
    Some(size)
}
