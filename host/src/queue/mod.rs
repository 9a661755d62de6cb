//! The queue: after a message is spooled, its recipients are routed; local
//! mailboxes are delivered at once, remote recipients wait in the spool for
//! outbound delivery (visible with `mailgate queue list`). A message leaves
//! the spool when every recipient is delivered or has failed for good.

pub mod maildir;
pub mod route;

use crate::log::MainLog;
use crate::spool::{Envelope, RcptState, RecipientEntry, Spool};
use route::{Route, Router};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

/// Route freshly accepted recipients before the message is spooled, so the
/// first spool record already holds their final states: remote recipients
/// become `queued`, aliases `expanded` (with their targets added), local
/// mailboxes stay `pending` for the queue runner. Routing is pure
/// computation, and doing it here saves a second fsync per message.
/// Returns true when some recipient still needs local delivery.
pub fn preroute(router: &Router, rcpts: &mut Vec<RecipientEntry>) -> bool {
    let n = rcpts.len();
    for i in 0..n {
        let addr = rcpts[i].address.clone();
        let Ok(routes) = router.route(&addr) else {
            // Left pending: the queue runner fails it with a logged reason.
            continue;
        };
        let direct = routes.len() == 1
            && match &routes[0] {
                Route::Remote(a) => *a == addr,
                Route::Local { address, .. } => address.eq_ignore_ascii_case(&addr),
            };
        if direct {
            if let Route::Remote(_) = routes[0] {
                rcpts[i].state = RcptState::Queued;
                rcpts[i].detail = Some("waiting for outbound delivery".into());
            }
            continue;
        }
        rcpts[i].state = RcptState::Expanded;
        rcpts[i].detail = Some(format!("expanded to {} addresses", routes.len()));
        for route in routes {
            let mut child = RecipientEntry::new(
                match &route {
                    Route::Remote(a) => a.clone(),
                    Route::Local { address, .. } => address.clone(),
                },
                rcpts[i].notify,
                rcpts[i].orcpt.clone(),
            );
            child.parent = Some(i);
            if let Route::Remote(_) = route {
                child.state = RcptState::Queued;
                child.detail = Some("waiting for outbound delivery".into());
            }
            rcpts.push(child);
        }
    }
    rcpts.iter().any(|r| r.state == RcptState::Pending)
}

/// How often deferred local deliveries are retried.
const RETRY_INTERVAL: Duration = Duration::from_secs(60);

/// Handle used by sessions to hand over newly spooled messages.
#[derive(Clone)]
pub struct QueueHandle {
    tx: mpsc::UnboundedSender<String>,
    runner: Arc<Runner>,
}

impl QueueHandle {
    /// Route and deliver a newly spooled message.
    pub fn submit(&self, id: String) {
        let _ = self.tx.send(id);
    }

