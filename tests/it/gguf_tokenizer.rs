//! The tokenizer rebuilt from GGUF metadata against HF's ids for the same model
//! (tests/fixtures/tokenizer/smollm2.json, made by scripts/make_tokenizer_fixtures.py), and
//! `tokenizer.json` loading. Tests needing the real files skip, with a message, without ../shared.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bwb::model::tokenizer::{tokenizer_from_file, tokenizer_from_gguf, SpecialTokens};
use candle_core::quantized::gguf_file::{Content, Value};
use serde_json::Value as Json;

fn shared(rel: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(rel);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "skipping: {} not found (../shared is absent)",
            path.display()
        );
        None
    }
}

fn smollm2() -> Option<(tokenizers::Tokenizer, SpecialTokens)> {
    let path = shared("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")?;
    let mut file = std::fs::File::open(&path).unwrap();
    let content = Content::read(&mut file).unwrap();
    Some(tokenizer_from_gguf(&content.metadata).unwrap())
}

fn fixture() -> Json {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/smollm2.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(v: &Json) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Guards the whole rebuild: vocabulary, merges, the `smollm` pre-tokenizer (digits split one
/// by one), control tokens kept whole, no BOS added, and a lossless ByteLevel decoder.
#[test]
fn smollm2_gguf_tokenizes_like_hf() {
    let Some((tok, _)) = smollm2() else { return };
    let fx = fixture();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        let plain = tok.encode(text, false).unwrap();
        let with_special = tok.encode(text, true).unwrap();
        if plain.get_ids() != want.as_slice() {
            failures.push(format!(
                "{text:?}: got {:?} {:?}, want {want:?} {}",
                plain.get_ids(),
                plain.get_tokens(),
                case["tokens"]
            ));
        }
        if with_special.get_ids() != ids(&case["ids_with_special_tokens"]).as_slice() {
            failures.push(format!(
                "{text:?} with special tokens: got {:?}",
                with_special.get_ids()
            ));
        }
        let decoded = tok.decode(plain.get_ids(), false).unwrap();
        if decoded != text {
            failures.push(format!("{text:?} decodes to {decoded:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// transformers' own GGUF loader drops SmolLM's Digits step; we follow the hub's
/// tokenizer.json (and llama.cpp, which agrees) instead. Guards that choice: " ²" must be
/// "Ġ" + "Â²", not "ĠÂ" + "²".
#[test]
fn smollm2_splits_numeric_characters_like_the_hub_tokenizer() {
    let Some((tok, _)) = smollm2() else { return };
    let enc = tok.encode(" ² 12345", false).unwrap();
    assert_eq!(
        enc.get_tokens(),
        &["Ġ", "Â²", "Ġ", "1", "2", "3", "4", "5"].map(String::from)
    );
    let fx = fixture();
    let differing: Vec<&str> = fx["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["differs_from_transformers_gguf"].as_bool().unwrap())
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert!(differing.contains(&" ² ½ ٣٤"), "{differing:?}");
}

#[test]
fn smollm2_special_tokens_match_hf() {
    let Some((tok, special)) = smollm2() else {
        return;
    };
    let fx = fixture();
    assert_eq!(
        special.bos_id,
        Some(fx["bos_token_id"].as_u64().unwrap() as u32)
    );
    assert_eq!(
        special.eos_ids,
        vec![fx["eos_token_id"].as_u64().unwrap() as u32]
    );
    assert_eq!(
        special.pad_id,
        Some(fx["pad_token_id"].as_u64().unwrap() as u32)
    );
    assert_eq!(special.bos_token.as_deref(), fx["bos_token"].as_str());
    assert_eq!(special.eos_token.as_deref(), fx["eos_token"].as_str());
    assert_eq!(
        tok.get_vocab_size(true),
        fx["vocab_size"].as_u64().unwrap() as usize
    );
    // Every control token is one special token: never split, dropped by skip_special_tokens.
    for (content, id) in fx["special_tokens"].as_object().unwrap() {
        let id = id.as_u64().unwrap() as u32;
        assert_eq!(tok.token_to_id(content), Some(id), "{content}");
        let text = format!("a{content}b");
        let enc = tok.encode(text.as_str(), false).unwrap();
        assert!(
            enc.get_ids().contains(&id),
            "{content} split: {:?}",
            enc.get_tokens()
        );
        assert_eq!(tok.decode(enc.get_ids(), true).unwrap(), "ab", "{content}");
    }
}

#[test]
fn unsupported_gguf_tokenizer_model_is_a_clear_error() {
    let metadata = HashMap::from([(
        "tokenizer.ggml.model".to_string(),
        Value::String("llama".to_string()),
    )]);
    let err = tokenizer_from_gguf(&metadata).unwrap_err().to_string();
    assert!(err.contains("`llama`") && err.contains("gpt2"), "{err}");
    assert!(!err.contains('\n'), "{err}");

    let err = tokenizer_from_gguf(&HashMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("tokenizer.ggml.model"), "{err}");
}

#[test]
fn qwen3_tokenizer_json_loads() {
    let Some(path) = shared("tokenizers/qwen3/tokenizer.json") else {
        return;
    };
    for p in [path.as_path(), path.parent().unwrap()] {
        let tok = tokenizer_from_file(p).unwrap();
        assert_eq!(tok.get_vocab_size(true), 151_669);
        assert_eq!(tok.token_to_id("<|im_start|>"), Some(151_644));
        let text = "<|im_start|>user\nHello, 世界 12345!<|im_end|>\n";
        let enc = tok.encode(text, false).unwrap();
        assert_eq!(enc.get_ids()[0], 151_644);
        assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), text);
    }
}

#[test]
fn missing_tokenizer_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = tokenizer_from_file(dir.path()).unwrap_err().to_string();
    let expected = dir.path().join("tokenizer.json").display().to_string();
    assert!(err.contains(&expected), "{err}");
    assert!(err.contains("download"), "{err}");
    assert!(!err.contains('\n'), "{err}");

    let bad = dir.path().join("tokenizer.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let err = tokenizer_from_file(&bad).unwrap_err().to_string();
    assert!(
        err.contains(&expected) && err.contains("not a valid"),
        "{err}"
    );
}
