//! Plot decode tok/s against threads from `vtc bench --json` output, with the
//! bandwidth ceiling of each series drawn in.
//!
//! ```sh
//! vtc bench --model M.tvl -t 1,2 -p 64 -n 128 --json > m.jsonl
//! cargo run --release -p vtc-cli --example plot_bench -- OUT.png m.jsonl [more.jsonl ...]
//! ```
//!
//! Every input line is one JSON object as `vtc bench --json` prints it; blank lines
//! are skipped and any malformed line is an error naming its file and line. Only the
//! rows of one decode test are drawn (`--test`, default `tg128`).
//!
//! - One series (solid line, one colour) per model file and backend, labelled by the
//!   model's file stem (with the backend appended when one model was run on several
//!   backends). x = threads, y = tok/s.
//! - Its bandwidth ceiling, dashed in the same colour, at each thread count:
//!   `max(bandwidth_gb_s, bandwidth_after_gb_s) * 1e9 / weight_bytes_per_token`, the
//!   same limit `vtc bench` reads `fraction_of_limit` against (the better of the read
//!   bandwidth probes run before and after the tests, with that many threads).
//! - A series measured more than once at a thread count (several files, or several
//!   runs in one file) keeps its fastest row, as `vtc bench` keeps the best repetition;
//!   that row's ceiling goes with it.
//!
//! Text is drawn with a TrueType font read at run time (no fontconfig or freetype):
//! `--font PATH`, or else the first of [`FONT_CANDIDATES`] that exists.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::path::{Path, PathBuf};

use clap::Parser;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use serde_json::Value;

/// Fonts tried in order when `--font` is not given (Debian/Ubuntu, Arch, Fedora, macOS).
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
];

/// Series colours (matplotlib's tab10, readable on white); [`Palette99`] after them.
const COLORS: &[(u8, u8, u8)] = &[
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// The colour of series `i`.
fn color(i: usize) -> RGBAColor {
    match COLORS.get(i) {
        Some(&(r, g, b)) => RGBColor(r, g, b).to_rgba(),
        None => Palette99::pick(i - COLORS.len()).to_rgba(),
    }
}

/// Image size in pixels.
const SIZE: (u32, u32) = (1200, 800);

#[derive(Parser)]
#[command(about = "Plot decode tok/s against threads from `vtc bench --json` lines")]
struct Args {
    /// The PNG to write.
    out: PathBuf,
    /// JSON-lines files printed by `vtc bench --json`.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The test whose rows are drawn.
    #[arg(long, default_value = "tg128")]
    test: String,
    /// A TrueType font for the text (default: DejaVu Sans from the usual places).
    #[arg(long)]
    font: Option<PathBuf>,
    /// The chart's title.
    #[arg(long, default_value = "VTC decode throughput against threads")]
    title: String,
}

/// The fields of one `vtc bench --json` line that the plot uses.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    model: String,
    threads: u32,
    test: String,
    backend: String,
    tok_s: f64,
    weight_bytes_per_token: f64,
    bandwidth_gb_s: f64,
    bandwidth_after_gb_s: Option<f64>,
}

impl Record {
    /// Tokens per second if every token's weights streamed at the measured bandwidth
    /// (the better of the two probes when both are present).
    fn ceiling_tok_s(&self) -> f64 {
        let bw = self
            .bandwidth_after_gb_s
            .map_or(self.bandwidth_gb_s, |after| after.max(self.bandwidth_gb_s));
        bw * 1e9 / self.weight_bytes_per_token
    }
}

/// One `vtc bench --json` line.
fn parse_line(line: &str) -> Result<Record, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let string = |k: &str| -> Result<String, String> {
        match obj.get(k) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("key {k:?} is not a string: {other}")),
            None => Err(format!("missing key {k:?}")),
        }
    };
    let number = |k: &str| -> Result<f64, String> {
        let x = match obj.get(k) {
            Some(v) => v
                .as_f64()
                .ok_or_else(|| format!("key {k:?} is not a number: {v}"))?,
            None => return Err(format!("missing key {k:?}")),
        };
        if x.is_finite() && x >= 0.0 {
            Ok(x)
        } else {
            Err(format!(
                "key {k:?} is not a finite non-negative number: {x}"
            ))
        }
    };
    let threads = match obj.get("threads") {
        Some(v) => v
            .as_u64()
            .and_then(|t| u32::try_from(t).ok())
            .filter(|&t| t >= 1)
            .ok_or_else(|| format!("key \"threads\" is not a thread count: {v}"))?,
        None => return Err("missing key \"threads\"".into()),
    };
    let weight_bytes_per_token = number("weight_bytes_per_token")?;
    if weight_bytes_per_token == 0.0 {
        return Err("key \"weight_bytes_per_token\" is 0".into());
    }
    let bandwidth_after_gb_s = match obj.get("bandwidth_after_gb_s") {
        None | Some(Value::Null) => None,
        Some(_) => Some(number("bandwidth_after_gb_s")?),
    };
    Ok(Record {
        model: string("model")?,
        threads,
        test: string("test")?,
        backend: string("backend")?,
        tok_s: number("tok_s")?,
        weight_bytes_per_token,
        bandwidth_gb_s: number("bandwidth_gb_s")?,
        bandwidth_after_gb_s,
    })
}

