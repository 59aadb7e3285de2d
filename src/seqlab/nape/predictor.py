"""The GENNAPE predictor: CG encoder + contrastive pretraining + fuzzy C-means mixture of MLP heads.

Pipeline for each ensemble member (one seed):

1. **Encoder**: input projection, then ``layers`` blocks of two ``torch_geometric`` ``GraphConv``
   (k-GNN, Morris et al.) passes, one along the directed edges and one against them (a CG's input
   node would otherwise never receive messages), with LayerNorm, ReLU and a residual; mean + max
   pooling, concatenated with the graph-level features (log FLOPs/params/size, depth, op counts; with
   ``struct_features`` also ``data.STRUCT_FEATURES``: op-group fractions, widths, resolutions,
   downsampling, shortest/mean path depth, number of paths, all from the CG with fixed constants).
2. **Contrastive pretraining** (NT-Xent, Chen et al. 2020): two dropout/feature-masked views of each
   graph; the other view is a positive of weight 1, and every other graph in the batch is a soft
   positive weighted by ``exp(-d^2 / median(d^2))`` where ``d`` is the L1 distance between the
   graphs' normalised-Laplacian spectrum histograms.
3. **Fuzzy C-means** (m = 2) over the pretrained embeddings; a frozen copy of the pretrained
   encoder gives each graph its membership ``u`` (K clusters).
4. **Heads**: K MLP heads on a trainable copy of the encoder; head k's squared error is weighted by
   ``u_k^m`` (each head learns its cluster), the prediction is ``sum_k u_k head_k``; a pairwise
   logistic ranking loss within each family is added.
5. **FLOPs-based target transform**: within a family, accuracy is standardised
   (``z = (acc - mu_f) / sd_f``) and the heads regress the residual
   ``r = z - beta * (ln FLOPs - m_f) / FLOPS_SCALE``; a prediction is
   ``beta * (ln FLOPs - flops_ref) / FLOPS_SCALE + r_hat`` with ``flops_ref`` a constant stored in
   the model (mean ln FLOPs of the training families, or of the fine-tuning samples), so a graph's
   prediction never depends on the other graphs predicted with it. Percent = ``mu + sd * score``
   (``mu``/``sd``: the training families' pooled statistics, or the fine-tuning samples'), kept inside
   (0, 100) by smooth, strictly monotone (hyperbolic) tails beyond [2, 98] %.

Several seeds are averaged (``ensemble``).

6. **Optional data-free proxy** (``proxy_weight`` w > 0, results/nape_run5): a graph whose CG carries the
   NASWOT score of its module at initialisation (``ComputationGraph.from_module`` computes it by default
   for modules with rectifier-like activations, see :mod:`seqlab.nape.proxies`) is scored
   ``(1 - w) * s_gnn + w * (naswot - proxy_ref) / proxy_scale``;
   ``proxy_ref``/``proxy_scale`` are constants stored in the model (mean of the training families' mean
   and standard deviation of the score, :meth:`GENNAPE.set_proxy`), so each prediction still depends on
   its own graph only. Graphs without the score (ONNX files, JSON without it, modules without rectifiers,
   or traced with ``proxies=False``) keep ``s_gnn``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .data import STRUCT_FEATURES, GraphSet
from .graph import GRAPH_FEATURES, NUM_NODE_FEATURES, ComputationGraph
from .proxies import naswot_key

FLOPS_SCALE = 0.6  # ~ the std of ln(FLOPs) within a NAS family; fixed so one graph can be scored alone


@dataclass
class Config:
    hidden: int = 64
    layers: int = 4
    dropout: float = 0.1
    clusters: int = 3
    fuzzy_m: float = 2.0
    beta: float = 0.5
    pretrain_epochs: int = 8
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    temperature: float = 0.2
    rank_weight: float = 1.0
    ensemble: int = 3
    max_graphs_per_family: int = 4096  # subsample large families per epoch (CPU budget)
    rank_targets: bool = False  # Gaussianised within-family ranks instead of z-scores (see results/nape_run2)
    struct_features: bool = False  # append data.STRUCT_FEATURES to the graph-level features (results/nape_run4)
    proxy_weight: float = 0.0  # mixing weight w of the standardised data-free NASWOT score (results/nape_run5)
    # NASWOT's synthetic inputs, as in proxies.synthetic_batch: the scores behind proxy_ref/proxy_scale were
    # computed with it, and graphs are scored with the key proxies.naswot_key(proxy_noise); the default is
    # from_module's (graph.PROXY_NOISE); checkpoints from before run 10 have no field and load as Gaussian
    proxy_noise: str = "pink"


# ----------------------------------------------------------------------------- batching
class _Batches:
    """Holds a GraphSet as tensors on ``device`` and cuts mini-batches out of it."""

    def __init__(self, gs: GraphSet, device: torch.device, struct: bool = False):
        self.gs = gs
        self.device = device
        self.x = torch.from_numpy(gs.x).to(device)
        self.edges = torch.from_numpy(gs.edges).to(device)
        g = np.concatenate([gs.g, gs.structure()], 1) if struct else gs.g
        self.g = torch.from_numpy(np.ascontiguousarray(g, dtype=np.float32)).to(device)
        self.sig = torch.from_numpy(gs.sig).to(device)
        self.off = gs.offsets
        self.eoff = gs.eoff

    def get(self, idx: np.ndarray):
        """-> (x (n, F), edge_index (2, e), batch (n,), g (B, G), sig (B, S)) for graphs ``idx``."""
        idx = np.asarray(idx)
        n_nodes = self.off[idx + 1] - self.off[idx]
        n_edges = self.eoff[idx + 1] - self.eoff[idx]
        starts = np.concatenate([[0], np.cumsum(n_nodes)[:-1]])
        estarts = np.concatenate([[0], np.cumsum(n_edges)[:-1]])
        # vectorised gather of the graphs' node/edge ranges (no Python loop over graphs)
        node_sel = np.repeat(self.off[idx] - starts, n_nodes) + np.arange(n_nodes.sum())
        e_sel = np.repeat(self.eoff[idx] - estarts, n_edges) + np.arange(n_edges.sum())
        e_shift = np.repeat(starts, n_edges)
        dev = self.device
        x = self.x[torch.from_numpy(node_sel).to(dev)]
        ei = self.edges[:, torch.from_numpy(e_sel).to(dev)] + torch.from_numpy(e_shift).to(dev)
        batch = torch.from_numpy(np.repeat(np.arange(len(idx)), n_nodes)).to(dev)
        ii = torch.from_numpy(idx).to(dev)
        return x, ei, batch, self.g[ii], self.sig[ii]


# ----------------------------------------------------------------------------- modules
class Encoder(nn.Module):
    """CG encoder: node features ``(n, F)`` + edges ``(2, e)`` -> graph embedding ``(B, out_dim)``."""

    def __init__(self, hidden: int = 64, layers: int = 4, dropout: float = 0.1, struct: bool = False):
        super().__init__()
        from torch_geometric.nn import GraphConv

        self.inp = nn.Linear(NUM_NODE_FEATURES, hidden)
        self.fwd = nn.ModuleList(GraphConv(hidden, hidden, aggr="add") for _ in range(layers))
        self.bwd = nn.ModuleList(GraphConv(hidden, hidden, aggr="add") for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.dropout = dropout
        self.out_dim = 2 * hidden + len(GRAPH_FEATURES) + (len(STRUCT_FEATURES) if struct else 0)

    def forward(self, x, edge_index, batch, g, num_graphs: int):
        from torch_geometric.nn import global_max_pool, global_mean_pool

        h = F.relu(self.inp(x))
        rev = edge_index.flip(0)
        for f, b, n in zip(self.fwd, self.bwd, self.norms):
            # sum aggregation keeps fan-in information (how many branches meet at an add/concat);
            # the 1/2 keeps the two directions' sum on the residual's scale
            m = 0.5 * (f(h, edge_index) + b(h, rev))
            h = h + F.dropout(F.relu(n(m)), self.dropout, self.training)
        pooled = torch.cat([global_mean_pool(h, batch, num_graphs), global_max_pool(h, batch, num_graphs)], 1)
        return torch.cat([pooled, g], 1)


def _mlp(i: int, h: int, o: int, dropout: float = 0.0) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Dropout(dropout), nn.Linear(h, h // 2), nn.ReLU(),
                         nn.Linear(h // 2, o))


def fuzzy_cmeans(z: torch.Tensor, k: int, m: float = 2.0, iters: int = 100, seed: int = 0) -> torch.Tensor:
    """Fuzzy C-means centroids, float ``(k, D)``, of points ``z`` float ``(N, D)``."""
    gen = torch.Generator().manual_seed(seed)
    c = z[torch.randperm(len(z), generator=gen)[:k].to(z.device)].clone()
    for _ in range(iters):
        u = memberships(z, c, m)
        w = u.pow(m)
        c = (w.T @ z) / w.sum(0)[:, None].clamp_min(1e-12)
    return c


def memberships(z: torch.Tensor, c: torch.Tensor, m: float = 2.0) -> torch.Tensor:
    """Fuzzy memberships ``(N, k)`` (rows sum to 1) of points ``(N, D)`` to centroids ``(k, D)``."""
    d2 = torch.cdist(z, c).pow(2).clamp_min(1e-12)
    inv = d2.pow(-1.0 / (m - 1.0))
    return inv / inv.sum(1, keepdim=True)


class _Member(nn.Module):
    """One ensemble member: frozen clustering encoder + centroids, trainable encoder + K heads."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.cluster_enc = Encoder(cfg.hidden, cfg.layers, cfg.dropout, cfg.struct_features)
        self.enc = Encoder(cfg.hidden, cfg.layers, cfg.dropout, cfg.struct_features)
        self.proj = nn.Sequential(nn.Linear(self.enc.out_dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 32))
        self.heads = nn.ModuleList(_mlp(self.enc.out_dim, 2 * cfg.hidden, 1, cfg.dropout)
                                   for _ in range(cfg.clusters))
        self.register_buffer("centroids", torch.zeros(cfg.clusters, self.enc.out_dim))
        self.register_buffer("z_mean", torch.zeros(self.enc.out_dim))
        self.register_buffer("z_std", torch.ones(self.enc.out_dim))

    def member_u(self, x, ei, batch, g, n):
        with torch.no_grad():
            self.cluster_enc.eval()
            z = (self.cluster_enc(x, ei, batch, g, n) - self.z_mean) / self.z_std
            return memberships(z, self.centroids, self.cfg.fuzzy_m)

    def forward(self, x, ei, batch, g, n, u=None):
        """-> (mixed residual (B,), per-head outputs (B, K), memberships (B, K)); ``u`` if precomputed."""
        if u is None:
            u = self.member_u(x, ei, batch, g, n)
        h = self.enc(x, ei, batch, g, n)
        outs = torch.cat([head(h) for head in self.heads], 1)
        return (u * outs).sum(1), outs, u


