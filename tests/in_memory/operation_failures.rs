//! ARM operations that end Failed or Canceled, however the operator learns it (the operation's
//! poll, or a GET that finds the resource failed because the poll's answer or `status.operation`
//! was lost): transient failures are retried on their own with bounded backoff; the ones a person
//! must fix stay `Stalled` until the spec changes or the `amloperator.io/retry` annotation gets a
//! new value, and then cause exactly one new write.


use aml_operator::controller::Config;
use aml_operator::crd::{AmlOnlineEndpoint, AmlOnlineEndpointSpec, AmlWorkspace, AmlWorkspaceSpec, RETRY_ANNOTATION};
use aml_operator::emulator::{FaultKind, FaultRule, OperationEnd};
use kube::api::ObjectMeta;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use crate::support::{NS, SUBSCRIPTION, World};

const WS: &str = "wsfail";
const EP: &str = "epfail";

fn ws_path() -> String {
    format!("/apis/amloperator.io/v1alpha1/namespaces/{NS}/amlworkspaces/{WS}")
}

fn ep_path() -> String {
    format!("/apis/amloperator.io/v1alpha1/namespaces/{NS}/amlonlineendpoints/{EP}")
}

fn ws_id() -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/{WS}")
}

fn ep_id() -> String {
    format!("{}/onlineEndpoints/{EP}", ws_id())
}

fn workspace() -> AmlWorkspace {
    let spec: AmlWorkspaceSpec = serde_json::from_value(json!({
        "resourceGroup": "rg-ml",
        "location": "eastus",
        "tags": {"team": "a"},
        "storageAccount": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/providers/Microsoft.Storage/storageAccounts/sa1"),
        "keyVault": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/providers/Microsoft.KeyVault/vaults/kv1"),
    }))
    .expect("valid workspace spec");
    AmlWorkspace { metadata: ObjectMeta { name: Some(WS.into()), namespace: Some(NS.into()), ..Default::default() }, spec, status: None }
}

fn endpoint() -> AmlOnlineEndpoint {
    let spec: AmlOnlineEndpointSpec =
        serde_json::from_value(json!({"workspaceRef": {"name": WS}, "authMode": "Key", "tags": {"team": "a"}})).expect("valid endpoint spec");
    AmlOnlineEndpoint { metadata: ObjectMeta { name: Some(EP.into()), namespace: Some(NS.into()), ..Default::default() }, spec, status: None }
}

/// A world whose transient retries start after 100 ms (so within about a second: status keeps
/// the retry time in whole seconds), with `retries` automatic retries per generation.
async fn world(retries: u32) -> World {
    let mut w = World::new().await;
    w.set_config(Config {
        resync: Duration::from_secs(300),
        base_backoff: Duration::from_millis(100),
        max_operation_retries: retries,
        ..Config::default()
    });
    w.good_credentials();
    w
}

/// The next write to `arm_id` by `method` starts an operation that ends Failed with `code`.
fn fail_next_write(w: &World, method: &str, arm_id: &str, code: &str) {
    w.emulator.inject_rule(FaultRule::new(
        Some(method),
        Some(arm_id),
        FaultKind::OperationEnds { end: OperationEnd::Failed, code: code.into() },
        1,
    ));
}

fn writes(w: &World, arm_id: &str) -> usize {
    w.emulator
        .requests()
        .iter()
        .filter(|r| matches!(r.method.as_str(), "PUT" | "PATCH" | "DELETE") && r.path.eq_ignore_ascii_case(arm_id))
        .count()
}

fn arm_requests(w: &World) -> usize {
    w.emulator.requests().len()
}

fn status(w: &World, path: &str) -> Value {
    w.kube.raw(path).expect("object exists")["status"].clone()
}

fn cond(w: &World, path: &str, type_: &str) -> (String, String, String) {
    let c = w.condition(path, type_).unwrap_or_default();
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    (s("status"), s("reason"), s("message"))
}

/// Reconciles (finishing ARM operations between rounds) until Ready=True, for at most `secs`.
async fn until_ready<K: aml_operator::controller::AmlKind>(w: &World, path: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        let _ = w.reconcile::<K>(path).await;
        if w.ready(path).as_deref() == Some("True") {
            return;
        }
        w.emulator.finish_operations();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} did not become ready: {:#}", status(w, path));
}

