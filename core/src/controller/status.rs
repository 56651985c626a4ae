//! Computing the status an object should have, and writing it only when it changed.

use super::{AmlKind, Context, Error, Target};
use crate::crd::{CommonStatus, FailureStatus, OperationStatus, condition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::{Map, Value, json};

/// Field manager for every write the operator makes.
pub const FIELD_MANAGER: &str = "aml-operator";

/// A condition to set: status, reason, message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    /// PascalCase reason.
    pub reason: String,
    /// Message a person can act on.
    pub message: String,
}

impl Cond {
    /// A condition with status `True`.
    pub fn yes(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Cond { status: "True", reason: reason.into(), message: message.into() }
    }
    /// A condition with status `False`.
    pub fn no(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Cond { status: "False", reason: reason.into(), message: message.into() }
    }
}

/// Where an object stands, in kstatus terms: [`Desired::stand`] sets Ready, Reconciling and Stalled
/// together from it, so the three never contradict each other (never Reconciling and Stalled at
/// once, never Ready with either).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Ready=True: Azure matches the spec.
    Current { reason: String, message: String },
    /// Ready=False and Reconciling=True: work under way, or a wait that ends by itself.
    InProgress { ready: Cond, reconciling: Cond },
    /// Ready=False and Stalled=True: a person must act.
    Stalled { ready: Cond, stalled: Cond },
    /// Ready=False alone: nothing happens by itself and nothing is wrong (managementPolicy Observe,
    /// or a spec that waits for something only a person adds).
    Settled(Cond),
}

impl Standing {
    /// In progress, one reason and message for both conditions.
    pub fn in_progress(reason: impl Into<String>, message: impl Into<String>) -> Self {
        let (reason, message) = (reason.into(), message.into());
        Standing::InProgress { ready: Cond::no(reason.clone(), message.clone()), reconciling: Cond::yes(reason, message) }
    }

    /// Stalled, one reason and message for both conditions.
    pub fn stalled(reason: impl Into<String>, message: impl Into<String>) -> Self {
        let (reason, message) = (reason.into(), message.into());
        Standing::Stalled { ready: Cond::no(reason.clone(), message.clone()), stalled: Cond::yes(reason, message) }
    }
}

/// The status an object should have after this reconcile.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    /// ARM's provisioningState.
    pub provisioning_state: Option<String>,
    /// ARM id.
    pub arm_id: Option<String>,
    /// Azure region.
    pub location: Option<String>,
    /// The credentials Secret used, when in the object's namespace.
    pub credentials_secret: Option<String>,
    /// Operation in flight.
    pub operation: Option<OperationStatus>,
    /// Kind-specific outputs.
    pub outputs: Map<String, Value>,
    /// Ready condition (always written).
    pub ready: Option<Cond>,
    /// Reconciling=True, when set.
    pub reconciling: Option<Cond>,
    /// Stalled=True, when set.
    pub stalled: Option<Cond>,
    /// The ARM operation failure being retried or waiting for a person.
    pub last_failure: Option<FailureStatus>,
    /// The retry annotation value last acted on.
    pub retry_token: Option<String>,
}

impl Desired {
    /// Sets Ready, Reconciling and Stalled from where the object stands: the one place they are set.
    pub fn stand(&mut self, standing: Standing) {
        (self.ready, self.reconciling, self.stalled) = match standing {
            Standing::Current { reason, message } => (Some(Cond::yes(reason, message)), None, None),
            Standing::InProgress { ready, reconciling } => (Some(ready), Some(reconciling), None),
            Standing::Stalled { ready, stalled } => (Some(ready), None, Some(stalled)),
            Standing::Settled(ready) => (Some(ready), None, None),
        };
    }

