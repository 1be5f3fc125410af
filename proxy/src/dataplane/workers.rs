//! The data plane's workers, as Envoy's: `--concurrency` threads, each running a runtime of
//! its own. Every listener socket is served by an accept loop on each worker, and a
//! connection is served start to finish by the worker that accepted it (listener filters,
//! TLS, the HTTP connection manager, the upstream request), so serving a request wakes no
//! other thread. Upstream HTTP/1.1 connections remember the worker that opened them, and a
//! worker reuses its own first (`upstream::pool`).
//!
//! The admin API, xDS, SDS and everything else that is not traffic run on the runtime that
//! started the data plane.
//!
//! Each worker keeps one timer armed at all times (`keep_a_timer_armed`). Tokio's timer wakes
//! its thread through the event loop (a write to an eventfd, and a spare pass of `epoll_wait`)
//! whenever a new timer is due before every armed one, which is always the case when no timer
//! is armed: a worker between requests had none, so every request's deadline cost a wake-up.
//! A one-second timer is earlier than any request's deadline (15 s unless the route says
//! otherwise), so those deadlines are set without one.

use std::cell::Cell;

use tokio::runtime::Handle;

thread_local! {
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The worker this thread is, if it is one.
pub(crate) fn current_worker() -> Option<usize> {
    WORKER.with(Cell::get)
}

/// Running workers; dropping them stops them, with every task they run.
pub(crate) struct Workers {
    handles: Vec<Handle>,
    stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Workers {
    /// Starts `count` workers (0: one per core).
    pub(crate) fn start(count: usize) -> std::io::Result<Workers> {
        let count = match count {
            0 => std::thread::available_parallelism().map_or(1, |cores| cores.get()),
            count => count,
        };
        let mut handles = Vec::with_capacity(count);
        let mut stop = Vec::with_capacity(count);
        for index in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            handles.push(runtime.handle().clone());
            let (stopper, stopped) = tokio::sync::oneshot::channel::<()>();
            stop.push(stopper);
            std::thread::Builder::new().name(format!("worker_{index}")).spawn(move || {
                WORKER.with(|worker| worker.set(Some(index)));
                runtime.block_on(async {
                    tokio::select! {
                        _ = stopped => {}
                        () = keep_a_timer_armed() => {}
                    }
                });
            })?;
        }
        Ok(Workers { handles, stop })
    }

    /// Each worker's runtime, to spawn on.
    pub(crate) fn handles(&self) -> &[Handle] {
        &self.handles
    }
}

/// How often a worker's standing timer fires.
const STANDING_TIMER_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Keeps a timer armed on this worker for as long as it runs (see the module's comment).
async fn keep_a_timer_armed() {
    let mut ticks = tokio::time::interval(STANDING_TIMER_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for stopper in self.stop.drain(..) {
            let _ = stopper.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_on_their_worker_and_stop_with_it() {
        let workers = Workers::start(2).expect("workers");
        assert_eq!(workers.handles().len(), 2);
        for (index, handle) in workers.handles().iter().enumerate() {
            let (sender, receiver) = std::sync::mpsc::channel();
            handle.spawn(async move {
                let _ = sender.send((current_worker(), std::thread::current().name().map(str::to_string)));
            });
            let (worker, name) = receiver.recv().expect("ran");
            assert_eq!(worker, Some(index));
            assert_eq!(name, Some(format!("worker_{index}")));
        }
        assert_eq!(current_worker(), None);

        let (alive, mut gone) = tokio::sync::oneshot::channel::<()>();
        workers.handles()[0].spawn(async move {
            std::future::pending::<()>().await;
            drop(alive);
        });
        drop(workers);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match gone.try_recv() {
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => break,
                _ if std::time::Instant::now() > deadline => panic!("the worker's tasks were not dropped"),
                _ => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
    }
}
