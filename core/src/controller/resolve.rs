//! Resolve: the IO before the pure build — the parent (for children) and the credentials.
//!
//! A child inherits subscription, resource group, location and credentials from its parent. Parent
//! objects are read generically (any kind in our group) so this file needs no per-kind code.

use super::credentials::{self, Found};
use super::error::reason;
use super::{AmlKind, Context, Error, Parent, ParentKind, ParentRef, Resolved};
use crate::arm::ids;
use crate::crd::{CredentialsRef, GROUP, VERSION, condition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DynamicObject};
use kube::ResourceExt;
use serde_json::Value;
use std::collections::BTreeMap;

/// Why resolution could not finish yet (not a failure: the object waits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// PascalCase reason, `WaitingForParent`.
    pub reason: &'static str,
    /// What the object waits for.
    pub message: String,
}

/// The outcome of resolution.
// `Ready` is the common case and is moved once per reconcile: boxing it would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Resolution {
    /// Everything needed is there: the parent and the credentials, with the Secret they came from.
    Ready(Resolved, Found),
    /// The parent is missing or not ready.
    Waiting(Waiting),
}


/// Resolves the parent (if any) and the credentials of `obj`.
pub async fn resolve<K: AmlKind>(obj: &K, ctx: &Context) -> Result<Resolution, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let own = obj.policies().credentials.cloned();
    let (parent, credentials) = match obj.parent() {
        None => (None, own),
        Some(ParentRef::ArmId(id)) => match arm_parent(obj, ctx, id, own.as_ref()).await? {
            Ok(p) => (Some(p), own),
            Err(w) => return Ok(Resolution::Waiting(w)),
        },
        Some(ParentRef::Object { kind, name }) => {
            let (parent, arm_id) = match ready_object(ctx, &ns, kind, name, reason::WAITING_FOR_PARENT, "").await? {
                Ok(ready) => ready,
                Err(w) => return Ok(Resolution::Waiting(w)),
            };
            let data = &parent.data;
            let credentials = match own {
                Some(c) => Some(c),
                None => inherited_credentials(ctx, &ns, kind, data).await?,
            };
            let (subscription, resource_group) = split_id(&arm_id);
            let location = data["status"]["location"]
                .as_str()
                .or_else(|| data["spec"]["location"].as_str())
                .unwrap_or_default()
                .to_string();
            let owner = OwnerReference {
                api_version: format!("{GROUP}/{VERSION}"),
                kind: kind.resource().kind,
                name: parent.name_any(),
                uid: parent.uid().unwrap_or_default(),
                controller: None,
                block_owner_deletion: None,
            };
            (Some(Parent { arm_id, subscription, resource_group, location, owner: Some(owner) }), credentials)
        }
    };
    let mut references = BTreeMap::new();
    for r in obj.references() {
        let why = match r.kind {
            ParentKind::Model => reason::WAITING_FOR_MODEL,
            ParentKind::Environment => reason::WAITING_FOR_ENVIRONMENT,
            ParentKind::Code => reason::WAITING_FOR_CODE,
            ParentKind::Datastore => reason::WAITING_FOR_DATASTORE,
            _ => reason::WAITING_FOR_PARENT,
        };
        match ready_object(ctx, &ns, r.kind, r.name, why, &format!(" ({})", r.field)).await? {
            Ok((_, arm_id)) => references.insert(r.field, arm_id),
            Err(w) => return Ok(Resolution::Waiting(w)),
        };
    }
    let found = credentials::resolve(ctx, &ns, credentials.as_ref()).await?;
    Ok(Resolution::Ready(Resolved { principal: found.principal.clone(), parent, references }, found))
}

/// The object `kind`/`name` in `ns` with its ARM id, once it exists and is Ready; else what the
/// caller waits for, with `why` as the reason and `field` naming where the spec names it.
async fn ready_object(
    ctx: &Context,
    ns: &str,
    kind: ParentKind,
    name: &str,
    why: &'static str,
    field: &str,
) -> Result<Result<(DynamicObject, String), Waiting>, Error> {
    let kind_name = kind.resource().kind;
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &kind.resource());
    let Some(object) = api.get_opt(name).await.map_err(|source| Error::Kube { what: "reading an object this one names", source })? else {
        return Ok(Err(Waiting { reason: why, message: format!("{kind_name} {ns}/{name}{field} does not exist yet") }));
    };
    let ready = object.data["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter().any(|c| c["type"] == condition::READY && (c["status"] == "True" || waits_for_children(kind, c)))
    });
    match object.data["status"]["armId"].as_str().map(str::to_string) {
        Some(arm_id) if ready => Ok(Ok((object, arm_id))),
        _ => Ok(Err(Waiting { reason: why, message: format!("{kind_name} {ns}/{name}{field} is not ready yet") })),
    }
}

