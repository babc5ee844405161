//! The process pool's overhead figures (the README's performance table), with the
//! floors they are judged against measured in the same run: a raw socketpair
//! ping-pong (blocking and spinning) and memcpy bandwidth. The thread pool's figures are shown alongside, to
//! separate what the pool's bookkeeping costs from what crossing a process costs.

use super::stats::{BoxError, Unit, sample, timed};
use super::{Runner, Sizes};
use fondo::Pool;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Python's `noop()`, for `apply_async`.
pub(super) fn noop() {}

/// Python's `noop(x)`, for `map` and `imap`.
pub(super) fn noop1(_x: u32) {}

/// The payload task: gives its argument back.
fn identity(v: Vec<u8>) -> Vec<u8> {
    v
}

/// The same with a byte-string newtype (what `serde_bytes` does): one
/// `serialize_bytes` call instead of one `serialize_u8` per byte. The wire bytes are
/// identical; only the codec's speed differs.
fn identity_bytes(v: Bytes) -> Bytes {
    v
}

/// A `Vec<u8>` that serialises as a byte string.
#[derive(Clone)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Bytes, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element()? {
                    v.push(b);
                }
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(Visitor)
    }
}

/// Steps this module adds to the progress bar.
pub const STEPS: u64 = 13;

/// Mean µs per `apply_async(noop).get()` over `n` sequential round trips.
pub(super) fn apply_round_trips<B, F>(pool: &Pool<B>, f: F, n: usize) -> Result<f64, BoxError>
where
    B: fondo::Backend + fondo::Runs<F, ()>,
    F: fondo::Task<(), Output = ()> + Copy,
{
    let (t, r) = timed(|| -> fondo::Result<()> {
        for _ in 0..n {
            pool.apply_async(f, ()).get()?;
        }
        Ok(())
    });
    r?;
    Ok(t / n as f64 * 1e6)
}

/// One payload round trip of `tasks` × `size` bytes through `f`; decimal GB/s
/// counting the bytes sent and the bytes received (as the CPython script does).
pub(super) fn payload<T, F>(
    pool: &Pool<fondo::Processes>,
    f: F,
    make: impl Fn(usize) -> T,
    len: impl Fn(&T) -> usize,
    size: usize,
    tasks: usize,
) -> Result<f64, BoxError>
where
    F: Fn(T) -> T + fondo::Task<(T,), Output = T> + Copy,
    fondo::Processes: fondo::Runs<F, (T,)>,
    T: Send + 'static,
{
    let items: Vec<T> = (0..tasks).map(|_| make(size)).collect();
    let (t, out) = timed(|| pool.map(f, items));
    let out = out?;
    if out.len() != tasks || out.iter().any(|v| len(v) != size) {
        return Err("a payload came back with the wrong size".into());
    }
    Ok((2 * size * tasks) as f64 / t / 1e9)
}

/// How long the payload figures warm up before their samples.
const PAYLOAD_WARM_UP: Duration = Duration::from_secs(2);

/// Runs full-size payload round trips for [`PAYLOAD_WARM_UP`] (one at least), as
/// criterion warms up for 3 s: a pool moving big values takes a few batches to reach
/// its steady state (every worker has touched every arena slot, and the memory the
/// caller frees between batches is there to reuse); the samples then measure that.
pub(super) fn warm_up(
    mut round_trip: impl FnMut() -> Result<f64, BoxError>,
) -> Result<(), BoxError> {
    let start = Instant::now();
    loop {
        round_trip()?;
        if start.elapsed() >= PAYLOAD_WARM_UP {
            return Ok(());
        }
    }
}

