//! "Never lose, duplicate or leak": every fault the emulator can inject, on the route of every kind,
//! in every phase (create, update, delete with each policy), driven through the real pipeline until
//! it converges; and the restart points (killed after the PUT, while polling, after the DELETE).
//!
//! The first part unit-tests each fault against the ARM client (and `LocalKube::fail_next`); the
//! second is the matrix; the third, the restart scenarios.

use crate::support;

use aml_operator::arm::{
    ArmClient, CloudConfig, DeleteOutcome, ErrorClass, PollOutcome, Secret as ArmSecret, ServicePrincipal,
    WriteOutcome,
};
use aml_operator::controller::{AmlKind, Config, Context, Parent, Resolved, drift, pipeline};
use aml_operator::arm::ids;
use aml_operator::crd::{
    AmlCodeVersion, AmlCompute, AmlDatastore, AmlEnvironmentVersion, AmlModelVersion, AmlOnlineDeployment, AmlOnlineEndpoint, AmlRoleAssignment,
    AmlWorkspace, RETRY_ANNOTATION,
};
use aml_operator::emulator::{
    EmulatorArgs, EmulatorConfig, Fault, FaultKind, FaultRule, OperationEnd, Principal,
};
use futures::future::join_all;
use kube::api::ObjectMeta;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use crate::support::{NS, SUBSCRIPTION, World};

const API: &str = "2024-10-01";
const RG: &str = "rg-ml";
/// The ARM client's timeout in these tests: a slow answer is delayed past it.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(1000);
/// How late a slow answer comes.
const SLOW_MS: u64 = 1500;
/// `x-ms-async-operation-timeout` announced by an operation that outlasts it (it runs twice that).
const OUTLAST_MS: u64 = 200;

fn ws_id(name: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{name}")
}

fn ep_id(name: &str) -> String {
    format!("{}/onlineEndpoints/{name}", ws_id("ws1"))
}

fn principal() -> ServicePrincipal {
    let p = Principal::default();
    ServicePrincipal {
        tenant_id: p.tenant_id,
        client_id: p.client_id,
        credential: aml_operator::arm::ClientCredential::Secret(ArmSecret::new(p.client_secret)),
        subscription_id: Some(SUBSCRIPTION.into()),
    }
}

fn fast_emulator() -> EmulatorConfig {
    EmulatorConfig { operation_duration: Duration::from_millis(30), retry_after_secs: 0, ..support::emulator_config() }
}

fn cloud(w: &World) -> CloudConfig {
    CloudConfig {
        arm_endpoint: w.emulator.arm_endpoint(),
        authority_host: w.emulator.authority_host(),
        ca_file: Some(w.ca_file.clone()),
        timeout: CLIENT_TIMEOUT,
        ..CloudConfig::default()
    }
}

/// A fresh controller context (no token, no caches) whose ARM client times out after [`CLIENT_TIMEOUT`],
/// and whose backoff after a transient operation failure starts at 100 ms (status holds the retry
/// time in whole seconds, so a retry comes within about a second).
fn fresh_ctx(w: &World) -> Arc<Context> {
    ctx_with_timeout(w, CLIENT_TIMEOUT)
}

/// As [`fresh_ctx`], with the ARM client's timeout `timeout`.
fn ctx_with_timeout(w: &World, timeout: Duration) -> Arc<Context> {
    let arm = ArmClient::new(&CloudConfig { timeout, ..cloud(w) }).expect("ARM client");
    let config = Config { resync: Duration::from_secs(300), base_backoff: Duration::from_millis(100), ..Config::default() };
    Arc::new(Context::new(w.client.clone(), arm, config))
}

fn status_fault(method: &str, path: &str, status: u16, code: &str, retry_after: Option<u64>, times: usize) -> Fault {
    Fault {
        method: Some(method.into()),
        path_contains: Some(path.into()),
        status,
        code: code.into(),
        retry_after_secs: retry_after,
        times,
    }
}

// =============================================================================================
// Part 1: each fault, seen from the ARM client

async fn client_world() -> (World, ArmClient) {
    let w = World::with_emulator(fast_emulator()).await;
    let arm = ArmClient::new(&cloud(&w)).expect("ARM client");
    (w, arm)
}

fn ws_body() -> Value {
    json!({"location": "eastus", "properties": {"friendlyName": "x"}})
}

#[tokio::test]
async fn status_faults_answer_429_with_retry_after_and_500_503_as_transient() {
    let (w, arm) = client_world().await;
    let id = ws_id("wsf");
    // The original `Fault` still works, as a rule of kind Status.
    w.emulator.inject(status_fault("GET", "/workspaces/wsf", 429, "TooManyRequests", Some(1), 1));
    let err = arm.get(&principal(), &id, API).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Throttled(Duration::from_secs(1)));
    let started = Instant::now();
    assert!(arm.get(&principal(), &id, API).await.unwrap().is_none(), "used up: 404 again");
    assert!(started.elapsed() >= Duration::from_millis(900), "the client waited out Retry-After");

    for status in [500u16, 503] {
        w.emulator.inject_rule(format!("PUT:/workspaces/wsf:{status}:1").parse().unwrap());
        let err = arm.put(&principal(), &id, API, &ws_body()).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Transient, "{status}: {err:?}");
        assert_eq!(err.arm().map(|e| e.status), Some(status));
        assert!(w.emulator.resource(&id).is_none(), "an error answer has no effect");
    }
    let statuses: Vec<u16> = w.emulator.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 404, 500, 503]);
    assert!(w.emulator.requests().iter().all(|r| !r.created));
}

#[tokio::test]
async fn a_slow_answer_past_the_client_timeout_is_a_transport_error_yet_takes_effect() {
    let (w, arm) = client_world().await;
    let id = ws_id("wsf");
    w.emulator.inject_rule(FaultRule::new(Some("PUT"), Some("/workspaces/wsf"), FaultKind::Delay { ms: SLOW_MS }, 1));
    let started = Instant::now();
    let err = arm.put(&principal(), &id, API, &ws_body()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(SLOW_MS), "the client gave up at its timeout");
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(err.reason(), "ArmUnreachable", "{err:?}");
    assert!(w.emulator.resource(&id).is_some(), "the emulator did the work before answering late");
    let log = w.emulator.requests();
    assert_eq!((log.len(), log[0].status, log[0].created), (1, 202, true));
    // A delay on a GET is just as slow, and the fault is used up after one request.
    w.emulator.inject_rule("GET:/workspaces/wsf:delay=300:1".parse().unwrap());
    let started = Instant::now();
    assert!(arm.get(&principal(), &id, API).await.unwrap().is_some());
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_dropped_connection_is_a_transport_error_before_or_after_handling() {
    let (w, arm) = client_world().await;
    let id = ws_id("wsf");
    w.emulator.inject_rule(FaultRule::new(Some("PUT"), Some("/workspaces/wsf"), FaultKind::Drop { after_handling: false }, 1));
    let err = arm.put(&principal(), &id, API, &ws_body()).await.unwrap_err();
    assert_eq!(err.reason(), "ArmUnreachable", "{err:?}");
    assert!(w.emulator.resource(&id).is_none(), "dropped before handling: no effect");

    w.emulator.inject_rule("PUT:/workspaces/wsf:drop-after:1".parse().unwrap());
    let err = arm.put(&principal(), &id, API, &ws_body()).await.unwrap_err();
    assert_eq!(err.reason(), "ArmUnreachable", "{err:?}");
    assert!(w.emulator.resource(&id).is_some(), "handled, only the answer was lost");

    let log: Vec<(u16, bool)> = w.emulator.requests().iter().map(|r| (r.status, r.created)).collect();
    assert_eq!(log, vec![(0, false), (0, true)], "recorded without an answer; the client did not resend");
    // The client recovers on a new connection.
    assert!(arm.get(&principal(), &id, API).await.unwrap().is_some());
}

#[tokio::test]
async fn operations_can_be_made_to_end_failed_or_canceled() {
    let (w, arm) = client_world().await;
    let id = ws_id("wsf");
    w.emulator.inject_rule(FaultRule::new(
        Some("PUT"),
        Some("/workspaces/wsf"),
        FaultKind::OperationEnds { end: OperationEnd::Failed, code: "QuotaExceeded".into() },
        1,
    ));
    let WriteOutcome::Accepted { operation, .. } = arm.put(&principal(), &id, API, &ws_body()).await.unwrap() else {
        panic!("a workspace PUT is asynchronous")
    };
    w.emulator.finish_operations();
    match arm.poll(&principal(), &operation).await.unwrap() {
        PollOutcome::Failed(e) => assert_eq!(e.code, "QuotaExceeded"),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(w.emulator.resource(&id).unwrap()["properties"]["provisioningState"], "Failed");

    // A PUT again (the person fixed the cause) succeeds; then a canceled delete leaves it in place.
    let WriteOutcome::Accepted { operation, .. } = arm.put(&principal(), &id, API, &ws_body()).await.unwrap() else {
        panic!("asynchronous")
    };
    w.emulator.finish_operations();
    assert_eq!(arm.poll(&principal(), &operation).await.unwrap(), PollOutcome::Succeeded);
    w.emulator.inject_rule("DELETE:/workspaces/wsf:canceled:1".parse().unwrap());
    let DeleteOutcome::Accepted(op) = arm.delete(&principal(), &id, API, &[]).await.unwrap() else {
        panic!("a delete is asynchronous")
    };
    w.emulator.finish_operations();
    assert!(matches!(arm.poll(&principal(), &op).await.unwrap(), PollOutcome::Failed(_)));
    assert_eq!(w.emulator.resource(&id).unwrap()["properties"]["provisioningState"], "Canceled");
    // Deleting again works.
    let DeleteOutcome::Accepted(op) = arm.delete(&principal(), &id, API, &[]).await.unwrap() else { panic!() };
    w.emulator.finish_operations();
    assert_eq!(arm.poll(&principal(), &op).await.unwrap(), PollOutcome::Succeeded);
    assert!(w.emulator.resource(&id).is_none());
}

#[tokio::test]
async fn an_operation_can_outlast_its_announced_timeout() {
    let (w, arm) = client_world().await;
    let id = ws_id("wsf");
    w.emulator.inject_rule(FaultRule::new(
        Some("PUT"),
        Some("/workspaces/wsf"),
        FaultKind::OperationOutlasts { timeout_ms: 300 },
        1,
    ));
    // The header, seen on the wire.
    let token = raw_token(&w).await;
    let http = raw_client(&w);
    let resp = http
        .put(format!("{}{id}?api-version={API}", w.emulator.arm_endpoint()))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(ws_body().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    assert_eq!(resp.headers()["x-ms-async-operation-timeout"], "PT0.3S");
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let operation = aml_operator::arm::Operation {
        url: location,
        kind: aml_operator::arm::OperationKind::Location,
        retry_after: Duration::ZERO,
    };
    // finish_operations does not end it, and it still runs past the timeout it announced.
    w.emulator.finish_operations();
    tokio::time::sleep(Duration::from_millis(350)).await;
    w.emulator.finish_operations();
    assert!(matches!(arm.poll(&principal(), &operation).await.unwrap(), PollOutcome::InProgress { .. }));
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(arm.poll(&principal(), &operation).await.unwrap(), PollOutcome::Succeeded);
    assert_eq!(w.emulator.resource(&id).unwrap()["properties"]["provisioningState"], "Succeeded");
}

#[tokio::test]
async fn token_endpoint_failures_503_and_invalid_client_fail_the_call_and_pass() {
    let (w, _) = client_world().await;
    let id = ws_id("wsf");
    for (kind, _what) in [("503=temporarily_unavailable", "unavailable"), ("400=invalid_client", "invalid client")] {
        // A fresh client has no token yet.
        let arm = ArmClient::new(&cloud(&w)).unwrap();
        w.emulator.inject_rule(format!("POST:/oauth2/:{kind}:1").parse().unwrap());
        let before = w.emulator.token_requests();
        let err = arm.get(&principal(), &id, API).await.unwrap_err();
        assert!(err.arm().is_none(), "not an ARM answer: {err:?}");
        assert!(!format!("{err:?}").contains(&Principal::default().client_secret), "no secret in the error");
        assert!(w.emulator.token_requests() > before);
        assert_eq!(w.emulator.pending_faults(), 0);
        // The next call gets a token and reaches ARM (404: absent).
        assert!(arm.get(&principal(), &id, API).await.unwrap().is_none(), "{kind}");
    }
    assert!(w.emulator.requests().iter().all(|r| r.status == 404), "no ARM request was sent without a token");
}

#[tokio::test]
async fn a_rule_fires_for_one_in_n_matching_requests_up_to_its_count() {
    let (w, arm) = client_world().await;
    let id = ws_id("wsf");
    w.emulator.inject_rule("get:/workspaces/WSF:503:2:2".parse().unwrap());
    for _ in 0..6 {
        let _ = arm.get(&principal(), &id, API).await;
    }
    let statuses: Vec<u16> = w.emulator.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![404, 503, 404, 503, 404, 404]);
    // Rules only match their method and path.
    w.emulator.inject_rule("DELETE::500:1".parse().unwrap());
    assert!(arm.get(&principal(), &id, API).await.unwrap().is_none());
    assert_eq!(w.emulator.pending_faults(), 1);
    w.emulator.clear_faults();
    assert_eq!(w.emulator.pending_faults(), 0);
}

#[test]
fn the_emulator_command_takes_repeatable_fault_flags() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: EmulatorArgs,
    }
    use clap::Parser;
    let cli = Cli::try_parse_from([
        "emulator",
        "--fault",
        "PUT:/workspaces/:503:2",
        "--fault",
        "*:oauth2:400=invalid_client:1",
        "--fault",
        "GET:/computes/:delay=3000:1:3",
        "--write-limit",
        "200:10",
    ])
    .unwrap();
    let faults = &cli.args.faults;
    assert_eq!(faults.len(), 3);
    assert_eq!(faults[0].kind, FaultKind::Status { status: 503, code: "ServiceUnavailable".into(), retry_after_secs: None });
    assert_eq!((faults[0].method.as_deref(), faults[0].times), (Some("PUT"), 2));
    assert_eq!(faults[1].method, None);
    assert_eq!(faults[2].kind, FaultKind::Delay { ms: 3000 });
    assert_eq!(faults[2].one_in, 3);
    assert_eq!(cli.args.write_limit, Some((200, 10.0)));
    let err = Cli::try_parse_from(["emulator", "--fault", "PUT:/x:sometimes:1"]).err().unwrap().to_string();
    assert!(err.contains("unknown kind"), "{err}");
}

