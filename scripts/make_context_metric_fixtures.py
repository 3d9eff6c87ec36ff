#!/usr/bin/env python3
"""Metric fixtures for the context benchmarks, computed by the reference code itself.

Unlike make_metric_fixtures.py (which copies the few SQuAD functions it needs), this script
imports the reference modules from local checkouts of their repositories, so the expected
values are exactly what those repositories compute. Their code is never committed here.

What it makes (tests/fixtures/metrics/, read by tests/it/metrics.rs)
--------------------------------------------------------------------
* hotpotqa.json  -- hotpot_evaluate_v1.py: normalize_answer, exact_match_score and f1_score
                    (f1, precision, recall) on prediction/gold pairs.
* longbench.json -- LongBench/metrics.py qa_f1_score on pairs, and the max over gold answers
                    of LongBench/eval.py's scorer loop (the loop is restated below because
                    scorer() rounds to 2 decimals; every case is also run through scorer() and
                    must agree with the restated loop after that rounding).
* ethic.json     -- utils.py calculate_f1_score(prediction, labels) (Recalling) and
                    calculate_score("Attributing", ...) (the per-example F1 of Attributing).
* rouge_multi.json -- rouge-score's RougeScorer(['rouge1','rouge2','rougeL']).score_multi.

Each file records the commits of the checkouts and the package versions. Cases: a fixed list of
edge cases (empty, unicode, punctuation only, articles, yes/no/noanswer, multiple and empty
golds, trailing separators, duplicates) plus random ones from random.Random(SEED).

How to rerun
------------
Get the three repositories (any clone; the commits used are recorded in the fixtures):

    git clone https://github.com/hotpotqa/hotpot /tmp/ref/hotpot
    git clone https://github.com/THUDM/LongBench /tmp/ref/LongBench
    git clone https://github.com/dmis-lab/ETHIC /tmp/ref/ETHIC
    python3 -m venv /tmp/venv-ctx && /tmp/venv-ctx/bin/pip install rouge-score==0.1.2
    /tmp/venv-ctx/bin/python scripts/make_context_metric_fixtures.py \
        --hotpot-dir /tmp/ref/hotpot --longbench-dir /tmp/ref/LongBench \
        --ethic-dir /tmp/ref/ETHIC

Only the modules' pure functions are used. Their unrelated imports (ujson; jieba, fuzzywuzzy
and rouge for LongBench; openai, tiktoken and api_config for ETHIC) are replaced by empty
stand-in modules, so nothing but rouge-score (and its numpy) needs installing. Give
--*-commit to record a commit when a directory is not a git checkout.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import random
import subprocess
import sys
import types
from pathlib import Path

from rouge_score import rouge_scorer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "metrics"
SEED = 20251206


def stub(name: str, **attrs) -> None:
    """An empty module standing in for an import the functions used never touch."""
    if name in sys.modules:
        return
    module = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(module, k, v)
    sys.modules[name] = module


def load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def commit_of(directory: Path, given: str | None) -> str:
    if given:
        return given
    try:
        out = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"],
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit(f"{directory} is not a git checkout: pass its commit explicitly")


def write(name: str, source: dict, body: dict) -> None:
    versions = {"python": sys.version.split()[0]}
    for pkg in ["rouge-score", "numpy"]:
        versions[pkg] = importlib.metadata.version(pkg)
    body = {"generator": "scripts/make_context_metric_fixtures.py", "versions": versions,
            "reference": source, **body}
    path = OUT / f"{name}.json"
    text = json.dumps(body, indent=1, ensure_ascii=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    print(f"{path.relative_to(ROOT)}: {path.stat().st_size} bytes")


WORDS = [
    "the", "a", "an", "The", "A", "yes", "Yes.", "no", "No", "noanswer", "cat", "dog", "Paris",
    "paris", "1990", "3.14", "New", "York", "café", "naïve", "東京", "and", "of", "anthem",
    "theater", "U.S.", "don't", "—", "’s", "...", "$5", "50%", "Answer:", "it",
]
SEPARATORS = [" ", " ", " ", "  ", "\t", "\n", ", ", "-", "\u00a0"]


def random_text(rng: random.Random, max_words: int) -> str:
    n = rng.randint(0, max_words)
    return "".join((rng.choice(SEPARATORS) if i else "") + rng.choice(WORDS) for i in range(n))


QA_PAIRS = [
    ("both_empty", "", ""),
    ("pred_empty", "", "Paris"),
    ("gold_empty", "Paris", ""),
    ("identical", "Paris", "Paris"),
    ("case_and_punct", "paris!", "Paris."),
    ("articles_only_both", "the", "a"),
    ("articles_only_pred", "the", "Paris"),
    ("punctuation_only_both", "?!.,", "..."),
    ("article_removed", "The Eiffel Tower", "Eiffel tower"),
    ("partial_overlap", "the big red dog", "a red dog barked"),
    ("repeated_tokens", "dog dog dog", "dog cat"),
    ("no_overlap", "alpha beta", "gamma delta"),
    ("yes_yes", "Yes", "yes."),
    ("yes_no", "yes", "no"),
    ("yes_vs_sentence", "yes", "yes it is"),
    ("sentence_vs_yes", "yes it is", "yes"),
    ("no_vs_sentence", "no, never", "no"),
    ("noanswer_both", "noanswer", "NoAnswer"),
    ("noanswer_vs_text", "noanswer", "no answer"),
    ("no_answer_spaced", "no answer", "noanswer"),
    ("yes_inside", "the answer is yes", "yes"),
    ("unicode_match", "Café  Zürich!", "café zürich"),
    ("unicode_accents", "Café Zürich", "cafe zurich"),
    ("cjk", "東京 タワー", "東京"),
    ("final_sigma", "ΟΔΟΣ", "οδος"),
    ("whitespace_mix", "\tNew\n York\u00a0City ", "new york city"),
    ("ascii_separators", "new\x1cyork\x1fcity", "new york city"),
    ("numbers", "1,000,000", "1000000"),
    ("reordered", "york new", "new york"),
    ("long", "the quick brown fox jumps over the lazy dog " * 3, "quick brown fox"),
]

QA_MAX = [
    ("no_golds_empty_pred", "", []),
    ("no_golds_pred", "Paris", []),
    ("one_gold", "Paris", ["paris"]),
    ("best_of_three", "the red dog", ["dog", "a red dog", "cat"]),
    ("empty_gold_among_golds", "", ["Paris", ""]),
    ("article_gold_among_golds", "", ["the", "cat"]),
    ("duplicate_golds", "red dog", ["red dog", "red dog"]),
    ("none_match", "xyz", ["abc", "def"]),
    ("yes_among_golds", "yes", ["yes it is", "Yes"]),
]


def pairs(rng: random.Random) -> list[tuple[str, str, str]]:
    out = list(QA_PAIRS)
    for i in range(50):
        out.append((f"random_{i}", random_text(rng, 6), random_text(rng, 6)))
    return out


def max_cases(rng: random.Random) -> list[tuple[str, str, list[str]]]:
    out = list(QA_MAX)
    for i in range(20):
        golds = [random_text(rng, 4) for _ in range(rng.randint(1, 4))]
        out.append((f"random_{i}", random_text(rng, 4), golds))
    return out


# --- HotpotQA ---------------------------------------------------------------------------------


def hotpot_fixture(hotpot, rng: random.Random) -> dict:
    cases = []
    for name, pred, gold in pairs(rng):
        f1, precision, recall = hotpot.f1_score(pred, gold)
        cases.append({
            "name": name, "pred": pred, "gold": gold,
            "normalized_pred": hotpot.normalize_answer(pred),
            "exact_match": float(hotpot.exact_match_score(pred, gold)),
            "f1": float(f1), "precision": float(precision), "recall": float(recall),
        })
    return {"pairs": cases}


# --- LongBench --------------------------------------------------------------------------------


def longbench_max(metrics, pred: str, golds: list[str]) -> float:
    # LongBench/eval.py scorer(), the inner loop for one prediction.
    score = 0.
    for ground_truth in golds:
        score = max(score, metrics.qa_f1_score(pred, ground_truth, all_classes=None))
    return score


def longbench_fixture(metrics, lb_eval, rng: random.Random) -> dict:
    pair_cases = [
        {"name": name, "pred": pred, "gold": gold,
         "normalized_pred": metrics.normalize_answer(pred),
         "qa_f1": float(metrics.qa_f1_score(pred, gold))}
        for name, pred, gold in pairs(rng)
    ]
    cases = []
    for name, pred, golds in max_cases(rng):
        best = longbench_max(metrics, pred, golds)
        if golds:  # scorer() of one prediction: round(100 * score, 2)
            official = lb_eval.scorer("hotpotqa", [pred], [golds], None)
            if official != round(100 * best, 2):
                raise SystemExit(f"{name}: eval.scorer {official} != {best}")
        cases.append({"name": name, "pred": pred, "golds": golds, "qa_f1": float(best)})
    return {"pairs": pair_cases, "max_over_golds": cases}


# --- ETHIC ------------------------------------------------------------------------------------

ETHIC_RECALLING = [
    ("empty_output", "", ["aspirin"]),
    ("empty_both", "", []),
    ("no_gold", "aspirin", []),
    ("identical", "Aspirin, Ibuprofen", ["aspirin", "ibuprofen"]),
    ("semicolons", "aspirin;ibuprofen;  naproxen", ["Naproxen", "Aspirin"]),
    ("trailing_comma", "aspirin, ibuprofen,", ["aspirin", "ibuprofen"]),
    ("trailing_dot", "aspirin, ibuprofen.", ["aspirin.", "Ibuprofen"]),
    ("dot_then_space", "aspirin. , ibuprofen", ["aspirin", "ibuprofen"]),
    ("space_then_dot", "aspirin , .ibuprofen.", ["aspirin", "ibuprofen"]),
    ("duplicates_pred", "x, X, x., y", ["x", "y"]),
    ("duplicates_gold", "x", ["x", "x"]),
    ("newline_list", "x\ny, z", ["x", "y", "z"]),
    ("article_kept", "the cat, a dog", ["cat", "dog"]),
    ("unicode", "Café, 東京, ΟΔΟΣ", ["café", "東京", "οδος"]),
    ("ascii_separator_space", "x,\x1cy", ["x", "y"]),
    ("nbsp_after_comma", "x,\u00a0y", ["x", "y"]),
    ("only_separators", ", ; ,", ["x"]),
    ("punctuation_only", "!!, ??", ["!!"]),
    ("all_wrong", "p, q", ["x", "y"]),
]
ITEMS = ["alpha", "Beta", "beta.", "gamma", " Gamma", "delta ", "", ".", "the epsilon", "Ζήτα"]


def ethic_recalling(utils, rng: random.Random) -> list[dict]:
    raw = list(ETHIC_RECALLING)
    for i in range(30):
        pred_items = [rng.choice(ITEMS) for _ in range(rng.randint(0, 5))]
        seps = [rng.choice([",", ", ", ";", ";  ", " , ", ",\n"]) for _ in pred_items]
        answer = "".join(x + s for x, s in zip(pred_items, seps))
        if rng.random() < 0.5:
            answer = answer.rstrip(",; \n")
        gold = [rng.choice(ITEMS[:6]) for _ in range(rng.randint(1, 4))]
        raw.append((f"random_{i}", answer, gold))
    cases = []
    for name, answer, labels in raw:
        precision, recall, f1 = utils.calculate_f1_score(answer, list(labels))
        cases.append({"name": name, "prediction": answer, "labels": labels,
                      "precision": float(precision), "recall": float(recall), "f1": float(f1)})
    return cases


ETHIC_ATTRIBUTING = [
    ("plain_ids", "3, 7, 12", ["Segment 3", "Segment 12"]),
    ("marker", "Related Segments: 4, 2\nBecause segment 9 says so.", ["Segment 2", "Segment 4"]),
    ("core_ids", "Reasoning about 5.\nCore IDs: 1, 6", ["ID 1", "ID 6"]),
    ("marker_next_line", "Related Segments:\n8, 9", ["8", "Segment 9"]),
    ("no_ids", "I could not find any.", ["Segment 1"]),
    ("empty", "", ["Segment 1"]),
    ("duplicates", "5, 5, 5", ["Segment 5", "Segment 6"]),
    ("brackets", "[2], [10]", ["Segment 2", "Segment 10"]),
    ("marker_at_end", "1, 2\nRelated Segments:", ["Segment 1", "Segment 2"]),
    ("second_marker", "Related Segments:\nCore IDs: 3", ["Segment 3"]),
    ("leading_zero", "03, 4", ["Segment 3", "Segment 4"]),
]


def ethic_attributing(utils, rng: random.Random) -> list[dict]:
    raw = list(ETHIC_ATTRIBUTING)
    for i in range(20):
        ids = [str(rng.randint(1, 12)) for _ in range(rng.randint(0, 5))]
        text = ", ".join(ids)
        if i % 3 == 0:
            text = f"Segment {rng.randint(1, 12)} mentions it.\nRelated Segments: {text}"
        gold = [f"Segment {g}" for g in rng.sample(range(1, 13), rng.randint(1, 4))]
        raw.append((f"random_{i}", text, gold))
    cases = []
    for name, prediction, answer in raw:
        result, score = utils.calculate_score("Attributing", "", prediction, answer)
        cases.append({"name": name, "prediction": prediction, "answer": answer,
                      "precision": float(result["precision"]), "recall": float(result["recall"]),
                      "f1": float(score)})
    return cases


# --- rouge-score: score_multi -----------------------------------------------------------------


def rouge_multi_fixture(rng: random.Random) -> dict:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    raw = [
        ("one_target", ["the cat sat on the mat"], "the cat sat"),
        ("best_second", ["dogs bark", "the cat sat on the mat"], "the cat sat on a mat"),
        ("ties_first_kept", ["a b", "b a"], "a"),
        ("empty_prediction", ["x y"], ""),
        ("empty_target_among", ["", "x y"], "x"),
        ("all_empty", ["", ""], ""),
        ("unicode_only", ["東京", "café"], "caf"),
    ]
    vocab = ["the", "meeting", "discussed", "budget", "a", "team", "agreed", "on", "design",
             "Budget,", "remote", "42", "project"]
    for i in range(25):
        def text():
            return " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 12)))
        raw.append((f"random_{i}", [text() for _ in range(rng.randint(1, 4))], text()))
    cases = []
    for name, targets, prediction in raw:
        scores = scorer.score_multi(targets, prediction)
        case = {"name": name, "targets": targets, "prediction": prediction}
        for key, s in scores.items():
            case[key] = [float(s.precision), float(s.recall), float(s.fmeasure)]
        cases.append(case)
    return {"cases": cases}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hotpot-dir", type=Path, required=True)
    ap.add_argument("--longbench-dir", type=Path, required=True)
    ap.add_argument("--ethic-dir", type=Path, required=True)
    for name in ["hotpot", "longbench", "ethic"]:
        ap.add_argument(f"--{name}-commit")
    args = ap.parse_args()

    stub("ujson", **{k: getattr(json, k) for k in ["load", "loads", "dump", "dumps"]})
    hotpot = load("hotpot_evaluate_v1", args.hotpot_dir / "hotpot_evaluate_v1.py")
    stub("jieba")
    stub("fuzzywuzzy", fuzz=None)
    stub("fuzzywuzzy.fuzz")
    stub("rouge", Rouge=None)
    metrics = load("metrics", args.longbench_dir / "LongBench" / "metrics.py")
    lb_eval = load("longbench_eval", args.longbench_dir / "LongBench" / "eval.py")
    stub("openai", OpenAI=None)
    stub("tiktoken")
    stub("api_config", CONFIG={})
    utils = load("ethic_utils", args.ethic_dir / "utils.py")

    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    hotpot_src = {"repo": "github.com/hotpotqa/hotpot", "file": "hotpot_evaluate_v1.py",
                  "commit": commit_of(args.hotpot_dir, args.hotpot_commit)}
    write("hotpotqa", hotpot_src, hotpot_fixture(hotpot, rng))
    lb_src = {"repo": "github.com/THUDM/LongBench",
              "file": "LongBench/metrics.py, LongBench/eval.py",
              "commit": commit_of(args.longbench_dir, args.longbench_commit)}
    write("longbench", lb_src, longbench_fixture(metrics, lb_eval, rng))
    ethic_src = {"repo": "github.com/dmis-lab/ETHIC", "file": "utils.py",
                 "commit": commit_of(args.ethic_dir, args.ethic_commit)}
    write("ethic", ethic_src, {"recalling": ethic_recalling(utils, rng),
                               "attributing": ethic_attributing(utils, rng)})
    write("rouge_multi", {"package": "rouge-score"}, rouge_multi_fixture(rng))


if __name__ == "__main__":
    main()
