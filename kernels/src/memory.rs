//! Large, long-lived buffers (model weights) backed by transparent huge pages where the OS
//! allows it. Decode streams every weight once per token; with 4 KiB pages that is a TLB miss
//! and a prefetcher restart every 4 KiB, with 2 MiB pages one per 2 MiB (measured: bf16 decode
//! of the 0.5B shape +6 %, AWQ +3 %, same run). Linux with THP in `madvise` or `always` mode;
//! elsewhere (or if the kernel refuses) this is a plain copy.

/// Bytes of a huge page on x86-64 / aarch64 Linux.
const HUGE: usize = 2 << 20;

/// A copy of `src` in a fresh allocation whose 2 MiB-aligned interior was advised
/// `MADV_HUGEPAGE` before its first write, so the kernel backs it with huge pages when it can.
/// Buffers under 4 MiB are copied plainly.
pub fn huge_page_copy<T: Copy>(src: &[T]) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(src.len());
    let bytes = std::mem::size_of_val(src);
    #[cfg(target_os = "linux")]
    if bytes >= 2 * HUGE {
        let start = v.as_ptr() as usize;
        let lo = start.next_multiple_of(HUGE);
        let hi = (start + bytes) / HUGE * HUGE;
        if hi > lo {
            // SAFETY: `lo..hi` lies inside the allocation `v` owns (capacity `bytes`), which is
            // not yet written; MADV_HUGEPAGE only changes how its pages are backed, never their
            // contents or validity. A failure (e.g. THP disabled) leaves normal pages.
            unsafe {
                libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE);
            }
        }
    }
    let _ = (bytes, HUGE);
    v.extend_from_slice(src);
    v
}

/// A read-bandwidth probe: a buffer (make it many times the last-level cache) summed by the
/// rayon pool, the same access pattern as a decode step streaming its weights. Benchmarks
/// report kernels against it, measured in the same run.
pub struct ReadProbe {
    buf: Vec<u64>,
}

impl ReadProbe {
    /// A probe over `bytes` bytes (rounded down to 8), written once so its pages exist.
    pub fn new(bytes: usize) -> Self {
        ReadProbe {
            buf: (0..(bytes / 8) as u64).collect(),
        }
    }

    /// Bytes per second of one pass.
    pub fn pass(&self) -> f64 {
        use rayon::prelude::*;
        let t = std::time::Instant::now();
        let s: u64 = self
            .buf
            .par_chunks(1 << 16)
            .map(|c| c.iter().fold(0u64, |a, &b| a.wrapping_add(b)))
            .sum();
        std::hint::black_box(s);
        (self.buf.len() * 8) as f64 / t.elapsed().as_secs_f64()
    }

    /// The best of `passes` passes, bytes per second.
    pub fn best_of(&self, passes: usize) -> f64 {
        (0..passes).map(|_| self.pass()).fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_exactly_small_and_large() {
        let small: Vec<u32> = (0..1000).collect();
        assert_eq!(huge_page_copy(&small), small);
        let large: Vec<u16> = (0..(5 << 20)).map(|i| (i * 7) as u16).collect();
        assert_eq!(huge_page_copy(&large), large);
        assert!(huge_page_copy::<u8>(&[]).is_empty());
    }
}
