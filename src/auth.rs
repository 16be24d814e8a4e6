//! Sender authentication: did the mail really come from its From domain?
//!
//! `RULES.md` "Who speaks for a unit" and `INTERFACE.md` `[security] sender_auth`: in
//! `authenticated` mode a registered From address must also pass either
//! - **DKIM** verified here, with a signing domain (`d=`) aligned with the From domain, or
//! - an **`Authentication-Results`** header (RFC 8601) whose authserv-id is in
//!   `trusted_authserv_ids` saying `dmarc=pass`, or `dkim=pass` with `header.d` / `header.i`
//!   aligned with the From domain. Every other A-R header is ignored, wherever it stands:
//!   anybody can write one.
//!
//! This module only gives the verdict; what a failed verdict does to the mail (held,
//! `submission.sender_not_authenticated`) is decided by the caller.
//!
//! # Interface
//!
//! ```ignore
//! pub enum AuthOutcome {                   // Debug, Clone, PartialEq, Eq, Serialize
//!     DkimAligned { domain: String },      // signature verified here; `domain` = its d=
//!     TrustedResults { authserv_id: String, method: String },  // method "dkim" or "dmarc"
//!     Failed { reason: String },           // short English phrase for logs
//! }
//! impl AuthOutcome { pub fn passed(&self) -> bool }
//!
//! pub struct Authenticator;
//! impl Authenticator {
//!     pub fn system() -> anyhow::Result<Self>;                        // /etc/resolv.conf
//!     pub fn with_records(records: Vec<(String, String)>) -> Self;    // closed world, no network
//!     pub fn with_nameserver(server: SocketAddr) -> anyhow::Result<Self>;  // one DNS server, UDP
//!     pub fn with_dns_timeout(self, Duration) -> Self;                // default 5 s
//!     pub fn with_max_dkim_bytes(self, u64) -> Self;                  // default 32 MiB
//!     pub async fn authenticate(&self, raw: &[u8], from: &str, trusted_authserv_ids: &[String])
//!         -> AuthOutcome;
//! }
//! pub fn trusted_results(raw_headers: &[u8], trusted: &[String]) -> Vec<AuthResult>;
//! pub type AuthResult = (String /*authserv-id*/, String /*method*/, String /*result*/,
//!                        Vec<(String, String)> /*properties, e.g. ("header.d", "qq.com")*/);
//! pub fn aligned(a: &str, b: &str) -> bool;                          // relaxed alignment
//! ```
//!
//! # The verdict, in order
//! 1. The From address must have a domain, and the message exactly one `From:` header (a
//!    second `From:` is the classic way to show one address while a signature covers another).
//! 2. Trusted A-R results: a `dmarc=pass` (with `header.from`, if given, aligned), or a
//!    `dkim=pass` whose `header.d` (else the domain of `header.i`) is aligned, passes. A trusted
//!    `dmarc=fail` is final: the mail fails without a DKIM check of our own.
//! 3. DKIM, verified here (mail-auth): a signature that verifies, whose `d=` is aligned and
//!    whose `h=` covers `From` and whose RSA key has at least 1024 bits (RFC 8301), passes.
//!    Signatures with a body length (`l=`) are refused (content can be appended after the
//!    signed part). DNS for all keys together is bounded by the DNS timeout; a message over
//!    the size cap is not hashed (A-R only).
//! 4. Otherwise `Failed`, with the most telling reason.
//!
//! # Alignment (kept simple, no Public Suffix List)
//! Two domains are aligned when they are equal (case-insensitive, trailing dot ignored), or one
//! is a subdomain of the other and the shorter one is not a public suffix — approximated as:
//! has at least two labels and is not in a short list of second-level public suffixes
//! ([`PUBLIC_SUFFIXES`]: `com.cn`, `gov.cn`, `edu.cn`, … `co.uk`). This equals DMARC relaxed
//! alignment for every domain a unit writes from (qq.com, 163.com, a union's own domain), and
//! errs on the side of failing (held mail, never a wrongly accepted one) for exotic suffixes.
//!
//! # Trust in A-R headers
//! An authserv-id is only evidence if the receiving server removes A-R headers carrying its
//! own id from incoming mail (RFC 8601 §5; Postfix+OpenDMARC, Rspamd and Exchange do). Only
//! list ids of servers that do so.
//!
//! # Robustness
//! Never panics on hostile input: the RFC 8601 parser is total, and the DKIM step runs on the
//! blocking pool behind `catch_unwind` (a library panic becomes `Failed`). Tests use
//! [`Authenticator::with_records`]: a closed-world TXT table, any other name is NXDOMAIN, no
//! packet ever leaves the process.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::hickory_resolver::config::ResolverOpts;
use mail_auth::hickory_resolver::system_conf::read_system_conf;
use mail_auth::{
    AuthenticatedMessage, DkimResult, DnsError, MessageAuthenticator, Parameters, ResolverCache,
    Txt,
};

