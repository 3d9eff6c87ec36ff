//! `bwb train`: the smoke model learns, a killed or stopped run resumes bit for bit, adapters
//! are PEFT's format, and bad input gives one-line errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bwb::config::{Configs, LoraConfig, LrSchedule, TaskConfig, TrainingConfig};
use bwb::data::{Answer, Example};
use bwb::model::adapter;
use bwb::model::load::{self, LoadOptions, ModelSource};
use bwb::model::QuantFormat;
use bwb::prompt::task::TaskPrompt;
use bwb::train::{self, validate, Job, RunOptions};
use candle_core::Device;

use crate::common::{Project, REPO};

fn fpb_task() -> TaskConfig {
    let c = Configs::load(&Path::new(REPO).join("configs")).unwrap();
    c.task("fpb").unwrap().clone()
}

fn smoke_source() -> ModelSource {
    let c = Configs::load(&Path::new(REPO).join("configs")).unwrap();
    let mc = c.model("smoke").unwrap();
    ModelSource::Random {
        arch: mc.arch.unwrap(),
        init: mc.random_init.clone().unwrap(),
    }
}

/// A synthetic FPB-shaped task: the first word decides the label, the rest is noise.
fn synthetic(n: usize, offset: usize) -> Vec<Example> {
    let keys = [
        ("up", "positive"),
        ("down", "negative"),
        ("flat", "neutral"),
    ];
    let noise = ["acme", "q3", "sales", "bank", "oil", "fx", "rates", "deal"];
    (0..n)
        .map(|i| {
            let k = i + offset;
            let (word, label) = keys[k % 3];
            let text = format!(
                "{word} {} {}",
                noise[(k / 3) % noise.len()],
                noise[(k * 7 + 3) % noise.len()]
            );
            Example {
                id: format!("s{k}"),
                task: "fpb".into(),
                inputs: BTreeMap::from([("text".to_string(), text)]),
                answer: Answer::Label {
                    label: label.into(),
                },
                target: label.into(),
                stratum: Some(label.into()),
            }
        })
        .collect()
}

#[test]
fn smoke_model_learns_a_synthetic_classification_task_with_qlora() {
    let mut task = fpb_task();
    task.metric_id = bwb::score::MetricId::Accuracy;
    let prompt = TaskPrompt::from_sources(
        &task,
        "Label it.",
        "{{ text }}",
        PathBuf::from("system.txt"),
        PathBuf::from("user.txt"),
    )
    .unwrap();
    let hp = TrainingConfig {
        lora: LoraConfig {
            r: 8,
            alpha: 16.0,
            dropout: 0.0,
            target_modules: [
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ]
            .map(String::from)
            .to_vec(),
            use_rslora: false,
        },
        lr: 1e-2,
        weight_decay: 0.0,
        warmup_ratio: 0.0,
        lr_schedule: LrSchedule::Constant,
        // Reaches 100 % at epoch 14 (the smoke model's frozen random head caps its logits
        // near 1.3, so the loss floor is ~4.93 and learning is slow).
        epochs: 16,
        batch_size: 8,
        gradient_accumulation: 1,
        max_grad_norm: 1.0,
        max_seq_length: 128,
        early_stopping_patience: None,
    };
    let seed = 7;
    let opts = LoadOptions {
        quant: Some(QuantFormat::Q4_1),
        lora: Some(train::lora_plan(&hp, seed)),
        ..Default::default()
    };
    let m = load::load(&smoke_source(), &opts).unwrap();
    let train_set = synthetic(48, 0);
    let val = synthetic(24, 1000);

    // Chance (or worse) before training.
    let before = validate::generate_answers(&m, &prompt, &val, task.max_new_tokens, 24).unwrap();
    let acc0 = validate::score(&task, &val, &before);
    assert!(acc0 <= 0.34, "untrained accuracy {acc0}: {before:?}");

    let dir = tempfile::tempdir().unwrap();
    let job = Job {
        model: &m,
        base_model: "smoke".into(),
        peft_base: "smoke".into(),
        task: &task,
        prompt: &prompt,
        hp: &hp,
        seed,
        train: &train_set,
        val: &val,
        dir: dir.path().join("ck"),
        opts: RunOptions {
            val_batch_size: 24,
            ..Default::default()
        },
    };
    let out = train::run(&job).unwrap();
    assert!(out.finished);
    let best = out.state.best.unwrap();
    let h: Vec<(f64, f64)> = out
        .state
        .history
        .iter()
        .map(|r| (r.val.loss, r.val.metric))
        .collect();
    assert!(
        best.val.metric >= 0.9,
        "best accuracy {best:?}; history {h:?}"
    );
    assert!(
        out.state.history[0].train_loss > best.train_loss,
        "training loss fell: {h:?}"
    );

    // The final adapter is the best epoch's, and loads back into a fresh model with the
    // same validation accuracy.
    let plan = adapter::load(&dir.path().join("ck/adapter"), &Device::Cpu).unwrap();
    let m2 = load::load(
        &smoke_source(),
        &LoadOptions {
            quant: Some(QuantFormat::Q4_1),
            lora: Some(plan),
            ..Default::default()
        },
    )
    .unwrap();
    let again = validate::generate_answers(&m2, &prompt, &val, task.max_new_tokens, 24).unwrap();
    assert_eq!(validate::score(&task, &val, &again), best.val.metric);
}

