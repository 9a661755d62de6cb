//! The host interfaces of contract 0.2, by delegation to the 0.1 ones:
//! the same calls with 0.2's types. A 0.2 component is linked only to the
//! capability interfaces its config grants (checked at load), so a grant
//! refused here cannot happen; it is still answered, as `failed`.

use crate::plugin::bindings::mailgate::plugin as v1;
use crate::plugin::bindings_v2::mailgate::plugin as v2;
use crate::plugin::host::message::MessageData;
use crate::plugin::host::services::ServiceConn;
use crate::plugin::state::State;
use crate::store::StoreError;
use v1::types::CapError as E1;
use v2::types::CapError as E2;
use wasmtime::component::Resource;

fn err(e: E1) -> E2 {
    match e {
        E1::NotGranted => {
            E2::Failed("not granted by the plugin's config (its `tables` or `services`)".into())
        }
        E1::Failed(s) => E2::Failed(s),
    }
}

impl v2::types::Host for State {}

impl v2::types::HostMessage for State {
    async fn headers(&mut self, m: Resource<MessageData>) -> Vec<v2::types::HeaderField> {
        v1::types::HostMessage::headers(self, m)
            .await
            .into_iter()
            .map(|(name, value)| v2::types::HeaderField { name, value })
            .collect()
    }
    async fn header(&mut self, m: Resource<MessageData>, name: String) -> Vec<String> {
        v1::types::HostMessage::header(self, m, name).await
    }
    async fn body_size(&mut self, m: Resource<MessageData>) -> u64 {
        v1::types::HostMessage::body_size(self, m).await
    }
    async fn read_body(&mut self, m: Resource<MessageData>, offset: u64, len: u32) -> Vec<u8> {
        v1::types::HostMessage::read_body(self, m, offset, len).await
    }
    async fn size(&mut self, m: Resource<MessageData>) -> u64 {
        v1::types::HostMessage::size(self, m).await
    }
    async fn read_raw(&mut self, m: Resource<MessageData>, offset: u64, len: u32) -> Vec<u8> {
        v1::types::HostMessage::read_raw(self, m, offset, len).await
    }
    async fn drop(&mut self, m: Resource<MessageData>) -> wasmtime::Result<()> {
        v1::types::HostMessage::drop(self, m).await
    }
}

impl v2::log::Host for State {
    async fn write(&mut self, level: v2::log::Level, message: String) {
        use v1::log::Level as L1;
        use v2::log::Level as L2;
        let level = match level {
            L2::Error => L1::Error,
            L2::Warn => L1::Warn,
            L2::Info => L1::Info,
            L2::Debug => L1::Debug,
        };
        v1::log::Host::write(self, level, message).await
    }
}

impl v2::routing::Host for State {
    async fn add_header(&mut self, name: String, value: String) -> Result<(), E2> {
        v1::routing::Host::add_header(self, name, value)
            .await
            .map_err(err)
    }
}

impl v2::clock::Host for State {
    async fn now(&mut self) -> u64 {
        v1::clock::Host::now(self).await.unwrap_or(0)
    }
}

impl v2::random::Host for State {
    async fn bytes(&mut self, len: u32) -> Vec<u8> {
        v1::random::Host::bytes(self, len).await.unwrap_or_default()
    }
}

impl State {
    /// A store failure as 0.2 says it: an outage is `unavailable` (and
    /// remembered, as for 0.1, so the defer policy applies).
    fn store_error_v2(&mut self, e: StoreError) -> E2 {
        match e {
            StoreError::Unavailable(_) => {
                let why = e.to_string();
                self.store_outage = Some(why.clone());
                E2::Unavailable(why)
            }
            StoreError::Failed(why) => E2::Failed(why),
        }
    }
}

impl v2::kv::Host for State {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, E2> {
        let r = self.store.kv_get(&self.plugin.cfg.name, &key).await;
        r.map_err(|e| self.store_error_v2(e))
    }
    async fn set(&mut self, key: String, value: Vec<u8>, ttl_seconds: u64) -> Result<(), E2> {
        let r = (self.store)
            .kv_set(&self.plugin.cfg.name, &key, &value, ttl_seconds)
            .await;
        r.map_err(|e| self.store_error_v2(e))
    }
    async fn delete(&mut self, key: String) -> Result<(), E2> {
        let r = self.store.kv_delete(&self.plugin.cfg.name, &key).await;
        r.map_err(|e| self.store_error_v2(e))
    }
}

impl v2::services::Host for State {
    async fn connect(&mut self, name: String) -> Result<Resource<ServiceConn>, E2> {
        v1::services::Host::connect(self, name).await.map_err(err)
    }
}

