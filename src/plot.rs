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

/// Draws losses (top) and D(x) / D(G(z)) (bottom) against the step, to `path` (PNG,
/// written atomically). Raw values are faint; the bold lines are moving averages.
pub fn plot_losses(rows: &[MetricsRow], path: &Path, title: &str) -> Result<(), PlotError> {
    REGISTER.call_once(|| {
        // The font is compiled in; registering it cannot fail unless the file is damaged.
        let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    });
    let (w, h) = (1000u32, 700u32);
    let mut buffer = vec![0u8; (w * h * 3) as usize];
    let draw_err = |e: &dyn std::fmt::Display| PlotError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(&e))?;
        let (top, bottom) = root.split_vertically(430);
        let steps: Vec<f64> = rows.iter().map(|r| r.step as f64).collect();
        let x_max = steps.last().copied().unwrap_or(1.0).max(1.0);
        let x_min = steps.first().copied().unwrap_or(0.0).min(x_max - 1.0);
        let alpha = (10.0 / rows.len().max(10) as f32).clamp(0.01, 0.3);

        let series = [
            (
                "d_loss",
                rows.iter().map(|r| r.d_loss).collect::<Vec<_>>(),
                RGBColor(200, 60, 40),
            ),
            (
                "g_loss",
                rows.iter().map(|r| r.g_loss).collect::<Vec<_>>(),
                RGBColor(40, 90, 200),
            ),
        ];
        let finite_max = series
            .iter()
            .flat_map(|(_, v, _)| v.iter().copied())
            .filter(|v| v.is_finite())
            .fold(0.0f32, f32::max);
        let y_max = (finite_max as f64 * 1.05).max(0.1);
        let mut chart = ChartBuilder::on(&top)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(x_min..x_max, 0.0..y_max)
            .map_err(|e| draw_err(&e))?;
        chart
            .configure_mesh()
            .y_desc("loss")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| draw_err(&e))?;
        for (name, values, color) in &series {
            let faint = color.mix(0.2);
            chart
                .draw_series(LineSeries::new(
                    steps.iter().zip(values).map(|(x, y)| (*x, *y as f64)),
                    faint,
                ))
                .map_err(|e| draw_err(&e))?;
            let c = *color;
            chart
                .draw_series(LineSeries::new(
                    steps
                        .iter()
                        .zip(smooth(values, alpha))
                        .map(|(x, y)| (*x, y as f64)),
                    c.stroke_width(2),
                ))
                .map_err(|e| draw_err(&e))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| draw_err(&e))?;

        let mut chart = ChartBuilder::on(&bottom)
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(x_min..x_max, 0.0..1.0)
            .map_err(|e| draw_err(&e))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("discriminator output")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| draw_err(&e))?;
        let outputs = [
            (
                "D(x)",
                rows.iter().map(|r| r.d_real).collect::<Vec<_>>(),
                RGBColor(30, 150, 80),
            ),
            (
                "D(G(z))",
                rows.iter().map(|r| r.d_fake).collect::<Vec<_>>(),
                RGBColor(150, 60, 170),
            ),
        ];
        for (name, values, color) in &outputs {
            let c = *color;
            chart
                .draw_series(LineSeries::new(
                    steps.iter().zip(values).map(|(x, y)| (*x, *y as f64)),
                    c.mix(0.2),
                ))
                .map_err(|e| draw_err(&e))?;
            chart
                .draw_series(LineSeries::new(
                    steps
                        .iter()
                        .zip(smooth(values, alpha))
                        .map(|(x, y)| (*x, y as f64)),
                    c.stroke_width(2),
                ))
                .map_err(|e| draw_err(&e))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| draw_err(&e))?;
        root.present().map_err(|e| draw_err(&e))?;
    }
    let image = image::RgbImage::from_raw(w, h, buffer).expect("buffer has w·h·3 bytes");
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| draw_err(&e))?;
    write_atomically(path, &png)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
