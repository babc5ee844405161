//! Big values on the process backend: bodies of 1 MiB and more travel through
//! shared-memory lanes instead of the socket; they must arrive intact both ways,
//! survive a worker dying with a lane in use, and give their memory back when idle;
//! workers keep the memory big values leave behind while busy, not once idle.

mod common;
use common::{eventually, status_kb};

use fondo::{Pool, Result};
use std::path::Path;
use std::time::Duration;

/// Every body of at least this many bytes goes through a lane when one is free.
const LANE_MIN: usize = 1 << 20;

fn reversed(mut v: Vec<u8>) -> Vec<u8> {
    v.reverse();
    v
}

/// Aborts the first time a big value arrives (no marker yet), reverses it after.
fn abort_once_then_reverse(v: Vec<u8>, marker: String) -> Vec<u8> {
    if v.len() >= LANE_MIN && !Path::new(&marker).exists() {
        std::fs::File::create(&marker).expect("marker");
        std::process::abort();
    }
    reversed(v)
}

/// A value whose bytes depend on its index, so a mix-up shows.
fn pattern(index: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (j * 31 + index * 7) as u8).collect()
}

fn expect_reversed(inputs: &[Vec<u8>], outputs: &[Vec<u8>]) {
    assert_eq!(inputs.len(), outputs.len());
    for (i, (input, output)) in inputs.iter().zip(outputs).enumerate() {
        let mut want = input.clone();
        want.reverse();
        assert!(
            output == &want,
            "value {i} ({} bytes) came back wrong",
            input.len()
        );
    }
}

/// Kilobytes of shared memory a process has resident (lanes and progress page).
fn shmem_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "RssShmem")
}

/// Fills `mib` MiB, frees it, and says how many kB of private memory the worker
/// running it then has resident.
fn resident_after_freeing(mib: usize) -> Option<u64> {
    let big = vec![1u8; mib << 20];
    std::hint::black_box(&big);
    drop(big);
    status_kb(std::process::id(), "RssAnon")
}

#[test]
fn big_values_arrive_intact_both_ways_with_lanes_reused() -> Result<()> {
    // Around the threshold, and more big values than lanes: lanes are reused, and a
    // value finding both of its worker's lanes busy goes through the socket.
    let sizes = [
        10,
        LANE_MIN - 8,
        LANE_MIN,
        3 * LANE_MIN,
        5,
        2 * LANE_MIN + 1,
        4 * LANE_MIN,
        LANE_MIN + 1,
        3 * LANE_MIN,
        7,
        2 * LANE_MIN,
        LANE_MIN,
    ];
    let inputs: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| pattern(i, n))
        .collect();
    let pool = Pool::builder().workers(2).chunksize(1).processes()?;
    let out = pool.map(reversed, inputs.clone())?;
    expect_reversed(&inputs, &out);
    // The lanes carried them: the workers hold shared memory of the values' size.
    let pids = pool.pids();
    assert!(
        pids.iter()
            .any(|&pid| shmem_kb(pid).is_some_and(|kb| kb >= LANE_MIN as u64 / 1024)),
        "no worker has touched its lanes: {:?}",
        pids.iter().map(|&p| shmem_kb(p)).collect::<Vec<_>>()
    );
    // Many in flight at once, through apply_async.
    let pending: Vec<_> = inputs
        .iter()
        .map(|v| pool.apply_async(reversed, (v.clone(),)))
        .collect();
    let out = pending
        .into_iter()
        .map(|r| r.get())
        .collect::<Result<Vec<_>>>()?;
    expect_reversed(&inputs, &out);
    Ok(())
}

#[test]
fn idle_lanes_give_their_memory_back() -> Result<()> {
    let pool = Pool::processes(1)?;
    let pid = pool.pids()[0];
    let value = pattern(1, 4 * LANE_MIN);
    let out = pool.apply(reversed, (value.clone(),))?;
    expect_reversed(&[value], &[out]);
    assert!(
        shmem_kb(pid).is_some_and(|kb| kb >= 4 * LANE_MIN as u64 / 1024),
        "lanes hold the value while busy: {:?} kB",
        shmem_kb(pid)
    );
    // Idle for a second, the pool punches the lanes' pages out.
    assert!(
        eventually(Duration::from_secs(10), || shmem_kb(pid)
            .is_some_and(|kb| kb < LANE_MIN as u64 / 1024)),
        "lanes still hold {:?} kB after idling",
        shmem_kb(pid)
    );
    // And they work again after.
    let value = pattern(2, 2 * LANE_MIN);
    let out = pool.apply(reversed, (value.clone(),))?;
    expect_reversed(&[value], &[out]);
    Ok(())
}

#[test]
fn a_worker_dying_with_a_big_value_in_its_lane_loses_nothing() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("fondo-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let marker = dir.join("died").to_string_lossy().into_owned();
    let inputs: Vec<Vec<u8>> = (0..6).map(|i| pattern(i, 2 * LANE_MIN + i)).collect();
    let pool = Pool::builder()
        .workers(2)
        .chunksize(1)
        .retries(1)
        .processes()?;
    let out = pool.starmap(
        abort_once_then_reverse,
        inputs.iter().map(|v| (v.clone(), marker.clone())),
    );
    let died = Path::new(&marker).exists();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(died, "a worker aborted on its first big value");
    expect_reversed(&inputs, &out?);
    Ok(())
}

#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn workers_keep_memory_their_tasks_free_until_idle() -> Result<()> {
    let pool = Pool::processes(1)?;
    let pid = pool.pids()[0];
    // Freed, the 256 MiB stay in the worker for the next task...
    let held = pool.apply(resident_after_freeing, (256,))?;
    assert!(
        held.is_some_and(|kb| kb >= 200 << 10),
        "the worker returned freed memory at once: {held:?} kB resident"
    );
    // ...until it idles for a second.
    assert!(
        eventually(Duration::from_secs(10), || status_kb(pid, "RssAnon")
            .is_some_and(|kb| kb < 64 << 10)),
        "an idle worker still holds {:?} kB",
        status_kb(pid, "RssAnon")
    );
    // Its next task finds the allocator working as before.
    assert!(pool.apply(resident_after_freeing, (64,))?.is_some());
    Ok(())
}

#[test]
fn workers_told_to_return_freed_memory_hold_none() -> Result<()> {
    let pool = Pool::builder()
        .workers(1)
        .return_freed_memory()
        .processes()?;
    let held = pool.apply(resident_after_freeing, (256,))?;
    assert!(
        held.is_some_and(|kb| kb < 64 << 10),
        "freed memory still resident: {held:?} kB"
    );
    Ok(())
}
