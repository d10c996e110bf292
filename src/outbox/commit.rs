//! Group commit: appenders wait for an fsync that covers their write, and one thread does the
//! fsyncs, so that concurrent taps share them.
//!
//! This replaces sled's `flush_async`, which deadlocks when awaited concurrently (sled issue
//! #1308, open in 0.34.7, and reproduced here by the drain benchmark's concurrent appenders).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

#[derive(Debug, Default)]
struct Requests {
    /// Generations asked for so far; each append asks for the next one.
    requested: u64,
    stop: bool,
}

/// The latest finished fsync: every generation up to `generation` is covered by it.
#[derive(Debug, Clone, Default)]
struct Done {
    generation: u64,
    error: Option<sled::Error>,
}

/// Handle to the committing thread; the thread stops when this is dropped.
#[derive(Debug)]
pub struct Committer {
    requests: Arc<(Mutex<Requests>, Condvar)>,
    done: watch::Sender<Done>,
    /// Milliseconds after `origin` when the thread was last seen alive (waiting or done).
    alive: Arc<AtomicU64>,
    origin: Instant,
}

/// How often an idle commit thread wakes to show it is alive.
const IDLE_BEAT: Duration = Duration::from_millis(250);

impl Committer {
    /// Starts the thread that makes the store durable whenever a commit is waiting.
    pub fn start(mut work: impl FnMut() -> Result<(), sled::Error> + Send + 'static) -> std::io::Result<Committer> {
        let requests = Arc::new((Mutex::new(Requests::default()), Condvar::new()));
        let done = watch::Sender::new(Done::default());
        let (r, d) = (requests.clone(), done.clone());
        let (alive, origin) = (Arc::new(AtomicU64::new(0)), Instant::now());
        let beat = alive.clone();
        let seen = move || beat.store(origin.elapsed().as_millis() as u64, Ordering::Relaxed);
        std::thread::Builder::new().name("outbox-commit".into()).spawn(move || {
            let (lock, cvar) = &*r;
            let mut finished = 0;
            loop {
                seen();
                let target = {
                    let Ok(mut q) = lock.lock() else { return };
                    while q.requested == finished && !q.stop {
                        q = match cvar.wait_timeout(q, IDLE_BEAT) {
                            Ok((q, _)) => q,
                            Err(_) => return,
                        };
                        seen();
                    }
                    if q.stop {
                        return;
                    }
                    q.requested
                };
                // Everything written before `target` was requested is covered by this flush.
                let error = work().err();
                finished = target;
                d.send_replace(Done { generation: target, error });
            }
        })?;
        Ok(Committer { requests, done, alive, origin })
    }

    /// How long since the thread was last seen alive: about [`IDLE_BEAT`] at most while idle,
    /// the length of the fsync in progress while committing.
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.alive.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }

    /// Waits until everything written before this call is on disk.
    pub async fn commit(&self) -> Result<(), sled::Error> {
        let mine = {
            let (lock, cvar) = &*self.requests;
            let mut q = lock.lock().map_err(|_| sled::Error::ReportableBug("commit lock poisoned".into()))?;
            q.requested += 1;
            cvar.notify_one();
            q.requested
        };
        let mut rx = self.done.subscribe();
        loop {
            {
                let d = rx.borrow_and_update();
                if d.generation >= mine {
                    return match &d.error {
                        Some(e) => Err(e.clone()),
                        None => Ok(()),
                    };
                }
            }
            if rx.changed().await.is_err() {
                return Err(sled::Error::ReportableBug("commit thread stopped".into()));
            }
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.requests;
        if let Ok(mut q) = lock.lock() {
            q.stop = true;
        }
        cvar.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_commits_all_complete() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let durable = super::super::durable::Durable::open(db.clone(), dir.path()).unwrap();
        let c = Arc::new(Committer::start(move || durable.sync()).unwrap());
        let mut set = tokio::task::JoinSet::new();
        for i in 0..200u32 {
            let (c, db) = (c.clone(), db.clone());
            set.spawn(async move {
                db.insert(i.to_be_bytes(), vec![0; 100]).unwrap();
                c.commit().await.unwrap();
            });
        }
        tokio::time::timeout(std::time::Duration::from_secs(30), set.join_all()).await.expect("no deadlock");
    }
}
