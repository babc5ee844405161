//! The journal's unit tests: resuming, refusals, torn ends, locks, failures.

use super::format::{
    FileHeader, KIND_FILE, KIND_RESULT, MAGIC, VERSION, encode_header, frame_at, leb128,
    push_frame, read_leb128,
};
use super::*;
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A journal path of its own, removed when dropped.
struct Temp(PathBuf);

impl Temp {
    fn new(name: &str) -> Temp {
        let dir = std::env::temp_dir().join(format!("fondo-journal-tests-{}", std::process::id()));
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
    assert!(
        e.index() == Some(50) && matches!(e.inner(), Error::Panicked { .. }),
        "{e:?}"
    );
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
        exe: crate::boundary::digest::ExeDigest {
            size: 12345,
            hash: 0xdead_beef,
        },
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
        e.index() == Some(3)
            && matches!(e.inner(), Error::Panicked { message, .. } if message == "flaky 3"),
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
            // Once some tasks have run (opening the journal hashes this executable
            // first, which takes a while in a debug build).
            let end = std::time::Instant::now() + Duration::from_secs(30);
            while RUNS.load(Ordering::SeqCst) < 50 && std::time::Instant::now() < end {
                std::thread::sleep(Duration::from_millis(1));
            }
            pool.terminate();
        });
        Journal::open(&t.0)
            .unwrap()
            .map(&pool, slow, 0..5000)
            .unwrap_err()
    });
    assert!(matches!(e, Error::Terminated), "{e:?}");
    // A worker thread cannot be killed, and `join` does not wait for a terminated
    // pool's: one in the middle of a batch finishes it unseen. Wait until no task
    // has run for 200 ms (tasks take 1 ms) before counting what the rerun runs.
    let mut seen = RUNS.load(Ordering::SeqCst);
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200));
        let now = RUNS.load(Ordering::SeqCst);
        if now == seen {
            break;
        }
        seen = now;
    }
    let done = Journal::inspect(&t.0).unwrap().maps[0].done.len();
    let ran = RUNS.swap(0, Ordering::SeqCst);
    assert!(done > 0 && done < 5000, "done {done} ran {ran}");
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
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            if self.0 == 4 {
                return Err(serde::ser::Error::custom("four is unwritable"));
            }
            s.serialize_u32(self.0)
        }
    }
    impl<'de> Deserialize<'de> for Picky {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            u32::deserialize(d).map(Picky)
        }
    }
    let t = Temp::new("picky");
    let e = Journal::open(&t.0)
        .unwrap()
        .map(&threads(), Picky, 0..10)
        .unwrap_err();
    assert!(
        e.index() == Some(4)
            && matches!(e.inner(), Error::Serialization { what: Payload::Result, message, .. }
                if message.contains("four is unwritable")),
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
