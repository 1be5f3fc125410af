//! The requests of a state-of-the-world ADS stream, read from the gRPC request body.
//!
//! A proxy's EDS requests name every cluster it holds, tens of kilobytes each in a large mesh.
//! A general-purpose decoder keeps a buffer as large as the largest message it ever read, for as
//! long as the stream lives; here the buffer holds only the bytes of a message not yet complete,
//! and nothing between messages, so an idle stream costs no buffer at all.

use bytes::{Buf, BytesMut};
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use http_body_util::BodyExt;
use prost::Message;
use tonic::{Status, Streaming};

use super::wire::GRPC_PREFIX;

/// Reads `DiscoveryRequest`s from a request body, one message at a time.
pub(crate) struct FrameReader {
    body: tonic::body::Body,
    buffer: BytesMut,
    max_message_size: usize,
}

impl FrameReader {
    pub(crate) fn new(body: tonic::body::Body, max_message_size: usize) -> FrameReader {
        FrameReader { body, buffer: BytesMut::new(), max_message_size }
    }

    /// The next request; `None` when the proxy ended the stream.
    pub(crate) async fn message(&mut self) -> Result<Option<DiscoveryRequest>, Status> {
        loop {
            if let Some(message) = self.complete_message()? {
                return Ok(Some(message));
            }
            match self.body.frame().await {
                None if self.buffer.is_empty() => return Ok(None),
                None => return Err(Status::internal("the request stream ended inside a message")),
                Some(Err(status)) => return Err(status),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The message at the front of the buffer, once all of it is there.
    fn complete_message(&mut self) -> Result<Option<DiscoveryRequest>, Status> {
        if self.buffer.len() < GRPC_PREFIX {
            return Ok(None);
        }
        if self.buffer[0] != 0 {
            return Err(Status::unimplemented("compressed requests are not accepted"));
        }
        let length = u32::from_be_bytes([self.buffer[1], self.buffer[2], self.buffer[3], self.buffer[4]]) as usize;
        if length > self.max_message_size {
            return Err(Status::out_of_range(format!(
                "a request of {length} bytes is over the limit of {} bytes",
                self.max_message_size
            )));
        }
        if self.buffer.len() < GRPC_PREFIX + length {
            self.buffer.reserve(GRPC_PREFIX + length - self.buffer.len());
            return Ok(None);
        }
        let message = DiscoveryRequest::decode(&self.buffer[GRPC_PREFIX..GRPC_PREFIX + length])
            .map_err(|error| Status::internal(format!("undecodable DiscoveryRequest: {error}")))?;
        self.buffer.advance(GRPC_PREFIX + length);
        if self.buffer.is_empty() {
            // Let go of the message's bytes: nothing is kept between messages.
            self.buffer = BytesMut::new();
        }
        Ok(Some(message))
    }
}

/// A stream's requests: read here, or decoded by tonic (the generated service's path).
pub(crate) enum Incoming {
    Frames(FrameReader),
    Tonic(Streaming<DiscoveryRequest>),
}

impl Incoming {
    pub(crate) async fn message(&mut self) -> Result<Option<DiscoveryRequest>, Status> {
        match self {
            Incoming::Frames(reader) => reader.message().await,
            Incoming::Tonic(streaming) => streaming.message().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, Bytes};
    use http_body::Frame;

    fn framed(request: &DiscoveryRequest) -> Vec<u8> {
        let encoded = request.encode_to_vec();
        let mut framed = vec![0];
        framed.put_u32(encoded.len() as u32);
        framed.extend(encoded);
        framed
    }

    fn body(chunks: Vec<Vec<u8>>) -> tonic::body::Body {
        let frames = chunks.into_iter().map(|chunk| Ok::<_, Status>(Frame::data(Bytes::from(chunk))));
        tonic::body::Body::new(http_body_util::StreamBody::new(futures::stream::iter(frames)))
    }

    fn request(names: usize) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: istio_xds::type_url::ENDPOINT.into(),
            resource_names: (0..names).map(|index| format!("outbound|80||svc{index}.default")).collect(),
            ..Default::default()
        }
    }

    /// Messages split across frames, and several in one frame, come out whole and in order,
    /// and the buffer is let go between messages.
    #[tokio::test]
    async fn messages_are_read_across_and_within_frames() {
        let (first, second, third) = (request(300), request(1), request(2));
        let mut bytes = framed(&first);
        let tail = bytes.split_off(100);
        let mut last = tail;
        last.extend(framed(&second));
        last.extend(framed(&third));
        let mut reader = FrameReader::new(body(vec![bytes, last[..7].to_vec(), last[7..].to_vec()]), 1 << 20);
        assert_eq!(reader.message().await.expect("first"), Some(first));
        assert_eq!(reader.message().await.expect("second"), Some(second));
        assert_eq!(reader.message().await.expect("third"), Some(third));
        assert_eq!(reader.buffer.capacity(), 0, "nothing kept between messages");
        assert_eq!(reader.message().await.expect("the end"), None);
    }

    #[tokio::test]
    async fn oversized_compressed_and_cut_off_messages_are_errors() {
        let mut reader = FrameReader::new(body(vec![framed(&request(50))]), 100);
        assert_eq!(reader.message().await.expect_err("too large").code(), tonic::Code::OutOfRange);

        let mut compressed = framed(&request(1));
        compressed[0] = 1;
        let mut reader = FrameReader::new(body(vec![compressed]), 1 << 20);
        assert_eq!(reader.message().await.expect_err("compressed").code(), tonic::Code::Unimplemented);

        let mut cut = framed(&request(3));
        cut.truncate(cut.len() - 1);
        let mut reader = FrameReader::new(body(vec![cut]), 1 << 20);
        assert_eq!(reader.message().await.expect_err("cut off").code(), tonic::Code::Internal);
    }
}
