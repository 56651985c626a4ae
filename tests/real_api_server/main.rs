//! The end-to-end tests, against a real API server named by `AML_E2E_KUBECONFIG`
//! (`eval "$(../shared/kube/up)"` sets it); without it each prints why it skips, unless
//! `AML_REQUIRE_E2E=1` makes the skip a failure. One binary, each file a module
//! (`cargo test --test real_api_server e2e_roles::`).

#[path = "../support/mod.rs"]
mod support;

mod e2e;
mod e2e_deps;
mod e2e_refusals;
mod e2e_roles;
mod e2e_shutdown;
