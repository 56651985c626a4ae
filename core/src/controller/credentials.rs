//! Credentials: which Secret an object uses, read into a `ServicePrincipal`.
//!
//! Lookup order: `spec.credentials.secretName` in the object's namespace; else `aml-credentials` in
//! the object's namespace; else the operator-wide default, for namespaces the admin's
//! `--default-credentials-namespace-selector` selects (`tenancy`). An object can never name a Secret in
//! another namespace. Values are read into `arm::Secret`, whose Debug and Display redact them.
//!
//! A Secret holds `tenantId`, `clientId`, optionally `subscriptionId`, and one credential:
//! `clientSecret`, or `clientCertificate` (PEM: certificate and unencrypted RSA private key), or
//! neither, for workload identity through the operator's own federated service-account token
//! (`AZURE_FEDERATED_TOKEN_FILE`; `tenantId`/`clientId` may then come from `AZURE_TENANT_ID` /
//! `AZURE_CLIENT_ID`).

use super::{Context, Error};
use crate::arm::{ClientCredential, Secret as SecretValue, ServicePrincipal};
use crate::crd::{CredentialsRef, DEFAULT_CREDENTIALS_SECRET};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use std::path::PathBuf;

/// Where the credentials of an object come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretLocation {
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
}

/// What credential resolution found.
pub struct Found {
    /// The service principal the Secret describes.
    pub principal: ServicePrincipal,
    /// Where the Secret is.
    pub location: SecretLocation,
    /// The Secret as read, so protecting it (`protect::hold`) needs no second read.
    pub secret: Box<Secret>,
}

/// Reads the service principal for an object in `namespace`. Reads only: protecting the Secret
/// it found is the caller's step (`protect::hold`).
pub async fn resolve(ctx: &Context, namespace: &str, reference: Option<&CredentialsRef>) -> Result<Found, Error> {
    // Each candidate with whether it is the operator-wide default.
    let candidates: Vec<(SecretLocation, bool)> = match reference {
        Some(r) => vec![(SecretLocation { namespace: namespace.to_string(), name: r.secret_name.clone() }, false)],
        None => {
            let mut v = vec![(SecretLocation { namespace: namespace.to_string(), name: DEFAULT_CREDENTIALS_SECRET.to_string() }, false)];
            if let Some((ns, name)) = &ctx.config.default_credentials {
                v.push((SecretLocation { namespace: ns.clone(), name: name.clone() }, true));
            }
            v
        }
    };
    for (location, is_default) in &candidates {
        // The operator-wide default serves only the namespaces the admin's selector selects;
        // decided before that Secret is read.
        if *is_default && !ctx.namespaces.may_use_default(ctx, namespace).await? {
            return Err(Error::DefaultCredentialsNotAllowed {
                namespace: namespace.to_string(),
                selector: ctx.config.default_credentials_namespaces.to_string(),
            });
        }
        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &location.namespace);
        let secret = api
            .get_opt(&location.name)
            .await
            .map_err(|source| Error::Kube { what: "reading the credentials Secret", source })?;
        if let Some(secret) = secret {
            let principal = principal(&secret, location, &process_env)?;
            return Ok(Found { principal, location: location.clone(), secret: Box::new(secret) });
        }
    }
    let first = &candidates[0].0;
    Err(Error::CredentialsNotFound { namespace: first.namespace.clone(), name: first.name.clone() })
}

/// Environment variable naming the projected service-account token (workload identity).
pub const ENV_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
/// Environment variable with the tenant id (workload identity), used when the Secret has none.
pub const ENV_TENANT_ID: &str = "AZURE_TENANT_ID";
/// Environment variable with the client id (workload identity), used when the Secret has none.
pub const ENV_CLIENT_ID: &str = "AZURE_CLIENT_ID";

/// What a Secret must hold besides tenantId and clientId, for the `CredentialsInvalid` message.
const CREDENTIAL_KEYS: &str =
    "clientSecret or clientCertificate (or set AZURE_FEDERATED_TOKEN_FILE for workload identity)";

