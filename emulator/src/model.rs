//! The emulator's resource model: resource kinds, ARM ids and routes, how a stored resource is
//! rendered (read-only outputs, server-side defaults) and what counts as a change.

use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::util::{
    default_path, get_path, guid, normalize_location, remove_path, rfc3339, set_path,
};

/// The resource provider namespace of the ML resource types.
pub(crate) const PROVIDER: &str = "Microsoft.MachineLearningServices";

/// The top-level types the emulator knows, under their provider namespace.
const TOP_LEVEL: [Kind; 5] = [
    Kind::Workspace,
    Kind::StorageAccount,
    Kind::KeyVault,
    Kind::LogAnalytics,
    Kind::AppInsights,
];

/// The resource types the emulator knows: the four ML types the operator manages, a workspace's
/// assets (models, environments and code, each a container of versions; datastores) and a
/// workspace's four dependencies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Workspace,
    Compute,
    OnlineEndpoint,
    OnlineDeployment,
    /// `workspaces/models` (a container of versions).
    ModelContainer,
    /// `workspaces/models/versions`.
    ModelVersion,
    /// `workspaces/environments`.
    EnvironmentContainer,
    /// `workspaces/environments/versions`.
    EnvironmentVersion,
    /// `workspaces/codes`.
    CodeContainer,
    /// `workspaces/codes/versions`.
    CodeVersion,
    /// `workspaces/datastores` (no versions; write-only secrets).
    Datastore,
    /// `Microsoft.Storage/storageAccounts` (global names).
    StorageAccount,
    /// `Microsoft.KeyVault/vaults` (global names, soft-deleted).
    KeyVault,
    /// `Microsoft.OperationalInsights/workspaces`.
    LogAnalytics,
    /// `Microsoft.Insights/components`.
    AppInsights,
}

