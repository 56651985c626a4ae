//! Operating it: metrics with the controller-runtime names, health endpoints, leader election.

mod support;

use aml_operator::crd::AmlWorkspace;
use aml_operator::leader::{LeaderConfig, run_when_leader};
use aml_operator::shutdown::Shutdown;
use aml_operator::localkube::LocalKube;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{NS, World};

const PATH: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlworkspaces/ws1";

async fn serve(ready: Arc<AtomicBool>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, aml_operator::health::router(ready)).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn metrics_carry_controller_runtime_and_arm_series_and_health_follows_cache_sync() {
    let w = World::new().await;
    w.good_credentials();
    let ws: AmlWorkspace = serde_json::from_value(json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
        "metadata": {"name": "ws1", "namespace": NS},
        "spec": {"resourceGroup": "rg", "location": "eastus"}
    }))
    .unwrap();
    w.kube.put(ws);
    w.converge::<AmlWorkspace>(PATH).await;
    aml_operator::metrics::max_concurrent_reconciles("AmlWorkspace", 16);

    let ready = Arc::new(AtomicBool::new(false));
    let base = serve(ready.clone()).await;
    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("{base}/readyz")).send().await.unwrap().status(), 503, "not ready before caches sync");
    ready.store(true, Ordering::Relaxed);
    assert_eq!(http.get(format!("{base}/readyz")).send().await.unwrap().status(), 200);

    let text = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    for series in [
        "controller_runtime_reconcile_total{controller=\"AmlWorkspace\",result=\"success\"}",
        "controller_runtime_reconcile_errors_total",
        "controller_runtime_reconcile_time_seconds_bucket{controller=\"AmlWorkspace\",le=\"",
        "controller_runtime_reconcile_time_seconds_count{controller=\"AmlWorkspace\"}",
        "controller_runtime_active_workers{controller=\"AmlWorkspace\"} 0",
        "controller_runtime_max_concurrent_reconciles{controller=\"AmlWorkspace\"} 16",
        "aml_arm_requests_total{op=\"PUT\",status_class=\"2xx\"}",
        "aml_arm_requests_total{op=\"GET\",status_class=\"2xx\"}",
        "aml_arm_request_duration_seconds_count{op=\"GET\"}",
        "aml_token_requests_total{result=\"ok\"}",
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
    // Bounded labels: no object names or ARM ids.
    assert!(!text.contains("ws1") && !text.contains("/subscriptions/"), "{text}");
}

