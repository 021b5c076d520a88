//! The data layer as the trainer sees it: edge lists built by traj-data agree with the graph
//! builders of spectral-core and graph-nets.

use std::collections::BTreeSet;

use graph_nets::GraphBatch;
use rand::{Rng, SeedableRng};
use tch::{Device, Kind, Tensor};
use traj_data::EdgeList;
use traj_data::convert::{bones_and_two_hop, contact_edges};

/// `(receiver, sender)` pairs of a graph batch, in edge order.
fn directed(g: &GraphBatch) -> Vec<(i64, i64)> {
    let r = Vec::<i64>::try_from(g.receivers()).unwrap();
    let s = Vec::<i64>::try_from(g.senders()).unwrap();
    r.into_iter().zip(s).collect()
}

/// The same, as a set.
fn directed_set(g: &GraphBatch) -> BTreeSet<(i64, i64)> {
    directed(g).into_iter().collect()
}

/// The contact graph of traj-data, the radius graph of spectral-core (a cell list) and the
/// radius graph of graph-nets (on tensors) are the same graph; so are the complete graphs, and
/// traj-data's bones + 2-hop edges and graph-nets' 2-hop graph with its hop types.
#[test]
fn the_edge_builders_agree() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for n in [0usize, 1, 2, 7, 30] {
        let points: Vec<f64> = (0..3 * n).map(|_| rng.random_range(-2.0..2.0)).collect();
        let xyz: Vec<[f64; 3]> = points.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
        for cutoff in [0.5, 1.3, 10.0] {
            let ours = contact_edges(&points, cutoff);
            if n > 0 {
                let spectral = spectral_core::Graph::radius(&xyz, cutoff).unwrap();
                let theirs: Vec<(usize, usize)> =
                    spectral.edges().iter().map(|&(i, j, _)| (i, j)).collect();
                assert_eq!(
                    Vec::<(usize, usize)>::from(&ours),
                    theirs,
                    "n {n}, {cutoff}"
                );
                let x = Tensor::from_slice(&points)
                    .to_kind(Kind::Double)
                    .reshape([n as i64, 3]);
                let g = GraphBatch::f_radius(&x, &[n as i64], cutoff).unwrap();
                let ours_directed: BTreeSet<(i64, i64)> = ours.directed().into_iter().collect();
                assert_eq!(directed_set(&g), ours_directed, "n {n}, {cutoff}");
            }
        }
        assert_eq!(
            Vec::<(usize, usize)>::from(&EdgeList::complete(n)),
            spectral_core::Graph::complete(n)
                .edges()
                .iter()
                .map(|&(i, j, _)| (i, j))
                .collect::<Vec<_>>()
        );
    }
    // a chain with a branch: 0-1-2-3, 1-4
    let bones = [[0, 1], [1, 2], [2, 3], [1, 4]];
    let ours = bones_and_two_hop(&bones, 5).unwrap();
    let chain: Vec<(i64, i64)> = bones.iter().map(|&[a, b]| (a as i64, b as i64)).collect();
    let (g, types) = GraphBatch::from_undirected(5, &chain, Device::Cpu)
        .unwrap()
        .f_with_hops(2)
        .unwrap();
    let types = Vec::<i64>::try_from(&types).unwrap();
    let theirs: BTreeSet<(i64, i64, i64)> = directed(&g)
        .into_iter()
        .zip(types)
        .map(|((r, s), t)| (r, s, t))
        .collect();
    let ours_typed: BTreeSet<(i64, i64, i64)> = ours
        .pairs()
        .iter()
        .enumerate()
        .flat_map(|(e, &[a, b])| {
            let t = ours.attribute(e)[0] as i64;
            [(a as i64, b as i64, t), (b as i64, a as i64, t)]
        })
        .collect();
    assert_eq!(ours_typed, theirs);
}
