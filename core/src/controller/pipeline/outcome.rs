//! The outcomes apply ends in, as values: a [`Decision`] (status, requeue, events) computed
//! without IO — converged, operation failed, adopted — and the small pure helpers they share.

use crate::controller::status::{Cond, Desired, Standing};
use super::jitter;
use crate::controller::error::reason;
use crate::controller::{
    AmlKind, Error, Target,
};
use crate::arm::{
    FailureClass, Operation, OperationKind, failure_class,
};
use crate::crd::{FailureStatus, OperationStatus, RETRY_ANNOTATION};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::ResourceExt;
use serde_json::Value;
use std::time::Duration;
use tracing::info;


/// Shortest wait between polls of a non-terminal resource without a Retry-After of its own.
pub(super) const MIN_POLL: Duration = Duration::from_secs(1);
/// Poll interval when ARM shows a non-terminal state the operator did not start.
pub(super) const FOREIGN_OPERATION_POLL: Duration = Duration::from_secs(15);
/// Poll interval while a kind's dependencies are being created.
pub(super) const DEPENDENCY_POLL: Duration = Duration::from_secs(3);
pub(super) fn to_operation(op: &OperationStatus) -> Operation {
    Operation {
        url: op.url.clone(),
        kind: if op.kind == "Location" { OperationKind::Location } else { OperationKind::AsyncOperation },
        retry_after: Duration::from_secs(op.retry_after_seconds.unwrap_or(10)),
    }
}
pub(super) fn operation_status(op: &Operation, action: &str) -> OperationStatus {
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
pub(super) fn provisioning_state(v: &Value) -> String {
    v.pointer("/properties/provisioningState")
        .and_then(Value::as_str)
        .unwrap_or("Succeeded")
        .to_string()
}
pub(super) fn is_terminal(state: &str) -> bool {
    matches!(state, "Succeeded" | "Failed" | "Canceled")
}
pub(super) fn is_failed(state: &str) -> bool {
    matches!(state, "Failed" | "Canceled")
}
/// The operation failure recorded in `st` for the object's current generation (a spec edit makes
/// an older one stale).
pub(super) fn failure_now<'a, K: AmlKind>(obj: &K, st: &'a Desired) -> Option<&'a FailureStatus> {
    st.last_failure.as_ref().filter(|f| Some(f.generation) == obj.meta().generation)
}
/// A failure at this generation that waits for a person: no ARM write until the spec changes or
/// the retry annotation gets a new value.
pub(super) fn waits_for_person<K: AmlKind>(obj: &K, st: &Desired) -> bool {
    failure_now(obj, st).is_some_and(|f| f.class != CLASS_TRANSIENT)
}
/// The value of the retry annotation when the operator has not acted on it yet.
pub(super) fn new_retry_token<K: AmlKind>(obj: &K) -> Option<String> {
    let value = obj.annotations().get(RETRY_ANNOTATION)?;
    let acted_on = obj.common_status().and_then(|s| s.retry_token.as_deref());
    (acted_on != Some(value.as_str())).then(|| value.clone())
}
/// `status.lastFailure.class` of a failure retried automatically.
pub(super) const CLASS_TRANSIENT: &str = "Transient";
/// `status.lastFailure.class` of a failure that waits for a person.
pub(super) const CLASS_NEEDS_PERSON: &str = "NeedsPerson";
/// Handles an ARM operation that ended Failed or Canceled — seen by its poll, or by a GET that finds
/// the resource `Failed`/`Canceled` when no failure is recorded for this generation (the poll's
/// answer or `status.operation` was lost, or someone else's operation failed). By ARM's code: a
/// transient failure is retried after a backoff that doubles with each retry at this generation
/// (up to `max_operation_retries`); any other waits for a person (`Stalled`).
/// The decision after an ARM operation failed: classified by its code, a transient failure retries
/// at a set time, one that needs a person stalls. Pure: computed without IO.
pub(super) fn operation_failed<K: AmlKind>(
    obj: &K,
    config: &crate::controller::Config,
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
            st.stand(Standing::in_progress(err.reason(), text.clone()));
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
            st.stand(Standing::stalled(err.reason(), text.clone()));
            (jitter(config.slow_retry, 0.1), text)
        }
    };
    Decision::new(st, Action::requeue(requeue)).with(vec![Note::warning(err.reason(), text)])
}
/// How long until `at` (at least [`MIN_POLL`]).
pub(super) fn until(at: Timestamp) -> Duration {
    let left = at.as_millisecond().saturating_sub(Timestamp::now().as_millisecond());
    Duration::from_millis(u64::try_from(left).unwrap_or(0)).max(MIN_POLL)
}
/// The first ARM error (code, message) of a resource in state Failed (`provisioningErrors`,
/// `errors`), if ARM gives one.
pub(super) fn provisioning_error(v: &Value) -> Option<(String, String)> {
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
pub(super) fn provisioning_errors(v: &Value) -> Option<String> {
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
    /// The error the reconcile ends in once the status and events are written: cleanup keeps the
    /// finalizer with it (`DeletePending`), and a failure is reported after its status.
    pub error: Option<Error>,
}
impl Decision {
    pub(crate) fn new(status: Desired, requeue: Action) -> Decision {
        Decision { status: Some(status), requeue, events: Vec::new(), error: None }
    }

    pub(crate) fn requeue(requeue: Action) -> Decision {
        Decision { status: None, requeue, events: Vec::new(), error: None }
    }

    /// This decision, ending in `error` after its status and events are written.
    pub(crate) fn failing(mut self, error: Error) -> Decision {
        self.error = Some(error);
        self
    }

    /// `earlier` events first, then this decision's own.
    pub(crate) fn with(mut self, mut earlier: Vec<Note>) -> Decision {
        earlier.append(&mut self.events);
        self.events = earlier;
        self
    }
}
/// The status a failed reconcile shows. kstatus: a failure the operator retries on its own is still
/// in progress; one that needs a person is Stalled. One Warning, published only when the status
/// changed, so a repeating failure does not flood events.
pub(super) fn failed<K: AmlKind>(obj: &K, error: &Error) -> Decision {
    let mut st = crate::controller::status::current(obj);
    st.stand(if error.is_stalled() {
        Standing::stalled(error.reason(), error.message())
    } else {
        Standing::InProgress {
            ready: Cond::no(error.reason(), error.message()),
            reconciling: Cond::yes(error.reason(), "Retrying after a transient failure"),
        }
    });
    Decision::new(st, Action::await_change()).with(vec![Note::warning(error.reason(), error.message())])
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
    pub(crate) fn normal(reason: &str, message: String, action: &str) -> Note {
        Note { type_: EventType::Normal, reason: reason.to_string(), message, action: action.to_string(), only_if_changed: false }
    }

    /// A failed reconcile's Warning, published only when the status changed.
    pub(crate) fn warning(reason: &str, message: String) -> Note {
        Note { type_: EventType::Warning, reason: reason.to_string(), message, action: "Reconcile".into(), only_if_changed: true }
    }
}
/// The resource carries another object's owner tag (`error` is [`Error::OwnedByAnotherObject`]):
/// Stalled, nothing written, looked at again at the slow retry. A decision rather than an error, so
/// the status keeps what this pass learned (the ARM id, the credentials Secret it holds, which a
/// delete must release).
pub(super) fn owned_by_another(mut st: Desired, error: &Error, slow_retry: Duration) -> Decision {
    info!(reason = error.reason(), "the Azure resource belongs to another object: nothing written");
    st.stand(Standing::stalled(error.reason(), error.message()));
    Decision::new(st, Action::requeue(jitter(slow_retry, 0.1))).with(vec![Note::warning(error.reason(), error.message())])
}
/// ARM refused the write because `existing` already is what the spec describes (see
/// [`AmlKind::write_failed`]): the object now tracks it, says so, and looks again at once.
/// An existing resource that already is what the spec describes, adopted instead of written.
pub(super) fn adopted<K: AmlKind>(mut st: Desired, existing: &Value) -> Decision {
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
    st.stand(Standing::in_progress("Adopting", format!("Adopting the existing {id}")));
    Decision::new(st, Action::requeue(MIN_POLL)).with(vec![note])
}
/// An ARM operation of this object in flight: `action` is Create, Update or Delete.
pub(super) fn in_flight(action: &str) -> Standing {
    let lower = action.to_lowercase();
    Standing::InProgress {
        ready: Cond::no(progress_reason(action), format!("Waiting for ARM to finish the {lower}")),
        reconciling: Cond::yes(progress_reason(action), format!("ARM {lower} in progress")),
    }
}

/// Not Ready and nothing under way: Stalled if a person was already asked to act (its Stalled
/// condition stays), else settled.
pub(super) fn settled_unless_stalled(st: &mut Desired, ready: Cond) -> Standing {
    match st.stalled.take() {
        Some(stalled) => Standing::Stalled { ready, stalled },
        None => Standing::Settled(ready),
    }
}

pub(super) fn progress_reason(action: &str) -> &'static str {
    match action {
        "Create" => "Creating",
        "Update" => "Updating",
        "Delete" => "Deleting",
        _ => "Reconciling",
    }
}
/// The status of an object ARM shows in a terminal state, with nothing (more) to write: Ready, or
/// why not. Pure: computed without IO.
pub(super) fn converged(
    config: &crate::controller::Config,
    mut st: Desired,
    state: &str,
    actual: &Value,
    drifted: &[String],
    observe_only: bool,
) -> Decision {
    let standing = if state == "Succeeded" && drifted.is_empty() {
        st.last_failure = None;
        Standing::Current { reason: "Succeeded".into(), message: "The Azure resource matches the spec".into() }
    } else if state != "Succeeded" {
        // Only with managementPolicy Observe: a managed object treats this as an operation failure.
        let detail = provisioning_errors(actual).unwrap_or_else(|| format!("provisioningState is {state}"));
        Standing::stalled("ArmProvisioningFailed", format!("ARM reports the resource {state}: {detail}. managementPolicy Observe does not write"))
    } else if observe_only {
        Standing::Settled(Cond::no("Drifted", format!("Azure differs from the spec at {}; managementPolicy Observe does not write", drifted.join(", "))))
    } else {
        // A failure at this generation that waits for a person, and still different: keep it visible.
        let ready = st.ready.clone().unwrap_or_else(|| {
            Cond::no(reason::OPERATION_FAILED, format!("The last ARM operation failed; edit the spec or set the annotation {RETRY_ANNOTATION} to retry"))
        });
        settled_unless_stalled(&mut st, ready)
    };
    st.stand(standing);
    Decision::new(st, Action::requeue(jitter(config.resync, 0.1)))
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
        let d = converged(&crate::controller::Config::default(), st, "Succeeded", &json!({}), &[], false);
        let st = d.status.expect("a status");
        assert_eq!(st.ready, Some(Cond::yes("Succeeded", "The Azure resource matches the spec")));
        assert!(st.reconciling.is_none() && st.stalled.is_none() && st.last_failure.is_none());
        assert!(d.events.is_empty());
    }

    #[test]
    fn an_observed_resource_that_differs_says_where_and_writes_nothing() {
        let d = converged(&crate::controller::Config::default(), Desired::default(), "Succeeded", &json!({}), &["/tags".to_string()], true);
        let ready = d.status.unwrap().ready.unwrap();
        assert_eq!(ready.reason, "Drifted");
        assert!(ready.message.contains("/tags") && ready.message.contains("Observe"), "{}", ready.message);
    }

    #[test]
    fn a_transient_operation_failure_retries_at_a_time_it_states() {
        let config = crate::controller::Config::default();
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
        let config = crate::controller::Config::default();
        let d = operation_failed(&workspace(1), &config, Desired::default(), &target(), "Create", "ImageBuildFailure".into(), "No image.".into());
        let st = d.status.unwrap();
        let stalled = st.stalled.expect("Stalled");
        assert_eq!(stalled.reason, reason::OPERATION_FAILED);
        assert!(stalled.message.contains(RETRY_ANNOTATION), "{}", stalled.message);
        assert!(st.reconciling.is_none());
        assert_eq!(st.last_failure.unwrap().class, CLASS_NEEDS_PERSON);
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
