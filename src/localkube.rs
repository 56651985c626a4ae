//! An in-memory Kubernetes API server, plugged in at the transport (a tower service under
//! `kube::Client`). It stores objects as JSON, applies JSON patches (finalizers), merge patches and
//! server-side applies, accepts events, and records every request. The tests use it as the fake API
//! server (asserting on the exact calls made, and on the ones not made); `plan` and `apply` use it to
//! run the same pipeline without a cluster.

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

/// One request the fake served.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub body: Value,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    calls: Vec<Call>,
    resource_version: u64,
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
        let gone = match st.objects.get_mut(path) {
            Some(obj) => {
                obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
                obj["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty())
            }
            None => false,
        };
        if gone {
            st.objects.remove(path);
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

    async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let content_type = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut st = self.lock();
        st.calls.push(Call { method: method.to_string(), path: path.clone(), body: body.clone() });
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
                None => {
                    // A namespaced collection: the objects one segment below `path`.
                    let prefix = format!("{path}/");
                    let items: Vec<Value> = st
                        .objects
                        .iter()
                        .filter(|(p, _)| p.strip_prefix(&prefix).is_some_and(|rest| !rest.contains('/')))
                        .map(|(_, o)| o.clone())
                        .collect();
                    let segs: Vec<&str> = path.split('/').collect();
                    let is_collection = segs.len() >= 3 && segs[segs.len() - 3] == "namespaces";
                    if !is_collection {
                        not_found(&path)
                    } else {
                        reply(StatusCode::OK, &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": rv}, "items": items}))
                    }
                }
            },
            Method::PATCH if path.ends_with("/status") => {
                let object_path = path.trim_end_matches("/status").to_string();
                let Some(obj) = st.objects.get_mut(&object_path) else { return not_found(&path) };
                // Server-side apply by the operator's single field manager: its status replaces the old one.
                obj["status"] = body.get("status").cloned().unwrap_or(Value::Null);
                obj["metadata"]["resourceVersion"] = json!(rv);
                reply(StatusCode::OK, obj)
            }
            Method::PATCH => {
                if content_type.contains("apply-patch") && !st.objects.contains_key(&path) {
                    // Server-side apply of an object that does not exist creates it.
                    let mut created = body.clone();
                    created["metadata"]["resourceVersion"] = json!(rv);
                    created["metadata"]["uid"] = json!(format!("uid-{}", path.replace('/', "-")));
                    st.objects.insert(path.clone(), created.clone());
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
                }
                reply(StatusCode::OK, &out)
            }
            Method::POST => {
                let name = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
                let obj_path = format!("{path}/{name}");
                st.objects.insert(obj_path, body.clone());
                reply(StatusCode::CREATED, &body)
            }
            _ => reply(StatusCode::METHOD_NOT_ALLOWED, &status_body(405, "not supported by the fake")),
        }
    }
}

fn status_body(code: u16, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": "", "code": code})
}

fn not_found(path: &str) -> Response<Body> {
    reply(StatusCode::NOT_FOUND, &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("{path} not found"), "reason": "NotFound", "code": 404}))
}

fn reply(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap_or_default()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
