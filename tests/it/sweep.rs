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
    // The API cell fails (no key) and leaves a failure record.
    let err = p
        .bwb(&[
            "--smoke-test",
            "run",
            "--manifest",
            "sweeps/mixed/manifest.jsonl",
            "--cell",
            &id(api),
        ])
        .fails(1);
    assert!(err.contains("OPENAI_API_KEY"), "{err}");
    let failed = p
        .path("sweep-cells")
        .join(id(api))
        .join("bwb-cell-failed.json");
    assert!(failed.is_file());
    // The smoke cell finishes and names the `bwb sync` push it needs.
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
    let cell_dir = p.path("sweep-cells").join(id(gpu));
    assert!(
        out.contains(&format!(
            "bwb sync --what {} --direction up --repo hf:org/bwb-results",
            cell_dir.display()
        )),
        "{out}"
    );
    // Collect without --from: the results are on the hub, so it says how to pull them.
    let err = p
        .bwb(&["--smoke-test", "collect", "--sweep", "sweeps/mixed"])
        .fails(1);
    assert!(
        err.contains("--direction down --repo hf:org/bwb-results") && err.contains("--from"),
        "{err}"
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
