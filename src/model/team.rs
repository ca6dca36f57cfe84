//! The hand-written kernels' per-thread parts, run on libtorch's own OpenMP team.
//!
//! Why: after each parallel op, libtorch's OpenMP workers spin a while before they sleep
//! (libgomp's `GOMP_SPINCOUNT`). A kernel that runs its parts on threads of its own shares the
//! cores with those spinning workers. On the 2-core machine the official @80 training step ran
//! 250–260 problems/s with the kernels on std threads, and 280–304 with the spin cut
//! (`GOMP_SPINCOUNT=10000` or `0`, 2 runs each, 2026-12-07). Run on the team's own threads
//! (libgomp's `GOMP_parallel`, the call that `#pragma omp parallel` compiles to), the parts take
//! the cores the workers would spin on, and no setting is needed before the process starts.
//!
//! libgomp is found at run time (`dlsym`): where the process has none in its global scope
//! (another OpenMP runtime, a notebook that loaded libtorch locally) or `AVR_OPENMP_TEAM=0`,
//! the parts run on scoped std threads, with the same results.

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Mutex, OnceLock, PoisonError};

type GompParallel = unsafe extern "C" fn(extern "C" fn(*mut c_void), *mut c_void, c_uint, c_uint);
type OmpQuery = unsafe extern "C" fn() -> c_int;

/// The three libgomp entry points the team needs.
#[derive(Clone, Copy)]
struct Gomp {
    parallel: GompParallel,
    thread_num: OmpQuery,
    num_threads: OmpQuery,
}

extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// libgomp's entry points, looked up once.
fn gomp() -> Option<Gomp> {
    static GOMP: OnceLock<Option<Gomp>> = OnceLock::new();
    *GOMP.get_or_init(|| {
        if std::env::var("AVR_OPENMP_TEAM").is_ok_and(|v| v == "0") {
            return None;
        }
        let find = |name: &[u8]| {
            // SAFETY: `name` is NUL-terminated; a null handle is glibc's RTLD_DEFAULT (the
            // process's global scope), which libtorch's libgomp joins as a load dependency.
            let p = unsafe { dlsym(std::ptr::null_mut(), name.as_ptr() as *const c_char) };
            (!p.is_null()).then_some(p)
        };
        let (parallel, thread_num, num_threads) = (
            find(b"GOMP_parallel\0")?,
            find(b"omp_get_thread_num\0")?,
            find(b"omp_get_num_threads\0")?,
        );
        // SAFETY: the signatures are libgomp's ABI (`GOMP_parallel` since GCC 4.9) and the
        // OpenMP API's.
        unsafe {
            Some(Gomp {
                parallel: std::mem::transmute::<*mut c_void, GompParallel>(parallel),
                thread_num: std::mem::transmute::<*mut c_void, OmpQuery>(thread_num),
                num_threads: std::mem::transmute::<*mut c_void, OmpQuery>(num_threads),
            })
        }
    })
}

/// `work` on each item, on libtorch's number of threads (thread t takes items t, t + threads,
/// …), the results in the items' order. A panic in `work` is raised again here.
pub fn map_on_team<I: Send, T: Send>(items: Vec<I>, work: impl Fn(I) -> T + Sync) -> Vec<T> {
    let threads = (tch::get_num_threads().max(1) as usize).min(items.len());
    match gomp() {
        _ if threads <= 1 => items.into_iter().map(work).collect(),
        Some(g) => on_gomp(g, threads, items, &work),
        None => on_std_threads(threads, items, &work),
    }
}

fn on_std_threads<I: Send, T: Send>(
    threads: usize,
    items: Vec<I>,
    work: &(dyn Fn(I) -> T + Sync),
) -> Vec<T> {
    let n = items.len();
    let mut strides: Vec<Vec<(usize, I)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        strides[i % threads].push((i, item));
    }
    let done: Vec<(usize, T)> = std::thread::scope(|s| {
        let handles: Vec<_> = strides
            .into_iter()
            .map(|mine| s.spawn(move || mine.into_iter().map(|(i, x)| (i, work(x))).collect()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h: std::thread::ScopedJoinHandle<'_, Vec<(usize, T)>>| {
                h.join().unwrap_or_else(|p| resume_unwind(p))
            })
            .collect()
    });
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for (i, t) in done {
        out[i] = Some(t);
    }
    out.into_iter().flatten().collect()
}

