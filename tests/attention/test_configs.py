"""Tile-config lookup: buckets, nearest-present fallback, user cache, overrides (no GPU needed)."""

import json

import pytest
import torch

from seqlab.attention import _configs as C


def test_buckets_by_distance_is_log_nearest_then_shorter():
    assert C.seqlen_bucket(512) == 512
    assert C.seqlen_bucket(3000) == 4096
    assert C.seqlen_bucket(1) == 512
    assert C.seqlen_bucket(10**6) == 16384
    order = C.buckets_by_distance(2048)
    assert order[0] == 2048 and set(order) == set(C.SEQLEN_BUCKETS)
    assert order.index(1024) < order.index(4096)  # equal log distance: the shorter first


def test_lookup_falls_back_to_the_nearest_bucket_present():
    table = {C.config_key("fwd", 128, torch.bfloat16, False, 4096): {"BLOCK_M": 1},
             C.config_key("fwd", 128, torch.bfloat16, False, 512): {"BLOCK_M": 2}}
    assert C._lookup(table, "fwd", 128, torch.bfloat16, False, 4096) == {"BLOCK_M": 1}
    assert C._lookup(table, "fwd", 128, torch.bfloat16, False, 8192) == {"BLOCK_M": 1}
    assert C._lookup(table, "fwd", 128, torch.bfloat16, False, 700) == {"BLOCK_M": 2}
    assert C._lookup(table, "fwd", 128, torch.bfloat16, True, 4096) is None  # masked is a separate key
    assert C._lookup(table, "fwd", 64, torch.bfloat16, False, 4096) is None


def test_config_key_buckets_head_dims_and_dtypes():
    assert C.config_key("dq", 96, torch.float16, True, 1000) == "dq|d128|16bit|masked|n1024"
    assert C.config_key("dq", 96, torch.bfloat16, True, 1000) == C.config_key("dq", 128, torch.float16, True, 1024)
    assert C.config_key("fwd", 64, torch.float32, False, 16384).split("|")[2] == "fp32"


def test_override_and_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLAB_CACHE_DIR", str(tmp_path))
    C._table.cache_clear()
    try:
        key = C.config_key("fwd", 64, torch.bfloat16, False, 1024)
        path = C.save_to_user_cache("cpu", {key: {"BLOCK_M": 16, "BLOCK_N": 16, "num_warps": 2, "num_stages": 1}})
        assert json.loads(path.read_text())["cpu"][key]["BLOCK_M"] == 16
        assert C.get_config("fwd", 64, torch.bfloat16, False, 1024)["BLOCK_M"] == 16
        C.set_override("fwd", {"BLOCK_M": 32, "BLOCK_N": 32, "num_warps": 4, "num_stages": 1})
        assert C.get_config("fwd", 64, torch.bfloat16, False, 1024)["BLOCK_M"] == 32
        C.set_override("fwd", None)
        # fp32 always takes the heuristic (IEEE dots need smaller tiles)
        assert C.get_config("fwd", 64, torch.float32, False, 1024) == C.heuristic("fwd", 64, torch.float32)
    finally:
        C.set_override("fwd", None)
        C._table.cache_clear()


def test_corrupt_user_cache_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLAB_CACHE_DIR", str(tmp_path))
    (tmp_path / "attention_configs.json").write_text("{not json")
    C._table.cache_clear()
    try:
        cfg = C.get_config("dkdv", 128, torch.bfloat16, True, 4096)
        assert set(cfg) == {"BLOCK_M", "BLOCK_N", "num_warps", "num_stages"}
    finally:
        C._table.cache_clear()


@pytest.mark.parametrize("kernel", ["fwd", "dkdv", "dq"])
def test_shipped_h100_table_covers_the_protocol_head_dims(kernel):
    table = json.loads((C._SHIPPED / "nvidia-h100-80gb-hbm3.json").read_text())["configs"]
    for d in (64, 128, 256):
        for masked in (False, True):
            for n in (512, 1024, 4096, 16384):
                cfg = table[C.config_key(kernel, d, torch.bfloat16, masked, n)]
                assert set(cfg) == {"BLOCK_M", "BLOCK_N", "num_warps", "num_stages"}
            # buckets without an entry of their own (2048, 8192) resolve to a tuned neighbour
            for n in C.SEQLEN_BUCKETS:
                assert C._lookup(table, kernel, d, torch.bfloat16, masked, n) is not None
