//! Eval-only datasets (configs/datasets/): download from the hub (through hf-hub against the
//! fixture hub server), prepare into `Example`s with the right ids, contexts and gold answers,
//! one-line errors for bad rows; and bring-your-own data (`source.path`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::common::{jsonl, Project};

const DATASETS: [(&str, &str, usize); 13] = [
    ("ethic-attributing", "test", 3),
    ("ethic-organizing", "test", 3),
    ("ethic-recalling", "test", 3),
    ("ethic-summarizing", "test", 3),
    ("financebench", "train", 3),
    ("hotpotqa", "validation", 4),
    ("longbench-2wikimqa", "test", 3),
    ("longbench-multifieldqa_en", "test", 3),
    ("longbench-narrativeqa", "test", 3),
    ("longbench-qasper", "test", 3),
    ("msmarco", "validation", 4),
    ("msmarco-retrieval", "validation", 4),
    ("qmsum", "test", 3),
];

fn all_ids() -> String {
    DATASETS.map(|d| d.0).join(",")
}

fn smoke_prepared() -> Project {
    let p = Project::new();
    p.bwb(&["--smoke-test", "download", "--task", &all_ids()])
        .ok();
    p.bwb(&["--smoke-test", "prepare", "--task", &all_ids()])
        .ok();
    p
}

/// Prepared examples of one dataset, by id.
fn examples(p: &Project, id: &str, split: &str) -> BTreeMap<String, Value> {
    jsonl(&p.read(&format!("data/smoke/prepared/{id}/{split}.jsonl")))
        .into_iter()
        .map(|e| (e["id"].as_str().unwrap().to_string(), e))
        .collect()
}

#[test]
fn every_dataset_downloads_through_the_hub_and_checks_real_row_counts() {
    let p = Project::new();
    let server = crate::hub_server::start(p.path("tests/fixtures/hub"));
    let hf_home = p.path("fresh-hf-home");
    let p = p
        .set_env("HF_HOME", &hf_home.display().to_string())
        .set_env("HF_ENDPOINT", &server.endpoint);
    let out = p.bwb(&["download", "--task", &all_ids()]).ok().stdout();
    assert_eq!(out.lines().count(), DATASETS.len(), "{out}");
    for (id, split, n) in DATASETS {
        let rows = jsonl(&p.read(&format!("data/raw/{id}/{split}.jsonl")));
        assert_eq!(rows.len(), n, "{id}");
    }
    // Nested parquet columns arrive as structs of lists.
    let hotpot = jsonl(&p.read("data/raw/hotpotqa/validation.jsonl"));
    assert!(
        hotpot[0]["context"]["sentences"][0].is_array(),
        "{}",
        hotpot[0]
    );
    assert!(hotpot[0]["supporting_facts"]["sent_id"].is_array());
    let marco = jsonl(&p.read("data/raw/msmarco/validation.jsonl"));
    assert_eq!(marco[1]["passages"]["is_selected"], json!([0, 1, 1, 0]));
    // `*.parquet` on the parquet branch resolved through the listing API.
    let m: Value = serde_json::from_str(&p.read("data/raw/qmsum/manifest.json")).unwrap();
    assert_eq!(
        m["splits"]["test"]["files"],
        json!(["qmsum/test/0000.parquet"])
    );
    assert_eq!(m["revision"], "refs/convert/parquet");
    // Real runs check the real dataset's row count.
    let err = p.bwb(&["prepare", "--task", "hotpotqa"]).fails(1);
    assert!(
        err.contains("has 4 rows but hotpotqa/hotpot_qa `validation` has 7405"),
        "{err}"
    );
    let cfg = "configs/datasets/hotpotqa.yaml";
    p.write(cfg, &p.read(cfg).replace("rows: 7405", "rows: 4"));
    p.bwb(&["prepare", "--task", "hotpotqa"]).ok();
    assert_eq!(
        jsonl(&p.read("data/prepared/hotpotqa/validation.jsonl")).len(),
        4
    );
}

