//! `bwb sync` against the hub stand-in (`sync_hub.rs`): up then down restores identical
//! files, a second up commits nothing, an interrupted up converges with one commit, 429 is
//! retried, and the token never leaves the Authorization header.

use std::path::Path;

use crate::common::{snapshot, Project};
use crate::sync_hub::{self, HubServer, TOKEN};

const REPO: &str = "me/bwb-artifacts";
const ADAPTER: &str = "checkpoints/smollm2-135m/fpb/lora-500/adapter";

/// A project holding one of each kind of output, and some files that are not synced.
fn outputs(server: &HubServer) -> Project {
    let p = project(server);
    // Not valid safetensors, but bytes with zeros: the hub stand-in routes it through LFS.
    let weights: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::create_dir_all(p.path(ADAPTER)).unwrap();
    std::fs::write(
        p.path(&format!("{ADAPTER}/adapter_model.safetensors")),
        &weights,
    )
    .unwrap();
    p.write(
        &format!("{ADAPTER}/adapter_config.json"),
        r#"{"peft_type":"LORA","base_model_name_or_path":"HuggingFaceTB/SmolLM2-135M-Instruct"}"#,
    );
    p.write(
        "results/predictions/smollm2-135m/fpb/zero-shot/seed-0.jsonl",
        "{\"id\":\"1\"}\n",
    );
    p.write(
        "results/classified/fpb/smollm2-135m.jsonl",
        "{\"id\":\"1\"}\n",
    );
    p.write("results/summaries/fpb.json", "{\"headline\": 0.5}\n");
    p.write("results/training/smollm2-135m_fpb_lora-500.json", "{}\n");
    p.write("data/prepared/fpb/test.jsonl", "{\"id\":\"1\"}\n");
    // Not synced: a step checkpoint, raw data, a temporary file, smoke outputs, the API cache.
    p.write(
        "checkpoints/smollm2-135m/fpb/lora-500/step-000010/adapter_config.json",
        "{}",
    );
    p.write("data/raw/fpb/test.jsonl", "{}\n");
    p.write(&format!("{ADAPTER}/.bwb-tmp-1.json"), "{}");
    p.write("results/smoke/summaries/fpb.json", "{}\n");
    p.write("results/api-cache/x.json", "{}\n");
    p
}

fn project(server: &HubServer) -> Project {
    let p = Project::new();
    let hf_home = p.path("hf-home");
    p.set_env("HF_HOME", &hf_home.display().to_string())
        .set_env("HF_ENDPOINT", &server.endpoint)
        .set_env("HF_TOKEN", TOKEN)
        .set_env("BWB_HUB_BACKOFF_MS", "10")
}

const SYNCED: [&str; 7] = [
    "checkpoints/smollm2-135m/fpb/lora-500/adapter/adapter_config.json",
    "checkpoints/smollm2-135m/fpb/lora-500/adapter/adapter_model.safetensors",
    "data/prepared/fpb/test.jsonl",
    "results/classified/fpb/smollm2-135m.jsonl",
    "results/predictions/smollm2-135m/fpb/zero-shot/seed-0.jsonl",
    "results/summaries/fpb.json",
    "results/training/smollm2-135m_fpb_lora-500.json",
];

fn synced_files(root: &Path) -> Vec<(String, Vec<u8>)> {
    SYNCED
        .iter()
        .map(|r| (r.to_string(), std::fs::read(root.join(r)).unwrap()))
        .collect()
}

/// No violation, and the token in no body.
fn clean(server: &HubServer) {
    let hub = server.hub();
    assert!(hub.violations.is_empty(), "{:#?}", hub.violations);
    for b in &hub.bodies {
        assert!(
            !String::from_utf8_lossy(b).contains(TOKEN),
            "the token was sent in a body"
        );
    }
}