impl Kind {
    /// The resource provider namespace of this type.
    pub(crate) fn provider(self) -> &'static str {
        match self {
            Kind::Workspace
            | Kind::Compute
            | Kind::OnlineEndpoint
            | Kind::OnlineDeployment
            | Kind::ModelContainer
            | Kind::ModelVersion
            | Kind::EnvironmentContainer
            | Kind::EnvironmentVersion
            | Kind::CodeContainer
            | Kind::CodeVersion
            | Kind::Datastore => PROVIDER,
            Kind::StorageAccount => "Microsoft.Storage",
            Kind::KeyVault => "Microsoft.KeyVault",
            Kind::LogAnalytics => "Microsoft.OperationalInsights",
            Kind::AppInsights => "Microsoft.Insights",
        }
    }

    /// Whether this is one of a workspace's dependencies (not an ML type).
    pub(crate) fn is_dependency(self) -> bool {
        self.provider() != PROVIDER
    }

    /// Whether this is a workspace asset, written synchronously (FACTS §11.1): a model,
    /// environment or code container or version, or a datastore.
    pub(crate) fn is_asset(self) -> bool {
        matches!(
            self,
            Kind::ModelContainer
                | Kind::ModelVersion
                | Kind::EnvironmentContainer
                | Kind::EnvironmentVersion
                | Kind::CodeContainer
                | Kind::CodeVersion
                | Kind::Datastore
        )
    }

    /// Whether this is a version of a model, environment or code asset.
    pub(crate) fn is_version(self) -> bool {
        matches!(self, Kind::ModelVersion | Kind::EnvironmentVersion | Kind::CodeVersion)
    }

    /// What the service calls a versioned asset in its messages (`Model`, `Environment`, `Code`).
    pub(crate) fn asset_label(self) -> &'static str {
        match self {
            Kind::ModelContainer | Kind::ModelVersion => "Model",
            Kind::EnvironmentContainer | Kind::EnvironmentVersion => "Environment",
            Kind::CodeContainer | Kind::CodeVersion => "Code",
            _ => "Resource",
        }
    }

    /// Whether names of this type are unique across all of Azure (not per resource group).
    pub(crate) fn global_names(self) -> bool {
        matches!(self, Kind::StorageAccount | Kind::KeyVault)
    }

    /// The path segment naming this type's collection (canonical casing).
    pub(crate) fn segment(self) -> &'static str {
        match self {
            Kind::Workspace => "workspaces",
            Kind::Compute => "computes",
            Kind::OnlineEndpoint => "onlineEndpoints",
            Kind::OnlineDeployment => "deployments",
            Kind::ModelContainer => "models",
            Kind::EnvironmentContainer => "environments",
            Kind::CodeContainer => "codes",
            Kind::ModelVersion | Kind::EnvironmentVersion | Kind::CodeVersion => "versions",
            Kind::Datastore => "datastores",
            Kind::StorageAccount => "storageAccounts",
            Kind::KeyVault => "vaults",
            Kind::LogAnalytics => "workspaces",
            Kind::AppInsights => "components",
        }
    }

    /// The full ARM resource type, e.g. `Microsoft.MachineLearningServices/workspaces/computes`.
    pub(crate) fn type_name(self) -> &'static str {
        match self {
            Kind::Workspace => "Microsoft.MachineLearningServices/workspaces",
            Kind::Compute => "Microsoft.MachineLearningServices/workspaces/computes",
            Kind::OnlineEndpoint => "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
            Kind::OnlineDeployment => {
                "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments"
            }
            Kind::ModelContainer => "Microsoft.MachineLearningServices/workspaces/models",
            Kind::ModelVersion => "Microsoft.MachineLearningServices/workspaces/models/versions",
            Kind::EnvironmentContainer => "Microsoft.MachineLearningServices/workspaces/environments",
            Kind::EnvironmentVersion => {
                "Microsoft.MachineLearningServices/workspaces/environments/versions"
            }
            Kind::CodeContainer => "Microsoft.MachineLearningServices/workspaces/codes",
            Kind::CodeVersion => "Microsoft.MachineLearningServices/workspaces/codes/versions",
            Kind::Datastore => "Microsoft.MachineLearningServices/workspaces/datastores",
            Kind::StorageAccount => "Microsoft.Storage/storageAccounts",
            Kind::KeyVault => "Microsoft.KeyVault/vaults",
            Kind::LogAnalytics => "Microsoft.OperationalInsights/workspaces",
            Kind::AppInsights => "Microsoft.Insights/components",
        }
    }

    /// The child type reached from `parent` (or, at the top, from `provider`) through `segment`
    /// (case-insensitive).
    fn child(parent: Option<Kind>, provider: &str, segment: &str) -> Option<Kind> {
        let candidates: &[Kind] = match parent {
            None => &TOP_LEVEL,
            Some(Kind::Workspace) => &[
                Kind::Compute,
                Kind::OnlineEndpoint,
                Kind::ModelContainer,
                Kind::EnvironmentContainer,
                Kind::CodeContainer,
                Kind::Datastore,
            ],
            Some(Kind::OnlineEndpoint) => &[Kind::OnlineDeployment],
            Some(Kind::ModelContainer) => &[Kind::ModelVersion],
            Some(Kind::EnvironmentContainer) => &[Kind::EnvironmentVersion],
            Some(Kind::CodeContainer) => &[Kind::CodeVersion],
            Some(_) => &[],
        };
        candidates.iter().copied().find(|k| {
            k.segment().eq_ignore_ascii_case(segment)
                && (parent.is_some() || k.provider().eq_ignore_ascii_case(provider))
        })
    }

    /// ARM's name rule for this type, in words (for the error a refused name gets).
    pub(crate) fn name_rule(self) -> &'static str {
        match self {
            Kind::Workspace => "Names start with a letter or digit and contain only letters, digits, '-' and '_' (3 to 33 characters).",
            Kind::Compute
            | Kind::OnlineEndpoint
            | Kind::OnlineDeployment
            | Kind::ModelContainer
            | Kind::EnvironmentContainer
            | Kind::CodeContainer
            | Kind::Datastore => {
                "Names start with a letter or digit and contain only letters, digits, '-' and '_' (at most 255 characters)."
            }
            Kind::ModelVersion => "Model versions must be positive integers.",
            Kind::EnvironmentVersion | Kind::CodeVersion => "Versions must not be empty.",
            Kind::StorageAccount => "Storage account names are 3 to 24 lowercase letters and digits.",
            Kind::KeyVault => "Vault names are 3 to 24 letters, digits and hyphens, start with a letter, end with a letter or digit and have no consecutive hyphens.",
            Kind::LogAnalytics => "Log Analytics workspace names are 4 to 63 letters, digits and hyphens, starting and ending with a letter or digit.",
            Kind::AppInsights => "Component names are 1 to 260 characters without %&\\?/ or control characters, not ending with a space or period.",
        }
    }

    /// Whether `name` is a valid name for this type (the spec's / ARM schema's patterns).
    pub(crate) fn name_is_valid(self, name: &str) -> bool {
        let bytes = name.as_bytes();
        let Some(first) = bytes.first() else {
            return false;
        };
        let last = bytes[bytes.len() - 1];
        let rest_ok = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
        match self {
            Kind::StorageAccount => {
                (3..=24).contains(&bytes.len())
                    && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            }
            Kind::KeyVault => {
                (3..=24).contains(&bytes.len())
                    && first.is_ascii_alphabetic()
                    && last.is_ascii_alphanumeric()
                    && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                    && !name.contains("--")
            }
            Kind::LogAnalytics => {
                (4..=63).contains(&bytes.len())
                    && first.is_ascii_alphanumeric()
                    && last.is_ascii_alphanumeric()
                    && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            }
            Kind::AppInsights => {
                bytes.len() <= 260
                    && !name.chars().any(|c| "%&\\?/".contains(c) || c.is_control())
                    && !matches!(last, b' ' | b'.')
            }
            // ^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$
            Kind::Workspace => {
                first.is_ascii_alphanumeric()
                    && (3..=33).contains(&bytes.len())
                    && bytes[1..].iter().all(rest_ok)
            }
            // ^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$
            Kind::OnlineEndpoint
            | Kind::OnlineDeployment
            | Kind::ModelContainer
            | Kind::EnvironmentContainer
            | Kind::CodeContainer
            | Kind::Datastore => {
                first.is_ascii_alphanumeric()
                    && bytes.len() <= 255
                    && bytes[1..].iter().all(rest_ok)
            }
            // A service rule, not in the spec (FACTS §11.1).
            Kind::ModelVersion => {
                bytes.iter().all(u8::is_ascii_digit) && !name.trim_start_matches('0').is_empty()
            }
            // "Version identifier. This is case-sensitive.", no pattern.
            Kind::EnvironmentVersion | Kind::CodeVersion => true,
            // The spec has no pattern for compute names; ARM still rejects odd characters.
            Kind::Compute => bytes.len() <= 255 && bytes.iter().all(rest_ok),
        }
    }

    /// Paths (relative to the resource body) that the service owns: dropped from request bodies,
    /// filled by the emulator, ignored when deciding whether a PUT changes anything.
    fn outputs(self) -> &'static [&'static str] {
        match self {
            Kind::Workspace => &[
                "properties/workspaceId",
                "properties/discoveryUrl",
                "properties/mlFlowTrackingUri",
                "properties/tenantId",
                "properties/serviceProvisionedResourceGroup",
                "properties/privateLinkCount",
                "properties/privateEndpointConnections",
                "properties/notebookInfo",
                "properties/storageHnsEnabled",
            ],
            Kind::Compute => &[
                "properties/createdOn",
                "properties/modifiedOn",
                "properties/provisioningErrors",
                "properties/isAttachedCompute",
                "properties/properties/allocationState",
                "properties/properties/allocationStateTransitionTime",
                "properties/properties/currentNodeCount",
                "properties/properties/targetNodeCount",
                "properties/properties/nodeStateCounts",
                "properties/properties/errors",
                "properties/properties/state",
                "properties/properties/lastOperation",
                "properties/properties/osImageMetadata",
                "properties/properties/connectivityEndpoints",
                "properties/properties/applications",
                "properties/properties/createdBy",
                "properties/properties/sshSettings/adminUserName",
                "properties/properties/sshSettings/sshPort",
            ],
            Kind::OnlineEndpoint => &[
                "properties/scoringUri",
                "properties/swaggerUri",
                "properties/keys",
            ],
            Kind::OnlineDeployment | Kind::ModelVersion | Kind::CodeVersion => &[],
            Kind::ModelContainer | Kind::EnvironmentContainer | Kind::CodeContainer => {
                &["properties/latestVersion", "properties/nextVersion"]
            }
            Kind::EnvironmentVersion => &["properties/environmentType"],
            Kind::Datastore => &["properties/isDefault"],
            Kind::StorageAccount => &[
                "properties/primaryEndpoints",
                "properties/primaryLocation",
                "properties/statusOfPrimary",
                "properties/creationTime",
            ],
            Kind::KeyVault => &["properties/vaultUri", "properties/hsmPoolResourceId"],
            Kind::LogAnalytics => &[
                "properties/customerId",
                "properties/createdDate",
                "properties/modifiedDate",
            ],
            Kind::AppInsights => &[
                "properties/AppId",
                "properties/ApplicationId",
                "properties/InstrumentationKey",
                "properties/ConnectionString",
                "properties/TenantId",
                "properties/CreationDate",
                "properties/Name",
            ],
        }
    }
}

