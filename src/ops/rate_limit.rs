//! Rate limiting for errors that repeat, e.g. a device that refuses every poll during an outage.
//!
//! Retry loops on an edge box produce the same error many times a second; logged verbatim they
//! fill the disk and wear the flash (the research notes describe a disk filled overnight by one
//! error loop) and bury everything else. [`RepeatLimiter`] lets the first occurrence through,
//! counts the repeats silently for a window (5 min by default), and then yields one summary line,
//! "same error 240 times in 5 min (239 not logged)".
//!
//! The clock is an argument (`now: Instant`) so tests step through windows without sleeping.
//! A limiter is plain data (`&mut self`): each task owns its own, or wraps one in a `Mutex`.
//! Call sites normally use the [`log_repeated!`](crate::log_repeated) macro.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Default window in which repeats of one error are counted instead of logged.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Default number of distinct keys tracked; see [`RepeatLimiter::with_max_keys`].
pub const DEFAULT_MAX_KEYS: usize = 1024;

/// What the caller should do with one occurrence of an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<K> {
    /// First occurrence in a window: log it.
    Log,
    /// The previous window ended with unlogged repeats: log the summary, then this occurrence.
    LogWithSummary(Summary<K>),
    /// A repeat inside the window: it has been counted; do not log it.
    Suppress,
}

/// How often an error repeated during one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary<K> {
    /// The caller's key, or `None` for errors counted together because too many distinct keys
    /// were being tracked at once.
    pub key: Option<K>,
    /// Occurrences in the window, including the first one that was logged.
    pub occurrences: u64,
    /// The window length, for the "in 5 min" of the message.
    pub window: Duration,
}

impl<K> fmt::Display for Summary<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let window = HumanDuration(self.window);
        let not_logged = self.occurrences.saturating_sub(1);
        match self.key {
            Some(_) => write!(
                f,
                "same error {} times in {window} ({not_logged} not logged)",
                self.occurrences
            ),
            None => write!(
                f,
                "{} errors with other keys in {window} ({not_logged} not logged; \
                 too many distinct errors to track each one)",
                self.occurrences
            ),
        }
    }
}

/// One tracked key's current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    occurrences: u64,
}

impl Window {
    fn new(now: Instant) -> Self {
        Self {
            started: now,
            occurrences: 1,
        }
    }

    fn has_ended(&self, now: Instant, length: Duration) -> bool {
        now.saturating_duration_since(self.started) >= length
    }
}

/// Lets the first of a run of identical errors through and summarises the rest.
///
/// Keys are chosen by the caller (e.g. `"ai06-1/poll"`), so one device's failures do not hide
/// another's. The number of keys is capped: once full, new keys share one overflow window, so a
/// caller that accidentally puts a timestamp into the key cannot grow memory without bound.
#[derive(Debug)]
pub struct RepeatLimiter<K> {
    window: Duration,
    max_keys: usize,
    windows: HashMap<K, Window>,
    overflow: Option<Window>,
}

impl<K: Hash + Eq + Clone> Default for RepeatLimiter<K> {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW)
    }
}

impl<K: Hash + Eq + Clone> RepeatLimiter<K> {
    /// A limiter with the given window and the default key cap.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            max_keys: DEFAULT_MAX_KEYS,
            windows: HashMap::new(),
            overflow: None,
        }
    }

    /// Changes the key cap (at least one key is always tracked).
    pub fn with_max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.max(1);
        self
    }

    /// Classifies one occurrence of the error identified by `key` at time `now`.
    pub fn check<Q>(&mut self, key: &Q, now: Instant) -> Verdict<K>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let length = self.window;
        if let Some(window) = self.windows.get_mut(key) {
            return advance(window, now, length, || Some(key.to_owned()));
        }
        if self.windows.len() >= self.max_keys {
            self.forget_quiet_windows(now);
        }
        if self.windows.len() < self.max_keys {
            self.windows.insert(key.to_owned(), Window::new(now));
            return Verdict::Log;
        }
        match self.overflow.as_mut() {
            Some(window) => advance(window, now, length, || None),
            None => {
                self.overflow = Some(Window::new(now));
                Verdict::Log
            }
        }
    }

    /// Ends every window that is over and returns the summaries of those that had unlogged
    /// repeats. Call it from a periodic tick, so a run of errors that simply stops still gets
    /// its summary line instead of waiting for an occurrence that may never come.
    pub fn drain_summaries(&mut self, now: Instant) -> Vec<Summary<K>> {
        let length = self.window;
        let mut summaries = Vec::new();
        self.windows.retain(|key, window| {
            if !window.has_ended(now, length) {
                return true;
            }
            if window.occurrences > 1 {
                summaries.push(summary(Some(key.clone()), window, length));
            }
            false
        });
        if let Some(window) = self.overflow.filter(|window| window.has_ended(now, length)) {
            if window.occurrences > 1 {
                summaries.push(summary(None, &window, length));
            }
            self.overflow = None;
        }
        summaries
    }

    /// Number of keys currently tracked. A test hook today (the tests prove the table stays
    /// bounded); a status page may show it later.
    pub fn tracked_keys(&self) -> usize {
        self.windows.len()
    }

    /// Frees room by dropping ended windows that have nothing to report.
    fn forget_quiet_windows(&mut self, now: Instant) {
        let length = self.window;
        self.windows
            .retain(|_, window| window.occurrences > 1 || !window.has_ended(now, length));
    }
}

