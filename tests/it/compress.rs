//! The local compressors (`selective`, `lingua`) on the real SmolLM2 GGUF from ../shared
//! (skipped with a message without it): the token budget, determinism, forced tokens and
//! question-aware selection.

use std::sync::Arc;

use bwb::compress::local::{Local, Method, Options};
use bwb::compress::select::Unit;
use bwb::compress::Compressor;
use bwb::model::load::{load, LoadOptions, LoadedModel, ModelSource};

fn model() -> Option<Arc<LoadedModel>> {
    let path = crate::generate::smollm2()?;
    Some(Arc::new(
        load(&ModelSource::Gguf(path), &LoadOptions::default()).unwrap(),
    ))
}

fn compressor(m: &Arc<LoadedModel>, method: Method, opts: Options) -> Local {
    Local::new(method, 0.5, m.clone(), opts)
}

/// About 400 tokens of ordinary prose with numbers and a named party.
const CONTEXT: &str = "The harbour town of Port Ellis was founded in 1742 by fishermen who \
followed the herring north along the coast. For most of its history the town lived from the \
sea: boats left before dawn, and the catch was salted in long sheds beside the quay. In 1891 a \
railway line reached the town, and within a decade the sheds had become canneries that shipped \
tinned fish as far as Vienna and Buenos Aires. The population grew from about 2,000 to nearly \
9,500 people. The Harbour Trust, a company owned by the largest families, built a stone \
breakwater in 1903 so that bigger steamers could dock in winter storms. After the Second World \
War the herring disappeared, and the canneries closed one by one; the last of them, run by \
Acme Marine Holdings, shut its doors in 1968. Many young people moved inland to the cities to \
look for work in factories and offices. In the 1980s the town council turned the old sheds into \
a museum, a market hall and a school for boat builders. Today tourism is the main industry: \
visitors come for the museum, the seafood restaurants and the long sandy beach south of the \
breakwater. The annual regatta, held on the first Sunday of August, draws sailors from across \
the region, and the lifeboat station, staffed entirely by volunteers, remains one of the busiest \
on the coast. The council hopes that a new ferry link to the islands, planned for 2027, will \
bring visitors in the quieter months of spring and autumn.";

fn kept_share(c: &Local, text: &str) -> f64 {
    let r = c.compress(text, "").unwrap();
    assert!(
        (r.compression_ratio - r.compressed_tokens as f64 / r.original_tokens as f64).abs() < 1e-12
    );
    r.compressed_tokens as f64 / r.original_tokens as f64
}

#[test]
fn both_methods_keep_half_the_tokens_deterministically_at_rate_half() {
    let Some(m) = model() else { return };
    for method in [Method::Selective, Method::Lingua] {
        let c = compressor(&m, method, Options::default());
        let a = c.compress(CONTEXT, "").unwrap();
        assert!(a.original_tokens > 300, "{}", a.original_tokens);
        let share = kept_share(&c, CONTEXT);
        assert!(
            (share - 0.5).abs() <= 0.025,
            "{method:?}: kept {share}: {}",
            a.text
        );
        // Same input, same model: the same text.
        let b = c.compress(CONTEXT, "").unwrap();
        assert_eq!(a.text, b.text, "{method:?}");
        assert!(a.latency_ms > 0.0 && a.cost_usd.is_none());
        // What is left is pieces of the original, in order.
        let mut rest = CONTEXT.chars();
        assert!(a.text.chars().all(|c| rest.any(|o| o == c)), "{method:?}");
        assert!(
            a.text.split_whitespace().all(|w| CONTEXT.contains(w)),
            "{method:?}: {}",
            a.text
        );
    }
    // Every unit size meets the budget for `selective` too (sentences only roughly).
    for (unit, tol) in [(Unit::Token, 0.025), (Unit::Sentence, 0.15)] {
        let opts = Options {
            unit,
            ..Options::default()
        };
        let share = kept_share(&compressor(&m, Method::Selective, opts), CONTEXT);
        assert!((share - 0.5).abs() <= tol, "{unit:?}: {share}");
    }
}

