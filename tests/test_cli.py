"""The ``seqlab`` entry point: commands are registered and the demo's attention section passes."""

import pytest

from seqlab import cli
from seqlab.attention import demo as attention_demo
from seqlab.attention import use_backend


def test_top_level_commands_registered(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "bench", "s4", "nape"):
        assert command in out


def test_bench_attention_needs_gpu_on_cpu(capsys):
    assert cli.main(["bench", "attention", "--quick"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().out


def test_attention_demo_rows_pass():
    with use_backend("torch"):  # what `seqlab demo` runs on a CPU (the interpreter is for kernel tests)
        rows = attention_demo.run(device="cpu", quick=True)
    assert len(rows) == 2
    for row in rows:
        assert row["check"].endswith("ok"), row
        assert row["seqlab_ms"] > 0 and row["reference_ms"] > 0
