//! Chat templates from the tokenizer config, rendered with minijinja exactly like HF
//! transformers' `tokenizer.apply_chat_template(messages, tokenize=False, ...)`.
//!
//! HF renders with Jinja2 in an `ImmutableSandboxedEnvironment(trim_blocks=True,
//! lstrip_blocks=True, extensions=[loopcontrols])` plus `raise_exception`, `strftime_now` and
//! its own `tojson`. minijinja differs from Jinja2 in a few places that chat templates touch;
//! each is bridged here and pinned by tests/fixtures/chat/jinja_compat.json:
//! - Jinja2 turns `\r\n` / `\r` in the source into `\n` and drops one trailing newline
//!   ([`normalize_source`]).
//! - `{{ x }}` prints Python's `str(x)`: `None`, `True`, `1e+20`, `['a', 1]` ([`py_str`]).
//! - `tojson` is Python's `json.dumps(x, ensure_ascii=False)` with `", "` / `": "`
//!   separators, no HTML escaping ([`tojson`]).
//! - String methods use Python's whitespace and character (not byte) offsets
//!   ([`py_method`]); everything else falls back to minijinja-contrib's pycompat.
//! - HF's `{% generation %}` tag (assistant masks) renders its body unchanged
//!   ([`rewrite_generation_tags`]).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::value::{Kwargs, Rest, ValueKind};
use minijinja::{AutoEscape, Environment, ErrorKind, Output, State, Value};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The name the template is registered under; minijinja errors say `(in chat_template:LINE)`.
const TEMPLATE_NAME: &str = "chat_template";

/// Prefix `raise_exception` puts on its message so that `render` can tell a template's own
/// refusal from a Jinja error.
const RAISED: &str = "raise_exception: ";

/// The named special tokens HF passes to every template (`special_tokens_map`).
const SPECIAL_TOKENS: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// One chat turn, as HF templates see it: `{"role": ..., "content": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A compiled chat template plus the special-token strings it may print.
#[derive(Clone)]
pub struct ChatTemplate {
    source: String,
    /// `bos_token`, `eos_token`, ... as strings; absent tokens are absent (undefined in Jinja).
    special_tokens: BTreeMap<String, String>,
    env: Arc<Environment<'static>>,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_chars", &self.source.chars().count())
            .field("special_tokens", &self.special_tokens)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compile a Jinja chat template; bos/eos token strings are exposed to the template as
    /// `bos_token` / `eos_token`.
    pub fn new(source: &str, bos_token: Option<String>, eos_token: Option<String>) -> Result<Self> {
        let mut special_tokens = BTreeMap::new();
        if let Some(bos) = bos_token {
            special_tokens.insert("bos_token".to_string(), bos);
        }
        if let Some(eos) = eos_token {
            special_tokens.insert("eos_token".to_string(), eos);
        }
        Self::compile(source, special_tokens)
            .map_err(|e| Error::Config(format!("cannot compile the chat template: {e}")))
    }

    /// From an HF model directory: `chat_template.jinja` if present, else `chat_template` in
    /// tokenizer_config.json (a string, or a list of `{name, template}` where `default` is used),
    /// else `chat_template` in chat_template.json (multimodal processors). Special tokens
    /// (`bos_token`, `eos_token`, `pad_token`, ...) come from tokenizer_config.json, as strings
    /// or `{"content": ...}` objects. `Ok(None)` when the directory has no template.
    pub fn from_hf_dir(dir: &Path) -> Result<Option<Self>> {
        if !dir.is_dir() {
            return Err(Error::MissingInput(format!(
                "{} is not a directory; give the directory holding tokenizer_config.json",
                dir.display()
            )));
        }
        let config_path = dir.join("tokenizer_config.json");
        let config = read_json_object(&config_path)?;

        let jinja_path = dir.join("chat_template.jinja");
        let (source, origin) = if jinja_path.is_file() {
            (read_text(&jinja_path)?, jinja_path)
        } else if let Some(source) = match &config {
            Some(config) => template_from_config(&config_path, config)?,
            None => None,
        } {
            (source, config_path.clone())
        } else {
            let processor_path = dir.join("chat_template.json");
            match read_json_object(&processor_path)? {
                Some(processor) => match template_from_config(&processor_path, &processor)? {
                    Some(source) => (source, processor_path),
                    None => return Ok(None),
                },
                None => return Ok(None),
            }
        };

        let special_tokens = match &config {
            Some(config) => special_tokens_from_config(&config_path, config)?,
            None => BTreeMap::new(),
        };
        Self::compile(&source, special_tokens)
            .map(Some)
            .map_err(|e| Error::BadFile {
                path: origin,
                message: format!("cannot compile the chat template: {e}; fix the template"),
            })
    }

