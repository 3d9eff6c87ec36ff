#!/usr/bin/env python3
"""Reference fixtures for the model engine: tiny random HF models + HF outputs.

Builds four tiny random causal LMs with Hugging Face transformers (float32,
eager attention), saves them in the Hugging Face on-disk layout under
tests/fixtures/models/<name>/, and records what transformers / PEFT compute
for them (logits, greedy continuations, a LoRA adapter with its logits and
gradients, a left-padded batch).  The Rust tests read these files; they never
run Python.

Usage (needs torch, transformers, peft, safetensors; CPU is enough):

    python3 -m venv /tmp/venv-ref
    /tmp/venv-ref/bin/pip install torch transformers peft safetensors
    /tmp/venv-ref/bin/python scripts/make_model_fixtures.py

Deterministic: every random draw comes from a seeded torch.Generator, torch
runs single-threaded, and rerunning rewrites byte-identical files with the
same library versions.  See tests/fixtures/models/README.md for the format.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import peft
import safetensors
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    Gemma3Config,
    Gemma3ForCausalLM,
    Gemma3ForConditionalGeneration,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
    SiglipVisionConfig,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "models"

VOCAB = 256
PAD_ID = 0
PROMPT_LENS = [12, 40, 23]
# Prompt ids are drawn from [PROMPT_LO, PROMPT_HI): away from pad/bos/eos (0..2)
# and from the gemma3 multimodal boi/eoi/image ids (253..255).
PROMPT_LO, PROMPT_HI = 3, 250
PROMPT_SEED = 20250101
NEW_TOKENS = 16
FULL_LOGITS_PROMPT = 1  # the 40-token prompt: logits stored for every position
LAST_POSITIONS = 4  # other prompts: only the last 4 positions
LORA_R, LORA_ALPHA, LORA_B_STD = 4, 8, 0.05
BATCH_PROMPTS = [1, 2]

DECODER_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PHI3_TARGETS = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]


# ----------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------


def r7(x: float) -> float:
    """Round to 7 significant digits."""
    x = float(x)
    if x == 0.0 or not math.isfinite(x):
        return x
    return float(f"{x:.7g}")


def flat7(t: torch.Tensor) -> list[float]:
    return [r7(v) for v in t.detach().to(torch.float64).reshape(-1).tolist()]


def dump_json(obj, path: Path) -> None:
    """JSON with indentation for structure but numeric lists on one line."""

    def enc(o, ind):
        pad = " " * ind
        if isinstance(o, dict):
            if not o:
                return "{}"
            items = [f'{pad}  {json.dumps(k)}: {enc(v, ind + 2)}' for k, v in o.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(o, list):
            if all(not isinstance(v, (dict, list)) for v in o):
                return "[" + ",".join(json.dumps(v) for v in o) + "]"
            items = [f"{pad}  {enc(v, ind + 2)}" for v in o]
            return "[\n" + ",\n".join(items) + "\n" + pad + "]"
        return json.dumps(o)

    path.write_text(enc(obj, 0) + "\n")


def versions() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "safetensors": safetensors.__version__,
    }


def make_prompts() -> list[list[int]]:
    g = torch.Generator().manual_seed(PROMPT_SEED)
    return [torch.randint(PROMPT_LO, PROMPT_HI, (n,), generator=g).tolist() for n in PROMPT_LENS]


def randomise(model: torch.nn.Module, seed: int, init: dict) -> None:
    """Every parameter random (from `seed`): embeddings N(0, embed_std), other
    matrices N(0, linear_std); RMSNorm weights 1 + norm_std*N(0,1), or, for
    Gemma (whose norm multiplies by 1 + w), norm_std*N(0,1) with q_norm/k_norm
    at qk_norm_std.  The scales are chosen so that greedy continuations are not
    just one repeated token and top-1/top-2 gaps stay well above f32 noise."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied lm_head appears once
            if "norm" in name:
                std = init["norm_std"]
                if "q_norm" in name or "k_norm" in name:
                    std = init.get("qk_norm_std", std)
                noise = std * torch.randn(p.shape, generator=g)
                p.copy_(noise if init["gemma_norms"] else 1.0 + noise)
            elif "embed_tokens" in name:
                p.copy_(init["embed_std"] * torch.randn(p.shape, generator=g))
            else:
                p.copy_(init["linear_std"] * torch.randn(p.shape, generator=g))


