//! Handlers of a workspace's assets (FACTS §11): model, environment and code containers and
//! versions, and datastores. Every write is synchronous (201 created, 200 updated; DELETE 200 or
//! 204), a version's PUT creates its container when missing, a version is immutable but for
//! `description`, `tags`, `properties`, `isArchived` and `stage` (409 `UserError`), and a
//! datastore's secrets are write-only (kept in [`Resource::secrets`], answered by `listSecrets`).
//!
//! Also here: how an online deployment's references to assets resolve (a dangling one is refused
//! 404 `UserError` with `ModelNotFound`, `EnvironmentNotFound` or `CodeNotFound` details).

use serde_json::{Map, Value, json};

use super::call::{ArmCall, not_found, parent_not_found, unknown_type};
use super::ml::immutables;
use super::model::{Kind, RenderCtx, ResId, render, user_part};
use super::reply::Reply;
use super::state::{Resource, State};
use super::util::{get_path, remove_path, set_path};

/// Fields of a version that may change on an existing version (FACTS §11.6).
const MUTABLE_VERSION_FIELDS: [&str; 5] = ["description", "tags", "properties", "isArchived", "stage"];

/// A datastore's storage kinds and the fields each requires (FACTS §11.5).
const DATASTORE_TYPES: [(&str, &[&str]); 5] = [
    ("AzureBlob", &["accountName", "containerName"]),
    ("AzureDataLakeGen1", &["storeName"]),
    ("AzureDataLakeGen2", &["accountName", "filesystem"]),
    ("AzureFile", &["accountName", "fileShareName"]),
    ("OneLake", &["artifact", "oneLakeWorkspaceName"]),
];

/// A datastore's credential kinds, the fields each requires beside `secrets`, and the secret.
const CREDENTIAL_TYPES: [(&str, &[&str], Option<&str>); 5] = [
    ("None", &[], None),
    ("AccountKey", &[], Some("key")),
    ("Sas", &[], Some("sasToken")),
    ("ServicePrincipal", &["clientId", "tenantId"], Some("clientSecret")),
    ("Certificate", &["clientId", "tenantId", "thumbprint"], Some("certificate")),
];

/// 400 `UserError`, the code the ML service gives a request it refuses, naming `target`.
fn user_error(message: impl Into<String>, target: &str) -> Reply {
    Reply::arm_error(400, "UserError", message).with_target(target)
}