/// A smoke training config that exercises every moving part of a resume: two epochs,
/// gradient accumulation, LoRA dropout, warm-up and cosine decay, weight decay.
const RESUME_CFG: &str = "lora:
  r: 4
  alpha: 8
  dropout: 0.1
  target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]
lr: 1.0e-3
weight_decay: 0.01
warmup_ratio: 0.2
lr_schedule: cosine
epochs: 2
batch_size: 4
gradient_accumulation: 2
max_grad_norm: 1.0
max_seq_length: 640
";

const CK: &str = "checkpoints/smoke/smoke/fpb/lora-500";

pub(crate) fn prepared_project() -> Project {
    let p = Project::new();
    p.write("configs/training/smoke.yaml", RESUME_CFG);
    p.bwb(&["--smoke-test", "download", "--task", "fpb"]).ok();
    p.bwb(&["--smoke-test", "prepare", "--task", "fpb"]).ok();
    p
}

pub(crate) fn train_args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = vec![
        "--smoke-test",
        "train",
        "--model",
        "smoke",
        "--task",
        "fpb",
        "--condition",
        "lora-500",
    ];
    v.extend_from_slice(extra);
    v
}

fn latest_step(p: &Project) -> Option<usize> {
    let text = std::fs::read_to_string(p.path(&format!("{CK}/latest.json"))).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["checkpoint"]
        .as_str()?
        .strip_prefix("step-")?
        .parse()
        .ok()
}

