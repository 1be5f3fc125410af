//! Citadel's CA API over TLS, called as a node agent calls it: a CSR with a service-account
//! token (signed as the local platform signs pods' tokens), or renewal with the certificate
//! the workload already has. Refusals (no, forged or expired token, a CSR for someone else,
//! garbage, too long a lifetime) carry a status that says why, and Citadel keeps serving.

mod common;

use std::time::Duration;

use citadel::CaSource;
use istio_api::pb::istio::v1::auth as pb;
use istio_pki::certificate::inspect;
use istio_pki::pem::certificates;
use istio_pki::token::{ServiceAccount, TokenIssuer, TokenRequest, CITADEL_AUDIENCE, LOCAL_ISSUER};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Code;

const IDENTITY: &str = "spiffe://cluster.local/ns/foo/sa/sleep";
const MAX_TTL: Duration = Duration::from_secs(2 * 3600);

struct Fixture {
    _store: tempfile::TempDir,
    citadel: citadel::Running,
    token_key: (String, String),
}

async fn start(ca: CaSource) -> Fixture {
    let store = tempfile::tempdir().expect("tempdir");
    let token_key = istio_pki::token::generate_signing_key().expect("key");
    let config = common::ca_api_only(store.path(), ca, &token_key.1, MAX_TTL);
    let citadel = citadel::start(config).await.expect("citadel starts");
    Fixture { _store: store, citadel, token_key }
}

fn self_signed() -> CaSource {
    CaSource::SelfSigned { root_ttl: Duration::from_secs(24 * 3600), read_only: false, extra_roots: None }
}

impl Fixture {
    async fn client(
        &self,
        identity: Option<Identity>,
    ) -> pb::istio_certificate_service_client::IstioCertificateServiceClient<Channel> {
        let address = self.citadel.grpc_address.expect("the CA server runs");
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.citadel.ca().root_pem()))
            .domain_name("istio-citadel.istio-system.svc.cluster.local");
        if let Some(identity) = identity {
            tls = tls.identity(identity);
        }
        let channel = Channel::from_shared(format!("https://{address}"))
            .expect("uri")
            .tls_config(tls)
            .expect("tls")
            .connect()
            .await
            .expect("connects over TLS");
        pb::istio_certificate_service_client::IstioCertificateServiceClient::new(channel)
    }

    fn token(&self, namespace: &str, name: &str, lifetime: Duration) -> String {
        token_signed_by(&self.token_key, namespace, name, lifetime)
    }

    async fn metrics(&self) -> String {
        common::metrics(self.citadel.monitoring_address).await
    }
}

fn token_signed_by(key: &(String, String), namespace: &str, name: &str, lifetime: Duration) -> String {
    let account = ServiceAccount { namespace: namespace.to_string(), name: name.to_string() };
    let issuer = TokenIssuer::new(&key.0, LOCAL_ISSUER).expect("issuer");
    issuer
        .issue(&TokenRequest { account: &account, pod: Some("sleep-1"), audience: CITADEL_AUDIENCE, lifetime })
        .expect("token")
}

fn request(csr: &str, ttl_seconds: i64, token: Option<&str>) -> tonic::Request<pb::IstioCertificateRequest> {
    let mut request = tonic::Request::new(pb::IstioCertificateRequest {
        csr: csr.to_string(),
        subject_id: String::new(),
        validity_duration: ttl_seconds,
    });
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("metadata"));
    }
    request
}

fn csr_for(names: &[&str]) -> (String, String) {
    istio_pki::csr::generate(&names.iter().map(|name| name.to_string()).collect::<Vec<_>>()).expect("csr")
}

fn expect_refusal(
    result: Result<tonic::Response<pb::IstioCertificateResponse>, tonic::Status>,
    code: Code,
    message: &str,
) {
    let status = result.expect_err(message);
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(message), "expected {message:?} in {:?}", status.message());
}

