//! A local emulator of Azure Resource Manager (for the four Microsoft.MachineLearningServices
//! resource types the operator manages, a workspace's assets — model, environment and code
//! versions and their containers, datastores with write-only secrets — and a workspace's
//! dependencies: storage accounts with
//! `checkNameAvailability`, key vaults with `checkNameAvailability` and soft-delete, Log Analytics
//! workspaces and Application Insights components) and of the Entra ID client-credentials token
//! endpoint.
//!
//! It serves HTTPS with a certificate authority it generates at start, behaves like ARM as
//! `arm-specs/FACTS.md` describes (URLs, long-running operations with `Location` /
//! `Azure-AsyncOperation`, error bodies, rate-limit headers, ML semantics such as endpoint traffic
//! and cascade deletes) and lets tests inject faults, edit resources out of band and fast-forward
//! operations. `aml-operator emulator` runs it for people (see [`run_cli`]).
//!
//! Like Azure, it refuses regions, VM sizes, core quota and tags beyond what its [`Catalog`]
//! offers (see the `catalog` module; a compute with an unknown VM size is accepted, then fails).
//!
//! Differences from Azure worth knowing: every subscription and resource group exists; operations
//! otherwise only fail when a test marks the resource `Failed` (via [`Emulator::update_resource`])
//! while the operation runs or injects a [`FaultKind::OperationEnds`]; rate-limit headers count down but only
//! throttle with [`EmulatorConfig::write_limit`] (or an injected 429 [`Fault`]); GET during a
//! workspace creation shows `Creating` rather than 404. A workspace PUT whose storage account or key
//! vault is missing (or still provisioning) is refused, as ARM does — for ids in resource groups
//! where the emulator holds dependencies; ids elsewhere are taken on trust, so tests may name
//! resources the emulator never saw.

pub mod armspec;
mod assets;
mod authz;
mod call;
pub mod catalog;
mod fault;
mod federation;
mod ml;
mod model;
mod operations;
mod providers;
mod reply;
mod router;
mod state;
mod tls;
mod token;
mod util;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::{ConnectInfo, Request, State as AxumState};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use self::catalog::{Catalog, CoreQuota, VmSize};
pub use self::federation::{AZURE_TOKEN_EXCHANGE_AUDIENCE, FederatedCredential, IssuerKeys, IssuerKeysError, OidcIssuer};
pub use self::fault::{FaultKind, FaultParseError, FaultRule, OperationEnd};

use self::call::{ArmCall, ArmSettings};
use self::fault::Delivery;
use self::model::{RenderCtx, ResId};
use self::router::Route;
use self::reply::Reply;
use self::state::{ActiveFault, RateClass, Resource, State};

/// Tenant id of the default accepted principal.
pub const DEFAULT_TENANT_ID: &str = "00000000-0000-0000-0000-0000000000aa";
/// Client id of the default accepted principal.
pub const DEFAULT_CLIENT_ID: &str = "00000000-0000-0000-0000-0000000000bb";
/// Client secret of the default accepted principal (a well-known test value, not a secret).
pub const DEFAULT_CLIENT_SECRET: &str = "emulator-secret";

/// Largest request body accepted (ARM's response limit is 8 MB; requests are far smaller).
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Checks a PUT body: `(resource type, name, body)`; `Err(message)` makes the emulator answer
/// 400 `InvalidRequestContent` with that message (and the resource id as `error.target`).
pub type BodyValidator = Arc<dyn Fn(&str, &str, &Value) -> Result<(), String> + Send + Sync>;

/// A [`BodyValidator`] that checks PUT bodies against Microsoft's ARM template schemas in
/// `specs_dir` (the layout of `arm-specs`: `arm-template-schemas/schemas/<api-version>/...`), for
/// the ML types and the workspace dependencies.
pub fn schema_validator(specs_dir: &std::path::Path) -> Result<BodyValidator, EmulatorError> {
    let validator = crate::armspec::shared(specs_dir)
        .map_err(|source| EmulatorError::Specs { path: specs_dir.to_path_buf(), source: Box::new(source) })?;
    Ok(Arc::new(move |t: &str, n: &str, b: &Value| validator.validate(t, n, b)))
}

/// A service principal the token endpoint accepts.
#[derive(Clone)]
pub struct Principal {
    /// Directory (tenant) id; the token URL's `{tenant}` must match it (case-insensitive).
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// Client secret (never logged; redacted in `Debug`).
    pub client_secret: String,
    /// PEM certificates registered for the principal: a `client_assertion` JWT (RS256 or PS256)
    /// whose `x5t`/`x5t#S256` names one of them must be signed by its key. Default none.
    pub certificates: Vec<String>,
    /// Federated tokens (workload identity) accepted verbatim as `client_assertion`, a shortcut for
    /// tests of the token file's handling. Default none; redacted in `Debug`.
    pub federated_tokens: Vec<String>,
    /// Federated identity credentials, as Entra's: a `client_assertion` JWT of an issuer in
    /// [`EmulatorConfig::oidc_issuers`] whose issuer, subject and audience match one of them and
    /// whose RS256 signature verifies with the issuer's keys. Default none.
    pub federated_credentials: Vec<FederatedCredential>,
    /// `expires_in` of the tokens issued to this principal; default `None`: 3599 s.
    pub token_lifetime_secs: Option<u64>,
}

impl Default for Principal {
    /// [`DEFAULT_TENANT_ID`], [`DEFAULT_CLIENT_ID`], [`DEFAULT_CLIENT_SECRET`], no certificates,
    /// no federated tokens, the default token lifetime.
    fn default() -> Self {
        Self {
            tenant_id: DEFAULT_TENANT_ID.to_owned(),
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            certificates: Vec::new(),
            federated_tokens: Vec::new(),
            federated_credentials: Vec::new(),
            token_lifetime_secs: None,
        }
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("certificates", &self.certificates.len())
            .field("federated_tokens", &self.federated_tokens.len())
            .field("federated_credentials", &self.federated_credentials)
            .field("token_lifetime_secs", &self.token_lifetime_secs)
            .finish()
    }
}

