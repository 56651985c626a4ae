//! Malformed input never crashes the operator or the emulator, and never leaks: property tests
//! (proptest, fixed seed so CI reproduces) that feed
//!
//! - the manifest parser (`controller::kinds::parse`) and the CLI's manifest loading
//!   (`cli::load`): every field of every example given every wrong type, random JSON, YAML files cut
//!   anywhere, random bytes; a Secret's values never show up in an error;
//! - ARM answer decoding (`ArmError::from_response`, the public entry; the operation status and
//!   success-body decoding have unit properties in `core/src/arm/`);
//! - the emulator's request parsing over real HTTPS: random and cut paths, methods, PUT bodies
//!   around real resource bodies, token forms, Authorization headers.
//!
//! Every case ends in a valid parse or an error naming what was wrong, never a panic; each property
//! prints its count (`property: NAME: N cases, 0 panics`) for the CI log.

use aml_operator::arm::ArmError;
use aml_operator::emulator::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, Emulator, EmulatorConfig};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// Runs `test` on `cases` inputs from `strategy` (fixed seed); a panic is caught and shrunk by
/// proptest and fails the test with the smallest input found. Prints the count for the CI log.
fn property<S: Strategy>(name: &str, cases: u32, strategy: S, mut test: impl FnMut(S::Value) -> Result<(), TestCaseError>) {
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let ran = std::cell::Cell::new(0u32);
    let test = std::cell::RefCell::new(&mut test);
    let outcome = runner.run(&strategy, |input| {
        ran.set(ran.get() + 1);
        (test.borrow_mut())(input)
    });
    if let Err(failure) = outcome {
        panic!("property: {name}: {failure}");
    }
    println!("property: {name}: {} cases, 0 panics", ran.get());
}

fn fail(message: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(message.into())
}

/// Any JSON value, nested a few levels deep: the wrong type for any field.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-zA-Z]{0,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every JSON pointer in `value` (its fields and items at any depth, the root included).
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                pointers(v, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// `template` with the field at `pointer` set to `value`.
fn with_field(template: &Value, pointer: &str, value: Value) -> Value {
    let mut out = template.clone();
    if let Some(slot) = out.pointer_mut(pointer) {
        *slot = value;
    }
    out
}

/// Bodies around well-formed `templates`: one cut at any byte, one field (at any depth) given any
/// JSON value, random bytes, random JSON.
fn bodies_around(templates: Vec<Value>) -> impl Strategy<Value = Vec<u8>> {
    let texts: Vec<String> = templates.iter().map(Value::to_string).collect();
    let fields: Vec<(usize, String)> = templates
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            let mut out = Vec::new();
            pointers(t, String::new(), &mut out);
            out.into_iter().map(move |p| (i, p))
        })
        .collect();
    let count = fields.len();
    prop_oneof![
        1 => (0..texts.len(), any::<usize>()).prop_map(move |(i, cut)| {
            let text = texts[i].as_bytes();
            text[..cut % (text.len() + 1)].to_vec()
        }),
        3 => (0..count, any_json()).prop_map(move |(i, v)| {
            let (t, pointer) = &fields[i];
            with_field(&templates[*t], pointer, v).to_string().into_bytes()
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..256),
        1 => any_json().prop_map(|v| v.to_string().into_bytes()),
    ]
}

/// The objects of `examples/` (the documents a user starts from).
fn examples() -> Vec<Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("example reads");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc).expect("example is YAML");
            if value.get("kind").is_some() {
                out.push(value);
            }
        }
    }
    assert!(out.len() >= 9, "examples/ holds the kinds' manifests: {}", out.len());
    out
}

const WRONG_TYPES: [&str; 8] = ["null", "true", "-1", "1.5e308", "\"\"", "\"x\"", "[]", "{}"];

