//! A plain-text table with aligned columns, measured in characters (`µ`, `×`, `✓`
//! are one column wide each).

/// A table: a header row and data rows; `None` rows are blank lines between groups.
pub struct Table {
    headers: Vec<String>,
    /// Right-align this column (numbers).
    right: Vec<bool>,
    rows: Vec<Option<Vec<String>>>,
}

impl Table {
    /// A table with these column headers; a header starting with `>` is right-aligned.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers
                .iter()
                .map(|h| h.trim_start_matches('>').to_string())
                .collect(),
            right: headers.iter().map(|h| h.starts_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(Some(cells));
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn gap(&mut self) {
        self.rows.push(None);
    }

    /// The table as text, two spaces between columns, no trailing spaces.
    pub fn render(&self) -> String {
        let n = self.headers.len();
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in self.rows.iter().flatten() {
            for (i, c) in row.iter().enumerate().take(n) {
                widths[i] = widths[i].max(width(c));
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, w) in widths.iter().enumerate() {
                let c = cells.get(i).map_or("", String::as_str);
                let pad = " ".repeat(w - width(c).min(*w));
                if i > 0 {
                    out.push_str("  ");
                }
                if self.right[i] {
                    out.push_str(&pad);
                    out.push_str(c);
                } else {
                    out.push_str(c);
                    out.push_str(&pad);
                }
            }
            out.trim_end().to_string()
        };
        let total = widths.iter().sum::<usize>() + 2 * n.saturating_sub(1);
        let mut out = line(&self.headers);
        out.push('\n');
        out.push_str(&"─".repeat(total));
        out.push('\n');
        for row in &self.rows {
            if let Some(cells) = row {
                out.push_str(&line(cells));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_by_characters() {
        let mut t = Table::new(&["name", ">µs"]);
        t.row(vec!["a".into(), "1.5 µs".into()]);
        t.gap();
        t.row(vec!["long name".into(), "22.0 µs".into()]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "name            µs");
        assert_eq!(lines[2], "a           1.5 µs");
        assert_eq!(lines[3], "");
        assert_eq!(lines[4], "long name  22.0 µs");
    }
}
