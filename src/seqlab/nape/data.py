"""Loaders for the labelled families in the shared data folder, and the CG cache.

The folder (``SEQLAB_NAPE_DATA``, else ``../shared/data/nape`` next to the repository) holds the
public benchmark files described in its README; nothing here copies them. A :class:`Family` is the
evaluation view of one benchmark: architecture ids, target accuracy, the files' FLOPs/params and
zero-cost proxies, and a builder that makes each network as an ``nn.Module``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import spaces
from .graph import NUMERIC_FEATURES, OP_INDEX, OP_TYPES, ComputationGraph

FEATURE_VERSION = 1  # bump when CG features change: invalidates the cache
# bump per family when its network builder changes (NB-101 v2: NASLib op codes 2 = maxpool, 4 = conv3x3)
BUILDER_VERSION = {"nb101": 2}
FAMILIES = ("nb201", "macro", "nb101")


def data_dir(path: str | Path | None = None) -> Path:
    """Resolve the data folder: ``path``, else ``$SEQLAB_NAPE_DATA``, else ``../shared/data/nape``
    relative to the repository root (found from this file) or to the working directory."""
    if path is not None:
        p = Path(path)
        if not p.is_dir():
            raise FileNotFoundError(f"NAPE data folder {p} does not exist")
        return p
    env = os.environ.get("SEQLAB_NAPE_DATA")
    if env:
        return data_dir(env)
    here = Path(__file__).resolve()
    candidates = [here.parents[3] / ".." / "shared" / "data" / "nape", Path.cwd() / ".." / "shared" / "data" / "nape",
                  Path.cwd() / "shared" / "data" / "nape", here.parents[3] / ".cache" / "nape_data"]
    for c in candidates:
        if (c / "nasbench201_test_acc.csv").exists() or (c / "nasbench_macro_cifar10.json").exists():
            return c.resolve()
    raise FileNotFoundError("NAPE data folder not found: set SEQLAB_NAPE_DATA or pass the folder")


def cache_dir() -> Path:
    """Where traced CGs are cached (``$SEQLAB_CACHE`` or ``<repo>/.cache/nape``, else ``~/.cache/seqlab``)."""
    env = os.environ.get("SEQLAB_CACHE")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[3]
    if (repo / ".git").exists() or (repo / "pyproject.toml").exists():
        return repo / ".cache" / "nape"
    return Path.home() / ".cache" / "seqlab" / "nape"


@dataclass
class Family:
    """One labelled family. Arrays are aligned with ``ids`` (length N).

    Attributes:
        name: ``nb201`` / ``macro`` / ``nb101``.
        ids: architecture identifiers (arch string, 8-digit code, NASLib key).
        acc: float64 ``(N,)`` target accuracy in percent.
        flops, params: float64 ``(N,)`` from the data files (NaN where absent).
        proxies: name -> float64 ``(N,)`` zero-cost proxy scores (NaN where absent).
        build: id -> ``nn.Module``.
    """

    name: str
    ids: list[str]
    acc: np.ndarray
    flops: np.ndarray
    params: np.ndarray
    build: Callable[[str], torch.nn.Module]
    proxies: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx) -> Family:
        idx = np.asarray(idx)
        return Family(self.name, [self.ids[i] for i in idx], self.acc[idx], self.flops[idx], self.params[idx],
                      self.build, {k: v[idx] for k, v in self.proxies.items()})


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        raise FileNotFoundError(path)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: empty CSV")
    return rows


def _read_json(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def load_nb201(folder: str | Path | None = None, include_none: bool = False,
               metric: str = "CIFAR10TestAccuracy200Epochs") -> Family:
    """NB-201 cells with 200-epoch test accuracy (default: the 4,096 cells without ``none``).

    Zero-cost proxies and FLOPs/params come from ``nasbench201_zc_proxies.csv`` (NaN for the cells it
    does not list).
    """
    folder = data_dir(folder)
    rows = _read_csv(folder / "nasbench201_test_acc.csv")
    need = {metric, "ArchitectureString"}
    if not need <= set(rows[0]):
        raise ValueError(f"nasbench201_test_acc.csv lacks columns {sorted(need - set(rows[0]))}")
    rows = [r for r in rows if include_none or "none" not in r["ArchitectureString"]]
    ids = [r["ArchitectureString"] for r in rows]
    for a in ids[:1]:
        spaces.parse_nb201(a)
    acc = np.array([float(r[metric]) for r in rows])
    proxies: dict[str, np.ndarray] = {}
    zc = folder / "nasbench201_zc_proxies.csv"
    flops = np.full(len(ids), np.nan)
    params = np.full(len(ids), np.nan)
    if zc.exists():
        zrows = {r["net_str"]: r for r in _read_csv(zc)}
        names = [k for k in next(iter(zrows.values())) if k not in ("net", "net_str")]
        for k in names:
            proxies[k] = np.array([float(zrows[a][k]) if a in zrows else np.nan for a in ids])
        flops, params = proxies.pop("flops", flops), proxies.pop("params", params)
    return Family("nb201", ids, acc, flops, params, spaces.nb201, proxies)


def load_macro(folder: str | Path | None = None) -> Family:
    """NAS-Bench-Macro: 6,561 codes with mean CIFAR-10 test accuracy over 3 seeds."""
    d = _read_json(data_dir(folder) / "nasbench_macro_cifar10.json")
    ids = sorted(d)
    try:
        acc = np.array([float(d[k]["mean_acc"]) for k in ids])
        flops = np.array([float(d[k].get("flops", np.nan)) for k in ids])
        params = np.array([float(d[k].get("params", np.nan)) for k in ids])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"nasbench_macro_cifar10.json: malformed entry ({exc})") from exc
    return Family("macro", ids, acc, flops, params, spaces.macro)


def _nb101_build(key: str) -> torch.nn.Module:
    adj, ops = spaces.parse_nb101_key(key)
    return spaces.nb101(adj, ops)


def load_nb101(folder: str | Path | None = None) -> Family:
    """NAS-Bench-101: NASLib's 500 cells with 108-epoch CIFAR-10 validation accuracy and proxies.

    Keys hold NASLib's op codes, indices into ``(input, output, maxpool3x3, conv1x1-bn-relu,
    conv3x3-bn-relu)`` (:data:`seqlab.nape.spaces.NB101_OPS`); a description that lists 2 as conv3x3 and 4
    as maxpool3x3 has them swapped (checked: with NASLib's order every built network has the parameter
    count the file lists).
    """
    d = _read_json(data_dir(folder) / "nasbench101_500_naslib_zc.json")
    try:
        d = d["nasbench101"]["cifar10"]
    except (KeyError, TypeError) as exc:
        raise ValueError("nasbench101_500_naslib_zc.json: expected {'nasbench101': {'cifar10': ...}}") from exc
    ids = sorted(d)
    acc = np.array([float(d[k]["val_accuracy"]) for k in ids])

    def col(name):
        return np.array([float(d[k][name]) if isinstance(d[k].get(name), (int, float)) else np.nan for k in ids])

    names = sorted({n for k in ids for n, v in d[k].items() if isinstance(v, (int, float))} - {"val_accuracy"})
    proxies = {n: col(n) for n in names}
    return Family("nb101", ids, acc, proxies.pop("flops"), proxies.pop("params"), _nb101_build, proxies)


def load_family(name: str, folder: str | Path | None = None) -> Family:
    """Load ``nb201`` / ``macro`` / ``nb101``."""
    loaders = {"nb201": load_nb201, "macro": load_macro, "nb101": load_nb101}
    if name not in loaders:
        raise ValueError(f"unknown family {name!r}; choose from {FAMILIES}")
    return loaders[name](folder)


# ----------------------------------------------------------------------------- graph cache
@dataclass
class GraphSet:
    """Pre-featurised CGs (what the predictor consumes), aligned with a list of ids.

    ``x``: float32 ``(sum N_i, F)`` node features; ``offsets``: int64 ``(G+1,)`` node offsets;
    ``edges``: int64 ``(2, sum E_i)`` local (per-graph) indices; ``eoff``: int64 ``(G+1,)``;
    ``g``: float32 ``(G, len(GRAPH_FEATURES))``; ``sig``: float32 ``(G, 16)`` Laplacian signatures;
    ``flops``/``params``: float64 ``(G,)`` counted on the CG (FLOPs per sample); ``proxy``: float64 ``(G,)``
    data-free NASWOT score of each network (``ComputationGraph.proxies[proxy_key]``), NaN where a graph has none,
    or ``None``.
    """

    x: np.ndarray
    offsets: np.ndarray
    edges: np.ndarray
    eoff: np.ndarray
    g: np.ndarray
    sig: np.ndarray
    flops: np.ndarray
    params: np.ndarray
    proxy: np.ndarray | None = None
    _struct: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.g)

    def structure(self) -> np.ndarray:
        """Structural graph features, float32 ``(G, len(STRUCT_FEATURES))`` (see :func:`structure_features`);
        computed once per set from its node features and edges."""
        if self._struct is None:
            self._struct = structure_features(self)
        return self._struct

    @classmethod
    def from_graphs(cls, graphs: list[ComputationGraph], proxy_key: str | None = None) -> GraphSet:
        """Stack CGs; ``proxy`` comes from ``cg.proxies[proxy_key]`` (``proxies.naswot_key(noise)``; default: the
        key of ``from_module``'s NASWOT pass, ``graph.PROXY_NOISE``)."""
        if proxy_key is None:
            from .graph import PROXY_NOISE
            from .proxies import naswot_key

            proxy_key = naswot_key(PROXY_NOISE)
        xs = [cg.node_features() for cg in graphs]
        es = [cg.edge_index() for cg in graphs]
        return cls(
            x=np.concatenate(xs).astype(np.float32),
            offsets=np.concatenate([[0], np.cumsum([len(v) for v in xs])]).astype(np.int64),
            edges=np.concatenate(es, axis=1).astype(np.int64),
            eoff=np.concatenate([[0], np.cumsum([e.shape[1] for e in es])]).astype(np.int64),
            g=np.stack([cg.graph_features() for cg in graphs]).astype(np.float32),
            sig=np.stack([cg.laplacian_signature() for cg in graphs]).astype(np.float32),
            flops=np.array([cg.flops(per_sample=True) for cg in graphs]),
            params=np.array([float(cg.params()) for cg in graphs]),
            proxy=(np.array([float(cg.proxies.get(proxy_key, np.nan)) for cg in graphs])
                   if any(proxy_key in cg.proxies for cg in graphs) else None),
        )

    def select(self, idx) -> GraphSet:
        """Graphs ``idx`` (int array) as a new set."""
        idx = np.asarray(idx, dtype=np.int64)
        xs = [self.x[self.offsets[i]:self.offsets[i + 1]] for i in idx]
        es = [self.edges[:, self.eoff[i]:self.eoff[i + 1]] for i in idx]
        return GraphSet(
            x=np.concatenate(xs) if xs else self.x[:0],
            offsets=np.concatenate([[0], np.cumsum([len(v) for v in xs])]).astype(np.int64),
            edges=np.concatenate(es, axis=1) if es else self.edges[:, :0],
            eoff=np.concatenate([[0], np.cumsum([e.shape[1] for e in es])]).astype(np.int64),
            g=self.g[idx], sig=self.sig[idx], flops=self.flops[idx], params=self.params[idx],
            proxy=None if self.proxy is None else self.proxy[idx],
            _struct=None if self._struct is None else self._struct[idx],
        )

    @staticmethod
    def concat(sets: list[GraphSet]) -> GraphSet:
        xs = np.concatenate([s.x for s in sets])
        offs = [0]
        eoffs = [0]
        for s in sets:
            offs += list(offs[-1] + s.offsets[1:])
            eoffs += list(eoffs[-1] + s.eoff[1:])
        return GraphSet(xs, np.array(offs, dtype=np.int64), np.concatenate([s.edges for s in sets], 1),
                        np.array(eoffs, dtype=np.int64), np.concatenate([s.g for s in sets]),
                        np.concatenate([s.sig for s in sets]), np.concatenate([s.flops for s in sets]),
                        np.concatenate([s.params for s in sets]),
                        proxy=(np.concatenate([s.proxy if s.proxy is not None else np.full(len(s), np.nan)
                                               for s in sets]) if any(s.proxy is not None for s in sets) else None))

    def save(self, path: Path) -> None:
        # float16 node features: all are in ~[0, 2] and compress well; halves the cache size
        np.savez_compressed(path, x=self.x.astype(np.float16), offsets=self.offsets,
                            edges=self.edges.astype(np.int16 if self.edges.size and self.edges.max() < 32767
                                                    else np.int32),
                            eoff=self.eoff, g=self.g, sig=self.sig, flops=self.flops, params=self.params,
                            **({} if self.proxy is None else {"proxy": self.proxy}))

    @classmethod
    def load(cls, path: Path) -> GraphSet:
        z = np.load(path)
        return cls(x=z["x"].astype(np.float32), offsets=z["offsets"], edges=z["edges"].astype(np.int64),
                   eoff=z["eoff"], g=z["g"], sig=z["sig"], flops=z["flops"], params=z["params"],
                   proxy=z["proxy"] if "proxy" in z.files else None)


# Structural graph features, derived from a GraphSet's node features and edges (so cached CGs need no
# re-tracing). Every value uses fixed constants and depends on its own graph only.
_OP_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("conv", ("conv",)), ("dense", ("linear", "matmul", "attention")), ("norm", ("batchnorm", "layernorm")),
    ("act", ("relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "hardswish", "softmax")), ("add", ("add",)),
    ("merge", ("mul", "concat", "slice")), ("pool", ("maxpool", "avgpool", "adaptivepool", "mean")),
    ("avgpool", ("avgpool",)), ("maxpool", ("maxpool",)), ("pass", ("identity", "reshape", "zero", "other")),
)
STRUCT_FEATURES: tuple[str, ...] = (
    *(f"frac_{n}" for n, _ in _OP_GROUPS), "frac_conv1x1", "frac_depthwise", "n_stride2", "n_pool",
    "conv_width_mean", "conv_width_max", "conv_res_mean", "downsample", "depth_shortest", "depth_mean",
    "log_paths", "conv_flops_share_hires",
)
_WEIGHTED = (OP_INDEX["conv"], OP_INDEX["linear"], OP_INDEX["matmul"], OP_INDEX["attention"])


def _num(name: str) -> int:
    return len(OP_TYPES) + NUMERIC_FEATURES.index(name)


def structure_features(gs: GraphSet) -> np.ndarray:
    """Per-graph structural features, float32 ``(G, len(STRUCT_FEATURES))``, all in about [0, 1]:

    fraction of nodes in each op group (conv, dense, norm, activation, add, merge, pools, pass-through),
    of 1x1 and of depthwise convs; log counts of stride-2 ops and of pools; mean/max log-width and mean
    relative resolution of the convs; total downsampling (log2 of input over smallest conv resolution);
    shortest and path-averaged input-to-output depth in weighted ops (conv/linear/matmul) next to the
    longest one of ``g``; log2 number of input-to-output paths; share of conv FLOPs at the input resolution.
    """
    n_g = len(gs)
    out = np.zeros((n_g, len(STRUCT_FEATURES)), dtype=np.float32)
    x = gs.x
    onehot = x[:, : len(OP_TYPES)] > 0.5
    weighted = onehot[:, list(_WEIGHTED)].any(1)
    is_conv = onehot[:, OP_INDEX["conv"]]
    k_h, stride, dw = x[:, _num("kernel_h")] * 7.0, x[:, _num("stride")] * 2.0, x[:, _num("depthwise")] > 0.5
    width, res, node_flops = x[:, _num("out_channels")], x[:, _num("out_res_rel")], x[:, _num("flops")]
    log2 = np.log2
    for i in range(n_g):
        a, b = gs.offsets[i], gs.offsets[i + 1]
        n = b - a
        if n == 0:
            continue
        oh = onehot[a:b]
        f = []
        for _, members in _OP_GROUPS:
            f.append(oh[:, [OP_INDEX[m] for m in members]].any(1).mean())
        conv = is_conv[a:b]
        n_conv = max(int(conv.sum()), 1)
        f.append((conv & (k_h[a:b] < 1.5)).sum() / n_conv)
        f.append((conv & dw[a:b]).sum() / n_conv)
        f.append(log2(1 + (stride[a:b] > 1.5).sum()) / 6)
        f.append(log2(1 + oh[:, [OP_INDEX[m] for m in ("maxpool", "avgpool")]].any(1).sum()) / 6)
        if conv.any():
            w, r = width[a:b][conv], res[a:b][conv]
            fl = np.exp2(node_flops[a:b][conv] * 32) - 1  # undo log2(1 + flops) / 32
            f += [w.mean(), w.max(), r.mean(), min(log2(1.0 / max(r.min(), 1e-3)) / 6, 2.0)]
            hires = fl[r > 0.99].sum() / max(fl.sum(), 1.0)
        else:
            f += [0.0, 0.0, 0.0, 0.0]
            hires = 0.0
        # DAG dynamic programmes over the (topologically ordered) nodes
        e = gs.edges[:, gs.eoff[i]:gs.eoff[i + 1]]
        preds: list[list[int]] = [[] for _ in range(n)]
        for s, d in zip(e[0].tolist(), e[1].tolist()):
            preds[d].append(s)
        wv = weighted[a:b].astype(np.float64)
        short = np.zeros(n)
        lpaths = np.zeros(n)  # log2 number of paths from a source
        mdepth = np.zeros(n)  # mean weighted depth over those paths
        for j in range(n):
            p = preds[j]
            if p:
                lp = np.array([lpaths[q] for q in p])
                top = lp.max()
                wts = np.exp2(lp - top)
                lpaths[j] = top + log2(wts.sum())
                mdepth[j] = float((wts * mdepth[p]).sum() / wts.sum()) + wv[j]
                short[j] = min(short[q] for q in p) + wv[j]
            else:
                short[j] = mdepth[j] = wv[j]
        outs = np.flatnonzero(oh[:, OP_INDEX["output"]])
        o = int(outs[-1]) if len(outs) else n - 1
        f += [log2(1 + short[o]) / 10, log2(1 + mdepth[o]) / 10, min(lpaths[o] / 32, 2.0), hires]
        out[i] = f
    return out


def trace_id(family: str, arch_id: str, build: Callable[[str], torch.nn.Module]) -> ComputationGraph:
    """Build one benchmark network and trace its CG at CIFAR size ``(1, 3, 32, 32)``.

    Runs on CPU tensors: the forward pass of these small networks at batch 1 is cheaper than the
    Python shape functions that ``meta`` tensors fall back to (batch norm especially).
    """
    model = build(arch_id)
    # proxies=False: the cached family CGs stay one batch-1 pass each (NASWOT scores live in results CSVs)
    return ComputationGraph.from_module(model.eval(), spaces.example_input(), name=f"{family}:{arch_id}",
                                        proxies=False)


def _trace_chunk(args):
    family, ids = args
    build = {"nb201": spaces.nb201, "macro": spaces.macro, "nb101": _nb101_build}[family]
    torch.set_num_threads(1)
    return GraphSet.from_graphs([trace_id(family, a, build) for a in ids])


def family_graphs(fam: Family, cache: Path | None = None, workers: int = 1, progress: bool = True) -> GraphSet:
    """CG features of every network of ``fam`` (traced once, cached as ``<cache>/<family>_v<N>.npz``).

    NB-201 isomorphic cells are traced once: cells with the same ``UniqueString`` share a CG in
    accuracy terms, but the traced graph differs, so only exact duplicates are shared.
    """
    cache = Path(cache) if cache is not None else cache_dir()
    bv = BUILDER_VERSION.get(fam.name, 1)
    path = cache / f"{fam.name}_v{FEATURE_VERSION}{f'b{bv}' if bv > 1 else ''}_{len(fam)}.npz"
    ids_path = path.with_suffix(".ids.json")
    if path.exists() and ids_path.exists():
        cached_ids = json.loads(ids_path.read_text())
        if cached_ids == fam.ids:
            return GraphSet.load(path)
        pos = {a: i for i, a in enumerate(cached_ids)}
        if all(a in pos for a in fam.ids):
            return GraphSet.load(path).select([pos[a] for a in fam.ids])
    from tqdm import tqdm

    chunks = [fam.ids[i:i + 64] for i in range(0, len(fam.ids), 64)]
    parts: list[GraphSet] = []
    bar = tqdm(total=len(fam.ids), desc=f"tracing {fam.name}", disable=not progress)
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            for part in pool.imap(_trace_chunk, [(fam.name, c) for c in chunks]):
                parts.append(part)
                bar.update(len(part))
    else:
        for c in chunks:
            parts.append(_trace_chunk((fam.name, c)))
            bar.update(len(c))
    bar.close()
    gs = GraphSet.concat(parts)
    cache.mkdir(parents=True, exist_ok=True)
    gs.save(path)
    ids_path.write_text(json.dumps(fam.ids))
    return gs


NB101_PARAMS_TOL = 0.01


def nb101_consistent(fam: Family, gs: GraphSet, tol: float = NB101_PARAMS_TOL) -> np.ndarray:
    """Bool mask ``(N,)`` of NB-101 cells whose parameter count, counted on the traced CG, matches the
    file's (listed in millions) within ``tol`` (log ratio).

    A guard that key and label describe the same network. With NASLib's op codes read correctly
    (2 = maxpool3x3, 3 = conv1x1, 4 = conv3x3) all 500 cells of the shared file match exactly; cells that
    fail (a different file, or a builder change) are left out of training. Parameters rather than FLOPs:
    the file's FLOPs follow another counting convention (ours are 0.2-12 % higher, cell-dependent).
    """
    ratio = gs.params / 1e6 / fam.params
    return np.abs(np.log(ratio)) < tol


def read_proxy_scores(folder, family: str, data_folder=None) -> tuple[np.ndarray, np.ndarray]:
    """``<folder>/<family>_proxies.csv`` (columns ``id``, ``naswot``; e.g. results/nape_run8) ->
    (indices into the family's ids int ``(n,)``, NASWOT scores float64 ``(n,)``); rows whose id the family
    does not hold are skipped."""
    path = Path(folder) / f"{family}_proxies.csv"
    if not path.exists():
        raise ValueError(f"no proxy scores for {family}: {path} missing")
    ids = load_family(family, data_folder).ids
    pos = {a: i for i, a in enumerate(ids)}
    try:
        with open(path) as f:
            rows = [r for r in csv.DictReader(f) if r["id"] in pos]
        return (np.array([pos[r["id"]] for r in rows], dtype=np.int64),
                np.array([float(r["naswot"]) for r in rows], dtype=np.float64))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{path}: malformed proxy scores ({exc}); columns id, naswot expected") from exc


def training_families(folder=None, names=FAMILIES, progress: bool = True,
                      proxy_scores=None) -> dict[str, tuple[GraphSet, np.ndarray]]:
    """``{family: (GraphSet, accuracy)}`` for :meth:`GENNAPE.fit` (NB-101: cells passing :func:`nb101_consistent`).

    With ``proxy_scores`` (a folder for :func:`read_proxy_scores`) each set's ``proxy`` holds the networks'
    NASWOT scores (NaN where a network has none).
    """
    out = {}
    for n in names:
        fam = load_family(n, folder)
        gs = family_graphs(fam, progress=progress)
        idx = np.flatnonzero(nb101_consistent(fam, gs)) if n == "nb101" else np.arange(len(fam))
        if len(idx) < len(fam):
            gs = gs.select(idx)
        if proxy_scores is not None:
            at, sc = read_proxy_scores(proxy_scores, n, folder)
            full = np.full(len(fam), np.nan)
            full[at] = sc
            gs.proxy = full[idx]
        out[n] = (gs, fam.acc[idx])
    return out