#[test]
fn stopped_killed_and_resumed_run_ends_with_the_same_adapter_bit_for_bit() {
    // Uninterrupted.
    let a = prepared_project();
    let out = a.bwb(&train_args(&[])).ok().stdout();
    assert!(out.contains("best epoch"), "{out}");

    // Stopped at step 3 (mid-epoch 1) …
    let b = prepared_project();
    let out = b.bwb(&train_args(&["--stop-at-step", "3"])).ok().stdout();
    assert!(out.contains("stopped at step 3 of 8"), "{out}");
    assert_eq!(latest_step(&b), Some(3));

    // … a resume with other hyperparameters is refused, naming the field …
    b.write(
        "configs/training/smoke.yaml",
        &RESUME_CFG.replace("dropout: 0.1", "dropout: 0.2"),
    );
    let err = b.bwb(&train_args(&[])).fails(1);
    assert!(
        err.contains("hyperparameters.lora.dropout") && err.contains("delete"),
        "{err}"
    );
    b.write("configs/training/smoke.yaml", RESUME_CFG);

    // … killed with SIGKILL after checkpointing a few more steps (across the epoch end) …
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_bwb"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("--root")
        .arg(b.root())
        .args(train_args(&["--save-every", "1"]))
        .current_dir(b.root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in &b.env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let t0 = std::time::Instant::now();
    while latest_step(&b).unwrap_or(0) < 5 && t0.elapsed().as_secs() < 120 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    child.wait().unwrap();
    let at = latest_step(&b).unwrap();
    assert!(at >= 5, "killed at step {at}");
    // The kill really landed mid-run: the process was alive and the run had not finished.
    assert!(running, "the run ended before the kill");
    assert!(at < 8, "killed after the last step");

    // … and resumed to the end.
    b.bwb(&train_args(&[])).ok();

    for f in [
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
        "adapter/scores.json",
        "step-000008/optimizer.safetensors",
    ] {
        let path = format!("{CK}/{f}");
        assert!(
            std::fs::read(a.path(&path)).unwrap() == std::fs::read(b.path(&path)).unwrap(),
            "{f} differs between the uninterrupted and the resumed run"
        );
    }
    let rec = |p: &Project| -> serde_json::Value {
        serde_json::from_str(&p.read("results/smoke/training/smoke_fpb_lora-500.json")).unwrap()
    };
    assert_eq!(rec(&a)["history"], rec(&b)["history"]);
    assert_eq!(
        rec(&a)["tokens"],
        rec(&b)["tokens"],
        "redone steps count once"
    );
    // The metrics file holds each step and epoch once, with the uninterrupted run's figures:
    // the lines the kill left past the checkpoint were dropped and redone (timings differ).
    let metrics = |p: &Project| -> Vec<serde_json::Value> {
        let text = p.read("results/smoke/training/smoke_fpb_lora-500.metrics.jsonl");
        let mut rows = crate::common::jsonl(&text);
        for r in &mut rows {
            let o = r.as_object_mut().unwrap();
            o.remove("elapsed_s");
            o.remove("tokens_per_s");
        }
        rows
    };
    let (ma, mb) = (metrics(&a), metrics(&b));
    let steps: Vec<&serde_json::Value> = mb.iter().map(|r| &r["step"]).collect();
    assert_eq!(steps, [1, 2, 3, 4, 4, 5, 6, 7, 8, 8], "{mb:?}");
    assert_eq!(ma, mb);

    // Rerunning a finished run trains nothing.
    let out = a.bwb(&train_args(&[])).ok().stdout();
    assert!(out.contains("already trained"), "{out}");
}

#[test]
fn smoke_train_writes_a_peft_adapter_and_a_training_record() {
    let p = prepared_project();
    p.bwb(&train_args(&[])).ok();
    let cfg: serde_json::Value =
        serde_json::from_str(&p.read(&format!("{CK}/adapter/adapter_config.json"))).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["task_type"], "CAUSAL_LM");
    assert_eq!(cfg["bias"], "none");
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["lora_alpha"], 8.0);
    assert_eq!(cfg["use_rslora"], false);
    assert_eq!(cfg["base_model_name_or_path"], "smoke");
    assert_eq!(cfg["target_modules"].as_array().unwrap().len(), 7);

    let st = candle_core::safetensors::load(
        p.path(&format!("{CK}/adapter/adapter_model.safetensors")),
        &Device::Cpu,
    )
    .unwrap();
    // 2 layers × 7 modules × (A, B).
    assert_eq!(st.len(), 28);
    let a = &st["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"];
    let b = &st["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"];
    assert_eq!(a.dims(), &[4, 64], "A is [r, in]");
    assert_eq!(b.dims(), &[64, 4], "B is [out, r]");
    let plan = adapter::load(&p.path(&format!("{CK}/adapter")), &Device::Cpu).unwrap();
    assert_eq!(plan.adapter.unwrap().len(), 14);

    let rec: serde_json::Value =
        serde_json::from_str(&p.read("results/smoke/training/smoke_fpb_lora-500.json")).unwrap();
    for key in [
        "wall_seconds",
        "tokens_per_second",
        "peak_memory_bytes",
        "best",
        "last",
        "hyperparameters",
    ] {
        assert!(!rec[key].is_null(), "record lacks {key}: {rec}");
    }
    assert_eq!(rec["steps"], 8);
    assert_eq!(rec["train_examples"], 30);
    assert_eq!(rec["training_config"], "configs/training/smoke.yaml");
    // FPB's per-task override (lower lr, higher weight decay) wins over the model's file.
    assert_eq!(rec["hyperparameters"]["lr"], 1.0e-4);
    assert_eq!(rec["hyperparameters"]["weight_decay"], 0.1);
    assert!(rec["tokens_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn bwb_saved_adapters_round_trip_through_the_peft_loader() {
    for arch in ["qwen3", "llama", "phi3", "gemma3"] {
        let dir = Path::new(REPO).join("tests/fixtures/models").join(arch);
        let plan = adapter::load(&dir.join("adapter"), &Device::Cpu).unwrap();
        let opts = LoadOptions {
            lora: Some(plan.clone()),
            ..Default::default()
        };
        let (_, _, _, vars) = load::load_dir_weights(&dir, &opts).unwrap();
        let out = tempfile::tempdir().unwrap();
        let cfg = adapter::AdapterConfig::for_plan(&plan, "tiny");
        adapter::save(out.path(), &cfg, &vars).unwrap();
        let back = adapter::load(out.path(), &Device::Cpu).unwrap();
        assert_eq!(
            (back.r, back.alpha, back.use_rslora),
            (plan.r, plan.alpha, plan.use_rslora)
        );
        assert_eq!(back.target_modules, plan.target_modules);
        let (want, got) = (plan.adapter.unwrap(), back.adapter.unwrap());
        assert_eq!(want.len(), got.len(), "{arch}");
        for (m, (a, b)) in &want {
            let (ga, gb) = &got[m];
            for (x, y) in [(a, ga), (b, gb)] {
                let x: Vec<f32> = x
                    .flatten_all()
                    .unwrap()
                    .to_dtype(candle_core::DType::F32)
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let y: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
                assert_eq!(x, y, "{arch}: {m}");
            }
        }
        // PEFT's own file names the same tensors.
        let orig = candle_core::safetensors::load(
            dir.join("adapter/adapter_model.safetensors"),
            &Device::Cpu,
        )
        .unwrap();
        let ours = candle_core::safetensors::load(
            out.path().join("adapter_model.safetensors"),
            &Device::Cpu,
        )
        .unwrap();
        let mut k1: Vec<_> = orig.keys().collect();
        let mut k2: Vec<_> = ours.keys().collect();
        k1.sort();
        k2.sort();
        assert_eq!(k1, k2, "{arch}");
    }
}

#[test]
fn bad_train_input_gives_one_line_errors() {
    let p = Project::new();
    let err = p.bwb(&train_args(&[])).fails(1);
    assert!(
        err.contains("bwb prepare --task fpb --smoke-test"),
        "names the command to run: {err}"
    );
    let err = p
        .bwb(&[
            "--smoke-test",
            "train",
            "--model",
            "smoke",
            "--task",
            "fpb",
            "--condition",
            "lora-9",
        ])
        .fails(1);
    assert!(err.contains("lora-500, lora-full or all"), "{err}");

    let p = prepared_project();
    p.write(
        "configs/training/smoke.yaml",
        &RESUME_CFG.replace("[q_proj, k_proj,", "[q_proj, qkv_proj, k_proj,"),
    );
    let err = p.bwb(&train_args(&[])).fails(1);
    assert!(
        err.contains("qkv_proj") && err.contains("target_modules"),
        "{err}"
    );
}

/// Regression: a task file's `training:` overrides were not checked after the merge, so
/// `batch_size: 0` or `gradient_accumulation: 0` panicked mid-training (division by zero,
/// `chunks(0)`). Each is now one line naming the task file and the field.
#[test]
fn task_training_overrides_are_checked_after_the_merge() {
    let p = prepared_project();
    let task = p.read("configs/tasks/fpb.yaml");
    let orig = "training: {lr: 1.0e-4, weight_decay: 0.1}";
    assert!(task.contains(orig));
    for (over, field) in [
        ("batch_size: 0", "`training.batch_size` = 0"),
        (
            "gradient_accumulation: 0",
            "`training.gradient_accumulation` = 0",
        ),
        ("epochs: 0", "`training.epochs` = 0"),
        ("lr: .nan", "`training.lr` = NaN"),
        ("lr: -1.0", "`training.lr` = -1"),
        ("lora_r: 0", "`training.lora_r` = 0"),
        ("lora_dropout: 1.5", "`training.lora_dropout` = 1.5"),
        ("max_seq_length: 0", "`training.max_seq_length` = 0"),
        ("weight_decay: -0.1", "`training.weight_decay` = -0.1"),
    ] {
        p.write(
            "configs/tasks/fpb.yaml",
            &task.replace(orig, &format!("training: {{{over}}}")),
        );
        let err = p.bwb(&train_args(&[])).fails(1);
        assert!(
            err.contains("configs/tasks/fpb.yaml") && err.contains(field),
            "{over}: {err}"
        );
    }
}

/// `bwb train --model ./dir` without configs/training/<dir>.yaml borrows the training file
/// of the model config with the same architecture, says so in one warning line, and the
/// training record names the file used.
#[test]
fn a_model_directory_without_its_own_training_file_borrows_its_architectures() {
    let p = prepared_project();
    let ad = p.path("adapter");
    crate::export::smoke_adapter(&ad);
    let dir = p.path("my-qwen");
    p.bwb(&[
        "export",
        "--model",
        "smoke",
        "--adapter",
        ad.to_str().unwrap(),
        "--merge",
        dir.to_str().unwrap(),
    ])
    .ok();
    // The qwen3 architecture's real-weights config is qwen3-8b: give it one quick epoch so
    // the test stays fast.
    let quick = RESUME_CFG
        .replace("epochs: 2", "epochs: 1")
        .replace("batch_size: 4", "batch_size: 8")
        .replace("gradient_accumulation: 2", "gradient_accumulation: 1");
    p.write("configs/training/qwen3-8b.yaml", &quick);
    let run = p
        .bwb(&[
            "--smoke-test",
            "train",
            "--model",
            dir.to_str().unwrap(),
            "--task",
            "fpb",
            "--condition",
            "lora-500",
        ])
        .ok();
    let warnings: Vec<String> = run
        .stderr()
        .lines()
        .filter(|l| l.contains("WARN"))
        .map(String::from)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("no configs/training/my-qwen.yaml")
            && warnings[0].contains("configs/training/qwen3-8b.yaml"),
        "{}",
        warnings[0]
    );
    let rec: serde_json::Value =
        serde_json::from_str(&p.read("results/smoke/training/my-qwen_fpb_lora-500.json")).unwrap();
    assert_eq!(rec["training_config"], "configs/training/qwen3-8b.yaml");
    assert_eq!(rec["hyperparameters"]["batch_size"], 8);
}

