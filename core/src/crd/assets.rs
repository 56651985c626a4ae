//! The versioned assets of a workspace that deployments use: AmlModelVersion
//! (`workspaces/models/versions`), AmlEnvironmentVersion (`workspaces/environments/versions`) and
//! AmlCodeVersion (`workspaces/codes/versions`). One object is one version; the asset's name is
//! `spec.azureName` (else `metadata.name`) and its version `spec.version`.
//!
//! A version cannot change in Azure except its description, tags, properties, archive flag and
//! stage (FACTS 11.6): every other field is immutable at admission, so a new model is a new object
//! with a new `spec.version`.

use super::NameRule;
use super::common::*;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// ARM's rule for asset names (models, environments, code): the `name` pattern of mfe.json.
pub const NAME_RULE: NameRule = NameRule {
    what: "asset",
    pattern: r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$",
    explained: "1 to 255 letters, digits, '-' or '_', starting with a letter or digit; case-sensitive",
};

/// The fields of a workspace's data item (an asset version or a datastore), flattened into its
/// spec: where it lives, and its own description, tags and properties, which ARM keeps in the
/// body's `properties`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceItemSpec {
    /// Fields every kind has: `azureName` (the item's name in Azure; defaults to `metadata.name`),
    /// `credentials`, `deletionPolicy`, `managementPolicy`.
    #[serde(flatten)]
    pub common: CommonSpec,
    /// The AmlWorkspace (same namespace) the item belongs to. Set this or `workspaceId`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "workspaceRef is immutable"}]))]
    pub workspace_ref: Option<WorkspaceRef>,
    /// ARM id of a workspace not managed by this operator. Set this or `workspaceRef`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "workspaceId is immutable"}]))]
    pub workspace_id: Option<String>,
    /// Description. May change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The item's own tags (not ARM resource tags). May change; the object owns the whole map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Properties (string map). May change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<BTreeMap<String, String>>,
}

/// The fields every asset version has, flattened into each kind's spec.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssetSpec {
    /// Where the version lives, its description, tags and properties.
    #[serde(flatten)]
    pub item: WorkspaceItemSpec,
    /// Archived versions are hidden from Azure ML's default lists but stay usable. May change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_archived: Option<bool>,
}

/// How a version's immutable field reads in a CEL rule's message.
macro_rules! immutable {
    ($field:literal) => {
        concat!($field, " is immutable: a version cannot change in Azure; create a new object with a new spec.version")
    };
}

/// A version of a model registered in an Azure Machine Learning workspace
/// (`workspaces/models/versions`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "amloperator.io",
    version = "v1alpha1",
    kind = "AmlModelVersion",
    namespaced,
    status = "AssetStatus",
    shortname = "amlmv",
    category = "aml",
    doc = "One version of a model in an Azure Machine Learning workspace (the model's files at a URI), managed through ARM. Deployments name it in spec.modelRef. Only description, tags, properties, isArchived and stage may change. See the README for credentials, policies and status.",
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.provisioningState"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.modelType"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.workspaceRef) != has(self.workspaceId)", "message": "set exactly one of workspaceRef or workspaceId"},
    {"rule": "has(self.modelUri) != has(self.datastoreRef)", "message": "set exactly one of modelUri or datastoreRef (with path)"},
    {"rule": "has(self.datastoreRef) == has(self.path)", "message": "path goes with datastoreRef: set both or neither"},
]))]
pub struct AmlModelVersionSpec {
    /// Fields every asset version has.
    #[serde(flatten)]
    pub asset: AssetSpec,
    /// The version: a positive integer (Azure ML's rule for models), e.g. `"3"`. Immutable.
    #[schemars(length(min = 1, max = 10), regex(pattern = r"^[1-9][0-9]*$"))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("version")}]))]
    pub version: String,
    /// Where the model's files are: `azureml://datastores/<datastore>/paths/<path>`, an
    /// `https://<account>.blob.core.windows.net/<container>/<path>` URL, or
    /// `azureml://jobs/<job>/outputs/<output>/paths/<path>`. Set this, or `datastoreRef` and
    /// `path`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("modelUri")}]))]
    pub model_uri: Option<String>,
    /// The AmlDatastore (same namespace) that holds the model's files, at `path`: the version
    /// waits for it to be Ready and sends `azureml://datastores/<its name>/paths/<path>`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("datastoreRef")}]))]
    pub datastore_ref: Option<AssetRef>,
    /// The folder or file in `datastoreRef`, e.g. `models/sklearn/1/`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("path")}]))]
    pub path: Option<String>,
    /// Storage format: `custom_model` (files), `mlflow_model` (an MLflow model; no scoring script
    /// or environment needed to deploy it) or `triton_model`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("modelType")}]))]
    pub model_type: Option<ModelType>,
    /// MLflow flavors of the model: flavor name to its string data. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("flavors")}]))]
    pub flavors: Option<BTreeMap<String, Flavor>>,
    /// Name of the training job that produced the model. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("jobName")}]))]
    pub job_name: Option<String>,
    /// Stage in the model's lifecycle, e.g. `Development`, `Production`. May change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

/// A model's storage format (the values Azure ML's CLI and SDK send).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ModelType {
    /// Files in any format, served by a scoring script.
    #[serde(rename = "custom_model")]
    Custom,
    /// An MLflow model.
    #[serde(rename = "mlflow_model")]
    Mlflow,
    /// A Triton model repository.
    #[serde(rename = "triton_model")]
    Triton,
}

