//! ARM and token errors, their classification and their bounded reasons.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use super::DEFAULT_RETRY_AFTER;

/// Reasons returned by [`Error::reason`]: PascalCase, a bounded set usable as a condition reason,
/// an event reason and a metric label.
pub mod reason {
    /// ARM answered 404.
    pub const ARM_NOT_FOUND: &str = "ArmNotFound";
    /// ARM answered 429.
    pub const ARM_THROTTLED: &str = "ArmThrottled";
    /// ARM answered 408 or 5xx.
    pub const ARM_UNAVAILABLE: &str = "ArmUnavailable";
    /// No answer from ARM (connect, TLS, timeout, broken body).
    pub const ARM_UNREACHABLE: &str = "ArmUnreachable";
    /// ARM answered 409.
    pub const ARM_CONFLICT: &str = "ArmConflict";
    /// The token request was refused, or ARM answered 401.
    pub const AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
    /// ARM answered 403: the principal lacks a role assignment.
    pub const AUTHORIZATION_FAILED: &str = "AuthorizationFailed";
    /// ARM refused the request (400 and other 4xx).
    pub const ARM_REJECTED: &str = "ArmRejected";
    /// The token endpoint was unreachable or answered 408/429/5xx or garbage.
    pub const TOKEN_ENDPOINT_UNAVAILABLE: &str = "TokenEndpointUnavailable";
    /// ARM answered something this client cannot read.
    pub const ARM_BAD_RESPONSE: &str = "ArmBadResponse";
    /// The client or the call is misconfigured (endpoint, CA file, credentials shape, path).
    pub const INVALID_CONFIGURATION: &str = "InvalidConfiguration";
    /// The subscription is not registered for Microsoft.MachineLearningServices.
    pub const SUBSCRIPTION_NOT_REGISTERED: &str = "SubscriptionNotRegistered";
    /// A quota (cores, endpoints, ...) is exhausted.
    pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
    /// ARM refused the resource name.
    pub const INVALID_RESOURCE_NAME: &str = "InvalidResourceName";
}

/// ARM error codes that mean the subscription lacks the resource provider registration.
const NOT_REGISTERED_CODES: &[&str] =
    &["MissingSubscriptionRegistration", "MissingRegistrationForLocation", "NoRegisteredProviderFound", "SubscriptionNotRegistered"];
/// ARM error codes that mean a quota is exhausted.
const QUOTA_CODES: &[&str] = &["QuotaExceeded", "OutOfQuota", "OperationNotAllowed", "InsufficientQuota", "SkuNotAvailable", "OutOfCapacity"];
/// ARM error codes that mean the name is refused.
const NAME_CODES: &[&str] = &["InvalidResourceName", "InvalidWorkspaceName", "InvalidName", "ReservedResourceName"];

/// Who can end a failed ARM operation (or a resource ARM reports `Failed`/`Canceled`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureClass {
    /// ARM or the platform had a passing problem: the operator writes again on its own, with
    /// bounded exponential backoff.
    Transient,
    /// The spec, a quota or a permission must change first: the operator waits (`Stalled`) for a
    /// spec edit or the retry annotation.
    NeedsPerson,
}

/// The ARM error code given to a failure that carries none: a resource ARM reports `Failed` (or
/// `Canceled`) without an error, e.g. because the operation's answer was lost. What failed is
/// unknown, so it is retried (boundedly); the retry's own operation then tells the real code.
pub const CODE_FAILED_WITHOUT_ERROR: &str = "ProvisioningStateFailed";
/// Like [`CODE_FAILED_WITHOUT_ERROR`], for a resource ARM reports `Canceled`.
pub const CODE_CANCELED_WITHOUT_ERROR: &str = "ProvisioningStateCanceled";

