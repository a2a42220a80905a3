//! The observation channel: bounded by observations, carrying them in batches.
//!
//! An OTLP export of a hundred spans is one message here, not a hundred: the
//! sender takes room for all of them at once and the engine takes them off
//! as one `Vec`, so a span costs no channel operation of its own (a send per
//! span was ~3 % of flowscope's CPU at 10k spans/s of tiny spans,
//! docs/benchmarks.md). The bound is still counted in observations, as
//! before: room is taken when a batch is sent and given back when the
//! receiver takes it off, so at most `capacity` observations wait here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use flowscope_model::Observation;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{Notify, Semaphore, mpsc};

/// One message on the channel.
#[derive(Debug)]
enum Item {
    One(Observation),
    Many(Vec<Observation>),
}

impl Item {
    fn len(&self) -> usize {
        match self {
            Item::One(_) => 1,
            Item::Many(batch) => batch.len(),
        }
    }
}

/// Why the channel did not take observations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No room now.
    Full,
    /// The receiver is gone.
    Closed,
    /// More than the channel ever holds at once.
    TooMany { capacity: usize },
}

#[derive(Debug)]
struct Room {
    /// One permit per observation the channel may still take.
    free: Semaphore,
    capacity: usize,
    /// How many waiting observations [`ObservationRx::filled`] waits for (0: none).
    wanted: AtomicUsize,
    /// When a send wakes [`ObservationRx::filled_or_due`] however few
    /// observations wait: microseconds after `start` (`u64::MAX`: never).
    due_us: AtomicU64,
    start: Instant,
    /// Told when a send makes `wanted` observations wait, or comes when due.
    filled: Notify,
}

impl Room {
    fn waiting(&self) -> usize {
        self.capacity - self.free.available_permits()
    }

    /// Whether a due time (`u64::MAX`: never) has come.
    fn is_due(&self, due_us: u64) -> bool {
        due_us != u64::MAX && self.micros(Instant::now()) >= due_us
    }

    /// Microseconds from `start` to `at` (0 for earlier).
    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.start).as_micros()).unwrap_or(u64::MAX)
    }
}

/// The sending side; cheap to clone.
#[derive(Debug, Clone)]
pub struct ObservationTx {
    items: mpsc::UnboundedSender<Item>,
    room: Arc<Room>,
}

/// The receiving side.
#[derive(Debug)]
pub struct ObservationRx {
    items: mpsc::UnboundedReceiver<Item>,
    room: Arc<Room>,
    /// The rest of a batch taken off by [`ObservationRx::recv`], one at a time.
    rest: std::vec::IntoIter<Observation>,
}

/// A channel holding at most `capacity` observations (at least 1).
pub fn channel(capacity: usize) -> (ObservationTx, ObservationRx) {
    let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS);
    let room = Arc::new(Room {
        free: Semaphore::new(capacity),
        capacity,
        wanted: AtomicUsize::new(0),
        due_us: AtomicU64::new(u64::MAX),
        start: Instant::now(),
        filled: Notify::new(),
    });
    let (tx, rx) = mpsc::unbounded_channel();
    (
        ObservationTx {
            items: tx,
            room: Arc::clone(&room),
        },
        ObservationRx {
            items: rx,
            room,
            rest: Vec::new().into_iter(),
        },
    )
}

impl ObservationTx {
    /// Waits for room for one observation, then sends it.
    pub(crate) async fn send(&self, observation: Observation) -> Result<(), Refused> {
        let permit = self
            .room
            .free
            .acquire()
            .await
            .map_err(|_| Refused::Closed)?;
        permit.forget();
        self.put(Item::One(observation))
    }

    /// Sends one observation if there is room now.
    pub(crate) fn try_send(&self, observation: Observation) -> Result<(), Refused> {
        self.take_room(1)?;
        self.put(Item::One(observation))
    }

    /// Sends all of `batch` if there is room for all of it now, else none.
    pub(crate) fn try_send_batch(&self, batch: Vec<Observation>) -> Result<(), Refused> {
        if batch.is_empty() {
            return Ok(());
        }
        self.take_room(batch.len())?;
        self.put(Item::Many(batch))
    }

