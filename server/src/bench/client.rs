//! The HTTP side of `bench serve`: one streaming request to an OpenAI-compatible
//! `/v1/completions` or `/v1/chat/completions` endpoint (plain HTTP/1.1, as for loopback
//! servers), timed per server-sent-events chunk: TTFT at the first chunk that carries text,
//! ITL between text chunks, E2EL at the last one; output tokens from the final `usage`.

use super::dataset::PromptInput;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::time::Instant;

/// Where and how requests are sent.
#[derive(Clone)]
pub struct Endpoint {
    client: Client<HttpConnector, Full<Bytes>>,
    /// Full URL of the endpoint.
    pub url: Uri,
    /// `/v1/chat/completions` payloads (else `/v1/completions`).
    pub chat: bool,
    /// `model` field of each request.
    pub model: String,
    /// `Authorization: Bearer` value (`OPENAI_API_KEY`).
    pub api_key: Option<String>,
    /// Fields merged into every request body (`--extra-body`).
    pub extra_body: Option<Value>,
    /// Sends `ignore_eos: true`.
    pub ignore_eos: bool,
}

/// What one request produced (times in seconds).
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// At least one text chunk arrived and the stream ended without error.
    pub success: bool,
    /// Concatenated text of the chunks.
    pub generated_text: String,
    /// `usage.completion_tokens` of the last chunk carrying usage.
    pub usage_tokens: Option<usize>,
    /// Text chunks received.
    pub chunks: usize,
    /// Time to first text chunk.
    pub ttft: f64,
    /// Gaps between text chunks.
    pub itl: Vec<f64>,
    /// Send to last text chunk.
    pub e2el: f64,
    /// Error text of a failed request.
    pub error: String,
}

impl Endpoint {
    /// An endpoint at `url`.
    pub fn new(url: &str, chat: bool, model: String) -> anyhow::Result<Endpoint> {
        let url: Uri = url
            .parse()
            .map_err(|e| anyhow::anyhow!("bad URL {url:?}: {e}"))?;
        anyhow::ensure!(
            url.scheme_str() == Some("http"),
            "only http:// URLs are supported, got {url}"
        );
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(conn);
        Ok(Endpoint {
            client,
            url,
            chat,
            model,
            api_key: None,
            extra_body: None,
            ignore_eos: false,
        })
    }

    /// The JSON body of one streaming request, with vLLM's bench fields.
    pub fn body(&self, prompt: &PromptInput, max_tokens: usize) -> Value {
        let mut b = if self.chat {
            let text = match prompt {
                PromptInput::Text(t) => t.clone(),
                PromptInput::Tokens(ids) => {
                    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
                }
            };
            json!({"model": self.model, "messages": [{"role": "user", "content": text}],
                   "max_completion_tokens": max_tokens})
        } else {
            let p = match prompt {
                PromptInput::Text(t) => json!(t),
                PromptInput::Tokens(ids) => json!(ids),
            };
            json!({"model": self.model, "prompt": p, "max_tokens": max_tokens,
                   "repetition_penalty": 1.0})
        };
        b["temperature"] = json!(0.0);
        b["stream"] = json!(true);
        b["stream_options"] = json!({"include_usage": true});
        if self.ignore_eos {
            b["ignore_eos"] = json!(true);
        }
        if let (Some(Value::Object(extra)), Value::Object(o)) = (&self.extra_body, &mut b) {
            o.extend(extra.clone());
        }
        b
    }

