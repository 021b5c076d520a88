//! Property tests for the math invariants: window indices and counts, normalisation round trip,
//! split partitions, and the exact writer → reader round trip.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use traj_data::{
    Centering, Dataset, DatasetLayout, DatasetMeta, EdgeList, MetadataMap, NormalizationSpec,
    PositionTransform, Scaling, SplitMethod, SplitSpec, Starts, TargetFrames, Trajectory,
    WindowSpec, read_dataset, write_dataset,
};

/// Any finite f64, drawn from raw bits so subnormals, ±0, huge and tiny values all occur.
fn finite(rng: &mut ChaCha8Rng) -> f64 {
    loop {
        let x = f64::from_bits(rng.random());
        if x.is_finite() {
            return x;
        }
    }
}

/// A random dataset with a random layout; `values` draws the coordinates.
fn random_dataset(seed: u64, values: &dyn Fn(&mut ChaCha8Rng) -> f64, max_traj: usize) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = rng.random_range(1..5usize);
    let has_edges = rng.random_bool(0.5) && n >= 2;
    let layout = DatasetLayout {
        num_nodes: n,
        num_node_features: rng.random_range(0..3),
        has_velocities: rng.random_bool(0.5),
        has_node_types: rng.random_bool(0.5),
        has_edges,
        num_edge_attributes: if has_edges { rng.random_range(0..3) } else { 0 },
    };
    let num_traj = rng.random_range(0..=max_traj);
    let trajectories = (0..num_traj)
        .map(|i| {
            let t = rng.random_range(1..6usize);
            let mut v = |len: usize| (0..len).map(|_| values(&mut rng)).collect::<Vec<f64>>();
            let mut traj = Trajectory::new(t, n, v(t * n * 3)).unwrap();
            if layout.has_velocities {
                traj = traj.with_velocities(v(t * n * 3)).unwrap();
            }
            if layout.num_node_features > 0 {
                let f = layout.num_node_features;
                traj = traj.with_node_features(v(n * f), f).unwrap();
            }
            if layout.has_node_types {
                traj = traj
                    .with_node_types((0..n).map(|_| rng.random_range(0..1_000_000)).collect())
                    .unwrap();
            }
            if layout.has_edges {
                let pairs: Vec<[usize; 2]> = (0..n)
                    .flat_map(|a| (a + 1..n).map(move |b| [b, a]))
                    .filter(|_| rng.random_bool(0.5))
                    .collect();
                let a = layout.num_edge_attributes;
                let attrs = (0..pairs.len() * a).map(|_| finite(&mut rng)).collect();
                let edges = EdgeList::new(pairs)
                    .unwrap()
                    .with_attributes(attrs, a)
                    .unwrap();
                traj = traj.with_edges(edges).unwrap();
            }
            let mut meta = MetadataMap::new();
            meta.insert("i".into(), json!(i));
            meta.insert("x".into(), json!(rng.random::<f64>()));
            traj.with_metadata(meta)
        })
        .collect();
    let mut meta = DatasetMeta::new(
        format!("random-{seed}"),
        "test",
        f64::from_bits(rng.random_range(1..0x7FF0_0000_0000_0000u64)),
    );
    if layout.num_node_features > 0 && rng.random_bool(0.5) {
        meta.node_feature_names = (0..layout.num_node_features)
            .map(|k| format!("f{k}"))
            .collect();
    }
    meta.seed = rng.random_bool(0.5).then(|| rng.random());
    meta.generator = json!({"a": rng.random::<f64>(), "b": [1, 2, 3]});
    Dataset::with_layout(meta, layout, trajectories).unwrap()
}

/// Frame `f` of trajectory `i`, node `n` sits at (1000 i + f, n, 0): positions reveal their frame.
fn labelled(frames: &[usize], n: usize) -> Dataset {
    let trajs = frames
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let p = (0..t)
                .flat_map(|f| (0..n).flat_map(move |k| [(1000 * i + f) as f64, k as f64, 0.0]))
                .collect();
            Trajectory::new(t, n, p).unwrap()
        })
        .collect();
    Dataset::new(DatasetMeta::new("l", "test", 1.0), trajs).unwrap()
}

