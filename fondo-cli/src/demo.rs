//! `fondo demo`: the notebook `02d-paralelismo`, cell by cell, in Rust.
//!
//! Eight sections, in the notebook's order (the last answers its «no es posible que
//! compartan memoria»): each prints a heading, the cells it
//! stands for, a table of what ran and how long it took, and a check of every
//! result against the single-thread answer. Any failed check makes the command
//! exit non-zero.

mod processes;
pub(crate) mod shared;
pub(crate) mod tasks;
mod threads;

use crate::table::Table;
use crate::{CliResult, DemoArgs};
use fondo::Timer;
use num_bigint::BigUint;
use std::time::Duration;

/// What a section returns; an error counts as a failed check.
type Outcome = Result<(), Box<dyn std::error::Error>>;

/// Language of everything the demo prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English (default).
    En,
    /// The notebook's Spanish.
    Es,
}

impl Lang {
    fn parse(s: &str) -> Result<Lang, String> {
        match s.to_ascii_lowercase().as_str() {
            "en" | "english" => Ok(Lang::En),
            "es" | "spanish" | "español" | "espanol" => Ok(Lang::Es),
            other => Err(format!("unknown language '{other}': use 'en' or 'es'")),
        }
    }
}

/// `tr!(ctx, "english {x}", "español {x}")`: the text in the demo's language.
macro_rules! tr {
    ($ctx:expr, $en:literal, $es:literal $(,)?) => {
        match $ctx.lang {
            $crate::demo::Lang::En => format!($en),
            $crate::demo::Lang::Es => format!($es),
        }
    };
}
pub(crate) use tr;

/// One part of the demo.
#[derive(Debug)]
struct Section {
    /// What `--section` takes.
    name: &'static str,
    en: &'static str,
    es: &'static str,
    /// The notebook cells it reproduces, by their `In [n]` labels.
    cells: &'static str,
    run: fn(&mut Ctx) -> Outcome,
}

const SECTIONS: &[Section] = &[
    Section {
        name: "threads",
        en: "Two threads sleeping in parallel",
        es: "Paralelismo por hilos: dos threads que duermen",
        cells: "In [2]",
        run: threads::sleeping,
    },
    Section {
        name: "factorial",
        en: "Factorial of 1000..2000: one thread vs two",
        es: "Factorial de 1000 a 2000: un único thread frente a dos",
        cells: "In [11] [14] [15] [34]",
        run: threads::factorial,
    },
    Section {
        name: "pids",
        en: "PIDs: threads share the process, processes have their own",
        es: "PID: los threads comparten el proceso, cada proceso tiene el suyo",
        cells: "In [11], In [9]",
        run: threads::pids,
    },
    Section {
        name: "processes",
        en: "The same with processes (fondo::spawn)",
        es: "Paralelismo por procesos",
        cells: "In [3] [22] [23] [24]",
        run: processes::spawned,
    },
    Section {
        name: "pool",
        en: "Pool.map with 2, cpu_count() and 2×cpu_count() processes; starmap",
        es: "Pools: el «fondo común» de procesos (map y starmap)",
        cells: "In [15] [17] [18]",
        run: processes::pool,
    },
    Section {
        name: "apply",
        en: "apply vs apply_async; wait and get",
        es: "apply frente a apply_async; wait y get",
        cells: "In [38] [39] [10] [6] [8]",
        run: processes::apply,
    },
    Section {
        name: "pitfalls",
        en: "The notebook's two apply_async pitfalls, fixed",
        es: "Los dos inconvenientes de apply_async, resueltos",
        cells: "In [9] [28] [7]",
        run: processes::pitfalls,
    },
    Section {
        name: "shared",
        en: "Processes that share memory: one read-only array (fondo::Shared)",
        es: "Procesos que comparten memoria: un array de solo lectura (fondo::Shared)",
        // The notebook's words, not a cell: «no es posible que compartan memoria».
        cells: "—",
        run: shared::shared,
    },
];

