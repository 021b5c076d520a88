//! Training: gradients reach every parameter; a tiny decoder overfits a tiny trajectory set;
//! models run on the device of their VarStore.

use graph_nets::{
    EgnoConfig, GraphBatch, InitEncoderConfig, InitialState, StsgnnConfig, Trajectory,
};
use tch::{Device, Kind, Tensor, nn, nn::OptimizerConfig};

use crate::common::{
    CPU, Draws, assert_close, global_rng, random_inputs, seed_global_rng, store, two_graphs,
};

/// The trainable variables of `vs` without a non-zero gradient.
fn without_grad(vs: &nn::VarStore) -> Vec<String> {
    let mut missing: Vec<String> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| {
            let g = t.grad();
            !g.defined() || g.abs().sum(Kind::Double).double_value(&[]) == 0.0
        })
        .map(|(name, _)| name)
        .collect();
    missing.sort();
    missing
}

#[track_caller]
fn assert_all_grads(vs: &nn::VarStore) {
    let missing = without_grad(vs);
    assert!(missing.is_empty(), "no gradient reaches {missing:?}");
}

#[test]
fn gradients_reach_every_parameter() {
    let _rng = global_rng();
    let mut draws = Draws::new(1);
    let graph = two_graphs();
    let n = graph.num_nodes();
    let (x, v, h, e) = random_inputs(&mut draws, &graph, 2, 2);
    let state = InitialState {
        x: &x,
        v: Some(&v),
        h: &h,
        graph: &graph,
        edge_attr: Some(&e),
    };
    // A random linear read-out of every output, so no output is left out of the loss.
    let readout = |t: &Tensor, draws: &mut Draws| (t * draws.normal(&t.size())).sum(Kind::Double);

    for time_conv in [true, false] {
        let vs = store();
        let egno = EgnoConfig {
            node_in: 2,
            edge_dim: 2,
            hidden: 8,
            layers: 2,
            horizon: 4,
            time_emb_dim: 6,
            cond_dim: 3,
            time_conv,
            ..Default::default()
        }
        .build(vs.root())
        .unwrap();
        let z = draws.normal(&[4, n, 3]).set_requires_grad(true);
        let out = egno.forward(&state, Some(&z));
        (readout(&out.x, &mut draws)
            + readout(out.v.as_ref().unwrap(), &mut draws)
            + readout(&out.h, &mut draws))
        .backward();
        // The one exception, by construction (as in EGNO): the first layer's vector convolution
        // sees x_0 and v_0 copied to every frame, a signal with only the zero frequency, whose
        // Fourier coefficient is real; irfft drops the imaginary part of that bin, so the
        // imaginary weights of that layer cannot matter.
        let expected: &[&str] = if time_conv {
            &["layers.0.time_conv_x.weight_im"]
        } else {
            &[]
        };
        assert_eq!(without_grad(&vs), expected, "time_conv = {time_conv}");
        assert!(
            z.grad().abs().sum(Kind::Double).double_value(&[]) > 0.0,
            "no gradient reaches z_cond"
        );
    }

    let vs = store();
    let init = InitEncoderConfig {
        node_in: 2,
        edge_dim: 2,
        hidden: 8,
        heads: 2,
        out_dim: 5,
        horizon: 4,
        ..Default::default()
    }
    .build(vs.root())
    .unwrap();
    readout(&init.forward(&state), &mut draws).backward();
    assert_all_grads(&vs);

    let vs = store();
    let sts = StsgnnConfig {
        node_in: 2,
        edge_dim: 2,
        hidden: 8,
        layers: 2,
        out_dim: 5,
        horizon: 4,
        ..Default::default()
    }
    .build(vs.root())
    .unwrap();
    let (xs, vs_) = (draws.normal(&[5, n, 3]), draws.normal(&[5, n, 3]));
    readout(
        &sts.forward(&Trajectory {
            x: &xs,
            v: Some(&vs_),
            h: &h,
            graph: &graph,
            edge_attr: Some(&e),
        }),
        &mut draws,
    )
    .backward();
    assert_all_grads(&vs);
}

/// Damped springs along the bonds of each system, integrated with small Euler steps; returns
/// `(x_0, v_0, x_{1..=T})` with `x_{1..=T}: [T, N, 3]`.
fn spring_trajectories(
    draws: &mut Draws,
    graph: &GraphBatch,
    frames: i64,
    opts: (Kind, Device),
) -> (Tensor, Tensor, Tensor) {
    let n = graph.num_nodes();
    let mut x = draws.normal_in(&[n, 3], opts);
    let mut v = draws.normal_in(&[n, 3], opts) * 0.5;
    let (x0, v0) = (x.copy(), v.copy());
    let mut frames_out = Vec::new();
    for _ in 0..frames {
        for _ in 0..10 {
            let force = -graph.sum_at_receivers(&graph.edge_vectors(&x)) - &v * 0.1;
            v = &v + force * 0.01;
            x = &x + &v * 0.01;
        }
        frames_out.push(x.shallow_clone());
    }
    (x0, v0, Tensor::stack(&frames_out, 0))
}

