//! The history of a run and the checkers that judge it, with no timing assumptions where none
//! are needed: the terminals' own session records (on the emulator's monotonic clock) are the
//! witness, the agents' logs say which lock each of their sessions ran under.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use edge_agent::device::zk::SESSION_OPENED;
use serde_json::Value;

/// One session a terminal served, as it recorded it.
#[derive(Clone, Debug)]
pub(crate) struct DeviceSession {
    /// The device's id in the agents' configs.
    pub device: String,
    /// The emulator's session number.
    pub seq: u64,
    /// The client's address as the terminal saw it.
    pub peer: String,
    /// When it opened, emulator `CLOCK_MONOTONIC` nanoseconds.
    pub open_ns: u64,
    /// When it closed; `None` when still open at the end of the history.
    pub close_ns: Option<u64>,
    /// Commands it carried.
    pub commands: usize,
    /// When its last command arrived (known once it closed).
    pub last_command_ns: Option<u64>,
}

impl DeviceSession {
    fn close_or(&self, end_ns: u64) -> u64 {
        self.close_ns.unwrap_or(end_ns)
    }

    /// The end of the time it touched the device: its last command, or (still open, so its
    /// commands are not known yet) the end of the history.
    fn active_until(&self, end_ns: u64) -> u64 {
        match self.close_ns {
            Some(_) => self.last_command_ns.unwrap_or(self.open_ns),
            None => end_ns,
        }
    }
}

/// Which interval of a session a checker compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Span {
    /// From the connection to its last command: when it touched the device.
    Active,
    /// From the connection to its close, idle time included.
    Connected,
}

/// Reads the session log of the terminal `device`.
pub(crate) fn read_sessions(device: &str, path: &Path) -> Vec<DeviceSession> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut by_seq: BTreeMap<u64, DeviceSession> = BTreeMap::new();
    for line in text.lines() {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            continue; // a line cut by a kill; the emulator writes whole lines otherwise
        };
        let seq = value["session"].as_u64().unwrap_or_default();
        let at = value["mono_ns"].as_u64().unwrap_or_default();
        match value["event"].as_str() {
            Some("open") => {
                by_seq.insert(
                    seq,
                    DeviceSession {
                        device: device.to_string(),
                        seq,
                        peer: value["peer"].as_str().unwrap_or_default().to_string(),
                        open_ns: at,
                        close_ns: None,
                        commands: 0,
                        last_command_ns: None,
                    },
                );
            }
            Some("close") => {
                if let Some(session) = by_seq.get_mut(&seq) {
                    session.close_ns = Some(at);
                    session.commands = value["commands"].as_array().map_or(0, Vec::len);
                    session.last_command_ns = value["last_command_ns"].as_u64();
                }
            }
            _ => {}
        }
    }
    by_seq.into_values().collect()
}

/// What an agent logged when it opened a session to a terminal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AgentSession {
    /// Which agent of the run.
    pub agent: usize,
    /// Its local address: the peer the terminal recorded.
    pub local: String,
    /// The fencing token of the lock span it ran in; `None`: no lock span (unguarded).
    pub token: Option<u64>,
}

/// Every session-open line of agent `agent`'s log.
pub(crate) fn agent_sessions(agent: usize, log: &str) -> Vec<AgentSession> {
    log.lines()
        .filter(|line| line.contains(SESSION_OPENED))
        .filter_map(|line| {
            let local = field(line, "local=")?;
            let token = field(line, "fencing_token=").and_then(|t| t.parse().ok());
            Some(AgentSession {
                agent,
                local: local.to_string(),
                token,
            })
        })
        .collect()
}

/// The value after `key` up to the next space, `}` or `:` that ends a span.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(key)? + key.len();
    let rest = &line[start..];
    let end = rest.find([' ', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim_end_matches(':'))
}

/// A terminal's session joined with the agent record that opened it.
#[derive(Clone, Debug)]
pub(crate) struct Joined {
    /// The terminal's record.
    pub session: DeviceSession,
    /// The agent that opened it, when exactly one agent logged that local address.
    pub agent: Option<usize>,
    /// Its fencing token, when the agent opened it under a lock span.
    pub token: Option<u64>,
    /// Several agent records name the same address (a reused port): agent and token unknown.
    pub ambiguous: bool,
}

