//! The EHLO reply: the extensions offered to this client.

use super::*;

impl Session {
    pub(super) fn ehlo_reply(&self, name: &str) -> Reply {
        let mut lines = vec![format!(
            "{} Hello {} {}",
            self.cfg.hostname, name, self.cfg.client_display
        )];
        if self.cfg.max_message_size != 0 {
            lines.push(format!("SIZE {}", self.cfg.max_message_size));
        } else {
            lines.push("SIZE".into());
        }
        lines.push("8BITMIME".into());
        lines.push("PIPELINING".into());
        if self.cfg.pipe_connect {
            lines.push("PIPECONNECT".into());
        }
        lines.push("CHUNKING".into());
        lines.push("SMTPUTF8".into());
        lines.push("DSN".into());
        lines.push("ENHANCEDSTATUSCODES".into());
        if self.cfg.starttls && !self.tls {
            lines.push("STARTTLS".into());
        }
        // RFC 8689 §4.1: only over TLS.
        if self.cfg.requiretls && self.tls {
            lines.push("REQUIRETLS".into());
        }
        if self.auth_offered()
            && let Some(a) = &self.cfg.auth
        {
            let names: Vec<&str> = a.mechanisms.iter().map(|m| m.name()).collect();
            lines.push(format!("AUTH {}", names.join(" ")));
        }
        lines.push("HELP".into());
        Reply::multiline(250, lines)
    }
}