/// Paths every kind's service owns.
const COMMON_OUTPUTS: &[&str] = &[
    "id",
    "name",
    "type",
    "systemData",
    "properties/provisioningState",
    "identity/principalId",
    "identity/tenantId",
];

/// A parsed resource id under `/subscriptions/{sub}/resourceGroups/{rg}/providers/{provider}`.
#[derive(Clone, Debug)]
pub(crate) struct ResId {
    pub(crate) sub: String,
    pub(crate) rg: String,
    /// (type, name) from the workspace down, names as first sent.
    pub(crate) chain: Vec<(Kind, String)>,
}

impl ResId {
    /// The type of the resource this id names.
    pub(crate) fn kind(&self) -> Kind {
        self.chain.last().map_or(Kind::Workspace, |(k, _)| *k)
    }

    /// The resource's own name.
    pub(crate) fn name(&self) -> &str {
        self.chain.last().map_or("", |(_, n)| n.as_str())
    }

    /// The canonical id string (`/subscriptions/.../workspaces/ws/computes/c`).
    pub(crate) fn canonical(&self) -> String {
        let provider = self.chain.first().map_or(PROVIDER, |(k, _)| k.provider());
        let mut s = format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{provider}",
            self.sub, self.rg
        );
        for (kind, name) in &self.chain {
            s.push('/');
            s.push_str(kind.segment());
            s.push('/');
            s.push_str(name);
        }
        s
    }

    /// The store key: the lowercased canonical id.
    pub(crate) fn key(&self) -> String {
        self.canonical().to_ascii_lowercase()
    }

    /// The parent resource (workspace or endpoint), if any.
    pub(crate) fn parent(&self) -> Option<ResId> {
        (self.chain.len() > 1).then(|| ResId {
            sub: self.sub.clone(),
            rg: self.rg.clone(),
            chain: self.chain[..self.chain.len() - 1].to_vec(),
        })
    }

    /// Parses a resource id (no trailing action). `None` if it is not a type the emulator knows.
    pub(crate) fn parse(id: &str) -> Option<ResId> {
        match Address::parse(id) {
            Address::Resource { id, action: None } => Some(id),
            _ => None,
        }
    }
}

