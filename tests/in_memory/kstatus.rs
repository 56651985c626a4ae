//! kstatus (sigs.k8s.io/cli-utils `pkg/kstatus/status`), the status model Flux, kpt and
//! `kubectl`-adjacent tools compute for custom resources, applied to the statuses the workspace
//! pipeline really writes (fake API server, emulator as Azure).
//!
//! kstatus's rules for a resource type it has no special rules for (every custom resource):
//!
//! 1. `metadata.deletionTimestamp` set -> Terminating.
//! 2. `status.observedGeneration` present and different from `metadata.generation` -> InProgress
//!    (reason `LatestGenerationNotObserved`).
//! 3. The first condition, in list order, that is `Reconciling=True` -> InProgress, or `Stalled=True`
//!    -> Failed, with that condition's message.
//! 4. Otherwise Current. (kstatus reads the conditions "abnormal-true": the absence of Reconciling and
//!    Stalled means done. `Ready` plays no part; an object without status is Current.)


use aml_operator::crd::{AmlWorkspace, AmlWorkspaceSpec};
use aml_operator::emulator::Fault;
use kube::api::ObjectMeta;
use serde_json::{Value, json};
use crate::support::{NS, World};

/// kstatus's status of a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KStatus {
    InProgress,
    Failed,
    Current,
    Terminating,
}

/// kstatus's result: the status and its message.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Computed {
    status: KStatus,
    message: String,
}

/// kstatus `Compute` for a custom resource.
fn compute(obj: &Value) -> Computed {
    let done = |status, message: &str| Computed { status, message: message.to_string() };
    if obj["metadata"]["deletionTimestamp"].as_str().is_some_and(|t| !t.is_empty()) {
        return done(KStatus::Terminating, "Resource scheduled for deletion");
    }
    if let (Some(generation), Some(observed)) =
        (obj["metadata"]["generation"].as_i64(), obj["status"]["observedGeneration"].as_i64())
        && observed != generation
    {
        let kind = obj["kind"].as_str().unwrap_or_default();
        return done(KStatus::InProgress, &format!("{kind} generation is {generation}, but latest observed generation is {observed}"));
    }
    for c in obj["status"]["conditions"].as_array().into_iter().flatten() {
        let message = c["message"].as_str().unwrap_or_default();
        match (c["type"].as_str(), c["status"].as_str()) {
            (Some("Reconciling"), Some("True")) => return done(KStatus::InProgress, message),
            (Some("Stalled"), Some("True")) => return done(KStatus::Failed, message),
            _ => {}
        }
    }
    done(KStatus::Current, "Resource is current")
}

const PATH: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlworkspaces/ws1";

fn workspace() -> AmlWorkspace {
    let spec: AmlWorkspaceSpec = serde_json::from_value(json!({
        "resourceGroup": "rg-ml",
        "location": "eastus",
        "friendlyName": "Team A",
        "storageAccount": "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.Storage/storageAccounts/sa1",
        "keyVault": "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.KeyVault/vaults/kv1",
        "identity": {"type": "SystemAssigned"}
    }))
    .expect("valid spec");
    AmlWorkspace {
        metadata: ObjectMeta { name: Some("ws1".into()), namespace: Some(NS.into()), ..Default::default() },
        spec,
        status: None,
    }
}

fn kstatus(w: &World) -> Computed {
    compute(&w.kube.raw(PATH).expect("object exists"))
}

/// Every status the operator writes names the generation it describes (kstatus rule 2 needs it).
fn assert_generation_observed(w: &World) {
    let obj = w.kube.raw(PATH).expect("object exists");
    assert_eq!(obj["status"]["observedGeneration"], obj["metadata"]["generation"], "{:#}", obj["status"]);
    for c in obj["status"]["conditions"].as_array().expect("conditions") {
        assert_eq!(c["observedGeneration"], obj["metadata"]["generation"], "condition {c}");
    }
}

#[test]
fn the_rules_on_hand_made_objects() {
    let base = |status: Value| json!({"kind": "AmlWorkspace", "metadata": {"generation": 2}, "status": status});
    let cond = |t: &str, s: &str| json!({"type": t, "status": s, "reason": "R", "message": format!("{t} is {s}")});

    assert_eq!(compute(&json!({"kind": "AmlWorkspace", "metadata": {"generation": 1}})).status, KStatus::Current);
    let stale = compute(&base(json!({"observedGeneration": 1, "conditions": [cond("Ready", "True")]})));
    assert_eq!(stale.status, KStatus::InProgress);
    assert_eq!(stale.message, "AmlWorkspace generation is 2, but latest observed generation is 1");
    let reconciling = compute(&base(json!({"observedGeneration": 2, "conditions": [cond("Ready", "False"), cond("Reconciling", "True")]})));
    assert_eq!((reconciling.status, reconciling.message.as_str()), (KStatus::InProgress, "Reconciling is True"));
    let stalled = compute(&base(json!({"observedGeneration": 2, "conditions": [cond("Ready", "False"), cond("Stalled", "True")]})));
    assert_eq!((stalled.status, stalled.message.as_str()), (KStatus::Failed, "Stalled is True"));
    assert_eq!(compute(&base(json!({"observedGeneration": 2, "conditions": [cond("Ready", "True"), cond("Stalled", "False")]}))).status, KStatus::Current);
    // Ready=False alone is not a kstatus signal: without Reconciling or Stalled it reads as Current.
    assert_eq!(compute(&base(json!({"observedGeneration": 2, "conditions": [cond("Ready", "False")]}))).status, KStatus::Current);
    let mut deleting = base(json!({"observedGeneration": 1}));
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    assert_eq!(compute(&deleting).status, KStatus::Terminating);
}

