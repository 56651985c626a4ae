//! Federated identity credentials (workload identity), verified as Entra verifies them: the
//! presented `client_assertion` is a JWT of an OpenID Connect issuer (a Kubernetes cluster's
//! ServiceAccount token issuer), matched by (issuer, subject, audience) against the application's
//! federated credentials, its RS256 signature checked against the issuer's JSON Web Key Set and
//! its lifetime against the clock.
//!
//! The key sets are loaded when the emulator starts ([`OidcIssuer`]): given inline, or fetched over
//! HTTPS from the issuer's JWKS URL (a kube-apiserver's `/openid/v1/jwks`, which by default only
//! authenticated callers may read: hence the optional bearer token).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Principal;
use super::reply::Reply;
use super::token::{CLOCK_SKEW_SECS, entra_error};

/// One federated identity credential of an application, as Entra's: a token whose `iss`, `sub`
/// and one of whose `aud` equal these is accepted as the application's `client_assertion`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FederatedCredential {
    /// The token issuer (for Kubernetes, the API server's `--service-account-issuer`).
    pub issuer: String,
    /// The subject, e.g. `system:serviceaccount:<namespace>:<name>`.
    pub subject: String,
    /// The audience; Azure's is `api://AzureADTokenExchange`.
    pub audience: String,
}

/// The audience Azure workload identity uses for its federated tokens.
pub const AZURE_TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// An OpenID Connect issuer whose tokens the emulator can verify, and where its keys are.
#[derive(Clone, Debug)]
pub struct OidcIssuer {
    /// The issuer, as the tokens' `iss` names it.
    pub issuer: String,
    /// Its signing keys.
    pub keys: IssuerKeys,
}

/// Where an issuer's JSON Web Key Set comes from; read once, when the emulator starts.
#[derive(Clone)]
pub enum IssuerKeys {
    /// The JWKS document itself (`{"keys":[{"kty":"RSA","kid":..,"n":..,"e":..}]}`).
    Jwks(String),
    /// Fetched with an HTTPS GET of `url` (`https://host:port/path`), trusting `ca_pem`, sending
    /// `bearer_token` when set (a kube-apiserver serves `/openid/v1/jwks` to ServiceAccounts, not
    /// to anonymous callers, unless bound otherwise).
    Fetch {
        /// The JWKS URL, e.g. `https://127.0.0.1:6443/openid/v1/jwks`.
        url: String,
        /// PEM of the CA that signed the server's certificate.
        ca_pem: String,
        /// Sent as `Authorization: Bearer`; redacted in `Debug`.
        bearer_token: Option<String>,
    },
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IssuerKeys::Jwks(jwks) => f.debug_tuple("Jwks").field(&jwks.len()).finish(),
            IssuerKeys::Fetch { url, bearer_token, .. } => f
                .debug_struct("Fetch")
                .field("url", url)
                .field("bearer_token", &bearer_token.as_ref().map(|_| "<redacted>"))
                .finish_non_exhaustive(),
        }
    }
}

/// Loading an issuer's keys failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot load the signing keys of OIDC issuer {issuer}: {why}")]
pub struct IssuerKeysError {
    /// The issuer.
    pub issuer: String,
    /// What went wrong (the JWKS fetch or its contents).
    pub why: String,
}

/// One RSA signing key of an issuer.
#[derive(Clone, Debug)]
pub(crate) struct RsaKey {
    kid: Option<String>,
    n: Vec<u8>,
    e: Vec<u8>,
}

/// The signing keys of every configured issuer, by issuer.
#[derive(Clone, Debug, Default)]
pub(crate) struct KeySets(HashMap<String, Vec<RsaKey>>);

impl KeySets {
    /// Reads (or fetches) the key set of each issuer.
    pub(crate) async fn load(issuers: &[OidcIssuer]) -> Result<KeySets, IssuerKeysError> {
        let mut out = HashMap::new();
        for issuer in issuers {
            let error = |why: String| IssuerKeysError { issuer: issuer.issuer.clone(), why };
            let text = match &issuer.keys {
                IssuerKeys::Jwks(text) => text.clone(),
                IssuerKeys::Fetch { url, ca_pem, bearer_token } => {
                    https_get(url, ca_pem, bearer_token.as_deref()).await.map_err(error)?
                }
            };
            out.insert(issuer.issuer.clone(), parse_jwks(&text).map_err(error)?);
        }
        Ok(KeySets(out))
    }
}

