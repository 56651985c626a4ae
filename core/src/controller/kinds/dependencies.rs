//! A workspace's dependencies: the storage account, key vault, Log Analytics workspace and
//! Application Insights component the operator creates when the spec does not name them
//! (`arm-specs/FACTS.md` §10), as `az ml workspace create` does — but with names that hold.
//!
//! - **Names** come from the workspace's ARM id (the first letters of its name, a type tag and a
//!   SHA-256 prefix of the lowercased id), so a restart, a second operator or a re-created object
//!   always arrives at the same ones: no second set. Storage and key vault names are global in
//!   Azure: they are checked with `checkNameAvailability` before the first write, and a taken name
//!   is `Stalled` (`DependencyNameTaken`), naming the spec field that picks another.
//! - **Which ones** are the operator's: for a workspace to create, the storage account and key
//!   vault the spec does not name (unless `createDependencies: false`), and the Application Insights
//!   component (with its Log Analytics workspace) when the spec names none and the operator creates
//!   the storage account or key vault too — a spec that names both of those names all it wants (ARM
//!   does not require a component). For a workspace that exists, only those whose ids ARM shows on
//!   it and that equal the generated ones. What the spec names is never written to nor deleted.
//! - **Status first**: the ids go into `status.createdDependencies` before the first PUT, so a
//!   restart and a deletion both find them.
//! - **Every reconcile** reads each one (GET), creates what is missing, waits (no workspace write)
//!   while one provisions, and repairs drift from the body it wants — like any other drift.
//! - **Deletion** (`deletionPolicy: Delete`), after the workspace is gone: the component, then the
//!   Log Analytics workspace, the key vault (soft-deleted by Azure, its name reserved until purged:
//!   the operator never purges) and the storage account.

use crate::controller::status::record_outputs;
use crate::controller::{Context, Dependencies, DependencyMode, Error, PlannedDependency, Resolved, Target, drift};
use crate::arm::{self, ServicePrincipal, WriteOutcome};
use crate::crd::{AmlWorkspace, CreatedDependencies};
use serde_json::{Map, Value, json};
use std::time::Duration;
use tracing::info;

/// Tag put on every dependency the operator creates: the ARM id of the workspace it is for.
pub const OWNER_TAG: &str = "aml-operator-workspace";

/// How long a dependency delete in flight waits between checks.
const DELETE_POLL: Duration = Duration::from_secs(3);

/// One of the four dependency types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DependencyKind {
    /// `Microsoft.Storage/storageAccounts` (StorageV2, Standard_LRS, no hierarchical namespace).
    StorageAccount,
    /// `Microsoft.KeyVault/vaults` (access policies, standard SKU, the principal's tenant).
    KeyVault,
    /// `Microsoft.OperationalInsights/workspaces` (PerGB2018), for the component.
    LogAnalytics,
    /// `Microsoft.Insights/components` (workspace-based, web).
    ApplicationInsights,
}

impl DependencyKind {
    /// Creation order (the component needs its Log Analytics workspace).
    pub const ALL: [DependencyKind; 4] = [
        DependencyKind::StorageAccount,
        DependencyKind::KeyVault,
        DependencyKind::LogAnalytics,
        DependencyKind::ApplicationInsights,
    ];

    /// Deletion order: the component before its Log Analytics workspace.
    const DELETE_ORDER: [DependencyKind; 4] = [
        DependencyKind::ApplicationInsights,
        DependencyKind::LogAnalytics,
        DependencyKind::KeyVault,
        DependencyKind::StorageAccount,
    ];

