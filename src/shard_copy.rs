//! Bulk copy of rows into shards: rows are sorted into per-shard buffers in COPY text format,
//! and a full buffer goes to its shard with one `COPY … FROM STDIN`, so memory stays bounded
//! by the limit times the number of shards, whatever the input size.
//!
//! Reading and loading overlap. Until a first buffer fills, rows are only read: a small load
//! touches just the workers its rows go to, at the end. From then on, every worker of the table
//! loads while the coordinator reads on: the reading runs inside the wait for the workers and
//! gives the runtime a turn every few hundred rows, so the buffers sent go out while the next
//! ones fill, and the coordinator and the workers use the cores at the same time.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::metadata::{Shard, ShardedTable};
use crate::remote;
use crate::xact::{self, Access};

pub struct ShardCopy<'a> {
    table: &'a Rc<ShardedTable>,
    /// Quoted column names, comma-separated, in the order values are pushed.
    columns: &'a str,
    flush_bytes: usize,
    buffers: Vec<Vec<u8>>,
    /// The input line of each buffered row, per shard, when the caller tracks them: an error a
    /// worker raises then names the line of the COPY input, not the line of the worker's COPY.
    input_lines: Option<Vec<Vec<u64>>>,
}

/// One shard's buffered rows on their way to it.
struct Batch {
    index: usize,
    data: Bytes,
    lines: Vec<u64>,
}

/// Rows read between two turns of the runtime while the workers load.
const ROWS_PER_TURN: usize = 256;

impl<'a> ShardCopy<'a> {
    pub fn new(table: &'a Rc<ShardedTable>, columns: &'a str, flush_bytes: usize) -> Self {
        ShardCopy {
            table,
            columns,
            flush_bytes,
            buffers: vec![Vec::new(); table.shards.len()],
            input_lines: None,
        }
    }

    /// Rows will be pushed with [`push_from_line`](Self::push_from_line).
    pub fn track_input_lines(&mut self) {
        self.input_lines = Some(vec![Vec::new(); self.buffers.len()]);
    }

    /// Adds a row, from line `line` of the COPY input, for the shards `targets`.
    pub fn push_from_line<'v, I>(&mut self, targets: std::ops::Range<usize>, values: I, line: u64)
    where
        I: IntoIterator<Item = Option<&'v [u8]>> + Clone,
    {
        if let Some(lines) = self.input_lines.as_mut() {
            for index in targets.clone() {
                lines[index].push(line);
            }
        }
        self.push(targets, values);
    }

    /// Adds a row of output-function texts for the shards `targets`.
    pub fn push_texts(&mut self, targets: std::ops::Range<usize>, values: &[Option<String>]) {
        self.push(
            targets,
            values.iter().map(|v| v.as_deref().map(str::as_bytes)),
        );
    }

    /// Adds a row for the shards `targets` (see `hashing::row_shards`).
    pub fn push<'v, I>(&mut self, targets: std::ops::Range<usize>, values: I)
    where
        I: IntoIterator<Item = Option<&'v [u8]>> + Clone,
    {
        for index in targets {
            pgshard_core::copytext::push_row(&mut self.buffers[index], values.clone());
        }
    }

    /// Loads every row `produce` pushes into the shards; `produce` adds one row (or none) per
    /// call and returns false at the end of its input. Errors are raised.
    pub fn load(mut self, mut produce: impl FnMut(&mut Self) -> bool) {
        loop {
            pgrx::check_for_interrupts!();
            if !produce(&mut self) {
                self.send(None);
                return;
            }
            if self.buffers.iter().any(|b| b.len() >= self.flush_bytes) {
                break;
            }
        }
        self.send(Some(&mut produce));
    }