/// The exec probes' path: the same endpoints over `--health-socket`, asked by the binary's
/// `probe` command, whose exit code is what the kubelet reads.
#[tokio::test]
async fn the_probe_command_asks_the_health_socket_and_exits_by_its_answer() {
    let dir = std::env::temp_dir().join(format!("aml-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("health.sock");
    let asked_at = socket.clone();
    let probe = move |path: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_aml-operator"))
            .args(["probe", "--socket", asked_at.to_str().unwrap(), path])
            .output()
            .expect("aml-operator probe runs");
        (out.status.code(), String::from_utf8_lossy(&out.stdout).trim().to_string(), String::from_utf8_lossy(&out.stderr).trim().to_string())
    };

    // Nothing listens yet: a failure that says where it asked.
    let (code, _, err) = probe("/healthz");
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot connect to") && err.contains("health.sock") && err.contains("--health-socket"), "{err}");

    // A socket file left by a container that ran before in the same pod is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let ready = Arc::new(AtomicBool::new(false));
    aml_operator::health::serve(None, Some(&socket), ready.clone()).await.expect("serves on the stale socket's path");

    let asked = probe.clone();
    let (code, out, _) = tokio::task::spawn_blocking(move || asked("/healthz")).await.unwrap();
    assert_eq!((code, out.as_str()), (Some(0), "ok"));
    let asked = probe.clone();
    let (code, _, err) = tokio::task::spawn_blocking(move || asked("/readyz")).await.unwrap();
    assert_eq!(code, Some(1), "not ready before the caches sync");
    assert!(err.contains("503") && err.contains("caches not synced"), "{err}");
    ready.store(true, Ordering::Relaxed);
    let asked = probe.clone();
    let (code, out, _) = tokio::task::spawn_blocking(move || asked("/readyz")).await.unwrap();
    assert_eq!((code, out.as_str()), (Some(0), "ok"));
    // Only the two probe paths are accepted.
    let (code, _, err) = tokio::task::spawn_blocking(move || probe("/metrics")).await.unwrap();
    assert_eq!(code, Some(2), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn leader(identity: &str) -> LeaderConfig {
    LeaderConfig {
        lease_name: "aml-operator".into(),
        namespace: "aml-system".into(),
        identity: identity.into(),
        duration_seconds: 2,
        grace_seconds: 1,
    }
}

/// Starts a manager that counts how often its "controllers" started and whether they run now.
fn manager(client: kube::Client, id: &str, running: Arc<AtomicUsize>, starts: Arc<AtomicUsize>) -> tokio::task::JoinHandle<()> {
    let config = leader(id);
    tokio::spawn(async move {
        let work = move |_shutdown| {
            let running = running.clone();
            let starts = starts.clone();
            async move {
                struct Guard(Arc<AtomicUsize>);
                impl Drop for Guard {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                running.fetch_add(1, Ordering::SeqCst);
                starts.fetch_add(1, Ordering::SeqCst);
                let _guard = Guard(running);
                std::future::pending::<()>().await;
            }
        };
        let _ = run_when_leader(client, config, Arc::new(AtomicBool::new(false)), Shutdown::never(), work).await;
    })
}

async fn wait_for(what: &str, timeout: Duration, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let (kube, client) = LocalKube::new();
    let (a_running, a_starts) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (b_running, b_starts) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let a = manager(client.clone(), "replica-a", a_running.clone(), a_starts.clone());
    wait_for("a leader", Duration::from_secs(10), || a_running.load(Ordering::SeqCst) == 1).await;
    let b = manager(client.clone(), "replica-b", b_running.clone(), b_starts.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(b_running.load(Ordering::SeqCst), 0, "the standby must not reconcile while the leader renews");
    let lease = kube.raw("/apis/coordination.k8s.io/v1/namespaces/aml-system/leases/aml-operator").expect("lease");
    assert_eq!(lease["spec"]["holderIdentity"], "replica-a");

    // The leader dies: the standby takes over.
    a.abort();
    wait_for("the standby to lead", Duration::from_secs(15), || b_running.load(Ordering::SeqCst) == 1).await;
    assert_eq!(b_starts.load(Ordering::SeqCst), 1);
    b.abort();
}

#[tokio::test]
async fn losing_the_lease_stops_reconciling() {
    let (kube, client) = LocalKube::new();
    let (running, starts) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let m = manager(client, "replica-a", running.clone(), starts.clone());
    wait_for("leadership", Duration::from_secs(10), || running.load(Ordering::SeqCst) == 1).await;

    // Someone else takes the lease (e.g. after a network partition): this replica must stop.
    let path = "/apis/coordination.k8s.io/v1/namespaces/aml-system/leases/aml-operator";
    kube.edit(path, |l| {
        l["spec"]["holderIdentity"] = json!("replica-z");
        l["spec"]["renewTime"] = json!(k8s_openapi::jiff::Timestamp::now().to_string());
        l["spec"]["leaseDurationSeconds"] = json!(3600);
    });
    wait_for("controllers to stop", Duration::from_secs(15), || running.load(Ordering::SeqCst) == 0).await;
    m.abort();
}

#[tokio::test]
async fn on_shutdown_the_leader_releases_the_lease_and_a_standby_takes_it_at_once() {
    let (kube, client) = LocalKube::new();
    // A long lease: a standby that waited for expiry would take 15 s.
    let config = |id: &str| LeaderConfig { duration_seconds: 15, grace_seconds: 5, ..leader(id) };
    let counting = |running: Arc<AtomicUsize>| {
        move |shutdown: Shutdown| {
            let running = running.clone();
            async move {
                running.fetch_add(1, Ordering::SeqCst);
                shutdown.requested().await;
                running.fetch_sub(1, Ordering::SeqCst);
            }
        }
    };
    let (a_running, b_running) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (stop_a, a_shutdown) = Shutdown::new();
    let a = tokio::spawn(run_when_leader(client.clone(), config("replica-a"), Arc::new(AtomicBool::new(false)), a_shutdown, counting(a_running.clone())));
    wait_for("a leader", Duration::from_secs(10), || a_running.load(Ordering::SeqCst) == 1).await;
    let b = tokio::spawn(run_when_leader(client.clone(), config("replica-b"), Arc::new(AtomicBool::new(false)), Shutdown::never(), counting(b_running.clone())));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b_running.load(Ordering::SeqCst), 0, "the standby must not reconcile while the leader holds the lease");

    stop_a.graceful();
    let stopped = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(5), a).await.expect("the leader returns on shutdown").expect("no panic");
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(a_running.load(Ordering::SeqCst), 0, "its controllers ended first");
    wait_for("the standby to lead", Duration::from_secs(3), || b_running.load(Ordering::SeqCst) == 1).await;
    println!("standby leads {:?} after the leader's shutdown", stopped.elapsed());
    let lease = kube.raw("/apis/coordination.k8s.io/v1/namespaces/aml-system/leases/aml-operator").expect("lease");
    assert_eq!(lease["spec"]["holderIdentity"], "replica-b");
    b.abort();
}

const FLEET_SUBSCRIPTION: &str = "99999999-2222-3333-4444-555555555555";

#[tokio::test]
async fn a_principal_with_more_objects_than_its_read_budget_checks_per_resync_is_reported() {
    use aml_operator::arm::limit::RateLimits;
    use aml_operator::arm::{ArmClient, CloudConfig};
    use aml_operator::controller::{Config, Context};
    let mut w = World::new().await;
    w.good_credentials();
    // 1 read per second and a 2 s resync: this principal can check 2 objects per period.
    let cloud = CloudConfig {
        arm_endpoint: w.emulator.arm_endpoint(),
        authority_host: w.emulator.authority_host(),
        ca_file: Some(w.ca_file.clone()),
        rate_limits: RateLimits { reads_per_second: 1, read_burst: 100, writes_per_second: 100, write_burst: 100 },
        ..CloudConfig::default()
    };
    let config = Config { resync: Duration::from_secs(2), ..Config::default() };
    w.ctx = Arc::new(Context::new(w.client.clone(), ArmClient::new(&cloud).unwrap(), config));
    assert_eq!(w.ctx.fleet.capacity(), 2);
    let client_id = aml_operator::emulator::Principal::default().client_id;
    for name in ["fleet-a", "fleet-b", "fleet-c"] {
        let ws: AmlWorkspace = serde_json::from_value(json!({
            "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
            "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}")},
            // A subscription of its own: the metrics registry is shared by the tests of this file.
            "spec": {"resourceGroup": "rg", "location": "eastus", "subscriptionId": FLEET_SUBSCRIPTION}
        }))
        .unwrap();
        w.kube.put(ws);
        w.converge::<AmlWorkspace>(&format!("/apis/amloperator.io/v1alpha1/namespaces/{NS}/amlworkspaces/{name}")).await;
    }
    // Reconciled again and again, each object counts once.
    assert_eq!(w.ctx.fleet.objects_of(FLEET_SUBSCRIPTION, &client_id), 3);
    let text = aml_operator::metrics::render();
    let labels = format!("{{subscription=\"{FLEET_SUBSCRIPTION}\",client_id=\"{client_id}\"}}");
    assert!(text.contains(&format!("aml_arm_principal_objects{labels} 3")), "{text}");
    assert!(text.contains(&format!("aml_arm_principal_object_capacity{labels} 2")), "{text}");
}