def _nt_xent(z1, z2, sig, temperature):
    """Spectrum-weighted NT-Xent over two views ``(B, D)``; ``sig`` ``(B, S)`` Laplacian histograms."""
    b = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    eye = torch.eye(2 * b, device=z.device, dtype=torch.bool)
    logits = logits.masked_fill(eye, -1e9)
    logp = F.log_softmax(logits, 1)
    d = torch.cdist(sig, sig, p=1).pow(2)
    w = torch.exp(-d / d[d > 0].median().clamp_min(1e-6)) if (d > 0).any() else torch.zeros_like(d)
    w = w.repeat(2, 2)
    idx = torch.arange(b, device=z.device)
    w[idx, idx + b] = 1.0
    w[idx + b, idx] = 1.0
    w = w.masked_fill(eye, 0.0)
    return -(w * logp).sum(1).div(w.sum(1)).mean()


def _rank_loss(score, y):
    """Pairwise logistic ranking loss over all pairs of one family's batch."""
    ds = score[:, None] - score[None, :]
    dy = y[:, None] - y[None, :]
    mask = dy > 1e-6
    if not mask.any():
        return score.sum() * 0
    return F.softplus(-ds[mask]).mean()


# ----------------------------------------------------------------------------- predictor
class GENNAPE:
    """Generalised neural architecture performance estimator (see module docstring).

    Args:
        config: :class:`Config` fields as keyword arguments (``ensemble``, ``epochs``, ...).
        device: torch device for training and inference (default: CUDA if available).
    """

    def __init__(self, device: str | None = None, **config):
        self.cfg = Config(**config)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.members: list[_Member] = []
        self.mu = 90.0  # percent-scale reference (pooled training families)
        self.sd = 3.0
        self.flops_ref = 18.0  # FLOPs-prior centre: mean ln FLOPs of the training families (fixed at fit)
        self.proxy_ref = 0.0  # NASWOT standardisation constants (set_proxy)
        self.proxy_scale = 1.0
        self.proxy_cv: dict | None = None  # the cross-fitting curve of the last fine_tune(proxy="cv"...)

    # -------------------------------------------------------------- inputs
    def _as_graphset(self, items) -> GraphSet:
        if isinstance(items, GraphSet):
            return items
        if isinstance(items, ComputationGraph):
            items = [items]
        elif isinstance(items, nn.Module):
            raise TypeError(f"items must be a sequence of ComputationGraphs or (nn.Module, example_input) pairs, got "
                            f"a bare {type(items).__name__} module: pass [(module, example_input)]")
        elif (isinstance(items, tuple) and len(items) == 2 and isinstance(items[0], nn.Module)
              and not isinstance(items[1], (nn.Module, ComputationGraph))):
            items = [items]  # one (module, example_input) pair
        elif isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
            raise TypeError("items must be a sequence of ComputationGraphs or (nn.Module, example_input) pairs, "
                            f"got {type(items).__name__}")
        graphs = []
        for it in items:
            if isinstance(it, ComputationGraph):
                graphs.append(it)
            elif isinstance(it, (tuple, list)) and len(it) == 2 and isinstance(it[0], nn.Module):
                # with the proxy term on: the same rule as a plain ``from_module`` (auto), so a pair and its
                # traced CG predict the same; off: no extra pass
                graphs.append(ComputationGraph.from_module(it[0], it[1],
                                                           proxies=None if self.cfg.proxy_weight > 0 else False,
                                                           proxy_noise=self.cfg.proxy_noise))
            else:
                raise ValueError("predict expects ComputationGraphs or (nn.Module, example_input) pairs, "
                                 f"got {type(it).__name__}"
                                 + (f" of length {len(it)}" if isinstance(it, (tuple, list)) else ""))
        if not graphs:
            raise ValueError("nothing to predict")
        key = naswot_key(self.cfg.proxy_noise)
        if self.cfg.proxy_weight > 0 and not any(key in g.proxies for g in graphs):
            other = sorted({k for g in graphs for k in g.proxies if k.startswith("naswot")})
            if other:
                warnings.warn(f"the graphs carry NASWOT scores {other} but this predictor was calibrated with "
                              f"{self.cfg.proxy_noise!r} inputs ({key!r}): predicting from the graphs alone; "
                              f"trace with from_module(..., proxy_noise={self.cfg.proxy_noise!r})", stacklevel=3)
        return GraphSet.from_graphs(graphs, proxy_key=key)

    def set_proxy(self, scores: dict[str, np.ndarray], weight: float) -> GENNAPE:
        """Turn on the data-free proxy term with mixing weight ``weight`` (0 = off, 1 = proxy only).

        Args:
            scores: training family name -> NASWOT scores float ``(n_f,)`` of some (or all) of its networks
                (:func:`seqlab.nape.proxies.naswot`); the stored constants are the mean over families of
                the family mean (``proxy_ref``) and of the family standard deviation (``proxy_scale``).
            weight: ``w`` in [0, 1]; choose it without the family to be predicted (results/nape_run5).
        Returns:
            self.
        """
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"proxy weight must be in [0, 1], got {weight}")
        vals = [np.asarray(v, dtype=np.float64) for v in scores.values()]
        vals = [v[np.isfinite(v)] for v in vals]
        if weight > 0 and (not vals or any(len(v) < 2 for v in vals)):
            raise ValueError("set_proxy needs at least 2 finite scores per family")
        if vals and all(len(v) >= 2 for v in vals):
            self.proxy_ref = float(np.mean([v.mean() for v in vals]))
            self.proxy_scale = float(max(np.mean([v.std() for v in vals]), 1e-6))
        self.cfg.proxy_weight = float(weight)
        return self

    def _mix_proxy(self, s: np.ndarray, gs: GraphSet, weight: float | None = None) -> np.ndarray:
        """Per graph: ``(1 - w) * s + w * z_proxy`` where the graph has a finite NASWOT score, else ``s``
        (``w`` = ``weight``, default ``cfg.proxy_weight``)."""
        w = self.cfg.proxy_weight if weight is None else weight
        if w <= 0 or gs.proxy is None:
            return s
        z = (np.asarray(gs.proxy, dtype=np.float64) - self.proxy_ref) / self.proxy_scale
        has = np.isfinite(z)
        if has.any() and not has.all():
            # Each graph is still scored on its own, but the two groups sit on different scales, so a ranking
            # across them is not what either would give alone.
            warnings.warn(f"{int((~has).sum())} of {len(has)} graphs carry no NASWOT score (ONNX, no rectifiers, "
                          "or above the tracing cost cap) and are predicted by the GNN alone, the others with "
                          f"the proxy term (weight {w}); rank graphs traced the same way, or trace all with "
                          "SEQLAB_NAPE_PROXY=0", stacklevel=3)
        out = s.copy()
        out[has] = (1.0 - w) * s[has] + w * z[has]
        return out

    def _standardise(self, acc: np.ndarray) -> np.ndarray:
        """Within-family target: z-score, or (``rank_targets``) the normal quantile of the rank, which
        ignores how far the family's failed networks (10-60 %) sit from the rest."""
        if self.cfg.rank_targets:
            from scipy.stats import norm, rankdata

            return norm.ppf((rankdata(acc) - 0.5) / len(acc))
        return (acc - acc.mean()) / (acc.std() + 1e-6)

    def _flops_prior(self, gs: GraphSet, ref: float | None = None) -> np.ndarray:
        """``beta * (ln FLOPs - ref) / FLOPS_SCALE``; ``ref`` defaults to the stored ``flops_ref``."""
        lf = np.log(np.maximum(gs.flops, 1.0))
        m = self.flops_ref if ref is None else ref
        return self.cfg.beta * (lf - m) / FLOPS_SCALE

    def _to_percent(self, s: np.ndarray) -> np.ndarray:
        """Score -> percent, elementwise: ``mu + sd * s`` inside [2, 98], with smooth hyperbolic tails
        beyond (value and slope continuous at 2 and 98), so the map is strictly monotone and stays inside
        (0, 100). Hyperbolic rather than exponential: an exponential upper tail rounds to exactly 100.0 in
        float64 a few tens of points past 98, which would tie networks far larger than the training
        families (the FLOPs prior with a large ``beta`` gets there); ``100 - 4 / (v - 96)`` stays distinct
        up to ``v ~ 1e14``."""
        v = self.mu + self.sd * np.asarray(s, dtype=np.float64)
        lo, hi = 2.0, 98.0
        out = v.copy()
        up, dn = v > hi, v < lo
        out[up] = 100.0 - (100.0 - hi) ** 2 / (v[up] - 2.0 * hi + 100.0)
        out[dn] = lo**2 / (2.0 * lo - v[dn])
        return out

    # -------------------------------------------------------------- training
    def fit(self, families: dict[str, tuple[GraphSet, np.ndarray]], seed: int = 0,
            progress: bool = True) -> GENNAPE:
        """Train on labelled families.

        Args:
            families: name -> (GraphSet of G graphs, accuracy float ``(G,)`` in percent).
            seed: base seed (member i uses ``seed + i``).
        Returns:
            self.
        """
        from tqdm import tqdm

        fams = []
        mus, sds, lfs = [], [], []
        for name, (gs, acc) in families.items():
            acc = np.asarray(acc, dtype=np.float64)
            if len(acc) != len(gs):
                raise ValueError(f"family {name}: {len(gs)} graphs but {len(acc)} targets")
            mu, sd = acc.mean(), acc.std() + 1e-6
            z = self._standardise(acc)
            # training target: residual w.r.t. the family's own FLOPs centre (a training-time statistic)
            r = z - self._flops_prior(gs, float(np.log(np.maximum(gs.flops, 1.0)).mean()))
            fams.append((name, _Batches(gs, self.device, self.cfg.struct_features), z, r))
            mus.append(mu)
            sds.append(sd)
            lfs.append(np.log(np.maximum(gs.flops, 1)).mean())
        self.mu, self.sd, self.flops_ref = float(np.mean(mus)), float(np.mean(sds)), float(np.mean(lfs))
        self.members = []
        bar = tqdm(total=self.cfg.ensemble * (self.cfg.pretrain_epochs + self.cfg.epochs),
                   desc="GENNAPE fit", disable=not progress)
        for e in range(self.cfg.ensemble):
            torch.manual_seed(seed + e)
            rng = np.random.default_rng(seed + e)
            mem = _Member(self.cfg).to(self.device)
            self._pretrain(mem, fams, rng, bar)
            self._cluster(mem, fams, seed + e)
            self._regress(mem, fams, rng, self.cfg.epochs, self.cfg.lr, bar)
            self.members.append(mem)
        bar.close()
        return self

    def _epoch_batches(self, fams, rng):
        """One epoch as a shuffled list of (family index, graph indices); each batch is one family."""
        out = []
        for fi, (_, b, _, _) in enumerate(fams):
            n = len(b.gs)
            idx = rng.permutation(n)[: self.cfg.max_graphs_per_family]
            bs = self.cfg.batch_size
            out += [(fi, idx[i:i + bs]) for i in range(0, len(idx), bs) if len(idx[i:i + bs]) >= 4]
        rng.shuffle(out)
        return out

    def _pretrain(self, mem: _Member, fams, rng, bar):
        if self.cfg.pretrain_epochs <= 0:
            return
        enc, proj = mem.cluster_enc, mem.proj
        opt = torch.optim.AdamW(list(enc.parameters()) + list(proj.parameters()), lr=self.cfg.lr,
                                weight_decay=1e-4)
        enc.train()
        for _ in range(self.cfg.pretrain_epochs):
            for fi, idx in self._epoch_batches(fams, rng):
                x, ei, batch, g, sig = fams[fi][1].get(idx)
                n = len(idx)
                views = []
                for _v in range(2):
                    # augmentation: feature masking (whole columns) + encoder dropout
                    keep = (torch.rand(1, x.shape[1], device=x.device) > 0.1).float()
                    views.append(proj(enc(x * keep, ei, batch, g, n)))
                loss = _nt_xent(views[0], views[1], sig, self.cfg.temperature)
                opt.zero_grad()
                loss.backward()
                opt.step()
            bar.update(1)
        mem.enc.load_state_dict(enc.state_dict())  # regression starts from the pretrained encoder

    @torch.no_grad()
    def _embed(self, enc: Encoder, b: _Batches, bs: int = 256, limit: int | None = None) -> torch.Tensor:
        enc.eval()
        out = []
        n = len(b.gs) if limit is None else min(limit, len(b.gs))
        for i in range(0, n, bs):
            idx = np.arange(i, min(i + bs, n))
            x, ei, batch, g, _ = b.get(idx)
            out.append(enc(x, ei, batch, g, len(idx)))
        return torch.cat(out)

    def _cluster(self, mem: _Member, fams, seed: int):
        zs = torch.cat([self._embed(mem.cluster_enc, b, limit=self.cfg.max_graphs_per_family) for _, b, _, _ in fams])
        mem.z_mean.copy_(zs.mean(0))
        mem.z_std.copy_(zs.std(0).clamp_min(1e-3))
        zn = (zs - mem.z_mean) / mem.z_std
        mem.centroids.copy_(fuzzy_cmeans(zn, self.cfg.clusters, self.cfg.fuzzy_m, seed=seed))
        for p in mem.cluster_enc.parameters():
            p.requires_grad_(False)

    def _regress(self, mem: _Member, fams, rng, epochs: int, lr: float, bar=None):
        params = list(mem.enc.parameters()) + list(mem.heads.parameters())
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
        steps = max(1, epochs * len(self._epoch_batches(fams, np.random.default_rng(0))))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps + 1, pct_start=0.1)
        # memberships come from the frozen pretrained encoder (computed per batch: an epoch may see only
        # part of a large family)
        mem.enc.train()
        mem.heads.train()
        for _ in range(epochs):
            for fi, idx in self._epoch_batches(fams, rng):
                _, b, z, r = fams[fi]
                x, ei, batch, g, _ = b.get(idx)
                rt = torch.as_tensor(r[idx], dtype=torch.float32, device=self.device)
                zt = torch.as_tensor(z[idx], dtype=torch.float32, device=self.device)
                mixed, outs, u = mem(x, ei, batch, g, len(idx))
                w = u.pow(self.cfg.fuzzy_m)
                mse = (w * (outs - rt[:, None]).pow(2)).sum(1).div(w.sum(1)).mean()
                # ranking on the full score (FLOPs prior + residual) against the true order
                prior = zt - rt
                loss = mse + self.cfg.rank_weight * _rank_loss(mixed + prior, zt)
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, 5.0)
                opt.step()
                sched.step()
            if bar is not None:
                bar.update(1)
        mem.eval()

    # -------------------------------------------------------------- inference
    @torch.no_grad()
    def score(self, items, flops_ref: float | None = None, batch_size: int = 256) -> np.ndarray:
        """Standardised score, float64 ``(N,)``: higher = better; ``predict`` maps it to percent.

        Each graph's score depends on that graph alone (``flops_ref``: default the stored constant); with
        ``proxy_weight > 0`` a graph that carries a NASWOT score gets the proxy term (see module docstring).
        """
        if not self.members:
            raise RuntimeError("GENNAPE is not trained: call fit() or load()")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        gs = self._as_graphset(items)
        b = _Batches(gs, self.device, self.cfg.struct_features)
        res = np.zeros(len(gs))
        for mem in self.members:
            mem.eval()
            out = []
            for i in range(0, len(gs), batch_size):
                idx = np.arange(i, min(i + batch_size, len(gs)))
                x, ei, batch, g, _ = b.get(idx)
                out.append(mem(x, ei, batch, g, len(idx))[0].double().cpu())
            res += torch.cat(out).numpy()
        return self._mix_proxy(res / len(self.members) + self._flops_prior(gs, flops_ref), gs)

    def predict(self, items, batch_size: int = 256) -> np.ndarray:
        """Predicted accuracy in percent, float64 ``(N,)`` clipped to [0, 100].

        Args:
            items: a ``ComputationGraph``, a sequence of them, ``(nn.Module, example_input)`` pairs (or one
                such pair), or a ``GraphSet``; anything else raises ``TypeError``/``ValueError``. Every graph is
                scored on its own: predicting a list gives the same numbers as predicting each element alone, up
                to float32 rounding in the batched GNN (~1e-7 %, results/nape_unseen).
        """
        return self._to_percent(self.score(items, batch_size=batch_size))

    def fine_tune(self, graphs, targets: Sequence[float], n: int = 50, epochs: int = 150, lr: float = 3e-3,
                  seed: int = 0, proxy: str | float | None = None) -> GENNAPE:
        """Adapt to a new family from ``n`` labelled samples (random ``n`` of those given), in place.

        Args:
            graphs: CGs / (module, input) pairs / GraphSet; targets: accuracy in percent, ``(len(graphs),)``.
            epochs, lr: the schedule of every member (one step per epoch when ``n`` fits in a batch). 150 / 3e-3
                were chosen on NAS-Bench-Macro and NB-101 among five schedules (results/nape_run11): 50-shot SRCC of
                the GNN 0.973 / 0.840 there, against 0.806 / 0.810 with the 60 / 1e-3 used before.
            proxy: the data-free NASWOT term after fine-tuning.

                * ``None`` (default): left as it was (``proxy_weight`` and the training families' constants).
                * ``"cv"`` (alias ``"cv-1se"``): ``w`` chosen on the samples alone. 5-fold cross-fitting
                  (fine-tune on 4/5 of the samples, score the other 1/5; each fold's scores standardised), SRCC
                  of the out-of-fold scores mixed with the standardised NASWOT on the grid 0, 0.1, ..., 1, then
                  the smallest ``w`` within one standard error of the maximum (200 paired bootstrap resamples of
                  the samples): the one-standard-error rule. The fold models see 4/5 of the samples, so the curve
                  underrates the final GNN and its maximum sits at too large a ``w``; the rule leans against
                  that. Five extra fine-tunes. Chosen over the maximum by a rule written before the run
                  (results/nape_run13, 5 draws of 50): NAS-Bench-Macro 0.976 vs 0.963, NB-101 0.842 vs 0.829,
                  NB-201 (reported only) 0.924 vs 0.922, against 0.974 / 0.841 / 0.917 for the GNN alone.
                * ``"cv-max"``: the same cross-fitting, the ``w`` at the maximum (``"cv"`` before run 13).
                * a float ``w`` in [0, 1]: that weight.

                Every CV mode stores its curve in ``self.proxy_cv`` (``grid``, ``curve``, ``se``, ``w_max``,
                ``w_1se``). With a CV mode or a float, the proxy's constants become the samples' NASWOT mean
                and standard deviation (no labels involved) and every sample needs a NASWOT score (trace with
                ``ComputationGraph.from_module``, which computes it by default); the chosen weight is in
                ``cfg.proxy_weight``.
        Returns:
            self, with the percent scale set from the samples' mean/std.
        """
        import copy

        from .metrics import srcc

        gs = self._as_graphset(graphs)
        y = np.asarray(targets, dtype=np.float64)
        if len(y) != len(gs):
            raise ValueError(f"{len(gs)} graphs but {len(y)} targets")
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(gs), size=min(n, len(gs)), replace=False) if len(gs) > n else np.arange(len(gs))
        gs, y = gs.select(idx), y[idx]
        if proxy is None:
            return self._fine_tune(gs, y, epochs, lr, seed)
        if isinstance(proxy, str) and proxy not in ("cv", "cv-1se", "cv-max"):
            raise ValueError(f"proxy must be None, 'cv', 'cv-1se', 'cv-max' or a weight in [0, 1], got {proxy!r}")
        if not isinstance(proxy, str) and not 0.0 <= float(proxy) <= 1.0:
            raise ValueError(f"proxy weight must be in [0, 1], got {proxy}")
        nw = np.full(len(gs), np.nan) if gs.proxy is None else np.asarray(gs.proxy, dtype=np.float64)
        if not np.isfinite(nw).all():
            raise ValueError(f"fine_tune(proxy={proxy!r}) needs the NASWOT score of every sample "
                             f"({int((~np.isfinite(nw)).sum())} of {len(nw)} have none): trace the modules with "
                             "ComputationGraph.from_module (it computes the score by default)")
        ref, scale = float(nw.mean()), float(max(nw.std(), 1e-6))
        z = (nw - ref) / scale
        if isinstance(proxy, str):
            if len(y) < 10:
                raise ValueError(f"fine_tune(proxy={proxy!r}) needs at least 10 samples, got {len(y)}")
            oof = np.zeros(len(y))
            folds = np.array_split(np.random.default_rng(seed).permutation(len(y)), 5)
            # the fold fine-tunes leave torch's RNG (dropout) where it was: the final fine-tune below is the one
            # proxy=None would give
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                for te in folds:
                    tr = np.setdiff1d(np.arange(len(y)), te)
                    mk = copy.deepcopy(self)._fine_tune(gs.select(tr), y[tr], epochs, lr, seed)
                    mk.cfg.proxy_weight = 0.0
                    s = mk.score(gs.select(te))
                    oof[te] = (s - s.mean()) / (s.std() + 1e-6)
            grid = [round(0.1 * i, 1) for i in range(11)]
            curve = np.array([srcc((1 - w) * oof + w * z, y) for w in grid])
            best = int(np.argmax(curve))
            # Standard error of the best point's SRCC: paired bootstrap over the samples (seeded, no labels beyond y).
            boot = np.random.default_rng(seed + 7919)
            reps = []
            for _ in range(200):
                b = boot.integers(0, len(y), len(y))
                reps.append(srcc((1 - grid[best]) * oof[b] + grid[best] * z[b], y[b]))
            se = float(np.nanstd(reps))
            # One-standard-error rule: the fold models see 4/5 of the samples, so the curve underrates the final
            # GNN and its maximum sits at too large a w; the smallest w within one SE of the maximum leans less.
            w_1se = grid[int(np.flatnonzero(curve >= curve[best] - se)[0])]
            self.proxy_cv = {"grid": grid, "curve": [float(c) for c in curve], "se": se, "w_max": grid[best],
                             "w_1se": w_1se}
            weight = grid[best] if proxy == "cv-max" else w_1se
        else:
            weight = float(proxy)
        self._fine_tune(gs, y, epochs, lr, seed)
        self.proxy_ref, self.proxy_scale, self.cfg.proxy_weight = ref, scale, float(weight)
        return self

    def _fine_tune(self, gs: GraphSet, y: np.ndarray, epochs: int, lr: float, seed: int) -> GENNAPE:
        """Fine-tune on all of ``gs`` / ``y`` (percent); sets the percent scale and FLOPs centre from them."""
        mu, sd = y.mean(), y.std() + 1e-6
        z = self._standardise(y)
        ref = float(np.log(np.maximum(gs.flops, 1.0)).mean())  # fixed from the samples, stored below
        r = z - self._flops_prior(gs, ref)
        fams = [("finetune", _Batches(gs, self.device, self.cfg.struct_features), z, r)]
        old_bs = self.cfg.batch_size
        self.cfg.batch_size = min(old_bs, len(gs))
        try:
            for e, mem in enumerate(self.members):
                self._regress(mem, fams, np.random.default_rng(seed + e), epochs, lr)
        finally:
            self.cfg.batch_size = old_bs
        self.mu, self.sd, self.flops_ref = float(mu), float(sd), ref
        return self

    # -------------------------------------------------------------- persistence
    def state(self) -> dict:
        return {"format": "seqlab-gennape/1", "config": asdict(self.cfg), "mu": self.mu, "sd": self.sd,
                "flops_ref": self.flops_ref, "proxy_ref": self.proxy_ref, "proxy_scale": self.proxy_scale,
                "members": [
                    {k: v.detach().cpu().half() if v.is_floating_point() else v.cpu()
                     for k, v in m.state_dict().items() if not k.startswith("proj.")}
                    for m in self.members]}

    def save(self, path: str | Path) -> None:
        """Save weights (float16) and settings to ``path`` (``torch.save`` format)."""
        torch.save(self.state(), path)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> GENNAPE:
        """Load a predictor written by :meth:`save`; ``ValueError`` if the file is not one."""
        try:
            st = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path}: not a GENNAPE checkpoint ({exc})") from exc
        if not isinstance(st, dict) or st.get("format") != "seqlab-gennape/1":
            raise ValueError(f"{path}: not a GENNAPE checkpoint")
        config = dict(st["config"])
        config.setdefault("proxy_noise", "gaussian")  # written before run 10: Gaussian-noise NASWOT constants
        model = cls(device=device, **config)
        model.mu, model.sd, model.flops_ref = st["mu"], st["sd"], st["flops_ref"]
        # checkpoints from before run 5 have no proxy constants (and proxy_weight defaults to 0: off)
        model.proxy_ref = float(st.get("proxy_ref", 0.0))
        model.proxy_scale = float(st.get("proxy_scale", 1.0))
        for sd in st["members"]:
            mem = _Member(model.cfg)
            missing, unexpected = mem.load_state_dict({k: v.float() if v.is_floating_point() else v
                                                      for k, v in sd.items()}, strict=False)
            if unexpected or any(not k.startswith("proj.") for k in missing):
                raise ValueError(f"{path}: checkpoint does not match the model ({missing[:3]}, {unexpected[:3]})")
            model.members.append(mem.to(model.device).eval())
        return model


