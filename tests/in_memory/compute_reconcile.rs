//! AmlCompute reconcile scenarios, for an AmlCompute cluster and a ComputeInstance: the Kubernetes
//! API faked at the transport, the emulator as Azure, a ready AmlWorkspace as the parent.

use crate::support;

use aml_operator::arm::{Secret as SecretValue, ServicePrincipal};
use aml_operator::controller::{AmlKind, Error, Parent, Resolved, Retry, UpdateRequest};
use aml_operator::crd::{AmlCompute, AmlComputeSpec, AmlWorkspace, AmlWorkspaceSpec};
use kube::api::ObjectMeta;
use serde_json::{Value, json};
use crate::support::{NS, SUBSCRIPTION, World};

const WS_PATH: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlworkspaces/ws1";
const WS_ID: &str =
    "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/ws1";
const CLUSTER: &str = "cpu-cluster";
const INSTANCE: &str = "ci-alice";
const PASSWORD: &str = "Adm1n-pass-7c1e4b9f0d";

fn path(name: &str) -> String {
    format!("/apis/amloperator.io/v1alpha1/namespaces/{NS}/amlcomputes/{name}")
}

fn arm_id(name: &str) -> String {
    format!("{WS_ID}/computes/{name}")
}

fn workspace() -> AmlWorkspace {
    let spec: AmlWorkspaceSpec = serde_json::from_value(json!({
        "resourceGroup": "rg-ml",
        "location": "eastus",
        "storageAccount": "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.Storage/storageAccounts/sa1",
        "keyVault": "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.KeyVault/vaults/kv1",
    }))
    .expect("valid workspace spec");
    AmlWorkspace {
        metadata: ObjectMeta { name: Some("ws1".into()), namespace: Some(NS.into()), ..Default::default() },
        spec,
        status: None,
    }
}

fn compute(name: &str, spec: Value) -> AmlCompute {
    let spec: AmlComputeSpec = serde_json::from_value(spec).expect("valid compute spec");
    AmlCompute {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some(NS.into()), ..Default::default() },
        spec,
        status: None,
    }
}

fn cluster() -> AmlCompute {
    compute(CLUSTER, json!({
        "workspaceRef": {"name": "ws1"},
        "computeType": "AmlCompute",
        "description": "training cluster",
        "tags": {"team": "a"},
        "amlCompute": {
            "vmSize": "STANDARD_DS3_V2",
            "vmPriority": "Dedicated",
            "osType": "Linux",
            "remoteLoginPortPublicAccess": "Disabled",
            "scaleSettings": {"maxNodeCount": 4, "minNodeCount": 0, "nodeIdleTimeBeforeScaleDown": "PT5M"}
        }
    }))
}

fn instance() -> AmlCompute {
    compute(INSTANCE, json!({
        "workspaceRef": {"name": "ws1"},
        "computeType": "ComputeInstance",
        "description": "Alice's notebook VM",
        "computeInstance": {
            "vmSize": "STANDARD_DS3_V2",
            "applicationSharingPolicy": "Personal",
            "sshSettings": {"sshPublicAccess": "Disabled"},
            "personalComputeInstanceSettings": {"assignedUser": {
                "objectId": "00000000-0000-0000-0000-0000000000a1",
                "tenantId": "00000000-0000-0000-0000-0000000000f1"
            }},
            "schedules": {"computeStartStop": [{
                "action": "Stop", "triggerType": "Cron", "status": "Enabled",
                "cron": {"expression": "0 18 * * *", "timeZone": "UTC"}
            }]},
            "setupScripts": {"scripts": {"creationScript": {"scriptSource": "inline", "scriptData": "ZWNobyBoaQ==", "timeout": "5m"}}}
        }
    }))
}