    /// Stop starting deliveries and wait (up to `timeout`) for those in
    /// flight, so that their spool records are written before the spool
    /// closes. Returns the number still running at the deadline.
    pub async fn drain(&self, timeout: Duration) -> usize {
        self.runner
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let n = self.runner.busy.lock().unwrap().len();
            if n == 0 || tokio::time::Instant::now() >= until {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

struct Runner {
    spool: Spool,
    router: Arc<Router>,
    log: Arc<MainLog>,
    hostname: String,
    busy: Mutex<HashSet<String>>,
    slots: Semaphore,
    stopping: std::sync::atomic::AtomicBool,
}

/// Start the queue runner; it first picks up what the spool holds.
pub fn start(
    spool: Spool,
    router: Arc<Router>,
    log: Arc<MainLog>,
    hostname: String,
) -> QueueHandle {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let runner = Arc::new(Runner {
        spool,
        router,
        log,
        hostname,
        busy: Mutex::new(HashSet::new()),
        slots: Semaphore::new(8),
        stopping: std::sync::atomic::AtomicBool::new(false),
    });
    let handle = QueueHandle {
        tx,
        runner: Arc::clone(&runner),
    };
    tokio::spawn(async move {
        runner.clone().scan();
        let mut tick = tokio::time::interval(RETRY_INTERVAL);
        tick.tick().await;
        loop {
            tokio::select! {
                id = rx.recv() => match id {
                    Some(id) => runner.clone().dispatch(id),
                    None => break,
                },
                _ = tick.tick() => runner.clone().scan(),
            }
        }
    });
    handle
}

impl Runner {
    /// Dispatch every message that has recipients still to route.
    fn scan(self: Arc<Self>) {
        for env in self.spool.list() {
            if env.recipients.iter().any(|r| r.state == RcptState::Pending) {
                self.clone().dispatch(env.id);
            }
        }
    }

    fn dispatch(self: Arc<Self>, id: String) {
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if !self.busy.lock().unwrap().insert(id.clone()) {
            return;
        }
        tokio::spawn(async move {
            let _permit = self.slots.acquire().await;
            let me = self.clone();
            let id2 = id.clone();
            let res = tokio::task::spawn_blocking(move || me.process(&id2)).await;
            if let Ok(Some(waits)) = res {
                for w in waits {
                    let _ = w.await;
                }
            }
            self.busy.lock().unwrap().remove(&id);
        });
    }

    /// Route the pending recipients of one message and deliver the local ones.
    fn process(
        &self,
        id: &str,
    ) -> Option<Vec<tokio::sync::oneshot::Receiver<std::io::Result<()>>>> {
        let mut env: Envelope = self.spool.get(id)?;
        let mut data: Option<Vec<u8>> = None;
        let mut changed = false;
        let n = env.recipients.len();
        for i in 0..n {
            if env.recipients[i].state != RcptState::Pending {
                continue;
            }
            let addr = env.recipients[i].address.clone();
            match self.router.route(&addr) {
                Err(reason) => {
                    self.log.write(&format!("{id} ** {addr}: {reason}"));
                    let r = &mut env.recipients[i];
                    r.state = RcptState::Failed;
                    r.detail = Some(reason);
                    changed = true;
                }
                Ok(routes) => {
                    let direct = routes.len() == 1
                        && match &routes[0] {
                            Route::Remote(a) => *a == addr,
                            Route::Local { address, .. } => address.eq_ignore_ascii_case(&addr),
                        };
                    if direct {
                        let via = env.recipients[i]
                            .parent
                            .and_then(|p| env.recipients.get(p))
                            .map(|p| p.address.clone());
                        changed |= self.apply(&mut env, i, &routes[0], via.as_deref(), &mut data);
                    } else {
                        env.recipients[i].state = RcptState::Expanded;
                        env.recipients[i].detail =
                            Some(format!("expanded to {} addresses", routes.len()));
                        changed = true;
                        for route in &routes {
                            let parent = &env.recipients[i];
                            let mut child = RecipientEntry::new(
                                match route {
                                    Route::Remote(a) => a.clone(),
                                    Route::Local { address, .. } => address.clone(),
                                },
                                parent.notify,
                                parent.orcpt.clone(),
                            );
                            child.parent = Some(i);
                            env.recipients.push(child);
                            let j = env.recipients.len() - 1;
                            self.apply(&mut env, j, route, Some(&addr), &mut data);
                        }
                    }
                }
            }
        }
        if !changed {
            return None;
        }
        let mut waits = Vec::new();
        if env.is_complete() {
            self.log.write(&format!("{id} Completed"));
            waits.extend(self.spool.complete(id).ok());
        } else {
            waits.extend(self.spool.update(env).ok());
        }
        Some(waits)
    }

    /// Handle one routed recipient; returns true when its state changed.
    fn apply(
        &self,
        env: &mut Envelope,
        i: usize,
        route: &Route,
        via: Option<&str>,
        data: &mut Option<Vec<u8>>,
    ) -> bool {
        let id = env.id.clone();
        let via_s = via.map(|v| format!(" <{v}>")).unwrap_or_default();
        match route {
            Route::Remote(a) => {
                let r = &mut env.recipients[i];
                r.state = RcptState::Queued;
                r.detail = Some("waiting for outbound delivery".into());
                tracing::debug!(%id, rcpt = %a, "queued for outbound delivery");
                true
            }
            Route::Local { address, maildir } => {
                if data.is_none() {
                    match self.spool.read_data(&id) {
                        Ok(d) => *data = Some(d),
                        Err(e) => {
                            self.log.write(&format!("{id} == {address}{via_s} R=local_user T=maildir defer: spool read: {e}"));
                            return false;
                        }
                    }
                }
                let sender = env.sender.clone();
                match maildir::deliver(
                    maildir,
                    &self.hostname,
                    &sender,
                    address,
                    data.as_deref().unwrap(),
                ) {
                    Ok(path) => {
                        self.log
                            .write(&format!("{id} => {address}{via_s} R=local_user T=maildir"));
                        let r = &mut env.recipients[i];
                        r.state = RcptState::Delivered;
                        r.attempts += 1;
                        r.detail = Some(path.display().to_string());
                        true
                    }
                    Err(e) => {
                        self.log.write(&format!(
                            "{id} == {address}{via_s} R=local_user T=maildir defer: {e}"
                        ));
                        let r = &mut env.recipients[i];
                        r.attempts += 1;
                        r.detail = Some(format!("maildir: {e}"));
                        true
                    }
                }
            }
        }
    }
}
