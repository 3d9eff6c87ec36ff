#!/usr/bin/env python3
"""Generate the chat-template fixtures in tests/fixtures/chat/ with HF transformers.

The Rust side (src/prompt/chat_template.rs, minijinja) must render chat templates
byte-for-byte like ``tokenizer.apply_chat_template(messages, tokenize=False, ...)``.
This script asks transformers for the expected strings once; the JSON it writes is
committed and read by tests/it/chat_template.rs.

What it makes
-------------
* tests/fixtures/chat/qwen3.json   -- the real Qwen3 tokenizer in
  ../shared/tokenizers/qwen3 (template from its tokenizer_config.json), every
  conversation x add_generation_prompt in {False, True} x kwargs in
  {{}, {"enable_thinking": False}}.
* tests/fixtures/chat/smollm2.json -- SmolLM2-135M-Instruct's template, read from
  the GGUF metadata key ``tokenizer.chat_template`` of
  ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf and stored
  in the fixture together with the bos/eos token strings of that GGUF; every
  conversation x add_generation_prompt in {False, True}.
* tests/fixtures/chat/jinja_compat.json -- small synthetic templates that pin down
  the Jinja2 behaviour HF relies on (trim_blocks/lstrip_blocks, trailing newline,
  Python string methods, tojson, how None/True/lists print, loop controls...).

Each file records the transformers / jinja2 / gguf versions that produced it.

How the expectations are rendered
---------------------------------
Everything goes through the public ``apply_chat_template(..., tokenize=False)`` of
the Qwen3 tokenizer. For SmolLM2 and the synthetic templates the template is passed
with ``chat_template=`` and the bos/eos token strings as keyword arguments, which
transformers lets override the tokenizer's own special tokens (the GGUF tokenizer
itself cannot be loaded by transformers without torch).

How to rerun
------------
    python3 -m venv /tmp/venv-chat
    /tmp/venv-chat/bin/pip install transformers jinja2 gguf
    /tmp/venv-chat/bin/python scripts/make_chat_fixtures.py

No network, no torch. Deterministic: no template used here reads the clock, and the
JSON is written with sorted keys at the top level and fixed indentation.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
QWEN3_DIR = SHARED / "tokenizers" / "qwen3"
SMOLLM2_GGUF = SHARED / "models" / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = ROOT / "tests" / "fixtures" / "chat"


def conversations() -> list[tuple[str, list[dict[str, str]]]]:
    """The conversations every real template is rendered for (name, messages)."""
    return [
        ("single_user", [{"role": "user", "content": "What is the capital of France?"}]),
        (
            "system_user",
            [
                {"role": "system", "content": "You are a concise assistant."},
                {"role": "user", "content": "Classify: 'I lost my card'."},
            ],
        ),
        (
            "multi_turn",
            [
                {"role": "user", "content": "Hi!"},
                {"role": "assistant", "content": "Hello! How can I help?"},
                {"role": "user", "content": "Tell me a joke."},
            ],
        ),
        (
            "system_multi_turn",
            [
                {"role": "system", "content": "Answer with one word."},
                {"role": "user", "content": "Sky colour?"},
                {"role": "assistant", "content": "Blue"},
                {"role": "user", "content": "Grass colour?"},
            ],
        ),
        (
            "assistant_whitespace",
            [
                {"role": "user", "content": "  padded question  \n"},
                {"role": "assistant", "content": "\n\n  padded answer \n\n"},
                {"role": "user", "content": "\tand again\t"},
                {"role": "assistant", "content": "  final answer  "},
            ],
        ),
        (
            "unicode",
            [
                {"role": "system", "content": "Réponds en français. 答えてください。"},
                {"role": "user", "content": "Ünïcödé → 🚀 «quotes» \"double\" 'single' \\ backslash"},
                {"role": "assistant", "content": "Привет, мир! 👋🏽 ñ"},
                {"role": "user", "content": "漢字とかな"},
            ],
        ),
        (
            "empty_system",
            [
                {"role": "system", "content": ""},
                {"role": "user", "content": "Hello"},
            ],
        ),
        (
            "history_with_think",
            [
                {"role": "user", "content": "What is 2+2?"},
                {
                    "role": "assistant",
                    "content": "<think>\nThe user asks 2+2. That is 4.\n</think>\n\nIt is 4.",
                },
                {"role": "user", "content": "And 3+3?"},
            ],
        ),
        (
            "final_assistant_with_think",
            [
                {"role": "user", "content": "What is 5*5?"},
                {"role": "assistant", "content": "<think>\n5 times 5 is 25.\n</think>\n\n25"},
            ],
        ),
        (
            "ends_with_assistant",
            [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Say yes."},
                {"role": "assistant", "content": "Yes."},
            ],
        ),
    ]


# Synthetic templates: (name, template, messages, kwargs). Rendered with
# add_generation_prompt in {False, True}, bos_token="<s>", eos_token="</s>".
JINJA_MESSAGES = [
    {"role": "system", "content": "  Sys prompt.  "},
    {"role": "user", "content": "héllo wörld, ünïcode 🚀"},
    {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nanswer"},
    {"role": "user", "content": "a,b,,c"},
]

JINJA_TEMPLATES: list[tuple[str, str, dict]] = [
    (
        "whitespace_blocks",
        "{{ bos_token }}\n"
        "{% for message in messages %}\n"
        "    {% if message.role == 'user' %}\n"
        "        User: {{ message.content }}\n"
        "    {% elif message.role == 'assistant' %}\n"
        "  Assistant: {{ message.content }}{{ eos_token }}\n"
        "    {% else %}\n"
        "\t{# a comment #}\n"
        "System: {{ message.content }}\n"
        "    {% endif %}\n"
        "{% endfor %}\n"
        "{% if add_generation_prompt %}\n"
        "Assistant:\n"
        "{% endif %}\n",
        {},
    ),
    (
        "whitespace_dashes",
        "{%- for m in messages -%}\n  [{{- m.role -}}]  \n  {{ m.content }}\n{%- endfor %}\n"
        "{%+ if add_generation_prompt %}  GEN{% endif %}\n\n",
        {},
    ),
    ("trailing_newline_one", "x={{ messages|length }}\n", {}),
    ("trailing_newline_two", "x={{ messages|length }}\n\n", {}),
    ("trailing_crlf", "x={{ messages|length }}\r\n", {}),
    (
        "string_methods",
        "{% set c = messages[1].content %}{% set s = messages[0].content %}"
        "[{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.strip(' S.') }}]"
        "[{{ c.upper() }}|{{ c.lower() }}|{{ c.title() }}|{{ c.capitalize() }}]"
        "[{{ c.startswith('hé') }}|{{ c.endswith('🚀') }}|{{ c.startswith(('x', 'hél')) }}]"
        "[{{ c.find('wörld') }}|{{ c.rfind('o') }}|{{ c.count('o') }}|{{ c.replace('o', '0', 1) }}]"
        "[{{ messages[3].content.split(',') }}|{{ messages[3].content.split(',', 1) }}|{{ ' a  b \\n c '.split() }}]"
        "[{{ messages[2].content.split('</think>')[-1].lstrip('\\n') }}]"
        "[{{ messages[2].content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}]"
        "[{{ '-'.join(['a', 'b']) }}|{{ 'abc'.isalpha() }}|{{ '12'.isdigit() }}|{{ ' '.isspace() }}]"
        "[{{ c[1:4] }}|{{ c[-2:] }}|{{ c|length }}|{{ c[::-1] }}]",
        {},
    ),
    (
        "value_printing",
        "[{{ none_value }}|{{ true_value }}|{{ false_value }}|{{ 1.5 }}|{{ 2.0 }}|{{ 10 / 4 }}|{{ 7 // 2 }}"
        "|{{ 7 % 3 }}|{{ 2 ** 10 }}|{{ 1e20 }}|{{ 0.0001 }}]"
        "[{{ [1, 'a', none, true] }}|{{ {'k': 'v', 'n': 1} }}|{{ [\"it's\", 'a\\\\b\\n'] }}|{{ undefined_value }}]"
        "[{{ 'ab' ~ 1 ~ 'cd' }}|{{ 'x' * 3 }}|{{ 'ab' + 'cd' }}|{{ [1] + [2] }}]",
        {"none_value": None, "true_value": True, "false_value": False},
    ),
    (
        "tojson",
        "{{ messages[1] | tojson }}\n{{ tools | tojson }}\n{{ tools | tojson(indent=2) }}\n"
        "{{ {'b': 1, 'a': [1.5, none, true, 'x\"y\\\\z\\n\\t</s>&<']} | tojson }}\n"
        "{{ messages[1].content | tojson }}\n{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}\n"
        "{{ [] | tojson(indent=2) }}{{ {} | tojson }}",
        {
            "tools": [
                {
                    "function": {
                        "description": "Get the weather – in °C",
                        "name": "get_weather",
                        "parameters": {"properties": {"city": {"type": "string"}}, "type": "object"},
                    },
                    "type": "function",
                }
            ]
        },
    ),
    (
        "namespace_loops",
        "{% set ns = namespace(count=0, last='') %}"
        "{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}"
        "{% set ns.count = ns.count + 1 %}{% set ns.last = m.role %}"
        "{{ loop.index }}/{{ loop.index0 }}/{{ loop.length }}/{{ loop.first }}/{{ loop.last }}:{{ m.role }};"
        "{% if m.role == 'assistant' %}{% break %}{% endif %}{% endfor %}"
        "count={{ ns.count }} last={{ ns.last }}|"
        "{% for m in messages[::-1] %}{{ m.role[0] }}{% endfor %}|"
        "{% for m in messages[1:] %}{{ (messages|length - 1) - loop.index0 }}{% endfor %}|"
        "{% for k, v in {'x': 1, 'y': 2}.items() %}{{ k }}={{ v }},{% endfor %}|"
        "{% for i in range(3) %}{{ i }}{% endfor %}|"
        "{{ messages|map(attribute='role')|join(',') }}|"
        "{{ messages|selectattr('role', 'equalto', 'user')|list|length }}|"
        "{{ dict(a=1)['a'] }}",
        {},
    ),
    (
        "tests_and_defaults",
        "{{ enable_thinking is defined }}{{ enable_thinking is false }}{{ enable_thinking is true }}"
        "{{ missing is defined }}{{ missing is undefined }}{{ tools is none }}{{ documents is none }}"
        "{{ tools is defined }}|{{ messages[0].content is string }}{{ messages[0] is mapping }}"
        "{{ messages is sequence }}{{ messages is iterable }}{{ 3 is number }}{{ 3 is odd }}"
        "{{ 4 is even }}{{ 'x' is string }}{{ true is boolean }}|"
        "{{ messages[0].reasoning_content is defined }}{{ messages[0].get('role') }}"
        "{{ messages[0].get('nope', 'dflt') }}|{{ missing | default('d') }}"
        "{{ (messages[0].content | trim) }}|{{ messages[0].content | upper }}|"
        "{{ add_generation_prompt }}{% if not add_generation_prompt %}-no-gen{% endif %}",
        {"enable_thinking": False},
    ),
    (
        "misc_features",
        "{% macro turn(role, text, end='<|end|>') %}<|{{ role }}|>{{ text | trim }}{{ end }}{% endmacro %}"
        "{% set header %}H:{{ messages|length }}{% endset %}{{ header }}|"
        "{% for m in messages if m.role != 'system' %}"
        "{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('roles must alternate') }}{% endif %}"
        "{{ turn(m.role, m.content) }}{% if not loop.last %}{{ turn('sep', '', end='') }}{% endif %}"
        "{% endfor %}|"
        "{{ 'role' in messages[0] }}{{ 'tools' in messages[0] }}{{ 'x' in 'xyz' }}{{ 2 is in [1, 2] }}|"
        "{{ ['a', 'b', 'c'] | reject('equalto', 'b') | join(', ') }}|{{ [3, 1, 2] | select('odd') | list }}|"
        "{{ (messages | first).role }}{{ (messages | last).role }}|{{ '3' | int + 1 }}|{{ '2.5' | float }}|"
        "{{ 2.567 | round(1) }}|{{ -3 | abs }}|{% for k, v in {'b': 1, 'a': 2} | dictsort %}{{ k }}{{ v }}{% endfor %}|"
        "{{ 'yes' if add_generation_prompt else 'no' }}|{{ messages[1].content | replace('o', '0') | capitalize }}|"
        "{% for m in messages %}{{ loop.cycle('x', 'y') }}{% if loop.previtem is defined %}<{{ loop.previtem.role[0] }}{% endif %}{% endfor %}|"
        "{{ 'a\\nb' | indent(2) }}|{{ ['x', 'y'] | length }}{{ 'abc' | list }}|{{ messages[-1]['content'] }}",
        {},
    ),
]


def versions() -> dict[str, str]:
    import gguf
    import jinja2
    import transformers
    from importlib.metadata import version

    return {
        "transformers": transformers.__version__,
        "jinja2": jinja2.__version__,
        "gguf": version("gguf"),
        "python": sys.version.split()[0],
    }


def render(tok, messages, add_generation_prompt, kwargs, chat_template=None, tokens=None) -> str:
    extra = dict(tokens or {})
    extra.update(kwargs)
    return tok.apply_chat_template(
        messages,
        tokenize=False,
        add_generation_prompt=add_generation_prompt,
        chat_template=chat_template,
        **extra,
    )


def gguf_template_and_tokens(path: Path) -> tuple[str, dict[str, str]]:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    template = reader.fields["tokenizer.chat_template"].contents()
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    named = {
        "bos_token": tokens[reader.fields["tokenizer.ggml.bos_token_id"].contents()],
        "eos_token": tokens[reader.fields["tokenizer.ggml.eos_token_id"].contents()],
    }
    return template, named


def write(name: str, data: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)} ({len(text)} bytes, {len(data['cases'])} cases)")


def main() -> None:
    from transformers import AutoTokenizer

    if not QWEN3_DIR.is_dir() or not SMOLLM2_GGUF.is_file():
        sys.exit(f"need {QWEN3_DIR} and {SMOLLM2_GGUF} (the shared artifacts)")
    tok = AutoTokenizer.from_pretrained(str(QWEN3_DIR))
    meta = {"generator": "scripts/make_chat_fixtures.py", "versions": versions()}

    # (a) Qwen3, its own template and special tokens.
    cases = []
    for name, messages in conversations():
        for kwargs in ({}, {"enable_thinking": False}):
            for gen in (False, True):
                cases.append(
                    {
                        "name": name,
                        "messages": messages,
                        "add_generation_prompt": gen,
                        "kwargs": kwargs,
                        "expected": render(tok, messages, gen, kwargs),
                    }
                )
    write(
        "qwen3.json",
        {
            **meta,
            "source": "../shared/tokenizers/qwen3",
            "special_tokens": tok.special_tokens_map,
            "cases": cases,
        },
    )

    # (b) SmolLM2: template and bos/eos from the GGUF.
    template, tokens = gguf_template_and_tokens(SMOLLM2_GGUF)
    cases = []
    for name, messages in conversations():
        for gen in (False, True):
            cases.append(
                {
                    "name": name,
                    "messages": messages,
                    "add_generation_prompt": gen,
                    "kwargs": {},
                    "expected": render(tok, messages, gen, {}, template, tokens),
                }
            )
    write(
        "smollm2.json",
        {
            **meta,
            "source": "../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
            "template": template,
            "bos_token": tokens["bos_token"],
            "eos_token": tokens["eos_token"],
            "cases": cases,
        },
    )

    # (c) Jinja2 behaviour HF relies on.
    tokens = {"bos_token": "<s>", "eos_token": "</s>"}
    cases = []
    for name, template, kwargs in JINJA_TEMPLATES:
        for gen in (False, True):
            cases.append(
                {
                    "name": name,
                    "template": template,
                    "messages": JINJA_MESSAGES,
                    "add_generation_prompt": gen,
                    "kwargs": kwargs,
                    "expected": render(tok, JINJA_MESSAGES, gen, kwargs, template, tokens),
                }
            )
    write("jinja_compat.json", {**meta, **tokens, "cases": cases})


if __name__ == "__main__":
    main()
