//! The OpenAI-compatible HTTP edge (axum): routes, wire types, SSE, auth, errors, metrics.
//! Knows no tensors; talks to the engine only through `EngineHandle`. This file owns `run`: bind,
//! load and warm the engine in the background, serve, and shut down gracefully.

pub mod app;
pub mod auth;
pub mod error;
pub mod generate;
pub mod health;
pub mod metrics;
pub mod models;
pub mod openai;
pub mod sse;
pub mod state;
#[cfg(test)]
mod tests;
pub mod tokenize;

use anyhow::Context;
use candela_engine::chat_template::ChatTemplate;
use candela_engine::{Engine, EngineConfig, EngineHandle, Prompt, Request, RequestEvent};
use state::{random_id, AppState, Ready, ServerConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// Server options from the `serve` command line (vLLM flag names in the field docs).
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// `--host` (default 0.0.0.0 as vLLM binds all interfaces).
    pub host: String,
    /// `--port` (default 8000).
    pub port: u16,
    /// `--served-model-name` (several names allowed; empty = the model argument).
    pub served_model_names: Vec<String>,
    /// `--api-key` values, or `VLLM_API_KEY` (empty = no auth).
    pub api_keys: Vec<String>,
    /// `--enable-request-id-headers`: echo `X-Request-Id` on responses.
    pub enable_request_id_headers: bool,
    /// `--chat-template`: a file path or an inline Jinja template.
    pub chat_template: Option<String>,
    /// `--response-role` for chat completions (default "assistant").
    pub response_role: String,
    /// `--disable-log-requests`.
    pub disable_log_requests: bool,
    /// `--enable-auto-tool-choice`.
    pub enable_auto_tool_choice: bool,
    /// `--tool-call-parser`.
    pub tool_call_parser: Option<String>,
    /// `--reasoning-parser`.
    pub reasoning_parser: Option<String>,
    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT before aborting them.
    pub shutdown_timeout_secs: u64,
}

/// The server settings `opts` describe for a model loaded from `engine_cfg`.
pub fn server_config(opts: &HttpOptions, engine_cfg: &EngineConfig) -> ServerConfig {
    let served_names = if opts.served_model_names.is_empty() {
        vec![engine_cfg.model.clone()]
    } else {
        opts.served_model_names.clone()
    };
    ServerConfig {
        served_names,
        model_root: engine_cfg.model.clone(),
        api_keys: opts.api_keys.clone(),
        enable_request_id_headers: opts.enable_request_id_headers,
        chat_template: opts.chat_template.clone(),
        response_role: opts.response_role.clone(),
        disable_log_requests: opts.disable_log_requests,
        shutdown_timeout_secs: opts.shutdown_timeout_secs,
    }
}