    /// Render like transformers' `apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt, **kwargs)`: the template sees `messages`, `add_generation_prompt`,
    /// `tools=None`, `documents=None`, the special tokens, then `kwargs` (which override all but
    /// `messages` and `add_generation_prompt`).
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        kwargs: &BTreeMap<String, serde_json::Value>,
    ) -> Result<String> {
        if messages.is_empty() {
            return Err(Error::Config(
                "cannot apply a chat template to an empty conversation; give at least one message"
                    .to_string(),
            ));
        }
        for reserved in ["messages", "add_generation_prompt"] {
            if kwargs.contains_key(reserved) {
                return Err(Error::Config(format!(
                    "chat template argument `{reserved}` is set by bwb itself; remove it from the template kwargs"
                )));
            }
        }
        let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
        for (name, token) in &self.special_tokens {
            ctx.insert(name.clone(), Value::from(token.as_str()));
        }
        ctx.insert("tools".to_string(), Value::from(()));
        ctx.insert("documents".to_string(), Value::from(()));
        for (name, value) in kwargs {
            ctx.insert(name.clone(), Value::from_serialize(value));
        }
        ctx.insert("messages".to_string(), Value::from_serialize(messages));
        ctx.insert(
            "add_generation_prompt".to_string(),
            Value::from(add_generation_prompt),
        );

        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| Error::Config(format!("chat template is not loaded: {e}")))?;
        template
            .render(Value::from_iter(ctx))
            .map_err(|e| Error::Config(render_error_message(&e)))
    }

    /// The template text as given (before newline normalisation).
    pub fn source(&self) -> &str {
        &self.source
    }

    fn compile(
        source: &str,
        special_tokens: BTreeMap<String, String>,
    ) -> std::result::Result<Self, String> {
        let mut env = Environment::new();
        env.set_debug(false); // keeps errors to one line
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        // normalize_source already dropped the one trailing newline Jinja2 drops.
        env.set_keep_trailing_newline(true);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_formatter(|out: &mut Output, _state: &State, value: &Value| {
            py_str(out, value).map_err(minijinja::Error::from)
        });
        env.set_unknown_method_callback(py_method);
        env.add_filter("tojson", tojson);
        env.add_filter("string", |value: &Value| -> String {
            let mut out = String::new();
            // Writing to a String cannot fail.
            let _ = py_str(&mut out, value);
            out
        });
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);

        let prepared = rewrite_generation_tags(&normalize_source(source));
        env.add_template_owned(TEMPLATE_NAME, prepared)
            .map_err(|e| one_line(&e))?;
        Ok(Self {
            source: source.to_string(),
            special_tokens,
            env: Arc::new(env),
        })
    }
}

fn one_line(e: &minijinja::Error) -> String {
    e.to_string().replace('\n', " ")
}

fn render_error_message(e: &minijinja::Error) -> String {
    if let Some(message) = e.detail().and_then(|d| d.strip_prefix(RAISED)) {
        let line = e
            .line()
            .map(|l| format!(" (template line {l})"))
            .unwrap_or_default();
        format!(
            "the chat template rejected the conversation: {}{line}; change the messages to suit this model's template",
            message.replace('\n', " ")
        )
    } else {
        format!(
            "cannot render the chat template: {}; the template uses a feature bwb does not support or expects other inputs",
            one_line(e)
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Reading HF directories

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        message: format!("cannot read: {e}; check the file is readable UTF-8 text"),
    })
}

/// `Ok(None)` if the file does not exist; an error if it is not a JSON object.
fn read_json_object(path: &Path) -> Result<Option<serde_json::Map<String, serde_json::Value>>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = read_text(path)?;
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(map)) => Ok(Some(map)),
        Ok(other) => Err(bad_file(
            path,
            format!(
                "expected a JSON object, found {}; re-download the tokenizer files",
                json_kind(&other)
            ),
        )),
        Err(e) => Err(bad_file(
            path,
            format!("invalid JSON: {e}; re-download the tokenizer files"),
        )),
    }
}

