//! AmlRoleAssignment end to end against a real Kubernetes API server (`AML_E2E_KUBECONFIG`, e.g.
//! from `eval "$(../shared/kube/up)"`): the CRDs installed server-side, the controllers in-process,
//! the emulator as Azure. Skipped with a printed reason without the variable, unless
//! `AML_REQUIRE_E2E=1` makes that a failure.

use crate::support;

use crate::support::cluster::{Env, MANAGER, cluster, delete_namespace, eventually, ready};

use aml_operator::arm::ids;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::json;
use std::time::Duration;

const GROUP: &str = "3f2c1a9e-7b4d-4e2a-9c1f-5d6e7f8a9b0c";
const DATA_SCIENTIST: &str = "f6c7c914-8db3-469d-8ca1-694a8f32e121";

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("amloperator.io", "v1alpha1", kind), plural)
}

#[tokio::test]
async fn a_role_assignment_on_a_workspace_converges_refuses_immutable_edits_and_goes_with_its_namespace() {
    let Some(client) = cluster().await else { return };
    let env = Env::start(client.clone(), "aml-e2e-ra").await;
    let (ns, emulator) = (env.ns.clone(), &env.emulator);

    // The role assignment first: it waits for its workspace, then converges.
    let assignments: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource("AmlRoleAssignment", "amlroleassignments"));
    let workspaces: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource("AmlWorkspace", "amlworkspaces"));
    let ra = json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlRoleAssignment",
        "metadata": {"name": "team-a-data-scientists", "namespace": ns},
        "spec": {"workspaceRef": {"name": "team-a"}, "role": "AzureMLDataScientist", "principalId": GROUP,
                 "principalType": "Group", "description": "Team A data scientists"}
    });
    assignments
        .patch("team-a-data-scientists", &PatchParams::apply(MANAGER), &Patch::Apply(&ra))
        .await
        .expect("role assignment applied");
    let ws = json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
        "metadata": {"name": "team-a", "namespace": ns},
        "spec": {"resourceGroup": "rg-e2e", "location": "eastus"}
    });
    workspaces.patch("team-a", &PatchParams::apply(MANAGER), &Patch::Apply(&ws)).await.expect("workspace applied");

    let obj = eventually("role assignment Ready", Duration::from_secs(120), || {
        let api = assignments.clone();
        async move {
            let obj = serde_json::to_value(api.get("team-a-data-scientists").await.ok()?).ok()?;
            ready(&obj).then_some(obj)
        }
    })
    .await;
    let ws_obj = serde_json::to_value(workspaces.get("team-a").await.expect("workspace")).unwrap();
    let scope = ws_obj["status"]["armId"].as_str().expect("workspace armId").to_string();
    let id = ids::role_assignment_id(&scope, &ids::role_assignment_name(&scope, GROUP, DATA_SCIENTIST));
    assert_eq!(obj["status"]["armId"], id.as_str());
    assert_eq!(obj["metadata"]["ownerReferences"][0]["name"], "team-a");
    let stored = emulator.resource(&id).expect("the assignment exists in Azure");
    assert_eq!(stored["properties"]["principalId"], GROUP);

    // Admission refuses what the assignment cannot change.
    let err = assignments
        .patch(
            "team-a-data-scientists",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"principalId": "00000000-0000-0000-0000-000000000001"}})),
        )
        .await
        .expect_err("principalId is immutable");
    assert!(err.to_string().contains("principalId is immutable"), "{err}");
    let err = assignments
        .patch(
            "team-a-data-scientists",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"workspaceRef": null, "scopeId": format!("/subscriptions/{}/resourceGroups/rg-e2e", support::SUBSCRIPTION)}})),
        )
        .await
        .expect_err("the scope is immutable");
    let text = err.to_string();
    assert!(text.contains("workspaceRef is immutable") && text.contains("scopeId is immutable"), "{text}");
    let both = json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlRoleAssignment",
        "metadata": {"name": "two-scopes", "namespace": ns},
        "spec": {"workspaceRef": {"name": "team-a"}, "scopeId": "/subscriptions/x", "role": "Reader", "principalId": GROUP, "principalType": "Group"}
    });
    let err = assignments.patch("two-scopes", &PatchParams::apply(MANAGER), &Patch::Apply(&both)).await.expect_err("two scopes");
    assert!(err.to_string().contains("set exactly one of workspaceRef, computeRef or scopeId"), "{err}");
    // A description edit is allowed and reaches ARM.
    assignments
        .patch("team-a-data-scientists", &PatchParams::default(), &Patch::Merge(json!({"spec": {"description": "edited"}})))
        .await
        .expect("description may change");
    eventually("description updated in ARM", Duration::from_secs(60), || {
        let r = emulator.resource(&id);
        async move { (r?["properties"]["description"] == "edited").then_some(()) }
    })
    .await;

    // Deleting the namespace deletes the assignment in Azure before the namespace goes.
    delete_namespace(&client, &ns, Duration::from_secs(120)).await;
    assert!(emulator.resource(&id).is_none(), "the assignment is gone from Azure");
    // Its finalizer's cleanup asked ARM about it: a DELETE, or (when the workspace's delete took
    // it first, as ARM deletes a scope's assignments with it) the GET that found it gone.
    assert!(
        emulator.requests().iter().any(|r| (r.method == "DELETE" || (r.method == "GET" && r.status == 404)) && r.path.eq_ignore_ascii_case(&id)),
        "the role assignment controller's cleanup (finalizer) reached ARM"
    );
    assert!(emulator.role_assignments().is_empty(), "{:?}", emulator.role_assignments());
    assert!(emulator.resource(&scope).is_none(), "the workspace too");
    env.finish().await;
}
