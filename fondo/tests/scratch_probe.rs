mod common;
use common::crash::*;
use fondo::Pool;
use std::time::Duration;

fn square(x: u64) -> u64 {
    x * x
}
fn wd(secs: u64) {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(secs));
        eprintln!("PROBE WATCHDOG");
        std::process::abort();
    });
}

#[test]
fn p_arg_ser_panic_apply() {
    wd(20);
    let pool = Pool::processes(2).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.apply_async(
            relay,
            (Bomb::armed(1, Stage::Serialize, Kind::Panic), None, None),
        )
    }));
    match r {
        Ok(a) => eprintln!(
            "apply_async returned: {:?}",
            a.get_timeout(Duration::from_secs(5)).map(|b| b.value)
        ),
        Err(_) => eprintln!("apply_async PANICKED out"),
    }
    eprintln!("after: {:?}", pool.apply(square, (3,)));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.map(
            relay_v,
            (0..8).map(|i| {
                if i == 3 {
                    Bomb::armed(i, Stage::Serialize, Kind::Panic)
                } else {
                    Bomb::dud(i)
                }
            }),
        )
    }));
    eprintln!("map: {:?}", r.map(|x| x.map(|v| v.len())));
    eprintln!("after: {:?}", pool.apply(square, (3,)));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.imap(
            relay_v,
            (0..8).map(|i| {
                if i == 3 {
                    Bomb::armed(i, Stage::Serialize, Kind::Panic)
                } else {
                    Bomb::dud(i)
                }
            }),
        )
        .map(|r| r.map(|_| ()).map_err(|e| e.to_string()))
        .collect::<Vec<_>>()
    }));
    eprintln!("imap: {:?}", r);
    eprintln!("after: {:?}", pool.apply(square, (3,)));
    drop(pool);
    eprintln!("dropped");
}
fn relay_v(b: Bomb) -> u64 {
    b.value
}

#[test]
fn p_imap_iter_panic() {
    wd(20);
    for backend in 0..2 {
        let out = |pool_apply: &dyn Fn() -> String| pool_apply();
        let _ = out;
        if backend == 0 {
            let pool = Pool::processes(2).unwrap();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut v = vec![];
                for x in pool.imap(
                    square,
                    (0..10u64).map(|i| {
                        assert!(i != 3, "say when");
                        i
                    }),
                ) {
                    v.push(x.unwrap());
                }
                v
            }));
            eprintln!("proc imap: {:?}", r.map_err(|_| "panicked"));
            eprintln!("after: {:?}", pool.apply(square, (3,)));
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut v = vec![];
                for x in pool.imap_unordered(
                    square,
                    (0..10u64).map(|i| {
                        assert!(i != 3, "say when");
                        i
                    }),
                ) {
                    v.push(x.unwrap());
                }
                v
            }));
            eprintln!("proc imap_unordered: {:?}", r.map_err(|_| "panicked"));
            eprintln!("after: {:?}", pool.apply(square, (3,)));
            drop(pool);
        } else {
            let pool = Pool::threads(2).unwrap();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut v = vec![];
                for x in pool.imap(
                    square,
                    (0..10u64).map(|i| {
                        assert!(i != 3, "say when");
                        i
                    }),
                ) {
                    v.push(x.unwrap());
                }
                v
            }));
            eprintln!("thr imap: {:?}", r.map_err(|_| "panicked"));
            eprintln!("after: {:?}", pool.apply(square, (3,)));
            drop(pool);
        }
    }
    eprintln!("dropped");
}

#[test]
fn p_big_pools() {
    wd(60);
    let t = std::time::Instant::now();
    let pool = Pool::processes(200).unwrap();
    eprintln!("200 up in {:?}", t.elapsed());
    let v: u64 = pool.map(square, 0..1000).unwrap().iter().sum();
    eprintln!("sum {v} in {:?}", t.elapsed());
    drop(pool);
    eprintln!("dropped in {:?}", t.elapsed());
}

#[test]
fn p_result_de_panic() {
    wd(20);
    let pool = Pool::processes(2).unwrap();
    let a = pool.apply_async(
        relay,
        (Bomb::dud(1), None, Some((Stage::Deserialize, Kind::Panic))),
    );
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        a.get_timeout(Duration::from_secs(5)).map(|b| b.value)
    }));
    eprintln!(
        "result de panic: {:?}",
        r.map_err(|_| "panicked out of get")
    );
    let b = pool.apply_async(square, (3,));
    eprintln!("after: {:?}", b.get_timeout(Duration::from_secs(5)));
    pool.terminate();
}

