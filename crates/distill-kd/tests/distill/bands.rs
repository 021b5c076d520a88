//! Band splitters and the frequency-aligned loss (SDKD eq. 10–11).

use distill_kd::{BandSplitter, Error, FreqAlignConfig, FreqMask, JointBasisSplitter, Reduction};
use tch::{Kind, Tensor};

use crate::common::dft_splitter;
use crate::tensors::{
    chorded_cycle_basis, materialised_basis, max_abs_diff, path_basis, rand_f64, scalar,
    smallest_pairs,
};

const T: i64 = 5;
const N: i64 = 6;
const D: i64 = 3;

/// A splitter over the temporal path graph (T) × a chorded spatial cycle (N) with the K pairs of
/// smallest μ, and the materialised `B_K` for reference.
fn joint(k: usize) -> (JointBasisSplitter, Tensor) {
    let (lt, ut) = path_basis(T);
    let (ls, us) = chorded_cycle_basis(N);
    let pairs = smallest_pairs(&lt, &ls, k);
    let b = materialised_basis(&ut, &us, &pairs);
    (JointBasisSplitter::new(&ut, &us, &pairs).unwrap(), b)
}

#[test]
fn joint_low_band_matches_materialised_kronecker() {
    for k in [0usize, 1, 4, 7, 13, (T * N) as usize] {
        let (split, b) = joint(k);
        let z = rand_f64(k as u64, &[2, T, N, D]);
        let low = split.low_band(&z).unwrap();
        let a = split.coefficients(&z).unwrap();
        for s in 0..2 {
            let flat = z.get(s).reshape([T * N, D]);
            let a_ref = b.tr().matmul(&flat);
            let low_ref = b.matmul(&a_ref).reshape([T, N, D]);
            assert!(
                max_abs_diff(&low.get(s), &low_ref) < 1e-12,
                "low band, K={k}"
            );
            assert!(
                max_abs_diff(&a.get(s), &a_ref) < 1e-12,
                "coefficients, K={k}"
            );
        }
        assert_eq!(a.size(), [2, k as i64, D]);
        let back = split.reconstruct(&a).unwrap();
        assert!(
            max_abs_diff(&back, &low) < 1e-12,
            "B_K a = B_K B_Kᵀ z, K={k}"
        );
    }
}

#[test]
fn joint_bands_reconstruct_and_are_orthogonal_projections() {
    let (split, _) = joint(9);
    let z = rand_f64(11, &[T, N, D]);
    let bands = split.split(&z).unwrap();
    assert!(max_abs_diff(&(&bands.low + &bands.high), &z) < 1e-14);
    // Orthogonal bands, idempotent low band, nothing low left in the high band.
    assert!(scalar(&(&bands.low * &bands.high).sum(Kind::Double)).abs() < 1e-12);
    assert!(max_abs_diff(&split.low_band(&bands.low).unwrap(), &bands.low) < 1e-12);
    assert!(
        split
            .low_band(&bands.high)
            .unwrap()
            .abs()
            .max()
            .double_value(&[])
            < 1e-12
    );
    // K = 0 keeps nothing, K = NT keeps everything.
    let (none, _) = joint(0);
    assert!(none.low_band(&z).unwrap().abs().max().double_value(&[]) == 0.0);
    let (all, _) = joint((T * N) as usize);
    assert!(max_abs_diff(&all.low_band(&z).unwrap(), &z) < 1e-12);
}

#[test]
fn joint_splitter_is_differentiable_and_follows_input_kind() {
    let (split, _) = joint(6);
    let z = rand_f64(3, &[T, N, D])
        .to_kind(Kind::Float)
        .set_requires_grad(true);
    let low = split.low_band(&z).unwrap();
    assert_eq!(low.kind(), Kind::Float);
    // d/dz ‖P z‖² = 2 P z for an orthogonal projection P.
    low.square().sum(Kind::Float).backward();
    assert!(max_abs_diff(&z.grad(), &(&low * 2.0)) < 1e-5);
}

