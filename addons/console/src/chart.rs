//! Line charts as inline SVG, for the dashboards' time series: one line per series, a shared
//! time axis, the y axis from zero to the largest value, a legend. A chart with no points is not
//! drawn; the caller says there is no data instead.

use std::fmt::Write;

use crate::page::{escape, number};
use crate::sources::Series;

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 84.0;
const BOTTOM: f64 = 24.0;
const COLOURS: [&str; 8] = ["#4a90d9", "#2a9d8f", "#e76f51", "#8e44ad", "#f4a261", "#264653", "#c0392b", "#7f8c8d"];

/// One line: its legend text and its series.
pub struct Line<'a> {
    pub legend: String,
    pub series: &'a Series,
}

/// The SVG of a chart over the time range `(first, last)` (seconds since the epoch), or `None`
/// when no line has a point.
pub fn render(lines: &[Line<'_>], unit: &str, (first, last): (f64, f64)) -> Option<String> {
    let points = lines.iter().flat_map(|line| line.series.points.iter());
    let mut top = 0.0_f64;
    let mut any = false;
    for (_, value) in points {
        any = true;
        top = top.max(*value);
    }
    if !any {
        return None;
    }
    if top <= 0.0 {
        top = 1.0;
    }
    let span = (last - first).max(1.0);
    let (plot_width, plot_height) = (WIDTH - LEFT - 8.0, HEIGHT - BOTTOM - 8.0);
    let x = |time: f64| LEFT + (time - first) / span * plot_width;
    let y = |value: f64| 8.0 + plot_height - value / top * plot_height;
    let legend_height = 18.0 * lines.len() as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"{WIDTH}\" height=\"{}\" viewBox=\"0 0 {WIDTH} {}\">",
        HEIGHT + legend_height,
        HEIGHT + legend_height
    );
    // Axes with the top value and the time span.
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"8\" x2=\"{LEFT}\" y2=\"{bottom}\" stroke=\"#999\"/>\
         <line x1=\"{LEFT}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\" stroke=\"#999\"/>\
         <text x=\"{label_x}\" y=\"14\" font-size=\"11\" text-anchor=\"end\">{top} {unit}</text>\
         <text x=\"{label_x}\" y=\"{bottom}\" font-size=\"11\" text-anchor=\"end\">0</text>\
         <text x=\"{right}\" y=\"{time_y}\" font-size=\"11\" text-anchor=\"end\">last {minutes} min</text>",
        bottom = 8.0 + plot_height,
        right = LEFT + plot_width,
        label_x = LEFT - 4.0,
        top = number(top, 3),
        unit = escape(unit),
        time_y = HEIGHT - 6.0,
        minutes = number(span / 60.0, 0),
    );
    for (index, line) in lines.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let path: Vec<String> =
            line.series.points.iter().map(|(time, value)| format!("{:.1},{:.1}", x(*time), y(*value))).collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\
             <rect x=\"{LEFT}\" y=\"{ry}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
             <text x=\"{tx}\" y=\"{ty}\" font-size=\"12\" class=\"legend\">{}</text>",
            path.join(" "),
            escape(&line.legend),
            ry = HEIGHT + 18.0 * index as f64,
            tx = LEFT + 16.0,
            ty = HEIGHT + 18.0 * index as f64 + 9.0,
        );
        // A line of one or two points is hard to see: mark them.
        if line.series.points.len() <= 2 {
            for (time, value) in &line.series.points {
                let _ =
                    write!(svg, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"/>", x(*time), y(*value));
            }
        }
    }
    svg.push_str("</svg>");
    Some(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_scale_to_the_largest_value_and_empty_charts_are_not_drawn() {
        let series = Series { labels: Default::default(), points: vec![(0.0, 0.0), (60.0, 2.0), (120.0, 4.0)] };
        let range = (0.0, 120.0);
        let svg =
            render(&[Line { legend: "productpage <v1>".into(), series: &series }], "rps", range).expect("a chart");
        assert!(svg.contains(">4 rps</text>"), "{svg}");
        assert!(svg.contains("points=\"84.0,176.0 338.0,92.0 592.0,8.0\""), "{svg}");
        assert!(svg.contains(">last 2 min</text>"), "{svg}");
        assert!(svg.contains("productpage &lt;v1&gt;"), "{svg}");
        let empty = Series { labels: Default::default(), points: Vec::new() };
        assert!(render(&[Line { legend: "x".into(), series: &empty }], "rps", range).is_none());
    }
}
