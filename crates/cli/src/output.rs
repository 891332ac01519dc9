//! Terminal output helpers: plain aligned tables and progress bars that stay quiet off a TTY.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Renders rows as an aligned text table; the first row is the header.
/// How a command prints its result: a table for people, one JSON line for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
}

pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (index, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c == 0 {
                    format!("{cell:<w$}", w = widths[c])
                } else {
                    format!("{cell:>w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if index == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * columns.saturating_sub(1)));
            out.push('\n');
        }
    }
    out
}

/// A progress bar of `total` units, hidden when stderr is not a terminal.
pub fn progress_bar(total: u64, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Formats a metric to 4 decimals; a missing (NaN) one is left blank.
pub fn metric(value: f64) -> String {
    if value.is_nan() {
        String::new()
    } else {
        format!("{value:.4}")
    }
}

/// The P1 columns every metric table ends with.
const METRIC_COLUMNS: [&str; 6] = [
    "users",
    "HR@10",
    "Recall@10",
    "NDCG@10",
    "coverage",
    "in train",
];

/// A metric table's header: the leading columns, then the P1 columns.
pub fn metric_header(leading: &[&str]) -> Vec<String> {
    leading
        .iter()
        .chain(METRIC_COLUMNS.iter())
        .map(|cell| (*cell).to_owned())
        .collect()
}

/// A metric table's row: the leading cells, then users, HR, recall, NDCG, coverage and the share
/// of truth in training (NaN for a figure the row does not have).
pub fn metric_row(leading: Vec<String>, users: usize, figures: [f64; 5]) -> Vec<String> {
    let mut row = leading;
    row.push(users.to_string());
    row.extend(figures.into_iter().map(metric));
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let rows = vec![
            vec!["model".to_owned(), "hr".to_owned()],
            vec!["popularity".to_owned(), "0.1".to_owned()],
        ];
        assert_eq!(
            table(&rows),
            "model        hr\n---------------\npopularity  0.1\n"
        );
    }
}
