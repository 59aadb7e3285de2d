"""Tests for seqlab.nape.proxies (data-free NASWOT / SynFlow) and the optional proxy term of GENNAPE."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from seqlab.nape import ComputationGraph, proxies, spaces
from seqlab.nape import data as nd
from seqlab.nape.graph import PROXY_NOISE

KEY = proxies.naswot_key(PROXY_NOISE)  # where from_module stores its NASWOT score

X = torch.zeros(1, 3, 32, 32)


def _cnn(width=8, depth=2, seed=0):
    torch.manual_seed(seed)
    layers, c = [], 3
    for _ in range(depth):
        layers += [nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        c = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 64), nn.GELU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 5))


def test_naswot_deterministic_finite_and_module_untouched():
    m = _cnn()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    a = proxies.naswot(m, X, batch=32, seed=3)
    b = proxies.naswot(m, X, batch=32, seed=3)
    assert math.isfinite(a) and a == b
    assert proxies.naswot(m, X, batch=32, seed=4) != a  # another noise batch
    for k, v in m.state_dict().items():  # BN running stats and weights unchanged (a copy ran)
        assert torch.equal(v, before[k]), k
    assert m.training  # mode unchanged


def test_naswot_kernel_is_invariant_to_batch_order():
    """log det K of a permuted batch equals that of the batch (K -> P K P^T)."""
    m = _cnn(width=6)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 8, 8, generator=g)
    perm = torch.randperm(16, generator=g)

    def logdet(inp):
        net = m.__class__(*[layer for layer in m])  # same layers (weights shared)
        net.train()
        mode = proxies._CodeKernel(len(inp))
        with torch.no_grad(), mode:
            net(inp)
        return torch.linalg.slogdet(mode.k)[1].item(), mode.k

    l1, k1 = logdet(x)
    l2, k2 = logdet(x[perm])
    assert l1 == pytest.approx(l2, rel=1e-9)
    torch.testing.assert_close(k2, k1[perm][:, perm])
    assert torch.all(torch.diagonal(k1) == torch.diagonal(k1)[0])  # diagonal = number of units N_A


def test_proxies_on_conv_mlp_and_benchmark_networks():
    for model, x in ((_cnn(), X), (_mlp(), torch.zeros(1, 20)), (spaces.macro("12000021"), X)):
        s = proxies.compute(model, x, batch=16)
        assert set(s) == {"naswot", "synflow"} and all(math.isfinite(v) for v in s.values())
    # functional activations are seen too (no nn.ReLU module)
    class Fn(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 32), nn.Linear(32, 2)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    assert math.isfinite(proxies.naswot(Fn(), torch.zeros(1, 8), batch=8))


def test_synflow_matches_a_direct_computation():
    m = _mlp()
    net = _mlp().double()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net(torch.ones(1, 20, dtype=torch.float64)).sum().backward()
    ref = sum(float((p.detach() * p.grad).abs().sum()) for p in net.parameters())
    assert proxies.synflow(m, torch.zeros(1, 20)) == pytest.approx(math.log(ref), rel=1e-9)


def test_proxy_errors_are_clear_value_errors():
    m = _cnn()
    with pytest.raises(ValueError, match="shape"):
        proxies.naswot(m, torch.zeros(1, 5, 32, 32))  # wrong channel count
    with pytest.raises(ValueError, match="batch dimension"):
        proxies.naswot(m, torch.zeros(3))
    with pytest.raises(ValueError, match="floating point"):
        proxies.naswot(m, torch.zeros(1, 3, 32, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2"):
        proxies.naswot(m, X, batch=1)
    with pytest.raises(ValueError, match="rectifier"):
        proxies.naswot(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4)), X)
    with pytest.raises(ValueError, match="shape"):
        proxies.synflow(m, torch.zeros(1, 5, 32, 32))
    with pytest.raises(ValueError, match="unknown proxy"):
        proxies.compute(m, X, names=("zen",))


def test_from_module_computes_the_proxy_by_default_for_rectifier_modules(tmp_path, monkeypatch):
    m = spaces.macro("10000000").eval()
    monkeypatch.delenv("SEQLAB_NAPE_PROXY", raising=False)
    cg = ComputationGraph.from_module(m, X)  # the default ("auto"): the module has ReLUs
    assert cg.proxies[KEY] == pytest.approx(proxies.naswot(m, X, noise="pink"))
    assert ComputationGraph.from_module(m, X, proxies=True).proxies == cg.proxies
    assert ComputationGraph.from_module(m, X, proxies=False).proxies == {}
    monkeypatch.setenv("SEQLAB_NAPE_PROXY", "0")  # the environment switches the default off ...
    assert ComputationGraph.from_module(m, X).proxies == {}
    assert KEY in ComputationGraph.from_module(m, X, proxies=True).proxies  # ... not an explicit request
    monkeypatch.setenv("SEQLAB_NAPE_PROXY", "1")
    assert KEY in ComputationGraph.from_module(m, X).proxies
    monkeypatch.delenv("SEQLAB_NAPE_PROXY")
    # the traced module and the global RNG are untouched by the extra pass
    state = torch.random.get_rng_state()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    ComputationGraph.from_module(m, X)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    cg.save(tmp_path / "cg.json")
    assert ComputationGraph.load(tmp_path / "cg.json").proxies == cg.proxies
    d = cg.to_dict()
    d["proxies"] = {"naswot": "high"}
    (tmp_path / "bad.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="proxies"):
        ComputationGraph.load(tmp_path / "bad.json")
    # a module the proxy cannot score still traces: silently by default, with a warning when asked for
    lin = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ComputationGraph.from_module(lin, torch.zeros(1, 12)).proxies == {}
    with pytest.warns(UserWarning, match="NASWOT"):
        cg2 = ComputationGraph.from_module(lin, torch.zeros(1, 12), proxies=True)
    assert cg2.proxies == {}
    gs = nd.GraphSet.from_graphs([cg, cg2])
    assert gs.proxy[0] == cg.proxies[KEY] and np.isnan(gs.proxy[1])
    assert np.isnan(gs.select([1]).proxy[0]) and nd.GraphSet.concat([gs, gs.select([0])]).proxy.shape == (3,)


class _TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 4), nn.Linear(6, 4)

    def forward(self, x, y):
        return torch.relu(self.a(x)) + torch.relu(self.b(y))


class _FailsOnBatches(nn.Module):
    """Traces at batch 1, fails on the batch-64 noise pass (e.g. a hard-coded reshape)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return torch.relu(self.fc(x)).reshape(1, 8)


