//! Service principal credentials against the emulator: client secret rotation, client
//! certificates (RS256 assertions the emulator verifies with the registered certificate) and
//! workload identity (the federated token file, re-read at every token request).

use crate::support;

use aml_operator::arm::{ArmClient, ClientCredential, CloudConfig, Error, ErrorClass, Secret, ServicePrincipal};
use aml_operator::crd::AmlWorkspace;
use aml_operator::emulator::{DEFAULT_TENANT_ID, Emulator, EmulatorConfig, Principal};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kube::api::ObjectMeta;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use serde_json::json;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};
use crate::support::{NS, SUBSCRIPTION, World};

const API: &str = "2024-10-01";
const WS: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws1";
const CERT_CLIENT: &str = "00000000-0000-0000-0000-0000000000c1";
const WORKLOAD_CLIENT: &str = "00000000-0000-0000-0000-0000000000c2";

// Throwaway RSA-2048 keys generated for these tests only (not secrets). KEY_B_PKCS1 is KEY_B in
// the traditional `RSA PRIVATE KEY` form.
const KEY_A: &str = concat!(
    "-----BEGIN PRIVATE KEY-----\n",
    "MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC4p8qiUVawX475\n",
    "eCQtsPMk7/MvSa0yTMmcjKaxQ8jrUVYhgMaygWryL79RTysvG74y/CXAyCrpeyCN\n",
    "w0rmScabKHSLhHdIeHHiudz+z+msFDFzMjD46AFZgboO7gwp6lBJ0j982Snq2Zj+\n",
    "AjG2zYqL9Xb51AOM6QQNpkCQxZRlTryuo5/15oCxNe8xlP7GZPUcCb3j9XXXlnJx\n",
    "xdYgqubP/4AYKqSvu5/mAKS4mlfb4zujmp6i3+IO2ltLqIr1MoJud4moIZw2rnVp\n",
    "xP+XbSTasHjLjczGuX1cN1oEqHKb6CIk0xuHzNeJrvsZbyrtV8T8IDXJIxiqumcN\n",
    "u2axalzLAgMBAAECggEACQg+vip9CLWJOHoASF0zwiZxM7/xK9kGXOpNq7Vlb4qT\n",
    "9vbl6+IECYKnuLdxpPqWFsevT7sQIPQ33GylY5b6PalV7LkhszbJA05qGUCxl7be\n",
    "ewRafDevpowqPgQLg5qwK1w7D2/5P+voMuHdQql9JxQY/2a3zGhdcrl4xlwTwny+\n",
    "Zx4sYIdSWFPdcve0Nh3KYDuNvtcpFAgVcFuXajWECBj0umDys0EPzvwDVN1tlJXJ\n",
    "WhgAKrAADrxJ03pJMKEaIei19uhMdOZ+t25cOopdhDRsdI0DAZguvVrUcBsPH6Si\n",
    "B3od3pN36jlwFbPgaiq7cfunbk+TvjY+qr3IXOj7wQKBgQDyuV3VGzCxIzsUE74r\n",
    "AzAbPtI5NsA58Nf614a4lbvhpVC74HBGcD6M/L9REVyvc8ocdHVF0mYkc4wEm/g+\n",
    "pyYrUCPJT4t6SSimuSxTPSkQgdLiR4v7UMmRPWobytb2qbAMKwhddVZxxwjtYlyO\n",
    "01aLKrnCcQkqrugbAsaIml2FIQKBgQDCwVhcJBIwzBEFbaiuZy6+Ek1Eptp3x6qE\n",
    "qgC8xSEm84BbH6nHI7CvIzGK86h5Gklchm4GKLS5J9sqEGNyiYvQSifJNtan41TO\n",
    "B74Z0e0wVPvhqiRn3aiOKejq1P9AXmuYHB6XyolCFo1F0WA5Es5HyhJoAczVzaoI\n",
    "B/BwvCS4awKBgQDmEpD/1GMmNRfl4wTqLn5mBPkt5Fj3UvTWv37i7oOF0rahL5Ad\n",
    "JH4WE+mhBU0OvjnBGR6kTVgmiyQYpmL7uGK0waT6SB0Uj84povKCAEIxdG2ZsWnd\n",
    "kWlO86DlsTJr4tKN5ihqtjN3a8tpgEft1iN9jMVBqvWecOZv3ASmLXQiIQKBgQC2\n",
    "4WI82+5s/iN5qni8lM3y1DLUpa3+znLUMuOQX7h64CuG5hvCkUQnoe+y4I0yczmy\n",
    "ddW5WN4kBEYsoMkR1BGDXS8xJpq5eqK2+dRMYLHPMe55ARFAq4fNP5OleK/cXQ3B\n",
    "/53GwfzUH2M3zZ4C2iL0jM9t9UrI9mCVPAdPhY0h0wKBgAza1GRY97DYvcH6fCYz\n",
    "G9KBGB1BL6JWQmqTOueNHecHpYx1znio1GgkaDUmjcwqrL8OyFzyPWiI5dhoTHCO\n",
    "FmiKLQs5lkR9v5O4y9JuwmmNKn3QvfN709Ljwq7CZF6mc/n8XPjV4kHyTgGZrWzF\n",
    "P8gIiKHvAMkUtX5CnjzpF7kB\n",
    "-----END PRIVATE KEY-----\n",
);
const KEY_B: &str = concat!(
    "-----BEGIN PRIVATE KEY-----\n",
    "MIIEvwIBADANBgkqhkiG9w0BAQEFAASCBKkwggSlAgEAAoIBAQDm4iXOCKYJWLtF\n",
    "RGWLLFXnH+MUSVQcAm/k5DV5mZj3bM1due9QwzQfcohT9BLAT51+tZ4EpZhlgHrZ\n",
    "pwasLstq3rHg6rvLdqixhcPfXpZ/ozYsnqU23JLSDwV9wpUNp6V13tvFTxrDj9Xq\n",
    "TnoDtOBGhVAYQIwBevmbyjPpStI3DQdBEU/0RwGTGME5C4biv4q4sf2Sdy0Vnj2q\n",
    "nHfKeCK0Zk3h+BCyLGq/iBi5C30MlNqQqR0f+lp3+HqLSZLAQan7ObhPMfERLF32\n",
    "hun6jsxqW+7MaG8AaUMtIVibzSwMhFil/vz5XudVvL1J+7MJrMj3Niy5r6mhRtwL\n",
    "HXqYchElAgMBAAECggEABaJl3cikP1IlBSRi01Sk/AZGhQuNET9ApSCp6r/EKzWX\n",
    "2r5biBMGG0ZblquRfD6fz08gqL20dwr9nyt4+YwNdsbcfGqouTxkvYBQLrag4ZiF\n",
    "YpgJ3B7h47JuJeAxFwDiWXqzePXckgKD6+XiYGNySFufKsMDJ6jCnU9VQ6TfIGzA\n",
    "bldnox3/muKnwARzRQyy5w2BbBw1XjVj+ClyjWvm6o7IOV4APkMcgJ9K9YyrZNtM\n",
    "xGqr42RcoaQ5aZ9hOZVEYl3R3CWPXd3vmEW/ksezF0HfdLDCRKrYOJaTXYmay/RS\n",
    "yzqKbJMlG9ztc+cM198fONwLT1GbbbkmYyU9+6yBeQKBgQD6BLnWW6+jOcUI3uNw\n",
    "Od16rzvAndJht1AR1ewzW9pOuwkToQBiEglfeqtqStFDBopqZxH/JAnJNs4nWE44\n",
    "GdaZZN7Dg/xKtXgGd/aq9PUIwpCBGbZlDr0n/wDyIea+VP4TWSpOYePIJNOtPmC5\n",
    "p6LHa14hMIkgIByC9wiyBAwp2wKBgQDsaDnrX48klV0dnr1igTEJWpqM8ZuzZflO\n",
    "sLapj9ZwBNSebn9Egzb7u1gbP3DRhcUHhjLd1zDpE8horC+BxAFRvWEApOLrffay\n",
    "Dwx7jJmSTvajmotc1/19w+2c/Mk+Mb4snWXCDEq5wsdYQzpjTmjpHMS0ByLlYiBn\n",
    "+ICYMxsg/wKBgQDrkUpb+1VYsNTCT+fx1MOmlbbx/IG+Cg9KTspXdcMSjU23Deqj\n",
    "fKUSLi2WX9odkesW5/hf8l+6E4ZYMe65EzdMnmr5wsESzzrAtYVXfKfnUhL/YO+m\n",
    "9iUpqy4D9gdH7CLcrhWbdsY8zN4ZDH3sT1OjG7m8AdQhzb+vcfziZcfkIwKBgQC0\n",
    "croDF2XDnt78hPY6AjLT2PyvKJyYSvYJQomq08fyqT1B0UYDncSSUWXnJn2O8HR8\n",
    "Ucrx2hfTUO5gN03r1xjKs6sfOrya1ANB1orIo4F1VCCesJA/xf4PyUXN1oYlmwJ2\n",
    "O444l/lR4YMXs/kVY/xgMz1RzUCtpkDmG6DMi/XhMQKBgQDKbRWaragd6MTcw+t8\n",
    "XLFI5aMuGl4HxTOwB52JqHznT5ckXjWDLD7K1s33oTnHkd25CjnJmlegMB2Fd2jl\n",
    "PnNuDHNcmGeu25SqR1/rPxDk9P6triJM5peWVdhNlPBZbLa9f/TqWUnyNxBoPyOb\n",
    "tfxeOlXV9Y9BVClIcu30UD46GQ==\n",
    "-----END PRIVATE KEY-----\n",
);
const KEY_B_PKCS1: &str = concat!(
    "-----BEGIN RSA PRIVATE KEY-----\n",
    "MIIEpQIBAAKCAQEA5uIlzgimCVi7RURliyxV5x/jFElUHAJv5OQ1eZmY92zNXbnv\n",
    "UMM0H3KIU/QSwE+dfrWeBKWYZYB62acGrC7Lat6x4Oq7y3aosYXD316Wf6M2LJ6l\n",
    "NtyS0g8FfcKVDaeldd7bxU8aw4/V6k56A7TgRoVQGECMAXr5m8oz6UrSNw0HQRFP\n",
    "9EcBkxjBOQuG4r+KuLH9knctFZ49qpx3yngitGZN4fgQsixqv4gYuQt9DJTakKkd\n",
    "H/pad/h6i0mSwEGp+zm4TzHxESxd9obp+o7MalvuzGhvAGlDLSFYm80sDIRYpf78\n",
    "+V7nVby9SfuzCazI9zYsua+poUbcCx16mHIRJQIDAQABAoIBAAWiZd3IpD9SJQUk\n",
    "YtNUpPwGRoULjRE/QKUgqeq/xCs1l9q+W4gTBhtGW5arkXw+n89PIKi9tHcK/Z8r\n",
    "ePmMDXbG3HxqqLk8ZL2AUC62oOGYhWKYCdwe4eOybiXgMRcA4ll6s3j13JICg+vl\n",
    "4mBjckhbnyrDAyeowp1PVUOk3yBswG5XZ6Md/5rip8AEc0UMsucNgWwcNV41Y/gp\n",
    "co1r5uqOyDleAD5DHICfSvWMq2TbTMRqq+NkXKGkOWmfYTmVRGJd0dwlj13d75hF\n",
    "v5LHsxdB33SwwkSq2DiWk12Jmsv0Uss6imyTJRvc7XPnDNffHzjcC09Rm225JmMl\n",
    "PfusgXkCgYEA+gS51luvoznFCN7jcDndeq87wJ3SYbdQEdXsM1vaTrsJE6EAYhIJ\n",
    "X3qrakrRQwaKamcR/yQJyTbOJ1hOOBnWmWTew4P8SrV4Bnf2qvT1CMKQgRm2ZQ69\n",
    "J/8A8iHmvlT+E1kqTmHjyCTTrT5guaeix2teITCJICAcgvcIsgQMKdsCgYEA7Gg5\n",
    "61+PJJVdHZ69YoExCVqajPGbs2X5TrC2qY/WcATUnm5/RIM2+7tYGz9w0YXFB4Yy\n",
    "3dcw6RPIaKwvgcQBUb1hAKTi6332sg8Me4yZkk72o5qLXNf9fcPtnPzJPjG+LJ1l\n",
    "wgxKucLHWEM6Y05o6RzEtAci5WIgZ/iAmDMbIP8CgYEA65FKW/tVWLDUwk/n8dTD\n",
    "ppW28fyBvgoPSk7KV3XDEo1Ntw3qo3ylEi4tll/aHZHrFuf4X/JfuhOGWDHuuRM3\n",
    "TJ5q+cLBEs86wLWFV3yn51IS/2DvpvYlKasuA/YHR+wi3K4Vm3bGPMzeGQx97E9T\n",
    "oxu5vAHUIc2/r3H84mXH5CMCgYEAtHK6Axdlw57e/IT2OgIy09j8ryicmEr2CUKJ\n",
    "qtPH8qk9QdFGA53EklFl5yZ9jvB0fFHK8doX01DuYDdN69cYyrOrHzq8mtQDQdaK\n",
    "yKOBdVQgnrCQP8X+D8lFzdaGJZsCdjuOOJf5UeGDF7P5FWP8YDM9Uc1AraZA5hug\n",
    "zIv14TECgYEAym0Vmq2oHejE3MPrfFyxSOWjLhpeB8UzsAediah850+XJF41gyw+\n",
    "ytbN96E5x5HduQo5yZpXoDAdhXdo5T5zbgxzXJhnrtuUqkdf6z8Q5PT+ra4iTOaX\n",
    "llXYTZTwWWy2vX/06llJ8jcQaD8jm7X8XjpV1fWPQVQpSHLt9FA+Ohk=\n",
    "-----END RSA PRIVATE KEY-----\n",
);