/// The RSA keys of a JWKS document (other key types are skipped).
fn parse_jwks(text: &str) -> Result<Vec<RsaKey>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("the JWKS is not JSON ({e})"))?;
    let keys = doc["keys"].as_array().ok_or("the JWKS has no keys array")?;
    let b64 = |v: &Value| v.as_str().and_then(|s| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok());
    let rsa: Vec<RsaKey> = keys
        .iter()
        .filter(|k| k["kty"] == "RSA")
        .filter_map(|k| Some(RsaKey { kid: k["kid"].as_str().map(str::to_owned), n: b64(&k["n"])?, e: b64(&k["e"])? }))
        .collect();
    if rsa.is_empty() {
        return Err("the JWKS holds no RSA key".into());
    }
    Ok(rsa)
}

/// A minimal HTTPS GET (HTTP/1.0: one response, no chunking), for the JWKS.
async fn https_get(url: &str, ca_pem: &str, bearer: Option<&str>) -> Result<String, String> {
    let rest = url.strip_prefix("https://").ok_or_else(|| format!("{url} is not an https URL"))?;
    let (authority, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    };
    let address = if authority.contains(':') { authority.to_owned() } else { format!("{authority}:443") };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("the CA is not PEM ({e})"))?;
        roots.add(cert).map_err(|e| format!("the CA is not usable ({e})"))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_owned()).map_err(|e| format!("{host}: {e}"))?;
    let tcp = tokio::net::TcpStream::connect(&address).await.map_err(|e| format!("connect {address}: {e}"))?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| format!("TLS with {address}: {e}"))?;
    let auth = bearer.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: application/jwk-set+json, application/json\r\n{auth}\r\n");
    tls.write_all(request.as_bytes()).await.map_err(|e| format!("GET {url}: {e}"))?;
    let mut response = Vec::new();
    // A TLS peer may close without close_notify; what was read is the answer then.
    if let Err(e) = tls.read_to_end(&mut response).await
        && response.is_empty()
    {
        return Err(format!("GET {url}: {e}"));
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("GET {url}: no HTTP response"))?;
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        return Err(format!("GET {url}: HTTP {status}: {}", body.chars().take(300).collect::<String>()));
    }
    Ok(body.to_owned())
}