def test_auto_proxy_skips_silently_where_it_cannot_or_should_not_run(monkeypatch):
    monkeypatch.delenv("SEQLAB_NAPE_PROXY", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # several inputs, an integer input, a meta module, a module failing on the batch: traced, no score
        assert ComputationGraph.from_module(_TwoInputs(), (torch.zeros(1, 6), torch.zeros(1, 6))).proxies == {}
        with torch.device("meta"):
            meta = _cnn(4, 1)
        assert ComputationGraph.from_module(meta, torch.zeros(1, 3, 8, 8, device="meta")).proxies == {}
        assert ComputationGraph.from_module(_FailsOnBatches(), torch.zeros(1, 8)).proxies == {}
        # a rectifier module in a one-tuple input is scored
        assert KEY in ComputationGraph.from_module(_mlp(), (torch.zeros(1, 20),)).proxies
    # too expensive for the default: skipped (the limit is on 64 x the CG's FLOPs)
    from seqlab.nape import graph as ng

    monkeypatch.setattr(ng, "AUTO_PROXY_MAX_FLOPS", 1.0)
    assert ComputationGraph.from_module(_mlp(), torch.zeros(1, 20)).proxies == {}
    assert KEY in ComputationGraph.from_module(_mlp(), torch.zeros(1, 20), proxies=True).proxies


def test_family_caches_stay_proxy_free(monkeypatch):
    monkeypatch.setenv("SEQLAB_NAPE_PROXY", "1")  # even when the environment asks for proxies

    def boom(*a, **k):
        raise AssertionError("the family cache must not run NASWOT")

    monkeypatch.setattr(proxies, "naswot", boom)
    cg = nd.trace_id("macro", "10000000", spaces.macro)
    assert cg.proxies == {} and len(cg) > 10


def test_shipped_predictor_uses_the_proxy_on_the_plain_traced_path(monkeypatch):
    """``load_pretrained().predict([ComputationGraph.from_module(m, x)])`` gets the NASWOT term (the shipped
    model has proxy_weight > 0), equal to passing (m, x), and differs from the GNN alone."""
    pytest.importorskip("torch_geometric")
    from seqlab.nape import load_pretrained

    monkeypatch.delenv("SEQLAB_NAPE_PROXY", raising=False)
    model = load_pretrained(device="cpu")
    assert model.cfg.proxy_weight > 0
    nets = [spaces.macro(code).eval() for code in ("10000000", "00000001")]
    plain = [ComputationGraph.from_module(m, X) for m in nets]
    assert all(KEY in g.proxies for g in plain)
    p_plain = model.predict(plain)
    np.testing.assert_allclose(p_plain, model.predict([(m, X) for m in nets]), rtol=0, atol=1e-6)
    gnn_only = model.predict([ComputationGraph.from_module(m, X, proxies=False) for m in nets])
    assert np.all(np.abs(p_plain - gnn_only) > 1e-3)


def _family(n, seed, widths):
    rng = np.random.default_rng(seed)
    graphs, acc = [], []
    for _ in range(n):
        depth, w = int(rng.integers(1, 4)), int(rng.choice(widths))
        m = _cnn(w, depth, seed=int(rng.integers(1 << 30))).eval()
        graphs.append(ComputationGraph.from_module(m, torch.zeros(1, 3, 8, 8), proxies=True))
        acc.append(60 + 6 * depth + 0.2 * w + rng.normal(0, 0.5))
    return graphs, np.array(acc)


def test_gennape_proxy_term_is_batch_independent_and_checkpoint_compatible(tmp_path):
    pytest.importorskip("torch_geometric")
    from seqlab.nape import GENNAPE

    torch.manual_seed(0)
    ga, ya = _family(24, 0, [4, 8, 16])
    gb, _ = _family(10, 1, [6, 12])
    gs_a = nd.GraphSet.from_graphs(ga)
    model = GENNAPE(device="cpu", ensemble=1, epochs=2, pretrain_epochs=1, batch_size=16, hidden=16, layers=1,
                    clusters=2).fit({"a": (gs_a, ya)}, progress=False)
    base = model.predict(gb)
    model.save(tmp_path / "old.pt")  # proxy off: loads with the defaults
    old = GENNAPE.load(tmp_path / "old.pt", device="cpu")
    assert old.cfg.proxy_weight == 0.0 and (old.proxy_ref, old.proxy_scale) == (0.0, 1.0)
    # a checkpoint written before the proxy fields existed still loads, with the proxy off
    st = torch.load(tmp_path / "old.pt", weights_only=True)
    st.pop("proxy_ref"), st.pop("proxy_scale"), st["config"].pop("proxy_weight")
    torch.save(st, tmp_path / "older.pt")
    older = GENNAPE.load(tmp_path / "older.pt", device="cpu")
    np.testing.assert_allclose(older.predict(gb), old.predict(gb))

    model.set_proxy({"a": gs_a.proxy}, 0.5)
    with_proxy = model.predict(gb)
    assert not np.allclose(with_proxy, base)
    alone = np.array([model.predict([g])[0] for g in gb])
    np.testing.assert_allclose(with_proxy, alone, rtol=0, atol=1e-4)
    np.testing.assert_allclose(model.predict(gb[::-1]), with_proxy[::-1], rtol=0, atol=1e-4)
    # graphs without the score fall back to the GNN, without changing the others
    bare = [ComputationGraph(nodes=g.nodes, edges=g.edges, name=g.name) for g in gb[:3]]
    with pytest.warns(UserWarning, match="3 of 10 graphs carry no NASWOT score"):
        mixed = model.predict(bare + gb[3:])
    np.testing.assert_allclose(mixed[:3], base[:3], rtol=0, atol=1e-4)
    np.testing.assert_allclose(mixed[3:], with_proxy[3:], rtol=0, atol=1e-4)
    # w = 1: the ranking is the proxy's; (module, input) pairs get the score computed on the fly
    model.set_proxy({"a": gs_a.proxy}, 1.0)
    p1 = model.predict(gb)
    assert np.array_equal(np.argsort(p1), np.argsort([g.proxies[KEY] for g in gb]))
    m = _cnn(8, 2, seed=5).eval()
    x = torch.zeros(1, 3, 8, 8)
    assert model.predict([(m, x)])[0] == pytest.approx(
        model.predict([ComputationGraph.from_module(m, x, proxies=True)])[0])
    model.save(tmp_path / "new.pt")
    new = GENNAPE.load(tmp_path / "new.pt", device="cpu")
    assert new.cfg.proxy_weight == 1.0 and new.proxy_scale == pytest.approx(model.proxy_scale)
    np.testing.assert_allclose(new.predict(gb), p1, atol=0.2)
    with pytest.raises(ValueError):
        model.set_proxy({"a": gs_a.proxy}, 1.5)


def test_fine_tune_proxy_option_cv_weight_and_errors():
    pytest.importorskip("torch_geometric")
    import copy

    from seqlab.nape import GENNAPE

    ga, ya = _family(20, 0, [4, 8, 16])
    gb, yb = _family(20, 1, [6, 12])
    model = GENNAPE(device="cpu", ensemble=1, epochs=1, pretrain_epochs=1, batch_size=16, hidden=16, layers=1,
                    clusters=2).fit({"a": (nd.GraphSet.from_graphs(ga), ya)}, progress=False)
    model.set_proxy({"a": nd.GraphSet.from_graphs(ga).proxy}, 0.2)
    consts = (model.proxy_ref, model.proxy_scale)
    torch.manual_seed(7)
    kept = copy.deepcopy(model).fine_tune(gb, yb, n=12, epochs=2, seed=0)  # default: the term as it was
    torch.manual_seed(7)
    assert kept.cfg.proxy_weight == 0.2 and (kept.proxy_ref, kept.proxy_scale) == consts
    cv = copy.deepcopy(model).fine_tune(gb, yb, n=12, epochs=2, seed=0, proxy="cv")
    picked = np.random.default_rng(0).choice(20, size=12, replace=False)
    nw = np.array([gb[i].proxies[KEY] for i in picked])
    assert cv.cfg.proxy_weight in [round(0.1 * i, 1) for i in range(11)]
    assert cv.proxy_ref == pytest.approx(nw.mean()) and cv.proxy_scale == pytest.approx(nw.std())
    info = cv.proxy_cv
    assert info["w_max"] == info["grid"][int(np.argmax(info["curve"]))]
    assert info["se"] > 0 and info["w_1se"] <= info["w_max"]
    # "cv" = the one-SE rule: the smallest w within one SE of the maximum; "cv-max": the maximum; same cross-fitting
    assert cv.cfg.proxy_weight == info["w_1se"]
    for mode, key in (("cv-1se", "w_1se"), ("cv-max", "w_max")):
        torch.manual_seed(7)
        other = copy.deepcopy(model).fine_tune(gb, yb, n=12, epochs=2, seed=0, proxy=mode)
        assert other.proxy_cv == info and other.cfg.proxy_weight == info[key]
    c = np.array(info["curve"])
    assert c[info["grid"].index(info["w_1se"])] >= c.max() - info["se"]
    assert all(c[i] < c.max() - info["se"] for i in range(info["grid"].index(info["w_1se"])))
    # the same samples and seed give the same fine-tuned GNN with or without the choice of w
    cv.cfg.proxy_weight, kept.cfg.proxy_weight = 0.0, 0.0
    np.testing.assert_allclose(cv.predict(ga), kept.predict(ga), rtol=0, atol=1e-6)
    fixed = copy.deepcopy(model).fine_tune(gb, yb, n=12, epochs=2, seed=0, proxy=1.0)
    p = fixed.predict(ga)  # w = 1: the proxy's ranking, each graph on its own
    assert np.array_equal(np.argsort(p), np.argsort([g.proxies[KEY] for g in ga]))
    np.testing.assert_allclose([fixed.predict([g])[0] for g in ga], p, rtol=0, atol=1e-4)
    bare = [ComputationGraph(nodes=g.nodes, edges=g.edges, name=g.name) for g in gb]
    with pytest.raises(ValueError, match="NASWOT score of every sample"):
        copy.deepcopy(model).fine_tune(bare, yb, n=12, epochs=1, proxy="cv")
    with pytest.raises(ValueError, match="proxy"):
        copy.deepcopy(model).fine_tune(gb, yb, n=12, epochs=1, proxy="auto")
    with pytest.raises(ValueError, match="proxy weight"):
        copy.deepcopy(model).fine_tune(gb, yb, n=12, epochs=1, proxy=1.5)
    with pytest.raises(ValueError, match="at least 10"):
        copy.deepcopy(model).fine_tune(gb, yb, n=6, epochs=1, proxy="cv")


def test_select_proxy_weight_follows_the_proxy_and_validates_input():
    pytest.importorskip("torch_geometric")
    from seqlab.nape.predictor import select_proxy_weight

    torch.manual_seed(0)
    fams = {}
    for name, seed, widths in (("a", 0, [4, 8, 16]), ("b", 1, [6, 12]), ("c", 2, [5, 10, 20])):
        graphs, acc = _family(16, seed, widths)
        fams[name] = (nd.GraphSet.from_graphs(graphs), acc)
    cfg = dict(device="cpu", min_val=10, ensemble=1, epochs=1, pretrain_epochs=0, batch_size=16, hidden=8,
               layers=1, clusters=1)
    # a proxy that is the label itself: every validation curve rises to w = 1
    for gs, acc in fams.values():
        gs.proxy = acc + 1000.0
    w, info = select_proxy_weight(fams, **cfg)
    assert w == 1.0 and info["grid"][-1] == 1.0 and set(info["per_family"]) == {"a", "b", "c"}
    assert info["mean"][-1] == pytest.approx(1.0) and info["mean"][-1] > info["mean"][0]
    # the reversed label: the proxy only hurts, so it is switched off
    for gs, acc in fams.values():
        gs.proxy = 1000.0 - acc
    w, info = select_proxy_weight(fams, **cfg)
    assert w < 0.5 and info["mean"][-1] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="at least 2 training families"):
        select_proxy_weight({"a": fams["a"]}, **cfg)
    fams["b"][0].proxy = None
    with pytest.raises(ValueError, match="'b'"):
        select_proxy_weight(fams, **cfg)


