//! The TCP proxy filter: picks a cluster (by weight), a host (the load balancer's, or the
//! connection's original destination), connects under the cluster's connection limit, and
//! copies bytes both ways until both sides close or nothing moves for the idle timeout; then logs.
//! With Istio 1.4's mixer filter on the chain, the connection is reported to Mixer as it opens,
//! every report interval while it lasts, and when it closes. With istio-proxy's
//! `forward_downstream_sni` on the chain, the upstream TLS carries the downstream's SNI.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::access_log::{LogEntry, ResponseFlag};
use super::config::cluster::Discovery;
use super::config::listener::TcpProxyConfig;
use super::connection_stats::TcpProxyStats;
use super::context::TrafficContext;
use super::http::downstream::Downstream;
use super::mixer::report::ConnectionReport;
use super::upstream::pool::{connect_with_sni, BoxStream};

pub(crate) async fn proxy(
    context: &TrafficContext,
    config: &TcpProxyConfig,
    stats: &TcpProxyStats,
    downstream: &Downstream,
    stream: BoxStream,
    mut report: Option<ConnectionReport>,
) {
    let started = Instant::now();
    stats.downstream_cx_total.inc();
    let _active = stats.downstream_cx_active.track();
    let mut entry = LogEntry {
        start: Some(SystemTime::now()),
        downstream_local: Some(downstream.local),
        downstream_remote: Some(downstream.remote),
        server_name: downstream.server_name.clone(),
        ..Default::default()
    };
    let cluster_name = config.clusters.pick(|_| None).map(str::to_string);
    entry.upstream_cluster = cluster_name.clone();
    let outcome = async {
        let Some(cluster) = cluster_name.as_deref().and_then(|name| context.clusters.get(name)) else {
            return Err(ResponseFlag::NoClusterFound);
        };
        let host = match cluster.config.discovery {
            Discovery::OriginalDst => Some(cluster.original_dst_host(downstream.local)),
            _ => cluster.choose_host(None, &[]),
        };
        let Some(host) = host else {
            return Err(ResponseFlag::NoHealthyUpstream);
        };
        entry.upstream_host = Some(host.address);
        let Some(slot) = cluster.stats.upstream_cx_active.try_track(cluster.config.limits.max_connections) else {
            cluster.stats.upstream_rq_pending_overflow.inc();
            return Err(ResponseFlag::UpstreamOverflow);
        };
        let forwarded_sni = if config.forward_downstream_sni { downstream.server_name.as_deref() } else { None };
        let upstream = match connect_with_sni(&cluster, &host, forwarded_sni).await {
            Ok(upstream) => upstream,
            Err(error) => {
                cluster.record_outcome(&host, None);
                entry.upstream_failure = Some(format!("{error:?}"));
                return Err(ResponseFlag::UpstreamConnectionFailure);
            }
        };
        Ok((cluster, upstream, slot))
    }
    .await;
    let counters = Counters::default();
    match outcome {
        Ok((_cluster, upstream, _slot)) => {
            if let (Some(report), Some(host)) = (report.as_mut(), entry.upstream_host) {
                report.connected_to(host);
                report.event("open", 0, 0, None);
            }
            let copy = copy_with_idle_timeout(stream, upstream, config.idle_timeout, &counters);
            match report.as_mut() {
                Some(report) => {
                    let interval = report.interval;
                    tokio::pin!(copy);
                    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
                    loop {
                        tokio::select! {
                            () = &mut copy => break,
                            _ = ticks.tick() => {
                                let (received, sent) = counters.totals();
                                report.event("continue", received, sent, None);
                            }
                        }
                    }
                }
                None => copy.await,
            }
            (entry.bytes_received, entry.bytes_sent) = counters.totals();
        }
        Err(flag) => entry.flags.push(flag),
    }
    entry.duration = started.elapsed();
    if let Some(report) = report.as_mut() {
        report.event("close", entry.bytes_received, entry.bytes_sent, Some(&entry.flags_text()));
    }
    context.access_logs.write(&config.access_logs, &entry);
}

/// Bytes moved so far: received from the downstream, sent to it.
#[derive(Default)]
struct Counters {
    received: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
}

impl Counters {
    fn totals(&self) -> (u64, u64) {
        (self.received.load(Ordering::Relaxed), self.sent.load(Ordering::Relaxed))
    }
}

/// Copies both ways until both directions finish, or until nothing has moved for `idle`,
/// counting the bytes received from and sent to the downstream in `counters`.
async fn copy_with_idle_timeout(
    downstream: BoxStream,
    upstream: BoxStream,
    idle: Option<Duration>,
    counters: &Counters,
) {
    let last_activity = Arc::new(Mutex::new(Instant::now()));
    let (mut down_read, mut down_write) = tokio::io::split(downstream);
    let (mut up_read, mut up_write) = tokio::io::split(upstream);
    let upload = pump(&mut down_read, &mut up_write, last_activity.clone(), &counters.received);
    let download = pump(&mut up_read, &mut down_write, last_activity.clone(), &counters.sent);
    let both = async { tokio::join!(upload, download) };
    let Some(idle) = idle else {
        both.await;
        return;
    };
    tokio::pin!(both);
    loop {
        let deadline = *istio_runtime::sync::lock(&last_activity) + idle;
        tokio::select! {
            _ = &mut both => return,
            () = tokio::time::sleep_until(deadline.into()) => {
                let quiet_since = *istio_runtime::sync::lock(&last_activity);
                if quiet_since.elapsed() >= idle {
                    return;
                }
            }
        }
    }
}

/// Copies one direction, noting activity and counting bytes in `total`; shuts the writer down
/// at the end so the peer sees EOF.
async fn pump<R, W>(reader: &mut R, writer: &mut W, last_activity: Arc<Mutex<Instant>>, total: &AtomicU64)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if writer.write_all(&buffer[..read]).await.is_err() {
            break;
        }
        total.fetch_add(read as u64, Ordering::Relaxed);
        *istio_runtime::sync::lock(&last_activity) = Instant::now();
    }
    let _ = writer.shutdown().await;
}
