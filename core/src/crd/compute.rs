//! AmlCompute: `Microsoft.MachineLearningServices/workspaces/computes` (AmlCompute clusters and
//! ComputeInstances).

use super::NameRule;
use super::common::*;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};



/// Optional spec fields that can be neither added nor removed after creation (ARM cannot change
/// them in place); `crd::Definition` turns each into a `has(self.x) == has(oldSelf.x)` rule.
pub const PRESENCE_IMMUTABLE: &[&str] = &["workspaceRef", "workspaceId", "location", "disableLocalAuth"];

/// ARM's rule for compute names (checked at admission on `spec.azureName`, else `metadata.name`).
pub const NAME_RULE: NameRule = NameRule {
    what: "compute",
    pattern: r"^[a-zA-Z0-9_-]{1,255}$",
    explained: "1 to 255 letters, digits, '-' or '_'",
};

/// An Azure Machine Learning compute (`Microsoft.MachineLearningServices/workspaces/computes`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "amloperator.io",
    version = "v1alpha1",
    kind = "AmlCompute",
    namespaced,
    status = "AmlComputeStatus",
    shortname = "amlc",
    category = "aml",
    doc = "An Azure Machine Learning compute (an AmlCompute cluster or a ComputeInstance) in a workspace, managed through ARM. See the README for credentials, policies and status.",
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.provisioningState"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.computeType"}"#,
    printcolumn = r#"{"name":"Nodes","type":"integer","jsonPath":".status.currentNodeCount"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.workspaceRef) != has(self.workspaceId)", "message": "set exactly one of workspaceRef or workspaceId"},
    {"rule": "self.computeType != 'AmlCompute' || (has(self.amlCompute) && !has(self.computeInstance))", "message": "computeType AmlCompute requires amlCompute and forbids computeInstance"},
    {"rule": "self.computeType != 'ComputeInstance' || (has(self.computeInstance) && !has(self.amlCompute))", "message": "computeType ComputeInstance requires computeInstance and forbids amlCompute"},
]))]
pub struct AmlComputeSpec {
    /// Fields every kind has: `azureName`, `credentials`, `deletionPolicy`, `managementPolicy`.
    #[serde(flatten)]
    pub common: CommonSpec,
    /// The AmlWorkspace (same namespace) this compute belongs to. Set this or `workspaceId`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "workspaceRef is immutable"}]))]
    pub workspace_ref: Option<WorkspaceRef>,
    /// ARM id of a workspace not managed by this operator
    /// (`/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{name}`).
    /// Set this or `workspaceRef`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "workspaceId is immutable"}]))]
    pub workspace_id: Option<String>,

    /// Azure region of the compute. Defaults to the workspace's region. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "location is immutable"}]))]
    pub location: Option<String>,
    /// Resource tags: at most 49 (Azure takes 50, one of them the operator's owner tag `amloperator.io-owner`); names up to 512 characters without `<>%&\?/`, values up to 256
    /// (Azure's limits, checked at admission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::crd::tags_schema")]
    pub tags: Option<Tags>,
    /// Managed identity of the compute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ManagedIdentity>,
    /// Description of the compute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `AmlCompute` (a cluster; set `amlCompute`) or `ComputeInstance` (set `computeInstance`). Immutable.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "computeType is immutable"}]))]
    pub compute_type: ComputeType,
    /// Disable local authentication: only Microsoft Entra identities may use the compute. Set at
    /// creation only; immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "disableLocalAuth is immutable"}]))]
    pub disable_local_auth: Option<bool>,
    /// Settings of an AmlCompute cluster (required when `computeType` is `AmlCompute`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aml_compute: Option<AmlComputeSettings>,
    /// Settings of a ComputeInstance (required when `computeType` is `ComputeInstance`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_instance: Option<ComputeInstanceSettings>,
}

/// The compute types this operator manages.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ComputeType {
    /// A managed cluster that scales between `minNodeCount` and `maxNodeCount` nodes.
    AmlCompute,
    /// A single managed virtual machine for one user or a team.
    ComputeInstance,
}

impl ComputeType {
    /// The ARM `computeType` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ComputeType::AmlCompute => "AmlCompute",
            ComputeType::ComputeInstance => "ComputeInstance",
        }
    }
}

