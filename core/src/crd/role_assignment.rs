//! AmlRoleAssignment: `Microsoft.Authorization/roleAssignments` (api-version 2022-04-01) on a
//! workspace, a compute or any ARM scope — one role for one principal.
//!
//! The assignment's ARM name is not chosen by the user: it is a GUID derived from (scope, role,
//! principal) (see [`crate::arm::ids::role_assignment_name`]), so `spec.azureName` is refused at
//! admission for this kind (see [`super::Naming::Derived`]).

use super::common::*;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};


/// Optional spec fields that can be neither added nor removed after creation (ARM cannot change
/// them in place); `crd::Definition` turns each into a `has(self.x) == has(oldSelf.x)` rule.
pub const PRESENCE_IMMUTABLE: &[&str] = &["workspaceRef", "computeRef", "scopeId", "role", "roleDefinitionId"];

/// Why `spec.azureName` is refused on this kind (the admission message).
pub const DERIVED_NAME: &str = "azureName is not used by AmlRoleAssignment: the assignment's name is a GUID derived from its scope, role and principal";

/// A GUID, any case (Entra object ids, role definition GUIDs).
pub const GUID_PATTERN: &str = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// A grant of one Azure role to one Microsoft Entra principal on a workspace, a compute or an ARM
/// scope (`Microsoft.Authorization/roleAssignments`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "amloperator.io",
    version = "v1alpha1",
    kind = "AmlRoleAssignment",
    namespaced,
    status = "AmlRoleAssignmentStatus",
    shortname = "amlra",
    category = "aml",
    doc = "An Azure role assignment (one built-in or custom role for one Microsoft Entra user, group or service principal) on a workspace, a compute or an ARM scope, managed through ARM. See the README for credentials, policies and status.",
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.provisioningState"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".spec.role"}"#,
    printcolumn = r#"{"name":"Principal","type":"string","jsonPath":".spec.principalId","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.workspaceRef) ? 1 : 0) + (has(self.computeRef) ? 1 : 0) + (has(self.scopeId) ? 1 : 0) == 1", "message": "set exactly one of workspaceRef, computeRef or scopeId"},
    {"rule": "has(self.role) != has(self.roleDefinitionId)", "message": "set exactly one of role or roleDefinitionId"},
]))]
pub struct AmlRoleAssignmentSpec {
    /// Fields every kind has: `credentials`, `deletionPolicy`, `managementPolicy`. `azureName` is
    /// refused: the assignment's name is derived from scope, role and principal.
    #[serde(flatten)]
    pub common: CommonSpec,
    /// Scope: the AmlWorkspace (same namespace) the role is granted on. Set exactly one of
    /// `workspaceRef`, `computeRef` or `scopeId`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "workspaceRef is immutable"}]))]
    pub workspace_ref: Option<WorkspaceRef>,
    /// Scope: the AmlCompute (same namespace) the role is granted on. Set exactly one of
    /// `workspaceRef`, `computeRef` or `scopeId`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "computeRef is immutable"}]))]
    pub compute_ref: Option<ComputeRef>,
    /// Scope: the ARM id of a scope not managed here — a subscription (`/subscriptions/{sub}`), a
    /// resource group, any resource, or a management group. Set exactly one of `workspaceRef`,
    /// `computeRef` or `scopeId`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1024), regex(pattern = r"^/"))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "scopeId is immutable"}]))]
    pub scope_id: Option<String>,
    /// A built-in role: `AzureMLDataScientist`, `AzureMLComputeOperator`, `AzureMLRegistryUser`,
    /// `Reader`, `Contributor` or `Owner`. Set this or `roleDefinitionId`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "role is immutable"}]))]
    pub role: Option<BuiltInRole>,
    /// A custom role: its role definition GUID, or its full ARM id
    /// (`/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}`). Set this or
    /// `role`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 36, max = 1024), regex(pattern = r"(^|/)[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "roleDefinitionId is immutable"}]))]
    pub role_definition_id: Option<String>,
    /// The Microsoft Entra object id of the user, group or service principal (not an application's
    /// client id). Immutable.
    #[schemars(length(min = 36, max = 36), regex(pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "principalId is immutable"}]))]
    pub principal_id: String,
    /// What `principalId` names: `User`, `Group` or `ServicePrincipal` (managed identities are
    /// service principals). Setting it right avoids failures right after the principal is created.
    /// Immutable.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "principalType is immutable"}]))]
    pub principal_type: PrincipalType,
    /// Why this grant exists (shown in the Azure portal). May be changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
}