/// What a path under `/subscriptions/{sub}/resourceGroups/{rg}/providers/{provider}/` names,
/// for the providers the emulator plays: the grammar of ARM resource ids. The router decides which
/// request paths reach it; handlers use it (through [`ResId::parse`]) to read ids in bodies.
#[derive(Debug)]
pub(crate) enum Address {
    /// A resource, optionally with a POST action after it (`listKeys`).
    Resource { id: ResId, action: Option<String> },
    /// A list of resources of `kind` under `parent` (or in the resource group).
    Collection {
        sub: String,
        rg: String,
        parent: Option<ResId>,
        kind: Kind,
    },
    /// A path under the provider naming a type the emulator does not know.
    UnknownType { type_path: String },
    /// Anything else.
    NotFound,
}

impl Address {
    /// Parses a path or id (case-insensitive keywords, names kept as sent).
    pub(crate) fn parse(path: &str) -> Address {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let eq = |i: usize, word: &str| segs.get(i).is_some_and(|s| s.eq_ignore_ascii_case(word));
        let provider = segs.get(5).copied().unwrap_or_default();
        let known_provider = TOP_LEVEL.iter().any(|k| k.provider().eq_ignore_ascii_case(provider));
        if !(eq(0, "subscriptions")
            && eq(2, "resourceGroups")
            && segs.len() >= 6
            && eq(4, "providers")
            && known_provider)
        {
            return Address::NotFound;
        }
        let sub = segs[1].to_owned();
        let rg = segs[3].to_owned();
        let rest = &segs[6..];
        let mut id = ResId {
            sub: sub.clone(),
            rg: rg.clone(),
            chain: Vec::new(),
        };
        let mut i = 0;
        while i < rest.len() {
            let parent = id.chain.last().map(|(k, _)| *k);
            match (Kind::child(parent, provider, rest[i]), rest.get(i + 1)) {
                (Some(kind), Some(name)) => id.chain.push((kind, (*name).to_owned())),
                (Some(kind), None) => {
                    let parent = (!id.chain.is_empty()).then_some(id);
                    return Address::Collection {
                        sub,
                        rg,
                        parent,
                        kind,
                    };
                }
                (None, None) if !id.chain.is_empty() => {
                    return Address::Resource {
                        id,
                        action: Some(rest[i].to_owned()),
                    };
                }
                (None, _) => {
                    let mut type_path = String::from(provider);
                    for (k, _) in &id.chain {
                        type_path.push('/');
                        type_path.push_str(k.segment());
                    }
                    type_path.push('/');
                    type_path.push_str(rest[i]);
                    return Address::UnknownType { type_path };
                }
            }
            i += 2;
        }
        if id.chain.is_empty() {
            return Address::NotFound;
        }
        Address::Resource { id, action: None }
    }
}

/// Values the rendering of a resource depends on besides its body.
pub(crate) struct RenderCtx<'a> {
    /// Tenant of the caller (workspace `tenantId`, identity tenant).
    pub(crate) tenant_id: &'a str,
    /// Client id of the caller (`systemData.*By`).
    pub(crate) client_id: &'a str,
    /// Wall-clock time of the request.
    pub(crate) now: SystemTime,
}

/// Drops every service-owned path from a request body.
pub(crate) fn sanitize(kind: Kind, body: &mut Value) {
    for path in COMMON_OUTPUTS.iter().chain(kind.outputs()) {
        remove_path(body, path);
    }
    if let Some(Value::Object(uais)) = body.pointer_mut("/identity/userAssignedIdentities") {
        for entry in uais.values_mut() {
            remove_path(entry, "principalId");
            remove_path(entry, "clientId");
        }
    }
}

