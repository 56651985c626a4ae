//! Object generators, one per kind: the benchmark creates its objects round-robin over the kinds it
//! is given, so a mixed-kind run is one more [`KindGen`] in the list.

use serde_json::{Value, json};

/// API group and version of every kind.
pub const API_VERSION: &str = "amloperator.io/v1alpha1";

/// How to make the `index`th object of one kind, and where it lands in ARM.
#[derive(Clone, Copy, Debug)]
pub struct KindGen {
    /// The kind, e.g. `AmlWorkspace`.
    pub kind: &'static str,
    /// Its plural, the collection in the API path, e.g. `amlworkspaces`.
    pub plural: &'static str,
    /// The object (apiVersion, kind, metadata.name/namespace, spec) for `(namespace, index)`.
    pub object: fn(namespace: &str, index: usize) -> Value,
    /// The ARM id the object's resource gets, for `(subscription, namespace, index)`, compared
    /// case-insensitively with the emulator's request paths.
    pub arm_id: fn(subscription: &str, namespace: &str, index: usize) -> String,
}

impl KindGen {
    /// The REST path of the collection in `namespace` (all namespaces when `None`).
    pub fn collection(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) => format!("/apis/{API_VERSION}/namespaces/{ns}/{}", self.plural),
            None => format!("/apis/{API_VERSION}/{}", self.plural),
        }
    }
}

/// `AmlWorkspace`s named `ws-00000`, `ws-00001`, … in resource group `rg-bench`.
pub const WORKSPACE: KindGen = KindGen {
    kind: "AmlWorkspace",
    plural: "amlworkspaces",
    object: workspace,
    arm_id: workspace_arm_id,
};

/// `AmlCompute` clusters named `cpu-00001`, …, each under the workspace generated just before it
/// (so it follows [`WORKSPACE`] in the list of kinds).
pub const COMPUTE: KindGen = KindGen {
    kind: "AmlCompute",
    plural: "amlcomputes",
    object: compute,
    arm_id: compute_arm_id,
};

/// Every kind the benchmark knows today, parents before the children that follow them.
pub fn all() -> Vec<KindGen> {
    vec![WORKSPACE, COMPUTE]
}

fn compute(namespace: &str, index: usize) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "AmlCompute",
        "metadata": {"name": format!("cpu-{index:05}"), "namespace": namespace},
        "spec": {
            "workspaceRef": {"name": workspace_name(index.saturating_sub(1))},
            "computeType": "AmlCompute",
            "amlCompute": {"vmSize": "STANDARD_DS3_V2", "scaleSettings": {"minNodeCount": 0, "maxNodeCount": 2}}
        }
    })
}

fn compute_arm_id(subscription: &str, namespace: &str, index: usize) -> String {
    format!("{}/computes/cpu-{index:05}", workspace_arm_id(subscription, namespace, index.saturating_sub(1)))
}

fn workspace_name(index: usize) -> String {
    format!("ws-{index:05}")
}

fn workspace(namespace: &str, index: usize) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "AmlWorkspace",
        "metadata": {"name": workspace_name(index), "namespace": namespace},
        "spec": {
            "resourceGroup": "rg-bench",
            "location": "eastus",
            // Existing dependencies, named: the benchmark measures what one object costs, not the
            // creation of a workspace's storage account and key vault.
            "storageAccount": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-bench/providers/Microsoft.Storage/storageAccounts/benchsa",
            "keyVault": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-bench/providers/Microsoft.KeyVault/vaults/bench-kv",
            "friendlyName": format!("Benchmark workspace {index}"),
            "description": "created by aml-operator bench",
            "identity": {"type": "SystemAssigned"},
            "sku": {"name": "Basic", "tier": "Basic"},
            "tags": {"purpose": "bench", "index": index.to_string()}
        }
    })
}

fn workspace_arm_id(subscription: &str, _namespace: &str, index: usize) -> String {
    format!(
        "/subscriptions/{subscription}/resourceGroups/rg-bench/providers/Microsoft.MachineLearningServices/workspaces/{}",
        workspace_name(index)
    )
}

/// Whether an object is Ready for its current generation (kstatus).
pub fn is_ready(obj: &Value) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter().any(|c| {
            c["type"] == "Ready" && c["status"] == "True" && c["observedGeneration"] == obj["metadata"]["generation"]
        })
    })
}
