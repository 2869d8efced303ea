//! Tests of `detok.rs`.
use super::*;
use crate::tokenizer::tests::{fixture, golden, ids, smollm2_gguf, FIXTURES};

/// Pushes every id, then finishes; returns the deltas (finish's last) and the stop.
fn run(d: &mut IncrementalDetokenizer, out: &[u32]) -> (Vec<String>, Option<String>) {
    let mut deltas = Vec::new();
    let mut stop = None;
    for &t in out {
        let step = d.push(t).unwrap();
        deltas.push(step.delta);
        if step.stop.is_some() {
            stop = step.stop;
            break;
        }
    }
    deltas.push(d.finish().unwrap());
    (deltas, stop)
}

fn detok(
    tok: &Tokenizer,
    prompt: &[u32],
    skip: bool,
    stop: &[&str],
    incl: bool,
) -> IncrementalDetokenizer {
    let stop = stop.iter().map(|s| s.to_string()).collect();
    IncrementalDetokenizer::new(tok, prompt, skip, stop, incl)
}

#[test]
fn golden_greedy_outputs_match_full_decode() {
    let mut toks: Vec<(&str, Tokenizer)> = FIXTURES
        .iter()
        .map(|&name| (name, Tokenizer::from_dir(fixture(name)).unwrap()))
        .collect();
    if let Some(path) = smollm2_gguf() {
        toks.push(("smollm2-135m-instruct", Tokenizer::from_gguf(path).unwrap()));
    }
    for (name, tok) in &toks {
        for case in golden(name)["cases"].as_array().unwrap() {
            let (prompt, out) = (ids(&case["input_ids"]), ids(&case["greedy_ids"]));
            for skip in [false, true] {
                let (deltas, _) = run(&mut detok(tok, &prompt, skip, &[], false), &out);
                let text = deltas.concat();
                assert_eq!(text, tok.decode(&out, skip).unwrap(), "{name} skip={skip}");
                if !skip {
                    assert_eq!(text, case["greedy_text"].as_str().unwrap());
                }
            }
        }
    }
}

#[test]
fn random_sequences_match_full_decode() {
    let tok = Tokenizer::from_dir(fixture("qwen2")).unwrap();
    let mut state = 0x1234_5678_u64;
    for len in [1usize, 2, 7, 40, 120] {
        for _ in 0..10 {
            let out: Vec<u32> = (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 33) % 483) as u32
                })
                .collect();
            for skip in [false, true] {
                let (deltas, _) = run(&mut detok(&tok, &[481, 423, 198], skip, &[], false), &out);
                assert_eq!(deltas.concat(), tok.decode(&out, skip).unwrap());
            }
        }
    }
}

#[test]
fn split_multibyte_characters_are_held_back() {
    let tok = Tokenizer::from_dir(fixture("qwen2")).unwrap();
    let text = "東京 😀 🚀 café";
    let out = tok.encode(text, false).unwrap();
    assert!(
        out.len() > text.chars().count(),
        "characters must span several tokens"
    );
    let mut d = detok(&tok, &[], true, &[], false);
    let mut all = String::new();
    for &t in &out {
        let step = d.push(t).unwrap();
        assert!(!step.delta.contains('\u{FFFD}'), "{:?}", step.delta);
        all.push_str(&step.delta);
        assert!(text.starts_with(&all));
    }
    all.push_str(&d.finish().unwrap());
    assert_eq!(all, text);
    // A character cut off at the end is flushed by finish() as U+FFFD, like decode() does.
    let cut = &out[..out.len() - 8];
    let (deltas, _) = run(&mut detok(&tok, &[], true, &[], false), cut);
    assert_eq!(deltas.concat(), tok.decode(cut, true).unwrap());
}

#[test]
fn stop_string_split_across_tokens() {
    let tok = Tokenizer::from_dir(fixture("qwen2")).unwrap();
    let out = tok.encode("Hello, world! The end.", false).unwrap();
    let piece = |t: u32| tok.decode(&[t], true).unwrap();
    assert!(
        out.iter().all(|&t| !piece(t).contains("rld!")),
        "stop must span tokens"
    );
    for (incl, want) in [(false, "Hello, "), (true, "Hello, world!")] {
        let mut d = detok(&tok, &[], true, &["xyz", "rld!", "world! The"], incl);
        let mut emitted = String::new();
        let mut stop = None;
        for &t in &out {
            let step = d.push(t).unwrap();
            emitted.push_str(&step.delta);
            if step.stop.is_some() {
                stop = step.stop;
                break;
            }
            // "w" could start "world! The": it stays held back until that is decided
            // (no hold-back is needed when the stop string is kept in the output).
            assert!(
                incl || !emitted.contains('w'),
                "held-back text leaked: {emitted:?}"
            );
        }
        assert_eq!(stop.as_deref(), Some("rld!"));
        assert_eq!(d.finish().unwrap(), "");
        assert_eq!(emitted, if incl { want } else { "Hello, wo" });
        assert!(d.is_done() && d.push(out[0]).unwrap() == DetokStep::default());
    }
}

#[test]
fn partial_stop_prefix_is_released_when_it_does_not_match() {
    let tok = Tokenizer::from_dir(fixture("qwen2")).unwrap();
    let text = "the world is wide";
    let out = tok.encode(text, false).unwrap();
    let (deltas, stop) = run(
        &mut detok(&tok, &[], true, &["wider", "is wi"], false),
        &out,
    );
    assert_eq!(stop.as_deref(), Some("is wi"));
    assert_eq!(deltas.concat(), "the world ");
    let (deltas, stop) = run(&mut detok(&tok, &[], true, &["wider"], false), &out);
    assert_eq!((deltas.concat().as_str(), stop), (text, None));
    assert_eq!(
        deltas.last().unwrap(),
        "wide",
        "the partial match is released by finish()"
    );
}
