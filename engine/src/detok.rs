//! Incremental detokenization of one output sequence, with stop strings.
//!
//! Each pushed token re-decodes a small window of ids (`prefix_offset..`) and emits the text past
//! the window's already-emitted prefix, as vLLM's `detokenize_incrementally` does: the window keeps
//! the context that decoders like Metaspace need for leading spaces, and text ending in U+FFFD
//! (a multi-byte character split across byte-level tokens) is held back until it completes.
//! Text that could be the start of a stop string is held back too, and a matched stop string
//! truncates the output (before it, or after it with `include_stop_str_in_output`).
//!
//! Invariant: the deltas of all `push` calls plus `finish` concatenate to
//! `tokenizer.decode(output_ids, skip_special_tokens)`, truncated at the first stop string.

use std::sync::Arc;

use crate::tokenizer::{Tokenizer, TokenizerError};

/// Prompt tokens kept as decoding context for the first output tokens.
const PROMPT_CONTEXT: usize = 5;

/// The result of pushing one token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetokStep {
    /// Text that is safe to emit now (possibly empty).
    pub delta: String,
    /// The stop string that matched, if this token completed one; generation should end.
    pub stop: Option<String>,
}

/// Turns a stream of token ids into a stream of text deltas.
#[derive(Debug)]
pub struct IncrementalDetokenizer {
    tok: Arc<tokenizers::Tokenizer>,
    skip_special_tokens: bool,
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
    stop: Vec<String>,
    include_stop: bool,
    max_stop_len: usize,
    /// All decoded output text (complete characters only).
    text: String,
    /// Bytes of `text` already returned as deltas.
    emitted: usize,
    /// Set once a stop string matched (or `finish` ran); later pushes return nothing.
    done: bool,
}

impl IncrementalDetokenizer {
    /// Starts detokenizing the output of a request whose prompt was `prompt_ids`.
    pub fn new(
        tok: &Tokenizer,
        prompt_ids: &[u32],
        skip_special_tokens: bool,
        stop: Vec<String>,
        include_stop_str_in_output: bool,
    ) -> Self {
        let inner = tok.inner().clone();
        let mut ids = prompt_ids[prompt_ids.len().saturating_sub(PROMPT_CONTEXT)..].to_vec();
        // A prompt ending inside a multi-byte character would glue its bytes to the output's.
        let ctx_ok = match inner.decode(&ids, skip_special_tokens) {
            Ok(t) => !t.ends_with('\u{FFFD}'),
            Err(_) => false,
        };
        if !ctx_ok {
            ids.clear();
        }
        let stop: Vec<String> = stop.into_iter().filter(|s| !s.is_empty()).collect();
        Self {
            tok: inner,
            skip_special_tokens,
            prefix_offset: 0,
            read_offset: ids.len(),
            ids,
            max_stop_len: stop.iter().map(String::len).max().unwrap_or(0),
            stop,
            include_stop: include_stop_str_in_output,
            text: String::new(),
            emitted: 0,
            done: false,
        }
    }

    /// True once a stop string matched or `finish` was called.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The output text emitted so far (the concatenation of all deltas).
    pub fn emitted_text(&self) -> &str {
        &self.text[..self.emitted]
    }

    /// Adds one generated token and returns the text that can be emitted now.
    pub fn push(&mut self, token: u32) -> Result<DetokStep, TokenizerError> {
        if self.done {
            return Ok(DetokStep::default());
        }
        self.ids.push(token);
        let new_text = self.decode_window(false)?;
        Ok(self.append(&new_text))
    }

    /// Ends the sequence: flushes held-back text (an incomplete character becomes U+FFFD, a
    /// partial stop string is released) and returns it. Returns "" after a stop-string match.
    pub fn finish(&mut self) -> Result<String, TokenizerError> {
        if self.done {
            return Ok(String::new());
        }
        let tail = self.decode_window(true)?;
        let step = self.append(&tail);
        let mut out = step.delta;
        if !self.done {
            out.push_str(&self.text[self.emitted..]);
            self.emitted = self.text.len();
        }
        self.done = true;
        Ok(out)
    }

    /// Decodes the window and returns the text after its prefix, advancing the offsets; returns
    /// "" (and keeps the window) while the text ends in an incomplete character, unless `flush`.
    fn decode_window(&mut self, flush: bool) -> Result<String, TokenizerError> {
        let decode = |ids: &[u32]| {
            self.tok
                .decode(ids, self.skip_special_tokens)
                .map_err(|e| TokenizerError::Tokenizers(e.to_string()))
        };
        let prefix = decode(&self.ids[self.prefix_offset..self.read_offset])?;
        let full = decode(&self.ids[self.prefix_offset..])?;
        if full.len() <= prefix.len() && !flush {
            return Ok(String::new());
        }
        if full.ends_with('\u{FFFD}') && !flush {
            return Ok(String::new());
        }
        let start = if full.starts_with(&prefix) {
            prefix.len()
        } else {
            // Should not happen with byte-level or Metaspace decoders; fall back to the common
            // prefix so that nothing is emitted twice.
            full.char_indices()
                .zip(prefix.chars())
                .find(|((_, a), b)| a != b)
                .map_or(full.len().min(prefix.len()), |((i, _), _)| i)
        };
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
        // Keep the window small: drop ids before the new prefix.
        if self.prefix_offset > 0 {
            self.ids.drain(..self.prefix_offset);
            self.read_offset -= self.prefix_offset;
            self.prefix_offset = 0;
        }
        Ok(full.get(start..).unwrap_or_default().to_string())
    }

    /// Appends decoded text, checks stop strings and returns what is safe to emit.
    fn append(&mut self, new_text: &str) -> DetokStep {
        if new_text.is_empty() {
            return DetokStep::default();
        }
        let old_len = self.text.len();
        self.text.push_str(new_text);
        if let Some((pos, stop)) = self.find_stop(old_len) {
            let end = if self.include_stop {
                pos + stop.len()
            } else {
                pos
            };
            self.text.truncate(end.max(self.emitted));
            let delta = self.text[self.emitted..].to_string();
            self.emitted = self.text.len();
            self.done = true;
            return DetokStep {
                delta,
                stop: Some(stop),
            };
        }
        let hold = if self.include_stop {
            0
        } else {
            self.stop_prefix_len()
        };
        let end = self.text.len() - hold;
        let delta = self.text[self.emitted..end].to_string();
        self.emitted = end;
        DetokStep { delta, stop: None }
    }

    /// Earliest stop string that ends past byte `old_len` of the text (ties: first listed).
    fn find_stop(&self, old_len: usize) -> Option<(usize, String)> {
        let mut from = old_len.saturating_sub(self.max_stop_len.saturating_sub(1));
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        let hay = &self.text[from..];
        self.stop
            .iter()
            .filter_map(|s| hay.find(s.as_str()).map(|i| (from + i, s)))
            .min_by_key(|(pos, _)| *pos)
            .map(|(pos, s)| (pos, s.clone()))
    }

    /// Length of the longest unemitted suffix that is a proper prefix of some stop string.
    fn stop_prefix_len(&self) -> usize {
        let pending = &self.text[self.emitted..];
        let mut best = 0;
        for s in &self.stop {
            for (k, _) in s.char_indices().skip(1) {
                if k > best && k <= pending.len() && pending.ends_with(&s[..k]) {
                    best = k;
                }
            }
        }
        best
    }
}

#[cfg(test)]
#[path = "detok_tests.rs"]
mod tests;
