//! Bulk copy of rows into shards: rows are sorted into per-shard buffers in COPY text format,
//! and a buffer that grows past its limit is sent with one `COPY … FROM STDIN` to its shard.
//! Memory stays bounded by the limit times the number of shards, whatever the input size.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};

use crate::metadata::{Shard, ShardedTable};
use crate::remote;
use crate::xact::{self, Access};

pub struct ShardCopy<'a> {
    table: &'a ShardedTable,
    /// Quoted column names, comma-separated, in the order values are pushed.
    columns: &'a str,
    flush_bytes: usize,
    buffers: Vec<Vec<u8>>,
}

impl<'a> ShardCopy<'a> {
    pub fn new(table: &'a ShardedTable, columns: &'a str, flush_bytes: usize) -> Self {
        ShardCopy {
            table,
            columns,
            flush_bytes,
            buffers: vec![Vec::new(); table.shards.len()],
        }
    }

    /// Adds a row for the shards `targets` (see `hashing::row_shards`).
    pub fn push(&mut self, targets: std::ops::Range<usize>, values: &[Option<String>]) {
        for index in targets {
            pgshard_core::copytext::push_row(
                &mut self.buffers[index],
                values.iter().map(|v| v.as_deref().map(str::as_bytes)),
            );
            if self.buffers[index].len() >= self.flush_bytes {
                self.flush(index);
            }
        }
    }

    /// Sends whatever is still buffered.
    pub fn finish(mut self) {
        for index in 0..self.buffers.len() {
            self.flush(index);
        }
    }

    fn flush(&mut self, index: usize) {
        if self.buffers[index].is_empty() {
            return;
        }
        let data = Bytes::from(std::mem::take(&mut self.buffers[index]));
        let shard = &self.table.shards[index];
        let mut conn = xact::connection(&shard.worker, Access::Write);
        let statement = format!("COPY {} ({}) FROM STDIN", shard.relation, self.columns);
        let token = [conn.client.cancel_token()];
        let client = &conn.client;
        let begin = std::mem::take(&mut conn.begin);
        let result = remote::wait(
            async move {
                if !begin.is_empty() {
                    client.simple_query(&begin).await?;
                }
                let sink = client.copy_in::<_, Bytes>(&statement).await?;
                let mut sink = std::pin::pin!(sink);
                sink.send(data).await?;
                sink.as_mut().finish().await
            },
            &token,
        );
        if let Err(e) = result {
            remote::query_error(&e).raise_for(&shard.worker.name, "copy rows to");
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
