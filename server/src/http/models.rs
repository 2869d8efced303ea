//! `GET /v1/models`: every served name as a vLLM `ModelCard`.

use super::error::ApiError;
use super::state::{random_id, AppState};
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

/// `GET /v1/models`.
pub async fn list_models(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let ready = state.ready()?;
    let max_model_len = ready.handle.info().max_model_len;
    let created = state.started_unix;
    let data: Vec<Value> = state
        .cfg
        .served_names
        .iter()
        .map(|name| {
            json!({
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": state.cfg.model_root,
                "parent": null,
                "max_model_len": max_model_len,
                "permission": [{
                    "id": format!("modelperm-{}", random_id()),
                    "object": "model_permission",
                    "created": created,
                    "allow_create_engine": false,
                    "allow_sampling": true,
                    "allow_logprobs": true,
                    "allow_search_indices": false,
                    "allow_view": true,
                    "allow_fine_tuning": false,
                    "organization": "*",
                    "group": null,
                    "is_blocking": false,
                }],
            })
        })
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}