impl ArmCall<'_> {
    /// PUT of an asset: a container, a version or a datastore.
    pub(crate) fn put_asset(&mut self, id: &ResId, raw: &[u8]) -> Reply {
        let kind = id.kind();
        if let Some(reply) = refused_name(id) {
            return reply;
        }
        if let Some(parent) = self.missing_workspace(id) {
            return parent_not_found(&parent);
        }
        let mut body = match ArmCall::parse_body(raw) {
            Ok(b) => b,
            Err(reply) => return reply,
        };
        if let Some(validator) = self.settings.validator
            && let Err(message) = validator(kind.type_name(), id.name(), &body)
        {
            return Reply::arm_error(400, "InvalidRequestContent", message).with_target(&id.canonical());
        }
        if let Err(reply) = asset_rules(kind, &body) {
            return reply;
        }
        let key = id.key();
        let existing = self.st.get(&key).map(|r| r.body.clone());
        let secrets = if kind == Kind::Datastore { take_secrets(&mut body) } else { None };
        if kind == Kind::Datastore
            && let Some(old) = &existing
            && let Err(reply) = immutables(kind, old, &body)
        {
            return reply;
        }
        let rendered = render(id, &body, existing.as_ref(), "Succeeded", &self.ctx());
        if kind.is_version()
            && let Some(old) = &existing
        {
            let changed = changed_fields(kind, old, &rendered);
            if !changed.is_empty() {
                let (container, version) = (id.parent().map(|p| p.name().to_owned()).unwrap_or_default(), id.name());
                return Reply::arm_error(
                    409,
                    "UserError",
                    format!(
                        "{} {container} with version {version} is already registered and cannot be changed (changed: {}). Register a new version instead.",
                        kind.asset_label(),
                        changed.join(", ")
                    ),
                );
            }
        }
        let status = if existing.is_some() { 200 } else { 201 };
        let entry = self.st.resources.entry(key).or_insert_with(|| Resource {
            id: id.clone(),
            body: Value::Null,
            op: None,
            keys: None,
            secrets: None,
        });
        entry.body = rendered;
        if kind == Kind::Datastore {
            entry.secrets = secrets;
        }
        let ctx = RenderCtx { tenant_id: &self.tenant_id, client_id: &self.client_id, now: self.now };
        if kind.is_version() {
            refresh_container(self.st, id, &ctx);
        }
        match self.st.get(&id.key()) {
            Some(res) => Reply::json(status, res.body.clone()),
            None => not_found(id),
        }
    }

    /// DELETE of an asset, synchronous: 200 when it existed (a container with its versions, and
    /// the role assignments at and under it), 204 when not.
    pub(crate) fn delete_asset(&mut self, id: &ResId) -> Reply {
        let key = id.key();
        if self.st.get(&key).is_none() {
            return Reply::empty(204);
        }
        for k in self.st.subtree(&key) {
            self.st.resources.remove(&k);
        }
        let under = format!("{key}/");
        self.st.role_assignments.retain(|k, _| !k.starts_with(&under));
        if id.kind().is_version() {
            let ctx = RenderCtx { tenant_id: &self.tenant_id, client_id: &self.client_id, now: self.now };
            refresh_container(self.st, id, &ctx);
        }
        Reply::empty(200)
    }

    /// POST actions on assets: a datastore's `listSecrets`.
    pub(crate) fn asset_action(&mut self, id: &ResId, action: &str) -> Reply {
        if id.kind() != Kind::Datastore || !action.eq_ignore_ascii_case("listSecrets") {
            return unknown_type(&format!("{}/{action}", id.kind().type_name()), &self.api_version);
        }
        if let Some(parent) = self.missing_parent(id) {
            return parent_not_found(&parent);
        }
        match self.st.get(&id.key()) {
            Some(res) => {
                let secrets = res.secrets.clone().unwrap_or_else(|| {
                    let kind = get_path(&res.body, "properties/credentials/credentialsType").cloned();
                    json!({ "secretsType": kind.unwrap_or(Value::from("None")) })
                });
                Reply::json(200, secrets)
            }
            None => not_found(id),
        }
    }

    /// The workspace of an asset, when it does not exist (a version's container need not).
    fn missing_workspace(&self, id: &ResId) -> Option<ResId> {
        let workspace = ResId { sub: id.sub.clone(), rg: id.rg.clone(), chain: id.chain[..1].to_vec() };
        self.st.get(&workspace.key()).is_none().then_some(workspace)
    }

    /// An online deployment's `model`, `environmentId` and `codeConfiguration.codeId` must name
    /// assets that exist: an ARM id of a version (any workspace the emulator holds) or
    /// `azureml:{name}:{version}` / `azureml:{name}@latest` in the deployment's workspace.
    /// Registry ids (`azureml://registries/...`) and other URIs are taken on trust.
    pub(crate) fn check_asset_references(&self, deployment: &ResId, body: &Value) -> Result<(), Reply> {
        let workspace = ResId {
            sub: deployment.sub.clone(),
            rg: deployment.rg.clone(),
            chain: deployment.chain[..1].to_vec(),
        };
        for (path, container, version) in [
            ("properties/model", Kind::ModelContainer, Kind::ModelVersion),
            ("properties/environmentId", Kind::EnvironmentContainer, Kind::EnvironmentVersion),
            ("properties/codeConfiguration/codeId", Kind::CodeContainer, Kind::CodeVersion),
        ] {
            let Some(reference) = get_path(body, path).and_then(Value::as_str) else {
                continue;
            };
            let Some((name, wanted)) = asset_reference(reference, &workspace, container, version) else {
                continue;
            };
            self.find_version(&name, wanted.as_deref(), container, version)?;
        }
        Ok(())
    }

    /// Finds version `wanted` (the latest when `None`) of the container `name` (a container id).
    fn find_version(&self, container_id: &ResId, wanted: Option<&str>, container: Kind, version: Kind) -> Result<(), Reply> {
        let label = container.asset_label();
        let missing = |message: String| {
            Reply::json(
                404,
                json!({"error": {
                    "code": "UserError",
                    "message": "The specified resource was not found.",
                    "details": [{"code": format!("{label}NotFound"), "message": message}],
                }}),
            )
        };
        let name = container_id.name();
        let Some(stored) = self.st.get(&container_id.key()) else {
            return Err(missing(format!("{label} container with name: {name} not found.")));
        };
        let wanted = match wanted {
            Some(v) => v.to_owned(),
            None => match get_path(&stored.body, "properties/latestVersion").and_then(Value::as_str) {
                Some(latest) => latest.to_owned(),
                None => return Err(missing(format!("{label} {name} version latest not found."))),
            },
        };
        let mut version_id = container_id.clone();
        version_id.chain.push((version, wanted.clone()));
        match self.st.get(&version_id.key()) {
            Some(_) => Ok(()),
            None => Err(missing(format!("{label} {name} version {wanted} not found."))),
        }
    }
}

