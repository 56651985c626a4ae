//! What Azure refuses, through the operator's own pipeline against the emulator as Azure: a region
//! that does not offer the type, a VM size or instance type the region lacks, a core quota too
//! small, tags beyond ARM's limits. Each ends `Stalled=True` with `Ready=False`, a reason of its
//! own and a message that names the spec field to change; each costs one ARM write: the refusal
//! is recorded (`status.lastFailure`, class `NeedsPerson`) like a failed operation, so however
//! often the object is reconciled nothing is written again until the spec changes or the retry
//! annotation gets a new value. A change of classification fails here.


use aml_operator::controller::AmlKind;
use aml_operator::crd::{AmlCompute, AmlOnlineDeployment, AmlOnlineEndpoint, AmlWorkspace, RETRY_ANNOTATION};
use serde_json::{Value, json};
use crate::support::{NS, World};

const RG_ID: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml";

fn path(plural: &str, name: &str) -> String {
    format!("/apis/amloperator.io/v1alpha1/namespaces/{NS}/{plural}/{name}")
}

fn object<K: serde::de::DeserializeOwned>(kind: &str, name: &str, spec: Value) -> K {
    serde_json::from_value(json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": kind,
        "metadata": {"name": name, "namespace": NS}, "spec": spec,
    }))
    .expect("valid object")
}

/// A workspace naming its dependencies (so the workspace PUT itself is what ARM sees first).
fn workspace(name: &str, extra: Value) -> AmlWorkspace {
    let mut spec = json!({
        "resourceGroup": "rg-ml", "location": "eastus",
        "storageAccount": format!("{RG_ID}/providers/Microsoft.Storage/storageAccounts/sa1"),
        "keyVault": format!("{RG_ID}/providers/Microsoft.KeyVault/vaults/kv1"),
    });
    spec.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    object("AmlWorkspace", name, spec)
}

fn cluster(name: &str, vm_size: &str, max_nodes: i32) -> AmlCompute {
    object("AmlCompute", name, json!({
        "workspaceRef": {"name": "ws1"}, "computeType": "AmlCompute",
        "amlCompute": {"vmSize": vm_size, "scaleSettings": {"minNodeCount": 0, "maxNodeCount": max_nodes}},
    }))
}

async fn world() -> World {
    let w = World::new().await;
    w.good_credentials();
    w
}

/// A world with the ready workspace `ws1`; the ARM request log is cleared.
async fn with_workspace() -> World {
    let w = world().await;
    w.kube.put(workspace("ws1", json!({})));
    w.converge::<AmlWorkspace>(&path("amlworkspaces", "ws1")).await;
    w.emulator.clear_requests();
    w
}

fn writes(w: &World) -> usize {
    w.emulator.requests().iter().filter(|r| matches!(r.method.as_str(), "PUT" | "PATCH" | "DELETE")).count()
}

fn cond(w: &World, path: &str, type_: &str) -> (String, String, String) {
    let c = w.condition(path, type_).unwrap_or_default();
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    (s("status"), s("reason"), s("message"))
}

/// Reconciles (finishing ARM operations in between) until the object is Stalled, then five
/// times more (resyncs, a restarted operator); returns the error of the last reconcile, if any.
async fn until_stalled<K: AmlKind>(w: &World, path: &str) -> Option<aml_operator::controller::Error> {
    for _ in 0..8 {
        let _ = w.reconcile::<K>(path).await;
        w.emulator.finish_operations();
        if w.condition(path, "Stalled").is_some() {
            let mut last = None;
            for _ in 0..5 {
                last = w.reconcile::<K>(path).await.err();
                w.emulator.finish_operations();
            }
            return last;
        }
    }
    panic!("{path} never stalled: {:#}", w.kube.raw(path).unwrap_or_default()["status"]);
}

/// The refusal is recorded for this generation as one that needs a person.
fn assert_recorded(w: &World, path: &str, code: &str) {
    let status = w.kube.raw(path).unwrap()["status"].clone();
    assert_eq!(status["lastFailure"]["code"], code, "{status:#}");
    assert_eq!(status["lastFailure"]["class"], "NeedsPerson");
    assert_eq!(status["lastFailure"]["generation"], w.kube.raw(path).unwrap()["metadata"]["generation"]);
}