/// The one table of ARM error codes of failed operations and failed resources, and their class
/// (matched case-insensitively). A code not listed needs a person.
pub const OPERATION_FAILURE_CLASSES: &[(&str, FailureClass)] = {
    use FailureClass::{NeedsPerson as P, Transient as T};
    &[
        // ARM or the resource provider was briefly unable to finish.
        ("InternalServerError", T),
        ("InternalError", T),
        ("ServiceUnavailable", T),
        ("BadGateway", T),
        ("GatewayTimeout", T),
        ("RequestTimeout", T),
        ("OperationTimedOut", T),
        ("ServerTimeout", T),
        ("TooManyRequests", T),
        ("ResourceRequestsThrottled", T),
        ("SubscriptionRequestsThrottled", T),
        // Another operation held the resource, or the platform preempted this one.
        ("Conflict", T),
        ("AnotherOperationInProgress", T),
        ("OperationPreempted", T),
        ("PlatformOperationInProgress", T),
        ("RetryableError", T),
        ("TransientError", T),
        // Canceled by ARM (superseded, or the platform restarted it): nothing for a person to fix.
        ("Canceled", T),
        ("OperationCanceled", T),
        // A resource found failed without a code: see CODE_FAILED_WITHOUT_ERROR.
        (CODE_FAILED_WITHOUT_ERROR, T),
        (CODE_CANCELED_WITHOUT_ERROR, T),
        // Quota and capacity: raise the quota or choose another size or region.
        ("QuotaExceeded", P),
        ("OutOfQuota", P),
        ("InsufficientQuota", P),
        ("OperationNotAllowed", P),
        ("SkuNotAvailable", P),
        ("OutOfCapacity", P),
        // The request is wrong: fix the spec.
        ("BadRequest", P),
        ("BadArgument", P),
        ("InvalidTemplate", P),
        ("InvalidRequestContent", P),
        ("InvalidParameter", P),
        ("ValidationError", P),
        ("UserError", P),
        ("InvalidResourceName", P),
        ("InvalidPropertyValue", P),
        ("LocationNotAvailableForResourceType", P),
        ("InvalidTagNameCharacters", P),
        ("ImageBuildFailure", P),
        // Permissions and registration: grant a role or register the provider.
        ("AuthorizationFailed", P),
        ("LinkedAuthorizationFailed", P),
        ("Forbidden", P),
        ("MissingSubscriptionRegistration", P),
    ]
};

/// The class of an ARM error code from [`OPERATION_FAILURE_CLASSES`]; an unknown code needs a
/// person.
pub fn failure_class(code: &str) -> FailureClass {
    OPERATION_FAILURE_CLASSES
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(code))
        .map_or(FailureClass::NeedsPerson, |(_, class)| *class)
}

fn code_in(code: &str, list: &[&str]) -> bool {
    list.iter().any(|c| c.eq_ignore_ascii_case(code))
}

/// An error answer from ARM (or a failed long-running operation), from its
/// `{"error":{"code","message","target"}}` body when it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArmError {
    /// HTTP status of the answer that carried the error (200 for a failed operation status).
    pub status: u16,
    /// ARM error code, e.g. `AuthorizationFailed`; the status' reason phrase when the body has none.
    pub code: String,
    /// Human-readable message from ARM (with up to three `details` appended).
    pub message: String,
    /// The `target` ARM named, if any.
    pub target: Option<String>,
    /// `Retry-After` of the answer, if present and readable.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for ArmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)?;
        if let Some(target) = &self.target {
            write!(f, " (target {target})")?;
        }
        Ok(())
    }
}

