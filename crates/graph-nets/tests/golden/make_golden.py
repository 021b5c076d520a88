"""Writes the golden fixture of graph-nets' `golden` tests: golden.json + golden.safetensors.

Run from the workspace root with the project venv (torch==2.13.0, safetensors):

    .venv/bin/python crates/graph-nets/tests/golden/make_golden.py

Everything is float64 so the Rust/PyTorch comparison can be tight (the tests state 1e-9). The
parameters of each module (initialised, then overwritten with N(0, 0.3²) so every path — including
EGNN's near-zero-initialised coordinate head — matters) are stored under the module's prefix with
the graph-nets VarStore names; inputs under `in.*`, outputs under `out.*`.
"""

import json
import pathlib
import sys

import torch
from safetensors.numpy import save_file

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import reference as ref  # noqa: E402

torch.manual_seed(20240607)
torch.set_default_dtype(torch.float64)

SIZES = [4, 3]
EDGES = [
    [[0, 1], [1, 0], [1, 2], [2, 1], [2, 3], [3, 2], [0, 3], [3, 0], [0, 2]],  # ring + one directed chord
    [[0, 1], [1, 0], [1, 2], [2, 1], [0, 2], [2, 0]],  # triangle
]
EGNN = {"hidden": 6, "edge_dim": 2, "with_velocity": True, "coord_clamp": 100.0, "activation": "silu"}
CONV_H = {"channels": 6, "num_modes": 3, "activation": "leaky_relu"}
CONV_X = {"vectors": 2, "num_modes": 3}
EGNO = {
    "node_in": 2, "edge_dim": 2, "hidden": 8, "layers": 2, "horizon": 5, "num_modes": 2, "time_emb_dim": 6,
    "time_conv": True, "with_velocity": True, "cond_dim": 3, "activation": "silu",
    "time_conv_activation": "leaky_relu", "coord_clamp": 100.0,
}


def randomise(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn_like(p))


def main():
    graph = ref.Graph(SIZES, EDGES)
    n, e = graph.num_nodes, graph.receivers.numel()
    tensors = {}

    # One EGNN layer.
    egnn = ref.EgnnLayer(**EGNN)
    randomise(egnn)
    x, h, v, ea = torch.randn(n, 3), torch.randn(n, EGNN["hidden"]), torch.randn(n, 3), torch.randn(e, 2)
    xo, ho, vo = egnn(x, h, v, graph, ea)
    tensors.update({"in.egnn.x": x, "in.egnn.h": h, "in.egnn.v": v, "in.egnn.edge_attr": ea})
    tensors.update({"out.egnn.x": xo, "out.egnn.h": ho, "out.egnn.v": vo})
    tensors.update({f"egnn.{k}": t for k, t in egnn.state_dict().items()})

    # The two Fourier temporal convolutions (T = 7: 4 rfft modes, 3 kept).
    conv_h = ref.SpectralTimeConv(**CONV_H)
    randomise(conv_h)
    u = torch.randn(7, n, CONV_H["channels"])
    tensors.update({"in.conv_h": u, "out.conv_h": conv_h(u)})
    tensors.update({f"conv_h.{k}": t for k, t in conv_h.state_dict().items()})
    conv_x = ref.EquivariantTimeConv(**CONV_X)
    randomise(conv_x)
    w = torch.randn(7, n, 3, CONV_X["vectors"])
    tensors.update({"in.conv_x": w, "out.conv_x": conv_x(w)})
    tensors.update({f"conv_x.{k}": t for k, t in conv_x.state_dict().items()})

    # The whole EGNO decoder, with and without conditioning.
    egno = ref.Egno(EGNO)
    randomise(egno)
    x0, v0, h0 = torch.randn(n, 3), torch.randn(n, 3), torch.randn(n, EGNO["node_in"])
    ea, z = torch.randn(e, EGNO["edge_dim"]), torch.randn(EGNO["horizon"], n, EGNO["cond_dim"])
    xo, vo, ho = egno(x0, v0, h0, graph, ea, z)
    xn, vn, hn = egno(x0, v0, h0, graph, ea, None)
    tensors.update({"in.egno.x": x0, "in.egno.v": v0, "in.egno.h": h0, "in.egno.edge_attr": ea, "in.egno.z_cond": z})
    tensors.update({"out.egno.x": xo, "out.egno.v": vo, "out.egno.h": ho})
    tensors.update({"out.egno_plain.x": xn, "out.egno_plain.v": vn, "out.egno_plain.h": hn})
    tensors.update({f"egno.{k}": t for k, t in egno.state_dict().items()})

    # safetensors.numpy: the venv has no `packaging`, which safetensors.torch imports.
    tensors = {k: t.detach().contiguous().numpy() for k, t in tensors.items()}
    save_file(tensors, str(HERE / "golden.safetensors"))
    meta = {
        "torch": torch.__version__,
        "sizes": SIZES,
        "edges": EDGES,
        "egnn": EGNN,
        "conv_h": CONV_H,
        "conv_x": CONV_X,
        "egno": EGNO,
    }
    (HERE / "golden.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {len(tensors)} tensors to {HERE / 'golden.safetensors'}")


if __name__ == "__main__":
    main()