#[test]
fn p_arg_de_panic() {
    wd(20);
    let pool = Pool::processes(2).unwrap();
    let a = pool.apply_async(
        relay,
        (Bomb::armed(1, Stage::Deserialize, Kind::Panic), None, None),
    );
    eprintln!(
        "arg de panic: {:?}",
        a.get_timeout(Duration::from_secs(5)).map(|b| b.value)
    );
}

#[test]
fn p_result_ser_panic() {
    wd(20);
    let pool = Pool::processes(2).unwrap();
    let a = pool.apply_async(
        relay,
        (Bomb::dud(1), None, Some((Stage::Serialize, Kind::Panic))),
    );
    eprintln!(
        "result ser panic: {:?}",
        a.get_timeout(Duration::from_secs(5)).map(|b| b.value)
    );
    pool.terminate();
}
#[test]
fn p_result_drop_exit() {
    wd(20);
    let pool = Pool::processes(2).unwrap();
    let a = pool.apply_async(
        relay,
        (Bomb::dud(1), None, Some((Stage::Drop, Kind::Exit(0)))),
    );
    eprintln!(
        "result drop exit: {:?}",
        a.get_timeout(Duration::from_secs(5)).map(|b| b.value)
    );
    pool.terminate();
}
#[test]
fn p_arg_drop_exit() {
    wd(20);
    let pool = Pool::processes(2).unwrap();
    let a = pool.apply_async(
        relay,
        (Bomb::armed(1, Stage::Drop, Kind::Exit(0)), None, None),
    );
    eprintln!(
        "arg drop exit: {:?}",
        a.get_timeout(Duration::from_secs(5)).map(|b| b.value)
    );
    let a = pool.apply_async(
        relay,
        (Bomb::armed(1, Stage::Drop, Kind::Panic), None, None),
    );
    eprintln!(
        "arg drop panic: {:?}",
        a.get_timeout(Duration::from_secs(5)).map(|b| b.value)
    );
}

fn init_panics() {
    panic!("init boom");
}
fn init_exits() {
    std::process::exit(3);
}
fn init_hangs() {
    std::thread::sleep(Duration::from_secs(3600));
}
#[test]
fn p_init_panic() {
    wd(30);
    let pool = Pool::builder()
        .workers(2)
        .initializer(init_panics)
        .processes();
    eprintln!("created: {:?}", pool.as_ref().map(|p| p.pids()));
    let pool = pool.unwrap();
    let a = pool.apply_async(square, (3,));
    eprintln!(
        "init panic task: {:?}",
        a.get_timeout(Duration::from_secs(5))
    );
    pool.terminate();
}
#[test]
fn p_init_exit() {
    wd(30);
    let t = std::time::Instant::now();
    let pool = Pool::builder()
        .workers(2)
        .initializer(init_exits)
        .processes();
    eprintln!(
        "created: {:?} in {:?}",
        pool.as_ref().map(|p| p.pids()),
        t.elapsed()
    );
    let pool = pool.unwrap();
    let a = pool.apply_async(square, (3,));
    eprintln!(
        "init exit task: {:?}",
        a.get_timeout(Duration::from_secs(5))
    );
    pool.terminate();
}
#[test]
fn p_init_hang() {
    wd(30);
    let pool = Pool::builder()
        .workers(1)
        .initializer(init_hangs)
        .task_timeout(Duration::from_millis(300))
        .processes();
    eprintln!("created: {:?}", pool.as_ref().map(|p| p.pids()));
    let pool = pool.unwrap();
    let a = pool.apply_async(square, (3,));
    eprintln!(
        "init hang task: {:?}",
        a.get_timeout(Duration::from_secs(5))
    );
    pool.terminate();
}
fn pid(_: u64) -> u32 {
    std::process::id()
}
#[test]
fn p_max_tasks() {
    wd(30);
    let pool = Pool::builder()
        .workers(1)
        .max_tasks_per_child(3)
        .processes()
        .unwrap();
    let v: Vec<u32> = (0..4).map(|i| pool.apply(pid, (i,)).unwrap()).collect();
    eprintln!("pids seq: {v:?}");
    for (w, m, n) in [(1usize, 2usize, 6u64), (2, 2, 8)] {
        let pool = Pool::builder()
            .workers(w)
            .max_tasks_per_child(m)
            .processes()
            .unwrap();
        let rs: Vec<_> = (0..n).map(|i| pool.apply_async(square, (i,))).collect();
        let out: Vec<_> = rs
            .iter()
            .map(|r| r.get_timeout(Duration::from_secs(10)))
            .collect();
        eprintln!("{w} {m} {n}: {out:?}");
    }
}
fn loc_panic(_: u64) -> u64 {
    panic!("where")
}
#[test]
fn p_location() {
    let pool = Pool::threads(1).unwrap();
    eprintln!("threads: {:?}", pool.apply(loc_panic, (1,)));
    let pool = Pool::processes(1).unwrap();
    eprintln!("procs: {:?}", pool.apply(loc_panic, (1,)));
}

