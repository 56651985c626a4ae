//! A whole serving stack from `examples/`: workspace, compute, datastore, model, environment and
//! code versions, endpoint (with traffic to a deployment that does not exist yet) and deployment,
//! applied at once and reconciled in an adversarial order, then deleted.


use aml_operator::crd::{
    AmlCodeVersion, AmlCompute, AmlDatastore, AmlEnvironmentVersion, AmlModelVersion, AmlOnlineDeployment, AmlOnlineEndpoint,
    AmlWorkspace,
};
use serde_json::{Value, json};
use crate::support::{NS, World};

const WS: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlworkspaces/team-a";
const CPU: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlcomputes/cpu-cluster";
const EP: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlonlineendpoints/scoring";
const DEP: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlonlinedeployments/blue";
const DS: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amldatastores/training-data";
const MODEL: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlmodelversions/sklearn-model-1";
const ENV: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlenvironmentversions/sklearn-env-1";
const CODE: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlcodeversions/score-code-1";
/// Every object, children first.
const ALL: [&str; 8] = [DEP, EP, CODE, ENV, MODEL, DS, CPU, WS];
const KEYS: &str = "/api/v1/namespaces/team-a/secrets/team-a-scoring-keys";

fn examples() -> Vec<Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut out = Vec::new();
    for name in ["deployment.yaml", "endpoint.yaml", "code.yaml", "environment.yaml", "model.yaml", "datastore.yaml", "compute.yaml", "workspace.yaml"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let mut v: Value = serde_yaml::from_str(&text).unwrap();
        v["metadata"]["namespace"] = json!(NS);
        out.push(v);
    }
    out
}

/// One round over every object, children first (the worst order).
async fn round(w: &World) {
    let present = |p: &str| w.kube.raw(p).is_some();
    if present(DEP) {
        let _ = w.reconcile::<AmlOnlineDeployment>(DEP).await;
    }
    if present(EP) {
        let _ = w.reconcile::<AmlOnlineEndpoint>(EP).await;
    }
    if present(CODE) {
        let _ = w.reconcile::<AmlCodeVersion>(CODE).await;
    }
    if present(ENV) {
        let _ = w.reconcile::<AmlEnvironmentVersion>(ENV).await;
    }
    if present(MODEL) {
        let _ = w.reconcile::<AmlModelVersion>(MODEL).await;
    }
    if present(DS) {
        let _ = w.reconcile::<AmlDatastore>(DS).await;
    }
    if present(CPU) {
        let _ = w.reconcile::<AmlCompute>(CPU).await;
    }
    if present(WS) {
        let _ = w.reconcile::<AmlWorkspace>(WS).await;
    }
    w.emulator.finish_operations();
}

#[tokio::test]
async fn a_folder_of_every_kind_converges_in_any_order_and_goes_away_with_its_workspace() {
    let w = World::new().await;
    w.good_credentials();
    for manifest in examples() {
        w.kube.put(manifest);
    }
    let mut rounds = 0;
    while ALL.iter().any(|p| w.ready(p).as_deref() != Some("True")) {
        rounds += 1;
        assert!(rounds <= 20, "not converged after 20 rounds: {:#?}", ALL.map(|p| w.condition(p, "Ready")));
        round(&w).await;
    }
    // The endpoint carries the full traffic split, and the keys Secret is there.
    let ep_id = w.kube.raw(EP).unwrap()["status"]["armId"].as_str().unwrap().to_string();
    assert_eq!(w.emulator.resource(&ep_id).unwrap()["properties"]["traffic"], json!({"blue": 100}));
    let keys = w.kube.raw(KEYS).expect("keys Secret written");
    assert!(keys["data"]["primaryKey"].is_string() || keys["stringData"]["primaryKey"].is_string(), "{keys}");
    // ARM never answered 400: traffic waited for the deployment instead of failing.
    assert!(w.emulator.requests().iter().all(|r| r.status != 400), "{:?}", w.emulator.requests());
    // Children are owned by their parents, so deleting the workspace deletes them (GC).
    for (child, owner) in [(CPU, "team-a"), (EP, "team-a"), (DEP, "scoring")] {
        let refs = &w.kube.raw(child).unwrap()["metadata"]["ownerReferences"];
        assert_eq!(refs[0]["name"], owner, "{child}: {refs}");
    }

    // Delete the workspace; the garbage collector deletes the children it owns (the in-memory API
    // server has no garbage collector, so the test plays it).
    for p in ALL {
        w.kube.delete(p);
    }
    for _ in 0..20 {
        if ALL.iter().all(|p| w.kube.raw(p).is_none()) {
            break;
        }
        round(&w).await;
    }
    assert!(ALL.iter().all(|p| w.kube.raw(p).is_none()), "objects finalized: {:?}", ALL.map(|p| w.condition(p, "Ready")));
    assert!(w.emulator.resource_ids().is_empty(), "nothing left in Azure: {:?}", w.emulator.resource_ids());
}

#[tokio::test]
async fn a_parent_in_a_subscription_the_credentials_do_not_reach_is_its_own_stalled_reason() {
    let w = World::new().await;
    w.good_credentials();
    let other = "/subscriptions/99999999-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/far-away";
    w.kube.put(json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlCompute",
        "metadata": {"name": "cpu", "namespace": NS},
        "spec": {"workspaceId": other, "computeType": "AmlCompute",
                 "amlCompute": {"vmSize": "STANDARD_DS3_V2", "scaleSettings": {"maxNodeCount": 1}}}
    }));
    let path = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlcomputes/cpu";
    let _ = w.reconcile::<AmlCompute>(path).await;
    let err = w.reconcile::<AmlCompute>(path).await.expect_err("parent not reachable");
    assert_eq!(err.reason(), "ParentInAnotherSubscription");
    assert!(err.is_stalled());
    assert!(err.message().contains("99999999-0000-0000-0000-000000000000"), "{}", err.message());
    assert_eq!(w.condition(path, "Stalled").unwrap()["reason"], "ParentInAnotherSubscription");
    assert!(w.emulator.requests().iter().all(|r| r.method == "GET"), "no write: {:?}", w.emulator.requests());
}
