//! What a hostile launcher would hand a fondo-built program to make it serve as a
//! worker — the marker and the frames — for the security tests
//! (`tests/hostile_launch.rs`). Not public API. Nothing here bypasses a check:
//! anyone can compute the same bytes from the program's symbols.

use super::ipc::frames::encode_frame;
use super::ipc::messages::ToWorker;
use crate::boundary::entry::offset_of_entry;
use crate::boundary::item::push_item;
use crate::config::DEFAULT_MAX_FRAME;
use crate::task::Task;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The environment variable that marks a process as a worker.
pub const WORKER_ENV: &str = super::parent::spawn::WORKER_ENV;

/// The marker's value naming socket `sock`, progress page `progress` (no lanes,
/// no arena) and `parent`, in the form the parent writes (`spawn::worker_command`).
/// `parent` is text so a shell can fill it in (`$$`).
pub fn marker(sock: i32, progress: i32, parent: &str) -> String {
    format!("{sock},{progress},-1,-1,0,{parent},{DEFAULT_MAX_FRAME}")
}

/// The offset that names `task`'s entry point in any process of this executable.
pub fn entry_offset<F, R>(task: F) -> i64
where
    F: Task<(), Output = R> + Copy,
    R: Serialize + DeserializeOwned,
{
    let _ = task;
    offset_of_entry::<F, ()>()
}

/// Frames asking a worker to run the entry point at `entry` once with no
/// arguments, then to stop.
pub fn run_then_stop(entry: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let run = ToWorker::Run {
        job: 1,
        entry,
        count: 1,
    };
    // Neither frame can fail to encode: small headers, a unit argument.
    let _ = encode_frame(&mut out, &run, DEFAULT_MAX_FRAME, |body| {
        let _ = push_item(body, &());
    });
    let _ = encode_frame(&mut out, &ToWorker::Shutdown, DEFAULT_MAX_FRAME, |_| {});
    out
}
