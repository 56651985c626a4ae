//! Long-running operations: reading `Azure-AsyncOperation` / `Location` / `Retry-After`, and
//! what an operation-status answer means (ARM RPC async-api-reference).

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ArmError, DEFAULT_RETRY_AFTER};

/// Header naming the operation-status resource (preferred for polling).
pub(crate) const AZURE_ASYNC_OPERATION: &str = "azure-asyncoperation";
/// Header naming the operation-result URL.
pub(crate) const LOCATION: &str = "location";
/// Header with the integer number of seconds to wait before polling.
pub(crate) const RETRY_AFTER: &str = "retry-after";

/// An in-flight ARM long-running operation, small enough to store in a status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// Absolute URL to poll (same origin as the ARM endpoint).
    pub url: String,
    /// Which header the URL came from, hence how to read the poll answer.
    pub kind: OperationKind,
    /// How long to wait before the first poll (serialized as whole seconds).
    #[serde(with = "duration_secs")]
    pub retry_after: Duration,
}

/// How an [`Operation`] is polled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationKind {
    /// `Azure-AsyncOperation`: GET returns 200 with `{"status": ..., "error": ...}`.
    AsyncOperation,
    /// `Location`: GET returns 202 while running, then the final answer (200/204, or an error).
    Location,
}

/// Result of a PUT or PATCH.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOutcome {
    /// 200/201 without operation headers: the body is the resource.
    Done(Option<Value>),
    /// 201/202 (or 200) with `Azure-AsyncOperation` (preferred) or, on 201/202, `Location`.
    Accepted {
        /// Body of the answer (usually the resource with a non-terminal provisioningState).
        body: Option<Value>,
        /// The operation to poll.
        operation: Operation,
    },
}

/// Result of a DELETE.
#[derive(Clone, Debug, PartialEq)]
pub enum DeleteOutcome {
    /// 200 or 204 (or 404): the resource is gone.
    Gone,
    /// 202: deletion runs; poll the operation.
    Accepted(Operation),
}

/// Result of a POST action (`listKeys`, `regenerateKeys`, ...).
#[derive(Clone, Debug, PartialEq)]
pub enum PostOutcome {
    /// 200/201/204: the action's answer.
    Done(Option<Value>),
    /// 202: the action runs; poll the operation.
    Accepted(Operation),
}

/// What one poll found.
#[derive(Clone, Debug, PartialEq)]
pub enum PollOutcome {
    /// Not finished; poll again after this long.
    InProgress {
        /// `Retry-After` of the poll answer, else [`DEFAULT_RETRY_AFTER`].
        retry_after: Duration,
    },
    /// Finished successfully. For a PUT, GET the resource for the final state.
    Succeeded,
    /// Finished `Failed` or `Canceled`, with the operation's error.
    Failed(ArmError),
}

/// `Retry-After` as integer seconds; `None` when absent or not an integer (HTTP dates are not used
/// by ARM).
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The operation announced by a write answer's headers: `Azure-AsyncOperation` wins over
/// `Location`; `location_counts` says whether a bare `Location` means an operation (it does on
/// 201/202, not on 200).
pub(crate) fn operation_from_headers(
    headers: &HeaderMap,
    location_counts: bool,
) -> Option<Operation> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let (url, kind) = match header(AZURE_ASYNC_OPERATION) {
        Some(url) => (url, OperationKind::AsyncOperation),
        None if location_counts => (header(LOCATION)?, OperationKind::Location),
        None => return None,
    };
    let retry_after = parse_retry_after(headers).unwrap_or(DEFAULT_RETRY_AFTER);
    Some(Operation {
        url,
        kind,
        retry_after,
    })
}

/// Reads an `Azure-AsyncOperation` status answer (HTTP 200/202). `None` when the body is not a
/// status resource.
pub(crate) fn read_async_status(
    status: u16,
    body: &Value,
    retry_after: Duration,
) -> Option<PollOutcome> {
    let state = body.get("status").and_then(Value::as_str)?;
    Some(outcome_for_state(
        status,
        state,
        body.get("error"),
        retry_after,
    ))
}

/// Reads a `Location` poll answer with a success status: 202 = running; 200/201/204 = done,
/// unless the body is itself an operation status (some RPs answer that way).
pub(crate) fn read_location_answer(
    status: u16,
    body: Option<&Value>,
    retry_after: Duration,
) -> PollOutcome {
    if status == 202 {
        return PollOutcome::InProgress { retry_after };
    }
    let status_resource = body.and_then(|b| {
        let state = b.get("status").and_then(Value::as_str)?;
        // A resource has `properties`; an operation status does not.
        (b.get("properties").is_none())
            .then(|| outcome_for_state(status, state, b.get("error"), retry_after))
    });
    status_resource.unwrap_or(PollOutcome::Succeeded)
}

