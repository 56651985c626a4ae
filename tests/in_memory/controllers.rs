//! The real kube-rs controllers (watch, queue, requeue) over the in-memory API server: objects
//! applied at once converge without anyone calling reconcile by hand.

use crate::support;

use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use crate::support::{NS, World};

#[tokio::test]
async fn the_controllers_converge_a_stack_through_watches() {
    let w = World::new().await;
    w.good_credentials();
    let ready = Arc::new(AtomicBool::new(false));
    let (ctx, flag) = (w.ctx.clone(), ready.clone());
    let controllers = tokio::spawn(async move { aml_operator::manager::run_controllers(ctx, Some(NS), flag).await });

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut paths = Vec::new();
    for name in ["deployment.yaml", "endpoint.yaml", "code.yaml", "environment.yaml", "model.yaml", "datastore.yaml", "compute.yaml", "workspace.yaml"] {
        let mut v: serde_json::Value = serde_yaml::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap();
        v["metadata"]["namespace"] = json!(NS);
        paths.push(aml_operator::localkube::path_of(&v));
        w.kube.put(v);
    }
    let start = Instant::now();
    loop {
        if ready.load(Ordering::Relaxed) && paths.iter().all(|p| w.ready(p).as_deref() == Some("True")) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "not converged: {:#?}", paths.iter().map(|p| w.condition(p, "Ready")).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One create per resource: the controllers never wrote twice.
    let creates = w.emulator.requests().iter().filter(|r| r.method == "PUT" && (r.status == 201 || r.status == 202)).count();
    assert!(creates >= 8, "{creates}");
    // The eight objects' resources, the three assets' containers (ARM creates them with their
    // first version), and the workspace's four dependencies (examples/ holds a workspace from
    // nothing), each once.
    assert_eq!(w.emulator.resource_ids().len(), 15, "{:?}", w.emulator.resource_ids());
    controllers.abort();
}

/// The controllers over the in-memory API server wake an object when its credentials Secret
/// changes (the metadata-only Secret watch), long before the slow retry: here 120 s.
#[tokio::test]
async fn a_fixed_secret_wakes_its_object_through_the_secret_watch() {
    let w = World::new().await;
    w.credentials("aml-credentials", "not-the-secret");
    let ready = Arc::new(AtomicBool::new(false));
    let (ctx, flag) = (w.ctx.clone(), ready.clone());
    let controllers = tokio::spawn(async move { aml_operator::manager::run_controllers(ctx, Some(NS), flag).await });
    let ws: serde_json::Value = json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
        "metadata": {"name": "fixed", "namespace": NS},
        "spec": {"resourceGroup": "rg-ml", "location": "eastus", "createDependencies": false,
                 "storageAccount": format!("/subscriptions/{}/resourceGroups/rg-ml/providers/Microsoft.Storage/storageAccounts/fixedsa", support::SUBSCRIPTION),
                 "keyVault": format!("/subscriptions/{}/resourceGroups/rg-ml/providers/Microsoft.KeyVault/vaults/fixed-kv", support::SUBSCRIPTION)}
    });
    let path = aml_operator::localkube::path_of(&ws);
    w.kube.put(ws);
    let reason = |w: &World| w.condition(&path, "Ready").and_then(|c| c["reason"].as_str().map(str::to_string));
    let start = Instant::now();
    while reason(&w).as_deref() != Some("AuthenticationFailed") {
        assert!(start.elapsed() < Duration::from_secs(30), "never failed to authenticate: {:?}", reason(&w));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tokens = w.emulator.token_requests();
    w.good_credentials();
    let fixed = Instant::now();
    while w.ready(&path).as_deref() != Some("True") {
        assert!(fixed.elapsed() < Duration::from_secs(20), "not Ready after the fix: {:?}", w.condition(&path, "Ready"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(w.emulator.token_requests() > tokens, "a new token with the fixed secret");
    println!("Ready {:.2} s after the Secret was fixed (slow retry: 120 s)", fixed.elapsed().as_secs_f64());
    controllers.abort();
}
