//! Drift: does ARM's answer differ from the fields the user set?
//!
//! Only what the desired body holds is compared (it holds only what the user set), so fields ARM
//! fills in or defaults never cause a write. ARM treats resource ids, locations and enum values
//! case-insensitively, and so does this comparison for ids and locations.
//!
//! Maps the spec owns whole (a kind's [`AmlKind::owned_maps`]: tags, environment variables, ...)
//! are compared both ways, but only when the desired body holds them: a key ARM holds there that
//! the spec's map does not is drift too, so removing a key from the manifest removes it in Azure.
//! A map the spec does not set stays unmanaged.

use super::AmlKind;
use serde_json::{Map, Value};

/// The JSON paths (e.g. `/properties/description`) where `actual` differs from `desired`.
pub fn diff(desired: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk("", desired, actual, &mut out);
    out
}

/// Like [`diff`], ignoring paths ARM never returns (secrets) and everything under them.
pub fn diff_except(desired: &Value, actual: &Value, write_only: &[&str]) -> Vec<String> {
    diff(desired, actual)
        .into_iter()
        .filter(|p| !write_only.iter().any(|w| p == w || p.starts_with(&format!("{w}/"))))
        .collect()
}

/// Like [`diff_except`], and for every map in `owned` (JSON pointers) that `desired` holds as an
/// object: the map's path when ARM's map holds a key the desired one does not (see [`extra_keys`]).
pub fn diff_owned(desired: &Value, actual: &Value, write_only: &[&str], owned: &[&str]) -> Vec<String> {
    let mut out = diff_except(desired, actual, write_only);
    for path in owned {
        let Some(want) = desired.pointer(path).and_then(Value::as_object) else {
            continue;
        };
        let Some(have) = lookup(actual, path).and_then(Value::as_object) else {
            continue;
        };
        if !extra_keys(want, have).is_empty() && !out.iter().any(|p| p == path) {
            out.push((*path).to_string());
        }
    }
    out
}

/// What the pipeline compares for kind `K`: [`diff_owned`] with the kind's write-only paths and
/// owned maps. The operator's owner tag ([`super::owner`]) is never drift: it is not the spec's
/// (a spec that names it has it replaced at write time).
pub fn drifted<K: AmlKind>(desired: &Value, actual: &Value) -> Vec<String> {
    let (want, have) = (super::owner::untagged::<K>(desired), super::owner::untagged::<K>(actual));
    diff_owned(want.as_ref().unwrap_or(desired), have.as_ref().unwrap_or(actual), K::write_only_paths(), K::owned_maps())
}

/// The keys of ARM's map `have` that the spec's map `want` does not hold. Keys compare exactly
/// (tag and variable names keep their case), except ARM ids (`/subscriptions/...`, e.g. user-assigned
/// identities), which ARM may answer in another case. Entries ARM marks as the service's own
/// (`category` other than `UserDefined`, as the required rules of a managed network are) are
/// never extra: the user cannot remove them.
pub fn extra_keys<'m>(want: &Map<String, Value>, have: &'m Map<String, Value>) -> Vec<&'m str> {
    have.iter()
        .filter(|(key, value)| {
            let held = want.contains_key(*key)
                || key.starts_with('/') && want.keys().any(|k| k.eq_ignore_ascii_case(key));
            let service_owned = value
                .get("category")
                .and_then(Value::as_str)
                .is_some_and(|c| !c.eq_ignore_ascii_case("UserDefined"));
            !held && !service_owned
        })
        .map(|(key, _)| key.as_str())
        .collect()
}

/// `pointer` in `v`, matching object keys case-insensitively when the exact key is absent.
fn lookup<'v>(v: &'v Value, pointer: &str) -> Option<&'v Value> {
    pointer.split('/').skip(1).try_fold(v, |node, key| {
        let map = node.as_object()?;
        map.get(key).or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
    })
}

