//! `Journal`: long work that survives a kill. Each result is written to a file as it
//! arrives; running the same program again with the same journal takes the results
//! already there and runs only the rest.
//!
//! ```
//! use fondo::{Journal, Pool};
//!
//! fn square(x: u64) -> u64 { x * x }
//!
//! # let dir = std::env::temp_dir().join(format!("fondo-doc-journal-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let path = dir.join("run.journal");
//! let pool = Pool::processes(2)?;
//! let mut journal = Journal::open(&path)?;        // created if absent
//! let v = journal.map(&pool, square, 0..1000)?;   // killed here? run again:
//! assert_eq!(v[999], 998_001);
//!
//! // A second run of the same program finds every result on record and runs nothing.
//! # drop(journal);
//! let mut again = Journal::open(&path)?;
//! assert_eq!(again.len(), 1000);
//! assert_eq!(again.map(&pool, square, 0..1000)?, v);
//! # drop(again);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What it promises
//!
//! - **Nothing journaled runs again.** A rerun submits only the positions with no result
//!   on record. A task that failed (`Err`) is not journaled: it runs again next time.
//! - **A kill loses little.** Results are written to the file as they arrive, so a
//!   program that dies — `kill -9`, an out-of-memory kill, a scheduler's time limit, a
//!   panic — loses none of them. What it loses are the tasks it had handed to workers
//!   and not yet got back: at most `workers × (prefetch + 2) × chunk` tasks (the
//!   pool's `prefetch`, 2 unless set; `chunk` the pool's `chunksize` if set, else sized
//!   so that a chunk is about 5 ms of work, at most 4096 tasks): some 20 ms of work
//!   per worker.
//! - **A crash of the machine loses at most the last [`sync_every`](Journal::sync_every)
//!   (200 ms unless set).** The file is flushed to disk (`fdatasync`) that often while
//!   results come in, by a thread of its own, and once more before `map` returns. Power
//!   loss, a kernel panic or a node that dies loses at most the results that arrived in
//!   that window; they are recomputed on the next run.
//! - **Never mixed.** A journal written by another executable (its bytes differ), for
//!   another function, or for other inputs is refused with [`Error::Journal`] saying
//!   which; nothing is read from it and nothing is written to it.
//! - **A torn end is dropped.** Each record carries its length and a CRC-32; on opening,
//!   reading stops at the first record that is incomplete or does not check, and the
//!   file is cut there (its tasks run again).
//! - **One run at a time.** The open journal holds an exclusive lock on its file
//!   (`flock`); a second program opening it gets an error. On a file system that cannot
//!   lock (Lustre mounted without `-o flock`) it goes on with a warning; records are
//!   appended (`O_APPEND`) either way.
//!
//! # Several maps
//!
//! A journal records any number of maps, told apart by their order: the first
//! `journal.map` of a run is map 0, the next map 1… A program that runs two stages
//! keeps one journal; a rerun finds stage 0 complete (nothing runs) and resumes stage 1.
//!
//! # How inputs and functions are known
//!
//! - An input is known by a hash of its serde encoding, the one tasks travel in; a
//!   value containing a [`Shared`](crate::Shared) is known by the share's id, new in each
//!   run, so such inputs never match: journal a map over plain values.
//! - A function is known by its type's name and the offset of its code in the
//!   executable, so two closures in the same function (alike in name) are told apart.
//!   Not by the values a closure captures (threads run capturing closures): make what
//!   changes between runs an input, or use another journal.
//!
//! # On MPI
//!
//! Rank 0 runs `journal.map` and writes the journal; the other ranks serve tasks. Open
//! the journal after [`Pool::mpi`](crate::Pool), where only rank 0 runs. When a rank dies
//! the MPI job ends, results already written are kept, and the same `mpirun` command
//! run again resumes.
//!
//! # File format (version 1)
//!
//! ```text
//! file   = "FONDOJNL" · version u32 LE · frame…
//! frame  = len u32 LE · crc u32 LE · body (len bytes)   crc: CRC-32 (IEEE) of len's 4 bytes and body
//! body   = kind u8 · …
//!   1 file header   postcard { exe_size u64, exe_hash u128, exe_path String }   (the first frame)
//!   2 map header    postcard { map u32, function String, code i64, args String,
//!                              result String, inputs u64, inputs_hash u64 }
//!   3 result        map (LEB128) · position (LEB128) · input_hash u64 LE · result (postcard)
//! ```
//!
//! Hashes are [`hash64`]'s; `inputs_hash` is the hash of the count and every input's
//! hash, each as 8 bytes LE. A result frame of a `u64` takes 24 to 30 bytes (`fondo
//! bench` measures 29.7 for full-width values, 23.7 for small ones).

