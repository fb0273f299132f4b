//! The threads that run the node's store jobs: one runs them in order on
//! the store's own connection; beside it up to [`MOST_READERS`] readers,
//! each on a second connection ([`Store::reader`]), run the reads the node
//! marked [`StoreJob::aside`], so one slow read holds up neither the
//! writes nor the reads of other documents. A read that fails on a reader
//! (say, PostgreSQL refused it a connection) runs again in order on the
//! store's own connection, whose answers alone tell the node's health.

use crate::health::Health;
use crate::node::{run_job, JobError, StoreAnswer, StoreJob, StoreOp, StoreResult};
use docweave_adapters::Store;
use std::sync::Arc;
use std::time::Instant;

/// Most reads run at once beside the ordered jobs (each holds a
/// connection to the store).
pub(crate) const MOST_READERS: usize = 4;

/// Hands an answer back to the node's loop.
pub(crate) type Answer = Arc<dyn Fn(StoreAnswer) + Send + Sync>;

/// The store's threads.
pub(crate) struct StoreThreads {
    jobs: std::sync::mpsc::Sender<StoreJob>,
    /// Reads that may run aside (and the readers' end, to drop what is
    /// left at close); `None` when the store has no second connection
    /// (they then run in order with the rest).
    reads: Option<(
        async_channel::Sender<StoreJob>,
        async_channel::Receiver<StoreJob>,
    )>,
    threads: Vec<std::thread::JoinHandle<()>>,
    health: Health,
}

impl StoreThreads {
    /// Starts the ordered thread on `store`, and readers on as many second
    /// connections as it gives (up to [`MOST_READERS`]).
    pub fn spawn(
        mut store: Box<dyn Store>,
        answer: Answer,
        health: Health,
        metrics: Option<crate::Metrics>,
    ) -> Self {
        let mut readers = Vec::new();
        while readers.len() < MOST_READERS {
            match store.reader() {
                Ok(Some(reader)) => readers.push(reader),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(
                        "no second connection to the store ({e}); its reads run in order with its writes"
                    );
                    break;
                }
            }
        }
        let worker = Worker {
            answer,
            health: health.clone(),
            metrics,
        };
        let (jobs, ordered) = std::sync::mpsc::channel::<StoreJob>();
        let mut threads = Vec::new();
        let w = worker.clone();
        threads.push(std::thread::spawn(move || {
            while let Ok(job) = ordered.recv() {
                if !w.serve(&mut *store, job, None) {
                    return;
                }
            }
        }));
        let reads = (!readers.is_empty()).then(|| {
            let (tx, rx) = async_channel::unbounded::<StoreJob>();
            for mut reader in readers {
                let (w, rx, again) = (worker.clone(), rx.clone(), jobs.clone());
                threads.push(std::thread::spawn(move || {
                    while let Ok(job) = rx.recv_blocking() {
                        if !w.serve(&mut *reader, job, Some(&again)) {
                            return;
                        }
                    }
                }));
            }
            (tx, rx)
        });
        Self {
            jobs,
            reads,
            threads,
            health,
        }
    }

    /// Hands a job to its thread; a thread that is gone stops the node
    /// (its answer would never come).
    pub fn run(&self, job: StoreJob) {
        let sent = match (&self.reads, job.aside) {
            (Some((reads, _)), true) => reads.try_send(job).is_ok(),
            _ => self.jobs.send(job).is_ok(),
        };
        if !sent {
            self.health.stop("a store thread is gone".into());
        }
    }

    /// Lets every thread finish the jobs it has, and waits for them.
    pub fn close(mut self) {
        drop(std::mem::replace(
            &mut self.jobs,
            std::sync::mpsc::channel().0,
        ));
        if let Some((reads, left)) = self.reads.take() {
            // Reads still queued are dropped unanswered: the node is
            // closing, nobody waits for a document any more, and a read
            // must not hold the shutdown.
            while left.try_recv().is_ok() {}
            reads.close();
        }
        for t in std::mem::take(&mut self.threads) {
            if t.join().is_err() {
                self.health.stop("a store thread ended in a panic".into());
            }
        }
    }
}

/// What every store thread shares: where answers go, the node's health,
/// the metrics.
#[derive(Clone)]
struct Worker {
    answer: Answer,
    health: Health,
    metrics: Option<crate::Metrics>,
}

impl Worker {
    /// Runs one job and answers it; `false` when the store panicked: the
    /// connection may be left mid-transaction, so it is not used again and
    /// the node stops (a supervisor restarts the process on a store it
    /// opens afresh). On a reader (`again` set), a failed read is handed
    /// to the ordered thread instead of answered.
    fn serve(
        &self,
        store: &mut dyn Store,
        job: StoreJob,
        again: Option<&std::sync::mpsc::Sender<StoreJob>>,
    ) -> bool {
        let id = job.id;
        let appended = match &job.op {
            StoreOp::Append(changes) => Some(changes.len()),
            _ => None,
        };
        let retry = again.map(|a| (a, job.clone()));
        let started = Instant::now();
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_job(store, job.op)));
        if let (Some((again, job)), Ok(result)) = (&retry, &ran) {
            if let Some(why) = result.store_failure() {
                tracing::warn!("a read beside the writes failed ({why}); it runs again in order");
                let mut job = job.clone();
                job.aside = false;
                if again.send(job).is_err() {
                    self.health.stop("the store's thread is gone".into());
                }
                return true;
            }
        }
        if let Some(m) = &self.metrics {
            if let Some(n) = appended {
                m.store_append.observe(started.elapsed().as_secs_f64());
                m.append_batch.observe(n as f64);
            }
            if !matches!(&ran, Ok(r) if r.store_failure().is_none()) {
                m.store_failures.inc();
            }
        }
        match ran {
            Ok(result) => {
                // The ordered connection's answers tell whether the store
                // works; a reader's success says nothing of the writes.
                if retry.is_none() {
                    self.health.store_answered(result.store_failure());
                }
                (self.answer)(StoreAnswer { id, result });
                true
            }
            Err(p) => {
                let why = format!("the store panicked: {}", crate::health::panic_message(&*p));
                self.health.stop(why.clone());
                let result = StoreResult::Failed(JobError {
                    reason: why,
                    tombstoned: false,
                });
                (self.answer)(StoreAnswer { id, result });
                false
            }
        }
    }
}
