//! The emulator's mutable state: stored resources, long-running operations, issued tokens, the
//! request log, injected faults and rate-limit counters. Everything runs under one mutex; nothing
//! in here awaits.

use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime};

use serde_json::{Value, json};

use super::model::{Kind, RenderCtx, ResId, render, user_part};
use super::util::{get_path, random_token, set_path};
use super::RecordedRequest;
use super::fault::{FaultKind, FaultRule, OperationEnd};

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
    /// A datastore's `properties.credentials.secrets` as last written: write-only, so never in
    /// `body` (which shows only their `secretsType`); `POST listSecrets` answers them.
    pub(crate) secrets: Option<Value>,
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
    /// An injected fault's say in how this operation ends.
    pub(crate) forced: Option<OpOverride>,
}

/// How an injected fault changes the next operation started.
#[derive(Clone, Debug)]
pub(crate) enum OpOverride {
    /// It ends with this status and error code.
    End(OpStatus, String),
    /// It runs this long, and `finish_operations` does not shorten it.
    Outlast(std::time::Duration),
    /// The service refuses what the request asked for, after accepting it (a compute's VM size):
    /// the operation ends `Failed` with this ARM error object, and the resource stays `Failed`
    /// with it in `properties.provisioningErrors`, as Azure ML shows a failed compute.
    Refuse(Value),
}

/// An injected fault rule and how many matching requests it has seen.
pub(crate) struct ActiveFault {
    pub(crate) id: u64,
    pub(crate) rule: FaultRule,
    pub(crate) seen: u32,
    /// Requests that got the fault so far (the rule stays listed once used up).
    pub(crate) used: usize,
}