/// The data of one MLflow flavor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Flavor {
    /// The flavor's settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<BTreeMap<String, String>>,
}

/// A version of an environment (container image and dependencies) in an Azure Machine Learning
/// workspace (`workspaces/environments/versions`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "amloperator.io",
    version = "v1alpha1",
    kind = "AmlEnvironmentVersion",
    namespaced,
    status = "AssetStatus",
    shortname = "amlenv",
    category = "aml",
    doc = "One version of an environment (a container image, or a Docker build context, with optional conda dependencies) in an Azure Machine Learning workspace, managed through ARM. Deployments name it in spec.environmentRef. Only description, tags, properties, isArchived and stage may change. See the README for credentials, policies and status.",
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.provisioningState"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".spec.image","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.workspaceRef) != has(self.workspaceId)", "message": "set exactly one of workspaceRef or workspaceId"},
    {"rule": "has(self.image) != has(self.build)", "message": "set exactly one of image or build"},
]))]
pub struct AmlEnvironmentVersionSpec {
    /// Fields every asset version has.
    #[serde(flatten)]
    pub asset: AssetSpec,
    /// The version, e.g. `"1"` or `"2024-11-rc1"`. Immutable.
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9._\-]*$"))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("version")}]))]
    pub version: String,
    /// The container image, e.g. `mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest`. Set
    /// this or `build`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("image")}]))]
    pub image: Option<String>,
    /// A Docker build context Azure ML builds the image from. Set this or `image`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("build")}]))]
    pub build: Option<BuildContext>,
    /// The conda environment file's contents (YAML), installed on top of `image`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("condaFile")}]))]
    pub conda_file: Option<String>,
    /// Routes of a custom inference server in the image. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("inferenceConfig")}]))]
    pub inference_config: Option<InferenceConfig>,
    /// `Linux` (Azure's default) or `Windows`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("osType")}]))]
    pub os_type: Option<OsType>,
    /// Stage in the environment's lifecycle. May change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

/// A Docker build context.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildContext {
    /// URI of the context (a blob folder), e.g. `https://<account>.blob.core.windows.net/<container>/<path>/`.
    #[schemars(length(min = 1, max = 2048))]
    pub context_uri: String,
    /// Path of the Dockerfile in the context (Azure's default: `Dockerfile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile_path: Option<String>,
}

/// Routes of a custom inference server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InferenceConfig {
    /// The liveness route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_route: Option<Route>,
    /// The readiness route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_route: Option<Route>,
    /// The scoring route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scoring_route: Option<Route>,
}

/// A route of an inference server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// The path, e.g. `/score`.
    #[schemars(length(min = 1))]
    pub path: String,
    /// The port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// Operating systems of an environment.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum OsType {
    /// Linux.
    Linux,
    /// Windows.
    Windows,
}

/// A version of scoring code (already uploaded) in an Azure Machine Learning workspace
/// (`workspaces/codes/versions`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "amloperator.io",
    version = "v1alpha1",
    kind = "AmlCodeVersion",
    namespaced,
    status = "AssetStatus",
    shortname = "amlcode",
    category = "aml",
    doc = "One version of code (a folder already uploaded to blob storage) in an Azure Machine Learning workspace, managed through ARM. Deployments name it in spec.codeConfiguration.codeRef. Only description, tags, properties and isArchived may change. See the README for credentials, policies and status.",
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.provisioningState"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.workspaceRef) != has(self.workspaceId)", "message": "set exactly one of workspaceRef or workspaceId"},
]))]
pub struct AmlCodeVersionSpec {
    /// Fields every asset version has.
    #[serde(flatten)]
    pub asset: AssetSpec,
    /// The version, e.g. `"1"`. Immutable.
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9._\-]*$"))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("version")}]))]
    pub version: String,
    /// Where the code is: a blob folder URL, e.g.
    /// `https://<account>.blob.core.windows.net/<container>/<path>/`. Immutable.
    #[schemars(length(min = 1, max = 2048))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("codeUri")}]))]
    pub code_uri: String,
}

/// What the operator and ARM report about an asset version.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssetStatus {
    /// Fields every kind reports; `armId` is what a deployment that names this object sends ARM.
    #[serde(flatten)]
    pub common: CommonStatus,
}

impl super::Definition for AmlModelVersion {
    const NAMING: super::Naming = super::Naming::Arm(&NAME_RULE);
    const PRESENCE_IMMUTABLE: &'static [&'static str] =
        &["workspaceRef", "workspaceId", "modelUri", "datastoreRef", "path", "modelType", "flavors", "jobName"];
}

impl super::Definition for AmlEnvironmentVersion {
    const NAMING: super::Naming = super::Naming::Arm(&NAME_RULE);
    const PRESENCE_IMMUTABLE: &'static [&'static str] =
        &["workspaceRef", "workspaceId", "image", "build", "condaFile", "inferenceConfig", "osType"];
}

impl super::Definition for AmlCodeVersion {
    const NAMING: super::Naming = super::Naming::Arm(&NAME_RULE);
    const PRESENCE_IMMUTABLE: &'static [&'static str] = &["workspaceRef", "workspaceId"];
}
