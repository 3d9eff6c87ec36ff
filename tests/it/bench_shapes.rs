//! `shape:` blocks of the real model configs and `bwb bench … --random-weights`: each shape
//! parses into its architecture's config with the published sizes, and the benchmarks run on
//! a scaled-down copy (`--layers`, `--vocab`) on the CPU with real widths.

use std::path::Path;

use bwb::config::{Arch, Configs};
use bwb::model::load::{self, ShapeOverrides};
use serde_json::Value;

use crate::common::{jsonl, Project, REPO};

fn configs() -> Configs {
    Configs::load(&Path::new(REPO).join("configs")).unwrap()
}

fn shape(id: &str) -> (Arch, Value) {
    load::random_shape(id, &configs(), ShapeOverrides::default()).unwrap()
}

#[test]
fn qwen3_8b_shape_is_the_published_config() {
    let (arch, v) = shape("qwen3-8b");
    assert_eq!(arch, Arch::Qwen3);
    let c: bwb::model::qwen3::Config = serde_json::from_value(v).unwrap();
    assert_eq!(
        (c.hidden_size, c.intermediate_size, c.num_hidden_layers),
        (4096, 12288, 36)
    );
    assert_eq!(
        (c.num_attention_heads, c.num_key_value_heads, c.head_dim()),
        (32, 8, 128)
    );
    assert_eq!(c.vocab_size, 151936);
    assert!(!c.tie_word_embeddings);
    let rope = c.rope.resolve(None, 10_000.0).unwrap();
    assert_eq!((rope.theta, rope.kind.as_str()), (1e6, "default"));
}

#[test]
fn gemma3_4b_shape_is_the_published_text_config() {
    let (arch, v) = shape("gemma3-4b");
    assert_eq!(arch, Arch::Gemma3);
    let c: bwb::model::gemma3::Config = serde_json::from_value(v).unwrap();
    assert_eq!(
        (c.hidden_size, c.intermediate_size, c.num_hidden_layers),
        (2560, 10240, 34)
    );
    assert_eq!(
        (c.num_attention_heads, c.num_key_value_heads, c.head_dim),
        (8, 4, 256)
    );
    assert_eq!(c.vocab_size, 262208);
    assert_eq!((c.sliding_window, c.query_pre_attn_scalar), (1024, 256.0));
    // Every 6th layer is global: 5, 11, 17, 23, 29 of 34.
    let global: Vec<usize> = (0..34).filter(|&i| !c.is_sliding(i).unwrap()).collect();
    assert_eq!(global, [5, 11, 17, 23, 29]);
    let g = c.rope.resolve(Some("full_attention"), 1e6).unwrap();
    assert_eq!(g.theta, 1e6);
    assert_eq!(g.linear_factor().unwrap(), Some(8.0));
    assert_eq!(c.rope_local_base_freq, 1e4);
    assert_eq!(c.hidden_activation, "gelu_pytorch_tanh");
    assert_eq!(c.final_logit_softcapping, None);
}

#[test]
fn phi4_mini_shape_is_the_published_config_with_longrope() {
    let (arch, v) = shape("phi4-mini");
    assert_eq!(arch, Arch::Phi3);
    let c: bwb::model::phi3::Config = serde_json::from_value(v).unwrap();
    assert_eq!(
        (c.hidden_size, c.intermediate_size, c.num_hidden_layers),
        (3072, 8192, 32)
    );
    assert_eq!(
        (c.num_attention_heads, c.num_key_value_heads, c.head_dim()),
        (24, Some(8), 128)
    );
    assert_eq!(c.vocab_size, 200064);
    assert!(c.tie_word_embeddings);
    assert_eq!(c.partial_rotary_factor, 0.75);
    let rope = c.rope.resolve(None, 10_000.0).unwrap();
    assert_eq!((rope.theta, rope.kind.as_str()), (1e4, "longrope"));
    // One factor per rotary frequency: 0.75 × 128 / 2.
    for key in ["short_factor", "long_factor"] {
        assert_eq!(rope.raw[key].as_array().unwrap().len(), 48, "{key}");
    }
    assert_eq!(c.original_max_position_embeddings, Some(4096));
    assert_eq!(c.max_position_embeddings, 131072);
}

#[test]
fn overrides_scale_the_shape_down_and_are_checked() {
    let ov = ShapeOverrides {
        layers: Some(2),
        vocab: Some(300),
    };
    let (_, v) = load::random_shape("gemma3-4b", &configs(), ov).unwrap();
    assert_eq!(v["num_hidden_layers"], 2);
    assert_eq!(v["vocab_size"], 300);
    assert_eq!(v["hidden_size"], 2560, "widths stay real");
    let small = ShapeOverrides {
        layers: None,
        vocab: Some(100),
    };
    let e = load::random_shape("qwen3-8b", &configs(), small)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--vocab 100") && e.contains("259"), "{e}");
    let e = load::random_shape("smoke", &configs(), ShapeOverrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("shape:") && e.contains("--random-weights"),
        "{e}"
    );
}

