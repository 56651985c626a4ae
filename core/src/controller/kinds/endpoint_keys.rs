//! An endpoint's keys Secret and key rotation: the Secret holds the scoring URI and, for
//! `authMode: Key`, ARM's keys, kept equal to ARM at as few ARM writes as possible; the keys are
//! rotated on request (the [`ROTATE_KEYS`] annotation), one key at a time.

use crate::arm::{self, PollOutcome, PostOutcome};
use crate::controller::status::FIELD_MANAGER;
use crate::controller::{Context, Error, Resolved, Target};
use crate::crd::AmlOnlineEndpoint;
use crate::crd::endpoint::AuthMode;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use tracing::debug;

/// Annotation on the keys Secret: when the operator last compared it with ARM's `listKeys` (RFC 3339).
pub const KEYS_CHECKED_AT: &str = "amloperator.io/keys-checked-at";
/// Annotation on the keys Secret: SHA-256 of the data the operator wrote; a Secret whose data no
/// longer matches was edited by someone else and is repaired.
pub const KEYS_DIGEST: &str = "amloperator.io/keys-digest";
/// Annotation on the endpoint: set it to a new value (any string, e.g. a date) to rotate the keys:
/// the secondary key is regenerated and published, then the primary.
pub const ROTATE_KEYS: &str = "amloperator.io/rotate-keys";
/// Annotation on the keys Secret: the [`ROTATE_KEYS`] value acted on, so one value rotates once.
pub const KEYS_ROTATED: &str = "amloperator.io/keys-rotated";
/// Annotation on the keys Secret: the key a rotation in progress regenerates next (`Secondary`,
/// then `Primary`); empty (or absent) when no rotation runs.
pub const KEYS_ROTATION: &str = "amloperator.io/keys-rotation";
/// Annotation on the keys Secret: the `regenerateKeys` operation in flight (JSON), polled on
/// later reconciles; empty (or absent) when none.
pub const KEYS_ROTATION_OPERATION: &str = "amloperator.io/keys-rotation-operation";

// Keys Secret

/// Keeps `keysSecret` equal to what ARM says, spending as few ARM writes as possible: `listKeys`
/// (authMode Key) is a POST, which ARM counts against the write budget, so it is called only when
/// the Secret is missing, its data is not what the operator last wrote (its [`KEYS_DIGEST`] differs:
/// someone edited it), or its [`KEYS_CHECKED_AT`] is older than `Config::keys_refresh`. A changed
/// scoring URI alone is written without `listKeys`. The Secret is written only when something
/// changed. Rotation on request ([`ROTATE_KEYS`]) is driven from here too (see [`rotate`]).
///
/// Returns how soon to come back when a rotation is under way.
pub(super) async fn sync_keys_secret(
    endpoint: &AmlOnlineEndpoint,
    secret_name: &str,
    ctx: &Context,
    resolved: &Resolved,
    target: &Target,
    actual: &Value,
) -> Result<Option<Duration>, Error> {
    let ns = endpoint.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = api
        .get_opt(secret_name)
        .await
        .map_err(|source| Error::Kube { what: "reading the keys Secret", source })?;
    let uid = endpoint.uid().unwrap_or_default();
    if let Some(owner) = existing.as_ref().and_then(|s| foreign_controller(s, &uid)) {
        return Err(Error::InvalidSpec(format!(
            "keysSecret {ns}/{secret_name} is controlled by {} {}; choose another name",
            owner.kind, owner.name
        )));
    }
    let keys = KeysSecret { api, name: secret_name, namespace: &ns, endpoint, uid: &uid, exists: existing.is_some() };
    let scoring_uri = actual.pointer("/properties/scoringUri").and_then(Value::as_str).unwrap_or_default();
    let uri = ByteString(scoring_uri.as_bytes().to_vec());
    // Only the keys the operator writes: anything else someone put there is theirs.
    let current: BTreeMap<String, ByteString> = existing
        .as_ref()
        .and_then(|s| s.data.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| SECRET_KEYS.contains(&k.as_str()))
        .collect();
    if endpoint.spec.auth_mode != AuthMode::Key {
        let data = BTreeMap::from([("scoringUri".to_string(), uri)]);
        if existing.is_none() || current != data {
            keys.write(data, Notes::default()).await?;
        }
        return Ok(None);
    }
    let mut notes = existing.as_ref().map(Notes::of).unwrap_or_default();
    let requested = endpoint.annotations().get(ROTATE_KEYS).filter(|v| !v.is_empty()).cloned();
    if existing.is_none() {
        // A value present when the Secret is first written is recorded, not acted on: the keys
        // are read fresh from ARM anyway.
        notes.rotated = requested.clone();
    } else if notes.step.is_none() && requested.is_some() && requested != notes.rotated {
        notes.rotated = requested;
        notes.step = Some(KeyType::Secondary);
        notes.operation = None;
    }
    if existing.is_some() && notes.step.is_some() {
        return rotate(&keys, ctx, resolved, target, uri, current, notes).await;
    }
    let intact = existing.is_some() && notes.digest.as_deref() == Some(digest(&current).as_str());
    let fresh = notes.checked_at.is_some_and(|t| is_recent(t, Timestamp::now(), ctx.config.keys_refresh));
    if intact && fresh {
        if current.get("scoringUri") != Some(&uri) {
            let mut data = current;
            data.insert("scoringUri".into(), uri);
            keys.write(data, notes).await?;
        }
        return Ok(None);
    }
    let data = read_keys(ctx, resolved, target, uri).await?;
    notes.checked_at = Some(Timestamp::now());
    keys.write(data, notes).await?;
    Ok(None)
}

