//! Shared fixtures: the fake Kubernetes API, an emulator-backed ARM, object builders.
#![allow(dead_code)]

pub mod cluster;

pub use aml_operator::localkube as kube;

use aml_operator::arm::{ArmClient, CloudConfig};
use aml_operator::controller::{AmlKind, Config, Context, pipeline};
use aml_operator::emulator::{Emulator, EmulatorConfig, Principal};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::LocalKube as FakeKube;
use ::kube::api::ObjectMeta;
use ::kube::runtime::controller::Action;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub const NS: &str = "team-a";
pub const SUBSCRIPTION: &str = "11111111-2222-3333-4444-555555555555";

/// A file path unique to this test process and call.
pub fn temp_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("aml-operator-test-{}-{n}-{name}", std::process::id()))
}

/// The body validator built from `../shared/arm-specs`, when the folder is there.
pub fn validator() -> Option<aml_operator::emulator::BodyValidator> {
    let dir = specs_dir_for_tests()?;
    let v = aml_operator::armspec::shared(&dir).expect("ARM schemas load");
    Some(Arc::new(move |t: &str, n: &str, b: &Value| v.validate(t, n, b)))
}

/// Emulator settings for tests: operations take 50 ms and ARM asks for no wait.
pub fn emulator_config() -> EmulatorConfig {
    EmulatorConfig {
        operation_duration: Duration::from_millis(50),
        retry_after_secs: 0,
        validator: validator(),
        ca_file: Some(temp_path("ca.pem")),
        ..EmulatorConfig::default()
    }
}

/// One test's world: a fake API server, the emulator as Azure, and a controller context.
pub struct World {
    pub kube: FakeKube,
    pub client: ::kube::Client,
    /// Azure: shared with the worlds [`World::other_cluster`] makes.
    pub emulator: Arc<Emulator>,
    pub ca_file: PathBuf,
    pub ctx: Arc<Context>,
}

impl World {
    pub async fn new() -> World {
        Self::with_emulator(emulator_config()).await
    }

    pub async fn with_emulator(config: EmulatorConfig) -> World {
        aml_operator::install_crypto_provider();
        let ca_file = config.ca_file.clone().expect("tests write the CA file");
        let emulator = Arc::new(Emulator::start(config).await.expect("emulator starts"));
        let (kube, client) = FakeKube::new();
        let ctx = Arc::new(context(&client, &emulator, &ca_file));
        World { kube, client, emulator, ca_file, ctx }
    }

    /// Another cluster with its own operator (`--cluster-name cluster_name`), sharing nothing with
    /// this one but Azure (the emulator).
    pub fn other_cluster(&self, cluster_name: &str) -> World {
        let (kube, client) = FakeKube::new();
        let config = Config { cluster_name: cluster_name.into(), ..self.ctx.config.clone() };
        let ctx = Arc::new(context_with(&client, &self.emulator, &self.ca_file, config));
        World { kube, client, emulator: self.emulator.clone(), ca_file: self.ca_file.clone(), ctx }
    }

    /// A fresh controller context, as after an operator restart (no caches, no memory).
    pub fn restart(&mut self) {
        self.ctx = Arc::new(context(&self.client, &self.emulator, &self.ca_file));
    }

    /// A fresh controller context with these settings (as after a restart with other flags).
    pub fn set_config(&mut self, config: Config) {
        self.ctx = Arc::new(context_with(&self.client, &self.emulator, &self.ca_file, config));
    }

    /// A fresh controller context with settings changed by `f`.
    pub fn configure(&mut self, f: impl FnOnce(&mut Config)) {
        let mut config = self.ctx.config.clone();
        f(&mut config);
        self.set_config(config);
    }

    /// Stores the credentials Secret `aml-credentials` with the emulator's principal (or `secret`).
    pub fn credentials(&self, name: &str, client_secret: &str) {
        let p = Principal::default();
        self.kube.put(secret(name, &[
            ("tenantId", p.tenant_id.as_str()),
            ("clientId", p.client_id.as_str()),
            ("clientSecret", client_secret),
            ("subscriptionId", SUBSCRIPTION),
        ]));
    }

