//! Scheduler tests, driven by the fake paged model in `fake_model.rs`.

use super::fake_model::{drive, step, FakeModel};
use super::*;

fn cfg() -> SchedulerConfig {
    SchedulerConfig {
        max_num_seqs: 8,
        max_num_batched_tokens: 64,
        max_model_len: 256,
        block_size: 4,
        num_blocks: 64,
        enable_prefix_caching: true,
        enable_chunked_prefill: true,
    }
}

fn prompt(seed: u32, len: usize) -> Vec<u32> {
    (0..len as u32).map(|i| seed * 1000 + i).collect()
}

fn seq(seq_id: SeqId, prompt: Vec<u32>) -> NewSeq {
    NewSeq {
        seq_id,
        prompt,
        priority: 0,
        group: None,
    }
}

fn ids(plan: &StepPlan) -> Vec<SeqId> {
    plan.seqs.iter().map(|s| s.seq_id).collect()
}

#[test]
fn admits_in_arrival_order() {
    let c = SchedulerConfig {
        max_num_seqs: 2,
        ..cfg()
    };
    let (mut s, mut m) = (Scheduler::new(c.clone()), FakeModel::new(&c));
    for id in 1..=3 {
        s.add(seq(id, prompt(id as u32, 5))).expect("valid");
    }
    assert_eq!(ids(&step(&mut s, &mut m)), vec![1, 2]);
    assert_eq!(s.stats().num_waiting, 1);
    s.finish(1);
    assert_eq!(ids(&step(&mut s, &mut m)), vec![2, 3]);
}

#[test]
fn admits_by_priority_then_arrival() {
    let c = SchedulerConfig {
        max_num_seqs: 1,
        ..cfg()
    };
    let (mut s, mut m) = (Scheduler::new(c.clone()), FakeModel::new(&c));
    for (id, priority) in [(1, 5), (2, 0), (3, 0), (4, -1)] {
        let new = NewSeq {
            priority,
            ..seq(id, prompt(id as u32, 3))
        };
        s.add(new).expect("valid");
    }
    let mut order = Vec::new();
    while s.has_work() {
        let plan = step(&mut s, &mut m);
        order.extend(ids(&plan));
        plan.seqs.iter().for_each(|q| s.finish(q.seq_id));
    }
    assert_eq!(order, vec![4, 2, 3, 1]);
}

#[test]
fn chunked_prefill_splits_a_long_prompt() {
    let c = SchedulerConfig {
        max_num_batched_tokens: 8,
        ..cfg()
    };
    let (mut s, mut m) = (Scheduler::new(c.clone()), FakeModel::new(&c));
    let p = prompt(1, 20);
    s.add(seq(1, p.clone())).expect("valid");
    let mut chunks = Vec::new();
    for _ in 0..4 {
        let plan = step(&mut s, &mut m);
        let q = &plan.seqs[0];
        chunks.push((
            q.start_pos,
            q.token_ids.len(),
            q.sample,
            q.block_table.len(),
        ));
        if q.start_pos < 20 {
            assert_eq!(q.token_ids, p[q.start_pos..q.start_pos + q.token_ids.len()]);
        }
    }
    assert_eq!(
        chunks,
        vec![
            (0, 8, false, 2),
            (8, 8, false, 4),
            (16, 4, true, 5),
            (20, 1, true, 6)
        ]
    );
    // The decode feeds exactly the last sampled token.
    assert_eq!(s.tokens(1).expect("live")[20..].len(), 2);
}

#[test]
fn decodes_come_before_new_prefills_within_the_budget() {
    let c = SchedulerConfig {
        max_num_batched_tokens: 10,
        ..cfg()
    };
    let (mut s, mut m) = (Scheduler::new(c.clone()), FakeModel::new(&c));
    s.add(seq(1, prompt(1, 6))).expect("valid");
    step(&mut s, &mut m);
    s.add(seq(2, prompt(2, 30))).expect("valid");
    let plan = step(&mut s, &mut m);
    let shape: Vec<_> = plan
        .seqs
        .iter()
        .map(|q| (q.seq_id, q.start_pos, q.token_ids.len()))
        .collect();
    assert_eq!(shape, vec![(1, 6, 1), (2, 0, 9)]);
    assert_eq!(plan.seqs[0].token_ids, s.tokens(1).expect("live")[6..7]);
}

