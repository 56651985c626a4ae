//! The emulator's mutable state: stored resources, long-running operations, issued tokens, the
//! request log, injected faults and rate-limit counters. Everything runs under one mutex; nothing
//! in here awaits.

use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime};

use serde_json::{Value, json};

use super::model::{Kind, RenderCtx, ResId, render, user_part};
use super::util::{get_path, random_token, set_path};
use super::{Fault, RecordedRequest};

/// A stored resource.
pub(crate) struct Resource {
    /// Its parsed id (names as first created).
    pub(crate) id: ResId,
    /// The body as GET shows it.
    pub(crate) body: Value,
    /// The operation currently running on it.
    pub(crate) op: Option<String>,
    /// Online endpoint keys (primary, secondary).
    pub(crate) keys: Option<(String, String)>,
}

/// What an operation does when it completes.
#[derive(Clone, Debug)]
pub(crate) enum OpKind {
    /// Create or update: the resource becomes `Succeeded`.
    Put,
    /// Delete: the resource and its descendants disappear.
    Delete,
    /// Endpoint key regeneration.
    RegenerateKey {
        secondary: bool,
        value: Option<String>,
    },
    /// ComputeInstance start/stop/restart: `state` becomes this value.
    ComputeState(&'static str),
}

/// Lifecycle of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpStatus {
    InProgress,
    Succeeded,
    Failed,
    Canceled,
}

impl OpStatus {
    /// The ARM status string.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OpStatus::InProgress => "InProgress",
            OpStatus::Succeeded => "Succeeded",
            OpStatus::Failed => "Failed",
            OpStatus::Canceled => "Canceled",
        }
    }
}

/// A long-running operation.
pub(crate) struct Operation {
    pub(crate) id: String,
    pub(crate) sub: String,
    /// Normalized region of the resource.
    pub(crate) location: String,
    /// Store key of the target resource.
    pub(crate) resource_key: String,
    pub(crate) kind: OpKind,
    pub(crate) started: SystemTime,
    /// When it completes (moved to "now" by `finish_operations`).
    pub(crate) due: Instant,
    pub(crate) status: OpStatus,
    pub(crate) ended: Option<SystemTime>,
    /// ARM error object when Failed/Canceled.
    pub(crate) error: Option<Value>,
    /// Caller tenant and client, for re-rendering the resource.
    pub(crate) tenant_id: String,
    pub(crate) client_id: String,
}

/// A bearer token the emulator issued.
pub(crate) struct IssuedToken {
    pub(crate) tenant_id: String,
    pub(crate) client_id: String,
    pub(crate) expires: Instant,
}

/// A token bucket like ARM's per-subscription limits (reported, not enforced).
struct Bucket {
    level: f64,
    updated: Instant,
}

/// Everything the emulator remembers.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) resources: BTreeMap<String, Resource>,
    pub(crate) operations: HashMap<String, Operation>,
    pub(crate) tokens: HashMap<String, IssuedToken>,
    pub(crate) token_requests: usize,
    pub(crate) requests: Vec<RecordedRequest>,
    pub(crate) faults: Vec<Fault>,
    buckets: HashMap<(String, &'static str), Bucket>,
    /// Enforced write limit (burst, per second) and its buckets per subscription.
    write_limit: Option<(u32, f64)>,
    write_buckets: HashMap<String, Bucket>,
    /// Writes refused by the write limit.
    pub(crate) throttled: u64,
}

/// The rate-limit class of a request.
#[derive(Clone, Copy)]
pub(crate) enum RateClass {
    Reads,
    Writes,
    Deletes,
}

impl RateClass {
    /// The header reporting what is left in this class.
    pub(crate) fn header(self) -> &'static str {
        match self {
            RateClass::Reads => "x-ms-ratelimit-remaining-subscription-reads",
            RateClass::Writes => "x-ms-ratelimit-remaining-subscription-writes",
            RateClass::Deletes => "x-ms-ratelimit-remaining-subscription-deletes",
        }
    }

    /// (bucket size, refill per second) from ARM's published per-principal limits.
    fn limits(self) -> (f64, f64) {
        match self {
            RateClass::Reads => (250.0, 25.0),
            RateClass::Writes => (200.0, 10.0),
            RateClass::Deletes => (200.0, 10.0),
        }
    }
}

