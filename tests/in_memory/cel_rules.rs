//! The CRDs' CEL rules (`x-kubernetes-validations`), evaluated client-side with kube's CEL
//! validator — what the API server would refuse at admission — and every manifest in `examples/`.

use kube::core::cel::Validator;
use serde_json::{Value, json};

/// The openAPIV3Schema of the CRD for `kind`.
fn schema(kind: &str) -> Value {
    let crd = aml_operator::controller::kinds::crds()
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
        "metadata": {"name": "team-ws", "namespace": "ns"},
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
    let blue_green = std::fs::read_dir(dir.join("../blue-green")).expect("blue-green/");
    let kinds: Vec<String> = aml_operator::controller::kinds::crds().into_iter().map(|c| c.spec.names.kind).collect();
    let mut checked = Vec::new();
    for entry in entries.flatten().chain(blue_green.flatten()) {
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
            aml_operator::controller::kinds::parse(&value).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            check(&value, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            checked.push(kind);
        }
    }
    for kind in &kinds {
        assert!(checked.contains(kind), "examples/ must hold an {kind}: {checked:?}");
    }
}

fn endpoint(traffic: Value, mirror: Option<Value>) -> Value {
    let mut v = json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlOnlineEndpoint",
        "metadata": {"name": "scoring", "namespace": "ns"},
        "spec": {"workspaceRef": {"name": "ws"}, "authMode": "Key", "traffic": traffic}
    });
    if let Some(m) = mirror {
        v["spec"]["mirrorTraffic"] = m;
    }
    v
}

/// The traffic sums, spelled out term by term for Kubernetes 1.28's cost estimator, still say what
/// `sum()` would: checked here for every size up to the bound, and on the real API server by e2e.
#[test]
fn traffic_sums_to_100_or_is_empty_and_mirror_traffic_to_at_most_50() {
    check(&endpoint(json!({}), None), None).expect("empty traffic");
    check(&endpoint(json!({"blue": 100}), None), None).expect("one deployment");
    check(&endpoint(json!({"blue": 60, "green": 40}), Some(json!({"green": 50}))), None).expect("split and mirror");
    let err = check(&endpoint(json!({"blue": 60, "green": 30}), None), None).expect_err("90 is refused");
    assert!(err.contains("traffic values must sum to 100"), "{err}");
    let err = check(&endpoint(json!({"blue": 100}), Some(json!({"green": 30, "red": 21}))), None).expect_err("51 mirrored");
    assert!(err.contains("mirrorTraffic values must sum to at most 50"), "{err}");
    // Every size up to the bound: the last term counts too.
    for n in 1..=aml_operator::crd::endpoint::MAX_DEPLOYMENTS {
        let mut traffic = serde_json::Map::new();
        for i in 0..n {
            traffic.insert(format!("d{i:02}"), json!(if i == 0 { 100 - (n as i64 - 1) } else { 1 }));
        }
        check(&endpoint(Value::Object(traffic.clone()), None), None).unwrap_or_else(|e| panic!("{n} entries summing to 100: {e}"));
        traffic.insert(format!("d{:02}", n - 1), json!(if n == 1 { 99 } else { 2 }));
        assert!(check(&endpoint(Value::Object(traffic), None), None).is_err(), "{n} entries summing to 101 or 99");
    }
}

/// A name ARM would refuse is refused at admission, whether it is `spec.azureName` or, without
/// one, `metadata.name` (only a rule on the whole object can see it).
#[test]
fn names_arm_would_refuse_are_refused_at_admission() {
    let ws = |name: &str, azure_name: Option<&str>| {
        let mut v = workspace();
        v["metadata"]["name"] = json!(name);
        if let Some(a) = azure_name {
            v["spec"]["azureName"] = json!(a);
        }
        v
    };
    let err = check(&ws("a", None), None).expect_err("a one-letter workspace name");
    assert!(err.contains("metadata.name is not a valid Azure workspace name") && err.contains("spec.azureName"), "{err}");
    check(&ws("a", Some("team-a")), None).expect("azureName overrides metadata.name");
    check(&ws("team-a", None), None).expect("a good name");
    let long = "w".repeat(40);
    assert!(check(&ws(&long, None), None).is_err(), "a 40-character workspace name");
    let bad_endpoint = edited(&endpoint(json!({}), None), |v| v["metadata"]["name"] = json!("-ep"));
    let err = check(&bad_endpoint, None).expect_err("leading dash");
    assert!(err.contains("online endpoint name"), "{err}");
    for rule in [aml_operator::crd::workspace::NAME_RULE, aml_operator::crd::endpoint::NAME_RULE] {
        assert!(rule.accepts("team-a") && !rule.accepts("-a"), "{rule:?}");
    }
}

fn role_assignment() -> Value {
    json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlRoleAssignment",
        "metadata": {"name": "team-a-data-scientists", "namespace": "ns"},
        "spec": {
            "workspaceRef": {"name": "team-a"},
            "role": "AzureMLDataScientist",
            "principalId": "3f2c1a9e-7b4d-4e2a-9c1f-5d6e7f8a9b0c",
            "principalType": "Group",
            "description": "a"
        }
    })
}

