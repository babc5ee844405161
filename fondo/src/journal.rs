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
//!   so that a chunk is about 2 ms of work, at most 4096 tasks): a few milliseconds
//!   of work per worker.
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
//!   1 file header   postcard { exe_size u64, exe_hash u64, exe_path String }   (the first frame)
//!   2 map header    postcard { map u32, function String, code i64, args String,
//!                              result String, inputs u64, inputs_hash u64 }
//!   3 result        map (LEB128) · position (LEB128) · input_hash u64 LE · result (postcard)
//! ```
//!
//! Hashes are [`hash64`]'s; `inputs_hash` is the hash of the count and every input's
//! hash, each as 8 bytes LE. A result frame for a 10 µs task returning a `u64` takes
//! about 25 bytes.

use crate::backend::seam::Submit;
use crate::backend::{Batch, Encoder, Runs};
use crate::error::{Error, Payload, Result, SerdeStep};
use crate::help::{Help, Helping};
use crate::monitor::Monitor;
use crate::pool::Pool;
use crate::sink::{Abortable, Sink};
use crate::task::Task;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

/// The first bytes of every journal.
const MAGIC: &[u8; 8] = b"FONDOJNL";
/// The format this fondo writes and reads.
const VERSION: u32 = 1;
/// Magic and version.
const PREAMBLE: usize = 12;
/// A frame's length and checksum.
const FRAME_HEAD: usize = 8;

const KIND_FILE: u8 = 1;
const KIND_MAP: u8 = 2;
const KIND_RESULT: u8 = 3;

/// How often results are flushed to disk unless [`Journal::sync_every`] says otherwise.
pub const DEFAULT_SYNC_EVERY: Duration = Duration::from_millis(200);

/// The work one chunk should hold when the pool sets no `chunksize`: long enough that a
/// chunk's round trip is a small part of it, short enough that a kill loses little.
const TARGET_CHUNK_NS: u64 = 2_000_000;
/// The largest automatic chunk.
pub(crate) const MAX_CHUNK: usize = 4096;

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

