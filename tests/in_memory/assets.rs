//! Model, environment and code versions, and the deployments that use them: the Kubernetes API
//! in memory, the emulator as Azure (which refuses a deployment naming an asset it does not have).

use crate::support::{NS, World};

use aml_operator::controller::Error;
use aml_operator::crd::{AmlCodeVersion, AmlEnvironmentVersion, AmlModelVersion, AmlOnlineDeployment, AmlOnlineEndpoint, AmlWorkspace};
use serde_json::{Value, json};

const WS_ID: &str =
    "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/ws1";

fn path(plural: &str, name: &str) -> String {
    format!("/apis/amloperator.io/v1alpha1/namespaces/{NS}/{plural}/{name}")
}

fn object(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "amloperator.io/v1alpha1", "kind": kind, "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

fn model(name: &str, version: &str, extra: Value) -> Value {
    let mut spec = json!({"workspaceRef": {"name": "ws1"}, "azureName": "sklearn-model", "version": version,
        "modelUri": format!("azureml://datastores/workspaceblobstore/paths/models/sklearn/{version}/"), "modelType": "custom_model"});
    spec.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    object("AmlModelVersion", name, spec)
}

fn model_id(version: &str) -> String {
    format!("{WS_ID}/models/sklearn-model/versions/{version}")
}

fn deployment(name: &str, model: &str) -> Value {
    object(
        "AmlOnlineDeployment",
        name,
        json!({"endpointRef": {"name": "ep1"}, "modelRef": {"name": model}, "environmentRef": {"name": "sklearn-env-1"},
            "codeConfiguration": {"codeRef": {"name": "score-code-1"}, "scoringScript": "score.py"},
            "instanceType": "Standard_DS3_v2", "instanceCount": 1}),
    )
}

/// A converged workspace `ws1` and endpoint `ep1` (no traffic yet), with the environment and code
/// the deployments use, converged too.
async fn with_endpoint_and_assets() -> World {
    let w = World::new().await;
    w.good_credentials();
    w.kube.put(object("AmlWorkspace", "ws1", json!({
        "resourceGroup": "rg-ml", "location": "eastus",
        "storageAccount": "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.Storage/storageAccounts/sa1",
        "keyVault": "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.KeyVault/vaults/kv1"})));
    w.converge::<AmlWorkspace>(&path("amlworkspaces", "ws1")).await;
    w.kube.put(object("AmlOnlineEndpoint", "ep1", json!({"workspaceRef": {"name": "ws1"}, "authMode": "Key"})));
    w.converge::<AmlOnlineEndpoint>(&path("amlonlineendpoints", "ep1")).await;
    w.kube.put(object("AmlEnvironmentVersion", "sklearn-env-1", json!({"workspaceRef": {"name": "ws1"}, "azureName": "sklearn-env",
        "version": "1", "image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"})));
    w.converge::<AmlEnvironmentVersion>(&path("amlenvironmentversions", "sklearn-env-1")).await;
    w.kube.put(object("AmlCodeVersion", "score-code-1", json!({"workspaceRef": {"name": "ws1"}, "azureName": "score-code",
        "version": "1", "codeUri": "azureml://datastores/workspaceblobstore/paths/code/score/1/"})));
    w.converge::<AmlCodeVersion>(&path("amlcodeversions", "score-code-1")).await;
    w.emulator.clear_requests();
    w.kube.clear_calls();
    w
}

/// ARM writes so far (PUT, PATCH, DELETE, POST), as `METHOD path`.
fn writes(w: &World) -> Vec<String> {
    w.emulator.requests().into_iter().filter(|r| r.method != "GET").map(|r| format!("{} {}", r.method, r.path)).collect()
}

#[tokio::test]
async fn a_model_version_is_created_once_and_a_converged_one_costs_one_get() {
    let w = with_endpoint_and_assets().await;
    let p = path("amlmodelversions", "sklearn-model-1");
    w.kube.put(model("sklearn-model-1", "1", json!({"description": "first", "tags": {"team": "a"}})));
    w.converge::<AmlModelVersion>(&p).await;
    assert_eq!(writes(&w).len(), 1, "{:?}", writes(&w));
    let status = w.kube.raw(&p).unwrap()["status"].clone();
    assert_eq!(status["armId"], model_id("1"));
    assert!(status.get("location").is_none(), "assets have no location: {status}");
    let arm = w.emulator.resource(&model_id("1")).expect("in Azure");
    assert_eq!(arm["properties"]["modelUri"], "azureml://datastores/workspaceblobstore/paths/models/sklearn/1/");
    // The spec's tags, and the operator's owner tag (issue 25: one resource, one owner).
    assert_eq!(arm["properties"]["tags"], json!({"team": "a", "amloperator.io-owner": "default/team-a/sklearn-model-1"}));

    w.emulator.clear_requests();
    w.kube.clear_calls();
    for _ in 0..3 {
        w.reconcile::<AmlModelVersion>(&p).await.unwrap();
    }
    assert!(writes(&w).is_empty() && w.arm_calls("GET") == 3, "{:?}", w.emulator.requests());
    assert!(w.kube.status_writes().is_empty());

    // What a version may change in Azure changes with one PUT.
    w.kube.edit(&p, |o| o["spec"]["description"] = json!("second"));
    w.converge::<AmlModelVersion>(&p).await;
    assert_eq!(writes(&w).len(), 1, "{:?}", writes(&w));
    assert_eq!(w.emulator.resource(&model_id("1")).unwrap()["properties"]["description"], "second");
}

#[tokio::test]
async fn a_deployment_waits_for_its_model_then_sends_its_arm_id_and_a_new_version_is_one_write() {
    let w = with_endpoint_and_assets().await;
    let dep = path("amlonlinedeployments", "blue");
    w.kube.put(deployment("blue", "sklearn-model-1"));
    w.reconcile::<AmlOnlineDeployment>(&dep).await.unwrap();
    w.reconcile::<AmlOnlineDeployment>(&dep).await.unwrap();
    let ready = w.condition(&dep, "Ready").unwrap();
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("WaitingForModel")));
    assert!(ready["message"].as_str().unwrap().contains("AmlModelVersion team-a/sklearn-model-1 (spec.modelRef) does not exist yet"), "{ready}");
    assert!(w.emulator.requests().is_empty(), "no ARM call while waiting: {:?}", w.emulator.requests());

    w.kube.put(model("sklearn-model-1", "1", json!({})));
    w.converge::<AmlModelVersion>(&path("amlmodelversions", "sklearn-model-1")).await;
    w.converge::<AmlOnlineDeployment>(&dep).await;
    let arm = w.emulator.resource(&format!("{WS_ID}/onlineEndpoints/ep1/deployments/blue")).unwrap();
    assert_eq!(arm["properties"]["model"].as_str().map(str::to_ascii_lowercase), Some(model_id("1").to_ascii_lowercase()));
    assert_eq!(
        arm["properties"]["environmentId"].as_str().map(str::to_ascii_lowercase),
        Some(format!("{WS_ID}/environments/sklearn-env/versions/1").to_ascii_lowercase())
    );
    assert!(arm["properties"]["codeConfiguration"]["codeId"].as_str().unwrap().ends_with("/codes/score-code/versions/1"), "{arm}");
    assert!(arm["properties"]["codeConfiguration"].get("codeRef").is_none(), "codeRef is the operator's, not ARM's: {arm}");

    // Version 2, then the deployment switched to it: the model's PUT and the deployment's PUT.
    w.kube.put(model("sklearn-model-2", "2", json!({})));
    w.converge::<AmlModelVersion>(&path("amlmodelversions", "sklearn-model-2")).await;
    w.emulator.clear_requests();
    w.kube.edit(&dep, |o| o["spec"]["modelRef"]["name"] = json!("sklearn-model-2"));
    w.converge::<AmlOnlineDeployment>(&dep).await;
    let puts: Vec<_> = writes(&w);
    assert_eq!(puts.len(), 1, "one write switches the model: {puts:?}");
    assert!(puts[0].starts_with("PUT ") && puts[0].contains("/deployments/blue"), "{puts:?}");
    let arm = w.emulator.resource(&format!("{WS_ID}/onlineEndpoints/ep1/deployments/blue")).unwrap();
    assert!(arm["properties"]["model"].as_str().unwrap().ends_with("/models/sklearn-model/versions/2"), "{arm}");
}

