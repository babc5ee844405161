//! A tiny text table: headers and rows of strings, columns padded to their widest
//! cell, numeric columns right-aligned, every line indented by two spaces. Shared by `demo` and `bench`.
//!
//! ```text
//!   run          time      speed-up
//!   ───────────  ────────  ────────
//!   1 thread     0.1140 s     1.00×
//!   2 threads    0.0590 s     1.93×
//! ```

use std::fmt;

/// Headers and rows of already-formatted cells.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// Spaces before every line, so a table sits under its heading.
const INDENT: &str = "  ";

impl Table {
    /// A table with these column headers, indented by two spaces.
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Table {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells print empty, extra cells make extra columns.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) -> &mut Table {
        self.rows.push(cells.into_iter().map(Into::into).collect());
        self
    }

    fn columns(&self) -> usize {
        self.rows
            .iter()
            .map(Vec::len)
            .chain([self.headers.len()])
            .max()
            .unwrap_or(0)
    }
}

/// The cell at `col`, empty when the row is short.
fn cell(row: &[String], col: usize) -> &str {
    row.get(col).map_or("", String::as_str)
}

/// Units a numeric cell may end with.
const UNITS: &[&str] = &[
    "s", "ms", "µs", "us", "ns", "×", "x", "%", "B", "KB", "MB", "GB", "KiB", "MiB", "GiB", "B/s",
    "KB/s", "MB/s", "GB/s", "/s", "k/s", "M/s", "tasks/s", "k", "M",
];

/// True for cells such as `42`, `-3.5`, `0.1140 s`, `1.97×`, `12 µs`: a number,
/// optionally followed by a unit. Numeric columns are right-aligned.
pub fn looks_numeric(cell: &str) -> bool {
    let cell = cell.trim();
    let number = cell
        .strip_prefix(['-', '+', '~', '≈'])
        .unwrap_or(cell)
        .trim_start();
    let digits = number
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .map_or(number, |end| &number[..end]);
    let unit = number[digits.len()..].trim();
    digits.chars().any(|c| c.is_ascii_digit()) && (unit.is_empty() || UNITS.contains(&unit))
}

/// A placeholder cell (`—`, `-`, empty) that does not decide a column's alignment.
fn is_blank(cell: &str) -> bool {
    matches!(cell.trim(), "" | "-" | "—")
}

fn width(s: &str) -> usize {
    s.chars().count()
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let columns = self.columns();
        let mut widths = vec![0; columns];
        let mut numeric = vec![true; columns];
        let mut seen = vec![false; columns];
        for (col, w) in widths.iter_mut().enumerate() {
            *w = width(cell(&self.headers, col));
            for row in &self.rows {
                let cell = cell(row, col);
                *w = (*w).max(width(cell));
                if !is_blank(cell) {
                    seen[col] = true;
                    numeric[col] &= looks_numeric(cell);
                }
            }
        }
        let right: Vec<bool> = (0..columns).map(|c| numeric[c] && seen[c]).collect();
        let line = |f: &mut fmt::Formatter<'_>, cells: &dyn Fn(usize) -> String| {
            let mut text = INDENT.to_string();
            for col in 0..columns {
                if col > 0 {
                    text.push_str("  ");
                }
                let cell = cells(col);
                let fill = " ".repeat(widths[col].saturating_sub(width(&cell)));
                if right[col] {
                    text.push_str(&fill);
                    text.push_str(&cell);
                } else {
                    text.push_str(&cell);
                    text.push_str(&fill);
                }
            }
            writeln!(f, "{}", text.trim_end())
        };
        line(f, &|c| cell(&self.headers, c).to_string())?;
        line(f, &|c| "─".repeat(widths[c]))?;
        for row in &self.rows {
            line(f, &|c| cell(row, c).to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_units() {
        for s in [
            "42", "-3.5", "0.1140 s", "1.97×", "12 µs", "≈ 1.00", "1,024",
        ] {
            assert!(looks_numeric(s), "{s}");
        }
        for s in [
            "",
            "Thread 1",
            "ok",
            "x2",
            "1.0.0a1",
            "PID 3",
            "2 threads",
            "3 s 4",
        ] {
            assert!(!looks_numeric(s), "{s}");
        }
    }

    #[test]
    fn renders_aligned() {
        let mut t = Table::new(["run", "time"]);
        t.row(["1 thread", "0.1140 s"])
            .row(["Pool(2)", "10.0590 s"]);
        t.row(["—", "—"]);
        let text = t.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "  run            time");
        assert_eq!(lines[1], "  ────────  ─────────");
        assert_eq!(lines[2], "  1 thread   0.1140 s");
        assert_eq!(lines[3], "  Pool(2)   10.0590 s");
        assert_eq!(lines[4], "  —                 —");
    }

    #[test]
    fn ragged_rows() {
        let mut t = Table::new(["a"]);
        t.row(["x", "y", "z"]).row(Vec::<String>::new());
        let text = t.to_string();
        assert_eq!(text.lines().count(), 4);
        assert!(text.lines().nth(2).unwrap().starts_with("  x  y  z"));
    }
}
