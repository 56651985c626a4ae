//! An in-memory Kubernetes API server, plugged in at the transport (a tower service under
//! `kube::Client`). It stores objects as JSON, applies JSON patches (finalizers), merge patches and
//! server-side applies, accepts events, and records every request. The tests use it as the fake API
//! server (asserting on the exact calls made, and on the ones not made); `plan` and `apply` use it to
//! run the same pipeline without a cluster.
//!
//! It also serves LIST of a collection (namespaced or across namespaces, with `limit`/`continue`;
//! namespaces themselves, cluster-scoped, at `/api/v1/namespaces`) and
//! WATCH (`?watch=true&resourceVersion=N`): newline-delimited `{"type","object"}` events for every change
//! made through the API or through [`LocalKube::put`], [`LocalKube::edit`] and [`LocalKube::delete`],
//! replayed from a bounded history when the watch starts behind (410 `Expired` when it is too far
//! behind), with `BOOKMARK`s when asked (`allowWatchBookmarks=true`), ending after `timeoutSeconds`.
//! That is what kube-runtime's watcher needs, so the real controllers run against it
//! ([`crate::bench`]); [`LocalKube::serve`] exposes it over HTTP for an operator in another process.

use axum::body::{Body as HttpBody, Bytes};
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How many past changes a watch that starts behind can be replayed from.
const HISTORY: usize = 10_000;
/// How often an idle watch that asked for bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

/// One request the fake served.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub body: Value,
}

/// Requests served, by verb (counted even when [`LocalKube::set_record_calls`] turned recording off).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// GETs of one object.
    pub get: u64,
    /// LISTs of a collection (each page counts).
    pub list: u64,
    /// WATCH requests started.
    pub watch: u64,
    /// PATCHes of an object (finalizers, owner references).
    pub patch: u64,
    /// PATCHes of `/status`.
    pub status_patch: u64,
    /// POSTs creating an object (not events).
    pub create: u64,
    /// Events created or updated.
    pub event_writes: u64,
    /// Anything else.
    pub other: u64,
}

impl RequestCounts {
    /// Writes to objects: patches, status patches and creates (events not counted).
    pub fn object_writes(&self) -> u64 {
        self.patch + self.status_patch + self.create
    }

    /// Every request.
    pub fn total(&self) -> u64 {
        self.get + self.list + self.watch + self.patch + self.status_patch + self.create + self.event_writes + self.other
    }
}

/// A collection: `/apis/{group}/{version}` or `/api/{version}`, an optional namespace, a plural.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Collection {
    prefix: String,
    namespace: Option<String>,
    plural: String,
}

impl Collection {
    /// The collection a request path names, if it names one (not an object, not a subresource).
    fn parse(path: &str) -> Option<Collection> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (prefix_len, rest) = match segs.first() {
            Some(&"apis") if segs.len() >= 4 => (3, &segs[3..]),
            Some(&"api") if segs.len() >= 3 => (2, &segs[2..]),
            _ => return None,
        };
        let prefix = format!("/{}", segs[..prefix_len].join("/"));
        match rest {
            // `/api/v1/namespaces` is the (cluster-scoped) collection of namespaces.
            [plural] => Some(Collection { prefix, namespace: None, plural: plural.to_string() }),
            ["namespaces", ns, plural] => Some(Collection { prefix, namespace: Some(ns.to_string()), plural: plural.to_string() }),
            _ => None,
        }
    }

    /// Whether the namespaced object stored at `path` belongs to this collection.
    fn contains(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix(self.prefix.as_str()) else { return false };
        let segs: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        match segs.as_slice() {
            ["namespaces", _name] => self.plural == "namespaces" && self.namespace.is_none(),
            ["namespaces", ns, plural, _name] => {
                *plural == self.plural && self.namespace.as_deref().is_none_or(|n| n == *ns)
            }
            _ => false,
        }
    }

    fn api_version(&self) -> String {
        self.prefix.trim_start_matches("/apis/").trim_start_matches("/api/").to_string()
    }
}

/// A change as a watch line, remembered for watches that start behind.
struct Change {
    rv: u64,
    path: String,
    line: Bytes,
}