fn walk(path: &str, desired: &Value, actual: &Value, out: &mut Vec<String>) {
    match (desired, actual) {
        (Value::Object(d), Value::Object(a)) => {
            for (key, dv) in d {
                let child = format!("{path}/{key}");
                let av = a.get(key).or_else(|| {
                    a.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
                });
                match av {
                    Some(av) => walk(&child, dv, av, out),
                    None if dv.is_null() => {}
                    None if is_empty(dv) => {}
                    None => out.push(child),
                }
            }
        }
        (Value::Array(d), Value::Array(a)) => {
            if d.len() != a.len() {
                out.push(path.to_string());
                return;
            }
            for (i, (dv, av)) in d.iter().zip(a).enumerate() {
                walk(&format!("{path}/{i}"), dv, av, out);
            }
        }
        (Value::String(d), Value::String(a)) => {
            if !same_string(path, d, a) {
                out.push(path.to_string());
            }
        }
        (Value::Number(d), Value::Number(a)) => {
            if d.as_f64() != a.as_f64() {
                out.push(path.to_string());
            }
        }
        (Value::Null, _) => {}
        (d, a) if d == a => {}
        _ => out.push(path.to_string()),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn same_string(path: &str, d: &str, a: &str) -> bool {
    if d == a {
        return true;
    }
    if path == "/location" || path == "/identity/type" {
        return normalize_location(d) == normalize_location(a);
    }
    // ARM ids and enum-like values come back in another case.
    d.starts_with("/subscriptions/") && d.eq_ignore_ascii_case(a) || is_enum_like(d) && d.eq_ignore_ascii_case(a)
}

fn is_enum_like(s: &str) -> bool {
    !s.is_empty() && s.len() <= 40 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == ',')
        && s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
}

/// `East US` and `eastus` are the same region (and `SystemAssigned, UserAssigned` the same identity type).
pub fn normalize_location(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect()
}

/// The JSON pointers of `drifted` that lie on or under one of `immutable`.
pub fn immutable_hits(drifted: &[String], immutable: &[&str]) -> Vec<String> {
    drifted
        .iter()
        .filter(|p| immutable.iter().any(|w| *p == w || p.starts_with(&format!("{w}/"))))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_fields_the_user_set_are_compared() {
        let desired = json!({"location": "eastus", "properties": {"description": "a"}});
        let actual = json!({"location": "East US", "properties": {"description": "a", "workspaceId": "x", "provisioningState": "Succeeded"}});
        assert!(diff(&desired, &actual).is_empty());
    }

    #[test]
    fn changed_and_missing_fields_are_reported_by_path() {
        let desired = json!({"tags": {"a": "1"}, "properties": {"description": "new", "hbiWorkspace": false}});
        let actual = json!({"tags": {"a": "2"}, "properties": {"description": "old"}});
        assert_eq!(diff(&desired, &actual), vec!["/properties/description", "/properties/hbiWorkspace", "/tags/a"]);
    }

    #[test]
    fn arm_ids_compare_case_insensitively_but_free_text_does_not() {
        let id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa";
        let desired = json!({"properties": {"storageAccount": id, "description": "Hello world"}});
        let actual = json!({"properties": {"storageAccount": id.to_lowercase(), "description": "hello world"}});
        assert_eq!(diff(&desired, &actual), vec!["/properties/description"]);
    }

    #[test]
    fn an_owned_map_reports_keys_arm_holds_that_the_spec_removed() {
        let owned = ["/tags", "/properties/environmentVariables"];
        let desired = json!({"tags": {"a": "1"}, "properties": {"environmentVariables": {"X": "1"}}});
        let actual = json!({"tags": {"a": "1", "b": "2"}, "properties": {"environmentVariables": {"X": "1", "Y": "2"}}});
        assert_eq!(diff_owned(&desired, &actual, &[], &owned), vec!["/tags", "/properties/environmentVariables"]);
        assert!(diff(&desired, &actual).is_empty(), "plain diff only looks at the spec's keys");
        assert!(diff_owned(&desired, &desired, &[], &owned).is_empty());
    }

    #[test]
    fn an_owned_map_the_spec_does_not_set_is_not_managed() {
        let desired = json!({"properties": {"description": "d"}});
        let actual = json!({"tags": {"added-by": "policy"}, "properties": {"description": "d"}});
        assert!(diff_owned(&desired, &actual, &[], &["/tags"]).is_empty());
        let cleared = json!({"tags": {}, "properties": {"description": "d"}});
        assert_eq!(diff_owned(&cleared, &actual, &[], &["/tags"]), vec!["/tags"], "tags: {{}} clears them");
    }

    #[test]
    fn owned_ids_compare_case_insensitively_and_service_entries_are_not_extra() {
        let id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u";
        let desired = json!({"identity": {"userAssignedIdentities": {id: {}}}});
        let actual = json!({"identity": {"userAssignedIdentities": {id.to_lowercase(): {"principalId": "p"}}}});
        assert!(diff_owned(&desired, &actual, &[], &["/identity/userAssignedIdentities"]).is_empty());
        let desired = json!({"properties": {"managedNetwork": {"outboundRules": {"mine": {"type": "FQDN"}}}}});
        let actual = json!({"properties": {"managedNetwork": {"outboundRules": {
            "mine": {"type": "FQDN", "category": "UserDefined"},
            "__SYS_ST_x": {"type": "PrivateEndpoint", "category": "Required"},
        }}}});
        assert!(diff_owned(&desired, &actual, &[], &["/properties/managedNetwork/outboundRules"]).is_empty());
        assert_eq!(extra_keys(&Map::new(), actual.pointer("/properties/managedNetwork/outboundRules").and_then(Value::as_object).unwrap()), vec!["mine"]);
    }

    #[test]
    fn tag_names_keep_their_case() {
        let desired = json!({"tags": {"Env": "prod"}});
        let actual = json!({"tags": {"env": "prod"}});
        assert_eq!(diff_owned(&desired, &actual, &[], &["/tags"]), vec!["/tags"]);
    }

    #[test]
    fn arrays_compare_by_position_and_length() {
        assert!(diff(&json!({"a": [1, 2]}), &json!({"a": [1, 2]})).is_empty());
        assert_eq!(diff(&json!({"a": [1, 2]}), &json!({"a": [1]})), vec!["/a"]);
    }
}
