//! The reconcile pipeline every kind runs:
//!
//! ```text
//! finalizer -> apply:   resolve (credentials) -> build (pure) -> poll the operation in flight
//!                       -> observe (GET) -> act (PUT only if absent or drifted) -> status (if changed)
//!           -> cleanup: Orphan/Observe: release | poll delete | DELETE, keep the finalizer until gone
//! ```
//! Long-running operations are never awaited here: their URL goes into status and the object is
//! requeued at Retry-After, so a restarted operator resumes polling instead of writing again.
//!
//! Apply is `decide` then `commit`: `decide` talks to ARM and returns a [`Decision`] — the status,
//! the requeue and the events — which `commit` writes in one place (status first, then events).
//! The statuses it ends in (`converged`, `operation_failed`, `adopted`) are pure functions.

use super::status::{self, Cond, Desired};
use super::resolve::{self, Resolution};
use super::error::reason;
use super::{
    AmlKind, Context, DeleteGate, Dependencies, DependencyMode, Error, Refined, Retry, Target, UpdateRequest, credentials, drift,
    fleet, protect,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams};
use crate::arm::{
    self, CODE_CANCELED_WITHOUT_ERROR, CODE_FAILED_WITHOUT_ERROR, DeleteOutcome, FailureClass, Operation, OperationKind,
    PollOutcome, ServicePrincipal, WriteOutcome, failure_class,
};
use crate::crd::{DeletionPolicy, FINALIZER, FailureStatus, ManagementPolicy, OperationStatus, RETRY_ANNOTATION};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::{Api, ResourceExt};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, instrument, warn};

/// Shortest wait between polls of a non-terminal resource without a Retry-After of its own.
const MIN_POLL: Duration = Duration::from_secs(1);
/// How soon a delete that waits for another resource (see `AmlKind::delete_gate`) looks again.
const DELETE_GATE_RECHECK: Duration = Duration::from_secs(5);
/// Poll interval when ARM shows a non-terminal state the operator did not start.
const FOREIGN_OPERATION_POLL: Duration = Duration::from_secs(15);
/// Poll interval while a kind's dependencies are being created.
const DEPENDENCY_POLL: Duration = Duration::from_secs(3);

/// Reconciles one object: the controller's entry point.
#[instrument(skip_all, fields(kind = %K::kind(&()), namespace = %obj.namespace().unwrap_or_default(), name = %obj.name_any()))]
pub async fn reconcile<K: AmlKind>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let kind = K::kind(&());
    crate::metrics::active_workers(&kind, 1.0);
    let started = std::time::Instant::now();
    let result = reconcile_inner(obj, ctx).await;
    crate::metrics::active_workers(&kind, -1.0);
    let (label, reason) = match &result {
        Ok(_) => ("success", None),
        Err(Error::DeletePending { .. }) => ("requeue", None),
        Err(e) => ("error", Some(e.reason())),
    };
    crate::metrics::reconcile(&kind, label, started.elapsed(), reason);
    result
}

async fn reconcile_inner<K: AmlKind>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let obj = match add_finalizer(&api, &obj).await {
        Ok(Some(patched)) => Arc::new(patched),
        Ok(None) => obj,
        Err(e) => {
            report_failure(&*obj, &e, &ctx).await;
            return Err(e);
        }
    };
    let result = finalizer::finalizer(&api, FINALIZER, obj.clone(), |event| async {
        match event {
            FinalizerEvent::Apply(o) => apply(&*o, &ctx).await,
            FinalizerEvent::Cleanup(o) => cleanup(&*o, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::FinalizerPatch(Box::new(other)),
    });
    let uid = obj.uid().unwrap_or_default();
    match &result {
        Ok(_) => ctx.note_success(&uid),
        Err(Error::DeletePending { .. }) => {}
        Err(e) => report_failure(&*obj, e, &ctx).await,
    }
    result
}

/// Adds the finalizer to an object that is not being deleted and lacks it, and returns the object
/// as the API server now holds it, so the apply goes on in the same reconcile. The patch is the
/// operator's own write and does not wake the object (see `manager::wakes`); kube's `finalizer()`
/// would instead stop after the patch and wait for that wake. Like kube's, the patch tests the
/// finalizers it found, so a concurrent writer makes it fail (and the object is retried) instead
/// of adding the finalizer twice.
async fn add_finalizer<K: AmlKind>(api: &Api<K>, obj: &K) -> Result<Option<K>, Error> {
    if obj.meta().deletion_timestamp.is_some() || obj.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(None);
    }
    use json_patch::jsonptr::Pointer;
    use json_patch::{AddOperation, PatchOperation, TestOperation};
    let finalizers = Pointer::from_static("/metadata/finalizers");
    let (found, add) = if obj.finalizers().is_empty() {
        (Value::Null, AddOperation { path: finalizers.to_buf(), value: serde_json::json!([FINALIZER]) })
    } else {
        let path = Pointer::from_static("/metadata/finalizers/-").to_buf();
        (serde_json::json!(obj.finalizers()), AddOperation { path, value: FINALIZER.into() })
    };
    let patch = json_patch::Patch(vec![
        PatchOperation::Test(TestOperation { path: finalizers.to_buf(), value: found }),
        PatchOperation::Add(add),
    ]);
    api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .map(Some)
        .map_err(|e| Error::FinalizerPatch(Box::new(finalizer::Error::AddFinalizer(e))))
}

