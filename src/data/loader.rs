//! Seeded epoch order and a prefetching loader: files are read and batched on background
//! threads while the model trains, so training never waits on the disk. Nothing is loaded
//! up front; each batch streams its files.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use tch::Device;

use super::dataset::{AvrDataset, Batch, BatchOptions};
use crate::rng::Rng;
use crate::{Error, Result};

/// Where a run is in its data stream: enough to resume the exact same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderState {
    /// Epoch number, from 0; it picks the epoch's permutation.
    pub epoch: usize,
    /// Position of the next index within the epoch's permutation (`0..=len`).
    pub cursor: usize,
}

/// A new permutation of the dataset every epoch, derived from one seed and the epoch number,
/// so any position can be restored from `(epoch, cursor)` alone.
#[derive(Debug, Clone)]
pub struct EpochOrder {
    root: Rng,
    order: Vec<usize>,
    state: OrderState,
    shuffle: bool,
}

impl EpochOrder {
    /// The order of `len` problems from the start (epoch 0, cursor 0); `shuffle` false keeps
    /// `0..len` every epoch.
    pub fn new(seed: u64, len: usize, shuffle: bool) -> Self {
        Self::resume(
            seed,
            len,
            shuffle,
            OrderState {
                epoch: 0,
                cursor: 0,
            },
        )
    }

    /// The order continued from `state`.
    pub fn resume(seed: u64, len: usize, shuffle: bool, state: OrderState) -> Self {
        let root = Rng::new(seed).fork("data-order");
        let order = Self::permutation(&root, len, shuffle, state.epoch);
        EpochOrder {
            root,
            order,
            state,
            shuffle,
        }
    }

    fn permutation(root: &Rng, len: usize, shuffle: bool, epoch: usize) -> Vec<usize> {
        if shuffle {
            root.fork(&format!("epoch{epoch}")).permutation(len)
        } else {
            (0..len).collect()
        }
    }

    /// Where the order is now: save it to resume with [`EpochOrder::resume`].
    pub fn state(&self) -> OrderState {
        self.state
    }

    /// The next `size` indices (wrapping into a freshly shuffled epoch) and the epoch of the first.
    pub fn next_batch(&mut self, size: usize) -> (Vec<usize>, usize) {
        let epoch = self.state.epoch;
        let mut out = Vec::with_capacity(size);
        while out.len() < size.min(self.order.len()) {
            if self.state.cursor == self.order.len() {
                self.state = OrderState {
                    epoch: self.state.epoch + 1,
                    cursor: 0,
                };
                self.order =
                    Self::permutation(&self.root, self.order.len(), self.shuffle, self.state.epoch);
            }
            out.push(self.order[self.state.cursor]);
            self.state.cursor += 1;
        }
        (out, epoch)
    }
}

/// Loader settings, with documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoaderConfig {
    /// Problems per batch (default 32).
    pub batch_size: usize,
    /// Reshuffle every epoch (default true).
    pub shuffle: bool,
    /// Seed of the order (default 0).
    pub seed: u64,
    /// Background reader threads (default 2).
    pub workers: usize,
    /// Batches each worker may hold ready (default 2).
    pub depth: usize,
    /// How problems become tensors (default [`BatchOptions::default`]).
    pub options: BatchOptions,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 32,
            shuffle: true,
            seed: 0,
            workers: 2,
            depth: 2,
            options: BatchOptions::default(),
        }
    }
}

/// One batch, read on a worker thread: a panic while reading becomes an error naming the
/// dataset and the problems, so the caller gets it instead of a dead worker.
fn read_batch(dataset: &AvrDataset, indices: &[usize], options: BatchOptions) -> Result<Batch> {
    let read = std::panic::AssertUnwindSafe(|| dataset.batch(indices, options, Device::Cpu));
    std::panic::catch_unwind(read).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown cause");
        Err(Error::bad_file(
            &dataset.root,
            format!("reading problems {indices:?} failed: {why}"),
        ))
    })
}

/// Yields the planned batches in order, read ahead by worker threads; batch `i` comes from
/// worker `i % workers`, so order is deterministic and each worker runs at most `depth` ahead.
pub struct Loader {
    receivers: Vec<Receiver<Result<Batch>>>,
    workers: Vec<JoinHandle<()>>,
    next: usize,
    total: usize,
    device: Device,
}

impl Loader {
    /// Streams `plan` (lists of dataset indices) as batches moved to `device`.
    pub fn new(
        dataset: &AvrDataset,
        plan: Vec<Vec<usize>>,
        cfg: &LoaderConfig,
        device: Device,
    ) -> Self {
        let (dataset, plan) = (Arc::new(dataset.clone()), Arc::new(plan));
        let n_workers = cfg.workers.max(1);
        let mut receivers = Vec::new();
        let mut workers = Vec::new();
        for w in 0..n_workers {
            let (tx, rx) = sync_channel(cfg.depth.max(1));
            let (dataset, plan, options) = (dataset.clone(), plan.clone(), cfg.options);
            workers.push(std::thread::spawn(move || {
                for indices in plan.iter().skip(w).step_by(n_workers) {
                    // A closed channel means the loader was dropped: stop quietly.
                    if tx.send(read_batch(&dataset, indices, options)).is_err() {
                        return;
                    }
                }
            }));
            receivers.push(rx);
        }
        Loader {
            receivers,
            workers,
            next: 0,
            total: plan.len(),
            device,
        }
    }

    /// `steps` batches from `order` (which advances), streamed as [`Loader::new`] does.
    pub fn from_order(
        dataset: &AvrDataset,
        order: &mut EpochOrder,
        steps: usize,
        cfg: &LoaderConfig,
        device: Device,
    ) -> Self {
        let plan = (0..steps)
            .map(|_| order.next_batch(cfg.batch_size).0)
            .collect();
        Self::new(dataset, plan, cfg, device)
    }

    /// Number of batches in the plan (all of them, including those already yielded).
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether the plan holds no batches.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

impl Iterator for Loader {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.next == self.total {
            return None;
        }
        let rx = &self.receivers[self.next % self.receivers.len()];
        self.next += 1;
        let Ok(batch) = rx.recv() else {
            // The worker is gone without a reply (it cannot panic: `read_batch` catches that):
            // end the stream with an error rather than a panic.
            let batch = self.next;
            self.next = self.total;
            return Some(Err(Error::DataExhausted(format!(
                "the loader's worker stopped before batch {batch} of {}",
                self.total
            ))));
        };
        Some(batch.map(|b| {
            if self.device == Device::Cpu {
                b
            } else {
                Batch {
                    images: b.images.to_device(self.device),
                    targets: b.targets.to_device(self.device),
                    ..b
                }
            }
        }))
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.receivers.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Reads `n` problems from disk into batches on `workers` threads; problems per second.
pub fn bench_loader(dataset: &AvrDataset, n: usize, cfg: &LoaderConfig) -> Result<f64> {
    let mut order = EpochOrder::new(cfg.seed, dataset.len(), cfg.shuffle);
    let steps = n.div_ceil(cfg.batch_size.max(1));
    let start = std::time::Instant::now();
    let mut seen = 0;
    for batch in Loader::from_order(dataset, &mut order, steps, cfg, Device::Cpu) {
        seen += batch?.targets.size()[0] as usize;
    }
    Ok(seen as f64 / start.elapsed().as_secs_f64())
}
