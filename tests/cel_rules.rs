//! The CRDs' CEL rules (`x-kubernetes-validations`), evaluated client-side with kube's CEL
//! validator — what the API server would refuse at admission — and every manifest in `examples/`.

use kube::core::cel::Validator;
use serde_json::{Value, json};

/// The openAPIV3Schema of the CRD for `kind`.
fn schema(kind: &str) -> Value {
    let crd = aml_operator::crd::all()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    serde_json::to_value(crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap()).unwrap()
}

fn check(obj: &Value, old: Option<&Value>) -> Result<(), String> {
    let kind = obj["kind"].as_str().expect("kind");
    Validator::new().validate(&schema(kind), obj, old).map_err(|e| e.to_string())
}

fn workspace() -> Value {
    json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
        "metadata": {"name": "ws", "namespace": "ns"},
        "spec": {
            "resourceGroup": "rg", "location": "eastus", "friendlyName": "a",
            "storageAccount": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa",
            "keyVault": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv",
            "hbiWorkspace": false
        }
    })
}

fn edited(base: &Value, f: impl FnOnce(&mut Value)) -> Value {
    let mut v = base.clone();
    f(&mut v);
    v
}

#[test]
fn a_workspace_may_change_its_mutable_fields_and_deletion_policy() {
    let old = workspace();
    check(&old, None).expect("valid on create");
    let new = edited(&old, |v| {
        v["spec"]["friendlyName"] = json!("b");
        v["spec"]["deletionPolicy"] = json!("Orphan");
        v["spec"]["tags"] = json!({"team": "x"});
    });
    check(&new, Some(&old)).expect("mutable edits are allowed");
}

#[test]
fn a_workspace_refuses_edits_of_immutable_fields() {
    let old = workspace();
    for (field, value, message) in [
        ("location", json!("westeurope"), "location is immutable"),
        ("resourceGroup", json!("other"), "resourceGroup is immutable"),
        ("storageAccount", json!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/other"), "storageAccount is immutable"),
        ("keyVault", json!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/other"), "keyVault is immutable"),
        ("hbiWorkspace", json!(true), "hbiWorkspace is immutable"),
    ] {
        let new = edited(&old, |v| v["spec"][field] = value);
        let err = check(&new, Some(&old)).expect_err(field);
        assert!(err.contains(message), "{field}: {err}");
    }
    // Adding or removing an optional immutable field is refused too.
    let err = check(&edited(&old, |v| v["spec"]["azureName"] = json!("other-name")), Some(&old)).expect_err("azureName added");
    assert!(err.contains("azureName is immutable"), "{err}");
    let err = check(&edited(&old, |v| { v["spec"].as_object_mut().unwrap().remove("keyVault"); }), Some(&old)).expect_err("keyVault removed");
    assert!(err.contains("keyVault is immutable"), "{err}");
}

#[test]
fn a_compute_needs_exactly_one_parent_and_a_sane_scale() {
    let compute = json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlCompute",
        "metadata": {"name": "cpu", "namespace": "ns"},
        "spec": {
            "workspaceRef": {"name": "ws"},
            "computeType": "AmlCompute",
            "amlCompute": {"vmSize": "STANDARD_DS3_V2", "scaleSettings": {"minNodeCount": 0, "maxNodeCount": 4}}
        }
    });
    check(&compute, None).expect("valid");
    let both = edited(&compute, |v| v["spec"]["workspaceId"] = json!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w"));
    assert!(check(&both, None).is_err(), "workspaceRef and workspaceId together");
    let neither = edited(&compute, |v| { v["spec"].as_object_mut().unwrap().remove("workspaceRef"); });
    assert!(check(&neither, None).is_err(), "no parent");
    let inverted = edited(&compute, |v| v["spec"]["amlCompute"]["scaleSettings"]["minNodeCount"] = json!(5));
    assert!(check(&inverted, None).is_err(), "minNodeCount > maxNodeCount");
    let wrong_shape = edited(&compute, |v| v["spec"]["computeType"] = json!("ComputeInstance"));
    assert!(check(&wrong_shape, None).is_err(), "ComputeInstance without computeInstance settings");
    // Scale is mutable, the VM size is not.
    let scaled = edited(&compute, |v| v["spec"]["amlCompute"]["scaleSettings"]["maxNodeCount"] = json!(8));
    check(&scaled, Some(&compute)).expect("scale changes in place");
    let resized = edited(&compute, |v| v["spec"]["amlCompute"]["vmSize"] = json!("STANDARD_NC6"));
    assert!(check(&resized, Some(&compute)).is_err(), "vmSize is create-only");
}

/// Every `*.yaml` under `examples/` parses as its type and passes the CRD's CEL rules.
#[test]
fn every_example_parses_as_its_type_and_passes_the_cel_rules() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        panic!("examples/ is missing");
    };
    let kinds: Vec<String> = aml_operator::crd::all().into_iter().map(|c| c.spec.names.kind).collect();
    let mut checked = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
            if value.is_null() {
                continue;
            }
            let kind = value["kind"].as_str().unwrap_or_default().to_string();
            if kind == "Secret" {
                continue;
            }
            assert!(kinds.contains(&kind), "{}: unknown kind {kind}", path.display());
            aml_operator::crd::parse_typed(&value).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            check(&value, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            checked.push(kind);
        }
    }
    for kind in &kinds {
        assert!(checked.contains(kind), "examples/ must hold an {kind}: {checked:?}");
    }
}
