//! The `dns` interface: lookups through the host's resolver or, offline, a
//! zone file (grant `dns`).

use crate::config::plugin::Capability;
use crate::plugin::bindings;
use crate::plugin::bindings::mailgate::plugin::types::CapError;
use crate::plugin::state::{Resolver, State};

impl bindings::mailgate::plugin::dns::Host for State {
    async fn lookup(
        &mut self,
        name: String,
        rtype: bindings::mailgate::plugin::dns::RecordType,
    ) -> Result<bindings::mailgate::plugin::dns::Answer, CapError> {
        use bindings::mailgate::plugin::dns::RecordType as R;
        use hickory_resolver::proto::rr::RecordType;
        self.granted(Capability::Dns)?;
        let Some(dns) = self.dns.clone() else {
            return Err(CapError::Failed("no resolver configured".into()));
        };
        let t = match rtype {
            R::A => RecordType::A,
            R::Aaaa => RecordType::AAAA,
            R::Mx => RecordType::MX,
            R::Txt => RecordType::TXT,
            R::Ptr => RecordType::PTR,
            R::Tlsa => RecordType::TLSA,
        };
        // Zone-file answers (offline tests) are not validated.
        let res = match &dns {
            Resolver::Live(d) => d.records_checked(&name, t).await,
            Resolver::Zone(z) => z.lookup(&name, t).map(|r| (r, false)),
        };
        match res {
            Ok((records, secure)) => {
                Ok(bindings::mailgate::plugin::dns::Answer { records, secure })
            }
            Err(e) => Err(CapError::Failed(e)),
        }
    }
}
