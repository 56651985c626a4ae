//! The operator itself: the CRD types, the ARM client, the reconcile pipeline and the manager.
//!
//! This crate does not depend on the emulator (the `aml-emulator` crate, the tests' Azure): the
//! compiler refuses any use of it here. The `aml-operator` package re-exports these modules, so
//! `aml_operator::arm`, `aml_operator::controller`, ... are the paths the binary, the CLI and the
//! tests use.

pub mod alloc;
pub mod arm;
pub mod controller;
pub mod crd;
pub mod health;
pub mod leader;
pub mod manager;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;

/// Installs rustls' ring crypto provider for the process (idempotent). kube, reqwest and the
/// emulator all use rustls; one provider avoids a second crypto library in the build.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