#[tokio::test]
async fn signs_a_csr_for_the_token_holder_and_refuses_everything_else() {
    let fixture = start(self_signed()).await;
    let mut client = fixture.client(None).await;
    let token = fixture.token("foo", "sleep", Duration::from_secs(600));

    let (csr, key) = csr_for(&[IDENTITY]);
    let first = client.create_certificate(request(&csr, 1800, Some(&token))).await.expect("signed").into_inner();
    let answer = &first;
    assert_eq!(answer.cert_chain.len(), 2, "leaf and root for a self-signed CA: {:?}", answer.cert_chain);
    assert_eq!(answer.cert_chain[1], fixture.citadel.ca().root_pem());
    let leaf = &certificates(answer.cert_chain[0].as_bytes()).expect("leaf")[0];
    let root = &certificates(answer.cert_chain[1].as_bytes()).expect("root")[0];
    assert!(istio_pki::certificate::signed_by(leaf, root));
    let info = inspect(leaf).expect("inspect");
    assert_eq!(info.subject_alt_names, [IDENTITY]);
    let lifetime = info.lifetime().as_secs();
    assert!((1799..=1801).contains(&lifetime), "asked for 30 minutes, got {lifetime} s");

    // No lifetime asked: the default (an hour here).
    let (csr, _) = csr_for(&[IDENTITY]);
    let answer = client.create_certificate(request(&csr, 0, Some(&token))).await.expect("signed").into_inner();
    let lifetime =
        inspect(&certificates(answer.cert_chain[0].as_bytes()).expect("leaf")[0]).expect("inspect").lifetime();
    assert!((3599..=3601).contains(&lifetime.as_secs()), "{lifetime:?}");

    // Renewal with the certificate just issued, without a token.
    let identity = Identity::from_pem(first.cert_chain[0].clone(), key);
    let mut renewing = fixture.client(Some(identity)).await;
    let (csr, _) = csr_for(&[IDENTITY]);
    renewing.create_certificate(request(&csr, 600, None)).await.expect("renewed with a client certificate");
    let (csr, _) = csr_for(&["spiffe://cluster.local/ns/foo/sa/other"]);
    expect_refusal(
        renewing.create_certificate(request(&csr, 600, None)).await,
        Code::PermissionDenied,
        "not the caller's identity",
    );

    // Refusals, each saying why.
    let (csr, _) = csr_for(&["spiffe://cluster.local/ns/foo/sa/admin"]);
    expect_refusal(
        client.create_certificate(request(&csr, 600, Some(&token))).await,
        Code::PermissionDenied,
        "spiffe://cluster.local/ns/foo/sa/admin",
    );
    let (csr, _) = csr_for(&[IDENTITY]);
    expect_refusal(client.create_certificate(request(&csr, 600, None)).await, Code::Unauthenticated, "no bearer token");
    let forger = istio_pki::token::generate_signing_key().expect("key");
    let forged = token_signed_by(&forger, "foo", "sleep", Duration::from_secs(600));
    expect_refusal(
        client.create_certificate(request(&csr, 600, Some(&forged))).await,
        Code::Unauthenticated,
        "signature does not verify",
    );
    let expired = fixture.token("foo", "sleep", Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    expect_refusal(
        client.create_certificate(request(&csr, 600, Some(&expired))).await,
        Code::Unauthenticated,
        "expired",
    );
    expect_refusal(
        client
            .create_certificate(request(
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                600,
                Some(&token),
            ))
            .await,
        Code::InvalidArgument,
        "CSR signing error (the CSR cannot be parsed",
    );
    expect_refusal(
        client.create_certificate(request("hello", 600, Some(&token))).await,
        Code::InvalidArgument,
        "not PEM",
    );
    expect_refusal(
        client.create_certificate(request(&csr, 3 * 3600, Some(&token))).await,
        Code::InvalidArgument,
        "requested TTL 3h0m0s is greater than the max allowed TTL 2h0m0s",
    );

    // Still serving after all that.
    client.create_certificate(request(&csr, 600, Some(&token))).await.expect("signed after refusals");

    let metrics = fixture.metrics().await;
    for line in [
        "citadel_server_csr_count 12",
        "citadel_server_success_cert_issuance_count 4",
        "citadel_server_authentication_failure_count 3",
        "citadel_server_csr_parsing_err_count 2",
        "citadel_server_id_extraction_err_count 2",
        "citadel_server_csr_sign_err_count{error=\"CSR_ERROR\"} 2",
        "citadel_server_csr_sign_err_count{error=\"TTL_ERROR\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

#[tokio::test]
async fn the_server_certificate_names_citadel_and_the_legacy_api_answers() {
    let fixture = start(self_signed()).await;
    let address = fixture.citadel.grpc_address.expect("CA server");
    for name in ["istio-ca", "istio-citadel"] {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(fixture.citadel.ca().root_pem()))
            .domain_name(name);
        let channel = Channel::from_shared(format!("https://{address}")).expect("uri").tls_config(tls).expect("tls");
        channel.connect().await.unwrap_or_else(|error| panic!("{name}: {error:?}"));
    }
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(fixture.citadel.ca().root_pem()))
        .domain_name("istio-pilot");
    let channel = Channel::from_shared(format!("https://{address}")).expect("uri").tls_config(tls).expect("tls");
    assert!(channel.connect().await.is_err(), "the certificate is not Pilot's");

    let channel = Channel::from_shared(format!("https://{address}"))
        .expect("uri")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(fixture.citadel.ca().root_pem()))
                .domain_name("istio-ca"),
        )
        .expect("tls")
        .connect()
        .await
        .expect("connects");
    let mut legacy = pb::istio_ca_service_client::IstioCaServiceClient::new(channel);
    let (csr, _) = csr_for(&[IDENTITY]);
    let mut request = tonic::Request::new(pb::CsrRequest {
        csr_pem: csr.into_bytes(),
        node_agent_credential: Vec::new(),
        credential_type: String::new(),
        requested_ttl_minutes: 10,
    });
    let token = fixture.token("foo", "sleep", Duration::from_secs(600));
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("metadata"));
    let answer = legacy.handle_csr(request).await.expect("signed").into_inner();
    assert!(answer.is_approved);
    let leaf = &certificates(&answer.signed_cert).expect("leaf")[0];
    let info = inspect(leaf).expect("inspect");
    assert_eq!(info.subject_alt_names, [IDENTITY]);
    assert!((599..=601).contains(&info.lifetime().as_secs()));
}

