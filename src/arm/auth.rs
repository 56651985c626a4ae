//! Entra ID tokens through `azure_identity`: one cached `ClientSecretCredential` per
//! (tenant, client, secret), sending through the operator's own reqwest client.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret as AzureSecret, TokenCredential};
use azure_core::error::ErrorKind;
use azure_core::http::{
    AsyncRawResponse, ClientOptions, HttpClient, Request, RetryOptions, Transport,
};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use serde_json::Value;

use super::{Error, ServicePrincipal};

/// Most credentials kept; beyond this the cache starts over (rotations and many principals).
const MAX_CREDENTIALS: usize = 64;

/// Counters shared by the ARM client and the token transport.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub get: AtomicU64,
    pub put: AtomicU64,
    pub patch: AtomicU64,
    pub delete: AtomicU64,
    pub post: AtomicU64,
    pub poll: AtomicU64,
    pub token_requests: AtomicU64,
    pub credentials_created: AtomicU64,
}

/// The reqwest client seen by `azure_identity`: counts and traces token requests.
#[derive(Debug)]
pub(crate) struct TokenTransport {
    pub http: reqwest::Client,
    pub counters: Arc<Counters>,
}

// `HttpClient` is declared with `#[async_trait]`; this is the signature it expands to.
impl HttpClient for TokenTransport {
    fn execute_request<'life0, 'life1, 'async_trait>(
        &'life0 self,
        request: &'life1 Request,
    ) -> Pin<Box<dyn Future<Output = azure_core::Result<AsyncRawResponse>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.counters.token_requests.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let host = request.url().host_str().unwrap_or("").to_string();
            let answer = match self.http.execute_request(request).await {
                Ok(answer) => answer,
                Err(err) => {
                    crate::metrics::token_request("error");
                    tracing::debug!(
                        host,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "token request failed in transport"
                    );
                    return Err(err);
                }
            };
            let status = answer.status();
            tracing::debug!(
                host,
                status = u16::from(status),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "token request"
            );
            if status.is_success() {
                crate::metrics::token_request("ok");
                return Ok(answer);
            }
            crate::metrics::token_request("error");
            let (status, mut headers, body) = answer.deconstruct();
            let body = body.collect().await?;
            headers.remove(azure_core::http::headers::CONTENT_LENGTH);
            let normalized = normalize_entra_error(u16::from(status), &body);
            Ok(AsyncRawResponse::from_bytes(status, headers, normalized))
        })
    }
}

/// Rewrites a token endpoint error body into a shape `azure_identity` 1.0 can always read.
///
/// `azure_identity` deserializes `error_description` as a borrowed `&str`, so any JSON escape
/// (Entra's descriptions always hold `\r\n`) fails the parse: the HTTP status is lost and the
/// description (with whatever it echoes) lands in a serde error message. Non-JSON bodies (a
/// proxy's HTML page) fail the same way. The rewritten body keeps `error`, `error_codes` and an
/// escape-free `error_description`.
pub(crate) fn normalize_entra_error(status: u16, body: &[u8]) -> Vec<u8> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok().filter(Value::is_object);
    let plain = |text: &str| -> String {
        text.chars()
            .map(|c| match c {
                '"' => '\'',
                '\\' => '/',
                c if c.is_control() => ' ',
                c => c,
            })
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .map(plain)
    };
    let error = field("error").unwrap_or_else(|| format!("http_{status}"));
    let description = field("error_description").unwrap_or_else(|| {
        format!("the token endpoint answered HTTP {status} without an OAuth error body")
    });
    let codes: Vec<i64> = parsed
        .as_ref()
        .and_then(|p| p.get("error_codes"))
        .and_then(Value::as_array)
        .map(|codes| codes.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    serde_json::json!({"error": error, "error_description": description, "error_codes": codes})
        .to_string()
        .into_bytes()
}

type CacheKey = (String, String, u64);

/// Credentials by (tenant, client, secret hash). The hash uses a per-process random key, so it
/// reveals nothing stable about the secret.
pub(crate) struct CredentialCache {
    authority_host: String,
    scope: String,
    transport: Arc<TokenTransport>,
    hasher: RandomState,
    entries: Mutex<HashMap<CacheKey, Arc<ClientSecretCredential>>>,
}

