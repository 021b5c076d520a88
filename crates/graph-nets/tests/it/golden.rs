//! Golden tests against eager PyTorch. The fixture `tests/golden/golden.{json,safetensors}` is
//! written by the committed script `tests/golden/make_golden.py` from the independent PyTorch
//! reference `tests/golden/reference.py` (torch 2.13.0 of the project venv):
//!
//! ```sh
//! .venv/bin/python crates/graph-nets/tests/golden/make_golden.py
//! ```
//!
//! The PyTorch parameters load into the Rust VarStore under the same names (every name must exist
//! on both sides), all in float64. Tolerance: `|rust − torch| ≤ 1e-9·(1 + |torch|)`.

use std::collections::HashMap;
use std::path::PathBuf;

use graph_nets::{
    EgnnLayerConfig, EgnoConfig, EquivariantTimeConvConfig, GraphBatch, InitialState,
    SpectralTimeConvConfig,
};
use serde::de::DeserializeOwned;
use tch::Tensor;

use crate::common::{CPU, assert_close, global_rng, read_fixture, store};

const TOL: f64 = 1e-9;

struct Fixture {
    meta: serde_json::Value,
    tensors: HashMap<String, Tensor>,
    path: PathBuf,
}

impl Fixture {
    fn load() -> Self {
        let (meta, tensors, path) = read_fixture("golden", "golden");
        Self {
            meta,
            tensors,
            path,
        }
    }

    fn config<T: DeserializeOwned>(&self, key: &str) -> T {
        serde_json::from_value(self.meta[key].clone()).unwrap()
    }

    fn get(&self, name: &str) -> &Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("fixture has no tensor `{name}`"))
    }

    fn graph(&self) -> GraphBatch {
        let sizes: Vec<i64> = serde_json::from_value(self.meta["sizes"].clone()).unwrap();
        let edges: Vec<Vec<(i64, i64)>> =
            serde_json::from_value(self.meta["edges"].clone()).unwrap();
        let parts: Vec<_> = sizes
            .iter()
            .zip(&edges)
            .map(|(&n, e)| GraphBatch::from_edges(n, e, CPU).unwrap())
            .collect();
        GraphBatch::batch(&parts).unwrap()
    }

    /// Loads the parameters under `prefix` into `vs` and checks both sides have the same names.
    fn load_params(&self, vs: &tch::nn::VarStore, prefix: &str) {
        tch::no_grad(|| vs.read_safetensors(&self.path)).unwrap();
        let in_file = self
            .tensors
            .keys()
            .filter(|k| k.starts_with(&format!("{prefix}.")))
            .count();
        assert_eq!(
            vs.len(),
            in_file,
            "parameter names of `{prefix}` differ between Rust and PyTorch"
        );
    }
}

#[test]
fn egnn_layer_matches_pytorch() {
    // Building draws random initial weights (then replaced by the fixture's).
    let _rng = global_rng();
    let fx = Fixture::load();
    let vs = store();
    let layer = fx
        .config::<EgnnLayerConfig>("egnn")
        .build(vs.root() / "egnn")
        .unwrap();
    fx.load_params(&vs, "egnn");
    let graph = fx.graph();
    let out = layer.forward(
        fx.get("in.egnn.x"),
        fx.get("in.egnn.h"),
        Some(fx.get("in.egnn.v")),
        &graph,
        Some(fx.get("in.egnn.edge_attr")),
    );
    assert_close(&out.x, fx.get("out.egnn.x"), TOL, "x");
    assert_close(&out.h, fx.get("out.egnn.h"), TOL, "h");
    assert_close(out.v.as_ref().unwrap(), fx.get("out.egnn.v"), TOL, "v");
}

#[test]
fn fourier_temporal_convolutions_match_pytorch() {
    // Building draws random initial weights (then replaced by the fixture's).
    let _rng = global_rng();
    let fx = Fixture::load();
    let vs = store();
    let conv = fx
        .config::<SpectralTimeConvConfig>("conv_h")
        .build(vs.root() / "conv_h")
        .unwrap();
    fx.load_params(&vs, "conv_h");
    assert_close(
        &conv.forward(fx.get("in.conv_h")),
        fx.get("out.conv_h"),
        TOL,
        "features",
    );

    let vs = store();
    let conv = fx
        .config::<EquivariantTimeConvConfig>("conv_x")
        .build(vs.root() / "conv_x")
        .unwrap();
    fx.load_params(&vs, "conv_x");
    assert_close(
        &conv.forward(fx.get("in.conv_x")),
        fx.get("out.conv_x"),
        TOL,
        "vectors",
    );
}

#[test]
fn egno_decoder_matches_pytorch_with_and_without_conditioning() {
    // Building draws random initial weights (then replaced by the fixture's).
    let _rng = global_rng();
    let fx = Fixture::load();
    let vs = store();
    let egno = fx
        .config::<EgnoConfig>("egno")
        .build(vs.root() / "egno")
        .unwrap();
    fx.load_params(&vs, "egno");
    let graph = fx.graph();
    let state = InitialState {
        x: fx.get("in.egno.x"),
        v: Some(fx.get("in.egno.v")),
        h: fx.get("in.egno.h"),
        graph: &graph,
        edge_attr: Some(fx.get("in.egno.edge_attr")),
    };
    for (z, key) in [
        (Some(fx.get("in.egno.z_cond")), "egno"),
        (None, "egno_plain"),
    ] {
        let out = egno.forward(&state, z);
        assert_close(
            &out.x,
            fx.get(&format!("out.{key}.x")),
            TOL,
            &format!("{key} x"),
        );
        assert_close(
            out.v.as_ref().unwrap(),
            fx.get(&format!("out.{key}.v")),
            TOL,
            &format!("{key} v"),
        );
        assert_close(
            &out.h,
            fx.get(&format!("out.{key}.h")),
            TOL,
            &format!("{key} h"),
        );
    }
}
