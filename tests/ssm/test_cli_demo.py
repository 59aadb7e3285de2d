"""Smoke tests of the S4 demo rows, CLI registration and the benchmark driver (tiny CPU sizes)."""

import argparse
import json

import pytest

from seqlab.ssm import bench, cli, demo


def test_demo_rows_pass():
    rows = demo.run(device="cpu", quick=True)
    assert len(rows) >= 3
    for r in rows:
        assert set(r) >= {"system", "case", "check", "seqlab_ms", "reference_ms", "speedup"}
        assert r["system"] == "S4" and r["check"].endswith("ok"), r


def test_cli_registers_commands():
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["s4", "bench", "--quick", "--sections", "layer", "--device", "cpu"])
    assert args.quick and args.sections == ["layer"] and args.func is cli._bench
    args = parser.parse_args(["s4", "generate", "--tokens", "5", "--layers", "1"])
    assert args.tokens == 5 and args.func is cli._generate
    with pytest.raises(SystemExit):
        parser.parse_args(["s4", "bench", "--sections", "nope"])


def test_generate_command_runs(capsys):
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["s4", "generate", "--device", "cpu", "--d-model", "8", "--d-state", "8",
                              "--layers", "1", "--context", "16", "--tokens", "4", "--vocab", "11"])
    assert args.func(args) == 0
    assert "tokens/s" in capsys.readouterr().out


def test_bench_quick_writes_json(tmp_path):
    out = tmp_path / "s4.json"
    res = bench.run_all("cpu", quick=True, sections=("layer", "generation"), out_json=str(out),
                        show_progress=False)
    data = json.loads(out.read_text())
    assert data["env"]["torch"] and "date" in data["env"]
    gen = [r for r in data["rows"] if r["section"] == "generation"]
    assert gen and all(r["status"] == "ok" for r in gen)
    # step mode continues the convolutional prefill: its logits match a full forward
    assert all(r["step_vs_conv_rel_err"] < 1e-4 for r in gen)
    assert any("layer" in line for line in bench.summary_lines(res))


def test_table3_models_are_parameter_matched():
    models, _ = bench._models(H=32, n_layers=2, N=8, vocab=17, attn_available=False)
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    s4 = counts.pop("S4")
    for n in counts.values():
        assert abs(n - s4) / s4 < 0.01
