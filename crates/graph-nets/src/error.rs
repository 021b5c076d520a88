//! The crate's error type: what went wrong, in which operation, with the offending datum.

use tch::{Kind, Tensor};

/// Errors of the `f_` entry points (inputs that come from a user or a file) and of `build`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor has the wrong shape.
    #[error("{op}: `{what}` must have shape {expected}, got {got:?}")]
    Shape {
        /// The operation that checked, e.g. `"Egno::forward"`.
        op: &'static str,
        /// The argument, e.g. `"x0"`.
        what: &'static str,
        /// The expected shape, `_` for a free dimension, e.g. `"[12, 3]"`.
        expected: String,
        /// The shape received.
        got: Vec<i64>,
    },
    /// A tensor has the wrong element type.
    #[error("{op}: `{what}` must be {expected:?}, got {got:?}")]
    Kind {
        /// The operation that checked.
        op: &'static str,
        /// The argument.
        what: &'static str,
        /// The expected element type.
        expected: Kind,
        /// The element type received.
        got: Kind,
    },
    /// An optional input was given where the layer was built without it, or the reverse.
    #[error("{op}: {reason}")]
    Input {
        /// The operation that checked.
        op: &'static str,
        /// What is wrong, in words.
        reason: String,
    },
    /// An edge refers to a node that does not exist in its graph.
    #[error("{op}: edge {edge} refers to node {node}, but the graph has {num_nodes} nodes")]
    EdgeOutOfRange {
        /// The operation that checked.
        op: &'static str,
        /// The position of the edge in the edge index.
        edge: i64,
        /// The offending node id (local to its graph).
        node: i64,
        /// The number of nodes of that graph.
        num_nodes: i64,
    },
    /// A configuration value is invalid.
    #[error("invalid {config}.{field}: {reason}")]
    Config {
        /// The configuration type, e.g. `"EgnoConfig"`.
        config: &'static str,
        /// The field.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The ODE integrator ([`crate::ode`]) could not reach the requested time.
    #[error("odeint: stopped at t = {t}: {reason}")]
    Ode {
        /// The time reached.
        t: f64,
        /// Why it stopped (step-size underflow, step budget, non-finite state).
        reason: String,
    },
    /// A graph's spectral basis could not be built (GF-NODE's graph Fourier basis).
    #[error("graph Fourier basis: {0}")]
    Spectral(#[from] spectral_core::Error),
    /// An error reported by libtorch.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks `t`'s shape against `expected`, where `None` is a free dimension: an
/// [`Error::Shape`] naming the operation, the argument and both shapes (shared by the crates
/// built on this one).
pub fn check_shape(
    op: &'static str,
    what: &'static str,
    t: &Tensor,
    expected: &[Option<i64>],
) -> Result<()> {
    let got = t.size();
    let ok = got.len() == expected.len()
        && got
            .iter()
            .zip(expected)
            .all(|(g, e)| e.is_none_or(|e| e == *g));
    if ok {
        Ok(())
    } else {
        Err(Error::Shape {
            op,
            what,
            expected: render_shape(expected),
            got,
        })
    }
}

/// Checks that `t` holds elements of `kind`.
pub(crate) fn check_kind(
    op: &'static str,
    what: &'static str,
    t: &Tensor,
    kind: Kind,
) -> Result<()> {
    let got = t.kind();
    if got == kind {
        Ok(())
    } else {
        Err(Error::Kind {
            op,
            what,
            expected: kind,
            got,
        })
    }
}

/// `[12, _, 3]` for `[Some(12), None, Some(3)]`.
pub(crate) fn render_shape(shape: &[Option<i64>]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| d.map_or_else(|| "_".to_owned(), |d| d.to_string()))
        .collect();
    format!("[{}]", dims.join(", "))
}

/// `value ≥ min`, else [`Error::Config`] saying "must be ≥ min, got value".
pub fn ensure_at_least(
    config: &'static str,
    field: &'static str,
    value: i64,
    min: i64,
) -> Result<()> {
    ensure_config(value >= min, config, field, || {
        format!("must be ≥ {min}, got {value}")
    })
}

/// A config check: `Err(Error::Config { .. })` unless `ok`.
pub fn ensure_config(
    ok: bool,
    config: &'static str,
    field: &'static str,
    reason: impl FnOnce() -> String,
) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::Config {
            config,
            field,
            reason: reason(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_errors_name_the_argument_and_both_shapes() {
        let t = Tensor::zeros([4, 2], (Kind::Float, tch::Device::Cpu));
        assert!(check_shape("op", "x", &t, &[Some(4), None]).is_ok());
        let e = check_shape("Egno::forward", "x0", &t, &[Some(4), Some(3)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Egno::forward: `x0` must have shape [4, 3], got [4, 2]"
        );
        assert!(check_shape("op", "x", &t, &[Some(4)]).is_err());
    }
}
