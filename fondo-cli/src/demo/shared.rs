//! The notebook's "no es posible que compartan memoria" (processes cannot share
//! memory), answered: a big read-only array in shared memory, read where it lies by
//! every worker process, against a copy of it sent with each task.

use super::{Ctx, Lang, Outcome, ratio, secs, tr};
use crate::table::Table;
use fondo::{Array, Pool, Shared, Timer};
use serde::{Deserialize, Serialize};

/// Numbers in the demo's array: 128 MiB of `f64`s, 32 MiB with `--quick`.
fn len(quick: bool) -> usize {
    if quick { 4 << 20 } else { 16 << 20 }
}

/// Parts the array is summed in: one task each.
const PARTS: usize = 4;

/// `n` numbers, `i % 1000`: their sum is known exactly, in any order.
pub fn numbers(n: usize) -> Vec<f64> {
    (0..n).map(|i| (i % 1000) as f64).collect()
}

/// The sum of the first `n` of [`numbers`].
pub fn numbers_sum(n: usize) -> f64 {
    let (cycles, rest) = (n / 1000, n % 1000);
    (cycles * 499_500 + rest * rest.saturating_sub(1) / 2) as f64
}

/// What a worker saw of the array.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Part {
    /// The worker process.
    pub pid: u32,
    /// The sum of its part.
    pub sum: f64,
    /// Where the array lies in this process's address space.
    pub address: usize,
    /// The inode of the shared memory behind that address (`/proc/self/maps`), when
    /// it is a fondo share.
    pub inode: Option<u64>,
}

/// Sums `data[lo..hi]` where it lies: the array is mapped into this worker, not
/// copied into it.
pub fn sum_shared(data: Shared<[f64]>, lo: usize, hi: usize) -> Part {
    Part {
        pid: std::process::id(),
        sum: data[lo..hi].iter().sum(),
        address: data.as_ptr() as usize,
        inode: share_inode(data.as_ptr() as usize),
    }
}

/// The same with the array sent with the task: this worker's own copy.
pub fn sum_copy(data: Array<f64>, lo: usize, hi: usize) -> Part {
    Part {
        pid: std::process::id(),
        sum: data[lo..hi].iter().sum(),
        address: data.as_ptr() as usize,
        inode: share_inode(data.as_ptr() as usize),
    }
}

/// The inode of the fondo share mapped at `address` in this process, from
/// `/proc/self/maps` (`start-end perms offset dev inode /memfd:fondo-shared …`).
pub fn share_inode(address: usize) -> Option<u64> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let (start, end) = (
            usize::from_str_radix(start, 16).ok()?,
            usize::from_str_radix(end, 16).ok()?,
        );
        let inode = fields.nth(3)?.parse().ok()?;
        let path = fields.next().unwrap_or("");
        ((start..end).contains(&address) && path.contains("fondo-shared")).then_some(inode)
    })
}

/// `1 KiB`, `128 MiB`: a byte count for people.
fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

