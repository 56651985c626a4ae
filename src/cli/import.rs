//! `aml-operator import`: manifests for ML resources that already exist in Azure (with the model,
//! environment and code versions of an imported workspace), and for the role assignments made on an
//! imported workspace that grant one of the built-in roles AmlRoleAssignment names.
//!
//! Collections are listed top-down (workspaces in the resource group, then each registered child
//! collection under every imported parent). Each kind turns one ARM resource into a manifest that
//! holds only what a user sets — no read-only outputs, no values ARM fills in by default — so
//! `plan` of the result reports no change. Adding a kind is one [`ImportKind`] row and one function.

use super::{ArmSetup, CLI_CREDENTIALS_NAMESPACE, CliError, ImportArgs, Session, say};
use crate::controller::credentials;
use crate::arm::ids::{self, PROVIDER};
use crate::crd::{AmlWorkspace, AmlWorkspaceSpec, BuiltInRole, ManagementPolicy};
use serde_json::{Map, Value, json};
use std::io::Write;
use std::path::PathBuf;

/// What an import produced.
#[derive(Clone, Debug, Default)]
pub struct ImportReport {
    /// Per object: `Kind name`, its YAML, and the ARM id it came from.
    pub manifests: Vec<Imported>,
    /// Files written (with `-o`).
    pub written: Vec<PathBuf>,
    /// Things not imported, with the reason.
    pub warnings: Vec<String>,
}

impl ImportReport {
    /// 0 when every listed resource was imported, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.warnings.is_empty() { 0 } else { 1 }
    }
}

/// One imported object.
#[derive(Clone, Debug)]
pub struct Imported {
    /// `kind`.
    pub kind: &'static str,
    /// `metadata.name`.
    pub name: String,
    /// The ARM id it describes.
    pub arm_id: String,
    /// The manifest, as YAML (fields in the CRD's order).
    pub yaml: String,
}

/// What a kind's import function knows besides the ARM resource.
pub struct ImportContext<'a> {
    /// `--management-policy`.
    pub management_policy: ManagementPolicy,
    /// The parent imported just before (children use its `metadata.name` for their reference).
    pub parent: Option<&'a Imported>,
}