#[test]
fn datasets_prepare_whole_splits_with_their_own_ids_and_gold() {
    let p = smoke_prepared();
    for (id, split, n) in DATASETS {
        let rows = jsonl(&p.read(&format!("data/smoke/prepared/{id}/{split}.jsonl")));
        assert_eq!(rows.len(), n, "{id}: every row, in file order");
        let m: Value =
            serde_json::from_str(&p.read(&format!("data/smoke/prepared/{id}/manifest.json")))
                .unwrap();
        assert_eq!(m["eval_split"], split);
        assert_eq!(m["splits"][split], n);
    }
    hotpotqa_and_longbench(&p);
    msmarco(&p);
    financebench_and_ethic(&p);
}

fn hotpotqa_and_longbench(p: &Project) {
    // HotpotQA: titled paragraphs, the answer string as gold.
    let h = examples(p, "hotpotqa", "validation");
    let e = &h["5a7a06935542990198eaf050"];
    let ctx = e["inputs"]["context"].as_str().unwrap();
    assert!(
        ctx.starts_with(
            "Nordlys Lines\nNordlys Lines is a ferry operator based in Port Ellery. It was founded"
        ),
        "{ctx}"
    );
    assert_eq!(ctx.matches("\n\n").count(), 3, "four paragraphs: {ctx}");
    assert_eq!(
        e["answer"],
        json!({"kind": "text", "answers": ["Port Ellery"]})
    );
    assert_eq!(h["5ab3b0bf5542992ade7c6e39"]["target"], "no");
    assert_eq!(h["5ab3b0bf5542992ade7c6e39"]["stratum"], "comparison");
    // LongBench: `_id`, `input` as the question, every answer kept.
    let n = examples(p, "longbench-narrativeqa", "test");
    let e = n
        .values()
        .find(|e| e["inputs"]["question"] == "Who is given the key?")
        .unwrap();
    assert_eq!(e["answer"]["answers"], json!(["The ferryman, Osk.", "Osk"]));
    assert_eq!(e["id"].as_str().unwrap().len(), 40);
    assert!(e["inputs"]["context"]
        .as_str()
        .unwrap()
        .contains("ferryman"));
    // QMSum: a summary with its reference.
    let q = jsonl(&p.read("data/smoke/prepared/qmsum/test.jsonl"));
    assert_eq!(q[0]["answer"]["kind"], "summary");
    assert!(q[0]["answer"]["references"][0]
        .as_str()
        .unwrap()
        .contains("standard batteries"));
}

fn msmarco(p: &Project) {
    // MS MARCO: numbered passages; the abstention gold kept as is.
    let m = examples(p, "msmarco", "validation");
    assert_eq!(
        m["50390"]["answer"]["answers"],
        json!(["No Answer Present."])
    );
    assert_eq!(m["9652"]["stratum"], "NUMERIC");
    let r = examples(p, "msmarco-retrieval", "validation");
    let relevant: BTreeMap<&str, Value> = r
        .iter()
        .map(|(k, e)| (k.as_str(), e["answer"]["relevant"].clone()))
        .collect();
    assert_eq!(relevant["9652"], json!(["2"]));
    assert_eq!(relevant["19335"], json!(["2", "3"]));
    assert_eq!(relevant["50390"], json!([]));
    assert_eq!(relevant["72144"], json!(["1"]));
    let ctx = r["19335"]["inputs"]["context"].as_str().unwrap();
    assert!(
        ctx.starts_with("[1] Tasmania is") && ctx.contains("\n\n[4] Launceston"),
        "{ctx}"
    );
    assert_eq!(r["50390"]["target"], "None");
}

