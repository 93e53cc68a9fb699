//! The router: typed messages between shards over one glommio `channel_mesh` full mesh.
//!
//! Every shard (data shards `0..N` and the control shard `N`) is one peer of the same mesh, so
//! any shard can reach any other with a bounded single-producer single-consumer queue and no
//! locks. On top of the raw mesh the router adds:
//! - request/reply: a correlation id travels with the request; the reply comes back through the
//!   mesh and is dispatched to the future waiting for that id;
//! - self-delivery: the mesh has no channel from a peer to itself, so messages to the own id go
//!   through a local bounded channel and are handled by the same handler, in order;
//! - a guaranteed answer: a request whose [`Incoming`] is dropped unanswered is answered with
//!   [`RouterError::NoReply`], and a request to a peer whose executor has gone fails with
//!   [`RouterError::Closed`], so a requester never hangs on a peer's bug.
//!
//! The receive loops start as soon as the router exists, so replies reach a shard even before it
//! calls [`Router::serve`]. One-way messages and requests that arrive before a handler is installed
//! are kept (in arrival order) and handed to the handler when `serve` is called. That early
//! buffer is bounded (`channel_capacity` x peers); once full, the loops stop reading and senders
//! feel backpressure, as they would with a slow handler.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::channels::shared_channel::ConnectedReceiver;
use glommio::{GlommioError, ResourceType};

/// What travels through the mesh.
pub(crate) enum Envelope<M> {
    Oneway(M),
    Request(u64, M),
    Reply(u64, M),
    /// The handler dropped the request without replying.
    NoReply(u64),
}

/// Why a request got no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterError {
    /// No such peer (`to >= nr_peers`).
    InvalidPeer(usize),
    /// The peer's channel is closed (its executor has exited); the message was dropped.
    Closed,
    /// The peer's handler dropped the request without replying.
    NoReply,
    /// `request_timeout` elapsed first.
    Timeout,
}

impl fmt::Display for RouterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouterError::InvalidPeer(p) => write!(f, "no shard with id {p}"),
            RouterError::Closed => f.write_str("peer shard is gone"),
            RouterError::NoReply => f.write_str("peer dropped the request without replying"),
            RouterError::Timeout => f.write_str("request timed out"),
        }
    }
}

impl std::error::Error for RouterError {}

/// A message delivered to this shard's handler.
pub struct Incoming<M: Send + 'static> {
    pub from: usize,
    pub msg: M,
    responder: Option<Responder<M>>,
}

impl<M: Send + 'static> Incoming<M> {
    /// Whether the sender awaits a reply.
    pub fn is_request(&self) -> bool {
        self.responder.is_some()
    }

    /// Takes the message and, for a request, the means to answer it later (for handlers that
    /// spawn a task to do async work before replying).
    pub fn into_parts(self) -> (usize, M, Option<Responder<M>>) {
        (self.from, self.msg, self.responder)
    }

    /// Answers a request. A no-op for one-way messages.
    pub fn reply(self, msg: M) {
        if let Some(r) = self.responder {
            r.reply(msg);
        }
    }
}

impl<M: Send + 'static + fmt::Debug> fmt::Debug for Incoming<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("from", &self.from)
            .field("msg", &self.msg)
            .field("is_request", &self.is_request())
            .finish()
    }
}

/// The right to answer one request. Dropping it unanswered tells the requester `NoReply`.
pub struct Responder<M: Send + 'static> {
    router: Router<M>,
    to: usize,
    corr: u64,
    answered: bool,
}

impl<M: Send + 'static> Responder<M> {
    pub fn reply(mut self, msg: M) {
        self.answered = true;
        self.router
            .send_control(self.to, Envelope::Reply(self.corr, msg));
    }
}

impl<M: Send + 'static> Drop for Responder<M> {
    fn drop(&mut self) {
        if !self.answered {
            self.router
                .send_control(self.to, Envelope::NoReply(self.corr));
        }
    }
}

type Handler<M> = Rc<dyn Fn(Incoming<M>)>;

struct Pending<M> {
    to: usize,
    outcome: Option<Result<M, RouterError>>,
    waker: Option<Waker>,
}

struct Inner<M: Send + 'static> {
    id: usize,
    nr_peers: usize,
    senders: Senders<Envelope<M>>,
    local_tx: LocalSender<Envelope<M>>,
    next_corr: Cell<u64>,
    pending: RefCell<HashMap<u64, Pending<M>>>,
    handler: RefCell<Option<Handler<M>>>,
    handler_waiters: RefCell<Vec<Waker>>,
    early: RefCell<VecDeque<Incoming<M>>>,
    early_limit: usize,
    close: Rc<CloseState>,
}

