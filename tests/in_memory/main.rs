//! The integration tests that need neither a real API server nor the benchmark: the Kubernetes API
//! is the in-memory one (`src/localkube.rs`) and Azure the emulator, in-process. One binary, so the
//! library is linked once for all of them; each file is a module (`cargo test --test in_memory chart::`).
//! `no_leaks` and `operate` stay binaries of their own: one installs a process-wide tracing
//! subscriber, the other reads the process-wide metrics registry.

#[path = "../support/mod.rs"]
mod support;

mod argocd_health;
mod arm_client;
mod assets;
mod arm_unit;
mod armspec;
mod cel_rules;
mod chart;
mod cli;
mod compute_reconcile;
mod controllers;
mod crds;
mod datastores;
mod credentials;
mod dependencies;
mod emulator;
mod fault_matrix;
mod kstatus;
mod malformed;
mod operation_failures;
mod ownership;
mod refusals;
mod role_reconcile;
mod serving_reconcile;
mod spec_fuzz;
mod stack;
mod tenants;
mod throttling;
mod workspace_body;
mod workspace_reconcile;
