//! AmlWorkspace: `Microsoft.MachineLearningServices/workspaces`.

use super::NameRule;
use super::common::*;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;



/// Optional spec fields that can be neither added nor removed after creation (ARM cannot change
/// them in place); `crd::Definition` turns each into a `has(self.x) == has(oldSelf.x)` rule.
pub const PRESENCE_IMMUTABLE: &[&str] = &["subscriptionId", "storageAccount", "keyVault", "hbiWorkspace", "encryption"];

/// ARM's rule for workspace names (checked at admission on `spec.azureName`, else `metadata.name`).
pub const NAME_RULE: NameRule = NameRule {
    what: "workspace",
    pattern: r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$",
    explained: "3 to 33 letters, digits, '-' or '_', starting with a letter or digit",
};

/// An Azure Machine Learning workspace (`Microsoft.MachineLearningServices/workspaces`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "amloperator.io",
    version = "v1alpha1",
    kind = "AmlWorkspace",
    namespaced,
    status = "AmlWorkspaceStatus",
    shortname = "amlws",
    category = "aml",
    doc = "An Azure Machine Learning workspace managed through ARM. See the README for credentials, policies and status.",
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.provisioningState"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
)]
#[serde(rename_all = "camelCase")]
pub struct AmlWorkspaceSpec {
    /// Fields every kind has: `azureName`, `credentials`, `deletionPolicy`, `managementPolicy`.
    #[serde(flatten)]
    pub common: CommonSpec,
    /// Resource group that holds the workspace; it must exist. Immutable.
    #[schemars(regex(pattern = r"^[-\w\._\(\)]{1,90}$"))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "resourceGroup is immutable"}]))]
    pub resource_group: String,
    /// Subscription id; defaults to the `subscriptionId` of the credentials Secret. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "subscriptionId is immutable"}]))]
    pub subscription_id: Option<String>,
    /// Azure region, e.g. `eastus`. Immutable.
    #[schemars(length(min = 1, max = 64))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "location is immutable"}]))]
    pub location: String,

    /// Resource tags: at most 49 (Azure takes 50, one of them the operator's owner tag `amloperator.io-owner`); names up to 512 characters without `<>%&\?/`, values up to 256
    /// (Azure's limits, checked at admission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::crd::tags_schema")]
    pub tags: Option<Tags>,
    /// Workspace SKU, e.g. `{name: Basic, tier: Basic}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<Sku>,
    /// Workspace kind: `Default`, `Hub`, `Project` or `FeatureStore`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "kind is immutable"}]))]
    pub kind: Option<WorkspaceKind>,
    /// Managed identity of the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ManagedIdentity>,
    /// Display name; may be changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    /// Description of the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// ARM id of an existing storage account to use (never modified or deleted by the operator).
    /// When omitted, the operator creates one with the workspace (see `createDependencies`). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "storageAccount is immutable"}]))]
    pub storage_account: Option<String>,
    /// ARM id of an existing key vault to use (never modified or deleted by the operator). When
    /// omitted, the operator creates one with the workspace (see `createDependencies`). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "keyVault is immutable"}]))]
    pub key_vault: Option<String>,
    /// ARM id of an existing Application Insights component to use (never modified or deleted by
    /// the operator). When omitted and the operator creates the storage account or key vault, it
    /// also creates a workspace-based component and its Log Analytics workspace (see
    /// `createDependencies`); a spec naming both `storageAccount` and `keyVault` gets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_insights: Option<String>,
    /// Whether the operator creates, with the workspace, the dependencies the spec does not name:
    /// a general-purpose v2 storage account, a key vault (access-policy model, in the credentials'
    /// tenant), and a workspace-based Application Insights component with its Log Analytics
    /// workspace, all in the workspace's resource group and location. Default true. With false, a
    /// workspace to create must name `storageAccount` and `keyVault` (else `Stalled`, reason
    /// `DependencyMissing`). Only read while the workspace does not exist yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_dependencies: Option<bool>,
    /// Names for the storage account and key vault the operator creates, instead of the generated
    /// ones (the workspace name's first letters and a hash of its ARM id). These names are global
    /// in Azure: set one when the generated name is taken (reason `DependencyNameTaken`). Only read
    /// while the workspace does not exist yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency_names: Option<DependencyNames>,
    /// ARM id of the container registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_registry: Option<String>,
    /// Customer-managed key encryption. Only `keyVaultProperties.keyIdentifier` may change (key rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// High business impact workspace: reduces diagnostic data collected by the service. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "hbiWorkspace is immutable"}]))]
    pub hbi_workspace: Option<bool>,
    /// Whether requests from the public network are allowed: `Enabled` or `Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_network_access: Option<EnabledDisabled>,
    /// Allow public access when the workspace is behind a VNet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_public_access_when_behind_vnet: Option<bool>,
    /// Name of the compute used to build environment images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_build_compute: Option<String>,
    /// ARM id of the user-assigned identity that represents the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_user_assigned_identity: Option<String>,
    /// Enable v1 legacy mode (may prevent v2 API features).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v1_legacy_mode: Option<bool>,
    /// Serverless compute settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serverless_compute_settings: Option<ServerlessComputeSettings>,
    /// Settings of resources the service manages (Cosmos DB throughput).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_managed_resources_settings: Option<ServiceManagedResourcesSettings>,
    /// Shared private link resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_private_link_resources: Option<Vec<SharedPrivateLinkResource>>,
    /// Managed network settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_network: Option<ManagedNetworkSettings>,
    /// Feature store settings (for `kind: FeatureStore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_store_settings: Option<FeatureStoreSettings>,
    /// ARM ids of workspaces associated with this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub associated_workspaces: Option<Vec<String>>,
    /// Enable data isolation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_data_isolation: Option<bool>,
    /// ARM id of the hub workspace (for `kind: Project`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_resource_id: Option<String>,
    /// Hub configuration (for `kind: Hub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_hub_config: Option<WorkspaceHubConfig>,
}

