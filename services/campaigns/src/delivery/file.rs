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

#[async_trait::async_trait]
impl ChannelAdapter for FileAdapter {
    async fn send(&self, m: &Outgoing) -> Result<String, SendError> {
        let mut line = serde_json::to_vec(m)
            .map_err(|e| SendError::Rejected(format!("not encodable: {e}")))?;
        line.push(b'\n');
        let _one = self.lock.lock().await;
        let write = async {
            let mut f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await?;
            f.write_all(&line).await?;
            f.flush().await
        };
        write
            .await
            .map_err(|e| SendError::Transient(format!("{}: {e}", self.path.display())))?;
        Ok(format!("file:{}", m.message_id))
    }
}
