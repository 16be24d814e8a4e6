//! Sender authentication (`src/auth.rs`): DKIM verified against keys generated here and
//! published through the closed-world record table (no network) or a tiny DNS server on
//! 127.0.0.1; trusted and untrusted Authentication-Results.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mail_auth::dkim::generate::DkimKeyPair;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer};
use studio_intake::auth::{AuthOutcome, Authenticator, trusted_results};

/// One RSA-2048 key for the whole test binary (generation is the slow part).
fn rsa_pair() -> &'static (Vec<u8>, String) {
    static KEY: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    KEY.get_or_init(|| {
        let pair = DkimKeyPair::generate_rsa(2048).expect("RSA key");
        let txt = format!("v=DKIM1; k=rsa; p={}", pair.encoded_public_key());
        (pair.private_key().to_vec(), txt)
    })
}

/// A second, unrelated RSA key (the attacker's).
fn other_rsa_pair() -> &'static (Vec<u8>, String) {
    static KEY: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    KEY.get_or_init(|| {
        let pair = DkimKeyPair::generate_rsa(1024).expect("RSA key");
        let txt = format!("v=DKIM1; k=rsa; p={}", pair.encoded_public_key());
        (pair.private_key().to_vec(), txt)
    })
}

fn rsa_key(private_der: &[u8]) -> RsaKey<Sha256> {
    RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(
        private_der.to_vec(),
    )))
    .expect("private key")
}

const MAIL: &str = "From: =?UTF-8?B?5YiY5LyK?= <liuyi@example.cn>\r\n\
To: ghzgh@example.org\r\n\
Subject: =?UTF-8?B?5o6o6I2Q5Yib5paw5bel5L2c5a6k?=\r\n\
Date: Tue, 22 Sep 2020 10:00:00 +0800\r\n\
Message-ID: <20200922100000.1@example.cn>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Please find our forms attached.\r\n\
--\r\n\
Union of Example County\r\n";

/// `mail` signed by `domain`/`selector` over `headers` with the given RSA key.
fn sign_with(mail: &str, key: &[u8], domain: &str, selector: &str, headers: &[&str]) -> String {
    let sig = DkimSigner::from_key(rsa_key(key))
        .domain(domain)
        .selector(selector)
        .headers(headers.iter().copied())
        .sign(mail.as_bytes())
        .expect("signing");
    format!("{}{}", sig.to_header(), mail)
}

fn sign(mail: &str, domain: &str) -> String {
    sign_with(
        mail,
        &rsa_pair().0,
        domain,
        "sel",
        &["From", "To", "Subject", "Date", "Message-ID"],
    )
}

/// The closed-world authenticator publishing our key at `sel._domainkey.example.cn` and the
/// attacker's at `sel._domainkey.attacker.cn`.
fn authenticator() -> Authenticator {
    Authenticator::with_records(vec![
        ("sel._domainkey.example.cn".into(), rsa_pair().1.clone()),
        (
            "sel._domainkey.attacker.cn".into(),
            other_rsa_pair().1.clone(),
        ),
    ])
}

/// `signed`, from `liuyi@example.cn`, through [`authenticator`] with no trusted A-R server.
async fn verify(signed: &str) -> AuthOutcome {
    authenticator().authenticate(signed.as_bytes(), "liuyi@example.cn", &[]).await
}

fn trusted() -> Vec<String> {
    vec!["mx.example.org".to_string()]
}