/// The controller's error policy: classify, never block.
pub fn error_policy<K: AmlKind>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let cfg = &ctx.config;
    match error.retry() {
        Retry::AwaitChange => Action::await_change(),
        Retry::After(d) => Action::requeue(jitter(d.max(MIN_POLL), 0.1)),
        Retry::Slow => Action::requeue(jitter(cfg.slow_retry, 0.1)),
        Retry::Backoff => {
            let n = ctx.note_failure(&obj.uid().unwrap_or_default());
            let factor = 2u32.saturating_pow(n.saturating_sub(1).min(16));
            let delay = cfg.base_backoff.saturating_mul(factor).min(cfg.max_backoff);
            Action::requeue(jitter(delay, 0.2))
        }
    }
}

/// `d` spread by ±`fraction`, so objects created together do not hit ARM together.
pub fn jitter(d: Duration, fraction: f64) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Timestamp::now().as_nanosecond() as u128);
    let unit = (h.finish() as f64) / (u64::MAX as f64); // 0..1
    d.mul_f64(1.0 + fraction * (2.0 * unit - 1.0))
}

async fn report_failure<K: AmlKind>(obj: &K, error: &Error, ctx: &Context) {
    let mut st = status::current(obj);
    st.ready = Some(Cond::no(error.reason(), error.message()));
    // kstatus: a failure the operator retries on its own is still in progress; one that needs a
    // person is Stalled.
    st.reconciling = (!error.is_stalled()).then(|| Cond::yes(error.reason(), "Retrying after a transient failure"));
    st.stalled = error.is_stalled().then(|| Cond::yes(error.reason(), error.message()));
    match status::write(ctx, obj, &st).await {
        // Publish only when the condition changed, so a repeating failure does not flood events.
        Ok(true) => publish(ctx, obj, EventType::Warning, error.reason(), error.message(), "Reconcile").await,
        Ok(false) => {}
        Err(e) => warn!(error = %e.message(), "cannot write failure status"),
    }
    warn!(reason = error.reason(), error = %error.message(), "reconcile failed");
}

/// Longest Event note the API server takes (events.k8s.io/v1 validation: at most 1 kB).
const MAX_NOTE: usize = 1024;

/// `note` cut to [`MAX_NOTE`] bytes at a character boundary, marked `...` when cut: a longer note
/// makes the API server refuse the whole Event. What to change comes first in the operator's
/// messages; the full text is in the object's conditions.
fn bounded_note(note: String) -> String {
    if note.len() <= MAX_NOTE {
        return note;
    }
    let mut end = MAX_NOTE - 3;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &note[..end])
}

async fn publish<K: AmlKind>(ctx: &Context, obj: &K, type_: EventType, reason: &str, note: String, action: &str) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(bounded_note(note)),
        action: action.to_string(),
        secondary: None,
    };
    let reference = obj.object_ref(&());
    let published = match event.type_ {
        // Warnings repeat (a failure retried): the recorder folds repeats into one Event's series,
        // remembering each for a few minutes.
        EventType::Warning => ctx.recorder.publish(&event, &reference).await,
        // Normal events say once what happened (created, deleted): posted as they are, without
        // holding every object's last event in memory for minutes — thousands at once while a
        // fleet converges.
        EventType::Normal => post_event(&ctx.client, &event, &reference).await,
    };
    if let Err(e) = published {
        debug!(error = %e, "cannot publish event");
    }
}

/// Creates an `events.k8s.io/v1` Event as kube's recorder would for a first occurrence.
async fn post_event(client: &kube::Client, event: &Event, reference: &k8s_openapi::api::core::v1::ObjectReference) -> Result<(), kube::Error> {
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
    let now = Timestamp::now();
    let namespace = reference.namespace.clone().unwrap_or_else(|| "default".into());
    let k8s = K8sEvent {
        action: Some(event.action.clone()),
        reason: Some(event.reason.clone()),
        note: event.note.clone(),
        event_time: Some(MicroTime(now)),
        regarding: Some(reference.clone()),
        metadata: ObjectMeta {
            namespace: Some(namespace.clone()),
            name: Some(format!("{}.{:x}", reference.name.as_deref().unwrap_or(super::REPORTER), now.as_nanosecond())),
            ..Default::default()
        },
        reporting_controller: Some(super::REPORTER.into()),
        reporting_instance: Some(super::REPORTER.into()),
        type_: Some("Normal".into()),
        ..Default::default()
    };
    Api::<K8sEvent>::namespaced(client.clone(), &namespace).create(&kube::api::PostParams::default(), &k8s).await.map(drop)
}


