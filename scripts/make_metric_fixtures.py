#!/usr/bin/env python3
"""Generate the metric fixtures in tests/fixtures/metrics/ from the reference implementations.

Every function in src/metrics/ reimplements a metric somebody else defined. This script asks
the reference implementation for the expected values once; the JSON it writes is committed and
read by tests/it/metrics.rs, so CI needs no Python.

What it makes (one file per Rust module)
----------------------------------------
* squad.json          -- normalize_answer / exact_match / token F1 / max over golds, computed by
                         the official SQuAD evaluation functions, copied below from
                         evaluate-v2.0.py (normalize_answer, get_tokens, compute_exact,
                         compute_f1) and evaluate-v1.1.py (metric_max_over_ground_truths).
* classification.json -- accuracy, per-class P/R/F1/support, macro and weighted F1 from
                         scikit-learn with ``labels=`` and ``zero_division=0``; a missing
                         prediction (None) becomes a sentinel string outside ``labels``.
* cuad.json           -- span token F1 / EM (SQuAD functions on the joined spans), answer
                         detection (precision_recall_fscore_support(average='binary')), AUPR
                         (average_precision_score).
* code.json           -- pass@k from the Codex paper's numpy estimator.
* rouge.json          -- rouge-score's RougeScorer(['rouge1','rouge2','rouge3','rougeL'],
                         use_stemmer=False) and its default tokenizer.
* sets.json, retrieval.json -- the conventions of src/metrics/sets.rs and retrieval.rs written
                         out independently in plain Python (there is no outside reference).
* stats.json          -- numpy mean / std(ddof=1) / percentile (linear), scipy.special.erfc,
                         statsmodels' mcnemar(table, exact=(b + c < 25)).

hotpotqa.json, longbench.json, ethic.json and rouge_multi.json come from
make_context_metric_fixtures.py, which imports the reference repositories' own code.

Each file records the package versions that produced it. Cases come from a fixed list of edge
cases (empty strings, unicode, punctuation only, articles, ties, all wrong, unseen labels, None
predictions, a single class, duplicates) plus random ones from ``random.Random(SEED)``.

How to rerun
------------
    python3 -m venv /tmp/venv-metrics
    /tmp/venv-metrics/bin/pip install scikit-learn rouge-score numpy scipy statsmodels
    /tmp/venv-metrics/bin/python scripts/make_metric_fixtures.py

No network. Deterministic for given package versions.
"""

from __future__ import annotations

import collections
import importlib.metadata
import json
import random
import re
import string
import sys
import warnings
from pathlib import Path

import numpy as np
import scipy.special
from rouge_score import rouge_scorer, tokenize
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    precision_recall_fscore_support,
)
from statsmodels.stats.contingency_tables import mcnemar

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "metrics"
SEED = 20240611
# Stands in for "no valid answer"; never one of the labels below.
NONE_SENTINEL = "\x00<none>"


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in ["numpy", "scipy", "scikit-learn", "rouge-score", "statsmodels"]:
        out[pkg] = importlib.metadata.version(pkg)
    return out


def write(name: str, body: dict) -> None:
    body = {"generator": "scripts/make_metric_fixtures.py", "versions": versions(), **body}
    path = OUT / f"{name}.json"
    text = json.dumps(body, indent=1, ensure_ascii=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    print(f"{path.relative_to(ROOT)}: {path.stat().st_size} bytes")


# --- SQuAD: the official evaluation functions ----------------------------------------------
# From evaluate-v2.0.py (SQuAD 2.0; identical to v1.1's normalize_answer in Python 3).


def normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text):
        regex = re.compile(r"\b(a|an|the)\b", re.UNICODE)
        return re.sub(regex, " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def get_tokens(s):
    if not s:
        return []
    return normalize_answer(s).split()


def compute_exact(a_gold, a_pred):
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold, a_pred):
    gold_toks = get_tokens(a_gold)
    pred_toks = get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        # If either is no-answer, then F1 is 1 if they agree, 0 otherwise
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


# From evaluate-v1.1.py; an empty gold list scores against "" (v2.0's no-answer fallback).
def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    if not ground_truths:
        ground_truths = [""]
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)


def em_pred_gold(pred, gold):
    return compute_exact(gold, pred)


def f1_pred_gold(pred, gold):
    return compute_f1(gold, pred)


