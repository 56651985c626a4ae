//! Credentials: which Secret an object uses, read into a `ServicePrincipal`.
//!
//! Lookup order: `spec.credentials.secretName` in the object's namespace; else `aml-credentials` in
//! the object's namespace; else the operator-wide default. An object can never name a Secret in
//! another namespace. Values are read into `arm::Secret`, whose Debug and Display redact them.

use super::{Context, Error};
use crate::arm::{Secret as SecretValue, ServicePrincipal};
use crate::crd::{CredentialsRef, DEFAULT_CREDENTIALS_SECRET};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

/// Where the credentials of an object come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretLocation {
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
}

/// Reads the service principal for an object in `namespace`.
pub async fn resolve(
    ctx: &Context,
    namespace: &str,
    reference: Option<&CredentialsRef>,
) -> Result<(ServicePrincipal, SecretLocation), Error> {
    let candidates: Vec<SecretLocation> = match reference {
        Some(r) => vec![SecretLocation { namespace: namespace.to_string(), name: r.secret_name.clone() }],
        None => {
            let mut v = vec![SecretLocation {
                namespace: namespace.to_string(),
                name: DEFAULT_CREDENTIALS_SECRET.to_string(),
            }];
            if let Some((ns, name)) = &ctx.config.default_credentials {
                v.push(SecretLocation { namespace: ns.clone(), name: name.clone() });
            }
            v
        }
    };
    for location in &candidates {
        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &location.namespace);
        let secret = api
            .get_opt(&location.name)
            .await
            .map_err(|source| Error::Kube { what: "reading the credentials Secret", source })?;
        if let Some(secret) = secret {
            return Ok((principal(&secret, location)?, location.clone()));
        }
    }
    let first = &candidates[0];
    Err(Error::CredentialsNotFound { namespace: first.namespace.clone(), name: first.name.clone() })
}

fn principal(secret: &Secret, location: &SecretLocation) -> Result<ServicePrincipal, Error> {
    let value = |key: &'static str| -> Option<String> {
        let bytes = secret.data.as_ref()?.get(key)?;
        let s = String::from_utf8(bytes.0.clone()).ok()?;
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_string())
    };
    let require = |key: &'static str| {
        value(key).ok_or_else(|| Error::CredentialsInvalid {
            namespace: location.namespace.clone(),
            name: location.name.clone(),
            key,
        })
    };
    Ok(ServicePrincipal {
        tenant_id: require("tenantId")?,
        client_id: require("clientId")?,
        client_secret: SecretValue::new(require("clientSecret")?),
        subscription_id: value("subscriptionId"),
    })
}
