//! The kernel thread team: a fixed set of worker threads that spin between kernel calls, so a
//! decode step's hundred-odd short parallel calls find them awake.
//!
//! Why not rayon alone: rayon parks idle workers, and on a virtual machine waking a parked vCPU
//! can take longer than a whole kernel call. Measured on this project's 2-vCPU CI kind: 76
//! tasks of 10 µs submitted 200 µs apart took 817 µs per call on rayon's 2 threads, the second
//! worker running 3 % of the tasks (one thread alone: 815 µs); the bf16 dot GEMV streamed
//! weights from DRAM at 10-12 GB/s on 2 rayon threads against 20-23 GB/s for the same loop on
//! spinning OpenMP threads.
//!
//! Protocol: one caller at a time publishes a job (a body every participant runs once; the body
//! hands out its own task indices from an atomic counter). Workers join an open job by bumping
//! a join count packed with the job's generation into one atomic word; the caller runs the body
//! too, then closes the job (no more joins) and waits until every joined worker has finished,
//! so the borrowed body outlives every use. Idle workers spin for [`SPIN`], then sleep on a
//! condition variable. A call made while the team is busy (another thread's call, or a nested
//! call from inside a task) runs on the calling thread alone. The team has
//! `rayon::current_num_threads() − 1` workers (so `RAYON_NUM_THREADS` sizes both).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle worker spins before it sleeps: longer than the gaps between the kernel
/// calls of one engine step, short enough not to burn a core between requests.
const SPIN: Duration = Duration::from_millis(3);

/// A published job: the body every participant runs once.
struct Job<'a> {
    body: &'a (dyn Fn() + Sync),
    panicked: AtomicBool,
}

/// `ticket` layout: generation (high 32 bits), closed flag (bit 31), joined workers (low 31).
const CLOSED: u64 = 1 << 31;
const JOINED: u64 = CLOSED - 1;

struct Team {
    workers: usize,
    ticket: AtomicU64,
    /// The open job (valid while the ticket's job is open or has unfinished joiners).
    job: AtomicPtr<Job<'static>>,
    finished: AtomicUsize,
    /// One caller at a time.
    submit: Mutex<()>,
    sleeping: AtomicUsize,
    wake: (Mutex<()>, Condvar),
}

thread_local! {
    /// Whether this thread is running a team job's body (nested calls run serially).
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

fn team() -> &'static Team {
    static TEAM: OnceLock<&'static Team> = OnceLock::new();
    TEAM.get_or_init(|| {
        let workers = rayon::current_num_threads().saturating_sub(1);
        let t: &'static Team = Box::leak(Box::new(Team {
            workers,
            ticket: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            finished: AtomicUsize::new(0),
            submit: Mutex::new(()),
            sleeping: AtomicUsize::new(0),
            wake: (Mutex::new(()), Condvar::new()),
        }));
        for i in 0..workers {
            let spawned = std::thread::Builder::new()
                .name(format!("candela-kernel-{i}"))
                .spawn(move || worker(t));
            if spawned.is_err() {
                // Fewer workers than planned only means less parallelism: jobs never wait for
                // a worker, they only accept the ones that join.
                break;
            }
        }
        t
    })
}

/// Threads a team call can use (workers plus the caller).
pub fn threads() -> usize {
    team().workers + 1
}

