//! Entra ID tokens through `azure_identity`, sending through the operator's own reqwest client:
//! one cached credential per (tenant, client, credential). A client secret uses
//! `ClientSecretCredential`; a certificate uses `ClientAssertionCredential` with an RS256 assertion
//! signed here (ring; the certificate is read by webpki, rustls' X.509 parser); workload identity
//! uses `ClientAssertionCredential` with the federated token file, re-read at every token request.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret as AzureSecret, TokenCredential};
use azure_core::error::ErrorKind;
use azure_core::http::{
    AsyncRawResponse, ClientMethodOptions, ClientOptions, HttpClient, Request, RetryOptions,
    Transport,
};
use azure_identity::{
    ClientAssertion, ClientAssertionCredential, ClientAssertionCredentialOptions,
    ClientSecretCredential, ClientSecretCredentialOptions,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;

use super::{ClientCredential, Error, ServicePrincipal};

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
    // A field that is blank once plain counts as absent: the rewritten body always says something.
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .map(plain)
            .filter(|text| !text.is_empty())
    };
    let error = field("error").unwrap_or_else(|| format!("http_{status}"));
    let description = field("error_description")
        .map(|d| stable_description(&d))
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| format!("the token endpoint answered HTTP {status} without an OAuth error body"));
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

/// Entra's description without the parts that differ on every attempt: it ends with `Trace ID:`,
/// `Correlation ID:` and `Timestamp:`, which would make every repeat of the same failure a new
/// status, a new watch event and a new Event. Those parts go to the debug log instead.
fn stable_description(description: &str) -> String {
    let cut = ["Trace ID:", "Correlation ID:", "Timestamp:"]
        .iter()
        .filter_map(|marker| description.find(marker))
        .min();
    match cut {
        Some(at) => {
            tracing::debug!(request_ids = %description[at..].trim(), "Entra request ids of a token failure");
            description[..at].trim_end().to_string()
        }
        None => description.to_string(),
    }
}

type CacheKey = (String, String, u64);

