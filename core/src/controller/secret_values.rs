//! Values the spec takes from Secrets of the object's namespace (a compute's administrator
//! password, a datastore's account key): read when a write needs them, never logged, never in
//! status or errors.

use super::{Context, Error};
use crate::crd::SecretKeyRef;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

/// The value of the Secret key `reference` in `ns`, which the spec names at `field`. Errors name the
/// Secret, the key and the field, never the value.
pub async fn read(ctx: &Context, ns: &str, reference: &SecretKeyRef, field: &str) -> Result<String, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = api
        .get_opt(&reference.name)
        .await
        .map_err(|source| Error::Kube { what: "reading a Secret the spec names", source })?;
    let missing = || {
        Error::SecretNotFound(format!(
            "Secret {ns}/{} with key {} ({field}) not found: create it",
            reference.name, reference.key
        ))
    };
    let secret = secret.ok_or_else(missing)?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&reference.key))
        .map(|b| b.0.clone())
        .or_else(|| secret.string_data.as_ref().and_then(|d| d.get(&reference.key)).map(|s| s.clone().into_bytes()))
        .ok_or_else(missing)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Error::SecretNotFound(format!("Secret {ns}/{} key {} is not UTF-8 text", reference.name, reference.key))
    })?;
    // `kubectl create secret --from-file` keeps the file's final newline; ARM must not get it.
    let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text).to_string();
    if text.is_empty() {
        return Err(Error::SecretNotFound(format!(
            "Secret {ns}/{} key {} is empty: put the value there",
            reference.name, reference.key
        )));
    }
    Ok(text)
}

