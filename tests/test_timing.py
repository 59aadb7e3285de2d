import torch

from seqlab.utils.timing import host_us


def test_host_us_counts_calls_and_syncs_only_outside_the_loop(monkeypatch):
    events = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: events.append("sync"))
    us = host_us(lambda: events.append("call"), n=7, warmup=3)
    assert us > 0
    assert events == ["call"] * 3 + ["sync"] + ["call"] * 7 + ["sync"]