fn reason(outcome: &AuthOutcome) -> &str {
    match outcome {
        AuthOutcome::Failed { reason } => reason,
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn dkim_aligned_passes() {
    let signed = sign(MAIL, "example.cn");
    let outcome = verify(&signed).await;
    assert_eq!(
        outcome,
        AuthOutcome::DkimAligned {
            domain: "example.cn".into()
        }
    );
    assert!(outcome.passed());
    // the From address in any case, and a From in a subdomain of d= (relaxed alignment)
    let outcome = authenticator()
        .authenticate(signed.as_bytes(), "LiuYi@Example.CN", &[])
        .await;
    assert!(outcome.passed(), "{outcome:?}");
    let sub = MAIL.replace("liuyi@example.cn", "liuyi@mail.example.cn");
    let signed = sign(&sub, "example.cn");
    let outcome = authenticator()
        .authenticate(signed.as_bytes(), "liuyi@mail.example.cn", &[])
        .await;
    assert_eq!(
        outcome,
        AuthOutcome::DkimAligned {
            domain: "example.cn".into()
        }
    );
}

#[tokio::test]
async fn ed25519_signature_passes() {
    let pair = DkimKeyPair::generate_ed25519().expect("ed25519 key");
    let key = Ed25519Key::from_pkcs8_der(pair.private_key()).expect("ed25519 private key");
    let sig = DkimSigner::from_key(key)
        .domain("example.cn")
        .selector("ed")
        .headers(["From", "Subject"])
        .sign(MAIL.as_bytes())
        .expect("signing");
    let signed = format!("{}{}", sig.to_header(), MAIL);
    let auth = Authenticator::with_records(vec![(
        "ed._domainkey.example.cn".into(),
        format!("v=DKIM1; k=ed25519; p={}", pair.encoded_public_key()),
    )]);
    let outcome = auth
        .authenticate(signed.as_bytes(), "liuyi@example.cn", &[])
        .await;
    assert_eq!(
        outcome,
        AuthOutcome::DkimAligned {
            domain: "example.cn".into()
        }
    );
}

#[tokio::test]
async fn body_changed_after_signing_fails() {
    let signed = sign(MAIL, "example.cn").replace("forms attached", "forms attached, and more");
    let outcome = verify(&signed).await;
    assert!(reason(&outcome).contains("body changed"), "{outcome:?}");
}

#[tokio::test]
async fn signed_header_changed_after_signing_fails() {
    let signed = sign(MAIL, "example.cn").replace("Date: Tue, 22 Sep", "Date: Wed, 23 Sep");
    let outcome = verify(&signed).await;
    assert!(reason(&outcome).contains("does not verify"), "{outcome:?}");
}

#[tokio::test]
async fn signing_domain_not_aligned_fails() {
    // The attacker signs a mail "from" the unit with their own domain and valid key.
    let signed = sign_with(
        MAIL,
        &other_rsa_pair().0,
        "attacker.cn",
        "sel",
        &["From", "Subject"],
    );
    let outcome = verify(&signed).await;
    let why = reason(&outcome);
    assert!(
        why.contains("attacker.cn") && why.contains("not aligned"),
        "{why}"
    );
    // a look-alike domain is not a subdomain
    let signed = sign(MAIL, "badexample.cn");
    let auth = Authenticator::with_records(vec![(
        "sel._domainkey.badexample.cn".into(),
        rsa_pair().1.clone(),
    )]);
    let outcome = auth
        .authenticate(signed.as_bytes(), "liuyi@example.cn", &[])
        .await;
    assert!(reason(&outcome).contains("not aligned"), "{outcome:?}");
}

#[tokio::test]
async fn missing_key_fails() {
    let signed = sign_with(
        MAIL,
        &rsa_pair().0,
        "example.cn",
        "gone",
        &["From", "Subject"],
    );
    let outcome = verify(&signed).await;
    assert!(
        reason(&outcome).contains("no DKIM key published at gone._domainkey.example.cn"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn wrong_key_fails() {
    // signed with the attacker's key under the unit's domain and selector
    let signed = sign_with(
        MAIL,
        &other_rsa_pair().0,
        "example.cn",
        "sel",
        &["From", "Subject"],
    );
    let outcome = verify(&signed).await;
    assert!(!outcome.passed(), "{outcome:?}");
}

#[tokio::test]
async fn weak_key_refused() {
    // RFC 8301: a 512-bit key can be factored; its signatures prove nothing.
    let pair = DkimKeyPair::generate_rsa(512).expect("RSA key");
    let signed = sign_with(
        MAIL,
        pair.private_key(),
        "example.cn",
        "weak",
        &["From", "Subject"],
    );
    let txt = format!("v=DKIM1; k=rsa; p={}", pair.encoded_public_key());
    let auth =
        Authenticator::with_records(vec![("weak._domainkey.example.cn".into(), txt.clone())]);
    let outcome = auth
        .authenticate(signed.as_bytes(), "liuyi@example.cn", &[])
        .await;
    assert!(reason(&outcome).contains("512 bits"), "{outcome:?}");
    // the same through a DNS server (the key is taken from what the resolver fetched)
    let server = dns_server(
        HashMap::from([("weak._domainkey.example.cn".to_string(), txt)]),
        false,
    )
    .await;
    let auth = Authenticator::with_nameserver(server).expect("resolver");
    let outcome = auth
        .authenticate(signed.as_bytes(), "liuyi@example.cn", &[])
        .await;
    assert!(reason(&outcome).contains("512 bits"), "{outcome:?}");
}

#[tokio::test]
async fn no_signature_fails() {
    let outcome = authenticator()
        .authenticate(MAIL.as_bytes(), "liuyi@example.cn", &[])
        .await;
    assert_eq!(
        outcome,
        AuthOutcome::Failed {
            reason: "no DKIM signature".into()
        }
    );
}

#[tokio::test]
async fn body_length_signature_refused() {
    let sig = DkimSigner::from_key(rsa_key(&rsa_pair().0))
        .domain("example.cn")
        .selector("sel")
        .headers(["From", "Subject"])
        .body_length(true)
        .sign(MAIL.as_bytes())
        .expect("signing");
    // what l= allows: content appended after the signed part
    let signed = format!(
        "{}{}Also: approve the attached studio.\r\n",
        sig.to_header(),
        MAIL
    );
    let outcome = verify(&signed).await;
    assert!(reason(&outcome).contains("l="), "{outcome:?}");
}

#[tokio::test]
async fn signature_not_covering_from_fails() {
    let signed = sign_with(MAIL, &rsa_pair().0, "example.cn", "sel", &["To", "Subject"]);
    let outcome = verify(&signed).await;
    assert!(!outcome.passed(), "{outcome:?}");
}

#[tokio::test]
async fn second_from_header_fails() {
    // A signed mail of the unit with a second From added on top: readers may show either.
    let signed = sign(MAIL, "example.cn");
    let forged = format!("From: boss@example.cn\r\n{signed}");
    let outcome = authenticator()
        .authenticate(forged.as_bytes(), "boss@example.cn", &[])
        .await;
    assert!(reason(&outcome).contains("2 From headers"), "{outcome:?}");
    let outcome = authenticator()
        .authenticate(forged.as_bytes(), "liuyi@example.cn", &[])
        .await;
    assert!(!outcome.passed());
}

#[tokio::test]
async fn from_argument_must_be_the_from_header() {
    let signed = sign(MAIL, "example.cn");
    let outcome = authenticator()
        .authenticate(signed.as_bytes(), "other@example.cn", &[])
        .await;
    assert!(reason(&outcome).contains("From header"), "{outcome:?}");
    let outcome = authenticator()
        .authenticate(signed.as_bytes(), "nodomain", &[])
        .await;
    assert!(!outcome.passed());
}

#[tokio::test]
async fn over_size_cap_only_headers_count() {
    let signed = sign(MAIL, "example.cn");
    let auth = authenticator().with_max_dkim_bytes(100);
    let outcome = auth
        .authenticate(signed.as_bytes(), "liuyi@example.cn", &[])
        .await;
    assert!(reason(&outcome).contains("DKIM not checked"), "{outcome:?}");
    let with_ar = format!(
        "Authentication-Results: mx.example.org; dkim=pass header.d=example.cn\r\n{signed}"
    );
    let outcome = auth
        .authenticate(with_ar.as_bytes(), "liuyi@example.cn", &trusted())
        .await;
    assert!(outcome.passed(), "{outcome:?}");
}

#[tokio::test]
async fn hostile_input_never_panics() {
    let auth = authenticator();
    let signed = sign(MAIL, "example.cn");
    let mut inputs: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\r\n\r\n".to_vec(),
        b"From: a@example.cn\r\n".to_vec(),
        b"From: a@example.cn\r\nDKIM-Signature: v=1; a=rsa-sha256; d=example.cn; s=sel; h=from; bh=!!!; b=@@@\r\n\r\nx".to_vec(),
        b"DKIM-Signature: v=1; a=rsa-sha256; d=; s=; h=; bh=; b=\r\nFrom: a@example.cn\r\n\r\n".to_vec(),
        b"From: a@example.cn\r\nAuthentication-Results: mx.example.org; dkim=pass header.d=\"\xff\xfe\r\n\r\n".to_vec(),
    ];
    // every prefix of a signed mail, and a few byte flips
    for cut in (0..signed.len()).step_by(97) {
        inputs.push(signed.as_bytes()[..cut].to_vec());
    }
    for at in (0..signed.len()).step_by(131) {
        let mut bytes = signed.clone().into_bytes();
        bytes[at] ^= 0x5a;
        inputs.push(bytes);
    }
    for raw in inputs {
        let outcome = auth.authenticate(&raw, "a@example.cn", &trusted()).await;
        let _ = outcome.passed();
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication-Results

#[tokio::test]
async fn trusted_dkim_pass_passes() {
    let mail =
        format!("Authentication-Results: mx.example.org; dkim=pass header.d=example.cn\r\n{MAIL}");
    let outcome = authenticator()
        .authenticate(mail.as_bytes(), "liuyi@example.cn", &trusted())
        .await;
    assert_eq!(
        outcome,
        AuthOutcome::TrustedResults {
            authserv_id: "mx.example.org".into(),
            method: "dkim".into()
        }
    );
    // header.i instead of header.d
    let mail =
        format!("Authentication-Results: mx.example.org; dkim=pass header.i=@example.cn\r\n{MAIL}");
    let outcome = authenticator()
        .authenticate(mail.as_bytes(), "liuyi@example.cn", &trusted())
        .await;
    assert!(outcome.passed(), "{outcome:?}");
}

#[tokio::test]
async fn trusted_dmarc_pass_passes() {
    let mail = format!(
        "Authentication-Results: mx.example.org;\r\n\tspf=none smtp.mailfrom=example.cn;\r\n\tdmarc=pass (p=none dis=none) header.from=example.cn\r\n{MAIL}"
    );
    let outcome = authenticator()
        .authenticate(mail.as_bytes(), "liuyi@example.cn", &trusted())
        .await;
    assert_eq!(
        outcome,
        AuthOutcome::TrustedResults {
            authserv_id: "mx.example.org".into(),
            method: "dmarc".into()
        }
    );
}

#[tokio::test]
async fn trusted_results_for_another_domain_fail() {
    for ar in [
        "mx.example.org; dkim=pass header.d=attacker.cn",
        "mx.example.org; dmarc=pass header.from=attacker.cn",
        "mx.example.org; spf=pass smtp.mailfrom=liuyi@example.cn",
        "mx.example.org; dkim=pass",
        "mx.example.org; none",
    ] {
        let mail = format!("Authentication-Results: {ar}\r\n{MAIL}");
        let outcome = authenticator()
            .authenticate(mail.as_bytes(), "liuyi@example.cn", &trusted())
            .await;
        assert!(!outcome.passed(), "{ar}: {outcome:?}");
    }
}

#[tokio::test]
async fn untrusted_results_ignored() {
    // The attacker writes a passing A-R with an authserv-id that is not ours.
    for id in [
        "mx.attacker.cn",
        "mx.example.org.attacker.cn",
        "example.org",
        "\"mx.example\"",
    ] {
        let mail = format!(
            "Authentication-Results: {id}; dkim=pass header.d=example.cn; dmarc=pass header.from=example.cn\r\n{MAIL}"
        );
        let outcome = authenticator()
            .authenticate(mail.as_bytes(), "liuyi@example.cn", &trusted())
            .await;
        assert_eq!(
            outcome,
            AuthOutcome::Failed {
                reason: "no DKIM signature".into()
            },
            "{id}"
        );
    }
    // With no trusted id configured, even our own server's header is not evidence.
    let mail = format!("Authentication-Results: mx.example.org; dmarc=pass\r\n{MAIL}");
    let outcome = authenticator()
        .authenticate(mail.as_bytes(), "liuyi@example.cn", &[])
        .await;
    assert!(!outcome.passed());
}

#[tokio::test]
async fn forged_from_with_failing_trusted_and_passing_untrusted_fails() {
    // Our server (top) says fail; the attacker's own header (below) says pass.
    let mail = format!(
        "Authentication-Results: mx.example.org;\r\n\
         \tdkim=none (message not signed);\r\n\
         \tdmarc=fail (p=none) header.from=example.cn\r\n\
         Received: from attacker.cn (unknown [203.0.113.9]) by mx.example.org\r\n\
         Authentication-Results: mx.attacker.cn; dkim=pass header.d=example.cn; dmarc=pass header.from=example.cn\r\n\
         {MAIL}"
    );
    let outcome = authenticator()
        .authenticate(mail.as_bytes(), "liuyi@example.cn", &trusted())
        .await;
    let why = reason(&outcome);
    assert!(why.contains("mx.example.org reports dmarc=fail"), "{why}");
    // the same with only dkim=fail from the trusted server: DKIM here finds no signature
    let mail = mail
        .replace("dmarc=fail (p=none) header.from=example.cn", "spf=softfail")
        .replace(
            "dkim=none (message not signed)",
            "dkim=fail header.d=example.cn",
        );
    let outcome = authenticator()
        .authenticate(mail.as_bytes(), "liuyi@example.cn", &trusted())
        .await;
    let why = reason(&outcome);
    assert!(
        why.contains("mx.example.org reports dkim=fail") && why.contains("no DKIM signature"),
        "{why}"
    );
}

#[tokio::test]
async fn trusted_dmarc_fail_outweighs_a_signature() {
    let signed = sign(MAIL, "example.cn");
    let mail = format!(
        "Authentication-Results: mx.example.org; dmarc=fail header.from=example.cn\r\n{signed}"
    );
    let outcome = authenticator()
        .authenticate(mail.as_bytes(), "liuyi@example.cn", &trusted())
        .await;
    assert!(!outcome.passed(), "{outcome:?}");
    // and without the A-R the signature alone passes
    let outcome = authenticator()
        .authenticate(signed.as_bytes(), "liuyi@example.cn", &trusted())
        .await;
    assert!(outcome.passed());
    // a trusted dmarc=fail also outweighs a trusted dkim=pass standing before it
    let mail = format!(
        "Authentication-Results: mx.example.org; dkim=pass header.d=example.cn; dmarc=fail\r\n{MAIL}"
    );
    let outcome = authenticator()
        .authenticate(mail.as_bytes(), "liuyi@example.cn", &trusted())
        .await;
    assert!(reason(&outcome).contains("dmarc=fail"), "{outcome:?}");
}

#[test]
fn comments_and_quoting_parsed() {
    let raw = b"Received: by mx.example.org\r\n\
        Authentication-Results: (our server) MX.EXAMPLE.ORG (Postfix 3.7) 1 ;\r\n\
        \tdkim=pass (2048-bit key; unprotected) header.d=\"example.cn\"\r\n\
        \t  header.i=@example.cn (the \\) escaped \"quote\" (nested) comment) header.s=sel;\r\n\
        \tdmarc = pass (p=NONE sp=NONE) header.from=example.cn ;\r\n\
        \tauth=pass smtp.auth=\"liu yi; x=y\"\r\n\
        Subject: x\r\n\r\n";
    let r = trusted_results(raw, &["mx.example.org".to_string()]);
    assert_eq!(r.len(), 3, "{r:?}");
    assert_eq!(r[0].0, "MX.EXAMPLE.ORG");
    assert_eq!((r[0].1.as_str(), r[0].2.as_str()), ("dkim", "pass"));
    let props: HashMap<_, _> = r[0].3.iter().cloned().collect();
    assert_eq!(props["header.d"], "example.cn");
    assert_eq!(props["header.i"], "@example.cn");
    assert_eq!(props["header.s"], "sel");
    assert_eq!((r[1].1.as_str(), r[1].2.as_str()), ("dmarc", "pass"));
    assert_eq!(
        r[1].3,
        vec![("header.from".to_string(), "example.cn".to_string())]
    );
    assert_eq!(
        r[2].3,
        vec![("smtp.auth".to_string(), "liu yi; x=y".to_string())]
    );
}

#[test]
fn real_world_headers_parsed() {
    // as written by Postfix + OpenDKIM/OpenDMARC and by Rspamd
    let raw = b"Authentication-Results: mx.example.org;\r\n\
        \tdkim=pass (1024-bit key) header.d=qq.com header.i=@qq.com header.b=\"Ab12Cd34\";\r\n\
        \tdkim-atps=neutral\r\n\
        Authentication-Results: mx.example.org; dmarc=pass (p=quarantine dis=none) header.from=qq.com\r\n\
        Authentication-Results: rspamd.example.org;\r\n\
        \tdkim=pass header.d=163.com header.s=s110527 header.b=Lt3Vq0zP;\r\n\
        \tdmarc=pass (policy=none) header.from=163.com;\r\n\
        \tspf=pass (rspamd.example.org: domain of user@163.com designates 220.181.12.17 as permitted sender) smtp.mailfrom=user@163.com\r\n\r\n";
    let r = trusted_results(raw, &["mx.example.org".to_string()]);
    let methods: Vec<_> = r.iter().map(|x| (x.1.as_str(), x.2.as_str())).collect();
    assert_eq!(
        methods,
        vec![
            ("dkim", "pass"),
            ("dkim-atps", "neutral"),
            ("dmarc", "pass")
        ]
    );
    let r = trusted_results(raw, &["rspamd.example.org".to_string()]);
    assert_eq!(r.len(), 3);
    assert_eq!(
        r[2].3,
        vec![("smtp.mailfrom".to_string(), "user@163.com".to_string())]
    );
}

// ---------------------------------------------------------------------------------------------
// The real resolver path: a DNS server on 127.0.0.1 answering TXT queries.

use mail_auth::hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
use mail_auth::hickory_resolver::proto::rr::rdata::TXT;
use mail_auth::hickory_resolver::proto::rr::{RData, Record, RecordType};

/// Serves `records` (lower-case names without the final dot) over UDP on 127.0.0.1; other
/// names are NXDOMAIN. With `mute`, never answers. Long TXT values are split into 255-byte
/// character-strings, as real zones do for 2048-bit keys.
async fn dns_server(records: HashMap<String, String>, mute: bool) -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    let records = Arc::new(records);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            if mute {
                continue;
            }
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut reply = Message::response(query.metadata.id, OpCode::Query);
            reply.metadata.recursion_desired = query.metadata.recursion_desired;
            reply.metadata.recursion_available = true;
            for q in &query.queries {
                reply.add_query(q.clone());
                let name = q
                    .name()
                    .to_ascii()
                    .trim_end_matches('.')
                    .to_ascii_lowercase();
                match records.get(&name) {
                    Some(text) if q.query_type() == RecordType::TXT => {
                        let chunks = text
                            .as_bytes()
                            .chunks(255)
                            .map(|c| String::from_utf8_lossy(c).into_owned())
                            .collect();
                        reply.add_answer(Record::from_rdata(
                            q.name().clone(),
                            60,
                            RData::TXT(TXT::new(chunks)),
                        ));
                    }
                    Some(_) => {}
                    None => reply.metadata.response_code = ResponseCode::NXDomain,
                }
            }
            if let Ok(bytes) = reply.to_vec() {
                let _ = socket.send_to(&bytes, peer).await;
            }
        }
    });
    addr
}

#[tokio::test]
async fn local_dns_server_pass_and_missing_key() {
    let server = dns_server(
        HashMap::from([(
            "sel._domainkey.example.cn".to_string(),
            rsa_pair().1.clone(),
        )]),
        false,
    )
    .await;
    let auth = Authenticator::with_nameserver(server).expect("resolver");
    let signed = sign(MAIL, "example.cn");
    let outcome = auth
        .authenticate(signed.as_bytes(), "liuyi@example.cn", &[])
        .await;
    assert_eq!(
        outcome,
        AuthOutcome::DkimAligned {
            domain: "example.cn".into()
        }
    );
    let tampered = signed.replace("forms attached", "forms attached!");
    let outcome = auth
        .authenticate(tampered.as_bytes(), "liuyi@example.cn", &[])
        .await;
    assert!(reason(&outcome).contains("body changed"));
    let other = sign_with(MAIL, &rsa_pair().0, "example.cn", "gone", &["From"]);
    let outcome = auth
        .authenticate(other.as_bytes(), "liuyi@example.cn", &[])
        .await;
    assert!(
        reason(&outcome).contains("no DKIM key published"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn silent_dns_server_is_time_bounded() {
    let server = dns_server(HashMap::new(), true).await;
    let auth = Authenticator::with_nameserver(server)
        .expect("resolver")
        .with_dns_timeout(Duration::from_millis(400));
    let signed = sign(MAIL, "example.cn");
    let started = std::time::Instant::now();
    let outcome = auth
        .authenticate(signed.as_bytes(), "liuyi@example.cn", &[])
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(!outcome.passed(), "{outcome:?}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// The RFC 8601 parser is total: any bytes, and any text over its own alphabet.
    #[test]
    fn trusted_results_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        let mut raw = b"Authentication-Results: mx.example.org".to_vec();
        raw.extend_from_slice(&bytes);
        let _ = trusted_results(&raw, &["mx.example.org".to_string()]);
    }

    #[test]
    fn trusted_results_never_panics_on_its_alphabet(value in r#"[ a-z0-9.@/=;()"\\\r\n\t-]{0,200}"#) {
        let raw = format!("Authentication-Results: mx.example.org{value}\r\n\r\n");
        for (id, _, _, _) in trusted_results(raw.as_bytes(), &["mx.example.org".to_string()]) {
            proptest::prop_assert!(id.eq_ignore_ascii_case("mx.example.org"));
        }
    }
}

/// The daemon keeps one Authenticator in its shared state and awaits `authenticate` inside
/// spawned tasks.
#[test]
fn authenticator_is_shareable_and_its_future_is_send() {
    fn shareable<T: Send + Sync + 'static>() {}
    fn send<F: std::future::Future + Send>(_: F) {}
    shareable::<Authenticator>();
    shareable::<AuthOutcome>();
    let auth = Authenticator::with_records(vec![]);
    let ids = trusted();
    send(auth.authenticate(b"", "a@example.cn", &ids));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_a_multi_thread_runtime() {
    let signed = sign(MAIL, "example.cn");
    let auth = Arc::new(authenticator());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (auth, signed) = (auth.clone(), signed.clone());
        tasks.push(tokio::spawn(async move {
            auth.authenticate(signed.as_bytes(), "liuyi@example.cn", &[])
                .await
        }));
    }
    for task in tasks {
        assert!(task.await.expect("task").passed());
    }
}

#[tokio::test]
async fn system_resolver_builds_without_network() {
    // Reads /etc/resolv.conf only; sends nothing until a mail is verified.
    if std::path::Path::new("/etc/resolv.conf").exists() {
        let auth = Authenticator::system().expect("system resolver");
        // no signature: decided without any lookup
        let outcome = auth.authenticate(MAIL.as_bytes(), "liuyi@example.cn", &[]).await;
        assert_eq!(outcome, AuthOutcome::Failed { reason: "no DKIM signature".into() });
    }
}
