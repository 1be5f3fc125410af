//! The requests of a state-of-the-world ADS stream, read from the gRPC request body.
//!
//! A proxy's EDS requests name every cluster it holds, tens of kilobytes each in a large mesh,
//! and it sends one with every ACK. Two costs are avoided here:
//! - A general-purpose decoder keeps a buffer as large as the largest message it ever read, for
//!   as long as the stream lives. Here the buffer holds only the bytes of a message not yet
//!   complete, and nothing between messages, so an idle stream costs no buffer at all.
//! - The names are not decoded up front (a string each, a thousand per ACK). They stay in the
//!   message's bytes (`RequestNames`), where the stream compares them with the names it holds
//!   and decodes them only when they differ, which after the first request they rarely do.
//! - A message that arrives whole in one HTTP/2 DATA frame (Pilot accepts frames as large as a
//!   proxy's flow-control window) is read from the frame's bytes without being copied.

use bytes::{Buf, Bytes, BytesMut};
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use http_body_util::BodyExt;
use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};
use prost::Message;
use tonic::{Status, Streaming};

use super::wire::GRPC_PREFIX;

/// `DiscoveryRequest.resource_names`'s field number.
const RESOURCE_NAMES_FIELD: u32 = 3;

/// One request: every field but the names, and the names.
#[derive(Debug)]
pub(crate) struct SotwRequest {
    /// The request without `resource_names`.
    pub message: DiscoveryRequest,
    pub names: RequestNames,
}

/// A request's `resource_names`: decoded (tonic's path), or still in the message's bytes.
#[derive(Debug)]
pub(crate) enum RequestNames {
    Decoded(Vec<String>),
    /// The encoded message; its `resource_names` fields are the names, in order.
    Encoded(Bytes),
}

impl RequestNames {
    /// Whether the names are exactly `held`, in order (compared without decoding them).
    pub(crate) fn equal_to(&self, held: &[String]) -> bool {
        match self {
            RequestNames::Decoded(names) => names == held,
            RequestNames::Encoded(message) => {
                let mut held = held.iter();
                let mut all_equal = true;
                let scanned = for_each_name(message, |name| {
                    all_equal = all_equal && held.next().is_some_and(|expected| expected.as_bytes() == name);
                });
                scanned.is_ok() && all_equal && held.next().is_none()
            }
        }
    }

    /// The names, decoded.
    pub(crate) fn into_vec(self) -> Result<Vec<String>, Status> {
        match self {
            RequestNames::Decoded(names) => Ok(names),
            RequestNames::Encoded(message) => {
                let mut names = Vec::new();
                let mut invalid = false;
                for_each_name(&message, |name| match std::str::from_utf8(name) {
                    Ok(name) => names.push(name.to_string()),
                    Err(_) => invalid = true,
                })
                .map_err(undecodable)?;
                if invalid {
                    return Err(undecodable("a resource name is not UTF-8"));
                }
                Ok(names)
            }
        }
    }
}

/// The status that ends a stream whose request cannot be decoded.
fn undecodable(error: impl std::fmt::Display) -> Status {
    Status::internal(format!("undecodable DiscoveryRequest: {error}"))
}

/// Why a request's encoded names cannot be read.
#[derive(Debug, thiserror::Error)]
enum NamesError {
    #[error(transparent)]
    Decode(#[from] prost::DecodeError),
    #[error("a resource name runs past the message")]
    PastTheEnd,
}

/// Calls `visit` with the bytes of each `resource_names` entry of an encoded request, in order.
fn for_each_name(message: &[u8], mut visit: impl FnMut(&[u8])) -> Result<(), NamesError> {
    let mut buf = message;
    while buf.has_remaining() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        if tag == RESOURCE_NAMES_FIELD && wire_type == WireType::LengthDelimited {
            let length = usize::try_from(decode_varint(&mut buf)?).unwrap_or(usize::MAX);
            if length > buf.remaining() {
                return Err(NamesError::PastTheEnd);
            }
            visit(&buf[..length]);
            buf.advance(length);
        } else {
            skip_field(wire_type, tag, &mut buf, DecodeContext::default())?;
        }
    }
    Ok(())
}