/// How the From address of one mail was authenticated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum AuthOutcome {
    /// A DKIM signature verified here, its signing domain (`d=`, given as `domain`) aligned
    /// with the From domain.
    DkimAligned { domain: String },
    /// An Authentication-Results header with a trusted authserv-id says `dmarc=pass`, or
    /// `dkim=pass` with `header.d` / `header.i` aligned with the From domain. `method` is
    /// `dmarc` or `dkim`.
    TrustedResults { authserv_id: String, method: String },
    /// Nothing passed: why, as a short English phrase for logs.
    Failed { reason: String },
}

impl AuthOutcome {
    pub fn passed(&self) -> bool {
        !matches!(self, AuthOutcome::Failed { .. })
    }

    fn failed(reason: impl Into<String>) -> Self {
        AuthOutcome::Failed {
            reason: reason.into(),
        }
    }
}

/// One result of a trusted A-R header: (authserv-id, method, result, properties). Method,
/// result and property names are lower-case; the method is without its version (`dkim/1` →
/// `dkim`); property values are as written (quotes removed).
pub type AuthResult = (String, String, String, Vec<(String, String)>);

/// Default bound on all DNS work of one `authenticate` call.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// Default size above which a message is not hashed for DKIM (A-R headers only).
pub const DEFAULT_MAX_DKIM_BYTES: u64 = 32 << 20;

/// Second-level public suffixes under which a registrable domain never aligns with its
/// parent (see the module documentation).
#[rustfmt::skip]
pub const PUBLIC_SUFFIXES: &[&str] = &[
    // China: CNNIC's categories and the provinces' short names
    "com.cn", "net.cn", "org.cn", "gov.cn", "edu.cn", "ac.cn", "mil.cn",
    "bj.cn", "sh.cn", "tj.cn", "cq.cn", "he.cn", "sx.cn", "nm.cn", "ln.cn", "jl.cn", "hl.cn",
    "js.cn", "zj.cn", "ah.cn", "fj.cn", "jx.cn", "sd.cn", "ha.cn", "hb.cn", "hn.cn", "gd.cn",
    "gx.cn", "hi.cn", "sc.cn", "gz.cn", "yn.cn", "xz.cn", "sn.cn", "gs.cn", "qh.cn", "nx.cn",
    "xj.cn", "tw.cn", "hk.cn", "mo.cn",
    // a few elsewhere that Chinese senders meet
    "com.hk", "org.hk", "edu.hk", "gov.hk", "com.tw", "org.tw", "com.mo",
    "co.uk", "ac.uk", "gov.uk", "org.uk", "co.jp", "ne.jp", "or.jp", "com.au", "com.sg",
];
/// Verifies DKIM signatures; see the module documentation.
pub struct Authenticator {
    resolver: MessageAuthenticator,
    /// Test seam: a closed-world TXT table (`None` in production: real DNS).
    records: Option<Arc<ClosedTxt>>,
    dns_timeout: Duration,
    max_dkim_bytes: u64,
}

impl Authenticator {
    /// From the system resolver configuration (`/etc/resolv.conf`), each query bounded to
    /// 2 s with 2 attempts; all DNS of one mail is further bounded by the DNS timeout.
    pub fn system() -> anyhow::Result<Self> {
        let (config, mut opts) = read_system_conf()
            .map_err(|e| anyhow::anyhow!("reading the system DNS configuration: {e}"))?;
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        let resolver = MessageAuthenticator::new(config, opts)
            .map_err(|e| anyhow::anyhow!("building the DNS resolver: {e}"))?;
        Ok(Self::from_resolver(resolver, None))
    }

