//! aml-operator: Azure Machine Learning resources as Kubernetes objects.
//!
//! `main.rs` only wires configuration, telemetry and the subcommands; everything it, the CLI and the
//! tests need lives here.

pub mod arm;
pub mod armspec;
pub mod controller;
pub mod crd;
pub mod emulator;
