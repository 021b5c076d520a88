//! PNG figures of a run (plotters, bitmap backend): the loss curve and predicted-vs-true
//! trajectories, and grouped bars. Text is drawn with a font embedded in the binary (or the file
//! named by `SGDD_FONT`), so figures never depend on the fonts a machine has installed.

use std::path::Path;

use anyhow::{Result, anyhow, ensure};
use plotters::prelude::*;

mod font;

use font::{FAMILY, ensure_font};

/// `(min, max)` of some values.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)))
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting failed: {e:?}")
}

/// A series of (x, y) points with a legend label.
#[derive(Debug, Clone)]
pub struct Series<'a> {
    /// Legend text.
    pub label: &'a str,
    /// The points, in order.
    pub points: Vec<(f64, f64)>,
}

/// Loss curves on a logarithmic y axis (non-positive values are skipped).
pub fn loss_curve(path: &Path, title: &str, x_label: &str, series: &[Series<'_>]) -> Result<()> {
    ensure_font()?;
    let pts = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| p.1 > 0.0 && p.1.is_finite())
    };
    ensure!(
        pts().next().is_some(),
        "nothing to plot in {}",
        path.display()
    );
    let (x0, x1) = range(pts().map(|p| p.0));
    let (y0, y1) = range(pts().map(|p| p.1));
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, (y0 * 0.8..y1 * 1.25).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("loss")
        .y_label_formatter(&|v| format!("{v:.1e}"))
        .draw()
        .map_err(plot_err)?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<_> = s
            .points
            .iter()
            .copied()
            .filter(|p| p.1 > 0.0 && p.1.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(plot_err)?
            .label(s.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)
}