fn worker(t: &'static Team) {
    let mut seen = 0u64;
    let mut idle = Instant::now();
    let mut spins = 0u32;
    loop {
        let cur = t.ticket.load(Ordering::Acquire);
        let gen = cur >> 32;
        if gen != seen {
            if cur & CLOSED != 0 {
                seen = gen;
                continue;
            }
            let joined = cur + 1;
            if t.ticket
                .compare_exchange_weak(cur, joined, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            seen = gen;
            // SAFETY: we joined an open job, so its caller waits for our `finished` increment
            // before the job (and the body it borrows) goes away.
            let job = unsafe { &*t.job.load(Ordering::Acquire) };
            IN_JOB.set(true);
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job.body)).is_ok();
            IN_JOB.set(false);
            if !ok {
                job.panicked.store(true, Ordering::Relaxed);
            }
            t.finished.fetch_add(1, Ordering::Release);
            idle = Instant::now();
            spins = 0;
            continue;
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(256) && idle.elapsed() > SPIN {
            let (lock, cv) = &t.wake;
            let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
            t.sleeping.fetch_add(1, Ordering::SeqCst);
            while t.ticket.load(Ordering::SeqCst) >> 32 == seen {
                g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            t.sleeping.fetch_sub(1, Ordering::SeqCst);
            drop(g);
            idle = Instant::now();
        }
    }
}

/// Runs `body` once on the calling thread and once on every worker that joins while the
/// caller's own run lasts, and returns when all of them have finished. `body` hands out its
/// work itself (see [`for_each`]).
///
/// # Panics
/// If `body` panicked on any thread.
pub fn broadcast(body: &(dyn Fn() + Sync)) {
    let t = team();
    if t.workers == 0 || IN_JOB.get() {
        return body();
    }
    let Ok(guard) = t.submit.try_lock() else {
        // Another thread's call holds the team: this one runs alone.
        return body();
    };
    let job = Job {
        body,
        panicked: AtomicBool::new(false),
    };
    t.finished.store(0, Ordering::Relaxed);
    // SAFETY (lifetime erasure): workers only dereference the pointer after joining this job,
    // and this function does not return before every joined worker has finished with it.
    let ptr = &job as *const Job<'_> as *mut Job<'static>;
    t.job.store(ptr, Ordering::Relaxed);
    let gen = (t.ticket.load(Ordering::Relaxed) >> 32).wrapping_add(1) & 0xFFFF_FFFF;
    let gen = if gen == 0 { 1 } else { gen };
    t.ticket.store(gen << 32, Ordering::SeqCst);
    if t.sleeping.load(Ordering::SeqCst) > 0 {
        let (lock, cv) = &t.wake;
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        cv.notify_all();
    }
    IN_JOB.set(true);
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_ok();
    IN_JOB.set(false);
    // Close the job, then wait for the workers that joined.
    let joined = loop {
        let cur = t.ticket.load(Ordering::Acquire);
        let closed = cur | CLOSED;
        if t.ticket
            .compare_exchange_weak(cur, closed, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            break (cur & JOINED) as usize;
        }
    };
    while t.finished.load(Ordering::Acquire) < joined {
        std::hint::spin_loop();
    }
    let panicked = !ok || job.panicked.load(Ordering::Relaxed);
    drop(guard);
    assert!(!panicked, "a kernel task panicked");
}

/// Runs `f(i)` for every `i < tasks` on the team (dynamic scheduling: each participant takes
/// the next index until none is left).
pub fn for_each(tasks: usize, f: impl Fn(usize) + Sync) {
    for_each_init(tasks, || (), |_, i| f(i));
}

/// [`for_each`] with per-thread state: each participating thread calls `init` once, before its
/// first task, and passes the state to every `f` it runs.
pub fn for_each_init<S>(
    tasks: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize) + Sync,
) {
    if tasks == 0 {
        return;
    }
    let next = AtomicUsize::new(0);
    let body = || {
        let mut state: Option<S> = None;
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= tasks {
                break;
            }
            f(state.get_or_insert_with(&init), i);
        }
    };
    if tasks == 1 {
        return body();
    }
    broadcast(&body);
}

/// A mutable slice that the tasks of one call share, each writing a disjoint part of it.
pub struct Shared<T>(*mut T);
// SAFETY: used only by the helpers below, whose tasks access disjoint elements while the
// caller's `&mut` borrow outlives the call.
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// Shares `data`. The pointer does not keep `data` borrowed: the caller must keep it alive
    /// and untouched by anything but the tasks until they are done (see [`Shared::slice`]).
    pub fn new(data: &mut [T]) -> Self {
        Shared(data.as_mut_ptr())
    }

    fn get(&self) -> *mut T {
        self.0
    }

    /// Elements `start..start + len` of the shared slice.
    ///
    /// # Safety
    /// The range is inside the slice given to [`Shared::new`], which is still borrowed, and no
    /// other task accesses it during this use.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        // SAFETY: as the caller vouches.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}