/// An open watch.
struct Watcher {
    collection: Collection,
    tx: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    calls: Vec<Call>,
    resource_version: u64,
    /// Recording of calls turned off (counts are kept).
    calls_off: bool,
    counts: RequestCounts,
    watchers: Vec<Watcher>,
    history: VecDeque<Change>,
    /// Changes at or below this resourceVersion are no longer in `history`.
    history_floor: u64,
    /// Kind of each (api prefix, plural), learned from stored objects.
    kinds: BTreeMap<(String, String), String>,
    faults: Vec<KubeFault>,
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

impl State {
    /// Sends a change to the open watches of its collection and remembers it.
    fn notify(&mut self, event: &str, path: &str) {
        let rv = self.resource_version;
        let object = match self.objects.get(path) {
            Some(o) => o.clone(),
            None => return,
        };
        self.notify_with(event, path, rv, &object);
    }

    fn notify_with(&mut self, event: &str, path: &str, rv: u64, object: &Value) {
        let mut line = serde_json::to_vec(&json!({"type": event, "object": object})).unwrap_or_default();
        line.push(b'\n');
        let line = Bytes::from(line);
        self.watchers.retain(|w| !w.collection.contains(path) || w.tx.send(line.clone()).is_ok());
        self.history.push_back(Change { rv, path: path.to_string(), line });
        while self.history.len() > HISTORY {
            if let Some(old) = self.history.pop_front() {
                self.history_floor = old.rv;
            }
        }
    }

    fn learn_kind(&mut self, path: &str, obj: &Value) {
        let (Some(kind), Some(c)) = (obj["kind"].as_str(), object_collection(path)) else { return };
        self.kinds.entry((c.prefix, c.plural)).or_insert_with(|| kind.to_string());
    }