fn bad_file(path: &Path, message: String) -> Error {
    Error::BadFile {
        path: PathBuf::from(path),
        message,
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// `chat_template` as a string, or the `default` entry of a list of `{name, template}`.
fn template_from_config(
    path: &Path,
    config: &serde_json::Map<String, serde_json::Value>,
) -> Result<Option<String>> {
    match config.get("chat_template") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Array(entries)) => {
            let mut names = Vec::new();
            for entry in entries {
                let name = entry.get("name").and_then(|v| v.as_str());
                let template = entry.get("template").and_then(|v| v.as_str());
                match (name, template) {
                    (Some("default"), Some(template)) => return Ok(Some(template.to_string())),
                    (Some(name), Some(_)) => names.push(name.to_string()),
                    _ => {
                        return Err(bad_file(
                            path,
                            "`chat_template` list entries must be {\"name\": string, \"template\": string}; fix or re-download the file".to_string(),
                        ))
                    }
                }
            }
            Err(bad_file(
                path,
                format!(
                    "`chat_template` lists templates [{}] but none is named `default`; add a `default` entry",
                    names.join(", ")
                ),
            ))
        }
        Some(other) => Err(bad_file(
            path,
            format!(
                "`chat_template` must be a string or a list of {{name, template}}, found {}",
                json_kind(other)
            ),
        )),
    }
}

/// The named special tokens: each a string or an AddedToken object `{"content": ...}`.
fn special_tokens_from_config(
    path: &Path,
    config: &serde_json::Map<String, serde_json::Value>,
) -> Result<BTreeMap<String, String>> {
    let mut tokens = BTreeMap::new();
    for name in SPECIAL_TOKENS {
        let token = match config.get(name) {
            None | Some(serde_json::Value::Null) => continue,
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Object(obj)) => match obj.get("content") {
                Some(serde_json::Value::String(s)) => s.clone(),
                _ => {
                    return Err(bad_file(
                        path,
                        format!("`{name}` is an object without a string `content`; fix or re-download the file"),
                    ))
                }
            },
            Some(other) => {
                return Err(bad_file(
                    path,
                    format!(
                        "`{name}` must be a string or {{\"content\": string}}, found {}",
                        json_kind(other)
                    ),
                ))
            }
        };
        tokens.insert(name.to_string(), token);
    }
    Ok(tokens)
}

// ---------------------------------------------------------------------------------------------
// Jinja2 source handling

/// Jinja2's lexer splits the source on `\r\n|\r|\n`, drops one trailing empty line
/// (`keep_trailing_newline=False`) and joins with `\n`.
fn normalize_source(source: &str) -> String {
    let mut s = source.replace("\r\n", "\n").replace('\r', "\n");
    if s.ends_with('\n') {
        s.pop();
    }
    s
}

