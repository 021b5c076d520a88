//! Grid forecasters for SDKD's setting (SPEC §4.8): `T_in` fields on a periodic `H × W` grid in,
//! the next `T_out` fields out, frames as channels (as FNO-2d and SDKD's students do).
//!
//! | arch | what | role |
//! |---|---|---|
//! | [`GridArch::Fno`] | lift → `layers` × (spectral conv over the lowest `modes` Fourier modes per axis + 1×1 conv, GELU) → projection (Li et al. 2021, FNO-2d) | teacher |
//! | [`GridArch::Resnet`] | 3×3 lift → `layers` residual blocks (conv 3×3, GELU, conv 3×3, skip) | student |
//! | [`GridArch::Unet`] | `layers` levels of two 3×3 convs, 2× average-pool down, nearest 2× up with skip concatenation | student |
//!
//! Every convolution pads circularly (the domain is periodic). Every net appends the periodic
//! coordinates `sin 2πx, cos 2πx, sin 2πy, cos 2πy` to its input channels and ends with the same
//! pointwise linear readout from `features` (`[B, H, W, F]`) to the `T_out` frames, the layer a
//! closed-form ridge fit can initialise.

use serde::{Deserialize, Serialize};
use tch::{Tensor, nn};

use crate::error::{Error, Result, check_shape, ensure_at_least};

const TAU: f64 = 2.0 * std::f64::consts::PI;

/// Which grid net; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GridArch {
    /// Fourier neural operator (2-D).
    #[default]
    Fno,
    /// Residual CNN.
    Resnet,
    /// U-Net.
    Unet,
}

impl GridArch {
    /// Its name in configs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fno => "fno",
            Self::Resnet => "resnet",
            Self::Unet => "unet",
        }
    }
}

/// Settings of a [`GridNet`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GridNetConfig {
    /// `fno`, `resnet` or `unet`.
    pub arch: GridArch,
    /// Input frames.
    pub t_in: i64,
    /// Predicted frames.
    pub t_out: i64,
    /// Channels (FNO, ResNet; the U-Net's first level, doubled at each level down).
    pub width: i64,
    /// FNO spectral layers, ResNet blocks, or U-Net levels below the top.
    pub layers: i64,
    /// FNO: Fourier modes kept per axis (at most `H/2` and `W/2` are used).
    pub modes: i64,
}

impl Default for GridNetConfig {
    fn default() -> Self {
        Self {
            arch: GridArch::Fno,
            t_in: 10,
            t_out: 10,
            width: 20,
            layers: 4,
            modes: 12,
        }
    }
}

fn conv3(p: nn::Path<'_>, c_in: i64, c_out: i64) -> nn::Conv2D {
    nn::conv2d(
        p,
        c_in,
        c_out,
        3,
        nn::ConvConfig {
            padding: 1,
            padding_mode: nn::PaddingMode::Circular,
            ..Default::default()
        },
    )
}

fn conv1(p: nn::Path<'_>, c_in: i64, c_out: i64) -> nn::Conv2D {
    nn::conv2d(p, c_in, c_out, 1, Default::default())
}

/// FNO-2d's spectral convolution: `irfft2(W ⊙ rfft2(u))` with a complex channel mixing
/// `W ∈ ℂ^{C × C × m × m}` on the lowest `m` frequencies of the first axis (positive and
/// negative: two weight blocks) and of the second (non-negative, `rfft`), the others zeroed.
#[derive(Debug)]
struct SpectralConv2d {
    /// `[2, C_in, C_out, m, m]` real and imaginary parts; block 0 for rows `0..m`, block 1 for
    /// rows `H−m..H`.
    w_re: Tensor,
    w_im: Tensor,
}

impl SpectralConv2d {
    fn new(p: nn::Path<'_>, c: i64, m: i64) -> Self {
        let scale = 1.0 / (c * c) as f64;
        let init = nn::Init::Uniform { lo: 0.0, up: scale };
        Self {
            w_re: p.var("weight_re", &[2, c, c, m, m], init),
            w_im: p.var("weight_im", &[2, c, c, m, m], init),
        }
    }

