//! Subscription streams polled only when woken.
//!
//! async-graphql's graphql-transport-ws connection keeps its operations' streams in a map
//! and, for every message it sends, polls them from the first until one is ready. When one
//! event makes K subscriptions of a connection ready at once, sending their K frames polls
//! about K²/2 streams that have nothing: with 100 subscriptions a connection, 5,000 polls,
//! each through the subscription's stream, its token deadline and its broadcast receiver
//! (a lock). [`Woken`] schema wraps every subscription stream so that a poll of a stream
//! that was not woken since it last said `Pending` answers at once, from one atomic flag;
//! the stream underneath is polled only when its own waker fired (the trick of
//! `FuturesUnordered`). Queries and mutations run as before.
//!
//! Measured with `cargo bench --bench fanout` (10,000 subscriptions, two runs each way):
//! `liveSales` took 210–220 ms of server CPU for one sale with it and 280–330 ms without
//! (p99 151–165 ms against 190–226 ms); `orderStatus`, whose cost is elsewhere (each stream
//! also completes), showed no difference beyond the runs' spread.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use async_graphql::{Data, Executor, Request, Response};
use futures_util::stream::BoxStream;
use futures_util::task::AtomicWaker;
use futures_util::{Stream, StreamExt};

/// An executor whose subscription streams are polled only when woken.
#[derive(Clone)]
pub struct Woken<E>(pub E);

impl<E: Executor> Executor for Woken<E> {
    fn execute(&self, request: Request) -> impl Future<Output = Response> + Send {
        self.0.execute(request)
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        WokenStream::new(self.0.execute_stream(request, session_data)).boxed()
    }
}

/// Whether the stream underneath was woken, and whom to tell when it is.
struct Flag {
    woken: AtomicBool,
    outer: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.outer.wake();
    }
}

/// A stream polled only after its own waker fired (or when it has not said `Pending` yet).
pub struct WokenStream<S> {
    inner: S,
    flag: Arc<Flag>,
    waker: Waker,
}

impl<S> WokenStream<S> {
    /// Wraps `inner`; its first poll goes through.
    pub fn new(inner: S) -> Self {
        let flag = Arc::new(Flag {
            woken: AtomicBool::new(true),
            outer: AtomicWaker::new(),
        });
        WokenStream {
            inner,
            waker: Waker::from(flag.clone()),
            flag,
        }
    }
}

impl<S: Stream + Unpin> Stream for WokenStream<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        // Registered before the flag is read: a wake in between is not lost.
        self.flag.outer.register(cx.waker());
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let this = &mut *self;
        let mut inner_cx = Context::from_waker(&this.waker);
        match this.inner.poll_next_unpin(&mut inner_cx) {
            Poll::Pending => Poll::Pending,
            ready => {
                // It may have more at once: poll it again next time.
                this.flag.woken.store(true, Ordering::Release);
                ready
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A stream counting its polls, fed through a channel.
    struct Counted {
        rx: tokio::sync::mpsc::UnboundedReceiver<u32>,
        polls: Arc<AtomicUsize>,
    }

    impl Stream for Counted {
        type Item = u32;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u32>> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            self.rx.poll_recv(cx)
        }
    }

    #[tokio::test]
    async fn a_stream_is_polled_again_only_after_its_waker_fired_and_nothing_is_lost() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let polls = Arc::new(AtomicUsize::new(0));
        let mut stream = WokenStream::new(Counted {
            rx,
            polls: polls.clone(),
        });
        let noop = Waker::noop();
        let mut cx = Context::from_waker(noop);
        assert!(stream.poll_next_unpin(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::Relaxed), 1);
        // Not woken: answered without touching the stream underneath.
        for _ in 0..10 {
            assert!(stream.poll_next_unpin(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::Relaxed), 1);
        // Two items at once: both come out, then it waits again.
        tx.send(1).expect("send");
        tx.send(2).expect("send");
        assert_eq!(stream.poll_next_unpin(&mut cx), Poll::Ready(Some(1)));
        assert_eq!(stream.poll_next_unpin(&mut cx), Poll::Ready(Some(2)));
        assert!(stream.poll_next_unpin(&mut cx).is_pending());
        let settled = polls.load(Ordering::Relaxed);
        assert!(stream.poll_next_unpin(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::Relaxed), settled);
        // The end of the stream comes through too.
        drop(tx);
        assert_eq!(stream.poll_next_unpin(&mut cx), Poll::Ready(None));
        // Through a real task: every item arrives.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let stream = WokenStream::new(Counted {
            rx,
            polls: Arc::new(AtomicUsize::new(0)),
        });
        let reader = tokio::spawn(stream.collect::<Vec<u32>>());
        for i in 0..100 {
            tx.send(i).expect("send");
            tokio::task::yield_now().await;
        }
        drop(tx);
        assert_eq!(reader.await.expect("reader"), (0..100).collect::<Vec<_>>());
    }
}
