//! Prefix caching: a request sharing a long prefix computes only its new tokens (counters), gives
//! the same output as without caching, and eviction under memory pressure loses no request.

mod common;
use candela_engine::{Prompt, Request};
use common::*;

fn ids(seed: u32, n: usize) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i * 37 + seed * 101 + 7) % 470 + 1)
        .collect()
}

#[test]
fn shared_prefix_is_computed_once() {
    let base = ids(1, 70);
    let mut second = base[..64].to_vec();
    second.extend(ids(2, 9));
    let run_both = |caching: bool| {
        let mut cfg = test_config(fixture("qwen2").to_string_lossy());
        cfg.enable_prefix_caching = caching;
        let e = start(&cfg);
        let a = run(&e, "a", Prompt::Tokens(base.clone()), greedy(8))
            .remove(0)
            .token_ids;
        let before = idle_stats(&e);
        let b = run(&e, "b", Prompt::Tokens(second.clone()), greedy(8))
            .remove(0)
            .token_ids;
        let after = idle_stats(&e);
        e.shutdown();
        (a, b, before, after)
    };
    let (a1, b1, before, after) = run_both(true);
    // 64 shared tokens = 4 full blocks of 16: all hit; the 9 new tokens are computed.
    assert_eq!(
        after.prefix_queries - before.prefix_queries,
        second.len() as u64
    );
    assert_eq!(after.prefix_hits - before.prefix_hits, 64);
    let (a0, b0, _, after0) = run_both(false);
    assert_eq!(after0.prefix_hits, 0);
    assert_eq!((a1, b1), (a0, b0), "caching changed the outputs");
}

#[test]
fn eviction_under_pressure_loses_no_request() {
    let mut cfg = test_config(fixture("llama").to_string_lossy());
    cfg.max_model_len = Some(64);
    cfg.block_size = 4;
    let bpb = candela_models::KvCache::bytes_per_block(
        2,
        candela_kernels::KvLayout {
            block_size: 4,
            n_kv_heads: 2,
            head_dim: 16,
        },
        Default::default(),
    );
    cfg.kv_cache_memory_bytes = (20 * bpb) as u64;
    let e = start(&cfg);
    // Many distinct prompts sharing pairwise prefixes, more than the pool can cache at once.
    let mut streams = Vec::new();
    for i in 0..24u32 {
        let mut p = ids(i / 2, 40);
        p.extend(ids(100 + i, 4));
        let s = e
            .submit(Request {
                id: format!("p{i}"),
                prompt: Prompt::Tokens(p),
                params: greedy(8),
                priority: 0,
            })
            .unwrap();
        streams.push(s);
    }
    for s in streams.iter_mut() {
        let out = collect(&mut s.events, 1);
        assert_eq!(out[0].token_ids.len(), 8);
    }
    let st = idle_stats(&e);
    assert!(st.prefix_hits > 0, "{st:?}");
    e.shutdown();
}