/// Joins each terminal session with the agent record of the same client address.
pub(crate) fn join(sessions: &[DeviceSession], records: &[AgentSession]) -> Vec<Joined> {
    let mut by_local: HashMap<&str, Vec<&AgentSession>> = HashMap::new();
    for record in records {
        by_local
            .entry(record.local.as_str())
            .or_default()
            .push(record);
    }
    sessions
        .iter()
        .map(|session| {
            let found = by_local.get(session.peer.as_str());
            let distinct = found.map(|records| {
                let mut keys: Vec<_> = records.iter().map(|r| (r.agent, r.token)).collect();
                keys.sort();
                keys.dedup();
                keys
            });
            match distinct.as_deref() {
                Some([(agent, token)]) => Joined {
                    session: session.clone(),
                    agent: Some(*agent),
                    token: *token,
                    ambiguous: false,
                },
                Some([_, _, ..]) => Joined {
                    session: session.clone(),
                    agent: None,
                    token: None,
                    ambiguous: true,
                },
                _ => Joined {
                    session: session.clone(),
                    agent: None,
                    token: None,
                    ambiguous: false,
                },
            }
        })
        .collect()
}

/// Two sessions of one terminal that were open at the same time.
#[derive(Clone, Debug)]
pub(crate) struct Overlap {
    /// The terminal.
    pub device: String,
    /// The earlier session (seq, client address).
    pub first: (u64, String),
    /// The later one.
    pub second: (u64, String),
    /// How long both were open.
    pub length: Duration,
}

/// Checker 1, mutual exclusion: every pair of sessions of one terminal whose `span`s overlap,
/// with the overlap's length. A session still open at the end counts as open until `end_ns`.
/// [`Span::Active`] is the verdict (two clients touching the device at once);
/// [`Span::Connected`] also counts a connection a client kept open while idle (a paused holder's),
/// which the summary reports but which touched nothing.
pub(crate) fn overlaps(sessions: &[DeviceSession], end_ns: u64, span: Span) -> Vec<Overlap> {
    let until = |s: &DeviceSession| match span {
        Span::Active => s.active_until(end_ns),
        Span::Connected => s.close_or(end_ns),
    };
    let mut sorted: Vec<&DeviceSession> = sessions.iter().collect();
    sorted.sort_by_key(|s| (s.device.clone(), s.open_ns));
    let mut found = Vec::new();
    for (i, a) in sorted.iter().enumerate() {
        for b in &sorted[i + 1..] {
            // Sorted by open time: once one opens after `a` stopped, all later ones do.
            if b.device != a.device || b.open_ns >= until(a) {
                break;
            }
            let length = until(a).min(until(b)).saturating_sub(b.open_ns);
            found.push(Overlap {
                device: a.device.clone(),
                first: (a.seq, a.peer.clone()),
                second: (b.seq, b.peer.clone()),
                length: Duration::from_nanos(length),
            });
        }
    }
    found
}

/// Sessions that ran outside a lock: no agent logged opening them, or one did outside a lock
/// span. Ambiguous joins (a reused client port) are not counted here; the summary shows them.
pub(crate) fn unguarded(joined: &[Joined]) -> Vec<String> {
    joined
        .iter()
        .filter(|j| !j.ambiguous && j.token.is_none())
        .map(|j| match j.agent {
            Some(agent) => format!(
                "{} session {} from {}: agent {agent} opened it outside a lock",
                j.session.device, j.session.seq, j.session.peer
            ),
            None => format!(
                "{} session {} from {}: no agent logged opening it",
                j.session.device, j.session.seq, j.session.peer
            ),
        })
        .collect()
}

/// What checker 2 (fencing tokens) found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Tokens {
    /// Every session ran under token 0: no arbiter issues tokens (the `flock` lock), so there is
    /// no order to check. Only the overlap checker judges such a run.
    NoArbiter,
    /// Tokens were checked over this many holds; the problems found.
    Checked {
        /// Holds (runs of sessions by one agent under one token) seen.
        holds: usize,
        /// Tokens that went backwards, stood still across holders, or came back.
        problems: Vec<String>,
    },
}

