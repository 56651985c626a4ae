//! aml-operator: Azure Machine Learning resources as Kubernetes objects.
//!
//! `main.rs` only wires configuration, telemetry and the subcommands; everything it, the CLI and the
//! tests need lives here. The operator itself is the `aml-operator-core` crate and the local ARM +
//! Entra emulator the `aml-emulator` crate: core does not depend on the emulator, so the operator
//! cannot use its stand-in. This package holds the tools that use both (the `plan`/`apply`/`import`
//! CLI with its embedded emulator, the benchmark, the in-memory Kubernetes API) and re-exports both
//! crates under the paths they always had.

pub mod bench;
pub mod cli;
pub mod localkube;

pub use aml_emulator as emulator;
pub use aml_emulator::armspec;
pub use aml_operator_core::{
    alloc, arm, controller, crd, health, install_crypto_provider, leader, manager, metrics, shutdown, telemetry,
};
