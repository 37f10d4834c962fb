//! Loss curves as a PNG (plotters, with an embedded font so no system fonts are needed).

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::run_dir::{write_atomically, MetricsRow, RunDirError};

static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans-subset.ttf");
static REGISTER: Once = Once::new();

/// Errors while drawing a plot.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// plotters failed to draw.
    #[error("drawing {path}: {message}")]
    Draw {
        /// The plot file.
        path: std::path::PathBuf,
        /// plotters' message.
        message: String,
    },
    /// Writing the file failed.
    #[error(transparent)]
    Write(#[from] RunDirError),
}

/// Exponential moving average, to show the trend under noisy per-step values.
pub fn smooth(values: &[f32], alpha: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(values.len());
    let mut acc = None;
    for &v in values {
        let next = match acc {
            None => v,
            Some(a) => a + alpha * (v - a),
        };
        acc = Some(next);
        out.push(next);
    }
    out
}

/// One curve of a panel: its legend name, values per step, and colour.
type Curve = (&'static str, Vec<f32>, RGBColor);

/// One panel of the figure.
struct Panel<'a> {
    caption: Option<&'a str>,
    y_desc: &'a str,
    x_desc: Option<&'a str>,
    y_max: f64,
    curves: Vec<Curve>,
}

/// Labels on the step axis: at most 10, and no more than the whole steps the axis spans,
/// so that a short run's labels stay one step or more apart (with plotters' default of
/// 10 on an axis of 3 steps, the half steps were printed as "2, 2, 2").
fn step_labels(x_min: f64, x_max: f64) -> usize {
    ((x_max - x_min).floor() as usize + 1).clamp(2, 10)
}

/// Draws one panel: faint raw values, bold moving averages, a legend.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    steps: &[f64],
    panel: Panel<'_>,
) -> Result<(), String> {
    let x_max = steps.last().copied().unwrap_or(1.0).max(1.0);
    let x_min = steps.first().copied().unwrap_or(0.0).min(x_max - 1.0);
    let alpha = (10.0 / steps.len().max(10) as f32).clamp(0.01, 0.3);
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let mut builder = ChartBuilder::on(area);
    builder
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(50);
    if let Some(caption) = panel.caption {
        builder.caption(caption, ("sans-serif", 22));
    }
    let mut chart = builder
        .build_cartesian_2d(x_min..x_max, 0.0..panel.y_max)
        .map_err(|e| err(&e))?;
    let mut mesh = chart.configure_mesh();
    mesh.y_desc(panel.y_desc)
        .x_labels(step_labels(x_min, x_max))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .light_line_style(WHITE);
    if let Some(x_desc) = panel.x_desc {
        mesh.x_desc(x_desc);
    }
    mesh.draw().map_err(|e| err(&e))?;
    for (name, values, color) in panel.curves {
        let raw = steps.iter().zip(&values).map(|(x, y)| (*x, *y as f64));
        chart
            .draw_series(LineSeries::new(raw, color.mix(0.2)))
            .map_err(|e| err(&e))?;
        let trend = steps
            .iter()
            .zip(smooth(&values, alpha))
            .map(|(x, y)| (*x, y as f64));
        chart
            .draw_series(LineSeries::new(trend, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    Ok(())
}

/// Draws losses (top) and D(x) / D(G(z)) (bottom) against the step, to `path` (PNG,
/// written atomically). Raw values are faint; the bold lines are moving averages.
pub fn plot_losses(rows: &[MetricsRow], path: &Path, title: &str) -> Result<(), PlotError> {
    REGISTER.call_once(|| {
        // The font is compiled in; registering it cannot fail unless the file is damaged.
        let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    });
    let (w, h) = (1000u32, 700u32);
    let mut buffer = vec![0u8; (w * h * 3) as usize];
    let draw_err = |message: String| PlotError::Draw {
        path: path.to_path_buf(),
        message,
    };
    let column = |f: fn(&MetricsRow) -> f32| rows.iter().map(f).collect::<Vec<f32>>();
    let steps: Vec<f64> = rows.iter().map(|r| r.step as f64).collect();
    let losses: Vec<Curve> = vec![
        ("d_loss", column(|r| r.d_loss), RGBColor(200, 60, 40)),
        ("g_loss", column(|r| r.g_loss), RGBColor(40, 90, 200)),
    ];
    let loss_max = losses
        .iter()
        .flat_map(|(_, v, _)| v.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0f32, f32::max);
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(e.to_string()))?;
        let (top, bottom) = root.split_vertically(430);
        let top_panel = Panel {
            caption: Some(title),
            y_desc: "loss",
            x_desc: None,
            y_max: (loss_max as f64 * 1.05).max(0.1),
            curves: losses,
        };
        draw_panel(&top, &steps, top_panel).map_err(draw_err)?;
        let bottom_panel = Panel {
            caption: None,
            y_desc: "discriminator output",
            x_desc: Some("step"),
            y_max: 1.0,
            curves: vec![
                ("D(x)", column(|r| r.d_real), RGBColor(30, 150, 80)),
                ("D(G(z))", column(|r| r.d_fake), RGBColor(150, 60, 170)),
            ],
        };
        draw_panel(&bottom, &steps, bottom_panel).map_err(draw_err)?;
        root.present().map_err(|e| draw_err(e.to_string()))?;
    }
    let image = image::RgbImage::from_raw(w, h, buffer).expect("buffer has w·h·3 bytes");
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| draw_err(e.to_string()))?;
    write_atomically(path, &png)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_labels_never_fall_between_whole_steps() {
        assert_eq!(step_labels(1.0, 4.0), 4, "steps 1 to 4: one label a step");
        assert_eq!(step_labels(0.0, 1.0), 2);
        assert_eq!(step_labels(1.0, 5_000.0), 10, "long runs keep plotters' 10");
    }

    #[test]
    fn smoothing_follows_the_trend() {
        assert_eq!(smooth(&[1.0, 1.0, 1.0], 0.5), vec![1.0, 1.0, 1.0]);
        assert_eq!(smooth(&[0.0, 2.0], 0.5), vec![0.0, 1.0]);
        assert!(smooth(&[], 0.5).is_empty());
    }

    #[test]
    fn plot_writes_a_png_with_curves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.png");
        let rows: Vec<MetricsRow> = (1..=50)
            .map(|s| MetricsRow {
                step: s,
                epoch: 1,
                d_loss: 1.4 - s as f32 * 0.01,
                g_loss: 0.7 + s as f32 * 0.02,
                d_real: 0.6,
                d_fake: 0.3,
                img_per_s: 10.0,
                fid: None,
            })
            .collect();
        plot_losses(&rows, &path, "test run").unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (1000, 700));
        // Some pixels carry the d_loss colour (drawn curve), not just white and grid.
        let red = img
            .pixels()
            .filter(|p| p.0[0] > 150 && p.0[1] < 100 && p.0[2] < 80)
            .count();
        assert!(red > 100, "only {red} reddish pixels");
        // An empty log still draws (axes only) rather than failing.
        plot_losses(&[], &path, "empty").unwrap();
    }
}
