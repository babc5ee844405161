//! The notebook's "Paralelismo por procesos" and "Pools" cells.

use super::tasks::{self, END, FIRST, MIDDLE};
use super::{Ctx, Lang, Outcome, first_difference, ratio, secs, short, tr};
use crate::table::Table;
use fondo::{Error, Pool, Timer};
use num_bigint::BigUint;

/// In \[3\] \[22\] \[23\] \[24\]: two sleeping children, then the factorial halves in two
/// children — which, unlike Python's, return their lists.
pub fn spawned(ctx: &mut Ctx) -> Outcome {
    let main = std::process::id();
    let nap = ctx.nap(5.0, 0.2);
    ctx.say(&tr!(
        ctx,
        "fondo::spawn(f, args) runs f in a new process (this executable, started again) and join() returns its value.",
        "fondo::spawn(f, args) ejecuta f en un proceso nuevo (este mismo ejecutable) y join() devuelve su valor."
    ));

    // In [3]
    let (name1, name2) = (
        tr!(ctx, "Process 1", "Proceso 1"),
        tr!(ctx, "Process 2", "Proceso 2"),
    );
    let temp = Timer::start();
    let p1 = fondo::spawn(tasks::f, (name1.clone(), nap))?;
    let p2 = fondo::spawn(tasks::f, (name2.clone(), nap))?;
    let r1 = p1.join()?;
    let d1 = temp.elapsed_secs();
    let r2 = p2.join()?;
    let d2 = temp.elapsed_secs();
    let total = temp.elapsed_secs();
    let mut t = Table::new(match ctx.lang {
        Lang::En => ["process", "PID", "returned", "joined at"],
        Lang::Es => ["proceso", "PID", "devolvió", "join a los"],
    });
    t.row(["p1".into(), r1.pid.to_string(), r1.text.clone(), secs(d1)]);
    t.row(["p2".into(), r2.pid.to_string(), r2.text.clone(), secs(d2)]);
    let sleeps = total / nap;
    t.row([
        tr!(
            ctx,
            "total ({sleeps:.2} sleeps)",
            "Tiempo total ({sleeps:.2} esperas)"
        ),
        String::new(),
        String::new(),
        secs(total),
    ]);
    ctx.table(&t);
    ctx.check(
        r1.text == name1
            && r2.text == name2
            && r1.pid != main
            && r2.pid != main
            && r1.pid != r2.pid,
        &tr!(
            ctx,
            "each child returned its argument from its own PID",
            "cada hijo devolvió su argumento desde su propio PID"
        ),
    );

    // In [23]: the single-thread run, timed again as the notebook does.
    println!();
    let temp = Timer::start();
    let resultado = tasks::single_thread();
    let single = temp.elapsed_secs();
    // In [24]: the two halves in two processes.
    let temp = Timer::start();
    let c1 = fondo::spawn(tasks::tarea_lista, (FIRST, MIDDLE))?;
    let c2 = fondo::spawn(tasks::tarea_lista, (MIDDLE, END))?;
    let mut both = c1.join()?;
    both.extend(c2.join()?);
    let two = temp.elapsed_secs();
    let bad = first_difference(&both, &resultado);

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
        tr!(
            ctx,
            "two processes: spawn(tarea, halves)",
            "dos procesos: spawn(tarea, mitades)"
        ),
        secs(two),
        ratio(single, two),
        ctx.mark(bad),
    ]);
    ctx.table(&t);
    let n = both.len();
    ctx.say(&tr!(
        ctx,
        "Python's children cannot return their list; these sent back all {n} BigUints (serde, over a socketpair).",
        "En Python los hijos no pueden devolver la lista; aquí devolvieron los {n} BigUint (serde, por un socketpair)."
    ));
    ctx.check(
        bad.is_none(),
        &tr!(
            ctx,
            "the lists returned by the two processes equal the single-thread answer",
            "las listas devueltas por los dos procesos coinciden con las de un único thread"
        ),
    );
    ctx.set_reference(resultado, single);
    Ok(())
}

