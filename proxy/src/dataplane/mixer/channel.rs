//! Calls to Mixer (`Check` and `Report`) over this data plane's own upstream connections: a tower service that sends
//! each gRPC request to a host of the check cluster (HTTP/2, as Pilot configures gRPC
//! clusters), so tonic's generated client runs on the proxy's pools, load balancing and
//! circuit breakers, with `:authority` `mixer` as 1.4's client sent it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use istio_api::pb::istio::mixer::v1 as mixer;

use super::super::body;
use super::super::upstream::pool::checkout;
use super::super::upstream::ClusterManager;

/// Why a call to Mixer did not get an answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("no cluster {0}")]
    NoCluster(String),
    #[error("cluster {0} has no healthy host")]
    NoHost(String),
    #[error("upstream connect error or disconnect/reset before headers: {0}")]
    Connect(String),
    #[error("upstream request timeout")]
    Timeout,
    #[error("{0}")]
    Status(tonic::Status),
}

/// A tower service over a cluster.
#[derive(Clone)]
pub(crate) struct ClusterChannel {
    clusters: Arc<ClusterManager>,
    cluster: String,
    deadline: Instant,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<http::Request<tonic::body::Body>> for ClusterChannel {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let (clusters, name, deadline) = (self.clusters.clone(), self.cluster.clone(), self.deadline);
        Box::pin(async move {
            // Failures before Mixer answers are UNAVAILABLE, as the proxy's transport made them.
            let unavailable = |error: CallError| Box::new(tonic::Status::unavailable(error.to_string())) as BoxError;
            let cluster = clusters.get(&name).ok_or_else(|| unavailable(CallError::NoCluster(name.clone())))?;
            let host = cluster.choose_host(None, &[]).ok_or_else(|| unavailable(CallError::NoHost(name.clone())))?;
            let lease = checkout(&cluster, &host, Some(deadline))
                .await
                .map_err(|error| unavailable(CallError::Connect(error.to_string())))?;
            // A unary request: its body is one small message, sent whole.
            let (parts, message) = request.into_parts();
            let message = http_body_util::BodyExt::collect(message)
                .await
                .map_err(|error| Box::new(error) as BoxError)?
                .to_bytes();
            let request = http::Request::from_parts(parts, body::full(message));
            lease
                .send(&cluster, &host, request)
                .await
                .map_err(|error| unavailable(CallError::Connect(error.to_string())))
        })
    }
}

/// One `Check` to the cluster, within `timeout`.
pub(crate) async fn check(
    clusters: &Arc<ClusterManager>,
    cluster: &str,
    request: mixer::CheckRequest,
    timeout: Duration,
) -> Result<mixer::CheckResponse, CallError> {
    let channel =
        ClusterChannel { clusters: clusters.clone(), cluster: cluster.to_string(), deadline: Instant::now() + timeout };
    let origin = http::Uri::from_static("http://mixer");
    let mut client = mixer::mixer_client::MixerClient::with_origin(channel, origin);
    match tokio::time::timeout(timeout, client.check(request)).await {
        Err(_) => Err(CallError::Timeout),
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(CallError::Status(status)),
    }
}

/// One `Report` to the cluster, within `timeout`.
pub(crate) async fn report(
    clusters: &Arc<ClusterManager>,
    cluster: &str,
    request: mixer::ReportRequest,
    timeout: Duration,
) -> Result<(), CallError> {
    let channel =
        ClusterChannel { clusters: clusters.clone(), cluster: cluster.to_string(), deadline: Instant::now() + timeout };
    let origin = http::Uri::from_static("http://mixer");
    let mut client = mixer::mixer_client::MixerClient::with_origin(channel, origin);
    match tokio::time::timeout(timeout, client.report(request)).await {
        Err(_) => Err(CallError::Timeout),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) => Err(CallError::Status(status)),
    }
}

impl CallError {
    /// The status a failed call counts as (1.4 passed the transport's status on).
    pub(crate) fn status(&self) -> super::config::Status {
        match self {
            CallError::Status(status) => super::config::Status::new(status.code() as i32, status.message()),
            other => super::config::Status::new(super::config::UNAVAILABLE, other.to_string()),
        }
    }
}