fn arm_error(action: &'static str, target: &Target) -> impl FnOnce(arm::Error) -> Error + use<> {
    let arm_id = target.arm_id.clone();
    move |source| Error::Arm { action, arm_id, source }
}

fn to_operation(op: &OperationStatus) -> Operation {
    Operation {
        url: op.url.clone(),
        kind: if op.kind == "Location" { OperationKind::Location } else { OperationKind::AsyncOperation },
        retry_after: Duration::from_secs(op.retry_after_seconds.unwrap_or(10)),
    }
}

fn operation_status(op: &Operation, action: &str) -> OperationStatus {
    OperationStatus {
        url: op.url.clone(),
        kind: match op.kind {
            OperationKind::AsyncOperation => "AsyncOperation".into(),
            OperationKind::Location => "Location".into(),
        },
        action: action.to_string(),
        started: Time(Timestamp::now()),
        retry_after_seconds: Some(op.retry_after.as_secs()),
    }
}

/// ARM's provisioningState, or `Succeeded` for a resource without one (the RPC's rule).
fn provisioning_state(v: &Value) -> String {
    v.pointer("/properties/provisioningState")
        .and_then(Value::as_str)
        .unwrap_or("Succeeded")
        .to_string()
}

fn is_terminal(state: &str) -> bool {
    matches!(state, "Succeeded" | "Failed" | "Canceled")
}

fn is_failed(state: &str) -> bool {
    matches!(state, "Failed" | "Canceled")
}

/// The operation failure recorded in `st` for the object's current generation (a spec edit makes
/// an older one stale).
fn failure_now<'a, K: AmlKind>(obj: &K, st: &'a Desired) -> Option<&'a FailureStatus> {
    st.last_failure.as_ref().filter(|f| Some(f.generation) == obj.meta().generation)
}

/// A failure at this generation that waits for a person: no ARM write until the spec changes or
/// the retry annotation gets a new value.
fn waits_for_person<K: AmlKind>(obj: &K, st: &Desired) -> bool {
    failure_now(obj, st).is_some_and(|f| f.class != CLASS_TRANSIENT)
}

/// The value of the retry annotation when the operator has not acted on it yet.
fn new_retry_token<K: AmlKind>(obj: &K) -> Option<String> {
    let value = obj.annotations().get(RETRY_ANNOTATION)?;
    let acted_on = obj.common_status().and_then(|s| s.retry_token.as_deref());
    (acted_on != Some(value.as_str())).then(|| value.clone())
}

/// `status.lastFailure.class` of a failure retried automatically.
const CLASS_TRANSIENT: &str = "Transient";
/// `status.lastFailure.class` of a failure that waits for a person.
const CLASS_NEEDS_PERSON: &str = "NeedsPerson";

/// Handles an ARM operation that ended Failed or Canceled — seen by its poll, or by a GET that finds
/// the resource `Failed`/`Canceled` when no failure is recorded for this generation (the poll's
/// answer or `status.operation` was lost, or someone else's operation failed). By ARM's code: a
/// transient failure is retried after a backoff that doubles with each retry at this generation
/// (up to `max_operation_retries`); any other waits for a person (`Stalled`).
/// The decision after an ARM operation failed: classified by its code, a transient failure retries
/// at a set time, one that needs a person stalls. Pure: computed without IO.
fn operation_failed<K: AmlKind>(
    obj: &K,
    config: &super::Config,
    mut st: Desired,
    target: &Target,
    action: &str,
    code: String,
    message: String,
) -> Decision {
    let generation = obj.meta().generation.unwrap_or_default();
    let retries = failure_now(obj, &st).map_or(0, |f| f.retries);
    let budget = config.max_operation_retries;
    let class = match failure_class(&code) {
        FailureClass::Transient if retries >= budget => FailureClass::NeedsPerson,
        class => class,
    };
    let err = Error::OperationFailed {
        action: action.to_lowercase(),
        arm_id: target.arm_id.clone(),
        code: code.clone(),
        message,
        class,
    };
    st.operation = None;
    // ARM's message usually ends with a full stop: one sentence, then what happens next.
    let said = err.message().trim_end().trim_end_matches('.').to_string();
    let (requeue, text) = match class {
        FailureClass::Transient => {
            let factor = 2u32.saturating_pow(retries.min(16));
            let delay = jitter(config.base_backoff.saturating_mul(factor).min(config.max_backoff), 0.2);
            // Whole seconds, rounded up: what status can hold, and never before the backoff ends.
            let at = Timestamp::now().as_second().saturating_add(delay.as_secs_f64().ceil() as i64);
            let at = Timestamp::from_second(at).unwrap_or_else(|_| Timestamp::now());
            st.last_failure = Some(FailureStatus {
                code,
                class: CLASS_TRANSIENT.into(),
                generation,
                retries: retries + 1,
                next_retry: Some(Time(at)),
            });
            let text = format!("{said}. A transient failure: the operator retries at {at}");
            st.reconciling = Some(Cond::yes(err.reason(), text.clone()));
            st.stalled = None;
            (until(at), text)
        }
        FailureClass::NeedsPerson => {
            let gave_up = if failure_class(&code) == FailureClass::Transient {
                format!(" (still failing after {retries} automatic retries)")
            } else {
                String::new()
            };
            st.last_failure = Some(FailureStatus {
                code,
                class: CLASS_NEEDS_PERSON.into(),
                generation,
                retries,
                next_retry: None,
            });
            let text = format!(
                "{said}{gave_up}. Fix the cause, then edit the spec or set the annotation {RETRY_ANNOTATION} to a new value to retry"
            );
            st.reconciling = None;
            st.stalled = Some(Cond::yes(err.reason(), text.clone()));
            (jitter(config.slow_retry, 0.1), text)
        }
    };
    st.ready = Some(Cond::no(err.reason(), text.clone()));
    let note = Note {
        type_: EventType::Warning,
        reason: err.reason().to_string(),
        message: text,
        action: "Reconcile".into(),
        only_if_changed: true,
    };
    Decision::new(st, Action::requeue(requeue)).with(vec![note])
}

