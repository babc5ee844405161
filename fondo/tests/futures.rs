//! The futures API (issue 17), on threads and processes alike: `wait` and
//! `as_completed` over any results, `cancel` / `cancelled` / `running`,
//! `shutdown(Pending::Cancel)`, `Imap::next_timeout`, exact sizes under a real
//! indicatif bar, async use from tokio (`imap_owned`, `next_async`, the `Stream`),
//! submissions that never hold a runtime's thread, and `map` errors that say which
//! input failed.
//!
//! Tasks that must still be waiting are held on a file-system latch the test opens
//! (a [`Scene`]), never timed with sleeps; every wait is bounded, and no test
//! asserts a wall-clock figure but the tick-gap one, whose bound (250 ms) is ten
//! times looser than the figure it guards and only catches a blocking submission.
//! The CPython and loky tests this API made portable are in `ported_cpython.rs`
//! and `ported_loky.rs`.

mod common;
use common::both::on_both;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Deadline, TempDir, TerminateOnPanic, eventually, must_get};
use fondo::{AsyncResult, Error, Pending, Pool, ReturnWhen, Watchable};

/// A whole test, past which its watchdog aborts the binary.
const TEST_LIMIT: Duration = Duration::from_secs(120);
/// Waiting for something that must happen: generous, it only tells a hang from slowness.
const LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// A scene in the file system: tasks on either backend leave marks there and wait
// for the test to open it.
// ---------------------------------------------------------------------------

/// A directory tasks mark (`ran-<i>`) and wait in until the test opens it; opened
/// (and removed) when dropped, so a failing assertion never leaves a task waiting.
struct Scene {
    dir: TempDir,
}

impl Scene {
    fn new(tag: &str) -> Scene {
        Scene {
            dir: TempDir::new(tag),
        }
    }

    /// The argument tasks take.
    fn arg(&self) -> String {
        self.dir.0.to_string_lossy().into_owned()
    }

    /// Lets every waiting task go on.
    fn open(&self) {
        std::fs::File::create(self.dir.file("open")).expect("open the scene");
    }

    /// The tasks that have started, by number.
    fn ran(&self) -> BTreeSet<u32> {
        self.dir
            .names()
            .iter()
            .filter_map(|n| n.strip_prefix("ran-")?.parse().ok())
            .collect()
    }

    /// Waits (bounded) until task `i` has started.
    fn started(&self, i: u32) -> bool {
        eventually(LIMIT, || self.ran().contains(&i))
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        self.open();
    }
}

/// Marks task `i` started in `scene`.
fn mark(scene: &str, i: u32) {
    let _ = std::fs::File::create(Path::new(scene).join(format!("ran-{i}")));
}

/// A task: marks itself started and returns `i`.
fn run(scene: String, i: u32) -> u32 {
    mark(&scene, i);
    i
}

/// A task: marks itself started, then waits until the scene is opened (or gone,
/// or two minutes passed: a worker never outlives a broken test by much).
fn hold(scene: String, i: u32) -> u32 {
    mark(&scene, i);
    let dir = Path::new(&scene);
    let end = Instant::now() + Duration::from_secs(120);
    while !dir.join("open").exists() && dir.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(2));
    }
    i
}

/// [`hold`] on one tuple, for `imap`.
fn hold_pair((scene, i): (String, u32)) -> u32 {
    hold(scene, i)
}

/// [`run`] on one tuple, for `imap`.
fn run_pair((scene, i): (String, u32)) -> u32 {
    run(scene, i)
}

/// A task that fails.
fn fail(i: u32) -> u32 {
    panic!("task {i} fails")
}

fn square(x: u64) -> u64 {
    x * x
}

/// `square` on a `u32` (a `Range<u32>` is an `ExactSizeIterator`; a `Range<u64>`,
/// which may be longer than `usize`, is not).
fn square32(x: u32) -> u64 {
    square(u64::from(x))
}

// ---------------------------------------------------------------------------
// wait
// ---------------------------------------------------------------------------

