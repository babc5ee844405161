//! The process pool's overheads (the README's performance table), each next to the
//! floor it is judged against, measured in the same run:
//!
//! - `round_trip`: `apply_async(noop).get()` on `Pool::processes(2)`, and an 8-byte
//!   ping-pong over a raw `UnixStream` socketpair with an echo thread, blocking and
//!   spinning (the goal: ≤ 15 µs; within 3× the blocking ping-pong).
//! - `tasks`: `map(noop, 100k)` with automatic chunks and `imap(noop)` with
//!   chunksize 1 over 10k items (reported as elements per second).
//! - `payload`: an 8 MiB `Vec<u8>` through an identity task, the same as a byte
//!   string (one `serialize_bytes` call instead of one `serialize_u8` per byte),
//!   and memcpy of 8 MiB as the limit (bytes per second count both directions).
//! - `pool`: `Pool::processes(2)` create + first task + close.
//!
//! `fondo bench` (the CLI) reports the same figures side by side with CPython; this
//! bench is for before/after comparisons while optimising. Run:
//! `cargo bench -p fondo --bench process` (about a minute and a half).

use std::hint::black_box;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_main};
use fondo::Pool;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const PAYLOAD: usize = 8 << 20;

fn noop() {}

fn noop1(_x: u32) {}

fn identity(v: Vec<u8>) -> Vec<u8> {
    v
}

fn identity_bytes(v: Bytes) -> Bytes {
    v
}

/// A `Vec<u8>` that serialises as one byte string, as `serde_bytes` would.
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// `read_exact` that spins on a non-blocking socket; false on EOF.
fn read_exact(s: &mut UnixStream, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// `write_all` that spins on a non-blocking socket.
fn write_all(s: &mut UnixStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match s.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(k) => buf = &buf[k..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs `body` with the near end of a socketpair whose far end echoes 8-byte messages.
fn with_echo(spin: bool, body: impl FnOnce(&mut UnixStream)) {
    let (mut near, far) = UnixStream::pair().expect("socketpair");
    near.set_nonblocking(spin).expect("nonblocking");
    far.set_nonblocking(spin).expect("nonblocking");
    let echo = std::thread::spawn(move || {
        let mut far = far;
        let mut buf = [0u8; 8];
        while read_exact(&mut far, &mut buf).unwrap_or(false) {
            if write_all(&mut far, &buf).is_err() {
                break;
            }
        }
    });
    body(&mut near);
    near.shutdown(std::net::Shutdown::Both).expect("shutdown");
    echo.join().expect("echo thread");
}

fn round_trip(c: &mut Criterion) {
    let pool = Pool::processes(2).expect("pool");
    let mut g = c.benchmark_group("round_trip");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("apply_async_noop_get", |b| {
        b.iter(|| pool.apply_async(noop, ()).get().expect("noop"))
    });
    for (name, spin) in [
        ("socketpair_pingpong_blocking", false),
        ("socketpair_pingpong_spinning", true),
    ] {
        with_echo(spin, |near| {
            let mut buf = [0u8; 8];
            g.bench_function(name, |b| {
                b.iter(|| {
                    write_all(near, &7u64.to_le_bytes()).expect("write");
                    assert!(read_exact(near, &mut buf).expect("read"));
                })
            });
        });
    }
    g.finish();
}

fn tasks(c: &mut Criterion) {
    let pool = Pool::processes(2).expect("pool");
    let mut g = c.benchmark_group("tasks");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("map_noop_100k", |b| {
        b.iter(|| pool.map(noop1, black_box(0..100_000u32)).expect("map"))
    });
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("imap_noop_chunk1_10k", |b| {
        b.iter(|| {
            for r in pool.imap(noop1, black_box(0..10_000u32)) {
                r.expect("imap");
            }
        })
    });
    g.finish();
}

fn payload(c: &mut Criterion) {
    let pool = Pool::processes(2).expect("pool");
    let mut g = c.benchmark_group("payload");
    // An 8 MiB Vec<u8> takes tens of ms: one iteration per sample.
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Bytes(2 * PAYLOAD as u64));
    g.bench_function("vec_u8_8MiB", |b| {
        b.iter_batched(
            || vec![7u8; PAYLOAD],
            |v| {
                let back = pool.apply(identity, (v,)).expect("identity");
                assert_eq!(back.len(), PAYLOAD);
                back
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("byte_string_8MiB", |b| {
        b.iter_batched(
            || Bytes(vec![7u8; PAYLOAD]),
            |v| {
                let back = pool.apply(identity_bytes, (v,)).expect("identity");
                assert_eq!(back.0.len(), PAYLOAD);
                back
            },
            BatchSize::PerIteration,
        )
    });
    // memcpy copies once; count it as one direction of the round trip's two.
    g.throughput(Throughput::Bytes(PAYLOAD as u64));
    let src = vec![7u8; PAYLOAD];
    let mut dst = vec![0u8; PAYLOAD];
    g.bench_function("memcpy_8MiB", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        })
    });
    g.finish();
}

fn pool(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("processes_2_create_first_close", |b| {
        b.iter(|| {
            let pool = Pool::processes(2).expect("pool");
            pool.apply(noop, ()).expect("first task");
            pool.join();
        })
    });
    g.finish();
}

/// Every group, with criterion's default configuration and the command line's
/// options (what `criterion_group!` would write, but private and documented).
fn benches() {
    let mut c = Criterion::default().configure_from_args();
    round_trip(&mut c);
    tasks(&mut c);
    payload(&mut c);
    pool(&mut c);
}
criterion_main!(benches);
