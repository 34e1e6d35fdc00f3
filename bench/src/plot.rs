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

fn y_of(value: f64, max: f64) -> f64 {
    TOP + PLOT_HEIGHT - value / max.max(f64::MIN_POSITIVE) * PLOT_HEIGHT
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

fn axes(svg: &mut String, left: f64, title: &str, unit: &str, max: f64, axis: &SizeAxis<'_>) {
    let bottom = TOP + PLOT_HEIGHT;
    let _ = write!(
        svg,
        r##"<text x="{}" y="24" font-size="15" font-weight="bold">{title}</text>
<line x1="{left}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="#333"/>
<line x1="{left}" y1="{TOP}" x2="{left}" y2="{bottom}" stroke="#333"/>
<text x="{}" y="{}" font-size="11">{max:.1} {unit}</text>
<text x="{}" y="{}" font-size="11">0</text>"##,
        left,
        left + PANEL,
        left - 4.0,
        TOP - 4.0,
        left - 12.0,
        bottom + 4.0
    );
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
    let left = 60.0;
    axes(
        &mut svg,
        left,
        "put and get latency",
        "ms",
        max_latency,
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
            .map(|(n, v)| (axis.x(*n, left), y_of(*v, max_latency)))
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
    let left = 60.0 + PANEL + 80.0;
    axes(&mut svg, left, "hops per lookup", "", max_hops, &axis);
    let hops: Vec<(f64, f64)> = runs
        .iter()
        .filter_map(|m| Some((axis.x(m.nodes, left), y_of(m.hops_mean?, max_hops))))
        .collect();
    polyline(&mut svg, &hops, "#1a7f4b", false);
    // log2(N)/log2(k) is the textbook order of growth; drawn for comparison.
    let reference: Vec<(f64, f64)> = runs
        .iter()
        .map(|m| {
            let expected = ((m.nodes as f64).log2() / (m.k as f64).log2()).max(1.0);
            (axis.x(m.nodes, left), y_of(expected, max_hops))
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