mod feed;
mod flusher;
mod format;
mod identity;
mod sink;
#[cfg(test)]
mod tests;

use crate::backend::Runs;
use crate::backend::seam::Submit;
use crate::error::{Error, Payload, Result};
use crate::monitor::Monitor;
use crate::pool::Pool;
use crate::task::Task;
use feed::{Run, collect, feed};
use flusher::{FlushState, Flusher, StopOnDrop};
use format::{
    Contents, KIND_FILE, KIND_MAP, MAGIC, MapHeader, MapOnRecord, PREAMBLE, VERSION, encode_header,
    parse, push_frame,
};
use identity::{check_map, code_of, hash_of_hashes, input_hashes, this_executable};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// How often results are flushed to disk unless [`Journal::sync_every`] says otherwise.
pub const DEFAULT_SYNC_EVERY: Duration = Duration::from_millis(200);

/// Results of pool maps kept in a file, so that a program run again after a kill, a
/// crash or a time limit resumes instead of starting over. See the [module
/// docs](self) for what it promises and its file format.
///
/// ```
/// use fondo::{Journal, Pool};
///
/// fn work(x: u32) -> String { format!("item {x}") }
///
/// # let path = std::env::temp_dir().join(format!("fondo-doc-{}.journal", std::process::id()));
/// let pool = Pool::threads(2)?;
/// let mut journal = Journal::open(&path)?;
/// let done = journal.len();                       // results found on record
/// let v = journal.map(&pool, work, 0..100)?;      // runs the other 100 - done
/// assert_eq!(v[7], "item 7");
/// # drop(journal);
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Journal {
    path: PathBuf,
    file: File,
    /// The whole file as read when opened: results on record point into it.
    data: Vec<u8>,
    /// Maps on record, by number.
    maps: Vec<MapOnRecord>,
    /// The number the next `map` call gets.
    next_map: usize,
    sync_every: Duration,
    discarded: u64,
    /// An earlier write failed: the file's end is unknown, so nothing more is written.
    broken: Option<String>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("maps", &self.maps.len())
            .field("results", &self.len())
            .field("next_map", &self.next_map)
            .field("sync_every", &self.sync_every)
            .finish()
    }
}

/// A read-only look at a journal file, from [`Journal::inspect`]: which executable
/// wrote it, and for each map how many inputs it has and which are done.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// The path of the executable that wrote the journal, as it ran then.
    pub executable: String,
    /// The maps on record, in order.
    pub maps: Vec<MapSummary>,
    /// Bytes past the last sound record (a torn or corrupt end), which the next
    /// [`Journal::open`] cuts off.
    pub discarded_bytes: u64,
}

/// One map of a [`Summary`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MapSummary {
    /// The task's type name (`app::square`, `app::main::{{closure}}`).
    pub function: String,
    /// How many inputs the map has.
    pub inputs: usize,
    /// The positions whose result is on record, ascending.
    pub done: Vec<usize>,
}

