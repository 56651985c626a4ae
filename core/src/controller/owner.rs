//! One Azure resource, one owner.
//!
//! Every write the operator makes to a resource of a kind with tags carries the owner tag
//! [`TAG`]` = <cluster>/<namespace>/<name>` (the writing object; `<cluster>` is
//! [`Config::cluster_name`]), in the kind's tag map ([`AmlKind::OWNER_TAG`]). Before anything is
//! written for an object — its own resource or a workspace's dependencies — the resource ARM
//! shows is checked: a tag naming another object (here or in another cluster) makes the object
//! Stalled ([`Error::OwnedByAnotherObject`]) with no write, and a delete leaves that resource
//! alone. A resource without the tag, or whose tag names an object of this cluster that no longer
//! exists (deleted with `deletionPolicy: Orphan`), is unowned: the object adopts it, and its next
//! write tags it. The tag is the operator's, not the spec's: it is added at write time and never
//! counts as drift, so a spec's `tags` keep meaning exactly the tags it sets.

use crate::controller::{AmlKind, Config, Context, Error};
use kube::api::Api;
use kube::ResourceExt;
use serde_json::{Map, Value};

/// The owner tag's name (ARM tag names may not hold `<>%&\?/`).
pub const TAG: &str = "amloperator.io-owner";
/// `--cluster-name` when unset. Clusters whose operators share a subscription must each set
/// their own (README, "One resource, one owner").
pub const DEFAULT_CLUSTER_NAME: &str = "default";
/// The cluster name of `plan` and `apply`: the same in every CLI run, so one run's resources are
/// the next run's own.
pub const CLI_CLUSTER_NAME: &str = "local";

/// Who owns a resource ARM shows, as far as this object is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The tag names this object.
    Ours,
    /// No tag, or a tag naming an object of this cluster that is gone: this object may take it.
    Unowned,
    /// The tag names another object: hands off.
    Other(String),
}

/// The owner tag's value for `obj`: `<cluster>/<namespace>/<name>`.
pub fn value_for<K: AmlKind>(obj: &K, config: &Config) -> String {
    format!("{}/{}/{}", config.cluster_name, obj.namespace().unwrap_or_default(), obj.name_any())
}

/// The key of `map` that is `key`, exactly or else ASCII case-insensitively (ARM may answer
/// `Tags`; tag names are case-insensitive in ARM).
fn key_in<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a String> {
    map.get_key_value(key).map(|(k, _)| k).or_else(|| map.keys().find(|k| k.eq_ignore_ascii_case(key)))
}

/// The kind's tag map in an ARM body, its keys matched by [`key_in`].
fn tag_map<K: AmlKind>(body: &Value) -> Option<&Map<String, Value>> {
    let pointer = K::OWNER_TAG?;
    pointer
        .split('/')
        .skip(1)
        .try_fold(body, |node, key| {
            let map = node.as_object()?;
            map.get(key_in(map, key)?)
        })?
        .as_object()
}

/// The owner tag ARM holds on `actual`.
pub fn tag_of<K: AmlKind>(actual: &Value) -> Option<&str> {
    let tags = tag_map::<K>(actual)?;
    tags.get(key_in(tags, TAG)?)?.as_str()
}

/// Whether a write must (re)tag `actual` for `obj`: the kind has tags and ARM's tag is not this
/// object's.
pub fn needs_tag<K: AmlKind>(obj: &K, config: &Config, actual: &Value) -> bool {
    K::OWNER_TAG.is_some() && tag_of::<K>(actual) != Some(value_for(obj, config).as_str())
}

/// Who owns `actual` for `obj`. A tag naming an object of this cluster is checked against the API
/// server: when no object of the kind by that namespace and name exists, or it now manages
/// another ARM id, nobody owns the resource any more.
pub async fn claim<K: AmlKind>(obj: &K, ctx: &Context, arm_id: &str, actual: &Value) -> Result<Claim, Error> {
    let Some(owner) = tag_of::<K>(actual) else { return Ok(Claim::Unowned) };
    if owner == value_for(obj, &ctx.config) {
        return Ok(Claim::Ours);
    }
    let here = owner
        .strip_prefix(&format!("{}/", ctx.config.cluster_name))
        .and_then(|rest| rest.split_once('/'))
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'));
    let Some((ns, name)) = here else { return Ok(Claim::Other(owner.to_string())) };
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let found = api.get_opt(name).await.map_err(|source| Error::Kube { what: "reading the object the owner tag names", source })?;
    let still_claims = found.is_some_and(|o| {
        o.common_status().and_then(|s| s.arm_id.as_deref()).is_none_or(|id| id.eq_ignore_ascii_case(arm_id))
    });
    Ok(if still_claims { Claim::Other(owner.to_string()) } else { Claim::Unowned })
}

