//! State-of-the-world xDS responses as gRPC wire bytes assembled from shared pieces.
//!
//! Every generated resource is encoded once, when it is generated, as one entry of a
//! response's repeated `resources` field. A response to one proxy is then a few bytes of its own
//! (the gRPC message prefix, version, type and nonce) followed by those shared entries, which go
//! to the transport as they are: nothing is copied or re-encoded per proxy, and no stream keeps
//! an encode buffer the size of the largest response it ever sent.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use envoy_types::pb::google::protobuf::Any;
use http_body::Frame;
use prost::Message;
use tokio::sync::mpsc;
use tonic::Status;

/// `DiscoveryResponse.resources`.
const RESOURCES_FIELD: u32 = 2;
/// The gRPC message prefix: a compression flag and a big-endian length.
pub(crate) const GRPC_PREFIX: usize = 5;

/// `resource` encoded as one entry of `DiscoveryResponse.resources` (field key, length, `Any`).
pub(crate) fn resource_entry(resource: &Any) -> Bytes {
    let mut entry = BytesMut::with_capacity(prost::encoding::message::encoded_len(RESOURCES_FIELD, resource));
    prost::encoding::message::encode(RESOURCES_FIELD, resource, &mut entry);
    entry.freeze()
}

/// One response as the pieces of a gRPC message: its prefix and own fields, then each
/// resource's shared entry.
#[derive(Debug, Clone)]
pub(crate) struct WireResponse {
    chunks: Vec<Bytes>,
}

impl WireResponse {
    /// A `DiscoveryResponse` of `version`, `type_url` and `nonce` carrying `entries` (made by
    /// [`resource_entry`]); fails only for a message over gRPC's 4 GiB limit.
    pub(crate) fn new(
        version: &str,
        type_url: &str,
        nonce: &str,
        entries: impl IntoIterator<Item = Bytes>,
    ) -> Result<WireResponse, Status> {
        let own = DiscoveryResponse {
            version_info: version.to_string(),
            type_url: type_url.to_string(),
            nonce: nonce.to_string(),
            ..Default::default()
        };
        let mut chunks = vec![Bytes::new()];
        chunks.extend(entries);
        let length = own.encoded_len() + chunks.iter().map(Bytes::len).sum::<usize>();
        let length = u32::try_from(length)
            .map_err(|_| Status::resource_exhausted(format!("a {type_url} response of {length} bytes")))?;
        let mut head = BytesMut::with_capacity(GRPC_PREFIX + own.encoded_len());
        head.put_u8(0); // not compressed
        head.put_u32(length);
        own.encode(&mut head).map_err(|error| Status::internal(error.to_string()))?;
        chunks[0] = head.freeze();
        Ok(WireResponse { chunks })
    }

    /// The message itself, decoded (for callers that want a `DiscoveryResponse` value).
    pub(crate) fn to_message(&self) -> Result<DiscoveryResponse, Status> {
        let mut bytes = BytesMut::with_capacity(self.chunks.iter().map(Bytes::len).sum());
        self.chunks.iter().for_each(|chunk| bytes.put_slice(chunk));
        DiscoveryResponse::decode(&bytes[GRPC_PREFIX..]).map_err(|error| Status::internal(error.to_string()))
    }
}

/// A response on its way to a proxy, holding its push-throttle permit until the transport takes
/// it, so the throttle bounds responses in flight and not only responses being built. An `Err`
/// ends the stream with that status.
pub(crate) type Outgoing = (Option<tokio::sync::OwnedSemaphorePermit>, Result<WireResponse, Status>);

/// Pieces at least this long go to the transport as they are; shorter ones are copied together.
const SHARED_PIECE: usize = 4096;
/// The most bytes short pieces are copied together into.
const JOINED_FRAME: usize = 64 * 1024;

/// The next data frame of `pending`: a long piece as it is, or a run of short ones copied
/// together (a frame per piece of a few hundred bytes would cost more than the copy).
fn next_frame(pending: &mut VecDeque<Bytes>) -> Option<Bytes> {
    let short = |piece: &Bytes| piece.len() < SHARED_PIECE;
    let run = pending.iter().take_while(|piece| short(piece)).scan(0, |length, piece| {
        *length += piece.len();
        (*length <= JOINED_FRAME).then_some(*length)
    });
    let (count, length) = run.enumerate().last().map_or((0, 0), |(index, length)| (index + 1, length));
    if count <= 1 {
        return pending.pop_front();
    }
    let mut joined = BytesMut::with_capacity(length);
    pending.drain(..count).for_each(|piece| joined.put_slice(&piece));
    Some(joined.freeze())
}

/// The body of one ADS response stream: each queued response's pieces as data frames, then the
/// gRPC trailers (the status the stream ended with, or OK when it simply ended).
pub(crate) struct ResponseBody {
    responses: mpsc::Receiver<Outgoing>,
    pending: VecDeque<Bytes>,
    finished: bool,
}

impl ResponseBody {
    pub(crate) fn new(responses: mpsc::Receiver<Outgoing>) -> ResponseBody {
        ResponseBody { responses, pending: VecDeque::new(), finished: false }
    }
}

