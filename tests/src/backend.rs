//! Test backends: small HTTP/1.1 servers on loopback that say who they are and behave as a
//! test asks — answer a status (`/status/418`), answer late (`/delay/2000`), stall half way
//! through the body (`/delay-stall/2000`), fail the next
//! requests, always fail, or close a kept-alive connection when its next request arrives —
//! and remember every request they saw (method, path, Host); plus a
//! TCP echo server and an HTTPS server for TLS tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;

/// A request a backend received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub host: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// A running backend; its threads end with the test process.
#[derive(Clone)]
pub struct Backend {
    pub name: String,
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    fail_next: Arc<AtomicU32>,
    always_fail: Arc<AtomicBool>,
    close_reused: Arc<AtomicBool>,
    closed_unanswered: Arc<AtomicU32>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

impl Backend {
    /// Starts a backend on loopback whose normal answer is `200` with body `name`.
    pub fn start(name: &str) -> Backend {
        Backend::start_on(name, "127.0.0.1")
    }

    /// Starts a backend listening on `ip`.
    pub fn start_on(name: &str, ip: &str) -> Backend {
        let listener = TcpListener::bind((ip, 0)).unwrap_or_else(|error| panic!("bind {ip}: {error}"));
        let backend = Backend {
            name: name.to_string(),
            port: listener.local_addr().map(|address| address.port()).unwrap_or_default(),
            seen: Arc::default(),
            fail_next: Arc::default(),
            always_fail: Arc::default(),
            close_reused: Arc::default(),
            closed_unanswered: Arc::default(),
        };
        let serving = backend.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let serving = serving.clone();
                std::thread::spawn(move || serving.serve(stream));
            }
        });
        backend
    }

    /// The next `count` requests get 503.
    pub fn fail_next(&self, count: u32) {
        self.fail_next.store(count, Ordering::SeqCst);
    }

    /// Every request gets 503 from now on.
    pub fn always_fail(&self, fail: bool) {
        self.always_fail.store(fail, Ordering::SeqCst);
    }

    /// From now on, a request that arrives on a connection which already served one is not
    /// answered: the connection closes, as a server closing an idle keep-alive connection
    /// does when a request crosses the close. A connection's first request is answered.
    pub fn close_reused_connections(&self, close: bool) {
        self.close_reused.store(close, Ordering::SeqCst);
    }

    /// How many requests got their connection closed instead of an answer.
    pub fn closed_unanswered(&self) -> u32 {
        self.closed_unanswered.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        istio_runtime::sync::lock(&self.seen).clone()
    }

    fn serve(&self, stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let mut reader = BufReader::new(stream.try_clone().unwrap_or_else(|error| panic!("clone: {error}")));
        let mut writer = stream;
        for served in 0u32.. {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("/").to_string());
            let mut headers = Vec::new();
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    return;
                }
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    let (name, value) = (name.trim().to_lowercase(), value.trim().to_string());
                    if name == "content-length" {
                        length = value.parse().unwrap_or(0);
                    }
                    headers.push((name, value));
                }
            }
            let chunked = headers.iter().any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
            let body = if chunked {
                match read_chunked(&mut reader) {
                    Some(body) => body,
                    None => return,
                }
            } else {
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                body
            };
            let host =
                headers.iter().find(|(name, _)| name == "host").map(|(_, value)| value.clone()).unwrap_or_default();
            istio_runtime::sync::lock(&self.seen).push(Seen {
                method,
                path: path.clone(),
                host,
                headers: headers.clone(),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            if served > 0 && self.close_reused.load(Ordering::SeqCst) {
                self.closed_unanswered.fetch_add(1, Ordering::SeqCst);
                return;
            }
            // `/delay-stall/MS`: the headers and a first part of the body at once, the rest late.
            if let Some(millis) = path.strip_prefix("/delay-stall/").and_then(|ms| ms.parse().ok()) {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: 10\r\nx-backend: {}\r\n\r\nfirst", self.name);
                if writer.write_all(head.as_bytes()).and_then(|()| writer.flush()).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(millis));
                if writer.write_all(b"later").is_err() {
                    return;
                }
                continue;
            }
            let (status, text) = self.answer(&path);
            // A client that asks to close gets the connection closed after the answer, as HTTP/1.1 says.
            let closing =
                headers.iter().any(|(name, value)| name == "connection" && value.eq_ignore_ascii_case("close"));
            let response = format!(
                "HTTP/1.1 {status} {}\r\ncontent-length: {}\r\nx-backend: {}\r\ncontent-type: text/plain\r\n{}\r\n{text}",
                reason(status),
                text.len(),
                self.name,
                if closing { "connection: close\r\n" } else { "" }
            );
            if writer.write_all(response.as_bytes()).is_err() || closing {
                return;
            }
        }
    }

    fn answer(&self, path: &str) -> (u16, String) {
        if self.always_fail.load(Ordering::SeqCst) {
            return (503, format!("{} failing", self.name));
        }
        if self.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1)).is_ok() {
            return (503, format!("{} failing once", self.name));
        }
        if let Some(code) = path.strip_prefix("/status/").and_then(|code| code.parse().ok()) {
            return (code, self.name.clone());
        }
        if let Some(millis) = path.strip_prefix("/delay/").and_then(|ms| ms.parse().ok()) {
            std::thread::sleep(Duration::from_millis(millis));
        }
        (200, self.name.clone())
    }
}