#[test]
fn joint_splitter_rejects_bad_inputs() {
    let (_, ut) = path_basis(T);
    let (_, us) = path_basis(N);
    assert!(matches!(
        JointBasisSplitter::new(&ut, &us, &[(0, 0), (1, 2), (0, 0)]),
        Err(Error::DuplicatePair { j: 0, i: 0 })
    ));
    assert!(matches!(
        JointBasisSplitter::new(&ut, &us, &[(T as usize, 0)]),
        Err(Error::PairOutOfRange { j, temporal, .. }) if j == T as usize && temporal == T as usize
    ));
    let skewed = &ut * 1.1;
    assert!(matches!(
        JointBasisSplitter::new(&skewed, &us, &[(0, 0)]),
        Err(Error::NotOrthonormal { which: "u_t", .. })
    ));
    // Only the columns the selection touches are checked: a bad trailing column is ignored.
    let tail_bad = ut.copy();
    let _ = tail_bad.narrow(1, T - 1, 1).fill_(3.0);
    assert!(JointBasisSplitter::new(&tail_bad, &us, &[(0, 0), (1, 1)]).is_ok());
    let split = JointBasisSplitter::new(&ut, &us, &[(0, 0)]).unwrap();
    let err = split.low_band(&rand_f64(0, &[N, T, D])).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { got, .. } if got == [N, T, D]));
    assert!(matches!(
        split.reconstruct(&rand_f64(0, &[2, D])),
        Err(Error::ShapeMismatch { .. })
    ));
}

/// `cos(2π f t / n)` along axis 0 of a `[n, m]` signal, the same in every column.
fn cosine(n: i64, m: i64, f: f64, phase: f64) -> Tensor {
    let t = Tensor::arange(n, (Kind::Double, tch::Device::Cpu));
    (t * (2.0 * std::f64::consts::PI * f / n as f64) + phase)
        .cos()
        .unsqueeze(1)
        .expand([n, m], false)
        .contiguous()
}

#[test]
fn dft_time_cutoff_separates_low_and_high_modes() {
    let split = dft_splitter(&[0], &[2], FreqMask::Box);
    let (n, m) = (16, 3);
    let low = cosine(n, m, 0.0, 0.0) * 0.3 + cosine(n, m, 1.0, 0.4) + cosine(n, m, 2.0, 1.1) * 0.5;
    let high = cosine(n, m, 3.0, 0.2) * 0.7 + cosine(n, m, 8.0, 0.0) * 0.2 + cosine(n, m, 5.0, 2.0);
    let bands = split.split(&(&low + &high)).unwrap();
    assert!(max_abs_diff(&bands.low, &low) < 1e-12);
    assert!(max_abs_diff(&bands.high, &high) < 1e-12);
    assert_eq!(bands.low.kind(), Kind::Double);
    // Odd length, random signal: exact reconstruction, orthogonality, idempotence.
    let x = rand_f64(5, &[4, 9, 2]);
    let split = dft_splitter(&[-2], &[1], FreqMask::Box);
    let b = split.split(&x).unwrap();
    assert!(max_abs_diff(&(&b.low + &b.high), &x) < 1e-14);
    assert!(scalar(&(&b.low * &b.high).sum(Kind::Double)).abs() < 1e-12);
    assert!(max_abs_diff(&split.low_band(&b.low).unwrap(), &b.low) < 1e-12);
}

#[test]
fn dft_splitter_is_differentiable_in_f32() {
    let split = dft_splitter(&[1], &[2], FreqMask::Box);
    let x = rand_f64(21, &[2, 10, 3])
        .to_kind(Kind::Float)
        .set_requires_grad(true);
    let low = split.low_band(&x).unwrap();
    assert_eq!((low.kind(), low.size()), (Kind::Float, vec![2, 10, 3]));
    // d/dx ‖P x‖² = 2 P x for an orthogonal projection P.
    low.square().sum(Kind::Float).backward();
    assert!(max_abs_diff(&x.grad(), &(&low * 2.0)) < 1e-5);
}