/// Decodes every field of an encoded request but `resource_names`, which it leaves encoded.
fn decode_without_names(message: Bytes) -> Result<SotwRequest, prost::DecodeError> {
    // The other fields (type, version, nonce, the node on the first request) are copied out and
    // decoded; they are a small part of a request that names many resources.
    let mut rest = Vec::new();
    let mut buf = &message[..];
    while buf.has_remaining() {
        let field_start = message.len() - buf.remaining();
        let (tag, wire_type) = decode_key(&mut buf)?;
        skip_field(wire_type, tag, &mut buf, DecodeContext::default())?;
        if tag != RESOURCE_NAMES_FIELD {
            rest.extend_from_slice(&message[field_start..message.len() - buf.remaining()]);
        }
    }
    let decoded = DiscoveryRequest::decode(rest.as_slice())?;
    Ok(SotwRequest { message: decoded, names: RequestNames::Encoded(message) })
}

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
    pub(crate) async fn message(&mut self) -> Result<Option<SotwRequest>, Status> {
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
                        if let Some(message) = self.whole_in_frame(data)? {
                            return Ok(Some(message));
                        }
                    }
                }
            }
        }
    }

    /// A message that starts a DATA frame and ends within it is decoded from the frame's bytes,
    /// uncopied (Pilot lets proxies send frames as large as their flow-control window, so a
    /// whole ACK usually arrives in one). Anything else goes to the buffer.
    fn whole_in_frame(&mut self, mut data: Bytes) -> Result<Option<SotwRequest>, Status> {
        if self.buffer.is_empty() {
            if let Some(length) = self.message_length(&data)? {
                if data.len() >= GRPC_PREFIX + length {
                    let message = data.slice(GRPC_PREFIX..GRPC_PREFIX + length);
                    data.advance(GRPC_PREFIX + length);
                    self.buffer.extend_from_slice(&data);
                    return decode_without_names(message).map(Some).map_err(undecodable);
                }
            }
        }
        self.buffer.extend_from_slice(&data);
        Ok(None)
    }

    /// The length of the message whose gRPC prefix starts `bytes`; `None` until the prefix is
    /// all there.
    fn message_length(&self, bytes: &[u8]) -> Result<Option<usize>, Status> {
        if bytes.len() < GRPC_PREFIX {
            return Ok(None);
        }
        if bytes[0] != 0 {
            return Err(Status::unimplemented("compressed requests are not accepted"));
        }
        let length = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        if length > self.max_message_size {
            return Err(Status::out_of_range(format!(
                "a request of {length} bytes is over the limit of {} bytes",
                self.max_message_size
            )));
        }
        Ok(Some(length))
    }

    /// The message at the front of the buffer, once all of it is there.
    fn complete_message(&mut self) -> Result<Option<SotwRequest>, Status> {
        let Some(length) = self.message_length(&self.buffer)? else {
            return Ok(None);
        };
        if self.buffer.len() < GRPC_PREFIX + length {
            self.buffer.reserve(GRPC_PREFIX + length - self.buffer.len());
            return Ok(None);
        }
        let mut framed = self.buffer.split_to(GRPC_PREFIX + length).freeze();
        if self.buffer.is_empty() {
            // Nothing is kept between messages: the message's bytes go with the request.
            self.buffer = BytesMut::new();
        }
        let message = framed.split_off(GRPC_PREFIX);
        let request = decode_without_names(message).map_err(undecodable)?;
        Ok(Some(request))
    }
}

/// A stream's requests: read here, or decoded by tonic (the generated service's path).
pub(crate) enum Incoming {
    Frames(FrameReader),
    Tonic(Streaming<DiscoveryRequest>),
}

