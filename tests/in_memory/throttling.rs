//! ARM's write bucket, enforced by the emulator, against the operator's client-side limiter: a
//! thousand objects converge without a single 429.
//!
//! Time is scaled down 10x so the test runs in seconds: ARM's write bucket is 200 requests refilled
//! at 10 per second (the emulator here: 200 burst, 100 per second) and the client's default budget
//! is 160 burst, 8 per second (here: 160 burst, 80 per second). Bursts are not scaled; what matters
//! is that the client's budget stays below ARM's in both burst and rate.

use crate::support;

use aml_operator::arm::limit::RateLimits;
use aml_operator::arm::{ArmClient, CloudConfig, ErrorClass, Secret as ArmSecret, ServicePrincipal};
use aml_operator::controller::{Config, Context, pipeline};
use aml_operator::crd::AmlWorkspace;
use aml_operator::emulator::{EmulatorConfig, Principal};
use futures::StreamExt;
use kube::api::ObjectMeta;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use crate::support::{NS, SUBSCRIPTION, World};

const API: &str = "2024-10-01";
/// ARM's write bucket with time scaled 10x: 200 burst, 10 per second -> 100 per second.
const ARM_WRITES: (u32, f64) = (200, 100.0);
/// The client's default write budget (160 burst, 8 per second) with the same scaling.
const CLIENT: RateLimits = RateLimits { reads_per_second: 1000, read_burst: 1000, writes_per_second: 80, write_burst: 160 };
const OBJECTS: usize = 1000;

fn ws_id(name: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/{name}")
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

fn cloud(w: &World, limits: RateLimits) -> CloudConfig {
    CloudConfig {
        arm_endpoint: w.emulator.arm_endpoint(),
        authority_host: w.emulator.authority_host(),
        ca_file: Some(w.ca_file.clone()),
        rate_limits: limits,
        ..CloudConfig::default()
    }
}

fn throttled_config(write_limit: (u32, f64)) -> EmulatorConfig {
    EmulatorConfig {
        operation_duration: Duration::from_millis(30),
        retry_after_secs: 0,
        write_limit: Some(write_limit),
        ..support::emulator_config()
    }
}

fn workspace(name: &str) -> AmlWorkspace {
    let spec = json!({
        "resourceGroup": "rg-ml",
        "location": "eastus",
        "storageAccount": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/providers/Microsoft.Storage/storageAccounts/sa1"),
        "keyVault": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/providers/Microsoft.KeyVault/vaults/kv1"),
        "tags": {"batch": "throttling"},
    });
    AmlWorkspace {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some(NS.into()), ..Default::default() },
        spec: serde_json::from_value(spec).expect("valid workspace spec"),
        status: None,
    }
}

fn path(name: &str) -> String {
    format!("/apis/amloperator.io/v1alpha1/namespaces/{NS}/amlworkspaces/{name}")
}

#[tokio::test]
async fn the_write_bucket_answers_429_with_retry_after_once_empty_and_refills() {
    let w = World::with_emulator(throttled_config((3, 2.0))).await;
    let generous = RateLimits { writes_per_second: 1000, write_burst: 1000, ..CLIENT };
    let arm = ArmClient::new(&cloud(&w, generous)).unwrap();
    let body = json!({"location": "eastus", "properties": {}});
    for i in 0..3 {
        arm.put(&principal(), &ws_id(&format!("wsb{i}")), API, &body).await.expect("within the burst");
    }
    let err = arm.put(&principal(), &ws_id("wsb3"), API, &body).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Throttled(Duration::from_secs(1)), "{err:?}");
    assert_eq!(w.emulator.throttled(), 1);
    // The client waits out Retry-After (its next request, a read, waits too): by then the bucket
    // has refilled. Reads are not limited by the bucket, and the throttled write had no effect.
    let started = Instant::now();
    assert!(arm.get(&principal(), &ws_id("wsb3"), API).await.unwrap().is_none());
    arm.put(&principal(), &ws_id("wsb3"), API, &body).await.expect("refilled");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(w.emulator.throttled(), 1);
    let statuses: Vec<u16> = w.emulator.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![202, 202, 202, 429, 404, 202]);
}

