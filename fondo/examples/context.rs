//! Tasks that need more than their argument: a context, sent once to each worker.
//!
//! In Python, a pool's task gets extra values through `functools.partial(f, model)`,
//! which pickles the model again with every chunk of tasks. Here
//! `pool.map_with(&context, f, items)` runs `f(&context, item)` for each item; the
//! context is a [`fondo::Shared`] value: made once, it reaches each worker process
//! once (shared memory, not the socket) and is decoded there once. A task carries
//! only the context's id — a few bytes whatever the context's size.
//!
//! `fondo::partial!((a, b) |x| …)` writes such a task from a closure: list the values
//! it captures; you get the context and the task, for `map_with`. (A closure that
//! captures values cannot run in another process as it is: it is data, not code.)
//!
//! This example sends a 32 MiB model to two workers both ways — in a `Shared`
//! context, and as an argument of every task — and prints what each costs.
//! Run it with `cargo run --release -p fondo --example context`.

use fondo::{Pool, Shared, Timer};
use serde::{Deserialize, Serialize};

/// A model: many weights (as raw bytes: `fondo::array`) and a bias.
#[derive(Clone, Serialize, Deserialize)]
struct Model {
    #[serde(with = "fondo::array")]
    weights: Vec<f64>,
    bias: f64,
}

/// The task: reads the whole model for each input.
fn predict(model: &Model, x: f64) -> f64 {
    let mean = model.weights.iter().sum::<f64>() / model.weights.len() as f64;
    mean * x + model.bias
}

/// The same task with the model as an ordinary argument: a copy per task.
fn predict_owned(model: Model, x: f64) -> f64 {
    predict(&model, x)
}

const MIB: usize = 1 << 20;

fn main() -> fondo::Result<()> {
    let pool = Pool::processes(2)?;
    let model = Model {
        weights: vec![0.5; 32 * MIB / 8],
        bias: 1.0,
    };
    let inputs: Vec<f64> = (0..8).map(f64::from).collect();
    let want: Vec<f64> = inputs.iter().map(|x| 0.5 * x + 1.0).collect();

    // The context: made once (the model is encoded into sealed shared memory).
    let t = Timer::start();
    let context = Shared::new(model.clone())?;
    println!(
        "Shared::new: the 32 MiB model encoded into shared memory once, in {:.1} ms",
        t.elapsed_secs() * 1e3
    );
    let per_task = postcard::to_allocvec(&(context.clone(), 1.0f64)).map_or(0, |b| b.len());
    for round in ["first", "second"] {
        let t = Timer::start();
        let y = pool.map_with(&context, predict, inputs.iter().copied())?;
        assert_eq!(y, want);
        println!(
            "map_with, {round} time: {:>7.1} ms for {} tasks of {per_task} bytes each{}",
            t.elapsed_secs() * 1e3,
            y.len(),
            if round == "first" {
                " (each worker receives and decodes the model)"
            } else {
                " (the workers have it)"
            }
        );
    }

    // The same with the model as an argument: every task carries a copy.
    let per_task = postcard::to_allocvec(&(model.clone(), 1.0f64)).map_or(0, |b| b.len());
    let t = Timer::start();
    let y = pool.starmap(predict_owned, inputs.iter().map(|&x| (model.clone(), x)))?;
    assert_eq!(y, want);
    println!(
        "starmap with the model in every task: {:>7.1} ms for {} tasks of {} MiB each",
        t.elapsed_secs() * 1e3,
        y.len(),
        per_task / MIB
    );

    // partial!: the captured values become the context.
    let (offset, scale) = (10.0f64, 3.0f64);
    let (context, task) = fondo::partial!((offset, scale) |x: f64| (x + offset) * scale)?;
    let y = pool.map_with(&context, task, [1.0, 2.0, 3.0])?;
    assert_eq!(y, [33.0, 36.0, 39.0]);
    println!("partial!((offset, scale) |x| (x + offset) * scale) over [1, 2, 3]: {y:?}");
    Ok(())
}
