//! The end of the content: the finished message handed to the driver.

use super::*;

impl Session {
    pub(super) fn finish_message(&mut self, data: Vec<u8>, chunking: bool) -> Step {
        let tx = self
            .tx
            .as_ref()
            .expect("transaction present at end of data");
        let (helo, esmtp) = self.helo.clone().unwrap_or_default();
        self.pending = Some(Pending::Message);
        Step::Message(Box::new(Transaction {
            helo,
            esmtp,
            sender: tx.sender.clone(),
            params: tx.params.clone(),
            rcpts: tx.rcpts.clone(),
            data,
            chunking,
            tls: self.tls,
            auth: self.auth.clone(),
        }))
    }
}
