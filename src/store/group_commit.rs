//! Group commit: many concurrent callers of [`crate::store::Store::make_durable`] share one
//! flush and one fsync.
//!
//! An fsync costs milliseconds on flash whether it covers one record or a hundred. When a
//! burst of devices report at once, each caller would otherwise queue behind everyone else's
//! fsync. Instead, callers hand a reply slot to one committer thread and wait. The committer
//! waits for the first request, optionally lingers for the group-commit window so that
//! requests arriving together join the batch, takes *every* pending request, then runs one
//! flush and fsync and answers them all with its outcome. Requests that arrive while a flush
//! runs form the next batch, so bursts are grouped even with a zero window.
//!
//! Why this is safe: a caller enqueues its request only after its writes returned, and the
//! committer takes the batch before it starts flushing, so every write of every caller in the
//! batch precedes the flush. Requests that arrive while a flush runs wait for the next one.
//!
//! The committer is a plain thread, not a tokio task, because fsync blocks.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use super::durability::Durability;
use super::error::DurabilityError;

/// Where the committer sends one caller's answer.
type Reply = oneshot::Sender<Result<(), DurabilityError>>;

/// Owns the committer thread; dropping it answers what is pending and stops the thread.
pub(crate) struct GroupCommitter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Reply>,
    stopping: bool,
}

impl GroupCommitter {
    /// Starts the committer thread for `durability`, batching requests that arrive within
    /// `window` of the first one.
    pub(crate) fn start(
        durability: Arc<Durability>,
        window: Duration,
    ) -> std::io::Result<GroupCommitter> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("store-commit".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || run(&shared, &durability, window)
            })?;
        Ok(GroupCommitter {
            shared,
            thread: Some(thread),
        })
    }

    /// Asks for a durable flush of everything written so far; the answer arrives on the
    /// returned receiver. A dropped sender (the thread died) means "not confirmed".
    pub(crate) fn request(&self) -> oneshot::Receiver<Result<(), DurabilityError>> {
        let (reply, answer) = oneshot::channel();
        self.shared.lock().waiting.push(reply);
        self.shared.wake.notify_one();
        answer
    }
}

impl Drop for GroupCommitter {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // A panicked committer has already dropped its replies, which callers see as
            // "not confirmed"; there is nothing more to report here.
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks until there is work; `None` once stopping with nothing left to answer.
    fn next_batch(&self, window: Duration) -> Option<Vec<Reply>> {
        let mut queue = self.lock();
        while queue.waiting.is_empty() && !queue.stopping {
            queue = self.wake.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
        if queue.waiting.is_empty() {
            return None;
        }
        if !window.is_zero() && !queue.stopping {
            drop(queue);
            std::thread::sleep(window);
            queue = self.lock();
        }
        Some(std::mem::take(&mut queue.waiting))
    }
}

fn run(shared: &Shared, durability: &Durability, window: Duration) {
    while let Some(batch) = shared.next_batch(window) {
        let outcome = durability.make_durable();
        if let Err(error) = &outcome {
            tracing::error!(%error, callers = batch.len(), "durable flush of the store failed");
        }
        for reply in batch {
            // The caller may have given up waiting (its future was dropped); that is fine.
            let _ = reply.send(outcome.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::store::test_support::{item, temp_store};
    use crate::store::{keys, Store, StoreOptions, TreeName};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_flushes_and_all_get_an_answer() {
        let dir = tempfile::tempdir().unwrap();
        // A generous window makes the grouping independent of scheduling luck.
        let options = StoreOptions {
            group_commit_window: Duration::from_millis(100),
            ..StoreOptions::at(dir.path().join("store"))
        };
        let store = Store::open(&options).unwrap().store;
        let before = store.durable_flushes();
        let callers = 16u64;
        let mut tasks = Vec::new();
        for n in 0..callers {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .insert(TreeName::Outbox, keys::sequence(n), &item("e", 0))
                    .unwrap();
                store.make_durable().await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let flushes = store.durable_flushes() - before;
        assert!(flushes >= 1, "nobody flushed");
        assert!(
            flushes < callers,
            "{callers} callers caused {flushes} flushes: nothing was grouped"
        );
    }

    #[test]
    fn dropping_the_last_handle_releases_the_store() {
        // The committer holds a clone of the sled handle; if its thread outlived the store,
        // sled's lock on the data file would stay held and reopening would fail.
        let (_dir, store) = temp_store();
        let options = crate::store::StoreOptions::at(store.path());
        let clone = store.clone();
        drop(store);
        drop(clone);
        crate::store::Store::open(&options).expect("reopen after the last handle is dropped");
    }
}