    /// GET `path` on the same host, as JSON.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let mut parts = self.url.clone().into_parts();
        parts.path_and_query = Some(path.parse()?);
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(Uri::from_parts(parts)?);
        if let Some(k) = &self.api_key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let resp = self
            .client
            .request(req.body(Full::new(Bytes::new()))?)
            .await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::ensure!(status == StatusCode::OK, "GET {path}: {status}");
        Ok(serde_json::from_slice(&body)?)
    }

    /// Sends one streaming request and times its chunks.
    pub async fn send(&self, prompt: &PromptInput, max_tokens: usize) -> Outcome {
        let start = Instant::now();
        let mut out = Outcome::default();
        if let Err(e) = self.stream(prompt, max_tokens, start, &mut out).await {
            out.success = false;
            out.error = format!("{e:#}");
        }
        out
    }

    async fn stream(
        &self,
        prompt: &PromptInput,
        max_tokens: usize,
        start: Instant,
        out: &mut Outcome,
    ) -> anyhow::Result<()> {
        let body = serde_json::to_vec(&self.body(prompt, max_tokens))?;
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header("content-type", "application/json");
        if let Some(k) = &self.api_key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let resp = self
            .client
            .request(req.body(Full::new(Bytes::from(body)))?)
            .await?;
        let status = resp.status();
        let mut body = resp.into_body();
        if status != StatusCode::OK {
            let text = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            anyhow::bail!("HTTP {status}: {}", String::from_utf8_lossy(&text));
        }
        let mut buf: Vec<u8> = Vec::new();
        let mut last = 0.0;
        let mut done = false;
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            buf.extend_from_slice(data);
            while let Some((end, sep)) = event_end(&buf) {
                let event: Vec<u8> = buf.drain(..end + sep).collect();
                let now = start.elapsed().as_secs_f64();
                for line in String::from_utf8_lossy(&event[..end]).lines() {
                    let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                        continue;
                    };
                    if data == "[DONE]" {
                        done = true;
                        continue;
                    }
                    let v: Value = serde_json::from_str(data)
                        .map_err(|e| anyhow::anyhow!("bad SSE data {data:?}: {e}"))?;
                    if let Some(err) = v.get("error") {
                        anyhow::bail!("server error in stream: {err}");
                    }
                    let text = self.chunk_text(&v);
                    if !text.is_empty() {
                        if out.chunks == 0 {
                            out.ttft = now;
                        } else {
                            out.itl.push(now - last);
                        }
                        last = now;
                        out.chunks += 1;
                        out.generated_text.push_str(text);
                    }
                    if let Some(n) = v
                        .get("usage")
                        .and_then(|u| u.get("completion_tokens"))
                        .and_then(Value::as_u64)
                    {
                        out.usage_tokens = Some(n as usize);
                    }
                }
            }
        }
        anyhow::ensure!(
            out.chunks > 0,
            "no tokens received{}",
            if done {
                ""
            } else {
                " (stream ended without [DONE])"
            }
        );
        out.e2el = last;
        out.success = true;
        Ok(())
    }

    /// Text of a chunk's first choice (`text`, or `delta.content` for chat).
    fn chunk_text<'a>(&self, v: &'a Value) -> &'a str {
        let Some(c) = v.get("choices").and_then(|c| c.get(0)) else {
            return "";
        };
        let t = if self.chat {
            c.get("delta").and_then(|d| d.get("content"))
        } else {
            c.get("text")
        };
        t.and_then(Value::as_str).unwrap_or("")
    }
}

/// End of the first complete SSE event in `buf`: (index of the blank line, separator length).
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_on_blank_lines() {
        assert_eq!(event_end(b"data: 1\n\ndata: 2"), Some((7, 2)));
        assert_eq!(event_end(b"data: 1\r\n\r\n"), Some((7, 4)));
        assert_eq!(event_end(b"data: 1\n"), None);
    }

    #[test]
    fn bodies_follow_vllm_bench() {
        let mut e = Endpoint::new("http://127.0.0.1:1/v1/completions", false, "m".into()).unwrap();
        e.ignore_eos = true;
        e.extra_body = Some(json!({"top_k": 1}));
        let b = e.body(&PromptInput::Tokens(vec![1, 2]), 5);
        assert_eq!(b["prompt"], json!([1, 2]));
        assert_eq!(
            (
                b["max_tokens"].clone(),
                b["stream"].clone(),
                b["ignore_eos"].clone()
            ),
            (json!(5), json!(true), json!(true))
        );
        assert_eq!(b["stream_options"]["include_usage"], json!(true));
        assert_eq!(b["top_k"], json!(1));
        e.chat = true;
        let b = e.body(&PromptInput::Text("hi".into()), 5);
        assert_eq!(b["messages"][0]["content"], json!("hi"));
        assert_eq!(b["max_completion_tokens"], json!(5));
        assert!(Endpoint::new("https://x/v1", false, "m".into()).is_err());
    }
}