fn gated(gate: String, v: u64) -> u64 {
    while !std::path::Path::new(&gate).exists() {
        std::thread::sleep(Duration::from_millis(2));
    }
    v
}
#[test]
fn p_hol() {
    wd(30);
    let gate = format!("/tmp/probe/gate-{}", std::process::id());
    let _ = std::fs::remove_file(&gate);
    let pool = Pool::processes(2).unwrap();
    let g = pool.apply_async(gated, (gate.clone(), 1));
    std::thread::sleep(Duration::from_millis(100));
    let qs: Vec<_> = (0..6).map(|i| pool.apply_async(square, (i,))).collect();
    let out: Vec<_> = qs
        .iter()
        .map(|r| r.get_timeout(Duration::from_secs(3)))
        .collect();
    eprintln!("quick while gated: {out:?}");
    std::fs::File::create(&gate).unwrap();
    eprintln!("gated: {:?}", g.get_timeout(Duration::from_secs(3)));
    let _ = std::fs::remove_file(&gate);
    // map variant
    let g = pool.apply_async(gated, (gate.clone(), 1));
    std::thread::sleep(Duration::from_millis(100));
    let m = pool.map_async(square, 0..6);
    eprintln!(
        "map while gated: {:?}",
        m.get_timeout(Duration::from_secs(3))
    );
    std::fs::File::create(&gate).unwrap();
    eprintln!("gated: {:?}", g.get_timeout(Duration::from_secs(3)));
}
#[test]
fn p_fds() {
    let n0 = std::fs::read_dir("/proc/self/fd").unwrap().count();
    let pool = Pool::processes(10).unwrap();
    let n1 = std::fs::read_dir("/proc/self/fd").unwrap().count();
    eprintln!("fds per worker: {}", (n1 - n0) as f64 / 10.0);
    let _ = pool.map(square, 0..100);
    let n2 = std::fs::read_dir("/proc/self/fd").unwrap().count();
    eprintln!("after map: {}", (n2 - n0) as f64 / 10.0);
}
fn mul(x: i64, y: i64) -> i64 {
    x * y
}
#[test]
fn p_timing() {
    let t = std::time::Instant::now();
    let pool = Pool::processes(2).unwrap();
    eprintln!("created {:?}", t.elapsed());
    let gate = common::Gate::new();
    let f1 = pool.apply_async(mul, (21, 2));
    let f2 = pool.apply_async(common::gated, (gate.arg(), 1));
    assert!(common::eventually(Duration::from_secs(30), || f1.ready() || f2.ready()));
    eprintln!("first ready {:?}", t.elapsed());
    gate.open();
    eprintln!(
        "f2 {:?} {:?}",
        f2.get_timeout(Duration::from_secs(30)),
        t.elapsed()
    );
    drop(pool);
    eprintln!("dropped {:?}", t.elapsed());
    drop(gate);
    eprintln!("gate dropped {:?}", t.elapsed());
}
#[test]
fn p_timing2() {
    let pool = Pool::processes(2).unwrap();
    for round in 0..3 {
        let t = std::time::Instant::now();
        let f1 = pool.apply_async(mul, (21, 2));
        assert!(common::eventually(Duration::from_secs(30), || f1.ready()));
        eprintln!("round {round} alone: ready after {:?}", t.elapsed());
    }
    let gate = common::Gate::new();
    for round in 0..3 {
        let t = std::time::Instant::now();
        let f1 = pool.apply_async(mul, (21, 2));
        assert!(common::eventually(Duration::from_secs(30), || f1.ready()));
        eprintln!(
            "round {round} alone, gate exists: ready after {:?}",
            t.elapsed()
        );
    }
    let f2 = pool.apply_async(common::gated, (gate.arg(), 1));
    for round in 0..3 {
        let t = std::time::Instant::now();
        let f1 = pool.apply_async(mul, (21, 2));
        assert!(common::eventually(Duration::from_secs(30), || f1.ready()));
        eprintln!(
            "round {round} with gated running: ready after {:?}",
            t.elapsed()
        );
    }
    let t = std::time::Instant::now();
    let f1 = pool.apply_async(mul, (21, 2));
    eprintln!(
        "get_timeout {:?} after {:?}",
        f1.get_timeout(Duration::from_secs(30)),
        t.elapsed()
    );
    gate.open();
    let _ = f2.get_timeout(Duration::from_secs(5));
}
fn stamp(_: u64) -> (u32, u128) {
    (
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
}
fn now_us() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros()
}
#[test]
fn p_timing3() {
    for _ in 0..5 {
        let pool = Pool::processes(2).unwrap();
        let pids = pool.pids();
        let gate = common::Gate::new();
        let t0 = now_us();
        let f1 = pool.apply_async(stamp, (1,));
        let f2 = pool.apply_async(common::gated, (gate.arg(), 1));
        assert!(common::eventually(Duration::from_secs(30), || f1.ready()));
        let t1 = now_us();
        let (pid, ran) = f1.get_timeout(Duration::from_secs(1)).unwrap();
        eprintln!(
            "pids {pids:?}: f1 ran on {pid} at +{}us, ready at +{}us",
            ran - t0,
            t1 - t0
        );
        gate.open();
        let _ = f2.get_timeout(Duration::from_secs(5));
    }
}
#[test]
fn p_timing4() {
    let pool = Pool::processes(2).unwrap();
    let pids = pool.pids();
    let gate = common::Gate::new();
    let t0 = now_us();
    let f1 = pool.apply_async(stamp, (1,));
    let f2 = pool.apply_async(common::gated, (gate.arg(), 1));
    assert!(common::eventually(Duration::from_secs(30), || f1.ready() || f2.ready()));
    let t1 = now_us();
    let (pid, ran) = f1.get_timeout(Duration::from_secs(1)).unwrap();
    eprintln!(
        "pids {pids:?}: f1 ran on {pid} at +{}us, ready at +{}us",
        ran as i128 - t0 as i128,
        t1 - t0
    );
    gate.open();
    let _ = f2.get_timeout(Duration::from_secs(5));
}
fn variant(use_pids: bool, use_stamp: bool, print: bool) -> Duration {
    let t = std::time::Instant::now();
    let pool = Pool::processes(2).unwrap();
    if print {
        eprintln!("created {:?}", t.elapsed());
    }
    if use_pids {
        let _ = pool.pids();
    }
    let gate = common::Gate::new();
    let t = std::time::Instant::now();
    let r = if use_stamp {
        let f1 = pool.apply_async(stamp, (1,));
        let f2 = pool.apply_async(common::gated, (gate.arg(), 1));
        assert!(common::eventually(Duration::from_secs(30), || f1.ready() || f2.ready()));
        let r = t.elapsed();
        gate.open();
        let _ = f2.get_timeout(Duration::from_secs(5));
        r
    } else {
        let f1 = pool.apply_async(mul, (21, 2));
        let f2 = pool.apply_async(common::gated, (gate.arg(), 1));
        assert!(common::eventually(Duration::from_secs(30), || f1.ready() || f2.ready()));
        let r = t.elapsed();
        gate.open();
        let _ = f2.get_timeout(Duration::from_secs(5));
        r
    };
    r
}
#[test]
fn p_variants() {
    let which: u32 = std::env::var("V").unwrap().parse().unwrap();
    let d = variant(which & 1 != 0, which & 2 != 0, which & 4 != 0);
    eprintln!("V={which} ready after {d:?}");
}
