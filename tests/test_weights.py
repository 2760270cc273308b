"""QuantTensor validation and the memory plan (of the default model and of synthetic ones)."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from ggufref.config import ModelConfig
from ggufref.gguf_file import memory_plan, open_gguf
from ggufref.model.base import Model
from ggufref.model_files import resolve_model
from ggufref.testing.models import OMITTABLE_KEYS, TinyShape, write_model
from ggufref.weights import MemoryPlan, QuantTensor, kv_cache_bytes, tensor_group


def test_quant_tensor_checks_row_length_and_bytes() -> None:
    QuantTensor(T.Q4_K, (2, 256), np.zeros((2, 144), np.uint8))
    with pytest.raises(ValueError, match="row length 100 is not a multiple of 256"):
        QuantTensor(T.Q4_K, (2, 100), np.zeros((2, 144), np.uint8))
    with pytest.raises(ValueError, match=r"expected uint8 \(2, 144\)"):
        QuantTensor(T.Q4_K, (2, 256), np.zeros((2, 143), np.uint8))


def test_tensor_groups() -> None:
    assert tensor_group("token_embd.weight") == "embeddings"
    assert tensor_group("blk.3.attn_q.weight") == "attention"
    assert tensor_group("blk.3.attn_q_norm.weight") == "norms"
    assert tensor_group("blk.0.ffn_down.weight") == "ffn"
    assert tensor_group("output.weight") == "output"


def test_memory_plan_by_hand() -> None:
    plan = MemoryPlan.build(
        {"token_embd.weight": (34, 32), "blk.0.ffn_up.weight": (144, 256)},
        n_layer=2,
        n_head_kv=1,
        head_dim=4,
        head_dim_v=4,
        n_ctx=10,
    )
    assert plan.stored_total == 34 + 144
    assert plan.fp32_total == 4 * (32 + 256)
    assert plan.kv_cache_bytes == 4 * 2 * 1 * (4 + 4) * 10  # f32 * layers * heads * (k+v) * ctx


def test_default_model_plan_resident_total_is_within_5_percent_of_the_file() -> None:
    f = open_gguf(resolve_model(None, progress=False))
    plan = memory_plan(f, 1024)
    assert abs(plan.stored_total - f.size) / f.size < 0.05
    assert plan.fp32_total > 4 * plan.stored_total  # ~1 GiB of FP32 vs ~235 MiB kept quantized
    groups = {g.group: g for g in plan.groups}
    assert groups["embeddings"].stored_bytes == 262144 * 640 // 32 * 34  # Q8_0 token_embd
    # The plan's formula against the cache the engine actually allocates (its arrays' sizes).
    assert plan.kv_cache_bytes == Model(f, n_ctx=1024).cache.nbytes


@pytest.mark.parametrize("absent", [(k,) for k in OMITTABLE_KEYS] + [OMITTABLE_KEYS])
def test_memory_plan_derives_absent_keys_as_the_config_does(tmp_path, absent) -> None:
    """A file without head_count_kv / key_length / value_length: the plan's KV cache has the
    dimensions ModelConfig derives, and the size the engine allocates."""
    # what the absent keys mean for n_embd 256 and 4 heads: 4 KV heads, 64 wide for K and V
    shape = TinyShape(n_embd=256, n_head=4, n_head_kv=4, head_dim=64)
    f = open_gguf(write_model(tmp_path / "m.gguf", "llama", shape=shape, without=absent))
    assert not any(f.arch_key(k) in f for k in absent)
    cfg = ModelConfig.from_gguf(f)
    assert (cfg.n_head_kv, cfg.head_dim, cfg.head_dim_v) == (4, 64, 64)
    plan = memory_plan(f, 32)
    dims = (cfg.n_layer, cfg.n_head_kv, cfg.head_dim, cfg.head_dim_v, 32)
    assert plan.kv_cache_bytes == kv_cache_bytes(*dims)
    assert plan.kv_cache_bytes == Model(f, n_ctx=32).cache.nbytes


def test_engine_refuses_a_cache_one_byte_larger_than_available(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """check_kv_memory uses the same formula as the plan: need == kv_cache_bytes exactly."""
    from ggufref.config import ModelConfig
    from ggufref.errors import ModelError
    from ggufref.model import base

    f = open_gguf(resolve_model(None, progress=False))
    cfg = ModelConfig.from_gguf(f)
    need = memory_plan(f, 512).kv_cache_bytes
    monkeypatch.setattr(base, "available_memory", lambda: need)
    base.check_kv_memory(cfg, 512)  # exactly enough: accepted
    monkeypatch.setattr(base, "available_memory", lambda: need - 1)
    with pytest.raises(ModelError, match="512 positions"):
        base.check_kv_memory(cfg, 512)
