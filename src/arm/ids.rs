//! ARM resource ids for Microsoft.MachineLearningServices.

/// The resource provider namespace.
pub const PROVIDER: &str = "Microsoft.MachineLearningServices";
/// Child type segment of computes.
pub const COMPUTES: &str = "computes";
/// Child type segment of online endpoints.
pub const ONLINE_ENDPOINTS: &str = "onlineEndpoints";
/// Child type segment of online deployments (under an online endpoint).
pub const DEPLOYMENTS: &str = "deployments";

/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{name}`.
pub fn workspace_id(subscription_id: &str, resource_group: &str, name: &str) -> String {
    format!(
        "/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/{PROVIDER}/workspaces/{name}"
    )
}

/// `{parent_id}/{child_type}/{name}`, e.g. `child_id(ws, COMPUTES, "cpu")`.
pub fn child_id(parent_id: &str, child_type: &str, name: &str) -> String {
    format!("{}/{child_type}/{name}", parent_id.trim_end_matches('/'))
}

/// Splits a workspace id into (subscription, resource group, workspace name). Segment names
/// (`subscriptions`, `resourceGroups`, `providers`, the namespace, `workspaces`) match
/// case-insensitively; values keep their case. Anything else (a child id, a missing part) is `None`.
pub fn parse_workspace_id(id: &str) -> Option<(String, String, String)> {
    let trimmed = id.trim().strip_prefix('/')?;
    let parts: Vec<&str> = trimmed
        .strip_suffix('/')
        .unwrap_or(trimmed)
        .split('/')
        .collect();
    let [subs, sub, rgs, rg, providers, namespace, workspaces, name] = parts.as_slice() else {
        return None;
    };
    let fixed = [
        (subs, "subscriptions"),
        (rgs, "resourceGroups"),
        (providers, "providers"),
        (namespace, PROVIDER),
        (workspaces, "workspaces"),
    ];
    if !fixed
        .iter()
        .all(|(seg, want)| seg.eq_ignore_ascii_case(want))
    {
        return None;
    }
    if [sub, rg, name].iter().any(|v| v.is_empty()) {
        return None;
    }
    Some((sub.to_string(), rg.to_string(), name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses_ids() {
        let ws = workspace_id("sub-1", "rg-1", "ws-1");
        assert_eq!(
            ws,
            "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.MachineLearningServices/workspaces/ws-1"
        );
        assert_eq!(
            parse_workspace_id(&ws),
            Some(("sub-1".into(), "rg-1".into(), "ws-1".into()))
        );
        let ep = child_id(&ws, ONLINE_ENDPOINTS, "ep");
        assert_eq!(
            child_id(&ep, DEPLOYMENTS, "blue"),
            format!("{ws}/onlineEndpoints/ep/deployments/blue")
        );
        assert_eq!(
            child_id(&format!("{ws}/"), COMPUTES, "c"),
            format!("{ws}/computes/c")
        );
    }

    #[test]
    fn parse_is_case_insensitive_on_segment_names_only() {
        let id = "/SUBSCRIPTIONS/Sub/resourcegroups/RG/Providers/microsoft.machinelearningservices/Workspaces/WS/";
        assert_eq!(
            parse_workspace_id(id),
            Some(("Sub".into(), "RG".into(), "WS".into()))
        );
    }

    #[test]
    fn parse_rejects_other_ids() {
        let ws = workspace_id("s", "r", "w");
        assert_eq!(parse_workspace_id(&child_id(&ws, COMPUTES, "c")), None);
        assert_eq!(
            parse_workspace_id("/subscriptions/s/resourceGroups/r"),
            None
        );
        assert_eq!(
            parse_workspace_id(
                "subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w"
            ),
            None
        );
        assert_eq!(
            parse_workspace_id(
                "/subscriptions//resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w"
            ),
            None
        );
        assert_eq!(
            parse_workspace_id(
                "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/workspaces/w"
            ),
            None
        );
    }
}
