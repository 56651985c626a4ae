//! An in-memory Kubernetes API server, plugged in at the transport (a tower service under
//! `kube::Client`). It stores objects as JSON, applies JSON patches (finalizers), merge patches and
//! server-side applies, accepts events, and records every request. The tests use it as the fake API
//! server (asserting on the exact calls made, and on the ones not made); `plan` and `apply` use it to
//! run the same pipeline without a cluster.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::client::Body;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The body of every answer: a whole JSON document, or a watch stream.
pub type ResponseBody = UnsyncBoxBody<Bytes, Infallible>;

/// Watch events kept for watchers that resume from a resourceVersion.
const EVENT_LOG: usize = 20_000;

/// One request the fake served.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub body: Value,
}

struct Watcher {
    collection: String,
    tx: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    calls: Vec<Call>,
    /// When false, requests are not recorded (a benchmark with thousands of objects).
    quiet: bool,
    resource_version: u64,
    /// (resourceVersion, path, watch event line) of recent changes.
    log: VecDeque<(u64, String, Bytes)>,
    watchers: Vec<Watcher>,
    faults: Vec<KubeFault>,
}

impl State {
    /// Tells watchers (and the replay log) that the object at `path` changed.
    fn emit(&mut self, type_: &str, path: &str, object: &Value) {
        let rv = self.resource_version;
        let mut line = serde_json::to_vec(&json!({"type": type_, "object": object})).unwrap_or_default();
        line.push(b'\n');
        let line = Bytes::from(line);
        self.watchers.retain(|w| !in_collection(&w.collection, path) || w.tx.send(line.clone()).is_ok());
        self.log.push_back((rv, path.to_string(), line));
        if self.log.len() > EVENT_LOG {
            self.log.pop_front();
        }
    }
}

/// Whether the object at `path` belongs to the collection `collection` (namespaced, or all
/// namespaces when the collection path has no namespace).
fn in_collection(collection: &str, path: &str) -> bool {
    if let Some(rest) = path.strip_prefix(collection).and_then(|r| r.strip_prefix('/')) {
        return !rest.is_empty() && !rest.contains('/');
    }
    let Some((prefix, plural)) = collection.rsplit_once('/') else { return false };
    path.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix("/namespaces/"))
        .map(|r| {
            let parts: Vec<&str> = r.split('/').collect();
            parts.len() == 3 && parts[1] == plural
        })
        .unwrap_or(false)
}

/// An object path is `.../namespaces/{ns}/{plural}/{name}`; anything else is a collection.
fn is_object_path(path: &str) -> bool {
    let segs: Vec<&str> = path.split('/').collect();
    segs.len() >= 4 && segs[segs.len() - 4] == "namespaces"
}

/// A scripted failure of the fake API server (see [`LocalKube::fail_next`]).
#[derive(Clone, Debug)]
struct KubeFault {
    method: String,
    path: String,
    anchored: bool,
    status: u16,
    times: usize,
}

impl KubeFault {
    fn matches(&self, method: &str, path: &str) -> bool {
        self.times > 0
            && (self.method.is_empty() || self.method.eq_ignore_ascii_case(method))
            && if self.anchored { path.ends_with(&self.path) } else { path.contains(&self.path) }
    }
}

/// The in-memory API server; clones share the same state.
#[derive(Clone, Default)]
pub struct LocalKube {
    state: Arc<Mutex<State>>,
}

/// The REST path of an object, from its apiVersion, kind, namespace and name.
pub fn path_of(obj: &Value) -> String {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let plural = format!("{}s", kind.to_lowercase());
    let prefix = if api_version.contains('/') { format!("/apis/{api_version}") } else { format!("/api/{api_version}") };
    format!("{prefix}/namespaces/{ns}/{plural}/{name}")
}

