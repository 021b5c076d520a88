//! The crate's error type: what went wrong, in which operation, with the offending datum.

use tch::Tensor;

/// Errors of `build` (invalid configurations) and of the `f_` entry points (inputs that come
/// from a user or a file).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is invalid.
    #[error("invalid {config}.{field}: {reason}")]
    Config {
        /// The configuration type, e.g. `"CodecConfig"`.
        config: &'static str,
        /// The field.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A sample has more entities than the identifier pool has identifiers.
    #[error(
        "{op}: {entities} entities need {entities} distinct identifiers, but the pool holds \
         only {pool} (raise `ids.size` to at least {entities})"
    )]
    TooManyEntities {
        /// The operation that checked.
        op: &'static str,
        /// Entities per sample (`N`).
        entities: i64,
        /// Identifiers in the pool (`u`).
        pool: i64,
    },
    /// A tensor has the wrong shape.
    #[error("{op}: `{what}` must have shape {expected}, got {got:?}")]
    Shape {
        /// The operation that checked, e.g. `"Codec::encode"`.
        op: &'static str,
        /// The argument, e.g. `"positions"`.
        what: &'static str,
        /// The expected shape, `_` for a free dimension.
        expected: String,
        /// The shape received.
        got: Vec<i64>,
    },
    /// An input value is out of its range (a type index, a frame count, a non-finite value).
    #[error("{op}: {reason}")]
    Input {
        /// The operation that checked.
        op: &'static str,
        /// What is wrong, in words.
        reason: String,
    },
    /// The ODE integrator of the sampler failed.
    #[error(transparent)]
    Ode(#[from] graph_nets::Error),
    /// An error reported by libtorch.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks `t`'s shape against `expected`, where `None` is a free dimension.
pub(crate) fn check_shape(
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
        return Ok(());
    }
    let dims: Vec<String> = expected
        .iter()
        .map(|d| d.map_or_else(|| "_".to_owned(), |d| d.to_string()))
        .collect();
    Err(Error::Shape {
        op,
        what,
        expected: format!("[{}]", dims.join(", ")),
        got,
    })
}

/// `Err(Error::Config { .. })` unless `ok`.
pub(crate) fn ensure_config(
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

/// `value ≥ min`, else [`Error::Config`] saying so.
pub(crate) fn ensure_at_least(
    config: &'static str,
    field: &'static str,
    value: i64,
    min: i64,
) -> Result<()> {
    ensure_config(value >= min, config, field, || {
        format!("must be ≥ {min}, got {value}")
    })
}

/// `value` finite and in `[lo, hi]`, else [`Error::Config`] saying so.
pub(crate) fn ensure_in(
    config: &'static str,
    field: &'static str,
    value: f64,
    lo: f64,
    hi: f64,
) -> Result<()> {
    ensure_config(
        value.is_finite() && (lo..=hi).contains(&value),
        config,
        field,
        || format!("must be in [{lo}, {hi}], got {value}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_operation_and_the_datum() {
        let t = Tensor::zeros([4, 2], (tch::Kind::Float, tch::Device::Cpu));
        assert!(check_shape("op", "x", &t, &[Some(4), None]).is_ok());
        let e = check_shape("Codec::encode", "positions", &t, &[None, Some(3)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Codec::encode: `positions` must have shape [_, 3], got [4, 2]"
        );
        let e = Error::TooManyEntities {
            op: "IdentifierPool::draw",
            entities: 9,
            pool: 8,
        };
        assert!(e.to_string().contains("only 8"), "{e}");
        assert!(ensure_in("C", "f", f64::NAN, 0.0, 1.0).is_err());
        assert!(ensure_at_least("C", "f", 0, 1).is_err());
    }
}
