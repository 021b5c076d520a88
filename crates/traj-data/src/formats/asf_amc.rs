//! Acclaim motion capture: ASF skeletons, AMC motions, and forward kinematics to joint positions
//! (the format of the CMU Graphics Lab Motion Capture Database).
//!
//! # ASF
//! Sections start with `:keyword`. `:root` gives `order` (the root's degrees of freedom, e.g.
//! `TX TY TZ RX RY RZ`), `axis` (e.g. `XYZ`), `position` and `orientation`. `:bonedata` holds
//! `begin … end` blocks with `id`, `name`, `direction` (unit vector), `length`, `axis ax ay az
//! ORDER` (degrees) and optional `dof` (`rx ry rz`, possibly with `tx ty tz l`) and `limits`.
//! `:hierarchy` holds `begin`, lines `parent child child …`, `end`.
//!
//! # AMC
//! Header lines (`#…`, `:FULLY-SPECIFIED`, `:DEGREES`), then for each frame its number on a line
//! of its own followed by `bone value value …` lines, the values in the order of the bone's `dof`
//! (the root's in the order of `:root order`).
//!
//! # Forward kinematics
//! With `E(a, b, c) = Rz(c)·Ry(b)·Rx(a)` (static x, then y, then z), a bone's axis frame
//! `C = E(axis)`, its motion `M = E(rx, ry, rz)` (missing rotations are 0):
//! - root: `R₀ = C₀·M₀·C₀⁻¹`, `p₀ = (TX, TY, TZ)`;
//! - bone `b` with parent `a`: `R_b = R_a·C_b·M_b·C_b⁻¹`, `p_b = p_a + length_b · R_b·direction_b`.
//!
//! Joint 0 is the root, joint `i` the end of the bone listed `i`-th in `:bonedata`. Positions are
//! in the ASF's length units.

use std::path::Path;

use crate::import_error::{ImportError, ImportResult};

type Mat3 = [[f64; 3]; 3];

fn matmul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut c = [[0.0; 3]; 3];
    for (i, row) in c.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

fn transpose(a: &Mat3) -> Mat3 {
    let mut t = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            t[i][j] = a[j][i];
        }
    }
    t
}

fn rot(axis: usize, degrees: f64) -> Mat3 {
    let (s, c) = degrees.to_radians().sin_cos();
    match axis {
        0 => [[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]],
        1 => [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]],
        _ => [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]],
    }
}

/// Rotation by `angles` (degrees, about x, y, z) applied about static axes in `order`
/// (`[0, 1, 2]` = x first: `Rz·Ry·Rx`).
fn euler(angles: [f64; 3], order: [usize; 3]) -> Mat3 {
    order
        .iter()
        .fold(identity(), |acc, &ax| matmul(&rot(ax, angles[ax]), &acc))
}

fn identity() -> Mat3 {
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
}

fn apply(m: &Mat3, v: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|i| (0..3).map(|k| m[i][k] * v[k]).sum())
}

/// One bone of an ASF skeleton.
#[derive(Clone, Debug, PartialEq)]
pub struct AsfBone {
    /// Bone name.
    pub name: String,
    /// Unit direction in the global frame at rest.
    pub direction: [f64; 3],
    /// Length (ASF length units).
    pub length: f64,
    /// Axis angles (degrees).
    pub axis: [f64; 3],
    /// Axis rotation order (indices of x, y, z in the order applied).
    pub axis_order: [usize; 3],
    /// Degrees of freedom in AMC value order (`rx`, `ry`, `rz`, `tx`, `ty`, `tz`, `l`).
    pub dof: Vec<String>,
    /// Parent joint (0 = root, `i` = the `i`-th bone).
    pub parent: usize,
}

/// An ASF skeleton.
#[derive(Clone, Debug, PartialEq)]
pub struct Asf {
    /// The root's degrees of freedom in AMC value order (e.g. `TX TY TZ RX RY RZ`, lower-cased).
    pub root_order: Vec<String>,
    /// The root's axis rotation order.
    pub root_axis_order: [usize; 3],
    /// Bones in `:bonedata` order (joint `i + 1`).
    pub bones: Vec<AsfBone>,
}

