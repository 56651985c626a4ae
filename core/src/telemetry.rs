//! Structured logs: `RUST_LOG` filters (default `info`), text or JSON.

use tracing_subscriber::{EnvFilter, fmt};

/// Installs the global subscriber. `format` is `json` or anything else for text; `default_level`
/// applies when `RUST_LOG` is not set.
pub fn init(format: &str, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
}
