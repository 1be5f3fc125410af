//! The `citadel` binary: a plugged-in CA from files laid out as Istio's `samples/certs` (an
//! RSA root and an intermediate with a PKCS#1 key, made with openssl), its monitoring
//! endpoints, and the errors it stops with.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use istio_config::object::ObjectKey;
use istio_config::store::directory::DirectoryStore;
use istio_config::store::Store;

/// The plugged-in CA files of pkg/pki's tests.
fn plugged(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pkg/pki/testdata/plugged").join(file)
}

struct Citadel(Child);

impl Drop for Citadel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn citadel(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_citadel"));
    command.args(args).args(["--monitoring-port", "0", "--bind-address", "127.0.0.1"]);
    command
}

/// Starts Citadel with its CA API on a free port; returns it with its monitoring and CA API
/// addresses.
fn start(args: &[&str]) -> (Citadel, String, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("address").port();
    let mut child = citadel(args)
        .args(["--grpc-port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start citadel");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut banner = |prefix: &str| {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("banner");
        line.trim().strip_prefix(prefix).unwrap_or_else(|| panic!("banner {line:?}")).to_string()
    };
    let monitoring = banner("citadel: monitoring on ");
    let grpc = banner("citadel: CA API on ");
    (Citadel(child), monitoring, grpc)
}

fn get(address: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    write!(stream, "GET {path} HTTP/1.1\r\nhost: citadel\r\nconnection: close\r\n\r\n").expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default())
}

#[tokio::test]
async fn a_plugged_in_ca_signs_workload_secrets_that_chain_to_its_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirectoryStore::open(dir.path()).expect("store");
    let account: istio_config::object::Object = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "default"}
    }))
    .expect("object");
    store.apply(account).await.expect("apply");
    let store_dir = dir.path().display().to_string();
    let (signing_cert, signing_key, chain, root) =
        (plugged("ca-cert.pem"), plugged("ca-key.pem"), plugged("cert-chain.pem"), plugged("root-cert.pem"));
    let (_citadel, monitoring, grpc) = start(&[
        "--self-signed-ca=false",
        "--configPath",
        &store_dir,
        "--signing-cert",
        signing_cert.to_str().expect("path"),
        "--signing-key",
        signing_key.to_str().expect("path"),
        "--cert-chain",
        chain.to_str().expect("path"),
        "--root-cert",
        root.to_str().expect("path"),
    ]);

    let key = ObjectKey {
        group: String::new(),
        kind: "Secret".into(),
        namespace: "default".into(),
        name: "istio.default".into(),
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let secret = loop {
        store.refresh().await;
        if let Some(secret) = store.get(&key).await.expect("get") {
            break secret;
        }
        assert!(Instant::now() < deadline, "no Secret istio.default");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let decode = |name: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(secret.body["data"][name].as_str().expect(name))
            .expect("base64")
    };
    assert_eq!(
        decode("root-cert.pem"),
        std::fs::read(&root).expect("root"),
        "the workload root is the plugged-in root"
    );
    let chain = istio_pki::pem::certificates(&decode("cert-chain.pem")).expect("chain");
    let intermediate = istio_pki::pem::read_certificates(&signing_cert).expect("intermediate");
    assert_eq!(chain.len(), 2, "leaf and the plugged-in chain");
    assert_eq!(chain[1], intermediate[0]);
    assert!(istio_pki::certificate::signed_by(&chain[0], &intermediate[0]));
    assert_eq!(
        istio_pki::certificate::inspect(&chain[0]).expect("leaf").subject_alt_names,
        ["spiffe://cluster.local/ns/default/sa/default"]
    );

    // Ready once the first pass over the accounts is done, just after its last Secret is written.
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(&monitoring, "/ready").0 != 200 {
        assert!(Instant::now() < deadline, "/ready never answered 200");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, version) = get(&monitoring, "/version");
    assert_eq!(status, 200);
    assert!(version.starts_with("citadel "), "{version}");
    let (_, metrics) = get(&monitoring, "/metrics");
    assert!(metrics.contains("citadel_server_root_cert_expiry_timestamp 4"), "a root valid until the 2100s: {metrics}");

    // The CA API's own certificate comes from the plugged-in CA, with the chain to its root.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(&root).expect("root")))
        .domain_name("istio-citadel.istio-system.svc.cluster.local");
    tonic::transport::Channel::from_shared(format!("https://{grpc}"))
        .expect("uri")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("the CA API's certificate chains to the plugged-in root");
}