/// QLoRA on the real SmolLM2-135M (4-bit GGUF from ../shared, loaded through the engine):
/// four AdamW steps (r 4, lr 1e-3) on four short fixture examples lower their loss.
#[test]
fn qlora_on_smollm2_lowers_the_training_loss() {
    let gguf = Path::new(REPO)
        .join("../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !gguf.exists() {
        println!(
            "skipped: {} is absent (../shared not mounted)",
            gguf.display()
        );
        return;
    }
    let task = fpb_task();
    let prompt = TaskPrompt::from_sources(
        &task,
        "Label the sentiment.",
        "{{ text }}",
        PathBuf::from("system.txt"),
        PathBuf::from("user.txt"),
    )
    .unwrap();
    let hp = TrainingConfig {
        lora: LoraConfig {
            r: 4,
            alpha: 8.0,
            dropout: 0.0,
            target_modules: [
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ]
            .map(String::from)
            .to_vec(),
            use_rslora: false,
        },
        lr: 1e-3,
        weight_decay: 0.0,
        warmup_ratio: 0.0,
        lr_schedule: LrSchedule::Constant,
        epochs: 1,
        batch_size: 4,
        gradient_accumulation: 1,
        max_grad_norm: 1.0,
        max_seq_length: 64,
        early_stopping_patience: None,
    };
    let m = load::load(
        &ModelSource::Gguf(gguf),
        &LoadOptions {
            lora: Some(train::lora_plan(&hp, 1)),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        m.lora_vars.len(),
        30 * 7,
        "every projection of the 30 layers"
    );
    let examples = synthetic(4, 0);
    let (rows, _) = bwb::train::batch::tokenize(&m, &prompt, &examples, hp.max_seq_length).unwrap();
    let refs: Vec<_> = rows.iter().collect();
    let batch = bwb::train::batch::make_batch(&refs, m.pad_id, &m.device).unwrap();
    let params: Vec<candle_core::Var> = m
        .lora_vars
        .iter()
        .flat_map(|(_, a, b)| [a.clone(), b.clone()])
        .collect();
    let mut opt = bwb::train::optim::AdamW::new(params.clone(), 0.0).unwrap();
    let ctx = bwb::model::ForwardCtx {
        train: true,
        seed: 0,
        ..Default::default()
    };
    let mut losses = Vec::new();
    for _ in 0..4 {
        let loss = validate::batch_loss(&m, &batch, &ctx, batch.n_targets as f64).unwrap();
        losses.push(loss.to_scalar::<f32>().unwrap());
        let grads = loss.backward().unwrap();
        let mut g: Vec<candle_core::Tensor> = params
            .iter()
            .map(|p| {
                grads
                    .get(p.as_tensor())
                    .expect("every adapter gets a gradient")
                    .clone()
            })
            .collect();
        bwb::train::optim::clip(&mut g, hp.max_grad_norm).unwrap();
        opt.step(&g, hp.lr).unwrap();
    }
    // Measured: 6.79, 3.07, 1.45, 0.84 (~15 s in a debug build).
    println!("SmolLM2 QLoRA answer-token loss before each step: {losses:?}");
    assert!(
        losses[3] < 0.7 * losses[0] && losses[2] < losses[0],
        "loss did not fall: {losses:?}"
    );
}

#[test]
fn bench_train_reports_tokens_per_second_flops_and_memory() {
    let p = Project::new().set_env("BWB_CACHE_DIR", "off");
    let out = p
        .bwb(&[
            "bench",
            "train",
            "--model",
            "smoke",
            "--batch-size",
            "2",
            "--seq-len",
            "16",
            "--steps",
            "1",
            "--rank",
            "4",
            "--json",
        ])
        .ok()
        .stdout();
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["batch_size"], 2);
    assert_eq!(r["seq_len"], 16);
    // smoke: 2 layers × 7 projections, r 4: A [4, in] + B [out, 4].
    let h = 64.0;
    let (q, kv, i) = (4.0 * 16.0, 2.0 * 16.0, 128.0);
    let lora = 2.0 * 4.0 * ((h + q) * 2.0 + (h + kv) * 2.0 + 2.0 * (h + i) + (i + h));
    assert_eq!(r["trainable_params"].as_f64().unwrap(), lora);
    // 4·N·T + 6·N_lora·T + 12·L·heads·head_dim·layers·T.
    let n = 2.0 * (h * q * 2.0 + h * kv * 2.0 + 3.0 * h * i) + 512.0 * h;
    let t = 32.0;
    let want = (4.0 * n * t + 6.0 * lora * t + 12.0 * 16.0 * 4.0 * 16.0 * 2.0 * t) / 1e9;
    let got = r["step_gflop"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-9 * want.max(1.0), "{got} vs {want}");
    let tps = r["tokens_per_s"].as_f64().unwrap();
    let step = r["step_s"].as_f64().unwrap();
    assert!(tps > 0.0 && (tps * step - t).abs() < 1e-6, "{r}");
    assert!(r["peak_rss_mib"].as_f64().unwrap() > 0.0);
    let err = p
        .bwb(&["bench", "train", "--model", "smoke", "--seq-len", "1"])
        .fails(1);
    assert!(err.contains("--seq-len"), "{err}");
}

