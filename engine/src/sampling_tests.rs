//! Tests of `sampling.rs`.
use super::*;

fn err(p: SamplingParams) -> ParamError {
    p.validate(512).unwrap_err()
}

#[test]
fn defaults_are_vllm_defaults_and_valid() {
    let p = SamplingParams::default();
    assert_eq!((p.n, p.temperature, p.top_p, p.top_k), (1, 1.0, 1.0, 0));
    assert!(p.skip_special_tokens && p.spaces_between_special_tokens);
    p.validate(512).unwrap();
    let minus_one = SamplingParams {
        top_k: -1,
        ..Default::default()
    };
    minus_one.validate(512).unwrap();
}

#[test]
fn validation_messages_match_vllm() {
    let e = err(SamplingParams {
        temperature: -1.0,
        ..Default::default()
    });
    assert_eq!(e.message, "temperature must be non-negative, got -1.0.");
    assert_eq!(e.param, "temperature");
    assert_eq!(
        err(SamplingParams {
            top_p: 0.0,
            ..Default::default()
        })
        .param,
        "top_p"
    );
    assert_eq!(
        err(SamplingParams {
            top_p: 1.5,
            ..Default::default()
        })
        .param,
        "top_p"
    );
    let e = err(SamplingParams {
        top_k: -2,
        ..Default::default()
    });
    assert_eq!(
        e.message,
        "top_k must be 0 (disable), or at least 1, got -2."
    );
    assert_eq!(
        err(SamplingParams {
            min_p: 1.5,
            ..Default::default()
        })
        .param,
        "min_p"
    );
    let rp = SamplingParams {
        repetition_penalty: 0.0,
        ..Default::default()
    };
    assert_eq!(err(rp).param, "repetition_penalty");
    let pp = SamplingParams {
        presence_penalty: 2.5,
        ..Default::default()
    };
    assert_eq!(
        err(pp).message,
        "presence_penalty must be in [-2, 2], got 2.5."
    );
    let fp = SamplingParams {
        frequency_penalty: -3.0,
        ..Default::default()
    };
    assert_eq!(err(fp).param, "frequency_penalty");
    assert_eq!(
        err(SamplingParams {
            n: 0,
            ..Default::default()
        })
        .param,
        "n"
    );
    let mt = SamplingParams {
        max_tokens: Some(0),
        ..Default::default()
    };
    assert_eq!(err(mt).message, "max_tokens must be at least 1, got 0.");
    let mn = SamplingParams {
        min_tokens: 5,
        max_tokens: Some(4),
        ..Default::default()
    };
    assert_eq!(
        err(mn).message,
        "min_tokens must be less than or equal to max_tokens=4, got 5."
    );
    assert_eq!(
        err(SamplingParams {
            logprobs: Some(21),
            ..Default::default()
        })
        .param,
        "logprobs"
    );
    let lb = SamplingParams {
        logit_bias: vec![(512, 1.0)],
        ..Default::default()
    };
    assert_eq!(err(lb).param, "logit_bias");
    let st = SamplingParams {
        stop: vec![String::new()],
        ..Default::default()
    };
    assert_eq!(err(st).param, "stop");
}

#[test]
fn generation_defaults_replace_vllm_defaults() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/qwen2");
    let d = GenerationDefaults::from_dir(dir).unwrap();
    assert_eq!(d.eos_token_ids, vec![482, 480]);
    let p = SamplingParams::from_defaults(&d);
    assert_eq!((p.temperature, p.top_p, p.top_k), (0.7, 0.8, 20));
    assert!((p.repetition_penalty - 1.05).abs() < 1e-6);
    assert_eq!(p.min_p, 0.0);
    let d =
        GenerationDefaults::from_json_str(r#"{"eos_token_id": 7, "max_new_tokens": 9}"#).unwrap();
    assert_eq!(d.eos_token_ids, vec![7]);
    assert_eq!(SamplingParams::from_defaults(&d).max_tokens, Some(9));
    assert!(GenerationDefaults::from_json_str(r#"{"top_k": "x"}"#).is_err());
}
