//! `bwb generate` as a user runs it: the smoke model, the real SmolLM2 GGUF from ../shared,
//! HF directories with PEFT adapters, and bad input.

use std::path::{Path, PathBuf};

use crate::common::{jsonl, Project};

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
        .display()
        .to_string()
}

pub fn smollm2() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "skipped: {} is absent (real users get SmolLM2 from the hub)",
            p.display()
        );
        None
    }
}

#[test]
fn smoke_model_generates_a_batch_as_json_lines() {
    let p = Project::new();
    let out = p
        .bwb(&[
            "--smoke-test",
            "generate",
            "--model",
            "smoke",
            "--json",
            "--max-new-tokens",
            "5",
            "--prompt",
            "Hello",
            "--prompt",
            "A much longer prompt than the first one",
        ])
        .ok()
        .stdout();
    let rows = jsonl(&out);
    assert_eq!(rows.len(), 2, "{out}");
    for r in &rows {
        for key in [
            "text",
            "token_ids",
            "finish_reason",
            "prompt_tokens",
            "completion_tokens",
        ] {
            assert!(r.get(key).is_some(), "missing {key}: {r}");
        }
        let n = r["token_ids"].as_array().unwrap().len();
        assert_eq!(r["completion_tokens"].as_u64().unwrap() as usize, n);
        assert!(n <= 5);
        if r["finish_reason"] == "length" {
            assert_eq!(n, 5);
        }
    }
    assert!(rows[1]["prompt_tokens"].as_u64() > rows[0]["prompt_tokens"].as_u64());
    // Deterministic: the same command prints the same lines.
    let again = p
        .bwb(&[
            "--smoke-test",
            "generate",
            "--model",
            "smoke",
            "--json",
            "--max-new-tokens",
            "5",
            "--prompt",
            "Hello",
            "--prompt",
            "A much longer prompt than the first one",
        ])
        .ok()
        .stdout();
    assert_eq!(out, again);
}

#[test]
fn smollm2_gguf_chats_coherently() {
    let Some(gguf) = smollm2() else { return };
    let p = Project::new();
    let out = p
        .bwb(&[
            "generate",
            "--model",
            gguf.to_str().unwrap(),
            "--json",
            "--max-new-tokens",
            "24",
            "--prompt",
            "What is the capital of France? Answer in one sentence.",
        ])
        .ok()
        .stdout();
    let r = &jsonl(&out)[0];
    let text = r["text"].as_str().unwrap();
    assert!(text.contains("Paris"), "{text}");
    // Raw mode continues the text without the chat template.
    let out = p
        .bwb(&[
            "generate",
            "--model",
            gguf.to_str().unwrap(),
            "--raw",
            "--max-new-tokens",
            "3",
            "--prompt",
            "The capital of France is",
        ])
        .ok()
        .stdout();
    assert!(out.contains("Paris"), "{out}");
}

#[test]
fn adapter_changes_the_output_of_an_hf_directory_model() {
    // The tiny HF fixtures have no tokenizer.json: copy one in (the real Qwen3 tokenizer's
    // ids exceed the tiny vocab, so use the smoke byte tokenizer written by the engine).
    let p = Project::new();
    let dir = p.path("qwen3");
    crate::common::copy_dir(Path::new(&fixture("qwen3")), &dir);
    let tok = bwb::model::load::byte_tokenizer(256 + 3).unwrap();
    tok.save(dir.join("tokenizer.json"), false).unwrap();
    let base = p
        .bwb(&[
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--raw",
            "--json",
            "--max-new-tokens",
            "6",
            "--prompt",
            "abc",
        ])
        .ok()
        .stdout();
    let adapted = p
        .bwb(&[
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--raw",
            "--json",
            "--max-new-tokens",
            "6",
            "--adapter",
            &format!("{}/adapter", fixture("qwen3")),
            "--prompt",
            "abc",
        ])
        .ok()
        .stdout();
    let ids = |s: &str| jsonl(s)[0]["token_ids"].clone();
    assert_ne!(
        ids(&base),
        ids(&adapted),
        "the adapter must change greedy output"
    );
    // Without --raw there is no chat template in this directory: say so.
    let err = p
        .bwb(&[
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--prompt",
            "abc",
        ])
        .fails(1);
    assert!(
        err.contains("no chat template") && err.contains("--raw"),
        "{err}"
    );
}