    fn kind_of(&self, c: &Collection) -> String {
        if let Some(k) = self.kinds.get(&(c.prefix.clone(), c.plural.clone())) {
            return k.clone();
        }
        crate::controller::kinds::ALL
            .iter()
            .map(|k| k.resource())
            .find(|r| r.plural == c.plural)
            .map(|r| r.kind)
            .unwrap_or_default()
    }
}

/// The collection (with its namespace) a stored object path belongs to.
fn object_collection(path: &str) -> Option<Collection> {
    let (parent, _name) = path.rsplit_once('/')?;
    Collection::parse(parent)
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
    if kind == "Namespace" {
        return format!("{prefix}/namespaces/{name}");
    }
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
        if !path.ends_with(&format!("/namespaces/{}", meta.get("name").and_then(Value::as_str).unwrap_or_default())) {
            meta.entry("namespace").or_insert(json!("default"));
        }
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
        st.learn_kind(&path, &v);
        st.objects.insert(path.clone(), v);
        st.notify(if previous.is_some() { "MODIFIED" } else { "ADDED" }, &path);
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
        st.notify("MODIFIED", path);
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
        let gone = match st.objects.get_mut(path) {
            Some(obj) => {
                obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
                obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                obj["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty())
            }
            None => return,
        };
        if gone {
            if let Some(obj) = st.objects.remove(path) {
                st.notify_with("DELETED", path, rv, &obj);
            }
        } else {
            st.notify("MODIFIED", path);
        }
    }

    /// Turns recording of calls (with their bodies) on or off; [`LocalKube::request_counts`] keeps
    /// counting either way. Off keeps a long benchmark's memory flat.
    pub fn set_record_calls(&self, on: bool) {
        let mut st = self.lock();
        st.calls_off = !on;
        if !on {
            st.calls = Vec::new();
        }
    }

    /// Requests served so far, by verb.
    pub fn request_counts(&self) -> RequestCounts {
        self.lock().counts
    }

    /// How many objects of `collection` (a LIST path, namespaced or not) satisfy `pred`.
    pub fn count(&self, collection: &str, pred: impl Fn(&Value) -> bool) -> usize {
        let Some(c) = Collection::parse(collection) else { return 0 };
        self.lock().objects.iter().filter(|(p, v)| c.contains(p) && pred(v)).count()
    }

    /// The current resourceVersion of the whole store.
    pub fn resource_version(&self) -> u64 {
        self.lock().resource_version
    }

    /// Open watches right now.
    pub fn open_watches(&self) -> usize {
        let mut st = self.lock();
        st.watchers.retain(|w| !w.tx.is_closed());
        st.watchers.len()
    }

    /// Serves this API server over plain HTTP on `listener` until the task is dropped, for an
    /// operator in another process (a kubeconfig whose `server` is `http://ADDRESS`).
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let kube = self.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
                kube.handle(Request::from_parts(parts, Body::from(bytes))).await
            }
        });
        axum::serve(listener, app).await
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

    async fn handle(&self, req: Request<Body>) -> Response<HttpBody> {
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
        if !st.calls_off {
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
            st.counts.event_writes += u64::from(method == Method::POST || method == Method::PATCH);
            return reply(if method == Method::POST { StatusCode::CREATED } else { StatusCode::OK }, &body);
        }
        let collection = Collection::parse(&path);
        match method {
            Method::GET => match collection {
                Some(c) if query_param(&query, "watch").is_some_and(|w| w == "true" || w == "1") => {
                    st.counts.watch += 1;
                    drop(st);
                    self.watch(c, &query)
                }
                Some(c) => {
                    st.counts.list += 1;
                    list(&st, &c, &query)
                }
                None => {
                    st.counts.get += 1;
                    match st.objects.get(&path) {
                        Some(obj) => reply(StatusCode::OK, obj),
                        None => not_found(&path),
                    }
                }
            },
            Method::PATCH if path.ends_with("/status") => {
                st.counts.status_patch += 1;
                let object_path = path.trim_end_matches("/status").to_string();
                let Some(obj) = st.objects.get_mut(&object_path) else { return not_found(&path) };
                // Server-side apply by the operator's single field manager: its status replaces the old one.
                obj["status"] = body.get("status").cloned().unwrap_or(Value::Null);
                obj["metadata"]["resourceVersion"] = json!(rv);
                let out = reply(StatusCode::OK, obj);
                st.notify("MODIFIED", &object_path);
                out
            }
            Method::PATCH => {
                st.counts.patch += 1;
                if content_type.contains("apply-patch") && !st.objects.contains_key(&path) {
                    // Server-side apply of an object that does not exist creates it.
                    let mut created = body.clone();
                    created["metadata"]["resourceVersion"] = json!(rv);
                    created["metadata"]["uid"] = json!(format!("uid-{}", path.replace('/', "-")));
                    st.learn_kind(&path, &created);
                    st.objects.insert(path.clone(), created.clone());
                    st.notify("ADDED", &path);
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
                    let rv = st.resource_version;
                    st.notify_with("DELETED", &path, rv, &out);
                } else {
                    st.notify("MODIFIED", &path);
                }
                reply(StatusCode::OK, &out)
            }
            Method::POST => {
                st.counts.create += 1;
                let name = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
                let obj_path = format!("{path}/{name}");
                let mut created = body.clone();
                created["metadata"]["resourceVersion"] = json!(rv);
                created["metadata"]["uid"] = json!(format!("uid-{}", obj_path.replace('/', "-")));
                st.learn_kind(&obj_path, &created);
                st.objects.insert(obj_path.clone(), created.clone());
                st.notify("ADDED", &obj_path);
                reply(StatusCode::CREATED, &created)
            }
            _ => {
                st.counts.other += 1;
                reply(StatusCode::METHOD_NOT_ALLOWED, &status_body(405, "not supported by the fake"))
            }
        }
    }

    /// Starts a watch of `c`: replays what happened after the requested resourceVersion (or, for
    /// none or "0", every current object as ADDED), then streams changes until `timeoutSeconds`.
    fn watch(&self, c: Collection, query: &str) -> Response<HttpBody> {
        let since = query_param(query, "resourceVersion").unwrap_or_default();
        let bookmarks = query_param(query, "allowWatchBookmarks").is_some_and(|b| b == "true" || b == "1");
        let timeout = query_param(query, "timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(1800));
        let (tx, rx) = mpsc::unbounded_channel();
        let mut st = self.lock();
        let kind = st.kind_of(&c);
        match since.parse::<u64>() {
            Ok(0) | Err(_) => {
                for obj in st.objects.iter().filter(|(p, _)| c.contains(p)).map(|(_, o)| o) {
                    let mut line = serde_json::to_vec(&json!({"type": "ADDED", "object": obj})).unwrap_or_default();
                    line.push(b'\n');
                    let _ = tx.send(Bytes::from(line));
                }
            }
            Ok(rv) if rv < st.history_floor => {
                let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "message": format!("too old resource version: {rv} ({})", st.history_floor),
                    "reason": "Expired", "code": 410}});
                let mut line = serde_json::to_vec(&gone).unwrap_or_default();
                line.push(b'\n');
                drop(st);
                return Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .body(HttpBody::from(line))
                    .unwrap_or_else(|_| Response::new(HttpBody::empty()));
            }
            Ok(rv) => {
                for change in st.history.iter().filter(|ch| ch.rv > rv && c.contains(&ch.path)) {
                    let _ = tx.send(change.line.clone());
                }
            }
        }
        st.watchers.push(Watcher { collection: c.clone(), tx });
        drop(st);

        let stream = WatchStream {
            kube: self.clone(),
            rx,
            pending: VecDeque::new(),
            deadline: tokio::time::Instant::now() + timeout,
            next_bookmark: bookmarks.then(|| tokio::time::Instant::now() + BOOKMARK_EVERY),
            bookmark: bookmarks.then(|| (c.api_version(), kind)),
            ended: false,
        };
        let body = futures::stream::unfold(stream, |mut s| async move {
            s.next().await.map(|line| (Ok::<_, Infallible>(line), s))
        });
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(HttpBody::from_stream(body))
            .unwrap_or_else(|_| Response::new(HttpBody::empty()))
    }
}

