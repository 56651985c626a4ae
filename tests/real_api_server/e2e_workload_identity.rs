//! Workload identity as AKS does it, on the node of `e2e_pod`: the chart projects the operator's
//! ServiceAccount token for audience `api://AzureADTokenExchange` (`workloadIdentity.projectToken`,
//! what the Azure Workload Identity webhook injects on AKS), the operator sends it to Entra as its
//! client assertion, and the emulator verifies it as Entra verifies a federated identity
//! credential: issuer, subject `system:serviceaccount:<ns>:<name>` and audience against the
//! application's credential, the RS256 signature against the cluster's service-account issuer keys
//! (fetched from the API server's `/openid/v1/jwks`, which it serves to ServiceAccounts), expiry.
//! No client secret is anywhere in the cluster.
//!
//! Needs what `e2e_pod` needs (node, root, image, Helm) and skips the same way without it.

use crate::e2e_pod::{PodTest, World, examples, pod_test, ready_pod};
use crate::support;
use crate::support::cluster::{MANAGER, eventually, ready};

use aml_operator::emulator::{AZURE_TOKEN_EXCHANGE_AUDIENCE, EmulatorConfig, FederatedCredential, IssuerKeys, OidcIssuer, Principal};
use base64::Engine;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A token of ServiceAccount `ns/name` for `audience` (the TokenRequest API, as
/// `kubectl create token <name> --audience <audience>`).
async fn token_for(admin: &Client, ns: &str, name: &str, audience: Option<&str>) -> String {
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": audience.into_iter().collect::<Vec<_>>(), "expirationSeconds": 3600}})).unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {ns}/{name}: {e}"))
        .status
        .and_then(|s| s.token)
        .expect("a token")
}

async fn create_service_account(admin: &Client, ns: &str, name: &str) {
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    let api = Api::<ServiceAccount>::namespaced(admin.clone(), ns);
    if let Err(e) = api.create(&PostParams::default(), &sa).await {
        assert!(matches!(&e, kube::Error::Api(s) if s.code == 409), "ServiceAccount {ns}/{name}: {e}");
    }
}

/// The API server's service-account issuer (its OpenID discovery document) and the PEM of the CA
/// its certificate is signed by (from the kubeconfig).
async fn issuer_and_ca(admin: &Client) -> (Value, String) {
    let request = http::Request::get("/.well-known/openid-configuration").body(Vec::new()).unwrap();
    let discovery: Value = serde_json::from_str(&admin.request_text(request).await.expect("OpenID discovery")).expect("JSON");
    let kubeconfig = kube::config::Kubeconfig::read_from(support::cluster::kubeconfig_path()).expect("kubeconfig");
    let ca_data = kubeconfig.clusters[0].cluster.as_ref().and_then(|c| c.certificate_authority_data.clone()).expect("certificate-authority-data");
    let ca = base64::engine::general_purpose::STANDARD.decode(ca_data.trim()).expect("base64 CA");
    (discovery, String::from_utf8(ca).expect("PEM"))
}

/// POSTs a client-credentials request with `assertion` to the emulator's token endpoint.
async fn ask_for_token(world: &World, ca_pem: &str, client_id: &str, assertion: &str) -> (u16, Value) {
    let http = reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()]).build().unwrap();
    let body = format!(
        "grant_type=client_credentials&client_id={client_id}&scope=https%3A%2F%2Fmanagement.azure.com%2F.default\
         &client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}"
    );
    let url = format!("{}{}/oauth2/v2.0/token", world.emulator.authority_host(), Principal::default().tenant_id);
    let resp = http.post(url).header("content-type", "application/x-www-form-urlencoded").body(body).send().await.expect("token endpoint");
    (resp.status().as_u16(), resp.json().await.expect("JSON answer"))
}