/// In \[15\] \[17\] \[18\]: `Pool(n).map(factorial, range(1000, 2000))`, timed with the
/// pool's creation and shutdown like the notebook's `with` block; then `starmap`.
pub fn pool(ctx: &mut Ctx) -> Outcome {
    let (reference, single) = {
        let (v, s) = ctx.reference();
        (v.to_vec(), s)
    };
    let cpus = fondo::cpu_count();
    ctx.say(&tr!(
        ctx,
        "Timed like `with Pool(n) as pool: pool.map(...)`: start n worker processes, map, close and join.",
        "Cronometrado como `with Pool(n) as pool: pool.map(...)`: arrancar n procesos, map, cerrar y esperar."
    ));
    let mut t = Table::new(match ctx.lang {
        Lang::En => ["run", "workers", "start-up", "total", "speed-up", "check"],
        Lang::Es => [
            "ejecución",
            "procesos",
            "arranque",
            "total",
            "aceleración",
            "comprobación",
        ],
    });
    t.row([
        tr!(
            ctx,
            "one thread (reference)",
            "un único thread (referencia)"
        ),
        "1".to_string(),
        "—".to_string(),
        secs(single),
        ratio(single, single),
        tr!(ctx, "reference", "referencia"),
    ]);
    let mut all_ok = true;
    for (label, n) in [
        ("Pool::processes(2)", 2),
        ("Pool::processes(cpu_count())", cpus),
        ("Pool::processes(2×cpu_count())", 2 * cpus),
    ] {
        let temp = Timer::start();
        let pool = Pool::processes(n)?;
        let started = temp.elapsed_secs();
        let resultado3 = pool.map(tasks::factorial, FIRST..END)?;
        drop(pool);
        let took = temp.elapsed_secs();
        let bad = first_difference(&resultado3, &reference);
        all_ok &= bad.is_none();
        t.row([
            format!("{label}.map(factorial)"),
            n.to_string(),
            secs(started),
            secs(took),
            ratio(single, took),
            ctx.mark(bad),
        ]);
    }
    // starmap: the notebook's tarea(inicio, fin), each tuple spread over the arguments.
    let temp = Timer::start();
    let pool = Pool::processes(2)?;
    let started = temp.elapsed_secs();
    let parts = pool.starmap(tasks::tarea_lista, [(FIRST, MIDDLE), (MIDDLE, END)])?;
    drop(pool);
    let took = temp.elapsed_secs();
    let joined: Vec<BigUint> = parts.into_iter().flatten().collect();
    let bad = first_difference(&joined, &reference);
    all_ok &= bad.is_none();
    t.row([
        tr!(
            ctx,
            "Pool::processes(2).starmap(tarea, halves)",
            "Pool::processes(2).starmap(tarea, mitades)"
        ),
        "2".to_string(),
        secs(started),
        secs(took),
        ratio(single, took),
        ctx.mark(bad),
    ]);
    ctx.table(&t);
    ctx.say(&tr!(
        ctx,
        "cpu_count() = {cpus} (honours affinity and cgroup quotas); more processes than cores only wait their turn.",
        "cpu_count() = {cpus} (respeta afinidad y cuotas de cgroup); más procesos que núcleos solo esperan su turno."
    ));
    ctx.say(&tr!(
        ctx,
        "starmap spreads each tuple over the arguments: [(1000, 1500), (1500, 2000)] runs tarea(1000, 1500) and tarea(1500, 2000).",
        "starmap reparte cada tupla entre los argumentos: [(1000, 1500), (1500, 2000)] ejecuta tarea(1000, 1500) y tarea(1500, 2000)."
    ));
    ctx.check(
        all_ok,
        &tr!(
            ctx,
            "every map and the starmap equal the single-thread answer, in order",
            "todos los map y el starmap coinciden, en orden, con los de un único thread"
        ),
    );
    Ok(())
}

/// One timed cell of the `apply` section.
struct Cell {
    cell: &'static str,
    what: String,
    took: f64,
    /// The sleep the cell's `f` takes, to express `took` in sleeps.
    nap: f64,
    /// Sleeps the notebook's timing shows.
    expected: f64,
    returned: String,
    pids: Vec<u32>,
}