/// The flake of issue #11, made deterministic: the operation's answer is lost (here: the status
/// write after the PUT fails, so `status.operation` never lands), the operation ends Failed, and the
/// next reconcile only sees the resource in state Failed. That is the operation's failure: retried
/// (the code is unknown, so as a transient one), not a dead end that waits for a spec edit.
#[tokio::test]
async fn a_resource_found_failed_after_the_operators_own_write_is_retried_not_a_dead_end() {
    let w = world(8).await;
    w.kube.put(workspace());
    w.converge::<AmlWorkspace>(&ws_path()).await;
    w.kube.put(endpoint());
    w.converge::<AmlOnlineEndpoint>(&ep_path()).await;

    w.kube.edit(&ep_path(), |o| o["spec"]["tags"]["phase"] = json!("update"));
    fail_next_write(&w, "PUT", &ep_id(), "InternalServerError");
    // The status write after the PUT fails, and so does the failure report.
    w.kube.fail_next("PATCH", &format!("amlonlineendpoints/{EP}/status"), 500, 2);
    let before = writes(&w, &ep_id());
    assert!(w.reconcile::<AmlOnlineEndpoint>(&ep_path()).await.is_err(), "the status write failed");
    assert_eq!(writes(&w, &ep_id()), before + 1, "the PUT went out");
    assert!(status(&w, &ep_path())["operation"].is_null(), "the operation was lost");
    w.emulator.finish_operations();
    assert_eq!(w.emulator.resource(&ep_id()).expect("exists")["properties"]["provisioningState"], "Failed");

    w.reconcile::<AmlOnlineEndpoint>(&ep_path()).await.expect("reconciles");
    let (st, reason, message) = cond(&w, &ep_path(), "Reconciling");
    assert_eq!((st.as_str(), reason.as_str()), ("True", "ArmOperationFailedRetrying"), "{message}");
    assert!(w.condition(&ep_path(), "Stalled").is_none(), "not stalled: {:#}", status(&w, &ep_path()));
    assert_eq!(status(&w, &ep_path())["lastFailure"]["class"], "Transient");

    until_ready::<AmlOnlineEndpoint>(&w, &ep_path(), 10).await;
    assert_eq!(writes(&w, &ep_id()), before + 2, "one retry");
    assert_eq!(w.emulator.resource(&ep_id()).expect("exists")["tags"]["phase"], "update");
    let st = status(&w, &ep_path());
    assert!(st["lastFailure"].is_null(), "cleared once converged: {st:#}");
    assert!(w.condition(&ep_path(), "Reconciling").is_none());
}

/// A resource found Failed that this operator process did not just fail (here: after a restart, at
/// a resync) is written again at once — a retry, not a dead end; it converges.
#[tokio::test]
async fn a_resource_found_failed_that_the_operator_did_not_just_fail_is_written_again() {
    let mut w = world(8).await;
    w.kube.put(workspace());
    w.converge::<AmlWorkspace>(&ws_path()).await;
    w.emulator.update_resource(&ws_id(), |v| v["properties"]["provisioningState"] = json!("Failed"));
    w.restart();
    let before = writes(&w, &ws_id());
    until_ready::<AmlWorkspace>(&w, &ws_path(), 5).await;
    assert_eq!(writes(&w, &ws_id()), before + 1, "one repairing write");
    assert_eq!(w.emulator.resource(&ws_id()).unwrap()["properties"]["provisioningState"], "Succeeded");
}