    /// The buffers holding a batch (with `more` rows to come) or anything (at the end), taken
    /// out; with `more`, each is replaced by a buffer large enough for a batch: a sent one from
    /// `spare` if there is one, else a new one. Growing a buffer row by row would copy it over
    /// and over, and a new buffer of a megabyte is fresh memory whose every page the kernel
    /// must fault in and zero (a sixth of the coordinator's time in an encrypted COPY before
    /// buffers were reused).
    fn take_batches(&mut self, more: bool, spare: &RefCell<Vec<Vec<u8>>>) -> Vec<Batch> {
        let mut batches = Vec::new();
        for index in 0..self.buffers.len() {
            let batch_bytes = if more { self.flush_bytes.max(1) } else { 1 };
            if self.buffers[index].len() >= batch_bytes {
                let lines = match self.input_lines.as_mut() {
                    Some(lines) => std::mem::take(&mut lines[index]),
                    None => Vec::new(),
                };
                let replacement = if more {
                    // Room for the rows that cross the limit before it is checked.
                    let capacity = batch_bytes + batch_bytes / 4;
                    let mut buffer = spare.borrow_mut().pop().unwrap_or_default();
                    buffer.reserve(capacity);
                    buffer
                } else {
                    Vec::new()
                };
                let full = std::mem::replace(&mut self.buffers[index], replacement);
                let data = Bytes::from(full);
                batches.push(Batch { index, data, lines });
            }
        }
        batches
    }

    /// Sends what is buffered and, with `produce`, every further row it pushes: one
    /// `COPY … FROM STDIN` per batch, a worker's batches one after another on its connection,
    /// the workers concurrently, reading overlapping loading (see the module comment).
    fn send(&mut self, mut produce: Option<&mut dyn FnMut(&mut Self) -> bool>) {
        let indexes: Vec<usize> = if produce.is_some() {
            (0..self.buffers.len()).collect()
        } else {
            (0..self.buffers.len())
                .filter(|&i| !self.buffers[i].is_empty())
                .collect()
        };
        if indexes.is_empty() {
            return;
        }
        let table = crate::metadata::lock_for_writing(self.table, &indexes);
        let shards = &table.shards;
        let workers = crate::execution::workers_of(indexes.iter().map(|&i| &shards[i]));
        let mut connections = xact::connections(&workers, Access::Write);
        let tokens: Vec<_> = connections
            .iter()
            .map(|c| c.client.cancel_token())
            .collect();
        // Room for two rounds of every shard's batch per worker: reading never waits for a
        // worker that keeps up.
        let room = 2 * shards.len().div_ceil(workers.len()).max(1);
        let (senders, receivers): (Vec<_>, Vec<_>) =
            workers.iter().map(|_| mpsc::channel::<Batch>(room)).unzip();
        let columns = self.columns;
        // Buffers whose batch has been sent, for the feed to fill again.
        let spare_buffers = RefCell::new(Vec::new());
        let spare = &spare_buffers;
        let loads = connections
            .iter_mut()
            .zip(receivers)
            .map(|(conn, mut batches)| {
                let begin = std::mem::take(&mut conn.begin);
                let client = &conn.client;
                async move {
                    if !begin.is_empty() {
                        client.simple_query(&begin).await.map_err(|e| (e, None))?;
                    }
                    while let Some(batch) = batches.recv().await {
                        let statement = format!(
                            "COPY {} ({columns}) FROM STDIN",
                            shards[batch.index].relation
                        );
                        let copied = async {
                            let sink = client.copy_in::<_, Bytes>(&statement).await?;
                            let mut sink = std::pin::pin!(sink);
                            sink.send(batch.data.clone()).await?;
                            sink.as_mut().finish().await
                        };
                        copied.await.map_err(|e| (e, Some(batch.lines)))?;
                        // The connection has written the batch out and let go of it by now.
                        if let Ok(mut sent) = batch.data.try_into_mut() {
                            sent.clear();
                            spare.borrow_mut().push(Vec::from(sent));
                        }
                    }
                    Ok::<(), (tokio_postgres::Error, Option<Vec<u64>>)>(())
                }
            });
        let worker_of = |index: usize| {
            workers
                .iter()
                .position(|w| w.id == shards[index].worker.id)
                .expect("a worker of the table's shards")
        };
        let feed = async move {
            loop {
                let more = match produce.as_mut() {
                    Some(produce) => (0..ROWS_PER_TURN).all(|_| produce(self)),
                    None => false,
                };
                let batches = self.take_batches(more, spare);
                crate::stats::count(batches.iter().map(|b| shards[b.index].id), true);
                for batch in batches {
                    // A worker that failed has stopped receiving; its error is what is raised.
                    if senders[worker_of(batch.index)].send(batch).await.is_err() {
                        return;
                    }
                }
                if !more {
                    return;
                }
                tokio::task::yield_now().await;
            }
        };
        let (_, results) = remote::wait(
            futures_util::future::join(feed, futures_util::future::join_all(loads)),
            &tokens,
        );
        for (worker, result) in workers.iter().zip(results) {
            if let Err((e, lines)) = result {
                raise_load_error(&e, lines.as_deref(), &worker.name);
            }
        }
    }
}

