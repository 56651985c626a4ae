//! Events: what a reconcile publishes, Warning through kube's recorder (repeats fold into a
//! series), Normal posted as they are.

use crate::controller::{
    AmlKind, Context,
};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::{Event, EventType};
use kube::Api;
use tracing::debug;


/// Longest Event note the API server takes (events.k8s.io/v1 validation: at most 1 kB).
pub(super) const MAX_NOTE: usize = 1024;
/// `note` cut to [`MAX_NOTE`] bytes at a character boundary, marked `...` when cut: a longer note
/// makes the API server refuse the whole Event. What to change comes first in the operator's
/// messages; the full text is in the object's conditions.
pub(super) fn bounded_note(note: String) -> String {
    if note.len() <= MAX_NOTE {
        return note;
    }
    let mut end = MAX_NOTE - 3;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &note[..end])
}
pub(super) async fn publish<K: AmlKind>(ctx: &Context, obj: &K, type_: EventType, reason: &str, note: String, action: &str) {
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
pub(super) async fn post_event(client: &kube::Client, event: &Event, reference: &k8s_openapi::api::core::v1::ObjectReference) -> Result<(), kube::Error> {
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
            name: Some(format!("{}.{:x}", reference.name.as_deref().unwrap_or(crate::controller::REPORTER), now.as_nanosecond())),
            ..Default::default()
        },
        reporting_controller: Some(crate::controller::REPORTER.into()),
        reporting_instance: Some(crate::controller::REPORTER.into()),
        type_: Some("Normal".into()),
        ..Default::default()
    };
    Api::<K8sEvent>::namespaced(client.clone(), &namespace).create(&kube::api::PostParams::default(), &k8s).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_notes_fit_the_api_servers_limit() {
        assert_eq!(bounded_note("short".into()), "short");
        let long = format!("{}é{}", "a".repeat(1020), "b".repeat(100));
        let cut = bounded_note(long.clone());
        assert!(cut.len() <= MAX_NOTE && cut.ends_with("...") && long.starts_with(cut.trim_end_matches("...")), "{}", cut.len());
    }
}