#[test]
fn forced_strings_and_numbers_survive() {
    let Some(m) = model() else { return };
    let force = vec![
        "Acme Marine Holdings".to_string(),
        "Harbour Trust".to_string(),
        "\n".to_string(),
    ];
    for method in [Method::Selective, Method::Lingua] {
        let opts = Options {
            force_tokens: force.clone(),
            keep_numbers: true,
            ..Options::default()
        };
        let out = compressor(&m, method, opts)
            .compress(CONTEXT, "")
            .unwrap()
            .text;
        for f in &force[..2] {
            assert!(out.contains(f.as_str()), "{method:?}: {f} lost: {out}");
        }
        for n in ["1742", "1891", "1903", "1968", "2027"] {
            assert!(out.contains(n), "{method:?}: {n} lost: {out}");
        }
        // Without forcing, the run drops some of them (so the check above means something).
        let plain = compressor(&m, method, Options::default())
            .compress(CONTEXT, "")
            .unwrap()
            .text;
        let lost = [
            "Acme Marine Holdings",
            "Harbour Trust",
            "1742",
            "1891",
            "1903",
            "1968",
            "2027",
        ]
        .iter()
        .filter(|s| !plain.contains(**s))
        .count();
        assert!(lost > 0, "{method:?}: nothing forced was at risk: {plain}");
    }
}

/// (question, the fact answering it), over contexts of eight sentences.
const QA: [(&str, &str, &str); 3] = [
    (
        "Which city hosted the 1998 chess final?",
        "The 1998 chess final was hosted by the city of Valparaiso.",
        "Valparaiso",
    ),
    (
        "What colour is the captain's boat?",
        "The captain's boat is painted bright orange.",
        "orange",
    ),
    (
        "Who wrote the ship's logbook?",
        "The ship's logbook was written by Marguerite Olsson.",
        "Olsson",
    ),
];

const FILLER: [&str; 7] = [
    "Gardens in the valley bloom early when the winter has been mild.",
    "Many families keep bees and sell the honey at the Saturday market.",
    "The old mill by the river was repaired after the flood of last spring.",
    "Children walk to school along a path lined with tall poplar trees.",
    "In the evenings the square fills with people drinking coffee and talking.",
    "A small orchestra gives free concerts in the church twice a year.",
    "The bakery opens at six and usually sells out of bread before noon.",
];

#[test]
fn lingua_keeps_the_answer_of_the_question_at_rate_half() {
    let Some(m) = model() else { return };
    let c = compressor(&m, Method::Lingua, Options::default());
    for (i, (question, fact, answer)) in QA.iter().enumerate() {
        let mut sentences: Vec<&str> = FILLER.to_vec();
        sentences.insert(2 + 2 * i, fact);
        let context = sentences.join(" ");
        let r = c.compress(&context, question).unwrap();
        assert!(r.text.contains(answer), "{question}: {}", r.text);
        let share = r.compressed_tokens as f64 / r.original_tokens as f64;
        assert!((share - 0.5).abs() <= 0.05, "{question}: {share}");
    }
}

