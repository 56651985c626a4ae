//! A property test of spec -> ARM body for the four kinds, without new crates: random specs drawn
//! from each CRD's own OpenAPI schema by a small seeded xorshift generator (strings empty, huge,
//! unicode; enums known and unknown, also as raw JSON; numbers negative and huge; optional fields
//! present or not; now and then a value of the wrong type).
//!
//! Property: deserializing never panics (unknown enum values and wrong types fail cleanly);
//! `target` + `desired` never panic; the body either passes Microsoft's ARM schema or is refused with
//! a reason (an `Err` from `target`/`desired`, or schema errors each naming the path). Then a few of
//! the refused bodies go through the whole pipeline against the emulator (its validator on) and must
//! end as Ready=False with a reason.
//!
//! Seeds are fixed (CI reproducible); `SPEC_FUZZ_SEED=<n>` and `SPEC_FUZZ_CASES=<n>` explore others.
//! A failure prints the seed and case that reproduce it.


use aml_operator::arm::{Secret as ArmSecret, ServicePrincipal};
use aml_operator::controller::{AmlKind, Parent, Resolved};
use aml_operator::crd::{AmlCompute, AmlOnlineDeployment, AmlOnlineEndpoint, AmlWorkspace};
use aml_operator::emulator::Principal;
use kube::CustomResourceExt;
use serde_json::{Map, Value, json};
use std::panic::{AssertUnwindSafe, catch_unwind};
use crate::support::{NS, SUBSCRIPTION, World};

const DEFAULT_SEED: u64 = 0x5eed_a3f1_2024_1001;
const DEFAULT_CASES: usize = 500;
const NEEDLE: &str = "NEEDLE-3c9f";

/// xorshift64*: small, fast, good enough to explore inputs; never zero.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

// ---------------------------------------------------------------------------------------------
// Values

const UNICODE: &[&str] = &["é", "ß", "日本", "😀", "\u{202e}", "e\u{301}", "\u{0}", "\u{ffff}", "Ω", "🏳️‍🌈", "\t", "\n", " "];

fn random_string(rng: &mut Rng, field: &str) -> String {
    match rng.below(12) {
        0 => String::new(),
        1 => " ".repeat(rng.below(3) as usize + 1),
        2 => {
            // Huge: up to 100 KB.
            let unit = *rng.pick(&["a", "é", "😀", "ab-_"]);
            unit.repeat(1 + rng.below(25_000) as usize)
        }
        3 | 4 => (0..1 + rng.below(12)).map(|_| *rng.pick(UNICODE)).collect(),
        5 => format!("{NEEDLE}-{}", rng.below(1000)),
        6 => format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-{}/providers/Microsoft.Storage/storageAccounts/sa{}",
            rng.below(100),
            rng.below(100)
        ),
        7 => plausible(rng, field),
        8 => "azureml://registries/azureml/models/model/versions/1".into(),
        9 => "PT5M".into(),
        _ => {
            let len = 1 + rng.below(20);
            (0..len).map(|_| *rng.pick(&['a', 'b', 'z', 'A', '0', '9', '-', '_', '.', '/', ':'])).collect()
        }
    }
}

/// A map key: any string but the needle (keys are names, which schema errors show in paths).
fn random_key(rng: &mut Rng) -> String {
    let key = random_string(rng, "");
    if key.contains(NEEDLE) { format!("k{}", rng.below(100)) } else { key }
}

/// A value a person might really write for a field with this name.
fn plausible(rng: &mut Rng, field: &str) -> String {
    let lower = field.to_ascii_lowercase();
    if lower.contains("location") {
        return rng.pick(&["eastus", "westeurope", "East US"]).to_string();
    }
    if ["storageaccount", "keyvault", "applicationinsights", "containerregistry"].iter().any(|f| lower.contains(f)) {
        let (rp, t) = *rng.pick(&[
            ("Microsoft.Storage", "storageAccounts"),
            ("Microsoft.KeyVault", "vaults"),
            ("Microsoft.Insights", "components"),
            ("Microsoft.ContainerRegistry", "registries"),
        ]);
        return format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/providers/{rp}/{t}/x{}", rng.below(100));
    }
    if lower.contains("size") || lower.contains("instancetype") {
        return "Standard_DS3_v2".into();
    }
    format!("{}{}", rng.pick(&["alpha", "team", "cpu", "blue"]), rng.below(100))
}

