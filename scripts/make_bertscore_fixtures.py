#!/usr/bin/env python3
"""Reference fixtures for bwb's BERTScore (src/metrics/bertscore.rs, tests/it/bertscore.rs).

Writes
  tests/fixtures/models/tiny-bert/        a tiny random BERT (seeded) in HF layout
  tests/fixtures/models/tiny-distilbert/  a tiny random DistilBERT sharing its vocabulary
  tests/fixtures/metrics/bertscore.json   the `bert_score` package's P/R/F on fixed cases

Rerun (CPU only, no hub access needed; the shared MiniLM cases need ../shared):
  python3 -m venv /tmp/venv-bs
  /tmp/venv-bs/bin/pip install torch "transformers<5" bert_score   # plain PyPI; CPU is enough
  BWB_SHARED=/path/to/shared /tmp/venv-bs/bin/python scripts/make_bertscore_fixtures.py

bert_score 0.3.13 needs transformers 4.x (with 5.x its empty-string path calls a removed
tokenizer method). BWB_SHARED defaults to ../shared beside the repo.
The tiny models are deterministic (seeded) but torch's RNG may change between versions:
rerunning with other versions may rewrite the model files; the JSON always matches them.
The tiny tokenizers set `model_max_length` = 16 so truncation is exercised cheaply.

Each case set is scored twice by bert_score: at its default batch size (64) and at batch
size 1. bert_score's greedy matching multiplies the similarity matrix by the padding mask
before taking the max, so in a padded batch a token whose every real similarity is negative
gets 0 instead; at batch size 1 there is no padding. bwb takes the max over real tokens, so
the JSON's values are the batch-size-1 ones, and `batch_dependent` records whether the
default batch size gave anything different.
"""

import importlib.metadata
import json
import os
import pathlib
import sys

import numpy as np
import torch

import bert_score
import tokenizers
import transformers
from transformers import BertConfig, BertModel, BertTokenizer, BertTokenizerFast
from transformers import DistilBertConfig, DistilBertModel

ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY = ROOT / "tests/fixtures/models/tiny-bert"
TINY_DISTIL = ROOT / "tests/fixtures/models/tiny-distilbert"
SHARED = pathlib.Path(os.environ.get("BWB_SHARED", ROOT / "../shared"))
MINILM = SHARED / "models/all-minilm-l6-v2"
OUT = ROOT / "tests/fixtures/metrics/bertscore.json"
MAX_LEN = 16  # the tiny tokenizers' model_max_length (2 specials + 14 word pieces)

LONG = ("the quarterly report shows that revenue grew by twelve percent while costs fell and "
        "the board approved a new dividend")

# (name, candidates, references: one list per candidate)
CASES = [
    (
        "single_refs",
        [
            "the cat sat on the mat",
            "a dog ran in the park",
            "stocks fell sharply today",
            "the contract ends in june",
        ],
        [
            ["the cat is on the mat"],
            ["the dog runs through a park"],
            ["markets dropped steeply this morning"],
            ["this agreement terminates on june 30"],
        ],
    ),
    (
        "multi_refs",
        [
            "the cat sat on the mat",
            "payment is due within thirty days",
            "the tenant pays rent monthly",
        ],
        [
            ["there is a cat on the mat", "a cat sat on a mat", "dogs bark"],
            ["invoices must be paid in 30 days", "payment due in thirty days"],
            ["rent is paid every month by the tenant", "the landlord owns it", "monthly"],
        ],
    ),
    (
        "edge_strings",
        [
            "",
            "   ",
            "the",
            "café naïve résumé",
            "東京 tokyo 株式会社",
            "the the the the",
            "identical sentence here",
        ],
        [
            ["the cat sat on the mat"],
            ["   "],
            [""],
            ["cafe naive resume"],
            ["tokyo company"],
            ["the"],
            ["identical sentence here"],
        ],
    ),
    (
        "long_texts",
        [
            "the quarterly report shows that revenue grew by twelve percent while costs "
            "fell and the board approved a new dividend for all shareholders of record",
            "short one",
        ],
        [
            ["revenue grew twelve percent this quarter and costs fell so the board "
             "approved a dividend paid to every shareholder of record next month"],
            ["the quarterly report shows that revenue grew by twelve percent while costs "
             "fell and the board approved a new dividend"],
        ],
    ),
    (
        # > 128 word pieces: all-MiniLM-L6-v2's tokenizer.json truncates at 128 and pads to
        # 128, but bert_score cuts at model_max_length (512); the tiny models cut at 16.
        "over_128_pieces",
        [" ".join([LONG] * 8), " ".join([LONG] * 2)],
        [[" ".join([LONG] * 5) + " short one"], [" ".join([LONG] * 7), "short one"]],
    ),
]


def words():
    out = set()
    for _, cands, refs in CASES:
        for s in cands + [r for group in refs for r in group]:
            out.update(s.lower().split())
    return sorted(out)


