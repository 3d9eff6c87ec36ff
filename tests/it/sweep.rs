//! Sweeps: `bwb plan` (manifest, SkyPilot and Slurm files), `bwb run --manifest M --cell ID`
//! (one cell in its own results folder, resumable) and `bwb collect` (the cells merged into the
//! report one `bwb run` writes). The engine files are checked with bash -n, shellcheck and
//! SkyPilot's own task parser where those are installed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{jsonl, Project};

/// `bwb --smoke-test plan … --out sweeps/<name>`; returns the manifest's cells.
fn plan(p: &Project, name: &str, extra: &[&str]) -> Vec<Value> {
    let out = format!("sweeps/{name}");
    let mut args = vec!["--smoke-test", "plan", "--out", &out];
    args.extend_from_slice(extra);
    p.bwb(&args).ok();
    jsonl(&p.read(&format!("sweeps/{name}/manifest.jsonl")))
}

fn id(cell: &Value) -> String {
    cell["cell_id"].as_str().unwrap().to_string()
}

/// The summaries of a results folder, by file name: the parts that depend on predictions only
/// (latency and timing differ from run to run).
fn summary_metrics(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "json") {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let keep = serde_json::json!({
                "metrics": v["metrics"], "error_classes": v["error_classes"],
                "n_predictions": v["n_predictions"], "comparisons": v["comparisons"],
                "seeds": v["seeds"], "primary_metric": v["primary_metric"],
            });
            out.insert(
                path.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::to_string(&keep).unwrap(),
            );
        }
    }
    out
}

const GRID: [&str; 8] = [
    "--models",
    "smoke",
    "--tasks",
    "fpb",
    "--conditions",
    "zero-shot,lora-500",
    "--seeds",
    "1",
];

#[test]
fn cells_run_apart_and_collect_into_the_summaries_of_one_run() {
    let p = Project::new();
    let cells_dir = p.path("cell-results");
    let cells_arg = cells_dir.display().to_string();
    let mut extra = vec!["--engine", "slurm", "--results", &cells_arg];
    extra.extend_from_slice(&GRID);
    let cells = plan(&p, "grid", &extra);
    assert_eq!(cells.len(), 2);
    for c in &cells {
        assert_eq!(c["needs_gpu"], true);
        assert_eq!(c["results"], cells_arg.as_str());
        assert_eq!(id(c).len(), 16);
    }
    // Each cell as its own process, into its own folder.
    for c in &cells {
        let out = p
            .bwb(&[
                "--smoke-test",
                "run",
                "--manifest",
                "sweeps/grid/manifest.jsonl",
                "--cell",
                &id(c),
            ])
            .ok()
            .stdout();
        assert!(out.contains("finished"), "{out}");
        let dir = cells_dir.join(id(c));
        assert!(dir.join("bwb-cell-done.json").is_file());
        let preds = dir.join("results/smoke/predictions/smoke/fpb");
        let conds: Vec<String> = std::fs::read_dir(&preds)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(conds, vec![c["condition"].as_str().unwrap().to_string()]);
    }
    assert!(
        !p.path("results/smoke").exists(),
        "a cell wrote to the root"
    );
    // A finished cell does nothing the second time.
    let again = p
        .bwb(&[
            "--smoke-test",
            "run",
            "--manifest",
            "sweeps/grid/manifest.jsonl",
            "--cell",
            &id(&cells[0]),
        ])
        .ok()
        .stdout();
    assert!(again.contains("finished; nothing to do"), "{again}");
    assert!(!again.contains("==> eval"), "{again}");

    let out = p
        .bwb(&[
            "--smoke-test",
            "collect",
            "--sweep",
            "sweeps/grid",
            "--from",
            &cells_arg,
        ])
        .ok()
        .stdout();
    assert!(out.contains("2 of 2 cells merged"), "{out}");
    for f in [
        "results/smoke/summaries/all.csv",
        "results/smoke/training/smoke_fpb_lora-500.json",
        "dashboard-data/smoke/summaries.json",
        "site/smoke/index.html",
    ] {
        assert!(p.path(f).is_file(), "{f} missing: {out}");
    }

    // The same grid as one `bwb run` on one machine.
    let one = Project::new();
    let mut args = vec!["--smoke-test", "run"];
    args.extend_from_slice(&GRID);
    one.bwb(&args).ok();
    let merged = summary_metrics(&p.path("results/smoke/summaries"));
    let single = summary_metrics(&one.path("results/smoke/summaries"));
    assert_eq!(merged.len(), 2, "{merged:?}");
    assert_eq!(merged, single);
}

