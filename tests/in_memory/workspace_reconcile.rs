//! AmlWorkspace reconcile scenarios: the Kubernetes API faked at the transport, the emulator as Azure.


use aml_operator::crd::{AmlWorkspace, AmlWorkspaceSpec, DeletionPolicy, ManagementPolicy};
use aml_operator::controller::Error;
use kube::api::ObjectMeta;
use serde_json::json;
use crate::support::{NS, SUBSCRIPTION, World};

const PATH: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlworkspaces/ws1";
const ARM_ID: &str =
    "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/ws1";

fn workspace() -> AmlWorkspace {
    let spec: AmlWorkspaceSpec = serde_json::from_value(json!({
        "resourceGroup": "rg-ml",
        "location": "eastus",
        "friendlyName": "Team A",
        "description": "made by a test",
        "storageAccount": "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.Storage/storageAccounts/sa1",
        "keyVault": "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.KeyVault/vaults/kv1",
        "identity": {"type": "SystemAssigned"},
        "sku": {"name": "Basic", "tier": "Basic"},
        "tags": {"team": "a"}
    }))
    .expect("valid spec");
    AmlWorkspace {
        metadata: ObjectMeta { name: Some("ws1".into()), namespace: Some(NS.into()), ..Default::default() },
        spec,
        status: None,
    }
}

async fn created(policy: impl FnOnce(&mut AmlWorkspace)) -> World {
    let w = World::new().await;
    w.good_credentials();
    let mut ws = workspace();
    policy(&mut ws);
    w.kube.put(ws);
    w
}

