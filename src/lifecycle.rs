//! The agent's long-running tasks, started by name with a shared stop signal, watched while they
//! run, and joined with a bound.
//!
//! Every task gets a [`StopSignal`] and is expected to finish its current unit of work and return
//! when it fires. Until then a task is not supposed to end: one that panics or returns early is a
//! service the agent silently lost, so it is reported at once — an `error!` line naming the task
//! and a [`TaskFailure`] for [`Tasks::failed`] — and once more in the list [`Tasks::stop`]
//! returns. A task that does not return within the shutdown bound is abandoned (and named), so a
//! stuck device socket can never keep systemd waiting into SIGKILL.
//!
//! This module is the bottom of the crate: it uses nothing from it, so every service can take a
//! [`StopSignal`] or register with [`Tasks`] without depending on the agent that wires them.

use futures::FutureExt as _;
use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
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

/// How a task ended before it was asked to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// The task panicked; the panic message, when it had one.
    Panicked(String),
    /// The task returned although nobody asked it to stop.
    EndedEarly,
}

/// A task that ended before stop, so that whoever supervises the agent can react to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// The name the task was registered with (`sync-device:<id>`, `aiface-listener`, …).
    pub task: String,
    /// How it ended.
    pub kind: FailureKind,
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            FailureKind::Panicked(message) => {
                write!(f, "task `{}` panicked: {message}", self.task)
            }
            FailureKind::EndedEarly => {
                write!(
                    f,
                    "task `{}` ended early, before the agent stopped",
                    self.task
                )
            }
        }
    }
}

/// The set of running tasks, the switch that stops them, and the report of those that failed.
pub struct Tasks {
    stop: watch::Sender<bool>,
    running: JoinSet<Option<TaskFailure>>,
    failures_tx: mpsc::UnboundedSender<TaskFailure>,
    failures_rx: mpsc::UnboundedReceiver<TaskFailure>,
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new()
    }
}

impl Tasks {
    /// An empty set.
    pub fn new() -> Self {
        let (failures_tx, failures_rx) = mpsc::unbounded_channel();
        Self {
            stop: watch::channel(false).0,
            running: JoinSet::new(),
            failures_tx,
            failures_rx,
        }
    }

    /// A stop signal for work started outside [`Tasks::spawn`].
    pub fn stop_signal(&self) -> StopSignal {
        StopSignal(self.stop.subscribe())
    }

    /// Starts a task registered as `name`, which says which instance it is
    /// (`sync-device:<device id>`, not just `sync-device`); the closure receives the stop signal.
    /// If the task panics or returns before stop, that is logged and sent to [`Tasks::failed`]
    /// right away.
    pub fn spawn<F, Fut>(&mut self, name: impl Into<String>, task: F)
    where
        F: FnOnce(StopSignal) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        let stop = self.stop_signal();
        let future = task(self.stop_signal());
        let future = fail_on_request(&name, future);
        let failures = self.failures_tx.clone();
        self.running.spawn(async move {
            let ended = AssertUnwindSafe(future).catch_unwind().await;
            let kind = match ended {
                Err(panic) => FailureKind::Panicked(panic_message(panic.as_ref())),
                Ok(()) if stop.is_stopping() => {
                    tracing::debug!(task = %name, "task stopped");
                    return None;
                }
                Ok(()) => FailureKind::EndedEarly,
            };
            let failure = TaskFailure { task: name, kind };
            tracing::error!(task = %failure.task, "{failure}");
            let _ = failures.send(failure.clone());
            Some(failure)
        });
    }

    /// Waits for the next task that panicked or ended before stop (each is delivered once;
    /// pending forever while all is well). Cancel-safe, so a supervisor can `select!` on it next
    /// to its other inputs.
    pub async fn failed(&mut self) -> TaskFailure {
        match self.failures_rx.recv().await {
            Some(failure) => failure,
            // Unreachable while `self` holds a sender; stay pending like a healthy set.
            None => std::future::pending().await,
        }
    }

    /// Signals every task to stop and waits up to `bound` for them; returns a line for each
    /// task that failed (whether or not [`Tasks::failed`] already delivered it) and for those
    /// still running at the bound (which are aborted).
    pub async fn stop(mut self, bound: Duration) -> Vec<String> {
        let _ = self.stop.send(true);
        let mut trouble = Vec::new();
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            match tokio::time::timeout_at(deadline, self.running.join_next()).await {
                Ok(None) => break,
                Ok(Some(Ok(None))) => {}
                Ok(Some(Ok(Some(failure)))) => trouble.push(failure.to_string()),
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

/// The text of a panic payload (`panic!` with a literal or a formatted message); supervisors
/// that catch a panic themselves report it with this.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_string()
    }
}

