//! How a parent and its worker processes talk: frames on a private socketpair
//! (`frames`, `messages`), and shared memory beside it (`shm`): the worker's lanes
//! for big bodies (`lanes`), the pool's arena for big arguments (`arena`), and the
//! progress page where the worker stamps its tasks and claims its jobs
//! (`progress`). ARCHITECTURE.md draws the whole protocol.

pub(crate) mod arena;
pub(crate) mod frames;
pub(crate) mod lanes;
pub(crate) mod messages;
pub(crate) mod progress;
pub(crate) mod shm;