#[tokio::test]
async fn first_apply_creates_the_workspace_once_and_reports_ready_with_outputs() {
    let w = created(|_| {}).await;
    // One pass adds the finalizer and goes on: GET (404) then one PUT; the operation goes into status.
    w.reconcile::<AmlWorkspace>(PATH).await.expect("create accepted");
    assert_eq!(w.kube.raw(PATH).unwrap()["metadata"]["finalizers"], json!(["amloperator.io/finalizer"]));
    assert_eq!(w.arm_calls("PUT"), 1);
    let obj = w.kube.raw(PATH).unwrap();
    assert_eq!(obj["status"]["operation"]["action"], "Create");
    assert_eq!(obj["status"]["armId"], ARM_ID);
    assert_eq!(w.condition(PATH, "Reconciling").unwrap()["status"], "True");
    assert_eq!(w.ready(PATH).as_deref(), Some("False"));

    w.converge::<AmlWorkspace>(PATH).await;
    assert_eq!(w.arm_calls("PUT"), 1, "exactly one PUT for a create");
    let obj = w.kube.raw(PATH).unwrap();
    let status = &obj["status"];
    assert_eq!(status["provisioningState"], "Succeeded");
    assert_eq!(status["observedGeneration"], 1);
    assert!(status.get("operation").is_none(), "finished operation cleared: {status}");
    assert!(status["workspaceId"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(status["discoveryUrl"].as_str().is_some_and(|s| s.starts_with("https://")));
    assert!(status["mlFlowTrackingUri"].as_str().is_some_and(|s| s.starts_with("azureml://")));
    assert!(w.condition(PATH, "Reconciling").is_none());
    assert!(w.condition(PATH, "Stalled").is_none());

    let arm = w.emulator.resource(ARM_ID).expect("workspace exists in ARM");
    assert_eq!(arm["properties"]["friendlyName"], "Team A");
    assert_eq!(arm["identity"]["type"], "SystemAssigned");
    let reasons: Vec<_> = w.kube.events().iter().map(|e| e["reason"].as_str().unwrap_or_default().to_string()).collect();
    assert!(reasons.contains(&"Created".to_string()), "events: {reasons:?}");
}

#[tokio::test]
async fn a_converged_workspace_costs_one_get_and_no_writes() {
    let w = created(|_| {}).await;
    w.converge::<AmlWorkspace>(PATH).await;
    w.emulator.clear_requests();
    w.kube.clear_calls();

    for _ in 0..3 {
        w.reconcile::<AmlWorkspace>(PATH).await.expect("steady state");
    }
    let methods: Vec<_> = w.emulator.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, vec!["GET", "GET", "GET"], "one GET per resync, nothing else");
    assert!(w.kube.status_writes().is_empty(), "no status write when nothing changed");
    assert!(w.kube.events().is_empty());
}

#[tokio::test]
async fn drift_made_in_azure_is_corrected_with_one_put() {
    let w = created(|_| {}).await;
    w.converge::<AmlWorkspace>(PATH).await;
    w.emulator.update_resource(ARM_ID, |v| v["properties"]["description"] = json!("edited in the portal"));
    w.emulator.clear_requests();

    w.converge::<AmlWorkspace>(PATH).await;
    assert_eq!(w.arm_calls("PUT"), 1);
    assert_eq!(w.emulator.resource(ARM_ID).unwrap()["properties"]["description"], "made by a test");
}

#[tokio::test]
async fn fields_arm_adds_are_not_drift() {
    let w = created(|_| {}).await;
    w.converge::<AmlWorkspace>(PATH).await;
    w.emulator.update_resource(ARM_ID, |v| {
        v["properties"]["applicationInsights"] = json!("/subscriptions/x/resourceGroups/rg/providers/microsoft.insights/components/auto");
        v["location"] = json!("East US");
    });
    w.emulator.clear_requests();
    w.reconcile::<AmlWorkspace>(PATH).await.unwrap();
    assert_eq!(w.arm_calls("PUT"), 0);
}

#[tokio::test]
async fn a_spec_change_is_applied_and_observed_generation_follows() {
    let w = created(|_| {}).await;
    w.converge::<AmlWorkspace>(PATH).await;
    w.kube.edit(PATH, |o| o["spec"]["friendlyName"] = json!("Team A (renamed)"));
    w.emulator.clear_requests();

    w.converge::<AmlWorkspace>(PATH).await;
    assert_eq!(w.arm_calls("PUT"), 1);
    assert_eq!(w.emulator.resource(ARM_ID).unwrap()["properties"]["friendlyName"], "Team A (renamed)");
    let obj = w.kube.raw(PATH).unwrap();
    assert_eq!(obj["status"]["observedGeneration"], 2);
    assert_eq!(w.condition(PATH, "Ready").unwrap()["observedGeneration"], 2);
}

#[tokio::test]
async fn a_missing_secret_costs_zero_arm_calls_and_says_what_to_create() {
    let w = World::new().await;
    w.kube.put(workspace());
    let err = w.reconcile::<AmlWorkspace>(PATH).await.expect_err("no credentials");
    assert!(matches!(err, Error::CredentialsNotFound { .. }), "{err:?}");
    assert_eq!(err.retry(), aml_operator::controller::Retry::Slow);

    assert!(w.emulator.requests().is_empty());
    assert_eq!(w.emulator.token_requests(), 0);
    let ready = w.condition(PATH, "Ready").unwrap();
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "CredentialsNotFound");
    assert!(ready["message"].as_str().unwrap().contains("team-a/aml-credentials"));
    assert_eq!(w.condition(PATH, "Stalled").unwrap()["status"], "True");
    let warnings: Vec<_> = w.kube.events().into_iter().filter(|e| e["type"] == "Warning").collect();
    assert_eq!(warnings.len(), 1);

    // The same failure again neither rewrites status nor emits another event.
    w.kube.clear_calls();
    let _ = w.reconcile::<AmlWorkspace>(PATH).await;
    assert!(w.kube.status_writes().is_empty());
    assert!(w.kube.events().is_empty());
}

#[tokio::test]
async fn a_wrong_secret_is_reported_without_the_secret_text() {
    const WRONG: &str = "wrong-secret-5f2b9c41d7";
    let w = World::new().await;
    w.credentials("aml-credentials", WRONG);
    w.kube.put(workspace());
    let err = w.reconcile::<AmlWorkspace>(PATH).await.expect_err("token refused");
    assert!(err.is_stalled());

    let ready = w.condition(PATH, "Ready").unwrap();
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "AuthenticationFailed");
    assert!(ready["message"].as_str().unwrap().contains("clientSecret"), "{ready}");
    assert_eq!(w.arm_calls("PUT"), 0);
    let everything = format!("{}{:?}{}{:?}", w.kube.raw(PATH).unwrap(), w.kube.events(), err.message(), err);
    assert!(!everything.contains(WRONG), "secret leaked: {everything}");
}