/// The object is Stalled with `reason`, Ready=False with the same reason, not Reconciling, and
/// its message holds every part of `says`.
fn assert_stalled(w: &World, path: &str, reason: &str, says: &[&str]) -> String {
    let (stalled, got, message) = cond(w, path, "Stalled");
    assert_eq!((stalled.as_str(), got.as_str()), ("True", reason), "{message}");
    let (ready, ready_reason, ready_message) = cond(w, path, "Ready");
    assert_eq!((ready.as_str(), ready_reason.as_str()), ("False", reason));
    assert_eq!(ready_message, message);
    assert!(w.condition(path, "Reconciling").is_none(), "a refusal is not retried on its own");
    for part in says {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    message
}

#[tokio::test]
async fn a_workspace_in_a_region_without_azure_ml_stalls_naming_spec_location_and_the_regions() {
    let w = world().await;
    let p = path("amlworkspaces", "ws-mars");
    w.kube.put(workspace("ws-mars", json!({"location": "mars-central"})));
    let err = until_stalled::<AmlWorkspace>(&w, &p).await;
    let message = assert_stalled(&w, &p, "LocationNotAvailable", &["spec.location", "'mars-central'", "eastus", "westeurope", "LocationNotAvailableForResourceType", RETRY_ANNOTATION]);
    assert!(message.starts_with("spec.location:"), "what to change comes first: {message}");
    assert!(err.is_none(), "a recorded refusal is not an error: {err:?}");
    assert_recorded(&w, &p, "LocationNotAvailableForResourceType");
    assert_eq!(writes(&w), 1, "one refused PUT: {:?}", w.emulator.requests().iter().map(|r| format!("{} {}", r.method, r.path)).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_workspace_from_nothing_in_a_region_without_azure_ml_stalls_on_its_first_dependency() {
    let w = world().await;
    let p = path("amlworkspaces", "ws-mars");
    w.kube.put(object::<AmlWorkspace>("AmlWorkspace", "ws-mars", json!({"resourceGroup": "rg-ml", "location": "mars-central"})));
    until_stalled::<AmlWorkspace>(&w, &p).await;
    assert_stalled(&w, &p, "LocationNotAvailable", &["spec.location", "'mars-central'", "eastus"]);
    assert_recorded(&w, &p, "LocationNotAvailableForResourceType");
    assert_eq!(writes(&w), 1, "the first dependency's PUT, refused; nothing else written");
    let posts = w.emulator.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 2, "the storage account's and key vault's name checks, once each");
    // One Warning Event, whatever the number of reconciles.
    let warnings = w.kube.events().iter().filter(|e| e["reason"] == "LocationNotAvailable").count();
    assert_eq!(warnings, 1, "{:#?}", w.kube.events());

    // The fix: delete the object (the location is immutable) and apply it again elsewhere. The
    // stalled object goes at once: nothing of it exists in Azure.
    w.kube.delete(&p);
    for _ in 0..5 {
        if w.kube.raw(&p).is_none() {
            break;
        }
        let _ = w.reconcile::<AmlWorkspace>(&p).await;
        w.emulator.finish_operations();
    }
    assert!(w.kube.raw(&p).is_none(), "the stalled workspace is deleted: {:#}", w.kube.raw(&p).unwrap_or_default()["status"]);
    w.kube.put(object::<AmlWorkspace>("AmlWorkspace", "ws-mars", json!({"resourceGroup": "rg-ml", "location": "westeurope"})));
    for _ in 0..30 {
        let _ = w.reconcile::<AmlWorkspace>(&p).await;
        w.emulator.finish_operations();
        if w.ready(&p).as_deref() == Some("True") {
            break;
        }
    }
    assert_eq!(w.ready(&p).as_deref(), Some("True"), "{:#}", w.kube.raw(&p).unwrap_or_default()["status"]);
}

#[tokio::test]
async fn a_cluster_whose_vm_size_the_region_lacks_fails_once_and_names_spec_vm_size_and_supported_sizes() {
    let w = with_workspace().await;
    let p = path("amlcomputes", "nope");
    w.kube.put(cluster("nope", "Standard_NOPE_v9", 4));
    until_stalled::<AmlCompute>(&w, &p).await;
    // Azure accepts the cluster and then fails it: the operator sees the failure and stops.
    assert_stalled(&w, &p, "VmSizeNotSupported", &[
        "spec.amlCompute.vmSize", "'Standard_NOPE_v9'", "Standard_DS3_v2", "InvalidPropertyValue", "delete the object",
    ]);
    assert_recorded(&w, &p, "InvalidPropertyValue");
    assert_eq!(w.kube.raw(&p).unwrap()["status"]["provisioningState"], "Failed");
    assert_eq!(writes(&w), 1, "one PUT, no create loop");
}

#[tokio::test]
async fn a_cluster_beyond_the_core_quota_stalls_with_the_family_region_numbers_and_how_to_get_more() {
    let w = with_workspace().await;
    let p = path("amlcomputes", "huge");
    // 300 nodes of 4 vCPUs: 1200 cores, against the emulator's default 1000 per family per region.
    w.kube.put(cluster("huge", "STANDARD_DS3_V2", 300));
    until_stalled::<AmlCompute>(&w, &p).await;
    assert_stalled(&w, &p, "QuotaExceeded", &[
        "standardDSv2Family", "eastus", "1000 of 1000 cores left", "asks for 1200",
        "spec.amlCompute.scaleSettings.maxNodeCount", "Quotas", RETRY_ANNOTATION,
    ]);
    assert_recorded(&w, &p, "QuotaExceeded");
    assert_eq!(writes(&w), 1);

    // A person asks for a retry (the emulator's quota is fixed at start, so it is refused again):
    // exactly one write for the new annotation value, then stalled again.
    w.kube.edit(&p, |o| o["metadata"]["annotations"] = json!({RETRY_ANNOTATION: "quota-raised"}));
    until_stalled::<AmlCompute>(&w, &p).await;
    assert_eq!(writes(&w), 2, "one write for the annotation value");
    assert_eq!(w.kube.raw(&p).unwrap()["status"]["retryToken"], "quota-raised");

    // The person lowers maxNodeCount: one write, and it converges.
    w.kube.edit(&p, |o| o["spec"]["amlCompute"]["scaleSettings"]["maxNodeCount"] = json!(200));
    w.converge::<AmlCompute>(&p).await;
    assert_eq!(writes(&w), 3);
    assert!(w.condition(&p, "Stalled").is_none());
}

#[tokio::test]
async fn tags_beyond_arms_limits_stall_naming_spec_tags() {
    // The API server refuses these at admission (see cel_rules and e2e); `plan`/`apply` and a
    // cluster without the CRD's schema reach Azure, which refuses them.
    let w = world().await;
    let p = path("amlworkspaces", "ws-tags");
    let tags: serde_json::Map<String, Value> = (0..60).map(|i| (format!("tag{i}"), json!("v"))).collect();
    w.kube.put(workspace("ws-tags", json!({"tags": tags})));
    until_stalled::<AmlWorkspace>(&w, &p).await;
    assert_stalled(&w, &p, "InvalidTags", &["spec.tags", "at most 50 tags", "512", "256", "InvalidTagCount"]);
    assert_recorded(&w, &p, "InvalidTagCount");
    assert_eq!(writes(&w), 1);
}

#[tokio::test]
async fn a_deployment_whose_instance_type_the_region_lacks_stalls_naming_spec_instance_type() {
    let w = with_workspace().await;
    let ep = path("amlonlineendpoints", "ep1");
    w.kube.put(object::<AmlOnlineEndpoint>("AmlOnlineEndpoint", "ep1", json!({"workspaceRef": {"name": "ws1"}, "authMode": "Key"})));
    w.converge::<AmlOnlineEndpoint>(&ep).await;
    w.emulator.clear_requests();
    let p = path("amlonlinedeployments", "blue");
    w.kube.put(object::<AmlOnlineDeployment>("AmlOnlineDeployment", "blue", json!({
        "endpointRef": {"name": "ep1"}, "model": "azureml://registries/azureml/models/m/versions/1", "instanceType": "Standard_NOPE_v9", "instanceCount": 1,
    })));
    until_stalled::<AmlOnlineDeployment>(&w, &p).await;
    assert_stalled(&w, &p, "VmSizeNotSupported", &["spec.instanceType", "'Standard_NOPE_v9'", "Standard_DS3_v2", "BadArgument"]);
    assert_recorded(&w, &p, "BadArgument");
    assert_eq!(writes(&w), 1);

    // A supported size (any case, as in Azure): it converges.
    w.kube.edit(&p, |o| o["spec"]["instanceType"] = json!("standard_ds3_v2"));
    w.converge::<AmlOnlineDeployment>(&p).await;
}
