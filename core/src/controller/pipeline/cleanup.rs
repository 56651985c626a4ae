//! Cleanup under the finalizer: release (Orphan, Observe, nothing in Azure), wait for a parent that
//! deletes this resource with it, a delete gate, or DELETE and poll until ARM says gone.

use crate::controller::status::{self, Cond, Standing};
use crate::controller::resolve::{self, Resolution};
use crate::controller::{
    AmlKind, Context, DeleteGate, Error, Target, credentials, owner, protect,
};
use crate::arm::{
    self, DeleteOutcome,
    PollOutcome, ServicePrincipal, failure_class,
};
use crate::crd::{DeletionPolicy, FINALIZER, ManagementPolicy};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use std::time::Duration;
use tracing::info;

use super::outcome::*;
use super::apply::*;

/// How soon a delete that waits for another resource (see `AmlKind::delete_gate`) looks again.
pub(super) const DELETE_GATE_RECHECK: Duration = Duration::from_secs(5);
/// How soon a delete already running in ARM (found by a GET, not recorded in status) looks again.
const DELETE_IN_PROGRESS_RECHECK: Duration = Duration::from_secs(2);
/// Cleanup: decide, then write through `commit` like apply; then, once the object has said it is
/// done with Azure, let its credentials Secret go if it was the last object that needed it.
pub(super) async fn cleanup<K: AmlKind>(obj: &K, ctx: &Context) -> Result<Action, Error> {
    let Step { decision, release } = decide_cleanup(obj, ctx).await?;
    let action = commit(obj, ctx, decision).await?;
    if let Some(secret) = release {
        protect::release_if_last(ctx, &obj.namespace().unwrap_or_default(), &obj.uid().unwrap_or_default(), &secret).await?;
    }
    Ok(action)
}

/// What a cleanup pass decided: the decision to commit (an error in it keeps the finalizer), and
/// the credentials Secret to release once it is written.
pub(super) struct Step {
    decision: Decision,
    release: Option<String>,
}

impl From<Decision> for Step {
    fn from(decision: Decision) -> Step {
        Step { decision, release: None }
    }
}

/// Keeps the finalizer: the status `st` is written, then the reconcile ends in `DeletePending`.
fn pending(st: crate::controller::status::Desired, arm_id: &str, retry_after: Duration, gate: Option<&'static str>) -> Step {
    Decision::new(st, Action::await_change())
        .failing(Error::DeletePending { arm_id: arm_id.to_string(), retry_after, gate })
        .into()
}