#[test]
fn a_role_assignment_needs_exactly_one_scope_and_one_role() {
    check(&role_assignment(), None).expect("valid");
    let with_scope_id = edited(&role_assignment(), |v| {
        v["spec"].as_object_mut().unwrap().remove("workspaceRef");
        v["spec"]["scopeId"] = json!("/subscriptions/s/resourceGroups/rg");
        v["spec"].as_object_mut().unwrap().remove("role");
        v["spec"]["roleDefinitionId"] = json!("/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7");
    });
    check(&with_scope_id, None).expect("scopeId and a custom role");
    let two_scopes = edited(&role_assignment(), |v| v["spec"]["computeRef"] = json!({"name": "cpu"}));
    let err = check(&two_scopes, None).expect_err("two scopes");
    assert!(err.contains("set exactly one of workspaceRef, computeRef or scopeId"), "{err}");
    let no_scope = edited(&role_assignment(), |v| { v["spec"].as_object_mut().unwrap().remove("workspaceRef"); });
    assert!(check(&no_scope, None).is_err(), "no scope");
    let two_roles = edited(&role_assignment(), |v| v["spec"]["roleDefinitionId"] = json!("acdd72a7-3385-48ef-bd42-f606fba81ae7"));
    let err = check(&two_roles, None).expect_err("two roles");
    assert!(err.contains("set exactly one of role or roleDefinitionId"), "{err}");
    let named = edited(&role_assignment(), |v| v["spec"]["azureName"] = json!("f6c7c914-8db3-469d-8ca1-694a8f32e121"));
    let err = check(&named, None).expect_err("azureName");
    assert!(err.contains("azureName is not used by AmlRoleAssignment"), "{err}");
}

#[test]
fn a_role_assignment_refuses_edits_of_scope_role_and_principal_but_not_of_its_description() {
    let old = role_assignment();
    check(&edited(&old, |v| { v["spec"]["description"] = json!("b"); v["spec"]["deletionPolicy"] = json!("Orphan"); }), Some(&old))
        .expect("description and policies may change");
    for (field, value, message) in [
        ("principalId", json!("00000000-0000-0000-0000-000000000001"), "principalId is immutable"),
        ("principalType", json!("User"), "principalType is immutable"),
        ("role", json!("Reader"), "role is immutable"),
        ("workspaceRef", json!({"name": "other"}), "workspaceRef is immutable"),
    ] {
        let err = check(&edited(&old, |v| v["spec"][field] = value), Some(&old)).expect_err(field);
        assert!(err.contains(message), "{field}: {err}");
    }
    let moved = edited(&old, |v| {
        v["spec"].as_object_mut().unwrap().remove("workspaceRef");
        v["spec"]["scopeId"] = json!("/subscriptions/s/resourceGroups/rg");
    });
    let err = check(&moved, Some(&old)).expect_err("workspaceRef replaced by scopeId");
    assert!(err.contains("workspaceRef is immutable") && err.contains("scopeId is immutable"), "{err}");
}

/// Tag names ARM refuses are refused by the CEL rules of `spec.tags` on every kind that has tags
/// (the count and the value length are plain schema, proven on the real API server in
/// tests/e2e_refusals.rs), and so are the schema's own bounds where the validator checks them.
#[test]
fn tag_names_azure_refuses_are_refused_on_every_kind_with_tags() {
    let compute = json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlCompute", "metadata": {"name": "cpu", "namespace": "ns"},
        "spec": {"workspaceRef": {"name": "ws"}, "computeType": "AmlCompute", "amlCompute": {"vmSize": "STANDARD_DS3_V2", "scaleSettings": {"maxNodeCount": 4}}}
    });
    let endpoint = json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlOnlineEndpoint", "metadata": {"name": "ep", "namespace": "ns"},
        "spec": {"workspaceRef": {"name": "ws"}, "authMode": "Key"}
    });
    let deployment = json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlOnlineDeployment", "metadata": {"name": "blue", "namespace": "ns"},
        "spec": {"endpointRef": {"name": "ep"}, "model": "azureml://registries/azureml/models/m/versions/1"}
    });
    for base in [workspace(), compute, endpoint, deployment] {
        let kind = base["kind"].as_str().unwrap().to_string();
        let ok = edited(&base, |v| v["spec"]["tags"] = json!({"team": "a", "cost-center": "42", "n".repeat(512): "x"}));
        check(&ok, None).unwrap_or_else(|e| panic!("{kind}: tags within the limits: {e}"));
        for (bad, says) in [
            ("a/b", "must not contain"),
            ("a<b", "must not contain"),
            ("100%", "must not contain"),
            ("a&b", "must not contain"),
            ("a\\b", "must not contain"),
            ("why?", "must not contain"),
            (&*"n".repeat(513), "at most 512"),
        ] {
            let refused = edited(&base, |v| v["spec"]["tags"] = json!({bad: "x"}));
            let err = check(&refused, None).expect_err(&format!("{kind}: tag name {bad:.20}"));
            assert!(err.contains(says), "{kind}: {bad:.20}: {err}");
        }
    }
    // The schema bounds the CEL rules rely on, as generated.
    let tags = &schema("AmlWorkspace")["properties"]["spec"]["properties"]["tags"];
    assert_eq!((tags["maxProperties"].as_i64(), tags["additionalProperties"]["maxLength"].as_i64()), (Some(49), Some(256)), "49: Azure's 50 less the operator's owner tag");
    let max_nodes = &schema("AmlCompute")["properties"]["spec"]["properties"]["amlCompute"]["properties"]["scaleSettings"]["properties"]["maxNodeCount"];
    assert_eq!(max_nodes["maximum"].as_f64(), Some(65000.0));
}

