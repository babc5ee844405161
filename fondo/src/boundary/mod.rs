//! What crosses any process boundary, whatever carries it — a worker process's
//! socket and shared memory, or an MPI message: how a function is named in another
//! process (`entry`, `code_range`), how a batch of tasks is encoded and cut
//! (`job`), how one value is encoded and what a user's `Serialize` or
//! `Deserialize` may do to it (`item`, `codec`), how a big value moves into shared
//! memory as it is encoded (`spill`), why a task failed on the far side
//! (`failure`), how a worker frees a forgotten share without holding up its next job
//! (`release`), where a worker stamps the stages of its tasks (`clock`), and how an executable
//! or a value is named alike on every machine (`digest`).
//!
//! The process and MPI backends both build on this layer; neither reaches into the
//! other.

pub(crate) mod clock;
pub(crate) mod code_range;
pub(crate) mod codec;
pub(crate) mod digest;
pub(crate) mod entry;
pub(crate) mod failure;
pub(crate) mod item;
pub(crate) mod job;
pub(crate) mod release;
pub(crate) mod shares;
pub(crate) mod spill;