async fn decide_cleanup<K: AmlKind>(obj: &K, ctx: &Context) -> Result<Step, Error> {
    let policies = obj.policies();
    if policies.deletion == DeletionPolicy::Orphan || policies.management == ManagementPolicy::Observe {
        let why = if policies.deletion == DeletionPolicy::Orphan { "deletionPolicy Orphan" } else { "managementPolicy Observe" };
        info!(why, "releasing without deleting the Azure resource");
        let note = Note::normal("Orphaned", format!("Azure resource left in place ({why})"), "Delete");
        return Ok(released(obj, ctx, vec![note]));
    }
    if already_released(obj) {
        // An earlier pass found the Azure resource gone and said so, and only letting the
        // credentials Secret go (or the finalizer) failed: nothing is left to do in Azure, and the
        // Secret may be gone by now (objects released together race for it), so none is needed.
        return Ok(released(obj, ctx, Vec::new()));
    }
    let known_id = obj.common_status().and_then(|s| s.arm_id.clone());
    let Some(known_id) = known_id else {
        // Nothing was ever written to ARM for this object (no ARM id in status): nothing to delete.
        return Ok(released(obj, ctx, Vec::new()));
    };
    let ns = obj.namespace().unwrap_or_default();
    // The parent may already be gone: fall back to this object's own (or the default) credentials.
    let sp = match resolve::resolve(obj, ctx).await {
        Ok(Resolution::Ready(resolved, _)) => resolved.principal,
        _ => credentials::resolve(ctx, &ns, policies.credentials).await?.principal,
    };
    let target = Target {
        subscription: String::new(),
        resource_group: String::new(),
        name: azure_name_of(&known_id),
        arm_id: known_id,
        location: String::new(),
    };
    let api_version = K::arm_api_version(&ctx.config);
    let mut st = status::current(obj);
    if let Some(op) = st.operation.clone() {
        match ctx.arm.poll(&sp, &to_operation(&op)).await.map_err(arm_error("poll", &target))? {
            PollOutcome::InProgress { retry_after } => {
                return Err(Error::DeletePending { arm_id: target.arm_id.clone(), retry_after, gate: None });
            }
            PollOutcome::Succeeded => st.operation = None,
            PollOutcome::Failed(e) if op.action == "Delete" => {
                st.operation = None;
                let failure = Error::OperationFailed {
                    action: "delete".into(),
                    arm_id: target.arm_id.clone(),
                    class: failure_class(&e.code),
                    code: e.code,
                    message: e.message,
                };
                return Ok(Decision::new(st, Action::await_change()).failing(failure).into());
            }
            PollOutcome::Failed(_) => st.operation = None,
        }
        if op.action == "Delete"
            && ctx.arm.get(&sp, &target.arm_id, api_version).await.map_err(arm_error("read", &target))?.is_none()
        {
            return deleted(obj, ctx, &target, &sp).await;
        }
    }
    if parent_deletes_it(obj, ctx).await? {
        let message = "The parent object is being deleted and ARM deletes this resource with it";
        st.stand(Standing::in_progress("WaitingForParentDeletion", message));
        return Ok(pending(st, &target.arm_id, DELETE_GATE_RECHECK, None));
    }
    // Ask ARM before a DELETE: this copy of the object may predate its own DELETE's status write (a
    // wake can come before the cache has that write), or someone else may be deleting it. ARM
    // refuses (409) a second DELETE while one runs; wait for it instead, writing nothing (the
    // status this copy would write could drop the recorded operation). A resource already gone
    // (with its parent) waits for nothing.
    match ctx.arm.get(&sp, &target.arm_id, api_version).await.map_err(arm_error("read", &target))? {
        None => return deleted(obj, ctx, &target, &sp).await,
        Some(actual) if provisioning_state(&actual) == "Deleting" => {
            let pending = Error::DeletePending { arm_id: target.arm_id.clone(), retry_after: DELETE_IN_PROGRESS_RECHECK, gate: None };
            return Ok(Decision::requeue(Action::await_change()).failing(pending).into());
        }
        // One resource, one owner: a resource another object owns is never deleted for this one
        // (this object was Stalled on it, or lost it to another object's write).
        Some(ref actual) if let Some(owner) = owner::tag_of::<K>(actual).filter(|o| *o != owner::value_for(obj, &ctx.config)) => {
            let owner = owner::describe(owner, &ctx.config);
            info!(arm_id = %target.arm_id, owner, "releasing without deleting another object's Azure resource");
            let note = Note::normal(
                "Orphaned",
                format!("{} belongs to {owner} (its tag {}): left in place", target.arm_id, owner::TAG),
                "Delete",
            );
            return Ok(released(obj, ctx, vec![note]));
        }
        Some(_) => {}
    }
    match obj.delete_gate(ctx, &sp, &target.arm_id).await? {
        DeleteGate::Proceed => {}
        DeleteGate::Gone => return deleted(obj, ctx, &target, &sp).await,
        DeleteGate::Wait { reason, message } => {
            st.stand(Standing::in_progress(reason, message));
            return Ok(pending(st, &target.arm_id, DELETE_GATE_RECHECK, Some(reason)));
        }
    }
    let outcome = ctx.arm.delete(&sp, &target.arm_id, api_version, K::delete_query()).await;
    match outcome {
        Ok(DeleteOutcome::Gone) => deleted(obj, ctx, &target, &sp).await,
        Err(e) if e.class() == arm::ErrorClass::NotFound => deleted(obj, ctx, &target, &sp).await,
        Err(e) => Err(Error::Arm { action: "delete", arm_id: target.arm_id.clone(), source: e }),
        Ok(DeleteOutcome::Accepted(op)) => {
            st.operation = Some(operation_status(&op, "Delete"));
            st.provisioning_state = Some("Deleting".into());
            st.stand(Standing::InProgress {
                ready: Cond::no("Deleting", "Waiting for ARM to delete the resource"),
                reconciling: Cond::yes("Deleting", "ARM delete in progress"),
            });
            Ok(pending(st, &target.arm_id, op.retry_after, None))
        }
    }
}
/// Whether the object's parent object is being deleted and will delete its Azure resource (policy
/// Delete, managed, written to ARM): ARM deletes a resource's children with it, so the child waits
/// for that instead of sending a DELETE of its own, which the parent's would cancel mid-way. Once
/// the parent object is gone, the child's own GET finds nothing left (404) and it is released.
pub(super) async fn parent_deletes_it<K: AmlKind>(obj: &K, ctx: &Context) -> Result<bool, Error> {
    let Some(crate::controller::ParentRef::Object { kind, name }) = obj.parent() else { return Ok(false) };
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &obj.namespace().unwrap_or_default(), &kind.resource());
    let Some(parent) = api.get_opt(name).await.map_err(|source| Error::Kube { what: "reading the parent object", source })? else {
        return Ok(false);
    };
    let spec = &parent.data["spec"];
    Ok(parent.metadata.deletion_timestamp.is_some()
        && parent.finalizers().iter().any(|f| f == FINALIZER)
        && parent.data["status"]["armId"].is_string()
        && spec["deletionPolicy"].as_str().unwrap_or("Delete") == "Delete"
        && spec["managementPolicy"].as_str().unwrap_or("Manage") == "Manage")
}
/// The object's own resource is gone: delete what the kind created for it, then release.
async fn deleted<K: AmlKind>(obj: &K, ctx: &Context, target: &Target, sp: &ServicePrincipal) -> Result<Step, Error> {
    obj.delete_dependencies(ctx, sp).await?;
    info!(arm_id = %target.arm_id, "Azure resource deleted");
    let note = Note::normal("Deleted", format!("{} deleted in Azure", target.arm_id), "Delete");
    Ok(released(obj, ctx, vec![note]))
}