#[test]
fn the_emulator_command_sets_what_azure_offers() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: EmulatorArgs,
    }
    use clap::Parser;
    // Without flags: the built-in catalog, the same one the embedded emulator uses.
    let cli = Cli::try_parse_from(["emulator"]).unwrap();
    assert_eq!(cli.args.catalog(), aml_operator::emulator::Catalog::default());
    assert_eq!(EmulatorConfig::default().catalog, cli.args.catalog());
    let cli = Cli::try_parse_from([
        "emulator",
        "--locations",
        "East US,westeurope",
        "--locations",
        "Microsoft.MachineLearningServices/workspaces=westeurope",
        "--vm-sizes",
        "Standard_DS3_v2:standardDSv2Family:4,Standard_NC6:standardNCFamily:6@westus2",
        "--core-quota",
        "100",
        "--core-quota",
        "eastus/standardDSv2Family=24",
    ])
    .unwrap();
    let catalog = cli.args.catalog();
    assert_eq!(catalog.locations, vec!["eastus".to_string(), "westeurope".to_string()]);
    assert!(catalog.offers("Microsoft.Storage/storageAccounts", "eastus"));
    assert!(!catalog.offers("Microsoft.MachineLearningServices/workspaces", "eastus"), "workspaces: westeurope only");
    assert!(catalog.vm_size("STANDARD_DS3_V2", "westeurope").is_some());
    assert!(catalog.vm_size("Standard_NC6", "westeurope").is_none(), "offered in westus2 only");
    assert_eq!(catalog.core_limit("standardDSv2Family", "eastus"), 24);
    assert_eq!(catalog.core_limit("standardDSv2Family", "westeurope"), 100);
    for bad in [["--vm-sizes", "Standard_DS3_v2:4"], ["--core-quota", "eastus/x=lots"], ["--locations", ","]] {
        assert!(Cli::try_parse_from(["emulator", bad[0], bad[1]]).is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn localkube_fails_the_next_matching_requests_and_only_those() {
    let w = World::new().await;
    w.good_credentials();
    w.kube.put(workspace("wsk", json!({})));
    let path = kpath::<AmlWorkspace>("wsk");
    // Anchored: the finalizer patch of the object, not its status.
    w.kube.fail_next("PATCH", "amlworkspaces/wsk$", 500, 1);
    let err = w.reconcile::<AmlWorkspace>(&path).await.unwrap_err();
    assert_eq!(err.reason(), "FinalizerError", "{err:?}");
    assert!(w.kube.raw(&path).unwrap()["metadata"].get("finalizers").is_none_or(Value::is_null));
    assert_eq!(w.kube.pending_faults(), 0);
    assert!(w.emulator.requests().is_empty(), "no ARM call without the finalizer in place");
    // A status write fails twice (the write and the failure report), then works.
    w.kube.fail_next("PATCH", "amlworkspaces/wsk/status", 409, 2);
    let err = w.reconcile::<AmlWorkspace>(&path).await.unwrap_err();
    assert_eq!(err.reason(), "KubernetesApiError", "{err:?}");
    let status = w.kube.raw(&path).unwrap()["status"].clone();
    assert!(status["operation"].is_null() && status["armId"].is_null(), "no status written: {status}");
    assert_eq!(w.kube.pending_faults(), 0);
}

async fn raw_token(w: &World) -> String {
    let p = Principal::default();
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}&scope={}%2F.default",
        p.client_id,
        p.client_secret,
        w.emulator.arm_endpoint().replace(':', "%3A").replace('/', "%2F")
    );
    let resp = raw_client(w)
        .post(format!("{}{}/oauth2/v2.0/token", w.emulator.authority_host(), p.tenant_id))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

fn raw_client(w: &World) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(w.emulator.ca_pem().as_bytes()).unwrap();
    reqwest::Client::builder().tls_certs_only([cert]).timeout(Duration::from_secs(10)).build().unwrap()
}

// =============================================================================================
// Part 2: the matrix

/// What the matrix needs of a kind, beyond [`AmlKind`].
trait Kind: AmlKind {
    /// Prefix of the case object names.
    const PREFIX: &'static str;
    /// How an update of tags reaches ARM.
    const UPDATE_METHOD: &'static str;
    /// The object `name` with `extra` merged into a valid spec.
    fn build(name: &str, extra: Value) -> Self;
    /// Its ARM id.
    fn arm_id(name: &str) -> String;
    /// The ready parent, as the pipeline resolves it.
    fn ready_parent() -> Option<Parent>;
    /// Whether the kind's writes are long-running operations (polled); role assignments are not.
    const POLLS: bool = true;
    /// A mutable field set to `value` in the object's JSON (a person's edit): a tag by default.
    fn set_field(obj: &mut Value, key: &str, value: &str) {
        obj["spec"]["tags"][key] = json!(value);
    }
    /// Whether ARM's answer shows the edit `set_field(.., "phase", "update")`.
    fn shows_update(actual: &Value) -> bool {
        actual["tags"]["phase"] == "update"
    }
    /// The owned maps ([`AmlKind::owned_maps`]) the removal cases take an entry out of: the spec's
    /// field, where ARM holds the map, and the method of the write that removes the entry.
    fn removable_maps() -> Vec<(&'static str, &'static str, &'static str)> {
        vec![("tags", "/tags", Self::UPDATE_METHOD)]
    }
    /// Whether `id` is a resource ARM made by itself for one of the kind's (an asset's container,
    /// created with its first version and left when the version is deleted, as Azure ML's tools
    /// leave it): never an orphan of the operator's.
    fn made_by_arm(_id: &str) -> bool {
        false
    }
}

fn merged(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), namespace: Some(NS.into()), ..Default::default() }
}

fn parent(arm_id: String) -> Option<Parent> {
    Some(Parent {
        arm_id,
        subscription: SUBSCRIPTION.into(),
        resource_group: RG.into(),
        location: "eastus".into(),
        owner: None,
    })
}

fn workspace(name: &str, extra: Value) -> AmlWorkspace {
    let spec = merged(
        json!({
            "resourceGroup": RG,
            "location": "eastus",
            "friendlyName": format!("Workspace {name}"),
            "tags": {"team": "a"},
            "storageAccount": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Storage/storageAccounts/sa1"),
            "keyVault": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/kv1"),
        }),
        extra,
    );
    AmlWorkspace { metadata: meta(name), spec: serde_json::from_value(spec).expect("valid workspace spec"), status: None }
}

impl Kind for AmlWorkspace {
    const PREFIX: &'static str = "w";
    const UPDATE_METHOD: &'static str = "PUT";
    fn build(name: &str, extra: Value) -> Self {
        workspace(name, extra)
    }
    fn arm_id(name: &str) -> String {
        ws_id(name)
    }
    fn ready_parent() -> Option<Parent> {
        None
    }
}

impl Kind for AmlCompute {
    const PREFIX: &'static str = "c";
    const UPDATE_METHOD: &'static str = "PUT";
    fn build(name: &str, extra: Value) -> Self {
        let spec = merged(
            json!({
                "workspaceRef": {"name": "ws1"},
                "computeType": "AmlCompute",
                "description": "training cluster",
                "tags": {"team": "a"},
                "amlCompute": {
                    "vmSize": "STANDARD_DS3_V2",
                    "vmPriority": "Dedicated",
                    "osType": "Linux",
                    "scaleSettings": {"maxNodeCount": 4, "minNodeCount": 0, "nodeIdleTimeBeforeScaleDown": "PT5M"}
                }
            }),
            extra,
        );
        AmlCompute { metadata: meta(name), spec: serde_json::from_value(spec).expect("valid compute spec"), status: None }
    }
    fn arm_id(name: &str) -> String {
        format!("{}/computes/{name}", ws_id("ws1"))
    }
    fn ready_parent() -> Option<Parent> {
        parent(ws_id("ws1"))
    }
}