/// Drives a key rotation one step as far as it can go without waiting, and says when to come back.
///
/// 1. `Secondary`: POST `regenerateKeys {keyType: Secondary}`; the operation URL goes into the
///    Secret's [`KEYS_ROTATION_OPERATION`] annotation (never awaited here). Once it succeeded the
///    Secret is published with the old primary and the new secondary key.
/// 2. `Primary`, once `Config::keys_rotation_grace` has passed since that publication (clients
///    switch to the secondary key meanwhile): the same for the primary key; then the Secret holds
///    two new keys and the rotation annotations are removed.
///
/// Every state in between is in the Secret's annotations, so a restarted operator continues where
/// this one stopped, and each intermediate Secret holds a key a client already had.
async fn rotate(
    keys: &KeysSecret<'_>,
    ctx: &Context,
    resolved: &Resolved,
    target: &Target,
    uri: ByteString,
    current: BTreeMap<String, ByteString>,
    mut notes: Notes,
) -> Result<Option<Duration>, Error> {
    let Some(step) = notes.step else { return Ok(None) };
    match notes.operation.clone() {
        Some(op) => match ctx.arm.poll(&resolved.principal, &op).await.map_err(|source| Error::Arm {
            action: "poll",
            arm_id: target.arm_id.clone(),
            source,
        })? {
            PollOutcome::InProgress { retry_after } => return Ok(Some(retry_after.max(MIN_REQUEUE))),
            PollOutcome::Succeeded => {}
            PollOutcome::Failed(e) => {
                // Keep the step: the next attempt regenerates that key again.
                notes.operation = None;
                keys.write(current, notes).await?;
                return Err(Error::OperationFailed {
                    action: format!("regenerateKeys {}", step.as_str()),
                    arm_id: target.arm_id.clone(),
                    class: crate::arm::failure_class(&e.code),
                    code: e.code,
                    message: e.message,
                });
            }
        },
        None => {
            if step == KeyType::Primary {
                let since = notes.checked_at.unwrap_or_else(Timestamp::now);
                let elapsed = Timestamp::now().duration_since(since);
                let wait = SignedDuration::try_from(ctx.config.keys_rotation_grace).unwrap_or(SignedDuration::MAX) - elapsed;
                if wait.is_positive() {
                    return Ok(Some(Duration::try_from(wait).unwrap_or(MIN_REQUEUE).max(MIN_REQUEUE)));
                }
            }
            match regenerate(ctx, resolved, target, step).await? {
                PostOutcome::Accepted(op) => {
                    let retry_after = op.retry_after.max(MIN_REQUEUE);
                    notes.operation = Some(op);
                    keys.write(current, notes).await?;
                    return Ok(Some(retry_after));
                }
                PostOutcome::Done(_) => {}
            }
        }
    }
    // The key is regenerated: publish, and go on with the primary key (after the grace) or finish.
    let data = read_keys(ctx, resolved, target, uri).await?;
    notes.operation = None;
    notes.checked_at = Some(Timestamp::now());
    notes.step = match step {
        KeyType::Secondary => Some(KeyType::Primary),
        KeyType::Primary => None,
    };
    let next = notes.step.map(|_| ctx.config.keys_rotation_grace.max(MIN_REQUEUE));
    keys.write(data, notes).await?;
    debug!(key = step.as_str(), "rotated key published");
    Ok(next)
}

