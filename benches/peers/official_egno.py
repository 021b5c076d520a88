"""The authors' EGNO (MinkaiXu/EGNO, `model/egno.py`) as a peer of the nets benchmark, with our weights.

Nothing of the authors' code is part of this repository: `build` imports their class from a local
checkout (`git clone https://github.com/MinkaiXu/EGNO`), named by SGDD_EGNO_OFFICIAL.

Weight mapping, our port (reference.py, = the Rust VarStore) -> the official class:
  embed                      -> embedding                         (same input order: h0, time embedding)
  layers.i.time_conv_h       -> time_conv_modules.i.t_conv.weights1   [C, C, modes, (re, im)]
  layers.i.time_conv_x       -> time_conv_x_modules.i.t_conv.weights1 [2, 2, modes, (re, im)]
  layers.i.egnn.phi_e.{0,1}  -> layers.i.edge_message_net.scalar_net.mlp.{0,2}
                                (input columns reordered: ours [h_i, h_j, |r_ij|², e], theirs [|r_ij|², h_i, h_j, e])
  layers.i.egnn.phi_x.{0,1}  -> layers.i.coord_net.mlp.{0,2}      (their last bias, absent here, set to 0)
  layers.i.egnn.phi_h.{0,1}  -> layers.i.node_net.mlp.{0,2}
  layers.i.egnn.phi_v.{0,1}  -> layers.i.node_v_net.mlp.{0,2}

The two classes hold the same parameters and do the same arithmetic per step, but the official EGNN
layer differs from ours (EGNN eqs. 3-7, Satorras et al. 2021) in three places, so the first losses
differ: it replaces h by node_net([h, Σm]) without the residual, moves x by φ_v(h)·v + Δ keeping v
unchanged (ours carries v' = φ_v(h)·v + Δ, x' = x + v'), and clips Δ per axis at ±100 (ours rescales its
norm). The mapping is therefore verified twice: every mapped module computes what ours computes on random
inputs, and the whole official model's first loss equals our port's with those three layer semantics
swapped in (`official_semantics_layer`).
"""

import copy
import hashlib
import pathlib
import sys
import types
import warnings

import torch

FILES = ("model/egno.py", "model/basic.py", "model/layer_no.py")

SEMANTICS_DIFFER = [
    "node update: official h' = node_net([h, sum m]) (no residual); ours h' = h + phi_h([h, sum m])",
    "velocity: official x' = x + phi_v(h) v + D with v unchanged; ours v' = phi_v(h) v + D, x' = x + v'",
    "coordinate clamp: official clips D per axis at +-100; ours rescales |D| to at most coord_clamp",
]


def official_semantics_layer(self, x, h, v, graph, edge_attr=None):
    """Our EgnnLayer's parameters with the official EGNN_Layer's update rules (see SEMANTICS_DIFFER)."""
    rij = x[graph.receivers] - x[graph.senders]
    d2 = (rij * rij).sum(-1, keepdim=True)
    inputs = [h[graph.receivers], h[graph.senders], d2] + ([edge_attr] if edge_attr is not None else [])
    m = self.phi_e(torch.cat(inputs, -1))
    delta = graph.mean_at_receivers(rij * self.phi_x(m)).clamp(-100.0, 100.0)
    x = x + self.phi_v(h) * v + delta
    h = self.phi_h(torch.cat([h, graph.sum_at_receivers(m)], -1))
    return x, h, v


def import_official(checkout):
    root = pathlib.Path(checkout).expanduser().resolve()
    missing = [f for f in FILES if not (root / f).is_file()]
    if missing:
        sys.exit(f"nets peer: SGDD_EGNO_OFFICIAL={checkout}: not a checkout of MinkaiXu/EGNO (missing {', '.join(missing)}); "
                 "get one with `git clone https://github.com/MinkaiXu/EGNO`")
    sys.path.insert(0, str(root))
    # their layer_no.py uses torch.cuda.amp.autocast, deprecated (harmless on the CPU)
    warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.autocast.*", category=FutureWarning)
    try:
        from model.egno import EGNO  # noqa: PLC0415
    finally:
        sys.path.remove(str(root))
        # GF-NODE's code also names its package `model`: let the next import find its own
        for name in [m for m in sys.modules if m == "model" or m.startswith("model.")]:
            del sys.modules[name]
    hashes = {f: hashlib.sha256((root / f).read_bytes()).hexdigest() for f in FILES}
    return EGNO, root, hashes


