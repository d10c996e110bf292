//! The API's open connections and the decisions about them, kept apart from the sockets (the
//! accept loop in [`super`] does the I/O): whom to admit when the cap is reached, and
//! when a connection has waited too long for a request.
//!
//! The rules, for a gateway whose clients are a few devices in the cab and whose attackers are
//! whatever else reaches it:
//! - at most `cap` connections are open;
//! - a connection not inside a request (its headers still coming, or idle between requests) is
//!   closed once it has been so for the request timeout: headers, and the idle spell of a
//!   keep-alive connection, both get that long;
//! - at the cap, a new connection takes the place of the oldest connection that has sent part of
//!   a request and stopped (a slow client), else of the oldest idle one. A connection that has
//!   sent nothing yet (silent, or a prompt client whose request is still on its way) is taken
//!   only when there is no other, after the accept loop has let the connections' tasks run
//!   ([`Admit::Wait`]); only when every connection is inside a request is the new one refused.
//!   A client that sends its request at once is therefore served, however many clients hold
//!   connections open without one: by the time it could be chosen, its request has been read
//!   and it is inside it.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

/// A connection's number, in the order connections were admitted.
pub type ConnId = u64;

/// What the accept loop does with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Serve it.
    Yes(ConnId),
    /// Serve it, and close `evict` (idle, or still without a request) to make room.
    Evicting {
        /// The new connection.
        id: ConnId,
        /// The connection to close.
        evict: ConnId,
    },
    /// Close it at once: every open connection is inside a request.
    Refuse,
    /// Nothing to close but connections that have sent nothing yet: let their tasks run, then
    /// ask again with `force` (nothing was changed).
    Wait,
}

#[derive(Debug, Clone, Copy)]
struct Conn {
    /// Inside a request (headers read, answer not yet handed to the socket).
    busy: bool,
    /// Has completed at least one request.
    served: bool,
    /// Has sent part of a request, all of which was read, and no more has come yet.
    read: bool,
    /// When it last became not busy (or was accepted).
    since: Instant,
}

/// The open connections. Pure: every method takes the time it is called at.
#[derive(Debug)]
pub struct Table {
    cap: usize,
    timeout: Duration,
    next: ConnId,
    open: BTreeMap<ConnId, Conn>,
}

impl Table {
    /// An empty table for at most `cap` connections (at least 1), idle for at most `timeout`.
    pub fn new(cap: usize, timeout: Duration) -> Self {
        Self { cap: cap.max(1), timeout, next: 0, open: BTreeMap::new() }
    }

    /// Connections open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// True when none is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// A new connection arrives at `now`. Without `force`, a connection that has sent nothing
    /// yet is never chosen to make room ([`Admit::Wait`] instead).
    pub fn admit(&mut self, now: Instant, force: bool) -> Admit {
        let evict = if self.open.len() < self.cap {
            None
        } else {
            let oldest = |f: &dyn Fn(&Conn) -> bool| self.open.iter().find(|(_, c)| !c.busy && f(c)).map(|(id, _)| *id);
            let slow = oldest(&|c| !c.served && c.read);
            let idle = || oldest(&|c| c.served);
            let unread = || oldest(&|c| !c.served);
            match slow.or_else(idle) {
                Some(id) => Some(id),
                None if !force && unread().is_some() => return Admit::Wait,
                None => match unread() {
                    Some(id) => Some(id),
                    None => return Admit::Refuse,
                },
            }
        };
        if let Some(id) = evict {
            self.open.remove(&id);
        }
        let id = self.next;
        self.next += 1;
        self.open.insert(id, Conn { busy: false, served: false, read: false, since: now });
        match evict {
            None => Admit::Yes(id),
            Some(evict) => Admit::Evicting { id, evict },
        }
    }

    /// `id` sent part of a request and stopped: all it sent was read, no request is complete.
    pub fn read_incomplete(&mut self, id: ConnId) {
        if let Some(c) = self.open.get_mut(&id) {
            c.read = true;
        }
    }

    /// `id` starts a request (its headers are in).
    pub fn request_started(&mut self, id: ConnId) {
        if let Some(c) = self.open.get_mut(&id) {
            c.busy = true;
        }
    }

    /// `id`'s request is answered at `now`; the connection waits for the next one.
    pub fn request_done(&mut self, id: ConnId, now: Instant) {
        if let Some(c) = self.open.get_mut(&id) {
            c.busy = false;
            c.served = true;
            c.since = now;
        }
    }

    /// `id` is closed (by either side).
    pub fn closed(&mut self, id: ConnId) {
        self.open.remove(&id);
    }