impl v2::services::HostConnection for State {
    async fn send(&mut self, c: Resource<ServiceConn>, data: Vec<u8>) -> Result<(), E2> {
        v1::services::HostConnection::send(self, c, data)
            .await
            .map_err(err)
    }
    async fn receive(&mut self, c: Resource<ServiceConn>, max: u32) -> Result<Vec<u8>, E2> {
        v1::services::HostConnection::receive(self, c, max)
            .await
            .map_err(err)
    }
    async fn shutdown(&mut self, c: Resource<ServiceConn>) -> Result<(), E2> {
        v1::services::HostConnection::shutdown(self, c)
            .await
            .map_err(err)
    }
    async fn drop(&mut self, c: Resource<ServiceConn>) -> wasmtime::Result<()> {
        v1::services::HostConnection::drop(self, c).await
    }
}

impl v2::dns::Host for State {
    async fn lookup(
        &mut self,
        name: String,
        rtype: v2::dns::RecordType,
    ) -> Result<v2::dns::Answer, E2> {
        use v1::dns::RecordType as R1;
        use v2::dns::RecordType as R2;
        let t = match rtype {
            R2::A => R1::A,
            R2::Aaaa => R1::Aaaa,
            R2::Mx => R1::Mx,
            R2::Txt => R1::Txt,
            R2::Ptr => R1::Ptr,
            R2::Tlsa => R1::Tlsa,
        };
        v1::dns::Host::lookup(self, name, t)
            .await
            .map(|a| v2::dns::Answer {
                records: a.records,
                secure: a.secure,
            })
            .map_err(err)
    }
}

fn alg(a: v2::crypto::Algorithm) -> v1::crypto::Algorithm {
    use v1::crypto::Algorithm as A1;
    use v2::crypto::Algorithm as A2;
    match a {
        A2::RsaSha1 => A1::RsaSha1,
        A2::RsaSha256 => A1::RsaSha256,
        A2::Ed25519Sha256 => A1::Ed25519Sha256,
    }
}

impl v2::crypto::Host for State {
    async fn digest(&mut self, a: v2::crypto::Algorithm, data: Vec<u8>) -> Result<Vec<u8>, E2> {
        v1::crypto::Host::digest(self, alg(a), data)
            .await
            .map_err(err)
    }
    async fn body_hash(
        &mut self,
        msg: Resource<MessageData>,
        canon: v2::crypto::Canonicalization,
        a: v2::crypto::Algorithm,
    ) -> Result<Vec<u8>, E2> {
        use v1::crypto::Canonicalization as C1;
        use v2::crypto::Canonicalization as C2;
        let canon = match canon {
            C2::Simple => C1::Simple,
            C2::Relaxed => C1::Relaxed,
        };
        v1::crypto::Host::body_hash(self, msg, canon, alg(a))
            .await
            .map_err(err)
    }
    async fn verify(
        &mut self,
        a: v2::crypto::Algorithm,
        public_key: Vec<u8>,
        data: Vec<u8>,
        signature: Vec<u8>,
    ) -> Result<bool, E2> {
        v1::crypto::Host::verify(self, alg(a), public_key, data, signature)
            .await
            .map_err(err)
    }
    async fn key_algorithm(&mut self, key: String) -> Result<v2::crypto::Algorithm, E2> {
        use v1::crypto::Algorithm as A1;
        use v2::crypto::Algorithm as A2;
        v1::crypto::Host::key_algorithm(self, key)
            .await
            .map(|a| match a {
                A1::RsaSha1 => A2::RsaSha1,
                A1::RsaSha256 => A2::RsaSha256,
                A1::Ed25519Sha256 => A2::Ed25519Sha256,
            })
            .map_err(err)
    }
    async fn sign(&mut self, key: String, data: Vec<u8>) -> Result<Vec<u8>, E2> {
        v1::crypto::Host::sign(self, key, data).await.map_err(err)
    }
}

impl v2::lookup::Host for State {
    async fn get(&mut self, table: String, key: String) -> Result<Option<String>, E2> {
        v1::lookup::Host::get(self, table, key).await.map_err(err)
    }
    async fn search(
        &mut self,
        table: String,
        key: String,
        how: v2::lookup::SearchOrder,
    ) -> Result<Option<String>, E2> {
        use v1::lookup::SearchOrder as S1;
        use v2::lookup::SearchOrder as S2;
        let how = match how {
            S2::Exact => S1::Exact,
            S2::Domain => S1::Domain,
            S2::Address => S1::Address,
            S2::Ip => S1::Ip,
        };
        v1::lookup::Host::search(self, table, key, how)
            .await
            .map_err(err)
    }
}
