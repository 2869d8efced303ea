//! Metric math of `bench serve`, with the definitions of `vllm bench serve`:
//! TTFT (send to first token chunk), TPOT ((E2EL − TTFT) / (output tokens − 1), per request,
//! requests with one output token excluded), ITL (gaps between token chunks), E2EL (send to
//! last chunk), throughput over the whole run, goodput (requests meeting every SLO, per second),
//! statistics (mean, median, population std, percentiles with linear interpolation), and the
//! printed summary in vLLM's layout.

use serde_json::{json, Map, Value};

/// One finished request as the metrics see it (times in seconds).
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// Whether the request produced at least one token and no error.
    pub success: bool,
    /// Prompt tokens (from the dataset, as vLLM counts them).
    pub prompt_len: usize,
    /// Output tokens (server usage, else the tokenizer, else the token chunks).
    pub output_len: usize,
    /// Time to first token.
    pub ttft: f64,
    /// Gaps between consecutive token chunks.
    pub itl: Vec<f64>,
    /// Send to last chunk.
    pub e2el: f64,
    /// Send time, from the start of the run.
    pub start: f64,
}

/// Service-level objectives of `--goodput` (milliseconds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Goodput {
    /// TTFT limit.
    pub ttft_ms: Option<f64>,
    /// TPOT limit.
    pub tpot_ms: Option<f64>,
    /// E2EL limit.
    pub e2el_ms: Option<f64>,
}

impl Goodput {
    /// Parses `ttft:500 tpot:50 e2el:10000` (values in ms).
    pub fn parse(items: &[String]) -> anyhow::Result<Option<Goodput>> {
        if items.is_empty() {
            return Ok(None);
        }
        let mut g = Goodput::default();
        for item in items.iter().flat_map(|s| s.split_whitespace()) {
            let (k, v) = item
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("--goodput wants KEY:VALUE pairs, got {item:?}"))?;
            let v: f64 = v
                .parse()
                .map_err(|_| anyhow::anyhow!("--goodput {k}: {v:?} is not a number"))?;
            anyhow::ensure!(v >= 0.0, "--goodput {k}: the value must not be negative");
            match k {
                "ttft" => g.ttft_ms = Some(v),
                "tpot" => g.tpot_ms = Some(v),
                "e2el" => g.e2el_ms = Some(v),
                _ => anyhow::bail!("--goodput: unknown metric {k:?} (ttft, tpot, e2el)"),
            }
        }
        Ok(Some(g))
    }

    /// Whether a request meets every objective.
    pub fn met(&self, r: &Record) -> bool {
        let tpot = tpot(r.e2el, r.ttft, r.output_len).unwrap_or(0.0);
        self.ttft_ms.is_none_or(|l| r.ttft * 1e3 <= l)
            && self.tpot_ms.is_none_or(|l| tpot * 1e3 <= l)
            && self.e2el_ms.is_none_or(|l| r.e2el * 1e3 <= l)
    }
}

/// TPOT of one request: `(e2el − ttft) / (output_tokens − 1)`; `None` below two tokens.
pub fn tpot(e2el: f64, ttft: f64, output_tokens: usize) -> Option<f64> {
    (output_tokens > 1).then(|| (e2el - ttft) / (output_tokens - 1) as f64)
}

/// Percentile `p` (0-100) of sorted values, linear interpolation between ranks (numpy's default).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = p.clamp(0.0, 100.0) / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// Mean, median, population std and selected percentiles of one metric (same unit as input).
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub median: f64,
    /// Population standard deviation.
    pub std: f64,
    /// (percentile, value) pairs.
    pub percentiles: Vec<(f64, f64)>,
}

impl Stats {
    /// Statistics of `values` (all zero when empty, as vLLM reports).
    pub fn of(values: &[f64], ps: &[f64]) -> Stats {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len().max(1) as f64;
        let mean = v.iter().sum::<f64>() / n;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        let percentiles = ps.iter().map(|&p| (p, percentile(&v, p))).collect();
        Stats {
            mean,
            median: percentile(&v, 50.0),
            std,
            percentiles,
        }
    }
}

