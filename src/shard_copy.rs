//! Bulk copy of rows into shards: rows are sorted into per-shard buffers in COPY text format,
//! and a buffer that grows past its limit is sent with one `COPY … FROM STDIN` to its shard.
//! Memory stays bounded by the limit times the number of shards, whatever the input size.

use bytes::Bytes;
use futures_util::SinkExt;

use crate::metadata::ShardedTable;
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

    /// Adds a row whose shard key hashes to `hash`.
    pub fn push(&mut self, hash: i64, values: &[Option<String>]) {
        let index = self.table.shard_index_for_hash(hash);
        pgshard_core::copytext::push_row(
            &mut self.buffers[index],
            values.iter().map(|v| v.as_deref().map(str::as_bytes)),
        );
        if self.buffers[index].len() >= self.flush_bytes {
            self.flush(index);
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
