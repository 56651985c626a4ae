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
    /// The lowercased ARM id segment of the kind's resource type (e.g. `/computes/`): a request
    /// belongs to the kind whose segment comes last in its path (see [`kind_of_path`]).
    pub arm_segment: &'static str,
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
    arm_segment: "/workspaces/",
};

/// `AmlCompute` clusters named `cpu-00001`, …, each under the workspace generated just before it
/// (so it follows [`WORKSPACE`] in the list of kinds).
pub const COMPUTE: KindGen = KindGen {
    kind: "AmlCompute",
    plural: "amlcomputes",
    object: compute,
    arm_id: compute_arm_id,
    arm_segment: "/computes/",
};

/// `AmlModelVersion`s named `model-00002`, … (version 1 of model `model-00002`), under the
/// workspace generated two places before it.
pub const MODEL: KindGen = KindGen {
    kind: "AmlModelVersion",
    plural: "amlmodelversions",
    object: model,
    arm_id: model_arm_id,
    arm_segment: "/models/",
};

/// `AmlEnvironmentVersion`s named `env-00003`, …, under the workspace generated three places before it.
pub const ENVIRONMENT: KindGen = KindGen {
    kind: "AmlEnvironmentVersion",
    plural: "amlenvironmentversions",
    object: environment,
    arm_id: environment_arm_id,
    arm_segment: "/environments/",
};

/// `AmlCodeVersion`s named `code-00004`, …, under the workspace generated four places before it.
pub const CODE: KindGen = KindGen {
    kind: "AmlCodeVersion",
    plural: "amlcodeversions",
    object: code,
    arm_id: code_arm_id,
    arm_segment: "/codes/",
};

/// `AmlOnlineEndpoint`s named `ep-00005`, …, with a keys Secret and all traffic to the deployment
/// generated just after it, under the workspace generated five places before it (so it follows
/// [`WORKSPACE`], [`COMPUTE`] and the three assets in the list of kinds, and [`DEPLOYMENT`] follows it).
pub const ENDPOINT: KindGen = KindGen {
    kind: "AmlOnlineEndpoint",
    plural: "amlonlineendpoints",
    object: endpoint,
    arm_id: endpoint_arm_id,
    arm_segment: "/onlineendpoints/",
};

/// `AmlOnlineDeployment`s named `dep-00006`, …, under the endpoint generated just before it,
/// serving the model, environment and code generated four, three and two places before it.
pub const DEPLOYMENT: KindGen = KindGen {
    kind: "AmlOnlineDeployment",
    plural: "amlonlinedeployments",
    object: deployment,
    arm_id: deployment_arm_id,
    arm_segment: "/deployments/",
};

/// `AmlRoleAssignment`s named `ra-00007`, …: Reader on the workspace generated seven places before
/// it, for a service principal of its own.
pub const ROLE_ASSIGNMENT: KindGen = KindGen {
    kind: "AmlRoleAssignment",
    plural: "amlroleassignments",
    object: role_assignment,
    arm_id: role_assignment_arm_id,
    arm_segment: "/providers/microsoft.authorization/roleassignments/",
};

/// `AmlDatastore`s named `ds-00008`, …: a blob container with identity-based access, under the
/// workspace generated eight places before it.
pub const DATASTORE: KindGen = KindGen {
    kind: "AmlDatastore",
    plural: "amldatastores",
    object: datastore,
    arm_id: datastore_arm_id,
    arm_segment: "/datastores/",
};

/// The kinds P2 to P4 create: workspaces and a compute cluster under each (one ARM write per
/// object, which is what P2's bound assumes).
pub fn all() -> Vec<KindGen> {
    vec![WORKSPACE, COMPUTE]
}

/// Every kind, in an order where each child follows its parent: what P1 measures, per kind.
pub fn every() -> Vec<KindGen> {
    vec![WORKSPACE, COMPUTE, MODEL, ENVIRONMENT, CODE, ENDPOINT, DEPLOYMENT, ROLE_ASSIGNMENT, DATASTORE]
}

/// The kind of `kinds` an ARM request path belongs to: the one whose resource-type segment comes
/// last in it (a deployment's path also holds its endpoint's and workspace's segments; an
/// endpoint's `listKeys` is the endpoint's).
pub fn kind_of_path(kinds: &[KindGen], path: &str) -> Option<&'static str> {
    let lower = path.to_ascii_lowercase();
    kinds
        .iter()
        .filter_map(|k| lower.rfind(k.arm_segment).map(|at| (at, k.kind)))
        .max_by_key(|(at, _)| *at)
        .map(|(_, kind)| kind)
}

fn endpoint_name(index: usize) -> String {
    format!("ep-{index:05}")
}

fn deployment_name(index: usize) -> String {
    format!("dep-{index:05}")
}

fn endpoint(namespace: &str, index: usize) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "AmlOnlineEndpoint",
        "metadata": {"name": endpoint_name(index), "namespace": namespace},
        "spec": {
            "workspaceRef": {"name": workspace_name(index.saturating_sub(5))},
            "authMode": "Key",
            "traffic": {deployment_name(index + 1): 100},
            "keysSecret": {"name": format!("{}-keys", endpoint_name(index))},
            "tags": {"purpose": "bench"}
        }
    })
}

