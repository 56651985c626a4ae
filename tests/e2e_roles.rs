//! AmlRoleAssignment end to end against a real Kubernetes API server (`AML_E2E_KUBECONFIG`, e.g.
//! from `eval "$(../shared/kube/up)"`): the CRDs installed server-side, the controllers in-process,
//! the emulator as Azure. Skipped with a printed reason without the variable, unless
//! `AML_REQUIRE_E2E=1` makes that a failure.

mod support;

use aml_operator::arm::{ArmClient, CloudConfig, ids};
use aml_operator::controller::{Config, Context};
use aml_operator::emulator::{Emulator, EmulatorConfig, Principal};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

const ENV: &str = "AML_E2E_KUBECONFIG";
const REQUIRE_ENV: &str = "AML_REQUIRE_E2E";
const MANAGER: &str = "aml-operator-e2e-roles";
const GROUP: &str = "3f2c1a9e-7b4d-4e2a-9c1f-5d6e7f8a9b0c";
const DATA_SCIENTIST: &str = "f6c7c914-8db3-469d-8ca1-694a8f32e121";

async fn cluster() -> Option<Client> {
    let Ok(path) = std::env::var(ENV) else {
        let why = format!("{ENV} is not set (point it at a kubeconfig, e.g. from ../shared/kube/up, to run against a real cluster)");
        assert!(std::env::var(REQUIRE_ENV).as_deref() != Ok("1"), "{REQUIRE_ENV}=1 but {why}");
        eprintln!("skipping end-to-end test: {why}");
        return None;
    };
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("usable kubeconfig");
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
        api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&crd)).await.unwrap_or_else(|e| panic!("CRD {name}: {e}"));
        eventually(&format!("CRD {name} established"), Duration::from_secs(60), || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await.ok()?;
                crd.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(())
            }
        })
        .await;
    }
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("amloperator.io", "v1alpha1", kind), plural)
}

fn ready(obj: &Value) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True" && c["observedGeneration"] == obj["metadata"]["generation"])
    })
}

#[tokio::test]
async fn a_role_assignment_on_a_workspace_converges_refuses_immutable_edits_and_goes_with_its_namespace() {
    let Some(client) = cluster().await else { return };
    aml_operator::install_crypto_provider();
    install_crds(&client).await;

    let ns = format!("aml-e2e-ra-{}", std::process::id() % 100000);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns, "labels": {"app.kubernetes.io/part-of": "aml-operator-e2e"}}})).unwrap();
    namespaces.create(&PostParams::default(), &namespace).await.expect("namespace created");

    let ca_file = support::temp_path("e2e-roles-ca.pem");
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
        aml_operator::manager::run_controllers(ctx, Some(&watch_ns), Arc::new(AtomicBool::new(false))).await;
    });

    // The role assignment first: it waits for its workspace, then converges.
    let assignments: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource("AmlRoleAssignment", "amlroleassignments"));
    let workspaces: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource("AmlWorkspace", "amlworkspaces"));
    let ra = json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlRoleAssignment",
        "metadata": {"name": "team-a-data-scientists", "namespace": ns},
        "spec": {"workspaceRef": {"name": "team-a"}, "role": "AzureMLDataScientist", "principalId": GROUP,
                 "principalType": "Group", "description": "Team A data scientists"}
    });
    assignments
        .patch("team-a-data-scientists", &PatchParams::apply(MANAGER), &Patch::Apply(&ra))
        .await
        .expect("role assignment applied");
    let ws = json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
        "metadata": {"name": "team-a", "namespace": ns},
        "spec": {"resourceGroup": "rg-e2e", "location": "eastus"}
    });
    workspaces.patch("team-a", &PatchParams::apply(MANAGER), &Patch::Apply(&ws)).await.expect("workspace applied");

    let obj = eventually("role assignment Ready", Duration::from_secs(120), || {
        let api = assignments.clone();
        async move {
            let obj = serde_json::to_value(api.get("team-a-data-scientists").await.ok()?).ok()?;
            ready(&obj).then_some(obj)
        }
    })
    .await;
    let ws_obj = serde_json::to_value(workspaces.get("team-a").await.expect("workspace")).unwrap();
    let scope = ws_obj["status"]["armId"].as_str().expect("workspace armId").to_string();
    let id = ids::role_assignment_id(&scope, &ids::role_assignment_name(&scope, GROUP, DATA_SCIENTIST));
    assert_eq!(obj["status"]["armId"], id.as_str());
    assert_eq!(obj["metadata"]["ownerReferences"][0]["name"], "team-a");
    let stored = emulator.resource(&id).expect("the assignment exists in Azure");
    assert_eq!(stored["properties"]["principalId"], GROUP);

    // Admission refuses what the assignment cannot change.
    let err = assignments
        .patch(
            "team-a-data-scientists",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"principalId": "00000000-0000-0000-0000-000000000001"}})),
        )
        .await
        .expect_err("principalId is immutable");
    assert!(err.to_string().contains("principalId is immutable"), "{err}");
    let err = assignments
        .patch(
            "team-a-data-scientists",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"workspaceRef": null, "scopeId": format!("/subscriptions/{}/resourceGroups/rg-e2e", support::SUBSCRIPTION)}})),
        )
        .await
        .expect_err("the scope is immutable");
    let text = err.to_string();
    assert!(text.contains("workspaceRef is immutable") && text.contains("scopeId is immutable"), "{text}");
    let both = json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlRoleAssignment",
        "metadata": {"name": "two-scopes", "namespace": ns},
        "spec": {"workspaceRef": {"name": "team-a"}, "scopeId": "/subscriptions/x", "role": "Reader", "principalId": GROUP, "principalType": "Group"}
    });
    let err = assignments.patch("two-scopes", &PatchParams::apply(MANAGER), &Patch::Apply(&both)).await.expect_err("two scopes");
    assert!(err.to_string().contains("set exactly one of workspaceRef, computeRef or scopeId"), "{err}");
    // A description edit is allowed and reaches ARM.
    assignments
        .patch("team-a-data-scientists", &PatchParams::default(), &Patch::Merge(json!({"spec": {"description": "edited"}})))
        .await
        .expect("description may change");
    eventually("description updated in ARM", Duration::from_secs(60), || {
        let r = emulator.resource(&id);
        async move { (r?["properties"]["description"] == "edited").then_some(()) }
    })
    .await;

    // Deleting the namespace deletes the assignment in Azure before the namespace goes.
    namespaces.delete(&ns, &DeleteParams::default()).await.expect("namespace deleted");
    eventually("namespace removed", Duration::from_secs(120), || {
        let namespaces = namespaces.clone();
        let ns = ns.clone();
        async move { namespaces.get_opt(&ns).await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert!(emulator.resource(&id).is_none(), "the assignment is gone from Azure");
    assert!(
        emulator.requests().iter().any(|r| r.method == "DELETE" && r.path.eq_ignore_ascii_case(&id)),
        "the role assignment controller deleted it (finalizer)"
    );
    assert!(emulator.role_assignments().is_empty(), "{:?}", emulator.role_assignments());
    assert!(emulator.resource(&scope).is_none(), "the workspace too");
    controllers.abort();
    emulator.shutdown().await;
}
