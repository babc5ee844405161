//! The thread pool, method by method and semantic by semantic.
//!
//! Every test asserts behaviour, never a wall-clock figure: tasks that must still be
//! running are held on a [`Gate`] the test opens, not timed with sleeps.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, ThreadId};
use std::time::Duration;

use fondo::{Error, Pool, Result, cpu_count};

/// A latch a test opens once; tasks wait on it. Lets a test keep a task running
/// for exactly as long as it needs, without guessing durations.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }

    fn wait(&self) {
        let mut open = self.0.0.lock().unwrap();
        while !*open {
            open = self.0.1.wait(open).unwrap();
        }
    }

    fn is_open(&self) -> bool {
        *self.0.0.lock().unwrap()
    }
}

/// Opens the gate when dropped, so a failing assertion never leaves a worker
/// thread blocked forever.
struct OpenOnDrop(Gate);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// Generous guard against a hang: long enough never to trip on a slow machine.
const HANG_GUARD: Duration = Duration::from_secs(60);

fn is_panicked_with(r: &Result<impl Sized>, text: &str) -> bool {
    matches!(r, Err(Error::Panicked { message, .. }) if message.contains(text))
}

// ---------------------------------------------------------------------------
// map / starmap / apply
// ---------------------------------------------------------------------------

#[test]
fn map_returns_results_in_input_order() -> Result<()> {
    let pool = Pool::threads(2)?;
    let v = pool.map(|x: u64| x * x, 0..100)?;
    assert_eq!(v, (0..100).map(|x| x * x).collect::<Vec<u64>>());
    Ok(())
}