/// `bwb` with the project's environment, not waited for.
fn spawn_bwb(p: &Project, args: &[&str]) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bwb"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("--root")
        .arg(p.root())
        .args(args)
        .current_dir(p.root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in &p.env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn complete_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.matches('\n').count())
        .unwrap_or(0)
}

#[test]
fn a_cell_killed_half_way_resumes_without_duplicated_predictions() {
    let p = Project::new();
    let cells = plan(
        &p,
        "kill",
        &[
            "--engine",
            "slurm",
            "--models",
            "smoke",
            "--tasks",
            "fpb",
            "--conditions",
            "5-shot",
            "--seeds",
            "1",
        ],
    );
    let cell = id(&cells[0]);
    let dir = p.path("sweeps/kill/results").join(&cell);
    let preds = dir.join("results/smoke/predictions/smoke/fpb/5-shot/seed-1.jsonl");
    let args = [
        "--smoke-test",
        "run",
        "--manifest",
        "sweeps/kill/manifest.jsonl",
        "--cell",
        &cell,
    ];
    // Kill it once the first batch of predictions is written, before the rest.
    let mut child = spawn_bwb(&p, &args);
    let mut killed_at = None;
    for _ in 0..6000 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the cell finished ({status}) before it could be killed half-way");
        }
        if complete_lines(&preds) > 0 {
            child.kill().unwrap();
            child.wait().unwrap();
            // Count again: more lines may have landed between the check and the kill.
            killed_at = Some(complete_lines(&preds));
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let n = killed_at.expect("no prediction written within a minute");
    assert!(!dir.join("bwb-cell-done.json").exists());
    // collect sees it unfinished and says how to relaunch it.
    let r = p.bwb(&["--smoke-test", "collect", "--sweep", "sweeps/kill"]);
    let out = r.stdout();
    let err = r.fails(1);
    assert!(err.contains("1 of 1 cells"), "{err}");
    assert!(
        out.contains(&format!("cell {cell} (smoke/fpb/5-shot): unfinished"))
            && out.contains("sbatch --array=0 bwb-gpu.sbatch")
            && out.contains(&format!(
                "bwb --smoke-test run --manifest sweeps/kill/manifest.jsonl --cell {cell}"
            )),
        "{out}"
    );
    // Rerun: resumes and finishes, every example once.
    let out = p.bwb(&args).ok().stdout();
    assert!(
        out.contains(&format!("{n} already done")),
        "killed at {n}: {out}"
    );
    assert!(dir.join("bwb-cell-done.json").is_file());
    let lines = jsonl(&std::fs::read_to_string(&preds).unwrap());
    let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    let unique: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "duplicated predictions: {ids:?}");
    let n_test =
        jsonl(&std::fs::read_to_string(dir.join("data/smoke/prepared/fpb/test.jsonl")).unwrap())
            .len();
    assert_eq!(ids.len(), n_test);
}

