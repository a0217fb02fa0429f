//! The agent's long-running tasks, started with a shared stop signal and joined with a bound.
//!
//! Every task gets a [`StopSignal`] and is expected to finish its current unit of work and return
//! when it fires. A task that does not return within the shutdown bound is abandoned (and
//! named in the log), so a stuck device socket can never keep systemd waiting into SIGKILL.

use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Cloneable handle a task awaits to learn that the agent is stopping.
#[derive(Clone)]
pub struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// Resolves once the agent is stopping (immediately if it already is).
    pub async fn stopped(&mut self) {
        // An error means the sender is gone, which also means stop.
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }

    /// True once the agent is stopping; for loops that poll between units of work.
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }
}

/// The set of running tasks and the switch that stops them.
pub struct Tasks {
    stop: watch::Sender<bool>,
    running: JoinSet<&'static str>,
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new()
    }
}

impl Tasks {
    /// An empty set.
    pub fn new() -> Self {
        Self {
            stop: watch::channel(false).0,
            running: JoinSet::new(),
        }
    }

    /// A stop signal for work started outside [`Tasks::spawn`].
    pub fn stop_signal(&self) -> StopSignal {
        StopSignal(self.stop.subscribe())
    }

    /// Starts a named task; the closure receives the stop signal.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, task: F)
    where
        F: FnOnce(StopSignal) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let future = task(self.stop_signal());
        self.running.spawn(async move {
            future.await;
            name
        });
    }

    /// Signals every task to stop and waits up to `bound` for them; returns a line for each
    /// task that panicked and for those still running at the bound (which are aborted).
    pub async fn stop(mut self, bound: Duration) -> Vec<String> {
        let _ = self.stop.send(true);
        let mut trouble = Vec::new();
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            match tokio::time::timeout_at(deadline, self.running.join_next()).await {
                Ok(None) => break,
                Ok(Some(Ok(name))) => tracing::debug!(task = name, "task stopped"),
                Ok(Some(Err(err))) => trouble.push(format!("a task failed: {err}")),
                Err(_) => {
                    trouble.push(format!(
                        "{} task(s) still running after {bound:?}; abandoned",
                        self.running.len()
                    ));
                    self.running.abort_all();
                    break;
                }
            }
        }
        trouble
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cooperative_tasks_stop_and_stuck_ones_are_abandoned() {
        let mut tasks = Tasks::new();
        tasks.spawn("polite", |mut stop| async move { stop.stopped().await });
        let trouble = tasks.stop(Duration::from_secs(5)).await;
        assert!(trouble.is_empty(), "{trouble:?}");

        let mut tasks = Tasks::new();
        tasks.spawn("stuck", |_| std::future::pending());
        let trouble = tasks.stop(Duration::from_millis(50)).await;
        assert_eq!(trouble.len(), 1);
        assert!(trouble[0].contains("abandoned"), "{trouble:?}");
    }
}