// FirstCompleted returns once one result is done; results complete already count at
// once; AllCompleted waits for the rest.
on_both! {
    fn wait_first_completed_then_all(pool = Pool::builder().workers(2)) {
        let scene = Scene::new("wait-first");
        let held = pool.apply_async(hold, (scene.arg(), 0));
        assert!(scene.started(0));
        let quick = pool.apply_async(run, (scene.arg(), 1));
        let ready = AsyncResult::completed(Ok(7u32));
        let all = [&held, &quick, &ready];
        let first = fondo::wait(all, ReturnWhen::FirstCompleted, Some(LIMIT));
        assert!(first.done.contains(&2), "{first:?}");
        assert!(first.pending.contains(&0), "{first:?}");
        let quick_done = fondo::wait([&quick], ReturnWhen::AllCompleted, Some(LIMIT));
        assert!(quick_done.all_done());
        scene.open();
        let every = fondo::wait(all, ReturnWhen::AllCompleted, Some(LIMIT));
        assert_eq!((every.done, every.pending), (vec![0, 1, 2], vec![]));
        assert_eq!(held.get_timeout(Duration::ZERO).ok(), Some(0));
    }
}

// FirstException returns at a failure, not at a success or a cancel; a timeout is
// no error, just results still pending.
on_both! {
    fn wait_first_exception_and_timeout(pool = Pool::builder().workers(2)) {
        let scene = Scene::new("wait-exc");
        let held = pool.apply_async(hold, (scene.arg(), 0));
        let cancelled = AsyncResult::<u32>::completed(Err(Error::Cancelled));
        let fine = AsyncResult::completed(Ok(1u32));
        let set: [&dyn Watchable; 3] = [&fine, &cancelled, &held];
        let waited = fondo::wait(set, ReturnWhen::FirstException, Some(Duration::from_millis(50)));
        assert_eq!((waited.done, waited.pending), (vec![0, 1], vec![2]), "a cancel is no exception");
        let failing = pool.apply_async(fail, (3,));
        let set: [&dyn Watchable; 4] = [&fine, &cancelled, &held, &failing];
        let waited = fondo::wait(set, ReturnWhen::FirstException, Some(LIMIT));
        assert_eq!((waited.done, waited.pending), (vec![0, 1, 3], vec![2]));
        assert!(!held.ready(), "still held");
        scene.open();
    }
}

/// Results of two pools of different backends, and of different types, in one wait.
#[test]
fn wait_across_pools_and_backends() {
    let _wd = Deadline::arm("wait across pools", TEST_LIMIT);
    let threads = TerminateOnPanic(Pool::threads(1).expect("threads"));
    let processes = TerminateOnPanic(Pool::processes(1).expect("processes"));
    let scene = Scene::new("wait-across");
    let held = threads.apply_async(hold, (scene.arg(), 0));
    let text = processes.apply_async(|x: u64| format!("{x}"), (42,));
    let set: [&dyn Watchable; 2] = [&held, &text];
    let waited = fondo::wait(set, ReturnWhen::FirstCompleted, Some(LIMIT));
    assert_eq!((waited.done, waited.pending), (vec![1], vec![0]));
    scene.open();
    assert!(fondo::wait(set, ReturnWhen::AllCompleted, Some(LIMIT)).all_done());
    assert_eq!(text.get().expect("text"), "42");
}

// ---------------------------------------------------------------------------
// as_completed
// ---------------------------------------------------------------------------

// Results come in the order they complete, each once, with its position.
on_both! {
    fn as_completed_follows_completion_order(pool = Pool::builder().workers(2)) {
        let scenes: Vec<Scene> = (0..3).map(|i| Scene::new(&format!("order-{i}"))).collect();
        let results: Vec<_> = scenes
            .iter()
            .enumerate()
            .map(|(i, s)| pool.apply_async(hold, (s.arg(), i as u32)))
            .collect();
        let mut it = fondo::as_completed(results, Some(LIMIT));
        for i in [1, 0, 2] {
            scenes[i].open();
            let (at, r) = it.next().expect("one more").expect("within the limit");
            assert_eq!(at, i);
            assert_eq!(r.get().expect("value"), i as u32);
        }
        assert!(it.next().is_none());
    }
}