/// A self-signed certificate (PEM) for a PKCS#8 key.
fn certificate(key_pem: &str) -> String {
    let key = rcgen::KeyPair::from_pem(key_pem).expect("test key parses");
    let params = rcgen::CertificateParams::new(vec!["aml-operator-test".to_string()]).expect("params");
    params.self_signed(&key).expect("certificate signs").pem()
}

/// Lines of base64 in a PEM (what must never show up in an error).
fn pem_body_lines(pem: &str) -> Vec<&str> {
    pem.lines().filter(|l| !l.starts_with("-----") && l.len() > 20).collect()
}

struct Setup {
    emu: Emulator,
    arm: ArmClient,
    cert_a: String,
    cert_b: String,
}

/// An emulator with the default (secret) principal, a certificate principal with `cert_a` and
/// `cert_b` registered, and a workload-identity principal accepting two federated tokens whose
/// tokens live 60 s (so `azure_identity` asks for a new token at every request).
async fn setup() -> Setup {
    let cert_a = certificate(KEY_A);
    let cert_b = certificate(KEY_B);
    let config = EmulatorConfig {
        principals: vec![
            Principal::default(),
            Principal {
                client_id: CERT_CLIENT.into(),
                client_secret: "unused-secret-of-the-certificate-app".into(),
                certificates: vec![cert_a.clone(), cert_b.clone()],
                ..Principal::default()
            },
            Principal {
                client_id: WORKLOAD_CLIENT.into(),
                client_secret: "unused-secret-of-the-workload-app".into(),
                federated_tokens: vec!["federated-token-1".into(), "federated-token-2".into()],
                token_lifetime_secs: Some(60),
                ..Principal::default()
            },
        ],
        ..support::emulator_config()
    };
    let ca_file = config.ca_file.clone().unwrap();
    let emu = Emulator::start(config).await.unwrap();
    let arm = ArmClient::new(&CloudConfig {
        arm_endpoint: emu.arm_endpoint(),
        authority_host: emu.authority_host(),
        ca_file: Some(ca_file),
        ..CloudConfig::default()
    })
    .unwrap();
    Setup { emu, arm, cert_a, cert_b }
}

