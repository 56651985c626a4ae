//! One Azure resource, one owner (issue 25, item 3): two objects naming the same ARM id — in two
//! namespaces of one cluster, or in two clusters sharing nothing but Azure — never both write it.
//! The first one's owner tag (`amloperator.io-owner: <cluster>/<namespace>/<name>`) makes the
//! second one Stalled, with no ARM write and no dependency made; a resource no object owns is
//! adopted as before.

use aml_operator::controller::owner::TAG;
use aml_operator::crd::AmlWorkspace;
use serde_json::{Value, json};
use crate::support::{SUBSCRIPTION, World, secret};

const RG: &str = "rg-shared";
const ARM_ID: &str =
    "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-shared/providers/Microsoft.MachineLearningServices/workspaces/shared-ws";

fn path(ns: &str, name: &str) -> String {
    format!("/apis/amloperator.io/v1alpha1/namespaces/{ns}/amlworkspaces/{name}")
}

/// An AmlWorkspace `ns/name` for `ARM_ID`, from nothing (the operator would create its
/// dependencies), with `extra` added to the spec.
fn workspace(ns: &str, name: &str, description: &str, extra: Value) -> Value {
    let mut spec = json!({"resourceGroup": RG, "location": "eastus", "azureName": "shared-ws", "description": description});
    spec.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    })
}

/// The emulator's principal as `aml-credentials` in `ns`.
fn credentials_in(w: &World, ns: &str) {
    let p = aml_operator::emulator::Principal::default();
    let mut s = secret("aml-credentials", &[
        ("tenantId", p.tenant_id.as_str()),
        ("clientId", p.client_id.as_str()),
        ("clientSecret", p.client_secret.as_str()),
        ("subscriptionId", SUBSCRIPTION),
    ]);
    s.metadata.namespace = Some(ns.into());
    w.kube.put(s);
}

/// ARM requests other than GET (writes, deletes, POSTs), as `METHOD path`.
fn arm_writes(w: &World) -> Vec<String> {
    w.emulator.requests().iter().filter(|r| r.method != "GET").map(|r| format!("{} {}", r.method, r.path)).collect()
}

fn owner_tag(w: &World) -> Value {
    w.emulator.resource(ARM_ID).expect("the workspace exists")["tags"][TAG].clone()
}

fn description(w: &World) -> Value {
    w.emulator.resource(ARM_ID).expect("the workspace exists")["properties"]["description"].clone()
}

fn reasons(w: &World) -> Vec<String> {
    w.kube.events().iter().map(|e| e["reason"].as_str().unwrap_or_default().to_string()).collect()
}

/// `a/first` owns `ARM_ID` (made from nothing, with its dependencies).
async fn first_owns_it(w: &World) {
    credentials_in(w, "a");
    credentials_in(w, "b");
    w.kube.put(workspace("a", "first", "from a", json!({})));
    w.converge::<AmlWorkspace>(&path("a", "first")).await;
    assert_eq!(owner_tag(w), json!("default/a/first"), "the create carries the owner tag");
}

/// The second object is Stalled, naming `owner`, after costing no ARM write.
async fn stalled_naming(w: &World, path: &str, owner: &str) {
    w.emulator.clear_requests();
    w.kube.clear_calls();
    // A decision, not a failed reconcile: the status keeps the ARM id and the credentials Secret
    // it holds (which its delete releases).
    w.reconcile::<AmlWorkspace>(path).await.expect("stalled, not failed");
    assert_eq!(arm_writes(w), Vec::<String>::new(), "no ARM write, no dependency made");
    let stalled = w.condition(path, "Stalled").expect("Stalled condition");
    assert_eq!(stalled["status"], "True");
    assert_eq!(stalled["reason"], "OwnedByAnotherObject");
    let message = stalled["message"].as_str().unwrap_or_default();
    assert!(message.contains(owner) && message.contains(ARM_ID) && message.contains(TAG), "{message}");
    assert_eq!(w.ready(path).as_deref(), Some("False"));
    let name = path.rsplit('/').next().unwrap_or_default();
    let own: Vec<String> = w.kube.events().iter().filter(|e| e["regarding"]["name"] == name)
        .map(|e| e["reason"].as_str().unwrap_or_default().to_string()).collect();
    assert!(!own.iter().any(|r| r == "Adopted" || r == "Created" || r == "Updated" || r == "CreatingDependencies"), "{own:?}");
}