impl State {
    /// Takes one token from the (subscription, class) bucket and returns what remains.
    pub(crate) fn take_rate(&mut self, sub: &str, class: RateClass) -> u64 {
        let (size, refill) = class.limits();
        let now = Instant::now();
        let bucket = self
            .buckets
            .entry((sub.to_ascii_lowercase(), class.header()))
            .or_insert(Bucket {
                level: size,
                updated: now,
            });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.level = (bucket.level + elapsed * refill).min(size);
        bucket.updated = now;
        bucket.level = (bucket.level - 1.0).max(0.0);
        bucket.level.floor() as u64
    }

    /// A state that enforces `write_limit` (burst, writes per second) per subscription.
    pub(crate) fn with_write_limit(write_limit: Option<(u32, f64)>) -> Self {
        State {
            write_limit,
            ..State::default()
        }
    }

    /// Takes one write token for the subscription in `path`. `None`: allowed (or no limit);
    /// `Some(seconds)`: refused, retry after that many seconds (counted as throttled).
    pub(crate) fn take_write(&mut self, path: &str) -> Option<u64> {
        let (burst, rate) = self.write_limit?;
        let lower = path.to_ascii_lowercase();
        let sub = lower.strip_prefix("/subscriptions/")?.split('/').next()?.to_owned();
        let size = f64::from(burst);
        let now = Instant::now();
        let bucket = self.write_buckets.entry(sub).or_insert(Bucket {
            level: size,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.level = (bucket.level + elapsed * rate).min(size);
        bucket.updated = now;
        if bucket.level >= 1.0 {
            bucket.level -= 1.0;
            return None;
        }
        self.throttled += 1;
        let wait = if rate > 0.0 { ((1.0 - bucket.level) / rate).ceil() } else { 60.0 };
        Some((wait as u64).max(1))
    }

    /// Consumes one use of the first fault matching this request, if any.
    pub(crate) fn take_fault(&mut self, method: &str, path: &str) -> Option<Fault> {
        let path_lower = path.to_ascii_lowercase();
        let idx = self.faults.iter().position(|f| {
            f.times > 0
                && f.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && f.path_contains
                    .as_deref()
                    .is_none_or(|p| path_lower.contains(&p.to_ascii_lowercase()))
        })?;
        let fault = self.faults[idx].clone();
        self.faults[idx].times -= 1;
        if self.faults[idx].times == 0 {
            self.faults.remove(idx);
        }
        Some(fault)
    }

    /// The resource at `key` (callers advance operations first).
    pub(crate) fn get(&self, key: &str) -> Option<&Resource> {
        self.resources.get(key)
    }

    /// Whether the resource's own operation is still running.
    pub(crate) fn busy(&self, key: &str) -> bool {
        self.resources
            .get(key)
            .and_then(|r| r.op.as_ref())
            .and_then(|op| self.operations.get(op))
            .is_some_and(|op| op.status == OpStatus::InProgress)
    }

    /// Keys of the resource at `key` and everything under it.
    pub(crate) fn subtree(&self, key: &str) -> Vec<String> {
        let prefix = format!("{key}/");
        self.resources
            .keys()
            .filter(|k| *k == key || k.starts_with(&prefix))
            .cloned()
            .collect()
    }

    /// Completes every operation that is due at `now`, oldest first.
    pub(crate) fn advance(&mut self, now: Instant) {
        let mut due: Vec<(Instant, String)> = self
            .operations
            .values()
            .filter(|op| op.status == OpStatus::InProgress && op.due <= now)
            .map(|op| (op.due, op.id.clone()))
            .collect();
        due.sort();
        for (_, id) in due {
            self.complete(&id);
        }
    }

    /// Makes every running operation due now and completes them.
    pub(crate) fn finish_all(&mut self) {
        let now = Instant::now();
        for op in self.operations.values_mut() {
            if op.status == OpStatus::InProgress {
                op.due = op.due.min(now);
            }
        }
        self.advance(now);
    }

    fn complete(&mut self, op_id: &str) {
        let Some(op) = self.operations.get(op_id) else {
            return;
        };
        if op.status != OpStatus::InProgress {
            return;
        }
        let key = op.resource_key.clone();
        let kind = op.kind.clone();
        let ctx_tenant = op.tenant_id.clone();
        let ctx_client = op.client_id.clone();
        let mut outcome = (OpStatus::Succeeded, None);

        match kind {
            OpKind::Delete => {
                for k in self.subtree(&key) {
                    if let Some(res) = self.resources.remove(&k)
                        && let Some(other) = res.op.filter(|o| o != op_id)
                    {
                        self.end_op(&other, OpStatus::Canceled, Some(canceled_error()));
                    }
                }
            }
            OpKind::Put => {
                if let Some(res) = self.resources.get_mut(&key) {
                    let state = get_path(&res.body, "properties/provisioningState")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    if state == "Failed" || state == "Canceled" {
                        // Someone (a test) marked the resource failed while the operation ran.
                        let code =
                            get_path(&res.body, "properties/provisioningErrors/0/error/code")
                                .and_then(Value::as_str)
                                .unwrap_or("InternalServerError")
                                .to_owned();
                        let status = if state == "Failed" {
                            OpStatus::Failed
                        } else {
                            OpStatus::Canceled
                        };
                        outcome = (
                            status,
                            Some(json!({
                                "code": code,
                                "message": format!("The resource operation completed with terminal provisioning state '{state}'."),
                            })),
                        );
                    } else {
                        let ctx = RenderCtx {
                            tenant_id: &ctx_tenant,
                            client_id: &ctx_client,
                            now: SystemTime::now(),
                        };
                        let user = user_part(res.id.kind(), &res.body);
                        res.body = render(&res.id, &user, Some(&res.body), "Succeeded", &ctx);
                    }
                    res.op = None;
                } else {
                    outcome = (OpStatus::Canceled, Some(canceled_error()));
                }
            }
            OpKind::RegenerateKey { secondary, value } => {
                if let Some(res) = self.resources.get_mut(&key) {
                    let new_key = value.unwrap_or_else(|| random_token(32));
                    let keys = res
                        .keys
                        .get_or_insert_with(|| (random_token(32), random_token(32)));
                    if secondary {
                        keys.1 = new_key;
                    } else {
                        keys.0 = new_key;
                    }
                    res.op = None;
                }
            }
            OpKind::ComputeState(state) => {
                if let Some(res) = self.resources.get_mut(&key) {
                    set_path(
                        &mut res.body,
                        "properties/properties/state",
                        Value::from(state),
                    );
                    res.op = None;
                }
            }
        }
        self.end_op(op_id, outcome.0, outcome.1);
    }

    fn end_op(&mut self, op_id: &str, status: OpStatus, error: Option<Value>) {
        if let Some(op) = self.operations.get_mut(op_id)
            && op.status == OpStatus::InProgress
        {
            op.status = status;
            op.error = error;
            op.ended = Some(SystemTime::now());
        }
    }

    /// All resources of `kind` directly under `parent_key` (or in the resource group prefix).
    pub(crate) fn children(&self, prefix: &str, kind: Kind) -> Vec<&Resource> {
        let prefix = format!("{prefix}/{}/", kind.segment().to_ascii_lowercase());
        self.resources
            .iter()
            .filter(|(k, r)| {
                k.starts_with(&prefix) && !k[prefix.len()..].contains('/') && r.id.kind() == kind
            })
            .map(|(_, r)| r)
            .collect()
    }
}

fn canceled_error() -> Value {
    json!({
        "code": "OperationCanceled",
        "message": "The operation was canceled because its resource was deleted.",
    })
}
