//! End to end against a real Kubernetes API server: set `AML_E2E_KUBECONFIG` to a kubeconfig file.
//! Skipped (with a printed reason) otherwise. Azure is the in-process emulator; the controllers run
//! in-process too, so any conformant cluster works (kind, AKS) with no image and no edits.
//! Each test uses a fresh namespace and removes it.

mod support;

use aml_operator::arm::{ArmClient, CloudConfig};
use aml_operator::controller::{Config, Context};
use aml_operator::crd::AmlWorkspace;
use aml_operator::emulator::{Emulator, EmulatorConfig, Principal};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

const ENV: &str = "AML_E2E_KUBECONFIG";
const MANAGER: &str = "aml-operator-e2e";

async fn cluster() -> Option<Client> {
    let Ok(path) = std::env::var(ENV) else {
        eprintln!("skipping end-to-end test: {ENV} is not set (point it at a kubeconfig to run against a real cluster)");
        return None;
    };
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("usable kubeconfig");
    Some(Client::try_from(config).expect("client"))
}

/// Polls `check` every 250 ms until it returns Some, or fails after `timeout`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
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
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in aml_operator::crd::all() {
        let name = crd.name_any();
        api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&crd)).await.expect("CRD applied");
        eventually(&format!("CRD {name} established"), Duration::from_secs(60), || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await.ok()?;
                let established = crd.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True");
                established.then_some(())
            }
        })
        .await;
    }
}

/// A namespace, a Secret, the emulator and the controllers, torn down by `finish`.
struct Env {
    client: Client,
    ns: String,
    emulator: Emulator,
    controllers: tokio::task::JoinHandle<()>,
}

impl Env {
    async fn start(client: Client, prefix: &str) -> Env {
        Self::start_with(client, prefix, true).await
    }

    /// `controllers`: whether to run the controllers with `client` (the RBAC test runs its own).
    async fn start_with(client: Client, prefix: &str, controllers: bool) -> Env {
        aml_operator::install_crypto_provider();
        install_crds(&client).await;
        let ns = format!("{prefix}-{}", std::process::id() % 100000);
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns, "labels": {"app.kubernetes.io/part-of": "aml-operator-e2e"}}})).unwrap();
        namespaces.create(&PostParams::default(), &namespace).await.expect("namespace created");

        let ca_file = support::temp_path("e2e-ca.pem");
        let emulator = Emulator::start(EmulatorConfig {
            operation_duration: Duration::from_millis(500),
            retry_after_secs: 1,
            validator: support::validator(),
            ca_file: Some(ca_file.clone()),
            ..EmulatorConfig::default()
        })
        .await
        .expect("emulator");
        let p = Principal::default();
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "aml-credentials", "namespace": ns},
            "stringData": {"tenantId": p.tenant_id, "clientId": p.client_id, "clientSecret": p.client_secret, "subscriptionId": support::SUBSCRIPTION}
        }))
        .unwrap();
        Api::<Secret>::namespaced(client.clone(), &ns).create(&PostParams::default(), &secret).await.expect("secret");

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
            if controllers {
                aml_operator::manager::run_controllers(ctx, Some(&watch_ns), Arc::new(AtomicBool::new(false))).await;
            }
        });
        Env { client, ns, emulator, controllers }
    }

    /// Deletes the namespace (the controllers are still running, so finalizers are honoured) and stops.
    async fn finish(self) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let _ = namespaces.delete(&self.ns, &DeleteParams::default()).await;
        let ns = self.ns.clone();
        eventually("namespace removed", Duration::from_secs(120), || {
            let namespaces = namespaces.clone();
            let ns = ns.clone();
            async move { namespaces.get_opt(&ns).await.ok()?.is_none().then_some(()) }
        })
        .await;
        self.controllers.abort();
        self.emulator.shutdown().await;
    }
}

fn ready(obj: &Value) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True" && c["observedGeneration"] == obj["metadata"]["generation"])
    })
}