/// Credentials by (tenant, client, hash of what identifies the credential: the secret, the PEM or
/// the token file path). The hash uses a per-process random key, so it reveals nothing stable
/// about the secret; a rotated Secret gets a new key and so a new credential.
pub(crate) struct CredentialCache {
    authority_host: String,
    scope: String,
    transport: Arc<TokenTransport>,
    hasher: RandomState,
    entries: Mutex<HashMap<CacheKey, Arc<dyn TokenCredential>>>,
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
        let identity = match &sp.credential {
            ClientCredential::Secret(secret) => self.hasher.hash_one(("secret", secret.expose())),
            ClientCredential::Certificate { pem } => {
                self.hasher.hash_one(("certificate", pem.expose()))
            }
            ClientCredential::WorkloadIdentity { token_file } => {
                self.hasher.hash_one(("workload-identity", token_file))
            }
        };
        (sp.tenant_id.clone(), sp.client_id.clone(), identity)
    }

    fn client_options(&self) -> ClientOptions {
        let mut custom = CustomConfiguration::default();
        custom.authority_host = self.authority_host.clone();
        ClientOptions {
            cloud: Some(Arc::new(CloudConfiguration::Custom(custom))),
            transport: Some(Transport::new(self.transport.clone())),
            // The operator's error policy retries; a hidden retry loop would stall reconciles.
            retry: RetryOptions::none(),
            ..Default::default()
        }
    }

    /// The token endpoint URL, built as `azure_identity` builds it: the audience of certificate
    /// assertions.
    fn token_endpoint(&self, sp: &ServicePrincipal) -> Result<String, Error> {
        reqwest::Url::parse(&self.authority_host)
            .and_then(|host| host.join(&format!("/{}/oauth2/v2.0/token", sp.tenant_id)))
            .map(String::from)
            .map_err(|_| {
                refused(
                    sp,
                    format!(
                        "no token endpoint URL for authority host '{}' and tenantId '{}'",
                        self.authority_host, sp.tenant_id
                    ),
                )
            })
    }

    fn credential(&self, sp: &ServicePrincipal) -> Result<Arc<dyn TokenCredential>, Error> {
        validate(sp)?;
        let key = self.key(sp);
        // A poisoned lock only means another thread panicked while inserting; the map is still valid.
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = entries.get(&key) {
            return Ok(found.clone());
        }
        let client_options = self.client_options();
        let created: azure_core::Result<Arc<dyn TokenCredential>> = match &sp.credential {
            ClientCredential::Secret(secret) => ClientSecretCredential::new(
                &sp.tenant_id,
                sp.client_id.clone(),
                AzureSecret::new(secret.expose().to_string()),
                Some(ClientSecretCredentialOptions { client_options }),
            )
            .map(|c| c as Arc<dyn TokenCredential>),
            ClientCredential::Certificate { pem } => {
                let assertion = CertificateAssertion::from_pem(
                    pem.expose(),
                    sp.client_id.clone(),
                    self.token_endpoint(sp)?,
                )
                .map_err(|message| refused(sp, message))?;
                ClientAssertionCredential::new(
                    sp.tenant_id.clone(),
                    sp.client_id.clone(),
                    assertion,
                    Some(ClientAssertionCredentialOptions { client_options }),
                )
                .map(|c| c as Arc<dyn TokenCredential>)
            }
            ClientCredential::WorkloadIdentity { token_file } => ClientAssertionCredential::new(
                sp.tenant_id.clone(),
                sp.client_id.clone(),
                TokenFileAssertion {
                    path: token_file.clone(),
                },
                Some(ClientAssertionCredentialOptions { client_options }),
            )
            .map(|c| c as Arc<dyn TokenCredential>),
        };
        let credential = created.map_err(|err| Error::Token {
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

/// An input the operator refuses before asking Entra (needs a person; no source).
fn refused(sp: &ServicePrincipal, message: impl Into<String>) -> Error {
    Error::Token {
        tenant_id: sp.tenant_id.clone(),
        client_id: sp.client_id.clone(),
        status: None,
        code: None,
        message: message.into(),
        source: None,
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
    } else {
        match &sp.credential {
            ClientCredential::Secret(secret) if secret.expose().is_empty() => {
                Some("clientSecret is empty in the credentials Secret")
            }
            ClientCredential::Certificate { pem } if pem.expose().trim().is_empty() => {
                Some("clientCertificate is empty in the credentials Secret")
            }
            ClientCredential::WorkloadIdentity { token_file }
                if token_file.as_os_str().is_empty() =>
            {
                Some("AZURE_FEDERATED_TOKEN_FILE is empty")
            }
            _ => None,
        }
    };
    match problem {
        Some(message) => Err(refused(sp, message)),
        None => Ok(()),
    }
}

/// Why a client assertion could not be produced; the message names the Secret key or
/// environment variable and never holds key material or token contents.
#[derive(Debug)]
struct AssertionFailure(String);

impl fmt::Display for AssertionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AssertionFailure {}

impl AssertionFailure {
    fn into_azure(self) -> azure_core::Error {
        azure_core::Error::new(ErrorKind::Credential, self)
    }
}

/// Lifetime of a certificate assertion (Entra asks for a short one).
const ASSERTION_LIFETIME_SECS: u64 = 600;

/// Signs RS256 client assertions with a certificate's private key.
struct CertificateAssertion {
    key: RsaKeyPair,
    /// Base64url SHA-1 thumbprint of the certificate DER (the `x5t` header).
    x5t: String,
    client_id: String,
    audience: String,
    rng: SystemRandom,
}

impl fmt::Debug for CertificateAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAssertion")
            .field("x5t", &self.x5t)
            .field("client_id", &self.client_id)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl CertificateAssertion {
    /// Reads the certificate and its RSA private key from `pem`. The certificate used is the
    /// one whose public key belongs to the private key (a chain may follow it in any order).
    /// Messages name `clientCertificate` and never quote the PEM.
    fn from_pem(pem: &str, client_id: String, audience: String) -> Result<Self, String> {
        let bytes = pem.as_bytes();
        let mut certificates = Vec::new();
        for item in CertificateDer::pem_slice_iter(bytes) {
            match item {
                Ok(der) => certificates.push(der),
                Err(_) => {
                    return Err(
                        "clientCertificate in the credentials Secret is not valid PEM".to_string(),
                    );
                }
            }
        }
        if certificates.is_empty() {
            return Err(
                "clientCertificate in the credentials Secret holds no CERTIFICATE block: \
                 it must hold the certificate and its private key, both in PEM"
                    .to_string(),
            );
        }
        let key = match PrivateKeyDer::from_pem_slice(bytes) {
            Ok(key) => key,
            Err(_) if pem.contains("ENCRYPTED") => {
                return Err(
                    "clientCertificate in the credentials Secret holds an encrypted \
                     private key: store the key unencrypted (clientCertificatePassword is not \
                     supported)"
                        .to_string(),
                );
            }
            Err(_) => {
                return Err(
                    "clientCertificate in the credentials Secret holds no private key: \
                     add its PRIVATE KEY or RSA PRIVATE KEY block"
                        .to_string(),
                );
            }
        };
        let key = match &key {
            PrivateKeyDer::Pkcs8(der) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der()),
            _ => {
                return Err("the private key in clientCertificate is not an RSA key: \
                     only RSA certificates are supported"
                    .to_string());
            }
        }
        .map_err(|rejected| match rejected.to_string().as_str() {
            "WrongAlgorithm" => "the private key in clientCertificate is not an RSA key: \
                 only RSA certificates are supported"
                .to_string(),
            why => format!(
                "the private key in clientCertificate is not a usable RSA key of 2048 bits or \
                 more ({why})"
            ),
        })?;
        let rng = SystemRandom::new();
        let certificate = certificate_of_key(&certificates, &key, &rng)?;
        let thumbprint = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, certificate.as_ref());
        Ok(Self {
            key,
            x5t: URL_SAFE_NO_PAD.encode(thumbprint.as_ref()),
            client_id,
            audience,
            rng,
        })
    }

    /// A fresh signed assertion valid from now for [`ASSERTION_LIFETIME_SECS`].
    fn assertion(&self, now: u64) -> Result<String, AssertionFailure> {
        let failed = || {
            AssertionFailure(
                "the client assertion could not be signed with the clientCertificate key"
                    .to_string(),
            )
        };
        let mut id = [0u8; 16];
        self.rng.fill(&mut id).map_err(|_| failed())?;
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": self.x5t});
        let claims = serde_json::json!({
            "aud": self.audience,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": uuid::Builder::from_random_bytes(id).into_uuid().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let mut jwt = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &self.rng, jwt.as_bytes(), &mut signature)
            .map_err(|_| failed())?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jwt)
    }
}

// `ClientAssertion` is declared with `#[async_trait]`; this is the signature it expands to.
impl ClientAssertion for CertificateAssertion {
    fn secret<'life0, 'life1, 'async_trait>(
        &'life0 self,
        _options: Option<ClientMethodOptions<'life1>>,
    ) -> Pin<Box<dyn Future<Output = azure_core::Result<String>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            self.assertion(now).map_err(AssertionFailure::into_azure)
        })
    }
}

