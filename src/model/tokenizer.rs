//! Tokenizers: `tokenizer.json` from an HF directory, or rebuilt from GGUF metadata.
//!
//! A GGUF file carries no `tokenizer.json`; llama.cpp stores the vocabulary, merges, token
//! types and special ids under `tokenizer.ggml.*`. For byte-level BPE (`tokenizer.ggml.model`
//! = `gpt2`) we rebuild what the model's own `tokenizer.json` on the hub holds: the same BPE
//! model, the pre-tokenizer named by `tokenizer.ggml.pre`, a ByteLevel decoder, and the
//! control tokens as special added tokens so `<|im_start|>` is never split.
//! `tests/it/gguf_tokenizer.rs` checks ids and round trips against HF transformers.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Error, Result};

/// Token ids and strings the engine needs besides the tokenizer itself.
#[derive(Debug, Clone)]
pub struct SpecialTokens {
    pub bos_id: Option<u32>,
    pub eos_ids: Vec<u32>,
    pub pad_id: Option<u32>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

/// `tokenizer.ggml.model` values we can rebuild.
const SUPPORTED_MODELS: &str = "gpt2 (byte-level BPE)";
/// `tokenizer.ggml.pre` values we can rebuild (llama.cpp's names).
const SUPPORTED_PRE: &str = "default, gpt-2, gpt2, smollm";

/// llama.cpp's token types (`llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Rebuild the tokenizer from GGUF metadata (`candle_core::quantized::gguf_file::Content.metadata`).
/// Supports tokenizer.ggml.model == "gpt2" (byte-level BPE). Other models (e.g. "llama"
/// sentencepiece) → a clear one-line error naming the model type and saying which are supported.
pub fn tokenizer_from_gguf(
    metadata: &HashMap<String, Value>,
) -> Result<(Tokenizer, SpecialTokens)> {
    let model = match metadata.get("tokenizer.ggml.model") {
        Some(v) => string_value(v, "tokenizer.ggml.model")?,
        None => {
            return Err(gguf_error(
                "metadata has no `tokenizer.ggml.model`, so it holds no tokenizer; \
                 use the model's tokenizer.json instead",
            ))
        }
    };
    if model != "gpt2" {
        return Err(gguf_error(format!(
            "tokenizer.ggml.model `{model}` is not supported; supported: {SUPPORTED_MODELS}; \
             use the model's tokenizer.json instead"
        )));
    }
    byte_level_bpe(metadata)
}

/// Load `tokenizer.json`: `path` is the file itself or the HF directory holding it.
pub fn tokenizer_from_file(path: &Path) -> Result<Tokenizer> {
    let file: PathBuf = if path.is_dir() {
        path.join("tokenizer.json")
    } else {
        path.to_path_buf()
    };
    if !file.is_file() {
        return Err(Error::BadFile {
            path: file,
            message: "tokenizer file not found; download the model's tokenizer.json from the \
                      Hugging Face hub into that directory"
                .into(),
        });
    }
    Tokenizer::from_file(&file).map_err(|e| Error::BadFile {
        path: file.clone(),
        message: format!(
            "not a valid tokenizer.json: {}; download it again",
            one_line(&e.to_string())
        ),
    })
}

fn byte_level_bpe(metadata: &HashMap<String, Value>) -> Result<(Tokenizer, SpecialTokens)> {
    let tokens = string_array(metadata, "tokenizer.ggml.tokens")?;
    let merges = string_array(metadata, "tokenizer.ggml.merges")?;
    let token_types = match metadata.get("tokenizer.ggml.token_type") {
        Some(v) => int_array(v, "tokenizer.ggml.token_type")?,
        None => Vec::new(),
    };
    if !token_types.is_empty() && token_types.len() != tokens.len() {
        return Err(gguf_error(format!(
            "tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {}; \
             the file is damaged, download it again",
            token_types.len(),
            tokens.len()
        )));
    }
    let pre = match metadata.get("tokenizer.ggml.pre") {
        Some(v) => string_value(v, "tokenizer.ggml.pre")?.to_string(),
        // Files from before llama.cpp recorded the pre-tokenizer use GPT-2's.
        None => "default".to_string(),
    };
    let pre_tokenizer = pre_tokenizer_for(&pre)?;

    // Byte-level vocabularies spell every byte with one printable character (GPT-2's
    // bytes_to_unicode). A token that uses any other character (a raw space, say) is stored
    // as text: respell it in that alphabet, as transformers does, so the BPE can reach it.
    let alphabet = ByteLevel::alphabet();
    let in_alphabet = |t: &str| t.chars().all(|c| alphabet.contains(&c));
    let byte_chars = byte_level_chars();
    let mut vocab = Vocab::default();
    for (id, token) in tokens.iter().enumerate() {
        let id = u32::try_from(id)
            .map_err(|_| gguf_error("tokenizer.ggml.tokens has more than 2^32 entries"))?;
        let key = if in_alphabet(token) {
            token.to_string()
        } else {
            token.bytes().map(|b| byte_chars[b as usize]).collect()
        };
        vocab.insert(key, id);
    }
    let merges: Merges = merges
        .iter()
        .enumerate()
        .map(|(i, m)| match m.split_once(' ') {
            Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains(' ') => {
                Ok((a.to_string(), b.to_string()))
            }
            _ => Err(gguf_error(format!(
                "tokenizer.ggml.merges[{i}] = {m:?} is not two tokens separated by one space; \
                 the file is damaged, download it again"
            ))),
        })
        .collect::<Result<_>>()?;

    // Same BPE settings as the hub's tokenizer.json for GPT-2-style models.
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(String::new())
        .fuse_unk(false)
        .byte_fallback(false)
        .ignore_merges(false)
        .build()
        .map_err(|e| {
            gguf_error(format!(
                "cannot build the BPE model: {}",
                one_line(&e.to_string())
            ))
        })?;

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    // Control tokens (`<|im_start|>`) are special: matched whole before BPE, skippable on decode.
    // User-defined ones (`<think>`) are matched whole too but stay ordinary text.
    // A control token outside the byte alphabet is a llama.cpp mislabel; transformers skips it.
    let token_type = |i: usize| token_types.get(i).copied().unwrap_or(1);
    let control: Vec<AddedToken> = tokens
        .iter()
        .enumerate()
        .filter(|(i, t)| token_type(*i) == TOKEN_TYPE_CONTROL && in_alphabet(t))
        .map(|(_, t)| AddedToken::from(t.to_string(), true).normalized(false))
        .collect();
    let user: Vec<AddedToken> = tokens
        .iter()
        .enumerate()
        .filter(|(i, t)| token_type(*i) == TOKEN_TYPE_USER_DEFINED && in_alphabet(t))
        .map(|(_, t)| AddedToken::from(t.to_string(), false).normalized(false))
        .collect();
    tokenizer.add_special_tokens(&control);
    tokenizer.add_tokens(&user);

    let special = special_tokens(metadata, &tokens)?;
    let add_bos = bool_value(metadata, "tokenizer.ggml.add_bos_token")?.unwrap_or(false);
    let add_eos = bool_value(metadata, "tokenizer.ggml.add_eos_token")?.unwrap_or(false);
    if add_bos || add_eos {
        tokenizer.with_post_processor(Some(bos_eos_template(&special, add_bos, add_eos)?));
    }
    Ok((tokenizer, special))
}

/// The pre-tokenizer the hub's tokenizer.json uses for the vocabulary llama.cpp calls `pre`.
fn pre_tokenizer_for(pre: &str) -> Result<PreTokenizerWrapper> {
    // GPT-2's regex split, then bytes → printable characters; no space is prepended.
    let byte_level = ByteLevel::new(false, true, true);
    match pre {
        "default" | "gpt-2" | "gpt2" => Ok(byte_level.into()),
        // SmolLM (StarCoder's tokenizer): every digit is its own pre-token, so "12345" is five
        // tokens and " 1" is "Ġ" + "1", never "Ġ1".
        "smollm" => Ok(Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()),
        other => Err(gguf_error(format!(
            "tokenizer.ggml.pre `{other}` (the pre-tokenizer) is not supported; supported: \
             {SUPPORTED_PRE}; use the model's tokenizer.json instead"
        ))),
    }
}

fn special_tokens(metadata: &HashMap<String, Value>, tokens: &[&str]) -> Result<SpecialTokens> {
    let token_id = |key: &str| -> Result<Option<u32>> {
        let Some(v) = metadata.get(key) else {
            return Ok(None);
        };
        let id = int_value(v, key)?;
        match u32::try_from(id) {
            Ok(id) if (id as usize) < tokens.len() => Ok(Some(id)),
            // llama.cpp writes -1 (or u32::MAX) for "none".
            _ if id < 0 || id == i64::from(u32::MAX) => Ok(None),
            _ => Err(gguf_error(format!(
                "{key} = {id} is outside the vocabulary of {} tokens; the file is damaged",
                tokens.len()
            ))),
        }
    };
    let bos_id = token_id("tokenizer.ggml.bos_token_id")?;
    let mut eos_ids = Vec::new();
    // Generation stops at end-of-sequence, end-of-turn and end-of-message alike.
    for key in [
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",
    ] {
        if let Some(id) = token_id(key)? {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
    }
    let pad_id = token_id("tokenizer.ggml.padding_token_id")?;
    let text = |id: Option<u32>| id.map(|i| tokens[i as usize].to_string());
    Ok(SpecialTokens {
        bos_id,
        eos_token: text(eos_ids.first().copied()),
        eos_ids,
        pad_id,
        bos_token: text(bos_id),
    })
}

/// `[BOS] $A [EOS]` as the metadata asks (`tokenizer.ggml.add_bos_token` / `add_eos_token`).
fn bos_eos_template(
    special: &SpecialTokens,
    add_bos: bool,
    add_eos: bool,
) -> Result<TemplateProcessing> {
    let mut single = Vec::new();
    let mut pair = Vec::new();
    let mut ids: Vec<(String, u32)> = Vec::new();
    if add_bos {
        let (Some(tok), Some(id)) = (&special.bos_token, special.bos_id) else {
            return Err(gguf_error(
                "tokenizer.ggml.add_bos_token is true but tokenizer.ggml.bos_token_id is missing",
            ));
        };
        single.push(tok.clone());
        pair.push(tok.clone());
        ids.push((tok.clone(), id));
    }
    single.push("$A".to_string());
    pair.push("$A".to_string());
    if add_eos {
        let (Some(tok), Some(&id)) = (&special.eos_token, special.eos_ids.first()) else {
            return Err(gguf_error(
                "tokenizer.ggml.add_eos_token is true but tokenizer.ggml.eos_token_id is missing",
            ));
        };
        single.push(tok.clone());
        pair.push(tok.clone());
        if !ids.iter().any(|(t, _)| t == tok) {
            ids.push((tok.clone(), id));
        }
    }
    if add_bos {
        pair.push(format!("{}:1", single[0]));
    }
    pair.push("$B:1".to_string());
    if add_eos {
        pair.push(format!("{}:1", single[single.len() - 1]));
    }
    TemplateProcessing::builder()
        .try_single(single)
        .and_then(|b| b.try_pair(pair))
        .map_err(|e| gguf_error(format!("cannot build the BOS/EOS template: {e}")))?
        .special_tokens(ids)
        .build()
        .map_err(|e| gguf_error(format!("cannot build the BOS/EOS template: {e}")))
}

/// GPT-2's `bytes_to_unicode`: byte → the printable character byte-level BPE spells it with.
fn byte_level_chars() -> Vec<char> {
    let printable: HashSet<u8> = (b'!'..=b'~')
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut next = 256u32;
    (0..=255u8)
        .map(|b| {
            if printable.contains(&b) {
                char::from(b)
            } else {
                let c = char::from_u32(next).unwrap_or('\u{FFFD}');
                next += 1;
                c
            }
        })
        .collect()
}

fn gguf_error(message: impl Into<String>) -> Error {
    Error::Config(format!("GGUF tokenizer: {}", message.into()))
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

fn kind(v: &Value) -> String {
    format!("{:?}", v.value_type())
}

fn string_value<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(gguf_error(format!(
            "{key} should be a string, found {}",
            kind(other)
        ))),
    }
}

fn string_array<'a>(metadata: &'a HashMap<String, Value>, key: &str) -> Result<Vec<&'a str>> {
    let Some(v) = metadata.get(key) else {
        return Err(gguf_error(format!(
            "metadata has no `{key}`; the file is incomplete, use the model's tokenizer.json instead"
        )));
    };
    let Value::Array(items) = v else {
        return Err(gguf_error(format!(
            "{key} should be an array of strings, found {}",
            kind(v)
        )));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s.as_str()),
            other => Err(gguf_error(format!(
                "{key}[{i}] should be a string, found {}",
                kind(other)
            ))),
        })
        .collect()
}