#[tokio::test]
async fn delete_with_delete_policy_keeps_the_finalizer_until_arm_says_gone() {
    let w = created(|_| {}).await;
    w.converge::<AmlWorkspace>(PATH).await;
    w.kube.delete(PATH);
    w.emulator.clear_requests();

    let err = w.reconcile::<AmlWorkspace>(PATH).await.expect_err("delete is asynchronous");
    assert!(matches!(err, Error::DeletePending { .. }), "{err:?}");
    assert_eq!(w.arm_calls("DELETE"), 1);
    let obj = w.kube.raw(PATH).expect("object kept while ARM deletes");
    assert_eq!(obj["metadata"]["finalizers"], json!(["amloperator.io/finalizer"]));
    assert_eq!(obj["status"]["operation"]["action"], "Delete");

    w.emulator.finish_operations();
    w.reconcile::<AmlWorkspace>(PATH).await.expect("delete finished");
    assert!(w.kube.raw(PATH).is_none(), "finalizer removed, object gone");
    assert!(w.emulator.resource(ARM_ID).is_none());
    assert_eq!(w.arm_calls("DELETE"), 1, "no second DELETE");
}

#[tokio::test]
async fn delete_with_orphan_policy_leaves_azure_alone() {
    let w = created(|ws| ws.spec.common.deletion_policy = Some(DeletionPolicy::Orphan)).await;
    w.converge::<AmlWorkspace>(PATH).await;
    w.kube.delete(PATH);
    w.emulator.clear_requests();

    w.reconcile::<AmlWorkspace>(PATH).await.expect("released");
    assert!(w.kube.raw(PATH).is_none());
    assert_eq!(w.arm_calls("DELETE"), 0);
    assert!(w.emulator.resource(ARM_ID).is_some());
}

#[tokio::test]
async fn a_stuck_delete_is_released_by_switching_to_orphan() {
    let w = created(|_| {}).await;
    w.converge::<AmlWorkspace>(PATH).await;
    w.kube.delete(PATH);
    let _ = w.reconcile::<AmlWorkspace>(PATH).await;
    w.kube.edit(PATH, |o| o["spec"]["deletionPolicy"] = json!("Orphan"));
    w.reconcile::<AmlWorkspace>(PATH).await.expect("released");
    assert!(w.kube.raw(PATH).is_none());
}

#[tokio::test]
async fn observe_reports_but_never_writes() {
    let w = created(|ws| ws.spec.common.management_policy = Some(ManagementPolicy::Observe)).await;
    // Absent in Azure: reported, not created.
    w.reconcile::<AmlWorkspace>(PATH).await.unwrap();
    w.reconcile::<AmlWorkspace>(PATH).await.unwrap();
    assert_eq!(w.condition(PATH, "Ready").unwrap()["reason"], "NotFoundInAzure");

    // Present: Ready, outputs reported.
    let existing = serde_json::json!({
        "location": "eastus",
        "identity": {"type": "SystemAssigned"},
        "sku": {"name": "Basic", "tier": "Basic"},
        "tags": {"team": "a"},
        "properties": {
            "friendlyName": "Team A", "description": "made by a test",
            "storageAccount": workspace().spec.storage_account, "keyVault": workspace().spec.key_vault,
            "provisioningState": "Succeeded"
        }
    });
    w.emulator.insert_resource(ARM_ID, existing);
    w.reconcile::<AmlWorkspace>(PATH).await.unwrap();
    assert_eq!(w.ready(PATH).as_deref(), Some("True"));
    let adopted: Vec<_> = w.kube.events().into_iter().filter(|e| e["reason"] == "Adopted").collect();
    assert_eq!(adopted.len(), 1, "an existing resource is adopted once: {adopted:?}");
    let in_azure = w.emulator.resource(ARM_ID).unwrap()["properties"]["workspaceId"].clone();
    assert!(in_azure.is_string());
    assert_eq!(w.kube.raw(PATH).unwrap()["status"]["workspaceId"], in_azure);

    // Drift: reported, not corrected.
    w.emulator.update_resource(ARM_ID, |v| v["properties"]["friendlyName"] = json!("changed"));
    w.reconcile::<AmlWorkspace>(PATH).await.unwrap();
    assert_eq!(w.condition(PATH, "Ready").unwrap()["reason"], "Drifted");

    // Delete: released without a DELETE.
    w.kube.delete(PATH);
    w.reconcile::<AmlWorkspace>(PATH).await.unwrap();
    assert!(w.kube.raw(PATH).is_none());
    assert_eq!(w.arm_calls("PUT") + w.arm_calls("DELETE") + w.arm_calls("PATCH"), 0, "{:?}", w.emulator.requests());
    assert!(w.emulator.resource(ARM_ID).is_some());
}

