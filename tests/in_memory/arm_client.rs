//! The ARM client against the emulator: tokens, GET/PUT/DELETE, both LRO headers, throttling,
//! error bodies and a wrong secret.

use crate::support;

use aml_operator::arm::{
    ArmClient, ClientCredential, CloudConfig, DeleteOutcome, ErrorClass, OperationKind, PollOutcome, PostOutcome, Secret,
    ServicePrincipal, WriteOutcome,
};
use aml_operator::emulator::{Emulator, Fault, Principal};
use serde_json::json;
use std::time::Duration;

const API: &str = "2024-10-01";
const WS: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws1";

async fn setup() -> (Emulator, ArmClient) {
    let config = support::emulator_config();
    let ca_file = config.ca_file.clone().unwrap();
    let emulator = Emulator::start(config).await.unwrap();
    let client = ArmClient::new(&CloudConfig {
        arm_endpoint: emulator.arm_endpoint(),
        authority_host: emulator.authority_host(),
        ca_file: Some(ca_file),
        ..CloudConfig::default()
    })
    .unwrap();
    (emulator, client)
}

fn sp(secret: &str) -> ServicePrincipal {
    let p = Principal::default();
    ServicePrincipal {
        tenant_id: p.tenant_id,
        client_id: p.client_id,
        credential: ClientCredential::Secret(Secret::new(secret.into())),
        subscription_id: None,
    }
}

fn good() -> ServicePrincipal {
    sp(&Principal::default().client_secret)
}

#[tokio::test]
async fn one_token_serves_many_requests_and_absent_resources_are_none() {
    let (emu, arm) = setup().await;
    for _ in 0..3 {
        assert!(arm.get(&good(), WS, API).await.unwrap().is_none());
    }
    assert_eq!(emu.token_requests(), 1, "the token is cached");
    assert_eq!(arm.stats().get, 3);
    assert!(emu.requests().iter().all(|r| r.status == 404));
}

#[tokio::test]
async fn workspace_put_returns_a_location_operation_that_polls_to_success() {
    let (emu, arm) = setup().await;
    let body = json!({"location": "eastus", "properties": {"friendlyName": "x"}});
    let WriteOutcome::Accepted { operation, .. } = arm.put(&good(), WS, API, &body).await.unwrap() else {
        panic!("workspace PUT is asynchronous");
    };
    assert_eq!(operation.kind, OperationKind::Location);
    assert_eq!(arm.get(&good(), WS, API).await.unwrap().unwrap()["properties"]["provisioningState"], "Creating");
    assert!(matches!(arm.poll(&good(), &operation).await.unwrap(), PollOutcome::InProgress { .. }));

    // A second write while the operation runs is a 409 Conflict.
    let err = arm.put(&good(), WS, API, &body).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Conflict);

    emu.finish_operations();
    assert_eq!(arm.poll(&good(), &operation).await.unwrap(), PollOutcome::Succeeded);
    let ws = arm.get(&good(), WS, API).await.unwrap().unwrap();
    assert_eq!(ws["properties"]["provisioningState"], "Succeeded");
    assert_eq!(ws["properties"]["friendlyName"], "x");
}

#[tokio::test]
async fn compute_put_returns_an_azure_async_operation() {
    let (emu, arm) = setup().await;
    arm.put(&good(), WS, API, &json!({"location": "eastus", "properties": {}})).await.unwrap();
    emu.finish_operations();
    let compute = format!("{WS}/computes/cpu");
    let body = json!({"location": "eastus", "properties": {"computeType": "AmlCompute", "properties": {"vmSize": "STANDARD_DS3_V2", "scaleSettings": {"maxNodeCount": 2}}}});
    let WriteOutcome::Accepted { operation, .. } = arm.put(&good(), &compute, API, &body).await.unwrap() else {
        panic!("compute PUT is asynchronous");
    };
    assert_eq!(operation.kind, OperationKind::AsyncOperation);
    emu.finish_operations();
    assert_eq!(arm.poll(&good(), &operation).await.unwrap(), PollOutcome::Succeeded);

    // DELETE needs underlyingResourceAction; with it: 202, then gone.
    let err = arm.delete(&good(), &compute, API, &[]).await.unwrap_err();
    assert_eq!(err.arm().unwrap().status, 400);
    let DeleteOutcome::Accepted(op) = arm.delete(&good(), &compute, API, &[("underlyingResourceAction", "Delete")]).await.unwrap() else {
        panic!("compute DELETE is asynchronous");
    };
    emu.finish_operations();
    assert_eq!(arm.poll(&good(), &op).await.unwrap(), PollOutcome::Succeeded);
    assert!(arm.get(&good(), &compute, API).await.unwrap().is_none());
}

