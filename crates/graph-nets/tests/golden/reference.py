"""Eager-PyTorch reference of graph-nets' EGNN layer, Fourier temporal convolutions and EGNO decoder.

Written independently from the paper equations (the same maths as the Rust crate, op for op), with
parameter names equal to the crate's VarStore paths, so a state_dict exported through safetensors
loads into the Rust model unchanged. Used by:
  * make_golden.py (next to this file): writes the golden fixture the `golden` tests compare against;
  * benches/peers/nets.py: the PyTorch side of `cargo xtask bench nets`.

Graphs are block-diagonal batches: `receivers`, `senders` are int64 [E] global node ids (a message
flows from sender j to receiver i), `node_graph` int64 [N] the graph of each node, `num_graphs` G.
"""

import math

import torch
from torch import nn


class Graph:
    """The tensors of a graph batch (see graph_nets::GraphBatch)."""

    def __init__(self, sizes, edges_per_graph, device="cpu"):
        recv, send, node_graph = [], [], []
        offset = 0
        for g, (n, edges) in enumerate(zip(sizes, edges_per_graph)):
            recv += [offset + i for i, _ in edges]
            send += [offset + j for _, j in edges]
            node_graph += [g] * n
            offset += n
        self.num_nodes = offset
        self.num_graphs = len(sizes)
        self.receivers = torch.tensor(recv, dtype=torch.int64, device=device)
        self.senders = torch.tensor(send, dtype=torch.int64, device=device)
        self.node_graph = torch.tensor(node_graph, dtype=torch.int64, device=device)
        self.in_degree = torch.bincount(self.receivers, minlength=self.num_nodes)
        self.graph_sizes = torch.tensor(sizes, dtype=torch.int64, device=device)

    @staticmethod
    def from_edge_index(edge_index, sizes):
        """From a global [2, E] edge index (row 0 receivers) and the graph sizes."""
        g = Graph.__new__(Graph)
        device = edge_index.device
        g.num_nodes, g.num_graphs = int(sum(sizes)), len(sizes)
        g.receivers, g.senders = edge_index[0].contiguous(), edge_index[1].contiguous()
        g.graph_sizes = torch.tensor(sizes, dtype=torch.int64, device=device)
        g.node_graph = torch.repeat_interleave(torch.arange(len(sizes), device=device), g.graph_sizes)
        g.in_degree = torch.bincount(g.receivers, minlength=g.num_nodes)
        return g

    def repeat_frames(self, frames):
        """`frames` disconnected copies, copy t holding nodes t*N + n (graph_nets::GraphBatch::repeat_frames)."""
        out = Graph.__new__(Graph)
        n, g = self.num_nodes, self.num_graphs
        steps = torch.arange(frames, device=self.receivers.device)
        out.num_nodes, out.num_graphs = frames * n, frames * g
        out.receivers = (self.receivers[None, :] + steps[:, None] * n).reshape(-1)
        out.senders = (self.senders[None, :] + steps[:, None] * n).reshape(-1)
        out.node_graph = (self.node_graph[None, :] + steps[:, None] * g).reshape(-1)
        out.in_degree = self.in_degree.repeat(frames)
        out.graph_sizes = self.graph_sizes.repeat(frames)
        return out

    def sum_at_receivers(self, m):
        return torch.zeros((self.num_nodes,) + m.shape[1:], dtype=m.dtype, device=m.device).index_add(0, self.receivers, m)

    def mean_at_receivers(self, m):
        return self.sum_at_receivers(m) / self.in_degree.clamp(min=1).to(m.dtype)[:, None]

    def graph_mean_per_node(self, x):
        s = torch.zeros((self.num_graphs,) + x.shape[1:], dtype=x.dtype, device=x.device).index_add(0, self.node_graph, x)
        return (s / self.graph_sizes.clamp(min=1).to(x.dtype)[:, None])[self.node_graph]


ACTIVATIONS = {
    "silu": nn.functional.silu,
    "relu": torch.relu,
    "gelu": nn.functional.gelu,
    "elu": nn.functional.elu,
    "tanh": torch.tanh,
    "leaky_relu": nn.functional.leaky_relu,
}


class Mlp(nn.ModuleList):
    """Linear -> act -> ... -> Linear [-> act]; linears named 0, 1, ... (as graph-nets' Mlp)."""

    def __init__(self, dims, act, last_act=False, last_bias=True):
        n = len(dims) - 1
        super().__init__(nn.Linear(dims[i], dims[i + 1], bias=(i + 1 < n or last_bias)) for i in range(n))
        self.act, self.last_act = act, last_act

    def forward(self, x):
        for i, lin in enumerate(self):
            x = lin(x)
            if i + 1 < len(self) or self.last_act:
                x = ACTIVATIONS[self.act](x)
        return x