/// A compute's name and its builder.
type Case = (&'static str, fn() -> AmlCompute);

/// Both compute types, by name, for scenarios that must hold for each.
fn both() -> [Case; 2] {
    [(CLUSTER, cluster), (INSTANCE, instance)]
}

/// A world with credentials and a ready workspace; the ARM request log is cleared.
async fn with_workspace() -> World {
    let w = World::new().await;
    w.good_credentials();
    w.kube.put(workspace());
    w.converge::<AmlWorkspace>(WS_PATH).await;
    w.emulator.clear_requests();
    w.kube.clear_calls();
    w
}

/// A world with a ready workspace and `obj` stored (not yet reconciled).
async fn created(obj: AmlCompute) -> World {
    let w = with_workspace().await;
    w.kube.put(obj);
    w
}

/// A world with a ready workspace and `obj` converged; logs cleared.
async fn converged(obj: AmlCompute) -> World {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let w = created(obj).await;
    w.converge::<AmlCompute>(&path(&name)).await;
    w.emulator.clear_requests();
    w.kube.clear_calls();
    w
}

fn writes(w: &World) -> usize {
    w.arm_calls("PUT") + w.arm_calls("PATCH") + w.arm_calls("DELETE") + w.arm_calls("POST")
}

const SSH_KEY: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 admin@example";

fn password_secret(w: &World) {
    // The key file's final newline (as `kubectl create secret --from-file` keeps it) is not sent.
    let key_file = format!("{SSH_KEY}\n");
    w.kube.put(support::secret("cpu-admin", &[("password", PASSWORD), ("id_rsa.pub", key_file.as_str())]));
}

fn cluster_with_admin() -> AmlCompute {
    let mut c = cluster();
    c.spec.aml_compute.as_mut().expect("cluster settings").user_account_credentials =
        serde_json::from_value(json!({
            "adminUserName": "azureuser",
            "adminUserPasswordSecretRef": {"name": "cpu-admin", "key": "password"},
            "adminUserSshPublicKeySecretRef": {"name": "cpu-admin", "key": "id_rsa.pub"}
        }))
        .expect("valid credentials");
    c
}

#[tokio::test]
async fn first_apply_creates_each_compute_type_once_and_reports_its_outputs() {
    for (name, build) in both() {
        let p = path(name);
        let w = created(build()).await;
        w.reconcile::<AmlCompute>(&p).await.expect("create accepted");
        assert_eq!(w.kube.raw(&p).unwrap()["metadata"]["finalizers"], json!(["amloperator.io/finalizer"]), "{name}");
        assert_eq!(w.arm_calls("PUT"), 1, "{name}");
        let obj = w.kube.raw(&p).unwrap();
        assert_eq!(obj["status"]["operation"]["action"], "Create");
        assert_eq!(obj["status"]["armId"], arm_id(name));
        assert_eq!(obj["status"]["location"], "eastus", "{name}: location inherited from the workspace");
        assert_eq!(w.condition(&p, "Reconciling").unwrap()["status"], "True");

        w.converge::<AmlCompute>(&p).await;
        assert_eq!(w.arm_calls("PUT"), 1, "{name}: exactly one PUT for a create");
        assert_eq!(w.arm_calls("PATCH"), 0);
        let status = w.kube.raw(&p).unwrap()["status"].clone();
        assert_eq!(status["provisioningState"], "Succeeded");
        assert_eq!(status["observedGeneration"], 1);
        assert!(status.get("operation").is_none(), "{status}");
        assert!(status.get("provisioningErrors").is_none(), "{status}");
        assert!(w.condition(&p, "Stalled").is_none());

        let arm = w.emulator.resource(&arm_id(name)).expect("compute exists in ARM");
        assert_eq!(arm["location"], "eastus");
        if name == CLUSTER {
            assert_eq!(arm["properties"]["computeType"], "AmlCompute");
            assert_eq!(arm["properties"]["properties"]["scaleSettings"]["maxNodeCount"], 4);
            assert_eq!(status["allocationState"], "Steady");
            assert_eq!(status["currentNodeCount"], 0);
            assert_eq!(status["targetNodeCount"], 0);
            assert!(status.get("state").is_none());
        } else {
            assert_eq!(arm["properties"]["computeType"], "ComputeInstance");
            assert_eq!(arm["properties"]["properties"]["schedules"]["computeStartStop"][0]["cron"]["expression"], "0 18 * * *");
            assert_eq!(status["state"], "Running");
            assert!(status.get("currentNodeCount").is_none());
        }
        let reasons: Vec<String> =
            w.kube.events().iter().map(|e| e["reason"].as_str().unwrap_or_default().to_string()).collect();
        assert!(reasons.contains(&"Created".to_string()), "{name}: events {reasons:?}");
    }
}

#[tokio::test]
async fn a_converged_compute_costs_one_get_and_no_writes() {
    for (name, build) in both() {
        let p = path(name);
        let w = converged(build()).await;
        for _ in 0..3 {
            w.reconcile::<AmlCompute>(&p).await.expect("steady state");
        }
        let methods: Vec<_> = w.emulator.requests().into_iter().map(|r| r.method).collect();
        assert_eq!(methods, vec!["GET", "GET", "GET"], "{name}: one GET per resync, nothing else");
        assert!(w.kube.status_writes().is_empty(), "{name}: no status write when nothing changed");
        assert!(w.kube.events().is_empty());
    }
}

#[tokio::test]
async fn drift_made_in_azure_is_corrected_with_one_put() {
    for (name, build) in both() {
        let p = path(name);
        let w = converged(build()).await;
        w.emulator.update_resource(&arm_id(name), |v| v["properties"]["description"] = json!("edited in the portal"));

        w.converge::<AmlCompute>(&p).await;
        assert_eq!(w.arm_calls("PUT"), 1, "{name}");
        assert_eq!(w.arm_calls("PATCH"), 0, "{name}");
        let expected = build().spec.description.unwrap();
        assert_eq!(w.emulator.resource(&arm_id(name)).unwrap()["properties"]["description"], json!(expected));
    }
}

#[tokio::test]
async fn a_spec_change_is_applied_with_one_put_and_observed_generation_follows() {
    for (name, build) in both() {
        let p = path(name);
        let w = converged(build()).await;
        w.kube.edit(&p, |o| {
            o["spec"]["description"] = json!("renamed");
            o["spec"]["tags"] = json!({"team": "b"});
        });

        w.converge::<AmlCompute>(&p).await;
        assert_eq!(w.arm_calls("PUT"), 1, "{name}");
        assert_eq!(w.arm_calls("PATCH"), 0, "{name}");
        let arm = w.emulator.resource(&arm_id(name)).unwrap();
        assert_eq!(arm["properties"]["description"], "renamed");
        assert_eq!(arm["tags"], json!({"team": "b", "amloperator.io-owner": format!("default/team-a/{name}")}), "the spec's tags and the owner tag");
        assert_eq!(w.kube.raw(&p).unwrap()["status"]["observedGeneration"], 2);
        assert_eq!(w.condition(&p, "Ready").unwrap()["observedGeneration"], 2);
    }
}

#[tokio::test]
async fn a_scale_change_is_sent_as_one_patch_and_no_put() {
    let p = path(CLUSTER);
    let w = converged(cluster()).await;
    w.kube.edit(&p, |o| {
        o["spec"]["amlCompute"]["scaleSettings"] = json!({"maxNodeCount": 8, "minNodeCount": 2, "nodeIdleTimeBeforeScaleDown": "PT10M"});
    });

    w.converge::<AmlCompute>(&p).await;
    assert_eq!(w.arm_calls("PATCH"), 1, "{:?}", w.emulator.requests());
    assert_eq!(w.arm_calls("PUT"), 0, "a scale change never PUTs the whole compute");
    let arm = w.emulator.resource(&arm_id(CLUSTER)).unwrap();
    assert_eq!(arm["properties"]["properties"]["scaleSettings"], json!({"maxNodeCount": 8, "minNodeCount": 2, "nodeIdleTimeBeforeScaleDown": "PT10M"}));
    assert_eq!(arm["properties"]["properties"]["vmSize"], "STANDARD_DS3_V2", "the rest of the compute is untouched");
    let status = w.kube.raw(&p).unwrap()["status"].clone();
    assert_eq!(status["currentNodeCount"], 2);
    assert_eq!(status["targetNodeCount"], 2);
    assert_eq!(status["observedGeneration"], 2);

    // Scale and something else together: one PUT of the whole body, no PATCH.
    w.emulator.clear_requests();
    w.kube.edit(&p, |o| {
        o["spec"]["amlCompute"]["scaleSettings"]["maxNodeCount"] = json!(6);
        o["spec"]["description"] = json!("bigger");
    });
    w.converge::<AmlCompute>(&p).await;
    assert_eq!((w.arm_calls("PUT"), w.arm_calls("PATCH")), (1, 0));
    assert_eq!(w.emulator.resource(&arm_id(CLUSTER)).unwrap()["properties"]["properties"]["scaleSettings"]["maxNodeCount"], 6);
}

#[test]
fn update_request_patches_only_when_nothing_but_scale_settings_drifted() {
    let c = cluster();
    let target = aml_operator::controller::Target {
        subscription: SUBSCRIPTION.into(),
        resource_group: "rg-ml".into(),
        name: CLUSTER.into(),
        arm_id: arm_id(CLUSTER),
        location: "eastus".into(),
    };
    let body = c.desired(&target).unwrap();
    let scale = "/properties/properties/scaleSettings/maxNodeCount".to_string();
    assert_eq!(
        c.update_request(&body, std::slice::from_ref(&scale)),
        UpdateRequest::Patch(json!({"properties": {"properties": {"scaleSettings": {
            "maxNodeCount": 4, "minNodeCount": 0, "nodeIdleTimeBeforeScaleDown": "PT5M"
        }}}}))
    );
    assert_eq!(c.update_request(&body, &[scale, "/properties/description".into()]), UpdateRequest::Put(body.clone()));
    assert_eq!(c.update_request(&body, &["/tags/team".into()]), UpdateRequest::Put(body.clone()));
    let i = instance();
    assert!(matches!(i.update_request(&i.desired(&target).unwrap(), &["/properties/properties/vmSize".into()]), UpdateRequest::Put(_)));
    assert_eq!(AmlCompute::delete_query(), &[("underlyingResourceAction", "Delete")]);
}

#[tokio::test]
async fn delete_sends_underlying_resource_action_delete_and_keeps_the_finalizer_until_gone() {
    for (name, build) in both() {
        let p = path(name);
        let w = converged(build()).await;
        w.kube.delete(&p);

        let err = w.reconcile::<AmlCompute>(&p).await.expect_err("delete is asynchronous");
        assert!(matches!(err, Error::DeletePending { .. }), "{err:?}");
        let deletes: Vec<_> = w.emulator.requests().into_iter().filter(|r| r.method == "DELETE").collect();
        assert_eq!(deletes.len(), 1, "{name}");
        assert!(deletes[0].query.split('&').any(|q| q == "underlyingResourceAction=Delete"), "query: {}", deletes[0].query);
        assert!(deletes[0].path.ends_with(&format!("/computes/{name}")));
        assert_eq!(deletes[0].status, 202);
        let obj = w.kube.raw(&p).expect("object kept while ARM deletes");
        assert_eq!(obj["metadata"]["finalizers"], json!(["amloperator.io/finalizer"]));
        assert_eq!(obj["status"]["operation"]["action"], "Delete");

        w.emulator.finish_operations();
        w.reconcile::<AmlCompute>(&p).await.expect("delete finished");
        assert!(w.kube.raw(&p).is_none(), "{name}: finalizer removed, object gone");
        assert!(w.emulator.resource(&arm_id(name)).is_none());
        assert!(w.emulator.resource(WS_ID).is_some(), "the workspace stays");
        assert_eq!(w.arm_calls("DELETE"), 1, "no second DELETE");
    }
}

#[tokio::test]
async fn delete_with_orphan_policy_leaves_azure_alone() {
    for (name, build) in both() {
        let p = path(name);
        let mut obj = build();
        obj.spec.common.deletion_policy = Some(aml_operator::crd::DeletionPolicy::Orphan);
        let w = converged(obj).await;
        w.kube.delete(&p);
        w.reconcile::<AmlCompute>(&p).await.expect("released");
        assert!(w.kube.raw(&p).is_none());
        assert_eq!(w.arm_calls("DELETE"), 0);
        assert!(w.emulator.resource(&arm_id(name)).is_some());
    }
}

#[tokio::test]
async fn observe_reports_but_never_writes() {
    for (name, build) in both() {
        let p = path(name);
        let mut obj = build();
        obj.spec.common.management_policy = Some(aml_operator::crd::ManagementPolicy::Observe);
        let w = created(obj.clone()).await;
        // Absent in Azure: reported, not created.
        w.reconcile::<AmlCompute>(&p).await.unwrap();
        w.reconcile::<AmlCompute>(&p).await.unwrap();
        assert_eq!(w.condition(&p, "Ready").unwrap()["reason"], "NotFoundInAzure", "{name}");

        // Present: Ready, outputs reported.
        let target = aml_operator::controller::Target {
            subscription: SUBSCRIPTION.into(),
            resource_group: "rg-ml".into(),
            name: name.into(),
            arm_id: arm_id(name),
            location: "eastus".into(),
        };
        w.emulator.insert_resource(&arm_id(name), obj.desired(&target).unwrap());
        w.reconcile::<AmlCompute>(&p).await.unwrap();
        assert_eq!(w.ready(&p).as_deref(), Some("True"), "{name}");
        let status = w.kube.raw(&p).unwrap()["status"].clone();
        if name == CLUSTER {
            assert_eq!(status["allocationState"], "Steady");
        } else {
            assert_eq!(status["state"], "Running");
        }

        // Drift: reported, not corrected.
        w.emulator.update_resource(&arm_id(name), |v| v["properties"]["description"] = json!("changed"));
        w.reconcile::<AmlCompute>(&p).await.unwrap();
        assert_eq!(w.condition(&p, "Ready").unwrap()["reason"], "Drifted");

        // Delete: released without a DELETE.
        w.kube.delete(&p);
        w.reconcile::<AmlCompute>(&p).await.unwrap();
        assert!(w.kube.raw(&p).is_none());
        assert_eq!(writes(&w), 0, "{:?}", w.emulator.requests());
        assert!(w.emulator.resource(&arm_id(name)).is_some());
    }
}

#[tokio::test]
async fn a_restart_mid_operation_resumes_polling_without_a_second_put() {
    for (name, build) in both() {
        let p = path(name);
        let mut w = created(build()).await;
        w.reconcile::<AmlCompute>(&p).await.unwrap();
        w.reconcile::<AmlCompute>(&p).await.unwrap();
        assert_eq!(w.arm_calls("PUT"), 1);

        w.restart();
        w.reconcile::<AmlCompute>(&p).await.unwrap();
        assert_eq!(w.arm_calls("PUT"), 1, "{name}: the restarted operator polls, it does not write again");
        w.converge::<AmlCompute>(&p).await;
        assert_eq!(w.arm_calls("PUT"), 1);
    }
}

#[tokio::test]
async fn a_compute_waits_for_its_workspace_without_arm_calls_then_proceeds_and_is_owned_by_it() {
    let p = path(CLUSTER);
    let w = World::new().await;
    w.good_credentials();
    w.kube.put(cluster());

    // No workspace object at all.
    w.reconcile::<AmlCompute>(&p).await.expect("finalizer");
    w.reconcile::<AmlCompute>(&p).await.expect("waiting is not an error");
    let ready = w.condition(&p, "Ready").unwrap();
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("WaitingForParent")));
    assert!(ready["message"].as_str().unwrap().contains("team-a/ws1"), "{ready}");
    assert!(w.condition(&p, "Stalled").is_none(), "waiting is not stalled");

    // The workspace exists but is not ready yet.
    w.kube.put(workspace());
    w.reconcile::<AmlCompute>(&p).await.expect("still waiting");
    let ready = w.condition(&p, "Ready").unwrap();
    assert_eq!(ready["reason"], "WaitingForParent");
    assert!(ready["message"].as_str().unwrap().contains("not ready"), "{ready}");
    assert!(w.emulator.requests().is_empty(), "no ARM call while the parent is not ready");
    assert_eq!(w.emulator.token_requests(), 0);
    assert!(w.kube.raw(&p).unwrap()["metadata"].get("ownerReferences").is_none());

    // Once the workspace is ready the compute proceeds.
    w.converge::<AmlWorkspace>(WS_PATH).await;
    w.emulator.clear_requests();
    w.converge::<AmlCompute>(&p).await;
    assert_eq!(w.arm_calls("PUT"), 1);
    assert!(w.emulator.resource(&arm_id(CLUSTER)).is_some());
    let obj = w.kube.raw(&p).unwrap();
    let ws_uid = w.kube.raw(WS_PATH).unwrap()["metadata"]["uid"].clone();
    let owners = obj["metadata"]["ownerReferences"].as_array().expect("owner references");
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0]["kind"], "AmlWorkspace");
    assert_eq!(owners[0]["apiVersion"], "amloperator.io/v1alpha1");
    assert_eq!(owners[0]["name"], "ws1");
    assert_eq!(owners[0]["uid"], ws_uid);
}