/// Checker 2: per terminal, in session-open order, the tokens of successive holds strictly
/// increase and no token is used by two holds. A hold is a run of sessions by one agent under
/// one token (one lock held across a session and its reconnect-to-close).
pub(crate) fn tokens(joined: &[Joined]) -> Tokens {
    let known: Vec<&Joined> = joined
        .iter()
        .filter(|j| j.agent.is_some() && j.token.is_some())
        .collect();
    if known.iter().all(|j| j.token == Some(0)) {
        return Tokens::NoArbiter;
    }
    let mut by_device: BTreeMap<&str, Vec<&Joined>> = BTreeMap::new();
    for j in known {
        by_device.entry(&j.session.device).or_default().push(j);
    }
    let (mut holds, mut problems) = (0, Vec::new());
    for (device, mut sessions) in by_device {
        sessions.sort_by_key(|j| j.session.open_ns);
        let mut used: HashMap<u64, usize> = HashMap::new();
        let mut last: Option<(usize, u64)> = None;
        for j in sessions {
            let (agent, token) = (j.agent.expect("known"), j.token.expect("known"));
            if last == Some((agent, token)) {
                continue;
            }
            holds += 1;
            if let Some((_, previous)) = last {
                if token <= previous {
                    problems.push(format!(
                        "{device} session {}: token {token} after {previous}",
                        j.session.seq
                    ));
                }
            }
            if let Some(other) = used.insert(token, agent) {
                problems.push(format!(
                    "{device} session {}: token {token} reused (agent {other} held it before agent {agent})",
                    j.session.seq
                ));
            }
            last = Some((agent, token));
        }
    }
    Tokens::Checked { holds, problems }
}

/// How long a terminal went without a holder after its holder was killed.
#[derive(Clone, Debug)]
pub(crate) struct Handover {
    /// The terminal.
    pub device: String,
    /// The agent killed while it had a session open.
    pub dead: usize,
    /// From the kill to the next session another agent opened; `None`: none did.
    pub gap: Option<Duration>,
}

/// Checker 3, hand-over: for each kill of agent `a` at `at_ns` while it had a session open on
/// a terminal, the time until the next session opened there (by another agent, or by `a`'s
/// restarted process: either way a new holder).
pub(crate) fn handovers(joined: &[Joined], kills: &[(usize, u64)], end_ns: u64) -> Vec<Handover> {
    let mut found = Vec::new();
    for &(dead, at) in kills {
        let held: Vec<&str> = joined
            .iter()
            .filter(|j| {
                j.agent == Some(dead) && j.session.open_ns <= at && j.session.close_or(end_ns) >= at
            })
            .map(|j| j.session.device.as_str())
            .collect();
        for device in held {
            let gap = joined
                .iter()
                // Any session opened after the kill is another process's: the dead one opens
                // nothing, and a restart of the same agent counts as a new holder.
                .filter(|j| j.session.device == device && j.session.open_ns > at)
                .map(|j| j.session.open_ns - at)
                .min()
                .map(Duration::from_nanos);
            found.push(Handover {
                device: device.to_string(),
                dead,
                gap,
            });
        }
    }
    found
}

/// The `p`-th percentile (0–100) of `values`, nearest-rank; `None` when empty.
pub(crate) fn percentile(values: &[Duration], p: f64) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// The processes holding a `flock` on `path` right now, from `/proc/locks`: the same-box lock's
/// ground truth for "free or one live holder".
pub(crate) fn flock_holders(path: &Path) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    locks
        .lines()
        .filter_map(|line| {
            // `1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF`; a waiter's line has `->`.
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(1) != Some(&"FLOCK") || fields.contains(&"->") {
                return None;
            }
            let inode = fields.get(5)?.rsplit(':').next()?.parse::<u64>().ok()?;
            (inode == meta.ino()).then(|| fields.get(4)?.parse().ok())?
        })
        .collect()
}