def select_beta(families: dict[str, tuple[GraphSet, np.ndarray]], candidates=(0.25, 0.5, 1.0, 2.0, 4.0),
                device: str | None = None, seed: int = 0, min_val: int = 100, **config) -> tuple[float, dict]:
    """Choose the FLOPs-prior weight ``beta`` by leave-one-family-out *within* the training families.

    For each candidate, a one-member predictor is trained on all but one training family and scored
    (SRCC) on the left-out one (families with fewer than ``min_val`` graphs are only trained on); the
    candidate with the best mean SRCC wins. The evaluated (held-out) family is never seen.

    Returns:
        (best beta, {beta: mean SRCC}).
    """
    from .metrics import srcc

    names = [n for n in families if len(families[n][0]) >= min_val]
    if len(families) < 2 or not names:
        return Config().beta, {}
    scores = {}
    for b in candidates:
        vals = []
        for held in names:
            train = {n: families[n] for n in families if n != held}
            m = GENNAPE(device=device, **dict(config, beta=b, ensemble=1)).fit(train, seed=seed, progress=False)
            vals.append(srcc(m.score(families[held][0]), families[held][1]))
        scores[b] = float(np.mean(vals))
    best = max(scores, key=scores.get)
    return best, scores


PROXY_GRID = tuple(round(0.1 * i, 1) for i in range(11))


