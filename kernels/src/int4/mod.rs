//! Int4 group-quantized matrix multiply `y = x Wᵀ` with `W` kept at 4 bits per weight and
//! dequantized in registers (AWQ / GPTQ after repacking). This module owns the kernel layout
//! ([`Int4Weights`]), its validation, the threading (`crate::pool`, split over output columns) and the
//! dispatch between the AVX2+FMA path (`avx2.rs`), the prefill GEMM through dequantized f32
//! or bf16-code panels on AVX-512 hosts (`dequant_gemm.rs`), the portable path and the scalar reference
//! (`scalar.rs`). The int8-activation ("Q8") variants quantize the activations per group and
//! use integer dot products (`q8.rs`: quantizer, layout, reference; `vnni_dot.rs`: AVX-512 VNNI
//! dot-product GEMV for 128-multiple groups; `vnni.rs`: AVX-512 VNNI column tiles otherwise).
//!
//! Kernel layout, per output column `c` (of `n`) and input channel `i` (of `k`):
//! - `qweight[c * k/8 + i/8]` holds `q(c, i)` in bits `4*(i%8)..4*(i%8)+4` (K contiguous);
//! - group `g = i / group_size` has scale `s = f16(scales[g * n + c])` and integer zero
//!   `z = zeros[g * n + c]` (0..=16), and the weight is `W[c, i] = (q(c, i) - z) * s`
//!   (scales and zeros are `[groups, n]` as in the checkpoints, so neighbouring columns' scales
//!   are adjacent for the kernels' per-group epilogue).
//!
//! The dequantized value is exact in f32 (`(q - z) * s` needs 5 + 11 mantissa bits), so every
//! path computes the same products as a dense f32 matmul on the dequantized matrix; only the
//! summation order differs.

mod avx2;
mod avx512;
mod dequant_gemm;
mod prepared;
mod q8;
mod scalar;
mod vnni;
mod vnni_dot;

pub use q8::matmul_q8_reference;
pub use scalar::matmul_reference;

/// Rows up to which the GEMV (decode) kernels are used; larger batches use the tiled GEMM.
pub const GEMV_MAX_ROWS: usize = 8;

/// Errors from building or applying int4 weights (shape mismatches, bad layouts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Int4Error {
    /// Dimensions or buffer lengths are inconsistent.
    #[error("int4 weights: {0}")]
    Shape(String),
    /// The requested implementation cannot run on this CPU.
    #[error("int4 kernel {0:?} is not available on this CPU")]
    Unavailable(Int4Impl),
}

/// Which implementation runs the multiply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int4Impl {
    /// The scalar reference (one weight at a time, f64 accumulation): slow, for tests.
    Reference,
    /// Portable blocked Rust that the compiler vectorises for the baseline target.
    Portable,
    /// `#[target_feature(enable = "avx2,fma,f16c")]` intrinsics; batches of more than
    /// [`GEMV_MAX_ROWS`] rows on AVX-512 hosts dequantize panels to f32 for the dense AVX-512
    /// f32 GEMM instead (`dequant_gemm.rs`, same exact arithmetic).
    Avx2,
    /// Exact f32 activations with AVX-512 (`avx512.rs`) for 1..=[`GEMV_MAX_ROWS`] rows when
    /// the group size and `k` are multiples of 128; every other call runs [`Int4Impl::Avx2`].
    Avx512,
    /// Int8 activations (quantized per group, see `q8.rs`), scalar reference
    /// ([`matmul_q8_reference`]): slow, for tests. Not exact: the activations are rounded to
    /// `max|x| / 127` steps per group. More than [`GEMV_MAX_ROWS`] rows are exact.
    Q8Reference,
    /// Int8 activations with AVX-512 VNNI (`vpdpbusd`) for 1..=[`GEMV_MAX_ROWS`] rows; larger
    /// batches use the exact [`Int4Impl::best`] path.
    Q8Avx512,
    /// bf16 activations for batches of more than [`GEMV_MAX_ROWS`] rows on AVX-512 + AVX512_BF16
    /// hosts: the exact integer codes `q − z` go through the block-scaled `vdpbf16ps` GEMM and
    /// each group's f32 sum is multiplied by its scale (`dequant_gemm.rs`). Not exact: the
    /// activations are rounded to bf16 once per call, as the dense path does for bf16 weights.
    /// Smaller batches run the exact [`Int4Impl::Avx2`] GEMV.
    Bf16Avx512,
}