/// How to import one kind.
pub struct ImportKind {
    /// `kind` of the manifests.
    pub kind: &'static str,
    /// Collection segment: under the resource group's provider for top-level kinds, else under the
    /// parent resource (`computes`, `onlineEndpoints`, `deployments`).
    pub segment: &'static str,
    /// Kind of the parent, for children.
    pub parent: Option<&'static str>,
    /// Builds the manifest.
    pub manifest: ManifestFn,
    /// The kind's ARM api-version, when not the ML one (`--api-version`).
    pub api_version: Option<&'static str>,
    /// Extra query parameters of the list (a `$filter`).
    pub query: &'static [(&'static str, &'static str)],
    /// Which listed resources are this kind's to import (others are skipped without a warning).
    pub keep: fn(&Value, &ImportContext<'_>) -> bool,
    /// Whether the collection lists containers whose `versions` are the objects (models,
    /// environments, code).
    pub versioned: bool,
}

fn keep_all(_: &Value, _: &ImportContext<'_>) -> bool {
    true
}

/// One ARM resource (as GET shows it) to (`metadata.name`, manifest YAML), or why not.
pub type ManifestFn = fn(&Value, &ImportContext<'_>) -> Result<(String, String), String>;

/// Every kind `import` reads, parents before children.
pub const IMPORT_KINDS: &[ImportKind] = &[
    ImportKind { kind: "AmlWorkspace", segment: "workspaces", parent: None, manifest: workspace_manifest, api_version: None, query: &[], keep: keep_all, versioned: false },
    ImportKind { kind: "AmlCompute", segment: "computes", parent: Some("AmlWorkspace"), manifest: compute_manifest, api_version: None, query: &[], keep: keep_all, versioned: false },
    ImportKind { kind: "AmlDatastore", segment: "datastores", parent: Some("AmlWorkspace"), manifest: datastore_manifest, api_version: None, query: &[], keep: keep_all, versioned: false },
    ImportKind { kind: "AmlModelVersion", segment: "models", parent: Some("AmlWorkspace"), manifest: model_manifest, api_version: None, query: &[], keep: keep_all, versioned: true },
    ImportKind { kind: "AmlEnvironmentVersion", segment: "environments", parent: Some("AmlWorkspace"), manifest: environment_manifest, api_version: None, query: &[], keep: keep_all, versioned: true },
    ImportKind { kind: "AmlCodeVersion", segment: "codes", parent: Some("AmlWorkspace"), manifest: code_manifest, api_version: None, query: &[], keep: keep_all, versioned: true },
    ImportKind { kind: "AmlOnlineEndpoint", segment: "onlineEndpoints", parent: Some("AmlWorkspace"), manifest: endpoint_manifest, api_version: None, query: &[], keep: keep_all, versioned: false },
    ImportKind { kind: "AmlOnlineDeployment", segment: "deployments", parent: Some("AmlOnlineEndpoint"), manifest: deployment_manifest, api_version: None, query: &[], keep: keep_all, versioned: false },
    // The assignments made at the workspace itself (not inherited from above) of the six roles.
    ImportKind {
        kind: "AmlRoleAssignment",
        segment: ids::ROLE_ASSIGNMENTS,
        parent: Some("AmlWorkspace"),
        manifest: role_assignment_manifest,
        api_version: Some(crate::controller::kinds::role_assignment::API_VERSION),
        query: &[("$filter", "atScope()")],
        keep: at_parent_with_a_known_role,
        versioned: false,
    },
];

/// Runs `import`: lists, converts, and prints the manifests (or writes them into `-o DIR`).
pub async fn import(args: &ImportArgs, given: Option<ArmSetup>, out: &mut (dyn Write + Send)) -> Result<ImportReport, CliError> {
    // The manifests may go to stdout: keep every other line a YAML comment.
    let session = Session::start(&args.arm, false, given, out, "# ").await?;
    // The principal the CLI was given, read back like the pipeline reads any credentials Secret.
    let sp = credentials::resolve(&session.ctx, CLI_CREDENTIALS_NAMESPACE, None).await.map(|f| f.principal).map_err(|_| {
        CliError::Config("import needs a service principal: set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET".into())
    })?;
    let mut report = ImportReport::default();
    let top = format!("/subscriptions/{}/resourceGroups/{}/providers/{PROVIDER}", args.subscription, args.resource_group);
    // (kind, collection path, parent) still to list.
    let mut queue: Vec<(&ImportKind, String, Option<Imported>)> = IMPORT_KINDS
        .iter()
        .filter(|k| k.parent.is_none())
        .map(|k| (k, format!("{top}/{}", k.segment), None))
        .collect();
    while let Some((kind, collection, parent)) = queue.pop() {
        let api_version = kind.api_version.unwrap_or(&session.setup.api_version);
        let mut resources = list(&session, &sp, &collection, api_version, kind.query, &mut report.warnings).await?;
        if kind.versioned {
            // The listed containers (a model's name) hold the objects: their versions.
            let mut versions = Vec::new();
            for container in resources {
                let collection = format!("{}/versions", container["id"].as_str().unwrap_or_default());
                versions.extend(list(&session, &sp, &collection, api_version, kind.query, &mut report.warnings).await?);
            }
            resources = versions;
        }
        for resource in resources {
            let arm_name = resource["name"].as_str().unwrap_or_default();
            if parent.is_none()
                && let Some(w) = &args.workspace
                && !w.eq_ignore_ascii_case(arm_name)
            {
                continue;
            }
            let arm_id = resource["id"].as_str().unwrap_or_default().to_string();
            let ctx = ImportContext { management_policy: args.management_policy, parent: parent.as_ref() };
            if !(kind.keep)(&resource, &ctx) {
                continue;
            }
            match (kind.manifest)(&resource, &ctx) {
                Ok((name, yaml)) => {
                    if kind.kind == "AmlDatastore" && yaml.contains("secretRef:") {
                        say(out, &format!(
                            "# note: AmlDatastore {name}: Azure never returns its secret; create Secret {name}-credentials with the key named in storageCredentials.secretRef before applying"
                        ))?;
                    }
                    let imported = Imported { kind: kind.kind, name, arm_id: arm_id.clone(), yaml };
                    for child in IMPORT_KINDS.iter().filter(|c| c.parent == Some(kind.kind)) {
                        queue.push((child, format!("{arm_id}/{}", child.segment), Some(imported.clone())));
                    }
                    report.manifests.push(imported);
                }
                Err(e) => report.warnings.push(format!("{arm_id}: not imported: {e}")),
            }
        }
    }
    let io = |what: String| move |source| CliError::Write { what, source };
    match &args.output_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(io(dir.display().to_string()))?;
            for m in &report.manifests {
                let path = dir.join(format!("{}-{}.yaml", m.kind.to_lowercase(), m.name));
                std::fs::write(&path, format!("# Imported from {}\n{}", m.arm_id, m.yaml)).map_err(io(path.display().to_string()))?;
                say(out, &format!("# wrote {}", path.display()))?;
                report.written.push(path);
            }
        }
        None => {
            for m in &report.manifests {
                write!(out, "---\n# Imported from {}\n{}", m.arm_id, m.yaml).map_err(io("output".into()))?;
            }
        }
    }
    for w in &report.warnings {
        say(out, &format!("# warning: {w}"))?;
    }
    say(out, &format!("# imported {} object(s)", report.manifests.len()))?;
    Ok(report)
}

