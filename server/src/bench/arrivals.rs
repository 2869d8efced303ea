//! Request arrival times for `bench serve`: a gamma renewal process (Poisson when
//! `burstiness` is 1), as `vllm bench serve --request-rate R --burstiness B`.

use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Gamma};

/// Send times in seconds from the start of the run, one per request. The first request goes at
/// 0; each gap is drawn from Gamma(shape = burstiness, scale = 1 / (rate * burstiness)), whose
/// mean is `1 / rate`. An infinite rate sends everything at 0.
pub fn send_times(n: usize, rate: f64, burstiness: f64, seed: u64) -> anyhow::Result<Vec<f64>> {
    anyhow::ensure!(rate > 0.0, "--request-rate must be positive (or inf)");
    anyhow::ensure!(burstiness > 0.0, "--burstiness must be positive");
    if rate.is_infinite() {
        return Ok(vec![0.0; n]);
    }
    let gamma = Gamma::new(burstiness, 1.0 / (rate * burstiness))?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = 0.0;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(t);
        t += gamma.sample(&mut rng);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(times: &[f64]) -> Vec<f64> {
        times.windows(2).map(|w| w[1] - w[0]).collect()
    }

    #[test]
    fn infinite_rate_sends_all_at_once() {
        assert_eq!(send_times(4, f64::INFINITY, 1.0, 0).unwrap(), vec![0.0; 4]);
    }

    #[test]
    fn poisson_mean_rate_and_variance() {
        let g = gaps(&send_times(40_001, 4.0, 1.0, 7).unwrap());
        let mean = g.iter().sum::<f64>() / g.len() as f64;
        assert!((mean - 0.25).abs() < 0.25 * 0.03, "mean gap {mean}");
        // Exponential gaps: variance = mean^2.
        let var = g.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / g.len() as f64;
        assert!(
            (var / (mean * mean) - 1.0).abs() < 0.08,
            "cv^2 {}",
            var / (mean * mean)
        );
    }

    #[test]
    fn gamma_keeps_mean_rate_and_changes_spread() {
        for b in [0.5, 3.0] {
            let g = gaps(&send_times(40_001, 10.0, b, 3).unwrap());
            let mean = g.iter().sum::<f64>() / g.len() as f64;
            assert!(
                (mean - 0.1).abs() < 0.1 * 0.03,
                "burstiness {b}: mean gap {mean}"
            );
            let var = g.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / g.len() as f64;
            // Gamma(k): cv^2 = 1 / k.
            let cv2 = var / (mean * mean);
            assert!((cv2 * b - 1.0).abs() < 0.1, "burstiness {b}: cv^2 {cv2}");
        }
    }

    #[test]
    fn same_seed_same_times_and_bad_input_rejected() {
        assert_eq!(
            send_times(5, 2.0, 1.0, 1).unwrap(),
            send_times(5, 2.0, 1.0, 1).unwrap()
        );
        assert!(send_times(5, 0.0, 1.0, 1).is_err());
        assert!(send_times(5, 1.0, 0.0, 1).is_err());
    }
}
