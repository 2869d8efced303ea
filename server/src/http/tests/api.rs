//! Successful requests: response and chunk shapes, usage, n, logprobs, tokenize, models, metrics
//! text, request-id echo, and the abort of a streaming request whose client goes away.

use super::*;
use candela_engine::EngineConfig;
use futures::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn chat_and_completions_shapes() {
    let (_state, app) = ready_app().await;
    let body = json!({
        "model": MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_tokens": 5, "temperature": 0, "ignore_eos": true, "n": 2, "logprobs": true,
        "top_logprobs": 2, "return_token_ids": true,
    });
    let (s, _, b) = send(&app, post("/v1/chat/completions", &body)).await;
    let v = json(&b);
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["model"], MODEL);
    assert_eq!(v["choices"].as_array().unwrap().len(), 2);
    let c0 = &v["choices"][0];
    assert_eq!(c0["message"]["role"], "assistant");
    assert_eq!(c0["finish_reason"], "length");
    assert_eq!(c0["token_ids"].as_array().unwrap().len(), 5);
    let lp = c0["logprobs"]["content"].as_array().unwrap();
    assert_eq!(lp.len(), 5);
    assert_eq!(lp[0]["top_logprobs"].as_array().unwrap().len(), 2);
    assert_eq!(v["usage"]["completion_tokens"], 10);
    let prompt_len = v["prompt_token_ids"].as_array().unwrap().len();
    assert_eq!(v["usage"]["prompt_tokens"], prompt_len);
    assert_eq!(v["usage"]["total_tokens"], prompt_len + 10);
    // Same prompt through /tokenize with messages gives the same count.
    let tb = json!({"model": MODEL, "messages": body["messages"], "return_token_strs": true});
    let (s, _, b) = send(&app, post("/tokenize", &tb)).await;
    let t = json(&b);
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["count"], prompt_len);
    assert_eq!(t["max_model_len"], 512);
    assert_eq!(t["token_strs"].as_array().unwrap().len(), prompt_len);

    let body = json!({
        "prompt": ["Hello", "The quick"], "max_tokens": 3, "temperature": 0,
        "ignore_eos": true, "echo": true, "logprobs": 1,
    });
    let (s, _, b) = send(&app, post("/v1/completions", &body)).await;
    let v = json(&b);
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], MODEL, "a missing model means the main name");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert!(choices[1]["text"]
        .as_str()
        .unwrap()
        .starts_with("The quick"));
    assert_eq!(choices[1]["index"], 1);
    let lp = &choices[0]["logprobs"];
    assert_eq!(
        lp["tokens"].as_array().unwrap().len(),
        lp["text_offset"].as_array().unwrap().len()
    );
    assert_eq!(v["usage"]["completion_tokens"], 6);

    let (s, _, b) = send(&app, get("/v1/models")).await;
    let m = json(&b);
    assert_eq!(s, StatusCode::OK);
    assert_eq!(m["data"][0]["id"], MODEL);
    assert_eq!(m["data"][0]["owned_by"], "vllm");
    assert_eq!(m["data"][0]["max_model_len"], 512);
    assert!(m["data"][0]["parent"].is_null());
    let (_, _, b) = send(&app, post("/detokenize", &json!({"tokens": t["tokens"]}))).await;
    assert!(json(&b)["prompt"].as_str().unwrap().contains("Hi"));
}