/// In \[38\] \[39\] \[10\] \[6\] \[8\]: `apply` blocks, `apply_async` does not; `wait` and `get`.
pub fn apply(ctx: &mut Ctx) -> Outcome {
    let nap = ctx.nap(1.5, 0.15);
    let short_nap = ctx.nap(0.2, 0.1);
    let main = std::process::id();
    ctx.say(&tr!(
        ctx,
        "f(x) sleeps {nap} s (In [6]-[10]: {short_nap} s) and returns x; each time covers the whole `with Pool(2)` block.",
        "f(x) duerme {nap} s (In [6]-[10]: {short_nap} s) y devuelve x; cada tiempo cubre todo el bloque `with Pool(2)`."
    ));
    let mut ok = true;
    let mut cells = Vec::new();
    // The notebook's arguments, "Tarea 1" and "Tarea 2", in the demo's language.
    let (task1, task2) = (tr!(ctx, "Task 1", "Tarea 1"), tr!(ctx, "Task 2", "Tarea 2"));

    // In [38]: apply twice — each blocks until its task is done.
    let temp = Timer::start();
    let (a, b) = {
        let pool = Pool::processes(2)?;
        let a = pool.apply(tasks::f, (task1.clone(), nap))?;
        let b = pool.apply(tasks::f, (task2.clone(), nap))?;
        (a, b)
    };
    ok &= a.text == task1 && b.text == task2;
    cells.push(Cell {
        cell: "In [38]",
        what: format!("apply(f, \"{task1}\"); apply(f, \"{task2}\")"),
        took: temp.elapsed_secs(),
        nap,
        expected: 2.0,
        returned: format!("{}, {}", a.text, b.text),
        pids: vec![a.pid, b.pid],
    });

    // In [39]: apply_async runs in the background while apply blocks.
    let temp = Timer::start();
    let (a, b) = {
        let pool = Pool::processes(2)?;
        let a = pool.apply_async(tasks::f, (task1.clone(), nap));
        let b = pool.apply(tasks::f, (task2.clone(), nap))?;
        (a, b)
    };
    let took = temp.elapsed_secs();
    let a = a.get()?;
    ok &= a.text == task1 && b.text == task2;
    cells.push(Cell {
        cell: "In [39]",
        what: format!("apply_async(f, \"{task1}\"); apply(f, \"{task2}\")"),
        took,
        nap,
        expected: 1.0,
        returned: format!("{}, {}", a.text, b.text),
        pids: vec![a.pid, b.pid],
    });

    // In [10]: wait() turns the asynchronous tasks into synchronous ones.
    let temp = Timer::start();
    let (a1, a2) = {
        let pool = Pool::processes(2)?;
        let a1 = pool.apply_async(tasks::pid, (1, short_nap));
        let a2 = pool.apply_async(tasks::pid, (2, short_nap));
        a1.wait();
        a2.wait();
        ok &= a1.ready() && a2.ready();
        (a1, a2)
    };
    let took = temp.elapsed_secs();
    let (r1, r2) = (a1.get()?, a2.get()?);
    ok &= r1.x == 1 && r2.x == 2 && r1.pid != main && r2.pid != main;
    cells.push(Cell {
        cell: "In [10]",
        what: "a1, a2 = apply_async(f, 1|2); a1.wait(); a2.wait()".into(),
        took,
        nap: short_nap,
        expected: 1.0,
        returned: format!("{}, {}", r1.x, r2.x),
        pids: vec![r1.pid, r2.pid],
    });

    // In [6]: the value is read after the block; printing the handle shows its state.
    let temp = Timer::start();
    let v = {
        let pool = Pool::processes(2)?;
        let v = pool.apply_async(tasks::square, (5, short_nap));
        std::thread::sleep(std::time::Duration::from_secs_f64(2.0 * short_nap));
        v
    };
    let shown = format!("{v:?}");
    let got = v.get()?;
    ok &= got == 25;
    cells.push(Cell {
        cell: "In [6]",
        what: {
            let pause = 2.0 * short_nap;
            tr!(
                ctx,
                "v = apply_async(f, 5); sleep({pause}); v.get() after",
                "v = apply_async(f, 5); sleep({pause}); v.get() después"
            )
        },
        took: temp.elapsed_secs(),
        nap: short_nap,
        expected: 2.0,
        returned: got.to_string(),
        pids: Vec::new(),
    });

    // In [8]: get() inside the block waits for the value.
    let temp = Timer::start();
    let got = {
        let pool = Pool::processes(2)?;
        let v = pool.apply_async(tasks::square, (5, short_nap));
        v.get()?
    };
    ok &= got == 25;
    cells.push(Cell {
        cell: "In [8]",
        what: tr!(
            ctx,
            "v_res = apply_async(f, 5).get() in the block",
            "v_res = apply_async(f, 5).get() en el bloque"
        ),
        took: temp.elapsed_secs(),
        nap: short_nap,
        expected: 1.0,
        returned: got.to_string(),
        pids: Vec::new(),
    });

    let mut t = Table::new(match ctx.lang {
        Lang::En => [
            "cell",
            "what",
            "time",
            "sleeps",
            "notebook",
            "returned",
            "worker PIDs",
        ],
        Lang::Es => [
            "celda",
            "qué",
            "tiempo",
            "esperas",
            "cuaderno",
            "devolvió",
            "PID de los procesos",
        ],
    });
    for c in &cells {
        let pids: Vec<String> = c.pids.iter().map(u32::to_string).collect();
        t.row([
            c.cell.to_string(),
            c.what.clone(),
            secs(c.took),
            format!("{:.2}", c.took / c.nap),
            format!("≈ {}", c.expected),
            c.returned.clone(),
            pids.join(", "),
        ]);
    }
    ctx.table(&t);
    ctx.say(&tr!(
        ctx,
        "In [6]: print(v) shows {shown} where Python shows <ApplyResult object>.",
        "In [6]: print(v) muestra {shown} donde Python muestra <ApplyResult object>."
    ));
    // Timings are shown, never checked (a loaded machine stretches them), but a cell
    // far slower than the notebook's deserves a word.
    for c in &cells {
        let (cell, measured, expected) = (c.cell, c.took / c.nap, c.expected);
        if measured > expected + 0.5 {
            ctx.say(&tr!(
                ctx,
                "note: {cell} took {measured:.2} sleeps where the notebook shows ≈ {expected} (a busy machine, or tasks queued on one worker)",
                "nota: {cell} tardó {measured:.2} esperas y el cuaderno muestra ≈ {expected} (máquina ocupada, o tareas en cola en un solo proceso)"
            ));
        }
    }
    ctx.check(
        ok,
        &tr!(
            ctx,
            "every apply, apply_async + wait/get returned f's value (\"{task1}\", \"{task2}\", 1, 2, 25)",
            "cada apply y apply_async + wait/get devolvió el valor de f (\"{task1}\", \"{task2}\", 1, 2, 25)"
        ),
    );
    Ok(())
}