/// Runs Citadel until it logs that it cannot establish its CA; returns that line. Citadel does
/// not stop: it tries again, so a Secret mounted late or fixed later is picked up.
fn ca_refused(args: &[&str]) -> String {
    let mut child = Citadel(citadel(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start citadel"));
    let stderr = child.0.stderr.take().expect("stderr");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("cannot establish the CA") {
                let _ = sender.send(line);
                return;
            }
        }
    });
    let line = receiver.recv_timeout(Duration::from_secs(20)).expect("Citadel logs why it has no CA");
    assert!(child.0.try_wait().expect("status").is_none(), "Citadel keeps running and tries again");
    line
}

#[test]
fn bad_flags_stop_citadel_and_bad_files_keep_it_waiting_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store_dir = dir.path().join("store").display().to_string();
    let run = |args: &[&str]| {
        let output = citadel(args).output().expect("run citadel");
        assert!(!output.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    let stderr = run(&["--configPath", &store_dir]);
    assert!(
        stderr.contains("No signing cert has been specified. Either specify a cert file via '-signing-cert' option or use '-self-signed-ca'"),
        "{stderr}"
    );
    let stderr = run(&["--self-signed-ca", "--configPath", &store_dir, "--workload-cert-grace-period-ratio", "1.5"]);
    assert!(stderr.contains("Workload cert grace period ratio 1.5 is invalid. It should be within [0, 1]"), "{stderr}");

    let broken_key = dir.path().join("ca-key.pem");
    std::fs::write(&broken_key, "-----BEGIN RSA PRIVATE KEY-----\nMAMCAQA=\n-----END RSA PRIVATE KEY-----\n")
        .expect("write");
    let line = ca_refused(&[
        "--configPath",
        &store_dir,
        "--signing-cert",
        plugged("ca-cert.pem").to_str().expect("path"),
        "--signing-key",
        broken_key.to_str().expect("path"),
        "--root-cert",
        plugged("root-cert.pem").to_str().expect("path"),
    ]);
    assert!(line.contains("plugged-in CA"), "{line}");
    assert!(line.contains("malformed RSA (PKCS#1) private key"), "{line}");

    let line = ca_refused(&[
        "--configPath",
        &store_dir,
        "--signing-cert",
        plugged("ca-cert.pem").to_str().expect("path"),
        "--signing-key",
        plugged("ca-key.pem").to_str().expect("path"),
        "--root-cert",
        plugged("ca-key.pem").to_str().expect("path"),
    ]);
    assert!(line.contains("no PEM certificate found"), "{line}");

    // Files not mounted yet: Citadel names the missing one and writes no Secret meanwhile.
    let missing = dir.path().join("cacerts/ca-cert.pem");
    let line = ca_refused(&[
        "--configPath",
        &store_dir,
        "--signing-cert",
        missing.to_str().expect("path"),
        "--signing-key",
        plugged("ca-key.pem").to_str().expect("path"),
        "--root-cert",
        plugged("root-cert.pem").to_str().expect("path"),
    ]);
    assert!(line.contains(&missing.display().to_string()), "{line}");
    let secrets = std::fs::read_dir(&store_dir).map(|entries| entries.count()).unwrap_or(0);
    assert_eq!(secrets, 0, "nothing is written to the store without a CA");
}