impl Section {
    fn heading(&self, lang: Lang) -> &'static str {
        match lang {
            Lang::En => self.en,
            Lang::Es => self.es,
        }
    }
}

/// Finds a section by name, unique prefix or number (1-based); the error is in `lang`.
fn find(name: &str, lang: Lang) -> Result<(usize, &'static Section), String> {
    let wanted = name.trim().to_ascii_lowercase();
    let exact = SECTIONS.iter().position(|s| s.name == wanted);
    let numbered = wanted
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=SECTIONS.len()).contains(n))
        .map(|n| n - 1);
    let prefixed: Vec<usize> = (0..SECTIONS.len())
        .filter(|&i| !wanted.is_empty() && SECTIONS[i].name.starts_with(&wanted))
        .collect();
    let unique_prefix = (prefixed.len() == 1).then(|| prefixed[0]);
    match exact.or(numbered).or(unique_prefix) {
        Some(i) => Ok((i, &SECTIONS[i])),
        None => {
            let names = SECTIONS
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", ");
            let count = SECTIONS.len();
            Err(match lang {
                Lang::En => format!(
                    "unknown section '{name}': choose one of {names} (or 1-{count}); \
                     `fondo demo --list` describes them"
                ),
                Lang::Es => format!(
                    "sección desconocida '{name}': elija una de {names} (o 1-{count}); \
                     `fondo demo --list --lang es` las describe"
                ),
            })
        }
    }
}

/// What the sections share while the demo runs.
pub struct Ctx {
    /// Language of the output.
    pub lang: Lang,
    /// Shortened sleeps.
    pub quick: bool,
    /// Checks that failed in the current section.
    failed: usize,
    /// Checks run in the current section.
    checked: usize,
    /// The single-thread answer and how long it took, once computed.
    reference: Option<(Vec<BigUint>, f64)>,
}

impl Ctx {
    /// The notebook's sleep `full`, or the shortened `quick` one.
    pub fn nap(&self, full: f64, quick: f64) -> f64 {
        if self.quick { quick } else { full }
    }

    /// Prints a line of explanation, indented under the heading.
    pub fn say(&self, text: &str) {
        println!("  {text}");
    }

    /// Prints a table.
    pub fn table(&self, table: &Table) {
        print!("{table}");
    }

    /// Records and prints a check: `check: ok` or `check: FAILED` (in Spanish
    /// `comprobación: ok` or `comprobación: FALLÓ`).
    pub fn check(&mut self, ok: bool, what: &str) -> bool {
        self.checked += 1;
        let check = tr!(self, "check", "comprobación");
        if ok {
            println!("  {check}: ok  {what}");
        } else {
            self.failed += 1;
            let failed = tr!(self, "FAILED", "FALLÓ");
            println!("  {check}: {failed}  {what}");
        }
        ok
    }

    /// A table's check cell: `ok`, or where the first wrong element is.
    pub fn mark(&self, bad: Option<usize>) -> String {
        mark(self.lang, bad)
    }

    /// The single-thread answer, computed (and timed) the first time it is asked for.
    pub fn reference(&mut self) -> (&[BigUint], f64) {
        let (v, secs) = self.reference.get_or_insert_with(|| {
            let t = Timer::start();
            let v = tasks::single_thread();
            (v, t.elapsed_secs())
        });
        (v, *secs)
    }

    /// Keeps a freshly timed single-thread answer (the notebook re-times it in two cells).
    pub fn set_reference(&mut self, v: Vec<BigUint>, secs: f64) {
        self.reference = Some((v, secs));
    }
}

/// Seconds the way the notebook prints them: `0.3721 s`.
pub fn secs(s: f64) -> String {
    format!("{s:.4} s")
}

