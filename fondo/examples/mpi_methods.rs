//! Every pool method on the MPI backend, a panicking task, the futures API (wait,
//! as_completed, cancel, imap's next_timeout), close and terminate.
//! Prints one "mpi: ok NAME" (or "mpi: FAIL NAME: …") line per check and exits
//! non-zero if any failed.
//!
//! ```text
//! mpirun -np 3 target/release/examples/mpi_methods
//! ```

use fondo::{Error, Pool, ReturnWhen};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static INITIALIZED: AtomicBool = AtomicBool::new(false);

fn init() {
    INITIALIZED.store(true, Ordering::SeqCst);
}

fn initialized(_: u32) -> bool {
    INITIALIZED.load(Ordering::SeqCst)
}

fn square(x: u64) -> u64 {
    x * x
}

fn pow(b: u64, e: u32) -> u64 {
    b.pow(e)
}

fn scaled(k: &u64, x: u64) -> u64 {
    k * x
}

fn slice_sum(data: fondo::Shared<[u32]>, from: usize) -> u64 {
    data[from..].iter().map(|&v| u64::from(v)).sum()
}

fn check_two(x: i32) -> i32 {
    assert!(x != 2, "two is not allowed");
    x
}

fn pid(_: u32) -> u32 {
    std::thread::sleep(Duration::from_millis(2));
    std::process::id()
}

fn len_and_sum(v: Vec<u8>) -> (usize, u64) {
    (v.len(), v.iter().map(|&b| u64::from(b)).sum())
}