/// The user-controlled part of a rendered resource, for "does this PUT change anything".
pub(crate) fn user_part(kind: Kind, rendered: &Value) -> Value {
    let mut v = rendered.clone();
    sanitize(kind, &mut v);
    v
}

/// The stored/GET representation of `request` (already parsed, any shape) for resource `id`,
/// keeping stable outputs (GUIDs, creation times) from `existing`.
pub(crate) fn render(
    id: &ResId,
    request: &Value,
    existing: Option<&Value>,
    provisioning_state: &str,
    ctx: &RenderCtx<'_>,
) -> Value {
    let kind = id.kind();
    let mut body = match request {
        Value::Object(map) => Value::Object(map.clone()),
        _ => Value::Object(Map::new()),
    };
    sanitize(kind, &mut body);
    let keep = |path: &str| {
        existing
            .and_then(|e| get_path(e, path))
            .filter(|x| !x.is_null())
            .cloned()
    };
    let now = rfc3339(ctx.now);

    let mut ordered = Map::new();
    ordered.insert("id".into(), Value::from(id.canonical()));
    ordered.insert("name".into(), Value::from(id.name()));
    ordered.insert("type".into(), Value::from(kind.type_name()));
    if let Value::Object(map) = body {
        ordered.extend(map);
    }
    let mut v = Value::Object(ordered);

    if let Some(Value::String(loc)) = v.get("location") {
        let normalized = normalize_location(loc);
        set_path(&mut v, "location", Value::from(normalized));
    }
    if !v.get("properties").is_some_and(Value::is_object) {
        set_path(&mut v, "properties", json!({}));
    }
    set_path(
        &mut v,
        "properties/provisioningState",
        Value::from(provisioning_state),
    );
    set_path(
        &mut v,
        "systemData",
        json!({
            "createdAt": keep("systemData/createdAt").unwrap_or_else(|| Value::from(now.clone())),
            "createdBy": keep("systemData/createdBy").unwrap_or_else(|| Value::from(ctx.client_id)),
            "createdByType": "Application",
            "lastModifiedAt": now,
            "lastModifiedBy": ctx.client_id,
            "lastModifiedByType": "Application",
        }),
    );
    render_identity(&mut v, existing, ctx);

    let location = v
        .get("location")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match kind {
        Kind::Workspace => render_workspace(&mut v, id, &location, &keep, ctx),
        Kind::Compute => render_compute(&mut v, existing, &keep, provisioning_state, &now),
        Kind::OnlineEndpoint => render_endpoint(&mut v, id, &location),
        Kind::OnlineDeployment => render_deployment(&mut v),
        Kind::ModelContainer | Kind::EnvironmentContainer | Kind::CodeContainer => {
            default_path(&mut v, "properties/isArchived", Value::from(false));
            for field in ["properties/latestVersion", "properties/nextVersion"] {
                if let Some(kept) = keep(field) {
                    set_path(&mut v, field, kept);
                }
            }
            default_path(&mut v, "properties/nextVersion", Value::from("1"));
        }
        Kind::ModelVersion | Kind::EnvironmentVersion | Kind::CodeVersion => {
            render_version(&mut v, kind)
        }
        Kind::Datastore => render_datastore(&mut v),
        Kind::StorageAccount => render_storage(&mut v, id, &location, &keep, &now),
        Kind::KeyVault => render_vault(&mut v, id),
        Kind::LogAnalytics => render_log_analytics(&mut v, &keep, &now),
        Kind::AppInsights => render_component(&mut v, id, &location, &keep, &now),
    }
    v
}

fn render_version(v: &mut Value, kind: Kind) {
    default_path(v, "properties/isArchived", Value::from(false));
    default_path(v, "properties/isAnonymous", Value::from(false));
    if kind == Kind::EnvironmentVersion {
        set_path(v, "properties/environmentType", Value::from("UserCreated"));
        default_path(v, "properties/osType", Value::from("Linux"));
        default_path(v, "properties/autoRebuild", Value::from("Disabled"));
    }
}

fn render_datastore(v: &mut Value) {
    set_path(v, "properties/isDefault", Value::from(false));
    let storage = get_path(v, "properties/datastoreType")
        .and_then(Value::as_str)
        .is_some_and(|t| ["AzureBlob", "AzureDataLakeGen2", "AzureFile"].contains(&t));
    if storage {
        default_path(v, "properties/endpoint", Value::from("core.windows.net"));
        default_path(v, "properties/protocol", Value::from("https"));
        default_path(v, "properties/serviceDataAccessAuthIdentity", Value::from("None"));
    }
}

