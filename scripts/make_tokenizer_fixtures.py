#!/usr/bin/env python3
"""Reference token ids for the GGUF tokenizer rebuild (src/model/tokenizer.rs).

Writes tests/fixtures/tokenizer/smollm2.json: for ~25 strings, the ids HF produces for
HuggingFaceTB/SmolLM2-135M-Instruct, plus its special ids and vocabulary size. The
integration test tests/it/gguf_tokenizer.rs rebuilds the tokenizer from the GGUF metadata
and must give the same ids and decode each string back exactly.

Two references are recorded for each string:

* `ids` -- the model's own tokenizer.json on the hub: byte-level BPE whose pre-tokenizer is
  Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False,
  trim_offsets=True, use_regex=True)] (llama.cpp calls this `tokenizer.ggml.pre = smollm`).
  The hub is unreachable here, so it is rebuilt from transformers' GGUF tokenizer (same
  vocabulary, merges and added tokens) with that pre-tokenizer put back. This is what the
  model was trained with and what the Rust code must match.
* `transformers_gguf_ids` -- `AutoTokenizer.from_pretrained(dir, gguf_file=...)` as is.
  transformers maps `pre = smollm` to plain ByteLevel and so drops the Digits step. The
  vocabulary has only single-digit number tokens, so this differs only where a space
  precedes a non-ASCII numeric character (" ²"); `differs_from_transformers_gguf` marks those.

How to rerun (needs the GGUF at ../shared/models/...; torch only because transformers'
GGUF reader imports it):

    python3 -m venv /tmp/venv-tok
    /tmp/venv-tok/bin/pip install transformers gguf sentencepiece torch
    /tmp/venv-tok/bin/python scripts/make_tokenizer_fixtures.py

With llama-cpp-python installed too, `llama_cpp_check` records whether llama.cpp's own
tokenizer gives the same `ids` (null when it is not installed).

Output is deterministic for given transformers / tokenizers versions (both recorded).
"""

import json
import sys
from pathlib import Path

import tokenizers
import transformers
from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
GGUF_DIR = ROOT.parent / "shared" / "models" / "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = ROOT / "tests" / "fixtures" / "tokenizer" / "smollm2.json"

TEXTS = [
    "",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "trailing spaces   ",
    "a  b   c    d     e",
    "12345",
    "Pi is 3.14, e is 2.71828; 1,000,000 people in 2024.",
    "x1 = 42 + y2 * 0.5e-3",
    "def add(a, b):\n    return a + b\n\n\nclass Foo:\n\tdef bar(self):\n\t\tpass\n",
    "line one\n\nline two\r\nline three\n\n\n",
    "I love 🦀 and 🎉! 👩‍💻 works too.",
    "你好，世界。日本語のテキスト。한국어 텍스트.",
    "Café naïve résumé über façade Ångström",
    "I'm sure you're right, we'll see; they'd say it's fine, don't worry.",
    '{"label": "positive", "score": 0.98, "tags": ["a", "b"]}',
    "See https://example.com/path?q=1&r=two#frag or mail me@example.org.",
    "<|im_start|>user\nHi<|im_end|>\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|endoftext|>text<file_sep>more<empty_output>",
    "not special: <|im_start <| im_end |> <im_end>",
    "superscript x² and half ½ and Arabic ٣٤ digits",
    " ² ½ ٣٤",
    "non\u00a0breaking and zero\u200bwidth and tab\tend",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
]


def hub_tokenizer(backend: Tokenizer) -> Tokenizer:
    """The hub tokenizer.json's pipeline around the GGUF's vocabulary, merges and added tokens."""
    tok = Tokenizer.from_str(backend.to_str())
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    return tok


