//! Waking the objects a Secret serves when it changes (a credentials Secret, or one a value of the
//! ARM body comes from, such as a datastore's account key): a fixed or rotated secret takes effect
//! within seconds, not at the next retry or resync.
//!
//! Secrets are watched by metadata only: a new `resourceVersion` is all a wake needs, and the data
//! is read only when an object's reconcile needs it (`credentials::resolve`). Nothing is cached:
//! each change is mapped to the objects of each kind's own store ([`uses`]) and forgotten.
//! Changes the operator made itself (the `credentials-in-use` finalizer, see `protect`) wake
//! nothing, and neither does the first listing of the Secrets: every object is reconciled at
//! start anyway.

use super::{AmlKind, Context};
use crate::crd::DEFAULT_CREDENTIALS_SECRET;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use tracing::{debug, warn};

/// A Secret that changed: (namespace, name).
pub type SecretRef = (String, String);

/// The `resourceVersion` of the operator's own last write per Secret: an event carrying it is that
/// write coming back, not a change someone made.
#[derive(Default)]
pub struct OwnWrites(Mutex<HashMap<SecretRef, String>>);

impl OwnWrites {
    /// Records that the operator's write left `secret` at `resource_version`.
    pub fn note(&self, secret: &Secret) {
        let (Some(ns), Some(rv)) = (secret.namespace(), secret.resource_version()) else { return };
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert((ns, secret.name_any()), rv);
    }

    fn is_own(&self, secret: &SecretRef, resource_version: Option<&str>) -> bool {
        resource_version.is_some() && self.0.lock().unwrap_or_else(|e| e.into_inner()).get(secret).map(String::as_str) == resource_version
    }
}

/// Whether a change of the Secret `namespace/name` may change what `obj` writes to ARM: a Secret
/// it takes a value of the body from ([`AmlKind::secret_values`]); or the credentials it uses:
/// the Secret its spec names; else its namespace's `aml-credentials`, or the operator-wide
/// default; and, for a child that inherits its parent's credentials, the Secret it last used
/// (`status.credentialsSecret`). Wider than exact (a child also wakes for its namespace's default
/// when its parent names another Secret): a needless wake costs one reconcile, a missed one a
/// person's wait.
pub fn uses<K: AmlKind>(obj: &K, namespace: &str, name: &str, default: Option<&SecretRef>) -> bool {
    let same_namespace = obj.namespace().as_deref() == Some(namespace);
    if same_namespace && obj.secret_values().iter().any(|v| v.reference.name == name) {
        return true;
    }
    if let Some(own) = obj.policies().credentials {
        return same_namespace && own.secret_name == name;
    }
    let is_default = default.is_some_and(|(ns, n)| ns == namespace && n == name);
    let last_used = obj.common_status().and_then(|s| s.credentials_secret.as_deref()) == Some(name);
    is_default || (same_namespace && (name == DEFAULT_CREDENTIALS_SECRET || last_used))
}

/// The objects of one kind's store that a change of `secret` wakes.
pub fn woken<K: AmlKind>(store: &kube::runtime::reflector::Store<K>, secret: &SecretRef, default: Option<&SecretRef>) -> Vec<ObjectRef<K>> {
    store.state().iter().filter(|o| uses(&***o, &secret.0, &secret.1, default)).map(|o| ObjectRef::from_obj(&**o)).collect()
}

/// Watches the Secrets the objects may use and sends each change someone else made to `tx`, until
/// the watches end. `namespace`: the one watched namespace (all when `None`); the operator-wide
/// default Secret, when it lives elsewhere, is watched on its own by name.
pub async fn watch_changes(ctx: Arc<Context>, namespace: Option<String>, tx: broadcast::Sender<SecretRef>) {
    let default = ctx.config.default_credentials.clone();
    let mut streams = vec![changes(&ctx.client, namespace.as_deref(), None).boxed()];
    if let (Some(watched), Some((ns, name))) = (&namespace, &default)
        && ns != watched
    {
        streams.push(changes(&ctx.client, Some(ns), Some(name)).boxed());
    }
    let mut all = futures::stream::select_all(streams);
    while let Some(secret) = all.next().await {
        if let Some((secret, rv)) = secret {
            if ctx.own_secret_writes.is_own(&secret, rv.as_deref()) {
                continue;
            }
            debug!(namespace = %secret.0, name = %secret.1, "credentials Secret changed: waking the objects that use it");
            // No receiver: no controller runs (shutting down); nothing to wake.
            let _ = tx.send(secret);
        }
    }
}