    /// The real resolver path, asking one DNS server over UDP (a local resolver, or a test
    /// server on 127.0.0.1); each query bounded to 1 s, one attempt.
    pub fn with_nameserver(server: std::net::SocketAddr) -> anyhow::Result<Self> {
        use mail_auth::hickory_resolver::config::{
            ConnectionConfig, NameServerConfig, ResolverConfig,
        };
        let mut udp = ConnectionConfig::udp();
        udp.port = server.port();
        let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
            server.ip(),
            true,
            vec![udp],
        )]);
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_secs(1);
        opts.attempts = 1;
        let resolver = MessageAuthenticator::new(config, opts)
            .map_err(|e| anyhow::anyhow!("building the DNS resolver: {e}"))?;
        Ok(Self::from_resolver(resolver, None))
    }

    /// Test seam: the DNS TXT records there are, given in advance (name such as
    /// `sel._domainkey.example.cn`, record text such as `v=DKIM1; k=rsa; p=MIIB…`). Every
    /// other name answers NXDOMAIN; nothing is ever sent on the network.
    pub fn with_records(records: Vec<(String, String)>) -> Self {
        let mut map = HashMap::new();
        for (name, text) in records {
            let txt: Txt = DomainKey::parse(text.as_bytes()).into();
            map.insert(fqdn(&name).into_boxed_str(), txt);
        }
        // The resolver behind the table is never asked (every lookup is answered by the
        // table); it points at a closed local port all the same.
        let config = mail_auth::hickory_resolver::config::ResolverConfig::from_parts(
            None,
            vec![],
            vec![mail_auth::hickory_resolver::config::NameServerConfig::udp(
                std::net::IpAddr::from([127, 0, 0, 1]),
            )],
        );
        let resolver = MessageAuthenticator::new(config, ResolverOpts::default())
            .expect("a resolver on a fixed local address always builds");
        Self::from_resolver(resolver, Some(Arc::new(ClosedTxt(map))))
    }

    fn from_resolver(resolver: MessageAuthenticator, records: Option<Arc<ClosedTxt>>) -> Self {
        Authenticator {
            resolver,
            records,
            dns_timeout: DEFAULT_DNS_TIMEOUT,
            max_dkim_bytes: DEFAULT_MAX_DKIM_BYTES,
        }
    }

    /// Bound on all DNS work of one `authenticate` call (default 5 s).
    pub fn with_dns_timeout(mut self, timeout: Duration) -> Self {
        self.dns_timeout = timeout;
        self
    }

    /// Messages larger than this are not hashed for DKIM: only trusted A-R headers count
    /// (default 32 MiB; the daemon may pass its `max_message_bytes`).
    pub fn with_max_dkim_bytes(mut self, max: u64) -> Self {
        self.max_dkim_bytes = max;
        self
    }

    /// The outcome for `raw` (the whole message as received) whose From address is `from`
    /// (an address, any case). Trusted A-R first, then DKIM; see the module documentation.
    pub async fn authenticate(
        &self,
        raw: &[u8],
        from: &str,
        trusted_authserv_ids: &[String],
    ) -> AuthOutcome {
        let from = from
            .trim()
            .trim_matches(|c| c == '<' || c == '>')
            .to_lowercase();
        let Some(from_domain) = from.rsplit_once('@').map(|(_, d)| d.trim_end_matches('.')) else {
            return AuthOutcome::failed("the From address has no domain");
        };
        if from_domain.is_empty() || !from_domain.contains('.') {
            return AuthOutcome::failed("the From address has no valid domain");
        }
        let from_domain = from_domain.to_string();

        let fields = header_fields(raw);
        let from_headers = fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("from"))
            .count();
        if from_headers != 1 {
            return AuthOutcome::failed(format!(
                "the message has {from_headers} From headers (exactly one is required)"
            ));
        }

        // 2. Trusted Authentication-Results.
        let results = results_of(&fields, trusted_authserv_ids);
        if let Some((id, ..)) = results
            .iter()
            .find(|(_, m, r, _)| m == "dmarc" && r == "fail")
        {
            return AuthOutcome::failed(format!("{id} reports dmarc=fail"));
        }
        let mut trusted_note = String::new();
        for (id, method, result, props) in &results {
            let pass = result == "pass"
                && match method.as_str() {
                    "dmarc" => prop(props, "header.from").is_none_or(|d| aligned(d, &from_domain)),
                    "dkim" => dkim_result_domain(props).is_some_and(|d| aligned(&d, &from_domain)),
                    _ => false,
                };
            if pass {
                return AuthOutcome::TrustedResults {
                    authserv_id: id.clone(),
                    method: method.clone(),
                };
            }
            if matches!(method.as_str(), "dkim" | "dmarc") && trusted_note.is_empty() {
                trusted_note = match (method.as_str(), result.as_str()) {
                    ("dkim", "pass") => format!(
                        "{id} reports dkim=pass for {} (not aligned); ",
                        dkim_result_domain(props).unwrap_or_else(|| "no domain".into())
                    ),
                    ("dmarc", "pass") => format!(
                        "{id} reports dmarc=pass for {} (not aligned); ",
                        prop(props, "header.from").unwrap_or_default()
                    ),
                    _ => format!("{id} reports {method}={result}; "),
                };
            }
        }

        // 3. DKIM verified here.
        if raw.len() as u64 > self.max_dkim_bytes {
            return AuthOutcome::failed(format!(
                "{trusted_note}message over {} bytes: DKIM not checked",
                self.max_dkim_bytes
            ));
        }
        let outcome = self.verify_dkim(raw, &from, &from_domain).await;
        match outcome {
            AuthOutcome::Failed { reason } => {
                AuthOutcome::failed(format!("{trusted_note}{reason}"))
            }
            passed => passed,
        }
    }

    /// DKIM on the blocking pool (body hashing is CPU work; a library panic stays there).
    async fn verify_dkim(&self, raw: &[u8], from: &str, from_domain: &str) -> AuthOutcome {
        let raw: Arc<[u8]> = Arc::from(raw);
        let from = from.to_string();
        let from_domain = from_domain.to_string();
        let resolver = self.resolver.clone();
        let records = self.records.clone();
        let dns_timeout = self.dns_timeout;
        let handle = tokio::runtime::Handle::current();
        let task = tokio::task::spawn_blocking(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                handle.block_on(dkim_verdict(
                    &resolver,
                    records.as_deref(),
                    &raw,
                    &from,
                    &from_domain,
                    dns_timeout,
                ))
            }))
        });
        match task.await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) | Err(_) => AuthOutcome::failed("internal error while verifying DKIM"),
        }
    }
}

