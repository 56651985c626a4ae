//! The ARM client: one HTTP request per call, outcomes instead of waiting.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use serde_json::Value;

use super::auth::{Counters, CredentialCache, TokenTransport};
use super::lro::{
    self, operation_from_headers, parse_retry_after, read_async_status, read_location_answer,
};
use super::{
    ArmError, CloudConfig, DEFAULT_RETRY_AFTER, DeleteOutcome, Error, Operation, OperationKind,
    PollOutcome, PostOutcome, ServicePrincipal, WriteOutcome,
};

/// Header carrying a per-request id ARM echoes in its logs.
const CLIENT_REQUEST_ID: &str = "x-ms-client-request-id";

/// Counters of what an [`ArmClient`] sent (for tests and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArmStats {
    /// GETs of resources (not polls).
    pub get: u64,
    /// PUTs.
    pub put: u64,
    /// PATCHes.
    pub patch: u64,
    /// DELETEs.
    pub delete: u64,
    /// POST actions.
    pub post: u64,
    /// GETs of operation URLs.
    pub poll: u64,
    /// HTTP requests sent to the token endpoint (token acquisitions, cache misses only).
    pub token_requests: u64,
    /// Credentials created (one per tenant, client and secret value seen).
    pub credentials_created: u64,
}

impl ArmStats {
    /// All ARM requests (not counting token requests).
    pub fn arm_requests(&self) -> u64 {
        self.get + self.put + self.patch + self.delete + self.post + self.poll
    }
}

/// ARM client; cheap to clone (shared state behind an `Arc`).
#[derive(Clone)]
pub struct ArmClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoint: String,
    endpoint_url: Url,
    credentials: CredentialCache,
    counters: Arc<Counters>,
    request_seq: AtomicU64,
    request_rand: RandomState,
    limiter: super::limit::Limiter,
}

impl std::fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmClient")
            .field("endpoint", &self.inner.endpoint)
            .finish_non_exhaustive()
    }
}

/// What came back from one ARM request.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

enum Counter {
    Get,
    Put,
    Patch,
    Delete,
    Post,
    Poll,
}

impl Counter {
    /// The bounded `op` label of the metrics.
    fn op(&self) -> &'static str {
        match self {
            Counter::Get => "GET",
            Counter::Put => "PUT",
            Counter::Patch => "PATCH",
            Counter::Delete => "DELETE",
            Counter::Post => "POST",
            Counter::Poll => "POLL",
        }
    }
}

