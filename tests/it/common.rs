//! A temporary project root (configs, prompts, fixtures copied in) and a runner for `bwb`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A throwaway project root with the real configs, prompts and fixture hub cache.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let repo = Path::new(REPO);
        copy_dir(&repo.join("configs"), &dir.path().join("configs"));
        copy_dir(&repo.join("prompts"), &dir.path().join("prompts"));
        copy_dir(
            &repo.join("tests/fixtures/hub"),
            &dir.path().join("tests/fixtures/hub"),
        );
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let env = vec![("HOME".to_string(), home.display().to_string())];
        Project { dir, env }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A hub cache in HF_HOME/hub holding the fixture datasets (the real, non-smoke path).
    pub fn with_hf_home_cache(mut self) -> Project {
        let hf_home = self.path("hf-home");
        copy_dir(&self.path("tests/fixtures/hub"), &hf_home.join("hub"));
        self.env
            .push(("HF_HOME".into(), hf_home.display().to_string()));
        self.env.push(("HF_HUB_OFFLINE".into(), "1".into()));
        self
    }

    pub fn set_env(mut self, key: &str, value: &str) -> Project {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Run `bwb --root <root> ARGS` with only this project's environment.
    pub fn bwb(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bwb"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .arg("--root")
            .arg(self.root())
            .args(args)
            .current_dir(self.root());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        Run(cmd.output().unwrap())
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Succeeded, or panic with its output.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code(),
            0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
    /// Failed with `code`, printing exactly one `error:` line and no panic; returns stderr.
    pub fn fails(self, code: i32) -> String {
        let err = self.stderr();
        assert_eq!(
            self.code(),
            code,
            "stdout:\n{}\nstderr:\n{err}",
            self.stdout()
        );
        assert!(!err.contains("panicked"), "panic: {err}");
        assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
        err
    }
}

/// Every file under `dir` with its bytes, sorted by path.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

pub fn jsonl(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A tiny random Qwen3 (2 layers, hidden 64, vocab 512: the smoke model's shape) with the byte
/// tokenizer, seeded.
pub fn tiny_qwen3(seed: u64) -> bwb::model::load::LoadedModel {
    let init = bwb::config::RandomInit {
        hidden_size: 64,
        intermediate_size: 128,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 16,
        vocab_size: 512,
        seed,
    };
    let src = bwb::model::load::ModelSource::Random {
        arch: bwb::config::Arch::Qwen3,
        init,
    };
    bwb::model::load::load(&src, &Default::default()).unwrap()
}