/// Trains the decoder that `build` makes in `vs` (its prediction `[T, N, 3]` from the initial
/// state) on the springs of [`two_graphs`] for `steps` Adam steps at `lr`, and checks the loss
/// falls tenfold. The initial weights come from libtorch's global generator: seeded, and drawn
/// alone (see `common`), so the test trains the same model on every run.
fn assert_overfits(
    seed: u64,
    steps: usize,
    lr: f64,
    build: impl FnOnce(&nn::VarStore) -> Box<dyn Fn(&InitialState<'_>) -> Tensor>,
) {
    let _rng = seed_global_rng(seed as i64);
    let graph = two_graphs();
    let opts = (Kind::Float, CPU);
    let (x0, v0, target) = spring_trajectories(&mut Draws::new(seed), &graph, 4, opts);
    let h = Tensor::ones([graph.num_nodes(), 1], opts);
    let vs = nn::VarStore::new(CPU);
    let predict = build(&vs);
    let mut opt = nn::Adam::default().build(&vs, lr).unwrap();
    let state = InitialState {
        x: &x0,
        v: Some(&v0),
        h: &h,
        graph: &graph,
        edge_attr: None,
    };
    let loss = || (predict(&state) - &target).square().mean(Kind::Float);
    let first = loss().double_value(&[]);
    for _ in 0..steps {
        opt.backward_step(&loss());
    }
    let last = loss().double_value(&[]);
    assert!(
        last.is_finite() && last < first / 10.0,
        "loss went from {first:e} to {last:e}, not 10× lower"
    );
}

#[test]
fn a_tiny_decoder_overfits_a_tiny_trajectory_set() {
    assert_overfits(7, 100, 3e-3, |vs| {
        let egno = EgnoConfig {
            hidden: 16,
            layers: 2,
            horizon: 4,
            time_emb_dim: 8,
            ..Default::default()
        }
        .build(vs.root())
        .unwrap();
        Box::new(move |state| egno.forward(state, None).x)
    });
}

/// The same for GF-NODE (fixed-step RK4 keeps the test's cost fixed).
#[test]
fn a_tiny_gfnode_overfits_a_tiny_trajectory_set() {
    assert_overfits(8, 60, 5e-3, |vs| {
        let model = graph_nets::GfNodeConfig {
            hidden: 8,
            layers: 2,
            horizon: 4,
            time_scale: 4.0,
            time_emb_dim: 8,
            ode: graph_nets::ode::OdeOptions {
                solver: graph_nets::ode::Solver::Rk4,
                ..Default::default()
            },
            ..Default::default()
        }
        .build(vs.root())
        .unwrap();
        Box::new(move |state| model.forward(state, None, None).x)
    });
}

/// Models follow the device of their VarStore: on a CUDA machine this runs there and must match
/// the CPU (float32, tolerance 1e-4 relative); elsewhere it runs on the CPU twice.
#[test]
fn models_run_on_the_store_device() {
    let _rng = global_rng();
    let mut draws = Draws::new(3);
    let device = Device::cuda_if_available();
    let cfg = EgnoConfig {
        hidden: 8,
        layers: 2,
        horizon: 4,
        time_emb_dim: 6,
        cond_dim: 2,
        ..Default::default()
    };
    let cpu_vs = nn::VarStore::new(CPU);
    let cpu_model = cfg.build(cpu_vs.root()).unwrap();
    let mut dev_vs = nn::VarStore::new(device);
    let dev_model = cfg.build(dev_vs.root()).unwrap();
    dev_vs.copy(&cpu_vs).unwrap();

    let graph = two_graphs();
    let n = graph.num_nodes();
    let opts = (Kind::Float, CPU);
    let (x, v, h, z) = (
        draws.normal_in(&[n, 3], opts),
        draws.normal_in(&[n, 3], opts),
        Tensor::ones([n, 1], opts),
        draws.normal_in(&[4, n, 2], opts),
    );
    let want = cpu_model.forward(
        &InitialState {
            x: &x,
            v: Some(&v),
            h: &h,
            graph: &graph,
            edge_attr: None,
        },
        Some(&z),
    );
    let dgraph = graph.to_device(device);
    let (dx, dv, dh, dz) = (
        x.to_device(device),
        v.to_device(device),
        h.to_device(device),
        z.to_device(device),
    );
    let got = dev_model.forward(
        &InitialState {
            x: &dx,
            v: Some(&dv),
            h: &dh,
            graph: &dgraph,
            edge_attr: None,
        },
        Some(&dz),
    );
    assert_eq!(got.x.device(), device);
    assert_close(
        &got.x.to_device(CPU),
        &want.x,
        1e-4,
        "x on the store device",
    );
}