/// The chart with `workloadIdentity.projectToken` on the node, no client secret anywhere: the
/// operator pod's projected token gets Azure tokens through the emulator's federated credential
/// (verified against the API server's keys) and the examples become Ready; tokens of another
/// ServiceAccount or for another audience, minted by the API server and posted to the token
/// endpoint directly, are refused with AADSTS70021.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projected_service_account_token_is_the_operators_azure_identity() {
    let Some(PodTest { admin, node, helm, image, _node_is_mine }) = pod_test().await else { return };

    // The cluster's issuer, as Entra would discover it; its keys are served to ServiceAccounts
    // (the default binding of system:service-account-issuer-discovery), so the emulator reads them
    // with a token of one.
    let (discovery, api_ca) = issuer_and_ca(&admin).await;
    let issuer = discovery["issuer"].as_str().expect("issuer").to_string();
    let jwks_url = discovery["jwks_uri"].as_str().expect("jwks_uri").to_string();
    let reader = format!("aml-wi-jwks-reader-{}", std::process::id() % 100000);
    create_service_account(&admin, "default", &reader).await;
    let reader_token = token_for(&admin, "default", &reader, None).await;
    println!("service-account issuer {issuer}, keys from {jwks_url} (its OpenID discovery document)");

    let principal = Principal::default();
    let (tenant, client) = (principal.tenant_id.clone(), principal.client_id.clone());
    let keys = IssuerKeys::Fetch { url: jwks_url, ca_pem: api_ca, bearer_token: Some(reader_token) };
    let world = World::start_with(&admin, "aml-wi", |op_ns, release| EmulatorConfig {
        principals: vec![Principal {
            // The secret exists only in the emulator: the cluster is never given it.
            client_secret: format!("unused-{}", std::process::id()),
            federated_credentials: vec![FederatedCredential {
                issuer: issuer.clone(),
                subject: format!("system:serviceaccount:{op_ns}:{release}"),
                audience: AZURE_TOKEN_EXCHANGE_AUDIENCE.into(),
            }],
            ..principal
        }],
        oidc_issuers: vec![OidcIssuer { issuer: issuer.clone(), keys }],
        ..EmulatorConfig::default()
    })
    .await;
    let (ns, op_ns, release) = (world.ns.clone(), world.op_ns.clone(), world.release.clone());

    // 1. The chart with the projected token (no webhook here), the credentials Secret without a
    // client secret: tenant and client come from the pod's AZURE_TENANT_ID / AZURE_CLIENT_ID.
    let installed = Instant::now();
    let (client_set, tenant_set) = (format!("workloadIdentity.clientId={client}"), format!("workloadIdentity.tenantId={tenant}"));
    world.install(&helm, &node, &image, &["workloadIdentity.enabled=true", &client_set, &tenant_set, "workloadIdentity.projectToken=true"]);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &op_ns);
    let pod = eventually("the operator pod Ready", Duration::from_secs(120), || ready_pod(&pods, &release, &[])).await;
    println!("helm install (workloadIdentity.projectToken) -> pod {} Ready in {:.1} s", pod.name_any(), installed.elapsed().as_secs_f64());
    let spec = pod.spec.clone().unwrap();
    let token_volume = spec.volumes.iter().flatten().find(|v| v.name == "azure-identity-token").expect("the projected token volume");
    let projected = token_volume.projected.as_ref().and_then(|p| p.sources.as_ref()).and_then(|s| s[0].service_account_token.clone()).expect("a ServiceAccount token source");
    assert_eq!(projected.audience.as_deref(), Some(AZURE_TOKEN_EXCHANGE_AUDIENCE));
    let env: BTreeMap<String, String> = spec.containers[0].env.iter().flatten().map(|e| (e.name.clone(), e.value.clone().unwrap_or_default())).collect();
    assert_eq!(env["AZURE_CLIENT_ID"], client);
    assert_eq!(env["AZURE_TENANT_ID"], tenant);
    assert_eq!(env["AZURE_AUTHORITY_HOST"], world.emulator.authority_host());

    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "aml-credentials"}, "stringData": {"subscriptionId": support::SUBSCRIPTION}})).unwrap();
    Api::<Secret>::namespaced(admin.clone(), &ns).create(&PostParams::default(), &secret).await.expect("credentials Secret");
    let applied = Instant::now();
    let mut objects = Vec::new();
    for (plural, manifest) in examples() {
        let api = support::cluster::dynamic_api(&admin, &ns, manifest["kind"].as_str().unwrap(), &plural);
        let name = manifest["metadata"]["name"].as_str().unwrap().to_string();
        api.patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(&manifest)).await.unwrap_or_else(|e| panic!("{plural}/{name}: {e}"));
        objects.push((api, name, plural));
    }
    eventually("every example Ready with the federated identity", Duration::from_secs(180), || {
        let objects = objects.clone();
        async move {
            for (api, name, _) in &objects {
                let obj = serde_json::to_value(api.get(name).await.ok()?).ok()?;
                if !ready(&obj) {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    let token_requests = world.emulator.token_requests();
    assert!(token_requests > 0, "the operator asked for no token");
    assert!(!world.emulator.requests().is_empty(), "no ARM request was made");
    println!(
        "{} examples Ready {:.1} s after they were applied; token requests to the emulator: {token_requests}, with the pod's projected token as the federated assertion (the cluster holds no client secret)",
        objects.len(),
        applied.elapsed().as_secs_f64()
    );

    // 2. Entra's answers to tokens the API server mints, posted directly: the operator's own
    // ServiceAccount for the exchange audience is accepted; another ServiceAccount, or the
    // operator's for another audience, matches no federated credential.
    let own = token_for(&admin, &op_ns, &release, Some(AZURE_TOKEN_EXCHANGE_AUDIENCE)).await;
    let (status, body) = ask_for_token(&world, world.emulator.ca_pem(), &client, &own).await;
    assert_eq!(status, 200, "{body}");
    let other_sa = "not-the-operator";
    create_service_account(&admin, &op_ns, other_sa).await;
    let refusals = [
        (token_for(&admin, &op_ns, other_sa, Some(AZURE_TOKEN_EXCHANGE_AUDIENCE)).await, format!("system:serviceaccount:{op_ns}:{other_sa}"), AZURE_TOKEN_EXCHANGE_AUDIENCE.to_string()),
        (token_for(&admin, &op_ns, &release, Some("api://SomethingElse")).await, format!("system:serviceaccount:{op_ns}:{release}"), "api://SomethingElse".to_string()),
    ];
    for (token, subject, audience) in refusals {
        let (status, body) = ask_for_token(&world, world.emulator.ca_pem(), &client, &token).await;
        let description = body["error_description"].as_str().unwrap_or_default();
        let expected = format!(
            "AADSTS70021: No matching federated identity record found for presented assertion. Assertion Issuer: '{issuer}'. Assertion Subject: '{subject}'. Assertion Audience: '{audience}'."
        );
        assert_eq!(status, 400, "{body}");
        assert!(description.starts_with(&expected), "{description}");
        println!("token of {subject} for {audience}: refused, {}", description.split(" Trace ID").next().unwrap_or_default());
    }

    // Clean up: the operator goes, then the finalizers are removed by hand (the Azure resources
    // are the emulator's, gone with it).
    crate::e2e_pod::run_helm(&helm, &["uninstall", &release, "--namespace", &op_ns, "--wait", "--timeout", "60s"]);
    let unfinalize = json!({"metadata": {"finalizers": null}});
    for (api, name, _) in &objects {
        api.patch(name, &PatchParams::default(), &Patch::Merge(&unfinalize)).await.expect("finalizers removed");
    }
    Api::<Secret>::namespaced(admin.clone(), &ns).patch("aml-credentials", &PatchParams::default(), &Patch::Merge(&unfinalize)).await.expect("Secret finalizers removed");
    let _ = Api::<ServiceAccount>::namespaced(admin.clone(), "default").delete(&reader, &DeleteParams::default()).await;
    world.finish(&admin).await;
}