impl Asf {
    /// Number of joints (root + bones).
    pub fn num_joints(&self) -> usize {
        self.bones.len() + 1
    }

    /// The skeleton's edges as (child joint, parent joint).
    pub fn edges(&self) -> Vec<[usize; 2]> {
        self.bones
            .iter()
            .enumerate()
            .map(|(i, b)| [i + 1, b.parent])
            .collect()
    }

    /// Joint positions of every AMC frame, `T × J × 3` (see the module docs).
    pub fn forward_kinematics(&self, amc: &Amc) -> Vec<f64> {
        let j = self.num_joints();
        let mut out = Vec::with_capacity(amc.frames.len() * j * 3);
        let root_c = euler([0.0; 3], self.root_axis_order);
        let cs: Vec<(Mat3, Mat3)> = self
            .bones
            .iter()
            .map(|b| {
                let c = euler(b.axis, b.axis_order);
                (c, transpose(&c))
            })
            .collect();
        for frame in &amc.frames {
            let mut rots = vec![identity(); j];
            let mut pos = vec![[0.0; 3]; j];
            let root = &frame[0];
            let mut angles = [0.0; 3];
            for (name, v) in self.root_order.iter().zip(root) {
                match name.as_str() {
                    "tx" => pos[0][0] = *v,
                    "ty" => pos[0][1] = *v,
                    "tz" => pos[0][2] = *v,
                    "rx" => angles[0] = *v,
                    "ry" => angles[1] = *v,
                    "rz" => angles[2] = *v,
                    _ => {}
                }
            }
            rots[0] = matmul(
                &matmul(&root_c, &euler(angles, [0, 1, 2])),
                &transpose(&root_c),
            );
            for (i, b) in self.bones.iter().enumerate() {
                let mut angles = [0.0; 3];
                for (name, v) in b.dof.iter().zip(&frame[i + 1]) {
                    match name.as_str() {
                        "rx" => angles[0] = *v,
                        "ry" => angles[1] = *v,
                        "rz" => angles[2] = *v,
                        _ => {}
                    }
                }
                let (c, cinv) = &cs[i];
                let m = euler(angles, [0, 1, 2]);
                let r = matmul(&matmul(&matmul(&rots[b.parent], c), &m), cinv);
                let d = apply(&r, b.direction);
                let p = pos[b.parent];
                pos[i + 1] = [0, 1, 2].map(|k| p[k] + b.length * d[k]);
                rots[i + 1] = r;
            }
            out.extend(pos.iter().flatten());
        }
        out
    }
}

/// AMC motion: per frame, per joint (root first, then bones in ASF order), the dof values.
#[derive(Clone, Debug, PartialEq)]
pub struct Amc {
    /// `frames[t][joint]`: values in the joint's dof order (empty for bones without dofs).
    pub frames: Vec<Vec<Vec<f64>>>,
}

fn parse_order(s: &str) -> Option<[usize; 3]> {
    let idx: Vec<usize> = s
        .chars()
        .map(|c| match c.to_ascii_uppercase() {
            'X' => Some(0),
            'Y' => Some(1),
            'Z' => Some(2),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let arr: [usize; 3] = idx.try_into().ok()?;
    let mut sorted = arr;
    sorted.sort_unstable();
    (sorted == [0, 1, 2]).then_some(arr)
}

/// Reads an ASF skeleton.
///
/// # Errors
/// [`ImportError::Malformed`] naming the file and line; I/O errors.
pub fn read_asf(path: impl AsRef<Path>) -> ImportResult<Asf> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| ImportError::io(path, "read", e))?;
    parse_asf(&bytes, path)
}