/// A soft-deleted key vault: its name stays reserved for the retention period (90 days).
pub(crate) struct DeletedVault {
    pub(crate) sub: String,
    pub(crate) vault_id: String,
    pub(crate) location: String,
    pub(crate) deleted: SystemTime,
    pub(crate) tags: Value,
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
    /// Soft-deleted key vaults by lowercase name (never purged).
    pub(crate) deleted_vaults: BTreeMap<String, DeletedVault>,
    pub(crate) operations: HashMap<String, Operation>,
    pub(crate) tokens: HashMap<String, IssuedToken>,
    pub(crate) token_requests: usize,
    /// Token requests per tenant (as named in the path), successful or not.
    pub(crate) token_requests_by_tenant: std::collections::HashMap<String, usize>,
    pub(crate) requests: Vec<RecordedRequest>,
    pub(crate) faults: Vec<ActiveFault>,
    /// Id of the next fault added.
    pub(crate) next_fault_id: u64,
    buckets: HashMap<(String, &'static str), Bucket>,
    /// The enforced buckets: writes per subscription (`EmulatorConfig::write_limit`), reads per
    /// principal (`EmulatorConfig::read_limit`), by `(class header, key)`.
    enforced_buckets: HashMap<(&'static str, String), Bucket>,
    /// Writes answered 429 by the enforced write bucket.
    pub(crate) throttled: usize,
    /// Reads answered 429 by the enforced read bucket.
    pub(crate) throttled_reads: usize,
    /// Set by a fault for the operation the current request starts (taken by `start_op`).
    pub(crate) pending_override: Option<OpOverride>,
    /// Role assignments by lowercased id (`{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`).
    pub(crate) role_assignments: BTreeMap<String, Value>,
    /// Principals (lowercased object ids) ARM does not know yet: PUTs naming one answer 400
    /// `PrincipalNotFound` this many more times.
    pub(crate) unknown_principals: HashMap<String, usize>,
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

    /// Takes one token from the enforced `class` bucket of `key` (a subscription for writes, a
    /// principal for reads; `burst` tokens, refilled at `per_second`): `Ok(remaining)`, or
    /// `Err(wait)` until one token is back when it is empty.
    pub(crate) fn take_enforced(
        &mut self,
        class: RateClass,
        key: &str,
        burst: u32,
        per_second: f64,
    ) -> Result<u64, std::time::Duration> {
        let size = f64::from(burst.max(1));
        let refill = per_second.max(f64::MIN_POSITIVE);
        let now = Instant::now();
        let bucket = self
            .enforced_buckets
            .entry((class.header(), key.to_ascii_lowercase()))
            .or_insert(Bucket {
                level: size,
                updated: now,
            });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.level = (bucket.level + elapsed * refill).min(size);
        bucket.updated = now;
        if bucket.level < 1.0 {
            return Err(std::time::Duration::from_secs_f64(
                ((1.0 - bucket.level) / refill).min(3600.0),
            ));
        }
        bucket.level -= 1.0;
        Ok(bucket.level.floor() as u64)
    }

    /// Consumes one use of the first fault rule matching this request whose rate lets it fire.
    pub(crate) fn take_fault(&mut self, method: &str, path: &str) -> Option<FaultKind> {
        let path_lower = path.to_ascii_lowercase();
        for active in &mut self.faults {
            if !active.rule.matches(method, &path_lower) {
                continue;
            }
            active.seen = active.seen.saturating_add(1);
            if active.seen % active.rule.one_in.max(1) != 0 {
                continue;
            }
            let kind = active.rule.kind.clone();
            active.rule.times -= 1;
            active.used += 1;
            return Some(kind);
        }
        None
    }

    /// Remembers what a fault does to the operation this request starts, if it starts one.
    pub(crate) fn set_override(&mut self, kind: &FaultKind) {
        self.pending_override = match kind {
            FaultKind::OperationEnds { end, code } => Some(OpOverride::End(
                match end {
                    OperationEnd::Failed => OpStatus::Failed,
                    OperationEnd::Canceled => OpStatus::Canceled,
                },
                code.clone(),
            )),
            FaultKind::OperationOutlasts { timeout_ms } => Some(OpOverride::Outlast(
                std::time::Duration::from_millis(timeout_ms.saturating_mul(2)),
            )),
            _ => None,
        };
    }

    /// Whether a resource or a role assignment is stored at `key`.
    pub(crate) fn exists(&self, key: &str) -> bool {
        self.resources.contains_key(key) || self.role_assignments.contains_key(key)
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
            if op.status == OpStatus::InProgress
                && !matches!(op.forced, Some(OpOverride::Outlast(_)))
            {
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
        match op.forced.clone() {
            Some(OpOverride::End(status, code)) => {
                self.force_end(op_id, &key, status, &code);
                return;
            }
            Some(OpOverride::Refuse(error)) => {
                if let Some(res) = self.resources.get_mut(&key) {
                    set_path(&mut res.body, "properties/provisioningState", Value::from("Failed"));
                    set_path(&mut res.body, "properties/provisioningErrors", json!([{"error": error.clone()}]));
                    res.op = None;
                }
                self.end_op(op_id, OpStatus::Failed, Some(error));
                return;
            }
            _ => {}
        }

        match kind {
            OpKind::Delete => {
                // Role assignments at and under a deleted resource go with it.
                let under = format!("{key}/");
                self.role_assignments.retain(|k, _| !k.starts_with(&under));
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
                        // Someone (a test) marked the resource failed while the operation ran:
                        // the operation fails with the resource's first provisioning error.
                        let first = res.body.pointer("/properties/provisioningErrors/0/error");
                        let text = |key: &str| first.and_then(|e| e.get(key)).and_then(Value::as_str);
                        let code = text("code").unwrap_or("InternalServerError").to_owned();
                        let message = text("message").map(str::to_owned).unwrap_or_else(|| {
                            format!("The resource operation completed with terminal provisioning state '{state}'.")
                        });
                        let status = if state == "Failed" {
                            OpStatus::Failed
                        } else {
                            OpStatus::Canceled
                        };
                        outcome = (status, Some(json!({"code": code, "message": message})));
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

    /// Ends an operation the way an injected fault asked: the resource stays, in that state.
    fn force_end(&mut self, op_id: &str, key: &str, status: OpStatus, code: &str) {
        let state = status.as_str();
        // A delete marked the whole subtree `Deleting`: the children survive unharmed.
        for k in self.subtree(key) {
            if k != key
                && let Some(res) = self.resources.get_mut(&k)
                && get_path(&res.body, "properties/provisioningState").and_then(Value::as_str)
                    == Some("Deleting")
            {
                set_path(
                    &mut res.body,
                    "properties/provisioningState",
                    Value::from("Succeeded"),
                );
            }
        }
        if let Some(res) = self.resources.get_mut(key) {
            set_path(
                &mut res.body,
                "properties/provisioningState",
                Value::from(state),
            );
            res.op = None;
        }
        let error = json!({
            "code": code,
            "message": format!("The resource operation completed with terminal provisioning state '{state}' (injected fault)."),
        });
        self.end_op(op_id, status, Some(error));
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