def test_pink_synthetic_batch_has_a_1_over_f_spectrum_and_unit_variance():
    x = proxies.synthetic_batch(torch.zeros(1, 3, 32, 32), 16, seed=3, noise="pink")
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert torch.allclose(x.mean(dim=(2, 3)), torch.zeros(16, 3), atol=1e-5)
    assert torch.allclose(x.std(dim=(2, 3)), torch.ones(16, 3), atol=1e-4)
    assert torch.equal(x, proxies.synthetic_batch(torch.zeros(1, 3, 32, 32), 16, seed=3, noise="pink"))
    power = torch.fft.rfft2(x.double()).abs().pow(2).mean(dim=(0, 1))  # (32, 17)
    low, high = power[1:3, 1:3].mean(), power[12:16, 12:16].mean()
    assert low > 20 * high  # white noise would give equal power at every frequency
    white = proxies.synthetic_batch(torch.zeros(1, 3, 32, 32), 16, seed=3)
    wp = torch.fft.rfft2(white.double()).abs().pow(2).mean(dim=(0, 1))
    assert wp[1:3, 1:3].mean() < 3 * wp[12:16, 12:16].mean()
    # inputs without two spatial axes have no spectrum to shape: the Gaussian batch
    assert torch.equal(proxies.synthetic_batch(torch.zeros(1, 20), 4, seed=1, noise="pink"),
                       proxies.synthetic_batch(torch.zeros(1, 20), 4, seed=1))
    with pytest.raises(ValueError, match="noise"):
        proxies.synthetic_batch(torch.zeros(1, 20), 4, seed=1, noise="brown")
    assert proxies.naswot_key("gaussian") == "naswot" and proxies.naswot_key("pink") == "naswot_pink"


