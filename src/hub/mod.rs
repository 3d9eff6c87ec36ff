//! The Hugging Face hub: uploads through its HTTP API (`client.rs`) and `bwb sync`
//! (`sync.rs`), which mirrors a project's outputs into one hub repo and back. Downloads go
//! through `hf-hub`, as `bwb download` does (`data/download.rs`).

pub mod card;
pub mod client;
pub mod sync;

use crate::error::{Error, Result};

/// Check a hub repo id (`ORG/NAME`) as the hub does; `flag` names where it came from.
pub fn check_repo_id(id: &str, flag: &str) -> Result<()> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && !p.starts_with(['-', '.'])
            && !p.ends_with(['-', '.'])
            && !p.contains("--")
            && !p.contains("..")
    };
    match id.split_once('/') {
        Some((org, name)) if part_ok(org) && part_ok(name) => Ok(()),
        _ => Err(Error::Config(format!(
            "{flag} `{id}` is not a hub repo id; use ORG/NAME (letters, digits, `-`, `_`, `.`), e.g. --repo my-org/bwb-artifacts"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_are_checked_like_the_hub() {
        for ok in [
            "my-org/bwb-artifacts",
            "u/a.b_c",
            "HuggingFaceTB/SmolLM2-135M",
        ] {
            check_repo_id(ok, "--repo").unwrap();
        }
        for bad in [
            "noslash", "a/b/c", "/x", "a/", "a/b c", "a/-x", "a/x--y", "a/x..y",
        ] {
            let e = check_repo_id(bad, "--repo").unwrap_err().to_string();
            assert!(e.contains("ORG/NAME"), "{bad}: {e}");
        }
    }
}
