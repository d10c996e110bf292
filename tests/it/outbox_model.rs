//! The outbox against a model: random sequences of append / settle (delivered, parked) / retry /
//! forget-endpoint / reopen on real sled, checked after every step against a plain in-memory
//! map, for the rules `outbox`'s module doc states:
//! - an acknowledged event stays stored while any endpoint it matched still has it pending or
//!   parked, and is removed once none has (retention is zero);
//! - each endpoint's pending deliveries come out oldest first; parked ones are listed as failed;
//! - sequences only rise, across reopens too;
//! - nothing survives a reopen that was not there before it, and nothing is lost by one.

use std::collections::{BTreeMap, BTreeSet};

use curbside::event::{Status, StatusEvent};
use curbside::outbox::{DeliveryState, EndpointFilter, ListState, Outbox, OutboxError, Settle};
use proptest::prelude::*;

/// `a` wants every status, `b` only deliveries: an event may have one target or two.
const ENDPOINTS: [&str; 2] = ["a", "b"];

fn filters() -> Vec<EndpointFilter> {
    vec![
        EndpointFilter { name: "a".into(), events: None, files_only: false },
        EndpointFilter { name: "b".into(), events: Some([Status::Delivered].into_iter().collect()), files_only: false },
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Append { job: u8, delivered: bool },
    Delivered { endpoint: usize, pick: usize },
    Park { endpoint: usize, pick: usize },
    RetryAll,
    Forget { endpoint: usize },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..4, any::<bool>()).prop_map(|(job, delivered)| Op::Append { job, delivered }),
        5 => (0usize..2, any::<usize>()).prop_map(|(endpoint, pick)| Op::Delivered { endpoint, pick }),
        2 => (0usize..2, any::<usize>()).prop_map(|(endpoint, pick)| Op::Park { endpoint, pick }),
        1 => Just(Op::RetryAll),
        1 => (0usize..2).prop_map(|endpoint| Op::Forget { endpoint }),
        1 => Just(Op::Reopen),
    ]
}

/// Per event: which endpoints still have it pending, and which have it parked.
#[derive(Debug, Default)]
struct Model {
    events: BTreeMap<u64, (BTreeSet<usize>, BTreeSet<usize>)>,
    last_seq: Option<u64>,
}

impl Model {
    fn pending(&self, endpoint: usize) -> Vec<u64> {
        self.events.iter().filter(|(_, (p, _))| p.contains(&endpoint)).map(|(s, _)| *s).collect()
    }

    fn settle(&mut self, seq: u64) {
        if self.events.get(&seq).is_some_and(|(p, f)| p.is_empty() && f.is_empty()) {
            self.events.remove(&seq);
        }
    }
}

fn open(dir: &std::path::Path) -> Outbox {
    // sled's flusher lets go of the lock within its flush interval; slower under qemu.
    for _ in 0..1000 {
        match Outbox::open(dir, filters()) {
            Err(OutboxError::Locked(_)) => std::thread::sleep(std::time::Duration::from_millis(10)),
            other => return other.unwrap(),
        }
    }
    panic!("the store stayed locked after a reopen");
}

fn event(seq: u64, job: &str, delivered: bool) -> StatusEvent {
    StatusEvent {
        sequence: seq,
        job_id: job.into(),
        status: if delivered { Status::Delivered } else { Status::Arrived },
        ..curbside::webhook::format::sample("van-17")
    }
}

