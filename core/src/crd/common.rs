//! Types shared by every kind: references, policies, identity and the common status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// API group of every kind.
pub const GROUP: &str = "amloperator.io";
/// API version of every kind.
pub const VERSION: &str = "v1alpha1";
/// Finalizer that keeps an object until its Azure resource is gone (or released).
pub const FINALIZER: &str = "amloperator.io/finalizer";
/// Name of the Secret used when `credentials.secretName` is not set.
pub const DEFAULT_CREDENTIALS_SECRET: &str = "aml-credentials";

/// Condition types, kstatus-compatible.
pub mod condition {
    /// The Azure resource matches the spec and ARM reports it usable.
    pub const READY: &str = "Ready";
    /// An ARM operation is in flight.
    pub const RECONCILING: &str = "Reconciling";
    /// Progress needs a person (credentials, permissions, quota, invalid spec).
    pub const STALLED: &str = "Stalled";
}

/// The spec fields every kind has, flattened into each kind's spec (`spec.azureName`,
/// `spec.credentials`, `spec.deletionPolicy`, `spec.managementPolicy`).
///
/// The kind's ARM name rule is added to `azureName` when the CRD is generated (see
/// [`super::NameRule`]), with a rule on the object that checks `metadata.name` when `azureName` is
/// not set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonSpec {
    /// Name of the resource in Azure. Defaults to `metadata.name`. Immutable. Must follow the
    /// kind's ARM name rule (the API server says which when it refuses a name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 260))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "azureName is immutable"}]))]
    pub azure_name: Option<String>,
    /// Secret with the service principal to use (see README, "Credentials"). Children default to
    /// their parent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsRef>,
    /// What deleting this object does in Azure: `Delete` (default) or `Orphan`. May be changed at any
    /// time, also while the object is being deleted (to release a stuck delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// `Manage` (default) writes to Azure; `Observe` only reads and reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_policy: Option<ManagementPolicy>,
}

/// Which Secret holds the service principal used for this object.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRef {
    /// Name of a Secret in the object's namespace with keys `tenantId`, `clientId`, `clientSecret`
    /// and `subscriptionId`. When `credentials` is omitted the Secret `aml-credentials` in the same
    /// namespace is used, else the operator-wide default.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// A reference to an AmlWorkspace in the same namespace (for computes and endpoints).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceRef {
    /// `metadata.name` of the AmlWorkspace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// One key of a Secret in the object's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret (in the object's namespace).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// A reference to an object another uses in the same namespace (a deployment's AmlModelVersion,
/// AmlEnvironmentVersion and AmlCodeVersion; a model version's AmlDatastore).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssetRef {
    /// `metadata.name` of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// What deleting the Kubernetes object does to the Azure resource.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the Azure resource and keep the object until ARM says it is gone (the default).
    #[default]
    Delete,
    /// Leave the Azure resource in place and release the object at once.
    Orphan,
}

/// Whether the operator may write to Azure.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ManagementPolicy {
    /// Create, update and delete the Azure resource to match the spec (the default).
    #[default]
    Manage,
    /// Never write to ARM: only read the resource and report it in status.
    Observe,
}

/// ARM managed identity types.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum IdentityType {
    /// No managed identity.
    None,
    /// A system-assigned identity.
    SystemAssigned,
    /// The identities listed in `userAssignedIdentities`.
    UserAssigned,
    /// Both a system-assigned identity and the listed user-assigned ones.
    #[serde(rename = "SystemAssigned,UserAssigned")]
    SystemAndUserAssigned,
}

/// The managed identity of an Azure resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedIdentity {
    /// Identity type: None, SystemAssigned, UserAssigned or "SystemAssigned,UserAssigned".
    #[serde(rename = "type")]
    pub type_: IdentityType,
    /// ARM ids of user-assigned identities
    /// (`/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_assigned_identities: Option<Vec<String>>,
}

impl ManagedIdentity {
    /// The ARM body form: user-assigned identities become a map of id to `{}`.
    pub fn to_arm(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "type": self.type_ });
        if let Some(ids) = &self.user_assigned_identities {
            let map: serde_json::Map<String, serde_json::Value> =
                ids.iter().map(|id| (id.clone(), serde_json::json!({}))).collect();
            v["userAssignedIdentities"] = serde_json::Value::Object(map);
        }
        v
    }
}

/// An ARM SKU.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sku {
    /// SKU name, e.g. `Basic`.
    pub name: String,
    /// SKU tier: Free, Basic, Standard or Premium.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<SkuTier>,
    /// SKU size, where the service has sizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// SKU family, where the service has hardware generations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// Capacity, where the SKU scales out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<i32>,
}

/// ARM SKU tiers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SkuTier {
    /// Free tier.
    Free,
    /// Basic tier.
    Basic,
    /// Standard tier.
    Standard,
    /// Premium tier.
    Premium,
}