fn big_result(n: usize) -> Vec<u8> {
    vec![7; n]
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

struct Checks {
    passed: usize,
    failed: usize,
}

impl Checks {
    fn check(&mut self, name: &str, ok: bool, detail: impl std::fmt::Debug) {
        if ok {
            self.passed += 1;
            println!("mpi: ok {name}");
        } else {
            self.failed += 1;
            println!("mpi: FAIL {name}: {detail:?}");
        }
    }
}

fn main() {
    let started = Instant::now();
    let pool = match Pool::builder().initializer(init).mpi() {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("mpi_methods: {e}");
            std::process::exit(2);
        }
    };
    let mut c = Checks {
        passed: 0,
        failed: 0,
    };
    let size: Option<usize> = std::env::var("OMPI_COMM_WORLD_SIZE")
        .ok()
        .and_then(|s| s.parse().ok());
    c.check(
        "workers",
        size.is_none_or(|n| pool.workers() == n - 1),
        (pool.workers(), size),
    );
    println!(
        "mpi_methods: pool of {} worker ranks ready in {:?}",
        pool.workers(),
        started.elapsed()
    );

    let r = pool.map(initialized, 0..8);
    c.check(
        "initializer",
        r.as_ref().is_ok_and(|v| v.iter().all(|&b| b)),
        &r,
    );
    c.check(
        "rank0 not initialized",
        !INITIALIZED.load(Ordering::SeqCst),
        (),
    );

    let r = pool.map(square, 0..1000u64);
    let want: Vec<u64> = (0..1000u64).map(square).collect();
    c.check(
        "map",
        r.as_ref().is_ok_and(|v| *v == want),
        r.as_ref().map(|v| v.len()),
    );

    let r = pool.map(square, Vec::<u64>::new());
    c.check("map empty", r.as_ref().is_ok_and(|v| v.is_empty()), &r);

    let r = pool.map(|x: u32| x + 1, 0..10);
    c.check(
        "map closure",
        r.as_ref()
            .is_ok_and(|v| *v == (1..11).collect::<Vec<u32>>()),
        &r,
    );

    let r = pool.starmap(pow, [(2, 10), (3, 4), (10, 0)]);
    c.check("starmap", r.as_ref().is_ok_and(|v| *v == [1024, 81, 1]), &r);

    let r = pool.apply(pow, (2, 3));
    c.check("apply", matches!(r, Ok(8)), &r);

    // Shared values reach every rank once; a context through map_with.
    let shared = fondo::Shared::new(3u64).and_then(|k| pool.map_with(&k, scaled, 0..40));
    c.check(
        "map_with (Shared context)",
        shared.as_ref().is_ok_and(|v| v.len() == 40 && v[39] == 117),
        &shared,
    );
    let data = fondo::Shared::from_slice(&[1u32, 2, 3, 4])
        .and_then(|d| pool.starmap(slice_sum, (0..8).map(|i| (d.clone(), i % 4))));
    c.check(
        "Shared slice",
        data.as_ref().is_ok_and(|v| v[..4] == [10, 9, 7, 4]),
        &data,
    );

    let handles: Vec<_> = (0..50u64).map(|i| pool.apply_async(square, (i,))).collect();
    let got: Vec<_> = handles.into_iter().map(|h| h.get()).collect();
    c.check(
        "apply_async",
        got.iter()
            .enumerate()
            .all(|(i, r)| matches!(r, Ok(v) if *v == (i * i) as u64)),
        &got[..3],
    );

    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    let r = pool
        .apply_async(square, (9,))
        .on_success(move |v| s2.store(*v as usize, Ordering::SeqCst));
    let v = r.get();
    c.check(
        "apply_async callback",
        matches!(v, Ok(81)) && seen.load(Ordering::SeqCst) == 81,
        &v,
    );

    let r = pool.map_async(square, 0..10u64).get();
    c.check("map_async", r.as_ref().is_ok_and(|v| v[9] == 81), &r);

    let r: Vec<_> = pool.imap(square, 0..300u64).collect();
    c.check(
        "imap",
        r.iter()
            .enumerate()
            .all(|(i, x)| matches!(x, Ok(v) if *v == (i * i) as u64)),
        r.len(),
    );

    let mut r: Vec<u64> = pool
        .imap_unordered(square, 0..300u64)
        .filter_map(|x| x.ok())
        .collect();
    r.sort_unstable();
    c.check(
        "imap_unordered",
        r == (0..300u64).map(square).collect::<Vec<_>>(),
        r.len(),
    );

    // Endless input: imap pulls only what it needs.
    let r: Vec<u64> = pool
        .imap(square, 0u64..)
        .take(20)
        .filter_map(|x| x.ok())
        .collect();
    c.check("imap endless", r.len() == 20 && r[19] == 361, &r);

    let r: Vec<_> = pool.imap(check_two, 0..5).collect();
    c.check(
        "panic -> Err(Panicked)",
        matches!(&r[2], Err(Error::Panicked { message, .. }) if message.contains("two")),
        &r[2],
    );
    c.check(
        "rank survives a panic",
        r.iter()
            .enumerate()
            .all(|(i, x)| i == 2 || matches!(x, Ok(v) if *v == i as i32)),
        &r,
    );
    let r = pool.map(check_two, 0..5);
    c.check(
        "map returns the panic, with the input's position",
        r.as_ref()
            .is_err_and(|e| e.index() == Some(2) && matches!(e.inner(), Error::Panicked { .. })),
        &r,
    );
    let r = pool.apply(check_two, (2,));
    c.check(
        "apply returns the panic",
        matches!(r, Err(Error::Panicked { .. })),
        &r,
    );
    let r = pool.map(square, 0..100u64);
    c.check(
        "pool fine after panics",
        r.is_ok(),
        r.as_ref().map(|v| v.len()),
    );

    let r = pool.map(pid, 0..200);
    let me = std::process::id();
    let pids: BTreeSet<u32> = r
        .as_ref()
        .map(|v| v.iter().copied().collect())
        .unwrap_or_default();
    c.check(
        "tasks run on every worker rank, not rank 0",
        pids.len() == pool.workers() && !pids.contains(&me),
        (&pids, me),
    );

    // Several MiB each way: MPI's rendezvous protocol, not the eager one.
    let big: Vec<Vec<u8>> = (0..6).map(|i| vec![i as u8; 3 << 20]).collect();
    let r = pool.map(len_and_sum, big);
    c.check(
        "large arguments",
        r.as_ref().is_ok_and(|v| {
            v.iter()
                .enumerate()
                .all(|(i, &(n, s))| n == 3 << 20 && s == (i as u64) * (3 << 20))
        }),
        &r,
    );
    let r = pool.map(big_result, [5 << 20, 1, 5 << 20]);
    c.check(
        "large results",
        r.as_ref()
            .is_ok_and(|v| v[0].len() == 5 << 20 && v[1] == [7] && v[2].iter().all(|&b| b == 7)),
        r.as_ref().map(|v| v.len()),
    );

    // The futures API (issue 17): wait, as_completed, cancel, next_timeout.
    let limit = Some(Duration::from_secs(60));
    let rs: Vec<_> = (0..20u64).map(|i| pool.apply_async(square, (i,))).collect();
    let w = fondo::wait(&rs, ReturnWhen::AllCompleted, limit);
    c.check("wait", w.all_done(), &w);
    let mut order: Vec<usize> = fondo::as_completed(rs, limit)
        .filter_map(|r| r.ok().map(|(i, _)| i))
        .collect();
    order.sort_unstable();
    c.check("as_completed", order == (0..20).collect::<Vec<_>>(), &order);
    // Fill every rank's pipeline (prefetch + 1 batches) with slow tasks: the next one
    // waits on rank 0, not sent yet, and can be cancelled; a sent one cannot.
    let busy: Vec<_> = (0..3 * pool.workers())
        .map(|_| pool.apply_async(sleep_ms, (300,)))
        .collect();
    // On MPI a task runs once rank 0 has sent it: wait for the dispatcher to send all.
    let sent_by = Instant::now() + Duration::from_secs(60);
    while !busy.iter().all(|b| b.running() || b.ready()) && Instant::now() < sent_by {
        std::thread::sleep(Duration::from_millis(1));
    }
    c.check(
        "running() once sent",
        busy.iter().all(|b| b.running() || b.ready()),
        (),
    );
    let queued = pool.apply_async(square, (5,));
    let cancelled = queued.cancel();
    c.check(
        "cancel a task rank 0 has not sent",
        cancelled && queued.cancelled() && matches!(queued.get(), Err(Error::Cancelled)),
        cancelled,
    );
    c.check("a sent task is not cancelled", !busy[0].cancel(), ());
    let w = fondo::wait(&busy, ReturnWhen::AllCompleted, limit);
    c.check("the sent tasks finish", w.all_done(), &w);
    let mut it = pool.imap(sleep_ms, [300, 0]);
    let first = it.next_timeout(Duration::ZERO);
    let then = it.next_timeout(Duration::from_secs(60));
    c.check(
        "imap next_timeout",
        matches!(first, Some(Err(Error::WaitTimeout { .. }))) && matches!(then, Some(Ok(300))),
        (&first, &then),
    );
    drop(it);

    // Submissions from several threads at once.
    let pool = Arc::new(pool);
    let sums = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (pool, sums) = (pool.clone(), sums.clone());
            s.spawn(move || {
                let v = pool
                    .map(square, (t * 100)..(t * 100 + 100))
                    .map(|v| v.iter().sum::<u64>());
                sums.lock().unwrap().push(v);
            });
        }
    });
    let total: u64 = sums
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .sum();
    c.check(
        "threads submit concurrently",
        total == (0..400u64).map(square).sum::<u64>(),
        total,
    );
    let Ok(pool) = Arc::try_unwrap(pool) else {
        unreachable!("all threads joined")
    };

    // close: queued work still runs, new work is refused.
    let slow: Vec<_> = (0..(2 * pool.workers() as u64 + 4))
        .map(|_| pool.apply_async(sleep_ms, (300,)))
        .collect();
    let pending = pool.apply_async(square, (12,));
    pool.close();
    let r = pool.apply(square, (3,));
    c.check(
        "apply after close -> Err(Closed)",
        matches!(r, Err(Error::Closed)),
        &r,
    );
    // terminate: everything unfinished fails at once.
    let t = Instant::now();
    pool.terminate();
    let outcomes: Vec<_> = slow.into_iter().map(|h| h.get()).collect();
    let waited = t.elapsed();
    c.check(
        "terminate fails pending tasks at once",
        outcomes.iter().any(|r| matches!(r, Err(Error::Terminated)))
            && waited < Duration::from_millis(200),
        (waited, outcomes.iter().filter(|r| r.is_err()).count()),
    );
    let r = pending.get();
    c.check(
        "pending result after terminate",
        matches!(r, Ok(144) | Err(Error::Terminated)),
        &r,
    );
    let t = Instant::now();
    drop(pool); // waits for each rank to finish the task it is running
    println!(
        "mpi_methods: pool dropped after terminate in {:?}",
        t.elapsed()
    );
    c.check(
        "drop after terminate is prompt",
        t.elapsed() < Duration::from_secs(5),
        t.elapsed(),
    );

    let again = Pool::mpi();
    c.check(
        "second Pool::mpi() is an error",
        matches!(again, Err(Error::Mpi(_))),
        again.as_ref().err(),
    );

    println!(
        "mpi_methods: {} checks passed, {} failed",
        c.passed, c.failed
    );
    if c.failed > 0 {
        std::process::exit(1);
    }
}