fn window_spec() -> impl Strategy<Value = WindowSpec> {
    (1usize..5, 1usize..6, 0usize..10, any::<bool>(), 1usize..4).prop_map(
        |(c, t, extra, strided, stride)| {
            WindowSpec::default()
                .condition_frames(c)
                .num_targets(t)
                .delta_frame(t + extra)
                .targets(if strided {
                    TargetFrames::Strided
                } else {
                    TargetFrames::Consecutive
                })
                .sliding(stride)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sliding_windows_in_range_and_counted(
        spec in window_spec(),
        frames in prop::collection::vec(1usize..40, 1..4),
    ) {
        let checked = spec.check().unwrap();
        let ds = labelled(&frames, 2);
        let w = checked.windows(&ds).unwrap();
        let (c, delta, t) = (spec.condition_frames, spec.delta_frame, spec.num_targets);
        let Starts::Sliding { stride } = spec.starts else { unreachable!() };
        // closed form: anchors a = c−1 + k·stride with a + delta <= T − 1
        let expected: usize = frames
            .iter()
            .map(|&nf| if nf > c - 1 + delta { (nf - 1 - delta - (c - 1)) / stride + 1 } else { 0 })
            .sum();
        prop_assert_eq!(w.len(), expected);
        // deterministic order: strictly increasing (trajectory, anchor)
        prop_assert!(w.index().windows(2).all(|p| p[0] < p[1]));
        for s in w.iter() {
            let nf = frames[s.trajectory];
            prop_assert_eq!(s.condition_frames.len(), c);
            prop_assert_eq!(*s.condition_frames.last().unwrap(), s.anchor);
            prop_assert!(s.condition_frames.windows(2).all(|p| p[1] == p[0] + 1));
            prop_assert_eq!(s.target_frames.len(), t);
            prop_assert!(s.target_frames.windows(2).all(|p| p[0] < p[1]));
            prop_assert!(s.target_frames[0] > s.anchor);
            prop_assert_eq!(*s.target_frames.last().unwrap(), s.anchor + delta);
            prop_assert!(*s.target_frames.last().unwrap() < nf);
            // the data are the data of those frames
            for (k, &f) in s.target_frames.iter().enumerate() {
                let want = (1000 * s.trajectory + f) as f64;
                prop_assert_eq!(s.target_positions[k * 6], want);
                prop_assert_eq!(s.target_positions[k * 6 + 3], want);
            }
            for (k, &f) in s.condition_frames.iter().enumerate() {
                prop_assert_eq!(s.condition_positions[k * 6], (1000 * s.trajectory + f) as f64);
            }
        }
    }

    #[test]
    fn fixed_windows_fit_or_fail(
        spec in window_spec(),
        anchors in prop::collection::btree_set(0usize..30, 1..4),
        frames in prop::collection::vec(1usize..50, 1..4),
    ) {
        let c = spec.condition_frames;
        let anchors: Vec<usize> = anchors.into_iter().map(|a| a + c - 1).collect();
        let spec = spec.start_frames(anchors.clone());
        let checked = spec.check().unwrap();
        let ds = labelled(&frames, 1);
        let fits = frames.iter().all(|&nf| anchors.last().unwrap() + spec.delta_frame < nf);
        match checked.windows(&ds) {
            Ok(w) => {
                prop_assert!(fits);
                prop_assert_eq!(w.len(), anchors.len() * frames.len());
            }
            Err(e) => {
                prop_assert!(!fits);
                prop_assert!(e.to_string().starts_with("trajectory "), "{}", e);
            }
        }
    }

    #[test]
    fn strided_targets_reach_the_horizon_evenly(t in 1usize..12, extra in 0usize..40) {
        let delta = t + extra;
        let spec = WindowSpec::egno(0, delta, t).check().unwrap();
        let off = spec.target_offsets();
        prop_assert_eq!(off.len(), t);
        prop_assert_eq!(off[t - 1], delta);
        // gaps differ by at most one frame
        let gaps: Vec<usize> = std::iter::once(off[0]).chain(off.windows(2).map(|p| p[1] - p[0])).collect();
        prop_assert!(gaps.iter().max().unwrap() - gaps.iter().min().unwrap() <= 1);
        prop_assert!(gaps.iter().all(|&g| g >= 1));
    }

    #[test]
    fn normalize_then_denormalize_is_identity(
        seed in any::<u64>(),
        centering in prop::sample::select(vec![Centering::None, Centering::FirstFrameCentroid, Centering::TrainMean]),
        scaling in prop::sample::select(vec![Scaling::None, Scaling::TrainRms, Scaling::Fixed(0.37), Scaling::Fixed(25.0)]),
    ) {
        let ds = random_dataset(seed, &|r: &mut ChaCha8Rng| r.random_range(-1e3..1e3), 4);
        prop_assume!(!ds.is_empty());
        let spec = NormalizationSpec { centering, scaling };
        let Ok(norm) = spec.fit(&ds) else {
            // only a degenerate (zero-spread) training set may refuse
            prop_assert!(scaling == Scaling::TrainRms);
            return Ok(());
        };
        let normed = norm.apply(&ds).unwrap();
        if scaling == Scaling::TrainRms {
            // the fitted scale gives the training data unit RMS
            let (mut ss, mut count) = (0.0, 0.0);
            for t in normed.trajectories() {
                ss += t.positions().iter().map(|x| x * x).sum::<f64>();
                count += t.positions().len() as f64;
            }
            prop_assert!(((ss / count).sqrt() - 1.0).abs() < 1e-9);
        }
        let back = normed.denormalize().unwrap();
        prop_assert!(back.meta().normalization.is_none());
        for (a, b) in back.trajectories().iter().zip(ds.trajectories()) {
            for (x, y) in a.positions().iter().zip(b.positions()) {
                prop_assert!((x - y).abs() <= 1e-9 * (1.0 + y.abs()), "{} vs {}", x, y);
            }
            if let (Some(va), Some(vb)) = (a.velocities(), b.velocities()) {
                for (x, y) in va.iter().zip(vb) {
                    prop_assert!((x - y).abs() <= 1e-9 * (1.0 + y.abs()));
                }
            }
        }
    }

    #[test]
    fn transform_round_trip(
        xs in prop::collection::vec(-1e6f64..1e6, 0..30),
        center in prop::array::uniform3(-1e3f64..1e3),
        scale in 1e-3f64..1e3,
    ) {
        let n = xs.len() / 3 * 3;
        let orig = xs[..n].to_vec();
        let tf = PositionTransform { center, scale };
        let mut v = orig.clone();
        tf.normalize_positions(&mut v);
        tf.denormalize_positions(&mut v);
        let mut w = orig.clone();
        tf.normalize_velocities(&mut w);
        tf.denormalize_velocities(&mut w);
        for ((a, b), c) in v.iter().zip(&orig).zip(&w) {
            prop_assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()));
            prop_assert!((c - b).abs() <= 1e-12 * (1.0 + b.abs()));
        }
    }

    #[test]
    fn trajectory_splits_partition(
        n in 0usize..200,
        w in prop::array::uniform3(0.0f64..1.0),
        random in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let total: f64 = w.iter().sum();
        prop_assume!(total > 1e-3);
        let f = w.map(|x| x / total);
        let method = if random { SplitMethod::TrajectoryRandom { seed } } else { SplitMethod::TrajectoryChronological };
        let spec = SplitSpec::new(method).fractions(f[0], f[1], 1.0 - f[0] - f[1]);
        let Ok(spec) = spec.check() else {
            // 1 − f0 − f1 can round to a tiny negative number
            prop_assert!(1.0 - f[0] - f[1] < 0.0);
            return Ok(());
        };
        let idx = spec.trajectory_indices(n).unwrap();
        let mut all: Vec<usize> = [&idx.train, &idx.val, &idx.test].into_iter().flatten().copied().collect();
        all.sort_unstable();
        prop_assert_eq!(all, (0..n).collect::<Vec<_>>());
        let counts = [idx.train.len(), idx.val.len(), idx.test.len()];
        prop_assert_eq!(counts, spec.counts(n));
        for (c, fr) in counts.iter().zip(spec.spec().fractions) {
            prop_assert!((*c as f64 - fr * n as f64).abs() < 1.0 + 1e-9);
        }
        if !random {
            prop_assert_eq!(&idx.train, &(0..counts[0]).collect::<Vec<_>>());
        }
        let ranges = spec.frame_ranges(n);
        prop_assert_eq!(ranges[0].start, 0);
        prop_assert_eq!(ranges[0].end, ranges[1].start);
        prop_assert_eq!(ranges[1].end, ranges[2].start);
        prop_assert_eq!(ranges[2].end, n);
    }

    #[test]
    fn dataset_split_covers_every_trajectory_and_frame(
        seed in any::<u64>(),
        method in prop::sample::select(vec![
            SplitMethod::TrajectoryChronological,
            SplitMethod::TrajectoryRandom { seed: 5 },
            SplitMethod::FrameChronological,
        ]),
    ) {
        let ds = random_dataset(seed, &finite, 6);
        let spec = SplitSpec::new(method).check().unwrap();
        let s = ds.split(&spec).unwrap();
        let parts = [&s.train, &s.val, &s.test];
        if method == SplitMethod::FrameChronological {
            let frames: usize = parts.iter().map(|p| p.total_frames()).sum();
            prop_assert_eq!(frames, ds.total_frames());
        } else {
            let n: usize = parts.iter().map(|p| p.len()).sum();
            prop_assert_eq!(n, ds.len());
            // every trajectory lands in exactly one part
            for t in ds.trajectories() {
                let hits: usize = parts.iter().map(|p| p.trajectories().iter().filter(|u| *u == t).count()).sum();
                prop_assert_eq!(hits, 1);
            }
        }
    }

    #[test]
    fn write_read_round_trip_is_exact(seed in any::<u64>()) {
        let ds = random_dataset(seed, &finite, 4);
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.safetensors"), dir.path().join("b.safetensors"));
        write_dataset(&a, &ds).unwrap();
        let back = read_dataset(&a).unwrap();
        prop_assert_eq!(&back, &ds);
        // bit-exact, including −0.0 and NaN-free subnormals, and byte-identical when rewritten
        for (x, y) in back.trajectories().iter().zip(ds.trajectories()) {
            prop_assert!(x.positions().iter().zip(y.positions()).all(|(p, q)| p.to_bits() == q.to_bits()));
        }
        prop_assert_eq!(back.meta().dt.to_bits(), ds.meta().dt.to_bits());
        write_dataset(&b, &back).unwrap();
        prop_assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    }
}