/// Whole-run results.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Successful requests.
    pub completed: usize,
    /// Failed requests.
    pub failed: usize,
    /// Run time in seconds.
    pub duration: f64,
    /// Prompt tokens of successful requests.
    pub total_input: usize,
    /// Output tokens of successful requests.
    pub total_output: usize,
    /// Completed requests per second.
    pub request_throughput: f64,
    /// Requests meeting the SLOs per second, when `--goodput` was given.
    pub request_goodput: Option<f64>,
    /// Output tokens per second.
    pub output_throughput: f64,
    /// Prompt plus output tokens per second.
    pub total_token_throughput: f64,
    /// Most token chunks received in any one-second window from the start.
    pub max_output_tokens_per_s: f64,
    /// Most requests in flight at once.
    pub max_concurrent_requests: usize,
    /// Per metric name (`ttft`, `tpot`, `itl`, `e2el`), statistics in milliseconds.
    pub stats: Vec<(&'static str, Stats)>,
}

/// Computes the run's metrics (`ps` are the percentiles to report).
pub fn calculate(
    records: &[Record],
    duration: f64,
    goodput: Option<&Goodput>,
    ps: &[f64],
) -> Metrics {
    let ok: Vec<&Record> = records.iter().filter(|r| r.success).collect();
    let ms = |x: f64| x * 1e3;
    let ttfts: Vec<f64> = ok.iter().map(|r| ms(r.ttft)).collect();
    let tpots: Vec<f64> = ok
        .iter()
        .filter_map(|r| tpot(r.e2el, r.ttft, r.output_len))
        .map(ms)
        .collect();
    let itls: Vec<f64> = ok
        .iter()
        .flat_map(|r| r.itl.iter().copied())
        .map(ms)
        .collect();
    let e2els: Vec<f64> = ok.iter().map(|r| ms(r.e2el)).collect();
    let total_input: usize = ok.iter().map(|r| r.prompt_len).sum();
    let total_output: usize = ok.iter().map(|r| r.output_len).sum();
    let d = duration.max(f64::MIN_POSITIVE);
    let good = goodput.map(|g| ok.iter().filter(|r| g.met(r)).count() as f64 / d);
    Metrics {
        completed: ok.len(),
        failed: records.len() - ok.len(),
        duration,
        total_input,
        total_output,
        request_throughput: ok.len() as f64 / d,
        request_goodput: good,
        output_throughput: total_output as f64 / d,
        total_token_throughput: (total_input + total_output) as f64 / d,
        max_output_tokens_per_s: peak_tokens_per_s(&ok),
        max_concurrent_requests: peak_concurrency(records),
        stats: vec![
            ("ttft", Stats::of(&ttfts, ps)),
            ("tpot", Stats::of(&tpots, ps)),
            ("itl", Stats::of(&itls, ps)),
            ("e2el", Stats::of(&e2els, ps)),
        ],
    }
}

/// Token chunks per one-second bin (bins from the start of the run), the fullest bin.
fn peak_tokens_per_s(ok: &[&Record]) -> f64 {
    let mut bins: Vec<u32> = Vec::new();
    for r in ok {
        let mut t = r.start + r.ttft;
        for gap in std::iter::once(0.0).chain(r.itl.iter().copied()) {
            t += gap;
            let b = t.max(0.0) as usize;
            if bins.len() <= b {
                bins.resize(b + 1, 0);
            }
            bins[b] += 1;
        }
    }
    bins.into_iter().max().unwrap_or(0) as f64
}

/// Most requests in flight at once (sweep over start/end events).
fn peak_concurrency(records: &[Record]) -> usize {
    let mut ev: Vec<(f64, i32)> = records
        .iter()
        .flat_map(|r| [(r.start, 1), (r.start + r.e2el, -1)])
        .collect();
    ev.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut cur, mut best) = (0i32, 0i32);
    for (_, d) in ev {
        cur += d;
        best = best.max(cur);
    }
    best as usize
}

/// Labels of the summary sections, as vLLM prints them.
fn section(name: &str) -> (&'static str, &'static str) {
    match name {
        "ttft" => ("Time to First Token", "TTFT"),
        "tpot" => ("Time per Output Token (excl. 1st token)", "TPOT"),
        "itl" => ("Inter-token Latency", "ITL"),
        _ => ("End-to-end Latency", "E2EL"),
    }
}

/// Formats a percentile like vLLM (`99`, `99.9`).
fn pct_label(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("{}", p as i64)
    } else {
        format!("{p}")
    }
}

