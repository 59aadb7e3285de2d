"""Run 8: SRCC against the NASWOT weight w, per held-out family: the inner leave-one-family-out curve that
chooses w (training families only) and the held-out family's own curve (reported, chooses nothing).

    python results/nape_run8/plot_curves.py results/nape_run8/gpu/nape.json results/nape_run8/w_curves.png
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

r = json.load(open(sys.argv[1]))
fams = list(r["proxy"])
fig, axes = plt.subplots(1, len(fams), figsize=(4.2 * len(fams), 3.6), sharey=True)
for ax, h in zip(axes, fams):
    p = r["proxy"][h]
    grid = p["inner"]["grid"]
    colours = {"nb201": "C2", "macro": "C1", "nb101": "C4"}
    for v, c in p["inner"]["per_family"].items():
        ax.plot(grid, c, ":", color=colours.get(v, "grey"), lw=1.2, label=f"inner: validated on {v}")
    ax.plot(grid, p["inner"]["mean"], "--", color="C0", label="inner mean (chooses w)")
    ax.plot(grid, p["outer_curve_reported_only"]["srcc"], "-", color="C3", label=f"held-out {h} (reported only)")
    ax.axvline(p["w"], color="C0", lw=0.8)
    ax.set_title(f"held out: {h}, chosen w = {p['w']}", fontsize=9)
    ax.set_xlabel("NASWOT weight w")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower left")
axes[0].set_ylabel("SRCC")
fig.suptitle(f"GENNAPE + data-free NASWOT, run 8 ({r['meta'].get('gpu') or r['meta']['device']}, "
             f"commit {str(r['meta'].get('commit'))[:7]})", fontsize=9)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