/// A transient failure reported by the operation's poll: `Reconciling=True`, a reason that says a
/// retry is coming and a message naming ARM's code and the retry time; nothing is sent to ARM
/// and status does not change until that time; then one new write, and Ready.
#[tokio::test]
async fn a_transient_operation_failure_is_retried_after_a_backoff_without_a_spec_edit() {
    let w = world(8).await;
    w.kube.put(workspace());
    w.converge::<AmlWorkspace>(&ws_path()).await;
    w.kube.edit(&ws_path(), |o| o["spec"]["tags"]["phase"] = json!("update"));
    fail_next_write(&w, "PUT", &ws_id(), "ServiceUnavailable");
    w.reconcile::<AmlWorkspace>(&ws_path()).await.expect("PUT accepted");
    w.emulator.finish_operations();
    w.reconcile::<AmlWorkspace>(&ws_path()).await.expect("poll: failed");
    let (ready, reason, message) = cond(&w, &ws_path(), "Ready");
    assert_eq!((ready.as_str(), reason.as_str()), ("False", "ArmOperationFailedRetrying"));
    assert!(message.contains("ServiceUnavailable") && message.contains("retries at"), "{message}");
    assert_eq!(cond(&w, &ws_path(), "Reconciling").1, "ArmOperationFailedRetrying");
    assert!(w.condition(&ws_path(), "Stalled").is_none());
    let st = status(&w, &ws_path());
    assert_eq!((st["lastFailure"]["code"].as_str(), st["lastFailure"]["retries"].as_u64()), (Some("ServiceUnavailable"), Some(1)));
    let next = st["lastFailure"]["nextRetry"].as_str().expect("a retry time").to_string();
    assert!(message.contains(&next), "the message names the retry time {next}: {message}");

    // Before the retry time: no ARM request, no status change.
    let (requests, version) = (arm_requests(&w), w.kube.raw(&ws_path()).unwrap()["metadata"]["resourceVersion"].clone());
    let _ = w.reconcile::<AmlWorkspace>(&ws_path()).await;
    let _ = w.reconcile::<AmlWorkspace>(&ws_path()).await;
    assert_eq!(arm_requests(&w), requests, "no ARM call during the backoff");
    assert_eq!(w.kube.raw(&ws_path()).unwrap()["metadata"]["resourceVersion"], version, "no status write during the backoff");

    let generation = w.kube.raw(&ws_path()).unwrap()["metadata"]["generation"].clone();
    let before = writes(&w, &ws_id());
    until_ready::<AmlWorkspace>(&w, &ws_path(), 10).await;
    assert_eq!(writes(&w, &ws_id()), before + 1, "exactly one retry");
    assert_eq!(w.kube.raw(&ws_path()).unwrap()["metadata"]["generation"], generation, "no spec edit");
    assert_eq!(w.emulator.resource(&ws_id()).unwrap()["tags"]["phase"], "update");
}

/// A failure a person must fix stays Stalled with no ARM write, however often it is reconciled;
/// a new value of the retry annotation causes exactly one write; the same value again, none.
#[tokio::test]
async fn a_failure_that_needs_a_person_waits_for_the_retry_annotation_and_acts_once_per_value() {
    let w = world(8).await;
    w.kube.put(workspace());
    w.converge::<AmlWorkspace>(&ws_path()).await;
    w.kube.edit(&ws_path(), |o| o["spec"]["tags"]["phase"] = json!("update"));
    fail_next_write(&w, "PUT", &ws_id(), "QuotaExceeded");
    w.reconcile::<AmlWorkspace>(&ws_path()).await.expect("PUT accepted");
    w.emulator.finish_operations();
    w.reconcile::<AmlWorkspace>(&ws_path()).await.expect("poll: failed");
    // A quota code has a reason of its own (not the generic ArmOperationFailed), and says how to
    // ask for more.
    let (stalled, reason, message) = cond(&w, &ws_path(), "Stalled");
    assert_eq!((stalled.as_str(), reason.as_str()), ("True", "QuotaExceeded"));
    assert!(message.contains("QuotaExceeded") && message.contains(RETRY_ANNOTATION) && message.contains("request more"), "{message}");
    assert_eq!(cond(&w, &ws_path(), "Ready").1, "QuotaExceeded");
    assert!(w.condition(&ws_path(), "Reconciling").is_none());

    let before = writes(&w, &ws_id());
    for _ in 0..5 {
        let _ = w.reconcile::<AmlWorkspace>(&ws_path()).await;
        w.emulator.finish_operations();
    }
    assert_eq!(writes(&w, &ws_id()), before, "no ARM write while stalled");
    assert_eq!(cond(&w, &ws_path(), "Stalled").1, "QuotaExceeded");

    // The person raised the quota (here: the fault is gone) and asks for a retry.
    w.kube.edit(&ws_path(), |o| o["metadata"]["annotations"] = json!({RETRY_ANNOTATION: "2024-06-01"}));
    // ...but it fails once more: exactly one write, then stalled again.
    fail_next_write(&w, "PUT", &ws_id(), "QuotaExceeded");
    for _ in 0..5 {
        let _ = w.reconcile::<AmlWorkspace>(&ws_path()).await;
        w.emulator.finish_operations();
    }
    assert_eq!(writes(&w, &ws_id()), before + 1, "one write for the annotation value");
    assert_eq!(status(&w, &ws_path())["retryToken"], "2024-06-01");
    assert_eq!(cond(&w, &ws_path(), "Stalled").1, "QuotaExceeded");

    // The same value again does nothing.
    w.kube.edit(&ws_path(), |o| o["metadata"]["annotations"] = json!({RETRY_ANNOTATION: "2024-06-01"}));
    for _ in 0..3 {
        let _ = w.reconcile::<AmlWorkspace>(&ws_path()).await;
        w.emulator.finish_operations();
    }
    assert_eq!(writes(&w, &ws_id()), before + 1, "the same value is not acted on twice");

    // A new value: one write, and this time it works.
    w.kube.edit(&ws_path(), |o| o["metadata"]["annotations"] = json!({RETRY_ANNOTATION: "2024-06-02"}));
    until_ready::<AmlWorkspace>(&w, &ws_path(), 5).await;
    assert_eq!(writes(&w, &ws_id()), before + 2);
    assert!(w.condition(&ws_path(), "Stalled").is_none());
    assert_eq!(w.emulator.resource(&ws_id()).unwrap()["tags"]["phase"], "update");
}