    /// Whether `id` should be closed at `now` for waiting too long, and if not, when to look
    /// again. `None` when `id` is no longer in the table (it was evicted).
    pub fn check(&self, id: ConnId, now: Instant) -> Option<Check> {
        let c = self.open.get(&id)?;
        let deadline = c.since + self.timeout;
        Some(if c.busy {
            // The handler bounds its own time (a body gets its own timeout); look again later.
            Check::Later(now + self.timeout)
        } else if now >= deadline {
            Check::TimedOut
        } else {
            Check::Later(deadline)
        })
    }
}

/// The verdict of [`Table::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Close it.
    TimedOut,
    /// Look again at this time.
    Later(Instant),
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_times_out_and_one_inside_a_request_does_not() {
        let mut t = Table::new(4, T);
        let start = Instant::now();
        let Admit::Yes(a) = t.admit(start, false) else { panic!() };
        assert_eq!(t.check(a, start), Some(Check::Later(start + T)));
        assert_eq!(t.check(a, start + T), Some(Check::TimedOut));
        t.request_started(a);
        assert_eq!(t.check(a, start + T * 5), Some(Check::Later(start + T * 6)), "inside a request");
        t.request_done(a, start + T * 5);
        assert_eq!(t.check(a, start + T * 5), Some(Check::Later(start + T * 6)), "idle: the clock starts again");
        assert_eq!(t.check(a, start + T * 6), Some(Check::TimedOut));
        t.closed(a);
        assert_eq!(t.check(a, start), None);
        assert!(t.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_a_silent_connection_makes_room_before_an_idle_one_and_a_busy_one_never() {
        let now = Instant::now();
        let mut t = Table::new(3, T);
        let ids: Vec<ConnId> = (0..3)
            .map(|_| match t.admit(now, false) {
                Admit::Yes(id) => id,
                other => panic!("{other:?}"),
            })
            .collect();
        // 0 is an idle keep-alive connection that has been served; 1 has been read and sent no
        // complete request; 2 is inside one.
        t.request_started(ids[0]);
        t.request_done(ids[0], now);
        t.read_incomplete(ids[1]);
        t.request_started(ids[2]);
        let Admit::Evicting { id: d, evict } = t.admit(now, false) else { panic!() };
        assert_eq!(evict, ids[1], "the silent one goes first, though it is not the oldest");
        t.request_started(d);
        let Admit::Evicting { id: e, evict } = t.admit(now, false) else { panic!() };
        assert_eq!(evict, ids[0], "then the idle one");
        t.request_started(e);
        assert_eq!(t.len(), 3);
        assert_eq!(t.admit(now, false), Admit::Refuse, "all three are inside a request");
        assert_eq!(t.len(), 3);
        t.request_done(ids[2], now);
        assert_eq!(t.admit(now, false), Admit::Evicting { id: e + 1, evict: ids[2] });
    }

    #[tokio::test(start_paused = true)]
    async fn a_prompt_client_is_served_whatever_the_flood() {
        // Silent connections arrive and are read; a client admitted among them is not chosen
        // before it has been read, and once read it is inside its request.
        let now = Instant::now();
        let mut t = Table::new(8, T);
        let admit = |t: &mut Table| match t.admit(now, false) {
            Admit::Yes(id) | Admit::Evicting { id, .. } => {
                t.read_incomplete(id);
                id
            }
            other => panic!("{other:?}"),
        };
        for _ in 0..1000 {
            admit(&mut t);
        }
        let good = match t.admit(now, false) {
            Admit::Evicting { id, .. } => id,
            other => panic!("{other:?}"),
        };
        for _ in 0..1000 {
            admit(&mut t);
        }
        assert!(t.check(good, now).is_some(), "not read yet: never chosen while read ones are there");
        t.request_started(good);
        for _ in 0..1000 {
            admit(&mut t);
        }
        assert!(t.check(good, now).is_some(), "inside its request: never evicted");
    }

    #[tokio::test(start_paused = true)]
    async fn connections_not_read_yet_are_taken_only_when_forced() {
        let now = Instant::now();
        let mut t = Table::new(2, T);
        let (Admit::Yes(a), Admit::Yes(_)) = (t.admit(now, false), t.admit(now, false)) else { panic!() };
        assert_eq!(t.admit(now, false), Admit::Wait);
        assert_eq!(t.len(), 2, "nothing changed");
        assert!(matches!(t.admit(now, true), Admit::Evicting { evict, .. } if evict == a));
    }
}