/// The data keys of the keys Secret the operator writes.
const SECRET_KEYS: [&str; 3] = ["scoringUri", "primaryKey", "secondaryKey"];

/// Shortest requeue while a rotation is under way.
const MIN_REQUEUE: Duration = Duration::from_secs(1);

/// Which key `regenerateKeys` regenerates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyType {
    Primary,
    Secondary,
}

impl KeyType {
    fn as_str(self) -> &'static str {
        match self {
            KeyType::Primary => "Primary",
            KeyType::Secondary => "Secondary",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "Primary" => Some(KeyType::Primary),
            "Secondary" => Some(KeyType::Secondary),
            _ => None,
        }
    }
}

/// What the operator keeps in the keys Secret's annotations.
#[derive(Clone, Debug, Default)]
struct Notes {
    /// [`KEYS_CHECKED_AT`].
    checked_at: Option<Timestamp>,
    /// [`KEYS_DIGEST`] as found (recomputed on every write).
    digest: Option<String>,
    /// [`KEYS_ROTATED`].
    rotated: Option<String>,
    /// [`KEYS_ROTATION`].
    step: Option<KeyType>,
    /// [`KEYS_ROTATION_OPERATION`].
    operation: Option<arm::Operation>,
}

impl Notes {
    fn of(secret: &Secret) -> Notes {
        let a = secret.annotations();
        Notes {
            checked_at: a.get(KEYS_CHECKED_AT).and_then(|t| t.parse().ok()),
            digest: a.get(KEYS_DIGEST).cloned(),
            rotated: a.get(KEYS_ROTATED).cloned(),
            step: a.get(KEYS_ROTATION).and_then(|s| KeyType::parse(s)),
            // An empty value is "no operation" (see `annotations`).
            operation: a.get(KEYS_ROTATION_OPERATION).and_then(|o| serde_json::from_str(o).ok()),
        }
    }

    /// The annotations for a Secret holding `data`.
    fn annotations(&self, data: &BTreeMap<String, ByteString>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::from([(KEYS_DIGEST.to_string(), digest(data))]);
        if let Some(t) = self.checked_at {
            out.insert(KEYS_CHECKED_AT.into(), t.to_string());
        }
        // Once a rotation was ever asked for, its progress annotations are always written, empty
        // when idle: an annotation left out of a server-side apply is not reliably removed (not
        // when another field manager, or the create, also owns it).
        if let Some(v) = &self.rotated {
            out.insert(KEYS_ROTATED.into(), v.clone());
            let step = self.step.map(KeyType::as_str).unwrap_or_default();
            out.insert(KEYS_ROTATION.into(), step.into());
            let op = self.operation.as_ref().and_then(|op| serde_json::to_string(op).ok()).unwrap_or_default();
            out.insert(KEYS_ROTATION_OPERATION.into(), op);
        }
        out
    }
}

/// SHA-256 (hex) of a Secret's data: what the operator wrote, to notice anyone else's edit. Keys
/// are long random values, so the digest reveals nothing about them.
fn digest(data: &BTreeMap<String, ByteString>) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (k, v) in data {
        ctx.update(&(k.len() as u64).to_le_bytes());
        ctx.update(k.as_bytes());
        ctx.update(&(v.0.len() as u64).to_le_bytes());
        ctx.update(&v.0);
    }
    ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The keys Secret of one endpoint, and how to write it.
struct KeysSecret<'a> {
    api: Api<Secret>,
    name: &'a str,
    namespace: &'a str,
    endpoint: &'a AmlOnlineEndpoint,
    uid: &'a str,
    exists: bool,
}

