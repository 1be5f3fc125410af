//! Protocol upgrades (WebSocket): refused with 403 when the connection manager does not allow
//! them, as Envoy does; once the upstream accepts one (101), bytes flow both ways between the
//! two upgraded connections until either side closes.

use http::header::UPGRADE;
use http::{HeaderMap, Request};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::super::config::listener::HttpManagerConfig;

/// The downstream side of an upgrade the request asks for, to bridge if the upstream agrees.
pub(crate) fn requested(request: &mut Request<Incoming>) -> Option<OnUpgrade> {
    request.headers().contains_key(UPGRADE).then(|| hyper::upgrade::on(request))
}

/// Whether the request asks for a WebSocket upgrade the manager does not allow.
pub(crate) fn refused(manager: &HttpManagerConfig, headers: &HeaderMap) -> bool {
    let websocket = headers.get(UPGRADE).is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"websocket"));
    websocket && !manager.websocket
}

/// Bridges an accepted upgrade: bytes flow both ways until either side closes.
pub(crate) async fn bridge(downstream: OnUpgrade, upstream: OnUpgrade) {
    let (Ok(upstream), Ok(downstream)) = (upstream.await, downstream.await) else { return };
    let mut upstream = TokioIo::new(upstream);
    let mut downstream = TokioIo::new(downstream);
    let _ = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::http::testing::{manager, parts, route_table};

    #[test]
    fn websocket_upgrades_need_the_manager_to_allow_them() {
        let mut manager = manager(route_table(serde_json::json!({"name": "t"})));
        let upgrade = parts("GET", "/", &[("upgrade", "WebSocket"), ("connection", "upgrade")]);
        assert!(refused(&manager, &upgrade.headers));
        assert!(!refused(&manager, &parts("GET", "/", &[]).headers));
        assert!(!refused(&manager, &parts("GET", "/", &[("upgrade", "h2c")]).headers), "only WebSocket is checked");
        manager.websocket = true;
        assert!(!refused(&manager, &upgrade.headers));
    }
}