#[tokio::test]
async fn a_workspace_given_by_arm_id_is_used_and_its_location_inherited() {
    let w = World::new().await;
    w.good_credentials();
    let other_ws = WS_ID.replace("/ws1", "/ws-external");
    let mut c = cluster();
    c.spec.workspace_ref = None;
    c.spec.workspace_id = Some(other_ws.clone());
    w.kube.put(c);
    let p = path(CLUSTER);

    // Not in Azure yet: the compute waits, and writes nothing.
    w.reconcile::<AmlCompute>(&p).await.unwrap();
    w.reconcile::<AmlCompute>(&p).await.unwrap();
    assert_eq!(w.condition(&p, "Ready").unwrap()["reason"], "WaitingForParent");
    assert_eq!(writes(&w), 0);

    w.emulator.insert_resource(&other_ws, json!({
        "location": "westeurope",
        "properties": {"storageAccount": workspace().spec.storage_account, "keyVault": workspace().spec.key_vault}
    }));
    w.converge::<AmlCompute>(&p).await;
    let obj = w.kube.raw(&p).unwrap();
    assert_eq!(obj["status"]["armId"], format!("{other_ws}/computes/{CLUSTER}"));
    assert_eq!(obj["status"]["location"], "westeurope");
    assert!(obj["metadata"].get("ownerReferences").is_none(), "no owner object for an ARM-id parent");
    assert_eq!(w.emulator.resource(&format!("{other_ws}/computes/{CLUSTER}")).unwrap()["location"], "westeurope");
}