impl Kind for AmlOnlineEndpoint {
    const PREFIX: &'static str = "e";
    const UPDATE_METHOD: &'static str = "PUT";
    fn build(name: &str, extra: Value) -> Self {
        let spec = merged(
            json!({"workspaceRef": {"name": "ws1"}, "authMode": "Key", "description": "scoring", "tags": {"team": "a"}}),
            extra,
        );
        AmlOnlineEndpoint { metadata: meta(name), spec: serde_json::from_value(spec).expect("valid endpoint spec"), status: None }
    }
    fn arm_id(name: &str) -> String {
        ep_id(name)
    }
    fn ready_parent() -> Option<Parent> {
        parent(ws_id("ws1"))
    }
}

impl Kind for AmlOnlineDeployment {
    const PREFIX: &'static str = "d";
    /// Tags alone go by PATCH for a deployment.
    const UPDATE_METHOD: &'static str = "PATCH";
    fn build(name: &str, extra: Value) -> Self {
        let spec = merged(
            json!({
                "endpointRef": {"name": "ep1"},
                "model": "azureml://registries/azureml/models/sklearn-model/versions/1",
                "environmentId": "azureml://registries/azureml/environments/sklearn-env/versions/3",
                "codeConfiguration": {"codeId": "azureml://registries/azureml/codes/score-code/versions/1", "scoringScript": "score.py"},
                "instanceType": "Standard_DS3_v2",
                "instanceCount": 1,
                "tags": {"team": "a"},
            }),
            extra,
        );
        AmlOnlineDeployment { metadata: meta(name), spec: serde_json::from_value(spec).expect("valid deployment spec"), status: None }
    }
    fn arm_id(name: &str) -> String {
        format!("{}/deployments/{name}", ep_id("ep1"))
    }
    fn removable_maps() -> Vec<(&'static str, &'static str, &'static str)> {
        vec![("tags", "/tags", Self::UPDATE_METHOD), ("environmentVariables", "/properties/environmentVariables", "PUT")]
    }
    fn ready_parent() -> Option<Parent> {
        parent(ep_id("ep1"))
    }
}

/// What the three asset versions share in the matrix: synchronous writes, tags inside `properties`.
macro_rules! asset_case {
    ($kind:ident, $prefix:literal, $segment:literal, $fields:expr) => {
        impl Kind for $kind {
            const PREFIX: &'static str = $prefix;
            const UPDATE_METHOD: &'static str = "PUT";
            const POLLS: bool = false;
            fn build(name: &str, extra: Value) -> Self {
                let mut spec = merged(json!({"workspaceRef": {"name": "ws1"}, "version": "1", "tags": {"team": "a"}}), $fields);
                spec = merged(spec, extra);
                Self { metadata: meta(name), spec: serde_json::from_value(spec).expect("valid asset spec"), status: None }
            }
            fn arm_id(name: &str) -> String {
                format!("{}/{}/{name}/versions/1", ws_id("ws1"), $segment)
            }
            fn ready_parent() -> Option<Parent> {
                parent(ws_id("ws1"))
            }
            fn shows_update(actual: &Value) -> bool {
                actual["properties"]["tags"]["phase"] == "update"
            }
            fn removable_maps() -> Vec<(&'static str, &'static str, &'static str)> {
                vec![("tags", "/properties/tags", "PUT")]
            }
            fn made_by_arm(id: &str) -> bool {
                id.to_ascii_lowercase().rsplit_once('/').is_some_and(|(rest, _)| rest.ends_with(concat!("/", $segment)))
            }
        }
    };
}

asset_case!(AmlModelVersion, "mv", "models", json!({"modelUri": "azureml://datastores/workspaceblobstore/paths/m/", "modelType": "custom_model"}));
asset_case!(AmlEnvironmentVersion, "ev", "environments", json!({"image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"}));
asset_case!(AmlCodeVersion, "cv", "codes", json!({"codeUri": "azureml://datastores/workspaceblobstore/paths/code/"}));

impl Kind for AmlDatastore {
    const PREFIX: &'static str = "ds";
    const UPDATE_METHOD: &'static str = "PUT";
    const POLLS: bool = false;
    fn build(name: &str, extra: Value) -> Self {
        let spec = merged(
            json!({"workspaceRef": {"name": "ws1"}, "datastoreType": "AzureBlob", "accountName": "teamadata", "containerName": "training",
                   "tags": {"team": "a"}, "storageCredentials": {"credentialsType": "AccountKey", "secretRef": {"name": "ds-key", "key": "key"}}}),
            extra,
        );
        AmlDatastore { metadata: meta(name), spec: serde_json::from_value(spec).expect("valid datastore spec"), status: None }
    }
    fn arm_id(name: &str) -> String {
        format!("{}/datastores/{name}", ws_id("ws1"))
    }
    fn ready_parent() -> Option<Parent> {
        parent(ws_id("ws1"))
    }
    fn shows_update(actual: &Value) -> bool {
        actual["properties"]["tags"]["phase"] == "update"
    }
    fn removable_maps() -> Vec<(&'static str, &'static str, &'static str)> {
        vec![("tags", "/properties/tags", "PUT")]
    }
}

/// The principal a role-assignment case grants to: a GUID derived from the case name, so every case
/// has its own assignment.
fn case_principal(name: &str) -> String {
    ids::uuid_v5(&[0u8; 16], name.as_bytes())
}

impl Kind for AmlRoleAssignment {
    const PREFIX: &'static str = "r";
    const UPDATE_METHOD: &'static str = "PUT";
    const POLLS: bool = false;
    fn build(name: &str, extra: Value) -> Self {
        let spec = merged(
            json!({
                "workspaceRef": {"name": "ws1"},
                "role": "AzureMLDataScientist",
                "principalId": case_principal(name),
                "principalType": "ServicePrincipal",
                "description": "case",
            }),
            extra,
        );
        AmlRoleAssignment { metadata: meta(name), spec: serde_json::from_value(spec).expect("valid role assignment spec"), status: None }
    }
    fn arm_id(name: &str) -> String {
        let scope = ws_id("ws1");
        ids::role_assignment_id(&scope, &ids::role_assignment_name(&scope, &case_principal(name), "f6c7c914-8db3-469d-8ca1-694a8f32e121"))
    }
    fn ready_parent() -> Option<Parent> {
        parent(ws_id("ws1"))
    }
    /// Role assignments have no tags: the description is what may change.
    fn set_field(obj: &mut Value, key: &str, value: &str) {
        obj["spec"]["description"] = json!(format!("{key}={value}"));
    }
    fn shows_update(actual: &Value) -> bool {
        actual["properties"]["description"] == "phase=update"
    }
    /// Role assignments own no map.
    fn removable_maps() -> Vec<(&'static str, &'static str, &'static str)> {
        Vec::new()
    }
}

fn kpath<K: AmlKind>(name: &str) -> String {
    let plural = format!("{}s", K::kind(&()).to_lowercase());
    format!("/apis/amloperator.io/v1alpha1/namespaces/{NS}/{plural}/{name}")
}

/// The faults of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum F {
    Throttled429,
    Error500,
    Unavailable503,
    SlowAnswer,
    DropBeforeHandling,
    DropAfterHandling,
    /// The operation ends Failed with a transient code (InternalServerError): retried on its own.
    OperationFailed,
    /// The operation ends Failed with a code a person must act on (QuotaExceeded).
    OperationFailedNeedsPerson,
    OperationCanceled,
    OperationOutlastsTimeout,
    Token503,
    TokenInvalidClient,
}

const FAULTS: [F; 12] = [
    F::Throttled429,
    F::Error500,
    F::Unavailable503,
    F::SlowAnswer,
    F::DropBeforeHandling,
    F::DropAfterHandling,
    F::OperationFailed,
    F::OperationFailedNeedsPerson,
    F::OperationCanceled,
    F::OperationOutlastsTimeout,
    F::Token503,
    F::TokenInvalidClient,
];

impl F {
    fn kind(self) -> (FaultKind, usize) {
        let status = |status, code: &str, retry_after_secs| FaultKind::Status { status, code: code.into(), retry_after_secs };
        match self {
            F::Throttled429 => (status(429, "TooManyRequests", Some(1)), 1),
            F::Error500 => (status(500, "InternalServerError", None), 1),
            F::Unavailable503 => (status(503, "ServiceUnavailable", None), 3),
            F::SlowAnswer => (FaultKind::Delay { ms: SLOW_MS }, 1),
            F::DropBeforeHandling => (FaultKind::Drop { after_handling: false }, 1),
            F::DropAfterHandling => (FaultKind::Drop { after_handling: true }, 1),
            F::OperationFailed => (FaultKind::OperationEnds { end: OperationEnd::Failed, code: "InternalServerError".into() }, 1),
            F::OperationFailedNeedsPerson => (FaultKind::OperationEnds { end: OperationEnd::Failed, code: "QuotaExceeded".into() }, 1),
            F::OperationCanceled => (FaultKind::OperationEnds { end: OperationEnd::Canceled, code: "OperationCanceled".into() }, 1),
            F::OperationOutlastsTimeout => (FaultKind::OperationOutlasts { timeout_ms: OUTLAST_MS }, 1),
            F::Token503 => (status(503, "temporarily_unavailable", None), 1),
            F::TokenInvalidClient => (status(400, "invalid_client", None), 1),
        }
    }

    fn on_token_endpoint(self) -> bool {
        matches!(self, F::Token503 | F::TokenInvalidClient)
    }

    /// A write whose operation fails with a code a person must act on waits for one: the matrix
    /// plays one and edits the spec. Transient failures (and cancellations) are retried without.
    fn needs_a_spec_edit(self) -> bool {
        matches!(self, F::OperationFailedNeedsPerson)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Create,
    Update,
    Delete,
    DeleteOrphan,
    DeleteObserve,
}

const PHASES: [Phase; 5] = [Phase::Create, Phase::Update, Phase::Delete, Phase::DeleteOrphan, Phase::DeleteObserve];

impl Phase {
    fn keeps_azure(self) -> bool {
        matches!(self, Phase::DeleteOrphan | Phase::DeleteObserve)
    }
    fn deletes(self) -> bool {
        matches!(self, Phase::Delete | Phase::DeleteOrphan | Phase::DeleteObserve)
    }
}

/// What one case found.
#[derive(Default, Debug)]
struct Outcome {
    failures: Vec<String>,
    duplicate_creates: usize,
    orphans: usize,
    deletes_of_kept: usize,
    lost_deletes: usize,
    /// Cases of each new group that ran.
    annotation_retries: usize,
    map_removals: usize,
    rotations: usize,
    stack_deletions: usize,
}

impl Outcome {
    fn add(&mut self, o: Outcome) {
        self.failures.extend(o.failures);
        self.duplicate_creates += o.duplicate_creates;
        self.orphans += o.orphans;
        self.deletes_of_kept += o.deletes_of_kept;
        self.lost_deletes += o.lost_deletes;
        self.annotation_retries += o.annotation_retries;
        self.map_removals += o.map_removals;
        self.rotations += o.rotations;
        self.stack_deletions += o.stack_deletions;
    }
}

/// Where a case's fault is aimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum On {
    /// The phase's write to the case's resource (PUT, PATCH or DELETE); everything for keep phases.
    Writes,
    /// Every operation poll (the route is shared: such cases run one at a time).
    Polls,
    /// As `Writes`, and a failure that waits for a person is retried by the retry annotation
    /// instead of a spec edit.
    WritesRetriedByAnnotation,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    Ready,
    Gone,
}