    /// # Shapes
    /// `u`: `[B, C, H, W]` → `[B, C, H, W]`.
    fn forward(&self, u: &Tensor) -> Tensor {
        let (b, c, h, w) = u.size4().expect("checked by GridNet");
        let m = self.w_re.size()[3];
        let (mh, mw) = (m.min(h / 2), m.min(w / 2 + 1));
        let u_ft = u.fft_rfft2(None::<&[i64]>, [-2, -1], "backward");
        let mix = |block: i64, rows: Tensor| {
            let wr = self.w_re.get(block).narrow(2, 0, mh).narrow(3, 0, mw);
            let wi = self.w_im.get(block).narrow(2, 0, mh).narrow(3, 0, mw);
            let weight = Tensor::complex(&wr, &wi);
            Tensor::einsum("bixy,ioxy->boxy", &[rows, weight], None::<i64>)
        };
        let top = mix(0, u_ft.narrow(2, 0, mh).narrow(3, 0, mw));
        let bottom = mix(1, u_ft.narrow(2, h - mh, mh).narrow(3, 0, mw));
        let opts = (top.kind(), u.device());
        let rows = Tensor::cat(
            &[top, Tensor::zeros([b, c, h - 2 * mh, mw], opts), bottom],
            2,
        );
        let out_ft = Tensor::cat(&[rows, Tensor::zeros([b, c, h, w / 2 + 1 - mw], opts)], 3);
        out_ft.fft_irfft2([h, w].as_slice(), [-2, -1], "backward")
    }
}

/// Two circular 3×3 convolutions with GELU after each (a U-Net level).
#[derive(Debug)]
struct ConvBlock {
    a: nn::Conv2D,
    b: nn::Conv2D,
}

impl ConvBlock {
    fn new(p: &nn::Path<'_>, c_in: i64, c_out: i64) -> Self {
        Self {
            a: conv3(p / "a", c_in, c_out),
            b: conv3(p / "b", c_out, c_out),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.apply(&self.a).gelu("none").apply(&self.b).gelu("none")
    }
}

#[derive(Debug)]
enum Body {
    Fno {
        lift: nn::Linear,
        spectral: Vec<SpectralConv2d>,
        pointwise: Vec<nn::Conv2D>,
        project: nn::Linear,
    },
    Resnet {
        lift: nn::Conv2D,
        blocks: Vec<(nn::Conv2D, nn::Conv2D)>,
    },
    Unet {
        down: Vec<ConvBlock>,
        bottom: ConvBlock,
        up: Vec<ConvBlock>,
    },
}

/// A grid forecaster; see the module documentation. Built by [`GridNetConfig::build`].
#[derive(Debug)]
pub struct GridNet {
    cfg: GridNetConfig,
    body: Body,
    readout: nn::Linear,
}

impl GridNetConfig {
    /// Validates the settings.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field for a non-positive size.
    pub fn check(&self) -> Result<()> {
        const C: &str = "GridNetConfig";
        ensure_at_least(C, "t_in", self.t_in, 1)?;
        ensure_at_least(C, "t_out", self.t_out, 1)?;
        ensure_at_least(C, "width", self.width, 1)?;
        ensure_at_least(C, "layers", self.layers, 1)?;
        ensure_at_least(C, "modes", self.modes, 1)
    }

    /// The readout's input width `F`.
    pub fn features(&self) -> i64 {
        match self.arch {
            GridArch::Fno => 2 * self.width,
            GridArch::Resnet | GridArch::Unet => self.width,
        }
    }

    /// Builds the net under `p`.
    ///
    /// # Errors
    /// As [`GridNetConfig::check`].
    pub fn build(&self, p: nn::Path<'_>) -> Result<GridNet> {
        self.check()?;
        let (c_in, w) = (self.t_in + 4, self.width);
        let body = match self.arch {
            GridArch::Fno => Body::Fno {
                lift: nn::linear(&p / "lift", c_in, w, Default::default()),
                spectral: (0..self.layers)
                    .map(|i| SpectralConv2d::new(&p / format!("spectral{i}"), w, self.modes))
                    .collect(),
                pointwise: (0..self.layers)
                    .map(|i| conv1(&p / format!("pointwise{i}"), w, w))
                    .collect(),
                project: nn::linear(&p / "project", w, 2 * w, Default::default()),
            },
            GridArch::Resnet => Body::Resnet {
                lift: conv3(&p / "lift", c_in, w),
                blocks: (0..self.layers)
                    .map(|i| {
                        (
                            conv3(&p / format!("block{i}") / "a", w, w),
                            conv3(&p / format!("block{i}") / "b", w, w),
                        )
                    })
                    .collect(),
            },
            GridArch::Unet => {
                let width = |level: i64| w << level;
                Body::Unet {
                    down: (0..self.layers)
                        .map(|l| {
                            let c = if l == 0 { c_in } else { width(l - 1) };
                            ConvBlock::new(&(&p / format!("down{l}")), c, width(l))
                        })
                        .collect(),
                    bottom: ConvBlock::new(
                        &(&p / "bottom"),
                        width(self.layers - 1),
                        width(self.layers),
                    ),
                    up: (0..self.layers)
                        .map(|l| {
                            ConvBlock::new(
                                &(&p / format!("up{l}")),
                                width(l + 1) + width(l),
                                width(l),
                            )
                        })
                        .collect(),
                }
            }
        };
        Ok(GridNet {
            cfg: self.clone(),
            body,
            readout: nn::linear(
                &p / "readout",
                self.features(),
                self.t_out,
                Default::default(),
            ),
        })
    }
}

impl GridNet {
    /// The settings it was built with.
    pub fn config(&self) -> &GridNetConfig {
        &self.cfg
    }