/// How long until `at` (at least [`MIN_POLL`]).
fn until(at: Timestamp) -> Duration {
    let left = at.as_millisecond().saturating_sub(Timestamp::now().as_millisecond());
    Duration::from_millis(u64::try_from(left).unwrap_or(0)).max(MIN_POLL)
}

/// The first ARM error (code, message) of a resource in state Failed (`provisioningErrors`,
/// `errors`), if ARM gives one.
fn provisioning_error(v: &Value) -> Option<(String, String)> {
    let props = v.get("properties")?;
    let first = props
        .get("provisioningErrors")
        .or_else(|| props.get("errors"))
        .or_else(|| props.pointer("/properties/errors"))?
        .as_array()?
        .first()?;
    let e = first.get("error").unwrap_or(first);
    let code = e.get("code")?.as_str()?.to_string();
    let message = e.get("message").and_then(Value::as_str).unwrap_or("no message").to_string();
    Some((code, message))
}

/// The ARM error text of a resource in state Failed (`provisioningErrors`, `errors`), verbatim.
fn provisioning_errors(v: &Value) -> Option<String> {
    let props = v.get("properties")?;
    let list = props
        .get("provisioningErrors")
        .or_else(|| props.get("errors"))
        .or_else(|| props.pointer("/properties/errors"))?
        .as_array()?;
    let texts: Vec<String> = list
        .iter()
        .filter_map(|e| {
            let e = e.get("error").unwrap_or(e);
            let code = e.get("code")?.as_str()?;
            let message = e.get("message").and_then(Value::as_str).unwrap_or("");
            Some(format!("{code}: {message}"))
        })
        .collect();
    (!texts.is_empty()).then(|| texts.join("; "))
}

async fn apply<K: AmlKind>(obj: &K, ctx: &Context) -> Result<Action, Error> {
    let decision = decide(obj, ctx).await?;
    commit(obj, ctx, decision).await
}

/// What one pass decided, before anything is written to Kubernetes: the status (none: leave it as
/// it is), when to come back, and the events to publish. Computed by [`decide`] and the pure
/// functions it ends in ([`converged`], [`operation_failed`], [`adopted`]); written by [`commit`], the
/// one place apply writes status.
#[derive(Debug)]
pub struct Decision {
    /// The status to write (only what changed reaches the API server), if any.
    pub status: Option<Desired>,
    /// When to reconcile again.
    pub requeue: Action,
    /// Events, in order.
    pub events: Vec<Note>,
}

impl Decision {
    fn new(status: Desired, requeue: Action) -> Decision {
        Decision { status: Some(status), requeue, events: Vec::new() }
    }

    fn requeue(requeue: Action) -> Decision {
        Decision { status: None, requeue, events: Vec::new() }
    }

    /// `earlier` events first, then this decision's own.
    fn with(mut self, mut earlier: Vec<Note>) -> Decision {
        earlier.append(&mut self.events);
        self.events = earlier;
        self
    }
}

/// An event a decision asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    /// Normal or Warning.
    pub type_: EventType,
    /// PascalCase reason.
    pub reason: String,
    /// What happened, for a person.
    pub message: String,
    /// The action the event is about.
    pub action: String,
    /// Publish only when the status changed: a repeated failure is one event, not one per try.
    pub only_if_changed: bool,
}