#[test]
fn up_then_down_restores_identical_files_and_a_second_up_commits_nothing() {
    let server = sync_hub::start();
    let a = outputs(&server);
    let up = ["sync", "--direction", "up", "--repo", REPO];

    // A dry run lists and sends nothing but the listing.
    let out = a
        .bwb(&["sync", "--direction", "up", "--repo", REPO, "--dry-run"])
        .ok();
    assert!(
        out.stdout().contains("would upload 7 file(s)"),
        "{}",
        out.stdout()
    );
    assert!(server.hub().repos.is_empty());

    let run = a.bwb(&[&["-v"][..], &up[..]].concat()).ok();
    let text = format!("{}{}", run.stdout(), run.stderr());
    assert!(!text.contains(TOKEN), "token in the output: {text}");
    assert!(text.contains("uploaded 7 file(s)"), "{text}");
    {
        let hub = server.hub();
        let repo = &hub.repos[REPO];
        assert!(repo.private, "created private");
        assert_eq!(repo.kind, "dataset");
        assert_eq!(repo.commits.len(), 1);
        let c = &repo.commits[0];
        assert!(
            c.summary.starts_with("bwb sync: 7 file(s)"),
            "{}",
            c.summary
        );
        assert!(c.description.contains("adapter_model.safetensors"));
        let mut paths: Vec<&str> = c.files.iter().map(|(p, _)| p.as_str()).collect();
        paths.sort();
        assert_eq!(paths, SYNCED);
        // Only the weights went through LFS, uploaded once.
        let lfs: Vec<&str> = c
            .files
            .iter()
            .filter(|f| f.1)
            .map(|f| f.0.as_str())
            .collect();
        assert_eq!(lfs, [SYNCED[1]]);
        assert_eq!(hub.lfs_puts, 1);
        let stored = &repo.files[SYNCED[1]];
        assert_eq!(
            stored.content,
            std::fs::read(a.path(SYNCED[1])).unwrap(),
            "LFS content"
        );
    }
    clean(&server);

    // Nothing changed: no commit, no upload.
    let again = a.bwb(&up).ok().stdout();
    assert!(again.contains("nothing to commit"), "{again}");
    assert!(again.contains("7 already up to date"), "{again}");
    assert_eq!(server.hub().repos[REPO].commits.len(), 1);
    assert_eq!(server.hub().lfs_puts, 1);

    // A fresh project gets the same bytes at the same paths, and nothing else.
    let b = project(&server);
    let dry = b
        .bwb(&["sync", "--direction", "down", "--repo", REPO, "--dry-run"])
        .ok()
        .stdout();
    assert!(dry.contains("would download 7 file(s)"), "{dry}");
    assert!(!b.path("results/summaries/fpb.json").exists());
    b.bwb(&["sync", "--direction", "down", "--repo", REPO]).ok();
    assert_eq!(synced_files(b.root()), synced_files(a.root()));
    assert!(!b.path("data/raw").exists() && !b.path("results/api-cache").exists());

    // One kind at a time: a changed summary goes up alone and comes down alone.
    a.write("results/summaries/fpb.json", "{\"headline\": 0.75}\n");
    a.bwb(&[
        "sync",
        "--what",
        "predictions",
        "--direction",
        "up",
        "--repo",
        REPO,
    ])
    .ok();
    assert_eq!(server.hub().repos[REPO].commits.len(), 1);
    a.bwb(&[
        "sync",
        "--what",
        "summaries",
        "--direction",
        "up",
        "--repo",
        REPO,
    ])
    .ok();
    {
        let hub = server.hub();
        let c = &hub.repos[REPO].commits;
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[1].files,
            [("results/summaries/fpb.json".to_string(), false)]
        );
    }
    let down = b
        .bwb(&["sync", "--direction", "down", "--repo", REPO])
        .ok()
        .stdout();
    assert!(down.contains("downloaded 1 file(s)"), "{down}");
    assert_eq!(
        b.read("results/summaries/fpb.json"),
        "{\"headline\": 0.75}\n"
    );
    assert_eq!(
        snapshot(&b.path("checkpoints")),
        snapshot(&a.path("checkpoints/smollm2-135m/fpb/lora-500/adapter"))
            .into_iter()
            .filter(|(p, _)| !p.starts_with('.'))
            .map(|(p, c)| (format!("smollm2-135m/fpb/lora-500/adapter/{p}"), c))
            .collect::<Vec<_>>()
    );
    clean(&server);
}