/// The state of one watch's response body.
struct WatchStream {
    kube: LocalKube,
    rx: mpsc::UnboundedReceiver<Bytes>,
    /// Lines taken from `rx` ahead of a bookmark.
    pending: VecDeque<Bytes>,
    deadline: tokio::time::Instant,
    next_bookmark: Option<tokio::time::Instant>,
    /// (apiVersion, kind) of bookmarks, when asked for.
    bookmark: Option<(String, String)>,
    ended: bool,
}

impl WatchStream {
    /// The next line to send, or None when the watch ends.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Some(line);
            }
            if self.ended {
                return None;
            }
            let wake = self.next_bookmark.map_or(self.deadline, |b| b.min(self.deadline));
            tokio::select! {
                line = self.rx.recv() => return line,
                _ = tokio::time::sleep_until(wake) => {
                    let now = tokio::time::Instant::now();
                    if now >= self.deadline {
                        self.ended = true;
                    }
                    self.next_bookmark = self.next_bookmark.map(|_| now + BOOKMARK_EVERY);
                    if self.bookmark.is_some() {
                        self.push_bookmark();
                    }
                }
            }
        }
    }

    /// Queues what is already sent and a bookmark at the store's current resourceVersion; under
    /// the lock, so no change can fall between them.
    fn push_bookmark(&mut self) {
        let Some((api_version, kind)) = &self.bookmark else { return };
        let st = self.kube.lock();
        while let Ok(line) = self.rx.try_recv() {
            self.pending.push_back(line);
        }
        let rv = st.resource_version.to_string();
        drop(st);
        let mark = json!({"type": "BOOKMARK", "object": {"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": rv}}});
        let mut line = serde_json::to_vec(&mark).unwrap_or_default();
        line.push(b'\n');
        self.pending.push_back(Bytes::from(line));
    }
}

/// One page of a LIST: objects after the `continue` token, at most `limit` of them.
fn list(st: &State, c: &Collection, query: &str) -> Response<HttpBody> {
    let limit = query_param(query, "limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
    // The token pins the first page's resourceVersion, so a watch from it misses nothing.
    let token = query_param(query, "continue").and_then(|t| unhex(&t));
    let (list_rv, after) = match token.as_deref().and_then(|t| t.split_once('\0')) {
        Some((rv, key)) => (rv.to_string(), Some(key.to_string())),
        None => (st.resource_version.to_string(), None),
    };
    let mut items = Vec::new();
    let mut last = None;
    let mut more = false;
    let start = match &after {
        Some(a) => std::ops::Bound::Excluded(a.clone()),
        None => std::ops::Bound::Unbounded,
    };
    for (path, obj) in st.objects.range((start, std::ops::Bound::Unbounded)).filter(|(p, _)| c.contains(p)) {
        if limit.is_some_and(|l| items.len() >= l) {
            more = true;
            break;
        }
        items.push(obj.clone());
        last = Some(path.clone());
    }
    let mut metadata = json!({"resourceVersion": list_rv});
    if let (true, Some(last)) = (more, last) {
        metadata["continue"] = json!(hex(&format!("{list_rv}\0{last}")));
    }
    let list = json!({
        "apiVersion": c.api_version(),
        "kind": format!("{}List", st.kind_of(c)),
        "metadata": metadata,
        "items": items,
    });
    reply(StatusCode::OK, &list)
}

/// The (undecoded) value of `name` in a query string; values here are digits, words or hex.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| v.to_string())
    })
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    String::from_utf8(bytes?).ok()
}

fn status_body(code: u16, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": "", "code": code})
}

fn not_found(path: &str) -> Response<HttpBody> {
    reply(StatusCode::NOT_FOUND, &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("{path} not found"), "reason": "NotFound", "code": 404}))
}

fn reply(status: StatusCode, body: &Value) -> Response<HttpBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(HttpBody::from(serde_json::to_vec(body).unwrap_or_default()))
        .unwrap_or_else(|_| Response::new(HttpBody::empty()))
}
