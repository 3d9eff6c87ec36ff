//! Log setup: warnings by default, debug with `--verbose`, `RUST_LOG` wins when set.

use tracing_subscriber::EnvFilter;

pub fn init(verbose: bool) {
    let default = if verbose { "bwb=debug,info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // A second init (tests calling into the library) is harmless: ignore the error.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