fn check(o: &Outbox, m: &Model) -> Result<(), TestCaseError> {
    for (i, ep) in ENDPOINTS.iter().enumerate() {
        let got: Vec<u64> = o.pending_after(ep, None, 100_000).unwrap().into_iter().map(|(s, _)| s).collect();
        prop_assert_eq!(&got, &m.pending(i), "pending of {}, oldest first", ep);
        let mut failed: Vec<u64> = o
            .list(Some(ListState::Failed), 100_000)
            .unwrap()
            .into_iter()
            .filter(|l| l.endpoint == *ep)
            .map(|l| l.event.expect("a parked delivery keeps its event").sequence)
            .collect();
        failed.sort_unstable();
        let want: Vec<u64> = m.events.iter().filter(|(_, (_, f))| f.contains(&i)).map(|(s, _)| *s).collect();
        let depth = o.depth(ep);
        prop_assert_eq!(depth.failed as usize, want.len(), "parked count of {}", ep);
        prop_assert_eq!(failed, want, "parked of {}", ep);
        prop_assert_eq!(depth.pending as usize, m.pending(i).len(), "pending count of {}", ep);
        prop_assert_eq!(depth.oldest_sequence, m.pending(i).first().copied(), "oldest pending of {}", ep);
    }
    prop_assert_eq!(o.len(), m.events.len(), "events stored: exactly those still wanted somewhere");
    for &seq in m.events.keys() {
        prop_assert!(o.event(seq).unwrap().is_some(), "event {} wanted but gone", seq);
    }
    Ok(())
}

/// `check_every`: the counts are first asked after the first step and kept from then on by each
/// change; otherwise first asked after the last step, from one scan of the store.
fn run(ops: Vec<Op>, check_every: bool) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut o = open(dir.path());
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Append { job, delivered } => {
                let job = format!("J{job}");
                let a = rt.block_on(o.append(&job, None, |s| event(s, &job, delivered))).unwrap();
                let seq = a.event.sequence;
                prop_assert!(m.last_seq.is_none_or(|l| seq > l), "sequence {} after {:?}", seq, m.last_seq);
                m.last_seq = Some(seq);
                let targets: BTreeSet<usize> = if delivered { [0, 1].into() } else { [0].into() };
                m.events.insert(seq, (targets, BTreeSet::new()));
            }
            Op::Delivered { endpoint, pick } => {
                let pending = m.pending(endpoint);
                if pending.is_empty() {
                    continue;
                }
                let seq = pending[pick % pending.len()];
                o.queue(ENDPOINTS[endpoint]).settle(seq, &Settle::Delivered, None).unwrap();
                m.events.get_mut(&seq).unwrap().0.remove(&endpoint);
                m.settle(seq);
            }
            Op::Park { endpoint, pick } => {
                let pending = m.pending(endpoint);
                if pending.is_empty() {
                    continue;
                }
                let seq = pending[pick % pending.len()];
                o.queue(ENDPOINTS[endpoint]).settle(seq, &Settle::Park(DeliveryState::new("J")), None).unwrap();
                let (p, f) = m.events.get_mut(&seq).unwrap();
                p.remove(&endpoint);
                f.insert(endpoint);
            }
            Op::RetryAll => {
                let n = o.retry(None).unwrap();
                let mut moved = 0;
                for (p, f) in m.events.values_mut() {
                    moved += f.len();
                    p.append(f);
                }
                prop_assert_eq!(n, moved);
            }
            Op::Forget { endpoint } => {
                o.forget_endpoint(ENDPOINTS[endpoint]).unwrap();
                let seqs: Vec<u64> = m.events.keys().copied().collect();
                for seq in seqs {
                    let (p, f) = m.events.get_mut(&seq).unwrap();
                    p.remove(&endpoint);
                    f.remove(&endpoint);
                    m.settle(seq);
                }
            }
            Op::Reopen => {
                rt.block_on(o.flush()).unwrap();
                drop(o);
                o = open(dir.path());
            }
        }
        if check_every {
            check(&o, &m)?;
        }
    }
    check(&o, &m)
}

proptest! {
    // Each case opens a real store and reopens it a few times: 64 cases of up to 60 operations
    // run in a few seconds.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_outbox_behaves_as_its_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops, true)?;
    }

    /// The counts status reads (events stored, each endpoint's pending and parked) come from one
    /// scan when first asked after the changes, as they do when kept by each change.
    #[test]
    fn the_counts_first_asked_late_match_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops, false)?;
    }
}