impl ArmClient {
    /// Builds the client: one reqwest client (rustls with the ring provider, platform roots plus
    /// `ca_file`) shared by ARM and token requests.
    pub fn new(cloud: &CloudConfig) -> Result<Self, Error> {
        crate::install_crypto_provider();
        let endpoint = cloud.arm_endpoint.trim().trim_end_matches('/').to_string();
        let endpoint_url = Url::parse(&endpoint).map_err(|e| {
            Error::config_with(format!("--arm-endpoint '{endpoint}' is not a URL"), e)
        })?;
        if !matches!(endpoint_url.scheme(), "https" | "http")
            || endpoint_url.host_str().is_none()
            || endpoint_url.query().is_some()
            || !endpoint_url.username().is_empty()
        {
            return Err(Error::config(format!(
                "--arm-endpoint '{endpoint}' must be an http(s) URL without query or user info"
            )));
        }
        let authority_host = cloud.authority_host.trim().to_string();
        match Url::parse(&authority_host) {
            Ok(url) if url.scheme() == "https" && url.host_str().is_some() => {}
            Ok(_) => {
                return Err(Error::config(format!(
                    "--authority-host '{authority_host}' must be an https URL"
                )));
            }
            Err(e) => {
                return Err(Error::config_with(
                    format!("--authority-host '{authority_host}' is not a URL"),
                    e,
                ));
            }
        }

        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("aml-operator/", env!("CARGO_PKG_VERSION")))
            .timeout(cloud.timeout)
            .connect_timeout(cloud.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &cloud.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                Error::config_with(format!("cannot read --ca-file {}", path.display()), e)
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::config_with(
                    format!("--ca-file {} is not a PEM bundle", path.display()),
                    e,
                )
            })?;
            if certs.is_empty() {
                return Err(Error::config(format!(
                    "--ca-file {} holds no certificate",
                    path.display()
                )));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| Error::config_with("cannot build the HTTPS client", e))?;

        let counters = Arc::new(Counters::default());
        let transport = Arc::new(TokenTransport {
            http: http.clone(),
            counters: counters.clone(),
        });
        let scope = format!("{endpoint}/.default");
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                endpoint,
                endpoint_url,
                credentials: CredentialCache::new(authority_host, scope, transport),
                counters,
                request_seq: AtomicU64::new(0),
                request_rand: RandomState::new(),
                limiter: super::limit::Limiter::new(cloud.rate_limits),
            }),
        })
    }

    /// The client-side ARM budget per principal.
    pub fn rate_limits(&self) -> super::limit::RateLimits {
        self.inner.limiter.limits()
    }

    /// The ARM endpoint, without a trailing slash.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// GET a resource; 404 is `Ok(None)`.
    pub async fn get(
        &self,
        sp: &ServicePrincipal,
        path: &str,
        api_version: &str,
    ) -> Result<Option<Value>, Error> {
        self.get_with_query(sp, path, api_version, &[]).await
    }

    /// GET with extra query parameters (a list's `$filter`); 404 is `Ok(None)`.
    pub async fn get_with_query(
        &self,
        sp: &ServicePrincipal,
        path: &str,
        api_version: &str,
        query: &[(&str, &str)],
    ) -> Result<Option<Value>, Error> {
        let url = self.resource_url(path, api_version, query)?;
        let answer = self
            .send(sp, Method::GET, url.clone(), None, Counter::Get)
            .await?;
        match answer.status {
            404 => Ok(None),
            200..=299 => match json_body(&Method::GET, &url, &answer.body)? {
                Some(value) => Ok(Some(value)),
                None => Err(decode(
                    &Method::GET,
                    &url,
                    "ARM answered a GET with an empty body",
                    None,
                )),
            },
            status => Err(api_error(status, &answer)),
        }
    }

    /// Before writing `path`: `None` when the write may go now, or `Some(wait)` when the
    /// principal's write budget earns its token only after `wait`. The token stays reserved for
    /// this resource, so a reconcile can give its worker back and write when it comes back (see
    /// [`super::limit::Limiter::write_permit`]).
    pub fn write_permit(&self, sp: &ServicePrincipal, path: &str, api_version: &str) -> Result<Option<Duration>, Error> {
        let url = self.resource_url(path, api_version, &[])?;
        let subscription = super::limit::subscription_of(url.path());
        Ok(self.inner.limiter.write_permit(subscription, &sp.client_id, url.path()))
    }

    /// After [`ArmClient::write_permit`] for `path`, when nothing was written: the reserved token
    /// goes back to the write budget (see [`super::limit::Limiter::release_permit`]).
    pub fn release_write_permit(&self, sp: &ServicePrincipal, path: &str, api_version: &str) {
        if let Ok(url) = self.resource_url(path, api_version, &[]) {
            let subscription = super::limit::subscription_of(url.path());
            self.inner.limiter.release_permit(subscription, &sp.client_id, url.path());
        }
    }

    /// PUT a resource (create or replace).
    pub async fn put(
        &self,
        sp: &ServicePrincipal,
        path: &str,
        api_version: &str,
        body: &Value,
    ) -> Result<WriteOutcome, Error> {
        self.write(sp, Method::PUT, path, api_version, body, Counter::Put)
            .await
    }

    /// PATCH a resource.
    pub async fn patch(
        &self,
        sp: &ServicePrincipal,
        path: &str,
        api_version: &str,
        body: &Value,
    ) -> Result<WriteOutcome, Error> {
        self.write(sp, Method::PATCH, path, api_version, body, Counter::Patch)
            .await
    }

    /// DELETE a resource with extra query parameters (e.g. `underlyingResourceAction=Delete`).
    /// 200, 204 and 404 all mean gone.
    pub async fn delete(
        &self,
        sp: &ServicePrincipal,
        path: &str,
        api_version: &str,
        query: &[(&str, &str)],
    ) -> Result<DeleteOutcome, Error> {
        let url = self.resource_url(path, api_version, query)?;
        let answer = self
            .send(sp, Method::DELETE, url.clone(), None, Counter::Delete)
            .await?;
        match answer.status {
            200 | 204 | 404 => Ok(DeleteOutcome::Gone),
            201 | 202 => operation_from_headers(&answer.headers, true)
                .map(DeleteOutcome::Accepted)
                .ok_or_else(|| decode(&Method::DELETE, &url, NO_OPERATION, None)),
            status if (200..300).contains(&status) => Ok(DeleteOutcome::Gone),
            status => Err(api_error(status, &answer)),
        }
    }

    /// POST an action (`listKeys` answers 200 with a body; `regenerateKeys` may answer 202).
    pub async fn post(
        &self,
        sp: &ServicePrincipal,
        path: &str,
        api_version: &str,
        body: Option<&Value>,
    ) -> Result<PostOutcome, Error> {
        let url = self.resource_url(path, api_version, &[])?;
        let answer = self
            .send(sp, Method::POST, url.clone(), body, Counter::Post)
            .await?;
        match answer.status {
            202 => operation_from_headers(&answer.headers, true)
                .map(PostOutcome::Accepted)
                .ok_or_else(|| decode(&Method::POST, &url, NO_OPERATION, None)),
            200..=299 => Ok(PostOutcome::Done(json_body(
                &Method::POST,
                &url,
                &answer.body,
            )?)),
            status => Err(api_error(status, &answer)),
        }
    }

    /// Polls an operation once. The URL must be on the ARM endpoint's origin (the token is only
    /// ever sent there). A 4xx/5xx on an `Azure-AsyncOperation` URL is an error reading the status;
    /// on a `Location` URL a 4xx other than 404/408/429 is the operation's failure.
    pub async fn poll(&self, sp: &ServicePrincipal, op: &Operation) -> Result<PollOutcome, Error> {
        let url = self.operation_url(&op.url)?;
        let answer = self
            .send(sp, Method::GET, url.clone(), None, Counter::Poll)
            .await?;
        let retry_after = parse_retry_after(&answer.headers).unwrap_or(DEFAULT_RETRY_AFTER);
        match (op.kind, answer.status) {
            (OperationKind::AsyncOperation, 200..=299) => {
                let body = json_body(&Method::GET, &url, &answer.body)?;
                match body
                    .as_ref()
                    .and_then(|b| read_async_status(answer.status, b, retry_after))
                {
                    Some(outcome) => Ok(outcome),
                    None if answer.status == 202 => Ok(PollOutcome::InProgress { retry_after }),
                    None => Err(decode(
                        &Method::GET,
                        &url,
                        "operation status without a 'status' field",
                        None,
                    )),
                }
            }
            (OperationKind::Location, 200..=299) => {
                let body = json_body(&Method::GET, &url, &answer.body)?;
                Ok(read_location_answer(
                    answer.status,
                    body.as_ref(),
                    retry_after,
                ))
            }
            (OperationKind::Location, status @ 400..=499) if !matches!(status, 404 | 408 | 429) => {
                let mut err = api_error_value(status, &answer);
                err.retry_after = None;
                Ok(PollOutcome::Failed(err))
            }
            (_, status) => Err(api_error(status, &answer)),
        }
    }

    /// Counters of requests sent so far.
    pub fn stats(&self) -> ArmStats {
        let c = &self.inner.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ArmStats {
            get: load(&c.get),
            put: load(&c.put),
            patch: load(&c.patch),
            delete: load(&c.delete),
            post: load(&c.post),
            poll: load(&c.poll),
            token_requests: load(&c.token_requests),
            credentials_created: load(&c.credentials_created),
        }
    }

    async fn write(
        &self,
        sp: &ServicePrincipal,
        method: Method,
        path: &str,
        api_version: &str,
        body: &Value,
        counter: Counter,
    ) -> Result<WriteOutcome, Error> {
        let url = self.resource_url(path, api_version, &[])?;
        let answer = self
            .send(sp, method.clone(), url.clone(), Some(body), counter)
            .await?;
        match answer.status {
            status @ 200..=299 => {
                let body = json_body(&method, &url, &answer.body)?;
                let location_counts = matches!(status, 201 | 202);
                match operation_from_headers(&answer.headers, location_counts) {
                    Some(operation) => Ok(WriteOutcome::Accepted { body, operation }),
                    None if status == 202 => Err(decode(&method, &url, NO_OPERATION, None)),
                    None => Ok(WriteOutcome::Done(body)),
                }
            }
            status => Err(api_error(status, &answer)),
        }
    }

    /// `{endpoint}{path}?api-version=..&query..`; `path` must be an ARM id.
    fn resource_url(
        &self,
        path: &str,
        api_version: &str,
        query: &[(&str, &str)],
    ) -> Result<Url, Error> {
        if !path.starts_with('/') || path.contains(['?', '#']) || path.contains("//") {
            return Err(Error::config(format!(
                "'{path}' is not an ARM resource id (it must start with '/' and hold no query)"
            )));
        }
        let mut url = Url::parse(&format!("{}{}", self.inner.endpoint, path))
            .map_err(|e| Error::config_with(format!("'{path}' does not form a URL"), e))?;
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("api-version", api_version);
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// Checks an operation URL: absolute, same scheme/host/port as the endpoint, no user info.
    fn operation_url(&self, raw: &str) -> Result<Url, Error> {
        let url = Url::parse(raw)
            .map_err(|e| Error::config_with("the stored operation URL is not a URL", e))?;
        let ours = &self.inner.endpoint_url;
        if url.origin() != ours.origin() || !url.username().is_empty() || url.password().is_some() {
            return Err(Error::config(format!(
                "operation URL on {} is not on the ARM endpoint {}; refusing to send a token there",
                url.host_str().unwrap_or("?"),
                self.inner.endpoint
            )));
        }
        Ok(url)
    }

    async fn send(
        &self,
        sp: &ServicePrincipal,
        method: Method,
        url: Url,
        body: Option<&Value>,
        counter: Counter,
    ) -> Result<Answer, Error> {
        let token = self.inner.credentials.token(sp).await?;
        let mut auth =
            HeaderValue::try_from(format!("Bearer {}", token.secret())).map_err(|_| {
                Error::config("the token endpoint issued a token that is not a header value")
            })?;
        auth.set_sensitive(true);
        let request_id = self.new_request_id();
        let mut request = self
            .inner
            .http
            .request(method.clone(), url.clone())
            .header(AUTHORIZATION, auth)
            .header(ACCEPT, "application/json")
            .header(CLIENT_REQUEST_ID, request_id.as_str());
        if let Some(body) = body {
            let bytes = serde_json::to_vec(body)
                .map_err(|e| Error::config_with("the request body cannot be serialized", e))?;
            request = request.header(CONTENT_TYPE, "application/json").body(bytes);
        }
        let op = counter.op();
        self.count(counter);
        let path = url.path().to_string();
        let subscription = super::limit::subscription_of(&path).to_string();
        let class = super::limit::OpClass::of(&method);
        let waited = self.inner.limiter.acquire(&subscription, &sp.client_id, class, &path).await;
        crate::metrics::arm_client_wait(waited);
        let started = Instant::now();
        let outcome = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.bytes().await?.to_vec();
            Ok::<_, reqwest::Error>(Answer {
                status,
                headers,
                body,
            })
        }
        .await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        crate::metrics::arm_request(op, outcome.as_ref().map(|a| a.status).unwrap_or(0), started.elapsed());
        match outcome {
            Ok(answer) => {
                if answer.status == 429 {
                    let pause = parse_retry_after(&answer.headers).unwrap_or(DEFAULT_RETRY_AFTER);
                    self.inner.limiter.pause(&subscription, &sp.client_id, pause);
                }
                if let Some(remaining) = answer
                    .headers
                    .get(class.remaining_header())
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                {
                    self.inner.limiter.observe_remaining(&subscription, &sp.client_id, class, remaining);
                }
                if answer.status == 401 {
                    // ARM refused the token (revoked, wrong audience...): fetch a new one next time.
                    self.inner.credentials.forget(sp);
                }
                tracing::debug!(
                    method = %method,
                    path,
                    status = answer.status,
                    elapsed_ms,
                    request_id,
                    "ARM request"
                );
                Ok(answer)
            }
            Err(source) => {
                tracing::debug!(method = %method, path, elapsed_ms, request_id, "ARM request failed in transport");
                Err(Error::Transport {
                    method: method.to_string(),
                    url: without_query(&url),
                    source: source.without_url(),
                })
            }
        }
    }

    fn count(&self, counter: Counter) {
        let c = &self.inner.counters;
        let slot = match counter {
            Counter::Get => &c.get,
            Counter::Put => &c.put,
            Counter::Patch => &c.patch,
            Counter::Delete => &c.delete,
            Counter::Post => &c.post,
            Counter::Poll => &c.poll,
        };
        slot.fetch_add(1, Ordering::Relaxed);
    }

    /// A version-4-shaped GUID from a per-client random key, a counter and the clock.
    fn new_request_id(&self) -> String {
        let seq = self.inner.request_seq.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let a = self.inner.request_rand.hash_one((seq, nanos, 1u8));
        let b = self.inner.request_rand.hash_one((seq, nanos, 2u8));
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            0x4000 | (a & 0x0fff),
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }
}

