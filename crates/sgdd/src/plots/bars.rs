//! Grouped bar charts (e.g. error energy per joint-frequency band, one bar per model).

use std::path::Path;

use anyhow::{Result, ensure};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{Drawn, FAMILY, canvas, colour, draw_legend, tick_label};

/// One group member of a grouped bar chart.
#[derive(Debug, Clone)]
pub struct Bars<'a> {
    /// Legend text.
    pub label: &'a str,
    /// One value per category.
    pub values: Vec<f64>,
}

/// A grouped bar chart: one group per category (named under it), one bar per series in the
/// palette's colours, on a linear y axis from 0.
///
/// # Errors
/// No category or series, a series without one value per category, a negative or non-finite
/// value, or the file cannot be drawn or written (the error names `path`).
pub fn grouped_bars(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    categories: &[String],
    series: &[Bars<'_>],
) -> Result<()> {
    ensure!(
        !categories.is_empty() && !series.is_empty(),
        "nothing to plot in {}",
        path.display()
    );
    ensure!(
        series.iter().all(|s| s.values.len() == categories.len()),
        "bar chart {}: every series needs one value per category ({})",
        path.display(),
        categories.len()
    );
    ensure!(
        series
            .iter()
            .flat_map(|s| &s.values)
            .all(|v| v.is_finite() && *v >= 0.0),
        "bar chart {}: values must be finite and non-negative",
        path.display()
    );
    let y_max = series
        .iter()
        .flat_map(|s| s.values.iter())
        .copied()
        .fold(0.0, f64::max)
        .max(1e-300);
    let root = canvas(path, (960, 560))?;
    let n_cat = categories.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(56)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..n_cat as f64, 0.0..y_max * 1.1)
        .at(path)?;
    let ticks = |v: &f64| tick_label(*v);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n_cat + 1)
        // the categories are written under the groups' centres below, not at the ticks
        .x_label_formatter(&|_| String::new())
        .y_label_formatter(&ticks)
        .x_desc(x_label)
        .y_desc(y_label)
        .axis_desc_style((FAMILY, 16))
        .draw()
        .at(path)?;
    let style = TextStyle::from((FAMILY, 15)).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, c) in categories.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        root.draw(&Text::new(c.clone(), (px, py + 6), style.clone()))
            .at(path)?;
    }
    let width = 0.8 / series.len() as f64;
    for (k, s) in series.iter().enumerate() {
        let fill = colour(k).filled();
        chart
            .draw_series(s.values.iter().enumerate().map(|(i, &v)| {
                let x0 = i as f64 + 0.1 + k as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, v)], fill)
            }))
            .at(path)?
            .label(s.label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], fill));
    }
    draw_legend(path, &mut chart)?;
    root.present().at(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(label: &str, values: Vec<f64>) -> Bars<'_> {
        Bars { label, values }
    }

    #[test]
    fn draws_groups_and_rejects_bad_series() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bars.png");
        let cats = vec!["low".to_owned(), "high".to_owned()];
        let ok = [bars("a", vec![1.0, 2.0]), bars("b", vec![0.5, 0.0])];
        grouped_bars(&p, "bands", "band", "energy", &cats, &ok).unwrap();
        assert!(std::fs::metadata(&p).unwrap().len() > 10_000);

        let q = dir.path().join("bad.png");
        let short = [bars("a", vec![1.0])];
        let err = grouped_bars(&q, "x", "x", "y", &cats, &short).unwrap_err();
        assert!(err.to_string().contains("one value per category"), "{err}");
        let nan = [bars("a", vec![1.0, f64::NAN])];
        let err = grouped_bars(&q, "x", "x", "y", &cats, &nan).unwrap_err();
        assert!(err.to_string().contains(&*q.to_string_lossy()), "{err}");
        assert!(grouped_bars(&q, "x", "x", "y", &[], &ok).is_err());
        assert!(!q.exists());
    }
}
