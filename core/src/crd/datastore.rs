//! AmlDatastore: `Microsoft.MachineLearningServices/workspaces/datastores` — how a workspace
//! reaches a storage container (Azure Blob), an ADLS Gen2 file system or an Azure Files share. Its
//! secret (an account key, a SAS token or a service principal's client secret) comes from a key of
//! a Secret in the object's namespace, never from the spec; ARM never returns it.

use super::NameRule;
use super::assets::WorkspaceItemSpec;
use super::common::*;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// ARM's rule for datastore names (the `name` pattern mfe.json gives workspace assets).
pub const NAME_RULE: NameRule = NameRule {
    what: "datastore",
    pattern: r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$",
    explained: "1 to 255 letters, digits, '-' or '_', starting with a letter or digit",
};

/// How a storage field that cannot change reads in its CEL rule's message.
macro_rules! immutable {
    ($field:literal) => {
        concat!($field, " is immutable: the storage a datastore points at cannot change; create another datastore")
    };
}

/// A datastore of an Azure Machine Learning workspace
/// (`Microsoft.MachineLearningServices/workspaces/datastores`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "amloperator.io",
    version = "v1alpha1",
    kind = "AmlDatastore",
    namespaced,
    status = "AmlDatastoreStatus",
    shortname = "amlds",
    category = "aml",
    doc = "A datastore of an Azure Machine Learning workspace (an Azure Blob container, an ADLS Gen2 file system or an Azure Files share), managed through ARM. Its account key, SAS token or client secret comes from a key of a Secret in this namespace (storageCredentials.secretRef) and is written again whenever that key changes. See the README for credentials, policies and status.",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.datastoreType"}"#,
    printcolumn = r#"{"name":"Account","type":"string","jsonPath":".spec.accountName"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.provisioningState"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.workspaceRef) != has(self.workspaceId)", "message": "set exactly one of workspaceRef or workspaceId"},
    {"rule": "self.datastoreType != 'AzureBlob' || (has(self.containerName) && !has(self.filesystem) && !has(self.fileShareName))",
     "message": "datastoreType AzureBlob needs containerName (and no filesystem or fileShareName)"},
    {"rule": "self.datastoreType != 'AzureDataLakeGen2' || (has(self.filesystem) && !has(self.containerName) && !has(self.fileShareName))",
     "message": "datastoreType AzureDataLakeGen2 needs filesystem (and no containerName or fileShareName)"},
    {"rule": "self.datastoreType != 'AzureFile' || (has(self.fileShareName) && !has(self.containerName) && !has(self.filesystem))",
     "message": "datastoreType AzureFile needs fileShareName (and no containerName or filesystem)"},
    {"rule": "self.datastoreType == 'AzureBlob' || !(has(self.subscriptionId) || has(self.resourceGroup))",
     "message": "subscriptionId and resourceGroup are for datastoreType AzureBlob only"},
]))]
pub struct AmlDatastoreSpec {
    /// Where the datastore lives (`workspaceRef` or `workspaceId`), its `azureName` (defaults to
    /// `metadata.name`), `credentials` (the operator's service principal), the policies, and its
    /// description, tags and properties.
    #[serde(flatten)]
    pub item: WorkspaceItemSpec,
    /// `AzureBlob` (set `containerName`), `AzureDataLakeGen2` (set `filesystem`) or `AzureFile`
    /// (set `fileShareName`). Immutable.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("datastoreType")}]))]
    pub datastore_type: DatastoreType,
    /// The storage account's name. Immutable.
    #[schemars(length(min = 3, max = 24), regex(pattern = r"^[a-z0-9]{3,24}$"))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("accountName")}]))]
    pub account_name: String,
    /// The blob container (AzureBlob). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 63))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("containerName")}]))]
    pub container_name: Option<String>,
    /// The file system (AzureDataLakeGen2). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 63))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("filesystem")}]))]
    pub filesystem: Option<String>,
    /// The file share (AzureFile). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 63))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("fileShareName")}]))]
    pub file_share_name: Option<String>,
    /// The storage endpoint suffix (Azure's default: `core.windows.net`). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("endpoint")}]))]
    pub endpoint: Option<String>,
    /// The protocol (Azure's default: `https`). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("protocol")}]))]
    pub protocol: Option<String>,
    /// The storage account's subscription, when not the workspace's (AzureBlob). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("subscriptionId")}]))]
    pub subscription_id: Option<String>,
    /// The storage account's resource group, when not the workspace's (AzureBlob). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": immutable!("resourceGroup")}]))]
    pub resource_group: Option<String>,
    /// Which identity the Azure ML service uses to read the data in the studio: `None` (Azure's
    /// default), `WorkspaceSystemAssignedIdentity` or `WorkspaceUserAssignedIdentity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_data_access_auth_identity: Option<ServiceDataAccessAuthIdentity>,
    /// How the workspace authenticates to the storage.
    pub storage_credentials: StorageCredentials,
}

