//! The one font every figure is drawn with: embedded in the binary, so plotting never depends on
//! the fonts a machine has installed. `SGDD_FONT=/path/to/font.ttf` replaces it; an unset or empty
//! `SGDD_FONT` keeps the embedded one.
//!
//! The embedded face is Ubuntu Light from the `epaint_default_fonts` crate (egui's default fonts;
//! Ubuntu Font Licence 1.0, which allows embedding and redistribution in software under any
//! licence). It covers Latin, Greek (μ, λ) and the typographic signs the figures use (×, –, ●);
//! it has no arrows (→) or superscript minus (⁻), so the figures' fixed text avoids them.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow};
use plotters::style::FontStyle;

/// The family name the font is registered under with plotters: its default family, the one
/// mesh labels and legends use when no font is named, so every text of a figure gets it.
pub(crate) const FAMILY: &str = "sans-serif";

/// The environment variable naming a font file that replaces the embedded one.
pub(crate) const OVERRIDE_VAR: &str = "SGDD_FONT";

/// Where the figures' font comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FontSource {
    /// Ubuntu Light, compiled into the binary.
    Embedded,
    /// A TrueType/OpenType file chosen by the user through `SGDD_FONT`.
    File(PathBuf),
}

impl FontSource {
    /// The source named by a value of `SGDD_FONT`: unset or empty means the embedded font.
    pub(crate) fn from_override(value: Option<OsString>) -> Self {
        match value {
            Some(path) if !path.is_empty() => Self::File(PathBuf::from(path)),
            _ => Self::Embedded,
        }
    }

    /// The font's bytes, alive for the rest of the process (plotters keeps a `'static` slice).
    ///
    /// # Errors
    /// The override file cannot be read; the error names it.
    fn bytes(&self) -> Result<&'static [u8]> {
        match self {
            Self::Embedded => Ok(epaint_default_fonts::UBUNTU_LIGHT),
            Self::File(path) => {
                let bytes = std::fs::read(path).with_context(|| {
                    format!(
                        "{OVERRIDE_VAR}={}: cannot read the font file",
                        path.display()
                    )
                })?;
                Ok(Box::leak(bytes.into_boxed_slice()))
            }
        }
    }

    /// Registers this font as [`FAMILY`] (replacing any earlier registration).
    ///
    /// # Errors
    /// The override file cannot be read or is not a font; the error names it.
    pub(crate) fn register(&self) -> Result<()> {
        plotters::style::register_font(FAMILY, FontStyle::Normal, self.bytes()?).map_err(|_| {
            match self {
                Self::Embedded => anyhow!("the embedded plot font does not parse"),
                Self::File(path) => anyhow!(
                    "{OVERRIDE_VAR}={}: not a TrueType/OpenType font",
                    path.display()
                ),
            }
        })
    }
}

/// Registers the figures' font once per process: `SGDD_FONT` when set and non-empty, else the
/// embedded font. Every figure calls this before drawing text.
///
/// # Errors
/// `SGDD_FONT` names a file that cannot be read or is not a font (the same error every call).
pub(crate) fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            FontSource::from_override(std::env::var_os(OVERRIDE_VAR))
                .register()
                .map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

#[cfg(test)]
mod tests {
    use plotters::prelude::*;

    use super::*;

    /// Dark pixels in a 300×60 image with `text` drawn in [`FAMILY`] at 32 px.
    fn ink(text: &str) -> usize {
        let (w, h) = (300u32, 60u32);
        let mut buf = vec![255u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            root.draw_text(text, &(FAMILY, 32).into_text_style(&root), (4, 4))
                .unwrap();
            root.present().unwrap();
        }
        buf.chunks(3).filter(|p| p.iter().all(|&c| c < 128)).count()
    }

    #[test]
    fn unset_or_empty_override_means_embedded() {
        assert_eq!(FontSource::from_override(None), FontSource::Embedded);
        assert_eq!(
            FontSource::from_override(Some(OsString::new())),
            FontSource::Embedded
        );
        assert_eq!(
            FontSource::from_override(Some("/x/f.ttf".into())),
            FontSource::File("/x/f.ttf".into())
        );
    }

    /// The embedded font alone draws text: no file is read, so this works on a machine with no
    /// fonts installed (plotters is built without its system-font lookup).
    #[test]
    fn embedded_font_draws_text_without_any_file() {
        FontSource::from_override(Some(OsString::new()))
            .register()
            .unwrap();
        let empty = ink("");
        let text = ink("S2T μ λ ×10");
        assert_eq!(empty, 0);
        assert!(text > 200, "only {text} dark pixels");
    }

    #[test]
    fn a_bad_override_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.ttf");
        let err = FontSource::File(missing.clone()).register().unwrap_err();
        assert!(
            format!("{err:#}").contains(&*missing.to_string_lossy()),
            "{err:#}"
        );
        assert!(format!("{err:#}").contains(OVERRIDE_VAR), "{err:#}");

        let garbage = dir.path().join("garbage.ttf");
        std::fs::write(&garbage, b"not a font").unwrap();
        let err = FontSource::File(garbage.clone()).register().unwrap_err();
        assert!(
            err.to_string().contains(&*garbage.to_string_lossy()),
            "{err}"
        );
        assert!(err.to_string().contains("not a TrueType"), "{err}");
    }

    #[test]
    fn an_override_file_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("font.ttf");
        std::fs::write(&file, epaint_default_fonts::UBUNTU_LIGHT).unwrap();
        FontSource::File(file).register().unwrap();
        assert!(ink("override") > 100);
        // leave the process with the embedded font registered, as the figures expect
        FontSource::Embedded.register().unwrap();
    }
}