def llama_cpp_check(gguf: Path, cases: list) -> str | None:
    """Optional third opinion: llama.cpp's own tokenizer (`pip install llama-cpp-python`,
    which compiles llama.cpp: minutes). Returns a one-line verdict, or None when not installed."""
    try:
        import llama_cpp
    except ImportError:
        return None
    model = llama_cpp.Llama(str(gguf), vocab_only=True, verbose=False)
    same = [
        model.tokenize(c["text"].encode("utf-8"), add_bos=False, special=True) == c["ids"] for c in cases
    ]
    differing = [c["text"] for c, ok in zip(cases, same) if not ok]
    return (
        f"llama-cpp-python {llama_cpp.__version__}: {sum(same)}/{len(cases)} cases identical to ids"
        + (f"; differ: {differing!r}" if differing else "")
    )


def dump(out: dict) -> str:
    """Indented JSON, but each case's fields on one line each, so diffs stay readable."""
    one = lambda v: json.dumps(v, ensure_ascii=False)  # noqa: E731
    head = {k: v for k, v in out.items() if k != "cases"}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f"  {one(k)}: {one(v)},")
    lines.append('  "cases": [')
    for i, case in enumerate(out["cases"]):
        fields = ",\n".join(f"      {one(k)}: {one(v)}" for k, v in case.items())
        lines.append("    {\n" + fields + "\n    }" + ("," if i + 1 < len(out["cases"]) else ""))
    lines.append("  ]")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == out
    return text


def main() -> int:
    gguf = GGUF_DIR / GGUF_NAME
    if not gguf.is_file():
        print(f"missing {gguf}; it comes with the shared assets (../shared)", file=sys.stderr)
        return 1
    hf = AutoTokenizer.from_pretrained(str(GGUF_DIR), gguf_file=GGUF_NAME)
    hub = hub_tokenizer(hf.backend_tokenizer)

    cases = []
    for text in TEXTS:
        ids = hub.encode(text, add_special_tokens=False).ids
        ids_special = hub.encode(text, add_special_tokens=True).ids
        gguf_ids = hf.encode(text, add_special_tokens=False)
        gguf_ids_special = hf.encode(text, add_special_tokens=True)
        # transformers adds nothing here: the GGUF says add_bos_token = false, like the hub's
        # tokenizer_config.json, so both encodings are the same.
        assert gguf_ids_special == gguf_ids, (text, gguf_ids_special, gguf_ids)
        assert ids_special == ids, (text, ids_special, ids)
        decoded = hub.decode(ids, skip_special_tokens=False)
        assert decoded == text, (text, decoded)
        assert hf.decode(gguf_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False) == text
        case = {
            "text": text,
            "ids": ids,
            "ids_with_special_tokens": ids_special,
            "tokens": hub.encode(text, add_special_tokens=False).tokens,
            "transformers_gguf_ids": gguf_ids,
            "transformers_gguf_ids_with_special_tokens": gguf_ids_special,
            "differs_from_transformers_gguf": gguf_ids != ids,
        }
        cases.append(case)

    out = {
        "about": "Reference ids for SmolLM2-135M-Instruct; made by scripts/make_tokenizer_fixtures.py, do not edit by hand.",
        "gguf": f"models/smollm2-135m-instruct/{GGUF_NAME}",
        "transformers_version": transformers.__version__,
        "tokenizers_version": tokenizers.__version__,
        "vocab_size": len(hf),
        "bos_token": hf.bos_token,
        "bos_token_id": hf.bos_token_id,
        "eos_token": hf.eos_token,
        "eos_token_id": hf.eos_token_id,
        "pad_token_id": hf.pad_token_id,
        "unk_token": hf.unk_token,
        "add_bos_token": bool(getattr(hf, "add_bos_token", False)),
        "llama_cpp_check": llama_cpp_check(gguf, cases),
        "special_tokens": {t.content: i for i, t in sorted(hf.added_tokens_decoder.items()) if t.special},
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(dump(out), encoding="utf-8")
    differing = [c["text"] for c in cases if c["differs_from_transformers_gguf"]]
    print(f"wrote {OUT.relative_to(ROOT)}: {len(cases)} cases, transformers {transformers.__version__}, "
          f"tokenizers {tokenizers.__version__}; differ from transformers' GGUF tokenizer: {differing!r}; "
          f"{out['llama_cpp_check']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