fn render_storage(
    v: &mut Value,
    id: &ResId,
    location: &str,
    keep: &dyn Fn(&str) -> Option<Value>,
    now: &str,
) {
    let name = id.name().to_ascii_lowercase();
    default_path(v, "properties/accessTier", Value::from("Hot"));
    default_path(v, "properties/supportsHttpsTrafficOnly", Value::from(true));
    default_path(v, "properties/isHnsEnabled", Value::from(false));
    let endpoints: Map<String, Value> = ["blob", "queue", "table", "file", "web", "dfs"]
        .iter()
        .map(|s| ((*s).to_owned(), Value::from(format!("https://{name}.{s}.core.windows.net/"))))
        .collect();
    set_path(v, "properties/primaryEndpoints", Value::Object(endpoints));
    set_path(v, "properties/primaryLocation", Value::from(location));
    set_path(v, "properties/statusOfPrimary", Value::from("available"));
    let created = keep("properties/creationTime").unwrap_or_else(|| Value::from(now));
    set_path(v, "properties/creationTime", created);
}

fn render_vault(v: &mut Value, id: &ResId) {
    default_path(v, "properties/enableSoftDelete", Value::from(true));
    default_path(v, "properties/softDeleteRetentionInDays", Value::from(90));
    default_path(v, "properties/enableRbacAuthorization", Value::from(false));
    default_path(v, "properties/publicNetworkAccess", Value::from("Enabled"));
    set_path(
        v,
        "properties/vaultUri",
        Value::from(format!("https://{}.vault.azure.net/", id.name().to_ascii_lowercase())),
    );
}

fn render_log_analytics(v: &mut Value, keep: &dyn Fn(&str) -> Option<Value>, now: &str) {
    default_path(v, "properties/sku", json!({"name": "PerGB2018"}));
    default_path(v, "properties/retentionInDays", Value::from(30));
    default_path(v, "properties/publicNetworkAccessForIngestion", Value::from("Enabled"));
    default_path(v, "properties/publicNetworkAccessForQuery", Value::from("Enabled"));
    let customer = keep("properties/customerId").unwrap_or_else(|| Value::from(guid()));
    set_path(v, "properties/customerId", customer);
    let created = keep("properties/createdDate").unwrap_or_else(|| Value::from(now));
    set_path(v, "properties/createdDate", created);
    set_path(v, "properties/modifiedDate", Value::from(now));
}

fn render_component(
    v: &mut Value,
    id: &ResId,
    location: &str,
    keep: &dyn Fn(&str) -> Option<Value>,
    now: &str,
) {
    default_path(v, "properties/Application_Type", Value::from("web"));
    default_path(v, "properties/IngestionMode", Value::from("LogAnalytics"));
    default_path(v, "properties/RetentionInDays", Value::from(90));
    let app_id = keep("properties/AppId").unwrap_or_else(|| Value::from(guid()));
    let key = keep("properties/InstrumentationKey").unwrap_or_else(|| Value::from(guid()));
    let connection = format!(
        "InstrumentationKey={};IngestionEndpoint=https://{location}-0.in.applicationinsights.azure.com/",
        key.as_str().unwrap_or_default()
    );
    set_path(v, "properties/AppId", app_id);
    set_path(v, "properties/ApplicationId", Value::from(id.name()));
    set_path(v, "properties/Name", Value::from(id.name()));
    set_path(v, "properties/InstrumentationKey", key);
    set_path(v, "properties/ConnectionString", Value::from(connection));
    set_path(v, "properties/TenantId", Value::from(id.sub.as_str()));
    let created = keep("properties/CreationDate").unwrap_or_else(|| Value::from(now));
    set_path(v, "properties/CreationDate", created);
}

fn render_identity(v: &mut Value, existing: Option<&Value>, ctx: &RenderCtx<'_>) {
    let Some(identity) = v.get_mut("identity").filter(|i| i.is_object()) else {
        return;
    };
    let ty = identity
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let old = existing.and_then(|e| e.get("identity"));
    if ty.split(',').any(|t| t.trim() == "systemassigned") {
        let principal = old
            .and_then(|o| o.get("principalId"))
            .cloned()
            .unwrap_or_else(|| Value::from(guid()));
        set_path(identity, "principalId", principal);
        set_path(identity, "tenantId", Value::from(ctx.tenant_id));
    }
    if let Some(Value::Object(uais)) = identity.get_mut("userAssignedIdentities") {
        for (uai_id, entry) in uais.iter_mut() {
            let previous = old
                .and_then(|o| o.get("userAssignedIdentities"))
                .and_then(Value::as_object)
                .and_then(|m| {
                    m.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(uai_id))
                        .map(|(_, v)| v)
                });
            for field in ["principalId", "clientId"] {
                let value = previous
                    .and_then(|p| p.get(field))
                    .cloned()
                    .unwrap_or_else(|| Value::from(guid()));
                set_path(entry, field, value);
            }
        }
    }
}

