//! Draw `benches/compare.sh`'s results: p99.9 latency against offered load, one line per
//! server, on a log scale, as SVG and PNG.
//!
//!   percore-chart results.csv out-stem [font.ttf]
//!
//! The CSV has a header and the columns `line,offered,achieved,p50_ms,p99_ms,p999_ms,errors`.
//! Writes `out-stem.svg` and `out-stem.png`. The PNG needs a TrueType font for its text
//! (default: Debian's DejaVu Sans).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::error::Error;

use plotters::prelude::*;

struct Point {
    offered: f64,
    p999_ms: f64,
    errors: u64,
}

fn read(path: &str) -> Result<BTreeMap<String, Vec<Point>>, Box<dyn Error>> {
    let text = std::fs::read_to_string(path)?;
    let mut lines: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    for (n, row) in text.lines().enumerate().skip(1) {
        let cols: Vec<&str> = row.split(',').collect();
        if cols.len() < 7 {
            return Err(format!("{path}:{}: expected 7 columns, got {row:?}", n + 1).into());
        }
        let point = Point {
            offered: cols[1].parse()?,
            p999_ms: cols[5].parse()?,
            errors: cols[6].parse()?,
        };
        lines.entry(cols[0].to_owned()).or_default().push(point);
    }
    for points in lines.values_mut() {
        points.sort_by(|a, b| a.offered.total_cmp(&b.offered));
    }
    Ok(lines)
}

const COLORS: [RGBColor; 7] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0x17, 0xbe, 0xcf),
];

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    lines: &BTreeMap<String, Vec<Point>>,
) -> Result<(), Box<dyn Error>>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let max_rate = lines
        .values()
        .flatten()
        .map(|p| p.offered)
        .fold(1.0, f64::max);
    let max_ms = lines
        .values()
        .flatten()
        .map(|p| p.p999_ms)
        .fold(1.0, f64::max)
        .max(2.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "p99.9 latency against offered load (one core, loopback)",
            ("sans-serif", 22),
        )
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..max_rate * 1.05, (0.05f64..max_ms * 1.5).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("offered load (requests/s)")
        .y_desc("p99.9 latency (ms, log scale)")
        .x_label_formatter(&|x| {
            if max_rate < 20_000.0 {
                format!("{:.1}k", x / 1000.0)
            } else {
                format!("{:.0}k", x / 1000.0)
            }
        })
        .y_label_formatter(&|y| format!("{y}"))
        .draw()?;
    // The 1 ms line the goals refer to.
    chart.draw_series(LineSeries::new(
        [(0.0, 1.0), (max_rate * 1.05, 1.0)],
        BLACK.mix(0.35).stroke_width(1),
    ))?;
    for (i, (name, points)) in lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let data: Vec<(f64, f64)> = points
            .iter()
            .map(|p| (p.offered, p.p999_ms.max(0.05)))
            .collect();
        chart
            .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(data.iter().zip(points).map(|(&(x, y), p)| {
            // A hollow marker where the server returned errors at that rate.
            if p.errors > 0 {
                Circle::new((x, y), 4, color.stroke_width(2))
            } else {
                Circle::new((x, y), 3, color.filled())
            }
        }))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: percore-chart results.csv out-stem [font.ttf]".into());
    }
    let lines = read(&args[1])?;
    if lines.is_empty() {
        return Err(format!("{}: no data rows", args[1]).into());
    }
    let font = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".into());
    let bytes = std::fs::read(&font).map_err(|e| format!("font {font}: {e}"))?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
        .map_err(|_| format!("{font} is not a usable font"))?;
    let svg = format!("{}.svg", args[2]);
    let png = format!("{}.png", args[2]);
    draw(SVGBackend::new(&svg, (1000, 620)).into_drawing_area(), &lines)?;
    draw(BitMapBackend::new(&png, (1000, 620)).into_drawing_area(), &lines)?;
    println!("wrote {svg} and {png}");
    Ok(())
}
