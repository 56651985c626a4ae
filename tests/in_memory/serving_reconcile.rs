//! AmlOnlineEndpoint and AmlOnlineDeployment reconcile scenarios: the Kubernetes API faked at the
//! transport, the emulator as Azure, a converged AmlWorkspace as the parent.

use crate::support;

use aml_operator::arm::{DEFAULT_API_VERSION, PostOutcome, Secret as ArmSecret, ServicePrincipal};
use aml_operator::controller::{AmlKind, Error, Target};
use aml_operator::crd::{AmlOnlineDeployment, AmlOnlineEndpoint, AmlWorkspace};
use aml_operator::emulator::{EmulatorConfig, Principal};
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use serde_json::{Value, json};
use std::time::Duration;
use crate::support::{NS, SUBSCRIPTION, World};

const WS_PATH: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlworkspaces/ws1";
const EP_PATH: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlonlineendpoints/ep1";
const DEP_PATH: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlonlinedeployments/blue";
const KEYS_PATH: &str = "/api/v1/namespaces/team-a/secrets/ep1-keys";
const WS_ID: &str =
    "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/ws1";

fn ep_id() -> String {
    format!("{WS_ID}/onlineEndpoints/ep1")
}

fn dep_id() -> String {
    format!("{}/deployments/blue", ep_id())
}

fn merged(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

fn workspace(extra: Value) -> AmlWorkspace {
    let spec = merged(
        json!({
            "resourceGroup": "rg-ml",
            "location": "eastus",
            "storageAccount": "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.Storage/storageAccounts/sa1",
            "keyVault": "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.KeyVault/vaults/kv1",
        }),
        extra,
    );
    AmlWorkspace {
        metadata: ObjectMeta { name: Some("ws1".into()), namespace: Some(NS.into()), ..Default::default() },
        spec: serde_json::from_value(spec).expect("valid workspace spec"),
        status: None,
    }
}

fn endpoint(extra: Value) -> AmlOnlineEndpoint {
    let spec = merged(
        json!({
            "workspaceRef": {"name": "ws1"},
            "authMode": "Key",
            "description": "scoring for team a",
            "tags": {"team": "a"},
        }),
        extra,
    );
    AmlOnlineEndpoint {
        metadata: ObjectMeta { name: Some("ep1".into()), namespace: Some(NS.into()), ..Default::default() },
        spec: serde_json::from_value(spec).expect("valid endpoint spec"),
        status: None,
    }
}

fn deployment(extra: Value) -> AmlOnlineDeployment {
    let spec = merged(
        json!({
            "endpointRef": {"name": "ep1"},
            "model": "azureml://registries/azureml/models/sklearn-model/versions/1",
            "environmentId": "azureml://registries/azureml/environments/sklearn-env/versions/3",
            "codeConfiguration": {"codeId": "azureml://registries/azureml/codes/score-code/versions/1", "scoringScript": "score.py"},
            "instanceType": "Standard_DS3_v2",
            "instanceCount": 1,
        }),
        extra,
    );
    AmlOnlineDeployment {
        metadata: ObjectMeta { name: Some("blue".into()), namespace: Some(NS.into()), ..Default::default() },
        spec: serde_json::from_value(spec).expect("valid deployment spec"),
        status: None,
    }
}

/// A world with a converged workspace `ws1` (credentials from `aml-credentials`).
async fn with_workspace_in(w: World) -> World {
    w.good_credentials();
    w.kube.put(workspace(json!({})));
    w.converge::<AmlWorkspace>(WS_PATH).await;
    w
}

async fn with_workspace() -> World {
    with_workspace_in(World::new().await).await
}

/// A world with a converged workspace and endpoint `ep1` (spec `extra` added).
async fn with_endpoint(extra: Value) -> World {
    let w = with_workspace().await;
    w.kube.put(endpoint(extra));
    w.converge::<AmlOnlineEndpoint>(EP_PATH).await;
    w
}

fn principal() -> ServicePrincipal {
    let p = Principal::default();
    ServicePrincipal {
        tenant_id: p.tenant_id,
        client_id: p.client_id,
        credential: aml_operator::arm::ClientCredential::Secret(ArmSecret::new(p.client_secret)),
        subscription_id: Some(SUBSCRIPTION.into()),
    }
}

/// The endpoint's keys as ARM's `listKeys` gives them.
async fn arm_keys(w: &World) -> (String, String) {
    let path = format!("{}/listKeys", ep_id());
    let PostOutcome::Done(Some(keys)) = w.ctx.arm.post(&principal(), &path, DEFAULT_API_VERSION, None).await.unwrap() else {
        panic!("listKeys answered without a body")
    };
    (keys["primaryKey"].as_str().unwrap().to_string(), keys["secondaryKey"].as_str().unwrap().to_string())
}

/// The keys Secret's data, decoded.
fn keys_secret(w: &World) -> Option<(Secret, std::collections::BTreeMap<String, String>)> {
    let secret: Secret = w.kube.get(KEYS_PATH)?;
    let data = secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
        .collect();
    Some((secret, data))
}

/// ARM answers 400 so far (the traffic handling must never cause one).
fn bad_requests(w: &World) -> Vec<String> {
    w.emulator.requests().into_iter().filter(|r| r.status == 400).map(|r| format!("{} {}", r.method, r.path)).collect()
}

fn posts_to(w: &World, action: &str) -> usize {
    w.emulator.requests().iter().filter(|r| r.method == "POST" && r.path.ends_with(action)).count()
}

// ---------------------------------------------------------------------------------------------
// AmlOnlineEndpoint: the scenario set

#[tokio::test]
async fn first_apply_creates_the_endpoint_once_under_its_workspace_and_reports_the_scoring_uri() {
    let w = with_workspace().await;
    w.kube.put(endpoint(json!({})));
    w.emulator.clear_requests();
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.expect("finalizer added and create accepted");
    assert_eq!(w.kube.raw(EP_PATH).unwrap()["metadata"]["finalizers"], json!(["amloperator.io/finalizer"]));
    assert_eq!(w.arm_calls("PUT"), 1);
    let obj = w.kube.raw(EP_PATH).unwrap();
    assert_eq!(obj["status"]["operation"]["action"], "Create");
    assert_eq!(obj["status"]["armId"], ep_id());
    assert_eq!(w.condition(EP_PATH, "Reconciling").unwrap()["status"], "True");
    let owner = &obj["metadata"]["ownerReferences"][0];
    assert_eq!((owner["kind"].as_str(), owner["name"].as_str()), (Some("AmlWorkspace"), Some("ws1")));

    w.converge::<AmlOnlineEndpoint>(EP_PATH).await;
    assert_eq!(w.arm_calls("PUT"), 1, "exactly one PUT for a create");
    let status = w.kube.raw(EP_PATH).unwrap()["status"].clone();
    assert_eq!(status["provisioningState"], "Succeeded");
    assert_eq!(status["location"], "eastus", "location inherited from the workspace");
    assert_eq!(status["scoringUri"], "https://ep1.eastus.inference.ml.azure.com/score");
    assert_eq!(status["swaggerUri"], "https://ep1.eastus.inference.ml.azure.com/swagger.json");
    assert!(status.get("operation").is_none());
    assert!(w.condition(EP_PATH, "Stalled").is_none());

    let arm = w.emulator.resource(&ep_id()).expect("endpoint exists in ARM");
    assert_eq!(arm["properties"]["authMode"], "Key");
    assert_eq!(arm["properties"]["description"], "scoring for team a");
    assert_eq!(arm["tags"], json!({"team": "a", "amloperator.io-owner": "default/team-a/ep1"}), "the spec's tags and the owner tag");
    assert!(bad_requests(&w).is_empty(), "{:?}", bad_requests(&w));
}

#[tokio::test]
async fn a_converged_endpoint_with_a_keys_secret_costs_one_get_and_no_writes() {
    let w = with_endpoint(json!({"keysSecret": {"name": "ep1-keys"}})).await;
    assert!(keys_secret(&w).is_some());
    w.emulator.clear_requests();
    w.kube.clear_calls();

    for _ in 0..3 {
        w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.expect("steady state");
    }
    let methods: Vec<_> = w.emulator.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, vec!["GET", "GET", "GET"], "one GET per resync, no listKeys while the Secret is fresh");
    let writes: Vec<_> = w.kube.calls().into_iter().filter(|c| c.method != "GET").map(|c| format!("{} {}", c.method, c.path)).collect();
    assert!(writes.is_empty(), "no Kubernetes writes (status, Secret, events): {writes:?}");
}