/// The first page of an ARM collection (a warning when it has more, or is not there).
async fn list(
    session: &Session,
    sp: &crate::arm::ServicePrincipal,
    collection: &str,
    api_version: &str,
    query: &[(&str, &str)],
    warnings: &mut Vec<String>,
) -> Result<Vec<Value>, CliError> {
    let listed = session
        .ctx
        .arm
        .get_with_query(sp, collection, api_version, query)
        .await
        .map_err(|source| CliError::ArmRead { path: collection.to_string(), source: Box::new(source) })?;
    let Some(listed) = listed else {
        warnings.push(format!("{collection} was not found"));
        return Ok(Vec::new());
    };
    if listed.get("nextLink").and_then(Value::as_str).is_some_and(|l| !l.is_empty()) {
        warnings.push(format!("{collection} has more pages; only the first was imported"));
    }
    Ok(listed["value"].as_array().cloned().unwrap_or_default())
}

/// A Kubernetes object name for an ARM name: lowercase, `[a-z0-9-]`, starting and ending
/// alphanumeric, at most 63 characters.
pub fn k8s_name(arm_name: &str) -> String {
    let mapped: String = arm_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let trimmed: String = mapped.trim_matches('-').chars().take(63).collect();
    let trimmed = trimmed.trim_end_matches('-').to_string();
    if trimmed.is_empty() { "imported".into() } else { trimmed }
}

/// Workspace properties that ARM reports but a user never sets.
const WORKSPACE_READ_ONLY: &[&str] = &[
    "provisioningState",
    "workspaceId",
    "discoveryUrl",
    "mlFlowTrackingUri",
    "tenantId",
    "serviceProvisionedResourceGroup",
    "privateLinkCount",
    "privateEndpointConnections",
    "notebookInfo",
    "storageHnsEnabled",
];

