//! The model card (README.md) of an adapter repo `bwb train --auto-upload` pushes: hub
//! metadata (`base_model`, `library_name: peft`) so the hub links it to its base, then the
//! base, task, data, hyperparameters, validation and (when evaluated) test metrics.

use serde_json::Value;

/// What the card says. `record` is the training record (results/training/…json) as JSON;
/// `test` the summary (results/summaries/…json) when the adapter was already evaluated.
pub struct CardInput<'a> {
    pub repo: &'a str,
    /// `base_model_name_or_path` of the adapter.
    pub base: &'a str,
    pub task_id: &'a str,
    pub task_name: &'a str,
    /// The task's dataset on the hub (`source.repo`), when it has one.
    pub dataset: Option<&'a str>,
    pub condition: &'a str,
    pub record: &'a Value,
    pub test: Option<&'a Value>,
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.fract() != 0.0 => format!("{x:.4}"),
        Some(x) => format!("{x}"),
        None => v.to_string(),
    }
}

/// The README.md text.
pub fn model_card(c: &CardInput) -> String {
    let r = c.record;
    let mut s = String::from("---\n");
    // A local path or random base is no hub id: leave `base_model` out rather than lie.
    let hub_base = c.base.contains('/') && !std::path::Path::new(c.base).exists();
    if hub_base {
        s.push_str(&format!("base_model: {}\n", c.base));
    }
    if let Some(d) = c.dataset {
        s.push_str(&format!("datasets:\n- {d}\n"));
    }
    s.push_str(
        "library_name: peft\npipeline_tag: text-generation\ntags:\n- bwb\n- lora\n- qlora\n---\n\n",
    );
    s.push_str(&format!(
        "# {}\n\nA LoRA adapter ({}) of **{}** for **{}** ({}), trained with QLoRA by bwb.\n\n",
        c.repo, c.condition, c.base, c.task_name, c.task_id
    ));
    s.push_str("```python\nfrom peft import AutoPeftModelForCausalLM\n");
    s.push_str(&format!(
        "model = AutoPeftModelForCausalLM.from_pretrained(\"{}\")\n```\n\n",
        c.repo
    ));
    s.push_str("## Data\n\n");
    if let Some(d) = c.dataset {
        s.push_str(&format!(
            "- dataset: [{d}](https://huggingface.co/datasets/{d})\n"
        ));
    }
    for (k, label) in [
        ("train_examples", "training examples"),
        ("val_examples", "validation examples"),
        ("seed", "seed"),
    ] {
        if let Some(v) = r.get(k) {
            s.push_str(&format!("- {label}: {}\n", num(v)));
        }
    }
    s.push_str("\n## Hyperparameters\n\n| name | value |\n|---|---|\n");
    if let Some(hp) = r.get("hyperparameters").and_then(Value::as_object) {
        for (k, v) in hp {
            s.push_str(&format!("| {k} | {} |\n", num(v)));
        }
    }
    for (k, label) in [
        ("steps", "optimizer steps"),
        ("epochs_run", "epochs run"),
        ("tokens_per_second", "tokens/s"),
        ("device", "device"),
        ("dtype", "dtype"),
    ] {
        if let Some(v) = r.get(k).filter(|v| !v.is_null()) {
            let v = v.as_str().map(str::to_string).unwrap_or_else(|| num(v));
            s.push_str(&format!("| {label} | {v} |\n"));
        }
    }
    let metric = r.get("metric").and_then(Value::as_str).unwrap_or("metric");
    s.push_str("\n## Validation\n\n");
    match r.get("best").filter(|b| !b.is_null()) {
        Some(b) => s.push_str(&format!(
            "Best epoch {} (kept): {metric} {}, loss {}.\n",
            num(&b["epoch"]),
            num(&b["val"]["metric"]),
            num(&b["val"]["loss"])
        )),
        None => s.push_str("No validation epoch recorded.\n"),
    }
    s.push_str("\n## Test\n\n");
    match c.test.and_then(|t| t.get("metrics")).and_then(Value::as_object) {
        Some(m) => {
            s.push_str("| metric | mean | 95% CI |\n|---|---|---|\n");
            for (k, v) in m {
                s.push_str(&format!(
                    "| {k} | {} | {} – {} |\n",
                    num(&v["mean"]),
                    num(&v["ci_low"]),
                    num(&v["ci_high"])
                ));
            }
        }
        None => s.push_str(
            "Not evaluated yet: `bwb eval` then `bwb classify` write the test metrics, and the next `--auto-upload` adds them here.\n",
        ),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_card_names_the_base_task_data_hyperparameters_and_metrics() {
        let record = json!({
            "metric": "accuracy", "train_examples": 500, "val_examples": 100, "seed": 42,
            "steps": 63, "epochs_run": 2, "device": "Cuda", "dtype": "BF16",
            "hyperparameters": {"lr": 0.0002, "epochs": 2, "lora_r": 16},
            "best": {"epoch": 2, "val": {"metric": 0.81, "loss": 0.42}},
        });
        let test = json!({"metrics": {"accuracy": {"mean": 0.8, "ci_low": 0.75, "ci_high": 0.85}}});
        let card = model_card(&CardInput {
            repo: "me/bwb-smollm2-135m-fpb-lora-500",
            base: "HuggingFaceTB/SmolLM2-135M-Instruct",
            task_id: "fpb",
            task_name: "Financial PhraseBank",
            dataset: Some("takala/financial_phrasebank"),
            condition: "lora-500",
            record: &record,
            test: Some(&test),
        });
        for want in [
            "base_model: HuggingFaceTB/SmolLM2-135M-Instruct\n",
            "library_name: peft",
            "- takala/financial_phrasebank",
            "from_pretrained(\"me/bwb-smollm2-135m-fpb-lora-500\")",
            "| lr | 0.0002 |",
            "| lora_r | 16 |",
            "- training examples: 500",
            "accuracy 0.8100, loss 0.4200",
            "| accuracy | 0.8000 | 0.7500 – 0.8500 |",
        ] {
            assert!(card.contains(want), "missing {want:?} in\n{card}");
        }
        let untested = model_card(&CardInput {
            base: "smoke",
            test: None,
            ..CardInput {
                repo: "me/x",
                base: "",
                task_id: "fpb",
                task_name: "fpb",
                dataset: None,
                condition: "lora-500",
                record: &record,
                test: None,
            }
        });
        assert!(!untested.contains("base_model:"));
        assert!(untested.contains("Not evaluated yet"));
    }
}
