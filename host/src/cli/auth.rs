//! `mailgate auth check` and `mailgate dkim keygen`.

use clap::Subcommand;
use std::path::PathBuf;

/// `mailgate auth ...`
#[derive(Subcommand)]
pub enum AuthCmd {
    /// Run iprev, SPF, DKIM and the ARC and DMARC plugins on a message
    /// without a server and print the results (our Authentication-Results
    /// header, or one JSON object with --json).
    Check {
        /// The message (RFC 5322; LF or CRLF line ends).
        message: PathBuf,
        /// The client's IP address.
        #[arg(long)]
        ip: std::net::IpAddr,
        /// The client's HELO name.
        #[arg(long)]
        helo: String,
        /// The envelope sender ("" for the null sender).
        #[arg(long)]
        from: String,
        /// Answer every DNS question from this zone file (as `plugin test
        /// --dns`) instead of the configured nameservers.
        #[arg(long)]
        dns: Option<PathBuf>,
        /// Gateway config: its [auth] settings, nameservers and plugin
        /// list (default: the embedded config and the bundled plugins).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Where the bundled plugins are (default: where scripts/test.sh
        /// builds them).
        #[arg(long)]
        plugins: Option<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// `mailgate dkim ...`
#[derive(Subcommand)]
pub enum DkimCmd {
    /// Write a new private key (PEM, mode 0600) and print the TXT record
    /// to publish and the `[[dkim]]` entry that uses it.
    Keygen {
        /// The signing domain (d=).
        domain: String,
        /// The selector (s=).
        selector: String,
        /// An Ed25519 key (RFC 8463) instead of RSA.
        #[arg(long)]
        ed25519: bool,
        /// RSA key size.
        #[arg(long, default_value_t = 2048)]
        bits: usize,
        /// Where to write the key (default: DOMAIN.SELECTOR.pem here); an
        /// existing file is never overwritten.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `mailgate auth check`: the report as text or JSON.
#[allow(clippy::too_many_arguments)]
pub async fn auth_check(
    message: PathBuf,
    ip: std::net::IpAddr,
    helo: String,
    from: String,
    dns: Option<PathBuf>,
    config: Option<PathBuf>,
    plugins: Option<PathBuf>,
    json: bool,
) -> Result<(), String> {
    use mailgate::inbound::auth::check;
    let cfg = super::load(config.as_deref())?;
    let text = std::fs::read(&message).map_err(|e| format!("{}: {e}", message.display()))?;
    let zone = dns.as_deref().map(super::read_zone).transpose()?;
    let list = match &config {
        Some(_) => cfg.plugins.clone(),
        None => check::bundled_plugins(plugins.as_deref()),
    };
    let work = std::env::temp_dir().join(format!("mailgate-auth-check-{}", std::process::id()));
    let req = check::Request {
        message: text,
        ip,
        helo,
        sender: from,
        zone,
        plugins: list,
        work_dir: work.clone(),
    };
    let res = check::run(&cfg, req).await;
    let _ = std::fs::remove_dir_all(&work);
    let report = res?;
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(())
}

/// `mailgate dkim keygen`: a new key file and its TXT record.
pub fn dkim_keygen(
    domain: &str,
    selector: &str,
    ed25519: bool,
    bits: usize,
    out: Option<PathBuf>,
) -> Result<(), String> {
    use mailgate::inbound::auth::keygen;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let entry = mailgate::config::auth::DkimKey {
        domain: domain.to_string(),
        selector: selector.to_string(),
        key: out.unwrap_or_else(|| PathBuf::from(format!("{domain}.{selector}.pem"))),
        headers: None,
        oversign: true,
        expire: None,
    };
    if let Some(p) = entry.problem() {
        return Err(p);
    }
    let k = keygen::generate(ed25519, bits)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&entry.key)
        .map_err(|e| format!("{}: {e}", entry.key.display()))?;
    f.write_all(k.pem.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{}: {e}", entry.key.display()))?;
    let path = std::fs::canonicalize(&entry.key).unwrap_or(entry.key.clone());
    println!("wrote {} ({})", path.display(), k.kind);
    println!();
    println!("Publish:");
    println!("{}", keygen::zone_line(domain, selector, &k.record));
    println!();
    println!("Configure:");
    println!("[[dkim]]");
    println!("domain = {:?}", domain);
    println!("selector = {:?}", selector);
    println!("key = {:?}", path.display().to_string());
    Ok(())
}