#[test]
fn many_sequences_respect_seq_and_token_limits() {
    let c = SchedulerConfig {
        max_num_seqs: 3,
        max_num_batched_tokens: 16,
        ..cfg()
    };
    let (mut s, mut m) = (Scheduler::new(c.clone()), FakeModel::new(&c));
    for id in 0..10 {
        s.add(seq(id, prompt(id as u32, 3 + 3 * id as usize)))
            .expect("valid");
    }
    let (outputs, plans) = drive(&mut s, &mut m, 5);
    assert_eq!(outputs.len(), 10);
    assert!(plans.iter().any(|p| p.seqs.len() == 3));
    assert_eq!(s.stats().num_free_blocks, c.num_blocks);
}

#[test]
fn without_chunking_prompts_run_whole_and_oversized_ones_alone() {
    let c = SchedulerConfig {
        max_num_batched_tokens: 8,
        enable_chunked_prefill: false,
        ..cfg()
    };
    let (mut s, mut m) = (Scheduler::new(c.clone()), FakeModel::new(&c));
    s.add(seq(1, prompt(1, 6))).expect("valid");
    s.add(seq(2, prompt(2, 5))).expect("valid");
    s.add(seq(3, prompt(3, 20))).expect("valid");
    assert_eq!(
        ids(&step(&mut s, &mut m)),
        vec![1],
        "2 does not fit the 2 tokens left"
    );
    assert_eq!(ids(&step(&mut s, &mut m)), vec![1, 2]);
    assert_eq!(
        ids(&step(&mut s, &mut m)),
        vec![1, 2],
        "3 waits while others run"
    );
    s.finish(1);
    s.finish(2);
    let plan = step(&mut s, &mut m);
    assert_eq!(ids(&plan), vec![3]);
    assert_eq!(
        (plan.seqs[0].token_ids.len(), plan.seqs[0].sample),
        (20, true)
    );
}

/// Outputs under memory pressure (with preemptions) equal those of an unconstrained run.
fn check_preemption(enable_prefix_caching: bool) {
    let roomy = SchedulerConfig {
        enable_prefix_caching,
        ..cfg()
    };
    let tight = SchedulerConfig {
        num_blocks: 7,
        ..roomy.clone()
    };
    let mut results = Vec::new();
    for c in [roomy, tight] {
        let (mut s, mut m) = (Scheduler::new(c.clone()), FakeModel::new(&c));
        for id in 1..=3 {
            s.add(seq(id, prompt(id as u32, 6))).expect("valid");
        }
        let (outputs, plans) = drive(&mut s, &mut m, 12);
        let preempted: Vec<SeqId> = plans.iter().flat_map(|p| p.preempted.clone()).collect();
        assert_eq!(s.stats().num_preemptions, preempted.len() as u64);
        assert_eq!(s.stats().num_free_blocks, c.num_blocks);
        results.push((outputs, preempted));
    }
    assert!(results[0].1.is_empty());
    assert_eq!(results[1].1.first(), Some(&3), "latest arrival goes first");
    assert_eq!(results[0].0, results[1].0);
    assert_eq!(results[1].0.len(), 3);
}

#[test]
fn preempted_sequences_resume_with_identical_output() {
    check_preemption(true);
    check_preemption(false);
}

#[test]
fn preemption_frees_at_once_and_readmission_hits_the_cache() {
    let c = SchedulerConfig {
        num_blocks: 5,
        ..cfg()
    };
    let (mut s, mut m) = (Scheduler::new(c.clone()), FakeModel::new(&c));
    s.add(seq(1, prompt(1, 8))).expect("valid");
    s.add(seq(2, prompt(2, 8))).expect("valid");
    step(&mut s, &mut m);
    assert_eq!(s.stats().num_free_blocks, 1);
    // Both decodes need a third block; only one is free, so 2 (the later arrival) goes.
    let plan = step(&mut s, &mut m);
    assert_eq!((ids(&plan), plan.preempted.clone()), (vec![1], vec![2]));
    assert_eq!(s.stats().num_free_blocks, 2);
    assert_eq!(s.stats().num_waiting, 1);
    s.finish(1);
    let tokens_2 = s.tokens(2).expect("kept").to_vec();
    assert_eq!(
        tokens_2.len(),
        9,
        "prompt plus one output survive preemption"
    );
    let hits_before = s.stats().prefix_hits;
    let plan = step(&mut s, &mut m);
    let q = &plan.seqs[0];
    assert_eq!(
        (q.seq_id, q.start_pos, q.token_ids.clone(), q.sample),
        (2, 8, vec![tokens_2[8]], true)
    );
    assert_eq!(s.stats().prefix_hits - hits_before, 8);
}

