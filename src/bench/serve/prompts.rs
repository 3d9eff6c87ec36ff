//! Synthetic prompts of `--prompt-len` tokens on a server whose tokenizer bwb does not know.
//!
//! Each prompt is seeded random English words. When the server answers `POST /tokenize` and
//! `POST /detokenize` (vLLM's and bwb's shapes: `{"model", "prompt", "add_special_tokens"}` →
//! `{"tokens"}`, `{"model", "tokens"}` → `{"prompt"}`), the words are tokenized, cut to the
//! target count, detokenized, and the cut re-tokenized to check it (a cut can merge with its
//! neighbour; the cut moves up to four times until the count is exact). For
//! `/v1/completions` the target leaves room for the special tokens the server adds (a BOS),
//! so the request's `usage.prompt_tokens` is the length asked for; for chat it is the length
//! of the user message (the chat template adds its own tokens). Without `/tokenize` each
//! prompt is `L` words: about `L` tokens on English BPE vocabularies, and the report says so.

use anyhow::Result;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// Common short English words, most of them one token (with their leading space) in the
/// usual BPE vocabularies.
const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "it", "that", "for", "was", "on", "are", "as", "with",
    "his", "they", "at", "be", "this", "from", "have", "or", "by", "one", "had", "not", "but",
    "what", "all", "were", "when", "we", "there", "can", "an", "your", "which", "their", "said",
    "if", "do", "will", "each", "about", "how", "up", "out", "them", "then", "she", "many", "some",
    "so", "these", "would", "other", "into", "has", "more", "her", "two", "like", "him", "see",
    "time", "could", "no", "make", "than", "first", "been", "its", "who", "now", "people", "my",
    "made", "over", "did", "down", "only", "way", "find", "use", "may", "water", "long", "little",
    "very", "after", "words", "called", "just", "where", "most", "know", "day",
];

/// `n` seeded words joined by spaces.
pub fn words(n: usize, rng: &mut impl Rng) -> String {
    let picks: Vec<&str> = (0..n)
        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
        .collect();
    picks.join(" ")
}

/// The prompts of one run, and how exact their lengths are.
#[derive(Debug, Clone)]
pub struct Prompts {
    pub texts: Vec<String>,
    /// Every prompt was checked to be `L` tokens through the server's /tokenize.
    pub exact: bool,
    pub note: String,
}

/// Where /tokenize and /detokenize live, and how to call them.
pub struct Tokenizer<'a> {
    pub http: &'a reqwest::Client,
    pub base: &'a str,
    pub api_key: Option<&'a str>,
    pub model: &'a str,
}

impl Tokenizer<'_> {
    async fn post(&self, route: &str, body: Value) -> Option<Value> {
        let mut req = self
            .http
            .post(format!("{}/{route}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(k) = self.api_key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        serde_json::from_str(&resp.text().await.ok()?).ok()
    }

    async fn tokenize(&self, text: &str, special: bool) -> Option<Vec<Value>> {
        let body = json!({"model": self.model, "prompt": text, "add_special_tokens": special});
        self.post("tokenize", body)
            .await?
            .get("tokens")?
            .as_array()
            .cloned()
    }

    async fn detokenize(&self, ids: &[Value]) -> Option<String> {
        let body = json!({"model": self.model, "tokens": ids});
        Some(
            self.post("detokenize", body)
                .await?
                .get("prompt")?
                .as_str()?
                .to_string(),
        )
    }

    /// A text of exactly `target` tokens (without special tokens) grown from seeded words;
    /// `Err(closest)` when no cut gives exactly `target`, `None` when a call fails.
    async fn exact(&self, target: usize, rng: &mut impl Rng) -> Option<Result<String, String>> {
        let mut text = words(target + 8, rng);
        let mut ids = self.tokenize(&text, false).await?;
        for _ in 0..8 {
            if ids.len() >= target {
                break;
            }
            text = format!("{text} {}", words(target - ids.len() + 8, rng));
            ids = self.tokenize(&text, false).await?;
        }
        let mut cut = target.min(ids.len());
        let mut closest = None;
        for _ in 0..4 {
            let t = self.detokenize(&ids[..cut]).await?;
            let n = self.tokenize(&t, false).await?.len();
            if n == target {
                return Some(Ok(t));
            }
            closest = Some(t);
            let next = (cut as i64 - (n as i64 - target as i64)).clamp(1, ids.len() as i64);
            if next as usize == cut {
                break;
            }
            cut = next as usize;
        }
        closest.map(Err)
    }
}

/// `n` prompts of `len` tokens (see the module notes), seeded.
pub async fn make(tok: &Tokenizer<'_>, n: usize, len: usize, seed: u64, chat: bool) -> Prompts {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let by_words = |rng: &mut rand_chacha::ChaCha8Rng, why: &str| Prompts {
        texts: (0..n).map(|_| words(len, rng)).collect(),
        exact: false,
        note: format!("{why}: each prompt is {len} random words (about {len} tokens)"),
    };
    // Special tokens the completions route adds (a BOS), left out of the words' share.
    let probe = words(4, &mut rng.clone());
    let (Some(with), Some(without)) = (
        tok.tokenize(&probe, true).await,
        tok.tokenize(&probe, false).await,
    ) else {
        return by_words(&mut rng, "the server has no /tokenize");
    };
    let special = if chat {
        0
    } else {
        with.len().saturating_sub(without.len())
    };
    let target = len.saturating_sub(special).max(1);
    let mut texts = Vec::with_capacity(n);
    let mut exact = true;
    for _ in 0..n {
        match tok.exact(target, &mut rng).await {
            Some(Ok(t)) => texts.push(t),
            Some(Err(t)) => {
                exact = false;
                texts.push(t);
            }
            None => return by_words(&mut rng, "a /tokenize or /detokenize call failed"),
        }
    }
    let what = if chat {
        "the user message"
    } else {
        "the prompt, special tokens included"
    };
    let note = if exact {
        format!("{what} is {len} tokens by the server's /tokenize")
    } else {
        format!("{what} is about {len} tokens (some cuts could not be made exact)")
    };
    Prompts { texts, exact, note }
}
