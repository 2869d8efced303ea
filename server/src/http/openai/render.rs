//! Chat prompt rendering shared by `/v1/chat/completions` and `/tokenize`: message validation and
//! normalisation (text parts joined, tool-call arguments parsed as JSON like vLLM), the chat
//! template, and `continue_final_message` trimming (as transformers does).

use crate::http::error::ApiError;
use crate::http::state::Ready;
use candela_engine::chat_template::ChatTemplateError;
use serde_json::{Map, Value};

/// How to render a conversation.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Append the assistant header.
    pub add_generation_prompt: bool,
    /// Leave the last message open.
    pub continue_final_message: bool,
    /// Template variables (`tools`, `documents`, `chat_template_kwargs`).
    pub extra: Map<String, Value>,
}

impl RenderOptions {
    /// Options from a request's fields, with vLLM's defaults: `add_generation_prompt` defaults
    /// to true unless the final message is continued.
    pub fn from_request(
        add_generation_prompt: Option<bool>,
        continue_final_message: Option<bool>,
        tools: Option<&Value>,
        documents: Option<&Value>,
        kwargs: Option<&Value>,
    ) -> Result<Self, ApiError> {
        let continue_final = continue_final_message.unwrap_or(false);
        Ok(RenderOptions {
            add_generation_prompt: add_generation_prompt.unwrap_or(!continue_final),
            continue_final_message: continue_final,
            extra: template_extra(tools, documents, kwargs)?,
        })
    }
}

/// Flattens a message `content` to a string: strings as they are, text parts joined by newlines.
fn content_text(content: &Value, index: usize) -> Result<Value, ApiError> {
    match content {
        Value::Null | Value::String(_) => Ok(content.clone()),
        Value::Array(parts) => {
            let mut texts = Vec::with_capacity(parts.len());
            for p in parts {
                let kind = p.get("type").and_then(Value::as_str).unwrap_or("text");
                match (kind, p.get("text").and_then(Value::as_str), p.as_str()) {
                    (_, _, Some(s)) => texts.push(s.to_string()),
                    ("text" | "input_text", Some(t), _) => texts.push(t.to_string()),
                    (other, _, _) => {
                        return Err(ApiError::bad_param(
                            format!(
                                "messages[{index}]: content part type {other:?} is not supported by this text-only model."
                            ),
                            "messages",
                        ))
                    }
                }
            }
            Ok(Value::String(texts.join("\n")))
        }
        _ => Err(ApiError::bad_param(
            format!("messages[{index}].content must be a string or a list of content parts."),
            "messages",
        )),
    }
}

/// Validates and normalises the messages for the template.
pub fn normalize_messages(messages: &[Value]) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let Some(obj) = m.as_object() else {
            return Err(ApiError::bad_param(
                format!("messages[{i}] must be an object."),
                "messages",
            ));
        };
        if !obj.get("role").is_some_and(Value::is_string) {
            return Err(ApiError::bad_param(
                format!("messages[{i}].role must be a string."),
                "messages",
            ));
        }
        let mut obj = obj.clone();
        let content = obj.get("content").cloned().unwrap_or(Value::Null);
        obj.insert("content".into(), content_text(&content, i)?);
        if let Some(Value::Array(calls)) = obj.get_mut("tool_calls") {
            for call in calls {
                if let Some(args) = call.pointer_mut("/function/arguments") {
                    if let Some(parsed) = args.as_str().and_then(|s| serde_json::from_str(s).ok()) {
                        *args = parsed;
                    }
                }
            }
        }
        out.push(Value::Object(obj));
    }
    Ok(out)
}

/// Renders `messages` with the server's chat template.
pub fn render_chat(
    ready: &Ready,
    messages: &[Value],
    opts: RenderOptions,
) -> Result<String, ApiError> {
    let Some(template) = &ready.template else {
        return Err(ApiError::bad_request(
            "As of transformers v4.44, default chat template is no longer allowed, so you must provide a chat template if the tokenizer does not define one.",
        ));
    };
    if opts.add_generation_prompt && opts.continue_final_message {
        return Err(ApiError::bad_request(
            "Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
        ));
    }
    let msgs = normalize_messages(messages)?;
    let text = template
        .render(&msgs, opts.add_generation_prompt, Value::Object(opts.extra))
        .map_err(|e| match e {
            ChatTemplateError::Raised(m) => ApiError::bad_request(m),
            other => ApiError::bad_request(other.to_string()),
        })?;
    if !opts.continue_final_message {
        return Ok(text);
    }
    let last = msgs
        .last()
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .unwrap_or("");
    for needle in [last, last.trim()] {
        if !needle.is_empty() {
            if let Some(pos) = text.rfind(needle) {
                return Ok(text[..pos + needle.len()].to_string());
            }
        }
    }
    Err(ApiError::bad_request(
        "continue_final_message is set but the final message does not appear in the chat after applying the chat template.",
    ))
}

/// Template variables from the request's optional fields.
pub fn template_extra(
    tools: Option<&Value>,
    documents: Option<&Value>,
    kwargs: Option<&Value>,
) -> Result<Map<String, Value>, ApiError> {
    let mut extra = Map::new();
    if let Some(t) = tools.filter(|t| !t.is_null()) {
        extra.insert("tools".into(), t.clone());
    }
    if let Some(d) = documents.filter(|d| !d.is_null()) {
        extra.insert("documents".into(), d.clone());
    }
    match kwargs {
        None | Some(Value::Null) => {}
        Some(k @ Value::Object(_)) => {
            extra.insert("chat_template_kwargs".into(), k.clone());
        }
        Some(_) => {
            return Err(ApiError::bad_param(
                "chat_template_kwargs must be an object.",
                "chat_template_kwargs",
            ))
        }
    }
    Ok(extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_are_normalised() {
        let m = normalize_messages(&[json!({"role":"user","content":[
            {"type":"text","text":"a"},{"type":"text","text":"b"}]})])
        .unwrap();
        assert_eq!(m[0]["content"], "a\nb");
        let m = normalize_messages(&[json!({"role":"assistant","content":null,"tool_calls":[
            {"type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]})])
        .unwrap();
        assert_eq!(m[0]["tool_calls"][0]["function"]["arguments"]["x"], 1);
        assert!(normalize_messages(&[json!({"content":"x"})]).is_err());
        assert!(
            normalize_messages(&[json!({"role":"user","content":[{"type":"image_url"}]})]).is_err()
        );
        assert!(normalize_messages(&[json!("x")]).is_err());
    }
}