#[tokio::test]
async fn a_client_budget_above_the_bucket_is_throttled() {
    // The control: with the client's limiter set above ARM's bucket, 429s do happen. The bucket
    // lets through at most its burst plus what it refills while the requests run, so the bound
    // below holds however slow the machine is; a slow refill keeps it well above zero.
    const BURST: u32 = 20;
    const PER_SECOND: f64 = 1.0;
    let w = World::with_emulator(throttled_config((BURST, PER_SECOND))).await;
    let above = RateLimits { writes_per_second: 1000, write_burst: 1000, ..CLIENT };
    let arm = ArmClient::new(&cloud(&w, above)).unwrap();
    let body = json!({"location": "eastus", "properties": {}});
    let started = Instant::now();
    let results = futures::stream::iter(0..40)
        .map(|i| {
            let arm = arm.clone();
            let body = body.clone();
            async move { arm.put(&principal(), &ws_id(&format!("wsc{i}")), API, &body).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let refilled = (started.elapsed().as_secs_f64() * PER_SECOND).ceil() as usize;
    let throttled = results.iter().filter(|r| matches!(r, Err(e) if matches!(e.class(), ErrorClass::Throttled(_)))).count();
    let at_least = 40usize.saturating_sub(BURST as usize + refilled);
    assert!(throttled >= at_least && throttled > 0, "{throttled} of 40 throttled, at least {at_least} expected ({refilled} refilled)");
    assert_eq!(w.emulator.throttled(), throttled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_workspaces_converge_under_arms_write_bucket_with_zero_429s() {
    let w = World::with_emulator(throttled_config(ARM_WRITES)).await;
    w.good_credentials();
    let arm = ArmClient::new(&cloud(&w, CLIENT)).unwrap();
    let ctx = Arc::new(Context::new(w.client.clone(), arm, Config { resync: Duration::from_secs(300), ..Config::default() }));
    let names: Vec<String> = (0..OBJECTS).map(|i| format!("tw{i:04}")).collect();
    for name in &names {
        w.kube.put(workspace(name));
    }

    let started = Instant::now();
    let mut rounds = 0;
    loop {
        rounds += 1;
        let pending: Vec<&String> = names.iter().filter(|n| w.ready(&path(n)).as_deref() != Some("True")).collect();
        if pending.is_empty() {
            break;
        }
        // A reconcile whose write token is far off gives its worker back and asks to come back
        // then (a requeue), so a round can end with writes still to make: rounds go on, a quarter
        // second apart, as the controller's requeues would, until the budget has let all through.
        assert!(started.elapsed() < Duration::from_secs(120), "{} workspaces not Ready after {} rounds", pending.len(), rounds - 1);
        let errors = AtomicUsize::new(0);
        futures::stream::iter(pending)
            .for_each_concurrent(64, |name| {
                let ctx = ctx.clone();
                let errors = &errors;
                let obj: AmlWorkspace = w.kube.get(&path(name)).expect("object exists");
                async move {
                    if pipeline::reconcile(Arc::new(obj), ctx).await.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .await;
        eprintln!(
            "throttling: round {rounds}: {} reconcile errors, {} ARM requests, {:.1} s",
            errors.load(Ordering::Relaxed),
            w.emulator.requests().len(),
            started.elapsed().as_secs_f64()
        );
        w.emulator.finish_operations();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let log = w.emulator.requests();
    let too_many = log.iter().filter(|r| r.status == 429).count();
    assert_eq!((too_many, w.emulator.throttled()), (0, 0), "the client stayed under ARM's write bucket");
    let writes = log.iter().filter(|r| r.method != "GET").count();
    assert_eq!(writes, OBJECTS, "one write per workspace");
    assert_eq!(log.iter().filter(|r| r.created).count(), OBJECTS);
    for name in &names {
        assert!(w.emulator.resource(&ws_id(name)).is_some(), "{name} exists in ARM");
    }
    // The bucket held: 160 at once, then 80 per second, so the writes took at least ~10 s.
    let elapsed = started.elapsed();
    eprintln!("throttling: {OBJECTS} workspaces Ready in {rounds} rounds, {:.1} s, {} ARM requests, 0 x 429", elapsed.as_secs_f64(), log.len());
    assert!(elapsed >= Duration::from_secs_f64((OBJECTS as f64 - 200.0) / ARM_WRITES.1), "faster than ARM's bucket allows: {elapsed:?}");
}

/// Taking over resources that already match (a reinstall of the operator, manifests from
/// `import`) writes nothing, so it must not be paced by the write budget: the write token a new
/// object reserves before its GET goes back when the GET shows nothing to write. With a write
/// budget of 16 at once and 1 per second, 200 matching workspaces are taken over in one round of
/// reconciles (16 at a time, the operator's concurrency) with no write; if the tokens were kept,
/// all but the first 16 would have to come back at one per second.
#[tokio::test]
async fn taking_over_matching_resources_spends_no_write_budget() {
    const TAKEN_OVER: usize = 200;
    let w = World::with_emulator(support::emulator_config()).await;
    w.good_credentials();
    let names: Vec<String> = (0..TAKEN_OVER).map(|i| format!("tk{i:03}")).collect();
    // The resources, made and tagged by these objects (as by an operator before a reinstall).
    let ctx = Arc::new(Context::new(w.client.clone(), ArmClient::new(&cloud(&w, CLIENT)).unwrap(), Config::default()));
    for name in &names {
        w.kube.put(workspace(name));
        w.converge_with::<AmlWorkspace>(&ctx, &path(name)).await;
    }

    // The operator again, from scratch: the objects as applied, a new process's budget.
    let tight = RateLimits { writes_per_second: 1, write_burst: 16, ..CLIENT };
    let ctx = Arc::new(Context::new(w.client.clone(), ArmClient::new(&cloud(&w, tight)).unwrap(), Config::default()));
    for name in &names {
        w.kube.put(workspace(name));
    }
    let before = w.emulator.requests().len();
    futures::stream::iter(&names)
        .for_each_concurrent(16, |name| {
            let obj: AmlWorkspace = w.kube.get(&path(name)).expect("object exists");
            let ctx = ctx.clone();
            async move {
                pipeline::reconcile(Arc::new(obj), ctx).await.expect("reconciles");
            }
        })
        .await;
    let not_ready: Vec<&String> = names.iter().filter(|n| w.ready(&path(n)).as_deref() != Some("True")).collect();
    assert!(not_ready.is_empty(), "{} of {TAKEN_OVER} not Ready after one round (waiting for write tokens they never use), e.g. {:?}", not_ready.len(), not_ready.first());
    let requests = &w.emulator.requests()[before..];
    let writes: Vec<String> = requests.iter().filter(|r| r.method != "GET").map(|r| format!("{} {}", r.method, r.path)).collect();
    assert!(writes.is_empty(), "taking over wrote to ARM: {writes:?}");
    println!("{TAKEN_OVER} matching workspaces taken over in one round: {} ARM GETs, 0 writes", requests.len());
}
