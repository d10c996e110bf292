//! Group commit: appenders wait for an fsync that covers their write, and one thread does the
//! fsyncs, so that concurrent taps share them.
//!
//! This replaces sled's `flush_async`, which deadlocks when awaited concurrently (sled issue
//! #1308, open in 0.34.7, and reproduced here by the drain benchmark's concurrent appenders).

use std::sync::{Arc, Condvar, Mutex};

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
}

impl Committer {
    /// Starts the thread that fsyncs `db` whenever a commit is waiting.
    pub fn start(db: sled::Db) -> std::io::Result<Committer> {
        let requests = Arc::new((Mutex::new(Requests::default()), Condvar::new()));
        let done = watch::Sender::new(Done::default());
        let (r, d) = (requests.clone(), done.clone());
        std::thread::Builder::new().name("outbox-commit".into()).spawn(move || {
            let (lock, cvar) = &*r;
            let mut finished = 0;
            loop {
                let target = {
                    let Ok(mut q) = lock.lock() else { return };
                    while q.requested == finished && !q.stop {
                        q = match cvar.wait(q) {
                            Ok(q) => q,
                            Err(_) => return,
                        };
                    }
                    if q.stop {
                        return;
                    }
                    q.requested
                };
                // Everything written before `target` was requested is covered by this flush.
                let error = db.flush().err();
                finished = target;
                d.send_replace(Done { generation: target, error });
            }
        })?;
        Ok(Committer { requests, done })
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
        let c = Arc::new(Committer::start(db.clone()).unwrap());
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
