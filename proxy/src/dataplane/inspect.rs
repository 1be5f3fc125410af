//! Listener filters that look at a connection's first bytes without consuming them: the TLS
//! inspector (is it TLS; the SNI and ALPN of the ClientHello, read with rustls's own parser)
//! and the HTTP inspector (is it HTTP/1.x or the HTTP/2 preface). The bytes read are replayed
//! to whoever handles the connection next.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::upstream::pool::BoxStream;

/// How long protocol sniffing (the HTTP inspector) waits for the client's first bytes —
/// Istio's protocol detection timeout; server-first protocols proceed without them.
pub(crate) const DETECTION_TIMEOUT: Duration = Duration::from_millis(100);

/// How long the TLS inspector alone waits for a ClientHello (Envoy's listener filter timeout).
pub(crate) const TLS_HELLO_TIMEOUT: Duration = Duration::from_secs(15);

/// The most the inspectors read before deciding (a large ClientHello fits).
const INSPECT_LIMIT: usize = 64 * 1024;

/// What the inspectors found.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Inspection {
    pub tls: bool,
    pub server_name: Option<String>,
    pub application_protocols: Vec<String>,
}

/// Reads enough of the connection for the enabled inspectors and returns the findings and
/// the stream with those bytes put back.
pub(crate) async fn inspect(
    mut stream: BoxStream,
    tls_inspector: bool,
    http_inspector: bool,
) -> (Inspection, BoxStream) {
    let mut buffer = Vec::with_capacity(1024);
    let mut found = Inspection::default();
    let timeout = if http_inspector { DETECTION_TIMEOUT } else { TLS_HELLO_TIMEOUT };
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut chunk = [0u8; 2048];
        let read = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(read)) => read,
            Ok(Err(_)) | Err(_) => break,
        };
        if read == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..read]);
        match classify(&buffer, tls_inspector, http_inspector) {
            Some(inspection) => {
                found = inspection;
                break;
            }
            None if buffer.len() >= INSPECT_LIMIT => break,
            None => {}
        }
    }
    (found, Box::pin(Prefixed { prefix: buffer, position: 0, inner: stream }))
}

/// `Some` once the bytes are enough to decide.
fn classify(bytes: &[u8], tls_inspector: bool, http_inspector: bool) -> Option<Inspection> {
    if tls_inspector && bytes.first() == Some(&0x16) {
        if bytes.len() < 5 {
            return None;
        }
        let record_length = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
        if bytes.len() < 5 + record_length {
            return None;
        }
        let mut acceptor = rustls::server::Acceptor::default();
        let mut reader: &[u8] = bytes;
        let _ = acceptor.read_tls(&mut reader);
        let mut found = Inspection { tls: true, ..Default::default() };
        if let Ok(Some(accepted)) = acceptor.accept() {
            let hello = accepted.client_hello();
            found.server_name = hello.server_name().map(str::to_string);
            found.application_protocols = hello
                .alpn()
                .map(|protocols| protocols.map(|p| String::from_utf8_lossy(p).into_owned()).collect())
                .unwrap_or_default();
        }
        return Some(found);
    }
    if http_inspector {
        const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        if PREFACE.starts_with(&bytes[..bytes.len().min(PREFACE.len())]) {
            return (bytes.len() >= PREFACE.len())
                .then(|| Inspection { application_protocols: vec!["h2c".into()], ..Default::default() });
        }
        let line_end = bytes.windows(2).position(|pair| pair == b"\r\n");
        let Some(line_end) = line_end else {
            // Still reading the request line, unless it already cannot be HTTP.
            let method_ok = bytes.iter().take_while(|b| **b != b' ').all(|b| b.is_ascii_uppercase());
            return (!method_ok || bytes.len() > 8192).then(Inspection::default);
        };
        let line = String::from_utf8_lossy(&bytes[..line_end]);
        let mut parts = line.split(' ');
        let (method, target, version) = (parts.next(), parts.next(), parts.next());
        let is_http = method.is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()))
            && target.is_some_and(|t| !t.is_empty())
            && parts.next().is_none();
        return Some(match (is_http, version) {
            (true, Some("HTTP/1.1")) => {
                Inspection { application_protocols: vec!["http/1.1".into()], ..Default::default() }
            }
            (true, Some("HTTP/1.0")) => {
                Inspection { application_protocols: vec!["http/1.0".into()], ..Default::default() }
            }
            _ => Inspection::default(),
        });
    }
    Some(Inspection::default())
}

/// A stream that first yields bytes already read from it.
pub(crate) struct Prefixed {
    prefix: Vec<u8>,
    position: usize,
    inner: BoxStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.position < self.prefix.len() {
            let remaining = &self.prefix[self.position..];
            let count = remaining.len().min(buf.remaining());
            buf.put_slice(&remaining[..count]);
            self.position += count;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_requests_and_preface_are_recognised() {
        let http11 = classify(b"GET /productpage HTTP/1.1\r\nHost: x\r\n", false, true).expect("decided");
        assert_eq!(http11.application_protocols, ["http/1.1"]);
        let h2 = classify(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false, true).expect("decided");
        assert_eq!(h2.application_protocols, ["h2c"]);
        assert_eq!(classify(b"PRI * HT", false, true), None, "wait for the whole preface");
        assert_eq!(classify(b"GET /x", false, true), None, "wait for the request line");
        assert_eq!(classify(b"\x00\x01binary", false, true), Some(Inspection::default()));
        assert_eq!(classify(b"hello world\r\n", false, true), Some(Inspection::default()));
    }

    #[tokio::test]
    async fn tls_client_hello_gives_sni_and_alpn_and_bytes_are_replayed() {
        // A real ClientHello from rustls.
        let mut config =
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
        config.alpn_protocols = vec![b"istio".to_vec(), b"h2".to_vec()];
        let name = rustls::pki_types::ServerName::try_from("reviews.default.svc.cluster.local").expect("name");
        let mut client = rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("client");
        let mut hello = Vec::new();
        client.write_tls(&mut hello).expect("hello");

        let (mut near, far) = tokio::io::duplex(64 * 1024);
        tokio::io::AsyncWriteExt::write_all(&mut near, &hello).await.expect("send");
        let (found, mut replay) = inspect(Box::pin(far), true, true).await;
        assert!(found.tls);
        assert_eq!(found.server_name.as_deref(), Some("reviews.default.svc.cluster.local"));
        assert_eq!(found.application_protocols, ["istio", "h2"]);
        let mut again = vec![0u8; hello.len()];
        replay.read_exact(&mut again).await.expect("replayed");
        assert_eq!(again, hello);
    }
}