fn financebench_and_ethic(p: &Project) {
    // FinanceBench: the evidence pages, each page once.
    let f = examples(p, "financebench", "train");
    let ctx = f["financebench_id_00002"]["inputs"]["context"]
        .as_str()
        .unwrap();
    assert_eq!(
        ctx.matches("[HARBORFOODS_2023Q2_10Q, page 5]").count(),
        1,
        "{ctx}"
    );
    let ctx = f["financebench_id_00003"]["inputs"]["context"]
        .as_str()
        .unwrap();
    assert!(
        ctx.contains("page 60]") && ctx.contains("page 61]"),
        "{ctx}"
    );
    assert_eq!(
        f["financebench_id_00001"]["answer"]["answers"],
        json!(["$4,210 million"])
    );
    // ETHIC: its own messages as inputs; list gold as ETHIC scores it.
    let rec = examples(p, "ethic-recalling", "test");
    assert_eq!(
        rec["Books_0001"]["answer"],
        json!({"kind": "list", "items": ["Anna", "Piet", "Lotte"]})
    );
    let inputs = rec["Books_0001"]["inputs"].as_object().unwrap();
    assert_eq!(
        inputs.keys().collect::<Vec<_>>(),
        ["system_msg", "user_msg"]
    );
    assert_eq!(rec["Books_0001"]["stratum"], "Books");
    let org = examples(p, "ethic-organizing", "test");
    assert_eq!(org["Books_0201"]["answer"]["items"], json!(["2", "1", "3"]));
    let att = examples(p, "ethic-attributing", "test");
    assert_eq!(att["Debates_0302"]["answer"]["items"], json!(["1", "12"]));
    assert_eq!(att["Books_0303"]["answer"]["items"], json!([]));
    let sum = examples(p, "ethic-summarizing", "test");
    assert_eq!(sum["Law_0102"]["answer"]["kind"], "summary");
}

#[test]
fn datasets_prompts_render_every_example() {
    let p = smoke_prepared();
    let configs = bwb::config::Configs::load(&p.path("configs")).unwrap();
    let paths = bwb::paths::Paths::new(p.root(), true);
    for (id, _, n) in DATASETS {
        let d = configs.dataset(id).unwrap();
        let prompt = bwb::prompt::task::TaskPrompt::load(&p.path("prompts"), d).unwrap();
        let exs = bwb::data::prepare::read_eval_split(&paths, d).unwrap();
        assert_eq!(exs.len(), n);
        assert!(bwb::data::prepare::eval_split_path(&paths, d).is_file());
        for e in &exs {
            let msgs = prompt.messages(e).unwrap();
            assert_eq!(msgs.len(), 2, "{id}");
        }
    }
}

#[test]
fn bad_dataset_rows_name_file_line_and_column() {
    let p = smoke_prepared();
    let edit = |rel: &str, line: usize, f: &dyn Fn(&mut Value)| {
        let text = p.read(rel);
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut row: Value = serde_json::from_str(&lines[line]).unwrap();
        f(&mut row);
        lines[line] = row.to_string();
        p.write(rel, &(lines.join("\n") + "\n"));
    };
    edit("data/smoke/raw/hotpotqa/validation.jsonl", 1, &|r| {
        r["context"]["sentences"] = json!([["only one"]]);
    });
    let err = p
        .bwb(&["--smoke-test", "prepare", "--task", "hotpotqa"])
        .fails(1);
    assert!(
        err.contains("validation.jsonl line 2")
            && err.contains("`context` has 3 titles but 1 sentence lists"),
        "{err}"
    );
    edit(
        "data/smoke/raw/msmarco-retrieval/validation.jsonl",
        2,
        &|r| {
            r["passages"]["is_selected"] = json!([0, 7]);
        },
    );
    let err = p
        .bwb(&["--smoke-test", "prepare", "--task", "msmarco-retrieval"])
        .fails(1);
    assert!(
        err.contains("validation.jsonl line 3")
            && err.contains("`passages.is_selected` should be 0 or 1, found 7"),
        "{err}"
    );
    edit("data/smoke/raw/financebench/train.jsonl", 0, &|r| {
        r.as_object_mut().unwrap().remove("answer");
    });
    let err = p
        .bwb(&["--smoke-test", "prepare", "--task", "financebench"])
        .fails(1);
    assert!(
        err.contains("train.jsonl line 1") && err.contains("column `answer` is missing"),
        "{err}"
    );
    edit("data/smoke/raw/longbench-qasper/test.jsonl", 0, &|r| {
        r["answers"] = json!([]);
    });
    let err = p
        .bwb(&["--smoke-test", "prepare", "--task", "longbench-qasper"])
        .fails(1);
    assert!(
        err.contains("column `answers` holds no gold answer"),
        "{err}"
    );
    // The previous preparation is untouched.
    assert_eq!(
        jsonl(&p.read("data/smoke/prepared/hotpotqa/validation.jsonl")).len(),
        4
    );
}