WORDS = [
    "the", "a", "an", "The", "A", "AN", "cat", "dog", "Paris", "paris", "1990", "3.14",
    "New", "York", "café", "naïve", "Zürich", "東京", "über", "and", "of", "anthem", "theater",
    "ant", "then", "a.", "the,", "(the)", "U.S.", "don't", "—", "–", "’s", "...", "$5", "50%",
]
SEPARATORS = [" ", " ", " ", "  ", "\t", "\n", ", ", "-", "\u00a0"]


def random_text(rng: random.Random, max_words: int) -> str:
    n = rng.randint(0, max_words)
    out = ""
    for i in range(n):
        if i:
            out += rng.choice(SEPARATORS)
        out += rng.choice(WORDS)
    return out


SQUAD_PAIRS = [
    ("both_empty", "", ""),
    ("pred_empty", "", "Paris"),
    ("gold_empty", "Paris", ""),
    ("identical", "Paris", "Paris"),
    ("case_and_punct", "paris!", "Paris."),
    ("articles_only_pred", "the", "Paris"),
    ("articles_both", "a an the", "The"),
    ("article_removed", "The Eiffel Tower", "Eiffel tower"),
    ("article_inside_word", "theater anthem", "ater hem"),
    ("article_after_punct_removal", "the-cat", "thecat"),
    ("article_with_dot", "a.n.", "an"),
    ("punctuation_only", "?!.,;:", ""),
    ("all_ascii_punctuation", string.punctuation, "x" + string.punctuation + "y"),
    ("partial_overlap", "the big red dog", "a red dog barked"),
    ("repeated_tokens", "dog dog dog", "dog cat"),
    ("repeated_both", "a b b c c c", "b b c d"),
    ("no_overlap", "alpha beta", "gamma delta"),
    ("unicode_accents", "Café Zürich", "cafe zurich"),
    ("unicode_match", "Café  Zürich!", "café zürich"),
    ("cjk", "東京 タワー", "東京"),
    ("curly_apostrophe", "the’s cat", "’s cat"),
    ("curly_quotes_kept", "“the answer”", "answer"),
    ("em_dash_kept", "the—end", "end"),
    ("final_sigma", "ΟΔΟΣ", "οδος"),
    ("dotted_capital_i", "İthe", "i̇"),
    ("kelvin_sign", "\u212a", "k"),
    ("sharp_s", "STRASSE ẞ", "strasse ß"),
    ("whitespace_mix", "\tNew\n York\u00a0City ", "new york city"),
    ("ascii_separators", "new\x1cyork\x1fcity", "new york city"),
    ("underscore_is_punct", "the_cat", "thecat"),
    ("numbers", "1,000,000", "1000000"),
    ("decimal", "3.14", "314"),
    ("article_digit", "a1 the2 an_", "a1 the2"),
    ("emoji", "the 🐈 cat", "🐈 cat"),
    ("superscript_digit", "the²", "the"),
    ("long", "the quick brown fox jumps over the lazy dog " * 3, "quick brown fox"),
]


def squad_fixture(rng: random.Random) -> dict:
    pairs = list(SQUAD_PAIRS)
    for i in range(60):
        pairs.append((f"random_{i}", random_text(rng, 7), random_text(rng, 7)))
    pair_cases = [
        {
            "name": name,
            "pred": pred,
            "gold": gold,
            "normalized_pred": normalize_answer(pred),
            "normalized_gold": normalize_answer(gold),
            "exact_match": float(em_pred_gold(pred, gold)),
            "f1": float(f1_pred_gold(pred, gold)),
        }
        for name, pred, gold in pairs
    ]
    max_cases_raw = [
        ("no_golds_empty_pred", "", []),
        ("no_golds_pred", "Paris", []),
        ("one_gold", "Paris", ["paris"]),
        ("best_of_three", "the red dog", ["dog", "a red dog", "cat"]),
        ("empty_gold_among_golds", "", ["Paris", ""]),
        ("article_gold_among_golds", "", ["the", "cat"]),
        ("duplicate_golds", "red dog", ["red dog", "red dog"]),
        ("none_match", "xyz", ["abc", "def"]),
    ]
    for i in range(20):
        golds = [random_text(rng, 5) for _ in range(rng.randint(1, 4))]
        max_cases_raw.append((f"random_{i}", random_text(rng, 5), golds))
    max_cases = [
        {
            "name": name,
            "pred": pred,
            "golds": golds,
            "exact_match": float(metric_max_over_ground_truths(em_pred_gold, pred, golds)),
            "f1": float(metric_max_over_ground_truths(f1_pred_gold, pred, golds)),
        }
        for name, pred, golds in max_cases_raw
    ]
    return {"pairs": pair_cases, "max_over_golds": max_cases}