/// Predicted vs true trajectories of one sample, projected on the x–y plane: the true path of
/// each node as a solid line from its start (a dot), the prediction dashed in the same colour.
///
/// `start`: `N` points; `truth`, `pred`: `T` frames of `N` points.
pub fn trajectories(
    path: &Path,
    title: &str,
    start: &[[f64; 3]],
    truth: &[Vec<[f64; 3]>],
    pred: &[Vec<[f64; 3]>],
) -> Result<()> {
    ensure_font()?;
    let n = start.len();
    ensure!(
        truth.len() == pred.len() && truth.iter().chain(pred).all(|f| f.len() == n),
        "trajectory plot: frames disagree on the node count"
    );
    let all = || {
        start
            .iter()
            .chain(truth.iter().flatten())
            .chain(pred.iter().flatten())
    };
    let (xa, xb) = range(all().map(|p| p[0]));
    let (ya, yb) = range(all().map(|p| p[1]));
    let pad = 0.05 * (xb - xa).max(yb - ya).max(1e-9);
    let root = BitMapBackend::new(path, (760, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(xa - pad..xb + pad, ya - pad..yb + pad)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("x")
        .y_desc("y")
        .draw()
        .map_err(plot_err)?;
    let shown = n.min(40);
    for node in 0..shown {
        let color = Palette99::pick(node).to_rgba();
        let line = |frames: &[Vec<[f64; 3]>]| -> Vec<(f64, f64)> {
            std::iter::once((start[node][0], start[node][1]))
                .chain(frames.iter().map(|f| (f[node][0], f[node][1])))
                .collect()
        };
        let truth_line = line(truth);
        chart
            .draw_series(LineSeries::new(truth_line, color.stroke_width(2)))
            .map_err(plot_err)?;
        let pred_line = line(pred);
        chart
            .draw_series(
                pred_line
                    .windows(2)
                    .step_by(1)
                    .enumerate()
                    .filter(|(i, _)| i % 2 == 0)
                    .map(|(_, w)| PathElement::new(vec![w[0], w[1]], color.stroke_width(1))),
            )
            .map_err(plot_err)?;
        chart
            .draw_series(
                pred_line
                    .iter()
                    .skip(1)
                    .map(|&p| Cross::new(p, 4, color.stroke_width(1))),
            )
            .map_err(plot_err)?;
        chart
            .draw_series(std::iter::once(Circle::new(
                (start[node][0], start[node][1]),
                4,
                color.filled(),
            )))
            .map_err(plot_err)?;
    }
    root.present().map_err(plot_err)
}

/// One group member of a grouped bar chart.
#[derive(Debug, Clone)]
pub struct Bars<'a> {
    /// Legend text.
    pub label: &'a str,
    /// One value per category.
    pub values: Vec<f64>,
}

/// A grouped bar chart: one group per category, one bar per series.
pub fn grouped_bars(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    categories: &[String],
    series: &[Bars<'_>],
) -> Result<()> {
    ensure_font()?;
    ensure!(
        !categories.is_empty() && !series.is_empty(),
        "nothing to plot in {}",
        path.display()
    );
    ensure!(
        series.iter().all(|s| s.values.len() == categories.len()),
        "every series needs one value per category"
    );
    let y_max = series
        .iter()
        .flat_map(|s| s.values.iter())
        .copied()
        .fold(0.0, f64::max)
        .max(1e-300);
    let root = BitMapBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let n_cat = categories.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..n_cat as f64, 0.0..y_max * 1.1)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n_cat + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.26 && i < categories.len() {
                categories[i].clone()
            } else {
                String::new()
            }
        })
        .x_desc(x_label)
        .y_desc(y_label)
        .y_label_formatter(&|v| format!("{v:.2e}"))
        .draw()
        .map_err(plot_err)?;
    // category names under the groups, in pixel space
    let style = TextStyle::from((FAMILY, 15)).pos(plotters::style::text_anchor::Pos::new(
        plotters::style::text_anchor::HPos::Center,
        plotters::style::text_anchor::VPos::Top,
    ));
    for (i, c) in categories.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        root.draw(&Text::new(c.clone(), (px, py + 6), style.clone()))
            .map_err(plot_err)?;
    }
    let width = 0.8 / series.len() as f64;
    for (k, s) in series.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        chart
            .draw_series(s.values.iter().enumerate().map(|(i, &v)| {
                let x0 = i as f64 + 0.1 + k as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, v)], color.filled())
            }))
            .map_err(plot_err)?
            .label(s.label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_png_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("loss.png");
        let s = [
            Series {
                label: "train",
                points: (1..20).map(|i| (i as f64, 1.0 / i as f64)).collect(),
            },
            Series {
                label: "val",
                points: vec![(5.0, 0.3), (10.0, 0.2), (15.0, 0.0)],
            },
        ];
        loss_curve(&p, "loss", "epoch", &s).unwrap();
        assert!(std::fs::metadata(&p).unwrap().len() > 1000);

        let start = vec![[0.0, 0.0, 0.0], [1.0, 1.0, 0.0]];
        let truth: Vec<Vec<[f64; 3]>> = (1..5)
            .map(|t| vec![[t as f64, 0.0, 0.0], [1.0, 1.0 + t as f64, 0.0]])
            .collect();
        let pred: Vec<Vec<[f64; 3]>> = (1..5)
            .map(|t| vec![[t as f64, 0.1, 0.0], [1.1, 1.0 + t as f64, 0.0]])
            .collect();
        let p = dir.path().join("traj.png");
        trajectories(&p, "sample 0", &start, &truth, &pred).unwrap();
        assert!(std::fs::metadata(&p).unwrap().len() > 1000);

        let p = dir.path().join("bars.png");
        let cats = vec!["low".to_owned(), "high".to_owned()];
        let bars = [
            Bars {
                label: "a",
                values: vec![1.0, 2.0],
            },
            Bars {
                label: "b",
                values: vec![0.5, 0.1],
            },
        ];
        grouped_bars(&p, "bands", "band", "energy", &cats, &bars).unwrap();
        assert!(std::fs::metadata(&p).unwrap().len() > 1000);
        assert!(
            grouped_bars(
                &p,
                "x",
                "x",
                "y",
                &cats,
                &bars[..1]
                    .iter()
                    .map(|b| Bars {
                        values: vec![1.0],
                        ..b.clone()
                    })
                    .collect::<Vec<_>>()
            )
            .is_err()
        );
    }

    #[test]
    fn empty_input_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = loss_curve(&dir.path().join("x.png"), "t", "x", &[]).unwrap_err();
        assert!(err.to_string().contains("nothing to plot"));
    }
}