    /// ARM resource type.
    pub fn resource_type(self) -> &'static str {
        match self {
            DependencyKind::StorageAccount => "Microsoft.Storage/storageAccounts",
            DependencyKind::KeyVault => "Microsoft.KeyVault/vaults",
            DependencyKind::LogAnalytics => "Microsoft.OperationalInsights/workspaces",
            DependencyKind::ApplicationInsights => "Microsoft.Insights/components",
        }
    }

    /// The api-version the operator speaks for this type (FACTS §10.1).
    pub fn api_version(self) -> &'static str {
        match self {
            DependencyKind::StorageAccount => "2023-05-01",
            DependencyKind::KeyVault => "2023-07-01",
            DependencyKind::LogAnalytics => "2022-10-01",
            DependencyKind::ApplicationInsights => "2020-02-02",
        }
    }

    /// In words, for messages.
    pub fn what(self) -> &'static str {
        match self {
            DependencyKind::StorageAccount => "storage account",
            DependencyKind::KeyVault => "key vault",
            DependencyKind::LogAnalytics => "Log Analytics workspace",
            DependencyKind::ApplicationInsights => "Application Insights component",
        }
    }

    /// The workspace property (and spec field) that names it; the Log Analytics workspace has none.
    pub fn workspace_field(self) -> Option<&'static str> {
        match self {
            DependencyKind::StorageAccount => Some("storageAccount"),
            DependencyKind::KeyVault => Some("keyVault"),
            DependencyKind::LogAnalytics => None,
            DependencyKind::ApplicationInsights => Some("applicationInsights"),
        }
    }

    fn recorded(self, c: &CreatedDependencies) -> Option<&String> {
        match self {
            DependencyKind::StorageAccount => c.storage_account.as_ref(),
            DependencyKind::KeyVault => c.key_vault.as_ref(),
            DependencyKind::LogAnalytics => c.log_analytics_workspace.as_ref(),
            DependencyKind::ApplicationInsights => c.application_insights.as_ref(),
        }
    }

    fn record(self, c: &mut CreatedDependencies, id: String) {
        let slot = match self {
            DependencyKind::StorageAccount => &mut c.storage_account,
            DependencyKind::KeyVault => &mut c.key_vault,
            DependencyKind::LogAnalytics => &mut c.log_analytics_workspace,
            DependencyKind::ApplicationInsights => &mut c.application_insights,
        };
        *slot = Some(id);
    }

    /// Paths ARM (or Azure ML) manages on the resource after creation, left out of drift: Azure ML
    /// adds its identities to the vault's access policies.
    fn unmanaged_paths(self) -> &'static [&'static str] {
        match self {
            DependencyKind::KeyVault => &["/properties/accessPolicies"],
            _ => &[],
        }
    }
}

/// The names the operator gives a workspace's dependencies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DependencyNames {
    /// Storage account: `{prefix}st{hash}`, 3–24 lowercase letters and digits.
    pub storage_account: String,
    /// Key vault: `{prefix}kv{hash}`, starts with a letter, 3–24 characters.
    pub key_vault: String,
    /// Log Analytics workspace: `{prefix}-log-{hash}`.
    pub log_analytics: String,
    /// Application Insights component: `{prefix}-appi-{hash}`.
    pub application_insights: String,
}

impl DependencyNames {
    /// The name of `kind`.
    pub fn of(&self, kind: DependencyKind) -> &str {
        match kind {
            DependencyKind::StorageAccount => &self.storage_account,
            DependencyKind::KeyVault => &self.key_vault,
            DependencyKind::LogAnalytics => &self.log_analytics,
            DependencyKind::ApplicationInsights => &self.application_insights,
        }
    }
}

/// The generated names for the workspace `workspace_arm_id`: deterministic, valid for each type,
/// starting with a letter (a vault name must; a workspace name need not).
pub fn generated_names(workspace_arm_id: &str) -> DependencyNames {
    let name = workspace_arm_id.rsplit('/').next().unwrap_or_default();
    let letters: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .skip_while(char::is_ascii_digit)
        .take(8)
        .collect();
    let prefix = if letters.is_empty() { "aml".to_string() } else { letters };
    let digest = ring::digest::digest(&ring::digest::SHA256, workspace_arm_id.to_ascii_lowercase().as_bytes());
    let hash: String = digest.as_ref().iter().take(6).map(|b| format!("{b:02x}")).collect();
    DependencyNames {
        storage_account: format!("{prefix}st{hash}"),
        key_vault: format!("{prefix}kv{hash}"),
        log_analytics: format!("{prefix}-log-{hash}"),
        application_insights: format!("{prefix}-appi-{hash}"),
    }
}