/// The object no longer needs Azure: let its namespace's credentials Secrets go if it was the last.
///
/// It says so in its status first. Objects deleted together (a namespace deletion) release at
/// the same moment: each sees the others still there, finalizers and all, and without the mark
/// none would take itself for the last and the Secret would keep its finalizer forever.
fn released<K: AmlKind>(obj: &K, ctx: &Context, events: Vec<Note>) -> Step {
    ctx.forget(&obj.uid().unwrap_or_default());
    let decision = Decision::requeue(Action::await_change()).with(events);
    let Some(secret) = obj.common_status().and_then(|s| s.credentials_secret.clone()) else {
        return decision.into();
    };
    let mut st = status::current(obj);
    st.stand(Standing::Settled(Cond::no(protect::RELEASED, "Nothing left to do in Azure; Kubernetes removes the object next")));
    Step { decision: Decision { status: Some(st), ..decision }, release: Some(secret) }
}

/// Whether the object's status already says it is done with Azure (Ready reason `Released`).
fn already_released<K: AmlKind>(obj: &K) -> bool {
    obj.common_status().is_some_and(|s| {
        s.conditions.iter().any(|c| c.type_ == crate::crd::condition::READY && c.reason == protect::RELEASED)
    })
}

pub(super) fn azure_name_of(id: &str) -> String {
    id.rsplit('/').next().unwrap_or_default().to_string()
}
