//! Helper program for `tests/whole_program.rs`: tasks that write megabytes to
//! stdout while their results travel back on the pool's own socket. Not a usage
//! example.
//!
//! Each task prints `LINES` lines of the form `task <i> line <j> <filler>` and
//! returns a checksum of its index; the parent checks every result, prints
//! `RESULT <i> <value>` lines of its own, and exits with 0 only if all were right.

use std::io::Write;

use fondo::Pool;

const TASKS: u64 = 16;
/// 8192 lines of 128 bytes: 1 MiB per task.
const LINES: u64 = 8192;

fn expected(i: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xabcd
}

fn flood(i: u64) -> u64 {
    let mut out = std::io::stdout().lock();
    for j in 0..LINES {
        // 128 bytes with the newline; written whole (below PIPE_BUF) as one line.
        let head = format!("task {i:04} line {j:06} ");
        let filler = "x".repeat(127 - head.len());
        out.write_all(format!("{head}{filler}\n").as_bytes())
            .expect("stdout");
    }
    out.flush().expect("stdout");
    expected(i)
}

fn main() -> fondo::Result<()> {
    let pool = Pool::processes(2)?;
    let mut bad = 0;
    let mapped = pool.map(flood, 0..TASKS)?;
    let streamed: Vec<_> = pool.imap(flood, 0..TASKS).collect();
    let single = pool.apply_async(flood, (TASKS,));
    for i in 0..TASKS {
        let (a, b) = (mapped[i as usize], streamed[i as usize].clone()?);
        if a != expected(i) || b != expected(i) {
            bad += 1;
        }
        println!("RESULT {i} {a}");
    }
    if single.get()? != expected(TASKS) {
        bad += 1;
    }
    eprintln!(
        "fault_stdout_flood: {} tasks, {bad} wrong results",
        2 * TASKS + 1
    );
    std::process::exit(if bad == 0 { 0 } else { 1 });
}
