//! The futures API: `wait` and `as_completed` over many results, `cancel`, a
//! timeout on `imap`, `map` errors that say which input failed, and a shutdown
//! that cancels what has not started. The README's "Futures" section, runnable:
//!
//! ```text
//! cargo run -p fondo --example futures
//! ```

use fondo::{Error, Pending, Pool, ReturnWhen};
use std::time::Duration;

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(x));
    x * x
}

fn main() -> fondo::Result<()> {
    let pool = Pool::processes(2)?;
    let results: Vec<_> = (1..=8)
        .map(|x| pool.apply_async(slow_square, (x,)))
        .collect();
    let first = fondo::wait(&results, ReturnWhen::FirstCompleted, None); // done / pending
    println!("{:?} done first", first.done);
    for done in fondo::as_completed(results, Some(Duration::from_secs(60))) {
        let (input, result) = done?; // completion order; Err(WaitTimeout) past 60 s
        println!("input {input}: {}", result.get()?);
    }
    let late = pool.apply_async(slow_square, (5,));
    if late.cancel() {
        assert!(matches!(late.get(), Err(Error::Cancelled))); // not started: never runs
        println!("cancelled before it started");
    }
    let mut squares = pool.imap(slow_square, [1, 2000, 3]);
    println!("{:?}", squares.next_timeout(Duration::from_secs(10))); // Some(Ok(1))
    println!("{:?}", squares.next_timeout(Duration::from_millis(10))); // Some(Err(WaitTimeout))
    drop(squares); // cancels what it has not started
    let e = pool.map(|x: i64| 100 / (x - 7), 0..10_000).unwrap_err();
    assert_eq!(e.index(), Some(7)); // map says which input failed
    println!("{e}");
    pool.shutdown(Pending::Cancel); // close, cancel what has not started, join
    Ok(())
}