impl LocalKube {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty API server and a client talking to it.
    pub fn new() -> (LocalKube, kube::Client) {
        let fake = LocalKube::default();
        let f = fake.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let f = f.clone();
            async move { Ok::<_, Infallible>(f.handle(req).await) }
        });
        (fake, kube::Client::new(service, "default"))
    }

    /// Stops recording requests (for benchmarks with thousands of objects).
    pub fn set_quiet(&self, quiet: bool) {
        self.lock().quiet = quiet;
    }

    /// Stores (creates or replaces) an object; sets uid, generation and resourceVersion like the API server.
    pub fn put(&self, obj: impl Serialize) {
        let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
        let path = path_of(&v);
        let mut st = self.lock();
        st.resource_version += 1;
        let rv = st.resource_version;
        let previous = st.objects.get(&path).cloned();
        if !v["metadata"].is_object() {
            v["metadata"] = json!({});
        }
        let Some(meta) = v["metadata"].as_object_mut() else { return };
        meta.entry("namespace").or_insert(json!("default"));
        meta.entry("uid").or_insert(json!(format!("uid-{}", path.replace('/', "-"))));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.entry("creationTimestamp").or_insert(json!("2026-01-01T00:00:00Z"));
        let generation = match &previous {
            Some(p) if p.get("spec") != v.get("spec") => p["metadata"]["generation"].as_i64().unwrap_or(1) + 1,
            Some(p) => p["metadata"]["generation"].as_i64().unwrap_or(1),
            None => 1,
        };
        if v.get("spec").is_some() {
            v["metadata"]["generation"] = json!(generation);
        }
        st.emit(if previous.is_some() { "MODIFIED" } else { "ADDED" }, &path, &v);
        st.objects.insert(path, v);
    }

    /// Changes a stored object in place, as `kubectl edit` would (a spec change bumps the generation).
    pub fn edit(&self, path: &str, f: impl FnOnce(&mut Value)) {
        let mut st = self.lock();
        st.resource_version += 1;
        let rv = st.resource_version;
        let Some(obj) = st.objects.get_mut(path) else { return };
        let before = obj["spec"].clone();
        f(obj);
        if obj["spec"] != before {
            let generation = obj["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            obj["metadata"]["generation"] = json!(generation);
        }
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let obj = obj.clone();
        st.emit("MODIFIED", path, &obj);
    }

    /// The stored object at `path`, typed.
    pub fn get<K: DeserializeOwned>(&self, path: &str) -> Option<K> {
        let st = self.lock();
        st.objects.get(path).and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// The stored object at `path` as JSON.
    pub fn raw(&self, path: &str) -> Option<Value> {
        self.lock().objects.get(path).cloned()
    }

    /// Marks an object deleted, as `kubectl delete` does for an object with finalizers.
    pub fn delete(&self, path: &str) {
        let mut st = self.lock();
        st.resource_version += 1;
        let rv = st.resource_version;
        let Some(obj) = st.objects.get_mut(path) else { return };
        obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let gone = obj["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
        let obj = obj.clone();
        if gone {
            st.objects.remove(path);
            st.emit("DELETED", path, &obj);
        } else {
            st.emit("MODIFIED", path, &obj);
        }
    }

    /// Every request served so far.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Makes the next `times` requests with `method` (any if empty) whose path contains
    /// `path_contains` fail with `status` and a Kubernetes `Status` body, without effect. A
    /// `path_contains` ending in `$` must end the path: `"amlworkspaces/ws1$"` matches the finalizer
    /// patch of ws1 but not its `/status` writes. Failed requests are still recorded in [`calls`].
    ///
    /// [`calls`]: LocalKube::calls
    pub fn fail_next(&self, method: &str, path_contains: &str, status: u16, times: usize) {
        let (path, anchored) = match path_contains.strip_suffix('$') {
            Some(p) => (p.to_string(), true),
            None => (path_contains.to_string(), false),
        };
        self.lock().faults.push(KubeFault { method: method.to_string(), path, anchored, status, times });
    }

    /// Uses of [`fail_next`](LocalKube::fail_next) faults not consumed yet.
    pub fn pending_faults(&self) -> usize {
        self.lock().faults.iter().map(|f| f.times).sum()
    }

    /// Forgets the recorded requests.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Requests that wrote an object's status.
    pub fn status_writes(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.method == "PATCH" && c.path.ends_with("/status")).collect()
    }

    /// Events created or updated.
    pub fn events(&self) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c.path.contains("/events") && (c.method == "POST" || c.method == "PATCH"))
            .map(|c| c.body)
            .collect()
    }

    async fn handle(&self, req: Request<Body>) -> Response<ResponseBody> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        let content_type = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut st = self.lock();
        if !st.quiet {
            st.calls.push(Call { method: method.to_string(), path: path.clone(), body: body.clone() });
        }
        if let Some(i) = st.faults.iter().position(|f| f.matches(method.as_str(), &path)) {
            let status = st.faults[i].status;
            st.faults[i].times -= 1;
            if st.faults[i].times == 0 {
                st.faults.remove(i);
            }
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return reply(code, &status_body(code.as_u16(), "injected fault"));
        }
        st.resource_version += 1;
        let rv = st.resource_version.to_string();

        if path.contains("/events") {
            return reply(if method == Method::POST { StatusCode::CREATED } else { StatusCode::OK }, &body);
        }
        match method {
            Method::GET => match st.objects.get(&path) {
                Some(obj) => reply(StatusCode::OK, obj),
                None if is_object_path(&path) => not_found(&path),
                None if query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1") => watch(&mut st, &path, &query),
                None => {
                    let items: Vec<Value> =
                        st.objects.iter().filter(|(p, _)| in_collection(&path, p)).map(|(_, o)| o.clone()).collect();
                    reply(StatusCode::OK, &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": rv}, "items": items}))
                }
            },
            Method::PATCH if path.ends_with("/status") => {
                let object_path = path.trim_end_matches("/status").to_string();
                let Some(obj) = st.objects.get_mut(&object_path) else { return not_found(&path) };
                // Server-side apply by the operator's single field manager: its status replaces the old one.
                obj["status"] = body.get("status").cloned().unwrap_or(Value::Null);
                obj["metadata"]["resourceVersion"] = json!(rv);
                let out = obj.clone();
                st.emit("MODIFIED", &object_path, &out);
                reply(StatusCode::OK, &out)
            }
            Method::PATCH => {
                if content_type.contains("apply-patch") && !st.objects.contains_key(&path) {
                    // Server-side apply of an object that does not exist creates it.
                    let mut created = body.clone();
                    created["metadata"]["resourceVersion"] = json!(rv);
                    created["metadata"]["uid"] = json!(format!("uid-{}", path.replace('/', "-")));
                    st.objects.insert(path.clone(), created.clone());
                    st.emit("ADDED", &path, &created);
                    return reply(StatusCode::CREATED, &created);
                }
                let Some(obj) = st.objects.get_mut(&path) else { return not_found(&path) };
                if content_type.contains("json-patch") {
                    // Like the API server, a JSON-patch `test` of an absent field against null passes.
                    if obj["metadata"].get("finalizers").is_none() {
                        obj["metadata"]["finalizers"] = Value::Null;
                    }
                    let patch: json_patch::Patch = match serde_json::from_value(body) {
                        Ok(p) => p,
                        Err(e) => return reply(StatusCode::BAD_REQUEST, &status_body(400, &e.to_string())),
                    };
                    if let Err(e) = json_patch::patch(obj, &patch) {
                        return reply(StatusCode::UNPROCESSABLE_ENTITY, &status_body(422, &e.to_string()));
                    }
                } else {
                    json_patch::merge(obj, &body);
                }
                obj["metadata"]["resourceVersion"] = json!(rv);
                let out = obj.clone();
                let finished = out["metadata"].get("deletionTimestamp").is_some()
                    && out["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
                if finished {
                    st.objects.remove(&path);
                    st.emit("DELETED", &path, &out);
                } else {
                    st.emit("MODIFIED", &path, &out);
                }
                reply(StatusCode::OK, &out)
            }
            Method::POST => {
                let name = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
                let obj_path = format!("{path}/{name}");
                let mut created = body.clone();
                created["metadata"]["resourceVersion"] = json!(rv);
                created["metadata"]["uid"] = json!(format!("uid-{}", obj_path.replace('/', "-")));
                st.objects.insert(obj_path.clone(), created.clone());
                st.emit("ADDED", &obj_path, &created);
                reply(StatusCode::CREATED, &created)
            }
            _ => reply(StatusCode::METHOD_NOT_ALLOWED, &status_body(405, "not supported by the fake")),
        }
    }
}