#[tokio::test]
async fn a_workspace_is_in_progress_while_arm_creates_it_and_current_once_converged() {
    let w = World::new().await;
    w.good_credentials();
    w.kube.put(workspace());
    w.reconcile::<AmlWorkspace>(PATH).await.expect("create accepted");
    let k = kstatus(&w);
    assert_eq!((k.status, k.message.as_str()), (KStatus::InProgress, "ARM create in progress"));
    assert_generation_observed(&w);

    // Polls while ARM still runs the operation stay InProgress.
    w.reconcile::<AmlWorkspace>(PATH).await.expect("operation polled");
    assert_eq!(kstatus(&w).status, KStatus::InProgress);

    w.converge::<AmlWorkspace>(PATH).await;
    assert_eq!(kstatus(&w), Computed { status: KStatus::Current, message: "Resource is current".into() });
    assert_generation_observed(&w);
}

#[tokio::test]
async fn a_spec_edit_is_in_progress_until_the_operator_has_applied_it() {
    let w = World::new().await;
    w.good_credentials();
    w.kube.put(workspace());
    w.converge::<AmlWorkspace>(PATH).await;

    w.kube.edit(PATH, |o| o["spec"]["friendlyName"] = json!("Team A (renamed)"));
    let k = kstatus(&w);
    assert_eq!(k.status, KStatus::InProgress);
    assert_eq!(k.message, "AmlWorkspace generation is 2, but latest observed generation is 1");

    w.reconcile::<AmlWorkspace>(PATH).await.expect("update accepted");
    assert_eq!(kstatus(&w).status, KStatus::InProgress, "the PUT runs");
    assert_generation_observed(&w);
    w.converge::<AmlWorkspace>(PATH).await;
    assert_eq!(kstatus(&w).status, KStatus::Current);
    assert_generation_observed(&w);
}

#[tokio::test]
async fn missing_credentials_are_failed_and_recover_to_current() {
    let w = World::new().await;
    w.kube.put(workspace());
    let _ = w.reconcile::<AmlWorkspace>(PATH).await.expect_err("no credentials");

    let k = kstatus(&w);
    assert_eq!(k.status, KStatus::Failed, "{k:?}");
    assert!(k.message.starts_with("credentials Secret team-a/aml-credentials not found"), "{k:?}");
    assert_generation_observed(&w);

    w.good_credentials();
    w.converge::<AmlWorkspace>(PATH).await;
    assert_eq!(kstatus(&w).status, KStatus::Current, "Stalled is cleared once the Secret exists");
}

#[tokio::test]
async fn a_wrong_client_secret_is_failed() {
    let w = World::new().await;
    w.credentials("aml-credentials", "not-the-secret");
    w.kube.put(workspace());
    let _ = w.reconcile::<AmlWorkspace>(PATH).await.expect_err("token refused");
    assert_eq!(kstatus(&w).status, KStatus::Failed);
}

#[tokio::test]
async fn deleting_is_terminating_until_the_object_is_gone() {
    let w = World::new().await;
    w.good_credentials();
    w.kube.put(workspace());
    w.converge::<AmlWorkspace>(PATH).await;

    w.kube.delete(PATH);
    assert_eq!(kstatus(&w).status, KStatus::Terminating);
    let _ = w.reconcile::<AmlWorkspace>(PATH).await.expect_err("delete is asynchronous");
    assert_eq!(kstatus(&w).status, KStatus::Terminating, "ARM deletes");
    w.emulator.finish_operations();
    w.reconcile::<AmlWorkspace>(PATH).await.expect("delete finished");
    assert!(w.kube.raw(PATH).is_none(), "gone: kstatus NotFound");
}

/// kstatus reads "no Reconciling and no Stalled" as done. While the operator retries a transient ARM
/// failure on its own (backoff, no person needed) it writes Ready=False with neither, so kstatus
/// tools (Flux, kpt) would report the workspace Current before it exists in Azure. The pipeline
/// should set Reconciling=True (reason = the error's reason) while it retries.
#[tokio::test]
async fn a_transient_arm_failure_is_in_progress_not_current() {
    let w = World::new().await;
    w.good_credentials();
    w.kube.put(workspace());
    w.emulator.inject(Fault {
        method: Some("GET".into()),
        path_contains: Some("/workspaces/ws1".into()),
        status: 503,
        code: "ServiceUnavailable".into(),
        retry_after_secs: None,
        times: 20,
    });
    let err = w.reconcile::<AmlWorkspace>(PATH).await.expect_err("ARM unavailable");
    assert!(!err.is_stalled(), "a 503 needs no person: {err:?}");
    assert_eq!(kstatus(&w).status, KStatus::InProgress, "{:#}", w.kube.raw(PATH).unwrap_or_default()["status"]);
}