/// Settings of an AmlCompute cluster (ARM `AmlComputeProperties`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.vmSize) == has(oldSelf.vmSize)", "message": "amlCompute.vmSize is immutable: it cannot be added or removed after creation"},
    {"rule": "has(self.vmPriority) == has(oldSelf.vmPriority)", "message": "amlCompute.vmPriority is immutable: it cannot be added or removed after creation"},
    {"rule": "has(self.osType) == has(oldSelf.osType)", "message": "amlCompute.osType is immutable: it cannot be added or removed after creation"},
    {"rule": "has(self.subnet) == has(oldSelf.subnet)", "message": "amlCompute.subnet is immutable: it cannot be added or removed after creation"},
    {"rule": "has(self.enableNodePublicIp) == has(oldSelf.enableNodePublicIp)", "message": "amlCompute.enableNodePublicIp is immutable: it cannot be added or removed after creation"},
    {"rule": "has(self.isolatedNetwork) == has(oldSelf.isolatedNetwork)", "message": "amlCompute.isolatedNetwork is immutable: it cannot be added or removed after creation"},
]))]
pub struct AmlComputeSettings {
    /// Virtual machine size, e.g. `STANDARD_DS3_V2`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "amlCompute.vmSize is immutable"}]))]
    pub vm_size: Option<String>,
    /// `Dedicated` or `LowPriority` virtual machines. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "amlCompute.vmPriority is immutable"}]))]
    pub vm_priority: Option<VmPriority>,
    /// Operating system of the nodes: `Linux` or `Windows`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "amlCompute.osType is immutable"}]))]
    pub os_type: Option<OsType>,
    /// Node counts and idle time; changed in place (one PATCH) without recreating the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_settings: Option<ScaleSettings>,
    /// Virtual network subnet the nodes join. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "amlCompute.subnet is immutable"}]))]
    pub subnet: Option<SubnetRef>,
    /// Whether the nodes get public IP addresses. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "amlCompute.enableNodePublicIp is immutable"}]))]
    pub enable_node_public_ip: Option<bool>,
    /// State of the public SSH port: `Enabled`, `Disabled` or `NotSpecified`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_login_port_public_access: Option<RemoteLoginPortPublicAccess>,
    /// Whether the network is isolated. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "amlCompute.isolatedNetwork is immutable"}]))]
    pub isolated_network: Option<bool>,
    /// Administrator account created on every node. The password and SSH key come only from a
    /// Secret in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_account_credentials: Option<UserAccountCredentials>,
}

/// Virtual machine priorities.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum VmPriority {
    /// Dedicated virtual machines.
    Dedicated,
    /// Low-priority (preemptible) virtual machines.
    LowPriority,
}

/// Node operating systems.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum OsType {
    /// Linux nodes (ARM's default).
    Linux,
    /// Windows nodes.
    Windows,
}

/// States of a cluster's public SSH port.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RemoteLoginPortPublicAccess {
    /// The port is open.
    Enabled,
    /// The port is closed.
    Disabled,
    /// Closed when the cluster is in a VNet, else open (ARM's default).
    NotSpecified,
}

/// How an AmlCompute cluster scales.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.minNodeCount) || self.minNodeCount <= self.maxNodeCount", "message": "minNodeCount must not exceed maxNodeCount"},
]))]
pub struct ScaleSettings {
    /// Largest number of nodes: at most 65000, Azure ML's ceiling for one cluster (its default
    /// limit is 100 nodes per cluster, raised on request;
    /// <https://learn.microsoft.com/azure/machine-learning/how-to-manage-quotas>). Each node counts
    /// `vmSize`'s vCPUs against the VM family's dedicated-core quota in the region.
    #[schemars(range(min = 0, max = 65000))]
    pub max_node_count: i32,
    /// Smallest number of nodes (ARM's default is 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_node_count: Option<i32>,
    /// How long a node stays idle before the cluster scales down, as an ISO-8601 duration (`PT5M`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^P(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$"))]
    pub node_idle_time_before_scale_down: Option<String>,
}

/// An ARM subnet id.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubnetRef {
    /// ARM id of the subnet
    /// (`/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/virtualNetworks/{vnet}/subnets/{subnet}`).
    #[schemars(length(min = 1))]
    pub id: String,
}

/// The administrator account of a cluster's nodes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserAccountCredentials {
    /// Name of the administrator account.
    #[schemars(length(min = 1))]
    pub admin_user_name: String,
    /// Secret key holding the administrator's SSH public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_user_ssh_public_key_secret_ref: Option<SecretKeyRef>,
    /// Secret key holding the administrator's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_user_password_secret_ref: Option<SecretKeyRef>,
}

