//! Loss curves: one panel per unit, stacked over a shared x axis, each on a logarithmic y axis.

use std::path::Path;

use anyhow::{Result, ensure};
use plotters::prelude::*;

use super::{Drawn, FAMILY, canvas, colour, draw_legend, range, tick_label};

/// A series of (x, y) points with a legend label.
#[derive(Debug, Clone)]
pub struct Series<'a> {
    /// Legend text.
    pub label: &'a str,
    /// The points, in order.
    pub points: Vec<(f64, f64)>,
}

/// Curves that share one y axis and its unit: one panel of [`loss_curve`].
#[derive(Debug, Clone)]
pub struct Panel<'a> {
    /// The y axis' label, naming the unit (e.g. "training loss (normalised units)").
    pub y_label: &'a str,
    /// The curves.
    pub series: Vec<Series<'a>>,
}

/// The points a logarithmic axis can show: finite and positive.
fn drawable<'s>(series: &'s Series<'_>) -> impl Iterator<Item = (f64, f64)> + 's {
    series
        .points
        .iter()
        .copied()
        .filter(|p| p.0.is_finite() && p.1.is_finite() && p.1 > 0.0)
}

/// The bottom of a logarithmic axis showing `min`: just below the power of ten at or below
/// `min / 1.25`, as plotters' logarithmic grid starts at the first power of ten it finds on the
/// axis (by a rounded logarithm, so an axis starting exactly on one may miss it).
fn log_floor(min: f64) -> f64 {
    10f64.powf((min / 1.25).log10().floor()) * (1.0 - 1e-9)
}

/// A label for a logarithmic axis' grid line (one at every multiple of a power of ten): only
/// 1, 2 and 5 times a power of ten are labelled, the others left blank.
fn log_tick_label(v: f64) -> String {
    let mantissa = v / 10f64.powf(v.log10().floor());
    if [1.0, 2.0, 5.0, 10.0]
        .iter()
        .any(|m| (mantissa - m).abs() < 1e-6)
    {
        tick_label(v)
    } else {
        String::new()
    }
}

