//! The `fondo` command: the notebook's demo, the benchmarks, and what this machine offers.

mod bench;
mod demo;
mod info;
mod table;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Python's multiprocessing.Pool, in Rust: demo, benchmarks and machine info.
#[derive(Parser, Debug)]
#[command(name = "fondo", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs every cell of the parallelism notebook in Rust, timed and checked.
    Demo(DemoArgs),
    /// Measures fondo against a single thread, std::thread, rayon and CPython.
    Bench(BenchArgs),
    /// Prints cores, cgroup limits and the backends compiled in.
    Info,
}

/// Options of `fondo demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Shorten the sleeps so the whole demo runs in a few seconds.
    #[arg(long)]
    pub quick: bool,
    /// Run only this section (see `--list`).
    #[arg(long)]
    pub section: Option<String>,
    /// List the sections and exit.
    #[arg(long)]
    pub list: bool,
    /// Language of the output: `en` or `es` (the notebook's own).
    #[arg(long, default_value = "en")]
    pub lang: String,
}

/// Options of `fondo bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Fewer repetitions and smaller inputs: seconds instead of minutes.
    #[arg(long)]
    pub quick: bool,
    /// Repetitions of each measurement (min and median are reported).
    #[arg(long)]
    pub repeat: Option<usize>,
    /// Write every figure as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw speed-up against workers as an SVG plot into this file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Skip the CPython reference even when python3 is present.
    #[arg(long)]
    pub no_python: bool,
    /// Measure only the MPI backend (Pool::mpi()): apply_async round trip, map and
    /// imap of no-op tasks; the other figures are skipped. Needs a build with the
    /// `mpi` feature and `mpirun -np N` (N ≥ 2; rank 0 runs the bench, the others
    /// serve tasks).
    #[arg(long)]
    pub mpi: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Info => info::run(),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fondo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the subcommands return: any error, printed by `main`.
pub type CliResult = Result<(), Box<dyn std::error::Error>>;
