//! The in-memory window of one endpoint's oldest pending deliveries, grouped by job: which
//! event goes next. Pure bookkeeping, no I/O, tested with tokio's paused clock.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};

use tokio::time::Instant;

use crate::outbox::DeliveryState;

/// Per-job queue inside the window.
#[derive(Debug, Default)]
struct JobQueue {
    seqs: VecDeque<(u64, DeliveryState)>,
    /// In flight, or waiting for its backoff.
    busy: bool,
}

/// The in-memory window of one endpoint's pending deliveries. Pure bookkeeping: no I/O.
#[derive(Debug, Default)]
pub(super) struct Window {
    jobs: HashMap<String, JobQueue>,
    /// Jobs whose head can be sent now, by head sequence: oldest first.
    ready: BTreeSet<(u64, String)>,
    /// Jobs waiting for their backoff.
    timers: BinaryHeap<Reverse<(Instant, String)>>,
    pub(super) loaded: HashSet<u64>,
    pub(super) blocked: HashSet<String>,
}

impl Window {
    /// An empty window in which `blocked` jobs (parked in the store) are held back.
    pub(super) fn blocking(blocked: HashSet<String>) -> Window {
        Window { blocked, ..Window::default() }
    }

    pub(super) fn len(&self) -> usize {
        self.loaded.len()
    }

    pub(super) fn add(&mut self, seq: u64, state: DeliveryState) {
        if self.blocked.contains(&state.job_id) || !self.loaded.insert(seq) {
            return;
        }
        let job = state.job_id.clone();
        let q = self.jobs.entry(job.clone()).or_default();
        let pos = q.seqs.iter().position(|(s, _)| *s > seq).unwrap_or(q.seqs.len());
        let old_head = q.seqs.front().map(|(s, _)| *s);
        q.seqs.insert(pos, (seq, state));
        if !q.busy {
            if let Some(h) = old_head {
                self.ready.remove(&(h, job.clone()));
            }
            self.ready.insert((q.seqs[0].0, job));
        }
    }

    /// Takes the oldest ready job's head for sending.
    pub(super) fn take(&mut self) -> Option<(u64, DeliveryState)> {
        let (seq, job) = self.ready.pop_first()?;
        let q = self.jobs.get_mut(&job)?;
        q.busy = true;
        q.seqs.front().filter(|(s, _)| *s == seq).cloned()
    }

    /// The job's head was delivered (or vanished): the next event of the job becomes ready.
    pub(super) fn done(&mut self, job: &str) {
        let Some(q) = self.jobs.get_mut(job) else { return };
        if let Some((s, _)) = q.seqs.pop_front() {
            self.loaded.remove(&s);
        }
        q.busy = false;
        match q.seqs.front() {
            Some((s, _)) => {
                self.ready.insert((*s, job.to_string()));
            }
            None => {
                self.jobs.remove(job);
            }
        }
    }

    /// The job's head goes back to ready now (offline, disabled).
    pub(super) fn requeue(&mut self, job: &str, state: DeliveryState) {
        if let Some(q) = self.jobs.get_mut(job) {
            if let Some(head) = q.seqs.front_mut() {
                head.1 = state;
                self.ready.insert((head.0, job.to_string()));
            }
            q.busy = false;
        }
    }

    /// The job's head waits until `at`.
    pub(super) fn delay(&mut self, job: &str, state: DeliveryState, at: Instant) {
        if let Some(q) = self.jobs.get_mut(job) {
            if let Some(head) = q.seqs.front_mut() {
                head.1 = state;
            }
            self.timers.push(Reverse((at, job.to_string())));
        }
    }

    /// Moves jobs whose backoff has passed to ready; returns the next wake-up.
    pub(super) fn due(&mut self, now: Instant) -> Option<Instant> {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                return Some(*at);
            }
            let Reverse((_, job)) = self.timers.pop().expect("peeked");
            if let Some(q) = self.jobs.get_mut(&job) {
                q.busy = false;
                if let Some((s, _)) = q.seqs.front() {
                    self.ready.insert((*s, job));
                }
            }
        }
        None
    }

    /// The job's head was parked: the job leaves the window, its later events wait on disk.
    pub(super) fn block(&mut self, job: &str) {
        if let Some(q) = self.jobs.remove(job) {
            for (s, _) in q.seqs {
                self.loaded.remove(&s);
            }
        }
        self.ready.retain(|(_, j)| j != job);
        self.blocked.insert(job.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    pub(super) fn st(job: &str) -> DeliveryState {
        DeliveryState::new(job)
    }

    #[test]
    pub(super) fn only_the_oldest_event_of_a_job_is_ready_and_jobs_interleave_in_sequence_order() {
        let mut w = Window::default();
        w.add(1, st("a"));
        w.add(2, st("b"));
        w.add(3, st("a"));
        let (s1, _) = w.take().unwrap();
        let (s2, _) = w.take().unwrap();
        assert_eq!((s1, s2), (1, 2));
        assert!(w.take().is_none(), "a's second event waits for its first");
        w.done("a");
        assert_eq!(w.take().unwrap().0, 3);
    }

    #[test]
    pub(super) fn an_event_loaded_late_with_a_lower_sequence_goes_first() {
        let mut w = Window::default();
        w.add(5, st("a"));
        w.add(4, st("a"));
        assert_eq!(w.take().unwrap().0, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_job_becomes_ready_when_its_backoff_passes() {
        let mut w = Window::default();
        w.add(1, st("a"));
        let (_, s) = w.take().unwrap();
        let at = Instant::now() + Duration::from_secs(5);
        w.delay("a", s, at);
        assert_eq!(w.due(Instant::now()), Some(at));
        assert!(w.take().is_none());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(w.due(Instant::now()), None);
        assert_eq!(w.take().unwrap().0, 1);
    }

    #[test]
    pub(super) fn a_blocked_job_leaves_the_window_and_its_later_events_are_not_loaded() {
        let mut w = Window::default();
        w.add(1, st("a"));
        w.add(2, st("a"));
        w.take().unwrap();
        w.block("a");
        assert_eq!(w.len(), 0);
        w.add(3, st("a"));
        assert!(w.take().is_none());
    }
}
