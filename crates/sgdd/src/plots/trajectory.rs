//! Predicted vs true 3-D trajectories as three orthogonal projections at one common scale.

use std::ops::Range;
use std::path::Path;

use anyhow::{Result, ensure};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{Drawn, FAMILY, canvas, colour, range, tick_label};

/// The projections drawn side by side: (horizontal axis, vertical axis).
const PLANES: [(usize, usize); 3] = [(0, 1), (0, 2), (1, 2)];

/// Axis names by coordinate index.
const AXES: [&str; 3] = ["x", "y", "z"];

/// At most this many nodes are drawn (colours repeat beyond the palette's seven anyway).
const MAX_NODES: usize = 40;

/// One projection panel.
type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A panel's chart with fixed margins and label areas, so its plotting area has the same size
/// whatever the ranges.
fn panel_chart<'a, 'b>(
    path: &Path,
    area: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    x: Range<f64>,
    y: Range<f64>,
) -> Result<Chart<'a, 'b>> {
    ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x, y)
        .at(path)
}

/// Axis ranges of the [`PLANES`] panels at one common scale: the same number of data units per
/// pixel on both axes of every panel (so a unit is equally long everywhere and circles stay
/// round), the smallest scale that shows `lo..hi` on every axis with a 5 % margin, each panel
/// centred on its data. `pixels`: each panel's plotting-area size.
fn equal_scale(
    lo: [f64; 3],
    hi: [f64; 3],
    pixels: [(u32, u32); 3],
) -> [(Range<f64>, Range<f64>); 3] {
    let mut per_pixel = 0.0f64;
    for (&(a, b), &(w, h)) in PLANES.iter().zip(&pixels) {
        per_pixel = per_pixel
            .max((hi[a] - lo[a]) / f64::from(w.max(1)))
            .max((hi[b] - lo[b]) / f64::from(h.max(1)));
    }
    let per_pixel = if per_pixel > 0.0 {
        per_pixel * 1.1
    } else {
        // every point in one place: one unit across the smallest side
        let side = pixels.iter().map(|&(w, h)| w.min(h)).min().unwrap_or(1);
        1.0 / f64::from(side.max(1))
    };
    let around = |axis: usize, px: u32| {
        let centre = 0.5 * (lo[axis] + hi[axis]);
        let half = 0.5 * per_pixel * f64::from(px.max(1));
        centre - half..centre + half
    };
    std::array::from_fn(|p| {
        let ((a, b), (w, h)) = (PLANES[p], pixels[p]);
        (around(a, w), around(b, h))
    })
}

/// Predicted vs true trajectories of one sample, as three orthogonal projections side by side
/// (x–y, x–z, y–z) at one common scale with equal axes, so lengths and angles compare across
/// axes and panels. Each node has its colour: the true path is solid from the node's start (a
/// dot), the prediction dashed with a × at each predicted frame; a legend under the panels says
/// so. At most 40 nodes are drawn.
///
/// `start`: `N` points; `truth`, `pred`: `T` frames of `N` points.
///
/// # Errors
/// Frames that disagree on `N`, `truth` and `pred` of different lengths, no node, non-finite
/// coordinates, or the file cannot be drawn or written (the error names `path`).
pub fn trajectories(
    path: &Path,
    title: &str,
    start: &[[f64; 3]],
    truth: &[Vec<[f64; 3]>],
    pred: &[Vec<[f64; 3]>],
) -> Result<()> {
    let n = start.len();
    ensure!(
        truth.len() == pred.len() && truth.iter().chain(pred).all(|f| f.len() == n),
        "trajectory plot {}: frames disagree on the node count or truth and prediction on the \
         frame count",
        path.display()
    );
    ensure!(n > 0, "nothing to plot in {}", path.display());
    let shown = n.min(MAX_NODES);
    let all = || {
        let frames = truth.iter().chain(pred);
        start[..shown]
            .iter()
            .chain(frames.flat_map(|f| &f[..shown]))
    };
    ensure!(
        all().flatten().all(|c| c.is_finite()),
        "trajectory plot {}: non-finite coordinates",
        path.display()
    );
    let (mut lo, mut hi) = ([0.0; 3], [0.0; 3]);
    for axis in 0..3 {
        (lo[axis], hi[axis]) = range(all().map(|p| p[axis]));
    }

    let root = canvas(path, (1500, 620))?;
    let body = root
        .margin(8, 0, 0, 0)
        .titled(title, (FAMILY, 22))
        .at(path)?;
    let (height, legend_height) = (body.dim_in_pixel().1, 44);
    let (panels, legend) = body.split_vertically(height.saturating_sub(legend_height));
    let areas = panels
        .split_evenly((1, 3))
        .iter()
        .zip(PLANES)
        .map(|(area, (a, b))| {
            let name = format!("{}–{} projection", AXES[a], AXES[b]);
            area.titled(&name, (FAMILY, 18)).at(path)
        })
        .collect::<Result<Vec<_>>>()?;
    // the plotting areas' sizes do not depend on the ranges: measure them with placeholders
    let mut pixels = [(1, 1); 3];
    for (px, area) in pixels.iter_mut().zip(&areas) {
        *px = panel_chart(path, area, 0.0..1.0, 0.0..1.0)?
            .plotting_area()
            .dim_in_pixel();
    }
    let ticks = |v: &f64| tick_label(*v);
    for ((area, (x, y)), (a, b)) in areas.iter().zip(equal_scale(lo, hi, pixels)).zip(PLANES) {
        let mut chart = panel_chart(path, area, x, y)?;
        chart
            .configure_mesh()
            .x_desc(AXES[a])
            .y_desc(AXES[b])
            .x_label_formatter(&ticks)
            .y_label_formatter(&ticks)
            .axis_desc_style((FAMILY, 16))
            .light_line_style(BLACK.mix(0.04))
            .draw()
            .at(path)?;
        for node in 0..shown {
            let c = colour(node);
            let s = (start[node][a], start[node][b]);
            let line = |frames: &[Vec<[f64; 3]>]| -> Vec<(f64, f64)> {
                std::iter::once(s)
                    .chain(frames.iter().map(|f| (f[node][a], f[node][b])))
                    .collect()
            };
            let predicted = line(pred);
            chart
                .draw_series(LineSeries::new(line(truth), c.stroke_width(2)))
                .at(path)?;
            chart
                .draw_series(DashedLineSeries::new(
                    predicted.clone(),
                    6,
                    4,
                    c.stroke_width(1),
                ))
                .at(path)?;
            chart
                .draw_series(
                    predicted[1..]
                        .iter()
                        .map(|&p| Cross::new(p, 3, c.stroke_width(1))),
                )
                .at(path)?;
            chart
                .draw_series([
                    Circle::new(s, 5, c.filled()),
                    Circle::new(s, 5, BLACK.stroke_width(1)),
                ])
                .at(path)?;
        }
    }
    draw_key(path, &legend, n, shown)?;
    root.present().at(path)
}

