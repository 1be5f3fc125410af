//! Citadel's CA API under load: `CreateCertificate` throughput and latency at 1, 16 and 64
//! concurrent clients, with a P-256 self-signed CA and with an RSA 2048 CA plugged in from
//! files (1.4's default key type, and `samples/certs`'). Citadel runs in this process over a
//! directory store; clients authenticate with a token as the local platform's pods do. CSRs
//! are made before timing starts, so the figures are Citadel's: TLS, authentication, CSR
//! verification and signing.
//!
//!   cargo bench -p citadel --bench csr_throughput [-- --requests N]
//!
//! "Per core" divides by the CPU seconds the whole process used (the clients' share included),
//! so it understates Citadel's own rate.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use citadel::CaSource;
use istio_api::pb::istio::v1::auth as pb;
use istio_pki::token::{
    generate_signing_key, ServiceAccount, TokenIssuer, TokenRequest, CITADEL_AUDIENCE, LOCAL_ISSUER,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

const IDENTITY: &str = "spiffe://cluster.local/ns/bench/sa/client";

/// CPU seconds this process has used (user + system).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|value| value.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command name: state is field 0, utime 11, stime 12; 100 ticks a second.
    (ticks(11) + ticks(12)) / 100.0
}

struct Run {
    concurrency: usize,
    per_second: f64,
    per_core_second: f64,
    p50: Duration,
    p99: Duration,
}

#[path = "../tests/common/mod.rs"]
mod common;

async fn start(ca: CaSource, token_public_key: &str) -> (citadel::Running, tempfile::TempDir) {
    let store = tempfile::tempdir().expect("tempdir");
    let config = common::ca_api_only(store.path(), ca, token_public_key, Duration::from_secs(24 * 3600));
    (citadel::start(config).await.expect("citadel starts"), store)
}

async fn measure(citadel: &citadel::Running, token: &str, csrs: &[String], concurrency: usize) -> Run {
    let address = citadel.grpc_address.expect("CA API");
    let tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(citadel.ca().root_pem())).domain_name("istio-ca");
    // A connection per 16 clients, as many node agents would hold.
    let mut channels = Vec::new();
    for _ in 0..concurrency.div_ceil(16) {
        let channel = Channel::from_shared(format!("https://{address}"))
            .expect("uri")
            .tls_config(tls.clone())
            .expect("tls")
            .connect()
            .await
            .expect("connect");
        channels.push(channel);
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let csrs = Arc::new(csrs.to_vec());
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let mut client =
            pb::istio_certificate_service_client::IstioCertificateServiceClient::new(channels[worker / 16].clone());
        let (next, csrs, token) = (next.clone(), csrs.clone(), token.to_string());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(csr) = csrs.get(index) else { return latencies };
                let mut request = tonic::Request::new(pb::IstioCertificateRequest {
                    csr: csr.clone(),
                    subject_id: String::new(),
                    validity_duration: 3600,
                });
                request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("metadata"));
                let sent = Instant::now();
                client.create_certificate(request).await.expect("signed");
                latencies.push(sent.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = (cpu_seconds() - cpu_before).max(0.01);
    latencies.sort();
    let at = |share: f64| latencies[((latencies.len() as f64 * share) as usize).min(latencies.len() - 1)];
    Run {
        concurrency,
        per_second: latencies.len() as f64 / wall,
        per_core_second: latencies.len() as f64 / cpu,
        p50: at(0.5),
        p99: at(0.99),
    }
}

fn main() {
    let requests: usize = std::env::args()
        .skip_while(|arg| arg != "--requests")
        .nth(1)
        .and_then(|value| value.parse().ok())
        .unwrap_or(3000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let (token_private, token_public) = generate_signing_key().expect("token key");
    let account = ServiceAccount { namespace: "bench".into(), name: "client".into() };
    let token = TokenIssuer::new(&token_private, LOCAL_ISSUER)
        .expect("issuer")
        .issue(&TokenRequest {
            account: &account,
            pod: None,
            audience: CITADEL_AUDIENCE,
            lifetime: Duration::from_secs(3600),
        })
        .expect("token");
    eprintln!("making {requests} CSRs…");
    let csrs: Vec<String> =
        (0..requests).map(|_| istio_pki::csr::generate(&[IDENTITY.to_string()]).expect("csr").0).collect();
    let plugged = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pkg/pki/testdata/plugged");
    let cas = [
        (
            "P-256 self-signed",
            CaSource::SelfSigned { root_ttl: Duration::from_secs(24 * 3600), read_only: false, extra_roots: None },
        ),
        (
            "RSA 2048 plugged in",
            CaSource::Plugged {
                signing_cert: plugged.join("ca-cert.pem"),
                signing_key: plugged.join("ca-key.pem"),
                cert_chain: Some(plugged.join("cert-chain.pem")),
                root_cert: plugged.join("root-cert.pem"),
            },
        ),
    ];
    println!("| CA key | clients | CSR/s | CSR per CPU-second | p50 | p99 |");
    println!("|---|---|---|---|---|---|");
    for (name, ca) in cas {
        runtime.block_on(async {
            let (citadel, _store) = start(ca, &token_public).await;
            // Warm up the connections and caches.
            measure(&citadel, &token, &csrs[..csrs.len().min(100)], 4).await;
            for concurrency in [1, 16, 64] {
                let run = measure(&citadel, &token, &csrs, concurrency).await;
                println!(
                    "| {name} | {} | {:.0} | {:.0} | {:.2} ms | {:.2} ms |",
                    run.concurrency,
                    run.per_second,
                    run.per_core_second,
                    run.p50.as_secs_f64() * 1000.0,
                    run.p99.as_secs_f64() * 1000.0
                );
            }
        });
    }
}