impl Journal {
    /// Opens the journal at `path`, creating it if it does not exist. An existing
    /// journal must have been written by this very executable (the same bytes, wherever
    /// they are); its torn end, if a kill left one, is cut off. Takes an exclusive lock
    /// on the file until the `Journal` is dropped.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("fondo-doc-open-{}.journal", std::process::id()));
    /// let journal = fondo::Journal::open(&path)?;
    /// assert!(journal.is_empty());
    /// // One program at a time:
    /// assert!(fondo::Journal::open(&path).is_err());
    /// # drop(journal);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Journal> {
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        let io =
            |what: &str, e: std::io::Error| Error::Journal(format!("journal {shown}: {what}: {e}"));
        // Append mode: every write lands at the end, whatever else writes the file.
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| io("cannot open it", e))?;
        lock(&file, &shown)?;
        let exe = this_executable()?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .map_err(|e| io("cannot read it", e))?;
        let mut journal = Journal {
            path,
            file,
            data: Vec::new(),
            maps: Vec::new(),
            next_map: 0,
            sync_every: DEFAULT_SYNC_EVERY,
            discarded: 0,
            broken: None,
        };
        match parse(&data, &shown)? {
            Contents::Fresh => {
                let mut bytes = Vec::with_capacity(PREAMBLE + 64);
                bytes.extend_from_slice(MAGIC);
                bytes.extend_from_slice(&VERSION.to_le_bytes());
                push_frame(&mut bytes, KIND_FILE, |body| encode_header(body, &exe))
                    .map_err(|e| Error::Journal(format!("journal {shown}: {e}")))?;
                journal.discarded = data.len() as u64;
                let f = &mut journal.file;
                f.set_len(0).map_err(|e| io("cannot start it", e))?;
                f.write_all(&bytes)
                    .and_then(|()| f.sync_data())
                    .map_err(|e| io("cannot write its header", e))?;
                sync_directory(&journal.path).map_err(|e| io("cannot flush its directory", e))?;
            }
            Contents::Journal(parsed) => {
                if parsed.header.exe != exe.exe {
                    return Err(Error::Journal(format!(
                        "journal {shown} was written by another executable ({}: {}; this one \
                         is {}: {}). A journal holds the results of one build: run that \
                         executable, or delete the journal (or give this run another path) to \
                         start over",
                        parsed.header.exe_path, parsed.header.exe, exe.exe_path, exe.exe,
                    )));
                }
                if parsed.valid < data.len() {
                    journal.discarded = (data.len() - parsed.valid) as u64;
                    let f = &mut journal.file;
                    f.set_len(parsed.valid as u64)
                        .and_then(|()| f.sync_data())
                        .map_err(|e| io("cannot cut off its torn end", e))?;
                    data.truncate(parsed.valid);
                }
                journal.maps = parsed.maps;
                journal.data = data;
            }
        }
        Ok(journal)
    }

    /// Sets how often results are flushed to disk while a map runs (200 ms unless
    /// set): a crash of the machine loses at most the results of that last interval.
    /// A kill of the program loses none that arrived, whatever the interval.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("fondo-doc-sync-{}.journal", std::process::id()));
    /// use std::time::Duration;
    /// let journal = fondo::Journal::open(&path)?.sync_every(Duration::from_secs(1));
    /// # drop(journal);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sync_every(mut self, every: Duration) -> Journal {
        self.sync_every = every;
        self
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Results on record, over all maps, as found when opened (a map run since does not
    /// change it).
    pub fn len(&self) -> usize {
        self.maps.iter().map(|m| m.done).sum()
    }

    /// True when no result was on record when the journal was opened.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes cut off the end of the file when it was opened: a record torn by a kill
    /// mid-write, or a corrupt end. Their tasks run again.
    pub fn discarded_bytes(&self) -> u64 {
        self.discarded
    }

    /// Reads a journal without opening it for a run: no lock, no check of the
    /// executable, nothing written. For a look at a job's progress from elsewhere.
    ///
    /// ```
    /// use fondo::{Journal, Pool};
    /// fn double(x: u8) -> u16 { 2 * u16::from(x) }
    ///
    /// # let path = std::env::temp_dir().join(format!("fondo-doc-inspect-{}.journal", std::process::id()));
    /// let mut journal = Journal::open(&path)?;
    /// journal.map(&Pool::threads(2)?, double, [1, 2, 3])?;
    /// let summary = Journal::inspect(&path)?;
    /// assert_eq!(summary.maps[0].inputs, 3);
    /// assert_eq!(summary.maps[0].done, [0, 1, 2]);
    /// # drop(journal);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn inspect(path: impl AsRef<Path>) -> Result<Summary> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let data = std::fs::read(path)
            .map_err(|e| Error::Journal(format!("journal {shown}: cannot read it: {e}")))?;
        match parse(&data, &shown)? {
            Contents::Fresh => Ok(Summary {
                executable: String::new(),
                maps: Vec::new(),
                discarded_bytes: data.len() as u64,
            }),
            Contents::Journal(parsed) => Ok(Summary {
                executable: parsed.header.exe_path,
                maps: parsed
                    .maps
                    .into_iter()
                    .map(|m| MapSummary {
                        function: m.header.function,
                        inputs: m.results.len(),
                        done: (0..m.results.len())
                            .filter(|&p| m.results[p].is_some())
                            .collect(),
                    })
                    .collect(),
                discarded_bytes: (data.len() - parsed.valid) as u64,
            }),
        }
    }

    /// `pool.map(f, items)` through the journal: results on record are taken from it,
    /// the other positions run on `pool`, and each result is written down as it
    /// arrives. Results come in input order; a task that fails is not journaled, and
    /// the first failure by position is returned ([`Error::Task`] with that position)
    /// once every task has finished (the others are journaled). Works on every backend.
    ///
    /// ```
    /// use fondo::{Journal, Pool};
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    ///
    /// static RUNS: AtomicUsize = AtomicUsize::new(0);
    /// fn cube(x: i64) -> i64 { RUNS.fetch_add(1, Ordering::Relaxed); x * x * x }
    ///
    /// # let path = std::env::temp_dir().join(format!("fondo-doc-map-{}.journal", std::process::id()));
    /// let pool = Pool::threads(2)?;
    /// let first = Journal::open(&path)?.map(&pool, cube, -5..5)?;
    /// assert_eq!(RUNS.load(Ordering::Relaxed), 10);
    /// // Run again: everything comes from the journal.
    /// let second = Journal::open(&path)?.map(&pool, cube, -5..5)?;
    /// assert_eq!((first, RUNS.load(Ordering::Relaxed)), (second, 10));
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map<B, F, T, R>(
        &mut self,
        pool: &Pool<B>,
        f: F,
        items: impl IntoIterator<Item = T>,
    ) -> Result<Vec<R>>
    where
        F: Fn(T) -> R + Task<(T,), Output = R>,
        B: Runs<F, (T,)>,
        T: Serialize,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let () = <B as Submit<F, (T,)>>::ACCEPTS;
        self.starmap(pool, f, items.into_iter().map(|x| (x,)))
    }

    /// `pool.starmap(f, items)` through the journal: as [`map`](Self::map), with each
    /// item a tuple spread over `f`'s arguments.
    ///
    /// ```
    /// use fondo::{Journal, Pool};
    /// fn pow(b: u64, e: u32) -> u64 { b.pow(e) }
    ///
    /// # let path = std::env::temp_dir().join(format!("fondo-doc-starmap-{}.journal", std::process::id()));
    /// let mut journal = Journal::open(&path)?;
    /// assert_eq!(journal.starmap(&Pool::processes(2)?, pow, [(2, 10), (3, 4)])?, [1024, 81]);
    /// # drop(journal);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn starmap<B, F, Args, R>(
        &mut self,
        pool: &Pool<B>,
        f: F,
        items: impl IntoIterator<Item = Args>,
    ) -> Result<Vec<R>>
    where
        F: Task<Args, Output = R>,
        B: Runs<F, Args>,
        Args: Serialize,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let () = <B as Submit<F, Args>>::ACCEPTS;
        if let Some(why) = &self.broken {
            return Err(Error::Journal(why.clone()));
        }
        let number = self.next_map;
        self.next_map += 1;
        let items: Vec<Args> = items.into_iter().collect();
        let hashes = input_hashes(&items)?;
        let header = MapHeader {
            map: u32::try_from(number)
                .map_err(|_| Error::Journal("too many maps in one journal".into()))?,
            function: std::any::type_name::<F>().to_owned(),
            code: code_of::<F, Args>(),
            args: std::any::type_name::<Args>().to_owned(),
            result: std::any::type_name::<R>().to_owned(),
            inputs: items.len() as u64,
            inputs_hash: hash_of_hashes(&hashes),
        };
        let mut results: Vec<Option<R>> = Vec::with_capacity(items.len());
        results.resize_with(items.len(), || None);
        match self.maps.get_mut(number) {
            Some(on_record) => {
                check_map(
                    &self.path,
                    &on_record.header,
                    &header,
                    &on_record.results,
                    &hashes,
                )?;
                let records = std::mem::take(&mut on_record.results);
                for (position, record) in records.into_iter().enumerate() {
                    if let Some((_, bytes)) = record {
                        let value = crate::boundary::item::decode_item::<R>(
                            &self.data[bytes],
                            Payload::Result,
                        )
                        .map_err(|e| {
                            Error::Journal(format!(
                                "journal {}: the result on record at position {position} \
                                         of map {number} does not decode as `{}`: {}",
                                self.path.display(),
                                e.type_name,
                                e.message
                            ))
                        })?;
                        results[position] = Some(value);
                    }
                }
            }
            None => {
                let mut frame = Vec::new();
                push_frame(&mut frame, KIND_MAP, |body| encode_header(body, &header))
                    .and_then(|()| (&self.file).write_all(&frame).map_err(|e| e.to_string()))
                    .map_err(|e| self.break_with(format!("cannot write a map header: {e}")))?;
            }
        }
        let todo: Vec<(usize, Args)> = items
            .into_iter()
            .enumerate()
            .filter(|(p, _)| results[*p].is_none())
            .collect();
        if todo.is_empty() {
            return collect(results, Vec::new());
        }
        let run = Run {
            map: header.map,
            hashes: &hashes,
            settled: results.iter().map(Option::is_some).collect(),
            results: &mut results,
            errors: Vec::new(),
        };
        let errors = self.run(pool, f, todo, run)?;
        collect(results, errors)
    }

    /// Marks the journal unusable after a failed write and says why.
    fn break_with(&mut self, what: String) -> Error {
        let message = format!("journal {}: {what}", self.path.display());
        self.broken = Some(format!("{message} (an earlier map failed to write to it)"));
        Error::Journal(message)
    }

    /// Runs the positions in `todo` on `pool`, writing each result down as it arrives,
    /// with a thread flushing the file every `sync_every`. Returns the tasks' errors.
    fn run<B, F, Args, R>(
        &mut self,
        pool: &Pool<B>,
        f: F,
        todo: Vec<(usize, Args)>,
        mut run: Run<'_, R>,
    ) -> Result<Vec<(usize, Error)>>
    where
        F: Task<Args, Output = R>,
        B: Runs<F, Args>,
        R: Serialize + Send + 'static,
    {
        let file = &self.file;
        let every = self.sync_every;
        let flusher = Flusher {
            state: Monitor::new(FlushState {
                stop: false,
                error: None,
            }),
            dirty: AtomicBool::new(false),
        };
        let outcome = std::thread::scope(|scope| {
            let background = std::thread::Builder::new()
                .name("fondo-journal".into())
                .spawn_scoped(scope, || flusher.run(file, every))
                .ok();
            // Stops the flusher however `feed` ends (the scope waits for it, even
            // while unwinding).
            let stop = StopOnDrop(&flusher);
            let fed = feed(
                pool,
                f,
                todo,
                &mut run,
                file,
                &flusher,
                background.is_none(),
                every,
            );
            drop(stop);
            if let Some(thread) = background
                && thread.join().is_err()
            {
                return Err("the flushing thread panicked".to_owned());
            }
            fed?;
            if let Some(e) = flusher.state.lock().error.take() {
                return Err(format!("cannot flush it to disk: {e}"));
            }
            file.sync_data()
                .map_err(|e| format!("cannot flush it to disk: {e}"))
        });
        match outcome {
            Ok(()) => Ok(run.errors),
            Err(e) => Err(self.break_with(e)),
        }
    }
}