/// What a deployment's reference names: the container's id and the version (`None`: the latest);
/// `None` for references the emulator takes on trust.
fn asset_reference(reference: &str, workspace: &ResId, container: Kind, version: Kind) -> Option<(ResId, Option<String>)> {
    let trimmed = reference.trim();
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("azureml://") {
        return None;
    }
    if let Some(short) = trimmed.strip_prefix("azureml:").or_else(|| trimmed.strip_prefix("AzureML:")) {
        if short.starts_with('/') {
            return asset_reference(short, workspace, container, version);
        }
        let (name, wanted) = match short.split_once('@') {
            Some((name, label)) if label.eq_ignore_ascii_case("latest") => (name, None),
            Some(_) => return None,
            None => match short.rsplit_once(':') {
                Some((name, v)) => (name, Some(v.to_owned())),
                None => return None,
            },
        };
        let mut id = workspace.clone();
        id.chain.push((container, name.to_owned()));
        return Some((id, wanted));
    }
    if !lower.starts_with("/subscriptions/") {
        return None;
    }
    let id = ResId::parse(trimmed)?;
    if id.kind() == version {
        let wanted = id.name().to_owned();
        return Some((id.parent()?, Some(wanted)));
    }
    (id.kind() == container).then_some((id, None))
}

/// The refusal of a bad asset name: a container's or datastore's (400 `InvalidResourceName`, as
/// other names) and a model version that is not a positive integer (400 `UserError`).
fn refused_name(id: &ResId) -> Option<Reply> {
    for (kind, name) in &id.chain[1..] {
        if kind.name_is_valid(name) {
            continue;
        }
        if *kind == Kind::ModelVersion {
            return Some(user_error(
                format!("Model version '{name}' is not valid: model versions must be positive integers."),
                "version",
            ));
        }
        return Some(Reply::arm_error(
            400,
            "InvalidResourceName",
            format!(
                "Resource name '{name}' is invalid for type '{}'. {}",
                kind.type_name(),
                kind.name_rule()
            ),
        ));
    }
    None
}

/// The service's rules on an asset body beyond the schema: an environment is built from an
/// `image` or a `build`, exactly one; a datastore names its type, the fields that type needs
/// and credentials with their secret.
fn asset_rules(kind: Kind, body: &Value) -> Result<(), Reply> {
    if !body.get("properties").is_some_and(Value::is_object) {
        return Err(user_error("The request content is missing the required property 'properties'.", "properties"));
    }
    let text = |path: &str| get_path(body, path).and_then(Value::as_str).filter(|s| !s.trim().is_empty());
    match kind {
        Kind::EnvironmentVersion => match (text("properties/image"), get_path(body, "properties/build").filter(|b| b.is_object())) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            (None, None) => Err(user_error(
                "An environment version needs one of 'properties.image' or 'properties.build'; neither was given.",
                "properties.image",
            )),
            (Some(_), Some(_)) => Err(user_error(
                "An environment version takes only one of 'properties.image' or 'properties.build'; both were given.",
                "properties.build",
            )),
        },
        Kind::Datastore => datastore_rules(body),
        _ => Ok(()),
    }
}