fn int_value(v: &Value, key: &str) -> Result<i64> {
    let n = match v {
        Value::U8(n) => i64::from(*n),
        Value::I8(n) => i64::from(*n),
        Value::U16(n) => i64::from(*n),
        Value::I16(n) => i64::from(*n),
        Value::U32(n) => i64::from(*n),
        Value::I32(n) => i64::from(*n),
        Value::I64(n) => *n,
        Value::U64(n) => i64::try_from(*n).unwrap_or(-1),
        other => {
            return Err(gguf_error(format!(
                "{key} should be an integer, found {}",
                kind(other)
            )))
        }
    };
    Ok(n)
}

fn int_array(v: &Value, key: &str) -> Result<Vec<i64>> {
    let Value::Array(items) = v else {
        return Err(gguf_error(format!(
            "{key} should be an array of integers, found {}",
            kind(v)
        )));
    };
    items.iter().map(|item| int_value(item, key)).collect()
}

fn bool_value(metadata: &HashMap<String, Value>, key: &str) -> Result<Option<bool>> {
    match metadata.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(gguf_error(format!(
            "{key} should be a boolean, found {}",
            kind(other)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny byte-level vocabulary: the 256 byte characters, two merges and two control tokens.
    fn tiny(model: &str, pre: &str, add_bos: bool) -> HashMap<String, Value> {
        let mut tokens: Vec<String> = vec!["<|endoftext|>".into(), "<|im_start|>".into()];
        tokens.extend(byte_level_chars().iter().map(|c| c.to_string()));
        tokens.push("ab".into());
        tokens.push("Ġab".into());
        let mut types = vec![3i32, 3];
        types.resize(tokens.len(), 1);
        let s = |x: &str| Value::String(x.to_string());
        HashMap::from([
            ("tokenizer.ggml.model".into(), s(model)),
            ("tokenizer.ggml.pre".into(), s(pre)),
            (
                "tokenizer.ggml.tokens".into(),
                Value::Array(tokens.iter().map(|t| s(t)).collect()),
            ),
            (
                "tokenizer.ggml.token_type".into(),
                Value::Array(types.into_iter().map(Value::I32).collect()),
            ),
            (
                "tokenizer.ggml.merges".into(),
                Value::Array(vec![s("a b"), s("Ġ ab")]),
            ),
            ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
            ("tokenizer.ggml.eos_token_id".into(), Value::U32(0)),
            ("tokenizer.ggml.add_bos_token".into(), Value::Bool(add_bos)),
        ])
    }

    #[test]
    fn byte_level_chars_match_the_tokenizers_alphabet() {
        let ours: HashSet<char> = byte_level_chars().into_iter().collect();
        assert_eq!(ours.len(), 256);
        assert_eq!(ours, ByteLevel::alphabet().into_iter().collect());
        assert_eq!(byte_level_chars()[b' ' as usize], 'Ġ');
        assert_eq!(byte_level_chars()[b'\n' as usize], 'Ċ');
    }

    #[test]
    fn tiny_vocab_merges_and_keeps_control_tokens_whole() {
        let (tok, special) = tokenizer_from_gguf(&tiny("gpt2", "smollm", false)).unwrap();
        let ab = tok.token_to_id("ab").unwrap();
        let gab = tok.token_to_id("Ġab").unwrap();
        let enc = tok.encode("<|im_start|>ab ab", false).unwrap();
        assert_eq!(enc.get_ids(), &[1, ab, gab]);
        // No BOS unless the metadata asks for it.
        assert_eq!(tok.encode("ab", true).unwrap().get_ids(), &[ab]);
        assert_eq!(special.bos_id, Some(1));
        assert_eq!(special.eos_ids, vec![0]);
        assert_eq!(special.eos_token.as_deref(), Some("<|endoftext|>"));
        assert_eq!(
            tok.decode(enc.get_ids(), false).unwrap(),
            "<|im_start|>ab ab"
        );
    }

    #[test]
    fn add_bos_token_prepends_bos() {
        let (tok, _) = tokenizer_from_gguf(&tiny("gpt2", "gpt-2", true)).unwrap();
        let ab = tok.token_to_id("ab").unwrap();
        assert_eq!(tok.encode("ab", true).unwrap().get_ids(), &[1, ab]);
        assert_eq!(tok.encode("ab", false).unwrap().get_ids(), &[ab]);
    }

    #[test]
    fn unknown_pre_tokenizer_is_a_clear_error() {
        let err = tokenizer_from_gguf(&tiny("gpt2", "qwen2", false))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`qwen2`") && err.contains("smollm"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn wrong_value_type_is_a_clear_error() {
        let mut md = tiny("gpt2", "smollm", false);
        md.insert("tokenizer.ggml.tokens".into(), Value::U32(3));
        let err = tokenizer_from_gguf(&md).unwrap_err().to_string();
        assert!(
            err.contains("tokenizer.ggml.tokens should be an array"),
            "{err}"
        );
    }
}