fn random_number(rng: &mut Rng, schema: &Value) -> Value {
    match rng.below(20) {
        0 => json!(0),
        1 => json!(-(rng.below(1000) as i64) - 1),
        2 => json!(i32::MAX),
        3 => json!(i64::MAX),
        4 => json!(u64::MAX),
        5 => json!(1.0e30),
        6 => json!(1.5),
        _ => {
            let lo = schema["minimum"].as_i64().unwrap_or(0);
            let hi = schema["maximum"].as_i64().unwrap_or(lo + 100).max(lo);
            json!(lo + rng.below((hi - lo + 1) as u64) as i64)
        }
    }
}

/// Any JSON at all (for wrong-type values and free-form fields).
fn random_json(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth > 2 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => random_number(rng, &Value::Null),
        3 | 4 => json!(random_string(rng, "")),
        5 => Value::Array((0..rng.below(3)).map(|_| random_json(rng, depth + 1)).collect()),
        _ => Value::Object((0..rng.below(3)).map(|_| (random_key(rng), random_json(rng, depth + 1))).collect()),
    }
}

/// A random instance of an OpenAPI schema (as the CRD generator writes them), sometimes wrong.
fn generate(rng: &mut Rng, schema: &Value, field: &str, depth: u32) -> Value {
    if rng.chance(1) {
        return random_json(rng, depth); // a value of the wrong type, now and then
    }
    if let Some(values) = schema["enum"].as_array() {
        return match rng.below(20) {
            0 | 1 => json!(random_string(rng, field)), // an unknown value
            2 => json!(rng.pick(values).as_str().unwrap_or_default().to_ascii_lowercase()),
            _ => rng.pick(values).clone(),
        };
    }
    if schema["x-kubernetes-preserve-unknown-fields"] == true && schema.get("properties").is_none() {
        return random_json(rng, depth);
    }
    match schema["type"].as_str() {
        Some("string") => json!(random_string(rng, field)),
        Some("integer") | Some("number") => random_number(rng, schema),
        Some("boolean") => json!(rng.chance(50)),
        Some("array") => {
            let n = if depth > 4 { 0 } else { rng.below(4) };
            Value::Array((0..n).map(|_| generate(rng, &schema["items"], field, depth + 1)).collect())
        }
        _ => {
            let mut out = Map::new();
            if let Some(props) = schema["properties"].as_object() {
                let required: Vec<&str> =
                    schema["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
                for (name, sub) in props {
                    let keep = if required.contains(&name.as_str()) { rng.chance(97) } else { depth < 4 && rng.chance(45) };
                    if keep {
                        out.insert(name.clone(), generate(rng, sub, name, depth + 1));
                    }
                }
            }
            if let Some(extra) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for _ in 0..rng.below(4) {
                    let key = random_key(rng);
                    out.insert(key, generate(rng, extra, field, depth + 1));
                }
            }
            Value::Object(out)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The property

fn spec_schema<K: CustomResourceExt>() -> Value {
    let crd = serde_json::to_value(K::crd()).expect("CRD serializes");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

fn ws_id() -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/ws1")
}

fn resolved<K: AmlKind>() -> Resolved {
    let p = Principal::default();
    let principal = ServicePrincipal {
        tenant_id: p.tenant_id,
        client_id: p.client_id,
        credential: aml_operator::arm::ClientCredential::Secret(ArmSecret::new(p.client_secret)),
        subscription_id: Some(SUBSCRIPTION.into()),
    };
    let parent_id = match K::kind(&()).as_ref() {
        "AmlWorkspace" => None,
        "AmlOnlineDeployment" => Some(format!("{}/onlineEndpoints/ep1", ws_id())),
        _ => Some(ws_id()),
    };
    let parent = parent_id.map(|arm_id| Parent {
        arm_id,
        subscription: SUBSCRIPTION.into(),
        resource_group: "rg-ml".into(),
        location: "eastus".into(),
        owner: None,
    });
    Resolved { principal, parent, references: Default::default() }
}

fn object_json<K: AmlKind>(name: &str, spec: &Value) -> Value {
    json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    })
}

/// How one case ended.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Verdict {
    /// Deserialization refused the spec (cleanly).
    NotASpec,
    /// `target` or `desired` refused it, with a reason.
    Refused,
    /// The ARM schema refused the body, naming paths.
    SchemaRefused,
    /// The body passes the ARM schema.
    Valid,
}

