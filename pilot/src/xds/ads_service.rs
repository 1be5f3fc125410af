//! The ADS gRPC service as Pilot's servers mount it. State-of-the-world streams are answered
//! here with response bodies assembled from the resources' shared encodings (`wire`); every
//! other method (the delta stream) goes to tonic's generated service.

use std::convert::Infallible;
use std::task::{Context, Poll};

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::NamedService;
use tonic::Status;

use super::ads::AdsServer;
use super::requests::{FrameReader, Incoming};
use super::wire::ResponseBody;

/// The largest request or response Pilot takes or sends (the proxies' EDS requests name every
/// cluster they hold).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// The largest HTTP/2 frame proxies may send Pilot. The default (16 KB) splits a large mesh's
/// EDS ACK (every cluster named, about 45 KB at 1000 services) over three or more frames; a
/// proxy then sends each ACK as one frame, up to its flow-control window, and Pilot reads it in
/// place.
pub const MAX_FRAME_SIZE: u32 = 1024 * 1024;

const SOTW_PATH: &str = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";

/// `envoy.service.discovery.v3.AggregatedDiscoveryService`, ready for a tonic server.
#[derive(Clone)]
pub struct AdsService {
    server: AdsServer,
    generated: AggregatedDiscoveryServiceServer<AdsServer>,
}

impl AdsService {
    pub fn new(server: AdsServer) -> AdsService {
        let generated = AggregatedDiscoveryServiceServer::new(server.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        AdsService { server, generated }
    }

    /// Answers a state-of-the-world stream.
    fn sotw(&self, request: http::Request<tonic::body::Body>) -> http::Response<tonic::body::Body> {
        // Proxies send requests uncompressed unless told otherwise, and nothing here tells them.
        let encoding = request.headers().get("grpc-encoding").map(|value| value.as_bytes());
        if encoding.is_some_and(|encoding| encoding != b"identity") {
            return Status::unimplemented("compressed requests are not accepted").into_http();
        }
        let incoming = Incoming::Frames(FrameReader::new(request.into_body(), MAX_MESSAGE_SIZE));
        let body = ResponseBody::new(self.server.spawn_sotw(incoming));
        let mut response = http::Response::new(tonic::body::Body::new(body));
        response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
        response
    }
}

impl NamedService for AdsService {
    const NAME: &'static str = <AggregatedDiscoveryServiceServer<AdsServer> as NamedService>::NAME;
}

impl Service<http::Request<tonic::body::Body>> for AdsService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() == SOTW_PATH {
            let response = self.sotw(request);
            return Box::pin(async move { Ok(response) });
        }
        let mut generated = self.generated.clone();
        Box::pin(async move { generated.call(request).await })
    }
}
