//! Node permutations, batching, and the conditioning contract. float64; tolerance 1e-10 relative.

use graph_nets::{
    EgnnLayerConfig, EgnoConfig, GraphBatch, InitEncoderConfig, InitialState, StsgnnConfig,
    Trajectory,
};
use proptest::prelude::*;
use tch::Tensor;

use crate::common::{
    Draws, F64, assert_close, batch_of, global_rng, max_abs_diff, random_inputs, randomise, store,
    two_graph_edges,
};

const TOL: f64 = 1e-10;

fn egno_config() -> EgnoConfig {
    EgnoConfig {
        node_in: 2,
        edge_dim: 2,
        hidden: 8,
        layers: 2,
        horizon: 4,
        time_emb_dim: 6,
        cond_dim: 3,
        ..Default::default()
    }
}
fn init_config() -> InitEncoderConfig {
    InitEncoderConfig {
        node_in: 2,
        edge_dim: 2,
        hidden: 8,
        heads: 2,
        out_dim: 5,
        horizon: 4,
        ..Default::default()
    }
}
fn sts_config() -> StsgnnConfig {
    StsgnnConfig {
        node_in: 2,
        edge_dim: 2,
        hidden: 8,
        layers: 2,
        out_dim: 5,
        horizon: 4,
        ..Default::default()
    }
}

/// The batch with nodes relabelled by `perms` (one per graph, old local id → new local id) and
/// each graph's edge list reversed. Returns the graph, `p` (old global → new global) and the
/// edge order (new edge k is old edge `order[k]`).
fn permuted(perms: &[Vec<i64>]) -> (GraphBatch, Tensor, Tensor) {
    let graphs = two_graph_edges();
    let (mut relabelled, mut p, mut order) = (Vec::new(), Vec::new(), Vec::new());
    let (mut node_offset, mut edge_offset) = (0, 0);
    for ((n, edges), perm) in graphs.iter().zip(perms) {
        let new_edges: Vec<_> = edges
            .iter()
            .rev()
            .map(|&(i, j)| (perm[i as usize], perm[j as usize]))
            .collect();
        relabelled.push((*n, new_edges));
        p.extend(perm.iter().map(|&q| q + node_offset));
        order.extend((0..edges.len() as i64).rev().map(|k| k + edge_offset));
        node_offset += n;
        edge_offset += edges.len() as i64;
    }
    (
        batch_of(&relabelled),
        Tensor::from_slice(&p),
        Tensor::from_slice(&order),
    )
}

/// `inv` with `inv[p[n]] = n`: `x.index_select(0, inv)` moves row `n` to row `p[n]`.
fn inverse(p: &Tensor) -> Tensor {
    p.argsort(0, false)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    #[test]
    fn all_models_are_permutation_equivariant(
        p0 in Just((0..5).collect::<Vec<i64>>()).prop_shuffle(),
        p1 in Just((0..4).collect::<Vec<i64>>()).prop_shuffle(),
        seed in any::<u64>(),
    ) {
        let _rng = global_rng();
        let mut draws = Draws::new(seed);
        let graph = batch_of(&two_graph_edges());
        let (pgraph, p, order) = permuted(&[p0, p1]);
        let inv = inverse(&p);
        let vs = store();
        let egnn = EgnnLayerConfig { hidden: 8, edge_dim: 2, ..Default::default() }.build(vs.root() / "egnn").unwrap();
        let egno = egno_config().build(vs.root() / "egno").unwrap();
        let init = init_config().build(vs.root() / "init").unwrap();
        let sts = sts_config().build(vs.root() / "sts").unwrap();
        randomise(&vs, &mut draws);

        let n = graph.num_nodes();
        let (x, v, h, e) = random_inputs(&mut draws, &graph, 2, 2);
        let (px, pv, ph, pe) = (x.index_select(0, &inv), v.index_select(0, &inv), h.index_select(0, &inv), e.index_select(0, &order));

        let h8 = draws.normal(&[n, 8]);
        let a = egnn.forward(&x, &h8, Some(&v), &graph, Some(&e));
        let b = egnn.forward(&px, &h8.index_select(0, &inv), Some(&pv), &pgraph, Some(&pe));
        assert_close(&b.x.index_select(0, &p), &a.x, TOL, "egnn x");
        assert_close(&b.h.index_select(0, &p), &a.h, TOL, "egnn h");

        let z = draws.normal(&[4, n, 3]);
        let state = InitialState { x: &x, v: Some(&v), h: &h, graph: &graph, edge_attr: Some(&e) };
        let pstate = InitialState { x: &px, v: Some(&pv), h: &ph, graph: &pgraph, edge_attr: Some(&pe) };
        let a = egno.forward(&state, Some(&z));
        let b = egno.forward(&pstate, Some(&z.index_select(1, &inv)));
        assert_close(&b.x.index_select(1, &p), &a.x, TOL, "egno x");
        assert_close(&b.v.unwrap().index_select(1, &p), &a.v.unwrap(), TOL, "egno v");
        assert_close(&b.h.index_select(1, &p), &a.h, TOL, "egno h");

        assert_close(&init.forward(&pstate).index_select(1, &p), &init.forward(&state), TOL, "z_init");

        let (xs, vs_) = (draws.normal(&[5, n, 3]), draws.normal(&[5, n, 3]));
        let traj = Trajectory { x: &xs, v: Some(&vs_), h: &h, graph: &graph, edge_attr: Some(&e) };
        let (pxs, pvs) = (xs.index_select(1, &inv), vs_.index_select(1, &inv));
        let ptraj = Trajectory { x: &pxs, v: Some(&pvs), h: &ph, graph: &pgraph, edge_attr: Some(&pe) };
        assert_close(&sts.forward(&ptraj).index_select(1, &p), &sts.forward(&traj), TOL, "z_dyn");
    }
}

