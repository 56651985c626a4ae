//! The Entra ID (v2.0) client-credentials token endpoint.

use std::time::{Duration, Instant, SystemTime};

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use ring::digest;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, SignatureVerificationAlgorithm};
use serde_json::json;

use super::Principal;
use super::federation::{self, KeySets};
use super::reply::Reply;
use super::state::{IssuedToken, State};
use super::util::{entra_timestamp, guid, parse_form, random_token};

/// Lifetime of issued tokens, as Entra reports it.
pub(crate) const TOKEN_LIFETIME_SECS: u64 = 3599;

const ASSERTION_TYPE_JWT: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An Entra-style error: `{"error","error_description","error_codes",...}`. Never carries secrets.
pub(crate) fn entra_error(status: u16, error: &str, aadsts: u32, description: &str) -> Reply {
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

/// The Entra documents a client reads to find the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Discovery {
    /// `/{tenant}/v2.0/.well-known/openid-configuration` (or the v1 `/{tenant}/.well-known/...`).
    OpenIdConfiguration { tenant: String, v2: bool },
    /// `/common/discovery/instance` (MSAL's instance discovery; also under `/{tenant}/`).
    Instance,
    /// `/{tenant}/discovery/v2.0/keys` (the signing keys the OpenID configuration points at).
    Keys,
}

/// Answers Entra's discovery documents for this emulator at `base` (`https://127.0.0.1:PORT`):
/// the tenant's OpenID configuration and MSAL's instance discovery, whose shapes follow
/// login.microsoftonline.com, with every endpoint on the emulator. MSAL-based clients
/// (azure-identity for Python, .NET, Java and Go; the Azure CLI) read them before the token request.
pub(crate) fn discovery(base: &str, document: &Discovery, query: &str) -> Reply {
    match document {
        Discovery::OpenIdConfiguration { tenant, v2 } => {
            let (version, v) = if *v2 { ("v2.0", "/v2.0") } else { ("", "") };
            let oauth = if *v2 { "oauth2/v2.0" } else { "oauth2" };
            // Entra names the tenant in the issuer; the multi-tenant aliases keep a placeholder.
            let issuer_tenant = match tenant.to_ascii_lowercase().as_str() {
                "common" | "organizations" | "consumers" => "{tenantid}".to_string(),
                _ => tenant.clone(),
            };
            let host = base.trim_start_matches("https://");
            Reply::json(
                200,
                json!({
                    "token_endpoint": format!("{base}/{tenant}/{oauth}/token"),
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                    "jwks_uri": format!("{base}/{tenant}/discovery/{version}{}keys", if *v2 { "/" } else { "" }),
                    "response_modes_supported": ["query", "fragment", "form_post"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                    "scopes_supported": ["openid", "profile", "email", "offline_access"],
                    "issuer": format!("{base}/{issuer_tenant}{v}"),
                    "request_uri_parameter_supported": false,
                    "userinfo_endpoint": format!("{base}/{tenant}/openid/userinfo"),
                    "authorization_endpoint": format!("{base}/{tenant}/{oauth}/authorize"),
                    "device_authorization_endpoint": format!("{base}/{tenant}/{oauth}/devicecode"),
                    "http_logout_supported": true,
                    "frontchannel_logout_supported": true,
                    "end_session_endpoint": format!("{base}/{tenant}/{oauth}/logout"),
                    "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce", "tid", "ver", "oid"],
                    "kerberos_endpoint": format!("{base}/{tenant}/kerberos"),
                    "tenant_region_scope": "NA",
                    "cloud_instance_name": host,
                    "cloud_graph_host_name": host,
                    "msgraph_host": host,
                }),
            )
        }
        Discovery::Instance => {
            // MSAL sends the authorization endpoint it wants validated; answer for the tenant in it.
            let form = parse_form(query);
            let tenant = form
                .get("authorization_endpoint")
                .and_then(|e| e.trim_start_matches(base).split('/').find(|s| !s.is_empty()).map(str::to_string))
                .unwrap_or_else(|| "common".to_string());
            let host = base.trim_start_matches("https://");
            Reply::json(
                200,
                json!({
                    "tenant_discovery_endpoint": format!("{base}/{tenant}/v2.0/.well-known/openid-configuration"),
                    "api-version": "1.1",
                    "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
                }),
            )
        }
        // The emulator signs no id tokens: a valid, empty key set.
        Discovery::Keys => Reply::json(200, json!({ "keys": [] })),
    }
}

