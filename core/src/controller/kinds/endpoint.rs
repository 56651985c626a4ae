//! AmlOnlineEndpoint on the pipeline: ARM location, body and outputs, plus two refinements:
//!
//! - **Traffic to deployments that exist.** ARM refuses (400) an endpoint whose `traffic` or
//!   `mirrorTraffic` names a deployment that does not exist or has not succeeded. [`refine`] sends
//!   only the routing that can be applied now and reports `WaitingForDeployments` until the rest
//!   can; it costs nothing once ARM already routes as the spec says.
//! - **The keys Secret.** After ARM matches the spec, `keysSecret` gets the scoring URI and, for
//!   `authMode: Key`, the keys from `listKeys`; rotation on request. See [`super::endpoint_keys`].
//!
//! [`refine`]: AmlKind::refine

use crate::controller::{child_target, workspace_parent};
use crate::controller::{AmlKind, BoxFuture, Context, Error, ParentKind, ParentRef, Refined, Resolved, Target};
use crate::arm::ids;
use crate::crd::{AmlOnlineEndpoint, CommonSpec, CommonStatus};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Ready reason while `traffic` or `mirrorTraffic` names deployments that cannot be routed yet.
pub use crate::controller::error::reason::WAITING_FOR_DEPLOYMENTS;
pub use super::endpoint_keys::{KEYS_CHECKED_AT, KEYS_DIGEST, KEYS_ROTATED, KEYS_ROTATION, KEYS_ROTATION_OPERATION, ROTATE_KEYS};

/// The routing maps of an endpoint body.
const ROUTING: [&str; 2] = ["traffic", "mirrorTraffic"];

impl AmlKind for AmlOnlineEndpoint {
    const ARM_TYPE: &'static str = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints";
    const PARENT_KINDS: &'static [ParentKind] = &[ParentKind::Workspace];

    fn watched_children() -> Option<(kube::api::ApiResource, &'static str)> {
        Some((kube::api::ApiResource::erase::<crate::crd::AmlOnlineDeployment>(&()), "/spec/endpointRef/name"))
    }

    fn common_spec(&self) -> &CommonSpec {
        &self.spec.common
    }

    fn common_status(&self) -> Option<&CommonStatus> {
        self.status.as_ref().map(|s| &s.common)
    }

    fn parent(&self) -> Option<ParentRef<'_>> {
        workspace_parent(self.spec.workspace_ref.as_ref().map(|r| r.name.as_str()), self.spec.workspace_id.as_deref())
    }

    fn target(&self, resolved: &Resolved) -> Result<Target, Error> {
        child_target(self, resolved, ids::ONLINE_ENDPOINTS, self.spec.location.as_deref(), "set spec.workspaceRef or spec.workspaceId")
    }

    fn desired(&self, target: &Target) -> Result<Value, Error> {
        let spec = &self.spec;
        if let Some(problem) = crate::crd::endpoint::routing_problem(spec) {
            return Err(Error::InvalidSpec(problem));
        }
        let mut props = Map::new();
        props.insert("authMode".into(), json!(spec.auth_mode));
        if let Some(d) = &spec.description {
            props.insert("description".into(), json!(d));
        }
        if let Some(t) = &spec.traffic {
            props.insert("traffic".into(), json!(t));
        }
        if let Some(t) = &spec.mirror_traffic {
            props.insert("mirrorTraffic".into(), json!(t));
        }
        if let Some(p) = &spec.public_network_access {
            props.insert("publicNetworkAccess".into(), json!(p));
        }
        let mut body = json!({ "location": target.location, "properties": props });
        if let Some(tags) = &spec.tags {
            body["tags"] = json!(tags);
        }
        if let Some(identity) = &spec.identity {
            body["identity"] = identity.to_arm();
        }
        Ok(body)
    }

    fn immutable_paths() -> &'static [&'static str] {
        &["/location", "/properties/authMode"]
    }

    /// Not `traffic`: a deployment the spec stops routing to gets an explicit 0 there (see
    /// [`plan_routing`]), which ARM keeps. `mirrorTraffic` entries are removed outright.
    fn owned_maps() -> &'static [&'static str] {
        &["/tags", "/identity/userAssignedIdentities", "/properties/mirrorTraffic"]
    }

    fn outputs(arm: &Value) -> Map<String, Value> {
        let mut out = Map::new();
        for key in ["scoringUri", "swaggerUri"] {
            if let Some(v) = arm.pointer(&format!("/properties/{key}")).filter(|v| !v.is_null()) {
                out.insert(key.into(), v.clone());
            }
        }
        out
    }

    fn refine<'a>(
        &'a self,
        ctx: &'a Context,
        resolved: &'a Resolved,
        target: &'a Target,
        desired: Value,
        actual: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<Refined, Error>> {
        Box::pin(async move {
            // Nothing to decide while ARM is busy (the pipeline only polls then), and nothing to
            // look up when ARM already routes as the spec says.
            let busy = actual
                .and_then(|a| a.pointer("/properties/provisioningState"))
                .and_then(Value::as_str)
                .is_some_and(|s| !matches!(s, "Succeeded" | "Failed" | "Canceled"));
            if busy || routing_applied(&desired, actual) {
                return Ok(Refined { body: desired, waiting: None });
            }
            let mut states = BTreeMap::new();
            for name in routed_names(&desired, actual) {
                let id = ids::child_id(&target.arm_id, ids::DEPLOYMENTS, &name);
                let found = ctx
                    .arm
                    .get(&resolved.principal, &id, &ctx.config.api_version)
                    .await
                    .map_err(|source| Error::Arm { action: "read", arm_id: id.clone(), source })?;
                let state = found.map(|d| {
                    d.pointer("/properties/provisioningState").and_then(Value::as_str).unwrap_or("Succeeded").to_string()
                });
                states.insert(name, state);
            }
            Ok(plan_routing(desired, actual, &states))
        })
    }

    fn after_converged<'a>(
        &'a self,
        ctx: &'a Context,
        resolved: &'a Resolved,
        target: &'a Target,
        actual: &'a Value,
    ) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        Box::pin(async move {
            let Some(keys_secret) = &self.spec.keys_secret else {
                return Ok(None);
            };
            super::endpoint_keys::sync_keys_secret(self, &keys_secret.name, ctx, resolved, target, actual).await
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Traffic

fn routing<'v>(body: &'v Value, field: &str) -> Option<&'v Map<String, Value>> {
    body.pointer(&format!("/properties/{field}")).and_then(Value::as_object)
}