/// The storage types the operator registers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DatastoreType {
    /// An Azure Blob container.
    AzureBlob,
    /// An Azure Data Lake Storage Gen2 file system.
    AzureDataLakeGen2,
    /// An Azure Files share.
    AzureFile,
}

/// Identities the Azure ML service may use to read a datastore's data.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ServiceDataAccessAuthIdentity {
    /// The caller's own identity.
    None,
    /// The workspace's system-assigned identity.
    WorkspaceSystemAssignedIdentity,
    /// The workspace's user-assigned identity.
    WorkspaceUserAssignedIdentity,
}

/// The credentials types of a datastore.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum StorageCredentialsType {
    /// Identity-based access: no secret.
    None,
    /// The storage account key (`secretRef`).
    AccountKey,
    /// A SAS token (`secretRef`).
    Sas,
    /// A service principal: `clientId`, `tenantId` and its client secret (`secretRef`).
    ServicePrincipal,
}

/// How a workspace authenticates to a datastore's storage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.credentialsType == 'None' ? !has(self.secretRef) : has(self.secretRef)",
     "message": "storageCredentials.secretRef is required for AccountKey, Sas and ServicePrincipal, and not allowed for None"},
    {"rule": "self.credentialsType == 'ServicePrincipal' ? (has(self.clientId) && has(self.tenantId)) : !(has(self.clientId) || has(self.tenantId) || has(self.authorityUrl) || has(self.resourceUrl))",
     "message": "storageCredentials.clientId and tenantId are required for ServicePrincipal; clientId, tenantId, authorityUrl and resourceUrl are for ServicePrincipal only"},
]))]
pub struct StorageCredentials {
    /// `None` (identity-based access), `AccountKey`, `Sas` or `ServicePrincipal`.
    pub credentials_type: StorageCredentialsType,
    /// The key of a Secret in this namespace holding the account key, SAS token or client secret.
    /// The value is written to Azure (which never returns it) and again whenever it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// The service principal's application (client) id (ServicePrincipal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"))]
    pub client_id: Option<String>,
    /// The service principal's tenant id (ServicePrincipal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"))]
    pub tenant_id: Option<String>,
    /// The authority URL (ServicePrincipal; Azure's default: the public cloud's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_url: Option<String>,
    /// The resource the token is for (ServicePrincipal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_url: Option<String>,
}

/// What the operator and ARM report about the datastore.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmlDatastoreStatus {
    /// Fields every kind reports.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Whether this is the workspace's default datastore (ARM decides; read-only there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_default: Option<bool>,
    /// SHA-256 of the secret last written to Azure (never the secret): the operator writes again
    /// exactly when the Secret's value no longer has this digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_digest: Option<String>,
}

impl super::Definition for AmlDatastore {
    const NAMING: super::Naming = super::Naming::Arm(&NAME_RULE);
    const PRESENCE_IMMUTABLE: &'static [&'static str] = &[
        "workspaceRef",
        "workspaceId",
        "containerName",
        "filesystem",
        "fileShareName",
        "endpoint",
        "protocol",
        "subscriptionId",
        "resourceGroup",
    ];
}