/// Handles `POST /{tenant}/oauth2/v2.0/token`.
///
/// Accepts `client_secret` (form field or HTTP Basic), or a `client_assertion` (type jwt-bearer)
/// that is a federated token (workload identity: an OIDC issuer's JWT matching one of the
/// principal's federated credentials, verified against the issuer's keys, see `federation`; or,
/// for older tests, one of its verbatim `federated_tokens`), or a certificate
/// assertion: a JWT signed (RS256 or PS256) by the key of a certificate registered for the
/// principal and named by its `x5t` (SHA-1) or `x5t#S256` thumbprint, with `aud` this token
/// endpoint, `iss` = `sub` = the client id and `nbf`..`exp` around now. For quick local trials an
/// assertion equal to the principal's secret is accepted too.
pub(crate) fn handle(
    state: &mut State,
    principals: &[Principal],
    keys: &KeySets,
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

    let assertion = field("client_assertion")
        .filter(|_| field("client_assertion_type") == Some(ASSERTION_TYPE_JWT))
        .map(str::trim);
    let presented = match (field("client_secret"), assertion, basic.as_ref()) {
        (Some(secret), _, _) => Presented::Secret(secret.to_owned()),
        (None, Some(assertion), _) => Presented::Assertion(assertion.to_owned()),
        (None, None, Some((_, secret))) => Presented::Secret(secret.clone()),
        (None, None, None) => {
            return entra_error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            );
        }
    };
    match presented {
        Presented::Secret(secret) => {
            if !constant_time_eq(secret.as_bytes(), principal.client_secret.as_bytes()) {
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
        }
        Presented::Assertion(assertion) => {
            // The principal's secret as an assertion stays accepted (quick local trials).
            let known = std::iter::once(&principal.client_secret)
                .chain(&principal.federated_tokens)
                .any(|t| constant_time_eq(assertion.as_bytes(), t.trim().as_bytes()));
            if !known && is_federated_token(&assertion) {
                if let Err(reply) =
                    federation::check(principal, keys, &assertion, federation::now_secs())
                {
                    return reply;
                }
            } else if !known {
                let host = headers.get("host").and_then(|h| h.to_str().ok());
                if let Err(reply) = check_certificate_assertion(principal, &assertion, tenant, host)
                {
                    return reply;
                }
            }
        }
    }

    let lifetime = principal.token_lifetime_secs.unwrap_or(TOKEN_LIFETIME_SECS);
    let access_token = format!("emu.{}", random_token(32));
    state.tokens.insert(
        access_token.clone(),
        IssuedToken {
            tenant_id: principal.tenant_id.clone(),
            client_id: principal.client_id.clone(),
            expires: Instant::now() + Duration::from_secs(lifetime),
        },
    );
    Reply::json(
        200,
        json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        }),
    )
}

/// A JWT without a certificate thumbprint (`x5t`, `x5t#S256`) in its header: a federated token
/// of an OIDC issuer rather than a certificate assertion.
fn is_federated_token(jwt: &str) -> bool {
    let header = jwt
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok());
    header.is_some_and(|h| h.get("x5t").is_none() && h.get("x5t#S256").is_none())
}

/// What the client proved its identity with.
enum Presented {
    Secret(String),
    Assertion(String),
}

/// Clock skew tolerated on `nbf` and `exp` (Entra allows a few minutes).
pub(crate) const CLOCK_SKEW_SECS: i64 = 300;

