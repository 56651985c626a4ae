//! Drift: does ARM's answer differ from the fields the user set?
//!
//! Only what the desired body holds is compared (it holds only what the user set), so fields ARM
//! fills in or defaults never cause a write. ARM treats resource ids, locations and enum values
//! case-insensitively, and so does this comparison for ids and locations.

use serde_json::Value;

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
    fn arrays_compare_by_position_and_length() {
        assert!(diff(&json!({"a": [1, 2]}), &json!({"a": [1, 2]})).is_empty());
        assert_eq!(diff(&json!({"a": [1, 2]}), &json!({"a": [1]})), vec!["/a"]);
    }
}