fn principal(client_id: &str, credential: ClientCredential) -> ServicePrincipal {
    ServicePrincipal {
        tenant_id: DEFAULT_TENANT_ID.into(),
        client_id: client_id.into(),
        credential,
        subscription_id: None,
    }
}

fn with_certificate(pem: String) -> ServicePrincipal {
    principal(CERT_CLIENT, ClientCredential::Certificate { pem: Secret::new(pem) })
}

fn with_token_file(path: PathBuf) -> ServicePrincipal {
    principal(WORKLOAD_CLIENT, ClientCredential::WorkloadIdentity { token_file: path })
}

/// Display and Debug of an error, for leak checks.
fn shown(err: &Error) -> String {
    format!("{err} {err:?}")
}

fn token_code(err: &Error) -> Option<String> {
    match err {
        Error::Token { code, .. } => code.clone(),
        _ => None,
    }
}

#[tokio::test]
async fn a_client_certificate_gets_a_token_that_arm_accepts() {
    let s = setup().await;
    let sp = with_certificate(format!("{}\n{KEY_A}\n", s.cert_a));
    assert!(s.arm.get(&sp, WS, API).await.unwrap().is_none());
    assert!(s.arm.get(&sp, WS, API).await.unwrap().is_none());
    assert_eq!(s.emu.token_requests(), 1, "the token is cached");
    assert_eq!(s.arm.stats().credentials_created, 1);
    assert!(!format!("{sp:?}").contains(pem_body_lines(KEY_A)[0]), "Debug redacts the PEM");
}