class EgnnLayer(nn.Module):
    """Satorras et al. 2021, eqs. 3-7 (see graph_nets::EgnnLayer)."""

    def __init__(self, hidden, edge_dim=0, with_velocity=True, coord_clamp=100.0, activation="silu"):
        super().__init__()
        h = hidden
        self.coord_clamp = coord_clamp
        self.phi_e = Mlp([2 * h + 1 + edge_dim, h, h], activation, last_act=True)
        self.phi_x = Mlp([h, h, 1], activation, last_bias=False)
        # EGNN's near-zero coordinate head: xavier-uniform with gain 0.001.
        nn.init.xavier_uniform_(self.phi_x[-1].weight, gain=0.001)
        self.phi_h = Mlp([2 * h, h, h], activation)
        self.phi_v = Mlp([h, h, 1], activation) if with_velocity else None

    def forward(self, x, h, v, graph, edge_attr=None):
        rij = x[graph.receivers] - x[graph.senders]
        d2 = (rij * rij).sum(-1, keepdim=True)
        inputs = [h[graph.receivers], h[graph.senders], d2] + ([edge_attr] if edge_attr is not None else [])
        m = self.phi_e(torch.cat(inputs, -1))
        delta = graph.mean_at_receivers(rij * self.phi_x(m))
        if self.coord_clamp is not None:
            norm = (delta * delta).sum(-1, keepdim=True).sqrt()
            delta = delta * (self.coord_clamp / norm.clamp(min=1e-12)).clamp(max=1.0)
        if self.phi_v is not None:
            v = self.phi_v(h) * v + delta
            x = x + v
        else:
            x = x + delta
        h = h + self.phi_h(torch.cat([h, graph.sum_at_receivers(m)], -1))
        return x, h, v


def spectral_mix(u, w_re, w_im, equation):
    """irfft_T(W . rfft_T(u)[:modes]) along dim 0."""
    t = u.shape[0]
    modes = min(w_re.shape[2], t // 2 + 1)
    u_ft = torch.fft.rfft(u, dim=0)[:modes]
    w = torch.complex(w_re[..., :modes], w_im[..., :modes])
    return torch.fft.irfft(torch.einsum(equation, u_ft, w), n=t, dim=0)


class SpectralTimeConv(nn.Module):
    def __init__(self, channels, num_modes, activation="leaky_relu"):
        super().__init__()
        scale = 1.0 / (channels * channels)
        self.weight_re = nn.Parameter(scale * torch.rand(channels, channels, num_modes))
        self.weight_im = nn.Parameter(scale * torch.rand(channels, channels, num_modes))
        self.act = activation

    def forward(self, h):  # [T, N, C]
        return h + ACTIVATIONS[self.act](spectral_mix(h, self.weight_re, self.weight_im, "mnc,com->mno"))


class EquivariantTimeConv(nn.Module):
    def __init__(self, vectors, num_modes):
        super().__init__()
        self.weight_re = nn.Parameter(0.1 * torch.rand(vectors, vectors, num_modes))
        self.weight_im = nn.Parameter(0.1 * torch.rand(vectors, vectors, num_modes))

    def forward(self, u):  # [T, N, 3, K]
        return u + spectral_mix(u, self.weight_re, self.weight_im, "mndk,kom->mndo")


def sinusoidal_time_embedding(frames, dim, dtype, device):
    half = dim // 2
    step = math.log(10000.0) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=dtype, device=device) * -step)
    angles = torch.arange(frames, dtype=dtype, device=device)[:, None] * freqs[None, :]
    emb = torch.cat([angles.sin(), angles.cos()], 1)
    return nn.functional.pad(emb, (0, 1)) if dim % 2 == 1 else emb


class EgnoLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        if cfg["time_conv"]:
            self.time_conv_h = SpectralTimeConv(cfg["hidden"], cfg["num_modes"], cfg["time_conv_activation"])
            self.time_conv_x = EquivariantTimeConv(2 if cfg["with_velocity"] else 1, cfg["num_modes"])
        self.egnn = EgnnLayer(cfg["hidden"], cfg["edge_dim"], cfg["with_velocity"], cfg["coord_clamp"], cfg["activation"])


class Egno(nn.Module):
    """The EGNO decoder with SGDD conditioning (see graph_nets::Egno); cfg holds EgnoConfig's fields."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(cfg["node_in"] + cfg["time_emb_dim"] + cfg["cond_dim"], cfg["hidden"])
        self.layers = nn.ModuleList(EgnoLayer(cfg) for _ in range(cfg["layers"]))

    def forward(self, x0, v0, h0, graph, edge_attr=None, z_cond=None):
        cfg = self.cfg
        t, n, hid = cfg["horizon"], graph.num_nodes, cfg["hidden"]
        temb = sinusoidal_time_embedding(t, cfg["time_emb_dim"], x0.dtype, x0.device)
        inputs = [h0[None].expand(t, n, -1), temb[:, None].expand(t, n, -1)]
        if cfg["cond_dim"] > 0:
            inputs.append(z_cond.reshape(t, n, -1) if z_cond is not None else x0.new_zeros(t, n, cfg["cond_dim"]))
        h = self.embed(torch.cat(inputs, -1).reshape(t * n, -1))
        centroid = graph.graph_mean_per_node(x0).repeat(t, 1)
        x = x0.repeat(t, 1)
        v = v0.repeat(t, 1) if v0 is not None else None
        frames = graph.repeat_frames(t)
        edge_attr = edge_attr.repeat(t, 1) if edge_attr is not None else None
        for layer in self.layers:
            if cfg["time_conv"]:
                h = layer.time_conv_h(h.reshape(t, n, hid)).reshape(t * n, hid)
                centred = x - centroid
                stacked = torch.stack([centred, v], -1) if v is not None else centred[..., None]
                out = layer.time_conv_x(stacked.reshape(t, n, 3, -1))
                x = out[..., 0].reshape(t * n, 3) + centroid
                if v is not None:
                    v = out[..., 1].reshape(t * n, 3)
            x, h, v = layer.egnn(x, h, v, frames, edge_attr)
        return x.reshape(t, n, 3), (v.reshape(t, n, 3) if v is not None else None), h.reshape(t, n, hid)
