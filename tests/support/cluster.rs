//! Shared by the end-to-end tests on a real API server (`AML_E2E_KUBECONFIG`): the client, the
//! skip-or-fail rule, polling, the CRDs and namespaces.

use aml_operator::arm::{ArmClient, CloudConfig};
use aml_operator::controller::{Config, Context};
use aml_operator::emulator::{Emulator, EmulatorConfig, Principal};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// The kubeconfig of the cluster to test against.
pub const ENV: &str = "AML_E2E_KUBECONFIG";
/// Set to 1 (as `.ci/run` does) to make a missing cluster (or helm) a failure instead of a skip.
pub const REQUIRE_ENV: &str = "AML_REQUIRE_E2E";
/// Field manager of what the tests apply.
pub const MANAGER: &str = "aml-operator-e2e";

/// Skips the test with `why`, or fails it when `AML_REQUIRE_E2E=1`.
pub fn skip(why: &str) {
    assert!(std::env::var(REQUIRE_ENV).as_deref() != Ok("1"), "{REQUIRE_ENV}=1 but {why}");
    eprintln!("skipping end-to-end test: {why}");
}

/// The kubeconfig file named by `AML_E2E_KUBECONFIG`.
pub fn kubeconfig_path() -> PathBuf {
    PathBuf::from(std::env::var(ENV).expect("AML_E2E_KUBECONFIG"))
}

/// A client for the cluster; `None` (the test skips) without `AML_E2E_KUBECONFIG`.
pub async fn cluster() -> Option<Client> {
    let Ok(path) = std::env::var(ENV) else {
        skip(&format!("{ENV} is not set (point it at a kubeconfig, e.g. from ../shared/kube/up, to run against a real cluster)"));
        return None;
    };
    aml_operator::install_crypto_provider();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("usable kubeconfig");
    Some(Client::try_from(config).expect("client"))
}

/// Polls `check` every 50 ms until it returns Some, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Applies every CRD generated from the types (server-side) and waits until each is established.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in aml_operator::controller::kinds::crds() {
        let name = crd.name_any();
        api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("the API server refused CRD {name}: {e}"));
        established(&api, &name).await;
    }
}

/// Waits until the CRD `name` is established (`kubectl wait --for=condition=Established`).
pub async fn established(api: &Api<CustomResourceDefinition>, name: &str) {
    eventually(&format!("CRD {name} established"), Duration::from_secs(60), || {
        let api = api.clone();
        let name = name.to_string();
        async move {
            let crd = api.get(&name).await.ok()?;
            crd.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(())
        }
    })
    .await;
}

/// A fresh namespace `{prefix}-{pid}` with the CRDs installed, the emulator (operations take
/// 500 ms, Retry-After 1 s, bodies validated) and an `aml-credentials` Secret for its default
/// principal. Returns (namespace, emulator, the emulator's CA file).
pub async fn namespace_with_emulator(client: &Client, prefix: &str) -> (String, Emulator, PathBuf) {
    install_crds(client).await;
    let ns = format!("{prefix}-{}", std::process::id() % 100000);
    create_namespace(client, &ns).await;
    let (emulator, ca_file) = start_emulator(prefix, Duration::from_millis(500), EmulatorConfig::default()).await;
    let secret = credentials_secret("aml-credentials", &Principal::default(), &Principal::default().client_secret);
    Api::<Secret>::namespaced(client.clone(), &ns).create(&PostParams::default(), &secret).await.expect("secret");
    (ns, emulator, ca_file)
}

/// The emulator as an e2e test's Azure: operations take `operation_duration`, Retry-After 1 s,
/// bodies validated against Microsoft's schemas, and its CA written to a temp file named after
/// `name` (returned: the operator's `--ca-file`); `config` sets the rest (principals, issuers).
pub async fn start_emulator(name: &str, operation_duration: Duration, config: EmulatorConfig) -> (Emulator, PathBuf) {
    let ca_file = super::temp_path(&format!("{name}-ca.pem"));
    let emulator = Emulator::start(EmulatorConfig {
        operation_duration,
        retry_after_secs: 1,
        validator: super::validator(),
        ca_file: Some(ca_file.clone()),
        ..config
    })
    .await
    .expect("emulator");
    (emulator, ca_file)
}