/// The operator's environment, non-empty values only.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// Reads the principal from the Secret's data, with `env` as the process environment.
///
/// The credential is the first of: `clientSecret`; `clientCertificate` (PEM with the certificate
/// and its unencrypted private key; `clientCertificatePassword` is not supported); workload
/// identity when `AZURE_FEDERATED_TOKEN_FILE` is set, with `tenantId`/`clientId` falling back to
/// `AZURE_TENANT_ID`/`AZURE_CLIENT_ID`.
fn principal(
    secret: &Secret,
    location: &SecretLocation,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ServicePrincipal, Error> {
    let value = |key: &'static str| -> Option<String> {
        let bytes = secret.data.as_ref()?.get(key)?;
        let s = String::from_utf8(bytes.0.clone()).ok()?;
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_string())
    };
    let invalid = |key: &'static str| Error::CredentialsInvalid {
        namespace: location.namespace.clone(),
        name: location.name.clone(),
        key,
    };
    let credential = if let Some(secret) = value("clientSecret") {
        Some(ClientCredential::Secret(SecretValue::new(secret)))
    } else if let Some(pem) = value("clientCertificate") {
        Some(ClientCredential::Certificate { pem: SecretValue::new(pem) })
    } else {
        env(ENV_FEDERATED_TOKEN_FILE)
            .map(|path| ClientCredential::WorkloadIdentity { token_file: PathBuf::from(path) })
    };
    let workload = matches!(credential, Some(ClientCredential::WorkloadIdentity { .. }));
    let fallback = |name: &str| if workload { env(name) } else { None };
    let tenant_id = value("tenantId").or_else(|| fallback(ENV_TENANT_ID)).ok_or_else(|| invalid("tenantId"))?;
    let client_id = value("clientId").or_else(|| fallback(ENV_CLIENT_ID)).ok_or_else(|| invalid("clientId"))?;
    Ok(ServicePrincipal {
        tenant_id,
        client_id,
        credential: credential.ok_or_else(|| invalid(CREDENTIAL_KEYS))?,
        subscription_id: value("subscriptionId"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(data: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()),
            ..Default::default()
        }
    }

    fn location() -> SecretLocation {
        SecretLocation { namespace: "team-a".into(), name: "aml-credentials".into() }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn workload_env(name: &str) -> Option<String> {
        match name {
            ENV_FEDERATED_TOKEN_FILE => Some("/var/run/secrets/azure/tokens/azure-identity-token".into()),
            ENV_TENANT_ID => Some("env-tenant".into()),
            ENV_CLIENT_ID => Some("env-client".into()),
            _ => None,
        }
    }

    #[test]
    fn client_secret_comes_first() {
        let s = secret(&[("tenantId", "t"), ("clientId", "c"), ("clientSecret", " s3cr3t \n"), ("clientCertificate", "pem")]);
        let sp = principal(&s, &location(), &workload_env).unwrap();
        assert_eq!(sp.credential, ClientCredential::Secret(SecretValue::new("s3cr3t".into())));
        assert_eq!((sp.tenant_id.as_str(), sp.client_id.as_str()), ("t", "c"));
        assert!(!format!("{sp:?}").contains("s3cr3t"));
    }

    #[test]
    fn client_certificate_is_read_and_redacted() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
        let s = secret(&[("tenantId", "t"), ("clientId", "c"), ("clientCertificate", pem), ("subscriptionId", "sub")]);
        let sp = principal(&s, &location(), &no_env).unwrap();
        assert_eq!(sp.credential, ClientCredential::Certificate { pem: SecretValue::new(pem.into()) });
        assert_eq!(sp.subscription_id.as_deref(), Some("sub"));
        assert!(!format!("{sp:?}").contains("MIIB"));
    }

    #[test]
    fn workload_identity_uses_the_token_file_and_env_ids() {
        let sp = principal(&secret(&[("subscriptionId", "sub")]), &location(), &workload_env).unwrap();
        assert_eq!(
            sp.credential,
            ClientCredential::WorkloadIdentity {
                token_file: PathBuf::from("/var/run/secrets/azure/tokens/azure-identity-token")
            }
        );
        assert_eq!((sp.tenant_id.as_str(), sp.client_id.as_str()), ("env-tenant", "env-client"));
        // The Secret's ids win over the environment.
        let sp = principal(&secret(&[("tenantId", "t"), ("clientId", "c")]), &location(), &workload_env).unwrap();
        assert_eq!((sp.tenant_id.as_str(), sp.client_id.as_str()), ("t", "c"));
    }

    #[test]
    fn environment_ids_do_not_complete_a_secret_or_certificate() {
        let err = principal(&secret(&[("clientSecret", "s")]), &location(), &workload_env).unwrap_err();
        assert!(matches!(err, Error::CredentialsInvalid { key: "tenantId", .. }), "{err}");
    }

    #[test]
    fn no_credential_names_the_keys() {
        let err = principal(&secret(&[("tenantId", "t"), ("clientId", "c")]), &location(), &no_env).unwrap_err();
        let Error::CredentialsInvalid { key, .. } = &err else { panic!("unexpected {err}") };
        for name in ["clientSecret", "clientCertificate", "AZURE_FEDERATED_TOKEN_FILE"] {
            assert!(key.contains(name), "{key}");
        }
        assert_eq!(err.reason(), "CredentialsInvalid");
        // Without a token file there is no workload identity, so no fallback to the environment.
        let only_ids = |name: &str| workload_env(name).filter(|_| name != ENV_FEDERATED_TOKEN_FILE);
        let err = principal(&secret(&[]), &location(), &only_ids).unwrap_err();
        assert!(matches!(err, Error::CredentialsInvalid { key: "tenantId", .. }), "{err}");
    }
}