impl Int4Impl {
    /// The fastest implementation this CPU supports.
    pub fn best() -> Self {
        if avx512::available() {
            Int4Impl::Avx512
        } else if avx2::available() {
            Int4Impl::Avx2
        } else {
            Int4Impl::Portable
        }
    }

    /// The fastest int8-activation implementation this CPU supports, or [`Int4Impl::best`]
    /// (exact f32 activations) when it has none.
    pub fn best_q8() -> Self {
        if vnni::available() {
            Int4Impl::Q8Avx512
        } else {
            Int4Impl::best()
        }
    }

    /// Whether this implementation quantizes the activations to int8 (for 1..=8 rows).
    pub fn is_q8(self) -> bool {
        matches!(self, Int4Impl::Q8Reference | Int4Impl::Q8Avx512)
    }

    /// Whether this implementation rounds the activations of `rows`-row batches to bf16.
    pub fn rounds_to_bf16(self, rows: usize) -> bool {
        self == Int4Impl::Bf16Avx512 && rows > GEMV_MAX_ROWS
    }

    /// The prefill implementation with bf16 activations ([`Int4Impl::Bf16Avx512`]) where the
    /// CPU has it, else [`Int4Impl::best`] (exact).
    pub fn best_bf16() -> Self {
        if dequant_gemm::available() {
            Int4Impl::Bf16Avx512
        } else {
            Int4Impl::best()
        }
    }

    /// Every implementation this CPU can run (the references first): the exact ones, then the
    /// int8-activation ones (see [`Int4Impl::is_q8`]).
    pub fn available() -> Vec<Self> {
        let mut v = vec![Int4Impl::Reference, Int4Impl::Portable];
        if avx2::available() {
            v.push(Int4Impl::Avx2);
        }
        if avx512::available() {
            v.push(Int4Impl::Avx512);
        }
        v.push(Int4Impl::Q8Reference);
        if vnni::available() {
            v.push(Int4Impl::Q8Avx512);
        }
        if dequant_gemm::available() {
            v.push(Int4Impl::Bf16Avx512);
        }
        v
    }
}

/// A `[n, k]` weight matrix at 4 bits per weight with per-group f16 scales and integer zeros,
/// in the kernel layout described in the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct Int4Weights {
    k: usize,
    n: usize,
    group_size: usize,
    groups: usize,
    qweight: Vec<u32>,
    scales: Vec<u16>,
    zeros: Vec<u8>,
    /// `[n, groups]` copies of `scales` / `zeros` (column-major: one column's groups adjacent)
    /// for the AVX-512 GEMVs' vectorised group epilogue; empty where no such kernel runs
    /// (see [`Int4Weights::column_major`]).
    scales_cm: Vec<u16>,
    zeros_cm: Vec<u8>,
}

