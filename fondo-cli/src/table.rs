//! A tiny text table: headers and rows of strings, columns padded to their widest
//! cell, numeric columns right-aligned. Widths are counted in characters, so `µ`,
//! `×`, `✓` are one column each. Shared by `demo` and `bench`.
//!
//! The demo's style (the default): every line indented by two spaces, one rule per
//! column.
//!
//! ```text
//!   run          time      speed-up
//!   ───────────  ────────  ────────
//!   1 thread     0.1140 s     1.00×
//!   2 threads    0.0590 s     1.93×
//! ```
//!
//! The bench's style (`.indent("").solid_rule()`), with a blank line between
//! groups (`gap`):
//!
//! ```text
//! figure          median
//! ──────────────────────
//! round trip     13.7 µs
//!
//! map(noop)    35.41 M/s
//! ```

use std::fmt;

/// How a column is aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    /// Right when every non-blank cell looks numeric (and there is one), else left.
    Auto,
    Left,
    Right,
}

/// Headers and rows of already-formatted cells.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<String>,
    align: Vec<Align>,
    /// `None` is a blank line between groups of rows.
    rows: Vec<Option<Vec<String>>>,
    indent: String,
    solid_rule: bool,
}

impl Table {
    /// A table with these column headers, indented by two spaces, one rule per
    /// column. A header starting with `>` makes its column right-aligned, with `<`
    /// left-aligned (the mark is not printed); otherwise a column is right-aligned
    /// when all its cells look numeric (see [`looks_numeric`]).
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Table {
        let (headers, align) = headers
            .into_iter()
            .map(|h| {
                let h: String = h.into();
                if let Some(rest) = h.strip_prefix('>') {
                    (rest.to_string(), Align::Right)
                } else if let Some(rest) = h.strip_prefix('<') {
                    (rest.to_string(), Align::Left)
                } else {
                    (h, Align::Auto)
                }
            })
            .unzip();
        Table {
            headers,
            align,
            rows: Vec::new(),
            indent: "  ".into(),
            solid_rule: false,
        }
    }

    /// Puts `indent` before every line instead of two spaces.
    pub fn indent(mut self, indent: &str) -> Table {
        self.indent = indent.into();
        self
    }

    /// Draws one unbroken rule under the headers, as wide as the table, instead of
    /// one per column.
    pub fn solid_rule(mut self) -> Table {
        self.solid_rule = true;
        self
    }

    /// Appends a row; missing cells print empty, extra cells make extra columns.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) -> &mut Table {
        self.rows
            .push(Some(cells.into_iter().map(Into::into).collect()));
        self
    }

    /// Appends a blank line between groups of rows.
    pub fn gap(&mut self) -> &mut Table {
        self.rows.push(None);
        self
    }

    /// True when no row (nor gap) has been added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn cells(&self) -> impl Iterator<Item = &Vec<String>> {
        self.rows.iter().flatten()
    }

    fn columns(&self) -> usize {
        self.cells()
            .map(Vec::len)
            .chain([self.headers.len()])
            .max()
            .unwrap_or(0)
    }

    /// Right-aligns column `col`?
    fn right(&self, col: usize) -> bool {
        match self.align.get(col).copied().unwrap_or(Align::Auto) {
            Align::Left => false,
            Align::Right => true,
            Align::Auto => {
                let mut cells = self.cells().map(|r| cell(r, col)).filter(|c| !is_blank(c));
                let first = cells.next();
                first.is_some_and(looks_numeric) && cells.all(looks_numeric)
            }
        }
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

/// Width in columns: characters, so `µ`, `×`, `✓`, `─` count one each.
fn width(s: &str) -> usize {
    s.chars().count()
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let columns = self.columns();
        let widths: Vec<usize> = (0..columns)
            .map(|col| {
                self.cells()
                    .map(|row| width(cell(row, col)))
                    .chain([width(cell(&self.headers, col))])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let right: Vec<bool> = (0..columns).map(|c| self.right(c)).collect();
        let line = |f: &mut fmt::Formatter<'_>, cells: &dyn Fn(usize) -> String| {
            let mut text = self.indent.clone();
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
        if self.solid_rule {
            let total = widths.iter().sum::<usize>() + 2 * columns.saturating_sub(1);
            writeln!(f, "{}{}", self.indent, "─".repeat(total))?;
        } else {
            line(f, &|c| "─".repeat(widths[c]))?;
        }
        for row in &self.rows {
            match row {
                Some(row) => line(f, &|c| cell(row, c).to_string())?,
                None => writeln!(f)?,
            }
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

    #[test]
    fn bench_style_aligns_by_characters() {
        let mut t = Table::new(["name", ">µs"]).indent("").solid_rule();
        assert!(t.is_empty());
        t.row(["a", "1.5 µs"]);
        t.gap();
        t.row(["long name", "22.0 µs"]);
        let text = t.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "name            µs");
        assert_eq!(lines[1], "─".repeat(18));
        assert_eq!(lines[2], "a           1.5 µs");
        assert_eq!(lines[3], "");
        assert_eq!(lines[4], "long name  22.0 µs");
    }

    #[test]
    fn marks_force_alignment() {
        // `≤ 15 µs` is not a number, `7` is: the marks override the guess.
        let mut t = Table::new([">goal", "<n"]).indent("");
        t.row(["≤ 15 µs", "7"]).row(["≥ 3×", "12"]);
        let text = t.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "   goal  n");
        assert_eq!(lines[2], "≤ 15 µs  7");
        assert_eq!(lines[3], "   ≥ 3×  12");
    }
}
