//! The identifier pool of LaM-SLidE (seed 004, §3.1): `u` embeddings `e_0 … e_{u−1}`; each
//! sample draws an injection `π: {0..N−1} → {0..u−1}` of identifiers for its `N` entities,
//! kept for all frames of that sample, so that the decoder can ask "where is the entity with
//! identifier `π(i)`?" at every frame without the entities having a canonical order.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor, nn};

use crate::error::{Error, Result, check_shape, ensure_at_least, ensure_config};

/// How the identifier embeddings are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentifierKind {
    /// Fixed orthonormal vectors, not trained (the authors' default): rows of an orthogonal
    /// matrix when `u ≤ dim`, else its columns' transpose (orthonormal columns).
    #[default]
    Orthogonal,
    /// Trained embeddings, `N(0, 1)` at start (the paper's wording, PyTorch's `nn.Embedding`).
    Learned,
}

/// Settings of an [`IdentifierPool`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentifierPoolConfig {
    /// `u`, the number of identifiers (the largest entity count a sample may have).
    pub size: i64,
    /// The embedding dimension.
    pub dim: i64,
    /// Fixed orthogonal or learned.
    pub kind: IdentifierKind,
    /// Rows longer than this are scaled down to it on lookup (PyTorch's `max_norm`); `None`
    /// keeps them as they are.
    pub max_norm: Option<f64>,
    /// Seed of the fixed orthogonal matrix (ignored for learned embeddings).
    pub seed: u64,
}

impl Default for IdentifierPoolConfig {
    fn default() -> Self {
        Self {
            size: 32,
            dim: 64,
            kind: IdentifierKind::Orthogonal,
            max_norm: Some(1.0),
            seed: 0,
        }
    }
}

impl IdentifierPoolConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        const C: &str = "IdentifierPoolConfig";
        ensure_at_least(C, "size", self.size, 1)?;
        ensure_at_least(C, "dim", self.dim, 1)?;
        if let Some(m) = self.max_norm {
            ensure_config(m.is_finite() && m > 0.0, C, "max_norm", || {
                format!("must be finite and > 0, got {m}")
            })?;
        }
        Ok(())
    }

    /// The pool, its table a variable `table` under `p` (trainable only for
    /// [`IdentifierKind::Learned`]).
    pub fn build(&self, p: nn::Path<'_>) -> Result<IdentifierPool> {
        self.validate()?;
        let table = match self.kind {
            IdentifierKind::Learned => p.var(
                "table",
                &[self.size, self.dim],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 1.0,
                },
            ),
            IdentifierKind::Orthogonal => {
                let mut t = p.zeros_no_train("table", &[self.size, self.dim]);
                let q = orthogonal(self.size, self.dim, self.seed)?.to_kind(t.kind());
                tch::no_grad(|| t.copy_(&q));
                t
            }
        };
        Ok(IdentifierPool {
            table,
            config: self.clone(),
        })
    }
}

/// `[rows, cols]` with orthonormal rows (`rows ≤ cols`) or columns (`rows > cols`), from a
/// Gaussian matrix of the ChaCha8 stream `seed` (QR, signs fixed by `diag(R) > 0`, as
/// `torch.nn.init.orthogonal_`).
fn orthogonal(rows: i64, cols: i64, seed: u64) -> Result<Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (tall, wide) = (rows.max(cols), rows.min(cols));
    let v: Vec<f64> = (0..tall * wide)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let a = Tensor::from_slice(&v).view([tall, wide]);
    let (q, r) = Tensor::f_linalg_qr(&a, "reduced")?;
    let q = q * r.diag(0).sign().unsqueeze(0);
    Ok(if rows < cols { q.tr() } else { q }.contiguous())
}

/// A pool of `u` identifier embeddings and the per-sample random injection of identifiers.
#[derive(Debug)]
pub struct IdentifierPool {
    table: Tensor,
    config: IdentifierPoolConfig,
}

impl IdentifierPool {
    /// `u`.
    pub fn size(&self) -> i64 {
        self.config.size
    }

    /// The embedding dimension.
    pub fn dim(&self) -> i64 {
        self.config.dim
    }

    /// The settings it was built with.
    pub fn config(&self) -> &IdentifierPoolConfig {
        &self.config
    }