/// Runs `f(i, piece)` for every `chunk`-element piece of `data` (the last may be shorter) on the
/// team. `chunk >= 1`.
pub fn for_each_chunk_mut<T: Send>(
    data: &mut [T],
    chunk: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    assert!(chunk > 0, "for_each_chunk_mut: empty chunks");
    let len = data.len();
    let p = Shared(data.as_mut_ptr());
    for_each(len.div_ceil(chunk), |i| {
        let start = i * chunk;
        let n = chunk.min(len - start);
        // SAFETY: piece `i` is `start..start + n`, inside `data`, and no other task gets it.
        f(i, unsafe {
            std::slice::from_raw_parts_mut(p.get().add(start), n)
        });
    });
}

/// Bytes from which [`zeros`] splits the fill over the team.
const PARALLEL_ZERO_BYTES: usize = 256 << 10;
/// Elements each task of [`zeros`] fills (256 KiB of f32).
const ZERO_CHUNK: usize = 64 << 10;

/// A vector of `len` zeros, filled by the team when it is at least 256 KiB: the output
/// buffers of a step's matmuls (`[rows, n]`, 1-20 MB each at 32 rows) are zeroed before the
/// kernels overwrite them, and a single-threaded memset of them was 5 % of a batch-32 bf16
/// decode step while the other core waited (perf, Zen 4 host).
pub fn zeros(len: usize) -> Vec<f32> {
    if len * 4 < PARALLEL_ZERO_BYTES {
        return vec![0.0; len];
    }
    let mut v: Vec<f32> = Vec::with_capacity(len);
    for_each_chunk_mut(&mut v.spare_capacity_mut()[..len], ZERO_CHUNK, |_, c| {
        c.fill(std::mem::MaybeUninit::new(0.0));
    });
    // SAFETY: the `len` elements after the (empty) start were all written just above.
    unsafe { v.set_len(len) };
    v
}

/// Runs `f(state, item)` for every element of `items` on the team, with per-thread state as in
/// [`for_each_init`].
pub fn for_each_item_mut_init<T: Send, S>(
    items: &mut [T],
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &mut T) + Sync,
) {
    let p = Shared(items.as_mut_ptr());
    for_each_init(items.len(), init, |s, i| {
        // SAFETY: `i < items.len()`, and each index goes to exactly one task.
        f(s, unsafe { &mut *p.get().add(i) });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_are_zero_at_every_size() {
        for len in [0, 1, 1000, PARALLEL_ZERO_BYTES / 4, 3 * ZERO_CHUNK + 5] {
            let v = zeros(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x.to_bits() == 0));
        }
    }

    #[test]
    fn chunks_and_items_cover_the_slice_once() {
        let mut v = vec![0usize; 1001];
        for_each_chunk_mut(&mut v, 10, |i, c| c.iter_mut().for_each(|x| *x += i + 1));
        assert!(v.iter().enumerate().all(|(j, &x)| x == j / 10 + 1));
        for_each_item_mut_init(&mut v, || 1, |one, x| *x += *one);
        assert!(v.iter().enumerate().all(|(j, &x)| x == j / 10 + 2));
    }

    #[test]
    fn every_task_runs_exactly_once() {
        for tasks in [0, 1, 2, 3, 100, 1000] {
            let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
            for_each(tasks, |i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn concurrent_and_nested_calls_complete() {
        let total = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        for_each(8, |_| {
                            for_each(3, |_| {
                                total.fetch_add(1, Ordering::Relaxed);
                            });
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 4 * 50 * 8 * 3);
    }

    #[test]
    fn per_thread_state_is_initialised_once_per_participant() {
        let inits = AtomicUsize::new(0);
        let sum = AtomicUsize::new(0);
        for_each_init(
            64,
            || {
                inits.fetch_add(1, Ordering::Relaxed);
                0usize
            },
            |s, i| {
                *s += 1;
                sum.fetch_add(i, Ordering::Relaxed);
            },
        );
        assert!(inits.load(Ordering::Relaxed) <= threads());
        assert_eq!(sum.load(Ordering::Relaxed), 64 * 63 / 2);
    }

    #[test]
    fn a_panicking_task_panics_the_caller_and_the_team_survives() {
        let r = std::panic::catch_unwind(|| for_each(16, |i| assert!(i != 7, "task 7")));
        assert!(r.is_err());
        let n = AtomicUsize::new(0);
        for_each(16, |_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 16);
    }
}
