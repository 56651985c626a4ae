//! Tenants stay in their lane (issue 25, items 1 and 2) on a real API server, with the operator as
//! its own process and the emulator as Azure:
//!
//! - an `AmlRoleAssignment` asking for Owner on the subscription (and one asking for Reader there)
//!   is `Stalled` (`RoleNotAllowed`, `ScopeNotAllowed`) with no ARM request and no token request,
//!   under the default bounds;
//! - a workspace in a namespace outside `--default-credentials-namespace-selector`, with no Secret
//!   of its own, is `Stalled` (`DefaultCredentialsNotAllowed`) with no token request; labelling the
//!   namespace so that it matches makes it Ready through the operator's namespace watch.
//!
//! Each is printed with its reason. Needs `AML_E2E_KUBECONFIG`; skips without it unless
//! `AML_REQUIRE_E2E=1`.

use crate::OperatorProcess;
use crate::support;

use aml_operator::crd::{AmlRoleAssignment, AmlWorkspace};
use aml_operator::emulator::{EmulatorConfig, Principal};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use crate::support::cluster::{MANAGER, dynamic_api_of, manifest, cluster, create_namespace, delete_namespace, eventually, install_crds, ready};

const GROUP: &str = "3f2c1a9e-7b4d-4e2a-9c1f-5d6e7f8a9b0c";
/// How long the Stalled objects are watched for any ARM or token request.
const QUIET: Duration = Duration::from_secs(10);

fn stalled(obj: &Value) -> Option<(String, String)> {
    let c = obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Stalled" && c["status"] == "True")?;
    Some((c["reason"].as_str()?.to_string(), c["message"].as_str().unwrap_or_default().to_string()))
}

async fn stalled_with(api: &Api<DynamicObject>, name: &str, reason: &str) -> String {
    let what = format!("{name} Stalled with {reason}");
    eventually(&what, Duration::from_secs(60), || {
        let api = api.clone();
        let name = name.to_string();
        async move {
            let obj = serde_json::to_value(api.get(&name).await.ok()?).ok()?;
            stalled(&obj).filter(|(r, _)| r == reason).map(|(_, m)| m)
        }
    })
    .await
}