/// One `GOMP_parallel` call's shared state.
struct Job<'a, I, T> {
    items: Vec<Mutex<Option<I>>>,
    results: Vec<Mutex<Option<std::thread::Result<T>>>>,
    work: &'a (dyn Fn(I) -> T + Sync),
    gomp: Gomp,
}

fn on_gomp<I: Send, T: Send>(
    g: Gomp,
    threads: usize,
    items: Vec<I>,
    work: &(dyn Fn(I) -> T + Sync),
) -> Vec<T> {
    let n = items.len();
    let job = Job {
        items: items.into_iter().map(|i| Mutex::new(Some(i))).collect(),
        results: (0..n).map(|_| Mutex::new(None)).collect(),
        work,
        gomp: g,
    };
    // SAFETY: `job` outlives the call (GOMP_parallel returns when the team has finished), and
    // `run_part::<I, T>` reads it as the type it is.
    unsafe {
        (g.parallel)(
            run_part::<I, T>,
            &job as *const Job<I, T> as *mut c_void,
            threads as c_uint,
            0,
        )
    };
    job.results
        .into_iter()
        .map(
            |r| match r.into_inner().unwrap_or_else(PoisonError::into_inner) {
                Some(Ok(t)) => t,
                Some(Err(panic)) => resume_unwind(panic),
                None => panic!("an OpenMP team left a kernel's part unrun"),
            },
        )
        .collect()
}

fn lock<V>(m: &Mutex<V>) -> std::sync::MutexGuard<'_, V> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A team thread's share: items `me, me + team, …` (a team may be smaller than asked for).
extern "C" fn run_part<I: Send, T: Send>(data: *mut c_void) {
    // SAFETY: `data` is the `Job<I, T>` that `on_gomp` passed, alive until the team finishes.
    let job = unsafe { &*(data as *const Job<I, T>) };
    // SAFETY: called inside the parallel region, as the OpenMP API requires.
    let (me, team) = unsafe { ((job.gomp.thread_num)(), (job.gomp.num_threads)()) };
    let (me, team) = (me.max(0) as usize, team.max(1) as usize);
    for i in (me..job.items.len()).step_by(team) {
        let item = lock(&job.items[i]).take();
        if let Some(item) = item {
            // No unwinding across the C frames: the panic is carried back to `on_gomp`.
            let out = catch_unwind(AssertUnwindSafe(|| (job.work)(item)));
            *lock(&job.results[i]) = Some(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_runs_once_in_order_and_a_panic_comes_back() {
        if std::env::var("AVR_OPENMP_TEAM").map_or(true, |v| v != "0") {
            let found = gomp().is_some();
            assert!(
                found,
                "libtorch's libgomp is in the test binary's global scope"
            );
        }
        for n in [0, 1, 2, 5] {
            let items: Vec<usize> = (0..n).collect();
            let out = map_on_team(items, |i| (i, std::thread::current().id()));
            assert_eq!(
                out.iter().map(|o| o.0).collect::<Vec<_>>(),
                (0..n).collect::<Vec<_>>()
            );
        }
        let mut buffer = vec![0u32; 8];
        let parts: Vec<&mut [u32]> = buffer.chunks_mut(3).collect();
        map_on_team(parts, |p| p.iter_mut().for_each(|v| *v += 1));
        assert_eq!(buffer, [1; 8]);
        let caught = catch_unwind(|| map_on_team(vec![1, 2], |i| assert_ne!(i, 2, "part two")));
        assert!(caught.is_err());
        // The team still works after a part panicked.
        assert_eq!(map_on_team(vec![3, 4], |i| i * 2), [6, 8]);
        // More items than threads, on the team and on std threads: each once, in order.
        let items: Vec<usize> = (0..7).collect();
        assert_eq!(
            map_on_team(items.clone(), |i| i + 1),
            (1..8).collect::<Vec<_>>()
        );
        let on_std = on_std_threads(2, items, &|i| i + 1);
        assert_eq!(on_std, (1..8).collect::<Vec<_>>());
    }
}