/// Reads a chunked request body to its end.
fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line).ok()?;
        let size = usize::from_str_radix(size_line.trim().split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            let mut trailer = String::new();
            while reader.read_line(&mut trailer).ok()? > 2 {
                trailer.clear();
            }
            return Some(body);
        }
        let mut chunk = vec![0u8; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        body.extend_from_slice(&chunk[..size]);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        418 => "I'm a teapot",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// An HTTPS backend (rustls) presenting `cert`/`key`, answering every request with `tls-backend`.
pub fn tls_backend(cert: &std::path::Path, key: &std::path::Path) -> u16 {
    serve_tls(tls_server_config(cert, key, None))
}

/// The same, requiring a client certificate signed by `client_ca` (mutual TLS). Each response
/// closes its connection, so every request makes a new handshake.
pub fn mtls_backend(cert: &std::path::Path, key: &std::path::Path, client_ca: &std::path::Path) -> u16 {
    serve_tls(tls_server_config(cert, key, Some(client_ca)))
}

fn tls_server_config(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: Option<&std::path::Path>,
) -> Arc<rustls::ServerConfig> {
    let chain =
        rustls::pki_types::CertificateDer::pem_file_iter(cert).expect("cert").map(|c| c.expect("cert")).collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("client CA") {
                roots.add(certificate.expect("client CA certificate")).expect("client CA root");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    Arc::new(builder.with_single_cert(chain, key).expect("server config"))
}

fn serve_tls(config: Arc<rustls::ServerConfig>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let config = config.clone();
            std::thread::spawn(move || {
                let Ok(connection) = rustls::ServerConnection::new(config) else { return };
                let mut tls = rustls::StreamOwned::new(connection, stream);
                let mut reader = BufReader::new(&mut tls);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                drop(reader);
                let _ = tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\nconnection: close\r\n\r\ntls-backend");
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    port
}

/// A TCP echo server that prefixes each line with `prefix` (the tcp-echo sample's behaviour).
pub fn tcp_echo(prefix: &str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|error| panic!("bind: {error}"));
    let port = listener.local_addr().map(|address| address.port()).unwrap_or_default();
    let prefix = prefix.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let prefix = prefix.clone();
            std::thread::spawn(move || {
                let mut writer = match stream.try_clone() {
                    Ok(writer) => writer,
                    Err(_) => return,
                };
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if writeln!(writer, "{prefix} {line}").is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}