/// Every non-blank line of `text`; an error names `source` and the 1-based line.
fn parse_jsonl(source: &str, text: &str) -> Result<Vec<Record>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_line(l).map_err(|e| format!("{source}:{}: {e}", i + 1)))
        .collect()
}

/// One measurement of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    threads: u32,
    tok_s: f64,
    ceiling_tok_s: f64,
}

/// One model file on one backend, its points in increasing thread count.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    label: String,
    model: String,
    backend: String,
    points: Vec<Point>,
}

/// The file stem of a model path (the whole string if it has none).
fn stem(model: &str) -> String {
    Path::new(model)
        .file_stem()
        .map_or_else(|| model.to_string(), |s| s.to_string_lossy().into_owned())
}

/// The rows of `test` grouped into series by (model, backend), sorted by label; at a
/// thread count measured more than once the fastest row wins.
fn group(records: &[Record], test: &str) -> Vec<Series> {
    let mut by_key: BTreeMap<(&str, &str), BTreeMap<u32, Point>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.test == test) {
        let p = Point {
            threads: r.threads,
            tok_s: r.tok_s,
            ceiling_tok_s: r.ceiling_tok_s(),
        };
        let points = by_key.entry((&r.model, &r.backend)).or_default();
        let slot = points.entry(r.threads).or_insert(p);
        if p.tok_s > slot.tok_s {
            *slot = p;
        }
    }
    // Label by file stem; the whole path where two model files share a stem; the
    // backend too where one model ran on several.
    let mut models_per_stem: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    let mut backends_per_model: BTreeMap<&str, usize> = BTreeMap::new();
    for &(model, _) in by_key.keys() {
        models_per_stem
            .entry(stem(model))
            .or_default()
            .insert(model);
        *backends_per_model.entry(model).or_default() += 1;
    }
    let mut series: Vec<Series> = by_key
        .into_iter()
        .map(|((model, backend), points)| {
            let s = stem(model);
            let mut label = if models_per_stem[&s].len() > 1 {
                model.to_string()
            } else {
                s
            };
            if backends_per_model[model] > 1 {
                label = format!("{label} ({backend})");
            }
            Series {
                label,
                model: model.to_string(),
                backend: backend.to_string(),
                points: points.into_values().collect(),
            }
        })
        .collect();
    series.sort_by(|a, b| a.label.cmp(&b.label));
    series
}

/// Register the TrueType font at `path` as plotters' sans-serif family.
fn register_font(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("font {}: {e}", path.display()))?;
    // plotters keeps fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| format!("font {}: not a TrueType/OpenType font", path.display()))
}

/// `--font`, or the first of [`FONT_CANDIDATES`] that exists.
fn find_font(arg: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = arg {
        return Ok(p.to_path_buf());
    }
    FONT_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "no font found (tried {}); pass --font PATH to a .ttf file",
                FONT_CANDIDATES.join(", ")
            )
        })
}