/// Automatic retries are bounded: after `max_operation_retries` the next transient failure waits
/// for a person, saying so.
#[tokio::test]
async fn transient_retries_are_bounded_then_wait_for_a_person() {
    let w = world(1).await;
    w.kube.put(workspace());
    w.converge::<AmlWorkspace>(&ws_path()).await;
    w.kube.edit(&ws_path(), |o| o["spec"]["tags"]["phase"] = json!("update"));
    w.emulator.inject_rule(FaultRule::new(
        Some("PUT"),
        Some(&ws_id()),
        FaultKind::OperationEnds { end: OperationEnd::Failed, code: "InternalServerError".into() },
        2,
    ));
    let before = writes(&w, &ws_id());
    let deadline = Instant::now() + Duration::from_secs(10);
    while cond(&w, &ws_path(), "Stalled").0 != "True" && Instant::now() < deadline {
        let _ = w.reconcile::<AmlWorkspace>(&ws_path()).await;
        w.emulator.finish_operations();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (stalled, reason, message) = cond(&w, &ws_path(), "Stalled");
    assert_eq!((stalled.as_str(), reason.as_str()), ("True", "ArmOperationFailed"), "{:#}", status(&w, &ws_path()));
    assert!(message.contains("after 1 automatic retries"), "{message}");
    assert_eq!(writes(&w, &ws_id()), before + 2, "the write and one retry");
    for _ in 0..3 {
        let _ = w.reconcile::<AmlWorkspace>(&ws_path()).await;
    }
    assert_eq!(writes(&w, &ws_id()), before + 2, "then nothing without a person");
}

/// README's failure section lists every code of the one table, in its class's row, and the
/// annotation.
#[test]
fn the_readme_lists_every_classified_code_in_its_class_and_the_retry_annotation() {
    use aml_operator::arm::{FailureClass, OPERATION_FAILURE_CLASSES};
    let readme = include_str!("../../README.md");
    let section = readme.split("## Failure modes").nth(1).and_then(|s| s.split("\n## ").next()).expect("a Failure modes section");
    let row = |prefix: &str| section.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no row {prefix}")).to_string();
    let (transient, person) = (row("| transient"), row("| needs a person"));
    for (code, class) in OPERATION_FAILURE_CLASSES {
        let (line, other) = match class {
            FailureClass::Transient => (&transient, &person),
            FailureClass::NeedsPerson => (&person, &transient),
        };
        let quoted = format!("`{code}`");
        assert!(line.contains(&quoted) && !other.contains(&quoted), "README: {code} belongs in the {class:?} row only");
    }
    assert!(section.contains(RETRY_ANNOTATION) && section.contains("status.retryToken"));
}
