//! The OpenAI-compatible generation endpoints: wire types, chat and completions handlers, chat
//! prompt rendering and logprobs formatting.

pub mod chat;
pub mod completions;
pub mod logprobs;
pub mod render;
pub mod types;
