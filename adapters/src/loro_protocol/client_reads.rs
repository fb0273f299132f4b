//! [`ClientReads`]: a Loro client's messages, read from its socket only
//! when the socket may have something, and not before a pacing instant.

use async_tungstenite::tungstenite::{Error, Message as Ws};
use async_tungstenite::WebSocketReceiver;
use futures_lite::{AsyncRead, AsyncWrite};
use futures_util::task::AtomicWaker;
use futures_util::StreamExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

/// The client's next message (`None`: its stream ended).
pub(super) type ClientMessage = Option<Result<Ws, Error>>;

/// Whether the socket's reader woke us since we last asked it, and the task
/// to wake when it does.
#[derive(Default)]
struct Woken {
    since_asked: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.since_asked.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// The client's stream, asked for its next message only when the waker it
/// was given last fired (or a message just came: more may be buffered).
///
/// The session's loop waits for the client, the node and its tick at once,
/// and polls all three whenever any of them wakes it; every poll of the
/// stream asks the socket, so a tick or a frame from the node cost a system
/// call that found nothing (once a second for every idle client). Between
/// its own wake-ups the stream is not polled at all; the waker it holds is
/// this one's, so nothing is allocated per message.
pub(super) struct ClientReads<S> {
    stream: WebSocketReceiver<S>,
    woken: Arc<Woken>,
    /// A paced client is not read before this.
    resume: Option<smol::Timer>,
}

impl<S> ClientReads<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pub fn new(stream: WebSocketReceiver<S>) -> Self {
        let woken = Arc::new(Woken::default());
        // Asked at once: the upgrade may have brought a message already.
        woken.since_asked.store(true, Ordering::Release);
        Self {
            stream,
            woken,
            resume: None,
        }
    }

    /// The next message is not read before `at`.
    pub fn resume_at(&mut self, at: Instant) {
        self.resume = Some(smol::Timer::at(at));
    }

    /// The client's next message.
    pub async fn next(&mut self) -> ClientMessage {
        std::future::poll_fn(|cx| self.poll_message(cx)).await
    }

    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<ClientMessage> {
        if let Some(timer) = self.resume.as_mut() {
            if Pin::new(timer).poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.resume = None;
        }
        // Registered before the flag is looked at: a wake-up between the two
        // is seen by the look, one after it wakes this task.
        self.woken.task.register(cx.waker());
        if !self.woken.since_asked.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(self.woken.clone());
        let mut asked = Context::from_waker(&waker);
        match self.stream.poll_next_unpin(&mut asked) {
            Poll::Ready(message) => {
                // More may be buffered already: ask again next time.
                self.woken.since_asked.store(true, Ordering::Release);
                Poll::Ready(message)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
