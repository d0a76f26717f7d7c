//! A line chart as a standalone SVG file, written by hand: the shard sweep's throughput against
//! shards. Both axes are logarithmic: shard counts double from one to the next, and the frames per
//! second of 64 B and of 1024 B payloads are ten times apart, which a linear axis would flatten.

use std::fmt::Write as _;

/// One line: a variant at one payload.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    /// An SVG colour.
    pub color: &'static str,
    pub dashed: bool,
    /// In the order of x; points with a y that is not above zero are left out.
    pub points: Vec<Point>,
}

/// A median, with the range of the runs drawn as a bar.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub low: f64,
    pub high: f64,
}

/// A horizontal line across the chart: a limit such as the floor.
#[derive(Debug, Clone)]
pub struct Guide {
    pub label: String,
    pub y: f64,
}

#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub guides: Vec<Guide>,
}

const WIDTH: f64 = 820.0;
const HEIGHT: f64 = 480.0;
/// The plot area; the legend goes to its right.
const LEFT: f64 = 90.0;
const RIGHT: f64 = 590.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 410.0;

/// A logarithmic axis from `lo` to `hi` onto pixels `from` to `to`.
#[derive(Debug, Clone, Copy)]
struct Axis {
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
}

impl Axis {
    /// Spans `values` (all above zero), widened by `pad` (a factor) on each side.
    fn spanning(values: impl Iterator<Item = f64>, pad: f64, from: f64, to: f64) -> Axis {
        let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let (lo, hi) = if lo.is_finite() && hi > 0.0 {
            (lo, hi)
        } else {
            (1.0, 10.0)
        };
        Axis {
            lo: lo / pad,
            hi: hi * pad,
            from,
            to,
        }
    }

    fn at(&self, v: f64) -> f64 {
        let share = (v / self.lo).ln() / (self.hi / self.lo).ln();
        self.from + share * (self.to - self.from)
    }

    /// 1, 2 and 5 times the powers of ten within the axis.
    fn ticks(&self) -> Vec<f64> {
        let mut ticks = Vec::new();
        let mut decade = 10f64.powi(self.lo.log10().floor() as i32);
        while decade <= self.hi {
            for step in [1.0, 2.0, 5.0] {
                let tick = decade * step;
                if tick >= self.lo && tick <= self.hi {
                    ticks.push(tick);
                }
            }
            decade *= 10.0;
        }
        ticks
    }
}

/// `value` with an SI prefix: `500 k`, `1.2 M`.
fn si(value: f64) -> String {
    let (scaled, prefix) = match value.abs() {
        v if v >= 1e9 => (value / 1e9, " G"),
        v if v >= 1e6 => (value / 1e6, " M"),
        v if v >= 1e3 => (value / 1e3, " k"),
        _ => (value, ""),
    };
    let text = format!("{scaled:.1}");
    format!("{}{prefix}", text.trim_end_matches(".0"))
}

/// Text made safe for an SVG element's content.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The chart as an SVG document.
pub fn svg(chart: &Chart) -> String {
    let points = || {
        chart
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| p.y > 0.0)
    };
    let x = Axis::spanning(
        points().map(|p| p.x).filter(|&x| x > 0.0),
        1.15,
        LEFT,
        RIGHT,
    );
    let ys = points()
        .flat_map(|p| [p.y, p.low, p.high])
        .chain(chart.guides.iter().map(|g| g.y))
        .filter(|&y| y > 0.0 && y.is_finite());
    let y = Axis::spanning(ys, 1.3, BOTTOM, TOP);
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        o,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        o,
        r#"<text x="{LEFT}" y="28" font-size="15">{}</text>"#,
        escape(&chart.title)
    );
    axes(&mut o, chart, &x, &y);
    for guide in chart.guides.iter().filter(|g| g.y > 0.0) {
        let gy = y.at(guide.y);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" x2="{RIGHT}" y1="{gy:.1}" y2="{gy:.1}" stroke="#999" stroke-dasharray="2 3"/><text x="{:.1}" y="{:.1}" fill="#666" text-anchor="end">{}</text>"##,
            RIGHT - 4.0,
            gy - 4.0,
            escape(&guide.label)
        );
    }
    for (i, series) in chart.series.iter().enumerate() {
        line(&mut o, series, &x, &y);
        legend(&mut o, series, i);
    }
    o.push_str("</svg>\n");
    o
}

/// The frame, the ticks with their grid lines, and the axes' labels.
fn axes(o: &mut String, chart: &Chart, x: &Axis, y: &Axis) {
    let _ = writeln!(
        o,
        r#"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="black"/>"#,
        RIGHT - LEFT,
        BOTTOM - TOP
    );
    for tick in y.ticks() {
        let ty = y.at(tick);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" x2="{RIGHT}" y1="{ty:.1}" y2="{ty:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT - 6.0,
            ty + 4.0,
            si(tick)
        );
    }
    let mut xs: Vec<f64> = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.x))
        .filter(|&x| x > 0.0)
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    for tick in xs {
        let tx = x.at(tick);
        let _ = writeln!(
            o,
            r##"<line x1="{tx:.1}" x2="{tx:.1}" y1="{TOP}" y2="{BOTTOM}" stroke="#e4e4e4"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            BOTTOM + 18.0,
            si(tick)
        );
    }
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 42.0,
        escape(&chart.x_label)
    );
    let _ = writeln!(
        o,
        r#"<text transform="translate(22 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (TOP + BOTTOM) / 2.0,
        escape(&chart.y_label)
    );
}