/// The Secrets changed (or deleted) after the first listing, each with its new resourceVersion;
/// `None` items for events that are not changes.
fn changes(client: &Client, namespace: Option<&str>, name: Option<&str>) -> impl Stream<Item = Option<(SecretRef, Option<String>)>> + Send + use<> {
    // `PartialObjectMeta` makes every list and watch a metadata-only request.
    let api: Api<PartialObjectMeta<Secret>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut config = watcher::Config::default().any_semantic();
    if let Some(name) = name {
        config = config.fields(&format!("metadata.name={name}"));
    }
    watcher(api, config).default_backoff().map(|event| match event {
        Ok(watcher::Event::Apply(s) | watcher::Event::Delete(s)) => {
            Some(((s.namespace().unwrap_or_default(), s.name_any()), s.resource_version()))
        }
        Ok(_) => None,
        Err(e) => {
            warn!(error = %e, "watching credentials Secrets failed; retrying (a fixed Secret then takes effect at the next retry)");
            None
        }
    })
}

/// The changes sent to `rx` as a stream for one controller (a lagging receiver skips what it
/// missed: those objects are woken by their next retry instead).
pub fn stream(rx: broadcast::Receiver<SecretRef>) -> impl Stream<Item = SecretRef> + Send {
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(secret) => return Some((secret, rx)),
                Err(broadcast::error::RecvError::Lagged(n)) => warn!(missed = n, "credentials Secret changes missed"),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AmlCompute, AmlWorkspace};
    use serde_json::json;

    fn workspace(spec: serde_json::Value, status: serde_json::Value) -> AmlWorkspace {
        let mut base = json!({"resourceGroup": "rg", "location": "eastus"});
        base.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
        serde_json::from_value(json!({
            "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
            "metadata": {"name": "ws", "namespace": "team-a"}, "spec": base, "status": status
        }))
        .unwrap()
    }

    fn compute(status: serde_json::Value) -> AmlCompute {
        serde_json::from_value(json!({
            "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlCompute",
            "metadata": {"name": "c", "namespace": "team-a"},
            "spec": {"workspaceRef": {"name": "ws"}, "computeType": "AmlCompute", "amlCompute": {"vmSize": "STANDARD_DS3_V2"}},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn a_named_secret_wakes_only_its_objects() {
        let named = workspace(json!({"credentials": {"secretName": "team-sp"}}), json!({}));
        let default = ("aml-system".to_string(), "aml-default".to_string());
        assert!(uses(&named, "team-a", "team-sp", Some(&default)));
        assert!(!uses(&named, "team-b", "team-sp", Some(&default)), "another namespace's Secret of that name");
        assert!(!uses(&named, "team-a", "aml-credentials", Some(&default)), "it never falls back");
        assert!(!uses(&named, "aml-system", "aml-default", Some(&default)));
    }

    #[test]
    fn without_a_named_secret_the_namespace_default_and_the_operator_default_wake() {
        let plain = workspace(json!({}), json!({}));
        let default = ("aml-system".to_string(), "aml-default".to_string());
        assert!(uses(&plain, "team-a", "aml-credentials", Some(&default)));
        assert!(uses(&plain, "aml-system", "aml-default", Some(&default)));
        assert!(!uses(&plain, "aml-system", "aml-default", None), "no operator default configured");
        assert!(!uses(&plain, "team-b", "aml-credentials", Some(&default)));
        assert!(!uses(&plain, "team-a", "helm.release.v1", Some(&default)), "an unrelated Secret");
    }

    #[test]
    fn a_child_wakes_for_the_secret_it_inherited() {
        let child = compute(json!({"credentialsSecret": "parent-sp"}));
        assert!(uses(&child, "team-a", "parent-sp", None));
        assert!(uses(&child, "team-a", "aml-credentials", None));
        assert!(!uses(&child, "team-a", "other", None));
    }

    #[test]
    fn the_operators_own_write_is_not_a_change() {
        let own = OwnWrites::default();
        let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "s", "namespace": "n", "resourceVersion": "42"}})).unwrap();
        own.note(&secret);
        let key = ("n".to_string(), "s".to_string());
        assert!(own.is_own(&key, Some("42")));
        assert!(!own.is_own(&key, Some("43")), "a later change by someone else");
        assert!(!own.is_own(&("n".to_string(), "t".to_string()), Some("42")));
        assert!(!own.is_own(&key, None));
    }
}
