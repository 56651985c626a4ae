//! The ARM client against a small scripted HTTPS fake (ARM + Entra token endpoint in one axum app,
//! with a certificate from a test CA handed to the client through `ca_file`).

use std::collections::{HashMap, VecDeque};
use std::error::Error as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aml_operator::arm::{
    ArmClient, ClientCredential, CloudConfig, DEFAULT_API_VERSION, DEFAULT_RETRY_AFTER, DeleteOutcome, Error,
    ErrorClass, Operation, OperationKind, PollOutcome, PostOutcome, Secret, ServicePrincipal,
    WriteOutcome, ids,
};
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

const SECRET: &str = "sup3r-s3cret-value";
const API: &str = DEFAULT_API_VERSION;

// ---------- the fake ----------

#[derive(Clone, Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }
    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    fn json(mut self, body: Value) -> Self {
        self.body = body.to_string();
        self
    }
    fn text(mut self, body: &str) -> Self {
        self.body = body.to_string();
        self
    }
}

/// One request the fake saw.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: String,
}

#[derive(Default)]
struct State {
    replies: HashMap<(String, String), VecDeque<Reply>>,
    /// None: issue a token. Some: answer the token request with this.
    token_reply: Option<Reply>,
    tokens_issued: usize,
    seen: Vec<Seen>,
}

struct Fake {
    base: String,
    ca_file: PathBuf,
    state: Arc<Mutex<State>>,
}

