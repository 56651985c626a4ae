//! aml-operator: Azure Machine Learning resources as Kubernetes objects.
//!
//! `main.rs` only wires configuration, telemetry and the subcommands; everything it, the CLI and the
//! tests need lives here.

pub mod alloc;
pub mod arm;
pub mod armspec;
pub mod bench;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod emulator;
pub mod leader;
pub mod localkube;
pub mod manager;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;

/// Installs rustls' ring crypto provider for the process (idempotent). kube, reqwest and the
/// emulator all use rustls; one provider avoids a second crypto library in the build.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