#[test]
fn failed_and_missing_cells_are_listed_with_how_to_relaunch_them() {
    let p = Project::new();
    let cells = plan(
        &p,
        "mixed",
        &[
            "--engine",
            "skypilot",
            "--results",
            "hf:org/bwb-results",
            "--models",
            "smoke,gpt-5.4-mini",
            "--tasks",
            "fpb",
            "--conditions",
            "zero-shot",
            "--seeds",
            "1",
        ],
    );
    assert_eq!(cells.len(), 2);
    let api = cells.iter().find(|c| c["model"] == "gpt-5.4-mini").unwrap();
    assert_eq!(api["needs_gpu"], false);
    let api_args = [
        "--smoke-test",
        "run",
        "--manifest",
        "sweeps/mixed/manifest.jsonl",
        "--cell",
        &id(api),
    ];
    // Hub results need a token before anything runs.
    let err = p.bwb(&api_args).fails(1);
    assert!(
        err.contains("pulling cell") && err.contains("HF_TOKEN"),
        "{err}"
    );
    let server = crate::sync_hub::start();
    let hf_home = p.path("hf-home").display().to_string();
    let p = p
        .set_env("HF_HOME", &hf_home)
        .set_env("HF_ENDPOINT", &server.endpoint)
        .set_env("HF_TOKEN", crate::sync_hub::TOKEN)
        .set_env("BWB_HUB_BACKOFF_MS", "10");
    // The API cell fails (no key) and leaves a failure record, pushed too.
    let err = p.bwb(&api_args).fails(1);
    assert!(err.contains("OPENAI_API_KEY"), "{err}");
    let failed = p
        .path("sweep-cells")
        .join(id(api))
        .join("bwb-cell-failed.json");
    assert!(failed.is_file());
    assert!(server.hub().repos["org/bwb-results"]
        .files
        .contains_key(&format!("cells/{}/bwb-cell-failed.json", id(api))));
    // The smoke cell finishes and pushes its folder.
    let gpu = cells.iter().find(|c| c["model"] == "smoke").unwrap();
    let out = p
        .bwb(&[
            "--smoke-test",
            "run",
            "--manifest",
            "sweeps/mixed/manifest.jsonl",
            "--cell",
            &id(gpu),
        ])
        .ok()
        .stdout();
    assert!(
        out.contains(&format!(
            "pushed to hf:org/bwb-results/cells/{}/ (finished)",
            id(gpu)
        )),
        "{out}"
    );
    // Collect without --from reads the manifest's location: the hub, where one cell failed.
    let r = p.bwb(&["--smoke-test", "collect", "--sweep", "sweeps/mixed"]);
    let out = r.stdout();
    let err = r.fails(1);
    assert!(err.contains("1 of 2 cells"), "{err}");
    assert!(
        out.contains(&format!(
            "cell {} (gpt-5.4-mini/fpb/zero-shot): failed (",
            id(api)
        )),
        "{out}"
    );
    let from = p.path("sweep-cells").display().to_string();
    let r = p.bwb(&[
        "--smoke-test",
        "collect",
        "--sweep",
        "sweeps/mixed",
        "--from",
        &from,
    ]);
    let out = r.stdout();
    r.fails(1);
    assert!(
        out.contains(&format!(
            "cell {} (gpt-5.4-mini/fpb/zero-shot): failed (",
            id(api)
        )) && out.contains("OPENAI_API_KEY")
            && out.contains(&format!(
                "sky jobs launch --yes --env-file cells/{}.env --secret HF_TOKEN bwb-cpu.sky.yaml",
                id(api)
            )),
        "{out}"
    );
    // --partial reports the finished one.
    let out = p
        .bwb(&[
            "--smoke-test",
            "collect",
            "--sweep",
            "sweeps/mixed",
            "--from",
            &from,
            "--partial",
        ])
        .ok()
        .stdout();
    assert!(out.contains("1 of 2 cells merged"), "{out}");
    assert!(p
        .path("results/smoke/summaries/smoke_fpb_zero-shot.json")
        .is_file());
}