#[derive(Default)]
struct CloseState {
    closed: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl CloseState {
    fn close(&self) -> bool {
        if self.closed.replace(true) {
            return false;
        }
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
        true
    }

    async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.closed.get() {
                Poll::Ready(())
            } else {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// This shard's end of the mesh. Clones are cheap and share state; not `Send` (per shard).
pub struct Router<M: Send + 'static> {
    inner: Rc<Inner<M>>,
}

impl<M: Send + 'static> Clone for Router<M> {
    fn clone(&self) -> Self {
        Router {
            inner: self.inner.clone(),
        }
    }
}

impl<M: Send + 'static> fmt::Debug for Router<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("id", &self.inner.id)
            .field("nr_peers", &self.inner.nr_peers)
            .finish()
    }
}

enum Source<M: Send> {
    Mesh(ConnectedReceiver<Envelope<M>>),
    Local(LocalReceiver<Envelope<M>>),
}

impl<M: Send> Source<M> {
    async fn recv(&self) -> Option<Envelope<M>> {
        match self {
            Source::Mesh(rx) => rx.recv().await,
            Source::Local(rx) => rx.recv().await,
        }
    }
}

/// Recovers the message from a failed mesh/local send. Sends are only attempted on valid
/// non-self indices, for which glommio always hands the message back.
fn returned<M>(err: GlommioError<Envelope<M>>) -> Option<Envelope<M>> {
    match err {
        GlommioError::Closed(ResourceType::Channel(env))
        | GlommioError::WouldBlock(ResourceType::Channel(env)) => Some(env),
        _ => None,
    }
}