/// The key under the panels: line styles, the start marker, and what the colours mean.
fn draw_key(
    path: &Path,
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    n: usize,
    shown: usize,
) -> Result<()> {
    let y = 18;
    let text = TextStyle::from((FAMILY, 16)).pos(Pos::new(HPos::Left, VPos::Center));
    let mut x = 60;
    // a label after its 30-pixel sample, then a gap before the next sample
    let label = |x: &mut i32, s: &str| -> Result<()> {
        area.draw(&Text::new(s.to_owned(), (*x + 38, y), text.clone()))
            .at(path)?;
        let (width, _) = area.estimate_text_size(s, &text).at(path)?;
        *x += 38 + width as i32 + 36;
        Ok(())
    };
    area.draw(&PathElement::new(
        vec![(x, y), (x + 30, y)],
        BLACK.stroke_width(2),
    ))
    .at(path)?;
    label(&mut x, "true path")?;
    area.draw(&DashedPathElement::new(
        vec![(x, y), (x + 30, y)],
        6,
        4,
        BLACK.stroke_width(1),
    ))
    .at(path)?;
    area.draw(&Cross::new((x + 15, y), 3, BLACK.stroke_width(1)))
        .at(path)?;
    label(&mut x, "predicted (× at each frame)")?;
    area.draw(&Circle::new((x + 15, y), 5, BLACK.filled()))
        .at(path)?;
    label(&mut x, "start")?;
    let colours = if shown < n {
        format!("one colour per node (the first {shown} of {n} nodes)")
    } else {
        "one colour per node".to_owned()
    };
    area.draw(&Text::new(colours, (x, y), text.clone()))
        .at(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn helix(n: usize, frames: usize, shift: f64) -> Vec<Vec<[f64; 3]>> {
        (1..=frames)
            .map(|t| {
                let t = t as f64 * 0.4;
                (0..n)
                    .map(|i| {
                        let i = i as f64;
                        [t.cos() + i + shift, t.sin() * 3.0, 0.2 * t - i]
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn draws_three_projections() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("traj.png");
        let start: Vec<[f64; 3]> = (0..3).map(|i| [1.0 + i as f64, 0.0, -(i as f64)]).collect();
        trajectories(&p, "sample", &start, &helix(3, 8, 0.0), &helix(3, 8, 0.1)).unwrap();
        assert!(std::fs::metadata(&p).unwrap().len() > 10_000);
        // one node that never moves: a degenerate extent still draws
        let still = vec![vec![[2.0, 2.0, 2.0]]; 3];
        trajectories(&p, "still", &[[2.0; 3]], &still, &still).unwrap();
    }

    #[test]
    fn bad_frames_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("traj.png");
        let start = [[0.0; 3]; 2];
        let err = trajectories(&p, "t", &start, &helix(2, 3, 0.0), &helix(2, 2, 0.0)).unwrap_err();
        assert!(err.to_string().contains(&*p.to_string_lossy()), "{err}");
        let mut nan = helix(2, 3, 0.0);
        nan[1][0][2] = f64::NAN;
        let err = trajectories(&p, "t", &start, &helix(2, 3, 0.0), &nan).unwrap_err();
        assert!(err.to_string().contains("non-finite"), "{err}");
        assert!(trajectories(&p, "t", &[], &[], &[]).is_err());
        assert!(!p.exists());
    }

    /// Every panel shows its data, and a pixel is worth the same distance on all six axes.
    #[test]
    fn projections_share_one_scale() {
        let lo = [-1.0, 0.0, 10.0];
        let hi = [3.0, 0.5, 10.0];
        let pixels = [(420, 400), (421, 400), (420, 399)];
        let ranges = equal_scale(lo, hi, pixels);
        let mut scales = Vec::new();
        for (((x, y), (a, b)), (w, h)) in ranges.iter().zip(PLANES).zip(pixels) {
            assert!(x.start < lo[a] && x.end > hi[a], "{x:?}");
            assert!(y.start < lo[b] && y.end > hi[b], "{y:?}");
            scales.push((x.end - x.start) / f64::from(w));
            scales.push((y.end - y.start) / f64::from(h));
        }
        for s in &scales {
            assert!((s / scales[0] - 1.0).abs() < 1e-12, "{scales:?}");
        }
        // the widest extent (x: 4 units) fills its axis up to the margin
        assert!((scales[0] * 420.0 - 4.0 * 1.1).abs() < 1e-9);
    }
}