/// Parses an ASF skeleton; `path` is used in error messages only.
///
/// # Errors
/// [`ImportError::Malformed`] naming the file and line: no `:root` or `:bonedata`, a bone without
/// name, direction or length, an unknown parent or child in `:hierarchy`, a bone without parent,
/// a cycle, non-finite numbers.
pub fn parse_asf(bytes: &[u8], path: &Path) -> ImportResult<Asf> {
    const F: &str = "ASF";
    let bad =
        |line: usize, p: String| ImportError::malformed(path, F, format!("line {}: {p}", line + 1));
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ImportError::malformed(
            path,
            F,
            format!("not UTF-8 text (byte {})", e.valid_up_to()),
        )
    })?;
    let num = |line: usize, s: &str| -> ImportResult<f64> {
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| bad(line, format!("{s:?} is not a finite number")))
    };
    let mut section = String::new();
    let mut root_order = None;
    let mut root_axis = [0, 1, 2];
    let mut bones: Vec<AsfBone> = Vec::new();
    let mut current: Option<(usize, AsfBone, bool, bool)> = None; // (line, bone, has dir, has len)
    let mut parents: Vec<Option<usize>> = Vec::new();
    let mut in_hierarchy = false;
    for (ln, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(kw) = line.strip_prefix(':') {
            let kw = kw
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            if kw == "hierarchy" {
                parents = vec![None; bones.len()];
            }
            section = kw;
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let key = f[0].to_ascii_lowercase();
        match section.as_str() {
            "root" => match key.as_str() {
                "order" => {
                    root_order = Some(
                        f[1..]
                            .iter()
                            .map(|s| s.to_ascii_lowercase())
                            .collect::<Vec<_>>(),
                    )
                }
                "axis" => {
                    root_axis = f
                        .get(1)
                        .and_then(|s| parse_order(s))
                        .ok_or_else(|| bad(ln, "root axis must be a permutation of XYZ".into()))?
                }
                _ => {}
            },
            "bonedata" => match key.as_str() {
                "begin" => {
                    if current.is_some() {
                        return Err(bad(ln, "`begin` inside a bone block".into()));
                    }
                    let bone = AsfBone {
                        name: String::new(),
                        direction: [0.0; 3],
                        length: 0.0,
                        axis: [0.0; 3],
                        axis_order: [0, 1, 2],
                        dof: Vec::new(),
                        parent: 0,
                    };
                    current = Some((ln, bone, false, false));
                }
                "end" => {
                    let (start, bone, has_dir, has_len) = current
                        .take()
                        .ok_or_else(|| bad(ln, "`end` without `begin`".into()))?;
                    if bone.name.is_empty() || !has_dir || !has_len {
                        return Err(bad(
                            start,
                            "bone block needs a name, a direction and a length".into(),
                        ));
                    }
                    if bones.iter().any(|b| b.name == bone.name) || bone.name == "root" {
                        return Err(bad(
                            start,
                            format!("bone name {:?} is used twice", bone.name),
                        ));
                    }
                    bones.push(bone);
                }
                _ => {
                    let Some((_, bone, has_dir, has_len)) = current.as_mut() else {
                        return Err(bad(ln, format!("{key:?} outside a bone block")));
                    };
                    match key.as_str() {
                        "name" => {
                            bone.name = f
                                .get(1)
                                .ok_or_else(|| bad(ln, "name without a value".into()))?
                                .to_string()
                        }
                        "direction" => {
                            if f.len() < 4 {
                                return Err(bad(ln, "direction needs 3 numbers".into()));
                            }
                            bone.direction = [num(ln, f[1])?, num(ln, f[2])?, num(ln, f[3])?];
                            *has_dir = true;
                        }
                        "length" => {
                            bone.length = num(ln, f.get(1).copied().unwrap_or(""))?;
                            *has_len = true;
                        }
                        "axis" => {
                            if f.len() < 5 {
                                return Err(bad(ln, "axis needs 3 angles and an order".into()));
                            }
                            bone.axis = [num(ln, f[1])?, num(ln, f[2])?, num(ln, f[3])?];
                            bone.axis_order = parse_order(f[4]).ok_or_else(|| {
                                bad(
                                    ln,
                                    format!("axis order {:?} is not a permutation of XYZ", f[4]),
                                )
                            })?;
                        }
                        "dof" => {
                            bone.dof = f[1..].iter().map(|s| s.to_ascii_lowercase()).collect();
                            if let Some(d) = bone.dof.iter().find(|d| {
                                !["rx", "ry", "rz", "tx", "ty", "tz", "l"].contains(&d.as_str())
                            }) {
                                return Err(bad(ln, format!("unknown degree of freedom {d:?}")));
                            }
                        }
                        _ => {} // id, limits and their continuation lines
                    }
                }
            },
            "hierarchy" => match key.as_str() {
                "begin" => in_hierarchy = true,
                "end" => in_hierarchy = false,
                _ if in_hierarchy => {
                    let find = |name: &str| -> Option<usize> {
                        if name == "root" {
                            Some(0)
                        } else {
                            bones.iter().position(|b| b.name == name).map(|i| i + 1)
                        }
                    };
                    let parent =
                        find(f[0]).ok_or_else(|| bad(ln, format!("unknown parent {:?}", f[0])))?;
                    for child in &f[1..] {
                        let c = find(child)
                            .filter(|&c| c > 0)
                            .ok_or_else(|| bad(ln, format!("unknown child bone {child:?}")))?;
                        let slot = parents.get_mut(c - 1).ok_or_else(|| {
                            bad(ln, format!("bone {child:?} is defined after :hierarchy"))
                        })?;
                        if slot.replace(parent).is_some() {
                            return Err(bad(ln, format!("bone {child:?} has two parents")));
                        }
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
    let root_order = root_order
        .ok_or_else(|| ImportError::malformed(path, F, "no `order` in the :root section"))?;
    if let Some(d) = root_order
        .iter()
        .find(|d| !["rx", "ry", "rz", "tx", "ty", "tz"].contains(&d.as_str()))
    {
        return Err(ImportError::malformed(
            path,
            F,
            format!("unknown root degree of freedom {d:?}"),
        ));
    }
    if current.is_some() {
        return Err(ImportError::malformed(
            path,
            F,
            "the last bone block has no `end`",
        ));
    }
    if parents.len() != bones.len() {
        return Err(ImportError::malformed(
            path,
            F,
            "no :hierarchy section after :bonedata",
        ));
    }
    // bones must be reachable from the root without cycles; order them parents-first
    for (i, p) in parents.iter().enumerate() {
        let p = p.ok_or_else(|| {
            ImportError::malformed(
                path,
                F,
                format!("bone {:?} has no parent in :hierarchy", bones[i].name),
            )
        })?;
        bones[i].parent = p;
    }
    let mut depth = vec![None; bones.len() + 1];
    depth[0] = Some(0usize);
    for start in 1..=bones.len() {
        let mut chain = Vec::new();
        let mut j = start;
        while depth[j].is_none() {
            if chain.contains(&j) || chain.len() > bones.len() {
                return Err(ImportError::malformed(
                    path,
                    F,
                    format!("the hierarchy has a cycle through {:?}", bones[j - 1].name),
                ));
            }
            chain.push(j);
            j = bones[j - 1].parent;
        }
        let mut d = depth[j].unwrap_or(0);
        for &k in chain.iter().rev() {
            d += 1;
            depth[k] = Some(d);
        }
    }
    if bones.iter().enumerate().any(|(i, b)| b.parent > i) {
        // forward kinematics visits bones in file order: a parent listed after its child is
        // supported by processing in depth order instead
        let mut order: Vec<usize> = (0..bones.len()).collect();
        order.sort_by_key(|&i| depth[i + 1]);
        let mut new_index = vec![0; bones.len() + 1];
        for (new, &old) in order.iter().enumerate() {
            new_index[old + 1] = new + 1;
        }
        let mut sorted: Vec<AsfBone> = order.iter().map(|&i| bones[i].clone()).collect();
        for b in &mut sorted {
            b.parent = new_index[b.parent];
        }
        bones = sorted;
    }
    Ok(Asf {
        root_order,
        root_axis_order: root_axis,
        bones,
    })
}

/// Reads an AMC motion for `asf`.
///
/// # Errors
/// [`ImportError::Malformed`] naming the file and line; I/O errors.
pub fn read_amc(path: impl AsRef<Path>, asf: &Asf) -> ImportResult<Amc> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| ImportError::io(path, "read", e))?;
    parse_amc(&bytes, path, asf)
}

/// Parses an AMC motion for `asf`; `path` is used in error messages only.
///
/// # Errors
/// [`ImportError::Malformed`] naming the file and line: an unknown bone, a wrong number of values
/// for a bone, non-finite values, frames not numbered 1, 2, 3, …, a frame missing a bone with
/// degrees of freedom, no frames.
pub fn parse_amc(bytes: &[u8], path: &Path, asf: &Asf) -> ImportResult<Amc> {
    const F: &str = "AMC";
    let bad =
        |line: usize, p: String| ImportError::malformed(path, F, format!("line {}: {p}", line + 1));
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ImportError::malformed(
            path,
            F,
            format!("not UTF-8 text (byte {})", e.valid_up_to()),
        )
    })?;
    let j = asf.num_joints();
    let mut frames: Vec<Vec<Vec<f64>>> = Vec::new();
    let mut seen = vec![false; j];
    let finish = |frames: &[Vec<Vec<f64>>], seen: &[bool], line: usize| -> ImportResult<()> {
        if frames.is_empty() {
            return Ok(());
        }
        for (k, s) in seen.iter().enumerate() {
            let needs = if k == 0 {
                !asf.root_order.is_empty()
            } else {
                !asf.bones[k - 1].dof.is_empty()
            };
            if needs && !s {
                let name = if k == 0 {
                    "root"
                } else {
                    &asf.bones[k - 1].name
                };
                return Err(bad(
                    line,
                    format!("frame {} has no values for {name:?}", frames.len()),
                ));
            }
        }
        Ok(())
    };
    let mut last_line = 0;
    for (ln, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(':') {
            continue;
        }
        last_line = ln;
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 1 && f[0].bytes().all(|b| b.is_ascii_digit()) {
            finish(&frames, &seen, ln)?;
            let n: usize = f[0]
                .parse()
                .map_err(|_| bad(ln, format!("frame number {:?} is too large", f[0])))?;
            if n != frames.len() + 1 {
                return Err(bad(
                    ln,
                    format!("frame number {n}, expected {}", frames.len() + 1),
                ));
            }
            frames.push(vec![Vec::new(); j]);
            seen.iter_mut().for_each(|s| *s = false);
            continue;
        }
        let Some(frame) = frames.last_mut() else {
            return Err(bad(ln, format!("{:?} before the first frame number", f[0])));
        };
        let (k, dof) = if f[0] == "root" {
            (0, asf.root_order.len())
        } else {
            let i = asf
                .bones
                .iter()
                .position(|b| b.name == f[0])
                .ok_or_else(|| bad(ln, format!("unknown bone {:?}", f[0])))?;
            (i + 1, asf.bones[i].dof.len())
        };
        if f.len() - 1 != dof {
            return Err(bad(
                ln,
                format!("{:?} has {} values, its dof has {dof}", f[0], f.len() - 1),
            ));
        }
        if std::mem::replace(&mut seen[k], true) {
            return Err(bad(
                ln,
                format!("{:?} appears twice in frame {}", f[0], frames.len()),
            ));
        }
        frame[k] = f[1..]
            .iter()
            .map(|s| {
                s.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| bad(ln, format!("{s:?} is not a finite number")))
            })
            .collect::<ImportResult<_>>()?;
    }
    finish(&frames, &seen, last_line)?;
    if frames.is_empty() {
        return Err(ImportError::malformed(path, F, "no frames"));
    }
    Ok(Amc { frames })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASF: &str = "# test\n:version 1.10\n:name T\n:units\n  mass 1.0\n  length 1\n  angle deg\n:root\n   order TX TY TZ RX RY RZ\n   axis XYZ\n   position 0 0 0\n   orientation 0 0 0\n:bonedata\n  begin\n     id 1\n     name a\n     direction 1 0 0\n     length 2\n     axis 0 0 0  XYZ\n    dof rz\n    limits (-180.0 180.0)\n  end\n  begin\n     id 2\n     name b\n     direction 1 0 0\n     length 1\n     axis 0 0 90  XYZ\n    dof rx\n    limits (-180.0 180.0)\n  end\n  begin\n     id 3\n     name c\n     direction 0 0 1\n     length 3\n     axis 0 0 0  XYZ\n  end\n:hierarchy\n  begin\n    root a c\n    a b\n  end\n";

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12)
    }

    #[test]
    fn forward_kinematics_by_hand() {
        let asf = parse_asf(ASF.as_bytes(), Path::new("t.asf")).unwrap();
        assert_eq!(asf.edges(), vec![[1, 0], [2, 1], [3, 0]]);
        let amc = ":FULLY-SPECIFIED\n:DEGREES\n1\nroot 1 2 3 0 0 0\na 0\nb 0\n2\nroot 1 2 3 0 0 90\na 0\nb 90\n";
        let amc = parse_amc(amc.as_bytes(), Path::new("t.amc"), &asf).unwrap();
        let x = asf.forward_kinematics(&amc);
        // frame 1: at rest
        assert!(
            close(
                &x[..12],
                &[1.0, 2.0, 3.0, 3.0, 2.0, 3.0, 4.0, 2.0, 3.0, 1.0, 2.0, 6.0]
            ),
            "{:?}",
            &x[..12]
        );
        // frame 2: root turned 90° about z: a points along +y; b's rx = 90 about its local x
        // (global y, axis Rz(90)) turns +x to −z, which the root's turn about z keeps; c along z
        // is unchanged
        assert!(
            close(
                &x[12..],
                &[1.0, 2.0, 3.0, 1.0, 4.0, 3.0, 1.0, 4.0, 2.0, 1.0, 2.0, 6.0]
            ),
            "{:?}",
            &x[12..]
        );
    }

    #[test]
    fn axis_frames_rotate_the_motion() {
        // b's axis is Rz(90): its local x is global y; rx = 90 turns direction +x about global y
        // to −z
        let asf = parse_asf(ASF.as_bytes(), Path::new("t.asf")).unwrap();
        let amc = "1\nroot 0 0 0 0 0 0\na 0\nb 90\n";
        let x =
            asf.forward_kinematics(&parse_amc(amc.as_bytes(), Path::new("t.amc"), &asf).unwrap());
        assert!(close(&x[6..9], &[2.0, 0.0, -1.0]), "{:?}", &x[6..9]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let asf = parse_asf(ASF.as_bytes(), Path::new("t.asf")).unwrap();
        for (amc, needle) in [
            (
                "1\nroot 0 0 0 0 0 0\na 0\n",
                "frame 1 has no values for \"b\"",
            ),
            (
                "1\nroot 0 0 0 0 0\na 0\nb 0\n",
                "line 2: \"root\" has 5 values, its dof has 6",
            ),
            ("2\nroot 0 0 0 0 0 0\n", "frame number 2, expected 1"),
            ("1\nroot 0 0 0 0 0 0\nz 0\n", "unknown bone \"z\""),
            (
                "1\nroot 0 0 0 0 0 nan\na 0\nb 0\n",
                "\"nan\" is not a finite number",
            ),
            ("", "no frames"),
        ] {
            let msg = parse_amc(amc.as_bytes(), Path::new("t.amc"), &asf)
                .unwrap_err()
                .to_string();
            assert!(msg.starts_with("t.amc: not a valid AMC file: "), "{msg}");
            assert!(msg.contains(needle), "{needle}: {msg}");
        }
        for (from, to, needle) in [
            ("    root a c\n", "    root a\n", "bone \"c\" has no parent"),
            (
                "    a b\n",
                "    a b\n    b a\n",
                "bone \"a\" has two parents",
            ),
            (
                "     length 3\n",
                "",
                "needs a name, a direction and a length",
            ),
            ("   order TX", "   ordre TX", "no `order`"),
            (
                "    root a c\n",
                "    root a c q\n",
                "unknown child bone \"q\"",
            ),
        ] {
            let text = ASF.replace(from, to);
            let msg = parse_asf(text.as_bytes(), Path::new("t.asf"))
                .unwrap_err()
                .to_string();
            assert!(msg.starts_with("t.asf: not a valid ASF file: "), "{msg}");
            assert!(msg.contains(needle), "{needle}: {msg}");
        }
    }
}
