//! Stopping the operator against a real Kubernetes API server (`AML_E2E_KUBECONFIG`): SIGTERM makes
//! `aml-operator run` exit 0 within seconds, with and without leader election, and a standby takes
//! the released Lease at once instead of waiting for it to expire.
//!
//! The operators are real `aml-operator run` processes (two, for the hand-over); Azure is the
//! in-process emulator. Skipped with a printed reason without `AML_E2E_KUBECONFIG`, a failure
//! instead with `AML_REQUIRE_E2E=1` (CI).

use crate::support;

use crate::support::cluster::{MANAGER, delete_namespace, eventually, namespace_with_emulator};

use aml_operator::crd::AmlWorkspace;
use aml_operator::emulator::Emulator;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::Client;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const LEASE: &str = "aml-operator";
/// How long after SIGTERM the operator must have exited.
const EXIT_WITHIN: Duration = Duration::from_secs(5);
/// How long after the leader's exit the standby must hold the Lease.
const TAKE_OVER_WITHIN: Duration = Duration::from_secs(2);

/// The cluster's kubeconfig and a client for it; `None` (skip) without `AML_E2E_KUBECONFIG`,
/// unless `AML_REQUIRE_E2E=1`.
async fn cluster() -> Option<(PathBuf, Client)> {
    // The client first: it is what skips (with its reason) when no cluster is configured.
    let client = support::cluster::cluster().await?;
    Some((support::cluster::kubeconfig_path(), client))
}

/// A fresh namespace with the workspace credentials Secret, and the emulator; removed by `finish`.
struct Env {
    client: Client,
    kubeconfig: PathBuf,
    ns: String,
    emulator: Emulator,
    ca_file: PathBuf,
}

impl Env {
    async fn start(kubeconfig: PathBuf, client: Client, prefix: &str) -> Env {
        let (ns, emulator, ca_file) = namespace_with_emulator(&client, prefix).await;
        Env { client, kubeconfig, ns, emulator, ca_file }
    }

    /// Starts `aml-operator run` against this namespace and the emulator; `identity` set: with
    /// leader election.
    fn operator(&self, identity: Option<&str>) -> Operator {
        self.operator_with(identity, &self.emulator.arm_endpoint(), &self.emulator.authority_host(), &[])
    }

    /// [`Env::operator`] with another ARM endpoint and authority host, and extra flags.
    fn operator_with(&self, identity: Option<&str>, arm_endpoint: &str, authority_host: &str, extra: &[&str]) -> Operator {
        let name = identity.unwrap_or("solo");
        let log = support::temp_path(&format!("operator-{name}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aml-operator"));
        cmd.args(["run", "--namespace", &self.ns, "--metrics-addr", "127.0.0.1:0", "--resync-seconds", "10"])
            .args(["--arm-endpoint", arm_endpoint, "--authority-host", authority_host])
            .arg("--ca-file")
            .arg(&self.ca_file)
            .args(extra);
        if let Some(id) = identity {
            cmd.args(["--leader-elect", "--lease-name", LEASE, "--lease-namespace", &self.ns, "--identity", id]);
        }
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "info")
            .env_remove("AML_LEADER_ELECT")
            .env_remove("AML_SHUTDOWN_TIMEOUT_SECONDS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("aml-operator starts");
        Operator { name: name.to_string(), child, log }
    }

    async fn lease_holder(&self) -> Option<String> {
        let lease = Api::<Lease>::namespaced(self.client.clone(), &self.ns).get_opt(LEASE).await.ok()??;
        lease.spec?.holder_identity.filter(|h| !h.is_empty())
    }