/// Runs the property on one spec; `Err` describes a violation.
fn check<K: AmlKind>(spec: &Value, validator: Option<&aml_operator::armspec::SchemaValidator>) -> Result<Verdict, String> {
    let Ok(obj) = serde_json::from_value::<K>(object_json::<K>("fuzz", spec)) else {
        return Ok(Verdict::NotASpec);
    };
    // Serializing back must work too (the operator writes these objects).
    serde_json::to_value(&obj).map_err(|e| format!("the deserialized object does not serialize: {e}"))?;
    let refused = |e: aml_operator::controller::Error| {
        if e.reason().is_empty() || e.message().trim().is_empty() {
            Err(format!("refused without a reason: {e:?}"))
        } else {
            Ok(Verdict::Refused)
        }
    };
    let target = match obj.target(&resolved::<K>()) {
        Ok(t) => t,
        Err(e) => return refused(e),
    };
    let body = match obj.desired(&target) {
        Ok(b) => b,
        Err(e) => return refused(e),
    };
    if !body.is_object() {
        return Err(format!("desired is not a JSON object: {body}"));
    }
    let Some(validator) = validator else { return Ok(Verdict::Valid) };
    match validator.validate(K::ARM_TYPE, &target.name, &body) {
        Ok(()) => Ok(Verdict::Valid),
        Err(message) => {
            // Each problem starts with its instance path. (A map key with a line break splits a
            // problem over two lines: see `schema_errors_keep_one_problem_per_line`.)
            if !message.starts_with('/') {
                return Err(format!("schema refusal without a path: {message:?}"));
            }
            if message.contains(NEEDLE) {
                return Err(format!("the schema error echoes a value from the body: {message:?}"));
            }
            Ok(Verdict::SchemaRefused)
        }
    }
}

fn truncated(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 600 { format!("{}... ({} bytes)", &s[..s.char_indices().nth(600).map_or(s.len(), |(i, _)| i)], s.len()) } else { s }
}

/// `cases` random specs of kind `K` from `seed`: the property holds for each, or the test fails
/// naming the seed and case.
fn fuzz_kind<K: AmlKind + CustomResourceExt>(seed: u64, cases: usize) -> [usize; 4] {
    let schema = spec_schema::<K>();
    let dir = crate::support::specs_dir_for_tests();
    let validator = dir.as_ref().map(|d| aml_operator::armspec::shared(d).expect("ARM schemas load"));
    let mut counts = [0usize; 4];
    for case in 0..cases {
        let case_seed = seed ^ (case as u64).wrapping_mul(0x1000_0000_01B3);
        let mut rng = Rng::new(case_seed);
        let spec = generate(&mut rng, &schema, "spec", 0);
        let outcome = catch_unwind(AssertUnwindSafe(|| check::<K>(&spec, validator)));
        let failure = match outcome {
            Ok(Ok(v)) => {
                counts[v as usize] += 1;
                None
            }
            Ok(Err(violation)) => Some(violation),
            Err(panic) => Some(format!(
                "PANIC: {}",
                panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
            )),
        };
        if let Some(failure) = failure {
            panic!(
                "{} spec_fuzz failure (reproduce with SPEC_FUZZ_SEED={seed:#x}, case {case}, case seed {case_seed:#x}): {failure}\nspec: {}",
                K::kind(&()),
                truncated(&spec)
            );
        }
    }
    counts
}