/// A disk that fills up while a checkpoint is written: simulated with a file-size limit
/// (RLIMIT_FSIZE, with SIGXFSZ ignored so the write fails with an error, as on a full disk).
#[cfg(unix)]
#[test]
fn a_full_disk_during_a_checkpoint_is_a_clear_error_and_keeps_the_previous_one() {
    let b = prepared_project();
    b.bwb(&train_args(&["--stop-at-step", "2"])).ok();
    assert_eq!(latest_step(&b), Some(2));
    let step2 = b.path(&format!("{CK}/step-000002"));
    let before = crate::common::snapshot(&step2);
    let biggest = before.iter().map(|(_, bytes)| bytes.len()).max().unwrap();
    // bash's `ulimit -f` counts 1024-byte blocks: allow less than the largest checkpoint file.
    let kb = (biggest / 1024 / 2).max(1).to_string();

    let mut cmd = std::process::Command::new("bash");
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f \"$1\"; shift; exec \"$@\"")
        .arg("bash")
        .arg(&kb)
        .arg(env!("CARGO_BIN_EXE_bwb"))
        .arg("--root")
        .arg(b.root())
        .args(train_args(&["--stop-at-step", "3"]))
        .current_dir(b.root());
    for (k, v) in &b.env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains("checkpoints/"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // The previous checkpoint is intact and still the one resumed from.
    assert_eq!(latest_step(&b), Some(2));
    assert_eq!(crate::common::snapshot(&step2), before);
    // With space again, the run resumes and finishes.
    let out = b.bwb(&train_args(&[])).ok().stdout();
    assert!(out.contains("best epoch"), "{out}");
}

