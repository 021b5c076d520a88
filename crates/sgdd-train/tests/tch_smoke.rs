//! libtorch is found at run time (rpath) and a small model trains on CPU: the loss of a 2-layer
//! MLP fitted to a smooth function drops by more than 10× in a few hundred Adam steps.

use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

#[test]
fn small_mlp_trains_on_cpu() {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let net = nn::seq()
        .add(nn::linear(&root / "l1", 3, 32, Default::default()))
        .add_fn(|x| x.tanh())
        .add(nn::linear(&root / "l2", 32, 1, Default::default()));
    let x = Tensor::rand([256, 3], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let y = (x.select(1, 0) * 2.0).sin() * x.select(1, 1) + x.select(1, 2).pow_tensor_scalar(2);
    let y = y.unsqueeze(1);
    let mut opt = nn::Adam::default().build(&vs, 1e-2).unwrap();
    let loss_of = |net: &nn::Sequential| net.forward(&x).mse_loss(&y, tch::Reduction::Mean);
    let first = loss_of(&net).double_value(&[]);
    for _ in 0..300 {
        let loss = loss_of(&net);
        opt.backward_step(&loss);
    }
    let last = loss_of(&net).double_value(&[]);
    assert!(last.is_finite());
    assert!(
        last < first / 10.0,
        "loss {first} -> {last} did not drop 10×"
    );
}