/// The notebook says processes cannot share memory; they can share what nobody
/// writes. One array, made once, summed in parts by every worker where it lies;
/// then the same with a copy of the array sent with each task.
pub fn shared(ctx: &mut Ctx) -> Outcome {
    let main = std::process::id();
    let n = len(ctx.quick);
    let bytes = n * 8;
    let mib = size(bytes);
    ctx.say(&tr!(
        ctx,
        "The notebook: processes, unlike threads, cannot share memory («no es posible que compartan memoria»).",
        "El cuaderno: los procesos, a diferencia de los threads, no pueden compartir memoria («no es posible que compartan memoria»)."
    ));
    ctx.say(&tr!(
        ctx,
        "They can share what nobody writes: Shared::from_slice puts an array in sealed shared memory once, and every worker maps those same pages and reads them in place.",
        "Sí pueden compartir lo que nadie modifica: Shared::from_slice deja un array una sola vez en memoria compartida sellada, y cada proceso de trabajo proyecta esas mismas páginas y las lee sin copiarlas."
    ));

    let temp = Timer::start();
    let values = numbers(n);
    let made = temp.elapsed_secs();
    let temp = Timer::start();
    let data = Shared::from_slice(&values)?;
    let shared_once = temp.elapsed_secs();
    let temp = Timer::start();
    let one: f64 = values.iter().sum();
    let single = temp.elapsed_secs();
    let want = numbers_sum(n);
    let here = share_inode(data.as_ptr() as usize);

    let workers = fondo::cpu_count().max(2);
    let pool = Pool::processes(workers)?;
    let ranges: Vec<(usize, usize)> = (0..PARTS)
        .map(|k| (n * k / PARTS, n * (k + 1) / PARTS))
        .collect();

    // Every task gets the share: its id, a few bytes. The first time, each worker
    // maps it (and its pages as it reads them); the second time they are mapped.
    let with_share = |_| {
        let temp = Timer::start();
        pool.starmap(
            sum_shared,
            ranges.iter().map(|&(lo, hi)| (data.clone(), lo, hi)),
        )
        .map(|parts| (parts, temp.elapsed_secs()))
    };
    let (parts, first_share) = with_share(())?;
    let (again, second_share) = with_share(())?;
    let shared_total: f64 = parts.iter().map(|p| p.sum).sum();
    let again_total: f64 = again.iter().map(|p| p.sum).sum();
    let per_task = postcard::to_allocvec(&(data.clone(), 0usize, n))
        .map(|b| b.len())
        .map_err(|e| e.to_string())?;

    // Every task gets its own copy of the whole array (as raw bytes, the fastest
    // way a Vec<f64> can travel).
    // Twice as well: the second time the pool's shared buffers and the workers'
    // memory are warm.
    let with_copies = |_| {
        let temp = Timer::start();
        pool.starmap(
            sum_copy,
            ranges
                .iter()
                .map(|&(lo, hi)| (Array(values.clone()), lo, hi)),
        )
        .map(|parts| (parts, temp.elapsed_secs()))
    };
    let (copies, first_copies) = with_copies(())?;
    let (copies_again, second_copies) = with_copies(())?;
    let copied_total: f64 = copies.iter().map(|p| p.sum).sum();
    let copied_again: f64 = copies_again.iter().map(|p| p.sum).sum();
    drop(pool);

    let mut t = Table::new(match ctx.lang {
        Lang::En => ["process", "PID", "part", "sum", "array at", "memfd inode"],
        Lang::Es => [
            "proceso",
            "PID",
            "parte",
            "suma",
            "array en",
            "inodo del memfd",
        ],
    });
    let inode = |i: Option<u64>| i.map_or_else(|| "—".to_string(), |i| i.to_string());
    t.row([
        tr!(ctx, "main", "general"),
        main.to_string(),
        tr!(ctx, "all", "todo"),
        format!("{one:.0}"),
        format!("{:#x}", data.as_ptr() as usize),
        inode(here),
    ]);
    for (p, &(lo, hi)) in parts.iter().zip(&ranges) {
        t.row([
            tr!(ctx, "worker", "trabajador"),
            p.pid.to_string(),
            format!("{lo}..{hi}"),
            format!("{:.0}", p.sum),
            format!("{:#x}", p.address),
            inode(p.inode),
        ]);
    }
    ctx.table(&t);
    let pids: std::collections::BTreeSet<u32> = parts.iter().map(|p| p.pid).collect();
    let count = pids.len();
    ctx.say(&tr!(
        ctx,
        "{count} worker processes read the {mib} array at their own addresses; the inode says it is one piece of memory, the main process's.",
        "{count} procesos de trabajo leyeron el array de {mib} cada uno en su propia dirección; el inodo muestra que es una sola memoria, la del proceso general."
    ));

    println!();
    let mut t = Table::new(match ctx.lang {
        Lang::En => ["way", "bytes per task", "time", "speed-up", "check"],
        Lang::Es => [
            "forma",
            "bytes por tarea",
            "tiempo",
            "aceleración",
            "comprobación",
        ],
    });
    let mark = |total: f64| ctx.mark((total != want).then_some(0));
    t.row([
        tr!(
            ctx,
            "one thread, main process",
            "un único thread, proceso general"
        ),
        "—".to_string(),
        secs(single),
        ratio(single, single),
        mark(one),
    ]);
    t.row([
        tr!(
            ctx,
            "starmap with the Shared array",
            "starmap con el array Shared"
        ),
        format!("{per_task} B"),
        secs(first_share),
        ratio(single, first_share),
        mark(shared_total),
    ]);
    t.row([
        tr!(ctx, "  again, already mapped", "  otra vez, ya proyectado"),
        format!("{per_task} B"),
        secs(second_share),
        ratio(single, second_share),
        mark(again_total),
    ]);
    t.row([
        tr!(
            ctx,
            "starmap with a copy per task",
            "starmap con una copia por tarea"
        ),
        format!("≈ {mib}"),
        secs(first_copies),
        ratio(single, first_copies),
        mark(copied_total),
    ]);
    t.row([
        tr!(ctx, "  again", "  otra vez"),
        format!("≈ {mib}"),
        secs(second_copies),
        ratio(single, second_copies),
        mark(copied_again),
    ]);
    ctx.table(&t);
    let (made, shared_once) = (secs(made), secs(shared_once));
    ctx.say(&tr!(
        ctx,
        "Making the array took {made}; Shared::from_slice copied it into shared memory once, in {shared_once}. The first starmap includes each worker mapping it, page by page as it reads; copies are made, sent and freed for every task, every time.",
        "Crear el array llevó {made}; Shared::from_slice lo copió una vez a la memoria compartida, en {shared_once}. El primer starmap incluye que cada proceso de trabajo la proyecta, página a página según la lee; las copias se hacen, se envían y se liberan para cada tarea, cada vez."
    ));

    ctx.check(
        [one, shared_total, again_total, copied_total, copied_again]
            .iter()
            .all(|&total| total == want),
        &tr!(
            ctx,
            "every way summed the array to {want:.0}, as one thread does",
            "todas las formas suman {want:.0}, como un único thread"
        ),
    );
    ctx.check(
        here.is_some()
            && parts
                .iter()
                .chain(&again)
                .all(|p| p.pid != main && p.inode == here)
            && copies.iter().chain(&copies_again).all(|p| p.inode.is_none()),
        &tr!(
            ctx,
            "every worker read the main process's memory (the same memfd inode); the copies were its own",
            "cada proceso de trabajo leyó la memoria del proceso general (el mismo inodo de memfd); las copias eran suyas"
        ),
    );
    ctx.check(
        per_task <= 16,
        &tr!(
            ctx,
            "a task with the Shared array carries {per_task} bytes, not {mib}",
            "una tarea con el array Shared lleva {per_task} bytes, no {mib}"
        ),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sum_is_known() {
        for n in [0, 1, 999, 1000, 2501] {
            assert_eq!(numbers(n).iter().sum::<f64>(), numbers_sum(n));
        }
    }

    #[test]
    fn a_share_is_found_in_the_maps_and_a_vector_is_not() {
        let v = vec![1.0f64; 1024];
        let s = Shared::from_slice(&v).expect("share");
        assert!(share_inode(s.as_ptr() as usize).is_some());
        assert!(share_inode(v.as_ptr() as usize).is_none());
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(32 << 20), "32 MiB");
        assert_eq!(size(2048), "2 KiB");
        assert_eq!(size(8), "8 B");
    }
}