/// How long `open` waits for a journal's lock to be free: a worker process that is
/// being started holds a copy of every descriptor of this process between its
/// `fork` and its `exec`, and with it the lock of a journal just closed.
const LOCK_PATIENCE: Duration = Duration::from_secs(1);

/// Takes the journal's exclusive lock, waiting out a worker's start (see
/// [`LOCK_PATIENCE`]); on a file system without locks, warns and goes on.
fn lock(file: &File, shown: &str) -> Result<()> {
    use rustix::fs::{FlockOperation, flock};
    use rustix::io::Errno;
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match flock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(()),
            Err(e) if e == Errno::WOULDBLOCK && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) if e == Errno::WOULDBLOCK => {
                return Err(Error::Journal(format!(
                    "journal {shown} is in use by another running program (it holds the \
                     file's lock): two runs cannot share a journal"
                )));
            }
            // Some cluster file systems have no `flock` (Lustre mounted without
            // `-o flock`): go on, and say that two runs are not kept apart there.
            Err(e) if e == Errno::NOSYS || e == Errno::OPNOTSUPP || e == Errno::NOLCK => {
                crate::diag::diag!(
                    "fondo: journal {shown}: this file system cannot lock files ({e}); make sure \
                     only one run uses the journal at a time"
                );
                return Ok(());
            }
            Err(e) => {
                return Err(Error::Journal(format!(
                    "journal {shown}: cannot lock it: {}",
                    std::io::Error::from(e)
                )));
            }
        }
    }
}

/// Flushes the directory holding a new journal, so the file itself survives a crash.
fn sync_directory(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// The hash a journal names inputs with: xxHash3-64 (`XXH3_64bits`, seed 0) of the
/// bytes, the same in every build and on every machine, so another program (or
/// another xxHash library) can recompute a journal's. It guards against accidents,
/// not against an adversary.
///
/// ```
/// assert_eq!(fondo::journal::hash64(b""), 0x2d06_8005_38d3_94c2);
/// assert_ne!(fondo::journal::hash64(b"a"), fondo::journal::hash64(b"b"));
/// ```
pub fn hash64(bytes: &[u8]) -> u64 {
    crate::boundary::digest::hash64(bytes)
}