#[test]
fn plan_refuses_bad_input_in_one_line() {
    let p = Project::new();
    let err = p
        .bwb(&[
            "--smoke-test",
            "plan",
            "--engine",
            "skypilot",
            "--out",
            "sweeps/x",
        ])
        .fails(1);
    assert!(
        err.contains("--results") && err.contains("hf:ORG/REPO"),
        "{err}"
    );
    let err = p
        .bwb(&[
            "--smoke-test",
            "plan",
            "--engine",
            "slurm",
            "--results",
            "ftp://x",
            "--out",
            "sweeps/x",
        ])
        .fails(1);
    assert!(err.contains("ftp://x"), "{err}");
    let err = p
        .bwb(&[
            "--smoke-test",
            "plan",
            "--engine",
            "slurm",
            "--models",
            "nope",
            "--out",
            "sweeps/x",
        ])
        .fails(1);
    assert!(err.contains("nope"), "{err}");
    plan(&p, "ok", &["--engine", "slurm", "--tasks", "fpb"]);
    let err = p
        .bwb(&[
            "--smoke-test",
            "run",
            "--manifest",
            "sweeps/ok/manifest.jsonl",
            "--cell",
            "0000",
        ])
        .fails(1);
    assert!(
        err.contains("--cell 0000") && err.contains("manifest.jsonl"),
        "{err}"
    );
    // A cell whose configs changed since the plan is refused.
    let cells = jsonl(&p.read("sweeps/ok/manifest.jsonl"));
    let task = p.read("configs/tasks/fpb.yaml");
    p.write("configs/tasks/fpb.yaml", &format!("{task}\n# changed\n"));
    let err = p
        .bwb(&[
            "--smoke-test",
            "run",
            "--manifest",
            "sweeps/ok/manifest.jsonl",
            "--cell",
            &id(&cells[0]),
        ])
        .fails(1);
    assert!(err.contains("changed since `bwb plan`"), "{err}");
    p.write("configs/tasks/fpb.yaml", &task);
    let prompt = p.read("prompts/fpb/user.txt");
    p.write("prompts/fpb/user.txt", &format!("{prompt} "));
    let err = p
        .bwb(&[
            "--smoke-test",
            "run",
            "--manifest",
            "sweeps/ok/manifest.jsonl",
            "--cell",
            &id(&cells[0]),
        ])
        .fails(1);
    assert!(err.contains("changed since `bwb plan`"), "{err}");
}

/// A tool on PATH, or skip (printing why) unless `require` is set in the environment.
fn tool_or_skip(tool: &str, require: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var(require).ok().as_deref() != Some("1"),
            "{require}=1 but {tool} is not installed"
        );
        eprintln!("skipped: {tool} is not installed (Debian package `{tool}`; set {require}=1 to require it)");
    }
    found
}