#[tokio::test]
async fn the_second_object_for_an_arm_id_in_another_namespace_is_stalled_naming_the_first_with_no_write() {
    let w = World::new().await;
    first_owns_it(&w).await;
    let deps = w.kube.raw(&path("a", "first")).unwrap()["status"]["createdDependencies"].clone();
    assert!(deps.is_object() || deps.is_array(), "the first made the dependencies: {deps}");

    w.kube.put(workspace("b", "second", "from b", json!({})));
    let second = path("b", "second");
    stalled_naming(&w, &second, "object a/first in this cluster").await;
    let st = &w.kube.raw(&second).unwrap()["status"];
    assert!(st.get("createdDependencies").is_none() && st.get("provisioningState").is_none(), "nothing recorded: {st}");
    assert_eq!(st["armId"], ARM_ID, "the contested id");
    // Every resync: still Stalled, still nothing written; the first keeps its description.
    stalled_naming(&w, &second, "object a/first in this cluster").await;
    assert_eq!(description(&w), json!("from a"));

    // The first does not notice anything: one GET, no write.
    w.emulator.clear_requests();
    w.reconcile::<AmlWorkspace>(&path("a", "first")).await.expect("steady");
    assert_eq!(arm_writes(&w), Vec::<String>::new());
    assert_eq!(w.ready(&path("a", "first")).as_deref(), Some("True"));
}