# --- Classification: scikit-learn ----------------------------------------------------------


def classification_case(name, labels, y_true, y_pred) -> dict:
    mapped = [NONE_SENTINEL if p is None else p for p in y_pred]
    p, r, f, s = precision_recall_fscore_support(
        y_true, mapped, labels=labels, average=None, zero_division=0
    )
    return {
        "name": name,
        "labels": labels,
        "y_true": y_true,
        "y_pred": y_pred,
        "accuracy": float(accuracy_score(y_true, mapped)),
        "macro_f1": float(
            f1_score(y_true, mapped, labels=labels, average="macro", zero_division=0)
        ),
        "weighted_f1": float(
            f1_score(y_true, mapped, labels=labels, average="weighted", zero_division=0)
        ),
        "per_class": [
            {
                "label": labels[i],
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i in range(len(labels))
        ],
    }


def classification_fixture(rng: random.Random) -> dict:
    abc = ["a", "b", "c"]
    raw = [
        ("perfect", abc, ["a", "b", "c", "a"], ["a", "b", "c", "a"]),
        ("all_wrong", abc, ["a", "b", "c"], ["b", "c", "a"]),
        ("all_none", abc, ["a", "b", "c"], [None, None, None]),
        ("some_none", abc, ["a", "b", "b", "c"], ["a", None, "b", None]),
        ("single_class_true", abc, ["a", "a", "a", "a"], ["a", "b", "a", None]),
        ("single_row", abc, ["b"], ["b"]),
        ("single_label", ["a"], ["a", "a"], ["a", None]),
        ("label_never_seen", ["a", "b", "c", "d"], ["a", "b", "c"], ["a", "b", "b"]),
        ("unseen_true_label", abc, ["a", "z", "z", "b"], ["a", "z", "a", "b"]),
        ("unseen_pred_label", abc, ["a", "b", "c", "c"], ["a", "q", "c", "q"]),
        ("only_unseen_true", abc, ["z", "y"], ["a", "y"]),
        ("label_order_matters_not", ["c", "a", "b"], ["a", "b", "c", "a"], ["a", "c", "c", "b"]),
        ("unicode_labels", ["négatif", "positif", "中性"], ["négatif", "中性", "positif"],
         ["négatif", "中性", "négatif"]),
        ("case_sensitive", ["Yes", "No"], ["Yes", "No", "Yes"], ["yes", "No", "Yes"]),
    ]
    for i in range(12):
        k = rng.randint(2, 8)
        labels = [f"label_{j}" for j in range(k)]
        n = rng.randint(1, 60)
        y_true = [rng.choice(labels + ["outside"] if i % 4 == 0 else labels) for _ in range(n)]
        y_pred = []
        for t in y_true:
            u = rng.random()
            if u < 0.5:
                y_pred.append(t)
            elif u < 0.6:
                y_pred.append(None)
            elif u < 0.65:
                y_pred.append("made_up")
            else:
                y_pred.append(rng.choice(labels))
        raw.append((f"random_{i}", labels, y_true, y_pred))
    return {"cases": [classification_case(*c) for c in raw]}


# --- CUAD ----------------------------------------------------------------------------------


def cuad_fixture(rng: random.Random) -> dict:
    span_raw = [
        ("both_empty", [], []),
        ("pred_empty", [], ["The Seller shall indemnify"]),
        ("gold_empty", ["Seller indemnifies"], []),
        ("identical", ["This Agreement is governed by New York law."],
         ["This Agreement is governed by New York law."]),
        ("spans_reordered", ["b c", "a d"], ["a d", "b c"]),
        ("multi_vs_one", ["governed by", "New York law"], ["governed by New York law"]),
        ("article_only_pred", ["the"], []),
        ("empty_string_span", [""], []),
        ("partial", ["term of five (5) years"], ["five (5) years", "renewal term"]),
        ("duplicates", ["x", "x", "x"], ["x"]),
    ]
    clause_words = ["Agreement", "the", "Party", "shall", "terminate", "notice", "days", "(30)",
                    "thirty", "written", "Licensee", "exclusive", "§", "2.1", "a"]
    for i in range(20):
        def spans():
            return [" ".join(rng.choice(clause_words) for _ in range(rng.randint(1, 6)))
                    for _ in range(rng.randint(0, 3))]
        span_raw.append((f"random_{i}", spans(), spans()))
    span_cases = []
    for name, pred, gold in span_raw:
        jp, jg = " ".join(pred), " ".join(gold)
        span_cases.append({
            "name": name, "pred_spans": pred, "gold_spans": gold,
            "f1": float(compute_f1(jg, jp)), "exact_match": float(compute_exact(jg, jp)),
        })

    det_raw = [
        ("perfect", [True, False, True], [True, False, True]),
        ("all_false", [False, False], [False, False]),
        ("no_true_positive_class", [False, False, False], [True, False, True]),
        ("never_predicted", [True, True, False], [False, False, False]),
        ("all_true", [True, True], [True, True]),
        ("mixed", [True, False, True, False, True], [True, True, False, False, True]),
    ]
    for i in range(10):
        n = rng.randint(1, 40)
        y_true = [rng.random() < 0.4 for _ in range(n)]
        y_pred = [t if rng.random() < 0.7 else not t for t in y_true]
        det_raw.append((f"random_{i}", y_true, y_pred))
    det_cases = []
    for name, y_true, y_pred in det_raw:
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, average="binary", pos_label=True, zero_division=0
        )
        det_cases.append({"name": name, "y_true": y_true, "y_pred": y_pred,
                          "precision": float(p), "recall": float(r), "f1": float(f)})

    aupr_raw = [
        ("perfect_ranking", [True, True, False, False], [0.9, 0.8, 0.3, 0.1]),
        ("worst_ranking", [False, False, True, True], [0.9, 0.8, 0.3, 0.1]),
        ("all_tied", [True, False, True, False], [0.5, 0.5, 0.5, 0.5]),
        ("partial_ties", [True, False, True, False, True], [0.9, 0.9, 0.5, 0.5, 0.1]),
        ("all_positive", [True, True, True], [0.1, 0.7, 0.3]),
        ("single_positive", [True], [0.2]),
        ("no_positive", [False, False, False], [0.3, 0.2, 0.1]),
        ("negative_scores", [True, False, True], [-1.5, -3.0, -0.2]),
        ("huge_scores", [True, False, True], [1e300, 0.0, -1e300]),
        ("binary_scores", [True, False, True, True, False, False], [1, 1, 0, 1, 0, 0]),
    ]
    for i in range(16):
        n = rng.randint(2, 60)
        y_true = [rng.random() < 0.3 for _ in range(n)]
        if i % 3 == 0:  # coarse scores: many ties
            scores = [rng.randint(0, 4) / 4 for _ in range(n)]
        else:
            scores = [round(rng.random() + (0.3 if t else 0.0), 6) for t in y_true]
        aupr_raw.append((f"random_{i}", y_true, scores))
    aupr_cases = []
    for name, y_true, scores in aupr_raw:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no positive class: sklearn warns, returns 0.0
            ap = float(average_precision_score(y_true, scores))
        aupr_cases.append({"name": name, "y_true": y_true,
                           "scores": [float(s) for s in scores], "aupr": ap})
    return {"spans": span_cases, "detection": det_cases, "aupr": aupr_cases}