impl<M: Send + 'static> Router<M> {
    /// Builds the router from this shard's mesh halves and starts its receive loops. Must run on
    /// the shard's executor.
    pub(crate) fn new(
        senders: Senders<Envelope<M>>,
        mut receivers: Receivers<Envelope<M>>,
        local_capacity: usize,
    ) -> Self {
        let (local_tx, local_rx) = local_channel::new_bounded(local_capacity.max(1));
        let nr_peers = senders.nr_consumers();
        let inner = Rc::new(Inner {
            id: senders.peer_id(),
            nr_peers,
            senders,
            local_tx,
            next_corr: Cell::new(1),
            pending: RefCell::new(HashMap::new()),
            handler: RefCell::new(None),
            handler_waiters: RefCell::new(Vec::new()),
            early: RefCell::new(VecDeque::new()),
            early_limit: local_capacity.max(1).saturating_mul(nr_peers.max(1)),
            close: Rc::default(),
        });
        let router = Router { inner };
        for (from, rx) in receivers.streams() {
            router.spawn_loop(from, Source::Mesh(rx));
        }
        router.spawn_loop(router.inner.id, Source::Local(local_rx));
        router
    }

    fn spawn_loop(&self, from: usize, source: Source<M>) {
        // The loop holds only a weak reference: when every user clone of the router is gone the
        // shard is shutting down and the loop ends instead of keeping the channels alive.
        let weak = Rc::downgrade(&self.inner);
        let close = self.inner.close.clone();
        glommio::spawn_local(async move {
            loop {
                let next = futures_lite::future::or(source.recv(), async {
                    close.wait().await;
                    None
                })
                .await;
                let Some(env) = next else { break };
                let Some(inner) = weak.upgrade() else { break };
                Router { inner }.dispatch(from, env).await;
            }
            if let Some(inner) = weak.upgrade() {
                Router { inner }.fail_pending_to(from);
            }
        })
        .detach();
    }

    /// This shard's peer id (data shards `0..N`, control `N`).
    pub fn id(&self) -> usize {
        self.inner.id
    }

    /// Number of peers in the mesh, this shard included (`N + 1`).
    pub fn nr_peers(&self) -> usize {
        self.inner.nr_peers
    }

    /// Installs the handler for one-way messages and requests (replacing any previous one) and
    /// releases receive loops that were waiting for it.
    pub fn serve(&self, handler: impl Fn(Incoming<M>) + 'static) {
        let handler: Handler<M> = Rc::new(handler);
        *self.inner.handler.borrow_mut() = Some(handler.clone());
        // Deliver what arrived before the handler existed, oldest first, before any loop runs
        // again, so per-peer order is kept.
        loop {
            let next = self.inner.early.borrow_mut().pop_front();
            let Some(inc) = next else { break };
            handler(inc);
        }
        let waiters = std::mem::take(&mut *self.inner.handler_waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }

    /// Sends a one-way message, waiting for room in the peer's queue. `Err(msg)` if the peer does
    /// not exist or is gone.
    pub async fn send(&self, to: usize, msg: M) -> Result<(), M> {
        match self.send_envelope(to, Envelope::Oneway(msg)).await {
            Ok(()) => Ok(()),
            Err(Envelope::Oneway(m)) => Err(m),
            Err(_) => unreachable!("send_envelope returns the envelope it was given"),
        }
    }

    /// Sends a one-way message if the peer's queue has room right now.
    pub fn try_send(&self, to: usize, msg: M) -> Result<(), M> {
        match self.try_send_envelope(to, Envelope::Oneway(msg)) {
            Ok(()) => Ok(()),
            Err(Envelope::Oneway(m)) => Err(m),
            Err(_) => unreachable!("try_send_envelope returns the envelope it was given"),
        }
    }

    /// Sends `msg` to every other peer (not to itself), in peer order, waiting for room in each
    /// queue. Returns how many peers accepted it.
    pub async fn broadcast(&self, msg: M) -> usize
    where
        M: Clone,
    {
        let targets: Vec<usize> = (0..self.inner.nr_peers)
            .filter(|&p| p != self.inner.id)
            .collect();
        let mut delivered = 0;
        let mut msg = Some(msg);
        for (i, &to) in targets.iter().enumerate() {
            let Some(current) = msg.take() else { break };
            let m = if i + 1 == targets.len() {
                current
            } else {
                let copy = current.clone();
                msg = Some(current);
                copy
            };
            if self.send(to, m).await.is_ok() {
                delivered += 1;
            }
        }
        delivered
    }

    /// Sends a request and waits for the reply. Cancel-safe: dropping the future forgets the
    /// correlation id, and a late reply is discarded.
    pub async fn request(&self, to: usize, msg: M) -> Result<M, RouterError> {
        if to >= self.inner.nr_peers {
            return Err(RouterError::InvalidPeer(to));
        }
        let corr = self.inner.next_corr.get();
        self.inner.next_corr.set(corr.wrapping_add(1));
        self.inner.pending.borrow_mut().insert(
            corr,
            Pending {
                to,
                outcome: None,
                waker: None,
            },
        );
        let guard = PendingGuard { router: self, corr };
        if self
            .send_envelope(to, Envelope::Request(corr, msg))
            .await
            .is_err()
        {
            return Err(RouterError::Closed);
        }
        std::future::poll_fn(|cx| guard.poll_outcome(cx)).await
    }

    /// [`Router::request`] bounded by `timeout`.
    pub async fn request_timeout(
        &self,
        to: usize,
        msg: M,
        timeout: Duration,
    ) -> Result<M, RouterError> {
        futures_lite::future::or(self.request(to, msg), async {
            glommio::timer::Timer::new(timeout).await;
            Err(RouterError::Timeout)
        })
        .await
    }

    async fn send_envelope(&self, to: usize, env: Envelope<M>) -> Result<(), Envelope<M>> {
        if to == self.inner.id {
            return self.inner.local_tx.send(env).await.map_err(|e| {
                returned(e).unwrap_or_else(|| unreachable!("local channel returns the item"))
            });
        }
        if to >= self.inner.nr_peers {
            return Err(env);
        }
        self.inner.senders.send_to(to, env).await.map_err(|e| {
            returned(e).unwrap_or_else(|| unreachable!("valid mesh index returns the item"))
        })
    }

    fn try_send_envelope(&self, to: usize, env: Envelope<M>) -> Result<(), Envelope<M>> {
        if to == self.inner.id {
            return self.inner.local_tx.try_send(env).map_err(|e| {
                returned(e).unwrap_or_else(|| unreachable!("local channel returns the item"))
            });
        }
        if to >= self.inner.nr_peers {
            return Err(env);
        }
        self.inner.senders.try_send_to(to, env).map_err(|e| {
            returned(e).unwrap_or_else(|| unreachable!("valid mesh index returns the item"))
        })
    }

    /// Replies and no-reply notices: never block the caller (handlers are synchronous). If the
    /// peer's queue is full the envelope is sent from a small task; if the peer is gone it is
    /// dropped, since nobody is waiting any more.
    fn send_control(&self, to: usize, env: Envelope<M>) {
        if to == self.inner.id {
            // A reply to ourselves completes the pending request directly.
            self.complete_local(env);
            return;
        }
        match self.inner.senders.try_send_to(to, env) {
            Ok(()) => {}
            Err(GlommioError::WouldBlock(ResourceType::Channel(env))) => {
                let router = self.clone();
                glommio::spawn_local(async move {
                    let _ = router.inner.senders.send_to(to, env).await;
                })
                .detach();
            }
            Err(_) => tracing::debug!(to, "reply dropped: requester shard is gone"),
        }
    }

    fn complete_local(&self, env: Envelope<M>) {
        match env {
            Envelope::Reply(corr, m) => self.complete(corr, Ok(m)),
            Envelope::NoReply(corr) => self.complete(corr, Err(RouterError::NoReply)),
            _ => {}
        }
    }

    fn complete(&self, corr: u64, outcome: Result<M, RouterError>) {
        let mut pending = self.inner.pending.borrow_mut();
        match pending.get_mut(&corr) {
            Some(p) => {
                p.outcome = Some(outcome);
                if let Some(w) = p.waker.take() {
                    w.wake();
                }
            }
            None => tracing::debug!(corr, "late reply discarded"),
        }
    }

    fn fail_pending_to(&self, peer: usize) {
        let mut pending = self.inner.pending.borrow_mut();
        for p in pending.values_mut().filter(|p| p.to == peer) {
            if p.outcome.is_none() {
                p.outcome = Some(Err(RouterError::Closed));
                if let Some(w) = p.waker.take() {
                    w.wake();
                }
            }
        }
    }

    async fn dispatch(&self, from: usize, env: Envelope<M>) {
        let (msg, responder) = match env {
            Envelope::Reply(..) | Envelope::NoReply(_) => {
                self.complete_local(env);
                return;
            }
            Envelope::Oneway(m) => (m, None),
            Envelope::Request(corr, m) => (
                m,
                Some(Responder {
                    router: self.clone(),
                    to: from,
                    corr,
                    answered: false,
                }),
            ),
        };
        let inc = Incoming {
            from,
            msg,
            responder,
        };
        let installed = self.inner.handler.borrow().clone();
        if let Some(handler) = installed {
            handler(inc);
            return;
        }
        if self.inner.early.borrow().len() < self.inner.early_limit {
            self.inner.early.borrow_mut().push_back(inc);
            return;
        }
        // Early buffer full: stop reading this peer until a handler exists (backpressure).
        let handler = WaitHandler { router: self }.await;
        handler(inc);
    }

    /// Closes this shard's end of the mesh: peers' sends to it fail with `Closed`, their pending
    /// requests to it fail, and the receive loops end. Called by the runtime when the shard's
    /// main future returns: the leftover tasks of a finished executor are not dropped in a way
    /// that notifies the peers, so without this the channels would look open forever.
    pub(crate) fn close(&self) {
        if self.inner.close.close() {
            self.inner.senders.close();
        }
    }
}