/// Spec values equal to what ARM fills in when they are not set: left out of imported manifests.
fn workspace_defaults() -> [(&'static str, Value); 8] {
    [
        ("kind", json!("Default")),
        ("sku", json!({"name": "Basic", "tier": "Basic"})),
        ("hbiWorkspace", json!(false)),
        ("allowPublicAccessWhenBehindVnet", json!(false)),
        ("v1LegacyMode", json!(false)),
        ("enableDataIsolation", json!(false)),
        ("publicNetworkAccess", json!("Enabled")),
        ("managedNetwork", json!({"isolationMode": "Disabled"})),
    ]
}

/// The identity as the CRD takes it: the type, and user-assigned identities as a list of ids.
fn identity_spec(arm: &Value) -> Option<Value> {
    let ty: String = arm.get("type")?.as_str()?.chars().filter(|c| !c.is_whitespace()).collect();
    if ty.eq_ignore_ascii_case("None") {
        return None;
    }
    let mut out = json!({ "type": ty });
    if let Some(uais) = arm.get("userAssignedIdentities").and_then(Value::as_object).filter(|m| !m.is_empty()) {
        out["userAssignedIdentities"] = json!(uais.keys().collect::<Vec<_>>());
    }
    Some(out)
}

fn workspace_manifest(arm: &Value, ctx: &ImportContext<'_>) -> Result<(String, String), String> {
    let arm_name = arm["name"].as_str().ok_or("no name")?;
    let id = arm["id"].as_str().ok_or("no id")?;
    let (subscription, resource_group, _) = ids::parse_workspace_id(id).ok_or_else(|| format!("{id} is not a workspace id"))?;
    let mut spec: Map<String, Value> = arm["properties"].as_object().cloned().unwrap_or_default();
    for key in WORKSPACE_READ_ONLY {
        spec.remove(*key);
    }
    if let Some(links) = spec.get("sharedPrivateLinkResources").and_then(Value::as_array) {
        let flat: Vec<Value> = links
            .iter()
            .map(|l| {
                let mut m = l["properties"].as_object().cloned().unwrap_or_default();
                m.insert("name".into(), l["name"].clone());
                Value::Object(m)
            })
            .collect();
        spec.insert("sharedPrivateLinkResources".into(), Value::Array(flat));
    }
    spec.insert("resourceGroup".into(), json!(resource_group));
    spec.insert("subscriptionId".into(), json!(subscription));
    for key in ["location", "sku", "kind"] {
        if let Some(v) = arm.get(key).filter(|v| !v.is_null()) {
            spec.insert(key.into(), v.clone());
        }
    }
    if let Some(tags) = user_tags(&arm["tags"]) {
        spec.insert("tags".into(), tags);
    }
    if let Some(identity) = arm.get("identity").and_then(identity_spec) {
        spec.insert("identity".into(), identity);
    }
    let name = k8s_name(arm_name);
    if name != arm_name {
        spec.insert("azureName".into(), json!(arm_name));
    }
    spec.insert("managementPolicy".into(), serde_json::to_value(ctx.management_policy).map_err(|e| e.to_string())?);
    // An imported workspace names its dependencies (storageAccount, keyVault, applicationInsights
    // above, as ARM shows them): the operator never creates any for it.
    spec.insert("createDependencies".into(), json!(false));
    // Through the typed spec: whatever the CRD has no field for (read-only, unknown) falls away.
    let typed: AmlWorkspaceSpec = crate::crd::from_value(Value::Object(spec))?;
    let mut spec = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    if let Value::Object(m) = &mut spec {
        for (key, default) in workspace_defaults() {
            if m.get(key) == Some(&default) {
                m.remove(key);
            }
        }
        if m.get("tags").and_then(Value::as_object).is_some_and(Map::is_empty) {
            m.remove("tags");
        }
    }
    let typed: AmlWorkspaceSpec = crate::crd::from_value(spec)?;
    let object = AmlWorkspace::new(&name, typed);
    let yaml = serde_yaml::to_string(&object).map_err(|e| e.to_string())?;
    Ok((name, yaml))
}

/// ARM's tags without the operator's owner tag (it is the operator's, not the spec's); `None`
/// when nothing is left.
fn user_tags(tags: &Value) -> Option<Value> {
    let mut map = tags.as_object()?.clone();
    map.retain(|k, _| !k.eq_ignore_ascii_case(crate::controller::owner::TAG));
    (!map.is_empty()).then_some(Value::Object(map))
}

/// Keys of a child's ARM `properties` that ARM fills in (outputs, state), never set by a user.
const CHILD_READ_ONLY: &[&str] = &[
    "provisioningState", "provisioningErrors", "createdOn", "modifiedOn", "isAttachedCompute", "scoringUri",
    "swaggerUri", "keys", "allocationState", "allocationStateTransitionTime", "currentNodeCount", "targetNodeCount",
    "nodeStateCounts", "errors", "state", "lastOperation", "osImageMetadata", "connectivityEndpoints", "applications",
    "createdBy", "versions", "dataDisks", "dataMounts",
];

/// The common part of a child manifest: name (and azureName), tags, management policy, and the
/// reference to the parent imported just before. `parent_field` is `workspaceRef` or `endpointRef`.
fn child_spec(arm: &Value, ctx: &ImportContext<'_>, parent_field: &str) -> Result<(String, Map<String, Value>), String> {
    let arm_name = arm["name"].as_str().ok_or("no name")?;
    let parent = ctx.parent.ok_or("no parent was imported")?;
    let mut spec = Map::new();
    spec.insert(parent_field.into(), json!({"name": parent.name}));
    if let Some(tags) = user_tags(&arm["tags"]) {
        spec.insert("tags".into(), tags);
    }
    let name = k8s_name(arm_name);
    if name != arm_name {
        spec.insert("azureName".into(), json!(arm_name));
    }
    spec.insert("managementPolicy".into(), serde_json::to_value(ctx.management_policy).map_err(|e| e.to_string())?);
    Ok((name, spec))
}

/// The user-settable fields of ARM `properties` (read-only ones removed).
fn settable(props: &Value) -> Map<String, Value> {
    let mut m = props.as_object().cloned().unwrap_or_default();
    for key in CHILD_READ_ONLY {
        m.remove(*key);
    }
    m.retain(|_, v| !v.is_null());
    m
}

/// Parses `spec` as `K`'s spec (dropping what the CRD has no field for) and renders the manifest.
fn render<K>(name: &str, spec: Map<String, Value>, kind: &str) -> Result<(String, String), String>
where
    K: serde::Serialize + serde::de::DeserializeOwned,
{
    let object = json!({
        "apiVersion": format!("{}/{}", crate::crd::GROUP, crate::crd::VERSION),
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    });
    crate::controller::kinds::parse(&object)?;
    let typed: K = crate::crd::from_value(object)?;
    let yaml = serde_yaml::to_string(&typed).map_err(|e| e.to_string())?;
    Ok((name.to_string(), yaml))
}

fn compute_manifest(arm: &Value, ctx: &ImportContext<'_>) -> Result<(String, String), String> {
    let (name, mut spec) = child_spec(arm, ctx, "workspaceRef")?;
    let props = &arm["properties"];
    let compute_type = props["computeType"].as_str().ok_or("no computeType")?;
    let field = match compute_type {
        "AmlCompute" => "amlCompute",
        "ComputeInstance" => "computeInstance",
        other => return Err(format!("computeType {other} is not managed by the operator")),
    };
    spec.insert("computeType".into(), json!(compute_type));
    for key in ["description", "disableLocalAuth"] {
        if let Some(v) = props.get(key).filter(|v| !v.is_null()) {
            spec.insert(key.into(), v.clone());
        }
    }
    let mut inner = settable(&props["properties"]);
    // Secrets never come back from ARM; a person adds the Secret references after importing.
    inner.remove("userAccountCredentials");
    spec.insert(field.into(), Value::Object(inner));
    render::<crate::crd::AmlCompute>(&name, spec, "AmlCompute")
}

fn endpoint_manifest(arm: &Value, ctx: &ImportContext<'_>) -> Result<(String, String), String> {
    let (name, mut spec) = child_spec(arm, ctx, "workspaceRef")?;
    let mut props = settable(&arm["properties"]);
    for key in ["traffic", "mirrorTraffic"] {
        if props.get(key).and_then(Value::as_object).is_some_and(Map::is_empty) {
            props.remove(key);
        }
    }
    spec.extend(props);
    if let Some(identity) = arm.get("identity").and_then(identity_spec) {
        spec.insert("identity".into(), identity);
    }
    render::<crate::crd::AmlOnlineEndpoint>(&name, spec, "AmlOnlineEndpoint")
}

fn deployment_manifest(arm: &Value, ctx: &ImportContext<'_>) -> Result<(String, String), String> {
    let (name, mut spec) = child_spec(arm, ctx, "endpointRef")?;
    let mut props = settable(&arm["properties"]);
    props.remove("endpointComputeType");
    spec.extend(props);
    if let Some(capacity) = arm.pointer("/sku/capacity").filter(|v| !v.is_null()) {
        spec.insert("instanceCount".into(), capacity.clone());
    }
    render::<crate::crd::AmlOnlineDeployment>(&name, spec, "AmlOnlineDeployment")
}

/// Version fields ARM fills in or a user never sets here.
const VERSION_READ_ONLY: &[&str] = &["provisioningState", "isAnonymous", "environmentType", "autoRebuild", "tags", "properties"];

/// An asset version: `{name}-{version}` as the object's name, the asset's name as `azureName`, its
/// settable fields, and its own tags and properties when it has any.
fn version_manifest<K>(arm: &Value, ctx: &ImportContext<'_>, kind: &str) -> Result<(String, String), String>
where
    K: serde::Serialize + serde::de::DeserializeOwned,
{
    let id = arm["id"].as_str().ok_or("no id")?;
    let version = arm["name"].as_str().ok_or("no name")?;
    let asset = id.rsplit('/').nth(2).ok_or_else(|| format!("{id} is not an asset version id"))?;
    let parent = ctx.parent.ok_or("no parent was imported")?;
    let props = &arm["properties"];
    let mut spec = settable(props);
    for key in VERSION_READ_ONLY {
        spec.remove(*key);
    }
    if spec.get("isArchived") == Some(&json!(false)) {
        spec.remove("isArchived");
    }
    if let Some(tags) = user_tags(&props["tags"]) {
        spec.insert("tags".into(), tags);
    }
    if let Some(map) = props.get("properties").and_then(Value::as_object).filter(|m| !m.is_empty()) {
        spec.insert("properties".into(), Value::Object(map.clone()));
    }
    spec.insert("workspaceRef".into(), json!({"name": parent.name}));
    spec.insert("azureName".into(), json!(asset));
    spec.insert("version".into(), json!(version));
    spec.insert("managementPolicy".into(), serde_json::to_value(ctx.management_policy).map_err(|e| e.to_string())?);
    render::<K>(&k8s_name(&format!("{asset}-{version}")), spec, kind)
}

fn model_manifest(arm: &Value, ctx: &ImportContext<'_>) -> Result<(String, String), String> {
    version_manifest::<crate::crd::AmlModelVersion>(arm, ctx, "AmlModelVersion")
}

fn environment_manifest(arm: &Value, ctx: &ImportContext<'_>) -> Result<(String, String), String> {
    version_manifest::<crate::crd::AmlEnvironmentVersion>(arm, ctx, "AmlEnvironmentVersion")
}

fn code_manifest(arm: &Value, ctx: &ImportContext<'_>) -> Result<(String, String), String> {
    version_manifest::<crate::crd::AmlCodeVersion>(arm, ctx, "AmlCodeVersion")
}

/// Datastore properties ARM fills in.
const DATASTORE_READ_ONLY: &[&str] = &["isDefault", "provisioningState", "credentials", "tags", "properties"];

/// A datastore, without its secret (ARM never returns it): the manifest's `storageCredentials`
/// names a Secret key to fill in, `<name>-credentials` / the secret's own key, and a warning says so.
fn datastore_manifest(arm: &Value, ctx: &ImportContext<'_>) -> Result<(String, String), String> {
    let (name, mut spec) = child_spec(arm, ctx, "workspaceRef")?;
    let props = &arm["properties"];
    let mut fields = settable(props);
    for key in DATASTORE_READ_ONLY {
        fields.remove(*key);
    }
    spec.extend(fields);
    if let Some(tags) = user_tags(&props["tags"]) {
        spec.insert("tags".into(), tags);
    }
    if let Some(map) = props.get("properties").and_then(Value::as_object).filter(|m| !m.is_empty()) {
        spec.insert("properties".into(), Value::Object(map.clone()));
    }
    let c = &props["credentials"];
    let kind = c["credentialsType"].as_str().unwrap_or("None");
    let mut credentials = json!({"credentialsType": kind});
    for key in ["clientId", "tenantId", "authorityUrl", "resourceUrl"] {
        if let Some(v) = c.get(key).filter(|v| v.is_string()) {
            credentials[key] = v.clone();
        }
    }
    let secret_key = match kind {
        "AccountKey" => Some("key"),
        "Sas" => Some("sasToken"),
        "ServicePrincipal" => Some("clientSecret"),
        _ => None,
    };
    if let Some(key) = secret_key {
        credentials["secretRef"] = json!({"name": format!("{name}-credentials"), "key": key});
    }
    spec.insert("storageCredentials".into(), credentials);
    render::<crate::crd::AmlDatastore>(&name, spec, "AmlDatastore")
}

/// An assignment made at the parent itself (`atScope()` also lists those inherited from above)
/// that grants one of the built-in roles the kind names.
fn at_parent_with_a_known_role(arm: &Value, ctx: &ImportContext<'_>) -> bool {
    let scope = arm.pointer("/properties/scope").and_then(Value::as_str).unwrap_or_default();
    let role = arm.pointer("/properties/roleDefinitionId").and_then(Value::as_str).unwrap_or_default();
    ctx.parent.is_some_and(|p| p.arm_id.eq_ignore_ascii_case(scope.trim_end_matches('/')))
        && BuiltInRole::from_guid(&ids::role_guid(role)).is_some()
}

fn role_assignment_manifest(arm: &Value, ctx: &ImportContext<'_>) -> Result<(String, String), String> {
    let parent = ctx.parent.ok_or("no parent was imported")?;
    let props = &arm["properties"];
    let text = |k: &str| props.get(k).and_then(Value::as_str);
    let principal = text("principalId").ok_or("no principalId")?;
    let role = BuiltInRole::from_guid(&ids::role_guid(text("roleDefinitionId").unwrap_or_default())).ok_or("not one of the built-in roles")?;
    let role_name = serde_json::to_value(role).map_err(|e| e.to_string())?;
    let role_name = role_name.as_str().unwrap_or_default();
    let name = k8s_name(&format!("{}-{role_name}-{}", parent.name, principal.get(..8).unwrap_or(principal)));
    let mut spec = Map::new();
    spec.insert("workspaceRef".into(), json!({"name": parent.name}));
    spec.insert("role".into(), json!(role_name));
    spec.insert("principalId".into(), json!(principal));
    spec.insert("principalType".into(), json!(text("principalType").unwrap_or("User")));
    if let Some(d) = text("description").filter(|d| !d.is_empty()) {
        spec.insert("description".into(), json!(d));
    }
    spec.insert("managementPolicy".into(), serde_json::to_value(ctx.management_policy).map_err(|e| e.to_string())?);
    render::<crate::crd::AmlRoleAssignment>(&name, spec, "AmlRoleAssignment")
}

#[cfg(test)]
mod tests {
    use super::k8s_name;

    #[test]
    fn arm_names_become_kubernetes_names() {
        assert_eq!(k8s_name("team-a"), "team-a");
        assert_eq!(k8s_name("Team_A"), "team-a");
        assert_eq!(k8s_name("_x_"), "x");
        assert_eq!(k8s_name("___"), "imported");
    }
}