def select_proxy_weight(families: dict[str, tuple[GraphSet, np.ndarray]], grid: Sequence[float] = PROXY_GRID,
                        device: str | None = None, seed: int = 0, min_val: int = 100,
                        **config) -> tuple[float, dict]:
    """Choose the NASWOT mixing weight ``w`` by leave-one-family-out *within* the training families.

    For each training family V with at least ``min_val`` graphs, a predictor with ``config`` is trained on
    the other training families (their NASWOT scores set the proxy constants) and scored (SRCC) on V at
    every ``w`` of ``grid``; the first ``w`` with the best mean SRCC over the V wins. The family the
    predictor will be evaluated on must not be in ``families``: it is never seen.

    Args:
        families: name -> (GraphSet whose ``proxy`` holds each graph's NASWOT score (NaN: none), accuracy
            float ``(G,)`` in percent); at least two families, each with at least 2 finite scores.
    Returns:
        (best w, {"grid": [...], "mean": [...], "per_family": {V: [...]}}), SRCC lists aligned with grid.
    """
    from .metrics import srcc

    if len(families) < 2:
        raise ValueError(f"select_proxy_weight needs at least 2 training families, got {list(families)}")
    for n, (gs, _) in families.items():
        if gs.proxy is None or np.isfinite(gs.proxy).sum() < 2:
            raise ValueError(f"family {n!r}: its GraphSet carries fewer than 2 NASWOT scores (set GraphSet.proxy)")
    grid = [float(w) for w in grid]
    if not grid or any(not 0.0 <= w <= 1.0 for w in grid):
        raise ValueError(f"grid must be weights in [0, 1], got {grid}")
    per = {}
    for val in [n for n in families if len(families[n][0]) >= min_val]:
        train = {n: families[n] for n in families if n != val}
        m = GENNAPE(device=device, **dict(config, proxy_weight=0.0)).fit(train, seed=seed, progress=False)
        m.set_proxy({n: t[0].proxy for n, t in train.items()}, 0.0)
        gs, acc = families[val]
        s0 = m.score(gs)  # GNN + FLOPs prior; mixed below without re-running the encoder
        per[val] = [srcc(m._mix_proxy(s0, gs, w), acc) for w in grid]
    if not per:
        raise ValueError(f"no training family has {min_val} graphs to validate on")
    mean = np.mean(list(per.values()), axis=0)
    return grid[int(np.argmax(mean))], {"grid": grid, "mean": [float(v) for v in mean], "per_family": per}


PRETRAINED = Path(__file__).parent / "pretrained" / "gennape.pt"


def load_pretrained(device: str | None = None) -> GENNAPE:
    """The shipped predictor (trained by ``seqlab nape train`` on NB-201, NAS-Bench-Macro and NB-101)."""
    if not PRETRAINED.exists():
        raise FileNotFoundError(f"{PRETRAINED} missing: run `seqlab nape train --out {PRETRAINED}`")
    return GENNAPE.load(PRETRAINED, device=device)
