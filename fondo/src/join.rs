//! Joining a pool's own threads, which a pool dropped on one of them must not try
//! to do to itself.

use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;

/// Joins every thread but the calling one. A pool can be dropped on its own worker
/// or supervisor thread (its last reference released in a task or a result
/// callback); that thread cannot wait for itself — it finishes on its own once it
/// returns, since the pool is closed.
pub(crate) fn join_others<T>(handles: impl IntoIterator<Item = JoinHandle<T>>) {
    let me = std::thread::current().id();
    for h in handles {
        if h.thread().id() != me {
            // Task panics are caught inside; a panic here is a fondo bug, already printed.
            let _ = h.join();
        }
    }
}

/// Takes a pool's handles out of `slot` (a `Vec` or an `Option` of them) and joins
/// every one but the calling thread's, as [`join_others`]. A later call finds the
/// slot empty and returns at once.
pub(crate) fn join_taken<C, T>(slot: &Mutex<C>)
where
    C: Default + IntoIterator<Item = JoinHandle<T>>,
{
    let handles = std::mem::take(&mut *slot.lock().unwrap_or_else(PoisonError::into_inner));
    join_others(handles);
}
