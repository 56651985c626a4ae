//! Tenants stay in their lane (issue 25, items 1 and 2), through the pipeline against the emulator:
//!
//! - the operator-wide default credentials serve only the namespaces the admin's label selector
//!   selects; an object elsewhere without a Secret of its own is Stalled
//!   (`DefaultCredentialsNotAllowed`, naming the namespace and the selector) with no ARM request
//!   and no token request; its own or its namespace's Secret is unaffected; a namespace whose
//!   labels change is woken by the namespace watch;
//! - an `AmlRoleAssignment` outside the admin's bounds (role, `scopeId` prefix) is Stalled
//!   (`RoleNotAllowed`, `ScopeNotAllowed`) with no ARM request and no token request; inside them
//!   it converges; deleting a refused one calls nothing.

use crate::support::{NS, SUBSCRIPTION, World};
use aml_operator::controller::tenancy::{NamespaceSelector, RoleAssignmentBounds};
use aml_operator::controller::Retry;
use aml_operator::crd::{AmlRoleAssignment, AmlWorkspace};
use aml_operator::emulator::Principal;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

const DEFAULT_NS: &str = "aml-system";
const DEFAULT_NAME: &str = "aml-default";
const GROUP: &str = "3f2c1a9e-7b4d-4e2a-9c1f-5d6e7f8a9b0c";

fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

