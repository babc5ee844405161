//! `--plot FILE.svg`: speed-up against workers per system, and the times behind it.
//!
//! The SVG backend writes `<text>` elements and lets the viewer pick the font, so no
//! font files are needed at build or run time.

use super::report::Figures;
use super::stats::BoxError;
use plotters::prelude::*;
use std::path::Path;

const FONT: &str = "sans-serif";

#[derive(Clone, Copy)]
enum Marker {
    Circle,
    Triangle,
    Square,
    Cross,
}

struct Series {
    system: &'static str,
    label: &'static str,
    color: RGBColor,
    /// Line width: wider series are drawn first, so coinciding lines stay visible.
    width: u32,
    marker: Marker,
}

/// In drawing order, bottom first; the legend lists them the other way round.
const SERIES: [Series; 5] = [
    Series {
        system: "rayon",
        label: "rayon ThreadPool",
        color: RGBColor(120, 200, 120),
        width: 11,
        marker: Marker::Square,
    },
    Series {
        system: "std_thread_split",
        label: "std::thread split",
        color: RGBColor(140, 86, 75),
        width: 3,
        marker: Marker::Cross,
    },
    Series {
        system: "cpython_pool",
        label: "CPython Pool.map",
        color: RGBColor(148, 103, 189),
        width: 3,
        marker: Marker::Circle,
    },
    Series {
        system: "fondo_threads",
        label: "fondo Pool::threads",
        color: RGBColor(31, 119, 180),
        width: 6,
        marker: Marker::Triangle,
    },
    Series {
        system: "fondo_processes",
        label: "fondo Pool::processes",
        color: RGBColor(230, 110, 0),
        width: 3,
        marker: Marker::Circle,
    },
];