#[test]
fn an_interrupted_up_converges_with_exactly_one_commit() {
    let server = sync_hub::start();
    let a = outputs(&server).set_env("BWB_HUB_MAX_ATTEMPTS", "2");
    let up = ["sync", "--direction", "up", "--repo", REPO];
    // Every commit attempt of the first run fails: it stops, after the LFS upload.
    server.hub().fail_commits = 2;
    let err = a.bwb(&up).fails(1);
    assert!(err.contains("run the same `bwb sync` again"), "{err}");
    assert!(err.contains("HTTP 500"), "{err}");
    assert!(server.hub().repos[REPO].commits.is_empty());
    assert_eq!(server.hub().lfs_puts, 1);
    // The rerun commits once and does not upload the LFS object again.
    a.bwb(&up).ok();
    assert_eq!(server.hub().repos[REPO].commits.len(), 1);
    assert_eq!(server.hub().lfs_puts, 1);
    a.bwb(&up).ok();
    assert_eq!(server.hub().repos[REPO].commits.len(), 1);

    // A commit that lands but whose answer is lost is not made twice.
    a.write("results/summaries/fpb.json", "{\"headline\": 0.9}\n");
    server.hub().lose_commit_answers = 1;
    a.bwb(&up).ok();
    assert_eq!(server.hub().repos[REPO].commits.len(), 2);
    clean(&server);
}

#[test]
fn rate_limits_are_waited_out() {
    let server = sync_hub::start();
    let a = outputs(&server);
    server.hub().throttle_preuploads = 1;
    let started = std::time::Instant::now();
    a.bwb(&["sync", "--direction", "up", "--repo", REPO]).ok();
    assert!(
        started.elapsed().as_secs_f64() >= 1.0,
        "Retry-After: 1 honoured"
    );
    let hub = server.hub();
    let preuploads = hub
        .requests
        .iter()
        .filter(|(_, p)| p.contains("/preupload/"))
        .count();
    assert_eq!(preuploads, 2);
    assert_eq!(hub.repos[REPO].commits.len(), 1);
    drop(hub);
    clean(&server);
}

#[test]
fn bad_repo_ids_missing_tokens_and_missing_repos_are_one_line_errors() {
    let server = sync_hub::start();
    let p = project(&server);
    let err = p
        .bwb(&["sync", "--direction", "up", "--repo", "not a repo"])
        .fails(1);
    assert!(
        err.contains("ORG/NAME") && err.contains("not a repo"),
        "{err}"
    );
    let err = p.bwb(&["sync", "--direction", "up"]).fails(1);
    assert!(
        err.contains("--repo ORG/NAME") && err.contains("BWB_HUB_REPO"),
        "{err}"
    );
    let err = p
        .bwb(&["sync", "--direction", "down", "--repo", "me/never-made"])
        .fails(1);
    assert!(
        err.contains("datasets/me/never-made") && err.contains("--repo"),
        "{err}"
    );

    let mut no_token = Project::new();
    no_token
        .env
        .push(("HF_HOME".into(), no_token.path("hf").display().to_string()));
    no_token
        .env
        .push(("HF_ENDPOINT".into(), server.endpoint.clone()));
    let err = no_token
        .bwb(&["sync", "--direction", "up", "--repo", REPO])
        .fails(1);
    assert!(
        err.contains("HF_TOKEN") && err.contains("huggingface-cli login"),
        "{err}"
    );
    // $HF_HOME/token is read as huggingface_hub writes it.
    std::fs::create_dir_all(no_token.path("hf")).unwrap();
    std::fs::write(no_token.path("hf/token"), format!("{TOKEN}\n")).unwrap();
    no_token
        .bwb(&["sync", "--direction", "up", "--repo", REPO])
        .ok();
    // A wrong token is refused by the hub: one line, the token not in it.
    let wrong = project(&server).set_env("HF_TOKEN", "hf_wrong_token");
    let err = wrong
        .bwb(&["sync", "--direction", "up", "--repo", REPO])
        .fails(1);
    assert!(err.contains("401") && err.contains("HF_TOKEN"), "{err}");
    assert!(!err.contains("hf_wrong_token"), "{err}");
}