/// What the file says of one map.
struct MapOnRecord {
    header: MapHeader,
    /// By position: the input's hash and where the encoded result lies in `data`.
    results: Vec<Option<(u64, Range<usize>)>>,
    done: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileHeader {
    exe_size: u64,
    exe_hash: u64,
    exe_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MapHeader {
    map: u32,
    function: String,
    code: i64,
    args: String,
    result: String,
    inputs: u64,
    inputs_hash: u64,
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

/// What the bytes of a journal file hold.
struct Parsed {
    header: FileHeader,
    maps: Vec<MapOnRecord>,
    /// Length of the sound part: everything after it is torn or corrupt.
    valid: usize,
}

/// Whether a file is a journal, and what is in it.
enum Contents {
    /// Empty, or a beginning torn before its file header was whole: nothing on record.
    Fresh,
    Journal(Parsed),
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
        use rustix::io::Errno;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == Errno::WOULDBLOCK => {
                return Err(Error::Journal(format!(
                    "journal {shown} is in use by another running program (it holds the \
                     file's lock): two runs cannot share a journal"
                )));
            }
            // Some cluster file systems have no `flock` (Lustre mounted without
            // `-o flock`): go on, and say that two runs are not kept apart there.
            Err(e) if e == Errno::NOSYS || e == Errno::OPNOTSUPP || e == Errno::NOLCK => {
                eprintln!(
                    "fondo: journal {shown}: this file system cannot lock files ({e}); make sure \
                     only one run uses the journal at a time"
                );
            }
            Err(e) => return Err(io("cannot lock it", e.into())),
        }
        let exe = current_exe()?;
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
                push_frame(&mut bytes, KIND_FILE, |body| {
                    encode_header(body, &exe.header)
                })
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
                if parsed.header.exe_size != exe.header.exe_size
                    || parsed.header.exe_hash != exe.header.exe_hash
                {
                    return Err(Error::Journal(format!(
                        "journal {shown} was written by another executable ({}: {} bytes, hash \
                         {:016x}; this one is {}: {} bytes, hash {:016x}). A journal holds the \
                         results of one build: run that executable, or delete the journal (or \
                         give this run another path) to start over",
                        parsed.header.exe_path,
                        parsed.header.exe_size,
                        parsed.header.exe_hash,
                        exe.header.exe_path,
                        exe.header.exe_size,
                        exe.header.exe_hash,
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
    /// the first failure by position is returned once every task has finished (the
    /// others are journaled). Works on every backend.
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

/// The state of one map's run.
struct Run<'a, R> {
    map: u32,
    hashes: &'a [u64],
    results: &'a mut Vec<Option<R>>,
    /// By position: has an outcome (on record, or arrived in this run).
    settled: Vec<bool>,
    errors: Vec<(usize, Error)>,
}

impl<R> Run<'_, R> {
    fn settle(&mut self, position: usize, outcome: Result<R>) {
        self.settled[position] = true;
        match outcome {
            Ok(value) => self.results[position] = Some(value),
            Err(e) => self.errors.push((position, e)),
        }
    }
}

/// Feeds the pool a window of tasks at a time and writes each result as it arrives.
#[allow(clippy::too_many_arguments)]
fn feed<B, F, Args, R>(
    pool: &Pool<B>,
    f: F,
    todo: Vec<(usize, Args)>,
    run: &mut Run<'_, R>,
    mut file: &File,
    flusher: &Flusher,
    flush_here: bool,
    every: Duration,
) -> std::result::Result<(), String>
where
    F: Task<Args, Output = R>,
    B: Runs<F, Args>,
    R: Serialize + Send + 'static,
{
    let shape = pool.backend().shape();
    let helper = pool.backend().helper();
    let sink = Arc::new(JournalSink::<R>::new());
    pool.track(sink.clone());
    let f = Arc::new(f);
    let mut chunks = Chunks::new(shape.workers, shape.prefetch, shape.chunksize);
    let mut pending = todo.into_iter().peekable();
    let mut in_flight = 0usize;
    // A `Closed` or `Terminated` outcome: the pool takes no more work.
    let mut refused: Option<Error> = None;
    let mut buf = Vec::new();
    let mut last_flush = Instant::now();
    while in_flight > 0 || pending.peek().is_some() {
        if let Some(e) = refused.clone().filter(|_| in_flight == 0) {
            for (position, _) in pending.by_ref() {
                run.settle(position, Err(e.clone()));
            }
            break;
        }
        // Top up the window once half of it has come back.
        if refused.is_none() && pending.peek().is_some() && in_flight <= chunks.window() / 2 {
            chunks.adapt(pending.len());
            let mut batches = Vec::new();
            let window = chunks.window();
            while in_flight < window {
                let Some((start, first)) = pending.next() else {
                    break;
                };
                // Never past the window: it bounds what a kill can cost.
                let size = chunks.size.min(window - in_flight);
                let mut items = vec![first];
                while items.len() < size
                    && let Some((p, _)) = pending.peek()
                    && *p == start + items.len()
                {
                    if let Some((_, item)) = pending.next() {
                        items.push(item);
                    }
                }
                in_flight += items.len();
                let sink: Arc<dyn Sink<R>> = sink.clone();
                batches.push(Batch { items, start, sink });
            }
            if !batches.is_empty() {
                pool.submit(&f, batches, Encoder::Caller);
            }
        }
        let (arrived, aborted) = sink.wait(helper.as_ref());
        for (start, outcomes) in arrived {
            for (position, outcome) in (start..).zip(outcomes) {
                if run.settled.get(position) != Some(&false) {
                    continue; // a late duplicate: the first outcome won
                }
                in_flight = in_flight.saturating_sub(1);
                chunks.delivered();
                let outcome = match outcome {
                    Ok(value) => {
                        push_result(&mut buf, run.map, position, run.hashes[position], &value)
                            .map(|()| value)
                    }
                    Err(e) => {
                        if matches!(e, Error::Terminated | Error::Closed) {
                            refused.get_or_insert_with(|| e.clone());
                        }
                        Err(e)
                    }
                };
                run.settle(position, outcome);
            }
        }
        if !buf.is_empty() {
            file.write_all(&buf)
                .map_err(|e| format!("cannot write results: {e}"))?;
            buf.clear();
            flusher.dirty.store(true, Ordering::Release);
            if flush_here && last_flush.elapsed() >= every {
                flusher.dirty.store(false, Ordering::Release);
                file.sync_data()
                    .map_err(|e| format!("cannot flush it to disk: {e}"))?;
                last_flush = Instant::now();
            }
        }
        if let Some(e) = flusher.state.lock().error.take() {
            return Err(format!("cannot flush it to disk: {e}"));
        }
        if let Some(e) = aborted {
            // Terminated: nothing more arrives, and nothing more is handed out.
            for (position, _) in pending.by_ref() {
                run.settle(position, Err(e.clone()));
            }
            for position in 0..run.settled.len() {
                if !run.settled[position] {
                    run.settle(position, Err(e.clone()));
                }
            }
            break;
        }
    }
    sink.finish();
    Ok(())
}

/// The flushing thread's state.
struct FlushState {
    stop: bool,
    error: Option<std::io::Error>,
}

/// Flushes the file every interval while results were written since the last flush.
struct Flusher {
    state: Monitor<FlushState>,
    dirty: AtomicBool,
}

impl Flusher {
    fn run(&self, file: &File, every: Duration) {
        loop {
            let deadline = Instant::now().checked_add(every);
            let (state, _) = self
                .state
                .park_until(self.state.lock(), deadline, |s| s.stop);
            if state.stop {
                return;
            }
            drop(state);
            if self.dirty.swap(false, Ordering::AcqRel)
                && let Err(e) = file.sync_data()
            {
                self.state.lock().error = Some(e);
                return;
            }
        }
    }

    fn stop(&self) {
        let mut state = self.state.lock();
        state.stop = true;
        self.state.publish(state);
    }
}

/// Tells the flusher to stop when dropped.
struct StopOnDrop<'a>(&'a Flusher);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// How many tasks go in one batch, and how many may be out at once.
struct Chunks {
    workers: usize,
    prefetch: usize,
    /// The pool's `chunksize`, which the journal keeps to.
    fixed: bool,
    size: usize,
    /// Since when, and after how many results, the rate is measured.
    mark: Option<(Instant, usize)>,
    delivered: usize,
}

impl Chunks {
    fn new(workers: usize, prefetch: usize, chunksize: Option<usize>) -> Chunks {
        Chunks {
            workers: workers.max(1),
            prefetch,
            fixed: chunksize.is_some(),
            size: chunksize.unwrap_or(1).max(1),
            mark: None,
            delivered: 0,
        }
    }

    /// Tasks submitted and not yet written down, at most: every worker's pipeline full,
    /// and one chunk more each waiting.
    fn window(&self) -> usize {
        self.workers * (self.prefetch + 2) * self.size
    }

    fn delivered(&mut self) {
        if self.mark.is_none() {
            self.mark = Some((Instant::now(), 0));
        }
        self.delivered += 1;
    }

    /// Resizes automatic chunks to about `TARGET_CHUNK_NS` of work each, by the rate
    /// results arrive at (since the first, so start-up does not count): at most
    /// doubling each time, at most `MAX_CHUNK`, and no more than a worker's share of
    /// what is left.
    fn adapt(&mut self, left: usize) {
        if self.fixed {
            return;
        }
        if let Some((since, at)) = self.mark {
            let elapsed = since.elapsed();
            let done = self.delivered - at;
            if done > 0 && elapsed >= Duration::from_millis(1) {
                let per_task = (elapsed.as_nanos() * self.workers as u128 / done as u128).max(1);
                let want =
                    (u128::from(TARGET_CHUNK_NS) / per_task).clamp(1, MAX_CHUNK as u128) as usize;
                self.size = want.min(self.size * 2);
                if elapsed >= Duration::from_millis(200) {
                    // Measure over the recent past from here on.
                    self.mark = Some((Instant::now(), self.delivered));
                }
            }
        }
        self.size = self.size.min(left.div_ceil(self.workers)).max(1);
    }
}

/// Where a journaled map's outcomes land, in whatever order they come.
struct JournalSink<R> {
    state: Monitor<Arrivals<R>>,
}

struct Arrivals<R> {
    batches: Vec<(usize, Vec<Result<R>>)>,
    aborted: Option<Error>,
    finished: bool,
}

impl<R> JournalSink<R> {
    fn new() -> Self {
        JournalSink {
            state: Monitor::new(Arrivals {
                batches: Vec::new(),
                aborted: None,
                finished: false,
            }),
        }
    }

    /// Waits for outcomes (or an abort) and takes them. While spinning, reads the
    /// pool's answers itself through `helper`, as `imap` does.
    #[allow(clippy::type_complexity)]
    fn wait(
        &self,
        helper: Option<&Weak<dyn Help>>,
    ) -> (Vec<(usize, Vec<Result<R>>)>, Option<Error>) {
        let ready = |s: &Arrivals<R>| !s.batches.is_empty() || s.aborted.is_some();
        let mut spin = crate::spin::Spin::new();
        let mut helping: Option<Helping> = None;
        let mut st = self.state.lock();
        loop {
            if ready(&st) {
                return (std::mem::take(&mut st.batches), st.aborted.clone());
            }
            if spin.again() {
                drop(st);
                if helping.is_none() {
                    helping = helper.and_then(Helping::start);
                }
                if helping.as_ref().is_some_and(Helping::help) {
                    spin.reset();
                }
                st = self.state.lock();
                continue;
            }
            if let Some(h) = helping.take() {
                h.stop_to_block();
            }
            st = self.state.park_until(st, None, ready).0;
        }
    }

    /// The map is over: outcomes still to come are dropped.
    fn finish(&self) {
        let mut st = self.state.lock();
        st.finished = true;
        st.batches.clear();
    }
}

impl<R: Send> Abortable for JournalSink<R> {
    fn abort(&self, error: Error) {
        let mut st = self.state.lock();
        st.aborted.get_or_insert(error);
        self.state.publish(st);
    }
    fn is_complete(&self) -> bool {
        let st = self.state.lock();
        st.finished || st.aborted.is_some()
    }
}

impl<R: Send> Sink<R> for JournalSink<R> {
    fn put(&self, start: usize, results: Vec<Result<R>>) {
        let mut st = self.state.lock();
        if st.finished {
            return;
        }
        st.batches.push((start, results));
        self.state.publish(st);
    }
}

/// The results in order, or the first error by position.
fn collect<R>(results: Vec<Option<R>>, mut errors: Vec<(usize, Error)>) -> Result<Vec<R>> {
    if let Some((_, e)) = errors.iter().min_by_key(|(p, _)| *p) {
        return Err(e.clone());
    }
    errors.clear();
    results
        .into_iter()
        .collect::<Option<Vec<R>>>()
        .ok_or_else(|| {
            Error::Journal("internal error: a journaled map ended with a position missing".into())
        })
}

/// Refuses a map on record that is not this one: another function, other types,
/// other inputs.
fn check_map(
    path: &Path,
    on_record: &MapHeader,
    now: &MapHeader,
    records: &[Option<(u64, Range<usize>)>],
    hashes: &[u64],
) -> Result<()> {
    let shown = path.display();
    let n = now.map;
    let refuse = |why: String| {
        Err(Error::Journal(format!(
            "journal {shown} was written {why}: results are never mixed. Delete the journal (or \
             give this run another path) to start over"
        )))
    };
    if on_record.function != now.function || on_record.code != now.code {
        let detail = if on_record.function == now.function {
            format!(
                "`{}`, another closure or instance of that name",
                now.function
            )
        } else {
            format!("`{}`; this run's is `{}`", on_record.function, now.function)
        };
        return refuse(format!("for another function at map {n} ({detail})"));
    }
    if on_record.args != now.args || on_record.result != now.result {
        return refuse(format!(
            "for other types at map {n} ({} -> {} on record, {} -> {} now)",
            on_record.args, on_record.result, now.args, now.result
        ));
    }
    if on_record.inputs != now.inputs {
        return refuse(format!(
            "for other inputs at map {n} ({} inputs on record, {} now)",
            on_record.inputs, now.inputs
        ));
    }
    if let Some(position) = (0..records.len())
        .find(|&p| matches!(&records[p], Some((h, _)) if Some(h) != hashes.get(p)))
    {
        return refuse(format!(
            "for other inputs at map {n} (position {position} differs)"
        ));
    }
    if on_record.inputs_hash != now.inputs_hash {
        return refuse(format!(
            "for other inputs at map {n} (they differ at positions with no result on record yet)"
        ));
    }
    Ok(())
}

/// Each input's hash, from its serde encoding.
fn input_hashes<Args: Serialize>(items: &[Args]) -> Result<Vec<u64>> {
    let mut scratch = Vec::new();
    items
        .iter()
        .enumerate()
        .map(|(position, item)| {
            scratch.clear();
            let encoded =
                crate::panic::catch(|| crate::boundary::item::encode_into(&mut scratch, item));
            let message = match encoded {
                Ok(Ok(())) => return Ok(hash64(&scratch)),
                Ok(Err(e)) => e.to_string(),
                Err(caught) => format!("panicked: {}", caught.message),
            };
            Err(Error::Serialization {
                what: Payload::Arguments,
                step: SerdeStep::Serialize,
                type_name: std::any::type_name::<Args>().to_owned(),
                message: format!("input at position {position}, hashed for the journal: {message}"),
            })
        })
        .collect()
}

fn hash_of_hashes(hashes: &[u64]) -> u64 {
    let mut h = Hasher64::new();
    h.write(&(hashes.len() as u64).to_le_bytes());
    for x in hashes {
        h.write(&x.to_le_bytes());
    }
    h.finish()
}

/// Appends one frame: room for its head, the kind, whatever `body` appends, then the
/// head filled in.
fn push_frame(
    out: &mut Vec<u8>,
    kind: u8,
    body: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    let at = out.len();
    out.extend_from_slice(&[0; FRAME_HEAD]);
    out.push(kind);
    if let Err(e) = body(out) {
        out.truncate(at);
        return Err(e);
    }
    let Ok(len) = u32::try_from(out.len() - at - FRAME_HEAD) else {
        out.truncate(at);
        return Err("a record of 4 GiB or more".into());
    };
    let len = len.to_le_bytes();
    let crc = frame_crc(len, &out[at + FRAME_HEAD..]);
    out[at..at + 4].copy_from_slice(&len);
    out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn frame_crc(len: [u8; 4], body: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(body);
    crc.finalize()
}

/// Appends a result frame; a result whose `Serialize` fails (or panics) is that
/// task's error, and appends nothing.
fn push_result<R: Serialize>(
    out: &mut Vec<u8>,
    map: u32,
    position: usize,
    input_hash: u64,
    value: &R,
) -> Result<()> {
    push_frame(out, KIND_RESULT, |body| {
        leb128(body, u64::from(map));
        leb128(body, position as u64);
        body.extend_from_slice(&input_hash.to_le_bytes());
        match crate::panic::catch(|| crate::boundary::item::encode_into(body, value)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(caught) => Err(format!("panicked: {}", caught.message)),
        }
    })
    .map_err(|message| Error::Serialization {
        what: Payload::Result,
        step: SerdeStep::Serialize,
        type_name: std::any::type_name::<R>().to_owned(),
        message: format!("{message} (encoding it for the journal)"),
    })
}

/// Appends a header's postcard encoding.
fn encode_header<H: Serialize>(body: &mut Vec<u8>, header: &H) -> std::result::Result<(), String> {
    crate::boundary::item::encode_into(body, header).map_err(|e| e.to_string())
}

fn leb128(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_leb128(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The sound frame at `at`: its body's range and where the next frame starts; `None`
/// if it is incomplete or its checksum fails.
fn frame_at(data: &[u8], at: usize) -> Option<(Range<usize>, usize)> {
    let head = data.get(at..at.checked_add(FRAME_HEAD)?)?;
    let len: [u8; 4] = head[..4].try_into().ok()?;
    let crc = u32::from_le_bytes(head[4..8].try_into().ok()?);
    let body_len = u32::from_le_bytes(len) as usize;
    let start = at + FRAME_HEAD;
    let end = start.checked_add(body_len)?;
    let body = data.get(start..end)?;
    (body_len > 0 && frame_crc(len, body) == crc).then_some((start..end, end))
}

/// Reads a journal's bytes: the file header, the maps and results up to the first
/// frame that is torn, corrupt or out of place.
fn parse(data: &[u8], shown: &str) -> Result<Contents> {
    let mut preamble = [0u8; PREAMBLE];
    preamble[..8].copy_from_slice(MAGIC);
    preamble[8..].copy_from_slice(&VERSION.to_le_bytes());
    let not_journal = || {
        Error::Journal(format!(
            "{shown} is not a fondo journal (it does not begin with `FONDOJNL`): refusing to \
             touch it"
        ))
    };
    if data.len() < 8 {
        return if MAGIC.starts_with(data) {
            Ok(Contents::Fresh)
        } else {
            Err(not_journal())
        };
    }
    if &data[..8] != MAGIC {
        return Err(not_journal());
    }
    if data.len() < PREAMBLE {
        // A version torn mid-write: only this fondo's own would have been written.
        return if preamble.starts_with(data) {
            Ok(Contents::Fresh)
        } else {
            Err(Error::Journal(format!(
                "journal {shown} has a torn version number"
            )))
        };
    }
    let version = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    if version != VERSION {
        return Err(Error::Journal(format!(
            "journal {shown} has format version {version}; this fondo reads version {VERSION}"
        )));
    }
    let Some((body, mut at)) = frame_at(data, PREAMBLE) else {
        // Torn before its header was whole: no result was ever written after it.
        return Ok(Contents::Fresh);
    };
    let header = match data[body.clone()].split_first() {
        Some((&KIND_FILE, rest)) => postcard::from_bytes::<FileHeader>(rest).ok(),
        _ => None,
    }
    .ok_or_else(|| {
        Error::Journal(format!(
            "journal {shown} is corrupt: its first record is not its header"
        ))
    })?;
    let mut maps: Vec<MapOnRecord> = Vec::new();
    let mut valid = at;
    while let Some((body, next)) = frame_at(data, at) {
        let Some((&kind, rest)) = data[body.clone()].split_first() else {
            break;
        };
        let sound = match kind {
            KIND_MAP => match postcard::from_bytes::<MapHeader>(rest) {
                Ok(h) if h.map as usize == maps.len() && usize::try_from(h.inputs).is_ok() => {
                    let inputs = h.inputs as usize;
                    let mut results = Vec::new();
                    if results.try_reserve_exact(inputs).is_err() {
                        false
                    } else {
                        results.resize(inputs, None);
                        maps.push(MapOnRecord {
                            header: h,
                            results,
                            done: 0,
                        });
                        true
                    }
                }
                _ => false,
            },
            KIND_RESULT => {
                let mut r = rest;
                let fields = read_leb128(&mut r).zip(read_leb128(&mut r));
                match (fields, r.split_first_chunk::<8>()) {
                    (Some((map, position)), Some((hash, value))) => {
                        let value_at = body.end - value.len();
                        match usize::try_from(map).ok().and_then(|m| maps.get_mut(m)) {
                            Some(m) => match usize::try_from(position)
                                .ok()
                                .and_then(|p| m.results.get_mut(p))
                            {
                                Some(slot) => {
                                    if slot.is_none() {
                                        *slot =
                                            Some((u64::from_le_bytes(*hash), value_at..body.end));
                                        m.done += 1;
                                    }
                                    true
                                }
                                None => false,
                            },
                            None => false,
                        }
                    }
                    _ => false,
                }
            }
            _ => false,
        };
        if !sound {
            break;
        }
        at = next;
        valid = next;
    }
    Ok(Contents::Journal(Parsed {
        header,
        maps,
        valid,
    }))
}

/// The running executable as a journal names it.
struct Exe {
    header: FileHeader,
}

/// Hashes `/proc/self/exe` once per process: the same bytes, wherever the file is
/// (a copy on another node), are the same program.
fn current_exe() -> Result<&'static Exe> {
    static EXE: OnceLock<std::result::Result<Exe, String>> = OnceLock::new();
    EXE.get_or_init(|| {
        let mut file = File::open("/proc/self/exe")
            .map_err(|e| format!("cannot read this executable (/proc/self/exe): {e}"))?;
        let mut hasher = Hasher64::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.write(&buf[..n]);
                    size += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("cannot read this executable: {e}")),
            }
        }
        let exe_path = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "this executable".into());
        Ok(Exe {
            header: FileHeader {
                exe_size: size,
                exe_hash: hasher.finish(),
                exe_path,
            },
        })
    })
    .as_ref()
    .map_err(|e| Error::Journal(e.clone()))
}

/// Flushes the directory holding a new journal, so the file itself survives a crash.
fn sync_directory(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// The fixed point code offsets are measured from.
#[inline(never)]
fn anchor() -> &'static str {
    "fondo::journal::anchor"
}

/// Calls a task: its monomorphised address names the task's code.
#[inline(never)]
fn call_task<F: Task<Args>, Args>(f: &F, args: Args) -> F::Output {
    f.call(args)
}

/// Where `F`'s code lies in this executable, relative to a fixed point: the same in
/// every run of the same executable, different for two closures of the same name.
fn code_of<F: Task<Args>, Args>() -> i64 {
    let call: fn(&F, Args) -> F::Output = call_task::<F, Args>;
    let anchor: fn() -> &'static str = anchor;
    (call as usize as i64).wrapping_sub(anchor as usize as i64)
}

/// fondo's stable 64-bit hash (xxHash64's round and final mix on one lane): defined
/// here, so it gives the same value in every build, on every machine — unlike
/// `std`'s `DefaultHasher`. It names inputs and executables against accidents, not
/// against an adversary.
///
/// ```
/// assert_eq!(fondo::journal::hash64(b""), fondo::journal::hash64(b""));
/// assert_ne!(fondo::journal::hash64(b"a"), fondo::journal::hash64(b"b"));
/// ```
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h = Hasher64::new();
    h.write(bytes);
    h.finish()
}

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;

/// [`hash64`] over bytes fed in pieces.
struct Hasher64 {
    acc: u64,
    len: u64,
    tail: [u8; 8],
    tail_len: usize,
}

impl Hasher64 {
    fn new() -> Self {
        Hasher64 {
            acc: P3,
            len: 0,
            tail: [0; 8],
            tail_len: 0,
        }
    }

