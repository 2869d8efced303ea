//! Status codes and error bodies: 503 while loading and after the engine stops, 400 for bad
//! parameters / too-long prompts / malformed JSON, 404 for unknown models, 401 without the key.

use super::*;
use crate::http::state::AppState;
use serde_json::json;

fn assert_error(status: StatusCode, body: &Bytes, want: StatusCode, kind: &str) -> Value {
    let v = json(body);
    assert_eq!(status, want, "{v}");
    assert_eq!(v["error"]["type"], kind, "{v}");
    assert_eq!(v["error"]["code"], want.as_u16(), "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    v
}

#[tokio::test]
async fn loading_state_is_503_for_model_routes() {
    let state = AppState::new(config());
    let app = app(state);
    let (s, _, b) = send(&app, get("/health")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(b.is_empty());
    let (s, _, b) = send(&app, get("/v1/models")).await;
    assert_error(
        s,
        &b,
        StatusCode::SERVICE_UNAVAILABLE,
        "Service Unavailable",
    );
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]});
    let (s, _, b) = send(&app, post("/v1/chat/completions", &body)).await;
    assert_error(
        s,
        &b,
        StatusCode::SERVICE_UNAVAILABLE,
        "Service Unavailable",
    );
    let (s, _, b) = send(&app, post("/v1/completions", &json!({"prompt": "x"}))).await;
    assert_error(
        s,
        &b,
        StatusCode::SERVICE_UNAVAILABLE,
        "Service Unavailable",
    );
    for path in ["/metrics", "/version", "/load"] {
        let (s, _, _) = send(&app, get(path)).await;
        assert_eq!(s, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn bad_requests_are_400_and_unknown_model_404() {
    let (_state, app) = ready_app().await;
    let chat = |extra: Value| {
        let mut b = json!({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        post("/v1/chat/completions", &b)
    };
    let (s, _, b) = send(&app, chat(json!({"temperature": -1.0}))).await;
    let v = assert_error(s, &b, StatusCode::BAD_REQUEST, "BadRequestError");
    assert_eq!(v["error"]["param"], "temperature");
    let (s, _, b) = send(&app, chat(json!({"top_p": 2.0}))).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "BadRequestError");
    let (s, _, b) = send(&app, chat(json!({"n": "two"}))).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "BadRequestError");
    let (s, _, b) = send(&app, chat(json!({"top_logprobs": 3}))).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "BadRequestError");
    let (s, _, b) = send(&app, chat(json!({"messages": "nope"}))).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "BadRequestError");

    // Too long: prompt alone, and prompt plus max_tokens; both lengths in the message.
    let long: Vec<u32> = vec![100; 600];
    let body = json!({"model": MODEL, "prompt": long});
    let (s, _, b) = send(&app, post("/v1/completions", &body)).await;
    let v = assert_error(s, &b, StatusCode::BAD_REQUEST, "BadRequestError");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("600") && m.contains("512"), "{m}");
    let body = json!({"model": MODEL, "prompt": vec![100u32; 10], "max_tokens": 600});
    let (s, _, b) = send(&app, post("/v1/completions", &body)).await;
    let v = assert_error(s, &b, StatusCode::BAD_REQUEST, "BadRequestError");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("610") && m.contains("512") && m.contains("10 in the messages"),
        "{m}"
    );

    // Malformed JSON, an empty body, a wrong content type: 400 in the OpenAI shape.
    for body in ["{not json", "", "[1,2]"] {
        let req = Request::post("/v1/chat/completions")
            .header("content-type", "text/plain")
            .body(Body::from(body))
            .unwrap();
        let (s, _, b) = send(&app, req).await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, "BadRequestError");
    }
    let body = json!({"model": MODEL, "prompt": "x", "suffix": "y"});
    let (s, _, b) = send(&app, post("/v1/completions", &body)).await;
    let v = assert_error(s, &b, StatusCode::BAD_REQUEST, "BadRequestError");
    assert!(v["error"]["message"].as_str().unwrap().contains("suffix"));
    let body = json!({"model": MODEL, "prompt": [1, 2], "logprobs": 21});
    let (s, _, b) = send(&app, post("/v1/completions", &body)).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "BadRequestError");

    let body = json!({"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]});
    let (s, _, b) = send(&app, post("/v1/chat/completions", &body)).await;
    let v = assert_error(s, &b, StatusCode::NOT_FOUND, "NotFoundError");
    assert_eq!(v["error"]["message"], "The model `gpt-4` does not exist.");
    assert_eq!(v["error"]["param"], "model");
    let (s, _, b) = send(&app, get("/v1/nothing-here")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(json(&b)["detail"], "Not Found");
}

#[tokio::test]
async fn dead_engine_is_503() {
    let (state, app) = ready_app().await;
    let handle = state.engine().unwrap().handle.clone();
    tokio::task::spawn_blocking(move || handle.shutdown())
        .await
        .unwrap();
    let (s, _, _) = send(&app, get("/health")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let body = json!({"messages": [{"role": "user", "content": "x"}]});
    let (s, _, b) = send(&app, post("/v1/chat/completions", &body)).await;
    assert_error(
        s,
        &b,
        StatusCode::SERVICE_UNAVAILABLE,
        "Service Unavailable",
    );
    let (s, _, _) = send(&app, get("/metrics")).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn api_key_guards_v1_only() {
    let mut cfg = config();
    cfg.api_keys = vec!["sekrit".into(), "other".into()];
    let state = ready_state(cfg).await;
    let app = app(state);
    let (s, _, b) = send(&app, get("/v1/models")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(&b[..], br#"{"error": "Unauthorized"}"#);
    let wrong = Request::get("/v1/models")
        .header("authorization", "Bearer nope")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, wrong).await.0, StatusCode::UNAUTHORIZED);
    for key in ["sekrit", "other"] {
        let ok = Request::get("/v1/models")
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&app, ok).await.0, StatusCode::OK);
    }
    let body = json!({"prompt": "x", "max_tokens": 1});
    assert_eq!(
        send(&app, post("/v1/completions", &body)).await.0,
        StatusCode::UNAUTHORIZED
    );
    for path in ["/health", "/metrics", "/ping", "/version", "/load"] {
        assert_eq!(send(&app, get(path)).await.0, StatusCode::OK, "{path}");
    }
    let tok = json!({"prompt": "hello"});
    assert_eq!(send(&app, post("/tokenize", &tok)).await.0, StatusCode::OK);
    let detok = json!({"tokens": [1, 2]});
    assert_eq!(
        send(&app, post("/detokenize", &detok)).await.0,
        StatusCode::OK
    );
}
