#!/usr/bin/env python3
"""PEFT in both directions, on the tiny HF fixture models (CPU, float32).

(a) bwb -> PEFT: tests/fixtures/peft/<arch>/adapter was trained and saved by bwb
    (`cargo test --test it write_peft_fixtures -- --ignored`). This script loads
    it with `PeftModel.from_pretrained` onto tests/fixtures/models/<arch>,
    checks that PEFT finds every tensor (no missing / unexpected keys, the
    scaling bwb wrote), and records PEFT's logits for prompt 0 of the fixture in
    tests/fixtures/peft/<arch>/peft_logits.safetensors. The Rust test
    `peft::bwb_trained_adapters_give_the_logits_peft_computes_with_them` asserts
    that bwb computes the same logits (within 1e-4) with the same files.
(b) PEFT -> bwb: tests/fixtures/models/<arch>/adapter was made by PEFT
    (scripts/make_model_fixtures.py); `model_reference::
    peft_adapters_give_peft_logits_and_gradients` checks bwb against it. This
    script re-checks that PEFT reproduces the stored reference logits for it.
(c) With --bwb PATH (a built bwb binary): `bwb export --merge` of each bwb
    adapter must load in transformers without PEFT and give PEFT's logits.

Usage (CI has no Python; the outputs are committed):

    /tmp/venv-ref/bin/python scripts/check_peft_roundtrip.py [--bwb target/debug/bwb]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "tests" / "fixtures" / "models"
PEFT = ROOT / "tests" / "fixtures" / "peft"
ARCHS = ["qwen3", "gemma3", "phi3", "llama"]
TOL = 1e-4


def base(arch: str):
    return AutoModelForCausalLM.from_pretrained(
        MODELS / arch, attn_implementation="eager", dtype=torch.float32
    ).eval()


def logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def check_loaded(model, adapter_dir: Path) -> None:
    """Every tensor in the file reached a LoRA module, with the same values."""
    want = load_file(adapter_dir / "adapter_model.safetensors")
    sd = model.state_dict()
    seen = 0
    for k, v in want.items():
        # PEFT's state-dict names carry the adapter name: …lora_A.default.weight
        key = k.replace(".lora_A.weight", ".lora_A.default.weight").replace(
            ".lora_B.weight", ".lora_B.default.weight"
        )
        if key not in sd:
            sys.exit(f"{adapter_dir}: PEFT has no parameter for {k}")
        if not torch.equal(sd[key], v):
            sys.exit(f"{adapter_dir}: PEFT loaded different values for {k}")
        seen += 1
    n_lora = sum(1 for k in sd if ".lora_" in k)
    if seen != n_lora:
        sys.exit(f"{adapter_dir}: file has {seen} tensors, PEFT made {n_lora} LoRA tensors")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bwb", type=Path, help="a built bwb binary: also check `bwb export --merge`")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    for arch in ARCHS:
        ref = json.loads((MODELS / arch / "reference.json").read_text())
        ids = ref["prompts"][0]["input_ids"]

        # (a) bwb -> PEFT
        adir = PEFT / arch / "adapter"
        cfg = json.loads((adir / "adapter_config.json").read_text())
        model = PeftModel.from_pretrained(base(arch), adir).eval()
        check_loaded(model, adir)
        lora_layer = next(m for m in model.modules() if isinstance(m, LoraLayer))
        want_scale = cfg["lora_alpha"] / (cfg["r"] ** 0.5 if cfg["use_rslora"] else cfg["r"])
        got_scale = lora_layer.scaling["default"]
        if abs(got_scale - want_scale) > 1e-12:
            sys.exit(f"{arch}: PEFT scaling {got_scale}, bwb's config implies {want_scale}")
        peft_logits = logits(model, ids)
        plain = logits(base(arch), ids)
        moved = (peft_logits - plain).abs().max().item()
        if moved < 1e-2:
            sys.exit(f"{arch}: the bwb adapter changes PEFT's logits by only {moved}")
        save_file(
            {"logits": peft_logits.contiguous(), "input_ids": torch.tensor(ids, dtype=torch.int64)},
            PEFT / arch / "peft_logits.safetensors",
            metadata={"format": "pt"},
        )

        # (b) PEFT -> bwb: PEFT reproduces its own stored reference.
        pmodel = PeftModel.from_pretrained(base(arch), MODELS / arch / "adapter").eval()
        block = ref["lora"]["logits"]
        got = logits(pmodel, ref["lora"]["input_ids"])
        want = torch.tensor(block["data"]).reshape(block["shape"])
        d = (got[block["positions"]] - want).abs().max().item()
        if d > TOL:
            sys.exit(f"{arch}: PEFT no longer reproduces reference.json lora logits ({d})")

        # (c) bwb's merged export loads in transformers and equals PEFT with the adapter.
        line = f"{arch}: bwb adapter in PEFT ok (moves logits {moved:.3f}); PEFT adapter reference ok"
        if args.bwb:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "merged"
                subprocess.run(
                    [str(args.bwb), "--root", str(ROOT), "export", "--model", str(MODELS / arch),
                     "--adapter", str(adir), "--merge", str(out)],
                    check=True, stdout=subprocess.DEVNULL,
                )
                merged = AutoModelForCausalLM.from_pretrained(
                    out, attn_implementation="eager", dtype=torch.float32
                ).eval()
                d = (logits(merged, ids) - peft_logits).abs().max().item()
                if d > TOL:
                    sys.exit(f"{arch}: bwb's merged export differs from PEFT by {d}")
                line += f"; merged export = PEFT within {d:.1e}"
        print(line)
    print(f"wrote {PEFT}/<arch>/peft_logits.safetensors")


if __name__ == "__main__":
    main()
