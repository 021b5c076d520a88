//! Pieces shared by the converters ([`crate::protein`], [`crate::molecule`], [`crate::mocap`]):
//! contact and bond graphs, 2-hop edges, finite-difference velocities, and the writer of a
//! train/val/test dataset directory.

use std::path::Path;

use crate::dataset::Dataset;
use crate::format::write_dataset;
use crate::import_error::{ImportError, ImportResult};
use crate::manifest::Manifest;
use crate::split::Split;
use crate::trajectory::EdgeList;

/// All pairs `[i, j]`, `i < j`, of the `N × 3` points closer than `cutoff` (strictly).
pub fn contact_edges(points: &[f64], cutoff: f64) -> Vec<[usize; 2]> {
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
    pairs
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

/// Writes `train`/`val`/`test` safetensors files and a [`Manifest`] for three split datasets.
///
/// # Errors
/// I/O errors naming the file.
pub fn write_split_dir(
    name: &str,
    splits: &[Dataset; 3],
    out_dir: &Path,
) -> ImportResult<Manifest> {
    std::fs::create_dir_all(out_dir)
        .map_err(|e| ImportError::io(out_dir, "create directory", e))?;
    let mut manifest = Manifest::new(name, splits[0].meta().generator.clone());
    for (s, ds) in Split::ALL.into_iter().zip(splits) {
        let file = s.file_name();
        write_dataset(out_dir.join(&file), ds)?;
        manifest.add_file(out_dir, &file, Some(s), ds.len())?;
    }
    manifest.write(out_dir)?;
    Ok(manifest)
}
