//! Request-level behaviour through the engine: n > 1 sharing the prompt's blocks, per-request
//! seeds, stop strings and stop tokens, max_tokens, abort freeing blocks at once, priorities.

mod common;
use candela_engine::{FinishReason, Prompt, Request, SamplingParams};
use common::*;

fn sampled(seed: Option<u64>, n: usize) -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        seed,
        n,
        max_tokens: Some(12),
        ignore_eos: true,
        ..SamplingParams::default()
    }
}

#[test]
fn seeds_reproduce_and_n_gives_distinct_samples() {
    let e = start(&test_config(fixture("qwen2").to_string_lossy()));
    let p: Vec<u32> = (1..40).collect();
    let a = run(&e, "a", Prompt::Tokens(p.clone()), sampled(Some(7), 1));
    let b = run(&e, "b", Prompt::Tokens(p.clone()), sampled(Some(7), 1));
    let c = run(&e, "c", Prompt::Tokens(p.clone()), sampled(Some(8), 1));
    assert_eq!(a, b, "same seed, same output");
    assert_ne!(
        a[0].token_ids, c[0].token_ids,
        "different seed, different output"
    );
    let before = idle_stats(&e);
    let many = run(&e, "n", Prompt::Tokens(p.clone()), sampled(Some(7), 3));
    assert_eq!(many.len(), 3);
    assert!(many[0].token_ids != many[1].token_ids || many[1].token_ids != many[2].token_ids);
    let after = idle_stats(&e);
    // Siblings reuse the first sequence's full prompt blocks (2 blocks of 16 = 32 tokens each).
    assert!(
        after.prefix_hits - before.prefix_hits >= 2 * 32,
        "{before:?} {after:?}"
    );
    e.shutdown();
}

#[test]
fn stop_strings_tokens_and_lengths() {
    let e = start(&test_config(fixture("llama").to_string_lossy()));
    let case = &golden_cases("llama")[0];
    let full = run(
        &e,
        "full",
        Prompt::Tokens(case.input_ids.clone()),
        greedy(16),
    )
    .remove(0);
    assert_eq!(full.finish_reason, Some(FinishReason::Length));
    // Stop on a substring of the greedy text: output truncated before it, finish "stop".
    let stop: String = full.text.chars().skip(3).take(3).collect();
    let prefix = &full.text[..full.text.find(&stop).unwrap()];
    let out = run(
        &e,
        "s",
        Prompt::Tokens(case.input_ids.clone()),
        SamplingParams {
            stop: vec![stop.clone()],
            ..greedy(16)
        },
    )
    .remove(0);
    assert_eq!(out.finish_reason, Some(FinishReason::Stop));
    assert_eq!(out.text, prefix);
    let out = run(
        &e,
        "s2",
        Prompt::Tokens(case.input_ids.clone()),
        SamplingParams {
            stop: vec![stop.clone()],
            include_stop_str_in_output: true,
            ..greedy(16)
        },
    )
    .remove(0);
    assert_eq!(out.text, format!("{prefix}{stop}"));
    // Stop token id: the 3rd greedy token.
    let t = case.greedy_ids[2];
    let first = case.greedy_ids.iter().position(|&x| x == t).unwrap();
    let out = run(
        &e,
        "t",
        Prompt::Tokens(case.input_ids.clone()),
        SamplingParams {
            stop_token_ids: vec![t],
            ..greedy(16)
        },
    )
    .remove(0);
    assert_eq!(out.token_ids, case.greedy_ids[..=first]);
    assert_eq!(out.finish_reason, Some(FinishReason::Stop));
    e.shutdown();
}

#[test]
fn abort_frees_blocks_at_once() {
    let e = start(&test_config(fixture("qwen2").to_string_lossy()));
    let mut s = e
        .submit(Request {
            id: "long".into(),
            prompt: Prompt::Tokens((1..100).collect()),
            params: greedy(150),
            priority: 0,
        })
        .unwrap();
    // Wait until it is decoding, then abort.
    let _ = s.events.blocking_recv();
    e.abort("long");
    let mut last = None;
    while let Some(ev) = s.events.blocking_recv() {
        last = Some(ev);
    }
    match last {
        Some(candela_engine::RequestEvent::Delta(d)) => {
            assert_eq!(d.finish_reason, Some(FinishReason::Abort))
        }
        other => panic!("expected an abort event, got {other:?}"),
    }
    let st = idle_stats(&e);
    assert_eq!(st.requests_aborted, 1);
    // Dropping a stream (client gone) also frees everything.
    let s = e
        .submit(Request {
            id: "gone".into(),
            prompt: Prompt::Tokens((1..100).collect()),
            params: greedy(150),
            priority: 0,
        })
        .unwrap();
    drop(s);
    idle_stats(&e);
    e.shutdown();
}

#[test]
fn min_tokens_and_eos() {
    let e = start(&test_config(fixture("qwen2").to_string_lossy()));
    let eos = 482u32;
    // Force EOS with a logit bias: without min_tokens the request stops at once.
    let bias = vec![(eos, 100.0)];
    let out = run(
        &e,
        "e",
        Prompt::Tokens(vec![1, 2, 3]),
        SamplingParams {
            logit_bias: bias.clone(),
            ignore_eos: false,
            ..greedy(10)
        },
    )
    .remove(0);
    assert_eq!(out.token_ids, vec![eos]);
    assert_eq!(out.finish_reason, Some(FinishReason::Stop));
    let out = run(
        &e,
        "m",
        Prompt::Tokens(vec![1, 2, 3]),
        SamplingParams {
            logit_bias: bias.clone(),
            ignore_eos: false,
            min_tokens: 4,
            ..greedy(10)
        },
    )
    .remove(0);
    assert_eq!(out.token_ids.len(), 5);
    assert_eq!(*out.token_ids.last().unwrap(), eos);
    let out = run(
        &e,
        "i",
        Prompt::Tokens(vec![1, 2, 3]),
        SamplingParams {
            logit_bias: bias,
            ignore_eos: true,
            ..greedy(6)
        },
    )
    .remove(0);
    assert_eq!(out.token_ids, vec![eos; 6]);
    assert_eq!(out.finish_reason, Some(FinishReason::Length));
    e.shutdown();
}