/// How to run an [`Emulator`].
pub struct EmulatorConfig {
    /// Address to listen on; default `127.0.0.1:0` (a free port).
    pub bind: SocketAddr,
    /// How long a long-running operation stays non-terminal; default 2 s.
    pub operation_duration: Duration,
    /// `Retry-After` seconds sent on 201/202 answers and on polls of running operations; default 10.
    pub retry_after_secs: u64,
    /// Accepted service principals; default one, [`Principal::default`].
    pub principals: Vec<Principal>,
    /// When set, every PUT body is checked by it.
    pub validator: Option<BodyValidator>,
    /// Where to write the PEM of the CA clients must trust.
    pub ca_file: Option<PathBuf>,
    /// When set, writes (PUT, PATCH, POST, DELETE) draw from a per-subscription bucket of `burst`
    /// tokens refilled at `per_second`, and are answered 429 with `Retry-After` when it is empty
    /// (ARM's write bucket is 200 burst, 10 per second). Default: not enforced.
    pub write_limit: Option<(u32 /* burst */, f64 /* per second */)>,
    /// When set, reads (GET) draw from a bucket per principal (the token's client id) of `burst`
    /// tokens refilled at `per_second`, and are answered 429 with `Retry-After` when it is empty
    /// (ARM's read bucket is 250 burst, 25 per second). Default: not enforced.
    pub read_limit: Option<(u32 /* burst */, f64 /* per second */)>,
    /// Regions, VM sizes and core quotas the emulated Azure offers; a request for anything else is
    /// refused as ARM refuses it. Default: [`Catalog::default`].
    pub catalog: Catalog,
    /// OIDC issuers whose tokens federated credentials accept, with their signing keys (read when
    /// the emulator starts). Default none.
    pub oidc_issuers: Vec<OidcIssuer>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            operation_duration: Duration::from_secs(2),
            retry_after_secs: 10,
            principals: vec![Principal::default()],
            validator: None,
            ca_file: None,
            write_limit: None,
            read_limit: None,
            catalog: Catalog::default(),
            oidc_issuers: Vec::new(),
        }
    }
}

impl fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("bind", &self.bind)
            .field("operation_duration", &self.operation_duration)
            .field("retry_after_secs", &self.retry_after_secs)
            .field("principals", &self.principals)
            .field("validator", &self.validator.as_ref().map(|_| "<fn>"))
            .field("ca_file", &self.ca_file)
            .field("write_limit", &self.write_limit)
            .field("read_limit", &self.read_limit)
            .field("catalog", &self.catalog)
            .field("oidc_issuers", &self.oidc_issuers)
            .finish()
    }
}

/// One ARM request as the emulator saw it (token requests are not recorded).
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `PUT`.
    pub method: String,
    /// Path as sent (not lowercased, not decoded).
    pub path: String,
    /// Raw query string without `?` (empty if none).
    pub query: String,
    /// Status code the emulator answered; 0 when an injected fault closed the connection
    /// without an answer.
    pub status: u16,
    /// Whether this request created the resource (a PUT of a resource that did not exist, which
    /// the emulator accepted), whether or not the client saw the answer.
    pub created: bool,
    /// When the emulator answered it.
    pub at: Instant,
}

/// A scripted failure: the next `times` requests matching `method` (any if `None`) and whose path
/// contains `path_contains` (case-insensitive; any if `None`) are answered `status` with an ARM
/// error body carrying `code` (Entra-shaped on the token endpoint), plus `Retry-After` when set.
#[derive(Clone, Debug)]
pub struct Fault {
    /// HTTP method to match (case-insensitive), or any.
    pub method: Option<String>,
    /// Substring of the request path to match (case-insensitive), or any.
    pub path_contains: Option<String>,
    /// Status code to answer.
    pub status: u16,
    /// Error code in the body, e.g. `TooManyRequests`.
    pub code: String,
    /// `Retry-After` seconds to send, if any.
    pub retry_after_secs: Option<u64>,
    /// How many matching requests fail (0 = none).
    pub times: usize,
}

/// Names an injected [`FaultRule`] (from [`Emulator::inject_rule`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FaultId(u64);

