//! Apply: observe (GET, poll) -> decide (ARM IO, returns a [`Decision`]) -> commit (writes the
//! status, then the events: the one place a reconcile writes status).

use crate::controller::status::{self, Cond, Standing};
use super::jitter;
use crate::controller::resolve::{self, Resolution};
use crate::controller::{
    AmlKind, Context, Dependencies, DependencyMode, Error, Refined, Target, UpdateRequest, drift,
    fleet, owner, protect,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams};
use crate::arm::{
    self, CODE_CANCELED_WITHOUT_ERROR, CODE_FAILED_WITHOUT_ERROR,
    PollOutcome, ServicePrincipal, WriteOutcome,
};
use crate::crd::ManagementPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::Value;
use tracing::{debug, info, warn};

use super::events::*;
use super::outcome::*;

pub(super) fn arm_error(action: &'static str, target: &Target) -> impl FnOnce(arm::Error) -> Error + use<> {
    let arm_id = target.arm_id.clone();
    move |source| Error::Arm { action, arm_id, source }
}
pub(super) async fn apply<K: AmlKind>(obj: &K, ctx: &Context) -> Result<Action, Error> {
    let decision = decide(obj, ctx).await?;
    commit(obj, ctx, decision).await
}
/// Writes a decision: the status first (an operation URL must be durable before anything else),
/// then the events; then ends in the decision's error, if it has one. The one place a reconcile
/// writes status (apply, cleanup and the failure report all come here).
pub(super) async fn commit<K: AmlKind>(obj: &K, ctx: &Context, decision: Decision) -> Result<Action, Error> {
    let changed = match &decision.status {
        Some(st) => status::write(ctx, obj, st).await?,
        None => false,
    };
    for note in decision.events {
        if changed || !note.only_if_changed {
            publish(ctx, obj, note.type_, &note.reason, note.message, &note.action).await;
        }
    }
    match decision.error {
        Some(e) => Err(e),
        None => Ok(decision.requeue),
    }
}
/// One pass of apply up to, not including, its status and events: ARM is read (and written, when
/// the spec says so), and what follows — the status, the requeue, the events — is returned as a
/// [`Decision`] for [`commit`] to write. The Kubernetes writes it does make are steps of their own,
/// each named where it happens: protecting the credentials Secret (`protect::hold`), the owner
/// reference to the parent (`ensure_owner`), and a kind's record of what it is about to create
/// (`status::record_outputs`, before the first write of a dependency).
pub(super) async fn decide<K: AmlKind>(obj: &K, ctx: &Context) -> Result<Decision, Error> {
    let policies = obj.policies();
    let mut events: Vec<Note> = Vec::new();
    // The admin's bounds (a role assignment's role and scope), before anything is read or asked.
    obj.within_bounds(&ctx.config)?;
    let mut st = status::current(obj);
    let resolved = match resolve::resolve(obj, ctx).await? {
        Resolution::Ready(resolved, found) => {
            let ns = obj.namespace().unwrap_or_default();
            let in_namespace = found.location.namespace == ns;
            st.credentials_secret = in_namespace.then(|| found.location.name.clone());
            // Protect: the Secret keeps a finalizer while an object of its namespace needs it.
            if in_namespace {
                protect::hold(ctx, &found.secret).await?;
            }
            resolved
        }
        Resolution::Waiting(w) => {
            st.stand(Standing::in_progress(w.reason, w.message));
            // The watch on the parent wakes this object as soon as the parent is ready.
            return Ok(Decision::new(st, Action::requeue(jitter(ctx.config.slow_retry, 0.1))));
        }
    };
    if let Some(owner) = resolved.parent.as_ref().and_then(|p| p.owner.as_ref()) {
        ensure_owner(ctx, obj, owner).await?;
    }
    let sp = resolved.principal.clone();
    let target = obj.target(&resolved)?;
    let subscription = arm::limit::subscription_of(&target.arm_id);
    if let fleet::Crossing::Over { objects } = ctx.fleet.observe(&obj.uid().unwrap_or_default(), subscription, &sp.client_id) {
        warn!(
            subscription,
            client_id = %sp.client_id,
            objects,
            capacity = ctx.fleet.capacity(),
            "this principal's objects exceed what its ARM read budget can check in one resync period \
             (reads per second x resync seconds): they are checked less often than --resync-seconds asks; \
             raise --resync-seconds, or split the objects over more service principals"
        );
    }
    let mut built = obj.desired(&target)?;
    // Values from Secrets (a datastore's key), before any ARM call: a missing one costs none.
    let secret_digest = with_secret_values(obj, ctx, &mut built).await?;
    let api_version = K::arm_api_version(&ctx.config);
    st.arm_id = Some(target.arm_id.clone());
    // Some resources (role assignments) have no location.
    st.location = (!target.location.is_empty()).then(|| target.location.clone());
    let keep_stalled = st.stalled.take();

    // 0. A failed operation: a transient one waits for its retry time (no ARM call before then);
    //    a new value of the retry annotation retries one that waits for a person, once.
    let mut retry_now = false;
    if let Some(token) = new_retry_token(obj) {
        if failure_now(obj, &st).is_some() {
            info!(token, "retry annotation: retrying the failed ARM operation");
            st.last_failure = None;
            retry_now = true;
        }
        st.retry_token = Some(token);
    } else if st.operation.is_none()
        && let Some(at) = failure_now(obj, &st).filter(|f| f.class == CLASS_TRANSIENT).and_then(|f| f.next_retry.clone())
        && at.0 > Timestamp::now()
    {
        return Ok(Decision::requeue(Action::requeue(until(at.0))));
    }
    if waits_for_person(obj, &st) {
        // Still stalled: reads may show it fixed in Azure, but nothing is written.
        st.stalled = keep_stalled;
    }

    // A write is likely (a new object, or an edited spec) and none is in flight: when the write
    // budget has no token for it soon, come back when it has, before spending a read on the GET.
    // The token is reserved now; if the GET shows nothing to write, it goes back on the way out.
    let likely_writes = obj.common_status().and_then(|s| s.observed_generation) != obj.meta().generation;
    let mut reserved = None;
    if likely_writes && st.operation.is_none() && policies.management != ManagementPolicy::Observe && !waits_for_person(obj, &st) {
        if let Some(later) = defer_write(ctx, &sp, &target, api_version)? {
            return Ok(later);
        }
        reserved = Some(ReservedWrite { ctx, sp: &sp, arm_id: &target.arm_id, api_version, keep: false });
    }

    // 1. An operation in flight: poll it, never write over it.
    if let Some(op) = st.operation.clone() {
        let polled = match ctx.arm.poll(&sp, &to_operation(&op)).await {
            // ARM forgot the operation (they expire): what the resource shows decides.
            Err(e) if e.class() == arm::ErrorClass::NotFound => None,
            other => Some(other.map_err(arm_error("poll", &target))?),
        };
        match polled {
            Some(PollOutcome::InProgress { retry_after }) => {
                st.stand(in_flight(&op.action));
                return Ok(Decision::new(st, Action::requeue(retry_after.max(MIN_POLL))).with(events));
            }
            Some(PollOutcome::Succeeded) | None => st.operation = None,
            Some(PollOutcome::Failed(e)) => {
                return Ok(operation_failed(obj, &ctx.config, st, &target, &op.action, e.code, e.message).with(events));
            }
        }
    }

    // 2. Observe, then let the kind refine the body with what it learned.
    let observed = ctx.arm.get(&sp, &target.arm_id, api_version).await.map_err(arm_error("read", &target))?;
    let observe_only = policies.management == ManagementPolicy::Observe;
    if observed.is_none()
        && let Some(existing) = obj.locate(ctx, &resolved, &target).await?
    {
        return Ok(adopted::<K>(st, &existing).with(events));
    }
    // One resource, one owner: a resource tagged by another object is not written, and no
    // dependency is made for it. Observe claims nothing and is never blocked.
    if let Some(actual) = &observed
        && !observe_only
        && let owner::Claim::Other(owner) = owner::claim(obj, ctx, &target.arm_id, actual).await?
    {
        let owner = owner::describe(&owner, &ctx.config);
        let error = Error::OwnedByAnotherObject { arm_id: target.arm_id.clone(), owner, tag: owner::TAG };
        return Ok(owned_by_another(st, &error, ctx.config.slow_retry).with(events));
    }
    let seen_before = obj.common_status().is_some_and(|s| s.provisioning_state.is_some() || s.operation.is_some());
    if observed.is_some() && !seen_before {
        // A resource that existed before this object knew it: now managed (or observed) by it.
        let how = if observe_only { "observed" } else { "managed" };
        events.push(Note::normal("Adopted", format!("Existing Azure resource {} is now {how} by this object", target.arm_id), "Adopt"));
    }
    // Waiting for a person: what exists of the dependencies is read, nothing is written.
    let mode = if observe_only || waits_for_person(obj, &st) { DependencyMode::ReadOnly } else { DependencyMode::Ensure };
    let Dependencies { body: built, pending, status: kind_status, .. } =
        match obj.dependencies(ctx, &resolved, &target, built, observed.as_ref(), mode).await {
            Err(Error::Arm { source, .. }) if let Some((code, message)) = refused(&target, &source) => {
                return Ok(operation_failed(obj, &ctx.config, st, &target, "Create", code, message).with(events));
            }
            other => other?,
        };
    // The digest of the secret values last written stays in status through every read.
    let mut kind_status = kind_status;
    if let (Some(_), Some(last)) = (&secret_digest, st.outputs.get(SECRET_DIGEST)) {
        kind_status.insert(SECRET_DIGEST.into(), last.clone());
    }
    st.outputs.extend(kind_status.clone());
    if let Some((reason, message)) = pending {
        if let Some(actual) = &observed {
            st.provisioning_state = Some(provisioning_state(actual));
            st.outputs = K::outputs(actual);
            st.outputs.extend(kind_status);
        }
        st.stand(Standing::in_progress(reason, message));
        return Ok(Decision::new(st, Action::requeue(DEPENDENCY_POLL)).with(events));
    }
    let Refined { body: desired, waiting } = obj.refine(ctx, &resolved, &target, built, observed.as_ref()).await?;
    let action = match &observed {
        None if observe_only => {
            st.provisioning_state = None;
            st.stand(Standing::Settled(Cond::no(
                "NotFoundInAzure",
                format!("{} does not exist in Azure; managementPolicy Observe never creates it", target.arm_id),
            )));
            return Ok(Decision::new(st, resync(ctx)).with(events));
        }
        None => "Create",
        Some(actual) => {
            let state = provisioning_state(actual);
            st.provisioning_state = Some(state.clone());
            st.outputs = K::outputs(actual);
            st.outputs.extend(kind_status.clone());
            if !is_terminal(&state) {
                st.stand(Standing::InProgress {
                    ready: Cond::no("Provisioning", format!("Waiting for ARM: provisioningState is {state}")),
                    reconciling: Cond::yes("ArmOperationInProgress", format!("ARM reports provisioningState {state}")),
                });
                return Ok(Decision::new(st, Action::requeue(FOREIGN_OPERATION_POLL)).with(events));
            }
            if is_failed(&state) && !observe_only {
                if waits_for_person(obj, &st) {
                    // Known and reported: wait for a person, write nothing to ARM.
                    return Ok(Decision::new(st, Action::requeue(jitter(ctx.config.slow_retry, 0.1))).with(events));
                }
                let generation = obj.meta().generation.unwrap_or_default();
                if failure_now(obj, &st).is_none() && !retry_now && ctx.wrote_at(&obj.uid().unwrap_or_default(), generation) {
                    // This process wrote at this generation, and no poll reported how that ended
                    // (its answer or status.operation was lost): this is that write's failure.
                    let (code, message) = provisioning_error(actual).unwrap_or_else(|| {
                        let code = if state == "Canceled" { CODE_CANCELED_WITHOUT_ERROR } else { CODE_FAILED_WITHOUT_ERROR };
                        (code.to_string(), format!("ARM reports provisioningState {state} without an error"))
                    });
                    return Ok(operation_failed(obj, &ctx.config, st, &target, "provisioning", code, message).with(events));
                }
                // A failure this process did not cause at this generation (found after a restart, a
                // spec edit, or someone else's write), a transient failure whose retry is due, or a
                // retry a person asked for: write the spec again, drifted or not. A failure of that
                // write is then classified above.
            }
            let mut drifted = drifted_or_untagged(obj, ctx, &desired, actual, observe_only);
            if let Some(digest) = &secret_digest
                && st.outputs.get(SECRET_DIGEST).and_then(Value::as_str) != Some(digest.as_str())
            {
                // A GET cannot show the secret: its value changed since the last write (or was
                // never written by this object), so it is written again.
                drifted.push(K::write_only_paths().first().copied().unwrap_or("/").to_string());
            }
            let rewrite = is_failed(&state) && !observe_only;
            if !rewrite && (drifted.is_empty() || observe_only || waits_for_person(obj, &st)) {
                let mut again = None;
                if drifted.is_empty() && state == "Succeeded" && !observe_only {
                    again = obj.after_converged(ctx, &resolved, &target, actual).await?;
                }
                let st = if let (Some((reason, message)), true) = (&waiting, drifted.is_empty()) {
                    let standing = settled_unless_stalled(&mut st, Cond::no(reason.clone(), message.clone()));
                    st.stand(standing);
                    let wait = ctx.config.slow_retry.min(ctx.config.resync);
                    return Ok(Decision::new(st, Action::requeue(jitter(again.map_or(wait, |d| d.min(wait)), 0.1))).with(events));
                } else {
                    st
                };
                let decided = converged(&ctx.config, st, &state, actual, &drifted, observe_only).with(events);
                return Ok(Decision { requeue: again.map_or(decided.requeue, Action::requeue), ..decided });
            }
            debug!(paths = ?drifted, "drift from spec");
            "Update"
        }
    };
    if waits_for_person(obj, &st) {
        // The write failed in ARM: wait for a person instead of writing again.
        return Ok(Decision::requeue(Action::requeue(jitter(ctx.config.slow_retry, 0.1))));
    }

    // 3. Act. A resource in a failed state is repaired by a full PUT. Every write carries the
    //    owner tag.
    let mut desired = desired;
    owner::tag_body(obj, &ctx.config, &mut desired, observed.as_ref());
    let request = match &observed {
        Some(actual) if action == "Update" && !is_failed(&provisioning_state(actual)) => {
            obj.update_request(&desired, &drifted_or_untagged(obj, ctx, &desired, actual, false))
        }
        _ => UpdateRequest::Put(desired.clone()),
    };
    let verb = if action == "Create" { "create" } else { "update" };
    if let Some(later) = defer_write(ctx, &sp, &target, api_version)? {
        // Back when the token reserved for this resource is earned: it stays reserved.
        if let Some(reserved) = reserved.as_mut() {
            reserved.keep = true;
        }
        return Ok(later);
    }
    ctx.note_write(&obj.uid().unwrap_or_default(), obj.meta().generation.unwrap_or_default());
    let outcome = match &request {
        UpdateRequest::Put(body) => ctx.arm.put(&sp, &target.arm_id, api_version, body).await,
        UpdateRequest::Patch(body) => ctx.arm.patch(&sp, &target.arm_id, api_version, body).await,
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) if let Some((code, message)) = refused(&target, &e) => {
            // ARM refused what the spec asks for (region, size, quota, tags): recorded like a
            // failed operation that needs a person, so no write follows at this generation until
            // the spec changes or the retry annotation gets a new value.
            return Ok(operation_failed(obj, &ctx.config, st, &target, action, code, message).with(events));
        }
        Err(e) => {
            let existing = obj.write_failed(ctx, &resolved, &target, verb, e).await?;
            return Ok(adopted::<K>(st, &existing).with(events));
        }
    };
    info!(arm_id = %target.arm_id, action, "ARM write accepted");
    events.push(Note::normal(&format!("{action}d"), format!("{action} of {} accepted by ARM", target.arm_id), action));
    let retry_after = match outcome {
        WriteOutcome::Accepted { body, operation } => {
            if let Some(body) = &body {
                st.outputs = K::outputs(body);
                st.outputs.extend(kind_status.clone());
            }
            st.provisioning_state = Some(
                body.as_ref()
                    .and_then(|b| b.pointer("/properties/provisioningState").and_then(Value::as_str))
                    .map(str::to_string)
                    .unwrap_or_else(|| progress_reason(action).to_string()),
            );
            st.operation = Some(operation_status(&operation, action));
            operation.retry_after
        }
        WriteOutcome::Done(body) => {
            if let Some(body) = &body {
                st.outputs = K::outputs(body);
                st.outputs.extend(kind_status.clone());
                st.provisioning_state = Some(provisioning_state(body));
            }
            MIN_POLL
        }
    };
    if let Some(digest) = secret_digest {
        st.outputs.insert(SECRET_DIGEST.into(), Value::String(digest));
    }
    st.stand(in_flight(action));
    Ok(Decision::new(st, Action::requeue(retry_after.max(MIN_POLL))).with(events))
}