#[test]
fn dft_grid_masks_box_and_ellipse() {
    // A 2-D grid mode with frequencies (2, 2): inside the box |k| ≤ 2 per axis, outside the
    // circle of radius 2.
    let (h, w) = (8i64, 10i64);
    let y = Tensor::arange(h, (Kind::Double, tch::Device::Cpu)).unsqueeze(1);
    let x = Tensor::arange(w, (Kind::Double, tch::Device::Cpu)).unsqueeze(0);
    let two_pi = 2.0 * std::f64::consts::PI;
    let mode = ((&y * (two_pi * 2.0 / h as f64)) + (&x * (two_pi * 2.0 / w as f64)))
        .cos()
        .unsqueeze(0); // [1, H, W]
    let boxed = dft_splitter(&[1, 2], &[2, 2], FreqMask::Box);
    let ellipse = dft_splitter(&[1, 2], &[2, 2], FreqMask::Ellipse);
    assert!(max_abs_diff(&boxed.low_band(&mode).unwrap(), &mode) < 1e-12);
    assert!(
        ellipse
            .low_band(&mode)
            .unwrap()
            .abs()
            .max()
            .double_value(&[])
            < 1e-12
    );
    // A (1, 1) mode is inside both.
    let inner = ((&y * (two_pi / h as f64)) + (&x * (two_pi / w as f64)))
        .sin()
        .unsqueeze(0);
    assert!(max_abs_diff(&ellipse.low_band(&inner).unwrap(), &inner) < 1e-12);
}

