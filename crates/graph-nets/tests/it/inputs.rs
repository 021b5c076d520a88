//! Bad inputs and bad settings are clear errors, never panics or silent NaNs (SPEC §7).

use graph_nets::{
    EgnoConfig, Error, GatConfig, GraphBatch, InitEncoderConfig, InitialState, StsgnnConfig,
    Trajectory,
};
use tch::{Kind, Tensor, nn};

use crate::common::{CPU, Draws, global_rng, random_inputs, store, two_graphs};

fn expect_shape(r: graph_nets::Result<impl std::fmt::Debug>, what: &str) {
    match r {
        Err(Error::Shape { what: w, .. }) => assert_eq!(w, what),
        other => panic!("expected a shape error on `{what}`, got {other:?}"),
    }
}

fn expect_input(r: graph_nets::Result<impl std::fmt::Debug>, needle: &str) {
    match r {
        Err(e @ Error::Input { .. }) => assert!(e.to_string().contains(needle), "{e}"),
        other => panic!("expected an input error mentioning `{needle}`, got {other:?}"),
    }
}

#[test]
fn decoder_rejects_bad_inputs_with_named_errors() {
    let _rng = global_rng();
    let mut draws = Draws::new(1);
    let graph = two_graphs();
    let n = graph.num_nodes();
    let vs = store();
    let cfg = EgnoConfig {
        node_in: 2,
        edge_dim: 2,
        hidden: 8,
        layers: 1,
        horizon: 4,
        time_emb_dim: 6,
        cond_dim: 3,
        ..Default::default()
    };
    let egno = cfg.build(vs.root()).unwrap();
    let (x, v, h, e) = random_inputs(&mut draws, &graph, 2, 2);
    let ok = InitialState {
        x: &x,
        v: Some(&v),
        h: &h,
        graph: &graph,
        edge_attr: Some(&e),
    };
    assert!(egno.f_forward(&ok, None).is_ok());

    let short = x.narrow(0, 0, n - 1);
    expect_shape(egno.f_forward(&InitialState { x: &short, ..ok }, None), "x");
    let wide = draws.normal(&[n, 3]);
    expect_shape(egno.f_forward(&InitialState { h: &wide, ..ok }, None), "h");
    expect_shape(
        egno.f_forward(&ok, Some(&draws.normal(&[3, n, 3]))),
        "z_cond",
    );
    expect_shape(
        egno.f_forward(&ok, Some(&draws.normal(&[4 * n, 2]))),
        "z_cond",
    );
    let e1 = draws.normal(&[graph.num_edges(), 1]);
    expect_shape(
        egno.f_forward(
            &InitialState {
                edge_attr: Some(&e1),
                ..ok
            },
            None,
        ),
        "edge_attr",
    );
    expect_input(
        egno.f_forward(&InitialState { v: None, ..ok }, None),
        "with_velocity",
    );
    expect_input(
        egno.f_forward(
            &InitialState {
                edge_attr: None,
                ..ok
            },
            None,
        ),
        "edge_dim = 2",
    );
    let xf = x.to_kind(Kind::Float);
    assert!(matches!(
        egno.f_forward(&InitialState { x: &xf, ..ok }, None),
        Err(Error::Kind { what: "x", .. })
    ));

    let plain = EgnoConfig { cond_dim: 0, ..cfg }
        .build(vs.root() / "plain")
        .unwrap();
    expect_input(
        plain.f_forward(&ok, Some(&draws.normal(&[4, n, 3]))),
        "cond_dim = 0",
    );
}

#[test]
fn encoders_reject_bad_inputs() {
    let _rng = global_rng();
    let mut draws = Draws::new(2);
    let graph = two_graphs();
    let n = graph.num_nodes();
    let vs = store();
    let sts = StsgnnConfig {
        node_in: 2,
        hidden: 8,
        layers: 1,
        out_dim: 4,
        horizon: 4,
        ..Default::default()
    }
    .build(vs.root() / "s")
    .unwrap();
    let (xs, h) = (draws.normal(&[5, n, 3]), draws.normal(&[n, 2]));
    let vs_ = draws.normal(&[5, n, 3]);
    let ok = Trajectory {
        x: &xs,
        v: Some(&vs_),
        h: &h,
        graph: &graph,
        edge_attr: None,
    };
    assert!(sts.f_forward(&ok).is_ok());
    let four = xs.narrow(0, 0, 4);
    expect_shape(sts.f_forward(&Trajectory { x: &four, ..ok }), "x");
    let e = draws.normal(&[graph.num_edges(), 1]);
    expect_input(
        sts.f_forward(&Trajectory {
            edge_attr: Some(&e),
            ..ok
        }),
        "edge_dim = 0",
    );

    let init = InitEncoderConfig {
        node_in: 2,
        with_velocity: false,
        hidden: 8,
        heads: 2,
        out_dim: 4,
        horizon: 4,
        ..Default::default()
    }
    .build(vs.root() / "i")
    .unwrap();
    let x = draws.normal(&[n, 3]);
    let state = InitialState {
        x: &x,
        v: None,
        h: &h,
        graph: &graph,
        edge_attr: None,
    };
    assert_eq!(init.forward(&state).size(), [4, n, 4]);
    expect_input(
        init.f_forward(&InitialState {
            v: Some(&x),
            ..state
        }),
        "without `with_velocity`",
    );
}