    /// The pointwise linear readout (`F → T_out`).
    pub fn readout(&self) -> &nn::Linear {
        &self.readout
    }

    /// The readout for a closed-form initialisation.
    pub fn readout_mut(&mut self) -> &mut nn::Linear {
        &mut self.readout
    }

    /// The readout's input at every grid point.
    ///
    /// # Shapes
    /// `x`: `[B, T_in, H, W]` → `[B, H, W, F]` (`F` = [`GridNetConfig::features`]).
    ///
    /// # Errors
    /// [`Error::Shape`] for another input shape, or (U-Net) `H`, `W` not divisible by
    /// `2^layers`.
    pub fn f_features(&self, x: &Tensor) -> Result<Tensor> {
        const OP: &str = "GridNet::features";
        check_shape(OP, "x", x, &[None, Some(self.cfg.t_in), None, None])?;
        let (_, _, h, w) = x.size4().expect("checked");
        if self.cfg.arch == GridArch::Unet {
            let f = 1i64 << self.cfg.layers;
            if h % f != 0 || w % f != 0 {
                return Err(Error::Input {
                    op: OP,
                    reason: format!(
                        "a U-Net of {} levels needs H and W divisible by {f}, got {h} × {w}",
                        self.cfg.layers
                    ),
                });
            }
        }
        let x = with_coordinates(x);
        Ok(match &self.body {
            Body::Fno {
                lift,
                spectral,
                pointwise,
                project,
            } => {
                let mut u = x.permute([0, 2, 3, 1]).apply(lift).permute([0, 3, 1, 2]);
                let last = spectral.len() - 1;
                for (i, (s, p)) in spectral.iter().zip(pointwise).enumerate() {
                    let v = s.forward(&u) + u.apply(p);
                    u = if i == last { v } else { v.gelu("none") };
                }
                u.permute([0, 2, 3, 1]).apply(project).gelu("none")
            }
            Body::Resnet { lift, blocks } => {
                let mut u = x.apply(lift).gelu("none");
                for (a, b) in blocks {
                    u = (&u + u.apply(a).gelu("none").apply(b)).gelu("none");
                }
                u.permute([0, 2, 3, 1])
            }
            Body::Unet { down, bottom, up } => {
                let mut skips = Vec::with_capacity(down.len());
                let mut u = x;
                for block in down {
                    let s = block.forward(&u);
                    u = s.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
                    skips.push(s);
                }
                u = bottom.forward(&u);
                for (block, skip) in up.iter().zip(skips).rev() {
                    let (h, w) = (skip.size()[2], skip.size()[3]);
                    let up = u.upsample_nearest2d([h, w], None::<f64>, None::<f64>);
                    u = block.forward(&Tensor::cat(&[up, skip], 1));
                }
                u.permute([0, 2, 3, 1])
            }
        })
    }

