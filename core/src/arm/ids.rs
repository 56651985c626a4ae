//! ARM resource ids for Microsoft.MachineLearningServices, and the role-assignment ids of
//! Microsoft.Authorization (deterministic names: UUIDv5).

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

/// The role-assignment provider path under a scope.
pub const ROLE_ASSIGNMENTS: &str = "providers/Microsoft.Authorization/roleAssignments";

/// `{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`.
pub fn role_assignment_id(scope: &str, name: &str) -> String {
    format!("{}/{ROLE_ASSIGNMENTS}/{name}", scope.trim_end_matches('/'))
}

/// `/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}` (built-in role
/// definitions are subscription-scoped resources), or the tenant form
/// `/providers/Microsoft.Authorization/roleDefinitions/{guid}` without a subscription.
pub fn role_definition_id(subscription: Option<&str>, guid: &str) -> String {
    match subscription {
        Some(sub) => format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}"),
        None => format!("/providers/Microsoft.Authorization/roleDefinitions/{guid}"),
    }
}

/// The trailing GUID of a role definition id (or the GUID itself), lowercased: ARM answers with the
/// tenant form of an id sent in the subscription form, so role ids are compared by this.
pub fn role_guid(role_definition_id: &str) -> String {
    role_definition_id.trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_ascii_lowercase()
}

/// The subscription segment of an ARM id, if it has one.
pub fn subscription_of(id: &str) -> Option<&str> {
    let mut segs = id.split('/').filter(|s| !s.is_empty());
    match (segs.next(), segs.next()) {
        (Some(s), Some(sub)) if s.eq_ignore_ascii_case("subscriptions") => Some(sub),
        _ => None,
    }
}

/// The namespace of the operator's role-assignment names: UUIDv5 of
/// `https://amloperator.io/roleAssignments` in the RFC 4122 URL namespace.
fn role_assignment_namespace() -> [u8; 16] {
    const URL_NAMESPACE: [u8; 16] = [
        0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
    ];
    uuid_v5_bytes(&URL_NAMESPACE, b"https://amloperator.io/roleAssignments")
}

/// The deterministic name of the assignment of `role_guid` to `principal_id` at `scope`: a UUIDv5
/// over `scope|principalId|roleDefinitionGuid`, each lowercased (ARM ids and GUIDs are
/// case-insensitive) and the scope without a trailing slash. The same grant always gets the same
/// name, so a restarted operator PUTs the same assignment instead of creating a second one.
pub fn role_assignment_name(scope: &str, principal_id: &str, role_guid: &str) -> String {
    let input = format!(
        "{}|{}|{}",
        scope.trim_end_matches('/').to_ascii_lowercase(),
        principal_id.to_ascii_lowercase(),
        role_guid.to_ascii_lowercase()
    );
    format_uuid(&uuid_v5_bytes(&role_assignment_namespace(), input.as_bytes()))
}

/// RFC 4122 UUID version 5: SHA-1 of namespace || name, truncated to 16 bytes, with the version
/// (5) and variant (10xx) bits set.
pub fn uuid_v5(namespace: &[u8; 16], name: &[u8]) -> String {
    format_uuid(&uuid_v5_bytes(namespace, name))
}

fn uuid_v5_bytes(namespace: &[u8; 16], name: &[u8]) -> [u8; 16] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(namespace);
    ctx.update(name);
    let digest = ctx.finish();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest.as_ref()[..16]);
    out[6] = (out[6] & 0x0f) | 0x50;
    out[8] = (out[8] & 0x3f) | 0x80;
    out
}

fn format_uuid(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_v5_matches_the_rfc_vectors() {
        // Python: uuid.uuid5(uuid.NAMESPACE_DNS, "python.org")
        let dns = [0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8];
        assert_eq!(uuid_v5(&dns, b"python.org"), "886313e1-3b8a-5372-9b90-0c9aee199e5d");
    }

    #[test]
    fn role_assignment_names_are_deterministic_and_case_insensitive() {
        let scope = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws";
        let a = role_assignment_name(scope, "AAAAAAAA-0000-0000-0000-000000000001", "f6c7c914-8db3-469d-8ca1-694a8f32e121");
        let b = role_assignment_name(&format!("{}/", scope.to_uppercase()), "aaaaaaaa-0000-0000-0000-000000000001", "F6C7C914-8DB3-469D-8CA1-694A8F32E121");
        assert_eq!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "5", "version 5: {a}");
        assert_ne!(a, role_assignment_name(scope, "aaaaaaaa-0000-0000-0000-000000000002", "f6c7c914-8db3-469d-8ca1-694a8f32e121"));
        assert_ne!(a, role_assignment_name(scope, "aaaaaaaa-0000-0000-0000-000000000001", "acdd72a7-3385-48ef-bd42-f606fba81ae7"));
    }

    #[test]
    fn role_guids_compare_across_id_forms() {
        assert_eq!(role_guid("/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/ABC"), "abc");
        assert_eq!(role_guid("/providers/Microsoft.Authorization/roleDefinitions/abc"), "abc");
        assert_eq!(role_guid("abc"), "abc");
        assert_eq!(subscription_of("/subscriptions/s1/resourceGroups/rg"), Some("s1"));
        assert_eq!(subscription_of("/providers/Microsoft.Management/managementGroups/mg"), None);
    }

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