impl Int4Weights {
    /// Wraps packed data. Shapes: `qweight` `[n, k/8]` u32 words, `scales` `[groups, n]` f16
    /// bits, `zeros` `[groups, n]` with `groups = ceil(k / group_size)`. `k` and `group_size`
    /// must be positive multiples of 8 (the last group may be shorter); zeros must be ≤ 16.
    pub fn new(
        k: usize,
        n: usize,
        group_size: usize,
        qweight: Vec<u32>,
        scales: Vec<u16>,
        zeros: Vec<u8>,
    ) -> Result<Self, Int4Error> {
        let bad = |m: String| Err(Int4Error::Shape(m));
        if k == 0 || !k.is_multiple_of(8) {
            return bad(format!("k = {k} must be a positive multiple of 8"));
        }
        if group_size == 0 || !group_size.is_multiple_of(8) {
            return bad(format!(
                "group_size = {group_size} must be a positive multiple of 8"
            ));
        }
        let groups = k.div_ceil(group_size);
        if qweight.len() != n * k / 8 {
            return bad(format!(
                "qweight has {} words, expected n * k / 8 = {}",
                qweight.len(),
                n * k / 8
            ));
        }
        if scales.len() != n * groups || zeros.len() != n * groups {
            return bad(format!(
                "scales/zeros have {}/{} entries, expected n * groups = {}",
                scales.len(),
                zeros.len(),
                n * groups
            ));
        }
        if let Some(z) = zeros.iter().find(|&&z| z > 16) {
            return bad(format!("zero point {z} is out of range 0..=16"));
        }
        Ok(Int4Weights {
            k,
            n,
            group_size,
            groups,
            qweight: crate::memory::huge_page_copy(&qweight),
            scales,
            zeros,
            scales_cm: Vec::new(),
            zeros_cm: Vec::new(),
        }
        .column_major())
    }

    /// Fills the column-major scale / zero copies when an AVX-512 GEMV can use them (whole
    /// groups of whole 128-channel blocks on an AVX-512 host): 3 bytes per group and column,
    /// 4.7 % on top of the packed nibbles at group 128.
    fn column_major(mut self) -> Self {
        let (n, groups) = (self.n, self.groups);
        if !avx512::layout_ok(self.k, self.group_size) || !avx512::available() {
            return self;
        }
        self.scales_cm = (0..n * groups)
            .map(|i| self.scales[(i % groups) * n + i / groups])
            .collect();
        self.zeros_cm = (0..n * groups)
            .map(|i| self.zeros[(i % groups) * n + i / groups])
            .collect();
        self
    }

    /// Stacks matrices with the same `k` and `group_size` along the output dimension
    /// (fused q|k|v or gate|up), staying packed.
    pub fn concat(parts: Vec<Int4Weights>) -> Result<Self, Int4Error> {
        let Some(first) = parts.first() else {
            return Err(Int4Error::Shape("concat of no matrices".into()));
        };
        let (k, gs) = (first.k, first.group_size);
        if let Some(p) = parts.iter().find(|p| p.k != k || p.group_size != gs) {
            return Err(Int4Error::Shape(format!(
                "cannot concat k={}/group {} with k={k}/group {gs}",
                p.k, p.group_size
            )));
        }
        let n = parts.iter().map(|p| p.n).sum();
        let mut out = Int4Weights {
            k,
            n,
            group_size: gs,
            groups: first.groups,
            qweight: Vec::with_capacity(n * k / 8),
            scales: Vec::with_capacity(n * first.groups),
            zeros: Vec::with_capacity(n * first.groups),
            scales_cm: Vec::new(),
            zeros_cm: Vec::new(),
        };
        for p in &parts {
            out.qweight.extend_from_slice(&p.qweight);
        }
        out.qweight = crate::memory::huge_page_copy(&out.qweight);
        // Scales and zeros are `[groups, n]`: interleave the parts' rows group by group.
        for g in 0..first.groups {
            for p in &parts {
                out.scales
                    .extend_from_slice(&p.scales[g * p.n..(g + 1) * p.n]);
                out.zeros
                    .extend_from_slice(&p.zeros[g * p.n..(g + 1) * p.n]);
            }
        }
        Ok(out.column_major())
    }

    /// Input features `k`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output features `n`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input channels per quantization group.
    pub fn group_size(&self) -> usize {
        self.group_size
    }

    /// Groups along `k`: `ceil(k / group_size)`.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Bytes a full multiply reads from the weights: packed nibbles + f16 scales + u8 zeros.
    pub fn packed_bytes(&self) -> usize {
        self.qweight.len() * 4 + self.scales.len() * 2 + self.zeros.len()
    }