#[test]
fn datasets_stay_out_of_all_and_out_of_train_and_eval() {
    let p = Project::new();
    let out = p
        .bwb(&["--smoke-test", "download", "--task", "all"])
        .ok()
        .stdout();
    assert_eq!(out.lines().count(), 6, "{out}");
    assert!(!p.path("data/smoke/raw/hotpotqa").exists());
    for cmd in ["train", "eval"] {
        let err = p
            .bwb(&[
                "--smoke-test",
                cmd,
                "--model",
                "smoke",
                "--task",
                "hotpotqa",
            ])
            .fails(1);
        assert!(
            err.contains("`hotpotqa` is an eval-only dataset")
                && err.contains("configs/datasets/hotpotqa.yaml"),
            "{err}"
        );
    }
    let err = p
        .bwb(&["--smoke-test", "prepare", "--task", "nosuch"])
        .fails(1);
    assert!(
        err.contains("unknown task `nosuch`") && err.contains("msmarco-retrieval"),
        "{err}"
    );
    // A dataset config may not carry a train split.
    p.write(
        "configs/datasets/hotpotqa.yaml",
        &p.read("configs/datasets/hotpotqa.yaml").replace(
            "splits: {test: validation}",
            "splits: {train: validation, test: validation}",
        ),
    );
    let err = p
        .bwb(&["--smoke-test", "prepare", "--task", "hotpotqa"])
        .fails(1);
    assert!(
        err.contains("hotpotqa.yaml") && err.contains("`splits.train`"),
        "{err}"
    );
}

/// A label task on a local CSV, in configs/tasks/ of a temp project.
fn custom_label_project() -> Project {
    let p = Project::new();
    let mut csv = "text,label\n".to_string();
    let words = ["refund", "delivery", "password"];
    for i in 0..30 {
        let w = words[i % 3];
        csv.push_str(&format!("\"Question {i} about my {w}, please help\",{w}\n"));
    }
    p.write("my-data/support.csv", &csv);
    p.write(
        "configs/tasks/support.yaml",
        "id: support\nname: Support intents\nsource: {path: my-data/support.csv}\nmetric_id: accuracy\nanswer: {kind: label, labels: [refund, delivery, password]}\nval_size: 3\ntest_sample_size: 6\ntraining_cap: 21\nsmoke: {val_size: 3, test_sample_size: 6, training_cap: 21, max_new_tokens: 4}\nmax_seq_length: 256\nmax_new_tokens: 8\nprompts: {system: system.txt, user: user.txt}\n",
    );
    p.write(
        "prompts/support/system.txt",
        "Classify the request: {{ labels | join(', ') }}.\n",
    );
    p.write("prompts/support/user.txt", "{{ text }}\n");
    p
}