async fn dkim_verdict(
    resolver: &MessageAuthenticator,
    records: Option<&ClosedTxt>,
    raw: &[u8],
    from: &str,
    from_domain: &str,
    dns_timeout: Duration,
) -> AuthOutcome {
    // Strict parsing: a signature with a body length (l=) is an error, not a signature.
    let Some(message) = AuthenticatedMessage::parse(raw) else {
        return AuthOutcome::failed("the message has no headers");
    };
    if message.froms().len() != 1 || message.froms()[0] != from {
        return AuthOutcome::failed("the From header does not hold exactly the sender address");
    }
    // The keys fetched, kept to check their size afterwards (mail-auth does not).
    let fetched = Fetched::default();
    let outputs = match records {
        Some(table) => {
            tokio::time::timeout(
                dns_timeout,
                resolver.verify_dkim(Parameters::new(&message).with_txt_cache(table)),
            )
            .await
        }
        None => {
            tokio::time::timeout(
                dns_timeout,
                resolver.verify_dkim(Parameters::new(&message).with_txt_cache(&fetched)),
            )
            .await
        }
    };
    let key_bits = |sig: &mail_auth::dkim::Signature| -> Option<usize> {
        let name = fqdn(&format!("{}._domainkey.{}", sig.s, sig.d));
        let txt = match records {
            Some(table) => table.0.get(name.as_str()).cloned(),
            None => fetched.0.lock().ok()?.get(name.as_str()).cloned(),
        };
        match txt? {
            Txt::DomainKey(key) => Some(key.p.public_key_bits()),
            _ => None,
        }
    };
    let Ok(outputs) = outputs else {
        return AuthOutcome::failed(format!(
            "DNS lookups for the DKIM keys took over {} s",
            dns_timeout.as_secs_f32()
        ));
    };
    if outputs.is_empty() {
        return AuthOutcome::failed("no DKIM signature");
    }

    // Reasons, best first: a failure of an aligned signature says more than anything about a
    // foreign one.
    let mut aligned_failure: Option<String> = None;
    let mut other_failure: Option<String> = None;
    let mut foreign_pass: Option<String> = None;
    for output in &outputs {
        let Some(sig) = output.signature() else {
            other_failure.get_or_insert_with(|| describe(output.result(), None));
            continue;
        };
        let d = sig.d.trim_end_matches('.').to_ascii_lowercase();
        let is_aligned = aligned(&d, from_domain);
        let covers_from = sig.h.iter().any(|h| h.eq_ignore_ascii_case("from"));
        let weak = |sig| key_bits(sig).filter(|&bits| bits < MIN_RSA_BITS);
        match output.result() {
            DkimResult::Pass if is_aligned && covers_from => match weak(sig) {
                None => return AuthOutcome::DkimAligned { domain: d },
                Some(bits) => {
                    aligned_failure.get_or_insert_with(|| {
                        format!("the DKIM key of {d} has {bits} bits (under {MIN_RSA_BITS})")
                    });
                }
            },
            DkimResult::Pass if is_aligned => {
                aligned_failure.get_or_insert_with(|| {
                    format!("the DKIM signature of {d} does not cover From")
                });
            }
            DkimResult::Pass => {
                foreign_pass.get_or_insert(d);
            }
            result if is_aligned => {
                aligned_failure.get_or_insert_with(|| describe(result, Some(sig)));
            }
            result => {
                other_failure.get_or_insert_with(|| describe(result, Some(sig)));
            }
        }
    }
    let reason = aligned_failure
        .or_else(|| {
            foreign_pass.map(|d| {
                format!("DKIM signing domain {d} is not aligned with the From domain {from_domain}")
            })
        })
        .or(other_failure)
        .unwrap_or_else(|| "no valid DKIM signature".to_string());
    AuthOutcome::failed(reason)
}

