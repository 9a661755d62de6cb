//! The `message` resource: headers and body of the message a hook sees,
//! read on demand.

use crate::plugin::bindings::mailgate::plugin::types as wit;
use crate::plugin::state::State;
use std::sync::Arc;
use wasmtime::component::Resource;

/// The message behind the `message` resource.
pub struct MessageData {
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Arc<Vec<u8>>,
    pub(super) body_start: usize,
}

impl MessageData {
    /// Parse the header block of `data` (CRLF lines).
    pub fn new(data: Arc<Vec<u8>>) -> MessageData {
        let end = memchr::memmem::find(&data, b"\r\n\r\n").map_or(data.len(), |i| i + 4);
        let head = String::from_utf8_lossy(&data[..end.min(data.len())]);
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.split("\r\n") {
            if line.is_empty() {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
            } else if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        MessageData {
            headers,
            body_start: end.min(data.len()),
            body: data,
        }
    }
}

impl wit::HostMessage for State {
    async fn headers(&mut self, m: Resource<MessageData>) -> Vec<(String, String)> {
        self.table
            .get(&m)
            .map(|m| m.headers.clone())
            .unwrap_or_default()
    }
    async fn header(&mut self, m: Resource<MessageData>, name: String) -> Vec<String> {
        self.table
            .get(&m)
            .map(|m| {
                m.headers
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case(&name))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
    async fn body_size(&mut self, m: Resource<MessageData>) -> u64 {
        self.table
            .get(&m)
            .map_or(0, |m| (m.body.len() - m.body_start) as u64)
    }
    async fn read_body(&mut self, m: Resource<MessageData>, offset: u64, len: u32) -> Vec<u8> {
        let Ok(m) = self.table.get(&m) else {
            return vec![];
        };
        let body = &m.body[m.body_start..];
        let start = (offset as usize).min(body.len());
        let end = start.saturating_add(len as usize).min(body.len());
        body[start..end].to_vec()
    }
    async fn size(&mut self, m: Resource<MessageData>) -> u64 {
        self.table.get(&m).map_or(0, |m| m.body.len() as u64)
    }
    async fn read_raw(&mut self, m: Resource<MessageData>, offset: u64, len: u32) -> Vec<u8> {
        let Ok(m) = self.table.get(&m) else {
            return vec![];
        };
        let start = (offset as usize).min(m.body.len());
        let end = start.saturating_add(len as usize).min(m.body.len());
        m.body[start..end].to_vec()
    }
    async fn drop(&mut self, m: Resource<MessageData>) -> wasmtime::Result<()> {
        self.table.delete(m)?;
        Ok(())
    }
}
