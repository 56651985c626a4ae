//! AmlOnlineEndpoint: `Microsoft.MachineLearningServices/workspaces/onlineEndpoints`.

use super::NameRule;
use super::common::*;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;



/// Optional spec fields that can be neither added nor removed after creation (ARM cannot change
/// them in place); `crd::Definition` turns each into a `has(self.x) == has(oldSelf.x)` rule.
pub const PRESENCE_IMMUTABLE: &[&str] = &["workspaceRef", "workspaceId", "location"];

/// ARM's rule for online endpoint names (checked at admission on `spec.azureName`, else `metadata.name`).
pub const NAME_RULE: NameRule = NameRule {
    what: "online endpoint",
    pattern: r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$",
    explained: "1 to 255 letters, digits, '-' or '_', starting with a letter or digit",
};

/// An Azure Machine Learning managed online endpoint
/// (`Microsoft.MachineLearningServices/workspaces/onlineEndpoints`).
///
/// `traffic` and `mirrorTraffic` are checked in the API server with CEL: the traffic percentages sum
/// to 100 (or the map is empty) and the mirrored ones to at most 50; both maps are bounded to 20
/// entries (ARM's deployments-per-endpoint limit). The operator checks the same sums, so an object
/// that never passed admission (`aml-operator plan` and `apply`) gets `Stalled` with reason
/// `InvalidSpec` naming the field.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "amloperator.io",
    version = "v1alpha1",
    kind = "AmlOnlineEndpoint",
    namespaced,
    status = "AmlOnlineEndpointStatus",
    shortname = "amloe",
    category = "aml",
    doc = "An Azure Machine Learning managed online endpoint managed through ARM. See the README for credentials, policies, traffic and the keys Secret.",
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.provisioningState"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"ScoringURI","type":"string","jsonPath":".status.scoringUri","priority":1}"#,
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.workspaceRef) != has(self.workspaceId)", "message": "set exactly one of workspaceRef and workspaceId"},
]))]
pub struct AmlOnlineEndpointSpec {
    /// Fields every kind has: `azureName`, `credentials`, `deletionPolicy`, `managementPolicy`.
    #[serde(flatten)]
    pub common: CommonSpec,
    /// The AmlWorkspace in this namespace that holds the endpoint. Set this or `workspaceId`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "workspaceRef is immutable"}]))]
    pub workspace_ref: Option<WorkspaceRef>,
    /// ARM id of a workspace not managed here
    /// (`/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{name}`).
    /// Set this or `workspaceRef`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "workspaceId is immutable"}]))]
    pub workspace_id: Option<String>,
    /// Azure region; defaults to the workspace's. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "location is immutable"}]))]
    pub location: Option<String>,

    /// Resource tags: at most 49 (Azure takes 50, one of them the operator's owner tag `amloperator.io-owner`); names up to 512 characters without `<>%&\?/`, values up to 256
    /// (Azure's limits, checked at admission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::crd::tags_schema")]
    pub tags: Option<Tags>,
    /// Managed identity of the endpoint (used to pull images and models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ManagedIdentity>,
    /// Description of the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// How callers authenticate to the scoring URI: `Key`, `AMLToken` or `AADToken`. Immutable.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "authMode is immutable"}]))]
    pub auth_mode: AuthMode,
    /// Percentage of live traffic per deployment name (0..100); the values sum to 100, or the map is
    /// empty. Deployments that do not exist yet are routed once they have succeeded; until then the
    /// endpoint reports `WaitingForDeployments`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend(
        "additionalProperties" = {"type": "integer", "format": "int32", "minimum": 0, "maximum": 100},
        "maxProperties" = MAX_DEPLOYMENTS,
        "x-kubernetes-validations" = [{"rule": format!("self.size() == 0 || {}", sum_rule("== 100")), "message": "traffic values must sum to 100 (or traffic must be empty)"}]
    ))]
    pub traffic: Option<BTreeMap<String, i32>>,
    /// Percentage of traffic mirrored to each deployment name (0..100), without returning its
    /// answers; the values sum to at most 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend(
        "additionalProperties" = {"type": "integer", "format": "int32", "minimum": 0, "maximum": 100},
        "maxProperties" = MAX_DEPLOYMENTS,
        "x-kubernetes-validations" = [{"rule": sum_rule("<= 50"), "message": "mirrorTraffic values must sum to at most 50"}]
    ))]
    pub mirror_traffic: Option<BTreeMap<String, i32>>,
    /// Whether the scoring URI accepts requests from the public network: `Enabled` or `Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_network_access: Option<EnabledDisabled>,
    /// Write the scoring URI (and, for `authMode: Key`, the keys) into this Secret, owned by the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_secret: Option<KeysSecret>,
}