# --- pass@k: the Codex paper's estimator (Chen et al. 2021, Figure 3) ----------------------


def pass_at_k(n, c, k):
    """
    :param n: total number of samples
    :param c: number of correct samples
    :param k: k in pass@$k$
    """
    if n - c < k:
        return 1.0
    return 1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1))


def code_fixture() -> dict:
    triples = []
    for n in [1, 2, 5, 10, 20, 100, 200]:
        for c in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            for k in sorted({1, 2, 5, 10, 100, n}):
                if 0 <= c <= n and 1 <= k <= n:
                    triples.append((n, c, k))
    return {"cases": [{"n": n, "c": c, "k": k, "pass_at_k": float(pass_at_k(n, c, k))}
                      for n, c, k in triples]}


# --- ROUGE: rouge-score ----------------------------------------------------------------------


def rouge_fixture(rng: random.Random) -> dict:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rouge3", "rougeL"], use_stemmer=False)
    raw = [
        ("both_empty", "", ""),
        ("target_empty", "", "the cat sat"),
        ("prediction_empty", "the cat sat", ""),
        ("identical", "The cat sat on the mat.", "The cat sat on the mat."),
        ("punctuation_only", "?!...", "--"),
        ("case_and_punct", "Hello, World!", "hello world"),
        ("unicode_dropped", "café über naïve", "caf ber na ve"),
        ("kelvin_sign", "\u212a9 unit", "k9 unit"),
        ("dotted_capital_i", "İstanbul", "i stanbul"),
        ("underscore_hyphen", "state_of-the-art", "state of the art"),
        ("digits", "in 1999 there were 3.5m", "3 5m in 1999"),
        ("cjk_only", "東京タワー", "東京"),
        ("repeated_tokens", "the the the the", "the the"),
        ("reordered", "a b c d e", "e d c b a"),
        ("one_token", "word", "word"),
        ("single_vs_bigram", "word", "word word"),
        ("newlines", "line one\nline two", "line two\nline one"),
    ]
    vocab = ["the", "cat", "dog", "sat", "on", "mat", "a", "ran", "fast", "Cat,", "DOG!", "42"]
    for i in range(30):
        def text():
            return " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 14)))
        raw.append((f"random_{i}", text(), text()))
    cases = []
    for name, target, prediction in raw:
        scores = scorer.score(target, prediction)
        case = {"name": name, "target": target, "prediction": prediction,
                "target_tokens": tokenize.tokenize(target, None),
                "prediction_tokens": tokenize.tokenize(prediction, None)}
        for key, s in scores.items():
            case[key] = [float(s.precision), float(s.recall), float(s.fmeasure)]
        cases.append(case)
    return {"cases": cases}


