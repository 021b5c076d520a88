//! E(3) symmetry (SPEC §4.4): decoder coordinates rotate, reflect and translate with the input;
//! features, encoders' outputs are invariant. Each graph of the batch gets its own random rigid
//! motion (rotation, optional reflection, translation), which also checks that graphs of a batch
//! do not interact. float64; tolerance 1e-9 relative (`|a − b| ≤ 1e-9·(1 + |b|)`).

use std::f64::consts::TAU;

use graph_nets::{
    EgnnLayerConfig, EgnoConfig, InitEncoderConfig, InitialState, StsgnnConfig, Trajectory,
};
use proptest::prelude::*;
use tch::Tensor;

use crate::common::{
    Draws, Motion, assert_close, global_rng, orthogonal, random_inputs, randomise, store,
    two_graphs,
};

const TOL: f64 = 1e-9;

/// A random rigid motion per graph of [`two_graphs`] (rotation, optional reflection, shift).
pub(crate) fn motions() -> impl Strategy<Value = Motion> {
    let one = (
        prop::array::uniform3(0.0..TAU),
        any::<bool>(),
        prop::array::uniform3(-10.0..10.0f64),
    );
    (one.clone(), one).prop_map(|((a0, r0, s0), (a1, r1, s1))| Motion {
        rotation: vec![(a0, r0), (a1, r1)],
        shift: vec![s0, s1],
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn egnn_layer_is_e3_equivariant(m in motions(), seed in any::<u64>()) {
        let _rng = global_rng();
        let mut draws = Draws::new(seed);
        let graph = two_graphs();
        let vs = store();
        let layer = EgnnLayerConfig { hidden: 8, edge_dim: 2, ..Default::default() }.build(vs.root()).unwrap();
        randomise(&vs, &mut draws);
        let (x, v, h, e) = random_inputs(&mut draws, &graph, 8, 2);
        let out = layer.forward(&x, &h, Some(&v), &graph, Some(&e));
        let moved = layer.forward(&m.apply(&graph, &x, true), &h, Some(&m.apply(&graph, &v, false)), &graph, Some(&e));
        assert_close(&moved.x, &m.apply(&graph, &out.x, true), TOL, "x");
        assert_close(moved.v.as_ref().unwrap(), &m.apply(&graph, out.v.as_ref().unwrap(), false), TOL, "v");
        assert_close(&moved.h, &out.h, TOL, "h");
    }

    #[test]
    fn egno_is_e3_equivariant(m in motions(), with_velocity in any::<bool>(), seed in any::<u64>()) {
        let _rng = global_rng();
        let mut draws = Draws::new(seed);
        let graph = two_graphs();
        let vs = store();
        let cfg = EgnoConfig { node_in: 2, edge_dim: 2, hidden: 8, layers: 2, horizon: 4, time_emb_dim: 6, cond_dim: 3, with_velocity, ..Default::default() };
        let egno = cfg.build(vs.root()).unwrap();
        randomise(&vs, &mut draws);
        let (x, v, h, e) = random_inputs(&mut draws, &graph, 2, 2);
        let z = draws.normal(&[4, graph.num_nodes(), 3]);
        let v = with_velocity.then_some(v);
        let state = InitialState { x: &x, v: v.as_ref(), h: &h, graph: &graph, edge_attr: Some(&e) };
        let out = egno.forward(&state, Some(&z));
        let (xm, vm) = (m.apply(&graph, &x, true), v.as_ref().map(|v| m.apply(&graph, v, false)));
        let moved = egno.forward(&InitialState { x: &xm, v: vm.as_ref(), ..state }, Some(&z));
        assert_close(&moved.x, &m.apply(&graph, &out.x, true), TOL, "x");
        if with_velocity {
            assert_close(moved.v.as_ref().unwrap(), &m.apply(&graph, out.v.as_ref().unwrap(), false), TOL, "v");
        }
        assert_close(&moved.h, &out.h, TOL, "h");
    }

    #[test]
    fn encoders_are_e3_invariant(m in motions(), seed in any::<u64>()) {
        let _rng = global_rng();
        let mut draws = Draws::new(seed);
        let graph = two_graphs();
        let vs = store();
        let init = InitEncoderConfig { node_in: 2, edge_dim: 2, hidden: 8, heads: 2, out_dim: 5, horizon: 4, ..Default::default() }.build(vs.root() / "init").unwrap();
        let dyn_ = StsgnnConfig { node_in: 2, edge_dim: 2, hidden: 8, layers: 2, out_dim: 5, horizon: 4, ..Default::default() }.build(vs.root() / "dyn").unwrap();
        randomise(&vs, &mut draws);
        let (x, v, h, e) = random_inputs(&mut draws, &graph, 2, 2);
        let state = InitialState { x: &x, v: Some(&v), h: &h, graph: &graph, edge_attr: Some(&e) };
        let (xm, vm) = (m.apply(&graph, &x, true), m.apply(&graph, &v, false));
        let z = init.forward(&state);
        let zm = init.forward(&InitialState { x: &xm, v: Some(&vm), ..state });
        assert_close(&zm, &z, TOL, "z_init");

        let n = graph.num_nodes();
        let (xs, vs_) = (draws.normal(&[5, n, 3]), draws.normal(&[5, n, 3]));
        let traj = Trajectory { x: &xs, v: Some(&vs_), h: &h, graph: &graph, edge_attr: Some(&e) };
        let (xsm, vsm) = (m.apply(&graph, &xs, true), m.apply(&graph, &vs_, false));
        let z = dyn_.forward(&traj);
        let zm = dyn_.forward(&Trajectory { x: &xsm, v: Some(&vsm), ..traj });
        assert_close(&zm, &z, TOL, "z_dyn");
    }
}

/// The Fourier temporal convolution of vectors alone commutes with orthogonal maps (no
/// translation: it is fed centred positions).
#[test]
fn equivariant_time_conv_commutes_with_rotations() {
    let _rng = global_rng();
    let mut draws = Draws::new(4);
    let vs = store();
    let conv = graph_nets::EquivariantTimeConvConfig {
        vectors: 2,
        num_modes: 3,
    }
    .build(vs.root())
    .unwrap();
    randomise(&vs, &mut draws);
    let u = draws.normal(&[6, 4, 3, 2]);
    let q = orthogonal([0.3, 1.9, 4.0], true);
    let rotate = |u: &Tensor| u.transpose(-1, -2).matmul(&q.tr()).transpose(-1, -2);
    assert_close(
        &conv.forward(&rotate(&u)),
        &rotate(&conv.forward(&u)),
        TOL,
        "vectors",
    );
}