    /// The 4-bit code `q(c, i)` (0..=15).
    #[inline]
    pub fn code(&self, c: usize, i: usize) -> u8 {
        ((self.qweight[c * (self.k / 8) + i / 8] >> (4 * (i % 8))) & 0xF) as u8
    }

    /// Scale and zero of column `c`, group `g` as `(s, z)` in f32.
    #[inline]
    pub fn scale_zero(&self, c: usize, g: usize) -> (f32, f32) {
        let idx = g * self.n + c;
        (
            half::f16::from_bits(self.scales[idx]).to_f32(),
            self.zeros[idx] as f32,
        )
    }

    /// The dense `[n, k]` f32 matrix (tests and debugging only: it is 8x the packed size).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut w = Vec::with_capacity(self.n * self.k);
        for c in 0..self.n {
            for i in 0..self.k {
                let (s, z) = self.scale_zero(c, i / self.group_size);
                w.push((self.code(c, i) as f32 - z) * s);
            }
        }
        w
    }

    /// `out = x Wᵀ` with the fastest kernel. Shapes: `x` `[rows, k]`, `out` `[rows, n]` (f32).
    pub fn matmul(&self, x: &[f32], rows: usize, out: &mut [f32]) -> Result<(), Int4Error> {
        self.matmul_with(Int4Impl::best(), x, rows, out)
    }

    /// `out = x Wᵀ` with a chosen implementation (tests compare them). Shapes as [`Self::matmul`].
    pub fn matmul_with(
        &self,
        imp: Int4Impl,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
    ) -> Result<(), Int4Error> {
        if x.len() != rows * self.k || out.len() != rows * self.n {
            return Err(Int4Error::Shape(format!(
                "x has {} values and out {}, expected rows * k = {} and rows * n = {}",
                x.len(),
                out.len(),
                rows * self.k,
                rows * self.n
            )));
        }
        if rows == 0 || self.n == 0 {
            return Ok(());
        }
        match imp {
            Int4Impl::Reference => return scalar::matmul_reference(self, x, rows, out),
            Int4Impl::Portable => {
                let prep = prepared::Prepared::new(self, x, rows);
                self.run_parallel(rows, out, |c0, c1, o| {
                    scalar::cols_portable(self, &prep, c0, c1, o)
                });
            }
            Int4Impl::Avx2 if avx2::available() => {
                if rows > GEMV_MAX_ROWS && dequant_gemm::available() {
                    dequant_gemm::matmul(self, x, rows, out, dequant_gemm::Panels::F32);
                    return Ok(());
                }
                let prep = prepared::Prepared::new(self, x, rows);
                self.run_parallel(rows, out, |c0, c1, o| avx2::cols(self, &prep, c0, c1, o));
            }
            Int4Impl::Avx2 => return Err(Int4Error::Unavailable(imp)),
            Int4Impl::Avx512 if avx512::available() => {
                if rows > GEMV_MAX_ROWS || !avx512::supported(self) {
                    return self.matmul_with(Int4Impl::Avx2, x, rows, out);
                }
                let prep = avx512::WidePrepared::new(self, x, rows);
                self.run_parallel(rows, out, |c0, c1, o| avx512::cols(self, &prep, c0, c1, o));
            }
            Int4Impl::Avx512 => return Err(Int4Error::Unavailable(imp)),
            Int4Impl::Q8Reference => return q8::matmul_q8_reference(self, x, rows, out),
            Int4Impl::Q8Avx512 if vnni::available() => {
                if rows > GEMV_MAX_ROWS {
                    return self.matmul_with(Int4Impl::best(), x, rows, out);
                }
                if vnni_dot::supported(self) {
                    let prep = vnni_dot::DotPrepared::new(self, x, rows);
                    self.run_parallel(rows, out, |c0, c1, o| {
                        vnni_dot::cols(self, &prep, c0, c1, o)
                    });
                    return Ok(());
                }
                let prep = q8::Q8Prepared::new(self, x, rows);
                let chunk = self.chunk_cols_q8(rows);
                self.run_parallel_chunk(chunk, rows, out, |c0, c1, o| {
                    vnni::cols(self, &prep, c0, c1, o)
                });
            }
            Int4Impl::Q8Avx512 => return Err(Int4Error::Unavailable(imp)),
            Int4Impl::Bf16Avx512 if dequant_gemm::available() => {
                if rows <= GEMV_MAX_ROWS {
                    return self.matmul_with(Int4Impl::best(), x, rows, out);
                }
                dequant_gemm::matmul(self, x, rows, out, dequant_gemm::Panels::Bf16);
            }
            Int4Impl::Bf16Avx512 => return Err(Int4Error::Unavailable(imp)),
        }
        Ok(())
    }

    /// Splits the output columns over the kernel team (`crate::pool`). `kernel(c0, c1, out_t)` computes columns
    /// `c0..c1` transposed (`out_t` `[c1 - c0, rows]`); the result is transposed back into `out`
    /// `[rows, n]` (no transpose for one row).
    fn run_parallel(
        &self,
        rows: usize,
        out: &mut [f32],
        kernel: impl Fn(usize, usize, &mut [f32]) + Sync,
    ) {
        self.run_parallel_chunk(self.chunk_cols(rows), rows, out, kernel)
    }

    /// [`Self::run_parallel`] with `chunk` columns per task.
    fn run_parallel_chunk(
        &self,
        chunk: usize,
        rows: usize,
        out: &mut [f32],
        kernel: impl Fn(usize, usize, &mut [f32]) + Sync,
    ) {
        if chunk >= self.n && rows == 1 {
            kernel(0, self.n, out);
            return;
        }
        if rows == 1 {
            crate::pool::for_each_chunk_mut(out, chunk, |i, o| {
                let c0 = i * chunk;
                kernel(c0, c0 + o.len(), o);
            });
            return;
        }
        let mut out_t = vec![0.0f32; self.n * rows];
        crate::pool::for_each_chunk_mut(&mut out_t, chunk * rows, |i, o| {
            let c0 = i * chunk;
            kernel(c0, c0 + o.len() / rows, o);
        });
        for (c, col) in out_t.chunks_exact(rows).enumerate() {
            for (r, &v) in col.iter().enumerate() {
                out[r * self.n + c] = v;
            }
        }
    }

    /// [`Self::chunk_cols`] for the Q8 kernel: a multiple of its 16-column tile, so only the
    /// last task has a partial tile.
    fn chunk_cols_q8(&self, rows: usize) -> usize {
        let work = self.n * self.k * rows.min(GEMV_MAX_ROWS);
        if work < 1 << 16 {
            return self.n;
        }
        let tasks = 4 * crate::pool::threads();
        self.n.div_ceil(tasks).next_multiple_of(16).max(16)
    }

    /// Output columns per task: about 4 tasks per thread, a multiple of 8, one task when small.
    fn chunk_cols(&self, rows: usize) -> usize {
        let work = self.n * self.k * rows.min(GEMV_MAX_ROWS);
        if work < 1 << 16 {
            return self.n;
        }
        let tasks = 4 * crate::pool::threads();
        self.n.div_ceil(tasks).next_multiple_of(8).max(16)
    }
}

/// Raw fields for the kernel files: `(qweight, scales, zeros)`.
impl Int4Weights {
    #[inline]
    fn raw(&self) -> (&[u32], &[u16], &[u8]) {
        (&self.qweight, &self.scales, &self.zeros)
    }

    /// The `[n, groups]` scale and zero copies (empty unless [`avx512::supported`]).
    #[inline]
    fn raw_column_major(&self) -> (&[u16], &[u8]) {
        (&self.scales_cm, &self.zeros_cm)
    }
}

#[cfg(test)]
mod q8_tests;
#[cfg(test)]
mod tests;