/// HF's `{% generation %}...{% endgeneration %}` marks assistant tokens and renders its body
/// as is; minijinja does not know the tag, so it becomes `{% if true %}...{% endif %}`, which
/// keeps the tag's whitespace control (`-`, `+`, trim_blocks) intact.
fn rewrite_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        let Some(end) = tag.find("%}") else {
            break;
        };
        let inner = &tag[2..end];
        let (open, body, close) = split_whitespace_control(inner);
        let replacement = match body.trim() {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(keyword) => {
                out.push_str("{%");
                out.push_str(open);
                out.push(' ');
                out.push_str(keyword);
                out.push(' ');
                out.push_str(close);
                out.push_str("%}");
            }
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

/// `"- generation -"` → `("-", " generation ", "-")`.
fn split_whitespace_control(inner: &str) -> (&str, &str, &str) {
    let open = if inner.starts_with('-') || inner.starts_with('+') {
        &inner[..1]
    } else {
        ""
    };
    let inner = &inner[open.len()..];
    let close = if inner.ends_with('-') || inner.ends_with('+') {
        &inner[inner.len() - 1..]
    } else {
        ""
    };
    (open, &inner[..inner.len() - close.len()], close)
}

// ---------------------------------------------------------------------------------------------
// Python-compatible printing: str(), repr(), float repr

/// Python's `str(value)`, which is what `{{ value }}` prints in Jinja2.
fn py_str(out: &mut impl fmt::Write, value: &Value) -> fmt::Result {
    match value.kind() {
        ValueKind::String => out.write_str(value.as_str().unwrap_or_default()),
        ValueKind::Undefined => Ok(()),
        _ => py_repr(out, value),
    }
}

/// Python's `repr(value)` for the JSON-like values templates handle.
fn py_repr(out: &mut impl fmt::Write, value: &Value) -> fmt::Result {
    match value.kind() {
        ValueKind::Undefined => Ok(()),
        ValueKind::None => out.write_str("None"),
        ValueKind::Bool => out.write_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => {
            if value.is_integer() {
                write!(out, "{value}")
            } else {
                match f64::try_from(value.clone()) {
                    Ok(f) => out.write_str(&py_float_repr(f)),
                    Err(_) => write!(out, "{value}"),
                }
            }
        }
        ValueKind::String => py_repr_str(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            out.write_char('[')?;
            if let Ok(iter) = value.try_iter() {
                for (i, item) in iter.enumerate() {
                    if i > 0 {
                        out.write_str(", ")?;
                    }
                    py_repr(out, &item)?;
                }
            }
            out.write_char(']')
        }
        ValueKind::Map => {
            out.write_char('{')?;
            if let Ok(iter) = value.try_iter() {
                for (i, key) in iter.enumerate() {
                    if i > 0 {
                        out.write_str(", ")?;
                    }
                    py_repr(out, &key)?;
                    out.write_str(": ")?;
                    py_repr(out, &value.get_item(&key).unwrap_or_default())?;
                }
            }
            out.write_char('}')
        }
        _ => write!(out, "{value}"),
    }
}

/// Python's `repr(str)`: single quotes unless the text has `'` and no `"`.
fn py_repr_str(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.write_char(quote)?;
    for c in s.chars() {
        match c {
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c == quote => {
                out.write_char('\\')?;
                out.write_char(c)?;
            }
            // Python escapes what `str.isprintable` rejects: controls and non-space separators.
            c if c.is_control() || (c != ' ' && c.is_whitespace()) => {
                let code = c as u32;
                if code <= 0xff {
                    write!(out, "\\x{code:02x}")?
                } else if code <= 0xffff {
                    write!(out, "\\u{code:04x}")?
                } else {
                    write!(out, "\\U{code:08x}")?
                }
            }
            c => out.write_char(c)?,
        }
    }
    out.write_char(quote)
}

/// Python's `repr(float)`: shortest round-trip digits, positional for exponents in [-4, 16),
/// otherwise `1.5e+20` / `1e-05`.
fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    // Rust's `{:e}` gives the shortest round-trip digits, e.g. "-1.2345e-7".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let n = digits.len() as i32;
    let body = if (-4..16).contains(&exp) {
        if exp < 0 {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        } else if exp >= n - 1 {
            format!("{digits}{}.0", "0".repeat((exp - (n - 1)) as usize))
        } else {
            let point = (exp + 1) as usize;
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    } else {
        let rest = &digits[1..];
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{}{frac}e{exp_sign}{:02}", &digits[..1], exp.abs())
    };
    format!("{sign}{body}")
}

// ---------------------------------------------------------------------------------------------
// tojson: Python's json.dumps

/// HF's `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`, i.e.
/// `json.dumps` with those arguments (positional or keyword).
fn tojson(value: &Value, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    const NAMES: [&str; 4] = ["ensure_ascii", "indent", "separators", "sort_keys"];
    if args.len() > NAMES.len() {
        return Err(minijinja::Error::new(
            ErrorKind::TooManyArguments,
            "tojson takes at most 4 arguments",
        ));
    }
    let mut opts: [Value; 4] = Default::default();
    for (slot, arg) in opts.iter_mut().zip(args.iter()) {
        *slot = arg.clone();
    }
    for (slot, name) in opts.iter_mut().zip(NAMES) {
        if let Some(v) = kwargs.get::<Option<Value>>(name)? {
            *slot = v;
        }
    }
    kwargs.assert_all_used()?;
    let [ensure_ascii, indent, separators, sort_keys] = opts;

    let indent = match indent.kind() {
        ValueKind::Undefined | ValueKind::None => None,
        ValueKind::String => Some(indent.as_str().unwrap_or_default().to_string()),
        _ => match indent.as_i64() {
            Some(n) => Some(" ".repeat(n.max(0) as usize)),
            None => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson indent must be an integer or a string",
                ))
            }
        },
    };
    let (item_sep, key_sep) = match separators.kind() {
        ValueKind::Undefined | ValueKind::None => {
            let item = if indent.is_some() { "," } else { ", " };
            (item.to_string(), ": ".to_string())
        }
        _ => {
            let parts: Vec<String> = separators
                .try_iter()?
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .unwrap_or_default();
            match <[String; 2]>::try_from(parts) {
                Ok([item, key]) => (item, key),
                Err(_) => {
                    return Err(minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson separators must be a pair of strings",
                    ))
                }
            }
        }
    };
    let style = JsonStyle {
        ensure_ascii: ensure_ascii.is_true(),
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.is_true(),
    };
    let mut out = String::new();
    style.write(&mut out, value, 0)?;
    Ok(Value::from_safe_string(out))
}

