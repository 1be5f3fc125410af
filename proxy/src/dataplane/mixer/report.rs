//! Reports to Mixer, batched as 1.4's client batched them: each request's (or connection
//! event's) attributes join the batch of its report cluster, and a batch goes out as one
//! delta-encoded `Report` when it holds `report_batch_max_entries` entries or its first entry
//! has waited `report_batch_max_time`. A report that cannot be delivered is dropped with a
//! debug line, as 1.4 dropped it: reports never hold traffic up.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use istio_attribute::dictionary::global_words;
use istio_attribute::wire::batch::BatchEncoder;
use istio_attribute::{MapBag, Value};
use tokio::sync::mpsc;

use super::super::upstream::ClusterManager;
use super::channel;
use super::config::Transport;

/// How long one `Report` call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Entries waiting beyond this many are dropped rather than queued without bound.
const QUEUE_LIMIT: usize = 10_000;

/// A request's attributes waiting for its response, and where they will be reported.
#[derive(Debug)]
pub(crate) struct PendingReport {
    pub reporter: Arc<Reporter>,
    pub attributes: MapBag,
    /// A client-side (or gateway) report: the destination is the upstream host.
    pub outbound: bool,
    pub request_header_bytes: u64,
}

/// A TCP connection's reports: `open` once the upstream is connected, `continue` every
/// interval while it lasts, `close` at its end; byte counts are those since the previous
/// report, with running totals beside them.
#[derive(Debug)]
pub(crate) struct ConnectionReport {
    pub reporter: Arc<Reporter>,
    pub attributes: MapBag,
    pub interval: Duration,
    pub outbound: bool,
    started: std::time::Instant,
    reported_received: u64,
    reported_sent: u64,
}

impl ConnectionReport {
    pub(crate) fn new(reporter: Arc<Reporter>, attributes: MapBag, interval: Duration, outbound: bool) -> Self {
        ConnectionReport {
            reporter,
            attributes,
            interval,
            outbound,
            started: std::time::Instant::now(),
            reported_received: 0,
            reported_sent: 0,
        }
    }

    /// Names the upstream host as the destination of a client-side connection.
    pub(crate) fn connected_to(&mut self, upstream: std::net::SocketAddr) {
        if self.outbound {
            let address = istio_attribute::value::ip_to_16_bytes(upstream.ip()).to_vec();
            self.attributes.set("destination.ip", Value::Bytes(address.into()));
            self.attributes.set("destination.port", Value::Int64(i64::from(upstream.port())));
        }
    }

    /// Reports `event` (`open`, `continue`, `close`) with the totals so far.
    pub(crate) fn event(&mut self, event: &str, received_total: u64, sent_total: u64, flags: Option<&str>) {
        let count = |bytes: u64| Value::Int64(i64::try_from(bytes).unwrap_or(i64::MAX));
        let mut attributes = self.attributes.clone();
        attributes.set("connection.event", Value::String(event.to_string().into()));
        attributes.set("connection.received.bytes", count(received_total.saturating_sub(self.reported_received)));
        attributes.set("connection.received.bytes_total", count(received_total));
        attributes.set("connection.sent.bytes", count(sent_total.saturating_sub(self.reported_sent)));
        attributes.set("connection.sent.bytes_total", count(sent_total));
        let elapsed = i64::try_from(self.started.elapsed().as_nanos()).unwrap_or(i64::MAX);
        attributes.set("connection.duration", Value::Duration(elapsed));
        attributes.set("context.time", Value::Timestamp(istio_attribute::Timestamp::now()));
        if let Some(flags) = flags {
            attributes.set("context.proxy_error_code", Value::String(flags.to_string().into()));
        }
        self.reported_received = received_total;
        self.reported_sent = sent_total;
        self.reporter.report(attributes);
    }
}

/// The batch of one report cluster.
#[derive(Debug)]
pub(crate) struct Reporter {
    entries: mpsc::Sender<MapBag>,
}

/// Reporters by (cluster manager, cluster, batch size, batch time).
type Registry = RwLock<HashMap<(usize, String, usize, Duration), Arc<Reporter>>>;

fn registry() -> &'static Registry {
    static REPORTERS: OnceLock<Registry> = OnceLock::new();
    REPORTERS.get_or_init(Default::default)
}

impl Reporter {
    /// The reporter for `transport`'s report cluster; `None` when it names none.
    pub(crate) fn shared(clusters: &Arc<ClusterManager>, transport: &Transport) -> Option<Arc<Reporter>> {
        if transport.report_cluster.is_empty() {
            return None;
        }
        let key = (
            Arc::as_ptr(clusters) as usize,
            transport.report_cluster.clone(),
            transport.report_batch_entries,
            transport.report_batch_time,
        );
        if let Some(reporter) = registry().read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&key) {
            return Some(reporter.clone());
        }
        let mut reporters = registry().write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let reporter = reporters.entry(key).or_insert_with(|| {
            let (entries, queue) = mpsc::channel(QUEUE_LIMIT);
            tokio::spawn(batch(
                Arc::downgrade(clusters),
                transport.report_cluster.clone(),
                transport.report_batch_entries.max(1),
                transport.report_batch_time,
                queue,
            ));
            Arc::new(Reporter { entries })
        });
        Some(reporter.clone())
    }

    /// Queues one entry.
    pub(crate) fn report(&self, attributes: MapBag) {
        if self.entries.try_send(attributes).is_err() {
            tracing::debug!("report dropped: the report queue is full");
        }
    }
}

/// Gathers entries into batches and sends each; ends when the proxy's clusters are gone.
async fn batch(
    clusters: std::sync::Weak<ClusterManager>,
    cluster: String,
    max_entries: usize,
    max_time: Duration,
    mut queue: mpsc::Receiver<MapBag>,
) {
    while let Some(first) = queue.recv().await {
        let mut encoder = BatchEncoder::delta(global_words().len());
        encoder.add(first);
        let deadline = tokio::time::Instant::now() + max_time;
        while encoder.len() < max_entries {
            tokio::select! {
                next = queue.recv() => match next {
                    Some(entry) => encoder.add(entry),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let Some(clusters) = clusters.upgrade() else { return };
        let request = encoder.finish();
        let cluster = cluster.clone();
        tokio::spawn(async move {
            let entries = request.attributes.len();
            if let Err(error) = channel::report(&clusters, &cluster, request, CALL_TIMEOUT).await {
                tracing::debug!(%error, entries, "report to {cluster} dropped");
            }
        });
    }
}
