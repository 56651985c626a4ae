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

mod apply;
mod cleanup;
mod events;
mod outcome;

pub use outcome::{Decision, Note};

use crate::controller::{
    AmlKind, Context, Error, Retry,
};
use kube::api::{Patch, PatchParams};
use crate::crd::FINALIZER;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::{Api, ResourceExt};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tracing::{instrument, warn};

use apply::*;
use cleanup::*;
use outcome::*;

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
/// Writes what a failed reconcile shows (through `commit`, like every status): Ready=False with
/// the error's reason and message, and one Warning when that changed.
async fn report_failure<K: AmlKind>(obj: &K, error: &Error, ctx: &Context) {
    if let Err(e) = commit(obj, ctx, failed(obj, error)).await {
        warn!(error = %e.message(), "cannot write failure status");
    }
    warn!(reason = error.reason(), error = %error.message(), "reconcile failed");
}
