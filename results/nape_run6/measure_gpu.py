"""Run 6: data-free NASWOT / SynFlow for whole families on one GPU, networks built in parallel processes.

    OUT=... SEQLAB_NAPE_DATA=.nape_data PYTHONPATH=src python results/nape_run6/measure_gpu.py [--workers 14]
        -> $OUT/{nb201,macro,nb101}_proxies.csv, $OUT/measure_gpu.log

Same networks, seeds and inputs as run 5's results/nape_run5/measure.py: each network is built on the CPU after
``torch.manual_seed(0)`` (so its weights are run 5's), then moved to the GPU; ``proxies.naswot(m, x, batch=64,
seed=0)`` (the 64 Gaussian inputs are drawn on the CPU from the seeded generator, then moved; TF32 off inside
naswot) and ``proxies.synflow(m, x)`` (float64). NB-201: the 4,096 cells without ``none``; Macro: all 6,561;
NB-101: all 500. CSV columns as run 5 (id, order in the fixed permutation ``default_rng(0).permutation``, naswot,
synflow, seconds), plus the worker's device. Work is interleaved over the families by relative position in
their permutation, so a run cut short leaves a random subset of each family. Stops submitting at --deadline s.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np

FAMS = ("nb201", "macro", "nb101")
_W = {}


def _init(synflow=True, device=None, noise="gaussian"):
    import torch

    from seqlab.nape import data, spaces

    torch.set_num_threads(1)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    _W["dev"] = dev
    _W["synflow"] = synflow
    _W["noise"] = noise
    _W["fams"] = {n: data.load_family(n) for n in FAMS}
    _W["x"] = spaces.example_input().to(dev)


def _to_device(fam, arch, m, dev):
    """The CPU-initialised module on ``dev`` with one host-to-device copy (``m.to(dev)`` makes one synchronous
    copy per tensor, which stalls when 15 processes time-share the GPU): a meta-device twin gets the weights
    as views of one flat float64 buffer (exact for float32 weights and the int64 BN counters)."""
    import numpy as np
    import torch

    sd = m.state_dict()
    flat = torch.cat([v.reshape(-1).to(torch.float64) for v in sd.values()]).to(dev)
    offs = np.cumsum([0] + [v.numel() for v in sd.values()])
    with torch.device("meta"):
        m2 = fam.build(arch)
    m2.load_state_dict({k: flat[offs[i]:offs[i + 1]].view(v.shape).to(v.dtype) for i, (k, v) in enumerate(sd.items())},
                       assign=True)
    return m2


def _work(items):
    import torch

    from seqlab.nape import proxies

    out = []
    for fam_name, k, arch in items:
        fam = _W["fams"][fam_name]
        torch.manual_seed(0)
        m = fam.build(arch)
        if _W["dev"] != "cpu":
            m = _to_device(fam, arch, m, _W["dev"])
        t0 = time.perf_counter()
        nw = proxies.naswot(m, _W["x"], batch=64, seed=0, noise=_W["noise"])
        t1 = time.perf_counter()
        sf = proxies.synflow(m, _W["x"]) if _W["synflow"] else float("nan")
        if _W["dev"] == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        out.append((fam_name, arch, k, nw, sf, t1 - t0, t2 - t1))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=14)
    ap.add_argument("--deadline", type=float, default=270.0)
    ap.add_argument("--limit", type=int, default=0, help="networks per family (0 = all; for a local smoke test)")
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument("--no-synflow", action="store_true", help="NASWOT only (synflow column NaN)")
    ap.add_argument("--device", default=None, help="default: cuda if available")
    ap.add_argument("--skip", nargs="*", default=[], help="folders of <family>_proxies.csv whose ids are done")
    ap.add_argument("--reverse", action="store_true", help="work from the end of the interleaved order")
    ap.add_argument("--noise", default="gaussian", choices=("gaussian", "pink"),
                    help="NASWOT's synthetic inputs (run 10 added pink; runs 6/8 used gaussian)")
    a = ap.parse_args()
    t_start = time.time()
    out = Path(os.environ.get("OUT", "/tmp/nape_run6_out"))
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "measure_gpu.log", "a")

    def say(msg):
        line = f"[{time.time() - t_start:7.1f} s] {msg}"
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    from seqlab.nape import data

    items = []
    for n in FAMS:
        ids = data.load_family(n).ids
        order = np.random.default_rng(0).permutation(len(ids))
        lim = len(order) if a.limit <= 0 else min(a.limit, len(order))
        items += [((k + 0.5) / len(order), n, k, ids[order[k]]) for k in range(lim)]
    skip = set()
    for d in a.skip:
        for n in FAMS:
            p = Path(d) / f"{n}_proxies.csv"
            if p.exists():
                with open(p) as f:
                    skip |= {(n, r["id"]) for r in csv.DictReader(f)}
    items = [it for it in items if (it[1], it[3]) not in skip]
    items.sort(key=lambda t: t[0], reverse=a.reverse)
    chunks = [[it[1:] for it in items[i:i + a.chunk]] for i in range(0, len(items), a.chunk)]
    say(f"{len(items)} networks in {len(chunks)} chunks, {a.workers} workers")
    files, writers = {}, {}
    for n in FAMS:
        f = open(out / f"{n}_proxies.csv", "w", newline="")
        w = csv.writer(f)
        w.writerow(["id", "order", "naswot", "synflow", "t_naswot_s", "t_synflow_s"])
        files[n], writers[n] = f, w
    done = {n: 0 for n in FAMS}
    ctx = mp.get_context("spawn")
    with ctx.Pool(a.workers, initializer=_init, initargs=(not a.no_synflow, a.device, a.noise)) as pool:
        pending = []
        it = iter(chunks)
        # keep at most 2 chunks per worker in flight, so the deadline can stop submission
        for _ in range(2 * a.workers):
            c = next(it, None)
            if c is not None:
                pending.append(pool.apply_async(_work, (c,)))
        stopped = False
        last = time.time()
        while pending:
            r = pending.pop(0)
            for fam_name, arch, k, nw, sf, tn, ts in r.get():
                writers[fam_name].writerow([arch, k, f"{nw:.6f}", f"{sf:.6f}", f"{tn:.3f}", f"{ts:.3f}"])
                done[fam_name] += 1
            for f in files.values():
                f.flush()
            if not stopped:
                if time.time() - t_start > a.deadline:
                    stopped = True
                    say("deadline: no more submissions")
                else:
                    c = next(it, None)
                    if c is not None:
                        pending.append(pool.apply_async(_work, (c,)))
            if time.time() - last > 15:
                last = time.time()
                for f in files.values():
                    f.flush()
                say(f"done {done}")
    for f in files.values():
        f.close()
    say(f"finished: {done}")


if __name__ == "__main__":
    main()