/// A series' line through its medians, a dot at each, and a bar over each range.
fn line(o: &mut String, series: &Series, x: &Axis, y: &Axis) {
    let points: Vec<&Point> = series
        .points
        .iter()
        .filter(|p| p.y > 0.0 && p.x > 0.0)
        .collect();
    let dash = if series.dashed {
        r#" stroke-dasharray="7 4""#
    } else {
        ""
    };
    let path: Vec<String> = points
        .iter()
        .map(|p| format!("{:.1},{:.1}", x.at(p.x), y.at(p.y)))
        .collect();
    let _ = writeln!(
        o,
        r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
        path.join(" "),
        series.color
    );
    for p in points {
        let (px, py) = (x.at(p.x), y.at(p.y));
        if p.low > 0.0 && p.high > p.low {
            let _ = writeln!(
                o,
                r#"<line x1="{px:.1}" x2="{px:.1}" y1="{:.1}" y2="{:.1}" stroke="{}"/>"#,
                y.at(p.low),
                y.at(p.high),
                series.color
            );
        }
        let _ = writeln!(
            o,
            r#"<circle cx="{px:.1}" cy="{py:.1}" r="3.5" fill="{}"/>"#,
            series.color
        );
    }
}

/// The `index`th entry of the legend, right of the plot area.
fn legend(o: &mut String, series: &Series, index: usize) {
    let ly = TOP + 10.0 + 22.0 * index as f64;
    let dash = if series.dashed {
        r#" stroke-dasharray="7 4""#
    } else {
        ""
    };
    let _ = writeln!(
        o,
        r#"<line x1="{:.1}" x2="{:.1}" y1="{ly:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
        RIGHT + 20.0,
        RIGHT + 50.0,
        series.color,
        RIGHT + 58.0,
        ly + 4.0,
        escape(&series.label)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(x: f64, y: f64) -> Point {
        Point {
            x,
            y,
            low: y * 0.9,
            high: y * 1.1,
        }
    }

    fn chart() -> Chart {
        Chart {
            title: "frames/s <by> shards & size".into(),
            x_label: "shards".into(),
            y_label: "frames/s".into(),
            series: vec![
                Series {
                    label: "pipeline, 64 B".into(),
                    color: "red",
                    dashed: false,
                    points: vec![point(1.0, 1e7), point(2.0, 2e7), point(4.0, 4e7)],
                },
                Series {
                    label: "daemon, 1024 B".into(),
                    color: "blue",
                    dashed: true,
                    // A failed window (no frames) is left out, not drawn at zero.
                    points: vec![point(1.0, 1e6), point(2.0, 0.0), point(4.0, 1.5e6)],
                },
            ],
            guides: vec![Guide {
                label: "floor, 64 B".into(),
                y: 1e8,
            }],
        }
    }

    /// The `points` of every polyline, as (x, y) pairs.
    fn polylines(svg: &str) -> Vec<Vec<(f64, f64)>> {
        svg.lines()
            .filter_map(|l| l.strip_prefix(r#"<polyline points=""#))
            .map(|rest| {
                rest.split('"')
                    .next()
                    .expect("quoted")
                    .split(' ')
                    .map(|pair| {
                        let (x, y) = pair.split_once(',').expect("x,y");
                        (x.parse().expect("x"), y.parse().expect("y"))
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_svg_draws_a_line_per_series_rising_with_its_values() {
        let svg = svg(&chart());
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert!(svg.contains("frames/s &lt;by&gt; shards &amp; size"));
        assert!(svg.contains(">pipeline, 64 B</text>") && svg.contains(">daemon, 1024 B</text>"));
        assert!(svg.contains(">floor, 64 B</text>"));
        let lines = polylines(&svg);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), 3);
        assert_eq!(lines[1].len(), 2, "the zero point is left out");
        // More shards further right; more frames/s higher up (smaller y).
        for w in lines[0].windows(2) {
            assert!(w[1].0 > w[0].0 && w[1].1 < w[0].1, "{:?}", lines[0]);
        }
        // On a log axis, doubling moves the same distance whatever the value.
        let step = |a: (f64, f64), b: (f64, f64)| (b.0 - a.0, a.1 - b.1);
        let (dx1, dy1) = step(lines[0][0], lines[0][1]);
        let (dx2, dy2) = step(lines[0][1], lines[0][2]);
        assert!(
            (dx1 - dx2).abs() < 0.2 && (dy1 - dy2).abs() < 0.2,
            "{lines:?}"
        );
        // Every drawn coordinate is inside the picture.
        for (x, y) in lines.iter().flatten() {
            assert!(
                (LEFT..=RIGHT).contains(x) && (TOP..=BOTTOM).contains(y),
                "{x},{y}"
            );
        }
        assert!(
            svg.contains(r#"stroke-dasharray="7 4""#),
            "the dashed series"
        );
    }

    #[test]
    fn an_empty_chart_is_still_a_picture() {
        let mut empty = chart();
        empty.series.clear();
        empty.guides.clear();
        let svg = svg(&empty);
        assert!(svg.ends_with("</svg>\n") && !svg.contains("NaN"), "{svg}");
    }

    #[test]
    fn tick_labels_carry_si_prefixes() {
        assert_eq!(si(1.0), "1");
        assert_eq!(si(16.0), "16");
        assert_eq!(si(500_000.0), "500 k");
        assert_eq!(si(2e6), "2 M");
        assert_eq!(si(1.5e7), "15 M");
        assert_eq!(si(1.2e9), "1.2 G");
    }
}
