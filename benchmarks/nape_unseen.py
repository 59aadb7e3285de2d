"""Zero-shot stress test of the shipped GENNAPE predictor on architecture families it was not trained on.

    python3 benchmarks/nape_unseen.py                       # full: every network of seqlab.nape.zoo, 2 threads
    python3 benchmarks/nape_unseen.py --quick --out /tmp/u  # one variant per family, ONNX on 3 (< 1 min)

The shipped predictor (``seqlab.nape.load_pretrained()``) was trained on NB-201 cells, NB-101 cells and
NAS-Bench-Macro MobileNetV2 blocks. Every network of :data:`seqlab.nape.zoo.FAMILIES` (VGG, ResNet basic and
bottleneck, pre-activation ResNet, Wide ResNet, ResNeXt, DenseNet-BC, Inception, MobileNetV3, ShuffleNetV2,
ConvNeXt, ViT (three attention implementations), MLP-Mixer, and odd ones: LSTM/GRU heads, custom and unknown ops,
data-dependent control flow) is built in plain PyTorch (3x32x32 input, 10 classes, seeded init, eval mode) and:

* traced with ``ComputationGraph.from_module`` (default: NASWOT on when cheap enough), recording success, nodes,
  edges, the op-type histogram (``other`` count), warnings, whether NASWOT was computed, trace and predict time,
  CG FLOPs/params (and the module's true parameter count);
* predicted with the shipped predictor (finite and inside (0, 100) is checked), also from a CG traced with
  ``proxies=False`` (GNN + FLOPs prior alone, ``pred_gnn``);
* checked: ``predict([(module, x)]) == predict([from_module(module, x)])`` (a second, independent trace and
  NASWOT pass: the run-twice check), ``predict`` twice on the same CG, and one ``predict`` of all CGs against one
  call per CG (batch independence);
* exported to ONNX (``torch.onnx.export(..., dynamo=False)``, first variant of each family) and read back with
  ``ComputationGraph.from_onnx``: node count, params, FLOPs and the GNN-alone prediction against the module path.

No accuracy labels exist for these networks: nothing here is an accuracy or a rank correlation. Writes
``OUT/unseen.json`` (one row per network + environment), ``OUT/tables.md`` (per-family summary) and
``OUT/pred_vs_flops.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import torch

from seqlab.nape import ComputationGraph, load_pretrained, zoo
from seqlab.nape.graph import OP_TYPES, PROXY_NOISE
from seqlab.nape.proxies import naswot_key

NASWOT_KEY = naswot_key(PROXY_NOISE)  # where from_module stores its NASWOT score


def _warnings_of(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    msgs = [f"{w.category.__name__}: {w.message}" for w in caught
            if not issubclass(w.category, DeprecationWarning)]
    return out, msgs


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _onnx_row(model, x, cg_mod, cg_gnn, pred, tmp: Path, name: str) -> dict:
    try:
        import onnx  # noqa: F401
    except ImportError as exc:
        return {"ok": False, "skipped": f"onnx not installed: {exc}"}
    path = tmp / f"{name}.onnx"
    try:
        _, msgs = _warnings_of(lambda: torch.onnx.export(model, (x,), str(path), dynamo=False))
    except Exception as exc:  # noqa: BLE001 - exporter missing pieces (onnxscript, ops) -> recorded, skipped
        return {"ok": False, "skipped": f"torch.onnx.export failed: {type(exc).__name__}: {str(exc)[:300]}"}
    try:
        cg, msgs = _warnings_of(lambda: ComputationGraph.from_onnx(path))
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": f"from_onnx: {type(exc).__name__}: {str(exc)[:300]}"}
    ops = Counter(n.op for n in cg.nodes)
    ref = Counter(n.op for n in cg_mod.nodes)
    p = float(pred.predict([cg])[0])
    return {
        "ok": True, "nodes": len(cg.nodes), "edges": len(cg.edges), "params": cg.params(), "flops": cg.flops(),
        "op_diff": {k: [ops[k], ref[k]] for k in sorted(set(ops) | set(ref)) if ops[k] != ref[k]},
        "pred": p, "pred_gnn_module": float(pred.predict([cg_gnn])[0]), "warnings": msgs,
    }


def run_one(pred, family: str, variant: str, x: torch.Tensor, onnx_dir: Path | None) -> tuple[dict, object]:
    row: dict = {"family": family, "variant": variant}
    try:
        model = zoo.build(family, variant)
    except Exception as exc:  # noqa: BLE001
        row["error"] = f"build: {type(exc).__name__}: {exc}"
        return row, None
    row["params_true"] = int(sum(p.numel() for p in model.parameters()))
    try:
        (cg, t_trace), msgs = _warnings_of(lambda: _timed(lambda: ComputationGraph.from_module(model, x)))
    except Exception as exc:  # noqa: BLE001 - a crash is what this benchmark looks for
        row.update(trace_ok=False, error=f"from_module: {type(exc).__name__}: {exc}")
        return row, None
    ops = Counter(n.op for n in cg.nodes)
    row.update(
        trace_ok=True, trace_s=round(t_trace, 4), nodes=len(cg.nodes), edges=len(cg.edges),
        ops={k: ops[k] for k in OP_TYPES if ops[k]}, n_other=ops["other"],
        other_names=sorted({n.name for n in cg.nodes if n.op == "other"}), warnings=msgs,
        naswot=cg.proxies.get(NASWOT_KEY), has_naswot=NASWOT_KEY in cg.proxies,
        flops=cg.flops(), params=cg.params(), shapes_missing=sum(n.out_shape is None for n in cg.nodes),
    )
    try:
        (p, t_pred), pmsgs = _warnings_of(lambda: _timed(lambda: pred.predict([cg])))
        p = float(p[0])
        row.update(pred=p, predict_s=round(t_pred, 4), pred_ok=bool(math.isfinite(p) and 0.0 < p < 100.0))
        row["warnings"] += pmsgs
        p2 = float(pred.predict([cg])[0])
        row["repeat_equal"] = p2 == p
        (pair, t_pair), _ = _warnings_of(lambda: _timed(lambda: pred.predict([(model, x)])))
        row.update(pair_pred=float(pair[0]), pair_equal=float(pair[0]) == p, pair_s=round(t_pair, 4))
        (cg_gnn, t_gnn), _ = _warnings_of(lambda: _timed(lambda: ComputationGraph.from_module(model, x,
                                                                                          proxies=False)))
        row.update(trace_only_s=round(t_gnn, 4), pred_gnn=float(pred.predict([cg_gnn])[0]))
    except Exception as exc:  # noqa: BLE001
        row.update(pred_ok=False, error=f"predict: {type(exc).__name__}: {exc}")
        return row, cg
    if onnx_dir is not None:
        row["onnx"] = _onnx_row(model, x, cg, cg_gnn, pred, onnx_dir, variant)
    return row, cg


def family_table(rows: list[dict]) -> str:
    lines = ["| family | networks | traced | valid predictions | min / max prediction (%) | min / max GNN-only (%) "
             "| NASWOT | `other` nodes | GFLOPs | params (M) | pred. rises with FLOPs |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for fam in dict.fromkeys(r["family"] for r in rows):
        rs = [r for r in rows if r["family"] == fam]
        ok = [r for r in rs if r.get("pred_ok")]
        pr = [r["pred"] for r in ok]
        pg = [r["pred_gnn"] for r in ok if "pred_gnn" in r]
        fl = [r["flops"] / 1e9 for r in rs if "flops" in r]
        pa = [r["params"] / 1e6 for r in rs if "params" in r]
        mono = "n/a"
        if len(ok) >= 3:
            from scipy.stats import spearmanr

            rho = spearmanr([r["flops"] for r in ok], pr).statistic
            mono = f"Spearman {rho:+.2f}"
        elif len(ok) == 2:
            a, b = sorted(ok, key=lambda r: r["flops"])
            mono = "yes" if b["pred"] > a["pred"] else "no"
        rng = (lambda v, f: f"{min(v):{f}} / {max(v):{f}}" if v else "-")
        lines.append(
            f"| {fam} | {len(rs)} | {sum(r.get('trace_ok', False) for r in rs)} | {len(ok)} | {rng(pr, '.1f')} | "
            f"{rng(pg, '.1f')} | {sum(r.get('has_naswot', False) for r in rs)}/{len(rs)} | "
            f"{sum(r.get('n_other', 0) for r in rs)} | {rng(fl, '.3f')} | {rng(pa, '.2f')} | {mono} |")
    return "\n".join(lines)


def variant_table(rows: list[dict]) -> str:
    lines = ["| family | network | nodes | `other` | NASWOT | GFLOPs | params (M) CG / true | pred (%) | GNN-only (%) "
             "| trace s | predict s | ONNX nodes / pred GNN (module) |", "|---" * 12 + "|"]
    for r in rows:
        if not r.get("trace_ok"):
            lines.append(f"| {r['family']} | {r['variant']} | FAILED: {r.get('error', '?')[:80]} |||||||||")
            continue
        o = r.get("onnx") or {}
        onnx = (f"{o['nodes']} / {o['pred']:.2f} ({o['pred_gnn_module']:.2f})" if o.get("ok")
                else (o.get("skipped") or o.get("error") or "-")[:40])
        nas = f"{r['naswot']:.0f}" if r.get("has_naswot") else "-"
        lines.append(
            f"| {r['family']} | {r['variant']} | {r['nodes']} | {r['n_other']} | {nas} | {r['flops'] / 1e9:.3f} | "
            f"{r['params'] / 1e6:.3f} / {r['params_true'] / 1e6:.3f} | {r.get('pred', float('nan')):.2f} | "
            f"{r.get('pred_gnn', float('nan')):.2f} | {r['trace_s']:.2f} | {r.get('predict_s', float('nan')):.3f} | "
            f"{onnx} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.get("pred_ok")]
    fams = list(dict.fromkeys(r["family"] for r in ok))
    cmap = plt.get_cmap("tab20")
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), sharey=True)
    for ax, key, title in ((axes[0], "pred", "shipped predictor, default tracing (GNN + FLOPs prior + NASWOT)"),
                           (axes[1], "pred_gnn", "same CGs traced with proxies=False (no NASWOT term)")):
        for i, fam in enumerate(fams):
            rs = sorted((r for r in ok if r["family"] == fam), key=lambda r: r["flops"])
            xs = [math.log10(r["flops"]) for r in rs]
            ys = [r[key] for r in rs]
            ax.plot(xs, ys, "-o", color=cmap(i % 20), label=fam, ms=4, lw=1)
        ax.set_xlabel("log10 FLOPs (CG count, batch 1)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("predicted CIFAR-10 accuracy (%)")
    axes[1].legend(fontsize=7, ncol=2, loc="lower right")
    fig.suptitle("GENNAPE zero-shot on unseen families (no labels: predictions only)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="results/nape_unseen", help="output folder (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="one variant per family, ONNX on 3 families")
    ap.add_argument("--families", default="", help="comma-separated subset of seqlab.nape.zoo.FAMILIES")
    ap.add_argument("--no-onnx", action="store_true", help="skip the ONNX export path")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    fams = [f for f in args.families.split(",") if f] or list(zoo.FAMILIES)
    bad = [f for f in fams if f not in zoo.FAMILIES]
    if bad:
        ap.error(f"unknown families {bad}; choose from {sorted(zoo.FAMILIES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x = torch.randn(zoo.INPUT_SHAPE, generator=torch.Generator().manual_seed(0))
    pred = load_pretrained(device="cpu")
    t0 = time.perf_counter()
    rows, cgs = [], []
    onnx_fams = set(fams[:3]) if args.quick else set(fams)
    with tempfile.TemporaryDirectory() as tmp:
        for fam in fams:
            variants = [zoo.QUICK[fam]] if args.quick else list(zoo.FAMILIES[fam])
            for j, var in enumerate(variants):
                do_onnx = not args.no_onnx and fam in onnx_fams and (j == 0 or fam in ("vit", "odd"))
                row, cg = run_one(pred, fam, var, x, Path(tmp) if do_onnx else None)
                rows.append(row)
                if cg is not None and row.get("pred_ok"):
                    cgs.append((len(rows) - 1, cg))
                flag = "ok" if row.get("pred_ok") else f"FAIL {row.get('error', '')[:100]}"
                print(f"[{time.perf_counter() - t0:6.1f}s] {fam:18s} {var:24s} "
                      f"pred {row.get('pred', float('nan')):6.2f} nodes {row.get('nodes', 0):4d} "
                      f"other {row.get('n_other', 0)} naswot {'y' if row.get('has_naswot') else 'n'} {flag}",
                      flush=True)
    # batch independence: all CGs in one predict call vs one call each (run_one's numbers)
    batch = {}
    if cgs:
        allp, bmsgs = _warnings_of(lambda: pred.predict([cg for _, cg in cgs]))
        diffs = [abs(float(p) - rows[i]["pred"]) for (i, _), p in zip(cgs, allp)]
        batch = {"graphs": len(cgs), "max_abs_diff": max(diffs), "all_equal": max(diffs) == 0.0, "warnings": bmsgs}
    try:
        import onnxscript  # noqa: F401

        has_onnxscript = True
    except ImportError:
        has_onnxscript = False
    try:
        from seqlab.utils.runinfo import run_info

        env = run_info()
    except ImportError:
        env = {"python": sys.version, "torch": torch.__version__}
    try:
        import onnx

        env["onnx"] = onnx.__version__
    except ImportError:
        env["onnx"] = None
    env.update(threads=args.threads, onnxscript=has_onnxscript,
               onnx_exporter="torch.onnx.export(dynamo=False) (TorchScript exporter; dynamo=True needs onnxscript)")
    summary = {
        "networks": len(rows), "traced": sum(r.get("trace_ok", False) for r in rows),
        "valid_predictions": sum(r.get("pred_ok", False) for r in rows),
        "failures": [f"{r['family']}/{r['variant']}: {r['error']}" for r in rows if "error" in r],
        "pair_equal": sum(r.get("pair_equal", False) for r in rows),
        "repeat_equal": sum(r.get("repeat_equal", False) for r in rows), "batch_independence": batch,
        "with_naswot": sum(r.get("has_naswot", False) for r in rows),
        "with_other_nodes": [f"{r['family']}/{r['variant']}: {r['other_names']}" for r in rows if r.get("n_other")],
        "onnx_ok": sum(bool((r.get("onnx") or {}).get("ok")) for r in rows),
        "onnx_tried": sum("onnx" in r for r in rows), "wall_s": round(time.perf_counter() - t0, 1),
        "predictor": {"proxy_weight": pred.cfg.proxy_weight, "beta": pred.cfg.beta, "ensemble": pred.cfg.ensemble},
    }
    (out / "unseen.json").write_text(json.dumps({"env": env, "args": vars(args), "summary": summary, "rows": rows},
                                                indent=1))
    (out / "tables.md").write_text(
        f"Per family ({summary['networks']} networks, {summary['wall_s']} s):\n\n{family_table(rows)}\n\n"
        f"Per network:\n\n{variant_table(rows)}\n")
    try:
        plot(rows, out / "pred_vs_flops.png")
    except ImportError as exc:
        print(f"no plot: {exc}")
    print(json.dumps(summary, indent=1))
    print(family_table(rows))
    return 0 if summary["valid_predictions"] == summary["networks"] else 1


if __name__ == "__main__":
    sys.exit(main())
