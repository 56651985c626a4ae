//! The real kube-rs controllers (watch, queue, requeue) over the in-memory API server: objects
//! applied at once converge without anyone calling reconcile by hand.

mod support;

use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::{NS, World};

#[tokio::test]
async fn the_controllers_converge_a_stack_through_watches() {
    let w = World::new().await;
    w.good_credentials();
    let ready = Arc::new(AtomicBool::new(false));
    let (ctx, flag) = (w.ctx.clone(), ready.clone());
    let controllers = tokio::spawn(async move { aml_operator::manager::run_controllers(ctx, Some(NS), flag).await });

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut paths = Vec::new();
    for name in ["deployment.yaml", "endpoint.yaml", "compute.yaml", "workspace.yaml"] {
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
    assert!(creates >= 4, "{creates}");
    // The four objects' resources, and the workspace's four dependencies (examples/ holds a
    // workspace from nothing), each once.
    assert_eq!(w.emulator.resource_ids().len(), 8, "{:?}", w.emulator.resource_ids());
    controllers.abort();
}
