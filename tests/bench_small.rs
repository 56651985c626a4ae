//! The benchmark at small sizes (seconds, debug build): the machine-independent counts it reports,
//! and the pieces it stands on (LocalKube's list and watch, the emulator's write bucket).

use aml_operator::arm::{ArmClient, CloudConfig, ErrorClass, Secret, ServicePrincipal};
use aml_operator::bench::{self, BenchOptions, kinds};
use aml_operator::crd::AmlWorkspace;
use aml_operator::emulator::{Emulator, EmulatorConfig, Principal};
use aml_operator::localkube::LocalKube;
use futures::{StreamExt, TryStreamExt};
use kube::Api;
use kube::api::ListParams;
use kube::runtime::watcher;
use serde_json::json;
use std::time::Duration;

/// Options that run no phase; each test turns on the one it checks.
fn none() -> BenchOptions {
    BenchOptions {
        steady_objects: 0,
        throttle_objects: 0,
        memory_objects: 0,
        latency_objects: 0,
        ready_timeout: Duration::from_secs(120),
        ..BenchOptions::quick()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_makes_no_writes_and_at_most_one_get_per_object_per_resync() {
    let options = BenchOptions { steady_objects: 27, resync: Duration::from_secs(1), resync_periods: 3, ..none() };
    let report = bench::run(&options).await.expect("benchmark runs");
    let s = report.steady.clone().expect("P1 measured");
    println!("{report}");
    assert_eq!(s.objects, 27);
    assert_eq!(s.arm_writes, 0, "no ARM writes once converged");
    assert_eq!(s.kube_writes, Some(0), "no Kubernetes writes once converged");
    assert!(s.arm_gets > 0, "resyncs happened");
    assert!(
        s.max_gets_one_object <= s.allowed_gets_one_object,
        "one object got {} GETs in {:?}, at most {} allowed with a {:?} resync (±10%)",
        s.max_gets_one_object,
        s.window,
        s.allowed_gets_one_object,
        s.resync
    );
    assert!(s.gets_per_object_per_resync() <= 1.0 / 0.9, "{:.3} GETs per object per resync", s.gets_per_object_per_resync());
    assert!(report.startup.in_process.is_some(), "P5 in-process measured");

    // Per kind: every kind is there, and none writes (a POST such as listKeys counts as a write).
    let kinds: Vec<&str> = s.per_kind.iter().map(|k| k.kind).collect();
    assert_eq!(
        kinds,
        [
            "AmlWorkspace",
            "AmlCompute",
            "AmlModelVersion",
            "AmlEnvironmentVersion",
            "AmlCodeVersion",
            "AmlOnlineEndpoint",
            "AmlOnlineDeployment",
            "AmlRoleAssignment",
            "AmlDatastore"
        ]
    );
    for k in &s.per_kind {
        assert_eq!(k.objects, 3, "{}", k.kind);
        assert_eq!(k.arm_writes, 0, "{}: {} ARM writes once converged", k.kind, k.arm_writes);
        assert!(k.arm_reads > 0, "{}: resyncs happened", k.kind);
        assert!(k.reads_per_object_per_resync(s.periods()) <= 1.0 / 0.9 + 0.5, "{}: {:.3} reads per object per resync", k.kind, k.reads_per_object_per_resync(s.periods()));
    }
    assert_eq!(s.per_kind.iter().map(|k| k.arm_writes).sum::<u64>(), s.arm_writes);
}

#[test]
fn requests_are_attributed_to_the_kind_whose_segment_comes_last() {
    let all = kinds::every();
    let ws = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws";
    assert_eq!(kinds::kind_of_path(&all, ws), Some("AmlWorkspace"));
    assert_eq!(kinds::kind_of_path(&all, &format!("{ws}/computes/c")), Some("AmlCompute"));
    assert_eq!(kinds::kind_of_path(&all, &format!("{ws}/onlineEndpoints/e/listKeys")), Some("AmlOnlineEndpoint"));
    assert_eq!(kinds::kind_of_path(&all, &format!("{ws}/onlineEndpoints/e/deployments/d")), Some("AmlOnlineDeployment"));
    assert_eq!(kinds::kind_of_path(&all, &format!("{ws}/providers/Microsoft.Authorization/roleAssignments/g")), Some("AmlRoleAssignment"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convergence_under_the_write_and_read_buckets_sends_no_429s() {
    // Both buckets small enough to bind: about 3 reads per object through a 15-burst 30/s bucket.
    let options = BenchOptions { throttle_objects: 30, write_limit: (10, 10.0), read_limit: Some((15, 30.0)), ..none() };
    let report = bench::run(&options).await.expect("benchmark runs");
    let t = report.throttle.clone().expect("P2 measured");
    println!("{report}");
    assert_eq!(t.ready, 30, "all Ready");
    assert_eq!(t.accepted_writes, 30, "one write per object");
    assert_eq!(t.throttled, 0, "the operator stays inside ARM's write bucket");
    assert_eq!(t.throttled_reads, 0, "the operator stays inside ARM's read bucket");
    assert!(t.reads >= 60, "a create needs reads (its poll and its final GET): {}", t.reads);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convergence_under_the_write_bucket_completes_with_one_accepted_write_per_object() {
    // The counts that hold with or without a client-side limiter (the 429s are the ignored test's).
    let options = BenchOptions { throttle_objects: 30, write_limit: (10, 10.0), ..none() };
    let report = bench::run(&options).await.expect("benchmark runs");
    let t = report.throttle.expect("P2 measured");
    assert_eq!(t.ready, 30, "all Ready");
    assert_eq!(t.accepted_writes, 30, "one accepted write per object");
    let (bound, _) = t.lower_bound();
    assert!(t.elapsed >= bound, "cannot beat the bucket: {:?} < {bound:?}", t.elapsed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_is_measured_in_a_separate_operator_process() {
    let options = BenchOptions {
        memory_objects: 20,
        operator_exe: Some(env!("CARGO_BIN_EXE_aml-operator").into()),
        ..none()
    };
    let report = bench::run(&options).await.expect("benchmark runs");
    let m = report.memory.expect("P3 measured");
    assert_eq!((m.first, m.objects), (4, 20));
    assert!(m.rss_first_kib > 0 && m.rss_kib > 0 && m.peak_kib >= m.rss_kib, "{m:?}");
    assert!(report.startup.process.is_some(), "P5 for a new process measured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overhead_is_measured_for_every_object() {
    let options = BenchOptions { latency_objects: 10, ..none() };
    let report = bench::run(&options).await.expect("benchmark runs");
    let l = report.latency.expect("P4 measured");
    assert_eq!(l.samples, 10);
    assert!(l.p50 <= l.p99 && l.p99 <= l.max);
}

#[test]
fn percentiles_are_nearest_rank() {
    let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
    assert_eq!(bench::percentile(&v, 50.0), Duration::from_millis(50));
    assert_eq!(bench::percentile(&v, 99.0), Duration::from_millis(99));
    assert_eq!(bench::percentile(&v[..1], 99.0), Duration::from_millis(1));
    assert_eq!(bench::percentile(&[], 50.0), Duration::ZERO);
}

#[test]
fn rss_is_read_from_proc_status() {
    let text = "Name:\taml-operator\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n";
    let rss = bench::rss::parse_status(text).expect("parsed");
    assert_eq!((rss.rss_kib, rss.hwm_kib), (40960, 51200));
    assert!(bench::rss::of_self().is_some_and(|r| r.rss_kib > 0));
}

#[tokio::test]
async fn the_emulator_enforces_its_write_bucket_with_429_and_retry_after() {
    aml_operator::install_crypto_provider();
    let ca = std::env::temp_dir().join(format!("aml-bench-test-{}-ca.pem", std::process::id()));
    let emulator = Emulator::start(EmulatorConfig { write_limit: Some((3, 0.5)), ca_file: Some(ca.clone()), ..EmulatorConfig::default() })
        .await
        .expect("emulator");
    let arm = ArmClient::new(&CloudConfig {
        arm_endpoint: emulator.arm_endpoint(),
        authority_host: emulator.authority_host(),
        ca_file: Some(ca),
        ..CloudConfig::default()
    })
    .expect("client");
    let p = Principal::default();
    let sp = ServicePrincipal {
        tenant_id: p.tenant_id,
        client_id: p.client_id,
        credential: aml_operator::arm::ClientCredential::Secret(Secret::new(p.client_secret)),
        subscription_id: None,
    };
    let id = |i: usize| (kinds::WORKSPACE.arm_id)(bench::SUBSCRIPTION, "ns", i);
    let body = json!({"location": "eastus", "identity": {"type": "SystemAssigned"}, "properties": {}});
    for i in 0..3 {
        arm.put(&sp, &id(i), "2024-10-01", &body).await.expect("within the burst");
    }
    let err = arm.put(&sp, &id(3), "2024-10-01", &body).await.expect_err("bucket empty");
    match err.class() {
        ErrorClass::Throttled(wait) => assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(2), "{wait:?}"),
        other => panic!("expected Throttled, got {other:?}"),
    }
    assert_eq!(emulator.throttled(), 1);
    // Reads are not writes.
    arm.get(&sp, &id(0), "2024-10-01").await.expect("GET not throttled");
    assert_eq!(emulator.throttled(), 1);
    let requests = emulator.requests();
    assert_eq!(requests.iter().filter(|r| r.status == 429).count(), 1);
    assert!(requests.windows(2).all(|w| w[0].at <= w[1].at), "timestamps in order");
    // A token comes back after 1 / 0.5 = 2 s.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    arm.put(&sp, &id(3), "2024-10-01", &body).await.expect("refilled");
}

fn workspace(name: &str) -> serde_json::Value {
    let mut v = (kinds::WORKSPACE.object)("team-a", 0);
    v["metadata"]["name"] = json!(name);
    v
}

#[tokio::test]
async fn localkube_lists_in_pages_across_namespaces() {
    let (kube, client) = LocalKube::new();
    for i in 0..5 {
        kube.put(workspace(&format!("ws{i}")));
    }
    let mut other = workspace("elsewhere");
    other["metadata"]["namespace"] = json!("team-b");
    kube.put(other);
    let all: Api<AmlWorkspace> = Api::all(client.clone());
    let first = all.list(&ListParams::default().limit(4)).await.expect("page 1");
    assert_eq!(first.items.len(), 4);
    let token = first.metadata.continue_.clone().expect("more pages");
    let second = all.list(&ListParams::default().limit(4).continue_token(&token)).await.expect("page 2");
    assert_eq!(second.items.len(), 2);
    assert!(second.metadata.continue_.is_none_or(|c| c.is_empty()));
    assert_eq!(first.metadata.resource_version, second.metadata.resource_version, "pages share the first page's version");
    let team_a: Api<AmlWorkspace> = Api::namespaced(client, "team-a");
    assert_eq!(team_a.list(&ListParams::default()).await.expect("list").items.len(), 5);
    assert_eq!(kube.request_counts().list, 3);
}

#[tokio::test]
async fn localkube_watch_streams_changes_and_replays_what_a_late_watcher_missed() {
    let (kube, client) = LocalKube::new();
    kube.put(workspace("a"));
    let api: Api<AmlWorkspace> = Api::namespaced(client, "team-a");
    let stream = watcher(api, watcher::Config::default().any_semantic()).boxed();
    let mut stream = stream;
    let mut seen = Vec::new();
    // Init, InitApply(a), InitDone.
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await.expect("event").expect("ok") {
        let done = matches!(ev, watcher::Event::InitDone);
        seen.push(ev);
        if done {
            break;
        }
    }
    assert!(seen.iter().any(|e| matches!(e, watcher::Event::InitApply(o) if o.metadata.name.as_deref() == Some("a"))));
    kube.put(workspace("b"));
    let path = aml_operator::localkube::path_of(&workspace("a"));
    kube.edit(&path, |o| o["spec"]["friendlyName"] = json!("edited"));
    kube.delete(&path);
    let mut names = Vec::new();
    while names.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await.expect("event").expect("ok") {
            Some(watcher::Event::Apply(o)) => names.push(format!("apply {}", o.metadata.name.unwrap_or_default())),
            Some(watcher::Event::Delete(o)) => names.push(format!("delete {}", o.metadata.name.unwrap_or_default())),
            Some(_) => {}
            None => panic!("watch ended"),
        }
    }
    assert_eq!(names, ["apply b", "apply a", "delete a"]);
    assert_eq!(kube.open_watches(), 1);
}

#[tokio::test]
async fn localkube_watch_from_an_old_version_replays_and_sends_bookmarks_at_its_timeout() {
    let (kube, client) = LocalKube::new();
    kube.put(workspace("a"));
    let since = kube.resource_version();
    kube.put(workspace("b"));
    let api: Api<AmlWorkspace> = Api::namespaced(client, "team-a");
    let wp = kube::api::WatchParams::default().timeout(1);
    let events: Vec<_> = api.watch(&wp, &since.to_string()).await.expect("watch").collect().await;
    let kinds: Vec<String> = events
        .into_iter()
        .map(|e| match e.expect("event") {
            kube::api::WatchEvent::Added(o) => format!("ADDED {}", o.metadata.name.unwrap_or_default()),
            kube::api::WatchEvent::Bookmark(b) => format!("BOOKMARK {}", !b.metadata.resource_version.is_empty()),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["ADDED b", "BOOKMARK true"], "replay, then a bookmark as the 1 s watch ends");
}
