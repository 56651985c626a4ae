//! Every path the emulator serves: the parse of a request path into a [`Route`] and the dispatch
//! of a route and method to its handler (`ml`, `providers`, `authz`, `operations`; the token
//! endpoint and Entra's discovery documents are answered by `token`, from `lib.rs`).
//!
//! Only `lib.rs` imports this module; the handlers import what they share from `call`, `model`,
//! `state`, `reply` and `util`.

use super::call::{ArmCall, unknown_type};
use super::model::{Address, Kind, ResId};
use super::reply::Reply;
use super::token::Discovery;

/// What a request path addresses.
#[derive(Debug)]
pub(crate) enum Route {
    /// `/{tenant}/oauth2/v2.0/token`.
    Token { tenant: String },
    /// Entra's discovery documents, which MSAL-based clients read before asking for a token.
    Discovery(Discovery),
    /// A resource, optionally with a POST action after it (`listKeys`).
    Resource { id: ResId, action: Option<String> },
    /// `POST /subscriptions/{sub}/providers/{provider}/checkNameAvailability` (storage, key vault).
    CheckName { provider: String },
    /// `GET /subscriptions/{sub}/providers/Microsoft.KeyVault/locations/{location}/deletedVaults/{name}`.
    DeletedVault { sub: String, name: String },
    /// A list of resources of `kind` under `parent` (or in the resource group).
    Collection {
        sub: String,
        rg: String,
        parent: Option<ResId>,
        kind: Kind,
    },
    /// Azure-AsyncOperation status resource.
    OperationStatus { sub: String, op_id: String },
    /// Location (operation result) URL.
    OperationResult { sub: String, op_id: String },
    /// Role assignments at `scope` (`{scope}/providers/Microsoft.Authorization/roleAssignments`):
    /// the list when `name` is `None`, else one assignment.
    RoleAssignments { scope: String, name: Option<String> },
    /// A path under the provider naming a type the emulator does not know.
    UnknownType { type_path: String },
    /// Anything else.
    NotFound,
}

impl Route {
    /// Parses a request path (case-insensitive keywords, names kept as sent).
    pub(crate) fn parse(path: &str) -> Route {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let eq = |i: usize, word: &str| segs.get(i).is_some_and(|s| s.eq_ignore_ascii_case(word));

        if segs.len() == 4 && eq(1, "oauth2") && eq(2, "v2.0") && eq(3, "token") {
            return Route::Token {
                tenant: segs[0].to_owned(),
            };
        }
        if let Some(d) = discovery(&segs) {
            return Route::Discovery(d);
        }
        match role_assignments(&segs) {
            Some(Ok((scope, name))) => return Route::RoleAssignments { scope, name },
            Some(Err(())) => return Route::NotFound,
            None => {}
        }
        if !eq(0, "subscriptions") || segs.len() < 3 {
            return Route::NotFound;
        }
        let sub = segs[1].to_owned();
        if eq(2, "providers") && eq(4, "locations") && segs.len() == 8 {
            let op_id = segs[7].to_ascii_lowercase();
            if eq(6, "operations") || eq(6, "operationsStatus") {
                return Route::OperationStatus { sub, op_id };
            }
            if eq(6, "operationResults") {
                return Route::OperationResult { sub, op_id };
            }
            if eq(3, "Microsoft.KeyVault") && eq(6, "deletedVaults") {
                return Route::DeletedVault { sub, name: segs[7].to_owned() };
            }
            return Route::NotFound;
        }
        if eq(2, "providers") && segs.len() == 5 && eq(4, "checkNameAvailability") {
            return Route::CheckName { provider: segs[3].to_owned() };
        }
        match Address::parse(path) {
            Address::Resource { id, action } => Route::Resource { id, action },
            Address::Collection { sub, rg, parent, kind } => Route::Collection { sub, rg, parent, kind },
            Address::UnknownType { type_path } => Route::UnknownType { type_path },
            Address::NotFound => Route::NotFound,
        }
    }
}

/// The Entra discovery document a path names, if any.
fn discovery(segs: &[&str]) -> Option<Discovery> {
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let words: Vec<&str> = lower.iter().map(String::as_str).collect();
    match words.as_slice() {
        [_, "v2.0", ".well-known", "openid-configuration"] => {
            Some(Discovery::OpenIdConfiguration { tenant: segs[0].to_owned(), v2: true })
        }
        [_, ".well-known", "openid-configuration"] => {
            Some(Discovery::OpenIdConfiguration { tenant: segs[0].to_owned(), v2: false })
        }
        [_, "discovery", "instance"] => Some(Discovery::Instance),
        [_, "discovery", "v2.0", "keys"] | [_, "discovery", "keys"] => Some(Discovery::Keys),
        _ => None,
    }
}

/// Splits a path into (scope, name) when it addresses role assignments: `Some((scope, None))` for
/// the collection, `Some((scope, Some(name)))` for one assignment.
fn role_assignments(segs: &[&str]) -> Option<Result<(String, Option<String>), ()>> {
    let at = segs.windows(3).position(|w| {
        w[0].eq_ignore_ascii_case("providers")
            && w[1].eq_ignore_ascii_case("Microsoft.Authorization")
            && w[2].eq_ignore_ascii_case("roleAssignments")
    })?;
    let scope = format!("/{}", segs[..at].join("/"));
    Some(match &segs[at + 3..] {
        [] => Ok((scope, None)),
        [name] => Ok((scope, Some((*name).to_owned()))),
        _ => Err(()),
    })
}