    /// The raw table.
    ///
    /// # Shapes
    /// `[u, dim]`.
    pub fn table(&self) -> &Tensor {
        &self.table
    }

    /// Draws the identifiers of `N = entities` entities for each sample of a batch: sample `s`
    /// gets `N` distinct identifiers, a uniformly random injection drawn from the ChaCha8
    /// stream `(seed, s)` of [`Purpose::Identifiers`](crate::random::Purpose) — the same for every frame of that sample and whatever batch it sits
    /// in. An error when `N > u`.
    ///
    /// # Shapes
    /// → `[samples.len(), N]`, int64, on the table's device.
    pub fn draw(&self, entities: i64, seed: u64, samples: &[u64]) -> Result<Tensor> {
        let u = self.size();
        if entities > u {
            return Err(Error::TooManyEntities {
                op: "IdentifierPool::draw",
                entities,
                pool: u,
            });
        }
        if entities < 0 {
            return Err(Error::Input {
                op: "IdentifierPool::draw",
                reason: format!("the entity count must be ≥ 0, got {entities}"),
            });
        }
        let mut ids = Vec::with_capacity(samples.len() * entities as usize);
        for &s in samples {
            let mut rng = crate::random::Purpose::Identifiers.rng(seed, s);
            let pick = rand::seq::index::sample(&mut rng, u as usize, entities as usize);
            ids.extend(pick.iter().map(|i| i as i64));
        }
        Ok(Tensor::from_slice(&ids)
            .view([samples.len() as i64, entities])
            .to_device(self.table.device()))
    }

    /// The identifiers in order, `0 … N−1`, for every sample (a deterministic injection, for
    /// evaluation that must not depend on a seed).
    ///
    /// # Shapes
    /// → `[batch, N]`, int64.
    pub fn first(&self, batch: i64, entities: i64) -> Result<Tensor> {
        if entities > self.size() {
            return Err(Error::TooManyEntities {
                op: "IdentifierPool::first",
                entities,
                pool: self.size(),
            });
        }
        Ok(Tensor::arange(entities, (Kind::Int64, self.table.device()))
            .unsqueeze(0)
            .repeat([batch, 1]))
    }

    /// The embeddings of `ids`, rows longer than `max_norm` scaled down to it (for learned
    /// embeddings the table itself is renormalised in place, as PyTorch's `nn.Embedding`).
    ///
    /// # Shapes
    /// `ids: [..]` int64 in `0..u` → `[.., dim]`.
    pub fn f_embed(&self, ids: &Tensor) -> Result<Tensor> {
        if ids.kind() != Kind::Int64 {
            return Err(Error::Input {
                op: "IdentifierPool::embed",
                reason: format!("identifiers must be int64, got {:?}", ids.kind()),
            });
        }
        if ids.numel() > 0 {
            let (lo, hi) = (ids.min().int64_value(&[]), ids.max().int64_value(&[]));
            if lo < 0 || hi >= self.size() {
                return Err(Error::Input {
                    op: "IdentifierPool::embed",
                    reason: format!(
                        "identifiers must be in 0..{}, got values in {lo}..={hi}",
                        self.size()
                    ),
                });
            }
        }
        if let Some(max_norm) = self.config.max_norm {
            let mut table = self.table.shallow_clone();
            tch::no_grad(|| {
                let _ = table.f_embedding_renorm_(&ids.flatten(0, -1), max_norm, 2.0);
            });
        }
        Ok(Tensor::embedding(&self.table, ids, -1, false, false))
    }