/// A short English phrase for a DKIM result that is not a pass.
fn describe(result: &DkimResult, sig: Option<&mail_auth::dkim::Signature>) -> String {
    use mail_auth::Error;
    use mail_auth::common::crypto::CryptoError;
    use mail_auth::dkim::DkimError;
    let who = sig
        .map(|s| format!(" (d={}, s={})", s.d, s.s))
        .unwrap_or_default();
    let err = match result {
        DkimResult::Pass => return format!("DKIM passed{who}"),
        DkimResult::None => return "no DKIM signature".to_string(),
        DkimResult::Neutral(e)
        | DkimResult::Fail(e)
        | DkimResult::PermError(e)
        | DkimResult::TempError(e) => e,
    };
    match err {
        Error::Dkim(DkimError::FailedBodyHashMatch) => {
            format!("DKIM body hash mismatch: the body changed after signing{who}")
        }
        Error::Crypto(CryptoError::FailedVerification) => {
            format!(
                "DKIM signature does not verify (headers changed after signing, or another key){who}"
            )
        }
        Error::Dkim(DkimError::SignatureLength) => {
            "DKIM signature with a body length (l=) refused".to_string()
        }
        Error::Dns(DnsError::RecordNotFound(_)) => match sig {
            Some(s) => format!("no DKIM key published at {}._domainkey.{}", s.s, s.d),
            None => "no DKIM key published".to_string(),
        },
        Error::Dns(e) => format!("DNS error looking up the DKIM key{who}: {e}"),
        e => format!("DKIM {e}{who}"),
    }
}

/// Relaxed alignment of two domains: equal, or one a subdomain of the other whose shorter
/// side has at least two labels and is not in [`PUBLIC_SUFFIXES`].
pub fn aligned(a: &str, b: &str) -> bool {
    let a = a.trim().trim_end_matches('.').to_ascii_lowercase();
    let b = b.trim().trim_end_matches('.').to_ascii_lowercase();
    if a.is_empty() || b.is_empty() {
        return false;
    }
    if a == b {
        return true;
    }
    let (short, long) = if a.len() < b.len() { (a, b) } else { (b, a) };
    long.ends_with(&format!(".{short}"))
        && short.split('.').filter(|l| !l.is_empty()).count() >= 2
        && !PUBLIC_SUFFIXES.contains(&short.as_str())
}

fn prop<'a>(props: &'a [(String, String)], name: &str) -> Option<&'a str> {
    props
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The signing domain a `dkim=` result names: `header.d`, else the domain of `header.i`.
fn dkim_result_domain(props: &[(String, String)]) -> Option<String> {
    if let Some(d) = prop(props, "header.d") {
        return Some(d.to_string());
    }
    prop(props, "header.i")
        .and_then(|i| i.rsplit_once('@'))
        .map(|(_, d)| d.to_string())
}

