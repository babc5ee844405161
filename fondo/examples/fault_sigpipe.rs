//! Helper program for `tests/whole_program.rs`: SIGPIPE, on both sides of a pool.
//! Not a usage example.
//!
//! - `parent-default ROUNDS`: puts SIGPIPE back to its default action first, as a CLI
//!   or a C or Python host may, then streams arguments of 900 KiB (under the 1 MiB
//!   at which they would move to shared memory, so they go through the socket) to
//!   workers whose tasks abort now and then, while more arguments are being
//!   written to them. Each aborting task must be `WorkerDied` and every other task
//!   its value; the program prints `OK <rounds>` and exits 0, never dies of SIGPIPE.
//! - `closed-stdout`: run with a stdout nobody reads; a task that prints there
//!   must fail the same way on processes as on threads. Prints
//!   `processes: <outcome>` and `threads: <outcome>` on stderr, exits 0 if they agree.

use fondo::{Error, ExitCause, Pool};
use serde_bytes::ByteBuf;

/// Under `LANE_MIN` (1 MiB): travels through the worker's socket.
const BIG: usize = 900 * 1024;
/// Tasks per round; every `ABORT_EVERY`th aborts its worker.
const TASKS: usize = 24;
const ABORT_EVERY: usize = 6;

fn aborts(i: usize) -> bool {
    i % ABORT_EVERY == ABORT_EVERY - 1
}

fn length_or_abort((i, payload): (usize, ByteBuf)) -> usize {
    if aborts(i) {
        std::process::abort();
    }
    payload.len()
}

fn parent_default(rounds: usize) -> Result<(), String> {
    // SAFETY: SIG_DFL installs no handler; no other thread exists yet.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let pool = Pool::processes(2).map_err(|e| e.to_string())?;
    for round in 0..rounds {
        let items = (0..TASKS).map(|i| (i, ByteBuf::from(vec![i as u8; BIG])));
        let outcomes: Vec<_> = pool.imap(length_or_abort, items).collect();
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(BIG) if !aborts(i) => {}
                Err(Error::WorkerDied {
                    cause: ExitCause::Signal(6),
                    ..
                }) if aborts(i) => {}
                other => return Err(format!("round {round}, task {i}: {other:?}")),
            }
        }
    }
    println!("OK {rounds}");
    Ok(())
}

fn print_a_line() -> usize {
    println!("a line nobody reads");
    0
}

/// The outcome's kind, without PIDs or messages that differ between backends.
fn kind(outcome: fondo::Result<usize>) -> String {
    match outcome {
        Ok(v) => format!("Ok({v})"),
        Err(Error::Panicked { .. }) => "Panicked".into(),
        Err(Error::WorkerDied { cause, .. }) => format!("WorkerDied({cause})"),
        Err(e) => format!("Err({e})"),
    }
}

fn closed_stdout() -> Result<(), String> {
    let processes = Pool::processes(1).map_err(|e| e.to_string())?;
    let threads = Pool::threads(1).map_err(|e| e.to_string())?;
    let on_processes = kind(processes.apply(print_a_line, ()));
    let on_threads = kind(threads.apply(print_a_line, ()));
    eprintln!("processes: {on_processes}");
    eprintln!("threads: {on_threads}");
    if on_processes == on_threads {
        Ok(())
    } else {
        Err("the backends disagree".into())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let done = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["parent-default", rounds] => match rounds.parse() {
            Ok(rounds) => parent_default(rounds),
            Err(e) => Err(format!("rounds: {e}")),
        },
        ["closed-stdout"] => closed_stdout(),
        _ => Err("usage: fault_sigpipe parent-default ROUNDS | closed-stdout".into()),
    };
    if let Err(e) = done {
        eprintln!("fault_sigpipe: {e}");
        std::process::exit(1);
    }
}