#[tokio::test]
async fn endpoint_drift_made_in_azure_is_corrected_with_one_put() {
    let w = with_endpoint(json!({})).await;
    w.emulator.update_resource(&ep_id(), |v| v["properties"]["description"] = json!("edited in the portal"));
    w.emulator.clear_requests();

    w.converge::<AmlOnlineEndpoint>(EP_PATH).await;
    assert_eq!(w.arm_calls("PUT"), 1);
    assert_eq!(w.emulator.resource(&ep_id()).unwrap()["properties"]["description"], "scoring for team a");
}

#[tokio::test]
async fn an_endpoint_spec_change_is_applied_and_observed_generation_follows() {
    let w = with_endpoint(json!({})).await;
    w.kube.edit(EP_PATH, |o| o["spec"]["tags"] = json!({"team": "a", "cost-center": "42"}));
    w.emulator.clear_requests();

    w.converge::<AmlOnlineEndpoint>(EP_PATH).await;
    assert_eq!(w.arm_calls("PUT"), 1);
    assert_eq!(w.emulator.resource(&ep_id()).unwrap()["tags"]["cost-center"], "42");
    assert_eq!(w.kube.raw(EP_PATH).unwrap()["status"]["observedGeneration"], 2);
    assert_eq!(w.condition(EP_PATH, "Ready").unwrap()["observedGeneration"], 2);
}

#[tokio::test]
async fn deleting_an_endpoint_with_delete_policy_waits_for_arm() {
    let w = with_endpoint(json!({})).await;
    w.kube.delete(EP_PATH);
    w.emulator.clear_requests();

    let err = w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.expect_err("delete is asynchronous");
    assert!(matches!(err, Error::DeletePending { .. }), "{err:?}");
    assert!(w.kube.raw(EP_PATH).is_some(), "object kept while ARM deletes");
    w.emulator.finish_operations();
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.expect("delete finished");
    assert!(w.kube.raw(EP_PATH).is_none());
    assert!(w.emulator.resource(&ep_id()).is_none());
    assert_eq!(w.arm_calls("DELETE"), 1);
}

#[tokio::test]
async fn deleting_an_endpoint_with_orphan_policy_leaves_azure_alone() {
    let w = with_endpoint(json!({"deletionPolicy": "Orphan"})).await;
    w.kube.delete(EP_PATH);
    w.emulator.clear_requests();
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.expect("released");
    assert!(w.kube.raw(EP_PATH).is_none());
    assert_eq!(w.arm_calls("DELETE"), 0);
    assert!(w.emulator.resource(&ep_id()).is_some());
}

#[tokio::test]
async fn an_observed_endpoint_is_reported_but_never_written() {
    let w = with_workspace().await;
    w.kube.put(endpoint(json!({"managementPolicy": "Observe", "keysSecret": {"name": "ep1-keys"}})));
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    assert_eq!(w.condition(EP_PATH, "Ready").unwrap()["reason"], "NotFoundInAzure");

    w.emulator.insert_resource(
        &ep_id(),
        json!({"location": "eastus", "tags": {"team": "a"}, "properties": {"authMode": "Key", "description": "scoring for team a"}}),
    );
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    assert_eq!(w.ready(EP_PATH).as_deref(), Some("True"));
    assert!(w.kube.raw(EP_PATH).unwrap()["status"]["scoringUri"].is_string());

    w.emulator.update_resource(&ep_id(), |v| v["properties"]["description"] = json!("changed"));
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    assert_eq!(w.condition(EP_PATH, "Ready").unwrap()["reason"], "Drifted");

    w.kube.delete(EP_PATH);
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    assert!(w.kube.raw(EP_PATH).is_none());
    let endpoint_writes = w.emulator.requests().iter().filter(|r| r.path.contains("onlineEndpoints") && r.method != "GET").count();
    assert_eq!(endpoint_writes, 0, "Observe writes nothing, not even listKeys: {:?}", w.emulator.requests());
    assert!(keys_secret(&w).is_none(), "Observe does not write the keys Secret");
}

#[tokio::test]
async fn a_restart_mid_endpoint_create_resumes_polling_without_a_second_put() {
    let mut w = with_workspace().await;
    w.kube.put(endpoint(json!({})));
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    let puts = |w: &World| w.emulator.requests().iter().filter(|r| r.method == "PUT" && r.path.contains("onlineEndpoints")).count();
    assert_eq!(puts(&w), 1);

    w.restart();
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    assert_eq!(puts(&w), 1, "the restarted operator polls, it does not write again");
    w.converge::<AmlOnlineEndpoint>(EP_PATH).await;
    assert_eq!(puts(&w), 1);
}

#[tokio::test]
async fn an_endpoint_waits_for_its_workspace_without_calling_arm() {
    let w = World::new().await;
    w.good_credentials();
    w.kube.put(endpoint(json!({})));
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    let ready = w.condition(EP_PATH, "Ready").unwrap();
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("WaitingForParent")));
    assert!(ready["message"].as_str().unwrap().contains("AmlWorkspace team-a/ws1"), "{ready}");
    assert!(w.emulator.requests().is_empty());

    w.kube.put(workspace(json!({})));
    w.converge::<AmlWorkspace>(WS_PATH).await;
    w.converge::<AmlOnlineEndpoint>(EP_PATH).await;
}

#[tokio::test]
async fn an_endpoint_under_a_workspace_id_is_created_there() {
    let w = World::new().await;
    w.good_credentials();
    let other = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-other/providers/Microsoft.MachineLearningServices/workspaces/shared";
    w.emulator.insert_resource(other, json!({"location": "westeurope", "properties": {}}));
    let mut ep = endpoint(json!({"workspaceId": other}));
    ep.spec.workspace_ref = None;
    w.kube.put(ep);
    w.converge::<AmlOnlineEndpoint>(EP_PATH).await;
    let arm = w.emulator.resource(&format!("{other}/onlineEndpoints/ep1")).expect("created under the given workspace");
    assert_eq!(arm["location"], "westeurope");
    assert!(w.kube.raw(EP_PATH).unwrap()["metadata"].get("ownerReferences").is_none());
}