fn credentials_secret(ns: &str, name: &str) -> Value {
    let p = Principal::default();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
        "stringData": {}, "data": {
            "tenantId": b64(&p.tenant_id), "clientId": b64(&p.client_id),
            "clientSecret": b64(&p.client_secret), "subscriptionId": b64(SUBSCRIPTION)}})
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn workspace(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace", "metadata": {"name": name, "namespace": ns},
        "spec": {"resourceGroup": "rg-ml", "location": "eastus", "createDependencies": false,
            "storageAccount": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/providers/Microsoft.Storage/storageAccounts/{name}sa"),
            "keyVault": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/providers/Microsoft.KeyVault/vaults/{name}-kv")}})
}

fn path_of(v: &Value) -> String {
    aml_operator::localkube::path_of(v)
}

/// A world whose operator-wide default is `aml-system/aml-default`, for namespaces `selector` selects.
async fn with_default(selector: &str) -> World {
    let mut w = World::new().await;
    w.configure(|c| {
        c.default_credentials = Some((DEFAULT_NS.into(), DEFAULT_NAME.into()));
        c.default_credentials_namespaces = NamespaceSelector::parse(selector).expect("selector");
    });
    w.kube.put(credentials_secret(DEFAULT_NS, DEFAULT_NAME));
    w.kube.put(namespace("team-a", json!({"team": "a"})));
    w.kube.put(namespace("team-b", json!({"team": "b"})));
    w
}

/// Reconciles until the object is Ready=True or Stalled=True; returns Stalled's reason, if any.
async fn settle<K: aml_operator::controller::AmlKind>(w: &World, path: &str) -> Option<String> {
    for _ in 0..10 {
        let _ = w.reconcile::<K>(path).await;
        if w.ready(path).as_deref() == Some("True") {
            return None;
        }
        if let Some(stalled) = w.condition(path, "Stalled").filter(|c| c["status"] == "True") {
            return stalled["reason"].as_str().map(str::to_string);
        }
        w.emulator.finish_operations();
    }
    panic!("{path} neither Ready nor Stalled: {:#}", w.kube.raw(path).unwrap_or_default()["status"]);
}

#[tokio::test]
async fn the_default_credentials_serve_only_the_namespaces_the_selector_selects() {
    let w = with_default("team in (a)").await;
    // team-b: not selected, no Secret of its own.
    let refused = workspace("team-b", "ws-b");
    w.kube.put(refused.clone());
    let err = w.reconcile::<AmlWorkspace>(&path_of(&refused)).await.expect_err("refused");
    assert_eq!((err.reason(), err.is_stalled(), err.retry()), ("DefaultCredentialsNotAllowed", true, Retry::Slow));
    let stalled = w.condition(&path_of(&refused), "Stalled").expect("Stalled");
    assert_eq!((stalled["status"].as_str(), stalled["reason"].as_str()), (Some("True"), Some("DefaultCredentialsNotAllowed")));
    let message = stalled["message"].as_str().unwrap_or_default();
    for needle in ["team-b", "\"team in (a)\"", "--default-credentials-namespace-selector", "aml-credentials", "label"] {
        assert!(message.contains(needle), "{needle:?} missing from {message}");
    }
    assert!(!message.contains(&Principal::default().client_secret), "no secret value in status");
    assert_eq!(w.emulator.requests().len(), 0, "no ARM request");
    assert_eq!(w.emulator.token_requests(), 0, "no token request");
    println!("team-b: Stalled {}: {message}", stalled["reason"]);

    // team-a: selected, served by the default.
    let served = workspace("team-a", "ws-a");
    w.kube.put(served.clone());
    assert_eq!(settle::<AmlWorkspace>(&w, &path_of(&served)).await, None, "team-a converges with the default");
    assert!(w.emulator.token_requests() > 0);

    // team-b with a Secret of its own: unaffected by the selector.
    w.kube.put(credentials_secret("team-b", "aml-credentials"));
    assert_eq!(settle::<AmlWorkspace>(&w, &path_of(&refused)).await, None, "team-b's own Secret works");
}

#[tokio::test]
async fn an_empty_selector_lets_no_namespace_use_the_default_and_star_lets_every_one() {
    for (selector, allowed) in [("", false), ("*", true), ("team", true), ("!team", false), ("team notin (a)", false)] {
        let w = with_default(selector).await;
        let obj = workspace("team-a", "ws-a");
        w.kube.put(obj.clone());
        let stalled = settle::<AmlWorkspace>(&w, &path_of(&obj)).await;
        assert_eq!(stalled.is_none(), allowed, "selector {selector:?}: {stalled:?}");
        if !allowed {
            assert_eq!(stalled.as_deref(), Some("DefaultCredentialsNotAllowed"), "{selector:?}");
            assert_eq!((w.emulator.requests().len(), w.emulator.token_requests()), (0, 0), "{selector:?}");
        }
    }
    // A named Secret never falls back, whatever the selector says: its absence is its own error.
    let w = with_default("*").await;
    let mut named = workspace("team-a", "ws-named");
    named["spec"]["credentials"] = json!({"secretName": "team-sp"});
    w.kube.put(named.clone());
    assert_eq!(settle::<AmlWorkspace>(&w, &path_of(&named)).await.as_deref(), Some("CredentialsNotFound"));
}

/// The real controllers: relabelling a namespace wakes its Stalled objects through the namespace
/// watch, long before the slow retry (120 s).
#[tokio::test]
async fn a_namespace_labelled_later_is_woken_by_the_namespace_watch() {
    let w = with_default("aml-operator.io/default-credentials=allowed").await;
    let ready = Arc::new(AtomicBool::new(false));
    let (ctx, flag) = (w.ctx.clone(), ready.clone());
    let controllers = tokio::spawn(async move { aml_operator::manager::run_controllers(ctx, Some(NS), flag).await });
    let obj = workspace(NS, "ws-later");
    let path = path_of(&obj);
    w.kube.put(obj);
    let reason = |w: &World| w.condition(&path, "Stalled").filter(|c| c["status"] == "True").and_then(|c| c["reason"].as_str().map(str::to_string));
    let start = Instant::now();
    while reason(&w).as_deref() != Some("DefaultCredentialsNotAllowed") {
        assert!(start.elapsed() < Duration::from_secs(30), "never refused: {:?}", w.condition(&path, "Ready"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!((w.emulator.requests().len(), w.emulator.token_requests()), (0, 0));
    w.kube.edit("/api/v1/namespaces/team-a", |ns| {
        ns["metadata"]["labels"]["aml-operator.io/default-credentials"] = json!("allowed");
    });
    let labelled = Instant::now();
    while w.ready(&path).as_deref() != Some("True") {
        assert!(labelled.elapsed() < Duration::from_secs(20), "not Ready after the label: {:?}", w.condition(&path, "Ready"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("Ready {:.2} s after the namespace was labelled (slow retry: 120 s)", labelled.elapsed().as_secs_f64());
    controllers.abort();
}

fn assignment(name: &str, spec: Value) -> Value {
    let mut full = json!({"principalId": GROUP, "principalType": "Group"});
    full.as_object_mut().unwrap().extend(spec.as_object().cloned().unwrap_or_default());
    json!({"apiVersion": "amloperator.io/v1alpha1", "kind": "AmlRoleAssignment", "metadata": {"name": name, "namespace": NS}, "spec": full})
}

/// Reconciles a role assignment twice (finalizer, then apply) and returns its Stalled reason and message.
async fn refused(w: &World, obj: &Value) -> (String, String) {
    w.kube.put(obj.clone());
    let path = path_of(obj);
    let err = w.reconcile::<AmlRoleAssignment>(&path).await.expect_err("refused");
    assert!(err.is_stalled() && err.retry() == Retry::AwaitChange, "{err:?}");
    let stalled = w.condition(&path, "Stalled").expect("Stalled");
    assert_eq!(stalled["status"], "True");
    let ready = w.condition(&path, "Ready").expect("Ready");
    assert_eq!(ready["status"], "False");
    (stalled["reason"].as_str().unwrap_or_default().to_string(), stalled["message"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn owner_on_the_subscription_is_refused_before_any_arm_or_token_request() {
    let w = World::new().await;
    w.good_credentials();
    let sub = format!("/subscriptions/{SUBSCRIPTION}");
    let table: Vec<(Value, &str, Vec<&str>)> = vec![
        (json!({"scopeId": sub, "role": "Owner"}), "RoleNotAllowed", vec!["Owner", "--role-assignment-allow-roles", "AzureMLDataScientist,AzureMLComputeOperator,AzureMLRegistryUser,Reader,Contributor"]),
        // Owner by its GUID is still Owner; so are the other privileged roles.
        (json!({"workspaceRef": {"name": "ws1"}, "roleDefinitionId": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"}), "RoleNotAllowed", vec!["Owner"]),
        (json!({"workspaceRef": {"name": "ws1"}, "roleDefinitionId": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"}), "RoleNotAllowed", vec!["UserAccessAdministrator"]),
        (json!({"workspaceRef": {"name": "ws1"}, "roleDefinitionId": "f58310d9-a9f6-439a-9e8d-f62e7b41a168"}), "RoleNotAllowed", vec!["RoleBasedAccessControlAdministrator"]),
        (json!({"workspaceRef": {"name": "ws1"}, "roleDefinitionId": "11111111-aaaa-bbbb-cccc-222222222222"}), "RoleNotAllowed", vec!["custom role"]),
        (json!({"scopeId": sub, "role": "Reader"}), "ScopeNotAllowed", vec![sub.as_str(), "--role-assignment-scope-prefix", "none", "workspaceRef"]),
        (json!({"scopeId": "/providers/Microsoft.Management/managementGroups/root", "role": "Reader"}), "ScopeNotAllowed", vec!["managementGroups/root"]),
    ];
    for (i, (spec, reason, says)) in table.iter().enumerate() {
        let (got, message) = refused(&w, &assignment(&format!("ra-{i}"), spec.clone())).await;
        assert_eq!(got, *reason, "{spec}: {message}");
        for needle in says {
            assert!(message.contains(needle), "{spec}: {needle:?} missing from {message}");
        }
        println!("{spec}: Stalled {got}: {message}");
    }
    assert_eq!(w.emulator.requests().len(), 0, "no ARM request: {:?}", w.emulator.requests());
    assert_eq!(w.emulator.token_requests(), 0, "no token request");
    // Deleting a refused object calls nothing either (nothing was written for it).
    let path = path_of(&assignment("ra-0", json!({})));
    w.kube.delete(&path);
    w.reconcile::<AmlRoleAssignment>(&path).await.expect("released");
    assert!(w.kube.raw(&path).is_none(), "the finalizer is gone");
    assert_eq!((w.emulator.requests().len(), w.emulator.token_requests()), (0, 0));
}

#[tokio::test]
async fn a_scope_prefix_opens_exactly_the_scopes_under_it() {
    let mut w = World::new().await;
    w.good_credentials();
    let rg = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml");
    w.configure(|c| c.role_assignment_bounds = RoleAssignmentBounds::parse(&["Reader".into()], &[format!("{rg}/")]).expect("bounds"));
    let escapes = [
        format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml2"),
        format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/../rg-other"),
        format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/.."),
        format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/%2e%2e/rg-other"),
        format!("/subscriptions/{SUBSCRIPTION}/resourceGroups"),
        format!("/subscriptions/{SUBSCRIPTION}"),
        "/providers/Microsoft.Management/managementGroups/rg-ml".to_string(),
    ];
    for (i, scope) in escapes.iter().enumerate() {
        let (reason, message) = refused(&w, &assignment(&format!("escape-{i}"), json!({"scopeId": scope, "role": "Reader"}))).await;
        assert_eq!(reason, "ScopeNotAllowed", "{scope}: {message}");
        assert!(message.contains(&rg), "the prefix is named: {message}");
    }
    assert_eq!((w.emulator.requests().len(), w.emulator.token_requests()), (0, 0), "no ARM or token request for any escape");
    // The prefix itself, with a trailing `/`: allowed, and it converges.
    let inside = assignment("inside", json!({"scopeId": format!("{rg}/"), "role": "Reader"}));
    w.kube.put(inside.clone());
    assert_eq!(settle::<AmlRoleAssignment>(&w, &path_of(&inside)).await, None);
    assert!(w.emulator.requests().iter().any(|r| r.method == "PUT" && r.path.contains("/roleAssignments/")));
    // In another case (ARM ids are case-insensitive): past the bounds, on to ARM.
    let before = w.emulator.requests().len();
    let shouted = assignment("shouted", json!({"scopeId": rg.replace("resourceGroups/rg-ml", "RESOURCEGROUPS/RG-ML"), "role": "Reader"}));
    w.kube.put(shouted.clone());
    let _ = w.reconcile::<AmlRoleAssignment>(&path_of(&shouted)).await;
    let stalled = w.condition(&path_of(&shouted), "Stalled").and_then(|c| c["reason"].as_str().map(str::to_string));
    assert_ne!(stalled.as_deref(), Some("ScopeNotAllowed"));
    assert!(w.emulator.requests().len() > before, "the case variant reached ARM");
    // A role outside the list stays refused under an allowed scope.
    let (reason, _) = refused(&w, &assignment("contrib", json!({"scopeId": rg, "role": "Contributor"}))).await;
    assert_eq!(reason, "RoleNotAllowed", "the list is the whole allowlist");
}