/// The summary block printed at the end of a run, in vLLM's layout.
pub fn summary(
    m: &Metrics,
    max_concurrency: Option<usize>,
    rate: f64,
    selected: &[String],
) -> String {
    let mut s = String::new();
    let mut line = |k: &str, v: String| s.push_str(&format!("{k:<40} {v:<10}\n"));
    line("Successful requests:", m.completed.to_string());
    line("Failed requests:", m.failed.to_string());
    if let Some(c) = max_concurrency {
        line("Maximum request concurrency:", c.to_string());
    }
    line(
        "Request rate configured (RPS):",
        if rate.is_infinite() {
            "inf".into()
        } else {
            format!("{rate:.2}")
        },
    );
    line("Benchmark duration (s):", format!("{:.2}", m.duration));
    line("Total input tokens:", m.total_input.to_string());
    line("Total generated tokens:", m.total_output.to_string());
    line(
        "Request throughput (req/s):",
        format!("{:.2}", m.request_throughput),
    );
    if let Some(g) = m.request_goodput {
        line("Request goodput (req/s):", format!("{g:.2}"));
    }
    line(
        "Output token throughput (tok/s):",
        format!("{:.2}", m.output_throughput),
    );
    line(
        "Peak output token throughput (tok/s):",
        format!("{:.2}", m.max_output_tokens_per_s),
    );
    line(
        "Peak concurrent requests:",
        m.max_concurrent_requests.to_string(),
    );
    line(
        "Total token throughput (tok/s):",
        format!("{:.2}", m.total_token_throughput),
    );
    for (name, st) in &m.stats {
        if !selected.iter().any(|x| x == name) {
            continue;
        }
        let (title, short) = section(name);
        s.push_str(&format!("{title:-^50}\n"));
        s.push_str(&format!(
            "{:<40} {:<10.2}\n",
            format!("Mean {short} (ms):"),
            st.mean
        ));
        s.push_str(&format!(
            "{:<40} {:<10.2}\n",
            format!("Median {short} (ms):"),
            st.median
        ));
        for (p, v) in &st.percentiles {
            s.push_str(&format!(
                "{:<40} {:<10.2}\n",
                format!("P{} {short} (ms):", pct_label(*p)),
                v
            ));
        }
    }
    s.push_str(&format!("{}\n", "=".repeat(50)));
    format!("{:=^50}\n{s}", " Serving Benchmark Result ")
}