/// Seconds since the epoch.
pub(crate) fn now_secs() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Checks a federated `client_assertion` of `principal` as Entra does, at time `now`; `Err` is
/// Entra's answer: AADSTS70021 when no federated credential matches the token's issuer, subject
/// and audience, AADSTS50013 when its signature does not verify with the issuer's keys,
/// AADSTS700024 when it has expired (or is not valid yet), AADSTS50027 when it is no JWT.
pub(crate) fn check(principal: &Principal, keys: &KeySets, jwt: &str, now: i64) -> Result<(), Reply> {
    let malformed = |why: &str| entra_error(400, "invalid_request", 50027, &format!("JWT token is invalid or malformed: {why}."));
    let mut parts = jwt.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(no_match(None));
    };
    let json_part = |b64: &str| -> Option<Value> { serde_json::from_slice(&URL_SAFE_NO_PAD.decode(b64).ok()?).ok() };
    let (Some(header), Some(claims), Ok(signature)) = (json_part(header_b64), json_part(claims_b64), URL_SAFE_NO_PAD.decode(signature_b64)) else {
        return Err(malformed("the header, claims or signature is not base64url JSON"));
    };
    let text = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let (issuer, subject) = (text("iss"), text("sub"));
    let audiences: Vec<String> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(all)) => all.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    // Entra compares issuer and subject exactly (case-sensitive), the audience among the token's.
    let matched = principal
        .federated_credentials
        .iter()
        .any(|f| f.issuer == issuer && f.subject == subject && audiences.contains(&f.audience));
    if !matched {
        return Err(no_match(Some((&issuer, &subject, &audiences.join(",")))));
    }
    let Some(issuer_keys) = keys.0.get(&issuer) else {
        return Err(entra_error(
            401,
            "invalid_client",
            50166,
            &format!("Request to External OIDC endpoint failed. No signing keys are known for issuer '{issuer}'."),
        ));
    };
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(signature_failed("The token's alg is not RS256."));
    }
    let kid = header.get("kid").and_then(Value::as_str);
    let candidates: Vec<&RsaKey> = issuer_keys.iter().filter(|k| kid.is_none() || k.kid.as_deref() == kid).collect();
    if candidates.is_empty() {
        return Err(signature_failed(&format!("The key was not found., Key id: '{}'", kid.unwrap_or_default())));
    }
    let signed = format!("{header_b64}.{claims_b64}");
    let verified = candidates.iter().any(|k| {
        RsaPublicKeyComponents { n: &k.n, e: &k.e }.verify(&RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &signature).is_ok()
    });
    if !verified {
        return Err(signature_failed("The provided signature value did not match the expected signature value."));
    }
    let time = |k: &str| claims.get(k).and_then(Value::as_i64);
    let Some(exp) = time("exp") else {
        return Err(malformed("exp is required"));
    };
    let nbf = time("nbf").or(time("iat")).unwrap_or(i64::MIN);
    if exp < now - CLOCK_SKEW_SECS || nbf > now + CLOCK_SKEW_SECS {
        return Err(entra_error(
            400,
            "invalid_client",
            700024,
            &format!("Client assertion is not within its valid time range. Current time: {now}, expiry time of assertion {exp}."),
        ));
    }
    Ok(())
}

/// AADSTS70021, with the assertion's issuer, subject and audience when it had them.
pub(crate) fn no_match(claims: Option<(&str, &str, &str)>) -> Reply {
    let detail = claims
        .map(|(i, s, a)| format!(" Assertion Issuer: '{i}'. Assertion Subject: '{s}'. Assertion Audience: '{a}'."))
        .unwrap_or_default();
    entra_error(400, "invalid_request", 70021, &format!("No matching federated identity record found for presented assertion.{detail}"))
}

