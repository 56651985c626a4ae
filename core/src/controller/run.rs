//! The controllers that run the pipeline (given to them by the table of kinds, so this file sits
//! below it): one kube-rs `Controller` per kind, with the watches
//! that wake an object (its own changes that matter, its parents, its children where it waits for
//! them, and the credentials Secrets it uses).

use super::{AmlKind, Context, Error, secrets};
use kube::runtime::controller::Action;
use crate::shutdown::Shutdown;
use futures::{FutureExt, StreamExt};
use kube::api::DynamicObject;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::utils::PredicateConfig;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

/// What every kind's controller shares.
#[derive(Clone)]
pub struct Shared {
    /// The pipeline's context.
    pub ctx: Arc<Context>,
    /// The one namespace watched (all when `None`).
    pub namespace: Option<String>,
    /// Changes of credentials Secrets (see [`secrets::watch_changes`]).
    pub secret_changes: tokio::sync::broadcast::Sender<secrets::SecretRef>,
    /// When to stop taking new work.
    pub shutdown: Shutdown,
}

/// What about an object wakes its controller: its spec (`generation`, which deletion bumps too),
/// its deletion and its annotations (a retry request). Not its status, finalizers or owner
/// references: the operator writes those itself, and waking on them made every changed status a
/// new reconcile — a failing object retried as fast as the API server answered.
pub fn wakes<K: kube::Resource>(obj: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = obj.meta();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    meta.uid.hash(&mut h);
    meta.generation.hash(&mut h);
    meta.deletion_timestamp.is_some().hash(&mut h);
    meta.annotations.hash(&mut h);
    Some(h.finish())
}

/// Drops what the operator never reads before an object enters its cache: `managedFields` (on a
/// real API server often the largest part of an object) and kubectl's last-applied annotation (a
/// second copy of the spec).
pub fn trim_for_cache<K: kube::Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// The annotation `kubectl apply` (client-side) keeps the last applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The controller of one kind: watches its objects and, for children, their parents (and what they
/// use, [`AmlKind::references`]), so a child starts as soon as its parent becomes ready.
///
/// And, for a kind that waits for its children ([`AmlKind::watched_children`]: an endpoint's
/// traffic waits for its deployments), the children, so it is reconciled as soon as one changes.
pub(crate) async fn kind_controller<K, R, F>(c: Shared, on_synced: impl FnOnce() + Send + 'static, reconcile: R, error_policy: fn(Arc<K>, &Error, Arc<Context>) -> Action)
where
    K: AmlKind,
    R: FnMut(Arc<K>, Arc<Context>) -> F + Send + 'static,
    F: std::future::Future<Output = Result<Action, Error>> + Send + 'static,
{
    let Shared { ctx, namespace, secret_changes, shutdown } = c;
    let namespace = namespace.as_deref();
    let children = K::watched_children();
    let objects: Api<K> = match namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let concurrency = ctx.config.concurrency;
    crate::metrics::max_concurrent_reconciles(&K::kind(&()), usize::from(concurrency));
    let (reader, writer) = reflector::store();
    let wakes_of_interest = watcher(objects, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(trim_for_cache)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(wakes::<K>, PredicateConfig::default());
    let mut controller = kube::runtime::Controller::for_stream(wakes_of_interest, reader)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency));
    let store = controller.store();
    for parent in K::PARENT_KINDS.iter().chain(K::REFERENCE_KINDS) {
        let resource = parent.resource();
        let parents: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &resource),
            None => Api::all_with(ctx.client.clone(), &resource),
        };
        let store = store.clone();
        let kind = *parent;
        controller = controller.watches_with(parents, resource, watcher::Config::default().any_semantic(), move |p: DynamicObject| {
            let ns = p.namespace();
            let name = p.name_any();
            store
                .state()
                .into_iter()
                .filter(|c| c.namespace() == ns && c.names(kind, &name))
                .map(|c| ObjectRef::from_obj(&*c))
                .collect::<Vec<_>>()
        });
    }
    if let Some((resource, pointer)) = children {
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &resource),
            None => Api::all_with(ctx.client.clone(), &resource),
        };
        controller = controller.watches_with(api, resource, watcher::Config::default().any_semantic(), move |child: DynamicObject| {
            let parent = child.data.pointer(pointer).and_then(|v| v.as_str()).map(str::to_string);
            let ns = child.namespace();
            parent.map(|name| {
                let r = ObjectRef::<K>::new(&name);
                match ns {
                    Some(ns) => r.within(&ns),
                    None => r,
                }
            })
        });
    }
    // A changed credentials Secret wakes the objects that use it.
    let users = controller.store();
    let default = ctx.config.default_credentials.clone();
    let woken = secrets::stream(secret_changes.subscribe())
        .flat_map(move |secret| futures::stream::iter(secrets::woken(&users, &secret, default.as_ref())));
    controller = controller.reconcile_on(woken);
    let ready_store = controller.store();
    tokio::spawn(async move {
        // The store's readiness future keeps only the last waiter's waker (the controller waits on
        // it too), so poll it again now and then instead of trusting one wake-up.
        loop {
            match tokio::time::timeout(Duration::from_millis(500), ready_store.wait_until_ready()).await {
                Ok(Ok(())) => break,
                Ok(Err(_)) => return,
                Err(_) => continue,
            }
        }
        on_synced();
    });
    // The runner starts no reconcile before the cache has synced (e.g. the CRD is not installed
    // yet), so a shutdown then has nothing in flight to wait for.
    let unsynced_store = controller.store();
    let requested = shutdown.requested();
    let stop_unsynced = async move {
        requested.await;
        if unsynced_store.wait_until_ready().now_or_never().is_some() {
            std::future::pending::<()>().await;
        }
        tracing::debug!(kind = %K::kind(&()), "shutdown before the cache synced: nothing in flight");
    };
    let run = controller
        .graceful_shutdown_on(shutdown.requested())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(kind = %K::kind(&()), error = %e, "reconcile ended with an error");
            }
        });
    tokio::select! {
        _ = run => {},
        _ = stop_unsynced => {},
    }
}