#[tokio::test]
async fn the_admin_password_comes_only_from_the_secret_and_never_shows() {
    let p = path(CLUSTER);
    let w = created(cluster_with_admin()).await;
    password_secret(&w);
    assert!(!serde_json::to_string(&cluster_with_admin()).unwrap().contains(PASSWORD), "the spec cannot hold it");

    w.converge::<AmlCompute>(&p).await;
    assert_eq!(w.arm_calls("PUT"), 1);
    // The emulator keeps what the PUT sent: the password from the Secret reached ARM.
    let creds = w.emulator.resource(&arm_id(CLUSTER)).unwrap()["properties"]["properties"]["userAccountCredentials"].clone();
    assert_eq!(creds["adminUserName"], "azureuser");
    assert_eq!(creds["adminUserPassword"], PASSWORD);
    assert_eq!(creds["adminUserSshPublicKey"], SSH_KEY);

    // Nothing the operator wrote to Kubernetes holds it (status, conditions, events, owner patch).
    let written: Vec<String> = w
        .kube
        .calls()
        .into_iter()
        .filter(|c| c.method != "GET")
        .map(|c| c.body.to_string())
        .collect();
    assert!(!written.is_empty());
    assert!(written.iter().all(|b| !b.contains(PASSWORD)), "password leaked to Kubernetes");
    assert!(!w.kube.raw(&p).unwrap().to_string().contains(PASSWORD));

    // ARM never returns the password; its absence is not drift, and a converged compute does not
    // even read the Secret.
    w.emulator.update_resource(&arm_id(CLUSTER), |v| {
        if let Some(c) = v["properties"]["properties"]["userAccountCredentials"].as_object_mut() {
            c.remove("adminUserPassword");
            c.remove("adminUserSshPublicKey");
        }
    });
    w.emulator.clear_requests();
    w.kube.clear_calls();
    w.reconcile::<AmlCompute>(&p).await.unwrap();
    assert_eq!(writes(&w), 0, "{:?}", w.emulator.requests());
    assert!(w.kube.calls().iter().all(|c| !c.path.ends_with("/secrets/cpu-admin")), "{:?}", w.kube.calls());

    // A real change PUTs the whole body again, password included (PUT overwrites the compute).
    w.kube.edit(&p, |o| o["spec"]["description"] = json!("changed"));
    w.converge::<AmlCompute>(&p).await;
    assert_eq!(w.arm_calls("PUT"), 1);
    let creds = w.emulator.resource(&arm_id(CLUSTER)).unwrap()["properties"]["properties"]["userAccountCredentials"].clone();
    assert_eq!(creds["adminUserPassword"], PASSWORD);
    assert!(!w.kube.raw(&p).unwrap().to_string().contains(PASSWORD));
    let events = format!("{:?}", w.kube.events());
    assert!(!events.contains(PASSWORD));
}