// ---------------------------------------------------------------------------------------------
// AmlOnlineEndpoint: traffic and keys

#[tokio::test]
async fn traffic_to_a_deployment_that_does_not_exist_yet_is_applied_once_it_has_succeeded() {
    let w = with_workspace().await;
    w.kube.put(endpoint(json!({"traffic": {"blue": 100}})));
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    w.emulator.finish_operations();
    for _ in 0..3 {
        w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    }
    let arm = w.emulator.resource(&ep_id()).expect("endpoint created");
    assert_eq!(arm["properties"]["traffic"], json!({}), "created with no traffic");
    let ready = w.condition(EP_PATH, "Ready").unwrap();
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("WaitingForDeployments")));
    assert_eq!(ready["message"], "traffic names deployments that are not ready yet: blue");
    let endpoint_puts = w.emulator.requests().iter().filter(|r| r.method == "PUT" && r.path.contains("onlineEndpoints")).count();
    assert_eq!(endpoint_puts, 1, "waiting does not write again");

    // The deployment may go ahead although its endpoint is not Ready: it is what the endpoint waits for.
    w.kube.put(deployment(json!({})));
    w.converge::<AmlOnlineDeployment>(DEP_PATH).await;
    assert_eq!(w.emulator.resource(&dep_id()).unwrap()["properties"]["provisioningState"], "Succeeded");

    w.converge::<AmlOnlineEndpoint>(EP_PATH).await;
    assert_eq!(w.emulator.resource(&ep_id()).unwrap()["properties"]["traffic"], json!({"blue": 100}));
    assert_eq!(w.condition(EP_PATH, "Ready").unwrap()["reason"], "Succeeded");
    assert!(bad_requests(&w).is_empty(), "ARM never answered 400: {:?}", bad_requests(&w));

    // Converged again: no deployment lookups any more.
    w.emulator.clear_requests();
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    let methods: Vec<_> = w.emulator.requests().into_iter().map(|r| (r.method, r.path.contains("/deployments/"))).collect();
    assert_eq!(methods, vec![("GET".to_string(), false)]);
}

#[tokio::test]
async fn removing_a_deployment_from_traffic_routes_zero_to_it_so_it_can_be_deleted() {
    let w = with_endpoint(json!({})).await;
    w.kube.put(deployment(json!({})));
    w.converge::<AmlOnlineDeployment>(DEP_PATH).await;
    w.kube.edit(EP_PATH, |o| o["spec"]["traffic"] = json!({"blue": 100}));
    w.converge::<AmlOnlineEndpoint>(EP_PATH).await;
    assert_eq!(w.emulator.resource(&ep_id()).unwrap()["properties"]["traffic"], json!({"blue": 100}));

    w.kube.edit(EP_PATH, |o| o["spec"]["traffic"] = json!({}));
    w.converge::<AmlOnlineEndpoint>(EP_PATH).await;
    assert_eq!(w.emulator.resource(&ep_id()).unwrap()["properties"]["traffic"], json!({"blue": 0}));

    w.kube.delete(DEP_PATH);
    let _ = w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await;
    w.emulator.finish_operations();
    w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.expect("deleted");
    assert!(w.emulator.resource(&dep_id()).is_none());
    assert!(bad_requests(&w).is_empty(), "{:?}", bad_requests(&w));
}

#[tokio::test]
async fn the_keys_secret_holds_arm_keys_follows_a_regeneration_and_keys_stay_out_of_status() {
    let w = with_endpoint(json!({"keysSecret": {"name": "ep1-keys"}})).await;
    let (primary, secondary) = arm_keys(&w).await;
    let (secret, data) = keys_secret(&w).expect("keys Secret written");
    assert_eq!(data.get("primaryKey"), Some(&primary));
    assert_eq!(data.get("secondaryKey"), Some(&secondary));
    assert_eq!(data.get("scoringUri").map(String::as_str), Some("https://ep1.eastus.inference.ml.azure.com/score"));
    let endpoint_obj = w.kube.raw(EP_PATH).unwrap();
    let owner = &secret.metadata.owner_references.as_ref().expect("owned")[0];
    assert_eq!(owner.kind, "AmlOnlineEndpoint");
    assert_eq!(owner.controller, Some(true));
    assert_eq!(Some(owner.uid.as_str()), endpoint_obj["metadata"]["uid"].as_str());
    assert!(secret.metadata.annotations.as_ref().unwrap().contains_key("amloperator.io/keys-checked-at"));

    // Someone regenerates the primary key in Azure.
    let regenerate = format!("{}/regenerateKeys", ep_id());
    w.ctx.arm.post(&principal(), &regenerate, DEFAULT_API_VERSION, Some(&json!({"keyType": "Primary"}))).await.unwrap();
    w.emulator.finish_operations();
    let (new_primary, _) = arm_keys(&w).await;
    assert_ne!(new_primary, primary);

    // Within the keys refresh period the Secret is trusted: no listKeys.
    w.emulator.clear_requests();
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    assert_eq!(posts_to(&w, "/listKeys"), 0);
    assert_eq!(keys_secret(&w).unwrap().1.get("primaryKey"), Some(&primary));

    // Once the last check is older than the keys refresh period, the keys are read again and updated.
    w.kube.edit(KEYS_PATH, |s| s["metadata"]["annotations"]["amloperator.io/keys-checked-at"] = json!("2020-01-01T00:00:00Z"));
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    assert_eq!(posts_to(&w, "/listKeys"), 1);
    let (secret, data) = keys_secret(&w).unwrap();
    assert_eq!(data.get("primaryKey"), Some(&new_primary));
    assert_ne!(secret.metadata.annotations.unwrap()["amloperator.io/keys-checked-at"], "2020-01-01T00:00:00Z");

    // Checked just now and unchanged: no listKeys, no Secret write.
    w.kube.clear_calls();
    w.emulator.clear_requests();
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    assert!(w.kube.calls().iter().all(|c| c.method == "GET"), "fresh and equal: nothing written");
    assert_eq!(posts_to(&w, "/listKeys"), 0);

    // Keys never reach status, conditions or events.
    let everything = format!("{}{:?}", w.kube.raw(EP_PATH).unwrap(), w.kube.events());
    for key in [&primary, &secondary, &new_primary] {
        assert!(!everything.contains(key.as_str()), "a key leaked into status or events");
    }
}

#[tokio::test]
async fn a_token_endpoint_gets_only_the_scoring_uri_and_no_list_keys() {
    let w = with_endpoint(json!({"authMode": "AMLToken", "keysSecret": {"name": "ep1-keys"}})).await;
    let (_, data) = keys_secret(&w).expect("Secret written");
    assert_eq!(data.keys().collect::<Vec<_>>(), ["scoringUri"]);
    assert_eq!(posts_to(&w, "/listKeys"), 0);
}

