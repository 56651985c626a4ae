//! AmlRoleAssignment on the pipeline: `Microsoft.Authorization/roleAssignments` at api-version
//! 2022-04-01 (not the ML one), under a workspace or compute object, or an ARM scope given by id.
//!
//! What differs from the ML kinds:
//! - the name is a UUIDv5 of (scope, principal, role) ([`ids::role_assignment_name`]), so a
//!   restart or a re-apply always PUTs the same assignment;
//! - ARM allows one assignment per (scope, role, principal): one that already exists under another
//!   name is found before creating ([`AmlKind::locate`]) or from the 409 `RoleAssignmentExists`
//!   ([`AmlKind::write_failed`]) and adopted; `status.adoptedAssignmentId` names it and the object
//!   tracks it from then on;
//! - `PrincipalNotFound` right after a principal was created is Entra replication: retried with
//!   backoff for `Config::principal_replication_grace`, then Stalled;
//! - a 403 names `Microsoft.Authorization/roleAssignments/write` and the roles that grant it;
//! - ARM answers the role definition id in the tenant form (`/providers/...`) for one sent in the
//!   subscription form: role ids are compared by their GUID.
//!
//! Writes are synchronous (201/200 with the assignment; no long-running operation).

use crate::controller::{AmlKind, BoxFuture, Config, Context, Error, ParentKind, ParentRef, Refined, Resolved, Target};
use crate::arm::{self, ids};
use crate::crd::{AmlRoleAssignment, CommonSpec, CommonStatus, condition};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value, json};

/// The Microsoft.Authorization api-version this kind speaks.
pub const API_VERSION: &str = "2022-04-01";

const ROLE_DEFINITION_ID: &str = "/properties/roleDefinitionId";
const PRINCIPAL_ID: &str = "/properties/principalId";

impl AmlRoleAssignment {
    /// The role definition GUID the spec names (built-in role or custom `roleDefinitionId`).
    pub fn role_guid(&self) -> Option<String> {
        match (&self.spec.role, &self.spec.role_definition_id) {
            (Some(role), _) => Some(role.guid().to_string()),
            (None, Some(id)) => Some(ids::role_guid(id)),
            (None, None) => None,
        }
    }

    /// The scope the assignment is at: the parent's ARM id, or `scopeId`.
    fn scope(&self, resolved: &Resolved) -> Result<String, Error> {
        let scope = match (&resolved.parent, &self.spec.scope_id) {
            (Some(parent), _) => parent.arm_id.clone(),
            (None, Some(id)) => id.clone(),
            (None, None) => {
                return Err(Error::InvalidSpec("set one of workspaceRef, computeRef or scopeId".into()));
            }
        };
        let scope = scope.trim_end_matches('/').to_string();
        let lower = scope.to_ascii_lowercase();
        let shaped = lower.starts_with("/subscriptions/") || lower.starts_with("/providers/microsoft.management/managementgroups/");
        if !shaped || scope.contains("//") || scope.contains(['?', '#', ' ']) {
            return Err(Error::InvalidSpec(format!(
                "scopeId {scope:?} is not an ARM scope: use /subscriptions/{{sub}}, a resource group, a resource id, or /providers/Microsoft.Management/managementGroups/{{id}}"
            )));
        }
        Ok(scope)
    }

    /// How long the object has been not Ready (0 when it is Ready or has no status yet).
    fn not_ready_for(&self) -> i64 {
        let ready = self.status.as_ref().and_then(|s| s.common.conditions.iter().find(|c| c.type_ == condition::READY));
        match ready {
            Some(c) if c.status != "True" => Timestamp::now().as_second() - c.last_transition_time.0.as_second(),
            _ => 0,
        }
    }
}

/// The scope of a role assignment id (`{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`).
fn scope_of(assignment_id: &str) -> Option<&str> {
    let lower = assignment_id.to_ascii_lowercase();
    let at = lower.rfind(&format!("/{}/", ids::ROLE_ASSIGNMENTS.to_ascii_lowercase()))?;
    Some(&assignment_id[..at])
}

impl AmlKind for AmlRoleAssignment {
    const ARM_TYPE: &'static str = "Microsoft.Authorization/roleAssignments";
    /// No tags in ARM; the assignment's name is derived from scope, role and principal, so two
    /// objects asking for the same grant share it.
    const OWNER_TAG: Option<&'static str> = None;
    const PARENT_KINDS: &'static [ParentKind] = &[ParentKind::Workspace, ParentKind::Compute];

    fn arm_api_version(_config: &Config) -> &str {
        API_VERSION
    }

    fn common_spec(&self) -> &CommonSpec {
        &self.spec.common
    }

    fn common_status(&self) -> Option<&CommonStatus> {
        self.status.as_ref().map(|s| &s.common)
    }