fn render_workspace(
    v: &mut Value,
    id: &ResId,
    location: &str,
    keep: &dyn Fn(&str) -> Option<Value>,
    ctx: &RenderCtx<'_>,
) {
    default_path(v, "kind", Value::from("Default"));
    default_path(v, "sku", json!({"name": "Basic", "tier": "Basic"}));
    default_path(v, "properties/hbiWorkspace", Value::from(false));
    default_path(v, "properties/publicNetworkAccess", Value::from("Enabled"));
    default_path(
        v,
        "properties/allowPublicAccessWhenBehindVnet",
        Value::from(false),
    );
    default_path(v, "properties/v1LegacyMode", Value::from(false));
    default_path(v, "properties/enableDataIsolation", Value::from(false));

    let workspace_id = keep("properties/workspaceId").unwrap_or_else(|| Value::from(guid()));
    let short = workspace_id.as_str().unwrap_or_default().replace('-', "");
    let short = short.get(..16).unwrap_or(&short).to_owned();
    set_path(v, "properties/workspaceId", workspace_id);
    set_path(v, "properties/tenantId", Value::from(ctx.tenant_id));
    set_path(
        v,
        "properties/discoveryUrl",
        Value::from(format!("https://{location}.api.azureml.ms/discovery")),
    );
    set_path(
        v,
        "properties/mlFlowTrackingUri",
        Value::from(format!(
            "azureml://{location}.api.azureml.ms/mlflow/v1.0{}",
            id.canonical()
        )),
    );
    set_path(
        v,
        "properties/serviceProvisionedResourceGroup",
        Value::from(format!("{}_{short}", id.name().to_ascii_lowercase())),
    );
    set_path(v, "properties/privateLinkCount", Value::from(0));
    set_path(v, "properties/privateEndpointConnections", json!([]));
    set_path(v, "properties/storageHnsEnabled", Value::from(false));
}