#[test]
fn bad_engine_flags_give_one_line_errors() {
    let p = Project::new();
    let cases: [(&[&str], &str); 7] = [
        (
            &[
                "generate", "--model", "smoke", "--quant", "nf8", "--prompt", "x",
            ],
            "unknown quantisation `nf8`",
        ),
        (
            &[
                "generate", "--model", "smoke", "--dtype", "f64", "--prompt", "x",
            ],
            "--dtype f64",
        ),
        (
            &[
                "generate", "--model", "smoke", "--device", "tpu", "--prompt", "x",
            ],
            "--device tpu",
        ),
        (
            &["generate", "--model", "no-such-model", "--prompt", "x"],
            "unknown model `no-such-model`",
        ),
        (
            &["generate", "--model", "./missing-dir/", "--prompt", "x"],
            "no such file or directory",
        ),
        (
            &["generate", "--model", "gpt-5.4-mini", "--prompt", "x"],
            "API model",
        ),
        (
            &[
                "generate",
                "--model",
                "smoke",
                "--adapter",
                "nowhere",
                "--prompt",
                "x",
            ],
            "adapter_config.json",
        ),
    ];
    for (args, want) in cases {
        let err = p.bwb(args).fails(1);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    // A GGUF of an architecture we do not run, and a file that is not GGUF at all.
    p.write("bad.gguf", "definitely not gguf");
    let err = p
        .bwb(&[
            "generate",
            "--model",
            p.path("bad.gguf").to_str().unwrap(),
            "--prompt",
            "x",
        ])
        .fails(1);
    assert!(err.contains("bad.gguf") && err.contains("GGUF"), "{err}");
    #[cfg(unix)]
    assert!(!err.contains("panicked"));
}

/// A model repo in the real hub-cache layout (`models--org--name/{refs,snapshots}`), with a
/// tokenizer and the qwen3 fixture's weights.
pub(crate) fn hub_cache_model(p: &Project, org_name: &str) -> PathBuf {
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let hub = p.path("hf-home/hub");
    let folder = hub.join(format!("models--{}", org_name.replace('/', "--")));
    std::fs::create_dir_all(folder.join("refs")).unwrap();
    std::fs::write(folder.join("refs/main"), commit).unwrap();
    let snap = folder.join("snapshots").join(commit);
    crate::common::copy_dir(Path::new(&fixture("qwen3")), &snap);
    std::fs::remove_dir_all(snap.join("adapter")).unwrap();
    bwb::model::load::byte_tokenizer(256 + 3)
        .unwrap()
        .save(snap.join("tokenizer.json"), false)
        .unwrap();
    hub
}

#[test]
fn hub_ids_and_config_ids_load_through_the_hub_cache() {
    let p = Project::new();
    hub_cache_model(&p, "tiny-org/tiny-qwen3");
    let hf_home = p.path("hf-home").display().to_string();
    let p = p
        .set_env("HF_HOME", &hf_home)
        .set_env("HF_HUB_OFFLINE", "1");
    let by_dir = p.bwb(&[
        "generate",
        "--model",
        &fixture("qwen3"),
        "--raw",
        "--json",
        "--max-new-tokens",
        "4",
        "--prompt",
        "abc",
    ]);
    // The fixture dir has no tokenizer: compare against the hub copy instead.
    assert_eq!(by_dir.code(), 1);
    let by_hub = p
        .bwb(&[
            "generate",
            "--model",
            "tiny-org/tiny-qwen3",
            "--raw",
            "--json",
            "--max-new-tokens",
            "4",
            "--prompt",
            "abc",
        ])
        .ok()
        .stdout();
    assert_eq!(jsonl(&by_hub)[0]["completion_tokens"], 4);
    // A config id whose hf_repo is that repo resolves to the same snapshot.
    p.write(
        "configs/models/tiny.yaml",
        "id: tiny\nkind: local\narch: qwen3\nhf_repo: tiny-org/tiny-qwen3\nrevision: main\ntraining: smoke\n",
    );
    let by_id = p
        .bwb(&[
            "generate",
            "--model",
            "tiny",
            "--raw",
            "--json",
            "--max-new-tokens",
            "4",
            "--prompt",
            "abc",
        ])
        .ok()
        .stdout();
    assert_eq!(by_hub, by_id);
    // Offline and not cached: one line naming the repo and what to do.
    let err = p
        .bwb(&[
            "generate",
            "--model",
            "tiny-org/not-cached",
            "--raw",
            "--prompt",
            "abc",
        ])
        .fails(1);
    assert!(
        err.contains("tiny-org/not-cached") && err.contains("HF_HUB_OFFLINE"),
        "{err}"
    );
}

fn smoke_model() -> bwb::model::load::LoadedModel {
    crate::common::tiny_qwen3(0)
}

#[test]
fn sampling_is_seeded_and_top_k_1_is_greedy() {
    use bwb::model::generate::GenParams;
    let m = smoke_model();
    let prompts = vec![m
        .encode_prompt(&[bwb::prompt::chat_template::Message::user("hi")], false)
        .unwrap()];
    let greedy = m
        .generate(
            &prompts,
            &GenParams {
                max_new_tokens: 12,
                ..Default::default()
            },
        )
        .unwrap();
    let sample = |seed: u64, top_k: usize| {
        let p = GenParams {
            max_new_tokens: 12,
            temperature: 1.5,
            top_p: 0.95,
            top_k,
            seed,
            ..Default::default()
        };
        m.generate(&prompts, &p).unwrap()[0].token_ids.clone()
    };
    assert_eq!(sample(7, 0), sample(7, 0), "same seed, same tokens");
    assert_ne!(sample(7, 0), sample(8, 0), "another seed, other tokens");
    assert_eq!(sample(3, 1), greedy[0].token_ids, "top-k 1 is greedy");
    // A row's sample does not depend on its batch-mates.
    let p = GenParams {
        max_new_tokens: 12,
        temperature: 1.5,
        seed: 7,
        ..Default::default()
    };
    let alone = m.generate(&prompts, &p).unwrap();
    let two = m
        .generate(&[prompts[0].clone(), vec![300, 301, 302]], &p)
        .unwrap();
    assert_eq!(alone[0].token_ids, two[0].token_ids);
}

#[test]
fn stop_strings_cut_the_text_and_end_the_row() {
    use bwb::model::generate::{FinishReason, GenParams};
    let m = smoke_model();
    let prompts = vec![m
        .encode_prompt(&[bwb::prompt::chat_template::Message::user("hi")], false)
        .unwrap()];
    let full = m
        .generate(
            &prompts,
            &GenParams {
                max_new_tokens: 16,
                ..Default::default()
            },
        )
        .unwrap();
    let text = full[0].text.clone();
    // Stop on a piece of what greedy decoding produces anyway.
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() >= 6, "{text:?}");
    let stop: String = chars[4..6].iter().collect();
    let cut = m
        .generate(
            &prompts,
            &GenParams {
                max_new_tokens: 16,
                stop: vec![stop.clone()],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(cut[0].finish_reason, FinishReason::Stop);
    assert!(!cut[0].text.contains(&stop));
    assert!(text.starts_with(&cut[0].text));
    assert!(cut[0].completion_tokens < 16);
    assert_eq!(full[0].finish_reason, FinishReason::Length);
}

/// llama.cpp GGUF tensor name → HF name (Llama), written out independently of the loader.
fn hf_name(gguf: &str) -> String {
    match gguf {
        "token_embd.weight" => return "model.embed_tokens.weight".into(),
        "output_norm.weight" => return "model.norm.weight".into(),
        "output.weight" => return "lm_head.weight".into(),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.").unwrap();
    let (i, part) = rest.split_once('.').unwrap();
    let hf = match part {
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        other => panic!("unexpected GGUF tensor {gguf} ({other})"),
    };
    format!("model.layers.{i}.{hf}")
}

/// Undo llama.cpp's Q/K row interleave on a dense `(heads·D, H)` matrix (HF row
/// `h·D + s·D/2 + j` is GGUF row `h·D + 2j + s`).
fn unpermute(t: &candle_core::Tensor, heads: usize) -> candle_core::Tensor {
    let (rows, cols) = t.dims2().unwrap();
    let hd = rows / heads;
    t.reshape((heads, hd / 2, 2, cols))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .reshape((rows, cols))
        .unwrap()
}

/// The GGUF's every tensor dequantised by candle into an f32 HF directory: config.json from
/// the metadata as the loader reads it, model.safetensors, tokenizer.json, eos ids.
fn gguf_as_f32_hf_dir(gguf: &Path, out: &Path, eos: &[u32]) {
    use candle_core::quantized::gguf_file;
    use candle_core::Device;
    let mut f = std::fs::File::open(gguf).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let tied = !content.tensor_infos.contains_key("output.weight");
    let cfg = bwb::model::llama::Config::from_gguf(&content.metadata, tied, gguf).unwrap();
    let kv = cfg.num_key_value_heads.unwrap();
    let mut tensors = std::collections::HashMap::new();
    for name in content.tensor_infos.keys() {
        let q = content.tensor(&mut f, name, &Device::Cpu).unwrap();
        let mut t = q.dequantize(&Device::Cpu).unwrap();
        if name.ends_with("attn_q.weight") {
            t = unpermute(&t, cfg.num_attention_heads);
        } else if name.ends_with("attn_k.weight") {
            t = unpermute(&t, kv);
        }
        tensors.insert(hf_name(name), t);
    }
    std::fs::create_dir_all(out).unwrap();
    candle_core::safetensors::save(&tensors, out.join("model.safetensors")).unwrap();
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": kv,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope.rope_theta,
        "tie_word_embeddings": tied,
        "eos_token_id": eos,
    });
    std::fs::write(out.join("config.json"), config.to_string()).unwrap();
    let (tok, _) = bwb::model::tokenizer::tokenizer_from_gguf(&content.metadata).unwrap();
    tok.save(out.join("tokenizer.json"), false).unwrap();
    std::fs::write(
        out.join("generation_config.json"),
        serde_json::json!({ "eos_token_id": eos }).to_string(),
    )
    .unwrap();
}

/// Regression: `--quant none` on a Q4_1 GGUF re-blocked the file's blocks to Q8_0 before
/// dequantising them, so "none" was not the file's weights. Now it is exactly the f32
/// safetensors of the same weights: same logits, same greedy tokens.
#[test]
fn quant_none_on_a_q4_1_gguf_computes_the_files_own_weights() {
    use bwb::model::generate::GenParams;
    use bwb::model::load::{load, LoadOptions, ModelSource};
    let Some(gguf) = smollm2() else { return };
    let dense_gguf = LoadOptions {
        dense_gguf: true,
        ..Default::default()
    };
    let a = load(&ModelSource::Gguf(gguf.clone()), &dense_gguf).unwrap();
    let p = Project::new();
    let dir = p.path("smollm2-f32");
    gguf_as_f32_hf_dir(&gguf, &dir, &a.eos_ids);
    let b = load(&ModelSource::Dir(dir.clone()), &LoadOptions::default()).unwrap();
    let prompts: Vec<Vec<u32>> = ["The capital of France is", "1, 2, 3,", "Hello"]
        .iter()
        .map(|t| a.tokenizer.encode(*t, false).unwrap().get_ids().to_vec())
        .collect();
    let la = crate::export::logits(&a.model, &prompts[0]);
    let lb = crate::export::logits(&b.model, &prompts[0]);
    let d = crate::export::max_abs_diff(&la, &lb);
    assert!(d < 1e-4, "logits differ by {d}");
    let params = GenParams {
        max_new_tokens: 4,
        ..Default::default()
    };
    let ids = |m: &bwb::model::load::LoadedModel| -> Vec<Vec<u32>> {
        let outs = m.generate(&prompts, &params).unwrap();
        outs.into_iter().map(|o| o.token_ids).collect()
    };
    assert_eq!(ids(&a), ids(&b));

    // The same through the command line: `--quant none` on the GGUF, the f32 directory as is.
    let run = |model: &Path, extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--raw",
            "--json",
            "--max-new-tokens",
            "4",
            "--prompt",
            "The capital of France is",
        ];
        args.extend_from_slice(extra);
        jsonl(&p.bwb(&args).ok().stdout())[0]["token_ids"].clone()
    };
    assert_eq!(run(&gguf, &["--quant", "none"]), run(&dir, &[]));
}
