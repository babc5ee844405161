//! The file system as a meeting point with tasks on any backend: a [`TempDir`] tasks
//! leave marks in, a [`Gate`] they wait on in [`gated`], and [`eventually`] to poll
//! for what they did. Only the standard library: `tests/common` has it as
//! `common::gate`, and `tests/thread_pool.rs` loads it alone (`tests/common` needs
//! the process backend) for `tests/contract`, which the threads-only build compiles
//! too. Each includer uses its own part, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Polls `cond` until it holds or `guard` passes; true if it held.
pub fn eventually(guard: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + guard;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        TempDir::at(std::env::temp_dir().join(format!("fondo-pp-{}-{tag}-{n}", std::process::id())))
    }

    pub fn at(path: PathBuf) -> TempDir {
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// A path inside the directory, as a `String` a task can take as its argument.
    pub fn file(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }

    /// The names of the files in the directory.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .expect("read temp dir")
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A latch in the file system: tasks (in worker processes or threads) wait in
/// [`gated`] until the test opens it. Opened on drop too, so a failing assertion never leaves a worker
/// blocked (and the pool's drop waiting on it forever).
pub struct Gate {
    dir: TempDir,
}

impl Gate {
    pub fn new() -> Gate {
        Gate {
            dir: TempDir::new("gate"),
        }
    }

    /// The argument to pass to [`gated`].
    pub fn arg(&self) -> String {
        self.dir.file("open")
    }

    pub fn open(&self) {
        std::fs::File::create(self.arg()).expect("open the gate");
    }

    pub fn is_open(&self) -> bool {
        Path::new(&self.arg()).exists()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

/// A task: waits until the gate file exists (or its directory is gone: the test
/// ended), then returns `value`.
pub fn gated(gate: String, value: u32) -> u32 {
    let gate = Path::new(&gate);
    let dir = gate.parent().map(Path::to_path_buf).unwrap_or_default();
    while !gate.exists() && dir.exists() {
        std::thread::sleep(Duration::from_millis(2));
    }
    value
}
