//! The node agent between a workload's proxy and Citadel, through the real binaries: Citadel
//! (self-signed, checking the local platform's kind of signed service-account tokens) and
//! `node-agent` on a Unix socket. A client speaking SDS as Envoy does, with its token in
//! `istio_sds_credentials_header-bin`, gets a certificate for exactly the identity its token
//! names, Citadel's root as `ROOTCA`, and a renewed certificate pushed on the same stream; a
//! forged token or none gets a gRPC error that says why.

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::Process;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use hyper_util::rt::TokioIo;
use istio_pki::token::{ServiceAccount, TokenIssuer, TokenRequest, CITADEL_AUDIENCE, LOCAL_ISSUER};
use prost::Message;
use tonic::transport::Channel;

const SECRET_TYPE: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

fn token(private_key: &str, namespace: &str, name: &str) -> String {
    let account = ServiceAccount { namespace: namespace.into(), name: name.into() };
    TokenIssuer::new(private_key, LOCAL_ISSUER)
        .expect("issuer")
        .issue(&TokenRequest {
            account: &account,
            pod: Some("sleep-1"),
            audience: CITADEL_AUDIENCE,
            lifetime: Duration::from_secs(600),
        })
        .expect("token")
}

async fn sds_client(socket: PathBuf) -> SecretDiscoveryServiceClient<Channel> {
    let connector = tower::service_fn(move |_: tonic::codegen::http::Uri| {
        let socket = socket.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?)) }
    });
    let channel = tonic::transport::Endpoint::from_static("http://sds")
        .connect_with_connector(connector)
        .await
        .expect("connect to the node agent");
    SecretDiscoveryServiceClient::new(channel)
}

fn ask(name: &str, token: Option<&str>) -> tonic::Request<DiscoveryRequest> {
    let mut request = tonic::Request::new(DiscoveryRequest {
        resource_names: vec![name.to_string()],
        type_url: SECRET_TYPE.to_string(),
        ..Default::default()
    });
    if let Some(token) = token {
        request.metadata_mut().insert_bin(
            "istio_sds_credentials_header-bin",
            tonic::metadata::MetadataValue::from_bytes(token.as_bytes()),
        );
    }
    request
}

fn secret_of(response: &DiscoveryResponse) -> Secret {
    Secret::decode(response.resources[0].value.as_slice()).expect("a Secret")
}

/// The leaf of a `default` secret: (SANs, serial).
fn leaf_of(secret: &Secret) -> (Vec<String>, String) {
    let Some(secret::Type::TlsCertificate(tls)) = &secret.r#type else { panic!("not a certificate: {secret:?}") };
    let Some(envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineBytes(chain)) =
        tls.certificate_chain.as_ref().and_then(|source| source.specifier.clone())
    else {
        panic!("no inline chain")
    };
    let leaf = &istio_pki::pem::certificates(&chain).expect("chain")[0];
    let info = istio_pki::certificate::inspect(leaf).expect("leaf");
    (info.subject_alt_names, info.serial_hex)
}

fn start_citadel(store: &Path, public_key: &Path, port: u16) -> Process {
    let port = port.to_string();
    let citadel = Process::start(
        "citadel",
        &[
            "--self-signed-ca",
            "--configPath",
            &store.display().to_string(),
            "--service-account-key-file",
            &public_key.display().to_string(),
            "--grpc-port",
            &port,
            "--monitoring-port",
            "0",
            "--bind-address",
            "127.0.0.1",
        ],
    );
    citadel.next_line(Duration::from_secs(20)).expect("Citadel starts");
    citadel
}

#[test]
fn workloads_get_certificates_for_their_own_token_and_renewals_on_the_same_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).expect("store");
    let (private_key, public_key) = istio_pki::token::generate_signing_key().expect("signing key");
    let public_key_file = dir.path().join("sa.pub");
    std::fs::write(&public_key_file, &public_key).expect("write");
    let port = e2e::envoy::free_port();
    let _citadel = start_citadel(&store, &public_key_file, port);
    let socket = dir.path().join("sds/uds_path");
    let agent = Process::start(
        "node-agent",
        &[
            "--configPath",
            &store.display().to_string(),
            "--caEndpoint",
            &format!("127.0.0.1:{port}"),
            "--workloadUDSPath",
            &socket.display().to_string(),
            "--secretTtl",
            "6s",
            "--secretRefreshGraceDuration",
            "3s",
        ],
    );
    let banner = agent.next_line(Duration::from_secs(20)).expect("the node agent starts");
    assert!(banner.starts_with("node-agent: SDS on"), "{banner}");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut client = sds_client(socket.clone()).await;
        let sleep_token = token(&private_key, "foo", "sleep");

        // A stream for `default`: the caller's identity, then a renewal pushed on it.
        let (requests, outgoing) = tokio::sync::mpsc::channel(4);
        requests.send(ask("default", None).into_inner()).await.expect("send");
        let mut stream_request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(outgoing));
        stream_request.metadata_mut().insert_bin(
            "istio_sds_credentials_header-bin",
            tonic::metadata::MetadataValue::from_bytes(sleep_token.as_bytes()),
        );
        let mut responses = client.stream_secrets(stream_request).await.expect("stream").into_inner();
        let first = responses.message().await.expect("stream").expect("a certificate");
        let (names, first_serial) = leaf_of(&secret_of(&first));
        assert_eq!(names, ["spiffe://cluster.local/ns/foo/sa/sleep"]);
        let renewed = tokio::time::timeout(Duration::from_secs(15), responses.message())
            .await
            .expect("a renewal within the lifetime")
            .expect("stream")
            .expect("a renewed certificate");
        let (_, second_serial) = leaf_of(&secret_of(&renewed));
        assert_ne!(first_serial, second_serial, "a new certificate");
        assert_ne!(first.version_info, renewed.version_info);

        // ROOTCA is Citadel's root.
        let root = client.fetch_secrets(ask("ROOTCA", Some(&sleep_token))).await.expect("ROOTCA").into_inner();
        let Some(secret::Type::ValidationContext(context)) = secret_of(&root).r#type else { panic!("no root") };
        assert!(context.trusted_ca.is_some());

        // A token signed by someone else, even for the same identity, gets nothing.
        let (forger, _) = istio_pki::token::generate_signing_key().expect("key");
        let forged = client
            .fetch_secrets(ask("default", Some(&token(&forger, "foo", "sleep"))))
            .await
            .expect_err("a forged token");
        assert!(matches!(forged.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied), "{forged:?}");
        assert!(forged.message().contains("Citadel refused"), "{}", forged.message());
        let anonymous = client.fetch_secrets(ask("default", None)).await.expect_err("no token");
        assert_eq!(anonymous.code(), tonic::Code::Unauthenticated, "{anonymous:?}");
        assert!(anonymous.message().contains("no credential token"), "{}", anonymous.message());
    });
}