fn fqdn(name: &str) -> String {
    let mut name = name.trim().to_ascii_lowercase();
    if !name.ends_with('.') {
        name.push('.');
    }
    name
}

/// Smallest RSA key accepted (RFC 8301 §3.2: verifiers must not accept keys under 1024 bits;
/// mail-auth's pure-Rust backend does not check this itself).
pub const MIN_RSA_BITS: usize = 1024;

/// The TXT records mail-auth fetched during one verification (it inserts every answer into
/// the cache it is given); never answers a lookup itself.
#[derive(Default)]
struct Fetched(std::sync::Mutex<HashMap<Box<str>, Txt>>);

impl ResolverCache<Box<str>, Txt> for Fetched {
    fn get<Q>(&self, _name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn remove<Q>(&self, _name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, key: Box<str>, value: Txt, _valid_until: std::time::Instant) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(key, value);
        }
    }
}

/// The closed-world TXT table of [`Authenticator::with_records`], served to mail-auth through
/// its resolver-cache seam: a name not in the table is NXDOMAIN, so the resolver is never asked.
struct ClosedTxt(HashMap<Box<str>, Txt>);

impl ResolverCache<Box<str>, Txt> for ClosedTxt {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        Some(self.0.get(name).cloned().unwrap_or_else(|| {
            Txt::Error(mail_auth::Error::Dns(DnsError::RecordNotFound(
                mail_auth::hickory_resolver::proto::op::ResponseCode::NXDomain,
            )))
        }))
    }

    fn remove<Q>(&self, _name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, _key: Box<str>, _value: Txt, _valid_until: std::time::Instant) {}
}

// ---------------------------------------------------------------------------------------------
// RFC 8601 Authentication-Results

/// Pure RFC 8601 parsing: the results of the `Authentication-Results` headers whose
/// authserv-id is in `trusted` (case-insensitive), wherever they stand in the header; every
/// other A-R header is ignored. `raw_headers` is the header block or the whole message (read
/// up to the first empty line). Comments (CFWS, nested), quoted strings, several results per
/// header, a version after the authserv-id and `none` are handled; a result that does not
/// parse is skipped, the others of its header kept.
pub fn trusted_results(raw_headers: &[u8], trusted: &[String]) -> Vec<AuthResult> {
    results_of(&header_fields(raw_headers), trusted)
}

fn results_of(fields: &[(String, String)], trusted: &[String]) -> Vec<AuthResult> {
    if trusted.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (name, value) in fields {
        if !name.eq_ignore_ascii_case("authentication-results") {
            continue;
        }
        let Some((id, results)) = parse_auth_results(value) else {
            continue;
        };
        if !trusted.iter().any(|t| t.trim().eq_ignore_ascii_case(&id)) {
            continue;
        }
        out.extend(results.into_iter().map(|(m, r, p)| (id.clone(), m, r, p)));
    }
    out
}

/// The header fields of a message, unfolded: (name, value), in order, up to the first empty
/// line. Bytes that are not UTF-8 are replaced; a line without a colon is skipped.
fn header_fields(raw: &[u8]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some((_, value)) = current.as_mut() {
                value.push(' ');
                value.push_str(String::from_utf8_lossy(line).trim());
            }
            continue;
        }
        if let Some(field) = current.take() {
            fields.push(field);
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = String::from_utf8_lossy(&line[..colon]).trim().to_string();
            let value = String::from_utf8_lossy(&line[colon + 1..])
                .trim()
                .to_string();
            if !name.is_empty() && !name.contains(' ') {
                current = Some((name, value));
            }
        }
    }
    if let Some(field) = current {
        fields.push(field);
    }
    fields
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// An atom-like run (may hold `.`, `@`, `/`, `-`, `+`, …).
    Word(String),
    /// A quoted string, unquoted.
    Quoted(String),
    Eq,
    Semi,
}