#[tokio::test]
async fn a_missing_password_secret_or_key_makes_zero_arm_writes_and_says_what_to_create() {
    let p = path(CLUSTER);
    let w = created(cluster_with_admin()).await;
    let err = w.reconcile::<AmlCompute>(&p).await.expect_err("no Secret");
    assert!(matches!(err, Error::SecretNotFound(_)), "{err:?}");
    assert_eq!(err.retry(), Retry::Slow, "retried slowly, so a Secret created later is picked up");
    assert!(err.is_stalled());
    let message = err.message();
    assert!(message.contains("team-a/cpu-admin") && message.contains("password"), "{message}");
    assert_eq!(writes(&w), 0, "{:?}", w.emulator.requests());
    let ready = w.condition(&p, "Ready").unwrap();
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("SecretNotFound")));
    assert_eq!(w.condition(&p, "Stalled").unwrap()["status"], "True");

    // The Secret exists but lacks the key.
    w.kube.put(support::secret("cpu-admin", &[("other", "x")]));
    let err = w.reconcile::<AmlCompute>(&p).await.expect_err("no key");
    assert!(err.message().contains("key password"), "{}", err.message());
    assert_eq!(writes(&w), 0);
    assert_ne!(err.retry(), Retry::Backoff, "a person must act; no hot retry loop");

    // Once it is there, the compute is created.
    password_secret(&w);
    w.converge::<AmlCompute>(&p).await;
    assert_eq!(w.arm_calls("PUT"), 1);
}

