//! `bwb download` through hf-hub against directories in the real hub-cache layout.

use crate::common::{jsonl, Project, REPO};

#[test]
fn smoke_download_reads_the_fixture_hub_cache() {
    let p = Project::new();
    let out = p
        .bwb(&["--smoke-test", "download", "--task", "all"])
        .ok()
        .stdout();
    assert_eq!(out.lines().count(), 6, "{out}");
    let expect = [
        ("banking77", "train", 48),
        ("banking77", "test", 48),
        ("cuad", "train", 53),
        ("cuad", "test", 54),
        ("ledgar", "validation", 36),
        ("fpb", "train", 54),
        ("medmcqa", "validation", 30),
        ("mbpp", "test", 42),
    ];
    for (task, split, n) in expect {
        let rows = jsonl(&p.read(&format!("data/smoke/raw/{task}/{split}.jsonl")));
        assert_eq!(rows.len(), n, "{task}/{split}");
    }
    // Smoke never writes the real namespace.
    assert!(!p.path("data/raw").exists());
}

#[test]
fn real_download_uses_hf_home_cache_and_resolves_shards() {
    let p = Project::new().with_hf_home_cache();
    p.bwb(&["download", "--task", "cuad"]).ok();
    let manifest: serde_json::Value =
        serde_json::from_str(&p.read("data/raw/cuad/manifest.json")).unwrap();
    // `default/train/*.parquet` matched the three shards, in order.
    let files: Vec<&str> = manifest["splits"]["train"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "default/train/0000.parquet",
            "default/train/0001.parquet",
            "default/train/0002.parquet"
        ]
    );
    assert_eq!(manifest["splits"]["train"]["rows"], 53);
    assert_eq!(
        manifest["commit"],
        "2fa0a94b4eb51a72d69d226566313d08419df3c2"
    );
    assert_eq!(manifest["revision"], "refs/convert/parquet");
    // Nested parquet columns arrive intact.
    let rows = jsonl(&p.read("data/raw/cuad/train.jsonl"));
    let answers = &rows[0]["answers"];
    assert!(
        answers["text"].is_array() && answers["answer_start"].is_array(),
        "{answers}"
    );
    assert!(!p.path("data/smoke").exists());
}

#[test]
fn hf_hub_cache_variable_wins_over_hf_home() {
    let p = Project::new();
    let cache = p.path("elsewhere");
    crate::common::copy_dir(&p.path("tests/fixtures/hub"), &cache);
    let p = p
        .set_env("HF_HOME", "/nonexistent-hf-home")
        .set_env("HF_HUB_CACHE", &cache.display().to_string())
        .set_env("HF_HUB_OFFLINE", "1");
    p.bwb(&["download", "--task", "fpb"]).ok();
    assert_eq!(jsonl(&p.read("data/raw/fpb/train.jsonl")).len(), 54);
}

#[test]
fn offline_without_cached_file_names_it() {
    let p = Project::new()
        .set_env("HF_HOME", "/nonexistent-hf-home")
        .set_env("HF_HUB_OFFLINE", "1");
    let err = p.bwb(&["download", "--task", "banking77"]).fails(1);
    assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
    assert!(
        err.contains("PolyAI/banking77") && err.contains("default/"),
        "{err}"
    );
    assert!(!p.path("data/raw/banking77/manifest.json").exists());
}

#[test]
fn truncated_parquet_names_the_file() {
    let p = Project::new().with_hf_home_cache();
    let target = p.path(
        "hf-home/hub/datasets--PolyAI--banking77/snapshots/714cddcf955880f86234b6713364d12991d4d93e/default/train/0000.parquet",
    );
    std::fs::copy(
        format!("{REPO}/tests/fixtures/broken/banking77_truncated.parquet"),
        &target,
    )
    .unwrap();
    let err = p.bwb(&["download", "--task", "banking77"]).fails(1);
    assert!(err.contains("default/train/0000.parquet"), "{err}");
    assert!(err.contains("damaged or truncated"), "{err}");
    assert!(!p.path("data/raw/banking77/manifest.json").exists());
}

#[test]
fn unwritable_output_directory_is_one_line() {
    let p = Project::new();
    // A file where the data directory should be: nothing can be created under it.
    p.write("data", "not a directory");
    let err = p
        .bwb(&["--smoke-test", "download", "--task", "fpb"])
        .fails(1);
    assert!(
        err.contains("cannot write") && err.contains("data"),
        "{err}"
    );
    assert_eq!(p.read("data"), "not a directory");
}

#[test]
fn rerun_replaces_raw_files_atomically() {
    let p = Project::new();
    p.bwb(&["--smoke-test", "download", "--task", "fpb"]).ok();
    let first = p.read("data/smoke/raw/fpb/train.jsonl");
    p.bwb(&["--smoke-test", "download", "--task", "fpb"]).ok();
    assert_eq!(first, p.read("data/smoke/raw/fpb/train.jsonl"));
    let leftovers: Vec<_> = std::fs::read_dir(p.path("data/smoke/raw/fpb"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".bwb-tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn online_download_through_hf_hub_fills_the_cache_then_works_offline() {
    let p = Project::new();
    let server = crate::hub_server::start(p.path("tests/fixtures/hub"));
    let hf_home = p.path("fresh-hf-home");
    let p = p
        .set_env("HF_HOME", &hf_home.display().to_string())
        .set_env("HF_ENDPOINT", &server.endpoint)
        .set_env("HF_TOKEN", "hf_test_token");
    // cuad needs the listing API (sharded `*.parquet`); fpb a plain file on a refs/ revision.
    p.bwb(&["download", "--task", "cuad,fpb"]).ok();
    assert_eq!(jsonl(&p.read("data/raw/cuad/train.jsonl")).len(), 53);
    assert_eq!(jsonl(&p.read("data/raw/fpb/train.jsonl")).len(), 54);
    let fetched = server.downloads.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(fetched, 3 + 1 + 1, "3 cuad train shards + 1 test + 1 fpb");
    // HF_TOKEN reached the hub, and nothing else was sent as a credential.
    assert_eq!(*server.auth.lock().unwrap(), ["Bearer hf_test_token"]);
    // The hub cache now holds them in the standard layout…
    let cached =
        hf_home.join("hub/datasets--takala--financial_phrasebank/refs/refs/convert/parquet");
    assert_eq!(
        std::fs::read_to_string(cached).unwrap().trim(),
        "7a39c2699282b4649407bbd9f983c8f9557df704"
    );
    // …so a rerun downloads nothing, and offline works.
    p.bwb(&["download", "--task", "fpb"]).ok();
    assert_eq!(
        server.downloads.load(std::sync::atomic::Ordering::SeqCst),
        fetched
    );
    let p = p.set_env("HF_HUB_OFFLINE", "1");
    p.bwb(&["download", "--task", "fpb"]).ok();
}