fn seed_and_cases() -> (u64, usize) {
    let seed = env_u64("SPEC_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let cases = env_u64("SPEC_FUZZ_CASES").map_or(DEFAULT_CASES, |n| n as usize);
    (seed, cases)
}

fn report(kind: &str, seed: u64, counts: [usize; 4]) {
    let [not_spec, refused, schema_refused, valid] = counts;
    eprintln!(
        "spec fuzz {kind} (seed {seed:#x}): {} cases: {not_spec} not a spec, {refused} refused by desired/target, {schema_refused} refused by the ARM schema, {valid} valid",
        counts.iter().sum::<usize>()
    );
}

fn require_specs() -> bool {
    if crate::support::specs_dir_for_tests().is_some() {
        return true;
    }
    assert!(std::env::var("AML_REQUIRE_ARM_SPECS").as_deref() != Ok("1"), "AML_REQUIRE_ARM_SPECS=1 but the ARM specs are absent");
    false
}

macro_rules! fuzz_test {
    ($name:ident, $kind:ty, $salt:expr) => {
        #[test]
        fn $name() {
            let (seed, cases) = seed_and_cases();
            let seed = seed ^ $salt;
            let with_schemas = require_specs();
            let counts = fuzz_kind::<$kind>(seed, cases);
            report(stringify!($kind), seed, counts);
            assert_eq!(counts.iter().sum::<usize>(), cases);
            // The generator must reach every outcome, or the property says little (refusals by the
            // ARM schema only when the schemas are there to refuse).
            assert!(counts[0] > 0 && (!with_schemas || counts[1] + counts[2] > 0), "{counts:?}");
        }
    };
}

fuzz_test!(random_workspace_specs_deserialize_build_and_validate_or_are_refused_with_a_reason, AmlWorkspace, 0x1);
fuzz_test!(random_compute_specs_deserialize_build_and_validate_or_are_refused_with_a_reason, AmlCompute, 0x2);
fuzz_test!(random_endpoint_specs_deserialize_build_and_validate_or_are_refused_with_a_reason, AmlOnlineEndpoint, 0x3);
fuzz_test!(random_deployment_specs_deserialize_build_and_validate_or_are_refused_with_a_reason, AmlOnlineDeployment, 0x4);

#[test]
fn unknown_enum_values_and_wrong_types_fail_deserialization_cleanly() {
    let cases = [
        json!({"resourceGroup": "rg", "location": "eastus", "deletionPolicy": "Obliterate"}),
        json!({"resourceGroup": "rg", "location": "eastus", "managementPolicy": 7}),
        json!({"resourceGroup": "rg", "location": "eastus", "publicNetworkAccess": "enabled"}),
        json!({"resourceGroup": "rg", "location": "eastus", "hbiWorkspace": "yes"}),
        json!({"resourceGroup": ["rg"], "location": "eastus"}),
        json!({"location": "eastus"}),
    ];
    for spec in cases {
        let r = catch_unwind(|| serde_json::from_value::<AmlWorkspace>(object_json::<AmlWorkspace>("x", &spec)));
        let r = r.unwrap_or_else(|_| panic!("deserializing {spec} panicked"));
        assert!(r.is_err(), "{spec} must not deserialize");
    }
    let compute = json!({"workspaceRef": {"name": "ws1"}, "computeType": "Kubernetes"});
    assert!(serde_json::from_value::<AmlCompute>(object_json::<AmlCompute>("x", &compute)).is_err());
    let endpoint = json!({"workspaceRef": {"name": "ws1"}, "authMode": "Password"});
    assert!(serde_json::from_value::<AmlOnlineEndpoint>(object_json::<AmlOnlineEndpoint>("x", &endpoint)).is_err());
    let deployment = json!({"endpointRef": {"name": "ep1"}, "instanceCount": 1e30});
    assert!(serde_json::from_value::<AmlOnlineDeployment>(object_json::<AmlOnlineDeployment>("x", &deployment)).is_err());
}

// ---------------------------------------------------------------------------------------------
// Refused bodies through the pipeline

/// Specs that deserialize and build but that the ARM schema refuses, made to reach ARM: parents
/// named `ws1`/`ep1`, no credentials or policy overrides.
fn schema_refused<K: AmlKind + CustomResourceExt>(seed: u64, wanted: usize) -> Vec<Value> {
    let schema = spec_schema::<K>();
    let dir = crate::support::specs_dir_for_tests().expect("checked by the caller");
    let validator = aml_operator::armspec::shared(&dir).expect("ARM schemas load");
    let mut found = Vec::new();
    for case in 0..5000u64 {
        let mut rng = Rng::new(seed ^ case.wrapping_mul(0x1000_0000_01B3));
        let mut spec = generate(&mut rng, &schema, "spec", 0);
        let Some(m) = spec.as_object_mut() else { continue };
        for key in ["credentials", "deletionPolicy", "managementPolicy", "subscriptionId", "azureName"] {
            m.remove(key);
        }
        if m.contains_key("workspaceRef") || K::kind(&()) == "AmlCompute" || K::kind(&()) == "AmlOnlineEndpoint" {
            m.remove("workspaceId");
            m.insert("workspaceRef".into(), json!({"name": "ws1"}));
        }
        if K::kind(&()) == "AmlOnlineDeployment" {
            m.insert("endpointRef".into(), json!({"name": "ep1"}));
        }
        if K::kind(&()) == "AmlWorkspace" {
            m.insert("resourceGroup".into(), json!("rg-ml"));
        }
        if check::<K>(&spec, Some(validator)) == Ok(Verdict::SchemaRefused) {
            found.push(spec);
            if found.len() == wanted {
                break;
            }
        }
    }
    found
}

async fn through_the_pipeline<K: AmlKind + CustomResourceExt>(w: &World, seed: u64, failures: &mut Vec<String>) -> usize {
    let specs = schema_refused::<K>(seed, 3);
    let plural = format!("{}s", K::kind(&()).to_lowercase());
    for (i, spec) in specs.iter().enumerate() {
        let name = format!("fz-{}-{i}", K::kind(&()).to_lowercase());
        let path = format!("/apis/amloperator.io/v1alpha1/namespaces/{NS}/{plural}/{name}");
        let obj: K = serde_json::from_value(object_json::<K>(&name, spec)).expect("checked above");
        w.kube.put(obj);
        let mark = w.emulator.requests().len();
        for _ in 0..4 {
            let Some(obj) = w.kube.get::<K>(&path) else { break };
            let _ = aml_operator::controller::pipeline::reconcile(std::sync::Arc::new(obj), w.ctx.clone()).await;
            w.emulator.finish_operations();
        }
        let ready = w.condition(&path, "Ready");
        let ok = ready.as_ref().is_some_and(|c| {
            c["status"] == "False" && c["reason"].as_str().is_some_and(|r| !r.is_empty()) && c["message"].as_str().is_some_and(|m| !m.is_empty())
        });
        eprintln!(
            "spec fuzz: {} {name}: Ready=False {}",
            K::kind(&()),
            ready.as_ref().and_then(|c| c["reason"].as_str()).unwrap_or("?")
        );
        if !ok {
            failures.push(format!("{} {name}: Ready is {ready:?} for the refused spec {}", K::kind(&()), truncated(spec)));
        }
        // The workspace's dependencies (created from the operator's own bodies before the refused
        // workspace PUT) are other resources: only an ML resource made from the body counts.
        let created = w
            .emulator
            .requests()
            .iter()
            .skip(mark)
            .filter(|r| r.created && r.path.contains("/providers/Microsoft.MachineLearningServices/"))
            .count();
        if created > 0 {
            failures.push(format!("{} {name}: ARM created a resource from a refused body", K::kind(&())));
        }
    }
    specs.len()
}

#[tokio::test]
async fn refused_bodies_end_as_ready_false_with_a_reason_through_the_pipeline() {
    if !require_specs() {
        return;
    }
    let (seed, _) = seed_and_cases();
    let w = World::new().await;
    w.good_credentials();
    let parent = |kind: &str, name: &str| format!("/apis/amloperator.io/v1alpha1/namespaces/{NS}/{kind}/{name}");
    w.kube.put(serde_json::from_value::<AmlWorkspace>(object_json::<AmlWorkspace>("ws1", &json!({
        "resourceGroup": "rg-ml", "location": "eastus",
        "storageAccount": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/providers/Microsoft.Storage/storageAccounts/sa1"),
        "keyVault": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/providers/Microsoft.KeyVault/vaults/kv1"),
    }))).unwrap());
    w.converge::<AmlWorkspace>(&parent("amlworkspaces", "ws1")).await;
    w.kube.put(serde_json::from_value::<AmlOnlineEndpoint>(object_json::<AmlOnlineEndpoint>("ep1", &json!({
        "workspaceRef": {"name": "ws1"}, "authMode": "Key",
    }))).unwrap());
    w.converge::<AmlOnlineEndpoint>(&parent("amlonlineendpoints", "ep1")).await;

    let mut failures = Vec::new();
    let n = through_the_pipeline::<AmlWorkspace>(&w, seed ^ 0x11, &mut failures).await
        + through_the_pipeline::<AmlCompute>(&w, seed ^ 0x12, &mut failures).await
        + through_the_pipeline::<AmlOnlineEndpoint>(&w, seed ^ 0x13, &mut failures).await
        + through_the_pipeline::<AmlOnlineDeployment>(&w, seed ^ 0x14, &mut failures).await;
    eprintln!("spec fuzz: {n} schema-refused specs through the pipeline");
    assert!(n >= 8, "the generator found only {n} schema-refused specs");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The validator promises one problem per line, each starting with its instance path. A map key
/// holding a line break (Kubernetes accepts any string as a key of `managedNetwork.outboundRules`,
/// `tags`, `environmentVariables`...) is copied raw into the path and breaks that framing, so the
/// message shows a line that names no path. Found by the fuzz test (SPEC_FUZZ_SEED=2, case 835).
#[test]
fn schema_errors_keep_one_problem_per_line() {
    let Some(dir) = crate::support::specs_dir_for_tests() else { return };
    let validator = aml_operator::armspec::shared(&dir).expect("ARM schemas load");
    let body = json!({
        "location": "eastus",
        "properties": {"managedNetwork": {"isolationMode": "AllowOnlyApprovedOutbound", "outboundRules": {"rule\none": 5}}},
    });
    let message = validator.validate(AmlWorkspace::ARM_TYPE, "ws1", &body).expect_err("5 is not a rule");
    for line in message.lines() {
        assert!(line.starts_with('/') || line.starts_with("... and "), "a line without a path: {line:?} in {message:?}");
    }
}