/// The paths where ARM differs from `desired`, and the owner tag's path when a write must tag
/// the resource for this object (it lacks the tag: adopted, or made before the operator tagged).
fn drifted_or_untagged<K: AmlKind>(obj: &K, ctx: &Context, desired: &Value, actual: &Value, observe_only: bool) -> Vec<String> {
    let mut drifted = drift::drifted::<K>(desired, actual);
    if let Some(pointer) = K::OWNER_TAG.filter(|_| !observe_only && owner::needs_tag(obj, &ctx.config, actual)) {
        drifted.push(format!("{pointer}/{}", owner::TAG));
    }
    drifted
}

/// The status field holding the digest of the secret values last written.
const SECRET_DIGEST: &str = "secretDigest";

/// Reads the object's [`AmlKind::secret_values`] into `body`; returns their SHA-256 digest (hex),
/// or `None` when the object takes none or only observes. The values go nowhere else.
async fn with_secret_values<K: AmlKind>(obj: &K, ctx: &Context, body: &mut Value) -> Result<Option<String>, Error> {
    let wanted = obj.secret_values();
    // Observe never writes: the values are not needed (and a missing one is no reason to stall).
    if wanted.is_empty() || obj.policies().management == ManagementPolicy::Observe {
        return Ok(None);
    }
    let ns = obj.namespace().unwrap_or_default();
    let mut hashed = ring::digest::Context::new(&ring::digest::SHA256);
    for v in wanted {
        let value = crate::controller::secret_values::read(ctx, &ns, v.reference, v.field).await?;
        for part in [v.pointer.as_bytes(), b"\0", value.as_bytes(), b"\0"] {
            hashed.update(part);
        }
        crate::controller::set_pointer(body, v.pointer, Value::String(value));
    }
    Ok(Some(hashed.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()))
}
/// ARM's code and message when `err` is a refusal of what the spec asks for (see
/// [`crate::controller::error::refusal`]): a region, VM size or instance type Azure does not offer, a core
/// quota too small, tags beyond ARM's limits.
pub(super) fn refused(target: &Target, err: &arm::Error) -> Option<(String, String)> {
    let e = err.arm().filter(|e| e.status != 429)?;
    crate::controller::error::refusal(&target.arm_id, &e.code, &e.message, e.target.as_deref())?;
    Some((e.code.clone(), e.message.clone()))
}
/// The write token a reconcile reserved before its GET ([`defer_write`]): given back when the
/// reconcile ends without writing (the write's request uses it up otherwise), unless `keep` (the
/// object comes back for it).
struct ReservedWrite<'a> {
    ctx: &'a Context,
    sp: &'a ServicePrincipal,
    arm_id: &'a str,
    api_version: &'a str,
    keep: bool,
}

