//! Helpers the Citadel tests share.

/// `GET /metrics` on Citadel's monitoring server: the whole HTTP response.
pub(crate) async fn metrics(address: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    stream.write_all(b"GET /metrics HTTP/1.1\r\nhost: citadel\r\nconnection: close\r\n\r\n").await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}