@torch.no_grad()
def logits_of(model, ids: list[int]) -> torch.Tensor:
    out = model(input_ids=torch.tensor([ids]), use_cache=False)
    return out.logits[0].float()


@torch.no_grad()
def greedy_nocache(model, ids: list[int], n: int) -> tuple[list[int], float, list[float]]:
    """Reference greedy decode by full recomputation at every step (no KV
    cache, no eos).  Returns the new tokens, the smallest top-1/top-2 gap and
    the logit of each chosen token."""
    seq = list(ids)
    new, margin, chosen = [], float("inf"), []
    for _ in range(n):
        last = logits_of(model, seq)[-1]
        top = torch.topk(last, 2).values
        margin = min(margin, float(top[0] - top[1]))
        nxt = int(torch.argmax(last))
        chosen.append(float(last[nxt]))
        new.append(nxt)
        seq.append(nxt)
    return new, margin, chosen


@torch.no_grad()
def greedy_generate(model, batch_ids: list[list[int]]) -> list[list[int]]:
    """HF generate: greedy, KV cache, eos disabled, left padding for batches."""
    maxlen = max(len(x) for x in batch_ids)
    ids = torch.full((len(batch_ids), maxlen), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(batch_ids), maxlen), dtype=torch.long)
    for i, x in enumerate(batch_ids):
        ids[i, maxlen - len(x):] = torch.tensor(x)
        mask[i, maxlen - len(x):] = 1
    gc = model.generation_config
    saved = (gc.eos_token_id, gc.pad_token_id)
    gc.eos_token_id = None
    gc.pad_token_id = PAD_ID
    try:
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            use_cache=True,
        )
    finally:
        gc.eos_token_id, gc.pad_token_id = saved
    assert out.shape[1] == maxlen + NEW_TOKENS, out.shape
    return [row[maxlen:].tolist() for row in out]


@torch.no_grad()
def batch_prefill_last_logits(model, batch_ids: list[list[int]]) -> torch.Tensor:
    """Logits at the last position of each row of the left-padded batch, with
    position_ids computed from the mask exactly as generate() does."""
    maxlen = max(len(x) for x in batch_ids)
    ids = torch.full((len(batch_ids), maxlen), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(batch_ids), maxlen), dtype=torch.long)
    for i, x in enumerate(batch_ids):
        ids[i, maxlen - len(x):] = torch.tensor(x)
        mask[i, maxlen - len(x):] = 1
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
    return out.logits[:, -1, :].float()


# ----------------------------------------------------------------------------
# configs: transformers 5 writes `rope_parameters`; the hub checkpoints the
# engine loads use the older flat keys (rope_theta / rope_scaling /
# rope_local_base_freq / sliding_window_pattern / torch_dtype).  config.json is
# written in that hub layout and verified to load back identically; the file
# transformers itself writes is kept as config.transformers5.json.
# ----------------------------------------------------------------------------


def hub_style(d: dict, model_type: str, keep_layer_types: bool) -> dict:
    d = dict(d)
    rp = d.pop("rope_parameters")
    if "dtype" in d:
        d["torch_dtype"] = d.pop("dtype")
    if model_type == "gemma3_text":
        full, local = rp["full_attention"], rp["sliding_attention"]
        d["rope_theta"] = full["rope_theta"]
        sc = {k: v for k, v in full.items() if k != "rope_theta"}
        d["rope_scaling"] = None if sc.get("rope_type") == "default" else sc
        assert local.get("rope_type", "default") == "default"
        d["rope_local_base_freq"] = local["rope_theta"]
        # transformers 5 writes a private `_sliding_window_pattern` (6 unless
        # given); the hub key is `sliding_window_pattern`, rebuilt here from
        # layer_types and checked to reproduce them.
        d.pop("_sliding_window_pattern", None)
        lt = d["layer_types"]
        period = lt.index("full_attention") + 1
        assert lt == [
            "sliding_attention" if (i + 1) % period else "full_attention" for i in range(len(lt))
        ]
        d["sliding_window_pattern"] = period
        if not keep_layer_types:
            del d["layer_types"]
        d.pop("use_bidirectional_attention", None)
    else:
        d["rope_theta"] = rp["rope_theta"]
        if rp.get("rope_type", "default") == "default":
            d["rope_scaling"] = None
        elif rp["rope_type"] == "longrope":
            # Phi-3 / Phi-4-mini layout: {"type": "longrope", "short_factor", "long_factor"}
            d["rope_scaling"] = {
                "long_factor": rp["long_factor"],
                "short_factor": rp["short_factor"],
                "type": "longrope",
            }
        else:
            raise ValueError(rp)
        if not keep_layer_types:
            d.pop("layer_types", None)
    return dict(sorted(d.items()))