/// Why the emulator could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// Generating the certificates failed.
    #[error("could not generate the emulator's certificates")]
    Certificate(#[source] rcgen::Error),
    /// Building the TLS configuration failed.
    #[error("could not build the emulator's TLS configuration")]
    Tls(#[source] rustls::Error),
    /// Binding the listening socket failed.
    #[error("could not listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing the CA file failed.
    #[error("could not write the CA certificate to {path}")]
    WriteCa {
        /// The file asked for.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An OIDC issuer's signing keys could not be read or fetched.
    #[error(transparent)]
    IssuerKeys(#[from] IssuerKeysError),
    /// Microsoft's ARM schemas could not be loaded from the folder given.
    #[error("cannot load Microsoft's ARM schemas from {}", path.display())]
    Specs {
        /// The folder asked for.
        path: PathBuf,
        /// The cause (boxed: it is the largest, and would make every `EmulatorError` as large).
        #[source]
        source: Box<crate::armspec::SpecError>,
    },
    /// Waiting for Ctrl-C failed.
    #[error("could not wait for the shutdown signal")]
    Signal(#[source] std::io::Error),
}

/// What the request handlers share.
struct Shared {
    state: Mutex<State>,
    operation_duration: Duration,
    retry_after_secs: u64,
    principals: Vec<Principal>,
    validator: Option<BodyValidator>,
    arm_endpoint: String,
    write_limit: Option<(u32, f64)>,
    read_limit: Option<(u32, f64)>,
    catalog: Catalog,
    issuer_keys: federation::KeySets,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that matters
        // more than stopping every test; keep serving with whatever is there.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn default_principal(&self) -> (String, String) {
        self.principals
            .first()
            .map(|p| (p.tenant_id.clone(), p.client_id.clone()))
            .unwrap_or_else(|| (DEFAULT_TENANT_ID.to_owned(), DEFAULT_CLIENT_ID.to_owned()))
    }

    /// Answers one request (ARM or token) entirely under the state lock; says how to deliver it.
    fn dispatch(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> (Reply, Delivery) {
        let mut st = self.lock();
        st.advance(Instant::now());
        let route = Route::parse(path);
        let is_token = matches!(route, Route::Token { .. });
        if let Route::Token { tenant } = &route {
            *st.token_requests_by_tenant.entry(tenant.to_ascii_lowercase()).or_default() += 1;
        }

        let mut delivery = Delivery::Now;
        let mut outlast = None;
        match st.take_fault(method, path) {
            None => {}
            Some(FaultKind::Status {
                status,
                code,
                retry_after_secs,
            }) => {
                let mut reply = if is_token {
                    Reply::json(
                        status,
                        serde_json::json!({
                            "error": code,
                            "error_description": format!("{code}: injected fault."),
                            "error_codes": [],
                        }),
                    )
                } else if let (403, Route::RoleAssignments { scope, name }) = (status, &route) {
                    // As ARM words it, so the action the principal lacks can be read from it.
                    let action = match method {
                        "GET" => "read",
                        "DELETE" => "delete",
                        _ => "write",
                    };
                    let client = self.default_principal().1;
                    let target = name.as_deref().map(|n| authz::id(scope, n)).unwrap_or_else(|| scope.clone());
                    Reply::arm_error(
                        status,
                        &code,
                        format!(
                            "The client '{client}' with object id '{client}' does not have authorization or an ABAC condition not fulfilled to perform action 'Microsoft.Authorization/roleAssignments/{action}' over scope '{target}' or the scope is invalid. If access was recently granted, please refresh your credentials. (Injected fault.)"
                        ),
                    )
                } else {
                    Reply::arm_error(status, &code, format!("Injected fault '{code}'."))
                };
                if let Some(secs) = retry_after_secs {
                    reply.push_header("Retry-After", secs.to_string());
                }
                if is_token {
                    st.token_requests += 1;
                } else {
                    finish_arm_reply(&mut reply, headers, None);
                    record(&mut st, method, path, query, reply.status, false);
                }
                return (reply, Delivery::Now);
            }
            Some(FaultKind::Drop {
                after_handling: false,
            }) => {
                if is_token {
                    st.token_requests += 1;
                } else {
                    record(&mut st, method, path, query, 0, false);
                }
                return (Reply::empty(500), Delivery::Drop);
            }
            Some(FaultKind::Drop {
                after_handling: true,
            }) => delivery = Delivery::Drop,
            Some(FaultKind::Delay { ms }) => delivery = Delivery::After(ms),
            Some(kind) => {
                if let FaultKind::OperationOutlasts { timeout_ms } = &kind {
                    outlast = Some(*timeout_ms);
                }
                st.set_override(&kind);
            }
        }

        if let Route::Discovery(document) = &route {
            st.pending_override = None;
            return (token::discovery(&self.arm_endpoint, document, query), delivery);
        }
        if let Route::Token { tenant } = &route {
            st.token_requests += 1;
            st.pending_override = None;
            let reply = token::handle(&mut st, &self.principals, &self.issuer_keys, tenant, method, headers, body);
            return (reply, delivery);
        }

        let sub = path
            .split('/')
            .filter(|s| !s.is_empty())
            .nth(1)
            .filter(|_| path.to_ascii_lowercase().starts_with("/subscriptions/"))
            .map(str::to_owned);
        let class = match method {
            "GET" | "HEAD" => RateClass::Reads,
            "DELETE" => RateClass::Deletes,
            _ => RateClass::Writes,
        };
        // ARM's buckets, where enforced: writes per subscription, reads per principal.
        let enforced = match class {
            RateClass::Reads => self.read_limit.zip(caller_client_id(&st, headers)).map(|(l, who)| (l, who, "principal")),
            _ => self.write_limit.zip(sub.clone()).map(|(l, sub)| (l, sub, "subscription")),
        };
        let mut enforced_remaining = None;
        if let Some(((burst, per_second), key, scope)) = enforced {
            match st.take_enforced(class, &key, burst, per_second) {
                Ok(remaining) => enforced_remaining = Some(remaining),
                Err(wait) => {
                    let what = if matches!(class, RateClass::Reads) {
                        st.throttled_reads += 1;
                        "read"
                    } else {
                        st.throttled += 1;
                        "write"
                    };
                    st.pending_override = None;
                    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                    let mut reply = Reply::arm_error(
                        429,
                        "TooManyRequests",
                        format!(
                            "The {scope} '{key}' exceeded its {what} limit of {burst} requests refilled at {per_second} per second. Retry after {secs} seconds."
                        ),
                    )
                    .header("Retry-After", secs.to_string());
                    finish_arm_reply(&mut reply, headers, Some((class.header(), 0)));
                    record(&mut st, method, path, query, 429, false);
                    return (reply, Delivery::Now);
                }
            }
        }

        let created_key = match (&route, method) {
            (Route::Resource { id, action: None }, "PUT") => Some(id.key()),
            (Route::RoleAssignments { scope, name: Some(name) }, "PUT") => Some(authz::key(scope, name)),
            _ => None,
        }
        .filter(|key| !st.exists(key));
        let mut reply = self.arm(&mut st, route, method, query, headers, body);
        st.pending_override = None;
        let created = reply.status / 100 == 2 && created_key.is_some_and(|key| st.exists(&key));
        if let Some(ms) = outlast
            && reply.status / 100 == 2
        {
            reply
                .headers
                .retain(|(name, _)| !name.eq_ignore_ascii_case("x-ms-async-operation-timeout"));
            reply.push_header("x-ms-async-operation-timeout", fault::iso_duration(ms));
        }
        let rate = (reply.status != 401).then_some(sub).flatten().map(|sub| {
            let remaining = match enforced_remaining {
                Some(r) => r,
                None => st.take_rate(&sub, class),
            };
            (class.header(), remaining)
        });
        finish_arm_reply(&mut reply, headers, rate);
        let recorded = if delivery == Delivery::Drop { 0 } else { reply.status };
        record(&mut st, method, path, query, recorded, created);
        (reply, delivery)
    }

    fn arm(
        &self,
        st: &mut State,
        route: Route,
        method: &str,
        query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Reply {
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
        let (tenant_id, client_id) = match authorization {
            None => {
                return unauthorized(
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing.",
                );
            }
            Some(value) => {
                let token = bearer(value);
                match token.and_then(|t| st.tokens.get(t)) {
                    Some(issued) if issued.expires > Instant::now() => {
                        (issued.tenant_id.clone(), issued.client_id.clone())
                    }
                    Some(_) => {
                        return unauthorized(
                            "ExpiredAuthenticationToken",
                            "The access token expiry UTC time is earlier than current UTC time.",
                        );
                    }
                    None if token.is_none() => {
                        return unauthorized(
                            "AuthenticationFailed",
                            "Authentication failed. The 'Authorization' header is not a Bearer token.",
                        );
                    }
                    None => {
                        return unauthorized(
                            "InvalidAuthenticationToken",
                            "The access token is invalid: it was not issued by this emulator.",
                        );
                    }
                }
            }
        };
        let query: std::collections::HashMap<String, String> = util::parse_form(query)
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let Some(api_version) = query.get("api-version").filter(|v| !v.is_empty()).cloned() else {
            return Reply::arm_error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            );
        };
        let base = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .map(|h| format!("https://{h}"))
            .unwrap_or_else(|| self.arm_endpoint.clone());
        let mut call = ArmCall {
            st,
            settings: ArmSettings {
                operation_duration: self.operation_duration,
                retry_after_secs: self.retry_after_secs,
                validator: self.validator.as_ref(),
                catalog: &self.catalog,
            },
            base,
            api_version,
            query,
            tenant_id,
            client_id,
            now: SystemTime::now(),
        };
        router::handle(&mut call, route, method, body)
    }
}

/// The token of an `Authorization: Bearer …` header value.
fn bearer(value: &str) -> Option<&str> {
    value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).map(str::trim)
}

/// The client id of the valid token a request carries, if any (a request without one is answered
/// 401 and draws from no bucket).
fn caller_client_id(st: &State, headers: &HeaderMap) -> Option<String> {
    let token = bearer(headers.get("authorization")?.to_str().ok()?)?;
    st.tokens.get(token).filter(|t| t.expires > Instant::now()).map(|t| t.client_id.clone())
}

fn unauthorized(code: &str, message: &str) -> Reply {
    Reply::arm_error(401, code, message).header(
        "WWW-Authenticate",
        format!("Bearer authorization_uri=\"https://login.microsoftonline.com/common\", error=\"invalid_token\", error_description=\"{message}\""),
    )
}

/// Adds the headers every ARM response carries.
fn finish_arm_reply(reply: &mut Reply, headers: &HeaderMap, rate: Option<(&'static str, u64)>) {
    let request_id = util::guid();
    let correlation = headers
        .get("x-ms-correlation-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| request_id.clone());
    reply.push_header("x-ms-request-id", request_id);
    reply.push_header("x-ms-correlation-request-id", correlation);
    if let Some(client) = headers
        .get("x-ms-client-request-id")
        .and_then(|v| v.to_str().ok())
    {
        reply.push_header("x-ms-client-request-id", client);
    }
    if let Some((name, remaining)) = rate {
        reply.push_header(name, remaining.to_string());
    }
}

fn record(st: &mut State, method: &str, path: &str, query: &str, status: u16, created: bool) {
    st.requests.push(RecordedRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        status,
        created,
        at: Instant::now(),
    });
}

async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<tls::ConnHandle>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return Reply::arm_error(
                413,
                "RequestEntityTooLarge",
                "The request body is too large or could not be read.",
            )
            .into_response();
        }
    };
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    tracing::debug!(%method, %path, peer = %conn.peer, "emulator request");
    let (reply, delivery) = shared.dispatch(&method, &path, &query, &parts.headers, &bytes);
    match delivery {
        Delivery::Now => {}
        Delivery::After(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Delivery::Drop => {
            tracing::debug!(%method, %path, "emulator: dropping the connection (injected fault)");
            conn.kill();
        }
    }
    reply.into_response()
}

/// A running emulator. Dropping it stops the server; [`Emulator::shutdown`] also waits for it.
pub struct Emulator {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    ca_pem: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Generates certificates, writes the CA file if asked, binds and starts serving.
    pub async fn start(config: EmulatorConfig) -> Result<Emulator, EmulatorError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let issuer_keys = federation::KeySets::load(&config.oidc_issuers).await?;
        let certs = tls::generate()?;
        let server_config = tls::server_config(&certs)?;
        if let Some(path) = &config.ca_file {
            tokio::fs::write(path, certs.ca_pem.as_bytes())
                .await
                .map_err(|source| EmulatorError::WriteCa {
                    path: path.clone(),
                    source,
                })?;
        }
        let tcp = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| EmulatorError::Bind {
                addr: config.bind,
                source,
            })?;
        let listener =
            tls::TlsListener::new(tcp, server_config).map_err(|source| EmulatorError::Bind {
                addr: config.bind,
                source,
            })?;
        let local_addr = axum::serve::Listener::local_addr(&listener)
            .map_err(|source| EmulatorError::Bind {
                addr: config.bind,
                source,
            })?
            .peer;

        let arm_endpoint = format!("https://{local_addr}");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            operation_duration: config.operation_duration,
            retry_after_secs: config.retry_after_secs,
            principals: config.principals,
            validator: config.validator,
            arm_endpoint,
            write_limit: config.write_limit,
            read_limit: config.read_limit,
            catalog: config.catalog,
            issuer_keys,
        });
        let router: Router = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let service = router.into_make_service_with_connect_info::<tls::ConnHandle>();
            let serve = axum::serve(listener, service).with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            });
            if let Err(err) = serve.await {
                tracing::warn!(error = %err, "emulator server stopped with an error");
            }
        });
        tracing::info!(%local_addr, "emulator listening");
        Ok(Emulator {
            shared,
            local_addr,
            ca_pem: certs.ca_pem,
            stop: Some(stop_tx),
            server: Some(server),
        })
    }

    /// The ARM base URL, `https://127.0.0.1:PORT` (no trailing slash).
    pub fn arm_endpoint(&self) -> String {
        self.shared.arm_endpoint.clone()
    }

    /// The authority host, `https://127.0.0.1:PORT/`; tokens come from
    /// `{authority_host}{tenant}/oauth2/v2.0/token`.
    pub fn authority_host(&self) -> String {
        format!("{}/", self.shared.arm_endpoint)
    }

    /// PEM of the CA certificate clients must trust. It signed the server certificate, whose
    /// subject alternative names are `127.0.0.1`, `localhost` and `::1`.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Every ARM request so far, in order (token requests are only counted).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Number of token requests so far (successful or not).
    pub fn token_requests(&self) -> usize {
        self.shared.lock().token_requests
    }


    /// Number of token requests so far for `tenant` (successful or not).
    pub fn token_requests_for(&self, tenant: &str) -> usize {
        self.shared.lock().token_requests_by_tenant.get(&tenant.to_ascii_lowercase()).copied().unwrap_or(0)
    }

    /// Forgets the recorded ARM requests and resets the token request counts.
    pub fn clear_requests(&self) {
        let mut st = self.shared.lock();
        st.requests.clear();
        st.token_requests = 0;
        st.token_requests_by_tenant.clear();
    }

    /// The resource (or role assignment) as GET would show it now (id compared case-insensitively):
    /// a datastore's secrets show only their `secretsType` (see [`Emulator::resource_with_secrets`]).
    pub fn resource(&self, arm_id: &str) -> Option<Value> {
        let mut st = self.shared.lock();
        st.advance(Instant::now());
        let key = arm_id.to_ascii_lowercase();
        st.get(&key).map(|r| r.body.clone()).or_else(|| st.role_assignments.get(&key).cloned())
    }

    /// The resource as stored, with the write-only secrets GET hides (a datastore's
    /// `properties.credentials.secrets` as last written); otherwise as [`Emulator::resource`].
    pub fn resource_with_secrets(&self, arm_id: &str) -> Option<Value> {
        let mut st = self.shared.lock();
        st.advance(Instant::now());
        let key = arm_id.to_ascii_lowercase();
        match st.get(&key) {
            Some(res) => {
                let mut body = res.body.clone();
                if let Some(secrets) = &res.secrets {
                    util::set_path(&mut body, "properties/credentials/secrets", secrets.clone());
                }
                Some(body)
            }
            None => st.role_assignments.get(&key).cloned(),
        }
    }

    /// Canonical ids of every stored resource, sorted case-insensitively, then the ids of every
    /// role assignment.
    pub fn resource_ids(&self) -> Vec<String> {
        let mut st = self.shared.lock();
        st.advance(Instant::now());
        let mut ids: Vec<String> = st.resources.values().map(|r| r.id.canonical()).collect();
        ids.extend(st.role_assignments.values().filter_map(|a| a["id"].as_str().map(str::to_owned)));
        ids
    }

    /// Every role assignment, as GET shows it.
    pub fn role_assignments(&self) -> Vec<Value> {
        self.shared.lock().role_assignments.values().cloned().collect()
    }

    /// Removes a resource or role assignment out of band ("someone deleted it in the portal"), with
    /// the resources and assignments under it, without an operation. Returns whether something was
    /// there.
    pub fn remove_resource(&self, arm_id: &str) -> bool {
        let mut st = self.shared.lock();
        st.advance(Instant::now());
        let key = arm_id.to_ascii_lowercase();
        let under = format!("{key}/");
        let before = st.resources.len() + st.role_assignments.len();
        st.resources.retain(|k, _| *k != key && !k.starts_with(&under));
        st.role_assignments.retain(|k, _| *k != key && !k.starts_with(&under));
        before != st.resources.len() + st.role_assignments.len()
    }

    /// Makes ARM not know the principal `principal_id` (an Entra object id) for its next
    /// `attempts` role-assignment PUTs, which answer 400 `PrincipalNotFound` as while Entra
    /// replicates a principal created moments ago.
    pub fn principal_not_found(&self, principal_id: &str, attempts: usize) {
        self.shared.lock().unknown_principals.insert(principal_id.to_ascii_lowercase(), attempts);
    }

    /// Names (lowercase) of the key vaults deleted so far: soft-deleted, their names reserved.
    pub fn deleted_vaults(&self) -> Vec<String> {
        self.shared.lock().deleted_vaults.keys().cloned().collect()
    }

    /// Changes a stored resource out of band ("someone edited it in the portal"). `f` sees the
    /// body GET shows and is not called when the resource does not exist. Setting
    /// `properties.provisioningState` to `Failed` while an operation runs makes that operation fail.
    pub fn update_resource(&self, arm_id: &str, f: impl FnOnce(&mut Value)) {
        let mut st = self.shared.lock();
        st.advance(Instant::now());
        let key = arm_id.to_ascii_lowercase();
        if let Some(res) = st.resources.get_mut(&key) {
            f(&mut res.body);
        } else if let Some(assignment) = st.role_assignments.get_mut(&key) {
            f(assignment);
        }
    }

    /// Stores a pre-existing resource in state `Succeeded`, with outputs filled as after a PUT.
    /// A role assignment id stores `body` as the assignment (id, name, type and scope filled in).
    /// A datastore's secrets are kept aside as its PUT keeps them; a version brings its container.
    /// Other ids that do not name a type the emulator knows are ignored (with a warning).
    pub fn insert_resource(&self, arm_id: &str, body: Value) {
        if let Route::RoleAssignments { scope, name: Some(name) } = Route::parse(arm_id) {
            // A role assignment made elsewhere (the portal, another tool), stored as ARM shows it.
            let mut assignment = body;
            let scope = scope.trim_end_matches('/').to_owned();
            assignment["id"] = Value::from(authz::id(&scope, &name));
            assignment["name"] = Value::from(name.clone());
            assignment["type"] = Value::from(authz::TYPE);
            assignment["properties"]["scope"] = Value::from(scope.clone());
            self.shared.lock().role_assignments.insert(authz::key(&scope, &name), assignment);
            return;
        }
        let Some(id) = ResId::parse(arm_id) else {
            tracing::warn!(
                arm_id,
                "emulator: insert_resource ignored an id of an unknown type"
            );
            return;
        };
        let (tenant_id, client_id) = self.shared.default_principal();
        let mut st = self.shared.lock();
        let key = id.key();
        let existing = st.get(&key).map(|r| r.body.clone());
        let ctx = RenderCtx {
            tenant_id: &tenant_id,
            client_id: &client_id,
            now: SystemTime::now(),
        };
        let mut body = body;
        let secrets = if id.kind() == model::Kind::Datastore { assets::take_secrets(&mut body) } else { None };
        let rendered = model::render(&id, &body, existing.as_ref(), "Succeeded", &ctx);
        let keys = (id.kind() == model::Kind::OnlineEndpoint)
            .then(|| (util::random_token(32), util::random_token(32)));
        st.resources.insert(
            key,
            Resource {
                id: id.clone(),
                body: rendered,
                op: None,
                keys,
                secrets,
            },
        );
        if id.kind().is_version() {
            // Its container appears with it, as after a PUT.
            assets::refresh_container(&mut st, &id, &ctx);
        }
    }

    /// Adds a fault; faults (and rules) are tried in the order added.
    pub fn inject(&self, fault: Fault) {
        let _ = self.inject_rule(FaultRule::from(fault));
    }

    /// Adds a fault rule; rules (and faults) are tried in the order added. The id tells how often
    /// it fired ([`Emulator::fault_uses`]) and removes it ([`Emulator::remove_fault`]).
    pub fn inject_rule(&self, rule: FaultRule) -> FaultId {
        let mut st = self.shared.lock();
        st.next_fault_id += 1;
        let id = st.next_fault_id;
        st.faults.push(ActiveFault {
            id,
            rule,
            seen: 0,
            used: 0,
        });
        FaultId(id)
    }

    /// How many requests the rule `id` has answered so far.
    pub fn fault_uses(&self, id: FaultId) -> usize {
        self.shared
            .lock()
            .faults
            .iter()
            .find(|f| f.id == id.0)
            .map_or(0, |f| f.used)
    }

    /// Removes the rule `id`, used or not.
    pub fn remove_fault(&self, id: FaultId) {
        self.shared.lock().faults.retain(|f| f.id != id.0);
    }

    /// Removes every injected fault and rule, used or not.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Uses of injected faults and rules not consumed yet (their remaining `times`, summed).
    pub fn pending_faults(&self) -> usize {
        self.shared.lock().faults.iter().map(|f| f.rule.times).sum()
    }

    /// Writes answered 429 because the [`EmulatorConfig::write_limit`] bucket was empty.
    pub fn throttled(&self) -> usize {
        self.shared.lock().throttled
    }

    /// Reads answered 429 because the [`EmulatorConfig::read_limit`] bucket was empty.
    pub fn throttled_reads(&self) -> usize {
        self.shared.lock().throttled_reads
    }

    /// Completes every running operation now.
    pub fn finish_operations(&self) {
        self.shared.lock().finish_all();
    }

    /// Stops serving and waits (at most 5 s) for open connections to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut server)
                .await
                .is_err()
        {
            server.abort();
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Flags of `aml-operator emulator`.
#[derive(clap::Args, Clone)]
pub struct EmulatorArgs {
    /// Port to listen on (127.0.0.1).
    #[arg(long, default_value_t = 8443)]
    pub port: u16,
    /// Where to write the CA certificate the operator must trust (`--ca-file` of `run`).
    #[arg(long, default_value = "./emulator-ca.pem")]
    pub ca_file: PathBuf,
    /// Seconds a long-running operation takes.
    #[arg(long, default_value_t = 2)]
    pub operation_seconds: u64,
    /// Retry-After seconds the emulator asks clients to wait between polls.
    #[arg(long, default_value_t = 1)]
    pub retry_after: u64,
    /// Client id of the accepted service principal.
    #[arg(long, default_value = DEFAULT_CLIENT_ID)]
    pub client_id: String,
    /// Client secret of the accepted service principal.
    #[arg(long, env = "AML_EMULATOR_CLIENT_SECRET", hide_env_values = true, default_value = DEFAULT_CLIENT_SECRET)]
    pub client_secret: String,
    /// Tenant id of the accepted service principal.
    #[arg(long, default_value = DEFAULT_TENANT_ID)]
    pub tenant_id: String,
    /// Inject a fault, `METHOD:PATH_SUBSTRING:KIND:TIMES[:ONE_IN]` (repeatable; `*` or empty
    /// METHOD/PATH match any). KIND: a status `STATUS[=CODE][@RETRY_AFTER]` (`429@5`, `503`,
    /// `400=invalid_client` on `oauth2`), `delay=MS` (answer late), `drop` / `drop-after` (close
    /// the connection without an answer, before / after handling), `failed[=CODE]` /
    /// `canceled[=CODE]` (the operation started ends so), `outlast=MS` (the operation outlasts the
    /// `x-ms-async-operation-timeout` it announces). Example: `--fault PUT:/workspaces/:503:2`.
    #[arg(long = "fault", value_name = "METHOD:PATH:KIND:TIMES")]
    pub faults: Vec<FaultRule>,
    /// Enforce ARM's write bucket, `BURST:PER_SECOND` (ARM: `200:10`): writes beyond it get 429.
    #[arg(long, value_name = "BURST:PER_SECOND", value_parser = parse_limit)]
    pub write_limit: Option<(u32, f64)>,
    /// Enforce ARM's read bucket per principal, `BURST:PER_SECOND` (ARM: `250:25`): reads beyond
    /// it get 429.
    #[arg(long, value_name = "BURST:PER_SECOND", value_parser = parse_limit)]
    pub read_limit: Option<(u32, f64)>,
    /// Folder with Microsoft's ARM specs (the `arm-specs` layout: `arm-template-schemas/schemas/`
    /// with the ML, storage, key vault, Log Analytics and Application Insights schemas): every PUT
    /// body is validated against them and refused (400) when invalid. Without it, bodies are not
    /// validated.
    #[arg(long, env = crate::armspec::SPECS_ENV, value_name = "DIR")]
    pub arm_specs: Option<PathBuf>,
    /// Regions the emulated resource types are available in, `[TYPE=]REGION,...` (repeatable):
    /// without a type it replaces the built-in list of 28 Azure ML regions for every type; with
    /// one (`Microsoft.MachineLearningServices/workspaces=eastus,westeurope`) for that type only.
    /// A resource elsewhere is refused with 400 `LocationNotAvailableForResourceType`.
    #[arg(long, value_name = "[TYPE=]REGION,...", value_parser = catalog::parse_locations)]
    pub locations: Vec<catalog::Locations>,
    /// VM sizes computes and online deployments may use, `NAME:FAMILY:CORES[@REGION+REGION]`,
    /// comma-separated (replaces the built-in list; without `@` a size is offered in every
    /// region). A compute with another size ends `Failed` (`InvalidPropertyValue`), a deployment
    /// with another instance type is refused (400 `BadArgument`).
    #[arg(long, value_name = "NAME:FAMILY:CORES,...", value_parser = catalog::parse_vm_sizes)]
    pub vm_sizes: Option<catalog::VmSizes>,
    /// Dedicated-core quota, `[REGION/][FAMILY=]CORES` (repeatable; later and more specific
    /// entries win; default 1000 per family per region). A compute whose `maxNodeCount` x cores
    /// does not fit is refused with 400 `QuotaExceeded`.
    #[arg(long = "core-quota", value_name = "[REGION/][FAMILY=]CORES", value_parser = catalog::parse_core_quota)]
    pub core_quotas: Vec<CoreQuota>,
    /// A federated identity credential of the principal (workload identity), `ISSUER,SUBJECT,AUDIENCE`
    /// (repeatable), e.g. `https://kubernetes.default.svc.cluster.local,system:serviceaccount:aml-system:aml-operator,api://AzureADTokenExchange`.
    /// The issuer's keys come from `--oidc-jwks-url`.
    #[arg(long = "federated-credential", value_name = "ISSUER,SUBJECT,AUDIENCE", value_parser = parse_federated_credential, requires = "oidc_jwks_url")]
    pub federated_credentials: Vec<FederatedCredential>,
    /// The JWKS URL of the federated credentials' issuer (a kube-apiserver's
    /// `https://HOST:PORT/openid/v1/jwks`), read once at start.
    #[arg(long, value_name = "URL", requires = "oidc_ca_file")]
    pub oidc_jwks_url: Option<String>,
    /// PEM of the CA of the JWKS URL's server (a cluster's `ca.crt`).
    #[arg(long, value_name = "FILE")]
    pub oidc_ca_file: Option<PathBuf>,
    /// A bearer token sent with the JWKS request (a ServiceAccount token: kube-apiservers serve
    /// their keys to ServiceAccounts, not to anonymous callers, by default).
    #[arg(long, value_name = "FILE")]
    pub oidc_token_file: Option<PathBuf>,
}

fn parse_federated_credential(value: &str) -> Result<FederatedCredential, String> {
    match value.split(',').map(str::trim).collect::<Vec<_>>()[..] {
        [issuer, subject, audience] if !issuer.is_empty() && !subject.is_empty() && !audience.is_empty() => {
            Ok(FederatedCredential { issuer: issuer.into(), subject: subject.into(), audience: audience.into() })
        }
        _ => Err(format!("{value:?} is not ISSUER,SUBJECT,AUDIENCE")),
    }
}

impl EmulatorArgs {
    /// The OIDC issuers of `--federated-credential`, their keys at `--oidc-jwks-url`.
    fn oidc_issuers(&self) -> Result<Vec<OidcIssuer>, IssuerKeysError> {
        let Some(url) = &self.oidc_jwks_url else { return Ok(Vec::new()) };
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path).map_err(|e| IssuerKeysError { issuer: url.clone(), why: format!("cannot read {}: {e}", path.display()) })
        };
        let ca_pem = self.oidc_ca_file.as_ref().map(read).transpose()?.unwrap_or_default();
        let bearer_token = self.oidc_token_file.as_ref().map(read).transpose()?.map(|t| t.trim().to_owned());
        let mut issuers: Vec<OidcIssuer> = Vec::new();
        for credential in &self.federated_credentials {
            if !issuers.iter().any(|i| i.issuer == credential.issuer) {
                let keys = IssuerKeys::Fetch { url: url.clone(), ca_pem: ca_pem.clone(), bearer_token: bearer_token.clone() };
                issuers.push(OidcIssuer { issuer: credential.issuer.clone(), keys });
            }
        }
        Ok(issuers)
    }
}