fn outcome_for_state(
    status: u16,
    state: &str,
    error: Option<&Value>,
    retry_after: Duration,
) -> PollOutcome {
    if state.eq_ignore_ascii_case("Succeeded") {
        PollOutcome::Succeeded
    } else if state.eq_ignore_ascii_case("Failed") || state.eq_ignore_ascii_case("Canceled") {
        let err = match error.filter(|e| e.is_object()) {
            Some(e) => ArmError::from_error_object(status, e),
            None => ArmError {
                status,
                code: state.to_string(),
                message: format!("the operation ended {state} without error details"),
                target: None,
                retry_after: None,
            },
        };
        PollOutcome::Failed(err)
    } else {
        PollOutcome::InProgress { retry_after }
    }
}

mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn async_operation_wins_over_location() {
        let h = headers(&[
            ("Azure-AsyncOperation", "https://arm/op/1"),
            ("Location", "https://arm/loc/1"),
            ("Retry-After", "15"),
        ]);
        let op = operation_from_headers(&h, true).unwrap();
        assert_eq!(op.kind, OperationKind::AsyncOperation);
        assert_eq!(op.url, "https://arm/op/1");
        assert_eq!(op.retry_after, Duration::from_secs(15));
    }

    #[test]
    fn location_only_counts_when_allowed() {
        let h = headers(&[("Location", "https://arm/loc/1")]);
        let op = operation_from_headers(&h, true).unwrap();
        assert_eq!(op.kind, OperationKind::Location);
        assert_eq!(op.retry_after, DEFAULT_RETRY_AFTER);
        assert_eq!(operation_from_headers(&h, false), None);
    }

    #[test]
    fn retry_after_is_integer_seconds_only() {
        assert_eq!(
            parse_retry_after(&headers(&[("Retry-After", " 20 ")])),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            parse_retry_after(&headers(&[(
                "Retry-After",
                "Wed, 21 Oct 2015 07:28:00 GMT"
            )])),
            None
        );
        assert_eq!(parse_retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn operation_serializes_seconds() {
        let op = Operation {
            url: "u".into(),
            kind: OperationKind::Location,
            retry_after: Duration::from_secs(30),
        };
        let v = serde_json::to_value(&op).unwrap();
        assert_eq!(v, json!({"url": "u", "kind": "Location", "retryAfter": 30}));
        assert_eq!(serde_json::from_value::<Operation>(v).unwrap(), op);
    }

    #[test]
    fn async_status_states() {
        let d = Duration::from_secs(7);
        assert_eq!(
            read_async_status(200, &json!({"status": "InProgress"}), d),
            Some(PollOutcome::InProgress { retry_after: d })
        );
        assert_eq!(
            read_async_status(200, &json!({"status": "succeeded"}), d),
            Some(PollOutcome::Succeeded)
        );
        let failed = read_async_status(
            200,
            &json!({"status": "Failed", "error": {"code": "OutOfQuota", "message": "no cores"}}),
            d,
        );
        match failed {
            Some(PollOutcome::Failed(e)) => assert_eq!(
                (e.code.as_str(), e.message.as_str()),
                ("OutOfQuota", "no cores")
            ),
            other => panic!("unexpected {other:?}"),
        }
        match read_async_status(200, &json!({"status": "Canceled"}), d) {
            Some(PollOutcome::Failed(e)) => assert_eq!(e.code, "Canceled"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(read_async_status(200, &json!({"name": "x"}), d), None);
    }

    #[test]
    fn location_answers() {
        let d = Duration::from_secs(3);
        assert_eq!(
            read_location_answer(202, None, d),
            PollOutcome::InProgress { retry_after: d }
        );
        assert_eq!(read_location_answer(204, None, d), PollOutcome::Succeeded);
        assert_eq!(
            read_location_answer(
                200,
                Some(&json!({"properties": {"provisioningState": "Succeeded"}})),
                d
            ),
            PollOutcome::Succeeded
        );
        assert_eq!(
            read_location_answer(200, Some(&json!({"status": "Running"})), d),
            PollOutcome::InProgress { retry_after: d }
        );
    }

    #[test]
    fn any_operation_status_body_is_read_or_reported_never_a_panic() {
        use crate::arm::props::{bodies_around, property};
        use proptest::prelude::*;
        use proptest::test_runner::TestCaseError;
        let template = json!({"id": "op", "status": "Failed", "startTime": "t",
            "error": {"code": "InternalServerError", "message": "m", "details": [{"code": "c", "message": "d"}]}});
        let statuses = prop_oneof![Just(200u16), Just(201), Just(202), Just(204), 0u16..1000];
        property("ARM operation status decoding", 600, (statuses, bodies_around(template)), |(status, body)| {
            let retry = Duration::from_secs(3);
            let parsed: Option<Value> = serde_json::from_slice(&body).ok();
            let outcomes = [
                parsed.as_ref().and_then(|b| read_async_status(status, b, retry)),
                Some(read_location_answer(status, parsed.as_ref(), retry)),
            ];
            for outcome in outcomes.into_iter().flatten() {
                if let PollOutcome::Failed(err) = &outcome
                    && (err.code.trim().is_empty() || err.message.trim().is_empty())
                {
                    return Err(TestCaseError::fail(format!("a failure that names nothing: {err:?}")));
                }
            }
            Ok(())
        });
    }
}