#[test]
fn a_sequence_too_big_for_the_pool_waits_without_looping() {
    let c = SchedulerConfig {
        num_blocks: 3,
        ..cfg()
    };
    let (mut s, mut m) = (Scheduler::new(c.clone()), FakeModel::new(&c));
    s.add(seq(1, prompt(1, 8))).expect("fits with one output");
    let mut last = StepPlan::default();
    for _ in 0..8 {
        last = step(&mut s, &mut m);
    }
    assert!(last.seqs.is_empty());
    assert!(s.has_work());
    assert_eq!(s.stats().num_waiting, 1);
    assert_eq!(s.stats().num_free_blocks, 3);
}

#[test]
fn abort_frees_blocks_immediately() {
    let c = cfg();
    let (mut s, mut m) = (Scheduler::new(c.clone()), FakeModel::new(&c));
    s.add(seq(1, prompt(1, 9))).expect("valid");
    s.add(seq(2, prompt(2, 9))).expect("valid");
    let plan = s.schedule();
    assert_eq!(s.stats().num_free_blocks, 64 - 6);
    s.abort(1);
    assert_eq!(s.stats().num_free_blocks, 64 - 3);
    s.abort(1);
    s.abort(99);
    // Results for the aborted sequence are ignored.
    let sampled = m.run(&plan);
    s.update(&plan, &sampled);
    assert!(s.tokens(1).is_none());
    assert_eq!(s.tokens(2).expect("live").len(), 10);
    s.add(seq(3, prompt(3, 4))).expect("valid");
    s.abort(3);
    s.abort(2);
    assert!(!s.has_work());
    assert_eq!(s.stats().num_free_blocks, 64);
    assert_eq!(s.stats().kv_usage, 0.0);
}

fn siblings(enable_prefix_caching: bool) -> (Scheduler, FakeModel) {
    let c = SchedulerConfig {
        enable_prefix_caching,
        ..cfg()
    };
    let (mut s, m) = (Scheduler::new(c.clone()), FakeModel::new(&c));
    for id in 1..=3 {
        let new = NewSeq {
            group: Some(7),
            ..seq(id, prompt(9, 10))
        };
        s.add(new).expect("valid");
    }
    (s, m)
}

#[test]
fn siblings_wait_for_the_first_prompt_then_share_its_blocks() {
    let (mut s, mut m) = siblings(true);
    assert_eq!(ids(&step(&mut s, &mut m)), vec![1]);
    let plan = step(&mut s, &mut m);
    let shape: Vec<_> = plan
        .seqs
        .iter()
        .map(|q| (q.seq_id, q.start_pos, q.token_ids.len()))
        .collect();
    assert_eq!(shape, vec![(1, 10, 1), (2, 8, 2), (3, 8, 2)]);
    let leader = &plan.seqs[0].block_table;
    assert!(plan.seqs[1..]
        .iter()
        .all(|q| q.block_table[..2] == leader[..2]));
    assert_ne!(plan.seqs[1].block_table[2], plan.seqs[2].block_table[2]);
    let stats = s.stats();
    assert_eq!((stats.prefix_queries, stats.prefix_hits), (30, 16));
    // 3 own blocks for the leader + 1 own block per sibling, the first two blocks shared.
    assert_eq!(stats.num_free_blocks, 64 - 5);
}