    /// Deletes the namespace and waits until it is gone; stops the emulator.
    async fn finish(self) {
        delete_namespace(&self.client, &self.ns, Duration::from_secs(120)).await;
        self.emulator.shutdown().await;
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

/// An `aml-operator run` process, killed if the test ends without stopping it.
struct Operator {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Operator {
    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit; returns the status and how long it took.
    async fn terminate(&mut self) -> (ExitStatus, Duration) {
        let sent = Instant::now();
        let kill = Command::new("kill").args(["-TERM", &self.pid()]).status().expect("kill runs");
        assert!(kill.success(), "kill -TERM {} failed", self.pid());
        self.exit_after(sent).await
    }

    /// Waits (up to 3 × EXIT_WITHIN) for the process to exit; returns the status and the time since `since`.
    async fn exit_after(&mut self, since: Instant) -> (ExitStatus, Duration) {
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (status, since.elapsed());
            }
            assert!(since.elapsed() < EXIT_WITHIN * 3, "operator {} still running {:?} after SIGTERM; its log:\n{}", self.name, since.elapsed(), self.log());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Asserts it exits 0 within [`EXIT_WITHIN`] of SIGTERM; returns when it exited.
    async fn assert_stops(&mut self) -> Instant {
        let (status, took) = self.terminate().await;
        let exited = Instant::now();
        println!("operator {} exited with {status} {took:?} after SIGTERM", self.name);
        assert!(status.success(), "operator {} exited with {status}; its log:\n{}", self.name, self.log());
        assert!(took < EXIT_WITHIN, "operator {} took {took:?} to exit after SIGTERM; its log:\n{}", self.name, self.log());
        exited
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

fn ready(obj: &Value) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True" && c["observedGeneration"] == obj["metadata"]["generation"])
    })
}

/// PUT and PATCH requests the emulator received for `arm_id`.
fn writes_to(emulator: &Emulator, arm_id: &str) -> usize {
    emulator
        .requests()
        .iter()
        .filter(|r| (r.method == "PUT" || r.method == "PATCH") && r.path.eq_ignore_ascii_case(arm_id))
        .count()
}

#[tokio::test]
async fn sigterm_hands_the_lease_over_without_a_gap_and_without_repeated_writes() {
    let Some((kubeconfig, client)) = cluster().await else { return };
    let env = Env::start(kubeconfig, client.clone(), "aml-e2e-handover").await;
    let mut leader = env.operator(Some("a"));
    let holder = eventually("replica a to hold the Lease", Duration::from_secs(30), || env.lease_holder()).await;
    assert_eq!(holder, "a");
    let mut standby = env.operator(Some("b"));

    // A workspace, reconciled by the leader to Ready.
    let api: Api<AmlWorkspace> = Api::namespaced(client.clone(), &env.ns);
    let ws: AmlWorkspace = serde_json::from_value(json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
        "metadata": {"name": "handover-ws", "namespace": env.ns},
        "spec": {"resourceGroup": "rg-e2e", "location": "eastus", "friendlyName": "before"}
    }))
    .unwrap();
    api.patch("handover-ws", &PatchParams::apply(MANAGER), &Patch::Apply(&ws)).await.expect("workspace applied");
    let obj = eventually("workspace Ready", Duration::from_secs(60), || {
        let api = api.clone();
        async move {
            let obj = serde_json::to_value(api.get("handover-ws").await.ok()?).ok()?;
            (ready(&obj) && obj["status"]["provisioningState"] == "Succeeded").then_some(obj)
        }
    })
    .await;
    let arm_id = obj["status"]["armId"].as_str().expect("armId").to_string();
    let written = writes_to(&env.emulator, &arm_id);
    assert!(written >= 1, "the workspace was created with a write");
    assert_eq!(env.lease_holder().await.as_deref(), Some(leader.name.as_str()), "the leader did not change while converging");
    // The leader is converged: a resync costs a GET, never another write of generation 1.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(writes_to(&env.emulator, &arm_id), written, "a converged generation was written again");

    // SIGTERM the leader, and edit the spec while it hands over.
    let sent = Instant::now();
    let kill = Command::new("kill").args(["-TERM", &leader.pid()]).status().expect("kill runs");
    assert!(kill.success());
    api.patch("handover-ws", &PatchParams::default(), &Patch::Merge(json!({"spec": {"friendlyName": "after"}})))
        .await
        .expect("spec edit accepted");
    let (status, took) = leader.exit_after(sent).await;
    let exited = Instant::now();
    println!("leader {} exited with {status} {took:?} after SIGTERM", leader.name);
    assert!(status.success(), "the leader exited with {status}; its log:\n{}", leader.log());
    assert!(took < EXIT_WITHIN, "the leader took {took:?} to exit; its log:\n{}", leader.log());

    let standby_name = standby.name.clone();
    eventually("the standby to hold the Lease", TAKE_OVER_WITHIN, || {
        let env = &env;
        let standby = standby_name.clone();
        async move { (env.lease_holder().await? == standby).then_some(()) }
    })
    .await;
    println!("standby {} held the Lease {:?} after the leader exited", standby.name, exited.elapsed());
    assert!(
        leader.log().contains("released the lease"),
        "the leader did not release the Lease; its log:\n{}",
        leader.log()
    );

    // The edit made during the hand-over converges, with one write for the new generation.
    eventually("friendlyName updated in ARM", Duration::from_secs(30), || {
        let r = env.emulator.resource(&arm_id);
        async move { (r?["properties"]["friendlyName"] == "after").then_some(()) }
    })
    .await;
    eventually("workspace Ready at generation 2", Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            let obj = serde_json::to_value(api.get("handover-ws").await.ok()?).ok()?;
            (ready(&obj) && obj["metadata"]["generation"] == 2).then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        writes_to(&env.emulator, &arm_id),
        written + 1,
        "expected exactly one more write (generation 2) after the hand-over; requests: {:?}",
        env.emulator.requests().iter().filter(|r| r.path.eq_ignore_ascii_case(&arm_id)).map(|r| format!("{} {}", r.method, r.status)).collect::<Vec<_>>()
    );

