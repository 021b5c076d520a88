//! The polynomial feature map and the structure-only regulariser of the dual-modality trainer
//! (seed 002).

use distill_kd::{Error, PointLoss, Reduction, StructureRegConfig, polynomial_features};
use tch::{Kind, Tensor};

use crate::tensors::{max_abs_diff, rand_f64, scalar};

#[test]
fn polynomial_features_stack_the_powers() {
    let e = Tensor::from_slice(&[2.0f64, -1.0, 0.5, 3.0]).view([2, 2]);
    let f = polynomial_features(&e, 3).unwrap();
    let want = Tensor::from_slice(&[
        2.0f64, -1.0, 4.0, 1.0, 8.0, -1.0, 0.5, 3.0, 0.25, 9.0, 0.125, 27.0,
    ])
    .view([2, 6]);
    assert_eq!(max_abs_diff(&f, &want), 0.0);
    assert_eq!(
        polynomial_features(&rand_f64(1, &[2, 3, 5]), 2)
            .unwrap()
            .size(),
        [2, 3, 10]
    );
    assert!(matches!(
        polynomial_features(&e, 0),
        Err(Error::InvalidConfig {
            field: "degree",
            ..
        })
    ));
}

#[test]
fn structure_only_regulariser_adds_the_weighted_structure_term() {
    let y = rand_f64(1, &[6, 2]);
    let full = rand_f64(2, &[6, 2]).set_requires_grad(true);
    let structure = rand_f64(3, &[6, 2]).set_requires_grad(true);
    let reg = StructureRegConfig {
        lambda_b: 0.4,
        ..Default::default()
    }
    .check()
    .unwrap();
    let terms = reg.forward(&full, &structure, &y).unwrap();
    let l1 = |p: &Tensor| scalar(&(p - &y).abs().mean(Kind::Double));
    assert!((scalar(&terms.full) - l1(&full)).abs() < 1e-14);
    assert!((scalar(&terms.structure) - l1(&structure)).abs() < 1e-14);
    assert!((scalar(&terms.total) - (l1(&full) + 0.4 * l1(&structure))).abs() < 1e-14);
    terms.total.backward();
    // The structure path gets λ_b times the gradient it would get alone.
    let expect = (&structure - &y).sign().detach() * (0.4 / 12.0);
    assert!(max_abs_diff(&structure.grad(), &expect) < 1e-15);
    let mse = StructureRegConfig {
        lambda_b: 0.0,
        loss: PointLoss::Mse,
        reduction: Reduction::Sum,
    }
    .check()
    .unwrap();
    let t = mse.forward(&full, &structure, &y).unwrap();
    assert!((scalar(&t.total) - scalar(&(&full - &y).square().sum(Kind::Double))).abs() < 1e-12);
    assert!(matches!(
        reg.forward(&full, &structure, &y.narrow(0, 0, 3)),
        Err(Error::ShapeMismatch { .. })
    ));
}