#[test]
fn custom_csv_label_task_prepares_without_a_download() {
    let p = custom_label_project();
    let out = p.bwb(&["download", "--task", "support"]).ok().stdout();
    assert!(
        out.contains("nothing to download") && out.contains("my-data/support.csv"),
        "{out}"
    );
    assert!(!p.path("data/raw/support").exists());
    let out = p.bwb(&["prepare", "--task", "support"]).ok().stdout();
    assert!(out.contains("30 rows read"), "{out}");
    let test = jsonl(&p.read("data/prepared/support/test.jsonl"));
    let val = jsonl(&p.read("data/prepared/support/val.jsonl"));
    let train = jsonl(&p.read("data/prepared/support/train.jsonl"));
    assert_eq!((test.len(), val.len(), train.len()), (6, 3, 21));
    assert!(test
        .iter()
        .all(|e| e["task"] == "support" && e["answer"]["kind"] == "label"));
    let m: Value = serde_json::from_str(&p.read("data/prepared/support/manifest.json")).unwrap();
    assert_eq!(m["raw_rows"]["data"], 30);
    assert_eq!(m["source_revision"], "local");
    // A bad row names the file, its CSV line and the column.
    let csv = p
        .read("my-data/support.csv")
        .replace("please help\",delivery\n", "please help\",shipping\n");
    p.write("my-data/support.csv", &csv);
    let err = p.bwb(&["prepare", "--task", "support"]).fails(1);
    assert!(
        err.contains("support.csv line 3") && err.contains("column `label`"),
        "{err}"
    );
    // A missing file says where paths are resolved from.
    std::fs::remove_file(p.path("my-data/support.csv")).unwrap();
    let err = p.bwb(&["download", "--task", "support"]).fails(1);
    assert!(err.contains("relative to the project root"), "{err}");
}

#[test]
fn custom_csv_label_task_evaluates_with_the_smoke_model() {
    let p = custom_label_project();
    p.bwb(&["--smoke-test", "prepare", "--task", "support"])
        .ok();
    p.bwb(&[
        "--smoke-test",
        "eval",
        "--model",
        "smoke",
        "--task",
        "support",
        "--condition",
        "zero-shot",
        "--seeds",
        "1",
    ])
    .ok();
    let rows = jsonl(&p.read("results/smoke/predictions/smoke/support/zero-shot/seed-1.jsonl"));
    assert_eq!(rows.len(), 6);
    // ...and is classified and summarised like a built-in task.
    p.bwb(&[
        "--smoke-test",
        "classify",
        "--task",
        "support",
        "--seeds",
        "1",
    ])
    .ok();
    let dir = p.path("results/smoke/summaries");
    let summary = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|f| {
            let n = f.file_name().unwrap().to_string_lossy().into_owned();
            n.contains("support") && n.ends_with(".json")
        })
        .expect("a summary for the custom task");
    let s: Value = serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap();
    assert_eq!(s["task"], "support");
    assert_eq!(s["primary_metric"], "accuracy");
    assert_eq!(s["n_examples"], 6);
}

