"""GENNAPE evaluation: leave-one-family-out zero-shot, 50-sample fine-tuning, baselines, plots.

    PYTHONPATH=src python benchmarks/nape.py --out results            # full protocol (GPU advised)
    PYTHONPATH=src python benchmarks/nape.py --quick --out /tmp/nape  # small smoke run on CPU

Families: NB-201 (the 4,096 cells without ``none``, CIFAR-10 test accuracy), NAS-Bench-Macro (6,561,
CIFAR-10 test accuracy), NB-101 (NASLib's 500 cells, CIFAR-10 validation accuracy). For each held-out
family, GENNAPE and a plain GNN (same encoder and losses, no contrastive pretraining, one head) are
trained on the two other families and scored zero-shot; then GENNAPE is fine-tuned on 50 random
samples of the held-out family (5 draws) and scored on the remaining architectures. Baselines:
FLOPs and params (as listed in the data files), and the zero-cost proxies of the shared files.
With ``--ship PATH`` the predictor is also trained on all three families and saved (the shipped
``seqlab/nape/pretrained/gennape.pt``).

With ``--proxy-scores DIR`` (``DIR/<family>_proxies.csv``, columns ``id`` and ``naswot``: the data-free
NASWOT score of each network, e.g. results/nape_run8) the NASWOT term is evaluated too: its weight ``w``
for a held-out family is chosen by leave-one-family-out *within* the two training families
(:func:`seqlab.nape.predictor.select_proxy_weight`, two extra fits), the outer zero-shot row "GENNAPE +
NASWOT" uses that ``w``, the outer SRCC over the whole grid is stored for reference only, and two more
50-shot rows are added (the zero-shot ``w`` kept; ``w`` chosen by cross-validation on the 50 samples). When
all three families are evaluated (or merged), the weight for the shipped predictor is the grid point with
the best mean outer SRCC (three-family leave-one-family-out).
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from seqlab.nape import data
from seqlab.nape.data import read_proxy_scores
from seqlab.nape.metrics import all_metrics, srcc
from seqlab.nape.predictor import GENNAPE, select_beta, select_proxy_weight


def _git_commit() -> str | None:
    import os
    import subprocess

    if os.environ.get("SEQLAB_GIT_COMMIT"):  # set when the tree was copied without .git (remote GPU runs)
        return os.environ["SEQLAB_GIT_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def load_all(folder, progress=True, proxy_scores=None):
    """-> (family name -> Family, family name -> GraphSet); with ``proxy_scores`` (a folder of
    ``<family>_proxies.csv``) each GraphSet's ``proxy`` holds its networks' NASWOT scores (NaN: none)."""
    fams, graphs = {}, {}
    for name in data.FAMILIES:
        f = data.load_family(name, folder)
        fams[name] = f
        graphs[name] = g = data.family_graphs(f, progress=progress)
        if proxy_scores:
            idx, sc = read_proxy_scores(proxy_scores, name, folder)
            g.proxy = np.full(len(g), np.nan)
            g.proxy[idx] = sc
    return fams, graphs


def training_masks(fams, graphs):
    """Which networks of each family are trained on: all, except NB-101 cells whose labels do not match them."""
    masks = {n: np.ones(len(fams[n]), bool) for n in fams}
    masks["nb101"] = data.nb101_consistent(fams["nb101"], graphs["nb101"])
    return masks


def train_set(names, fams, graphs, masks):
    out = {}
    for n in names:
        idx = np.flatnonzero(masks[n])
        out[n] = (graphs[n].select(idx), fams[n].acc[idx])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="data folder (default: SEQLAB_NAPE_DATA or ../shared/data/nape)")
    ap.add_argument("--out", default="results", help="folder for nape.json / nape.md / plots")
    ap.add_argument("--device", default=None)
    ap.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    ap.add_argument("--ensemble", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--pretrain-epochs", type=int, default=5)
    ap.add_argument("--max-graphs", type=int, default=2048, help="graphs per family per epoch")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--shots", type=int, default=50)
    ap.add_argument("--jobs", type=int, default=1, help="run the fine-tuning draws in this many processes")
    ap.add_argument("--ft-epochs", type=int, default=None, help="fine-tuning epochs (default: GENNAPE.fine_tune's)")
    ap.add_argument("--ft-lr", type=float, default=None, help="fine-tuning learning rate (default: fine_tune's)")
    ap.add_argument("--families", default=",".join(data.FAMILIES), help="held-out families to evaluate")
    ap.add_argument("--ship", default=None, help="also train on all families and save the predictor here")
    ap.add_argument("--ship-ensemble", type=int, default=3)
    ap.add_argument("--ship-epochs", type=int, default=25)
    ap.add_argument("--betas", default="0.5",
                    help="FLOPs-prior weight; several (e.g. 0.25,0.5,1,2,4) are chosen between by inner "
                         "leave-one-family-out on the training families")
    ap.add_argument("--rank-targets", action="store_true", help="Gaussianised-rank family targets")
    ap.add_argument("--struct-features", action="store_true",
                    help="append the structural graph features (data.STRUCT_FEATURES) to the embedding")
    ap.add_argument("--select-epochs", type=int, default=15)
    ap.add_argument("--proxy-scores", default=None,
                    help="folder of <family>_proxies.csv NASWOT scores: also evaluate the NASWOT term")
    ap.add_argument("--merge", default=None,
                    help="comma-separated output folders of runs over disjoint --families (e.g. run in parallel "
                         "on a small CPU): merge their results into --out, with one plot")
    args = ap.parse_args(argv)
    ft_defaults = inspect.signature(GENNAPE.fine_tune).parameters
    args.ft_epochs = ft_defaults["epochs"].default if args.ft_epochs is None else args.ft_epochs
    args.ft_lr = ft_defaults["lr"].default if args.ft_lr is None else args.ft_lr
    if args.merge:
        return merge([Path(d) for d in args.merge.split(",")], Path(args.out), args.data)
    if args.quick:
        args.ensemble, args.epochs, args.pretrain_epochs, args.max_graphs, args.draws = 1, 1, 1, 64, 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    fams, graphs = load_all(args.data, proxy_scores=args.proxy_scores)
    if args.struct_features:  # once per family: select() slices them for training subsets and fine-tune draws
        for g in graphs.values():
            g.structure()
    masks = training_masks(fams, graphs)
    cfg = dict(ensemble=args.ensemble, epochs=args.epochs, pretrain_epochs=args.pretrain_epochs,
               max_graphs_per_family=args.max_graphs, batch_size=args.batch_size, rank_targets=args.rank_targets,
               struct_features=args.struct_features)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    results = {
        "meta": {"device": device, "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
                 "python": platform.python_version(), "torch": torch.__version__, "config": cfg,
                 "argv": sys.argv, "fine_tune": {"epochs": args.ft_epochs, "lr": args.ft_lr},
                 "command": "PYTHONPATH=src python " + " ".join(sys.argv),
                 "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": _git_commit(),
                 "threads": torch.get_num_threads(), "nb101_consistent_cells": int(masks["nb101"].sum()),
                 "families": {n: len(f) for n, f in fams.items()}},
        "sanity": {},
        "zero_shot": {}, "fine_tune": {}, "fine_tune_more": {}, "baselines": {}, "proxy": {},
    }
    if args.proxy_scores:
        results["meta"]["proxy_scores"] = args.proxy_scores
    # Sanity: our traced FLOPs vs the files' (rank agreement) and FLOPs-accuracy SRCC.
    for n, f in fams.items():
        results["sanity"][n] = {"srcc_cg_flops_vs_file_flops": all_metrics(graphs[n].flops, f.flops, False)["srcc"],
                                "srcc_cg_flops_vs_acc": all_metrics(graphs[n].flops, f.acc, False)["srcc"]}

    betas = tuple(float(b) for b in args.betas.split(","))
    sel_cfg = dict(cfg, epochs=args.select_epochs, pretrain_epochs=min(3, args.pretrain_epochs))
    results["beta_selection"] = {}

    def choose(train, key):
        if len(betas) == 1:
            return betas[0]
        b, scores = select_beta(train, betas, device=device, **sel_cfg)
        results["beta_selection"][key] = {"beta": b, "inner_lofo_srcc": {str(k): v for k, v in scores.items()}}
        return b

    def save():
        results["meta"]["elapsed_s"] = round(time.time() - t_start, 1)
        (out / "nape.json").write_text(json.dumps(results, indent=2))
        (out / "nape.md").write_text(markdown(results))

    if args.ship:
        t0 = time.time()
        all_train = train_set(data.FAMILIES, fams, graphs, masks)
        ship_cfg = dict(cfg, ensemble=args.ship_ensemble, epochs=args.ship_epochs, beta=choose(all_train, "ship"))
        model = GENNAPE(device=device, **ship_cfg).fit(all_train, seed=123, progress=False)
        Path(args.ship).parent.mkdir(parents=True, exist_ok=True)
        model.save(args.ship)
        results["meta"]["ship"] = {"path": str(args.ship), "config": ship_cfg, "train_s": round(time.time() - t0, 1),
                                   "train_srcc": {n: all_metrics(model.predict(graphs[n]), fams[n].acc)["srcc"]
                                                  for n in fams}}
        save()

    preds = {}
    for held in args.families.split(","):
        t0 = time.time()
        f, gs = fams[held], graphs[held]
        train = train_set([n for n in data.FAMILIES if n != held], fams, graphs, masks)
        res = {}
        # baselines from the data files
        base = {"flops": all_metrics(f.flops, f.acc, False), "params": all_metrics(f.params, f.acc, False)}
        for p, v in f.proxies.items():
            base[f"zc:{p}"] = all_metrics(v, f.acc, False)
        if gs.proxy is not None:
            ok = np.isfinite(gs.proxy)
            base["naswot (data-free, seqlab)"] = all_metrics(gs.proxy[ok], f.acc[ok], False)
        if held == "nb101" and not masks["nb101"].all():
            m = masks["nb101"]
            base["flops (consistent cells)"] = all_metrics(f.flops[m], f.acc[m], False)
        results["baselines"][held] = base
        # GENNAPE zero-shot (beta chosen on the training families only)
        beta = choose(train, held)
        model = GENNAPE(device=device, **dict(cfg, beta=beta)).fit(train, seed=0, progress=False)
        p = model.predict(gs)
        preds[held] = p
        res["GENNAPE"] = all_metrics(p, f.acc)
        if held == "nb101" and not masks["nb101"].all():
            res["GENNAPE (consistent cells)"] = all_metrics(p[masks["nb101"]], f.acc[masks["nb101"]])
        # plain GNN: no contrastive pretraining, a single head (no fuzzy clustering)
        plain = GENNAPE(device=device, **dict(cfg, beta=beta, pretrain_epochs=0, clusters=1)).fit(
            train, seed=0, progress=False)
        res["GNN (no CL, 1 head)"] = all_metrics(plain.predict(gs), f.acc)
        mixed = None
        if gs.proxy is not None:
            # w from the training families alone, then the outer model with the training families' constants
            w, sel = select_proxy_weight(train, device=device, **dict(cfg, beta=beta))
            mixed = copy.deepcopy(model).set_proxy({n: t[0].proxy for n, t in train.items()}, w)
            preds[held] = mixed.predict(gs)
            res["GENNAPE + NASWOT (w by inner LOFO)"] = all_metrics(preds[held], f.acc)
            s0 = model.score(gs)
            results["proxy"][held] = {"w": w, "inner": sel, "outer_curve_reported_only": {
                "grid": sel["grid"], "srcc": [all_metrics(mixed._mix_proxy(s0, gs, v), f.acc)["srcc"]
                                              for v in sel["grid"]]}}
        results["zero_shot"][held] = res
        save()
        # fine-tuning on `shots` random samples, evaluated on the rest (_one_draw)
        ft, more = [], {}

        def record(d, row, held=held, ft=ft, more=more):
            ft.append(row["gnn"])
            for name, v in row["more"].items():
                more.setdefault(name, []).append(v)
            results.setdefault("fine_tune_curves", {}).setdefault(held, {})[str(d)] = row["curves"]
            results["fine_tune"][held] = _summary(ft)
            if more:
                results["fine_tune_more"][held] = {name: _summary(v) for name, v in more.items()}
            save()  # after every draw: a run cut short keeps the draws it finished

        mix = None if mixed is None else (mixed.proxy_ref, mixed.proxy_scale, w)
        if args.jobs > 1 and args.draws > 1:
            _parallel_draws(model, mix, gs, f.acc, args, record)
        else:
            for d in range(args.draws):
                record(d, _one_draw(model, mix, gs, f.acc, d, args.shots, args.ft_epochs, args.ft_lr))
        results["zero_shot"][held]["time_s"] = round(time.time() - t0, 1)
        save()
        ft_txt = f"ft {results['fine_tune'][held]['srcc']['mean']:.3f}  " if ft else ""
        print(f"[{held}] zero-shot {res['GENNAPE']['srcc']:.3f}  plain {res['GNN (no CL, 1 head)']['srcc']:.3f}  "
              f"{ft_txt}({time.time() - t0:.0f}s)", flush=True)
    np.savez_compressed(out / "nape_preds.npz", **{k: v.astype(np.float32) for k, v in preds.items()})
    plot(fams, preds, out / "nape_pred_vs_true.png", " + NASWOT" if args.proxy_scores else "")
    _ship_weight(results)
    save()
    print(markdown(results))
    return 0


def _one_draw(model, mix, gs, acc, d, shots, ft_epochs, ft_lr) -> dict:
    """Draw ``d``: fine-tune a copy of ``model`` on ``shots`` random networks (seed 1000 + d), score the rest.

    With the proxy term (``mix`` = the zero-shot (proxy_ref, proxy_scale, w)) one ``fine_tune(proxy="cv")``
    gives every row: its final fine-tune is the plain one (same samples, seed and RNG state;
    tests/nape/test_proxies.py), and the weight only changes the mixing after it. Also returned: the final
    model's SRCC on the rest at every w of the grid, with the samples' and with the zero-shot constants, and
    the cross-fitting curve, so that weight rules can be compared afterwards without refitting.
    """
    torch.manual_seed(1000 + d)  # dropout: the draw does not depend on what ran before it (or in which process)
    rng = np.random.default_rng(1000 + d)
    pick = rng.choice(len(gs), size=shots, replace=False)
    rest = np.setdiff1d(np.arange(len(gs)), pick)
    sched = dict(n=shots, seed=d, epochs=ft_epochs, lr=ft_lr)
    m2 = copy.deepcopy(model).fine_tune(gs.select(pick), acc[pick], proxy=None if mix is None else "cv", **sched)
    gr, y = gs.select(rest), acc[rest]
    more, curves = {}, {}
    if mix is not None:
        info = m2.proxy_cv
        m2.cfg.proxy_weight = 0.0
        s0 = m2.score(gr)  # GNN + FLOPs prior once; every weight below only re-mixes it
        grid = info["grid"]
        curves = {"grid": grid, "cv_curve": info["curve"], "cv_se": info["se"], "w_max": info["w_max"],
                  "w_1se": info["w_1se"], "w_zero_shot": mix[2],
                  "final_samples_consts": [srcc(m2._mix_proxy(s0, gr, v), y) for v in grid]}
        for name, v in (("1-SE rule", info["w_1se"]), ("maximum", info["w_max"])):
            m2.cfg.proxy_weight = v
            more[f"GENNAPE + NASWOT (50-shot, w by 5-fold CV on the samples, {name})"] = dict(
                all_metrics(m2.predict(gr), y), w=v)
        m2.proxy_ref, m2.proxy_scale, m2.cfg.proxy_weight = mix
        more["GENNAPE + NASWOT (50-shot, zero-shot w kept)"] = dict(all_metrics(m2.predict(gr), y), w=mix[2])
        curves["final_zero_shot_consts"] = [srcc(m2._mix_proxy(s0, gr, v), y) for v in grid]
        m2.cfg.proxy_weight = 0.0
    for v in more.values():
        v["draw"] = d
    return {"gnn": dict(all_metrics(m2.predict(gr), y), draw=d), "more": more, "curves": curves}


def _draw_worker(path, device, threads, mix, gs, acc, d, shots, ft_epochs, ft_lr):
    torch.set_num_threads(threads)
    model = torch.load(path, weights_only=False)  # our own file, written just before by _parallel_draws
    model.device = torch.device(device)
    model.members = [m.to(model.device) for m in model.members]
    return _one_draw(model, mix, gs, acc, d, shots, ft_epochs, ft_lr)


def _parallel_draws(model, mix, gs, acc, args, record) -> None:
    """Run the draws in ``args.jobs`` spawned processes; each loads the zero-shot model pickled whole in float32
    (``save`` would round to float16). A draw gives what the sequential path gives, up to float rounding from the
    thread count, which 150 fine-tuning epochs can amplify to ~0.01-0.02 SRCC on CPU (as GPU nondeterminism
    does). Each draw is recorded (and saved) as it finishes, so a run cut short keeps every finished draw."""
    import multiprocessing as mp
    import tempfile
    from concurrent.futures import ProcessPoolExecutor, as_completed

    jobs = min(args.jobs, args.draws)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "zero_shot.pt"
        cpu = copy.deepcopy(model)
        cpu.device, cpu.members = torch.device("cpu"), [m.cpu() for m in cpu.members]
        torch.save(cpu, path)
        threads = max(1, torch.get_num_threads() // jobs)
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as ex:
            futs = {ex.submit(_draw_worker, str(path), str(model.device), threads, mix, gs, acc, d, args.shots,
                              args.ft_epochs, args.ft_lr): d for d in range(args.draws)}
            for fut in as_completed(futs):
                record(futs[fut], fut.result())

def _summary(draws: list[dict]) -> dict:
    out = {k: {"mean": float(np.mean([r[k] for r in draws])), "std": float(np.std([r[k] for r in draws]))}
           for k in ("srcc", "kendall", "ndcg10", "mae")}
    out["draws"] = draws
    return out


def _ship_weight(results: dict) -> None:
    """Three-family leave-one-family-out weight for the shipped predictor: each two-family model scored on its
    third family, mean SRCC over the grid, first maximum (needs all three held-out families)."""
    curves = {h: v["outer_curve_reported_only"] for h, v in results.get("proxy", {}).items()}
    if set(curves) != set(data.FAMILIES):
        return
    grid = next(iter(curves.values()))["grid"]
    mean = np.mean([c["srcc"] for c in curves.values()], axis=0)
    results["proxy_ship"] = {"w": grid[int(np.argmax(mean))], "grid": grid, "mean_srcc": [float(v) for v in mean]}


def merge(parts: list[Path], out: Path, folder=None) -> int:
    """Combine runs over disjoint held-out families (same code and settings) into one result."""
    out.mkdir(parents=True, exist_ok=True)
    runs = [json.loads((p / "nape.json").read_text()) for p in parts]
    merged = copy.deepcopy(runs[0])
    merged["meta"]["parts"] = [{"folder": str(p), "command": r["meta"].get("command"),
                                "elapsed_s": r["meta"].get("elapsed_s"), "date_utc": r["meta"].get("date_utc"),
                                "commit": r["meta"].get("commit")} for p, r in zip(parts, runs)]
    merged["meta"]["command"] = " ; ".join(r["meta"].get("command", "") for r in runs)
    merged["meta"]["elapsed_s"] = max(r["meta"].get("elapsed_s", 0) for r in runs)  # the parts ran in parallel
    for r in runs[1:]:
        for k in ("zero_shot", "fine_tune", "fine_tune_more", "fine_tune_curves", "baselines", "beta_selection",
                  "proxy"):
            merged.setdefault(k, {}).update(r.get(k, {}))
        if "ship" in r["meta"]:
            merged["meta"]["ship"] = r["meta"]["ship"]
    preds = {}
    for p in parts:
        if (p / "nape_preds.npz").exists():
            preds.update(dict(np.load(p / "nape_preds.npz")))
    fams = {n: data.load_family(n, folder) for n in preds}
    _ship_weight(merged)
    (out / "nape.json").write_text(json.dumps(merged, indent=2))
    (out / "nape.md").write_text(markdown(merged))
    if preds:
        np.savez_compressed(out / "nape_preds.npz", **preds)
        plot(fams, preds, out / "nape_pred_vs_true.png", " + NASWOT" if merged["meta"].get("proxy_scores") else "")
    print(markdown(merged))
    return 0


def markdown(r: dict) -> str:
    meta = r["meta"]
    lines = [f"# GENNAPE evaluation ({meta['device']} {meta.get('gpu') or ''})", "",
             f"Date {meta.get('date_utc')}, commit {meta.get('commit')}, elapsed {meta.get('elapsed_s')} s.", "",
             f"Command: `{meta.get('command')}`", "",
             f"Config: {meta.get('config')}", "",
             "Zero-shot: trained on the other two families. Fine-tune: 50 random samples, mean ± std over "
             "the draws, scored on the remaining architectures.", "",
             "| held-out | method | SRCC | Kendall τ | NDCG@10 | MAE | n |", "|---|---|---|---|---|---|---|"]

    def fmt(v):
        return "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.3f}"

    for held, res in r["zero_shot"].items():
        for name, m in res.items():
            if isinstance(m, dict):
                lines.append(f"| {held} | {name} (zero-shot) | {fmt(m['srcc'])} | {fmt(m['kendall'])} | "
                             f"{fmt(m['ndcg10'])} | {fmt(m.get('mae'))} | {m['n']} |")
        if held in r["fine_tune"]:
            ft = r["fine_tune"][held]
            cell = {k: f"{ft[k]['mean']:.3f} ± {ft[k]['std']:.3f}" for k in ("srcc", "kendall", "ndcg10", "mae")}
            lines.append(f"| {held} | GENNAPE (50-shot fine-tune) | {cell['srcc']} | {cell['kendall']} | "
                         f"{cell['ndcg10']} | {cell['mae']} | {len(ft['draws'])} draws |")
        for name, ft in r.get("fine_tune_more", {}).get(held, {}).items():
            cell = {k: f"{ft[k]['mean']:.3f} ± {ft[k]['std']:.3f}" for k in ("srcc", "kendall", "ndcg10", "mae")}
            ws = ", ".join(f"{d['w']:g}" for d in ft["draws"])
            lines.append(f"| {held} | {name} | {cell['srcc']} | {cell['kendall']} | {cell['ndcg10']} | "
                         f"{cell['mae']} | {len(ft['draws'])} draws (w {ws}) |")
        for name, m in sorted(r["baselines"].get(held, {}).items(), key=lambda kv: -np.nan_to_num(kv[1]["srcc"])):
            lines.append(f"| {held} | {name} | {fmt(m['srcc'])} | {fmt(m['kendall'])} | {fmt(m['ndcg10'])} | "
                         f" | {m['n']} |")
    lines += ["", "Sanity (rank agreement of seqlab's traced FLOPs with the files' FLOPs):", ""]
    for n, s in r["sanity"].items():
        lines.append(f"- {n}: SRCC(CG FLOPs, file FLOPs) = {s['srcc_cg_flops_vs_file_flops']:.3f}; "
                     f"SRCC(CG FLOPs, accuracy) = {s['srcc_cg_flops_vs_acc']:.3f}")
    if r.get("beta_selection"):
        lines += ["", "FLOPs-prior weight chosen by inner leave-one-family-out on the training families:", ""]
        for k, v in r["beta_selection"].items():
            lines.append(f"- {k}: beta = {v['beta']} (inner SRCC {v['inner_lofo_srcc']})")
    if r.get("proxy"):
        lines += ["", "NASWOT weight w (grid 0, 0.1, ..., 1; first maximum): inner = leave-one-family-out within "
                  "the two training families (the choice); outer = the held-out family's SRCC over the grid "
                  "(reported only, chooses nothing):", ""]
        for h, v in r["proxy"].items():
            inner = " / ".join(f"{x:.3f}" for x in v["inner"]["mean"])
            outer = " / ".join(f"{x:.3f}" for x in v["outer_curve_reported_only"]["srcc"])
            lines.append(f"- {h}: w = {v['w']}; inner mean SRCC {inner}; outer {outer}")
    if r.get("proxy_ship"):
        ps = r["proxy_ship"]
        lines.append(f"- shipped predictor: w = {ps['w']} (mean of the three outer curves: "
                     + " / ".join(f"{x:.3f}" for x in ps["mean_srcc"]) + ")")
    if "ship" in r["meta"]:
        lines += ["", f"Shipped predictor: {r['meta']['ship']}"]
    return "\n".join(lines) + "\n"


def plot(fams, preds, path, title_suffix=""):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    names = [n for n in preds]
    if not names:
        return
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4))
    axes = np.atleast_1d(axes)
    for ax, n in zip(axes, names):
        ax.scatter(fams[n].acc, preds[n], s=3, alpha=0.4)
        ax.set_xlabel("true accuracy (%)")
        ax.set_ylabel("predicted (%)")
        ax.set_title(f"{n} zero-shot{title_suffix} (SRCC {all_metrics(preds[n], fams[n].acc)['srcc']:.3f})",
                     fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