def write_configs(model, out_dir: Path, keep_layer_types: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model.config.save_pretrained(tmp)
        v5 = json.loads((Path(tmp) / "config.json").read_text())
    dump_json(v5, out_dir / "config.transformers5.json")
    dump_json(hub_style(v5, v5["model_type"], keep_layer_types), out_dir / "config.json")


def check_config_roundtrip(cfg, out_dir: Path) -> None:
    for fname in ["config.json", "config.transformers5.json"]:
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(out_dir / fname, Path(tmp) / "config.json")
            back = AutoConfig.from_pretrained(tmp)
        assert back.rope_parameters == cfg.rope_parameters, (fname, back.rope_parameters, cfg.rope_parameters)
        if hasattr(cfg, "layer_types"):
            assert back.layer_types == cfg.layer_types, (fname, back.layer_types)
        for k in ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                  "tie_word_embeddings", "rms_norm_eps", "vocab_size", "intermediate_size"]:
            assert getattr(back, k) == getattr(cfg, k), (fname, k)


# ----------------------------------------------------------------------------
# per-architecture definitions
# ----------------------------------------------------------------------------

COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    pad_token_id=PAD_ID,
    attn_implementation="eager",
)


def build_qwen3():
    cfg = Qwen3Config(
        **COMMON,
        num_hidden_layers=2,
        head_dim=16,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
    )
    return cfg, Qwen3ForCausalLM, DECODER_TARGETS, False


def build_gemma3():
    cfg = Gemma3TextConfig(
        **COMMON,
        num_hidden_layers=3,
        head_dim=16,
        max_position_embeddings=256,
        sliding_window=8,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        rope_theta=1_000_000.0,
        rope_scaling={"rope_type": "linear", "factor": 8.0},
        rope_local_base_freq=10000.0,
        query_pre_attn_scalar=24,
        hidden_activation="gelu_pytorch_tanh",
        final_logit_softcapping=None,
        attn_logit_softcapping=None,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=2,
        eos_token_id=1,
    )
    return cfg, Gemma3ForCausalLM, DECODER_TARGETS, True