/// Whether a parent's Ready condition says it waits only for its children (an endpoint whose traffic
/// names deployments that are not ready yet): the children must then go ahead, or neither ever will.
fn waits_for_children(kind: ParentKind, ready: &Value) -> bool {
    kind == ParentKind::Endpoint && ready["reason"] == reason::WAITING_FOR_DEPLOYMENTS
}

/// The credentials a parent uses: its own `spec.credentials`, else its workspace's (for an
/// endpoint or a compute named by reference).
async fn inherited_credentials(
    ctx: &Context,
    ns: &str,
    kind: ParentKind,
    data: &Value,
) -> Result<Option<CredentialsRef>, Error> {
    if let Some(c) = data["spec"].get("credentials").and_then(|c| serde_json::from_value(c.clone()).ok()) {
        return Ok(Some(c));
    }
    if matches!(kind, ParentKind::Endpoint | ParentKind::Compute)
        && let Some(ws) = data["spec"]["workspaceRef"]["name"].as_str()
    {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ParentKind::Workspace.resource());
        if let Some(w) = api.get_opt(ws).await.map_err(|source| Error::Kube { what: "reading the workspace", source })? {
            return Ok(w.data["spec"].get("credentials").and_then(|c| serde_json::from_value(c.clone()).ok()));
        }
    }
    Ok(None)
}

/// Subscription and resource group segments of an ARM id.
fn split_id(id: &str) -> (String, String) {
    let segs: Vec<&str> = id.split('/').collect();
    let find = |key: &str| {
        segs.iter()
            .position(|s| s.eq_ignore_ascii_case(key))
            .and_then(|i| segs.get(i + 1))
            .map(|s| s.to_string())
            .unwrap_or_default()
    };
    (find("subscriptions"), find("resourceGroups"))
}

/// A parent given by ARM id: it must exist in Azure; its location is learned once and cached.
async fn arm_parent<K: AmlKind>(
    obj: &K,
    ctx: &Context,
    id: &str,
    own: Option<&CredentialsRef>,
) -> Result<Result<Parent, Waiting>, Error> {
    let (subscription, resource_group) = split_id(id);
    if subscription.is_empty() || resource_group.is_empty() || !id.to_ascii_lowercase().contains("/providers/microsoft.machinelearningservices/") {
        return Err(Error::InvalidSpec(format!(
            "{id:?} is not an ARM id of a Microsoft.MachineLearningServices resource (expected {})",
            ids::workspace_id("<subscription>", "<resourceGroup>", "<name>")
        )));
    }
    let location = match ctx.cached_location(id) {
        Some(l) => l,
        None => {
            let ns = obj.namespace().unwrap_or_default();
            let sp = credentials::resolve(ctx, &ns, own).await?.principal;
            // Credentials for another subscription than the parent's: ARM answers 403 or 404, and
            // only a person can fix that, so it gets its own reason.
            let elsewhere = sp.subscription_id.as_deref().filter(|s| !s.eq_ignore_ascii_case(&subscription)).map(|credentials| {
                Error::ParentInAnotherSubscription {
                    arm_id: id.to_string(),
                    parent: subscription.clone(),
                    credentials: credentials.to_string(),
                }
            });
            let found = match ctx.arm.get(&sp, id, &ctx.config.api_version).await {
                Ok(found) => found,
                Err(source) if source.arm().is_some_and(|e| e.status == 403) && elsewhere.is_some() => {
                    return Err(elsewhere.unwrap_or(Error::Arm { action: "read", arm_id: id.to_string(), source }));
                }
                Err(source) => return Err(Error::Arm { action: "read", arm_id: id.to_string(), source }),
            };
            let Some(found) = found else {
                if let Some(e) = elsewhere {
                    return Err(e);
                }
                return Ok(Err(Waiting { reason: reason::WAITING_FOR_PARENT, message: format!("{id} does not exist in Azure") }));
            };
            let location = found["location"].as_str().unwrap_or_default().to_string();
            ctx.cache_location(id, &location);
            location
        }
    };
    Ok(Ok(Parent { arm_id: id.to_string(), subscription, resource_group, location, owner: None }))
}

#[cfg(test)]
mod tests {
    use super::split_id;

    #[test]
    fn splits_subscription_and_group_case_insensitively() {
        let (s, g) = split_id("/SUBSCRIPTIONS/abc/resourcegroups/rg-1/providers/Microsoft.MachineLearningServices/workspaces/w");
        assert_eq!((s.as_str(), g.as_str()), ("abc", "rg-1"));
    }
}
