#!/usr/bin/env python3
"""Small random-weight Hugging Face checkpoints of the architectures realizar serves, and their
reference outputs from `transformers`.

Two modes:
  write-hf OUT_DIR [--model NAME]   numpy only (runs in CI): writes OUT_DIR/NAME/{config.json,
                                    model.safetensors, tokenizer.json, tokenizer_config.json}
  reference OUT_DIR                 needs torch + transformers (the GPU machine): loads each
                                    checkpoint written by write-hf, runs it in float64 and writes
                                    OUT_DIR/NAME.logits.f32 (float32 [n_prompt, vocab]) and
                                    OUT_DIR/NAME.json (prompt ids, 32 greedy tokens, shapes)

Weights come from splitmix64 (a counter-based hash), so CI regenerates exactly the checkpoint the
reference was computed on and only the small logits files are committed. Every weight is rounded
to a value exact in both float16 and bfloat16, so converting to F16/BF16 GGUF loses nothing.
The tokenizers are the real Qwen2 and LLaMA-2 ones cut down to their first 512 tokens (the merges
that stay inside that vocabulary), which keeps the logits files small.
"""
import argparse
import json
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKENIZERS = ROOT / "tests" / "data" / "tokenizers"
BASE_VOCAB = 512
PROMPT_LENGTH = 12
GREEDY_TOKENS = 32

MODELS = {
    # Qwen2: QKV bias, GQA 3:1, NeoX RoPE, tied embeddings (as the 0.5B/1.5B releases).
    "qwen2": dict(family="qwen2", arch="Qwen2ForCausalLM", hidden=96, layers=2, heads=6,
                  kv_heads=2, ffn=160, rope_theta=1000000.0, eps=1e-6, tied=True),
    # LLaMA: no biases, GQA 2:1, untied output (as TinyLlama).
    "llama": dict(family="llama2", arch="LlamaForCausalLM", hidden=64, layers=2, heads=4,
                  kv_heads=2, ffn=176, rope_theta=10000.0, eps=1e-5, tied=False),
    # phi-2: LayerNorm with bias, parallel residual, partial rotary (half the head), GELU MLP,
    # biases everywhere including the LM head.
    "phi2": dict(family="qwen2", arch="PhiForCausalLM", hidden=64, layers=2, heads=4,
                 kv_heads=4, ffn=256, rope_theta=10000.0, eps=1e-5, tied=False,
                 partial_rotary=0.5),
}


# ---- deterministic weights ------------------------------------------------------------------

MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def splitmix64(counters: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser of (counter * golden gamma): a 64-bit hash per counter."""
    with np.errstate(over="ignore"):
        z = counters * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def name_seed(name: str) -> np.uint64:
    """FNV-1a of the tensor name: each tensor gets its own stream."""
    h = 0xCBF29CE484222325
    for byte in name.encode():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return np.uint64(h)


def round_to_f16_and_bf16(x: np.ndarray) -> np.ndarray:
    """Rounds to 8 significant bits (bfloat16's precision) and flushes what float16 cannot hold
    as a normal number, so the value is exact in both formats."""
    x = x.astype(np.float32)
    bits = x.view(np.uint32)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
               & np.uint32(0xFFFF0000)).view(np.float32)
    rounded[np.abs(rounded) < 2.0 ** -14] = 0.0
    return rounded


def tensor_values(name: str, shape, center: float, spread: float) -> np.ndarray:
    """center + spread * U[-1, 1), from splitmix64 of (name seed + element index)."""
    count = int(np.prod(shape))
    counters = name_seed(name) + np.arange(count, dtype=np.uint64)
    uniform = (splitmix64(counters) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    values = center + spread * (2.0 * uniform - 1.0)
    return round_to_f16_and_bf16(values.reshape(shape))


def init_for(name: str, shape) -> np.ndarray:
    """Scales that keep activations O(1): matrices ~ 1/sqrt(fan_in), norms near 1. The final
    norm is large so the logits are peaked and greedy choices are never near-ties."""
    if name in ("model.norm.weight", "model.final_layernorm.weight"):
        return tensor_values(name, shape, 6.0, 0.5)
    if "norm" in name and name.endswith(".weight"):
        return tensor_values(name, shape, 1.0, 0.2)
    if name.endswith(".bias"):
        return tensor_values(name, shape, 0.0, 0.1)
    if "embed_tokens" in name or name.startswith("lm_head.weight"):
        return tensor_values(name, shape, 0.0, 1.0)
    fan_in = shape[-1]
    return tensor_values(name, shape, 0.0, np.sqrt(3.0 / fan_in))


# ---- checkpoint layout ----------------------------------------------------------------------

def head_dim(m):
    return m["hidden"] // m["heads"]


def parameter_shapes(m, vocab):
    """Hugging Face parameter names and shapes ([out, in] for linear layers)."""
    h, hd, f = m["hidden"], head_dim(m), m["ffn"]
    q, kv = m["heads"] * hd, m["kv_heads"] * hd
    shapes = {"model.embed_tokens.weight": (vocab, h)}
    phi = m["arch"] == "PhiForCausalLM"
    for i in range(m["layers"]):
        p = f"model.layers.{i}."
        shapes[p + "self_attn.q_proj.weight"] = (q, h)
        shapes[p + "self_attn.k_proj.weight"] = (kv, h)
        shapes[p + "self_attn.v_proj.weight"] = (kv, h)
        if m["arch"] != "LlamaForCausalLM":
            shapes[p + "self_attn.q_proj.bias"] = (q,)
            shapes[p + "self_attn.k_proj.bias"] = (kv,)
            shapes[p + "self_attn.v_proj.bias"] = (kv,)
        if phi:
            shapes[p + "self_attn.dense.weight"] = (h, q)
            shapes[p + "self_attn.dense.bias"] = (h,)
            shapes[p + "mlp.fc1.weight"] = (f, h)
            shapes[p + "mlp.fc1.bias"] = (f,)
            shapes[p + "mlp.fc2.weight"] = (h, f)
            shapes[p + "mlp.fc2.bias"] = (h,)
            shapes[p + "input_layernorm.weight"] = (h,)
            shapes[p + "input_layernorm.bias"] = (h,)
        else:
            shapes[p + "self_attn.o_proj.weight"] = (h, q)
            shapes[p + "mlp.gate_proj.weight"] = (f, h)
            shapes[p + "mlp.up_proj.weight"] = (f, h)
            shapes[p + "mlp.down_proj.weight"] = (h, f)
            shapes[p + "input_layernorm.weight"] = (h,)
            shapes[p + "post_attention_layernorm.weight"] = (h,)
    if phi:
        shapes["model.final_layernorm.weight"] = (h,)
        shapes["model.final_layernorm.bias"] = (h,)
        shapes["lm_head.weight"] = (vocab, h)
        shapes["lm_head.bias"] = (vocab,)
    else:
        shapes["model.norm.weight"] = (h,)
        if not m["tied"]:
            shapes["lm_head.weight"] = (vocab, h)
    return shapes


def hf_config(m, vocab, tokenizer_ids):
    common = dict(architectures=[m["arch"]], vocab_size=vocab, hidden_size=m["hidden"],
                  intermediate_size=m["ffn"], num_hidden_layers=m["layers"],
                  num_attention_heads=m["heads"], num_key_value_heads=m["kv_heads"],
                  max_position_embeddings=256, rope_theta=m["rope_theta"],
                  tie_word_embeddings=m["tied"], torch_dtype="float32",
                  bos_token_id=tokenizer_ids.get("bos"), eos_token_id=tokenizer_ids.get("eos"))
    if m["arch"] == "Qwen2ForCausalLM":
        return dict(common, model_type="qwen2", hidden_act="silu", rms_norm_eps=m["eps"],
                    use_sliding_window=False, sliding_window=None, attention_dropout=0.0)
    if m["arch"] == "LlamaForCausalLM":
        return dict(common, model_type="llama", hidden_act="silu", rms_norm_eps=m["eps"],
                    attention_bias=False, mlp_bias=False, head_dim=head_dim(m))
    return dict(common, model_type="phi", hidden_act="gelu_new", layer_norm_eps=m["eps"],
                partial_rotary_factor=m["partial_rotary"], qk_layernorm=False,
                resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0)


# ---- tokenizers cut down from the real ones -------------------------------------------------

def merge_parts(merge):
    return merge if isinstance(merge, list) else merge.split(" ", 1)


def small_tokenizer(family: str):
    """The real tokenizer.json with its vocabulary cut to ids < BASE_VOCAB and the merges that
    stay inside; added tokens renumbered after it. Returns (tokenizer_json, config_json, ids)."""
    source = json.loads((TOKENIZERS / family / "tokenizer.json").read_text())
    config = json.loads((TOKENIZERS / family / "tokenizer_config.json").read_text())
    model = source["model"]
    vocab = {tok: i for tok, i in model["vocab"].items() if i < BASE_VOCAB}
    if family == "llama2":
        # SentencePiece vocabularies list single characters last; keep printable ASCII so the
        # merges inside the cut vocabulary can apply.
        for char in ["\u2581"] + [chr(c) for c in range(33, 127)]:
            if char in model["vocab"] and char not in vocab:
                vocab[char] = len(vocab)
    merges = [mg for mg in model["merges"]
              if all(p in vocab for p in merge_parts(mg)) and "".join(merge_parts(mg)) in vocab]
    model["vocab"], model["merges"] = vocab, merges
    keep = {"qwen2": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            "llama2": ["<unk>", "<s>", "</s>"]}[family]
    added, next_id = [], len(vocab)
    for token in source["added_tokens"]:
        if token["content"] not in keep:
            continue
        if token["id"] >= next_id or token["content"] not in vocab:
            token = dict(token, id=next_id)
            next_id += 1
        added.append(token)
    source["added_tokens"] = added
    ids = {t["content"]: t["id"] for t in added}
    if family == "qwen2":
        source["post_processor"] = None
        config = {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                  "add_bos_token": False, "model_max_length": 256,
                  "tokenizer_class": "Qwen2Tokenizer"}
        special = {"eos": ids["<|im_end|>"]}
    else:
        config = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                  "add_bos_token": True, "add_eos_token": False, "model_max_length": 256,
                  "tokenizer_class": "LlamaTokenizer", "legacy": False}
        special = {"bos": ids["<s>"], "eos": ids["</s>"]}
    n_tokens = max(max(vocab.values()), max(ids.values())) + 1
    return source, config, special, n_tokens


# ---- modes ----------------------------------------------------------------------------------

def prompt_ids(name: str, vocab_tokens: int):
    counters = name_seed(name + ":prompt") + np.arange(PROMPT_LENGTH, dtype=np.uint64)
    return [int(v % np.uint64(vocab_tokens)) for v in splitmix64(counters)]


def write_hf(out_dir: pathlib.Path, name: str):
    from safetensors.numpy import save_file

    m = MODELS[name]
    tokenizer, tok_config, special, n_tokens = small_tokenizer(m["family"])
    vocab = (n_tokens + 7) // 8 * 8  # padded, as released checkpoints are
    target = out_dir / name
    target.mkdir(parents=True, exist_ok=True)
    tensors = {n: init_for(n, s) for n, s in parameter_shapes(m, vocab).items()}
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    (target / "config.json").write_text(json.dumps(hf_config(m, vocab, special), indent=1))
    (target / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    (target / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=1))
    return target, n_tokens


def m_arch(name):
    return MODELS[name]["arch"]


def reference(out_dir: pathlib.Path, checkpoints: pathlib.Path):
    import torch
    import transformers

    for name in MODELS:
        path, n_tokens = write_hf(checkpoints, name)
        model, info = transformers.AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float64, attn_implementation="eager", output_loading_info=True)
        problems = {k: v for k, v in info.items() if v}
        if problems:
            raise SystemExit(f"{name}: checkpoint does not match {m_arch(name)}: {problems}")
        model.eval()
        ids = prompt_ids(name, n_tokens)
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
            tokens, gaps = list(ids), []
            for _ in range(GREEDY_TOKENS):
                last = model(torch.tensor([tokens])).logits[0, -1]
                top2 = torch.topk(last, 2).values
                gaps.append(float(top2[0] - top2[1]))
                tokens.append(int(torch.argmax(last)))
        logits.to(torch.float32).cpu().numpy().tofile(out_dir / f"{name}.logits.f32")
        meta = dict(model=name, prompt=ids, greedy=tokens[len(ids):], vocab=logits.shape[1],
                    max_abs_logit=float(logits.abs().max()), min_greedy_gap=min(gaps),
                    transformers=transformers.__version__, torch=torch.__version__)
        (out_dir / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
        print(name, "vocab", logits.shape[1], "max|logit| %.2f" % meta["max_abs_logit"],
              "min greedy gap %.3f" % meta["min_greedy_gap"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["write-hf", "reference"])
    parser.add_argument("out_dir", type=pathlib.Path)
    parser.add_argument("--model", choices=sorted(MODELS))
    parser.add_argument("--checkpoints", type=pathlib.Path, default=pathlib.Path("/tmp/golden-hf"))
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.mode == "write-hf":
        for name in [args.model] if args.model else MODELS:
            write_hf(args.out_dir, name)
    else:
        reference(args.out_dir, args.checkpoints)


if __name__ == "__main__":
    sys.exit(main())