#[tokio::test]
async fn a_restart_mid_operation_resumes_polling_without_a_second_put() {
    let mut w = created(|_| {}).await;
    w.reconcile::<AmlWorkspace>(PATH).await.unwrap();
    w.reconcile::<AmlWorkspace>(PATH).await.unwrap();
    assert_eq!(w.arm_calls("PUT"), 1);

    w.restart();
    w.reconcile::<AmlWorkspace>(PATH).await.unwrap();
    assert_eq!(w.arm_calls("PUT"), 1, "the restarted operator polls, it does not write again");
    w.converge::<AmlWorkspace>(PATH).await;
    assert_eq!(w.arm_calls("PUT"), 1);
}

#[tokio::test]
async fn a_restart_between_put_and_status_write_does_not_create_twice() {
    let w = created(|_| {}).await;
    w.reconcile::<AmlWorkspace>(PATH).await.unwrap();
    w.reconcile::<AmlWorkspace>(PATH).await.unwrap();
    // Lose the status write: the operator died after ARM accepted the PUT.
    w.kube.edit(PATH, |o| o["status"] = json!(null));
    w.reconcile::<AmlWorkspace>(PATH).await.unwrap();
    w.converge::<AmlWorkspace>(PATH).await;
    let creates = w.emulator.requests().iter().filter(|r| r.method == "PUT" && r.status < 300).count();
    assert_eq!(creates, 1, "{:?}", w.emulator.requests());
    assert_eq!(w.emulator.resource_ids().len(), 1);
}

#[tokio::test]
async fn subscription_comes_from_the_secret_unless_the_spec_sets_it() {
    let other = "99999999-2222-3333-4444-555555555555";
    let w = created(|ws| ws.spec.subscription_id = Some(other.into())).await;
    w.converge::<AmlWorkspace>(PATH).await;
    let id = w.kube.raw(PATH).unwrap()["status"]["armId"].as_str().unwrap().to_string();
    assert!(id.starts_with(&format!("/subscriptions/{other}/")), "{id}");
    assert!(!id.contains(SUBSCRIPTION));
}

#[tokio::test]
async fn an_explicit_secret_name_is_used_and_never_falls_back() {
    let w = World::new().await;
    w.good_credentials();
    let mut ws = workspace();
    ws.spec.common.credentials = Some(aml_operator::crd::CredentialsRef { secret_name: "other".into() });
    w.kube.put(ws);
    let err = w.reconcile::<AmlWorkspace>(PATH).await.expect_err("named Secret missing");
    assert!(err.message().contains("team-a/other"), "{}", err.message());
    assert!(w.emulator.requests().is_empty());
}

#[tokio::test]
async fn deleting_the_namespace_still_deletes_the_azure_resource() {
    const SECRET: &str = "/api/v1/namespaces/team-a/secrets/aml-credentials";
    let w = created(|_| {}).await;
    w.converge::<AmlWorkspace>(PATH).await;
    assert_eq!(
        w.kube.raw(SECRET).unwrap()["metadata"]["finalizers"],
        json!(["amloperator.io/credentials-in-use"]),
        "the credentials Secret in use is protected"
    );

    // A namespace deletion deletes the Secret and the object at once, the Secret first.
    w.kube.delete(SECRET);
    w.kube.delete(PATH);
    assert!(w.kube.raw(SECRET).is_some(), "the protected Secret stays readable while terminating");

    for _ in 0..5 {
        let _ = w.reconcile::<AmlWorkspace>(PATH).await;
        w.emulator.finish_operations();
        if w.kube.raw(PATH).is_none() {
            break;
        }
    }
    assert!(w.kube.raw(PATH).is_none(), "object finalized");
    assert!(w.emulator.resource(ARM_ID).is_none(), "the Azure resource was deleted, not orphaned");
    assert!(w.kube.raw(SECRET).is_none(), "the Secret is released once no object needs it");
}