/// Dispatches an ARM route (not the token endpoint) to its handler.
pub(crate) fn handle(call: &mut ArmCall<'_>, route: Route, method: &str, body: &[u8]) -> Reply {
    match (route, method) {
        // A workspace's assets: synchronous, their own rules.
        (Route::Resource { id, action: None }, "PUT") if id.kind().is_asset() => call.put_asset(&id, body),
        (Route::Resource { id, action: None }, "DELETE") if id.kind().is_asset() => call.delete_asset(&id),
        (Route::Resource { id, action: Some(action) }, "POST") if id.kind().is_asset() => {
            call.asset_action(&id, &action)
        }
        (Route::Resource { id, action: None }, "PATCH") if id.kind().is_asset() => Reply::arm_error(
            405,
            "MethodNotAllowed",
            "The HTTP method 'PATCH' is not supported for this resource.",
        ),
        (Route::Resource { id, action: None }, "GET") => call.get(&id),
        (Route::Resource { id, action: None }, "PUT") => call.put(&id, body),
        (Route::Resource { id, action: None }, "PATCH") => call.patch(&id, body),
        (Route::Resource { id, action: None }, "DELETE") => call.delete(&id),
        (
            Route::Resource {
                id,
                action: Some(action),
            },
            "POST",
        ) => call.action(&id, &action, body),
        (
            Route::Collection {
                sub,
                rg,
                parent,
                kind,
            },
            "GET",
        ) => call.list(&sub, &rg, parent.as_ref(), kind),
        (Route::RoleAssignments { scope, name }, method) => {
            call.role_assignments(&scope, name.as_deref(), method, body)
        }
        (Route::CheckName { provider }, "POST") => call.check_name(&provider, body),
        (Route::DeletedVault { sub, name }, "GET") => call.deleted_vault(&sub, &name),
        (Route::OperationStatus { sub, op_id }, "GET") => call.operation_status(&sub, &op_id),
        (Route::OperationResult { sub, op_id }, "GET") => call.operation_result(&sub, &op_id),
        (Route::UnknownType { type_path, .. }, _) => {
            unknown_type(&type_path, &call.api_version)
        }
        (Route::NotFound | Route::Token { .. }, _) => Reply::arm_error(
            404,
            "InvalidResourceType",
            "The requested path does not name a resource type this emulator serves.",
        ),
        (_, other) => Reply::arm_error(
            405,
            "MethodNotAllowed",
            format!("The HTTP method '{other}' is not supported for this resource."),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_routes() {
        let p = "/subscriptions/s/resourceGroups/RG/providers/microsoft.machinelearningservices/Workspaces/ws/onlineendpoints/Ep/deployments/blue";
        let Route::Resource { id, action: None } = Route::parse(p) else {
            panic!("not a resource")
        };
        assert_eq!(id.kind(), Kind::OnlineDeployment);
        assert_eq!(
            id.canonical(),
            "/subscriptions/s/resourceGroups/RG/providers/Microsoft.MachineLearningServices/workspaces/ws/onlineEndpoints/Ep/deployments/blue"
        );
        assert_eq!(id.parent().map(|p| p.kind()), Some(Kind::OnlineEndpoint));

        let p = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws/onlineEndpoints/ep/listKeys";
        assert!(
            matches!(Route::parse(p), Route::Resource { action: Some(a), .. } if a == "listKeys")
        );
        let p = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws/computes";
        assert!(matches!(
            Route::parse(p),
            Route::Collection {
                kind: Kind::Compute,
                parent: Some(_),
                ..
            }
        ));
        let p = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws/jobs/j";
        assert!(matches!(Route::parse(p), Route::UnknownType { .. }));
        let p = "/subscriptions/s/providers/Microsoft.MachineLearningServices/locations/eastus/operationResults/ABC";
        assert!(matches!(Route::parse(p), Route::OperationResult { op_id, .. } if op_id == "abc"));
        assert!(
            matches!(Route::parse("/tenant/oauth2/v2.0/token"), Route::Token { tenant } if tenant == "tenant")
        );
        assert!(matches!(Route::parse("/"), Route::NotFound));

        // A workspace's dependencies: the same segment under another namespace is another type.
        let p = "/subscriptions/s/resourcegroups/rg/providers/microsoft.operationalinsights/workspaces/law";
        let Route::Resource { id, action: None } = Route::parse(p) else {
            panic!("not a resource")
        };
        assert_eq!(id.kind(), Kind::LogAnalytics);
        assert_eq!(
            id.canonical(),
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.OperationalInsights/workspaces/law"
        );
        let p = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa1";
        assert_eq!(ResId::parse(p).map(|id| id.kind()), Some(Kind::StorageAccount));
        let p = "/subscriptions/s/providers/Microsoft.KeyVault/checkNameAvailability";
        assert!(matches!(Route::parse(p), Route::CheckName { provider } if provider == "Microsoft.KeyVault"));
        let p = "/subscriptions/s/providers/Microsoft.KeyVault/locations/eastus/deletedVaults/kv1";
        assert!(matches!(Route::parse(p), Route::DeletedVault { name, .. } if name == "kv1"));
        let p = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm";
        assert!(matches!(Route::parse(p), Route::NotFound));
    }


    #[test]
    fn parses_assignment_paths_at_any_scope() {
        let segs = |p: &'static str| p.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>();
        let ws = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws";
        let path = format!("{ws}/providers/Microsoft.Authorization/roleAssignments/abc");
        let parsed = role_assignments(&path.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>());
        assert_eq!(parsed, Some(Ok((ws.to_owned(), Some("abc".to_owned())))));
        assert_eq!(
            role_assignments(&segs("/subscriptions/s/providers/microsoft.authorization/roleassignments")),
            Some(Ok(("/subscriptions/s".to_owned(), None)))
        );
        assert_eq!(role_assignments(&segs("/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/a/b")), Some(Err(())));
        assert_eq!(role_assignments(&segs("/subscriptions/s/resourceGroups/rg")), None);
    }
}
