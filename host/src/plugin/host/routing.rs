//! The `routing` interface: header fields for the copy of the message one
//! recipient gets (Exim's router `headers_add`), added by a route hook for
//! the recipient it is routing. Only valid inside `on-route`.

use crate::plugin::bindings::mailgate::plugin::routing::Host;
use crate::plugin::bindings::mailgate::plugin::types::CapError;
use crate::plugin::state::State;

/// Fields one plugin may add to one recipient.
pub const MAX_FIELDS: usize = 16;
/// Octets of one field's value.
pub const MAX_VALUE: usize = 4000;

impl Host for State {
    async fn add_header(&mut self, name: String, value: String) -> Result<(), CapError> {
        let Some(headers) = self.route_headers.as_mut() else {
            return Err(CapError::Failed(
                "routing.add-header is only callable from on-route".into(),
            ));
        };
        if !crate::plugin::calls::header_ok(&name, &value) {
            return Err(CapError::Failed(format!("bad header field {name:?}")));
        }
        if value.len() > MAX_VALUE {
            return Err(CapError::Failed(format!(
                "header {name}: value over {MAX_VALUE} octets"
            )));
        }
        if headers.len() >= MAX_FIELDS {
            return Err(CapError::Failed(format!(
                "more than {MAX_FIELDS} header fields for one recipient"
            )));
        }
        headers.push((name, value));
        Ok(())
    }
}