fn endpoint_arm_id(subscription: &str, namespace: &str, index: usize) -> String {
    format!("{}/onlineEndpoints/{}", workspace_arm_id(subscription, namespace, index.saturating_sub(5)), endpoint_name(index))
}

fn deployment(namespace: &str, index: usize) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "AmlOnlineDeployment",
        "metadata": {"name": deployment_name(index), "namespace": namespace},
        "spec": {
            "endpointRef": {"name": endpoint_name(index.saturating_sub(1))},
            "modelRef": {"name": asset_name("model", index.saturating_sub(4))},
            "environmentRef": {"name": asset_name("env", index.saturating_sub(3))},
            "codeConfiguration": {"codeRef": {"name": asset_name("code", index.saturating_sub(2))}, "scoringScript": "score.py"},
            "instanceType": "Standard_DS3_v2",
            "instanceCount": 1,
            "environmentVariables": {"WORKERS": "2"}
        }
    })
}

fn deployment_arm_id(subscription: &str, namespace: &str, index: usize) -> String {
    format!("{}/deployments/{}", endpoint_arm_id(subscription, namespace, index.saturating_sub(1)), deployment_name(index))
}

/// A principal id per role assignment: `00000000-0000-4000-8000-<index>`.
fn principal_id(index: usize) -> String {
    format!("00000000-0000-4000-8000-{index:012}")
}

fn role_assignment(namespace: &str, index: usize) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "AmlRoleAssignment",
        "metadata": {"name": format!("ra-{index:05}"), "namespace": namespace},
        "spec": {
            "workspaceRef": {"name": workspace_name(index.saturating_sub(7))},
            "role": "Reader",
            "principalId": principal_id(index),
            "principalType": "ServicePrincipal"
        }
    })
}

fn role_assignment_arm_id(subscription: &str, namespace: &str, index: usize) -> String {
    let scope = workspace_arm_id(subscription, namespace, index.saturating_sub(7));
    let name = crate::arm::ids::role_assignment_name(&scope, &principal_id(index), crate::crd::BuiltInRole::Reader.guid());
    format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}")
}

fn asset_name(prefix: &str, index: usize) -> String {
    format!("{prefix}-{index:05}")
}

/// An asset version object `{prefix}-{index}` (version 1 of the asset of that name) under the
/// workspace `back` places before it, with the kind's own fields.
fn asset(kind: &str, prefix: &str, namespace: &str, index: usize, back: usize, fields: Value) -> Value {
    let mut spec = json!({"workspaceRef": {"name": workspace_name(index.saturating_sub(back))}, "version": "1", "description": "created by aml-operator bench"});
    if let (Value::Object(spec), Value::Object(fields)) = (&mut spec, fields) {
        spec.extend(fields);
    }
    json!({"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": asset_name(prefix, index), "namespace": namespace}, "spec": spec})
}

fn asset_arm_id(subscription: &str, namespace: &str, index: usize, back: usize, segment: &str, prefix: &str) -> String {
    format!("{}/{segment}/{}/versions/1", workspace_arm_id(subscription, namespace, index.saturating_sub(back)), asset_name(prefix, index))
}

fn model(namespace: &str, index: usize) -> Value {
    let uri = format!("azureml://datastores/workspaceblobstore/paths/bench/model-{index:05}/");
    asset("AmlModelVersion", "model", namespace, index, 2, json!({"modelUri": uri, "modelType": "custom_model"}))
}

fn model_arm_id(subscription: &str, namespace: &str, index: usize) -> String {
    asset_arm_id(subscription, namespace, index, 2, "models", "model")
}

fn environment(namespace: &str, index: usize) -> Value {
    let image = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest";
    asset("AmlEnvironmentVersion", "env", namespace, index, 3, json!({"image": image, "condaFile": "name: bench\ndependencies: [python=3.10]\n"}))
}

fn environment_arm_id(subscription: &str, namespace: &str, index: usize) -> String {
    asset_arm_id(subscription, namespace, index, 3, "environments", "env")
}

fn code(namespace: &str, index: usize) -> Value {
    let uri = format!("https://benchsa.blob.core.windows.net/code/bench/code-{index:05}/");
    asset("AmlCodeVersion", "code", namespace, index, 4, json!({"codeUri": uri}))
}

fn code_arm_id(subscription: &str, namespace: &str, index: usize) -> String {
    asset_arm_id(subscription, namespace, index, 4, "codes", "code")
}

fn datastore(namespace: &str, index: usize) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "AmlDatastore",
        "metadata": {"name": format!("ds-{index:05}"), "namespace": namespace},
        "spec": {
            "workspaceRef": {"name": workspace_name(index.saturating_sub(8))},
            "datastoreType": "AzureBlob",
            "accountName": "benchsa",
            "containerName": format!("data-{index:05}"),
            "storageCredentials": {"credentialsType": "None"}
        }
    })
}

fn datastore_arm_id(subscription: &str, namespace: &str, index: usize) -> String {
    format!("{}/datastores/ds-{index:05}", workspace_arm_id(subscription, namespace, index.saturating_sub(8)))
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