/// Names of the dependencies the operator creates for a workspace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DependencyNames {
    /// Storage account name: 3 to 24 lowercase letters and digits, unique in Azure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]{3,24}$"))]
    pub storage_account: Option<String>,
    /// Key vault name: 3 to 24 letters, digits and hyphens, starting with a letter, ending with a
    /// letter or digit, without consecutive hyphens; unique in Azure, and reserved for the
    /// retention period (90 days) after its vault is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z](-?[a-zA-Z0-9])+$"), length(min = 3, max = 24))]
    pub key_vault: Option<String>,
}

/// ARM ids of the dependencies the operator created for a workspace (deleted with it under
/// `deletionPolicy: Delete`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedDependencies {
    /// The storage account (`Microsoft.Storage/storageAccounts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_account: Option<String>,
    /// The key vault (`Microsoft.KeyVault/vaults`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_vault: Option<String>,
    /// The Log Analytics workspace (`Microsoft.OperationalInsights/workspaces`) of the component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_analytics_workspace: Option<String>,
    /// The Application Insights component (`Microsoft.Insights/components`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_insights: Option<String>,
}

/// Workspace kinds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum WorkspaceKind {
    /// A regular workspace.
    Default,
    /// An Azure AI hub.
    Hub,
    /// A project under a hub.
    Project,
    /// A feature store.
    FeatureStore,
}

/// Customer-managed key encryption.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Encryption {
    /// `Enabled` or `Disabled`.
    pub status: EnabledDisabled,
    /// The user-assigned identity used to reach the key vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<EncryptionIdentity>,
    /// Where the key is.
    pub key_vault_properties: EncryptionKeyVaultProperties,
}

/// Identity used for customer-managed keys.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionIdentity {
    /// ARM id of the user-assigned identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_assigned_identity: Option<String>,
}

/// Key vault holding the customer-managed key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionKeyVaultProperties {
    /// ARM id of the key vault. Immutable.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "encryption.keyVaultProperties.keyVaultArmId is immutable"}]))]
    pub key_vault_arm_id: String,
    /// Key URI; may change to rotate the key.
    pub key_identifier: String,
    /// Client id of the identity used to reach the key vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_client_id: Option<String>,
}

/// Serverless compute settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerlessComputeSettings {
    /// ARM id of a subnet for serverless compute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serverless_compute_custom_subnet: Option<String>,
    /// Deploy serverless compute nodes without public IPs.
    #[serde(default, rename = "serverlessComputeNoPublicIP", skip_serializing_if = "Option::is_none")]
    pub serverless_compute_no_public_ip: Option<bool>,
}

/// Settings of resources the service manages.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceManagedResourcesSettings {
    /// Cosmos DB settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cosmos_db: Option<CosmosDbSettings>,
}

/// Cosmos DB settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CosmosDbSettings {
    /// Throughput of the collections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collections_throughput: Option<i32>,
}

/// A shared private link resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SharedPrivateLinkResource {
    /// Unique name of the private link.
    pub name: String,
    /// ARM id of the resource the link points at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_link_resource_id: Option<String>,
    /// Private link group id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Request message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_message: Option<String>,
    /// `Pending`, `Approved`, `Rejected`, `Disconnected` or `Timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// Managed network settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedNetworkSettings {
    /// `Disabled`, `AllowInternetOutbound` or `AllowOnlyApprovedOutbound`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation_mode: Option<IsolationMode>,
    /// Outbound rules by name, in ARM's shape (`{type: FQDN|PrivateEndpoint|ServiceTag, category, destination}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
    pub outbound_rules: Option<BTreeMap<String, serde_json::Value>>,
}

/// Managed network isolation modes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum IsolationMode {
    /// No managed network isolation.
    Disabled,
    /// Allow all internet outbound traffic.
    AllowInternetOutbound,
    /// Allow only approved outbound traffic.
    AllowOnlyApprovedOutbound,
}

/// Feature store settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeatureStoreSettings {
    /// Spark runtime version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_runtime: Option<ComputeRuntime>,
    /// Offline store connection name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_store_connection_name: Option<String>,
    /// Online store connection name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_store_connection_name: Option<String>,
}

/// Compute runtime of a feature store.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputeRuntime {
    /// Spark runtime version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spark_runtime_version: Option<String>,
}

/// Hub configuration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceHubConfig {
    /// Additional storage accounts for projects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_workspace_storage_accounts: Option<Vec<String>>,
    /// Default resource group for projects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_workspace_resource_group: Option<String>,
}

/// What the operator and ARM report about the workspace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmlWorkspaceStatus {
    /// Fields every kind reports.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The workspace's immutable GUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    /// Discovery service URL for regional endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_url: Option<String>,
    /// MLflow tracking URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ml_flow_tracking_uri: Option<String>,
    /// ARM ids of the dependencies the operator created for this workspace (recorded before each
    /// is created; deleted after the workspace under `deletionPolicy: Delete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_dependencies: Option<CreatedDependencies>,
}

impl super::Definition for AmlWorkspace {
    const NAMING: super::Naming = super::Naming::Arm(&NAME_RULE);
    const PRESENCE_IMMUTABLE: &'static [&'static str] = PRESENCE_IMMUTABLE;
}