/// Enabled or Disabled.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum EnabledDisabled {
    /// Enabled.
    Enabled,
    /// Disabled.
    Disabled,
}

/// Free-form tags, as ARM takes them.
pub type Tags = BTreeMap<String, String>;

/// Most tags a spec may set: ARM takes 50 on a resource
/// (<https://learn.microsoft.com/azure/azure-resource-manager/management/tag-resources#limitations>),
/// and one of them is the operator's owner tag (`controller::owner`).
pub const MAX_TAGS: u32 = 49;
/// Longest tag name ARM takes (same source).
pub const MAX_TAG_NAME: u32 = 512;
/// Longest tag value ARM takes (same source).
pub const MAX_TAG_VALUE: u32 = 256;

/// Schema of `spec.tags` on every kind that has tags: ARM's limits, refused at admission. The
/// count and the value length are plain schema (`maxProperties`, `maxLength`: no CEL cost); the
/// name rules need CEL, which a structural schema allows on map keys only this way. Their cost is
/// bounded by `maxProperties`, and the character check runs on names already known to be short.
pub fn tags_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "maxProperties": MAX_TAGS,
        "additionalProperties": {"type": "string", "maxLength": MAX_TAG_VALUE},
        "x-kubernetes-validations": [
            {
                "rule": format!("self.all(k, size(k) <= {MAX_TAG_NAME})"),
                "message": format!("tag names must be at most {MAX_TAG_NAME} characters (Azure's limit)"),
            },
            {
                "rule": r"self.all(k, !k.matches('[<>%&\\\\?/]'))",
                "message": r"tag names must not contain any of < > % & \ ? / (Azure refuses them)",
            },
        ],
    })
}

/// The ARM long-running operation the operator is waiting for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationStatus {
    /// URL polled for the result (from `Azure-AsyncOperation` or `Location`).
    pub url: String,
    /// Which header the URL came from: `AsyncOperation` or `Location`.
    pub kind: String,
    /// What the operation does: `Create`, `Update` or `Delete`.
    pub action: String,
    /// When the operation was started.
    pub started: Time,
    /// Seconds ARM asked to wait between polls (`Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

/// Annotation that retries, once per new value, an object stalled on an ARM operation failure that
/// needs a person (`Stalled=True`, reason `ArmOperationFailed`), without a spec edit: set it to any
/// value not used before (e.g. a date). The value acted on is recorded in `status.retryToken`.
pub const RETRY_ANNOTATION: &str = "amloperator.io/retry";

/// An ARM operation that failed (or a resource ARM reported `Failed`/`Canceled`), and what the
/// operator does about it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureStatus {
    /// ARM's error code, e.g. `InternalServerError` or `QuotaExceeded`.
    pub code: String,
    /// `Transient`: retried automatically with backoff; `NeedsPerson`: waits for a spec edit or
    /// the `amloperator.io/retry` annotation.
    pub class: String,
    /// The `metadata.generation` the failure happened at; a spec edit makes it stale.
    pub generation: i64,
    /// Automatic retries made at this generation so far.
    #[serde(default)]
    pub retries: u32,
    /// When the next automatic retry is due (transient failures only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry: Option<Time>,
}

/// The JSON names of [`CommonStatus`]'s fields: the rest of a kind's status is its outputs.
/// (`common_status_fields_match_the_struct` keeps the two in step.)
pub const COMMON_STATUS_FIELDS: &[&str] =
    &[
        "provisioningState",
        "armId",
        "credentialsSecret",
        "location",
        "observedGeneration",
        "conditions",
        "operation",
        "lastFailure",
        "retryToken",
    ];

/// Status fields every kind has.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonStatus {
    /// ARM's `provisioningState`, verbatim (`Creating`, `Updating`, `Succeeded`, `Failed`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// The ARM resource id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arm_id: Option<String>,
    /// Name of the credentials Secret in this namespace the operator used (omitted when the
    /// operator-wide default was used). The operator keeps that Secret, via a finalizer, until no
    /// object needs it, so deleting a namespace cannot orphan Azure resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// The Azure region of the resource (children inherit it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled` conditions (kstatus).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The ARM long-running operation in flight, if any. A restarted operator resumes polling it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<OperationStatus>,
    /// The last ARM operation failure at the current generation, while the operator retries it
    /// (transient) or waits for a person; cleared once the resource matches the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<FailureStatus>,
    /// The value of the `amloperator.io/retry` annotation the operator last acted on: a value is
    /// acted on once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_status_fields_match_the_struct() {
        let schema = serde_json::to_value(schemars::schema_for!(CommonStatus)).expect("schema");
        let mut fields: Vec<&str> = schema["properties"].as_object().expect("properties").keys().map(String::as_str).collect();
        let mut listed = COMMON_STATUS_FIELDS.to_vec();
        fields.sort_unstable();
        listed.sort_unstable();
        assert_eq!(fields, listed);
    }
}