def test_predictor_reads_the_score_of_its_own_noise(tmp_path):
    pytest.importorskip("torch_geometric")
    from seqlab.nape import GENNAPE

    ga, ya = _family(12, 0, [4, 8])
    gs = nd.GraphSet.from_graphs(ga)
    model = GENNAPE(device="cpu", ensemble=1, epochs=1, pretrain_epochs=1, batch_size=16, hidden=16, layers=1,
                    clusters=2).fit({"a": (gs, ya)}, progress=False)
    assert model.cfg.proxy_noise == PROXY_NOISE  # a new model matches from_module's default
    model.set_proxy({"a": gs.proxy}, 0.5)
    model.save(tmp_path / "m.pt")
    st = torch.load(tmp_path / "m.pt", weights_only=True)
    st["config"].pop("proxy_noise")  # a checkpoint from before run 10: its constants are Gaussian-noise ones
    torch.save(st, tmp_path / "old.pt")
    old = GENNAPE.load(tmp_path / "old.pt", device="cpu")
    assert old.cfg.proxy_noise == "gaussian"
    with pytest.warns(UserWarning, match="calibrated with 'gaussian'"):
        alone = old.predict(ga)  # the graphs carry only the pink score: the graph alone, not a mixed-up score
    old.cfg.proxy_weight = 0.0
    np.testing.assert_allclose(alone, old.predict(ga), rtol=0, atol=1e-9)
