//! Frees what a worker was told to forget on a thread of its own: the last
//! reference to a big shared value's memory frees its pages (about 140 ms for
//! 1 GiB on the machine this was measured on), and the worker reads its next job
//! only after handling the forget — so that job waited as long.

use std::any::Any;
use std::sync::OnceLock;
use std::sync::mpsc::{Sender, channel};

/// What to drop later.
type Leftover = Box<dyn Any + Send>;

/// Drops `leftover` on the releasing thread, started at the first call; on this
/// thread if that one could not start.
pub(crate) fn drop_later(leftover: Leftover) {
    static RELEASER: OnceLock<Option<Sender<Leftover>>> = OnceLock::new();
    let releaser = RELEASER.get_or_init(|| {
        let (tx, rx) = channel::<Leftover>();
        std::thread::Builder::new()
            .name("fondo-release".into())
            // A `Drop` that panics (a user's value decoded from a share) costs
            // only that value: the loop goes on.
            .spawn(move || {
                for leftover in rx {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        drop(leftover);
                    }));
                }
            })
            .ok()
            .map(|_| tx)
    });
    match releaser {
        Some(tx) => {
            if let Err(back) = tx.send(leftover) {
                drop(back.0);
            }
        }
        None => drop(leftover),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::sync_channel;
    use std::time::Duration;

    /// Tells, when dropped, which thread dropped it.
    struct Tattle(std::sync::mpsc::SyncSender<Option<String>>);

    impl Drop for Tattle {
        fn drop(&mut self) {
            let _ = self.0.send(std::thread::current().name().map(String::from));
        }
    }

    #[test]
    fn leftovers_are_dropped_on_the_releasing_thread() {
        let (tx, rx) = sync_channel(2);
        drop_later(Box::new(Tattle(tx.clone())));
        drop_later(Box::new(Tattle(tx)));
        for _ in 0..2 {
            let who = rx.recv_timeout(Duration::from_secs(10)).expect("dropped");
            assert_eq!(who.as_deref(), Some("fondo-release"));
        }
    }
}