fn signature_failed(reason: &str) -> Reply {
    entra_error(401, "invalid_client", 50013, &format!("Assertion failed signature validation. [Reason - {reason}]"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};

    /// A 2048-bit RSA key (PKCS#8 DER, base64), for tests only.
    const TEST_KEY: &[&str] = &[
        "MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQDxJU8RDJaJwIM+ZDdFDaf7NzuaqMVTj3hqrS3RyKqrGE5ax5ui",
        "nH1zQV2QoNLOrsbMbGWbimT9lwLSfJs24x0/Et+H8qkvLMrzYshYkHnmpvXOmlolAVRGPwV8IbhzQSki4iAl3wNH6D18rHDUdUb4",
        "dFdmbnuBBpQbGa5tyAHC2hVxk/9Y4FORykz7mBbROg3RTqNgqEfdwkJEILYgnuIAbTFdxjIx2HQQrovUaMNQrHuTS0aPV1qDVUa0",
        "BWsUI4KMkDjmCmW9q/xkLdMAWIFHPBoB1Z8p03fR5L+L/zvO5EOWfz6Fm4fOLYi3uhA4tc8EODsSpeEuznKBhoRGQCbpAgMBAAEC",
        "ggEAPQKod3LM33tCeVWXmjPzTR7TSLTsf9CrsamxDwOLEpCqulMIMGMRZkiiaIYX78zOZUgDiQ/Br1s2jpSSHJfnfV7ECTw+y720",
        "d1GFyMp83Pte82+f4P7uGHu3YomRhi91PesiIRLEXLwIWnOydD5bv16IAlVvj9xfOmAL/qB8uZQ/1KmH2eSj5LraOXRgE4UOj4rl",
        "25+xf2JfVI3vWUY7/c19xQsAiBONDS5IHlNkyLZAPaI6OLniodcu8q/ckciqWUgBB9Gkv4c2j/87hkQ8LJ2sMv2F0buYSDjNJvf+",
        "qrun/cYnrMMZSEzyWm5ds72j0xHbRZfgWTS+CeIktzQBJQKBgQD/eUM0rYp86EgAAInWKEAJgcWdWjKypJDxJSMI5+6h9pCAFXn7",
        "/IFBCr81Fp6DbfQz26p8acs7qKrqHy9wdEdOTpLdKUtPoKUeZy6qaT2tyGRQVGkwFW0RubgOeW1Sn32+QrfN22jH1m3SSN0vgHkM",
        "NWn7i9omcP/utuXyXf8c9wKBgQDxpH1fY9vi5lwDBXvBeOV7My53LBeKNsVKxtAKFgCvYvh5efBSwSh+R1ydLokn0GSNoOTlFs0V",
        "dLD9B3ndJAhrm8dBB6nJaHLdMpcDFJGYJh2DyeXl9XQAKqd5oiNmzdGY1gH+oYpOSBd9oDYZjODbcCbhVuqENVY5FhOZb7FDHwKB",
        "gBL462/HD4jVKzuszo+z74WFOKrF3wv7QrRV4LMxnjwy9mo8rhFzoBm3dZm4s07pZIBRaOjSZoBot0CpzjkYuY7sMOXxwiEIuhp2",
        "6TVImYcFYcXBbwpeHPp7A1s301GWfJ0bkVDdYXutxfwe4yY68UJh2RwQN8QxEiClPpBwQJjjAoGAegZtxWkBFlDr8B6pwybRA+jx",
        "sv6SGJrWAI/raNx5lhftkDKSuMeQMkzJKRrh6jgjPx4b2NAt2oLmCbDnylOy6Nxuv5kmFW5oaulsNwMBDwtYZj/jl7/ex2LC1fqZ",
        "1AVlrb+MnFBpLmTbb/Yiu75Xopi9GZgxr3fbxdIvLZGou1MCgYAb8cCnh0jrOLT2okH8AH75piuUSgWe8hcYt5XHDz6aua48qdQ6",
        "QgsZPi1KTGU4xu2vn9QjF1kBnagDifawG1ucdbJONgD/l97GCJoazelIURd+xbP+LehaUoguzO7klPNwYIPrdtue5mOBlfa/XYsY",
        "LdIYJM9vHN/wRFPMRSlnfQ==",
    ];

    const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
    const SUBJECT: &str = "system:serviceaccount:aml-system:aml-operator";

    fn key_pair() -> RsaKeyPair {
        let der = base64::engine::general_purpose::STANDARD.decode(TEST_KEY.concat()).unwrap();
        RsaKeyPair::from_pkcs8(&der).unwrap()
    }

    fn jwks(kid: &str) -> String {
        let public: RsaPublicKeyComponents<Vec<u8>> = key_pair().public().into();
        let (n, e) = (URL_SAFE_NO_PAD.encode(&public.n), URL_SAFE_NO_PAD.encode(&public.e));
        serde_json::json!({"keys": [{"use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256", "n": n, "e": e}]}).to_string()
    }

    fn sign(claims: Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(serde_json::json!({"alg": "RS256", "kid": "k1"}).to_string());
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{body}");
        let pair = key_pair();
        let mut signature = vec![0; pair.public().modulus_len()];
        pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signed.as_bytes(), &mut signature).unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// A ServiceAccount token as a kube-apiserver mints it (TokenRequest).
    fn token(sub: &str, aud: &str, exp: i64) -> Value {
        serde_json::json!({"aud": [aud], "exp": exp, "iat": exp - 3600, "nbf": exp - 3600, "iss": ISSUER, "sub": sub,
            "kubernetes.io": {"namespace": "aml-system", "serviceaccount": {"name": "aml-operator", "uid": "u"}}})
    }

    fn principal() -> Principal {
        Principal {
            federated_credentials: vec![FederatedCredential {
                issuer: ISSUER.into(),
                subject: SUBJECT.into(),
                audience: AZURE_TOKEN_EXCHANGE_AUDIENCE.into(),
            }],
            ..Principal::default()
        }
    }

    async fn keys(kid: &str) -> KeySets {
        KeySets::load(&[OidcIssuer { issuer: ISSUER.into(), keys: IssuerKeys::Jwks(jwks(kid)) }]).await.unwrap()
    }

    /// The AADSTS code and description of a refusal.
    fn refusal(reply: Reply) -> (u16, String) {
        let body = reply.body.unwrap();
        (reply.status, body["error_description"].as_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn a_token_of_the_issuer_for_the_credentials_subject_and_audience_is_accepted() {
        let now = now_secs();
        let jwt = sign(token(SUBJECT, AZURE_TOKEN_EXCHANGE_AUDIENCE, now + 3600));
        assert!(check(&principal(), &keys("k1").await, &jwt, now).is_ok());
    }

    #[tokio::test]
    async fn another_subject_audience_or_issuer_matches_no_federated_record() {
        let now = now_secs();
        let keys = keys("k1").await;
        for (sub, aud, iss) in [
            ("system:serviceaccount:aml-system:other", AZURE_TOKEN_EXCHANGE_AUDIENCE, ISSUER),
            (SUBJECT, "https://kubernetes.default.svc.cluster.local", ISSUER),
            (SUBJECT, AZURE_TOKEN_EXCHANGE_AUDIENCE, "https://issuer.example"),
        ] {
            let mut claims = token(sub, aud, now + 3600);
            claims["iss"] = iss.into();
            let (status, text) = refusal(check(&principal(), &keys, &sign(claims), now).unwrap_err());
            assert_eq!(status, 400);
            assert!(
                text.starts_with(&format!(
                    "AADSTS70021: No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{aud}'."
                )),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn a_bad_signature_or_an_unknown_key_fails_signature_validation() {
        let now = now_secs();
        let jwt = sign(token(SUBJECT, AZURE_TOKEN_EXCHANGE_AUDIENCE, now + 3600));
        // The claims changed after signing (another subject would then pass the record match).
        let (h, _, s) = (jwt.split('.').next().unwrap(), (), jwt.rsplit('.').next().unwrap());
        let mut claims = token(SUBJECT, AZURE_TOKEN_EXCHANGE_AUDIENCE, now + 7200);
        claims["kubernetes.io"]["namespace"] = "elsewhere".into();
        let forged = format!("{h}.{}.{s}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        let (status, text) = refusal(check(&principal(), &keys("k1").await, &forged, now).unwrap_err());
        assert_eq!(status, 401);
        assert!(text.starts_with("AADSTS50013: Assertion failed signature validation. [Reason - The provided signature"), "{text}");
        // Signed by a key the issuer does not publish (another kid).
        let (_, text) = refusal(check(&principal(), &keys("k2").await, &jwt, now).unwrap_err());
        assert!(text.starts_with("AADSTS50013: Assertion failed signature validation. [Reason - The key was not found."), "{text}");
        // No keys for the issuer at all.
        let (_, text) = refusal(check(&principal(), &KeySets::default(), &jwt, now).unwrap_err());
        assert!(text.starts_with("AADSTS50166"), "{text}");
    }

    #[tokio::test]
    async fn an_expired_token_is_refused() {
        let now = now_secs();
        let jwt = sign(token(SUBJECT, AZURE_TOKEN_EXCHANGE_AUDIENCE, now - CLOCK_SKEW_SECS - 1));
        let (_, text) = refusal(check(&principal(), &keys("k1").await, &jwt, now).unwrap_err());
        assert!(text.starts_with("AADSTS700024: Client assertion is not within its valid time range."), "{text}");
    }

    #[test]
    fn a_jwks_without_rsa_keys_is_an_error() {
        assert!(parse_jwks(r#"{"keys":[{"kty":"EC","crv":"P-256"}]}"#).is_err());
        assert!(parse_jwks("not json").is_err());
    }
}