/// Measures every overhead figure.
pub fn run(r: &mut Runner, sizes: &Sizes) {
    let repeat = r.repeat;
    let n = sizes.roundtrip_batch;

    r.step(
        "apply_async_roundtrip",
        "fondo_processes",
        Some(2),
        Unit::Micros,
        || {
            let pool = Pool::processes(2)?;
            sample(repeat, || apply_round_trips(&pool, noop, n))
        },
    );
    r.step(
        "apply_async_roundtrip",
        "fondo_threads",
        Some(2),
        Unit::Micros,
        || {
            let pool = Pool::threads(2)?;
            sample(repeat, || apply_round_trips(&pool, noop, n))
        },
    );
    for (name, spin) in [
        ("socketpair_pingpong_blocking", false),
        ("socketpair_pingpong_spinning", true),
    ] {
        r.step(name, "std_unixstream", Some(2), Unit::Micros, || {
            let mut pp = PingPong::new(spin)?;
            sample(repeat, || Ok(pp.round_trips(n * 4)?))
        });
    }

    let tasks = sizes.noop_tasks;
    for system in ["fondo_processes", "fondo_threads"] {
        r.step("map_noop", system, Some(2), Unit::TasksPerSec, || {
            let rate = |t: f64, v: fondo::Result<Vec<()>>| -> Result<f64, BoxError> {
                if v?.len() != tasks {
                    return Err("map returned the wrong number of results".into());
                }
                Ok(tasks as f64 / t)
            };
            if system == "fondo_processes" {
                let pool = Pool::processes(2)?;
                sample(repeat, || {
                    let (t, v) = timed(|| pool.map(noop1, 0..tasks as u32));
                    rate(t, v)
                })
            } else {
                let pool = Pool::threads(2)?;
                sample(repeat, || {
                    let (t, v) = timed(|| pool.map(noop1, 0..tasks as u32));
                    rate(t, v)
                })
            }
        });
    }

    let tasks = sizes.imap_tasks;
    for system in ["fondo_processes", "fondo_threads"] {
        r.step(
            "imap_noop_chunk1",
            system,
            Some(2),
            Unit::TasksPerSec,
            || {
                let count =
                    |it: &mut dyn Iterator<Item = fondo::Result<()>>| -> Result<usize, BoxError> {
                        let mut k = 0;
                        for x in it {
                            x?;
                            k += 1;
                        }
                        Ok(k)
                    };
                let rate = |t: f64, k: Result<usize, BoxError>| -> Result<f64, BoxError> {
                    if k? != tasks {
                        return Err("imap yielded the wrong number of results".into());
                    }
                    Ok(tasks as f64 / t)
                };
                // Python's imap chunksize is 1 by default, and so is fondo's.
                if system == "fondo_processes" {
                    let pool = Pool::processes(2)?;
                    sample(repeat, || {
                        let (t, k) = timed(|| count(&mut pool.imap(noop1, 0..tasks as u32)));
                        rate(t, k)
                    })
                } else {
                    let pool = Pool::threads(2)?;
                    sample(repeat, || {
                        let (t, k) = timed(|| count(&mut pool.imap(noop1, 0..tasks as u32)));
                        rate(t, k)
                    })
                }
            },
        );
    }

    let (size, tasks) = (sizes.payload_bytes, sizes.payload_tasks);
    r.step(
        "payload_roundtrip",
        "fondo_processes",
        Some(2),
        Unit::GbPerSec,
        || {
            let pool = Pool::processes(2)?;
            let make = |n| vec![7u8; n];
            warm_up(|| payload(&pool, identity, make, Vec::len, size, tasks))?;
            (0..repeat)
                .map(|_| payload(&pool, identity, make, Vec::len, size, tasks))
                .collect()
        },
    );
    r.step(
        "payload_roundtrip_bytes",
        "fondo_processes",
        Some(2),
        Unit::GbPerSec,
        || {
            let pool = Pool::processes(2)?;
            let make = |n| Bytes(vec![7u8; n]);
            let len = |b: &Bytes| b.0.len();
            warm_up(|| payload(&pool, identity_bytes, make, len, size, tasks))?;
            (0..repeat)
                .map(|_| payload(&pool, identity_bytes, make, len, size, tasks))
                .collect()
        },
    );
    r.step("memcpy", "rust", Some(1), Unit::GbPerSec, || {
        let src = vec![7u8; size];
        let mut dst = vec![0u8; size];
        sample(repeat, || {
            let (t, ()) = timed(|| {
                for _ in 0..tasks {
                    dst.copy_from_slice(black_box(&src));
                    black_box(&mut dst);
                }
            });
            Ok((size * tasks) as f64 / t / 1e9)
        })
    });

    // What a decoded value costs before any copying between processes: a fresh
    // allocation, faulted in page by page as it is filled. Every payload round trip
    // pays it once, for the caller's result (workers decode into a warm heap).
    r.step("alloc_copy", "rust", Some(1), Unit::GbPerSec, || {
        let src = vec![7u8; size];
        sample(repeat, || {
            let (t, copies) = timed(|| {
                (0..tasks)
                    .map(|_| black_box(&src).clone())
                    .collect::<Vec<_>>()
            });
            drop(copies);
            Ok((size * tasks) as f64 / t / 1e9)
        })
    });

    for system in ["fondo_processes", "fondo_threads"] {
        r.step(
            "pool_create_first_close",
            system,
            Some(2),
            Unit::Millis,
            || {
                sample(repeat, || {
                    let (t, done) = timed(|| -> fondo::Result<()> {
                        if system == "fondo_processes" {
                            let pool = Pool::processes(2)?;
                            pool.apply(noop, ())?;
                            pool.join();
                        } else {
                            let pool = Pool::threads(2)?;
                            pool.apply(noop, ())?;
                            pool.join();
                        }
                        Ok(())
                    });
                    done?;
                    Ok(t * 1e3)
                })
            },
        );
    }
}