/// The entry for deployment `name` (ARM compares deployment names case-insensitively).
fn entry<'m>(map: &'m Map<String, Value>, name: &str) -> Option<&'m Value> {
    map.get(name).or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

fn percent(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// Whether ARM already routes exactly as `desired` says: every desired entry has the same
/// percentage in ARM, and every other deployment ARM routes to gets 0.
pub fn routing_applied(desired: &Value, actual: Option<&Value>) -> bool {
    ROUTING.iter().all(|field| {
        let Some(want) = routing(desired, field) else {
            return true;
        };
        let empty = Map::new();
        let have = actual.and_then(|a| routing(a, field)).unwrap_or(&empty);
        want.iter().all(|(k, v)| entry(have, k).is_some_and(|h| percent(h) == percent(v)))
            && have.iter().all(|(k, v)| entry(want, k).is_some() || percent(v) == 0)
    })
}

/// Lowercased names of every deployment the desired or the current routing mentions.
fn routed_names(desired: &Value, actual: Option<&Value>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for body in std::iter::once(desired).chain(actual) {
        for field in ROUTING {
            if let Some(map) = routing(body, field) {
                names.extend(map.keys().map(|k| k.to_ascii_lowercase()));
            }
        }
    }
    names
}

/// Decides the routing to send, given each mentioned deployment's provisioning state in ARM
/// (`None`: it does not exist; keys are lowercased names). Pure.
///
/// - Every deployment the spec routes to has succeeded: send the spec's routing, with 0 in
///   `traffic` for deployments ARM routes to that the spec no longer names (so the change is seen
///   as drift). A mirror entry the spec no longer names is simply left out: `mirrorTraffic` is an
///   owned map ([`AmlKind::owned_maps`]), so drift sees the removal and the PUT drops the entry.
/// - Otherwise send what can be applied now (on create `traffic: {}` and no mirror traffic; on
///   update ARM's current routing, minus deployments that can no longer be routed) and wait.
pub fn plan_routing(mut desired: Value, actual: Option<&Value>, states: &BTreeMap<String, Option<String>>) -> Refined {
    let state = |name: &str| states.get(&name.to_ascii_lowercase()).cloned().flatten();
    let mut not_ready: Vec<String> = Vec::new();
    for field in ROUTING {
        for name in routing(&desired, field).into_iter().flat_map(|m| m.keys()) {
            let ready = state(name).as_deref() == Some("Succeeded");
            if !ready && !not_ready.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                not_ready.push(name.clone());
            }
        }
    }
    // ARM accepts a deployment it already routes to unless it is failed or going away.
    let keeps_routing = |name: &str| matches!(state(name).as_deref(), Some(s) if s != "Failed" && s != "Deleting");
    let Some(props) = desired.get_mut("properties").and_then(Value::as_object_mut) else {
        return Refined { body: desired, waiting: None };
    };
    if not_ready.is_empty() {
        let have = actual.and_then(|a| routing(a, "traffic"));
        if let (Some(have), Some(want)) = (have, props.get_mut("traffic").and_then(Value::as_object_mut)) {
            for (name, v) in have {
                if entry(want, name).is_none() && percent(v) != 0 && keeps_routing(name) {
                    want.insert(name.clone(), json!(0));
                }
            }
        }
        return Refined { body: desired, waiting: None };
    }
    match actual {
        None => {
            props.insert("traffic".into(), json!({}));
            props.remove("mirrorTraffic");
        }
        Some(actual) => {
            for field in ROUTING {
                let kept: Map<String, Value> = routing(actual, field)
                    .map(|m| m.iter().filter(|(k, _)| keeps_routing(k)).map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                props.insert(field.into(), Value::Object(kept));
            }
        }
    }
    not_ready.sort();
    let message = format!("traffic names deployments that are not ready yet: {}", not_ready.join(", "));
    Refined { body: desired, waiting: Some((WAITING_FOR_DEPLOYMENTS.to_string(), message)) }
}


#[cfg(test)]
mod tests {
    use super::*;

    fn states(list: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        list.iter().map(|(n, s)| (n.to_string(), s.map(str::to_string))).collect()
    }

    fn body(traffic: Value) -> Value {
        json!({"location": "eastus", "properties": {"authMode": "Key", "traffic": traffic}})
    }

    #[test]
    fn routing_is_applied_when_arm_has_the_same_percentages() {
        let desired = body(json!({"blue": 100}));
        assert!(routing_applied(&desired, Some(&body(json!({"Blue": 100, "green": 0})))));
        assert!(!routing_applied(&desired, Some(&body(json!({"blue": 90, "green": 10})))));
        assert!(!routing_applied(&desired, None));
        assert!(routing_applied(&body(json!({})), None));
        assert!(!routing_applied(&body(json!({})), Some(&body(json!({"blue": 100})))), "clearing is a change");
        let unset = json!({"location": "eastus", "properties": {"authMode": "Key"}});
        assert!(routing_applied(&unset, Some(&body(json!({"blue": 100})))), "an unset map is not managed");
    }

    #[test]
    fn a_missing_deployment_sends_empty_traffic_on_create_and_waits() {
        let mut desired = body(json!({"blue": 100}));
        desired["properties"]["mirrorTraffic"] = json!({"green": 10});
        let r = plan_routing(desired, None, &states(&[("blue", None), ("green", Some("Succeeded"))]));
        assert_eq!(r.body["properties"]["traffic"], json!({}));
        assert!(r.body["properties"].get("mirrorTraffic").is_none());
        let (reason, message) = r.waiting.expect("waits");
        assert_eq!(reason, "WaitingForDeployments");
        assert_eq!(message, "traffic names deployments that are not ready yet: blue");
    }

    #[test]
    fn on_update_the_current_routing_is_kept_until_all_are_ready() {
        let desired = body(json!({"blue": 50, "green": 50}));
        let actual = body(json!({"blue": 100, "old": 0}));
        let r = plan_routing(desired, Some(&actual), &states(&[("blue", Some("Succeeded")), ("green", Some("Creating")), ("old", None)]));
        assert_eq!(r.body["properties"]["traffic"], json!({"blue": 100}));
        assert!(r.waiting.unwrap().1.ends_with(": green"));
    }

    #[test]
    fn once_all_succeeded_the_full_split_is_sent_with_zero_for_dropped_ones() {
        let desired = body(json!({"green": 100}));
        let actual = body(json!({"blue": 100}));
        let r = plan_routing(desired, Some(&actual), &states(&[("blue", Some("Succeeded")), ("green", Some("Succeeded"))]));
        assert!(r.waiting.is_none());
        assert_eq!(r.body["properties"]["traffic"], json!({"green": 100, "blue": 0}));
    }

    #[test]
    fn a_mirror_entry_the_spec_dropped_is_left_out_not_zeroed() {
        let mut desired = body(json!({"blue": 100}));
        desired["properties"]["mirrorTraffic"] = json!({});
        let mut actual = body(json!({"blue": 100}));
        actual["properties"]["mirrorTraffic"] = json!({"green": 10});
        let r = plan_routing(desired, Some(&actual), &states(&[("blue", Some("Succeeded")), ("green", Some("Succeeded"))]));
        assert!(r.waiting.is_none());
        assert_eq!(r.body["properties"]["mirrorTraffic"], json!({}));
        assert_eq!(
            crate::controller::drift::drifted::<AmlOnlineEndpoint>(&r.body, &actual),
            vec!["/properties/mirrorTraffic"],
            "the owned map carries the removal"
        );
    }
}