    #[inline]
    fn round(&mut self, word: u64) {
        self.acc = self
            .acc
            .wrapping_add(word.wrapping_mul(P2))
            .rotate_left(31)
            .wrapping_mul(P1);
    }

    fn write(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if self.tail_len > 0 {
            let take = (8 - self.tail_len).min(bytes.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&bytes[..take]);
            self.tail_len += take;
            bytes = &bytes[take..];
            if self.tail_len < 8 {
                return;
            }
            self.round(u64::from_le_bytes(self.tail));
            self.tail_len = 0;
        }
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            self.round(u64::from_le_bytes(b));
        }
        let rest = words.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    fn finish(&self) -> u64 {
        let mut last = [0u8; 8];
        last[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
        let mut h = self.acc ^ self.len.wrapping_mul(P1);
        h = h
            .wrapping_add(u64::from_le_bytes(last).wrapping_mul(P2))
            .rotate_left(27)
            .wrapping_mul(P1);
        h ^= h >> 33;
        h = h.wrapping_mul(P2);
        h ^= h >> 29;
        h = h.wrapping_mul(P3);
        h ^ (h >> 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A journal path of its own, removed when dropped.
    struct Temp(PathBuf);

    impl Temp {
        fn new(name: &str) -> Temp {
            let dir =
                std::env::temp_dir().join(format!("fondo-journal-tests-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let path = dir.join(name);
            let _ = std::fs::remove_file(&path);
            Temp(path)
        }
        fn len(&self) -> u64 {
            std::fs::metadata(&self.0).expect("journal exists").len()
        }
    }

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn threads() -> Pool<crate::Threads> {
        Pool::threads(2).expect("pool")
    }

    fn refusal(e: Error) -> String {
        match e {
            Error::Journal(m) => m,
            other => panic!("expected Error::Journal, got {other:?}"),
        }
    }

    #[test]
    fn a_completed_journal_returns_its_results_and_runs_nothing() {
        static ARMED: AtomicBool = AtomicBool::new(false);
        fn square(x: u64) -> u64 {
            assert!(!ARMED.load(Ordering::SeqCst), "ran although journaled");
            x * x
        }
        let t = Temp::new("completed");
        let pool = threads();
        let first = Journal::open(&t.0)
            .unwrap()
            .map(&pool, square, 0..500)
            .unwrap();
        ARMED.store(true, Ordering::SeqCst);
        // A closed pool takes nothing: any task submitted would fail with Closed.
        pool.close();
        let mut again = Journal::open(&t.0).unwrap();
        assert_eq!(again.len(), 500);
        assert_eq!(again.map(&pool, square, 0..500).unwrap(), first);
        assert_eq!(first[499], 499 * 499);
    }

    #[test]
    fn a_torn_or_corrupt_end_is_dropped_and_only_its_tasks_run_again() {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        fn counted(x: u32) -> u64 {
            RUNS.fetch_add(1, Ordering::SeqCst);
            u64::from(x) * 3
        }
        let t = Temp::new("torn");
        let pool = threads();
        let expected = Journal::open(&t.0)
            .unwrap()
            .map(&pool, counted, 0..100)
            .unwrap();
        assert_eq!(RUNS.swap(0, Ordering::SeqCst), 100);
        let full = t.len();

        // A record torn by a kill mid-write: 3 bytes short.
        let f = OpenOptions::new().write(true).open(&t.0).unwrap();
        f.set_len(full - 3).unwrap();
        drop(f);
        let mut j = Journal::open(&t.0).unwrap();
        assert_eq!(j.len(), 99);
        assert!(
            j.discarded_bytes() > 0 && j.discarded_bytes() < 40,
            "{}",
            j.discarded_bytes()
        );
        assert_eq!(j.map(&pool, counted, 0..100).unwrap(), expected);
        assert_eq!(
            RUNS.swap(0, Ordering::SeqCst),
            1,
            "only the torn result ran again"
        );
        drop(j);
        assert_eq!(
            t.len(),
            full,
            "the torn end was cut off, the result written again"
        );

        // Zeros past the end (a crash after the file grew, before its data was written),
        // then garbage.
        for junk in [vec![0u8; 4096], b"\x05\0\0\0garbage".to_vec()] {
            let mut f = OpenOptions::new().append(true).open(&t.0).unwrap();
            f.write_all(&junk).unwrap();
            drop(f);
            let mut j = Journal::open(&t.0).unwrap();
            assert_eq!((j.len(), j.discarded_bytes()), (100, junk.len() as u64));
            assert_eq!(j.map(&pool, counted, 0..100).unwrap(), expected);
            assert_eq!(RUNS.swap(0, Ordering::SeqCst), 0);
            drop(j);
            assert_eq!(t.len(), full);
        }

        // One flipped bit in the middle: that record and all after it are dropped.
        let mut bytes = std::fs::read(&t.0).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
        std::fs::write(&t.0, &bytes).unwrap();
        let summary = Journal::inspect(&t.0).unwrap();
        let kept = summary.maps[0].done.len();
        assert!(kept > 30 && kept < 70, "{kept}");
        assert!(summary.discarded_bytes > 0);
        let mut j = Journal::open(&t.0).unwrap();
        assert_eq!(j.map(&pool, counted, 0..100).unwrap(), expected);
        assert_eq!(RUNS.swap(0, Ordering::SeqCst), 100 - kept);
    }

    #[test]
    fn another_function_is_refused_even_with_the_same_name() {
        fn square(x: u64) -> u64 {
            x * x
        }
        fn cube(x: u64) -> u64 {
            x * x * x
        }
        let t = Temp::new("function");
        let pool = threads();
        Journal::open(&t.0)
            .unwrap()
            .map(&pool, square, 0..10)
            .unwrap();
        let size = t.len();
        let m = refusal(
            Journal::open(&t.0)
                .unwrap()
                .map(&pool, cube, 0..10)
                .unwrap_err(),
        );
        assert!(m.contains("for another function at map 0"), "{m}");
        assert!(m.contains("square") && m.contains("cube"), "{m}");
        assert_eq!(t.len(), size, "a refused journal is left as it was");

        // Two closures of one function have one name; their code tells them apart.
        let t = Temp::new("closures");
        let plus_one = |x: u64| x + 1;
        let plus_two = |x: u64| x + 2;
        assert_eq!(
            std::any::type_name_of_val(&plus_one),
            std::any::type_name_of_val(&plus_two)
        );
        Journal::open(&t.0)
            .unwrap()
            .map(&pool, plus_one, 0..10)
            .unwrap();
        let m = refusal(
            Journal::open(&t.0)
                .unwrap()
                .map(&pool, plus_two, 0..10)
                .unwrap_err(),
        );
        assert!(
            m.contains("another closure or instance of that name"),
            "{m}"
        );
        // The same closure again is accepted.
        assert_eq!(
            Journal::open(&t.0)
                .unwrap()
                .map(&pool, plus_one, 0..10)
                .unwrap()[9],
            10
        );
    }

    #[test]
    fn other_inputs_are_refused_naming_where_they_differ() {
        static FAIL_FROM: AtomicUsize = AtomicUsize::new(usize::MAX);
        fn half(x: u32) -> u32 {
            assert!((x as usize) < FAIL_FROM.load(Ordering::SeqCst), "not now");
            x / 2
        }
        let t = Temp::new("inputs");
        let pool = threads();
        let inputs: Vec<u32> = (0..100).collect();
        Journal::open(&t.0)
            .unwrap()
            .map(&pool, half, inputs.clone())
            .unwrap();
        let m = refusal(
            Journal::open(&t.0)
                .unwrap()
                .map(&pool, half, 0..101)
                .unwrap_err(),
        );
        assert!(m.contains("100 inputs on record, 101 now"), "{m}");
        let mut changed = inputs.clone();
        changed[17] = 1000;
        let m = refusal(
            Journal::open(&t.0)
                .unwrap()
                .map(&pool, half, changed)
                .unwrap_err(),
        );
        assert!(m.contains("position 17 differs"), "{m}");
        let m = refusal(
            Journal::open(&t.0)
                .unwrap()
                .map(&pool, |x: u64| x, 0..100u64)
                .unwrap_err(),
        );
        assert!(m.contains("another function"), "{m}");

        // Results for 0..50 only; an input past them changes.
        let t = Temp::new("inputs-partial");
        FAIL_FROM.store(50, Ordering::SeqCst);
        let e = Journal::open(&t.0)
            .unwrap()
            .map(&pool, half, inputs.clone())
            .unwrap_err();
        assert!(matches!(e, Error::Panicked { .. }), "{e:?}");
        FAIL_FROM.store(usize::MAX, Ordering::SeqCst);
        changed = inputs.clone();
        changed[80] = 7;
        let m = refusal(
            Journal::open(&t.0)
                .unwrap()
                .map(&pool, half, changed)
                .unwrap_err(),
        );
        assert!(m.contains("positions with no result on record yet"), "{m}");
        assert_eq!(
            Journal::open(&t.0)
                .unwrap()
                .map(&pool, half, inputs)
                .unwrap()[99],
            49
        );
    }

    #[test]
    fn a_journal_of_another_executable_is_refused() {
        let t = Temp::new("exe");
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        let other = FileHeader {
            exe_size: 12345,
            exe_hash: 0xdead_beef,
            exe_path: "/elsewhere/prog".into(),
        };
        push_frame(&mut bytes, KIND_FILE, |b| encode_header(b, &other)).unwrap();
        std::fs::write(&t.0, &bytes).unwrap();
        let m = refusal(Journal::open(&t.0).unwrap_err());
        assert!(
            m.contains("was written by another executable (/elsewhere/prog: 12345 bytes"),
            "{m}"
        );
        assert_eq!(std::fs::read(&t.0).unwrap(), bytes, "left as it was");
    }

    #[test]
    fn what_is_not_a_journal_is_left_alone() {
        let t = Temp::new("not-journal");
        // A sound first frame that is not the file header.
        let mut headless = b"FONDOJNL\x01\0\0\0".to_vec();
        push_frame(&mut headless, KIND_RESULT, |b| {
            b.extend_from_slice(b"abc");
            Ok(())
        })
        .unwrap();
        for (contents, says) in [
            (&b"hello, world\n"[..], "is not a fondo journal"),
            (&b"FONDOJNL\x02\0\0\0"[..], "format version 2"),
            (&headless[..], "its first record is not its header"),
            (&b"x"[..], "is not a fondo journal"),
        ] {
            std::fs::write(&t.0, contents).unwrap();
            let m = refusal(Journal::open(&t.0).unwrap_err());
            assert!(m.contains(says), "{m}");
            assert_eq!(std::fs::read(&t.0).unwrap(), contents);
        }
    }

    #[test]
    fn a_header_torn_while_it_was_written_starts_over() {
        let t = Temp::new("torn-header");
        let pool = threads();
        Journal::open(&t.0)
            .unwrap()
            .map(&pool, |x: u8| x, [1, 2])
            .unwrap();
        let whole = std::fs::read(&t.0).unwrap();
        let header_end = frame_at(&whole, PREAMBLE).unwrap().1;
        for cut in [0, 3, 8, 10, PREAMBLE, PREAMBLE + 5, header_end - 1] {
            std::fs::write(&t.0, &whole[..cut]).unwrap();
            let j = Journal::open(&t.0).unwrap();
            assert!(j.is_empty(), "cut at {cut}");
            assert_eq!(j.discarded_bytes(), cut as u64);
            drop(j);
            assert_eq!(
                std::fs::read(&t.0).unwrap(),
                whole[..header_end],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn one_run_at_a_time() {
        let t = Temp::new("locked");
        let first = Journal::open(&t.0).unwrap();
        let m = refusal(Journal::open(&t.0).unwrap_err());
        assert!(m.contains("in use by another running program"), "{m}");
        drop(first);
        Journal::open(&t.0).unwrap();
    }

    #[test]
    fn failed_tasks_are_not_journaled_and_run_again() {
        static FAILING: AtomicBool = AtomicBool::new(true);
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        fn flaky(x: u32) -> u32 {
            RUNS.fetch_add(1, Ordering::SeqCst);
            assert!(
                !(FAILING.load(Ordering::SeqCst) && x % 10 == 3),
                "flaky {x}"
            );
            x + 1
        }
        let t = Temp::new("failed");
        let pool = threads();
        let e = Journal::open(&t.0)
            .unwrap()
            .map(&pool, flaky, 0..100)
            .unwrap_err();
        assert!(
            matches!(&e, Error::Panicked { message, .. } if message == "flaky 3"),
            "{e:?}"
        );
        assert_eq!(RUNS.swap(0, Ordering::SeqCst), 100, "every task ran");
        assert_eq!(Journal::inspect(&t.0).unwrap().maps[0].done.len(), 90);
        FAILING.store(false, Ordering::SeqCst);
        let v = Journal::open(&t.0)
            .unwrap()
            .map(&pool, flaky, 0..100)
            .unwrap();
        assert_eq!(
            RUNS.load(Ordering::SeqCst),
            10,
            "only the failed ones ran again"
        );
        assert_eq!(v, (1..=100).collect::<Vec<u32>>());
    }

    #[test]
    fn several_maps_resume_in_order() {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        static STOP_AT: AtomicUsize = AtomicUsize::new(usize::MAX);
        fn words(n: u32) -> String {
            RUNS.fetch_add(1, Ordering::SeqCst);
            "ab".repeat(n as usize)
        }
        fn length(s: String, k: u32) -> u64 {
            RUNS.fetch_add(1, Ordering::SeqCst);
            assert!((k as usize) < STOP_AT.load(Ordering::SeqCst), "stopped");
            s.len() as u64 * u64::from(k)
        }
        let t = Temp::new("stages");
        let pool = threads();
        let run = |j: &mut Journal| -> Result<Vec<u64>> {
            let a = j.map(&pool, words, 0..40)?;
            let empty: Vec<u32> = j.map(&pool, |x: u32| x, Vec::new())?;
            assert!(empty.is_empty());
            j.starmap(&pool, length, a.into_iter().zip(0..))
        };
        STOP_AT.store(25, Ordering::SeqCst);
        assert!(run(&mut Journal::open(&t.0).unwrap()).is_err());
        assert_eq!(RUNS.swap(0, Ordering::SeqCst), 80);
        let s = Journal::inspect(&t.0).unwrap();
        assert_eq!(s.maps.len(), 3);
        assert_eq!(
            (s.maps[0].done.len(), s.maps[1].inputs, s.maps[2].done.len()),
            (40, 0, 25)
        );
        assert!(
            s.maps[2].function.ends_with("length"),
            "{}",
            s.maps[2].function
        );
        STOP_AT.store(usize::MAX, Ordering::SeqCst);
        let v = run(&mut Journal::open(&t.0).unwrap()).unwrap();
        assert_eq!(
            RUNS.swap(0, Ordering::SeqCst),
            15,
            "only stage 2's missing tasks ran"
        );
        assert_eq!(v[39], 78 * 39);
        assert_eq!(run(&mut Journal::open(&t.0).unwrap()).unwrap(), v);
        assert_eq!(RUNS.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn worker_processes_run_a_journaled_map() {
        fn mix(x: u64) -> (u64, String) {
            (x.wrapping_mul(0x9E37_79B9_7F4A_7C15), format!("{x}"))
        }
        let t = Temp::new("processes");
        let pool = Pool::processes(2).unwrap();
        let expected: Vec<_> = (0..3000).map(mix).collect();
        assert_eq!(
            Journal::open(&t.0)
                .unwrap()
                .map(&pool, mix, 0..3000)
                .unwrap(),
            expected
        );
        let f = OpenOptions::new().write(true).open(&t.0).unwrap();
        f.set_len(t.len() - 1).unwrap();
        drop(f);
        let mut j = Journal::open(&t.0).unwrap();
        assert_eq!(j.len(), 2999);
        assert_eq!(j.map(&pool, mix, 0..3000).unwrap(), expected);
        drop(j);
        assert_eq!(Journal::inspect(&t.0).unwrap().maps[0].done.len(), 3000);
    }

    #[test]
    fn a_terminated_pool_keeps_what_arrived() {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        fn slow(x: u32) -> u32 {
            RUNS.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1));
            x
        }
        let t = Temp::new("terminated");
        let pool = threads();
        let e = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                pool.terminate();
            });
            Journal::open(&t.0)
                .unwrap()
                .map(&pool, slow, 0..5000)
                .unwrap_err()
        });
        assert!(matches!(e, Error::Terminated), "{e:?}");
        let done = Journal::inspect(&t.0).unwrap().maps[0].done.len();
        let ran = RUNS.swap(0, Ordering::SeqCst);
        assert!(done > 0 && done < 5000, "{done}");
        assert!(ran >= done);
        let v = Journal::open(&t.0)
            .unwrap()
            .map(&threads(), slow, 0..5000)
            .unwrap();
        assert_eq!(v.len(), 5000);
        assert_eq!(RUNS.load(Ordering::SeqCst), 5000 - done);
    }

    #[test]
    fn a_result_that_cannot_be_encoded_is_that_tasks_error() {
        #[derive(Debug)]
        struct Picky(u32);
        impl Serialize for Picky {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                if self.0 == 4 {
                    return Err(serde::ser::Error::custom("four is unwritable"));
                }
                s.serialize_u32(self.0)
            }
        }
        impl<'de> Deserialize<'de> for Picky {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                u32::deserialize(d).map(Picky)
            }
        }
        let t = Temp::new("picky");
        let e = Journal::open(&t.0)
            .unwrap()
            .map(&threads(), Picky, 0..10)
            .unwrap_err();
        assert!(
            matches!(&e, Error::Serialization { what: Payload::Result, message, .. } if message.contains("four is unwritable")),
            "{e:?}"
        );
        assert_eq!(Journal::inspect(&t.0).unwrap().maps[0].done.len(), 9);
    }

    #[test]
    fn a_short_flush_interval_and_fixed_chunks_work() {
        let t = Temp::new("flush");
        let pool = Pool::builder().workers(2).chunksize(3).threads().unwrap();
        let mut j = Journal::open(&t.0)
            .unwrap()
            .sync_every(Duration::from_micros(1));
        let v = j
            .map(
                &pool,
                |x: u64| {
                    std::thread::sleep(Duration::from_micros(50));
                    x ^ 5
                },
                0..2000,
            )
            .unwrap();
        assert_eq!(v[1000], 1000 ^ 5);
    }

    #[test]
    fn hash64_is_fixed_and_fed_in_any_pieces() {
        // Fixed values: a change to the hash would orphan every journal written so far.
        assert_eq!(hash64(b""), HASH_EMPTY);
        assert_eq!(hash64(b"fondo journal"), HASH_FONDO);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = hash64(&data);
        for pieces in [1, 3, 7, 8, 9, 64, 999] {
            let mut h = Hasher64::new();
            for c in data.chunks(pieces) {
                h.write(c);
            }
            assert_eq!(h.finish(), whole, "pieces of {pieces}");
        }
        let mut changed = data.clone();
        changed[500] ^= 1;
        assert_ne!(hash64(&changed), whole);
        assert_ne!(hash64(&data[..999]), whole);
        assert_ne!(hash64(&[0]), hash64(&[0, 0]), "the length counts");
    }

    const HASH_EMPTY: u64 = 836160784010005782;
    const HASH_FONDO: u64 = 10291117207418530135;

    #[test]
    fn leb128_round_trips() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            leb128(&mut b, v);
            let mut r = &b[..];
            assert_eq!(read_leb128(&mut r), Some(v));
            assert!(r.is_empty());
        }
        assert_eq!(read_leb128(&mut &[0x80u8][..]), None);
    }
}