impl KeysSecret<'_> {
    /// Writes `data` with the annotations of `notes` (a create the first time, then server-side
    /// applies with the operator's field manager, which also drop annotations no longer set).
    async fn write(&self, data: BTreeMap<String, ByteString>, notes: Notes) -> Result<(), Error> {
        let annotations = notes.annotations(&data);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.name.to_string()),
                namespace: Some(self.namespace.to_string()),
                annotations: Some(annotations),
                owner_references: Some(vec![OwnerReference {
                    api_version: AmlOnlineEndpoint::api_version(&()).into_owned(),
                    kind: AmlOnlineEndpoint::kind(&()).into_owned(),
                    name: self.endpoint.name_any(),
                    uid: self.uid.to_string(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(data),
            ..Secret::default()
        };
        if self.exists {
            self.api
                .patch(self.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&secret))
                .await
                .map_err(|source| Error::Kube { what: "updating the keys Secret", source })?;
        } else {
            // Created with the operator's field manager; later changes are server-side applies.
            let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
            self.api
                .create(&params, &secret)
                .await
                .map_err(|source| Error::Kube { what: "creating the keys Secret", source })?;
        }
        debug!(secret = self.name, "keys Secret written");
        Ok(())
    }
}

/// The Secret's data from ARM's keys: `primaryKey`, `secondaryKey` and `scoringUri`.
async fn read_keys(ctx: &Context, resolved: &Resolved, target: &Target, uri: ByteString) -> Result<BTreeMap<String, ByteString>, Error> {
    let (primary, secondary) = list_keys(ctx, resolved, target).await?;
    Ok(BTreeMap::from([
        ("scoringUri".to_string(), uri),
        ("primaryKey".to_string(), ByteString(primary.expose().as_bytes().to_vec())),
        ("secondaryKey".to_string(), ByteString(secondary.expose().as_bytes().to_vec())),
    ]))
}

/// POST `regenerateKeys` for one key (a long-running operation in ARM).
async fn regenerate(ctx: &Context, resolved: &Resolved, target: &Target, key: KeyType) -> Result<PostOutcome, Error> {
    let path = format!("{}/regenerateKeys", target.arm_id);
    let body = json!({ "keyType": key.as_str() });
    ctx.arm
        .post(&resolved.principal, &path, &ctx.config.api_version, Some(&body))
        .await
        .map_err(|source| Error::Arm { action: "regenerateKeys", arm_id: target.arm_id.clone(), source })
}

/// The controller owner of `secret` when it is not the endpoint with `uid`.
fn foreign_controller<'s>(secret: &'s Secret, uid: &str) -> Option<&'s OwnerReference> {
    secret.owner_references().iter().find(|o| o.controller == Some(true) && o.uid != uid)
}

/// Whether `then` is less than `period` before `now` (a time in the future counts as recent).
fn is_recent(then: Timestamp, now: Timestamp, period: Duration) -> bool {
    let period = SignedDuration::try_from(period).unwrap_or(SignedDuration::MAX);
    now.duration_since(then) < period
}

/// POST `listKeys`: the endpoint's primary and secondary key.
async fn list_keys(ctx: &Context, resolved: &Resolved, target: &Target) -> Result<(arm::Secret, arm::Secret), Error> {
    let path = format!("{}/listKeys", target.arm_id);
    let outcome = ctx
        .arm
        .post(&resolved.principal, &path, &ctx.config.api_version, None)
        .await
        .map_err(|source| Error::Arm { action: "listKeys", arm_id: target.arm_id.clone(), source })?;
    let body = match outcome {
        PostOutcome::Done(Some(body)) => body,
        PostOutcome::Done(None) | PostOutcome::Accepted(_) => Value::Null,
    };
    let key = |name: &str| body.get(name).and_then(Value::as_str).map(|s| arm::Secret::new(s.to_string()));
    match (key("primaryKey"), key("secondaryKey")) {
        (Some(p), Some(s)) => Ok((p, s)),
        _ => Err(Error::Arm {
            action: "listKeys",
            arm_id: target.arm_id.clone(),
            source: arm::Error::Decode {
                method: "POST".into(),
                url: path,
                detail: "listKeys answered without primaryKey and secondaryKey",
                source: None,
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_means_within_the_period() {
        let now = Timestamp::now();
        let period = Duration::from_secs(600);
        assert!(is_recent(now, now, period));
        assert!(!is_recent(now - SignedDuration::from_secs(601), now, period));
        assert!(is_recent(now + SignedDuration::from_secs(5), now, period));
    }
}
