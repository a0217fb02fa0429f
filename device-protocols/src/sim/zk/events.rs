//! Realtime events of the emulated terminal (research `zk-protocol.md` §3.6): a session that
//! registered `EF_ATTLOG` with `REG_EVENT` gets every punch made at the terminal as a packet
//! with code 500, the event code in the session field and the terminal's queue index as reply
//! id. Events queue per session; the oldest unacknowledged one is sent, and re-sent every
//! [`Events::resend_after`] until the client answers `ACK_OK` with the session id and that
//! event's reply id (an ack with any other reply id, pyzk's 0 for one, acknowledges nothing).
//! A session's queue ends with the session (`EXIT`): the punch stays in the log.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::zk::{AttendanceEvent, Code, EventForm, Packet, EF_ATTLOG};

/// Events waiting for one session.
#[derive(Default)]
struct Queue {
    mask: u32,
    pending: VecDeque<Packet>,
    next_index: u16,
    sent_at: Option<Instant>,
}

/// Every session's registration and queue.
pub(crate) struct Events {
    form: EventForm,
    resend_after: Duration,
    queues: HashMap<u16, Queue>,
}

impl Events {
    /// Events sent in `form`, re-sent every `resend_after` until acknowledged.
    pub(crate) fn new(form: EventForm, resend_after: Duration) -> Events {
        Events {
            form,
            resend_after,
            queues: HashMap::new(),
        }
    }

    /// `REG_EVENT` with `mask` from `session` (0 unregisters and drops its queue).
    pub(crate) fn register(&mut self, session: u16, mask: u32) {
        if mask == 0 {
            self.queues.remove(&session);
        } else {
            self.queues.entry(session).or_default().mask = mask;
        }
    }

    /// The session ended.
    pub(crate) fn end(&mut self, session: u16) {
        self.queues.remove(&session);
    }

    /// A client `ACK_OK`: acknowledges the event in flight when its reply id matches.
    pub(crate) fn ack(&mut self, session: u16, reply_id: u16) -> bool {
        let Some(queue) = self.queues.get_mut(&session) else {
            return false;
        };
        if queue.pending.front().map(|p| p.reply_id) == Some(reply_id) {
            queue.pending.pop_front();
            queue.sent_at = None;
            return true;
        }
        false
    }

    /// Queues `event` for every session that registered `EF_ATTLOG`; how many queued it.
    pub(crate) fn attendance(&mut self, event: &AttendanceEvent) -> usize {
        let payload = match event.encode(self.form) {
            Ok(payload) => payload,
            Err(err) => {
                eprintln!("device-sim zk: punch not sent as an event: {err}");
                return 0;
            }
        };
        let mut queued = 0;
        for queue in self.queues.values_mut() {
            if queue.mask & EF_ATTLOG == 0 {
                continue;
            }
            queue.next_index = queue.next_index.wrapping_add(1).max(1);
            queue.pending.push_back(Packet::new(
                Code::REG_EVENT,
                EF_ATTLOG as u16,
                queue.next_index,
                payload.clone(),
            ));
            queued += 1;
        }
        queued
    }

    /// The event to send to `session` now, if any: the oldest unacknowledged one, when it was
    /// never sent or its resend interval is over.
    pub(crate) fn due(&mut self, session: u16, now: Instant) -> Option<Packet> {
        let resend_after = self.resend_after;
        let queue = self.queues.get_mut(&session)?;
        let front = queue.pending.front()?;
        if queue
            .sent_at
            .is_some_and(|at| now.saturating_duration_since(at) < resend_after)
        {
            return None;
        }
        queue.sent_at = Some(now);
        Some(front.clone())
    }

    /// Whether `session` has registered for any events.
    pub(crate) fn registered(&self, session: u16) -> bool {
        self.queues.contains_key(&session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zk::{EventUser, ZkDateTime};

    fn punch() -> AttendanceEvent {
        AttendanceEvent {
            user: EventUser::Uid(3),
            verify: 1,
            state: 0,
            time: ZkDateTime {
                year: 2026,
                month: 1,
                day: 2,
                hour: 3,
                minute: 4,
                second: 5,
            },
            workcode: None,
            payload_len: 10,
        }
    }

    #[test]
    fn an_event_is_resent_until_acked_with_its_reply_id() {
        let mut events = Events::new(EventForm::Uid10, Duration::from_millis(100));
        let t0 = Instant::now();
        assert_eq!(events.attendance(&punch()), 0, "nobody registered");
        events.register(9, EF_ATTLOG);
        assert_eq!(events.attendance(&punch()), 1);
        events.attendance(&punch());
        let first = events.due(9, t0).unwrap();
        assert_eq!((first.code, first.session_id), (Code::REG_EVENT, 1));
        assert!(events.due(9, t0 + Duration::from_millis(50)).is_none());
        let again = events.due(9, t0 + Duration::from_millis(150)).unwrap();
        assert_eq!(again.reply_id, first.reply_id, "the oldest is re-sent");
        assert!(
            !events.ack(9, 0),
            "pyzk's ack with reply id 0 acknowledges nothing"
        );
        assert!(events.ack(9, first.reply_id));
        let second = events.due(9, t0 + Duration::from_millis(160)).unwrap();
        assert_ne!(second.reply_id, first.reply_id);
        events.end(9);
        assert!(events.due(9, t0 + Duration::from_secs(1)).is_none());
    }
}