/// The metric keys of vLLM's result JSON (`completed`, `mean_ttft_ms`, `p99_itl_ms`, ...),
/// for the selected metrics; per-request arrays are added by the caller.
pub fn result_json(m: &Metrics, selected: &[String]) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("duration".into(), json!(m.duration));
    o.insert("completed".into(), json!(m.completed));
    o.insert("failed".into(), json!(m.failed));
    o.insert("total_input_tokens".into(), json!(m.total_input));
    o.insert("total_output_tokens".into(), json!(m.total_output));
    o.insert("request_throughput".into(), json!(m.request_throughput));
    o.insert("request_goodput".into(), json!(m.request_goodput));
    o.insert("output_throughput".into(), json!(m.output_throughput));
    o.insert(
        "total_token_throughput".into(),
        json!(m.total_token_throughput),
    );
    o.insert(
        "max_output_tokens_per_s".into(),
        json!(m.max_output_tokens_per_s),
    );
    o.insert(
        "max_concurrent_requests".into(),
        json!(m.max_concurrent_requests),
    );
    for (name, st) in &m.stats {
        if !selected.iter().any(|x| x == name) {
            continue;
        }
        o.insert(format!("mean_{name}_ms"), json!(st.mean));
        o.insert(format!("median_{name}_ms"), json!(st.median));
        o.insert(format!("std_{name}_ms"), json!(st.std));
        for (p, v) in &st.percentiles {
            o.insert(format!("p{}_{name}_ms", pct_label(*p)), json!(v));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ttft: f64, e2el: f64, out: usize, start: f64) -> Record {
        let itl = if out > 1 {
            vec![(e2el - ttft) / (out - 1) as f64; out - 1]
        } else {
            vec![]
        };
        Record {
            success: true,
            prompt_len: 10,
            output_len: out,
            ttft,
            itl,
            e2el,
            start,
        }
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert!((percentile(&v, 99.0) - 3.97).abs() < 1e-12);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 4.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
        let s = Stats::of(&[4.0, 1.0, 3.0, 2.0], &[99.0]);
        assert_eq!((s.mean, s.median), (2.5, 2.5));
        assert!((s.std - 1.25f64.sqrt()).abs() < 1e-12);
        assert!((s.percentiles[0].1 - 3.97).abs() < 1e-12);
    }

    #[test]
    fn tpot_excludes_the_first_token() {
        assert_eq!(tpot(1.1, 0.1, 11), Some(0.1));
        assert_eq!(tpot(1.0, 0.5, 1), None);
        assert_eq!(tpot(1.0, 0.5, 0), None);
        let m = calculate(
            &[rec(0.1, 1.1, 11, 0.0), rec(0.2, 0.2, 1, 0.0)],
            2.0,
            None,
            &[99.0],
        );
        let t = &m.stats[1].1;
        assert!(
            (t.mean - 100.0).abs() < 1e-9,
            "single-token requests have no TPOT"
        );
        assert_eq!(m.total_output, 12);
        assert_eq!(m.output_throughput, 6.0);
        assert_eq!(m.request_throughput, 1.0);
        assert_eq!(m.total_token_throughput, 16.0);
    }

    #[test]
    fn failed_requests_are_counted_but_not_measured() {
        let bad = Record {
            success: false,
            start: 0.0,
            e2el: 0.5,
            ..Default::default()
        };
        let m = calculate(&[rec(0.1, 1.1, 11, 0.0), bad], 1.0, None, &[99.0]);
        assert_eq!((m.completed, m.failed), (1, 1));
        assert_eq!(m.total_input, 10);
        assert_eq!(m.max_concurrent_requests, 2);
    }

    #[test]
    fn goodput_counts_requests_meeting_every_slo() {
        let g = Goodput::parse(&["ttft:150 tpot:120".into(), "e2el:2000".into()])
            .unwrap()
            .unwrap();
        assert_eq!(
            g,
            Goodput {
                ttft_ms: Some(150.0),
                tpot_ms: Some(120.0),
                e2el_ms: Some(2000.0)
            }
        );
        let rs = [
            rec(0.1, 1.1, 11, 0.0), // ok: ttft 100, tpot 100, e2el 1100
            rec(0.2, 1.2, 11, 0.0), // ttft 200 too slow
            rec(0.1, 1.6, 11, 0.0), // tpot 150 too slow
            rec(0.1, 2.1, 11, 0.0), // tpot 200 and e2el 2100 too slow
        ];
        let m = calculate(&rs, 2.0, Some(&g), &[99.0]);
        assert_eq!(m.request_goodput, Some(0.5));
        assert!(Goodput::parse(&[]).unwrap().is_none());
        assert!(Goodput::parse(&["ttft".into()]).is_err());
        assert!(Goodput::parse(&["foo:1".into()]).is_err());
        assert!(Goodput::parse(&["ttft:x".into()]).is_err());
    }

    #[test]
    fn peaks_and_json_keys() {
        let rs = [rec(0.5, 2.5, 5, 0.0), rec(0.5, 1.5, 3, 1.0)];
        let m = calculate(&rs, 3.0, None, &[50.0, 99.0]);
        assert_eq!(m.max_concurrent_requests, 2);
        // Token times: 0.5 1.0 1.5 2.0 2.5 and 1.5 2.0 2.5 -> bin 2 holds 2.0, 2.5, 2.0, 2.5.
        assert_eq!(m.max_output_tokens_per_s, 4.0);
        let all: Vec<String> = ["ttft", "tpot", "itl", "e2el"].map(String::from).to_vec();
        let j = result_json(&m, &all);
        for k in [
            "completed",
            "total_input_tokens",
            "request_throughput",
            "mean_ttft_ms",
            "median_tpot_ms",
            "std_itl_ms",
            "p99_e2el_ms",
            "p50_ttft_ms",
        ] {
            assert!(j.contains_key(k), "{k}");
        }
        let text = summary(&m, Some(8), f64::INFINITY, &all);
        assert!(text.starts_with("============ Serving Benchmark Result ============\n"));
        assert!(text.contains("Maximum request concurrency:             8"));
        assert!(text.contains("-----Time per Output Token (excl. 1st token)------"));
        assert!(text.contains("P99 ITL (ms):"));
    }
}