#[tokio::test]
async fn deleting_a_compute_whose_workspace_is_already_gone_succeeds() {
    let p = path(CLUSTER);
    let w = converged(cluster()).await;

    // The workspace (and with it every compute) is deleted first.
    w.kube.delete(WS_PATH);
    let _ = w.reconcile::<AmlWorkspace>(WS_PATH).await;
    w.emulator.finish_operations();
    w.reconcile::<AmlWorkspace>(WS_PATH).await.expect("workspace deleted");
    assert!(w.kube.raw(WS_PATH).is_none());
    assert!(w.emulator.resource(&arm_id(CLUSTER)).is_none(), "ARM deletes children with the workspace");
    w.emulator.clear_requests();

    w.kube.delete(&p);
    w.reconcile::<AmlCompute>(&p).await.expect("nothing left to delete");
    assert!(w.kube.raw(&p).is_none(), "finalizer removed");
    // ARM is asked first: the GET finds it gone, so no DELETE is sent.
    let calls: Vec<(String, u16)> = w.emulator.requests().into_iter().map(|r| (r.method, r.status)).collect();
    assert!(calls.iter().all(|(m, _)| m != "DELETE"), "{calls:?}");
    assert!(calls.contains(&("GET".to_string(), 404)), "{calls:?}");
}

