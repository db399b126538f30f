//! One stream of rows out of the row streams of several shards, in the order rows arrive.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

/// Yields the items of several streams as they become ready, each with its stream's index.
///
/// A stream that has an item ready is read on until it has none, then the next one is polled:
/// rows come off a socket many at a time, so this costs about one poll per row. (futures'
/// `select_all` puts a stream back in its queue after every item, an allocation per row, which
/// showed in profiles of reads of many rows.) No stream is starved: one that never runs dry
/// is one whose rows are all ready, and it ends.
pub struct Merged<S> {
    streams: Vec<Option<S>>,
    /// The stream polled first: the one that gave the last item.
    current: usize,
    /// Streams not yet ended.
    live: usize,
}

impl<S: Stream + Unpin> Merged<S> {
    pub fn new(streams: impl IntoIterator<Item = S>) -> Self {
        let streams: Vec<Option<S>> = streams.into_iter().map(Some).collect();
        Merged {
            live: streams.len(),
            streams,
            current: 0,
        }
    }
}

impl<S: Stream + Unpin> Stream for Merged<S> {
    type Item = (usize, S::Item);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let count = this.streams.len();
        for step in 0..count {
            let index = (this.current + step) % count;
            let Some(stream) = this.streams[index].as_mut() else {
                continue;
            };
            match Pin::new(stream).poll_next(cx) {
                Poll::Ready(Some(item)) => {
                    this.current = index;
                    return Poll::Ready(Some((index, item)));
                }
                Poll::Ready(None) => {
                    this.streams[index] = None;
                    this.live -= 1;
                }
                Poll::Pending => {}
            }
        }
        if this.live == 0 {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;
    use std::task::Waker;

    /// A stream fed by the test: `Some(item)` is ready, `None` in the queue means "pending
    /// now", and the end comes when the queue is empty and `ended` is set.
    struct Scripted {
        queue: Rc<RefCell<VecDeque<Option<u32>>>>,
        ended: Rc<RefCell<bool>>,
        polls: Rc<RefCell<usize>>,
    }

    impl Stream for Scripted {
        type Item = u32;
        fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<u32>> {
            *self.polls.borrow_mut() += 1;
            match self.queue.borrow_mut().pop_front() {
                Some(Some(item)) => Poll::Ready(Some(item)),
                Some(None) => Poll::Pending,
                None if *self.ended.borrow() => Poll::Ready(None),
                None => Poll::Pending,
            }
        }
    }

    struct Handle {
        queue: Rc<RefCell<VecDeque<Option<u32>>>>,
        ended: Rc<RefCell<bool>>,
        polls: Rc<RefCell<usize>>,
    }

    fn scripted(items: &[Option<u32>], ended: bool) -> (Scripted, Handle) {
        let queue = Rc::new(RefCell::new(items.iter().copied().collect()));
        let ended = Rc::new(RefCell::new(ended));
        let polls = Rc::new(RefCell::new(0));
        let stream = Scripted {
            queue: Rc::clone(&queue),
            ended: Rc::clone(&ended),
            polls: Rc::clone(&polls),
        };
        (
            stream,
            Handle {
                queue,
                ended,
                polls,
            },
        )
    }

    fn poll<S: Stream + Unpin>(merged: &mut Merged<S>) -> Poll<Option<(usize, S::Item)>> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(merged).poll_next(&mut cx)
    }

    /// Everything ready is taken, until the stream would wait.
    fn drain<S: Stream + Unpin>(merged: &mut Merged<S>) -> Vec<(usize, S::Item)> {
        let mut items = Vec::new();
        while let Poll::Ready(Some(item)) = poll(merged) {
            items.push(item);
        }
        items
    }

    #[test]
    fn every_item_of_every_stream_once_then_the_end() {
        let (a, _) = scripted(&[Some(1), Some(2), None, Some(3)], true);
        let (b, _) = scripted(&[Some(10), None, None, Some(11)], true);
        let (c, _) = scripted(&[], true);
        let mut merged = Merged::new([a, b, c]);
        let mut seen = Vec::new();
        loop {
            match poll(&mut merged) {
                Poll::Ready(Some(item)) => seen.push(item),
                Poll::Ready(None) => break,
                Poll::Pending => {}
            }
        }
        seen.sort();
        assert_eq!(seen, vec![(0, 1), (0, 2), (0, 3), (1, 10), (1, 11)]);
        assert_eq!(poll(&mut merged), Poll::Ready(None));
    }

    #[test]
    fn a_ready_stream_is_read_on_before_the_next_is_polled() {
        let (a, ha) = scripted(&[Some(1), Some(2), Some(3)], false);
        let (b, hb) = scripted(&[Some(10)], false);
        let mut merged = Merged::new([a, b]);
        assert_eq!(drain(&mut merged), vec![(0, 1), (0, 2), (0, 3), (1, 10)]);
        // b is polled only once a ran dry (a's fourth poll); the last round, which finds
        // nothing, polls b (which gave the last item) then a.
        assert_eq!(*ha.polls.borrow(), 5);
        assert_eq!(*hb.polls.borrow(), 2);
    }

    #[test]
    fn the_stream_that_gave_the_last_item_is_polled_first() {
        let (a, ha) = scripted(&[], false);
        let (b, hb) = scripted(&[Some(10)], false);
        let mut merged = Merged::new([a, b]);
        assert_eq!(drain(&mut merged), vec![(1, 10)]);
        hb.queue.borrow_mut().push_back(Some(11));
        ha.queue.borrow_mut().push_back(Some(1));
        assert_eq!(poll(&mut merged), Poll::Ready(Some((1, 11))));
        assert_eq!(poll(&mut merged), Poll::Ready(Some((0, 1))));
    }

    #[test]
    fn pending_while_any_stream_may_still_give_items() {
        let (a, _) = scripted(&[], true);
        let (b, hb) = scripted(&[], false);
        let mut merged = Merged::new([a, b]);
        assert_eq!(poll(&mut merged), Poll::Pending);
        hb.queue.borrow_mut().push_back(Some(7));
        *hb.ended.borrow_mut() = true;
        assert_eq!(poll(&mut merged), Poll::Ready(Some((1, 7))));
        assert_eq!(poll(&mut merged), Poll::Ready(None));
    }

    #[test]
    fn no_streams_is_the_end() {
        let mut merged: Merged<Scripted> = Merged::new([]);
        assert_eq!(poll(&mut merged), Poll::Ready(None));
    }
}