    /// Starts from what the object's status already says, so a partial update keeps the rest.
    pub fn from_current(current: Option<&CommonStatus>, outputs: Map<String, Value>) -> Self {
        let current = current.cloned().unwrap_or_default();
        let find = |t: &str| {
            current.conditions.iter().find(|c| c.type_ == t && c.status == "True").map(|c| Cond {
                status: "True",
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
        };
        let ready = current.conditions.iter().find(|c| c.type_ == condition::READY).map(|c| Cond {
            status: if c.status == "True" { "True" } else if c.status == "False" { "False" } else { "Unknown" },
            reason: c.reason.clone(),
            message: c.message.clone(),
        });
        Desired {
            provisioning_state: current.provisioning_state,
            arm_id: current.arm_id,
            location: current.location,
            credentials_secret: current.credentials_secret,
            operation: current.operation,
            outputs,
            ready,
            reconciling: find(condition::RECONCILING),
            stalled: find(condition::STALLED),
            last_failure: current.last_failure,
            retry_token: current.retry_token,
        }
    }
}

fn condition(type_: &str, c: &Cond, generation: Option<i64>, previous: &[Condition], now: &Time) -> Condition {
    let last = previous
        .iter()
        .find(|p| p.type_ == type_ && p.status == c.status)
        .map(|p| p.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_string(),
        status: c.status.to_string(),
        reason: c.reason.clone(),
        message: truncate(&c.message, 4096),
        observed_generation: generation,
        last_transition_time: last,
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Builds the status JSON for `obj` from `desired`, keeping transition times of unchanged conditions.
pub fn render<K: AmlKind>(obj: &K, desired: &Desired) -> Value {
    let previous = obj.common_status().map(|s| s.conditions.clone()).unwrap_or_default();
    let generation = obj.meta().generation;
    let now = Time(Timestamp::now());
    let mut conditions = Vec::new();
    let ready = desired
        .ready
        .clone()
        .unwrap_or_else(|| Cond { status: "Unknown", reason: "Pending".into(), message: "Not reconciled yet".into() });
    conditions.push(condition(condition::READY, &ready, generation, &previous, &now));
    if let Some(c) = &desired.reconciling {
        conditions.push(condition(condition::RECONCILING, c, generation, &previous, &now));
    }
    if let Some(c) = &desired.stalled {
        conditions.push(condition(condition::STALLED, c, generation, &previous, &now));
    }
    let common = CommonStatus {
        provisioning_state: desired.provisioning_state.clone(),
        arm_id: desired.arm_id.clone(),
        location: desired.location.clone(),
        credentials_secret: desired.credentials_secret.clone(),
        observed_generation: generation,
        conditions,
        operation: desired.operation.clone(),
        last_failure: desired.last_failure.clone(),
        retry_token: desired.retry_token.clone(),
    };
    let mut value = serde_json::to_value(&common).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut value {
        for (k, v) in &desired.outputs {
            if !v.is_null() {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    value
}

/// The object's current status as JSON (Null when absent).
fn current_status<K: AmlKind>(obj: &K) -> Value {
    serde_json::to_value(obj).ok().and_then(|mut v| v.get_mut("status").map(Value::take)).unwrap_or(Value::Null)
}

/// Writes `desired` as the object's status by server-side apply, only when it differs from what the
/// object already shows. Returns whether a write happened.
pub async fn write<K: AmlKind>(ctx: &Context, obj: &K, desired: &Desired) -> Result<bool, Error> {
    let status = render(obj, desired);
    if status == current_status(obj) {
        return Ok(false);
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(&obj.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|source| Error::Kube { what: "status update", source })?;
    Ok(true)
}

/// The status the object has now, as a starting point.
pub(crate) fn current<K: AmlKind>(obj: &K) -> Desired {
    let outputs = serde_json::to_value(obj)
        .ok()
        .and_then(|v| v.get("status").cloned())
        .and_then(|s| match s {
            Value::Object(mut m) => {
                for k in crate::crd::COMMON_STATUS_FIELDS {
                    m.remove(*k);
                }
                Some(m)
            }
            _ => None,
        })
        .unwrap_or_default();
    Desired::from_current(obj.common_status(), outputs)
}

/// Writes the object's status now with `outputs` added (and its ARM id and location), keeping
/// everything else it shows: for a kind that must record what it is about to create before it
/// creates it, so a restart, or a deletion, finds it.
pub(crate) async fn record_outputs<K: AmlKind>(
    ctx: &Context,
    obj: &K,
    target: &Target,
    outputs: &serde_json::Map<String, Value>,
) -> Result<(), Error> {
    let mut st = current(obj);
    st.arm_id = Some(target.arm_id.clone());
    st.location = Some(target.location.clone());
    st.outputs.extend(outputs.clone());
    write(ctx, obj, &st).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_an_object_stands_sets_the_three_conditions_together() {
        let mut st = Desired {
            reconciling: Some(Cond::yes("Creating", "old")),
            stalled: Some(Cond::yes("QuotaExceeded", "old")),
            ..Desired::default()
        };
        st.stand(Standing::Current { reason: "Succeeded".into(), message: "m".into() });
        assert_eq!((st.ready.clone(), st.reconciling.clone(), st.stalled.clone()), (Some(Cond::yes("Succeeded", "m")), None, None));
        st.stand(Standing::stalled("QuotaExceeded", "ask for more"));
        assert_eq!((st.ready.clone(), st.reconciling.clone()), (Some(Cond::no("QuotaExceeded", "ask for more")), None));
        assert_eq!(st.stalled, Some(Cond::yes("QuotaExceeded", "ask for more")));
        st.stand(Standing::in_progress("Deleting", "ARM delete in progress"));
        assert_eq!((st.reconciling.clone().map(|c| c.status), st.stalled.clone()), (Some("True"), None), "never Reconciling and Stalled at once");
        st.stand(Standing::Settled(Cond::no("Drifted", "m")));
        assert_eq!((st.ready.map(|c| c.status), st.reconciling, st.stalled), (Some("False"), None, None));
    }
}
