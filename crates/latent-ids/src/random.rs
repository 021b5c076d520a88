//! Explicit, seeded randomness (ChaCha8 streams), so that identifier draws, augmentations,
//! interpolation times and noise are the same on every run and independent of libtorch's
//! process-global generator.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use tch::{Device, Kind, Tensor};

/// The ChaCha8 stream `stream` of `seed`.
pub fn seeded_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// What a stream is drawn for. One training step uses one seed and the sample index as the
/// stream for several kinds of draw; each kind has its own ChaCha8 key, so that the draws of one
/// sample are independent of each other. (Drawn from one stream, the noise `x_0` of the
/// interpolant would repeat the Gaussian words that chose the sample's rotation and
/// identifiers, and so tell the model, during training only, the rotation it has to predict.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The injection of identifiers of a sample.
    Identifiers,
    /// The random rotation and translation of a sample.
    RigidMotion,
    /// The interpolation time and the noise of a training sample.
    Interpolant,
    /// The initial noise of a sampled trajectory.
    SamplingNoise,
}

impl Purpose {
    /// The ChaCha8 stream `stream` of `seed` for this purpose: the key is `seed` and a tag of the
    /// purpose, so streams of different purposes never share words.
    pub fn rng(self, seed: u64, stream: u64) -> ChaCha8Rng {
        let tag: u64 = match self {
            Purpose::Identifiers => 0x1D5,
            Purpose::RigidMotion => 0x5E3,
            Purpose::Interpolant => 0x1E7,
            Purpose::SamplingNoise => 0x0A5E,
        };
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&tag.to_le_bytes());
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_stream(stream);
        rng
    }
}

/// A tensor of standard-normal draws.
///
/// # Shapes
/// → `shape`, of `kind` on `device`.
pub fn normal(rng: &mut ChaCha8Rng, shape: &[i64], (kind, device): (Kind, Device)) -> Tensor {
    let n: i64 = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
    Tensor::from_slice(&v)
        .view(shape)
        .to_kind(kind)
        .to_device(device)
}

/// `n` draws uniform in `[lo, hi)`.
pub fn uniform(rng: &mut ChaCha8Rng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// A rotation matrix uniform on SO(3) (Haar): Gram–Schmidt of a Gaussian matrix's columns (the
/// QR factor with a positive diagonal, Haar on O(3)), the last column negated when the
/// determinant is negative.
pub fn random_rotation(rng: &mut ChaCha8Rng) -> [[f64; 3]; 3] {
    loop {
        let g: [[f64; 3]; 3] =
            std::array::from_fn(|_| std::array::from_fn(|_| StandardNormal.sample(rng)));
        // columns c_j = g[.][j]
        let col = |j: usize| [g[0][j], g[1][j], g[2][j]];
        let dot = |a: [f64; 3], b: [f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
        let mut q: Vec<[f64; 3]> = Vec::with_capacity(3);
        let mut degenerate = false;
        for j in 0..3 {
            let mut v = col(j);
            for u in &q {
                let d = dot(v, *u);
                for k in 0..3 {
                    v[k] -= d * u[k];
                }
            }
            let n = dot(v, v).sqrt();
            if n < 1e-9 {
                degenerate = true;
                break;
            }
            q.push([v[0] / n, v[1] / n, v[2] / n]);
        }
        if degenerate {
            continue;
        }
        let (a, b, c) = (q[0], q[1], q[2]);
        let det = a[0] * (b[1] * c[2] - b[2] * c[1]) - a[1] * (b[0] * c[2] - b[2] * c[0])
            + a[2] * (b[0] * c[1] - b[1] * c[0]);
        let c = if det < 0.0 { [-c[0], -c[1], -c[2]] } else { c };
        return std::array::from_fn(|i| [a[i], b[i], c[i]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotations_are_proper_and_orthogonal() {
        let mut rng = seeded_rng(5, 0);
        for _ in 0..20 {
            let r = random_rotation(&mut rng);
            let m = Tensor::from_slice(&r.concat()).view([3, 3]);
            let eye = Tensor::eye(3, (Kind::Double, Device::Cpu));
            assert!(m.matmul(&m.tr()).allclose(&eye, 1e-12, 1e-12, false));
            assert!((m.det().double_value(&[]) - 1.0).abs() < 1e-12);
        }
        let a = normal(&mut seeded_rng(1, 2), &[3], (Kind::Double, Device::Cpu));
        let b = normal(&mut seeded_rng(1, 2), &[3], (Kind::Double, Device::Cpu));
        assert!(a.equal(&b));
        assert!(!a.equal(&normal(
            &mut seeded_rng(1, 3),
            &[3],
            (Kind::Double, Device::Cpu)
        )));
    }

    #[test]
    fn purposes_draw_independent_words() {
        let all = [
            Purpose::Identifiers,
            Purpose::RigidMotion,
            Purpose::Interpolant,
            Purpose::SamplingNoise,
        ];
        let words = |p: Purpose, seed, stream| -> Vec<u64> {
            let mut rng = p.rng(seed, stream);
            (0..16).map(|_| rng.random::<u64>()).collect()
        };
        for (i, &p) in all.iter().enumerate() {
            assert_eq!(words(p, 3, 7), words(p, 3, 7), "{p:?}: not deterministic");
            assert_ne!(words(p, 3, 7), words(p, 3, 8), "{p:?}: streams collide");
            assert_ne!(words(p, 3, 7), words(p, 4, 7), "{p:?}: seeds collide");
            let a = words(p, 3, 7);
            for &q in &all[i + 1..] {
                // no word of one purpose's stream reappears in another's, at any offset
                let b = words(q, 3, 7);
                assert!(
                    a.iter().all(|w| !b.contains(w)),
                    "{p:?} and {q:?} share words"
                );
            }
        }
    }
}