    fn parent(&self) -> Option<ParentRef<'_>> {
        match (&self.spec.workspace_ref, &self.spec.compute_ref) {
            (Some(ws), _) => Some(ParentRef::Object { kind: ParentKind::Workspace, name: &ws.name }),
            (None, Some(c)) => Some(ParentRef::Object { kind: ParentKind::Compute, name: &c.name }),
            // A `scopeId` may be any ARM scope (not only an ML resource): it needs no resolving.
            (None, None) => None,
        }
    }

    fn target(&self, resolved: &Resolved) -> Result<Target, Error> {
        let scope = self.scope(resolved)?;
        let role = self.role_guid().ok_or_else(|| Error::InvalidSpec("set one of role or roleDefinitionId".into()))?;
        let derived = ids::role_assignment_id(&scope, &ids::role_assignment_name(&scope, &self.spec.principal_id, &role));
        // An adopted assignment (granted under another name before this object) stays the one
        // this object tracks.
        let adopted = self
            .status
            .as_ref()
            .and_then(|s| s.adopted_assignment_id.clone())
            .filter(|id| scope_of(id).is_some_and(|s| s.eq_ignore_ascii_case(&scope)));
        let arm_id = adopted.unwrap_or(derived);
        let (subscription, resource_group) = split_scope(&scope);
        Ok(Target {
            subscription,
            resource_group,
            name: arm_id.rsplit('/').next().unwrap_or_default().to_string(),
            arm_id,
            location: String::new(),
        })
    }

    fn desired(&self, target: &Target) -> Result<Value, Error> {
        let spec = &self.spec;
        let subscription = (!target.subscription.is_empty()).then_some(target.subscription.as_str());
        let role_definition_id = match (&spec.role, &spec.role_definition_id) {
            (Some(role), _) => ids::role_definition_id(subscription, role.guid()),
            (None, Some(id)) if id.contains('/') => id.clone(),
            (None, Some(guid)) => ids::role_definition_id(subscription, guid),
            (None, None) => return Err(Error::InvalidSpec("set one of role or roleDefinitionId".into())),
        };
        let mut properties = Map::new();
        properties.insert("roleDefinitionId".into(), json!(role_definition_id));
        properties.insert("principalId".into(), json!(spec.principal_id));
        properties.insert("principalType".into(), json!(spec.principal_type));
        if let Some(d) = &spec.description {
            properties.insert("description".into(), json!(d));
        }
        Ok(json!({ "properties": properties }))
    }

    fn outputs(arm: &Value) -> Map<String, Value> {
        let mut out = Map::new();
        let text = |p: &str| arm.pointer(p).and_then(Value::as_str);
        if let Some(scope) = text("/properties/scope") {
            out.insert("scope".into(), json!(scope));
        }
        if let Some(role) = text(ROLE_DEFINITION_ID) {
            out.insert("roleDefinitionId".into(), json!(role));
        }
        // Not under the name this operator derives: someone else created it, this object adopted it.
        let derived = match (text("/id").and_then(scope_of), text(PRINCIPAL_ID), text(ROLE_DEFINITION_ID)) {
            (Some(scope), Some(principal), Some(role)) => Some(ids::role_assignment_name(scope, principal, &ids::role_guid(role))),
            _ => None,
        };
        if let (Some(derived), Some(name), Some(id)) = (derived, text("/name"), text("/id"))
            && !derived.eq_ignore_ascii_case(name)
        {
            out.insert("adoptedAssignmentId".into(), json!(id));
        }
        out
    }

    fn refine<'a>(
        &'a self,
        _ctx: &'a Context,
        _resolved: &'a Resolved,
        _target: &'a Target,
        mut desired: Value,
        actual: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<Refined, Error>> {
        Box::pin(async move {
            // Same role or principal written another way (tenant-form role id, other case): not drift.
            if let Some(actual) = actual {
                for pointer in [ROLE_DEFINITION_ID, PRINCIPAL_ID] {
                    let theirs = actual.pointer(pointer).and_then(Value::as_str).map(str::to_string);
                    let Some(theirs) = theirs else { continue };
                    if let Some(ours) = desired.pointer_mut(pointer)
                        && ours.as_str().is_some_and(|o| ids::role_guid(o) == ids::role_guid(&theirs))
                    {
                        *ours = Value::String(theirs);
                    }
                }
            }
            Ok(Refined { body: desired, waiting: None })
        })
    }

    fn within_bounds(&self, config: &Config) -> Result<(), Error> {
        config.role_assignment_bounds.check(self).map_err(Error::RoleAssignmentOutOfBounds)
    }

    fn immutable_paths() -> &'static [&'static str] {
        &[ROLE_DEFINITION_ID, PRINCIPAL_ID, "/properties/principalType"]
    }

    fn locate<'a>(
        &'a self,
        ctx: &'a Context,
        resolved: &'a Resolved,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<Option<Value>, Error>> {
        Box::pin(async move { self.equivalent(ctx, resolved, target).await })
    }

    fn write_failed<'a>(
        &'a self,
        ctx: &'a Context,
        resolved: &'a Resolved,
        target: &'a Target,
        verb: &'static str,
        error: arm::Error,
    ) -> BoxFuture<'a, Result<Value, Error>> {
        Box::pin(async move {
            let code = error.arm().map(|e| (e.status, e.code.clone()));
            match code {
                Some((409, code)) if code.eq_ignore_ascii_case("RoleAssignmentExists") => {
                    match self.equivalent(ctx, resolved, target).await? {
                        Some(existing) => Ok(existing),
                        None => Err(Error::Arm { action: verb, arm_id: target.arm_id.clone(), source: error }),
                    }
                }
                Some((_, code)) if code.eq_ignore_ascii_case("PrincipalNotFound") => {
                    let grace = ctx.config.principal_replication_grace.as_secs();
                    let waited = u64::try_from(self.not_ready_for()).unwrap_or(0);
                    Err(Error::PrincipalNotFound {
                        principal_id: self.spec.principal_id.clone(),
                        stalled: waited >= grace,
                        source: error,
                    })
                }
                Some((403, _)) => Err(Error::RoleAssignmentForbidden {
                    scope: scope_of(&target.arm_id).unwrap_or(&target.arm_id).to_string(),
                    source: error,
                }),
                _ => Err(Error::Arm { action: verb, arm_id: target.arm_id.clone(), source: error }),
            }
        })
    }
}