/// Raises a worker's error while loading a batch, naming the row's line in the COPY input
/// when the batch's input lines are known.
fn raise_load_error(e: &tokio_postgres::Error, lines: Option<&[u64]>, worker: &str) -> ! {
    let mut error = remote::query_error(e);
    let worker_line = e
        .as_db_error()
        .and_then(|db| db.where_())
        .and_then(pgshard_core::copytext::context_line);
    let input_line = worker_line
        .zip(lines)
        .and_then(|(line, lines)| lines.get(usize::try_from(line).ok()?.checked_sub(1)?));
    if let Some(line) = input_line {
        let at = format!("The row is on line {line} of the COPY input.");
        error.detail = Some(match error.detail {
            Some(detail) => format!("{detail}\n{at}"),
            None => at,
        });
    }
    error.raise_for(worker, "copy rows to")
}

/// Streams every row of a reference table's copy `from` into its new copy `to` (COPY out of
/// one worker into the other, chunk by chunk), inside the transaction's remote transactions.
pub fn copy_between(from: &Shard, to: &Shard, columns: &str) {
    let mut source = xact::connection(&from.worker, Access::Read);
    let mut target = xact::connection(&to.worker, Access::Write);
    let tokens = [source.client.cancel_token(), target.client.cancel_token()];
    let (source_begin, target_begin) = (
        std::mem::take(&mut source.begin),
        std::mem::take(&mut target.begin),
    );
    let copy_out = format!("COPY {} ({columns}) TO STDOUT", from.relation);
    let copy_in = format!("COPY {} ({columns}) FROM STDIN", to.relation);
    let (reader, writer) = (&source.client, &target.client);
    // Errors say which worker failed.
    let result = remote::wait(
        async move {
            let on = |worker: &'static str| move |e| (worker, e);
            if !source_begin.is_empty() {
                reader
                    .simple_query(&source_begin)
                    .await
                    .map_err(on("from"))?;
            }
            if !target_begin.is_empty() {
                writer.simple_query(&target_begin).await.map_err(on("to"))?;
            }
            let rows = reader.copy_out(&copy_out).await.map_err(on("from"))?;
            let sink = writer
                .copy_in::<_, Bytes>(&copy_in)
                .await
                .map_err(on("to"))?;
            let mut rows = std::pin::pin!(rows);
            let mut sink = std::pin::pin!(sink);
            while let Some(chunk) = rows.next().await {
                sink.send(chunk.map_err(on("from"))?)
                    .await
                    .map_err(on("to"))?;
            }
            sink.as_mut().finish().await.map_err(on("to"))
        },
        &tokens,
    );
    match result {
        Ok(_) => {}
        Err(("from", e)) => remote::query_error(&e).raise_for(&from.worker.name, "copy rows from"),
        Err((_, e)) => remote::query_error(&e).raise_for(&to.worker.name, "copy rows to"),
    }
}