    fn take_room(&self, n: usize) -> Result<(), Refused> {
        if n > self.room.capacity {
            return Err(Refused::TooMany {
                capacity: self.room.capacity,
            });
        }
        let n = u32::try_from(n).map_err(|_| Refused::TooMany {
            capacity: self.room.capacity,
        })?;
        match self.room.free.try_acquire_many(n) {
            Ok(permit) => {
                permit.forget();
                Ok(())
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => Err(Refused::Full),
            Err(tokio::sync::TryAcquireError::Closed) => Err(Refused::Closed),
        }
    }

    /// Puts an item whose room is taken; gives the room back if the receiver is gone.
    fn put(&self, item: Item) -> Result<(), Refused> {
        self.items.send(item).map_err(|err| {
            self.room.free.add_permits(err.0.len());
            Refused::Closed
        })?;
        let wanted = self.room.wanted.load(Ordering::Acquire);
        if wanted != 0
            && (self.room.waiting() >= wanted
                || self.room.is_due(self.room.due_us.load(Ordering::Acquire)))
        {
            self.room.filled.notify_one();
        }
        Ok(())
    }
}

impl ObservationRx {
    /// The next observation; `None` once every sender is gone and nothing is left.
    pub async fn recv(&mut self) -> Option<Observation> {
        if let Some(observation) = self.rest.next() {
            return Some(observation);
        }
        let item = self.items.recv().await?;
        Some(self.unpack(item))
    }

    /// Moves the observations waiting now into `buffer` (whole batches)
    /// until it holds `limit` or more, or none are left; how many were
    /// moved, or `Err` once every sender is gone and nothing is left.
    pub fn try_recv_many(
        &mut self,
        buffer: &mut Vec<Observation>,
        limit: usize,
    ) -> Result<usize, TryRecvError> {
        let before = buffer.len();
        buffer.extend(self.rest.by_ref());
        while buffer.len() < limit {
            match self.items.try_recv() {
                Ok(item) => self.append(buffer, item),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) if buffer.len() == before => {
                    return Err(TryRecvError::Disconnected);
                }
                Err(TryRecvError::Disconnected) => break,
            }
        }
        Ok(buffer.len() - before)
    }

    /// Waits until at least `n` observations wait, without being woken by
    /// each send before that. Does not notice the senders going: look with
    /// [`ObservationRx::try_recv_many`] now and then. Cancel-safe.
    pub async fn filled(&self, n: usize) {
        self.wait(n, u64::MAX).await;
    }

    /// Waits like [`ObservationRx::filled`], or until a send comes at or
    /// after `due` (returns at once when `due` has passed): work due then
    /// is done on the wake-up a sender causes anyway, not on one of its
    /// own. It does not wake by itself once due: the caller also sets a
    /// timer (a little later, for when no sends come). Cancel-safe.
    pub async fn filled_or_due(&self, n: usize, due: Instant) {
        self.wait(n, self.room.micros(due)).await;
    }

    async fn wait(&self, n: usize, due_us: u64) {
        let n = n.clamp(1, self.room.capacity);
        loop {
            let notified = self.room.filled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.room.due_us.store(due_us, Ordering::Release);
            self.room.wanted.store(n, Ordering::Release);
            if self.len() >= n || self.room.is_due(due_us) {
                self.room.wanted.store(0, Ordering::Release);
                return;
            }
            notified.await;
        }
    }

    /// Observations waiting: on the channel, and the rest of a batch
    /// [`ObservationRx::recv`] is handing out.
    pub fn len(&self) -> usize {
        self.room.waiting() + self.rest.len()
    }

    /// Whether no observation is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn unpack(&mut self, item: Item) -> Observation {
        self.room.free.add_permits(item.len());
        match item {
            Item::One(observation) => observation,
            Item::Many(batch) => {
                let mut batch = batch.into_iter();
                let first = batch.next().expect("batches are never empty");
                self.rest = batch;
                first
            }
        }
    }

    fn append(&self, buffer: &mut Vec<Observation>, item: Item) {
        self.room.free.add_permits(item.len());
        match item {
            Item::One(observation) => buffer.push(observation),
            // Its own allocation taken over when the buffer has less room
            // (a first take), appended into the buffer's room otherwise.
            Item::Many(batch) if buffer.is_empty() && buffer.capacity() < batch.len() => {
                *buffer = batch;
            }
            Item::Many(mut batch) => buffer.append(&mut batch),
        }
    }
}