fn model_version() -> Value {
    json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlModelVersion",
        "metadata": {"name": "sklearn-model-1", "namespace": "ns"},
        "spec": {"workspaceRef": {"name": "w"}, "azureName": "sklearn-model", "version": "1",
                 "modelUri": "azureml://datastores/workspaceblobstore/paths/m/", "modelType": "custom_model"}
    })
}

#[test]
fn a_version_takes_edits_of_description_tags_stage_and_archive_and_refuses_the_rest() {
    let old = model_version();
    check(&old, None).expect("valid on create");
    let mutable = edited(&old, |v| {
        v["spec"]["description"] = json!("d");
        v["spec"]["tags"] = json!({"a": "b"});
        v["spec"]["stage"] = json!("Archived");
        v["spec"]["isArchived"] = json!(true);
        v["spec"]["properties"] = json!({"k": "v"});
        v["spec"]["deletionPolicy"] = json!("Orphan");
    });
    check(&mutable, Some(&old)).expect("mutable edits are allowed");
    for (field, value) in [("version", json!("2")), ("modelUri", json!("https://a/b")), ("modelType", json!("mlflow_model")), ("azureName", json!("other"))] {
        let new = edited(&old, |v| v["spec"][field] = value);
        let err = check(&new, Some(&old)).expect_err(field);
        assert!(err.contains(&format!("{field} is immutable")), "{field}: {err}");
    }
    let added = edited(&old, |v| v["spec"]["jobName"] = json!("train-1"));
    assert!(check(&added, Some(&old)).expect_err("jobName added").contains("jobName is immutable"));
    // Azure ML's rule, model versions are positive integers, is a schema pattern (the real API
    // server checks it: e2e_assets).
    let version = &schema("AmlModelVersion")["properties"]["spec"]["properties"]["version"];
    assert_eq!(version["pattern"], "^[1-9][0-9]*$");
}

#[test]
fn an_environment_has_one_image_source_and_a_deployment_one_form_of_each_reference() {
    let env = json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlEnvironmentVersion",
        "metadata": {"name": "env-1", "namespace": "ns"},
        "spec": {"workspaceRef": {"name": "w"}, "version": "2024-rc.1", "image": "mcr.microsoft.com/x:1"}
    });
    check(&env, None).expect("an image");
    let both = edited(&env, |v| v["spec"]["build"] = json!({"contextUri": "https://a/b/"}));
    assert!(check(&both, None).unwrap_err().contains("exactly one of image or build"));
    let neither = edited(&env, |v| { v["spec"].as_object_mut().unwrap().remove("image"); });
    assert!(check(&neither, None).unwrap_err().contains("exactly one of image or build"));
    let new_image = edited(&env, |v| v["spec"]["image"] = json!("mcr.microsoft.com/x:2"));
    assert!(check(&new_image, Some(&env)).unwrap_err().contains("image is immutable"));

    let deployment = json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlOnlineDeployment",
        "metadata": {"name": "blue", "namespace": "ns"},
        "spec": {"endpointRef": {"name": "e"}, "modelRef": {"name": "m"}, "environmentRef": {"name": "env"},
                 "codeConfiguration": {"codeRef": {"name": "c"}, "scoringScript": "score.py"}}
    });
    check(&deployment, None).expect("references");
    // Switching to another model version is an edit like any other.
    let switched = edited(&deployment, |v| v["spec"]["modelRef"]["name"] = json!("m2"));
    check(&switched, Some(&deployment)).expect("a new model is one spec edit");
    for (path, value, message) in [
        ("model", json!("azureml://registries/r/models/m/versions/1"), "at most one of modelRef or model"),
        ("environmentId", json!("/subscriptions/s/x"), "at most one of environmentRef or environmentId"),
    ] {
        let both = edited(&deployment, |v| v["spec"][path] = value);
        assert!(check(&both, None).unwrap_err().contains(message), "{path}");
    }
    let both = edited(&deployment, |v| v["spec"]["codeConfiguration"]["codeId"] = json!("/subscriptions/s/x"));
    assert!(check(&both, None).unwrap_err().contains("at most one of codeConfiguration.codeRef or codeConfiguration.codeId"));
}
