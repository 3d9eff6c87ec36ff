//! SkyPilot managed jobs: `bwb-gpu.sky.yaml` / `bwb-cpu.sky.yaml` task templates (the cell
//! comes in as `BWB_CELL` from `cells/<cell_id>.env`) and `submit.sh` launching each cell.
//! Field names follow SkyPilot's task schema (`sky/utils/schemas.py`); the tests run every
//! file through `sky.Task.from_yaml_config`.

use super::{shell_quote, EngineFiles, Results, BUCKET_MOUNT, RESULTS_DIR_ENV, SECRETS};
use crate::error::{Error, Result};

/// A YAML double-quoted scalar (JSON strings are valid YAML).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn task_yaml(f: &EngineFiles<'_>, gpu: bool, smoke: bool) -> String {
    let kind = if gpu { "gpu" } else { "cpu" };
    let mut y = format!(
        "# bwb sweep `{sweep}`: one SkyPilot managed job per {kind} cell (submit.sh launches them;\n\
         # BWB_CELL comes from cells/<cell_id>.env). The run step runs that one cell, resumably,\n\
         # with its results folder in the hub repo (pulled first, pushed as it runs) or the mounted bucket.\n\
         name: {name}\n\
         workdir: .\n\
         resources:\n",
        sweep = f.sweep,
        name = q(&format!("bwb-{}-{kind}", f.sweep)),
    );
    if gpu {
        let acc: Vec<String> = f.accelerators.iter().map(|a| q(a)).collect();
        y.push_str(&format!("  accelerators: [{}]\n", acc.join(", ")));
        y.push_str("  use_spot: true\n  disk_size: 256\n");
    } else {
        y.push_str("  cpus: 4+\n  memory: 16+\n  disk_size: 64\n");
    }
    y.push_str(&format!(
        "  image_id: {}\n",
        q(&format!(
            "docker:{}",
            if gpu { f.image } else { f.cpu_image }
        ))
    ));
    y.push_str("  job_recovery:\n    strategy: EAGER_NEXT_REGION\n    max_restarts_on_errors: 3\n");
    let bucket = f
        .cells
        .first()
        .and_then(|c| match Results::parse(&c.results) {
            Ok(Results::Bucket(url)) => Some(url),
            _ => None,
        });
    if let Some(url) = &bucket {
        // MOUNT_CACHED: writes land on local disk and are uploaded in the background, so
        // appends (predictions) and atomic renames (checkpoints) work, unlike plain MOUNT.
        y.push_str(&format!(
            "file_mounts:\n  {BUCKET_MOUNT}:\n    source: {}\n    mode: MOUNT_CACHED\n",
            q(url)
        ));
    }
    y.push_str("envs:\n  BWB_CELL: null\n  BWB_ROOT: /opt/bwb\n");
    if bucket.is_some() {
        y.push_str(&format!("  {RESULTS_DIR_ENV}: {BUCKET_MOUNT}\n"));
    }
    y.push_str(&format!("  BWB_SWEEP: {}\n", q(f.sweep)));
    y.push_str("secrets:\n");
    for s in SECRETS {
        y.push_str(&format!("  {s}: null\n"));
    }
    let smoke_flag = if smoke { " --smoke-test" } else { "" };
    y.push_str(&format!(
        "run: |\n  set -euo pipefail\n  bwb{smoke_flag} run --manifest manifest.jsonl --cell \"$BWB_CELL\"\n"
    ));
    y
}

fn submit_sh(f: &EngineFiles<'_>) -> String {
    let mut s = format!(
        "#!/usr/bin/env bash\n\
         # Launch every cell of bwb sweep `{sweep}` as a SkyPilot managed job (sky jobs launch).\n\
         # Secrets come from this shell's environment: export HF_TOKEN and the API keys first.\n\
         # Rerunning relaunches every cell; a finished cell's job does nothing and exits.\n\
         set -euo pipefail\n\
         cd \"$(dirname \"$0\")\"\n\
         secrets=()\n\
         for name in {names}; do\n\
         \x20 if [ -n \"${{!name:-}}\" ]; then secrets+=(--secret \"$name\"); fi\n\
         done\n\
         launch() {{\n\
         \x20 sky jobs launch --yes --name \"bwb-{sweep}-$2\" --env-file \"cells/$2.env\" \"${{secrets[@]}}\" \"$1\"\n\
         }}\n",
        sweep = f.sweep,
        names = SECRETS.join(" "),
    );
    for c in f.cells {
        let yaml = if c.needs_gpu {
            "bwb-gpu.sky.yaml"
        } else {
            "bwb-cpu.sky.yaml"
        };
        s.push_str(&format!(
            "launch {yaml} {}  # {} / {} / {}\n",
            shell_quote(&c.cell_id),
            c.model,
            c.task,
            c.condition
        ));
    }
    s
}

/// bwb-gpu.sky.yaml and bwb-cpu.sky.yaml (each only when some cell needs it), one
/// cells/<cell_id>.env per cell, and submit.sh.
pub fn files(f: &EngineFiles<'_>) -> Result<Vec<(String, String, bool)>> {
    let smoke = f.cells.iter().any(|c| c.smoke);
    if f.cells.iter().any(|c| c.needs_gpu) && f.accelerators.is_empty() {
        return Err(Error::Config(
            "--accelerators ``: GPU cells need at least one, e.g. --accelerators H100:1,A100-80GB:1"
                .into(),
        ));
    }
    let mut out = Vec::new();
    if f.cells.iter().any(|c| c.needs_gpu) {
        out.push(("bwb-gpu.sky.yaml".into(), task_yaml(f, true, smoke), false));
    }
    if f.cells.iter().any(|c| !c.needs_gpu) {
        out.push(("bwb-cpu.sky.yaml".into(), task_yaml(f, false, smoke), false));
    }
    for c in f.cells {
        out.push((
            format!("cells/{}.env", c.cell_id),
            format!("BWB_CELL={}\n", c.cell_id),
            false,
        ));
    }
    out.push(("submit.sh".into(), submit_sh(f), true));
    Ok(out)
}