/// One decoder layer of Gemma 3 and Phi-4-mini at their real widths, vocabulary 512: ~100 M
/// f32 weights (< 0.5 GB), one model at a time. Qwen3-8B's layer (193 M weights, ~15 s in a
/// debug build) is left to the shape test: its decoder is the smoke model's.
#[test]
fn random_weight_benches_run_scaled_down_on_the_cpu() {
    let p = Project::new().set_env("BWB_CACHE_DIR", "off");
    // (id, published non-embedding matmul weights per layer)
    let cases = [("gemma3-4b", 94_371_840u64), ("phi4-mini", 100_663_296)];
    for (id, per_layer) in cases {
        let out = p
            .bwb(&[
                "bench",
                "infer",
                "--model",
                id,
                "--random-weights",
                "--layers",
                "1",
                "--vocab",
                "512",
                "--batch-size",
                "2,1",
                "--prompt-len",
                "4",
                "--new-tokens",
                "2",
                "--repeat",
                "1",
                "--json",
            ])
            .ok()
            .stdout();
        let rows = jsonl(&out);
        assert_eq!(rows.len(), 2, "one line per batch size: {out}");
        assert_eq!(
            (&rows[0]["batch_size"], &rows[1]["batch_size"]),
            (&2.into(), &1.into())
        );
        let r = &rows[0];
        assert_eq!(r["random_weights"], true);
        assert_eq!(r["dims"]["layers"], 1);
        assert_eq!(r["dims"]["vocab"], 512);
        assert_eq!(
            r["dims"]["layer_params"].as_u64().unwrap(),
            per_layer,
            "{id}"
        );
        // f32, dense: 4 bytes per matmul weight, LM head included.
        let n = per_layer + 512 * r["dims"]["hidden"].as_u64().unwrap();
        assert_eq!(r["weight_bytes"].as_f64().unwrap(), 4.0 * n as f64);
        assert!(r["prefill_tok_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["t_end"].as_f64() >= r["t_start"].as_f64(), "{r}");
        assert!(r["note"].as_str().unwrap().contains("--layers"), "{r}");
    }
    // The published Phi-4-mini count: 32 layers, a tied 200064 × 3072 embedding and the
    // 2 × 32 + 1 RMSNorm vectors make 3,836,021,760 parameters.
    assert_eq!(
        32 * 100_663_296u64 + 200_064 * 3072 + (2 * 32 + 1) * 3072,
        3_836_021_760
    );

    // Training: LoRA r 4 on every projection of one Gemma 3 layer, dense base.
    let out = p
        .bwb(&[
            "bench",
            "train",
            "--model",
            "gemma3-4b",
            "--random-weights",
            "--layers",
            "1",
            "--vocab",
            "512",
            "--quant",
            "none",
            "--batch-size",
            "1",
            "--seq-len",
            "4",
            "--steps",
            "1",
            "--rank",
            "4",
            "--json",
        ])
        .ok()
        .stdout();
    let r = &jsonl(&out)[0];
    let (h, q, kv, i) = (2560.0, 8.0 * 256.0, 4.0 * 256.0, 10240.0);
    let lora = 4.0 * ((h + q) * 2.0 + (h + kv) * 2.0 + 2.0 * (h + i) + (i + h));
    assert_eq!(r["trainable_params"].as_f64().unwrap(), lora);
    // 4·N·T + 6·N_lora·T + 12·L·heads·head_dim·layers·T, N with the LM head.
    let n = 94_371_840.0 + 512.0 * h;
    let t = 4.0;
    let want = (4.0 * n * t + 6.0 * lora * t + 12.0 * 4.0 * 8.0 * 256.0 * t) / 1e9;
    let got = r["step_gflop"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-9 * want, "{got} vs {want}");
}

#[test]
fn random_weight_flags_give_one_line_errors() {
    let p = Project::new();
    let err = p
        .bwb(&[
            "bench",
            "infer",
            "--model",
            "smoke",
            "--random-weights",
            "--prompt-len",
            "4",
        ])
        .fails(1);
    assert!(err.contains("shape:"), "{err}");
    let err = p
        .bwb(&[
            "bench",
            "train",
            "--model",
            "qwen3-8b",
            "--random-weights",
            "--vocab",
            "10",
        ])
        .fails(1);
    assert!(err.contains("--vocab 10"), "{err}");
    // The overrides only make sense with random weights.
    let run = p.bwb(&["bench", "infer", "--model", "smoke", "--layers", "1"]);
    assert_ne!(run.code(), 0);
    assert!(
        run.stderr().contains("--random-weights"),
        "{}",
        run.stderr()
    );
}

#[test]
fn random_shapes_tie_the_lm_head_as_their_configs_say() {
    // Phi-4-mini ties its LM head to the embedding (one V × H matrix); Qwen3-8B does not.
    let small = ShapeOverrides {
        layers: Some(1),
        vocab: Some(300),
    };
    for (id, tied) in [("phi4-mini", true), ("qwen3-8b", false)] {
        let (arch, v) = load::random_shape(id, &configs(), small).unwrap();
        let m = load::load_random_shape(arch, &v, 0, &load::LoadOptions::default()).unwrap();
        assert_eq!(m.model.lm_head_is_tied(), tied, "{id}");
    }
}
