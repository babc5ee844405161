//! The notebook's "Paralelismo por hilos" cells, and the PIDs of threads vs processes.

use super::tasks::{self, END, FIRST, MIDDLE, Pids};
use super::{Ctx, Lang, Outcome, first_difference, ratio, secs, tr};
use crate::table::Table;
use fondo::{Pool, Timer};
use num_bigint::BigUint;
use std::thread;

/// A thread's panic, as an error the section reports.
fn joined<T>(r: thread::Result<T>) -> Result<T, String> {
    r.map_err(|_| "a thread panicked".to_string())
}

/// In \[2\]: `t1`, `t2` run `f` (sleep, then print) at once: the total is one sleep.
pub fn sleeping(ctx: &mut Ctx) -> Outcome {
    let nap = ctx.nap(5.0, 0.2);
    ctx.say(&tr!(
        ctx,
        "Two std::threads run f(x): sleep {nap} s, then give x back (Rust threads return values).",
        "Dos std::thread ejecutan f(x): duerme {nap} s y devuelve x (en Rust un thread devuelve valores)."
    ));
    let temp = Timer::start();
    let t1 = thread::spawn(move || (tasks::f("Thread 1".into(), nap), temp.elapsed_secs()));
    let t2 = thread::spawn(move || (tasks::f("Thread 2".into(), nap), temp.elapsed_secs()));
    let (r1, done1) = joined(t1.join())?;
    let (r2, done2) = joined(t2.join())?;
    let total = temp.elapsed_secs();

    let mut t = Table::new(match ctx.lang {
        Lang::En => ["thread", "returned", "finished at"],
        Lang::Es => ["thread", "devolvió", "terminó a los"],
    });
    t.row(["t1".into(), r1.text.clone(), secs(done1)]);
    t.row(["t2".into(), r2.text.clone(), secs(done2)]);
    let sleeps = total / nap;
    t.row([
        tr!(
            ctx,
            "total ({sleeps:.2} sleeps)",
            "Tiempo total ({sleeps:.2} esperas)"
        ),
        String::new(),
        secs(total),
    ]);
    ctx.table(&t);
    ctx.check(
        r1.text == "Thread 1" && r2.text == "Thread 2",
        &tr!(
            ctx,
            "each thread returned its own argument",
            "cada thread devolvió su propio argumento"
        ),
    );
    Ok(())
}

/// In \[11\] \[14\] \[15\] \[34\]: factorial of 1000..2000 in one thread, in two threads
/// writing halves of one list, and with `Pool::threads(2).map`.
pub fn factorial(ctx: &mut Ctx) -> Outcome {
    let n = (END - FIRST) as usize;
    // In [14]: one thread.
    let mut resultado1 = vec![BigUint::default(); n];
    let temp = Timer::start();
    tasks::tarea(FIRST, END, &mut resultado1);
    let single = temp.elapsed_secs();

    // In [15]: two threads, each lent its own half of the list. Python passes the whole
    // list "by reference"; here the borrow checker proves the halves never overlap.
    let mut resultado2 = vec![BigUint::default(); n];
    let temp = Timer::start();
    let (low, high) = resultado2.split_at_mut((MIDDLE - FIRST) as usize);
    thread::scope(|s| {
        s.spawn(|| tasks::tarea(FIRST, MIDDLE, low));
        s.spawn(|| tasks::tarea(MIDDLE, END, high));
    });
    let halves = temp.elapsed_secs();

    // The same with fondo's thread pool: map hands out small chunks, so both stay busy.
    let temp = Timer::start();
    let resultado3 = Pool::threads(2)?.map(tasks::factorial, FIRST..END)?;
    let pooled = temp.elapsed_secs();

    // In [34]: compare element by element.
    let bad2 = first_difference(&resultado2, &resultado1);
    let bad3 = first_difference(&resultado3, &resultado1);

    let mut t = Table::new(match ctx.lang {
        Lang::En => ["run", "time", "speed-up", "check"],
        Lang::Es => ["ejecución", "tiempo", "aceleración", "comprobación"],
    });
    t.row([
        tr!(
            ctx,
            "one thread: tarea(1000, 2000)",
            "un único thread: tarea(1000, 2000)"
        ),
        secs(single),
        ratio(single, single),
        tr!(ctx, "reference", "referencia"),
    ]);
    t.row([
        tr!(ctx, "two std::threads, halves", "dos threads, mitades"),
        secs(halves),
        ratio(single, halves),
        ctx.mark(bad2),
    ]);
    t.row([
        "Pool::threads(2).map(factorial)".to_string(),
        secs(pooled),
        ratio(single, pooled),
        ctx.mark(bad3),
    ]);
    ctx.table(&t);
    ctx.say(&tr!(
        ctx,
        "GIL: CPython runs one thread at a time, so there 2 threads were slower (0.41 s vs 0.37 s); Rust threads use every core.",
        "GIL: CPython ejecuta un thread cada vez, así que allí 2 threads tardaron más (0.41 s frente a 0.37 s); en Rust usan todos los núcleos."
    ));
    ctx.say(&tr!(
        ctx,
        "The halves are unequal work (1500..2000 costs more); map's small chunks keep both cores busy.",
        "Las mitades no cuestan lo mismo (1500..2000 es más caro); los trozos pequeños de map reparten mejor."
    ));
    ctx.check(
        bad2.is_none() && bad3.is_none(),
        &tr!(
            ctx,
            "all {n} factorials of both runs equal the single-thread answer",
            "los {n} factoriales de ambas ejecuciones coinciden con los de un único thread"
        ),
    );
    ctx.set_reference(resultado1, single);
    Ok(())
}

