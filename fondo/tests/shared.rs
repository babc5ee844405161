//! `Shared` values and `map_with` contexts on every backend: delivered once to each
//! worker, decoded at most once there, read in place, forgotten when their last
//! handle goes, redelivered to a replacement worker, never left behind.

mod common;

use common::{RESULT_LIMIT, alive, eventually, sigkill};
use fondo::{Error, Pool, Shared};
use serde::{Deserialize, Deserializer, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A context that counts, in each process, how many times it was decoded.
#[derive(Serialize)]
struct Context {
    factor: u64,
    padding: Vec<u8>,
}

static DECODED: AtomicUsize = AtomicUsize::new(0);

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            factor: u64,
            #[serde(with = "serde_bytes")]
            padding: Vec<u8>,
        }
        let raw = Raw::deserialize(d)?;
        DECODED.fetch_add(1, Ordering::SeqCst);
        Ok(Context {
            factor: raw.factor,
            padding: raw.padding,
        })
    }
}

/// `(pid, decodes so far in this process, factor × x)`; the padding arrived whole.
fn scaled(ctx: &Context, x: u64) -> (u32, usize, u64) {
    assert_eq!(ctx.padding.len(), 8 << 20);
    (
        std::process::id(),
        DECODED.load(Ordering::SeqCst),
        ctx.factor * x,
    )
}

fn big_context() -> Shared<Context> {
    Shared::new(Context {
        factor: 3,
        padding: vec![7; 8 << 20],
    })
    .expect("share")
}

#[test]
fn a_context_is_decoded_once_per_worker_process() {
    let pool = Pool::processes(2).expect("pool");
    let ctx = big_context();
    let out = pool.map_with(&ctx, scaled, 0..300).expect("map_with");
    assert_eq!(
        out.iter().map(|o| o.2).collect::<Vec<_>>(),
        (0..300).map(|x| 3 * x).collect::<Vec<_>>()
    );
    for (pid, decodes, _) in &out {
        assert_ne!(*pid, std::process::id());
        assert_eq!(
            *decodes, 1,
            "worker {pid} decoded the context {decodes} times"
        );
    }
    // Again, with the same context: still no second decode.
    let again = pool.map_with(&ctx, scaled, 0..50).expect("map_with");
    assert!(again.iter().all(|o| o.1 == 1), "{again:?}");
}

#[test]
fn threads_use_the_context_in_place() {
    let pool = Pool::threads(2).expect("pool");
    let ctx = big_context();
    let before = DECODED.load(Ordering::SeqCst);
    let out = pool.map_with(&ctx, scaled, 0..10).expect("map_with");
    assert_eq!(out[9].2, 27);
    assert_eq!(
        DECODED.load(Ordering::SeqCst),
        before,
        "never decoded on threads"
    );
}

fn page_aligned_sum(data: Shared<[u64]>, from: usize) -> (bool, u64) {
    (
        (data.as_ptr() as usize).is_multiple_of(4096),
        data[from..].iter().sum(),
    )
}

#[test]
fn a_shared_slice_is_read_in_place_by_every_worker() {
    let values: Vec<u64> = (0..1 << 20).collect();
    let total: u64 = values.iter().sum();
    let data = Shared::from_slice(&values).expect("share");
    let pool = Pool::processes(2).expect("pool");
    let out = pool
        .starmap(page_aligned_sum, (0..8).map(|_| (data.clone(), 0)))
        .expect("starmap");
    // Mapped, not copied: the slice starts a page of the worker's address space.
    assert!(
        out.iter().all(|&(aligned, sum)| aligned && sum == total),
        "{out:?}"
    );
    let tail = pool
        .apply(page_aligned_sum, (data, 1 << 19))
        .expect("apply");
    assert_eq!(tail.1, total - (0..1u64 << 19).sum::<u64>());
}

fn my_pid() -> u32 {
    std::process::id()
}

