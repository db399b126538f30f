//! Bulk copy of rows into shards: rows are sorted into per-shard buffers in COPY text format;
//! when a buffer grows past its limit, the buffers are sent with one `COPY … FROM STDIN` per
//! shard, to all workers at once. Memory stays bounded by the limit times the number of shards,
//! whatever the input size.

use std::rc::Rc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};

use crate::metadata::{Shard, ShardedTable};
use crate::remote;
use crate::xact::{self, Access};

pub struct ShardCopy<'a> {
    table: &'a Rc<ShardedTable>,
    /// Quoted column names, comma-separated, in the order values are pushed.
    columns: &'a str,
    flush_bytes: usize,
    buffers: Vec<Vec<u8>>,
}

impl<'a> ShardCopy<'a> {
    pub fn new(table: &'a Rc<ShardedTable>, columns: &'a str, flush_bytes: usize) -> Self {
        ShardCopy {
            table,
            columns,
            flush_bytes,
            buffers: vec![Vec::new(); table.shards.len()],
        }
    }

    /// Adds a row for the shards `targets` (see `hashing::row_shards`).
    pub fn push(&mut self, targets: std::ops::Range<usize>, values: &[Option<String>]) {
        let mut full = false;
        for index in targets {
            pgshard_core::copytext::push_row(
                &mut self.buffers[index],
                values.iter().map(|v| v.as_deref().map(str::as_bytes)),
            );
            full |= self.buffers[index].len() >= self.flush_bytes;
        }
        if full {
            // Rows spread evenly, so the other buffers are nearly full too: sending every
            // buffer that is at least half full keeps all workers loading at once.
            self.flush(self.flush_bytes / 2);
        }
    }

    /// Sends whatever is still buffered.
    pub fn finish(mut self) {
        self.flush(1);
    }

    /// Sends every buffer holding at least `min_bytes`: one `COPY … FROM STDIN` per shard, a
    /// worker's shards one after another on its connection, the workers concurrently.
    fn flush(&mut self, min_bytes: usize) {
        let ready: Vec<usize> = (0..self.buffers.len())
            .filter(|&i| self.buffers[i].len() >= min_bytes.max(1))
            .collect();
        if ready.is_empty() {
            return;
        }
        let table = crate::metadata::lock_for_writing(self.table, &ready);
        crate::stats::count(ready.iter().map(|&i| table.shards[i].id), true);
        let shards = &table.shards;
        let workers = crate::execution::workers_of(ready.iter().map(|&i| &shards[i]));
        let mut connections = xact::connections(&workers, Access::Write);
        let tokens: Vec<_> = connections
            .iter()
            .map(|c| c.client.cancel_token())
            .collect();
        let mut batches: Vec<Vec<(usize, Bytes)>> = vec![Vec::new(); workers.len()];
        for &index in &ready {
            let position = workers
                .iter()
                .position(|w| w.id == shards[index].worker.id)
                .expect("a worker of the ready shards");
            let data = Bytes::from(std::mem::take(&mut self.buffers[index]));
            batches[position].push((index, data));
        }
        let columns = self.columns;
        let runs = connections.iter_mut().zip(batches).map(|(conn, batch)| {
            let begin = std::mem::take(&mut conn.begin);
            let client = &conn.client;
            async move {
                if !begin.is_empty() {
                    client.simple_query(&begin).await?;
                }
                for (index, data) in batch {
                    let statement =
                        format!("COPY {} ({columns}) FROM STDIN", shards[index].relation);
                    let sink = client.copy_in::<_, Bytes>(&statement).await?;
                    let mut sink = std::pin::pin!(sink);
                    sink.send(data).await?;
                    sink.as_mut().finish().await?;
                }
                Ok::<(), tokio_postgres::Error>(())
            }
        });
        let results = remote::wait(futures_util::future::join_all(runs), &tokens);
        for (worker, result) in workers.iter().zip(results) {
            if let Err(e) = result {
                remote::query_error(&e).raise_for(&worker.name, "copy rows to");
            }
        }
    }
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
