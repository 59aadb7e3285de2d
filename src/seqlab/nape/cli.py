"""``seqlab nape ...``: predict, train, eval and cache commands for GENNAPE."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path


def _load_target(target: str, input_shape: str, proxies: bool = False, noise: str = "pink"):
    """``model.onnx`` -> CG; ``pkg.module:callable`` -> (module, example input) traced to a CG (with the
    data-free NASWOT score when ``proxies``)."""
    import torch

    from .graph import ComputationGraph

    if target.endswith(".onnx"):
        return ComputationGraph.from_onnx(target)
    if target.endswith(".json"):
        return ComputationGraph.load(target)
    if ":" not in target:
        raise ValueError(f"expected model.onnx, cg.json or module:callable, got {target!r}")
    mod_name, fn_name = target.split(":", 1)
    sys.path.insert(0, str(Path.cwd()))
    obj = getattr(importlib.import_module(mod_name), fn_name)
    made = obj() if callable(obj) and not isinstance(obj, torch.nn.Module) else obj
    if isinstance(made, tuple):  # the callable may return (module, example_input)
        model, x = made
    else:
        model, x = made, torch.zeros(*[int(v) for v in input_shape.split(",")])
    return ComputationGraph.from_module(model.eval(), x, name=target, proxies=None if proxies else False,
                                        proxy_noise=noise)


def _cmd_predict(args) -> int:
    from .predictor import GENNAPE, load_pretrained

    model = GENNAPE.load(args.model) if args.model else load_pretrained()
    from tqdm import tqdm

    bar = tqdm(args.targets, desc="tracing", disable=len(args.targets) < 2)
    graphs = [_load_target(t, args.input_shape, proxies=model.cfg.proxy_weight > 0, noise=model.cfg.proxy_noise)
              for t in bar]
    if args.save_cg:
        graphs[0].save(args.save_cg)
    if args.draw:
        graphs[0].draw(args.draw)
    preds = model.predict(graphs)
    for t, g, p in zip(args.targets, graphs, preds):
        print(f"{t}\t{p:.2f}%\t({len(g)} ops, {g.flops() / 1e6:.1f} MFLOPs, {g.params() / 1e6:.3f} M params)")
    return 0


def _cmd_cache(args) -> int:
    from . import data

    for name in args.families.split(","):
        fam = data.load_family(name, args.data)
        gs = data.family_graphs(fam, workers=args.workers)
        print(f"{name}: {len(gs)} CGs, {gs.offsets[-1] / max(len(gs), 1):.0f} ops on average -> {data.cache_dir()}")
    return 0


def read_proxy_scores(folder, family: str, data_folder=None):
    """:func:`seqlab.nape.data.read_proxy_scores` (kept here for the results scripts that import it from here)."""
    from .data import read_proxy_scores as read

    return read(folder, family, data_folder)


def _cmd_train(args) -> int:
    import numpy as np

    from . import data
    from .predictor import GENNAPE, PRETRAINED, select_beta, select_proxy_weight

    try:
        ok = args.proxy_weight == "auto" or 0.0 <= float(args.proxy_weight) <= 1.0
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"--proxy-weight must be 'auto' or a number in [0, 1], got {args.proxy_weight!r}")
    use_proxy = args.proxy_weight == "auto" or float(args.proxy_weight) > 0
    fams = data.training_families(args.data, args.families.split(","),
                                  proxy_scores=args.proxy_scores if use_proxy else None)
    cfg = dict(ensemble=args.ensemble, epochs=args.epochs, pretrain_epochs=args.pretrain_epochs,
               max_graphs_per_family=args.max_graphs, batch_size=args.batch_size, rank_targets=args.rank_targets,
               struct_features=args.struct_features)
    if args.beta == "auto":  # inner leave-one-family-out over the training families
        beta, scores = select_beta(fams, device=args.device, **dict(cfg, epochs=15, pretrain_epochs=3))
        print(f"beta = {beta} (inner leave-one-family-out SRCC {scores})")
    else:
        beta = float(args.beta)
    if args.proxy_weight == "auto":  # each family scored by a model trained on the others
        weight, info = select_proxy_weight(fams, device=args.device, seed=args.seed, **dict(cfg, beta=beta))
        print(f"proxy weight = {weight} (leave-one-family-out mean SRCC over {info['grid']}: "
              f"{[round(v, 3) for v in info['mean']]})")
    else:
        weight = float(args.proxy_weight)
    model = GENNAPE(device=args.device, beta=beta, proxy_noise=args.proxy_noise, **cfg)
    model.fit(fams, seed=args.seed)
    if use_proxy:
        model.set_proxy({n: gs.proxy for n, (gs, _) in fams.items()}, weight)
        print(f"proxy: w = {weight}, ref {model.proxy_ref:.2f}, scale {model.proxy_scale:.2f} "
              f"({', '.join(f'{n}: {int(np.isfinite(gs.proxy).sum())}' for n, (gs, _) in fams.items())} "
              "scored networks)")
    out = Path(args.out or PRETRAINED)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    print(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


def _cmd_eval(args) -> int:
    from tqdm import tqdm

    from . import data
    from .metrics import all_metrics
    from .predictor import GENNAPE, load_pretrained

    model = GENNAPE.load(args.model) if args.model else load_pretrained()
    for name in tqdm(args.families.split(","), desc="families"):
        fam = data.load_family(name, args.data)
        gs = data.family_graphs(fam)
        acc = fam.acc
        if args.proxy_scores:  # only the networks with a stored NASWOT score, with the score attached
            idx, sc = read_proxy_scores(args.proxy_scores, name, args.data)
            gs, acc = gs.select(idx), acc[idx]
            gs.proxy = sc
        m = all_metrics(model.predict(gs), acc)
        tqdm.write(f"{name:6s} n={m['n']:5d} SRCC {m['srcc']:.3f}  Kendall {m['kendall']:.3f}  "
                   f"NDCG@10 {m['ndcg10']:.3f}  MAE {m['mae']:.2f}")
    return 0


def register(sub) -> None:
    """Add ``seqlab nape {predict,train,eval,cache}`` to an argparse subparsers object."""
    p = sub.add_parser("nape", help="GENNAPE neural architecture performance estimation")
    nsub = p.add_subparsers(dest="nape_command", metavar="SUBCOMMAND")
    fams = "nb201,macro,nb101"

    q = nsub.add_parser("predict", help="predict accuracy of model.onnx / cg.json / module:callable")
    q.add_argument("targets", nargs="+")
    q.add_argument("--model", default=None, help="predictor checkpoint (default: the shipped one)")
    q.add_argument("--input-shape", default="1,3,32,32", help="example input for module:callable")
    q.add_argument("--save-cg", default=None, help="write the first CG as JSON")
    q.add_argument("--draw", default=None, help="draw the first CG to a PNG")
    q.set_defaults(func=_cmd_predict)

    c = nsub.add_parser("cache", help="trace whole families into cached CGs")
    c.add_argument("--families", default=fams)
    c.add_argument("--data", default=None)
    c.add_argument("--workers", type=int, default=1)
    c.set_defaults(func=_cmd_cache)

    t = nsub.add_parser("train", help="train GENNAPE on the labelled families and save it")
    t.add_argument("--out", default=None, help="checkpoint path (default: the shipped predictor's path)")
    t.add_argument("--families", default=fams)
    t.add_argument("--data", default=None)
    t.add_argument("--device", default=None)
    t.add_argument("--ensemble", type=int, default=5)
    t.add_argument("--epochs", type=int, default=6)
    t.add_argument("--pretrain-epochs", type=int, default=2)
    t.add_argument("--max-graphs", type=int, default=1024)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--seed", type=int, default=123)
    t.add_argument("--beta", default="0.5", help="FLOPs-prior weight, or 'auto' (inner leave-one-family-out)")
    t.add_argument("--rank-targets", action=argparse.BooleanOptionalAction, default=True,
                   help="Gaussianised within-family rank targets (default; chosen by inner leave-one-family-out)")
    t.add_argument("--struct-features", action=argparse.BooleanOptionalAction, default=False,
                   help="append structural graph features (op-group fractions, path depths/counts, widths)")
    t.add_argument("--proxy-weight", default="0",
                   help="mixing weight of the data-free NASWOT score in [0, 1] (0 = off), or 'auto': chosen by "
                        "leave-one-family-out over the training families (results/nape_run8)")
    t.add_argument("--proxy-scores", default="results/nape_run10",
                   help="folder of <family>_proxies.csv NASWOT scores (for the proxy's standardisation constants)")
    t.add_argument("--proxy-noise", default="pink", choices=("gaussian", "pink"),
                   help="the synthetic inputs the --proxy-scores were computed with; predictions compute NASWOT "
                        "the same way (results/nape_run10: pink; runs 5-9: gaussian)")
    t.set_defaults(func=_cmd_train)

    e = nsub.add_parser("eval", help="score a predictor on the labelled families")
    e.add_argument("--model", default=None)
    e.add_argument("--families", default=fams)
    e.add_argument("--data", default=None)
    e.add_argument("--proxy-scores", default=None,
                   help="folder of <family>_proxies.csv: score only those networks, with their NASWOT score")
    e.set_defaults(func=_cmd_eval)

    p.set_defaults(func=lambda a: (p.print_help(), 0)[1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="seqlab")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)
