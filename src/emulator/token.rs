//! The Entra ID (v2.0) client-credentials token endpoint.

use std::time::{Duration, Instant, SystemTime};

use axum::http::HeaderMap;
use serde_json::json;

use super::Principal;
use super::reply::Reply;
use super::state::{IssuedToken, State};
use super::util::{entra_timestamp, guid, parse_form, random_token};

/// Lifetime of issued tokens, as Entra reports it.
pub(crate) const TOKEN_LIFETIME_SECS: u64 = 3599;

const ASSERTION_TYPE_JWT: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An Entra-style error: `{"error","error_description","error_codes",...}`. Never carries secrets.
fn entra_error(status: u16, error: &str, aadsts: u32, description: &str) -> Reply {
    let trace_id = guid();
    let correlation_id = guid();
    let timestamp = entra_timestamp(SystemTime::now());
    Reply::json(
        status,
        json!({
            "error": error,
            "error_description": format!(
                "AADSTS{aadsts}: {description} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}"
            ),
            "error_codes": [aadsts],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={aadsts}"),
        }),
    )
}

/// Handles `POST /{tenant}/oauth2/v2.0/token`.
///
/// Accepts `client_secret` (form field or HTTP Basic). To let workload-identity flows be tried
/// locally, a `client_assertion` (type jwt-bearer) equal to the principal's secret is accepted too.
pub(crate) fn handle(
    state: &mut State,
    principals: &[Principal],
    tenant: &str,
    method: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    if method != "POST" {
        return entra_error(
            405,
            "invalid_request",
            900561,
            "The endpoint only accepts POST requests.",
        );
    }
    let form = parse_form(&String::from_utf8_lossy(body));
    let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());

    let Some(grant_type) = field("grant_type") else {
        return entra_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    };
    if grant_type != "client_credentials" {
        return entra_error(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type. Only 'client_credentials' is supported by this emulator.",
        );
    }
    let basic = basic_credentials(headers);
    let Some(client_id) = field("client_id")
        .map(str::to_owned)
        .or_else(|| basic.as_ref().map(|b| b.0.clone()))
    else {
        return entra_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    let Some(scope) = field("scope") else {
        return entra_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        );
    };
    if !scope.split(' ').all(|s| s.ends_with("/.default")) {
        return entra_error(
            400,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
        );
    }
    if !principals
        .iter()
        .any(|p| p.tenant_id.eq_ignore_ascii_case(tenant))
    {
        return entra_error(
            400,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    let Some(principal) = principals.iter().find(|p| {
        p.tenant_id.eq_ignore_ascii_case(tenant) && p.client_id.eq_ignore_ascii_case(&client_id)
    }) else {
        return entra_error(
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."
            ),
        );
    };

    let presented = match (
        field("client_secret"),
        field("client_assertion"),
        basic.as_ref(),
    ) {
        (Some(secret), _, _) => Some(secret.to_owned()),
        (None, Some(assertion), _)
            if field("client_assertion_type") == Some(ASSERTION_TYPE_JWT) =>
        {
            Some(assertion.trim().to_owned())
        }
        (None, None, Some((_, secret))) => Some(secret.clone()),
        _ => None,
    };
    let Some(presented) = presented else {
        return entra_error(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    };
    if !constant_time_eq(presented.as_bytes(), principal.client_secret.as_bytes()) {
        return entra_error(
            401,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                principal.client_id
            ),
        );
    }

    let access_token = format!("emu.{}", random_token(32));
    state.tokens.insert(
        access_token.clone(),
        IssuedToken {
            tenant_id: principal.tenant_id.clone(),
            client_id: principal.client_id.clone(),
            expires: Instant::now() + Duration::from_secs(TOKEN_LIFETIME_SECS),
        },
    );
    Reply::json(
        200,
        json!({
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_SECS,
            "ext_expires_in": TOKEN_LIFETIME_SECS,
            "access_token": access_token,
        }),
    )
}

/// `Authorization: Basic base64(client_id:client_secret)`, decoded.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64_decode(encoded.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |s: &str| {
        parse_form(&format!("x={s}"))
            .remove("x")
            .unwrap_or_default()
    };
    Some((decode(id), decode(secret)))
}

fn base64_decode(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in input.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_basic_auth() {
        let mut headers = HeaderMap::new();
        // "client:se%3Acret" -> secret "se:cret"
        headers.insert(
            "authorization",
            "Basic Y2xpZW50OnNlJTNBY3JldA==".parse().unwrap(),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("client".into(), "se:cret".into()))
        );
    }
}