#[tokio::test]
async fn a_pkcs1_key_with_the_chain_in_any_order_works() {
    let s = setup().await;
    // Another certificate first: the one matching the key is the one used.
    let sp = with_certificate(format!("{}{KEY_B_PKCS1}\n{}", s.cert_a, s.cert_b));
    assert!(s.arm.get(&sp, WS, API).await.unwrap().is_none());
    assert_eq!(s.emu.token_requests(), 1);
}

#[tokio::test]
async fn an_unregistered_certificate_is_refused_by_entra_without_key_material() {
    let s = setup().await;
    // KEY_B with a certificate of its own that the app does not know.
    let params = rcgen::CertificateParams::new(vec!["not-registered".to_string()]).unwrap();
    let other = params.self_signed(&rcgen::KeyPair::from_pem(KEY_B).unwrap()).unwrap().pem();
    let sp = with_certificate(format!("{other}{KEY_B}"));
    let err = s.arm.get(&sp, WS, API).await.unwrap_err();
    assert_eq!(token_code(&err).as_deref(), Some("AADSTS700027"), "{err}");
    assert_eq!(err.class(), ErrorClass::NeedsPerson);
    assert_eq!(err.reason(), "AuthenticationFailed");
    let text = shown(&err);
    assert!(text.contains("clientCertificate"), "{text}");
    for line in pem_body_lines(KEY_B).into_iter().chain(pem_body_lines(&other)) {
        assert!(!text.contains(line), "PEM leaked: {text}");
    }
    assert!(s.emu.requests().is_empty(), "no ARM call without a token");
}

