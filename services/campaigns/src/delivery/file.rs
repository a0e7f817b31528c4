//! The file adapter of `loyalty dev`: every message appended to a file as one JSON line,
//! so a developer sees what would have been sent.
use std::path::PathBuf;

use tokio::{io::AsyncWriteExt, sync::Mutex};

use super::{ChannelAdapter, Outgoing, SendError};

pub struct FileAdapter {
    path: PathBuf,
    /// One writer at a time, so lines never interleave.
    lock: Mutex<()>,
}

impl FileAdapter {
    pub fn new(path: PathBuf) -> Self {
        FileAdapter {
            path,
            lock: Mutex::new(()),
        }
    }
}

impl FileAdapter {
    /// Appends `lines` in one write.
    async fn append(&self, lines: &[u8]) -> Result<(), SendError> {
        let _one = self.lock.lock().await;
        let write = async {
            let mut f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await?;
            f.write_all(lines).await?;
            f.flush().await
        };
        write
            .await
            .map_err(|e| SendError::Transient(format!("{}: {e}", self.path.display())))
    }
}

fn provider_id(m: &Outgoing) -> String {
    format!("file:{}", m.message_id)
}

#[async_trait::async_trait]
impl ChannelAdapter for FileAdapter {
    async fn send(&self, m: &Outgoing) -> Result<String, SendError> {
        let mut line = serde_json::to_vec(m)
            .map_err(|e| SendError::Rejected(format!("not encodable: {e}")))?;
        line.push(b'\n');
        self.append(&line).await?;
        Ok(provider_id(m))
    }

    /// The whole batch in one write: a queue worker's batch costs one open and one append.
    async fn send_batch(
        &self,
        batch: &[Outgoing],
        _concurrency: usize,
    ) -> Vec<Result<String, SendError>> {
        let mut lines = Vec::with_capacity(batch.len() * 512);
        let mut out: Vec<Result<String, SendError>> = Vec::with_capacity(batch.len());
        for m in batch {
            match serde_json::to_writer(&mut lines, m) {
                Ok(()) => {
                    lines.push(b'\n');
                    out.push(Ok(provider_id(m)));
                }
                Err(e) => out.push(Err(SendError::Rejected(format!("not encodable: {e}")))),
            }
        }
        if let Err(e) = self.append(&lines).await {
            return batch.iter().map(|_| Err(e.clone())).collect();
        }
        out
    }
}