#[tokio::test]
async fn workspace_lifecycle_against_a_real_api_server() {
    let Some(client) = cluster().await else { return };
    let env = Env::start(client.clone(), "aml-e2e-ws").await;
    let api: Api<AmlWorkspace> = Api::namespaced(client.clone(), &env.ns);
    let ws: AmlWorkspace = serde_json::from_value(json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
        "metadata": {"name": "e2e-ws", "namespace": env.ns},
        "spec": {"resourceGroup": "rg-e2e", "location": "eastus", "friendlyName": "before", "identity": {"type": "SystemAssigned"}}
    }))
    .unwrap();
    api.patch("e2e-ws", &PatchParams::apply(MANAGER), &Patch::Apply(&ws)).await.expect("workspace applied");

    let obj = eventually("workspace Ready", Duration::from_secs(90), || {
        let api = api.clone();
        async move {
            let obj = serde_json::to_value(api.get("e2e-ws").await.ok()?).ok()?;
            (ready(&obj) && obj["status"]["provisioningState"] == "Succeeded").then_some(obj)
        }
    })
    .await;
    let arm_id = obj["status"]["armId"].as_str().expect("armId").to_string();
    assert!(env.emulator.resource(&arm_id).is_some());

    // A mutable field reaches ARM.
    api.patch("e2e-ws", &PatchParams::default(), &Patch::Merge(json!({"spec": {"friendlyName": "after"}})))
        .await
        .expect("mutable edit accepted");
    eventually("friendlyName updated in ARM", Duration::from_secs(90), || {
        let r = env.emulator.resource(&arm_id);
        async move { (r?["properties"]["friendlyName"] == "after").then_some(()) }
    })
    .await;

    // An immutable field is refused by the API server (CEL).
    let err = api
        .patch("e2e-ws", &PatchParams::default(), &Patch::Merge(json!({"spec": {"location": "westeurope"}})))
        .await
        .expect_err("location is immutable");
    assert!(err.to_string().contains("location is immutable"), "{err}");

    // Delete: ARM resource and object both go.
    api.delete("e2e-ws", &DeleteParams::default()).await.expect("delete accepted");
    eventually("workspace gone from the cluster", Duration::from_secs(90), || {
        let api = api.clone();
        async move { api.get_opt("e2e-ws").await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert!(env.emulator.resource(&arm_id).is_none(), "ARM resource deleted");
    env.finish().await;
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_azure_resources() {
    let Some(client) = cluster().await else { return };
    let env = Env::start(client.clone(), "aml-e2e-nsdel").await;
    let api: Api<AmlWorkspace> = Api::namespaced(client.clone(), &env.ns);
    let ws: AmlWorkspace = serde_json::from_value(json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
        "metadata": {"name": "doomed", "namespace": env.ns},
        "spec": {"resourceGroup": "rg-e2e", "location": "eastus"}
    }))
    .unwrap();
    api.patch("doomed", &PatchParams::apply(MANAGER), &Patch::Apply(&ws)).await.expect("applied");
    let obj = eventually("workspace Ready", Duration::from_secs(90), || {
        let api = api.clone();
        async move {
            let obj = serde_json::to_value(api.get("doomed").await.ok()?).ok()?;
            ready(&obj).then_some(obj)
        }
    })
    .await;
    let arm_id = obj["status"]["armId"].as_str().unwrap().to_string();
    // The credentials Secret is protected while the workspace needs it.
    let secret = Api::<Secret>::namespaced(client.clone(), &env.ns).get("aml-credentials").await.unwrap();
    assert!(secret.finalizers().iter().any(|f| f == "amloperator.io/credentials-in-use"));

    // Deleting the namespace deletes the Secret and the object together; the Azure resource must still go.
    let emulator_has = |id: &str| env.emulator.resource(id).is_some();
    assert!(emulator_has(&arm_id));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete(&env.ns, &DeleteParams::default()).await.expect("namespace delete accepted");
    eventually("Azure resource deleted", Duration::from_secs(120), || {
        let gone = !emulator_has(&arm_id);
        async move { gone.then_some(()) }
    })
    .await;
    env.finish().await;
}

#[tokio::test]
async fn a_folder_with_all_four_kinds_converges_and_goes_away_with_its_workspace() {
    let Some(client) = cluster().await else { return };
    let env = Env::start(client.clone(), "aml-e2e-stack").await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut objects = Vec::new();
    // Children first: the order must not matter.
    for (file, plural) in [
        ("deployment.yaml", "amlonlinedeployments"),
        ("endpoint.yaml", "amlonlineendpoints"),
        ("compute.yaml", "amlcomputes"),
        ("workspace.yaml", "amlworkspaces"),
    ] {
        let mut manifest: Value = serde_yaml::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
        manifest["metadata"]["namespace"] = json!(env.ns);
        let kind = manifest["kind"].as_str().unwrap().to_string();
        let resource = kube::api::ApiResource {
            group: "amloperator.io".into(),
            version: "v1alpha1".into(),
            api_version: "amloperator.io/v1alpha1".into(),
            kind: kind.clone(),
            plural: plural.into(),
        };
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), &env.ns, &resource);
        let name = manifest["metadata"]["name"].as_str().unwrap().to_string();
        api.patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(&manifest)).await.unwrap_or_else(|e| panic!("{file}: {e}"));
        objects.push((api, name));
    }
    eventually("all four Ready", Duration::from_secs(180), || {
        let objects = objects.clone();
        async move {
            for (api, name) in &objects {
                let obj = serde_json::to_value(api.get(name).await.ok()?).ok()?;
                if !ready(&obj) {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    let (ep_api, ep_name) = &objects[1];
    let ep = serde_json::to_value(ep_api.get(ep_name).await.unwrap()).unwrap();
    let ep_id = ep["status"]["armId"].as_str().unwrap().to_string();
    assert_eq!(env.emulator.resource(&ep_id).unwrap()["properties"]["traffic"], json!({"blue": 100}));
    let keys = Api::<Secret>::namespaced(client.clone(), &env.ns).get("team-a-scoring-keys").await.expect("keys Secret");
    assert!(keys.data.as_ref().is_some_and(|d| d.contains_key("primaryKey") && d.contains_key("scoringUri")));

    // Deleting the workspace object deletes everything: ARM cascades, Kubernetes garbage-collects
    // the children through their owner references.
    let (ws_api, ws_name) = &objects[3];
    ws_api.delete(ws_name, &DeleteParams::default()).await.expect("workspace delete accepted");
    eventually("every object gone", Duration::from_secs(180), || {
        let objects = objects.clone();
        async move {
            for (api, name) in &objects {
                if api.get_opt(name).await.ok()?.is_some() {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    assert!(env.emulator.resource_ids().is_empty(), "left in Azure: {:?}", env.emulator.resource_ids());
    env.finish().await;
}

/// The helm binary for rendering the chart: `AML_HELM3`, `AML_HELM4`, else `helm` on PATH.
fn helm() -> Option<String> {
    for var in ["AML_HELM3", "AML_HELM4"] {
        if let Ok(path) = std::env::var(var) {
            return Some(path);
        }
    }
    std::process::Command::new("helm").arg("version").output().ok().filter(|o| o.status.success()).map(|_| "helm".into())
}

#[tokio::test]
async fn the_charts_rbac_is_enough_to_reconcile() {
    let Some(admin) = cluster().await else { return };
    let Some(helm) = helm() else {
        eprintln!("skipping RBAC end-to-end test: no helm (set AML_HELM3 or put helm on PATH)");
        return;
    };
    let env = Env::start_with(admin.clone(), "aml-e2e-rbac", false).await;
    // Render the chart for this namespace and install its ServiceAccount, ClusterRole and binding
    // under names unique to this test.
    let release = env.ns.clone();
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/aml-operator");
    let out = std::process::Command::new(&helm)
        .args(["template", &release, chart.to_str().unwrap(), "--namespace", &env.ns])
        .output()
        .expect("helm runs");
    assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
    let rendered = String::from_utf8(out.stdout).unwrap();
    let mut applied = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&rendered) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        if !["ServiceAccount", "ClusterRole", "ClusterRoleBinding"].contains(&kind.as_str()) {
            continue;
        }
        let obj: kube::api::DynamicObject = serde_json::from_value(v.clone()).unwrap();
        let (group, version) = match v["apiVersion"].as_str().unwrap().split_once('/') {
            Some((g, ver)) => (g.to_string(), ver.to_string()),
            None => (String::new(), v["apiVersion"].as_str().unwrap().to_string()),
        };
        let gvk = kube::api::GroupVersionKind::gvk(&group, &version, &kind);
        let resource = kube::api::ApiResource::from_gvk(&gvk);
        let api: Api<kube::api::DynamicObject> = if kind == "ServiceAccount" {
            Api::namespaced_with(admin.clone(), &env.ns, &resource)
        } else {
            Api::all_with(admin.clone(), &resource)
        };
        api.patch(&obj.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&obj)).await.unwrap_or_else(|e| panic!("{kind}: {e}"));
        applied.push((api, obj.name_any(), kind));
    }
    assert_eq!(applied.len(), 3, "ServiceAccount, ClusterRole and ClusterRoleBinding rendered");
    let sa = applied.iter().find(|(_, _, k)| k == "ServiceAccount").map(|(_, n, _)| n.clone()).unwrap();

    // The operator's client impersonates that ServiceAccount: a permission the chart lacks fails here.
    let path = std::env::var(ENV).unwrap();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{}:{sa}", env.ns));
    let operator_client = Client::try_from(config).unwrap();
    let cloud = CloudConfig {
        arm_endpoint: env.emulator.arm_endpoint(),
        authority_host: env.emulator.authority_host(),
        ca_file: Some(support::temp_path("rbac-ca.pem")),
        ..CloudConfig::default()
    };
    std::fs::write(cloud.ca_file.as_ref().unwrap(), env.emulator.ca_pem()).unwrap();
    let ctx = Arc::new(Context::new(operator_client, ArmClient::new(&cloud).unwrap(), Config::default()));
    let ns = env.ns.clone();
    let controllers = tokio::spawn(async move {
        aml_operator::manager::run_controllers(ctx, Some(&ns), Arc::new(AtomicBool::new(false))).await;
    });

    let api: Api<AmlWorkspace> = Api::namespaced(admin.clone(), &env.ns);
    let ws: AmlWorkspace = serde_json::from_value(json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
        "metadata": {"name": "rbac-ws", "namespace": env.ns},
        "spec": {"resourceGroup": "rg-e2e", "location": "eastus"}
    }))
    .unwrap();
    api.patch("rbac-ws", &PatchParams::apply(MANAGER), &Patch::Apply(&ws)).await.unwrap();
    eventually("workspace Ready under the chart's RBAC", Duration::from_secs(90), || {
        let api = api.clone();
        async move { ready(&serde_json::to_value(api.get("rbac-ws").await.ok()?).ok()?).then_some(()) }
    })
    .await;
    api.delete("rbac-ws", &DeleteParams::default()).await.unwrap();
    eventually("workspace deleted under the chart's RBAC", Duration::from_secs(90), || {
        let api = api.clone();
        async move { api.get_opt("rbac-ws").await.ok()?.is_none().then_some(()) }
    })
    .await;
    controllers.abort();
    for (api, name, kind) in applied {
        if kind != "ServiceAccount" {
            let _ = api.delete(&name, &DeleteParams::default()).await;
        }
    }
    env.finish().await;
}