#[tokio::test]
async fn a_deployment_naming_a_model_azure_does_not_have_is_refused_and_stalls_without_retrying() {
    let w = with_endpoint_and_assets().await;
    let dep = path("amlonlinedeployments", "blue");
    let mut d = deployment("blue", "unused");
    d["spec"].as_object_mut().unwrap().remove("modelRef");
    d["spec"]["model"] = json!(model_id("9"));
    w.kube.put(d);
    for _ in 0..3 {
        // Recorded like an ARM refusal a person must fix: no second PUT at this generation.
        let _ = w.reconcile::<AmlOnlineDeployment>(&dep).await;
    }
    let puts: Vec<_> = w.emulator.requests().into_iter().filter(|r| r.method == "PUT").map(|r| (r.path, r.status)).collect();
    assert_eq!(puts.len(), 1, "{puts:?}");
    assert_eq!(puts[0].1, 404, "ARM's answer to a dangling model: {puts:?}");
    let ready = w.condition(&dep, "Ready").unwrap();
    assert_eq!(ready["reason"], "AssetNotFound");
    assert!(ready["message"].as_str().unwrap().starts_with("spec.model names an asset Azure does not have"), "{ready}");
    assert_eq!(w.condition(&dep, "Stalled").unwrap()["status"], "True");
    assert!(w.emulator.resource(&format!("{WS_ID}/onlineEndpoints/ep1/deployments/blue")).is_none(), "nothing created");

    // The old quick-start example's short form, `azureml:sklearn-model:1`, in a workspace that
    // holds no such model: refused the same way (what Azure answers users of the MLOps templates).
    let old = path("amlonlinedeployments", "old-example");
    let mut d = deployment("old-example", "unused");
    let spec = d["spec"].as_object_mut().unwrap();
    spec.remove("modelRef");
    spec.insert("model".into(), json!("azureml:sklearn-model:1"));
    w.kube.put(d);
    let _ = w.reconcile::<AmlOnlineDeployment>(&old).await;
    let _ = w.reconcile::<AmlOnlineDeployment>(&old).await;
    assert_eq!(w.condition(&old, "Ready").unwrap()["reason"], "AssetNotFound");
    assert!(w.condition(&old, "Ready").unwrap()["message"].as_str().unwrap().contains("Model container with name: sklearn-model not found"));
}