#[tokio::test]
async fn delete_is_202_then_404_and_absent_is_gone() {
    let (emu, arm) = setup().await;
    arm.put(&good(), WS, API, &json!({"location": "eastus", "properties": {}})).await.unwrap();
    emu.finish_operations();
    let DeleteOutcome::Accepted(op) = arm.delete(&good(), WS, API, &[]).await.unwrap() else {
        panic!("workspace DELETE is asynchronous");
    };
    emu.finish_operations();
    assert_eq!(arm.poll(&good(), &op).await.unwrap(), PollOutcome::Succeeded);
    assert!(arm.get(&good(), WS, API).await.unwrap().is_none());
    assert_eq!(arm.delete(&good(), WS, API, &[]).await.unwrap(), DeleteOutcome::Gone);
    let statuses: Vec<u16> = emu.requests().iter().filter(|r| r.method == "DELETE").map(|r| r.status).collect();
    assert_eq!(statuses, vec![202, 204]);
}

#[tokio::test]
async fn throttling_is_classified_with_its_retry_after() {
    let (emu, arm) = setup().await;
    emu.inject(Fault {
        method: Some("GET".into()),
        path_contains: Some("/workspaces/ws1".into()),
        status: 429,
        code: "TooManyRequests".into(),
        retry_after_secs: Some(1),
        times: 1,
    });
    let err = arm.get(&good(), WS, API).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Throttled(Duration::from_secs(1)));
    assert_eq!(err.reason(), "ArmThrottled");
    // The next request waits out the Retry-After, then succeeds (404 = absent).
    let started = std::time::Instant::now();
    assert!(arm.get(&good(), WS, API).await.unwrap().is_none());
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn arm_error_bodies_become_typed_errors() {
    let (emu, arm) = setup().await;
    emu.inject(Fault {
        method: Some("PUT".into()),
        path_contains: None,
        status: 403,
        code: "AuthorizationFailed".into(),
        retry_after_secs: None,
        times: 1,
    });
    let err = arm.put(&good(), WS, API, &json!({"location": "eastus", "properties": {}})).await.unwrap_err();
    let e = err.arm().expect("an ARM error");
    assert_eq!((e.status, e.code.as_str()), (403, "AuthorizationFailed"));
    assert_eq!(err.class(), ErrorClass::NeedsPerson);
    // A body ARM's validation refuses: a 400 that names what is wrong.
    let bad = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/x";
    let err = arm.put(&good(), bad, API, &json!({"location": "eastus", "properties": {}})).await.unwrap_err();
    let e = err.arm().unwrap();
    assert_eq!((e.status, e.code.as_str()), (400, "InvalidResourceName"));
    assert!(!e.message.is_empty());
}

#[tokio::test]
async fn a_wrong_secret_is_an_authentication_failure_that_never_shows_the_secret() {
    const WRONG: &str = "not-the-secret-8c1f0e";
    let (emu, arm) = setup().await;
    let err = arm.get(&sp(WRONG), WS, API).await.unwrap_err();
    assert_eq!(err.reason(), "AuthenticationFailed");
    assert_eq!(err.class(), ErrorClass::NeedsPerson);
    let mut text = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(text.contains("AADSTS7000215"), "{text}");
    assert!(!text.contains(WRONG), "secret leaked: {text}");
    assert!(emu.requests().is_empty(), "no ARM request without a token");
}

#[tokio::test]
async fn list_keys_is_a_post_that_answers_keys() {
    let (emu, arm) = setup().await;
    arm.put(&good(), WS, API, &json!({"location": "eastus", "properties": {}})).await.unwrap();
    emu.finish_operations();
    let ep = format!("{WS}/onlineEndpoints/ep1");
    arm.put(&good(), &ep, API, &json!({"location": "eastus", "properties": {"authMode": "Key"}})).await.unwrap();
    emu.finish_operations();
    let PostOutcome::Done(Some(keys)) = arm.post(&good(), &format!("{ep}/listKeys"), API, None).await.unwrap() else {
        panic!("listKeys answers a body");
    };
    assert!(keys["primaryKey"].as_str().is_some_and(|k| !k.is_empty()));
}