struct WaitHandler<'a, M: Send + 'static> {
    router: &'a Router<M>,
}

impl<M: Send + 'static> Future for WaitHandler<'_, M> {
    type Output = Handler<M>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Handler<M>> {
        // Clone the Rc out so the handler may call `serve` (replace itself) while running.
        if let Some(h) = self.router.inner.handler.borrow().as_ref() {
            return Poll::Ready(h.clone());
        }
        self.router
            .inner
            .handler_waiters
            .borrow_mut()
            .push(cx.waker().clone());
        Poll::Pending
    }
}

struct PendingGuard<'a, M: Send + 'static> {
    router: &'a Router<M>,
    corr: u64,
}

impl<M: Send + 'static> PendingGuard<'_, M> {
    fn poll_outcome(&self, cx: &mut Context<'_>) -> Poll<Result<M, RouterError>> {
        let mut pending = self.router.inner.pending.borrow_mut();
        let Some(p) = pending.get_mut(&self.corr) else {
            // Only the guard removes entries; seeing none means a logic error, reported as Closed
            // rather than hanging forever.
            return Poll::Ready(Err(RouterError::Closed));
        };
        match p.outcome.take() {
            Some(outcome) => {
                pending.remove(&self.corr);
                Poll::Ready(outcome)
            }
            None => {
                p.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<M: Send + 'static> Drop for PendingGuard<'_, M> {
    fn drop(&mut self) {
        self.router.inner.pending.borrow_mut().remove(&self.corr);
    }
}