#[tokio::test]
async fn a_plugged_in_ca_answers_with_its_chain() {
    let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pkg/pki/testdata/plugged");
    let fixture = start(CaSource::Plugged {
        signing_cert: testdata.join("ca-cert.pem"),
        signing_key: testdata.join("ca-key.pem"),
        cert_chain: Some(testdata.join("cert-chain.pem")),
        root_cert: testdata.join("root-cert.pem"),
    })
    .await;
    let mut client = fixture.client(None).await;
    let token = fixture.token("foo", "sleep", Duration::from_secs(600));
    let (csr, _) = csr_for(&[IDENTITY]);
    let answer = client.create_certificate(request(&csr, 600, Some(&token))).await.expect("signed").into_inner();
    assert_eq!(answer.cert_chain.len(), 3, "leaf, chain, root: {:?}", answer.cert_chain);
    let root_file = std::fs::read_to_string(testdata.join("root-cert.pem")).expect("root");
    assert_eq!(answer.cert_chain[2], root_file);
    let leaf = &certificates(answer.cert_chain[0].as_bytes()).expect("leaf")[0];
    let intermediate = &certificates(answer.cert_chain[1].as_bytes()).expect("chain")[0];
    assert!(istio_pki::certificate::signed_by(leaf, intermediate));
}
