//! Shared server state: the static server settings, the engine's lifecycle (loading → ready, or
//! failed), the in-flight request count behind `/load`, the set of running request ids (aborted on
//! shutdown) and the HTTP-side metrics.

use super::error::ApiError;
use super::metrics::Metrics;
use candela_engine::chat_template::ChatTemplate;
use candela_engine::{EngineHandle, EngineStats};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Server settings derived from the `serve` command line.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Names the model is served under; the first is the main one (metrics label, defaults).
    pub served_names: Vec<String>,
    /// The model argument (path or hub id), reported as `root` by `/v1/models`.
    pub model_root: String,
    /// API keys; empty = no authentication.
    pub api_keys: Vec<String>,
    /// Echo `X-Request-Id` on responses.
    pub enable_request_id_headers: bool,
    /// `--chat-template`: a file path or an inline template.
    pub chat_template: Option<String>,
    /// Role of generated chat messages.
    pub response_role: String,
    /// Do not log each request.
    pub disable_log_requests: bool,
    /// Seconds in-flight requests may take to finish after SIGTERM/SIGINT before being aborted.
    pub shutdown_timeout_secs: u64,
}

impl ServerConfig {
    /// Settings for a model served under its own name, without auth (tests).
    #[cfg(test)]
    pub fn for_model(model: &str) -> Self {
        Self {
            served_names: vec![model.to_string()],
            model_root: model.to_string(),
            api_keys: Vec::new(),
            enable_request_id_headers: false,
            chat_template: None,
            response_role: "assistant".to_string(),
            disable_log_requests: true,
            shutdown_timeout_secs: 30,
        }
    }

    /// The main served name.
    pub fn main_name(&self) -> &str {
        self.served_names.first().map(String::as_str).unwrap_or("")
    }
}

/// A loaded, started and warmed-up engine.
pub struct Ready {
    /// The engine client.
    pub handle: EngineHandle,
    /// The chat template in use (`--chat-template` or the tokenizer's), if any.
    pub template: Option<Arc<ChatTemplate>>,
    /// Engine counters right after warm-up; `/metrics` reports counts since then.
    pub baseline: EngineStats,
}

enum Phase {
    Loading,
    Ready(Arc<Ready>),
    Failed(String),
}

/// Everything the handlers share.
pub struct AppState {
    /// Static settings.
    pub cfg: ServerConfig,
    phase: RwLock<Phase>,
    /// HTTP-side metrics (histograms, finished-request counters).
    pub metrics: Metrics,
    in_flight: AtomicUsize,
    running: Mutex<HashSet<String>>,
    /// Unix time the server started (`created` of `/v1/models`).
    pub started_unix: u64,
}

impl AppState {
    /// A state whose engine is still loading.
    pub fn new(cfg: ServerConfig) -> Arc<Self> {
        Arc::new(Self {
            metrics: Metrics::new(cfg.main_name()),
            cfg,
            phase: RwLock::new(Phase::Loading),
            in_flight: AtomicUsize::new(0),
            running: Mutex::new(HashSet::new()),
            started_unix: unix_now(),
        })
    }

    /// Marks the engine ready (after load and warm-up).
    pub fn set_ready(&self, ready: Ready) {
        self.metrics
            .set_max_model_len(ready.handle.info().max_model_len);
        *self.phase.write().unwrap_or_else(|p| p.into_inner()) = Phase::Ready(Arc::new(ready));
    }

    /// Marks loading as failed.
    pub fn set_failed(&self, message: String) {
        *self.phase.write().unwrap_or_else(|p| p.into_inner()) = Phase::Failed(message);
    }

    /// The engine if it is ready and alive, else the 503 to answer.
    pub fn ready(&self) -> Result<Arc<Ready>, ApiError> {
        match &*self.phase.read().unwrap_or_else(|p| p.into_inner()) {
            Phase::Loading => Err(ApiError::unavailable(
                "The model is still loading; retry when /health returns 200.",
            )),
            Phase::Failed(m) => Err(ApiError::unavailable(format!(
                "The model failed to load: {m}"
            ))),
            Phase::Ready(r) if r.handle.is_alive() => Ok(r.clone()),
            Phase::Ready(_) => Err(ApiError::unavailable(
                "The engine is not running (it stopped after an error).",
            )),
        }
    }

    /// The engine handle whether or not it is alive (metrics, shutdown).
    pub fn engine(&self) -> Option<Arc<Ready>> {
        match &*self.phase.read().unwrap_or_else(|p| p.into_inner()) {
            Phase::Ready(r) => Some(r.clone()),
            _ => None,
        }
    }

    /// Requests being served now (`/load`).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Counts a request as in flight until the returned guard drops.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight {
            state: self.clone(),
        }
    }

    /// Records an engine request id as running (for abort on shutdown).
    pub fn track(&self, id: &str) {
        if let Ok(mut s) = self.running.lock() {
            s.insert(id.to_string());
        }
    }

    /// Forgets a finished engine request id.
    pub fn untrack(&self, id: &str) {
        if let Ok(mut s) = self.running.lock() {
            s.remove(id);
        }
    }

    /// Aborts every running engine request (shutdown after the grace period).
    pub fn abort_all(&self) -> usize {
        let ids: Vec<String> = match self.running.lock() {
            Ok(s) => s.iter().cloned().collect(),
            Err(_) => Vec::new(),
        };
        if let Some(r) = self.engine() {
            for id in &ids {
                r.handle.abort(id);
            }
        }
        ids.len()
    }

    /// Checks a request's `model` field against the served names; absent = the main name.
    /// Returns the name to echo in responses.
    pub fn resolve_model(&self, requested: Option<&str>) -> Result<String, ApiError> {
        match requested {
            None | Some("") => Ok(self.cfg.main_name().to_string()),
            Some(m) if self.cfg.served_names.iter().any(|n| n == m) => Ok(m.to_string()),
            Some(m) => Err(ApiError::model_not_found(m)),
        }
    }
}

/// Decrements the in-flight count when dropped.
pub struct InFlight {
    state: Arc<AppState>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh random id: 32 lowercase hex digits (like vLLM's `random_uuid()`).
pub fn random_id() -> String {
    use rand::Rng;
    let v: u128 = rand::rng().random();
    format!("{v:032x}")
}