impl AmlRoleAssignment {
    /// The assignment at this object's scope that grants its role to its principal under another
    /// name than the target's, if there is one (ARM allows only one).
    async fn equivalent(&self, ctx: &Context, resolved: &Resolved, target: &Target) -> Result<Option<Value>, Error> {
        let Some(scope) = scope_of(&target.arm_id) else { return Ok(None) };
        let Some(role) = self.role_guid() else { return Ok(None) };
        let collection = format!("{scope}/{}", ids::ROLE_ASSIGNMENTS);
        let filter = format!("principalId eq '{}'", self.spec.principal_id);
        let listed = ctx
            .arm
            .get_with_query(&resolved.principal, &collection, API_VERSION, &[("$filter", filter.as_str())])
            .await
            .map_err(|source| Error::Arm { action: "list", arm_id: collection.clone(), source })?;
        let found = listed
            .as_ref()
            .and_then(|l| l["value"].as_array())
            .into_iter()
            .flatten()
            .find(|a| {
                let text = |p: &str| a.pointer(p).and_then(Value::as_str).unwrap_or_default();
                text("/properties/scope").trim_end_matches('/').eq_ignore_ascii_case(scope)
                    && text(PRINCIPAL_ID).eq_ignore_ascii_case(&self.spec.principal_id)
                    && ids::role_guid(text(ROLE_DEFINITION_ID)) == role
                    && !text("/id").eq_ignore_ascii_case(&target.arm_id)
            })
            .cloned();
        Ok(found)
    }
}

/// Subscription and resource group of a scope (empty when it has none).
fn split_scope(scope: &str) -> (String, String) {
    let segs: Vec<&str> = scope.split('/').filter(|s| !s.is_empty()).collect();
    let after = |key: &str| {
        segs.windows(2)
            .find(|w| w[0].eq_ignore_ascii_case(key))
            .map(|w| w[1].to_string())
            .unwrap_or_default()
    };
    (after("subscriptions"), after("resourceGroups"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_of_assignment_ids() {
        let id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws/providers/Microsoft.Authorization/roleAssignments/abc";
        assert_eq!(scope_of(id), Some("/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"));
        assert_eq!(scope_of("/subscriptions/s/providers/microsoft.authorization/roleassignments/x"), Some("/subscriptions/s"));
        assert_eq!(scope_of("/subscriptions/s"), None);
        assert_eq!(split_scope("/subscriptions/s/resourceGroups/rg"), ("s".into(), "rg".into()));
    }

    #[test]
    fn adopted_is_reported_only_for_foreign_names() {
        let scope = "/subscriptions/s/resourceGroups/rg";
        let principal = "aaaaaaaa-0000-0000-0000-000000000001";
        let role = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
        let ours = ids::role_assignment_name(scope, principal, role);
        let body = |name: &str| {
            json!({"id": ids::role_assignment_id(scope, name), "name": name, "properties": {
                "scope": scope, "principalId": principal,
                "roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{role}")}})
        };
        assert!(!AmlRoleAssignment::outputs(&body(&ours)).contains_key("adoptedAssignmentId"));
        let foreign = AmlRoleAssignment::outputs(&body("11111111-1111-1111-1111-111111111111"));
        assert_eq!(foreign["adoptedAssignmentId"], json!(ids::role_assignment_id(scope, "11111111-1111-1111-1111-111111111111")));
        assert_eq!(foreign["scope"], json!(scope));
    }
}