def map_weights(port, official, cfg):
    """Copies our port's parameters into the official model (see the module docstring)."""
    hid, edge_dim = cfg["hidden"], cfg["edge_dim"]
    ours = port.state_dict()
    theirs = official.state_dict()
    new = {}

    def put(name, value):
        if theirs[name].shape != value.shape:
            sys.exit(f"nets peer: official {name} has shape {tuple(theirs[name].shape)}, mapped {tuple(value.shape)}")
        new[name] = value.clone()

    put("embedding.weight", ours["embed.weight"])
    put("embedding.bias", ours["embed.bias"])
    # ours [h_i (H), h_j (H), d² (1), e (E)] -> theirs [d², h_i, h_j, e]
    perm = torch.cat([torch.tensor([2 * hid]), torch.arange(2 * hid), torch.arange(2 * hid + 1, 2 * hid + 1 + edge_dim)])
    for i in range(cfg["layers"]):
        o, t = f"layers.{i}", f"layers.{i}"
        if cfg["time_conv"]:
            for ours_name, theirs_name in (("time_conv_h", "time_conv_modules"), ("time_conv_x", "time_conv_x_modules")):
                re, im = ours[f"{o}.{ours_name}.weight_re"], ours[f"{o}.{ours_name}.weight_im"]
                put(f"{theirs_name}.{i}.t_conv.weights1", torch.stack([re, im], -1))
        put(f"{t}.edge_message_net.scalar_net.mlp.0.weight", ours[f"{o}.egnn.phi_e.0.weight"][:, perm])
        put(f"{t}.edge_message_net.scalar_net.mlp.0.bias", ours[f"{o}.egnn.phi_e.0.bias"])
        put(f"{t}.edge_message_net.scalar_net.mlp.2.weight", ours[f"{o}.egnn.phi_e.1.weight"])
        put(f"{t}.edge_message_net.scalar_net.mlp.2.bias", ours[f"{o}.egnn.phi_e.1.bias"])
        for ours_mlp, theirs_mlp in (("phi_x", "coord_net"), ("phi_h", "node_net"), ("phi_v", "node_v_net")):
            put(f"{t}.{theirs_mlp}.mlp.0.weight", ours[f"{o}.egnn.{ours_mlp}.0.weight"])
            put(f"{t}.{theirs_mlp}.mlp.0.bias", ours[f"{o}.egnn.{ours_mlp}.0.bias"])
            put(f"{t}.{theirs_mlp}.mlp.2.weight", ours[f"{o}.egnn.{ours_mlp}.1.weight"])
            last_bias = ours.get(f"{o}.egnn.{ours_mlp}.1.bias")
            put(f"{t}.{theirs_mlp}.mlp.2.bias", last_bias if last_bias is not None else torch.zeros(1))
    unmapped = sorted(set(theirs) - set(new))
    if unmapped:
        sys.exit(f"nets peer: official parameters left unmapped: {', '.join(unmapped)}")
    official.load_state_dict(new, strict=True)