fn sh_ok(args: &[&str], dir: &Path) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn slurm_arrays_pass_bash_n_and_shellcheck_and_map_task_ids_to_cells() {
    let p = Project::new();
    let cells = plan(
        &p,
        "slurm",
        &[
            "--engine",
            "slurm",
            "--models",
            "smoke,gpt-5.4-mini",
            "--tasks",
            "fpb",
            "--conditions",
            "zero-shot,lora-500",
            "--max-parallel",
            "3",
        ],
    );
    // GPU cells first; API models get no LoRA cells.
    let kinds: Vec<bool> = cells
        .iter()
        .map(|c| c["needs_gpu"].as_bool().unwrap())
        .collect();
    assert_eq!(kinds, vec![true, true, false]);
    let dir = p.path("sweeps/slurm");
    let gpu = p.read("sweeps/slurm/bwb-gpu.sbatch");
    let cpu = p.read("sweeps/slurm/bwb-cpu.sbatch");
    assert!(
        gpu.contains("#SBATCH --array=0-1%3") && gpu.contains("#SBATCH --gres=gpu:1"),
        "{gpu}"
    );
    assert!(
        cpu.contains("#SBATCH --array=0-0%3") && !cpu.contains("--gres"),
        "{cpu}"
    );
    for (name, text) in [("gpu", &gpu), ("cpu", &cpu)] {
        // Every #SBATCH line before the first command (sbatch stops reading at it).
        let first_command = text
            .lines()
            .position(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let last_directive = lines
            .iter()
            .rposition(|l| l.starts_with("#SBATCH"))
            .unwrap();
        assert!(last_directive < first_command, "{name}: {text}");
    }
    let files = ["bwb-gpu.sbatch", "bwb-cpu.sbatch", "submit.sh"];
    for f in files {
        sh_ok(&["bash", "-n", f], &dir);
    }
    if tool_or_skip("shellcheck", "BWB_REQUIRE_SHELLCHECK") {
        let mut args = vec!["shellcheck"];
        args.extend(files);
        sh_ok(&args, &dir);
        let sky = plan(
            &p,
            "sky",
            &[
                "--engine",
                "skypilot",
                "--results",
                "s3://b/r",
                "--tasks",
                "fpb",
            ],
        );
        assert!(!sky.is_empty());
        sh_ok(&["shellcheck", "submit.sh"], &p.path("sweeps/sky"));
    }
    // Each array task runs its own manifest line (a stand-in `bwb` prints its arguments).
    let fake = p.path("fake-bwb");
    std::fs::write(&fake, "#!/bin/sh\necho \"$@\"\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for (script, task_id, cell) in [
        ("bwb-gpu.sbatch", "1", &cells[1]),
        ("bwb-cpu.sbatch", "0", &cells[2]),
    ] {
        let out = Command::new("bash")
            .arg(script)
            .current_dir(&dir)
            .env("BWB", &fake)
            .env("SLURM_ARRAY_TASK_ID", task_id)
            .env("SLURM_SUBMIT_DIR", &dir)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{script}: {stdout}");
        assert_eq!(
            stdout.trim(),
            format!(
                "--smoke-test run --manifest manifest.jsonl --cell {}",
                id(cell)
            )
        );
    }
}

/// The Python with SkyPilot installed (`BWB_SKY_PYTHON`, .ci/run's .ci/venv-sky), or skip.
fn sky_python() -> Option<PathBuf> {
    let require = std::env::var("BWB_REQUIRE_SKY").ok().as_deref() == Some("1");
    let py = std::env::var("BWB_SKY_PYTHON")
        .ok()
        .map(PathBuf::from)
        .or_else(|| {
            let p = Path::new(crate::common::REPO).join(".ci/venv-sky/bin/python");
            p.is_file().then_some(p)
        });
    let ok = py.as_ref().is_some_and(|py| {
        Command::new(py)
            .args(["-c", "import sky"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !ok {
        assert!(
            !require,
            "BWB_REQUIRE_SKY=1 but no Python with `sky` (set BWB_SKY_PYTHON)"
        );
        eprintln!("skipped: SkyPilot is not installed (python3 -m venv .ci/venv-sky && .ci/venv-sky/bin/pip install skypilot, or set BWB_SKY_PYTHON; BWB_REQUIRE_SKY=1 to require it)");
        return None;
    }
    py
}

/// Parse each (yaml, env file) with `sky.Task.from_yaml_config`; prints one line per check.
const SKY_CHECK: &str = r##"
import sys, json, yaml, sky
for path, envfile in json.loads(sys.argv[1]):
    cfg = yaml.safe_load(open(path))
    envs = [tuple(l.strip().split("=", 1)) for l in open(envfile) if l.strip() and not l.startswith("#")]
    task = sky.Task.from_yaml_config(cfg, env_overrides=envs, secrets_overrides=[("HF_TOKEN", "hf_x")])
    print("ok", path, task.envs["BWB_CELL"], len(task.resources))
try:
    sky.Task.from_yaml_config(yaml.safe_load(open(json.loads(sys.argv[1])[0][0])))
    print("no-cell accepted")
except ValueError as e:
    print("no-cell refused")
"##;

#[test]
fn skypilot_yaml_is_valid_to_skypilots_own_parser() {
    let p = Project::new();
    let cells = plan(
        &p,
        "sky",
        &[
            "--engine",
            "skypilot",
            "--results",
            "hf:org/bwb-results",
            "--accelerators",
            "H100:1,A100-80GB:1",
            "--image",
            "ghcr.io/org/bwb:cuda",
            "--models",
            "smoke,gpt-5.4-mini",
            "--tasks",
            "fpb,medmcqa",
            "--conditions",
            "zero-shot,lora-500",
        ],
    );
    assert_eq!(cells.len(), 6);
    let dir = p.path("sweeps/sky");
    let gpu = p.read("sweeps/sky/bwb-gpu.sky.yaml");
    for want in [
        "accelerators: [\"H100:1\", \"A100-80GB:1\"]",
        "image_id: \"docker:ghcr.io/org/bwb:cuda\"",
        "job_recovery:",
        "HF_TOKEN: null",
        "bwb --smoke-test run --manifest manifest.jsonl --cell \"$BWB_CELL\"",
    ] {
        assert!(gpu.contains(want), "{want}: {gpu}");
    }
    let submit = p.read("sweeps/sky/submit.sh");
    for c in &cells {
        let env = p.read(&format!("sweeps/sky/cells/{}.env", id(c)));
        assert_eq!(env, format!("BWB_CELL={}\n", id(c)));
        let yaml = if c["needs_gpu"] == true { "gpu" } else { "cpu" };
        assert!(
            submit.contains(&format!("launch bwb-{yaml}.sky.yaml {}", id(c))),
            "{submit}"
        );
    }
    assert!(
        submit.contains("--env-file \"cells/$2.env\" \"${secrets[@]}\""),
        "{submit}"
    );
    sh_ok(&["bash", "-n", "submit.sh"], &dir);
    let Some(py) = sky_python() else {
        return;
    };
    let pairs: Vec<(String, String)> = cells
        .iter()
        .map(|c| {
            let yaml = if c["needs_gpu"] == true { "gpu" } else { "cpu" };
            (
                format!("bwb-{yaml}.sky.yaml"),
                format!("cells/{}.env", id(c)),
            )
        })
        .collect();
    let out = Command::new(py)
        .args(["-c", SKY_CHECK, &serde_json::to_string(&pairs).unwrap()])
        .current_dir(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for c in &cells {
        let (yaml, n) = if c["needs_gpu"] == true {
            ("gpu", 2)
        } else {
            ("cpu", 1)
        };
        assert!(
            stdout
                .lines()
                .any(|l| l == format!("ok bwb-{yaml}.sky.yaml {} {n}", id(c))),
            "{}: {stdout}",
            id(c)
        );
    }
    assert!(stdout.contains("no-cell refused"), "{stdout}");
}

/// The Dockerfile is not built here (no Docker in CI): its stages, the project build path it
/// uses and every path it copies are checked, and .dockerignore keeps secrets out.
#[test]
fn dockerfile_stages_copy_paths_that_exist_and_dockerignore_keeps_secrets_out() {
    let repo = Path::new(crate::common::REPO);
    let text = std::fs::read_to_string(repo.join("Dockerfile")).unwrap();
    for stage in ["AS build-cuda", "AS cuda", "AS build-cpu", "AS cpu"] {
        assert!(text.contains(stage), "{stage}");
    }
    assert!(text.contains("RUN CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP} scripts/build-cuda.sh"));
    assert!(text.contains("-devel-") && text.contains("-runtime-"));
    for line in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let src = line.split_whitespace().nth(1).unwrap();
        assert!(repo.join(src).exists(), "{line}: {src} missing");
    }
    assert!(repo.join("scripts/build-cuda.sh").is_file());
    let ignore = std::fs::read_to_string(repo.join(".dockerignore")).unwrap();
    for must in [".env", "target/", ".git/", "results/", "sweeps/"] {
        assert!(ignore.lines().any(|l| l.trim() == must), "{must}");
    }
}

/// A project talking to the hub stand-in, pushing a running cell every second.
fn hub_project(server: &crate::sync_hub::HubServer) -> Project {
    let p = Project::new();
    let hf_home = p.path("hf-home");
    p.set_env("HF_HOME", &hf_home.display().to_string())
        .set_env("HF_ENDPOINT", &server.endpoint)
        .set_env("HF_TOKEN", crate::sync_hub::TOKEN)
        .set_env("BWB_HUB_BACKOFF_MS", "10")
        .set_env("BWB_CELL_PUSH_EVERY", "1")
}

/// The repo paths under `cells/<id>/` and their contents.
fn hub_cell(server: &crate::sync_hub::HubServer, id: &str) -> BTreeMap<String, Vec<u8>> {
    let hub = server.hub();
    let prefix = format!("cells/{id}/");
    hub.repos
        .get("me/bwb-results")
        .map(|r| {
            r.files
                .iter()
                .filter_map(|(path, f)| {
                    let rel = path.strip_prefix(&prefix)?;
                    Some((rel.to_string(), f.content.clone()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// hf: results: a cell pushes its folder to `cells/<id>/` of the repo while it runs and when
/// done; a preempted cell restarted on a fresh machine pulls what it pushed and resumes
/// (every example once); `bwb collect --from hf:…` on a third machine pulls the cells'
/// results (not their checkpoints) and reports what the cells computed.
#[test]
fn hub_results_cells_resume_on_a_fresh_machine_and_collect_from_the_repo() {
    let server = crate::sync_hub::start();
    let a = hub_project(&server);
    let mut extra = vec!["--engine", "skypilot", "--results", "hf:me/bwb-results"];
    extra.extend_from_slice(&GRID);
    let cells = plan(&a, "hub", &extra);
    assert_eq!(cells.len(), 2);
    let run = |p: &Project, c: &Value| {
        p.bwb(&[
            "--smoke-test",
            "run",
            "--manifest",
            "sweeps/hub/manifest.jsonl",
            "--cell",
            &id(c),
        ])
        .ok()
        .stdout()
    };
    for c in &cells {
        let out = run(&a, c);
        assert!(out.contains("pushed to hf:me/bwb-results/cells/"), "{out}");
        let pushed = hub_cell(&server, &id(c));
        assert!(
            pushed.contains_key("bwb-cell-done.json"),
            "{:?}",
            pushed.keys()
        );
        assert!(
            pushed.keys().all(|k| !k.starts_with("data/")),
            "prepared data is not mirrored: {:?}",
            pushed.keys()
        );
        // Every local file but data/ is in the repo, byte for byte.
        let local = crate::common::snapshot(&a.path(&format!("sweep-cells/{}", id(c))));
        for (rel, bytes) in local
            .iter()
            .filter(|(r, _)| !r.starts_with("data/") && !r.split('/').any(|x| x.starts_with('.')))
        {
            assert_eq!(pushed.get(rel), Some(bytes), "{rel}");
        }
    }
    let lora = cells.iter().find(|c| c["condition"] == "lora-500").unwrap();
    let lora_id = id(lora);
    assert!(
        hub_cell(&server, &lora_id)
            .keys()
            .any(|k| k.starts_with("checkpoints/")),
        "the lora cell's checkpoints are pushed (a restart resumes from them)"
    );
    let commits = |server: &crate::sync_hub::HubServer| {
        server.hub().repos["me/bwb-results"]
            .commits
            .iter()
            .map(|c| c.summary.clone())
            .collect::<Vec<_>>()
    };
    let before = commits(&server);
    assert!(
        before
            .iter()
            .any(|s| s.contains(&lora_id) && s.ends_with("(finished)")),
        "{before:?}"
    );
    // Pushed while running too (every second here; a smoke cell runs for several).
    assert!(
        before.iter().any(|s| s.ends_with("(periodic)")),
        "{before:?}"
    );
    // Rerunning a finished cell pulls nothing new, runs nothing and commits nothing.
    let again = run(&a, lora);
    assert!(again.contains("finished; nothing to do"), "{again}");
    assert_eq!(commits(&server), before);

    // Preempted half-way: the repo holds half the predictions of the zero-shot cell and no
    // completion marker; a fresh machine reruns it.
    let zs = cells
        .iter()
        .find(|c| c["condition"] == "zero-shot")
        .unwrap();
    let zs_id = id(zs);
    let preds_rel = "results/smoke/predictions/smoke/fpb/zero-shot/seed-1.jsonl";
    let full = String::from_utf8(hub_cell(&server, &zs_id)[preds_rel].clone()).unwrap();
    let n_all = full.lines().count();
    assert!(n_all >= 4, "{full}");
    let half: String = full
        .lines()
        .take(n_all / 2)
        .map(|l| format!("{l}\n"))
        .collect();
    {
        let mut hub = server.hub();
        let repo = hub.repos.get_mut("me/bwb-results").unwrap();
        repo.files
            .remove(&format!("cells/{zs_id}/bwb-cell-done.json"))
            .unwrap();
        repo.files
            .get_mut(&format!("cells/{zs_id}/{preds_rel}"))
            .unwrap()
            .content = half.clone().into_bytes();
    }
    let b = hub_project(&server);
    crate::common::copy_dir(&a.path("sweeps"), &b.path("sweeps"));
    let out = run(&b, zs);
    assert!(
        out.contains("pulled from hf:me/bwb-results/cells/"),
        "{out}"
    );
    assert!(
        out.contains(&format!("{} already done", n_all / 2)),
        "resumed from the pulled predictions: {out}"
    );
    let pushed = hub_cell(&server, &zs_id);
    assert!(pushed.contains_key("bwb-cell-done.json"));
    let lines = jsonl(&String::from_utf8(pushed[preds_rel].clone()).unwrap());
    let ids: std::collections::BTreeSet<&str> =
        lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(lines.len(), n_all, "every example once");
    assert_eq!(ids.len(), n_all);

    // A third machine with only the sweep folder collects from the repo.
    let c = hub_project(&server);
    crate::common::copy_dir(&a.path("sweeps"), &c.path("sweeps"));
    let out = c
        .bwb(&[
            "--smoke-test",
            "collect",
            "--sweep",
            "sweeps/hub",
            "--from",
            "hf:me/bwb-results",
        ])
        .ok()
        .stdout();
    assert!(out.contains("2 of 2 cells merged"), "{out}");
    assert!(out.contains("collect: pulled"), "{out}");
    assert!(
        !c.path(&format!("sweep-cells/{lora_id}/checkpoints"))
            .exists(),
        "collect pulls results, not checkpoints"
    );
    // The default location is the manifest's: the same report on the first machine.
    let out = a
        .bwb(&["--smoke-test", "collect", "--sweep", "sweeps/hub"])
        .ok()
        .stdout();
    assert!(out.contains("2 of 2 cells merged"), "{out}");
    assert_eq!(
        summary_metrics(&c.path("results/smoke/summaries")),
        summary_metrics(&a.path("results/smoke/summaries"))
    );
    let hub = server.hub();
    assert!(hub.violations.is_empty(), "{:#?}", hub.violations);
}

/// Bucket results: the SkyPilot task mounts the bucket (MOUNT_CACHED) and tells the cell
/// where; a cell run without the mount says what to do in one line.
#[test]
fn bucket_results_are_mounted_folders() {
    let p = Project::new();
    let mut extra = vec!["--engine", "skypilot", "--results", "r2://bucket/bwb"];
    extra.extend_from_slice(&GRID);
    let cells = plan(&p, "bucket", &extra);
    let gpu = p.read("sweeps/bucket/bwb-gpu.sky.yaml");
    for want in [
        "file_mounts:\n  /bwb-results:\n    source: \"r2://bucket/bwb\"\n    mode: MOUNT_CACHED\n",
        "  BWB_RESULTS_DIR: /bwb-results\n",
    ] {
        assert!(gpu.contains(want), "{want}: {gpu}");
    }
    let args = [
        "--smoke-test",
        "run",
        "--manifest",
        "sweeps/bucket/manifest.jsonl",
        "--cell",
        &id(&cells[0]),
    ];
    let err = p.bwb(&args).fails(1);
    assert!(
        err.contains("r2://bucket/bwb") && err.contains("BWB_RESULTS_DIR"),
        "{err}"
    );
    // With the mount (a folder here), the cell runs into it and collect reads it.
    let mount = p.path("mnt");
    let p = p.set_env("BWB_RESULTS_DIR", &mount.display().to_string());
    p.bwb(&args).ok();
    assert!(mount
        .join(id(&cells[0]))
        .join("bwb-cell-done.json")
        .is_file());
    if let Some(py) = sky_python() {
        let pairs = vec![(
            "bwb-gpu.sky.yaml".to_string(),
            format!("cells/{}.env", id(&cells[0])),
        )];
        let out = Command::new(py)
            .args(["-c", SKY_CHECK, &serde_json::to_string(&pairs).unwrap()])
            .current_dir(p.path("sweeps/bucket"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