fn datastore_rules(body: &Value) -> Result<(), Reply> {
    let text = |path: &str| get_path(body, path).and_then(Value::as_str).filter(|s| !s.trim().is_empty());
    let missing = |field: &str| {
        let target = format!("properties.{}", field.replace('/', "."));
        user_error(format!("The request content is missing the required property '{target}'."), &target)
    };
    let Some(datastore_type) = text("properties/datastoreType") else {
        return Err(missing("datastoreType"));
    };
    let Some((_, fields)) = DATASTORE_TYPES.iter().find(|(t, _)| *t == datastore_type) else {
        let known: Vec<&str> = DATASTORE_TYPES.iter().map(|(t, _)| *t).collect();
        return Err(user_error(
            format!("The value '{datastore_type}' of 'properties.datastoreType' is not one of {}.", known.join(", ")),
            "properties.datastoreType",
        ));
    };
    if let Some(field) = fields.iter().find(|f| text(&format!("properties/{f}")).is_none()) {
        return Err(missing(field));
    }
    let Some(credentials_type) = text("properties/credentials/credentialsType") else {
        return Err(missing("credentials/credentialsType"));
    };
    let Some((_, fields, secret)) = CREDENTIAL_TYPES.iter().find(|(t, _, _)| *t == credentials_type) else {
        let known: Vec<&str> = CREDENTIAL_TYPES.iter().map(|(t, _, _)| *t).collect();
        return Err(user_error(
            format!("The value '{credentials_type}' of 'properties.credentials.credentialsType' is not one of {}.", known.join(", ")),
            "properties.credentials.credentialsType",
        ));
    };
    if let Some(field) = fields.iter().find(|f| text(&format!("properties/credentials/{f}")).is_none()) {
        return Err(missing(&format!("credentials/{field}")));
    }
    if let Some(secret) = secret
        && text(&format!("properties/credentials/secrets/{secret}")).is_none()
    {
        return Err(missing(&format!("credentials/secrets/{secret}")));
    }
    Ok(())
}

/// Takes a datastore's secrets out of its body, leaving their `secretsType` (as GET shows them).
pub(crate) fn take_secrets(body: &mut Value) -> Option<Value> {
    let secrets = get_path(body, "properties/credentials/secrets").filter(|s| s.is_object()).cloned()?;
    remove_path(body, "properties/credentials/secrets");
    let secrets_type = secrets.get("secretsType").cloned().or_else(|| get_path(body, "properties/credentials/credentialsType").cloned());
    if let Some(t) = secrets_type {
        set_path(body, "properties/credentials/secrets", json!({ "secretsType": t }));
    }
    Some(secrets)
}

/// The user-settable fields of `new` that differ from the stored version `old`, outside the ones
/// a version may change (`properties.modelUri`, ...).
fn changed_fields(kind: Kind, old: &Value, new: &Value) -> Vec<String> {
    let (old, new) = (user_part(kind, old), user_part(kind, new));
    let empty = Map::new();
    let props = |v: &Value| v.get("properties").and_then(Value::as_object).cloned().unwrap_or_else(|| empty.clone());
    let (old, new) = (props(&old), props(&new));
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|name| !MUTABLE_VERSION_FIELDS.contains(&name.as_str()))
        .filter(|name| old.get(*name).filter(|v| !v.is_null()) != new.get(*name).filter(|v| !v.is_null()))
        .map(|name| format!("properties.{name}"))
        .collect()
}

/// Keeps a version's container in step with its versions: creates it when missing (as azure-ai-ml
/// PUTs versions without a container, FACTS §11.2) and sets `latestVersion` (the highest integer
/// version, else the last created) and `nextVersion` (one above the highest integer version).
pub(crate) fn refresh_container(st: &mut State, version: &ResId, ctx: &RenderCtx<'_>) {
    let Some(container) = version.parent() else {
        return;
    };
    let key = container.key();
    let mut versions: Vec<(String, String)> = st
        .children(&key, version.kind())
        .into_iter()
        .map(|r| {
            let created = get_path(&r.body, "systemData/createdAt").and_then(Value::as_str).unwrap_or_default().to_owned();
            (created, r.id.name().to_owned())
        })
        .collect();
    if versions.is_empty() && st.get(&key).is_none() {
        return;
    }
    versions.sort();
    let highest = versions.iter().filter_map(|(_, v)| v.parse::<u64>().ok()).max();
    let latest = match highest {
        Some(n) => Some(n.to_string()),
        None => versions.last().map(|(_, v)| v.clone()),
    };
    let next = highest.map_or(1, |n| n.saturating_add(1)).to_string();
    let existing = st.get(&key).map(|r| r.body.clone());
    let mut body = match &existing {
        Some(old) => old.clone(),
        None => render(&container, &json!({"properties": {}}), None, "Succeeded", ctx),
    };
    match latest {
        Some(latest) => set_path(&mut body, "properties/latestVersion", Value::from(latest)),
        None => remove_path(&mut body, "properties/latestVersion"),
    }
    set_path(&mut body, "properties/nextVersion", Value::from(next));
    let entry = st.resources.entry(key).or_insert_with(|| Resource {
        id: container.clone(),
        body: Value::Null,
        op: None,
        keys: None,
        secrets: None,
    });
    entry.body = body;
}

#[cfg(test)]
mod tests;