/// Counts one occurrence in `window`, or starts a new window when the old one is over.
/// The key is only materialised for a summary, so the common suppressed path never allocates.
fn advance<K>(
    window: &mut Window,
    now: Instant,
    length: Duration,
    key: impl FnOnce() -> Option<K>,
) -> Verdict<K> {
    if !window.has_ended(now, length) {
        window.occurrences += 1;
        return Verdict::Suppress;
    }
    let ended = std::mem::replace(window, Window::new(now));
    if ended.occurrences > 1 {
        Verdict::LogWithSummary(summary(key(), &ended, length))
    } else {
        Verdict::Log
    }
}

fn summary<K>(key: Option<K>, window: &Window, length: Duration) -> Summary<K> {
    Summary {
        key,
        occurrences: window.occurrences,
        window: length,
    }
}

/// Writes a window length the way a person says it: "5 min", "1 h", "90 s".
struct HumanDuration(Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        if secs == 0 {
            write!(f, "{} ms", self.0.as_millis())
        } else if secs % 3600 == 0 {
            write!(f, "{} h", secs / 3600)
        } else if secs % 60 == 0 {
            write!(f, "{} min", secs / 60)
        } else {
            write!(f, "{secs} s")
        }
    }
}

/// Logs an event through `tracing` unless a [`RepeatLimiter`] says it is a repeat.
///
/// How often the owner of a limiter should call [`log_ended_windows`]: often enough that a
/// summary appears within a minute of its window's end.
pub const DRAIN_EVERY: Duration = Duration::from_secs(60);

/// Logs (at warn) the summary of every window that ended with unlogged repeats, and returns
/// how many it logged. The owner of a limiter calls it every [`DRAIN_EVERY`], so a burst that
/// simply stops still gets its "same error N times" line instead of waiting for a next
/// occurrence that may never come.
pub fn log_ended_windows<K: Eq + Hash + Clone + fmt::Debug>(
    limiter: &mut RepeatLimiter<K>,
    now: Instant,
) -> usize {
    let summaries = limiter.drain_summaries(now);
    for summary in &summaries {
        tracing::warn!(key = ?summary.key, repeats = summary.occurrences, "{summary}");
    }
    summaries.len()
}

