//! Chat templates render byte-identically to HF transformers' `apply_chat_template`.
//! Expectations come from scripts/make_chat_fixtures.py (tests/fixtures/chat/*.json).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bwb::error::Error;
use bwb::prompt::chat_template::{ChatTemplate, Message};
use serde::Deserialize;

use crate::common::REPO;

#[derive(Deserialize)]
struct Fixture {
    versions: BTreeMap<String, String>,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    bos_token: Option<String>,
    #[serde(default)]
    eos_token: Option<String>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    /// Per-case template (jinja_compat.json only).
    #[serde(default)]
    template: Option<String>,
    messages: Vec<Message>,
    add_generation_prompt: bool,
    kwargs: BTreeMap<String, serde_json::Value>,
    expected: String,
}

fn fixture(name: &str) -> Fixture {
    let path = Path::new(REPO).join("tests/fixtures/chat").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let fixture: Fixture = serde_json::from_str(&text).unwrap();
    assert!(fixture.versions.contains_key("transformers"));
    fixture
}

fn qwen3_dir() -> Option<PathBuf> {
    let dir = Path::new(REPO).join("../shared/tokenizers/qwen3");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipping: {} is absent", dir.display());
        None
    }
}

/// Renders every case and reports all mismatches at once.
fn check_cases(fixture: &Fixture, template_for: impl Fn(&Case) -> ChatTemplate) {
    let mut failures = Vec::new();
    for case in &fixture.cases {
        let template = template_for(case);
        let label = format!(
            "{} (add_generation_prompt={}, kwargs={:?})",
            case.name, case.add_generation_prompt, case.kwargs
        );
        match template.render(&case.messages, case.add_generation_prompt, &case.kwargs) {
            Ok(got) if got == case.expected => {}
            Ok(got) => failures.push(format!(
                "{label}\n  expected {:?}\n  got      {:?}",
                case.expected, got
            )),
            Err(e) => failures.push(format!("{label}\n  error: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from transformers:\n{}",
        failures.len(),
        fixture.cases.len(),
        failures.join("\n")
    );
}

#[test]
fn chat_template_qwen3_matches_transformers() {
    let Some(dir) = qwen3_dir() else { return };
    let template = ChatTemplate::from_hf_dir(&dir).unwrap().unwrap();
    let fixture = fixture("qwen3.json");
    assert_eq!(fixture.cases.len(), 40);
    check_cases(&fixture, |_| template.clone());
}

#[test]
fn chat_template_qwen3_thinking_off_for_eval() {
    let Some(dir) = qwen3_dir() else { return };
    let template = ChatTemplate::from_hf_dir(&dir).unwrap().unwrap();
    let kwargs = BTreeMap::from([("enable_thinking".to_string(), serde_json::json!(false))]);
    let out = template
        .render(&[Message::user("Classify this.")], true, &kwargs)
        .unwrap();
    assert_eq!(
        out,
        "<|im_start|>user\nClassify this.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    );
}

#[test]
fn chat_template_smollm2_matches_transformers() {
    let fixture = fixture("smollm2.json");
    let template = ChatTemplate::new(
        fixture.template.as_deref().unwrap(),
        fixture.bos_token.clone(),
        fixture.eos_token.clone(),
    )
    .unwrap();
    assert_eq!(fixture.cases.len(), 20);
    check_cases(&fixture, |_| template.clone());
}

#[test]
fn chat_template_jinja_behaviour_matches_transformers() {
    let fixture = fixture("jinja_compat.json");
    check_cases(&fixture, |case| {
        ChatTemplate::new(
            case.template.as_deref().unwrap(),
            fixture.bos_token.clone(),
            fixture.eos_token.clone(),
        )
        .unwrap()
    });
}

#[test]
fn chat_template_raise_exception_becomes_error_with_message() {
    let source = "{% if messages[0].role != 'user' %}{{ raise_exception('Conversations must start with a user turn!') }}{% endif %}ok";
    let template = ChatTemplate::new(source, None, None).unwrap();
    assert_eq!(
        template
            .render(&[Message::user("hi")], false, &BTreeMap::new())
            .unwrap(),
        "ok"
    );
    let err = template
        .render(&[Message::assistant("hi")], false, &BTreeMap::new())
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("Conversations must start with a user turn!"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn chat_template_malformed_tokenizer_config_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer_config.json");
    std::fs::write(&path, "{\"chat_template\": \"{{ x }}\",\n  oops").unwrap();
    let err = ChatTemplate::from_hf_dir(dir.path()).unwrap_err();
    assert!(matches!(err, Error::BadFile { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("invalid JSON"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");

    // Valid JSON of the wrong shape names the field.
    std::fs::write(&path, r#"{"chat_template": 3}"#).unwrap();
    let msg = ChatTemplate::from_hf_dir(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("tokenizer_config.json") && msg.contains("`chat_template`"),
        "{msg}"
    );

    // A template that does not compile names the file it came from.
    std::fs::write(&path, r#"{"chat_template": "{% for m in messages %}"}"#).unwrap();
    let msg = ChatTemplate::from_hf_dir(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("tokenizer_config.json") && msg.contains("cannot compile"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn chat_template_dir_without_template_is_none() {
    let dir = tempfile::tempdir().unwrap();
    assert!(ChatTemplate::from_hf_dir(dir.path()).unwrap().is_none());
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"eos_token": "</s>", "chat_template": null}"#,
    )
    .unwrap();
    assert!(ChatTemplate::from_hf_dir(dir.path()).unwrap().is_none());
    let missing = dir.path().join("nope");
    let msg = ChatTemplate::from_hf_dir(&missing).unwrap_err().to_string();
    assert!(
        msg.contains("nope") && msg.contains("not a directory"),
        "{msg}"
    );
}

#[test]
fn chat_template_list_of_named_templates_uses_default() {
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({
        "bos_token": {"content": "<s>", "lstrip": false, "normalized": false, "special": true},
        "eos_token": "</s>",
        "chat_template": [
            {"name": "tool_use", "template": "TOOLS"},
            {"name": "default", "template": "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}{{ eos_token }}{% endfor %}"},
        ],
    });
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    let template = ChatTemplate::from_hf_dir(dir.path()).unwrap().unwrap();
    let out = template
        .render(
            &[Message::system("s"), Message::user("u")],
            false,
            &BTreeMap::new(),
        )
        .unwrap();
    assert_eq!(out, "<s>system: s</s>user: u</s>");

    // Without a `default` entry the error names the templates that are there.
    let config = serde_json::json!({"chat_template": [{"name": "tool_use", "template": "T"}]});
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    let msg = ChatTemplate::from_hf_dir(dir.path())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("tool_use") && msg.contains("default"), "{msg}");
}

#[test]
fn chat_template_jinja_file_takes_precedence() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"eos_token": "<|end|>", "pad_token": "<pad>", "chat_template": "FROM CONFIG"}"#,
    )
    .unwrap();
    // One trailing newline is dropped, like Jinja2's keep_trailing_newline=False.
    std::fs::write(
        dir.path().join("chat_template.jinja"),
        "FROM FILE {{ messages[0].content }}{{ eos_token }}{{ pad_token }}\n",
    )
    .unwrap();
    let template = ChatTemplate::from_hf_dir(dir.path()).unwrap().unwrap();
    assert!(template.source().starts_with("FROM FILE"));
    let out = template
        .render(&[Message::user("x")], false, &BTreeMap::new())
        .unwrap();
    assert_eq!(out, "FROM FILE x<|end|><pad>");
}

#[test]
fn chat_template_kwargs_reach_the_template() {
    let template = ChatTemplate::new(
        "{{ add_generation_prompt }} {{ custom }} {{ tools is none }} {{ bos_token is defined }}",
        None,
        Some("</s>".into()),
    )
    .unwrap();
    let kwargs = BTreeMap::from([("custom".to_string(), serde_json::json!([1, "a"]))]);
    let out = template
        .render(&[Message::user("x")], true, &kwargs)
        .unwrap();
    assert_eq!(out, "True [1, 'a'] True False");
}