/// In \[9\] \[28\] \[7\]: results lost when the pool closes, and `get` hanging forever —
/// both fixed.
pub fn pitfalls(ctx: &mut Ctx) -> Outcome {
    let main = std::process::id();
    let nap = ctx.nap(0.2, 0.1);
    let mut t = Table::new(match ctx.lang {
        Lang::En => ["cell", "pitfall", "Python", "fondo", "time"],
        Lang::Es => ["celda", "inconveniente", "Python", "fondo", "tiempo"],
    });

    // (a) In [9]: the block ends with two apply_async tasks pending. Python's `with`
    // terminates the pool and the results are lost; dropping a fondo pool closes
    // and joins it, so both results are read afterwards (no sleep(0.3) of In [28]).
    let temp = Timer::start();
    let (a1, a2) = {
        let pool = Pool::processes(2)?;
        let a1 = pool.apply_async(tasks::pid, (1, nap));
        let a2 = pool.apply_async(tasks::pid, (2, nap));
        (a1, a2)
    };
    let dropped = temp.elapsed();
    let (r1, r2) = (a1.get(), a2.get());
    let kept = match (&r1, &r2) {
        (Ok(p1), Ok(p2)) => {
            p1.x == 1 && p2.x == 2 && p1.pid != main && p2.pid != main && p1.ppid == main
        }
        _ => false,
    };
    let shown = match (&r1, &r2) {
        (Ok(p1), Ok(p2)) => format!("get() → {}, {} (PID {}, {})", p1.x, p2.x, p1.pid, p2.pid),
        (Err(e), _) | (_, Err(e)) => format!("Err({e})"),
    };
    t.row([
        "In [9]".to_string(),
        tr!(
            ctx,
            "block ends, apply_async pending",
            "fin del bloque, apply_async pendientes"
        ),
        tr!(ctx, "results lost", "resultados perdidos"),
        shown,
        short(dropped),
    ]);

    // (b) In [7]: get() after the pool was terminated. Python waits forever; here the
    // task is failed at once. The task would sleep 10 s, so it is surely still running.
    let pool = Pool::processes(2)?;
    let v = pool.apply_async(tasks::square, (5, 10.0));
    let temp = Timer::start();
    pool.terminate();
    let terminated = temp.elapsed();
    let temp = Timer::start();
    let got = v.get();
    let waited = temp.elapsed();
    let temp = Timer::start();
    drop(pool);
    let dropped = temp.elapsed();
    let refused = matches!(got, Err(Error::Terminated));
    let shown = match &got {
        Ok(x) => format!("Ok({x})"),
        Err(e) => format!("Err({e:?})"),
    };
    t.row([
        "In [7]".to_string(),
        tr!(ctx, "get() after terminate()", "get() tras terminate()"),
        tr!(ctx, "hangs forever", "se bloquea para siempre"),
        format!("get() → {shown}"),
        short(waited),
    ]);
    ctx.table(&t);
    let (terminated, dropped) = (short(terminated), short(dropped));
    ctx.say(&tr!(
        ctx,
        "Dropping a pool closes and joins it (every submitted task finishes); terminate() took {terminated}, the drop after it {dropped}.",
        "Soltar un Pool lo cierra y espera (cada tarea enviada termina); terminate() tardó {terminated} y soltarlo después {dropped}."
    ));
    ctx.check(
        kept,
        &tr!(
            ctx,
            "(a) both apply_async results were read after the pool was dropped",
            "(a) ambos resultados de apply_async se leyeron tras cerrar el Pool"
        ),
    );
    ctx.check(
        refused,
        &tr!(
            ctx,
            "(b) get() after terminate() returned Err(Terminated) instead of hanging",
            "(b) get() tras terminate() devolvió Err(Terminated) en vez de bloquearse"
        ),
    );
    Ok(())
}