/// In \[11\] (threads) and In \[9\] (processes): `pid(x)` sleeps, then reports its PID.
pub fn pids(ctx: &mut Ctx) -> Outcome {
    let nap = ctx.nap(3.0, 0.1);
    let main = std::process::id();
    let main_parent = std::os::unix::process::parent_id();
    ctx.say(&tr!(
        ctx,
        "pid(x) sleeps {nap} s so both copies run at once, then reports std::process::id().",
        "pid(x) duerme {nap} s para que ambas copias coincidan y devuelve std::process::id()."
    ));

    let temp = Timer::start();
    let t1 = thread::spawn(move || tasks::pid(1, nap));
    let t2 = thread::spawn(move || tasks::pid(2, nap));
    let threads = [joined(t1.join())?, joined(t2.join())?];
    let threads_took = temp.elapsed_secs();

    let temp = Timer::start();
    let p1 = fondo::spawn(tasks::pid, (1, nap))?;
    let p2 = fondo::spawn(tasks::pid, (2, nap))?;
    let spawned = [p1.pid(), p2.pid()];
    let procs = [p1.join()?, p2.join()?];
    let procs_took = temp.elapsed_secs();

    let mut t = Table::new(match ctx.lang {
        Lang::En => ["who", "PID", "parent PID", "time"],
        Lang::Es => ["quién", "PID", "PID del padre", "tiempo"],
    });
    let row = |t: &mut Table, who: String, p: &Pids, took: String| {
        t.row([who, p.pid.to_string(), p.ppid.to_string(), took]);
    };
    for (i, p) in threads.iter().enumerate() {
        let took = if i == 1 {
            secs(threads_took)
        } else {
            String::new()
        };
        row(&mut t, format!("Thread {}", p.x), p, took);
    }
    for (i, p) in procs.iter().enumerate() {
        let took = if i == 1 {
            secs(procs_took)
        } else {
            String::new()
        };
        let x = p.x;
        row(&mut t, tr!(ctx, "Process {x}", "Proceso {x}"), p, took);
    }
    let general = Pids {
        x: 0,
        pid: main,
        ppid: main_parent,
    };
    row(
        &mut t,
        tr!(ctx, "main process", "proceso general"),
        &general,
        String::new(),
    );
    ctx.table(&t);

    ctx.check(
        threads
            .iter()
            .all(|p| p.pid == main && p.ppid == main_parent),
        &tr!(
            ctx,
            "both threads report the main process's PID {main}",
            "ambos threads dan el PID del proceso general, {main}"
        ),
    );
    ctx.check(
        procs.iter().all(|p| p.pid != main && p.ppid == main)
            && procs[0].pid != procs[1].pid
            && procs.iter().zip(spawned).all(|(p, s)| p.pid == s),
        &tr!(
            ctx,
            "each child process has its own PID and main ({main}) as its parent",
            "cada proceso hijo tiene su propio PID y su padre es el proceso general ({main})"
        ),
    );
    Ok(())
}
