//! Plan: what a reconcile of an object would do to ARM, without writing anything.
//!
//! The decision reuses the pipeline's own pieces — [`resolve::resolve`], the kind's `target`,
//! `desired`, `dependencies` (read-only) and `refine`, [`drift::drifted`] with the kind's write-only paths and owned maps — and adds only
//! the kind's [`AmlKind::immutable_paths`] to tell an update from a recreate. The only ARM calls
//! are reads (the GET of the resource, and whatever reads `resolve` and `refine` make).

use super::resolve::{self, Resolution};
use super::{AmlKind, Context, Dependencies, DependencyMode, Error, ParentRef, PlannedDependency, Refined, drift, owner};
use crate::crd::ManagementPolicy;
use kube::api::{Api, DynamicObject};
use kube::ResourceExt;
use serde_json::Value;

/// What applying an object would do.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// The resource does not exist in Azure: it would be created.
    Create,
    /// The parent object is part of the plan but not in Azure yet: created once the parent is.
    CreateAfterParent {
        /// The parent, as `Kind name`.
        parent: String,
    },
    /// Fields the user set differ from Azure and can change in place.
    Update,
    /// A field that cannot change in place differs: the resource would have to be deleted and
    /// created again (the operator never does that on its own).
    Recreate {
        /// The immutable JSON pointers that differ.
        immutable: Vec<String>,
    },
    /// Azure matches the spec.
    NoChange,
    /// Nothing can be decided: missing credentials, a parent that is missing, an ARM error.
    Blocked {
        /// PascalCase reason (the one the Ready condition would show).
        reason: String,
        /// What to do about it.
        message: String,
    },
}

impl Change {
    /// Whether applying would write to ARM.
    pub fn is_pending(&self) -> bool {
        matches!(self, Change::Create | Change::CreateAfterParent { .. } | Change::Update | Change::Recreate { .. })
    }
}

/// One field that would change: ARM's value now and the spec's.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldChange {
    /// JSON pointer in the ARM body, e.g. `/properties/friendlyName`.
    pub path: String,
    /// ARM's current value (None when ARM does not show the field).
    pub before: Option<Value>,
    /// The value the spec asks for.
    pub after: Option<Value>,
}

/// The plan of one object.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    /// The decision.
    pub change: Change,
    /// The ARM id the object maps to, once resolved.
    pub arm_id: Option<String>,
    /// The location of the resource: ARM's when it exists, else the spec's.
    pub location: Option<String>,
    /// Whether the resource exists in Azure now.
    pub exists: bool,
    /// Field-level differences (for updates and recreates, and drift an Observe object tolerates).
    pub fields: Vec<FieldChange>,
    /// Anything else worth saying (e.g. `managementPolicy Observe` leaves drift alone).
    pub note: Option<String>,
    /// Resources the kind creates with the object (a workspace's dependencies) and their state.
    pub dependencies: Vec<PlannedDependency>,
    /// Status fields the kind owns that a controller would show for what exists now (a workspace's
    /// `createdDependencies`); `apply --delete` gives them to the object so cleanup finds them.
    pub status: serde_json::Map<String, Value>,
}

impl Planned {
    /// Whether applying would write to ARM: the object itself, or a dependency to create or repair.
    pub fn is_pending(&self) -> bool {
        self.change.is_pending()
            || (!matches!(self.change, Change::Blocked { .. })
                && self.dependencies.iter().any(|d| !d.exists || !d.drifted.is_empty()))
    }

    /// A plan that cannot go on: `reason` (PascalCase) and what to do about it.
    pub fn blocked(reason: &str, message: String) -> Self {
        Planned {
            change: Change::Blocked { reason: reason.to_string(), message },
            arm_id: None,
            location: None,
            exists: false,
            fields: Vec::new(),
            note: None,
            dependencies: Vec::new(),
            status: Default::default(),
        }
    }

    fn from_error(error: &Error) -> Self {
        Self::blocked(error.reason(), error.message())
    }
}


/// Plans one object: resolves it as a reconcile would, reads ARM and compares. Never writes to ARM;
/// every failure becomes [`Change::Blocked`].
pub async fn plan<K: AmlKind>(obj: &K, ctx: &Context) -> Planned {
    match plan_inner(obj, ctx).await {
        Ok(p) => p,
        Err(e) => Planned::from_error(&e),
    }
}

