//! Pieces shared by the converters ([`crate::protein`], [`crate::molecule`], [`crate::mocap`],
//! [`crate::nbody`]): contact and bond graphs, 2-hop edges, finite-difference velocities, and the
//! one writer of a train/val/test dataset directory.

use std::borrow::Borrow;
use std::path::Path;

use crate::dataset::Dataset;
use crate::error::Error;
use crate::format::write_dataset;
use crate::manifest::Manifest;
use crate::split::Split;
use crate::trajectory::EdgeList;

/// The contact (radius) graph of `N × 3` points: every pair `[i, j]`, `i < j`, closer than
/// `cutoff` (strictly), in the order `(i, j)` ascending, without attributes.
///
/// The same pairs as `spectral_core::Graph::radius` (a cell list, for large `N`); this is the
/// obvious `O(N²)` loop, which the converters run once per dataset.
pub fn contact_edges(points: &[f64], cutoff: f64) -> EdgeList {
    let n = points.len() / 3;
    let c2 = cutoff * cutoff;
    let mut pairs = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            let d2: f64 = (0..3)
                .map(|k| (points[3 * i + k] - points[3 * j + k]).powi(2))
                .sum();
            if d2 < c2 {
                pairs.push([i, j]);
            }
        }
    }
    EdgeList::from_canonical(pairs)
}

/// Velocities by finite differences of `T × N × 3` positions spaced `dt`: central differences
/// inside, one-sided at the ends (zero for a single frame).
pub fn finite_difference_velocities(positions: &[f64], num_frames: usize, dt: f64) -> Vec<f64> {
    let stride = positions.len() / num_frames.max(1);
    let mut v = vec![0.0; positions.len()];
    if num_frames < 2 {
        return v;
    }
    for t in 0..num_frames {
        let (a, b) = match t {
            0 => (0, 1),
            t if t + 1 == num_frames => (t - 1, t),
            t => (t - 1, t + 1),
        };
        let h = (b - a) as f64 * dt;
        for k in 0..stride {
            v[t * stride + k] = (positions[b * stride + k] - positions[a * stride + k]) / h;
        }
    }
    v
}

/// Bones (type 1) and 2-hop neighbours through a shared joint (type 2), as an [`EdgeList`] with
/// one attribute, the edge type.
///
/// # Errors
/// A self-loop or duplicate bone ([`crate::Error::SelfLoop`], [`crate::Error::DuplicateEdge`]).
pub fn bones_and_two_hop(bones: &[[usize; 2]], num_nodes: usize) -> crate::Result<EdgeList> {
    let one = EdgeList::new(bones.to_vec())?;
    let mut adj = vec![Vec::new(); num_nodes];
    for &[a, b] in one.pairs() {
        if b < num_nodes {
            adj[a].push(b);
            adj[b].push(a);
        }
    }
    let mut pairs: Vec<[usize; 2]> = one.pairs().to_vec();
    let mut types = vec![1.0; pairs.len()];
    let mut seen: std::collections::HashSet<[usize; 2]> = pairs.iter().copied().collect();
    for nbrs in &adj {
        for (i, &a) in nbrs.iter().enumerate() {
            for &b in &nbrs[i + 1..] {
                let key = [a.min(b), a.max(b)];
                if a != b && seen.insert(key) {
                    pairs.push(key);
                    types.push(2.0);
                }
            }
        }
    }
    EdgeList::new(pairs)?.with_attributes(types, 1)
}

/// Writes a dataset directory: for each split in [`Split::ALL`] order, `split(s)` makes the
/// dataset, which is written (atomically) to `<split>.safetensors` before the next is made, so a
/// generator need hold one split in memory; then the [`Manifest`] (`manifest.json`: `name`,
/// `generator`, each file's trajectory count, byte size and sha256). Creates `out_dir` if needed.
/// This is the one writer of a dataset directory; every converter and generator calls it.
///
/// `split` may return the dataset or a reference to it (`D: Borrow<Dataset>`), and its own error
/// type, into which this function's errors convert.
///
/// # Errors
/// The first error of `split`; I/O errors naming the file.
pub fn write_split_dir<D, E>(
    name: &str,
    generator: serde_json::Value,
    out_dir: &Path,
    mut split: impl FnMut(Split) -> Result<D, E>,
) -> Result<Manifest, E>
where
    D: Borrow<Dataset>,
    E: From<Error>,
{
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, "create directory", e))?;
    let mut manifest = Manifest::new(name, generator);
    for s in Split::ALL {
        let dataset = split(s)?;
        let dataset = dataset.borrow();
        let file = s.file_name();
        write_dataset(out_dir.join(&file), dataset)?;
        manifest.add_file(out_dir, &file, Some(s), dataset.len())?;
    }
    manifest.write(out_dir)?;
    Ok(manifest)
}

/// [`write_split_dir`] for three datasets already made (train, val, test), recording the train
/// split's [`crate::DatasetMeta::generator`] in the manifest.
///
/// # Errors
/// I/O errors naming the file.
pub fn write_splits(name: &str, splits: &[Dataset; 3], out_dir: &Path) -> crate::Result<Manifest> {
    write_split_dir(name, splits[0].meta().generator.clone(), out_dir, |s| {
        Ok::<_, Error>(&splits[s.index()])
    })
}
