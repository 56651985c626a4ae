//! AmlOnlineDeployment: `Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments`
//! (managed deployments).

use super::NameRule;
use super::common::*;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;


/// ARM's rule for online deployment names (checked at admission on `spec.azureName`, else `metadata.name`).
pub const NAME_RULE: NameRule = NameRule {
    what: "online deployment",
    pattern: r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$",
    explained: "1 to 255 letters, digits, '-' or '_', starting with a letter or digit",
};

/// A managed online deployment of an Azure Machine Learning online endpoint
/// (`Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "amloperator.io",
    version = "v1alpha1",
    kind = "AmlOnlineDeployment",
    namespaced,
    status = "AmlOnlineDeploymentStatus",
    shortname = "amlod",
    category = "aml",
    doc = "A managed online deployment of an AmlOnlineEndpoint, managed through ARM. See the README for credentials and policies.",
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.provisioningState"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Instances","type":"integer","jsonPath":".status.instanceCount"}"#,
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.modelRef) && has(self.model))", "message": "set at most one of modelRef or model"},
    {"rule": "!(has(self.environmentRef) && has(self.environmentId))", "message": "set at most one of environmentRef or environmentId"},
]))]
pub struct AmlOnlineDeploymentSpec {
    /// Fields every kind has: `azureName`, `credentials`, `deletionPolicy`, `managementPolicy`.
    #[serde(flatten)]
    pub common: CommonSpec,
    /// The AmlOnlineEndpoint in this namespace the deployment belongs to. Immutable.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "endpointRef is immutable"}]))]
    pub endpoint_ref: EndpointRef,

    /// Resource tags: at most 49 (Azure takes 50, one of them the operator's owner tag `amloperator.io-owner`); names up to 512 characters without `<>%&\?/`, values up to 256
    /// (Azure's limits, checked at admission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::crd::tags_schema")]
    pub tags: Option<Tags>,
    /// Description of the deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The model, as an AmlModelVersion in this namespace: the deployment waits for it to be
    /// Ready and sends its ARM id. Set this or `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_ref: Option<AssetRef>,
    /// The model, for one not managed here: the ARM id of a model version, or a registry asset id
    /// (`azureml://registries/<registry>/models/<name>/versions/<version>`). Set this or `modelRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Path the model is mounted at in a custom container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_mount_path: Option<String>,
    /// The environment (container image and dependencies), as an AmlEnvironmentVersion in this
    /// namespace: the deployment waits for it to be Ready and sends its ARM id. Set this or
    /// `environmentId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_ref: Option<AssetRef>,
    /// The environment, for one not managed here: its ARM id or a registry asset id. Set this or
    /// `environmentRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    /// The scoring code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_configuration: Option<CodeConfiguration>,
    /// VM size of the instances, e.g. `Standard_DS3_v2` (ARM's default: `Standard_F4s_v2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Number of instances (ARM `sku.capacity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub instance_count: Option<i32>,
    /// How the deployment scales: `{scaleType: Default}` (a fixed `instanceCount`) or
    /// `{scaleType: TargetUtilization, minInstances, maxInstances, ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_settings: Option<ScaleSettings>,
    /// Limits of scoring requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_settings: Option<RequestSettings>,
    /// Liveness probe of the scoring container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<ProbeSettings>,
    /// Readiness probe of the scoring container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<ProbeSettings>,
    /// Startup probe of the scoring container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<ProbeSettings>,
    /// Environment variables of the scoring container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_variables: Option<BTreeMap<String, String>>,
    /// Send logs and metrics to the workspace's Application Insights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_insights_enabled: Option<bool>,
    /// `Disabled` creates secure egress (no public network access from the deployment); default `Enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_public_network_access: Option<EnabledDisabled>,
}

/// A reference to an AmlOnlineEndpoint in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointRef {
    /// `metadata.name` of the AmlOnlineEndpoint.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The scoring code of a deployment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.codeRef) && has(self.codeId))", "message": "set at most one of codeConfiguration.codeRef or codeConfiguration.codeId"},
]))]
pub struct CodeConfiguration {
    /// The code, as an AmlCodeVersion in this namespace: the deployment waits for it to be Ready
    /// and sends its ARM id. Set this or `codeId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_ref: Option<AssetRef>,
    /// ARM id of a code version not managed here. Set this or `codeRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_id: Option<String>,
    /// Script run at startup, e.g. `score.py`.
    #[schemars(length(min = 1))]
    pub scoring_script: String,
}

/// Scaling algorithms of an online deployment.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ScaleType {
    /// A fixed number of instances (`instanceCount`).
    Default,
    /// Scale between `minInstances` and `maxInstances` on CPU utilization.
    TargetUtilization,
}

/// How a deployment scales.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.scaleType == 'TargetUtilization' || !(has(self.minInstances) || has(self.maxInstances) || has(self.pollingInterval) || has(self.targetUtilizationPercentage))",
     "message": "minInstances, maxInstances, pollingInterval and targetUtilizationPercentage need scaleType TargetUtilization"},
    {"rule": "!has(self.minInstances) || !has(self.maxInstances) || self.minInstances <= self.maxInstances",
     "message": "minInstances must not exceed maxInstances"},
]))]
pub struct ScaleSettings {
    /// `Default` or `TargetUtilization`.
    pub scale_type: ScaleType,
    /// Fewest instances (TargetUtilization).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_instances: Option<i32>,
    /// Most instances; quota is reserved for them (TargetUtilization).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_instances: Option<i32>,
    /// How often utilization is checked, ISO 8601 duration with seconds precision, e.g. `PT1M` (TargetUtilization).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polling_interval: Option<String>,
    /// Target CPU utilization percentage (TargetUtilization).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub target_utilization_percentage: Option<i32>,
}

/// Limits of scoring requests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestSettings {
    /// Concurrent requests per instance (ARM's default: 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrent_requests_per_instance: Option<i32>,
    /// Scoring timeout, ISO 8601 duration (ARM's default: 5 s), e.g. `PT5S`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<String>,
    /// Deprecated for managed endpoints: how long a request may wait in the queue, ISO 8601 duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue_wait: Option<String>,
}

/// A container probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeSettings {
    /// Failures allowed before the container is unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub failure_threshold: Option<i32>,
    /// Successes needed before the container is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub success_threshold: Option<i32>,
    /// Probe timeout, ISO 8601 duration, e.g. `PT2S`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Time between probes, ISO 8601 duration, e.g. `PT10S`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// Delay before the first probe, ISO 8601 duration, e.g. `PT10S`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<String>,
}

/// What the operator and ARM report about the deployment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmlOnlineDeploymentStatus {
    /// Fields every kind reports.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Number of instances ARM reports (`sku.capacity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_count: Option<i64>,
}

impl super::Definition for AmlOnlineDeployment {
    const NAMING: super::Naming = super::Naming::Arm(&NAME_RULE);
}