impl Fake {
    async fn start() -> Self {
        aml_operator::install_crypto_provider();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "arm-unit test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();

        static N: AtomicUsize = AtomicUsize::new(0);
        let ca_file = std::env::temp_dir().join(format!(
            "arm-unit-ca-{}-{}.pem",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();

        let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(server_config));

        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            while let Ok((stream, peer)) = tcp.accept().await {
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });

        let state = Arc::new(Mutex::new(State::default()));
        let app = Router::new().fallback(handle).with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(TlsListener { rx, addr }, app).await;
        });
        Self {
            base: format!("https://{addr}"),
            ca_file,
            state,
        }
    }

    fn cloud(&self) -> CloudConfig {
        CloudConfig {
            arm_endpoint: self.base.clone(),
            authority_host: format!("{}/", self.base),
            ca_file: Some(self.ca_file.clone()),
            timeout: Duration::from_secs(10),
            ..CloudConfig::default()
        }
    }

    fn client(&self) -> ArmClient {
        ArmClient::new(&self.cloud()).unwrap()
    }

    fn script(&self, method: &str, path: &str, reply: Reply) {
        let mut state = self.state.lock().unwrap();
        state
            .replies
            .entry((method.to_string(), path.to_string()))
            .or_default()
            .push_back(reply);
    }

    fn fail_tokens_with(&self, reply: Reply) {
        self.state.lock().unwrap().token_reply = Some(reply);
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    fn arm_seen(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| !s.path.ends_with("/oauth2/v2.0/token"))
            .collect()
    }

    fn op_url(&self, n: u32) -> String {
        format!(
            "{}/subscriptions/sub/providers/Microsoft.MachineLearningServices/locations/westeurope/operations/op{n}?api-version={API}&sig=opaque",
            self.base
        )
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The acceptor task ended: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Arc<Mutex<State>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let mut state = state.lock().unwrap();
    state.seen.push(Seen {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().unwrap_or("").to_string(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let reply = if path.ends_with("/oauth2/v2.0/token") {
        match state.token_reply.clone() {
            Some(reply) => reply,
            None => {
                state.tokens_issued += 1;
                Reply::new(200).json(json!({
                    "token_type": "Bearer",
                    "expires_in": 3599,
                    "access_token": format!("fake-arm-token-{}", state.tokens_issued)
                }))
            }
        }
    } else {
        let queued = state
            .replies
            .get_mut(&(method.to_string(), path.clone()))
            .and_then(VecDeque::pop_front);
        queued.unwrap_or_else(|| {
            Reply::new(404).json(json!({"error": {"code": "ResourceNotFound", "message": format!("no script for {method} {path}")}}))
        })
    };
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    response
}

// ---------- helpers ----------

fn sp() -> ServicePrincipal {
    ServicePrincipal {
        tenant_id: "00000000-0000-0000-0000-00000000000a".into(),
        client_id: "11111111-1111-1111-1111-11111111111b".into(),
        credential: ClientCredential::Secret(Secret::new(SECRET.into())),
        subscription_id: Some("sub".into()),
    }
}

fn ws_id() -> String {
    ids::workspace_id("sub", "rg", "ws1")
}

fn workspace(state: &str) -> Value {
    json!({"id": ws_id(), "name": "ws1", "location": "westeurope", "properties": {"provisioningState": state}})
}

fn error_chain(err: &Error) -> String {
    let mut out = format!("{err}\n{err:?}");
    let mut cause = err.source();
    while let Some(c) = cause {
        out.push_str(&format!("\n{c}\n{c:?}"));
        cause = c.source();
    }
    out
}

// ---------- GET ----------

#[tokio::test]
async fn get_returns_resource_and_none_on_404() {
    let fake = Fake::start().await;
    let client = fake.client();
    fake.script(
        "GET",
        &ws_id(),
        Reply::new(200).json(workspace("Succeeded")),
    );

    let found = client.get(&sp(), &ws_id(), API).await.unwrap();
    assert_eq!(found, Some(workspace("Succeeded")));
    let missing = client
        .get(&sp(), &ids::child_id(&ws_id(), ids::COMPUTES, "nope"), API)
        .await
        .unwrap();
    assert_eq!(missing, None);

    let stats = client.stats();
    assert_eq!((stats.get, stats.put, stats.poll), (2, 0, 0));
}

#[tokio::test]
async fn requests_carry_token_api_version_request_id_and_user_agent() {
    let fake = Fake::start().await;
    let client = fake.client();
    client.get(&sp(), &ws_id(), "2024-10-01").await.unwrap();
    client.get(&sp(), &ws_id(), "2024-10-01").await.unwrap();

    let arm = fake.arm_seen();
    assert_eq!(arm.len(), 2);
    let ids: Vec<&str> = arm
        .iter()
        .map(|s| s.headers["x-ms-client-request-id"].to_str().unwrap())
        .collect();
    assert_ne!(ids[0], ids[1], "request ids are unique");
    for (seen, id) in arm.iter().zip(&ids) {
        assert_eq!(seen.path, ws_id());
        assert_eq!(seen.query, "api-version=2024-10-01");
        assert_eq!(seen.headers["authorization"], "Bearer fake-arm-token-1");
        assert_eq!(id.len(), 36);
        let ua = seen.headers["user-agent"].to_str().unwrap();
        assert!(ua.starts_with("aml-operator/"), "{ua}");
    }
}

// ---------- tokens ----------

#[tokio::test]
async fn token_request_uses_arm_scope_and_is_cached() {
    let fake = Fake::start().await;
    let client = fake.client();
    for _ in 0..3 {
        client.get(&sp(), &ws_id(), API).await.unwrap();
    }
    let stats = client.stats();
    assert_eq!(stats.token_requests, 1, "one token for three requests");
    assert_eq!(stats.credentials_created, 1);

    let token_calls: Vec<Seen> = fake
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/token"))
        .collect();
    assert_eq!(token_calls.len(), 1);
    let call = &token_calls[0];
    assert_eq!(call.method, "POST");
    assert_eq!(call.path, format!("/{}/oauth2/v2.0/token", sp().tenant_id));
    let form: HashMap<String, String> = url_form(&call.body);
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], sp().client_id);
    assert_eq!(form["scope"], format!("{}/.default", fake.base));
}

#[tokio::test]
async fn rotated_secret_gets_a_new_credential() {
    let fake = Fake::start().await;
    let client = fake.client();
    client.get(&sp(), &ws_id(), API).await.unwrap();
    let mut rotated = sp();
    rotated.credential = ClientCredential::Secret(Secret::new("a-brand-new-secret".into()));
    client.get(&rotated, &ws_id(), API).await.unwrap();
    client.get(&rotated, &ws_id(), API).await.unwrap();

    let stats = client.stats();
    assert_eq!(stats.credentials_created, 2);
    assert_eq!(stats.token_requests, 2);
    let last = fake.arm_seen().pop().unwrap();
    assert_eq!(last.headers["authorization"], "Bearer fake-arm-token-2");
}

#[tokio::test]
async fn arm_401_drops_the_cached_token() {
    let fake = Fake::start().await;
    let client = fake.client();
    fake.script(
        "GET",
        &ws_id(),
        Reply::new(401)
            .json(json!({"error": {"code": "ExpiredAuthenticationToken", "message": "expired"}})),
    );
    let err = client.get(&sp(), &ws_id(), API).await.unwrap_err();
    assert_eq!(err.reason(), "AuthenticationFailed");
    client.get(&sp(), &ws_id(), API).await.unwrap();
    assert_eq!(
        client.stats().token_requests,
        2,
        "a fresh token after the 401"
    );
    let last = fake.arm_seen().pop().unwrap();
    assert_eq!(last.headers["authorization"], "Bearer fake-arm-token-2");
}

#[tokio::test]
async fn clones_share_the_token_cache() {
    let fake = Fake::start().await;
    let client = fake.client();
    let other = client.clone();
    client.get(&sp(), &ws_id(), API).await.unwrap();
    other.get(&sp(), &ws_id(), API).await.unwrap();
    assert_eq!(other.stats().token_requests, 1);
    assert_eq!(client.stats().get, 2);
}

#[tokio::test]
async fn refused_secret_maps_to_aadsts_code_without_leaking_it() {
    let fake = Fake::start().await;
    let client = fake.client();
    // A hostile or buggy token endpoint even echoes the secret back.
    fake.fail_tokens_with(Reply::new(401).json(json!({
        "error": "invalid_client",
        "error_description": format!("AADSTS7000215: Invalid client secret provided ({SECRET}). Ensure the secret being sent in the request is the client secret value.\r\nTrace ID: abc\r\nCorrelation ID: def"),
        "error_codes": [7000215],
        "trace_id": "abc",
        "correlation_id": "def"
    })));

    let err = client.get(&sp(), &ws_id(), API).await.unwrap_err();
    match &err {
        Error::Token {
            tenant_id,
            client_id,
            status,
            code,
            message,
            ..
        } => {
            assert_eq!(tenant_id, &sp().tenant_id);
            assert_eq!(client_id, &sp().client_id);
            assert_eq!(*status, Some(401));
            assert_eq!(code.as_deref(), Some("AADSTS7000215"));
            assert!(message.contains("Invalid client secret"), "{message}");
        }
        other => panic!("expected a token error, got {other:?}"),
    }
    assert_eq!(err.class(), ErrorClass::NeedsPerson);
    assert_eq!(err.reason(), "AuthenticationFailed");
    assert!(err.arm().is_none());
    let shown = error_chain(&err);
    assert!(!shown.contains(SECRET), "secret leaked: {shown}");
    assert!(
        err.to_string()
            .contains("check clientSecret in the credentials Secret"),
        "{err}"
    );
    assert!(err.to_string().contains("AADSTS7000215"), "{err}");
    assert!(fake.arm_seen().is_empty(), "no ARM call without a token");
    assert_eq!(client.stats().get, 0);
}

#[tokio::test]
async fn unknown_tenant_points_at_tenant_id() {
    let fake = Fake::start().await;
    let client = fake.client();
    fake.fail_tokens_with(Reply::new(400).json(json!({
        "error": "invalid_request",
        "error_description": "AADSTS90002: Tenant 'x' not found.",
        "error_codes": [90002]
    })));
    let err = client.get(&sp(), &ws_id(), API).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::NeedsPerson);
    assert!(err.to_string().contains("check tenantId"), "{err}");
}