fn render_compute(
    v: &mut Value,
    existing: Option<&Value>,
    keep: &dyn Fn(&str) -> Option<Value>,
    provisioning_state: &str,
    now: &str,
) {
    let created = keep("properties/createdOn").unwrap_or_else(|| Value::from(now));
    set_path(v, "properties/createdOn", created);
    set_path(v, "properties/modifiedOn", Value::from(now));
    set_path(v, "properties/isAttachedCompute", Value::from(false));
    set_path(v, "properties/provisioningErrors", Value::Null);
    let compute_type = get_path(v, "properties/computeType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if compute_type.eq_ignore_ascii_case("AmlCompute") {
        default_path(v, "properties/properties/osType", Value::from("Linux"));
        default_path(
            v,
            "properties/properties/vmPriority",
            Value::from("Dedicated"),
        );
        default_path(
            v,
            "properties/properties/isolatedNetwork",
            Value::from(false),
        );
        default_path(
            v,
            "properties/properties/enableNodePublicIp",
            Value::from(true),
        );
        default_path(
            v,
            "properties/properties/scaleSettings/minNodeCount",
            Value::from(0),
        );
        default_path(
            v,
            "properties/properties/scaleSettings/nodeIdleTimeBeforeScaleDown",
            Value::from("PT120S"),
        );
        let target = get_path(v, "properties/properties/scaleSettings/minNodeCount")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let current = existing
            .and_then(|e| get_path(e, "properties/properties/currentNodeCount"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let settled = provisioning_state == "Succeeded";
        let current = if settled { target } else { current };
        let allocation = if current == target {
            "Steady"
        } else {
            "Resizing"
        };
        let transition = keep("properties/properties/allocationStateTransitionTime")
            .filter(|_| allocation == "Steady" && existing.is_some())
            .unwrap_or_else(|| Value::from(now));
        set_path(
            v,
            "properties/properties/allocationState",
            Value::from(allocation),
        );
        set_path(
            v,
            "properties/properties/allocationStateTransitionTime",
            transition,
        );
        set_path(
            v,
            "properties/properties/currentNodeCount",
            Value::from(current),
        );
        set_path(
            v,
            "properties/properties/targetNodeCount",
            Value::from(target),
        );
        set_path(
            v,
            "properties/properties/nodeStateCounts",
            json!({
                "preparingNodeCount": 0, "runningNodeCount": 0, "idleNodeCount": current,
                "unusableNodeCount": 0, "leavingNodeCount": 0, "preemptedNodeCount": 0
            }),
        );
        set_path(v, "properties/properties/errors", Value::Null);
    } else if compute_type.eq_ignore_ascii_case("ComputeInstance") {
        default_path(
            v,
            "properties/properties/applicationSharingPolicy",
            Value::from("Shared"),
        );
        default_path(
            v,
            "properties/properties/computeInstanceAuthorizationType",
            Value::from("personal"),
        );
        default_path(
            v,
            "properties/properties/enableNodePublicIp",
            Value::from(true),
        );
        default_path(
            v,
            "properties/properties/sshSettings/sshPublicAccess",
            Value::from("Disabled"),
        );
        set_path(
            v,
            "properties/properties/sshSettings/adminUserName",
            Value::from("azureuser"),
        );
        set_path(
            v,
            "properties/properties/sshSettings/sshPort",
            Value::from(22),
        );
        let state = match provisioning_state {
            "Succeeded" => keep("properties/properties/state")
                .filter(|s| s.as_str().is_some_and(|s| s != "Creating"))
                .unwrap_or_else(|| Value::from("Running")),
            "Creating" => Value::from("Creating"),
            _ => keep("properties/properties/state").unwrap_or_else(|| Value::from("Creating")),
        };
        set_path(v, "properties/properties/state", state);
        set_path(v, "properties/properties/errors", Value::Null);
        set_path(
            v,
            "properties/properties/osImageMetadata",
            json!({"currentImageVersion": "24.01.01", "latestImageVersion": "24.01.01", "isLatestOsImageVersion": true}),
        );
        set_path(
            v,
            "properties/properties/connectivityEndpoints",
            json!({"publicIpAddress": "10.0.0.4", "privateIpAddress": "10.0.0.4"}),
        );
    }
}

/// The host name online endpoints are served at (lowercase, as the service does).
pub(crate) fn endpoint_host(name: &str, location: &str) -> String {
    format!(
        "{}.{location}.inference.ml.azure.com",
        name.to_ascii_lowercase()
    )
}

fn render_endpoint(v: &mut Value, id: &ResId, location: &str) {
    default_path(v, "properties/traffic", json!({}));
    default_path(v, "properties/mirrorTraffic", json!({}));
    default_path(v, "properties/publicNetworkAccess", Value::from("Enabled"));
    let host = endpoint_host(id.name(), location);
    set_path(
        v,
        "properties/scoringUri",
        Value::from(format!("https://{host}/score")),
    );
    set_path(
        v,
        "properties/swaggerUri",
        Value::from(format!("https://{host}/swagger.json")),
    );
}

fn render_deployment(v: &mut Value) {
    default_path(v, "sku", json!({"name": "Default", "capacity": 1}));
    default_path(
        v,
        "properties/scaleSettings",
        json!({"scaleType": "Default"}),
    );
    default_path(v, "properties/appInsightsEnabled", Value::from(false));
    default_path(
        v,
        "properties/egressPublicNetworkAccess",
        Value::from("Enabled"),
    );
    default_path(
        v,
        "properties/requestSettings",
        json!({"maxConcurrentRequestsPerInstance": 1, "requestTimeout": "PT5S", "maxQueueWait": "PT0.5S"}),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_patterns() {
        assert!(Kind::Workspace.name_is_valid("ws1"));
        assert!(!Kind::Workspace.name_is_valid("ws"));
        assert!(!Kind::Workspace.name_is_valid("-ws1"));
        assert!(!Kind::Workspace.name_is_valid(&"a".repeat(34)));
        assert!(Kind::OnlineEndpoint.name_is_valid("e"));
        assert!(!Kind::OnlineEndpoint.name_is_valid("e.x"));
        assert!(Kind::StorageAccount.name_is_valid("teamast0123"));
        assert!(!Kind::StorageAccount.name_is_valid("Team_A"));
        assert!(Kind::KeyVault.name_is_valid("teama-kv"));
        assert!(!Kind::KeyVault.name_is_valid("1kv"));
        assert!(!Kind::KeyVault.name_is_valid("a--kv"));
        assert!(!Kind::KeyVault.name_is_valid("kv-"));
        assert!(Kind::LogAnalytics.name_is_valid("team-log-1"));
        assert!(!Kind::AppInsights.name_is_valid("a/b"));
    }

    #[test]
    fn render_keeps_stable_outputs_and_ignores_them_for_changes() {
        let Some(id) = ResId::parse(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws1",
        ) else {
            panic!("bad id")
        };
        let ctx = RenderCtx {
            tenant_id: "t",
            client_id: "c",
            now: SystemTime::now(),
        };
        let body = json!({"location": "East US", "properties": {"friendlyName": "x", "workspaceId": "mine"}});
        let first = render(&id, &body, None, "Creating", &ctx);
        assert_eq!(first["location"], "eastus");
        assert_ne!(first["properties"]["workspaceId"], "mine");
        let second = render(&id, &first, Some(&first), "Succeeded", &ctx);
        assert_eq!(
            second["properties"]["workspaceId"],
            first["properties"]["workspaceId"]
        );
        assert_eq!(
            user_part(Kind::Workspace, &first),
            user_part(Kind::Workspace, &second)
        );
    }
}