/// Checks a certificate client assertion; `Err` is the Entra error to answer.
fn check_certificate_assertion(
    principal: &Principal,
    jwt: &str,
    tenant: &str,
    host: Option<&str>,
) -> Result<(), Reply> {
    let malformed = |why: &str| {
        entra_error(
            400,
            "invalid_request",
            50027,
            &format!("JWT token is invalid or malformed: {why}."),
        )
    };
    let mut parts = jwt.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        // Not a JWT: as Entra, a federated credential that matches nothing.
        return Err(entra_error(
            401,
            "invalid_client",
            70021,
            "No matching federated identity record found for presented assertion.",
        ));
    };
    let json_part = |b64: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(b64).ok()?).ok()
    };
    let (Some(header), Some(claims), Ok(signature)) = (
        json_part(header_b64),
        json_part(claims_b64),
        URL_SAFE_NO_PAD.decode(signature_b64),
    ) else {
        return Err(malformed(
            "the header, claims or signature is not base64url JSON",
        ));
    };
    let sha1 = header.get("x5t").and_then(serde_json::Value::as_str);
    let sha256 = header.get("x5t#S256").and_then(serde_json::Value::as_str);
    if sha1.is_none() && sha256.is_none() {
        return Err(entra_error(
            401,
            "invalid_client",
            70021,
            "No matching federated identity record found for presented assertion.",
        ));
    }
    // The certificate's key is an rsaEncryption key; PS256 signs with it under PSS.
    let algorithm: &dyn SignatureVerificationAlgorithm =
        match header.get("alg").and_then(serde_json::Value::as_str) {
            Some("RS256") => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
            Some("PS256") => webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
            _ => return Err(malformed("the alg header must be RS256 or PS256")),
        };
    let thumbprint = sha256.or(sha1).unwrap_or_default().to_owned();
    let certificate = principal
        .certificates
        .iter()
        .filter_map(|pem| CertificateDer::pem_slice_iter(pem.as_bytes()).next()?.ok())
        .find(|der| {
            let hash = |alg| URL_SAFE_NO_PAD.encode(digest::digest(alg, der.as_ref()));
            sha1 == Some(hash(&digest::SHA1_FOR_LEGACY_USE_ONLY).as_str())
                || sha256 == Some(hash(&digest::SHA256).as_str())
        });
    let Some(certificate) = certificate else {
        return Err(entra_error(
            401,
            "invalid_client",
            700027,
            &format!(
                "Client assertion failed signature validation. [Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{}'.]",
                principal.client_id
            ),
        ));
    };
    let signed = format!("{header_b64}.{claims_b64}");
    let verified = webpki::EndEntityCert::try_from(&certificate).is_ok_and(|cert| {
        cert.verify_signature(algorithm, signed.as_bytes(), &signature)
            .is_ok()
    });
    if !verified {
        return Err(entra_error(
            401,
            "invalid_client",
            700027,
            &format!(
                "Client assertion contains an invalid signature. [Reason - The provided signature value did not match the expected signature value., Thumbprint of key used by client: '{thumbprint}']"
            ),
        ));
    }

    let text = |k: &str| {
        claims
            .get(k)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
    };
    let audience = text("aud");
    let audience_ok = match host {
        Some(host) => {
            audience.eq_ignore_ascii_case(&format!("https://{host}/{tenant}/oauth2/v2.0/token"))
        }
        None => audience.to_ascii_lowercase().ends_with(&format!(
            "/{}/oauth2/v2.0/token",
            tenant.to_ascii_lowercase()
        )),
    };
    if !audience_ok {
        return Err(malformed(&format!(
            "the audience '{audience}' is not this token endpoint"
        )));
    }
    if !text("iss").eq_ignore_ascii_case(&principal.client_id)
        || !text("sub").eq_ignore_ascii_case(&principal.client_id)
    {
        return Err(malformed("iss and sub must both be the client id"));
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let time = |k: &str| claims.get(k).and_then(serde_json::Value::as_i64);
    let (Some(nbf), Some(exp)) = (time("nbf"), time("exp")) else {
        return Err(malformed("nbf and exp are required"));
    };
    if nbf > now + CLOCK_SKEW_SECS || exp < now - CLOCK_SKEW_SECS || exp < nbf {
        return Err(entra_error(
            401,
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range.",
        ));
    }
    Ok(())
}

/// `Authorization: Basic base64(client_id:client_secret)`, decoded.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    // Standard base64; padding optional, as clients differ.
    let decoded = STANDARD_NO_PAD
        .decode(encoded.trim().trim_end_matches('='))
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |s: &str| {
        parse_form(&format!("x={s}"))
            .remove("x")
            .unwrap_or_default()
    };
    Some((decode(id), decode(secret)))
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