#[tokio::test]
async fn the_credentials_secret_is_released_only_after_the_last_object() {
    const SECRET: &str = "/api/v1/namespaces/team-a/secrets/aml-credentials";
    let w = created(|_| {}).await;
    let mut second = workspace();
    second.metadata.name = Some("ws2".into());
    w.kube.put(second);
    let path2 = PATH.replace("/ws1", "/ws2");
    w.converge::<AmlWorkspace>(PATH).await;
    w.converge::<AmlWorkspace>(&path2).await;

    w.kube.edit(PATH, |o| o["spec"]["deletionPolicy"] = json!("Orphan"));
    w.kube.delete(PATH);
    w.reconcile::<AmlWorkspace>(PATH).await.unwrap();
    assert!(w.kube.raw(PATH).is_none());
    assert_eq!(w.kube.raw(SECRET).unwrap()["metadata"]["finalizers"], json!(["amloperator.io/credentials-in-use"]), "ws2 still needs it");

    w.kube.edit(&path2, |o| o["spec"]["deletionPolicy"] = json!("Orphan"));
    w.kube.delete(&path2);
    w.reconcile::<AmlWorkspace>(&path2).await.unwrap();
    assert_eq!(w.kube.raw(SECRET).unwrap()["metadata"]["finalizers"], json!([]));
}

/// Two objects deleted together release at the same moment: the first checks while the second
/// is still there, and is still there itself (finalizer not yet removed) when the second checks.
/// The Secret must still be released, or the namespace never goes away.
#[tokio::test]
async fn objects_released_at_the_same_moment_still_release_the_credentials_secret() {
    const SECRET: &str = "/api/v1/namespaces/team-a/secrets/aml-credentials";
    let w = created(|_| {}).await;
    let mut second = workspace();
    second.metadata.name = Some("ws2".into());
    w.kube.put(second);
    let path2 = PATH.replace("/ws1", "/ws2");
    w.converge::<AmlWorkspace>(PATH).await;
    w.converge::<AmlWorkspace>(&path2).await;
    for p in [PATH, path2.as_str()] {
        w.kube.edit(p, |o| o["spec"]["deletionPolicy"] = json!("Orphan"));
        w.kube.delete(p);
    }
    // ws1 says it is done with Azure, checks (ws2 still needs the Secret), and its finalizer is
    // not removed yet: here the removal fails, and the failure is reported in its status.
    w.kube.clear_calls();
    w.kube.fail_next("PATCH", "amlworkspaces/ws1$", 500, 1);
    assert!(w.reconcile::<AmlWorkspace>(PATH).await.is_err(), "the finalizer removal failed");
    let marked = w.kube.status_writes().into_iter().find_map(|c| {
        let ready = c.body["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready")?.clone();
        (ready["reason"] == "Released").then_some(c.body)
    });
    let marked = marked.expect("ws1 said it was done with Azure before checking");
    assert_eq!(w.kube.raw(SECRET).unwrap()["metadata"]["finalizers"], json!(["amloperator.io/credentials-in-use"]));
    // In the race the removal is merely in flight: ws1 is still there, as it marked itself.
    w.kube.edit(PATH, |o| o["status"]["conditions"] = marked["status"]["conditions"].clone());
    // ws2 checks while ws1 is still there: ws1 has said it is done with Azure.
    w.reconcile::<AmlWorkspace>(&path2).await.unwrap();
    assert!(w.kube.raw(&path2).is_none());
    assert_eq!(w.kube.raw(SECRET).unwrap()["metadata"]["finalizers"], json!([]), "the last one released the Secret");
}

/// Objects released together race for the credentials Secret: one lets it go and, its namespace
/// being deleted, the Secret is gone before another's release (seen in CI: that object then waited
/// for credentials forever and its namespace never went). A release that finds the Secret gone is
/// a release; an object whose status already says it is done with Azure needs no credentials.
#[tokio::test]
async fn an_object_released_in_a_race_for_its_secret_still_lets_go_without_credentials() {
    const SECRET: &str = "/api/v1/namespaces/team-a/secrets/aml-credentials";
    let w = created(|_| {}).await;
    w.converge::<AmlWorkspace>(PATH).await;
    w.kube.delete(PATH);
    w.emulator.finish_operations();
    // Its release finds the Secret gone (another object let it go an instant before).
    w.kube.fail_next("PATCH", "secrets/aml-credentials$", 404, 1);
    for _ in 0..5 {
        if w.kube.raw(PATH).is_none() {
            break;
        }
        let _ = w.reconcile::<AmlWorkspace>(PATH).await;
        w.emulator.finish_operations();
    }
    assert!(w.kube.raw(PATH).is_none(), "released: {:?}", w.condition(PATH, "Ready"));

    // Said it was done with Azure (its resource is gone), then its finalizer removal failed; the
    // Secret is gone since.
    let mut again = workspace();
    again.metadata.name = Some("ws1".into());
    w.kube.put(again);
    w.converge::<AmlWorkspace>(PATH).await;
    let arm_id = w.kube.raw(PATH).unwrap()["status"]["armId"].as_str().unwrap().to_string();
    w.kube.delete(PATH);
    assert!(w.emulator.remove_resource(&arm_id));
    w.kube.edit(PATH, |o| {
        o["status"]["conditions"] = json!([{"type": "Ready", "status": "False", "reason": "Released",
            "message": "Nothing left to do in Azure; Kubernetes removes the object next", "lastTransitionTime": "2026-01-01T00:00:00Z"}])
    });
    w.kube.edit(SECRET, |o| o["metadata"]["finalizers"] = json!([]));
    w.kube.delete(SECRET);
    assert!(w.kube.raw(SECRET).is_none(), "the Secret is gone");
    w.reconcile::<AmlWorkspace>(PATH).await.expect("lets go without credentials");
    assert!(w.kube.raw(PATH).is_none());
}