/// Serves until SIGTERM/SIGINT: binds first, loads the engine in the background (`/health` is
/// 503 until it is loaded and warm), then answers requests. A load failure ends the server with
/// an error; a signal drains in-flight requests (up to `shutdown_timeout_secs`) and returns Ok.
pub async fn run(opts: HttpOptions, engine_cfg: EngineConfig) -> anyhow::Result<()> {
    if opts.enable_auto_tool_choice || opts.tool_call_parser.is_some() {
        tracing::warn!("tool-call parsing is not implemented: tools reach the chat template, but replies carry no tool_calls");
    }
    if let Some(p) = &opts.reasoning_parser {
        tracing::warn!("--reasoning-parser {p} is not implemented; reasoning stays in `content`");
    }
    let cfg = server_config(&opts, &engine_cfg);
    let addr = format!("{}:{}", opts.host, opts.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot bind {addr}"))?;
    tracing::info!(
        "listening on http://{addr} (the model is loading; /health answers 503 until it is ready)"
    );
    let state = AppState::new(cfg);
    let (fail_tx, fail_rx) = oneshot::channel::<String>();
    let loader = {
        let state = state.clone();
        tokio::spawn(async move {
            let template = state.cfg.chat_template.clone();
            match load_engine(engine_cfg, template.as_deref()).await {
                Ok(ready) => {
                    state.set_ready(ready);
                    tracing::info!("the engine is ready; serving");
                }
                Err(e) => {
                    tracing::error!("failed to load the engine: {e:#}");
                    state.set_failed(format!("{e:#}"));
                    let _ = fail_tx.send(format!("{e:#}"));
                }
            }
        })
    };
    let triggered = Arc::new(Notify::new());
    let failure = Arc::new(std::sync::Mutex::new(None::<String>));
    let shutdown = {
        let (triggered, failure) = (triggered.clone(), failure.clone());
        async move {
            tokio::select! {
                _ = signal() => tracing::info!("shutdown signal received; draining requests"),
                Ok(msg) = fail_rx => {
                    if let Ok(mut f) = failure.lock() {
                        *f = Some(msg);
                    }
                }
            }
            triggered.notify_one();
        }
    };
    // Small SSE chunks go out at once (Nagle would batch tokens a few ms apart).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, app::app(state.clone())).with_graceful_shutdown(shutdown);
    let mut server = tokio::spawn(async move { server.await });
    tokio::select! {
        r = &mut server => { r??; }
        _ = triggered.notified() => {
            let grace = Duration::from_secs(state.cfg.shutdown_timeout_secs);
            if tokio::time::timeout(grace, &mut server).await.is_err() {
                let n = state.abort_all();
                tracing::warn!("grace period over; aborted {n} running requests");
                if tokio::time::timeout(Duration::from_secs(5), &mut server).await.is_err() {
                    server.abort();
                }
            }
        }
    }
    loader.abort();
    if let Some(ready) = state.engine() {
        let handle = ready.handle.clone();
        let _ = tokio::task::spawn_blocking(move || handle.shutdown()).await;
    }
    let failed = failure.lock().ok().and_then(|f| f.clone());
    match failed {
        Some(msg) => Err(anyhow::anyhow!("the engine failed to load: {msg}")),
        None => {
            tracing::info!("server stopped");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Loads and starts the engine on its own thread, then [`prepare`]s it.
pub async fn load_engine(cfg: EngineConfig, chat_template: Option<&str>) -> anyhow::Result<Ready> {
    // A plain thread rather than `spawn_blocking`: the runtime does not wait for it on shutdown,
    // so SIGTERM during a long load exits at once.
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("candela-load".into())
        .spawn(move || {
            let _ = tx.send(Engine::load(&cfg).map(Engine::start));
        })
        .context("cannot spawn the loading thread")?;
    let handle = rx.await.context("the loading thread panicked")??;
    match prepare(handle.clone(), chat_template).await {
        Ok(r) => Ok(r),
        Err(e) => {
            let _ = tokio::task::spawn_blocking(move || handle.shutdown()).await;
            Err(e)
        }
    }
}

/// Compiles the chat template (`--chat-template` file or inline text, else the tokenizer's) and
/// warms the engine up with one tiny generation; the result is ready to serve.
pub async fn prepare(handle: EngineHandle, chat_template: Option<&str>) -> anyhow::Result<Ready> {
    let tok = handle.tokenizer().clone();
    let template = match chat_template {
        Some(arg) => {
            let path = std::path::Path::new(arg);
            let source = if path.is_file() {
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --chat-template {arg}"))?
            } else if !arg.contains('{') && (arg.contains('/') || arg.ends_with(".jinja")) {
                anyhow::bail!(
                    "the --chat-template {arg:?} looks like a path, but no such file exists"
                );
            } else {
                arg.to_string()
            };
            let t = ChatTemplate::new(&source, tok.bos_token(), tok.eos_token())
                .context("invalid --chat-template")?;
            Some(Arc::new(t))
        }
        None => {
            match tok.chat_template() {
                Some(src) => match ChatTemplate::new(src, tok.bos_token(), tok.eos_token()) {
                    Ok(t) => Some(Arc::new(t)),
                    Err(e) => {
                        tracing::warn!("the model's chat template does not compile ({e}); chat requests will fail");
                        None
                    }
                },
                None => None,
            }
        }
    };
    let baseline = warm_up(&handle).await?;
    Ok(Ready {
        handle,
        template,
        baseline,
    })
}

/// Runs one two-token greedy generation and returns the engine stats once it has settled.
async fn warm_up(handle: &EngineHandle) -> anyhow::Result<candela_engine::EngineStats> {
    let mut prompt = handle
        .tokenizer()
        .encode("Hello", false)
        .unwrap_or_default();
    if prompt.is_empty() {
        prompt.push(0);
    }
    let mut params = handle.info().default_params.clone();
    params.max_tokens = Some(2);
    params.temperature = 0.0;
    params.ignore_eos = true;
    params.n = 1;
    params.seed = Some(0);
    let mut stream = handle.submit(Request {
        id: format!("warmup-{}", random_id()),
        prompt: Prompt::Tokens(prompt),
        params,
        priority: 0,
    })?;
    let started = std::time::Instant::now();
    loop {
        match stream.events.recv().await {
            Some(RequestEvent::Delta(d)) if d.finish_reason.is_some() => break,
            Some(RequestEvent::Delta(_)) => {}
            Some(RequestEvent::Error(e)) => anyhow::bail!("warm-up generation failed: {e}"),
            None => anyhow::bail!("the engine stopped during warm-up"),
        }
    }
    // The stats snapshot is published after the step that finished the request.
    for _ in 0..400 {
        let s = handle.stats();
        if s.requests_finished >= 1 && s.num_running + s.num_waiting == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tracing::info!("warm-up done in {:.2}s", started.elapsed().as_secs_f64());
    Ok(handle.stats())
}