/// An adapter trained on a model config names the config's hub repo as its base, as PEFT and
/// vLLM resolve it; bwb maps that back to the config when it attaches the adapter, accepts an
/// adapter written before (config id), and refuses one trained on another model.
#[test]
fn adapters_name_their_base_by_hub_repo_id_and_bwb_still_finds_it() {
    let p = prepared_project();
    let hub = crate::generate::hub_cache_model(&p, "tiny-org/tiny-qwen3");
    std::fs::write(
        hub.join("models--tiny-org--tiny-qwen3/snapshots/0123456789abcdef0123456789abcdef01234567/chat_template.jinja"),
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
    )
    .unwrap();
    let hf_home = p.path("hf-home").display().to_string();
    let p = p
        .set_env("HF_HOME", &hf_home)
        .set_env("HF_HUB_OFFLINE", "1");
    p.write(
        "configs/models/tiny.yaml",
        "id: tiny\nkind: local\narch: qwen3\nhf_repo: tiny-org/tiny-qwen3\nrevision: main\ntraining: smoke\n",
    );
    let train = |model: &'static str| {
        let mut a = train_args(&[]);
        a[3] = model;
        a
    };
    p.bwb(&train("tiny")).ok();
    let dir = "checkpoints/smoke/tiny/fpb/lora-500/adapter";
    let cfg_path = format!("{dir}/adapter_config.json");
    let cfg: serde_json::Value = serde_json::from_str(&p.read(&cfg_path)).unwrap();
    assert_eq!(cfg["base_model_name_or_path"], "tiny-org/tiny-qwen3");

    let generate = |model: &str| {
        p.bwb(&[
            "--smoke-test",
            "generate",
            "--model",
            model,
            "--adapter",
            dir,
            "--raw",
            "--json",
            "--max-new-tokens",
            "3",
            "--prompt",
            "abc",
        ])
    };
    // By config id or by hub id: the same base, the same completion.
    let by_id = generate("tiny").ok().stdout();
    assert_eq!(generate("tiny-org/tiny-qwen3").ok().stdout(), by_id);
    // Another known model: one line naming the right --model.
    let err = generate("smoke").fails(1);
    assert!(
        err.contains("tiny-org/tiny-qwen3") && err.contains("--model tiny"),
        "{err}"
    );
    // An adapter written before bwb recorded hub ids (config id) still loads.
    p.write(
        &cfg_path,
        &p.read(&cfg_path)
            .replace("\"tiny-org/tiny-qwen3\"", "\"tiny\""),
    );
    assert_eq!(generate("tiny").ok().stdout(), by_id);
}
