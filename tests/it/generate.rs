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

fn smollm2() -> Option<PathBuf> {
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
