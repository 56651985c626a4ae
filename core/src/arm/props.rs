//! The property-test runner of the ARM client's unit tests (malformed certificates, token and ARM
//! answers): proptest with a fixed seed, so a CI failure reproduces; the count of cases is printed
//! for the CI log.

/// Runs `test` on `cases` inputs from `strategy` (fixed seed: CI reproducible), panics caught
/// and shrunk by proptest; prints the count for the CI log.
pub(crate) fn property<S: proptest::strategy::Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), proptest::test_runner::TestCaseError>,
) {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let ran = std::cell::Cell::new(0u32);
    let outcome = runner.run(&strategy, |input| {
        ran.set(ran.get() + 1);
        test(input)
    });
    if let Err(failure) = outcome {
        panic!("property: {name}: {failure}");
    }
    println!("property: {name}: {} cases, 0 panics", ran.get());
}


use proptest::prelude::*;
use serde_json::Value;

/// Any JSON value, nested a few levels deep: the wrong type for any field.
pub(crate) fn any_json() -> impl Strategy<Value = Value> {
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
            proptest::collection::btree_map("[a-zA-Z]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
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

/// Bodies around a well-formed `template`: the template cut at any byte, one of its fields (at
/// any depth) given any JSON value, random bytes, random JSON.
pub(crate) fn bodies_around(template: Value) -> impl Strategy<Value = Vec<u8>> {
    let text = template.to_string();
    let mut fields = Vec::new();
    pointers(&template, String::new(), &mut fields);
    let count = fields.len();
    prop_oneof![
        (0..=text.len()).prop_map(move |cut| text.as_bytes()[..cut].to_vec()),
        (0..count, any_json()).prop_map(move |(i, v)| {
            let mut body = template.clone();
            if let Some(slot) = body.pointer_mut(&fields[i]) {
                *slot = v;
            }
            body.to_string().into_bytes()
        }),
        proptest::collection::vec(any::<u8>(), 0..256),
        any_json().prop_map(|v| v.to_string().into_bytes()),
    ]
}