impl Drop for ReservedWrite<'_> {
    fn drop(&mut self) {
        if !self.keep {
            self.ctx.arm.release_write_permit(self.sp, self.arm_id, self.api_version);
        }
    }
}

/// A write that would wait long for the principal's write budget gives its worker back (polls of
/// finished operations go on meanwhile): `Some` requeues the object for when the token reserved
/// for its resource is earned; `None`: write now.
pub(super) fn defer_write(ctx: &Context, sp: &ServicePrincipal, target: &Target, api_version: &str) -> Result<Option<Decision>, Error> {
    let wait = ctx.arm.write_permit(sp, &target.arm_id, api_version).map_err(arm_error("write", target))?;
    Ok(wait.map(|wait| {
        debug!(arm_id = %target.arm_id, wait_ms = wait.as_millis() as u64, "write budget: back when a token is earned");
        crate::metrics::write_deferred();
        Decision::requeue(Action::requeue(wait))
    }))
}
pub(super) fn resync(ctx: &Context) -> Action {
    Action::requeue(jitter(ctx.config.resync, 0.1))
}
/// Adds an owner reference to the parent object, once (server-side apply of that field only).
pub(super) async fn ensure_owner<K: AmlKind>(ctx: &Context, obj: &K, owner: &OwnerReference) -> Result<(), Error> {
    if obj.owner_references().iter().any(|o| o.uid == owner.uid) {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": obj.name_any(), "ownerReferences": [owner]},
    });
    api.patch(&obj.name_any(), &PatchParams::apply(status::FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|source| Error::Kube { what: "setting the owner reference", source })?;
    Ok(())
}