/// Test-only fault injection, so the end-to-end tests can kill a task of the real binary (a
/// device loop, the forwarder) and watch the agent react. **Debug builds only**: in a release
/// build this is a constant `false` and the variable is never read, so no setting can reach
/// it on a gateway.
///
/// `EDGE_AGENT_TEST_FAULT` holds comma-separated names; [`test_fault`] answers `true` the first
/// time it is asked about one of them (once per process, so a restarted task runs normally).
/// `task:<name>` makes the task registered as `<name>` panic two seconds after it starts;
/// `device-loop:<id>` makes the poll loop of device `<id>` panic when it first wakes.
#[cfg(debug_assertions)]
pub fn test_fault(name: &str) -> bool {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static FIRED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let Ok(wanted) = std::env::var("EDGE_AGENT_TEST_FAULT") else {
        return false;
    };
    if !wanted.split(',').any(|w| w.trim() == name) {
        return false;
    }
    let mut fired = FIRED.lock().unwrap_or_else(|p| p.into_inner());
    fired
        .get_or_insert_with(HashSet::new)
        .insert(name.to_owned())
}

/// Release builds: no fault injection (see the debug version).
#[cfg(not(debug_assertions))]
pub fn test_fault(_name: &str) -> bool {
    false
}

/// `future`, or one that panics two seconds in when [`test_fault`] asks for `task:<name>`.
fn fail_on_request<Fut>(name: &str, future: Fut) -> futures::future::BoxFuture<'static, ()>
where
    Fut: Future<Output = ()> + Send + 'static,
{
    use futures::FutureExt as _;
    if !test_fault(&format!("task:{name}")) {
        return future.boxed();
    }
    let name = name.to_owned();
    async move {
        tokio::select! {
            _ = future => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        panic!("test fault injected into task `{name}` (EDGE_AGENT_TEST_FAULT)");
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How long a failure may take to be reported: "at once", with room for a busy machine.
    const PROMPTLY: Duration = Duration::from_secs(2);

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

    #[tokio::test]
    async fn a_panicking_task_is_reported_by_name_at_once_and_once_at_stop() {
        let mut tasks = Tasks::new();
        tasks.spawn("polite", |mut stop| async move { stop.stopped().await });
        tasks.spawn("sync-device:ai06-1", |_| async {
            panic!("the device sent nonsense");
        });
        let failure = tokio::time::timeout(PROMPTLY, tasks.failed())
            .await
            .expect("a panic is reported at once, not at stop");
        assert_eq!(
            failure,
            TaskFailure {
                task: "sync-device:ai06-1".into(),
                kind: FailureKind::Panicked("the device sent nonsense".into()),
            }
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(100), tasks.failed())
                .await
                .is_err(),
            "one failure, one report"
        );
        let trouble = tasks.stop(Duration::from_secs(5)).await;
        assert_eq!(trouble.len(), 1, "{trouble:?}");
        assert!(trouble[0].contains("sync-device:ai06-1"), "{trouble:?}");
        assert!(
            trouble[0].contains("the device sent nonsense"),
            "{trouble:?}"
        );
    }

    #[tokio::test]
    async fn an_early_return_is_reported_by_name_at_once_and_once_at_stop() {
        let mut tasks = Tasks::new();
        let device = "zk-2";
        tasks.spawn(format!("sync-device:{device}"), |_| async {});
        let failure = tokio::time::timeout(PROMPTLY, tasks.failed())
            .await
            .expect("an early return is reported at once, not at stop");
        assert_eq!(failure.task, "sync-device:zk-2");
        assert_eq!(failure.kind, FailureKind::EndedEarly);
        assert!(failure.to_string().contains("ended early"), "{failure}");
        let trouble = tasks.stop(Duration::from_secs(5)).await;
        assert_eq!(trouble.len(), 1, "{trouble:?}");
        assert!(trouble[0].contains("sync-device:zk-2"), "{trouble:?}");
        assert!(trouble[0].contains("ended early"), "{trouble:?}");
    }

    #[tokio::test]
    async fn a_failure_not_awaited_is_still_reported_at_stop() {
        let mut tasks = Tasks::new();
        tasks.spawn("upstream-forwarder", |_| async {
            panic!("{} went wrong", "something");
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let trouble = tasks.stop(Duration::from_secs(5)).await;
        assert_eq!(
            trouble,
            vec!["task `upstream-forwarder` panicked: something went wrong".to_string()]
        );
    }

    #[tokio::test]
    async fn returning_because_of_stop_is_not_a_failure() {
        let mut tasks = Tasks::new();
        tasks.spawn(
            "status-file",
            |mut stop| async move { stop.stopped().await },
        );
        let mut stop = tasks.stop_signal();
        tasks.spawn("sync-notices", |_| async move { stop.stopped().await });
        assert!(tasks.stop(Duration::from_secs(5)).await.is_empty());
    }
}
