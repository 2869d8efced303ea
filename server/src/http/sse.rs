//! Server-sent events as vLLM writes them: `data: <json>\n\n` frames ending with `data: [DONE]`.
//! A [`ChunkBuilder`] turns engine events into frames; [`sse_response`] drives it lazily, so the
//! response body owns the engine request and dropping the body (client gone) aborts it.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use futures::{Stream, StreamExt};
use std::collections::VecDeque;
use std::convert::Infallible;

/// One `data:` frame holding `v` as JSON.
pub fn frame(v: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// The terminating frame.
pub fn done_frame() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// Turns a stream's items into SSE frames.
pub trait ChunkBuilder: Send + 'static {
    /// The event type.
    type Item: Send;
    /// Frames for one event.
    fn on_event(&mut self, ev: Self::Item, out: &mut VecDeque<Bytes>);
    /// Frames after the last event (usage chunk, `[DONE]`).
    fn on_end(&mut self, out: &mut VecDeque<Bytes>);
}

struct Driver<S, B> {
    events: S,
    builder: B,
    queue: VecDeque<Bytes>,
    ended: bool,
}

/// A `text/event-stream` response: `initial` frames first, then the builder's frames per event.
pub fn sse_response<S, B>(events: S, builder: B, initial: VecDeque<Bytes>) -> Response
where
    S: Stream<Item = B::Item> + Send + Unpin + 'static,
    B: ChunkBuilder,
{
    let driver = Driver {
        events,
        builder,
        queue: initial,
        ended: false,
    };
    let body = futures::stream::unfold(driver, |mut d| async move {
        loop {
            if let Some(b) = d.queue.pop_front() {
                return Some((Ok::<Bytes, Infallible>(b), d));
            }
            if d.ended {
                return None;
            }
            match d.events.next().await {
                Some(ev) => d.builder.on_event(ev, &mut d.queue),
                None => {
                    d.builder.on_end(&mut d.queue);
                    d.ended = true;
                }
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(body));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    impl ChunkBuilder for Echo {
        type Item = &'static str;
        fn on_event(&mut self, ev: &'static str, out: &mut VecDeque<Bytes>) {
            out.push_back(frame(&serde_json::json!({ "e": ev })));
        }
        fn on_end(&mut self, out: &mut VecDeque<Bytes>) {
            out.push_back(done_frame());
        }
    }

    #[tokio::test]
    async fn frames_in_order_then_done() {
        let initial = VecDeque::from([frame(&serde_json::json!({"first": true}))]);
        let resp = sse_response(futures::stream::iter(["a", "b"]), Echo, initial);
        assert!(resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            "data: {\"first\":true}\n\ndata: {\"e\":\"a\"}\n\ndata: {\"e\":\"b\"}\n\ndata: [DONE]\n\n"
        );
    }
}