#[test]
fn auto_upload_pushes_each_trained_adapter_with_a_model_card_but_never_from_smoke_runs() {
    let server = sync_hub::start();
    let p = crate::train::prepared_project();
    let hf_home = p.path("hf-home").display().to_string();
    let p = p
        .set_env("HF_HOME", &hf_home)
        .set_env("HF_ENDPOINT", &server.endpoint)
        .set_env("HF_TOKEN", TOKEN);
    let args = crate::train::train_args(&["--auto-upload", "--hub-org", "me"]);
    let out = p.bwb(&args).ok().stdout();
    assert!(out.contains("skipped in a smoke run"), "{out}");
    assert!(server.hub().repos.is_empty());

    // Forced (tests only): the finished adapter goes to its own model repo.
    let p = p.set_env("BWB_AUTO_UPLOAD_SMOKE", "1");
    let out = p.bwb(&args).ok().stdout();
    let repo_id = "me/bwb-smoke-fpb-lora-500";
    assert!(
        out.contains(&format!("pushed 3 file(s) to {repo_id}")),
        "{out}"
    );
    {
        let hub = server.hub();
        let repo = &hub.repos[repo_id];
        assert_eq!(repo.kind, "model");
        assert!(repo.private);
        assert_eq!(repo.commits.len(), 1);
        let ck = "checkpoints/smoke/smoke/fpb/lora-500/adapter";
        for f in ["adapter_config.json", "adapter_model.safetensors"] {
            assert_eq!(
                repo.files[f].content,
                std::fs::read(p.path(&format!("{ck}/{f}"))).unwrap(),
                "{f}"
            );
        }
        assert!(repo.files["adapter_model.safetensors"].lfs.is_some());
        let card = String::from_utf8(repo.files["README.md"].content.clone()).unwrap();
        for want in [
            "library_name: peft",
            "fpb",
            "## Hyperparameters",
            "| lr |",
            "Best epoch",
            "from_pretrained(\"me/bwb-smoke-fpb-lora-500\")",
        ] {
            assert!(card.contains(want), "{want:?} not in\n{card}");
        }
    }
    // Again: the repo already holds it.
    let out = p.bwb(&args).ok().stdout();
    assert!(out.contains("already holds this adapter"), "{out}");
    assert_eq!(server.hub().repos[repo_id].commits.len(), 1);
    clean(&server);

    // No org: a one-line error naming the flag, before anything trains.
    let err = p
        .bwb(&crate::train::train_args(&["--auto-upload"]))
        .fails(1);
    assert!(
        err.contains("--hub-org ORG") && err.contains("BWB_HUB_ORG"),
        "{err}"
    );
}

