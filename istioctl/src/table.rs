//! Tables as Istio 1.4's istioctl printed them with Go's tabwriter (padding 5): each column as
//! wide as its widest cell, five spaces between columns, no trailing spaces.

/// Renders `header` and `rows` as a table; every row has one cell per header column.
pub(crate) fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(String::len)
                .chain([header[column].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| -> String {
        let padded: Vec<String> =
            cells.iter().enumerate().map(|(i, cell)| format!("{cell:<width$}", width = widths[i])).collect();
        format!("{}\n", padded.join("     ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_plus_five() {
        let rows = vec![vec!["a-long-name".to_string(), "x".to_string()], vec!["b".to_string(), String::new()]];
        assert_eq!(render(&["NAME", "VALUE"], &rows), "NAME            VALUE\na-long-name     x\nb\n");
    }
}