#[tokio::test]
async fn a_keys_secret_controlled_by_someone_else_is_not_taken_over() {
    let w = with_workspace().await;
    let mut foreign = support::secret("ep1-keys", &[("scoringUri", "mine")]);
    foreign.metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: "other".into(),
        uid: "uid-other".into(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    w.kube.put(foreign);
    w.kube.put(endpoint(json!({"keysSecret": {"name": "ep1-keys"}})));
    for _ in 0..4 {
        let _ = w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await;
        w.emulator.finish_operations();
    }
    let ready = w.condition(EP_PATH, "Ready").unwrap();
    assert_eq!(ready["reason"], "InvalidSpec", "{ready}");
    assert!(ready["message"].as_str().unwrap().contains("controlled by Deployment other"), "{ready}");
    assert_eq!(keys_secret(&w).unwrap().1["scoringUri"], "mine");
}

// ---------------------------------------------------------------------------------------------
// AmlOnlineDeployment: the scenario set

#[tokio::test]
async fn first_apply_creates_the_deployment_once_with_its_instance_count_as_sku() {
    let w = with_endpoint(json!({})).await;
    w.kube.put(deployment(json!({"instanceCount": 2})));
    w.emulator.clear_requests();
    w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.unwrap();
    w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.unwrap();
    assert_eq!(w.arm_calls("PUT"), 1);
    let owner = &w.kube.raw(DEP_PATH).unwrap()["metadata"]["ownerReferences"][0];
    assert_eq!((owner["kind"].as_str(), owner["name"].as_str()), (Some("AmlOnlineEndpoint"), Some("ep1")));

    w.converge::<AmlOnlineDeployment>(DEP_PATH).await;
    assert_eq!(w.arm_calls("PUT"), 1);
    let status = w.kube.raw(DEP_PATH).unwrap()["status"].clone();
    assert_eq!(status["provisioningState"], "Succeeded");
    assert_eq!(status["armId"], dep_id());
    assert_eq!(status["instanceCount"], 2);
    let arm = w.emulator.resource(&dep_id()).unwrap();
    assert_eq!(arm["sku"], json!({"name": "Default", "capacity": 2}));
    assert_eq!(arm["location"], "eastus");
    assert_eq!(arm["properties"]["endpointComputeType"], "Managed");
    assert_eq!(arm["properties"]["codeConfiguration"]["scoringScript"], "score.py");
}

#[tokio::test]
async fn a_converged_deployment_costs_one_get_and_no_writes() {
    let w = with_endpoint(json!({})).await;
    w.kube.put(deployment(json!({})));
    w.converge::<AmlOnlineDeployment>(DEP_PATH).await;
    w.emulator.clear_requests();
    w.kube.clear_calls();
    for _ in 0..3 {
        w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.unwrap();
    }
    let methods: Vec<_> = w.emulator.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, vec!["GET", "GET", "GET"]);
    assert!(w.kube.status_writes().is_empty());
    assert!(w.kube.events().is_empty());
}

#[tokio::test]
async fn deployment_drift_made_in_azure_is_corrected_with_one_put() {
    let w = with_endpoint(json!({})).await;
    w.kube.put(deployment(json!({})));
    w.converge::<AmlOnlineDeployment>(DEP_PATH).await;
    w.emulator.update_resource(&dep_id(), |v| v["properties"]["model"] = json!("azureml://registries/azureml/models/other-model/versions/7"));
    w.emulator.clear_requests();
    w.converge::<AmlOnlineDeployment>(DEP_PATH).await;
    assert_eq!(w.arm_calls("PUT"), 1);
    assert_eq!(w.emulator.resource(&dep_id()).unwrap()["properties"]["model"], "azureml://registries/azureml/models/sklearn-model/versions/1");
}

#[tokio::test]
async fn scaling_a_deployment_is_one_patch_of_the_sku() {
    let w = with_endpoint(json!({})).await;
    w.kube.put(deployment(json!({})));
    w.converge::<AmlOnlineDeployment>(DEP_PATH).await;
    w.kube.edit(DEP_PATH, |o| o["spec"]["instanceCount"] = json!(3));
    w.emulator.clear_requests();
    w.converge::<AmlOnlineDeployment>(DEP_PATH).await;
    assert_eq!((w.arm_calls("PATCH"), w.arm_calls("PUT")), (1, 0));
    assert_eq!(w.emulator.resource(&dep_id()).unwrap()["sku"]["capacity"], 3);
    assert_eq!(w.kube.raw(DEP_PATH).unwrap()["status"]["instanceCount"], 3);
    assert_eq!(w.kube.raw(DEP_PATH).unwrap()["status"]["observedGeneration"], 2);

    // Any other change is a PUT.
    w.kube.edit(DEP_PATH, |o| o["spec"]["environmentVariables"] = json!({"WORKERS": "4"}));
    w.emulator.clear_requests();
    w.converge::<AmlOnlineDeployment>(DEP_PATH).await;
    assert_eq!((w.arm_calls("PATCH"), w.arm_calls("PUT")), (0, 1));
}

#[tokio::test]
async fn deleting_a_deployment_with_delete_policy_waits_for_arm_and_orphan_leaves_it() {
    let w = with_endpoint(json!({})).await;
    w.kube.put(deployment(json!({})));
    w.converge::<AmlOnlineDeployment>(DEP_PATH).await;
    w.kube.delete(DEP_PATH);
    let err = w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.expect_err("delete is asynchronous");
    assert!(matches!(err, Error::DeletePending { .. }), "{err:?}");
    assert!(w.kube.raw(DEP_PATH).is_some());
    w.emulator.finish_operations();
    w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.expect("deleted");
    assert!(w.kube.raw(DEP_PATH).is_none());
    assert!(w.emulator.resource(&dep_id()).is_none());
    assert_eq!(w.arm_calls("DELETE"), 1);

    w.kube.put(deployment(json!({"deletionPolicy": "Orphan"})));
    w.converge::<AmlOnlineDeployment>(DEP_PATH).await;
    w.kube.delete(DEP_PATH);
    w.emulator.clear_requests();
    w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.expect("released");
    assert!(w.kube.raw(DEP_PATH).is_none());
    assert_eq!(w.arm_calls("DELETE"), 0);
    assert!(w.emulator.resource(&dep_id()).is_some());
}

#[tokio::test]
async fn an_observed_deployment_is_reported_but_never_written() {
    let w = with_endpoint(json!({})).await;
    w.kube.put(deployment(json!({"managementPolicy": "Observe"})));
    w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.unwrap();
    w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.unwrap();
    assert_eq!(w.condition(DEP_PATH, "Ready").unwrap()["reason"], "NotFoundInAzure");

    let mut body = deployment(json!({})).desired(&dep_target()).unwrap();
    body["sku"]["capacity"] = json!(4);
    w.emulator.insert_resource(&dep_id(), body);
    w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.unwrap();
    assert_eq!(w.condition(DEP_PATH, "Ready").unwrap()["reason"], "Drifted", "capacity 4 is not the spec's 1");
    assert_eq!(w.kube.raw(DEP_PATH).unwrap()["status"]["instanceCount"], 4);

    w.kube.delete(DEP_PATH);
    w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.unwrap();
    assert!(w.kube.raw(DEP_PATH).is_none());
    let writes = w.emulator.requests().iter().filter(|r| r.path.contains("/deployments/") && r.method != "GET").count();
    assert_eq!(writes, 0, "{:?}", w.emulator.requests());
    assert!(w.emulator.resource(&dep_id()).is_some());
}

