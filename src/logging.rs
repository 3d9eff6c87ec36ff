//! Log setup: warnings and progress lines by default, debug with `--verbose`, `RUST_LOG`
//! wins when set. Colours only on a terminal, so job logs stay plain text.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The default filter: warnings, plus the periodic progress lines of src/progress.rs (shown
/// when stderr is not a terminal).
pub const DEFAULT_FILTER: &str = "warn,bwb::progress=info";

pub fn init(verbose: bool) {
    let default = if verbose {
        "bwb=debug,info"
    } else {
        DEFAULT_FILTER
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // A second init (tests calling into the library) is harmless: ignore the error.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