// Past the timeout: one `WaitTimeout`, the end, and the rest handed back.
on_both! {
    fn as_completed_times_out_and_hands_back_the_rest(pool = Pool::builder().workers(1)) {
        let scene = Scene::new("ac-timeout");
        let results = vec![
            AsyncResult::completed(Ok(9u32)),
            pool.apply_async(hold, (scene.arg(), 1)),
        ];
        let mut it = fondo::as_completed(results, Some(Duration::from_millis(50)));
        assert_eq!(it.next().expect("the ready one").expect("in time").0, 0);
        assert!(matches!(it.next(), Some(Err(Error::WaitTimeout { .. }))));
        assert!(it.next().is_none() && it.timed_out());
        let rest = it.into_pending();
        assert_eq!(rest.len(), 1);
        scene.open();
        let (at, held) = rest.into_iter().next().expect("held");
        assert_eq!((at, must_get(&held, "held").ok()), (1, Some(1)));
    }
}

/// Many results over processes, by reference: each position exactly once.
#[test]
fn as_completed_by_reference_yields_each_once() {
    let _wd = Deadline::arm("as completed by reference", TEST_LIMIT);
    let pool = TerminateOnPanic(Pool::processes(2).expect("pool"));
    let results: Vec<_> = (0..200).map(|x| pool.apply_async(square, (x,))).collect();
    let mut seen: Vec<usize> = fondo::as_completed(&results, Some(LIMIT))
        .map(|r| {
            let (i, result) = r.expect("in time");
            assert_eq!(
                result.get_timeout(Duration::ZERO).ok(),
                Some(square(i as u64))
            );
            i
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..200).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------
// cancel, cancelled, running
// ---------------------------------------------------------------------------

// A task waiting in the queue (one worker, busy) is cancelled: it never runs; the
// running one cannot be. `running()` tells them apart.
on_both! {
    fn cancel_a_queued_task(pool = Pool::builder().workers(1).prefetch(1)) {
        let scene = Scene::new("cancel-queued");
        let busy = pool.apply_async(hold, (scene.arg(), 0));
        assert!(scene.started(0));
        assert!(eventually(LIMIT, || busy.running()), "the held task runs");
        let queued = pool.apply_async(run, (scene.arg(), 1));
        assert!(!queued.running() && !queued.cancelled());
        assert!(queued.cancel(), "not started: cancelled");
        assert!(queued.cancelled() && queued.ready() && !queued.running());
        assert!(queued.cancel(), "cancelling again says true");
        assert!(!busy.cancel(), "running: left alone");
        assert!(!busy.cancelled());
        scene.open();
        assert_eq!(must_get(&busy, "busy").ok(), Some(0));
        assert!(matches!(queued.get(), Err(Error::Cancelled)));
        assert!(!busy.running() && !busy.cancel(), "finished: left alone");
        pool.join();
        assert_eq!(scene.ran(), BTreeSet::from([0]), "the cancelled task never ran");
    }
}

/// On processes a job may wait in a busy worker's pipeline (prefetch): cancel takes
/// it back through the gate, and it never runs.
#[test]
fn cancel_takes_a_job_back_from_a_busy_workers_pipeline() {
    let _wd = Deadline::arm("cancel from the pipeline", TEST_LIMIT);
    let pool = TerminateOnPanic(
        Pool::builder()
            .workers(1)
            .prefetch(4)
            .processes()
            .expect("pool"),
    );
    let scene = Scene::new("cancel-pipeline");
    let busy = pool.apply_async(hold, (scene.arg(), 0));
    let waiting: Vec<_> = (1..4)
        .map(|i| pool.apply_async(run, (scene.arg(), i)))
        .collect();
    assert!(scene.started(0));
    assert!(eventually(LIMIT, || busy.running()));
    assert!(waiting.iter().all(|w| !w.running()), "waiting, not running");
    assert!(waiting[1].cancel(), "taken back from the pipeline");
    scene.open();
    assert_eq!(must_get(&waiting[0], "first").ok(), Some(1));
    assert!(matches!(
        must_get(&waiting[1], "cancelled"),
        Err(Error::Cancelled)
    ));
    assert_eq!(
        must_get(&waiting[2], "third").ok(),
        Some(3),
        "taken back with it, run"
    );
    pool.join();
    assert_eq!(scene.ran(), BTreeSet::from([0, 1, 3]));
}

// Cancelling a map cancels every task not started; the map is `Err(Cancelled)`.
on_both! {
    fn cancel_a_map(pool = Pool::builder().workers(1).chunksize(1)) {
        let scene = Scene::new("cancel-map");
        let held = pool.apply_async(hold, (scene.arg(), 0));
        assert!(scene.started(0));
        let map = pool.starmap_async(run, (1..20).map(|i| (scene.arg(), i)));
        assert!(!map.running());
        assert!(map.cancel());
        assert!(map.cancelled());
        scene.open();
        assert!(matches!(must_get(&map, "map"), Err(Error::Cancelled)));
        assert_eq!(must_get(&held, "held").ok(), Some(0));
        pool.join();
        assert_eq!(scene.ran(), BTreeSet::from([0]));
    }
}

// A map whose tasks have all started cannot be cancelled; one with some started
// is cancelled for the rest: what started finishes, what did not never runs.
on_both! {
    fn cancel_a_map_partly_started(pool = Pool::builder().workers(2).chunksize(1).prefetch(1)) {
        let scene = Scene::new("cancel-map-part");
        let map = pool.starmap_async(hold, (0..10).map(|i| (scene.arg(), i)));
        assert!(scene.started(0) && scene.started(1));
        assert!(eventually(LIMIT, || map.running()));
        assert!(map.cancel());
        scene.open();
        assert!(matches!(must_get(&map, "map"), Err(Error::Cancelled)));
        pool.join();
        assert_eq!(scene.ran(), BTreeSet::from([0, 1]));
        let all_started = pool.map_async(square, [1]);
        // (the pool is joined: the map is refused, so complete; nothing to cancel)
        assert!(!all_started.cancel());
    }
}

// The answer of `cancel()` and the outcome always agree, however the cancel and the
// task's start race: cancelled tasks never run, the others give their value.
on_both! {
    fn cancel_racing_starts_always_agrees(pool = Pool::builder().workers(2)) {
        let scene = Scene::new("cancel-race");
        let results: Vec<_> = (0..300).map(|i| pool.apply_async(run, (scene.arg(), i))).collect();
        let said: Vec<bool> = results.iter().step_by(2).map(AsyncResult::cancel).collect();
        let mut cancelled = BTreeSet::new();
        for (i, r) in results.iter().enumerate() {
            match must_get(r, "racing") {
                Ok(v) => {
                    assert_eq!(v, i as u32);
                    assert!(i % 2 == 1 || !said[i / 2], "{i}: cancel said true, yet it ran");
                }
                Err(Error::Cancelled) => {
                    assert!(i % 2 == 0 && said[i / 2], "{i}: cancelled, yet cancel said false");
                    assert!(r.cancelled());
                    cancelled.insert(i as u32);
                }
                Err(e) => panic!("{i}: {e}"),
            }
        }
        pool.join();
        let ran = scene.ran();
        assert!(ran.is_disjoint(&cancelled), "a cancelled task ran");
        assert_eq!(ran.len() + cancelled.len(), 300, "every task ran or was cancelled");
    }
}

// A callback sees the cancel; a cancelled result is `cancelled()` in its callback.
on_both! {
    fn callbacks_see_the_cancel(pool = Pool::builder().workers(1)) {
        let scene = Scene::new("cancel-callback");
        let held = pool.apply_async(hold, (scene.arg(), 0));
        assert!(scene.started(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let queued = pool
            .apply_async(run, (scene.arg(), 1))
            .on_done(move |r| tx.send(matches!(r, Err(Error::Cancelled))).expect("send"));
        assert!(queued.cancel());
        assert_eq!(rx.recv_timeout(LIMIT).ok(), Some(true));
        scene.open();
        assert_eq!(must_get(&held, "held").ok(), Some(0));
    }
}

// ---------------------------------------------------------------------------
// shutdown(Pending::Cancel)
// ---------------------------------------------------------------------------

// What has not started is cancelled at once; what runs finishes; then the pool is
// closed and joined.
on_both! {
    fn shutdown_cancels_what_has_not_started(pool = Pool::builder().workers(2).chunksize(1)) {
        let scene = Scene::new("shutdown-cancel");
        let running: Vec<_> = (0..2).map(|i| pool.apply_async(hold, (scene.arg(), i))).collect();
        assert!(scene.started(0) && scene.started(1));
        let queued: Vec<_> = (2..40).map(|i| pool.apply_async(run, (scene.arg(), i))).collect();
        let map = pool.starmap_async(run, (40..60).map(|i| (scene.arg(), i)));
        let mut imap = pool.imap(square, 0..1000);
        // Submits its first tasks; none can start, both workers are held.
        assert!(matches!(imap.next_timeout(Duration::ZERO), Some(Err(Error::WaitTimeout { .. }))));
        // Open the scene once the last queued task is cancelled: the running ones
        // finish only after the cancel, so none of the queued ones can start first.
        let opener = {
            let arg = scene.arg();
            move |_: &fondo::Result<u32>| {
                let _ = std::fs::File::create(Path::new(&arg).join("open"));
            }
        };
        let last = pool.apply_async(run, (scene.arg(), 99)).on_done(opener);
        pool.shutdown(Pending::Cancel);
        for r in &running {
            assert!(!r.cancelled());
            assert!(must_get(r, "running").is_ok());
        }
        assert!(queued.iter().chain([&last]).all(AsyncResult::cancelled));
        assert!(matches!(must_get(&map, "map"), Err(Error::Cancelled)));
        assert!(map.cancelled());
        assert_eq!(scene.ran(), BTreeSet::from([0, 1]));
        let rest: Vec<_> = imap.collect();
        assert!(matches!(rest[0], Err(Error::Cancelled)), "{:?}", rest[0]);
        assert!(
            rest.iter().all(|r| matches!(r, Err(Error::Cancelled | Error::Closed))),
            "{rest:?}"
        );
        assert!(matches!(pool.apply(square, (2,)), Err(Error::Closed)));
    }
}

/// A big submission still being encoded on the pool's side is cancelled too.
#[test]
fn shutdown_cancels_a_submission_the_encoder_holds() {
    let _wd = Deadline::arm("shutdown during encoding", TEST_LIMIT);
    let pool = TerminateOnPanic(
        Pool::builder()
            .workers(1)
            .chunksize(1)
            .processes()
            .expect("pool"),
    );
    let scene = Scene::new("shutdown-encoder");
    let held = pool.apply_async(hold, (scene.arg(), 0));
    assert!(scene.started(0));
    let big = (0..64).map(|_| serde_bytes::ByteBuf::from(vec![1u8; 1 << 20]));
    let map = pool.map_async(|b: serde_bytes::ByteBuf| b.len(), big);
    // Behind the map in the encoder's backlog; once it is cancelled, the held task
    // may finish: the worker is busy throughout the cancel.
    let arg = scene.arg();
    let sentinel = pool.apply_async(run, (scene.arg(), 1)).on_done(move |_| {
        let _ = std::fs::File::create(Path::new(&arg).join("open"));
    });
    pool.shutdown(Pending::Cancel);
    assert!(sentinel.cancelled());
    assert!(matches!(must_get(&map, "map"), Err(Error::Cancelled)));
    assert_eq!(must_get(&held, "held").ok(), Some(0));
}

// ---------------------------------------------------------------------------
// imap: next_timeout, cancel on drop, exact sizes
// ---------------------------------------------------------------------------

// A timeout leaves the iterator usable: the next call waits for the same outcome.
on_both! {
    fn imap_next_timeout(pool = Pool::builder().workers(2).chunksize(1)) {
        let scene = Scene::new("imap-timeout");
        let mut it = pool.imap(hold_pair, (0..4).map(|i| (scene.arg(), i)));
        assert!(matches!(
            it.next_timeout(Duration::from_millis(20)),
            Some(Err(Error::WaitTimeout { .. }))
        ));
        assert!(matches!(it.next_timeout(Duration::ZERO), Some(Err(Error::WaitTimeout { .. }))));
        assert_eq!(it.len(), 4, "nothing was consumed");
        scene.open();
        let all: Vec<u32> = (0..4)
            .map(|_| it.next_timeout(LIMIT).expect("one more").expect("a value"))
            .collect();
        assert_eq!(all, [0, 1, 2, 3]);
        assert!(it.next_timeout(LIMIT).is_none());
    }
}

// Dropping an imap before its end cancels its tasks not started; the running one
// finishes.
on_both! {
    fn dropping_an_imap_cancels_what_has_not_started(pool = Pool::builder().workers(1).chunksize(1)) {
        let scene = Scene::new("imap-drop");
        let held = pool.apply_async(hold, (scene.arg(), 0));
        assert!(scene.started(0));
        let mut it = pool.imap(run_pair, (1..50).map(|i| (scene.arg(), i)));
        assert!(matches!(it.next_timeout(Duration::ZERO), Some(Err(Error::WaitTimeout { .. }))));
        drop(it);
        scene.open();
        assert_eq!(must_get(&held, "held").ok(), Some(0));
        pool.join();
        assert_eq!(scene.ran(), BTreeSet::from([0]));
    }
}

// The size is exact where the input's is, and shrinks as outcomes are yielded.
on_both! {
    fn imap_sizes(pool = Pool::builder().workers(2)) {
        let mut it = pool.imap(square32, 0..100);
        assert_eq!((it.len(), it.size_hint()), (100, (100, Some(100))));
        it.next();
        assert_eq!(it.len(), 99);
        assert_eq!(it.by_ref().take(50).count(), 50);
        assert_eq!(it.size_hint(), (49, Some(49)));
        assert_eq!(it.count(), 49);
        let wide = pool.imap(square, 0..100u64);
        assert_eq!(wide.size_hint(), (100, Some(100)), "exact, though not ExactSizeIterator");
        drop(wide);
        let filtered = pool.imap_unordered(square, (0..100).filter(|x| x % 3 == 0));
        assert_eq!(filtered.size_hint(), (0, Some(100)), "not exact: the filter's hint");
        assert_eq!(filtered.count(), 34);
    }
}

// A real indicatif bar: `.progress()` takes an imap (it needs an
// ExactSizeIterator) and ends at the input's length.
on_both! {
    fn an_indicatif_bar_over_an_imap(pool = Pool::builder().workers(2)) {
        use indicatif::{ProgressDrawTarget, ProgressIterator};
        let bar_iter = pool.imap(square32, 0..500).progress();
        let bar = bar_iter.progress.clone();
        bar.set_draw_target(ProgressDrawTarget::hidden());
        assert_eq!(bar.length(), Some(500));
        let sum: u64 = bar_iter.map(|r| r.expect("value")).sum();
        assert_eq!(sum, (0..500).map(square32).sum());
        assert_eq!((bar.position(), bar.length()), (500, Some(500)));
        let bar = indicatif::ProgressBar::hidden();
        let n = pool.imap_unordered(square, vec![1, 2, 3]).progress_with(bar.clone()).count();
        assert_eq!((n, bar.position()), (3, 3));
    }
}

// ---------------------------------------------------------------------------
// map's errors say where
// ---------------------------------------------------------------------------

fn check(x: u32) -> u32 {
    assert!(x != 7777, "{x} is not allowed");
    x
}

on_both! {
    fn map_errors_name_the_input(pool = Pool::builder().workers(2)) {
        let e = pool.map(check, 0..10_000).expect_err("7777 fails");
        assert_eq!(e.index(), Some(7777), "{e}");
        assert!(matches!(e.inner(), Error::Panicked { message, .. } if message.contains("7777")));
        assert!(e.to_string().starts_with("task 7777: task panicked: 7777"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        let e = pool.starmap(|a: u32, b: u32| check(a + b), [(1, 2), (7000, 777)]).expect_err("fails");
        assert_eq!(e.index(), Some(1));
        let e = pool.map_async(check, [7777]).get().expect_err("fails");
        assert_eq!(e.index(), Some(0));
        // A failure of the whole pool is not a task's: no index.
        pool.close();
        let e = pool.map(check, 0..3).expect_err("closed");
        assert!(matches!(e, Error::Closed) && e.index().is_none());
    }
}

// ---------------------------------------------------------------------------
// Async: tokio, owned imaps, the Stream, submissions that never block
// ---------------------------------------------------------------------------

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime")
}

fn twice(x: u64) -> u64 {
    2 * x
}

/// An owned imap moves into a spawned task and is read there without blocking;
/// results of `apply_async` and `map_async` are awaited beside it.
#[test]
fn an_owned_imap_lives_in_a_tokio_task() {
    let _wd = Deadline::arm("owned imap in tokio", TEST_LIMIT);
    let pool = Arc::new(Pool::processes(2).expect("pool"));
    let mut doubles = pool.imap_owned(twice, 0..1000);
    let one = pool.apply_async(twice, (21,));
    let many = pool.map_async(twice, 0..10);
    let (sum, one, many) = runtime().block_on(async move {
        let summing = tokio::spawn(async move {
            let mut sum = 0;
            while let Some(r) = doubles.next_async().await {
                sum += r.expect("value");
            }
            sum
        });
        (summing.await.expect("task"), one.await, many.await)
    });
    assert_eq!(sum, 999 * 1000);
    assert_eq!(one.ok(), Some(42));
    assert_eq!(many.ok().map(|v| v.len()), Some(10));
}

/// The `Stream` (feature `stream`), with futures-util's combinators, in completion order.
#[test]
fn an_imap_as_a_stream() {
    use futures_util::StreamExt;
    let _wd = Deadline::arm("imap stream", TEST_LIMIT);
    let pool = Arc::new(Pool::processes(2).expect("pool"));
    let stream = pool.imap_unordered_owned(twice, 0..100).into_stream();
    assert_eq!(futures_util::Stream::size_hint(&stream), (100, Some(100)));
    let mut all: Vec<u64> = runtime().block_on(stream.map(|r| r.expect("value")).collect());
    all.sort_unstable();
    assert_eq!(all, (0..100).map(twice).collect::<Vec<_>>());
}

/// `wait` / `cancel` from inside an async task, on results also awaited.
#[test]
fn cancel_from_async_code() {
    let _wd = Deadline::arm("cancel from async", TEST_LIMIT);
    let pool = Arc::new(
        Pool::builder()
            .workers(1)
            .prefetch(1)
            .threads()
            .expect("pool"),
    );
    let scene = Scene::new("cancel-async");
    let held = pool.apply_async(hold, (scene.arg(), 0));
    assert!(scene.started(0));
    let queued = pool.apply_async(run, (scene.arg(), 1));
    let arg = scene.arg();
    let (cancelled, outcome) = runtime().block_on(async move {
        let cancelled = queued.cancel();
        let _ = std::fs::File::create(Path::new(&arg).join("open"));
        (cancelled, queued.await)
    });
    assert!(cancelled && matches!(outcome, Err(Error::Cancelled)));
    assert_eq!(must_get(&held, "held").ok(), Some(0));
}

fn byte_len(b: serde_bytes::ByteBuf) -> usize {
    b.len()
}

/// 256 one-MiB byte strings, made before any runtime runs: making them is the
/// caller's work, not the submission's.
fn values_256_mib() -> Vec<serde_bytes::ByteBuf> {
    (0..256)
        .map(|i| serde_bytes::ByteBuf::from(vec![i as u8; 1 << 20]))
        .collect()
}

/// A future that notes the longest time one poll of it took: how long the work
/// held the runtime's thread at a stretch, whatever the machine's load adds.
struct TimedPolls<F> {
    inner: std::pin::Pin<Box<F>>,
    longest: Duration,
}

impl<F: std::future::Future> std::future::Future for TimedPolls<F> {
    type Output = (F::Output, Duration);

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let start = Instant::now();
        let polled = self.inner.as_mut().poll(cx);
        self.longest = self.longest.max(start.elapsed());
        polled.map(|out| (out, self.longest))
    }
}

fn timed_polls<F: std::future::Future>(inner: F) -> TimedPolls<F> {
    TimedPolls {
        inner: Box::pin(inner),
        longest: Duration::ZERO,
    }
}

/// Runs `work` on a fresh current-thread runtime beside a task ticking every
/// millisecond; returns what `work` returns and the worst gap between two ticks.
fn ticking<T>(work: impl std::future::Future<Output = T>) -> (T, Duration) {
    runtime().block_on(async {
        let worst = Arc::new(std::sync::Mutex::new(Duration::ZERO));
        let ticks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ticker = {
            let (worst, ticks) = (worst.clone(), ticks.clone());
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(Duration::from_millis(1));
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                interval.tick().await;
                let mut last = Instant::now();
                loop {
                    interval.tick().await;
                    let now = Instant::now();
                    let mut w = worst.lock().expect("worst");
                    *w = (*w).max(now - last);
                    last = now;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Release);
                }
            })
        };
        // Let the ticker tick a few times before the work starts.
        while ticks.load(std::sync::atomic::Ordering::Acquire) < 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let out = work.await;
        // One more tick after the work, so a gap it caused is counted.
        tokio::time::sleep(Duration::from_millis(3)).await;
        ticker.abort();
        let worst = *worst.lock().expect("worst");
        (out, worst)
    })
}

/// The figure: a current-thread runtime ticking every millisecond while a
/// task submits 256 MiB of arguments with `map_async` on `Pool::processes(2)` and
/// awaits the outcome. Encoded on the runtime's thread, 256 MiB held it for over a
/// second. Printed (`--nocapture`): the worst gap between ticks, next to an idle
/// runtime's and to a blocking `map` on the runtime's thread, and the longest poll
/// of the submitting task — how long fondo held the thread at a stretch. On this
/// shared machine the gaps follow the scheduler (an idle runtime sees several ms,
/// now and then over 100), so the bound asserted is on the longest poll: 250 ms,
/// which only a blocking submission reaches. (That the submission returns before
/// its arguments are encoded is shown without a clock by the next test.)
#[test]
fn map_async_of_256_mib_never_holds_a_current_thread_runtime() {
    let _wd = Deadline::arm("256 MiB under a ticking runtime", TEST_LIMIT);
    let pool = Pool::processes(2).expect("pool");
    let ((), idle) = ticking(async { tokio::time::sleep(Duration::from_millis(300)).await });
    let values = values_256_mib();
    let (((returned, lens), held), worst) = ticking(timed_polls(async {
        let submitted = Instant::now();
        let lens = pool.map_async(byte_len, values);
        let returned = submitted.elapsed();
        (returned, lens.await)
    }));
    assert_eq!(lens.expect("lengths"), vec![1 << 20; 256]);
    let values = values_256_mib();
    let ((lens, took), blocked) = ticking(async {
        let t = Instant::now();
        (pool.map(byte_len, values), t.elapsed())
    });
    assert_eq!(lens.expect("lengths").len(), 256);
    eprintln!(
        "256 MiB on a current-thread runtime ticking every 1 ms: with map_async the worst \
         tick gap was {worst:?} (map_async returned in {returned:?}; longest poll {held:?}); \
         idle: {idle:?}; a blocking map ({took:?}) on the runtime's thread: {blocked:?}"
    );
    assert!(
        held < Duration::from_millis(250),
        "the runtime's thread was held {held:?} in one poll (worst tick gap {worst:?})"
    );
}

/// Set when [`Late`]'s `Serialize` may finish.
static LATE_GATE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// 1 MiB of bytes, then a byte whose `Serialize` waits until the test opens
/// [`LATE_GATE`]: encoding a `Late` on the submitting thread would block it there.
#[derive(serde::Deserialize)]
struct Late {
    bytes: serde_bytes::ByteBuf,
    tail: u8,
}

impl serde::Serialize for Late {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Late", 2)?;
        st.serialize_field("bytes", &self.bytes)?;
        let end = Instant::now() + Duration::from_secs(60);
        while !LATE_GATE.load(std::sync::atomic::Ordering::Acquire) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(1));
        }
        st.serialize_field("tail", &self.tail)?;
        st.end()
    }
}

fn late_len(late: Late) -> usize {
    late.bytes.len() + usize::from(late.tail)
}

/// `map_async` returns before its big arguments are encoded: their `Serialize`
/// waits for the test, after the call has returned. (The caller's probe stops at
/// 64 KiB, before the waiting field.) Without a clock.
#[test]
fn map_async_returns_before_big_arguments_are_encoded() {
    let _wd = Deadline::arm("map_async returns first", TEST_LIMIT);
    let pool = Arc::new(Pool::processes(2).expect("pool"));
    let values: Vec<Late> = (0..8)
        .map(|_| Late {
            bytes: serde_bytes::ByteBuf::from(vec![0u8; 1 << 20]),
            tail: 1,
        })
        .collect();
    let submitting = pool.clone();
    let lens = common::bounded("map_async returns", LIMIT, move || {
        submitting.map_async(late_len, values)
    });
    assert!(!lens.ready(), "nothing could be encoded yet");
    LATE_GATE.store(true, std::sync::atomic::Ordering::Release);
    assert_eq!(
        must_get(&lens, "lengths").ok(),
        Some(vec![(1 << 20) + 1; 8])
    );
}