/// Who the arbiter's audit lines say holds `device` at the end of `log`: the holder of its
/// last `lock acquired` unless a `lock released` or `lock lost` of that token followed.
pub(crate) fn arbiter_holder(log: &str, device: &str) -> Option<String> {
    let mut holder: Option<(String, String)> = None;
    for line in log.lines() {
        if field(line, "device=") != Some(device) {
            continue;
        }
        let token = field(line, "token=").unwrap_or_default().to_string();
        if line.contains("lock acquired") {
            holder = field(line, "holder=").map(|h| (h.to_string(), token));
        } else if (line.contains("lock released") || line.contains("lock lost"))
            && holder.as_ref().is_some_and(|(_, held)| *held == token)
        {
            holder = None;
        }
    }
    holder.map(|(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(device: &str, seq: u64, peer: &str, open: u64, close: Option<u64>) -> DeviceSession {
        DeviceSession {
            device: device.into(),
            seq,
            peer: peer.into(),
            open_ns: open,
            close_ns: close,
            commands: 3,
            last_command_ns: close,
        }
    }

    #[test]
    fn overlaps_are_found_per_device_with_their_length() {
        let sessions = [
            session("a", 1, "p1", 0, Some(100)),
            session("a", 2, "p2", 60, Some(200)),
            session("a", 3, "p3", 200, None),
            session("b", 1, "p4", 50, Some(70)),
        ];
        let found = overlaps(&sessions, 250, Span::Connected);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].first.0, 1);
        assert_eq!(found[0].second.0, 2);
        assert_eq!(found[0].length, Duration::from_nanos(40));
        // Still open at the end: it overlaps a later one until then.
        let found = overlaps(
            &[
                session("a", 1, "p", 0, None),
                session("a", 2, "q", 10, None),
            ],
            30,
            Span::Active,
        );
        assert_eq!(found[0].length, Duration::from_nanos(20));
        // A connection kept open but idle after its last command: connected, not active.
        let mut idle = session("a", 1, "p", 0, Some(100));
        idle.last_command_ns = Some(20);
        let busy = session("a", 2, "q", 50, Some(90));
        assert!(overlaps(&[idle.clone(), busy.clone()], 100, Span::Active).is_empty());
        assert_eq!(overlaps(&[idle, busy], 100, Span::Connected).len(), 1);
    }

    #[test]
    fn agent_lines_give_the_local_address_and_the_lock_span_token() {
        let log = format!(
            "2026-01-01T00:00:00.000Z DEBUG edge_agent::device::zk::tcp: lock{{device=\"zk-a\" \
             fencing_token=7}}: {SESSION_OPENED} local=127.0.0.1:40000 terminal=\"127.0.0.1:1\"\n\
             2026-01-01T00:00:00.000Z DEBUG edge_agent::device::zk::tcp: {SESSION_OPENED} \
             local=127.0.0.1:40001 terminal=\"127.0.0.1:1\"\n"
        );
        let records = agent_sessions(2, &log);
        assert_eq!(
            records,
            [
                AgentSession {
                    agent: 2,
                    local: "127.0.0.1:40000".into(),
                    token: Some(7)
                },
                AgentSession {
                    agent: 2,
                    local: "127.0.0.1:40001".into(),
                    token: None
                },
            ]
        );
        let joined = join(
            &[
                session("zk-a", 1, "127.0.0.1:40000", 0, Some(1)),
                session("zk-a", 2, "127.0.0.1:40001", 2, Some(3)),
                session("zk-a", 3, "127.0.0.1:49999", 4, Some(5)),
            ],
            &records,
        );
        let problems = unguarded(&joined);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("outside a lock"));
        assert!(problems[1].contains("no agent logged"));
    }

    fn joined(device: &str, open: u64, agent: usize, token: u64) -> Joined {
        Joined {
            session: session(device, open, "p", open, Some(open + 1)),
            agent: Some(agent),
            token: Some(token),
            ambiguous: false,
        }
    }

    #[test]
    fn tokens_must_rise_between_holds_and_never_come_back() {
        assert_eq!(
            tokens(&[joined("a", 1, 0, 0), joined("a", 2, 1, 0)]),
            Tokens::NoArbiter
        );
        let good = [
            joined("a", 1, 0, 1),
            joined("a", 2, 0, 1),
            joined("a", 3, 1, 2),
        ];
        assert_eq!(
            tokens(&good),
            Tokens::Checked {
                holds: 2,
                problems: vec![]
            }
        );
        let bad = [
            joined("a", 1, 0, 5),
            joined("a", 2, 1, 3),
            joined("a", 3, 2, 5),
        ];
        let Tokens::Checked { problems, .. } = tokens(&bad) else {
            panic!("checked")
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("token 3 after 5"));
        assert!(problems[1].contains("reused"));
    }

    #[test]
    fn a_handover_is_the_first_session_after_the_kill() {
        let history = [
            joined("a", 10, 0, 0),
            joined("a", 30, 0, 0),
            joined("a", 50, 1, 0),
        ];
        // Agent 0's session 10..11 was open at 11 when it was killed; its restarted process
        // opened the next one, at 30: a new holder.
        let found = handovers(&history, &[(0, 11)], 100);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].gap, Some(Duration::from_nanos(19)));
        assert!(
            handovers(&history, &[(1, 5)], 100).is_empty(),
            "held nothing"
        );
    }

    #[test]
    fn the_arbiter_holder_is_the_last_grant_not_released() {
        let log = "I lock acquired device=zk-0 holder=h1 token=1\n\
                   I lock released device=zk-0 holder=h1 token=1\n\
                   I lock acquired device=zk-0 holder=h2 token=2\n\
                   I lock acquired device=zk-1 holder=h3 token=3\n\
                   W lock lost: its lease ran out device=zk-1 holder=h3 token=3\n";
        assert_eq!(arbiter_holder(log, "zk-0").as_deref(), Some("h2"));
        assert_eq!(arbiter_holder(log, "zk-1"), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&values, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