#[tokio::test]
async fn a_restart_mid_deployment_create_resumes_polling_without_a_second_put() {
    let mut w = with_endpoint(json!({})).await;
    w.kube.put(deployment(json!({})));
    w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.unwrap();
    w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.unwrap();
    let puts = |w: &World| w.emulator.requests().iter().filter(|r| r.method == "PUT" && r.path.contains("/deployments/")).count();
    assert_eq!(puts(&w), 1);
    w.restart();
    w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.unwrap();
    assert_eq!(puts(&w), 1);
    w.converge::<AmlOnlineDeployment>(DEP_PATH).await;
    assert_eq!(puts(&w), 1);
}

// ---------------------------------------------------------------------------------------------
// AmlOnlineDeployment: parents, credentials, failures

#[tokio::test]
async fn a_deployment_waits_for_its_endpoint_then_goes_ahead() {
    let w = with_workspace().await;
    w.kube.put(deployment(json!({})));
    w.emulator.clear_requests();
    w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.unwrap();
    w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.unwrap();
    let ready = w.condition(DEP_PATH, "Ready").unwrap();
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("WaitingForParent")));
    assert!(ready["message"].as_str().unwrap().contains("AmlOnlineEndpoint team-a/ep1 does not exist yet"), "{ready}");
    assert!(w.emulator.requests().is_empty(), "no ARM call while waiting");

    w.kube.put(endpoint(json!({})));
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.unwrap();
    let ready = w.condition(DEP_PATH, "Ready").unwrap();
    assert!(ready["message"].as_str().unwrap().contains("is not ready yet"), "{ready}");

    w.converge::<AmlOnlineEndpoint>(EP_PATH).await;
    w.converge::<AmlOnlineDeployment>(DEP_PATH).await;
}

#[tokio::test]
async fn endpoint_and_deployment_inherit_credentials_from_the_workspace() {
    let w = World::new().await;
    w.credentials("team-sp", &Principal::default().client_secret);
    w.kube.put(workspace(json!({"credentials": {"secretName": "team-sp"}})));
    w.converge::<AmlWorkspace>(WS_PATH).await;
    w.kube.put(endpoint(json!({})));
    w.converge::<AmlOnlineEndpoint>(EP_PATH).await;
    w.kube.put(deployment(json!({})));
    w.converge::<AmlOnlineDeployment>(DEP_PATH).await;
    assert!(w.emulator.resource(&dep_id()).is_some());
    let secret_reads: Vec<_> = w.kube.calls().into_iter().filter(|c| c.path.contains("/secrets/")).map(|c| c.path).collect();
    assert!(secret_reads.iter().all(|p| p.ends_with("/team-sp")), "{secret_reads:?}");
}

#[tokio::test]
async fn a_failed_deployment_shows_the_arm_error_stalls_and_does_not_put_again() {
    let config = EmulatorConfig { operation_duration: Duration::from_secs(3600), ..support::emulator_config() };
    let w = with_workspace_in(World::with_emulator(config).await).await;
    w.kube.put(endpoint(json!({})));
    w.converge::<AmlOnlineEndpoint>(EP_PATH).await;
    w.kube.put(deployment(json!({})));
    w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.unwrap();
    w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.unwrap();
    assert_eq!(w.kube.raw(DEP_PATH).unwrap()["status"]["operation"]["action"], "Create");

    // ARM fails the deployment while the create runs.
    let quota = "Not enough quota available for Standard_DS3_v2 in SubscriptionId 11111111-2222-3333-4444-555555555555. Current usage/limit: 4/6. Additional needed: 8";
    w.emulator.update_resource(&dep_id(), |v| {
        v["properties"]["provisioningState"] = json!("Failed");
        v["properties"]["provisioningErrors"] = json!([{"error": {"code": "OutOfQuota", "message": quota}}]);
    });
    w.emulator.finish_operations();
    for _ in 0..4 {
        w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.unwrap();
    }
    let ready = w.condition(DEP_PATH, "Ready").unwrap();
    // A quota failure gets its own reason and says what to change first (issue 26).
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("QuotaExceeded")));
    let message = ready["message"].as_str().unwrap();
    assert!(message.contains(&format!("OutOfQuota: {quota}")), "{message}");
    assert!(message.starts_with("Quota: ") && message.contains("spec.instanceCount"), "{message}");
    assert_eq!(w.condition(DEP_PATH, "Stalled").unwrap()["status"], "True");
    assert_eq!(w.kube.raw(DEP_PATH).unwrap()["status"]["provisioningState"], "Failed");
    let puts = w.emulator.requests().iter().filter(|r| r.method == "PUT" && r.path.contains("/deployments/")).count();
    assert_eq!(puts, 1, "no PUT loop on a failed deployment");

    // A spec change retries.
    w.kube.edit(DEP_PATH, |o| o["spec"]["instanceType"] = json!("Standard_F4s_v2"));
    w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.unwrap();
    let puts = w.emulator.requests().iter().filter(|r| r.method == "PUT" && r.path.contains("/deployments/")).count();
    assert_eq!(puts, 2);
}

// ---------------------------------------------------------------------------------------------
// Bodies against the official examples

fn dep_target() -> Target {
    Target {
        subscription: SUBSCRIPTION.into(),
        resource_group: "rg-ml".into(),
        name: "blue".into(),
        arm_id: dep_id(),
        location: "eastus".into(),
    }
}

/// Asserts that `body` has the example's value at each pointer.
fn assert_same_at(body: &Value, example: &Value, pointers: &[&str]) {
    for p in pointers {
        let want = example.pointer(p).unwrap_or_else(|| panic!("example has no {p}"));
        assert_eq!(body.pointer(p), Some(want), "{p}: built {body:#}");
    }
}

#[test]
fn the_endpoint_body_matches_the_official_example() {
    let Some(dir) = support::specs_dir_for_tests() else { return };
    let (mut example, _) = aml_operator::armspec::load_example(&dir, "Workspace/OnlineEndpoint/createOrUpdate.json").unwrap();
    // The example's placeholder split (`{"string": 1}`) is not one ARM serves: traffic sums to 100.
    assert_eq!(example["properties"]["traffic"], json!({"string": 1}));
    example["properties"]["traffic"]["string"] = json!(100);
    let ep = endpoint(json!({
        "authMode": "AMLToken",
        "description": "string",
        "location": "string",
        "tags": {},
        "traffic": {"string": 100},
        "identity": {"type": "SystemAssigned", "userAssignedIdentities": ["string"]},
    }));
    let target = Target {
        subscription: SUBSCRIPTION.into(),
        resource_group: "rg-ml".into(),
        name: "ep1".into(),
        arm_id: ep_id(),
        location: "string".into(),
    };
    let body = ep.desired(&target).unwrap();
    assert_same_at(
        &body,
        &example,
        &["/location", "/tags", "/identity", "/properties/description", "/properties/authMode", "/properties/traffic"],
    );
    // Not modelled: `kind` and `sku` (portal metadata), `compute` (Kubernetes endpoints only), `properties`.
    for absent in ["/kind", "/sku", "/properties/compute", "/properties/properties"] {
        assert!(body.pointer(absent).is_none(), "{absent}");
    }
    let v = aml_operator::armspec::shared(&dir).unwrap();
    v.validate(AmlOnlineEndpoint::ARM_TYPE, "ep1", &body).expect("valid against the ARM schema");
}