#[test]
fn every_field_of_every_example_with_every_wrong_type_is_parsed_or_refused_by_name() {
    let mut cases = 0;
    let mut unnamed = Vec::new();
    for example in examples() {
        let kind = example["kind"].as_str().unwrap_or_default().to_string();
        let mut fields = Vec::new();
        pointers(&example, String::new(), &mut fields);
        for pointer in fields.iter().filter(|p| !p.is_empty()) {
            for wrong in WRONG_TYPES {
                let doc = with_field(&example, pointer, serde_json::from_str(wrong).expect("literal"));
                cases += 1;
                let Err(message) = aml_operator::controller::kinds::parse(&doc) else { continue };
                let kind_now = doc["kind"].as_str().unwrap_or_default();
                // The message names the kind (or says there is none) and the field's path.
                assert!(
                    message.contains(kind_now) && !message.trim().is_empty(),
                    "{kind} {pointer}={wrong}: {message}"
                );
                if kind_now == kind && pointer.starts_with("/spec/") {
                    let top = pointer.split('/').nth(2).unwrap_or_default();
                    if !message.contains(top) {
                        unnamed.push(format!("{kind} {pointer}={wrong}: {message}"));
                    }
                }
            }
        }
    }
    assert!(unnamed.is_empty(), "{} errors do not name the field:\n{}", unnamed.len(), unnamed.join("\n"));
    println!("property: manifest parser, every field x every wrong type: {cases} cases, 0 panics");
    assert!(cases > 500, "{cases}");
}

#[test]
fn random_and_damaged_manifests_are_parsed_or_refused_never_a_panic() {
    let templates = examples();
    let docs = prop_oneof![
        3 => bodies_around(templates.clone()).prop_filter_map("JSON", |b| serde_json::from_slice::<Value>(&b).ok()),
        // Random JSON under a real kind.
        1 => (0..templates.len(), any_json()).prop_map(move |(i, spec)| {
            json!({"apiVersion": templates[i]["apiVersion"], "kind": templates[i]["kind"], "metadata": {"name": "x"}, "spec": spec})
        }),
        1 => any_json(),
    ];
    property("manifest parser", 2000, docs, |doc| match aml_operator::controller::kinds::parse(&doc) {
        Ok(()) => Ok(()),
        Err(message) if message.trim().is_empty() => Err(fail(format!("an empty error for {doc}"))),
        Err(_) => Ok(()),
    });
}

/// A Secret whose values must never appear in an error, whatever is wrong around them.
const NEEDLE: &str = "NEEDLE-s3cr3t-7f1e";

#[test]
fn manifest_files_cut_or_garbled_are_loaded_or_refused_naming_the_file() {
    let kinds = aml_operator::cli::registry();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aml-credentials"},
        "stringData": {"clientSecret": NEEDLE, "tenantId": "t"}, "data": {"clientId": "Yw=="}});
    let mut templates = examples();
    templates.push(secret.clone());
    let texts: Vec<String> = templates.iter().map(|t| serde_yaml::to_string(t).expect("YAML")).collect();
    let all = texts.join("---\n");
    let yaml = prop_oneof![
        // YAML cut at any character (one document or the whole folder's worth).
        1 => (0..=texts.len(), any::<usize>()).prop_map(move |(i, cut)| {
            let text = texts.get(i).unwrap_or(&all);
            let at = text.char_indices().map(|(i, _)| i).chain([text.len()]).nth(cut % (text.chars().count() + 1)).unwrap_or(0);
            text[..at].to_string()
        }),
        // Wrong types anywhere, as YAML.
        3 => bodies_around(templates).prop_map(|b| match serde_json::from_slice::<Value>(&b) {
            Ok(v) => serde_yaml::to_string(&v).unwrap_or_default(),
            Err(_) => String::from_utf8_lossy(&b).into_owned(),
        }),
        // The secret's values given non-base64 text, wrong types, around the needle.
        1 => (prop_oneof![Just("data"), Just("stringData")], prop_oneof![
            Just(json!(format!("{NEEDLE}!!not base64"))),
            Just(json!([NEEDLE])),
            Just(json!({NEEDLE: NEEDLE})),
            Just(json!(format!("{NEEDLE}\u{0}"))),
        ]).prop_map(move |(field, value)| {
            let mut s = secret.clone();
            s[field]["clientSecret"] = value;
            serde_yaml::to_string(&s).unwrap_or_default()
        }),
        1 => "(.|\n){0,300}",
        1 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    let file = crate::support::temp_path("malformed.yaml");
    property("CLI manifest loading", 600, yaml, |text| {
        std::fs::write(&file, &text).map_err(|e| fail(e.to_string()))?;
        let Err(err) = aml_operator::cli::load(std::slice::from_ref(&file), &kinds) else { return Ok(()) };
        let shown = format!("{err} {err:?}");
        if !shown.contains(&*file.to_string_lossy()) {
            return Err(fail(format!("the error does not name the file: {shown}")));
        }
        if shown.contains(NEEDLE) {
            return Err(fail(format!("a Secret value leaked into the error: {shown}")));
        }
        Ok(())
    });
    let _ = std::fs::remove_file(&file);
}