def build_phi3():
    cfg = Phi3Config(
        **COMMON,
        num_hidden_layers=2,
        partial_rotary_factor=0.75,
        rope_theta=10000.0,
        rope_scaling={
            "type": "longrope",
            "short_factor": [1.0, 1.1, 1.2, 1.3, 1.4, 1.5],
            "long_factor": [2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        },
        original_max_position_embeddings=32,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
    )
    return cfg, Phi3ForCausalLM, PHI3_TARGETS, False


def build_llama():
    cfg = LlamaConfig(
        **COMMON,
        num_hidden_layers=2,
        rms_norm_eps=1e-5,
        rope_theta=100000.0,
        tie_word_embeddings=True,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
    )
    return cfg, LlamaForCausalLM, DECODER_TARGETS, False


DEFAULT_INIT = {"embed_std": 0.1, "linear_std": 0.25, "norm_std": 0.1, "gemma_norms": False}
GEMMA_INIT = {"embed_std": 0.05, "linear_std": 0.1, "norm_std": 0.3, "qk_norm_std": 1.0, "gemma_norms": True}

# name -> (builder, seed, init)
MODELS = {
    "qwen3": (build_qwen3, 1011, DEFAULT_INIT),
    "gemma3": (build_gemma3, 1012, GEMMA_INIT),
    "phi3": (build_phi3, 1003, DEFAULT_INIT),
    "llama": (build_llama, 1004, DEFAULT_INIT),
}


# ----------------------------------------------------------------------------
# main per-model routine
# ----------------------------------------------------------------------------


def logits_block(lg: torch.Tensor, positions: list[int]) -> dict:
    sel = lg[positions]
    return {"positions": positions, "shape": list(sel.shape), "data": flat7(sel)}


def make_model(name: str, prompts: list[list[int]]) -> tuple[torch.nn.Module, dict]:
    builder, seed, init = MODELS[name]
    cfg, cls, targets, is_gemma = builder()
    assert is_gemma == init["gemma_norms"]
    torch.manual_seed(seed)
    model = cls(cfg).float().eval()
    randomise(model, seed, init)

    out_dir = OUT / name
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    write_configs(model, out_dir, keep_layer_types=is_gemma)
    check_config_roundtrip(cfg, out_dir)

    # Reload from disk (hub-style config.json) and make sure nothing changed.
    reloaded = AutoModelForCausalLM.from_pretrained(
        out_dir, attn_implementation="eager", dtype=torch.float32
    ).eval()
    for ids in prompts:
        a, b = logits_of(model, ids), logits_of(reloaded, ids)
        assert torch.equal(a, b), (name, (a - b).abs().max())
    del reloaded

    ref: dict = {
        "model": name,
        "architecture": type(model).__name__,
        "generator": versions(),
        "dtype": "float32",
        "attn_implementation": "eager",
        "vocab_size": VOCAB,
        "pad_token_id": PAD_ID,
        "init": {"seed": seed, **init},
    }

    # a) single-prompt logits
    prompt_entries = []
    for i, ids in enumerate(prompts):
        lg = logits_of(model, ids)
        pos = list(range(len(ids))) if i == FULL_LOGITS_PROMPT else list(
            range(len(ids) - LAST_POSITIONS, len(ids))
        )
        prompt_entries.append({"input_ids": ids, "logits": logits_block(lg, pos)})
    ref["prompts"] = prompt_entries

    # b) greedy (HF generate with KV cache), cross-checked with full recompute
    greedy = []
    for ids in prompts:
        gen = greedy_generate(model, [ids])[0]
        ref_tokens, margin, chosen = greedy_nocache(model, ids, NEW_TOKENS)
        assert gen == ref_tokens, (name, gen, ref_tokens)
        greedy.append({
            "new_tokens": gen,
            "chosen_logits": [r7(x) for x in chosen],
            "min_top2_margin": r7(margin),
        })
    ref["greedy"] = {
        "max_new_tokens": NEW_TOKENS,
        "do_sample": False,
        "eos_token_id": None,
        "use_cache": True,
        "equals_full_recompute": True,
        "results": greedy,
    }

    # d) left-padded batch of prompts 1 and 2
    bids = [prompts[i] for i in BATCH_PROMPTS]
    bgen = greedy_generate(model, bids)
    blast = batch_prefill_last_logits(model, bids)
    maxlen = max(len(x) for x in bids)
    rows = []
    for r, (pi, ids) in enumerate(zip(BATCH_PROMPTS, bids)):
        single_last = logits_of(model, ids)[-1]
        rows.append(
            {
                "prompt_index": pi,
                "left_pad": maxlen - len(ids),
                "new_tokens": bgen[r],
                "equals_single": bgen[r] == greedy[pi]["new_tokens"],
                "prefill_last_logits": flat7(blast[r]),
                "prefill_last_max_abs_diff_vs_single": r7(float((blast[r] - single_last).abs().max())),
            }
        )
    ref["batch"] = {
        "padding_side": "left",
        "pad_token_id": PAD_ID,
        "position_ids": "attention_mask.cumsum(-1) - 1, pad positions set to 0",
        "max_new_tokens": NEW_TOKENS,
        "rows": rows,
    }

    # c) LoRA
    ref["lora"] = make_lora(name, model, cfg, targets, prompts[0], seed, out_dir)

    dump_json(ref, out_dir / "reference.json")
    return model, ref


def make_lora(name, model, cfg, targets, ids, seed, out_dir: Path) -> dict:
    torch.manual_seed(seed + 500)
    lcfg = LoraConfig(
        r=LORA_R,
        lora_alpha=LORA_ALPHA,
        lora_dropout=0.0,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    base = type(model)(cfg).float().eval()
    base.load_state_dict(model.state_dict())
    pm = get_peft_model(base, lcfg)
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if ".lora_A." in n:
                # same distribution as PEFT's default (kaiming_uniform a=sqrt(5)):
                # U(-1/sqrt(in), 1/sqrt(in)), but from our own generator
                bound = 1.0 / math.sqrt(p.shape[1])
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
            elif ".lora_B." in n:
                p.copy_(LORA_B_STD * torch.randn(p.shape, generator=g))
    pm.eval()

    adir = out_dir / "adapter"
    pm.save_pretrained(adir, safe_serialization=True)
    readme = adir / "README.md"
    if readme.exists():
        readme.unlink()
    # Make adapter_config.json deterministic and path-free.
    acfg = json.loads((adir / "adapter_config.json").read_text())
    acfg["base_model_name_or_path"] = f"tests/fixtures/models/{name}"
    if isinstance(acfg.get("target_modules"), list):  # PEFT writes a set: order is hash-random
        acfg["target_modules"] = sorted(acfg["target_modules"])
    dump_json(dict(sorted(acfg.items())), adir / "adapter_config.json")

    input_ids = torch.tensor([ids])
    with torch.no_grad():
        lg = pm(input_ids=input_ids, use_cache=False).logits[0].float()
        base_lg = logits_of(model, ids)
    assert (lg - base_lg).abs().max() > 1e-3, "adapter does not change the logits"

    pm.zero_grad(set_to_none=True)
    out = pm(input_ids=input_ids, labels=input_ids, use_cache=False)
    out.loss.backward()
    grads = {}
    for n, p in pm.named_parameters():
        if "lora_" in n:
            assert p.requires_grad and p.grad is not None, n
            key = n.replace(".default.", ".")
            grads[key] = p.grad.detach().float().contiguous().clone()
    saved = load_file(adir / "adapter_model.safetensors")
    assert set(saved) == set(grads), (sorted(set(saved) ^ set(grads)))
    save_file(dict(sorted(grads.items())), out_dir / "adapter_grads.safetensors", metadata={"format": "pt"})

    # Cross-check: loss by hand, and the saved adapter reproduces the logits.
    with torch.no_grad():
        manual = torch.nn.functional.cross_entropy(lg[:-1], input_ids[0, 1:])
    assert abs(float(manual) - float(out.loss.detach())) < 1e-5
    fresh = AutoModelForCausalLM.from_pretrained(out_dir, attn_implementation="eager", dtype=torch.float32)
    loaded = PeftModel.from_pretrained(fresh, adir).eval()
    with torch.no_grad():
        lg2 = loaded(input_ids=input_ids, use_cache=False).logits[0].float()
    assert torch.allclose(lg, lg2, atol=1e-6, rtol=0), (lg - lg2).abs().max()

    return {
        "r": LORA_R,
        "lora_alpha": LORA_ALPHA,
        "scaling": LORA_ALPHA / LORA_R,
        "target_modules": targets,
        "adapter_dir": "adapter",
        "grads_file": "adapter_grads.safetensors",
        "prompt_index": 0,
        "input_ids": ids,
        "logits": logits_block(lg, list(range(len(ids)))),
        "loss": r7(float(out.loss.detach())),
        "loss_definition": "mean cross-entropy of logits[:-1] vs input_ids[1:] (HF labels=input_ids)",
        "num_lora_tensors": len(grads),
    }


# ----------------------------------------------------------------------------
# gemma3 in the multimodal (Gemma3ForConditionalGeneration) checkpoint layout
# ----------------------------------------------------------------------------


def make_gemma3_mm(text_model: Gemma3ForCausalLM, prompts) -> None:
    tcfg = text_model.config
    vcfg = SiglipVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
        num_channels=3,
        vision_use_head=False,  # as in gemma-3-4b-it
    )
    cfg = Gemma3Config(
        text_config=tcfg.to_dict(),
        vision_config=vcfg.to_dict(),
        mm_tokens_per_image=4,
        boi_token_index=253,
        eoi_token_index=254,
        image_token_index=255,
        tie_word_embeddings=True,
    )
    cfg._attn_implementation = "eager"
    torch.manual_seed(1005)
    mm = Gemma3ForConditionalGeneration(cfg).float().eval()
    g = torch.Generator().manual_seed(1005)
    with torch.no_grad():
        for n, p in mm.model.vision_tower.named_parameters():
            p.copy_(0.08 * torch.randn(p.shape, generator=g))
        for n, p in mm.model.multi_modal_projector.named_parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
        mm.model.language_model.load_state_dict(text_model.model.state_dict())

    out_dir = OUT / "gemma3-mm-prefix"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)

    # On-disk names as in google/gemma-3-4b-it (transformers' "llava" key
    # mapping reverses to exactly these): language_model.model.*,
    # vision_tower.vision_model.*, multi_modal_projector.*; no lm_head (tied).
    tensors = {}
    for k, v in text_model.model.state_dict().items():
        tensors[f"language_model.model.{k}"] = v
    for k, v in mm.model.vision_tower.state_dict().items():
        # transformers 5 flattened SiglipVisionModel (no `.vision_model`); the
        # hub checkpoints still say vision_tower.vision_model.*
        k = k if k.startswith("vision_model.") else f"vision_model.{k}"
        tensors[f"vision_tower.{k}"] = v
    for k, v in mm.model.multi_modal_projector.state_dict().items():
        tensors[f"multi_modal_projector.{k}"] = v
    tensors = {k: v.detach().float().contiguous().clone() for k, v in sorted(tensors.items())}
    save_file(tensors, out_dir / "model.safetensors", metadata={"format": "pt"})

    mm.config.architectures = ["Gemma3ForConditionalGeneration"]
    with tempfile.TemporaryDirectory() as tmp:
        mm.config.save_pretrained(tmp)
        mm.generation_config.save_pretrained(tmp)
        v5 = json.loads((Path(tmp) / "config.json").read_text())
        shutil.copy(Path(tmp) / "generation_config.json", out_dir / "generation_config.json")
    dump_json(v5, out_dir / "config.transformers5.json")
    hub = {k: v for k, v in v5.items() if k not in ("text_config", "vision_config")}
    if "dtype" in hub:
        hub["torch_dtype"] = hub.pop("dtype")
    hub["architectures"] = ["Gemma3ForConditionalGeneration"]
    hub["text_config"] = hub_style(v5["text_config"], "gemma3_text", keep_layer_types=False)
    hub["text_config"].pop("architectures", None)
    hub["vision_config"] = {
        k: v for k, v in sorted(v5["vision_config"].items()) if k not in ("dtype", "torch_dtype")
    }
    dump_json(dict(sorted(hub.items())), out_dir / "config.json")

    # Verify: transformers loads our file with no missing / unexpected keys and
    # the logits equal the text-only model's.
    for fname in ["config.json", "config.transformers5.json"]:
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(out_dir / fname, Path(tmp) / "config.json")
            shutil.copy(out_dir / "model.safetensors", Path(tmp) / "model.safetensors")
            back, info = Gemma3ForConditionalGeneration.from_pretrained(
                tmp, attn_implementation="eager", dtype=torch.float32, output_loading_info=True
            )
        back.eval()
        assert back.config.text_config.layer_types == tcfg.layer_types
        assert back.config.text_config.rope_parameters == tcfg.rope_parameters
        bad = {k: v for k, v in info.items() if v}
        assert not bad, bad
        max_diff = 0.0
        for ids in prompts:
            a = logits_of(text_model, ids)
            b = logits_of(back, ids)
            max_diff = max(max_diff, float((a - b).abs().max()))
        assert max_diff < 1e-5, max_diff

    # What transformers 5 itself would write (for the report only).
    with tempfile.TemporaryDirectory() as tmp:
        back.save_pretrained(tmp, safe_serialization=True)
        native_keys = sorted(load_file(Path(tmp) / "model.safetensors").keys())

    dump_json(
        {
            "model": "gemma3-mm-prefix",
            "architecture": "Gemma3ForConditionalGeneration",
            "generator": versions(),
            "logits_same_as": "../gemma3/reference.json",
            "max_abs_diff_vs_gemma3_all_prompts": r7(max_diff),
            "text_key_prefix": "language_model.model.",
            "other_key_prefixes": ["vision_tower.vision_model.", "multi_modal_projector."],
            "has_lm_head": False,
            # what `save_pretrained` of transformers 5 writes for the same model
            "transformers5_save_pretrained_keys_sample": [
                k for k in native_keys
                if "layers.0.self_attn.q_proj.weight" in k or "embed_tokens" in k or k.endswith("mm_input_projection_weight")
            ],
        },
        out_dir / "reference.json",
    )


def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    prompts = make_prompts()
    OUT.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        model, ref = make_model(name, prompts)
        margins = [g["min_top2_margin"] for g in ref["greedy"]["results"]]
        eq = [r["equals_single"] for r in ref["batch"]["rows"]]
        print(f"{name}: greedy min margins {margins}, batch equals single {eq}, lora loss {ref['lora']['loss']}")
        if name == "gemma3":
            make_gemma3_mm(model, prompts)
            print("gemma3-mm-prefix: ok")
    print("versions:", versions())


if __name__ == "__main__":
    sys.exit(main())