#[test]
fn the_deployment_body_matches_the_official_example() {
    let Some(dir) = support::specs_dir_for_tests() else { return };
    let (example, _) =
        aml_operator::armspec::load_example(&dir, "OnlineDeployment/ManagedOnlineDeployment/createOrUpdate.json").unwrap();
    let props = &example["properties"];
    let d = deployment(json!({
        "description": props["description"],
        "codeConfiguration": props["codeConfiguration"],
        "environmentId": props["environmentId"],
        "environmentVariables": props["environmentVariables"],
        "scaleSettings": props["scaleSettings"],
        "requestSettings": props["requestSettings"],
        "appInsightsEnabled": props["appInsightsEnabled"],
        "livenessProbe": props["livenessProbe"],
        "readinessProbe": props["readinessProbe"],
        "startupProbe": props["startupProbe"],
        "instanceType": props["instanceType"],
        "model": props["model"],
        "modelMountPath": props["modelMountPath"],
        "instanceCount": example["sku"]["capacity"],
        "tags": example["tags"],
    }));
    let mut target = dep_target();
    target.location = "string".into();
    let body = d.desired(&target).unwrap();
    let mut pointers: Vec<String> = props
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "properties")
        .map(|k| format!("/properties/{k}"))
        .collect();
    pointers.extend(["/location", "/tags", "/sku/capacity"].map(String::from));
    assert_same_at(&body, &example, &pointers.iter().map(String::as_str).collect::<Vec<_>>());
    // Not modelled: the add-only `properties` dictionary, `kind`, `identity`; the sku name is always `Default`.
    assert_eq!(body["sku"]["name"], "Default");
    assert!(body.pointer("/properties/properties").is_none());
    let v = aml_operator::armspec::shared(&dir).unwrap();
    v.validate(AmlOnlineDeployment::ARM_TYPE, "blue", &body).expect("valid against the ARM schema");
}

/// The traffic sums the CRD checks at admission are checked again by the controller, for objects
/// that never met an API server (`plan`/`apply`): Stalled, naming the field, nothing sent to ARM.
#[tokio::test]
async fn traffic_that_does_not_sum_to_100_is_stalled_naming_the_field_without_an_arm_write() {
    for (extra, field) in [
        (json!({"traffic": {"blue": 60, "green": 30}}), "spec.traffic: the values sum to 90"),
        (json!({"traffic": {"blue": 100}, "mirrorTraffic": {"green": 51}}), "spec.mirrorTraffic: the values sum to 51"),
    ] {
        let w = with_workspace().await;
        w.kube.put(endpoint(extra));
        w.emulator.clear_requests();
        let err = w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.expect_err("invalid routing");
        assert!(matches!(err, Error::InvalidSpec(_)), "{err:?}");
        let ready = w.condition(EP_PATH, "Ready").unwrap();
        assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("InvalidSpec")));
        assert!(ready["message"].as_str().unwrap().contains(field), "{ready}");
        assert_eq!(w.condition(EP_PATH, "Stalled").unwrap()["status"], "True");
        let writes: Vec<_> = w.emulator.requests().into_iter().filter(|r| r.method != "GET").map(|r| format!("{} {}", r.method, r.path)).collect();
        assert!(writes.is_empty(), "no ARM write for an invalid spec: {writes:?}");
    }
}

/// ARM refuses to delete a deployment that still receives traffic: a deployment deleted on its own
/// while its endpoint routes to it waits (no DELETE ARM would refuse) until the endpoint's traffic
/// leaves it, then goes.
#[tokio::test]
async fn a_deployment_receiving_traffic_waits_for_the_traffic_to_leave_instead_of_a_refused_delete() {
    let w = serving_all_traffic().await;

    w.kube.delete(DEP_PATH);
    let err = w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.expect_err("waits for the traffic");
    assert!(matches!(err, Error::DeletePending { .. }), "{err:?}");
    let ready = w.condition(DEP_PATH, "Ready").unwrap();
    assert_eq!(ready["reason"], "WaitingForTrafficRemoval", "{ready}");
    assert!(ready["message"].as_str().unwrap().contains("100% of live"), "{ready}");
    assert_eq!(w.arm_calls("DELETE"), 0, "no DELETE ARM would refuse");

    // The endpoint's spec drops the deployment: it routes 0 to it, and the delete goes ahead.
    w.kube.edit(EP_PATH, |o| o["spec"]["traffic"] = json!({}));
    w.converge::<AmlOnlineEndpoint>(EP_PATH).await;
    reconcile_until_gone::<AmlOnlineDeployment>(&w, DEP_PATH).await;
    assert!(w.kube.raw(DEP_PATH).is_none());
    assert!(w.emulator.resource(&dep_id()).is_none());
    assert_no_refusals(&w);
}

/// A namespace deletion deletes an endpoint and its deployment at once: the deployment leaves its
/// deletion to the endpoint's (ARM deletes a resource's children with it) instead of a DELETE of its
/// own that ARM would refuse while traffic flows, or that the endpoint's delete would cancel.
#[tokio::test]
async fn a_deployment_deleted_with_its_endpoint_leaves_the_delete_to_the_endpoint() {
    let w = serving_all_traffic().await;

    w.kube.delete(DEP_PATH);
    w.kube.delete(EP_PATH);
    let err = w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.expect_err("waits for the endpoint");
    assert!(matches!(err, Error::DeletePending { .. }), "{err:?}");
    assert_eq!(w.condition(DEP_PATH, "Ready").unwrap()["reason"], "WaitingForParentDeletion");
    assert_eq!(w.arm_calls("DELETE"), 0);

    reconcile_until_gone::<AmlOnlineEndpoint>(&w, EP_PATH).await;
    assert!(w.kube.raw(EP_PATH).is_none());
    if w.kube.raw(DEP_PATH).is_some() {
        w.reconcile::<AmlOnlineDeployment>(DEP_PATH).await.expect("released with its endpoint");
    }
    assert!(w.kube.raw(DEP_PATH).is_none());
    assert!(w.emulator.resource(&dep_id()).is_none());
    let deletes: Vec<_> = w.emulator.requests().into_iter().filter(|r| r.method == "DELETE").map(|r| r.path).collect();
    assert_eq!(deletes.len(), 1, "one DELETE, the endpoint's: {deletes:?}");
    assert_no_refusals(&w);
}

/// An endpoint and its deployment, converged, the endpoint sending all traffic to the deployment;
/// the emulator's request log cleared.
async fn serving_all_traffic() -> World {
    let w = with_endpoint(json!({})).await;
    w.kube.put(deployment(json!({})));
    w.converge::<AmlOnlineDeployment>(DEP_PATH).await;
    w.kube.edit(EP_PATH, |o| o["spec"]["traffic"] = json!({"blue": 100}));
    w.converge::<AmlOnlineEndpoint>(EP_PATH).await;
    w.emulator.clear_requests();
    w
}

/// Reconciles the deleted object at `path` (finishing ARM operations between rounds) until
/// Kubernetes has removed it, five rounds at most.
async fn reconcile_until_gone<K: AmlKind>(w: &World, path: &str) {
    for _ in 0..5 {
        if w.kube.raw(path).is_none() {
            break;
        }
        let _ = w.reconcile::<K>(path).await;
        w.emulator.finish_operations();
    }
}