impl ArmError {
    /// Builds an error from an HTTP status, its body and its `Retry-After`.
    ///
    /// Reads `{"error":{...}}` (the ARM shape) or a top-level `{"code","message"}`; otherwise the
    /// code is the status' reason phrase without spaces and the message the reason phrase plus a
    /// short excerpt of a non-JSON body.
    pub fn from_response(status: u16, body: &[u8], retry_after: Option<Duration>) -> Self {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let detail = parsed.as_ref().and_then(|v| {
            let inner = v.get("error").filter(|e| e.is_object()).unwrap_or(v);
            inner.get("code").and_then(Value::as_str).map(|_| inner)
        });
        if let Some(detail) = detail {
            let mut err = Self::from_error_object(status, detail);
            err.retry_after = retry_after;
            return err;
        }
        let phrase = reason_phrase(status);
        let mut message = phrase.to_string();
        if parsed.is_none() {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if !text.is_empty() {
                message.push_str(": ");
                message.push_str(&excerpt(text, 200));
            }
        }
        Self {
            status,
            code: phrase.replace([' ', '-'], ""),
            message,
            target: None,
            retry_after,
        }
    }

    /// Builds an error from an ARM error object `{"code","message","target","details"}`.
    pub fn from_error_object(status: u16, error: &Value) -> Self {
        let text = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_string);
        // A blank code or message says nothing: the status' reason phrase / "no message" instead.
        let text = |key: &str| text(key).filter(|t| !t.trim().is_empty());
        let code = text("code").unwrap_or_else(|| reason_phrase(status).replace([' ', '-'], ""));
        let mut message = text("message").unwrap_or_default();
        let details: Vec<String> = error
            .get("details")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .take(3)
                    .filter_map(|d| {
                        let code = d.get("code").and_then(Value::as_str).unwrap_or("");
                        let msg = d.get("message").and_then(Value::as_str)?;
                        Some(if code.is_empty() {
                            msg.to_string()
                        } else {
                            format!("{code}: {msg}")
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !details.is_empty() {
            if !message.is_empty() {
                message.push(' ');
            }
            message.push_str(&format!("(details: {})", details.join("; ")));
        }
        if message.is_empty() {
            message = "no message".to_string();
        }
        Self {
            status,
            code,
            message,
            target: text("target"),
            retry_after: None,
        }
    }
}

/// What a caller should do about an [`Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The resource (or its parent) does not exist.
    NotFound,
    /// ARM throttles: wait at least this long (Retry-After, or [`DEFAULT_RETRY_AFTER`]).
    Throttled(Duration),
    /// Try again with backoff: 408, 5xx, transport failures, token endpoint outages, garbage.
    Transient,
    /// 409: another operation runs or the resource conflicts; retry later.
    Conflict,
    /// Nothing changes until a person acts: 400/401/403, refused credentials, bad configuration.
    NeedsPerson,
}

/// Every failure of the ARM client.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// No answer: connect, TLS, timeout or body read failed.
    #[error(
        "{method} {url}: no answer from ARM (connection, TLS or timeout); check --arm-endpoint, --ca-file and the network"
    )]
    Transport {
        /// HTTP method.
        method: String,
        /// URL without query string.
        url: String,
        /// The transport failure (its URL removed).
        #[source]
        source: reqwest::Error,
    },
    /// Entra ID did not issue a token.
    #[error("{}", token_display(.tenant_id, .client_id, *.status, .code.as_deref(), .message))]
    Token {
        /// Tenant id from the credentials.
        tenant_id: String,
        /// Client id from the credentials.
        client_id: String,
        /// HTTP status of the token endpoint's answer, if one arrived.
        status: Option<u16>,
        /// Entra error code, e.g. `AADSTS7000215`, else the OAuth `error` value.
        code: Option<String>,
        /// What went wrong, free of secret values.
        message: String,
        /// The underlying failure when no answer from Entra explains it (transport errors);
        /// boxed to keep `Error` small.
        #[source]
        source: Option<Box<azure_core::Error>>,
    },
    /// ARM answered with an error.
    #[error("ARM answered {err}{hint}", err = .0, hint = api_hint(.0))]
    Api(ArmError),
    /// ARM answered something unreadable.
    #[error("{method} {url}: {detail}")]
    Decode {
        /// HTTP method.
        method: String,
        /// URL without query string.
        url: String,
        /// What was wrong with the answer.
        detail: &'static str,
        /// The JSON error, when the body did not parse.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// The client or the call is misconfigured.
    #[error("{message}")]
    Config {
        /// What is wrong and how to fix it.
        message: String,
        /// The underlying failure (file read, certificate parse, client build).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    /// How a caller should react.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Transport { .. } | Error::Decode { .. } => ErrorClass::Transient,
            Error::Config { .. } => ErrorClass::NeedsPerson,
            Error::Token { status, source, .. } => match status {
                Some(408 | 429) | Some(500..=599) => ErrorClass::Transient,
                Some(_) => ErrorClass::NeedsPerson,
                // No answer: a transport failure is transient, a refused input is not.
                None if source.is_some() => ErrorClass::Transient,
                None => ErrorClass::NeedsPerson,
            },
            Error::Api(err)
                if code_in(&err.code, NOT_REGISTERED_CODES)
                    || (err.status != 429 && code_in(&err.code, QUOTA_CODES))
                    || code_in(&err.code, NAME_CODES) =>
            {
                ErrorClass::NeedsPerson
            }
            Error::Api(err) => match err.status {
                404 => ErrorClass::NotFound,
                429 => ErrorClass::Throttled(err.retry_after.unwrap_or(DEFAULT_RETRY_AFTER)),
                408 | 500..=599 => ErrorClass::Transient,
                409 => ErrorClass::Conflict,
                _ => ErrorClass::NeedsPerson,
            },
        }
    }

    /// A bounded PascalCase reason (see [`reason`]).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Transport { .. } => reason::ARM_UNREACHABLE,
            Error::Decode { .. } => reason::ARM_BAD_RESPONSE,
            Error::Config { .. } => reason::INVALID_CONFIGURATION,
            Error::Token { .. } => match self.class() {
                ErrorClass::NeedsPerson => reason::AUTHENTICATION_FAILED,
                _ => reason::TOKEN_ENDPOINT_UNAVAILABLE,
            },
            Error::Api(err) if code_in(&err.code, NOT_REGISTERED_CODES) => reason::SUBSCRIPTION_NOT_REGISTERED,
            Error::Api(err) if err.status != 429 && code_in(&err.code, QUOTA_CODES) => reason::QUOTA_EXCEEDED,
            Error::Api(err) if code_in(&err.code, NAME_CODES) => reason::INVALID_RESOURCE_NAME,
            Error::Api(err) => match err.status {
                404 => reason::ARM_NOT_FOUND,
                429 => reason::ARM_THROTTLED,
                408 | 500..=599 => reason::ARM_UNAVAILABLE,
                409 => reason::ARM_CONFLICT,
                401 => reason::AUTHENTICATION_FAILED,
                403 => reason::AUTHORIZATION_FAILED,
                _ => reason::ARM_REJECTED,
            },
        }
    }

    /// The ARM error, for [`Error::Api`].
    pub fn arm(&self) -> Option<&ArmError> {
        match self {
            Error::Api(err) => Some(err),
            _ => None,
        }
    }

    /// A configuration error without an underlying cause.
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
            source: None,
        }
    }

    /// A configuration error with its cause.
    pub(crate) fn config_with(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Config {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

fn token_display(
    tenant_id: &str,
    client_id: &str,
    status: Option<u16>,
    code: Option<&str>,
    message: &str,
) -> String {
    let mut out =
        format!("cannot get an Entra ID token for client '{client_id}' in tenant '{tenant_id}'");
    if let Some(status) = status {
        out.push_str(&format!(" (HTTP {status}"));
        if let Some(code) = code {
            out.push_str(&format!(", {code}"));
        }
        out.push(')');
    } else if let Some(code) = code {
        out.push_str(&format!(" ({code})"));
    }
    out.push_str(": ");
    out.push_str(message);
    out.push_str("; ");
    out.push_str(token_hint(status, code));
    out
}

/// What a person should check, from the Entra error code (AADSTS numbers from Entra's error list).
fn token_hint(status: Option<u16>, code: Option<&str>) -> &'static str {
    let code = code.unwrap_or("");
    if code.starts_with("AADSTS7000215")
        || code.starts_with("AADSTS7000222")
        || code == "invalid_client"
    {
        return "check clientSecret in the credentials Secret (it must be the secret's value, not its id, and not expired)";
    }
    if code.starts_with("AADSTS700027") {
        return "check clientCertificate in the credentials Secret (its certificate must be uploaded to the application, and the key must match it)";
    }
    if code.starts_with("AADSTS70021") || code.starts_with("AADSTS700213") {
        return "the federated token matches no federated credential of the application: check the workload identity setup (issuer, subject system:serviceaccount:<namespace>:<name>)";
    }
    if code.starts_with("AADSTS700016") || code == "unauthorized_client" {
        return "check clientId in the credentials Secret (no such application in this tenant)";
    }
    if code.starts_with("AADSTS90002") || code.starts_with("AADSTS900023") {
        return "check tenantId in the credentials Secret (no such tenant)";
    }
    if code.starts_with("AADSTS70011")
        || code.starts_with("AADSTS500011")
        || code == "invalid_scope"
    {
        return "the token audience is wrong: check --arm-endpoint for this cloud";
    }
    match status {
        Some(408 | 429) | Some(500..=599) => "the token endpoint is unavailable; retrying",
        Some(_) => "check tenantId, clientId and the credential (clientSecret, clientCertificate or the federated token) in the credentials Secret",
        None => "check --authority-host, --ca-file and the network, and the credentials Secret",
    }
}

fn api_hint(err: &ArmError) -> String {
    if code_in(&err.code, NOT_REGISTERED_CODES) {
        return "; register the provider once per subscription: az provider register --namespace Microsoft.MachineLearningServices".into();
    }
    if err.status != 429 && code_in(&err.code, QUOTA_CODES) {
        return "; request a quota increase for this subscription and region (Azure portal: Quotas), or choose a smaller or different VM size / instance count".into();
    }
    if code_in(&err.code, NAME_CODES) {
        return "; choose a name ARM accepts (set spec.azureName): letters, digits, '-' and '_', starting with a letter or digit".into();
    }
    if err.status == 403 {
        return authorization_hint(&err.message);
    }
    match err.status {
        401 => {
            "; ARM did not accept the token: check that tenantId is the subscription's tenant and --arm-endpoint matches --authority-host"
        }
        404 => "; the resource, its resource group or subscription does not exist",
        409 => "; another operation is running or the resource conflicts; retrying later",
        429 => "; ARM is throttling; retrying after Retry-After",
        408 | 500..=599 => "; ARM is unavailable; retrying",
        _ => "",
    }
    .to_string()
}

/// For a 403: the action ARM names (`... perform action 'X' over scope ...`) and a built-in role
/// that grants it.
fn authorization_hint(message: &str) -> String {
    let action = message
        .split("action '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .filter(|a| !a.is_empty());
    let role = match action.map(str::to_ascii_lowercase) {
        Some(a) if a.starts_with("microsoft.authorization/roleassignments/") => {
            "Owner, User Access Administrator or Role Based Access Control Administrator on the scope (Contributor cannot assign roles)"
        }
        Some(a) if a.contains("/computes/") => "AzureML Compute Operator (or Contributor)",
        Some(a) if a.contains("/onlineendpoints/") => "AzureML Data Scientist (or Contributor)",
        _ => "Contributor (or Azure AI Administrator) on the resource group",
    };
    match action {
        Some(a) => format!("; the service principal may not perform {a}: assign it a role that grants it, e.g. {role}"),
        None => format!("; grant the service principal a role on the resource group, e.g. {role}"),
    }
}

/// The reason phrase of a status ("Not Found"), or "HTTP status" for unusual codes.
fn reason_phrase(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("HTTP status")
}

/// The first `max` characters of `text` on one line.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        format!("{one_line}...")
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_arm_error_body() {
        let body = json!({"error": {"code": "AuthorizationFailed", "message": "no access", "target": "x"}});
        let err = ArmError::from_response(403, body.to_string().as_bytes(), None);
        assert_eq!(err.code, "AuthorizationFailed");
        assert_eq!(err.message, "no access");
        assert_eq!(err.target.as_deref(), Some("x"));
    }

    #[test]
    fn parses_top_level_code_and_details() {
        let body = json!({"code": "BadArgument", "message": "bad", "details": [{"code": "Inner", "message": "why"}]});
        let err = ArmError::from_response(400, body.to_string().as_bytes(), None);
        assert_eq!(err.code, "BadArgument");
        assert_eq!(err.message, "bad (details: Inner: why)");
    }

    #[test]
    fn falls_back_to_status_text() {
        let err = ArmError::from_response(503, b"<html>down</html>", Some(Duration::from_secs(5)));
        assert_eq!(err.code, "ServiceUnavailable");
        assert_eq!(err.message, "Service Unavailable: <html>down</html>");
        assert_eq!(err.retry_after, Some(Duration::from_secs(5)));
        let err = ArmError::from_response(404, b"", None);
        assert_eq!(
            (err.code.as_str(), err.message.as_str()),
            ("NotFound", "Not Found")
        );
    }

    #[test]
    fn operation_failures_are_classified_by_code_and_unknown_codes_need_a_person() {
        for code in ["InternalServerError", "serviceunavailable", "Conflict", "OperationCanceled", CODE_FAILED_WITHOUT_ERROR] {
            assert_eq!(failure_class(code), FailureClass::Transient, "{code}");
        }
        for code in ["QuotaExceeded", "BadRequest", "AuthorizationFailed", "ImageBuildFailure", "InvalidPropertyValue", "LocationNotAvailableForResourceType", "SomethingNew", ""] {
            assert_eq!(failure_class(code), FailureClass::NeedsPerson, "{code}");
        }
        let mut codes: Vec<String> = OPERATION_FAILURE_CLASSES.iter().map(|(c, _)| c.to_ascii_lowercase()).collect();
        codes.sort();
        let n = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), n, "a code is listed twice");
    }

    #[test]
    fn excerpt_is_one_line_and_bounded() {
        assert_eq!(excerpt("a\nb", 10), "a b");
        assert_eq!(excerpt("abcdef", 3), "abc...");
    }

    #[test]
    fn a_blank_code_or_message_falls_back_to_the_status() {
        let err = ArmError::from_response(409, br#"{"error":{"code":" ","message":""}}"#, None);
        assert_eq!((err.code.as_str(), err.message.as_str()), ("Conflict", "no message"));
    }

    #[test]
    fn any_error_body_gives_an_error_with_a_code_and_a_message() {
        use crate::arm::props::{bodies_around, property};
        use proptest::prelude::*;
        use proptest::test_runner::TestCaseError;
        let template = json!({"error": {"code": "Conflict", "message": "m", "target": "t",
            "details": [{"code": "D", "message": "dm"}, {"message": "x"}]}});
        let statuses = prop_oneof![Just(400u16), Just(404), Just(409), Just(429), Just(500), 0u16..1000];
        property("ARM error body decoding", 600, (statuses, bodies_around(template)), |(status, body)| {
            let err = ArmError::from_response(status, &body, None);
            let shown = err.to_string();
            if err.status != status || err.code.trim().is_empty() || err.message.trim().is_empty() {
                return Err(TestCaseError::fail(format!("an error without a code or message: {err:?}")));
            }
            if !shown.contains(&err.code) {
                return Err(TestCaseError::fail(format!("Display drops the code: {shown}")));
            }
            Ok(())
        });
    }
}