async fn plan_inner<K: AmlKind>(obj: &K, ctx: &Context) -> Result<Planned, Error> {
    let resolved = match resolve::resolve(obj, ctx).await? {
        Resolution::Ready(resolved, _) => resolved,
        Resolution::Waiting(w) => return waiting_plan(obj, ctx, w).await,
    };
    let target = obj.target(&resolved)?;
    let built = obj.desired(&target)?;
    let mut target = target;
    let mut actual = ctx
        .arm
        .get(&resolved.principal, &target.arm_id, K::arm_api_version(&ctx.config))
        .await
        .map_err(|source| Error::Arm { action: "read", arm_id: target.arm_id.clone(), source })?;
    if actual.is_none()
        && let Some(existing) = obj.locate(ctx, &resolved, &target).await?
    {
        // Equivalent to the spec under another id: apply adopts it.
        if let Some(id) = existing.get("id").and_then(Value::as_str) {
            target.arm_id = id.to_string();
        }
        actual = Some(existing);
    }
    let observe_only = obj.policies().management == ManagementPolicy::Observe;
    // One resource, one owner: apply would write nothing for a resource another object owns.
    if let Some(existing) = &actual
        && !observe_only
        && let owner::Claim::Other(owner) = owner::claim(obj, ctx, &target.arm_id, existing).await?
    {
        let owner = owner::describe(&owner, &ctx.config);
        return Err(Error::OwnedByAnotherObject { arm_id: target.arm_id.clone(), owner, tag: owner::TAG });
    }
    let Dependencies { body: built, planned: dependencies, status, .. } =
        obj.dependencies(ctx, &resolved, &target, built, actual.as_ref(), DependencyMode::ReadOnly).await?;
    let Refined { body: desired, .. } = obj.refine(ctx, &resolved, &target, built, actual.as_ref()).await?;
    let mut planned = Planned {
        change: Change::NoChange,
        arm_id: Some(target.arm_id.clone()),
        location: (!target.location.is_empty()).then(|| target.location.clone()),
        exists: actual.is_some(),
        fields: Vec::new(),
        note: None,
        dependencies,
        status,
    };
    let Some(actual) = actual else {
        planned.change = if observe_only {
            Change::Blocked {
                reason: "NotFoundInAzure".into(),
                message: format!("{} does not exist in Azure; managementPolicy Observe never creates it", target.arm_id),
            }
        } else {
            Change::Create
        };
        return Ok(planned);
    };
    if let Some(location) = actual.get("location").and_then(Value::as_str) {
        planned.location = Some(location.to_string());
    }
    let state = actual.pointer("/properties/provisioningState").and_then(Value::as_str).unwrap_or("Succeeded");
    if state != "Succeeded" {
        planned.note = Some(format!("ARM reports provisioningState {state}"));
    }
    let drifted = drift::drifted::<K>(&desired, &actual);
    planned.fields = drifted
        .iter()
        .map(|path| FieldChange {
            path: path.clone(),
            before: actual.pointer(path).cloned(),
            after: desired.pointer(path).cloned(),
        })
        .collect();
    if drifted.is_empty() {
        return Ok(planned);
    }
    if observe_only {
        planned.note = Some("managementPolicy Observe: Azure differs from the spec, nothing is written".into());
        return Ok(planned);
    }
    let immutable = drift::immutable_hits(&drifted, K::immutable_paths());
    planned.change = if immutable.is_empty() { Change::Update } else { Change::Recreate { immutable } };
    Ok(planned)
}

/// A child whose parent is not ready: if the parent object exists (it is part of the same plan,
/// only not in Azure yet) the child is created after it; otherwise it is blocked.
async fn waiting_plan<K: AmlKind>(obj: &K, ctx: &Context, w: resolve::Waiting) -> Result<Planned, Error> {
    if let Some(ParentRef::Object { kind, name }) = obj.parent() {
        let resource = kind.resource();
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &obj.namespace().unwrap_or_default(), &resource);
        let exists = api
            .get_opt(name)
            .await
            .map_err(|source| Error::Kube { what: "reading the parent object", source })?
            .is_some();
        if exists {
            return Ok(Planned {
                change: Change::CreateAfterParent { parent: format!("{} {name}", resource.kind) },
                arm_id: None,
                location: None,
                exists: false,
                fields: Vec::new(),
                note: None,
                dependencies: Vec::new(),
                status: Default::default(),
            });
        }
    }
    Ok(Planned::blocked(w.reason, w.message))
}

#[cfg(test)]
mod tests {
    use crate::controller::drift::immutable_hits;

    #[test]
    fn immutable_paths_match_themselves_and_what_is_under_them() {
        let drifted = vec![
            "/location".to_string(),
            "/properties/friendlyName".to_string(),
            "/properties/encryption/keyVaultProperties/keyVaultArmId".to_string(),
            "/locationX".to_string(),
        ];
        let hits = immutable_hits(&drifted, &["/location", "/properties/encryption/keyVaultProperties"]);
        assert_eq!(hits, vec!["/location", "/properties/encryption/keyVaultProperties/keyVaultArmId"]);
    }
}