fn ready_condition(w: &World, path: &str) -> Option<Value> {
    w.condition(path, "Ready")
}

fn converged(w: &World, path: &str) -> bool {
    let Some(obj) = w.kube.raw(path) else { return false };
    obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
        && ready_condition(w, path).is_some_and(|c| c["status"] == "True")
}

/// How a person retries a failure that waits for one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    /// Nobody does.
    No,
    /// One spec edit.
    SpecEdit,
    /// A new value of the retry annotation ([`RETRY_ANNOTATION`]), the spec untouched.
    Annotation,
}

/// The value a person sets the retry annotation to.
const RETRY_VALUE: &str = "retry-1";

/// Reconciles `name` until `until`, finishing ARM operations between rounds, ignoring errors. An
/// object stalled on a failure that needs a person (`status.lastFailure.class` NeedsPerson) gets
/// one retry by `retry` (a person retrying). Returns the
/// length of the emulator's request log when that retry was made, if it was.
async fn drive<K: Kind>(w: &World, ctx: &Arc<Context>, name: &str, until: Until, retry: Retry) -> Result<Option<usize>, String> {
    let path = kpath::<K>(name);
    // A liveness bound, not a speed target: a loaded 2-core CI machine makes the 1 s client timeout
    // fire on ordinary answers too, and each such round only costs time.
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut retried_at: Option<usize> = None;
    // What each round's reconcile returned (repeats folded), for the failure message.
    let mut rounds: Vec<String> = Vec::new();
    // Rounds are cheap while a transient failure waits for its retry time (no ARM call): the
    // deadline bounds the loop.
    for _ in 0..2000 {
        let Some(obj) = w.kube.get::<K>(&path) else {
            return if until == Until::Gone { Ok(retried_at) } else { Err("the object vanished".into()) };
        };
        let result = match pipeline::reconcile(Arc::new(obj), ctx.clone()).await {
            Ok(_) => "ok".to_string(),
            Err(e) => e.reason().to_string(),
        };
        if rounds.last() != Some(&result) {
            rounds.push(result);
        }
        match until {
            Until::Ready if converged(w, &path) => return Ok(retried_at),
            Until::Gone if w.kube.raw(&path).is_none() => return Ok(retried_at),
            _ => {}
        }
        if retry != Retry::No
            && retried_at.is_none()
            && w.kube.raw(&path).is_some_and(|o| o["status"]["lastFailure"]["class"] == "NeedsPerson")
        {
            retried_at = Some(w.emulator.requests().len());
            match retry {
                Retry::SpecEdit => w.kube.edit(&path, |o| K::set_field(o, "retry", "1")),
                _ => w.kube.edit(&path, |o| o["metadata"]["annotations"][RETRY_ANNOTATION] = json!(RETRY_VALUE)),
            }
        }
        if Instant::now() > deadline {
            break;
        }
        w.emulator.finish_operations();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(format!(
        "did not reach {} (reconciles: {}; status {})",
        if until == Until::Ready { "Ready" } else { "deletion" },
        rounds.join(", "),
        w.kube.raw(&path).map(|o| o["status"].to_string()).unwrap_or_default()
    ))
}

/// The ARM body the spec asks for, as the pipeline builds it.
fn desired<K: Kind>(obj: &K) -> Result<Value, String> {
    let resolved = Resolved { principal: principal(), parent: K::ready_parent(), references: Default::default() };
    let target = obj.target(&resolved).map_err(|e| e.message())?;
    obj.desired(&target).map_err(|e| e.message())
}

fn same_path(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Puts the case object, converged when the phase starts from an existing resource.
fn case_object<K: Kind>(name: &str, phase: Phase) -> K {
    match phase {
        Phase::DeleteOrphan => K::build(name, json!({"deletionPolicy": "Orphan"})),
        _ => K::build(name, json!({})),
    }
}

/// One case: the object is set up (converged unless the phase is Create), the fault injected on the
/// phase's route, the pipeline driven to the phase's end, then the state checked.
async fn run_case<K: Kind>(w: &World, f: F, phase: Phase, name: &str, on: On) -> Outcome {
    let mut out = Outcome::default();
    let label = format!("{} {f:?} {phase:?} {on:?} {name}", K::kind(&()));
    let path = kpath::<K>(name);
    let arm_id = K::arm_id(name);
    // A retry by annotation needs the failure's code, which only the operation's poll carries: an
    // answer to the PUT lost to the 1 s timeout on a loaded machine (no operation URL, so ARM's
    // failed resource is all the operator sees) makes it an automatic retry instead. Lost answers
    // have their own cases; these use a patient client.
    let ctx = if on == On::WritesRetriedByAnnotation { ctx_with_timeout(w, Duration::from_secs(20)) } else { fresh_ctx(w) };

    // The phase's starting point.
    match phase {
        Phase::Create => w.kube.put(case_object::<K>(name, phase)),
        Phase::Update => w.kube.edit(&path, |o| K::set_field(o, "phase", "update")),
        Phase::DeleteObserve => {
            w.kube.edit(&path, |o| o["spec"]["managementPolicy"] = json!("Observe"));
            if let Err(e) = drive::<K>(w, &ctx, name, Until::Ready, Retry::No).await {
                out.failures.push(format!("{label}: setting Observe: {e}"));
                return out;
            }
            w.kube.delete(&path);
        }
        Phase::Delete | Phase::DeleteOrphan => w.kube.delete(&path),
    }
    let mark = w.emulator.requests().len();

    let (kind, times) = f.kind();
    let method = match phase {
        _ if f.on_token_endpoint() => None,
        _ if on == On::Polls => Some("GET"),
        Phase::Create => Some("PUT"),
        Phase::Update => Some(K::UPDATE_METHOD),
        Phase::Delete => Some("DELETE"),
        // Nothing should reach ARM for these: a fault on any request would show it.
        Phase::DeleteOrphan | Phase::DeleteObserve => None,
    };
    let route = match on {
        _ if f.on_token_endpoint() => "/oauth2/".to_string(),
        On::Polls => "/operation".to_string(), // operations/ and operationResults/
        On::Writes | On::WritesRetriedByAnnotation => arm_id.clone(),
    };
    let fault = w.emulator.inject_rule(FaultRule::new(method, Some(&route), kind, times));

    let until = if phase.deletes() { Until::Gone } else { Until::Ready };
    let retry = match on {
        _ if !f.needs_a_spec_edit() || phase.deletes() => Retry::No,
        On::WritesRetriedByAnnotation => Retry::Annotation,
        _ => Retry::SpecEdit,
    };
    out.annotation_retries += usize::from(retry == Retry::Annotation);
    match drive::<K>(w, &ctx, name, until, retry).await {
        Err(e) => out.failures.push(format!("{label}: {e}")),
        Ok(retried_at) if retry == Retry::Annotation => {
            check_annotation_retry::<K>(w, &ctx, &label, name, retried_at, &mut out).await;
        }
        Ok(_) => {}
    }

    // The checks. First, that the case tested something: the fault fired (nothing may reach ARM
    // when a policy keeps the resource, so there it must not).
    let used = w.emulator.fault_uses(fault);
    w.emulator.remove_fault(fault);
    if phase.keeps_azure() && used > 0 {
        out.failures.push(format!("{label}: a request reached ARM (or the token endpoint) while releasing"));
    }
    if !phase.keeps_azure() && used == 0 {
        out.failures.push(format!("{label}: the fault never fired"));
    }
    let log: Vec<_> = w.emulator.requests().into_iter().skip(mark).filter(|r| same_path(&r.path, &arm_id)).collect();
    if std::env::var_os("FAULT_MATRIX_TRACE").is_some() {
        // `FAULT_MATRIX_TRACE=1 cargo test --test in_memory fault_matrix:: -- --nocapture`: each case's ARM calls
        // on its resource (`*` = created it, status 0 = no answer).
        let calls: Vec<String> =
            log.iter().map(|r| format!("{} {}{}", r.method, r.status, if r.created { "*" } else { "" })).collect();
        eprintln!("{label}: fault fired {used}x; {calls:?}");
    }
    let creates = log.iter().filter(|r| r.created).count();
    let expected_creates = usize::from(phase == Phase::Create);
    if creates > expected_creates {
        out.duplicate_creates += creates - expected_creates;
        out.failures.push(format!("{label}: {creates} creating PUTs, expected {expected_creates}"));
    }
    if creates < expected_creates {
        out.failures.push(format!("{label}: the resource was never created"));
    }
    let deletes = log.iter().filter(|r| r.method == "DELETE").count();
    let actual = w.emulator.resource(&arm_id);
    match phase {
        Phase::Create | Phase::Update => {
            if deletes > 0 {
                out.failures.push(format!("{label}: {deletes} DELETEs while creating or updating"));
            }
            match (w.kube.get::<K>(&path), &actual) {
                (Some(obj), Some(actual)) => match desired(&obj) {
                    Ok(desired) => {
                        let drifted = drift::drifted::<K>(&desired, actual);
                        if !drifted.is_empty() {
                            out.failures.push(format!("{label}: ARM differs from the spec at {drifted:?}"));
                        }
                        for stale in ["Stalled", "Reconciling"] {
                            if w.condition(&path, stale).is_some_and(|c| c["status"] == "True") {
                                out.failures.push(format!("{label}: {stale}=True left after convergence"));
                            }
                        }
                        if phase == Phase::Update && !K::shows_update(actual) {
                            out.failures.push(format!("{label}: the update never reached ARM"));
                        }
                    }
                    Err(e) => out.failures.push(format!("{label}: desired body: {e}")),
                },
                (None, _) => out.failures.push(format!("{label}: the object is gone")),
                (_, None) => out.failures.push(format!("{label}: the resource is missing in ARM")),
            }
        }
        Phase::Delete => {
            if actual.is_some() {
                out.orphans += 1;
                out.failures.push(format!("{label}: the ARM resource outlived its object (orphan)"));
            }
            if w.kube.raw(&path).is_some() {
                out.lost_deletes += 1;
            }
        }
        Phase::DeleteOrphan | Phase::DeleteObserve => {
            if deletes > 0 {
                out.deletes_of_kept += deletes;
                out.failures.push(format!("{label}: {deletes} DELETEs of a resource the policy keeps"));
            }
            if actual.is_none() {
                out.failures.push(format!("{label}: the resource the policy keeps is gone"));
            }
        }
    }
    out
}

/// The writes (anything but a GET) to `arm_id` or below it (e.g. its `listKeys`) in the request
/// log from `from` on.
fn writes_since(w: &World, arm_id: &str, from: usize) -> Vec<String> {
    let below = format!("{}/", arm_id.to_ascii_lowercase());
    w.emulator
        .requests()
        .into_iter()
        .skip(from)
        .filter(|r| r.method != "GET" && (same_path(&r.path, arm_id) || r.path.to_ascii_lowercase().starts_with(&below)))
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect()
}

/// Reconciles `name` again (its `arm_id` in ARM) with the same context until a reconcile succeeds
/// (a transient error, e.g. an answer past the client's timeout on a loaded machine, is followed by
/// another, up to 5): the writes all of them sent, and whether the object is converged then.
async fn reconcile_again<K: Kind>(w: &World, ctx: &Arc<Context>, name: &str, arm_id: &str) -> (Vec<String>, bool) {
    let path = kpath::<K>(name);
    let mark = w.emulator.requests().len();
    for _ in 0..5 {
        let Some(obj) = w.kube.get::<K>(&path) else { break };
        if pipeline::reconcile(Arc::new(obj), ctx.clone()).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (writes_since(w, arm_id, mark), converged(w, &path))
}

/// After a person-class failure was retried by the retry annotation (`retried_at`: the request log's
/// length then): exactly one write went out and the object is Ready; reconciling again with the
/// same value writes nothing.
async fn check_annotation_retry<K: Kind>(w: &World, ctx: &Arc<Context>, label: &str, name: &str, retried_at: Option<usize>, out: &mut Outcome) {
    let path = kpath::<K>(name);
    let arm_id = K::arm_id(name);
    let Some(at) = retried_at else {
        let calls: Vec<String> = w.emulator.requests().iter().filter(|r| same_path(&r.path, &arm_id)).map(|r| format!("{} {}{}", r.method, r.status, if r.created { "*" } else { "" })).collect();
        out.failures.push(format!("{label}: Ready without the failure waiting for a person; calls {calls:?}"));
        return;
    };
    let writes = writes_since(w, &arm_id, at);
    if writes.len() != 1 {
        out.failures.push(format!("{label}: {} writes after the retry annotation, expected 1: {writes:?}", writes.len()));
    }
    let obj = w.kube.raw(&path).unwrap_or_default();
    if obj["status"]["retryToken"] != RETRY_VALUE {
        out.failures.push(format!("{label}: the retry annotation's value is not recorded: {}", obj["status"]));
    }
    for _ in 0..2 {
        let (again, converged) = reconcile_again::<K>(w, ctx, name, &arm_id).await;
        if !again.is_empty() || !converged {
            out.failures.push(format!("{label}: the same annotation value again: writes {again:?}, converged {converged}"));
        }
    }
}

/// Faults on the write that removes a map entry.
const REMOVAL_FAULTS: [F; 6] = [F::Throttled429, F::Error500, F::Unavailable503, F::SlowAnswer, F::DropBeforeHandling, F::DropAfterHandling];

/// The object of a removal case: its map (`field`) holds `keep` and `gone`.
fn removal_object<K: Kind>(name: &str, field: &str) -> K {
    K::build(name, json!({ field: {"keep": "1", "gone": "2"} }))
}

/// One map-removal case: the converged object's `field` loses its entry `gone` while `f` hits the
/// write that removes it (`method` on the resource); it converges with the key gone in ARM, nothing
/// created or deleted, and the next reconcile writes nothing.
async fn run_removal<K: Kind>(w: &World, f: F, (field, pointer, method): (&str, &str, &str), name: &str) -> Outcome {
    let mut out = Outcome { map_removals: 1, ..Outcome::default() };
    let label = format!("{} {f:?} removal of {field}.gone {name}", K::kind(&()));
    let path = kpath::<K>(name);
    let arm_id = K::arm_id(name);
    let ctx = fresh_ctx(w);
    w.kube.edit(&path, |o| {
        o["spec"][field].as_object_mut().map(|m| m.remove("gone"));
    });
    let mark = w.emulator.requests().len();
    let (kind, times) = f.kind();
    let fault = w.emulator.inject_rule(FaultRule::new(Some(method), Some(&arm_id), kind, times));
    if let Err(e) = drive::<K>(w, &ctx, name, Until::Ready, Retry::No).await {
        out.failures.push(format!("{label}: {e}"));
    }
    let used = w.emulator.fault_uses(fault);
    w.emulator.remove_fault(fault);
    if used == 0 {
        out.failures.push(format!("{label}: the fault never fired"));
    }
    let log: Vec<_> = w.emulator.requests().into_iter().skip(mark).filter(|r| same_path(&r.path, &arm_id)).collect();
    let creates = log.iter().filter(|r| r.created).count();
    if creates > 0 {
        out.duplicate_creates += creates;
        out.failures.push(format!("{label}: {creates} creating PUTs"));
    }
    if log.iter().any(|r| r.method == "DELETE") {
        out.failures.push(format!("{label}: a DELETE while removing a map entry"));
    }
    match w.emulator.resource(&arm_id) {
        None => out.failures.push(format!("{label}: the resource is missing in ARM")),
        Some(actual) => {
            let map = actual.pointer(pointer).cloned().unwrap_or_default();
            if map.get("gone").is_some() || map.get("keep") != Some(&json!("1")) {
                out.failures.push(format!("{label}: ARM's {pointer} is {map}, expected only keep"));
            }
        }
    }
    let (again, converged) = reconcile_again::<K>(w, &ctx, name, &arm_id).await;
    if !again.is_empty() || !converged {
        let obj = w.kube.raw(&path).unwrap_or_default();
        out.failures.push(format!("{label}: the next reconcile: writes {again:?}, converged {converged}: generation {} status {}", obj["metadata"]["generation"], obj["status"]));
    }
    out
}

/// A world with the parents `K` needs, converged.
async fn world_for<K: Kind>() -> World {
    let w = World::with_emulator(fast_emulator()).await;
    w.good_credentials();
    if K::ready_parent().is_some() {
        w.kube.put(workspace("ws1", json!({})));
        w.converge::<AmlWorkspace>(&kpath::<AmlWorkspace>("ws1")).await;
    }
    if K::kind(&()) == "AmlDatastore" {
        w.kube.put(support::secret("ds-key", &[("key", "an-account-key")]));
    }
    if K::kind(&()) == "AmlOnlineDeployment" {
        w.kube.put(AmlOnlineEndpoint::build("ep1", json!({})));
        w.converge::<AmlOnlineEndpoint>(&kpath::<AmlOnlineEndpoint>("ep1")).await;
    }
    w
}

/// Faults that make sense on an operation poll (a GET starts no operation), and the phases that poll.
const POLL_FAULTS: [F; 6] = [F::Throttled429, F::Error500, F::Unavailable503, F::SlowAnswer, F::DropBeforeHandling, F::DropAfterHandling];
const POLL_PHASES: [Phase; 3] = [Phase::Create, Phase::Update, Phase::Delete];

/// Every fault in every phase for kind `K`, in one world: the objects of the phases that start from
/// an existing resource are created together first; then the cases aimed at one resource's writes
/// run concurrently; the token endpoint faults and the faults on operation polls, which cannot be
/// aimed at one case, run one by one.
async fn matrix_for<K: Kind>() -> (usize, Outcome) {
    let w = world_for::<K>().await;
    let mut out = Outcome::default();
    let mut cases: Vec<(F, Phase, String, On)> = Vec::new();
    for (i, f) in FAULTS.iter().enumerate() {
        for (j, p) in PHASES.iter().enumerate() {
            cases.push((*f, *p, format!("{}{i:02}{j}x", K::PREFIX), On::Writes));
        }
    }
    // A person-class failure retried by the retry annotation instead of a spec edit (a kind without
    // long-running operations has no operation to fail).
    for (j, p) in [Phase::Create, Phase::Update].iter().enumerate().filter(|_| K::POLLS) {
        cases.push((F::OperationFailedNeedsPerson, *p, format!("{}a{j}x", K::PREFIX), On::WritesRetriedByAnnotation));
    }
    // An entry of each owned map removed while a fault hits the write that removes it.
    let mut removals: Vec<(F, (&str, &str, &str), String)> = Vec::new();
    for (m, map) in K::removable_maps().into_iter().enumerate() {
        for (i, f) in REMOVAL_FAULTS.iter().enumerate() {
            removals.push((*f, map, format!("{}m{m}{i}x", K::PREFIX)));
        }
    }
    // A kind without long-running operations never polls: nothing to aim those faults at.
    for (i, f) in POLL_FAULTS.iter().enumerate().filter(|_| K::POLLS) {
        for (j, p) in POLL_PHASES.iter().enumerate() {
            cases.push((*f, *p, format!("{}p{i:02}{j}x", K::PREFIX), On::Polls));
        }
    }

    // Setup: every object of a phase other than Create, converged.
    let ctx = fresh_ctx(&w);
    let existing: Vec<_> = cases.iter().filter(|c| c.1 != Phase::Create).collect();
    for (_, phase, name, _) in &existing {
        w.kube.put(case_object::<K>(name, *phase));
    }
    for (_, (field, _, _), name) in &removals {
        w.kube.put(removal_object::<K>(name, field));
    }
    let names = existing.iter().map(|c| &c.2).chain(removals.iter().map(|r| &r.2));
    let setups = join_all(names.clone().map(|name| drive::<K>(&w, &ctx, name, Until::Ready, Retry::No))).await;
    for (r, name) in setups.into_iter().zip(names) {
        if let Err(e) = r {
            out.failures.push(format!("{} {name}: setup: {e}", K::kind(&())));
        }
    }
    if !out.failures.is_empty() {
        return (cases.iter().filter(|c| c.3 != On::WritesRetriedByAnnotation).count(), out);
    }

    let (shared, aimed): (Vec<_>, Vec<_>) = cases.iter().partition(|(f, _, _, on)| f.on_token_endpoint() || *on == On::Polls);
    let (a, r) = futures::join!(
        join_all(aimed.iter().map(|(f, p, name, on)| run_case::<K>(&w, *f, *p, name, *on))),
        join_all(removals.iter().map(|(f, map, name)| run_removal::<K>(&w, *f, *map, name))),
    );
    for o in a.into_iter().chain(r) {
        out.add(o);
    }
    for (f, p, name, on) in shared {
        out.add(run_case::<K>(&w, *f, *p, name, *on).await);
    }

    // Leaks: every ARM resource left must belong to an object, or to one a policy kept.
    for id in w.emulator.resource_ids() {
        // The case whose resource this is (a role assignment's or a version's name is not its object's).
        let name = cases
            .iter()
            .map(|c| c.2.clone())
            .chain(removals.iter().map(|r| r.2.clone()))
            .find(|n| same_path(&K::arm_id(n), &id))
            .unwrap_or_else(|| id.rsplit('/').next().unwrap_or_default().to_string());
        let kept = cases.iter().any(|(_, p, n, _)| p.keeps_azure() && n.eq_ignore_ascii_case(&name));
        let parent = ["ws1", "ep1"].contains(&name.as_str());
        let has_object = w.kube.raw(&kpath::<K>(&name)).is_some();
        if !kept && !parent && !has_object && !K::made_by_arm(&id) {
            out.orphans += 1;
            out.failures.push(format!("{}: {id} has no object (orphan)", K::kind(&())));
        }
    }
    // The matrix proper; the annotation retries are counted in `out`.
    (cases.iter().filter(|c| c.3 != On::WritesRetriedByAnnotation).count(), out)
}

/// Faults during a key rotation: on the `regenerateKeys` POST, or on the poll of its operation.
const ROTATION_FAULTS: [(&str, &str, F); 9] = [
    ("POST", "/regenerateKeys", F::Throttled429),
    ("POST", "/regenerateKeys", F::Error500),
    ("POST", "/regenerateKeys", F::DropBeforeHandling),
    ("POST", "/regenerateKeys", F::DropAfterHandling),
    ("POST", "/regenerateKeys", F::OperationFailed),
    ("GET", "/operation", F::Unavailable503),
    ("GET", "/operation", F::SlowAnswer),
    ("GET", "/operation", F::DropBeforeHandling),
    ("GET", "/operation", F::DropAfterHandling),
];

/// The keys Secret `name`'s primary and secondary key and its annotations.
fn published_keys(w: &World, name: &str) -> Option<(String, String, std::collections::BTreeMap<String, String>)> {
    let secret: k8s_openapi::api::core::v1::Secret = w.kube.get(&format!("/api/v1/namespaces/{NS}/secrets/{name}"))?;
    let data = secret.data.clone().unwrap_or_default();
    let key = |k: &str| data.get(k).map(|v| String::from_utf8_lossy(&v.0).into_owned()).unwrap_or_default();
    Some((key("primaryKey"), key("secondaryKey"), secret.metadata.annotations.unwrap_or_default()))
}

/// Each rotation fault once, on its own endpoint with a keys Secret (one at a time: the poll route
/// is shared): the endpoint converges, `amloperator.io/rotate-keys` is set, and the pipeline is
/// driven until the rotation is recorded done; the Secret must then hold two keys different from
/// the originals and equal to ARM's, and another reconcile regenerates nothing.
async fn rotation_cases() -> Outcome {
    let mut out = Outcome::default();
    let w = world_for::<AmlOnlineEndpoint>().await;
    let arm = ArmClient::new(&cloud(&w)).expect("ARM client");
    let config = Config {
        resync: Duration::from_secs(300),
        base_backoff: Duration::from_millis(100),
        keys_rotation_grace: Duration::ZERO,
        ..Config::default()
    };
    let ctx = Arc::new(Context::new(w.client.clone(), arm, config));
    for (i, (method, route, f)) in ROTATION_FAULTS.iter().enumerate() {
        out.rotations += 1;
        let name = format!("ek{i}x");
        let secret = format!("{name}-keys");
        let label = format!("rotation {f:?} on {method} {route} {name}");
        let path = kpath::<AmlOnlineEndpoint>(&name);
        let arm_id = ep_id(&name);
        w.kube.put(AmlOnlineEndpoint::build(&name, json!({"keysSecret": {"name": secret}})));
        if let Err(e) = drive::<AmlOnlineEndpoint>(&w, &ctx, &name, Until::Ready, Retry::No).await {
            out.failures.push(format!("{label}: setup: {e}"));
            continue;
        }
        let Some((p0, s0, _)) = published_keys(&w, &secret) else {
            out.failures.push(format!("{label}: no keys Secret once Ready"));
            continue;
        };
        w.kube.edit(&path, |o| o["metadata"]["annotations"][aml_operator::controller::kinds::endpoint::ROTATE_KEYS] = json!("r1"));
        let mark = w.emulator.requests().len();
        let (kind, times) = f.kind();
        let fault = w.emulator.inject_rule(FaultRule::new(Some(method), Some(route), kind, times));
        let deadline = Instant::now() + Duration::from_secs(30);
        let done = |w: &World| {
            published_keys(w, &secret).is_some_and(|(p, s, notes)| {
                notes.get("amloperator.io/keys-rotated").map(String::as_str) == Some("r1")
                    && notes.get("amloperator.io/keys-rotation").is_none_or(String::is_empty)
                    && p != p0
                    && s != s0
            })
        };
        let mut errors: Vec<String> = Vec::new();
        while !done(&w) && Instant::now() < deadline {
            let Some(obj) = w.kube.get::<AmlOnlineEndpoint>(&path) else { break };
            if let Err(e) = pipeline::reconcile(Arc::new(obj), ctx.clone()).await
                && errors.last().map(String::as_str) != Some(e.reason())
            {
                errors.push(e.reason().to_string());
            }
            w.emulator.finish_operations();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let used = w.emulator.fault_uses(fault);
        w.emulator.remove_fault(fault);
        if !done(&w) {
            let notes = published_keys(&w, &secret).map(|k| k.2);
            out.failures.push(format!("{label}: the rotation did not complete (errors {errors:?}; Secret annotations {notes:?})"));
            continue;
        }
        if used == 0 {
            out.failures.push(format!("{label}: the fault never fired"));
        }
        let (p, s, _) = published_keys(&w, &secret).unwrap_or_default();
        match ctx.arm.post(&principal(), &format!("{arm_id}/listKeys"), &ctx.config.api_version, None).await {
            Ok(aml_operator::arm::PostOutcome::Done(Some(keys))) if keys["primaryKey"] == p.as_str() && keys["secondaryKey"] == s.as_str() => {}
            other => out.failures.push(format!("{label}: the Secret's keys are not ARM's: {other:?}")),
        }
        let creates = w.emulator.requests().into_iter().skip(mark).filter(|r| r.created).count();
        if creates > 0 {
            out.duplicate_creates += creates;
            out.failures.push(format!("{label}: {creates} creating PUTs during the rotation"));
        }
        let (again, _) = reconcile_again::<AmlOnlineEndpoint>(&w, &ctx, &name, &arm_id).await;
        if !again.is_empty() {
            out.failures.push(format!("{label}: writes after the rotation completed: {again:?}"));
        }
    }
    out
}

/// Where a stack-deletion fault is aimed: a DELETE of the endpoint (or below it), of the workspace
/// (or below it: whichever DELETE of the stack comes first), or the first read at or below the
/// endpoint (the deployment, reconciled first, reads it in its delete gate).
/// Never a DELETE of the deployment: while its endpoint routes traffic to it, it is not deleted but
/// goes with its endpoint (the check that ARM refused nothing shows it).
// No faults on the endpoint's DELETE: deleted with its workspace, the endpoint sends none (it waits
// for the workspace's delete, then its GET finds it gone), so such a fault could never fire.
const STACK_FAULTS: [(&str, &str, F); 11] = [
    ("GET", "ep", F::Throttled429),
    ("GET", "ep", F::Error500),
    ("GET", "ep", F::DropAfterHandling),
    ("DELETE", "ws", F::Throttled429),
    ("DELETE", "ws", F::Error500),
    ("DELETE", "ws", F::DropBeforeHandling),
    ("DELETE", "ws", F::DropAfterHandling),
    ("DELETE", "ws", F::OperationFailed),
    ("DELETE", "ws", F::OperationCanceled),
    ("GET", "ep", F::Unavailable503),
    ("GET", "ep", F::DropBeforeHandling),
];

/// Reconciles the stack's objects that remain, children first, once; then finishes ARM operations.
async fn stack_round(w: &World, ctx: &Arc<Context>, (ws, ep, dep): (&str, &str, &str)) {
    if let Some(o) = w.kube.get::<AmlOnlineDeployment>(&kpath::<AmlOnlineDeployment>(dep)) {
        let _ = pipeline::reconcile(Arc::new(o), ctx.clone()).await;
    }
    if let Some(o) = w.kube.get::<AmlOnlineEndpoint>(&kpath::<AmlOnlineEndpoint>(ep)) {
        let _ = pipeline::reconcile(Arc::new(o), ctx.clone()).await;
    }
    if let Some(o) = w.kube.get::<AmlWorkspace>(&kpath::<AmlWorkspace>(ws)) {
        let _ = pipeline::reconcile(Arc::new(o), ctx.clone()).await;
    }
    w.emulator.finish_operations();
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// One stack — a workspace, an endpoint routing 100% to a deployment, the deployment — converged,
/// then deleted at once while `f` hits `method` on `target`: everything goes, nothing is created,
/// and ARM answers no 4xx but 404 (and the injected 429): a deployment that still receives traffic
/// is never DELETEd.
async fn run_stack(w: &World, i: usize, method: &str, target: &str, f: F) -> Outcome {
    let mut out = Outcome { stack_deletions: 1, ..Outcome::default() };
    let (ws, ep, dep) = (format!("s{i:02}x"), format!("s{i:02}e"), format!("s{i:02}d"));
    let names = (ws.as_str(), ep.as_str(), dep.as_str());
    let label = format!("stack {f:?} on {method} {target} {ws}");
    let ctx = fresh_ctx(w);
    let ws_arm = ws_id(&ws);
    let ep_arm = format!("{ws_arm}/onlineEndpoints/{ep}");
    let dep_arm = format!("{ep_arm}/deployments/{dep}");
    let paths = [kpath::<AmlWorkspace>(&ws), kpath::<AmlOnlineEndpoint>(&ep), kpath::<AmlOnlineDeployment>(&dep)];
    w.kube.put(workspace(&ws, json!({})));
    w.kube.put(AmlOnlineEndpoint::build(&ep, json!({"workspaceRef": {"name": ws}, "traffic": {dep.as_str(): 100}})));
    w.kube.put(AmlOnlineDeployment::build(&dep, json!({"endpointRef": {"name": ep}})));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !paths.iter().all(|p| converged(w, p)) && Instant::now() < deadline {
        stack_round(w, &ctx, names).await;
    }
    let routed = w.emulator.resource(&ep_arm).map(|e| e["properties"]["traffic"].clone());
    if routed != Some(json!({dep.as_str(): 100})) {
        out.failures.push(format!("{label}: setup: not converged with traffic routed (ARM traffic {routed:?})"));
        return out;
    }

    let mark = w.emulator.requests().len();
    let (kind, times) = f.kind();
    let route = match target {
        "dep" => &dep_arm,
        "ep" => &ep_arm,
        _ => &ws_arm,
    };
    let fault = w.emulator.inject_rule(FaultRule::new(Some(method), Some(route), kind, times));
    for p in &paths {
        w.kube.delete(p);
    }
    let deadline = Instant::now() + Duration::from_secs(40);
    while paths.iter().any(|p| w.kube.raw(p).is_some()) && Instant::now() < deadline {
        stack_round(w, &ctx, names).await;
    }
    let used = w.emulator.fault_uses(fault);
    w.emulator.remove_fault(fault);
    let left: Vec<&String> = paths.iter().filter(|p| w.kube.raw(p).is_some()).collect();
    if !left.is_empty() {
        out.lost_deletes += left.len();
        let conditions: Vec<_> = left.iter().map(|p| ready_condition(w, p)).collect();
        out.failures.push(format!("{label}: not released: {left:?} {conditions:?}"));
    }
    let prefix = ws_arm.to_ascii_lowercase();
    let in_stack = |p: &str| p.to_ascii_lowercase().starts_with(&prefix);
    let orphans: Vec<String> = w.emulator.resource_ids().into_iter().filter(|id| in_stack(id)).collect();
    if !orphans.is_empty() {
        out.orphans += orphans.len();
        out.failures.push(format!("{label}: left in Azure: {orphans:?}"));
    }
    if used == 0 {
        out.failures.push(format!("{label}: the fault never fired"));
    }
    let log: Vec<_> = w.emulator.requests().into_iter().skip(mark).filter(|r| in_stack(&r.path)).collect();
    let creates = log.iter().filter(|r| r.created).count();
    if creates > 0 {
        out.duplicate_creates += creates;
        out.failures.push(format!("{label}: {creates} creating PUTs while deleting"));
    }
    let injected = matches!(f, F::Throttled429);
    let refused: Vec<String> = log
        .iter()
        .filter(|r| (400..500).contains(&r.status) && r.status != 404 && !(injected && r.status == 429))
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect();
    if !refused.is_empty() {
        out.failures.push(format!("{label}: ARM refused requests: {refused:?}"));
    }
    out
}

/// Every stack-deletion fault, each on its own stack, all in one world at once (each fault is aimed
/// at its stack's paths).
async fn stack_cases() -> Outcome {
    let w = World::with_emulator(fast_emulator()).await;
    w.good_credentials();
    let mut out = Outcome::default();
    for o in join_all(STACK_FAULTS.iter().enumerate().map(|(i, (m, t, f))| run_stack(&w, i, m, t, *f))).await {
        out.add(o);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_on_every_kind_and_phase_converges_without_duplicates_orphans_or_unwanted_deletes() {
    if support::validator().is_none() && std::env::var("AML_REQUIRE_ARM_SPECS").is_ok_and(|v| v == "1") {
        panic!("AML_REQUIRE_ARM_SPECS=1 but ../shared/arm-specs is absent");
    }
    let started = Instant::now();
    let (a, b, c, d) = tokio::join!(
        matrix_for::<AmlWorkspace>(),
        matrix_for::<AmlCompute>(),
        matrix_for::<AmlOnlineEndpoint>(),
        matrix_for::<AmlOnlineDeployment>(),
    );
    // After the others, not with them: the 1 s client timeout the slow-answer cases rely on leaves
    // little headroom on a loaded 2-core machine, and a fifth concurrent matrix used it up.
    // The rotation and stack cases have no slow answers on a single request's resource timing.
    let (e, rotations, stacks) = tokio::join!(matrix_for::<AmlRoleAssignment>(), rotation_cases(), stack_cases());
    // The asset versions (synchronous, like role assignments) after those.
    let (f, g, h, i) = tokio::join!(
        matrix_for::<AmlModelVersion>(),
        matrix_for::<AmlEnvironmentVersion>(),
        matrix_for::<AmlCodeVersion>(),
        matrix_for::<AmlDatastore>()
    );
    let mut total = Outcome::default();
    let mut cases = 0;
    for (n, o) in [a, b, c, d, e, f, g, h, i] {
        cases += n;
        total.add(o);
    }
    total.add(rotations);
    total.add(stacks);
    let line = format!(
        "fault matrix: 9 kinds x {} faults x {} phases on writes + 4 kinds x {} faults x {} phases on polls = {cases} cases; + {} retries by annotation, {} map-entry removals, {} key rotations, {} whole-stack deletions; {} duplicate creates, {} orphans, {} deletes of Orphan/Observe objects, {} lost deletes ({:.1} s)",
        FAULTS.len(),
        PHASES.len(),
        POLL_FAULTS.len(),
        POLL_PHASES.len(),
        total.annotation_retries,
        total.map_removals,
        total.rotations,
        total.stack_deletions,
        total.duplicate_creates,
        total.orphans,
        total.deletes_of_kept,
        total.lost_deletes,
        started.elapsed().as_secs_f64(),
    );
    println!("{line}");
    eprintln!("{line}");
    assert!(total.failures.is_empty(), "{} failing cases:\n{}", total.failures.len(), total.failures.join("\n"));
    assert_eq!(cases, 9 * FAULTS.len() * PHASES.len() + 4 * POLL_FAULTS.len() * POLL_PHASES.len());
    // 4 kinds (those with operations) x create and update; tags on the 4 ML kinds, the 3 asset
    // versions and the datastore, and a deployment's environment variables.
    let groups = (total.annotation_retries, total.map_removals, total.rotations, total.stack_deletions);
    assert_eq!(groups, (4 * 2, 9 * REMOVAL_FAULTS.len(), ROTATION_FAULTS.len(), STACK_FAULTS.len()), "every case of the new groups ran");
    assert_eq!((total.duplicate_creates, total.orphans, total.deletes_of_kept, total.lost_deletes), (0, 0, 0, 0));
}

// =============================================================================================
// Part 3: killed at every step, restarted

fn puts_creating(w: &World, arm_id: &str) -> usize {
    w.emulator.requests().iter().filter(|r| r.created && same_path(&r.path, arm_id)).count()
}

/// DELETEs ARM accepted (202) or carried out at once (200, role assignments); 204 = nothing there.
fn accepted_deletes(w: &World, arm_id: &str) -> usize {
    w.emulator.requests().iter().filter(|r| r.method == "DELETE" && matches!(r.status, 200 | 202) && same_path(&r.path, arm_id)).count()
}

/// Killed after the PUT was accepted but before the status (with the operation URL) was written:
/// the restarted operator finds the resource in ARM and never creates it twice.
async fn killed_after_put<K: Kind>() {
    let w = world_for::<K>().await;
    let name = format!("{}kp", K::PREFIX);
    let path = kpath::<K>(&name);
    let arm_id = K::arm_id(&name);
    w.kube.put(K::build(&name, json!({})));
    // The status write after the PUT fails, and so does the failure report: nothing reaches status.
    w.kube.fail_next("PATCH", &format!("{}/status", path.rsplit_once("/namespaces/").unwrap().1), 500, 2);
    let err = w.reconcile::<K>(&path).await.expect_err("status write fails");
    assert_eq!(err.reason(), "KubernetesApiError", "{err:?}");
    assert_eq!(puts_creating(&w, &arm_id), 1, "the PUT went out");
    assert!(w.kube.raw(&path).unwrap()["status"]["operation"].is_null(), "no operation recorded");

    let ctx = fresh_ctx(&w);
    drive::<K>(&w, &ctx, &name, Until::Ready, Retry::No).await.unwrap();
    assert_eq!(puts_creating(&w, &arm_id), 1, "{}: no second create after the restart", K::kind(&()));
    let puts = w.emulator.requests().iter().filter(|r| r.method == "PUT" && same_path(&r.path, &arm_id)).count();
    assert_eq!(puts, 1, "{}: one PUT in all", K::kind(&()));
}

/// Restarted between every round of a create, then of a delete: it resumes polling each time.
async fn restarted_while_polling<K: Kind>() {
    let w = world_for::<K>().await;
    let name = format!("{}rp", K::PREFIX);
    let path = kpath::<K>(&name);
    let arm_id = K::arm_id(&name);
    w.kube.put(K::build(&name, json!({})));
    for until in [Until::Ready, Until::Gone] {
        if until == Until::Gone {
            w.kube.delete(&path);
        }
        let mut done = false;
        for _ in 0..20 {
            let ctx = fresh_ctx(&w);
            let Some(obj) = w.kube.get::<K>(&path) else {
                done = true;
                break;
            };
            let _ = pipeline::reconcile(Arc::new(obj), ctx).await;
            if (until == Until::Ready && converged(&w, &path)) || (until == Until::Gone && w.kube.raw(&path).is_none()) {
                done = true;
                break;
            }
            w.emulator.finish_operations();
        }
        assert!(done, "{}: did not converge across restarts", K::kind(&()));
    }
    assert_eq!(puts_creating(&w, &arm_id), 1, "{}: one create", K::kind(&()));
    assert_eq!(accepted_deletes(&w, &arm_id), 1, "{}: one delete", K::kind(&()));
    assert!(w.emulator.resource(&arm_id).is_none(), "no orphan");
}

/// Killed after ARM finished the delete but before the finalizer came off: the restarted operator
/// releases the object without losing or repeating the delete.
async fn killed_before_the_finalizer_came_off<K: Kind>() {
    let w = world_for::<K>().await;
    let name = format!("{}kd", K::PREFIX);
    let path = kpath::<K>(&name);
    let arm_id = K::arm_id(&name);
    w.kube.put(K::build(&name, json!({})));
    let ctx = fresh_ctx(&w);
    drive::<K>(&w, &ctx, &name, Until::Ready, Retry::No).await.unwrap();
    w.kube.delete(&path);
    let object = path.rsplit_once("/namespaces/").unwrap().1.to_string();
    if K::POLLS {
        let err = w.reconcile::<K>(&path).await.expect_err("delete is asynchronous");
        assert_eq!(err.reason(), "Deleting", "{err:?}");
        w.emulator.finish_operations();
    }
    // (A synchronous delete is done by the same reconcile whose finalizer patch fails.)
    w.kube.fail_next("PATCH", &format!("{object}$"), 500, 1);
    let err = w.reconcile::<K>(&path).await.expect_err("the finalizer patch fails");
    assert_eq!(err.reason(), "FinalizerError", "{err:?}");
    assert!(w.kube.raw(&path).is_some(), "the object is still there");
    assert!(w.emulator.resource(&arm_id).is_none(), "ARM already deleted it");

    let ctx = fresh_ctx(&w);
    drive::<K>(&w, &ctx, &name, Until::Gone, Retry::No).await.unwrap();
    assert_eq!(accepted_deletes(&w, &arm_id), 1, "{}: the delete was neither lost nor repeated", K::kind(&()));
    assert!(w.emulator.requests().iter().filter(|r| r.method == "DELETE" && same_path(&r.path, &arm_id)).all(|r| matches!(r.status, 200 | 202 | 204)));
}

/// Killed after ARM accepted the DELETE but before the status (with the operation) was written:
/// the restarted operator deletes again or finds it gone, and never loses the delete.
async fn killed_after_the_delete_before_the_status_write<K: Kind>() {
    let w = world_for::<K>().await;
    let name = format!("{}ks", K::PREFIX);
    let path = kpath::<K>(&name);
    let arm_id = K::arm_id(&name);
    w.kube.put(K::build(&name, json!({})));
    let ctx = fresh_ctx(&w);
    drive::<K>(&w, &ctx, &name, Until::Ready, Retry::No).await.unwrap();
    w.kube.delete(&path);
    let object = path.rsplit_once("/namespaces/").unwrap().1.to_string();
    w.kube.fail_next("PATCH", &format!("{object}/status"), 500, 2);
    let err = w.reconcile::<K>(&path).await.expect_err("the status write fails");
    assert_eq!(err.reason(), "KubernetesApiError", "{err:?}");
    assert_eq!(accepted_deletes(&w, &arm_id), 1);
    assert!(w.kube.raw(&path).unwrap()["status"]["operation"].is_null(), "no operation recorded");

    let ctx = fresh_ctx(&w);
    drive::<K>(&w, &ctx, &name, Until::Gone, Retry::No).await.unwrap();
    assert!(w.emulator.resource(&arm_id).is_none(), "{}: no orphan", K::kind(&()));
    assert_eq!(accepted_deletes(&w, &arm_id), 1, "{}: one accepted delete", K::kind(&()));
}

#[tokio::test]
async fn killed_after_the_delete_before_the_status_write_each_kind_still_deletes() {
    killed_after_the_delete_before_the_status_write::<AmlWorkspace>().await;
    killed_after_the_delete_before_the_status_write::<AmlCompute>().await;
    killed_after_the_delete_before_the_status_write::<AmlOnlineEndpoint>().await;
    killed_after_the_delete_before_the_status_write::<AmlOnlineDeployment>().await;
    // Not AmlRoleAssignment: its delete is synchronous, nothing is written to status between the
    // DELETE and the release (the finalizer case below covers a kill there).
}

#[tokio::test]
async fn killed_after_the_put_before_the_status_write_each_kind_creates_once() {
    killed_after_put::<AmlWorkspace>().await;
    killed_after_put::<AmlCompute>().await;
    killed_after_put::<AmlOnlineEndpoint>().await;
    killed_after_put::<AmlOnlineDeployment>().await;
    killed_after_put::<AmlRoleAssignment>().await;
}

#[tokio::test]
async fn restarted_between_every_poll_each_kind_creates_and_deletes_once() {
    restarted_while_polling::<AmlWorkspace>().await;
    restarted_while_polling::<AmlCompute>().await;
    restarted_while_polling::<AmlOnlineEndpoint>().await;
    restarted_while_polling::<AmlOnlineDeployment>().await;
    restarted_while_polling::<AmlRoleAssignment>().await;
}

#[tokio::test]
async fn killed_after_the_delete_before_the_finalizer_came_off_each_kind_is_released() {
    killed_before_the_finalizer_came_off::<AmlWorkspace>().await;
    killed_before_the_finalizer_came_off::<AmlCompute>().await;
    killed_before_the_finalizer_came_off::<AmlOnlineEndpoint>().await;
    killed_before_the_finalizer_came_off::<AmlOnlineDeployment>().await;
    killed_before_the_finalizer_came_off::<AmlRoleAssignment>().await;
}

// =============================================================================================
// Part 4: a workspace from nothing — a failure or a restart at each dependency step

/// The four dependency types, as their ARM ids show them.
const DEPENDENCY_TYPES: [&str; 4] = [
    "/providers/Microsoft.Storage/storageAccounts/",
    "/providers/Microsoft.KeyVault/vaults/",
    "/providers/Microsoft.OperationalInsights/workspaces/",
    "/providers/Microsoft.Insights/components/",
];

/// Every step of a workspace's dependencies (request method, path substring), creation and deletion.
const DEPENDENCY_STEPS: [(&str, &str); 10] = [
    ("POST", "/Microsoft.Storage/checkNameAvailability"),
    ("POST", "/Microsoft.KeyVault/checkNameAvailability"),
    ("PUT", "/storageAccounts/"),
    ("PUT", "/vaults/"),
    ("PUT", "/Microsoft.OperationalInsights/workspaces/"),
    ("PUT", "/components/"),
    ("DELETE", "/components/"),
    ("DELETE", "/Microsoft.OperationalInsights/workspaces/"),
    ("DELETE", "/vaults/"),
    ("DELETE", "/storageAccounts/"),
];

/// Each fault once at each dependency step, with a fresh operator (a restart) before every round,
/// for a workspace from nothing and one that names its own storage account: every dependency is
/// created once (no duplicate), everything the operator created is gone after the delete (no
/// orphan), and the user's storage account is never written to nor deleted.
#[tokio::test]
async fn every_fault_at_every_dependency_step_converges_without_duplicates_orphans_or_deleting_the_users() {
    let faults: [(&str, FaultKind); 4] = [
        ("503", FaultKind::Status { status: 503, code: "ServiceUnavailable".into(), retry_after_secs: None }),
        ("429", FaultKind::Status { status: 429, code: "TooManyRequests".into(), retry_after_secs: Some(0) }),
        ("drop", FaultKind::Drop { after_handling: false }),
        ("drop-after", FaultKind::Drop { after_handling: true }),
    ];
    let users = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/shared/providers/Microsoft.Storage/storageAccounts/userssa");
    let mut cases = Vec::new();
    for named in [false, true] {
        for (method, path) in DEPENDENCY_STEPS {
            for (fault, kind) in &faults {
                cases.push((named, method, path, *fault, kind.clone()));
            }
        }
    }
    // In batches: each case runs its own emulator, and every round restarts the operator.
    let mut outcomes = Vec::new();
    let mut cases = cases.into_iter().peekable();
    while cases.peek().is_some() {
        let batch: Vec<_> = cases.by_ref().take(8).collect();
        outcomes.extend(join_all(batch.into_iter().map(|(named, method, path, fault, kind)| {
            let users = users.clone();
            async move {
                let label = format!("{method} {path} {fault}{}", if named { " (storage named)" } else { "" });
                let mut w = World::with_emulator(fast_emulator()).await;
                w.good_credentials();
                if named {
                    w.emulator.insert_resource(&users, json!({"location": "eastus", "kind": "StorageV2", "sku": {"name": "Standard_LRS"}}));
                }
                w.emulator.inject_rule(FaultRule::new(Some(method), Some(path), kind, 1));
                let extra = if named { json!({"storageAccount": users}) } else { json!({}) };
                let spec = merged(json!({"resourceGroup": RG, "location": "eastus"}), extra);
                w.kube.put(json!({"apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
                                  "metadata": {"name": "fresh", "namespace": NS}, "spec": spec}));
                let path_ws = kpath::<AmlWorkspace>("fresh");
                let mut problems = Vec::new();
                let mut ready = false;
                for _ in 0..25 {
                    w.restart();
                    let _ = w.reconcile::<AmlWorkspace>(&path_ws).await;
                    if w.ready(&path_ws).as_deref() == Some("True") {
                        ready = true;
                        break;
                    }
                    w.emulator.finish_operations();
                }
                if !ready {
                    problems.push(format!("{label}: not Ready: {:?}", w.condition(&path_ws, "Ready")));
                }
                let ids = w.emulator.resource_ids();
                for t in DEPENDENCY_TYPES {
                    let want = 1;
                    let have = ids.iter().filter(|id| id.contains(t)).count();
                    let created = w.emulator.requests().iter().filter(|r| r.created && r.path.contains(t)).count();
                    let created_want = if named && t.contains("storageAccounts") { 0 } else { 1 };
                    if have != want || created != created_want {
                        problems.push(format!("{label}: {have} stored, {created} created of {t}"));
                    }
                }
                w.kube.delete(&path_ws);
                for _ in 0..25 {
                    if w.kube.raw(&path_ws).is_none() {
                        break;
                    }
                    w.restart();
                    let _ = w.reconcile::<AmlWorkspace>(&path_ws).await;
                    w.emulator.finish_operations();
                }
                if w.kube.raw(&path_ws).is_some() {
                    problems.push(format!("{label}: not released: {:?}", w.condition(&path_ws, "Ready")));
                }
                let left = w.emulator.resource_ids();
                let expected_left = if named { vec![users.clone()] } else { Vec::new() };
                if left != expected_left {
                    problems.push(format!("{label}: left in Azure {left:?}"));
                }
                let touched: Vec<String> = w.emulator.requests().iter()
                    .filter(|r| r.method != "GET" && r.path.eq_ignore_ascii_case(&users))
                    .map(|r| format!("{} {}", r.method, r.path)).collect();
                if !touched.is_empty() {
                    problems.push(format!("{label}: the user's storage account was written: {touched:?}"));
                }
                if w.emulator.pending_faults() != 0 && !(named && path.contains("torage")) {
                    problems.push(format!("{label}: the fault never fired"));
                }
                problems
            }
        }))
        .await);
    }
    let problems: Vec<String> = outcomes.into_iter().flatten().collect();
    assert!(problems.is_empty(), "{} failing cases:\n{}", problems.len(), problems.join("\n"));
}

/// What Azure itself refuses, on every kind that has tags (not an injected fault: the emulator
/// refuses 60 tags as ARM does): Stalled with reason `InvalidTags` naming `spec.tags`, one write,
/// none while reconciled again; a new retry annotation value costs exactly one more write (refused
/// again); fixing the spec converges. A change in how the refusal is classified fails here.
async fn refused_tags_on<K: Kind>() -> Vec<String> {
    let w = world_for::<K>().await;
    let ctx = fresh_ctx(&w);
    let name = format!("{}refusedx", K::PREFIX);
    let path = kpath::<K>(&name);
    let too_many: serde_json::Map<String, Value> = (0..60).map(|i| (format!("t{i}"), json!("v"))).collect();
    w.kube.put(K::build(&name, json!({"tags": too_many})));
    let writes = || {
        w.emulator
            .requests()
            .iter()
            .filter(|r| r.method != "GET" && same_path(&K::arm_id(&name), &r.path))
            .count()
    };
    let rounds = |n: usize| {
        let ctx = ctx.clone();
        let path = path.clone();
        let w = &w;
        async move {
            for _ in 0..n {
                if let Some(obj) = w.kube.get::<K>(&path) {
                    let _ = pipeline::reconcile(Arc::new(obj), ctx.clone()).await;
                }
                w.emulator.finish_operations();
            }
        }
    };
    let mut failures = Vec::new();
    let kind = K::kind(&());
    rounds(8).await;
    let stalled = w.condition(&path, "Stalled").unwrap_or_default();
    if stalled["status"] != "True" || stalled["reason"] != "InvalidTags" || !stalled["message"].as_str().unwrap_or_default().starts_with("spec.tags:") {
        failures.push(format!("{kind}: not Stalled/InvalidTags naming spec.tags: {stalled}"));
    }
    if writes() != 1 {
        failures.push(format!("{kind}: {} writes for one refusal", writes()));
    }
    w.kube.edit(&path, |o| o["metadata"]["annotations"] = json!({RETRY_ANNOTATION: "again"}));
    rounds(6).await;
    if writes() != 2 {
        failures.push(format!("{kind}: {} writes after one retry annotation value (want 2)", writes()));
    }
    w.kube.edit(&path, |o| o["spec"]["tags"] = json!({"team": "a"}));
    rounds(10).await;
    if !converged(&w, &path) || w.condition(&path, "Stalled").is_some() {
        failures.push(format!("{kind}: did not converge once the spec was fixed: {}", w.kube.raw(&path).unwrap_or_default()["status"]));
    }
    failures
}

#[tokio::test]
async fn a_refusal_by_azure_on_every_kind_with_tags_stalls_once_and_retries_once_per_annotation_value() {
    let mut failures = refused_tags_on::<AmlWorkspace>().await;
    failures.extend(refused_tags_on::<AmlCompute>().await);
    failures.extend(refused_tags_on::<AmlOnlineEndpoint>().await);
    failures.extend(refused_tags_on::<AmlOnlineDeployment>().await);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
