//! The body type requests and responses carry through the data plane (streamed from either
//! side, or buffered when a request may be retried or mirrored), and small constructors.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};

/// Any error a body stream can end with. A concrete type (not a bare boxed trait object)
/// keeps hyper's server and client bounds satisfiable inside async code.
#[derive(Debug)]
pub(crate) struct BodyError(pub Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for BodyError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(formatter)
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

pub(crate) type BoxError = BodyError;
pub(crate) type Body = BoxBody<Bytes, BodyError>;

pub(crate) fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed()
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// Any hyper-compatible body, boxed.
pub(crate) fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    body.map_err(|error| BodyError(error.into())).boxed()
}

/// A body that fails once `deadline` passes before it ends (the route timeout covers the whole
/// response, as in Envoy) or once no frame has come for `idle` (the stream idle timeout).
pub(crate) fn with_timeouts(
    body: Body,
    deadline: Option<std::time::Instant>,
    idle: Option<std::time::Duration>,
) -> Body {
    if deadline.is_none() && idle.is_none() {
        return body;
    }
    let idle = idle.map(|limit| (limit, Box::pin(tokio::time::sleep(limit))));
    let deadline = deadline.map(|at| Box::pin(tokio::time::sleep_until(at.into())));
    Timed { inner: body, deadline, idle }.boxed()
}

struct Timed {
    inner: Body,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    idle: Option<(std::time::Duration, std::pin::Pin<Box<tokio::time::Sleep>>)>,
}

#[derive(Debug)]
struct TimedOut(&'static str);

impl std::fmt::Display for TimedOut {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.0)
    }
}

impl std::error::Error for TimedOut {}

impl http_body::Body for Timed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BodyError>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        if let Poll::Ready(frame) = std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            if let Some((limit, sleep)) = &mut this.idle {
                sleep.as_mut().reset(tokio::time::Instant::now() + *limit);
            }
            return Poll::Ready(frame);
        }
        if let Some(deadline) = &mut this.deadline {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Some(Err(BodyError(Box::new(TimedOut("upstream request timeout"))))));
            }
        }
        if let Some((_, sleep)) = &mut this.idle {
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Some(Err(BodyError(Box::new(TimedOut("stream idle timeout"))))));
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A body that sends one frame and then never ends.
    fn stalled() -> Body {
        let (mut sender, body) = http_body_util::channel::Channel::<Bytes, BodyError>::new(1);
        tokio::spawn(async move {
            let _ = sender.send_data(Bytes::from_static(b"first")).await;
            std::future::pending::<()>().await;
        });
        body.boxed()
    }

    #[tokio::test]
    async fn a_stalled_body_fails_at_the_deadline() {
        let body = with_timeouts(stalled(), Some(Instant::now() + Duration::from_millis(100)), None);
        let error = body.collect().await.expect_err("timed out");
        assert_eq!(error.to_string(), "upstream request timeout");
    }

    #[tokio::test]
    async fn a_quiet_body_fails_after_the_idle_timeout() {
        let body = with_timeouts(stalled(), None, Some(Duration::from_millis(100)));
        let error = body.collect().await.expect_err("idle");
        assert_eq!(error.to_string(), "stream idle timeout");
    }

    #[tokio::test]
    async fn finished_bodies_pass_through() {
        let body =
            with_timeouts(full("whole"), Some(Instant::now() + Duration::from_secs(5)), Some(Duration::from_secs(5)));
        assert_eq!(body.collect().await.expect("body").to_bytes(), Bytes::from_static(b"whole"));
    }
}