fn arm_writes(w: &World) -> usize {
    ["PUT", "PATCH", "POST", "DELETE"].iter().map(|m| w.arm_calls(m)).sum()
}

#[tokio::test]
async fn a_tag_removed_from_the_spec_is_removed_in_azure_with_one_write_and_then_none() {
    let w = created(|ws| ws.spec.tags = Some([("team", "a"), ("owner", "bob")].map(|(k, v)| (k.to_string(), v.to_string())).into())).await;
    w.converge::<AmlWorkspace>(PATH).await;
    w.kube.edit(PATH, |o| o["spec"]["tags"] = json!({"team": "a"}));
    w.emulator.clear_requests();

    w.converge::<AmlWorkspace>(PATH).await;
    assert_eq!((arm_writes(&w), w.arm_calls("PUT")), (1, 1), "{:?}", w.emulator.requests());
    assert_eq!(w.emulator.resource(ARM_ID).unwrap()["tags"], json!({"team": "a", "amloperator.io-owner": "default/team-a/ws1"}), "the spec's tags and the owner tag");

    // A tag added in Azure to a workspace whose spec sets tags is removed too.
    w.emulator.update_resource(ARM_ID, |v| v["tags"]["added-in"] = json!("portal"));
    w.converge::<AmlWorkspace>(PATH).await;
    assert_eq!(arm_writes(&w), 2);
    assert_eq!(w.emulator.resource(ARM_ID).unwrap()["tags"], json!({"team": "a", "amloperator.io-owner": "default/team-a/ws1"}), "the spec's tags and the owner tag");

    w.emulator.clear_requests();
    for _ in 0..2 {
        w.reconcile::<AmlWorkspace>(PATH).await.expect("steady state");
    }
    assert_eq!(arm_writes(&w), 0, "converged after the removal: {:?}", w.emulator.requests());
}

#[tokio::test]
async fn tags_the_spec_does_not_set_are_left_alone_and_an_empty_map_clears_them() {
    let w = created(|ws| ws.spec.tags = None).await;
    w.converge::<AmlWorkspace>(PATH).await;
    // Added in Azure beside the operator's owner tag.
    w.emulator.update_resource(ARM_ID, |v| v["tags"]["added-by"] = json!("policy"));
    w.emulator.clear_requests();
    for _ in 0..2 {
        w.reconcile::<AmlWorkspace>(PATH).await.expect("steady state");
    }
    assert_eq!(arm_writes(&w), 0);
    assert_eq!(w.emulator.resource(ARM_ID).unwrap()["tags"], json!({"added-by": "policy", "amloperator.io-owner": "default/team-a/ws1"}));

    w.kube.edit(PATH, |o| o["spec"]["tags"] = json!({}));
    w.converge::<AmlWorkspace>(PATH).await;
    assert_eq!(arm_writes(&w), 1);
    let tags = w.emulator.resource(ARM_ID).unwrap()["tags"].clone();
    assert_eq!(tags, json!({"amloperator.io-owner": "default/team-a/ws1"}), "tags: {{}} clears them all but the operator's owner tag");
    w.emulator.clear_requests();
    w.reconcile::<AmlWorkspace>(PATH).await.expect("steady state");
    assert_eq!(arm_writes(&w), 0);
}
