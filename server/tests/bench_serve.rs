//! `candela bench serve` end to end against a fake OpenAI SSE server started in the test (so it
//! does not depend on `candela serve`): the run completes, the result JSON carries vLLM's keys
//! and the token counts from `usage`, the request bodies are vLLM's, and `--max-concurrency`
//! caps the requests in flight.

use axum::body::Body;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Seen {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    bodies: Mutex<Vec<Value>>,
}

/// Streams `max_tokens` one-word chunks 3 ms apart, then a usage chunk and `[DONE]`.
async fn completions(State(seen): State<Arc<Seen>>, Json(body): Json<Value>) -> impl IntoResponse {
    let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
    seen.bodies.lock().unwrap().push(body.clone());
    let n = body["max_tokens"].as_u64().unwrap_or(1) as usize;
    let mut events: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "data: {}\n\n",
                json!({"choices": [{"index": 0, "text": format!(" w{i}"), "finish_reason": null}]})
            )
        })
        .collect();
    events.push(format!("data: {}\n\ndata: [DONE]\n\n", json!({"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n}})));
    let last = events.len() - 1;
    let stream = futures::stream::iter(events.into_iter().enumerate()).then(move |(i, e)| {
        let seen = seen.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(3)).await;
            if i == last {
                seen.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            Ok::<_, std::convert::Infallible>(e)
        }
    });
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(stream),
    )
}

#[test]
fn bench_serve_against_a_fake_server() {
    let seen = Arc::new(Seen::default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new()
        .route("/v1/completions", post(completions))
        .route(
            "/v1/models",
            get(|| async { Json(json!({"data": [{"id": "fake-model"}]})) }),
        )
        .with_state(seen.clone());
    // Token chunks are small writes: without TCP_NODELAY, Nagle's algorithm batches them.
    let listener = listener.tap_io(|tcp| tcp.set_nodelay(true).unwrap());
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = std::env::temp_dir().join(format!("candela-bench-serve-{}", std::process::id()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_candela"))
        .args([
            "bench",
            "serve",
            "--base-url",
            &format!("http://127.0.0.1:{port}"),
            "--num-prompts",
            "6",
        ])
        .args([
            "--max-concurrency",
            "2",
            "--random-input-len",
            "8",
            "--random-output-len",
            "5",
            "--ignore-eos",
        ])
        .args([
            "--goodput",
            "ttft:60000",
            "tpot:60000",
            "--save-result",
            "--result-filename",
            "r.json",
            "--disable-tqdm",
        ])
        .arg("--result-dir")
        .arg(&dir)
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("============ Serving Benchmark Result ============"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Successful requests:                     6"),
        "{stdout}"
    );

    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("r.json")).unwrap()).unwrap();
    assert_eq!(r["completed"], 6);
    assert_eq!(r["failed"], 0);
    assert_eq!(r["total_input_tokens"], 48);
    assert_eq!(r["total_output_tokens"], 30);
    assert_eq!(r["max_concurrency"], 2);
    assert_eq!(r["num_prompts"], 6);
    assert_eq!(r["model_id"], "fake-model");
    for k in [
        "request_throughput",
        "output_throughput",
        "total_token_throughput",
        "duration",
        "mean_ttft_ms",
        "median_ttft_ms",
        "p99_ttft_ms",
        "std_ttft_ms",
        "mean_itl_ms",
        "p99_e2el_ms",
    ] {
        assert!(r[k].as_f64().is_some_and(|x| x > 0.0), "{k}: {}", r[k]);
    }
    // 4 gaps of ~3 ms per request.
    let tpot = r["median_tpot_ms"].as_f64().unwrap();
    assert!(
        (2.5..100.0).contains(&tpot),
        "median TPOT {tpot}: {}",
        r["itls"]
    );
    assert!(
        (r["request_goodput"].as_f64().unwrap() - r["request_throughput"].as_f64().unwrap()).abs()
            < 1e-9
    );
    assert_eq!(r["itls"].as_array().unwrap().len(), 6);

    // 6 measured requests plus the start-up test request.
    let bodies = seen.bodies.lock().unwrap();
    assert_eq!(bodies.len(), 7);
    for b in bodies.iter() {
        assert_eq!(b["model"], "fake-model");
        assert_eq!(b["stream"], true);
        assert_eq!(b["ignore_eos"], true);
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert_eq!(
            b["prompt"].as_array().map(Vec::len),
            Some(8),
            "token-id prompts without a tokenizer"
        );
    }
    assert!(
        seen.max_in_flight.load(Ordering::SeqCst) <= 2,
        "--max-concurrency 2 was exceeded"
    );
    std::fs::remove_dir_all(&dir).ok();
}