/// Most deployments an endpoint routes to (ARM's deployments-per-endpoint limit): the bound of
/// `traffic` and `mirrorTraffic`.
pub const MAX_DEPLOYMENTS: usize = 20;

/// A CEL rule that the sum of a routing map's values `comparison` (e.g. `== 100`), spelled out
/// term by term over one list of the values.
///
/// The CEL list library's `sum()` would read better, but Kubernetes 1.28's cost estimator cannot
/// bound it whatever `maxProperties` says and refuses the CRD ("estimated rule cost exceeds budget
/// by factor of more than 100x"). Indexing the values `maxProperties` times is cheap and bounded —
/// but each `self.map(k, self[k])` may list the map in another order (Go's map iteration), so the
/// list is made once and bound to `l` by the one-element list trick `[list].all(l, ...)` (1.28 has
/// no `cel.bind`). Found on a real 1.28 API server: with `self.map(...)[i]` in every term, a valid
/// 70/30 split was refused about one time in two.
pub fn sum_rule(comparison: &str) -> String {
    let terms: Vec<String> = (0..MAX_DEPLOYMENTS).map(|i| format!("(l.size() > {i} ? l[{i}] : 0)")).collect();
    format!("[self.map(k, self[k])].all(l, {} {comparison})", terms.join(" + "))
}

/// What is wrong with the spec's routing, naming the field, or None: the same sums the CRD's CEL
/// rules check at admission, for objects that did not pass through an API server.
pub fn routing_problem(spec: &AmlOnlineEndpointSpec) -> Option<String> {
    let sum = |m: &BTreeMap<String, i32>| m.values().map(|v| i64::from(*v)).sum::<i64>();
    if let Some(t) = spec.traffic.as_ref().filter(|t| !t.is_empty() && sum(t) != 100) {
        return Some(format!("spec.traffic: the values sum to {}; they must sum to 100 (or traffic must be empty)", sum(t)));
    }
    if let Some(m) = spec.mirror_traffic.as_ref().filter(|m| sum(m) > 50) {
        return Some(format!("spec.mirrorTraffic: the values sum to {}; they must sum to at most 50", sum(m)));
    }
    None
}

/// Authentication methods of an online endpoint.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AuthMode {
    /// Key-based authentication (keys from `listKeys`).
    Key,
    /// Azure Machine Learning token-based authentication.
    #[serde(rename = "AMLToken")]
    AmlToken,
    /// Microsoft Entra token-based authentication.
    #[serde(rename = "AADToken")]
    AadToken,
}

/// The Secret the operator writes the endpoint's scoring URI and keys into.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeysSecret {
    /// Name of the Secret in the endpoint's namespace. It gets keys `scoringUri` and, for
    /// `authMode: Key`, `primaryKey` and `secondaryKey`; it is owned by the endpoint and deleted with it.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// What the operator and ARM report about the endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmlOnlineEndpointStatus {
    /// Fields every kind reports.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// URI to send scoring requests to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scoring_uri: Option<String>,
    /// URI of the endpoint's OpenAPI (swagger) document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swagger_uri: Option<String>,
}

impl super::Definition for AmlOnlineEndpoint {
    const NAMING: super::Naming = super::Naming::Arm(&NAME_RULE);
    const PRESENCE_IMMUTABLE: &'static [&'static str] = PRESENCE_IMMUTABLE;
}