#[test]
fn map_keeps_input_order_when_later_items_finish_first() -> Result<()> {
    // Early items are the slow ones, so completion order is roughly reversed.
    let pool = Pool::builder().workers(2).chunksize(1).threads()?;
    let v = pool.map(
        |x: u64| {
            thread::sleep(Duration::from_millis(2 * (10 - x)));
            x
        },
        0..10,
    )?;
    assert_eq!(v, (0..10).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn map_of_a_million_tasks_returns_each_result_once_in_order() -> Result<()> {
    const N: u64 = 1_000_000;
    let calls = Arc::new(AtomicUsize::new(0));
    let pool = Pool::threads(2)?;
    let counted = calls.clone();
    let v = pool.map(
        move |x: u64| {
            counted.fetch_add(1, Ordering::Relaxed);
            x * 3 + 1
        },
        0..N,
    )?;
    assert_eq!(v.len(), N as usize);
    assert_eq!(
        calls.load(Ordering::Relaxed),
        N as usize,
        "each task runs once"
    );
    for (i, &y) in v.iter().enumerate() {
        assert_eq!(y, i as u64 * 3 + 1, "element {i}");
    }
    let sum: u64 = v.iter().sum();
    assert_eq!(sum, 3 * (N * (N - 1) / 2) + N);
    Ok(())
}

#[test]
fn empty_input_gives_empty_output_everywhere() -> Result<()> {
    let pool = Pool::threads(2)?;
    assert!(pool.map(|x: u32| x, Vec::new())?.is_empty());
    assert!(pool.map(|x: u32| x, 0..0)?.is_empty());
    assert!(pool.starmap(|a: u32, b: u32| a + b, Vec::new())?.is_empty());
    assert!(pool.map_async(|x: u32| x, 0..0).get()?.is_empty());
    assert_eq!(pool.imap(|x: u32| x, 0..0).count(), 0);
    assert_eq!(pool.imap_unordered(|x: u32| x, 0..0).count(), 0);
    Ok(())
}

#[test]
fn map_moves_owned_non_copy_items() -> Result<()> {
    let pool = Pool::threads(2)?;
    let words: Vec<String> = (0..50).map(|i| format!("w{i}")).collect();
    let v = pool.map(|s: String| s.len() + s.as_str().len(), words.clone())?;
    assert_eq!(
        v,
        words.iter().map(|s| 2 * s.len()).collect::<Vec<_>>(),
        "owned Strings moved through the pool"
    );
    let upper = pool.map(|s: String| s.to_uppercase(), words)?;
    assert_eq!(upper[7], "W7");
    Ok(())
}

#[test]
fn starmap_spreads_tuples_of_arity_0_1_2_3_6() -> Result<()> {
    let pool = Pool::threads(2)?;

    let zero = pool.starmap(|| 7u8, [(), (), ()])?;
    assert_eq!(zero, [7, 7, 7]);

    let one = pool.starmap(|x: u32| x * 2, [(1,), (2,), (3,)])?;
    assert_eq!(one, [2, 4, 6]);

    fn pow(b: u64, e: u32) -> u64 {
        b.pow(e)
    }
    let two = pool.starmap(pow, [(2, 10), (3, 4), (10, 0)])?;
    assert_eq!(two, [1024, 81, 1]);

    let three = pool.starmap(
        |a: i32, b: String, c: bool| if c { format!("{b}{a}") } else { b },
        [(1, "x".to_string(), true), (2, "y".to_string(), false)],
    )?;
    assert_eq!(three, ["x1", "y"]);

    let six = pool.starmap(
        |a: u8, b: u16, c: u32, d: u64, e: i32, f: i64| {
            i64::from(a) + i64::from(b) + i64::from(c) + d as i64 + i64::from(e) + f
        },
        [(1, 2, 3, 4, 5, 6), (10, 20, 30, 40, 50, -150)],
    )?;
    assert_eq!(six, [21, 0]);

    // Order holds for starmap as for map.
    let many = pool.starmap(|a: u64, b: u64| a * 1000 + b, (0..500).map(|i| (i, i + 1)))?;
    assert_eq!(many, (0..500).map(|i| i * 1000 + i + 1).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn apply_calls_the_function_with_the_tuple_spread() -> Result<()> {
    let pool = Pool::threads(2)?;
    fn pow(b: u64, e: u32) -> u64 {
        b.pow(e)
    }
    assert_eq!(pool.apply(pow, (2, 10))?, 1024);
    assert_eq!(pool.apply(|| "none", ())?, "none");
    assert_eq!(pool.apply(|x: i8| -x, (5,))?, -5);
    assert_eq!(
        pool.apply(|a: u8, b: u8, c: u8| [a, b, c], (1, 2, 3))?,
        [1, 2, 3]
    );
    Ok(())
}

#[test]
fn apply_runs_on_a_worker_thread() -> Result<()> {
    let pool = Pool::threads(1)?;
    let here = thread::current().id();
    let there = pool.apply(|| thread::current().id(), ())?;
    assert_ne!(here, there);
    let name = pool.apply(|| thread::current().name().map(str::to_owned), ())?;
    assert!(name.is_some());
    Ok(())
}

// ---------------------------------------------------------------------------
// apply_async and AsyncResult
// ---------------------------------------------------------------------------

#[test]
fn apply_async_get_returns_the_value() -> Result<()> {
    let pool = Pool::threads(2)?;
    let a = pool.apply_async(|b: u64, e: u32| b.pow(e), (3, 4));
    let b = pool.apply_async(|| String::from("hola"), ());
    assert_eq!(b.get()?, "hola");
    assert_eq!(a.get()?, 81);
    Ok(())
}

#[test]
fn many_apply_async_results_each_get_their_own_value() -> Result<()> {
    let pool = Pool::threads(2)?;
    let results: Vec<_> = (0..200u64)
        .map(|i| pool.apply_async(move || i * i, ()))
        .collect();
    for (i, r) in results.into_iter().enumerate().rev() {
        assert_eq!(r.get()?, (i * i) as u64);
    }
    Ok(())
}

#[test]
fn get_timeout_expires_while_the_task_blocks_then_succeeds_later() -> Result<()> {
    let pool = Pool::threads(1)?;
    let gate = Gate::default();
    let _release = OpenOnDrop(gate.clone());
    let g = gate.clone();
    let r = pool.apply_async(
        move || {
            g.wait();
            42
        },
        (),
    );
    let waited = Duration::from_millis(20);
    match r.get_timeout(waited) {
        Err(Error::WaitTimeout { waited: w }) => assert_eq!(w, waited),
        other => panic!("expected WaitTimeout, got {other:?}"),
    }
    // The task is untouched by the timeout: still running, still readable.
    assert!(!r.ready());
    assert!(matches!(
        r.get_timeout(Duration::from_millis(1)),
        Err(Error::WaitTimeout { .. })
    ));
    gate.open();
    assert_eq!(r.get_timeout(HANG_GUARD)?, 42);
    Ok(())
}

#[test]
fn get_timeout_takes_the_value_so_a_second_read_is_result_taken() -> Result<()> {
    let pool = Pool::threads(1)?;
    let r = pool.apply_async(|| 5, ());
    assert_eq!(r.get_timeout(HANG_GUARD)?, 5);
    assert!(r.ready());
    assert!(matches!(
        r.get_timeout(Duration::from_millis(1)),
        Err(Error::ResultTaken)
    ));
    assert!(matches!(r.get(), Err(Error::ResultTaken)));
    Ok(())
}

#[test]
fn wait_and_wait_timeout_follow_the_task() -> Result<()> {
    let pool = Pool::threads(1)?;
    let gate = Gate::default();
    let _release = OpenOnDrop(gate.clone());
    let g = gate.clone();
    let r = pool.apply_async(
        move || {
            g.wait();
            "done"
        },
        (),
    );
    assert!(!r.wait_timeout(Duration::from_millis(20)), "task is held");
    assert!(!r.ready());
    gate.open();
    r.wait();
    assert!(r.ready());
    assert!(
        r.wait_timeout(Duration::ZERO),
        "finished: no waiting needed"
    );
    // wait does not consume the value.
    r.wait();
    assert_eq!(r.get()?, "done");
    Ok(())
}

#[test]
fn ready_and_successful_track_the_outcome() -> Result<()> {
    let pool = Pool::threads(2)?;
    let gate = Gate::default();
    let _release = OpenOnDrop(gate.clone());
    let g = gate.clone();
    let pending = pool.apply_async(move || g.wait(), ());
    assert!(!pending.ready());
    assert_eq!(pending.successful(), None, "still running");
    gate.open();
    pending.wait();
    assert!(pending.ready());
    assert_eq!(pending.successful(), Some(true));

    let failed = pool.apply_async(|| -> u8 { panic!("nope") }, ());
    failed.wait();
    assert!(failed.ready());
    assert_eq!(failed.successful(), Some(false));
    assert!(is_panicked_with(&failed.get(), "nope"));
    Ok(())
}

#[test]
fn successful_stays_false_after_get_timeout_took_an_error() -> Result<()> {
    let pool = Pool::threads(1)?;
    let failed = pool.apply_async(|| -> u8 { panic!("bad") }, ());
    assert!(is_panicked_with(&failed.get_timeout(HANG_GUARD), "bad"));
    assert_eq!(failed.successful(), Some(false));
    Ok(())
}

// ---------------------------------------------------------------------------
// callbacks
// ---------------------------------------------------------------------------

#[test]
fn on_success_runs_once_with_the_value_and_on_error_does_not_run() -> Result<()> {
    let pool = Pool::threads(2)?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let (s, e, d) = (seen.clone(), errors.clone(), done.clone());
    let r = pool
        .apply_async(|x: u32| x + 1, (41,))
        .on_success(move |v| s.lock().unwrap().push(*v))
        .on_error(move |_| {
            e.fetch_add(1, Ordering::SeqCst);
        })
        .on_done(move |r| {
            assert!(r.is_ok());
            d.fetch_add(1, Ordering::SeqCst);
        });
    // Callbacks run before the outcome is published: once get returns, they have run.
    assert_eq!(r.get()?, 42);
    assert_eq!(*seen.lock().unwrap(), [42]);
    assert_eq!(errors.load(Ordering::SeqCst), 0);
    assert_eq!(done.load(Ordering::SeqCst), 1);
    Ok(())
}

#[test]
fn on_error_runs_once_with_the_panic_and_on_success_does_not_run() -> Result<()> {
    let pool = Pool::threads(2)?;
    let messages = Arc::new(Mutex::new(Vec::new()));
    let successes = Arc::new(AtomicUsize::new(0));
    let (m, s) = (messages.clone(), successes.clone());
    let r = pool
        .apply_async(|| -> u32 { panic!("callback test failure") }, ())
        .on_success(move |_| {
            s.fetch_add(1, Ordering::SeqCst);
        })
        .on_error(move |e| m.lock().unwrap().push(e.to_string()));
    r.wait();
    let messages = messages.lock().unwrap().clone();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].contains("callback test failure"),
        "{messages:?}"
    );
    assert_eq!(successes.load(Ordering::SeqCst), 0);
    assert!(is_panicked_with(&r.get(), "callback test failure"));
    Ok(())
}

#[test]
fn callbacks_registered_after_completion_run_at_once_exactly_once() -> Result<()> {
    let pool = Pool::threads(1)?;
    let count = Arc::new(AtomicUsize::new(0));
    let r = pool.apply_async(|| 9, ());
    r.wait();
    let (c1, c2, c3) = (count.clone(), count.clone(), count.clone());
    let r = r.on_done(move |v| {
        assert_eq!(*v.as_ref().unwrap(), 9);
        c1.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(count.load(Ordering::SeqCst), 1, "on_done ran immediately");
    let r = r.on_success(move |v| {
        assert_eq!(*v, 9);
        c2.fetch_add(10, Ordering::SeqCst);
    });
    assert_eq!(
        count.load(Ordering::SeqCst),
        11,
        "on_success ran immediately"
    );
    let r = r.on_error(move |_| {
        c3.fetch_add(100, Ordering::SeqCst);
    });
    assert_eq!(
        count.load(Ordering::SeqCst),
        11,
        "on_error not for a success"
    );
    // The value is still there after the callbacks saw it.
    assert_eq!(r.get()?, 9);
    assert_eq!(count.load(Ordering::SeqCst), 11, "nothing ran twice");

    let failed = pool.apply_async(|| -> i32 { panic!("late") }, ());
    failed.wait();
    let c = count.clone();
    let failed = failed.on_error(move |e| {
        assert!(e.to_string().contains("late"));
        c.fetch_add(1000, Ordering::SeqCst);
    });
    assert_eq!(count.load(Ordering::SeqCst), 1011);
    assert!(is_panicked_with(&failed.get(), "late"));
    Ok(())
}

#[test]
fn callbacks_run_in_registration_order() -> Result<()> {
    let pool = Pool::threads(1)?;
    let gate = Gate::default();
    let _release = OpenOnDrop(gate.clone());
    let order = Arc::new(Mutex::new(Vec::new()));
    let g = gate.clone();
    let mut r = pool.apply_async(move || g.wait(), ());
    for i in 0..5 {
        let o = order.clone();
        r = r.on_done(move |_| o.lock().unwrap().push(i));
    }
    gate.open();
    r.get()?;
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
    Ok(())
}

#[test]
fn callback_registered_while_another_callback_runs_is_not_lost() -> Result<()> {
    let pool = Pool::threads(1)?;
    let first_started = Gate::default();
    let first_release = Gate::default();
    let _release = OpenOnDrop(first_release.clone());
    let second_ran = Arc::new(AtomicUsize::new(0));
    // The task is held until its first callback is registered, so that callback runs
    // on the worker (registered after completion, it would run here and block us).
    let task_gate = Gate::default();
    let _task_release = OpenOnDrop(task_gate.clone());
    let (started, release, t) = (
        first_started.clone(),
        first_release.clone(),
        task_gate.clone(),
    );
    let r = pool
        .apply_async(
            move || {
                t.wait();
                1
            },
            (),
        )
        .on_done(move |_| {
            started.open();
            release.wait();
        });
    task_gate.open();
    // The task is done and its first callback is running on the worker.
    first_started.wait();
    let s = second_ran.clone();
    let r = r.on_done(move |_| {
        s.fetch_add(1, Ordering::SeqCst);
    });
    first_release.open();
    assert_eq!(r.get()?, 1);
    assert_eq!(second_ran.load(Ordering::SeqCst), 1, "second callback lost");
    Ok(())
}

#[test]
fn panicking_callback_spoils_neither_the_result_nor_the_pool() -> Result<()> {
    let pool = Pool::threads(1)?;
    let after = Arc::new(AtomicUsize::new(0));
    let a = after.clone();
    let r = pool
        .apply_async(|| 3, ())
        .on_done(|_| panic!("callback blew up"))
        .on_done(move |_| {
            a.fetch_add(1, Ordering::SeqCst);
        });
    assert_eq!(r.get()?, 3);
    assert_eq!(after.load(Ordering::SeqCst), 1, "later callbacks still run");
    assert_eq!(
        pool.apply(|| 4, ())?,
        4,
        "the worker delivering it lives on"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// AsyncResult as a Future
// ---------------------------------------------------------------------------

#[test]
fn async_result_can_be_awaited() -> Result<()> {
    let pool = Pool::threads(2)?;
    let v = pollster::block_on(pool.apply_async(|b: u64, e: u32| b.pow(e), (2, 10)))?;
    assert_eq!(v, 1024);
    let all = pollster::block_on(pool.map_async(|x: u32| x + 1, 0..100))?;
    assert_eq!(all, (1..101).collect::<Vec<_>>());
    let both = pollster::block_on(async {
        let a = pool.apply_async(|| 1, ()).await?;
        let b = pool.apply_async(|| 2, ()).await?;
        Ok::<_, Error>(a + b)
    })?;
    assert_eq!(both, 3);
    let failed = pollster::block_on(pool.apply_async(|| -> u8 { panic!("awaited panic") }, ()));
    assert!(is_panicked_with(&failed, "awaited panic"));
    Ok(())
}

/// Sends on a channel each time it is woken.
struct ChannelWaker(Mutex<mpsc::Sender<()>>);

impl Wake for ChannelWaker {
    fn wake(self: Arc<Self>) {
        let _ = self.0.lock().unwrap().send(());
    }
}

#[test]
fn awaited_result_pending_then_woken_when_the_task_finishes() -> Result<()> {
    let pool = Pool::threads(1)?;
    let gate = Gate::default();
    let _release = OpenOnDrop(gate.clone());
    let g = gate.clone();
    let mut r = pool.apply_async(
        move || {
            g.wait();
            "late"
        },
        (),
    );
    let (tx, woken) = mpsc::channel();
    let waker = Waker::from(Arc::new(ChannelWaker(Mutex::new(tx))));
    let mut cx = Context::from_waker(&waker);
    assert!(Pin::new(&mut r).poll(&mut cx).is_pending());
    gate.open();
    woken
        .recv_timeout(HANG_GUARD)
        .expect("the waker is called when the task finishes");
    match Pin::new(&mut r).poll(&mut cx) {
        Poll::Ready(v) => assert_eq!(v?, "late"),
        Poll::Pending => panic!("woken but still pending"),
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// imap / imap_unordered
// ---------------------------------------------------------------------------

#[test]
fn imap_yields_results_in_input_order() -> Result<()> {
    for chunk in [None, Some(1), Some(3), Some(64)] {
        let mut b = Pool::builder().workers(2);
        if let Some(c) = chunk {
            b = b.chunksize(c);
        }
        let pool = b.threads()?;
        let out: Vec<u64> = pool
            .imap(
                |x: u64| {
                    if x.is_multiple_of(7) {
                        thread::sleep(Duration::from_millis(1));
                    }
                    x * 2
                },
                0..500,
            )
            .collect::<Result<_>>()?;
        assert_eq!(
            out,
            (0..500).map(|x| x * 2).collect::<Vec<_>>(),
            "chunk {chunk:?}"
        );
    }
    Ok(())
}

#[test]
fn imap_unordered_yields_the_same_multiset() -> Result<()> {
    let pool = Pool::builder().workers(2).chunksize(2).threads()?;
    let input: Vec<u64> = (0..300).map(|x| x % 50).collect(); // repeats on purpose
    let mut out: Vec<u64> = pool
        .imap_unordered(
            |x: u64| {
                if x.is_multiple_of(5) {
                    thread::sleep(Duration::from_millis(1));
                }
                x + 1000
            },
            input.clone(),
        )
        .collect::<Result<_>>()?;
    let mut expected: Vec<u64> = input.iter().map(|x| x + 1000).collect();
    out.sort_unstable();
    expected.sort_unstable();
    assert_eq!(out, expected);
    Ok(())
}

/// Runs `imap` (or `imap_unordered`) over an endless counted input, takes the first
/// 1000 results, and checks the input was pulled no further than the window.
fn endless_input_stays_bounded(
    workers: usize,
    chunk: Option<usize>,
    prefetch: Option<usize>,
    unordered: bool,
) -> Result<()> {
    let mut b = Pool::builder().workers(workers);
    if let Some(c) = chunk {
        b = b.chunksize(c);
    }
    if let Some(p) = prefetch {
        b = b.prefetch(p);
    }
    let pool = b.threads()?;
    // imap's window (imap.rs): max(chunksize (default 1) × workers × (prefetch (default 2)
    // + 1), 64 × workers) tasks in flight at most. Input is pulled a whole chunk at a
    // time while fewer than `window` are in flight, so allow one chunk of slack.
    let chunk_len = chunk.unwrap_or(1);
    let window = (chunk_len * workers * (prefetch.unwrap_or(2) + 1)).max(64 * workers);
    let slack = window + chunk_len;
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let input = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let f = |x: u64| x * 2;
    let it: Box<dyn Iterator<Item = Result<u64>>> = if unordered {
        Box::new(pool.imap_unordered(f, input))
    } else {
        Box::new(pool.imap(f, input))
    };
    let mut got = Vec::with_capacity(1000);
    for (i, r) in it.take(1000).enumerate() {
        got.push(r?);
        let p = pulled.load(Ordering::SeqCst);
        assert!(
            p <= i + slack,
            "after {} results {p} items pulled (window {window})",
            i + 1
        );
    }
    let p = pulled.load(Ordering::SeqCst);
    assert!(p >= 1000, "{p}");
    assert!(
        p <= 1000 + slack,
        "pulled {p} > 1000 + window {window} + chunk"
    );
    if unordered {
        got.sort_unstable();
        // Completion order: a prefix of the input, up to the window, was served.
        assert!(got.iter().all(|&y| y % 2 == 0 && y / 2 < p as u64));
        assert_eq!(got.iter().collect::<HashSet<_>>().len(), 1000, "no repeats");
    } else {
        assert_eq!(got, (0..1000).map(|x| x * 2).collect::<Vec<_>>());
    }
    // The pool is fine after the lazy iterator was dropped mid-stream.
    assert_eq!(pool.apply(|| 7, ())?, 7);
    Ok(())
}

#[test]
fn imap_pulls_endless_input_only_as_results_are_consumed() -> Result<()> {
    endless_input_stays_bounded(2, None, None, false)
}

#[test]
fn imap_unordered_pulls_endless_input_only_as_results_are_consumed() -> Result<()> {
    endless_input_stays_bounded(2, None, None, true)
}

#[test]
fn imap_window_follows_chunksize_workers_and_prefetch() -> Result<()> {
    endless_input_stays_bounded(2, Some(4), Some(1), false)?;
    endless_input_stays_bounded(3, Some(2), Some(3), false)?;
    endless_input_stays_bounded(1, Some(1), Some(1), true)
}

#[test]
fn imap_is_lazy_until_iterated() -> Result<()> {
    let pool = Pool::threads(2)?;
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let it = pool.imap(
        |x: u32| x,
        (0..).inspect(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        }),
    );
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        0,
        "nothing pulled before next()"
    );
    drop(it);
    assert_eq!(pulled.load(Ordering::SeqCst), 0);
    Ok(())
}

#[test]
fn imap_reports_each_panic_in_place_and_continues() -> Result<()> {
    let pool = Pool::builder().workers(2).chunksize(3).threads()?;
    let out: Vec<Result<u32>> = pool
        .imap(
            |x: u32| {
                assert!(x % 10 != 4, "bad item {x}");
                x
            },
            0..30,
        )
        .collect();
    assert_eq!(out.len(), 30);
    for (i, r) in out.iter().enumerate() {
        if i % 10 == 4 {
            assert!(is_panicked_with(r, &format!("bad item {i}")), "{i}: {r:?}");
        } else {
            assert_eq!(r.as_ref().ok(), Some(&(i as u32)), "{i}");
        }
    }
    Ok(())
}

#[test]
fn imap_on_a_closed_pool_yields_closed_and_ends() -> Result<()> {
    let pool = Pool::threads(2)?;
    pool.close();
    let out: Vec<Result<u32>> = pool.imap(|x: u32| x, 0..).take(100_000).collect();
    assert!(!out.is_empty());
    assert!(
        out.len() < 100_000,
        "the endless imap must end on a closed pool"
    );
    assert!(
        out.iter().all(|r| matches!(r, Err(Error::Closed))),
        "{out:?}"
    );
    Ok(())
}

#[test]
fn imap_ends_after_terminate() -> Result<()> {
    let pool = Pool::threads(2)?;
    let mut it = pool.imap(|x: u64| x, 0..);
    for i in 0..10 {
        assert_eq!(it.next().unwrap()?, i);
    }
    pool.terminate();
    let rest: Vec<Result<u64>> = it.by_ref().take(10_000).collect();
    assert!(rest.len() < 10_000, "endless imap must end after terminate");
    // Results finished before terminate() still arrive in order; whatever was in
    // flight, or asked for afterwards, is Terminated: the stream says why it ended.
    assert!(
        rest.iter().any(|r| matches!(r, Err(Error::Terminated))),
        "no Terminated among {} results",
        rest.len()
    );
    for (i, r) in rest.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(*v, 10 + i as u64),
            Err(e) => assert!(matches!(e, Error::Terminated), "{e:?}"),
        }
    }
    assert!(it.next().is_none());
    Ok(())
}

// ---------------------------------------------------------------------------
// closures, panics, errors
// ---------------------------------------------------------------------------

#[test]
fn capturing_closures_run_on_threads() -> Result<()> {
    let pool = Pool::threads(2)?;
    let offset = 100u64;
    let label = String::from("item");
    let table: Arc<BTreeMap<u64, &'static str>> =
        Arc::new([(1, "uno"), (2, "dos"), (3, "tres")].into_iter().collect());
    let sink = Arc::new(Mutex::new(Vec::new()));

    assert_eq!(pool.map(move |x: u64| x + offset, 0..3)?, [100, 101, 102]);
    let t = table.clone();
    assert_eq!(
        pool.map(move |k: u64| t.get(&k).copied().unwrap_or("?"), 0..4)?,
        ["?", "uno", "dos", "tres"]
    );
    let l = label.clone();
    assert_eq!(pool.apply(move |n: u8| format!("{l}-{n}"), (7,))?, "item-7");
    let s = sink.clone();
    pool.map(move |x: u32| s.lock().unwrap().push(x), 0..20)?;
    let mut pushed = sink.lock().unwrap().clone();
    pushed.sort_unstable();
    assert_eq!(pushed, (0..20).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn panicking_task_gives_panicked_and_the_same_worker_lives_on() -> Result<()> {
    let pool = Pool::threads(1)?;
    let before = pool.apply(|| thread::current().id(), ())?;
    let r = pool.apply(|| -> u32 { panic!("kaboom {}", 42) }, ());
    match &r {
        Err(Error::Panicked { message, .. }) => assert!(message.contains("kaboom 42"), "{message}"),
        other => panic!("expected Panicked, got {other:?}"),
    }
    let static_msg = pool.apply(|| -> u32 { panic!("static text") }, ());
    assert!(is_panicked_with(&static_msg, "static text"));
    let after = pool.apply(|| thread::current().id(), ())?;
    assert_eq!(
        before, after,
        "the panicking task's thread is still the worker"
    );
    assert_eq!(pool.map(|x: u8| x, 0..5)?, [0, 1, 2, 3, 4]);
    Ok(())
}

#[test]
fn panic_with_non_string_payload_is_still_panicked() -> Result<()> {
    let pool = Pool::threads(1)?;
    let r = pool.apply(|| -> u8 { std::panic::panic_any(17u32) }, ());
    assert!(matches!(r, Err(Error::Panicked { .. })), "{r:?}");
    assert_eq!(pool.apply(|| 1, ())?, 1);
    Ok(())
}

#[test]
fn a_panic_in_one_task_leaves_the_other_tasks_intact() -> Result<()> {
    let pool = Pool::threads(2)?;
    let results: Vec<_> = (0..20u32)
        .map(|i| {
            pool.apply_async(
                move || {
                    assert!(i != 7, "task seven fails");
                    i * 2
                },
                (),
            )
        })
        .collect();
    for (i, r) in results.into_iter().enumerate() {
        let r = r.get();
        if i == 7 {
            assert!(is_panicked_with(&r, "task seven fails"), "{r:?}");
        } else {
            assert_eq!(r?, i as u32 * 2);
        }
    }
    Ok(())
}

#[test]
fn map_returns_the_first_error_by_input_position() -> Result<()> {
    let pool = Pool::builder().workers(2).chunksize(1).threads()?;
    let r = pool.map(
        |x: u32| {
            if x == 30 {
                // Fail late in time but early in position.
                thread::sleep(Duration::from_millis(30));
                panic!("failed at {x}");
            }
            if x == 70 {
                panic!("failed at {x}");
            }
            x
        },
        0..100,
    );
    let e = r.expect_err("two tasks panic");
    assert_eq!(e.index(), Some(30), "the first by position: {e}");
    match e.inner() {
        Error::Panicked { message, .. } => {
            assert!(message.contains("failed at 30"), "{message}")
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert!(e.to_string().starts_with("task 30: "), "{e}");
    // The pool still works after a failed map.
    assert_eq!(pool.map(|x: u32| x, 0..3)?, [0, 1, 2]);
    Ok(())
}

#[test]
fn error_display_carries_the_panic_text() -> Result<()> {
    let pool = Pool::threads(1)?;
    let e = pool
        .apply(|| -> u8 { panic!("visible text") }, ())
        .unwrap_err();
    assert!(e.to_string().contains("visible text"), "{e}");
    let cloned = e.clone();
    assert!(matches!(cloned, Error::Panicked { .. }));
    Ok(())
}

// ---------------------------------------------------------------------------
// life cycle: drop, close, join, terminate
// ---------------------------------------------------------------------------

#[test]
fn dropped_pool_finishes_submitted_tasks_and_results_stay_readable() -> Result<()> {
    let pool = Pool::threads(2)?;
    let ran = Arc::new(AtomicUsize::new(0));
    let results: Vec<_> = (0..6u64)
        .map(|i| {
            let ran = ran.clone();
            pool.apply_async(
                move || {
                    thread::sleep(Duration::from_millis(50));
                    ran.fetch_add(1, Ordering::SeqCst);
                    i * 10
                },
                (),
            )
        })
        .collect();
    let mapped = pool.map_async(
        |x: u64| {
            thread::sleep(Duration::from_millis(5));
            x + 1
        },
        0..10,
    );
    drop(pool); // close + join: Python's `with Pool()` loses these, fondo finishes them
    assert_eq!(ran.load(Ordering::SeqCst), 6, "drop waited for every task");
    for (i, r) in results.into_iter().enumerate() {
        assert!(r.ready(), "result {i} ready once drop returned");
        assert_eq!(r.get()?, i as u64 * 10);
    }
    assert!(mapped.ready());
    assert_eq!(mapped.get()?, (1..11).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn get_after_terminate_returns_terminated_at_once() -> Result<()> {
    let pool = Pool::threads(1)?;
    let started = Gate::default();
    let release = Gate::default();
    let finished = Gate::default();
    let _release = OpenOnDrop(release.clone());
    let (s, r, f) = (started.clone(), release.clone(), finished.clone());
    // Blocks until the end of the test, far beyond any get().
    let running = pool.apply_async(
        move || {
            s.open();
            r.wait();
            f.open();
            1
        },
        (),
    );
    started.wait();
    let queued_ran = Arc::new(AtomicUsize::new(0));
    let queued: Vec<_> = (0..4)
        .map(|_| {
            let q = queued_ran.clone();
            pool.apply_async(
                move || {
                    q.fetch_add(1, Ordering::SeqCst);
                    2
                },
                (),
            )
        })
        .collect();
    let mapped = pool.map_async(|x: u32| x, 0..10);

    pool.terminate();

    // "At once": every result is already decided when terminate() returns.
    assert!(running.ready(), "the running task's result is decided");
    assert!(queued.iter().all(|r| r.ready()));
    assert!(mapped.ready());
    assert_eq!(running.successful(), Some(false));
    for r in queued {
        assert!(matches!(r.get(), Err(Error::Terminated)));
    }
    assert!(matches!(mapped.get(), Err(Error::Terminated)));

    // Let the stuck thread finish: its late value does not overwrite Terminated, and
    // the queued tasks were dropped, never run. (The pause only gives a wrong
    // implementation the chance to show itself; passing does not depend on it.)
    release.open();
    finished.wait();
    thread::sleep(Duration::from_millis(20));
    assert_eq!(running.successful(), Some(false));
    assert!(matches!(running.get(), Err(Error::Terminated)));
    assert_eq!(
        queued_ran.load(Ordering::SeqCst),
        0,
        "queued tasks never ran"
    );
    Ok(())
}

#[test]
fn terminated_result_awaited_as_future_is_terminated() -> Result<()> {
    let pool = Pool::threads(1)?;
    let gate = Gate::default();
    let _release = OpenOnDrop(gate.clone());
    let g = gate.clone();
    let r = pool.apply_async(move || g.wait(), ());
    pool.terminate();
    assert!(matches!(pollster::block_on(r), Err(Error::Terminated)));
    Ok(())
}

#[test]
fn submitting_after_terminate_is_an_error_not_a_hang() -> Result<()> {
    let pool = Pool::threads(2)?;
    pool.terminate();
    let r = pool.apply(|| 1, ());
    assert!(matches!(r, Err(Error::Terminated | Error::Closed)), "{r:?}");
    let a = pool.apply_async(|| 1, ());
    assert!(a.ready());
    assert!(a.get().is_err());
    assert!(pool.map(|x: u8| x, 0..10).is_err());
    pool.terminate(); // twice is fine
    pool.join(); // and join after terminate does not wait for anything
    Ok(())
}

#[test]
fn submitting_after_close_is_closed_error() -> Result<()> {
    let pool = Pool::threads(2)?;
    pool.close();
    assert!(matches!(pool.apply(|| 1, ()), Err(Error::Closed)));
    let a = pool.apply_async(|| 1, ());
    assert!(a.ready(), "refused at once, not queued");
    assert!(matches!(a.get(), Err(Error::Closed)));
    assert!(matches!(pool.map(|x: u8| x, 0..10), Err(Error::Closed)));
    assert!(matches!(
        pool.starmap(|a: u8, b: u8| a + b, [(1, 2)]),
        Err(Error::Closed)
    ));
    assert!(matches!(
        pool.map_async(|x: u8| x, 0..3).get(),
        Err(Error::Closed)
    ));
    // Closing an empty map's worth is still fine: nothing to refuse.
    assert!(pool.map(|x: u8| x, 0..0)?.is_empty());
    pool.close(); // twice is fine
    Ok(())
}

#[test]
fn submitting_after_join_is_closed_error() -> Result<()> {
    let pool = Pool::threads(2)?;
    assert_eq!(pool.apply(|| 1, ())?, 1);
    pool.join();
    assert!(matches!(pool.apply(|| 1, ()), Err(Error::Closed)));
    Ok(())
}

#[test]
fn close_lets_submitted_tasks_finish() -> Result<()> {
    let pool = Pool::threads(2)?;
    let gate = Gate::default();
    let _release = OpenOnDrop(gate.clone());
    let g = gate.clone();
    let held = pool.apply_async(
        move || {
            g.wait();
            "held"
        },
        (),
    );
    let queued: Vec<_> = (0..10u32)
        .map(|i| pool.apply_async(move || i, ()))
        .collect();
    pool.close();
    gate.open();
    assert_eq!(held.get()?, "held");
    for (i, r) in queued.into_iter().enumerate() {
        assert_eq!(r.get()?, i as u32);
    }
    pool.join();
    Ok(())
}

#[test]
fn join_waits_for_every_submitted_task() -> Result<()> {
    let pool = Pool::threads(2)?;
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..8 {
        let d = done.clone();
        // Results dropped unread: join must still wait for the tasks.
        drop(pool.apply_async(
            move || {
                thread::sleep(Duration::from_millis(10));
                d.fetch_add(1, Ordering::SeqCst);
            },
            (),
        ));
    }
    let d = done.clone();
    let mapped = pool.map_async(
        move |_: u32| {
            d.fetch_add(1, Ordering::SeqCst);
        },
        0..100,
    );
    pool.join();
    assert_eq!(done.load(Ordering::SeqCst), 108);
    assert!(mapped.ready());
    pool.join(); // twice is fine
    Ok(())
}

#[test]
fn pools_can_be_created_and_dropped_repeatedly() -> Result<()> {
    for i in 0..50u32 {
        let pool = Pool::threads(2)?;
        assert_eq!(pool.apply(move || i, ())?, i);
    }
    for _ in 0..20 {
        let pool = Pool::threads(2)?;
        pool.terminate();
    }
    Ok(())
}

#[test]
fn one_pool_serves_many_submitting_threads_at_once() -> Result<()> {
    let pool = Pool::threads(2)?;
    thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let pool = &pool;
                s.spawn(move || -> Result<u64> {
                    let v = pool.map(move |x: u64| x + t, 0..1000)?;
                    let a = pool.apply(move || t, ())?;
                    let i: u64 = pool.imap(|x: u64| x, 0..100).map(|r| r.unwrap()).sum();
                    Ok(v.iter().sum::<u64>() + a + i)
                })
            })
            .collect();
        for (t, h) in handles.into_iter().enumerate() {
            let t = t as u64;
            let got = h.join().unwrap().unwrap();
            assert_eq!(got, 999 * 1000 / 2 + 1000 * t + t + 99 * 100 / 2);
        }
    });
    Ok(())
}

// ---------------------------------------------------------------------------
// builder options
// ---------------------------------------------------------------------------

#[test]
fn zero_workers_is_a_config_error() {
    assert!(matches!(Pool::threads(0), Err(Error::Config(_))));
    assert!(matches!(
        Pool::builder().workers(0).threads(),
        Err(Error::Config(_))
    ));
}

#[test]
fn other_zero_options_are_config_errors() {
    let w = || Pool::builder().workers(1);
    assert!(matches!(w().chunksize(0).threads(), Err(Error::Config(_))));
    assert!(matches!(
        w().max_tasks_per_child(0).threads(),
        Err(Error::Config(_))
    ));
    assert!(matches!(w().prefetch(0).threads(), Err(Error::Config(_))));
}

#[test]
fn task_timeout_on_threads_is_a_config_error() {
    let r = Pool::builder()
        .workers(2)
        .task_timeout(Duration::from_secs(1))
        .threads();
    match r {
        Err(Error::Config(msg)) => assert!(!msg.is_empty()),
        other => panic!("expected Config, got {other:?}"),
    }
    assert!(matches!(
        Pool::builder().task_timeout(Duration::ZERO).threads(),
        Err(Error::Config(_))
    ));
}

#[test]
fn chunksize_1_and_1000_give_the_same_right_results() -> Result<()> {
    let expected: Vec<u64> = (0..5000).map(|x| x * x).collect();
    for chunk in [1, 7, 1000, 10_000] {
        let pool = Pool::builder().workers(2).chunksize(chunk).threads()?;
        assert_eq!(
            pool.map(|x: u64| x * x, 0..5000)?,
            expected,
            "chunk {chunk}"
        );
        let s = pool.starmap(|a: u64, b: u64| a * b, (0..5000).map(|x| (x, x)))?;
        assert_eq!(s, expected, "starmap chunk {chunk}");
    }
    Ok(())
}

#[test]
fn chunksize_sends_consecutive_runs_to_one_worker() -> Result<()> {
    let pool = Pool::builder().workers(2).chunksize(10).threads()?;
    let ids = pool.map(
        |_: u32| {
            thread::sleep(Duration::from_micros(200));
            thread::current().id()
        },
        0..100,
    )?;
    for (c, chunk) in ids.chunks(10).enumerate() {
        assert!(
            chunk.iter().all(|id| *id == chunk[0]),
            "chunk {c} was split across threads"
        );
    }
    // One chunk covering everything runs on a single worker.
    let pool = Pool::builder().workers(2).chunksize(1000).threads()?;
    let ids = pool.map(|_: u32| thread::current().id(), 0..1000)?;
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 1);
    Ok(())
}

static INIT_ONCE_CALLS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static INITIALIZED_HERE: Cell<bool> = const { Cell::new(false) };
}

fn count_init_once() {
    INIT_ONCE_CALLS.fetch_add(1, Ordering::SeqCst);
    INITIALIZED_HERE.with(|c| c.set(true));
}

#[test]
fn initializer_runs_once_per_worker_before_its_tasks() -> Result<()> {
    let pool = Pool::builder()
        .workers(3)
        .chunksize(1)
        .initializer(count_init_once)
        .threads()?;
    let flags = pool.map(|_: u32| INITIALIZED_HERE.with(Cell::get), 0..300)?;
    assert!(
        flags.iter().all(|&f| f),
        "every task ran on an initialized thread"
    );
    pool.join();
    assert_eq!(INIT_ONCE_CALLS.load(Ordering::SeqCst), 3);
    Ok(())
}

fn panicking_initializer() {
    panic!("initializer failure");
}

#[test]
fn a_panicking_initializer_breaks_the_pool_and_no_task_runs_uninitialised() -> Result<()> {
    let pool = Pool::builder()
        .workers(1)
        .initializer(panicking_initializer)
        .threads()?;
    for _ in 0..2 {
        match pool.apply(|| 5, ()) {
            Err(Error::InitializerFailed { message }) => {
                assert!(message.contains("initializer failure"), "{message}");
            }
            other => panic!("expected InitializerFailed, got {other:?}"),
        }
    }
    Ok(())
}

static INIT_RECYCLE_CALLS: AtomicUsize = AtomicUsize::new(0);

fn count_init_recycle() {
    INIT_RECYCLE_CALLS.fetch_add(1, Ordering::SeqCst);
    INITIALIZED_HERE.with(|c| c.set(true));
}

#[test]
fn max_tasks_per_child_recycles_the_worker_thread() -> Result<()> {
    let pool = Pool::builder()
        .workers(1)
        .chunksize(1)
        .max_tasks_per_child(2)
        .initializer(count_init_recycle)
        .threads()?;
    let seen: Vec<(ThreadId, bool)> = pool.map(
        |_: u32| (thread::current().id(), INITIALIZED_HERE.with(Cell::get)),
        0..10,
    )?;
    pool.join();
    let ids: Vec<ThreadId> = seen.iter().map(|s| s.0).collect();
    assert!(
        seen.iter().all(|s| s.1),
        "each new thread ran the initializer"
    );
    // One worker at a time, two tasks each: tasks 2k and 2k+1 share a fresh thread.
    for (k, pair) in ids.chunks(2).enumerate() {
        assert_eq!(pair[0], pair[1], "pair {k}");
    }
    let distinct = ids.iter().collect::<HashSet<_>>().len();
    assert_eq!(distinct, 5, "10 tasks / 2 per thread");
    let inits = INIT_RECYCLE_CALLS.load(Ordering::SeqCst);
    // A 6th thread may start when the 5th retires before the pool is closed.
    assert!((5..=6).contains(&inits), "{inits} initializer calls");
    Ok(())
}

#[test]
fn max_tasks_per_child_bounds_tasks_per_thread_with_several_workers() -> Result<()> {
    let pool = Pool::builder()
        .workers(2)
        .chunksize(1)
        .max_tasks_per_child(3)
        .threads()?;
    let ids = pool.map(|x: u32| (x, thread::current().id()), 0..60)?;
    assert!(ids.iter().enumerate().all(|(i, (x, _))| *x == i as u32));
    let mut per_thread: BTreeMap<String, usize> = BTreeMap::new();
    for (_, id) in &ids {
        *per_thread.entry(format!("{id:?}")).or_default() += 1;
    }
    assert!(per_thread.len() >= 20, "{} threads", per_thread.len());
    assert!(per_thread.len() > pool.workers());
    assert!(per_thread.values().all(|&n| n <= 3), "{per_thread:?}");
    // The recycled pool still works and drops cleanly.
    assert_eq!(pool.map(|x: u32| x + 1, 0..10)?.len(), 10);
    Ok(())
}

#[test]
fn workers_reports_the_worker_count() -> Result<()> {
    assert_eq!(Pool::threads(3)?.workers(), 3);
    assert_eq!(Pool::threads(1)?.workers(), 1);
    assert_eq!(Pool::builder().workers(5).threads()?.workers(), 5);
    assert_eq!(Pool::builder().threads()?.workers(), cpu_count());
    Ok(())
}

#[test]
fn more_workers_than_cores_still_run_everything() -> Result<()> {
    let n = 2 * cpu_count() + 1;
    let pool = Pool::builder().workers(n).chunksize(1).threads()?;
    let ids = pool.map(
        |_: u32| {
            thread::sleep(Duration::from_millis(2));
            thread::current().id()
        },
        0..(4 * n as u32),
    )?;
    let distinct = ids.iter().collect::<HashSet<_>>().len();
    assert!(distinct >= 1 && distinct <= n, "{distinct} of {n}");
    Ok(())
}

#[test]
fn debug_impls_do_not_panic() -> Result<()> {
    let builder = Pool::builder().workers(2).chunksize(4);
    assert!(format!("{builder:?}").contains("Builder"));
    let pool = builder.threads()?;
    let text = format!("{pool:?}");
    assert!(text.contains("Pool") && text.contains('2'), "{text}");
    let gate = Gate::default();
    let _release = OpenOnDrop(gate.clone());
    let g = gate.clone();
    let pending = pool.apply_async(move || g.wait(), ());
    assert!(format!("{pending:?}").contains("AsyncResult"));
    gate.open();
    pending.wait();
    assert!(!format!("{pending:?}").is_empty());
    for e in [
        Error::Terminated,
        Error::Closed,
        Error::ResultTaken,
        Error::Config("x".into()),
        Error::WaitTimeout {
            waited: Duration::from_millis(3),
        },
    ] {
        assert!(!format!("{e:?}").is_empty());
        assert!(!e.to_string().is_empty());
    }
    assert!(gate.is_open());
    Ok(())
}

#[test]
fn huge_timeouts_wait_like_no_timeout() -> Result<()> {
    let pool = Pool::threads(1)?;
    let r = pool.apply_async(|| 1, ());
    assert!(r.wait_timeout(Duration::MAX));
    assert_eq!(r.get_timeout(Duration::MAX)?, 1);
    Ok(())
}

#[test]
fn get_blocked_in_another_thread_returns_terminated_when_the_pool_is_terminated() -> Result<()> {
    let pool = Pool::threads(1)?;
    let started = Gate::default();
    let release = Gate::default();
    let _release = OpenOnDrop(release.clone());
    let (s, r) = (started.clone(), release.clone());
    let held = pool.apply_async(
        move || {
            s.open();
            r.wait();
            1
        },
        (),
    );
    let queued = pool.apply_async(|| 2, ());
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let _ = tx.send((held.get(), queued.get()));
    });
    started.wait();
    pool.terminate();
    let (held, queued) = rx
        .recv_timeout(HANG_GUARD)
        .expect("a get() blocked before terminate() must return");
    assert!(matches!(held, Err(Error::Terminated)), "{held:?}");
    assert!(matches!(queued, Err(Error::Terminated)), "{queued:?}");
    waiter.join().unwrap();
    Ok(())
}

#[test]
fn imap_blocked_in_another_thread_ends_when_the_pool_is_terminated() -> Result<()> {
    let pool = Pool::threads(1)?;
    let started = Gate::default();
    let release = Gate::default();
    let _release = OpenOnDrop(release.clone());
    let (tx, rx) = mpsc::channel();
    thread::scope(|scope| {
        let (s, r) = (started.clone(), release.clone());
        let pool = &pool;
        scope.spawn(move || {
            let out: Vec<Result<u32>> = pool
                .imap(
                    move |x: u32| {
                        s.open();
                        r.wait();
                        x
                    },
                    0..,
                )
                .take(1000)
                .collect();
            let _ = tx.send(out);
        });
        started.wait();
        pool.terminate();
        let out = rx.recv_timeout(HANG_GUARD);
        release.open(); // whatever happened, let the scope end
        let out = out.expect("an imap blocked before terminate() must end");
        assert!(out.len() < 1000, "{} items", out.len());
        assert!(
            matches!(out.first(), Some(Err(Error::Terminated))),
            "{out:?}"
        );
    });
    Ok(())
}

#[test]
fn dropping_a_terminated_pool_does_not_wait_for_a_stuck_task() -> Result<()> {
    let pool = Pool::threads(1)?;
    let started = Gate::default();
    let release = Gate::default();
    let _release = OpenOnDrop(release.clone());
    let (s, r) = (started.clone(), release.clone());
    let stuck = pool.apply_async(
        move || {
            s.open();
            r.wait();
        },
        (),
    );
    started.wait();
    pool.terminate();
    let (tx, rx) = mpsc::channel();
    let dropper = thread::spawn(move || {
        drop(pool);
        let _ = tx.send(());
    });
    let dropped = rx.recv_timeout(HANG_GUARD);
    release.open(); // the stuck thread may end now, whatever happened
    dropped.expect("drop after terminate must not wait for a task that never ends");
    dropper.join().unwrap();
    assert!(matches!(stuck.get(), Err(Error::Terminated)));
    Ok(())
}

#[test]
fn a_pool_dropped_by_its_own_callback_does_not_deadlock() -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let pool = std::sync::Arc::new(Pool::threads(2)?);
    let (tx, rx) = std::sync::mpsc::channel();
    let holder = std::sync::Arc::new(std::sync::Mutex::new(Some(pool.clone())));
    let in_callback = holder.clone();
    // The task waits until the test has let go of the pool, so the callback's drop
    // is the last one and runs on the worker thread.
    let gate = std::sync::Arc::new(AtomicBool::new(false));
    let open = gate.clone();
    let r = pool
        .apply_async(
            move |x: u32| {
                while !open.load(Ordering::Acquire) {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                x + 1
            },
            (1,),
        )
        .on_done(move |_| {
            drop(in_callback.lock().ok().and_then(|mut p| p.take()));
            let _ = tx.send(());
        });
    drop(pool);
    gate.store(true, Ordering::Release);
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("callback ran and the drop inside it returned");
    assert_eq!(r.get()?, 2);
    assert!(holder.lock().map(|p| p.is_none()).unwrap_or(false));
    Ok(())
}