/// A credentials Secret `name` for `principal`'s tenant and client, with `client_secret` (its own,
/// or a wrong one), in the tests' subscription.
pub fn credentials_secret(name: &str, principal: &Principal, client_secret: &str) -> Secret {
    serde_json::from_value(json!({"metadata": {"name": name}, "stringData": {
        "tenantId": principal.tenant_id, "clientId": principal.client_id, "clientSecret": client_secret, "subscriptionId": super::SUBSCRIPTION}}))
    .expect("a Secret")
}

/// Objects of an amloperator.io kind in `ns`, as dynamic objects (what applying a manifest uses).
pub fn dynamic_api(client: &Client, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "amloperator.io".into(),
        version: "v1alpha1".into(),
        api_version: "amloperator.io/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// [`dynamic_api`] of the kind `K`.
pub fn dynamic_api_of<K: kube::Resource<DynamicType = ()>>(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &ApiResource::erase::<K>(&()))
}

/// A manifest of an amloperator.io kind.
pub fn manifest(kind: &str, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "amloperator.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec})).expect("a manifest")
}

/// Creates a namespace labelled as the e2e tests'.
pub async fn create_namespace(client: &Client, name: &str) {
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "aml-operator-e2e"}}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|e| panic!("namespace {name}: {e}"));
}

/// Deletes a namespace and waits until the API server has removed it.
pub async fn delete_namespace(client: &Client, name: &str, timeout: Duration) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(name, &DeleteParams::default()).await;
    eventually(&format!("namespace {name} removed"), timeout, || {
        let namespaces = namespaces.clone();
        let name = name.to_string();
        async move { namespaces.get_opt(&name).await.ok()?.is_none().then_some(()) }
    })
    .await;
}

/// A namespace with a credentials Secret, the emulator, and the controllers running in-process
/// against both (watching that namespace only); torn down by [`Env::finish`].
pub struct Env {
    /// The cluster.
    pub client: Client,
    /// The test's namespace.
    pub ns: String,
    /// Azure.
    pub emulator: Emulator,
    controllers: tokio::task::JoinHandle<()>,
}

impl Env {
    /// Starts it all in a fresh namespace `{prefix}-{pid}`.
    pub async fn start(client: Client, prefix: &str) -> Env {
        let (ns, emulator, ca_file) = namespace_with_emulator(&client, prefix).await;
        let cloud = CloudConfig {
            arm_endpoint: emulator.arm_endpoint(),
            authority_host: emulator.authority_host(),
            ca_file: Some(ca_file),
            ..CloudConfig::default()
        };
        let config = Config { resync: Duration::from_secs(30), base_backoff: Duration::from_secs(1), ..Config::default() };
        let ctx = Arc::new(Context::new(client.clone(), ArmClient::new(&cloud).expect("ARM client"), config));
        let watch_ns = ns.clone();
        let controllers = tokio::spawn(async move {
            aml_operator::manager::run_controllers(ctx, Some(&watch_ns), Arc::new(AtomicBool::new(false))).await;
        });
        Env { client, ns, emulator, controllers }
    }

    /// Deletes the namespace (the controllers are still running, so finalizers are honoured) and stops.
    pub async fn finish(self) {
        delete_namespace(&self.client, &self.ns, Duration::from_secs(120)).await;
        self.controllers.abort();
        self.emulator.shutdown().await;
    }
}

/// Ready=True at the object's current generation (what `kubectl wait --for=condition=Ready` waits
/// for, and kstatus's "Current").
pub fn ready(obj: &Value) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True" && c["observedGeneration"] == obj["metadata"]["generation"])
    })
}

/// The condition `type_` of an object's status (JSON), if it has one.
pub fn condition(obj: &Value, type_: &str) -> Option<Value> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_).cloned()
}