    /// [`f_embed`](Self::f_embed) with identifiers from [`draw`](Self::draw) (checked there).
    ///
    /// # Panics
    /// On the errors of [`f_embed`](Self::f_embed).
    pub fn embed(&self, ids: &Tensor) -> Tensor {
        self.f_embed(ids).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Repeats per-sample identifiers for every frame, sample-major (row `b·T + t`), the layout of
/// frames flattened into the batch.
///
/// # Shapes
/// `ids: [B, N]` → `[B·T, N]`.
pub fn repeat_frames(ids: &Tensor, frames: i64) -> Result<Tensor> {
    check_shape("repeat_frames", "ids", ids, &[None, None])?;
    Ok(ids.repeat_interleave_self_int(frames, 0, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, nn::VarStore};

    fn pool(size: i64, dim: i64, kind: IdentifierKind) -> (VarStore, IdentifierPool) {
        let vs = VarStore::new(Device::Cpu);
        let cfg = IdentifierPoolConfig {
            size,
            dim,
            kind,
            ..Default::default()
        };
        let p = cfg.build(vs.root() / "ids").unwrap();
        (vs, p)
    }

    #[test]
    fn draws_are_injective_seeded_and_independent_of_the_batch() {
        let (_vs, p) = pool(12, 16, IdentifierKind::Orthogonal);
        let a = p.draw(12, 7, &[0, 1, 2, 3]).unwrap();
        assert_eq!(a.size(), [4, 12]);
        for b in 0..4 {
            let mut row: Vec<i64> = Vec::try_from(a.get(b)).unwrap();
            row.sort_unstable();
            assert_eq!(
                row,
                (0..12).collect::<Vec<_>>(),
                "sample {b} not a permutation"
            );
        }
        // same seed, same sample → same identifiers, whatever the batch around it
        let again = p.draw(12, 7, &[9, 2]).unwrap();
        assert!(again.get(1).equal(&a.get(2)));
        // other samples and other seeds differ
        assert!(!a.get(0).equal(&a.get(1)));
        assert!(!p.draw(12, 8, &[0]).unwrap().get(0).equal(&a.get(0)));
        // fewer entities than identifiers: distinct values in range
        let few: Vec<i64> = Vec::try_from(p.draw(5, 3, &[4]).unwrap().get(0)).unwrap();
        let mut s = few.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), 5);
        assert!(few.iter().all(|&i| (0..12).contains(&i)));
    }

    #[test]
    fn too_many_entities_is_an_error_naming_both_counts() {
        let (_vs, p) = pool(4, 8, IdentifierKind::Orthogonal);
        let e = p.draw(5, 0, &[0]).unwrap_err();
        assert!(matches!(
            e,
            Error::TooManyEntities {
                entities: 5,
                pool: 4,
                ..
            }
        ));
        assert!(p.first(2, 5).is_err());
        let bad = Tensor::from_slice(&[0i64, 4]);
        assert!(p.f_embed(&bad).unwrap_err().to_string().contains("0..4"));
        assert!(
            IdentifierPoolConfig {
                size: 0,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn repeated_frames_carry_the_same_identifiers() {
        let (_vs, p) = pool(6, 8, IdentifierKind::Orthogonal);
        let ids = p.draw(6, 1, &[0, 1]).unwrap();
        let frames = repeat_frames(&ids, 3).unwrap();
        assert_eq!(frames.size(), [6, 6]);
        for b in 0..2 {
            for t in 0..3 {
                assert!(frames.get(b * 3 + t).equal(&ids.get(b)));
            }
        }
    }

    #[test]
    fn orthogonal_tables_are_orthonormal_and_frozen() {
        for (u, d) in [(5, 8), (8, 8), (10, 4)] {
            let (vs, p) = pool(u, d, IdentifierKind::Orthogonal);
            let t = p.table().to_kind(Kind::Double);
            let gram = if u <= d {
                t.matmul(&t.tr())
            } else {
                t.tr().matmul(&t)
            };
            let eye = Tensor::eye(u.min(d), (Kind::Double, Device::Cpu));
            assert!(gram.allclose(&eye, 1e-5, 1e-5, false), "u={u} d={d}");
            assert!(vs.trainable_variables().is_empty());
            // embedding is a row lookup
            let ids = Tensor::from_slice(&[2i64, 0]);
            assert!(p.embed(&ids).get(0).equal(&p.table().get(2)));
        }
        let (vs, _p) = pool(5, 8, IdentifierKind::Learned);
        assert_eq!(vs.trainable_variables().len(), 1);
    }

    #[test]
    fn learned_rows_are_renormalised_to_max_norm() {
        let (_vs, p) = pool(6, 16, IdentifierKind::Learned);
        let e = p.embed(&Tensor::arange(6, (Kind::Int64, Device::Cpu)));
        let norms = e.norm_scalaropt_dim(2, [1i64], false);
        assert!(norms.max().double_value(&[]) <= 1.0 + 1e-5);
    }
}