impl CredentialCache {
    pub(crate) fn new(
        authority_host: String,
        scope: String,
        transport: Arc<TokenTransport>,
    ) -> Self {
        Self {
            authority_host,
            scope,
            transport,
            hasher: RandomState::new(),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// A bearer token for `sp` (cached by `azure_identity` until 5 minutes before expiry).
    pub(crate) async fn token(&self, sp: &ServicePrincipal) -> Result<AzureSecret, Error> {
        let credential = self.credential(sp)?;
        match credential.get_token(&[self.scope.as_str()], None).await {
            Ok(token) => Ok(token.token),
            Err(err) => Err(token_error(sp, err)),
        }
    }

    /// Drops the cached credential (and so its token) of `sp`, e.g. after ARM answered 401.
    pub(crate) fn forget(&self, sp: &ServicePrincipal) {
        let key = self.key(sp);
        // See `credential` on poisoning.
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(&key);
    }

    fn key(&self, sp: &ServicePrincipal) -> CacheKey {
        (
            sp.tenant_id.clone(),
            sp.client_id.clone(),
            self.hasher.hash_one(sp.client_secret.expose()),
        )
    }

    fn credential(&self, sp: &ServicePrincipal) -> Result<Arc<ClientSecretCredential>, Error> {
        validate(sp)?;
        let key = self.key(sp);
        // A poisoned lock only means another thread panicked while inserting; the map is still valid.
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = entries.get(&key) {
            return Ok(found.clone());
        }
        let mut custom = CustomConfiguration::default();
        custom.authority_host = self.authority_host.clone();
        let options = ClientSecretCredentialOptions {
            client_options: ClientOptions {
                cloud: Some(Arc::new(CloudConfiguration::Custom(custom))),
                transport: Some(Transport::new(self.transport.clone())),
                // The operator's error policy retries; a hidden retry loop would stall reconciles.
                retry: RetryOptions::none(),
                ..Default::default()
            },
        };
        let credential = ClientSecretCredential::new(
            &sp.tenant_id,
            sp.client_id.clone(),
            AzureSecret::new(sp.client_secret.expose().to_string()),
            Some(options),
        )
        .map_err(|err| Error::Token {
            tenant_id: sp.tenant_id.clone(),
            client_id: sp.client_id.clone(),
            status: None,
            code: None,
            message: "the credential could not be created".to_string(),
            source: Some(Box::new(err)),
        })?;
        if entries.len() >= MAX_CREDENTIALS {
            entries.retain(|(tenant, client, _), _| {
                !(tenant == &sp.tenant_id && client == &sp.client_id)
            });
            if entries.len() >= MAX_CREDENTIALS {
                entries.clear();
            }
        }
        self.transport
            .counters
            .credentials_created
            .fetch_add(1, Ordering::Relaxed);
        entries.insert(key, credential.clone());
        Ok(credential)
    }
}

/// Rejects credentials `azure_identity` would refuse, with messages that name the Secret key.
fn validate(sp: &ServicePrincipal) -> Result<(), Error> {
    let problem = if sp.tenant_id.is_empty()
        || !sp
            .tenant_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        Some("tenantId must be a tenant GUID or domain (letters, digits, '.', '-')")
    } else if sp.client_id.trim().is_empty() {
        Some("clientId is empty in the credentials Secret")
    } else if sp.client_secret.expose().is_empty() {
        Some("clientSecret is empty in the credentials Secret")
    } else {
        None
    };
    match problem {
        Some(message) => Err(Error::Token {
            tenant_id: sp.tenant_id.clone(),
            client_id: sp.client_id.clone(),
            status: None,
            code: None,
            message: message.to_string(),
            source: None,
        }),
        None => Ok(()),
    }
}

/// Maps an `azure_identity` failure. An Entra answer becomes status/code/message (its raw
/// response is dropped); any other failure keeps the azure error as the source.
pub(crate) fn token_error(sp: &ServicePrincipal, err: azure_core::Error) -> Error {
    let http = std::iter::once(&err)
        .chain(err.downcast_ref::<azure_core::Error>())
        .find(|e| matches!(e.kind(), ErrorKind::HttpResponse { .. }));
    let secret = sp.client_secret.expose();
    let scrub = |text: &str| -> String {
        let flat = super::error::excerpt(text.trim(), 600);
        if secret.len() >= 4 {
            flat.replace(secret, "<redacted>")
        } else {
            flat
        }
    };
    if let Some(http) = http
        && let ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } = http.kind()
    {
        let body: Option<Value> = raw_response
            .as_ref()
            .and_then(|r| serde_json::from_slice(r.body().as_ref()).ok());
        let field = |k: &str| body.as_ref().and_then(|b| b.get(k)).and_then(Value::as_str);
        let code = body
            .as_ref()
            .and_then(|b| b.get("error_codes"))
            .and_then(Value::as_array)
            .and_then(|codes| codes.first())
            .and_then(Value::as_i64)
            .map(|n| format!("AADSTS{n}"))
            .or_else(|| {
                error_code
                    .as_deref()
                    .and_then(|c| c.split(',').next())
                    .map(|n| format!("AADSTS{n}"))
            })
            .or_else(|| field("error").map(str::to_string));
        let message = field("error_description")
            .map(scrub)
            .or_else(|| field("error").map(scrub))
            .unwrap_or_else(|| "the token endpoint refused the request".to_string());
        return Error::Token {
            tenant_id: sp.tenant_id.clone(),
            client_id: sp.client_id.clone(),
            status: Some(u16::from(*status)),
            code,
            message,
            source: None,
        };
    }
    let inner_kind = err
        .downcast_ref::<azure_core::Error>()
        .map(|e| e.kind().clone());
    let (message, source) = match inner_kind.as_ref().unwrap_or(err.kind()) {
        ErrorKind::Connection => ("the token endpoint could not be reached", err),
        ErrorKind::Io => (
            "the token request failed in transit (timeout or broken connection)",
            err,
        ),
        // A decode error quotes the response text, which is not ours to repeat: keep only its kind.
        ErrorKind::DataConversion => (
            "the token endpoint answered with something that is not an Entra token response",
            azure_core::Error::with_message(
                ErrorKind::DataConversion,
                "undecodable token response",
            ),
        ),
        _ => ("the token request failed", err),
    };
    Error::Token {
        tenant_id: sp.tenant_id.clone(),
        client_id: sp.client_id.clone(),
        status: None,
        code: None,
        message: message.to_string(),
        source: Some(Box::new(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arm::{ErrorClass, Secret};
    use azure_core::http::{RawResponse, StatusCode, headers::Headers};

    fn sp(secret: &str) -> ServicePrincipal {
        ServicePrincipal {
            tenant_id: "tenant-1".into(),
            client_id: "client-1".into(),
            client_secret: Secret::new(secret.into()),
            subscription_id: None,
        }
    }

    #[test]
    fn entra_answer_maps_to_code_and_scrubbed_message() {
        let body = serde_json::json!({
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided: hunter2-secret.\r\nTrace ID: t",
            "error_codes": [7000215]
        });
        let raw =
            RawResponse::from_bytes(StatusCode::Unauthorized, Headers::new(), body.to_string());
        let inner = azure_core::Error::new(
            ErrorKind::HttpResponse {
                status: StatusCode::Unauthorized,
                error_code: Some("7000215".into()),
                raw_response: Some(Box::new(raw)),
            },
            "AADSTS7000215: Invalid client secret provided: hunter2-secret.",
        );
        let outer = azure_core::Error::with_error(
            ErrorKind::Credential,
            inner,
            "ClientSecretCredential authentication failed.",
        );
        let err = token_error(&sp("hunter2-secret"), outer);
        match &err {
            Error::Token {
                status,
                code,
                message,
                source,
                ..
            } => {
                assert_eq!(*status, Some(401));
                assert_eq!(code.as_deref(), Some("AADSTS7000215"));
                assert!(message.contains("<redacted>"), "{message}");
                assert!(source.is_none());
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(err.class(), ErrorClass::NeedsPerson);
        assert_eq!(err.reason(), "AuthenticationFailed");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(shown.contains("check clientSecret"), "{shown}");
    }

    #[test]
    fn entra_error_bodies_are_normalized_for_azure_identity() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: bad \"x\"\r\nTrace ID: t","error_codes":[7000215],"timestamp":"t"}"#;
        let out: Value = serde_json::from_slice(&normalize_entra_error(401, body)).unwrap();
        assert_eq!(out["error"], "invalid_client");
        assert_eq!(
            out["error_description"],
            "AADSTS7000215: bad 'x' Trace ID: t"
        );
        assert_eq!(out["error_codes"], serde_json::json!([7000215]));
        let html: Value =
            serde_json::from_slice(&normalize_entra_error(502, b"<html>bad gateway</html>"))
                .unwrap();
        assert_eq!(html["error"], "http_502");
        // What azure_identity needs: a string with no escapes to borrow.
        assert!(
            !String::from_utf8(normalize_entra_error(401, body))
                .unwrap()
                .contains('\\')
        );
    }

    #[test]
    fn transport_failure_is_transient() {
        let inner = azure_core::Error::with_message(ErrorKind::Connection, "refused");
        let outer = azure_core::Error::with_error(ErrorKind::Credential, inner, "failed");
        let err = token_error(&sp("s3cr3t-value"), outer);
        assert_eq!(err.class(), ErrorClass::Transient);
        assert_eq!(err.reason(), "TokenEndpointUnavailable");
    }

    #[test]
    fn invalid_inputs_need_a_person() {
        let mut bad = sp("x-secret");
        bad.tenant_id = "not a tenant!".into();
        let err = validate(&bad).unwrap_err();
        assert_eq!(err.class(), ErrorClass::NeedsPerson);
        assert!(
            validate(&sp(""))
                .unwrap_err()
                .to_string()
                .contains("clientSecret is empty")
        );
        assert!(validate(&sp("ok-secret")).is_ok());
    }
}