fn status_body(code: u16, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": "", "code": code})
}

/// A watch on `collection`: replays logged changes after the requested resourceVersion, then
/// streams new ones. A resourceVersion older than the log is answered 410 Gone, so the client
/// lists again, as with a real API server.
fn watch(st: &mut State, collection: &str, query: &str) -> Response<ResponseBody> {
    let from: u64 = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("resourceVersion="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let oldest = st.log.front().map(|(rv, _, _)| *rv).unwrap_or(st.resource_version);
    if from != 0 && from + 1 < oldest {
        return reply(
            StatusCode::GONE,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "too old resource version", "reason": "Expired", "code": 410}),
        );
    }
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    for (_, path, line) in st.log.iter().filter(|(rv, _, _)| *rv > from) {
        if in_collection(collection, path) {
            let _ = tx.send(line.clone());
        }
    }
    st.watchers.push(Watcher { collection: collection.to_string(), tx });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (Ok::<_, Infallible>(http_body::Frame::data(line)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(StreamBody::new(stream).boxed_unsync())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed_unsync()))
}

fn not_found(path: &str) -> Response<ResponseBody> {
    reply(StatusCode::NOT_FOUND, &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("{path} not found"), "reason": "NotFound", "code": 404}))
}

fn reply(status: StatusCode, body: &Value) -> Response<ResponseBody> {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(bytes).boxed_unsync())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed_unsync()))
}