/// Draw `series` into a PNG at `out` (a font must be registered).
fn render(out: &Path, series: &[Series], test: &str, title: &str) -> Result<(), Box<dyn Error>> {
    let threads: BTreeSet<u32> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.threads))
        .collect();
    let (Some(&lo), Some(&hi)) = (threads.first(), threads.last()) else {
        return Err("nothing to plot".into());
    };
    let y_max = series
        .iter()
        .flat_map(|s| &s.points)
        .map(|p| p.tok_s.max(p.ceiling_tok_s))
        .fold(0.0f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.08 } else { 1.0 };
    let x_range = (f64::from(lo) - 0.3)..(f64::from(hi) + 0.3);
    // At most one tick per integer: plotters picks steps of 1, 2, 5, 10, ...
    let x_ticks = ((hi - lo) as usize + 1).min(12);

    let root = BitMapBackend::new(out, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 30))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("threads")
        .y_desc(format!("decode tok/s ({test})"))
        .x_labels(x_ticks)
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-6 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{y:.0}"))
        .axis_desc_style(("sans-serif", 20))
        .label_style(("sans-serif", 16))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;

    for (i, s) in series.iter().enumerate() {
        let color = color(i);
        let measured: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|p| (f64::from(p.threads), p.tok_s))
            .collect();
        let ceiling: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|p| (f64::from(p.threads), p.ceiling_tok_s))
            .collect();
        chart
            .draw_series(LineSeries::new(measured.clone(), color.stroke_width(3)))?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], color.stroke_width(3)));
        chart.draw_series(
            measured
                .iter()
                .map(|&xy| Circle::new(xy, 5, color.filled())),
        )?;
        chart.draw_series(DashedLineSeries::new(
            ceiling.clone(),
            10,
            6,
            color.stroke_width(2),
        ))?;
        chart.draw_series(
            ceiling
                .iter()
                .map(|&xy| Cross::new(xy, 5, color.stroke_width(2))),
        )?;
    }
    // One legend entry explains every dashed line.
    chart
        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
        .label("dashed: bandwidth limit")
        .legend(|(x, y)| {
            DashedPathElement::new([(x, y), (x + 24, y)], 6, 4, BLACK.stroke_width(2))
        });
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    let mut records = Vec::new();
    for f in &args.files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        records.extend(parse_jsonl(&f.display().to_string(), &text)?);
    }
    let series = group(&records, &args.test);
    if series.is_empty() {
        let tests: BTreeSet<&str> = records.iter().map(|r| r.test.as_str()).collect();
        return Err(format!(
            "no {:?} rows in the input (tests present: {})",
            args.test,
            tests.into_iter().collect::<Vec<_>>().join(", ")
        )
        .into());
    }
    register_font(&find_font(args.font.as_deref())?)?;
    render(&args.out, &series, &args.test, &args.title)
        .map_err(|e| format!("{}: {e}", args.out.display()))?;
    for s in &series {
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|p| {
                format!(
                    "{}t {:.1} tok/s (limit {:.1})",
                    p.threads, p.tok_s, p.ceiling_tok_s
                )
            })
            .collect();
        eprintln!("{} [{}]: {}", s.model, s.backend, pts.join(", "));
    }
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("plot_bench: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `vtc bench --json` line (fields the plot ignores included).
    fn line(model: &str, backend: &str, test: &str, threads: u32, tok_s: f64, bw: f64) -> String {
        format!(
            r#"{{"model":"{model}","threads":{threads},"test":"{test}","backend":"{backend}","tok_s":{tok_s},"median_step_ms":1.0,"max_step_ms":2.0,"weight_bytes_per_token":100000000,"bandwidth_gb_s":{bw},"bandwidth_after_gb_s":{bw},"limit_tok_s":1.0,"fraction_of_limit":0.5,"load_ms":1.0,"first_token_ms":1.0}}"#
        )
    }

    /// The arguments of one [`line`]: model, backend, test, threads, tok/s, bandwidth.
    type Row<'a> = (&'a str, &'a str, &'a str, u32, f64, f64);

    /// A JSONL text of one [`line`] per row.
    fn jsonl(rows: &[Row]) -> String {
        rows.iter()
            .map(|&(model, backend, test, threads, tok_s, bw)| {
                line(model, backend, test, threads, tok_s, bw)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The `tg128` series of the rows.
    fn tg128(rows: &[Row]) -> Vec<Series> {
        group(&parse_jsonl("rows.jsonl", &jsonl(rows)).unwrap(), "tg128")
    }

    #[test]
    fn groups_series_per_model_and_keeps_the_test_asked_for() {
        // A blank line between the two models.
        let text = format!(
            "{}\n\n{}",
            jsonl(&[
                ("/m/smollm2.q4_1.tvl", "avx2", "tg128", 2, 115.0, 20.0),
                ("/m/smollm2.q4_1.tvl", "avx2", "pp64", 1, 90.0, 15.0),
                ("/m/smollm2.q4_1.tvl", "avx2", "tg128", 1, 76.0, 15.0),
            ]),
            jsonl(&[
                ("/m/s110.tvl", "avx2", "tg128", 1, 35.0, 15.0),
                ("/m/s110.tvl", "avx2", "tg128", 2, 49.0, 22.0),
            ])
        );
        let records = parse_jsonl("a.jsonl", &text).unwrap();
        assert_eq!(records.len(), 5);
        let series = group(&records, "tg128");
        let labels: Vec<&str> = series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["s110", "smollm2.q4_1"]);
        let threads: Vec<u32> = series[1].points.iter().map(|p| p.threads).collect();
        assert_eq!(threads, [1, 2], "sorted by threads");
        assert_eq!(series[1].points[0].tok_s, 76.0);
        assert_eq!(series[1].points[1].tok_s, 115.0);
        // 20 GB/s over 100 MB per token.
        assert!((series[1].points[1].ceiling_tok_s - 200.0).abs() < 1e-9);
        assert!((series[0].points[1].ceiling_tok_s - 220.0).abs() < 1e-9);
        assert!(group(&records, "tg256").is_empty());
        assert_eq!(group(&records, "pp64")[0].points[0].tok_s, 90.0);
    }

    #[test]
    fn ceiling_uses_the_better_probe_and_falls_back_to_the_first() {
        let base = r#""model":"m","threads":2,"test":"tg128","backend":"avx2","tok_s":50,"weight_bytes_per_token":438000000,"bandwidth_gb_s":21.9"#;
        let r = parse_line(&format!("{{{base}}}")).unwrap();
        assert_eq!(r.bandwidth_after_gb_s, None);
        assert!((r.ceiling_tok_s() - 50.0).abs() < 1e-9);
        let r = parse_line(&format!("{{{base},\"bandwidth_after_gb_s\":26.28}}")).unwrap();
        assert!((r.ceiling_tok_s() - 60.0).abs() < 1e-9);
        let r = parse_line(&format!("{{{base},\"bandwidth_after_gb_s\":10.0}}")).unwrap();
        assert!((r.ceiling_tok_s() - 50.0).abs() < 1e-9);
    }

    #[test]
    fn duplicates_keep_the_fastest_row_and_its_ceiling() {
        let series = tg128(&[
            ("/a/m.tvl", "avx2", "tg128", 1, 70.0, 30.0),
            ("/a/m.tvl", "avx2", "tg128", 1, 80.0, 10.0),
            ("/a/m.tvl", "avx2", "tg128", 1, 75.0, 40.0),
        ]);
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].points.len(), 1);
        let p = series[0].points[0];
        assert_eq!(p.tok_s, 80.0);
        assert!((p.ceiling_tok_s - 100.0).abs() < 1e-9);
    }

    #[test]
    fn labels_disambiguate_shared_stems_and_backends() {
        let series = tg128(&[
            ("/a/m.tvl", "avx2", "tg128", 1, 1.0, 1.0),
            ("/b/m.tvl", "avx2", "tg128", 1, 1.0, 1.0),
            ("/c/n.tvl", "avx2", "tg128", 1, 1.0, 1.0),
            ("/c/n.tvl", "scalar", "tg128", 1, 1.0, 1.0),
        ]);
        let labels: Vec<&str> = series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["/a/m.tvl", "/b/m.tvl", "n (avx2)", "n (scalar)"]);
    }

    #[test]
    fn malformed_lines_name_the_file_and_line() {
        let good = line("m", "avx2", "tg128", 1, 1.0, 1.0);
        let cases = [
            ("{not json", "not JSON"),
            ("[1, 2]", "not a JSON object"),
            (r#"{"threads":1}"#, "missing key"),
            (
                &good.replace("\"threads\":1", "\"threads\":0"),
                "thread count",
            ),
            (
                &good.replace("\"threads\":1", "\"threads\":1.5"),
                "thread count",
            ),
            (
                &good.replace("\"tok_s\":1", "\"tok_s\":\"fast\""),
                "not a number",
            ),
            (&good.replace("\"tok_s\":1", "\"tok_s\":-1"), "non-negative"),
            (
                &good.replace("\"model\":\"m\"", "\"model\":3"),
                "not a string",
            ),
            (
                &good.replace(
                    "\"weight_bytes_per_token\":100000000",
                    "\"weight_bytes_per_token\":0",
                ),
                "is 0",
            ),
        ];
        for (bad, why) in cases {
            let text = format!("{good}\n\n{bad}\n{good}\n");
            let e = parse_jsonl("runs/x.jsonl", &text).unwrap_err();
            assert!(e.starts_with("runs/x.jsonl:3: "), "{e}");
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn renders_a_png() {
        // Needs a DejaVu Sans (Debian: fonts-dejavu-core, which .ci/run installs).
        let font = find_font(None).expect("a system font to draw with");
        register_font(&font).unwrap();
        let series = tg128(&[
            ("/m/q4.tvl", "avx2", "tg128", 1, 76.0, 15.0),
            ("/m/q4.tvl", "avx2", "tg128", 2, 115.0, 22.0),
            ("/m/f32.tvl", "avx2", "tg128", 1, 23.0, 15.0),
            ("/m/f32.tvl", "avx2", "tg128", 2, 36.0, 22.0),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("plot.png");
        render(&out, &series, "tg128", "test").unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        assert!(render(&out, &[], "tg128", "test").is_err());
    }
}