/// `log_repeated!(limiter, key, LEVEL, fields and message as for tracing::event!)`; the limiter
/// expression must give a `&mut RepeatLimiter` (or something that derefs to one, such as a
/// `MutexGuard`). When a window ends, the summary is logged at the same level and call site,
/// with a `repeats` field, just before the new occurrence.
///
/// ```
/// use edge_agent::log_repeated;
/// use edge_agent::ops::rate_limit::RepeatLimiter;
///
/// let mut limiter = RepeatLimiter::<String>::default();
/// for attempt in 0..3 {
///     log_repeated!(limiter, "ai06-1/poll", tracing::Level::WARN, attempt, "poll failed");
/// }
/// ```
#[macro_export]
macro_rules! log_repeated {
    ($limiter:expr, $key:expr, $level:expr, $($event:tt)+) => {
        match $limiter.check($key, ::std::time::Instant::now()) {
            $crate::ops::rate_limit::Verdict::Log => ::tracing::event!($level, $($event)+),
            $crate::ops::rate_limit::Verdict::LogWithSummary(summary) => {
                ::tracing::event!($level, repeats = summary.occurrences, "{}", summary);
                ::tracing::event!($level, $($event)+);
            }
            $crate::ops::rate_limit::Verdict::Suppress => {}
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::Layer;

    const WINDOW: Duration = Duration::from_secs(300);

    fn limiter() -> RepeatLimiter<String> {
        RepeatLimiter::new(WINDOW)
    }

    #[test]
    fn first_occurrence_is_logged_and_repeats_are_suppressed() {
        let mut limiter = limiter();
        let start = Instant::now();

        assert_eq!(limiter.check("dev/poll", start), Verdict::Log);
        for second in 1..240 {
            let now = start + Duration::from_secs(second);
            assert_eq!(limiter.check("dev/poll", now), Verdict::Suppress);
        }
    }

    #[test]
    fn the_next_occurrence_after_the_window_carries_the_summary_and_starts_a_new_window() {
        let mut limiter = limiter();
        let start = Instant::now();
        for second in 0..240 {
            limiter.check("dev/poll", start + Duration::from_secs(second));
        }

        let after = start + WINDOW;
        let Verdict::LogWithSummary(summary) = limiter.check("dev/poll", after) else {
            panic!("expected a summary");
        };
        assert_eq!(summary.occurrences, 240);
        assert_eq!(summary.key.as_deref(), Some("dev/poll"));
        assert_eq!(
            summary.to_string(),
            "same error 240 times in 5 min (239 not logged)"
        );

        assert_eq!(
            limiter.check("dev/poll", after + Duration::from_secs(1)),
            Verdict::Suppress,
            "a new window must have started at the summarising occurrence"
        );
    }

    #[test]
    fn a_single_occurrence_per_window_needs_no_summary() {
        let mut limiter = limiter();
        let start = Instant::now();
        assert_eq!(limiter.check("dev/poll", start), Verdict::Log);
        assert_eq!(limiter.check("dev/poll", start + WINDOW), Verdict::Log);
        assert!(limiter.drain_summaries(start + WINDOW * 3).is_empty());
    }

    #[test]
    fn keys_are_limited_independently() {
        let mut limiter = limiter();
        let now = Instant::now();
        assert_eq!(limiter.check("a", now), Verdict::Log);
        assert_eq!(limiter.check("b", now), Verdict::Log);
        assert_eq!(limiter.check("a", now), Verdict::Suppress);
    }

    #[test]
    fn drain_reports_only_ended_windows_with_repeats_and_forgets_them() {
        let mut limiter = limiter();
        let start = Instant::now();
        limiter.check("noisy", start);
        limiter.check("noisy", start);
        limiter.check("quiet", start);
        limiter.check("recent", start + Duration::from_secs(200));
        limiter.check("recent", start + Duration::from_secs(201));

        let summaries = limiter.drain_summaries(start + WINDOW);

        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].key.as_deref(), Some("noisy"));
        assert_eq!(summaries[0].occurrences, 2);
        assert_eq!(limiter.tracked_keys(), 1, "only the running window stays");
        assert_eq!(limiter.check("noisy", start + WINDOW), Verdict::Log);
    }

    #[test]
    fn keys_beyond_the_cap_share_one_overflow_window() {
        let mut limiter = limiter().with_max_keys(2);
        let start = Instant::now();
        limiter.check("a", start);
        limiter.check("b", start);

        assert_eq!(limiter.check("c", start), Verdict::Log);
        assert_eq!(limiter.check("d", start), Verdict::Suppress);
        assert_eq!(limiter.check("e", start), Verdict::Suppress);
        assert_eq!(limiter.tracked_keys(), 2);

        let summaries = limiter.drain_summaries(start + WINDOW);
        let overflow = summaries.iter().find(|s| s.key.is_none()).unwrap();
        assert_eq!(overflow.occurrences, 3);
        assert!(overflow
            .to_string()
            .starts_with("3 errors with other keys in 5 min"));
    }

    #[test]
    fn quiet_ended_windows_make_room_for_new_keys() {
        let mut limiter = limiter().with_max_keys(1);
        let start = Instant::now();
        limiter.check("old", start);

        assert_eq!(limiter.check("new", start + WINDOW), Verdict::Log);
        assert_eq!(limiter.check("new", start + WINDOW), Verdict::Suppress);
        assert_eq!(limiter.tracked_keys(), 1);
    }

    #[test]
    fn window_lengths_read_naturally() {
        assert_eq!(HumanDuration(Duration::from_secs(300)).to_string(), "5 min");
        assert_eq!(HumanDuration(Duration::from_secs(7200)).to_string(), "2 h");
        assert_eq!(HumanDuration(Duration::from_secs(90)).to_string(), "90 s");
        assert_eq!(
            HumanDuration(Duration::from_millis(250)).to_string(),
            "250 ms"
        );
    }

    /// Counts events reaching the subscriber, to see what the macro really logs.
    struct CountEvents(Arc<AtomicUsize>);

    impl<S: tracing::Subscriber> Layer<S> for CountEvents {
        fn on_event(&self, _: &tracing::Event<'_>, _: Context<'_, S>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_burst_that_stops_is_summarised_by_the_periodic_drain() {
        let events = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry().with(CountEvents(events.clone()));
        let mut limiter = limiter();
        let start = Instant::now();
        for _ in 0..5 {
            limiter.check("noisy", start);
        }
        tracing::subscriber::with_default(subscriber, || {
            assert_eq!(log_ended_windows(&mut limiter, start + WINDOW / 2), 0);
            assert_eq!(log_ended_windows(&mut limiter, start + WINDOW * 2), 1);
            assert_eq!(log_ended_windows(&mut limiter, start + WINDOW * 3), 0);
        });
        assert_eq!(events.load(Ordering::SeqCst), 1, "one summary line");
    }

    #[test]
    fn the_macro_logs_the_first_occurrence_only() {
        let events = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry().with(CountEvents(events.clone()));
        let limiter = Mutex::new(RepeatLimiter::<String>::default());
        let error = "connection refused";

        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..3 {
                log_repeated!(
                    limiter.lock().unwrap(),
                    "dev/poll",
                    tracing::Level::WARN,
                    %error,
                    "poll failed"
                );
            }
        });

        assert_eq!(events.load(Ordering::SeqCst), 1);
    }
}
