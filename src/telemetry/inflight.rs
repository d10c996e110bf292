//! What the publisher has handed to rumqttc and the broker has not acknowledged yet, and which
//! backlog points may leave the ring: pure bookkeeping (as rumqttc keeps its own `state.rs`),
//! no I/O, so that every packet-id case is a unit test.

use std::collections::{BTreeSet, HashMap, VecDeque};

use super::Point;

/// Acknowledged backlog points leave the ring in batches of this many (a crash in between only
/// means they are sent again), and all at once when nothing is left in flight.
pub const REMOVE_BATCH: u64 = 32;

/// A message handed to rumqttc and not yet acknowledged.
#[derive(Debug, PartialEq)]
pub enum Item {
    /// A point published live (not in the ring).
    Live(Point),
    /// A point from the ring, by ring sequence.
    Backlog(u64),
    /// Points from the ring in one message (`batch`), by ring sequence.
    Batch(Vec<u64>),
    /// A status event, by outbox sequence.
    Event(u64),
    /// The retained state (or anything else not tracked).
    Other,
}

/// Messages between `try_publish` and the broker's acknowledgement, matched by packet id.
#[derive(Debug, Default)]
pub struct Inflight {
    /// Requested, in order, waiting for rumqttc to assign a packet id.
    sent: VecDeque<Item>,
    /// Written, waiting for the broker's acknowledgement.
    awaiting: HashMap<u16, Item>,
    /// A publish rumqttc holds back because its packet id is still in use.
    collided: Option<(u16, Item)>,
}

impl Inflight {
    /// `try_publish` accepted `item`.
    pub fn requested(&mut self, item: Item) {
        self.sent.push_back(item);
    }

    /// rumqttc wrote a publish with `pkid` (`Outgoing::Publish`). Returns the item when that is
    /// all there will be (QoS 0, packet id 0); otherwise it now awaits its acknowledgement.
    pub fn written(&mut self, pkid: u16) -> Result<Option<Item>, &'static str> {
        let item = match self.collided.take() {
            Some((id, item)) if id == pkid => item,
            other => {
                self.collided = other;
                self.sent.pop_front().ok_or("rumqttc sent a publish curbside did not ask for")?
            }
        };
        if pkid == 0 {
            return Ok(Some(item));
        }
        self.awaiting.insert(pkid, item);
        Ok(None)
    }

    /// rumqttc holds the next requested publish back: `pkid` is still in use
    /// (`Outgoing::AwaitAck`); it is written later under that id.
    pub fn held(&mut self, pkid: u16) -> Result<(), &'static str> {
        let item = self.sent.pop_front().ok_or("rumqttc held a publish curbside did not ask for")?;
        self.collided = Some((pkid, item));
        Ok(())
    }

    /// The broker acknowledged `pkid` (PUBACK, or PUBCOMP at QoS 2). `None` for an id not
    /// awaited (an acknowledgement after a reset).
    pub fn acked(&mut self, pkid: u16) -> Option<Item> {
        self.awaiting.remove(&pkid)
    }

    /// What was never acknowledged when the connection ended: requested order first, then the
    /// held one, then the written ones by packet id.
    pub fn unacked(self) -> impl Iterator<Item = Item> {
        let mut written: Vec<(u16, Item)> = self.awaiting.into_iter().collect();
        written.sort_by_key(|(k, _)| *k);
        self.sent.into_iter().chain(self.collided.map(|(_, i)| i)).chain(written.into_iter().map(|(_, i)| i))
    }
}

/// Which backlog points may leave the ring: only the acknowledged prefix, everything below the
/// oldest point still in flight.
#[derive(Debug, Default)]
pub struct RingAcks {
    inflight: BTreeSet<u64>,
    acked: Option<u64>,
    removed: Option<u64>,
}

impl RingAcks {
    /// The point with ring sequence `seq` was handed to rumqttc.
    pub fn sent(&mut self, seq: u64) {
        self.inflight.insert(seq);
    }

    /// The broker acknowledged `seq`. Returns the ring sequence to remove through now, when a
    /// batch is due or nothing is left in flight.
    pub fn acked(&mut self, seq: u64) -> Option<u64> {
        self.inflight.remove(&seq);
        self.acked = self.acked.max(Some(seq));
        let waiting = self.prefix().map_or(0, |t| (t + 1).saturating_sub(self.removed.map_or(0, |r| r + 1)));
        if self.inflight.is_empty() || waiting >= REMOVE_BATCH { self.removable() } else { None }
    }

    /// The acknowledged prefix not yet removed, if any (at the end of a connection).
    pub fn removable(&self) -> Option<u64> {
        self.prefix().filter(|t| Some(*t) > self.removed)
    }

    /// The ring was cut through `seq`.
    pub fn removed(&mut self, seq: u64) {
        self.removed = Some(seq);
    }

    fn prefix(&self) -> Option<u64> {
        match self.inflight.first() {
            Some(&oldest) => oldest.checked_sub(1),
            None => self.acked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_ids_match_what_was_asked_even_when_rumqttc_holds_one_back() {
        let mut f = Inflight::default();
        f.requested(Item::Event(1));
        f.requested(Item::Event(2));
        f.requested(Item::Backlog(7));
        assert_eq!(f.written(1), Ok(None));
        // Packet id 2 is still in use: rumqttc holds event 2 back, then writes backlog point 7.
        f.held(2).unwrap();
        assert_eq!(f.written(3), Ok(None));
        assert_eq!(f.acked(1), Some(Item::Event(1)));
        assert_eq!(f.written(2), Ok(None), "the held one goes out under its id");
        assert_eq!(f.acked(2), Some(Item::Event(2)));
        assert_eq!(f.acked(3), Some(Item::Backlog(7)));
        assert_eq!(f.acked(3), None, "a second ack is ignored");
    }

    #[test]
    fn qos_0_is_done_when_written_and_surprises_are_errors() {
        let mut f = Inflight::default();
        f.requested(Item::Other);
        assert_eq!(f.written(0), Ok(Some(Item::Other)));
        assert!(f.written(5).is_err(), "nothing was asked for");
        assert!(f.held(5).is_err());
    }

    #[test]
    fn what_was_never_acknowledged_comes_back_in_order() {
        let mut f = Inflight::default();
        for s in 1..=4 {
            f.requested(Item::Event(s));
        }
        f.written(9).unwrap();
        f.written(8).unwrap();
        f.held(3).unwrap();
        let left: Vec<Item> = f.unacked().collect();
        assert_eq!(left, vec![Item::Event(4), Item::Event(3), Item::Event(2), Item::Event(1)]);
    }

    #[test]
    fn only_the_acknowledged_prefix_leaves_the_ring_in_batches() {
        let mut r = RingAcks::default();
        for s in 0..40 {
            r.sent(s);
        }
        assert_eq!(r.acked(1), None, "0 is still in flight");
        assert_eq!(r.removable(), None);
        assert_eq!(r.acked(0), None, "a prefix of two: not a batch yet");
        assert_eq!(r.removable(), Some(1));
        for s in 2..31 {
            assert_eq!(r.acked(s), None, "{s}");
        }
        assert_eq!(r.acked(31), Some(31), "32 acknowledged in a row: a batch");
        r.removed(31);
        for s in 32..39 {
            assert_eq!(r.acked(s), None);
        }
        assert_eq!(r.acked(39), Some(39), "nothing left in flight: all of it");
        r.removed(39);
        assert_eq!(r.removable(), None);
    }
}