impl EmulatorArgs {
    /// The catalog the flags describe: the built-in one with what `--locations`, `--vm-sizes`
    /// and `--core-quota` replace.
    pub fn catalog(&self) -> Catalog {
        let mut catalog = Catalog::default();
        for entry in &self.locations {
            match &entry.resource_type {
                None => catalog.locations = entry.regions.clone(),
                Some(t) => catalog.type_locations.push((t.clone(), entry.regions.clone())),
            }
        }
        if let Some(sizes) = &self.vm_sizes {
            catalog.vm_sizes = sizes.0.clone();
        }
        catalog.core_quotas = self.core_quotas.clone();
        catalog
    }
}

/// Reads `--write-limit` / `--read-limit BURST:PER_SECOND`.
fn parse_limit(value: &str) -> Result<(u32, f64), String> {
    let (burst, rate) = value
        .split_once(':')
        .ok_or_else(|| format!("{value:?} is not BURST:PER_SECOND, e.g. 200:10"))?;
    let burst = burst
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("burst {burst:?} is not a count"))?;
    let rate = rate
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or_else(|| format!("rate {rate:?} is not a positive number"))?;
    Ok((burst, rate))
}

impl fmt::Debug for EmulatorArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorArgs")
            .field("port", &self.port)
            .field("ca_file", &self.ca_file)
            .field("operation_seconds", &self.operation_seconds)
            .field("retry_after", &self.retry_after)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("tenant_id", &self.tenant_id)
            .field("faults", &self.faults)
            .field("write_limit", &self.write_limit)
            .field("read_limit", &self.read_limit)
            .field("arm_specs", &self.arm_specs)
            .field("locations", &self.locations)
            .field("vm_sizes", &self.vm_sizes)
            .field("core_quotas", &self.core_quotas)
            .finish()
    }
}