#[test]
fn local_files_of_every_format_feed_the_new_kinds() {
    let p = Project::new();
    // Parquet with nested columns: the HotpotQA fixture as someone's own file.
    let fixture = p.path("tests/fixtures/hub/datasets--hotpotqa--hotpot_qa/snapshots/9a5f473d128f3935e4db5aa6c6531d2975b8118f/distractor/validation-00000-of-00001.parquet");
    std::fs::create_dir_all(p.path("mine")).unwrap();
    std::fs::copy(&fixture, p.path("mine/hotpot.parquet")).unwrap();
    let hotpot = p.read("configs/datasets/hotpotqa.yaml");
    let start = hotpot.find("source:").unwrap();
    let end = hotpot.find("# context").unwrap();
    let local = format!(
        "{}source: {{path: mine/hotpot.parquet}}\n{}",
        &hotpot[..start],
        &hotpot[end..]
    )
    .replace("id: hotpotqa", "id: my-hotpot")
    .replace("splits: {test: validation}\n", "");
    p.write("configs/datasets/my-hotpot.yaml", &local);
    copy_prompts(&p, "hotpotqa", "my-hotpot");
    // JSONL / CSV with list gold as a JSON list (retrieval needs passages: JSONL records).
    p.write(
        "mine/lists.csv",
        "id,question,context,answers\nq1,Who?,Ann met Bob.,\"[\"\"Ann\"\", \"\"Bob\"\"]\"\nq2,What?,A cat.,cat\n",
    );
    p.write(
        "configs/datasets/my-lists.yaml",
        "id: my-lists\nname: Lists\nsource: {path: mine/lists.csv}\nmetric_id: set_f1\nanswer: {kind: list}\ntest_sample_size: 2\nsmoke: {test_sample_size: 2}\nmax_seq_length: 512\nmax_new_tokens: 16\nprompts: {system: system.txt, user: user.txt}\n",
    );
    p.write(
        "mine/passages.jsonl",
        "{\"qid\": 7, \"q\": \"sky colour\", \"passages\": [{\"passage_text\": \"Grass is green.\", \"is_selected\": 0}, {\"passage_text\": \"The sky is blue.\", \"is_selected\": 1}]}\n",
    );
    p.write(
        "configs/datasets/my-passages.yaml",
        "id: my-passages\nname: Passages\nsource: {path: mine/passages.jsonl, columns: {id: qid, question: q, context: passages}}\ncontext_layout: passages\nmetric_id: retrieval_f1\nanswer: {kind: retrieval}\ntest_sample_size: 1\nsmoke: {test_sample_size: 1}\nmax_seq_length: 512\nmax_new_tokens: 16\nprompts: {system: system.txt, user: user.txt}\n",
    );
    copy_prompts(&p, "hotpotqa", "my-lists");
    copy_prompts(&p, "msmarco-retrieval", "my-passages");
    p.bwb(&["prepare", "--task", "my-hotpot,my-lists,my-passages"])
        .ok();
    let h = jsonl(&p.read("data/prepared/my-hotpot/data.jsonl"));
    assert_eq!(h.len(), 4);
    assert_eq!(h[0]["id"], "5a7a06935542990198eaf050");
    let l = jsonl(&p.read("data/prepared/my-lists/data.jsonl"));
    assert_eq!(l[0]["answer"]["items"], json!(["Ann", "Bob"]));
    assert_eq!(l[1]["answer"]["items"], json!(["cat"]));
    let r = jsonl(&p.read("data/prepared/my-passages/data.jsonl"));
    assert_eq!(r[0]["id"], "7");
    assert_eq!(r[0]["answer"]["relevant"], json!(["2"]));
    assert_eq!(
        r[0]["inputs"]["context"],
        "[1] Grass is green.\n\n[2] The sky is blue."
    );
    // An extension bwb cannot read is a config error naming the field and value.
    p.write(
        "configs/datasets/my-lists.yaml",
        &p.read("configs/datasets/my-lists.yaml")
            .replace("lists.csv", "lists.xlsx"),
    );
    let err = p.bwb(&["prepare", "--task", "my-lists"]).fails(1);
    assert!(
        err.contains("`source.path` = `mine/lists.xlsx`") && err.contains(".csv"),
        "{err}"
    );
}

fn copy_prompts(p: &Project, from: &str, to: &str) {
    for f in ["system.txt", "user.txt"] {
        p.write(
            &format!("prompts/{to}/{f}"),
            &p.read(&format!("prompts/{from}/{f}")),
        );
    }
}

#[test]
fn source_and_split_mistakes_are_config_errors() {
    let p = custom_label_project();
    let cfg = "configs/tasks/support.yaml";
    let good = p.read(cfg);
    let cases = [
        (
            good.replace(
                "source: {path: my-data/support.csv}",
                "source: {path: my-data/support.csv, repo: a/b}",
            ),
            "leave out `source.repo`",
        ),
        (
            good.replace(
                "source: {path: my-data/support.csv}",
                "source: {repo: a/b, revision: main, format: csv, splits: {train: {files: [x.csv]}}}",
            ),
            "`source.splits.train.rows` is required",
        ),
        (
            good.replace(
                "source: {path: my-data/support.csv}",
                "source: {repo: a/b, revision: main, format: csv, splits: {data: {files: [x.csv], rows: 3}}}\nsplits: {test: data}",
            ),
            "`splits.train` is required for a task",
        ),
        (
            good.replace(
                "source: {path: my-data/support.csv}",
                "source: {path: my-data/support.csv, columns: {text: body}}\ncolumns: {text: message}",
            ),
            "column `text` is renamed twice",
        ),
        (
            good.replace("max_new_tokens: 8", "max_new_tokens: 8\ninputs: [text]"),
            "only apply to text, list, retrieval and summary answers",
        ),
    ];
    for (text, want) in cases {
        p.write(cfg, &text);
        let err = p.bwb(&["prepare", "--task", "support"]).fails(1);
        assert!(
            err.contains("support.yaml") && err.contains(want),
            "{want}: {err}"
        );
    }
}