/// Draws the two panels into `path`.
pub fn draw(
    path: &Path,
    f: &Figures,
    workers: &[usize],
    cpus: usize,
    range: &str,
    note: &str,
) -> Result<(), BoxError> {
    let xmax = workers.iter().copied().max().unwrap_or(1) as i32;
    let rust_single = f.factorial("rust_single", 1);
    let cpython_single = f.factorial("cpython_single", 1);
    // Each system's speed-up over its own language's single thread: Rust systems over
    // the Rust loop, CPython's pool over CPython's loop.
    let points = |s: &Series, base: Option<f64>| -> Vec<(i32, f64)> {
        let Some(base) = base else { return Vec::new() };
        workers
            .iter()
            .filter_map(|&w| Some((w as i32, base / f.factorial(s.system, w)?)))
            .collect()
    };
    let speedups: Vec<(&Series, Vec<(i32, f64)>)> = SERIES
        .iter()
        .map(|s| {
            let base = if s.system == "cpython_pool" {
                cpython_single
            } else {
                rust_single
            };
            (s, points(s, base))
        })
        .filter(|(_, p)| !p.is_empty())
        .collect();
    let times: Vec<(&Series, Vec<(i32, f64)>)> = SERIES
        .iter()
        .map(|s| {
            let p = workers
                .iter()
                .filter_map(|&w| Some((w as i32, f.factorial(s.system, w)?)))
                .collect::<Vec<_>>();
            (s, p)
        })
        .filter(|(_, p)| !p.is_empty())
        .collect();

    let root = SVGBackend::new(path, (1280, 680)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!("factorial {range} (num-bigint) on {cpus} CPUs — {note}"),
        (FONT, 24),
    )?;
    let (charts, legend) = root.split_vertically(560);
    let (left, right) = charts.split_horizontally(640);
    let grey = RGBColor(150, 150, 150);
    let cpython_color = SERIES[2].color;

    // Left: speed-up.
    let ideal = |w: i32| (w.min(cpus as i32)) as f64;
    let ymax = speedups
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, y)| y))
        .chain((1..=xmax).map(ideal))
        .fold(1.0f64, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(&left)
        .caption("speed-up over one thread of the same language", (FONT, 19))
        .margin(18)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0i32..xmax + 1, 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("workers")
        .y_desc("speed-up (×)")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    chart.draw_series(DashedLineSeries::new(
        (1..=xmax).map(|w| (w, ideal(w))),
        8,
        5,
        grey.stroke_width(2),
    ))?;
    for (s, p) in &speedups {
        line_with_points(&mut chart, s, p)?;
    }

    // Right: the times, log scale, with both single-thread runs as references.
    let all_times = times
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, y)| y))
        .chain(rust_single)
        .chain(cpython_single);
    let (lo, hi) = all_times.fold((f64::MAX, f64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    // Plotted as log10(seconds) on a linear axis, labelled in seconds: plotters' own
    // log axis labels only powers of ten, and these times span less than one.
    let (lo, hi) = if lo <= hi {
        ((lo / 1.3).log10(), (hi * 1.3).log10())
    } else {
        (-2.0, 0.0)
    };
    let mut chart = ChartBuilder::on(&right)
        .caption("time per run, median (log scale)", (FONT, 19))
        .margin(18)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(0i32..xmax + 1, lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("workers")
        .y_desc("seconds")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .y_labels(10)
        .y_label_formatter(&|y| seconds(10f64.powf(*y)))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (t, color) in [(rust_single, BLACK), (cpython_single, cpython_color)] {
        if let Some(t) = t {
            chart.draw_series(DashedLineSeries::new(
                [(0, t.log10()), (xmax + 1, t.log10())],
                5,
                4,
                color.stroke_width(2),
            ))?;
        }
    }
    let times: Vec<(&Series, Vec<(i32, f64)>)> = times
        .into_iter()
        .map(|(s, p)| (s, p.into_iter().map(|(w, t)| (w, t.log10())).collect()))
        .collect();
    for (s, p) in &times {
        line_with_points(&mut chart, s, p)?;
    }

    // One legend for both panels, below them, where it cannot hide a point.
    let mut entries: Vec<(String, RGBColor, Option<&Series>)> = SERIES
        .iter()
        .rev()
        .filter(|s| times.iter().any(|(t, _)| t.system == s.system))
        .map(|s| (s.label.to_string(), s.color, Some(s)))
        .collect();
    entries.push((format!("ideal on {cpus} CPUs (left)"), grey, None));
    if rust_single.is_some() {
        entries.push(("Rust, one thread (right)".into(), BLACK, None));
    }
    if cpython_single.is_some() {
        entries.push(("CPython, one thread (right)".into(), cpython_color, None));
    }
    let per_row = entries.len().div_ceil(2).max(1);
    let col = 1200 / per_row as i32;
    for (i, (label, color, series)) in entries.iter().enumerate() {
        let (x, y) = (
            50 + col * (i % per_row) as i32,
            28 + 34 * (i / per_row) as i32,
        );
        match series {
            None => {
                for k in 0..4 {
                    legend.draw(&PathElement::new(
                        vec![(x + 9 * k, y), (x + 9 * k + 5, y)],
                        color.stroke_width(2),
                    ))?;
                }
            }
            Some(s) => {
                legend.draw(&PathElement::new(
                    vec![(x, y), (x + 32, y)],
                    color.stroke_width(s.width.min(5)),
                ))?;
                markers!(s, [(x + 16, y)].into_iter(), |e| {
                    for m in e {
                        legend.draw(&m)?;
                    }
                    Ok::<(), BoxError>(())
                })?;
            }
        }
        legend.draw(&Text::new(
            label.as_str(),
            (x + 42, y - 8),
            (FONT, 16).into_font(),
        ))?;
    }
    root.present()?;
    Ok(())
}

/// Seconds with two significant digits: 0.063, 0.10, 0.25, 1.6.
fn seconds(t: f64) -> String {
    let digits = (1 - t.log10().floor() as i32).max(0) as usize;
    format!("{t:.digits$}")
}

fn line_with_points<'a, Y>(
    chart: &mut ChartContext<
        'a,
        SVGBackend<'a>,
        Cartesian2d<plotters::coord::types::RangedCoordi32, Y>,
    >,
    s: &Series,
    p: &[(i32, f64)],
) -> Result<(), BoxError>
where
    Y: Ranged<ValueType = f64>,
{
    chart.draw_series(LineSeries::new(
        p.iter().copied(),
        s.color.stroke_width(s.width),
    ))?;
    markers!(s, p.iter().copied(), |e| chart.draw_series(e).map(|_| ()))?;
    Ok(())
}

/// Runs `body` with `$e` bound to an iterator of `s`'s point markers at `at` (the
/// element type differs by marker, hence a macro).
macro_rules! markers {
    ($s:expr, $at:expr, |$e:ident| $body:expr) => {{
        let s: &Series = $s;
        let fill = s.color.filled();
        let line = s.color.stroke_width(3);
        match s.marker {
            Marker::Circle => {
                let $e = $at.map(|c| EmptyElement::at(c) + Circle::new((0, 0), 5, fill));
                $body
            }
            Marker::Triangle => {
                let $e = $at.map(|c| EmptyElement::at(c) + TriangleMarker::new((0, 0), 8, fill));
                $body
            }
            Marker::Square => {
                let $e =
                    $at.map(|c| EmptyElement::at(c) + Rectangle::new([(-7, -7), (7, 7)], fill));
                $body
            }
            Marker::Cross => {
                let $e = $at.map(|c| EmptyElement::at(c) + Cross::new((0, 0), 6, line));
                $body
            }
        }
    }};
}
use markers;

#[cfg(test)]
mod tests {
    use super::super::stats::{Figure, Unit};
    use super::*;

    #[test]
    fn seconds_have_two_significant_digits() {
        assert_eq!(seconds(0.063), "0.063");
        assert_eq!(seconds(0.1), "0.10");
        assert_eq!(seconds(0.25), "0.25");
        assert_eq!(seconds(1.6), "1.6");
    }

    #[test]
    fn draws_without_font_files() {
        let figs = vec![
            Figure::new(
                "factorial",
                "rust_single",
                Some(1),
                Unit::Seconds,
                vec![0.1],
            ),
            Figure::new(
                "factorial",
                "fondo_processes",
                Some(2),
                Unit::Seconds,
                vec![0.05],
            ),
        ];
        let path = std::env::temp_dir().join(format!("fondo-plot-{}.svg", std::process::id()));
        draw(&path, &Figures(&figs), &[1, 2], 2, "1000..2000", "test").expect("draw");
        let svg = std::fs::read_to_string(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        assert!(svg.contains("<text") && svg.contains("fondo Pool::processes"));
    }
}
