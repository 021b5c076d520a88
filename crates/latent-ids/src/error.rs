//! The crate's error type: what went wrong, in which operation, with the offending datum.

/// Errors of `build` (invalid configurations) and of the `f_` entry points (inputs that come
/// from a user or a file).
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    /// An input value is out of its range (a type index, a frame count, a non-finite value).
    #[error("{op}: {reason}")]
    Input {
        /// The operation that checked.
        op: &'static str,
        /// What is wrong, in words.
        reason: String,
    },
    /// A shape, a configuration value (graph-nets' `Shape` and `Config` errors, shared by the
    /// layers of both crates) or the sampler's ODE integrator.
    #[error(transparent)]
    GraphNets(#[from] graph_nets::Error),
    /// An error reported by libtorch.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) use graph_nets::{check_shape, ensure_at_least, ensure_config};

/// `[12, _, 3]`-style shape errors built by hand (shapes `check_shape` cannot express).
pub(crate) fn shape_error(
    op: &'static str,
    what: &'static str,
    expected: String,
    got: Vec<i64>,
) -> Error {
    graph_nets::Error::Shape {
        op,
        what,
        expected,
        got,
    }
    .into()
}

/// `value` finite and in `[lo, hi]`, else graph-nets' `Error::Config` saying so.
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
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_operation_and_the_datum() {
        let t = tch::Tensor::zeros([4, 2], (tch::Kind::Float, tch::Device::Cpu));
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
        assert!(
            shape_error("op", "x", "[3]".into(), vec![2])
                .to_string()
                .contains("[3]")
        );
    }
}
