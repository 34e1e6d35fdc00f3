//! An SVG picture of latency and hops against network size, drawn by hand
//! (no plotting dependency).

use std::fmt::Write;

use crate::net::Measurement;

const WIDTH: f64 = 980.0;
const HEIGHT: f64 = 360.0;
const PANEL: f64 = 380.0;
const TOP: f64 = 40.0;
const PLOT_HEIGHT: f64 = 250.0;

/// The shared horizontal axis: network sizes on a log scale.
struct SizeAxis<'a> {
    sizes: &'a [usize],
    min: f64,
    max: f64,
}

impl SizeAxis<'_> {
    fn x(&self, n: usize, left: f64) -> f64 {
        let span = (self.max.log2() - self.min.log2()).max(1.0);
        left + ((n as f64).log2() - self.min.log2()) / span * PANEL
    }
}

/// A vertical axis: linear from 0 (hops), or logarithmic over powers of ten
/// (latencies, which span four orders of magnitude from 16 to 1024 nodes).
enum Scale {
    Linear { max: f64 },
    Log { min_exp: i32, max_exp: i32 },
}

impl Scale {
    /// A log scale from the power of ten at or below `min` to the one at or
    /// above `max`.
    fn log_covering(min: f64, max: f64) -> Self {
        let min_exp = min.max(1e-3).log10().floor() as i32;
        let max_exp = (max.max(1e-3).log10().ceil() as i32).max(min_exp + 1);
        Self::Log { min_exp, max_exp }
    }

    fn y(&self, value: f64) -> f64 {
        let fraction = match *self {
            Self::Linear { max } => value / max.max(f64::MIN_POSITIVE),
            Self::Log { min_exp, max_exp } => {
                let exp = value.max(10f64.powi(min_exp)).log10();
                (exp - f64::from(min_exp)) / f64::from(max_exp - min_exp)
            }
        };
        TOP + PLOT_HEIGHT - fraction * PLOT_HEIGHT
    }

    /// Labelled ticks: value and label.
    fn ticks(&self, unit: &str) -> Vec<(f64, String)> {
        match *self {
            Self::Linear { max } => vec![(0.0, "0".into()), (max, format!("{max:.1} {unit}"))],
            Self::Log { min_exp, max_exp } => (min_exp..=max_exp)
                .map(|exp| {
                    let value = 10f64.powi(exp);
                    let decimals = usize::try_from(-exp).unwrap_or(0);
                    (value, format!("{value:.decimals$} {unit}"))
                })
                .collect(),
        }
    }
}

fn polyline(svg: &mut String, points: &[(f64, f64)], color: &str, dashed: bool) {
    let path: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    let dash = if dashed {
        " stroke-dasharray=\"5 4\""
    } else {
        ""
    };
    let _ = write!(
        svg,
        r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
        path.join(" ")
    );
    for (x, y) in points {
        let _ = write!(
            svg,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{color}"/>"#
        );
    }
}