fn resolved_under(workspace_id: &str, location: &str) -> Resolved {
    let (sub, rg, _) = aml_operator::arm::ids::parse_workspace_id(workspace_id).expect("workspace id");
    Resolved {
        principal: ServicePrincipal {
            tenant_id: "t".into(),
            client_id: "c".into(),
            credential: aml_operator::arm::ClientCredential::Secret(SecretValue::new("not-used".into())),
            subscription_id: None,
        },
        parent: Some(Parent {
            arm_id: workspace_id.into(),
            subscription: sub,
            resource_group: rg,
            location: location.into(),
            owner: None,
        }),
        references: Default::default(),
    }
}

fn example_case(file: &str, spec: Value) {
    let Some(dir) = support::specs_dir_for_tests() else { return };
    let (request, _) = aml_operator::armspec::load_example(&dir, file).expect("example loads");
    let example_ws = "/subscriptions/34adfa4f-cedf-4dc0-ba29-b6d1a69ab345/resourceGroups/testrg123/providers/Microsoft.MachineLearningServices/workspaces/workspaces123";
    let mut spec = spec;
    spec["workspaceId"] = json!(example_ws);
    spec["azureName"] = json!("compute123");
    let obj = compute("compute123-obj", spec);

    let target = obj.target(&resolved_under(example_ws, "eastus")).expect("target");
    assert_eq!(target.arm_id, format!("{example_ws}/computes/compute123"));
    let body = obj.desired(&target).expect("body");
    assert_eq!(body, request, "{file}: body differs from the example's request");

    let validator = aml_operator::armspec::shared(&dir).expect("schemas load");
    validator
        .validate(AmlCompute::ARM_TYPE, "compute123", &body)
        .unwrap_or_else(|e| panic!("{file}: the ARM schema rejects the body: {e}"));
}

#[test]
fn a_cluster_body_matches_the_official_example() {
    // examples/Compute/createOrUpdate/AmlCompute.json; location comes from the workspace.
    example_case("Compute/createOrUpdate/AmlCompute.json", json!({
        "computeType": "AmlCompute",
        "description": "some compute",
        "amlCompute": {"scaleSettings": {"maxNodeCount": 4, "minNodeCount": 4, "nodeIdleTimeBeforeScaleDown": "PT5M"}}
    }));
}

#[test]
fn a_compute_instance_body_matches_the_official_example() {
    example_case("Compute/createOrUpdate/ComputeInstance.json", json!({
        "computeType": "ComputeInstance",
        "location": "eastus",
        "computeInstance": {
            "vmSize": "STANDARD_NC6",
            "subnet": {"id": "test-subnet-resource-id"},
            "applicationSharingPolicy": "Personal",
            "customServices": [{
                "docker": {"privileged": true},
                "environmentVariables": {"test_variable": {"type": "local", "value": "test_value"}},
                "volumes": [{"type": "bind", "readOnly": false, "source": "/home/azureuser/cloudfiles", "target": "/home/azureuser/cloudfiles"}],
                "endpoints": [{"name": "connect", "target": 8787, "published": 8787, "protocol": "http"}],
                "image": {"type": "docker", "reference": "ghcr.io/azure/rocker-rstudio-ml-verse:latest"},
                "name": "rstudio"
            }],
            "sshSettings": {"sshPublicAccess": "Disabled"},
            "computeInstanceAuthorizationType": "personal",
            "personalComputeInstanceSettings": {"assignedUser": {
                "objectId": "00000000-0000-0000-0000-000000000000",
                "tenantId": "00000000-0000-0000-0000-000000000000"
            }}
        }
    }));
}

#[test]
fn a_cluster_body_holds_only_what_the_spec_sets_and_no_secret_reference() {
    let c = cluster_with_admin();
    let target = c.target(&resolved_under(WS_ID, "northeurope")).unwrap();
    assert_eq!(target.location, "northeurope", "defaults to the workspace's location");
    let body = c.desired(&target).unwrap();
    assert_eq!(body["properties"]["properties"]["userAccountCredentials"], json!({"adminUserName": "azureuser"}));
    assert!(!body.to_string().contains("SecretRef"), "{body}");
    assert!(body["properties"].get("disableLocalAuth").is_none());
    assert!(body.get("identity").is_none());
    let mut c = c;
    c.spec.location = Some("westus".into());
    c.spec.disable_local_auth = Some(true);
    let body = c.desired(&c.target(&resolved_under(WS_ID, "northeurope")).unwrap()).unwrap();
    assert_eq!(body["location"], "westus");
    assert_eq!(body["properties"]["disableLocalAuth"], true);
    assert_eq!(
        AmlCompute::write_only_paths(),
        &[
            "/properties/properties/userAccountCredentials/adminUserPassword",
            "/properties/properties/userAccountCredentials/adminUserSshPublicKey"
        ]
    );
}