impl Drop for ObservationRx {
    /// Senders waiting for room are told the channel is closed.
    fn drop(&mut self) {
        self.room.free.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::tests::sample;

    fn queue_of(observation: &Observation) -> &str {
        match observation {
            Observation::QueueSample(sample) => &sample.queue,
            other => panic!("not a sample: {other:?}"),
        }
    }

    #[tokio::test]
    async fn observations_arrive_in_order_one_at_a_time_or_many() {
        let (tx, mut rx) = channel(10);
        tx.try_send(sample("a")).unwrap();
        tx.try_send_batch(vec![sample("b"), sample("c")]).unwrap();
        tx.send(sample("d")).await.unwrap();
        assert_eq!(queue_of(&rx.recv().await.unwrap()), "a");
        assert_eq!(queue_of(&rx.recv().await.unwrap()), "b");
        tx.try_send_batch(vec![sample("e"), sample("f")]).unwrap();
        let mut buffer = Vec::new();
        assert_eq!(rx.try_recv_many(&mut buffer, 100), Ok(4));
        let queues: Vec<&str> = buffer.iter().map(queue_of).collect();
        assert_eq!(queues, ["c", "d", "e", "f"]);
        assert_eq!(rx.try_recv_many(&mut buffer, 100), Ok(0));
    }

    #[tokio::test]
    async fn a_buffer_taken_into_again_keeps_its_room_and_gets_only_the_new_batches() {
        let (tx, mut rx) = channel(100);
        let mut buffer = Vec::new();
        tx.try_send_batch((0..10).map(|i| sample(&format!("a{i}"))).collect())
            .unwrap();
        tx.try_send_batch((0..10).map(|i| sample(&format!("b{i}"))).collect())
            .unwrap();
        assert_eq!(rx.try_recv_many(&mut buffer, 100), Ok(20));
        let room = buffer.capacity();
        buffer.clear();
        // Smaller batches than the room the buffer has: appended into it.
        tx.try_send_batch(vec![sample("c0"), sample("c1")]).unwrap();
        tx.try_send(sample("d")).unwrap();
        assert_eq!(rx.try_recv_many(&mut buffer, 100), Ok(3));
        let queues: Vec<&str> = buffer.iter().map(queue_of).collect();
        assert_eq!(queues, ["c0", "c1", "d"]);
        assert_eq!(buffer.capacity(), room, "the buffer was replaced");
        // The room taken is given back: the channel holds 100 again.
        buffer.clear();
        tx.try_send_batch((0..100).map(|i| sample(&format!("e{i}"))).collect())
            .unwrap();
        assert_eq!(rx.try_recv_many(&mut buffer, 1000), Ok(100));
        assert_eq!(queue_of(&buffer[99]), "e99");
    }

    #[tokio::test]
    async fn room_is_counted_in_observations_and_given_back_when_taken() {
        let (tx, mut rx) = channel(3);
        tx.try_send_batch(vec![sample("a"), sample("b")]).unwrap();
        assert_eq!(rx.len(), 2);
        assert_eq!(
            tx.try_send_batch(vec![sample("c"), sample("d")]),
            Err(Refused::Full)
        );
        tx.try_send(sample("c")).unwrap();
        assert_eq!(tx.try_send(sample("d")), Err(Refused::Full));
        let mut buffer = Vec::new();
        assert_eq!(
            rx.try_recv_many(&mut buffer, 1),
            Ok(2),
            "a batch is taken whole"
        );
        assert_eq!(rx.len(), 1);
        tx.try_send_batch(vec![sample("d"), sample("e")]).unwrap();
        assert_eq!(
            tx.try_send_batch(vec![sample("x"); 4]),
            Err(Refused::TooMany { capacity: 3 })
        );
    }

    #[tokio::test]
    async fn a_sender_waiting_for_room_goes_on_when_room_is_made_and_stops_when_the_receiver_goes()
    {
        let (tx, mut rx) = channel(1);
        tx.try_send(sample("a")).unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(sample("b")).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert_eq!(queue_of(&rx.recv().await.unwrap()), "a");
        waiting.await.unwrap().unwrap();
        assert_eq!(queue_of(&rx.recv().await.unwrap()), "b");

        tx.try_send(sample("c")).unwrap();
        let stuck = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(sample("d")).await }
        });
        tokio::task::yield_now().await;
        drop(rx);
        assert_eq!(stuck.await.unwrap(), Err(Refused::Closed));
        assert_eq!(tx.try_send(sample("e")), Err(Refused::Closed));
    }

    #[tokio::test]
    async fn filled_waits_for_enough_observations_then_they_are_taken_at_once() {
        let (tx, mut rx) = channel(100);
        tx.try_send_batch(vec![sample("a"), sample("b")]).unwrap();
        {
            let filled = rx.filled(5);
            tokio::pin!(filled);
            assert!(
                futures_poll(filled.as_mut()).is_none(),
                "2 of 5 is not filled"
            );
            tx.try_send(sample("c")).unwrap();
            assert!(
                futures_poll(filled.as_mut()).is_none(),
                "3 of 5 is not filled"
            );
            tx.try_send_batch(vec![sample("d"), sample("e")]).unwrap();
            tokio::time::timeout(std::time::Duration::from_secs(5), filled)
                .await
                .expect("5 of 5 wakes the receiver");
        }
        let mut buffer = Vec::new();
        assert_eq!(rx.try_recv_many(&mut buffer, 100), Ok(5));
        assert_eq!(rx.try_recv_many(&mut buffer, 100), Ok(0));
        drop(tx);
        assert_eq!(
            rx.try_recv_many(&mut buffer, 100),
            Err(TryRecvError::Disconnected)
        );
    }

    #[tokio::test]
    async fn once_due_any_send_wakes_the_receiver_and_none_before() {
        let (tx, rx) = channel(100);
        let now = Instant::now();
        // Due later: a send does not wake it (2 of 5).
        {
            let waiting = rx.filled_or_due(5, now + std::time::Duration::from_secs(3600));
            tokio::pin!(waiting);
            assert!(futures_poll(waiting.as_mut()).is_none());
            tx.try_send_batch(vec![sample("a"), sample("b")]).unwrap();
            assert!(futures_poll(waiting.as_mut()).is_none(), "not due yet");
        }
        // Due now, nothing sent since: returns at once.
        let due = Instant::now();
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.filled_or_due(5, due))
            .await
            .expect("due already");
        // Due in a moment: waits for a send after it, however small.
        let due = Instant::now() + std::time::Duration::from_millis(30);
        let waiting = rx.filled_or_due(5, due);
        tokio::pin!(waiting);
        assert!(futures_poll(waiting.as_mut()).is_none());
        std::thread::sleep(std::time::Duration::from_millis(40));
        assert!(
            futures_poll(waiting.as_mut()).is_none(),
            "due, but no send yet: it does not wake by itself"
        );
        tx.try_send(sample("c")).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("a send once due wakes it");
        // The plain wait is back to counting only.
        let filled = rx.filled(5);
        tokio::pin!(filled);
        assert!(futures_poll(filled.as_mut()).is_none());
        tx.try_send(sample("d")).unwrap();
        assert!(futures_poll(filled.as_mut()).is_none(), "4 of 5");
    }

    /// Polls a future once.
    fn futures_poll<F: std::future::Future + Unpin>(future: F) -> Option<F::Output> {
        let mut future = future;
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match std::pin::Pin::new(&mut future).poll(&mut cx) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        }
    }

    #[tokio::test]
    async fn the_receiver_sees_the_end_once_every_sender_is_gone_and_all_is_taken() {
        let (tx, mut rx) = channel(10);
        tx.try_send_batch(vec![sample("a"), sample("b")]).unwrap();
        drop(tx);
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_none());
        let mut buffer = Vec::new();
        assert_eq!(
            rx.try_recv_many(&mut buffer, 10),
            Err(TryRecvError::Disconnected)
        );
    }
}