#[tokio::test]
async fn deleting_a_model_a_deployment_uses_waits_for_the_deployment() {
    let w = with_endpoint_and_assets().await;
    let mp = path("amlmodelversions", "sklearn-model-1");
    let dep = path("amlonlinedeployments", "blue");
    w.kube.put(model("sklearn-model-1", "1", json!({})));
    w.converge::<AmlModelVersion>(&mp).await;
    w.kube.put(deployment("blue", "sklearn-model-1"));
    w.converge::<AmlOnlineDeployment>(&dep).await;

    w.emulator.clear_requests();
    w.kube.delete(&mp);
    let err = w.reconcile::<AmlModelVersion>(&mp).await.expect_err("waits");
    assert!(matches!(err, Error::DeletePending { gate: Some("WaitingForUsers"), .. }), "{err:?}");
    let ready = w.condition(&mp, "Ready").unwrap();
    assert_eq!(ready["reason"], "WaitingForUsers");
    assert!(ready["message"].as_str().unwrap().contains("AmlOnlineDeployment blue"), "{ready}");
    assert!(writes(&w).is_empty(), "no DELETE while a deployment uses it: {:?}", writes(&w));
    assert!(w.emulator.resource(&model_id("1")).is_some());

    // The deployment goes: the model follows with one DELETE.
    w.kube.delete(&dep);
    for _ in 0..5 {
        if w.kube.raw(&dep).is_none() {
            break;
        }
        let _ = w.reconcile::<AmlOnlineDeployment>(&dep).await;
        w.emulator.finish_operations();
    }
    assert!(w.kube.raw(&dep).is_none());
    w.emulator.clear_requests();
    w.reconcile::<AmlModelVersion>(&mp).await.expect("deleted");
    assert!(w.kube.raw(&mp).is_none());
    assert!(w.emulator.resource(&model_id("1")).is_none());
    assert_eq!(w.arm_calls("DELETE"), 1);
}