/// A short duration in the unit that makes it readable.
pub fn short(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 0.1 {
        secs(s)
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

/// Index of the first element where `got` differs from `want` (or is missing):
/// the notebook's `In [34]` loop, `if resultado1[i] != resultado2[i]`.
pub fn first_difference(got: &[BigUint], want: &[BigUint]) -> Option<usize> {
    (0..want.len().max(got.len())).find(|&i| got.get(i) != want.get(i))
}

/// A table's check cell in `lang`: `ok`, or where the first wrong element is.
fn mark(lang: Lang, bad: Option<usize>) -> String {
    match (bad, lang) {
        (None, _) => "ok".to_string(),
        (Some(i), Lang::En) => format!("FAILED at {i}"),
        (Some(i), Lang::Es) => format!("FALLÓ en {i}"),
    }
}

/// `a / b` as a speed-up factor: `1.93×`.
pub fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "—".to_string()
    }
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> CliResult {
    let lang = Lang::parse(&args.lang)?;
    let chosen: Vec<(usize, &Section)> = match &args.section {
        Some(name) => vec![find(name, lang)?],
        None => SECTIONS.iter().enumerate().collect(),
    };
    if args.list {
        let mut t = Table::new(match lang {
            Lang::En => ["#", "section", "heading", "notebook cells"],
            Lang::Es => ["#", "sección", "título", "celdas del cuaderno"],
        });
        for (i, s) in &chosen {
            t.row([
                (i + 1).to_string(),
                s.name.to_string(),
                s.heading(lang).to_string(),
                s.cells.to_string(),
            ]);
        }
        print!("{t}");
        return Ok(());
    }

    let mut ctx = Ctx {
        lang,
        quick: args.quick,
        failed: 0,
        checked: 0,
        reference: None,
    };
    let cpus = fondo::cpu_count();
    let pid = std::process::id();
    println!(
        "{}",
        tr!(
            ctx,
            "fondo demo: the notebook 02d-paralelismo, cell by cell, in Rust",
            "fondo demo: el cuaderno 02d-paralelismo, celda a celda, en Rust"
        )
    );
    let mode = match (lang, args.quick) {
        (Lang::En, true) => "--quick: sleeps shortened",
        (Lang::En, false) => "the notebook's own sleeps (--quick shortens them)",
        (Lang::Es, true) => "--quick: esperas acortadas",
        (Lang::Es, false) => "las esperas del cuaderno (--quick las acorta)",
    };
    println!(
        "{}",
        tr!(
            ctx,
            "cpu_count() = {cpus} · main process PID {pid} · {mode}",
            "cpu_count() = {cpus} · PID del proceso general {pid} · {mode}"
        )
    );

    let total = Timer::start();
    let mut summary = Vec::new();
    let mut failed_sections = 0;
    for (i, section) in chosen {
        println!();
        print_heading(i + 1, section, lang);
        ctx.failed = 0;
        ctx.checked = 0;
        let t = Timer::start();
        if let Err(e) = (section.run)(&mut ctx) {
            ctx.say(&format!("error: {e}"));
            ctx.check(
                false,
                &tr!(
                    ctx,
                    "the section could not finish",
                    "la sección no pudo terminar"
                ),
            );
        }
        let took = t.elapsed_secs();
        if ctx.checked == 0 {
            ctx.check(
                false,
                &tr!(ctx, "nothing was checked", "no se comprobó nada"),
            );
        }
        let (failed, checked) = (ctx.failed, ctx.checked);
        let status = if failed == 0 {
            format!("ok ({checked})")
        } else {
            failed_sections += 1;
            tr!(
                ctx,
                "FAILED ({failed}/{checked})",
                "FALLÓ ({failed}/{checked})"
            )
        };
        summary.push([format!("{}. {}", i + 1, section.name), secs(took), status]);
    }

    if summary.len() > 1 {
        println!();
        println!("{}", tr!(ctx, "Summary", "Resumen"));
        let mut t = Table::new(match lang {
            Lang::En => ["section", "time", "checks"],
            Lang::Es => ["sección", "tiempo", "comprobaciones"],
        });
        for row in summary {
            t.row(row);
        }
        let all = if failed_sections == 0 {
            tr!(ctx, "all ok", "todo ok")
        } else {
            tr!(
                ctx,
                "{failed_sections} FAILED",
                "{failed_sections} con fallos"
            )
        };
        t.row(["total".to_string(), secs(total.elapsed_secs()), all]);
        print!("{t}");
    }
    if failed_sections > 0 {
        return Err(tr!(
            ctx,
            "demo: {failed_sections} section(s) FAILED their checks",
            "demo: {failed_sections} sección(es) no pasaron sus comprobaciones"
        )
        .into());
    }
    Ok(())
}

/// `━━ 3. PIDs: … ━━━━━━━━━━━━━━━━ pids · In [11], In [9]`
fn print_heading(n: usize, section: &Section, lang: Lang) {
    const WIDTH: usize = 88;
    let left = format!("━━ {n}. {} ", section.heading(lang));
    let right = format!(" {} · {}", section.name, section.cells);
    let fill = WIDTH.saturating_sub(left.chars().count() + right.chars().count());
    println!("{left}{}{right}", "━".repeat(fill.max(2)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_by_name_prefix_and_number() {
        let find = |name| find(name, Lang::En);
        assert_eq!(find("pids").unwrap().0, 2);
        assert_eq!(find("PITFALLS").unwrap().0, 6);
        assert_eq!(find("3").unwrap().1.name, "pids");
        assert_eq!(find("fact").unwrap().1.name, "factorial");
        // "p" is ambiguous (pids, processes, pool, pitfalls).
        assert!(find("p").is_err());
        assert!(find("0").is_err());
        assert!(find("9").is_err());
        assert_eq!(find("8").unwrap().1.name, "shared");
        assert!(find("nope").unwrap_err().contains("threads, factorial"));
        let es = super::find("nope", Lang::Es).unwrap_err();
        assert!(es.starts_with("sección desconocida 'nope'"), "{es}");
    }

    #[test]
    fn names_are_unique() {
        for (i, a) in SECTIONS.iter().enumerate() {
            for b in &SECTIONS[i + 1..] {
                assert_ne!(a.name, b.name);
                assert!(!a.name.starts_with(b.name) && !b.name.starts_with(a.name));
            }
        }
    }

    #[test]
    fn languages() {
        assert_eq!(Lang::parse("ES").unwrap(), Lang::Es);
        assert_eq!(Lang::parse("en").unwrap(), Lang::En);
        assert!(Lang::parse("fr").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(secs(0.37214), "0.3721 s");
        assert_eq!(ratio(2.0, 1.0), "2.00×");
        assert_eq!(ratio(1.0, 0.0), "—");
        assert_eq!(short(Duration::from_micros(23)), "23.0 µs");
        assert_eq!(short(Duration::from_millis(12)), "12.00 ms");
        assert_eq!(mark(Lang::En, None), "ok");
        assert_eq!(mark(Lang::En, Some(3)), "FAILED at 3");
        assert_eq!(mark(Lang::Es, None), "ok");
        assert_eq!(mark(Lang::Es, Some(3)), "FALLÓ en 3");
    }

    #[test]
    fn differences() {
        let v = |xs: &[u32]| xs.iter().map(|&x| BigUint::from(x)).collect::<Vec<_>>();
        assert_eq!(first_difference(&v(&[1, 2, 3]), &v(&[1, 2, 3])), None);
        assert_eq!(first_difference(&v(&[1, 5, 3]), &v(&[1, 2, 3])), Some(1));
        assert_eq!(first_difference(&v(&[1, 2]), &v(&[1, 2, 3])), Some(2));
        assert_eq!(first_difference(&v(&[1, 2, 3, 4]), &v(&[1, 2, 3])), Some(3));
    }
}