#[tokio::test]
async fn token_endpoint_outage_is_transient() {
    let fake = Fake::start().await;
    let client = fake.client();
    fake.fail_tokens_with(Reply::new(503).json(json!({
        "error": "temporarily_unavailable",
        "error_description": "AADSTS90033: A transient error has occurred.",
        "error_codes": [90033]
    })));
    let err = client.get(&sp(), &ws_id(), API).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(err.reason(), "TokenEndpointUnavailable");

    // A proxy's HTML page instead of an Entra answer: still transient, and no secret anywhere.
    fake.fail_tokens_with(Reply::new(502).text("<html>bad gateway</html>"));
    let err = client.get(&sp(), &ws_id(), API).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Token {
                status: Some(502),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Transient);
    assert!(!error_chain(&err).contains(SECRET));
}

#[tokio::test]
async fn malformed_credentials_need_a_person_before_any_request() {
    let fake = Fake::start().await;
    let client = fake.client();
    let mut bad = sp();
    bad.tenant_id = "not/a tenant".into();
    let err = client.get(&bad, &ws_id(), API).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::NeedsPerson);
    assert!(err.to_string().contains("tenantId"), "{err}");
    let mut empty = sp();
    empty.credential = ClientCredential::Secret(Secret::new(String::new()));
    let err = client.get(&empty, &ws_id(), API).await.unwrap_err();
    assert!(err.to_string().contains("clientSecret is empty"), "{err}");
    assert!(fake.seen().is_empty());
}