const NO_OPERATION: &str = "ARM answered 202 without an Azure-AsyncOperation or Location header";

fn json_body(method: &Method, url: &Url, body: &[u8]) -> Result<Option<Value>, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        decode(
            method,
            url,
            "ARM answered with a body that is not JSON",
            Some(e),
        )
    })
}

fn decode(
    method: &Method,
    url: &Url,
    detail: &'static str,
    source: Option<serde_json::Error>,
) -> Error {
    Error::Decode {
        method: method.to_string(),
        url: without_query(url),
        detail,
        source,
    }
}

fn api_error_value(status: u16, answer: &Answer) -> ArmError {
    ArmError::from_response(
        status,
        &answer.body,
        lro::parse_retry_after(&answer.headers),
    )
}

fn api_error(status: u16, answer: &Answer) -> Error {
    Error::Api(api_error_value(status, answer))
}

/// The URL without query or fragment (operation URLs carry signatures in their query).
fn without_query(url: &Url) -> String {
    let mut clean = url.clone();
    clean.set_query(None);
    clean.set_fragment(None);
    clean.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(endpoint: &str) -> ArmClient {
        ArmClient::new(&CloudConfig {
            arm_endpoint: endpoint.into(),
            ..CloudConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn builds_resource_urls() {
        let c = client("https://management.azure.com/");
        assert_eq!(c.endpoint(), "https://management.azure.com");
        let url = c
            .resource_url(
                "/subscriptions/s/resourceGroups/r",
                "2024-10-01",
                &[("forceToPurge", "false")],
            )
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://management.azure.com/subscriptions/s/resourceGroups/r?api-version=2024-10-01&forceToPurge=false"
        );
        assert!(c.resource_url("subscriptions/s", "v", &[]).is_err());
        assert!(c.resource_url("/subscriptions/s?x=1", "v", &[]).is_err());
    }

    #[test]
    fn operation_urls_must_stay_on_the_endpoint() {
        let c = client("https://management.azure.com");
        assert!(
            c.operation_url("https://management.azure.com/providers/op/1?api-version=x")
                .is_ok()
        );
        let err = c.operation_url("https://evil.example/op").unwrap_err();
        assert_eq!(err.reason(), "InvalidConfiguration");
        assert!(c.operation_url("http://management.azure.com/op").is_err());
        assert!(
            c.operation_url("https://user:pw@management.azure.com/op")
                .is_err()
        );
    }

    #[test]
    fn request_ids_are_unique_guids() {
        let c = client("https://management.azure.com");
        let a = c.new_request_id();
        let b = c.new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn rejects_bad_configuration() {
        let bad = |cloud: CloudConfig| ArmClient::new(&cloud).unwrap_err().reason();
        assert_eq!(
            bad(CloudConfig {
                arm_endpoint: "not a url".into(),
                ..CloudConfig::default()
            }),
            "InvalidConfiguration"
        );
        assert_eq!(
            bad(CloudConfig {
                authority_host: "http://login".into(),
                ..CloudConfig::default()
            }),
            "InvalidConfiguration"
        );
        assert_eq!(
            bad(CloudConfig {
                ca_file: Some("/nonexistent/ca.pem".into()),
                ..CloudConfig::default()
            }),
            "InvalidConfiguration"
        );
    }

    #[test]
    fn removes_query_from_urls() {
        let url = Url::parse("https://h/p?sig=abc#f").unwrap();
        assert_eq!(without_query(&url), "https://h/p");
    }

    #[test]
    fn any_success_body_is_json_or_a_decode_error_naming_the_request() {
        use crate::arm::props::{bodies_around, property};
        use proptest::test_runner::TestCaseError;
        let url = Url::parse("https://management.azure.com/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws1?api-version=2024-10-01")
            .unwrap();
        let template = serde_json::json!({"id": "/subscriptions/s/x", "name": "ws1", "location": "eastus",
            "properties": {"provisioningState": "Succeeded", "workspaceId": "w"}, "tags": {"a": "b"}});
        property("ARM success body decoding", 600, bodies_around(template), |body| {
            match json_body(&Method::GET, &url, &body) {
                Ok(_) => Ok(()),
                Err(err @ Error::Decode { .. }) => {
                    let shown = err.to_string();
                    if shown.contains("workspaces/ws1") && shown.contains("GET") && !shown.contains("api-version") {
                        Ok(())
                    } else {
                        Err(TestCaseError::fail(format!("the error does not name the request: {shown}")))
                    }
                }
                Err(other) => Err(TestCaseError::fail(format!("not a decode error: {other:?}"))),
            }
        });
    }
}