struct JsonStyle {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

impl JsonStyle {
    fn write(&self, out: &mut String, value: &Value, level: usize) -> Result<(), minijinja::Error> {
        match value.kind() {
            ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => {
                if value.is_integer() {
                    out.push_str(&value.to_string());
                } else {
                    let f = f64::try_from(value.clone())?;
                    out.push_str(&match f {
                        f if f.is_nan() => "NaN".to_string(),
                        f if f == f64::INFINITY => "Infinity".to_string(),
                        f if f == f64::NEG_INFINITY => "-Infinity".to_string(),
                        f => py_float_repr(f),
                    });
                }
            }
            ValueKind::String => self.write_str(out, value.as_str().unwrap_or_default()),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                if items.is_empty() {
                    out.push_str("[]");
                    return Ok(());
                }
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    self.separate(out, i, level + 1);
                    self.write(out, item, level + 1)?;
                }
                self.newline(out, level);
                out.push(']');
            }
            ValueKind::Map => {
                let mut entries = Vec::new();
                for key in value.try_iter()? {
                    let item = value.get_item(&key)?;
                    entries.push((json_key(&key)?, item));
                }
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                }
                if entries.is_empty() {
                    out.push_str("{}");
                    return Ok(());
                }
                out.push('{');
                for (i, (key, item)) in entries.iter().enumerate() {
                    self.separate(out, i, level + 1);
                    self.write_str(out, key);
                    out.push_str(&self.key_sep);
                    self.write(out, item, level + 1)?;
                }
                self.newline(out, level);
                out.push('}');
            }
            kind => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: object of type {kind} is not JSON serializable"),
                ))
            }
        }
        Ok(())
    }

    fn separate(&self, out: &mut String, index: usize, level: usize) {
        if index > 0 {
            out.push_str(&self.item_sep);
        }
        self.newline(out, level);
    }

    fn newline(&self, out: &mut String, level: usize) {
        if let Some(indent) = &self.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(indent);
            }
        }
    }

    fn write_str(&self, out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && !(' '..='~').contains(&c)) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        let _ = write!(out, "\\u{unit:04x}");
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// `json.dumps` turns str/int/float/bool/None keys into strings.
fn json_key(key: &Value) -> Result<String, minijinja::Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
        ValueKind::None => Ok("null".to_string()),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.to_string()),
        ValueKind::Number => {
            let mut s = String::new();
            py_repr(&mut s, key).map_err(minijinja::Error::from)?;
            Ok(s)
        }
        kind => Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("tojson: keys must be str, int, float, bool or None, not {kind}"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Globals HF adds: raise_exception, strftime_now

fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!("{RAISED}{message}"),
    ))
}