/// No request answered 4xx other than 404 (a refused request, or a poll of an operation canceled).
fn assert_no_refusals(w: &World) {
    let refused: Vec<_> = w
        .emulator
        .requests()
        .into_iter()
        .filter(|r| (400..500).contains(&r.status) && r.status != 404)
        .map(|r| format!("{} {} {}", r.status, r.method, r.path))
        .collect();
    assert!(refused.is_empty(), "ARM refused nothing: {refused:?}");
}

// ---------------------------------------------------------------------------------------------
// Declarative removal: what the manifest no longer holds is removed in Azure

fn arm_writes(w: &World) -> usize {
    ["PUT", "PATCH", "POST", "DELETE"].iter().map(|m| w.arm_calls(m)).sum()
}

fn named_deployment(name: &str, extra: Value) -> AmlOnlineDeployment {
    let mut d = deployment(extra);
    d.metadata.name = Some(name.into());
    d
}

fn dep_path(name: &str) -> String {
    format!("/apis/amloperator.io/v1alpha1/namespaces/{NS}/amlonlinedeployments/{name}")
}

/// Reconciles `path` twice more and asserts that ARM saw no write.
async fn no_more_writes<K: AmlKind>(w: &World, path: &str) {
    w.emulator.clear_requests();
    for _ in 0..2 {
        w.reconcile::<K>(path).await.expect("steady state");
    }
    assert_eq!(arm_writes(w), 0, "converged: {:?}", w.emulator.requests());
}

#[tokio::test]
async fn an_endpoint_tag_removed_from_the_spec_is_removed_in_azure_with_one_write() {
    let w = with_endpoint(json!({"tags": {"team": "a", "owner": "bob"}})).await;
    w.kube.edit(EP_PATH, |o| o["spec"]["tags"] = json!({"team": "a"}));
    w.emulator.clear_requests();
    w.converge::<AmlOnlineEndpoint>(EP_PATH).await;
    assert_eq!(arm_writes(&w), 1, "{:?}", w.emulator.requests());
    assert_eq!(w.emulator.resource(&ep_id()).unwrap()["tags"], json!({"team": "a", "amloperator.io-owner": "default/team-a/ep1"}));
    no_more_writes::<AmlOnlineEndpoint>(&w, EP_PATH).await;
}

#[tokio::test]
async fn a_mirror_entry_removed_from_the_spec_is_removed_in_azure_with_one_write() {
    let w = with_endpoint(json!({})).await;
    for name in ["blue", "green"] {
        w.kube.put(named_deployment(name, json!({})));
        w.converge::<AmlOnlineDeployment>(&dep_path(name)).await;
    }
    w.kube.edit(EP_PATH, |o| {
        o["spec"]["traffic"] = json!({"blue": 100});
        o["spec"]["mirrorTraffic"] = json!({"green": 10});
    });
    w.converge::<AmlOnlineEndpoint>(EP_PATH).await;
    assert_eq!(w.emulator.resource(&ep_id()).unwrap()["properties"]["mirrorTraffic"], json!({"green": 10}));

    w.kube.edit(EP_PATH, |o| o["spec"]["mirrorTraffic"] = json!({}));
    w.emulator.clear_requests();
    w.converge::<AmlOnlineEndpoint>(EP_PATH).await;
    assert_eq!((arm_writes(&w), w.arm_calls("PUT")), (1, 1), "{:?}", w.emulator.requests());
    let arm = w.emulator.resource(&ep_id()).unwrap();
    assert_eq!(arm["properties"]["mirrorTraffic"], json!({}), "the entry is gone, not set to 0");
    assert_eq!(arm["properties"]["traffic"], json!({"blue": 100}));
    no_more_writes::<AmlOnlineEndpoint>(&w, EP_PATH).await;
    assert!(bad_requests(&w).is_empty(), "{:?}", bad_requests(&w));

    // With no mirror traffic left, the green deployment can go.
    w.kube.delete(&dep_path("green"));
    let _ = w.reconcile::<AmlOnlineDeployment>(&dep_path("green")).await;
    w.emulator.finish_operations();
    w.reconcile::<AmlOnlineDeployment>(&dep_path("green")).await.expect("deleted");
    assert!(bad_requests(&w).is_empty(), "{:?}", bad_requests(&w));
}

#[tokio::test]
async fn a_deployment_tag_removed_from_the_spec_is_one_patch_that_replaces_the_tags() {
    let w = with_endpoint(json!({})).await;
    w.kube.put(deployment(json!({"tags": {"team": "a", "owner": "bob"}})));
    w.converge::<AmlOnlineDeployment>(DEP_PATH).await;
    w.kube.edit(DEP_PATH, |o| o["spec"]["tags"] = json!({"team": "a"}));
    w.emulator.clear_requests();
    w.converge::<AmlOnlineDeployment>(DEP_PATH).await;
    assert_eq!((w.arm_calls("PATCH"), arm_writes(&w)), (1, 1), "{:?}", w.emulator.requests());
    assert_eq!(w.emulator.resource(&dep_id()).unwrap()["tags"], json!({"team": "a", "amloperator.io-owner": "default/team-a/blue"}), "the PATCH carries the owner tag");
    no_more_writes::<AmlOnlineDeployment>(&w, DEP_PATH).await;
}

#[tokio::test]
async fn an_environment_variable_removed_from_the_spec_is_removed_in_azure_with_one_write() {
    let w = with_endpoint(json!({})).await;
    w.kube.put(deployment(json!({"environmentVariables": {"WORKERS": "4", "DEBUG": "1"}})));
    w.converge::<AmlOnlineDeployment>(DEP_PATH).await;
    w.kube.edit(DEP_PATH, |o| o["spec"]["environmentVariables"] = json!({"WORKERS": "4"}));
    w.emulator.clear_requests();
    w.converge::<AmlOnlineDeployment>(DEP_PATH).await;
    assert_eq!((w.arm_calls("PUT"), arm_writes(&w)), (1, 1), "{:?}", w.emulator.requests());
    assert_eq!(w.emulator.resource(&dep_id()).unwrap()["properties"]["environmentVariables"], json!({"WORKERS": "4"}));
    no_more_writes::<AmlOnlineDeployment>(&w, DEP_PATH).await;
}

#[tokio::test]
async fn deployment_tags_added_in_azure_stay_when_the_spec_sets_none_even_across_a_scale_patch() {
    let w = with_endpoint(json!({})).await;
    w.kube.put(deployment(json!({})));
    w.converge::<AmlOnlineDeployment>(DEP_PATH).await;
    // Added in Azure beside the operator's owner tag.
    w.emulator.update_resource(&dep_id(), |v| v["tags"]["added-by"] = json!("policy"));
    no_more_writes::<AmlOnlineDeployment>(&w, DEP_PATH).await;

    w.kube.edit(DEP_PATH, |o| o["spec"]["instanceCount"] = json!(2));
    w.emulator.clear_requests();
    w.converge::<AmlOnlineDeployment>(DEP_PATH).await;
    assert_eq!((w.arm_calls("PATCH"), arm_writes(&w)), (1, 1));
    let arm = w.emulator.resource(&dep_id()).unwrap();
    assert_eq!(arm["tags"], json!({"added-by": "policy", "amloperator.io-owner": "default/team-a/blue"}), "a map the spec never set is not touched");
    assert_eq!(arm["sku"]["capacity"], 2);
}