# --- sets and retrieval: our conventions, written independently ------------------------------


def prf(hits, n_pred, n_gold):
    if n_pred == 0 and n_gold == 0:
        return 1.0, 1.0, 1.0
    if n_pred == 0 or n_gold == 0:
        return 0.0, 0.0, 0.0
    p, r = hits / n_pred, hits / n_gold
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return p, r, f


def set_scores(pred, gold):
    ps = {normalize_answer(x) for x in pred} - {""}
    gs = {normalize_answer(x) for x in gold} - {""}
    p, r, f = prf(len(ps & gs), len(ps), len(gs))
    return {"exact_match": float(ps == gs), "precision": p, "recall": r, "f1": f}


def sets_fixture(rng: random.Random) -> dict:
    raw = [
        ("both_empty", [], []),
        ("pred_empty", [], ["Aspirin"]),
        ("gold_empty", ["Aspirin"], []),
        ("identical", ["Aspirin", "Ibuprofen"], ["aspirin", "ibuprofen"]),
        ("normalised_duplicates", ["The Aspirin", "aspirin.", "ASPIRIN"], ["aspirin"]),
        ("article_only_item", ["the", "Aspirin"], ["aspirin"]),
        ("only_empty_items", ["", "a", "!!"], []),
        ("partial", ["a", "b", "c"], ["b", "c", "d", "e"]),
        ("disjoint", ["x"], ["y"]),
        ("unicode", ["Café", "東京"], ["cafe", "東京"]),
    ]
    items = ["alpha", "Beta", "beta.", "the gamma", "Gamma", "delta", "", "the", "epsilon"]
    for i in range(16):
        raw.append((f"random_{i}",
                    [rng.choice(items) for _ in range(rng.randint(0, 5))],
                    [rng.choice(items) for _ in range(rng.randint(0, 5))]))
    return {"cases": [{"name": n, "pred": p, "gold": g, **set_scores(p, g)} for n, p, g in raw]}


def prf_at_k(retrieved, relevant, k):
    considered = retrieved if k is None else retrieved[:k]
    rel = set(relevant)
    hits = len(set(considered) & rel)
    p, r, f = prf(hits, len(considered), len(rel))
    return {"precision": p, "recall": r, "f1": f}


