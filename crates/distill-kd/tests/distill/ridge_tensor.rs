//! Closed-form ridge distillation (seed 002), the tch half: batches and fits as tensors, and loading
//! a fit into a tch `Linear`.

use distill_kd::{Error, RidgeConfig, RidgeSolution};
use faer::Mat;
use tch::{Kind, Tensor, nn, nn::Module};

use crate::common::{max_abs_diff_mat, rand_mat};
use crate::tensors::{max_abs_diff, rand_f64};

/// A `[rows, cols]` f64 tensor as a faer matrix.
fn to_mat(t: &Tensor) -> Mat<f64> {
    let (rows, cols) = (t.size()[0], t.size()[1]);
    let v = Vec::<f64>::try_from(t.to_kind(Kind::Double).contiguous().view([-1])).unwrap();
    Mat::from_fn(rows as usize, cols as usize, |i, j| {
        v[i * cols as usize + j]
    })
}

#[test]
fn tensor_batches_fold_like_faer_rows() {
    let (n, d, o) = (50i64, 6i64, 3i64);
    let (x, h) = (rand_f64(1, &[n, d]), rand_f64(2, &[n, o]));
    let (xm, hm) = (rand_mat(1, 50, 6), rand_mat(2, 50, 3));
    assert_eq!(max_abs_diff_mat(&to_mat(&x), &xm), 0.0);
    for intercept in [false, true] {
        let cfg = RidgeConfig {
            lambda: 1e-2,
            intercept,
            ..Default::default()
        };
        let mut rows = cfg.clone().check(6, 3).unwrap();
        rows.push_rows(xm.as_ref(), hm.as_ref()).unwrap();
        // Streamed, with leading batch dimensions flattened into rows.
        let mut tensors = cfg.check(6, 3).unwrap();
        tensors
            .push(
                &x.narrow(0, 0, 20).view([4, 5, d]),
                &h.narrow(0, 0, 20).view([4, 5, o]),
            )
            .unwrap();
        tensors
            .push(&x.narrow(0, 20, 30), &h.narrow(0, 20, 30))
            .unwrap();
        assert_eq!(tensors.rows(), rows.rows());
        let gram_diff = max_abs_diff_mat(&tensors.gram().to_owned(), &rows.gram().to_owned());
        assert!(gram_diff < 1e-12, "{gram_diff}");
        let cross_diff = max_abs_diff_mat(&tensors.cross().to_owned(), &rows.cross().to_owned());
        assert!(cross_diff < 1e-12, "{cross_diff}");
        // The fit's tensors and tensor predictions agree with the faer side.
        let sol = rows.solve().unwrap();
        let w = sol.weight_tensor(Kind::Double, tch::Device::Cpu);
        assert_eq!(w.size(), [o, d]);
        assert_eq!(max_abs_diff_mat(&to_mat(&w.tr()), &sol.weight), 0.0);
        assert_eq!(
            sol.bias_tensor(Kind::Double, tch::Device::Cpu).is_some(),
            intercept
        );
        let predicted = sol.predict(&x.view([5, 10, d])).unwrap();
        assert_eq!(predicted.size(), [5, 10, o]);
        let want = sol.predict_rows(xm.as_ref()).unwrap();
        assert!(max_abs_diff_mat(&to_mat(&predicted.view([n, o])), &want) < 1e-12);
    }
}

/// The default ridge fit of `h` (`[n, H]`) on `x` (`[n, D]`).
fn fit(x: &Tensor, h: &Tensor, intercept: bool) -> RidgeSolution {
    let mut acc = RidgeConfig {
        intercept,
        ..Default::default()
    }
    .check(x.size()[1] as usize, h.size()[1] as usize)
    .unwrap();
    acc.push(x, h).unwrap();
    acc.solve().unwrap()
}

#[test]
fn loads_into_a_tch_linear() {
    let (n, d, o) = (20, 4, 3);
    let x = rand_f64(8, &[n, d]);
    let h = rand_f64(9, &[n, o]);
    for intercept in [false, true] {
        let sol = fit(&x, &h, intercept);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut lin = nn::linear(vs.root() / "enc", d, o, Default::default());
        sol.load_into(&mut lin).unwrap();
        let xf = x.to_kind(Kind::Float);
        let got = lin.forward(&xf);
        let want = sol.predict(&xf).unwrap();
        assert!(max_abs_diff(&got, &want) < 1e-5, "intercept = {intercept}");
        // Still trainable after loading.
        assert!(vs.trainable_variables().iter().all(|v| v.requires_grad()));
    }
    let sol = fit(&x, &h, true);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let mut no_bias = nn::linear(
        vs.root(),
        d,
        o,
        nn::LinearConfig {
            bias: false,
            ..Default::default()
        },
    );
    assert!(matches!(
        sol.load_into(&mut no_bias),
        Err(Error::ShapeMismatch { .. })
    ));
    let mut wrong = nn::linear(vs.root() / "w", o, d, Default::default());
    assert!(matches!(
        sol.load_into(&mut wrong),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn tensor_push_and_predict_reject_bad_input() {
    let mut acc = RidgeConfig::default().check(3, 2).unwrap();
    assert!(matches!(
        acc.push(&rand_f64(0, &[4, 3]), &rand_f64(1, &[5, 2])),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        acc.push(&rand_f64(0, &[4, 2]), &rand_f64(1, &[4, 2])),
        Err(Error::ShapeMismatch { .. })
    ));
    let bad = Tensor::from_slice(&[1.0f64, f64::INFINITY, 0.0]).view([1, 3]);
    assert!(matches!(
        acc.push(&bad, &rand_f64(1, &[1, 2])),
        Err(Error::NonFinite { .. })
    ));
    assert_eq!(acc.rows(), 0);
    acc.push(&rand_f64(2, &[6, 3]), &rand_f64(3, &[6, 2]))
        .unwrap();
    let sol = acc.solve().unwrap();
    assert!(matches!(
        sol.predict(&rand_f64(0, &[4, 2])),
        Err(Error::ShapeMismatch { .. })
    ));
}