// ---------------------------------------------------------------------------------------------
// Keys Secret: listKeys only when needed, rotation on request

const CHECKED_AT: &str = "amloperator.io/keys-checked-at";

/// Sets the keys Secret's last check `ago` in the past.
fn checked_ago(w: &World, ago: Duration) {
    let then = k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::try_from(ago).unwrap();
    w.kube.edit(KEYS_PATH, |s| s["metadata"]["annotations"][CHECKED_AT] = json!(then.to_string()));
}

fn posts(w: &World) -> Vec<String> {
    w.emulator.requests().into_iter().filter(|r| r.method == "POST").map(|r| r.path).collect()
}

#[tokio::test]
async fn a_converged_endpoint_makes_no_list_keys_over_several_resyncs() {
    let w = with_endpoint(json!({"keysSecret": {"name": "ep1-keys"}})).await;
    let resync = w.ctx.config.resync;
    assert!(w.ctx.config.keys_refresh > resync * 4, "the default refresh is far longer than a resync");
    w.emulator.clear_requests();
    for periods in 1..=4 {
        // As if `periods` resync periods had passed since the Secret was written.
        checked_ago(&w, resync * periods + Duration::from_secs(1));
        w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.expect("steady state");
    }
    assert_eq!(posts(&w), Vec::<String>::new(), "no listKeys (a POST, an ARM write) per resync");
    assert_eq!(w.arm_calls("GET"), 4);
}

#[tokio::test]
async fn a_keys_secret_edited_by_someone_else_is_repaired_with_one_list_keys() {
    let w = with_endpoint(json!({"keysSecret": {"name": "ep1-keys"}})).await;
    let (primary, secondary) = arm_keys(&w).await;
    w.kube.edit(KEYS_PATH, |s| {
        s["data"]["primaryKey"] = json!("dGFtcGVyZWQ="); // "tampered"
        s["data"]["note"] = json!("bWluZQ=="); // someone else's key, which is left alone
    });
    w.emulator.clear_requests();

    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.expect("repaired");
    assert_eq!(posts_to(&w, "/listKeys"), 1);
    let (_, data) = keys_secret(&w).unwrap();
    assert_eq!((data["primaryKey"].as_str(), data["secondaryKey"].as_str()), (primary.as_str(), secondary.as_str()));
    assert_eq!(data.get("note").map(String::as_str), Some("mine"));

    w.emulator.clear_requests();
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.expect("steady state");
    assert_eq!(posts(&w), Vec::<String>::new(), "repaired once, trusted again");
}

#[tokio::test]
async fn the_keys_refresh_interval_triggers_one_list_keys() {
    let mut w = with_endpoint(json!({"keysSecret": {"name": "ep1-keys"}})).await;
    w.configure(|c| c.keys_refresh = Duration::from_secs(900));
    w.emulator.clear_requests();
    checked_ago(&w, Duration::from_secs(899));
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    assert_eq!(posts_to(&w, "/listKeys"), 0, "within the refresh interval");

    checked_ago(&w, Duration::from_secs(901));
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    assert_eq!(posts_to(&w, "/listKeys"), 1, "one listKeys once the interval has passed, then trusted again");
}

#[tokio::test]
async fn rotation_on_request_regenerates_secondary_then_primary_without_waiting_in_a_reconcile() {
    let slow = EmulatorConfig { operation_duration: Duration::from_secs(3600), ..support::emulator_config() };
    let mut w = with_workspace_in(World::with_emulator(slow).await).await;
    w.kube.put(endpoint(json!({"keysSecret": {"name": "ep1-keys"}})));
    w.converge::<AmlOnlineEndpoint>(EP_PATH).await;
    let (p0, s0) = arm_keys(&w).await;
    let published = |w: &World| {
        let (_, data) = keys_secret(w).unwrap();
        (data["primaryKey"].clone(), data["secondaryKey"].clone())
    };
    let annotations = |w: &World| keys_secret(w).unwrap().0.metadata.annotations.unwrap_or_default();

    w.kube.edit(EP_PATH, |o| o["metadata"]["annotations"]["amloperator.io/rotate-keys"] = json!("2024-06"));
    w.emulator.clear_requests();
    // 1. The secondary key is regenerated; the reconcile returns at once (the operation runs an hour).
    let started = std::time::Instant::now();
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "never waits for the operation");
    assert_eq!(posts(&w), vec![format!("{}/regenerateKeys", ep_id())]);
    assert_eq!(annotations(&w)["amloperator.io/keys-rotation"], "Secondary");
    assert!(annotations(&w).contains_key("amloperator.io/keys-rotation-operation"));
    // Still running: polled, nothing else.
    w.emulator.clear_requests();
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    assert_eq!(posts(&w), Vec::<String>::new());
    assert_eq!(published(&w), (p0.clone(), s0.clone()));

    // 2. Done: the new secondary is published next to the old primary (clients on either keep working).
    w.emulator.finish_operations();
    w.restart(); // progress lives in the Secret, not in the operator
    w.emulator.clear_requests();
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    let (p, s1) = published(&w);
    assert_eq!(p, p0, "the primary key is untouched while the secondary rotates");
    assert_ne!(s1, s0);
    assert_eq!(arm_keys(&w).await, (p0.clone(), s1.clone()));
    assert_eq!(annotations(&w)["amloperator.io/keys-rotation"], "Primary");

    // 3. The primary waits for the grace period (clients move to the secondary key meanwhile).
    w.emulator.clear_requests();
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    assert_eq!(posts(&w), Vec::<String>::new(), "within the grace period");
    w.configure(|c| c.keys_rotation_grace = Duration::ZERO);
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    assert_eq!(posts(&w), vec![format!("{}/regenerateKeys", ep_id())]);
    assert_eq!(published(&w), (p0.clone(), s1.clone()), "the Secret holds the new secondary while the primary rotates");

    // 4. Done: two new keys, the rotation is over and recorded.
    w.emulator.finish_operations();
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    let (p1, s) = published(&w);
    assert_ne!(p1, p0);
    assert_eq!(s, s1);
    let notes = annotations(&w);
    assert_eq!(notes["amloperator.io/keys-rotated"], "2024-06");
    let idle = |k: &str| notes.get(k).is_none_or(String::is_empty);
    assert!(idle("amloperator.io/keys-rotation") && idle("amloperator.io/keys-rotation-operation"), "{notes:?}");
    assert_eq!(arm_keys(&w).await, (p1.clone(), s1.clone()));

    // The same value does not rotate again; a new one does.
    w.emulator.clear_requests();
    for _ in 0..2 {
        w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    }
    assert_eq!(posts(&w), Vec::<String>::new(), "one value rotates once");
    w.kube.edit(EP_PATH, |o| o["metadata"]["annotations"]["amloperator.io/rotate-keys"] = json!("2024-07"));
    w.reconcile::<AmlOnlineEndpoint>(EP_PATH).await.unwrap();
    assert_eq!(posts(&w), vec![format!("{}/regenerateKeys", ep_id())]);
    assert!(bad_requests(&w).is_empty(), "{:?}", bad_requests(&w));
}