/// Workload identity: the assertion is the projected service-account token, read from the file
/// at every token request (the kubelet rotates it).
#[derive(Debug)]
struct TokenFileAssertion {
    path: PathBuf,
}

impl ClientAssertion for TokenFileAssertion {
    fn secret<'life0, 'life1, 'async_trait>(
        &'life0 self,
        _options: Option<ClientMethodOptions<'life1>>,
    ) -> Pin<Box<dyn Future<Output = azure_core::Result<String>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            read_token_file(&self.path)
                .await
                .map_err(AssertionFailure::into_azure)
        })
    }
}

async fn read_token_file(path: &Path) -> Result<String, AssertionFailure> {
    let text = tokio::fs::read_to_string(path).await.map_err(|err| {
        AssertionFailure(format!(
            "cannot read the federated token file {} named by AZURE_FEDERATED_TOKEN_FILE ({})",
            path.display(),
            err.kind()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(AssertionFailure(format!(
            "the federated token file {} named by AZURE_FEDERATED_TOKEN_FILE is empty",
            path.display()
        )));
    }
    Ok(token.to_string())
}

/// The certificate of `certificates` whose public key belongs to `key`: X.509 is parsed by
/// webpki (rustls' parser, already in the build), and the match is proven rather than compared
/// byte for byte: the certificate's key must verify a signature made with `key`. Errors name
/// `clientCertificate` and, for certificates that are not X.509, which one and what webpki found
/// wrong; they never quote the PEM.
fn certificate_of_key<'a>(
    certificates: &'a [CertificateDer<'a>],
    key: &RsaKeyPair,
    rng: &SystemRandom,
) -> Result<&'a CertificateDer<'a>, String> {
    const PROBE: &[u8] = b"aml-operator: does this certificate belong to the clientCertificate key?";
    let mut signature = vec![0u8; key.public().modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, rng, PROBE, &mut signature)
        .map_err(|_| "the private key in clientCertificate cannot sign".to_string())?;
    // rsaEncryption with NULL parameters (RFC 3279), or without them (some older issuers).
    let algorithms = [
        webpki::ring::RSA_PKCS1_2048_8192_SHA256,
        webpki::ring::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
    ];
    let mut unreadable = Vec::new();
    for (i, der) in certificates.iter().enumerate() {
        match webpki::EndEntityCert::try_from(der) {
            Ok(cert) => {
                if algorithms
                    .iter()
                    .any(|alg| cert.verify_signature(*alg, PROBE, &signature).is_ok())
                {
                    return Ok(der);
                }
            }
            Err(err) => unreadable.push(format!("certificate {} of {}: {err}", i + 1, certificates.len())),
        }
    }
    Err(if unreadable.is_empty() {
        "the private key in clientCertificate does not belong to any of its certificates"
            .to_string()
    } else if unreadable.len() == certificates.len() {
        format!(
            "clientCertificate in the credentials Secret holds no readable X.509 certificate ({})",
            unreadable.join("; ")
        )
    } else {
        format!(
            "the private key in clientCertificate does not belong to any of its certificates \
             (not X.509: {})",
            unreadable.join("; ")
        )
    })
}

/// Maps an `azure_identity` failure. An Entra answer becomes status/code/message (its raw
/// response is dropped); any other failure keeps the azure error as the source.
pub(crate) fn token_error(sp: &ServicePrincipal, err: azure_core::Error) -> Error {
    // No assertion (unreadable token file...): our own message, which names the Secret key or
    // environment variable; nothing was sent.
    let assertion = std::iter::successors(Some(&err as &(dyn std::error::Error + 'static)), |e| {
        e.source()
    })
    .find_map(|e| e.downcast_ref::<AssertionFailure>());
    if let Some(failure) = assertion {
        return refused(sp, failure.0.clone());
    }
    let http = std::iter::once(&err)
        .chain(err.downcast_ref::<azure_core::Error>())
        .find(|e| matches!(e.kind(), ErrorKind::HttpResponse { .. }));
    let secret = match &sp.credential {
        ClientCredential::Secret(secret) => secret.expose(),
        _ => "",
    };
    let scrub = |text: &str| -> String {
        let flat = super::error::excerpt(text.trim(), 600);
        let flat = if secret.len() >= 4 {
            flat.replace(secret, "<redacted>")
        } else {
            flat
        };
        match &sp.credential {
            ClientCredential::Secret(_) => flat,
            other => format!("{flat} (credential: {})", other.origin()),
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
    use crate::arm::props::property;
    use crate::arm::{ErrorClass, Secret};
    use azure_core::http::{RawResponse, StatusCode, headers::Headers};

    fn sp(secret: &str) -> ServicePrincipal {
        ServicePrincipal {
            tenant_id: "tenant-1".into(),
            client_id: "client-1".into(),
            credential: ClientCredential::Secret(Secret::new(secret.into())),
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
            "AADSTS7000215: bad 'x'"
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

    #[test]
    fn an_assertion_failure_is_our_own_message_and_needs_a_person() {
        let failure = AssertionFailure(
            "cannot read the federated token file /t named by \
             AZURE_FEDERATED_TOKEN_FILE (entity not found)"
                .to_string(),
        )
        .into_azure();
        // As azure_identity wraps it.
        let outer = azure_core::Error::with_error(ErrorKind::Credential, failure, "failed");
        let mut wi = sp("unused");
        wi.credential = ClientCredential::WorkloadIdentity {
            token_file: PathBuf::from("/t"),
        };
        let err = token_error(&wi, outer);
        assert_eq!(err.class(), ErrorClass::NeedsPerson);
        assert!(
            err.to_string().contains("AZURE_FEDERATED_TOKEN_FILE"),
            "{err}"
        );
    }

    #[test]
    fn empty_certificate_or_token_path_is_refused() {
        let mut cert = sp("unused");
        cert.credential = ClientCredential::Certificate {
            pem: Secret::new(" \n".into()),
        };
        assert!(
            validate(&cert)
                .unwrap_err()
                .to_string()
                .contains("clientCertificate is empty")
        );
        cert.credential = ClientCredential::WorkloadIdentity {
            token_file: PathBuf::new(),
        };
        assert!(
            validate(&cert)
                .unwrap_err()
                .to_string()
                .contains("AZURE_FEDERATED_TOKEN_FILE")
        );
    }

    /// A throwaway RSA-2048 key and its self-signed certificate (testdata/).
    const FIXTURE: &str = include_str!("testdata/client-certificate.pem");
    const AUDIENCE: &str = "https://login.example/tenant-1/oauth2/v2.0/token";

    fn decode_json(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
    }

    fn fixture_der() -> Vec<u8> {
        CertificateDer::from_pem_slice(FIXTURE.as_bytes()).expect("fixture certificate").to_vec()
    }

    fn fixture_key() -> &'static str {
        &FIXTURE[FIXTURE.find("-----BEGIN PRIVATE KEY-----").expect("fixture key")..]
    }

    fn pem(label: &str, der: &[u8]) -> String {
        use base64::engine::general_purpose::STANDARD;
        let body = STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
    }

    /// Checks `jwt` is an RS256 JWS over the given claims, signed by the fixture's key.
    fn check_assertion(jwt: &str, client_id: &str, audience: &str, now: u64) -> Result<(), String> {
        let parts: Vec<&str> = jwt.split('.').collect();
        let [header, claims, signature] = parts[..] else {
            return Err(format!("{} parts", parts.len()));
        };
        let der = fixture_der();
        let x5t = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &der));
        let header_json = decode_json(header);
        if header_json != serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": x5t}) {
            return Err(format!("header {header_json}"));
        }
        let c = decode_json(claims);
        let jti = c["jti"].as_str().unwrap_or_default();
        let expected = (client_id, client_id, audience, now, now, now + ASSERTION_LIFETIME_SECS);
        let found = (
            c["iss"].as_str().unwrap_or_default(),
            c["sub"].as_str().unwrap_or_default(),
            c["aud"].as_str().unwrap_or_default(),
            c["nbf"].as_u64().unwrap_or_default(),
            c["iat"].as_u64().unwrap_or_default(),
            c["exp"].as_u64().unwrap_or_default(),
        );
        if found != expected {
            return Err(format!("claims {c}"));
        }
        match uuid::Uuid::parse_str(jti) {
            Ok(id) if id.get_version_num() == 4 && jti.len() == 36 => {}
            _ => return Err(format!("jti {jti:?} is not a hyphenated version-4 GUID")),
        }
        let cert = CertificateDer::from(der);
        let cert = webpki::EndEntityCert::try_from(&cert).map_err(|e| e.to_string())?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|e| e.to_string())?;
        cert.verify_signature(
            webpki::ring::RSA_PKCS1_2048_8192_SHA256,
            format!("{header}.{claims}").as_bytes(),
            &signature,
        )
        .map_err(|e| format!("signature: {e}"))
    }

    #[test]
    fn the_assertion_is_an_rs256_jws_that_the_certificate_verifies() {
        let assertion = CertificateAssertion::from_pem(FIXTURE, "client-1".into(), AUDIENCE.into())
            .expect("fixture reads");
        let jwt = assertion.assertion(1_700_000_000).expect("signs");
        check_assertion(&jwt, "client-1", AUDIENCE, 1_700_000_000).unwrap();
        // The key before the certificate, and another certificate first: the matching one is used.
        let other = "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n";
        let reordered = format!("{}{other}{}", fixture_key(), pem("CERTIFICATE", &fixture_der()));
        let assertion = CertificateAssertion::from_pem(&reordered, "c".into(), AUDIENCE.into())
            .expect("the matching certificate is found");
        check_assertion(&assertion.assertion(5).unwrap(), "c", AUDIENCE, 5).unwrap();
    }

    /// How a certificate's DER is broken before it goes back into the PEM with the right key.
    #[derive(Clone, Debug)]
    enum Damage {
        Truncate(usize),
        /// A byte replaced (a wrong tag, where it lands on one).
        Replace(usize, u8),
        /// A long-form length claiming far more than there is (`0x84 ff ff ff ff`, `0x89 ...`).
        Oversize(usize, u8),
        Insert(usize, u8),
        Random(Vec<u8>),
    }

    fn damaged(der: &[u8], damage: &Damage) -> Vec<u8> {
        let mut out = der.to_vec();
        let at = |i: usize| i % (der.len() + 1);
        match damage {
            Damage::Truncate(i) => out.truncate(at(*i)),
            Damage::Replace(i, b) => {
                let i = at(*i).min(der.len() - 1);
                out[i] = *b;
            }
            Damage::Oversize(i, n) => {
                let i = at(*i).min(der.len() - 1);
                let n = 0x80 | (n % 10);
                let header = [n, 0xff, 0xff, 0xff, 0xff];
                out.splice(i..(i + 1).min(out.len()), header);
            }
            Damage::Insert(i, b) => out.insert(at(*i), *b),
            Damage::Random(bytes) => out = bytes.clone(),
        }
        out
    }

    fn damage() -> impl proptest::strategy::Strategy<Value = Damage> {
        use proptest::prelude::*;
        prop_oneof![
            any::<usize>().prop_map(Damage::Truncate),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::Replace(i, b)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, n)| Damage::Oversize(i, n)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::Insert(i, b)),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(Damage::Random),
        ]
    }

    /// Every refusal names `clientCertificate` and quotes no line of the PEM.
    fn refusal_is_clean(pem: &str, outcome: Result<CertificateAssertion, String>) -> Result<(), String> {
        let Err(message) = outcome else { return Ok(()) };
        if !message.contains("clientCertificate") {
            return Err(format!("refusal does not name clientCertificate: {message}"));
        }
        match pem.lines().filter(|l| !l.starts_with("-----") && l.len() > 20).find(|l| message.contains(*l)) {
            Some(line) => Err(format!("refusal quotes the PEM ({line}): {message}")),
            None => Ok(()),
        }
    }

    #[test]
    fn a_certificate_that_is_not_x509_is_named_with_what_webpki_found() {
        let der = fixture_der();
        let cut = format!("{}{}", pem("CERTIFICATE", &der[..der.len() / 2]), fixture_key());
        let err = CertificateAssertion::from_pem(&cut, "c".into(), AUDIENCE.into()).unwrap_err();
        assert_eq!(
            err,
            "clientCertificate in the credentials Secret holds no readable X.509 certificate \
             (certificate 1 of 1: TrailingData(SignedData))"
        );
        // A blank Entra error or description (or one that is only request ids) still says something.
        let out: Value = serde_json::from_slice(&normalize_entra_error(
            400,
            br#"{"error":" ","error_description":"Trace ID: t Correlation ID: c"}"#,
        ))
        .unwrap();
        assert_eq!(out["error"], "http_400");
        assert_eq!(
            out["error_description"],
            "the token endpoint answered HTTP 400 without an OAuth error body"
        );
    }

    #[test]
    fn a_damaged_certificate_is_refused_naming_what_is_wrong_never_a_panic() {
        use proptest::test_runner::TestCaseError;
        let der = fixture_der();
        let key = fixture_key();
        property("client certificate DER damaged", 400, damage(), |d| {
            let broken = damaged(&der, &d);
            let text = format!("{}{key}", pem("CERTIFICATE", &broken));
            let outcome = CertificateAssertion::from_pem(&text, "c".into(), AUDIENCE.into());
            if broken == der {
                return outcome.map(|_| ()).map_err(TestCaseError::fail);
            }
            match &outcome {
                // Only a change webpki cannot see (e.g. inside the issuer's signature) may pass.
                Ok(_) => {}
                Err(m) if m.contains("X.509") || m.contains("does not belong") => {}
                Err(m) => return Err(TestCaseError::fail(format!("unexpected refusal: {m}"))),
            }
            refusal_is_clean(&text, outcome).map_err(TestCaseError::fail)
        });
    }

    #[test]
    fn any_pem_text_is_read_or_refused_naming_client_certificate() {
        use proptest::prelude::*;
        use proptest::test_runner::TestCaseError;
        let text = prop_oneof![
            // The fixture cut anywhere (a Secret pasted in part).
            any::<usize>().prop_map(|i| {
                let cut = FIXTURE.char_indices().map(|(i, _)| i).nth(i % FIXTURE.len()).unwrap_or(0);
                FIXTURE[..cut].to_string()
            }),
            // A line of the fixture dropped or doubled.
            (any::<usize>(), any::<bool>()).prop_map(|(i, double)| {
                let lines: Vec<&str> = FIXTURE.lines().collect();
                let at = i % lines.len();
                let mut out = Vec::new();
                for (n, line) in lines.iter().enumerate() {
                    if n != at || double {
                        out.push(*line);
                    }
                    if n == at && double {
                        out.push(*line);
                    }
                }
                out.join("\n")
            }),
            // Random text, and random bytes as text, between PEM markers or not.
            ".{0,200}",
            proptest::collection::vec(any::<u8>(), 0..300)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| {
                format!("{}{}", pem("CERTIFICATE", &b), pem("PRIVATE KEY", &b))
            }),
            proptest::collection::vec(any::<u8>(), 0..300)
                .prop_map(|b| format!("{}{}", pem("CERTIFICATE", &fixture_der()), pem("RSA PRIVATE KEY", &b))),
        ];
        property("client certificate PEM text", 400, text, |text| {
            let outcome = CertificateAssertion::from_pem(&text, "c".into(), AUDIENCE.into());
            refusal_is_clean(&text, outcome).map_err(TestCaseError::fail)
        });
    }

    #[test]
    fn assertions_for_any_client_and_audience_are_valid_jws() {
        use proptest::prelude::*;
        use proptest::test_runner::TestCaseError;
        let inputs = (any::<String>(), any::<String>(), 0u64..=u64::MAX - ASSERTION_LIFETIME_SECS);
        property("client assertion JWS", 48, inputs, |(client_id, audience, now)| {
            let signer = CertificateAssertion::from_pem(FIXTURE, client_id.clone(), audience.clone())
                .map_err(TestCaseError::fail)?;
            let jwt = signer.assertion(now).map_err(|e| TestCaseError::fail(e.0))?;
            check_assertion(&jwt, &client_id, &audience, now).map_err(TestCaseError::fail)
        });
    }

    #[test]
    fn entra_error_bodies_of_any_shape_normalize_to_plain_oauth_errors() {
        use proptest::prelude::*;
        use proptest::test_runner::TestCaseError;
        let json_ish = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            ".{0,200}".prop_map(String::into_bytes),
            (".{0,40}", ".{0,80}", any::<i64>(), any::<usize>()).prop_map(|(e, d, code, cut)| {
                let body = serde_json::json!({"error": e, "error_description": d, "error_codes": [code]}).to_string();
                body.as_bytes()[..cut % (body.len() + 1)].to_vec()
            }),
            // Wrong types in every field.
            (0usize..3, prop_oneof![Just(serde_json::json!(1)), Just(serde_json::json!([])), Just(serde_json::json!({"a": null})), Just(Value::Null)])
                .prop_map(|(field, v)| {
                    let mut body = serde_json::json!({"error": "e", "error_description": "d", "error_codes": [1]});
                    body[["error", "error_description", "error_codes"][field]] = v;
                    body.to_string().into_bytes()
                }),
        ];
        property("Entra error body normalization", 500, (100u16..600, json_ish), |(status, body)| {
            let out = normalize_entra_error(status, &body);
            let parsed: Value = serde_json::from_slice(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let text = |k: &str| parsed[k].as_str().map(str::to_string);
            match (text("error"), text("error_description"), parsed["error_codes"].is_array()) {
                (Some(e), Some(d), true) if !e.is_empty() && !d.is_empty() && !String::from_utf8_lossy(&out).contains('\\') => Ok(()),
                _ => Err(TestCaseError::fail(format!("not a plain OAuth error: {parsed}"))),
            }
        });
    }
}