#[tokio::test]
async fn owner_on_the_subscription_and_a_namespace_outside_the_selector_stall_without_arm_or_token_requests() {
    let Some(admin) = cluster().await else { return };
    install_crds(&admin).await;
    let id = std::process::id() % 100000;
    let (ns_roles, ns_outside) = (format!("aml-e2e-tenants-{id}"), format!("aml-e2e-outside-{id}"));
    create_namespace(&admin, &ns_roles).await;
    create_namespace(&admin, &ns_outside).await;
    let (emulator, ca_file) = support::cluster::start_emulator("tenants", Duration::from_millis(300), EmulatorConfig::default()).await;
    let p = Principal::default();
    let secret = |name: &str| support::cluster::credentials_secret(name, &p, &p.client_secret);
    // ns_roles has its own aml-credentials, and holds the operator-wide default for the other.
    let secrets = Api::<Secret>::namespaced(admin.clone(), &ns_roles);
    secrets.create(&PostParams::default(), &secret("aml-credentials")).await.expect("credentials");
    secrets.create(&PostParams::default(), &secret("aml-default")).await.expect("default credentials");
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .patch(&ns_outside, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"team": "outside"}}})))
        .await
        .expect("label");

    let apply = |api: &Api<DynamicObject>, obj: DynamicObject| {
        let api = api.clone();
        async move {
            let name = obj.metadata.name.clone().unwrap_or_default();
            api.patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(&obj)).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    };
    let roles = dynamic_api_of::<AmlRoleAssignment>(&admin, &ns_roles);
    let subscription = format!("/subscriptions/{}", support::SUBSCRIPTION);
    apply(&roles, manifest("AmlRoleAssignment", "owner-of-the-subscription", json!({
        "scopeId": subscription, "role": "Owner", "principalId": GROUP, "principalType": "Group"}))).await;
    apply(&roles, manifest("AmlRoleAssignment", "reader-of-the-subscription", json!({
        "scopeId": subscription, "role": "Reader", "principalId": GROUP, "principalType": "Group"}))).await;
    let workspaces = dynamic_api_of::<AmlWorkspace>(&admin, &ns_outside);
    apply(&workspaces, manifest("AmlWorkspace", "ws-outside", json!({
        "resourceGroup": "rg-tenants", "location": "eastus", "createDependencies": false,
        "storageAccount": format!("{subscription}/resourceGroups/rg-tenants/providers/Microsoft.Storage/storageAccounts/tenantssa"),
        "keyVault": format!("{subscription}/resourceGroups/rg-tenants/providers/Microsoft.KeyVault/vaults/tenants-kv")}))).await;

    // Two operator processes, each watching one namespace (other e2e tests run beside this one):
    // the default bounds on role assignments; the default credentials for `team=inside` only.
    let op_roles = OperatorProcess::for_namespace(&ns_roles, &emulator, &ca_file, &[], &support::temp_path("tenants-roles-operator.log"));
    let outside_flags = [format!("--default-credentials={ns_roles}/aml-default"), "--default-credentials-namespace-selector=team=inside".to_string()];
    let op_outside = OperatorProcess::for_namespace(&ns_outside, &emulator, &ca_file, &outside_flags, &support::temp_path("tenants-outside-operator.log"));

    let started = Instant::now();
    let owner = stalled_with(&roles, "owner-of-the-subscription", "RoleNotAllowed").await;
    println!("AmlRoleAssignment {ns_roles}/owner-of-the-subscription: Stalled RoleNotAllowed: {owner}");
    assert!(owner.contains("Owner") && owner.contains("--role-assignment-allow-roles"), "{owner}");
    let reader = stalled_with(&roles, "reader-of-the-subscription", "ScopeNotAllowed").await;
    println!("AmlRoleAssignment {ns_roles}/reader-of-the-subscription: Stalled ScopeNotAllowed: {reader}");
    assert!(reader.contains(&subscription) && reader.contains("--role-assignment-scope-prefix"), "{reader}");
    let outside = stalled_with(&workspaces, "ws-outside", "DefaultCredentialsNotAllowed").await;
    println!("AmlWorkspace {ns_outside}/ws-outside: Stalled DefaultCredentialsNotAllowed: {outside}");
    assert!(outside.contains(&ns_outside) && outside.contains("team=inside"), "{outside}");
    println!("all three Stalled {:.1} s after the operators started", started.elapsed().as_secs_f64());

    // Nothing reaches Azure or Entra, now or over the next seconds.
    tokio::time::sleep(QUIET).await;
    let (arm, tokens) = (emulator.requests().len(), emulator.token_requests());
    println!("after {} s: {arm} ARM requests, {tokens} token requests", QUIET.as_secs());
    assert_eq!((arm, tokens), (0, 0), "{:?}\n{}\n{}", emulator.requests(), op_roles.tail(), op_outside.tail());

    // Labelled to match: the namespace watch wakes the workspace, which converges with the default.
    let labelled = Instant::now();
    namespaces
        .patch(&ns_outside, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"team": "inside"}}})))
        .await
        .expect("label");
    eventually("ws-outside Ready once its namespace matches", Duration::from_secs(60), || {
        let api = workspaces.clone();
        async move {
            let obj = serde_json::to_value(api.get("ws-outside").await.ok()?).ok()?;
            ready(&obj).then_some(())
        }
    })
    .await;
    println!("ws-outside Ready {:.1} s after its namespace was labelled team=inside", labelled.elapsed().as_secs_f64());
    assert!(emulator.token_requests() > 0, "the default credentials are used now");
    assert!(stalled(&serde_json::to_value(roles.get("owner-of-the-subscription").await.expect("owner")).unwrap()).is_some(), "Owner stays refused");

    // No secret value in what the operators wrote.
    for out in [op_roles.output(), op_outside.output()] {
        assert!(!out.contains(&p.client_secret), "a secret value in the operator's output");
    }
    // Deleted while the operators run: the workspace deletes its Azure resource first; the
    // refused assignments, which never reached ARM, go at once.
    delete_namespace(&admin, &ns_outside, Duration::from_secs(120)).await;
    delete_namespace(&admin, &ns_roles, Duration::from_secs(120)).await;
    drop(op_roles);
    drop(op_outside);
}
