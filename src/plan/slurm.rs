//! Slurm job arrays: `bwb-gpu.sbatch` over the GPU cells and `bwb-cpu.sbatch` over the
//! API-only ones. The manifest lists GPU cells first, so array task `i` of the GPU array
//! runs manifest line `i + 1` and of the CPU array line `G + i + 1` (G GPU cells).

use super::{shell_quote, EngineFiles, MANIFEST};

fn sbatch(f: &EngineFiles<'_>, gpu: bool, offset: usize, n: usize, smoke: bool) -> String {
    let kind = if gpu { "gpu" } else { "cpu" };
    let mut s = format!(
        "#!/usr/bin/env bash\n\
         #SBATCH --job-name=bwb-{sweep}-{kind}\n\
         #SBATCH --array=0-{last}%{k}\n",
        sweep = f.sweep,
        last = n - 1,
        k = f.max_parallel.max(1),
    );
    if gpu {
        s.push_str("#SBATCH --gres=gpu:1\n#SBATCH --cpus-per-task=8\n#SBATCH --mem=64G\n");
        s.push_str("#SBATCH --time=2-00:00:00\n");
    } else {
        s.push_str("#SBATCH --cpus-per-task=4\n#SBATCH --mem=16G\n#SBATCH --time=1-00:00:00\n");
    }
    s.push_str(&format!(
        "#SBATCH --output=logs/%x-%A_%a.out\n\
         #SBATCH --requeue\n\
         # bwb sweep `{sweep}`: one array task per {kind} cell; a requeued or rerun task resumes\n\
         # its cell, and a finished cell does nothing. submit.sh submits this from the sweep folder.\n\
         set -euo pipefail\n\
         cd \"${{SLURM_SUBMIT_DIR:-.}}\"\n\
         BWB_ROOT=${{BWB_ROOT:-{root}}}\n\
         export BWB_ROOT\n\
         line=$((SLURM_ARRAY_TASK_ID + {offset} + 1))\n\
         cell=$(sed -n \"${{line}}p\" {manifest} | grep -o '\"cell_id\":\"[^\"]*\"' | cut -d'\"' -f4 || true)\n\
         if [ -z \"$cell\" ]; then\n\
         \x20 echo \"bwb: no cell on line $line of {manifest}; rerun bwb plan\" >&2\n\
         \x20 exit 1\n\
         fi\n\
         \"${{BWB:-bwb}}\"{smoke} run --manifest {manifest} --cell \"$cell\"\n",
        sweep = f.sweep,
        root = shell_quote(&f.root.display().to_string()),
        manifest = MANIFEST,
        smoke = if smoke { " --smoke-test" } else { "" },
    ));
    s
}

fn submit_sh(f: &EngineFiles<'_>, arrays: &[&str]) -> String {
    let mut s = format!(
        "#!/usr/bin/env bash\n\
         # Submit bwb sweep `{}` to Slurm: one job array per kind of cell. Set BWB to the bwb\n\
         # binary and BWB_ROOT to the project checkout (configs/, prompts/) if they differ.\n\
         set -euo pipefail\n\
         cd \"$(dirname \"$0\")\"\n\
         mkdir -p logs\n",
        f.sweep
    );
    for a in arrays {
        s.push_str(&format!("sbatch {a}\n"));
    }
    s
}

/// bwb-gpu.sbatch and bwb-cpu.sbatch (each only when it has cells) and submit.sh.
pub fn files(f: &EngineFiles<'_>) -> Vec<(String, String, bool)> {
    let smoke = f.cells.iter().any(|c| c.smoke);
    let g = f.cells.iter().filter(|c| c.needs_gpu).count();
    let c = f.cells.len() - g;
    let mut out = Vec::new();
    let mut arrays = Vec::new();
    if g > 0 {
        out.push(("bwb-gpu.sbatch".into(), sbatch(f, true, 0, g, smoke), true));
        arrays.push("bwb-gpu.sbatch");
    }
    if c > 0 {
        out.push(("bwb-cpu.sbatch".into(), sbatch(f, false, g, c, smoke), true));
        arrays.push("bwb-cpu.sbatch");
    }
    out.push(("submit.sh".into(), submit_sh(f, &arrays), true));
    out
}