def module_checks(port, official, cfg, seed=0):
    """Max |official - ours| of every mapped module of layer 0 and the embedding on random inputs."""
    g = torch.Generator().manual_seed(seed)
    hid, e, t = cfg["hidden"], cfg["edge_dim"], cfg["horizon"]
    ours, theirs = port.layers[0].egnn, official.layers[0]
    h_i, h_j = torch.randn(50, hid, generator=g), torch.randn(50, hid, generator=g)
    rij, ea = torch.randn(50, 3, generator=g), torch.randn(50, e, generator=g)
    d2 = (rij * rij).sum(-1, keepdim=True)
    m = torch.randn(50, hid, generator=g)
    out = {}
    with torch.no_grad():
        out["edge_message"] = theirs.edge_message_net(vectors=[rij], scalars=torch.cat([h_i, h_j, ea], -1)) - ours.phi_e(
            torch.cat([h_i, h_j, d2, ea], -1))
        out["coord"] = theirs.coord_net(m) - ours.phi_x(m)
        out["velocity"] = theirs.node_v_net(m) - ours.phi_v(m)
        hh = torch.randn(50, 2 * hid, generator=g)
        out["node"] = theirs.node_net(hh) - ours.phi_h(hh)
        x_in = torch.randn(50, cfg["node_in"] + cfg["time_emb_dim"], generator=g)
        out["embedding"] = official.embedding(x_in) - port.embed(x_in)
        if cfg["time_conv"]:
            hs = torch.randn(t, 7, hid, generator=g)
            out["time_conv_h"] = official.time_conv_modules[0](hs) - port.layers[0].time_conv_h(hs)
            xs = torch.randn(t, 7, 3, 2, generator=g)
            out["time_conv_x"] = official.time_conv_x_modules[0](xs) - port.layers[0].time_conv_x(xs)
    return {k: float(v.abs().max()) for k, v in out.items()}


def build(checkout, cfg, port, graph, x0, v0, h0, edge_attr, target, edge_index):
    """The official EGNO with our port's weights, its loss on our batch, and what was checked.

    Returns (model, loss_fn, info). Exits when the configuration has no official counterpart or
    a check fails.
    """
    if cfg["cond_dim"] != 0 or not cfg["with_velocity"] or cfg["activation"] != "silu" \
            or cfg["time_conv_activation"] != "leaky_relu":
        sys.exit("nets peer: the official EGNO has no conditioning input, always carries velocities and "
                 "uses SiLU / LeakyReLU: this configuration has no official counterpart")
    EGNO, root, hashes = import_official(checkout)
    official = EGNO(n_layers=cfg["layers"], in_node_nf=cfg["node_in"], in_edge_nf=cfg["edge_dim"],
                    hidden_nf=cfg["hidden"], activation=torch.nn.SiLU(), device="cpu", with_v=True,
                    flat=False, norm=False, use_time_conv=cfg["time_conv"], num_modes=cfg["num_modes"],
                    num_timesteps=cfg["horizon"], time_emb_dim=cfg["time_emb_dim"])
    map_weights(port, official, cfg)
    checks = module_checks(port, official, cfg)
    worst = max(checks.values())
    if worst > 1e-5:
        sys.exit(f"nets peer: a mapped official module computes something else than ours: {checks}")

    t, n = cfg["horizon"], graph.num_nodes
    loc_mean = graph.graph_mean_per_node(x0)
    edges = [edge_index[0], edge_index[1]]

    def loss_fn():
        x, _, _ = official(x0, h0, edges, edge_attr, v=v0, loc_mean=loc_mean)
        return ((x.view(t, n, 3) - target) ** 2).mean()

    swapped = copy.deepcopy(port)
    for layer in swapped.layers:
        layer.egnn.forward = types.MethodType(official_semantics_layer, layer.egnn)
    with torch.no_grad():
        first = loss_fn().item()
        x, _, _ = swapped(x0, v0, h0, graph, edge_attr)
        first_swapped = ((x - target) ** 2).mean().item()
    if abs(first - first_swapped) > 1e-4 * (1 + abs(first_swapped)):
        sys.exit(f"nets peer: the official EGNO's first loss {first} differs from our port's with the official "
                 f"layer semantics {first_swapped}: the weight mapping is wrong")
    info = {
        "used": True,
        "checkout": str(root),
        "sha256": hashes,
        "parameters": {"official": sum(p.numel() for p in official.parameters()),
                       "ours": sum(p.numel() for p in port.parameters())},
        "module_check_max_abs_diff": checks,
        "first_loss": first,
        "first_loss_port_with_official_semantics": first_swapped,
        "semantics_differ": SEMANTICS_DIFFER,
    }
    return official, loss_fn, info