impl Note {
    fn normal(reason: &str, message: String, action: &str) -> Note {
        Note { type_: EventType::Normal, reason: reason.to_string(), message, action: action.to_string(), only_if_changed: false }
    }
}

/// Writes a decision: the status first (an operation URL must be durable before anything else),
/// then the events.
async fn commit<K: AmlKind>(obj: &K, ctx: &Context, decision: Decision) -> Result<Action, Error> {
    let changed = match &decision.status {
        Some(st) => status::write(ctx, obj, st).await?,
        None => false,
    };
    for note in decision.events {
        if changed || !note.only_if_changed {
            publish(ctx, obj, note.type_, &note.reason, note.message, &note.action).await;
        }
    }
    Ok(decision.requeue)
}

/// One pass of apply up to, not including, its status and events: ARM is read (and written, when
/// the spec says so), and what follows — the status, the requeue, the events — is returned as a
/// [`Decision`] for [`commit`] to write. The Kubernetes writes it does make are steps of their own,
/// each named where it happens: protecting the credentials Secret (`protect::hold`), the owner
/// reference to the parent (`ensure_owner`), and a kind's record of what it is about to create
/// (`status::record_outputs`, before the first write of a dependency).
async fn decide<K: AmlKind>(obj: &K, ctx: &Context) -> Result<Decision, Error> {
    let policies = obj.policies();
    let mut events: Vec<Note> = Vec::new();
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
            st.reconciling = Some(Cond::yes(w.reason, w.message.clone()));
            st.stalled = None;
            st.ready = Some(Cond::no(w.reason, w.message));
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
    let built = obj.desired(&target)?;
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
    let likely_writes = obj.common_status().and_then(|s| s.observed_generation) != obj.meta().generation;
    if likely_writes
        && st.operation.is_none()
        && policies.management != ManagementPolicy::Observe
        && !waits_for_person(obj, &st)
        && let Some(later) = defer_write(ctx, &sp, &target, api_version)?
    {
        return Ok(later);
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
                st.reconciling = Some(Cond::yes(progress_reason(&op.action), format!("ARM {} in progress", op.action.to_lowercase())));
                st.ready = Some(Cond::no(progress_reason(&op.action), format!("Waiting for ARM to finish the {}", op.action.to_lowercase())));
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
    st.outputs.extend(kind_status.clone());
    if let Some((reason, message)) = pending {
        if let Some(actual) = &observed {
            st.provisioning_state = Some(provisioning_state(actual));
            st.outputs = K::outputs(actual);
            st.outputs.extend(kind_status);
        }
        st.reconciling = Some(Cond::yes(reason.clone(), message.clone()));
        st.ready = Some(Cond::no(reason, message));
        return Ok(Decision::new(st, Action::requeue(DEPENDENCY_POLL)).with(events));
    }
    let Refined { body: desired, waiting } = obj.refine(ctx, &resolved, &target, built, observed.as_ref()).await?;
    let action = match &observed {
        None if observe_only => {
            st.provisioning_state = None;
            st.reconciling = None;
            st.ready = Some(Cond::no(
                "NotFoundInAzure",
                format!("{} does not exist in Azure; managementPolicy Observe never creates it", target.arm_id),
            ));
            return Ok(Decision::new(st, resync(ctx)).with(events));
        }
        None => "Create",
        Some(actual) => {
            let state = provisioning_state(actual);
            st.provisioning_state = Some(state.clone());
            st.outputs = K::outputs(actual);
            st.outputs.extend(kind_status.clone());
            if !is_terminal(&state) {
                st.reconciling = Some(Cond::yes("ArmOperationInProgress", format!("ARM reports provisioningState {state}")));
                st.ready = Some(Cond::no("Provisioning", format!("Waiting for ARM: provisioningState is {state}")));
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
            let drifted = drift::drifted::<K>(&desired, actual);
            let rewrite = is_failed(&state) && !observe_only;
            if !rewrite && (drifted.is_empty() || observe_only || waits_for_person(obj, &st)) {
                let mut again = None;
                if drifted.is_empty() && state == "Succeeded" && !observe_only {
                    again = obj.after_converged(ctx, &resolved, &target, actual).await?;
                }
                let st = if let (Some((reason, message)), true) = (&waiting, drifted.is_empty()) {
                    st.ready = Some(Cond::no(reason.clone(), message.clone()));
                    st.reconciling = None;
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

    // 3. Act. A resource in a failed state is repaired by a full PUT.
    let request = match &observed {
        Some(actual) if action == "Update" && !is_failed(&provisioning_state(actual)) => {
            obj.update_request(&desired, &drift::drifted::<K>(&desired, actual))
        }
        _ => UpdateRequest::Put(desired.clone()),
    };
    let verb = if action == "Create" { "create" } else { "update" };
    if let Some(later) = defer_write(ctx, &sp, &target, api_version)? {
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
    st.reconciling = Some(Cond::yes(progress_reason(action), format!("ARM {} in progress", action.to_lowercase())));
    st.ready = Some(Cond::no(progress_reason(action), format!("Waiting for ARM to finish the {}", action.to_lowercase())));
    Ok(Decision::new(st, Action::requeue(retry_after.max(MIN_POLL))).with(events))
}

/// ARM's code and message when `err` is a refusal of what the spec asks for (see
/// [`super::error::refusal`]): a region, VM size or instance type Azure does not offer, a core
/// quota too small, tags beyond ARM's limits.
fn refused(target: &Target, err: &arm::Error) -> Option<(String, String)> {
    let e = err.arm().filter(|e| e.status != 429)?;
    super::error::refusal(&target.arm_id, &e.code, &e.message, e.target.as_deref())?;
    Some((e.code.clone(), e.message.clone()))
}

/// A write that would wait long for the principal's write budget gives its worker back (polls of
/// finished operations go on meanwhile): `Some` requeues the object for when the token reserved
/// for its resource is earned; `None`: write now.
fn defer_write(ctx: &Context, sp: &ServicePrincipal, target: &Target, api_version: &str) -> Result<Option<Decision>, Error> {
    let wait = ctx.arm.write_permit(sp, &target.arm_id, api_version).map_err(arm_error("write", target))?;
    Ok(wait.map(|wait| {
        debug!(arm_id = %target.arm_id, wait_ms = wait.as_millis() as u64, "write budget: back when a token is earned");
        crate::metrics::write_deferred();
        Decision::requeue(Action::requeue(wait))
    }))
}

/// ARM refused the write because `existing` already is what the spec describes (see
/// [`AmlKind::write_failed`]): the object now tracks it, says so, and looks again at once.
/// An existing resource that already is what the spec describes, adopted instead of written.
fn adopted<K: AmlKind>(mut st: Desired, existing: &Value) -> Decision {
    let id = existing.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
    info!(arm_id = %id, "adopted an existing Azure resource instead of writing");
    let note = Note::normal(
        "Adopted",
        format!("{id} already exists with what the spec describes: adopted instead of creating a second one"),
        "Adopt",
    );
    if !id.is_empty() {
        st.arm_id = Some(id.clone());
    }
    st.outputs = K::outputs(existing);
    st.provisioning_state = Some(provisioning_state(existing));
    st.reconciling = Some(Cond::yes("Adopting", format!("Adopting the existing {id}")));
    st.ready = Some(Cond::no("Adopting", format!("Adopting the existing {id}")));
    Decision::new(st, Action::requeue(MIN_POLL)).with(vec![note])
}

fn progress_reason(action: &str) -> &'static str {
    match action {
        "Create" => "Creating",
        "Update" => "Updating",
        "Delete" => "Deleting",
        _ => "Reconciling",
    }
}

fn resync(ctx: &Context) -> Action {
    Action::requeue(jitter(ctx.config.resync, 0.1))
}

/// The status of an object ARM shows in a terminal state, with nothing (more) to write: Ready, or
/// why not. Pure: computed without IO.
fn converged(
    config: &super::Config,
    mut st: Desired,
    state: &str,
    actual: &Value,
    drifted: &[String],
    observe_only: bool,
) -> Decision {
    st.reconciling = None;
    st.ready = Some(if state == "Succeeded" && drifted.is_empty() {
        st.last_failure = None;
        st.stalled = None;
        Cond::yes("Succeeded", "The Azure resource matches the spec")
    } else if state != "Succeeded" {
        // Only with managementPolicy Observe: a managed object treats this as an operation failure.
        let detail = provisioning_errors(actual).unwrap_or_else(|| format!("provisioningState is {state}"));
        let reason = "ArmProvisioningFailed";
        let c = Cond::no(reason, format!("ARM reports the resource {state}: {detail}. managementPolicy Observe does not write"));
        st.stalled = Some(Cond::yes(reason, c.message.clone()));
        c
    } else if observe_only {
        Cond::no("Drifted", format!("Azure differs from the spec at {}; managementPolicy Observe does not write", drifted.join(", ")))
    } else {
        // A failure at this generation that waits for a person, and still different: keep it visible.
        let prev = st.ready.clone();
        prev.unwrap_or_else(|| {
            Cond::no(reason::OPERATION_FAILED, format!("The last ARM operation failed; edit the spec or set the annotation {RETRY_ANNOTATION} to retry"))
        })
    });
    Decision::new(st, Action::requeue(jitter(config.resync, 0.1)))
}

async fn cleanup<K: AmlKind>(obj: &K, ctx: &Context) -> Result<Action, Error> {
    let policies = obj.policies();
    if policies.deletion == DeletionPolicy::Orphan || policies.management == ManagementPolicy::Observe {
        let why = if policies.deletion == DeletionPolicy::Orphan { "deletionPolicy Orphan" } else { "managementPolicy Observe" };
        info!(why, "releasing without deleting the Azure resource");
        publish(ctx, obj, EventType::Normal, "Orphaned", format!("Azure resource left in place ({why})"), "Delete").await;
        return released(obj, ctx).await;
    }
    let known_id = obj.common_status().and_then(|s| s.arm_id.clone());
    let Some(known_id) = known_id else {
        // Nothing was ever written to ARM for this object (no ARM id in status): nothing to delete.
        return released(obj, ctx).await;
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
                status::write(ctx, obj, &st).await?;
                return Err(Error::OperationFailed {
                    action: "delete".into(),
                    arm_id: target.arm_id.clone(),
                    class: failure_class(&e.code),
                    code: e.code,
                    message: e.message,
                });
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
        st.reconciling = Some(Cond::yes("WaitingForParentDeletion", message));
        st.ready = Some(Cond::no("WaitingForParentDeletion", message));
        status::write(ctx, obj, &st).await?;
        return Err(Error::DeletePending { arm_id: target.arm_id.clone(), retry_after: DELETE_GATE_RECHECK, gate: None });
    }
    match obj.delete_gate(ctx, &sp, &target.arm_id).await? {
        DeleteGate::Proceed => {}
        DeleteGate::Gone => return deleted(obj, ctx, &target, &sp).await,
        DeleteGate::Wait { reason, message } => {
            st.reconciling = Some(Cond::yes(reason, message.clone()));
            st.ready = Some(Cond::no(reason, message));
            status::write(ctx, obj, &st).await?;
            return Err(Error::DeletePending { arm_id: target.arm_id.clone(), retry_after: DELETE_GATE_RECHECK, gate: Some(reason) });
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
            st.reconciling = Some(Cond::yes("Deleting", "ARM delete in progress"));
            st.ready = Some(Cond::no("Deleting", "Waiting for ARM to delete the resource"));
            status::write(ctx, obj, &st).await?;
            Err(Error::DeletePending { arm_id: target.arm_id.clone(), retry_after: op.retry_after, gate: None })
        }
    }
}

/// The object's own resource is gone: delete what the kind created for it, then release.
/// Whether the object's parent object is being deleted and will delete its Azure resource (policy
/// Delete, managed, written to ARM): ARM deletes a resource's children with it, so the child waits
/// for that instead of sending a DELETE of its own, which the parent's would cancel mid-way. Once
/// the parent object is gone, the child's own DELETE finds nothing left (204/404).
async fn parent_deletes_it<K: AmlKind>(obj: &K, ctx: &Context) -> Result<bool, Error> {
    let Some(super::ParentRef::Object { kind, name }) = obj.parent() else { return Ok(false) };
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

async fn deleted<K: AmlKind>(obj: &K, ctx: &Context, target: &Target, sp: &ServicePrincipal) -> Result<Action, Error> {
    obj.delete_dependencies(ctx, sp).await?;
    info!(arm_id = %target.arm_id, "Azure resource deleted");
    publish(ctx, obj, EventType::Normal, "Deleted", format!("{} deleted in Azure", target.arm_id), "Delete").await;
    released(obj, ctx).await
}

/// The object no longer needs Azure: let its namespace's credentials Secrets go if it was the last.
///
/// It says so in its status first. Objects deleted together (a namespace deletion) release at
/// the same moment: each sees the others still there, finalizers and all, and without the mark
/// none would take itself for the last and the Secret would keep its finalizer forever.
async fn released<K: AmlKind>(obj: &K, ctx: &Context) -> Result<Action, Error> {
    ctx.forget(&obj.uid().unwrap_or_default());
    if let Some(secret) = obj.common_status().and_then(|s| s.credentials_secret.clone()) {
        let mut st = status::current(obj);
        st.reconciling = None;
        st.stalled = None;
        st.ready = Some(Cond::no(protect::RELEASED, "Nothing left to do in Azure; Kubernetes removes the object next"));
        status::write(ctx, obj, &st).await?;
        protect::release_if_last(ctx, &obj.namespace().unwrap_or_default(), &obj.uid().unwrap_or_default(), &secret).await?;
    }
    Ok(Action::await_change())
}

fn azure_name_of(id: &str) -> String {
    id.rsplit('/').next().unwrap_or_default().to_string()
}


/// Adds an owner reference to the parent object, once (server-side apply of that field only).
async fn ensure_owner<K: AmlKind>(ctx: &Context, obj: &K, owner: &OwnerReference) -> Result<(), Error> {
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


/// The decisions apply ends in are values: tested here without a server, an emulator or a clock
/// beyond `now`.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::AmlWorkspace;
    use serde_json::json;

    fn workspace(generation: i64) -> AmlWorkspace {
        serde_json::from_value(json!({
            "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
            "metadata": {"name": "ws", "namespace": "ns", "generation": generation, "uid": "u1"},
            "spec": {"resourceGroup": "rg", "location": "eastus"}
        }))
        .unwrap()
    }

    fn target() -> Target {
        Target {
            subscription: "s".into(),
            resource_group: "rg".into(),
            name: "ws".into(),
            arm_id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws".into(),
            location: "eastus".into(),
        }
    }

    #[test]
    fn a_converged_resource_is_ready_and_forgets_its_failure() {
        let mut st = Desired {
            stalled: Some(Cond::yes("ArmOperationFailed", "old")),
            last_failure: Some(FailureStatus { code: "X".into(), class: CLASS_NEEDS_PERSON.into(), generation: 1, retries: 0, next_retry: None }),
            ..Desired::default()
        };
        st.reconciling = Some(Cond::yes("Updating", "in progress"));
        let d = converged(&super::super::Config::default(), st, "Succeeded", &json!({}), &[], false);
        let st = d.status.expect("a status");
        assert_eq!(st.ready, Some(Cond::yes("Succeeded", "The Azure resource matches the spec")));
        assert!(st.reconciling.is_none() && st.stalled.is_none() && st.last_failure.is_none());
        assert!(d.events.is_empty());
    }

    #[test]
    fn an_observed_resource_that_differs_says_where_and_writes_nothing() {
        let d = converged(&super::super::Config::default(), Desired::default(), "Succeeded", &json!({}), &["/tags".to_string()], true);
        let ready = d.status.unwrap().ready.unwrap();
        assert_eq!(ready.reason, "Drifted");
        assert!(ready.message.contains("/tags") && ready.message.contains("Observe"), "{}", ready.message);
    }

    #[test]
    fn a_transient_operation_failure_retries_at_a_time_it_states() {
        let config = super::super::Config::default();
        let d = operation_failed(&workspace(3), &config, Desired::default(), &target(), "Create", "InternalServerError".into(), "Boom.".into());
        let st = d.status.expect("a status");
        let failure = st.last_failure.clone().expect("recorded");
        assert_eq!((failure.class.as_str(), failure.generation, failure.retries), (CLASS_TRANSIENT, 3, 1));
        let at = failure.next_retry.expect("a retry time").0;
        let reconciling = st.reconciling.expect("Reconciling while it retries");
        assert_eq!(reconciling.reason, reason::OPERATION_FAILED_RETRYING);
        assert!(reconciling.message.contains(&at.to_string()) && !reconciling.message.contains(".."), "{}", reconciling.message);
        assert!(st.stalled.is_none());
        // One Warning, published only if the status changed (a repeat is not a new event).
        assert_eq!(d.events.len(), 1);
        assert!(d.events[0].only_if_changed && d.events[0].type_ == EventType::Warning);
    }

    #[test]
    fn an_operation_failure_a_person_must_fix_stalls_and_says_how_to_retry() {
        let config = super::super::Config::default();
        let d = operation_failed(&workspace(1), &config, Desired::default(), &target(), "Create", "ImageBuildFailure".into(), "No image.".into());
        let st = d.status.unwrap();
        let stalled = st.stalled.expect("Stalled");
        assert_eq!(stalled.reason, reason::OPERATION_FAILED);
        assert!(stalled.message.contains(RETRY_ANNOTATION), "{}", stalled.message);
        assert!(st.reconciling.is_none());
        assert_eq!(st.last_failure.unwrap().class, CLASS_NEEDS_PERSON);
    }

    #[test]
    fn event_notes_fit_the_api_servers_limit() {
        assert_eq!(bounded_note("short".into()), "short");
        let long = format!("{}é{}", "a".repeat(1020), "b".repeat(100));
        let cut = bounded_note(long.clone());
        assert!(cut.len() <= MAX_NOTE && cut.ends_with("...") && long.starts_with(cut.trim_end_matches("...")), "{}", cut.len());
    }

    #[test]
    fn an_adoption_reports_the_existing_id_and_one_event() {
        let existing = json!({"id": "/subscriptions/s/x/other", "properties": {"provisioningState": "Succeeded"}});
        let d = adopted::<AmlWorkspace>(Desired::default(), &existing);
        let st = d.status.unwrap();
        assert_eq!(st.arm_id.as_deref(), Some("/subscriptions/s/x/other"));
        assert_eq!(st.provisioning_state.as_deref(), Some("Succeeded"));
        assert_eq!(d.events.len(), 1);
        assert_eq!(d.events[0].reason, "Adopted");
        let with_earlier = Decision::requeue(Action::await_change()).with(vec![Note::normal("First", "a".into(), "x")]);
        assert_eq!(with_earlier.events[0].reason, "First");
    }
}