fn trailers(status: &Status) -> Frame<Bytes> {
    let mut headers = http::HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        // A message that cannot be a header value: the code alone still ends the stream right.
        let _ = Status::new(status.code(), "").add_header(&mut headers);
    }
    Frame::trailers(headers)
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(chunk) = next_frame(&mut self.pending) {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if self.finished {
            return Poll::Ready(None);
        }
        let frame = match ready!(self.responses.poll_recv(cx)) {
            Some((permit, Ok(response))) => {
                drop(permit);
                self.pending = response.chunks.into();
                Frame::data(next_frame(&mut self.pending).unwrap_or_default())
            }
            Some((_, Err(status))) => {
                self.finished = true;
                trailers(&status)
            }
            None => {
                self.finished = true;
                trailers(&Status::ok(""))
            }
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.finished && self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn any(type_url: &str, value: &[u8]) -> Any {
        Any { type_url: type_url.to_string(), value: value.to_vec() }
    }

    /// The assembled bytes are exactly what prost encodes for the same response.
    #[test]
    fn assembled_responses_decode_as_the_message_prost_would_encode() {
        let resources = vec![any("type.googleapis.com/a", b"one"), any("type.googleapis.com/b", &[7; 300])];
        let response = WireResponse::new("7", "type.googleapis.com/x", "7-3", resources.iter().map(resource_entry))
            .expect("response");
        let expected = DiscoveryResponse {
            version_info: "7".into(),
            resources: resources.clone(),
            type_url: "type.googleapis.com/x".into(),
            nonce: "7-3".into(),
            ..Default::default()
        };
        assert_eq!(response.to_message().expect("decodes"), expected);
        let length = u32::from_be_bytes(response.chunks[0][1..5].try_into().expect("prefix"));
        assert_eq!(length as usize, expected.encoded_len());
        assert_eq!(response.chunks[0][0], 0, "uncompressed");
        let empty = WireResponse::new("1", "t", "n", Vec::new()).expect("empty response");
        assert_eq!(empty.to_message().expect("decodes").resources, Vec::<Any>::new());
    }

    /// Short pieces are joined up to a frame's worth; long ones go as they are.
    #[test]
    fn short_pieces_are_joined_and_long_ones_shared() {
        let piece = |length: usize, byte: u8| Bytes::from(vec![byte; length]);
        let long = piece(SHARED_PIECE, 9);
        let mut pending: VecDeque<Bytes> =
            [piece(10, 1), piece(20, 2), long.clone(), piece(30, 3)].into_iter().collect();
        let joined = next_frame(&mut pending).expect("frame");
        assert_eq!(joined.len(), 30);
        assert!(joined.starts_with(&[1; 10]) && joined.ends_with(&[2; 20]));
        let shared = next_frame(&mut pending).expect("frame");
        assert_eq!(shared.as_ptr(), long.as_ptr(), "not copied");
        assert_eq!(next_frame(&mut pending).expect("frame").len(), 30);
        assert!(next_frame(&mut pending).is_none());

        let mut many: VecDeque<Bytes> = (0..40).map(|_| piece(SHARED_PIECE - 1, 5)).collect();
        let mut lengths = Vec::new();
        while let Some(frame) = next_frame(&mut many) {
            lengths.push(frame.len());
        }
        assert!(lengths.iter().all(|length| *length <= JOINED_FRAME), "{lengths:?}");
        assert_eq!(lengths.iter().sum::<usize>(), 40 * (SHARED_PIECE - 1));
        assert_eq!(lengths.len(), 3, "{lengths:?}");
    }

    /// The body yields each response's pieces in order, then OK trailers; an error ends it with
    /// that status.
    #[tokio::test]
    async fn the_body_frames_responses_then_ends_with_the_status() {
        let (sender, receiver) = mpsc::channel(4);
        let entry = resource_entry(&any("t", b"v"));
        let response = WireResponse::new("1", "t", "1-1", [entry.clone()]).expect("response");
        sender.send((None, Ok(response.clone()))).await.expect("queued");
        drop(sender);
        let collected = ResponseBody::new(receiver).collect().await.expect("body");
        let trailers = collected.trailers().cloned().expect("trailers");
        assert_eq!(trailers.get("grpc-status").map(|value| value.as_bytes()), Some(&b"0"[..]));
        let bytes = collected.to_bytes();
        assert_eq!(bytes.len(), response.chunks.iter().map(Bytes::len).sum::<usize>());
        assert!(bytes.ends_with(&entry));

        let (sender, receiver) = mpsc::channel(4);
        sender.send((None, Err(Status::invalid_argument("no node")))).await.expect("queued");
        let collected = ResponseBody::new(receiver).collect().await.expect("body");
        let trailers = collected.trailers().cloned().expect("trailers");
        assert_eq!(trailers.get("grpc-status").map(|value| value.as_bytes()), Some(&b"3"[..]));
        assert_eq!(
            trailers.get("grpc-message").map(|value| value.as_bytes()),
            Some(&b"no%20node"[..]),
            "percent-encoded"
        );
    }
}