#[test]
fn the_compute_crd_has_names_columns_and_validation_rules() {
    let crd = aml_operator::controller::kinds::crds()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some("amlcomputes.amloperator.io"))
        .expect("AmlCompute CRD registered");
    let crd = serde_json::to_value(crd).unwrap();
    let spec = &crd["spec"];
    assert_eq!(spec["names"]["shortNames"], json!(["amlc"]));
    assert_eq!(spec["names"]["categories"], json!(["aml"]));
    let version = &spec["versions"][0];
    let columns: Vec<_> =
        version["additionalPrinterColumns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(columns, ["State", "Ready", "Reason", "Type", "Nodes", "Age"]);
    let spec_schema = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let props = &spec_schema["properties"];
    let immutable = |v: &Value| v["x-kubernetes-validations"].to_string().contains("self == oldSelf");
    for field in ["azureName", "workspaceRef", "workspaceId", "location", "computeType", "disableLocalAuth"] {
        assert!(immutable(&props[field]), "{field} is not immutable");
    }
    let cluster = &props["amlCompute"]["properties"];
    for field in ["vmSize", "vmPriority", "osType", "subnet", "enableNodePublicIp", "isolatedNetwork"] {
        assert!(immutable(&cluster[field]), "amlCompute.{field} is not immutable");
    }
    assert!(!immutable(&cluster["scaleSettings"]), "scale settings change in place");
    for field in ["vmSize", "subnet"] {
        assert!(immutable(&props["computeInstance"]["properties"][field]), "computeInstance.{field} is not immutable");
    }
    let rules = spec_schema["x-kubernetes-validations"].to_string();
    assert!(rules.contains("has(self.workspaceRef) != has(self.workspaceId)"), "{rules}");
    assert!(rules.contains("self.computeType != 'AmlCompute' || (has(self.amlCompute) && !has(self.computeInstance))"));
    assert!(rules.contains("self.computeType != 'ComputeInstance' || (has(self.computeInstance) && !has(self.amlCompute))"));
    let scale = &cluster["scaleSettings"];
    assert!(scale["x-kubernetes-validations"].to_string().contains("self.minNodeCount <= self.maxNodeCount"));
    assert_eq!(scale["required"], json!(["maxNodeCount"]));
    let creds = cluster["userAccountCredentials"]["properties"].as_object().unwrap();
    let mut names: Vec<_> = creds.keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["adminUserName", "adminUserPasswordSecretRef", "adminUserSshPublicKeySecretRef"], "no field for a literal password");
    assert_eq!(props["computeType"]["enum"], json!(["AmlCompute", "ComputeInstance"]));
}

#[tokio::test]
async fn a_tag_removed_from_the_spec_is_removed_in_azure_with_one_write_and_then_none() {
    let p = path(CLUSTER);
    let mut c = cluster();
    c.spec.tags = Some([("team", "a"), ("owner", "bob")].map(|(k, v)| (k.to_string(), v.to_string())).into());
    let w = converged(c).await;
    w.kube.edit(&p, |o| o["spec"]["tags"] = json!({"team": "a"}));

    w.converge::<AmlCompute>(&p).await;
    assert_eq!((writes(&w), w.arm_calls("PUT")), (1, 1), "{:?}", w.emulator.requests());
    assert_eq!(w.emulator.resource(&arm_id(CLUSTER)).unwrap()["tags"], json!({"team": "a", "amloperator.io-owner": "default/team-a/cpu-cluster"}));

    w.emulator.clear_requests();
    for _ in 0..2 {
        w.reconcile::<AmlCompute>(&p).await.expect("steady state");
    }
    assert_eq!(writes(&w), 0, "converged after the removal: {:?}", w.emulator.requests());
}

#[tokio::test]
async fn tags_added_in_azure_stay_when_the_spec_sets_none_even_across_a_scale_patch() {
    let p = path(CLUSTER);
    let mut c = cluster();
    c.spec.tags = None;
    let w = converged(c).await;
    // Added in Azure beside the operator's owner tag.
    w.emulator.update_resource(&arm_id(CLUSTER), |v| v["tags"]["added-by"] = json!("policy"));
    for _ in 0..2 {
        w.reconcile::<AmlCompute>(&p).await.expect("steady state");
    }
    assert_eq!(writes(&w), 0);

    w.kube.edit(&p, |o| o["spec"]["amlCompute"]["scaleSettings"]["maxNodeCount"] = json!(6));
    w.converge::<AmlCompute>(&p).await;
    assert_eq!((w.arm_calls("PATCH"), writes(&w)), (1, 1));
    let arm = w.emulator.resource(&arm_id(CLUSTER)).unwrap();
    assert_eq!(arm["tags"], json!({"added-by": "policy", "amloperator.io-owner": "default/team-a/cpu-cluster"}), "a map the spec never set is not touched");
    assert_eq!(arm["properties"]["properties"]["scaleSettings"]["maxNodeCount"], 6);
}
