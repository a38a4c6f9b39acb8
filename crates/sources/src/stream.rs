//! Any byte stream: standard input, a pipe from `pg_dump`, a command's output.

use std::io::Read;

use bunker_engine::backup::Backup;
use bunker_engine::snapshot::Root;

use crate::{Captured, Source};

pub struct StreamSource<R> {
    reader: Option<R>,
}

impl<R: Read> StreamSource<R> {
    pub fn new(reader: R) -> Self {
        StreamSource { reader: Some(reader) }
    }
}

impl<R: Read> Source for StreamSource<R> {
    fn kind(&self) -> &'static str {
        "stream"
    }

    fn backup(&mut self, backup: &Backup<'_>) -> Result<Captured, crate::SourceError> {
        let reader = self.reader.take().expect("a stream is backed up once");
        let (content, size) = backup.save_stream(reader)?;
        Ok(Captured { root: Root::Stream { size, content }, meta: serde_json::json!({}), warnings: Vec::new() })
    }
}