/// Tokens of an A-R value: comments dropped (nested, with quoted-pairs), quoted strings
/// unquoted, `=` and `;` separate; whitespace and comments end a word.
fn lex(value: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut word = String::new();
    let mut chars = value.chars();
    let flush = |word: &mut String, toks: &mut Vec<Tok>| {
        if !word.is_empty() {
            toks.push(Tok::Word(std::mem::take(word)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '(' => {
                flush(&mut word, &mut toks);
                let mut depth = 1usize;
                while depth > 0 {
                    match chars.next() {
                        None => break,
                        Some('\\') => {
                            chars.next();
                        }
                        Some('(') => depth += 1,
                        Some(')') => depth -= 1,
                        Some(_) => {}
                    }
                }
            }
            '"' => {
                flush(&mut word, &mut toks);
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None | Some('"') => break,
                        Some('\\') => {
                            if let Some(c) = chars.next() {
                                s.push(c);
                            }
                        }
                        Some(c) => s.push(c),
                    }
                }
                toks.push(Tok::Quoted(s));
            }
            '=' => {
                flush(&mut word, &mut toks);
                toks.push(Tok::Eq);
            }
            ';' => {
                flush(&mut word, &mut toks);
                toks.push(Tok::Semi);
            }
            c if c.is_whitespace() => flush(&mut word, &mut toks),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut toks);
    toks
}

type ResInfo = (String, String, Vec<(String, String)>);

/// `authserv-id [version] ( ; none | 1*( ; resinfo ) )` → (authserv-id, results).
fn parse_auth_results(value: &str) -> Option<(String, Vec<ResInfo>)> {
    let toks = lex(value);
    let mut segments = toks.split(|t| *t == Tok::Semi);
    let head = segments.next()?;
    let id = match head.first()? {
        Tok::Word(w) | Tok::Quoted(w) => w.trim().to_string(),
        _ => return None,
    };
    if id.is_empty() {
        return None;
    }
    // head[1], if any, is the version (digits); nothing else may stand there.
    match head.get(1..) {
        None | Some([]) => {}
        Some([Tok::Word(v)]) if v.chars().all(|c| c.is_ascii_digit()) => {}
        _ => return None,
    }
    let mut results = Vec::new();
    for seg in segments {
        if let Some(res) = parse_resinfo(seg) {
            results.push(res);
        }
    }
    Some((id, results))
}

/// `method[/version] = result [reason=value] [ptype.property=value …]`; `none` → None.
fn parse_resinfo(seg: &[Tok]) -> Option<ResInfo> {
    let mut i = 0;
    let mut method = match seg.get(i)? {
        Tok::Word(w) => w.clone(),
        _ => return None,
    };
    i += 1;
    // a method version written apart: "dkim / 1" or "dkim /1"
    while let Some(Tok::Word(w)) = seg.get(i) {
        if w.starts_with('/') || method.ends_with('/') {
            method.push_str(w);
            i += 1;
        } else {
            break;
        }
    }
    if seg.get(i) != Some(&Tok::Eq) {
        return None; // "none", or garbage
    }
    i += 1;
    let result = match seg.get(i)? {
        Tok::Word(w) => w.to_ascii_lowercase(),
        _ => return None,
    };
    i += 1;
    let method = method
        .split('/')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if method.is_empty() {
        return None;
    }
    let mut props = Vec::new();
    while i < seg.len() {
        // key = value
        let (Some(Tok::Word(key)), Some(Tok::Eq)) = (seg.get(i), seg.get(i + 1)) else {
            i += 1;
            continue;
        };
        let value = match seg.get(i + 2) {
            Some(Tok::Word(v)) | Some(Tok::Quoted(v)) => v.clone(),
            _ => String::new(),
        };
        let consumed = if matches!(seg.get(i + 2), Some(Tok::Word(_)) | Some(Tok::Quoted(_))) {
            3
        } else {
            2
        };
        let key = key.to_ascii_lowercase();
        if key != "reason" && key.contains('.') {
            props.push((key, value));
        }
        i += consumed;
    }
    Some((method, result, props))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn alignment() {
        assert!(aligned("example.cn", "example.cn"));
        assert!(aligned("Example.CN.", "example.cn"));
        assert!(aligned("mail.example.cn", "example.cn"));
        assert!(aligned("example.cn", "mail.example.cn"));
        assert!(!aligned("example.cn", "other.cn"));
        assert!(!aligned("badexample.cn", "example.cn"));
        assert!(!aligned("cn", "example.cn"));
        assert!(!aligned("com.cn", "evil.com.cn"));
        assert!(!aligned("evil.gov.cn", "gov.cn"));
        assert!(aligned("leshan.gov.cn", "zgh.leshan.gov.cn"));
        assert!(!aligned("", "example.cn"));
    }

    #[test]
    fn lexer_comments_and_quotes() {
        assert_eq!(
            lex(r#"mx (a (nested) \) comment) ; dkim="p;a=ss" x"#),
            vec![
                Tok::Word("mx".into()),
                Tok::Semi,
                Tok::Word("dkim".into()),
                Tok::Eq,
                Tok::Quoted("p;a=ss".into()),
                Tok::Word("x".into()),
            ]
        );
        // unterminated comment and quote: no panic, nothing after
        assert_eq!(lex("mx (open"), vec![Tok::Word("mx".into())]);
        assert_eq!(
            lex("mx \"open"),
            vec![Tok::Word("mx".into()), Tok::Quoted("open".into())]
        );
    }

    #[test]
    fn several_results_versions_and_none() {
        let raw = b"Authentication-Results: mx.example.cn 1;\r\n\
            \tdkim/1 = pass (good signature) header.d=example.cn header.i=@example.cn\r\n\
            \theader.b=\"abc\";\r\n\
            \tspf=pass smtp.mailfrom=user@example.cn;\r\n\
            \tdmarc=pass (p=none) header.from=example.cn\r\n\
            Authentication-Results: mx.example.cn; none\r\n\
            Subject: x\r\n\r\nbody\r\n";
        let r = trusted_results(raw, &ids(&["MX.Example.CN"]));
        assert_eq!(r.len(), 3, "{r:?}");
        assert_eq!(r[0].0, "mx.example.cn");
        assert_eq!(r[0].1, "dkim");
        assert_eq!(r[0].2, "pass");
        assert_eq!(
            r[0].3,
            vec![
                ("header.d".to_string(), "example.cn".to_string()),
                ("header.i".to_string(), "@example.cn".to_string()),
                ("header.b".to_string(), "abc".to_string()),
            ]
        );
        assert_eq!((r[1].1.as_str(), r[1].2.as_str()), ("spf", "pass"));
        assert_eq!(
            r[1].3,
            vec![("smtp.mailfrom".to_string(), "user@example.cn".to_string())]
        );
        assert_eq!((r[2].1.as_str(), r[2].2.as_str()), ("dmarc", "pass"));
    }

    #[test]
    fn untrusted_and_empty_trust_list_ignored() {
        let raw = b"Authentication-Results: evil.example; dkim=pass header.d=example.cn\r\n\r\n";
        assert!(trusted_results(raw, &ids(&["mx.example.cn"])).is_empty());
        assert!(trusted_results(raw, &[]).is_empty());
        // an authserv-id in a comment or quoted
        let raw =
            b"Authentication-Results: (mx.example.cn) evil.example; dkim=pass header.d=a.cn\r\n\
            Authentication-Results: \"mx.example.cn\"; dkim=fail header.d=example.cn\r\n\r\n";
        let r = trusted_results(raw, &ids(&["mx.example.cn"]));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].2, "fail");
    }

    #[test]
    fn only_the_header_block_is_read() {
        let raw = b"Subject: x\r\n\r\nAuthentication-Results: mx.example.cn; dmarc=pass\r\n";
        assert!(trusted_results(raw, &ids(&["mx.example.cn"])).is_empty());
    }

    #[test]
    fn garbage_never_panics() {
        let inputs: &[&[u8]] = &[
            b"",
            b"Authentication-Results:",
            b"Authentication-Results: ;;;===",
            b"Authentication-Results: mx; =pass; dkim=; dkim ; a.b=c",
            b"Authentication-Results: mx 1 2; dkim=pass",
            b"Authentication-Results: mx; dkim=pass header.d= ; x.y",
            b"\xff\xfe: \xff\r\n Authentication-Results \xff",
            b"Authentication-Results: mx; d\xffkim=pass (((((",
        ];
        for raw in inputs {
            let _ = trusted_results(raw, &ids(&["mx"]));
        }
        let r = trusted_results(
            b"Authentication-Results: mx; dkim=pass header.d= ; x.y",
            &ids(&["mx"]),
        );
        assert_eq!(r[0].3, vec![("header.d".to_string(), String::new())]);
        // a version other than digits makes the header unreadable: ignored
        assert!(
            trusted_results(b"Authentication-Results: mx 1 2; dkim=pass", &ids(&["mx"])).is_empty()
        );
    }
}