#[tokio::test]
async fn untrusted_certificate_fails_without_ca_file() {
    let fake = Fake::start().await;
    let client = ArmClient::new(&CloudConfig {
        ca_file: None,
        ..fake.cloud()
    })
    .unwrap();
    let err = client.get(&sp(), &ws_id(), API).await.unwrap_err();
    // The token request is the first to fail the TLS handshake.
    assert!(matches!(err, Error::Token { status: None, .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Transient);
    assert!(err.to_string().contains("--ca-file"), "{err}");
    assert!(fake.seen().is_empty());
}

// ---------- writes ----------

#[tokio::test]
async fn put_200_without_operation_headers_is_done() {
    let fake = Fake::start().await;
    let client = fake.client();
    fake.script(
        "PUT",
        &ws_id(),
        Reply::new(200).json(workspace("Succeeded")),
    );
    let body = json!({"location": "westeurope"});
    let outcome = client.put(&sp(), &ws_id(), API, &body).await.unwrap();
    assert_eq!(outcome, WriteOutcome::Done(Some(workspace("Succeeded"))));
    let seen = fake.arm_seen().pop().unwrap();
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.headers["content-type"], "application/json");
    assert_eq!(serde_json::from_str::<Value>(&seen.body).unwrap(), body);
}

#[tokio::test]
async fn put_201_prefers_azure_async_operation_over_location() {
    let fake = Fake::start().await;
    let client = fake.client();
    let compute = ids::child_id(&ws_id(), ids::COMPUTES, "cpu");
    fake.script(
        "PUT",
        &compute,
        Reply::new(201)
            .header("Azure-AsyncOperation", &fake.op_url(1))
            .header("Location", &fake.op_url(2))
            .header("Retry-After", "17")
            .json(json!({"properties": {"provisioningState": "Creating"}})),
    );
    match client.put(&sp(), &compute, API, &json!({})).await.unwrap() {
        WriteOutcome::Accepted { body, operation } => {
            assert_eq!(
                body,
                Some(json!({"properties": {"provisioningState": "Creating"}}))
            );
            assert_eq!(
                operation,
                Operation {
                    url: fake.op_url(1),
                    kind: OperationKind::AsyncOperation,
                    retry_after: Duration::from_secs(17)
                }
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn put_202_with_location_defaults_retry_after() {
    let fake = Fake::start().await;
    let client = fake.client();
    fake.script(
        "PUT",
        &ws_id(),
        Reply::new(202).header("Location", &fake.op_url(3)),
    );
    match client.put(&sp(), &ws_id(), API, &json!({})).await.unwrap() {
        WriteOutcome::Accepted { body, operation } => {
            assert_eq!(body, None);
            assert_eq!(operation.kind, OperationKind::Location);
            assert_eq!(operation.url, fake.op_url(3));
            assert_eq!(operation.retry_after, DEFAULT_RETRY_AFTER);
            assert_eq!(DEFAULT_RETRY_AFTER, Duration::from_secs(60));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn patch_with_unreadable_retry_after_uses_default() {
    let fake = Fake::start().await;
    let client = fake.client();
    fake.script(
        "PATCH",
        &ws_id(),
        Reply::new(202)
            .header("Location", &fake.op_url(4))
            .header("Retry-After", "Fri, 31 Dec 1999 23:59:59 GMT"),
    );
    match client
        .patch(&sp(), &ws_id(), API, &json!({"tags": {}}))
        .await
        .unwrap()
    {
        WriteOutcome::Accepted { operation, .. } => {
            assert_eq!(operation.retry_after, DEFAULT_RETRY_AFTER)
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(client.stats().patch, 1);
}

#[tokio::test]
async fn accepted_without_operation_header_is_a_decode_error() {
    let fake = Fake::start().await;
    let client = fake.client();
    fake.script("PUT", &ws_id(), Reply::new(202));
    let err = client
        .put(&sp(), &ws_id(), API, &json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(err.reason(), "ArmBadResponse");
}

#[tokio::test]
async fn non_json_success_body_is_a_decode_error() {
    let fake = Fake::start().await;
    let client = fake.client();
    fake.script("GET", &ws_id(), Reply::new(200).text("<html>portal</html>"));
    let err = client.get(&sp(), &ws_id(), API).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Decode {
                source: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        !err.to_string().contains("api-version"),
        "query not shown: {err}"
    );
}

// ---------- delete and post ----------

#[tokio::test]
async fn delete_outcomes() {
    let fake = Fake::start().await;
    let client = fake.client();
    let compute = ids::child_id(&ws_id(), ids::COMPUTES, "cpu");
    fake.script(
        "DELETE",
        &compute,
        Reply::new(202)
            .header("Azure-AsyncOperation", &fake.op_url(5))
            .header("Location", &fake.op_url(6)),
    );
    fake.script("DELETE", &compute, Reply::new(200));
    fake.script("DELETE", &compute, Reply::new(204));
    let query = [("underlyingResourceAction", "Delete")];

    match client.delete(&sp(), &compute, API, &query).await.unwrap() {
        DeleteOutcome::Accepted(op) => assert_eq!(op.kind, OperationKind::AsyncOperation),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        client.delete(&sp(), &compute, API, &query).await.unwrap(),
        DeleteOutcome::Gone
    );
    assert_eq!(
        client.delete(&sp(), &compute, API, &query).await.unwrap(),
        DeleteOutcome::Gone
    );
    // Nothing scripted any more: the fake answers 404, which also means gone.
    assert_eq!(
        client.delete(&sp(), &compute, API, &query).await.unwrap(),
        DeleteOutcome::Gone
    );

    let seen = fake.arm_seen();
    assert_eq!(seen.len(), 4);
    assert!(
        seen.iter()
            .all(|s| s.query == format!("api-version={API}&underlyingResourceAction=Delete"))
    );
    assert_eq!(client.stats().delete, 4);
}

#[tokio::test]
async fn delete_conflict_is_an_error() {
    let fake = Fake::start().await;
    let client = fake.client();
    fake.script(
        "DELETE",
        &ws_id(),
        Reply::new(409)
            .json(json!({"error": {"code": "AnotherOperationInProgress", "message": "busy"}})),
    );
    let err = client.delete(&sp(), &ws_id(), API, &[]).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Conflict);
    assert_eq!(err.arm().unwrap().code, "AnotherOperationInProgress");
}

#[tokio::test]
async fn post_list_keys_and_regenerate_keys() {
    let fake = Fake::start().await;
    let client = fake.client();
    let endpoint = ids::child_id(&ws_id(), ids::ONLINE_ENDPOINTS, "ep");
    let list = format!("{endpoint}/listKeys");
    let regen = format!("{endpoint}/regenerateKeys");
    fake.script(
        "POST",
        &list,
        Reply::new(200).json(json!({"primaryKey": "k1", "secondaryKey": "k2"})),
    );
    fake.script(
        "POST",
        &regen,
        Reply::new(202)
            .header("Location", &fake.op_url(7))
            .header("Retry-After", "10"),
    );

    let keys = client.post(&sp(), &list, API, None).await.unwrap();
    assert_eq!(
        keys,
        PostOutcome::Done(Some(json!({"primaryKey": "k1", "secondaryKey": "k2"})))
    );
    let body = json!({"keyType": "Primary"});
    match client.post(&sp(), &regen, API, Some(&body)).await.unwrap() {
        PostOutcome::Accepted(op) => {
            assert_eq!(
                (op.kind, op.retry_after),
                (OperationKind::Location, Duration::from_secs(10))
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let seen = fake.arm_seen();
    assert_eq!(seen[0].body, "");
    assert_eq!(serde_json::from_str::<Value>(&seen[1].body).unwrap(), body);
    assert_eq!(client.stats().post, 2);
}

// ---------- polling ----------

fn op_path(fake: &Fake, n: u32) -> String {
    let url = fake.op_url(n);
    let after_host = &url[fake.base.len()..];
    after_host.split('?').next().unwrap().to_string()
}

#[tokio::test]
async fn poll_azure_async_operation_outcomes() {
    let fake = Fake::start().await;
    let client = fake.client();
    let op = Operation {
        url: fake.op_url(8),
        kind: OperationKind::AsyncOperation,
        retry_after: Duration::from_secs(5),
    };
    let path = op_path(&fake, 8);
    fake.script(
        "GET",
        &path,
        Reply::new(200)
            .header("Retry-After", "12")
            .json(json!({"status": "InProgress"})),
    );
    fake.script(
        "GET",
        &path,
        Reply::new(200).json(json!({"status": "Running"})),
    );
    fake.script(
        "GET",
        &path,
        Reply::new(200).json(json!({"status": "Succeeded"})),
    );
    fake.script("GET", &path, Reply::new(200).json(json!({"status": "Failed", "error": {"code": "OutOfQuota", "message": "not enough cores", "target": "vmSize"}})));
    fake.script("GET", &path, Reply::new(200).json(json!({"status": "Canceled", "error": {"code": "OperationCancelled", "message": "stopped"}})));

    assert_eq!(
        client.poll(&sp(), &op).await.unwrap(),
        PollOutcome::InProgress {
            retry_after: Duration::from_secs(12)
        }
    );
    assert_eq!(
        client.poll(&sp(), &op).await.unwrap(),
        PollOutcome::InProgress {
            retry_after: DEFAULT_RETRY_AFTER
        }
    );
    assert_eq!(
        client.poll(&sp(), &op).await.unwrap(),
        PollOutcome::Succeeded
    );
    match client.poll(&sp(), &op).await.unwrap() {
        PollOutcome::Failed(e) => {
            assert_eq!(
                (e.code.as_str(), e.message.as_str(), e.target.as_deref()),
                ("OutOfQuota", "not enough cores", Some("vmSize"))
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    match client.poll(&sp(), &op).await.unwrap() {
        PollOutcome::Failed(e) => assert_eq!(e.code, "OperationCancelled"),
        other => panic!("unexpected {other:?}"),
    }
    let seen = fake.arm_seen();
    assert!(
        seen.iter()
            .all(|s| s.query == format!("api-version={API}&sig=opaque")),
        "operation URL used verbatim"
    );
    let stats = client.stats();
    assert_eq!((stats.poll, stats.get), (5, 0));
}

#[tokio::test]
async fn poll_async_operation_status_read_failure_is_an_error_not_a_failed_operation() {
    let fake = Fake::start().await;
    let client = fake.client();
    let op = Operation {
        url: fake.op_url(9),
        kind: OperationKind::AsyncOperation,
        retry_after: Duration::from_secs(5),
    };
    fake.script(
        "GET",
        &op_path(&fake, 9),
        Reply::new(500).json(json!({"error": {"code": "InternalServerError", "message": "oops"}})),
    );
    let err = client.poll(&sp(), &op).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(err.reason(), "ArmUnavailable");
}

#[tokio::test]
async fn poll_location_outcomes() {
    let fake = Fake::start().await;
    let client = fake.client();
    let op = Operation {
        url: fake.op_url(10),
        kind: OperationKind::Location,
        retry_after: Duration::from_secs(5),
    };
    let path = op_path(&fake, 10);
    fake.script("GET", &path, Reply::new(202).header("Retry-After", "30"));
    fake.script("GET", &path, Reply::new(202));
    fake.script("GET", &path, Reply::new(200).json(workspace("Succeeded")));
    fake.script("GET", &path, Reply::new(204));
    fake.script(
        "GET",
        &path,
        Reply::new(400)
            .json(json!({"error": {"code": "BadArgument", "message": "the image does not exist"}})),
    );

    assert_eq!(
        client.poll(&sp(), &op).await.unwrap(),
        PollOutcome::InProgress {
            retry_after: Duration::from_secs(30)
        }
    );
    assert_eq!(
        client.poll(&sp(), &op).await.unwrap(),
        PollOutcome::InProgress {
            retry_after: DEFAULT_RETRY_AFTER
        }
    );
    assert_eq!(
        client.poll(&sp(), &op).await.unwrap(),
        PollOutcome::Succeeded
    );
    assert_eq!(
        client.poll(&sp(), &op).await.unwrap(),
        PollOutcome::Succeeded
    );
    match client.poll(&sp(), &op).await.unwrap() {
        PollOutcome::Failed(e) => assert_eq!((e.status, e.code.as_str()), (400, "BadArgument")),
        other => panic!("unexpected {other:?}"),
    }
    // Nothing scripted: 404 on the operation URL is an error for the caller (GET the resource).
    assert_eq!(
        client.poll(&sp(), &op).await.unwrap_err().class(),
        ErrorClass::NotFound
    );
}

#[tokio::test]
async fn poll_refuses_operation_urls_off_the_arm_endpoint() {
    let fake = Fake::start().await;
    let client = fake.client();
    let op = Operation {
        url: "https://attacker.example/steal".into(),
        kind: OperationKind::Location,
        retry_after: Duration::from_secs(5),
    };
    let err = client.poll(&sp(), &op).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::NeedsPerson);
    assert!(fake.seen().is_empty(), "no token fetched, nothing sent");
    assert_eq!(client.stats().poll, 0);
}

// ---------- errors ----------

#[tokio::test]
async fn arm_errors_are_parsed_and_classified() {
    let fake = Fake::start().await;
    let cases: Vec<(Reply, &str, ErrorClass, &str)> = vec![
        (
            Reply::new(400)
                .json(json!({"error": {"code": "InvalidRequestContent", "message": "bad body"}})),
            "InvalidRequestContent",
            ErrorClass::NeedsPerson,
            "ArmRejected",
        ),
        (
            Reply::new(401).json(
                json!({"error": {"code": "InvalidAuthenticationToken", "message": "bad token"}}),
            ),
            "InvalidAuthenticationToken",
            ErrorClass::NeedsPerson,
            "AuthenticationFailed",
        ),
        (
            Reply::new(403)
                .json(json!({"error": {"code": "AuthorizationFailed", "message": "no role"}})),
            "AuthorizationFailed",
            ErrorClass::NeedsPerson,
            "AuthorizationFailed",
        ),
        (
            Reply::new(404)
                .json(json!({"error": {"code": "ResourceGroupNotFound", "message": "no rg"}})),
            "ResourceGroupNotFound",
            ErrorClass::NotFound,
            "ArmNotFound",
        ),
        (
            Reply::new(408),
            "RequestTimeout",
            ErrorClass::Transient,
            "ArmUnavailable",
        ),
        (
            Reply::new(409).json(json!({"error": {"code": "Conflict", "message": "busy"}})),
            "Conflict",
            ErrorClass::Conflict,
            "ArmConflict",
        ),
        (
            Reply::new(429)
                .header("Retry-After", "7")
                .json(json!({"error": {"code": "TooManyRequests", "message": "slow down"}})),
            "TooManyRequests",
            ErrorClass::Throttled(Duration::from_secs(7)),
            "ArmThrottled",
        ),
        (
            Reply::new(429),
            "TooManyRequests",
            ErrorClass::Throttled(DEFAULT_RETRY_AFTER),
            "ArmThrottled",
        ),
        (
            Reply::new(500)
                .json(json!({"error": {"code": "InternalServerError", "message": "oops"}})),
            "InternalServerError",
            ErrorClass::Transient,
            "ArmUnavailable",
        ),
        (
            Reply::new(503).text("upstream down"),
            "ServiceUnavailable",
            ErrorClass::Transient,
            "ArmUnavailable",
        ),
    ];
    for (reply, code, class, reason) in cases {
        let status = reply.status;
        fake.script("PUT", &ws_id(), reply);
        // A fresh client per case: a 429 pauses the principal in the client that received it.
        let client = fake.client();
        let err = client
            .put(&sp(), &ws_id(), API, &json!({}))
            .await
            .unwrap_err();
        let arm = err
            .arm()
            .unwrap_or_else(|| panic!("{status}: not an ARM error: {err:?}"));
        assert_eq!(arm.status, status);
        assert_eq!(arm.code, code, "{status}");
        assert_eq!(err.class(), class, "{status}");
        assert_eq!(err.reason(), reason, "{status}");
    }
}

#[tokio::test]
async fn error_messages_are_actionable() {
    let fake = Fake::start().await;
    let client = fake.client();
    fake.script("PUT", &ws_id(), Reply::new(403).json(json!({"error": {"code": "AuthorizationFailed", "message": "The client does not have authorization"}})));
    fake.script("PUT", &ws_id(), Reply::new(409).json(json!({"error": {"code": "MissingSubscriptionRegistration", "message": "not registered"}})));
    let err = client
        .put(&sp(), &ws_id(), API, &json!({}))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("403 AuthorizationFailed: The client does not have authorization"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("grant the service principal a role"),
        "{err}"
    );
    let err = client
        .put(&sp(), &ws_id(), API, &json!({}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("az provider register"), "{err}");
}

#[tokio::test]
async fn unreachable_arm_is_a_transient_transport_error() {
    let fake = Fake::start().await;
    // Tokens from the fake, ARM on a port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let client = ArmClient::new(&CloudConfig {
        arm_endpoint: format!("https://127.0.0.1:{port}"),
        ..fake.cloud()
    })
    .unwrap();
    let err = client.get(&sp(), &ws_id(), API).await.unwrap_err();
    match &err {
        Error::Transport { method, url, .. } => {
            assert_eq!(method, "GET");
            assert_eq!(url, &format!("https://127.0.0.1:{port}{}", ws_id()));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(err.reason(), "ArmUnreachable");
    let chain = error_chain(&err);
    assert!(
        !chain.contains("api-version"),
        "no query in the error chain: {chain}"
    );
    assert!(
        !chain.contains("fake-arm-token"),
        "no token in the error chain: {chain}"
    );
}

#[test]
fn classification_table_for_constructed_errors() {
    let api = |status: u16, retry: Option<u64>| {
        Error::Api(aml_operator::arm::ArmError {
            status,
            code: "X".into(),
            message: "m".into(),
            target: None,
            retry_after: retry.map(Duration::from_secs),
        })
    };
    assert_eq!(api(404, None).class(), ErrorClass::NotFound);
    assert_eq!(
        api(429, Some(3)).class(),
        ErrorClass::Throttled(Duration::from_secs(3))
    );
    assert_eq!(
        api(429, None).class(),
        ErrorClass::Throttled(Duration::from_secs(60))
    );
    assert_eq!(api(502, Some(9)).class(), ErrorClass::Transient);
    assert_eq!(api(504, None).class(), ErrorClass::Transient);
    assert_eq!(api(409, Some(9)).class(), ErrorClass::Conflict);
    assert_eq!(api(400, None).class(), ErrorClass::NeedsPerson);
    assert_eq!(api(412, None).class(), ErrorClass::NeedsPerson);
    let token = |status: Option<u16>| Error::Token {
        tenant_id: "t".into(),
        client_id: "c".into(),
        status,
        code: None,
        message: "m".into(),
        source: None,
    };
    assert_eq!(token(Some(400)).class(), ErrorClass::NeedsPerson);
    assert_eq!(token(Some(401)).class(), ErrorClass::NeedsPerson);
    assert_eq!(token(Some(500)).class(), ErrorClass::Transient);
    assert_eq!(token(Some(429)).class(), ErrorClass::Transient);
    assert_eq!(token(None).class(), ErrorClass::NeedsPerson);
}

// ---------- secrets ----------

#[test]
fn secret_and_principal_debug_are_redacted() {
    let secret = Secret::new(SECRET.into());
    assert_eq!(format!("{secret:?}"), "<redacted>");
    assert_eq!(format!("{secret}"), "<redacted>");
    assert_eq!(secret.expose(), SECRET);
    let shown = format!("{:?} {:#?}", sp(), sp());
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(
        shown.contains("<redacted>") && shown.contains(&sp().client_id),
        "{shown}"
    );
}

#[test]
fn cloud_config_defaults_to_public_cloud() {
    let cloud = CloudConfig::default();
    assert_eq!(cloud.arm_endpoint, "https://management.azure.com");
    assert_eq!(cloud.authority_host, "https://login.microsoftonline.com/");
    assert_eq!(cloud.ca_file, None);
    assert_eq!(cloud.timeout, Duration::from_secs(30));
    assert_eq!(DEFAULT_API_VERSION, "2024-10-01");
}

/// Decodes an `application/x-www-form-urlencoded` body (the token request).
fn url_form(body: &str) -> HashMap<String, String> {
    let url = reqwest::Url::parse(&format!("http://form.invalid/?{body}")).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[tokio::test]
async fn a_429_pauses_every_request_of_the_principal_on_that_subscription() {
    let fake = Fake::start().await;
    let client = fake.client();
    fake.script("PUT", &ws_id(), Reply::new(429).header("Retry-After", "1").json(json!({"error": {"code": "TooManyRequests", "message": "slow down"}})));
    let err = client.put(&sp(), &ws_id(), API, &json!({})).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Throttled(Duration::from_secs(1)));
    let started = std::time::Instant::now();
    // A read of another resource on the same subscription waits out the Retry-After too.
    let _ = client.get(&sp(), &ws_id(), API).await;
    assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
}

#[test]
fn errors_a_person_must_fix_have_distinct_reasons_and_say_what_to_do() {
    use aml_operator::arm::{ArmError, Error};
    let api = |status: u16, code: &str, message: &str| {
        Error::Api(ArmError { status, code: code.into(), message: message.into(), target: None, retry_after: None })
    };
    let cases = [
        (api(409, "MissingSubscriptionRegistration", "The subscription is not registered to use namespace 'Microsoft.MachineLearningServices'."), "SubscriptionNotRegistered", "az provider register --namespace Microsoft.MachineLearningServices"),
        (api(400, "QuotaExceeded", "Operation could not be completed as it results in exceeding approved standardDSv2Family Cores quota."), "QuotaExceeded", "quota increase"),
        (api(400, "InvalidResourceName", "Resource name x is invalid."), "InvalidResourceName", "spec.azureName"),
        (
            api(403, "AuthorizationFailed", "The client 'abc' with object id 'abc' does not have authorization to perform action 'Microsoft.MachineLearningServices/workspaces/computes/write' over scope '/subscriptions/s'."),
            "AuthorizationFailed",
            "Microsoft.MachineLearningServices/workspaces/computes/write: assign it a role that grants it, e.g. AzureML Compute Operator",
        ),
        (
            api(403, "AuthorizationFailed", "does not have authorization to perform action 'Microsoft.MachineLearningServices/workspaces/onlineEndpoints/write' over scope"),
            "AuthorizationFailed",
            "AzureML Data Scientist",
        ),
    ];
    for (err, reason, says) in cases {
        assert_eq!(err.reason(), reason, "{err}");
        assert_eq!(err.class(), ErrorClass::NeedsPerson, "{err}");
        assert!(err.to_string().contains(says), "{reason}: {err}");
    }
}