def make_vocab(path):
    """Specials, every character of the case texts (as word and ##suffix), then frequent
    whole words, so every text tokenises into real word pieces without [UNK]."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    ws = words()
    chars = sorted({c for w in ws for c in w})
    whole = [w for w in ws if len(w) > 2][::2]  # half the words whole, the rest in pieces
    pieces = ["##ing", "##ed", "##s", "##er", "##ly", "##ent"]
    vocab = specials + chars + ["##" + c for c in chars] + pieces + whole
    # characters the BERT normaliser produces from the unicode cases
    for extra in ["e", "i", "a", "o", "東", "京", "株", "式", "会", "社"]:
        if extra not in vocab:
            vocab.append(extra)
    seen, uniq = set(), []
    for v in vocab:
        if v not in seen:
            seen.add(v)
            uniq.append(v)
    path.write_text("\n".join(uniq) + "\n", encoding="utf-8")
    return len(uniq)


def save_tokenizer(dir_):
    slow = BertTokenizer(str(dir_ / "vocab.txt"), do_lower_case=True, model_max_length=MAX_LEN)
    fast = BertTokenizerFast.from_pretrained(str(dir_))
    fast.model_max_length = MAX_LEN
    fast.save_pretrained(str(dir_))
    cfg = json.loads((dir_ / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = MAX_LEN
    cfg["tokenizer_class"] = "BertTokenizer"
    (dir_ / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return slow


def save_model(model, dir_):
    model.save_pretrained(str(dir_), safe_serialization=True)


def make_tiny_bert(vocab_size):
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=MAX_LEN,
        type_vocab_size=2,
        hidden_act="gelu",
    )
    model = BertModel(cfg, add_pooling_layer=False).eval()
    with torch.no_grad():  # non-trivial LayerNorm affine params, so they are checked
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    save_model(model, TINY)


def make_tiny_distilbert(vocab_size):
    torch.manual_seed(1)
    cfg = DistilBertConfig(
        vocab_size=vocab_size,
        dim=32,
        n_layers=2,
        n_heads=2,
        hidden_dim=48,
        max_position_embeddings=MAX_LEN,
        activation="gelu",
    )
    model = DistilBertModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name.lower():
                p.add_(0.1 * torch.randn_like(p))
    save_model(model, TINY_DISTIL)


def run(model_dir, layer, idf, cands, refs, batch_size, baseline=None, fast=False):
    kw = dict(
        model_type=str(model_dir),
        num_layers=layer,
        idf=idf,
        device="cpu",
        batch_size=batch_size,
        nthreads=0,
        use_fast_tokenizer=fast,
    )
    if baseline is not None:
        kw.update(rescale_with_baseline=True, lang="en", baseline_path=str(baseline))
    p, r, f = bert_score.score(cands, refs, **kw)
    return [[nan_to_none(x) for x in row] for row in zip(p.tolist(), r.tolist(), f.tolist())]


def nan_to_none(x):
    return None if x != x else x


def same(a, b, tol=1e-6):
    for ra, rb in zip(a, b):
        for x, y in zip(ra, rb):
            if (x is None) != (y is None) or (x is not None and abs(x - y) > tol):
                return False
    return True


def score_all(model_name, model_dir, layers, fast_tokenizer, baseline=None):
    out = []
    for name, cands, refs in CASES:
        for layer in layers:
            for idf in (False, True):
                one = run(model_dir, layer, idf, cands, refs, 1, baseline, fast_tokenizer)
                full = run(model_dir, layer, idf, cands, refs, 64, baseline, fast_tokenizer)
                slow_fast = None
                if not fast_tokenizer:
                    other = run(model_dir, layer, idf, cands, refs, 1, baseline, True)
                    slow_fast = same(one, other)
                out.append({
                    "name": f"{model_name}/{name}/layer{layer}/idf={idf}"
                            + ("/rescaled" if baseline else ""),
                    "model": model_name,
                    "layer": layer,
                    "idf": idf,
                    "baseline": baseline.name if baseline else None,
                    "candidates": cands,
                    "references": refs,
                    "prf": one,
                    "batch_dependent": not same(one, full),
                    "fast_tokenizer_agrees": slow_fast,
                })
    return out


def main():
    for d in (TINY, TINY_DISTIL):
        d.mkdir(parents=True, exist_ok=True)
    n = make_vocab(TINY / "vocab.txt")
    (TINY_DISTIL / "vocab.txt").write_text((TINY / "vocab.txt").read_text(encoding="utf-8"),
                                           encoding="utf-8")
    for d in (TINY, TINY_DISTIL):
        save_tokenizer(d)
    make_tiny_bert(n)
    make_tiny_distilbert(n)
    baseline = TINY / "baseline.tsv"  # bert_score's format: a CSV despite the name
    baseline.write_text("LAYER,P,R,F\n0,0.1,0.2,0.3\n1,0.25,0.3,0.35\n2,0.5,0.45,0.4\n"
                        "3,0.6,0.55,0.5\n")

    cases = score_all("tiny-bert", TINY, [1, 3], False)
    cases += score_all("tiny-bert", TINY, [2], False, baseline)
    cases += score_all("tiny-distilbert", TINY_DISTIL, [0, 2], False)
    if MINILM.is_dir():
        # The shared MiniLM has tokenizer.json but no vocab.txt: only the fast tokenizer loads.
        cases += score_all("all-minilm-l6-v2", MINILM.resolve(), [4], True)
    else:
        print(f"warning: {MINILM} absent; MiniLM cases not written", file=sys.stderr)
    doc = {
        "versions": {
            "bert_score": importlib.metadata.version("bert_score"),
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "note": "prf = bert_score.score(...) at batch_size=1, one [P, R, F] per candidate; "
                "null = NaN in bert_score; see scripts/make_bertscore_fixtures.py",
        "cases": cases,
    }
    OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    dep = [c["name"] for c in cases if c["batch_dependent"]]
    tok = [c["name"] for c in cases if c["fast_tokenizer_agrees"] is False]
    print(f"{len(cases)} cases; batch-dependent: {dep}; slow/fast tokenizer differ: {tok}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