/// A task config on a local file with small sizes (smoke sizes the same).
fn local_task(p: &Project, id: &str, file: &str, answer: &str) {
    copy_prompts(p, "fpb", id);
    p.write(
        &format!("configs/tasks/{id}.yaml"),
        &format!("id: {id}\nname: {id}\nsource: {{path: {file}}}\n{answer}\nval_size: 2\ntest_sample_size: 2\ntraining_cap: 8\nsmoke: {{val_size: 2, test_sample_size: 2, training_cap: 8}}\nmax_seq_length: 256\nmax_new_tokens: 8\nprompts: {{system: system.txt, user: user.txt}}\n"),
    );
}

#[test]
fn local_files_serve_the_choice_spans_and_code_kinds() {
    let p = Project::new();
    let mut choice = "id,question,opa,opb,answer\n".to_string();
    let mut spans = "id,title,context,question,answers\n".to_string();
    let mut code = String::new();
    for i in 0..10 {
        let letter = ["A", "b"][i % 2];
        choice.push_str(&format!("c{i},Is {i} even?,yes,no,{letter}\n"));
        let answers = if i % 2 == 0 {
            r#""{""text"": [""the Seller""], ""answer_start"": [4]}""#
        } else {
            r#""{""text"": [], ""answer_start"": []}""#
        };
        spans.push_str(&format!(
            "s{i},Deal {i},\"The Seller pays.\",Who pays?,{answers}\n"
        ));
        let row = json!({"task_id": i, "text": format!("Return {i}."), "code": format!("def f():\n    return {i}"),
            "test_list": format!("[\"assert f() == {i}\"]"), "test_setup_code": "", "challenge_test_list": []});
        code.push_str(&format!("{row}\n"));
    }
    p.write("mine/choice.csv", &choice);
    p.write("mine/spans.csv", &spans);
    p.write("mine/code.jsonl", &code);
    local_task(
        &p,
        "my-choice",
        "mine/choice.csv",
        "metric_id: accuracy\nanswer: {kind: choice, options: [A, B], option_columns: [opa, opb]}",
    );
    local_task(
        &p,
        "my-spans",
        "mine/spans.csv",
        "metric_id: cuad_f1\nanswer: {kind: spans, no_answer: None.}",
    );
    local_task(
        &p,
        "my-code",
        "mine/code.jsonl",
        "metric_id: pass_at_1\nanswer: {kind: code}",
    );
    p.bwb(&[
        "--smoke-test",
        "prepare",
        "--task",
        "my-choice,my-spans,my-code",
    ])
    .ok();
    let all = |id: &str| -> Vec<Value> {
        ["train", "val", "test"]
            .iter()
            .flat_map(|s| jsonl(&p.read(&format!("data/smoke/prepared/{id}/{s}.jsonl"))))
            .collect()
    };
    let c = all("my-choice");
    assert_eq!(c.len(), 10);
    for e in &c {
        let i: usize = e["id"].as_str().unwrap()[1..].parse().unwrap();
        assert_eq!(e["answer"]["option"], ["A", "B"][i % 2], "{e}");
    }
    let s = all("my-spans");
    for e in &s {
        let i: usize = e["id"].as_str().unwrap()[1..].parse().unwrap();
        let want = if i.is_multiple_of(2) {
            json!([{"text": "the Seller", "start": 4}])
        } else {
            json!([])
        };
        assert_eq!(e["answer"]["spans"], want, "{e}");
    }
    let k = all("my-code");
    assert_eq!(k.len(), 10);
    assert!(k
        .iter()
        .all(|e| e["answer"]["tests"].as_array().unwrap().len() == 1));
}