/// A reference to an AmlCompute in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputeRef {
    /// `metadata.name` of the AmlCompute.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The built-in Azure roles this kind names, each mapped to its role definition GUID.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BuiltInRole {
    /// AzureML Data Scientist: every action in a workspace except creating or deleting compute and
    /// changing the workspace itself.
    #[serde(rename = "AzureMLDataScientist")]
    AzureMlDataScientist,
    /// AzureML Compute Operator: create, change and delete managed compute.
    #[serde(rename = "AzureMLComputeOperator")]
    AzureMlComputeOperator,
    /// AzureML Registry User: use the assets of an ML registry.
    #[serde(rename = "AzureMLRegistryUser")]
    AzureMlRegistryUser,
    /// Reader: view everything, change nothing.
    Reader,
    /// Contributor: manage everything except access (cannot assign roles).
    Contributor,
    /// Owner: manage everything, including access.
    Owner,
}

impl BuiltInRole {
    /// The role definition GUID (Microsoft's built-in roles page).
    pub fn guid(self) -> &'static str {
        match self {
            BuiltInRole::AzureMlDataScientist => "f6c7c914-8db3-469d-8ca1-694a8f32e121",
            BuiltInRole::AzureMlComputeOperator => "e503ece1-11d0-4e8e-8e2c-7a6c3bf38815",
            BuiltInRole::AzureMlRegistryUser => "1823dd4f-9b8c-4ab6-ab4e-7397a3684615",
            BuiltInRole::Reader => "acdd72a7-3385-48ef-bd42-f606fba81ae7",
            BuiltInRole::Contributor => "b24988ac-6180-42a0-ab88-20f7382dd24c",
            BuiltInRole::Owner => "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        }
    }

    /// Every built-in role this kind names.
    pub const ALL: [BuiltInRole; 6] = [
        BuiltInRole::AzureMlDataScientist,
        BuiltInRole::AzureMlComputeOperator,
        BuiltInRole::AzureMlRegistryUser,
        BuiltInRole::Reader,
        BuiltInRole::Contributor,
        BuiltInRole::Owner,
    ];

    /// The built-in role with this role definition GUID (any case), if it is one of [`Self::ALL`].
    pub fn from_guid(guid: &str) -> Option<BuiltInRole> {
        Self::ALL.into_iter().find(|r| r.guid().eq_ignore_ascii_case(guid))
    }
}

/// Kinds of Microsoft Entra principals.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PrincipalType {
    /// A user.
    User,
    /// A security group.
    Group,
    /// A service principal or managed identity.
    ServicePrincipal,
}

/// What the operator and ARM report about the role assignment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmlRoleAssignmentStatus {
    /// Fields every kind reports (`armId` is the role assignment's id).
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The scope ARM reports for the assignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The role definition id ARM reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_definition_id: Option<String>,
    /// Set when the same role was already granted to the same principal at the same scope under
    /// another name (by the portal, the CLI or another tool): the ARM id of that assignment, which
    /// this object adopted instead of creating a second one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted_assignment_id: Option<String>,
}

impl super::Definition for AmlRoleAssignment {
    const NAMING: super::Naming = super::Naming::Derived(DERIVED_NAME);
    const PRESENCE_IMMUTABLE: &'static [&'static str] = PRESENCE_IMMUTABLE;
}