/// A socketpair with an echo thread on the far end: the floor under any design that
/// sends one message each way per task.
struct PingPong {
    near: UnixStream,
    echo: Option<JoinHandle<()>>,
}

impl PingPong {
    /// Blocking: both ends sleep in `read` (a wake-up per message). Spinning: both
    /// ends poll non-blocking sockets in a busy loop (no wake-ups, two busy CPUs).
    fn new(spin: bool) -> io::Result<PingPong> {
        let (near, far) = UnixStream::pair()?;
        near.set_nonblocking(spin)?;
        far.set_nonblocking(spin)?;
        let echo = std::thread::Builder::new()
            .name("pingpong-echo".into())
            .spawn(move || {
                let mut far = far;
                let mut buf = [0u8; 8];
                while read_exact(&mut far, &mut buf).unwrap_or(false) {
                    if write_all(&mut far, &buf).is_err() {
                        break;
                    }
                }
            })?;
        Ok(PingPong {
            near,
            echo: Some(echo),
        })
    }

    /// Mean µs per 8-byte round trip over `n` of them.
    fn round_trips(&mut self, n: usize) -> io::Result<f64> {
        let mut buf = [0u8; 8];
        let (t, r) = timed(|| -> io::Result<()> {
            for i in 0..n as u64 {
                write_all(&mut self.near, &i.to_le_bytes())?;
                if !read_exact(&mut self.near, &mut buf)? || u64::from_le_bytes(buf) != i {
                    return Err(io::Error::other("echo thread answered wrongly"));
                }
            }
            Ok(())
        });
        r?;
        Ok(t / n as f64 * 1e6)
    }
}

impl Drop for PingPong {
    fn drop(&mut self) {
        let _ = self.near.shutdown(std::net::Shutdown::Both);
        if let Some(h) = self.echo.take() {
            let _ = h.join();
        }
    }
}

/// `read_exact` that also works (by spinning) on a non-blocking socket; false on EOF.
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

/// `write_all` that also works (by spinning) on a non-blocking socket.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_newtype_round_trips() {
        // serde_json spells a byte string as a list of numbers, like a Vec<u8>.
        let v = vec![1u8, 2, 3, 250];
        let json = serde_json::to_string(&Bytes(v.clone())).expect("encode");
        assert_eq!(json, serde_json::to_string(&v).expect("encode"));
        let back: Bytes = serde_json::from_str(&json).expect("decode");
        assert_eq!(back.0, v);
    }

    #[test]
    fn ping_pong_round_trips_both_ways() {
        for spin in [false, true] {
            let mut pp = PingPong::new(spin).expect("pair");
            assert!(pp.round_trips(100).expect("round trips") > 0.0);
        }
    }
}