/// Loss curves in panels stacked top to bottom over one x range, each panel with its own
/// logarithmic y axis labelled with its unit — e.g. the training loss (normalised units) above
/// the validation metric (original units), which are not comparable on one axis. Non-positive
/// and non-finite values are skipped; a panel left with nothing to draw is left out. Series take
/// the palette's colours in order across all panels.
///
/// # Errors
/// No panel has a point to draw, or the file cannot be drawn or written (the error names
/// `path`).
pub fn loss_curve(path: &Path, title: &str, x_label: &str, panels: &[Panel<'_>]) -> Result<()> {
    let mut first_colour = 0;
    let mut shown = Vec::new();
    for panel in panels {
        if panel.series.iter().any(|s| drawable(s).next().is_some()) {
            shown.push((panel, first_colour));
        }
        first_colour += panel.series.len();
    }
    ensure!(!shown.is_empty(), "nothing to plot in {}", path.display());
    let all = || {
        shown
            .iter()
            .flat_map(|(p, _)| p.series.iter())
            .flat_map(drawable)
    };
    let (x0, x1) = range(all().map(|p| p.0));
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    // epochs or steps: ticks on whole numbers only
    let whole_x = all().all(|p| p.0.fract() == 0.0);
    let x_ticks = |v: &f64| {
        if whole_x && v.fract() != 0.0 {
            String::new()
        } else {
            tick_label(*v)
        }
    };
    let x_count = if whole_x {
        ((x1 - x0) as usize + 1).clamp(2, 11)
    } else {
        10
    };
    let y_ticks = |v: &f64| log_tick_label(*v);

    let root = canvas(path, (900, 80 + 320 * shown.len() as u32))?;
    let body = root
        .margin(8, 0, 0, 0)
        .titled(title, (FAMILY, 24))
        .at(path)?;
    let areas = body.split_evenly((shown.len(), 1));
    for (i, ((panel, first_colour), area)) in shown.iter().zip(&areas).enumerate() {
        let (y0, y1) = range(panel.series.iter().flat_map(drawable).map(|p| p.1));
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, (log_floor(y0)..y1 * 1.25).log_scale())
            .at(path)?;
        let mut mesh = chart.configure_mesh();
        mesh.y_desc(panel.y_label)
            .x_labels(x_count)
            .x_label_formatter(&x_ticks)
            // every multiple of a power of ten (up to four decades) gets a grid line
            .y_labels(40)
            .y_label_formatter(&y_ticks)
            .axis_desc_style((FAMILY, 16))
            .bold_line_style(BLACK.mix(0.12))
            .light_line_style(TRANSPARENT);
        if i + 1 == shown.len() {
            mesh.x_desc(x_label);
        }
        mesh.draw().at(path)?;
        for (k, s) in panel.series.iter().enumerate() {
            let style = colour(first_colour + k).stroke_width(2);
            let pts: Vec<_> = drawable(s).collect();
            // a lone point (one evaluation so far) shows as a dot
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, style.filled())))
                .at(path)?;
            chart
                .draw_series(LineSeries::new(pts, style))
                .at(path)?
                .label(s.label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        draw_legend(path, &mut chart)?;
    }
    root.present().at(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(label: &str, points: Vec<(f64, f64)>) -> Series<'_> {
        Series { label, points }
    }

    #[test]
    fn two_panels_and_one_are_drawn() {
        let dir = tempfile::tempdir().unwrap();
        let train = Panel {
            y_label: "training loss (normalised units)",
            series: vec![series(
                "train loss",
                (1..20).map(|i| (i as f64, 1.0 / i as f64)).collect(),
            )],
        };
        let val = Panel {
            y_label: "validation MSE (original units²)",
            series: vec![series(
                "val S2T",
                vec![(5.0, 30.0), (10.0, 20.0), (15.0, 0.0)],
            )],
        };
        let two = dir.path().join("two.png");
        loss_curve(&two, "loss", "epoch", &[train.clone(), val]).unwrap();
        assert!(std::fs::metadata(&two).unwrap().len() > 10_000);
        // a panel with nothing positive is left out
        let one = dir.path().join("one.png");
        let empty = Panel {
            y_label: "validation",
            series: vec![series("val", vec![(1.0, 0.0), (2.0, f64::NAN)])],
        };
        loss_curve(&one, "loss", "epoch", &[train, empty]).unwrap();
        assert!(std::fs::metadata(&one).unwrap().len() > 10_000);
    }

    #[test]
    fn log_axes_start_at_a_power_of_ten_and_label_1_2_5() {
        for (min, decade) in [(0.06, 0.01), (2.0, 1.0), (1.0, 0.1), (1e-7, 1e-8)] {
            let bottom = log_floor(min);
            assert!(
                bottom < decade && bottom > decade * 0.999,
                "{min}: {bottom}"
            );
            // plotters' first grid line: the power of ten it finds from the axis' bottom
            assert_eq!(10f64.powf(bottom.log10().ceil()), decade, "{min}");
        }
        let labels: Vec<_> = [0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.3, 0.5, 1.0, 20.0]
            .map(log_tick_label)
            .into_iter()
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(labels, ["0.01", "0.02", "0.05", "0.1", "0.5", "1", "20"]);
    }

    #[test]
    fn nothing_to_plot_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        let err = loss_curve(&path, "t", "x", &[]).unwrap_err();
        assert!(err.to_string().contains("nothing to plot"), "{err}");
        let flat = Panel {
            y_label: "y",
            series: vec![series("a", vec![(1.0, -1.0)])],
        };
        assert!(loss_curve(&path, "t", "x", &[flat]).is_err());
        assert!(!path.exists());
    }
}
