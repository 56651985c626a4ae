//! Closing the namespace-deletion trap: deleting a namespace deletes its credentials Secret
//! together with the objects that need it to delete their Azure resources. The operator therefore
//! puts a finalizer on every credentials Secret in use in an object's namespace, and removes it
//! only when no amloperator.io object is left in that namespace. A Secret being deleted stays
//! readable until then, so every object can still delete its Azure resource.

use super::{Context, Error};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

/// Finalizer the operator puts on credentials Secrets in use.
pub const SECRET_FINALIZER: &str = "amloperator.io/credentials-in-use";
/// Ready reason of an object being deleted that no longer needs Azure (its resource deleted or
/// left in place): it no longer needs its credentials either.
pub const RELEASED: &str = "Released";

/// Whether `o` is being deleted and has said it no longer needs Azure.
fn done_with_azure(o: &DynamicObject) -> bool {
    o.metadata.deletion_timestamp.is_some()
        && o.data["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["reason"] == RELEASED))
}


/// Adds the finalizer to a credentials Secret in an object's namespace (the operator-wide
/// default lives with the operator and is not at risk), from the copy the caller just read.
pub async fn hold(ctx: &Context, secret: &Secret) -> Result<(), Error> {
    if secret.finalizers().iter().any(|f| f == SECRET_FINALIZER) || secret.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &secret.namespace().unwrap_or_default());
    let mut finalizers = secret.finalizers().to_vec();
    finalizers.push(SECRET_FINALIZER.to_string());
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": secret.resource_version()}});
    let patched = api
        .patch(&secret.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::Kube { what: "protecting the credentials Secret with a finalizer", source })?;
    ctx.own_secret_writes.note(&patched);
    Ok(())
}

/// After an object released its Azure resource: when no other amloperator.io object in
/// `namespace` uses the Secret `secret` (by `status.credentialsSecret` or
/// `spec.credentials.secretName`) and still needs Azure, removes the finalizer from it. Only that Secret is read; the
/// operator never lists Secrets.
pub async fn release_if_last(ctx: &Context, namespace: &str, released_uid: &str, secret: &str) -> Result<(), Error> {
    for resource in crate::crd::resources() {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), namespace, &resource);
        let list = match api.list(&ListParams::default()).await {
            Ok(l) => l,
            // A kind whose CRD is not installed holds no objects.
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(source) => return Err(Error::Kube { what: "listing objects that may need credentials", source }),
        };
        let uses = |o: &DynamicObject| {
            o.data["status"]["credentialsSecret"].as_str() == Some(secret)
                || o.data["spec"]["credentials"]["secretName"].as_str() == Some(secret)
        };
        if list.items.iter().any(|o| o.uid().as_deref() != Some(released_uid) && uses(o) && !done_with_azure(o)) {
            return Ok(());
        }
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(current) = api
        .get_opt(secret)
        .await
        .map_err(|source| Error::Kube { what: "reading the credentials Secret to release", source })?
    else {
        return Ok(());
    };
    if !current.finalizers().iter().any(|f| f == SECRET_FINALIZER) {
        return Ok(());
    }
    let finalizers: Vec<&String> = current.finalizers().iter().filter(|f| *f != SECRET_FINALIZER).collect();
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": current.resource_version()}});
    match api.patch(secret, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(patched) => ctx.own_secret_writes.note(&patched),
        // Another object released at the same moment let it go first, and the Secret, being
        // deleted, is gone: released all the same.
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(source) => return Err(Error::Kube { what: "releasing the credentials Secret", source }),
    }
    Ok(())
}