#[test]
fn forward_panics_carry_the_error_message() {
    let _rng = global_rng();
    let mut draws = Draws::new(3);
    let graph = two_graphs();
    let vs = store();
    let egno = EgnoConfig {
        hidden: 8,
        layers: 1,
        horizon: 2,
        time_emb_dim: 4,
        with_velocity: false,
        ..Default::default()
    }
    .build(vs.root())
    .unwrap();
    let (x, h) = (draws.normal(&[3, 3]), draws.normal(&[3, 1]));
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        egno.forward(
            &InitialState {
                x: &x,
                v: None,
                h: &h,
                graph: &graph,
                edge_attr: None,
            },
            None,
        );
    }))
    .unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("Egno::forward: `x` must have shape [9, 3], got [3, 3]"),
        "{msg}"
    );
}

#[test]
fn invalid_settings_are_rejected_at_build() {
    let _rng = global_rng();
    let vs = nn::VarStore::new(CPU);
    let e = GatConfig {
        hidden: 10,
        heads: 4,
        ..Default::default()
    }
    .build(vs.root())
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Config {
                config: "GatConfig",
                field: "hidden",
                ..
            }
        ),
        "{e}"
    );
    let e = EgnoConfig {
        time_emb_dim: 2,
        ..Default::default()
    }
    .build(vs.root())
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Config {
                field: "time_emb_dim",
                ..
            }
        ),
        "{e}"
    );
    let e = EgnoConfig {
        coord_clamp: Some(0.0),
        ..Default::default()
    }
    .build(vs.root())
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Config {
                field: "coord_clamp",
                ..
            }
        ),
        "{e}"
    );
    let e = StsgnnConfig {
        horizon: 0,
        ..Default::default()
    }
    .build(vs.root())
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Config {
                field: "horizon",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn configs_read_from_json_with_defaults_and_reject_unknown_keys() {
    let cfg: EgnoConfig =
        serde_json::from_str(r#"{"hidden": 32, "activation": "gelu", "coord_clamp": null}"#)
            .unwrap();
    assert_eq!(
        cfg,
        EgnoConfig {
            hidden: 32,
            activation: graph_nets::Activation::Gelu,
            coord_clamp: None,
            ..Default::default()
        }
    );
    let err = serde_json::from_str::<EgnoConfig>(r#"{"hiden": 32}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `hiden`"), "{err}");
    let err = serde_json::from_str::<GatConfig>(r#"{"activation": "swish"}"#).unwrap_err();
    assert!(err.to_string().contains("unknown variant"), "{err}");
}

#[test]
fn graph_construction_errors() {
    let mut draws = Draws::new(4);
    let x = draws.normal(&[5, 3]);
    assert!(matches!(
        GraphBatch::f_radius(&x, &[2, 2], 1.0),
        Err(Error::Shape { what: "x", .. })
    ));
    assert!(GraphBatch::f_knn(&x, &[5], 0).is_err());
    assert!(GraphBatch::f_radius(&x, &[5], -1.0).is_err());
    assert!(GraphBatch::batch(&[]).is_err());
    assert!(GraphBatch::complete(&[-1], CPU).is_err());
    let g = GraphBatch::complete(&[3], CPU).unwrap();
    assert!(g.f_with_hops(0).is_err());
    assert!(graph_nets::one_hot(&Tensor::from_slice(&[0i64, 3]), 3, Kind::Float).is_err());
    let oh = graph_nets::one_hot(&Tensor::from_slice(&[0i64, 2]), 3, Kind::Float).unwrap();
    assert_eq!(
        Vec::<f32>::try_from(oh.view([-1])).unwrap(),
        vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    );
}