#[tokio::test]
async fn an_existing_equal_version_is_adopted_and_one_with_other_content_is_never_overwritten() {
    let w = with_endpoint_and_assets().await;
    let p = path("amlmodelversions", "sklearn-model-1");
    // Made outside Kubernetes first (az ml model create), with the same files: adopted; the one
    // write puts the owner tag on it and changes nothing else.
    w.kube.put(model("sklearn-model-1", "1", json!({"description": "first"})));
    let obj: AmlModelVersion = w.kube.get(&p).unwrap();
    let body = aml_operator::controller::AmlKind::desired(&obj, &target(&model_id("1"))).unwrap();
    w.emulator.insert_resource(&model_id("1"), body.clone());
    w.emulator.clear_requests();
    w.converge::<AmlModelVersion>(&p).await;
    assert_eq!(writes(&w).len(), 1, "{:?}", writes(&w));
    assert!(w.kube.events().iter().any(|e| e["reason"] == "Adopted"));
    let arm = w.emulator.resource(&model_id("1")).unwrap();
    assert_eq!(arm["properties"]["tags"], json!({"amloperator.io-owner": "default/team-a/sklearn-model-1"}));
    assert_eq!(arm["properties"]["modelUri"], body["properties"]["modelUri"]);
    w.emulator.clear_requests();
    w.reconcile::<AmlModelVersion>(&p).await.expect("converged");
    assert!(writes(&w).is_empty(), "tagged once, then no write: {:?}", writes(&w));

    // Version 2 exists in Azure with other files: VersionConflict, no write, stalled.
    let p2 = path("amlmodelversions", "sklearn-model-2");
    w.emulator.insert_resource(&model_id("2"), json!({"properties": {"modelUri": "https://elsewhere/model/", "modelType": "custom_model"}}));
    w.kube.put(model("sklearn-model-2", "2", json!({})));
    w.emulator.clear_requests();
    for _ in 0..3 {
        let err = w.reconcile::<AmlModelVersion>(&p2).await.expect_err("a conflict");
        assert_eq!(err.reason(), "VersionConflict");
    }
    assert!(writes(&w).is_empty(), "{:?}", writes(&w));
    let ready = w.condition(&p2, "Ready").unwrap();
    assert_eq!(ready["reason"], "VersionConflict");
    assert!(ready["message"].as_str().unwrap().contains("modelUri") && ready["message"].as_str().unwrap().contains("new spec.version"), "{ready}");
    assert_eq!(w.condition(&p2, "Stalled").unwrap()["status"], "True");
    assert_eq!(w.emulator.resource(&model_id("2")).unwrap()["properties"]["modelUri"], "https://elsewhere/model/");
}

#[tokio::test]
async fn orphan_and_observe_leave_a_version_in_azure() {
    let w = with_endpoint_and_assets().await;
    let p = path("amlmodelversions", "sklearn-model-1");
    w.kube.put(model("sklearn-model-1", "1", json!({"deletionPolicy": "Orphan"})));
    w.converge::<AmlModelVersion>(&p).await;
    w.kube.delete(&p);
    w.emulator.clear_requests();
    w.reconcile::<AmlModelVersion>(&p).await.expect("released");
    assert!(w.kube.raw(&p).is_none());
    assert!(writes(&w).is_empty());
    assert!(w.emulator.resource(&model_id("1")).is_some());

    w.kube.put(model("sklearn-model-1", "1", json!({"managementPolicy": "Observe", "description": "other"})));
    w.emulator.clear_requests();
    w.reconcile::<AmlModelVersion>(&p).await.unwrap();
    w.reconcile::<AmlModelVersion>(&p).await.unwrap();
    assert_eq!(w.condition(&p, "Ready").unwrap()["reason"], "Drifted");
    w.kube.delete(&p);
    w.reconcile::<AmlModelVersion>(&p).await.unwrap();
    assert!(w.kube.raw(&p).is_none());
    assert!(writes(&w).is_empty(), "{:?}", writes(&w));
    assert!(w.emulator.resource(&model_id("1")).is_some());
}

fn target(arm_id: &str) -> aml_operator::controller::Target {
    aml_operator::controller::Target {
        subscription: crate::support::SUBSCRIPTION.into(),
        resource_group: "rg-ml".into(),
        name: "sklearn-model".into(),
        arm_id: arm_id.into(),
        location: String::new(),
    }
}
