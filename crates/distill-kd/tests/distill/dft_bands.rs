//! The DFT band definition (SDKD eq. 10 `Ψ_l` with a cutoff), without tensors: the settings and
//! which bins are low.

use distill_kd::{DftSplitter, DftSplitterConfig, Error, FreqMask};

use crate::common::dft_splitter;

#[test]
fn box_and_ellipse_masks_keep_the_expected_bins() {
    let boxed = dft_splitter(&[0, 1], &[2, 2], FreqMask::Box);
    let ellipse = dft_splitter(&[0, 1], &[2, 2], FreqMask::Ellipse);
    let low = |s: &DftSplitter, k: [i64; 2]| s.is_low(&k).unwrap();
    for k in [[0, 0], [2, 2], [-2, 1], [1, -2]] {
        assert!(low(&boxed, k), "box keeps {k:?}");
    }
    for k in [[3, 0], [0, -3], [3, 3]] {
        assert!(!low(&boxed, k), "box drops {k:?}");
    }
    // The circle of radius 2: (2, 0) and (1, 1) are in, (2, 2) and (2, 1) are out.
    for k in [[0, 0], [2, 0], [0, -2], [1, 1], [-1, 1]] {
        assert!(low(&ellipse, k), "ellipse keeps {k:?}");
    }
    for k in [[2, 2], [2, 1], [-1, -2], [3, 0]] {
        assert!(!low(&ellipse, k), "ellipse drops {k:?}");
    }
    // Symmetric under k → −k, whatever the mask.
    for s in [&boxed, &ellipse] {
        for k in (-4..=4).flat_map(|a| (-4..=4).map(move |b| [a, b])) {
            assert_eq!(low(s, k), low(s, [-k[0], -k[1]]));
        }
    }
    // An ellipse axis with cutoff 0 keeps only k = 0 along it; a 1-D box is |k| ≤ c.
    let flat = dft_splitter(&[0, 1], &[0, 3], FreqMask::Ellipse);
    assert!(low(&flat, [0, 3]) && !low(&flat, [1, 0]));
    let time = dft_splitter(&[0], &[1], FreqMask::Box);
    assert_eq!(
        (-3..=3)
            .map(|k| time.is_low(&[k]).unwrap())
            .collect::<Vec<_>>(),
        [false, false, true, true, true, false, false]
    );
    assert!(matches!(
        time.is_low(&[0, 1]),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn dft_config_is_validated() {
    let bad = |dims: Vec<i64>, cutoffs: Vec<usize>| {
        DftSplitterConfig {
            dims,
            cutoffs,
            mask: FreqMask::Box,
        }
        .check()
    };
    assert!(matches!(
        bad(vec![], vec![]),
        Err(Error::InvalidConfig { field: "dims", .. })
    ));
    assert!(matches!(
        bad(vec![0, 1], vec![1]),
        Err(Error::InvalidConfig { field: "dims", .. })
    ));
    assert!(matches!(
        bad(vec![1, 1], vec![1, 1]),
        Err(Error::InvalidConfig { field: "dims", .. })
    ));
    assert_eq!(bad(vec![-3], vec![2]).unwrap().config().dims, [-3]);
    let cfg: DftSplitterConfig = serde_json::from_str(r#"{"dims": [-3], "cutoffs": [2]}"#).unwrap();
    assert_eq!(cfg.mask, FreqMask::Box);
    assert!(
        serde_json::from_str::<DftSplitterConfig>(r#"{"dims": [0], "cutoffs": [1], "cutof": 2}"#)
            .is_err()
    );
}