/// The names for this workspace: generated, or `spec.dependencyNames` where set.
pub fn names_for(ws: &AmlWorkspace, workspace_arm_id: &str) -> DependencyNames {
    let mut names = generated_names(workspace_arm_id);
    if let Some(chosen) = &ws.spec.dependency_names {
        if let Some(n) = &chosen.storage_account {
            names.storage_account = n.clone();
        }
        if let Some(n) = &chosen.key_vault {
            names.key_vault = n.clone();
        }
    }
    names
}

/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/{type}/{name}`.
pub fn dependency_id(subscription: &str, resource_group: &str, kind: DependencyKind, name: &str) -> String {
    format!("/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{}/{name}", kind.resource_type())
}

/// The body the operator wants for `kind` (what it creates, and what drift is measured against).
pub fn desired_body(kind: DependencyKind, target: &Target, tenant_id: &str, log_analytics_id: &str) -> Value {
    let tags = json!({ OWNER_TAG: target.arm_id });
    let location = &target.location;
    match kind {
        // FACTS §10.2: what Azure ML accepts as default storage (StorageV2, Standard, no HNS).
        DependencyKind::StorageAccount => json!({
            "location": location,
            "kind": "StorageV2",
            "sku": {"name": "Standard_LRS"},
            "tags": tags,
            "properties": {
                "isHnsEnabled": false,
                "supportsHttpsTrafficOnly": true,
                "minimumTlsVersion": "TLS1_2",
                "allowBlobPublicAccess": false,
            },
        }),
        // FACTS §10.3/§10.6: the access-policy vault `az ml workspace create` makes.
        DependencyKind::KeyVault => json!({
            "location": location,
            "tags": tags,
            "properties": {
                "tenantId": tenant_id,
                "sku": {"family": "A", "name": "standard"},
                "accessPolicies": [],
                "enableRbacAuthorization": false,
            },
        }),
        DependencyKind::LogAnalytics => json!({
            "location": location,
            "tags": tags,
            "properties": {"sku": {"name": "PerGB2018"}, "retentionInDays": 30},
        }),
        // FACTS §10.5: workspace-based (never classic, which would make a managed workspace).
        DependencyKind::ApplicationInsights => json!({
            "location": location,
            "kind": "web",
            "tags": tags,
            "properties": {
                "Application_Type": "web",
                "Flow_Type": "Bluefield",
                "Request_Source": "rest",
                "WorkspaceResourceId": log_analytics_id,
            },
        }),
    }
}

/// The dependencies the operator manages for this workspace, in creation order, with their ids.
/// `actual` is the workspace as ARM shows it (None: it is to be created).
fn managed(
    ws: &AmlWorkspace,
    target: &Target,
    actual: Option<&Value>,
) -> Result<Vec<(DependencyKind, String)>, Error> {
    let names = names_for(ws, &target.arm_id);
    let id = |kind| dependency_id(&target.subscription, &target.resource_group, kind, names.of(kind));
    let spec = &ws.spec;
    let named = |kind| match kind {
        DependencyKind::StorageAccount => spec.storage_account.is_some(),
        DependencyKind::KeyVault => spec.key_vault.is_some(),
        DependencyKind::ApplicationInsights => spec.application_insights.is_some(),
        DependencyKind::LogAnalytics => false,
    };
    let mut out = Vec::new();
    for kind in [DependencyKind::StorageAccount, DependencyKind::KeyVault, DependencyKind::ApplicationInsights] {
        if named(kind) {
            continue;
        }
        let field = kind.workspace_field().unwrap_or_default();
        let mine = id(kind);
        match actual {
            // An existing workspace: only what it already uses and the operator would have made.
            Some(arm) => {
                let uses = arm.pointer(&format!("/properties/{field}")).and_then(Value::as_str);
                if uses.is_some_and(|u| u.eq_ignore_ascii_case(&mine)) {
                    out.push((kind, mine));
                }
            }
            // Application Insights is optional in ARM: a spec that names its storage account and
            // key vault names all it wants, and gets no component it did not ask for.
            None if kind == DependencyKind::ApplicationInsights => {
                if spec.create_dependencies.unwrap_or(true) && !out.is_empty() {
                    out.push((kind, mine));
                }
            }
            None if spec.create_dependencies.unwrap_or(true) => out.push((kind, mine)),
            None => return Err(Error::DependencyMissing { field, what: kind.what() }),
        }
    }
    if let Some(i) = out.iter().position(|(k, _)| *k == DependencyKind::ApplicationInsights) {
        out.insert(i, (DependencyKind::LogAnalytics, id(DependencyKind::LogAnalytics)));
    }
    Ok(out)
}

fn state_of(v: &Value) -> &str {
    v.pointer("/properties/provisioningState").and_then(Value::as_str).unwrap_or("Succeeded")
}

fn arm_error(action: &'static str, arm_id: &str) -> impl FnOnce(arm::Error) -> Error + use<> {
    let arm_id = arm_id.to_string();
    move |source| Error::Arm { action, arm_id, source }
}

/// ARM codes of a PUT refused because a global name is taken (elsewhere, or by a soft-deleted vault).
const NAME_TAKEN_CODES: &[&str] = &["StorageAccountAlreadyTaken", "StorageAccountAlreadyExists", "VaultAlreadyExists", "ConflictError"];

/// The workspace's `dependencies` hook (see the module docs).
pub async fn ensure(
    ws: &AmlWorkspace,
    ctx: &Context,
    resolved: &Resolved,
    target: &Target,
    mut body: Value,
    actual: Option<&Value>,
    mode: DependencyMode,
) -> Result<Dependencies, Error> {
    let previous = ws.status.as_ref().and_then(|s| s.created_dependencies.clone()).unwrap_or_default();
    let observe = ws.spec.common.management_policy == Some(crate::crd::ManagementPolicy::Observe);
    let keep_previous = |body: Value| Dependencies { body, status: status_of(&previous), ..Dependencies::default() };
    if observe {
        return Ok(keep_previous(body));
    }
    let deps = managed(ws, target, actual)?;
    if deps.is_empty() {
        return Ok(keep_previous(body));
    }
    let mut created = previous.clone();
    for (kind, id) in &deps {
        if let (Some(field), Some(props)) = (kind.workspace_field(), body.get_mut("properties").and_then(Value::as_object_mut)) {
            props.insert(field.to_string(), json!(id));
        }
        kind.record(&mut created, id.clone());
    }
    let sp = &resolved.principal;
    let law_id = deps.iter().find(|(k, _)| *k == DependencyKind::LogAnalytics).map(|(_, id)| id.clone()).unwrap_or_default();
    let want = |kind| desired_body(kind, target, &sp.tenant_id, &law_id);

    // Observe every one.
    let mut seen = Vec::new();
    for (kind, id) in &deps {
        let found = ctx.arm.get(sp, id, kind.api_version()).await.map_err(arm_error("read", id))?;
        seen.push((*kind, id.clone(), found));
    }
    if mode == DependencyMode::ReadOnly {
        // What exists of what the operator would have made is what it created.
        let mut known = previous.clone();
        for (kind, id, found) in &seen {
            if found.is_some() {
                kind.record(&mut known, id.clone());
            }
        }
        let planned = seen
            .iter()
            .map(|(kind, id, found)| PlannedDependency {
                resource_type: kind.resource_type(),
                arm_id: id.clone(),
                exists: found.is_some(),
                drifted: found.as_ref().map(|f| drift::diff_except(&want(*kind), f, kind.unmanaged_paths())).unwrap_or_default(),
            })
            .collect();
        return Ok(Dependencies { body, pending: None, status: status_of(&known), planned });
    }

    // Names of the global ones still to create: checked before the first write. One the operator
    // recorded earlier was checked then (its create may be in flight, holding the name).
    for (kind, id, found) in &seen {
        let global = matches!(kind, DependencyKind::StorageAccount | DependencyKind::KeyVault);
        if found.is_none() && global && kind.recorded(&previous).is_none_or(|r| !r.eq_ignore_ascii_case(id)) {
            check_name(ctx, sp, target, *kind, id).await?;
        }
    }
    // Status first: what is about to be created is recorded before it is.
    if seen.iter().any(|(_, _, found)| found.is_none()) && created != previous {
        record_outputs(ctx, ws, target, &status_of(&created)).await?;
    }

    let mut waiting = Vec::new();
    let mut law_ready = false;
    for (kind, id, found) in &seen {
        let desired = want(*kind);
        let state = match found {
            None if *kind == DependencyKind::ApplicationInsights && !law_ready => {
                waiting.push(format!("{} {} (after its Log Analytics workspace)", kind.what(), id));
                continue;
            }
            None => {
                info!(arm_id = %id, "creating a workspace dependency");
                write(ctx, sp, *kind, id, &desired).await?
            }
            Some(actual) => {
                let state = state_of(actual).to_string();
                if state == "Failed" || state == "Canceled" {
                    return Err(Error::DependencyFailed { what: kind.what(), arm_id: id.clone(), state });
                }
                let drifted = drift::diff_except(&desired, actual, kind.unmanaged_paths());
                if state == "Succeeded" && !drifted.is_empty() {
                    info!(arm_id = %id, paths = ?drifted, "repairing drift of a workspace dependency");
                    let mut repair = desired.clone();
                    // A vault PUT replaces its access policies: keep the ones Azure ML added.
                    if let (Some(policies), Some(props)) =
                        (actual.pointer("/properties/accessPolicies"), repair.get_mut("properties").and_then(Value::as_object_mut))
                    {
                        props.insert("accessPolicies".into(), policies.clone());
                    }
                    write(ctx, sp, *kind, id, &repair).await?
                } else {
                    state
                }
            }
        };
        if *kind == DependencyKind::LogAnalytics {
            law_ready = state == "Succeeded";
        }
        if state != "Succeeded" {
            waiting.push(format!("{} {} ({state})", kind.what(), id));
        }
    }
    let pending = (!waiting.is_empty()).then(|| {
        ("CreatingDependencies".to_string(), format!("Waiting for the workspace's dependencies: {}", waiting.join(", ")))
    });
    Ok(Dependencies { body, pending, status: status_of(&created), planned: Vec::new() })
}

/// PUTs a dependency; returns the state it is in after the answer (`Succeeded` when done).
async fn write(ctx: &Context, sp: &ServicePrincipal, kind: DependencyKind, id: &str, body: &Value) -> Result<String, Error> {
    let outcome = ctx.arm.put(sp, id, kind.api_version(), body).await.map_err(|source| {
        match source.arm().filter(|e| NAME_TAKEN_CODES.iter().any(|c| e.code.eq_ignore_ascii_case(c))) {
            Some(e) => name_taken(kind, id, e.message.clone()),
            None => Error::Arm { action: "create", arm_id: id.to_string(), source },
        }
    })?;
    Ok(match outcome {
        WriteOutcome::Accepted { body, .. } => body.as_ref().map(state_of).filter(|s| *s != "Succeeded").unwrap_or("Creating").to_string(),
        WriteOutcome::Done(Some(body)) => state_of(&body).to_string(),
        WriteOutcome::Done(None) => "Succeeded".to_string(),
    })
}

fn name_taken(kind: DependencyKind, id: &str, detail: String) -> Error {
    Error::DependencyNameTaken {
        what: kind.what(),
        field: kind.workspace_field().unwrap_or_default(),
        name: id.rsplit('/').next().unwrap_or_default().to_string(),
        detail,
    }
}

/// `checkNameAvailability` of a storage account or key vault name.
async fn check_name(ctx: &Context, sp: &ServicePrincipal, target: &Target, kind: DependencyKind, id: &str) -> Result<(), Error> {
    let name = id.rsplit('/').next().unwrap_or_default();
    let provider = kind.resource_type().split('/').next().unwrap_or_default();
    let path = format!("/subscriptions/{}/providers/{provider}/checkNameAvailability", target.subscription);
    let answer = ctx
        .arm
        .post(sp, &path, kind.api_version(), Some(&json!({"name": name, "type": kind.resource_type()})))
        .await
        .map_err(arm_error("name check", id))?;
    let result = match answer {
        arm::PostOutcome::Done(Some(v)) => v,
        _ => return Ok(()),
    };
    if result.get("nameAvailable").and_then(Value::as_bool) == Some(false) {
        let reason = result.get("reason").and_then(Value::as_str).unwrap_or("unavailable");
        let message = result.get("message").and_then(Value::as_str).unwrap_or_default();
        return Err(name_taken(kind, id, format!("{reason}: {message}")));
    }
    Ok(())
}

fn status_of(created: &CreatedDependencies) -> Map<String, Value> {
    let mut out = Map::new();
    if *created != CreatedDependencies::default()
        && let Ok(v) = serde_json::to_value(created)
    {
        out.insert("createdDependencies".into(), v);
    }
    out
}

/// The workspace's `delete_dependencies` hook: deletes, in order, what `status.createdDependencies`
/// lists (never an id the spec names). `DeletePending` while one is still being deleted.
pub async fn delete(ws: &AmlWorkspace, ctx: &Context, sp: &ServicePrincipal) -> Result<(), Error> {
    let Some(created) = ws.status.as_ref().and_then(|s| s.created_dependencies.clone()) else {
        return Ok(());
    };
    let spec = &ws.spec;
    let named: Vec<&String> = [&spec.storage_account, &spec.key_vault, &spec.application_insights].into_iter().flatten().collect();
    for kind in DependencyKind::DELETE_ORDER {
        let Some(id) = kind.recorded(&created) else { continue };
        if named.iter().any(|n| n.eq_ignore_ascii_case(id)) {
            continue;
        }
        let Some(found) = ctx.arm.get(sp, id, kind.api_version()).await.map_err(arm_error("read", id))? else {
            continue;
        };
        if state_of(&found) == "Deleting" {
            return Err(Error::DeletePending { arm_id: id.clone(), retry_after: DELETE_POLL, gate: None });
        }
        info!(arm_id = %id, "deleting a workspace dependency the operator created");
        match ctx.arm.delete(sp, id, kind.api_version(), &[]).await {
            Ok(arm::DeleteOutcome::Gone) => {}
            Err(e) if e.class() == arm::ErrorClass::NotFound => {}
            Err(source) => return Err(Error::Arm { action: "delete", arm_id: id.clone(), source }),
            Ok(arm::DeleteOutcome::Accepted(op)) => {
                return Err(Error::DeletePending { arm_id: id.clone(), retry_after: op.retry_after.max(Duration::from_secs(1)), gate: None });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_follow_each_types_rules_and_hold() {
        let id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/1st-Team_Workspace-with-a-long-name";
        let a = generated_names(id);
        assert_eq!(a, generated_names(&id.to_ascii_uppercase()), "case-insensitive ids give one set");
        assert!(a.storage_account.len() <= 24 && a.storage_account.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()), "{a:?}");
        assert!(a.key_vault.len() <= 24 && a.key_vault.starts_with(|c: char| c.is_ascii_alphabetic()), "{a:?}");
        assert!(a.storage_account.starts_with("stteamwo"), "{a:?}");
        let other = generated_names(&id.replace("/rg/", "/rg2/"));
        assert_ne!(a.storage_account, other.storage_account, "another resource group, another name");
        let digits = generated_names("/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/123");
        assert!(digits.key_vault.starts_with("amlkv"), "{digits:?}");
    }
}
