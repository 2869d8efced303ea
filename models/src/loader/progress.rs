//! Load progress reporting: a progress bar on stderr that the model loader ticks once per tensor.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar over `total` steps (tensors) labelled `msg`, drawn on stderr.
///
/// The bar is hidden automatically when stderr is not a terminal (logs, CI), so callers can
/// tick it unconditionally: `let pb = progress_bar(n, "loading weights"); ... pb.inc(1); ...
/// pb.finish_and_clear();`.
pub fn progress_bar(total: u64, msg: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({eta})")
    {
        pb.set_style(style);
    }
    pb.set_message(msg.to_string());
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_bar_counts_and_never_fails_without_a_terminal() {
        let pb = progress_bar(3, "loading");
        pb.inc(1);
        pb.inc(2);
        assert_eq!(pb.position(), 3);
        assert_eq!(pb.length(), Some(3));
        pb.finish_and_clear();
    }
}