fn axes(svg: &mut String, left: f64, title: &str, unit: &str, scale: &Scale, axis: &SizeAxis<'_>) {
    let bottom = TOP + PLOT_HEIGHT;
    let _ = write!(
        svg,
        r##"<text x="{}" y="24" font-size="15" font-weight="bold">{title}</text>
<line x1="{left}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="#333"/>
<line x1="{left}" y1="{TOP}" x2="{left}" y2="{bottom}" stroke="#333"/>"##,
        left,
        left + PANEL,
    );
    for (value, label) in scale.ticks(unit) {
        let y = scale.y(value);
        let _ = write!(
            svg,
            r##"<line x1="{left}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#eee"/>
<text x="{}" y="{:.1}" font-size="11" text-anchor="end">{label}</text>"##,
            left + PANEL,
            left - 6.0,
            y + 4.0
        );
    }
    for n in axis.sizes {
        let x = axis.x(*n, left);
        let _ = write!(
            svg,
            r##"<text x="{x:.1}" y="{}" font-size="11" text-anchor="middle">{n}</text>"##,
            bottom + 16.0
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{}" y="{}" font-size="11" text-anchor="middle">nodes (log scale)</text>"##,
        left + PANEL / 2.0,
        bottom + 32.0
    );
}

/// The picture for the in-process runs of one transport.
pub(crate) fn svg(runs: &[&Measurement]) -> String {
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>"#
    );
    let sizes: Vec<usize> = runs.iter().map(|m| m.nodes).collect();
    if sizes.is_empty() {
        svg.push_str("</svg>\n");
        return svg;
    }
    let axis = SizeAxis {
        sizes: &sizes,
        min: *sizes.iter().min().unwrap_or(&1) as f64,
        max: *sizes.iter().max().unwrap_or(&2) as f64,
    };

    let max_latency = runs
        .iter()
        .map(|m| m.get.p99_ms.max(m.put.p99_ms))
        .fold(1.0, f64::max);
    let min_latency = runs
        .iter()
        .map(|m| m.get.p50_ms.min(m.put.p50_ms))
        .fold(max_latency, f64::min);
    let latency_scale = Scale::log_covering(min_latency, max_latency);
    let left = 70.0;
    axes(
        &mut svg,
        left,
        "put and get latency (log scale)",
        "ms",
        &latency_scale,
        &axis,
    );
    let series = [
        (
            "#2f6fde",
            false,
            "get p50",
            runs.iter().map(|m| m.get.p50_ms).collect::<Vec<_>>(),
        ),
        (
            "#2f6fde",
            true,
            "get p99",
            runs.iter().map(|m| m.get.p99_ms).collect(),
        ),
        (
            "#d9822b",
            false,
            "put p50",
            runs.iter().map(|m| m.put.p50_ms).collect(),
        ),
        (
            "#d9822b",
            true,
            "put p99",
            runs.iter().map(|m| m.put.p99_ms).collect(),
        ),
    ];
    for (i, (color, dashed, label, values)) in series.iter().enumerate() {
        let points: Vec<(f64, f64)> = sizes
            .iter()
            .zip(values)
            .map(|(n, v)| (axis.x(*n, left), latency_scale.y(*v)))
            .collect();
        polyline(&mut svg, &points, color, *dashed);
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" font-size="11" fill="{color}">{label}{}</text>"#,
            left + 10.0,
            TOP + 12.0 + 14.0 * i as f64,
            if *dashed { " (dashed)" } else { "" }
        );
    }

    let max_hops = runs
        .iter()
        .map(|m| {
            m.hops_mean
                .unwrap_or(0.0)
                .max((m.nodes as f64).log2() / 2.0)
        })
        .fold(1.0, f64::max)
        + 0.5;
    let hops_scale = Scale::Linear { max: max_hops };
    let left = 70.0 + PANEL + 80.0;
    axes(&mut svg, left, "hops per lookup", "", &hops_scale, &axis);
    let hops: Vec<(f64, f64)> = runs
        .iter()
        .filter_map(|m| Some((axis.x(m.nodes, left), hops_scale.y(m.hops_mean?))))
        .collect();
    polyline(&mut svg, &hops, "#1a7f4b", false);
    // log2(N)/log2(k) is the textbook order of growth; drawn for comparison.
    let reference: Vec<(f64, f64)> = runs
        .iter()
        .map(|m| {
            let expected = ((m.nodes as f64).log2() / (m.k as f64).log2()).max(1.0);
            (axis.x(m.nodes, left), hops_scale.y(expected))
        })
        .collect();
    polyline(&mut svg, &reference, "#999", true);
    let _ = write!(
        svg,
        r##"<text x="{}" y="{}" font-size="11" fill="#1a7f4b">mean hops (simulated on the real routing tables)</text>
<text x="{}" y="{}" font-size="11" fill="#999">log N / log k (dashed)</text>"##,
        left + 10.0,
        TOP + 12.0,
        left + 10.0,
        TOP + 26.0
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_scale_spaces_powers_of_ten_evenly_and_clamps_below_its_floor() {
        let scale = Scale::log_covering(0.14, 349.0);
        let Scale::Log { min_exp, max_exp } = scale else {
            panic!("not a log scale");
        };
        assert_eq!((min_exp, max_exp), (-1, 3));
        let bottom = scale.y(0.1);
        let step = bottom - scale.y(1.0);
        assert!((bottom - TOP - PLOT_HEIGHT).abs() < 1e-9);
        assert!((scale.y(10.0) - (bottom - 2.0 * step)).abs() < 1e-9);
        assert!((scale.y(1000.0) - TOP).abs() < 1e-9);
        assert_eq!(scale.y(0.0), bottom, "values under the floor sit on it");
        let labels: Vec<String> = scale.ticks("ms").into_iter().map(|(_, l)| l).collect();
        assert_eq!(labels, ["0.1 ms", "1 ms", "10 ms", "100 ms", "1000 ms"]);
    }

    #[test]
    fn the_plot_draws_one_point_per_size_and_series() {
        let run = |nodes: usize, hops: f64| -> Measurement {
            serde_json::from_value(serde_json::json!({
                "mode": "in-process", "transport": "memory", "nodes": nodes, "k": 20,
                "joinSeconds": 1.0, "routingTablesFilledSeconds": 1.0, "routingTableMean": 15.0,
                "put": {"p50Ms": 3.0, "p90Ms": 4.0, "p99Ms": 5.0, "maxMs": 6.0, "samples": 1},
                "get": {"p50Ms": 0.5, "p90Ms": 1.0, "p99Ms": 2.0, "maxMs": 3.0, "samples": 1},
                "putSuccess": 1.0, "getSuccess": 1.0, "closestRecall": 1.0,
                "requestsPerGet": 1.0, "requestsPerPut": 1.0, "hopsMean": hops, "hopsMax": 2,
                "cpuSecondsPer1000Lookups": 1.0, "rssBytes": 1, "rssBytesPerNode": 1.0,
                "peakRssBytes": 1, "discover": {"p50Ms": 1.0, "p90Ms": 1.0, "p99Ms": 1.0, "maxMs": 1.0, "samples": 1},
                "discoverSuccess": 1.0
            }))
            .expect("a valid measurement")
        };
        let runs = [run(16, 1.0), run(64, 1.25)];
        let svg = svg(&runs.iter().collect::<Vec<_>>());
        // 4 latency series + hops + the log N / log k reference, 2 sizes each.
        assert_eq!(svg.matches("<circle").count(), 6 * 2);
        assert!(svg.contains(">16<") && svg.contains(">64<"));
    }
}
