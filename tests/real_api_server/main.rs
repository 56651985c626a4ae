//! The end-to-end tests, against a real API server named by `AML_E2E_KUBECONFIG`
//! (`eval "$(../shared/kube/up)"` sets it); without it each prints why it skips, unless
//! `AML_REQUIRE_E2E=1` makes the skip a failure. One binary, each file a module
//! (`cargo test --test real_api_server e2e_roles::`).

#[path = "../support/mod.rs"]
mod support;

mod e2e;
mod e2e_assets;
mod e2e_deps;
mod e2e_ownership;
mod e2e_pod;
mod e2e_refusals;
mod e2e_roles;
mod e2e_shutdown;
mod e2e_tenants;
mod e2e_workload_identity;

/// The operator binary, run as its own process, its output in a file; killed when dropped.
pub struct OperatorProcess {
    pub child: std::process::Child,
    log: std::path::PathBuf,
}

impl OperatorProcess {
    pub fn start(args: &[String], env: &[(String, String)], log: &std::path::Path) -> OperatorProcess {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_aml-operator"))
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("operator starts");
        OperatorProcess { child, log: log.to_path_buf() }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The operator watching namespace `ns` as the cluster's admin (the kubeconfig of
    /// `AML_E2E_KUBECONFIG`), with `emulator` as Azure (trusted through `ca_file`), logging at info;
    /// `extra` flags appended.
    pub fn for_namespace(ns: &str, emulator: &aml_operator::emulator::Emulator, ca_file: &std::path::Path, extra: &[String], log: &std::path::Path) -> OperatorProcess {
        let mut args: Vec<String> = vec![
            "run".into(), format!("--namespace={ns}"), "--metrics-addr=127.0.0.1:0".into(),
            format!("--arm-endpoint={}", emulator.arm_endpoint()), format!("--authority-host={}", emulator.authority_host()),
            format!("--ca-file={}", ca_file.display()),
        ];
        args.extend_from_slice(extra);
        let kubeconfig = std::env::var(support::cluster::ENV).expect("AML_E2E_KUBECONFIG");
        let env = vec![("KUBECONFIG".to_string(), kubeconfig), ("RUST_LOG".to_string(), "info".to_string())];
        OperatorProcess::start(&args, &env, log)
    }

    /// The last 20 lines of its output.
    pub fn tail(&self) -> String {
        let text = self.output();
        text.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