#[tokio::test]
async fn the_emulator_checks_the_signature_against_the_registered_certificate() {
    let s = setup().await;
    let cert = CertificateDer::from_pem_slice(s.cert_a.as_bytes()).unwrap();
    let x5t = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.as_ref()));
    let audience = format!("{}{DEFAULT_TENANT_ID}/oauth2/v2.0/token", s.emu.authority_host());
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let signed = |alg: &str, padding: &'static dyn ring::signature::RsaEncoding, key_pem: &str, aud: &str, exp: u64| {
        let header = json!({"alg": alg, "typ": "JWT", "x5t": x5t});
        let claims = json!({"aud": aud, "iss": CERT_CLIENT, "sub": CERT_CLIENT, "jti": "j1", "nbf": now - 60, "exp": exp});
        let signing = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let der = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
        let mut sig = vec![0; key.public().modulus_len()];
        key.sign(padding, &ring::rand::SystemRandom::new(), signing.as_bytes(), &mut sig).unwrap();
        format!("{signing}.{}", URL_SAFE_NO_PAD.encode(sig))
    };
    let assertion = |key_pem: &str, aud: &str, exp: u64| signed("RS256", &RSA_PKCS1_SHA256, key_pem, aud, exp);
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(s.emu.ca_pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    let ask = |jwt: String| {
        let http = http.clone();
        let url = audience.clone();
        async move {
            let form = [
                ("grant_type", "client_credentials"),
                ("client_id", CERT_CLIENT),
                ("scope", "https://management.azure.com/.default"),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", jwt.as_str()),
            ];
            let body = form
                .iter()
                .map(|(k, v)| format!("{k}={}", url_encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            let resp = http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, body) = ask(assertion(KEY_A, &audience, now + 600)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");

    // The x5t of certificate A, signed by key B: a forged signature.
    let (status, body) = ask(assertion(KEY_B, &audience, now + 600)).await;
    assert_eq!((status, body["error_codes"].clone()), (401, json!([700027])), "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("invalid signature"), "{body}");

    let (status, body) = ask(assertion(KEY_A, "https://login.microsoftonline.com/x/oauth2/v2.0/token", now + 600)).await;
    assert_eq!((status, body["error_codes"].clone()), (400, json!([50027])), "{body}");

    let (status, body) = ask(assertion(KEY_A, &audience, now - 3600)).await;
    assert_eq!((status, body["error_codes"].clone()), (401, json!([700024])), "{body}");

    // PS256 (RSA-PSS with the certificate's key), as MSAL may sign; the header's alg decides.
    let (status, body) = ask(signed("PS256", &ring::signature::RSA_PSS_SHA256, KEY_A, &audience, now + 600)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = ask(signed("PS256", &RSA_PKCS1_SHA256, KEY_A, &audience, now + 600)).await;
    assert_eq!((status, body["error_codes"].clone()), (401, json!([700027])), "a PKCS#1 signature under alg PS256: {body}");
    let (status, body) = ask(signed("ES256", &RSA_PKCS1_SHA256, KEY_A, &audience, now + 600)).await;
    assert_eq!((status, body["error_codes"].clone()), (400, json!([50027])), "{body}");
}

fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn bad_certificate_pems_are_refused_before_any_request_naming_the_key() {
    let s = setup().await;
    let ec_key = rcgen::KeyPair::generate().unwrap();
    let ec_cert = rcgen::CertificateParams::new(vec!["ec".to_string()]).unwrap().self_signed(&ec_key).unwrap().pem();
    let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let cases = [
        (KEY_A.to_string(), "no CERTIFICATE block"),
        (s.cert_a.clone(), "no private key"),
        (format!("{}{encrypted}", s.cert_a), "clientCertificatePassword is not supported"),
        (format!("{}{KEY_B}", s.cert_a), "does not belong"),
        (format!("{ec_cert}{}", ec_key.serialize_pem()), "not an RSA key"),
    ];
    for (pem, expected) in cases {
        let err = s.arm.get(&with_certificate(pem.clone()), WS, API).await.unwrap_err();
        let text = shown(&err);
        assert!(text.contains(expected) && text.contains("clientCertificate"), "{expected}: {text}");
        assert_eq!(err.class(), ErrorClass::NeedsPerson, "{text}");
        for line in pem_body_lines(&pem) {
            assert!(!text.contains(line), "PEM leaked: {text}");
        }
    }
    assert_eq!(s.emu.token_requests(), 0);
    assert_eq!(s.arm.stats().credentials_created, 0);
}

#[tokio::test]
async fn workload_identity_reads_the_token_file_at_every_token_request() {
    let s = setup().await;
    let file = support::temp_path("federated-token");
    let sp = with_token_file(file.clone());
    std::fs::write(&file, "federated-token-1\n").unwrap();
    assert!(s.arm.get(&sp, WS, API).await.unwrap().is_none());

    // The kubelet rotates the file: an expired token in it is refused by Entra...
    std::fs::write(&file, "an-expired-federated-token").unwrap();
    let err = s.arm.get(&sp, WS, API).await.unwrap_err();
    assert_eq!(token_code(&err).as_deref(), Some("AADSTS70021"), "{err}");
    assert!(!shown(&err).contains("an-expired-federated-token"), "{err:?}");

    // ...and the next one is used at the next token request.
    std::fs::write(&file, "federated-token-2").unwrap();
    assert!(s.arm.get(&sp, WS, API).await.unwrap().is_none());

    let stats = s.arm.stats();
    assert_eq!(stats.credentials_created, 1, "one credential, re-reading its file");
    assert_eq!(stats.token_requests, 3);
    assert_eq!(s.emu.token_requests(), 3);
    assert_eq!(stats.get, 2);
    let _ = std::fs::remove_file(&file);
}

#[tokio::test]
async fn an_unreadable_token_file_names_the_variable_and_sends_nothing() {
    let s = setup().await;
    let missing = support::temp_path("no-such-token");
    let err = s.arm.get(&with_token_file(missing.clone()), WS, API).await.unwrap_err();
    let text = shown(&err);
    assert!(text.contains("AZURE_FEDERATED_TOKEN_FILE") && text.contains(&missing.display().to_string()), "{text}");
    assert_eq!(err.class(), ErrorClass::NeedsPerson);
    assert_eq!(s.emu.token_requests(), 0);

    let empty = support::temp_path("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let err = s.arm.get(&with_token_file(empty.clone()), WS, API).await.unwrap_err();
    assert!(shown(&err).contains("is empty"), "{err}");
    assert_eq!(s.emu.token_requests(), 0);
    let _ = std::fs::remove_file(&empty);
}

// --- Controller level: the credentials Secret.

const WS_PATH: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlworkspaces/ws1";

fn workspace() -> AmlWorkspace {
    AmlWorkspace {
        metadata: ObjectMeta { name: Some("ws1".into()), namespace: Some(NS.into()), ..Default::default() },
        spec: serde_json::from_value(json!({
            "resourceGroup": "rg-ml",
            "location": "eastus",
            "storageAccount": "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.Storage/storageAccounts/sa1",
            "keyVault": "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.KeyVault/vaults/kv1",
        }))
        .expect("valid spec"),
        status: None,
    }
}

#[tokio::test]
async fn a_rotated_client_secret_is_used_at_the_next_reconcile() {
    const WRONG: &str = "a-revoked-secret-71c3e0";
    let w = World::new().await;
    w.credentials("aml-credentials", WRONG);
    w.kube.put(workspace());
    w.reconcile::<AmlWorkspace>(WS_PATH).await.expect_err("the token is refused");
    assert_eq!(w.condition(WS_PATH, "Ready").unwrap()["reason"], "AuthenticationFailed");
    assert_eq!(w.emulator.token_requests(), 1);

    // The Secret is fixed: the next reconcile builds a new credential and succeeds.
    w.good_credentials();
    w.converge::<AmlWorkspace>(WS_PATH).await;
    let stats = w.ctx.arm.stats();
    assert_eq!(stats.credentials_created, 2, "{stats:?}");
    assert_eq!(w.emulator.token_requests(), 2);

    // Rotated again (the old value revoked): the cached token of the old secret is not reused.
    w.credentials("aml-credentials", WRONG);
    w.reconcile::<AmlWorkspace>(WS_PATH).await.expect_err("the new value is the one used");
    assert_eq!(w.emulator.token_requests(), 3);
    let ready = w.condition(WS_PATH, "Ready").unwrap();
    assert_eq!(ready["reason"], "AuthenticationFailed");
    assert!(!ready.to_string().contains(WRONG));
}

#[tokio::test]
async fn a_client_certificate_in_the_secret_reconciles() {
    let cert = certificate(KEY_A);
    let w = World::with_emulator(EmulatorConfig {
        principals: vec![Principal {
            client_id: CERT_CLIENT.into(),
            certificates: vec![cert.clone()],
            ..Principal::default()
        }],
        ..support::emulator_config()
    })
    .await;
    let pem = format!("{cert}{KEY_A}");
    w.kube.put(support::secret("aml-credentials", &[
        ("tenantId", DEFAULT_TENANT_ID),
        ("clientId", CERT_CLIENT),
        ("clientCertificate", &pem),
        ("subscriptionId", SUBSCRIPTION),
    ]));
    w.kube.put(workspace());
    w.converge::<AmlWorkspace>(WS_PATH).await;
    assert_eq!(w.emulator.token_requests(), 1);
}

#[tokio::test]
async fn a_secret_without_any_credential_names_the_keys() {
    if std::env::var_os("AZURE_FEDERATED_TOKEN_FILE").is_some() {
        eprintln!("skipped: AZURE_FEDERATED_TOKEN_FILE is set, so workload identity applies");
        return;
    }
    let w = World::new().await;
    let p = Principal::default();
    w.kube.put(support::secret("aml-credentials", &[
        ("tenantId", &p.tenant_id),
        ("clientId", &p.client_id),
        ("subscriptionId", SUBSCRIPTION),
    ]));
    w.kube.put(workspace());
    let err = w.reconcile::<AmlWorkspace>(WS_PATH).await.expect_err("no credential");
    assert!(err.is_stalled());
    let ready = w.condition(WS_PATH, "Ready").unwrap();
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "CredentialsInvalid");
    let message = ready["message"].as_str().unwrap();
    for key in ["team-a/aml-credentials", "clientSecret", "clientCertificate", "AZURE_FEDERATED_TOKEN_FILE"] {
        assert!(message.contains(key), "{key} missing: {message}");
    }
    assert_eq!(w.emulator.token_requests(), 0);
    assert!(w.emulator.requests().is_empty());
}