    // Delete the workspace while an operator runs (its finalizer), then stop that one too.
    api.delete("handover-ws", &DeleteParams::default()).await.expect("delete accepted");
    eventually("workspace gone", Duration::from_secs(60), || {
        let api = api.clone();
        async move { api.get_opt("handover-ws").await.ok()?.is_none().then_some(()) }
    })
    .await;
    standby.assert_stops().await;
    assert_eq!(env.lease_holder().await, None, "the last operator released the Lease");
    env.finish().await;
}

#[tokio::test]
async fn sigterm_stops_an_operator_without_leader_election() {
    let Some((kubeconfig, client)) = cluster().await else { return };
    let env = Env::start(kubeconfig, client.clone(), "aml-e2e-solo").await;
    let mut solo = env.operator(None);
    eventually("the controllers to start", Duration::from_secs(30), || {
        let log = solo.log();
        async move { log.contains("starting").then_some(()) }
    })
    .await;
    // Let the watches list and settle; this is not what is measured.
    tokio::time::sleep(Duration::from_secs(2)).await;
    solo.assert_stops().await;
    env.finish().await;
}

/// A TCP endpoint that accepts connections and never answers: an ARM call to it stays in flight.
/// Returns its URL and a counter of accepted connections.
async fn black_hole() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("https://{}/", listener.local_addr().expect("addr"));
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (url, accepted)
}

/// With a reconcile stuck on ARM: SIGTERM waits at most --shutdown-timeout-seconds, then exits 0;
/// a second signal exits at once (status 1).
#[tokio::test]
async fn an_in_flight_reconcile_gets_the_shutdown_timeout_and_a_second_signal_exits_at_once() {
    let Some((kubeconfig, client)) = cluster().await else { return };
    let env = Env::start(kubeconfig, client.clone(), "aml-e2e-stuck").await;
    let api: Api<AmlWorkspace> = Api::namespaced(client.clone(), &env.ns);
    let ws: AmlWorkspace = serde_json::from_value(json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
        "metadata": {"name": "stuck-ws", "namespace": env.ns},
        "spec": {"resourceGroup": "rg-e2e", "location": "eastus"}
    }))
    .unwrap();
    api.patch("stuck-ws", &PatchParams::apply(MANAGER), &Patch::Apply(&ws)).await.expect("workspace applied");
    let (hole, accepted) = black_hole().await;

    // The bound: in flight for good, so the process exits 0 after the timeout (2 s), not before.
    let mut op = env.operator_with(None, &hole, &hole, &["--shutdown-timeout-seconds", "2"]);
    eventually("a reconcile in flight", Duration::from_secs(30), || {
        let n = accepted.load(Ordering::SeqCst);
        async move { (n > 0).then_some(()) }
    })
    .await;
    let (status, took) = op.terminate().await;
    println!("stuck operator exited with {status} {took:?} after SIGTERM (timeout 2 s)");
    assert!(status.success(), "exited with {status}; its log:\n{}", op.log());
    assert!(took >= Duration::from_secs(2) && took < EXIT_WITHIN, "took {took:?}; its log:\n{}", op.log());
    assert!(op.log().contains("did not finish in time"), "{}", op.log());

    // A second signal does not wait for the (long) timeout.
    let seen = accepted.load(Ordering::SeqCst);
    let mut op = env.operator_with(None, &hole, &hole, &["--shutdown-timeout-seconds", "60"]);
    eventually("a reconcile in flight", Duration::from_secs(30), || {
        let n = accepted.load(Ordering::SeqCst);
        async move { (n > seen).then_some(()) }
    })
    .await;
    let sent = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &op.pid()]).status().expect("kill").success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(op.child.try_wait().expect("try_wait").is_none(), "exited before the second signal; its log:\n{}", op.log());
    assert!(Command::new("kill").args(["-INT", &op.pid()]).status().expect("kill").success());
    let (status, took) = op.exit_after(sent).await;
    println!("stuck operator exited with {status} {took:?} after SIGTERM + SIGINT");
    assert_eq!(status.code(), Some(1), "its log:\n{}", op.log());
    assert!(took < Duration::from_secs(2), "took {took:?}; its log:\n{}", op.log());

    // No operator runs now: let the namespace go without the operator's finalizers.
    let unfinalize = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    api.patch("stuck-ws", &PatchParams::default(), &unfinalize).await.expect("workspace finalizer removed");
    Api::<Secret>::namespaced(client.clone(), &env.ns).patch("aml-credentials", &PatchParams::default(), &unfinalize).await.expect("Secret finalizer removed");
    env.finish().await;
}