    pub fn good_credentials(&self) {
        self.credentials("aml-credentials", &Principal::default().client_secret);
    }

    /// Reconciles the stored object at `path` once, as the controller would.
    pub async fn reconcile<K: AmlKind>(&self, path: &str) -> Result<Action, aml_operator::controller::Error> {
        let obj: K = self.kube.get(path).expect("object exists");
        pipeline::reconcile(Arc::new(obj), self.ctx.clone()).await
    }

    /// Reconciles until the object is Ready=True (finishing ARM operations between rounds).
    pub async fn converge<K: AmlKind>(&self, path: &str) {
        self.converge_with::<K>(&self.ctx, path).await;
    }

    /// [`World::converge`] with another controller context (other settings, another budget).
    pub async fn converge_with<K: AmlKind>(&self, ctx: &Arc<Context>, path: &str) {
        for _ in 0..10 {
            let obj: K = self.kube.get(path).expect("object exists");
            let _ = pipeline::reconcile(Arc::new(obj), ctx.clone()).await;
            if self.ready(path).as_deref() == Some("True") {
                return;
            }
            self.emulator.finish_operations();
        }
        panic!("{path} did not become ready: {:#}", self.kube.raw(path).unwrap_or_default()["status"]);
    }

    /// Deletes the object at `path` and reconciles (finishing ARM operations between rounds) until
    /// its finalizer lets it go.
    pub async fn delete_until_released<K: AmlKind>(&self, path: &str) {
        self.kube.delete(path);
        for _ in 0..15 {
            if self.kube.raw(path).is_none() {
                return;
            }
            let _ = self.reconcile::<K>(path).await;
            self.emulator.finish_operations();
        }
        panic!("{path} not released: {:#}", self.kube.raw(path).unwrap_or_default()["status"]);
    }

    /// The Ready condition's status of the object at `path`.
    pub fn ready(&self, path: &str) -> Option<String> {
        self.condition(path, "Ready").map(|c| c["status"].as_str().unwrap_or_default().to_string())
    }

    /// A condition of the object at `path`.
    pub fn condition(&self, path: &str, type_: &str) -> Option<Value> {
        let obj = self.kube.raw(path)?;
        obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_).cloned()
    }

    /// ARM requests with this method.
    pub fn arm_calls(&self, method: &str) -> usize {
        self.emulator.requests().iter().filter(|r| r.method == method).count()
    }
}

fn context(client: &::kube::Client, emulator: &Emulator, ca_file: &std::path::Path) -> Context {
    context_with(client, emulator, ca_file, Config { resync: Duration::from_secs(300), ..Config::default() })
}

fn context_with(client: &::kube::Client, emulator: &Emulator, ca_file: &std::path::Path, config: Config) -> Context {
    let cloud = CloudConfig {
        arm_endpoint: emulator.arm_endpoint(),
        authority_host: emulator.authority_host(),
        ca_file: Some(ca_file.to_path_buf()),
        ..CloudConfig::default()
    };
    let arm = ArmClient::new(&cloud).expect("ARM client");
    Context::new(client.clone(), arm, config)
}

/// A Secret with string data.
pub fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some(NS.into()), ..Default::default() },
        data: Some(
            data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    }
}

/// `Some(dir)` when the arm-specs folder is present (`$AML_ARM_SPECS`, else `../shared/arm-specs`
/// from the repository root). When it is absent, prints why and returns `None`, unless
/// `AML_REQUIRE_ARM_SPECS=1`, in which case it panics with that message.
pub fn specs_dir_for_tests() -> Option<PathBuf> {
    use aml_operator::armspec::{REQUIRE_SPECS_ENV, SPECS_ENV, specs_dir};
    let default = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/arm-specs"));
    if let Some(dir) = specs_dir(default) {
        return Some(dir);
    }
    let looked_at = match std::env::var_os(SPECS_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => default.to_path_buf(),
    };
    let message = format!("skipping: arm-specs not found at {} (set {SPECS_ENV})", looked_at.display());
    if std::env::var(REQUIRE_SPECS_ENV).is_ok_and(|v| v == "1") {
        panic!("{message}");
    }
    eprintln!("{message}");
    None
}