def retrieval_fixture(rng: random.Random) -> dict:
    raw = [
        ("both_empty", [], [], None),
        ("nothing_retrieved", [], ["d1"], None),
        ("nothing_relevant", ["d1"], [], None),
        ("k_zero", ["d1"], ["d1"], 0),
        ("k_zero_nothing_relevant", ["d1"], [], 0),
        ("perfect", ["d1", "d2"], ["d2", "d1"], None),
        ("k_cuts", ["d1", "d9", "d2"], ["d1", "d2"], 2),
        ("k_beyond_len", ["d1", "d9"], ["d1", "d2"], 10),
        ("duplicate_retrieved", ["d1", "d1", "d2"], ["d1"], None),
        ("duplicate_relevant", ["d1"], ["d1", "d1"], None),
        ("case_sensitive_ids", ["D1"], ["d1"], None),
    ]
    docs = [f"doc{i}" for i in range(8)]
    for i in range(16):
        k = None if i % 4 == 0 else rng.randint(0, 6)
        raw.append((f"random_{i}",
                    [rng.choice(docs) for _ in range(rng.randint(0, 7))],
                    rng.sample(docs, rng.randint(0, 4)), k))
    return {"cases": [{"name": n, "retrieved": r, "relevant": g, "k": k, **prf_at_k(r, g, k)}
                      for n, r, g, k in raw]}


# --- stats: numpy, scipy, statsmodels ----------------------------------------------------------


def stats_fixture(rng: random.Random) -> dict:
    samples = [
        ("one", [3.5]),
        ("two", [1.0, 2.0]),
        ("constant", [0.25] * 7),
        ("zeros_ones", [0.0, 1.0, 1.0, 0.0, 1.0]),
        ("negative", [-5.0, 2.5, -0.125, 1e-3, 7.0]),
        ("ties", [1.0, 1.0, 2.0, 2.0, 2.0, 3.0]),
        ("large_offset", [1e9 + 1, 1e9 + 2, 1e9 + 3, 1e9 + 4]),
    ]
    for i in range(8):
        samples.append((f"random_{i}", [rng.gauss(0.5, 2.0) for _ in range(rng.randint(1, 40))]))
    qs = [0.0, 2.5, 5.0, 25.0, 33.3, 50.0, 66.6, 75.0, 90.0, 95.0, 97.5, 99.9, 100.0]
    sample_cases = []
    for name, xs in samples:
        a = np.array(xs, dtype=np.float64)
        sample_cases.append({
            "name": name, "values": xs, "mean": float(np.mean(a)),
            "std": float(np.std(a, ddof=1)) if len(xs) >= 2 else None,
            "percentiles": [[q, float(np.percentile(a, q))] for q in qs],
        })

    pairs = [(b, c) for b in range(0, 14) for c in range(0, 14) if (b + c) % 3 == 0 or b == c]
    pairs += [(0, 0), (12, 12), (24, 0), (0, 24), (13, 12), (12, 13), (25, 0), (13, 13),
              (20, 5), (30, 40), (100, 100), (100, 101), (10, 90), (500, 420), (1000, 0),
              (3000, 2500), (10_000, 9_990)]
    mcnemar_cases = []
    for b, c in dict.fromkeys(pairs):  # unique, in order
        exact = b + c < 25
        res = mcnemar(np.array([[0, b], [c, 0]]), exact=exact, correction=True)
        mcnemar_cases.append({"b": b, "c": c, "exact": exact,
                              "statistic": float(res.statistic), "p_value": float(res.pvalue)})

    xs = [0.0, 1e-300, 1e-10, 1e-3, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5, 1.9, 2.0, 2.1,
          2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 26.0, -0.5, -1.0, -3.0]
    xs += [round(rng.uniform(0.0, 7.0), 6) for _ in range(20)]
    erfc_cases = [[x, float(scipy.special.erfc(x))] for x in xs]
    return {"samples": sample_cases, "mcnemar": mcnemar_cases, "erfc": erfc_cases}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    write("squad", squad_fixture(rng))
    write("classification", classification_fixture(rng))
    write("cuad", cuad_fixture(rng))
    write("code", code_fixture())
    write("rouge", rouge_fixture(rng))
    write("sets", sets_fixture(rng))
    write("retrieval", retrieval_fixture(rng))
    write("stats", stats_fixture(rng))


if __name__ == "__main__":
    main()