/// Runs `aml-operator emulator`: starts the emulator, prints how to point the operator at it and
/// serves until Ctrl-C.
pub async fn run_cli(args: EmulatorArgs) -> Result<(), EmulatorError> {
    let config = EmulatorConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], args.port)),
        operation_duration: Duration::from_secs(args.operation_seconds),
        retry_after_secs: args.retry_after,
        principals: vec![Principal {
            tenant_id: args.tenant_id.clone(),
            client_id: args.client_id.clone(),
            client_secret: args.client_secret.clone(),
            federated_credentials: args.federated_credentials.clone(),
            ..Principal::default()
        }],
        validator: args.arm_specs.as_deref().map(schema_validator).transpose()?,
        ca_file: Some(args.ca_file.clone()),
        write_limit: args.write_limit,
        read_limit: args.read_limit,
        catalog: args.catalog(),
        oidc_issuers: args.oidc_issuers()?,
    };
    let catalog = config.catalog.clone();
    let emulator = Emulator::start(config).await?;
    for rule in &args.faults {
        let _ = emulator.inject_rule(rule.clone());
    }
    let ca_file = std::fs::canonicalize(&args.ca_file).unwrap_or_else(|_| args.ca_file.clone());
    let ca_file = ca_file.display();
    println!("aml-operator emulator (ARM + Entra ID token endpoint) is running.");
    println!("  ARM endpoint:    {}", emulator.arm_endpoint());
    println!("  authority host:  {}", emulator.authority_host());
    println!("  CA file:         {ca_file}");
    println!("  tenant id:       {}", args.tenant_id);
    println!("  client id:       {}", args.client_id);
    println!(
        "  client secret:   the value of --client-secret (see `aml-operator emulator --help` for the default)"
    );
    match &args.arm_specs {
        Some(dir) => println!(
            "  request bodies:  validated against Microsoft's ARM template schemas in {}",
            dir.display()
        ),
        None => println!(
            "  request bodies:  NOT validated (give --arm-specs DIR or {} to validate them against Microsoft's ARM schemas)",
            crate::armspec::SPECS_ENV
        ),
    }
    println!(
        "  Azure offers:    {} regions, {} VM sizes, {} dedicated cores per VM family per region{} (--locations, --vm-sizes, --core-quota)",
        catalog.locations.len(),
        catalog.vm_sizes.len(),
        catalog::DEFAULT_CORE_QUOTA,
        if catalog.core_quotas.is_empty() { "" } else { " unless --core-quota says otherwise" }
    );
    println!();
    println!("Run the operator against it with:");
    println!(
        "  aml-operator run --arm-endpoint {} --authority-host {} --ca-file {ca_file}",
        emulator.arm_endpoint(),
        emulator.authority_host()
    );
    println!();
    println!("and a credentials Secret such as:");
    println!(
        "  kubectl create secret generic aml-credentials --from-literal=tenantId={} --from-literal=clientId={} \\\n    --from-literal=subscriptionId=00000000-0000-0000-0000-000000000001 --from-literal=clientSecret=<client secret>",
        args.tenant_id, args.client_id
    );
    println!("Press Ctrl-C to stop.");
    let signal = tokio::signal::ctrl_c().await;
    emulator.shutdown().await;
    signal.map_err(EmulatorError::Signal)
}