/// Puts the owner tag into the body about to be written. When the body holds the kind's tag map
/// (the spec sets `tags`), the tag joins it; when not, the map written is ARM's current one (so
/// tags added in Azure stay) with the tag, minus any other owner's.
pub fn tag_body<K: AmlKind>(obj: &K, config: &Config, body: &mut Value, actual: Option<&Value>) {
    let Some(pointer) = K::OWNER_TAG else { return };
    let value = Value::String(value_for(obj, config));
    let mut tags = match body.pointer(pointer).and_then(Value::as_object) {
        Some(spec_tags) => spec_tags.clone(),
        None => actual.and_then(tag_map::<K>).cloned().unwrap_or_default(),
    };
    tags.retain(|k, _| !k.eq_ignore_ascii_case(TAG));
    tags.insert(TAG.to_string(), value);
    crate::controller::set_pointer(body, pointer, Value::Object(tags));
}

/// `actual` without the owner tag, for drift: the tag is the operator's, not the spec's.
pub fn untagged<K: AmlKind>(actual: &Value) -> Option<Value> {
    let pointer = K::OWNER_TAG?;
    tag_of::<K>(actual)?;
    let mut copy = actual.clone();
    let mut node = &mut copy;
    for key in pointer.split('/').skip(1) {
        let map = node.as_object_mut()?;
        let found = key_in(map, key)?.clone();
        node = map.get_mut(&found)?;
    }
    node.as_object_mut()?.retain(|k, _| !k.eq_ignore_ascii_case(TAG));
    Some(copy)
}

/// The message of [`Error::OwnedByAnotherObject`]'s owner: `object ns/name in this cluster` or
/// `object ns/name of cluster c`.
pub fn describe(owner: &str, config: &Config) -> String {
    match owner.strip_prefix(&format!("{}/", config.cluster_name)) {
        Some(rest) => format!("object {rest} in this cluster"),
        None => match owner.split_once('/') {
            Some((cluster, rest)) => format!("object {rest} of cluster {cluster}"),
            None => format!("{owner:?}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::AmlWorkspace;
    use serde_json::json;

    fn ws(ns: &str, name: &str) -> AmlWorkspace {
        serde_json::from_value(json!({
            "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"resourceGroup": "rg", "location": "eastus"}
        }))
        .unwrap()
    }

    #[test]
    fn the_tag_joins_the_spec_tags_or_keeps_the_ones_in_azure() {
        let config = Config { cluster_name: "c1".into(), ..Config::default() };
        let obj = ws("a", "w");
        let mut body = json!({"tags": {"team": "a"}});
        tag_body(&obj, &config, &mut body, Some(&json!({"tags": {"added": "x", TAG: "c1/b/w"}})));
        assert_eq!(body["tags"], json!({"team": "a", TAG: "c1/a/w"}));
        let mut body = json!({"properties": {}});
        tag_body(&obj, &config, &mut body, Some(&json!({"tags": {"added": "x", TAG: "c1/b/w"}})));
        assert_eq!(body["tags"], json!({"added": "x", TAG: "c1/a/w"}));
        let mut body = json!({"properties": {}});
        tag_body(&obj, &config, &mut body, None);
        assert_eq!(body["tags"], json!({TAG: "c1/a/w"}));
    }

    #[test]
    fn the_tag_is_no_drift_and_is_read_case_insensitively() {
        let actual = json!({"Tags": {"Amloperator.io-Owner": "c1/a/w", "team": "a"}});
        assert_eq!(tag_of::<AmlWorkspace>(&actual), Some("c1/a/w"));
        assert_eq!(untagged::<AmlWorkspace>(&actual), Some(json!({"Tags": {"team": "a"}})));
        assert_eq!(untagged::<AmlWorkspace>(&json!({"tags": {"team": "a"}})), None);
        let config = Config { cluster_name: "c1".into(), ..Config::default() };
        assert!(!needs_tag(&ws("a", "w"), &config, &actual));
        assert!(needs_tag(&ws("b", "w"), &config, &actual));
        assert_eq!(describe("c1/a/w", &config), "object a/w in this cluster");
        assert_eq!(describe("c2/a/w", &config), "object a/w of cluster c2");
    }
}