/// Settings of a ComputeInstance (ARM `ComputeInstanceProperties`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.vmSize) == has(oldSelf.vmSize)", "message": "computeInstance.vmSize is immutable: it cannot be added or removed after creation"},
    {"rule": "has(self.subnet) == has(oldSelf.subnet)", "message": "computeInstance.subnet is immutable: it cannot be added or removed after creation"},
]))]
pub struct ComputeInstanceSettings {
    /// Virtual machine size, e.g. `STANDARD_DS3_V2`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "computeInstance.vmSize is immutable"}]))]
    pub vm_size: Option<String>,
    /// Virtual network subnet the instance joins. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "computeInstance.subnet is immutable"}]))]
    pub subnet: Option<SubnetRef>,
    /// Who may use the instance's applications: `Personal` (only the creator) or `Shared` (ARM's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_sharing_policy: Option<ApplicationSharingPolicy>,
    /// SSH access to the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_settings: Option<ComputeInstanceSshSettings>,
    /// Authorization type of the instance; only `personal` exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_instance_authorization_type: Option<ComputeInstanceAuthorizationType>,
    /// The user a personal instance is assigned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_compute_instance_settings: Option<PersonalComputeInstanceSettings>,
    /// Custom services (containers) run on the instance, in ARM's `CustomService` shape
    /// (`{name, image: {type, reference}, endpoints, volumes, environmentVariables, docker}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object_list")]
    pub custom_services: Option<Vec<serde_json::Value>>,
    /// Start/stop schedules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedules: Option<ComputeSchedules>,
    /// Scripts run when the instance is created or started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_scripts: Option<SetupScripts>,
    /// Whether the instance gets a public IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_node_public_ip: Option<bool>,
}

/// Application sharing policies of a ComputeInstance.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ApplicationSharingPolicy {
    /// Only the creator can use the applications.
    Personal,
    /// Every workspace user can, depending on their role.
    Shared,
}

/// Authorization types of a ComputeInstance.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ComputeInstanceAuthorizationType {
    /// The instance belongs to one user.
    #[serde(rename = "personal")]
    Personal,
}

/// SSH access to a ComputeInstance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputeInstanceSshSettings {
    /// Whether the public SSH port is open: `Enabled` or `Disabled` (ARM's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_public_access: Option<EnabledDisabled>,
    /// The SSH RSA public key (e.g. from `ssh-keygen -t rsa -b 2048`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_public_key: Option<String>,
}

/// Settings of a personal ComputeInstance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonalComputeInstanceSettings {
    /// The user the instance is assigned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_user: Option<AssignedUser>,
}

/// A Microsoft Entra user.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssignedUser {
    /// The user's object id.
    pub object_id: String,
    /// The user's tenant id.
    pub tenant_id: String,
}

/// Start/stop schedules of a ComputeInstance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputeSchedules {
    /// Schedules in ARM's `ComputeStartStopSchedule` shape
    /// (`{action: Start|Stop, triggerType: Recurrence|Cron, recurrence | cron, status: Enabled|Disabled}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object_list")]
    pub compute_start_stop: Option<Vec<serde_json::Value>>,
}

/// Setup scripts of a ComputeInstance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetupScripts {
    /// The scripts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scripts: Option<ScriptsToExecute>,
}

/// The scripts run on a ComputeInstance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScriptsToExecute {
    /// Run every time the instance starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_script: Option<ScriptReference>,
    /// Run once, when the instance is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_script: Option<ScriptReference>,
}

/// Where a script is and how it runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScriptReference {
    /// Storage source of the script, e.g. `workspaceStorage` or `inline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_source: Option<String>,
    /// Path of the script in the mounted volume (or the inline script).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_data: Option<String>,
    /// Command-line arguments passed to the script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_arguments: Option<String>,
    /// Time limit passed to the `timeout` command, e.g. `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// Schema of a list of free-form JSON objects kept as written (ARM shapes too rich to type here).
fn preserved_object_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "nullable": true,
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    })
}

/// What the operator and ARM report about the compute.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmlComputeStatus {
    /// Fields every kind reports.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// State of a ComputeInstance (`Creating`, `Running`, `Stopped`, `CreateFailed`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Allocation state of a cluster: `Steady` or `Resizing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_state: Option<String>,
    /// Nodes a cluster has now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_node_count: Option<i64>,
    /// Nodes a cluster is resizing to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_node_count: Option<i64>,
    /// Errors ARM reports from provisioning, as `code: message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_errors: Option<Vec<String>>,
}

impl super::Definition for AmlCompute {
    const NAMING: super::Naming = super::Naming::Arm(&NAME_RULE);
    const PRESENCE_IMMUTABLE: &'static [&'static str] = PRESENCE_IMMUTABLE;
}