#[tokio::test]
async fn streaming_chunks_and_usage() {
    let (_state, app) = ready_app().await;
    let body = json!({
        "model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": true,
        "max_tokens": 4, "temperature": 0, "ignore_eos": true,
        "stream_options": {"include_usage": true, "continuous_usage_stats": true},
    });
    let (s, h, b) = send(&app, post("/v1/chat/completions", &body)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let ev = sse_events(&b);
    assert_eq!(ev.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = ev[..ev.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[0]["object"], "chat.completion.chunk");
    let last = chunks.last().unwrap();
    assert!(last["choices"].as_array().unwrap().is_empty());
    assert_eq!(last["usage"]["completion_tokens"], 4);
    let fin = &chunks[chunks.len() - 2];
    assert_eq!(fin["choices"][0]["finish_reason"], "length");
    assert!(chunks.iter().all(|c| c["usage"].is_object()));

    let body = json!({"prompt": "Hello", "stream": true, "max_tokens": 3, "ignore_eos": true});
    let (s, _, b) = send(&app, post("/v1/completions", &body)).await;
    assert_eq!(s, StatusCode::OK);
    let ev = sse_events(&b);
    assert_eq!(ev.last().unwrap(), "[DONE]");
    let first: Value = serde_json::from_str(&ev[0]).unwrap();
    assert_eq!(first["object"], "text_completion");
    assert!(first["id"].as_str().unwrap().starts_with("cmpl-"));
}

#[tokio::test]
async fn metrics_text_and_counters() {
    let (state, app) = ready_app().await;
    let (_, _, before) = send(&app, get("/metrics")).await;
    let before = String::from_utf8(before.to_vec()).unwrap();
    let zero = "vllm:prompt_tokens_total{engine=\"0\",model_name=\"qwen-test\"} 0.0";
    assert!(before.contains(zero), "warm-up is not counted:\n{before}");
    let body = json!({"prompt": [1, 2, 3, 4], "max_tokens": 3, "ignore_eos": true});
    assert_eq!(
        send(&app, post("/v1/completions", &body)).await.0,
        StatusCode::OK
    );
    // Engine counters are published after the step that produced the last token.
    let handle = state.engine().unwrap().handle.clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    while handle.stats().requests_finished < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (s, h, b) = send(&app, get("/metrics")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(b.to_vec()).unwrap();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["gauge", "counter", "histogram"].contains(&kind));
            assert!(kind != "counter" || name.ends_with("_total"), "{line}");
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        value.parse::<f64>().unwrap();
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "sample before its TYPE: {line}");
        assert!(series.contains("engine=\"0\""), "{line}");
    }
    let labels = "{engine=\"0\",model_name=\"qwen-test\"}";
    for needle in [
        format!("vllm:prompt_tokens_total{labels} 4.0"),
        format!("vllm:generation_tokens_total{labels} 3.0"),
        format!("vllm:request_generation_tokens_count{labels} 1.0"),
        "vllm:request_success_total{engine=\"0\",model_name=\"qwen-test\",finished_reason=\"length\"} 1.0".to_string(),
        "vllm:time_to_first_token_seconds_bucket{engine=\"0\",model_name=\"qwen-test\",le=\"+Inf\"} 1.0".to_string(),
        format!("vllm:gpu_cache_usage_perc{labels} 0.0"),
    ] {
        assert!(text.contains(&needle), "missing {needle}:\n{text}");
    }
    for name in [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_prefix_cache_hit_rate",
        "vllm:gpu_prefix_cache_hits_total",
        "vllm:gpu_prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
        "vllm:num_preemptions_total",
        "vllm:e2e_request_latency_seconds",
        "vllm:inter_token_latency_seconds",
    ] {
        assert!(typed.contains(name), "{name}");
    }
}

#[tokio::test]
async fn dropped_stream_frees_kv_blocks() {
    let (state, app) = ready_app().await;
    let handle = state.engine().unwrap().handle.clone();
    let total = handle.info().num_blocks;
    let body = json!({"prompt": "Once upon a time", "stream": true, "max_tokens": 480,
        "ignore_eos": true, "temperature": 0});
    let resp = app
        .clone()
        .oneshot(post("/v1/completions", &body))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut stream = resp.into_body().into_data_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    // Stats are published after each engine step, so the first chunk can arrive before the
    // snapshot that shows the request's blocks: wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while handle.stats().num_free_blocks == total {
        assert!(Instant::now() < deadline, "the request never held blocks");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(state.in_flight(), 1);
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = handle.stats();
        if s.num_free_blocks == total && s.num_running == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "blocks not freed: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(state.in_flight(), 0);
    assert!(handle.stats().requests_aborted >= 1);
    let (_, _, b) = send(&app, get("/metrics")).await;
    let text = String::from_utf8(b.to_vec()).unwrap();
    assert!(text.contains("finished_reason=\"abort\"} 1.0"), "{text}");
}