/// HF's `datetime.now().strftime(format)`. Uses UTC (there is no time-zone database here);
/// on a machine whose local zone is UTC this is identical.
fn strftime_now(format: &str) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    strftime(format, secs)
}

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// C `strftime` (C locale, UTC) for the codes date-aware templates use, with glibc's `-`
/// (no padding) flag. Unknown codes are printed as written.
fn strftime(format: &str, unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs_of_day = unix_secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    let weekday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };
    let month_name = MONTHS[(month - 1) as usize];
    let weekday_name = WEEKDAYS[weekday];

    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let no_pad = chars.peek() == Some(&'-');
        if no_pad {
            chars.next();
        }
        let num = |n: i64, width: usize| {
            if no_pad {
                n.to_string()
            } else {
                format!("{n:0width$}")
            }
        };
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&num(year.rem_euclid(100), 2)),
            Some('m') => out.push_str(&num(month, 2)),
            Some('d') => out.push_str(&num(day, 2)),
            Some('e') => out.push_str(&format!("{day:2}")),
            Some('j') => out.push_str(&num(day_of_year, 3)),
            Some('H') => out.push_str(&num(hour, 2)),
            Some('I') => out.push_str(&num(hour12, 2)),
            Some('M') => out.push_str(&num(minute, 2)),
            Some('S') => out.push_str(&num(second, 2)),
            Some('p') => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            Some('B') => out.push_str(month_name),
            Some('b') | Some('h') => out.push_str(&month_name[..3]),
            Some('A') => out.push_str(weekday_name),
            Some('a') => out.push_str(&weekday_name[..3]),
            Some('F') => out.push_str(&format!("{year}-{month:02}-{day:02}")),
            Some('T') => out.push_str(&format!("{hour:02}:{minute:02}:{second:02}")),
            Some('Z') => out.push_str("UTC"),
            Some('z') => out.push_str("+0000"),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                if no_pad {
                    out.push('-');
                }
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ---------------------------------------------------------------------------------------------
// Python string methods

/// Python's `str.isspace` set: Unicode White_Space plus the ASCII separators \x1c-\x1f.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Methods where Python and minijinja-contrib's pycompat differ (whitespace set, character
/// offsets, `split` details); the rest go to pycompat.
fn py_method(
    state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, minijinja::Error> {
    let Some(s) = value.as_str().filter(|_| value.kind() == ValueKind::String) else {
        return minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args);
    };
    match method {
        "strip" | "lstrip" | "rstrip" => {
            let (chars,): (Option<Option<String>>,) = minijinja::value::from_args(args)?;
            let chars: Option<Vec<char>> = chars.flatten().map(|c| c.chars().collect());
            let strip = |c: char| match &chars {
                Some(set) => set.contains(&c),
                None => py_space(c),
            };
            let out = match method {
                "strip" => s.trim_matches(strip),
                "lstrip" => s.trim_start_matches(strip),
                _ => s.trim_end_matches(strip),
            };
            Ok(Value::from(out))
        }
        "split" => {
            let (sep, maxsplit): (Option<Option<String>>, Option<i64>) =
                minijinja::value::from_args(args)?;
            let maxsplit = maxsplit.filter(|n| *n >= 0).map(|n| n as usize);
            let parts = match sep.flatten() {
                Some(sep) if sep.is_empty() => {
                    return Err(minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        "split: empty separator",
                    ))
                }
                Some(sep) => match maxsplit {
                    Some(n) => s.splitn(n + 1, sep.as_str()).map(Value::from).collect(),
                    None => s.split(sep.as_str()).map(Value::from).collect(),
                },
                None => py_split_whitespace(s, maxsplit),
            };
            Ok(Value::from(parts))
        }
        "find" | "rfind" | "index" | "rindex" => {
            let (sub, start, end): (String, Option<i64>, Option<i64>) =
                minijinja::value::from_args(args)?;
            let chars: Vec<char> = s.chars().collect();
            let len = chars.len() as i64;
            let clamp = |i: i64| if i < 0 { (i + len).max(0) } else { i.min(len) } as usize;
            let lo = clamp(start.unwrap_or(0));
            let hi = clamp(end.unwrap_or(len));
            let found = if lo > hi {
                None
            } else {
                let window: String = chars[lo..hi].iter().collect();
                let byte = if method.starts_with('r') {
                    window.rfind(sub.as_str())
                } else {
                    window.find(sub.as_str())
                };
                byte.map(|b| (lo + window[..b].chars().count()) as i64)
            };
            match (found, method) {
                (Some(i), _) => Ok(Value::from(i)),
                (None, "find" | "rfind") => Ok(Value::from(-1)),
                (None, _) => Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    "substring not found",
                )),
            }
        }
        _ => minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args),
    }
}

