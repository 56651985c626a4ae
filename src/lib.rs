//! aml-operator: Azure Machine Learning resources as Kubernetes objects.
//!
//! `main.rs` only wires configuration, telemetry and the subcommands; everything it, the CLI and the
//! tests need lives here.

pub mod arm;
pub mod armspec;
pub mod controller;
pub mod crd;
pub mod emulator;

/// Installs rustls' ring crypto provider as the process default. Idempotent: later calls, or a
/// provider already installed, leave the default as it is.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