#[tokio::test]
async fn request_id_header_is_the_id_base_and_echoed() {
    let mut cfg = config();
    cfg.enable_request_id_headers = true;
    let state = ready_state(cfg).await;
    let app = app(state);
    let req = Request::post("/v1/completions")
        .header("x-request-id", "abc123")
        .body(Body::from(
            json!({"prompt": "Hi", "max_tokens": 1}).to_string(),
        ))
        .unwrap();
    let (s, h, b) = send(&app, req).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["x-request-id"], "abc123");
    assert_eq!(json(&b)["id"], "cmpl-abc123");
    let (_, _, b) = send(&app, get("/load")).await;
    assert_eq!(json(&b)["server_load"], 0);
}

#[tokio::test]
async fn chat_echo_and_continue_final_message() {
    let (_state, app) = ready_app().await;
    let body = json!({
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "The answer is"}],
        "echo": true, "continue_final_message": true, "add_generation_prompt": false,
        "max_tokens": 3, "temperature": 0, "ignore_eos": true,
    });
    let (s, _, b) = send(&app, post("/v1/chat/completions", &body)).await;
    let v = json(&b);
    assert_eq!(s, StatusCode::OK, "{v}");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.starts_with("The answer is"), "{content}");
    // The rendered prompt ends with the open assistant message.
    let tb = json!({"messages": body["messages"], "continue_final_message": true,
        "add_generation_prompt": false});
    let (_, _, b) = send(&app, post("/tokenize", &tb)).await;
    let ids = json(&b)["tokens"].clone();
    let (_, _, b) = send(&app, post("/detokenize", &json!({"tokens": ids}))).await;
    assert!(json(&b)["prompt"]
        .as_str()
        .unwrap()
        .ends_with("The answer is"));
    let both = json!({"messages": body["messages"], "continue_final_message": true,
        "add_generation_prompt": true});
    let (s, _, _) = send(&app, post("/v1/chat/completions", &both)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn chat_template_flag_inline_file_and_missing() {
    let mut cfg = config();
    cfg.chat_template = Some("{% for m in messages %}{{ m['content'] }}|{% endfor %}".into());
    let router = app(ready_state(cfg).await);
    let body =
        json!({"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "yo"}]});
    let (_, _, b) = send(&router, post("/tokenize", &body)).await;
    let ids = json(&b)["tokens"].clone();
    let (_, _, b) = send(&router, post("/detokenize", &json!({"tokens": ids}))).await;
    assert_eq!(json(&b)["prompt"], "Hi|yo|");

    let dir = std::env::temp_dir().join(format!("candela-tmpl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("t.jinja");
    std::fs::write(&file, "<{{ messages[0]['content'] }}>").unwrap();
    let mut cfg = config();
    cfg.chat_template = Some(file.display().to_string());
    let router = app(ready_state(cfg).await);
    let (_, _, b) = send(&router, post("/tokenize", &body)).await;
    let detok = post("/detokenize", &json!({"tokens": json(&b)["tokens"]}));
    let (_, _, b) = send(&router, detok).await;
    assert_eq!(json(&b)["prompt"], "<Hi>");

    let mut ecfg = EngineConfig::new(fixture());
    ecfg.kv_cache_memory_bytes = 64 << 20;
    ecfg.max_model_len = Some(512);
    let missing = dir.join("missing.jinja").display().to_string();
    assert!(crate::http::load_engine(ecfg, Some(&missing))
        .await
        .is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