#[test]
fn any_arm_error_answer_decodes_to_a_code_and_a_message() {
    let templates = vec![
        json!({"error": {"code": "AuthorizationFailed", "message": "m", "target": "t", "details": [{"code": "c", "message": "d"}]}}),
        json!({"code": "Conflict", "message": "m"}),
        json!({"status": "Failed", "error": {"code": "InternalServerError", "message": "m"}}),
    ];
    let statuses = prop_oneof![Just(400u16), Just(401), Just(403), Just(404), Just(409), Just(429), Just(503), 0u16..1000];
    property("ARM error answer decoding", 1000, (statuses, bodies_around(templates)), |(status, body)| {
        let err = ArmError::from_response(status, &body, None);
        if err.code.trim().is_empty() || err.message.trim().is_empty() || err.status != status {
            return Err(fail(format!("an error naming nothing: {err:?}")));
        }
        Ok(())
    });
}

const SUB: &str = "00000000-0000-0000-0000-000000000001";

/// What one request to the emulator is made of.
#[derive(Clone, Debug)]
struct Request {
    method: String,
    path: String,
    query: String,
    /// For the token endpoint: `authorization` is sent as is (none when `None`).
    token: bool,
    authorization: Option<String>,
    body: Vec<u8>,
}

fn arm_requests() -> impl Strategy<Value = Request> {
    let ws = format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws1");
    let real = vec![
        ws.clone(),
        format!("{ws}/computes/c1"),
        format!("{ws}/onlineEndpoints/ep/deployments/blue"),
        format!("{ws}/onlineEndpoints/ep/listKeys"),
        format!("{ws}/models/m/versions/1"),
        format!("{ws}/datastores/ds"),
        format!("{ws}/providers/Microsoft.Authorization/roleAssignments/00000000-0000-0000-0000-0000000000aa"),
        format!("/subscriptions/{SUB}/providers/Microsoft.MachineLearningServices/locations/eastus/operationsStatus/op"),
        format!("/subscriptions/{SUB}/providers/Microsoft.KeyVault/checkNameAvailability"),
        format!("/subscriptions/{SUB}/providers/Microsoft.KeyVault/locations/eastus/deletedVaults/kv"),
        format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st1"),
    ];
    let words = prop_oneof![
        Just("subscriptions".to_string()), Just("resourceGroups".to_string()), Just("providers".to_string()),
        Just("Microsoft.MachineLearningServices".to_string()), Just("workspaces".to_string()),
        Just("onlineEndpoints".to_string()), Just("deployments".to_string()), Just("Microsoft.Authorization".to_string()),
        Just("roleAssignments".to_string()), Just("locations".to_string()), Just("operationResults".to_string()),
        Just("oauth2".to_string()), Just("v2.0".to_string()), Just("token".to_string()), Just(".well-known".to_string()),
        Just("versions".to_string()), Just("%2F".to_string()), Just("%00".to_string()), Just("%C3%A9".to_string()),
        Just("x".repeat(300)),
        "[A-Za-z0-9._~-]{0,12}",
    ];
    let whole = real.clone();
    let exact = (0..whole.len()).prop_map(move |i| whole[i].clone());
    let cut = (0..real.len(), any::<usize>(), proptest::collection::vec(words, 0..6)).prop_map(move |(i, keep, tail)| {
        let segs: Vec<&str> = real[i].split('/').filter(|s| !s.is_empty()).collect();
        let keep = keep % (segs.len() + 1);
        let mut path = format!("/{}", segs[..keep].join("/"));
        for seg in tail {
            path.push('/');
            path.push_str(&seg);
        }
        path
    });
    let path = prop_oneof![exact, cut];
    let method = prop_oneof![
        3 => Just("PUT"), 2 => Just("GET"), 1 => Just("PATCH"), 1 => Just("DELETE"), 1 => Just("POST"), 1 => Just("HEAD"), 1 => Just("OPTIONS"), 1 => Just("BREW")
    ];
    let query = prop_oneof![
        4 => Just("api-version=2024-10-01".to_string()),
        1 => Just(String::new()),
        1 => "[a-z=&%0-9-]{0,30}",
    ];
    let resource_bodies = vec![
        json!({"location": "eastus", "identity": {"type": "SystemAssigned"}, "tags": {"a": "b"},
            "properties": {"friendlyName": "ws", "storageAccount": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st1"}}),
        json!({"location": "eastus", "properties": {"computeType": "AmlCompute", "properties": {"vmSize": "STANDARD_DS3_V2",
            "scaleSettings": {"maxNodeCount": 4, "minNodeCount": 0}}}}),
        json!({"location": "eastus", "sku": {"name": "Default", "capacity": 1}, "properties": {"endpointComputeType": "Managed",
            "model": "azureml://registries/azureml/models/model/versions/1", "instanceType": "Standard_DS3_v2"}}),
        json!({"properties": {"roleDefinitionId": "/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7",
            "principalId": "00000000-0000-0000-0000-0000000000aa", "principalType": "ServicePrincipal"}}),
        json!({"properties": {"modelUri": "azureml://x", "description": "d", "tags": {}}}),
        json!({"properties": {"datastoreType": "AzureBlob", "accountName": "st1", "containerName": "c",
            "credentials": {"credentialsType": "AccountKey", "secrets": {"secretsType": "AccountKey", "key": NEEDLE}}}}),
        json!({"name": "kv1", "type": "Microsoft.KeyVault/vaults"}),
    ];
    let authorization = prop_oneof![
        16 => Just(None),
        1 => Just(Some("Bearer".to_string())),
        1 => Just(Some("Basic Zm9vOmJhcg==".to_string())),
        1 => "Bearer [ -~]{0,40}".prop_map(Some),
        1 => "[ -~]{0,40}".prop_map(Some),
    ];
    let texts: Vec<Vec<u8>> = resource_bodies.iter().map(|b| b.to_string().into_bytes()).collect();
    let bodies = prop_oneof![(0..texts.len()).prop_map(move |i| texts[i].clone()), bodies_around(resource_bodies)];
    (method, path, query, authorization, bodies).prop_map(|(method, path, query, authorization, body)| Request {
        method: method.to_string(),
        path,
        query,
        token: false,
        authorization,
        body,
    })
}

fn token_requests() -> impl Strategy<Value = Request> {
    let valid = format!(
        "grant_type=client_credentials&client_id={DEFAULT_CLIENT_ID}&client_secret={NEEDLE}&scope=https%3A%2F%2Fmanagement.azure.com%2F.default"
    );
    let b64 = "[A-Za-z0-9_-]{0,40}";
    let form = prop_oneof![
        any::<usize>().prop_map(move |cut| valid[..cut % (valid.len() + 1)].to_string()),
        Just(format!(
            "grant_type=client_credentials&client_id={DEFAULT_CLIENT_ID}&client_secret={DEFAULT_CLIENT_SECRET}&scope=https%3A%2F%2Fmanagement.azure.com%2F.default"
        )),
        (b64, b64, b64).prop_map(|(h, c, s)| format!(
            "grant_type=client_credentials&client_id={DEFAULT_CLIENT_ID}&scope=x%2F.default&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={h}.{c}.{s}"
        )),
        "[a-z_=&%0-9A-F.]{0,120}",
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    let tenant = prop_oneof![3 => Just(DEFAULT_TENANT_ID.to_string()), 1 => "[a-z0-9.-]{1,20}".prop_map(String::from)];
    let method = prop_oneof![4 => Just("POST"), 1 => Just("GET"), 1 => Just("PUT")];
    let authorization = prop_oneof![
        3 => Just(None),
        1 => "Basic [A-Za-z0-9+/=]{0,40}".prop_map(Some),
    ];
    (method, tenant, form, authorization).prop_map(|(method, tenant, form, authorization)| Request {
        method: method.to_string(),
        path: format!("/{tenant}/oauth2/v2.0/token"),
        query: String::new(),
        token: true,
        authorization,
        body: form.into_bytes(),
    })
}

/// The error an emulator answer names: `error.code` + `error.message` (ARM) or `error` +
/// `error_description` (Entra).
fn named_error(body: &Value) -> Option<(String, String)> {
    let text = |v: &Value| v.as_str().map(str::trim).filter(|t| !t.is_empty()).map(str::to_string);
    match (&body["error"], &body["error_description"]) {
        (Value::Object(e), _) => Some((text(e.get("code")?)?, text(e.get("message")?)?)),
        (e @ Value::String(_), d) => Some((text(e)?, text(d)?)),
        _ => None,
    }
}

#[test]
fn the_emulator_answers_any_request_with_a_resource_or_a_named_error() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let config = EmulatorConfig { operation_duration: Duration::from_secs(3600), retry_after_secs: 0, ..EmulatorConfig::default() };
    let emu: Emulator = rt.block_on(Emulator::start(config)).expect("emulator starts");
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(emu.ca_pem().as_bytes()).expect("CA")])
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let base = emu.arm_endpoint().trim_end_matches('/').to_string();
    let form = format!(
        "grant_type=client_credentials&client_id={DEFAULT_CLIENT_ID}&client_secret={DEFAULT_CLIENT_SECRET}&scope=https%3A%2F%2Fmanagement.azure.com%2F.default"
    );
    let token: Value = rt
        .block_on(async {
            http.post(format!("{base}/{DEFAULT_TENANT_ID}/oauth2/v2.0/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await?
                .json()
                .await
        })
        .expect("token");
    let token = token["access_token"].as_str().expect("access_token").to_string();

    let send = |r: &Request| -> Result<(u16, Vec<u8>), TestCaseError> {
        let method = reqwest::Method::from_bytes(r.method.as_bytes()).map_err(|e| fail(e.to_string()))?;
        let url = if r.query.is_empty() { format!("{base}{}", r.path) } else { format!("{base}{}?{}", r.path, r.query) };
        let authorization = r.authorization.clone().unwrap_or_else(|| format!("Bearer {token}"));
        let mut request = http.request(method, &url).body(r.body.clone());
        if r.token {
            request = request.header("content-type", "application/x-www-form-urlencoded");
            if let Some(a) = &r.authorization {
                request = request.header("authorization", a);
            }
        } else {
            request = request.header("content-type", "application/json").header("authorization", authorization);
        }
        rt.block_on(async {
            let resp = request.send().await.map_err(|e| fail(format!("no answer (a panic in the emulator?): {e:?}")))?;
            let status = resp.status().as_u16();
            let body = resp.bytes().await.map_err(|e| fail(format!("answer cut (a panic in the emulator?): {e:?}")))?;
            Ok((status, body.to_vec()))
        })
    };
    let check = |r: &Request, status: u16, body: &[u8]| -> Result<(), TestCaseError> {
        let text = String::from_utf8_lossy(body);
        if text.contains(NEEDLE) || text.contains(&token) {
            return Err(fail(format!("{} {}: a secret was echoed: {text}", r.method, r.path)));
        }
        if status >= 500 {
            return Err(fail(format!("{} {}: {status} {text}", r.method, r.path)));
        }
        if status >= 400 && r.method != "HEAD" {
            let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            if named_error(&parsed).is_none() {
                return Err(fail(format!("{} {}: {status} names no error: {text}", r.method, r.path)));
            }
        }
        Ok(())
    };
    // A workspace and an endpoint, so requests under them reach their handlers.
    let ws = format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws1");
    for (path, body) in [
        (ws.clone(), json!({"location": "eastus", "identity": {"type": "SystemAssigned"}, "properties": {"friendlyName": "ws1"}})),
        (format!("{ws}/onlineEndpoints/ep"), json!({"location": "eastus", "identity": {"type": "SystemAssigned"}, "properties": {"authMode": "Key"}})),
    ] {
        let put = Request { method: "PUT".into(), path, query: "api-version=2024-10-01".into(), token: false, authorization: None, body: body.to_string().into_bytes() };
        let (status, answer) = send(&put).expect("PUT answered");
        assert!(status / 100 == 2, "{status} {}", String::from_utf8_lossy(&answer));
        emu.finish_operations();
    }
    // How the answers spread (so a log shows the requests reached the handlers, not only 404s).
    let seen = std::cell::RefCell::new(std::collections::BTreeMap::<u16, usize>::new());
    let tally = |status: u16| *seen.borrow_mut().entry(status).or_default() += 1;
    property("emulator ARM request parsing", 1200, arm_requests(), |r| {
        let (status, body) = send(&r)?;
        tally(status);
        check(&r, status, &body)
    });
    println!("emulator ARM answers by status: {:?}", seen.borrow());
    seen.borrow_mut().clear();
    property("emulator token request parsing", 400, token_requests(), |r| {
        let (status, body) = send(&r)?;
        tally(status);
        check(&r, status, &body)
    });
    println!("emulator token answers by status: {:?}", seen.borrow());
    // Still serving after all of it.
    let (status, _) = send(&Request {
        method: "GET".into(),
        path: format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/none1"),
        query: "api-version=2024-10-01".into(),
        token: false,
        authorization: None,
        body: Vec::new(),
    })
    .expect("the emulator still answers");
    assert_eq!(status, 404);
}