/// `scripts/pin-caches.sh` (what ./start.sh runs) in `dir`, with only `env` set.
fn pin_caches(dir: &Path, env: &[(&str, &str)]) -> String {
    let script = Path::new(crate::common::REPO).join("scripts/pin-caches.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(dir.join(".env")).unwrap()
}

#[test]
fn a_fresh_pod_gets_back_to_the_same_state_with_start_sh_then_sync_down() {
    let server = sync_hub::start();
    let a = outputs(&server);
    a.bwb(&["sync", "--direction", "up", "--repo", REPO]).ok();

    // The fresh pod: start.sh pins the caches inside the repository, in .env.
    let mut b = Project::new();
    let root = b.root().to_path_buf();
    let env = pin_caches(&root, &[]);
    let hf_home = format!("HF_HOME={}/.cache/huggingface", root.display());
    let quant = format!("BWB_CACHE_DIR={}/.cache/bwb/quantized", root.display());
    assert_eq!(
        env.lines().collect::<Vec<_>>(),
        [hf_home.as_str(), quant.as_str()]
    );
    assert_eq!(pin_caches(&root, &[]), env, "a rerun changes nothing");
    // Moved checkout: the paths start.sh wrote follow it; a user's own value is kept.
    std::fs::write(
        root.join(".env"),
        "HF_HOME=/old/mount/.cache/huggingface\nBWB_CACHE_DIR=/mine\n",
    )
    .unwrap();
    let moved = pin_caches(&root, &[]);
    assert!(
        moved.contains(&hf_home) && moved.contains("BWB_CACHE_DIR=/mine"),
        "{moved}"
    );
    assert!(!moved.contains("/old/mount"), "{moved}");
    std::fs::remove_file(root.join(".env")).unwrap();
    // Set in the environment: left alone.
    let kept = pin_caches(&root, &[("HF_HOME", "/elsewhere")]);
    assert!(!kept.contains("HF_HOME"), "{kept}");
    assert!(kept.contains(&quant), "{kept}");
    std::fs::write(root.join(".env"), format!("{env}HF_TOKEN={TOKEN}\n")).unwrap();

    b.env.push(("HF_ENDPOINT".into(), server.endpoint.clone()));
    b.bwb(&["sync", "--direction", "down", "--repo", REPO]).ok();
    assert_eq!(synced_files(b.root()), synced_files(a.root()));
    // hf-hub's cache is the one inside the repository.
    assert!(b
        .path(".cache/huggingface/hub/datasets--me--bwb-artifacts")
        .is_dir());
    clean(&server);
}

#[test]
fn dashboard_publish_uploads_the_static_site_to_a_space() {
    let server = sync_hub::start();
    let p = project(&server);
    crate::dashboard::write_summaries(
        p.root(),
        false,
        &crate::dashboard::all_summaries(&crate::dashboard::TASKS),
    );
    let out = p
        .bwb(&["dashboard", "--publish", "me/bwb-board"])
        .ok()
        .stdout();
    assert!(out.contains("published"), "{out}");
    {
        let hub = server.hub();
        let space = &hub.repos["me/bwb-board"];
        assert_eq!(space.kind, "space");
        assert!(space.private);
        assert_eq!(space.commits.len(), 1);
        let readme = String::from_utf8_lossy(&space.files["README.md"].content).into_owned();
        assert!(readme.contains("sdk: static") && readme.contains("app_file: index.html"));
        for f in ["index.html", "data.js", "app.js", "vendor/chart.umd.min.js"] {
            assert_eq!(
                space.files[f].content,
                std::fs::read(p.path(&format!("site/{f}"))).unwrap(),
                "{f}"
            );
        }
    }
    // The same summaries again: only the build time in data.js can differ (a rebuild in a
    // later second), so at most data.js is committed.
    p.bwb(&["dashboard", "--publish", "me/bwb-board"]).ok();
    {
        let hub = server.hub();
        let commits = &hub.repos["me/bwb-board"].commits;
        assert!(commits.len() <= 2, "{commits:?}");
        if let Some(c) = commits.get(1) {
            assert_eq!(c.files, [("data.js".to_string(), false)]);
        }
    }
    clean(&server);
}

#[test]
fn large_lfs_objects_go_up_in_parts_when_the_hub_asks() {
    let server = sync_hub::start();
    server.hub().multipart_chunk = Some(30_000);
    let a = outputs(&server);
    a.bwb(&["sync", "--direction", "up", "--repo", REPO]).ok();
    {
        let hub = server.hub();
        // 70,000 bytes in parts of 30,000.
        assert_eq!(hub.parts.len(), 3);
        assert_eq!(hub.lfs_puts, 1);
        assert_eq!(hub.repos[REPO].commits.len(), 1);
    }
    let b = project(&server);
    b.bwb(&["sync", "--direction", "down", "--repo", REPO]).ok();
    assert_eq!(synced_files(b.root()), synced_files(a.root()));
    clean(&server);
}
