//! The console's page frame (title, navigation, styles; no scripts) and the small HTML pieces
//! every view uses: escaping, notices for a source that failed, and the "no data" message a view
//! shows instead of an empty chart.

use std::fmt::Write;

/// Escapes text for HTML bodies and attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// A query-string value.
pub fn url_value(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#222}\
nav{background:#1f3a5f;padding:.6em 1.5em}nav a{color:#fff;margin-right:1.5em;text-decoration:none;font-weight:600}\
nav a.here{border-bottom:2px solid #fff}main{padding:1em 1.5em}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}\
th{background:#f3f5f8}.notice{background:#fff4e5;border-left:4px solid #f0a020;padding:.5em 1em}\
.nodata{color:#666;font-style:italic;padding:1em;border:1px dashed #bbb;max-width:40em}\
.stats{display:flex;gap:1em;flex-wrap:wrap}.stat{border:1px solid #ddd;padding:.6em 1em;min-width:10em}\
.stat b{display:block;font-size:1.6em}.panels{display:flex;flex-wrap:wrap;gap:1.5em}.panel{max-width:620px}\
.ok{color:#2a7d2a}.warn{color:#b36b00}.bad{color:#c0392b}.bar{height:14px;background:#4a90d9;border-radius:2px}\
.bar.server{background:#2a9d8f}.bar.error{background:#c0392b}.waterfall td{border:none;padding:.1em .5em}";

/// The views, as (path, title) for the navigation.
const VIEWS: [(&str, &str); 4] =
    [("/graph", "Graph"), ("/dashboards", "Dashboards"), ("/traces", "Traces"), ("/config", "Config")];

/// Wraps a view's body in the page frame; `here` is the view's path.
pub fn frame(title: &str, here: &str, body: &str) -> String {
    let mut page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{} · mesh console</title><style>{STYLE}</style></head><body><nav>",
        escape(title)
    );
    for (path, name) in VIEWS {
        let class = if here.starts_with(path) { " class=\"here\"" } else { "" };
        let _ = write!(page, "<a href=\"{path}\"{class}>{name}</a>");
    }
    let _ = write!(page, "</nav><main><h1>{}</h1>{body}</main></body></html>", escape(title));
    page
}

/// A source's failure, said in place of its data.
pub fn notice(message: &str) -> String {
    format!("<p class=\"notice\">{}</p>", escape(message))
}

/// What a view without data shows.
pub fn no_data(message: &str) -> String {
    format!("<p class=\"nodata\">{}</p>", escape(message))
}

/// A number with at most `digits` decimals and no trailing zeros.
pub fn number(value: f64, digits: usize) -> String {
    let text = format!("{value:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_numbers_and_the_frame() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(number(12.500, 2), "12.5");
        assert_eq!(number(3.0, 3), "3");
        assert_eq!(url_value("a b&c"), "a+b%26c");
        let page = frame("Graph", "/graph", "<p>x</p>");
        assert!(page.contains("<a href=\"/graph\" class=\"here\">Graph</a>"));
        assert!(page.contains("<h1>Graph</h1><p>x</p>"));
        assert!(!page.contains("<script"));
    }
}