#[test]
fn a_batch_of_two_graphs_equals_the_graphs_run_apart() {
    let _rng = global_rng();
    let mut draws = Draws::new(1);
    let graphs = two_graph_edges();
    let (ga, gb, gab) = (
        batch_of(&graphs[..1]),
        batch_of(&graphs[1..]),
        batch_of(&graphs),
    );
    let vs = store();
    let egno = egno_config().build(vs.root() / "egno").unwrap();
    let init = init_config().build(vs.root() / "init").unwrap();
    let sts = sts_config().build(vs.root() / "sts").unwrap();
    randomise(&vs, &mut draws);

    let n = gab.num_nodes();
    let (x, v, h, e) = random_inputs(&mut draws, &gab, 2, 2);
    let (xs, vs_) = (draws.normal(&[5, n, 3]), draws.normal(&[5, n, 3]));
    let z = draws.normal(&[4, n, 3]);
    let split = |t: &Tensor, dim: i64| gab.split_nodes(t, dim);
    let (xp, vp, hp, zp, xsp, vsp) = (
        split(&x, 0),
        split(&v, 0),
        split(&h, 0),
        split(&z, 1),
        split(&xs, 1),
        split(&vs_, 1),
    );
    let ep = e.split_with_sizes(gab.edge_counts(), 0);

    let state = InitialState {
        x: &x,
        v: Some(&v),
        h: &h,
        graph: &gab,
        edge_attr: Some(&e),
    };
    let together = egno.forward(&state, Some(&z));
    let z_init = init.forward(&state);
    let z_dyn = sts.forward(&Trajectory {
        x: &xs,
        v: Some(&vs_),
        h: &h,
        graph: &gab,
        edge_attr: Some(&e),
    });
    for (k, g) in [ga, gb].iter().enumerate() {
        let s = InitialState {
            x: &xp[k],
            v: Some(&vp[k]),
            h: &hp[k],
            graph: g,
            edge_attr: Some(&ep[k]),
        };
        let apart = egno.forward(&s, Some(&zp[k]));
        assert_close(&apart.x, &split(&together.x, 1)[k], TOL, "egno x");
        assert_close(&apart.h, &split(&together.h, 1)[k], TOL, "egno h");
        assert_close(&init.forward(&s), &split(&z_init, 1)[k], TOL, "z_init");
        let t = Trajectory {
            x: &xsp[k],
            v: Some(&vsp[k]),
            h: &hp[k],
            graph: g,
            edge_attr: Some(&ep[k]),
        };
        assert_close(&sts.forward(&t), &split(&z_dyn, 1)[k], TOL, "z_dyn");
    }
}

/// `z_cond = None` is plain EGNO: equal to a `cond_dim = 0` decoder holding the same weights
/// (its input embedding without the conditioning columns), and to `z_cond = 0`. Flattened
/// `[T·N, d]` conditioning (row `t·N + n`) equals `[T, N, d]`; a non-zero one changes the output.
#[test]
fn no_conditioning_is_plain_egno() {
    let _rng = global_rng();
    let mut draws = Draws::new(2);
    let graph = batch_of(&two_graph_edges());
    let cond_vs = store();
    let cond = egno_config().build(cond_vs.root()).unwrap();
    randomise(&cond_vs, &mut draws);
    let plain_vs = store();
    let plain = EgnoConfig {
        cond_dim: 0,
        ..egno_config()
    }
    .build(plain_vs.root())
    .unwrap();
    let src = cond_vs.variables();
    tch::no_grad(|| {
        for (name, mut t) in plain_vs.variables() {
            let s = &src[&name];
            let s = if name == "embed.weight" {
                s.narrow(1, 0, t.size()[1])
            } else {
                s.shallow_clone()
            };
            t.copy_(&s);
        }
    });

    let n = graph.num_nodes();
    let (x, v, h, e) = random_inputs(&mut draws, &graph, 2, 2);
    let state = InitialState {
        x: &x,
        v: Some(&v),
        h: &h,
        graph: &graph,
        edge_attr: Some(&e),
    };
    let none = cond.forward(&state, None);
    let base = plain.forward(&state, None);
    assert_close(&none.x, &base.x, TOL, "x vs plain EGNO");
    assert_close(&none.h, &base.h, TOL, "h vs plain EGNO");
    let zeros = cond.forward(&state, Some(&Tensor::zeros([4, n, 3], F64)));
    assert_close(&zeros.x, &none.x, TOL, "x with z = 0");

    let z = draws.normal(&[4, n, 3]);
    let with = cond.forward(&state, Some(&z));
    let flat = cond.forward(&state, Some(&z.view([4 * n, 3])));
    assert_close(&flat.x, &with.x, TOL, "flattened z");
    assert!(
        max_abs_diff(&with.x, &none.x) > 1e-3,
        "the conditioning must change the prediction"
    );
}

/// The time convolution switch changes the model (and with it off, the time-conv weights are absent).
#[test]
fn time_conv_is_configurable() {
    let _rng = global_rng();
    let vs_on = store();
    let _on = egno_config().build(vs_on.root()).unwrap();
    let vs_off = store();
    let _off = EgnoConfig {
        time_conv: false,
        ..egno_config()
    }
    .build(vs_off.root())
    .unwrap();
    let names = |vs: &tch::nn::VarStore| {
        vs.variables()
            .into_keys()
            .filter(|k| k.contains("time_conv"))
            .count()
    };
    assert_eq!(names(&vs_on), 2 * 2 * 2); // 2 layers × {h, x} × {re, im}
    assert_eq!(names(&vs_off), 0);
}
