//! Tests of `/metrics`: bucket layout, number formatting, the exposition text and the
//! request-time histograms.

use super::*;

#[test]
fn buckets_and_formatting() {
    assert_eq!(
        buckets_125(100),
        vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
    );
    assert_eq!(fmt_f64(1.0), "1.0");
    assert_eq!(fmt_f64(0.025), "0.025");
    assert_eq!(fmt_f64(f64::INFINITY), "+Inf");
    assert_eq!(escape_label("a\"b"), "a\\\"b");
}

#[test]
fn queue_time_ends_when_the_engine_first_schedules() {
    let m = Metrics::new("m");
    let t0 = Instant::now() - std::time::Duration::from_secs(2);
    let mut t = SeqTiming::new(t0, t0);
    t.scheduled = Some(t0 + std::time::Duration::from_millis(1500));
    m.on_tokens(&mut t, 1);
    m.on_finished(&t, 3, "stop");
    let text = m.render(None);
    let l = "engine=\"0\",model_name=\"m\"";
    // 1.5 s in the queue: above the 1.0 bucket, inside 2.5; prefill (< 0.5 s) below 1.0.
    assert!(
        text.contains(&format!(
            "vllm:request_queue_time_seconds_bucket{{{l},le=\"1.0\"}} 0.0\n"
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "vllm:request_queue_time_seconds_bucket{{{l},le=\"2.5\"}} 1.0\n"
    )));
    assert!(text.contains(&format!(
        "vllm:request_prefill_time_seconds_bucket{{{l},le=\"1.0\"}} 1.0\n"
    )));
}

#[test]
fn render_is_prometheus_text() {
    let m = Metrics::new("m");
    m.set_max_model_len(512);
    let t0 = Instant::now();
    let mut t = SeqTiming::new(t0, t0);
    m.on_tokens(&mut t, 1);
    m.on_tokens(&mut t, 2);
    m.on_finished(&t, 7, "length");
    let text = m.render(None);
    assert!(text.contains("# TYPE vllm:prompt_tokens_total counter\n"));
    assert!(text.contains(
        "vllm:request_success_total{engine=\"0\",model_name=\"m\",finished_reason=\"length\"} 1.0\n"
    ));
    assert!(text.contains(
        "vllm:request_generation_tokens_bucket{engine=\"0\",model_name=\"m\",le=\"5.0\"} 1.0\n"
    ));
    assert!(text
        .contains("vllm:inter_token_latency_seconds_count{engine=\"0\",model_name=\"m\"} 2.0\n"));
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(
            series.starts_with("vllm:") && series.ends_with('}'),
            "{line}"
        );
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
}
