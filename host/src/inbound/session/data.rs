//! End of data: the host's checks, the data hook, access HOLD and
//! DISCARD, the quarantine, signing and spooling.

use super::*;

/// Keep the message in the quarantine instead of the queue (a plugin's
/// verdict or an access table's HOLD). The quarantined copy carries the
/// plugins' header changes and our Authentication-Results, as a delivered
/// one would.
async fn quarantine(
    conn: &mut Conn,
    shared: &Arc<Shared>,
    mut tx: crate::smtp::server::Transaction,
    why: String,
) -> Result<String, Reply> {
    let host = conn.host();
    let actions = std::mem::take(&mut conn.pending);
    let results = hooks::apply(&mut tx, actions, &shared.log, &host);
    let authserv = shared.auth.as_ref().map(|a| a.authserv_id.as_str());
    conn.checks
        .prepend_header(authserv, &shared.cfg.server.hostname, results, &mut tx.data);
    let id = next_id();
    let dir = shared.cfg.server.data_dir.join("quarantine");
    match crate::inbound::quarantine::save(&dir, &id, std::mem::take(&mut tx.data)).await {
        Ok(_) => {
            shared.log.event(&not_spooled(conn, &id, why));
            Ok(id)
        }
        Err(e) => {
            conn.note(SessionNote::Other(format!("quarantine write failed: {e}")));
            Err(Reply::new(
                451,
                "4.3.0",
                "Local error in processing; try again later",
            ))
        }
    }
}

/// End of data: the data hook, then spooling.
pub(super) async fn message(
    conn: &mut Conn,
    shared: &Arc<Shared>,
    mut tx: crate::smtp::server::Transaction,
) -> Result<String, Reply> {
    if let Some(a) = shared.auth.clone() {
        let v = conn.checks.at_data(&a, &shared.cfg.auth, &tx.data).await;
        if v.removed > 0 {
            conn.note(SessionNote::Other(format!(
                "removed {} Authentication-Results header(s) claiming our authserv-id",
                v.removed
            )));
        }
        tx.data = v.data;
    }
    if let Some(access::Action::Discard(why)) = &conn.access {
        let id = next_id();
        let text = format!("discarded by access table: {why}");
        shared.log.event(&not_spooled(conn, &id, text));
        return Ok(id);
    }
    if conn.plugins.is_none()
        && let Some(access::Action::Hold(why)) = conn.access.take()
    {
        return quarantine(conn, shared, tx, format!("held by access table: {why}")).await;
    }
    let mut plugin_results = Vec::new();
    if conn.plugins.is_some() {
        // Lend the content to the hook without copying it; the message
        // resource is gone when the call returns, so the Arc is ours again.
        let data = Arc::new(std::mem::take(&mut tx.data));
        // DMARC's variables describe one message: none from an earlier one
        // of this connection may be counted again.
        conn.vars.retain(|(k, _)| !k.starts_with("dmarc."));
        let d = conn_hook(conn, crate::plugin::Call::Data(Arc::clone(&data))).await;
        tx.data = Arc::try_unwrap(data).unwrap_or_else(|a| (*a).clone());
        count_for_dmarc_report(conn, shared);
        let host = conn.host();
        match d {
            hooks::Decision::Refuse(r) => {
                conn.rejected(RejectStage::Data, true, r.first_line());
                return Err(r);
            }
            hooks::Decision::Discard => {
                let id = next_id();
                shared
                    .log
                    .event(&not_spooled(conn, &id, "discarded by plugin".into()));
                return Ok(id);
            }
            hooks::Decision::Quarantine(why) => {
                return quarantine(conn, shared, tx, format!("quarantined by plugin: {why}")).await;
            }
            hooks::Decision::Continue => {
                if let Some(access::Action::Hold(why)) = conn.access.take() {
                    return quarantine(conn, shared, tx, format!("held by access table: {why}"))
                        .await;
                }
            }
        }
        for (from, to) in std::mem::take(&mut conn.redirects) {
            if let Some(r) = tx.rcpts.iter_mut().find(|r| r.address.to_string() == from)
                && let Ok(a) = crate::smtp::address::Address::parse(&to, true)
            {
                r.address = a;
            }
        }
        let actions = std::mem::take(&mut conn.pending);
        plugin_results = hooks::apply(&mut tx, actions, &shared.log, &host);
        if tx.rcpts.is_empty() {
            return Err(Reply::new(
                554,
                "5.5.1",
                "No recipients left after filtering",
            ));
        }
    }
    let id = shared.auth.as_ref().map(|a| a.authserv_id.as_str());
    conn.checks.prepend_header(
        id,
        &shared.cfg.server.hostname,
        plugin_results,
        &mut tx.data,
    );
    // Our own users' mail is signed: relay clients and authenticated ones.
    let relay_client = match shared
        .router
        .tables()
        .in_hosts(&shared.cfg.server.relay_networks, conn.ip)
    {
        Ok(r) => r || conn.auth.is_some(),
        Err(e) => {
            conn.note(SessionNote::Other(e.to_string()));
            return Err(access::lookup_failed());
        }
    };
    if let Some(signer) = shared.signer.as_ref().filter(|_| relay_client)
        && let Err(e) = signer.sign_into(&mut tx.data)
    {
        conn.note(SessionNote::Other(e.to_string()));
        return Err(Reply::new(
            451,
            "4.7.0",
            "Local error in signing; try again later",
        ));
    }
    // The context for the route hooks; its variables are also kept with
    // the message for the delivery hooks.
    let ctx = conn.plugins.is_some().then(|| {
        dispatch::context(&dispatch::Facts {
            client_ip: conn.ip.to_string(),
            client_port: conn.port,
            client_name: conn.checks.client_name(),
            helo: conn.helo.as_deref(),
            tls: conn.tls.as_ref(),
            sender: conn.sender.as_deref(),
            recipients: tx.rcpts.iter().map(|r| r.address.to_string()).collect(),
            message_id: None,
            vars: &conn.vars,
            checks: conn.checks.for_plugins(),
            auth_user: conn.auth.as_ref().map(|(_, u)| u.as_str()),
        })
    });
    let view = conn_view(conn);
    let route = conn.plugins.as_mut().zip(ctx);
    receive::accept(view, shared, tx, route).await
}

/// Add the message the DMARC plugin just evaluated to its policy domain's
/// aggregate report, whatever becomes of it (refused and quarantined mail
/// counts too).
fn count_for_dmarc_report(conn: &Conn, shared: &Shared) {
    let Some(rpt) = &shared.dmarcrpt else {
        return;
    };
    let sender = conn.sender.as_deref().unwrap_or("");
    let envelope_from = match sender.rsplit_once('@') {
        Some((_, d)) => d.to_string(),
        None => conn.helo.clone().unwrap_or_default(),
    };
    if let Some(o) = crate::dmarcrpt::observe(&conn.vars, conn.ip, &envelope_from, || {
        conn.checks.report_results()
    }) {
        rpt.record(o);
    }
}

/// The `<=` line of a message accepted but not spooled (discarded or
/// quarantined by a plugin).
fn not_spooled(conn: &Conn, id: &str, outcome: String) -> Event {
    Event::Received {
        id: id.to_string(),
        sender: conn.sender.clone().unwrap_or_default(),
        peer: Some(conn.peer()),
        protocol: String::new(),
        origin: None,
        user: None,
        early: crate::log::Early::No,
        tls: None,
        chunking: false,
        size: 0,
        message_id: None,
        requiretls: false,
        auth: None,
        outcome: Some(outcome),
    }
}