#[test]
fn a_replaced_worker_gets_the_shared_value_again() {
    let pool = Pool::processes(1).expect("pool");
    let ctx = big_context();
    assert_eq!(pool.map_with(&ctx, scaled, [1]).expect("first")[0].2, 3);
    let first = pool.apply(my_pid, ()).expect("pid");
    sigkill(first);
    assert!(eventually(RESULT_LIMIT, || !alive(first)));
    let out = pool.map_with(&ctx, scaled, [2, 3]).expect("after the kill");
    assert_eq!(out.iter().map(|o| o.2).collect::<Vec<_>>(), [6, 9]);
    assert!(out.iter().all(|o| o.0 != first && o.1 == 1), "{out:?}");
}

/// How many mappings of a shared value `pid` holds.
fn shared_mappings(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("memfd:fondo-shared"))
        .count()
}

fn sum_bytes(data: Shared<[u8]>) -> u64 {
    data.iter().map(|&b| u64::from(b)).sum()
}

#[test]
fn a_worker_forgets_a_value_whose_last_handle_went() {
    let pool = Pool::processes(1).expect("pool");
    let worker = pool.apply(my_pid, ()).expect("pid");
    let data = Shared::from_slice(&vec![1u8; 1 << 20]).expect("share");
    assert_eq!(
        pool.apply(sum_bytes, (data.clone(),)).expect("sum"),
        1 << 20
    );
    assert_eq!(shared_mappings(worker), 1, "the worker maps it once");
    drop(data);
    // The next job tells the worker to forget it before it runs.
    assert_eq!(pool.apply(my_pid, ()).expect("pid"), worker);
    assert_eq!(shared_mappings(worker), 0, "forgotten and unmapped");
}

#[test]
fn shared_memory_lives_in_no_file() {
    let before: Vec<_> = std::fs::read_dir("/dev/shm")
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    let data = Shared::from_slice(&[5u32; 1000]).expect("share");
    let pool = Pool::processes(1).expect("pool");
    let during: Vec<_> = std::fs::read_dir("/dev/shm")
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(
        pool.apply(|d: Shared<[u32]>| d.len(), (data,))
            .expect("len"),
        1000
    );
    assert_eq!(
        before, during,
        "nothing in /dev/shm to leave behind after a kill -9"
    );
}

fn echo(s: Shared<Vec<u32>>) -> Shared<Vec<u32>> {
    s
}

fn made_here(x: u32) -> Shared<Vec<u32>> {
    Shared::new(vec![x]).expect("share")
}

#[test]
fn a_value_may_come_back_but_one_made_in_a_worker_may_not() {
    let pool = Pool::processes(1).expect("pool");
    let s = Shared::new(vec![1u32, 2, 3]).expect("share");
    let back = pool.apply(echo, (s.clone(),)).expect("echo");
    assert_eq!(back.get(), &[1, 2, 3]);
    match pool.apply(made_here, (4,)) {
        Err(Error::Serialization { message, .. }) => {
            assert!(message.contains("never delivered"), "{message}");
        }
        other => panic!("expected Serialization, got {other:?}"),
    }
}

fn first_of(s: Shared<Vec<u32>>, i: usize) -> u32 {
    s[i]
}

#[test]
fn shared_values_travel_with_spawn_imap_and_apply_async() {
    let s = Shared::new(vec![10u32, 20, 30]).expect("share");
    let child = fondo::spawn(first_of, (s.clone(), 2)).expect("spawn");
    assert_eq!(child.join().expect("join"), 30);
    let pool = Pool::processes(2).expect("pool");
    let got: Vec<u32> = pool
        .imap(
            |(s, i): (Shared<Vec<u32>>, usize)| s[i],
            (0..3).map(|i| (s.clone(), i)),
        )
        .map(|r| r.expect("imap"))
        .collect();
    assert_eq!(got, [10, 20, 30]);
    let r = pool.apply_async(first_of, (s, 1));
    assert_eq!(
        r.get_timeout(Duration::from_secs(30)).expect("apply_async"),
        20
    );
}
