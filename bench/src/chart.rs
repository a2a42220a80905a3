//! A tiny SVG line chart, no dependencies: x and y axes with round ticks, one
//! polyline with dots per series, a legend. Used for the OTLP ramp (x =
//! offered spans/s, y = accepted spans/s, one series per receiver).

use std::fmt::Write as _;

/// Drawing area and margins, in SVG user units (pixels).
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
/// Series colours, in order (colour-blind safe).
const COLOURS: [&str; 6] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
];

/// One line: a name and its points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A chart: a title, axis labels, series; optionally a dashed `y = x` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Draw `y = x` (for accepted against offered: the lossless line).
    pub diagonal: bool,
}

/// A round step giving about `count` ticks up to `max`: 1, 2 or 5 × 10ⁿ.
pub fn tick_step(max: f64, count: usize) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / count.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// A tick label: `20k`, `1.5M`, `300`.
pub fn short(value: f64) -> String {
    let trim = |s: String| s.trim_end_matches(".0").to_owned();
    if value.abs() >= 1e6 {
        trim(format!("{:.1}", value / 1e6)) + "M"
    } else if value.abs() >= 1e3 {
        trim(format!("{:.1}", value / 1e3)) + "k"
    } else {
        trim(format!("{value:.1}"))
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Chart {
    /// The chart as an SVG document.
    pub fn to_svg(&self) -> String {
        let points = self.series.iter().flat_map(|s| s.points.iter());
        let (mut x_max, mut y_max) =
            points.fold((0f64, 0f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
        if self.diagonal {
            x_max = x_max.max(y_max);
            y_max = x_max;
        }
        let (x_step, y_step) = (tick_step(x_max, 8), tick_step(y_max, 6));
        let x_top = (x_max / x_step).ceil().max(1.0) * x_step;
        let y_top = (y_max / y_step).ceil().max(1.0) * y_step;
        let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let px = |x: f64| LEFT + x / x_top * plot_w;
        let py = |y: f64| TOP + plot_h - y / y_top * plot_h;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
            WIDTH / 2.0,
            escape(&self.title)
        );
        let mut x = 0.0;
        while x <= x_top + x_step / 2.0 {
            let _ = writeln!(
                svg,
                r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#e5e5e5"/><text x="{0:.1}" y="{3}" text-anchor="middle">{4}</text>"##,
                px(x),
                TOP,
                TOP + plot_h,
                TOP + plot_h + 16.0,
                short(x)
            );
            x += x_step;
        }
        let mut y = 0.0;
        while y <= y_top + y_step / 2.0 {
            let _ = writeln!(
                svg,
                r##"<line x1="{0}" y1="{1:.1}" x2="{2}" y2="{1:.1}" stroke="#e5e5e5"/><text x="{3}" y="{4:.1}" text-anchor="end">{5}</text>"##,
                LEFT,
                py(y),
                LEFT + plot_w,
                LEFT - 6.0,
                py(y) + 4.0,
                short(y)
            );
            y += y_step;
        }
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            LEFT + plot_w / 2.0,
            HEIGHT - 18.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            svg,
            r#"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
            TOP + plot_h / 2.0,
            escape(&self.y_label)
        );
        if self.diagonal {
            let top = x_top.min(y_top);
            let _ = writeln!(
                svg,
                r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#999" stroke-dasharray="4 4"/>"##,
                px(0.0),
                py(0.0),
                px(top),
                py(top)
            );
        }
        for (i, series) in self.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let path: Vec<String> = series
                .points
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
                path.join(" ")
            );
            for (x, y) in &series.points {
                let _ = writeln!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                    px(*x),
                    py(*y)
                );
            }
            let ly = TOP + 16.0 + i as f64 * 18.0;
            let _ = writeln!(
                svg,
                r#"<line x1="{0}" y1="{1:.1}" x2="{2}" y2="{1:.1}" stroke="{colour}" stroke-width="3"/><text x="{3}" y="{4:.1}">{5}</text>"#,
                LEFT + 12.0,
                ly,
                LEFT + 36.0,
                LEFT + 42.0,
                ly + 4.0,
                escape(&series.name)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(tick_step(200_000.0, 8), 50_000.0);
        assert_eq!(tick_step(160_000.0, 8), 20_000.0);
        assert_eq!(tick_step(9.0, 6), 2.0);
        assert_eq!(tick_step(0.0, 6), 1.0);
        assert_eq!(short(20_000.0), "20k");
        assert_eq!(short(1_500_000.0), "1.5M");
        assert_eq!(short(300.0), "300");
    }

    #[test]
    fn a_chart_has_one_line_per_series_and_escaped_labels() {
        let chart = Chart {
            title: "ramp <gRPC> & more".into(),
            x_label: "offered".into(),
            y_label: "accepted".into(),
            series: vec![
                Series {
                    name: "rotel".into(),
                    points: vec![(10_000.0, 10_000.0), (20_000.0, 20_000.0)],
                },
                Series {
                    name: "flowscope".into(),
                    points: vec![(10_000.0, 10_000.0), (20_000.0, 15_000.0)],
                },
            ],
            diagonal: true,
        };
        let svg = chart.to_svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("ramp &lt;gRPC&gt; &amp; more"));
        assert!(svg.contains(">flowscope</text>"));
    }
}