#[tokio::test]
async fn across_two_clusters_sharing_only_azure_the_second_is_stalled_naming_the_first_cluster() {
    let mut east = World::new().await;
    east.configure(|c| c.cluster_name = "east".into());
    let west = east.other_cluster("west");
    credentials_in(&east, "a");
    credentials_in(&west, "a");
    // The same namespace and name in both clusters: only the cluster name tells them apart.
    east.kube.put(workspace("a", "ws", "from east", json!({})));
    west.kube.put(workspace("a", "ws", "from west", json!({})));
    east.converge::<AmlWorkspace>(&path("a", "ws")).await;
    assert_eq!(owner_tag(&east), json!("east/a/ws"));

    stalled_naming(&west, &path("a", "ws"), "object a/ws of cluster east").await;
    assert_eq!(description(&east), json!("from east"));

    let held = west.kube.raw("/api/v1/namespaces/a/secrets/aml-credentials").expect("the Secret")["metadata"]["finalizers"].clone();
    assert!(held.as_array().is_some_and(|f| !f.is_empty()), "the Stalled object holds its credentials Secret: {held}");
    // Deleting the Stalled object in the west deletes nothing in Azure.
    west.emulator.clear_requests();
    west.delete_until_released::<AmlWorkspace>(&path("a", "ws")).await;
    assert_eq!(west.arm_calls("DELETE"), 0);
    assert!(west.emulator.resource(ARM_ID).is_some());
    let secret = west.kube.raw("/api/v1/namespaces/a/secrets/aml-credentials").expect("the Secret");
    let finalizers = secret["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
    assert!(finalizers.is_empty(), "the Stalled object's credentials Secret is released with it: {finalizers:?}");
    assert_eq!(owner_tag(&east), json!("east/a/ws"));
}

#[tokio::test]
async fn a_restarted_operator_keeps_its_claim_and_the_second_stays_stalled() {
    let mut w = World::new().await;
    first_owns_it(&w).await;
    w.kube.put(workspace("b", "second", "from b", json!({})));
    stalled_naming(&w, &path("b", "second"), "object a/first in this cluster").await;

    w.restart();
    w.emulator.clear_requests();
    w.reconcile::<AmlWorkspace>(&path("a", "first")).await.expect("steady after restart");
    assert_eq!(arm_writes(&w), Vec::<String>::new(), "its own tag: nothing to write");
    stalled_naming(&w, &path("b", "second"), "object a/first in this cluster").await;
}

#[tokio::test]
async fn a_resource_left_by_an_orphaned_object_is_adopted_by_the_next_with_one_write() {
    let w = World::new().await;
    credentials_in(&w, "a");
    credentials_in(&w, "b");
    w.kube.put(workspace("a", "first", "from a", json!({"deletionPolicy": "Orphan"})));
    w.converge::<AmlWorkspace>(&path("a", "first")).await;
    w.delete_until_released::<AmlWorkspace>(&path("a", "first")).await;
    assert_eq!(owner_tag(&w), json!("default/a/first"), "the tag stays on the orphaned resource");

    // Its tag names an object of this cluster that no longer exists: nobody owns it.
    w.emulator.clear_requests();
    w.kube.put(workspace("b", "second", "from b", json!({})));
    w.converge::<AmlWorkspace>(&path("b", "second")).await;
    let puts: Vec<String> = arm_writes(&w).into_iter().filter(|r| r.ends_with("/workspaces/shared-ws")).collect();
    assert_eq!(puts.len(), 1, "one write adopts it: {puts:?}");
    assert_eq!(owner_tag(&w), json!("default/b/second"));
    assert_eq!(description(&w), json!("from b"));
    assert!(reasons(&w).iter().any(|r| r == "Adopted"), "{:?}", reasons(&w));
}

#[tokio::test]
async fn an_untagged_resource_is_adopted_and_tagged_with_one_write_keeping_the_tags_set_in_azure() {
    let w = World::new().await;
    first_owns_it(&w).await;
    // As made by hand, or by an operator before owner tags: no owner tag, a tag of someone else's.
    w.emulator.update_resource(ARM_ID, |v| v["tags"] = json!({"cost-center": "42"}));
    delete_object_only(&w, &path("a", "first"));

    w.emulator.clear_requests();
    w.kube.put(workspace("b", "second", "from a", json!({})));
    w.converge::<AmlWorkspace>(&path("b", "second")).await;
    let writes = arm_writes(&w);
    assert_eq!(writes.iter().filter(|r| r.ends_with("/workspaces/shared-ws")).count(), 1, "{writes:?}");
    let tags = &w.emulator.resource(ARM_ID).unwrap()["tags"];
    assert_eq!(tags, &json!({"cost-center": "42", TAG: "default/b/second"}), "the spec sets no tags: Azure's stay");

    // Converged: the owner tag is no drift.
    w.emulator.clear_requests();
    w.reconcile::<AmlWorkspace>(&path("b", "second")).await.expect("steady");
    assert_eq!(arm_writes(&w), Vec::<String>::new());
}

/// Removes the object from the API server without its finalizer running (as if it never was).
fn delete_object_only(w: &World, path: &str) {
    w.kube.edit(path, |o| o["metadata"]["finalizers"] = json!([]));
    w.kube.delete(path);
    assert!(w.kube.raw(path).is_none());
}

#[tokio::test]
async fn observe_is_not_blocked_and_claims_nothing() {
    let w = World::new().await;
    first_owns_it(&w).await;
    w.emulator.clear_requests();
    let watcher = path("b", "watcher");
    w.kube.put(workspace("b", "watcher", "whatever", json!({"managementPolicy": "Observe"})));
    w.reconcile::<AmlWorkspace>(&watcher).await.expect("observed");
    assert_eq!(arm_writes(&w), Vec::<String>::new());
    assert!(w.condition(&watcher, "Stalled").is_none());
    assert_eq!(w.kube.raw(&watcher).unwrap()["status"]["armId"], ARM_ID);
    assert_eq!(owner_tag(&w), json!("default/a/first"));
    // Deleting the observer leaves Azure alone.
    w.delete_until_released::<AmlWorkspace>(&watcher).await;
    assert_eq!(w.arm_calls("DELETE"), 0);
}

#[tokio::test]
async fn deleting_an_object_whose_resource_another_object_took_leaves_it_in_place() {
    let w = World::new().await;
    first_owns_it(&w).await;
    // Two creates at the same moment: both PUT, the last tag wins; the loser learns it at its
    // next GET. Here the resource's tag is made to name another object that exists.
    credentials_in(&w, "c");
    w.kube.put(workspace("c", "winner", "from c", json!({"managementPolicy": "Observe"})));
    w.reconcile::<AmlWorkspace>(&path("c", "winner")).await.expect("observed");
    w.emulator.update_resource(ARM_ID, |v| v["tags"][TAG] = json!("default/c/winner"));
    stalled_naming(&w, &path("a", "first"), "object c/winner in this cluster").await;

    w.emulator.clear_requests();
    w.delete_until_released::<AmlWorkspace>(&path("a", "first")).await;
    assert_eq!(w.arm_calls("DELETE"), 0, "{:?}", arm_writes(&w));
    assert!(w.emulator.resource(ARM_ID).is_some(), "another object's workspace is never deleted");
    let left = w.kube.events().into_iter().find(|e| e["reason"] == "Orphaned").expect("an Orphaned event");
    let note = left["note"].as_str().or(left["message"].as_str()).unwrap_or_default().to_string();
    assert!(note.contains("c/winner") && note.contains("left in place"), "{note}");
}
