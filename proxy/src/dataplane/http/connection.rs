//! One downstream HTTP connection: served with hyper as HTTP/1.1, HTTP/2 or either (the
//! manager's codec), each request handed to the pipeline, until the connection closes or —
//! once the data plane drains — its in-flight requests finish.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::super::config::listener::{Codec, HttpManagerConfig};
use super::super::connection_stats::HttpManagerStats;
use super::super::context::TrafficContext;
use super::super::upstream::pool::BoxStream;
use super::downstream::Downstream;
use super::pipeline;

/// Serves one connection until it closes, or until draining lets in-flight requests finish.
pub(crate) async fn serve_connection(
    context: Arc<TrafficContext>,
    manager: Arc<HttpManagerConfig>,
    stats: Arc<HttpManagerStats>,
    downstream: Arc<Downstream>,
    stream: BoxStream,
    mut retired: tokio::sync::watch::Receiver<bool>,
) {
    stats.cx_total.inc();
    let _active = stats.cx_active.track();
    let codec = manager.codec;
    let mut draining = context.draining.subscribe();
    let http2_seen = Arc::new(AtomicBool::new(false));
    let service_http2_seen = http2_seen.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let (context, manager, stats, downstream) =
            (context.clone(), manager.clone(), stats.clone(), downstream.clone());
        if request.version() == http::Version::HTTP_2 {
            service_http2_seen.store(true, Ordering::Relaxed);
        }
        async move { Ok::<_, Infallible>(pipeline::handle(&context, &manager, &stats, downstream, request).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    match codec {
        Codec::Http1 => builder = builder.http1_only(),
        Codec::Http2 => builder = builder.http2_only(),
        Codec::Auto => {}
    }
    builder.http1().keep_alive(true);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    // Draining, as Envoy does it: HTTP/1.1 responses carry `connection: close` (see `finish`),
    // so idle keep-alive connections close after their next request; HTTP/2 gets a GOAWAY and
    // finishes its open streams. A connection whose filter chain an update changed or removed
    // finishes its in-flight requests and closes (an idle one at once), so the next request
    // opens a connection that the new chain (say, one that now requires mutual TLS) accepts.
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = draining.wait_for(|draining| *draining) => {
            if http2_seen.load(Ordering::Relaxed) {
                connection.as_mut().graceful_shutdown();
            }
        }
        Ok(_) = retired.wait_for(|retired| *retired) => connection.as_mut().graceful_shutdown(),
    }
    let _ = connection.await;
}
