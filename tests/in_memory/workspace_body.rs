//! The workspace body the operator builds, against Microsoft's official example and the ARM schema.

use crate::support;

use aml_operator::armspec;
use aml_operator::controller::{AmlKind, Resolved, Target};
use aml_operator::arm::{ClientCredential, Secret, ServicePrincipal};
use aml_operator::crd::AmlWorkspace;
use serde_json::{Value, json};

fn resolved(sub: &str) -> Resolved {
    Resolved {
        principal: ServicePrincipal {
            tenant_id: "t".into(),
            client_id: "c".into(),
            credential: ClientCredential::Secret(Secret::new("s".into())),
            subscription_id: Some(sub.into()),
        },
        parent: None,
        references: Default::default(),
    }
}

/// An AmlWorkspace whose spec says what examples/Workspace/create.json sends.
fn from_example(request: &Value) -> AmlWorkspace {
    let props = &request["properties"];
    let uai: Vec<String> = request["identity"]["userAssignedIdentities"].as_object().unwrap().keys().cloned().collect();
    let link = &props["sharedPrivateLinkResources"][0];
    serde_json::from_value(json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
        "metadata": {"name": "testworkspace", "namespace": "ns"},
        "spec": {
            "resourceGroup": "workspace-1234",
            "location": request["location"],
            "identity": {"type": request["identity"]["type"], "userAssignedIdentities": uai},
            "friendlyName": props["friendlyName"],
            "description": props["description"],
            "containerRegistry": props["containerRegistry"],
            "keyVault": props["keyVault"],
            "applicationInsights": props["applicationInsights"],
            "storageAccount": props["storageAccount"],
            "encryption": props["encryption"],
            "hbiWorkspace": props["hbiWorkspace"],
            "sharedPrivateLinkResources": [{
                "name": link["name"],
                "privateLinkResourceId": link["properties"]["privateLinkResourceId"],
                "groupId": link["properties"]["groupId"],
                "requestMessage": link["properties"]["requestMessage"],
                "status": link["properties"]["status"],
            }]
        }
    }))
    .expect("the example maps onto the spec")
}

#[test]
fn the_body_for_the_official_create_example_equals_its_request_and_validates() {
    let Some(dir) = support::specs_dir_for_tests() else { return };
    let (request, _) = armspec::load_example(&dir, "Workspace/create.json").expect("example");
    let ws = from_example(&request);
    let target: Target = ws.target(&resolved("00000000-1111-2222-3333-444444444444")).unwrap();
    assert_eq!(
        target.arm_id,
        "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/workspace-1234/providers/Microsoft.MachineLearningServices/workspaces/testworkspace"
    );
    let body = ws.desired(&target).unwrap();
    assert_eq!(body, request, "built body differs from the official example");
    armspec::shared(&dir).unwrap().validate(AmlWorkspace::ARM_TYPE, "testworkspace", &body).expect("valid per ARM schema");
}

#[test]
fn a_minimal_spec_builds_a_minimal_valid_body() {
    let ws: AmlWorkspace = serde_json::from_value(json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
        "metadata": {"name": "w1", "namespace": "ns"},
        "spec": {"resourceGroup": "rg", "location": "westeurope", "azureName": "team-ws"}
    }))
    .unwrap();
    let target = ws.target(&resolved("sub")).unwrap();
    assert!(target.arm_id.ends_with("/workspaces/team-ws"), "azureName wins over metadata.name");
    let body = ws.desired(&target).unwrap();
    assert_eq!(body, json!({"location": "westeurope", "properties": {}}));
    if let Some(dir) = support::specs_dir_for_tests() {
        armspec::shared(&dir).unwrap().validate(AmlWorkspace::ARM_TYPE, "team-ws", &body).expect("valid");
    }
}

#[test]
fn the_official_get_example_yields_the_status_outputs() {
    let Some(dir) = support::specs_dir_for_tests() else { return };
    let text = std::fs::read_to_string(dir.join("2024-10-01/examples/Workspace/get.json")).expect("example");
    let example: Value = serde_json::from_str(&text).unwrap();
    let response = example["responses"]["200"]["body"].clone();
    let outputs = AmlWorkspace::outputs(&response);
    // The example carries discoveryUrl (but no workspaceId or mlFlowTrackingUri).
    assert_eq!(outputs.get("discoveryUrl"), response.pointer("/properties/discoveryUrl"));
    assert_eq!(outputs.len(), 1, "{outputs:?}");
}

#[test]
fn without_any_subscription_the_error_says_where_to_set_one() {
    let ws: AmlWorkspace = serde_json::from_value(json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
        "metadata": {"name": "w1", "namespace": "ns"},
        "spec": {"resourceGroup": "rg", "location": "eastus"}
    }))
    .unwrap();
    let mut r = resolved("x");
    r.principal.subscription_id = None;
    let err = ws.target(&r).unwrap_err();
    assert_eq!(err.reason(), "SubscriptionUnknown");
    assert!(err.message().contains("spec.subscriptionId"), "{}", err.message());
}
