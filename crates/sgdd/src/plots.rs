//! PNG figures of a run (plotters, bitmap backend): the loss curves ([`loss_curve`]), predicted vs
//! true trajectories in three orthogonal projections ([`trajectories`]) and grouped bars
//! ([`grouped_bars`]).
//!
//! Every figure draws its series in the same colour-blind-safe order, the palette of Okabe & Ito
//! ("Color Universal Design", 2008), and its text with a font embedded in the binary (or the file
//! named by `SGDD_FONT`), so figures never depend on the fonts a machine has installed.

use std::fmt::Display;
use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;

mod bars;
mod font;
mod loss;
mod trajectory;

pub use bars::{Bars, grouped_bars};
pub use loss::{Panel, Series, loss_curve};
pub use trajectory::trajectories;

use font::{FAMILY, ensure_font};

/// The Okabe–Ito colours in the order series take them: blue, vermillion, bluish green, orange,
/// reddish purple, sky blue, yellow (least visible on white, so last). Black, the eighth, is kept
/// for axes and annotations.
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(230, 159, 0),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(240, 228, 66),
];

/// The colour of the `i`-th series (cycling through [`PALETTE`]).
fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// `(min, max)` of some values (`(f64::MAX, f64::MIN)` for none).
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)))
}

/// A tick label: plain decimals with at most three significant digits between 10⁻³ and 10⁵,
/// scientific notation outside.
fn tick_label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".to_owned()
    } else if (1e-3..1e5).contains(&a) {
        let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
        let s = format!("{v:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    } else {
        format!("{v:.1e}")
    }
}

/// Plotters' drawing errors as errors naming the figure's file.
trait Drawn<T> {
    /// The result, its error prefixed with `path`.
    fn at(self, path: &Path) -> Result<T>;
}

impl<T, E: Display> Drawn<T> for std::result::Result<T, E> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| anyhow!("{}: drawing the figure failed: {e}", path.display()))
    }
}

/// A white `size` canvas that writes `path` when presented, the embedded font registered.
fn canvas(path: &Path, size: (u32, u32)) -> Result<DrawingArea<BitMapBackend<'_>, Shift>> {
    ensure_font()?;
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).at(path)?;
    Ok(root)
}

/// The legend of a chart's labelled series, upper right on a translucent white box.
fn draw_legend<'a, 'b: 'a, CT: CoordTranslate>(
    path: &Path,
    chart: &mut ChartContext<'a, BitMapBackend<'b>, CT>,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FAMILY, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .at(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_are_short() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (10.0, "10"),
            (0.1, "0.1"),
            (0.25, "0.25"),
            (2.5e-3, "0.0025"),
            (123.456, "123"),
            (1.5e5, "1.5e5"),
            (2e-4, "2.0e-4"),
            (-0.5, "-0.5"),
        ];
        for (v, want) in cases {
            assert_eq!(tick_label(v), want, "{v}");
        }
    }

    #[test]
    fn drawing_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("x.png");
        let panels = [Panel {
            y_label: "loss",
            series: vec![Series {
                label: "a",
                points: vec![(1.0, 1.0), (2.0, 0.5)],
            }],
        }];
        let err = loss_curve(&path, "t", "epoch", &panels).unwrap_err();
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    }
}