/// Python's `str.split()` without a separator: runs of whitespace, no empty parts; after
/// `maxsplit` splits the remainder is kept with its leading whitespace removed.
fn py_split_whitespace(s: &str, maxsplit: Option<usize>) -> Vec<Value> {
    let mut parts = Vec::new();
    let mut rest = s.trim_start_matches(py_space);
    while !rest.is_empty() {
        if maxsplit.is_some_and(|n| parts.len() >= n) {
            parts.push(Value::from(rest));
            break;
        }
        match rest.find(py_space) {
            Some(end) => {
                parts.push(Value::from(&rest[..end]));
                rest = rest[end..].trim_start_matches(py_space);
            }
            None => {
                parts.push(Value::from(rest));
                break;
            }
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_str(source: &str, kwargs: serde_json::Value) -> Result<String> {
        let t = ChatTemplate::new(source, Some("<s>".into()), Some("</s>".into()))?;
        let kwargs = serde_json::from_value(kwargs).unwrap();
        t.render(&[Message::user("hi")], false, &kwargs)
    }

    #[test]
    fn float_repr_matches_python() {
        for (f, py) in [
            (1.5, "1.5"),
            (2.0, "2.0"),
            (1e20, "1e+20"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-1.25e-7, "-1.25e-07"),
            (123456.789, "123456.789"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (-0.0, "-0.0"),
        ] {
            assert_eq!(py_float_repr(f), py, "{f}");
        }
    }

    #[test]
    fn strftime_formats_known_instant() {
        // 2024-02-29 13:05:09 UTC, a Thursday.
        let t = 1_709_211_909;
        assert_eq!(
            strftime("%Y-%m-%d %H:%M:%S %a %A %b %B %j %y %I%p %-d %e|%%|%Q", t),
            "2024-02-29 13:05:09 Thu Thursday Feb February 060 24 01PM 29 29|%|%Q"
        );
        assert_eq!(strftime("%d %b %Y", 0), "01 Jan 1970");
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn strftime_now_renders_current_year() {
        let out = render_str("{{ strftime_now('%Y') }}", serde_json::json!({})).unwrap();
        assert_eq!(out.len(), 4);
        assert!(out.as_str() >= "2024", "{out}");
    }

    #[test]
    fn generation_tags_render_their_body() {
        assert_eq!(
            rewrite_generation_tags("a{% generation %}b{%- endgeneration -%}c{% if x %}"),
            "a{% if true %}b{%- endif -%}c{% if x %}"
        );
        let out = render_str(
            "{% for m in messages %}{% generation %}\n[{{ m.content }}]{% endgeneration %}{% endfor %}",
            serde_json::json!({}),
        )
        .unwrap();
        assert_eq!(out, "[hi]");
    }

    #[test]
    fn python_split_and_find() {
        let out = render_str(
            "{{ ' a\\x1cb  c '.split() }}{{ 'a b c'.split(none, 1) }}{{ 'ü-x'.find('x') }}{{ 'ü-x'.index('-') }}",
            serde_json::json!({}),
        )
        .unwrap();
        assert_eq!(out, "['a', 'b', 'c']['a', 'b c']21");
    }

    #[test]
    fn tojson_options() {
        let out = render_str(
            "{{ x|tojson(ensure_ascii=true) }}{{ x|tojson(separators=[',', ':']) }}{{ x|tojson(indent='\\t') }}",
            serde_json::json!({"x": {"k": ["é😀", 1]}}),
        )
        .unwrap();
        assert_eq!(
            out,
            "{\"k\": [\"\\u00e9\\ud83d\\ude00\", 1]}{\"k\":[\"é😀\",1]}{\n\t\"k\": [\n\t\t\"é😀\",\n\t\t1\n\t]\n}"
        );
    }

    #[test]
    fn reserved_kwargs_and_empty_conversation_are_errors() {
        let t = ChatTemplate::new("x", None, None).unwrap();
        let err = t.render(&[], false, &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("empty conversation"), "{err}");
        let kwargs = BTreeMap::from([("messages".to_string(), serde_json::json!([]))]);
        let err = t.render(&[Message::user("a")], false, &kwargs).unwrap_err();
        assert!(err.to_string().contains("`messages`"), "{err}");
    }

    #[test]
    fn compile_error_is_one_line_config_error() {
        let err = ChatTemplate::new("{% for m in messages %}\n{{ m", None, None).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with("cannot compile the chat template"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }
}