    /// The predicted frames.
    ///
    /// # Shapes
    /// `x`: `[B, T_in, H, W]` → `[B, T_out, H, W]`.
    ///
    /// # Errors
    /// As [`GridNet::f_features`].
    pub fn f_forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self
            .f_features(x)?
            .apply(&self.readout)
            .permute([0, 3, 1, 2]))
    }

    /// [`GridNet::f_forward`], panicking on bad input.
    ///
    /// # Panics
    /// On the errors of [`GridNet::f_forward`].
    #[track_caller]
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.f_forward(x).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// `x` with the periodic coordinate channels `sin 2πx, cos 2πx, sin 2πy, cos 2πy` appended
/// (`x = j/W`, `y = i/H` at row `i`, column `j`).
///
/// # Shapes
/// `[B, C, H, W]` → `[B, C + 4, H, W]`.
fn with_coordinates(x: &Tensor) -> Tensor {
    let (b, _, h, w) = x.size4().expect("[B, C, H, W]");
    let opts = (x.kind(), x.device());
    let xs = Tensor::arange(w, opts) * (TAU / w as f64);
    let ys = Tensor::arange(h, opts) * (TAU / h as f64);
    let along_x = |t: Tensor| t.view([1, 1, 1, w]).expand([b, 1, h, w], false);
    let along_y = |t: Tensor| t.view([1, 1, h, 1]).expand([b, 1, h, w], false);
    Tensor::cat(
        &[
            x.shallow_clone(),
            along_x(xs.sin()),
            along_x(xs.cos()),
            along_y(ys.sin()),
            along_y(ys.cos()),
        ],
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn net(arch: GridArch, layers: i64) -> (nn::VarStore, GridNet) {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = GridNetConfig {
            arch,
            t_in: 3,
            t_out: 2,
            width: 4,
            layers,
            modes: 3,
        };
        let n = cfg.build(vs.root()).unwrap();
        (vs, n)
    }

    #[test]
    fn shapes_and_bad_input() {
        let x = Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu));
        for arch in [GridArch::Fno, GridArch::Resnet, GridArch::Unet] {
            let (_, n) = net(arch, 2);
            assert_eq!(n.forward(&x).size(), [2, 2, 8, 8], "{arch:?}");
            assert_eq!(
                n.f_features(&x).unwrap().size(),
                [2, 8, 8, n.cfg.features()]
            );
            let e = n.f_forward(&x.narrow(1, 0, 2)).unwrap_err().to_string();
            assert!(e.contains("`x` must have shape"), "{e}");
        }
        let (_, u) = net(GridArch::Unet, 2);
        let e = u
            .f_forward(&Tensor::zeros([1, 3, 6, 8], (Kind::Float, Device::Cpu)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("divisible by 4"), "{e}");
        let e = GridNetConfig {
            modes: 0,
            ..Default::default()
        }
        .build(nn::VarStore::new(Device::Cpu).root())
        .unwrap_err()
        .to_string();
        assert!(e.contains("modes"), "{e}");
    }

    /// The spectral convolution is linear, commutes with circular shifts, and its output holds
    /// no energy outside the kept modes (checked against a DFT of the output).
    #[test]
    fn spectral_conv_is_a_band_limited_shift_equivariant_linear_map() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let s = SpectralConv2d::new(vs.root(), 2, 2);
        let opts = (Kind::Double, Device::Cpu);
        let s = SpectralConv2d {
            w_re: s.w_re.to_kind(Kind::Double).detach(),
            w_im: s.w_im.to_kind(Kind::Double).detach(),
        };
        let (a, b) = (
            Tensor::randn([1, 2, 8, 8], opts),
            Tensor::randn([1, 2, 8, 8], opts),
        );
        let lin = s.forward(&(&a * 2.0 + &b)) - (s.forward(&a) * 2.0 + s.forward(&b));
        assert!(lin.abs().max().double_value(&[]) < 1e-12);
        let shifted = s.forward(&a.roll([3, 5], [2, 3]));
        let diff = shifted - s.forward(&a).roll([3, 5], [2, 3]);
        assert!(diff.abs().max().double_value(&[]) < 1e-12);
        // FNO keeps k_y ∈ {0, 1} (block 0) and {−2, −1} (block 1), k_x ∈ {0, 1}; a real output
        // adds the mirror images, so every bin outside |k_y| ≤ 2, |k_x| ≤ 1 is zero
        let spec = s
            .forward(&a)
            .fft_fft2(None::<&[i64]>, [-2, -1], "backward")
            .abs();
        for ky in 0..8i64 {
            for kx in 0..8i64 {
                let kyn = if ky < 4 { ky } else { 8 - ky };
                let kxn = if kx <= 4 { kx } else { 8 - kx };
                let kept = kyn <= 2 && kxn < 2;
                let v = spec.double_value(&[0, 0, ky, kx]);
                if !kept {
                    assert!(v < 1e-10, "bin ({ky}, {kx}) (|k| {kyn}, {kxn}): {v}");
                }
            }
        }
    }

    /// `forward` is the readout applied to `features` at every grid point.
    #[test]
    fn readout_is_the_last_linear_map() {
        let x = Tensor::randn([1, 3, 8, 8], (Kind::Float, Device::Cpu));
        for arch in [GridArch::Fno, GridArch::Resnet] {
            let (_, n) = net(arch, 1);
            let f = n.f_features(&x).unwrap();
            let want = f.apply(n.readout()).permute([0, 3, 1, 2]);
            let got = n.forward(&x);
            assert!((got - want).abs().max().double_value(&[]) < 1e-6);
        }
    }
}