/// bwb's own ScaleDown client against `bwb serve --compressor selective`: the same wire as
/// the service, the server's rate and key, and 400s for bad bodies.
#[test]
fn the_scaledown_client_compresses_through_bwb_serve() {
    use bwb::backend::api::ApiOptions;
    use bwb::compress::scaledown::{Method as Sd, ScaleDown};
    use bwb::compress::Rate;
    let Some(gguf) = crate::generate::smollm2() else {
        return;
    };
    let s = crate::serve::Server::start(
        crate::common::Project::new(),
        &[],
        &[
            "--compressor",
            "selective",
            "--compressor-model",
            gguf.to_str().unwrap(),
            "--compressor-rate",
            "0.3",
            "--api-key",
            "sekret",
        ],
    );
    let base = s.url("");
    let client = |key: &str, rate: Rate| {
        let env = bwb::settings::Env::from_pairs(
            &[("SCALEDOWN_API_KEY", key), ("SCALEDOWN_BASE_URL", &base)],
            &[],
        );
        ScaleDown::new(Sd::Raw, rate, None, None, &env, &ApiOptions::default()).unwrap()
    };
    let half = client("sekret", Rate::Fraction(0.5))
        .compress(CONTEXT, "When was it founded?")
        .unwrap();
    let share = half.compressed_tokens as f64 / half.original_tokens as f64;
    assert!(
        half.original_tokens > 300 && (share - 0.5).abs() <= 0.025,
        "{share}"
    );
    assert!((half.compression_ratio - share).abs() < 1e-12);
    assert!(
        half.text.split_whitespace().all(|w| CONTEXT.contains(w)),
        "{}",
        half.text
    );
    // `auto` takes the server's --compressor-rate; the same request gives the same text.
    let auto = client("sekret", Rate::Auto).compress(CONTEXT, "").unwrap();
    let share = auto.compressed_tokens as f64 / auto.original_tokens as f64;
    assert!((share - 0.3).abs() <= 0.025, "{share}");
    assert_eq!(
        client("sekret", Rate::Auto)
            .compress(CONTEXT, "")
            .unwrap()
            .text,
        auto.text
    );
    // A wrong key stops the client's run.
    let err = client("wrong", Rate::Auto)
        .compress(CONTEXT, "")
        .unwrap_err();
    assert!(
        err.fatal && err.message.contains("SCALEDOWN_API_KEY"),
        "{err:?}"
    );
    // Bad bodies: 400 with a JSON error naming the field; the answer's shape is ScaleDown's.
    let http = reqwest::blocking::Client::new();
    let post = |body: &str| {
        let r = http
            .post(s.url("/compress/raw/"))
            .header("x-api-key", "sekret")
            .body(body.to_string())
            .send()
            .unwrap();
        (
            r.status().as_u16(),
            serde_json::from_str::<serde_json::Value>(&r.text().unwrap()).unwrap(),
        )
    };
    for (body, says) in [
        ("{\"context\": ", "not JSON"),
        ("{\"prompt\": \"q\"}", "`context`"),
        (
            "{\"context\": \"x\", \"scaledown\": {\"rate\": 1.5}}",
            "scaledown.rate",
        ),
    ] {
        let (status, v) = post(body);
        assert_eq!(status, 400, "{body}: {v}");
        assert!(
            v["successful"] == false && v["error"].as_str().unwrap().contains(says),
            "{v}"
        );
    }
    let (status, v) = post(
        r#"{"context": "The cat sat on the mat in the sun all day long.", "prompt": "", "model": "gpt-4o", "scaledown": {"rate": 0.5}}"#,
    );
    assert_eq!(status, 200, "{v}");
    let r = &v["results"];
    let (o, c) = (
        r["original_prompt_tokens"].as_f64().unwrap(),
        r["compressed_prompt_tokens"].as_f64().unwrap(),
    );
    assert!(
        c < o && (r["compression_ratio"].as_f64().unwrap() - o / c).abs() < 1e-9,
        "{v}"
    );
    assert!(r["compressed_prompt"].is_string());
}

/// `bwb bench compress` on the smoke model: a JSON record of the requested context, about
/// half of it kept, and one-line errors for a remote method or a zero size.
#[test]
fn bench_compress_reports_context_tokens_per_second() {
    let p = crate::common::Project::new();
    let bench = |extra: &[&str]| {
        let base = ["bench", "compress", "--model", "smoke"];
        p.bwb(&[&base[..], extra].concat())
    };
    for method in ["selective", "lingua"] {
        let out = bench(&[
            "--method",
            method,
            "--context-tokens",
            "96",
            "--batch",
            "2",
            "--repeat",
            "1",
            "--json",
        ])
        .ok()
        .stdout();
        let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(
            (r["method"].as_str(), r["context_tokens"].as_u64()),
            (Some(method), Some(96)),
            "{r}"
        );
        let kept = r["kept_tokens"].as_f64().unwrap();
        assert!((kept / 96.0 - 0.5).abs() < 0.1, "{r}");
        let s = r["seconds"].as_f64().unwrap();
        let want = 96.0 / s;
        assert!(
            (r["context_tok_s"].as_f64().unwrap() - want).abs() < 1e-6 * want,
            "{r}"
        );
    }
    let err = bench(&["--method", "scaledown"]).fails(1);
    assert!(err.contains("local compressors only"), "{err}");
    let err = bench(&["--batch", "0"]).fails(1);
    assert!(err.contains("--batch"), "{err}");
}