impl Incoming {
    pub(crate) async fn message(&mut self) -> Result<Option<SotwRequest>, Status> {
        match self {
            Incoming::Frames(reader) => reader.message().await,
            Incoming::Tonic(streaming) => Ok(streaming.message().await?.map(|mut message| {
                let names = RequestNames::Decoded(std::mem::take(&mut message.resource_names));
                SotwRequest { message, names }
            })),
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
        body_of(chunks.into_iter().map(Bytes::from).collect())
    }

    fn body_of(chunks: Vec<Bytes>) -> tonic::body::Body {
        let frames = chunks.into_iter().map(|chunk| Ok::<_, Status>(Frame::data(chunk)));
        tonic::body::Body::new(http_body_util::StreamBody::new(futures::stream::iter(frames)))
    }

    /// The request as one message again.
    fn whole(request: SotwRequest) -> DiscoveryRequest {
        let mut message = request.message;
        message.resource_names = request.names.into_vec().expect("names");
        message
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
        assert_eq!(reader.message().await.expect("first").map(whole), Some(first));
        assert_eq!(reader.message().await.expect("second").map(whole), Some(second));
        assert_eq!(reader.message().await.expect("third").map(whole), Some(third));
        assert_eq!(reader.buffer.capacity(), 0, "nothing kept between messages");
        assert!(reader.message().await.expect("the end").is_none());
    }

    /// A message that arrives whole in one frame is read from the frame's bytes, not copied;
    /// what follows it in the frame is kept for the next message.
    #[tokio::test]
    async fn a_message_whole_in_a_frame_is_read_in_place() {
        let (first, second) = (request(40), request(5));
        let mut frame = framed(&first);
        let first_length = frame.len();
        let second_framed = framed(&second);
        frame.extend_from_slice(&second_framed[..9]);
        let frame = Bytes::from(frame);
        let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        let mut reader =
            FrameReader::new(body_of(vec![frame.clone(), Bytes::copy_from_slice(&second_framed[9..])]), 1 << 20);
        let read = reader.message().await.expect("first").expect("a message");
        let RequestNames::Encoded(names) = &read.names else { panic!("names stay encoded") };
        assert!(frame_range.contains(&(names.as_ptr() as usize)), "the names are the frame's own bytes");
        assert_eq!(names.len(), first_length - GRPC_PREFIX);
        assert_eq!(whole(read), first);
        assert_eq!(reader.message().await.expect("second").map(whole), Some(second));
        assert_eq!(reader.buffer.capacity(), 0, "nothing kept between messages");
        assert!(reader.message().await.expect("the end").is_none());
    }

    /// However a stream of messages is cut into frames, the same messages come out in order.
    #[tokio::test]
    async fn every_cut_into_frames_gives_the_same_messages() {
        let sent: Vec<DiscoveryRequest> = (0..6).map(|index| request(index * 7 % 23)).collect();
        let stream: Vec<u8> = sent.iter().flat_map(framed).collect();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..300 {
            let mut chunks = Vec::new();
            let mut at = 0;
            while at < stream.len() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let size = 1 + (seed % 700) as usize;
                let end = (at + size).min(stream.len());
                chunks.push(stream[at..end].to_vec());
                at = end;
            }
            let mut reader = FrameReader::new(body(chunks), 1 << 20);
            for expected in &sent {
                assert_eq!(reader.message().await.expect("a message").map(whole).as_ref(), Some(expected));
            }
            assert!(reader.message().await.expect("the end").is_none());
        }
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

    /// The names stay encoded: they compare equal only to the same names in the same order,
    /// and decode to what was sent; every other field is decoded, wherever the names are.
    #[tokio::test]
    async fn names_are_compared_and_decoded_from_the_message() {
        use envoy_types::pb::envoy::config::core::v3::Node;
        use envoy_types::pb::google::rpc::Status as RpcStatus;
        let mut sent = request(3);
        sent.version_info = "v7".into();
        sent.response_nonce = "n3".into();
        sent.node = Some(Node { id: "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local".into(), ..Default::default() });
        sent.error_detail = Some(RpcStatus { code: 3, message: "bad cluster".into(), details: vec![] });
        // Names first, between and after the other fields: the encoding allows any order.
        let mut encoded = Vec::new();
        DiscoveryRequest { resource_names: vec![sent.resource_names[0].clone()], ..Default::default() }
            .encode(&mut encoded)
            .expect("encode");
        DiscoveryRequest { resource_names: vec![], ..sent.clone() }.encode(&mut encoded).expect("encode");
        DiscoveryRequest { resource_names: sent.resource_names[1..].to_vec(), ..Default::default() }
            .encode(&mut encoded)
            .expect("encode");
        let read = decode_without_names(Bytes::from(encoded)).expect("decodes");
        assert!(read.message.resource_names.is_empty());
        assert_eq!(read.message.node, sent.node);
        assert_eq!(read.message.error_detail, sent.error_detail);
        assert_eq!((read.message.version_info.as_str(), read.message.response_nonce.as_str()), ("v7", "n3"));
        let names = &sent.resource_names;
        assert!(read.names.equal_to(names));
        assert!(!read.names.equal_to(&names[..2]), "fewer");
        assert!(!read.names.equal_to(&[names.clone(), vec!["more".into()]].concat()), "more");
        assert!(!read.names.equal_to(&[names[1].clone(), names[0].clone(), names[2].clone()]), "order");
        assert!(!read.names.equal_to(&[]));
        assert_eq!(whole(read), sent);

        let none = decode_without_names(Bytes::from(request(0).encode_to_vec())).expect("decodes");
        assert!(none.names.equal_to(&[]));
        assert_eq!(none.names.into_vec().expect("names"), Vec::<String>::new());
    }

    #[test]
    fn names_that_are_not_utf8_or_run_past_the_message_are_errors() {
        // Field 3, length 2, bytes 0xff 0xfe.
        let invalid = decode_without_names(Bytes::from_static(&[0x1a, 2, 0xff, 0xfe])).expect("other fields decode");
        assert!(!invalid.names.equal_to(&["\u{fffd}\u{fffd}".to_string()]));
        assert_eq!(invalid.names.into_vec().expect_err("not UTF-8").code(), tonic::Code::Internal);
        assert!(decode_without_names(Bytes::from_static(&[0x1a, 5, b'a'])).is_err(), "cut off");
    }
}