#[test]
fn siblings_without_prefix_caching_run_together() {
    let (mut s, mut m) = siblings(false);
    let plan = step(&mut s, &mut m);
    assert_eq!(ids(&plan), vec![1, 2, 3]);
    assert!(plan
        .seqs
        .iter()
        .all(|q| q.start_pos == 0 && q.token_ids.len() == 10));
    assert_eq!((s.stats().prefix_queries, s.stats().prefix_hits), (0, 0));
}

#[test]
fn prefix_caching_off_never_hits() {
    let c = SchedulerConfig {
        enable_prefix_caching: false,
        ..cfg()
    };
    let (mut s, mut m) = (Scheduler::new(c.clone()), FakeModel::new(&c));
    s.add(seq(1, prompt(1, 12))).expect("valid");
    drive(&mut s, &mut m, 2);
    s.add(seq(2, prompt(1, 12))).expect("valid");
    let plan = step(&mut s, &mut m);
    assert_eq!(plan.seqs[0].start_pos, 0);
    assert_eq!(s.stats().prefix_hits, 0);
}

#[test]
fn repeated_prompt_hits_and_reset_clears() {
    let c = cfg();
    let (mut s, mut m) = (Scheduler::new(c.clone()), FakeModel::new(&c));
    s.add(seq(1, prompt(1, 12))).expect("valid");
    let (first, _) = drive(&mut s, &mut m, 3);
    s.add(seq(2, prompt(1, 12))).expect("valid");
    let (second, plans) = drive(&mut s, &mut m, 3);
    assert_eq!(plans[0].seqs[0].start_pos, 8);
    assert_eq!(first[&1], second[&2], "cached KV gives the same output");
    assert!(s.reset_prefix_cache());
    s.add(seq(3, prompt(1, 12))).expect("valid");
    assert_eq!(s.schedule().seqs[0].start_pos, 0);
    assert_eq!((s.stats().prefix_queries, s.stats().prefix_hits), (36, 8));
}

#[test]
fn stats_report_gauges_and_counters() {
    let c = SchedulerConfig {
        num_blocks: 10,
        max_num_seqs: 1,
        ..cfg()
    };
    let mut s = Scheduler::new(c);
    s.add(seq(1, prompt(1, 9))).expect("valid");
    s.add(seq(2, prompt(2, 9))).expect("valid");
    s.schedule();
    let expected = SchedulerStats {
        num_running: 1,
        num_waiting: 1,
        kv_usage: 0.3,
        prefix_queries: 9,
        prefix_hits: 0,
        num_preemptions: 0,
        num_free_blocks: 7,
        num_blocks: 10,
    };
    assert_eq!(s.stats(), expected);
}

#[test]
fn add_rejects_bad_input_without_side_effects() {
    let c = SchedulerConfig {
        max_model_len: 10,
        num_blocks: 2,
        ..cfg()
    };
    let mut s = Scheduler::new(c);
    assert_eq!(s.add(seq(1, vec![])), Err(SchedulerError::EmptyPrompt));
    assert_eq!(
        s.add(seq(1, prompt(1, 10))),
        Err(SchedulerError::PromptTooLong {
            len: 10,
            max_model_len: 10
        })
    );
    assert_eq!(
        s.add(seq(1, prompt(1, 8))),
        Err(SchedulerError::PromptExceedsCache {
            needed: 3,
            num_blocks: 2
        })
    );
    assert!(!s.has_work());
    s.add(seq(1, prompt(1, 7))).expect("valid");
    assert_eq!(
        s.add(seq(1, prompt(1, 3))),
        Err(SchedulerError::DuplicateSeq(1))
    );
    assert_eq!(s.stats().num_waiting, 1);
}

#[test]
fn update_ignores_unexpected_samples() {
    let c = SchedulerConfig {
        max_num_batched_tokens: 4,
        ..cfg()
    };
    let mut s = Scheduler::new(c);
    s.add(seq(1, prompt(1, 10))).expect("valid");
    let plan = s.schedule();
    assert!(!plan.seqs[0].sample);
    s.update(&plan, &[(1, 5), (42, 5)]);
    assert_eq!(s.tokens(1).expect("live").len(), 10);
    // Applying the same plan twice is ignored too.
    s.update(&plan, &[]);
    assert_eq!(s.schedule().seqs[0].start_pos, 4);
}