#[test]
fn dft_split_applies_the_band_definition_bin_by_bin() {
    // Each real Fourier mode (k_h, k_w) of a 6 × 5 grid is kept whole when `is_low` says so, and
    // removed whole otherwise.
    let (h, w) = (6i64, 5i64);
    let y = Tensor::arange(h, (Kind::Double, tch::Device::Cpu)).unsqueeze(1);
    let x = Tensor::arange(w, (Kind::Double, tch::Device::Cpu)).unsqueeze(0);
    let two_pi = 2.0 * std::f64::consts::PI;
    let signed = |b: i64, n: i64| if 2 * b <= n { b } else { b - n };
    for mask in [FreqMask::Box, FreqMask::Ellipse] {
        let split = dft_splitter(&[0, 1], &[1, 2], mask);
        for (kh, kw) in (0..h).flat_map(|a| (0..w).map(move |b| (a, b))) {
            let mode = ((&y * (two_pi * kh as f64 / h as f64))
                + (&x * (two_pi * kw as f64 / w as f64) + 0.3))
                .cos();
            let low = split.low_band(&mode).unwrap();
            let keep = split.is_low(&[signed(kh, h), signed(kw, w)]).unwrap();
            let want = if keep {
                mode.shallow_clone()
            } else {
                mode.zeros_like()
            };
            assert!(
                max_abs_diff(&low, &want) < 1e-12,
                "{mask:?} mode ({kh}, {kw}), is_low = {keep}"
            );
        }
    }
    let split = dft_splitter(&[3], &[1], FreqMask::Box);
    assert!(matches!(
        split.low_band(&rand_f64(0, &[4, 4])),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn freq_aligned_loss_is_zero_iff_equal() {
    let (split, _) = joint(7);
    let loss = FreqAlignConfig::default().check(split).unwrap();
    let t = rand_f64(1, &[2, T, N, D]);
    assert_eq!(scalar(&loss.forward(&t, &t, Reduction::Mean).unwrap()), 0.0);
    for (i, eps) in [1e-3, 1.0].into_iter().enumerate() {
        let s = &t + rand_f64(10 + i as u64, &[2, T, N, D]) * eps;
        assert!(scalar(&loss.forward(&s, &t, Reduction::Sum).unwrap()) > 0.0);
    }
}

#[test]
fn freq_aligned_loss_alpha_weights_the_low_band_only() {
    // With α → 0 only the high band matters: a difference purely in the low band costs nothing,
    // a difference purely in the high band costs the same for every α. Swapped bands fail both.
    let (split, _) = joint(8);
    let t = rand_f64(2, &[T, N, D]);
    let noise = rand_f64(3, &[T, N, D]);
    let bands = split.split(&noise).unwrap();
    let s_low = &t + &bands.low;
    let s_high = &t + &bands.high;
    let at = |alpha: f64, s: &Tensor| {
        let l = FreqAlignConfig {
            alpha,
            ..Default::default()
        }
        .check(&split)
        .unwrap();
        scalar(&l.forward(s, &t, Reduction::Sum).unwrap())
    };
    let low_energy = scalar(&bands.low.square().sum(Kind::Double));
    let high_energy = scalar(&bands.high.square().sum(Kind::Double));
    assert!(low_energy > 1e-3 && high_energy > 1e-3);
    assert!(at(0.0, &s_low) < 1e-20);
    assert!((at(1.0, &s_low) - low_energy).abs() < 1e-10);
    assert!((at(0.25, &s_low) - 0.25 * low_energy).abs() < 1e-10);
    assert!((at(0.0, &s_high) - high_energy).abs() < 1e-10);
    assert!((at(5.0, &s_high) - high_energy).abs() < 1e-10);
}

#[test]
fn freq_aligned_loss_matches_eq10_on_separately_split_signals() {
    let split = dft_splitter(&[0], &[1], FreqMask::Box);
    let alpha = 0.3;
    let loss = FreqAlignConfig {
        alpha,
        lambda: 2.0,
        detach_teacher: true,
    }
    .check(&split)
    .unwrap();
    let s = rand_f64(4, &[12, 4]);
    let t = rand_f64(5, &[12, 4]);
    let (bs, bt) = (split.split(&s).unwrap(), split.split(&t).unwrap());
    let eq10 = scalar(&(&bs.high - &bt.high).square().sum(Kind::Double))
        + alpha * scalar(&(&bs.low - &bt.low).square().sum(Kind::Double));
    assert!((scalar(&loss.forward(&s, &t, Reduction::Sum).unwrap()) - eq10).abs() < 1e-12);
    assert!((scalar(&loss.forward(&s, &t, Reduction::Mean).unwrap()) - eq10 / 48.0).abs() < 1e-12);
    assert_eq!(
        loss.forward(&s, &t, Reduction::None).unwrap().size(),
        [12, 4]
    );
    // Eq. 11: task + λ L_KD.
    let y = rand_f64(6, &[12, 4]);
    let terms = loss.objective(&s, &y, &s, &t, Reduction::Sum).unwrap();
    let task = scalar(&(&s - &y).square().sum(Kind::Double));
    assert!((scalar(&terms.task) - task).abs() < 1e-12);
    assert!((scalar(&terms.total) - (task + 2.0 * eq10)).abs() < 1e-10);
}

#[test]
fn freq_aligned_loss_detaches_the_teacher() {
    let (split, _) = joint(5);
    let s = rand_f64(7, &[T, N, D]).set_requires_grad(true);
    let t = rand_f64(8, &[T, N, D]).set_requires_grad(true);
    let detached = FreqAlignConfig::default().check(&split).unwrap();
    detached
        .forward(&s, &t, Reduction::Mean)
        .unwrap()
        .backward();
    assert!(s.grad().defined() && scalar(&s.grad().abs().sum(Kind::Double)) > 0.0);
    assert!(!t.grad().defined());
    // With detach_teacher = false the teacher gets the opposite gradient.
    let s2 = s.detach().set_requires_grad(true);
    let t2 = t.detach().set_requires_grad(true);
    let attached = FreqAlignConfig {
        detach_teacher: false,
        ..Default::default()
    }
    .check(&split)
    .unwrap();
    attached
        .forward(&s2, &t2, Reduction::Mean)
        .unwrap()
        .backward();
    assert!(max_abs_diff(&t2.grad(), &(-s2.grad())) < 1e-15);
    // Mismatched shapes and bad settings are errors.
    assert!(matches!(
        detached.forward(&s, &t.narrow(0, 0, 2), Reduction::Mean),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        FreqAlignConfig {
            alpha: -1.0,
            ..Default::default()
        }
        .check(&split),
        Err(Error::InvalidConfig { field: "alpha", .. })
    ));
}
